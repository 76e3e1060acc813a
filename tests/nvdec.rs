//! NVDEC decoder checks on a real GPU (build with `--features cuda13,nvdec`).
//!
//! Without libcuda, libnvcuvid or a CUDA device every GPU test prints `SKIP (no NVDEC): why`
//! and passes, except when `JETWATCH_REQUIRE_GPU=1` (set by tools/nvdec-check.sh on the GPU
//! host), where a missing GPU fails. Media come from `$JETWATCH_SHARED/media` (default
//! `../shared/media`); reference hashes from tests/data/nvdec (tools/nvdec-refs.sh: FFmpeg's
//! software decoder, per-frame SHA-256 of the packed NV12 picture).
#![cfg(feature = "nvdec")]

use std::path::PathBuf;

use jetwatch::alloc_count::{self, CountingAlloc};
use jetwatch::bench_decode::{bench_decode_with, split_access_units};
use jetwatch::decode::nvdec::{nvdec_caps, NvdecDecoder, NvdecOptions};
use jetwatch::decode::{Decoded, Decoder};
use jetwatch::error::DecodeError;
use jetwatch::frame::{AccessUnit, Codec, ColourDesc, HostNv12, Picture, StreamInfo};
use sha2::{Digest, Sha256};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn shared() -> PathBuf {
    std::env::var_os("JETWATCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn media(name: &str) -> Vec<u8> {
    let p = shared().join("media").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (set JETWATCH_SHARED)", p.display()))
}

/// Reference hashes, embedded so the test binary can run on a GPU host without the sources.
const REFS: &[(&str, &str)] = &[
    (
        "TUD-Campus.h264",
        include_str!("data/nvdec/TUD-Campus.h264.sha256"),
    ),
    (
        "TUD-Campus.h265",
        include_str!("data/nvdec/TUD-Campus.h265.sha256"),
    ),
    ("bikes.h264", include_str!("data/nvdec/bikes.h264.sha256")),
    (
        "car-detection.h265",
        include_str!("data/nvdec/car-detection.h265.sha256"),
    ),
    (
        "cam1080.h264",
        include_str!("data/nvdec/cam1080.h264.sha256"),
    ),
    (
        "cam1080.h265",
        include_str!("data/nvdec/cam1080.h265.sha256"),
    ),
];

fn refs(name: &str) -> Vec<String> {
    let (_, text) = REFS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no reference hashes for {name}"));
    text.lines().map(str::to_owned).collect()
}

/// True if NVDEC is usable; otherwise prints why and (unless required) skips.
fn gpu() -> bool {
    match nvdec_caps(0) {
        Ok(_) => true,
        Err(e) => {
            if std::env::var_os("JETWATCH_REQUIRE_GPU").is_some_and(|v| v == "1") {
                panic!("JETWATCH_REQUIRE_GPU=1 but NVDEC is unavailable: {e}");
            }
            eprintln!("SKIP (no NVDEC): {e}");
            false
        }
    }
}

fn info(codec: Codec) -> StreamInfo {
    StreamInfo {
        codec,
        width: 0,
        height: 0,
        fps: None,
        colour: ColourDesc::default(),
    }
}

fn codec_of(name: &str) -> Codec {
    if name.ends_with(".h265") {
        Codec::H265
    } else {
        Codec::H264
    }
}

fn sha_nv12(dec: &NvdecDecoder, d: &Decoded, host: &mut HostNv12) -> String {
    let Picture::Device(p) = &d.picture else {
        panic!("NVDEC must hand out device pictures")
    };
    dec.download(p, host).expect("download");
    let w = host.width as usize;
    let mut h = Sha256::new();
    for row in host.luma().chunks(host.pitch) {
        h.update(&row[..w]);
    }
    for row in host.chroma().chunks(host.pitch) {
        h.update(&row[..w]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Output of feeding a byte stream to a decoder AU by AU (then flushing).
#[derive(Default)]
struct Run {
    hashes: Vec<String>,
    sizes: Vec<(u32, u32)>,
    pts: Vec<i64>,
    /// Pictures handed out by each decode call.
    per_call: Vec<usize>,
    errors: Vec<String>,
}

fn run(dec: &mut NvdecDecoder, data: &[u8], codec: Codec, hash: bool, flush: bool) -> Run {
    let mut host = HostNv12::with_capacity(1920, 1088);
    let mut out = Run::default();
    let mut au = AccessUnit::with_capacity(4 << 20);
    let mut handle = |dec: &mut NvdecDecoder, got: Vec<Decoded>, out: &mut Run| {
        for d in got {
            if hash {
                out.hashes.push(sha_nv12(dec, &d, &mut host));
            }
            out.sizes.push(d.picture.size());
            out.pts.push(d.pts_us);
            dec.recycle(d.picture, d.token);
        }
    };
    for (i, r) in split_access_units(data, codec).into_iter().enumerate() {
        au.data.clear();
        au.data.extend_from_slice(&data[r]);
        au.index = i as u64;
        au.pts_us = i as i64 * 40_000;
        let mut got = Vec::new();
        if let Err(e) = dec.decode(&au, &mut |d| got.push(d)) {
            out.errors.push(e.to_string());
        }
        out.per_call.push(got.len());
        handle(dec, got, &mut out);
    }
    if flush {
        let mut got = Vec::new();
        if let Err(e) = dec.flush(&mut |d| got.push(d)) {
            out.errors.push(e.to_string());
        }
        handle(dec, got, &mut out);
    }
    out
}

#[test]
fn missing_gpu_is_a_typed_error_not_a_panic() {
    match NvdecDecoder::new(&info(Codec::H264), 0, 4, 1920, 1080) {
        Ok(d) => assert_eq!(d.backend(), "nvdec"),
        Err(DecodeError::Unavailable(u)) => {
            assert_eq!(u.backend, "nvdec");
            assert!(
                u.reason.contains("libcuda")
                    || u.reason.contains("libnvcuvid")
                    || u.reason.contains("CUDA device"),
                "reason should name what is missing: {}",
                u.reason
            );
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
    // Bad arguments are errors too, whatever the host.
    assert!(NvdecDecoder::new(&info(Codec::H264), 0, 0, 1920, 1080).is_err());
}

#[test]
fn caps_list_h264_and_hevc() {
    if !gpu() {
        return;
    }
    let caps = nvdec_caps(0).unwrap();
    println!("NVDEC_CAPS {}", serde_json::to_string(&caps).unwrap());
    let h264 = caps.codecs.iter().find(|c| c.codec == "H.264").unwrap();
    let hevc = caps
        .codecs
        .iter()
        .find(|c| c.codec == "H.265" && c.bit_depth == 8)
        .unwrap();
    assert!(h264.supported && hevc.supported);
    assert!(h264.max_width >= 4096 && hevc.max_width >= 4096);
    assert!(caps.engines >= 1);
}

/// Decoded pictures equal FFmpeg's software decode bit for bit, frame counts equal the media
/// README's, and in low-latency mode every access unit yields its picture in the same call.
#[test]
fn bit_exact_against_software_decode() {
    if !gpu() {
        return;
    }
    for name in [
        "TUD-Campus.h264",
        "TUD-Campus.h265",
        "bikes.h264",
        "car-detection.h265",
        "cam1080.h264",
        "cam1080.h265",
    ] {
        let p = shared().join("media").join(name);
        if !p.exists() {
            // cam1080.h265 is made from the MP4 by tools/nvdec-check.sh.
            eprintln!("SKIP {name}: {} not found", p.display());
            continue;
        }
        let codec = codec_of(name);
        let want = refs(name);
        let mut dec = NvdecDecoder::new(&info(codec), 0, 4, 1920, 1080).unwrap();
        let r = run(&mut dec, &media(name), codec, true, true);
        assert!(r.errors.is_empty(), "{name}: {:?}", r.errors);
        assert_eq!(r.hashes.len(), want.len(), "{name}: frame count");
        let bad: Vec<usize> = (0..want.len())
            .filter(|&i| r.hashes[i] != want[i])
            .collect();
        assert!(
            bad.is_empty(),
            "{name}: frames differing from FFmpeg: {bad:?}"
        );
        assert!(
            r.per_call.iter().all(|&n| n == 1),
            "{name}: low latency: one picture per AU"
        );
        assert!(r.pts.windows(2).all(|w| w[1] > w[0]), "{name}: pts order");
        assert_eq!(dec.stats().corrupt, 0, "{name}");
        assert_eq!(dec.mapped(), 0);
        println!(
            "NVDEC_BITEXACT {name} frames={} size={:?} ok",
            want.len(),
            r.sizes[0]
        );
    }
}

/// Annex-B streams of different sizes back to back (each starts with SPS/PPS and an IDR):
/// the decoder reconfigures in place and keeps decoding bit-exactly.
#[test]
fn resolution_change_reconfigures_and_keeps_decoding() {
    if !gpu() {
        return;
    }
    for (codec, parts) in [
        (
            Codec::H264,
            ["TUD-Campus.h264", "bikes.h264", "TUD-Campus.h264"],
        ),
        (
            Codec::H265,
            ["TUD-Campus.h265", "car-detection.h265", "TUD-Campus.h265"],
        ),
    ] {
        let mut data = Vec::new();
        let mut want = Vec::new();
        for p in parts {
            data.extend_from_slice(&media(p));
            want.extend(refs(p));
        }
        let mut dec = NvdecDecoder::new(&info(codec), 0, 4, 1920, 1080).unwrap();
        let r = run(&mut dec, &data, codec, true, true);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.hashes.len(), want.len());
        assert_eq!(
            r.hashes, want,
            "{codec:?}: pictures after a size change differ"
        );
        let mut changes: Vec<(u32, u32)> = r.sizes.clone();
        changes.dedup();
        assert_eq!(changes.len(), 3, "{codec:?}: sizes {changes:?}");
        // In place when the driver accepts it; a refused reconfigure falls back to a new
        // decoder, which must still decode bit-exactly.
        assert!(
            dec.reconfigures() >= 1,
            "{codec:?}: cuvidReconfigureDecoder never used"
        );
        assert_eq!(dec.reconfigures() + dec.recreates(), 2, "{codec:?}");
        println!(
            "NVDEC_RESCHANGE {codec:?} sizes={changes:?} reconfigures={} recreates={} frames={}",
            dec.reconfigures(),
            dec.recreates(),
            r.hashes.len()
        );
    }
}

/// A size change while a picture is still mapped downstream: the decoder is recreated, the
/// old one lives until that picture is recycled, and the held picture stays readable.
#[test]
fn resolution_change_with_mapped_picture_recreates() {
    if !gpu() {
        return;
    }
    let a = media("TUD-Campus.h264");
    let b = media("bikes.h264");
    let (ra, rb) = (refs("TUD-Campus.h264"), refs("bikes.h264"));
    let mut dec = NvdecDecoder::new(&info(Codec::H264), 0, 4, 1920, 1080).unwrap();
    let mut host = HostNv12::with_capacity(1920, 1088);
    let mut au = AccessUnit::with_capacity(1 << 20);
    let mut held: Option<Decoded> = None;
    let mut hashes = Vec::new();
    for (clip, data) in [(0, &a), (1, &b)] {
        for (i, r) in split_access_units(data, Codec::H264)
            .into_iter()
            .enumerate()
        {
            au.data.clear();
            au.data.extend_from_slice(&data[r]);
            au.index = i as u64;
            let mut got = Vec::new();
            dec.decode(&au, &mut |d| got.push(d)).unwrap();
            for d in got {
                hashes.push(sha_nv12(&dec, &d, &mut host));
                if clip == 0 && i == 70 {
                    held = Some(d); // keep the last 640x480 picture mapped
                } else {
                    dec.recycle(d.picture, d.token);
                }
            }
        }
    }
    assert_eq!(dec.recreates(), 1);
    let held = held.unwrap();
    assert_eq!(
        sha_nv12(&dec, &held, &mut host),
        ra[70],
        "held picture still valid"
    );
    dec.recycle(held.picture, held.token);
    assert_eq!(dec.mapped(), 0);
    let want: Vec<String> = ra.into_iter().chain(rb).collect();
    assert_eq!(hashes, want);
}

/// Mapping on a caller's (non-blocking) CUDA stream gives the same pictures.
#[test]
fn output_stream_mapping_is_bit_exact() {
    if !gpu() {
        return;
    }
    let ctx = cudarc::driver::CudaContext::new(0).unwrap();
    let stream = ctx.new_stream().unwrap();
    for name in ["cam1080.h264", "TUD-Campus.h265"] {
        let codec = codec_of(name);
        let mut dec = NvdecDecoder::new(&info(codec), 0, 4, 1920, 1080).unwrap();
        dec.set_output_stream(stream.clone());
        let r = run(&mut dec, &media(name), codec, true, true);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.hashes, refs(name), "{name} mapped on a caller stream");
    }
}

#[test]
fn too_large_stream_is_an_error() {
    if !gpu() {
        return;
    }
    let mut dec = NvdecDecoder::new(&info(Codec::H264), 0, 4, 320, 240).unwrap();
    let r = run(
        &mut dec,
        &media("TUD-Campus.h264"),
        Codec::H264,
        false,
        false,
    );
    assert!(r.hashes.is_empty() && r.sizes.is_empty());
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("exceeds the configured maximum")),
        "{:?}",
        &r.errors[..r.errors.len().min(3)]
    );
}

/// Garbage and corrupted slices are counted and never crash; the same decoder then decodes a
/// clean stream bit-exactly.
#[test]
fn garbage_and_corruption_are_counted_and_survivable() {
    if !gpu() {
        return;
    }
    for codec in [Codec::H264, Codec::H265] {
        let clip = if codec == Codec::H264 {
            "TUD-Campus.h264"
        } else {
            "TUD-Campus.h265"
        };
        let clean = media(clip);
        let mut dec = NvdecDecoder::new(&info(codec), 0, 4, 1920, 1080).unwrap();

        // 1. Random bytes with start codes sprinkled in.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = vec![0u8; 256 * 1024];
        for (i, b) in noise.iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = if i % 997 < 3 {
                [0, 0, 1][i % 997]
            } else {
                x as u8
            };
        }
        let g = run(&mut dec, &noise, codec, false, true);

        // 2. The real clip with the middle of every access unit after the first overwritten.
        let mut bad = clean.clone();
        let aus = split_access_units(&clean, codec);
        for r in aus.iter().skip(1) {
            let (s, e) = (r.start + r.len() / 2, r.end.min(r.start + r.len() / 2 + 64));
            for (k, b) in bad[s..e].iter_mut().enumerate() {
                *b ^= 0x5a ^ k as u8;
            }
        }
        let before = dec.stats().corrupt;
        let c = run(&mut dec, &bad, codec, true, true);
        let want = refs(clip);
        let differing = c.hashes.iter().zip(&want).filter(|(a, b)| a != b).count();
        let corrupt = dec.stats().corrupt - before;
        println!(
            "NVDEC_GARBAGE {codec:?}: noise -> {} pictures, {} errors; corrupted clip -> {} of {} pictures, {corrupt} counted corrupt, {differing} differ from clean, {} decode errors",
            g.sizes.len(),
            g.errors.len(),
            c.hashes.len(),
            want.len(),
            c.errors.len()
        );
        assert!(
            corrupt > 0 || c.hashes.len() < want.len(),
            "{codec:?}: corruption went unnoticed ({differing} pictures differ)"
        );

        // 3. The same decoder recovers on the clean stream.
        let r = run(&mut dec, &clean, codec, true, true);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.hashes, want, "{codec:?}: clean decode after garbage");
    }
}

