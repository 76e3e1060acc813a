//! Jetson specifics (L4T r36 Multimedia API): the `libnvv4l2` ioctl provider, the decoder
//! node, NVIDIA's decoder controls, and NvBufSurface capture buffers (DMABUF).
//!
//! NVIDIA's decoder ("NvVideoDecoder" in the Multimedia API reference) is a V4L2 stateful
//! decoder reached only through `libnvv4l2` (`v4l2_open`, `v4l2_ioctl`, ...): OUTPUT plane
//! MMAP, CAPTURE plane `V4L2_PIX_FMT_NV12M` with `V4L2_MEMORY_DMABUF` buffers allocated as
//! NvBufSurfaces. This module is compile-checked and logic-tested here; it has not run on a
//! Jetson yet (docs/v4l2.md lists the first-run checks).

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use jetwatch_ffi::jetson as nv;
use libc::{c_ulong, c_void};

use super::ioctl::IoctlProvider;
use crate::error::Unavailable;

/// `libnvv4l2` opened at run time.
pub struct NvV4l2Ioctl {
    _lib: libloading::Library,
    open: nv::v4l2_open_fn,
    close: nv::v4l2_close_fn,
    ioctl: nv::v4l2_ioctl_fn,
    mmap: nv::v4l2_mmap_fn,
    munmap: nv::v4l2_munmap_fn,
}

impl std::fmt::Debug for NvV4l2Ioctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NvV4l2Ioctl")
    }
}

fn unavailable(what: String) -> Unavailable {
    Unavailable {
        backend: "jetson-v4l2",
        reason: format!("{what} (package nvidia-l4t-multimedia, JetPack 6 / L4T r36)"),
    }
}

impl NvV4l2Ioctl {
    /// Opens `libnvv4l2.so`; a typed "unavailable" error naming the library when absent.
    pub fn load() -> Result<Self, Unavailable> {
        // SAFETY: loading NVIDIA's libnvv4l2 runs its initialisers, which only register its
        // plugins; no Rust invariants depend on them.
        let lib = unsafe { libloading::Library::new(nv::LIBNVV4L2) }
            .map_err(|e| unavailable(format!("{}: {e}", nv::LIBNVV4L2)))?;
        macro_rules! sym {
            ($name:literal, $t:ty) => {{
                // SAFETY: the symbol has the C signature declared in jetwatch_ffi::jetson
                // (libv4l2-compatible API documented for libnvv4l2).
                let s: libloading::Symbol<$t> = unsafe { lib.get($name) }
                    .map_err(|e| unavailable(format!("{}: {e}", nv::LIBNVV4L2)))?;
                *s
            }};
        }
        let open = sym!(b"v4l2_open\0", nv::v4l2_open_fn);
        let close = sym!(b"v4l2_close\0", nv::v4l2_close_fn);
        let ioctl = sym!(b"v4l2_ioctl\0", nv::v4l2_ioctl_fn);
        let mmap = sym!(b"v4l2_mmap\0", nv::v4l2_mmap_fn);
        let munmap = sym!(b"v4l2_munmap\0", nv::v4l2_munmap_fn);
        Ok(NvV4l2Ioctl {
            _lib: lib,
            open,
            close,
            ioctl,
            mmap,
            munmap,
        })
    }
}

