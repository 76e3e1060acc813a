//! Access-unit assembly: a pure state machine (no I/O, no clock), in the style of retina's
//! `Depacketizer`: [`AuAssembler::push`] NAL units in decoding order, [`AuAssembler::pull`]
//! complete access units in Annex-B form.
//!
//! Boundaries follow the standards:
//! - H.264 7.4.1.2.3: a new access unit begins with the first of an access unit delimiter (9),
//!   SPS (7), PPS (8), SEI (6), NAL unit types 14..=18, or the first VCL NAL unit of a new
//!   primary coded picture (`first_mb_in_slice == 0`), once the current access unit holds a
//!   VCL NAL unit.
//! - H.265 7.4.2.4.4: likewise with AUD (35), VPS (32), SPS (33), PPS (34), prefix SEI (39),
//!   types 41..=44 and 48..=55, or a VCL NAL unit with `first_slice_segment_in_pic_flag == 1`.
//!
//! Keyframes are IDR pictures (H.264 `nal_unit_type` 5) and IRAP pictures (H.265 types
//! 16..=23). Every keyframe access unit leaves the assembler with its parameter sets in front
//! (after any AUD), in the order VPS, SPS, PPS: in-band ones where the access unit has them,
//! otherwise the latest ones seen earlier in the stream (or given by a container), so that a
//! decoder can start at any keyframe. Every NAL unit is written with a 4-byte start code.
//!
//! Memory: the assembler owns two NAL buffers of the configured access-unit capacity and the
//! parameter-set buffers, all allocated at construction; pushing and pulling allocate nothing.

use crate::frame::Codec;

/// Most NAL units one access unit may hold (slices, SEI, parameter sets).
pub const MAX_NALS_PER_AU: usize = 512;
/// Largest parameter-set NAL unit remembered for re-insertion.
pub const MAX_PARAM_SET_BYTES: usize = 4096;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// `nal_unit_type` of a NAL unit (H.264 7.3.1: 5 bits; H.265 7.3.1.2: 6 bits). Empty NAL
/// units give 0 (H.264 "unspecified"; for H.265 a trailing slice, but empty NAL units are never
/// pushed).
pub fn nal_type(codec: Codec, nal: &[u8]) -> u8 {
    match (codec, nal.first()) {
        (_, None) => 0,
        (Codec::H264, Some(b)) => b & 0x1f,
        (Codec::H265, Some(b)) => (b >> 1) & 0x3f,
    }
}

/// True for VCL NAL unit types (H.264: 1..=5; H.265: 0..=31).
pub fn is_vcl(codec: Codec, t: u8) -> bool {
    match codec {
        Codec::H264 => (1..=5).contains(&t),
        Codec::H265 => t < 32,
    }
}

/// True for NAL unit types that make an access unit a keyframe (IDR / IRAP).
pub fn is_keyframe_type(codec: Codec, t: u8) -> bool {
    match codec {
        Codec::H264 => t == 5,
        Codec::H265 => (16..=23).contains(&t),
    }
}

/// Parameter-set kinds in the order they are written before a keyframe.
fn param_set_types(codec: Codec) -> &'static [u8] {
    match codec {
        Codec::H264 => &[7, 8],
        Codec::H265 => &[32, 33, 34],
    }
}

fn is_aud(codec: Codec, t: u8) -> bool {
    match codec {
        Codec::H264 => t == 9,
        Codec::H265 => t == 35,
    }
}

/// Whether `nal` begins a new access unit when the current one already holds a VCL NAL unit.
pub fn starts_new_au(codec: Codec, nal: &[u8]) -> bool {
    let t = nal_type(codec, nal);
    match codec {
        Codec::H264 => match t {
            6..=9 | 14..=18 => true,
            // first_mb_in_slice is the first ue(v) of the slice header: 0 is the single bit 1.
            1 | 2 | 5 => nal.get(1).is_some_and(|b| b & 0x80 != 0),
            _ => false,
        },
        Codec::H265 => match t {
            32..=35 | 39 | 41..=44 | 48..=55 => true,
            // first_slice_segment_in_pic_flag is the first bit after the 2-byte header.
            0..=31 => nal.get(2).is_some_and(|b| b & 0x80 != 0),
            _ => false,
        },
    }
}

