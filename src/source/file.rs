//! File sources: MP4 (ISO-BMFF, H.264 `avc1`/`avc3`, H.265 `hvc1`/`hev1`) and raw Annex-B
//! elementary streams (`.h264`/`.264`/`.avc`, `.h265`/`.265`/`.hevc`).
//!
//! The whole file is read into memory at open (test clips and recorded footage for replay are
//! a few MB; camera streams come from other sources). Everything else is allocated at open as
//! well: the sample table, the access-unit assembler's buffers. `next` copies one access unit
//! into the caller's buffer and allocates nothing.
//!
//! Timestamps (microseconds): MP4 from the sample table (`stts` + `ctts`, `mdhd` timescale;
//! edit lists are not read, the earliest composition time becomes 0); Annex-B from the frame index and the SPS VUI frame rate (25 fps
//! with a warning when the VUI has none; streams with B-frames would need POC ordering, which
//! is not done: the pipeline's streams have none). With `looping`, the source starts again at
//! the end, reports [`SourceEvent::Looped`], and keeps timestamps and indices increasing.

use std::path::{Path, PathBuf};

use crate::error::SourceError;
use crate::frame::{AccessUnit, Codec, StreamInfo};
use crate::source::annexb::NalUnits;
use crate::source::au::{nal_type, AuAssembler, AuError, AuMeta, NalList, ParamSets};
use crate::source::mp4::{self, Mp4Error, Mp4Track};
use crate::source::sps::parse_sps;
use crate::source::{Source, SourceEvent};

/// Frame rate assumed for Annex-B streams whose SPS has no VUI timing information.
pub const DEFAULT_FPS: f64 = 25.0;

/// Opens an MP4 or Annex-B file. `codec_hint` decides the codec of an Annex-B file whose
/// extension does not (otherwise its NAL headers are sniffed); MP4 files carry their codec.
/// `max_au_bytes` bounds one access unit (the assembler's buffers are this size).
pub fn open_file(
    path: &Path,
    codec_hint: Option<Codec>,
    looping: bool,
    max_au_bytes: usize,
) -> Result<Box<dyn Source>, SourceError> {
    Ok(Box::new(FileSource::open(
        path,
        codec_hint,
        looping,
        max_au_bytes,
    )?))
}

enum Inner {
    AnnexB {
        pos: usize,
        asm: AuAssembler,
        frame_us: f64,
        /// Access units delivered in the current pass over the file.
        in_pass: u64,
    },
    Mp4 {
        track: Mp4Track,
        next: usize,
        list: NalList,
        params: ParamSets,
        /// Length of one pass in microseconds (first composition time to end of the last
        /// sample).
        pass_us: i64,
        /// Smallest composition time (ticks): it becomes PTS 0. With B-frames and no edit
        /// list it is the `ctts` shift of the first presented picture.
        base: i64,
    },
}

/// A file source; see the module documentation. Build it with [`open_file`] or
/// [`FileSource::open`].
pub struct FileSource {
    path: PathBuf,
    data: Vec<u8>,
    info: StreamInfo,
    looping: bool,
    inner: Inner,
    index: u64,
    pts_offset_us: i64,
    /// Set when the next delivered access unit is the first after a wrap.
    looped: bool,
}

fn format_err(path: &Path, msg: impl Into<String>) -> SourceError {
    SourceError::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn codec_from_extension(path: &Path) -> Option<Codec> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "h264" | "264" | "avc" | "jsv" => Some(Codec::H264),
        "h265" | "265" | "hevc" => Some(Codec::H265),
        _ => None,
    }
}

/// Guesses the codec of an Annex-B stream from its first NAL unit headers: each header is
/// scored as plausible H.264 (forbidden bit 0, a parameter set / SEI / AUD / slice type with a
/// consistent `nal_ref_idc`) and plausible H.265 (forbidden bit 0, `nuh_layer_id` 0,
/// `nuh_temporal_id_plus1` 1, a known type).
fn sniff_codec(data: &[u8]) -> Option<Codec> {
    let (mut h264, mut h265) = (0, 0);
    for nal in NalUnits::new(data).take(8) {
        if nal.len() < 2 || nal[0] & 0x80 != 0 {
            continue;
        }
        let t4 = nal[0] & 0x1f;
        let ref_idc = (nal[0] >> 5) & 3;
        if matches!((t4, ref_idc), (7 | 8 | 5, 1..=3) | (6 | 9, 0) | (1, _)) {
            h264 += 1;
        }
        let t5 = (nal[0] >> 1) & 0x3f;
        if nal[0] & 1 == 0 && nal[1] == 1 && matches!(t5, 0..=9 | 16..=21 | 32..=40) {
            h265 += 1;
        }
    }
    match h264.cmp(&h265) {
        std::cmp::Ordering::Greater => Some(Codec::H264),
        std::cmp::Ordering::Less => Some(Codec::H265),
        std::cmp::Ordering::Equal => None,
    }
}

fn sps_type(codec: Codec) -> u8 {
    match codec {
        Codec::H264 => 7,
        Codec::H265 => 33,
    }
}

