//! File sources on the real clips of `../shared/media` (see its README for the expected frame
//! counts, sizes and GOPs), and on damaged inputs made from them at test time.
//!
//! The media directory is `$JETWATCH_SHARED/media`, else `<repo>/../shared/media`.

use std::path::{Path, PathBuf};

use jetwatch::error::SourceError;
use jetwatch::frame::{AccessUnit, Codec, ColourDesc};
use jetwatch::source::file::open_file;
use jetwatch::source::{Source, SourceEvent};

const MAX_AU: usize = 4 << 20;

fn media() -> PathBuf {
    jetwatch::assets::shared_dir()
        .expect("test media not found (set JETWATCH_SHARED to the shared directory)")
        .join("media")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jetwatch-sources-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Clip {
    name: &'static str,
    width: u32,
    height: u32,
    fps: f64,
    frames: usize,
    gop: usize,
    /// IDR exactly every `gop` frames and nowhere else (else: at least every `gop` frames).
    strict_gop: bool,
}

/// The README's table.
const CLIPS: &[Clip] = &[
    Clip {
        name: "TUD-Campus",
        width: 640,
        height: 480,
        fps: 25.0,
        frames: 71,
        gop: 50,
        strict_gop: true,
    },
    Clip {
        name: "bikes",
        width: 640,
        height: 272,
        fps: 25.0,
        frames: 250,
        gop: 50,
        strict_gop: true,
    },
    Clip {
        name: "car-detection",
        width: 768,
        height: 432,
        fps: 12.5,
        frames: 377,
        gop: 25,
        strict_gop: true,
    },
    Clip {
        name: "one-by-one-person-detection",
        width: 768,
        height: 432,
        fps: 10.0,
        frames: 1394,
        gop: 20,
        strict_gop: true,
    },
];

struct Read {
    aus: Vec<(Vec<u8>, bool, i64)>,
}

fn read_all(src: &mut dyn Source) -> Result<Read, SourceError> {
    let mut au = AccessUnit::with_capacity(MAX_AU);
    let mut aus = Vec::new();
    loop {
        match src.next(&mut au)? {
            SourceEvent::End => break,
            SourceEvent::AccessUnit => {
                assert_eq!(au.index as usize, aus.len());
                assert!(au.data.capacity() == MAX_AU, "the AU buffer was regrown");
                aus.push((au.data.clone(), au.keyframe, au.pts_us));
            }
            SourceEvent::Looped => panic!("looped without loop = true"),
        }
    }
    Ok(Read { aus })
}

fn nal_types(codec: Codec, au: &[u8]) -> Vec<u8> {
    jetwatch::source::annexb::NalUnits::new(au)
        .map(|n| jetwatch::source::au::nal_type(codec, n))
        .collect()
}

fn check_clip(clip: &Clip, codec: Codec, file: &Path) -> Read {
    let mut src = open_file(file, None, false, MAX_AU).unwrap();
    let info = src.info().clone();
    assert_eq!(info.codec, codec, "{}", file.display());
    assert_eq!(
        (info.width, info.height),
        (clip.width, clip.height),
        "{}",
        file.display()
    );
    // car-detection and one-by-one say BT.601 (smpte170m) limited range in their VUI; the
    // others say nothing: the height rule gives BT.601 below 576 lines and BT.709 for 1080.
    assert_eq!(
        info.colour,
        ColourDesc::default_for_height(clip.height),
        "{}",
        file.display()
    );
    let fps = info.fps.expect("fps");
    assert!(
        (fps - clip.fps).abs() < 0.01,
        "{}: fps {fps}",
        file.display()
    );
    let r = read_all(src.as_mut()).unwrap();
    assert_eq!(r.aus.len(), clip.frames, "{}: frame count", file.display());
    let frame_us = 1e6 / clip.fps;
    let mut last_key = 0;
    assert!(r.aus[0].1, "{}: the first AU is a keyframe", file.display());
    for (i, (data, key, pts)) in r.aus.iter().enumerate() {
        if clip.strict_gop {
            assert_eq!(
                *key,
                i % clip.gop == 0,
                "{}: keyframe flag of AU {i}",
                file.display()
            );
        } else {
            if *key {
                last_key = i;
            }
            assert!(
                i - last_key < clip.gop,
                "{}: no keyframe for {} frames",
                file.display(),
                clip.gop
            );
        }
        assert!(
            (*pts as f64 - i as f64 * frame_us).abs() <= 1.0,
            "{}: pts of AU {i} is {pts}",
            file.display()
        );
        let types = nal_types(codec, data);
        if *key {
            let want: &[u8] = match codec {
                Codec::H264 => &[7, 8],
                Codec::H265 => &[32, 33, 34],
            };
            assert_eq!(&types[..want.len()], want, "{}: AU {i}", file.display());
        }
        assert!(data.starts_with(&[0, 0, 0, 1]));
    }
    r
}

#[test]
fn every_clip_mp4_and_annexb_give_the_readme_facts_and_identical_access_units() {
    let m = media();
    for clip in CLIPS {
        for (codec, ext) in [(Codec::H264, "h264"), (Codec::H265, "h265")] {
            let mp4 = check_clip(clip, codec, &m.join(format!("{}_{ext}.mp4", clip.name)));
            let raw = check_clip(clip, codec, &m.join(format!("{}.{ext}", clip.name)));
            for (i, (a, b)) in mp4.aus.iter().zip(&raw.aus).enumerate() {
                assert!(
                    a.0 == b.0,
                    "{} {ext}: AU {i} differs between MP4 ({} B, NAL types {:?}) and Annex-B ({} B, {:?})",
                    clip.name,
                    a.0.len(),
                    nal_types(codec, &a.0),
                    b.0.len(),
                    nal_types(codec, &b.0)
                );
            }
        }
    }
}

#[test]
fn cam1080_is_cropped_to_1080_lines() {
    let m = media();
    let clip = Clip {
        name: "cam1080",
        width: 1920,
        height: 1080,
        fps: 30.0,
        frames: 300,
        gop: 60,
        strict_gop: false,
    };
    let a = check_clip(&clip, Codec::H264, &m.join("cam1080_h264.mp4"));
    let b = check_clip(&clip, Codec::H264, &m.join("cam1080.h264"));
    assert!(a.aus.iter().zip(&b.aus).all(|(x, y)| x.0 == y.0));
    check_clip(&clip, Codec::H265, &m.join("cam1080_h265.mp4"));
}

#[test]
fn looping_continues_pts_and_index() {
    let m = media();
    for f in ["TUD-Campus_h264.mp4", "TUD-Campus.h265"] {
        let mut src = open_file(&m.join(f), None, true, MAX_AU).unwrap();
        let mut au = AccessUnit::with_capacity(MAX_AU);
        let mut last = -1;
        let mut loops = 0;
        for i in 0..71 * 2 + 5 {
            let ev = src.next(&mut au).unwrap();
            assert_eq!(au.index, i as u64);
            assert!(au.pts_us > last, "{f}: pts went back at {i}");
            last = au.pts_us;
            if i % 71 == 0 && i > 0 {
                assert_eq!(ev, SourceEvent::Looped, "{f}: AU {i}");
                assert!(au.keyframe);
                assert_eq!(au.pts_us, i as i64 * 40_000, "{f}");
                loops += 1;
            } else {
                assert_eq!(ev, SourceEvent::AccessUnit, "{f}: AU {i}");
            }
        }
        assert_eq!(loops, 2);
    }
}

#[test]
fn codec_is_taken_from_hint_extension_or_sniffing() {
    let m = media();
    let d = temp_dir("sniff");
    for (src, codec) in [
        ("TUD-Campus.h264", Codec::H264),
        ("TUD-Campus.h265", Codec::H265),
    ] {
        let p = d.join(format!("{src}.bin"));
        std::fs::copy(m.join(src), &p).unwrap();
        let s = open_file(&p, None, false, MAX_AU).unwrap();
        assert_eq!(s.info().codec, codec, "sniffed {src}");
        let s = open_file(&p, Some(codec), false, MAX_AU).unwrap();
        assert_eq!(s.info().codec, codec);
    }
    // A wrong hint on an Annex-B file is an error about the SPS, not a panic.
    let e = open_file(&m.join("TUD-Campus.h264"), None, false, MAX_AU);
    assert!(e.is_ok());
    let p = d.join("h264-named-h265.h265");
    std::fs::copy(m.join("TUD-Campus.h264"), &p).unwrap();
    let e = open_file(&p, None, false, MAX_AU).err().expect("must fail");
    assert!(matches!(e, SourceError::Format { .. }), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn empty_missing_unknown_and_oversized_inputs_are_clear_errors() {
    let m = media();
    let d = temp_dir("errors");
    let empty = d.join("empty.h264");
    std::fs::write(&empty, b"").unwrap();
    let e = open_file(&empty, None, false, MAX_AU).err().unwrap();
    assert!(e.to_string().contains("empty"), "{e}");

    let e = open_file(&d.join("missing.mp4"), None, false, MAX_AU)
        .err()
        .unwrap();
    assert!(matches!(e, SourceError::Open { .. }), "{e}");

    let text = d.join("notes.txt");
    std::fs::write(&text, b"hello, this is not video").unwrap();
    let e = open_file(&text, None, false, MAX_AU).err().unwrap();
    assert!(matches!(e, SourceError::Format { .. }), "{e}");

    // An MPEG-4 Part 2 track: the avc1 sample entry of a real file renamed to mp4v (the
    // sample entry layout is the same VisualSampleEntry; the codec is what must be refused).
    let mut mp4 = std::fs::read(m.join("TUD-Campus_h264.mp4")).unwrap();
    let stsd = mp4.windows(4).position(|w| w == b"stsd").unwrap();
    let at = stsd + mp4[stsd..].windows(4).position(|w| w == b"avc1").unwrap();
    mp4[at..at + 4].copy_from_slice(b"mp4v");
    let p = d.join("mpeg4.mp4");
    std::fs::write(&p, &mp4).unwrap();
    let e = open_file(&p, None, false, MAX_AU).err().unwrap();
    match &e {
        SourceError::UnsupportedCodec { what, .. } => assert!(what.contains("mp4v"), "{e}"),
        other => panic!("expected UnsupportedCodec, got {other}"),
    }

    // An access unit larger than the buffer: TooLarge, and the source goes on.
    for f in ["TUD-Campus_h264.mp4", "TUD-Campus.h264"] {
        let mut src = open_file(&m.join(f), None, false, 8 << 10).unwrap();
        let mut au = AccessUnit::with_capacity(8 << 10);
        let (mut ok, mut too_large) = (0, 0);
        loop {
            match src.next(&mut au) {
                Ok(SourceEvent::End) => break,
                Ok(_) => {
                    assert!(au.data.len() <= 8 << 10);
                    ok += 1
                }
                Err(SourceError::TooLarge { size, capacity, .. }) => {
                    assert!(size > capacity);
                    too_large += 1
                }
                Err(e) => panic!("{f}: {e}"),
            }
            assert_eq!(au.data.capacity(), 8 << 10);
        }
        assert_eq!(ok + too_large, 71, "{f}");
        assert!(too_large >= 2, "{f}: the IDRs are larger than 8 KiB");
    }
    std::fs::remove_dir_all(&d).ok();
}

/// xorshift, so the damage is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Reads a damaged file to the end: any result but a panic is fine; returns AUs and errors.
fn read_damaged(p: &Path) -> (usize, usize) {
    let Ok(mut src) = open_file(p, None, false, 1 << 20) else {
        return (0, 1);
    };
    let mut au = AccessUnit::with_capacity(1 << 20);
    let (mut n, mut errs) = (0, 0);
    for _ in 0..5000 {
        match src.next(&mut au) {
            Ok(SourceEvent::End) => break,
            Ok(_) => n += 1,
            Err(_) => errs += 1,
        }
    }
    (n, errs)
}

#[test]
fn truncated_files_deliver_what_is_there_or_a_clear_error() {
    let m = media();
    let d = temp_dir("trunc");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for f in [
        "TUD-Campus_h264.mp4",
        "TUD-Campus.h264",
        "TUD-Campus_h265.mp4",
        "TUD-Campus.h265",
    ] {
        let data = std::fs::read(m.join(f)).unwrap();
        let p = d.join(f);
        for k in 0..12 {
            let cut = if k == 0 {
                data.len() / 2
            } else {
                (rng.next() % data.len() as u64) as usize
            };
            std::fs::write(&p, &data[..cut]).unwrap();
            let (n, errs) = read_damaged(&p);
            assert!(n < 71, "{f} cut at {cut}: {n} AUs");
            if f.ends_with(".mp4") {
                // moov is at the front (faststart): a cut in mdat still yields the samples
                // before the cut, then one error naming the truncation.
                if cut > 4096 && n > 0 {
                    assert_eq!(errs, 1, "{f} cut at {cut}");
                }
            } else if cut > 2048 {
                // Annex-B: the AUs before the cut plus the partial last one.
                assert!(n >= 1, "{f} cut at {cut}");
            }
        }
        // Cut in half: Annex-B delivers about half the pictures.
        std::fs::write(&p, &data[..data.len() / 2]).unwrap();
        let (n, _) = read_damaged(&p);
        assert!(n > 10, "{f}: {n}");
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn corrupted_bytes_never_panic() {
    let m = media();
    let d = temp_dir("corrupt");
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for f in [
        "TUD-Campus_h264.mp4",
        "TUD-Campus.h264",
        "TUD-Campus_h265.mp4",
        "TUD-Campus.h265",
    ] {
        let data = std::fs::read(m.join(f)).unwrap();
        let p = d.join(f);
        for k in 0..16 {
            let mut bad = data.clone();
            // Damage the first 4 KiB (headers, moov, parameter sets) half the time.
            let span = if k % 2 == 0 { 4096 } else { bad.len() };
            for _ in 0..1 + k * 4 {
                let i = (rng.next() % span as u64) as usize;
                bad[i] = rng.next() as u8;
            }
            std::fs::write(&p, &bad).unwrap();
            read_damaged(&p);
        }
    }
    std::fs::remove_dir_all(&d).ok();
}

/// The odd streams of tools/make-test-media.sh (needs ffmpeg, as the decoder tests do).
#[test]
fn odd_streams_made_by_ffmpeg() {
    let d = temp_dir("odd");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/make-test-media.sh");
    let st = std::process::Command::new("bash")
        .arg(&script)
        .arg(&d)
        .env("JETWATCH_SHARED", media().parent().unwrap())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("bash");
    assert!(
        st.success(),
        "tools/make-test-media.sh failed (is ffmpeg installed?)"
    );

    // MPEG-4 Part 2 and (if this ffmpeg encodes it) AV1: unsupported, naming the fourcc.
    for (f, fourcc) in [("mpeg4.mp4", "mp4v"), ("av1.mp4", "av01")] {
        if f == "av1.mp4" && !d.join(f).is_file() {
            continue;
        }
        let e = open_file(&d.join(f), None, false, MAX_AU).err().unwrap();
        assert!(
            matches!(&e, SourceError::UnsupportedCodec { what, .. } if what.contains(fourcc)),
            "{f}: {e}"
        );
    }

    // No SPS anywhere: a clear format error.
    let e = open_file(&d.join("no-sps.h264"), None, false, MAX_AU)
        .err()
        .unwrap();
    assert!(e.to_string().contains("sequence parameter set"), "{e}");

    // Resolution change: the second IDR carries its own (640x480) SPS in front.
    let mut src = open_file(&d.join("res-change.h264"), None, false, MAX_AU).unwrap();
    assert_eq!((src.info().width, src.info().height), (320, 240));
    let r = read_all(src.as_mut()).unwrap();
    assert_eq!(r.aus.len(), 50);
    let keys: Vec<usize> = (0..50).filter(|&i| r.aus[i].1).collect();
    assert_eq!(keys, vec![0, 25]);
    let sps = jetwatch::source::annexb::NalUnits::new(&r.aus[25].0)
        .find(|n| n[0] & 0x1f == 7)
        .unwrap();
    let info = jetwatch::source::sps::parse_h264_sps(sps).unwrap();
    assert_eq!((info.width, info.height), (640, 480));

    // Cut inside a slice: the AUs before it and the partial last one, no error.
    let mut src = open_file(&d.join("cut-in-nal.h264"), None, false, MAX_AU).unwrap();
    let r = read_all(src.as_mut()).unwrap();
    assert!(r.aus.len() > 1 && r.aus.len() < 71, "{}", r.aus.len());
    std::fs::remove_dir_all(&d).ok();
}
