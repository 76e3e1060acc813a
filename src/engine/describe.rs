//! From a model's tensors to a [`ModelInfo`]: one set of rules for every engine (ONNX Runtime
//! learns the shapes from its session, TensorRT from its plan), so both describe the same
//! model the same way: the image input, the batch check, the head recognised from the first
//! output, class names (labels file, else the ONNX `names` metadata) and the preprocessing
//! the head's family was trained with.

use std::io::Read;
use std::path::Path;

use super::{labels, ModelInfo};
use crate::error::EngineError;
use crate::postprocess::HeadKind;
use crate::preprocess::{ChannelOrder, Placement, PreprocessSpec};
use crate::tensor::DType;

/// Reads a model, gunzipping `.gz` files (or any file starting with the gzip magic).
pub fn read_model(path: &Path) -> Result<Vec<u8>, EngineError> {
    let model_err = |msg: String| EngineError::Model {
        path: path.to_path_buf(),
        msg,
    };
    let raw = std::fs::read(path).map_err(|e| model_err(format!("cannot read it: {e}")))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| model_err(format!("cannot decompress it (gzip): {e}")))?;
        Ok(out)
    } else if path.extension().is_some_and(|e| e == "gz") {
        Err(model_err("named .gz but not gzip data".into()))
    } else {
        Ok(raw)
    }
}

/// The image input: `[N, 3, H, W]` with fixed H and W. `N` is `None` when dynamic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInput {
    pub batch: Option<usize>,
    pub height: usize,
    pub width: usize,
}

impl ImageInput {
    /// Checks an input shape (`None`: a dynamic or unknown dimension).
    pub fn from_dims(name: &str, dims: &[Option<usize>]) -> Result<ImageInput, String> {
        let show = || {
            let d: Vec<String> = dims
                .iter()
                .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
                .collect();
            format!("[{}]", d.join(", "))
        };
        match *dims {
            [n, Some(3), Some(h), Some(w)] => Ok(ImageInput {
                batch: n,
                height: h,
                width: w,
            }),
            [_, _, _, _] => Err(format!(
                "input `{name}` has shape {}; expected [N, 3, H, W] with a fixed height and \
                 width (export the model with a fixed image size)",
                show()
            )),
            _ => Err(format!(
                "input `{name}` has shape {}; expected [N, 3, H, W]",
                show()
            )),
        }
    }

    /// Checks the model's batch against the pipeline's; true when the batch is dynamic.
    pub fn check_batch(&self, max_batch: usize, model: &Path) -> Result<bool, String> {
        if max_batch == 0 {
            return Err("max_batch must be at least 1".into());
        }
        match self.batch {
            None => Ok(true),
            Some(n) if n == max_batch => Ok(false),
            Some(1) => Err(format!(
                "its batch size is fixed to 1 but pipeline batch is {max_batch}; make a \
                 dynamic-batch copy with `python3 tools/make_dynamic_batch.py {} OUT.onnx` \
                 or set the batch size to 1",
                model.display()
            )),
            Some(n) => Err(format!(
                "its batch size is fixed to {n} but the pipeline batch is {max_batch}; they \
                 must match (or use a dynamic-batch model)"
            )),
        }
    }
}

/// Anchor count of a YOLO grid with the given strides on a `w × h` canvas.
pub fn grid_anchors(w: usize, h: usize, strides: &[usize]) -> usize {
    strides
        .iter()
        .map(|s| w.div_ceil(*s) * h.div_ceil(*s))
        .sum()
}

const LAYOUTS: &str = "jetwatch understands YOLOv8/YOLO11 [B, 4+C, N], YOLOv5 [B, 3·N, 5+C], \
     YOLOX [B, N, 5+C] (raw grid, strides 8/16/32) and end-to-end [B, K, 6] \
     (x0 y0 x1 y1 score class), where N is the anchor count of the input size \
     (e.g. 8400 for 640, 3549 for 416)";

