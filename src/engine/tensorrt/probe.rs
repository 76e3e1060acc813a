//! `tensorrt_available`: is libnvinfer on this host, and which version? Works on every build
//! (no `tensorrt` feature needed) by opening the library with libloading and calling its
//! `getInferLibVersion()` (NvInferRuntimeBase.h: `extern "C" int32_t getInferLibVersion()`).

use super::version::{TrtVersion, SUPPORTED_MAJORS};
use crate::error::Unavailable;

/// How to get TensorRT, for error messages.
pub const INSTALL_HINT: &str = "install TensorRT: on Jetson the JetPack `nvidia-tensorrt` \
    packages (libnvinfer10 and libnvonnxparsers10 in JetPack 6), elsewhere `libnvinfer10` \
    and `libnvonnxparsers10` from NVIDIA's CUDA apt repository; then use a jetwatch built \
    with `--features cuda12,tensorrt` (JetPack 6) or `--features cuda13,tensorrt`, with \
    TENSORRT_INCLUDE pointing at the TensorRT headers";

/// Probes the library named by `JETWATCH_NVINFER` if set (only that one), else
/// `libnvinfer.so.10` then `libnvinfer.so.11`.
pub fn tensorrt_available() -> Result<TrtVersion, Unavailable> {
    if let Some(path) = std::env::var_os("JETWATCH_NVINFER") {
        let name = path.to_string_lossy().into_owned();
        return probe_one(&name).map_err(|e| Unavailable {
            backend: "tensorrt",
            reason: format!("JETWATCH_NVINFER: {e}"),
        });
    }
    let mut reasons = Vec::new();
    for major in SUPPORTED_MAJORS {
        let name = format!("libnvinfer.so.{major}");
        match probe_one(&name) {
            Ok(v) => return Ok(v),
            Err(e) => reasons.push(e),
        }
    }
    Err(Unavailable {
        backend: "tensorrt",
        reason: format!("{} ({INSTALL_HINT})", reasons.join("; ")),
    })
}

pub(crate) fn probe_one(name: &str) -> Result<TrtVersion, String> {
    // SAFETY: opening libnvinfer runs its initialisers, which only register TensorRT's
    // internal state; it is NVIDIA's documented way of using the library.
    let lib = unsafe { libloading::Library::new(name) }.map_err(|e| format!("{name}: {e}"))?;
    // SAFETY: getInferLibVersion has this exact signature in every TensorRT release
    // (`extern "C" int32_t getInferLibVersion() noexcept`).
    let f = unsafe { lib.get::<unsafe extern "C" fn() -> i32>(b"getInferLibVersion\0") }
        .map_err(|e| format!("{name} has no getInferLibVersion: {e}"))?;
    // SAFETY: no arguments, no preconditions; returns a constant.
    let v = unsafe { f() };
    TrtVersion::from_encoded(v).ok_or_else(|| format!("{name}: getInferLibVersion returned {v}"))
}
