//! V4L2 tests against the kernel's own drivers, run inside the test VM built by
//! `tools/vm/run-tests.sh` (vicodec: stateful FWHT encoder + decoder; vivid: a camera).
//! They are `#[ignore]`d on the host (no such devices); the VM runs them with `--ignored`.
//!
//! Pipeline under test: synthetic NV12 frames → vicodec's *encoder* (driven directly through
//! our ioctl layer) → FWHT bitstream → our [`V4l2Decoder`] on vicodec's *decoder* → NV12
//! pictures compared with the originals (PSNR, count, order, timestamps).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jetwatch::decode::v4l2::ioctl::{find_nodes, Device, IoctlProvider, KernelIoctl};
use jetwatch::decode::v4l2::{CodedFormat, V4l2Decoder, V4l2DecoderOptions, V4l2Error};
use jetwatch::decode::{Decoded, Decoder};
use jetwatch::frame::{AccessUnit, Picture};
use jetwatch::source::v4l2::{list_cameras, CameraError, CameraOptions, PixelFormat, V4l2Camera};
use jetwatch_ffi::v4l2 as sys;

const VM: &str = "needs the V4L2 test VM (tools/vm/run-tests.sh)";

fn provider() -> Arc<dyn IoctlProvider> {
    Arc::new(KernelIoctl)
}

fn node(name: &str) -> PathBuf {
    let n = find_nodes(name);
    assert!(
        !n.is_empty(),
        "no V4L2 node named {name:?}: {:?}",
        find_nodes("")
    );
    n[0].0.clone()
}

/// A synthetic NV12 frame: diagonal gradient, a bright box moving 16 px per frame, and a
/// per-frame chroma tint, so neighbouring frames differ clearly.
fn synth(w: usize, h: usize, i: usize) -> Vec<u8> {
    let mut f = vec![0u8; w * h * 3 / 2];
    let bx = (i * 16) % (w - 64);
    for y in 0..h {
        for x in 0..w {
            let inbox = (bx..bx + 64).contains(&x) && (64..128).contains(&y);
            f[y * w + x] = if inbox {
                235
            } else {
                (16 + (x + y) * 200 / (w + h)) as u8
            };
        }
    }
    for y in 0..h / 2 {
        for x in 0..w / 2 {
            f[w * h + y * w + 2 * x] = (128 + (i as i32 * 7 % 60) - 30) as u8;
            f[w * h + y * w + 2 * x + 1] = (128 + (x * 40 / w) as i32 - 20) as u8;
        }
    }
    f
}