/// With every pool slot mapped downstream, the newest picture is dropped and counted; once a
/// picture comes back, decoding hands out pictures again.
#[test]
fn full_pool_drops_newest_and_counts() {
    if !gpu() {
        return;
    }
    let data = media("TUD-Campus.h264");
    let mut dec = NvdecDecoder::new(&info(Codec::H264), 0, 2, 1920, 1080).unwrap();
    let mut au = AccessUnit::with_capacity(1 << 20);
    let mut held = Vec::new();
    let aus = split_access_units(&data, Codec::H264);
    for (i, r) in aus.iter().take(10).enumerate() {
        au.data.clear();
        au.data.extend_from_slice(&data[r.clone()]);
        au.index = i as u64;
        dec.decode(&au, &mut |d| held.push(d)).unwrap();
    }
    assert_eq!(held.len(), 2);
    assert_eq!(dec.stats().dropped_pool_empty, 8);
    assert_eq!(dec.stats().pictures, 2);
    let d = held.pop().unwrap();
    dec.recycle(d.picture, d.token);
    let mut got = Vec::new();
    au.data.clear();
    au.data.extend_from_slice(&data[aus[10].clone()]);
    dec.decode(&au, &mut |d| got.push(d)).unwrap();
    assert_eq!(got.len(), 1);
    for d in got.into_iter().chain(held) {
        dec.recycle(d.picture, d.token);
    }
    assert_eq!(dec.mapped(), 0);
}

