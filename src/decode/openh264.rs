//! Software H.264 decoder: Cisco's OpenH264 through the `openh264` crate, which compiles the
//! bundled upstream C++ source into the binary (BSD-2-Clause, see the README's licence note).
//! OpenH264 outputs host I420; each picture is converted to NV12 into a picture of a fixed
//! pool allocated at construction. When every pool picture is downstream, the new picture is
//! dropped and counted (`dropped_pool_empty`); nothing is allocated per frame.
//!
//! OpenH264's README lists Constrained Baseline only, but its decoder also handles CABAC and
//! B slices: the Main-profile clips of `../shared/media` decode with the frame counts of their
//! README and bit-exact with FFmpeg, and Main/High streams with B-frames decode completely
//! when OpenH264 is left to reorder (`tests/decode_openh264.rs`). Forcing output after every
//! access unit (the crate's default) breaks B-frame streams, and letting it reorder delays
//! every picture by one access unit; so output is forced only where the SPS rules out
//! reordering (Baseline, or VUI `max_num_reorder_frames == 0`). H.265 is refused with a hint
//! naming the hardware decoders.

use openh264::decoder::{DecodeOptions, Decoder as Oh264, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use crate::decode::{DecodeStats, Decoded, Decoder};
use crate::error::DecodeError;
use crate::frame::{AccessUnit, Codec, ColourDesc, HostNv12, Picture, StreamInfo};
use crate::source::annexb::NalUnits;
use crate::source::sps::parse_h264_sps;

/// Most access units whose pictures can be pending inside the decoder (H.264 DPB size 16,
/// plus margin).
const MAX_PENDING: usize = 32;

const BACKEND: &str = "openh264";

/// OpenH264 decoder with a fixed pool of host NV12 pictures.
pub struct OpenH264Decoder {
    dec: Oh264,
    /// Pool slots; `Some` while the picture is in the pool, `None` while it is downstream.
    pool: Vec<Option<HostNv12>>,
    /// Tokens (slot indices) of free pictures.
    free: Vec<u32>,
    colour: ColourDesc,
    max_width: u32,
    max_height: u32,
    stats: DecodeStats,
    /// PTS of access units whose pictures have not come out yet, unordered. Pictures leave
    /// the decoder in presentation order, so each takes the smallest pending PTS.
    pending: [i64; MAX_PENDING],
    n_pending: usize,
    /// Force OpenH264 to output each picture right after its access unit (no reordering
    /// delay). Safe only when the stream cannot reorder: decided from each IDR's SPS.
    flush_each: bool,
}

impl std::fmt::Debug for OpenH264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenH264Decoder")
            .field("pool", &self.pool.len())
            .field("free", &self.free.len())
            .field("max_width", &self.max_width)
            .field("max_height", &self.max_height)
            .field("stats", &self.stats)
            .finish()
    }
}

impl OpenH264Decoder {
    /// Creates the decoder and allocates `pool_size` pictures of `max_width × max_height`.
    /// H.265 streams are refused (`DecodeError::UnsupportedCodec`).
    pub fn new(
        info: &StreamInfo,
        pool_size: usize,
        max_width: u32,
        max_height: u32,
    ) -> Result<Self, DecodeError> {
        if info.codec != Codec::H264 {
            return Err(DecodeError::UnsupportedCodec {
                codec: info.codec.name(),
                backend: BACKEND,
                hint: "; H.265 needs a hardware decoder: NVDEC (`nvdec` feature, NVIDIA dGPU) \
                       or the Jetson multimedia decoder (`jetson` feature)",
            });
        }
        if info.width > max_width || info.height > max_height {
            return Err(DecodeError::TooLarge {
                width: info.width,
                height: info.height,
                max_width,
                max_height,
            });
        }
        if pool_size == 0 || pool_size > u32::MAX as usize {
            return Err(DecodeError::Backend {
                backend: BACKEND,
                msg: format!("picture pool size must be at least 1 (got {pool_size})"),
            });
        }
        let dec = Oh264::with_api_config(
            OpenH264API::from_source(),
            DecoderConfig::new().flush_after_decode(Flush::NoFlush),
        )
        .map_err(|e| DecodeError::Backend {
            backend: BACKEND,
            msg: format!("cannot create the decoder: {e}"),
        })?;
        let pool = (0..pool_size)
            .map(|_| Some(HostNv12::with_capacity(max_width, max_height)))
            .collect();
        let free = (0..pool_size as u32).rev().collect();
        Ok(OpenH264Decoder {
            dec,
            pool,
            free,
            colour: info.colour,
            max_width,
            max_height,
            stats: DecodeStats::default(),
            pending: [0; MAX_PENDING],
            n_pending: 0,
            flush_each: true,
        })
    }

