// Shared definitions for jetwatch's CUDA kernels. Every struct here is mirrored field for field
// by a #[repr(C)] struct in src/gpu/launch.rs; Kernels::load checks the parameter sizes with
// cuFuncGetParamInfo, so a layout drift is a start-up error, not silent garbage.
#pragma once
#include <stdint.h>
#include <cuda_fp16.h>

#define JW_PRE_MAX_SLOTS 32
#define JW_POST_MAX_BATCH 64
#define JW_MAX_DETECTIONS 256
#define JW_PRE_NMS_TOP_K 4096

// Loads an output element as f32 (f16 widened exactly).
__device__ __forceinline__ float jw_load(const float* p, size_t i) { return __ldg(p + i); }
__device__ __forceinline__ float jw_load(const __half* p, size_t i) {
    return __half2float(__ldg(reinterpret_cast<const __half*>(p) + i));
}

// Stores f32 as the output element type (f16: round to nearest even).
__device__ __forceinline__ void jw_store(float* p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void jw_store(__half* p, size_t i, float v) { p[i] = __float2half_rn(v); }

// Rust's f32::clamp (NaN stays NaN).
__device__ __forceinline__ float jw_clamp(float x, float lo, float hi) {
    x = x < lo ? lo : x;
    return x > hi ? hi : x;
}
