//! Configuration (TOML). Every section rejects unknown keys; values are checked after parsing.
//! Errors name the file, the line and the key, with a hint. Nothing starts on a bad config.
//!
//! The reference with every key and its default is `docs/config.md`; `jetwatch config check`
//! validates a file without starting anything.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::tensorrt::{DlaPolicy, Precision};
use crate::frame::Codec;

/// Broker connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    pub host: String,
    pub port: u16,
    /// TLS with the system roots, or with `ca_file` if given.
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// MQTT client id; default `jetwatch-<device_id>`.
    pub client_id: Option<String>,
    /// QoS of detection and metrics messages (0 or 1).
    pub qos: u8,
    pub keepalive_s: u64,
    /// Messages kept while the broker is away; the oldest are dropped (and counted) first.
    pub outbox_messages: usize,
    /// Reconnect backoff: first delay and cap, in milliseconds (jittered, exponential).
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            tls: false,
            ca_file: None,
            username: None,
            password: None,
            client_id: None,
            qos: 1,
            keepalive_s: 30,
            outbox_messages: 1024,
            reconnect_min_ms: 200,
            reconnect_max_ms: 30_000,
        }
    }
}

/// How fast a file source is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// At the stream's own frame rate (from timestamps), like a live camera.
    #[default]
    Realtime,
    /// As fast as the pipeline takes it (benchmarks, batch processing).
    Fast,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Name used in topics (`jetwatch/<device>/<name>/detections`): letters, digits, `-`, `_`.
    pub name: String,
    /// `file:///path`, or a plain path (MP4 or Annex-B `.h264`/`.h265`).
    pub url: String,
    /// Start again at the end of a file.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    #[serde(default)]
    pub pacing: Pacing,
    /// Codec of a raw Annex-B file whose extension does not tell (`h264` or `h265`).
    #[serde(default)]
    pub codec: Option<Codec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// ONNX model (`.onnx`, or `.onnx.gz`, decompressed in memory), or a prebuilt TensorRT
    /// plan (`.engine`, `.plan`, `.trt`; TensorRT on the GPU path only).
    pub path: PathBuf,
    /// Class names, one per line; default: the model's `names` metadata.
    pub labels: Option<PathBuf>,
    pub score_threshold: f32,
    pub iou_threshold: f32,
    /// Detections kept per frame after NMS (at most 256).
    pub max_detections: usize,
    /// Class names or indices to keep; empty keeps all.
    pub classes: Vec<ClassRef>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: PathBuf::new(),
            labels: None,
            score_threshold: 0.25,
            iou_threshold: 0.45,
            max_detections: 100,
            classes: Vec::new(),
        }
    }
}

