//! ONNX Runtime engine (the `ort` crate with `load-dynamic`; `libonnxruntime.so` is opened at
//! run time, never linked).
//!
//! Layers: `ort`'s safe API loads the library, builds the session and reads the model's
//! inputs, outputs and metadata (load time only). The frame path goes through the raw C API
//! (`OrtApi::Run`, ONNX Runtime `onnxruntime_c_api.h`) with `OrtValue`s created once over our
//! own pre-allocated host tensors (`CreateTensorWithDataAsOrtValue`), one set per batch size,
//! and pre-built arrays of C-string names: `run` makes no Rust allocation (ort's safe
//! `Session::run` and `TensorRefMut::from_raw` allocate per call; `IoBinding::bind_input`
//! on a borrowed tensor deadlocked in rc.15, see CRATES.md).
//!
//! Library search order ([`locate_onnxruntime`]): `OrtOptions::library`, `ORT_DYLIB_PATH`,
//! the `onnxruntime` Python wheel (`site-packages/onnxruntime/capi/`), then the standard
//! library directories and `LD_LIBRARY_PATH`. The file is checked to exist before `ort` sees
//! it, because `ort` panics when it cannot load its library lazily.

use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Mutex;

use ort::session::Session;
use ort::sys as ffi;
use ort::value::{TensorElementType, ValueType};
use ort::AsPointer;

use super::describe::{self, read_model, ImageInput};
use super::{Engine, ModelInfo};
use crate::config::ModelConfig;
use crate::error::{EngineError, Unavailable};
use crate::postprocess::HeadKind;
use crate::tensor::{DType, Tensor, TensorMem, TensorSpec};

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrtDevice {
    #[default]
    Cpu,
    /// CUDA execution provider on this device ordinal: inputs and outputs in device memory,
    /// the model running on the pipeline's CUDA stream (needs the `cuda` feature and
    /// `libonnxruntime_providers_cuda.so` next to `libonnxruntime.so`).
    Cuda { device: u32 },
}

/// Options decided when the engine is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtOptions {
    pub device: OrtDevice,
    /// Largest batch; a model with a fixed batch of 1 needs `max_batch = 1`.
    pub max_batch: usize,
    /// Intra-op threads (0: ONNX Runtime's default, one per physical core).
    pub threads: usize,
    /// Explicit `libonnxruntime.so`; overrides `ORT_DYLIB_PATH` and the search.
    pub library: Option<PathBuf>,
}

impl Default for OrtOptions {
    fn default() -> Self {
        OrtOptions {
            device: OrtDevice::Cpu,
            max_batch: 1,
            threads: 0,
            library: None,
        }
    }
}

const BACKEND_CPU: &str = "onnxruntime-cpu";
const BACKEND_CUDA: &str = "onnxruntime-cuda";

/// How to get the library, for error messages.
const HOW_TO_GET: &str = "install it with `pip install onnxruntime` (the CPU wheel ships \
     onnxruntime/capi/libonnxruntime.so.*) or unpack an ONNX Runtime release from \
     https://github.com/microsoft/onnxruntime/releases, then set ORT_DYLIB_PATH to the file";

/// Finds `libonnxruntime.so` (search order in the module documentation). `explicit` is
/// `OrtOptions::library`. A named file that does not exist is an error (no fallback), so
/// a typo in `ORT_DYLIB_PATH` is reported rather than silently replaced.
pub fn locate_onnxruntime(explicit: Option<&Path>) -> Result<PathBuf, Unavailable> {
    let unavailable = |reason: String| Unavailable {
        backend: BACKEND_CPU,
        reason,
    };
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(unavailable(format!(
                "libonnxruntime.so not found at {} (the configured path); {HOW_TO_GET}",
                p.display()
            )))
        };
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(unavailable(format!(
                "libonnxruntime.so not found at ORT_DYLIB_PATH={}; {HOW_TO_GET}",
                p.display()
            )))
        };
    }
    let mut searched = Vec::new();
    for dir in wheel_dirs().into_iter().chain(system_dirs()) {
        if let Some(f) = find_lib_in(&dir) {
            return Ok(f);
        }
        searched.push(dir.display().to_string());
    }
    Err(unavailable(format!(
        "libonnxruntime.so not found (ORT_DYLIB_PATH is not set; searched the onnxruntime \
         Python wheel and {}); {HOW_TO_GET}",
        searched.join(", ")
    )))
}

/// `libonnxruntime.so` or the newest-looking `libonnxruntime.so.1.*` in `dir`.
fn find_lib_in(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join("libonnxruntime.so");
    if plain.is_file() {
        return Some(plain);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so."))
                && p.is_file()
        })
        .collect();
    found.sort();
    found.pop()
}

