//! Thin owning wrappers over the C ABI of `ffi/tensorrt/shim.h`: each status becomes a
//! `Result`, each handle is freed exactly once on drop. Only this module and `engine.rs`
//! contain `unsafe`.

use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use jetwatch_ffi::tensorrt as sys;

use super::version::TrtVersion;
use super::ProgressTracker;
use crate::error::{EngineError, Unavailable};

const BACKEND: &str = "tensorrt";

fn last_error() -> String {
    // SAFETY: jw_trt_last_error never returns null; the text is valid until the next shim
    // call on this thread, and it is copied right away.
    unsafe { CStr::from_ptr(sys::jw_trt_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn check(status: sys::jw_trt_status, what: &str) -> Result<(), EngineError> {
    if status == sys::JW_TRT_OK {
        return Ok(());
    }
    let msg = last_error();
    Err(match status {
        sys::JW_TRT_ERR_UNAVAILABLE | sys::JW_TRT_ERR_VERSION => Unavailable {
            backend: BACKEND,
            reason: format!("{what}: {msg}"),
        }
        .into(),
        _ => EngineError::Backend {
            backend: BACKEND,
            msg: format!("{what}: {msg}"),
        },
    })
}

unsafe extern "C" fn log_callback(_user: *mut c_void, severity: i32, msg: *const c_char) {
    // A panic must not unwind into C++: catch it and drop the message.
    let _ = catch_unwind(|| {
        if msg.is_null() {
            return;
        }
        // SAFETY: the shim passes a NUL-terminated string valid for this call.
        let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
        match severity {
            sys::JW_TRT_SEV_INTERNAL_ERROR | sys::JW_TRT_SEV_ERROR => {
                log::error!(target: "tensorrt", "{text}")
            }
            sys::JW_TRT_SEV_WARNING => log::warn!(target: "tensorrt", "{text}"),
            sys::JW_TRT_SEV_INFO => log::info!(target: "tensorrt", "{text}"),
            _ => log::debug!(target: "tensorrt", "{text}"),
        }
    });
}

/// Environment variables naming the TensorRT libraries to open instead of the default
/// sonames (`libnvinfer.so.<major>`, `libnvonnxparser.so.<major>`): for installs outside the
/// loader's path, such as NVIDIA's PyPI wheels (`site-packages/tensorrt_libs/`).
pub(crate) const NVINFER_ENV: &str = "JETWATCH_NVINFER";
pub(crate) const NVONNXPARSER_ENV: &str = "JETWATCH_NVONNXPARSER";

/// The path in `var` as a C string, if set.
fn library_override(var: &str) -> Result<Option<CString>, EngineError> {
    match std::env::var_os(var) {
        None => Ok(None),
        Some(v) => {
            use std::os::unix::ffi::OsStrExt;
            CString::new(v.as_bytes())
                .map(Some)
                .map_err(|_| EngineError::Backend {
                    backend: BACKEND,
                    msg: format!("{var} contains a NUL byte"),
                })
        }
    }
}

/// libnvinfer opened, version checked, IRuntime created. Shared by builds and engines.
pub(crate) struct Runtime {
    raw: NonNull<sys::jw_trt_runtime>,
    pub(crate) lib_version: TrtVersion,
}

// SAFETY: IRuntime and the shim's runtime struct may be used from any thread; jetwatch
// serialises builds/deserialisation per runtime through &mut or Arc ownership, and the
// logger callback is thread-safe (the shim guards its state with a mutex).
unsafe impl Send for Runtime {}
// SAFETY: the only &self methods (version, DLA count) are read-only queries.
unsafe impl Sync for Runtime {}

impl Runtime {
    pub(crate) fn open() -> Result<Arc<Runtime>, EngineError> {
        let min = if log::log_enabled!(target: "tensorrt", log::Level::Debug) {
            sys::JW_TRT_SEV_VERBOSE
        } else if log::log_enabled!(target: "tensorrt", log::Level::Info) {
            sys::JW_TRT_SEV_INFO
        } else {
            sys::JW_TRT_SEV_WARNING
        };
        let path = library_override(NVINFER_ENV)?;
        let mut raw = ptr::null_mut();
        // SAFETY: the path is null (the default soname) or a NUL-terminated string that
        // outlives the call; the callback is a valid extern "C" fn that never unwinds; `raw`
        // is a valid out pointer.
        let st = unsafe {
            sys::jw_trt_runtime_open(
                path.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
                Some(log_callback),
                ptr::null_mut(),
                min,
                &mut raw,
            )
        };
        check(st, "opening TensorRT")?;
        let raw = NonNull::new(raw).ok_or_else(|| EngineError::Backend {
            backend: BACKEND,
            msg: "jw_trt_runtime_open returned no handle".into(),
        })?;
        let mut v = 0;
        // SAFETY: raw is a live runtime handle; v is a valid out pointer.
        let st = unsafe { sys::jw_trt_runtime_lib_version(raw.as_ptr(), &mut v) };
        // Owned from here on, so an error below still destroys the runtime exactly once.
        let mut rt = Runtime {
            raw,
            lib_version: TrtVersion::new(0, 0, 0),
        };
        check(st, "getInferLibVersion")?;
        rt.lib_version = TrtVersion::from_encoded(v).ok_or_else(|| EngineError::Backend {
            backend: BACKEND,
            msg: format!("getInferLibVersion returned {v}"),
        })?;
        Ok(Arc::new(rt))
    }

    pub(crate) fn header_version() -> TrtVersion {
        // SAFETY: a pure function returning a compile-time constant.
        let v = unsafe { sys::jw_trt_header_version() };
        TrtVersion::from_encoded(v).unwrap_or(TrtVersion::new(0, 0, 0))
    }

    pub(crate) fn dla_cores(&self) -> Result<u32, EngineError> {
        let mut n = 0;
        // SAFETY: live handle, valid out pointer.
        check(
            unsafe { sys::jw_trt_runtime_dla_cores(self.raw.as_ptr(), &mut n) },
            "getNbDLACores",
        )?;
        Ok(n.max(0) as u32)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: the handle is live and dropped once; builds and engines hold an Arc to
        // this runtime, so none outlives it.
        unsafe { sys::jw_trt_runtime_destroy(self.raw.as_ptr()) }
    }
}

/// Bytes owned by the shim (a plan, a timing cache, inspector text).
pub(crate) struct Blob(NonNull<sys::jw_trt_blob>);

impl Blob {
    fn from_raw(raw: *mut sys::jw_trt_blob, what: &str) -> Result<Blob, EngineError> {
        NonNull::new(raw)
            .map(Blob)
            .ok_or_else(|| EngineError::Backend {
                backend: BACKEND,
                msg: format!("{what} returned no data"),
            })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        let mut data = ptr::null();
        let mut len = 0usize;
        // SAFETY: live blob, valid out pointers.
        let st = unsafe { sys::jw_trt_blob_data(self.0.as_ptr(), &mut data, &mut len) };
        if st != sys::JW_TRT_OK || data.is_null() || len == 0 {
            return &[];
        }
        // SAFETY: the shim guarantees `data` points at `len` bytes owned by the blob, which
        // lives as long as &self.
        unsafe { std::slice::from_raw_parts(data, len) }
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        // SAFETY: live handle, dropped once.
        unsafe { sys::jw_trt_blob_destroy(self.0.as_ptr()) }
    }
}

/// Options the shim needs to start a build.
pub(crate) struct BuildInput<'a> {
    pub onnx: &'a [u8],
    pub fp16: bool,
    pub dla_core: Option<u32>,
    pub batch: (u32, u32, u32),
    pub timing_cache: Option<&'a [u8]>,
    pub workspace_bytes: u64,
}

struct ProgressCtx<'a> {
    tracker: ProgressTracker,
    sink: &'a mut dyn FnMut(&str),
}

unsafe extern "C" fn progress_callback(
    user: *mut c_void,
    kind: i32,
    phase: *const c_char,
    parent: *const c_char,
    value: i32,
) -> i32 {
    let r = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `user` is the &mut ProgressCtx set up in Build::run for the duration of
        // buildSerializedNetwork, the only time the shim calls back; TensorRT calls the
        // monitor from the building thread only.
        let ctx = unsafe { &mut *(user as *mut ProgressCtx<'_>) };
        let text = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: NUL-terminated string valid for this call.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        if let Some(line) = ctx.tracker.event(kind, &text(phase), &text(parent), value) {
            (ctx.sink)(&line);
        }
    }));
    // A panicking progress sink cancels the build rather than unwinding into TensorRT.
    if r.is_err() {
        1
    } else {
        0
    }
}

