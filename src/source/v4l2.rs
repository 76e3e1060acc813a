//! V4L2 cameras (USB/UVC, CSI through a V4L2 bridge, vivid in tests): raw YUYV, NV12 or MJPEG
//! capture with MMAP streaming I/O ("Streaming I/O (Memory Mapping)" in the V4L2 API docs),
//! format negotiation, kernel frame timestamps, and disconnect/reconnect handling.
//!
//! It reuses the decoder's ioctl layer ([`crate::decode::v4l2::ioctl`]), so there is one V4L2
//! layer in jetwatch. Cameras give raw pictures, not access units, so this is not a
//! [`crate::source::Source`]: [`V4l2Camera::next_frame`] lends each frame to a closure and
//! re-queues its buffer afterwards (no copy, no allocation per frame).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jetwatch_ffi::v4l2 as sys;

use crate::decode::v4l2::fourcc_str;
use crate::decode::v4l2::ioctl::{self, Device, IoctlProvider, KernelIoctl, Mapping, PixFormat};
use crate::error::ErrorKind;

const CAP: u32 = sys::V4L2_BUF_TYPE_VIDEO_CAPTURE;

/// Raw formats jetwatch captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Yuyv,
    Nv12,
    Mjpeg,
}

impl PixelFormat {
    pub const ALL: [PixelFormat; 3] = [PixelFormat::Nv12, PixelFormat::Yuyv, PixelFormat::Mjpeg];

    pub fn fourcc(self) -> u32 {
        match self {
            PixelFormat::Yuyv => sys::V4L2_PIX_FMT_YUYV,
            PixelFormat::Nv12 => sys::V4L2_PIX_FMT_NV12,
            PixelFormat::Mjpeg => sys::V4L2_PIX_FMT_MJPEG,
        }
    }

    pub fn from_fourcc(f: u32) -> Option<Self> {
        PixelFormat::ALL.into_iter().find(|p| p.fourcc() == f)
    }
}

/// One format a camera offers, with its frame sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraFormat {
    pub fourcc: String,
    pub description: String,
    /// Known to jetwatch (YUYV, NV12, MJPEG).
    pub supported: Option<PixelFormat>,
    pub sizes: Vec<(u32, u32)>,
}

/// What `jetwatch probe` prints for each camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    pub path: PathBuf,
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    pub formats: Vec<CameraFormat>,
}

/// Every `/dev/video*` node that is a single-planar video capture device with streaming I/O.
pub fn list_cameras() -> Vec<CameraInfo> {
    let provider: Arc<dyn IoctlProvider> = Arc::new(KernelIoctl);
    let mut out = Vec::new();
    for (path, _) in ioctl::find_nodes("") {
        let Ok(dev) = Device::open(provider.clone(), &path) else {
            continue;
        };
        let Ok(caps) = dev.querycap() else { continue };
        if caps.device_caps & sys::V4L2_CAP_VIDEO_CAPTURE == 0
            || caps.device_caps & sys::V4L2_CAP_STREAMING == 0
        {
            continue;
        }
        let formats = dev
            .enum_formats(CAP)
            .unwrap_or_default()
            .into_iter()
            .map(|(f, description)| CameraFormat {
                fourcc: fourcc_str(f),
                description,
                supported: PixelFormat::from_fourcc(f),
                sizes: dev.frame_sizes(f).unwrap_or_default(),
            })
            .collect();
        out.push(CameraInfo {
            path,
            driver: caps.driver,
            card: caps.card,
            bus_info: caps.bus_info,
            formats,
        });
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a video capture device with streaming I/O ({driver})")]
    NotCapture { path: PathBuf, driver: String },
    #[error("{path} offers none of the requested formats {wanted:?} (it offers {offered:?})")]
    NoFormat {
        path: PathBuf,
        wanted: Vec<PixelFormat>,
        offered: Vec<String>,
    },
    #[error("{path}: {op} failed (buffer {index:?}, sequence {sequence:?}): {source}")]
    Ioctl {
        path: PathBuf,
        op: &'static str,
        index: Option<u32>,
        sequence: Option<u32>,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: camera disconnected ({why})")]
    Disconnected { path: PathBuf, why: String },
    #[error("{path}: no frame within {waited_ms} ms")]
    Timeout { path: PathBuf, waited_ms: u64 },
}

impl CameraError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CameraError::NoFormat { .. } | CameraError::NotCapture { .. } => ErrorKind::BadInput,
            _ => ErrorKind::Io,
        }
    }
}

/// Camera options, decided at start-up.
#[derive(Debug, Clone)]
pub struct CameraOptions {
    pub path: PathBuf,
    /// Formats in order of preference; the first one the camera offers is used.
    pub formats: Vec<PixelFormat>,
    /// Requested size; the driver picks the nearest it supports.
    pub width: u32,
    pub height: u32,
    pub buffers: u32,
    /// Longest wait for one frame.
    pub frame_timeout: Duration,
}

