//! ONNX Runtime engine on the real shared models: loading, layout recognition, runs, errors,
//! dynamic batch, and zero Rust allocations per run.
//!
//! Needs `libonnxruntime.so` (`pip install onnxruntime`, or ORT_DYLIB_PATH) and the shared
//! test data (`JETWATCH_SHARED`, default `../shared` next to the repository).
#![cfg(feature = "ort")]

use std::path::{Path, PathBuf};
use std::process::Command;

use jetwatch::alloc_count::{self, CountingAlloc};
use jetwatch::config::ModelConfig;
use jetwatch::engine::ort::{
    locate_onnxruntime, probe_onnxruntime, OrtDevice, OrtEngine, OrtOptions,
};
use jetwatch::engine::Engine;
use jetwatch::error::{EngineError, ErrorKind};
use jetwatch::postprocess::HeadKind;
use jetwatch::preprocess::{ChannelOrder, Placement};
use jetwatch::tensor::DType;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn shared() -> PathBuf {
    jetwatch::assets::shared_dir().expect(
        "shared test data not found: set JETWATCH_SHARED to the folder holding models/ and media/",
    )
}

fn model(name: &str) -> ModelConfig {
    ModelConfig {
        path: shared().join("models").join(name),
        ..ModelConfig::default()
    }
}