/// The latest VPS, SPS and PPS of a stream (one of each), kept for re-insertion before
/// keyframes that lack them.
#[derive(Debug)]
pub struct ParamSets {
    codec: Codec,
    /// Indexed like `param_set_types(codec)`.
    sets: [Vec<u8>; 3],
}

impl ParamSets {
    pub fn new(codec: Codec) -> Self {
        ParamSets {
            codec,
            sets: std::array::from_fn(|_| Vec::with_capacity(MAX_PARAM_SET_BYTES)),
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    fn slot(&self, t: u8) -> Option<usize> {
        param_set_types(self.codec).iter().position(|&p| p == t)
    }

    /// Remembers `nal` if it is a parameter set that fits; returns whether it was kept.
    pub fn update(&mut self, nal: &[u8]) -> bool {
        let Some(i) = self.slot(nal_type(self.codec, nal)) else {
            return false;
        };
        if nal.len() > MAX_PARAM_SET_BYTES {
            return false;
        }
        self.sets[i].clear();
        self.sets[i].extend_from_slice(nal);
        true
    }

    /// The remembered parameter set of NAL type `t`, if any.
    pub fn get(&self, t: u8) -> Option<&[u8]> {
        let i = self.slot(t)?;
        (!self.sets[i].is_empty()).then_some(&self.sets[i][..])
    }

    /// The latest SPS.
    pub fn sps(&self) -> Option<&[u8]> {
        self.get(match self.codec {
            Codec::H264 => 7,
            Codec::H265 => 33,
        })
    }
}

/// Why an access unit could not be produced. The assembler stays usable: the offending access
/// unit is dropped and the next one starts clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuError {
    #[error("access unit of {size} bytes exceeds the {capacity}-byte buffer")]
    TooLarge { size: usize, capacity: usize },
    #[error("access unit has more than {max} NAL units")]
    TooManyNals { max: usize },
    #[error("a complete access unit must be pulled before more NAL units are pushed")]
    PullFirst,
}

/// What [`AuAssembler::pull`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuMeta {
    pub keyframe: bool,
    /// NAL units written, inserted parameter sets included.
    pub nal_units: usize,
    /// Bytes of the NAL units that were pushed (without start codes).
    pub pushed_bytes: usize,
    /// Bytes of re-inserted parameter sets (without start codes).
    pub inserted_bytes: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct NalRef {
    start: u32,
    len: u32,
    t: u8,
}

/// The NAL units of one access unit, stored back to back without start codes.
#[derive(Debug)]
pub(crate) struct NalList {
    buf: Vec<u8>,
    nals: Box<[NalRef]>,
    n: usize,
    has_vcl: bool,
    /// Total bytes pushed, counted even past the capacity (for the error message).
    total: usize,
    too_many: bool,
}

impl NalList {
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        NalList {
            buf: Vec::with_capacity(bytes),
            nals: vec![NalRef::default(); MAX_NALS_PER_AU].into_boxed_slice(),
            n: 0,
            has_vcl: false,
            total: 0,
            too_many: false,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.n = 0;
        self.has_vcl = false;
        self.total = 0;
        self.too_many = false;
    }

    pub(crate) fn push(&mut self, codec: Codec, nal: &[u8]) {
        let t = nal_type(codec, nal);
        self.has_vcl |= is_vcl(codec, t);
        self.total += nal.len();
        if self.n == self.nals.len() {
            self.too_many = true;
            return;
        }
        if self.buf.len() + nal.len() > self.buf.capacity() {
            return;
        }
        self.nals[self.n] = NalRef {
            start: self.buf.len() as u32,
            len: nal.len() as u32,
            t,
        };
        self.n += 1;
        self.buf.extend_from_slice(nal);
    }

