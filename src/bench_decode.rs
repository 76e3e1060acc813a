//! Decode-only benchmark: N threads, each with its own [`NvdecDecoder`], decode the same
//! Annex-B file in a loop; every picture is mapped and unmapped at once (as the pipeline does
//! after preprocess). Reports total and per-stream fps, process CPU time per frame and Rust
//! allocations per frame.
//!
//! The file is split into access units once at start-up by [`split_access_units`], a minimal
//! Annex-B splitter kept here because `source::file` is not available on this branch yet;
//! the pipeline's sources replace it once merged. Timing: all decoders are created and warmed
//! up before a barrier; the measured window runs from the barrier until every stream has
//! finished the access unit in hand after the deadline (a second barrier, before the decoders
//! are torn down), on the monotonic clock; CPU time is `getrusage(RUSAGE_SELF)` user + system
//! over the same window.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::decode::nvdec::{NvdecDecoder, NvdecOptions};
use crate::decode::{Decoded, Decoder};
use crate::error::DecodeError;
use crate::frame::{AccessUnit, Codec, ColourDesc, StreamInfo};

/// Access units decoded per stream before the measured window starts.
const WARMUP_AUS: usize = 30;
/// Pool size per decoder (pictures mapped at once; the bench holds one at a time).
const POOL: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum DecodeBenchError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("stream {stream}: {source}")]
    Decode {
        stream: usize,
        #[source]
        source: DecodeError,
    },
}

/// Result of [`bench_decode`]; serialisable for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeBenchReport {
    pub file: String,
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    pub access_units_in_file: usize,
    pub streams: usize,
    pub max_display_delay: u32,
    pub gpu: u32,
    /// Length of the measured window.
    pub seconds: f64,
    pub frames: u64,
    pub fps_total: f64,
    pub fps_per_stream: Vec<f64>,
    /// Process CPU time (user + system) over the window divided by frames.
    pub cpu_ms_per_frame: f64,
    /// Rust allocations per frame over the window; `None` when the counting allocator
    /// (`alloc_count::CountingAlloc`) is not installed as the global allocator.
    pub allocations_per_frame: Option<f64>,
    pub corrupt: u64,
    pub dropped: u64,
}

/// Byte ranges of the access units of an Annex-B H.264 or H.265 stream.
///
/// A new access unit starts (H.264 7.4.1.2.3, H.265 7.4.2.4.4) at an AUD, parameter set or
/// prefix SEI that follows a VCL NAL unit of the current one, or at a VCL NAL unit whose first
/// slice flag is set (H.264: `first_mb_in_slice == 0`, i.e. the first bit of the slice header
/// is 1; H.265: `first_slice_segment_in_pic_flag`).
pub fn split_access_units(data: &[u8], codec: Codec) -> Vec<std::ops::Range<usize>> {
    // NAL start positions (index of the byte after the start code) and the start-code begin.
    let mut nals: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let sc = if i > 0 && data[i - 1] == 0 { i - 1 } else { i };
            nals.push((sc, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut aus = Vec::new();
    let mut au_start: Option<usize> = None;
    let mut seen_vcl = false;
    for &(sc, p) in &nals {
        let Some(&h0) = data.get(p) else { break };
        let (is_vcl, first_slice, starts_new) = match codec {
            Codec::H264 => {
                let t = h0 & 0x1f;
                let vcl = (1..=5).contains(&t);
                let first = vcl && data.get(p + 1).is_some_and(|b| b & 0x80 != 0);
                (vcl, first, matches!(t, 6..=9 | 14..=18))
            }
            Codec::H265 => {
                let t = (h0 >> 1) & 0x3f;
                let vcl = t < 32;
                let first = vcl && data.get(p + 2).is_some_and(|b| b & 0x80 != 0);
                (vcl, first, matches!(t, 32..=35 | 39 | 41..=44 | 48..=55))
            }
        };
        let boundary = (seen_vcl && (starts_new || first_slice)) || au_start.is_none();
        if boundary {
            if let Some(s) = au_start {
                aus.push(s..sc);
            }
            au_start = Some(sc);
            seen_vcl = false;
        }
        if is_vcl {
            seen_vcl = true;
        }
    }
    if let Some(s) = au_start {
        if seen_vcl {
            aus.push(s..data.len());
        }
    }
    aus
}

/// Codec from the file name: `.h264`/`.264` or `.h265`/`.265`/`.hevc`.
pub fn codec_from_path(path: &Path) -> Option<Codec> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "h264" | "264" => Some(Codec::H264),
        "h265" | "265" | "hevc" => Some(Codec::H265),
        _ => None,
    }
}

fn cpu_time() -> Duration {
    jetwatch_ffi::os::process_cpu_time()
}

