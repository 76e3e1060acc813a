//! V4L2 stateful (memory-to-memory) decoder: the interface NVIDIA's `NvVideoDecoder` wraps on
//! Jetson, and the one the kernel's own codec drivers (vicodec, and hardware ones) speak.
//!
//! Layers (docs/v4l2.md has the full picture):
//! - `jetwatch_ffi::v4l2` / `jetwatch_ffi::jetson`: raw UAPI and vendor declarations;
//! - [`ioctl`]: [`IoctlProvider`] (kernel `ioctl(2)` or `libnvv4l2`) and the typed [`Device`];
//! - [`state`]: the protocol of dev-decoder.rst as a pure state machine;
//! - this module: [`V4l2Decoder`], which drives a device with the state machine, polls with
//!   bounded waits, and implements [`crate::decode::Decoder`] (host NV12 pictures from MMAP
//!   capture buffers);
//! - [`jetson`] and [`egl`]: the Jetson provider, NVIDIA controls, NvBufSurface layouts and
//!   the EGL frame → CUDA picture description.
//!
//! Queues are multi-planar (`*_MPLANE`), as NVIDIA's decoder requires and vicodec offers with
//! `vicodec.multiplanar=1`.

pub mod egl;
pub mod ioctl;
pub mod jetson;
pub mod state;

use std::fmt;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jetwatch_ffi::v4l2 as sys;

pub use ioctl::{Device, IoctlProvider, KernelIoctl};
pub use state::{Action, Input, Phase};

use crate::decode::{DecodeStats, Decoded, Decoder};
use crate::error::DecodeError;
use crate::frame::{AccessUnit, ColourDesc, HostNv12, Picture};

/// Which V4L2 queue an error concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Bitstream in (`V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE`).
    Output,
    /// Pictures out (`V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE`).
    Capture,
    /// Device-wide (format, events, commands).
    Device,
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Queue::Output => "OUTPUT",
            Queue::Capture => "CAPTURE",
            Queue::Device => "device",
        })
    }
}

/// Errors of the V4L2 decoder, with the queue, buffer index and sequence they concern.
#[derive(Debug, thiserror::Error)]
pub enum V4l2Error {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a multi-planar memory-to-memory device with streaming I/O (driver {driver}, caps {caps:#x})")]
    NotM2m {
        path: PathBuf,
        driver: String,
        caps: u32,
    },
    #[error("{op} on the {queue} queue (buffer {index:?}, access unit {au:?}) failed: {source}")]
    Ioctl {
        op: &'static str,
        queue: Queue,
        index: Option<u32>,
        au: Option<u64>,
        #[source]
        source: std::io::Error,
    },
    #[error("{queue} buffer {index} (sequence {sequence}) was returned with V4L2_BUF_FLAG_ERROR")]
    BufferError {
        queue: Queue,
        index: u32,
        sequence: u32,
    },
    #[error("timed out after {waited_ms} ms waiting for {what} (phase {phase:?})")]
    Timeout {
        what: &'static str,
        phase: Phase,
        waited_ms: u64,
    },
    #[error("decoder protocol: {input:?} is not allowed in phase {phase:?}")]
    Protocol { phase: Phase, input: Input },
    #[error("access unit {au} is {size} bytes; OUTPUT buffers hold {capacity}")]
    AuTooLarge {
        au: u64,
        size: usize,
        capacity: usize,
    },
    #[error("setting control {id:#x} to {value} failed: {source}")]
    Control {
        id: u32,
        value: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("allocating {count} DMABUF capture buffers failed: {msg}")]
    Allocate { count: u32, msg: String },
    #[error("capture format {fourcc} is not NV12/NV12M (the driver offers no NV12 capture)")]
    CaptureFormat { fourcc: String },
    #[error("picture {width}x{height} exceeds the configured maximum {max_width}x{max_height}")]
    TooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    #[error(
        "the stream ended before the decoder found a sequence header ({aus} access units fed)"
    )]
    NoSequenceHeader { aus: u64 },
}

impl From<V4l2Error> for DecodeError {
    fn from(e: V4l2Error) -> Self {
        match e {
            V4l2Error::TooLarge {
                width,
                height,
                max_width,
                max_height,
            } => DecodeError::TooLarge {
                width,
                height,
                max_width,
                max_height,
            },
            V4l2Error::BufferError { sequence, .. } => DecodeError::Corrupt {
                index: sequence as u64,
                msg: e.to_string(),
            },
            V4l2Error::NoSequenceHeader { aus } => DecodeError::Corrupt {
                index: aus,
                msg: e.to_string(),
            },
            other => DecodeError::Backend {
                backend: "v4l2",
                msg: other.to_string(),
            },
        }
    }
}

