//! Wire format of detection messages (byte-level spec and golden vectors: docs/wire-format.md).
//!
//! One message per processed frame, in one of two encodings chosen by
//! [`crate::config::WireFormat`]:
//!
//! - **postcard** (default): a version byte, then the header and the detections as postcard
//!   varints (<https://postcard.jamesmunns.com/wire-format>). Boxes are whole source pixels,
//!   scores are quantised to a byte: about 11 bytes per detection on a 1080p stream.
//! - **JSON**: self-describing, `{"v":1,...}`, class names from the labels.
//!
//! Both encoders write into a caller's fixed buffer and allocate nothing, so the frame path
//! can encode straight into an outbox slot. [`decode`] tells the two apart by the first byte
//! (`{` is JSON) and rejects versions it does not know.

use std::io::Write as _;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use crate::config::WireFormat;
use crate::postprocess::Detection;

/// Version of both encodings. A decoder rejects any other value (see the versioning rules in
/// docs/wire-format.md).
pub const WIRE_VERSION: u8 = 1;

/// Per-frame fields that travel with the detections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FrameHeader {
    /// Camera index in the config (the topic names the camera too).
    pub stream: u16,
    /// Frame sequence number of this stream, from 0; gaps mean dropped frames.
    pub seq: u64,
    /// Presentation time of the frame in the stream, microseconds.
    pub pts_us: i64,
    /// Wall-clock time of capture (or of reading, for files), ms since the Unix epoch.
    pub capture_unix_ms: u64,
    /// Source picture size in pixels (the coordinate space of the boxes).
    pub width: u16,
    pub height: u16,
}

/// One detection as decoded from the wire (quantised as the wire carries it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodedDetection {
    pub class: u16,
    /// Class name: carried by JSON; `None` in postcard (the subscriber maps `class`).
    pub label: Option<String>,
    /// 0..=1; postcard carries it in steps of 1/255, JSON in steps of 0.001.
    pub score: f32,
    /// `[x0, y0, x1, y1]` in whole source pixels.
    #[serde(rename = "box")]
    pub bbox: [u16; 4],
    /// Track identity (0 = none).
    pub track: u32,
}

/// A decoded detection message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodedFrame {
    pub version: u8,
    pub format: Encoding,
    pub header: FrameHeader,
    pub detections: Vec<DecodedDetection>,
}

/// Which encoding a message used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Postcard,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("encode buffer too small: {capacity} bytes (size it with wire::max_encoded_len)")]
    BufferTooSmall { capacity: usize },
    #[error("empty message")]
    Empty,
    #[error("wire version {found} is not supported (this decoder knows version {WIRE_VERSION}; upgrade the subscriber)")]
    UnsupportedVersion { found: u64 },
    #[error("malformed {format} message: {msg}")]
    Malformed { format: &'static str, msg: String },
    #[error("{0} detections exceed the maximum of 65535 per frame")]
    TooManyDetections(usize),
}

/// Largest score quantum: `score_q = round(clamp(score, 0, 1) * 255)`.
const SCORE_Q: f32 = 255.0;

/// A detection as postcard carries it (field order is the wire order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct WireDet {
    class: u16,
    score: u8,
    x0: u16,
    y0: u16,
    x1: u16,
    y1: u16,
    track: u32,
}

/// Whole pixels, clamped to the picture (NaN → 0).
fn px(v: f32, max: u16) -> u16 {
    if v.is_nan() || v <= 0.0 {
        0
    } else if v >= max as f32 {
        max
    } else {
        v.round() as u16
    }
}

fn quant_score(s: f32) -> u8 {
    if s.is_nan() || s <= 0.0 {
        0
    } else if s >= 1.0 {
        255
    } else {
        (s * SCORE_Q).round() as u8
    }
}

/// Score with three decimals for JSON.
fn json_score(s: f32) -> f32 {
    let s = if s.is_nan() { 0.0 } else { s.clamp(0.0, 1.0) };
    (s * 1000.0).round() / 1000.0
}

fn wire_det(d: &Detection, w: u16, h: u16) -> WireDet {
    WireDet {
        class: d.class,
        score: quant_score(d.score),
        x0: px(d.x0, w),
        y0: px(d.y0, h),
        x1: px(d.x1, w),
        y1: px(d.y1, h),
        track: d.track,
    }
}

