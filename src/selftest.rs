//! `jetwatch selftest`: on the device, with the backends the configuration picks, run a test
//! clip through the whole pipeline and check what a field technician (or an update gate)
//! needs to know: the pipeline runs and decodes every frame; its detections match the CPU
//! reference pipeline's (software decode, the CPU twins, ONNX Runtime CPU) on the same clip;
//! they match the clip's ground truth where it has one; the frame path allocates nothing; it
//! reaches the configured throughput; the broker accepts a connection.
//!
//! Each check passes, fails, or is skipped with the reason (a Jetson image without ONNX
//! Runtime cannot run the CPU reference; a clip without ground truth is not scored). The
//! report prints as a table and serialises to JSON; the command exits non-zero when a check
//! fails. Nothing is published: detections go to an in-process observer, and the broker check
//! connects under its own client id, without a will, and disconnects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::config::{CameraConfig, Config, DecoderChoice, DeviceChoice, EngineChoice, Pacing};
use crate::eval::{iou, Evaluator, GroundTruth};
use crate::pipeline::{build, FrameObserver, Pipeline, PipelineReport};
use crate::postprocess::DetectionList;
use crate::publish::{PublishStats, Publisher, TopicId};

/// Ground-truth floors for the person class at IoU 0.5 (the CPU pipeline gets 0.81 / 0.71 on
/// TUD-Campus with YOLOv8n; the GPU pipeline on the H.265 clip 0.83 / 0.73).
pub const GT_MIN_RECALL: f64 = 0.75;
pub const GT_MIN_PRECISION: f64 = 0.65;
/// Share of detections that must find a partner (same class, IoU ≥ 0.5) in the CPU
/// reference run, each way (FP16 on a GPU vs FP32 on a CPU moves a few boxes near the
/// thresholds).
pub const REFERENCE_MIN_MATCH: f64 = 0.95;

/// What to test.
#[derive(Debug, Clone)]
pub struct SelftestOptions {
    /// The configuration whose backends, model and pipeline settings are tested (its cameras
    /// are replaced by the test clip).
    pub config: Config,
    pub clip: PathBuf,
    /// MOT-format ground truth of the clip (persons), if any.
    pub ground_truth: Option<PathBuf>,
    /// Frames per second the pipeline must reach on the clip (0: report only).
    pub min_fps: f64,
    /// Whether to connect to the configured broker.
    pub check_broker: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct SelftestReport {
    pub version: &'static str,
    pub clip: PathBuf,
    pub model: PathBuf,
    pub backends: Option<build::Backends>,
    pub fps: f64,
    pub frames: u64,
    pub checks: Vec<Check>,
    pub passed: bool,
}

impl std::fmt::Display for SelftestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "jetwatch {} selftest", self.version)?;
        writeln!(f, "clip:  {}", self.clip.display())?;
        writeln!(f, "model: {}", self.model.display())?;
        if let Some(b) = &self.backends {
            writeln!(
                f,
                "backends: decoder {}, engine {}, preprocess {}, postprocess {}",
                b.decoder, b.engine, b.preprocess, b.postprocess
            )?;
        }
        let w = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.checks {
            let s = match c.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            writeln!(f, "  {s}  {:<w$}  {}", c.name, c.detail)?;
        }
        write!(
            f,
            "selftest {}",
            if self.passed { "PASSED" } else { "FAILED" }
        )
    }
}

/// Detections per frame (decoded-picture sequence number) of one run.
pub type FrameDetections = BTreeMap<u64, DetectionList>;

/// One run of the pipeline over the clip.
struct Run {
    backends: build::Backends,
    report: PipelineReport,
    frames: FrameDetections,
    decoded: u64,
    corrupt: u64,
}

/// A publisher that only counts: the self-test publishes nothing.
struct NullPublisher(PublishStats);

impl Publisher for NullPublisher {
    fn publish(&mut self, _topic: TopicId, _payload: &[u8]) -> bool {
        self.0.queued += 1;
        self.0.sent += 1;
        true
    }
    fn stats(&self) -> PublishStats {
        self.0
    }
}

/// `base` with the test clip as its only camera, read as fast as the pipeline goes.
fn clip_config(base: &Config, clip: &Path) -> Config {
    let mut cfg = base.clone();
    cfg.cameras = vec![CameraConfig {
        name: "selftest".into(),
        url: clip.display().to_string(),
        looping: false,
        pacing: Pacing::Fast,
        codec: None,
    }];
    cfg.publish.metrics_interval_s = 0;
    cfg
}

