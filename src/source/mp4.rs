//! A minimal ISO base media file format reader (ISO/IEC 14496-12) for the first video track,
//! with the AVC and HEVC sample entries of ISO/IEC 14496-15.
//!
//! Boxes read: `ftyp`, `moov/trak/mdia/{mdhd,hdlr}`, `minf/stbl/{stsd,stts,ctts,stss,stsz,
//! stsc,stco,co64}`; 64-bit box sizes (`size == 1`) and "to end of file" (`size == 0`) are
//! handled. The sample table is built once at open. Edit lists (`elst`) and fragmented files
//! (`moof`) are not read: timestamps are the composition times of the sample table.
//!
//! Samples are length-prefixed NAL units (`lengthSizeMinusOne` + 1 bytes, 14496-15 5.3.2 /
//! 8.3.2); [`Mp4Track::sample_nals`] splits them, and the file source turns them into Annex-B
//! with the configuration record's parameter sets in front of every keyframe.

use crate::frame::Codec;

/// One sample (one access unit) of the video track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub offset: u64,
    pub size: u32,
    /// Composition time in track timescale units (decode time + `ctts` offset).
    pub pts: i64,
    /// Duration in track timescale units (`stts`).
    pub duration: u32,
    /// Listed in `stss` (or every sample when there is no `stss`).
    pub sync: bool,
}

/// The video track of an MP4 file.
#[derive(Debug, Clone)]
pub struct Mp4Track {
    pub codec: Codec,
    /// `mdhd` timescale (ticks per second).
    pub timescale: u32,
    /// Sample-entry width and height (before SPS cropping; informational).
    pub width: u16,
    pub height: u16,
    /// Bytes of each NAL unit length prefix (1, 2 or 4).
    pub length_size: u8,
    /// Parameter sets (and, for HEVC, any SEI arrays) from `avcC` / `hvcC`, in record order.
    pub param_sets: Vec<Vec<u8>>,
    pub samples: Vec<Sample>,
}

/// Why a file could not be read as MP4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mp4Error {
    /// Malformed or truncated structure.
    Format(String),
    /// The video track's sample entry is not H.264/H.265; holds the fourcc.
    UnsupportedCodec(String),
}

fn fmt_err<T>(msg: impl Into<String>) -> Result<T, Mp4Error> {
    Err(Mp4Error::Format(msg.into()))
}

fn fourcc(t: [u8; 4]) -> String {
    t.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Big-endian cursor over a byte slice; every read is bounds-checked.
#[derive(Clone, Copy)]
struct Rd<'a> {
    d: &'a [u8],
    p: usize,
}

impl<'a> Rd<'a> {
    fn new(d: &'a [u8]) -> Self {
        Rd { d, p: 0 }
    }
    fn left(&self) -> usize {
        self.d.len() - self.p
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Mp4Error> {
        if n > self.left() {
            return fmt_err("box is truncated");
        }
        let s = &self.d[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }
    fn skip(&mut self, n: usize) -> Result<(), Mp4Error> {
        self.bytes(n).map(|_| ())
    }
    fn u8(&mut self) -> Result<u8, Mp4Error> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Mp4Error> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Mp4Error> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Mp4Error> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn fourcc(&mut self) -> Result<[u8; 4], Mp4Error> {
        let b = self.bytes(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }
}

/// Iterator over the boxes in `data`: (type, body).
struct Boxes<'a> {
    rd: Rd<'a>,
}

impl<'a> Boxes<'a> {
    fn new(d: &'a [u8]) -> Self {
        Boxes { rd: Rd::new(d) }
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<([u8; 4], &'a [u8]), Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rd.left() == 0 {
            return None;
        }
        let r = (|| {
            let start = self.rd.p;
            let size = self.rd.u32()? as u64;
            let t = self.rd.fourcc()?;
            let size = match size {
                1 => self.rd.u64()?,
                0 => (self.rd.d.len() - start) as u64,
                s => s,
            };
            let header = (self.rd.p - start) as u64;
            if size < header {
                return fmt_err(format!("box '{}' has an invalid size {size}", fourcc(t)));
            }
            let body_len = size - header;
            if body_len > self.rd.left() as u64 {
                return fmt_err(format!(
                    "box '{}' needs {body_len} bytes but only {} remain (truncated file?)",
                    fourcc(t),
                    self.rd.left()
                ));
            }
            let body = self.rd.bytes(body_len as usize)?;
            Ok((t, body))
        })();
        if r.is_err() {
            self.rd.p = self.rd.d.len();
        }
        Some(r)
    }
}

fn find<'a>(data: &'a [u8], t: &[u8; 4]) -> Result<Option<&'a [u8]>, Mp4Error> {
    for b in Boxes::new(data) {
        let (bt, body) = b?;
        if &bt == t {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

fn need<'a>(data: &'a [u8], t: &[u8; 4], parent: &str) -> Result<&'a [u8], Mp4Error> {
    find(data, t)?
        .ok_or_else(|| Mp4Error::Format(format!("'{parent}' box has no '{}' box", fourcc(*t))))
}

/// True if `data` starts like an ISO-BMFF file (`ftyp` as the first box).
pub fn looks_like_mp4(data: &[u8]) -> bool {
    data.len() >= 8 && &data[4..8] == b"ftyp"
}

/// Sample tables gathered from `stbl`.
struct Stbl<'a> {
    stsd: &'a [u8],
    stts: &'a [u8],
    ctts: Option<&'a [u8]>,
    stss: Option<&'a [u8]>,
    stsz: &'a [u8],
    stsc: &'a [u8],
    stco: Option<&'a [u8]>,
    co64: Option<&'a [u8]>,
}