/// A parsed network with its builder config, before `buildSerializedNetwork`. Borrows the
/// model bytes: whether the ONNX parser keeps pointers into them is not documented, so they
/// must outlive the build session.
pub(crate) struct Build<'a> {
    raw: NonNull<sys::jw_trt_build>,
    _rt: Arc<Runtime>,
    _model: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> Build<'a> {
    pub(crate) fn begin(
        rt: &Arc<Runtime>,
        input: &BuildInput<'a>,
    ) -> Result<Build<'a>, EngineError> {
        let parser = library_override(NVONNXPARSER_ENV)?;
        let opts = sys::jw_trt_build_options {
            onnx: input.onnx.as_ptr(),
            onnx_len: input.onnx.len(),
            onnxparser_path: parser.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
            fp16: input.fp16 as i32,
            dla_core: input.dla_core.map(|c| c as i32).unwrap_or(-1),
            min_batch: input.batch.0 as i32,
            opt_batch: input.batch.1 as i32,
            max_batch: input.batch.2 as i32,
            timing_cache: input
                .timing_cache
                .map(|c| c.as_ptr())
                .unwrap_or(ptr::null()),
            timing_cache_len: input.timing_cache.map(|c| c.len()).unwrap_or(0),
            workspace_bytes: input.workspace_bytes,
            // Installed per run (Build::run) through the monitor's user pointer: the shim's
            // monitor is created here with no callback.
            progress: None,
            progress_user: ptr::null_mut(),
        };
        let mut raw = ptr::null_mut();
        // SAFETY: rt is live; opts points at buffers valid for this call (the parser path
        // too: `parser` lives to the end of this function); the model bytes
        // stay borrowed by the returned Build ('a), the timing cache is copied by
        // createTimingCache.
        check(
            unsafe { sys::jw_trt_build_begin(rt.raw.as_ptr(), &opts, &mut raw) },
            "preparing the engine build",
        )?;
        let raw = NonNull::new(raw).ok_or_else(|| EngineError::Backend {
            backend: BACKEND,
            msg: "jw_trt_build_begin returned no handle".into(),
        })?;
        Ok(Build {
            raw,
            _rt: rt.clone(),
            _model: std::marker::PhantomData,
        })
    }

    /// (layer name, can run on the configured DLA core, output data type).
    pub(crate) fn layers(&self) -> Result<Vec<(String, bool, i32)>, EngineError> {
        let mut n = 0;
        // SAFETY: live handle, valid out pointer.
        check(
            unsafe { sys::jw_trt_build_layer_count(self.raw.as_ptr(), &mut n) },
            "counting layers",
        )?;
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for i in 0..n {
            let mut name = ptr::null();
            let mut dla = 0;
            let mut dt = 0;
            // SAFETY: live handle, index in range, valid out pointers.
            check(
                unsafe {
                    sys::jw_trt_build_layer(self.raw.as_ptr(), i, &mut name, &mut dla, &mut dt)
                },
                "reading a layer",
            )?;
            let name = if name.is_null() {
                format!("layer {i}")
            } else {
                // SAFETY: the name lives as long as the network (this Build).
                unsafe { CStr::from_ptr(name) }
                    .to_string_lossy()
                    .into_owned()
            };
            out.push((name, dla != 0, dt));
        }
        Ok(out)
    }

    pub(crate) fn set_gpu_fallback(&mut self, allow: bool) -> Result<(), EngineError> {
        // SAFETY: live handle.
        check(
            unsafe { sys::jw_trt_build_set_gpu_fallback(self.raw.as_ptr(), allow as i32) },
            "setting GPU fallback",
        )
    }

    /// Builds the plan, forwarding progress lines to `sink`.
    pub(crate) fn run(&mut self, sink: &mut dyn FnMut(&str)) -> Result<Blob, EngineError> {
        let mut ctx = ProgressCtx {
            tracker: ProgressTracker::default(),
            sink,
        };
        let mut plan = ptr::null_mut();
        // SAFETY: live handle; the progress context lives on this stack frame for the whole
        // call, and the shim drops the callback again before returning.
        let st = unsafe {
            sys::jw_trt_build_set_progress(
                self.raw.as_ptr(),
                Some(progress_callback),
                &mut ctx as *mut ProgressCtx<'_> as *mut c_void,
            )
        };
        check(st, "installing the progress monitor")?;
        // SAFETY: live handle, valid out pointer.
        let st = unsafe { sys::jw_trt_build_run(self.raw.as_ptr(), &mut plan) };
        // Read the error text before the next shim call.
        let result = check(st, "building the engine");
        // SAFETY: live handle; clears the callback so no dangling context stays installed.
        unsafe { sys::jw_trt_build_set_progress(self.raw.as_ptr(), None, ptr::null_mut()) };
        result?;
        Blob::from_raw(plan, "buildSerializedNetwork")
    }

    pub(crate) fn timing_cache(&self) -> Result<Blob, EngineError> {
        let mut out = ptr::null_mut();
        // SAFETY: live handle, valid out pointer.
        check(
            unsafe { sys::jw_trt_build_timing_cache(self.raw.as_ptr(), &mut out) },
            "serialising the timing cache",
        )?;
        Blob::from_raw(out, "ITimingCache::serialize")
    }
}

