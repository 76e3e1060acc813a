// YOLO postprocess on the GPU: decode -> score threshold + class filter -> candidate compaction
// -> order by (score desc, anchor asc) -> top-K -> greedy class-aware NMS -> at most
// max_detections boxes mapped back to source pixels, in a fixed result array per batch item.
//
// Implements the rule documented in src/postprocess/cpu.rs (the CPU twin) step by step, in f32
// with --fmad=false, so the detections are identical to the twin's.
//
// Launches per batch (all on the pipeline's stream, no host round trip in between):
//   cuMemsetD32Async(counts) ; jw_post_collect_{f32,f16} ; jw_post_select ; one DtoH copy.
#include "common.cuh"

enum JwHead : uint32_t {
    JW_HEAD_V8 = 0,        // [B, 4+C, N]
    JW_HEAD_V5 = 1,        // [B, N, 5+C], also decoded YOLOX
    JW_HEAD_YOLOX_RAW = 2, // [B, N, 5+C], grid offsets of strides 8/16/32
    JW_HEAD_E2E = 3,       // [B, K, 6]
};

struct JwPostLb {
    float left, top, inv_x, inv_y, src_w, src_h;
};

struct JwPostParams {
    uint64_t output;      // engine output [B, d1, d2], f32 or f16
    uint64_t cands;       // JwCand [B][anchors]
    uint64_t keys;        // uint64 [B][key_stride]
    uint64_t counts;      // uint32 [B]
    uint64_t results;     // JwResultItem [B]
    uint64_t class_mask;  // uint32 bitmask over classes, 0: keep all
    uint32_t head, classes, anchors, batch;
    uint32_t key_stride;  // power of two >= anchors
    uint32_t max_det;
    uint32_t canvas_w, canvas_h;
    float score_thr, iou_thr;
    JwPostLb lb[JW_POST_MAX_BATCH];
};

struct JwCand {
    float x0, y0, x1, y1, score;
    uint32_t cls;
};

struct JwDet {
    uint32_t cls;
    float score, x0, y0, x1, y1;
};

struct JwResultItem {
    uint32_t count;
    uint32_t pad[3];
    JwDet det[JW_MAX_DETECTIONS];
};

