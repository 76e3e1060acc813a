//! NVDEC hardware decoding through NVIDIA's NVDECODE API (`libnvcuvid.so.1`, opened at run
//! time). Decoded pictures stay on the GPU: each one is mapped with `cuvidMapVideoFrame64` and
//! handed on as [`Picture::Device`]; [`Decoder::recycle`] unmaps it.
//!
//! Flow (NVDEC Video Decoder API Programming Guide, SDK 13.0, "Video Decoder Pipeline" and
//! "Using NVIDIA Video Decoder (NVDECODE) API"):
//!
//! ```text
//! decode(au) -> cuvidParseVideoData(packet = one AU, CUVID_PKT_ENDOFPICTURE)
//!                 ├─ sequence callback  -> cuvidCreateDecoder / cuvidReconfigureDecoder
//!                 ├─ decode callback    -> cuvidDecodePicture
//!                 └─ display callback   -> picture index queued (fixed ring)
//!            then, for each queued index: cuvidMapVideoFrame64 -> cuvidGetDecodeStatus -> sink
//! recycle    -> cuvidUnmapVideoFrame64
//! ```
//!
//! * Surfaces: the decoder is created with the `min_num_decode_surfaces` the parser asks for
//!   plus a small margin, and that number is returned from the sequence callback so the
//!   parser cycles through exactly those (guide: "CUVIDEOFORMAT::min_num_decode_surfaces").
//! * Mapped pictures are bounded by `ulNumOutputSurfaces` = the pool size: when all are
//!   mapped downstream, the newest picture is dropped and counted (`dropped_pool_empty`).
//! * Low latency (guide, "Low latency decoding"): one access unit per packet with
//!   `CUVID_PKT_ENDOFPICTURE` and `ulMaxDisplayDelay = 0`, so a picture is displayed from the
//!   same `cuvidParseVideoData` call that carried it (streams without B-frames).
//! * Resolution change: `cuvidReconfigureDecoder` when the new coded size fits the maximum the
//!   decoder was created with and no picture is mapped; otherwise the decoder is recreated
//!   (the old one is kept until its mapped pictures come back).
//! * Errors: `cuvidGetDecodeStatus` after mapping; `Error` pictures are dropped and counted as
//!   corrupt, `Error_Concealed` ones are passed on and counted. Garbage never crashes.
//! * Nothing is allocated per frame: the display queue, the mapped-picture slots and the
//!   per-surface flags are fixed arrays sized at construction. Callbacks catch panics.

#[cfg(not(any(feature = "cuda12", feature = "cuda13")))]
compile_error!("feature `nvdec` needs a CUDA version feature: build with `cuda13` (dGPU) or `cuda12` (JetPack 6)");

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaContext, CudaStream};
use jetwatch_ffi::nvcuvid as sys;
use serde::Serialize;

use crate::decode::{DecodeStats, Decoded, Decoder};
use crate::error::{DecodeError, Unavailable};
use crate::frame::{
    AccessUnit, Codec, ColourDesc, DeviceNv12, HostNv12, Matrix, Picture, StreamInfo,
};

const BACKEND: &str = "nvdec";
/// Decode surfaces added to the parser's minimum, so NVDEC can work ahead of the mapped
/// pictures (NVIDIA's samples add the display delay; 4 covers the delay values we use).
const SURFACE_MARGIN: u32 = 4;
/// Hard ceiling of decode surfaces (NVDECODE allows up to 32 for H.264/HEVC).
const MAX_DECODE_SURFACES: usize = 32;
/// Capacity of the display queue between the display callback and the mapping loop. One
/// `cuvidParseVideoData` call displays at most the whole DPB (flush) plus the display delay.
const DISPLAY_QUEUE: usize = 64;
/// Most pictures that may be mapped at once (`ulNumOutputSurfaces`).
pub const MAX_POOL: usize = 64;
/// Decoders kept alive after a re-creation until their mapped pictures come back.
const MAX_RETIRED: usize = 4;

/// How the parser is set up; decided when the decoder is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvdecOptions {
    /// `ulMaxDisplayDelay`: 0 = lowest latency (each picture is displayed from the call that
    /// decoded it); NVIDIA recommends 2..4 for throughput when latency does not matter.
    pub max_display_delay: u32,
    /// Mark each packet `CUVID_PKT_ENDOFPICTURE` (the caller feeds exactly one access unit
    /// per `decode`, which every jetwatch source does).
    pub end_of_picture: bool,
}

impl Default for NvdecOptions {
    /// Low-latency mode.
    fn default() -> Self {
        NvdecOptions {
            max_display_delay: 0,
            end_of_picture: true,
        }
    }
}

/// What one codec/bit-depth combination can do on this GPU (`cuvidGetDecoderCaps`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NvdecCodecCaps {
    pub codec: &'static str,
    pub bit_depth: u8,
    pub supported: bool,
    pub max_width: u32,
    pub max_height: u32,
    pub min_width: u32,
    pub min_height: u32,
    /// `nMaxMBCount`: coded width × height / 256 must not exceed it.
    pub max_mb_count: u32,
    /// `nNumNVDECs`: NVDEC engines that can decode this combination.
    pub engines: u32,
}

/// NVDEC capabilities of one GPU, for `jetwatch probe`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NvdecCaps {
    pub gpu: u32,
    pub gpu_name: String,
    /// Number of NVDEC engines: the largest `nNumNVDECs` that `cuvidGetDecoderCaps` reports
    /// over the codecs queried (the SDK field "Number of NVDECs that can support IN params").
    pub engines: u32,
    pub codecs: Vec<NvdecCodecCaps>,
}