impl CameraOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CameraOptions {
            path: path.into(),
            formats: PixelFormat::ALL.to_vec(),
            width: 1280,
            height: 720,
            buffers: 4,
            frame_timeout: Duration::from_secs(2),
        }
    }
}

/// One captured frame, borrowed from the driver's buffer.
#[derive(Debug)]
pub struct CameraFrame<'a> {
    pub data: &'a [u8],
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub bytesperline: u32,
    /// Driver frame counter (gaps mean the driver dropped frames).
    pub sequence: u32,
    /// Kernel capture timestamp (CLOCK_MONOTONIC when the buffer says
    /// `V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC`), microseconds.
    pub timestamp_us: i64,
    pub monotonic: bool,
}

/// An open, streaming camera.
pub struct V4l2Camera {
    opts: CameraOptions,
    provider: Arc<dyn IoctlProvider>,
    dev: Option<Device>,
    maps: Vec<Mapping>,
    fmt: PixFormat,
    format: PixelFormat,
    frames: u64,
    reconnects: u64,
}

impl std::fmt::Debug for V4l2Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Camera")
            .field("path", &self.opts.path)
            .field("format", &self.format)
            .field("fmt", &self.fmt)
            .finish()
    }
}

impl V4l2Camera {
    /// Opens, negotiates a format (first of `opts.formats` the camera offers), allocates
    /// MMAP buffers and starts streaming.
    pub fn open(opts: CameraOptions) -> Result<Self, CameraError> {
        Self::open_with(Arc::new(KernelIoctl), opts)
    }

    pub fn open_with(
        provider: Arc<dyn IoctlProvider>,
        opts: CameraOptions,
    ) -> Result<Self, CameraError> {
        let mut cam = V4l2Camera {
            opts,
            provider,
            dev: None,
            maps: Vec::new(),
            fmt: PixFormat::default(),
            format: PixelFormat::Yuyv,
            frames: 0,
            reconnects: 0,
        };
        cam.start()?;
        Ok(cam)
    }