/// Coded formats the decoder can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodedFormat {
    H264,
    H265,
    /// vicodec's Fast Walsh–Hadamard Transform codec (tests).
    Fwht,
}

impl CodedFormat {
    pub fn fourcc(self) -> u32 {
        match self {
            CodedFormat::H264 => sys::V4L2_PIX_FMT_H264,
            CodedFormat::H265 => sys::V4L2_PIX_FMT_HEVC,
            CodedFormat::Fwht => sys::V4L2_PIX_FMT_FWHT,
        }
    }
}

/// Decoder options, all decided at start-up.
#[derive(Debug, Clone)]
pub struct V4l2DecoderOptions {
    pub format: CodedFormat,
    /// Largest picture accepted; host pictures are allocated for this size.
    pub max_width: u32,
    pub max_height: u32,
    /// OUTPUT (bitstream) buffers and their size in bytes.
    pub output_buffers: u32,
    pub output_buffer_bytes: u32,
    /// CAPTURE buffers beyond the driver's `V4L2_CID_MIN_BUFFERS_FOR_CAPTURE`.
    pub extra_capture_buffers: u32,
    /// Host pictures in the pool handed downstream.
    pub pool_size: usize,
    /// Upper bound of every single wait (poll) before the decoder reports a timeout.
    pub wait: Duration,
    /// NVIDIA decoder controls (Jetson only; `None` for kernel drivers).
    pub nv_controls: Option<jetson::NvDecoderControls>,
}

impl Default for V4l2DecoderOptions {
    fn default() -> Self {
        V4l2DecoderOptions {
            format: CodedFormat::H264,
            max_width: 1920,
            max_height: 1088,
            output_buffers: 4,
            output_buffer_bytes: 2 << 20,
            extra_capture_buffers: 2,
            pool_size: 4,
            wait: Duration::from_secs(2),
            nv_controls: None,
        }
    }
}

const OUT: u32 = sys::V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE;
const CAP: u32 = sys::V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE;

/// CAPTURE buffers imported as DMABUF (Jetson: NvBufSurfaces), allocated by a
/// [`CaptureAllocator`] and described once for downstream (no copy per frame).
pub trait CaptureBuffers: Send {
    fn count(&self) -> u32;
    /// `(dma-buf fd, length)` of each plane of buffer `index`, for `VIDIOC_QBUF`.
    fn planes(&self, index: u32) -> &[(RawFd, u32)];
    /// The picture downstream reads for buffer `index` (visible size `width`×`height`).
    fn picture(&self, index: u32, width: u32, height: u32) -> Picture;
}

/// Allocates DMABUF capture buffers for a capture format (dev-decoder.rst, "Capture Setup",
/// with `V4L2_MEMORY_DMABUF`).
pub trait CaptureAllocator: Send {
    /// Capture pixel format to request: `V4L2_PIX_FMT_NV12` (one plane) or
    /// `V4L2_PIX_FMT_NV12M` (two planes, NVIDIA).
    fn pixelformat(&self) -> u32;
    fn allocate(
        &mut self,
        fmt: &ioctl::PlaneFormat,
        count: u32,
    ) -> Result<Box<dyn CaptureBuffers>, String>;
}

enum Store {
    Mmap(Vec<ioctl::Mapping>),
    Dmabuf {
        bufs: Box<dyn CaptureBuffers>,
        /// Buffers handed downstream and not yet recycled.
        held: Vec<bool>,
    },
}

/// Token bit marking a device picture (DMABUF capture buffer) rather than a host pool slot.
const DEVICE_TOKEN: u32 = 0x8000_0000;

struct Capture {
    store: Store,
    generation: u32,
    fmt: ioctl::PlaneFormat,
    /// Visible size (COMPOSE selection); `fmt` has the coded size.
    width: u32,
    height: u32,
}

/// A V4L2 stateful decoder with MMAP OUTPUT and MMAP CAPTURE buffers, producing host NV12.
pub struct V4l2Decoder {
    dev: Device,
    path: PathBuf,
    opts: V4l2DecoderOptions,
    phase: Phase,
    out_maps: Vec<ioctl::Mapping>,
    out_free: Vec<u32>,
    cap: Option<Capture>,
    pool: Vec<Option<HostNv12>>,
    stats: DecodeStats,
    /// Access units fed since start (for error context).
    fed: u64,
    /// Formats seen, for the caller (resolution changes).
    resolution_changes: u32,
    allocator: Option<Box<dyn CaptureAllocator>>,
    generation: u32,
    /// DMABUF sets replaced by a resolution change while some of their pictures were still
    /// downstream: (generation, buffers, pictures outstanding). Freed at the last recycle.
    retired: Vec<(u32, Box<dyn CaptureBuffers>, usize)>,
    /// An error from `recycle` (which cannot return one), reported by the next call.
    deferred: Option<V4l2Error>,
}