/// `…/site-packages/onnxruntime/capi` directories of Python installations we can see.
fn wheel_dirs() -> Vec<PathBuf> {
    let mut lib_dirs: Vec<PathBuf> =
        vec![PathBuf::from("/usr/lib"), PathBuf::from("/usr/local/lib")];
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var) {
            lib_dirs.push(PathBuf::from(v).join("lib"));
        }
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        lib_dirs.push(home.join(".local/lib"));
        if let Ok(rd) = std::fs::read_dir(home.join(".pyenv/versions")) {
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path().join("lib")))
                .collect();
            v.sort();
            lib_dirs.extend(v.into_iter().rev());
        }
    }
    let mut out = Vec::new();
    for lib in lib_dirs {
        let Ok(rd) = std::fs::read_dir(&lib) else {
            continue;
        };
        let mut pys: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python3"))
            })
            .collect();
        pys.sort();
        for py in pys.into_iter().rev() {
            for sub in ["site-packages", "dist-packages"] {
                out.push(py.join(sub).join("onnxruntime/capi"));
            }
        }
    }
    out
}

fn system_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/opt/onnxruntime/lib",
    ] {
        v.push(PathBuf::from(d));
    }
    v
}

/// What `jetwatch probe` reports about ONNX Runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtProbe {
    /// The library that was loaded.
    pub library: PathBuf,
    /// `GetBuildInfoString`, e.g. "ORT Build Info: git-branch=rel-1.32.0, …".
    pub build_info: String,
}

/// Locates and loads `libonnxruntime.so` (see [`locate_onnxruntime`]) and reports its build.
pub fn probe_onnxruntime(explicit: Option<&Path>) -> Result<OrtProbe, EngineError> {
    let library = locate_onnxruntime(explicit)?;
    environment(&library)?;
    // SAFETY: the library is loaded (environment() succeeded); the returned string is a
    // static NUL-terminated string owned by ONNX Runtime.
    let build_info = unsafe {
        let p = (ort::api().GetBuildInfoString)();
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Ok(OrtProbe {
        library,
        build_info,
    })
}

/// The process-wide ONNX Runtime environment (`ort` allows one per process).
static ENVIRONMENT: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);

fn environment(lib: &Path) -> Result<ort::environment::Environment, EngineError> {
    let mut env = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = env.as_ref() {
        return Ok(e.clone());
    }
    let builder = ort::init_from(lib).map_err(|e| {
        EngineError::Unavailable(Unavailable {
            backend: BACKEND_CPU,
            reason: format!("cannot load {}: {e}; {HOW_TO_GET}", lib.display()),
        })
    })?;
    let e = builder
        .with_name("jetwatch")
        .build()
        .map_err(|e| EngineError::Backend {
            backend: BACKEND_CPU,
            msg: format!("cannot create the ONNX Runtime environment: {e}"),
        })?;
    *env = Some(e.clone());
    Ok(e)
}

/// Turns an `OrtStatus*` into a `Result` (allocates a message only on error).
fn status(st: ffi::OrtStatusPtr) -> Result<(), String> {
    if st.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: `st` is a non-null status returned by the C API; GetErrorMessage returns a
    // NUL-terminated string owned by the status, copied before ReleaseStatus frees it.
    let msg = unsafe {
        let m = (api.GetErrorMessage)(st.0);
        let s = if m.is_null() {
            "unknown ONNX Runtime error".to_string()
        } else {
            CStr::from_ptr(m).to_string_lossy().into_owned()
        };
        (api.ReleaseStatus)(st.0);
        s
    };
    Err(msg)
}

/// An owned `OrtMemoryInfo`: plain CPU memory, or CUDA device memory of one GPU.
struct CpuMemoryInfo(*mut ffi::OrtMemoryInfo);

impl CpuMemoryInfo {
    /// Device memory of CUDA device `device` (`CreateMemoryInfo("Cuda", OrtDeviceAllocator,
    /// device, OrtMemTypeDefault)`, ONNX Runtime `onnxruntime_c_api.h`; "Cuda" is the name the
    /// CUDA execution provider registers its allocator under).
    #[cfg(feature = "cuda")]
    fn cuda(device: u32) -> Result<Self, String> {
        let mut p = ptr::null_mut();
        // SAFETY: the name is a NUL-terminated literal; CreateMemoryInfo writes a new object
        // into `p` on success.
        status(unsafe {
            (ort::api().CreateMemoryInfo)(
                c"Cuda".as_ptr(),
                ffi::OrtAllocatorType::OrtDeviceAllocator,
                device as std::ffi::c_int,
                ffi::OrtMemType::OrtMemTypeDefault,
                &mut p,
            )
        })?;
        Ok(CpuMemoryInfo(p))
    }

