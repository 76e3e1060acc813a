//! CUDA: context, streams, events, device and pinned memory, the embedded kernel module and
//! typed, allocation-free kernel launches.
//!
//! Layers (STYLE.md §1): `cudarc::driver::sys` holds the raw driver declarations (libcuda is
//! opened at run time); this module and its submodules are the thin owning wrappers — every
//! status code becomes a [`GpuError`], every handle has exactly one owner whose `Drop` releases
//! it without panicking; the stages ([`crate::preprocess::cuda`], [`crate::postprocess::cuda`])
//! use only the safe types.
//!
//! Threading: CUDA driver handles are valid on any thread once their context is current
//! (CUDA Driver API, "Context Management"). Every wrapper makes its context current
//! ([`CudaContext::bind`], one `cuCtxSetCurrent` call, no allocation) before it touches the
//! driver, so the types are `Send + Sync`.

use std::ffi::c_void;
use std::fmt;
use std::sync::{Arc, Mutex};

use cudarc::driver::sys;

use crate::error::{StageError, Unavailable};

pub mod launch;
pub mod memory;
pub mod module;

pub use memory::{CudaArray2D, DeviceBuffer, PinnedBuffer, TextureFilter, TextureObject};
pub use module::Kernels;

/// Errors from the CUDA wrappers.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No CUDA driver, no device, or the device cannot run our kernels.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// A driver call failed.
    #[error("CUDA {call} failed: {name} ({text})")]
    Driver {
        call: &'static str,
        name: &'static str,
        text: &'static str,
    },
    /// A wrapper refused its arguments before calling the driver.
    #[error("CUDA: {0}")]
    BadArgument(String),
}

impl From<GpuError> for StageError {
    fn from(e: GpuError) -> Self {
        match e {
            GpuError::Unavailable(u) => StageError::Unavailable(u),
            other => StageError::Preprocess(other.to_string()),
        }
    }
}

fn static_cstr(p: *const std::ffi::c_char) -> &'static str {
    if p.is_null() {
        return "?";
    }
    // SAFETY: cuGetErrorName/cuGetErrorString return pointers to static, NUL-terminated
    // strings owned by the driver for the life of the process (CUDA Driver API, "Error
    // Handling").
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_str()
        .unwrap_or("?")
}

/// Turns a `CUresult` into `Result`, naming the call.
pub(crate) fn check(call: &'static str, r: sys::CUresult) -> Result<(), GpuError> {
    if r == sys::CUresult::CUDA_SUCCESS {
        return Ok(());
    }
    let mut name: *const std::ffi::c_char = std::ptr::null();
    let mut text: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: plain out-pointer queries on a loaded driver (we only get here after a driver
    // call, so libcuda is loaded); failures leave the pointers null, handled above.
    unsafe {
        let _ = sys::cuGetErrorName(r, &mut name);
        let _ = sys::cuGetErrorString(r, &mut text);
    }
    Err(GpuError::Driver {
        call,
        name: static_cstr(name),
        text: static_cstr(text),
    })
}

const NO_DRIVER: &str = "no CUDA driver: libcuda.so.1 not found";

/// Loads libcuda (if present) and initialises the driver API. Safe to call repeatedly.
///
/// cudarc's dynamic loader panics when the library is missing, so presence is checked first
/// with `is_culib_present()` (CRATES.md).
pub fn init() -> Result<(), GpuError> {
    static INIT: Mutex<Option<Result<(), String>>> = Mutex::new(None);
    let mut g = INIT.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        // SAFETY: `is_culib_present` only tries `dlopen` on candidate names.
        let present = unsafe { sys::is_culib_present() };
        let r = if !present {
            Err(NO_DRIVER.to_string())
        } else {
            // SAFETY: libcuda is present, so the lazily loaded symbol table can be built;
            // cuInit(0) has no other preconditions (flags must be 0).
            let r = unsafe { sys::cuInit(0) };
            check("cuInit", r).map_err(|e| format!("the CUDA driver did not initialise: {e}"))
        };
        *g = Some(r);
    }
    match g.as_ref() {
        Some(Ok(())) => Ok(()),
        Some(Err(reason)) => Err(GpuError::Unavailable(Unavailable {
            backend: "CUDA",
            reason: reason.clone(),
        })),
        None => unreachable!("set above"),
    }
}

/// Number of CUDA devices (0 without a driver).
pub fn device_count() -> Result<usize, GpuError> {
    init()?;
    let mut n = 0;
    // SAFETY: driver initialised; out-pointer to a local.
    check("cuDeviceGetCount", unsafe { sys::cuDeviceGetCount(&mut n) })?;
    Ok(n.max(0) as usize)
}

/// One GPU's primary context (the context the CUDA runtime, ONNX Runtime and TensorRT also
/// use, so device pointers are shared with them). Retained on creation, released on drop.
pub struct CudaContext {
    ordinal: u32,
    dev: sys::CUdevice,
    ctx: sys::CUcontext,
    name: String,
    cc: (u32, u32),
    sm_count: u32,
    kernels: Mutex<Option<Arc<Kernels>>>,
}