/// The frame path (decode → map → sink → unmap) makes no Rust allocation in steady state.
#[test]
fn steady_state_decode_allocates_nothing() {
    if !gpu() {
        return;
    }
    let data = media("cam1080.h264");
    let aus = split_access_units(&data, Codec::H264);
    let mut dec = NvdecDecoder::new(&info(Codec::H264), 0, 4, 1920, 1080).unwrap();
    let mut au = AccessUnit::with_capacity(aus.iter().map(|r| r.len()).max().unwrap());
    let mut out: heapless::Vec<Decoded, 8> = heapless::Vec::new();
    let mut frames = 0;
    let mut allocs_before = 0;
    for (i, r) in aus.iter().enumerate() {
        if i == 10 {
            allocs_before = alloc_count::this_thread();
        }
        au.data.clear();
        au.data.extend_from_slice(&data[r.clone()]);
        au.index = i as u64;
        dec.decode(&au, &mut |d| {
            let _ = out.push(d);
        })
        .unwrap();
        for d in out.drain(..) {
            frames += 1;
            dec.recycle(d.picture, d.token);
        }
    }
    let allocs = alloc_count::this_thread() - allocs_before;
    assert_eq!(frames, 300);
    assert_eq!(allocs, 0, "allocations on the NVDEC frame path");
}