fn stream_info(path: &Path, codec: Codec, sps: Option<&[u8]>) -> Result<StreamInfo, SourceError> {
    let sps = sps.ok_or_else(|| {
        format_err(
            path,
            format!("no {} sequence parameter set found", codec.name()),
        )
    })?;
    let info = parse_sps(codec, sps)
        .map_err(|e| format_err(path, format!("{} SPS: {e}", codec.name())))?;
    Ok(info.stream_info())
}

impl FileSource {
    /// See [`open_file`].
    pub fn open(
        path: &Path,
        codec_hint: Option<Codec>,
        looping: bool,
        max_au_bytes: usize,
    ) -> Result<Self, SourceError> {
        let data = std::fs::read(path).map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if data.is_empty() {
            return Err(format_err(path, "file is empty"));
        }
        let (inner, info) = if mp4::looks_like_mp4(&data) {
            Self::open_mp4(path, &data, max_au_bytes)?
        } else {
            Self::open_annexb(path, &data, codec_hint, max_au_bytes)?
        };
        Ok(FileSource {
            path: path.to_path_buf(),
            data,
            info,
            looping,
            inner,
            index: 0,
            pts_offset_us: 0,
            looped: false,
        })
    }

    fn open_mp4(
        path: &Path,
        data: &[u8],
        max_au_bytes: usize,
    ) -> Result<(Inner, StreamInfo), SourceError> {
        let track = mp4::read_track(data).map_err(|e| match e {
            Mp4Error::Format(m) => format_err(path, m),
            Mp4Error::UnsupportedCodec(c) => SourceError::UnsupportedCodec {
                path: path.to_path_buf(),
                what: format!("video sample entry '{c}'"),
            },
        })?;
        if track.samples.is_empty() {
            return Err(format_err(path, "the video track has no samples"));
        }
        let codec = track.codec;
        let mut params = ParamSets::new(codec);
        for ps in &track.param_sets {
            params.update(ps);
        }
        let sps = track
            .param_sets
            .iter()
            .find(|ps| nal_type(codec, ps) == sps_type(codec))
            .map(|v| &v[..]);
        let mut info = stream_info(path, codec, sps)?;
        let ts = track.timescale as f64;
        let end = track
            .samples
            .iter()
            .map(|s| s.pts.saturating_add(s.duration as i64))
            .max()
            .unwrap_or(0);
        let first = track.samples.iter().map(|s| s.pts).min().unwrap_or(0);
        if end > first {
            info.fps = Some(track.samples.len() as f64 * ts / (end - first) as f64);
        }
        let pass_us = ((end - first) as f64 * 1e6 / ts).round() as i64;
        Ok((
            Inner::Mp4 {
                track,
                next: 0,
                list: NalList::with_capacity(max_au_bytes),
                params,
                pass_us,
                base: first,
            },
            info,
        ))
    }

    fn open_annexb(
        path: &Path,
        data: &[u8],
        codec_hint: Option<Codec>,
        max_au_bytes: usize,
    ) -> Result<(Inner, StreamInfo), SourceError> {
        let nals = NalUnits::new(data);
        match nals.leading_garbage() {
            None => {
                return Err(format_err(
                    path,
                    "neither MP4 ('ftyp' box) nor Annex-B (no 00 00 01 start code)",
                ))
            }
            Some(i) if data[..i].iter().any(|&b| b != 0) => {
                return Err(format_err(
                    path,
                    format!(
                    "not an Annex-B stream: {i} bytes of other data before the first start code"
                ),
                ))
            }
            Some(_) => {}
        }
        let codec = codec_hint
            .or_else(|| codec_from_extension(path))
            .or_else(|| sniff_codec(data))
            .ok_or_else(|| {
                format_err(
                    path,
                    "cannot tell H.264 from H.265: name the file .h264/.h265 or set the codec",
                )
            })?;
        let sps = NalUnits::new(data).find(|n| nal_type(codec, n) == sps_type(codec));
        let info = stream_info(path, codec, sps)?;
        let fps = match info.fps {
            Some(f) => f,
            None => {
                log::warn!(
                    "{}: no frame rate in the SPS VUI; assuming {DEFAULT_FPS} fps for timestamps",
                    path.display()
                );
                DEFAULT_FPS
            }
        };
        Ok((
            Inner::AnnexB {
                pos: 0,
                asm: AuAssembler::new(codec, max_au_bytes),
                frame_us: 1e6 / fps,
                in_pass: 0,
            },
            info,
        ))
    }

