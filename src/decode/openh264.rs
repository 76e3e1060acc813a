//! Software H.264 decoder: Cisco's OpenH264 through the `openh264` crate, which compiles the
//! bundled upstream C++ source into the binary (BSD-2-Clause, see the README's licence note).
//! OpenH264 outputs host I420; each picture is converted to NV12 into a picture of a fixed
//! pool allocated at construction. When every pool picture is downstream, the new picture is
//! dropped and counted (`dropped_pool_empty`); nothing is allocated per frame.
//!
//! OpenH264 officially targets the Constrained Baseline profile; the Main-profile clips of
//! `../shared/media` (CABAC, no B-frames) decode with the frame counts of their README
//! (`tests/decode_openh264.rs`). Streams with B-frames are outside what the pipeline feeds it.
//! H.265 is refused with a hint naming the hardware decoders.

use openh264::decoder::{Decoder as Oh264, DecoderConfig};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use crate::decode::{DecodeStats, Decoded, Decoder};
use crate::error::DecodeError;
use crate::frame::{AccessUnit, Codec, ColourDesc, HostNv12, Picture, StreamInfo};

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
    /// PTS of the last access unit, given to pictures drained by `flush` (OpenH264 outputs
    /// in decoding order without delay for streams without B-frames, so these are the last).
    last_pts_us: i64,
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
        let dec = Oh264::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
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
            last_pts_us: 0,
        })
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
        self.last_pts_us = au.pts_us;
        let yuv = match self.dec.decode(&au.data) {
            Ok(Some(yuv)) => yuv,
            Ok(None) => return Ok(()),
            Err(e) => {
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
            pts_us: au.pts_us,
            colour: self.colour,
            token,
        });
        Ok(())
    }

    /// Drains pictures OpenH264 still holds. (The crate returns them in a `Vec`: this
    /// allocates, once, at end of stream; it is not on the per-frame path.)
    fn flush(&mut self, sink: &mut dyn FnMut(Decoded)) -> Result<(), DecodeError> {
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
                pts_us: self.last_pts_us,
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