    fn new() -> Result<Self, String> {
        let mut p = ptr::null_mut();
        // SAFETY: CreateCpuMemoryInfo writes a new object into `p` on success.
        status(unsafe {
            (ort::api().CreateCpuMemoryInfo)(
                ffi::OrtAllocatorType::OrtDeviceAllocator,
                ffi::OrtMemType::OrtMemTypeDefault,
                &mut p,
            )
        })?;
        Ok(CpuMemoryInfo(p))
    }
}

impl Drop for CpuMemoryInfo {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own the object; it is released exactly once.
            unsafe { (ort::api().ReleaseMemoryInfo)(self.0) };
        }
    }
}

/// An owned `OrtValue` over memory we own (the tensor must outlive it; `OrtEngine` keeps
/// both and releases the values first).
struct BorrowedValue(*mut ffi::OrtValue);

impl BorrowedValue {
    /// # Safety
    /// `data..data+bytes` must stay valid and unaliased by Rust references while ONNX Runtime
    /// reads or writes it through this value, and must outlive the value.
    unsafe fn new(
        info: &CpuMemoryInfo,
        data: *mut u8,
        bytes: usize,
        shape: &[i64],
        dtype: DType,
    ) -> Result<Self, String> {
        let ty = match dtype {
            DType::F32 => ffi::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
            DType::F16 => ffi::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
        };
        let mut v = ptr::null_mut();
        // SAFETY: the caller guarantees the memory; the shape array is read during the call.
        status(unsafe {
            (ort::api().CreateTensorWithDataAsOrtValue)(
                info.0,
                data.cast(),
                bytes,
                shape.as_ptr(),
                shape.len(),
                ty,
                &mut v,
            )
        })?;
        Ok(BorrowedValue(v))
    }
}

impl Drop for BorrowedValue {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own the value; releasing it does not free the borrowed data.
            unsafe { (ort::api().ReleaseValue)(self.0) };
        }
    }
}

/// The values for one batch size: input, then outputs, in the session's output order.
struct RunSet {
    _input: BorrowedValue,
    outputs: Vec<BorrowedValue>,
    /// Raw pointers of the above, in the layout `Run` takes.
    input_ptrs: [*const ffi::OrtValue; 1],
    output_ptrs: Vec<*mut ffi::OrtValue>,
}

/// The ONNX Runtime engine. See the module documentation.
pub struct OrtEngine {
    // Field order matters for Drop: value sets first, then memory info and session, and the
    // tensors (whose memory the values borrow) last.
    sets: Vec<RunSet>,
    _mem: CpuMemoryInfo,
    session: Session,
    _env: ort::environment::Environment,
    input_name: CString,
    /// Owns the strings `output_name_ptrs` points at.
    _output_names: Vec<CString>,
    input_name_ptrs: [*const c_char; 1],
    output_name_ptrs: Vec<*const c_char>,
    /// Bound input address and length, checked before every run.
    input_addr: (usize, usize),
    /// True when the model's batch is dynamic (one run set per batch size).
    dynamic_batch: bool,
    info: ModelInfo,
    backend: String,
    path: PathBuf,
    input: Tensor,
    outputs: Vec<Tensor>,
    /// Device memory behind `input` and `outputs` on the CUDA path (dropped after the values
    /// that borrow it), and the stream the session runs on.
    #[cfg(feature = "cuda")]
    _device_bufs: Vec<crate::gpu::DeviceBuffer>,
    #[cfg(feature = "cuda")]
    stream: Option<std::sync::Arc<crate::gpu::CudaStream>>,
}

/// Address and length of a tensor's bytes, host or device.
fn tensor_addr(t: &mut Tensor) -> (*mut u8, usize) {
    match &mut t.mem {
        TensorMem::Host(b) => (b.as_mut_ptr(), b.len()),
        TensorMem::Device { ptr, bytes, .. } => (*ptr as usize as *mut u8, *bytes),
    }
}

// SAFETY: the raw pointers are owned handles (values, names) used only through `&mut self`;
// ONNX Runtime sessions, values and memory infos may be used from any thread (the C API
// documents `Run` as thread-safe); the borrowed tensor memory is owned by the engine.
unsafe impl Send for OrtEngine {}

impl std::fmt::Debug for OrtEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtEngine")
            .field("path", &self.path)
            .field("backend", &self.backend)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn dtype_of(ty: TensorElementType) -> Option<DType> {
    match ty {
        TensorElementType::Float32 => Some(DType::F32),
        TensorElementType::Float16 => Some(DType::F16),
        _ => None,
    }
}