fn unavailable(reason: String) -> Unavailable {
    Unavailable {
        backend: BACKEND,
        reason,
    }
}

/// Process-wide `libnvcuvid.so.1` entry points (loaded once).
fn api() -> Result<&'static sys::Nvcuvid, Unavailable> {
    static API: OnceLock<Result<sys::Nvcuvid, String>> = OnceLock::new();
    let r = API.get_or_init(|| {
        // SAFETY: `libnvcuvid.so.1` is NVIDIA's NVDECODE library, installed with the driver;
        // its entry points have the SDK 12/13 signatures declared in `jetwatch_ffi::nvcuvid`.
        unsafe { sys::Nvcuvid::load() }.map_err(|e| {
            format!(
                "cannot load {} (installed with the NVIDIA driver, Debian package libnvcuvid1): {e}",
                sys::LIBNVCUVID
            )
        })
    });
    r.as_ref().map_err(|e| unavailable(e.clone()))
}

/// Checks for libcuda first (cudarc's dynamic loading panics without it), then libnvcuvid,
/// then opens the primary context of `gpu`.
fn open_gpu(gpu: u32) -> Result<(&'static sys::Nvcuvid, Arc<CudaContext>), Unavailable> {
    // SAFETY: only tries to dlopen libcuda under its usual names; no CUDA call is made.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(unavailable(
            "libcuda.so.1 (NVIDIA driver) not found: no CUDA driver on this host".into(),
        ));
    }
    let api = api()?;
    let ctx = CudaContext::new(gpu as usize)
        .map_err(|e| unavailable(format!("cannot open CUDA device {gpu}: {e}")))?;
    Ok((api, ctx))
}

fn codec_name(c: sys::cudaVideoCodec) -> &'static str {
    match c {
        sys::cudaVideoCodec_H264 => "H.264",
        sys::cudaVideoCodec_HEVC => "H.265",
        sys::cudaVideoCodec_AV1 => "AV1",
        sys::cudaVideoCodec_VP9 => "VP9",
        _ => "other",
    }
}

/// Queries `cuvidGetDecoderCaps` for H.264 8-bit, HEVC 8/10-bit and AV1 8-bit on `gpu`.
pub fn nvdec_caps(gpu: u32) -> Result<NvdecCaps, Unavailable> {
    let (api, ctx) = open_gpu(gpu)?;
    ctx.bind_to_thread()
        .map_err(|e| unavailable(format!("cannot bind CUDA context: {e}")))?;
    let gpu_name = ctx.name().unwrap_or_else(|_| "unknown".into());
    let mut codecs = Vec::new();
    for (codec, depth) in [
        (sys::cudaVideoCodec_H264, 8u8),
        (sys::cudaVideoCodec_HEVC, 8),
        (sys::cudaVideoCodec_HEVC, 10),
        (sys::cudaVideoCodec_AV1, 8),
    ] {
        let mut caps = sys::CUVIDDECODECAPS {
            eCodecType: codec,
            eChromaFormat: sys::cudaVideoChromaFormat_420,
            nBitDepthMinus8: u32::from(depth - 8),
            ..Default::default()
        };
        // SAFETY: `caps` is a valid, initialised CUVIDDECODECAPS; the context is current.
        let r = unsafe { (api.cuvidGetDecoderCaps)(&mut caps) };
        if r != sys::CUDA_SUCCESS {
            return Err(unavailable(format!(
                "cuvidGetDecoderCaps failed with CUresult {r}"
            )));
        }
        codecs.push(NvdecCodecCaps {
            codec: codec_name(codec),
            bit_depth: depth,
            supported: caps.bIsSupported != 0,
            max_width: caps.nMaxWidth,
            max_height: caps.nMaxHeight,
            min_width: u32::from(caps.nMinWidth),
            min_height: u32::from(caps.nMinHeight),
            max_mb_count: caps.nMaxMBCount,
            engines: u32::from(caps.nNumNVDECs),
        });
    }
    let engines = codecs.iter().map(|c| c.engines).max().unwrap_or(0);
    Ok(NvdecCaps {
        gpu,
        gpu_name,
        engines,
        codecs,
    })
}

#[derive(Debug, Clone, Copy, Default)]
struct DispEntry {
    index: c_int,
    progressive: bool,
    top_field_first: bool,
    pts: i64,
}

/// A picture mapped downstream: which decoder mapped it and where.
#[derive(Debug, Clone, Copy)]
struct MappedSlot {
    decoder: sys::CUvideodecoder,
    dptr: u64,
}

/// Everything the parser callbacks touch. Boxed so that its address (the parser's
/// `pUserData`) never moves.
struct State {
    api: &'static sys::Nvcuvid,
    codec: Codec,
    pool_size: usize,
    max_width: u32,
    max_height: u32,

    decoder: sys::CUvideodecoder,
    /// Maximum coded size the current decoder was created with.
    created_max_w: u32,
    created_max_h: u32,
    /// Current sequence: coded size, display rectangle, output (target) size, surfaces.
    coded_w: u32,
    coded_h: u32,
    display: sys::CUVIDRECT32,
    out_w: u32,
    out_h: u32,
    surfaces: u32,
    colour: ColourDesc,