fn psnr_luma(orig: &[u8], w: usize, h: usize, pic: &Picture) -> f64 {
    let Picture::Host(p) = pic else {
        panic!("host picture expected")
    };
    let mut se = 0f64;
    for y in 0..h {
        for x in 0..w {
            let d = orig[y * w + x] as f64 - p.buf[y * p.pitch + x] as f64;
            se += d * d;
        }
    }
    let mse = se / (w * h) as f64;
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Encodes NV12 frames with vicodec's stateful encoder; returns one FWHT buffer per frame.
fn encode(frames: &[Vec<u8>], w: u32, h: u32) -> Vec<Vec<u8>> {
    const OUT: u32 = sys::V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE;
    const CAP: u32 = sys::V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE;
    let dev = Device::open(provider(), &node("stateful-encoder")).unwrap();
    // The format holds the coded size (vicodec aligns it); the visible size is the CROP
    // selection of the OUTPUT queue (dev-encoder.rst, "Initialization").
    let of = dev
        .s_fmt_mplane(OUT, w, h, sys::V4L2_PIX_FMT_NV12, 0)
        .unwrap();
    assert!(of.width >= w && of.height >= h, "encoder format {of:?}");
    let crop = dev
        .s_selection(
            OUT,
            sys::V4L2_SEL_TGT_CROP,
            sys::v4l2_rect {
                left: 0,
                top: 0,
                width: w,
                height: h,
            },
        )
        .unwrap();
    assert_eq!((crop.width, crop.height), (w, h));
    let (stride, coded_h) = (of.bytesperline[0] as usize, of.height as usize);
    dev.s_fmt_mplane(CAP, w, h, sys::V4L2_PIX_FMT_FWHT, 0)
        .unwrap();
    let n_out = dev.reqbufs(OUT, sys::V4L2_MEMORY_MMAP, 1).unwrap();
    let n_cap = dev.reqbufs(CAP, sys::V4L2_MEMORY_MMAP, 1).unwrap();
    assert!(n_out >= 1 && n_cap >= 1);
    let mut omap = dev.map(OUT, 0).unwrap();
    let cmap = dev.map(CAP, 0).unwrap();
    dev.streamon(OUT).unwrap();
    dev.streamon(CAP).unwrap();
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        dev.qbuf(CAP, 0, 0, 0, None).unwrap();
        let (wu, hu) = (w as usize, h as usize);
        let dst = omap.as_mut_slice();
        for r in 0..hu {
            dst[r * stride..r * stride + wu].copy_from_slice(&f[r * wu..r * wu + wu]);
        }
        for r in 0..hu / 2 {
            let (d, s) = ((coded_h + r) * stride, wu * hu + r * wu);
            dst[d..d + wu].copy_from_slice(&f[s..s + wu]);
        }
        let used = stride * coded_h * 3 / 2;
        dev.qbuf(OUT, 0, used as u32, i as i64 * 40_000, None)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let d = loop {
            if let Some(d) = dev.dqbuf(CAP, sys::V4L2_MEMORY_MMAP).unwrap() {
                break d;
            }
            assert!(
                Instant::now() < deadline,
                "encoder produced nothing for frame {i}"
            );
            dev.poll(libc::POLLIN, 1000).unwrap();
        };
        out.push(cmap.as_slice()[..d.bytesused as usize].to_vec());
        let deadline = Instant::now() + Duration::from_secs(10);
        while dev.dqbuf(OUT, sys::V4L2_MEMORY_MMAP).unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "encoder kept OUTPUT buffer of frame {i}"
            );
            dev.poll(libc::POLLOUT, 1000).unwrap();
        }
    }
    drop((omap, cmap));
    out
}

fn decoder() -> V4l2Decoder {
    V4l2Decoder::open(
        provider(),
        &node("stateful-decoder"),
        V4l2DecoderOptions {
            format: CodedFormat::Fwht,
            max_width: 1280,
            max_height: 720,
            output_buffers: 2,
            output_buffer_bytes: 2 << 20,
            extra_capture_buffers: 2,
            pool_size: 4,
            wait: Duration::from_secs(5),
            nv_controls: None,
        },
    )
    .unwrap()
}

struct Got {
    size: (u32, u32),
    pts: i64,
    psnr_self: f64,
    best: usize,
}

fn record(
    d: Decoded,
    originals: &[(u32, u32, Vec<u8>)],
    got: &mut Vec<Got>,
    done: &mut Vec<(Picture, u32)>,
) {
    let (w, h) = d.picture.size();
    let idx = (d.pts_us / 40_000) as usize;
    let mut best = (usize::MAX, -1.0);
    for (j, (ow, oh, o)) in originals.iter().enumerate() {
        if (*ow, *oh) == (w, h) {
            let p = psnr_luma(o, w as usize, h as usize, &d.picture);
            if p > best.1 {
                best = (j, p);
            }
        }
    }
    let psnr_self = originals
        .get(idx)
        .filter(|(ow, oh, _)| (*ow, *oh) == (w, h))
        .map(|(_, _, o)| psnr_luma(o, w as usize, h as usize, &d.picture))
        .unwrap_or(0.0);
    got.push(Got {
        size: (w, h),
        pts: d.pts_us,
        psnr_self,
        best: best.0,
    });
    done.push((d.picture, d.token));
}

