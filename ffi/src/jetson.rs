//! Jetson multimedia declarations, written from NVIDIA's Jetson Linux API Reference (L4T r36,
//! "Multimedia API": `nvbufsurface.h` data structures, `v4l2_nv_extensions.h` control IDs,
//! the `libnvv4l2` entry points used by `NvV4l2Element`). No JetPack header is copied here;
//! `tests::layout_matches_jetpack_headers` compares sizes and offsets with the real headers
//! when `JETSON_MMAPI_INCLUDE` names their directory.
//!
//! Libraries (opened at run time): `libnvv4l2.so` (`/usr/lib/aarch64-linux-gnu/nvidia/` on
//! JetPack 6) and `libnvbufsurface.so.1.0.0`.

use libc::{c_char, c_int, c_ulong, c_void, size_t};

/// `NVBUF_MAX_PLANES`.
pub const NVBUF_MAX_PLANES: usize = 4;
/// `STRUCTURE_PADDING` (reserved pointer slots at the end of each structure).
pub const STRUCTURE_PADDING: usize = 4;

/// `NvBufSurfaceMemType`.
pub type NvBufSurfaceMemType = u32;
pub const NVBUF_MEM_DEFAULT: NvBufSurfaceMemType = 0;
pub const NVBUF_MEM_CUDA_DEVICE: NvBufSurfaceMemType = 2;
pub const NVBUF_MEM_SURFACE_ARRAY: NvBufSurfaceMemType = 4;
pub const NVBUF_MEM_HANDLE: NvBufSurfaceMemType = 5;

/// `NvBufSurfaceLayout`: pitch-linear or block-linear (GPU tiled) planes.
pub type NvBufSurfaceLayout = u32;
pub const NVBUF_LAYOUT_PITCH: NvBufSurfaceLayout = 0;
pub const NVBUF_LAYOUT_BLOCK_LINEAR: NvBufSurfaceLayout = 1;

/// `NvBufSurfaceColorFormat` (only the NV12 family the decoder produces).
pub type NvBufSurfaceColorFormat = u32;
pub const NVBUF_COLOR_FORMAT_NV12: NvBufSurfaceColorFormat = 6;
pub const NVBUF_COLOR_FORMAT_NV12_ER: NvBufSurfaceColorFormat = 7;

/// `NvBufSurfacePlaneParams`: per-plane geometry of one buffer.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NvBufSurfacePlaneParams {
    pub num_planes: u32,
    pub width: [u32; NVBUF_MAX_PLANES],
    pub height: [u32; NVBUF_MAX_PLANES],
    pub pitch: [u32; NVBUF_MAX_PLANES],
    pub offset: [u32; NVBUF_MAX_PLANES],
    pub psize: [u32; NVBUF_MAX_PLANES],
    pub bytesPerPix: [u32; NVBUF_MAX_PLANES],
    pub _reserved: [*mut c_void; STRUCTURE_PADDING * NVBUF_MAX_PLANES],
}

/// `NvBufSurfaceMappedAddr`: CPU mappings and the EGLImage made by
/// `NvBufSurfaceMapEglImage`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NvBufSurfaceMappedAddr {
    pub addr: [*mut c_void; NVBUF_MAX_PLANES],
    pub eglImage: *mut c_void,
    pub _reserved: [*mut c_void; STRUCTURE_PADDING],
}

/// `NvBufSurfaceParams`: one buffer of a batch.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NvBufSurfaceParams {
    pub width: u32,
    pub height: u32,
    pub pitch: u32,
    pub colorFormat: NvBufSurfaceColorFormat,
    pub layout: NvBufSurfaceLayout,
    /// dma-buf fd for `NVBUF_MEM_SURFACE_ARRAY` / `NVBUF_MEM_HANDLE`.
    pub bufferDesc: u64,
    pub dataSize: u32,
    pub dataPtr: *mut c_void,
    pub planeParams: NvBufSurfacePlaneParams,
    pub mappedAddr: NvBufSurfaceMappedAddr,
    /// `NvBufSurfaceParamsEx *`.
    pub paramex: *mut c_void,
    pub _reserved: [*mut c_void; STRUCTURE_PADDING - 1],
}