    fn push_pts(&mut self, pts: i64) {
        if self.n_pending == MAX_PENDING {
            // Pictures that never came out (lost in corrupt data): forget the oldest.
            self.pop_pts();
        }
        self.pending[self.n_pending] = pts;
        self.n_pending += 1;
    }

    fn pop_pts(&mut self) -> Option<i64> {
        let (i, &v) = self.pending[..self.n_pending]
            .iter()
            .enumerate()
            .min_by_key(|(_, v)| **v)?;
        self.n_pending -= 1;
        self.pending[i] = self.pending[self.n_pending];
        Some(v)
    }

    /// Whether pictures may be output without waiting for reordering, from an SPS: Baseline
    /// and Constrained Baseline (profile_idc 66) have no B slices; otherwise the VUI's
    /// `max_num_reorder_frames` must say 0. Streams that do not say get OpenH264's
    /// reordering, at one picture of latency (without it B-frame streams fail to decode).
    fn update_flush_mode(&mut self, au: &AccessUnit) {
        if let Some(info) = NalUnits::new(&au.data)
            .find(|n| n.first().is_some_and(|b| b & 0x1f == 7))
            .and_then(|sps| parse_h264_sps(sps).ok())
        {
            self.flush_each = info.profile_idc == 66 || info.max_num_reorder_frames == Some(0);
        }
    }

    /// Pictures currently in the pool (not downstream).
    pub fn free_pictures(&self) -> usize {
        self.free.len()
    }
}

/// Copies an I420 picture into `dst` as NV12 (luma rows, then interleaved Cb/Cr rows).
fn i420_to_nv12(src: &impl YUVSource, dst: &mut HostNv12) {
    let (w, h) = src.dimensions();
    let (sy, su, sv) = src.strides();
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let pitch = dst.pitch;
    let (y, uv) = dst.planes_mut();
    let (yin, uin, vin) = (src.y(), src.u(), src.v());
    for r in 0..h {
        y[r * pitch..r * pitch + w].copy_from_slice(&yin[r * sy..r * sy + w]);
    }
    for r in 0..ch {
        let out = &mut uv[r * pitch..r * pitch + 2 * cw];
        let u = &uin[r * su..r * su + cw];
        let v = &vin[r * sv..r * sv + cw];
        for ((pair, &cb), &cr) in out.chunks_exact_mut(2).zip(u).zip(v) {
            pair[0] = cb;
            pair[1] = cr;
        }
    }
}