/// Decodes `bitstream` (pts = index × 40 ms); compares each picture with every original of
/// its size and records the best match.
fn decode_all(
    dec: &mut V4l2Decoder,
    bitstream: &[Vec<u8>],
    originals: &[(u32, u32, Vec<u8>)],
    first: usize,
) -> Vec<Got> {
    let mut got = Vec::new();
    let mut au = AccessUnit::with_capacity(2 << 20);
    let mut done: Vec<(Picture, u32)> = Vec::new();
    for (i, b) in bitstream.iter().enumerate() {
        au.data.clear();
        au.data.extend_from_slice(b);
        au.pts_us = (first + i) as i64 * 40_000;
        au.index = (first + i) as u64;
        dec.decode(&au, &mut |d| record(d, originals, &mut got, &mut done))
            .unwrap();
        for (p, t) in done.drain(..) {
            dec.recycle(p, t);
        }
    }
    dec.flush(&mut |d| record(d, originals, &mut got, &mut done))
        .unwrap();
    for (p, t) in done.drain(..) {
        dec.recycle(p, t);
    }
    got
}

#[test]
#[ignore = "needs the V4L2 test VM (tools/vm/run-tests.sh)"]
fn vicodec_decode_matches_originals_in_order() {
    let _ = VM;
    let (w, h) = (640u32, 360u32);
    let originals: Vec<(u32, u32, Vec<u8>)> = (0..12)
        .map(|i| (w, h, synth(w as usize, h as usize, i)))
        .collect();
    let frames: Vec<Vec<u8>> = originals.iter().map(|o| o.2.clone()).collect();
    let bits = encode(&frames, w, h);
    assert_eq!(bits.len(), 12);
    let mut dec = decoder();
    let got = decode_all(&mut dec, &bits, &originals, 0);
    assert_eq!(got.len(), 12, "every encoded frame decodes exactly once");
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.size, (w, h));
        assert_eq!(
            g.pts,
            i as i64 * 40_000,
            "timestamps copied through, in order"
        );
        assert!(g.psnr_self >= 28.0, "frame {i}: PSNR {:.1} dB", g.psnr_self);
        assert_eq!(g.best, i, "frame {i} resembles original {} most", g.best);
    }
    println!(
        "vicodec: 12 frames, min PSNR {:.1} dB",
        got.iter().map(|g| g.psnr_self).fold(f64::MAX, f64::min)
    );
    assert_eq!(dec.stats().pictures, 12);
}

#[test]
#[ignore = "needs the V4L2 test VM (tools/vm/run-tests.sh)"]
fn vicodec_resolution_change_mid_stream() {
    let mut originals = Vec::new();
    for i in 0..5 {
        originals.push((640u32, 360u32, synth(640, 360, i)));
    }
    for i in 5..10 {
        originals.push((800u32, 480u32, synth(800, 480, i)));
    }
    let a: Vec<Vec<u8>> = originals[..5].iter().map(|o| o.2.clone()).collect();
    let b: Vec<Vec<u8>> = originals[5..].iter().map(|o| o.2.clone()).collect();
    let mut bits = encode(&a, 640, 360);
    bits.extend(encode(&b, 800, 480));
    let mut dec = decoder();
    let got = decode_all(&mut dec, &bits, &originals, 0);
    assert_eq!(got.len(), 10);
    for (i, g) in got.iter().enumerate() {
        let want = if i < 5 { (640, 360) } else { (800, 480) };
        assert_eq!(g.size, want, "frame {i}");
        assert_eq!(g.best, i);
        assert!(g.psnr_self >= 28.0, "frame {i}: {:.1} dB", g.psnr_self);
    }
    assert_eq!(dec.resolution_changes(), 1);
    assert_eq!(dec.picture_size(), Some((800, 480)));
}