/// `NvBufSurface`: a batch of buffers.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NvBufSurface {
    pub gpuId: u32,
    pub batchSize: u32,
    pub numFilled: u32,
    pub isContiguous: bool,
    pub memType: NvBufSurfaceMemType,
    pub surfaceList: *mut NvBufSurfaceParams,
    pub _reserved: [*mut c_void; STRUCTURE_PADDING],
}

/// `NvBufSurfaceCreateParams` (argument of `NvBufSurfaceCreate`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NvBufSurfaceCreateParams {
    pub gpuId: u32,
    pub width: u32,
    pub height: u32,
    pub size: u32,
    pub isContiguous: bool,
    pub colorFormat: NvBufSurfaceColorFormat,
    pub layout: NvBufSurfaceLayout,
    pub memType: NvBufSurfaceMemType,
}

/// `int NvBufSurfaceCreate(NvBufSurface **surf, uint32_t batchSize,
/// NvBufSurfaceCreateParams *params)`.
pub type NvBufSurfaceCreateFn =
    unsafe extern "C" fn(*mut *mut NvBufSurface, u32, *mut NvBufSurfaceCreateParams) -> c_int;
/// `int NvBufSurfaceDestroy(NvBufSurface *surf)`.
pub type NvBufSurfaceDestroyFn = unsafe extern "C" fn(*mut NvBufSurface) -> c_int;
/// `int NvBufSurfaceFromFd(int dmabuf_fd, void **buffer)`.
pub type NvBufSurfaceFromFdFn = unsafe extern "C" fn(c_int, *mut *mut c_void) -> c_int;
/// `int NvBufSurfaceMapEglImage(NvBufSurface *surf, int index)` (index -1: all buffers).
pub type NvBufSurfaceMapEglImageFn = unsafe extern "C" fn(*mut NvBufSurface, c_int) -> c_int;
/// `int NvBufSurfaceUnMapEglImage(NvBufSurface *surf, int index)`.
pub type NvBufSurfaceUnMapEglImageFn = unsafe extern "C" fn(*mut NvBufSurface, c_int) -> c_int;

/// `libnvv4l2` (libv4l2-compatible entry points, used by `NvV4l2Element`).
pub type v4l2_open_fn = unsafe extern "C" fn(*const c_char, c_int, ...) -> c_int;
pub type v4l2_close_fn = unsafe extern "C" fn(c_int) -> c_int;
pub type v4l2_ioctl_fn = unsafe extern "C" fn(c_int, c_ulong, ...) -> c_int;
pub type v4l2_mmap_fn =
    unsafe extern "C" fn(*mut c_void, size_t, c_int, c_int, c_int, i64) -> *mut c_void;
pub type v4l2_munmap_fn = unsafe extern "C" fn(*mut c_void, size_t) -> c_int;

/// Library and symbol names opened at run time.
pub const LIBNVV4L2: &str = "libnvv4l2.so";
pub const LIBNVBUFSURFACE: &str = "libnvbufsurface.so.1.0.0";

/// Decoder device nodes of L4T r36 (`NvVideoDecoder`'s `DECODER_DEV`), in the order tried.
pub const DECODER_NODES: [&str; 2] = ["/dev/nvhost-nvdec", "/dev/v4l2-nvdec"];

// ---- v4l2_nv_extensions.h controls (values relative to V4L2_CID_MPEG_BASE) ----
/// `V4L2_CID_MPEG_BASE` (= `V4L2_CID_CODEC_BASE`, `V4L2_CTRL_CLASS_MPEG | 0x900`).
pub const V4L2_CID_MPEG_BASE: u32 = 0x0099_0900;
/// Input buffers may hold partial frames when set to 1; 0 means one whole frame per buffer
/// (needed for `V4L2_BUF_FLAG_TIMESTAMP_COPY` timestamps). Set before the OUTPUT format.
pub const V4L2_CID_MPEG_VIDEO_DISABLE_COMPLETE_FRAME_INPUT: u32 = V4L2_CID_MPEG_BASE + 515;
/// Disable DPB management (display order = decode order, for streams without reordering).
pub const V4L2_CID_MPEG_VIDEO_DISABLE_DPB: u32 = V4L2_CID_MPEG_BASE + 516;
/// Report decode errors in the capture buffer metadata.
pub const V4L2_CID_MPEG_VIDEO_ERROR_REPORTING: u32 = V4L2_CID_MPEG_BASE + 517;
/// Run the engine at maximum clock (set after both formats, before REQBUFS).
pub const V4L2_CID_MPEG_VIDEO_MAX_PERFORMANCE: u32 = V4L2_CID_MPEG_BASE + 554;