    queue: [DispEntry; DISPLAY_QUEUE],
    q_head: usize,
    q_len: usize,
    /// Per decode surface: `cuvidDecodePicture` failed for the picture now in it.
    decode_failed: [bool; MAX_DECODE_SURFACES],
    slots: Box<[Option<MappedSlot>]>,
    mapped: usize,
    /// `CUVIDPROCPARAMS::output_stream` for mapping (null = the legacy default stream).
    output_stream: sys::CUstream,
    retired: [sys::CUvideodecoder; MAX_RETIRED],

    stats: DecodeStats,
    reconfigures: u64,
    recreates: u64,
    /// First error raised inside a callback during the current parse call.
    err: Option<DecodeError>,
}

impl State {
    fn push_display(&mut self, e: DispEntry) {
        if self.q_len == DISPLAY_QUEUE {
            self.stats.dropped_pool_empty += 1;
            return;
        }
        let i = (self.q_head + self.q_len) % DISPLAY_QUEUE;
        self.queue[i] = e;
        self.q_len += 1;
    }

    fn pop_display(&mut self) -> Option<DispEntry> {
        if self.q_len == 0 {
            return None;
        }
        let e = self.queue[self.q_head];
        self.q_head = (self.q_head + 1) % DISPLAY_QUEUE;
        self.q_len -= 1;
        Some(e)
    }

    fn colour_from(fmt: &sys::CUVIDEOFORMAT, height: u32) -> ColourDesc {
        // H.273 matrix_coefficients: 1 = BT.709, 5/6 = BT.601 (470BG / 170M); anything else
        // (2 = unspecified, absent VUI) falls back to the height rule.
        let vsd = fmt.video_signal_description;
        let matrix = match vsd.matrix_coefficients {
            1 => Matrix::Bt709,
            5 | 6 => Matrix::Bt601,
            _ => ColourDesc::default_for_height(height).matrix,
        };
        ColourDesc {
            matrix,
            full_range: vsd.video_full_range_flag(),
        }
    }

    /// Sequence callback body: returns the number of decode surfaces for the parser.
    fn on_sequence(&mut self, fmt: &sys::CUVIDEOFORMAT) -> Result<c_int, DecodeError> {
        let codec = self.codec.name();
        let expected = match self.codec {
            Codec::H264 => sys::cudaVideoCodec_H264,
            Codec::H265 => sys::cudaVideoCodec_HEVC,
        };
        if fmt.codec != expected {
            return Err(DecodeError::Backend {
                backend: BACKEND,
                msg: format!(
                    "parser reported codec {} for a {codec} stream",
                    codec_name(fmt.codec)
                ),
            });
        }
        if fmt.bit_depth_luma_minus8 != 0 || fmt.bit_depth_chroma_minus8 != 0 {
            return Err(DecodeError::UnsupportedCodec {
                codec,
                backend: BACKEND,
                hint: " at more than 8 bits (jetwatch's NVDEC path outputs 8-bit NV12 only)",
            });
        }
        if fmt.chroma_format != sys::cudaVideoChromaFormat_420 {
            return Err(DecodeError::UnsupportedCodec {
                codec,
                backend: BACKEND,
                hint: " with other than 4:2:0 chroma",
            });
        }
        let d = fmt.display_area;
        let out_w = (d.right - d.left).max(0) as u32 & !1;
        let out_h = (d.bottom - d.top).max(0) as u32 & !1;
        if out_w > self.max_width || out_h > self.max_height {
            return Err(DecodeError::TooLarge {
                width: out_w,
                height: out_h,
                max_width: self.max_width,
                max_height: self.max_height,
            });
        }
        let surfaces = (u32::from(fmt.min_num_decode_surfaces) + SURFACE_MARGIN)
            .min(MAX_DECODE_SURFACES as u32);
        let colour = Self::colour_from(fmt, out_h);

        if !self.decoder.is_null() {
            let same = fmt.coded_width == self.coded_w
                && fmt.coded_height == self.coded_h
                && d.left == self.display.left
                && d.top == self.display.top
                && d.right == self.display.right
                && d.bottom == self.display.bottom;
            if same {
                self.colour = colour;
                return Ok(self.surfaces as c_int);
            }
            if fmt.coded_width <= self.created_max_w
                && fmt.coded_height <= self.created_max_h
                && self.mapped == 0
            {
                let mut rc = sys::CUVIDRECONFIGUREDECODERINFO {
                    ulWidth: fmt.coded_width,
                    ulHeight: fmt.coded_height,
                    ulTargetWidth: out_w,
                    ulTargetHeight: out_h,
                    ulNumDecodeSurfaces: surfaces,
                    display_area: rect16(&d),
                    ..Default::default()
                };
                // SAFETY: `self.decoder` is a live decoder; we are inside the sequence
                // callback, where the API requires reconfiguration to happen; the context
                // is current on this thread (bound in `decode`/`flush`).
                let r = unsafe { (self.api.cuvidReconfigureDecoder)(self.decoder, &mut rc) };
                if r == sys::CUDA_SUCCESS {
                    self.reconfigures += 1;
                    self.set_sequence(fmt, out_w, out_h, surfaces, colour);
                    return Ok(surfaces as c_int);
                }
                log::warn!("nvdec: cuvidReconfigureDecoder failed (CUresult {r}); recreating");
            }
            self.retire_decoder();
            self.recreates += 1;
        }
        self.create_decoder(fmt, out_w, out_h, surfaces)?;
        self.set_sequence(fmt, out_w, out_h, surfaces, colour);
        Ok(surfaces as c_int)
    }