// Orders floats like f32::total_cmp as unsigned integers.
__device__ __forceinline__ uint32_t jw_ord(float f) {
    uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

template <typename T>
__device__ __forceinline__ void jw_collect_body(const JwPostParams& p) {
    const uint32_t a = blockIdx.x * blockDim.x + threadIdx.x;
    const uint32_t b = blockIdx.y;
    if (a >= p.anchors || b >= p.batch) return;
    const T* out = reinterpret_cast<const T*>(p.output);
    const uint32_t C = p.classes, N = p.anchors;
    float score, cx = 0.f, cy = 0.f, w = 0.f, h = 0.f, x0, y0, x1, y1;
    uint32_t cls = 0;
    if (p.head == JW_HEAD_V8) {
        const size_t base = (size_t)b * (4 + C) * N;
        score = jw_load(out, base + 4 * (size_t)N + a);
        for (uint32_t c = 1; c < C; ++c) {
            const float v = jw_load(out, base + (size_t)(4 + c) * N + a);
            if (v > score) { score = v; cls = c; }
        }
        if (!(score > p.score_thr)) return;
        cx = jw_load(out, base + a);
        cy = jw_load(out, base + (size_t)N + a);
        w = jw_load(out, base + 2 * (size_t)N + a);
        h = jw_load(out, base + 3 * (size_t)N + a);
    } else if (p.head == JW_HEAD_V5 || p.head == JW_HEAD_YOLOX_RAW) {
        const size_t row = ((size_t)b * N + a) * (5 + C);
        const float obj = jw_load(out, row + 4);
        float best = jw_load(out, row + 5);
        for (uint32_t c = 1; c < C; ++c) {
            const float v = jw_load(out, row + 5 + c);
            if (v > best) { best = v; cls = c; }
        }
        score = obj * best;
        if (!(score > p.score_thr)) return;
        cx = jw_load(out, row);
        cy = jw_load(out, row + 1);
        w = jw_load(out, row + 2);
        h = jw_load(out, row + 3);
        if (p.head == JW_HEAD_YOLOX_RAW) {
            // Megvii YOLOX yolo_head.py decode_outputs: grids of strides 8, 16, 32, row-major.
            uint32_t idx = a, s = 8;
            for (int l = 0; l < 3; ++l, s *= 2) {
                const uint32_t gw = (p.canvas_w + s - 1) / s, gh = (p.canvas_h + s - 1) / s;
                if (idx < gw * gh || l == 2) break;
                idx -= gw * gh;
            }
            const uint32_t gw = (p.canvas_w + s - 1) / s;
            const float gx = (float)(idx % gw), gy = (float)(idx / gw), fs = (float)s;
            cx = (cx + gx) * fs;
            cy = (cy + gy) * fs;
            w = expf(w) * fs;
            h = expf(h) * fs;
        }
    } else {  // JW_HEAD_E2E
        const size_t row = ((size_t)b * N + a) * 6;
        score = jw_load(out, row + 4);
        const float c = roundf(jw_load(out, row + 5));
        if (!(score > p.score_thr) || !(c >= 0.0f && c <= 65535.0f)) return;
        cls = (uint32_t)c;
    }
    if (p.class_mask) {
        const uint32_t* m = reinterpret_cast<const uint32_t*>(p.class_mask);
        if (cls >= C || !((m[cls >> 5] >> (cls & 31)) & 1u)) return;
    }
    if (p.head == JW_HEAD_E2E) {
        const size_t row = ((size_t)b * N + a) * 6;
        x0 = jw_load(out, row);
        y0 = jw_load(out, row + 1);
        x1 = jw_load(out, row + 2);
        y1 = jw_load(out, row + 3);
    } else {
        x0 = cx - w / 2.0f;
        y0 = cy - h / 2.0f;
        x1 = cx + w / 2.0f;
        y1 = cy + h / 2.0f;
    }
    JwCand* cands = reinterpret_cast<JwCand*>(p.cands);
    JwCand cd;
    cd.x0 = x0; cd.y0 = y0; cd.x1 = x1; cd.y1 = y1; cd.score = score; cd.cls = cls;
    cands[(size_t)b * N + a] = cd;
    uint32_t* counts = reinterpret_cast<uint32_t*>(p.counts);
    const uint32_t pos = atomicAdd(counts + b, 1u);
    uint64_t* keys = reinterpret_cast<uint64_t*>(p.keys) + (size_t)b * p.key_stride;
    keys[pos] = ((uint64_t)jw_ord(score) << 32) | (uint64_t)(0xFFFFFFFFu - a);
}

extern "C" __global__ void __launch_bounds__(256)
jw_post_collect_f32(const __grid_constant__ JwPostParams p) { jw_collect_body<float>(p); }

extern "C" __global__ void __launch_bounds__(256)
jw_post_collect_f16(const __grid_constant__ JwPostParams p) { jw_collect_body<__half>(p); }

// Block-wide bitonic sort, descending, of n (a power of two) keys.
__device__ void jw_bitonic_desc(uint64_t* s, uint32_t n) {
    for (uint32_t k = 2; k <= n; k <<= 1) {
        for (uint32_t j = k >> 1; j > 0; j >>= 1) {
            for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
                const uint32_t ixj = i ^ j;
                if (ixj > i) {
                    const uint64_t x = s[i], y = s[ixj];
                    const bool desc = (i & k) == 0;
                    if (desc ? (x < y) : (x > y)) {
                        s[i] = y;
                        s[ixj] = x;
                    }
                }
            }
            __syncthreads();
        }
    }
}

// IoU exactly as the twin's `iou(kept, cand)`.
__device__ __forceinline__ float jw_iou(const JwCand& a, const JwCand& b) {
    const float iw = fmaxf(fminf(a.x1, b.x1) - fmaxf(a.x0, b.x0), 0.0f);
    const float ih = fmaxf(fminf(a.y1, b.y1) - fmaxf(a.y0, b.y0), 0.0f);
    const float inter = iw * ih;
    const float uni = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter;
    return uni > 0.0f ? inter / uni : 0.0f;
}

// Letterbox::map_x / map_y (docs/preprocess.md §5) of a kept candidate.
__device__ __forceinline__ JwDet jw_map(const JwCand& c, const JwPostLb& lb) {
    JwDet d;
    d.cls = c.cls;
    d.score = c.score;
    d.x0 = jw_clamp((c.x0 - lb.left) * lb.inv_x, 0.0f, lb.src_w);
    d.y0 = jw_clamp((c.y0 - lb.top) * lb.inv_y, 0.0f, lb.src_h);
    d.x1 = jw_clamp((c.x1 - lb.left) * lb.inv_x, 0.0f, lb.src_w);
    d.y1 = jw_clamp((c.y1 - lb.top) * lb.inv_y, 0.0f, lb.src_h);
    return d;
}

#define JW_SEL_THREADS 1024
#define JW_SEL_PER (JW_PRE_NMS_TOP_K / JW_SEL_THREADS)

