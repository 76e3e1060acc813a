//! How ioctls reach a V4L2 driver, and a typed, safe layer over the ones jetwatch uses.
//!
//! [`IoctlProvider`] is the only place a raw ioctl happens: [`KernelIoctl`] calls
//! `open(2)`/`ioctl(2)`/`mmap(2)` on `/dev/videoN`; the Jetson provider
//! (`super::jetson::NvV4l2Ioctl`) calls `libnvv4l2`'s `v4l2_open`/`v4l2_ioctl`/`v4l2_mmap`,
//! which is how NVIDIA's decoder node must be driven (L4T Multimedia API, "NvV4l2Element").
//! [`Device`] owns one open node and exposes each ioctl as a safe method that builds the
//! right argument structure, so the safety argument is made once per ioctl here.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::Arc;

use jetwatch_ffi::v4l2 as sys;
use libc::{c_ulong, c_void};

/// Raw access to a V4L2 driver.
pub trait IoctlProvider: Send + Sync {
    /// Short name for messages ("kernel", "libnvv4l2").
    fn name(&self) -> &'static str;
    /// Opens a device node non-blocking (`O_RDWR | O_NONBLOCK`).
    fn open(&self, path: &Path) -> io::Result<RawFd>;
    fn close(&self, fd: RawFd);
    /// Performs one ioctl, retrying on `EINTR`.
    ///
    /// # Safety
    /// `arg` must point to a live, writable value of exactly the type `request` encodes
    /// (including any user pointers inside it, such as `v4l2_buffer.m.planes`).
    unsafe fn ioctl(&self, fd: RawFd, request: c_ulong, arg: *mut c_void) -> io::Result<()>;
    /// Maps `len` bytes of a buffer at the driver-given `offset` shared and read-write.
    ///
    /// # Safety
    /// `offset`/`len` must come from `VIDIOC_QUERYBUF` on `fd`; the mapping must be released
    /// with [`IoctlProvider::munmap`] before the buffers are freed.
    unsafe fn mmap(&self, fd: RawFd, len: usize, offset: u32) -> io::Result<*mut u8>;
    /// # Safety
    /// `ptr`/`len` must be a mapping returned by [`IoctlProvider::mmap`] of this provider.
    unsafe fn munmap(&self, ptr: *mut u8, len: usize);
    /// Waits up to `timeout_ms` for `events` on `fd`; returns the `revents`.
    fn poll(&self, fd: RawFd, events: i16, timeout_ms: i32) -> io::Result<i16>;
}

/// The Linux kernel's own drivers, through libc.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelIoctl;

impl IoctlProvider for KernelIoctl {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn open(&self, path: &Path) -> io::Result<RawFd> {
        use std::os::unix::ffi::OsStrExt;
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(fd)
        }
    }

    fn close(&self, fd: RawFd) {
        // SAFETY: the caller owns `fd` and never uses it again.
        unsafe { libc::close(fd) };
    }

    unsafe fn ioctl(&self, fd: RawFd, request: c_ulong, arg: *mut c_void) -> io::Result<()> {
        loop {
            // SAFETY: the caller guarantees `arg` matches `request` (see the trait docs).
            let r = unsafe { libc::ioctl(fd, request as _, arg) };
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
        // SAFETY: a fresh shared mapping chosen by the kernel; offset/len come from QUERYBUF.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            Ok(p.cast())
        }
    }

    unsafe fn munmap(&self, ptr: *mut u8, len: usize) {
        // SAFETY: the caller passes a mapping made by `mmap` above.
        unsafe { libc::munmap(ptr.cast(), len) };
    }

    fn poll(&self, fd: RawFd, events: i16, timeout_ms: i32) -> io::Result<i16> {
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd on the stack.
            let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
            if r >= 0 {
                return Ok(if r == 0 { 0 } else { p.revents });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// A dequeued buffer: what the driver said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dequeued {
    pub index: u32,
    pub flags: u32,
    pub sequence: u32,
    /// Bytes used in plane 0 (single-planar: the buffer).
    pub bytesused: u32,
    /// Timestamp in microseconds (copied from the OUTPUT buffer on m2m devices).
    pub timestamp_us: i64,
}

/// A V4L2 event taken with `VIDIOC_DQEVENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `V4L2_EVENT_SOURCE_CHANGE` with its `changes` bitmask.
    SourceChange {
        changes: u32,
    },
    /// `V4L2_EVENT_EOS`.
    Eos,
    Other(u32),
}