impl Decoder for OpenH264Decoder {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn decode(
        &mut self,
        au: &AccessUnit,
        sink: &mut dyn FnMut(Decoded),
    ) -> Result<(), DecodeError> {
        self.stats.access_units += 1;
        if au.keyframe {
            self.update_flush_mode(au);
        }
        self.push_pts(au.pts_us);
        let flush = if self.flush_each {
            Flush::Flush
        } else {
            Flush::NoFlush
        };
        let opts = DecodeOptions::new().flush_after_decode(flush);
        let yuv = match self.dec.decode_with_options(&au.data, opts) {
            Ok(Some(yuv)) => yuv,
            Ok(None) => return Ok(()),
            Err(e) => {
                // This access unit gives no picture.
                if let Some(i) = self.pending[..self.n_pending]
                    .iter()
                    .position(|&p| p == au.pts_us)
                {
                    self.n_pending -= 1;
                    self.pending[i] = self.pending[self.n_pending];
                }
                self.stats.corrupt += 1;
                return Err(DecodeError::Corrupt {
                    index: au.index,
                    msg: format!("openh264: {e}"),
                });
            }
        };
        let (w, h) = yuv.dimensions();
        let (w32, h32) = (w as u32, h as u32);
        if w32 > self.max_width || h32 > self.max_height {
            return Err(DecodeError::TooLarge {
                width: w32,
                height: h32,
                max_width: self.max_width,
                max_height: self.max_height,
            });
        }
        // Pending PTS values are kept outside `self.dec`, which `yuv` borrows.
        let pts_us = {
            let pending = &mut self.pending[..self.n_pending];
            match pending.iter().enumerate().min_by_key(|(_, v)| **v) {
                Some((i, &v)) => {
                    let last = pending.len() - 1;
                    pending.swap(i, last);
                    self.n_pending -= 1;
                    v
                }
                None => au.pts_us,
            }
        };
        let Some(token) = self.free.pop() else {
            self.stats.dropped_pool_empty += 1;
            return Ok(());
        };
        let Some(mut pic) = self.pool[token as usize].take() else {
            // A token in `free` always has its picture in the pool (recycle puts both back).
            return Err(DecodeError::Backend {
                backend: BACKEND,
                msg: format!("pool slot {token} is free but empty"),
            });
        };
        if !pic.set_size(w32, h32) {
            self.pool[token as usize] = Some(pic);
            self.free.push(token);
            return Err(DecodeError::TooLarge {
                width: w32,
                height: h32,
                max_width: self.max_width,
                max_height: self.max_height,
            });
        }
        i420_to_nv12(&yuv, &mut pic);
        self.stats.pictures += 1;
        sink(Decoded {
            picture: Picture::Host(pic),
            pts_us,
            colour: self.colour,
            token,
        });
        Ok(())
    }

    /// Drains pictures OpenH264 still holds. (The crate returns them in a `Vec`: this
    /// allocates, once, at end of stream; it is not on the per-frame path.)
    fn flush(&mut self, sink: &mut dyn FnMut(Decoded)) -> Result<(), DecodeError> {
        let mut pts = [0i64; MAX_PENDING];
        let mut n = 0;
        while let Some(p) = self.pop_pts() {
            pts[n] = p;
            n += 1;
        }
        let mut next_pts = pts[..n].iter().copied();
        let frames = self.dec.flush_remaining().map_err(|e| {
            self.stats.corrupt += 1;
            DecodeError::Corrupt {
                index: self.stats.access_units,
                msg: format!("openh264 flush: {e}"),
            }
        })?;
        for yuv in frames {
            let (w, h) = yuv.dimensions();
            let Some(token) = self.free.pop() else {
                self.stats.dropped_pool_empty += 1;
                continue;
            };
            let Some(mut pic) = self.pool[token as usize].take() else {
                continue;
            };
            if !pic.set_size(w as u32, h as u32) {
                self.pool[token as usize] = Some(pic);
                self.free.push(token);
                continue;
            }
            i420_to_nv12(&yuv, &mut pic);
            self.stats.pictures += 1;
            sink(Decoded {
                picture: Picture::Host(pic),
                pts_us: next_pts.next().unwrap_or(0),
                colour: self.colour,
                token,
            });
        }
        Ok(())
    }

    fn recycle(&mut self, picture: Picture, token: u32) {
        let Picture::Host(pic) = picture else {
            log::error!("openh264: recycle of a non-host picture ignored");
            return;
        };
        match self.pool.get_mut(token as usize) {
            Some(slot @ None) => {
                *slot = Some(pic);
                self.free.push(token);
            }
            _ => log::error!("openh264: recycle with an unknown or free token {token} ignored"),
        }
    }

    fn stats(&self) -> DecodeStats {
        self.stats
    }
}
