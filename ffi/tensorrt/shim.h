/*
 * jetwatch TensorRT shim: a narrow C ABI over TensorRT's C++ API.
 *
 * Rules (mirrored by ffi/src/tensorrt.rs, keep both in sync):
 * - every function that can fail returns a jw_trt_status; JW_TRT_OK is 0;
 * - on failure jw_trt_last_error() returns the text (thread-local, valid until the next
 *   shim call on the same thread);
 * - no C++ exception crosses this boundary;
 * - libnvinfer.so.<major> and libnvonnxparser.so.<major> are opened with dlopen and only
 *   their factory entry points (createInferRuntime_INTERNAL, createInferBuilder_INTERNAL,
 *   createNvOnnxParser_INTERNAL, getInferLibVersion) are looked up by name: nothing links
 *   against TensorRT;
 * - handles are opaque; destroy functions accept NULL and never fail.
 */
#ifndef JETWATCH_TRT_SHIM_H
#define JETWATCH_TRT_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t jw_trt_status;
#define JW_TRT_OK 0
/* libnvinfer / libnvonnxparser or one of their entry points is missing. */
#define JW_TRT_ERR_UNAVAILABLE 1
/* The library's version does not match what the shim was compiled against. */
#define JW_TRT_ERR_VERSION 2
/* Bad argument (null pointer, index out of range, unknown tensor name). */
#define JW_TRT_ERR_INVALID 3
/* The ONNX parser rejected the model. */
#define JW_TRT_ERR_PARSE 4
/* The builder failed (or was cancelled by the progress callback). */
#define JW_TRT_ERR_BUILD 5
/* Deserialisation, context creation or enqueue failed. */
#define JW_TRT_ERR_RUNTIME 6
/* A C++ exception or allocation failure inside the shim. */
#define JW_TRT_ERR_INTERNAL 7

/* Logger severities, the numeric values of nvinfer1::ILogger::Severity. */
#define JW_TRT_SEV_INTERNAL_ERROR 0
#define JW_TRT_SEV_ERROR 1
#define JW_TRT_SEV_WARNING 2
#define JW_TRT_SEV_INFO 3
#define JW_TRT_SEV_VERBOSE 4

/* Progress events (nvinfer1::IProgressMonitor). */
#define JW_TRT_PHASE_START 0
#define JW_TRT_PHASE_STEP 1
#define JW_TRT_PHASE_FINISH 2

/* Data types, the numeric values of nvinfer1::DataType. */
#define JW_TRT_DT_FLOAT 0
#define JW_TRT_DT_HALF 1
#define JW_TRT_DT_INT8 2
#define JW_TRT_DT_INT32 3
#define JW_TRT_DT_BOOL 4
#define JW_TRT_DT_UINT8 5
#define JW_TRT_DT_FP8 6
#define JW_TRT_DT_BF16 7
#define JW_TRT_DT_INT64 8

#define JW_TRT_MAX_DIMS 8

/* Called from whatever thread TensorRT logs on. Must not unwind. */
typedef void (*jw_trt_log_fn)(void* user, int32_t severity, const char* msg);
/* kind: JW_TRT_PHASE_*; value: number of steps (START) or the step index (STEP).
 * Return non-zero to cancel the build (only honoured on STEP). Must not unwind. */
typedef int32_t (*jw_trt_progress_fn)(
    void* user, int32_t kind, const char* phase, const char* parent, int32_t value);

typedef struct jw_trt_runtime jw_trt_runtime;
typedef struct jw_trt_build jw_trt_build;
typedef struct jw_trt_engine jw_trt_engine;
typedef struct jw_trt_context jw_trt_context;
typedef struct jw_trt_blob jw_trt_blob;

/* Text of the last failure on this thread ("" when none). Never NULL. */
const char* jw_trt_last_error(void);

/* NV_TENSORRT_VERSION of the headers the shim was compiled against (major*10000+minor*100+patch). */
int32_t jw_trt_header_version(void);

/* Opens libnvinfer (nvinfer_path, or "libnvinfer.so.<compiled major>" when NULL), checks
 * getInferLibVersion() against the compiled major, creates the IRuntime and installs the logger.
 * min_severity: messages above it (numerically) are not forwarded. The builder entry point is
 * looked up too but is optional (a runtime-only library such as libnvinfer_lean has none):
 * without it jw_trt_build_begin fails with JW_TRT_ERR_UNAVAILABLE. */
jw_trt_status jw_trt_runtime_open(const char* nvinfer_path, jw_trt_log_fn log, void* log_user,
    int32_t min_severity, jw_trt_runtime** out);
void jw_trt_runtime_destroy(jw_trt_runtime* rt);
/* getInferLibVersion() of the opened library. */
jw_trt_status jw_trt_runtime_lib_version(const jw_trt_runtime* rt, int32_t* out);
/* IRuntime::getNbDLACores(). */
jw_trt_status jw_trt_runtime_dla_cores(const jw_trt_runtime* rt, int32_t* out);