impl IoctlProvider for NvV4l2Ioctl {
    fn name(&self) -> &'static str {
        "libnvv4l2"
    }

    fn open(&self, path: &Path) -> io::Result<RawFd> {
        use std::os::unix::ffi::OsStrExt;
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: valid C string; v4l2_open has open(2) semantics.
        let fd = unsafe { (self.open)(c.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK) };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(fd)
        }
    }

    fn close(&self, fd: RawFd) {
        // SAFETY: the caller owns fd, opened by v4l2_open.
        unsafe { (self.close)(fd) };
    }

    unsafe fn ioctl(&self, fd: RawFd, request: c_ulong, arg: *mut c_void) -> io::Result<()> {
        loop {
            // SAFETY: forwarded caller contract (arg matches request).
            let r = unsafe { (self.ioctl)(fd, request, arg) };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    unsafe fn mmap(&self, fd: RawFd, len: usize, offset: u32) -> io::Result<*mut u8> {
        // SAFETY: offset/len from QUERYBUF on fd (caller contract).
        let p = unsafe {
            (self.mmap)(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                offset as i64,
            )
        };
        if p == libc::MAP_FAILED || p.is_null() {
            Err(io::Error::last_os_error())
        } else {
            Ok(p.cast())
        }
    }

    unsafe fn munmap(&self, ptr: *mut u8, len: usize) {
        // SAFETY: a mapping made by v4l2_mmap (caller contract).
        unsafe { (self.munmap)(ptr.cast(), len) };
    }

    /// libnvv4l2 has no poll entry point (NvVideoDecoder uses the private
    /// `VIDIOC_DEVICE_POLL` or blocking DQBUF). Nodes are opened non-blocking, so waiting is a
    /// short sleep after which the caller retries its non-blocking dequeues; the decoder
    /// bounds the total wait by its own deadline.
    fn poll(&self, _fd: RawFd, events: i16, timeout_ms: i32) -> io::Result<i16> {
        std::thread::sleep(std::time::Duration::from_millis(
            timeout_ms.clamp(0, 2) as u64
        ));
        Ok(events)
    }
}

/// The first existing decoder node of L4T r36, if any.
pub fn decoder_node() -> Option<PathBuf> {
    nv::DECODER_NODES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// NVIDIA decoder controls applied at start-up, in the order NvVideoDecoder's samples use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvDecoderControls {
    /// `V4L2_CID_MPEG_VIDEO_DISABLE_COMPLETE_FRAME_INPUT`: false (0) because jetwatch always
    /// queues whole access units, which also makes timestamps copy through.
    pub partial_frame_input: bool,
    /// `V4L2_CID_MPEG_VIDEO_ERROR_REPORTING`.
    pub error_reporting: bool,
    /// `V4L2_CID_MPEG_VIDEO_MAX_PERFORMANCE`.
    pub max_performance: bool,
}

impl Default for NvDecoderControls {
    fn default() -> Self {
        NvDecoderControls {
            partial_frame_input: false,
            error_reporting: true,
            max_performance: true,
        }
    }
}

/// When a control must be set relative to the V4L2 set-up steps (v4l2_nv_extensions.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ControlStage {
    /// Before S_FMT on the OUTPUT plane.
    BeforeOutputFormat,
    /// After both formats, before REQBUFS.
    BeforeRequestBuffers,
}

impl NvDecoderControls {
    /// `(stage, control id, value)` in application order.
    pub fn plan(&self) -> [(ControlStage, u32, i32); 3] {
        [
            (
                ControlStage::BeforeOutputFormat,
                nv::V4L2_CID_MPEG_VIDEO_DISABLE_COMPLETE_FRAME_INPUT,
                self.partial_frame_input as i32,
            ),
            (
                ControlStage::BeforeOutputFormat,
                nv::V4L2_CID_MPEG_VIDEO_ERROR_REPORTING,
                self.error_reporting as i32,
            ),
            (
                ControlStage::BeforeRequestBuffers,
                nv::V4L2_CID_MPEG_VIDEO_MAX_PERFORMANCE,
                self.max_performance as i32,
            ),
        ]
    }
}