#[test]
#[ignore = "needs the V4L2 test VM (tools/vm/run-tests.sh)"]
fn vicodec_drain_then_resume() {
    let originals: Vec<(u32, u32, Vec<u8>)> =
        (0..8).map(|i| (640, 360, synth(640, 360, i))).collect();
    let frames: Vec<Vec<u8>> = originals.iter().map(|o| o.2.clone()).collect();
    // Two sequences, as after a drain at the end of a file and a loop back to its start:
    // the second starts with its own key frame.
    let mut bits = encode(&frames[..4], 640, 360);
    bits.extend(encode(&frames[4..], 640, 360));
    let mut dec = decoder();
    let first = decode_all(&mut dec, &bits[..4], &originals, 0);
    assert_eq!(first.len(), 4, "drain returns every pending picture");
    assert_eq!(dec.phase(), jetwatch::decode::v4l2::Phase::Stopped);
    // Resume after the drain (V4L2_DEC_CMD_START) with the rest of the stream.
    let second = decode_all(&mut dec, &bits[4..], &originals, 4);
    assert_eq!(second.len(), 4);
    for (k, g) in second.iter().enumerate() {
        assert_eq!(g.pts, (4 + k) as i64 * 40_000);
        assert_eq!(g.best, 4 + k);
    }
    // A second flush with nothing pending completes at once.
    let t = Instant::now();
    dec.flush(&mut |_| panic!("no picture expected")).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
#[ignore = "needs the V4L2 test VM (tools/vm/run-tests.sh)"]
fn vicodec_garbage_gives_errors_not_hangs() {
    let mut dec = decoder();
    let mut au = AccessUnit::with_capacity(1 << 20);
    let mut seed = 0x1234_5678u32;
    let t = Instant::now();
    for i in 0..6 {
        au.data.clear();
        for _ in 0..50_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            au.data.push(seed as u8);
        }
        au.pts_us = i * 40_000;
        dec.decode(&au, &mut |_| panic!("garbage produced a picture"))
            .unwrap();
    }
    let e = dec
        .flush(&mut |_| panic!("garbage produced a picture"))
        .unwrap_err();
    println!("garbage: {e}");
    assert!(
        matches!(e, jetwatch::error::DecodeError::Corrupt { .. }),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(20), "bounded waits");

    // An oversized access unit is a typed error naming the sizes.
    let mut dec = decoder();
    let big = vec![0u8; 3 << 20];
    let e = dec.feed(&big, 0, &mut |_| {}).unwrap_err();
    assert!(
        matches!(e, V4l2Error::AuTooLarge { size, .. } if size == 3 << 20),
        "{e}"
    );
}

#[test]
#[ignore = "needs the V4L2 test VM (tools/vm/run-tests.sh)"]
fn vicodec_truncated_stream_decodes_valid_frames_then_drains() {
    let originals: Vec<(u32, u32, Vec<u8>)> =
        (0..4).map(|i| (640, 360, synth(640, 360, i))).collect();
    let frames: Vec<Vec<u8>> = originals.iter().map(|o| o.2.clone()).collect();
    let mut bits = encode(&frames, 640, 360);
    // Cut the last frame in half: the decoder must not hang waiting for the rest.
    let l = bits[3].len();
    bits[3].truncate(l / 2);
    let mut dec = decoder();
    let t = Instant::now();
    let mut au = AccessUnit::with_capacity(2 << 20);
    let mut n = 0;
    let mut back = Vec::new();
    for (i, b) in bits.iter().enumerate() {
        au.data.clear();
        au.data.extend_from_slice(b);
        au.pts_us = i as i64 * 40_000;
        dec.decode(&au, &mut |d| {
            n += 1;
            back.push((d.picture, d.token));
        })
        .unwrap();
        for (p, t) in back.drain(..) {
            dec.recycle(p, t);
        }
    }
    let r = dec.flush(&mut |d| {
        n += 1;
        back.push((d.picture, d.token));
    });
    println!(
        "truncated: {n} pictures, flush {:?}",
        r.as_ref().map_err(|e| e.to_string())
    );
    assert!(n >= 3, "the three complete frames decode ({n})");
    assert!(t.elapsed() < Duration::from_secs(20));
}

fn vivid_capture_path() -> PathBuf {
    node("vivid-000-vid-cap")
}