    fn set_sequence(
        &mut self,
        fmt: &sys::CUVIDEOFORMAT,
        out_w: u32,
        out_h: u32,
        surfaces: u32,
        colour: ColourDesc,
    ) {
        self.coded_w = fmt.coded_width;
        self.coded_h = fmt.coded_height;
        self.display = fmt.display_area;
        self.out_w = out_w;
        self.out_h = out_h;
        self.surfaces = surfaces;
        self.colour = colour;
        self.decode_failed = [false; MAX_DECODE_SURFACES];
    }

    fn create_decoder(
        &mut self,
        fmt: &sys::CUVIDEOFORMAT,
        out_w: u32,
        out_h: u32,
        surfaces: u32,
    ) -> Result<(), DecodeError> {
        let mut caps = sys::CUVIDDECODECAPS {
            eCodecType: fmt.codec,
            eChromaFormat: fmt.chroma_format,
            nBitDepthMinus8: u32::from(fmt.bit_depth_luma_minus8),
            ..Default::default()
        };
        // SAFETY: valid CUVIDDECODECAPS; context current.
        let r = unsafe { (self.api.cuvidGetDecoderCaps)(&mut caps) };
        if r != sys::CUDA_SUCCESS || caps.bIsSupported == 0 {
            return Err(DecodeError::UnsupportedCodec {
                codec: self.codec.name(),
                backend: BACKEND,
                hint: " on this GPU (cuvidGetDecoderCaps: not supported)",
            });
        }
        let max_w = (self.max_width.div_ceil(16) * 16)
            .max(fmt.coded_width)
            .min(caps.nMaxWidth);
        let max_h = (self.max_height.div_ceil(16) * 16)
            .max(fmt.coded_height)
            .min(caps.nMaxHeight);
        if fmt.coded_width > caps.nMaxWidth
            || fmt.coded_height > caps.nMaxHeight
            || (fmt.coded_width / 16) * (fmt.coded_height / 16) > caps.nMaxMBCount
        {
            return Err(DecodeError::TooLarge {
                width: fmt.coded_width,
                height: fmt.coded_height,
                max_width: caps.nMaxWidth,
                max_height: caps.nMaxHeight,
            });
        }
        let mut ci = sys::CUVIDDECODECREATEINFO {
            ulWidth: fmt.coded_width.into(),
            ulHeight: fmt.coded_height.into(),
            ulNumDecodeSurfaces: surfaces.into(),
            CodecType: fmt.codec,
            ChromaFormat: fmt.chroma_format,
            ulCreationFlags: sys::cudaVideoCreate_PreferCUVID,
            bitDepthMinus8: 0,
            ulMaxWidth: max_w.into(),
            ulMaxHeight: max_h.into(),
            display_area: rect16(&fmt.display_area),
            OutputFormat: sys::cudaVideoSurfaceFormat_NV12,
            DeinterlaceMode: if fmt.progressive_sequence != 0 {
                sys::cudaVideoDeinterlaceMode_Weave
            } else {
                sys::cudaVideoDeinterlaceMode_Adaptive
            },
            ulTargetWidth: out_w.into(),
            ulTargetHeight: out_h.into(),
            ulNumOutputSurfaces: self.pool_size as sys::tcu_ulong,
            ..Default::default()
        };
        let mut dec: sys::CUvideodecoder = std::ptr::null_mut();
        // SAFETY: `ci` is fully initialised; `dec` receives the handle; the context is
        // current on this thread.
        let r = unsafe { (self.api.cuvidCreateDecoder)(&mut dec, &mut ci) };
        if r != sys::CUDA_SUCCESS || dec.is_null() {
            return Err(DecodeError::Backend {
                backend: BACKEND,
                msg: format!(
                    "cuvidCreateDecoder({}x{}, {surfaces} surfaces) failed with CUresult {r}",
                    fmt.coded_width, fmt.coded_height
                ),
            });
        }
        self.decoder = dec;
        self.created_max_w = max_w;
        self.created_max_h = max_h;
        Ok(())
    }

    /// Takes the current decoder out of service: destroyed now if nothing it mapped is still
    /// downstream, otherwise kept until the last of its pictures is recycled.
    fn retire_decoder(&mut self) {
        let dec = std::mem::replace(&mut self.decoder, std::ptr::null_mut());
        if dec.is_null() {
            return;
        }
        let in_use = self.slots.iter().flatten().any(|s| s.decoder == dec);
        if !in_use {
            self.destroy(dec);
            return;
        }
        if let Some(r) = self.retired.iter_mut().find(|r| r.is_null()) {
            *r = dec;
            return;
        }
        // Too many generations outstanding: release the oldest pictures' decoder now. Its
        // pictures must not be read any more; they are forgotten (counted as dropped).
        let oldest = self.retired[0];
        for s in self.slots.iter_mut() {
            if s.is_some_and(|m| m.decoder == oldest) {
                *s = None;
                self.mapped -= 1;
                self.stats.dropped_pool_empty += 1;
            }
        }
        self.destroy(oldest);
        self.retired.rotate_left(1);
        self.retired[MAX_RETIRED - 1] = dec;
    }

    fn destroy(&self, dec: sys::CUvideodecoder) {
        // SAFETY: `dec` is a decoder we created and no longer use; context current.
        let r = unsafe { (self.api.cuvidDestroyDecoder)(dec) };
        if r != sys::CUDA_SUCCESS {
            log::warn!("nvdec: cuvidDestroyDecoder failed with CUresult {r}");
        }
    }