impl Drop for Build<'_> {
    fn drop(&mut self) {
        // SAFETY: live handle, dropped once, before the Arc<Runtime> it was made from.
        unsafe { sys::jw_trt_build_destroy(self.raw.as_ptr()) }
    }
}

/// An I/O tensor of a deserialized engine.
#[derive(Debug, Clone)]
pub(crate) struct IoTensor {
    pub name: CString,
    pub is_input: bool,
    pub dtype: i32,
    pub dims: Vec<i64>,
    pub max_dims: Vec<i64>,
}

/// A deserialized engine.
pub(crate) struct Engine {
    raw: NonNull<sys::jw_trt_engine>,
    rt: Arc<Runtime>,
}

// SAFETY: ICudaEngine is immutable after deserialisation and may be used from any thread.
unsafe impl Send for Engine {}

impl Engine {
    pub(crate) fn deserialize(
        rt: &Arc<Runtime>,
        plan: &[u8],
        dla_core: Option<u32>,
    ) -> Result<Engine, EngineError> {
        let mut raw = ptr::null_mut();
        // SAFETY: live runtime; plan is a valid slice for the call (TensorRT copies it).
        check(
            unsafe {
                sys::jw_trt_engine_deserialize(
                    rt.raw.as_ptr(),
                    plan.as_ptr(),
                    plan.len(),
                    dla_core.map(|c| c as i32).unwrap_or(-1),
                    &mut raw,
                )
            },
            "deserialising the engine",
        )?;
        let raw = NonNull::new(raw).ok_or_else(|| EngineError::Backend {
            backend: BACKEND,
            msg: "deserializeCudaEngine returned no engine".into(),
        })?;
        Ok(Engine {
            raw,
            rt: rt.clone(),
        })
    }

    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    pub(crate) fn io(&self) -> Result<Vec<IoTensor>, EngineError> {
        let mut n = 0;
        // SAFETY: live handle, valid out pointer.
        check(
            unsafe { sys::jw_trt_engine_io_count(self.raw.as_ptr(), &mut n) },
            "counting I/O tensors",
        )?;
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for i in 0..n {
            let mut name = ptr::null();
            let (mut inp, mut dt, mut nd) = (0, 0, 0);
            let mut dims = [0i64; sys::JW_TRT_MAX_DIMS];
            let mut maxd = [0i64; sys::JW_TRT_MAX_DIMS];
            // SAFETY: live handle, index in range, out arrays hold JW_TRT_MAX_DIMS entries.
            check(
                unsafe {
                    sys::jw_trt_engine_io(
                        self.raw.as_ptr(),
                        i,
                        &mut name,
                        &mut inp,
                        &mut dt,
                        &mut nd,
                        dims.as_mut_ptr(),
                        maxd.as_mut_ptr(),
                    )
                },
                "reading an I/O tensor",
            )?;
            if name.is_null() {
                return Err(EngineError::Backend {
                    backend: BACKEND,
                    msg: format!("I/O tensor {i} has no name"),
                });
            }
            // SAFETY: the name lives as long as the engine; it is copied here.
            let name = unsafe { CStr::from_ptr(name) }.to_owned();
            let nd = nd.clamp(0, sys::JW_TRT_MAX_DIMS as i32) as usize;
            out.push(IoTensor {
                name,
                is_input: inp != 0,
                dtype: dt,
                dims: dims[..nd].to_vec(),
                max_dims: maxd[..nd].to_vec(),
            });
        }
        Ok(out)
    }