/* ---- blobs (serialised plans, timing caches, inspector text) ---- */
jw_trt_status jw_trt_blob_data(const jw_trt_blob* blob, const uint8_t** data, size_t* len);
void jw_trt_blob_destroy(jw_trt_blob* blob);

/* ---- build ---- */
typedef struct jw_trt_build_options {
    const uint8_t* onnx;
    size_t onnx_len;
    /* NULL: "libnvonnxparser.so.<compiled major>". */
    const char* onnxparser_path;
    /* 1: ask for FP16 kernels (BuilderFlag::kFP16 on TensorRT 10; on 11 precision comes
     * from the model's tensor types and this only records the request). */
    int32_t fp16;
    /* DLA core, or -1 for GPU only. */
    int32_t dla_core;
    /* Batch profile for inputs whose first dimension is dynamic. */
    int32_t min_batch;
    int32_t opt_batch;
    int32_t max_batch;
    /* Serialised timing cache to start from (may be NULL / 0). */
    const uint8_t* timing_cache;
    size_t timing_cache_len;
    /* Workspace pool limit in bytes (0: TensorRT's default). */
    uint64_t workspace_bytes;
    jw_trt_progress_fn progress;
    void* progress_user;
} jw_trt_build_options;

/* Parses the ONNX model, creates the builder config (FP16, DLA core and default device DLA
 * when dla_core >= 0, detailed profiling verbosity for the inspector, the optimisation
 * profile, the timing cache, the progress monitor). Does not build yet. */
jw_trt_status jw_trt_build_begin(
    jw_trt_runtime* rt, const jw_trt_build_options* opts, jw_trt_build** out);
void jw_trt_build_destroy(jw_trt_build* b);
/* Network layers, with IBuilderConfig::canRunOnDLA for the configured DLA core (0 when no
 * DLA core is configured). name stays valid as long as the build session. */
jw_trt_status jw_trt_build_layer_count(const jw_trt_build* b, int32_t* out);
jw_trt_status jw_trt_build_layer(const jw_trt_build* b, int32_t index, const char** name,
    int32_t* can_run_on_dla, int32_t* output_type);
/* Allows (1) or forbids (0) GPU fallback for layers the DLA cannot run (kGPU_FALLBACK). */
jw_trt_status jw_trt_build_set_gpu_fallback(jw_trt_build* b, int32_t allow);
/* Replaces the progress callback (NULL: none). The callback is only called from inside
 * jw_trt_build_run, on the calling thread. */
jw_trt_status jw_trt_build_set_progress(jw_trt_build* b, jw_trt_progress_fn progress, void* user);
/* IBuilder::buildSerializedNetwork. Returns the plan. Progress is forwarded meanwhile. */
jw_trt_status jw_trt_build_run(jw_trt_build* b, jw_trt_blob** plan);
/* The (updated) timing cache, serialised. */
jw_trt_status jw_trt_build_timing_cache(const jw_trt_build* b, jw_trt_blob** out);

/* ---- engine ---- */
/* IRuntime::setDLACore(dla_core) when dla_core >= 0, then deserializeCudaEngine. */
jw_trt_status jw_trt_engine_deserialize(jw_trt_runtime* rt, const uint8_t* plan, size_t len,
    int32_t dla_core, jw_trt_engine** out);
void jw_trt_engine_destroy(jw_trt_engine* e);
jw_trt_status jw_trt_engine_io_count(const jw_trt_engine* e, int32_t* out);
/* I/O tensor `index`: name (valid while the engine lives), 1 if input, data type, and the
 * engine shape (-1 for dynamic dims), plus the profile-0 max shape for inputs (equal to the
 * engine shape for outputs and static inputs). dims arrays hold JW_TRT_MAX_DIMS entries. */
jw_trt_status jw_trt_engine_io(const jw_trt_engine* e, int32_t index, const char** name,
    int32_t* is_input, int32_t* dtype, int32_t* nb_dims, int64_t* dims, int64_t* max_dims);
/* IEngineInspector::getEngineInformation(kJSON). */
jw_trt_status jw_trt_engine_inspect_json(const jw_trt_engine* e, jw_trt_blob** out);

/* ---- execution context ---- */
jw_trt_status jw_trt_context_create(jw_trt_engine* e, jw_trt_context** out);
void jw_trt_context_destroy(jw_trt_context* c);
jw_trt_status jw_trt_context_set_input_shape(
    jw_trt_context* c, const char* name, int32_t nb_dims, const int64_t* dims);
/* Output shape as resolved for the current input shapes. */
jw_trt_status jw_trt_context_tensor_shape(
    const jw_trt_context* c, const char* name, int32_t* nb_dims, int64_t* dims);
jw_trt_status jw_trt_context_set_tensor_address(jw_trt_context* c, const char* name, void* ptr);
/* IExecutionContext::enqueueV3 on `stream` (a cudaStream_t / CUstream). */
jw_trt_status jw_trt_context_enqueue(jw_trt_context* c, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* JETWATCH_TRT_SHIM_H */
