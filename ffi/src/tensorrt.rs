//! Raw declarations of jetwatch's TensorRT shim (`ffi/tensorrt/shim.h`): a narrow C ABI over
//! opaque handles. The shim is compiled into a static library by `build.rs` only when the
//! `tensorrt` feature is on; it opens `libnvinfer.so.<major>` and `libnvonnxparser.so.<major>`
//! itself with `dlopen`, so nothing here links against TensorRT.
//!
//! Conventions (see shim.h): every fallible function returns a [`jw_trt_status`]
//! ([`JW_TRT_OK`] = 0); [`jw_trt_last_error`] gives the thread-local text; no C++ exception
//! crosses the boundary; destroy functions accept null.

use core::ffi::{c_char, c_void};

pub type jw_trt_status = i32;
pub const JW_TRT_OK: jw_trt_status = 0;
pub const JW_TRT_ERR_UNAVAILABLE: jw_trt_status = 1;
pub const JW_TRT_ERR_VERSION: jw_trt_status = 2;
pub const JW_TRT_ERR_INVALID: jw_trt_status = 3;
pub const JW_TRT_ERR_PARSE: jw_trt_status = 4;
pub const JW_TRT_ERR_BUILD: jw_trt_status = 5;
pub const JW_TRT_ERR_RUNTIME: jw_trt_status = 6;
pub const JW_TRT_ERR_INTERNAL: jw_trt_status = 7;

/// `nvinfer1::ILogger::Severity` values.
pub const JW_TRT_SEV_INTERNAL_ERROR: i32 = 0;
pub const JW_TRT_SEV_ERROR: i32 = 1;
pub const JW_TRT_SEV_WARNING: i32 = 2;
pub const JW_TRT_SEV_INFO: i32 = 3;
pub const JW_TRT_SEV_VERBOSE: i32 = 4;

/// Progress event kinds (`nvinfer1::IProgressMonitor` callbacks).
pub const JW_TRT_PHASE_START: i32 = 0;
pub const JW_TRT_PHASE_STEP: i32 = 1;
pub const JW_TRT_PHASE_FINISH: i32 = 2;

/// `nvinfer1::DataType` values.
pub const JW_TRT_DT_FLOAT: i32 = 0;
pub const JW_TRT_DT_HALF: i32 = 1;
pub const JW_TRT_DT_INT8: i32 = 2;
pub const JW_TRT_DT_INT32: i32 = 3;
pub const JW_TRT_DT_BOOL: i32 = 4;
pub const JW_TRT_DT_UINT8: i32 = 5;
pub const JW_TRT_DT_FP8: i32 = 6;
pub const JW_TRT_DT_BF16: i32 = 7;
pub const JW_TRT_DT_INT64: i32 = 8;

pub const JW_TRT_MAX_DIMS: usize = 8;

/// Logger callback; called on any thread TensorRT logs from. Must not unwind.
pub type jw_trt_log_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, severity: i32, msg: *const c_char)>;
/// Progress callback; return non-zero from a STEP event to cancel. Must not unwind.
pub type jw_trt_progress_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        kind: i32,
        phase: *const c_char,
        parent: *const c_char,
        value: i32,
    ) -> i32,
>;