    pub(crate) fn inspect_json(&self) -> Result<String, EngineError> {
        let mut out = ptr::null_mut();
        // SAFETY: live handle, valid out pointer.
        check(
            unsafe { sys::jw_trt_engine_inspect_json(self.raw.as_ptr(), &mut out) },
            "inspecting the engine",
        )?;
        let blob = Blob::from_raw(out, "IEngineInspector")?;
        Ok(String::from_utf8_lossy(blob.bytes()).into_owned())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: live handle, dropped once; contexts made from it hold no reference past
        // their own drop, which TensorRtEngine orders first.
        unsafe { sys::jw_trt_engine_destroy(self.raw.as_ptr()) }
    }
}

/// An execution context. Must be dropped before the engine it was created from.
pub(crate) struct Context {
    raw: NonNull<sys::jw_trt_context>,
}

// SAFETY: an IExecutionContext may move between threads; it is used by one at a time (&mut).
unsafe impl Send for Context {}

impl Context {
    pub(crate) fn create(engine: &Engine) -> Result<Context, EngineError> {
        let mut raw = ptr::null_mut();
        // SAFETY: live engine, valid out pointer.
        check(
            unsafe { sys::jw_trt_context_create(engine.raw.as_ptr(), &mut raw) },
            "creating the execution context",
        )?;
        NonNull::new(raw)
            .map(|raw| Context { raw })
            .ok_or_else(|| EngineError::Backend {
                backend: BACKEND,
                msg: "createExecutionContext returned no context".into(),
            })
    }