    fn on_decode(&mut self, pic: *mut sys::CUVIDPICPARAMS) -> Result<c_int, DecodeError> {
        if self.decoder.is_null() {
            return Err(DecodeError::Backend {
                backend: BACKEND,
                msg: "picture to decode before any sequence header".into(),
            });
        }
        // SAFETY: the parser passes a valid CUVIDPICPARAMS, whose first fields are
        // CUVIDPICPARAMS_HEAD (layout checked in the ffi tests).
        let idx = unsafe { (*(pic as *const sys::CUVIDPICPARAMS_HEAD)).CurrPicIdx };
        // SAFETY: `pic` comes straight from the parser for this decoder; context current.
        let r = unsafe { (self.api.cuvidDecodePicture)(self.decoder, pic) };
        if let Some(f) = usize::try_from(idx)
            .ok()
            .and_then(|i| self.decode_failed.get_mut(i))
        {
            *f = r != sys::CUDA_SUCCESS;
        }
        if r != sys::CUDA_SUCCESS {
            self.stats.corrupt += 1;
        }
        Ok(1)
    }

    /// Maps every picture the parser displayed and hands it to `sink`.
    fn drain(&mut self, gpu: u32, sink: &mut dyn FnMut(Decoded)) -> Result<(), DecodeError> {
        while let Some(e) = self.pop_display() {
            let failed = usize::try_from(e.index)
                .ok()
                .and_then(|i| self.decode_failed.get(i).copied())
                .unwrap_or(true);
            if failed {
                continue; // counted as corrupt when cuvidDecodePicture failed
            }
            let Some(slot) = self.slots.iter().position(|s| s.is_none()) else {
                self.stats.dropped_pool_empty += 1;
                continue;
            };
            let mut vpp = sys::CUVIDPROCPARAMS {
                progressive_frame: c_int::from(e.progressive),
                top_field_first: c_int::from(e.top_field_first),
                output_stream: self.output_stream,
                ..Default::default()
            };
            let mut dptr = 0u64;
            let mut pitch = 0u32;
            // SAFETY: live decoder, picture index from its parser's display callback,
            // out-pointers valid; context current. At most `pool_size` (= ulNumOutputSurfaces)
            // pictures are mapped at once (checked above).
            let r = unsafe {
                (self.api.cuvidMapVideoFrame64)(
                    self.decoder,
                    e.index,
                    &mut dptr,
                    &mut pitch,
                    &mut vpp,
                )
            };
            if r != sys::CUDA_SUCCESS {
                self.stats.corrupt += 1;
                log::warn!(
                    "nvdec: cuvidMapVideoFrame64(picture {}) failed with CUresult {r}",
                    e.index
                );
                continue;
            }
            let mut st = sys::CUVIDGETDECODESTATUS::default();
            // SAFETY: live decoder, valid index and out-struct; context current.
            let r = unsafe { (self.api.cuvidGetDecodeStatus)(self.decoder, e.index, &mut st) };
            if r == sys::CUDA_SUCCESS {
                match st.decodeStatus {
                    sys::cuvidDecodeStatus_Error => {
                        self.stats.corrupt += 1;
                        // SAFETY: `dptr` was just mapped by this decoder.
                        unsafe { (self.api.cuvidUnmapVideoFrame64)(self.decoder, dptr) };
                        continue;
                    }
                    sys::cuvidDecodeStatus_Error_Concealed => self.stats.corrupt += 1,
                    _ => {}
                }
            }
            self.slots[slot] = Some(MappedSlot {
                decoder: self.decoder,
                dptr,
            });
            self.mapped += 1;
            self.stats.pictures += 1;
            let chroma = dptr + u64::from(pitch) * u64::from((self.out_h + 1) & !1);
            sink(Decoded {
                picture: Picture::Device(DeviceNv12 {
                    luma: dptr,
                    chroma,
                    pitch: pitch as usize,
                    width: self.out_w,
                    height: self.out_h,
                    device: gpu,
                }),
                pts_us: e.pts,
                colour: self.colour,
                token: slot as u32,
            });
        }
        Ok(())
    }

    fn unmap_slot(&mut self, token: usize) {
        let Some(m) = self.slots.get_mut(token).and_then(|s| s.take()) else {
            log::warn!("nvdec: recycle of unknown or already recycled picture token {token}");
            return;
        };
        self.mapped -= 1;
        // SAFETY: `m.dptr` was mapped by `m.decoder`, which is still alive (current or
        // retired); context current.
        let r = unsafe { (self.api.cuvidUnmapVideoFrame64)(m.decoder, m.dptr) };
        if r != sys::CUDA_SUCCESS {
            log::warn!("nvdec: cuvidUnmapVideoFrame64 failed with CUresult {r}");
        }
        if m.decoder != self.decoder && !self.slots.iter().flatten().any(|s| s.decoder == m.decoder)
        {
            if let Some(r) = self.retired.iter_mut().find(|r| **r == m.decoder) {
                *r = std::ptr::null_mut();
                self.destroy(m.decoder);
            }
        }
    }
}

fn rect16(r: &sys::CUVIDRECT32) -> sys::CUVIDRECT16 {
    let c = |v: i32| v.clamp(i16::MIN.into(), i16::MAX.into()) as i16;
    sys::CUVIDRECT16 {
        left: c(r.left),
        top: c(r.top),
        right: c(r.right),
        bottom: c(r.bottom),
    }
}