/// Recognises the head from the first output's per-item shape and the input canvas.
pub fn recognise_head(item_shape: &[usize], w: usize, h: usize) -> Result<HeadKind, String> {
    let n3 = grid_anchors(w, h, &[8, 16, 32]);
    let n4 = grid_anchors(w, h, &[8, 16, 32, 64]);
    match *item_shape {
        [a, b] if a >= 5 && (b == n3 || b == n4) => Ok(HeadKind::YoloV8 {
            classes: a - 4,
            anchors: b,
        }),
        [k, 6] if k < n3 => Ok(HeadKind::EndToEnd { max_detections: k }),
        [a, b] if b >= 6 && a == 3 * n3 => Ok(HeadKind::YoloV5 {
            classes: b - 5,
            anchors: a,
        }),
        [a, b] if b >= 6 && a == n3 => Ok(HeadKind::YoloX {
            classes: b - 5,
            anchors: a,
            decoded: false,
        }),
        [c, gh, gw] if c >= 6 && gh == h.div_ceil(16) && gw == w.div_ceil(16) => Err(format!(
            "output [1, {c}, {gh}, {gw}] looks like FastestDet (one cell per 16 px), whose \
             head is not supported; {LAYOUTS}"
        )),
        _ => Err(format!(
            "output of shape [B, {}] is not a detector head jetwatch knows for a {w}x{h} \
             input; {LAYOUTS}",
            item_shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Ultralytics' letterbox (YOLOv5/v8/11): RGB, 0..1, centred, grey 114 padding.
pub fn ultralytics_preprocess(w: usize, h: usize, dtype: DType) -> PreprocessSpec {
    PreprocessSpec {
        width: w as u32,
        height: h as u32,
        placement: Placement::Centre,
        order: ChannelOrder::Rgb,
        scale: 1.0 / 255.0,
        pad: 114.0,
        dtype,
    }
}

/// What an engine learnt about its model.
pub struct Facts<'a> {
    /// The model file (for messages).
    pub model: &'a Path,
    /// The configured labels file, which wins over the metadata.
    pub labels_file: Option<&'a Path>,
    /// The ONNX `names` metadata, if any.
    pub names_metadata: Option<&'a str>,
    pub input: ImageInput,
    pub input_dtype: DType,
    /// The first output's shape without its batch dimension.
    pub head_item_shape: &'a [usize],
    pub max_batch: usize,
}

/// The [`ModelInfo`] for `facts`.
pub fn model_info(f: &Facts<'_>) -> Result<ModelInfo, EngineError> {
    let layout = |msg: String| EngineError::Layout {
        path: f.model.to_path_buf(),
        msg,
    };
    let (w, h) = (f.input.width, f.input.height);
    let head = recognise_head(f.head_item_shape, w, h).map_err(layout)?;
    let classes = match head {
        HeadKind::YoloV8 { classes, .. }
        | HeadKind::YoloV5 { classes, .. }
        | HeadKind::YoloX { classes, .. } => classes,
        HeadKind::EndToEnd { .. } => 0,
    };
    let names = match (f.labels_file, f.names_metadata) {
        (Some(file), _) => {
            Some(
                labels::read_labels_file(file).map_err(|msg| EngineError::Model {
                    path: file.to_path_buf(),
                    msg,
                })?,
            )
        }
        (None, Some(meta)) => match labels::parse_names_dict(meta) {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!("{}: ignoring the `names` metadata: {e}", f.model.display());
                None
            }
        },
        (None, None) => None,
    };
    if let Some(l) = &names {
        if classes > 0 && l.len() != classes {
            log::warn!(
                "{}: {} class names for {classes} classes",
                f.model.display(),
                l.len()
            );
        }
    }
    let mut preprocess = ultralytics_preprocess(w, h, f.input_dtype);
    if matches!(head, HeadKind::YoloX { .. }) {
        // Megvii YOLOX: BGR, 0..255, top-left letterbox (yolox/data/data_augment.py,
        // `preproc`).
        preprocess.placement = Placement::TopLeft;
        preprocess.order = ChannelOrder::Bgr;
        preprocess.scale = 1.0;
    }
    Ok(ModelInfo {
        preprocess,
        head,
        labels: labels::complete(names, classes),
        max_batch: f.max_batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_input_rules() {
        let ok = ImageInput::from_dims("images", &[None, Some(3), Some(416), Some(640)]).unwrap();
        assert_eq!((ok.batch, ok.height, ok.width), (None, 416, 640));
        assert!(ok.check_batch(8, Path::new("m.onnx")).unwrap());
        let fixed = ImageInput::from_dims("x", &[Some(1), Some(3), Some(64), Some(64)]).unwrap();
        assert!(!fixed.check_batch(1, Path::new("m.onnx")).unwrap());
        let e = fixed.check_batch(4, Path::new("m.onnx")).unwrap_err();
        assert!(e.contains("make_dynamic_batch.py m.onnx"), "{e}");
        let e = ImageInput::from_dims("x", &[Some(1), Some(3), None, Some(64)]).unwrap_err();
        assert!(
            e.contains("[1, 3, ?, 64]") && e.contains("fixed height"),
            "{e}"
        );
        let e = ImageInput::from_dims("x", &[Some(1), Some(640), Some(640)]).unwrap_err();
        assert!(e.contains("expected [N, 3, H, W]"), "{e}");
    }

    #[test]
    fn heads_and_yolox_preprocessing() {
        let input = ImageInput {
            batch: None,
            height: 416,
            width: 416,
        };
        let n3 = grid_anchors(416, 416, &[8, 16, 32]);
        assert_eq!(n3, 3549);
        let facts = |shape: &'static [usize]| Facts {
            model: Path::new("m.onnx"),
            labels_file: None,
            names_metadata: Some("{0: 'person', 1: 'car'}"),
            input,
            input_dtype: DType::F16,
            head_item_shape: shape,
            max_batch: 2,
        };
        let v8 = model_info(&facts(&[6, 3549])).unwrap();
        assert_eq!(
            v8.head,
            HeadKind::YoloV8 {
                classes: 2,
                anchors: 3549
            }
        );
        assert_eq!(v8.labels, ["person", "car"]);
        assert_eq!(v8.preprocess.order, ChannelOrder::Rgb);
        assert_eq!(v8.preprocess.dtype, DType::F16);
        let x = model_info(&facts(&[3549, 7])).unwrap();
        assert!(matches!(x.head, HeadKind::YoloX { classes: 2, .. }));
        assert_eq!(
            (
                x.preprocess.order,
                x.preprocess.placement,
                x.preprocess.scale
            ),
            (ChannelOrder::Bgr, Placement::TopLeft, 1.0)
        );
        let e = model_info(&facts(&[7, 100])).unwrap_err().to_string();
        assert!(e.contains("not a detector head"), "{e}");
    }
}