struct PostcardDets<'a> {
    dets: &'a [Detection],
    w: u16,
    h: u16,
}

impl Serialize for PostcardDets<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.dets.len()))?;
        for d in self.dets {
            seq.serialize_element(&wire_det(d, self.w, self.h))?;
        }
        seq.end()
    }
}

/// Postcard frame, field order = wire order. Serialised by postcard as a struct: the fields
/// back to back, no names, no length.
#[derive(Serialize)]
struct PostcardFrame<'a> {
    v: u8,
    stream: u16,
    seq: u64,
    pts_us: i64,
    capture_unix_ms: u64,
    width: u16,
    height: u16,
    dets: PostcardDets<'a>,
}

#[derive(Deserialize)]
struct PostcardFrameOwned {
    v: u8,
    stream: u16,
    seq: u64,
    pts_us: i64,
    capture_unix_ms: u64,
    width: u16,
    height: u16,
    dets: Vec<WireDet>,
}

struct JsonDet<'a> {
    d: &'a Detection,
    labels: &'a [String],
    w: u16,
    h: u16,
}

impl Serialize for JsonDet<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let q = wire_det(self.d, self.w, self.h);
        let mut st = s.serialize_struct("Det", 5)?;
        st.serialize_field("class", &q.class)?;
        st.serialize_field("label", &self.labels.get(q.class as usize))?;
        st.serialize_field("score", &json_score(self.d.score))?;
        st.serialize_field("box", &[q.x0, q.y0, q.x1, q.y1])?;
        st.serialize_field("track", &q.track)?;
        st.end()
    }
}

struct JsonDets<'a> {
    dets: &'a [Detection],
    labels: &'a [String],
    w: u16,
    h: u16,
}

