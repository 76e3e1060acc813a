//! The logic around the TensorRT shim, tested without TensorRT: version gating, cache keys
//! and plan headers, DLA policy decisions, placement report parsing and formatting, progress
//! lines, and the "TensorRT missing" path of `engine build` / `engine inspect`.

use std::fs;
use std::path::PathBuf;

use jetwatch::engine::tensorrt::cache::{
    self, BatchProfile, CacheKey, CacheKeyInputs, PlanStatus, Precision,
};
use jetwatch::engine::tensorrt::policy::{self, DlaPolicy, LayerDla, PolicyError};
use jetwatch::engine::tensorrt::progress::{
    ProgressTracker, PHASE_FINISH, PHASE_START, PHASE_STEP,
};
use jetwatch::engine::tensorrt::report::{Device, PlacementReport};
use jetwatch::engine::tensorrt::version::{check_runtime_compat, PrecisionMode, TrtVersion};
use jetwatch::engine::tensorrt::{self as trt, header_field, EngineBuildArgs};

/// `JETWATCH_SHARED`, else `../shared` beside the repository (or beside the worktree folder).
fn shared() -> PathBuf {
    if let Some(p) = std::env::var_os("JETWATCH_SHARED") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let near = root.join("../shared");
    if near.is_dir() {
        near
    } else {
        root.join("../../shared")
    }
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jetwatch-trt-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

const V10_3: TrtVersion = TrtVersion::new(10, 3, 0);

// ---------------------------------------------------------------- version gating

#[test]
fn versions_decode_both_encodings() {
    assert_eq!(TrtVersion::from_encoded(100300), Some(V10_3));
    assert_eq!(
        TrtVersion::from_encoded(110401),
        Some(TrtVersion::new(11, 4, 1))
    );
    assert_eq!(
        TrtVersion::from_encoded(101302),
        Some(TrtVersion::new(10, 13, 2))
    );
    // TensorRT 8.6.1 encoded as major*1000 + minor*100 + patch.
    assert_eq!(
        TrtVersion::from_encoded(8601),
        Some(TrtVersion::new(8, 6, 1))
    );
    assert_eq!(TrtVersion::from_encoded(0), None);
    assert_eq!(V10_3.encoded(), 100300);
    assert_eq!(V10_3.to_string(), "10.3.0");
    assert_eq!(
        TrtVersion::new(11, 1, 0).nvinfer_soname(),
        "libnvinfer.so.11"
    );
}

#[test]
fn runtime_must_match_header_major_and_be_no_older() {
    assert!(check_runtime_compat(V10_3, V10_3).is_ok());
    assert!(check_runtime_compat(V10_3, TrtVersion::new(10, 7, 0)).is_ok());
    let older = check_runtime_compat(V10_3, TrtVersion::new(10, 2, 0)).unwrap_err();
    assert!(older.contains("older"), "{older}");
    let major = check_runtime_compat(V10_3, TrtVersion::new(11, 1, 0)).unwrap_err();
    assert!(
        major.contains("11.1.0") && major.contains("10.3.0"),
        "{major}"
    );
    let eight = check_runtime_compat(TrtVersion::new(8, 6, 1), TrtVersion::new(8, 6, 1));
    assert!(eight.is_err());
}

#[test]
fn dla_and_precision_gating_by_version() {
    assert!(V10_3.dla_supported().is_ok());
    assert!(TrtVersion::new(11, 1, 0).dla_supported().is_err());
    assert!(TrtVersion::new(11, 4, 0).dla_supported().is_err());
    assert!(TrtVersion::new(11, 4, 1).dla_supported().is_ok());
    assert!(TrtVersion::new(11, 5, 0).dla_supported().is_ok());
    assert_eq!(V10_3.precision_mode(), PrecisionMode::BuilderFlag);
    assert_eq!(
        TrtVersion::new(11, 0, 0).precision_mode(),
        PrecisionMode::TensorTypes
    );
}

// ---------------------------------------------------------------- cache keys and plans

fn inputs(onnx: &[u8]) -> CacheKeyInputs<'_> {
    CacheKeyInputs {
        onnx,
        trt: V10_3,
        device_name: "Orin",
        compute_capability: (8, 7),
        dla_core: None,
        gpu_fallback: false,
        precision: Precision::Fp16,
        batch: BatchProfile::fixed(1),
    }
}