impl fmt::Debug for V4l2Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V4l2Decoder")
            .field("path", &self.path)
            .field("phase", &self.phase)
            .finish()
    }
}

fn io_err(
    op: &'static str,
    queue: Queue,
    index: Option<u32>,
    au: Option<u64>,
) -> impl FnOnce(std::io::Error) -> V4l2Error {
    move |source| V4l2Error::Ioctl {
        op,
        queue,
        index,
        au,
        source,
    }
}

impl V4l2Decoder {
    /// Opens `path` through `provider` and performs "Initialization" of dev-decoder.rst:
    /// QUERYCAP, S_FMT(OUTPUT, coded format), subscribe to `V4L2_EVENT_SOURCE_CHANGE` and
    /// `V4L2_EVENT_EOS`, REQBUFS + mmap of the OUTPUT buffers, STREAMON(OUTPUT).
    pub fn open(
        provider: Arc<dyn IoctlProvider>,
        path: &Path,
        opts: V4l2DecoderOptions,
    ) -> Result<Self, V4l2Error> {
        Self::open_with_capture(provider, path, opts, None)
    }

    /// As [`V4l2Decoder::open`], with DMABUF capture buffers from `allocator` (Jetson:
    /// NvBufSurfaces) instead of MMAP buffers copied to host pictures.
    pub fn open_with_capture(
        provider: Arc<dyn IoctlProvider>,
        path: &Path,
        opts: V4l2DecoderOptions,
        allocator: Option<Box<dyn CaptureAllocator>>,
    ) -> Result<Self, V4l2Error> {
        let dev = Device::open(provider, path).map_err(|source| V4l2Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let caps = dev
            .querycap()
            .map_err(io_err("VIDIOC_QUERYCAP", Queue::Device, None, None))?;
        if caps.device_caps & sys::V4L2_CAP_VIDEO_M2M_MPLANE == 0
            || caps.device_caps & sys::V4L2_CAP_STREAMING == 0
        {
            return Err(V4l2Error::NotM2m {
                path: path.to_path_buf(),
                driver: caps.driver,
                caps: caps.device_caps,
            });
        }
        let plan = opts.nv_controls.map(|c| c.plan());
        let apply = |stage: jetson::ControlStage| -> Result<(), V4l2Error> {
            for &(st, id, value) in plan.iter().flatten() {
                if st == stage {
                    jetson::set_ext_control(&dev, id, value)
                        .map_err(|source| V4l2Error::Control { id, value, source })?;
                }
            }
            Ok(())
        };
        apply(jetson::ControlStage::BeforeOutputFormat)?;
        dev.s_fmt_mplane(OUT, 0, 0, opts.format.fourcc(), opts.output_buffer_bytes)
            .map_err(io_err("VIDIOC_S_FMT", Queue::Output, None, None))?;
        apply(jetson::ControlStage::BeforeRequestBuffers)?;
        dev.subscribe_event(sys::V4L2_EVENT_SOURCE_CHANGE)
            .map_err(io_err(
                "VIDIOC_SUBSCRIBE_EVENT(SOURCE_CHANGE)",
                Queue::Device,
                None,
                None,
            ))?;
        // EOS is optional in the spec (the LAST flag is authoritative); ignore its absence.
        let _ = dev.subscribe_event(sys::V4L2_EVENT_EOS);
        let n = dev
            .reqbufs(OUT, sys::V4L2_MEMORY_MMAP, opts.output_buffers)
            .map_err(io_err("VIDIOC_REQBUFS", Queue::Output, None, None))?;
        let mut out_maps = Vec::with_capacity(n as usize);
        for i in 0..n {
            out_maps.push(
                dev.map(OUT, i)
                    .map_err(io_err("mmap", Queue::Output, Some(i), None))?,
            );
        }
        dev.streamon(OUT)
            .map_err(io_err("VIDIOC_STREAMON", Queue::Output, None, None))?;
        let pool = (0..opts.pool_size)
            .map(|_| Some(HostNv12::with_capacity(opts.max_width, opts.max_height)))
            .collect();
        Ok(V4l2Decoder {
            dev,
            path: path.to_path_buf(),
            out_free: (0..n).rev().collect(),
            out_maps,
            cap: None,
            phase: Phase::AwaitingSourceChange,
            pool,
            stats: DecodeStats::default(),
            fed: 0,
            resolution_changes: 0,
            allocator,
            generation: 0,
            retired: Vec::new(),
            deferred: None,
            opts,
        })
    }

    /// The Jetson decoder: `libnvv4l2` on the L4T r36 decoder node, NVIDIA controls applied,
    /// NvBufSurface DMABUF capture buffers registered with CUDA (zero copy). A CUDA context
    /// must be current on the calling thread. Missing libraries or node: `Unavailable`.
    pub fn open_jetson(
        mut opts: V4l2DecoderOptions,
        layout: jetson::SurfaceLayout,
        cuda_device: u32,
    ) -> Result<Self, DecodeError> {
        let provider: Arc<dyn IoctlProvider> = Arc::new(jetson::NvV4l2Ioctl::load()?);
        let node = jetson::decoder_node().ok_or_else(|| crate::error::Unavailable {
            backend: "jetson-v4l2",
            reason: format!(
                "no decoder node ({}); is this a Jetson with L4T r36?",
                jetwatch_ffi::jetson::DECODER_NODES.join(", ")
            ),
        })?;
        let alloc = jetson::NvSurfaceAllocator::new(layout, cuda_device)?;
        opts.nv_controls.get_or_insert_with(Default::default);
        Ok(Self::open_with_capture(
            provider,
            &node,
            opts,
            Some(Box::new(alloc)),
        )?)
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Current capture size, once the first source change has been handled.
    pub fn picture_size(&self) -> Option<(u32, u32)> {
        self.cap.as_ref().map(|c| (c.width, c.height))
    }

    /// Capture reallocations after the first setup (dynamic resolution changes).
    pub fn resolution_changes(&self) -> u32 {
        self.resolution_changes
    }

    fn advance(&mut self, input: Input) -> Result<Action, V4l2Error> {
        let (next, action) = state::step(self.phase, input).map_err(|i| V4l2Error::Protocol {
            phase: i.phase,
            input: i.input,
        })?;
        self.phase = next;
        Ok(action)
    }

    /// "Capture Setup": G_FMT(CAPTURE), choose NV12, REQBUFS, map and queue every buffer,
    /// STREAMON(CAPTURE). Any previous capture set is released first (resolution change).
    fn setup_capture(&mut self) -> Result<(), V4l2Error> {
        if let Some(old) = self.cap.take() {
            self.dev.streamoff(CAP).map_err(io_err(
                "VIDIOC_STREAMOFF",
                Queue::Capture,
                None,
                None,
            ))?;
            if let Store::Dmabuf { bufs, held } = old.store {
                let out = held.iter().filter(|h| **h).count();
                if out > 0 {
                    self.retired.push((old.generation, bufs, out));
                }
            }
            self.dev.reqbufs(CAP, self.memory(), 0).map_err(io_err(
                "VIDIOC_REQBUFS(0)",
                Queue::Capture,
                None,
                None,
            ))?;
            self.resolution_changes += 1;
        }
        let cur = self.dev.g_fmt_mplane(CAP).map_err(io_err(
            "VIDIOC_G_FMT",
            Queue::Capture,
            None,
            None,
        ))?;
        if cur.width > self.opts.max_width || cur.height > self.opts.max_height {
            return Err(V4l2Error::TooLarge {
                width: cur.width,
                height: cur.height,
                max_width: self.opts.max_width,
                max_height: self.opts.max_height,
            });
        }
        let want = self
            .allocator
            .as_ref()
            .map_or(sys::V4L2_PIX_FMT_NV12, |a| a.pixelformat());
        let fmt = if cur.pixelformat == want {
            cur
        } else {
            self.dev
                .s_fmt_mplane(CAP, cur.width, cur.height, want, 0)
                .map_err(io_err("VIDIOC_S_FMT", Queue::Capture, None, None))?
        };
        let planes_ok = match fmt.pixelformat {
            sys::V4L2_PIX_FMT_NV12 => fmt.num_planes == 1,
            // Two-plane NV12 only through an allocator (pictures described, not copied).
            sys::V4L2_PIX_FMT_NV12M => fmt.num_planes == 2 && self.allocator.is_some(),
            _ => false,
        };
        if fmt.pixelformat != want || !planes_ok {
            return Err(V4l2Error::CaptureFormat {
                fourcc: fourcc_str(fmt.pixelformat),
            });
        }
        let min = self
            .dev
            .g_ctrl(sys::V4L2_CID_MIN_BUFFERS_FOR_CAPTURE)
            .unwrap_or(1)
            .max(1) as u32;
        let n = self
            .dev
            .reqbufs(CAP, self.memory(), min + self.opts.extra_capture_buffers)
            .map_err(io_err("VIDIOC_REQBUFS", Queue::Capture, None, None))?;
        self.generation = (self.generation + 1) & 0x7fff;
        let store = match self.allocator.as_mut() {
            None => {
                let mut maps = Vec::with_capacity(n as usize);
                for i in 0..n {
                    maps.push(self.dev.map(CAP, i).map_err(io_err(
                        "mmap",
                        Queue::Capture,
                        Some(i),
                        None,
                    ))?);
                }
                Store::Mmap(maps)
            }
            Some(a) => {
                let bufs = a
                    .allocate(&fmt, n)
                    .map_err(|msg| V4l2Error::Allocate { count: n, msg })?;
                if bufs.count() < n {
                    return Err(V4l2Error::Allocate {
                        count: n,
                        msg: format!("allocator made {} buffers", bufs.count()),
                    });
                }
                Store::Dmabuf {
                    bufs,
                    held: vec![false; n as usize],
                }
            }
        };
        for i in 0..n {
            queue_capture(&self.dev, &store, i).map_err(io_err(
                "VIDIOC_QBUF",
                Queue::Capture,
                Some(i),
                None,
            ))?;
        }
        self.dev
            .streamon(CAP)
            .map_err(io_err("VIDIOC_STREAMON", Queue::Capture, None, None))?;
        // The visible rectangle is the COMPOSE target of CAPTURE ("Capture Setup", step 2);
        // the format holds the coded (aligned) size. Drivers without selection: the format.
        let (width, height) = match self.dev.g_selection(CAP, sys::V4L2_SEL_TGT_COMPOSE) {
            Ok(r)
                if r.width > 0
                    && r.height > 0
                    && r.width <= fmt.width
                    && r.height <= fmt.height =>
            {
                (r.width, r.height)
            }
            _ => (fmt.width, fmt.height),
        };
        self.cap = Some(Capture {
            store,
            generation: self.generation,
            width,
            height,
            fmt,
        });
        Ok(())
    }

    /// STREAMOFF/STREAMON on CAPTURE with every buffer re-queued: the other documented way
    /// out of the stopped state (dev-decoder.rst, "Drain"), done after `V4L2_DEC_CMD_START`
    /// because some drivers (vicodec in Linux 6.1) leave the queue's "last buffer dequeued"
    /// state set after START, so DQBUF would keep failing with EPIPE.
    fn restart_capture(&mut self) -> Result<(), V4l2Error> {
        let Some(cap) = self.cap.as_ref() else {
            return Ok(());
        };
        self.dev.streamoff(CAP).map_err(io_err(
            "VIDIOC_STREAMOFF",
            Queue::Capture,
            None,
            Some(self.fed),
        ))?;
        for i in 0..store_len(&cap.store) {
            if let Store::Dmabuf { held, .. } = &cap.store {
                if held[i as usize] {
                    continue; // queued again when recycled
                }
            }
            queue_capture(&self.dev, &cap.store, i).map_err(io_err(
                "VIDIOC_QBUF",
                Queue::Capture,
                Some(i),
                Some(self.fed),
            ))?;
        }
        self.dev.streamon(CAP).map_err(io_err(
            "VIDIOC_STREAMON",
            Queue::Capture,
            None,
            Some(self.fed),
        ))
    }

    fn memory(&self) -> u32 {
        if self.allocator.is_some() {
            sys::V4L2_MEMORY_DMABUF
        } else {
            sys::V4L2_MEMORY_MMAP
        }
    }

    fn perform(&mut self, action: Action) -> Result<(), V4l2Error> {
        match action {
            Action::None | Action::Drained | Action::NothingToDrain => Ok(()),
            Action::SetupCapture | Action::ReallocateCapture => self.setup_capture(),
            Action::SendStop => self.dev.decoder_cmd(sys::V4L2_DEC_CMD_STOP).map_err(io_err(
                "VIDIOC_DECODER_CMD(STOP)",
                Queue::Device,
                None,
                Some(self.fed),
            )),
            Action::SendStart => {
                self.dev
                    .decoder_cmd(sys::V4L2_DEC_CMD_START)
                    .map_err(io_err(
                        "VIDIOC_DECODER_CMD(START)",
                        Queue::Device,
                        None,
                        Some(self.fed),
                    ))?;
                self.restart_capture()
            }
        }
    }

    /// Takes every pending event; a resolution source change advances the state machine.
    fn take_events(&mut self) -> Result<bool, V4l2Error> {
        let mut any = false;
        while let Some(ev) = self.dev.dqevent().map_err(io_err(
            "VIDIOC_DQEVENT",
            Queue::Device,
            None,
            Some(self.fed),
        ))? {
            any = true;
            if let ioctl::Event::SourceChange { changes } = ev {
                if changes & sys::V4L2_EVENT_SRC_CH_RESOLUTION != 0 {
                    let a = self.advance(Input::SourceChange)?;
                    self.perform(a)?;
                }
            }
        }
        Ok(any)
    }

    /// Takes every pending event, dequeued OUTPUT buffer and finished CAPTURE buffer without
    /// blocking. Returns true if anything happened.
    fn service(&mut self, sink: &mut dyn FnMut(Decoded)) -> Result<bool, V4l2Error> {
        let mut any = self.take_events()?;
        while let Some(d) = self.dev.dqbuf(OUT, sys::V4L2_MEMORY_MMAP).map_err(io_err(
            "VIDIOC_DQBUF",
            Queue::Output,
            None,
            Some(self.fed),
        ))? {
            any = true;
            self.out_free.push(d.index);
            if d.flags & sys::V4L2_BUF_FLAG_ERROR != 0 {
                self.stats.corrupt += 1;
            }
        }
        if self.cap.is_none() {
            return Ok(any);
        }
        loop {
            let d = match self.dev.dqbuf(CAP, self.memory()) {
                Ok(Some(d)) => d,
                Ok(None) => break,
                // EPIPE: the LAST buffer was already taken; nothing more until restarted.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => break,
                Err(e) => {
                    return Err(io_err("VIDIOC_DQBUF", Queue::Capture, None, Some(self.fed))(e))
                }
            };
            any = true;
            let last = d.flags & sys::V4L2_BUF_FLAG_LAST != 0;
            let mut kept = false;
            if d.bytesused > 0 {
                if d.flags & sys::V4L2_BUF_FLAG_ERROR != 0 {
                    self.stats.corrupt += 1;
                } else {
                    kept = self.emit(&d, sink);
                }
            }
            if last {
                // The source-change event is queued before the LAST buffer (dev-decoder.rst,
                // "Dynamic Resolution Change") but may not have been taken yet: take it now
                // so the LAST buffer is attributed to the right transition.
                self.take_events()?;
                let a = self.advance(Input::LastBuffer)?;
                if a == Action::ReallocateCapture {
                    self.perform(a)?;
                    continue;
                }
                self.perform(a)?;
                // Keep the buffer for after a restart: re-queue it.
            }
            if !kept {
                if let Some(cap) = self.cap.as_ref() {
                    queue_capture(&self.dev, &cap.store, d.index).map_err(io_err(
                        "VIDIOC_QBUF",
                        Queue::Capture,
                        Some(d.index),
                        Some(self.fed),
                    ))?;
                }
            }
            if last {
                break;
            }
        }
        Ok(any)
    }

    /// Hands a finished capture buffer downstream. Returns true when the buffer itself went
    /// downstream (DMABUF: re-queued at `recycle`), false when it may be re-queued now.
    fn emit(&mut self, d: &ioctl::Dequeued, sink: &mut dyn FnMut(Decoded)) -> bool {
        let Some(cap) = self.cap.as_mut() else {
            return false;
        };
        if let Store::Dmabuf { bufs, held } = &mut cap.store {
            let Some(h) = held.get_mut(d.index as usize) else {
                return false;
            };
            *h = true;
            let picture = bufs.picture(d.index, cap.width, cap.height);
            self.stats.pictures += 1;
            sink(Decoded {
                picture,
                pts_us: d.timestamp_us,
                colour: ColourDesc::default_for_height(cap.height),
                token: DEVICE_TOKEN | (cap.generation << 16) | d.index,
            });
            return true;
        }
        let cap = &*cap;
        let Some(slot) = self.pool.iter().position(Option::is_some) else {
            self.stats.dropped_pool_empty += 1;
            return false;
        };
        let Some(mut pic) = self.pool[slot].take() else {
            return false;
        };
        let (w, h) = (cap.width, cap.height);
        if !pic.set_size(w, h) {
            self.pool[slot] = Some(pic);
            self.stats.corrupt += 1;
            return false;
        }
        let Store::Mmap(maps) = &cap.store else {
            return false;
        };
        let src = maps[d.index as usize].as_slice();
        let stride = cap.fmt.bytesperline[0] as usize;
        // NV12 in one plane: luma rows, then CbCr rows starting at stride × height (the
        // driver's height, which is the aligned height for NV12 single-buffer formats).
        let chroma_src = stride * cap.fmt.height as usize;
        let pitch = pic.pitch;
        let (y, uv) = pic.planes_mut();
        for r in 0..h as usize {
            let s = &src[r * stride..r * stride + w as usize];
            y[r * pitch..r * pitch + w as usize].copy_from_slice(s);
        }
        for r in 0..(h as usize).div_ceil(2) {
            let off = chroma_src + r * stride;
            if off + w as usize > src.len() {
                break;
            }
            uv[r * pitch..r * pitch + w as usize].copy_from_slice(&src[off..off + w as usize]);
        }
        self.stats.pictures += 1;
        sink(Decoded {
            picture: Picture::Host(pic),
            pts_us: d.timestamp_us,
            colour: ColourDesc::default_for_height(h),
            token: slot as u32,
        });
        false
    }

    /// Waits for the device to signal anything; fails once `opts.wait` has passed since
    /// `since` (the last progress), so every wait is bounded even with a provider whose
    /// `poll` cannot block (libnvv4l2).
    fn wait(&mut self, what: &'static str, since: Instant) -> Result<(), V4l2Error> {
        let Some(left) = self
            .opts
            .wait
            .checked_sub(since.elapsed())
            .filter(|d| !d.is_zero())
        else {
            return Err(V4l2Error::Timeout {
                what,
                phase: self.phase,
                waited_ms: since.elapsed().as_millis() as u64,
            });
        };
        let ms = (left.as_millis() as i32).max(1);
        self.dev
            .poll(libc::POLLIN | libc::POLLOUT | libc::POLLPRI, ms)
            .map_err(io_err("poll", Queue::Device, None, Some(self.fed)))?;
        Ok(())
    }

    /// Queues one access unit, servicing the device until an OUTPUT buffer is free.
    pub fn feed(
        &mut self,
        data: &[u8],
        pts_us: i64,
        sink: &mut dyn FnMut(Decoded),
    ) -> Result<(), V4l2Error> {
        self.take_deferred()?;
        let a = self.advance(Input::Feed)?;
        self.perform(a)?;
        self.service(sink)?;
        let mut since = Instant::now();
        while self.out_free.is_empty() {
            self.wait("a free OUTPUT buffer", since)?;
            if self.service(sink)? {
                since = Instant::now();
            }
        }
        let Some(index) = self.out_free.pop() else {
            return Ok(());
        };
        let map = &mut self.out_maps[index as usize];
        if data.len() > map.len() {
            self.out_free.push(index);
            return Err(V4l2Error::AuTooLarge {
                au: self.fed,
                size: data.len(),
                capacity: map.len(),
            });
        }
        map.as_mut_slice()[..data.len()].copy_from_slice(data);
        self.dev
            .qbuf(OUT, index, data.len() as u32, pts_us, None)
            .map_err(io_err(
                "VIDIOC_QBUF",
                Queue::Output,
                Some(index),
                Some(self.fed),
            ))?;
        self.fed += 1;
        self.stats.access_units += 1;
        self.service(sink)?;
        Ok(())
    }

    /// "Drain": `V4L2_DEC_CMD_STOP`, then every picture up to the CAPTURE buffer flagged
    /// LAST. Each wait is bounded by `opts.wait`; the decoder is then stopped and resumes
    /// (with `V4L2_DEC_CMD_START`) on the next feed.
    pub fn drain(&mut self, sink: &mut dyn FnMut(Decoded)) -> Result<(), V4l2Error> {
        self.take_deferred()?;
        self.service(sink)?;
        let a = self.advance(Input::Drain)?;
        if a == Action::NothingToDrain {
            if self.fed > 0 {
                return Err(V4l2Error::NoSequenceHeader { aus: self.fed });
            }
            return Ok(());
        }
        self.perform(a)?;
        let mut since = Instant::now();
        while self.phase != Phase::Stopped {
            if self.service(sink)? {
                since = Instant::now();
            } else {
                self.wait("the LAST capture buffer of a drain", since)?;
            }
        }
        Ok(())
    }

    /// A DMABUF capture buffer came back from downstream: queue it again (current set) or
    /// release its retired set once its last picture is back.
    fn recycle_device(&mut self, token: u32) {
        let generation = (token >> 16) & 0x7fff;
        let index = token & 0xffff;
        if let Some(cap) = self.cap.as_mut() {
            if cap.generation == generation {
                if let Store::Dmabuf { held, .. } = &mut cap.store {
                    if let Some(h) = held.get_mut(index as usize).filter(|h| **h) {
                        *h = false;
                        if let Err(e) = queue_capture(&self.dev, &cap.store, index) {
                            self.deferred = Some(V4l2Error::Ioctl {
                                op: "VIDIOC_QBUF (recycle)",
                                queue: Queue::Capture,
                                index: Some(index),
                                au: Some(self.fed),
                                source: e,
                            });
                        }
                    }
                }
                return;
            }
        }
        if let Some(pos) = self.retired.iter().position(|r| r.0 == generation) {
            self.retired[pos].2 -= 1;
            if self.retired[pos].2 == 0 {
                self.retired.swap_remove(pos);
            }
        }
    }

    fn take_deferred(&mut self) -> Result<(), V4l2Error> {
        match self.deferred.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// DMABUF pictures handed downstream and not yet recycled (all capture sets).
    pub fn device_pictures_outstanding(&self) -> usize {
        let cur = match self.cap.as_ref().map(|c| &c.store) {
            Some(Store::Dmabuf { held, .. }) => held.iter().filter(|h| **h).count(),
            _ => 0,
        };
        cur + self.retired.iter().map(|r| r.2).sum::<usize>()
    }

    /// "Seek": STREAMOFF/STREAMON on OUTPUT drops every queued bitstream buffer; CAPTURE is
    /// kept. The next access unit must start a new sequence (a keyframe).
    pub fn seek(&mut self) -> Result<(), V4l2Error> {
        self.dev.streamoff(OUT).map_err(io_err(
            "VIDIOC_STREAMOFF",
            Queue::Output,
            None,
            Some(self.fed),
        ))?;
        self.out_free.clear();
        self.out_free.extend((0..self.out_maps.len() as u32).rev());
        self.dev.streamon(OUT).map_err(io_err(
            "VIDIOC_STREAMON",
            Queue::Output,
            None,
            Some(self.fed),
        ))
    }
}

impl Drop for V4l2Decoder {
    fn drop(&mut self) {
        // Release order: streams off, unmap, free buffers; errors here have no caller.
        let _ = self.dev.streamoff(CAP);
        let _ = self.dev.streamoff(OUT);
        self.cap = None;
        self.out_maps.clear();
        let _ = self.dev.reqbufs(CAP, self.memory(), 0);
        let _ = self.dev.reqbufs(OUT, sys::V4L2_MEMORY_MMAP, 0);
    }
}

impl Decoder for V4l2Decoder {
    fn backend(&self) -> &'static str {
        "v4l2"
    }

    fn decode(
        &mut self,
        au: &AccessUnit,
        sink: &mut dyn FnMut(Decoded),
    ) -> Result<(), DecodeError> {
        self.feed(&au.data, au.pts_us, sink).map_err(Into::into)
    }

    fn flush(&mut self, sink: &mut dyn FnMut(Decoded)) -> Result<(), DecodeError> {
        self.drain(sink).map_err(Into::into)
    }

    fn recycle(&mut self, picture: Picture, token: u32) {
        if token & DEVICE_TOKEN != 0 {
            self.recycle_device(token);
            return;
        }
        if let (Picture::Host(p), Some(slot)) = (picture, self.pool.get_mut(token as usize)) {
            if slot.is_none() {
                *slot = Some(p);
            }
        }
    }

    fn stats(&self) -> DecodeStats {
        self.stats
    }
}

fn store_len(store: &Store) -> u32 {
    match store {
        Store::Mmap(m) => m.len() as u32,
        Store::Dmabuf { held, .. } => held.len() as u32,
    }
}

fn queue_capture(dev: &Device, store: &Store, index: u32) -> std::io::Result<()> {
    match store {
        Store::Mmap(_) => dev.qbuf(CAP, index, 0, 0, None),
        Store::Dmabuf { bufs, .. } => dev.qbuf_dmabuf(CAP, index, bufs.planes(index)),
    }
}

/// A fourcc as text ("NV12").
pub fn fourcc_str(f: u32) -> String {
    f.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_node_is_a_typed_open_error() {
        let e = V4l2Decoder::open(
            Arc::new(KernelIoctl),
            Path::new("/dev/jetwatch-no-such-video-node"),
            V4l2DecoderOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, V4l2Error::Open { .. }), "{e}");
        assert!(e.to_string().contains("/dev/jetwatch-no-such-video-node"));
    }

    #[test]
    fn non_v4l2_node_is_rejected() {
        // /dev/null opens but answers VIDIOC_QUERYCAP with ENOTTY.
        let e = V4l2Decoder::open(
            Arc::new(KernelIoctl),
            Path::new("/dev/null"),
            V4l2DecoderOptions::default(),
        )
        .unwrap_err();
        match e {
            V4l2Error::Ioctl {
                op, queue, source, ..
            } => {
                assert_eq!(op, "VIDIOC_QUERYCAP");
                assert_eq!(queue, Queue::Device);
                assert_eq!(source.raw_os_error(), Some(libc::ENOTTY));
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn errors_map_to_decode_error_kinds() {
        let e: DecodeError = V4l2Error::BufferError {
            queue: Queue::Capture,
            index: 3,
            sequence: 17,
        }
        .into();
        assert!(matches!(e, DecodeError::Corrupt { index: 17, .. }));
        assert!(e.to_string().contains("CAPTURE buffer 3"));
        let e: DecodeError = V4l2Error::Timeout {
            what: "x",
            phase: Phase::Draining,
            waited_ms: 2000,
        }
        .into();
        assert_eq!(e.kind(), crate::error::ErrorKind::Internal);
    }

    #[test]
    fn jetson_decoder_is_unavailable_off_jetson() {
        if jetson::decoder_node().is_some() {
            eprintln!("SKIP: running on a Jetson");
            return;
        }
        let e = V4l2Decoder::open_jetson(
            V4l2DecoderOptions::default(),
            jetson::SurfaceLayout::BlockLinear,
            0,
        )
        .unwrap_err();
        assert!(matches!(e, DecodeError::Unavailable(_)), "{e}");
        assert!(e.to_string().contains("libnvv4l2"), "{e}");
    }

    #[test]
    fn fourcc_text() {
        assert_eq!(fourcc_str(sys::V4L2_PIX_FMT_NV12M), "NM12");
    }
}
