//! The TensorRT path describes a model without ONNX Runtime: our own ONNX reader
//! (`engine::onnx`) gives the graph's inputs, outputs and metadata, and the plan gives the
//! tensors (`tensorrt::describe_plan`). Every real shared model must come out exactly as
//! ONNX Runtime describes it, and the ONNX reader must agree with the `onnx` Python package.
//!
//! Needs ONNX Runtime (as tests/engine_ort.rs), python3 with `onnx` (tools/setup.sh installs
//! both) and the shared models.
#![cfg(feature = "ort")]

use std::path::{Path, PathBuf};
use std::process::Command;

use jetwatch::config::{ModelConfig, TensorRtConfig};
use jetwatch::engine::onnx::{Dim, OnnxSummary};
use jetwatch::engine::ort::{OrtEngine, OrtOptions};
use jetwatch::engine::tensorrt::{batch_profile, describe_plan, pipeline_plan, BatchProfile};
use jetwatch::engine::{describe::read_model, Engine};
use jetwatch::error::EngineError;
use jetwatch::tensor::TensorSpec;

fn shared() -> PathBuf {
    jetwatch::assets::shared_dir().expect(
        "shared test data not found: set JETWATCH_SHARED to the folder holding models/ and media/",
    )
}

fn model_path(name: &str) -> PathBuf {
    shared().join("models").join(name)
}

const DETECTORS: [&str; 6] = [
    "yolov8n_fp32.onnx.gz",
    "yolov8n_fp16.onnx.gz",
    "yolov8n_int8.onnx",
    "yolo11n_320_fp32.onnx.gz",
    "yolo11n_320_int8.onnx",
    "yolox_nano.onnx",
];