    /// The file this source reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn au_error(&self, e: AuError) -> SourceError {
        match e {
            AuError::TooLarge { size, capacity } => SourceError::TooLarge {
                index: self.index,
                size,
                capacity,
            },
            other => format_err(&self.path, format!("access unit {}: {other}", self.index)),
        }
    }

    /// Fills `au` from a finished assembly; advances the index.
    fn deliver(
        &mut self,
        r: Result<AuMeta, AuError>,
        pts_us: i64,
        au: &mut AccessUnit,
    ) -> Result<SourceEvent, SourceError> {
        let index = self.index;
        self.index += 1;
        match r {
            Ok(meta) => {
                au.keyframe = meta.keyframe;
                au.pts_us = pts_us;
                au.index = index;
                if std::mem::take(&mut self.looped) {
                    Ok(SourceEvent::Looped)
                } else {
                    Ok(SourceEvent::AccessUnit)
                }
            }
            Err(e) => {
                self.index = index;
                let err = self.au_error(e);
                self.index = index + 1;
                Err(err)
            }
        }
    }

    fn next_annexb(&mut self, au: &mut AccessUnit) -> Result<SourceEvent, SourceError> {
        loop {
            let Inner::AnnexB {
                pos,
                asm,
                frame_us,
                in_pass,
            } = &mut self.inner
            else {
                unreachable!("next_annexb on an MP4 source");
            };
            let frame_us = *frame_us;
            if let Some(r) = asm.pull(&mut au.data) {
                *in_pass += 1;
                let pts = (self.index as f64 * frame_us).round() as i64;
                return self.deliver(r, pts, au);
            }
            let mut it = NalUnits::resume(&self.data, *pos);
            let mut ready = false;
            for nal in it.by_ref() {
                match asm.push(nal) {
                    Ok(true) => {
                        ready = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        return Err(format_err(&self.path, format!("assembler: {e}")));
                    }
                }
            }
            *pos = it.position();
            if ready {
                continue;
            }
            if asm.finish() {
                continue;
            }
            // End of file.
            if self.looping && *in_pass > 0 {
                *pos = 0;
                *in_pass = 0;
                asm.reset();
                self.looped = true;
                continue;
            }
            return Ok(SourceEvent::End);
        }
    }

    fn next_mp4(&mut self, au: &mut AccessUnit) -> Result<SourceEvent, SourceError> {
        let Inner::Mp4 {
            track,
            next,
            list,
            params,
            pass_us,
            base,
        } = &mut self.inner
        else {
            unreachable!("next_mp4 on an Annex-B source");
        };
        if *next >= track.samples.len() {
            if !self.looping {
                return Ok(SourceEvent::End);
            }
            *next = 0;
            self.pts_offset_us = self.pts_offset_us.saturating_add(*pass_us);
            self.looped = true;
        }
        let i = *next;
        *next += 1;
        let sample = track.samples[i];
        let ticks = sample.pts.saturating_sub(*base);
        let pts_us =
            self.pts_offset_us + (ticks as f64 * 1e6 / track.timescale as f64).round() as i64;
        let codec = track.codec;
        let data = match track.sample_data(&self.data, i) {
            Ok(d) => d,
            Err(Mp4Error::Format(m)) | Err(Mp4Error::UnsupportedCodec(m)) => {
                // A truncated file: nothing after this sample can be read either.
                *next = track.samples.len();
                self.looping = false;
                return Err(format_err(&self.path, m));
            }
        };
        list.clear();
        // Like FFmpeg's hevc_mp4toannexb: a keyframe without in-band parameter sets gets the
        // configuration record's prefix SEI too (the parameter sets follow in `write`).
        if codec == Codec::H265 && sample.sync && !has_param_sets(track, data) {
            for sei in track.param_sets.iter().filter(|n| nal_type(codec, n) == 39) {
                list.push(codec, sei);
            }
        }
        let split = track.sample_nals(data, |nal| list.push(codec, nal));
        if let Err(Mp4Error::Format(m)) | Err(Mp4Error::UnsupportedCodec(m)) = split {
            self.index += 1;
            return Err(format_err(&self.path, format!("sample {i}: {m}")));
        }
        let r = list.write(params, &mut au.data);
        self.deliver(r, pts_us, au)
    }
}

/// Whether a length-prefixed sample holds a VPS, SPS or PPS.
fn has_param_sets(track: &Mp4Track, sample: &[u8]) -> bool {
    let mut found = false;
    let _ = track.sample_nals(sample, |nal| {
        found |= (32..=34).contains(&nal_type(track.codec, nal));
    });
    found
}

impl Source for FileSource {
    fn info(&self) -> &StreamInfo {
        &self.info
    }

    fn next(&mut self, au: &mut AccessUnit) -> Result<SourceEvent, SourceError> {
        match self.inner {
            Inner::AnnexB { .. } => self.next_annexb(au),
            Inner::Mp4 { .. } => self.next_mp4(au),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_codecs_from_nal_headers() {
        let h264 = [
            0u8, 0, 0, 1, 0x67, 0x4d, 0, 0, 0, 1, 0x68, 0xee, 0, 0, 1, 0x65, 0x88,
        ];
        let h265 = [
            0u8, 0, 0, 1, 0x40, 0x01, 0x0c, 0, 0, 0, 1, 0x42, 0x01, 0x01, 0, 0, 1, 0x44, 0x01,
        ];
        assert_eq!(sniff_codec(&h264), Some(Codec::H264));
        assert_eq!(sniff_codec(&h265), Some(Codec::H265));
        assert_eq!(sniff_codec(&[1, 2, 3]), None);
    }
}