/// The CPU reference: software decoder, CPU twins, ONNX Runtime CPU.
fn reference_config(cfg: &Config) -> Config {
    let mut r = cfg.clone();
    r.pipeline.device = DeviceChoice::Cpu;
    r.pipeline.decoder = DecoderChoice::Software;
    r.pipeline.engine = EngineChoice::Onnxruntime;
    r
}

fn run_pipeline(cfg: &Config) -> Result<Run, String> {
    let built = build::build(cfg).map_err(|e| format!("{e}"))?;
    let backends = built.backends.clone();
    // The observer copies the fixed-size list into a bounded channel (no allocation on the
    // inference thread); a collector thread keeps them.
    let (tx, rx) = crossbeam_channel::bounded::<(u64, DetectionList)>(1024);
    let collector = std::thread::Builder::new()
        .name("selftest-collect".into())
        .spawn(move || rx.iter().collect::<FrameDetections>())
        .map_err(|e| format!("collector thread: {e}"))?;
    let observer: FrameObserver = Box::new(move |meta, dets| {
        let mut list = DetectionList::new();
        for d in dets {
            let _ = list.push(*d);
        }
        // Blocking send: the self-test must see every frame.
        let _ = tx.send((meta.seq, list));
    });
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let p = Pipeline::start(
        built.streams,
        built.stages,
        Box::new(NullPublisher(PublishStats::default())),
        built.options,
        clock,
        Some(observer),
    )
    .map_err(|e| format!("starting the pipeline: {e}"))?;
    let report = p.wait();
    let frames = collector
        .join()
        .map_err(|_| "the collector thread panicked".to_string())?;
    let decoded = report.streams.iter().map(|s| s.decoded).sum();
    let corrupt = report.streams.iter().map(|s| s.corrupt).sum();
    Ok(Run {
        backends,
        report,
        frames,
        decoded,
        corrupt,
    })
}

/// How two runs' detections agree: frames in both, detections each way, and the pairs
/// (same class, IoU ≥ `iou_min`, each detection used once, greedy by IoU).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Agreement {
    pub frames_a: usize,
    pub frames_b: usize,
    pub detections_a: usize,
    pub detections_b: usize,
    pub matched: usize,
}

impl Agreement {
    /// The smaller of the two matched shares (1.0 when neither run detected anything).
    pub fn share(&self) -> f64 {
        let most = self.detections_a.max(self.detections_b);
        if most == 0 {
            1.0
        } else {
            self.matched as f64 / most as f64
        }
    }
}