    fn nal(&self, r: &NalRef) -> &[u8] {
        &self.buf[r.start as usize..(r.start + r.len) as usize]
    }

    /// Writes the access unit into `out` (cleared first) as Annex-B, with parameter sets in
    /// front of a keyframe (see the module docs), and updates `params` from in-band sets.
    /// `out` never grows past its capacity.
    pub(crate) fn write(
        &self,
        params: &mut ParamSets,
        out: &mut Vec<u8>,
    ) -> Result<AuMeta, AuError> {
        out.clear();
        if self.too_many {
            return Err(AuError::TooManyNals {
                max: MAX_NALS_PER_AU,
            });
        }
        if self.total > self.buf.len() {
            return Err(AuError::TooLarge {
                size: self.total,
                capacity: self.buf.capacity(),
            });
        }
        let codec = params.codec();
        let nals = &self.nals[..self.n];
        let keyframe = nals.iter().any(|r| is_keyframe_type(codec, r.t));
        // In-band parameter sets replace the remembered ones first.
        for r in nals {
            params.update(self.nal(r));
        }
        let ps_types = param_set_types(codec);
        // Plan: the size, then the bytes.
        let mut inserted = 0;
        let mut size = nals.iter().map(|r| 4 + r.len as usize).sum::<usize>();
        if keyframe {
            for &t in ps_types {
                if !nals.iter().any(|r| r.t == t) {
                    if let Some(ps) = params.get(t) {
                        inserted += ps.len();
                        size += 4 + ps.len();
                    }
                }
            }
        }
        if size > out.capacity() {
            return Err(AuError::TooLarge {
                size,
                capacity: out.capacity(),
            });
        }
        let mut count = 0;
        let mut put = |out: &mut Vec<u8>, nal: &[u8]| {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
            count += 1;
        };
        if keyframe {
            for r in nals.iter().filter(|r| is_aud(codec, r.t)) {
                put(out, self.nal(r));
            }
            for &t in ps_types {
                if nals.iter().any(|r| r.t == t) {
                    for r in nals.iter().filter(|r| r.t == t) {
                        put(out, self.nal(r));
                    }
                } else if let Some(ps) = params.get(t) {
                    put(out, ps);
                }
            }
            for r in nals
                .iter()
                .filter(|r| !is_aud(codec, r.t) && !ps_types.contains(&r.t))
            {
                put(out, self.nal(r));
            }
        } else {
            for r in nals {
                put(out, self.nal(r));
            }
        }
        Ok(AuMeta {
            keyframe,
            nal_units: count,
            pushed_bytes: self.total,
            inserted_bytes: inserted,
        })
    }
}

/// Groups NAL units into access units. See the module documentation.
///
/// Protocol: call [`push`](Self::push) for each NAL unit (without start code); when it returns
/// `Ok(true)` an access unit is complete and must be taken with [`pull`](Self::pull) before
/// the next push. At end of stream call [`finish`](Self::finish) and pull once more.
#[derive(Debug)]
pub struct AuAssembler {
    codec: Codec,
    cur: NalList,
    done: NalList,
    done_ready: bool,
    params: ParamSets,
}

impl AuAssembler {
    /// `max_au_bytes` bounds one access unit (NAL payloads, without start codes).
    pub fn new(codec: Codec, max_au_bytes: usize) -> Self {
        AuAssembler {
            codec,
            cur: NalList::with_capacity(max_au_bytes),
            done: NalList::with_capacity(max_au_bytes),
            done_ready: false,
            params: ParamSets::new(codec),
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The parameter sets remembered so far (updated as access units are pulled).
    pub fn params(&self) -> &ParamSets {
        &self.params
    }

    /// Seeds the remembered parameter sets (e.g. from a container's configuration record).
    pub fn set_param_set(&mut self, nal: &[u8]) -> bool {
        self.params.update(nal)
    }

    /// Drops any partial access unit (keeps the remembered parameter sets).
    pub fn reset(&mut self) {
        self.cur.clear();
        self.done.clear();
        self.done_ready = false;
    }

    /// Adds one NAL unit. Returns `Ok(true)` when this NAL unit began a new access unit and the
    /// previous one is ready to pull. Empty NAL units are ignored.
    pub fn push(&mut self, nal: &[u8]) -> Result<bool, AuError> {
        if nal.is_empty() {
            return Ok(self.done_ready);
        }
        if self.done_ready {
            return Err(AuError::PullFirst);
        }
        if self.cur.has_vcl && starts_new_au(self.codec, nal) {
            std::mem::swap(&mut self.cur, &mut self.done);
            self.cur.clear();
            self.done_ready = true;
        }
        self.cur.push(self.codec, nal);
        Ok(self.done_ready)
    }

    /// Ends the stream: the NAL units pushed since the last boundary form the last access
    /// unit (if they include a picture; parameter sets alone are only remembered). Returns
    /// whether an access unit is ready to pull.
    pub fn finish(&mut self) -> bool {
        if self.done_ready {
            return true;
        }
        if self.cur.has_vcl {
            std::mem::swap(&mut self.cur, &mut self.done);
            self.done_ready = true;
        } else {
            for i in 0..self.cur.n {
                let r = self.cur.nals[i];
                self.params.update(self.cur.nal(&r));
            }
        }
        self.cur.clear();
        self.done_ready
    }

    /// Takes the completed access unit, written into `out` (see [`AuMeta`]); `None` if none is
    /// ready. On error the access unit is dropped.
    pub fn pull(&mut self, out: &mut Vec<u8>) -> Option<Result<AuMeta, AuError>> {
        if !self.done_ready {
            return None;
        }
        self.done_ready = false;
        let r = self.done.write(&mut self.params, out);
        self.done.clear();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::annexb::NalUnits;

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&START_CODE);
            v.extend_from_slice(n);
        }
        v
    }

