//! The engine cache: a serialized plan is only valid for the exact model, TensorRT version,
//! GPU, DLA core, precision and batch profile it was built for (TensorRT developer guide,
//! "Engine compatibility": plans are not portable across TensorRT versions or devices unless
//! built version/hardware compatible, which jetwatch does not do). The cache key hashes all
//! of them; the file name comes from the key, and a small header file written beside each
//! plan records the key and the plan's digest. A plan whose header is missing, names another
//! key, or whose bytes do not hash to the recorded digest is stale: it is rebuilt, never
//! loaded. Writes go to a temporary file that is renamed into place.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::version::TrtVersion;

/// Precision the engine is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp16,
    Fp32,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fp16" => Ok(Precision::Fp16),
            "fp32" => Ok(Precision::Fp32),
            other => Err(format!(
                "unknown precision {other:?}: expected \"fp16\" or \"fp32\""
            )),
        }
    }
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp16 => "fp16",
            Precision::Fp32 => "fp32",
        }
    }
}

/// Batch optimisation profile (min ≤ opt ≤ max).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchProfile {
    pub min: u32,
    pub opt: u32,
    pub max: u32,
}

impl BatchProfile {
    pub fn fixed(n: u32) -> Self {
        BatchProfile {
            min: n,
            opt: n,
            max: n,
        }
    }
    pub fn validate(&self) -> Result<(), String> {
        if self.min >= 1 && self.min <= self.opt && self.opt <= self.max {
            Ok(())
        } else {
            Err(format!(
                "batch profile must satisfy 1 <= min <= opt <= max, got {}/{}/{}",
                self.min, self.opt, self.max
            ))
        }
    }
}

/// Everything a plan depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKeyInputs<'a> {
    pub onnx: &'a [u8],
    pub trt: TrtVersion,
    pub device_name: &'a str,
    /// CUDA compute capability (major, minor).
    pub compute_capability: (u32, u32),
    pub dla_core: Option<u32>,
    /// GPU fallback changes the plan when a DLA core is used.
    pub gpu_fallback: bool,
    pub precision: Precision,
    pub batch: BatchProfile,
}

/// A computed cache key: its fields in readable form and their sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// `key=value` lines, in a fixed order; the text that is hashed.
    pub description: String,
    /// Hex sha256 of `description`.
    pub hex: String,
}

const FORMAT: &str = "jetwatch-trt-plan-v1";

impl CacheKey {
    pub fn new(i: &CacheKeyInputs<'_>) -> CacheKey {
        let model = hex(&Sha256::digest(i.onnx));
        let mut d = String::new();
        // Write to a String cannot fail.
        let _ = writeln!(d, "format={FORMAT}");
        let _ = writeln!(d, "model_sha256={model}");
        let _ = writeln!(d, "tensorrt={}", i.trt);
        // Names are free text: escape the line separator so fields cannot run together.
        let _ = writeln!(d, "device={}", i.device_name.replace('\n', "\\n"));
        let _ = writeln!(
            d,
            "compute_capability={}.{}",
            i.compute_capability.0, i.compute_capability.1
        );
        match i.dla_core {
            Some(c) => {
                let _ = writeln!(d, "dla_core={c}");
            }
            None => {
                let _ = writeln!(d, "dla_core=none");
            }
        }
        let _ = writeln!(d, "gpu_fallback={}", i.gpu_fallback);
        let _ = writeln!(d, "precision={}", i.precision.as_str());
        let _ = writeln!(d, "batch={}/{}/{}", i.batch.min, i.batch.opt, i.batch.max);
        let hex = hex(&Sha256::digest(d.as_bytes()));
        CacheKey {
            description: d,
            hex,
        }
    }

    /// File name of the plan: readable prefix plus the first 32 hex digits of the key.
    pub fn file_name(&self, model_stem: &str) -> String {
        let stem: String = model_stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(48)
            .collect();
        let stem = if stem.is_empty() {
            "model".to_string()
        } else {
            stem
        };
        format!("{stem}-{}.engine", &self.hex[..32])
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Path of the header written beside `plan`.
pub fn header_path(plan: &Path) -> PathBuf {
    let mut p = plan.as_os_str().to_owned();
    p.push(".key");
    PathBuf::from(p)
}

/// Text of the header for `key` and the plan bytes.
pub fn header_text(key: &CacheKey, plan: &[u8]) -> String {
    format!(
        "{FORMAT}\nkey={}\nplan_sha256={}\nplan_bytes={}\n{}",
        key.hex,
        hex(&Sha256::digest(plan)),
        plan.len(),
        key.description
    )
}

/// Whether a cached plan may be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanStatus {
    /// The plan matches the key; here are its bytes.
    Valid(Vec<u8>),
    /// No plan at that path.
    Missing,
    /// A plan exists but must be rebuilt, and why.
    Stale(String),
}

/// Checks a header's text against the expected key and the plan bytes.
pub fn validate_header(header: &str, key: &CacheKey, plan: &[u8]) -> Result<(), String> {
    let mut lines = header.lines();
    if lines.next() != Some(FORMAT) {
        return Err(format!("header is not {FORMAT}"));
    }
    let mut found_key = None;
    let mut found_sha = None;
    let mut found_len = None;
    for line in lines {
        if let Some(v) = line.strip_prefix("key=") {
            found_key.get_or_insert(v);
        } else if let Some(v) = line.strip_prefix("plan_sha256=") {
            found_sha.get_or_insert(v);
        } else if let Some(v) = line.strip_prefix("plan_bytes=") {
            found_len.get_or_insert(v);
        }
    }
    let found_key = found_key.ok_or("header has no key")?;
    if found_key != key.hex {
        return Err(format!(
            "plan was built for key {found_key}, expected {}",
            key.hex
        ));
    }
    let len: usize = found_len
        .and_then(|v| v.parse().ok())
        .ok_or("header has no plan_bytes")?;
    if len != plan.len() {
        return Err(format!(
            "plan is {} bytes, header says {len} (truncated or replaced)",
            plan.len()
        ));
    }
    let sha = found_sha.ok_or("header has no plan_sha256")?;
    if sha != hex(&Sha256::digest(plan)) {
        return Err("plan bytes do not match the digest in its header".into());
    }
    Ok(())
}

/// Reads and checks the plan at `path` against `key`.
pub fn load_plan(path: &Path, key: &CacheKey) -> io::Result<PlanStatus> {
    let plan = match fs::read(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PlanStatus::Missing),
        Err(e) => return Err(e),
    };
    let header = match fs::read_to_string(header_path(path)) {
        Ok(h) => h,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(PlanStatus::Stale(format!(
                "{} has no header {}",
                path.display(),
                header_path(path).display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Ok(PlanStatus::Stale("header is not text".into()))
        }
        Err(e) => return Err(e),
    };
    Ok(match validate_header(&header, key, &plan) {
        Ok(()) => PlanStatus::Valid(plan),
        Err(why) => PlanStatus::Stale(why),
    })
}

/// Checks, before a build that may take minutes, that a plan can be stored at `path`: its
/// directory exists or can be created, and a file can be created and removed in it.
pub fn check_writable(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".jetwatch-write-test{}", std::process::id()));
    fs::File::create(&probe)?;
    fs::remove_file(&probe)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Stores a plan and its header. The header is removed first and written last, so a crash
/// in between leaves a plan without a header: stale, rebuilt on the next start.
pub fn store_plan(path: &Path, key: &CacheKey, plan: &[u8]) -> io::Result<()> {
    let h = header_path(path);
    match fs::remove_file(&h) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    write_atomic(path, plan)?;
    write_atomic(&h, header_text(key, plan).as_bytes())
}
