//! The OpenH264 software decoder on the real clips of `../shared/media`: frame counts, sizes,
//! bit-exactness against FFmpeg, zero allocations per frame, corrupt input, H.265 refusal.
#![cfg(feature = "sw-h264")]

use std::path::{Path, PathBuf};
use std::process::Command;

use jetwatch::alloc_count::{this_thread, CountingAlloc};
use jetwatch::decode::openh264::OpenH264Decoder;
use jetwatch::decode::{Decoded, Decoder};
use jetwatch::error::DecodeError;
use jetwatch::frame::{AccessUnit, Picture};
use jetwatch::source::file::open_file;
use jetwatch::source::SourceEvent;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MAX_AU: usize = 4 << 20;

fn media() -> PathBuf {
    jetwatch::assets::shared_dir()
        .expect("test media not found (set JETWATCH_SHARED to the shared directory)")
        .join("media")
}

/// Decodes a whole file; returns (pictures, corrupt AUs, first picture's luma rows).
fn decode_file(path: &Path) -> (u64, u64, (u32, u32), Vec<u8>) {
    let mut src = open_file(path, None, false, MAX_AU).unwrap();
    let info = src.info().clone();
    let mut dec = OpenH264Decoder::new(&info, 4, 1920, 1088).unwrap();
    let mut au = AccessUnit::with_capacity(MAX_AU);
    let mut first_luma = Vec::new();
    let mut size = (0, 0);
    let mut back: Vec<(Picture, u32)> = Vec::with_capacity(4);
    while src.next(&mut au).unwrap() != SourceEvent::End {
        let r = dec.decode(&au, &mut |d: Decoded| {
            if let Picture::Host(p) = &d.picture {
                if first_luma.is_empty() {
                    size = (p.width, p.height);
                    for row in 0..p.height as usize {
                        first_luma.extend_from_slice(
                            &p.luma()[row * p.pitch..row * p.pitch + p.width as usize],
                        );
                    }
                }
            }
            back.push((d.picture, d.token));
        });
        if let Err(e) = r {
            panic!("{}: AU {}: {e}", path.display(), au.index);
        }
        for (p, t) in back.drain(..) {
            dec.recycle(p, t);
        }
    }
    dec.flush(&mut |d| back.push((d.picture, d.token))).unwrap();
    let s = dec.stats();
    (s.pictures, s.corrupt, size, first_luma)
}

#[test]
fn decodes_every_h264_clip_with_the_readme_frame_count() {
    let m = media();
    for (name, frames, w, h) in [
        ("TUD-Campus", 71, 640, 480),
        ("bikes", 250, 640, 272),
        ("car-detection", 377, 768, 432),
        ("one-by-one-person-detection", 1394, 768, 432),
    ] {
        // The MP4 files yield byte-identical access units (tests/sources.rs), so the raw
        // streams stand for both.
        let file = format!("{name}.h264");
        let (pics, corrupt, size, _) = decode_file(&m.join(&file));
        assert_eq!(pics, frames, "{file}: decoded pictures");
        assert_eq!(corrupt, 0, "{file}");
        assert_eq!(size, (w, h), "{file}");
    }
}

#[test]
fn first_picture_luma_is_bit_exact_with_ffmpeg() {
    let file = media().join("TUD-Campus.h264");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "nv12", "-"])
        .output()
        .expect("ffmpeg must be installed for this test (Debian package ffmpeg)");
    assert!(out.status.success(), "ffmpeg failed");
    let (_, _, (w, h), luma) = decode_file(&file);
    let n = (w * h) as usize;
    assert_eq!(out.stdout.len(), n * 3 / 2);
    let ff = &out.stdout[..n];
    let diff = luma.iter().zip(ff).filter(|(a, b)| a != b).count();
    assert_eq!(
        diff, 0,
        "{diff} of {n} luma samples differ from FFmpeg's decode"
    );
}

#[test]
fn zero_allocations_per_frame_after_warm_up() {
    let file = media().join("TUD-Campus_h264.mp4");
    let mut src = open_file(&file, None, true, MAX_AU).unwrap();
    let info = src.info().clone();
    let mut dec = OpenH264Decoder::new(&info, 3, 640, 480).unwrap();
    let mut au = AccessUnit::with_capacity(MAX_AU);
    // Pictures "downstream" are held in a pre-sized ring, returned two frames later.
    let mut held: Vec<(Picture, u32)> = Vec::with_capacity(8);
    let mut start = 0;
    for frame in 0..150 {
        if frame == 20 {
            start = this_thread();
        }
        src.next(&mut au).unwrap();
        dec.decode(&au, &mut |d| held.push((d.picture, d.token)))
            .unwrap();
        if held.len() > 2 {
            let (p, t) = held.remove(0);
            dec.recycle(p, t);
        }
    }
    let grew = this_thread() - start;
    assert_eq!(
        grew, 0,
        "{grew} allocations in frames 20..150 (source + decode + recycle)"
    );
    assert_eq!(dec.stats().pictures, 150);
}

#[test]
fn pool_exhaustion_drops_and_counts() {
    let file = media().join("TUD-Campus.h264");
    let mut src = open_file(&file, None, false, MAX_AU).unwrap();
    let mut dec = OpenH264Decoder::new(src.info(), 2, 640, 480).unwrap();
    let mut au = AccessUnit::with_capacity(MAX_AU);
    let mut kept = Vec::new();
    for _ in 0..5 {
        src.next(&mut au).unwrap();
        dec.decode(&au, &mut |d| kept.push(d)).unwrap();
    }
    assert_eq!(kept.len(), 2);
    assert_eq!(dec.stats().dropped_pool_empty, 3);
    assert_eq!(dec.free_pictures(), 0);
    for d in kept {
        dec.recycle(d.picture, d.token);
    }
    assert_eq!(dec.free_pictures(), 2);
}