    fn err(
        &self,
        op: &'static str,
        index: Option<u32>,
        sequence: Option<u32>,
    ) -> impl FnOnce(std::io::Error) -> CameraError + '_ {
        move |source| {
            if matches!(
                source.raw_os_error(),
                Some(libc::ENODEV) | Some(libc::ENXIO)
            ) {
                CameraError::Disconnected {
                    path: self.opts.path.clone(),
                    why: format!("{op}: {source}"),
                }
            } else {
                CameraError::Ioctl {
                    path: self.opts.path.clone(),
                    op,
                    index,
                    sequence,
                    source,
                }
            }
        }
    }

    fn start(&mut self) -> Result<(), CameraError> {
        let path = self.opts.path.clone();
        let dev = Device::open(self.provider.clone(), &path).map_err(|source| {
            if source.raw_os_error() == Some(libc::ENOENT)
                || source.raw_os_error() == Some(libc::ENODEV)
            {
                CameraError::Disconnected {
                    path: path.clone(),
                    why: format!("open: {source}"),
                }
            } else {
                CameraError::Open {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let caps = dev
            .querycap()
            .map_err(self.err("VIDIOC_QUERYCAP", None, None))?;
        if caps.device_caps & sys::V4L2_CAP_VIDEO_CAPTURE == 0
            || caps.device_caps & sys::V4L2_CAP_STREAMING == 0
        {
            return Err(CameraError::NotCapture {
                path,
                driver: caps.driver,
            });
        }
        let offered = dev
            .enum_formats(CAP)
            .map_err(self.err("VIDIOC_ENUM_FMT", None, None))?;
        let Some(format) = self
            .opts
            .formats
            .iter()
            .copied()
            .find(|p| offered.iter().any(|(f, _)| *f == p.fourcc()))
        else {
            return Err(CameraError::NoFormat {
                path,
                wanted: self.opts.formats.clone(),
                offered: offered.iter().map(|(f, _)| fourcc_str(*f)).collect(),
            });
        };
        let fmt = dev
            .s_fmt(CAP, self.opts.width, self.opts.height, format.fourcc())
            .map_err(self.err("VIDIOC_S_FMT", None, None))?;
        if fmt.pixelformat != format.fourcc() {
            return Err(CameraError::NoFormat {
                path,
                wanted: vec![format],
                offered: vec![fourcc_str(fmt.pixelformat)],
            });
        }
        let n = dev
            .reqbufs(CAP, sys::V4L2_MEMORY_MMAP, self.opts.buffers)
            .map_err(self.err("VIDIOC_REQBUFS", None, None))?;
        let mut maps = Vec::with_capacity(n as usize);
        for i in 0..n {
            maps.push(dev.map(CAP, i).map_err(self.err("mmap", Some(i), None))?);
            dev.qbuf(CAP, i, 0, 0, None)
                .map_err(self.err("VIDIOC_QBUF", Some(i), None))?;
        }
        dev.streamon(CAP)
            .map_err(self.err("VIDIOC_STREAMON", None, None))?;
        self.maps = maps;
        self.dev = Some(dev);
        self.fmt = fmt;
        self.format = format;
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(dev) = self.dev.as_ref() {
            let _ = dev.streamoff(CAP);
        }
        self.maps.clear();
        if let Some(dev) = self.dev.as_ref() {
            let _ = dev.reqbufs(CAP, sys::V4L2_MEMORY_MMAP, 0);
        }
        self.dev = None;
    }

    pub fn format(&self) -> (PixelFormat, PixFormat) {
        (self.format, self.fmt)
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    pub fn is_connected(&self) -> bool {
        self.dev.is_some()
    }

    /// Waits (at most `opts.frame_timeout`) for the next frame and lends it to `f`.
    /// A vanished device is [`CameraError::Disconnected`]; the camera is then closed and
    /// [`V4l2Camera::reconnect`] reopens it.
    pub fn next_frame<R>(
        &mut self,
        f: impl FnOnce(CameraFrame<'_>) -> R,
    ) -> Result<R, CameraError> {
        let Some(dev) = self.dev.as_ref() else {
            return Err(CameraError::Disconnected {
                path: self.opts.path.clone(),
                why: "closed after an earlier disconnect".into(),
            });
        };
        let start = Instant::now();
        let d = loop {
            match dev.dqbuf(CAP, sys::V4L2_MEMORY_MMAP) {
                Ok(Some(d)) => break d,
                Ok(None) => {}
                Err(e) => {
                    let e = self.err("VIDIOC_DQBUF", None, None)(e);
                    if matches!(e, CameraError::Disconnected { .. }) {
                        self.stop();
                    }
                    return Err(e);
                }
            }
            let left = self.opts.frame_timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(CameraError::Timeout {
                    path: self.opts.path.clone(),
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            let rev = dev
                .poll(libc::POLLIN, left.as_millis().max(1) as i32)
                .map_err(self.err("poll", None, None))?;
            if rev & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
                && rev & libc::POLLIN == 0
            {
                // vb2 reports POLLERR when the queue is not streaming or the device was
                // unregistered (vb2_core_poll); probe with QUERYCAP to tell which.
                if let Err(e) = dev.querycap() {
                    let why = format!("poll revents {rev:#x}, QUERYCAP: {e}");
                    self.stop();
                    return Err(CameraError::Disconnected {
                        path: self.opts.path.clone(),
                        why,
                    });
                }
                let why = format!("poll revents {rev:#x}");
                self.stop();
                return Err(CameraError::Disconnected {
                    path: self.opts.path.clone(),
                    why,
                });
            }
        };
        let len = (d.bytesused as usize).min(self.maps[d.index as usize].len());
        let frame = CameraFrame {
            data: &self.maps[d.index as usize].as_slice()[..len],
            format: self.format,
            width: self.fmt.width,
            height: self.fmt.height,
            bytesperline: self.fmt.bytesperline,
            sequence: d.sequence,
            timestamp_us: d.timestamp_us,
            monotonic: d.flags & sys::V4L2_BUF_FLAG_TIMESTAMP_MASK
                == sys::V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC,
        };
        let r = f(frame);
        self.frames += 1;
        let requeue = self
            .dev
            .as_ref()
            .map(|dev| dev.qbuf(CAP, d.index, 0, 0, None));
        if let Some(Err(e)) = requeue {
            let e = self.err("VIDIOC_QBUF", Some(d.index), Some(d.sequence))(e);
            if matches!(e, CameraError::Disconnected { .. }) {
                self.stop();
            }
            return Err(e);
        }
        Ok(r)
    }

    /// Closes whatever is left and opens the camera again with the same options (a replugged
    /// camera at the same path). Fails with `Disconnected` while the node is absent; the
    /// caller retries on its reconnect policy.
    pub fn reconnect(&mut self) -> Result<(), CameraError> {
        self.stop();
        self.start()?;
        self.reconnects += 1;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.opts.path
    }
}

impl Drop for V4l2Camera {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_camera_is_disconnected_not_a_panic() {
        let e = V4l2Camera::open(CameraOptions::new("/dev/jetwatch-no-camera")).unwrap_err();
        assert!(matches!(e, CameraError::Disconnected { .. }), "{e}");
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn non_v4l2_node_is_an_ioctl_error() {
        let e = V4l2Camera::open(CameraOptions::new("/dev/null")).unwrap_err();
        assert!(
            matches!(
                e,
                CameraError::Ioctl {
                    op: "VIDIOC_QUERYCAP",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn fourcc_round_trip() {
        for p in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_fourcc(p.fourcc()), Some(p));
        }
        assert_eq!(PixelFormat::from_fourcc(sys::V4L2_PIX_FMT_H264), None);
    }
}