    fn run(codec: Codec, nals: &[&[u8]], cap: usize) -> Vec<(Vec<u8>, AuMeta)> {
        let mut a = AuAssembler::new(codec, cap);
        let mut out = Vec::with_capacity(cap * 2);
        let mut aus = Vec::new();
        for n in nals {
            if a.push(n).unwrap() {
                let m = a.pull(&mut out).unwrap().unwrap();
                aus.push((out.clone(), m));
            }
        }
        if a.finish() {
            let m = a.pull(&mut out).unwrap().unwrap();
            aus.push((out.clone(), m));
        }
        aus
    }

    const SPS: &[u8] = &[0x67, 0x4d, 0x00, 0x1e];
    const PPS: &[u8] = &[0x68, 0xee];
    const SEI: &[u8] = &[0x06, 0x05, 0x01];
    const IDR: &[u8] = &[0x65, 0x88, 0x80];
    const IDR_SLICE2: &[u8] = &[0x65, 0x12, 0x34];
    const P: &[u8] = &[0x41, 0x9a, 0x00];
    const P_SLICE2: &[u8] = &[0x41, 0x40, 0x01];
    const AUD: &[u8] = &[0x09, 0xf0];

    #[test]
    fn h264_boundaries_and_multi_slice_pictures() {
        let aus = run(
            Codec::H264,
            &[SEI, SPS, PPS, IDR, IDR_SLICE2, P, P_SLICE2, AUD, P, SEI, P],
            1024,
        );
        assert_eq!(aus.len(), 4);
        // Keyframe: parameter sets moved in front of the SEI.
        assert_eq!(aus[0].0, annexb(&[SPS, PPS, SEI, IDR, IDR_SLICE2]));
        assert!(aus[0].1.keyframe);
        assert_eq!(aus[0].1.inserted_bytes, 0);
        assert_eq!(aus[1].0, annexb(&[P, P_SLICE2]));
        assert!(!aus[1].1.keyframe);
        assert_eq!(aus[2].0, annexb(&[AUD, P]));
        assert_eq!(aus[3].0, annexb(&[SEI, P]));
    }

