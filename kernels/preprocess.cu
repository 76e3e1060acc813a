// Fused preprocess: NV12 (pitch-linear device memory, or CUDA arrays read through texture
// objects) -> RGB (BT.601/BT.709, limited/full range) -> bilinear letterbox -> scale ->
// channel-planar f32/f16 in batch slot k. Implements docs/preprocess.md step by step; the CPU
// twin (src/preprocess/cpu.rs) is the reference. Built with --fmad=false so every f32
// operation rounds exactly as the twin's.
//
// One launch covers a whole batch: grid = (ceil(S_w / 128), S_h, jobs); blockIdx.z picks the
// job's descriptor, which names its slot.
#include "common.cuh"

// Where a slot's picture is and how to read it.
enum JwPreSource : uint32_t {
    JW_SRC_PITCH = 0,        // luma/chroma are device pointers with `pitch`
    JW_SRC_TEX_POINT = 1,    // luma/chroma are texture objects (point, integer reads)
    JW_SRC_TEX_LINEAR = 2,   // texture objects with hardware bilinear filtering
};

struct JwPreSlot {
    uint64_t luma;     // CUdeviceptr or CUtexObject
    uint64_t chroma;   // CUdeviceptr or CUtexObject
    uint32_t pitch, width, height, slot;
    uint32_t left, top, nw, nh;
    float rx, ry;      // W / nw and H / nh (f32, computed on the host as the twin does)
    float y_off, y_mul, c_mul, r_cr, g_cb, g_cr, b_cb;
    uint32_t source;   // JwPreSource
};

struct JwPreBatch {
    uint64_t out;      // [B, 3, S_h, S_w] f32 or f16
    uint32_t out_w, out_h;
    uint32_t jobs;
    uint32_t bgr;      // 1: plane 0 = B
    float scale, pad;
    JwPreSlot slot[JW_PRE_MAX_SLOTS];
};

struct JwTap {
    uint32_t i0, i1;
    float f;
};

// docs/preprocess.md §2, `bilinear` along one axis.
__device__ __forceinline__ JwTap jw_tap(float x, uint32_t n) {
    x = jw_clamp(x, 0.0f, (float)(n - 1));
    float x0 = floorf(x);
    JwTap t;
    t.i0 = (uint32_t)x0;
    t.i1 = min(t.i0 + 1, n - 1);
    t.f = x - x0;
    return t;
}

__device__ __forceinline__ float jw_lerp(float a, float b, float f) { return a + (b - a) * f; }

