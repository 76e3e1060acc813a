//! Raw declarations for the vendor libraries jetwatch uses. Nothing here is linked: every
//! library is opened at run time with `libloading`, so the binary starts on hosts without
//! them. Only raw types and function-pointer tables live here; the safe owning wrappers are
//! in the `jetwatch` crate.
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    clippy::upper_case_acronyms
)]

/// Jetson multimedia: `libnvv4l2` entry points, NvBufSurface, NVIDIA V4L2 extensions.
pub mod jetson;
/// NVIDIA Video Codec SDK decoder API (`libnvcuvid.so.1`).
pub mod nvcuvid;
/// Safe wrappers over the few libc calls jetwatch needs.
pub mod os;
/// TensorRT C ABI shim (our own `extern "C"` functions over TensorRT, see `tensorrt/`).
pub mod tensorrt;
/// Linux V4L2 UAPI (videodev2.h) structures and ioctl numbers we use.
pub mod v4l2;