/// A class given by name or by index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ClassRef {
    Index(u16),
    Name(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecoderChoice {
    /// Jetson V4L2 > NVDEC > software.
    #[default]
    Auto,
    Software,
    Nvdec,
    Jetson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EngineChoice {
    /// TensorRT > ONNX Runtime CUDA > ONNX Runtime CPU.
    #[default]
    Auto,
    Tensorrt,
    Onnxruntime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub decoder: DecoderChoice,
    pub engine: EngineChoice,
    pub device: DeviceChoice,
    /// CUDA device ordinal.
    pub gpu: u32,
    /// Frames per inference batch (the model must accept it; see docs/config.md).
    pub batch_size: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    pub batch_timeout_ms: u64,
    /// Decoded pictures each stream may have in flight; past that the newest is dropped.
    pub frames_in_flight: usize,
    /// Largest picture any stream may have; pools are sized from it.
    pub max_width: u32,
    pub max_height: u32,
    /// Largest access unit, in bytes.
    pub max_access_unit_bytes: usize,
    /// Threads ONNX Runtime's CPU provider may use (0: its default).
    pub cpu_threads: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            decoder: DecoderChoice::Auto,
            engine: EngineChoice::Auto,
            device: DeviceChoice::Auto,
            gpu: 0,
            batch_size: 1,
            batch_timeout_ms: 10,
            frames_in_flight: 4,
            max_width: 1920,
            max_height: 1088,
            max_access_unit_bytes: 2 << 20,
            cpu_threads: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WireFormat {
    #[default]
    Postcard,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PublishMode {
    /// A message for every processed frame that has detections.
    #[default]
    EveryFrame,
    /// A message only when the detections change (class counts, or a box moving by more
    /// than a tenth of its size), and for the first frame after a frame with detections
    /// that has none.
    OnChange,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    pub format: WireFormat,
    pub mode: PublishMode,
    /// At most one detection message per camera per this many milliseconds (0: no limit).
    pub min_interval_ms: u64,
    /// Period of the `metrics` message, in seconds (0: off).
    pub metrics_interval_s: u64,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            format: WireFormat::Postcard,
            mode: PublishMode::EveryFrame,
            min_interval_ms: 0,
            metrics_interval_s: 10,
        }
    }
}

/// `jetwatch selftest` settings (docs/config.md).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SelftestConfig {
    /// Test clip (H.264 or H.265, MP4 or Annex-B); default: the shared TUD-Campus clip.
    pub clip: Option<PathBuf>,
    /// MOT-format person ground truth of the clip; default: TUD-Campus's for that clip.
    pub ground_truth: Option<PathBuf>,
    /// Frames per second the pipeline must reach on the clip (0: report only).
    pub min_fps: f64,
}

/// TensorRT engine settings (used when the pipeline runs TensorRT; see docs/tensorrt.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TensorRtConfig {
    /// Directory of cached plans (file names come from the cache key).
    pub cache_dir: PathBuf,
    /// `fp16` (default) or `fp32`.
    pub precision: Precision,
    /// Build for this DLA core (Jetson AGX Orin / Orin NX / Xavier); omit for the GPU.
    pub dla_core: Option<u32>,
    /// `strict`, `fallback` or `gpu`; default `fallback` with a `dla_core`, `gpu` without.
    pub dla_policy: Option<DlaPolicy>,
    /// Timing cache file, read before and written after each build (optional).
    pub timing_cache: Option<PathBuf>,
    /// Builder workspace limit in MiB (0: TensorRT's default).
    pub workspace_mib: u64,
}

impl Default for TensorRtConfig {
    fn default() -> Self {
        TensorRtConfig {
            cache_dir: PathBuf::from(DEFAULT_ENGINE_CACHE),
            precision: Precision::Fp16,
            dla_core: None,
            dla_policy: None,
            timing_cache: None,
            workspace_mib: 0,
        }
    }
}

/// Where plans are cached unless `tensorrt.cache_dir` (or `engine build --cache`) says.
pub const DEFAULT_ENGINE_CACHE: &str = "/var/cache/jetwatch/engines";