/// Compares two runs frame by frame.
pub fn agreement(a: &FrameDetections, b: &FrameDetections, iou_min: f32) -> Agreement {
    let mut out = Agreement {
        frames_a: a.len(),
        frames_b: b.len(),
        ..Agreement::default()
    };
    let empty = DetectionList::new();
    for (seq, da) in a {
        let db = b.get(seq).unwrap_or(&empty);
        out.detections_a += da.len();
        let mut used = [false; crate::postprocess::MAX_DETECTIONS];
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (i, x) in da.iter().enumerate() {
            for (j, y) in db.iter().enumerate() {
                if x.class == y.class {
                    let v = iou([x.x0, x.y0, x.x1, x.y1], [y.x0, y.y0, y.x1, y.y1]);
                    if v >= iou_min {
                        pairs.push((v, i, j));
                    }
                }
            }
        }
        pairs.sort_by(|p, q| q.0.total_cmp(&p.0));
        let mut used_a = [false; crate::postprocess::MAX_DETECTIONS];
        for (_, i, j) in pairs {
            if !used_a[i] && !used[j] {
                used_a[i] = true;
                used[j] = true;
                out.matched += 1;
            }
        }
    }
    out.detections_b = b.values().map(|d| d.len()).sum();
    out
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

/// Runs every check; `progress` gets a line per step (runs take seconds to minutes).
pub fn run(opts: &SelftestOptions, progress: &mut dyn FnMut(&str)) -> SelftestReport {
    let cfg = clip_config(&opts.config, &opts.clip);
    let mut report = SelftestReport {
        version: env!("CARGO_PKG_VERSION"),
        clip: opts.clip.clone(),
        model: cfg.model.path.clone(),
        backends: None,
        fps: 0.0,
        frames: 0,
        checks: Vec::new(),
        passed: false,
    };
    let checks = &mut report.checks;
    progress("running the pipeline over the clip with the configured backends");
    let started = Instant::now();
    let main = run_pipeline(&cfg);
    match &main {
        Err(e) => checks.push(check("pipeline", Status::Fail, e.clone())),
        Ok(r) => {
            let rp = &r.report;
            let ok = rp.fatal.is_none()
                && rp.engine_errors == 0
                && r.corrupt == 0
                && r.decoded > 0
                && rp.processed == r.decoded
                && r.frames.len() as u64 == rp.processed;
            checks.push(check(
                "pipeline",
                if ok { Status::Pass } else { Status::Fail },
                format!(
                    "{} decoded, {} processed, {} observed, {} corrupt, {} engine errors{} ({:.1} s)",
                    r.decoded,
                    rp.processed,
                    r.frames.len(),
                    r.corrupt,
                    rp.engine_errors,
                    rp.fatal
                        .as_ref()
                        .map(|f| format!(", fatal: {f}"))
                        .unwrap_or_default(),
                    started.elapsed().as_secs_f64()
                ),
            ));
            report.backends = Some(r.backends.clone());
            report.fps = rp.fps();
            report.frames = rp.processed;
        }
    }

    // The CPU reference.
    match &main {
        Err(_) => checks.push(check("reference", Status::Skip, "the pipeline did not run")),
        Ok(r)
            if r.backends.decoder == "openh264"
                && r.backends.engine == "onnxruntime-cpu"
                && r.backends.preprocess == "cpu" =>
        {
            checks.push(check(
                "reference",
                Status::Skip,
                "the configured pipeline is the CPU reference itself",
            ))
        }
        Ok(_) if crate::engine::tensorrt::is_plan_file(&cfg.model.path) => checks.push(check(
            "reference",
            Status::Skip,
            "the model is a TensorRT plan; the CPU reference needs the ONNX model",
        )),
        Ok(r) => {
            progress("running the CPU reference pipeline over the clip");
            match run_pipeline(&reference_config(&cfg)) {
                Err(e) => checks.push(check(
                    "reference",
                    Status::Skip,
                    format!("the CPU reference cannot run here: {e}"),
                )),
                Ok(reference) => {
                    let a = agreement(&r.frames, &reference.frames, 0.5);
                    let ok = a.frames_a == a.frames_b && a.share() >= REFERENCE_MIN_MATCH;
                    checks.push(check(
                        "reference",
                        if ok { Status::Pass } else { Status::Fail },
                        format!(
                            "vs {} + {} + {}: frames {} / {}, detections {} / {}, {} matched \
                             (same class, IoU >= 0.5): {:.1} % (floor {:.0} %)",
                            reference.backends.decoder,
                            reference.backends.preprocess,
                            reference.backends.engine,
                            a.frames_a,
                            a.frames_b,
                            a.detections_a,
                            a.detections_b,
                            a.matched,
                            a.share() * 100.0,
                            REFERENCE_MIN_MATCH * 100.0
                        ),
                    ));
                }
            }
        }
    }

    // Ground truth.
    match (&main, &opts.ground_truth) {
        (_, None) => checks.push(check(
            "ground truth",
            Status::Skip,
            "no ground truth for this clip",
        )),
        (Err(_), Some(_)) => checks.push(check(
            "ground truth",
            Status::Skip,
            "the pipeline did not run",
        )),
        (Ok(r), Some(path)) => match GroundTruth::load(path) {
            Err(e) => checks.push(check(
                "ground truth",
                Status::Fail,
                format!("{}: {e}", path.display()),
            )),
            Ok(gt) => {
                let mut ev = Evaluator::default();
                for (seq, dets) in &r.frames {
                    ev.add_frame(&gt, *seq, dets, 0, 0.5);
                }
                let (rc, pr) = (ev.score.recall(), ev.score.precision());
                let ok = rc >= GT_MIN_RECALL && pr >= GT_MIN_PRECISION;
                checks.push(check(
                    "ground truth",
                    if ok { Status::Pass } else { Status::Fail },
                    format!(
                        "person recall {rc:.3} (floor {GT_MIN_RECALL}), precision {pr:.3} \
                         (floor {GT_MIN_PRECISION}) at IoU 0.5, {} ground-truth boxes",
                        ev.score.ground_truth
                    ),
                ));
            }
        },
    }

    // Allocations and throughput.
    match &main {
        Ok(r) if r.report.steady_frames_infer > 0 => {
            let a = r.report.allocs_per_frame();
            checks.push(check(
                "allocations",
                if a == 0.0 { Status::Pass } else { Status::Fail },
                format!(
                    "{a:.3} Rust allocations per frame over {} steady-state frames",
                    r.report.steady_frames_infer
                ),
            ));
        }
        Ok(r) => checks.push(check(
            "allocations",
            Status::Skip,
            format!(
                "the clip is too short for a steady state ({} frames)",
                r.report.processed
            ),
        )),
        Err(_) => checks.push(check(
            "allocations",
            Status::Skip,
            "the pipeline did not run",
        )),
    }
    match &main {
        Ok(r) if opts.min_fps > 0.0 => {
            let fps = r.report.fps();
            checks.push(check(
                "throughput",
                if fps >= opts.min_fps {
                    Status::Pass
                } else {
                    Status::Fail
                },
                format!("{fps:.1} fps (floor {:.1})", opts.min_fps),
            ));
        }
        Ok(r) => checks.push(check(
            "throughput",
            Status::Skip,
            format!(
                "{:.1} fps; no floor configured ([selftest] min_fps)",
                r.report.fps()
            ),
        )),
        Err(_) => checks.push(check(
            "throughput",
            Status::Skip,
            "the pipeline did not run",
        )),
    }

    // Broker.
    if opts.check_broker {
        progress("connecting to the broker");
        checks.push(broker_check(&opts.config));
    } else {
        checks.push(check(
            "broker",
            Status::Skip,
            "no broker configured (give --config)",
        ));
    }
    report.passed = report.checks.iter().all(|c| c.status != Status::Fail);
    report
}

/// CONNECT / CONNACK with the configured address, TLS and credentials, under a client id of
/// its own and without a will, so a running jetwatch on the same device is not disturbed.
fn broker_check(cfg: &Config) -> Check {
    use crate::publish::mqtt::{tls_config, ConnectOptions, MqttConn};
    let b = &cfg.broker;
    let started = Instant::now();
    let tls = if b.tls {
        match tls_config(b.ca_file.as_deref()) {
            Ok(t) => Some(t),
            Err(e) => return check("broker", Status::Fail, format!("TLS setup: {e}")),
        }
    } else {
        None
    };
    let o = ConnectOptions {
        host: b.host.clone(),
        port: b.port,
        client_id: format!("{}-selftest-{}", cfg.device_id, std::process::id()),
        keepalive_s: 30,
        username: b.username.clone(),
        password: b.password.clone(),
        will: None,
        tls,
        timeout: Duration::from_secs(5),
    };
    match MqttConn::connect(&o) {
        Ok(_conn) => check(
            "broker",
            Status::Pass,
            format!(
                "{}:{}{} accepted the connection in {} ms",
                b.host,
                b.port,
                if b.tls { " (TLS)" } else { "" },
                started.elapsed().as_millis()
            ),
        ),
        Err(e) => check(
            "broker",
            Status::Fail,
            format!("{}:{}: {e}", b.host, b.port),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::Detection;

    fn det(class: u16, x0: f32) -> Detection {
        Detection {
            class,
            score: 0.9,
            x0,
            y0: 0.0,
            x1: x0 + 10.0,
            y1: 10.0,
            track: 0,
        }
    }

    fn frames(spec: &[(u64, &[Detection])]) -> FrameDetections {
        spec.iter()
            .map(|(s, d)| (*s, d.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn agreement_pairs_same_class_overlapping_boxes_once() {
        let a = frames(&[(0, &[det(0, 0.0), det(0, 50.0)]), (1, &[det(2, 0.0)])]);
        // Frame 0: one box moved 1 px (IoU 0.82), one missing; frame 1: other class.
        let b = frames(&[(0, &[det(0, 1.0)]), (1, &[det(3, 0.0)])]);
        let g = agreement(&a, &b, 0.5);
        assert_eq!((g.detections_a, g.detections_b, g.matched), (3, 2, 1));
        assert!((g.share() - 1.0 / 3.0).abs() < 1e-9);
        // Two detections of A over one of B: only one pair.
        let c = frames(&[(0, &[det(0, 0.0), det(0, 0.5)])]);
        let d = frames(&[(0, &[det(0, 0.0)])]);
        assert_eq!(agreement(&c, &d, 0.5).matched, 1);
        assert_eq!(agreement(&d, &d, 0.5).share(), 1.0);
        assert_eq!(agreement(&frames(&[]), &frames(&[]), 0.5).share(), 1.0);
    }

    #[test]
    fn report_prints_a_table_and_fails_on_any_failed_check() {
        let mut r = SelftestReport {
            version: "0",
            clip: "c.mp4".into(),
            model: "m.onnx".into(),
            backends: None,
            fps: 0.0,
            frames: 0,
            checks: vec![
                check("pipeline", Status::Pass, "71 decoded"),
                check("broker", Status::Skip, "none"),
            ],
            passed: true,
        };
        let t = r.to_string();
        assert!(
            t.contains("PASS  pipeline") && t.contains("skip  broker"),
            "{t}"
        );
        assert!(t.ends_with("selftest PASSED"), "{t}");
        r.checks.push(check("broker", Status::Fail, "refused"));
        r.passed = r.checks.iter().all(|c| c.status != Status::Fail);
        assert!(r.to_string().ends_with("selftest FAILED"));
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["checks"][2]["status"], "fail");
        assert_eq!(j["passed"], false);
    }
}