#[test]
#[ignore = "needs the V4L2 test VM (tools/vm/run-tests.sh)"]
fn vivid_listed_and_captures_every_supported_format() {
    let cams = list_cameras();
    let vivid = cams
        .iter()
        .find(|c| c.driver == "vivid")
        .unwrap_or_else(|| panic!("vivid not listed: {cams:?}"));
    let offered: Vec<PixelFormat> = vivid.formats.iter().filter_map(|f| f.supported).collect();
    println!(
        "vivid offers {} formats; jetwatch-supported: {offered:?}",
        vivid.formats.len()
    );
    assert!(offered.contains(&PixelFormat::Yuyv) && offered.contains(&PixelFormat::Nv12));
    for fmt in offered {
        let mut opts = CameraOptions::new(vivid_capture_path());
        opts.formats = vec![fmt];
        opts.width = 640;
        opts.height = 480;
        let mut cam = V4l2Camera::open(opts).unwrap();
        let (pf, pix) = cam.format();
        assert_eq!(pf, fmt);
        let mut last: Option<(u32, i64)> = None;
        for _ in 0..5 {
            let (seq, ts, len, mono, data_ok) = cam
                .next_frame(|f| {
                    let ok = match f.format {
                        PixelFormat::Yuyv => f.data.len() >= (f.bytesperline * f.height) as usize,
                        PixelFormat::Nv12 => {
                            f.data.len() >= (f.bytesperline * f.height * 3 / 2) as usize
                        }
                        PixelFormat::Mjpeg => f.data.starts_with(&[0xff, 0xd8]),
                    };
                    (f.sequence, f.timestamp_us, f.data.len(), f.monotonic, ok)
                })
                .unwrap();
            assert!(data_ok, "{fmt:?}: {len} bytes for {pix:?}");
            assert!(mono, "vivid stamps CLOCK_MONOTONIC");
            if let Some((s, t)) = last {
                assert!(seq > s, "sequence increases");
                assert!(ts > t, "timestamps increase");
            }
            last = Some((seq, ts));
        }
        println!("vivid {fmt:?} {}x{} ok", pix.width, pix.height);
    }
}