/// Reads the first video track of an MP4 file held in memory. `file_len` is the real size of
/// the file; samples past it are reported by [`Mp4Track::check_sample`].
pub fn read_track(data: &[u8]) -> Result<Mp4Track, Mp4Error> {
    if !looks_like_mp4(data) {
        return fmt_err("not an MP4 file (no 'ftyp' box at the start)");
    }
    let mut moov = None;
    for b in Boxes::new(data) {
        match b {
            Ok((t, body)) if &t == b"moov" => {
                moov = Some(body);
                break;
            }
            Ok(_) => {}
            // A truncated mdat after moov is read sample by sample later; a truncated box
            // before moov means there is no moov to read.
            Err(e) => {
                if moov.is_none() {
                    return Err(match e {
                        Mp4Error::Format(m) => {
                            Mp4Error::Format(format!("{m}; no 'moov' box found"))
                        }
                        other => other,
                    });
                }
            }
        }
    }
    let moov = moov
        .ok_or_else(|| Mp4Error::Format("no 'moov' box (fragmented or truncated MP4?)".into()))?;
    let mut unsupported = None;
    for b in Boxes::new(moov) {
        let (t, trak) = b?;
        if &t != b"trak" {
            continue;
        }
        let mdia = need(trak, b"mdia", "trak")?;
        let hdlr = need(mdia, b"hdlr", "mdia")?;
        let mut h = Rd::new(hdlr);
        h.skip(8)?; // version/flags, pre_defined
        if &h.fourcc()? != b"vide" {
            continue;
        }
        match read_video_track(mdia) {
            Ok(track) => return Ok(track),
            Err(Mp4Error::UnsupportedCodec(c)) => unsupported = Some(c),
            Err(e) => return Err(e),
        }
    }
    match unsupported {
        Some(c) => Err(Mp4Error::UnsupportedCodec(c)),
        None => fmt_err("no video track"),
    }
}

fn read_video_track(mdia: &[u8]) -> Result<Mp4Track, Mp4Error> {
    let mdhd = need(mdia, b"mdhd", "mdia")?;
    let mut r = Rd::new(mdhd);
    let version = r.u8()?;
    r.skip(3)?;
    let timescale = if version == 1 {
        r.skip(16)?;
        r.u32()?
    } else {
        r.skip(8)?;
        r.u32()?
    };
    if timescale == 0 {
        return fmt_err("'mdhd' timescale is 0");
    }
    let minf = need(mdia, b"minf", "mdia")?;
    let stbl = need(minf, b"stbl", "minf")?;
    let s = Stbl {
        stsd: need(stbl, b"stsd", "stbl")?,
        stts: need(stbl, b"stts", "stbl")?,
        ctts: find(stbl, b"ctts")?,
        stss: find(stbl, b"stss")?,
        stsz: need(stbl, b"stsz", "stbl")?,
        stsc: need(stbl, b"stsc", "stbl")?,
        stco: find(stbl, b"stco")?,
        co64: find(stbl, b"co64")?,
    };
    let (codec, width, height, length_size, param_sets) = read_stsd(s.stsd)?;
    let samples = build_samples(&s)?;
    Ok(Mp4Track {
        codec,
        timescale,
        width,
        height,
        length_size,
        param_sets,
        samples,
    })
}