impl Serialize for JsonDets<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.dets.len()))?;
        for d in self.dets {
            seq.serialize_element(&JsonDet {
                d,
                labels: self.labels,
                w: self.w,
                h: self.h,
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct JsonFrame<'a> {
    v: u8,
    stream: u16,
    seq: u64,
    pts_us: i64,
    capture_unix_ms: u64,
    width: u16,
    height: u16,
    detections: JsonDets<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonFrameOwned {
    v: u64,
    stream: u16,
    seq: u64,
    pts_us: i64,
    capture_unix_ms: u64,
    width: u16,
    height: u16,
    detections: Vec<JsonDetOwned>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDetOwned {
    class: u16,
    label: Option<String>,
    score: f32,
    #[serde(rename = "box")]
    bbox: [u16; 4],
    track: u32,
}

/// A `std::io::Write` over a fixed slice that remembers whether it ran out of room (so a
/// full buffer is reported without building an error value, which would allocate).
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl std::io::Write for SliceWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.buf.len() - self.len;
        if data.len() > room {
            self.overflow = true;
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encodes one frame's detections into `buf` and returns the number of bytes written.
/// Allocates nothing on success. Boxes are clamped to the picture and rounded to whole
/// pixels; scores are clamped to 0..=1.
pub fn encode(
    format: WireFormat,
    hdr: &FrameHeader,
    dets: &[Detection],
    labels: &[String],
    buf: &mut [u8],
) -> Result<usize, WireError> {
    if dets.len() > u16::MAX as usize {
        return Err(WireError::TooManyDetections(dets.len()));
    }
    match format {
        WireFormat::Postcard => {
            let frame = PostcardFrame {
                v: WIRE_VERSION,
                stream: hdr.stream,
                seq: hdr.seq,
                pts_us: hdr.pts_us,
                capture_unix_ms: hdr.capture_unix_ms,
                width: hdr.width,
                height: hdr.height,
                dets: PostcardDets {
                    dets,
                    w: hdr.width,
                    h: hdr.height,
                },
            };
            let capacity = buf.len();
            postcard::to_slice(&frame, buf)
                .map(|s| s.len())
                .map_err(|_| WireError::BufferTooSmall { capacity })
        }
        WireFormat::Json => {
            // Check the size first: serde_json's error value would allocate.
            let capacity = buf.len();
            if capacity < json_len_bound(hdr, dets, labels) {
                return Err(WireError::BufferTooSmall { capacity });
            }
            let frame = JsonFrame {
                v: WIRE_VERSION,
                stream: hdr.stream,
                seq: hdr.seq,
                pts_us: hdr.pts_us,
                capture_unix_ms: hdr.capture_unix_ms,
                width: hdr.width,
                height: hdr.height,
                detections: JsonDets {
                    dets,
                    labels,
                    w: hdr.width,
                    h: hdr.height,
                },
            };
            let mut w = SliceWriter {
                buf,
                len: 0,
                overflow: false,
            };
            match serde_json::to_writer(&mut w, &frame) {
                Ok(()) => {
                    let _ = w.flush();
                    Ok(w.len)
                }
                Err(_) if w.overflow => Err(WireError::BufferTooSmall { capacity }),
                Err(e) => Err(WireError::Malformed {
                    format: "json",
                    msg: e.to_string(),
                }),
            }
        }
    }
}

/// Postcard varint of an unsigned value: 7 bits per byte.
const fn varint_max(bits: usize) -> usize {
    bits.div_ceil(7)
}

/// Postcard: version + header + length + per detection (class, score, 4 coordinates, track).
const POSTCARD_HEADER_MAX: usize =
    1 + varint_max(16) + varint_max(64) * 3 + varint_max(16) * 2 + varint_max(16);
const POSTCARD_DET_MAX: usize = varint_max(16) + 1 + varint_max(16) * 4 + varint_max(32);

/// JSON: the fixed text around the header with every number at its longest.
const JSON_HEADER_MAX: usize = r#"{"v":1,"stream":65535,"seq":18446744073709551615,"pts_us":-9223372036854775808,"capture_unix_ms":18446744073709551615,"width":65535,"height":65535,"detections":[]}"#.len();
/// One detection without its label, every number at its longest, `null` label, plus a comma.
const JSON_DET_MAX: usize =
    r#"{"class":65535,"label":null,"score":0.001,"box":[65535,65535,65535,65535],"track":4294967295},"#
        .len();

/// Length of `s` as a JSON string literal with serde_json's escaping, quotes included.
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

fn max_label_json_len(labels: &[String]) -> usize {
    labels.iter().map(|l| json_str_len(l)).max().unwrap_or(0)
}

fn json_len_bound(_hdr: &FrameHeader, dets: &[Detection], labels: &[String]) -> usize {
    let mut n = JSON_HEADER_MAX;
    for d in dets {
        n += JSON_DET_MAX;
        if let Some(l) = labels.get(d.class as usize) {
            n += json_str_len(l);
        }
    }
    n
}

/// The largest message [`encode`] can produce for up to `max_detections` detections with
/// these labels: the size of an outbox slot.
pub fn max_encoded_len(format: WireFormat, max_detections: usize, labels: &[String]) -> usize {
    match format {
        WireFormat::Postcard => POSTCARD_HEADER_MAX + max_detections * POSTCARD_DET_MAX,
        WireFormat::Json => {
            JSON_HEADER_MAX + max_detections * (JSON_DET_MAX + max_label_json_len(labels))
        }
    }
}

/// Decodes a message of either encoding. JSON messages start with `{`; anything else is
/// postcard, whose first byte is the version.
pub fn decode(bytes: &[u8]) -> Result<DecodedFrame, WireError> {
    let first = *bytes.first().ok_or(WireError::Empty)?;
    if first == b'{' {
        return decode_json(bytes);
    }
    if first != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion {
            found: first as u64,
        });
    }
    let (f, rest): (PostcardFrameOwned, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| WireError::Malformed {
            format: "postcard",
            msg: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(WireError::Malformed {
            format: "postcard",
            msg: format!("{} trailing bytes after the frame", rest.len()),
        });
    }
    Ok(DecodedFrame {
        version: f.v,
        format: Encoding::Postcard,
        header: FrameHeader {
            stream: f.stream,
            seq: f.seq,
            pts_us: f.pts_us,
            capture_unix_ms: f.capture_unix_ms,
            width: f.width,
            height: f.height,
        },
        detections: f
            .dets
            .into_iter()
            .map(|d| DecodedDetection {
                class: d.class,
                label: None,
                score: d.score as f32 / SCORE_Q,
                bbox: [d.x0, d.y0, d.x1, d.y1],
                track: d.track,
            })
            .collect(),
    })
}

fn decode_json(bytes: &[u8]) -> Result<DecodedFrame, WireError> {
    // Check the version before the schema, so a newer message says "version" rather than
    // "unknown field".
    #[derive(Deserialize)]
    struct VersionOnly {
        v: Option<u64>,
    }
    let vo: VersionOnly = serde_json::from_slice(bytes).map_err(|e| WireError::Malformed {
        format: "json",
        msg: e.to_string(),
    })?;
    match vo.v {
        Some(v) if v == WIRE_VERSION as u64 => {}
        Some(found) => return Err(WireError::UnsupportedVersion { found }),
        None => {
            return Err(WireError::Malformed {
                format: "json",
                msg: "no \"v\" (version) field".into(),
            })
        }
    }
    let f: JsonFrameOwned = serde_json::from_slice(bytes).map_err(|e| WireError::Malformed {
        format: "json",
        msg: e.to_string(),
    })?;
    Ok(DecodedFrame {
        version: f.v as u8,
        format: Encoding::Json,
        header: FrameHeader {
            stream: f.stream,
            seq: f.seq,
            pts_us: f.pts_us,
            capture_unix_ms: f.capture_unix_ms,
            width: f.width,
            height: f.height,
        },
        detections: f
            .detections
            .into_iter()
            .map(|d| DecodedDetection {
                class: d.class,
                label: d.label,
                score: d.score,
                bbox: d.bbox,
                track: d.track,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: u16, score: f32, b: [f32; 4], track: u32) -> Detection {
        Detection {
            class,
            score,
            x0: b[0],
            y0: b[1],
            x1: b[2],
            y1: b[3],
            track,
        }
    }

    fn hdr() -> FrameHeader {
        FrameHeader {
            stream: 1,
            seq: 12345,
            pts_us: -40_000,
            capture_unix_ms: 1_763_900_000_000,
            width: 1920,
            height: 1080,
        }
    }

    fn labels() -> Vec<String> {
        vec!["person".into(), "bi\"cy\\cle\n".into(), "car".into()]
    }

    #[test]
    fn postcard_is_compact_and_round_trips() {
        let dets: Vec<Detection> = (0..10)
            .map(|i| {
                det(
                    (i % 3) as u16,
                    0.3 + i as f32 * 0.05,
                    [
                        100.0 + i as f32 * 150.0,
                        200.4,
                        180.6 + i as f32 * 150.0,
                        700.0,
                    ],
                    i,
                )
            })
            .collect();
        let mut buf = [0u8; 512];
        let n = encode(WireFormat::Postcard, &hdr(), &dets, &labels(), &mut buf).unwrap();
        // Header ~16 bytes, then at most 12 per detection on a 1080p picture.
        assert!(n <= 16 + 10 * 12, "{n} bytes");
        assert!(n <= max_encoded_len(WireFormat::Postcard, 10, &labels()));
        let d = decode(&buf[..n]).unwrap();
        assert_eq!(d.header, hdr());
        assert_eq!(d.format, Encoding::Postcard);
        assert_eq!(d.detections.len(), 10);
        for (a, b) in dets.iter().zip(&d.detections) {
            assert_eq!(a.class, b.class);
            assert!((a.score - b.score).abs() <= 0.5 / 255.0 + 1e-6);
            assert_eq!(b.bbox, [a.x0.round() as u16, 200, a.x1.round() as u16, 700]);
            assert_eq!(a.track, b.track);
        }
    }

    #[test]
    fn json_round_trips_with_labels_and_escaping() {
        let dets = [
            det(1, 0.87654, [-5.0, 10.2, 2000.0, 1079.6], 7),
            det(9, f32::NAN, [f32::NAN, 0.0, 1.0, 1.0], 0),
        ];
        let mut buf = [0u8; 1024];
        let n = encode(WireFormat::Json, &hdr(), &dets, &labels(), &mut buf).unwrap();
        assert!(n <= max_encoded_len(WireFormat::Json, 2, &labels()));
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("{\"v\":1,"), "{text}");
        let d = decode(&buf[..n]).unwrap();
        assert_eq!(d.format, Encoding::Json);
        assert_eq!(d.header, hdr());
        assert_eq!(d.detections[0].label.as_deref(), Some("bi\"cy\\cle\n"));
        assert_eq!(d.detections[0].score, 0.877);
        assert_eq!(d.detections[0].bbox, [0, 10, 1920, 1080]);
        assert_eq!(d.detections[1].label, None);
        assert_eq!(d.detections[1].score, 0.0);
    }

    #[test]
    fn max_len_is_a_true_bound_at_the_extremes() {
        let h = FrameHeader {
            stream: u16::MAX,
            seq: u64::MAX,
            pts_us: i64::MIN,
            capture_unix_ms: u64::MAX,
            width: u16::MAX,
            height: u16::MAX,
        };
        let labels = vec!["\u{1}\u{2}\"".to_string(), "x".repeat(40)];
        let dets: Vec<Detection> = (0..256)
            .map(|i| det((i % 2) as u16, 0.0011, [1e9, 1e9, 1e9, 1e9], u32::MAX))
            .collect();
        for fmt in [WireFormat::Postcard, WireFormat::Json] {
            let max = max_encoded_len(fmt, dets.len(), &labels);
            let mut buf = vec![0u8; max];
            let n = encode(fmt, &h, &dets, &labels, &mut buf).unwrap();
            assert!(n <= max, "{fmt:?}: {n} > {max}");
            let d = decode(&buf[..n]).unwrap();
            assert_eq!(d.header, h);
            assert_eq!(d.detections.len(), 256);
            // One byte short of what was needed must fail cleanly.
            let mut small = vec![0u8; n - 1];
            assert!(matches!(
                encode(fmt, &h, &dets, &labels, &mut small),
                Err(WireError::BufferTooSmall { .. })
            ));
        }
    }

    #[test]
    fn decode_rejects_bad_input_without_panicking() {
        assert_eq!(decode(&[]), Err(WireError::Empty));
        assert_eq!(
            decode(&[2, 0, 0]),
            Err(WireError::UnsupportedVersion { found: 2 })
        );
        assert_eq!(
            decode(br#"{"v":2,"future":true}"#),
            Err(WireError::UnsupportedVersion { found: 2 })
        );
        assert!(matches!(
            decode(b"{\"v\":1}"),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(decode(b"{"), Err(WireError::Malformed { .. })));
        let mut buf = [0u8; 128];
        let n = encode(
            WireFormat::Postcard,
            &hdr(),
            &[det(0, 0.5, [1.0, 2.0, 3.0, 4.0], 0)],
            &[],
            &mut buf,
        )
        .unwrap();
        for cut in 1..n {
            assert!(decode(&buf[..cut]).is_err(), "truncated at {cut}");
        }
        let mut longer = buf[..n].to_vec();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(WireError::Malformed { .. })));
        // A detection count far beyond the bytes present.
        assert!(decode(&[1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x03]).is_err());
    }

    /// Random bytes and random single-byte corruptions of valid messages never panic
    /// (a short deterministic stand-in for a fuzz run of `decode`).
    #[test]
    fn decode_never_panics_on_garbage() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let dets: Vec<Detection> = (0..5)
            .map(|i| det(i, 0.5, [1.0, 2.0, 300.0, 400.0], i as u32))
            .collect();
        let mut valid = Vec::new();
        for fmt in [WireFormat::Postcard, WireFormat::Json] {
            let mut buf = [0u8; 1024];
            let n = encode(fmt, &hdr(), &dets, &labels(), &mut buf).unwrap();
            valid.push(buf[..n].to_vec());
        }
        for round in 0..20_000 {
            let mut m = if round % 2 == 0 {
                valid[(round / 2) % 2].clone()
            } else {
                let len = (next() % 64) as usize;
                let mut v: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if let Some(b) = v.first_mut() {
                    *b = if next() % 2 == 0 { 1 } else { b'{' };
                }
                v
            };
            if !m.is_empty() {
                let k = (next() as usize) % m.len();
                m[k] = next() as u8;
                let cut = (next() as usize) % (m.len() + 1);
                m.truncate(cut.max(1));
            }
            let _ = decode(&m);
        }
    }
}