/// Runs a callback body, turning errors and panics into a 0 return (which makes
/// `cuvidParseVideoData` fail) and keeping the first error for `decode` to return.
///
/// # Safety
/// `user` must be the `*mut State` registered as the parser's `pUserData`, with no other
/// reference to it alive (the parser calls back only from inside `cuvidParseVideoData`,
/// which `NvdecDecoder` calls through `&mut self`).
unsafe fn guarded(
    user: *mut c_void,
    f: impl FnOnce(&mut State) -> Result<c_int, DecodeError>,
) -> c_int {
    // SAFETY: guaranteed by the caller (see `# Safety`).
    let state = unsafe { &mut *(user as *mut State) };
    match catch_unwind(AssertUnwindSafe(|| f(state))) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            state.err.get_or_insert(e);
            0
        }
        Err(_) => {
            state.err.get_or_insert(DecodeError::Backend {
                backend: BACKEND,
                msg: "panic inside an NVDEC parser callback".into(),
            });
            0
        }
    }
}

unsafe extern "C" fn sequence_cb(user: *mut c_void, fmt: *mut sys::CUVIDEOFORMAT) -> c_int {
    // SAFETY: `user` is our State (see `guarded`); `fmt` is valid for the call.
    unsafe { guarded(user, |s| s.on_sequence(&*fmt)) }
}

unsafe extern "C" fn decode_cb(user: *mut c_void, pic: *mut sys::CUVIDPICPARAMS) -> c_int {
    // SAFETY: `user` is our State (see `guarded`); `pic` is valid for the call.
    unsafe { guarded(user, |s| s.on_decode(pic)) }
}

unsafe extern "C" fn display_cb(user: *mut c_void, disp: *mut sys::CUVIDPARSERDISPINFO) -> c_int {
    // SAFETY: `user` is our State (see `guarded`); `disp` is null (end of stream) or valid.
    unsafe {
        guarded(user, |s| {
            if let Some(d) = disp.as_ref() {
                s.push_display(DispEntry {
                    index: d.picture_index,
                    progressive: d.progressive_frame != 0,
                    top_field_first: d.top_field_first != 0,
                    pts: d.timestamp,
                });
            }
            Ok(1)
        })
    }
}

/// NVDEC decoder for one stream. Pictures it hands out are NV12 in device memory, valid until
/// given back with [`Decoder::recycle`].
pub struct NvdecDecoder {
    ctx: Arc<CudaContext>,
    gpu: u32,
    codec: Codec,
    options: NvdecOptions,
    parser: sys::CUvideoparser,
    state: Box<State>,
    /// Kept alive while its handle is in `state.output_stream`.
    output_stream: Option<Arc<CudaStream>>,
    /// As `output_stream`, for a pipeline stream of `crate::gpu`.
    pipeline_stream: Option<Arc<crate::gpu::CudaStream>>,
}

// SAFETY: the raw handles (parser, decoders, mapped pointers) are not tied to the creating
// thread: NVDECODE only requires the CUDA context to be current, which every method ensures
// with `bind_to_thread` before touching them, and all access goes through `&mut self`.
unsafe impl Send for NvdecDecoder {}

impl std::fmt::Debug for NvdecDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvdecDecoder")
            .field("gpu", &self.gpu)
            .field("codec", &self.codec)
            .field("options", &self.options)
            .field("stats", &self.state.stats)
            .finish()
    }
}

impl NvdecDecoder {
    /// A low-latency decoder (see [`NvdecOptions::default`]) for `info.codec` on CUDA device
    /// `gpu`, with at most `pool_size` pictures mapped at once and pictures up to
    /// `max_width × max_height` (a larger stream is `DecodeError::TooLarge`).
    pub fn new(
        info: &StreamInfo,
        gpu: u32,
        pool_size: usize,
        max_width: u32,
        max_height: u32,
    ) -> Result<Self, DecodeError> {
        Self::with_options(
            info,
            gpu,
            pool_size,
            max_width,
            max_height,
            NvdecOptions::default(),
        )
    }

    /// As [`NvdecDecoder::new`], with explicit parser options.
    pub fn with_options(
        info: &StreamInfo,
        gpu: u32,
        pool_size: usize,
        max_width: u32,
        max_height: u32,
        options: NvdecOptions,
    ) -> Result<Self, DecodeError> {
        if pool_size == 0 || pool_size > MAX_POOL {
            return Err(DecodeError::Backend {
                backend: BACKEND,
                msg: format!("pool size {pool_size} out of range 1..={MAX_POOL}"),
            });
        }
        let (api, ctx) = open_gpu(gpu)?;
        let mut state = Box::new(State {
            api,
            codec: info.codec,
            pool_size,
            max_width,
            max_height,
            decoder: std::ptr::null_mut(),
            created_max_w: 0,
            created_max_h: 0,
            coded_w: 0,
            coded_h: 0,
            display: sys::CUVIDRECT32::default(),
            out_w: 0,
            out_h: 0,
            surfaces: 0,
            colour: info.colour,
            queue: [DispEntry::default(); DISPLAY_QUEUE],
            q_head: 0,
            q_len: 0,
            decode_failed: [false; MAX_DECODE_SURFACES],
            slots: vec![None; pool_size].into_boxed_slice(),
            mapped: 0,
            output_stream: std::ptr::null_mut(),
            retired: [std::ptr::null_mut(); MAX_RETIRED],
            stats: DecodeStats::default(),
            reconfigures: 0,
            recreates: 0,
            err: None,
        });
        ctx.bind_to_thread().map_err(|e| DecodeError::Backend {
            backend: BACKEND,
            msg: format!("cannot bind CUDA context: {e}"),
        })?;
        let parser = create_parser(api, info.codec, options, &mut state)?;
        Ok(NvdecDecoder {
            ctx,
            gpu,
            codec: info.codec,
            options,
            parser,
            state,
            output_stream: None,
            pipeline_stream: None,
        })
    }