/// Multi-planar format as the driver reports it (planes limited to what we use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlaneFormat {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub num_planes: u8,
    pub sizeimage: [u32; 2],
    pub bytesperline: [u32; 2],
}

/// Single-planar format (cameras).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PixFormat {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
}

/// Driver and card names from `VIDIOC_QUERYCAP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    /// `device_caps` when `V4L2_CAP_DEVICE_CAPS` is set, otherwise `capabilities`.
    pub device_caps: u32,
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// One open V4L2 node. Closing happens on drop.
pub struct Device {
    provider: Arc<dyn IoctlProvider>,
    fd: RawFd,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("provider", &self.provider.name())
            .field("fd", &self.fd)
            .finish()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.provider.close(self.fd);
    }
}

macro_rules! ioctl_safe {
    ($self:ident, $req:expr, $arg:expr) => {{
        let arg = $arg;
        // SAFETY: `arg` is a live, exclusively borrowed value of the structure `$req` encodes
        // (checked against the kernel headers in jetwatch_ffi::v4l2's layout test); any user
        // pointers inside it point at live stack or heap values owned by the caller.
        unsafe {
            $self
                .provider
                .ioctl($self.fd, $req, (arg as *mut _) as *mut c_void)
        }
    }};
}

impl Device {
    pub fn open(provider: Arc<dyn IoctlProvider>, path: &Path) -> io::Result<Self> {
        let fd = provider.open(path)?;
        Ok(Device { provider, fd })
    }