// One block of JW_SEL_THREADS threads per batch item; dynamic shared memory:
// JW_PRE_NMS_TOP_K sort keys (8 bytes each).
extern "C" __global__ void __launch_bounds__(JW_SEL_THREADS)
jw_post_select(const __grid_constant__ JwPostParams p) {
    extern __shared__ uint64_t smem[];
    uint64_t* skeys = smem;
    const uint32_t b = blockIdx.x;
    if (b >= p.batch) return;
    const uint32_t n = reinterpret_cast<const uint32_t*>(p.counts)[b];
    uint64_t* gkeys = reinterpret_cast<uint64_t*>(p.keys) + (size_t)b * p.key_stride;
    uint32_t P = 1;
    while (P < n) P <<= 1;
    if (n <= JW_PRE_NMS_TOP_K) {
        for (uint32_t i = threadIdx.x; i < P; i += blockDim.x) skeys[i] = i < n ? gkeys[i] : 0ull;
        __syncthreads();
        jw_bitonic_desc(skeys, P);
    } else {
        // More candidates than the top-K: sort them all in global scratch (P <= key_stride),
        // then take the first JW_PRE_NMS_TOP_K.
        for (uint32_t i = n + threadIdx.x; i < P; i += blockDim.x) gkeys[i] = 0ull;
        __syncthreads();
        jw_bitonic_desc(gkeys, P);
        for (uint32_t i = threadIdx.x; i < JW_PRE_NMS_TOP_K; i += blockDim.x) skeys[i] = gkeys[i];
    }
    const uint32_t m = n < JW_PRE_NMS_TOP_K ? n : JW_PRE_NMS_TOP_K;
    __syncthreads();

    const JwCand* cands = reinterpret_cast<const JwCand*>(p.cands) + (size_t)b * p.anchors;
    JwResultItem* res = reinterpret_cast<JwResultItem*>(p.results) + b;
    const JwPostLb lb = p.lb[b];
    const uint32_t tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    uint32_t kept = 0;
    if (p.head == JW_HEAD_E2E) {
        // The model did NMS: keep the first max_det in order.
        kept = m < p.max_det ? m : p.max_det;
        for (uint32_t i = tid; i < kept; i += blockDim.x)
            res->det[i] = jw_map(cands[0xFFFFFFFFu - (uint32_t)skeys[i]], lb);
    } else {
        // Greedy NMS with the candidates in registers: sorted candidate j lives in thread
        // j % 1024, register slot j / 1024. Each round finds the smallest alive index (the
        // next box to keep, since everything before it is decided), broadcasts it through
        // shared memory (double-buffered, so one barrier per kept box), and every thread
        // drops its own candidates of the same class with IoU > threshold.
        __shared__ uint32_t s_min[2][32];
        __shared__ JwCand s_cand[2][32];
        JwCand c[JW_SEL_PER];
        uint32_t alive = 0;
#pragma unroll
        for (int r = 0; r < JW_SEL_PER; ++r) {
            const uint32_t j = r * JW_SEL_THREADS + tid;
            if (j < m) {
                c[r] = cands[0xFFFFFFFFu - (uint32_t)skeys[j]];
                alive |= 1u << r;
            }
        }
        int par = 0;
        while (kept < p.max_det) {
            const int first = alive ? __ffs(alive) - 1 : 0;
            const uint32_t mine = alive ? first * JW_SEL_THREADS + tid : 0xFFFFFFFFu;
            const uint32_t wmin = __reduce_min_sync(0xFFFFFFFFu, mine);
            if (wmin == 0xFFFFFFFFu) {
                if (lane == 0) s_min[par][warp] = 0xFFFFFFFFu;
            } else if (mine == wmin) {
                JwCand sel = c[0];
#pragma unroll
                for (int r = 1; r < JW_SEL_PER; ++r)
                    if (r == first) sel = c[r];
                s_min[par][warp] = wmin;
                s_cand[par][warp] = sel;
            }
            __syncthreads();
            // Block min: one value per warp (32 warps) -> every warp reduces them itself.
            const uint32_t v = s_min[par][lane];
            const uint32_t best = __reduce_min_sync(0xFFFFFFFFu, v);
            const uint32_t bw = __ffs(__ballot_sync(0xFFFFFFFFu, v == best)) - 1;
            if (best == 0xFFFFFFFFu) break;  // uniform: every thread read the same values
            const JwCand ci = s_cand[par][bw];
            if (tid == 0) res->det[kept] = jw_map(ci, lb);
            ++kept;
#pragma unroll
            for (int r = 0; r < JW_SEL_PER; ++r) {
                if (!((alive >> r) & 1u)) continue;
                const uint32_t j = r * JW_SEL_THREADS + tid;
                if (j == best || (c[r].cls == ci.cls && jw_iou(ci, c[r]) > p.iou_thr))
                    alive &= ~(1u << r);
            }
            par ^= 1;
        }
    }
    if (threadIdx.x == 0) res->count = kept;
}