#[test]
#[ignore = "needs the V4L2 test VM (tools/vm/run-tests.sh)"]
fn vivid_survives_close_reopen_and_reports_disconnect() {
    let path = vivid_capture_path();
    let mut opts = CameraOptions::new(path.clone());
    opts.width = 320;
    opts.height = 240;
    opts.frame_timeout = Duration::from_secs(3);
    let mut cam = V4l2Camera::open(opts).unwrap();
    cam.next_frame(|_| ()).unwrap();
    // Reconnect while the node exists: the stream resumes.
    cam.reconnect().unwrap();
    cam.next_frame(|_| ()).unwrap();
    assert_eq!(cam.reconnects(), 1);

    // Pull the plug with vivid's "Disconnect" button control (VIVID_CID_DISCONNECT). vivid
    // unregisters its nodes and re-registers them once its last user closes (vivid-core.c,
    // vivid_fop_release): `hold` plays another program still holding the camera.
    let hold = Device::open(provider(), &path).unwrap();
    hold.s_ctrl(0x00f0_f000 + 65, 0).unwrap();
    let t = Instant::now();
    let mut err = None;
    for _ in 0..5 {
        match cam.next_frame(|_| ()) {
            Ok(()) => continue,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let e = err.expect("capture kept working after the disconnect");
    println!("disconnect: {e}");
    assert!(matches!(e, CameraError::Disconnected { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!cam.is_connected());
    // Still unplugged (another user holds vivid): reconnect fails cleanly and promptly.
    let e = cam.reconnect().unwrap_err();
    println!("reconnect while unplugged: {e}");
    assert!(matches!(e, CameraError::Disconnected { .. }), "{e}");
    assert!(matches!(
        cam.next_frame(|_| ()),
        Err(CameraError::Disconnected { .. })
    ));
    // Replug: the last other user closes, vivid re-registers, the camera comes back.
    drop(hold);
    cam.reconnect().unwrap();
    let seq = cam.next_frame(|f| f.sequence).unwrap();
    println!("reconnected, frame sequence {seq}");
    assert_eq!(cam.reconnects(), 2);
}

/// DMABUF capture buffers for the decoder, exported (`VIDIOC_EXPBUF`) from vim2m's MMAP
/// capture buffers: the same import path the Jetson build uses with NvBufSurface fds. In this
/// test allocator the picture's `luma`/`chroma` fields carry the buffer index (there is no
/// CUDA here) — set number in the high 32 bits; the test reads the decoded pixels through vim2m's mapping of the same memory.
mod dmabuf {
    use super::*;
    use jetwatch::decode::v4l2::ioctl::{Mapping, PlaneFormat};
    use jetwatch::decode::v4l2::{CaptureAllocator, CaptureBuffers};
    use jetwatch::frame::DeviceNv12;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::sync::Mutex;

    pub type Shared = Arc<Mutex<Vec<(u32, u32, Vec<Mapping>)>>>;

    pub struct Vim2m {
        pub sets: Shared,
    }

    struct Set {
        _dev: Device,
        _fds: Vec<OwnedFd>,
        planes: Vec<[(RawFd, u32); 1]>,
        pitch: usize,
        set_no: u64,
    }

    impl CaptureBuffers for Set {
        fn count(&self) -> u32 {
            self.planes.len() as u32
        }
        fn planes(&self, index: u32) -> &[(RawFd, u32)] {
            &self.planes[index as usize]
        }
        fn picture(&self, index: u32, width: u32, height: u32) -> Picture {
            Picture::Device(DeviceNv12 {
                luma: (self.set_no << 32) | index as u64,
                chroma: (self.set_no << 32) | index as u64,
                pitch: self.pitch,
                width,
                height,
                device: u32::MAX,
            })
        }
    }

    impl CaptureAllocator for Vim2m {
        fn pixelformat(&self) -> u32 {
            sys::V4L2_PIX_FMT_NV12
        }
        fn allocate(
            &mut self,
            fmt: &PlaneFormat,
            count: u32,
        ) -> Result<Box<dyn CaptureBuffers>, String> {
            const VCAP: u32 = sys::V4L2_BUF_TYPE_VIDEO_CAPTURE;
            let dev = Device::open(provider(), &node("vim2m")).map_err(|e| e.to_string())?;
            let f = dev
                .s_fmt(VCAP, 640, 480, sys::fourcc(b"RGB3"))
                .map_err(|e| e.to_string())?;
            if f.sizeimage < fmt.sizeimage[0] {
                return Err(format!(
                    "vim2m buffers of {} bytes < {}",
                    f.sizeimage, fmt.sizeimage[0]
                ));
            }
            let n = dev
                .reqbufs(VCAP, sys::V4L2_MEMORY_MMAP, count)
                .map_err(|e| e.to_string())?;
            let mut fds = Vec::new();
            let mut maps = Vec::new();
            let mut planes = Vec::new();
            for i in 0..n {
                maps.push(dev.map(VCAP, i).map_err(|e| e.to_string())?);
                let fd = dev.expbuf(VCAP, i, 0).map_err(|e| e.to_string())?;
                planes.push([(fd.as_raw_fd(), f.sizeimage)]);
                fds.push(fd);
            }
            let mut sets = self.sets.lock().unwrap();
            let set_no = sets.len() as u64;
            sets.push((fmt.bytesperline[0], fmt.height, maps));
            Ok(Box::new(Set {
                _dev: dev,
                _fds: fds,
                planes,
                pitch: fmt.bytesperline[0] as usize,
                set_no,
            }))
        }
    }
}

#[test]
#[ignore = "needs the V4L2 test VM (tools/vm/run-tests.sh)"]
fn vicodec_dmabuf_capture_zero_copy_with_resolution_change() {
    let mut originals = Vec::new();
    for i in 0..6 {
        originals.push((640u32, 360u32, synth(640, 360, i)));
    }
    for i in 6..10 {
        originals.push((640u32, 480u32, synth(640, 480, i)));
    }
    let a: Vec<Vec<u8>> = originals[..6].iter().map(|o| o.2.clone()).collect();
    let b: Vec<Vec<u8>> = originals[6..].iter().map(|o| o.2.clone()).collect();
    let mut bits = encode(&a, 640, 360);
    bits.extend(encode(&b, 640, 480));
    let sets: dmabuf::Shared = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut dec = V4l2Decoder::open_with_capture(
        provider(),
        &node("stateful-decoder"),
        V4l2DecoderOptions {
            format: CodedFormat::Fwht,
            max_width: 1280,
            max_height: 720,
            output_buffers: 2,
            output_buffer_bytes: 2 << 20,
            extra_capture_buffers: 2,
            pool_size: 0,
            wait: Duration::from_secs(5),
            nv_controls: None,
        },
        Some(Box::new(dmabuf::Vim2m { sets: sets.clone() })),
    )
    .unwrap();
    // Each picture is checked while it is downstream, then recycled — except picture 5 (the
    // last of the first size), held across the resolution change and recycled at the end.
    let mut seen = Vec::new();
    let mut held_back = None;
    let mut handle = |d: Decoded, dec: &mut V4l2Decoder, seen: &mut Vec<(u32, u32, f64, i64)>| {
        let Picture::Device(p) = &d.picture else {
            panic!("device picture expected")
        };
        let idx = (d.pts_us / 40_000) as usize;
        let (ow, oh, o) = &originals[idx];
        assert_eq!((p.width, p.height), (*ow, *oh), "picture {idx}");
        let sets = sets.lock().unwrap();
        let (pitch, _, maps) = &sets[(p.luma >> 32) as usize];
        let buf = maps[(p.luma & 0xffff_ffff) as usize].as_slice();
        let mut se = 0f64;
        for y in 0..*oh as usize {
            for x in 0..*ow as usize {
                let dlt = o[y * *ow as usize + x] as f64 - buf[y * *pitch as usize + x] as f64;
                se += dlt * dlt;
            }
        }
        let mse = se / (*ow * *oh) as f64;
        let psnr = if mse == 0.0 {
            99.0
        } else {
            10.0 * (65025.0 / mse).log10()
        };
        seen.push((p.width, p.height, psnr, d.pts_us));
        drop(sets);
        if idx == 5 {
            held_back = Some((d.picture, d.token));
        } else {
            dec.recycle(d.picture, d.token);
        }
    };
    let mut au = AccessUnit::with_capacity(2 << 20);
    let mut pending = Vec::new();
    for (i, bs) in bits.iter().enumerate() {
        au.data.clear();
        au.data.extend_from_slice(bs);
        au.pts_us = i as i64 * 40_000;
        dec.decode(&au, &mut |d| pending.push(d)).unwrap();
        for d in pending.drain(..) {
            handle(d, &mut dec, &mut seen);
        }
    }
    dec.flush(&mut |d| pending.push(d)).unwrap();
    for d in pending.drain(..) {
        handle(d, &mut dec, &mut seen);
    }
    assert_eq!(seen.len(), 10, "{seen:?}");
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.3, i as i64 * 40_000);
        assert!(s.2 >= 28.0, "picture {i}: {:.1} dB", s.2);
    }
    assert_eq!(dec.resolution_changes(), 1);
    assert_eq!(
        dec.device_pictures_outstanding(),
        1,
        "picture 5 is still downstream"
    );
    let (p, t) = held_back.expect("picture 5 held");
    dec.recycle(p, t);
    assert_eq!(dec.device_pictures_outstanding(), 0);
    println!(
        "dmabuf: 10 pictures, min PSNR {:.1} dB",
        seen.iter().map(|s| s.2).fold(f64::MAX, f64::min)
    );
}