#[test]
fn cache_key_hashes_the_real_model_and_every_field() {
    let model =
        fs::read(shared().join("models/FastestDet.onnx")).expect("shared model FastestDet.onnx");
    let base = CacheKey::new(&inputs(&model));
    // The model digest is the one published in shared/models/README.md.
    assert_eq!(
        header_field(&base.description, "model_sha256"),
        Some("31cb14c017fce347cb4c846ec62fdf00d76bb3beecdf4be21e7116ac67feb880")
    );
    assert_eq!(base.hex.len(), 64);
    assert_eq!(
        base,
        CacheKey::new(&inputs(&model)),
        "key must be deterministic"
    );

    let mut flipped = model.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    let variants = [
        CacheKey::new(&inputs(&flipped)),
        CacheKey::new(&CacheKeyInputs {
            trt: TrtVersion::new(10, 3, 1),
            ..inputs(&model)
        }),
        CacheKey::new(&CacheKeyInputs {
            device_name: "Orin Nano",
            ..inputs(&model)
        }),
        CacheKey::new(&CacheKeyInputs {
            compute_capability: (8, 6),
            ..inputs(&model)
        }),
        CacheKey::new(&CacheKeyInputs {
            dla_core: Some(0),
            ..inputs(&model)
        }),
        CacheKey::new(&CacheKeyInputs {
            dla_core: Some(1),
            ..inputs(&model)
        }),
        CacheKey::new(&CacheKeyInputs {
            gpu_fallback: true,
            ..inputs(&model)
        }),
        CacheKey::new(&CacheKeyInputs {
            precision: Precision::Fp32,
            ..inputs(&model)
        }),
        CacheKey::new(&CacheKeyInputs {
            batch: BatchProfile {
                min: 1,
                opt: 4,
                max: 8,
            },
            ..inputs(&model)
        }),
        CacheKey::new(&CacheKeyInputs {
            batch: BatchProfile::fixed(4),
            ..inputs(&model)
        }),
    ];
    let mut all: Vec<&str> = variants.iter().map(|k| k.hex.as_str()).collect();
    all.push(&base.hex);
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "every field must change the key");
}

#[test]
fn plan_file_name_comes_from_key() {
    let k = CacheKey::new(&inputs(b"model"));
    let name = k.file_name("yolo v8/n");
    assert_eq!(name, format!("yolo_v8_n-{}.engine", &k.hex[..32]));
    assert!(k.file_name("").starts_with("model-"));
    let args = EngineBuildArgs::new("/models/yolov8n_fp16.onnx");
    assert_eq!(
        args.plan_path(&k),
        PathBuf::from(format!("/models/yolov8n_fp16-{}.engine", &k.hex[..32]))
    );
}

#[test]
fn batch_profile_validation() {
    assert!(BatchProfile::fixed(1).validate().is_ok());
    assert!(BatchProfile {
        min: 1,
        opt: 2,
        max: 4
    }
    .validate()
    .is_ok());
    assert!(BatchProfile {
        min: 0,
        opt: 1,
        max: 1
    }
    .validate()
    .is_err());
    assert!(BatchProfile {
        min: 2,
        opt: 1,
        max: 4
    }
    .validate()
    .is_err());
    assert!(BatchProfile {
        min: 1,
        opt: 8,
        max: 4
    }
    .validate()
    .is_err());
}

