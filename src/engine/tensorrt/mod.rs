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

use crate::config::TensorRtConfig;
use crate::engine::describe::{self, read_model, ImageInput};
use crate::engine::onnx::{self, OnnxSummary};
use crate::engine::ModelInfo;
use crate::error::{EngineError, Unavailable};
use crate::tensor::TensorSpec;

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

/// What the pipeline (or `jetwatch engine build --config`) asks TensorRT for, worked out
/// from the config and the ONNX file alone: no TensorRT needed, so it is tested everywhere.
#[derive(Debug, Clone)]
pub struct PipelinePlan {
    pub args: EngineBuildArgs,
    pub onnx: OnnxSummary,
    pub input: ImageInput,
}

/// The batch profile for a model whose input batch is `onnx_batch` (`None`: dynamic) in a
/// pipeline of batch `max_batch`: a fixed batch builds exactly that; a dynamic one is
/// optimised for full batches (the pipeline's steady state) and accepts 1..=max_batch.
pub fn batch_profile(onnx_batch: Option<usize>, max_batch: usize) -> BatchProfile {
    match onnx_batch {
        Some(n) => BatchProfile::fixed(n as u32),
        None => BatchProfile {
            min: 1,
            opt: max_batch as u32,
            max: max_batch as u32,
        },
    }
}

/// Reads and checks `model` (one float32/float16 `[N, 3, H, W]` input whose batch fits
/// `max_batch`) and fills the build arguments from `t`.
pub fn pipeline_plan(
    model: &Path,
    max_batch: usize,
    gpu: u32,
    t: &TensorRtConfig,
) -> Result<PipelinePlan, EngineError> {
    let layout = |msg: String| EngineError::Layout {
        path: model.to_path_buf(),
        msg,
    };
    let bytes = read_model(model)?;
    let onnx = OnnxSummary::parse(&bytes).map_err(|msg| EngineError::Model {
        path: model.to_path_buf(),
        msg,
    })?;
    drop(bytes);
    let input = match &onnx.inputs[..] {
        [one] => one,
        many => {
            return Err(layout(format!(
                "it has {} inputs; jetwatch feeds one image input [N, 3, H, W]",
                many.len()
            )))
        }
    };
    if input.elem_type != onnx::ELEM_FLOAT && input.elem_type != onnx::ELEM_FLOAT16 {
        return Err(layout(format!(
            "input `{}` has ONNX element type {}; jetwatch feeds float32 (1) or float16 (10)",
            input.name, input.elem_type
        )));
    }
    let dims: Vec<Option<usize>> = input
        .dims
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|d| d.fixed())
        .collect();
    let image = ImageInput::from_dims(&input.name, &dims).map_err(layout)?;
    image.check_batch(max_batch, model).map_err(layout)?;
    if onnx.outputs.is_empty() {
        return Err(layout("it has no outputs".into()));
    }
    let mut args = EngineBuildArgs::new(model);
    args.cache_dir = t.cache_dir.clone();
    args.gpu = gpu;
    args.precision = t.precision;
    args.dla_core = t.dla_core;
    args.dla_policy = t.policy();
    args.batch = batch_profile(image.batch, max_batch);
    args.timing_cache = t.timing_cache.clone();
    args.workspace_bytes = t.workspace_mib << 20;
    Ok(PipelinePlan {
        args,
        input: image,
        onnx,
    })
}

/// Whether `path` names a serialized TensorRT plan (`.engine`, `.plan`, `.trt`) rather than
/// an ONNX model: the pipeline then loads it as it is (no cache, no build).
pub fn is_plan_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "engine" | "plan" | "trt"))
}

/// The [`ModelInfo`] of a prebuilt plan from its tensors alone (a plan carries no ONNX
/// metadata: class names come from `labels_file`, else `class<i>`). The head is the first
/// output in the engine's order. The plan's largest batch must be `max_batch`.
pub fn describe_prebuilt(
    plan: &Path,
    labels_file: Option<&Path>,
    input: &TensorSpec,
    outputs: &[TensorSpec],
    max_batch: usize,
) -> Result<ModelInfo, EngineError> {
    let layout = |msg: String| EngineError::Layout {
        path: plan.to_path_buf(),
        msg,
    };
    let dims: Vec<Option<usize>> = input.shape.iter().map(|&d| Some(d)).collect();
    let image = ImageInput::from_dims(&input.name, &dims).map_err(layout)?;
    if image.batch != Some(max_batch) {
        return Err(layout(format!(
            "the plan's largest batch is {}, the pipeline batch is {max_batch}; they must match \
             (set pipeline.batch_size, or build the plan with `jetwatch engine build --batch \
             {max_batch}`)",
            input.shape.first().copied().unwrap_or(0)
        )));
    }
    let head = outputs
        .first()
        .ok_or_else(|| layout("the plan has no outputs".into()))?;
    describe::model_info(&describe::Facts {
        model: plan,
        labels_file,
        names_metadata: None,
        input: image,
        input_dtype: input.dtype,
        head_item_shape: head.shape.get(1..).unwrap_or_default(),
        max_batch,
    })
}

