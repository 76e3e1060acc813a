//! The kernel module: `kernels/*.cu` compiled by build.rs into one fatbin, embedded in the
//! binary, loaded with `cuModuleLoadData` once per context at start-up.

use std::ffi::CStr;

use cudarc::driver::sys;

use super::{check, CudaContext, GpuError};
use crate::error::Unavailable;

/// The fatbin built by build.rs (SASS for each of `JETWATCH_CUDA_ARCHS`, PTX of the lowest).
static FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/jetwatch_kernels.fatbin"));

/// Architectures the embedded fatbin was built for (comma-separated compute capabilities).
pub const ARCHS: &str = env!("JETWATCH_CUDA_ARCHS_BUILT");

/// Kernel functions of the loaded module. Function handles stay valid while the module is
/// loaded, i.e. while this value lives.
pub struct Kernels {
    ctx: sys::CUcontext,
    module: sys::CUmodule,
    pub(crate) preprocess_f32: sys::CUfunction,
    pub(crate) preprocess_f16: sys::CUfunction,
    pub(crate) post_collect_f32: sys::CUfunction,
    pub(crate) post_collect_f16: sys::CUfunction,
    pub(crate) post_select: sys::CUfunction,
}

// SAFETY: module and function handles are immutable driver objects usable from any thread with
// the owning context current (every launch binds it first).
unsafe impl Send for Kernels {}
// SAFETY: as above; nothing here is mutated after loading.
unsafe impl Sync for Kernels {}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kernels(archs {ARCHS})")
    }
}

fn function(
    module: sys::CUmodule,
    name: &'static CStr,
    param_bytes: usize,
) -> Result<sys::CUfunction, GpuError> {
    let mut f = std::ptr::null_mut();
    // SAFETY: module is loaded; name is NUL-terminated.
    check("cuModuleGetFunction", unsafe {
        sys::cuModuleGetFunction(&mut f, module, name.as_ptr())
    })?;
    // Every kernel takes one by-value struct; its size must equal the Rust mirror's.
    let (mut off, mut size) = (0usize, 0usize);
    // SAFETY: valid function handle; out-pointers to locals.
    check("cuFuncGetParamInfo", unsafe {
        sys::cuFuncGetParamInfo(f, 0, &mut off, &mut size)
    })?;
    if size != param_bytes {
        return Err(GpuError::BadArgument(format!(
            "kernel {name:?} takes a {size}-byte parameter, the Rust mirror is {param_bytes} \
             bytes (kernels/common.cuh and src/gpu/launch.rs disagree)"
        )));
    }
    Ok(f)
}

impl Kernels {
    pub(crate) fn load(ctx: &CudaContext) -> Result<Kernels, GpuError> {
        ctx.bind()?;
        let mut module = std::ptr::null_mut();
        // SAFETY: FATBIN is a complete fatbin image produced by nvcc and lives for the whole
        // program; the driver copies what it needs.
        let r = unsafe { sys::cuModuleLoadData(&mut module, FATBIN.as_ptr().cast()) };
        if r == sys::CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU
            || r == sys::CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION
        {
            let (ma, mi) = ctx.compute_capability();
            return Err(GpuError::Unavailable(Unavailable {
                backend: "CUDA kernels",
                reason: format!(
                    "the embedded kernels (built for sm_{ARCHS}) cannot run on {} (sm_{ma}{mi}) \
                     with this driver; rebuild with JETWATCH_CUDA_ARCHS including {ma}{mi}",
                    ctx.name()
                ),
            }));
        }
        check("cuModuleLoadData", r)?;
        let load = || -> Result<Kernels, GpuError> {
            use super::launch::{PostParams, PreBatch};
            let pre = std::mem::size_of::<PreBatch>();
            let post = std::mem::size_of::<PostParams>();
            Ok(Kernels {
                ctx: ctx.raw(),
                module,
                preprocess_f32: function(module, c"jw_preprocess_f32", pre)?,
                preprocess_f16: function(module, c"jw_preprocess_f16", pre)?,
                post_collect_f32: function(module, c"jw_post_collect_f32", post)?,
                post_collect_f16: function(module, c"jw_post_collect_f16", post)?,
                post_select: function(module, c"jw_post_select", post)?,
            })
        };
        match load() {
            Ok(k) => Ok(k),
            Err(e) => {
                // SAFETY: loaded above, not yet owned by a Kernels value.
                let _ = unsafe { sys::cuModuleUnload(module) };
                Err(e)
            }
        }
    }
}

impl Drop for Kernels {
    fn drop(&mut self) {
        // SAFETY: loaded in `load` and unloaded once, with its context made current first. If
        // the primary context was already released (and with it the module), the driver
        // returns an error, which is ignored: Drop never panics.
        unsafe {
            if sys::cuCtxSetCurrent(self.ctx) == sys::CUresult::CUDA_SUCCESS {
                let _ = sys::cuModuleUnload(self.module);
            }
        }
    }
}