// ---- VIDIOC_S_EXT_CTRLS (the controls above are set through it by NvVideoDecoder) ----
/// `struct v4l2_ext_control` (packed in the UAPI: 20 bytes).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_ext_control {
    pub id: u32,
    pub size: u32,
    pub reserved2: [u32; 1],
    /// Union of value / value64 / pointers: the low 32 bits hold `value`.
    pub value64: i64,
}

/// `struct v4l2_ext_controls`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_ext_controls {
    pub which: u32,
    pub count: u32,
    pub error_idx: u32,
    pub request_fd: i32,
    pub reserved: [u32; 1],
    pub controls: *mut v4l2_ext_control,
}
pub const V4L2_CTRL_WHICH_CUR_VAL: u32 = 0;
pub const VIDIOC_S_EXT_CTRLS: c_ulong = ((3u32 << 30)
    | ((core::mem::size_of::<v4l2_ext_controls>() as u32) << 16)
    | ((b'V' as u32) << 8)
    | 72) as c_ulong;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn ext_controls_match_kernel_headers() {
        // struct v4l2_ext_controls / v4l2_ext_control are kernel UAPI (videodev2.h):
        // 24 + pointer = 32 bytes and 20 bytes on LP64.
        assert_eq!(size_of::<v4l2_ext_controls>(), 32);
        assert_eq!(size_of::<v4l2_ext_control>(), 20);
        assert_eq!(VIDIOC_S_EXT_CTRLS, 0xc020_5648);
    }

    /// With `JETSON_MMAPI_INCLUDE` pointing at the L4T Multimedia API `include/` directory,
    /// compiles a C probe against the real `nvbufsurface.h` and `v4l2_nv_extensions.h` and
    /// compares sizes, offsets and control IDs with the declarations above.
    #[test]
    fn layout_matches_jetpack_headers() {
        let Ok(inc) = std::env::var("JETSON_MMAPI_INCLUDE") else {
            eprintln!(
                "SKIP: JETSON_MMAPI_INCLUDE is not set; the NvBufSurface/NVIDIA-control layout \
                 check runs only where the L4T Multimedia API headers exist (Jetson, Yocto)"
            );
            return;
        };
        let checks: Vec<(&str, usize)> = vec![
            (
                "sizeof(NvBufSurfacePlaneParams)",
                size_of::<NvBufSurfacePlaneParams>(),
            ),
            (
                "sizeof(NvBufSurfaceMappedAddr)",
                size_of::<NvBufSurfaceMappedAddr>(),
            ),
            (
                "sizeof(NvBufSurfaceParams)",
                size_of::<NvBufSurfaceParams>(),
            ),
            (
                "offsetof(NvBufSurfaceParams, bufferDesc)",
                offset_of!(NvBufSurfaceParams, bufferDesc),
            ),
            (
                "offsetof(NvBufSurfaceParams, planeParams)",
                offset_of!(NvBufSurfaceParams, planeParams),
            ),
            (
                "offsetof(NvBufSurfaceParams, mappedAddr)",
                offset_of!(NvBufSurfaceParams, mappedAddr),
            ),
            ("sizeof(NvBufSurface)", size_of::<NvBufSurface>()),
            (
                "offsetof(NvBufSurface, memType)",
                offset_of!(NvBufSurface, memType),
            ),
            (
                "offsetof(NvBufSurface, surfaceList)",
                offset_of!(NvBufSurface, surfaceList),
            ),
            (
                "sizeof(NvBufSurfaceCreateParams)",
                size_of::<NvBufSurfaceCreateParams>(),
            ),
            (
                "offsetof(NvBufSurfaceCreateParams, layout)",
                offset_of!(NvBufSurfaceCreateParams, layout),
            ),
            ("NVBUF_COLOR_FORMAT_NV12", NVBUF_COLOR_FORMAT_NV12 as usize),
            (
                "NVBUF_LAYOUT_BLOCK_LINEAR",
                NVBUF_LAYOUT_BLOCK_LINEAR as usize,
            ),
            ("NVBUF_MEM_SURFACE_ARRAY", NVBUF_MEM_SURFACE_ARRAY as usize),
            (
                "V4L2_CID_MPEG_VIDEO_DISABLE_COMPLETE_FRAME_INPUT",
                V4L2_CID_MPEG_VIDEO_DISABLE_COMPLETE_FRAME_INPUT as usize,
            ),
            (
                "V4L2_CID_MPEG_VIDEO_ERROR_REPORTING",
                V4L2_CID_MPEG_VIDEO_ERROR_REPORTING as usize,
            ),
            (
                "V4L2_CID_MPEG_VIDEO_MAX_PERFORMANCE",
                V4L2_CID_MPEG_VIDEO_MAX_PERFORMANCE as usize,
            ),
        ];
        let mut src = String::from(
            "#include <stdio.h>\n#include <stddef.h>\n#include <stdbool.h>\n#include <linux/videodev2.h>\n\
             #include \"nvbufsurface.h\"\n#include \"v4l2_nv_extensions.h\"\nint main(void){\n",
        );
        for (e, _) in &checks {
            src.push_str(&format!("printf(\"%lu\\n\", (unsigned long)({e}));\n"));
        }
        src.push_str("return 0;}\n");
        let dir =
            std::env::temp_dir().join(format!("jetwatch-jetson-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p.c"), src).unwrap();
        let st = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .arg(dir.join("p.c"))
            .arg(format!("-I{inc}"))
            .arg("-o")
            .arg(dir.join("p"))
            .status()
            .expect("run the C compiler");
        assert!(
            st.success(),
            "the layout probe did not compile against {inc}"
        );
        let out = std::process::Command::new(dir.join("p")).output().unwrap();
        let got: Vec<usize> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        let bad: Vec<String> = checks
            .iter()
            .zip(&got)
            .filter(|((_, a), b)| a != *b)
            .map(|((e, a), b)| format!("{e}: ours {a}, header {b}"))
            .collect();
        assert!(bad.is_empty(), "mismatches:\n{}", bad.join("\n"));
    }
}