fn opts(max_batch: usize) -> OrtOptions {
    OrtOptions {
        max_batch,
        threads: 2,
        ..OrtOptions::default()
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jetwatch-engine-ort-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Runs a tools/ script with python3; None if python3 or the `onnx` package is missing.
fn python_tool(args: &[&str]) -> Option<()> {
    let ok = Command::new("python3")
        .args(["-c", "import onnx"])
        .status()
        .ok()?
        .success();
    if !ok {
        eprintln!("python3 with the `onnx` package is not available: skipping");
        return None;
    }
    let st = Command::new("python3")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("python3 runs");
    assert!(st.success(), "python3 {args:?} failed");
    Some(())
}

#[test]
fn the_library_is_found() {
    let lib = locate_onnxruntime(None).expect("libonnxruntime.so (pip install onnxruntime)");
    assert!(lib.is_file());
    let p = probe_onnxruntime(None).unwrap();
    assert!(p.build_info.contains("ORT Build Info"), "{}", p.build_info);
}

#[test]
fn yolov8n_fp32_gz() {
    let mut e = OrtEngine::load(&model("yolov8n_fp32.onnx.gz"), opts(1)).unwrap();
    assert_eq!(e.backend(), "onnxruntime-cpu");
    let info = e.model().clone();
    assert_eq!(
        info.head,
        HeadKind::YoloV8 {
            classes: 80,
            anchors: 8400
        }
    );
    let p = info.preprocess;
    assert_eq!(
        (p.width, p.height, p.placement, p.order),
        (640, 640, Placement::Centre, ChannelOrder::Rgb)
    );
    assert_eq!((p.scale, p.pad, p.dtype), (1.0 / 255.0, 114.0, DType::F32));
    assert_eq!(info.labels.len(), 80);
    assert_eq!(
        (info.labels[0].as_str(), info.labels[79].as_str()),
        ("person", "toothbrush")
    );
    assert_eq!(e.input_mut().spec.shape, [1, 3, 640, 640]);
    assert_eq!(e.outputs()[0].spec.shape, [1, 84, 8400]);
    // A grey canvas gives boxes inside the canvas and class scores in [0, 1].
    e.input_mut()
        .host_buf_mut()
        .unwrap()
        .as_f32_mut()
        .fill(114.0 / 255.0);
    e.run(1).unwrap();
    let out = e.outputs()[0].host_buf().unwrap().as_f32();
    assert!(out[4 * 8400..].iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(out[..8400].iter().all(|v| (-64.0..=704.0).contains(v)));
}

#[test]
fn yolov8n_fp16_has_f16_input_and_output() {
    let mut e = OrtEngine::load(&model("yolov8n_fp16.onnx.gz"), opts(1)).unwrap();
    assert_eq!(e.model().preprocess.dtype, DType::F16);
    assert_eq!(e.input_mut().spec.dtype, DType::F16);
    assert_eq!(e.outputs()[0].spec.dtype, DType::F16);
    assert_eq!(
        e.model().head,
        HeadKind::YoloV8 {
            classes: 80,
            anchors: 8400
        }
    );
    e.run(1).unwrap();
}

#[test]
fn int8_and_yolo11n_320() {
    let e = OrtEngine::load(&model("yolov8n_int8.onnx"), opts(1)).unwrap();
    assert_eq!(
        e.model().head,
        HeadKind::YoloV8 {
            classes: 80,
            anchors: 8400
        }
    );
    // The upstream int8 file carries `names` too.
    assert_eq!(e.model().labels[2], "car");
    for f in ["yolo11n_320_fp32.onnx.gz", "yolo11n_320_int8.onnx"] {
        let mut e = OrtEngine::load(&model(f), opts(1)).unwrap();
        assert_eq!(
            e.model().head,
            HeadKind::YoloV8 {
                classes: 80,
                anchors: 2100
            },
            "{f}"
        );
        assert_eq!(e.model().preprocess.width, 320);
        e.run(1).unwrap();
    }
}

#[test]
fn yolox_nano_is_recognised_with_its_preprocessing() {
    let mut e = OrtEngine::load(&model("yolox_nano.onnx"), opts(1)).unwrap();
    let info = e.model().clone();
    assert_eq!(
        info.head,
        HeadKind::YoloX {
            classes: 80,
            anchors: 3549,
            decoded: false
        }
    );
    let p = info.preprocess;
    assert_eq!(
        (p.width, p.placement, p.order, p.scale),
        (416, Placement::TopLeft, ChannelOrder::Bgr, 1.0)
    );
    // No `names` metadata: class<i>, or the labels file when given.
    assert_eq!(info.labels[0], "class0");
    e.run(1).unwrap();
    let mut cfg = model("yolox_nano.onnx");
    cfg.labels = Some(shared().join("models/coco80.txt"));
    let e = OrtEngine::load(&cfg, opts(1)).unwrap();
    assert_eq!(e.model().labels[0], "person");
    assert_eq!(e.model().labels.len(), 80);
}

#[test]
fn fastestdet_is_a_clear_layout_error() {
    let err = OrtEngine::load(&model("FastestDet.onnx"), opts(1)).unwrap_err();
    assert!(matches!(err, EngineError::Layout { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("FastestDet") && msg.contains("YOLOv8"),
        "{msg}"
    );
}

#[test]
fn missing_and_non_onnx_models_are_clear_errors() {
    let err = OrtEngine::load(&model("no-such-model.onnx"), opts(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-model.onnx") && msg.contains("cannot read"),
        "{msg}"
    );

    let junk = scratch("junk.onnx");
    std::fs::write(&junk, b"this is not a protobuf model\n").unwrap();
    let cfg = ModelConfig {
        path: junk.clone(),
        ..ModelConfig::default()
    };
    let err = OrtEngine::load(&cfg, opts(1)).unwrap_err();
    assert!(matches!(err, EngineError::Model { .. }), "{err}");
    assert!(
        err.to_string().contains("cannot load it as an ONNX model"),
        "{err}"
    );

    let fake_gz = scratch("fake.onnx.gz");
    std::fs::write(&fake_gz, b"plain text").unwrap();
    let cfg = ModelConfig {
        path: fake_gz,
        ..ModelConfig::default()
    };
    let err = OrtEngine::load(&cfg, opts(1)).unwrap_err();
    assert!(err.to_string().contains("not gzip"), "{err}");
}

#[test]
fn wrong_layouts_are_clear_errors() {
    let id = scratch("identity.onnx");
    let ii = scratch("int-input.onnx");
    if python_tool(&["tools/make_test_onnx.py", "identity", id.to_str().unwrap()]).is_none() {
        return;
    }
    python_tool(&["tools/make_test_onnx.py", "int-input", ii.to_str().unwrap()]).unwrap();
    let err = OrtEngine::load(
        &ModelConfig {
            path: id,
            ..ModelConfig::default()
        },
        opts(1),
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::Layout { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("[B, 3, 64, 64]") && msg.contains("YOLOv8/YOLO11 [B, 4+C, N]"),
        "{msg}"
    );
    let err = OrtEngine::load(
        &ModelConfig {
            path: ii,
            ..ModelConfig::default()
        },
        opts(1),
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::Layout { .. }), "{err}");
    assert!(err.to_string().contains("float32 or float16"), "{err}");
}

#[test]
fn fixed_batch_model_with_larger_batch_points_at_the_tool() {
    let err = OrtEngine::load(&model("yolov8n_int8.onnx"), opts(4)).unwrap_err();
    assert!(matches!(err, EngineError::Layout { .. }), "{err}");
    assert!(
        err.to_string().contains("tools/make_dynamic_batch.py"),
        "{err}"
    );
}

#[test]
fn missing_library_is_unavailable() {
    let bad = Path::new("/nonexistent/libonnxruntime.so.1.32.0");
    let err = locate_onnxruntime(Some(bad)).unwrap_err();
    assert!(
        err.reason.contains("libonnxruntime.so") && err.reason.contains("pip install onnxruntime")
    );
    let o = OrtOptions {
        library: Some(bad.to_path_buf()),
        ..opts(1)
    };
    let err = OrtEngine::load(&model("yolov8n_int8.onnx"), o).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("onnxruntime-cpu"), "{err}");
    let o = OrtOptions {
        device: OrtDevice::Cuda { device: 0 },
        ..opts(1)
    };
    let err = OrtEngine::load(&model("yolov8n_int8.onnx"), o).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[test]
fn runs_allocate_nothing() {
    let mut e = OrtEngine::load(&model("yolo11n_320_fp32.onnx.gz"), opts(1)).unwrap();
    for _ in 0..3 {
        e.run(1).unwrap();
    }
    let (t0, p0) = (alloc_count::this_thread(), alloc_count::total());
    for _ in 0..20 {
        e.run(1).unwrap();
    }
    let (t1, p1) = (alloc_count::this_thread(), alloc_count::total());
    eprintln!(
        "20 runs: {} Rust allocations on this thread, {} process-wide",
        t1 - t0,
        p1 - p0
    );
    assert_eq!(
        t1 - t0,
        0,
        "Rust allocations on the calling thread during 20 runs"
    );
    assert!(e.run(0).is_err() && e.run(2).is_err());
}

#[test]
fn dynamic_batch_model_runs_at_batch_4() {
    let src_gz = shared().join("models/yolov8n_fp32.onnx.gz");
    let src = scratch("yolov8n_fp32.onnx");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&src_gz).unwrap()),
        &mut raw,
    )
    .unwrap();
    std::fs::write(&src, raw).unwrap();
    let dynm = scratch("yolov8n_fp32_dyn.onnx");
    if python_tool(&[
        "tools/make_dynamic_batch.py",
        src.to_str().unwrap(),
        dynm.to_str().unwrap(),
    ])
    .is_none()
    {
        return;
    }
    let mut single = OrtEngine::load(
        &ModelConfig {
            path: src,
            ..ModelConfig::default()
        },
        opts(1),
    )
    .unwrap();
    let mut e = OrtEngine::load(
        &ModelConfig {
            path: dynm,
            ..ModelConfig::default()
        },
        opts(4),
    )
    .unwrap();
    assert_eq!(e.input_mut().spec.shape, [4, 3, 640, 640]);
    assert_eq!(e.outputs()[0].spec.shape, [4, 84, 8400]);
    // Four different inputs; each item must equal the batch-1 model's output for it.
    let item = 3 * 640 * 640;
    {
        let inp = e.input_mut().host_buf_mut().unwrap().as_f32_mut();
        for (i, v) in inp.iter_mut().enumerate() {
            let k = i / item;
            let x = (i % 640) as f32 / 640.0;
            *v = ((x * (k as f32 + 1.0) * 7.0).sin() * 0.5 + 0.5).clamp(0.0, 1.0);
        }
    }
    for batch in [4usize, 3, 1] {
        e.run(batch).unwrap();
        let out_item = 84 * 8400;
        for k in 0..batch {
            let src_in =
                e.input_mut().host_buf().unwrap().as_f32()[k * item..(k + 1) * item].to_vec();
            single
                .input_mut()
                .host_buf_mut()
                .unwrap()
                .as_f32_mut()
                .copy_from_slice(&src_in);
            single.run(1).unwrap();
            let a = &e.outputs()[0].host_buf().unwrap().as_f32()[k * out_item..(k + 1) * out_item];
            let b = single.outputs()[0].host_buf().unwrap().as_f32();
            let max = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(max < 1e-2, "batch {batch} item {k}: max |diff| {max}");
        }
    }
    let t0 = alloc_count::this_thread();
    for b in [1usize, 2, 3, 4, 4, 2] {
        e.run(b).unwrap();
    }
    assert_eq!(
        alloc_count::this_thread() - t0,
        0,
        "allocations while switching batch sizes"
    );
}