fn ort(path: &Path, max_batch: usize) -> OrtEngine {
    OrtEngine::load(
        &ModelConfig {
            path: path.to_path_buf(),
            ..ModelConfig::default()
        },
        OrtOptions {
            max_batch,
            threads: 2,
            ..OrtOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Describes `path` the TensorRT way, from tensors shaped as ONNX Runtime binds them (the
/// shapes a plan of this model has), given in reverse order to exercise the reordering.
fn check_against_ort(path: &Path, max_batch: usize, expect_profile: BatchProfile) {
    let mut e = ort(path, max_batch);
    let plan = pipeline_plan(path, max_batch, 0, &TensorRtConfig::default()).unwrap();
    assert_eq!(plan.args.batch, expect_profile, "{}", path.display());
    let input: TensorSpec = e.input_mut().spec.clone();
    let outputs: Vec<TensorSpec> = e.outputs().iter().rev().map(|t| t.spec.clone()).collect();
    let (info, order) = describe_plan(&plan, None, &input, &outputs).unwrap();
    let want = e.model();
    assert_eq!(info.head, want.head, "{}", path.display());
    assert_eq!(info.preprocess, want.preprocess, "{}", path.display());
    assert_eq!(info.labels, want.labels, "{}", path.display());
    assert_eq!(info.max_batch, want.max_batch, "{}", path.display());
    let n = outputs.len();
    assert_eq!(
        order,
        (0..n).rev().collect::<Vec<_>>(),
        "engine order maps back to the ONNX order"
    );
    assert_eq!(plan.onnx.inputs[0].name, e.input_name());
}

#[test]
fn every_shared_detector_is_described_as_onnx_runtime_describes_it() {
    for name in DETECTORS {
        let path = model_path(name);
        let batch = read_model(&path)
            .ok()
            .and_then(|b| OnnxSummary::parse(&b).ok())
            .and_then(|s| s.inputs[0].dims.as_ref().and_then(|d| d[0].fixed()));
        let max_batch = batch.unwrap_or(1);
        check_against_ort(&path, max_batch, batch_profile(batch, max_batch));
    }
}

#[test]
fn dynamic_batch_model_gets_a_one_to_max_profile() {
    let ok = Command::new("python3")
        .args(["-c", "import onnx"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("python3 with `onnx` is missing: skipping (tools/setup.sh installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("jetwatch-describe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("yolo11n_320_dyn.onnx");
    let st = Command::new("python3")
        .arg("tools/make_dynamic_batch.py")
        .arg(model_path("yolo11n_320_fp32.onnx.gz"))
        .arg(&out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(st.success());
    let s = OnnxSummary::parse(&std::fs::read(&out).unwrap()).unwrap();
    assert!(matches!(
        s.inputs[0].dims.as_ref().unwrap()[0],
        Dim::Symbolic(_) | Dim::Unknown
    ));
    check_against_ort(
        &out,
        4,
        BatchProfile {
            min: 1,
            opt: 4,
            max: 4,
        },
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn plan_that_does_not_match_the_model_is_refused() {
    let path = model_path("yolov8n_fp32.onnx.gz");
    let plan = pipeline_plan(&path, 1, 0, &TensorRtConfig::default()).unwrap();
    let spec = |name: &str, shape: &[usize]| TensorSpec {
        name: name.into(),
        dtype: jetwatch::tensor::DType::F32,
        shape: shape.to_vec(),
    };
    let input = spec("images", &[1, 3, 640, 640]);
    let e = describe_plan(
        &plan,
        None,
        &spec("images", &[1, 3, 320, 320]),
        &[spec("output0", &[1, 84, 8400])],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("another model"), "{e}");
    let e = describe_plan(&plan, None, &input, &[spec("boxes", &[1, 84, 8400])])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no output `output0`"), "{e}");
    let e = describe_plan(
        &plan,
        None,
        &input,
        &[spec("output0", &[1, 84, 8400]), spec("extra", &[1, 4])],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("2 outputs"), "{e}");
    // A labels file wins over the metadata, as with ONNX Runtime.
    let labels = std::env::temp_dir().join(format!("jetwatch-labels-{}.txt", std::process::id()));
    let names: String = (0..80).map(|i| format!("c{i}\n")).collect();
    std::fs::write(&labels, names).unwrap();
    let (info, _) = describe_plan(
        &plan,
        Some(&labels),
        &input,
        &[spec("output0", &[1, 84, 8400])],
    )
    .unwrap();
    assert_eq!(info.labels[79], "c79");
    std::fs::remove_file(&labels).ok();
}

#[test]
fn unusable_models_are_refused_before_tensorrt_is_touched() {
    let t = TensorRtConfig::default();
    // FastestDet's head is refused by both paths, but its input is fine: pipeline_plan
    // accepts it and describe_plan (given its real output) refuses the head.
    let fd = model_path("FastestDet.onnx");
    let plan = pipeline_plan(&fd, 1, 0, &t).unwrap();
    let o = &plan.onnx.outputs[0];
    let shape: Vec<usize> = o
        .dims
        .as_ref()
        .unwrap()
        .iter()
        .map(|d| d.fixed().unwrap())
        .collect();
    let input = TensorSpec {
        name: plan.onnx.inputs[0].name.clone(),
        dtype: jetwatch::tensor::DType::F32,
        shape: vec![1, 3, plan.input.height, plan.input.width],
    };
    let out = TensorSpec {
        name: o.name.clone(),
        dtype: jetwatch::tensor::DType::F32,
        shape,
    };
    let e = describe_plan(&plan, None, &input, &[out]).unwrap_err();
    assert!(e.to_string().contains("FastestDet"), "{e}");
    // A fixed batch of 1 with a pipeline batch of 4: the make_dynamic_batch hint.
    let e = pipeline_plan(&model_path("yolov8n_fp32.onnx.gz"), 4, 0, &t).unwrap_err();
    assert!(
        matches!(e, EngineError::Layout { .. }) && e.to_string().contains("make_dynamic_batch"),
        "{e}"
    );
    // Not a model at all.
    let e = pipeline_plan(&shared().join("models/coco80.txt"), 1, 0, &t).unwrap_err();
    assert!(matches!(e, EngineError::Model { .. }), "{e}");
    // A missing file.
    let e = pipeline_plan(&shared().join("models/none.onnx"), 1, 0, &t).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

/// The `onnx` package's view of a model, as JSON: inputs (initializers excluded), outputs,
/// metadata.
const ONNX_DUMP: &str = r#"
import gzip, json, sys, onnx
raw = open(sys.argv[1], 'rb').read()
if raw[:2] == b'\x1f\x8b':
    raw = gzip.decompress(raw)
m = onnx.load_from_string(raw)
inits = {i.name for i in m.graph.initializer}
def vi(v):
    t = v.type.tensor_type
    dims = [d.dim_value if d.HasField('dim_value') else (d.dim_param if d.HasField('dim_param') else None) for d in t.shape.dim] if t.HasField('shape') else None
    return {'name': v.name, 'elem_type': t.elem_type, 'dims': dims}
print(json.dumps({'ir_version': m.ir_version,
    'inputs': [vi(v) for v in m.graph.input if v.name not in inits],
    'outputs': [vi(v) for v in m.graph.output],
    'metadata': [[p.key, p.value] for p in m.metadata_props]}))
"#;

#[test]
fn onnx_reader_agrees_with_the_onnx_package() {
    let mut all = DETECTORS.to_vec();
    all.push("FastestDet.onnx");
    for name in all {
        let path = model_path(name);
        let out = match Command::new("python3")
            .args(["-c", ONNX_DUMP])
            .arg(&path)
            .output()
        {
            Ok(o) if o.status.success() => o.stdout,
            Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'onnx'") => {
                eprintln!("python3 has no `onnx` package: skipping (tools/setup.sh installs it)");
                return;
            }
            other => panic!("python3 onnx dump of {name}: {other:?}"),
        };
        let want: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let s = OnnxSummary::parse(&read_model(&path).unwrap()).unwrap();
        let dims = |d: &Option<Vec<Dim>>| match d {
            None => serde_json::Value::Null,
            Some(d) => d
                .iter()
                .map(|d| match d {
                    Dim::Fixed(v) => serde_json::json!(v),
                    Dim::Symbolic(s) => serde_json::json!(s),
                    Dim::Unknown => serde_json::Value::Null,
                })
                .collect(),
        };
        let vis = |v: &[jetwatch::engine::onnx::ValueInfo]| -> serde_json::Value {
            v.iter()
                .map(|v| {
                    serde_json::json!({"name": v.name, "elem_type": v.elem_type, "dims": dims(&v.dims)})
                })
                .collect()
        };
        let got = serde_json::json!({
            "ir_version": s.ir_version,
            "inputs": vis(&s.inputs),
            "outputs": vis(&s.outputs),
            "metadata": s.metadata.iter().map(|(k, v)| serde_json::json!([k, v])).collect::<Vec<_>>(),
        });
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn a_prebuilt_plan_is_described_from_its_tensors_and_a_labels_file() {
    use jetwatch::engine::tensorrt::{describe_prebuilt, is_plan_file};
    assert!(is_plan_file(Path::new("m.engine")) && is_plan_file(Path::new("/a/m.plan")));
    assert!(!is_plan_file(Path::new("m.onnx")) && !is_plan_file(Path::new("m.onnx.gz")));
    let labels = model_path("coco80.txt");
    for name in ["yolov8n_fp16.onnx.gz", "yolox_nano.onnx"] {
        let mut e = ort(&model_path(name), 1);
        let input = e.input_mut().spec.clone();
        let outputs: Vec<TensorSpec> = e.outputs().iter().map(|t| t.spec.clone()).collect();
        let plan = Path::new("/plans/model.engine");
        let info = describe_prebuilt(plan, Some(&labels), &input, &outputs, 1).unwrap();
        let want = e.model();
        assert_eq!(info.head, want.head, "{name}");
        assert_eq!(info.preprocess, want.preprocess, "{name}");
        assert_eq!(info.labels.len(), 80);
        assert_eq!(info.labels[0], "person");
        // Without a labels file the classes are numbered.
        let bare = describe_prebuilt(plan, None, &input, &outputs, 1).unwrap();
        assert_eq!(bare.labels.len(), 80, "{name}");
        // The plan's batch must be the pipeline's.
        let err = describe_prebuilt(plan, None, &input, &outputs, 4).unwrap_err();
        assert!(err.to_string().contains("--batch 4"), "{err}");
    }
}
