//! The placement report: which device runs each engine layer and where TensorRT inserted
//! reformat layers, from `IEngineInspector::getEngineInformation(LayerInformationFormat::kJSON)`
//! (TensorRT API, `nvinfer1::IEngineInspector`; detailed only when the engine was built with
//! `ProfilingVerbosity::kDETAILED`, which jetwatch's builds are).
//!
//! The JSON has a `Layers` array of either strings (names only) or objects with `Name`,
//! `LayerType`, `TacticName`, `Origin` (the format NVIDIA's trt-engine-explorer reads).
//! A layer counts as DLA when its `LayerType` or `TacticName` mentions DLA; a layer whose
//! `LayerType` is `Reformat` is a reformat (format/precision conversion) layer.

use std::fmt;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Gpu,
    Dla,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Gpu => "GPU",
            Device::Dla => "DLA",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlacement {
    pub name: String,
    /// `LayerType` from the inspector ("" when the engine has names only).
    pub layer_type: String,
    pub device: Device,
    pub reformat: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlacementReport {
    pub layers: Vec<LayerPlacement>,
    /// False when the engine was built without detailed profiling (types unknown).
    pub detailed: bool,
}

impl PlacementReport {
    /// Parses the inspector's JSON.
    pub fn from_inspector_json(json: &str) -> Result<PlacementReport, String> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| format!("engine inspector JSON does not parse: {e}"))?;
        let layers = v
            .get("Layers")
            .and_then(Value::as_array)
            .ok_or("engine inspector JSON has no \"Layers\" array")?;
        let mut out = PlacementReport {
            layers: Vec::with_capacity(layers.len()),
            detailed: true,
        };
        for (i, l) in layers.iter().enumerate() {
            match l {
                Value::String(name) => {
                    out.detailed = false;
                    out.layers.push(LayerPlacement {
                        name: name.clone(),
                        layer_type: String::new(),
                        device: Device::Gpu,
                        reformat: false,
                    });
                }
                Value::Object(m) => {
                    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
                    let name = s("Name");
                    let layer_type = s("LayerType");
                    let tactic = s("TacticName");
                    let dla = layer_type.to_ascii_lowercase().contains("dla")
                        || tactic.to_ascii_lowercase().contains("dla");
                    out.layers.push(LayerPlacement {
                        name: if name.is_empty() {
                            format!("layer {i}")
                        } else {
                            name.to_string()
                        },
                        layer_type: layer_type.to_string(),
                        device: if dla { Device::Dla } else { Device::Gpu },
                        reformat: layer_type.eq_ignore_ascii_case("Reformat"),
                    });
                }
                other => {
                    return Err(format!(
                        "engine inspector layer {i} is {other}, not a name or an object"
                    ))
                }
            }
        }
        Ok(out)
    }

    pub fn count(&self, device: Device) -> usize {
        self.layers.iter().filter(|l| l.device == device).count()
    }

    pub fn reformats(&self) -> usize {
        self.layers.iter().filter(|l| l.reformat).count()
    }
}

impl fmt::Display for PlacementReport {
    /// A summary line, then one line per layer: device, type, name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "layers: {} total, {} on GPU, {} on DLA, {} reformat",
            self.layers.len(),
            self.count(Device::Gpu),
            self.count(Device::Dla),
            self.reformats()
        )?;
        if !self.detailed {
            writeln!(
                f,
                "(engine built without detailed profiling verbosity: devices and layer types unknown)"
            )?;
        }
        let w = self
            .layers
            .iter()
            .map(|l| l.layer_type.len())
            .max()
            .unwrap_or(0)
            .max(4);
        for l in &self.layers {
            let mark = if l.reformat { " *" } else { "" };
            writeln!(
                f,
                "  {:<3}  {:<w$}  {}{mark}",
                l.device.as_str(),
                l.layer_type,
                l.name
            )?;
        }
        if self.reformats() > 0 {
            writeln!(f, "  (* reformat layer: a format or precision conversion)")?;
        }
        Ok(())
    }
}