/// Sets one control with `VIDIOC_S_EXT_CTRLS` (how NvVideoDecoder sets NVIDIA controls).
pub fn set_ext_control(dev: &super::Device, id: u32, value: i32) -> io::Result<()> {
    let mut ctrl = nv::v4l2_ext_control {
        id,
        size: 0,
        reserved2: [0],
        value64: value as i64,
    };
    let mut ctrls = nv::v4l2_ext_controls {
        which: nv::V4L2_CTRL_WHICH_CUR_VAL,
        count: 1,
        error_idx: 0,
        request_fd: 0,
        reserved: [0],
        controls: &mut ctrl,
    };
    // SAFETY: `ctrls` is a v4l2_ext_controls whose `controls` points at one live
    // v4l2_ext_control on this stack frame, as VIDIOC_S_EXT_CTRLS requires.
    unsafe {
        dev.provider().ioctl(
            dev.fd(),
            nv::VIDIOC_S_EXT_CTRLS,
            (&mut ctrls as *mut nv::v4l2_ext_controls).cast(),
        )
    }
}

/// NV12 surface geometry as NvBufSurfaceCreate reports it for one capture buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurfaceGeometry {
    pub layout: SurfaceLayout,
    pub width: u32,
    pub height: u32,
    pub pitch: [u32; 2],
    pub offset: [u32; 2],
    pub psize: [u32; 2],
    pub dmabuf_fd: RawFd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurfaceLayout {
    Pitch,
    BlockLinear,
}

/// Reads the geometry of an NV12 `NvBufSurfaceParams` and checks it is usable.
pub fn surface_geometry(p: &nv::NvBufSurfaceParams) -> Result<SurfaceGeometry, String> {
    let layout = match p.layout {
        nv::NVBUF_LAYOUT_PITCH => SurfaceLayout::Pitch,
        nv::NVBUF_LAYOUT_BLOCK_LINEAR => SurfaceLayout::BlockLinear,
        l => return Err(format!("unknown NvBufSurfaceLayout {l}")),
    };
    if p.colorFormat != nv::NVBUF_COLOR_FORMAT_NV12
        && p.colorFormat != nv::NVBUF_COLOR_FORMAT_NV12_ER
    {
        return Err(format!("colour format {} is not NV12", p.colorFormat));
    }
    let pp = &p.planeParams;
    if pp.num_planes != 2 {
        return Err(format!("NV12 surface with {} planes", pp.num_planes));
    }
    if pp.width[1] * 2 < pp.width[0] || pp.height[1] * 2 < pp.height[0] {
        return Err(format!(
            "chroma plane {}x{} too small for luma {}x{}",
            pp.width[1], pp.height[1], pp.width[0], pp.height[0]
        ));
    }
    if layout == SurfaceLayout::Pitch
        && (pp.pitch[0] < pp.width[0] || pp.pitch[1] < pp.width[1] * 2)
    {
        return Err(format!(
            "pitch {:?} narrower than the planes",
            &pp.pitch[..2]
        ));
    }
    let fd =
        RawFd::try_from(p.bufferDesc).map_err(|_| format!("bad dma-buf fd {}", p.bufferDesc))?;
    Ok(SurfaceGeometry {
        layout,
        width: p.width,
        height: p.height,
        pitch: [pp.pitch[0], pp.pitch[1]],
        offset: [pp.offset[0], pp.offset[1]],
        psize: [pp.psize[0], pp.psize[1]],
        dmabuf_fd: fd,
    })
}

/// Create parameters for the capture surfaces (NvVideoDecoder's samples: NV12, block-linear
/// for the GPU, `NVBUF_MEM_SURFACE_ARRAY`).
pub fn capture_create_params(
    width: u32,
    height: u32,
    layout: SurfaceLayout,
) -> nv::NvBufSurfaceCreateParams {
    nv::NvBufSurfaceCreateParams {
        gpuId: 0,
        width,
        height,
        size: 0,
        isContiguous: false,
        colorFormat: nv::NVBUF_COLOR_FORMAT_NV12,
        layout: match layout {
            SurfaceLayout::Pitch => nv::NVBUF_LAYOUT_PITCH,
            SurfaceLayout::BlockLinear => nv::NVBUF_LAYOUT_BLOCK_LINEAR,
        },
        memType: nv::NVBUF_MEM_SURFACE_ARRAY,
    }
}