impl TensorRtConfig {
    /// The DLA policy in effect: the configured one, else `fallback` with a core and `gpu`
    /// without.
    pub fn policy(&self) -> DlaPolicy {
        self.dla_policy.unwrap_or(if self.dla_core.is_some() {
            DlaPolicy::Fallback
        } else {
            DlaPolicy::Gpu
        })
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Used in every topic: `jetwatch/<device_id>/...`.
    pub device_id: String,
    #[serde(default)]
    pub broker: BrokerConfig,
    pub cameras: Vec<CameraConfig>,
    pub model: ModelConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub publish: PublishConfig,
    #[serde(default)]
    pub tensorrt: TensorRtConfig,
    #[serde(default)]
    pub selftest: SelftestConfig,
}

/// A config error: where and what, plus a hint.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub msg: String,
    pub hint: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.msg)?;
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates a config file. Relative paths inside it (model, labels,
    /// camera files, CA file) are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            msg: format!("cannot read: {e}"),
            hint: "give the path of a TOML file (see docs/config.md)".into(),
        })?;
        let mut cfg = Config::parse(&text, path)?;
        if let Some(dir) = path.parent() {
            cfg.resolve_paths(dir);
        }
        Ok(cfg)
    }

    /// Parses and validates config text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let msg = e.message().to_string();
            let hint = hint_for(&msg);
            ConfigError {
                file: file.to_path_buf(),
                line,
                key: String::new(),
                msg,
                hint,
            }
        })?;
        cfg.validate().map_err(|(key, msg, hint)| ConfigError {
            file: file.to_path_buf(),
            line: find_key_line(text, &key),
            key,
            msg,
            hint,
        })?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = dir.join(&*p);
            }
        };
        fix(&mut self.model.path);
        if let Some(l) = &mut self.model.labels {
            fix(l);
        }
        if let Some(c) = &mut self.broker.ca_file {
            fix(c);
        }
        fix(&mut self.tensorrt.cache_dir);
        for p in [&mut self.selftest.clip, &mut self.selftest.ground_truth]
            .into_iter()
            .flatten()
        {
            fix(p);
        }
        if let Some(t) = &mut self.tensorrt.timing_cache {
            fix(t);
        }
        for cam in &mut self.cameras {
            if let Some(p) = cam.file_path() {
                if p.is_relative() {
                    cam.url = dir.join(p).to_string_lossy().into_owned();
                }
            }
        }
    }

    /// Checks values serde cannot: ranges, names, combinations. Returns (key, message, hint).
    fn validate(&self) -> Result<(), (String, String, String)> {
        let err = |k: &str, m: String, h: &str| Err((k.to_string(), m, h.to_string()));
        if !valid_name(&self.device_id) {
            return err(
                "device_id",
                format!("{:?} is not a valid topic level", self.device_id),
                "use letters, digits, '-' and '_' (it becomes jetwatch/<device_id>/...)",
            );
        }
        let b = &self.broker;
        if b.host.is_empty() {
            return err(
                "broker.host",
                "is empty".into(),
                "e.g. host = \"127.0.0.1\"",
            );
        }
        if b.port == 0 {
            return err(
                "broker.port",
                "must not be 0".into(),
                "MQTT uses 1883, or 8883 with TLS",
            );
        }
        if b.qos > 1 {
            return err(
                "broker.qos",
                format!("{} is not supported", b.qos),
                "use 0 (at most once) or 1 (at least once)",
            );
        }
        if b.outbox_messages == 0 {
            return err(
                "broker.outbox_messages",
                "must be at least 1".into(),
                "1024 keeps a few minutes of messages for one camera",
            );
        }
        if b.reconnect_min_ms == 0 || b.reconnect_min_ms > b.reconnect_max_ms {
            return err(
                "broker.reconnect_min_ms",
                format!(
                    "{} ms must be > 0 and <= reconnect_max_ms ({} ms)",
                    b.reconnect_min_ms, b.reconnect_max_ms
                ),
                "e.g. reconnect_min_ms = 200, reconnect_max_ms = 30000",
            );
        }
        if b.password.is_some() && b.username.is_none() {
            return err(
                "broker.password",
                "is set without a username".into(),
                "add username = \"...\"",
            );
        }
        if self.cameras.is_empty() {
            return err(
                "cameras",
                "no camera is configured".into(),
                "add a [[cameras]] table with name and url",
            );
        }
        if self.cameras.len() > 64 {
            return err(
                "cameras",
                format!("{} cameras; at most 64 are supported", self.cameras.len()),
                "",
            );
        }
        for (i, c) in self.cameras.iter().enumerate() {
            if !valid_name(&c.name) {
                return err(
                    "name",
                    format!("camera {i}: {:?} is not a valid topic level", c.name),
                    "use letters, digits, '-' and '_'",
                );
            }
            if self.cameras[..i].iter().any(|o| o.name == c.name) {
                return err(
                    "name",
                    format!("camera name {:?} is used twice", c.name),
                    "each camera needs its own name",
                );
            }
            if c.file_path().is_none() {
                let scheme = c.url.split("://").next().unwrap_or("");
                return err(
                    "url",
                    format!("camera {:?}: {:?} is not a file source", c.name, c.url),
                    &format!("this build reads MP4 and Annex-B files (file:///path or a plain path); `{scheme}://` sources are not supported by this build"),
                );
            }
        }
        let m = &self.model;
        if m.path.as_os_str().is_empty() {
            return err(
                "path",
                "model.path is empty".into(),
                "point it at an ONNX file, e.g. ../shared/models/yolov8n_fp32.onnx.gz",
            );
        }
        if !(0.0..=1.0).contains(&m.score_threshold) || m.score_threshold.is_nan() {
            return err(
                "score_threshold",
                format!("{} is outside 0..1", m.score_threshold),
                "0.25 is the usual YOLO value",
            );
        }
        if !(0.0..=1.0).contains(&m.iou_threshold) || m.iou_threshold.is_nan() {
            return err(
                "iou_threshold",
                format!("{} is outside 0..1", m.iou_threshold),
                "0.45 is the usual YOLO value",
            );
        }
        if m.max_detections == 0 || m.max_detections > crate::postprocess::MAX_DETECTIONS {
            return err(
                "max_detections",
                format!(
                    "{} is outside 1..={}",
                    m.max_detections,
                    crate::postprocess::MAX_DETECTIONS
                ),
                "100 is plenty for most scenes",
            );
        }
        let p = &self.pipeline;
        if p.batch_size == 0 || p.batch_size > 64 {
            return err(
                "batch_size",
                format!("{} is outside 1..=64", p.batch_size),
                "1 for one camera; up to the number of cameras otherwise",
            );
        }
        if p.frames_in_flight < 2 || p.frames_in_flight > 64 {
            return err(
                "frames_in_flight",
                format!("{} is outside 2..=64", p.frames_in_flight),
                "4 keeps latency low and absorbs jitter",
            );
        }
        if p.max_width < 16 || p.max_height < 16 || p.max_width > 8192 || p.max_height > 8192 {
            return err(
                "max_width",
                format!(
                    "{}x{} is not a usable maximum picture size",
                    p.max_width, p.max_height
                ),
                "1920 x 1088 covers 1080p",
            );
        }
        if p.max_access_unit_bytes < 4096 {
            return err(
                "max_access_unit_bytes",
                format!("{} is too small", p.max_access_unit_bytes),
                "2 MiB (2097152) covers 4K keyframes",
            );
        }
        if crate::engine::tensorrt::is_plan_file(&self.model.path) {
            if p.engine == EngineChoice::Onnxruntime {
                return err(
                    "model.path",
                    "is a TensorRT plan, which ONNX Runtime cannot run".into(),
                    "use engine = \"tensorrt\" (or \"auto\"), or point model.path at the ONNX model",
                );
            }
            if p.device == DeviceChoice::Cpu {
                return err(
                    "model.path",
                    "is a TensorRT plan, which needs the GPU path".into(),
                    "use device = \"cuda\" or \"auto\", or point model.path at the ONNX model",
                );
            }
        }
        if !(self.selftest.min_fps >= 0.0 && self.selftest.min_fps.is_finite()) {
            return err(
                "selftest.min_fps",
                format!("{} is not a frame rate", self.selftest.min_fps),
                "0 reports the rate without a floor",
            );
        }
        let t = &self.tensorrt;
        match (t.policy(), t.dla_core) {
            (DlaPolicy::Gpu, Some(c)) => {
                return err(
                    "tensorrt.dla_policy",
                    format!("\"gpu\" with dla_core = {c}"),
                    "use \"strict\" or \"fallback\" to run on the DLA, or drop dla_core",
                )
            }
            (p @ (DlaPolicy::Strict | DlaPolicy::Fallback), None) => {
                return err(
                    "tensorrt.dla_policy",
                    format!("\"{p}\" needs a DLA core"),
                    "add dla_core = 0 (or 1 on AGX Orin / Xavier), or use \"gpu\"",
                )
            }
            _ => {}
        }
        if t.dla_core.is_some_and(|c| c > 1) {
            return err(
                "tensorrt.dla_core",
                format!("{} is not a DLA core", t.dla_core.unwrap_or(0)),
                "Jetson modules have DLA cores 0 and 1 at most",
            );
        }
        if t.cache_dir.as_os_str().is_empty() {
            return err(
                "tensorrt.cache_dir",
                "is empty".into(),
                "e.g. cache_dir = \"/var/cache/jetwatch/engines\"",
            );
        }
        Ok(())
    }

    /// The model's class filter resolved against `labels` (names must exist).
    pub fn class_filter(&self, labels: &[String]) -> Result<Vec<u16>, String> {
        let mut out = Vec::new();
        for c in &self.model.classes {
            match c {
                ClassRef::Index(i) => {
                    if (*i as usize) < labels.len() || labels.is_empty() {
                        out.push(*i)
                    } else {
                        return Err(format!(
                            "model.classes: index {i} is past the model's {} classes",
                            labels.len()
                        ));
                    }
                }
                ClassRef::Name(n) => match labels.iter().position(|l| l == n) {
                    Some(i) => out.push(i as u16),
                    None => {
                        return Err(format!(
                            "model.classes: {n:?} is not one of the model's classes (e.g. {})",
                            labels
                                .iter()
                                .take(5)
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    }
                },
            }
        }
        Ok(out)
    }
}

impl CameraConfig {
    /// The file path of a `file://` URL or plain path; None for other schemes.
    pub fn file_path(&self) -> Option<PathBuf> {
        if let Some(rest) = self.url.strip_prefix("file://") {
            return Some(PathBuf::from(rest));
        }
        if self.url.contains("://") || self.url.is_empty() {
            return None;
        }
        Some(PathBuf::from(&self.url))
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Line of the first `key =` assignment whose last path component matches.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with(leaf) && t[leaf.len()..].trim_start().starts_with('=')
        })
        .map(|i| i + 1)
        .or_else(|| {
            let table = format!("[{leaf}");
            text.lines()
                .position(|l| l.trim_start().starts_with(&table))
                .map(|i| i + 1)
        })
}