#[test]
fn corrupt_data_is_an_error_never_a_panic_and_the_next_idr_recovers() {
    let file = media().join("TUD-Campus.h264");
    let mut src = open_file(&file, None, false, MAX_AU).unwrap();
    let mut dec = OpenH264Decoder::new(src.info(), 4, 640, 480).unwrap();
    let mut au = AccessUnit::with_capacity(MAX_AU);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut errors = 0;
    let mut after_idr = 0;
    let mut corrupted_until = 0;
    let mut pics_after = 0;
    loop {
        if src.next(&mut au).unwrap() == SourceEvent::End {
            break;
        }
        let i = au.index;
        if (5..45).contains(&i) {
            // Overwrite bytes in the slice data of P pictures (keep the start codes).
            let n = au.data.len();
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = 8 + (x as usize % (n.saturating_sub(8)).max(1));
                if at < n {
                    au.data[at] = (x >> 32) as u8;
                }
            }
            corrupted_until = i;
        }
        let mut got = Vec::new();
        match dec.decode(&au, &mut |d| got.push(d)) {
            Ok(()) => {}
            Err(DecodeError::Corrupt { index, .. }) => {
                assert_eq!(index, i);
                errors += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
        if i >= 50 {
            after_idr += 1;
            pics_after += got.len();
        }
        for d in got {
            dec.recycle(d.picture, d.token);
        }
    }
    // 40 damaged access units; OpenH264 (error concealment off) reports most of them and
    // the pictures that reference them until the next IDR.
    assert!(errors >= 20, "only {errors} corrupt access units reported");
    assert_eq!(corrupted_until, 44);
    assert_eq!(dec.stats().corrupt, errors);
    // From the IDR at frame 50 on, every picture decodes again.
    assert_eq!(after_idr, 21);
    assert_eq!(pics_after, 21);
}

#[test]
fn h265_is_refused_with_a_hint_to_the_hardware_decoders() {
    let src = open_file(&media().join("TUD-Campus.h265"), None, false, MAX_AU).unwrap();
    let e = OpenH264Decoder::new(src.info(), 2, 640, 480).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DecodeError::UnsupportedCodec { .. }), "{msg}");
    assert!(msg.contains("NVDEC") && msg.contains("Jetson"), "{msg}");
}

/// Main and High profile streams with B-frames (made here with FFmpeg's libx264): every
/// picture comes out, in presentation order with increasing PTS; Main is bit-exact with
/// FFmpeg, High within a few levels on a few samples.
#[test]
fn b_frame_streams_decode_bit_exact_in_presentation_order() {
    let dir = std::env::temp_dir().join(format!("jetwatch-oh264-bf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (profile, bf) in [("main", "2"), ("high", "3")] {
        let file = dir.join(format!("{profile}_bf{bf}.mp4"));
        let st = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=320x240:rate=25")
            .args([
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-profile:v",
                profile,
                "-bf",
                bf,
            ])
            .args(["-g", "25", "-pix_fmt", "yuv420p"])
            .arg(&file)
            .status()
            .expect("ffmpeg must be installed for this test (Debian package ffmpeg)");
        assert!(st.success());
        let reference = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&file)
            .args(["-f", "rawvideo", "-pix_fmt", "nv12", "-"])
            .output()
            .unwrap()
            .stdout;
        let frame_bytes = 320 * 240 * 3 / 2;
        assert_eq!(reference.len(), 50 * frame_bytes);

        let mut src = open_file(&file, None, false, MAX_AU).unwrap();
        let mut dec = OpenH264Decoder::new(src.info(), 8, 320, 240).unwrap();
        let mut au = AccessUnit::with_capacity(MAX_AU);
        let mut out: Vec<(i64, Vec<u8>)> = Vec::new();
        let grab = |d: Decoded, out: &mut Vec<(i64, Vec<u8>)>| {
            if let Picture::Host(p) = &d.picture {
                let mut y = Vec::new();
                for r in 0..p.height as usize {
                    y.extend_from_slice(&p.luma()[r * p.pitch..r * p.pitch + p.width as usize]);
                }
                out.push((d.pts_us, y));
            }
            (d.picture, d.token)
        };
        let mut back = Vec::new();
        while src.next(&mut au).unwrap() != SourceEvent::End {
            dec.decode(&au, &mut |d| back.push(grab(d, &mut out)))
                .unwrap();
            for (p, t) in back.drain(..) {
                dec.recycle(p, t);
            }
        }
        dec.flush(&mut |d| back.push(grab(d, &mut out))).unwrap();
        assert_eq!(out.len(), 50, "{profile}: pictures");
        assert_eq!(dec.stats().corrupt, 0);
        assert_eq!(out[0].0, 0, "{profile}: the first picture shown has PTS 0");
        for (k, (pts, y)) in out.iter().enumerate() {
            if k > 0 {
                assert_eq!(
                    pts - out[k - 1].0,
                    40_000,
                    "{profile}: PTS step at picture {k}"
                );
            }
            let want = &reference[k * frame_bytes..k * frame_bytes + 320 * 240];
            let differ = y.iter().zip(want).filter(|(a, b)| a != b).count();
            let max = y
                .iter()
                .zip(want)
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .max()
                .unwrap_or(0);
            if profile == "main" {
                assert_eq!(differ, 0, "{profile}: picture {k} differs from FFmpeg's");
            } else {
                // Measured: High + B-frames is not bit-exact in OpenH264: up to 64 samples of
                // a picture differ by at most 3 levels (pictures 17..32 of these clips).
                assert!(
                    differ <= 320 && max <= 4,
                    "{profile}: picture {k}: {differ} samples differ, by up to {max}"
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