type SampleEntry = (Codec, u16, u16, u8, Vec<Vec<u8>>);

/// `stsd` with one visual sample entry (14496-12 12.1.3): avc1/avc3 + avcC, hvc1/hev1 + hvcC.
fn read_stsd(stsd: &[u8]) -> Result<SampleEntry, Mp4Error> {
    let mut r = Rd::new(stsd);
    r.skip(4)?; // version/flags
    let count = r.u32()?;
    if count == 0 {
        return fmt_err("'stsd' has no sample entry");
    }
    let rest = &stsd[8..];
    let (t, entry) = Boxes::new(rest)
        .next()
        .ok_or_else(|| Mp4Error::Format("'stsd' has no sample entry".into()))??;
    let codec = match &t {
        b"avc1" | b"avc3" => Codec::H264,
        b"hvc1" | b"hev1" => Codec::H265,
        _ => return Err(Mp4Error::UnsupportedCodec(fourcc(t))),
    };
    // VisualSampleEntry: 6 reserved + data_reference_index(2) + 16 pre-defined/reserved,
    // width(2), height(2), resolutions(8), reserved(4), frame_count(2), compressorname(32),
    // depth(2), pre_defined(2) = 78 bytes, then child boxes.
    let mut e = Rd::new(entry);
    e.skip(24)?;
    let width = e.u16()?;
    let height = e.u16()?;
    e.skip(50)?;
    let children = &entry[78..];
    let config_type = match codec {
        Codec::H264 => b"avcC",
        Codec::H265 => b"hvcC",
    };
    let config = need(children, config_type, &fourcc(t))?;
    let (length_size, param_sets) = match codec {
        Codec::H264 => read_avcc(config)?,
        Codec::H265 => read_hvcc(config)?,
    };
    Ok((codec, width, height, length_size, param_sets))
}

/// AVCDecoderConfigurationRecord (14496-15 5.3.3.1).
fn read_avcc(c: &[u8]) -> Result<(u8, Vec<Vec<u8>>), Mp4Error> {
    let mut r = Rd::new(c);
    r.skip(4)?; // configurationVersion, profile, compatibility, level
    let length_size = (r.u8()? & 3) + 1;
    let mut sets = Vec::new();
    let nsps = r.u8()? & 0x1f;
    for _ in 0..nsps {
        let n = r.u16()? as usize;
        sets.push(r.bytes(n)?.to_vec());
    }
    let npps = r.u8()?;
    for _ in 0..npps {
        let n = r.u16()? as usize;
        sets.push(r.bytes(n)?.to_vec());
    }
    Ok((length_size, sets))
}

/// HEVCDecoderConfigurationRecord (14496-15 8.3.3.1).
fn read_hvcc(c: &[u8]) -> Result<(u8, Vec<Vec<u8>>), Mp4Error> {
    let mut r = Rd::new(c);
    r.skip(21)?;
    let length_size = (r.u8()? & 3) + 1;
    let arrays = r.u8()?;
    let mut sets = Vec::new();
    for _ in 0..arrays {
        r.u8()?; // array_completeness, reserved, NAL_unit_type
        let n = r.u16()?;
        for _ in 0..n {
            let len = r.u16()? as usize;
            sets.push(r.bytes(len)?.to_vec());
        }
    }
    Ok((length_size, sets))
}

fn full_box(b: &[u8]) -> Result<(u8, Rd<'_>), Mp4Error> {
    let mut r = Rd::new(b);
    let v = r.u8()?;
    r.skip(3)?;
    Ok((v, r))
}

/// Upper bound on samples, to refuse absurd tables before allocating for them.
const MAX_SAMPLES: u64 = 50_000_000;