/// Decode-only throughput (`cargo test --test nvdec -- --ignored bench`): files from
/// `NVDEC_BENCH_FILES` (comma-separated paths), streams from `NVDEC_BENCH_STREAMS`
/// (default "1,16"), display delays from `NVDEC_BENCH_DELAYS` (default "0"), seconds from
/// `NVDEC_BENCH_SECS` (default 5). Prints one `NVDEC_BENCH {json}` line per run and appends
/// it to `NVDEC_BENCH_OUT` if set.
#[test]
#[ignore = "benchmark: needs a GPU and NVDEC_BENCH_FILES"]
fn bench() {
    if !gpu() {
        return;
    }
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let files = var("NVDEC_BENCH_FILES", "");
    let secs: f64 = var("NVDEC_BENCH_SECS", "5").parse().unwrap();
    let mut lines = String::new();
    for f in files.split(',').filter(|s| !s.is_empty()) {
        for delay in var("NVDEC_BENCH_DELAYS", "0").split(',') {
            for n in var("NVDEC_BENCH_STREAMS", "1,16").split(',') {
                let opts = NvdecOptions {
                    max_display_delay: delay.parse().unwrap(),
                    end_of_picture: true,
                };
                let rep = bench_decode_with(
                    f.as_ref(),
                    n.parse().unwrap(),
                    std::time::Duration::from_secs_f64(secs),
                    0,
                    opts,
                )
                .unwrap_or_else(|e| panic!("{f}: {e}"));
                let line = format!("NVDEC_BENCH {}\n", serde_json::to_string(&rep).unwrap());
                print!("{line}");
                lines.push_str(&line);
            }
        }
    }
    if let Ok(p) = std::env::var("NVDEC_BENCH_OUT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        f.write_all(lines.as_bytes()).unwrap();
    }
}