    pub(crate) fn set_input_shape(&mut self, name: &CStr, dims: &[i64]) -> Result<(), EngineError> {
        // SAFETY: live context; name is NUL-terminated; dims has dims.len() entries (≤ 8 is
        // checked by the shim).
        check(
            unsafe {
                sys::jw_trt_context_set_input_shape(
                    self.raw.as_ptr(),
                    name.as_ptr(),
                    dims.len() as i32,
                    dims.as_ptr(),
                )
            },
            "setting the input shape",
        )
    }

    pub(crate) fn tensor_shape(&self, name: &CStr) -> Result<Vec<i64>, EngineError> {
        let mut nd = 0;
        let mut dims = [0i64; sys::JW_TRT_MAX_DIMS];
        // SAFETY: live context; out array holds JW_TRT_MAX_DIMS entries.
        check(
            unsafe {
                sys::jw_trt_context_tensor_shape(
                    self.raw.as_ptr(),
                    name.as_ptr(),
                    &mut nd,
                    dims.as_mut_ptr(),
                )
            },
            "reading a tensor shape",
        )?;
        Ok(dims[..nd.clamp(0, sys::JW_TRT_MAX_DIMS as i32) as usize].to_vec())
    }

    /// # Safety
    /// `ptr` must be device memory large enough for the tensor's largest shape, and stay
    /// valid (not freed) for as long as this context may enqueue work reading or writing it.
    pub(crate) unsafe fn set_tensor_address(
        &mut self,
        name: &CStr,
        ptr: u64,
    ) -> Result<(), EngineError> {
        // SAFETY: live context; validity of `ptr` is the caller's obligation.
        check(
            unsafe {
                sys::jw_trt_context_set_tensor_address(
                    self.raw.as_ptr(),
                    name.as_ptr(),
                    ptr as *mut c_void,
                )
            },
            "binding a tensor",
        )
    }

    /// # Safety
    /// `stream` must be a live CUstream of the context current on this thread (or null for
    /// the legacy default stream), and every bound address must still be valid.
    pub(crate) unsafe fn enqueue(&mut self, stream: *mut c_void) -> Result<(), EngineError> {
        // SAFETY: live context; the stream and bindings are the caller's obligation.
        check(
            unsafe { sys::jw_trt_context_enqueue(self.raw.as_ptr(), stream) },
            "enqueueV3",
        )
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: live handle, dropped once.
        unsafe { sys::jw_trt_context_destroy(self.raw.as_ptr()) }
    }
}

/// Reads a file, mapping the error to a model error naming the path.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, EngineError> {
    std::fs::read(path).map_err(|e| EngineError::Model {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}