    /// Makes `cuvidMapVideoFrame64` run its post-processing copy on `stream`
    /// (`CUVIDPROCPARAMS::output_stream`), so a consumer on that stream (the preprocess
    /// kernel) is ordered after it without a device-wide sync. Without this the copy runs on
    /// the legacy default stream, which does not order against non-blocking streams such as
    /// cudarc's. The stream must belong to this decoder's device. As always, recycle a
    /// picture only once the GPU work reading it has finished (`cuvidUnmapVideoFrame64` is
    /// not documented as stream-ordered).
    pub fn set_output_stream(&mut self, stream: Arc<CudaStream>) {
        self.state.output_stream = stream.cu_stream() as sys::CUstream;
        self.output_stream = Some(stream);
    }

    /// [`NvdecDecoder::set_output_stream`] for the pipeline's `crate::gpu::CudaStream` (the one
    /// the CUDA preprocess, engine and postprocess queue on). Same device required.
    pub fn set_pipeline_stream(&mut self, stream: Arc<crate::gpu::CudaStream>) {
        self.state.output_stream = stream.raw() as sys::CUstream;
        self.pipeline_stream = Some(stream);
    }

    /// Decoder re-creations caused by a change of stream size that did not fit.
    pub fn recreates(&self) -> u64 {
        self.state.recreates
    }

    /// `cuvidReconfigureDecoder` calls (size changes handled in place).
    pub fn reconfigures(&self) -> u64 {
        self.state.reconfigures
    }

    /// Pictures currently mapped downstream.
    pub fn mapped(&self) -> usize {
        self.state.mapped
    }

    /// Copies a picture this decoder has mapped (and not yet recycled) into host memory:
    /// for tests, the self-test and debugging, not the frame path. `dst` must be large
    /// enough (`HostNv12::with_capacity`); its size is set to the picture's.
    pub fn download(&self, pic: &DeviceNv12, dst: &mut HostNv12) -> Result<(), DecodeError> {
        let mapped = self
            .state
            .slots
            .iter()
            .flatten()
            .any(|m| m.dptr == pic.luma);
        if !mapped {
            return Err(DecodeError::Backend {
                backend: BACKEND,
                msg: "download of a picture that is not mapped by this decoder".into(),
            });
        }
        if !dst.set_size(pic.width, pic.height) {
            return Err(DecodeError::TooLarge {
                width: pic.width,
                height: pic.height,
                max_width: dst.pitch as u32,
                max_height: 0,
            });
        }
        self.bind()?;
        if let Some(s) = &self.output_stream {
            s.synchronize().map_err(|e| DecodeError::Backend {
                backend: BACKEND,
                msg: format!("cuStreamSynchronize (download): {e}"),
            })?;
        }
        let dst_pitch = dst.pitch;
        let (y, uv) = dst.planes_mut();
        for (src, host, rows) in [
            (pic.luma, y, pic.height as usize),
            (pic.chroma, uv, (pic.height as usize).div_ceil(2)),
        ] {
            use cudarc::driver::sys as cu;
            let copy = cu::CUDA_MEMCPY2D {
                srcXInBytes: 0,
                srcY: 0,
                srcMemoryType: cu::CUmemorytype::CU_MEMORYTYPE_DEVICE,
                srcHost: std::ptr::null(),
                srcDevice: src,
                srcArray: std::ptr::null_mut(),
                srcPitch: pic.pitch,
                dstXInBytes: 0,
                dstY: 0,
                dstMemoryType: cu::CUmemorytype::CU_MEMORYTYPE_HOST,
                dstHost: host.as_mut_ptr() as *mut c_void,
                dstDevice: 0,
                dstArray: std::ptr::null_mut(),
                dstPitch: dst_pitch,
                WidthInBytes: pic.width as usize,
                Height: rows,
            };
            debug_assert!(host.len() >= dst_pitch * rows);
            // SAFETY: the source is a mapped NVDEC surface of `pitch × rows` bytes (checked
            // above to be mapped by this decoder); the destination slice holds
            // `dst_pitch × rows` bytes (`set_size` succeeded); context current.
            let r = unsafe { cu::cuMemcpy2D_v2(&copy) };
            if r != cu::CUresult::CUDA_SUCCESS {
                return Err(DecodeError::Backend {
                    backend: BACKEND,
                    msg: format!("cuMemcpy2D (download) failed: {r:?}"),
                });
            }
        }
        Ok(())
    }

    fn bind(&self) -> Result<(), DecodeError> {
        self.ctx.bind_to_thread().map_err(|e| DecodeError::Backend {
            backend: BACKEND,
            msg: format!("cannot bind CUDA context: {e}"),
        })
    }

    fn parse(
        &mut self,
        pkt: &mut sys::CUVIDSOURCEDATAPACKET,
        index: u64,
    ) -> Result<(), DecodeError> {
        self.state.err = None;
        // SAFETY: live parser; `pkt` points at caller data valid for the call; the callbacks
        // reach `self.state` only during this call, while we hold `&mut self`.
        let r = unsafe { (self.state.api.cuvidParseVideoData)(self.parser, pkt) };
        if let Some(e) = self.state.err.take() {
            if matches!(e, DecodeError::Corrupt { .. } | DecodeError::Backend { .. }) {
                self.state.stats.corrupt += 1;
            }
            return Err(e);
        }
        if r != sys::CUDA_SUCCESS {
            self.state.stats.corrupt += 1;
            return Err(DecodeError::Corrupt {
                index,
                msg: format!("cuvidParseVideoData failed with CUresult {r}"),
            });
        }
        Ok(())
    }
}