/// The CUDA stream a CUDA engine runs on (nothing without the `cuda` feature).
#[cfg(feature = "cuda")]
type StreamArg = Option<std::sync::Arc<crate::gpu::CudaStream>>;
#[cfg(not(feature = "cuda"))]
type StreamArg = Option<std::convert::Infallible>;

#[cfg(feature = "cuda")]
fn gpu_err(e: crate::gpu::GpuError) -> EngineError {
    match e {
        crate::gpu::GpuError::Unavailable(u) => EngineError::Unavailable(u),
        other => EngineError::Backend {
            backend: BACKEND_CUDA,
            msg: other.to_string(),
        },
    }
}

/// Appends the CUDA execution provider to the session options, running on `stream`.
///
/// `OrtCUDAProviderOptionsV2` through `CreateCUDAProviderOptions` /
/// `UpdateCUDAProviderOptions` / `UpdateCUDAProviderOptionsWithValue("user_compute_stream")`
/// / `SessionOptionsAppendExecutionProvider_CUDA_V2` (ONNX Runtime C API, and the CUDA EP
/// documentation "Configuration options": `user_compute_stream` makes every kernel of the
/// session run on that stream; `do_copy_in_default_stream` keeps ORT's own copies there too).
#[cfg(feature = "cuda")]
fn append_cuda(
    options: *mut ffi::OrtSessionOptions,
    device: u32,
    stream: &crate::gpu::CudaStream,
) -> Result<(), String> {
    let api = ort::api();
    let mut cuda = ptr::null_mut();
    // SAFETY: writes a new options object into `cuda`, released below.
    status(unsafe { (api.CreateCUDAProviderOptions)(&mut cuda) })?;
    let device_s = CString::new(device.to_string()).map_err(|e| e.to_string())?;
    let keys = [
        c"device_id".as_ptr(),
        c"do_copy_in_default_stream".as_ptr(),
        c"cudnn_conv_algo_search".as_ptr(),
        c"arena_extend_strategy".as_ptr(),
    ];
    let values = [
        device_s.as_ptr(),
        c"1".as_ptr(),
        c"HEURISTIC".as_ptr(),
        c"kSameAsRequested".as_ptr(),
    ];
    // Extra `key=value` pairs (comma-separated) from JETWATCH_ORT_CUDA_OPTIONS, applied after
    // ours, e.g. `cudnn_conv_algo_search=EXHAUSTIVE,prefer_nhwc=1` (start-up only).
    let extra: Vec<(CString, CString)> = std::env::var("JETWATCH_ORT_CUDA_OPTIONS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((CString::new(k.trim()).ok()?, CString::new(v.trim()).ok()?)))
        .collect();
    let mut keys = keys.to_vec();
    let mut values = values.to_vec();
    for (k, v) in &extra {
        keys.push(k.as_ptr());
        values.push(v.as_ptr());
    }
    // SAFETY: `cuda` is valid; the key and value arrays hold `keys.len()` NUL-terminated
    // strings alive for the call (`extra` outlives it); the stream handle stays valid for the
    // session's life (the engine keeps an `Arc` of it and drops the session first).
    let r = status(unsafe {
        (api.UpdateCUDAProviderOptions)(cuda, keys.as_ptr(), values.as_ptr(), keys.len())
    })
    .and_then(|_| {
        // SAFETY: as above; the value is the raw `CUstream`, which ORT stores as a pointer.
        status(unsafe {
            (api.UpdateCUDAProviderOptionsWithValue)(
                cuda,
                c"user_compute_stream".as_ptr(),
                stream.raw() as *mut std::ffi::c_void,
            )
        })
    })
    .and_then(|_| {
        // SAFETY: `options` is the builder's live session options; `cuda` is valid and is
        // copied by ORT during the call.
        status(unsafe { (api.SessionOptionsAppendExecutionProvider_CUDA_V2)(options, cuda) })
    });
    // SAFETY: created above, released once.
    unsafe { (api.ReleaseCUDAProviderOptions)(cuda) };
    r
}

impl OrtEngine {
    /// Loads `model.path` (`.onnx` or `.onnx.gz`), validates its input and output layout,
    /// allocates and binds its tensors for `opts.max_batch`, and runs it once on zeros.
    ///
    /// With [`OrtDevice::Cuda`] the engine opens the device's primary context and a stream of
    /// its own; a pipeline that shares its stream calls [`OrtEngine::load_on_stream`].
    pub fn load(model: &ModelConfig, opts: OrtOptions) -> Result<OrtEngine, EngineError> {
        match opts.device {
            OrtDevice::Cpu => Self::load_inner(model, opts, None),
            OrtDevice::Cuda { device } => {
                #[cfg(feature = "cuda")]
                {
                    let ctx = crate::gpu::CudaContext::new(device).map_err(gpu_err)?;
                    let stream = crate::gpu::CudaStream::new(&ctx).map_err(gpu_err)?;
                    Self::load_on_stream(model, opts, stream)
                }
                #[cfg(not(feature = "cuda"))]
                Err(EngineError::Unavailable(Unavailable {
                    backend: BACKEND_CUDA,
                    reason: format!(
                        "the ONNX Runtime CUDA execution provider (device {device}) needs a \
                         build with `--features cuda13` (or cuda12); use device = cpu"
                    ),
                }))
            }
        }
    }

    /// A CUDA engine whose session runs on `stream` (the pipeline's), with its input and
    /// output tensors allocated once in device memory of the stream's GPU
    /// (`TensorMem::Device`). `opts.device` must be `Cuda` on the stream's device.
    /// `libonnxruntime_providers_cuda.so` (and `_shared`) must sit next to the located
    /// `libonnxruntime.so` (the `onnxruntime-gpu` wheel layout), with cuDNN 9 and cuBLAS
    /// on the loader path.
    #[cfg(feature = "cuda")]
    pub fn load_on_stream(
        model: &ModelConfig,
        opts: OrtOptions,
        stream: std::sync::Arc<crate::gpu::CudaStream>,
    ) -> Result<OrtEngine, EngineError> {
        let ordinal = stream.context().ordinal();
        if opts.device != (OrtDevice::Cuda { device: ordinal }) {
            return Err(EngineError::Backend {
                backend: BACKEND_CUDA,
                msg: format!(
                    "options ask for {:?} but the stream is on CUDA device {ordinal}",
                    opts.device
                ),
            });
        }
        Self::load_inner(model, opts, Some(stream))
    }

    /// The CUDA stream the session runs on (CUDA engines only).
    #[cfg(feature = "cuda")]
    pub fn stream(&self) -> Option<&std::sync::Arc<crate::gpu::CudaStream>> {
        self.stream.as_ref()
    }

    fn load_inner(
        model: &ModelConfig,
        opts: OrtOptions,
        stream: StreamArg,
    ) -> Result<OrtEngine, EngineError> {
        let path = model.path.clone();
        let layout = |msg: String| EngineError::Layout {
            path: path.clone(),
            msg,
        };
        let backend: &'static str = if stream.is_some() {
            BACKEND_CUDA
        } else {
            BACKEND_CPU
        };
        let backend_err = |msg: String| EngineError::Backend { backend, msg };
        if opts.max_batch == 0 {
            return Err(layout("max_batch must be at least 1".into()));
        }
        // Read the model before loading the library, so a missing model is reported as such.
        let bytes = read_model(&path)?;
        let lib = locate_onnxruntime(opts.library.as_deref())?;
        let env = environment(&lib)?;

        let mut builder =
            Session::builder(&env).map_err(|e| backend_err(format!("session options: {e}")))?;
        if opts.threads > 0 {
            builder = builder
                .with_intra_threads(opts.threads)
                .map_err(|e| backend_err(format!("intra-op threads: {e}")))?;
        }
        #[cfg(feature = "cuda")]
        if let Some(st) = &stream {
            st.context().bind().map_err(gpu_err)?;
            let provider_dir = lib.parent().unwrap_or(Path::new("."));
            if !provider_dir
                .join("libonnxruntime_providers_cuda.so")
                .is_file()
            {
                return Err(EngineError::Unavailable(Unavailable {
                    backend: BACKEND_CUDA,
                    reason: format!(
                        "libonnxruntime_providers_cuda.so is not next to {} (install the \
                         `onnxruntime-gpu` wheel, whose onnxruntime/capi/ holds both, and \
                         point ORT_DYLIB_PATH at its libonnxruntime.so)",
                        lib.display()
                    ),
                }));
            }
            append_cuda(builder.ptr_mut(), st.context().ordinal(), st).map_err(|e| {
                EngineError::Unavailable(Unavailable {
                    backend: BACKEND_CUDA,
                    reason: format!("cannot add the CUDA execution provider: {e}"),
                })
            })?;
        }
        let session = builder
            .commit_from_memory(&bytes)
            .map_err(|e| EngineError::Model {
                path: path.clone(),
                msg: format!("ONNX Runtime cannot load it as an ONNX model: {e}"),
            })?;
        drop(bytes);

        // Input: one [N, 3, H, W] float tensor.
        let inputs = session.inputs();
        if inputs.len() != 1 {
            return Err(layout(format!(
                "it has {} inputs; jetwatch feeds one image input [N, 3, H, W]",
                inputs.len()
            )));
        }
        let input_name = inputs[0].name().to_string();
        let (in_ty, in_shape) = match inputs[0].dtype() {
            ValueType::Tensor { ty, shape, .. } => (*ty, shape.to_vec()),
            other => {
                return Err(layout(format!(
                    "input `{input_name}` is {other:?}, not a tensor"
                )))
            }
        };
        let in_dtype = dtype_of(in_ty).ok_or_else(|| {
            layout(format!(
                "input `{input_name}` is {in_ty:?}; jetwatch feeds float32 or float16"
            ))
        })?;
        let dims: Vec<Option<usize>> = in_shape
            .iter()
            .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
            .collect();
        let image = ImageInput::from_dims(&input_name, &dims).map_err(&layout)?;
        let (h, w) = (image.height, image.width);
        let dynamic_batch = image.check_batch(opts.max_batch, &path).map_err(&layout)?;

        // Outputs: float tensors; names and dtypes from the session.
        let outs = session.outputs();
        if outs.is_empty() {
            return Err(layout("it has no outputs".into()));
        }
        let mut out_meta = Vec::with_capacity(outs.len());
        for o in outs {
            let ty = match o.dtype() {
                ValueType::Tensor { ty, .. } => *ty,
                other => {
                    return Err(layout(format!(
                        "output `{}` is {other:?}, not a tensor",
                        o.name()
                    )))
                }
            };
            let dt = dtype_of(ty).ok_or_else(|| {
                layout(format!(
                    "output `{}` is {ty:?}; jetwatch reads float32 or float16 outputs",
                    o.name()
                ))
            })?;
            out_meta.push((o.name().to_string(), dt));
        }

        let names_meta = session.metadata().ok().and_then(|m| m.custom("names"));

        let mem = match &stream {
            #[cfg(feature = "cuda")]
            Some(st) => CpuMemoryInfo::cuda(st.context().ordinal()).map_err(backend_err)?,
            #[allow(unreachable_patterns)]
            _ => CpuMemoryInfo::new().map_err(backend_err)?,
        };
        #[cfg(feature = "cuda")]
        let mut device_bufs: Vec<crate::gpu::DeviceBuffer> = Vec::new();
        // Host tensors, or device tensors (zeroed) from the stream's GPU.
        #[allow(unused_mut)]
        let mut new_tensor = |spec: TensorSpec| -> Result<Tensor, EngineError> {
            match &stream {
                #[cfg(feature = "cuda")]
                Some(st) => {
                    let (buf, t) = crate::gpu::DeviceBuffer::for_tensor(st.context(), spec)
                        .map_err(gpu_err)?;
                    buf.memset_async(0, st).map_err(gpu_err)?;
                    st.synchronize().map_err(gpu_err)?;
                    device_bufs.push(buf);
                    Ok(t)
                }
                #[allow(unreachable_patterns)]
                _ => Ok(Tensor::host(spec)),
            }
        };
        let input_name_c = CString::new(input_name.clone())
            .map_err(|_| layout("input name contains NUL".into()))?;
        let output_names: Vec<CString> = out_meta
            .iter()
            .map(|(n, _)| CString::new(n.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| layout("an output name contains NUL".into()))?;

        let mut input = new_tensor(TensorSpec {
            name: input_name.clone(),
            dtype: in_dtype,
            shape: vec![opts.max_batch, 3, h, w],
        })?;

        let mut engine = OrtEngine {
            sets: Vec::new(),
            _mem: mem,
            session,
            _env: env,
            input_name_ptrs: [input_name_c.as_ptr()],
            output_name_ptrs: output_names.iter().map(|n| n.as_ptr()).collect(),
            input_name: input_name_c,
            _output_names: output_names,
            input_addr: (0, 0),
            dynamic_batch,
            info: ModelInfo {
                // Placeholder until the head is known (describe::model_info below).
                preprocess: describe::ultralytics_preprocess(w, h, in_dtype),
                head: HeadKind::EndToEnd { max_detections: 1 },
                labels: Vec::new(),
                max_batch: opts.max_batch,
            },
            backend: backend.to_string(),
            path: path.clone(),
            input: Tensor::host(TensorSpec {
                name: String::new(),
                dtype: in_dtype,
                shape: vec![0],
            }),
            outputs: Vec::new(),
            #[cfg(feature = "cuda")]
            _device_bufs: Vec::new(),
            #[cfg(feature = "cuda")]
            stream: None,
        };

        // Probe: run batch 1 (or the fixed batch) on zeros with ONNX Runtime allocating the
        // outputs, to learn their concrete shapes (a dynamic-batch model often leaves the
        // non-batch dims symbolic too).
        let probe_batch = if dynamic_batch { 1 } else { opts.max_batch };
        let out_shapes = engine
            .probe(&mut input, probe_batch, h, w)
            .map_err(|e| backend_err(format!("test run on zeros failed: {e}")))?;
        let item_shapes: Vec<Vec<usize>> = out_shapes
            .iter()
            .map(|s| s.iter().skip(1).map(|d| *d as usize).collect())
            .collect();
        for (s, (name, _)) in out_shapes.iter().zip(&out_meta) {
            if s.first().copied() != Some(probe_batch as i64) {
                return Err(layout(format!(
                    "output `{name}` has shape {s:?}; its first dimension must be the batch"
                )));
            }
        }

        engine.info = describe::model_info(&describe::Facts {
            model: &path,
            labels_file: model.labels.as_deref(),
            names_metadata: names_meta.as_deref(),
            input: image,
            input_dtype: in_dtype,
            head_item_shape: &item_shapes[0],
            max_batch: opts.max_batch,
        })?;

        // Allocate the outputs for max_batch and bind every batch size.
        engine.outputs = out_meta
            .iter()
            .zip(&item_shapes)
            .map(|((name, dt), item)| {
                let mut shape = vec![opts.max_batch];
                shape.extend_from_slice(item);
                new_tensor(TensorSpec {
                    name: name.clone(),
                    dtype: *dt,
                    shape,
                })
            })
            .collect::<Result<_, _>>()?;
        engine.input = input;
        #[cfg(feature = "cuda")]
        {
            engine._device_bufs = device_bufs;
            engine.stream = stream;
        }
        let batches: Vec<usize> = if dynamic_batch {
            (1..=opts.max_batch).collect()
        } else {
            vec![opts.max_batch]
        };
        for &b in &batches {
            let set = engine.make_set(b).map_err(backend_err)?;
            engine.sets.push(set);
        }
        // Warm-up runs (also check the bound buffers are accepted): full batch on the CPU;
        // every batch size on CUDA, where the first run of a shape picks convolution
        // algorithms and grows the arena, which must not happen on the frame path.
        if backend == BACKEND_CUDA {
            for &b in batches.iter().rev() {
                engine.run(b)?;
            }
        } else {
            engine.run(opts.max_batch)?;
        }
        Ok(engine)
    }

    /// Runs `batch` items of `input` with ONNX Runtime allocating the outputs; returns the
    /// output shapes.
    fn probe(
        &mut self,
        input: &mut Tensor,
        batch: usize,
        h: usize,
        w: usize,
    ) -> Result<Vec<Vec<i64>>, String> {
        let item = 3 * h * w * input.spec.dtype.size();
        let (addr, _) = tensor_addr(input);
        let shape = [batch as i64, 3, h as i64, w as i64];
        // SAFETY: the value borrows `buf` (alive and not otherwise referenced during this
        // function); it is released before we return.
        let value = unsafe {
            BorrowedValue::new(&self._mem, addr, batch * item, &shape, input.spec.dtype)?
        };
        let n_out = self.output_name_ptrs.len();
        let mut outs: Vec<*mut ffi::OrtValue> = vec![ptr::null_mut(); n_out];
        let api = ort::api();
        let inputs = [value.0 as *const ffi::OrtValue];
        // SAFETY: names and values are valid for the call; null output slots ask ONNX Runtime
        // to allocate the outputs, which we release below.
        let st = unsafe {
            (api.Run)(
                self.session.ptr().cast_mut(),
                ptr::null(),
                self.input_name_ptrs.as_ptr(),
                inputs.as_ptr(),
                1,
                self.output_name_ptrs.as_ptr(),
                n_out,
                outs.as_mut_ptr(),
            )
        };
        let result = status(st).and_then(|_| {
            outs.iter()
                .map(|&v| {
                    // SAFETY: `v` is an output value ONNX Runtime just created.
                    unsafe { value_shape(v) }
                })
                .collect::<Result<Vec<_>, _>>()
        });
        for v in outs {
            if !v.is_null() {
                // SAFETY: ONNX Runtime allocated these values for us; released once.
                unsafe { (api.ReleaseValue)(v) };
            }
        }
        drop(value);
        result
    }

    /// Creates the input and output values for batch size `b` over the engine's tensors.
    fn make_set(&mut self, b: usize) -> Result<RunSet, String> {
        let spec = self.input.spec.clone();
        let shape: Vec<i64> = std::iter::once(b as i64)
            .chain(spec.shape[1..].iter().map(|d| *d as i64))
            .collect();
        let bytes = b * spec.item_elements() * spec.dtype.size();
        let (addr, len) = tensor_addr(&mut self.input);
        self.input_addr = (addr as usize, len);
        // SAFETY: the input tensor is owned by the engine, outlives the value (field order)
        // and is only touched by Rust between runs.
        let input = unsafe { BorrowedValue::new(&self._mem, addr, bytes, &shape, spec.dtype)? };
        let mut outputs = Vec::with_capacity(self.outputs.len());
        for t in &mut self.outputs {
            let spec = t.spec.clone();
            let shape: Vec<i64> = std::iter::once(b as i64)
                .chain(spec.shape[1..].iter().map(|d| *d as i64))
                .collect();
            let bytes = b * spec.item_elements() * spec.dtype.size();
            let (addr, _) = tensor_addr(t);
            // SAFETY: as for the input; the output tensors are only exposed as `&` and are
            // never replaced.
            outputs
                .push(unsafe { BorrowedValue::new(&self._mem, addr, bytes, &shape, spec.dtype)? });
        }
        Ok(RunSet {
            input_ptrs: [input.0 as *const ffi::OrtValue],
            output_ptrs: outputs.iter().map(|v| v.0).collect(),
            _input: input,
            outputs,
        })
    }

    /// The model file this engine was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Name of the model input (diagnostics).
    pub fn input_name(&self) -> &str {
        self.input_name.to_str().unwrap_or("")
    }
}

/// Shape of a tensor value.
///
/// # Safety
/// `v` must be a valid tensor `OrtValue`.
unsafe fn value_shape(v: *const ffi::OrtValue) -> Result<Vec<i64>, String> {
    let api = ort::api();
    let mut info = ptr::null_mut();
    // SAFETY: `v` is valid (caller); `info` receives a new object released below.
    status(unsafe { (api.GetTensorTypeAndShape)(v, &mut info) })?;
    let mut n = 0usize;
    // SAFETY: `info` is valid until released.
    let r = status(unsafe { (api.GetDimensionsCount)(info, &mut n) }).and_then(|_| {
        let mut dims = vec![0i64; n];
        // SAFETY: `dims` has room for `n` values.
        status(unsafe { (api.GetDimensions)(info, dims.as_mut_ptr(), n) }).map(|_| dims)
    });
    // SAFETY: released exactly once.
    unsafe { (api.ReleaseTensorTypeAndShapeInfo)(info) };
    r
}

impl Engine for OrtEngine {
    fn synchronize(&mut self) -> Result<(), EngineError> {
        #[cfg(feature = "cuda")]
        if let Some(stream) = &self.stream {
            return stream.synchronize().map_err(|e| EngineError::Backend {
                backend: "onnxruntime-cuda",
                msg: format!("stream synchronize: {e}"),
            });
        }
        Ok(())
    }
    fn backend(&self) -> &str {
        &self.backend
    }

    fn model(&self) -> &ModelInfo {
        &self.info
    }

    fn input_mut(&mut self) -> &mut Tensor {
        &mut self.input
    }

    fn run(&mut self, batch: usize) -> Result<(), EngineError> {
        let max = self.info.max_batch;
        let backend = if self.backend == BACKEND_CUDA {
            BACKEND_CUDA
        } else {
            BACKEND_CPU
        };
        if batch == 0 || batch > max {
            return Err(EngineError::Backend {
                backend,
                msg: format!("batch of {batch} requested; this engine runs 1..={max}"),
            });
        }
        // The values point into the input buffer: refuse to run if it was replaced.
        let (addr, len) = tensor_addr(&mut self.input);
        if (addr as usize, len) != self.input_addr {
            return Err(EngineError::Backend {
                backend,
                msg: "the bound input tensor was replaced; write into Engine::input_mut() \
                      without reallocating it"
                    .into(),
            });
        }
        let set = if self.dynamic_batch {
            &mut self.sets[batch - 1]
        } else {
            &mut self.sets[0]
        };
        // SAFETY: session, names and values are alive and owned by `self`; the values borrow
        // the engine's input and output tensors, which nothing else references during the
        // call (`&mut self`). Pre-allocated output values are written in place.
        let st = unsafe {
            (ort::api().Run)(
                self.session.ptr().cast_mut(),
                ptr::null(),
                self.input_name_ptrs.as_ptr(),
                set.input_ptrs.as_ptr(),
                1,
                self.output_name_ptrs.as_ptr(),
                set.output_ptrs.len(),
                set.output_ptrs.as_mut_ptr(),
            )
        };
        status(st).map_err(|msg| EngineError::Backend {
            backend,
            msg: format!("run failed: {msg}"),
        })?;
        // ONNX Runtime must have written into our buffers, not replaced the values.
        debug_assert!(set
            .output_ptrs
            .iter()
            .zip(&set.outputs)
            .all(|(p, v)| *p == v.0));
        Ok(())
    }

    fn outputs(&self) -> &[Tensor] {
        &self.outputs
    }
}