template <typename T>
__device__ __forceinline__ void jw_preprocess_pixel(const JwPreBatch& b, const JwPreSlot& s,
                                                     uint32_t ox, uint32_t oy) {
    const size_t plane = (size_t)b.out_w * b.out_h;
    T* out = reinterpret_cast<T*>(b.out) + (size_t)s.slot * 3 * plane + (size_t)oy * b.out_w + ox;
    if (ox < s.left || ox >= s.left + s.nw || oy < s.top || oy >= s.top + s.nh) {
        const float p = b.pad * b.scale;
        jw_store(out, 0, p);
        jw_store(out, plane, p);
        jw_store(out, 2 * plane, p);
        return;
    }
    // §2 sampling positions.
    const float sx = ((float)(ox - s.left) + 0.5f) * s.rx - 0.5f;
    const float sy = ((float)(oy - s.top) + 0.5f) * s.ry - 0.5f;
    const float cxp = (sx + 0.5f) / 2.0f - 0.5f;
    const float cyp = (sy + 0.5f) / 2.0f - 0.5f;
    float Y, Cb, Cr;
    if (s.source == JW_SRC_TEX_LINEAR) {
        // Texel centres are at +0.5 in unnormalised coordinates; clamp addressing equals the
        // rule's clamp of the position (CUDA Programming Guide, "Texture Fetching").
        cudaTextureObject_t tl = (cudaTextureObject_t)s.luma, tc = (cudaTextureObject_t)s.chroma;
        Y = tex2D<float>(tl, sx + 0.5f, sy + 0.5f) * 255.0f;
        float2 c = tex2D<float2>(tc, cxp + 0.5f, cyp + 0.5f);
        Cb = c.x * 255.0f;
        Cr = c.y * 255.0f;
    } else {
        const uint32_t cw = (s.width + 1) / 2, ch = (s.height + 1) / 2;
        const JwTap lx = jw_tap(sx, s.width), ly = jw_tap(sy, s.height);
        const JwTap cx = jw_tap(cxp, cw), cy = jw_tap(cyp, ch);
        float l00, l01, l10, l11;
        float b00, b01, b10, b11, r00, r01, r10, r11;
        if (s.source == JW_SRC_PITCH) {
            const uint8_t* L = reinterpret_cast<const uint8_t*>(s.luma);
            const uint8_t* C = reinterpret_cast<const uint8_t*>(s.chroma);
            const uint8_t* r0 = L + (size_t)ly.i0 * s.pitch;
            const uint8_t* r1 = L + (size_t)ly.i1 * s.pitch;
            l00 = __ldg(r0 + lx.i0); l01 = __ldg(r0 + lx.i1);
            l10 = __ldg(r1 + lx.i0); l11 = __ldg(r1 + lx.i1);
            const uint8_t* c0 = C + (size_t)cy.i0 * s.pitch;
            const uint8_t* c1 = C + (size_t)cy.i1 * s.pitch;
            b00 = __ldg(c0 + 2 * cx.i0); r00 = __ldg(c0 + 2 * cx.i0 + 1);
            b01 = __ldg(c0 + 2 * cx.i1); r01 = __ldg(c0 + 2 * cx.i1 + 1);
            b10 = __ldg(c1 + 2 * cx.i0); r10 = __ldg(c1 + 2 * cx.i0 + 1);
            b11 = __ldg(c1 + 2 * cx.i1); r11 = __ldg(c1 + 2 * cx.i1 + 1);
        } else {
            cudaTextureObject_t tl = (cudaTextureObject_t)s.luma, tc = (cudaTextureObject_t)s.chroma;
            l00 = tex2D<unsigned char>(tl, lx.i0 + 0.5f, ly.i0 + 0.5f);
            l01 = tex2D<unsigned char>(tl, lx.i1 + 0.5f, ly.i0 + 0.5f);
            l10 = tex2D<unsigned char>(tl, lx.i0 + 0.5f, ly.i1 + 0.5f);
            l11 = tex2D<unsigned char>(tl, lx.i1 + 0.5f, ly.i1 + 0.5f);
            uchar2 c;
            c = tex2D<uchar2>(tc, cx.i0 + 0.5f, cy.i0 + 0.5f); b00 = c.x; r00 = c.y;
            c = tex2D<uchar2>(tc, cx.i1 + 0.5f, cy.i0 + 0.5f); b01 = c.x; r01 = c.y;
            c = tex2D<uchar2>(tc, cx.i0 + 0.5f, cy.i1 + 0.5f); b10 = c.x; r10 = c.y;
            c = tex2D<uchar2>(tc, cx.i1 + 0.5f, cy.i1 + 0.5f); b11 = c.x; r11 = c.y;
        }
        const float yt = jw_lerp(l00, l01, lx.f), yb = jw_lerp(l10, l11, lx.f);
        Y = jw_lerp(yt, yb, ly.f);
        const float cbt = jw_lerp(b00, b01, cx.f), cbb = jw_lerp(b10, b11, cx.f);
        Cb = jw_lerp(cbt, cbb, cy.f);
        const float crt = jw_lerp(r00, r01, cx.f), crb = jw_lerp(r10, r11, cx.f);
        Cr = jw_lerp(crt, crb, cy.f);
    }
    // §3 colour.
    const float y = (Y - s.y_off) * s.y_mul;
    const float cb = (Cb - 128.0f) * s.c_mul;
    const float cr = (Cr - 128.0f) * s.c_mul;
    const float R = jw_clamp(y + s.r_cr * cr, 0.0f, 255.0f);
    const float G = jw_clamp(y - s.g_cb * cb - s.g_cr * cr, 0.0f, 255.0f);
    const float B = jw_clamp(y + s.b_cb * cb, 0.0f, 255.0f);
    // §4 normalisation and layout.
    const size_t pr = b.bgr ? 2 * plane : 0, pb = b.bgr ? 0 : 2 * plane;
    jw_store(out, pr, R * b.scale);
    jw_store(out, plane, G * b.scale);
    jw_store(out, pb, B * b.scale);
}

template <typename T>
__device__ __forceinline__ void jw_preprocess_body(const JwPreBatch& b) {
    const uint32_t ox = blockIdx.x * blockDim.x + threadIdx.x;
    const uint32_t oy = blockIdx.y;
    if (ox >= b.out_w || blockIdx.z >= b.jobs) return;
    jw_preprocess_pixel<T>(b, b.slot[blockIdx.z], ox, oy);
}

extern "C" __global__ void __launch_bounds__(128)
jw_preprocess_f32(const __grid_constant__ JwPreBatch b) { jw_preprocess_body<float>(b); }

extern "C" __global__ void __launch_bounds__(128)
jw_preprocess_f16(const __grid_constant__ JwPreBatch b) { jw_preprocess_body<__half>(b); }