    pub fn provider(&self) -> &Arc<dyn IoctlProvider> {
        &self.provider
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    pub fn querycap(&self) -> io::Result<Caps> {
        let mut c = sys::v4l2_capability::default();
        ioctl_safe!(self, sys::VIDIOC_QUERYCAP, &mut c)?;
        let device_caps = if c.capabilities & sys::V4L2_CAP_DEVICE_CAPS != 0 {
            c.device_caps
        } else {
            c.capabilities
        };
        Ok(Caps {
            driver: cstr(&c.driver),
            card: cstr(&c.card),
            bus_info: cstr(&c.bus_info),
            device_caps,
        })
    }

    /// Pixel formats offered on queue `type_` (`VIDIOC_ENUM_FMT` until `EINVAL`).
    pub fn enum_formats(&self, type_: u32) -> io::Result<Vec<(u32, String)>> {
        let mut out = Vec::new();
        for index in 0..64 {
            let mut d = sys::v4l2_fmtdesc {
                index,
                type_,
                ..Default::default()
            };
            match ioctl_safe!(self, sys::VIDIOC_ENUM_FMT, &mut d) {
                Ok(()) => out.push((d.pixelformat, cstr(&d.description))),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Discrete frame sizes for `fourcc` (stepwise/continuous ranges give their maximum).
    pub fn frame_sizes(&self, fourcc: u32) -> io::Result<Vec<(u32, u32)>> {
        let mut out = Vec::new();
        for index in 0..64 {
            let mut f = sys::v4l2_frmsizeenum {
                index,
                pixel_format: fourcc,
                ..Default::default()
            };
            match ioctl_safe!(self, sys::VIDIOC_ENUM_FRAMESIZES, &mut f) {
                Ok(()) => {
                    if f.type_ == sys::V4L2_FRMSIZE_TYPE_DISCRETE {
                        out.push((f.size[0], f.size[1]));
                    } else {
                        out.push((f.size[1], f.size[4]));
                        break;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub fn g_fmt_mplane(&self, type_: u32) -> io::Result<PlaneFormat> {
        let mut f = sys::v4l2_format {
            type_,
            ..Default::default()
        };
        ioctl_safe!(self, sys::VIDIOC_G_FMT, &mut f)?;
        Ok(plane_format(&f))
    }

    /// `VIDIOC_S_FMT` on a multi-planar queue; returns what the driver chose.
    pub fn s_fmt_mplane(
        &self,
        type_: u32,
        width: u32,
        height: u32,
        pixelformat: u32,
        sizeimage: u32,
    ) -> io::Result<PlaneFormat> {
        let mut f = sys::v4l2_format {
            type_,
            ..Default::default()
        };
        // SAFETY: reading `pix_mp` of the all-zero union is reading plain integers; it is the
        // member the driver uses for MPLANE types.
        let mut mp = unsafe { f.fmt.pix_mp };
        mp.width = width;
        mp.height = height;
        mp.pixelformat = pixelformat;
        mp.field = sys::V4L2_FIELD_NONE;
        mp.num_planes = 1;
        let mut pf = mp.plane_fmt;
        pf[0].sizeimage = sizeimage;
        mp.plane_fmt = pf;
        f.fmt.pix_mp = mp;
        ioctl_safe!(self, sys::VIDIOC_S_FMT, &mut f)?;
        Ok(plane_format(&f))
    }

    pub fn g_fmt(&self, type_: u32) -> io::Result<PixFormat> {
        let mut f = sys::v4l2_format {
            type_,
            ..Default::default()
        };
        ioctl_safe!(self, sys::VIDIOC_G_FMT, &mut f)?;
        Ok(pix_format(&f))
    }

    /// `VIDIOC_S_FMT` on a single-planar queue; returns what the driver chose.
    pub fn s_fmt(
        &self,
        type_: u32,
        width: u32,
        height: u32,
        pixelformat: u32,
    ) -> io::Result<PixFormat> {
        let mut f = sys::v4l2_format {
            type_,
            ..Default::default()
        };
        f.fmt.pix = sys::v4l2_pix_format {
            width,
            height,
            pixelformat,
            field: sys::V4L2_FIELD_NONE,
            ..pix_zero()
        };
        ioctl_safe!(self, sys::VIDIOC_S_FMT, &mut f)?;
        Ok(pix_format(&f))
    }

    /// `VIDIOC_REQBUFS`; returns the count the driver granted.
    pub fn reqbufs(&self, type_: u32, memory: u32, count: u32) -> io::Result<u32> {
        let mut r = sys::v4l2_requestbuffers {
            count,
            type_,
            memory,
            ..Default::default()
        };
        ioctl_safe!(self, sys::VIDIOC_REQBUFS, &mut r)?;
        Ok(r.count)
    }

    /// `VIDIOC_QUERYBUF`: (length, mem_offset) of plane 0 (or of the single-planar buffer).
    pub fn querybuf(&self, type_: u32, index: u32) -> io::Result<(u32, u32)> {
        let mut planes = [sys::v4l2_plane::default(); sys::VIDEO_MAX_PLANES];
        let mut b = sys::v4l2_buffer {
            index,
            type_,
            memory: sys::V4L2_MEMORY_MMAP,
            ..Default::default()
        };
        let mplane = is_mplane(type_);
        if mplane {
            b.m.planes = planes.as_mut_ptr();
            b.length = sys::VIDEO_MAX_PLANES as u32;
        }
        ioctl_safe!(self, sys::VIDIOC_QUERYBUF, &mut b)?;
        if mplane {
            // SAFETY (union read): MMAP planes report `mem_offset`.
            Ok((planes[0].length, unsafe { planes[0].m.mem_offset }))
        } else {
            // SAFETY (union read): MMAP buffers report `offset`.
            Ok((b.length, unsafe { b.m.offset }))
        }
    }

    /// `VIDIOC_QBUF` of an MMAP buffer (`bytesused` for OUTPUT, 0 for CAPTURE) or, when
    /// `dmabuf_fd` is given, of a DMABUF buffer.
    pub fn qbuf(
        &self,
        type_: u32,
        index: u32,
        bytesused: u32,
        timestamp_us: i64,
        dmabuf_fd: Option<(RawFd, u32)>,
    ) -> io::Result<()> {
        let mut planes = [sys::v4l2_plane::default(); sys::VIDEO_MAX_PLANES];
        let mut b = sys::v4l2_buffer {
            index,
            type_,
            memory: sys::V4L2_MEMORY_MMAP,
            bytesused,
            field: sys::V4L2_FIELD_NONE,
            ..Default::default()
        };
        b.timestamp.tv_sec = (timestamp_us.div_euclid(1_000_000)) as _;
        b.timestamp.tv_usec = (timestamp_us.rem_euclid(1_000_000)) as _;
        if let Some((fd, len)) = dmabuf_fd {
            b.memory = sys::V4L2_MEMORY_DMABUF;
            planes[0].m.fd = fd;
            planes[0].length = len;
        }
        if is_mplane(type_) {
            planes[0].bytesused = bytesused;
            b.m.planes = planes.as_mut_ptr();
            b.length = 1;
        } else if let Some((fd, len)) = dmabuf_fd {
            b.m.fd = fd;
            b.length = len;
        }
        ioctl_safe!(self, sys::VIDIOC_QBUF, &mut b)
    }

    /// `VIDIOC_QBUF` of a multi-planar DMABUF buffer: one `(dma-buf fd, length)` per plane
    /// (NvVideoDecoder queues NV12M capture buffers with the surface fd on both planes).
    pub fn qbuf_dmabuf(
        &self,
        type_: u32,
        index: u32,
        planes_in: &[(RawFd, u32)],
    ) -> io::Result<()> {
        let mut planes = [sys::v4l2_plane::default(); sys::VIDEO_MAX_PLANES];
        if planes_in.is_empty() || planes_in.len() > sys::VIDEO_MAX_PLANES || !is_mplane(type_) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "DMABUF QBUF needs 1..=8 planes on a multi-planar queue",
            ));
        }
        for (p, &(fd, len)) in planes.iter_mut().zip(planes_in) {
            p.m.fd = fd;
            p.length = len;
        }
        let mut b = sys::v4l2_buffer {
            index,
            type_,
            memory: sys::V4L2_MEMORY_DMABUF,
            field: sys::V4L2_FIELD_NONE,
            length: planes_in.len() as u32,
            ..Default::default()
        };
        b.m.planes = planes.as_mut_ptr();
        ioctl_safe!(self, sys::VIDIOC_QBUF, &mut b)
    }

    /// `VIDIOC_EXPBUF`: exports plane `plane` of MMAP buffer `index` as a dma-buf fd (owned by
    /// the caller).
    pub fn expbuf(&self, type_: u32, index: u32, plane: u32) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::FromRawFd;
        let mut e = sys::v4l2_exportbuffer {
            type_,
            index,
            plane,
            flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
            ..Default::default()
        };
        ioctl_safe!(self, sys::VIDIOC_EXPBUF, &mut e)?;
        // SAFETY: on success the kernel returned a new file descriptor that nobody else owns.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(e.fd) })
    }

    /// `VIDIOC_DQBUF`; `Ok(None)` when nothing is ready (`EAGAIN`, the node is non-blocking).
    /// `EPIPE` (the last buffer was already dequeued) is returned as an error.
    pub fn dqbuf(&self, type_: u32, memory: u32) -> io::Result<Option<Dequeued>> {
        let mut planes = [sys::v4l2_plane::default(); sys::VIDEO_MAX_PLANES];
        let mut b = sys::v4l2_buffer {
            type_,
            memory,
            ..Default::default()
        };
        let mplane = is_mplane(type_);
        if mplane {
            b.m.planes = planes.as_mut_ptr();
            b.length = sys::VIDEO_MAX_PLANES as u32;
        }
        match ioctl_safe!(self, sys::VIDIOC_DQBUF, &mut b) {
            Ok(()) => Ok(Some(Dequeued {
                index: b.index,
                flags: b.flags,
                sequence: b.sequence,
                bytesused: if mplane {
                    planes[0].bytesused
                } else {
                    b.bytesused
                },
                timestamp_us: b.timestamp.tv_sec * 1_000_000 + b.timestamp.tv_usec,
            })),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn streamon(&self, type_: u32) -> io::Result<()> {
        let mut t = type_ as i32;
        ioctl_safe!(self, sys::VIDIOC_STREAMON, &mut t)
    }

    pub fn streamoff(&self, type_: u32) -> io::Result<()> {
        let mut t = type_ as i32;
        ioctl_safe!(self, sys::VIDIOC_STREAMOFF, &mut t)
    }

    pub fn subscribe_event(&self, type_: u32) -> io::Result<()> {
        let mut s = sys::v4l2_event_subscription {
            type_,
            ..Default::default()
        };
        ioctl_safe!(self, sys::VIDIOC_SUBSCRIBE_EVENT, &mut s)
    }

    /// `VIDIOC_DQEVENT`; `Ok(None)` when no event is pending (`ENOENT`).
    pub fn dqevent(&self) -> io::Result<Option<Event>> {
        let mut e = sys::v4l2_event::default();
        match ioctl_safe!(self, sys::VIDIOC_DQEVENT, &mut e) {
            Ok(()) => Ok(Some(match e.type_ {
                sys::V4L2_EVENT_SOURCE_CHANGE => Event::SourceChange {
                    // SAFETY (union read): the kernel fills `src_change` for this event type.
                    changes: unsafe { e.u.src_change_changes },
                },
                sys::V4L2_EVENT_EOS => Event::Eos,
                t => Event::Other(t),
            })),
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `VIDIOC_G_SELECTION`; `type_` may be an `_MPLANE` type (it is passed as the
    /// single-planar equivalent, as vidioc-g-selection.rst asks).
    pub fn g_selection(&self, type_: u32, target: u32) -> io::Result<sys::v4l2_rect> {
        let mut s = sys::v4l2_selection {
            type_: single_planar(type_),
            target,
            ..Default::default()
        };
        ioctl_safe!(self, sys::VIDIOC_G_SELECTION, &mut s)?;
        Ok(s.r)
    }

    /// `VIDIOC_S_SELECTION`; returns the rectangle the driver chose.
    pub fn s_selection(
        &self,
        type_: u32,
        target: u32,
        r: sys::v4l2_rect,
    ) -> io::Result<sys::v4l2_rect> {
        let mut s = sys::v4l2_selection {
            type_: single_planar(type_),
            target,
            r,
            ..Default::default()
        };
        ioctl_safe!(self, sys::VIDIOC_S_SELECTION, &mut s)?;
        Ok(s.r)
    }

    pub fn decoder_cmd(&self, cmd: u32) -> io::Result<()> {
        let mut c = sys::v4l2_decoder_cmd {
            cmd,
            ..Default::default()
        };
        ioctl_safe!(self, sys::VIDIOC_DECODER_CMD, &mut c)
    }

    pub fn encoder_cmd(&self, cmd: u32) -> io::Result<()> {
        let mut c = sys::v4l2_encoder_cmd {
            cmd,
            ..Default::default()
        };
        ioctl_safe!(self, sys::VIDIOC_ENCODER_CMD, &mut c)
    }

    pub fn g_ctrl(&self, id: u32) -> io::Result<i32> {
        let mut c = sys::v4l2_control { id, value: 0 };
        ioctl_safe!(self, sys::VIDIOC_G_CTRL, &mut c)?;
        Ok(c.value)
    }

    pub fn s_ctrl(&self, id: u32, value: i32) -> io::Result<()> {
        let mut c = sys::v4l2_control { id, value };
        ioctl_safe!(self, sys::VIDIOC_S_CTRL, &mut c)
    }

    pub fn poll(&self, events: i16, timeout_ms: i32) -> io::Result<i16> {
        self.provider.poll(self.fd, events, timeout_ms)
    }

    /// Maps buffer `index` of queue `type_` (MMAP memory).
    pub fn map(&self, type_: u32, index: u32) -> io::Result<Mapping> {
        let (len, offset) = self.querybuf(type_, index)?;
        // SAFETY: offset/len come from QUERYBUF on this fd; `Mapping` unmaps on drop, and the
        // owners drop every mapping before `reqbufs(.., 0)` frees the buffers.
        let ptr = unsafe { self.provider.mmap(self.fd, len as usize, offset)? };
        Ok(Mapping {
            provider: self.provider.clone(),
            ptr,
            len: len as usize,
        })
    }
}

fn pix_zero() -> sys::v4l2_pix_format {
    sys::v4l2_pix_format {
        width: 0,
        height: 0,
        pixelformat: 0,
        field: 0,
        bytesperline: 0,
        sizeimage: 0,
        colorspace: 0,
        priv_: 0,
        flags: 0,
        ycbcr_enc: 0,
        quantization: 0,
        xfer_func: 0,
    }
}

fn single_planar(type_: u32) -> u32 {
    match type_ {
        sys::V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE => sys::V4L2_BUF_TYPE_VIDEO_CAPTURE,
        sys::V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE => sys::V4L2_BUF_TYPE_VIDEO_OUTPUT,
        t => t,
    }
}

pub fn is_mplane(type_: u32) -> bool {
    type_ == sys::V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE
        || type_ == sys::V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE
}

fn plane_format(f: &sys::v4l2_format) -> PlaneFormat {
    // SAFETY (union read): the caller used an MPLANE buffer type, so `pix_mp` is filled.
    let mp = unsafe { f.fmt.pix_mp };
    let pf = mp.plane_fmt;
    PlaneFormat {
        width: mp.width,
        height: mp.height,
        pixelformat: mp.pixelformat,
        num_planes: mp.num_planes,
        sizeimage: [pf[0].sizeimage, pf[1].sizeimage],
        bytesperline: [pf[0].bytesperline, pf[1].bytesperline],
    }
}

fn pix_format(f: &sys::v4l2_format) -> PixFormat {
    // SAFETY (union read): the caller used a single-planar buffer type, so `pix` is filled.
    let p = unsafe { f.fmt.pix };
    PixFormat {
        width: p.width,
        height: p.height,
        pixelformat: p.pixelformat,
        bytesperline: p.bytesperline,
        sizeimage: p.sizeimage,
    }
}

/// One mmap'ed V4L2 buffer; unmapped on drop.
pub struct Mapping {
    provider: Arc<dyn IoctlProvider>,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; access goes through &self/&mut self.
unsafe impl Send for Mapping {}

impl Mapping {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr/len describe a live mapping owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr/len describe a live, writable mapping owned exclusively by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len were returned by this provider's mmap and are unmapped once.
        unsafe { self.provider.munmap(self.ptr, self.len) };
    }
}

/// Names the V4L2 nodes under `/sys/class/video4linux` whose `name` attribute contains
/// `name_part`, sorted by node number (`/dev/videoN`).
pub fn find_nodes(name_part: &str) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/class/video4linux") else {
        return out;
    };
    for e in rd.flatten() {
        let node = e.file_name().to_string_lossy().into_owned();
        if !node.starts_with("video") {
            continue;
        }
        let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        let name = name.trim().to_string();
        if name.contains(name_part) {
            out.push((std::path::Path::new("/dev").join(&node), name));
        }
    }
    out.sort_by_key(|(p, _)| {
        p.to_string_lossy()
            .trim_start_matches("/dev/video")
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    out
}