fn create_parser(
    api: &'static sys::Nvcuvid,
    codec: Codec,
    options: NvdecOptions,
    state: &mut State,
) -> Result<sys::CUvideoparser, DecodeError> {
    let mut pp = sys::CUVIDPARSERPARAMS {
        CodecType: match codec {
            Codec::H264 => sys::cudaVideoCodec_H264,
            Codec::H265 => sys::cudaVideoCodec_HEVC,
        },
        // Overridden by the sequence callback's return value.
        ulMaxNumDecodeSurfaces: 1,
        ulClockRate: 1_000_000,
        // Call the decode callback for partly corrupt pictures; status tells us the rest.
        ulErrorThreshold: 100,
        ulMaxDisplayDelay: options.max_display_delay,
        pUserData: state as *mut State as *mut c_void,
        pfnSequenceCallback: Some(sequence_cb),
        pfnDecodePicture: Some(decode_cb),
        pfnDisplayPicture: Some(display_cb),
        ..Default::default()
    };
    let mut parser: sys::CUvideoparser = std::ptr::null_mut();
    // SAFETY: `pp` is fully initialised; `pUserData` points at the boxed State, which
    // outlives the parser (the decoder destroys the parser before dropping the box).
    let r = unsafe { (api.cuvidCreateVideoParser)(&mut parser, &mut pp) };
    if r != sys::CUDA_SUCCESS || parser.is_null() {
        return Err(DecodeError::Backend {
            backend: BACKEND,
            msg: format!("cuvidCreateVideoParser failed with CUresult {r}"),
        });
    }
    Ok(parser)
}

impl Decoder for NvdecDecoder {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn decode(
        &mut self,
        au: &AccessUnit,
        sink: &mut dyn FnMut(Decoded),
    ) -> Result<(), DecodeError> {
        self.bind()?;
        self.state.stats.access_units += 1;
        if au.data.is_empty() {
            return Ok(());
        }
        let mut flags = sys::CUVID_PKT_TIMESTAMP;
        if self.options.end_of_picture {
            flags |= sys::CUVID_PKT_ENDOFPICTURE;
        }
        let mut pkt = sys::CUVIDSOURCEDATAPACKET {
            flags,
            payload_size: au.data.len() as sys::tcu_ulong,
            payload: au.data.as_ptr(),
            timestamp: au.pts_us,
        };
        let parsed = self.parse(&mut pkt, au.index);
        // Pictures displayed before an error are still valid: hand them on either way.
        let drained = self.state.drain(self.gpu, sink);
        parsed.and(drained)
    }

    fn flush(&mut self, sink: &mut dyn FnMut(Decoded)) -> Result<(), DecodeError> {
        self.bind()?;
        let mut pkt = sys::CUVIDSOURCEDATAPACKET {
            flags: sys::CUVID_PKT_ENDOFSTREAM,
            payload_size: 0,
            payload: std::ptr::null(),
            timestamp: 0,
        };
        let parsed = self.parse(&mut pkt, self.state.stats.access_units);
        let drained = self.state.drain(self.gpu, sink);
        // After end of stream the parser is spent: start a fresh one for whatever follows
        // (the decoder is kept; the next sequence header of the same size reuses it).
        // SAFETY: live parser, no callback in progress.
        let r = unsafe { (self.state.api.cuvidDestroyVideoParser)(self.parser) };
        if r != sys::CUDA_SUCCESS {
            log::warn!("nvdec: cuvidDestroyVideoParser failed with CUresult {r}");
        }
        self.parser = std::ptr::null_mut();
        self.parser = create_parser(self.state.api, self.codec, self.options, &mut self.state)?;
        parsed.and(drained)
    }

    fn recycle(&mut self, picture: Picture, token: u32) {
        if let Err(e) = self.bind() {
            log::warn!("nvdec: recycle: {e}");
            return;
        }
        let ok = match &picture {
            Picture::Device(p) => self
                .state
                .slots
                .get(token as usize)
                .and_then(|s| s.as_ref())
                .is_some_and(|m| m.dptr == p.luma),
            _ => false,
        };
        if !ok {
            log::warn!("nvdec: recycle: token {token} does not match a picture of this decoder");
            return;
        }
        self.state.unmap_slot(token as usize);
    }

    fn stats(&self) -> DecodeStats {
        self.state.stats
    }
}

impl Drop for NvdecDecoder {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_err() {
            log::warn!("nvdec: cannot bind CUDA context while dropping; leaking decoder");
            return;
        }
        let st = &mut *self.state;
        if !self.parser.is_null() {
            // SAFETY: live parser, no callback in progress.
            unsafe { (st.api.cuvidDestroyVideoParser)(self.parser) };
        }
        for i in 0..st.slots.len() {
            if st.slots[i].is_some() {
                st.unmap_slot(i);
            }
        }
        let dec = std::mem::replace(&mut st.decoder, std::ptr::null_mut());
        if !dec.is_null() {
            st.destroy(dec);
        }
        for i in 0..MAX_RETIRED {
            let r = std::mem::replace(&mut st.retired[i], std::ptr::null_mut());
            if !r.is_null() {
                st.destroy(r);
            }
        }
    }
}