    #[test]
    fn parameter_sets_reinserted_before_idr_that_lacks_them() {
        let aus = run(Codec::H264, &[SPS, PPS, IDR, P, AUD, SEI, IDR], 1024);
        assert_eq!(aus.len(), 3);
        assert_eq!(aus[2].0, annexb(&[AUD, SPS, PPS, SEI, IDR]));
        assert_eq!(aus[2].1.inserted_bytes, SPS.len() + PPS.len());
        assert!(aus[2].1.keyframe);
    }

    #[test]
    fn h265_boundaries_irap_and_reinsertion() {
        let vps: &[u8] = &[0x40, 0x01, 0x0c];
        let sps: &[u8] = &[0x42, 0x01, 0x01];
        let pps: &[u8] = &[0x44, 0x01, 0xc1];
        let sei: &[u8] = &[0x4e, 0x01, 0x05];
        let idr: &[u8] = &[0x28, 0x01, 0xaf]; // IDR_N_LP (20), first slice
        let idr2: &[u8] = &[0x28, 0x01, 0x2f]; // second slice segment
        let trail: &[u8] = &[0x02, 0x01, 0xd0];
        let suffix_sei: &[u8] = &[0x50, 0x01, 0x01];
        let cra: &[u8] = &[0x2a, 0x01, 0x80]; // CRA (21)
        let aus = run(
            Codec::H265,
            &[vps, sps, pps, sei, idr, idr2, trail, suffix_sei, cra],
            1024,
        );
        assert_eq!(aus.len(), 3);
        assert_eq!(aus[0].0, annexb(&[vps, sps, pps, sei, idr, idr2]));
        assert_eq!(aus[1].0, annexb(&[trail, suffix_sei]));
        assert!(!aus[1].1.keyframe);
        assert_eq!(aus[2].0, annexb(&[vps, sps, pps, cra]));
        assert!(aus[2].1.keyframe);
    }

    #[test]
    fn oversized_access_unit_is_an_error_and_the_next_one_recovers() {
        let big = [0x41u8, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut a = AuAssembler::new(Codec::H264, 8);
        let mut out = Vec::with_capacity(64);
        assert!(!a.push(&big).unwrap());
        assert!(a.push(P).unwrap());
        assert_eq!(
            a.pull(&mut out).unwrap(),
            Err(AuError::TooLarge {
                size: 11,
                capacity: 8
            })
        );
        assert!(a.finish());
        assert_eq!(a.pull(&mut out).unwrap().unwrap().nal_units, 1);
        assert_eq!(out, annexb(&[P]));
        // The output buffer's capacity is respected too.
        let mut small = Vec::with_capacity(4);
        let mut a = AuAssembler::new(Codec::H264, 64);
        a.push(P).unwrap();
        a.finish();
        assert!(matches!(
            a.pull(&mut small),
            Some(Err(AuError::TooLarge { size: 7, .. }))
        ));
        assert_eq!(small.capacity(), 4);
    }

    #[test]
    fn pull_first_is_enforced() {
        let mut a = AuAssembler::new(Codec::H264, 64);
        a.push(P).unwrap();
        assert!(a.push(P).unwrap());
        assert_eq!(a.push(P), Err(AuError::PullFirst));
    }

    #[test]
    fn works_on_a_parsed_stream() {
        let stream = annexb(&[SEI, SPS, PPS, IDR, P, P]);
        let nals: Vec<&[u8]> = NalUnits::new(&stream).collect();
        let aus = run(Codec::H264, &nals, 256);
        assert_eq!(aus.len(), 3);
        let total: usize = aus.iter().map(|(_, m)| m.pushed_bytes).sum();
        assert_eq!(total, nals.iter().map(|n| n.len()).sum::<usize>());
    }
}
