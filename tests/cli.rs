//! The `jetwatch` binary on bad input: every case ends with a clear message and a non-zero
//! exit (or, for damaged video, a finished run with the damage counted), never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn jetwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jetwatch"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run jetwatch")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn no_panic(o: &Output) {
    let t = text(o);
    assert!(!t.contains("panicked"), "jetwatch panicked:\n{t}");
    assert_ne!(o.status.code(), Some(101), "exit 101 is a panic:\n{t}");
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("jw-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_config(dir: &Path, clip: &Path, model: &Path, extra: &str) -> PathBuf {
    let p = dir.join("jetwatch.toml");
    std::fs::write(
        &p,
        format!(
            "device_id = \"cli\"\n[broker]\nport = {}\nreconnect_min_ms = 50\n[[cameras]]\nname = \"c\"\nurl = \"{}\"\npacing = \"fast\"\n[model]\npath = \"{}\"\n[publish]\nmetrics_interval_s = 0\n{extra}",
            common::free_port(),
            clip.display(),
            model.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn config_check_accepts_the_example_and_rejects_typos_with_line_and_hint() {
    let ok = jetwatch(&[
        "config",
        "check",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/jetwatch.example.toml"),
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    let dir = tmpdir("cfg");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "device_id = \"x\"\n[[cameras]]\nname = \"a\"\nurl = \"a.mp4\"\nloop = true\npacin = \"fast\"\n[model]\npath = \"m.onnx\"\n").unwrap();
    let o = jetwatch(&["config", "check", bad.to_str().unwrap()]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("bad.toml:6") && t.contains("unknown field `pacin`") && t.contains("hint:"),
        "{t}"
    );
    std::fs::write(&bad, "device_id = \"x\"\n[[cameras]]\nname = \"a\"\nurl = \"a.mp4\"\n[model]\npath = \"m.onnx\"\niou_threshold = -1\n").unwrap();
    let o = jetwatch(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("bad.toml:7: `iou_threshold`"),
        "{}",
        text(&o)
    );
    let o = jetwatch(&["config", "check", "/nonexistent/jetwatch.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("cannot read"), "{}", text(&o));
}

#[test]
fn missing_model_and_missing_clip_are_clear_errors() {
    let Some(shared) = common::shared() else {
        return;
    };
    let dir = tmpdir("missing");
    let clip = shared.join("media/TUD-Campus_h264.mp4");
    let cfg = write_config(&dir, &clip, &dir.join("no-such-model.onnx"), "");
    let o = jetwatch(&["run", "--config", cfg.to_str().unwrap()]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no-such-model.onnx"), "{}", text(&o));

    let cfg = write_config(
        &dir,
        &dir.join("no-such-clip.mp4"),
        &shared.join("models/yolo11n_320_fp32.onnx.gz"),
        "",
    );
    let o = jetwatch(&["run", "--config", cfg.to_str().unwrap()]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no-such-clip.mp4"), "{}", text(&o));
}

#[test]
fn a_file_that_is_not_a_model_is_rejected() {
    let Some(shared) = common::shared() else {
        return;
    };
    let dir = tmpdir("notmodel");
    let fake = dir.join("fake.onnx");
    std::fs::write(&fake, b"this is not an ONNX file").unwrap();
    let cfg = write_config(&dir, &shared.join("media/TUD-Campus_h264.mp4"), &fake, "");
    let o = jetwatch(&["run", "--config", cfg.to_str().unwrap()]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("fake.onnx"), "{}", text(&o));
}

#[test]
fn h265_without_a_hardware_decoder_names_the_hardware_path() {
    let Some(shared) = common::shared() else {
        return;
    };
    let dir = tmpdir("h265");
    let cfg = write_config(
        &dir,
        &shared.join("media/TUD-Campus_h265.mp4"),
        &shared.join("models/yolo11n_320_fp32.onnx.gz"),
        "[pipeline]\ndecoder = \"software\"\n",
    );
    let o = jetwatch(&["run", "--config", cfg.to_str().unwrap()]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("H.265") && t.contains("NVDEC"), "{t}");
}

#[test]
fn truncated_and_corrupted_streams_finish_with_damage_counted() {
    let Some(shared) = common::shared() else {
        return;
    };
    let dir = tmpdir("damaged");
    let orig = std::fs::read(shared.join("media/TUD-Campus.h264")).unwrap();
    // Cut mid-way through a picture.
    let cut = dir.join("cut.h264");
    std::fs::write(&cut, &orig[..orig.len() * 2 / 3 + 17]).unwrap();
    // Flip bytes all over the stream (after the first keyframe, so decoding starts).
    let mut bad = orig.clone();
    let mut x: u32 = 12345;
    for _ in 0..400 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let i = 2000 + (x as usize % (bad.len() - 2000));
        bad[i] ^= 0x5a;
    }
    let corrupt = dir.join("corrupt.h264");
    std::fs::write(&corrupt, &bad).unwrap();
    let model = shared.join("models/yolo11n_320_fp32.onnx.gz");
    for clip in [&cut, &corrupt] {
        let cfg = write_config(&dir, clip, &model, "");
        let o = jetwatch(&["run", "--config", cfg.to_str().unwrap()]);
        no_panic(&o);
        let t = text(&o);
        assert!(o.status.success(), "{}: {t}", clip.display());
        assert!(t.contains("processed"), "{t}");
    }
}

#[test]
fn probe_explains_missing_backends() {
    let o = jetwatch(&["probe"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("auto: decoder"), "{t}");
    assert!(t.contains("nvdec") && t.contains("tensorrt"), "{t}");
    let o = jetwatch(&["probe", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("probe --json is JSON");
    assert!(v["backends"].as_array().is_some_and(|a| a.len() >= 5));
}

#[test]
fn engine_build_without_tensorrt_says_what_is_missing() {
    let dir = tmpdir("trt");
    let shared = common::shared().expect("shared test data (JETWATCH_SHARED)");
    let model = shared.join("models/yolov8n_fp32.onnx.gz");
    let cfg = write_config(
        &dir,
        &dir.join("clip.mp4"),
        &model,
        "[tensorrt]\ndla_core = 0\n",
    );
    let cfg = cfg.to_str().unwrap();
    for args in [
        &["engine", "build", "model.onnx"][..],
        &["engine", "build", model.to_str().unwrap(), "--batch", "2"],
        &["engine", "build", "--config", cfg],
        &["engine", "inspect", "plan.engine"],
    ] {
        let o = jetwatch(args);
        no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let t = text(&o);
        assert!(
            t.contains("TensorRT") && t.contains("libnvinfer") && t.contains("--features"),
            "{args:?}: {t}"
        );
    }
    // Contradictory flags are refused by the argument parser.
    let o = jetwatch(&["engine", "build", "--config", cfg, "--dla", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("cannot be used with"), "{}", text(&o));
    // A pipeline asking for TensorRT on a host without it fails at start with the same help.
    let clip = shared.join(jetwatch::assets::DEMO_CLIP);
    let run_fails = |cfg: &Path| {
        let o = jetwatch(&[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--max-frames",
            "5",
        ]);
        no_panic(&o);
        assert_eq!(o.status.code(), Some(1));
        let t = text(&o);
        assert!(t.contains("TensorRT") && t.contains("libnvinfer"), "{t}");
        t
    };
    let t = run_fails(&write_config(
        &dir,
        &clip,
        &model,
        "[pipeline]\nengine = \"tensorrt\"\n",
    ));
    assert_eq!(
        t.matches("TensorRT support is not compiled").count(),
        1,
        "said once: {t}"
    );
    // A prebuilt plan as the model needs TensorRT too, whatever `engine` says (auto).
    let plan = dir.join("yolov8n.engine");
    std::fs::write(&plan, b"not a plan").unwrap();
    run_fails(&write_config(&dir, &clip, &plan, ""));
    std::fs::remove_dir_all(&dir).ok();
}