fn hint_for(msg: &str) -> String {
    if msg.contains("unknown field") {
        "check the spelling against docs/config.md; unknown keys are rejected so typos never pass silently".into()
    } else if msg.contains("missing field") {
        "this key is required (see docs/config.md)".into()
    } else if msg.contains("unknown variant") {
        "use one of the values listed".into()
    } else if msg.contains("invalid type") {
        "check the value's type: strings are quoted, numbers are not".into()
    } else {
        "see docs/config.md for the format".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
device_id = "box-1"
[[cameras]]
name = "cam1"
url = "clip.mp4"
loop = true
[model]
path = "m.onnx"
classes = ["person", 2]
"#;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("test.toml"))
    }

    #[test]
    fn tensorrt_section_defaults_and_checks() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.tensorrt.cache_dir, Path::new(DEFAULT_ENGINE_CACHE));
        assert_eq!(c.tensorrt.precision, Precision::Fp16);
        assert_eq!(c.tensorrt.policy(), DlaPolicy::Gpu);
        let dla = parse(&format!(
            "{GOOD}[tensorrt]\ncache_dir = \"engines\"\nprecision = \"fp32\"\ndla_core = 1\n\
             timing_cache = \"t.cache\"\nworkspace_mib = 512\n"
        ))
        .unwrap();
        assert_eq!(dla.tensorrt.policy(), DlaPolicy::Fallback);
        assert_eq!(dla.tensorrt.precision, Precision::Fp32);
        assert_eq!(dla.tensorrt.workspace_mib, 512);
        let strict = parse(&format!(
            "{GOOD}[tensorrt]\ndla_core = 0\ndla_policy = \"strict\"\n"
        ))
        .unwrap();
        assert_eq!(strict.tensorrt.policy(), DlaPolicy::Strict);
        for (extra, key, needle) in [
            (
                "dla_core = 0\ndla_policy = \"gpu\"",
                "tensorrt.dla_policy",
                "dla_core = 0",
            ),
            (
                "dla_policy = \"strict\"",
                "tensorrt.dla_policy",
                "needs a DLA core",
            ),
            ("dla_core = 2", "tensorrt.dla_core", "not a DLA core"),
            ("cache_dir = \"\"", "tensorrt.cache_dir", "empty"),
        ] {
            let text = format!("{GOOD}[tensorrt]\n{extra}\n");
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key, key, "{extra}");
            assert!(e.msg.contains(needle), "{extra}: {e}");
            assert!(e.line.is_some(), "{extra}: {e}");
        }
        let e = parse(&format!("{GOOD}[tensorrt]\nprecision = \"int8\"\n")).unwrap_err();
        assert!(e.msg.contains("fp16"), "{e}");
        let e = parse(&format!("{GOOD}[tensorrt]\ndla_policy = \"maybe\"\n")).unwrap_err();
        assert!(e.msg.contains("fallback"), "{e}");
    }

    #[test]
    fn tensorrt_paths_resolve_against_the_config_file() {
        let dir = std::env::temp_dir().join(format!("jetwatch-cfg-trt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("j.toml");
        std::fs::write(
            &f,
            format!("{GOOD}[tensorrt]\ncache_dir = \"engines\"\ntiming_cache = \"/abs/t.cache\"\n"),
        )
        .unwrap();
        let c = Config::load(&f).unwrap();
        assert_eq!(c.tensorrt.cache_dir, dir.join("engines"));
        assert_eq!(
            c.tensorrt.timing_cache.as_deref(),
            Some(Path::new("/abs/t.cache"))
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.broker.port, 1883);
        assert_eq!(c.broker.qos, 1);
        assert!(c.cameras[0].looping);
        assert_eq!(c.cameras[0].pacing, Pacing::Realtime);
        assert_eq!(c.model.score_threshold, 0.25);
        assert_eq!(c.pipeline.batch_size, 1);
        let labels: Vec<String> = ["person", "bicycle", "car"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(c.class_filter(&labels).unwrap(), vec![0, 2]);
        assert!(c.class_filter(&labels[..1]).is_err());
    }

    #[test]
    fn unknown_key_is_rejected_with_line() {
        let bad = GOOD.replace("loop = true", "lopo = true");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.msg.contains("unknown field `lopo`"), "{e}");
        assert!(e.to_string().contains("test.toml:6"), "{e}");
    }

    #[test]
    fn bad_values_are_rejected_with_key_and_line() {
        let e = parse(&GOOD.replace("classes", "score_threshold = 1.5\nclasses")).unwrap_err();
        assert_eq!(e.key, "score_threshold");
        assert_eq!(e.line, Some(9));
        let e = parse(&GOOD.replace("[model]", "[broker]\nqos = 2\n[model]")).unwrap_err();
        assert_eq!(e.key, "broker.qos");
        assert!(!e.hint.is_empty());
        let e = parse(&GOOD.replace("clip.mp4", "rtsp://cam/stream")).unwrap_err();
        assert_eq!(e.key, "url");
        let e = parse(&GOOD.replace("box-1", "box 1")).unwrap_err();
        assert_eq!(e.key, "device_id");
        let e = parse(&GOOD.replace("[model]", "[pipeline]\nbatch_size = 0\n[model]")).unwrap_err();
        assert_eq!(e.key, "batch_size");
    }

    #[test]
    fn wrong_type_and_missing_sections_are_rejected() {
        let e = parse(&GOOD.replace("loop = true", "loop = \"yes\"")).unwrap_err();
        assert!(e.msg.contains("invalid type"), "{e}");
        let e = parse("device_id = \"x\"\n").unwrap_err();
        assert!(e.msg.contains("missing field"), "{e}");
    }

    #[test]
    fn example_config_is_valid_and_matches_the_defaults() {
        let c = parse(include_str!("../config/jetwatch.example.toml")).unwrap();
        assert_eq!(c.broker, BrokerConfig::default());
        assert_eq!(c.pipeline, PipelineConfig::default());
        assert_eq!(c.publish, PublishConfig::default());
        let m = ModelConfig {
            path: c.model.path.clone(),
            ..ModelConfig::default()
        };
        assert_eq!(c.model, m);
    }

    #[test]
    fn duplicate_camera_names_are_rejected() {
        let dup = format!("{GOOD}\n[[cameras]]\nname = \"cam1\"\nurl = \"b.h264\"\n");
        // The second [[cameras]] after [model] is still an array-of-tables entry.
        let e = parse(&dup).unwrap_err();
        assert!(e.msg.contains("used twice"), "{e}");
    }
}