#[cfg(test)]
pub(crate) fn test_params(layout: u32, pitch: [u32; 2]) -> nv::NvBufSurfaceParams {
    // SAFETY: NvBufSurfaceParams is plain integers and raw pointers; all-zero is valid.
    let mut p: nv::NvBufSurfaceParams = unsafe { std::mem::zeroed() };
    p.width = 1920;
    p.height = 1080;
    p.layout = layout;
    p.colorFormat = nv::NVBUF_COLOR_FORMAT_NV12;
    p.bufferDesc = 42;
    p.planeParams.num_planes = 2;
    p.planeParams.width = [1920, 960, 0, 0];
    p.planeParams.height = [1080, 540, 0, 0];
    p.planeParams.pitch = [pitch[0], pitch[1], 0, 0];
    p.planeParams.offset = [0, pitch[0] * 1088, 0, 0];
    p.planeParams.psize = [pitch[0] * 1088, pitch[1] * 544, 0, 0];
    p
}

/// `libnvbufsurface` entry points, opened at run time.
pub struct NvBufSurfaceLib {
    _lib: libloading::Library,
    create: nv::NvBufSurfaceCreateFn,
    destroy: nv::NvBufSurfaceDestroyFn,
    map_egl: nv::NvBufSurfaceMapEglImageFn,
    unmap_egl: nv::NvBufSurfaceUnMapEglImageFn,
}

impl NvBufSurfaceLib {
    pub fn load() -> Result<Self, Unavailable> {
        // SAFETY: loading NVIDIA's libnvbufsurface runs only its own initialisers.
        let lib = unsafe { libloading::Library::new(nv::LIBNVBUFSURFACE) }
            .map_err(|e| unavailable(format!("{}: {e}", nv::LIBNVBUFSURFACE)))?;
        macro_rules! sym {
            ($name:literal, $t:ty) => {{
                // SAFETY: the symbol has the C signature declared in jetwatch_ffi::jetson
                // (nvbufsurface.h as documented in the L4T r36 API reference).
                let s: libloading::Symbol<$t> = unsafe { lib.get($name) }
                    .map_err(|e| unavailable(format!("{}: {e}", nv::LIBNVBUFSURFACE)))?;
                *s
            }};
        }
        Ok(NvBufSurfaceLib {
            create: sym!(b"NvBufSurfaceCreate\0", nv::NvBufSurfaceCreateFn),
            destroy: sym!(b"NvBufSurfaceDestroy\0", nv::NvBufSurfaceDestroyFn),
            map_egl: sym!(b"NvBufSurfaceMapEglImage\0", nv::NvBufSurfaceMapEglImageFn),
            unmap_egl: sym!(
                b"NvBufSurfaceUnMapEglImage\0",
                nv::NvBufSurfaceUnMapEglImageFn
            ),
            _lib: lib,
        })
    }
}

/// One NvBufSurface (batch of one), destroyed on drop.
struct Surface {
    lib: std::sync::Arc<NvBufSurfaceLib>,
    surf: *mut nv::NvBufSurface,
    egl_mapped: bool,
}

impl Drop for Surface {
    fn drop(&mut self) {
        // SAFETY: `surf` came from NvBufSurfaceCreate and is released exactly once; the EGL
        // image is unmapped first (its CUDA registration was dropped before this surface).
        unsafe {
            if self.egl_mapped {
                (self.lib.unmap_egl)(self.surf, 0);
            }
            (self.lib.destroy)(self.surf);
        }
    }
}

/// Capture buffers backed by NvBufSurfaces: `V4L2_PIX_FMT_NV12M`, DMABUF, each surface
/// mapped once as an EGLImage and registered once with CUDA (feature `jetson`).
pub struct NvSurfaceAllocator {
    lib: std::sync::Arc<NvBufSurfaceLib>,
    layout: SurfaceLayout,
    device: u32,
}