/// The [`ModelInfo`] of a plan built for `plan`, from the plan's tensors (`input`, and
/// `outputs` in the engine's order). Also returns the engine's output indices in the ONNX
/// graph's output order, which is the order [`crate::engine::Engine::outputs`] keeps (the
/// head is the first ONNX output).
pub fn describe_plan(
    plan: &PipelinePlan,
    labels_file: Option<&Path>,
    input: &TensorSpec,
    outputs: &[TensorSpec],
) -> Result<(ModelInfo, Vec<usize>), EngineError> {
    let model = &plan.args.onnx;
    let layout = |msg: String| EngineError::Layout {
        path: model.clone(),
        msg,
    };
    let want = [
        plan.args.batch.max as usize,
        3,
        plan.input.height,
        plan.input.width,
    ];
    if input.shape != want {
        return Err(layout(format!(
            "the plan's input {} is {:?}, the ONNX model's is {want:?} (a plan built from another model?)",
            input.name, input.shape
        )));
    }
    let mut order = Vec::with_capacity(outputs.len());
    for o in &plan.onnx.outputs {
        match outputs.iter().position(|s| s.name == o.name) {
            Some(i) if order.contains(&i) => {
                return Err(layout(format!(
                    "the ONNX model declares output `{}` twice",
                    o.name
                )))
            }
            Some(i) => order.push(i),
            None => {
                return Err(layout(format!(
                    "the plan has no output `{}`, which the ONNX model declares",
                    o.name
                )))
            }
        }
    }
    if order.len() != outputs.len() {
        return Err(layout(format!(
            "the plan has {} outputs, the ONNX model {}",
            outputs.len(),
            order.len()
        )));
    }
    let head = &outputs[order[0]];
    let info = describe::model_info(&describe::Facts {
        model,
        labels_file,
        names_metadata: plan.onnx.metadata("names"),
        input: plan.input,
        input_dtype: input.dtype,
        head_item_shape: head.shape.get(1..).unwrap_or_default(),
        max_batch: plan.args.batch.max as usize,
    })?;
    Ok((info, order))
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

/// Whether this build can use TensorRT on this host: the library's version, or the error
/// that says what is missing and how to get it (the first thing `jetwatch engine` checks).
pub fn check_usable() -> Result<TrtVersion, EngineError> {
    #[cfg(feature = "tensorrt")]
    {
        tensorrt_available().map_err(EngineError::Unavailable)
    }
    #[cfg(not(feature = "tensorrt"))]
    {
        Err(not_compiled())
    }
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

/// `engine = "auto"`: whether TensorRT should be preferred on this build and host: the
/// feature is compiled in and the library the shim will open (`JETWATCH_NVINFER`, else
/// `libnvinfer.so.<header major>`) loads and is compatible with the headers.
pub fn prefer_tensorrt() -> Result<TrtVersion, Unavailable> {
    #[cfg(feature = "tensorrt")]
    {
        let header = shim::Runtime::header_version();
        let v = match std::env::var_os(shim::NVINFER_ENV) {
            Some(_) => tensorrt_available()?,
            None => probe::probe_one(&format!("libnvinfer.so.{}", header.major)).map_err(|e| {
                Unavailable {
                    backend: "tensorrt",
                    reason: format!("{e} ({INSTALL_HINT})"),
                }
            })?,
        };
        version::check_runtime_compat(header, v).map_err(|reason| Unavailable {
            backend: "tensorrt",
            reason,
        })?;
        Ok(v)
    }
    #[cfg(not(feature = "tensorrt"))]
    Err(Unavailable {
        backend: "tensorrt",
        reason: "this jetwatch build has no TensorRT support (feature `tensorrt`)".into(),
    })
}

/// Reads the `key=value` description lines of a plan header (for `engine inspect`).
pub fn header_field<'a>(header: &'a str, field: &str) -> Option<&'a str> {
    header.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix('='))
    })
}
