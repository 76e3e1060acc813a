//! Native TensorRT: engine build from ONNX (FP16, GPU or DLA under a [`DlaPolicy`]), a
//! deterministic engine cache, a placement report, and execution with `enqueueV3` on the
//! pipeline's stream.
//!
//! Layers (STYLE.md §1): `jetwatch_ffi::tensorrt` declares the C ABI of our C++ shim
//! (`ffi/tensorrt/shim.cpp`, which dlopens libnvinfer); `shim` owns the handles and turns
//! statuses into `Result`s; [`TensorRtEngine`] implements [`crate::engine::Engine`].
//! The logic around the shim — [`version`] gating, [`cache`] keys and plan headers,
//! [`policy`] decisions, [`report`] formatting, [`progress`] lines — is plain Rust compiled
//! on every build, so CI tests it without TensorRT. See docs/tensorrt.md.

pub mod cache;
pub mod policy;
pub mod probe;
pub mod progress;
pub mod report;
pub mod version;

#[cfg(feature = "tensorrt")]
mod engine;
#[cfg(feature = "tensorrt")]
mod shim;

#[cfg(all(feature = "tensorrt", not(any(feature = "cuda12", feature = "cuda13"))))]
compile_error!(
    "the `tensorrt` feature needs a CUDA version feature: `cuda12` (JetPack 6) or `cuda13`"
);

use std::fmt;
use std::path::{Path, PathBuf};

pub use cache::{BatchProfile, CacheKey, Precision};
#[cfg(feature = "tensorrt")]
pub use engine::{load_or_build, LoadedPlan, TensorRtEngine};
pub use policy::{DlaPolicy, PlacementDecision};
pub use probe::{tensorrt_available, INSTALL_HINT};
pub use progress::ProgressTracker;
pub use report::PlacementReport;
pub use version::TrtVersion;

use crate::error::{EngineError, Unavailable};

/// What `jetwatch engine build` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineBuildArgs {
    /// The ONNX model.
    pub onnx: PathBuf,
    /// Directory of cached plans; the file name comes from the cache key.
    pub cache_dir: PathBuf,
    /// Write the plan to this path instead of the cache directory (a header is still
    /// written beside it).
    pub output: Option<PathBuf>,
    /// CUDA device ordinal.
    pub gpu: u32,
    pub precision: Precision,
    pub dla_core: Option<u32>,
    pub dla_policy: DlaPolicy,
    pub batch: BatchProfile,
    /// Timing cache file, read if present and written back after the build.
    pub timing_cache: Option<PathBuf>,
    /// Builder workspace limit in bytes (0: TensorRT's default).
    pub workspace_bytes: u64,
    /// Rebuild even when a valid cached plan exists.
    pub force: bool,
}

impl EngineBuildArgs {
    /// Defaults for a model: FP16 on the GPU, batch 1, cache next to the model.
    pub fn new(onnx: impl Into<PathBuf>) -> Self {
        let onnx = onnx.into();
        let cache_dir = onnx
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        EngineBuildArgs {
            onnx,
            cache_dir,
            output: None,
            gpu: 0,
            precision: Precision::Fp16,
            dla_core: None,
            dla_policy: DlaPolicy::Gpu,
            batch: BatchProfile::fixed(1),
            timing_cache: None,
            workspace_bytes: 0,
            force: false,
        }
    }

    /// Where the plan for `key` is stored.
    pub fn plan_path(&self, key: &CacheKey) -> PathBuf {
        match &self.output {
            Some(p) => p.clone(),
            None => {
                let stem = self
                    .onnx
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("model");
                let stem = stem.strip_suffix(".onnx").unwrap_or(stem);
                self.cache_dir.join(key.file_name(stem))
            }
        }
    }
}

/// What a build (or a cache hit) produced; `Display` prints it for the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    pub plan: PathBuf,
    /// True when a valid cached plan was used and nothing was built.
    pub cached: bool,
    pub key: CacheKey,
    pub tensorrt: TrtVersion,
    pub device_name: String,
    pub compute_capability: (u32, u32),
    pub precision: Precision,
    pub dla_core: Option<u32>,
    pub dla_policy: DlaPolicy,
    /// Warnings for the operator and the status topic (GPU fallback, precision notes).
    pub warnings: Vec<String>,
    pub placement: PlacementReport,
    pub build_seconds: f64,
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "engine: {}{}",
            self.plan.display(),
            if self.cached {
                " (cached, not rebuilt)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "TensorRT {} on {} (compute {}.{}), {}, {}, DLA policy {}",
            self.tensorrt,
            self.device_name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.precision.as_str(),
            match self.dla_core {
                Some(c) => format!("DLA core {c}"),
                None => "GPU".to_string(),
            },
            self.dla_policy
        )?;
        if !self.cached {
            writeln!(f, "built in {:.1} s", self.build_seconds)?;
        }
        writeln!(f, "cache key: {}", self.key.hex)?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        write!(f, "{}", self.placement)
    }
}

/// The error returned when TensorRT cannot be used on this build or host.
pub fn unavailable(reason: impl Into<String>) -> EngineError {
    EngineError::Unavailable(Unavailable {
        backend: "tensorrt",
        reason: reason.into(),
    })
}

#[cfg(not(feature = "tensorrt"))]
fn not_compiled() -> EngineError {
    let host = match tensorrt_available() {
        Ok(v) => format!("libnvinfer {v} is present on this host"),
        Err(e) => format!("and this host has no TensorRT either: {}", e.reason),
    };
    unavailable(format!(
        "TensorRT support is not compiled into this jetwatch build (rebuild with \
         `--features cuda12,tensorrt` for JetPack 6 or `--features cuda13,tensorrt`, and \
         TENSORRT_INCLUDE=<directory with NvInfer.h>); {host}"
    ))
}

/// `jetwatch engine build`: builds (or finds in the cache) the plan for `args`, reporting
/// progress lines to `progress`.
pub fn engine_build(
    args: &EngineBuildArgs,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildReport, EngineError> {
    #[cfg(feature = "tensorrt")]
    {
        load_or_build(args, progress).map(|(_, report)| report)
    }
    #[cfg(not(feature = "tensorrt"))]
    {
        let _ = (args, progress);
        Err(not_compiled())
    }
}

/// `jetwatch engine inspect`: the placement report of a plan file (and its cache header, if
/// one is beside it).
pub fn engine_inspect(plan: &Path) -> Result<String, EngineError> {
    #[cfg(feature = "tensorrt")]
    {
        engine::inspect(plan)
    }
    #[cfg(not(feature = "tensorrt"))]
    {
        let _ = plan;
        Err(not_compiled())
    }
}

/// `engine = "auto"`: whether TensorRT should be preferred on this build and host.
pub fn prefer_tensorrt() -> Result<TrtVersion, Unavailable> {
    if !cfg!(feature = "tensorrt") {
        return Err(Unavailable {
            backend: "tensorrt",
            reason: "this jetwatch build has no TensorRT support (feature `tensorrt`)".into(),
        });
    }
    tensorrt_available()
}

/// Reads the `key=value` description lines of a plan header (for `engine inspect`).
pub fn header_field<'a>(header: &'a str, field: &str) -> Option<&'a str> {
    header.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix('='))
    })
}
