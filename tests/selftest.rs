//! `jetwatch selftest` as a technician runs it: the real binary, a real broker (mosquitto),
//! the shared clip and model. On this host the configured pipeline is the CPU reference
//! itself (the GPU comparison runs on the H100: docs/perf.md).

mod common;

use std::path::Path;
use std::process::Command;

fn selftest(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_jetwatch"))
        .arg("selftest")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run jetwatch selftest");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A device config: its camera is the car clip (the self-test replaces it with its own clip).
fn config(dir: &Path, port: u16, model: &Path, selftest: &str) -> std::path::PathBuf {
    let camera = common::shared()
        .expect("shared test data")
        .join("media/car-detection_h264.mp4");
    let p = dir.join("jetwatch.toml");
    std::fs::write(
        &p,
        format!(
            "device_id = \"st\"\n[broker]\nport = {port}\n[[cameras]]\nname = \"door\"\n\
             url = \"{}\"\n[model]\npath = \"{}\"\n[selftest]\n{selftest}",
            camera.display(),
            model.display()
        ),
    )
    .unwrap();
    p
}

fn status_of(report: &serde_json::Value, name: &str) -> String {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn passes_on_the_demo_clip_with_a_reachable_broker() {
    let shared = common::shared().expect("shared test data (JETWATCH_SHARED)");
    let broker = common::Mosquitto::start();
    let dir = std::env::temp_dir().join(format!("jw-selftest-ok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config(
        &dir,
        broker.port,
        &shared.join("models/yolov8n_fp32.onnx.gz"),
        &format!(
            "clip = \"{}\"\nmin_fps = 0.1\n",
            shared.join("media/TUD-Campus_h264.mp4").display()
        ),
    );
    let json = dir.join("report.json");
    let (code, out, err) = selftest(&[
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("selftest PASSED"), "{out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["passed"], true);
    assert_eq!(r["frames"], 71, "every frame of the clip: {r}");
    for (name, want) in [
        ("pipeline", "pass"),
        ("ground truth", "pass"),
        ("allocations", "pass"),
        ("throughput", "pass"),
        ("broker", "pass"),
        // The CPU host's pipeline is the CPU reference.
        ("reference", "skip"),
    ] {
        assert_eq!(status_of(&r, name), want, "{name}: {r}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn fails_with_the_reason_when_a_check_fails() {
    let shared = common::shared().expect("shared test data (JETWATCH_SHARED)");
    let dir = std::env::temp_dir().join(format!("jw-selftest-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Nobody listens on this port; the floor cannot be met; the clip has no ground truth.
    let port = common::free_port();
    let cfg = config(
        &dir,
        port,
        &shared.join("models/yolo11n_320_fp32.onnx.gz"),
        &format!(
            "clip = \"{}\"\nmin_fps = 1000000\n",
            shared.join("media/bikes_h264.mp4").display()
        ),
    );
    let (code, out, err) = selftest(&["--config", cfg.to_str().unwrap(), "--json", "-"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("--json - prints JSON");
    assert_eq!(r["passed"], false);
    assert_eq!(status_of(&r, "pipeline"), "pass", "{r}");
    assert_eq!(status_of(&r, "throughput"), "fail", "{r}");
    assert_eq!(status_of(&r, "broker"), "fail", "{r}");
    assert_eq!(status_of(&r, "ground truth"), "skip", "{r}");
    let broker = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "broker")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(broker.contains(&port.to_string()), "{broker}");
    // A missing clip is an error before anything runs.
    let (code, _, err) = selftest(&["--clip", "/nonexistent.mp4"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("clip /nonexistent.mp4 does not exist"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