// SAFETY: a CUcontext handle may be used from any thread (made current there first, which
// every method does through `bind`); the remaining fields are plain data or thread-safe.
unsafe impl Send for CudaContext {}
// SAFETY: as above; the driver serialises access to a context internally.
unsafe impl Sync for CudaContext {}

impl fmt::Debug for CudaContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaContext")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .field("cc", &self.cc)
            .finish()
    }
}

fn attr(dev: sys::CUdevice, a: sys::CUdevice_attribute) -> Result<i32, GpuError> {
    let mut v = 0;
    // SAFETY: valid device handle from cuDeviceGet; out-pointer to a local.
    check("cuDeviceGetAttribute", unsafe {
        sys::cuDeviceGetAttribute(&mut v, a, dev)
    })?;
    Ok(v)
}

impl CudaContext {
    /// Retains the primary context of device `ordinal` and makes it current on this thread.
    pub fn new(ordinal: u32) -> Result<Arc<CudaContext>, GpuError> {
        let n = device_count()?;
        if ordinal as usize >= n {
            return Err(GpuError::Unavailable(Unavailable {
                backend: "CUDA",
                reason: format!("no CUDA device {ordinal} (the driver reports {n})"),
            }));
        }
        let mut dev = 0;
        // SAFETY: ordinal checked against the device count; out-pointer to a local.
        check("cuDeviceGet", unsafe {
            sys::cuDeviceGet(&mut dev, ordinal as i32)
        })?;
        let mut ctx = std::ptr::null_mut();
        // SAFETY: valid device; the retained context is released in Drop.
        check("cuDevicePrimaryCtxRetain", unsafe {
            sys::cuDevicePrimaryCtxRetain(&mut ctx, dev)
        })?;
        let mut buf = [0 as std::ffi::c_char; 256];
        // SAFETY: the buffer is 256 bytes and its length is passed; the driver NUL-terminates.
        let name = match check("cuDeviceGetName", unsafe {
            sys::cuDeviceGetName(buf.as_mut_ptr(), buf.len() as i32, dev)
        }) {
            // SAFETY: NUL-terminated by the driver within the buffer.
            Ok(()) => unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
            Err(_) => format!("CUDA device {ordinal}"),
        };
        use sys::CUdevice_attribute as A;
        let c = CudaContext {
            ordinal,
            dev,
            ctx,
            name,
            cc: (
                attr(dev, A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)? as u32,
                attr(dev, A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)? as u32,
            ),
            sm_count: attr(dev, A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32,
            kernels: Mutex::new(None),
        };
        c.bind()?;
        Ok(Arc::new(c))
    }

    /// Makes this context current on the calling thread (`cuCtxSetCurrent`; no allocation).
    pub fn bind(&self) -> Result<(), GpuError> {
        // SAFETY: `ctx` is a retained primary context, alive until Drop.
        check("cuCtxSetCurrent", unsafe { sys::cuCtxSetCurrent(self.ctx) })
    }

    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Compute capability (major, minor).
    pub fn compute_capability(&self) -> (u32, u32) {
        self.cc
    }
    pub fn multiprocessors(&self) -> u32 {
        self.sm_count
    }
    /// Raw context handle, for engines that must share it (TensorRT, ONNX Runtime).
    pub fn raw(&self) -> sys::CUcontext {
        self.ctx
    }

    /// The embedded kernel module for this context, loaded on first use (start-up).
    pub fn kernels(&self) -> Result<Arc<Kernels>, GpuError> {
        let mut g = self.kernels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = g.as_ref() {
            return Ok(k.clone());
        }
        self.bind()?;
        let k = Arc::new(Kernels::load(self)?);
        *g = Some(k.clone());
        Ok(k)
    }

    /// Free and total device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize), GpuError> {
        self.bind()?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: context current; out-pointers to locals.
        check("cuMemGetInfo", unsafe {
            sys::cuMemGetInfo_v2(&mut free, &mut total)
        })?;
        Ok((free, total))
    }
}

impl Drop for CudaContext {
    fn drop(&mut self) {
        // Kernels (module) must go before the context is released.
        if let Ok(mut g) = self.kernels.lock() {
            g.take();
        }
        // SAFETY: balanced with the retain in `new`; errors are ignored (Drop never panics).
        let _ = unsafe { sys::cuDevicePrimaryCtxRelease_v2(self.dev) };
    }
}

/// A CUDA stream owned by one pipeline; all of its stages' work is queued on it in order.
pub struct CudaStream {
    ctx: Arc<CudaContext>,
    stream: sys::CUstream,
}

// SAFETY: stream handles may be used from any thread with their context current (`bind`).
unsafe impl Send for CudaStream {}
// SAFETY: as above; the driver serialises submissions to one stream.
unsafe impl Sync for CudaStream {}

impl fmt::Debug for CudaStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaStream")
            .field("device", &self.ctx.ordinal)
            .field("stream", &self.stream)
            .finish()
    }
}

