//! Golden vectors of docs/wire-format.md: checked both ways (encode == golden bytes,
//! decode(golden) == value), against the document's text, and against the Python decoder
//! for subscribers (tools/jetwatch_decode.py). Also: encoding allocates nothing.

use jetwatch::alloc_count::{self, CountingAlloc};
use jetwatch::config::WireFormat;
use jetwatch::postprocess::Detection;
use jetwatch::wire::{self, DecodedDetection, DecodedFrame, Encoding, FrameHeader, WireError};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

struct Golden {
    name: &'static str,
    format: WireFormat,
    hdr: FrameHeader,
    dets: Vec<Detection>,
    labels: Vec<String>,
    expected: DecodedFrame,
}

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

fn ddet(
    class: u16,
    label: Option<&str>,
    score: f32,
    bbox: [u16; 4],
    track: u32,
) -> DecodedDetection {
    DecodedDetection {
        class,
        label: label.map(String::from),
        score,
        bbox,
        track,
    }
}

fn coco() -> Vec<String> {
    ["person", "bicycle", "car"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn goldens() -> Vec<Golden> {
    let hdr1 = FrameHeader {
        stream: 0,
        seq: 1,
        pts_us: 40_000,
        capture_unix_ms: 1_763_900_000_000,
        width: 1920,
        height: 1080,
    };
    let dets1 = vec![
        det(0, 0.9, [100.0, 200.0, 300.0, 600.0], 0),
        det(2, 0.5, [1500.4, 10.0, 1919.6, 300.2], 17),
    ];
    let hdr2 = FrameHeader {
        stream: 3,
        seq: 300,
        pts_us: -1,
        capture_unix_ms: 0,
        width: 640,
        height: 480,
    };
    vec![
        Golden {
            name: "postcard-two-detections",
            format: WireFormat::Postcard,
            hdr: hdr1,
            dets: dets1.clone(),
            labels: coco(),
            expected: DecodedFrame {
                version: 1,
                format: Encoding::Postcard,
                header: hdr1,
                detections: vec![
                    ddet(0, None, 230.0 / 255.0, [100, 200, 300, 600], 0),
                    ddet(2, None, 128.0 / 255.0, [1500, 10, 1920, 300], 17),
                ],
            },
        },
        Golden {
            name: "postcard-empty",
            format: WireFormat::Postcard,
            hdr: hdr2,
            dets: vec![],
            labels: vec![],
            expected: DecodedFrame {
                version: 1,
                format: Encoding::Postcard,
                header: hdr2,
                detections: vec![],
            },
        },
        Golden {
            name: "json-two-detections",
            format: WireFormat::Json,
            hdr: hdr1,
            dets: dets1,
            labels: coco(),
            expected: DecodedFrame {
                version: 1,
                format: Encoding::Json,
                header: hdr1,
                detections: vec![
                    ddet(0, Some("person"), 0.9, [100, 200, 300, 600], 0),
                    ddet(2, Some("car"), 0.5, [1500, 10, 1920, 300], 17),
                ],
            },
        },
    ]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The golden bytes as written in docs/wire-format.md: the fenced block after
/// `<!-- golden: NAME -->` (hex for postcard, the text itself for JSON).
fn doc_vector(doc: &str, name: &str, format: WireFormat) -> Vec<u8> {
    let marker = format!("<!-- golden: {name} -->");
    let at = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/wire-format.md has no {marker}"));
    let rest = &doc[at + marker.len()..];
    let open = rest.find("```").expect("code block");
    let body_start = open + rest[open..].find('\n').unwrap() + 1;
    let body_len = rest[body_start..].find("```").expect("closing fence");
    let body = rest[body_start..body_start + body_len].trim_end_matches('\n');
    match format {
        WireFormat::Postcard => unhex(body),
        WireFormat::Json => body.as_bytes().to_vec(),
    }
}

#[test]
fn golden_vectors_match_both_ways() {
    let doc = std::fs::read_to_string(repo().join("docs/wire-format.md")).unwrap();
    for g in goldens() {
        let golden = doc_vector(&doc, g.name, g.format);
        let mut buf = [0u8; 1024];
        let n = wire::encode(g.format, &g.hdr, &g.dets, &g.labels, &mut buf).unwrap();
        assert_eq!(
            hex(&buf[..n]),
            hex(&golden),
            "{}: encode differs from the documented vector",
            g.name
        );
        assert!(n <= wire::max_encoded_len(g.format, g.dets.len(), &g.labels));
        let d = wire::decode(&golden).unwrap();
        assert_eq!(d, g.expected, "{}: decode(golden)", g.name);
    }
}

#[test]
fn python_decoder_agrees_with_the_golden_vectors() {
    let python = ["python3", "/usr/bin/python3"].into_iter().find(|p| {
        std::process::Command::new(p)
            .arg("--version")
            .output()
            .is_ok()
    });
    let Some(python) = python else {
        eprintln!("SKIPPED: python3 is not installed; tools/jetwatch_decode.py not checked");
        return;
    };
    let doc = std::fs::read_to_string(repo().join("docs/wire-format.md")).unwrap();
    let gs = goldens();
    let hexes: Vec<String> = gs
        .iter()
        .map(|g| hex(&doc_vector(&doc, g.name, g.format)))
        .collect();
    let out = std::process::Command::new(python)
        .arg(repo().join("tools/jetwatch_decode.py"))
        .arg("--hex")
        .args(&hexes)
        // Unsupported version and truncation: reported, exit status 1.
        .args(["0205", "01000180"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), gs.len() + 2, "{text}");
    for (g, py) in gs.iter().zip(&lines) {
        let rust = serde_json::to_value(&g.expected).unwrap();
        assert_eq!(py["version"], rust["version"], "{}", g.name);
        assert_eq!(py["format"], rust["format"], "{}", g.name);
        assert_eq!(py["header"], rust["header"], "{}", g.name);
        let (pd, rd) = (
            py["detections"].as_array().unwrap(),
            rust["detections"].as_array().unwrap(),
        );
        assert_eq!(pd.len(), rd.len());
        for (p, r) in pd.iter().zip(rd) {
            for k in ["class", "label", "box", "track"] {
                assert_eq!(p[k], r[k], "{} {k}", g.name);
            }
            let (ps, rs) = (p["score"].as_f64().unwrap(), r["score"].as_f64().unwrap());
            assert!((ps - rs).abs() < 1e-6, "{}: score {ps} vs {rs}", g.name);
        }
    }
    assert!(lines[gs.len()]["error"]
        .as_str()
        .unwrap()
        .contains("version 2 is not supported"));
    assert!(lines[gs.len() + 1]["error"]
        .as_str()
        .unwrap()
        .contains("truncated"));
}

#[test]
fn encode_allocates_nothing() {
    let labels: Vec<String> = (0..80).map(|i| format!("class-{i}")).collect();
    let dets: Vec<Detection> = (0..100)
        .map(|i| {
            det(
                i as u16 % 80,
                0.3 + (i % 7) as f32 * 0.1,
                [i as f32, 2.0, 300.0, 400.5],
                i,
            )
        })
        .collect();
    let hdr = FrameHeader {
        stream: 1,
        seq: 99,
        pts_us: 123_456,
        capture_unix_ms: 1_763_900_000_000,
        width: 1920,
        height: 1080,
    };
    let mut pc = vec![0u8; wire::max_encoded_len(WireFormat::Postcard, 100, &labels)];
    let mut js = vec![0u8; wire::max_encoded_len(WireFormat::Json, 100, &labels)];
    let before = alloc_count::this_thread();
    let mut total = 0;
    for k in 0..1000 {
        let n = dets.len() - k % 50;
        total += wire::encode(WireFormat::Postcard, &hdr, &dets[..n], &labels, &mut pc).unwrap();
        total += wire::encode(WireFormat::Json, &hdr, &dets[..n], &labels, &mut js).unwrap();
    }
    // A too-small buffer is an error, still without allocating.
    let mut tiny = [0u8; 8];
    for fmt in [WireFormat::Postcard, WireFormat::Json] {
        assert!(matches!(
            wire::encode(fmt, &hdr, &dets, &labels, &mut tiny),
            Err(WireError::BufferTooSmall { capacity: 8 })
        ));
    }
    let allocs = alloc_count::this_thread() - before;
    assert!(total > 0);
    assert_eq!(allocs, 0, "encode allocated {allocs} times");
}