// ---- CUDA EGL interop (CUDA Driver API, "EGL Interoperability"; cudaEGL.h) ----
/// `CUeglFrameType`.
pub const CU_EGL_FRAME_TYPE_ARRAY: u32 = 0;
pub const CU_EGL_FRAME_TYPE_PITCH: u32 = 1;
/// `CU_GRAPHICS_REGISTER_FLAGS_READ_ONLY`.
pub const CU_GRAPHICS_REGISTER_FLAGS_READ_ONLY: u32 = 1;

/// `CUeglFrame` (`CUeglFrame_v1`): a mapped EGL frame, planes as CUarrays (block-linear) or
/// pitch pointers (pitch-linear) depending on `frameType`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUeglFrame {
    /// Union of `CUarray pArray[3]` and `void *pPitch[3]`.
    pub frame: [*mut c_void; 3],
    pub width: u32,
    pub height: u32,
    pub depth: u32,
    pub pitch: u32,
    pub planeCount: u32,
    pub numChannels: u32,
    pub frameType: u32,
    pub eglColorFormat: u32,
    pub cuFormat: u32,
}

/// `CUresult cuGraphicsEGLRegisterImage(CUgraphicsResource *pCudaResource, EGLImageKHR image,
/// unsigned int flags)`.
pub type cuGraphicsEGLRegisterImage_fn =
    unsafe extern "C" fn(*mut *mut c_void, *mut c_void, u32) -> c_int;
/// `CUresult cuGraphicsResourceGetMappedEglFrame(CUeglFrame *eglFrame, CUgraphicsResource
/// resource, unsigned int index, unsigned int mipLevel)`.
pub type cuGraphicsResourceGetMappedEglFrame_fn =
    unsafe extern "C" fn(*mut CUeglFrame, *mut c_void, u32, u32) -> c_int;
/// `CUresult cuGraphicsUnregisterResource(CUgraphicsResource resource)`.
pub type cuGraphicsUnregisterResource_fn = unsafe extern "C" fn(*mut c_void) -> c_int;

#[cfg(test)]
mod egl_tests {
    #[test]
    fn cu_egl_frame_is_64_bytes() {
        // 3 pointers + 9 u32 = 60, padded to pointer alignment (CUDA driver API layout).
        assert_eq!(core::mem::size_of::<super::CUeglFrame>(), 64);
    }
}