impl NvSurfaceAllocator {
    /// `layout`: block-linear for the GPU (read through texture objects) or pitch.
    pub fn new(layout: SurfaceLayout, device: u32) -> Result<Self, Unavailable> {
        Ok(NvSurfaceAllocator {
            lib: std::sync::Arc::new(NvBufSurfaceLib::load()?),
            layout,
            device,
        })
    }
}

struct SurfaceSet {
    planes: Vec<[(RawFd, u32); 2]>,
    #[cfg(feature = "jetson")]
    pictures: Vec<(super::egl::register::EglRegistration, crate::frame::Picture)>,
    // Declared last: dropped after the CUDA registrations above.
    _surfaces: Vec<Surface>,
}

// SAFETY: the raw surface pointers are owned by this set and only used from the decoder
// thread that owns it.
unsafe impl Send for SurfaceSet {}
// SAFETY: as above; `Surface` holds a pointer owned by its set.
unsafe impl Send for Surface {}

impl super::CaptureBuffers for SurfaceSet {
    fn count(&self) -> u32 {
        self.planes.len() as u32
    }

    fn planes(&self, index: u32) -> &[(RawFd, u32)] {
        &self.planes[index as usize]
    }

    #[cfg(feature = "jetson")]
    fn picture(&self, index: u32, width: u32, height: u32) -> crate::frame::Picture {
        use crate::frame::Picture;
        match self.pictures[index as usize].1 {
            Picture::Device(mut d) => {
                d.width = width;
                d.height = height;
                Picture::Device(d)
            }
            Picture::DeviceArray(mut a) => {
                a.width = width;
                a.height = height;
                Picture::DeviceArray(a)
            }
            Picture::Host(_) => unreachable!("EGL registrations describe device pictures"),
        }
    }

    #[cfg(not(feature = "jetson"))]
    fn picture(&self, _index: u32, _width: u32, _height: u32) -> crate::frame::Picture {
        unreachable!("SurfaceSet is only built with feature `jetson` (allocate refuses otherwise)")
    }
}

impl super::CaptureAllocator for NvSurfaceAllocator {
    fn pixelformat(&self) -> u32 {
        jetwatch_ffi::v4l2::V4L2_PIX_FMT_NV12M
    }

