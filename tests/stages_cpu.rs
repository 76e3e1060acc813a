//! The CPU chain on real footage: NV12 frames of TUD-Campus (decoded with ffmpeg here, since
//! the decoder is tested elsewhere) → CPU preprocess → ONNX Runtime → CPU postprocess, checked
//! against the MOT15 ground truth; and zero Rust allocations per frame in steady state.
#![cfg(feature = "ort")]

use std::path::{Path, PathBuf};
use std::process::Command;

use jetwatch::alloc_count::{self, CountingAlloc};
use jetwatch::config::ModelConfig;
use jetwatch::engine::ort::{OrtEngine, OrtOptions};
use jetwatch::engine::Engine;
use jetwatch::frame::{ColourDesc, HostNv12, Picture};
use jetwatch::postprocess::cpu::CpuPostprocess;
use jetwatch::postprocess::{DetectionList, Postprocess, PostprocessOptions};
use jetwatch::preprocess::cpu::CpuPreprocess;
use jetwatch::preprocess::{Letterbox, Preprocess, PreprocessJob};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn shared() -> PathBuf {
    jetwatch::assets::shared_dir().expect(
        "shared test data not found: set JETWATCH_SHARED to the folder holding models/ and media/",
    )
}

/// The first `n` frames of TUD-Campus (640×480) as host NV12 pictures (pitch = width).
fn tud_frames(n: usize) -> Vec<Picture> {
    let clip = shared().join("media/TUD-Campus_h264.mp4");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&clip)
        .args([
            "-frames:v",
            &n.to_string(),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "nv12",
            "-",
        ])
        .output()
        .expect("ffmpeg is installed (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (w, h) = (640usize, 480usize);
    let frame = w * h * 3 / 2;
    assert_eq!(out.stdout.len(), n * frame);
    out.stdout
        .chunks_exact(frame)
        .map(|raw| {
            let mut p = HostNv12::with_capacity(w as u32, h as u32);
            assert!(p.set_size(w as u32, h as u32));
            let pitch = p.pitch;
            let (luma, chroma) = p.planes_mut();
            for r in 0..h {
                luma[r * pitch..r * pitch + w].copy_from_slice(&raw[r * w..(r + 1) * w]);
            }
            for r in 0..h / 2 {
                let src = &raw[w * h + r * w..w * h + (r + 1) * w];
                chroma[r * pitch..r * pitch + w].copy_from_slice(src);
            }
            Picture::Host(p)
        })
        .collect()
}