fn build_samples(s: &Stbl) -> Result<Vec<Sample>, Mp4Error> {
    // stsz (14496-12 8.7.3.2)
    let (_, mut r) = full_box(s.stsz)?;
    let fixed = r.u32()?;
    let count = r.u32()? as u64;
    if count > MAX_SAMPLES || (fixed == 0 && count * 4 > r.left() as u64) {
        return fmt_err(format!("'stsz' lists {count} samples but is too short"));
    }
    let count = count as usize;
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let size = if fixed != 0 { fixed } else { r.u32()? };
        samples.push(Sample {
            offset: 0,
            size,
            pts: 0,
            duration: 0,
            sync: s.stss.is_none(),
        });
    }
    // stts (8.6.1.2): decode times.
    let (_, mut r) = full_box(s.stts)?;
    let n = r.u32()?;
    let mut i = 0usize;
    let mut dts: i64 = 0;
    for _ in 0..n {
        let c = r.u32()?;
        let delta = r.u32()?;
        for _ in 0..c {
            if i >= count {
                break;
            }
            samples[i].pts = dts;
            samples[i].duration = delta;
            dts = dts.saturating_add(delta as i64);
            i += 1;
        }
    }
    if i < count {
        return fmt_err(format!("'stts' covers {i} of {count} samples"));
    }
    // ctts (8.6.1.3): composition offsets (signed in version 1; treated as signed always).
    if let Some(ctts) = s.ctts {
        let (_, mut r) = full_box(ctts)?;
        let n = r.u32()?;
        let mut i = 0usize;
        for _ in 0..n {
            let c = r.u32()?;
            let off = r.u32()? as i32 as i64;
            for _ in 0..c {
                if i >= count {
                    break;
                }
                samples[i].pts = samples[i].pts.saturating_add(off);
                i += 1;
            }
        }
    }
    // stss (8.6.2): 1-based sync sample numbers.
    if let Some(stss) = s.stss {
        let (_, mut r) = full_box(stss)?;
        let n = r.u32()?;
        for _ in 0..n {
            let k = r.u32()? as usize;
            if k >= 1 && k <= count {
                samples[k - 1].sync = true;
            }
        }
    }
    // Chunk offsets (8.7.5).
    let mut chunks: Vec<u64> = Vec::new();
    if let Some(stco) = s.stco {
        let (_, mut r) = full_box(stco)?;
        let n = r.u32()? as usize;
        if n * 4 > r.left() {
            return fmt_err("'stco' is truncated");
        }
        for _ in 0..n {
            chunks.push(r.u32()? as u64);
        }
    } else if let Some(co64) = s.co64 {
        let (_, mut r) = full_box(co64)?;
        let n = r.u32()? as usize;
        if n.saturating_mul(8) > r.left() {
            return fmt_err("'co64' is truncated");
        }
        for _ in 0..n {
            chunks.push(r.u64()?);
        }
    } else {
        return fmt_err("'stbl' has neither 'stco' nor 'co64'");
    }
    // stsc (8.7.4): runs of chunks with the same number of samples.
    let (_, mut r) = full_box(s.stsc)?;
    let n = r.u32()? as usize;
    if n.saturating_mul(12) > r.left() {
        return fmt_err("'stsc' is truncated");
    }
    let mut runs = Vec::with_capacity(n);
    for _ in 0..n {
        let first = r.u32()?;
        let per = r.u32()?;
        r.skip(4)?; // sample_description_index
        runs.push((first, per));
    }
    let mut i = 0usize;
    for (k, &(first, per)) in runs.iter().enumerate() {
        if first == 0 {
            return fmt_err("'stsc' chunk numbers start at 1");
        }
        let last = runs
            .get(k + 1)
            .map_or(chunks.len() as u64, |&(f, _)| (f as u64).saturating_sub(1));
        let mut chunk = first as u64;
        while chunk <= last && i < count {
            let Some(&base) = chunks.get(chunk as usize - 1) else {
                return fmt_err("'stsc' names a chunk that 'stco' lacks");
            };
            let mut off = base;
            for _ in 0..per {
                if i >= count {
                    break;
                }
                samples[i].offset = off;
                off = off.saturating_add(samples[i].size as u64);
                i += 1;
            }
            chunk += 1;
        }
    }
    if i < count {
        return fmt_err(format!("chunk tables place {i} of {count} samples"));
    }
    Ok(samples)
}