    /// Creates `count` surfaces of the coded size, checks their geometry, maps each as an
    /// EGLImage and registers it with CUDA. A CUDA context must be current on this thread.
    fn allocate(
        &mut self,
        fmt: &super::ioctl::PlaneFormat,
        count: u32,
    ) -> Result<Box<dyn super::CaptureBuffers>, String> {
        if !cfg!(feature = "jetson") {
            return Err(
                "zero-copy NvBufSurface capture needs jetwatch built with feature `jetson`".into(),
            );
        }
        let mut surfaces = Vec::with_capacity(count as usize);
        let mut planes = Vec::with_capacity(count as usize);
        #[cfg(feature = "jetson")]
        let mut pictures = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let mut params = capture_create_params(fmt.width, fmt.height, self.layout);
            let mut surf = std::ptr::null_mut();
            // SAFETY: out-pointer and params on the stack, batch size 1.
            let r = unsafe { (self.lib.create)(&mut surf, 1, &mut params) };
            if r != 0 || surf.is_null() {
                return Err(format!(
                    "NvBufSurfaceCreate({}x{}) failed: {r}",
                    fmt.width, fmt.height
                ));
            }
            let mut s = Surface {
                lib: self.lib.clone(),
                surf,
                egl_mapped: false,
            };
            // SAFETY: NvBufSurfaceCreate succeeded with batch size 1, so surfaceList points
            // at one initialised NvBufSurfaceParams.
            let params0 = unsafe { *(*surf).surfaceList };
            let g = surface_geometry(&params0)?;
            planes.push([(g.dmabuf_fd, g.psize[0]), (g.dmabuf_fd, g.psize[1])]);
            // SAFETY: valid surface, index 0 of a batch of one.
            let r = unsafe { (self.lib.map_egl)(surf, 0) };
            if r != 0 {
                return Err(format!("NvBufSurfaceMapEglImage failed: {r}"));
            }
            s.egl_mapped = true;
            #[cfg(feature = "jetson")]
            {
                // SAFETY: the EGL image was just created for this surface.
                let egl = unsafe { (*(*surf).surfaceList).mappedAddr.eglImage };
                // SAFETY: `egl` lives until `s` is dropped, after the registration (field
                // order in SurfaceSet); the caller has a CUDA context current.
                let reg = unsafe {
                    super::egl::register::EglRegistration::new(
                        egl,
                        fmt.width,
                        fmt.height,
                        self.device,
                    )?
                };
                let pic = reg.picture_copy();
                pictures.push((reg, pic));
            }
            surfaces.push(s);
        }
        let _ = self.device;
        Ok(Box::new(SurfaceSet {
            planes,
            #[cfg(feature = "jetson")]
            pictures,
            _surfaces: surfaces,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_libnvv4l2_is_unavailable_with_package_hint() {
        if std::path::Path::new("/usr/lib/aarch64-linux-gnu/nvidia/libnvv4l2.so").exists() {
            eprintln!("SKIP: running on a Jetson");
            return;
        }
        let e = NvV4l2Ioctl::load().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("libnvv4l2.so"), "{msg}");
    }

    #[test]
    fn control_plan_orders_frame_input_before_max_performance() {
        let plan = NvDecoderControls::default().plan();
        assert_eq!(
            plan[0].1,
            nv::V4L2_CID_MPEG_VIDEO_DISABLE_COMPLETE_FRAME_INPUT
        );
        assert_eq!(plan[0].2, 0);
        assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(
            plan[2],
            (
                ControlStage::BeforeRequestBuffers,
                nv::V4L2_CID_MPEG_BASE + 554,
                1
            )
        );
    }

    #[test]
    fn geometry_of_pitch_and_block_linear_surfaces() {
        let g = surface_geometry(&test_params(nv::NVBUF_LAYOUT_PITCH, [2048, 2048])).unwrap();
        assert_eq!(g.layout, SurfaceLayout::Pitch);
        assert_eq!(g.offset[1], 2048 * 1088);
        assert_eq!(g.dmabuf_fd, 42);
        let g =
            surface_geometry(&test_params(nv::NVBUF_LAYOUT_BLOCK_LINEAR, [2048, 2048])).unwrap();
        assert_eq!(g.layout, SurfaceLayout::BlockLinear);
    }

    #[test]
    fn bad_surfaces_are_rejected() {
        let mut p = test_params(nv::NVBUF_LAYOUT_PITCH, [1000, 2048]);
        assert!(surface_geometry(&p).unwrap_err().contains("pitch"));
        p = test_params(7, [2048, 2048]);
        assert!(surface_geometry(&p)
            .unwrap_err()
            .contains("NvBufSurfaceLayout"));
        p = test_params(nv::NVBUF_LAYOUT_PITCH, [2048, 2048]);
        p.planeParams.num_planes = 3;
        assert!(surface_geometry(&p).is_err());
        p = test_params(nv::NVBUF_LAYOUT_PITCH, [2048, 2048]);
        p.colorFormat = 1;
        assert!(surface_geometry(&p).unwrap_err().contains("NV12"));
    }

    #[test]
    fn create_params_ask_for_nv12_surface_arrays() {
        let c = capture_create_params(1920, 1080, SurfaceLayout::BlockLinear);
        assert_eq!(c.colorFormat, nv::NVBUF_COLOR_FORMAT_NV12);
        assert_eq!(c.layout, nv::NVBUF_LAYOUT_BLOCK_LINEAR);
        assert_eq!(c.memType, nv::NVBUF_MEM_SURFACE_ARRAY);
    }
}