/// Ground-truth boxes (x0, y0, x1, y1) of 1-based gt frame `k`.
fn gt(k: usize) -> Vec<[f32; 4]> {
    let text = std::fs::read_to_string(shared().join("media/gt/TUD-Campus/gt.txt")).unwrap();
    text.lines()
        .filter_map(|l| {
            let v: Vec<f32> = l.split(',').map(|x| x.trim().parse().unwrap()).collect();
            (v[0] as usize == k && v[6] != 0.0).then(|| [v[2], v[3], v[2] + v[4], v[3] + v[5]])
        })
        .collect()
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

/// One-to-one greedy matching by score at IoU ≥ 0.5: (matched, detections, gt).
fn matched(dets: &DetectionList, gt: &[[f32; 4]]) -> (usize, usize, usize) {
    let mut used = vec![false; gt.len()];
    let mut m = 0;
    let people: Vec<_> = dets.iter().filter(|d| d.class == 0).collect();
    for d in &people {
        let b = [d.x0, d.y0, d.x1, d.y1];
        let best = (0..gt.len())
            .filter(|&i| !used[i])
            .map(|i| (i, iou(&b, &gt[i])))
            .max_by(|x, y| x.1.total_cmp(&y.1));
        if let Some((i, v)) = best {
            if v >= 0.5 {
                used[i] = true;
                m += 1;
            }
        }
    }
    (m, people.len(), gt.len())
}

struct Chain {
    pre: CpuPreprocess,
    engine: OrtEngine,
    post: CpuPostprocess,
    lbs: Vec<Letterbox>,
    out: Vec<DetectionList>,
}

impl Chain {
    fn new(model: &str, labels: bool) -> Chain {
        let cfg = ModelConfig {
            path: shared().join("models").join(model),
            labels: labels.then(|| shared().join("models/coco80.txt")),
            ..ModelConfig::default()
        };
        let engine = OrtEngine::load(
            &cfg,
            OrtOptions {
                max_batch: 1,
                threads: 2,
                ..OrtOptions::default()
            },
        )
        .unwrap();
        let info = engine.model().clone();
        let opts = PostprocessOptions {
            score_threshold: cfg.score_threshold,
            iou_threshold: cfg.iou_threshold,
            max_detections: cfg.max_detections,
            class_filter: Vec::new(),
        };
        let post = CpuPostprocess::with_canvas(
            info.head,
            opts,
            1,
            info.preprocess.width,
            info.preprocess.height,
        )
        .unwrap();
        Chain {
            pre: CpuPreprocess::new(info.preprocess),
            engine,
            post,
            lbs: vec![Letterbox::default(); 1],
            out: vec![DetectionList::new(); 1],
        }
    }

    fn frame(&mut self, pic: &Picture) -> &DetectionList {
        let job = PreprocessJob {
            picture: pic,
            colour: ColourDesc::default_for_height(480),
            slot: 0,
        };
        self.pre
            .run(
                std::slice::from_ref(&job),
                self.engine.input_mut(),
                &mut self.lbs,
            )
            .unwrap();
        self.engine.run(1).unwrap();
        self.post
            .run(self.engine.outputs(), &self.lbs, &mut self.out)
            .unwrap();
        &self.out[0]
    }
}

/// Runs the chain over the first frames and checks recall and precision against the gt.
fn check_model(model: &str, labels: bool, frames: &[Picture], min_recall: f32) {
    let mut chain = Chain::new(model, labels);
    let (mut m, mut d, mut g) = (0, 0, 0);
    for (k, pic) in frames.iter().enumerate() {
        let dets = chain.frame(pic);
        for det in dets.iter() {
            assert!(det.x0 >= 0.0 && det.x1 <= 640.0 && det.y0 >= 0.0 && det.y1 <= 480.0);
            assert!(det.x0 < det.x1 && det.y0 < det.y1 && det.score > 0.25);
        }
        let (a, b, c) = matched(dets, &gt(k + 1));
        if k == 0 {
            eprintln!(
                "{model}: frame 1: {a} of {c} gt people matched, {b} person detections: {:?}",
                dets.iter()
                    .filter(|d| d.class == 0)
                    .map(|d| (d.score, d.x0 as i32, d.y0 as i32, d.x1 as i32, d.y1 as i32))
                    .collect::<Vec<_>>()
            );
            assert!(
                a * 3 >= c * 2,
                "{model}: frame 1 matched only {a} of {c} gt boxes"
            );
        }
        m += a;
        d += b;
        g += c;
    }
    let (recall, precision) = (m as f32 / g as f32, m as f32 / d.max(1) as f32);
    eprintln!("{model}: {} frames: recall {recall:.3}, precision {precision:.3} ({m} matched, {d} detections, {g} gt)", frames.len());
    assert!(
        recall >= min_recall,
        "{model}: recall {recall} < {min_recall}"
    );
    assert!(precision >= 0.5, "{model}: precision {precision}");
    assert_eq!(chain.engine.model().labels[0], "person");
}

#[test]
fn cpu_chain_finds_the_people_of_tud_campus() {
    let frames = tud_frames(10);
    // Measured on the first 10 frames (recall / precision): yolov8n fp32 and fp16 0.881 /
    // 0.852, int8 0.864 / 0.850; yolo11n_320 fp32 0.847 / 0.962, int8 0.831 / 0.942;
    // YOLOX-nano 0.831 / 0.636. Floors a little below.
    check_model("yolov8n_fp32.onnx.gz", false, &frames, 0.8);
    check_model("yolov8n_fp16.onnx.gz", false, &frames, 0.8);
    check_model("yolov8n_int8.onnx", false, &frames, 0.8);
    check_model("yolo11n_320_fp32.onnx.gz", false, &frames, 0.75);
    check_model("yolo11n_320_int8.onnx", false, &frames, 0.75);
    check_model("yolox_nano.onnx", true, &frames, 0.75);
}

#[test]
fn cpu_chain_allocates_nothing_per_frame() {
    let frames = tud_frames(4);
    let mut chain = Chain::new("yolo11n_320_fp32.onnx.gz", false);
    for pic in &frames {
        chain.frame(pic);
    }
    let (t0, p0) = (alloc_count::this_thread(), alloc_count::total());
    for i in 0..20 {
        let n = chain.frame(&frames[i % frames.len()]).len();
        assert!(n > 0);
    }
    let (t1, p1) = (alloc_count::this_thread(), alloc_count::total());
    eprintln!("20 frames preprocess+engine+postprocess: {} Rust allocations on this thread, {} process-wide", t1 - t0, p1 - p0);
    assert_eq!(t1 - t0, 0);
}

#[test]
fn picture_size_change_keeps_working_without_allocation() {
    // The preprocess tables are rebuilt for a new source size inside their fixed storage.
    let frames = tud_frames(1);
    let Picture::Host(src) = &frames[0] else {
        unreachable!()
    };
    // The same frame cropped to 320x240 (top-left quarter), in a picture of its own.
    let mut small = HostNv12::with_capacity(320, 240);
    assert!(small.set_size(320, 240));
    let sp = small.pitch;
    {
        let (luma, chroma) = small.planes_mut();
        for r in 0..240 {
            luma[r * sp..r * sp + 320]
                .copy_from_slice(&src.luma()[r * src.pitch..r * src.pitch + 320]);
        }
        for r in 0..120 {
            chroma[r * sp..r * sp + 320]
                .copy_from_slice(&src.chroma()[r * src.pitch..r * src.pitch + 320]);
        }
    }
    let small = Picture::Host(small);
    let mut chain = Chain::new("yolo11n_320_fp32.onnx.gz", false);
    chain.frame(&frames[0]);
    chain.frame(&small);
    let t0 = alloc_count::this_thread();
    for _ in 0..3 {
        chain.frame(&frames[0]);
        let dets = chain.frame(&small);
        assert!(dets.iter().all(|d| d.x1 <= 320.0 && d.y1 <= 240.0));
    }
    assert_eq!(alloc_count::this_thread() - t0, 0);
}

#[test]
fn cpu_preprocess_matches_an_independent_numpy_implementation() {
    use jetwatch::frame::Matrix;
    use jetwatch::preprocess::{ChannelOrder, Placement, PreprocessSpec};
    use jetwatch::tensor::{DType, Tensor, TensorSpec};
    let has_numpy = Command::new("python3")
        .args(["-c", "import numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_numpy {
        eprintln!("python3 with numpy is not available: skipping the cross-check");
        return;
    }
    let frames = tud_frames(1);
    let Picture::Host(p) = &frames[0] else {
        unreachable!()
    };
    let dir = std::env::temp_dir().join(format!("jetwatch-stages-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nv12 = dir.join("frame.nv12");
    let mut packed = Vec::new();
    for r in 0..480 {
        packed.extend_from_slice(&p.luma()[r * p.pitch..r * p.pitch + 640]);
    }
    for r in 0..240 {
        packed.extend_from_slice(&p.chroma()[r * p.pitch..r * p.pitch + 640]);
    }
    std::fs::write(&nv12, &packed).unwrap();
    let cases = [
        (
            640u32,
            640u32,
            Placement::Centre,
            "centre",
            ChannelOrder::Rgb,
            "rgb",
            1.0 / 255.0,
            Matrix::Bt601,
            false,
        ),
        (
            416,
            416,
            Placement::TopLeft,
            "topleft",
            ChannelOrder::Bgr,
            "bgr",
            1.0,
            Matrix::Bt709,
            true,
        ),
        (
            352,
            352,
            Placement::Stretch,
            "stretch",
            ChannelOrder::Rgb,
            "rgb",
            1.0 / 255.0,
            Matrix::Bt709,
            false,
        ),
        (
            320,
            256,
            Placement::Centre,
            "centre",
            ChannelOrder::Bgr,
            "bgr",
            1.0,
            Matrix::Bt601,
            true,
        ),
    ];
    for (sw, sh, placement, pname, order, oname, scale, matrix, full) in cases {
        let out = dir.join("ref.f32");
        let st = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/preprocess_ref.py"))
            .arg(&nv12)
            .args(["640", "480"])
            .arg(&out)
            .args([
                sw.to_string(),
                sh.to_string(),
                pname.to_string(),
                oname.to_string(),
                format!("{scale:e}"),
                if matrix == Matrix::Bt601 {
                    "601"
                } else {
                    "709"
                }
                .to_string(),
                if full { "full" } else { "limited" }.to_string(),
            ])
            .status()
            .unwrap();
        assert!(st.success());
        let want: Vec<f32> = std::fs::read(&out)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let spec = PreprocessSpec {
            width: sw,
            height: sh,
            placement,
            order,
            scale,
            pad: 114.0,
            dtype: DType::F32,
        };
        let mut t = Tensor::host(TensorSpec {
            name: "images".into(),
            dtype: DType::F32,
            shape: vec![1, 3, sh as usize, sw as usize],
        });
        let mut lbs = [Letterbox::default()];
        let job = PreprocessJob {
            picture: &frames[0],
            colour: ColourDesc {
                matrix,
                full_range: full,
            },
            slot: 0,
        };
        CpuPreprocess::new(spec)
            .run(&[job], &mut t, &mut lbs)
            .unwrap();
        let got = t.host_buf().unwrap().as_f32();
        assert_eq!(got.len(), want.len());
        let max = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{sw}x{sh} {pname} {oname} {matrix:?} full={full}: max |twin - numpy| = {max:e}");
        assert!(
            max <= 1e-3 * scale * 255.0,
            "{sw}x{sh} {pname}: max diff {max}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
