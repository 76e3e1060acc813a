//! Where the engine runs: GPU, or a DLA core under a policy. Pure logic over the per-layer
//! `IBuilderConfig::canRunOnDLA` answers the shim collects before the build.
//!
//! TensorRT developer guide, "Working with DLA": with `DeviceType::kDLA` as default device,
//! layers the DLA cannot run fail the build unless `BuilderFlag::kGPU_FALLBACK` is set, in
//! which case they run on the GPU (with reformat layers at each DLA↔GPU boundary).

use std::fmt;
use std::str::FromStr;

use super::version::TrtVersion;

/// What to do with layers the DLA cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DlaPolicy {
    /// Everything on the DLA; the build fails if any layer would leave it.
    Strict,
    /// DLA where possible, GPU fallback for the rest, reported as a warning.
    Fallback,
    /// No DLA at all.
    #[default]
    Gpu,
}

impl DlaPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DlaPolicy::Strict => "strict",
            DlaPolicy::Fallback => "fallback",
            DlaPolicy::Gpu => "gpu",
        }
    }
}

impl fmt::Display for DlaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DlaPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" => Ok(DlaPolicy::Strict),
            "fallback" => Ok(DlaPolicy::Fallback),
            "gpu" => Ok(DlaPolicy::Gpu),
            other => Err(format!(
                "unknown DLA policy {other:?}: expected \"strict\", \"fallback\" or \"gpu\""
            )),
        }
    }
}

/// One network layer and whether the configured DLA core can run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDla {
    pub name: String,
    pub can_run_on_dla: bool,
}

/// The decision handed to the shim before `buildSerializedNetwork`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementDecision {
    /// DLA core the engine is built for (None: GPU only).
    pub dla_core: Option<u32>,
    /// Whether `BuilderFlag::kGPU_FALLBACK` is set.
    pub gpu_fallback: bool,
    /// Layers that will run on the GPU although a DLA core was asked for.
    pub gpu_layers: Vec<String>,
    /// Warnings for the build report and the status topic.
    pub warnings: Vec<String>,
}

/// Why the policy refuses the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// A DLA policy without a DLA core, or a core on a policy that forbids it.
    Config(String),
    /// `strict`: these layers cannot run on the DLA.
    LayersLeaveDla { core: u32, layers: Vec<String> },
    /// The TensorRT version or device cannot use DLA.
    DlaUnsupported(String),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Config(m) | PolicyError::DlaUnsupported(m) => f.write_str(m),
            PolicyError::LayersLeaveDla { core, layers } => {
                write!(
                    f,
                    "DLA policy \"strict\": {} layer(s) cannot run on DLA core {core}: {}",
                    layers.len(),
                    short_list(layers, 8)
                )?;
                f.write_str(" (use dla_policy = \"fallback\" to run them on the GPU)")
            }
        }
    }
}

impl std::error::Error for PolicyError {}

/// Checks, before a build is even started, that the DLA request fits the version and device.
pub fn check_dla_request(
    policy: DlaPolicy,
    dla_core: Option<u32>,
    version: TrtVersion,
    dla_cores_on_device: u32,
) -> Result<Option<u32>, PolicyError> {
    match (policy, dla_core) {
        (DlaPolicy::Gpu, None) => Ok(None),
        (DlaPolicy::Gpu, Some(c)) => Err(PolicyError::Config(format!(
            "DLA core {c} given with dla_policy = \"gpu\": choose \"strict\" or \"fallback\", or drop the core"
        ))),
        (p, None) => Err(PolicyError::Config(format!(
            "dla_policy = \"{p}\" needs a DLA core (dla_core = 0 or 1)"
        ))),
        (_, Some(c)) => {
            version.dla_supported().map_err(PolicyError::DlaUnsupported)?;
            if c >= dla_cores_on_device {
                return Err(PolicyError::DlaUnsupported(format!(
                    "DLA core {c} requested but this device has {dla_cores_on_device} DLA core(s) \
                     (DLA exists on Jetson AGX Orin, Orin NX and Xavier only)"
                )));
            }
            Ok(Some(c))
        }
    }
}

/// Decides placement from the per-layer DLA answers.
pub fn decide(
    policy: DlaPolicy,
    dla_core: Option<u32>,
    layers: &[LayerDla],
) -> Result<PlacementDecision, PolicyError> {
    let core = match (policy, dla_core) {
        (DlaPolicy::Gpu, None) => {
            return Ok(PlacementDecision {
                dla_core: None,
                gpu_fallback: false,
                gpu_layers: Vec::new(),
                warnings: Vec::new(),
            })
        }
        (DlaPolicy::Gpu, Some(c)) => {
            return Err(PolicyError::Config(format!(
                "DLA core {c} given with dla_policy = \"gpu\""
            )))
        }
        (p, None) => {
            return Err(PolicyError::Config(format!(
                "dla_policy = \"{p}\" needs a DLA core"
            )))
        }
        (_, Some(c)) => c,
    };
    let off: Vec<String> = layers
        .iter()
        .filter(|l| !l.can_run_on_dla)
        .map(|l| l.name.clone())
        .collect();
    match policy {
        DlaPolicy::Strict if !off.is_empty() => {
            Err(PolicyError::LayersLeaveDla { core, layers: off })
        }
        DlaPolicy::Strict => Ok(PlacementDecision {
            dla_core: Some(core),
            gpu_fallback: false,
            gpu_layers: off,
            warnings: Vec::new(),
        }),
        _ => {
            let mut warnings = Vec::new();
            if !off.is_empty() {
                warnings.push(format!(
                    "{} of {} layers fall back from DLA core {core} to the GPU: {}",
                    off.len(),
                    layers.len(),
                    short_list(&off, 8)
                ));
            }
            Ok(PlacementDecision {
                dla_core: Some(core),
                gpu_fallback: true,
                gpu_layers: off,
                warnings,
            })
        }
    }
}

fn short_list(names: &[String], max: usize) -> String {
    let mut s = names
        .iter()
        .take(max)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > max {
        s.push_str(&format!(" and {} more", names.len() - max));
    }
    s
}
