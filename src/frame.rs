//! Data that flows between the stages: access units, stream descriptions, decoded pictures.
//!
//! Every buffer here is allocated once at start-up and then moved (never cloned) between
//! threads: a [`Picture`] travels from its decoder to the inference thread and back through
//! bounded channels, so the frame path allocates nothing.

use serde::{Deserialize, Serialize};

/// Compressed video codec of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "H.264",
            Codec::H265 => "H.265",
        }
    }
}

/// YCbCr → RGB matrix (ITU-T H.273 `matrix_coefficients`, reduced to what cameras send).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Matrix {
    /// BT.601 (`matrix_coefficients` 5 or 6); the default when the stream says nothing and
    /// the picture is at most 576 lines tall.
    #[default]
    Bt601,
    /// BT.709 (`matrix_coefficients` 1); the default for HD pictures without a VUI.
    Bt709,
}

/// Colour description of decoded pictures, taken from the SPS VUI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ColourDesc {
    pub matrix: Matrix,
    /// `video_full_range_flag`: luma 0..255 instead of 16..235.
    pub full_range: bool,
}

impl ColourDesc {
    /// The rule used when a stream has no colour description: BT.709 for pictures taller than
    /// 576 lines, BT.601 otherwise; limited range.
    pub fn default_for_height(height: u32) -> Self {
        ColourDesc {
            matrix: if height > 576 {
                Matrix::Bt709
            } else {
                Matrix::Bt601
            },
            full_range: false,
        }
    }
}

/// What a source knows about its stream before the first picture is decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    pub codec: Codec,
    /// Display size (after SPS cropping), in pixels.
    pub width: u32,
    pub height: u32,
    /// Nominal frame rate if the container or the VUI says one.
    pub fps: Option<f64>,
    pub colour: ColourDesc,
}

/// One access unit (all NAL units of one picture) in Annex-B form, with start codes, and with
/// parameter sets (VPS/SPS/PPS) in front of every IDR.
///
/// `data` is allocated once with the configured capacity and reused: sources `clear()` and
/// refill it, never grow it past its capacity (an oversized access unit is an error).
#[derive(Debug)]
pub struct AccessUnit {
    pub data: Vec<u8>,
    /// Presentation time in microseconds from the start of the stream.
    pub pts_us: i64,
    /// True if the access unit holds an IDR (H.264) or IRAP (H.265) picture.
    pub keyframe: bool,
    /// Zero-based index of the access unit in the stream (after looping it keeps counting).
    pub index: u64,
}

impl AccessUnit {
    pub fn with_capacity(bytes: usize) -> Self {
        AccessUnit {
            data: Vec::with_capacity(bytes),
            pts_us: 0,
            keyframe: false,
            index: 0,
        }
    }
}

/// Host NV12 picture: a luma plane of `pitch × height` bytes followed by an interleaved CbCr
/// plane of `pitch × ceil(height/2)` bytes, in one buffer owned by a decoder's picture pool.
#[derive(Debug)]
pub struct HostNv12 {
    pub buf: Box<[u8]>,
    pub width: u32,
    pub height: u32,
    pub pitch: usize,
}

impl HostNv12 {
    /// Allocates a picture able to hold `max_width × max_height`.
    pub fn with_capacity(max_width: u32, max_height: u32) -> Self {
        let pitch = (max_width as usize + 63) & !63;
        let rows = max_height as usize + (max_height as usize).div_ceil(2);
        HostNv12 {
            buf: vec![0u8; pitch * rows].into_boxed_slice(),
            width: 0,
            height: 0,
            pitch,
        }
    }

    /// Byte offset of the chroma plane for the current size.
    pub fn chroma_offset(&self) -> usize {
        self.pitch * self.height as usize
    }

    /// Sets the picture size, keeping the pitch; false if it does not fit the buffer.
    pub fn set_size(&mut self, width: u32, height: u32) -> bool {
        let rows = height as usize + (height as usize).div_ceil(2);
        if width as usize > self.pitch || self.pitch * rows > self.buf.len() {
            return false;
        }
        self.width = width;
        self.height = height;
        true
    }

    pub fn luma(&self) -> &[u8] {
        &self.buf[..self.chroma_offset()]
    }

    pub fn chroma(&self) -> &[u8] {
        let off = self.chroma_offset();
        &self.buf[off..off + self.pitch * (self.height as usize).div_ceil(2)]
    }

    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        let off = self.chroma_offset();
        let end = off + self.pitch * (self.height as usize).div_ceil(2);
        let (y, uv) = self.buf[..end].split_at_mut(off);
        (y, uv)
    }
}

/// NV12 picture in CUDA device memory (pitch-linear), e.g. an NVDEC surface mapped with
/// `cuvidMapVideoFrame` or a Jetson NvBufSurface mapped through EGL. The addresses are plain
/// numbers here; only the kernel-launch wrapper dereferences them, after checking them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceNv12 {
    /// CUdeviceptr of the luma plane.
    pub luma: u64,
    /// CUdeviceptr of the interleaved CbCr plane.
    pub chroma: u64,
    pub pitch: usize,
    pub width: u32,
    pub height: u32,
    /// CUDA device ordinal.
    pub device: u32,
}

/// NV12 picture held in CUDA arrays (Jetson block-linear surfaces registered through EGL):
/// read through texture objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceArrayNv12 {
    /// CUarray of the luma plane (R8).
    pub luma_array: u64,
    /// CUarray of the chroma plane (RG8).
    pub chroma_array: u64,
    pub width: u32,
    pub height: u32,
    pub device: u32,
}

/// Where a decoded picture lives.
#[derive(Debug)]
pub enum Picture {
    Host(HostNv12),
    Device(DeviceNv12),
    DeviceArray(DeviceArrayNv12),
}

impl Picture {
    pub fn size(&self) -> (u32, u32) {
        match self {
            Picture::Host(p) => (p.width, p.height),
            Picture::Device(p) => (p.width, p.height),
            Picture::DeviceArray(p) => (p.width, p.height),
        }
    }
}

/// Per-picture metadata that travels with it through the pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameMeta {
    /// Index of the camera in the configuration.
    pub stream: u16,
    /// Decoded-picture sequence number of this stream (counts every picture, dropped or not).
    pub seq: u64,
    pub pts_us: i64,
    /// Wall-clock time the access unit was read, in nanoseconds since the Unix epoch.
    pub capture_unix_ns: u64,
    /// Monotonic time (pipeline clock, ns) the access unit entered the decoder.
    pub decode_start_ns: u64,
    pub colour: ColourDesc,
    /// Opaque token the decoder uses to get the picture back (`Decoder::recycle`).
    pub token: u32,
}

/// A decoded picture on its way to inference.
#[derive(Debug)]
pub struct Frame {
    pub meta: FrameMeta,
    pub picture: Picture,
}