/// True when the counting allocator is the global allocator (an allocation is seen).
fn counting_allocator_installed() -> bool {
    let before = crate::alloc_count::total();
    let b = std::hint::black_box(Box::new(0u64));
    drop(b);
    crate::alloc_count::total() != before
}

struct StreamResult {
    frames: u64,
    corrupt: u64,
    dropped: u64,
    size: (u32, u32),
}

/// Decodes `path` (Annex-B H.264/H.265) on `streams` threads for `duration` on CUDA device
/// `gpu`, in low-latency mode (display delay 0).
pub fn bench_decode(
    path: &Path,
    streams: usize,
    duration: Duration,
    gpu: u32,
) -> Result<DecodeBenchReport, DecodeBenchError> {
    bench_decode_with(path, streams, duration, gpu, NvdecOptions::default())
}

/// As [`bench_decode`], with explicit parser options (e.g. a display delay of 2..4 for
/// throughput).
pub fn bench_decode_with(
    path: &Path,
    streams: usize,
    duration: Duration,
    gpu: u32,
    options: NvdecOptions,
) -> Result<DecodeBenchReport, DecodeBenchError> {
    let codec = codec_from_path(path).ok_or_else(|| DecodeBenchError::Format {
        path: path.into(),
        msg: "unknown extension: expected an Annex-B .h264/.264 or .h265/.265/.hevc file".into(),
    })?;
    let data = std::fs::read(path).map_err(|source| DecodeBenchError::Io {
        path: path.into(),
        source,
    })?;
    let aus = split_access_units(&data, codec);
    if aus.is_empty() {
        return Err(DecodeBenchError::Format {
            path: path.into(),
            msg: "no access units found (not an Annex-B stream?)".into(),
        });
    }
    let max_au = aus.iter().map(|r| r.len()).max().unwrap_or(0);
    let data = Arc::new(data);
    let aus = Arc::new(aus);
    let streams = streams.max(1);
    let barrier = Arc::new(Barrier::new(streams + 1));
    let done = Arc::new(Barrier::new(streams + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let info = StreamInfo {
        codec,
        width: 0,
        height: 0,
        fps: None,
        colour: ColourDesc::default(),
    };

    let mut handles = Vec::with_capacity(streams);
    for s in 0..streams {
        let (data, aus, barrier, done, stop, info) = (
            data.clone(),
            aus.clone(),
            barrier.clone(),
            done.clone(),
            stop.clone(),
            info.clone(),
        );
        let h = std::thread::Builder::new()
            .name(format!("bench-dec{s}"))
            .spawn(move || -> Result<StreamResult, DecodeBenchError> {
                let fail = |source| DecodeBenchError::Decode { stream: s, source };
                // The decoder outlives the measured window: it is dropped (slow: the driver
                // frees its surfaces) only after the `done` barrier.
                let mut holder: Option<NvdecDecoder> = None;
                let result = 'body: {
                    let dec =
                        match NvdecDecoder::with_options(&info, gpu, POOL, 3840, 2160, options) {
                            Ok(d) => holder.insert(d),
                            Err(e) => {
                                barrier.wait();
                                break 'body Err(fail(e));
                            }
                        };
                    let mut au = AccessUnit::with_capacity(max_au);
                    let mut out: heapless::Vec<Decoded, 64> = heapless::Vec::new();
                    let mut size = (0, 0);
                    let mut k = 0usize;
                    let mut frames = 0u64;
                    let mut step =
                        |dec: &mut NvdecDecoder, k: &mut usize| -> Result<u64, DecodeError> {
                            let r = aus[*k % aus.len()].clone();
                            au.data.clear();
                            au.data.extend_from_slice(&data[r]);
                            au.index = *k as u64;
                            au.pts_us = *k as i64 * 33_333;
                            *k += 1;
                            let res = dec.decode(&au, &mut |d| {
                                // Capacity 64 ≥ pool size: never full.
                                let _ = out.push(d);
                            });
                            let n = out.len() as u64;
                            for d in out.drain(..) {
                                size = d.picture.size();
                                dec.recycle(d.picture, d.token);
                            }
                            match res {
                                Ok(()) | Err(DecodeError::Corrupt { .. }) => Ok(n),
                                Err(e) => Err(e),
                            }
                        };
                    let mut warm_err = None;
                    for _ in 0..WARMUP_AUS {
                        if let Err(e) = step(dec, &mut k) {
                            warm_err = Some(e);
                            break;
                        }
                    }
                    barrier.wait();
                    if let Some(e) = warm_err {
                        break 'body Err(fail(e));
                    }
                    let before = dec.stats();
                    while !stop.load(Ordering::Relaxed) {
                        match step(dec, &mut k) {
                            Ok(n) => frames += n,
                            Err(e) => break 'body Err(fail(e)),
                        }
                    }
                    let after = dec.stats();
                    Ok(StreamResult {
                        frames,
                        corrupt: after.corrupt - before.corrupt,
                        dropped: after.dropped_pool_empty - before.dropped_pool_empty,
                        size,
                    })
                };
                done.wait();
                drop(holder);
                result
            })
            .map_err(|source| DecodeBenchError::Io {
                path: path.into(),
                source,
            })?;
        handles.push(h);
    }

    let counting = counting_allocator_installed();
    barrier.wait();
    let t0 = Instant::now();
    let cpu0 = cpu_time();
    let alloc0 = crate::alloc_count::total();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    // Every stream finishes the access unit in hand (and counts it), then waits here: the
    // window ends before decoder teardown, which is neither timed nor charged as CPU.
    done.wait();
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu0);
    let allocs = crate::alloc_count::total() - alloc0;
    let mut results = Vec::with_capacity(streams);
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(DecodeBenchError::Format {
                    path: path.into(),
                    msg: "a decode thread panicked".into(),
                });
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let frames: u64 = results.iter().map(|r| r.frames).sum();
    let per_frame = |x: f64| if frames > 0 { x / frames as f64 } else { 0.0 };
    let (width, height) = results.first().map(|r| r.size).unwrap_or((0, 0));
    Ok(DecodeBenchReport {
        file: path.display().to_string(),
        codec,
        width,
        height,
        access_units_in_file: aus.len(),
        streams,
        max_display_delay: options.max_display_delay,
        gpu,
        seconds,
        frames,
        fps_total: frames as f64 / seconds,
        fps_per_stream: results.iter().map(|r| r.frames as f64 / seconds).collect(),
        cpu_ms_per_frame: per_frame(cpu.as_secs_f64() * 1e3),
        // The main thread's sleep and joins allocate nothing inside the window except the
        // result collection (pre-sized), so this is the decode threads' count.
        allocations_per_frame: counting.then(|| per_frame(allocs as f64)),
        corrupt: results.iter().map(|r| r.corrupt).sum(),
        dropped: results.iter().map(|r| r.dropped).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(name: &str) -> Option<Vec<u8>> {
        let dir = std::env::var_os("JETWATCH_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
        std::fs::read(dir.join("media").join(name)).ok()
    }

    /// Frame counts from ../shared/media/README.md (ffprobe -count_frames).
    #[test]
    fn splitter_counts_match_media_readme() {
        let cases = [
            ("TUD-Campus.h264", Codec::H264, 71),
            ("TUD-Campus.h265", Codec::H265, 71),
            ("bikes.h264", Codec::H264, 250),
            ("car-detection.h265", Codec::H265, 377),
            ("one-by-one-person-detection.h264", Codec::H264, 1394),
            ("cam1080.h264", Codec::H264, 300),
        ];
        let mut checked = 0;
        for (name, codec, frames) in cases {
            let Some(data) = media(name) else {
                eprintln!("SKIP {name}: ../shared/media not found (set JETWATCH_SHARED)");
                continue;
            };
            let aus = split_access_units(&data, codec);
            assert_eq!(aus.len(), frames, "{name}");
            // Contiguous and covering the file.
            assert_eq!(aus[0].start, 0, "{name}");
            assert_eq!(aus.last().unwrap().end, data.len(), "{name}");
            assert!(aus.windows(2).all(|w| w[0].end == w[1].start), "{name}");
            checked += 1;
        }
        if checked == 0 {
            eprintln!("SKIP: no media found");
        }
    }

    #[test]
    fn splitter_handles_garbage_and_empty() {
        assert!(split_access_units(&[], Codec::H264).is_empty());
        assert!(split_access_units(&[0, 0, 1], Codec::H265).is_empty());
        // Two H.264 IDR slices with first_mb_in_slice = 0 → two access units.
        let s = [0, 0, 0, 1, 0x65, 0x88, 1, 2, 0, 0, 1, 0x65, 0x88, 3];
        assert_eq!(split_access_units(&s, Codec::H264), vec![0..8, 8..14]);
        // Second slice of the same picture (first_mb_in_slice != 0: first bit 0) → one AU.
        let s = [0, 0, 0, 1, 0x65, 0x88, 1, 2, 0, 0, 1, 0x65, 0x08, 3];
        assert_eq!(split_access_units(&s, Codec::H264), vec![0..14]);
    }

    #[test]
    fn codec_from_extension() {
        assert_eq!(codec_from_path(Path::new("a.h264")), Some(Codec::H264));
        assert_eq!(codec_from_path(Path::new("a.HEVC")), Some(Codec::H265));
        assert_eq!(codec_from_path(Path::new("a.mp4")), None);
    }
}