impl Mp4Track {
    /// The bytes of sample `i`, or an error if they lie past the end of `data`.
    pub fn sample_data<'a>(&self, data: &'a [u8], i: usize) -> Result<&'a [u8], Mp4Error> {
        let s = self
            .samples
            .get(i)
            .ok_or_else(|| Mp4Error::Format(format!("no sample {i}")))?;
        let end = s.offset.saturating_add(s.size as u64);
        if end > data.len() as u64 {
            return fmt_err(format!(
                "sample {i} at bytes {}..{end} lies past the end of the {}-byte file (truncated?)",
                s.offset,
                data.len()
            ));
        }
        Ok(&data[s.offset as usize..end as usize])
    }

    /// Splits a length-prefixed sample into NAL units; `f` is called for each. A length that
    /// runs past the sample is a format error (the NAL units before it were already given).
    pub fn sample_nals<'a>(
        &self,
        sample: &'a [u8],
        mut f: impl FnMut(&'a [u8]),
    ) -> Result<(), Mp4Error> {
        let ls = self.length_size as usize;
        let mut p = 0usize;
        while p < sample.len() {
            if p + ls > sample.len() {
                return fmt_err("NAL length prefix is truncated");
            }
            let mut len = 0usize;
            for &b in &sample[p..p + ls] {
                len = (len << 8) | b as usize;
            }
            p += ls;
            if len > sample.len() - p {
                return fmt_err(format!(
                    "NAL unit of {len} bytes runs past its {}-byte sample",
                    sample.len()
                ));
            }
            if len > 0 {
                f(&sample[p..p + len]);
            }
            p += len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(t: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(t);
        v.extend_from_slice(body);
        v
    }

    /// A one-sample MP4 with the given sample entry type and child box.
    pub(crate) fn tiny_mp4(entry_type: &[u8; 4], config: &[u8]) -> Vec<u8> {
        let sample = [0u8, 0, 0, 3, 0x65, 0x88, 0x80];
        let ftyp = bx(b"ftyp", b"isom\0\0\0\x01isom");
        let mut entry = vec![0u8; 78];
        entry[24..26].copy_from_slice(&64u16.to_be_bytes());
        entry[26..28].copy_from_slice(&48u16.to_be_bytes());
        entry.extend_from_slice(config);
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend(bx(entry_type, &entry));
        let stts = [0u8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 2, 0];
        let stsz = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7];
        let stsc = [0u8, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        let build = |off: u32| {
            let mut stco = vec![0u8, 0, 0, 0, 0, 0, 0, 1];
            stco.extend_from_slice(&off.to_be_bytes());
            let stbl = [
                bx(b"stsd", &stsd),
                bx(b"stts", &stts),
                bx(b"stsz", &stsz),
                bx(b"stsc", &stsc),
                bx(b"stco", &stco),
            ]
            .concat();
            let mut mdhd = vec![0u8; 24];
            mdhd[12..16].copy_from_slice(&12800u32.to_be_bytes());
            let hdlr = [&[0u8; 8][..], b"vide", &[0u8; 13]].concat();
            let mdia = [
                bx(b"mdhd", &mdhd),
                bx(b"hdlr", &hdlr),
                bx(b"minf", &bx(b"stbl", &stbl)),
            ]
            .concat();
            let moov = bx(b"moov", &bx(b"trak", &bx(b"mdia", &mdia)));
            [ftyp.clone(), moov].concat()
        };
        let head = build(0);
        let off = (head.len() + 8) as u32;
        [build(off), bx(b"mdat", &sample)].concat()
    }

    #[test]
    fn reads_a_tiny_avc_file() {
        let avcc = bx(
            b"avcC",
            &[1, 77, 0, 30, 0xff, 0xe1, 0, 2, 0x67, 0x4d, 1, 0, 1, 0x68],
        );
        let f = tiny_mp4(b"avc1", &avcc);
        let t = read_track(&f).unwrap();
        assert_eq!(t.codec, Codec::H264);
        assert_eq!((t.width, t.height, t.timescale), (64, 48, 12800));
        assert_eq!(t.param_sets, vec![vec![0x67, 0x4d], vec![0x68]]);
        assert_eq!(t.samples.len(), 1);
        let d = t.sample_data(&f, 0).unwrap();
        let mut nals = Vec::new();
        t.sample_nals(d, |n| nals.push(n.to_vec())).unwrap();
        assert_eq!(nals, vec![vec![0x65, 0x88, 0x80]]);
        // Cut anywhere: an error or a shorter read, never a panic.
        for cut in 0..f.len() {
            if let Ok(t) = read_track(&f[..cut]) {
                assert!(t.sample_data(&f[..cut], 0).is_err());
            }
        }
    }

    #[test]
    fn unknown_sample_entry_names_the_fourcc() {
        let f = tiny_mp4(b"mp4v", &bx(b"esds", &[0; 8]));
        assert_eq!(
            read_track(&f).unwrap_err(),
            Mp4Error::UnsupportedCodec("mp4v".into())
        );
    }
}