impl CudaStream {
    /// A non-blocking stream (does not synchronise with the legacy default stream).
    pub fn new(ctx: &Arc<CudaContext>) -> Result<Arc<CudaStream>, GpuError> {
        ctx.bind()?;
        let mut s = std::ptr::null_mut();
        // SAFETY: context current; flag value from the driver enum; destroyed in Drop.
        check("cuStreamCreate", unsafe {
            sys::cuStreamCreate(&mut s, sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32)
        })?;
        Ok(Arc::new(CudaStream {
            ctx: ctx.clone(),
            stream: s,
        }))
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Raw handle, for engines that enqueue on this stream (TensorRT `enqueueV3`, ONNX Runtime).
    pub fn raw(&self) -> sys::CUstream {
        self.stream
    }

    /// Blocks until all work queued so far has finished; reports asynchronous kernel faults.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.ctx.bind()?;
        // SAFETY: valid stream owned by self.
        check("cuStreamSynchronize", unsafe {
            sys::cuStreamSynchronize(self.stream)
        })
    }
}

impl Drop for CudaStream {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: valid stream owned by self; destroy waits for queued work per the driver
            // docs ("cuStreamDestroy": resources are released once the device completes).
            let _ = unsafe { sys::cuStreamDestroy_v2(self.stream) };
        }
    }
}

/// A CUDA event for timing (`cuEventElapsedTime`) or ordering.
pub struct CudaEvent {
    ctx: Arc<CudaContext>,
    ev: sys::CUevent,
}

// SAFETY: event handles may be used from any thread with their context current.
unsafe impl Send for CudaEvent {}
// SAFETY: as above.
unsafe impl Sync for CudaEvent {}

impl CudaEvent {
    /// A timing event (`CU_EVENT_DEFAULT`).
    pub fn new(ctx: &Arc<CudaContext>) -> Result<CudaEvent, GpuError> {
        ctx.bind()?;
        let mut ev = std::ptr::null_mut();
        // SAFETY: context current; destroyed in Drop.
        check("cuEventCreate", unsafe {
            sys::cuEventCreate(&mut ev, sys::CUevent_flags::CU_EVENT_DEFAULT as u32)
        })?;
        Ok(CudaEvent {
            ctx: ctx.clone(),
            ev,
        })
    }

    /// Records the event at the current end of `stream`.
    pub fn record(&self, stream: &CudaStream) -> Result<(), GpuError> {
        if !Arc::ptr_eq(&self.ctx, &stream.ctx) {
            return Err(GpuError::BadArgument(
                "event and stream belong to different contexts".into(),
            ));
        }
        self.ctx.bind()?;
        // SAFETY: both handles valid and of the same context (checked).
        check("cuEventRecord", unsafe {
            sys::cuEventRecord(self.ev, stream.stream)
        })
    }

    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.ctx.bind()?;
        // SAFETY: valid event.
        check("cuEventSynchronize", unsafe {
            sys::cuEventSynchronize(self.ev)
        })
    }

    /// Milliseconds between `start` and `self` (both recorded and completed).
    pub fn elapsed_ms_since(&self, start: &CudaEvent) -> Result<f32, GpuError> {
        self.ctx.bind()?;
        let mut ms = 0f32;
        // CUDA 13 renamed the entry point (`_v2`); CUDA 12 (JetPack 6) has only the first.
        #[cfg(feature = "cuda13")]
        // SAFETY: valid events; out-pointer to a local.
        let r = unsafe { sys::cuEventElapsedTime_v2(&mut ms, start.ev, self.ev) };
        #[cfg(not(feature = "cuda13"))]
        // SAFETY: valid events; out-pointer to a local.
        let r = unsafe { sys::cuEventElapsedTime(&mut ms, start.ev, self.ev) };
        check("cuEventElapsedTime", r)?;
        Ok(ms)
    }
}

impl Drop for CudaEvent {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: valid event owned by self.
            let _ = unsafe { sys::cuEventDestroy_v2(self.ev) };
        }
    }
}

/// Raw launch with a caller-built argument array (no allocation).
///
/// # Safety
/// `f` must be a function of a module loaded in `stream`'s context, `params` must hold one
/// pointer per kernel parameter, each pointing at a value whose type and size match the kernel
/// signature, and every device address reachable from those values must stay valid until the
/// kernel has finished on `stream`.
pub(crate) unsafe fn launch_raw(
    f: sys::CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared: u32,
    stream: &CudaStream,
    params: &mut [*mut c_void],
) -> Result<(), GpuError> {
    stream.ctx.bind()?;
    // SAFETY: forwarded to the caller's contract; the driver copies the parameter values
    // before returning, so the stack array may go out of scope afterwards.
    check("cuLaunchKernel", unsafe {
        sys::cuLaunchKernel(
            f,
            grid.0,
            grid.1,
            grid.2,
            block.0,
            block.1,
            block.2,
            shared,
            stream.stream,
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    })
}