#[test]
fn stored_plan_loads_only_with_matching_key_and_bytes() {
    let dir = tmp_dir("plan");
    let key = CacheKey::new(&inputs(b"model-a"));
    let other = CacheKey::new(&inputs(b"model-b"));
    let path = dir.join(key.file_name("m"));
    let plan: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();

    assert_eq!(cache::load_plan(&path, &key).unwrap(), PlanStatus::Missing);
    cache::store_plan(&path, &key, &plan).unwrap();
    assert_eq!(
        cache::load_plan(&path, &key).unwrap(),
        PlanStatus::Valid(plan.clone())
    );
    // No temporary files are left behind.
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // A plan for another key at this path (e.g. copied by hand) is stale.
    match cache::load_plan(&path, &other).unwrap() {
        PlanStatus::Stale(why) => assert!(why.contains(&other.hex), "{why}"),
        s => panic!("expected stale, got {s:?}"),
    }
    // Truncated plan.
    fs::write(&path, &plan[..5000]).unwrap();
    assert!(
        matches!(cache::load_plan(&path, &key).unwrap(), PlanStatus::Stale(w) if w.contains("truncated"))
    );
    // Same length, one byte changed.
    let mut bad = plan.clone();
    bad[1234] ^= 0x40;
    fs::write(&path, &bad).unwrap();
    assert!(
        matches!(cache::load_plan(&path, &key).unwrap(), PlanStatus::Stale(w) if w.contains("digest"))
    );
    // Plan without its header.
    cache::store_plan(&path, &key, &plan).unwrap();
    fs::remove_file(cache::header_path(&path)).unwrap();
    assert!(
        matches!(cache::load_plan(&path, &key).unwrap(), PlanStatus::Stale(w) if w.contains("no header"))
    );
    // Garbage header.
    fs::write(cache::header_path(&path), "hello\n").unwrap();
    assert!(matches!(
        cache::load_plan(&path, &key).unwrap(),
        PlanStatus::Stale(_)
    ));
    // Rewriting restores it.
    cache::store_plan(&path, &key, &plan).unwrap();
    assert_eq!(
        cache::load_plan(&path, &key).unwrap(),
        PlanStatus::Valid(plan)
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cache_directory_is_checked_before_a_build() {
    let dir = tmp_dir("writable");
    // A directory that does not exist yet is created, and nothing is left in it.
    let plan = dir.join("a/b/m-0123.engine");
    cache::check_writable(&plan).unwrap();
    assert!(dir.join("a/b").is_dir());
    assert_eq!(fs::read_dir(dir.join("a/b")).unwrap().count(), 0);
    // A "directory" that is a file cannot hold plans.
    fs::write(dir.join("file"), b"x").unwrap();
    assert!(cache::check_writable(&dir.join("file/m.engine")).is_err());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn header_records_key_fields() {
    let key = CacheKey::new(&CacheKeyInputs {
        dla_core: Some(1),
        ..inputs(b"x")
    });
    let h = cache::header_text(&key, b"plan");
    assert_eq!(header_field(&h, "key"), Some(key.hex.as_str()));
    assert_eq!(header_field(&h, "dla_core"), Some("1"));
    assert_eq!(header_field(&h, "tensorrt"), Some("10.3.0"));
    assert_eq!(header_field(&h, "plan_bytes"), Some("4"));
    assert!(cache::validate_header(&h, &key, b"plan").is_ok());
    assert!(cache::validate_header(&h, &key, b"plam").is_err());
}

// ---------------------------------------------------------------- DLA policy

fn layers(spec: &[(&str, bool)]) -> Vec<LayerDla> {
    spec.iter()
        .map(|(n, ok)| LayerDla {
            name: n.to_string(),
            can_run_on_dla: *ok,
        })
        .collect()
}

#[test]
fn policy_parse() {
    assert_eq!("strict".parse::<DlaPolicy>(), Ok(DlaPolicy::Strict));
    assert_eq!("fallback".parse::<DlaPolicy>(), Ok(DlaPolicy::Fallback));
    assert_eq!("gpu".parse::<DlaPolicy>(), Ok(DlaPolicy::Gpu));
    assert!("dla".parse::<DlaPolicy>().unwrap_err().contains("strict"));
}

#[test]
fn dla_request_checks_version_and_cores() {
    use policy::check_dla_request as check;
    assert_eq!(check(DlaPolicy::Gpu, None, V10_3, 0), Ok(None));
    assert_eq!(check(DlaPolicy::Strict, Some(1), V10_3, 2), Ok(Some(1)));
    assert!(matches!(
        check(DlaPolicy::Strict, Some(2), V10_3, 2),
        Err(PolicyError::DlaUnsupported(_))
    ));
    assert!(matches!(
        check(DlaPolicy::Fallback, Some(0), V10_3, 0),
        Err(PolicyError::DlaUnsupported(_))
    ));
    assert!(matches!(
        check(DlaPolicy::Strict, None, V10_3, 2),
        Err(PolicyError::Config(_))
    ));
    assert!(matches!(
        check(DlaPolicy::Gpu, Some(0), V10_3, 2),
        Err(PolicyError::Config(_))
    ));
    // TensorRT 11 before 11.4.1 has no DLA.
    let e = check(DlaPolicy::Strict, Some(0), TrtVersion::new(11, 1, 0), 2).unwrap_err();
    assert!(e.to_string().contains("11.4.1"), "{e}");
    assert_eq!(
        check(DlaPolicy::Strict, Some(0), TrtVersion::new(11, 4, 1), 2),
        Ok(Some(0))
    );
}

#[test]
fn strict_fails_when_a_layer_leaves_dla() {
    let all = layers(&[("conv1", true), ("relu1", true)]);
    let d = policy::decide(DlaPolicy::Strict, Some(0), &all).unwrap();
    assert_eq!(d.dla_core, Some(0));
    assert!(!d.gpu_fallback);
    assert!(d.warnings.is_empty());

    let some = layers(&[
        ("conv1", true),
        ("/model.22/Split", false),
        ("Concat_5", false),
    ]);
    let e = policy::decide(DlaPolicy::Strict, Some(0), &some).unwrap_err();
    assert_eq!(
        e,
        PolicyError::LayersLeaveDla {
            core: 0,
            layers: vec!["/model.22/Split".into(), "Concat_5".into()]
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("2 layer(s)") && msg.contains("/model.22/Split") && msg.contains("fallback"),
        "{msg}"
    );
}

#[test]
fn fallback_allows_gpu_layers_and_warns() {
    let some = layers(&[
        ("conv1", true),
        ("split", false),
        ("concat", false),
        ("conv2", true),
    ]);
    let d = policy::decide(DlaPolicy::Fallback, Some(1), &some).unwrap();
    assert_eq!(d.dla_core, Some(1));
    assert!(d.gpu_fallback);
    assert_eq!(
        d.gpu_layers,
        vec!["split".to_string(), "concat".to_string()]
    );
    assert_eq!(d.warnings.len(), 1);
    assert!(
        d.warnings[0].starts_with("2 of 4 layers fall back from DLA core 1"),
        "{}",
        d.warnings[0]
    );
    // Everything fits: fallback is set but there is nothing to warn about.
    let d = policy::decide(DlaPolicy::Fallback, Some(0), &layers(&[("a", true)])).unwrap();
    assert!(d.gpu_fallback && d.warnings.is_empty());
    // Long lists are shortened.
    let many: Vec<LayerDla> = (0..20)
        .map(|i| LayerDla {
            name: format!("l{i}"),
            can_run_on_dla: false,
        })
        .collect();
    let d = policy::decide(DlaPolicy::Fallback, Some(0), &many).unwrap();
    assert!(d.warnings[0].contains("and 12 more"), "{}", d.warnings[0]);
}

#[test]
fn gpu_policy_ignores_layers() {
    let d = policy::decide(DlaPolicy::Gpu, None, &layers(&[("x", false)])).unwrap();
    assert_eq!(d.dla_core, None);
    assert!(!d.gpu_fallback && d.warnings.is_empty() && d.gpu_layers.is_empty());
}

// ---------------------------------------------------------------- placement report

const INSPECTOR_JSON: &str = r#"{"Layers": [
 {"Name": "Reformatting CopyNode for Input Tensor 0 to /model.0/conv/Conv", "LayerType": "Reformat",
  "Inputs": [], "Outputs": [], "TacticName": "", "Origin": "REFORMAT"},
 {"Name": "{ForeignNode[/model.0/conv/Conv.../model.21/Concat]}", "LayerType": "DLA",
  "TacticName": "", "Origin": "DLA"},
 {"Name": "/model.22/Split", "LayerType": "Slice", "TacticName": "", "Origin": "SLICE"},
 {"Name": "/model.22/dfl/conv/Conv", "LayerType": "CaskConvolution",
  "TacticName": "sm80_xmma_fprop_implicit_gemm_f16f16", "Origin": "CONVOLUTION"}
], "Bindings": ["images", "output0"]}"#;

#[test]
fn placement_report_counts_devices_and_reformats() {
    let r = PlacementReport::from_inspector_json(INSPECTOR_JSON).unwrap();
    assert!(r.detailed);
    assert_eq!(r.layers.len(), 4);
    assert_eq!(r.count(Device::Dla), 1);
    assert_eq!(r.count(Device::Gpu), 3);
    assert_eq!(r.reformats(), 1);
    assert_eq!(r.layers[1].device, Device::Dla);
    assert!(r.layers[0].reformat);
    let text = r.to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("layers: 4 total, 3 on GPU, 1 on DLA, 1 reformat")
    );
    assert!(text.contains("DLA  DLA"), "{text}");
    assert!(text.contains("GPU  Reformat         Reformatting CopyNode for Input Tensor 0 to /model.0/conv/Conv *"), "{text}");
    assert!(text.contains("reformat layer"), "{text}");
}

#[test]
fn placement_report_names_only_and_errors() {
    let r =
        PlacementReport::from_inspector_json(r#"{"Layers": ["a", "b"], "Bindings": []}"#).unwrap();
    assert!(!r.detailed);
    assert_eq!(r.layers.len(), 2);
    assert!(r.to_string().contains("without detailed profiling"));
    assert!(PlacementReport::from_inspector_json("not json")
        .unwrap_err()
        .contains("does not parse"));
    assert!(PlacementReport::from_inspector_json(r#"{"Bindings": []}"#)
        .unwrap_err()
        .contains("Layers"));
    assert!(PlacementReport::from_inspector_json(r#"{"Layers": [3]}"#).is_err());
}

// ---------------------------------------------------------------- progress

#[test]
fn progress_lines_nest_and_thin_out() {
    let mut t = ProgressTracker::default();
    assert_eq!(
        t.event(PHASE_START, "Building engine", "", 3).as_deref(),
        Some("Building engine (3 steps)")
    );
    assert_eq!(
        t.event(PHASE_START, "Tactic selection", "Building engine", 100)
            .as_deref(),
        Some("  Tactic selection (100 steps)")
    );
    let steps: Vec<String> = (0..100)
        .filter_map(|i| t.event(PHASE_STEP, "Tactic selection", "", i))
        .collect();
    assert_eq!(steps.len(), 10);
    assert_eq!(steps[0], "    Tactic selection: 10/100");
    assert_eq!(steps[9], "    Tactic selection: 100/100");
    assert_eq!(
        t.event(PHASE_FINISH, "Tactic selection", "", 0).as_deref(),
        Some("  Tactic selection done")
    );
    assert_eq!(
        t.event(PHASE_STEP, "Building engine", "", 0).as_deref(),
        Some("  Building engine: 1/3")
    );
    assert_eq!(
        t.event(PHASE_FINISH, "Building engine", "", 0).as_deref(),
        Some("Building engine done")
    );
    // Events for unknown phases are ignored, not panics.
    assert_eq!(t.event(PHASE_STEP, "nope", "", 1), None);
    assert_eq!(t.event(PHASE_FINISH, "nope", "", 0), None);
    assert_eq!(t.event(42, "x", "", 0), None);
}

// ---------------------------------------------------------------- TensorRT missing

#[test]
fn probe_reports_library_or_says_what_is_missing() {
    match trt::tensorrt_available() {
        Ok(v) => assert!(v.major == 10 || v.major == 11, "{v}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("libnvinfer.so.10") && msg.contains("libnvinfer.so.11"),
                "{msg}"
            );
            assert!(
                msg.contains("JetPack") && msg.contains("libnvinfer10"),
                "{msg}"
            );
        }
    }
}

#[cfg(not(feature = "tensorrt"))]
#[test]
fn engine_build_without_feature_says_how_to_get_tensorrt() {
    use jetwatch::error::{EngineError, ErrorKind};
    let args = EngineBuildArgs::new(shared().join("models/FastestDet.onnx"));
    let mut lines = Vec::new();
    let err = trt::engine_build(&args, &mut |l| lines.push(l.to_string())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(matches!(err, EngineError::Unavailable(_)));
    let msg = err.to_string();
    assert!(
        msg.starts_with("tensorrt is not available on this host"),
        "{msg}"
    );
    assert!(
        msg.contains("--features cuda12,tensorrt") && msg.contains("TENSORRT_INCLUDE"),
        "{msg}"
    );
    assert!(lines.is_empty());
    let err = trt::engine_inspect(&PathBuf::from("/nonexistent.engine")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(trt::prefer_tensorrt().is_err());
}

/// With the feature, on a host without libnvinfer (like CI), the shim's dlopen fails and the
/// error names the library and how to get it; on a host with TensorRT this checks nothing.
#[cfg(feature = "tensorrt")]
#[test]
fn shim_reports_missing_libnvinfer() {
    use jetwatch::error::ErrorKind;
    if trt::tensorrt_available().is_ok() {
        return;
    }
    let args = EngineBuildArgs::new(shared().join("models/FastestDet.onnx"));
    let err = trt::engine_build(&args, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let msg = err.to_string();
    assert!(msg.contains("cannot open libnvinfer.so.1"), "{msg}");
    assert!(msg.contains("JetPack"), "{msg}");
    let err = trt::engine_inspect(&PathBuf::from("/nonexistent.engine")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}