#[repr(C)]
pub struct jw_trt_runtime {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct jw_trt_build {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct jw_trt_engine {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct jw_trt_context {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct jw_trt_blob {
    _opaque: [u8; 0],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct jw_trt_build_options {
    pub onnx: *const u8,
    pub onnx_len: usize,
    pub onnxparser_path: *const c_char,
    pub fp16: i32,
    pub dla_core: i32,
    pub min_batch: i32,
    pub opt_batch: i32,
    pub max_batch: i32,
    pub timing_cache: *const u8,
    pub timing_cache_len: usize,
    pub workspace_bytes: u64,
    pub progress: jw_trt_progress_fn,
    pub progress_user: *mut c_void,
}

#[cfg(feature = "tensorrt")]
extern "C" {
    pub fn jw_trt_last_error() -> *const c_char;
    pub fn jw_trt_header_version() -> i32;

    pub fn jw_trt_runtime_open(
        nvinfer_path: *const c_char,
        log: jw_trt_log_fn,
        log_user: *mut c_void,
        min_severity: i32,
        out: *mut *mut jw_trt_runtime,
    ) -> jw_trt_status;
    pub fn jw_trt_runtime_destroy(rt: *mut jw_trt_runtime);
    pub fn jw_trt_runtime_lib_version(rt: *const jw_trt_runtime, out: *mut i32) -> jw_trt_status;
    pub fn jw_trt_runtime_dla_cores(rt: *const jw_trt_runtime, out: *mut i32) -> jw_trt_status;

    pub fn jw_trt_blob_data(
        blob: *const jw_trt_blob,
        data: *mut *const u8,
        len: *mut usize,
    ) -> jw_trt_status;
    pub fn jw_trt_blob_destroy(blob: *mut jw_trt_blob);

    pub fn jw_trt_build_begin(
        rt: *mut jw_trt_runtime,
        opts: *const jw_trt_build_options,
        out: *mut *mut jw_trt_build,
    ) -> jw_trt_status;
    pub fn jw_trt_build_destroy(b: *mut jw_trt_build);
    pub fn jw_trt_build_layer_count(b: *const jw_trt_build, out: *mut i32) -> jw_trt_status;
    pub fn jw_trt_build_layer(
        b: *const jw_trt_build,
        index: i32,
        name: *mut *const c_char,
        can_run_on_dla: *mut i32,
        output_type: *mut i32,
    ) -> jw_trt_status;
    pub fn jw_trt_build_set_gpu_fallback(b: *mut jw_trt_build, allow: i32) -> jw_trt_status;
    pub fn jw_trt_build_set_progress(
        b: *mut jw_trt_build,
        progress: jw_trt_progress_fn,
        user: *mut c_void,
    ) -> jw_trt_status;
    pub fn jw_trt_build_run(b: *mut jw_trt_build, plan: *mut *mut jw_trt_blob) -> jw_trt_status;
    pub fn jw_trt_build_timing_cache(
        b: *const jw_trt_build,
        out: *mut *mut jw_trt_blob,
    ) -> jw_trt_status;

    pub fn jw_trt_engine_deserialize(
        rt: *mut jw_trt_runtime,
        plan: *const u8,
        len: usize,
        dla_core: i32,
        out: *mut *mut jw_trt_engine,
    ) -> jw_trt_status;
    pub fn jw_trt_engine_destroy(e: *mut jw_trt_engine);
    pub fn jw_trt_engine_io_count(e: *const jw_trt_engine, out: *mut i32) -> jw_trt_status;
    pub fn jw_trt_engine_io(
        e: *const jw_trt_engine,
        index: i32,
        name: *mut *const c_char,
        is_input: *mut i32,
        dtype: *mut i32,
        nb_dims: *mut i32,
        dims: *mut i64,
        max_dims: *mut i64,
    ) -> jw_trt_status;
    pub fn jw_trt_engine_inspect_json(
        e: *const jw_trt_engine,
        out: *mut *mut jw_trt_blob,
    ) -> jw_trt_status;

    pub fn jw_trt_context_create(
        e: *mut jw_trt_engine,
        out: *mut *mut jw_trt_context,
    ) -> jw_trt_status;
    pub fn jw_trt_context_destroy(c: *mut jw_trt_context);
    pub fn jw_trt_context_set_input_shape(
        c: *mut jw_trt_context,
        name: *const c_char,
        nb_dims: i32,
        dims: *const i64,
    ) -> jw_trt_status;
    pub fn jw_trt_context_tensor_shape(
        c: *const jw_trt_context,
        name: *const c_char,
        nb_dims: *mut i32,
        dims: *mut i64,
    ) -> jw_trt_status;
    pub fn jw_trt_context_set_tensor_address(
        c: *mut jw_trt_context,
        name: *const c_char,
        ptr: *mut c_void,
    ) -> jw_trt_status;
    pub fn jw_trt_context_enqueue(c: *mut jw_trt_context, stream: *mut c_void) -> jw_trt_status;
}
