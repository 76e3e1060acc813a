//! Postprocess: raw model outputs → a fixed-capacity list of detections per frame, boxes in
//! source pixels. The CPU twin ([`cpu`]) is the reference for the GPU kernel.

use serde::{Deserialize, Serialize};

use crate::error::StageError;
use crate::preprocess::Letterbox;
use crate::tensor::Tensor;

/// Largest number of detections one frame can carry (the config's `max_detections` is at
/// most this).
pub const MAX_DETECTIONS: usize = 256;

/// One detected object, box corners in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub class: u16,
    pub score: f32,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
    /// Track identity, if a tracker assigned one (0 = none).
    pub track: u32,
}

pub type DetectionList = heapless::Vec<Detection, MAX_DETECTIONS>;

/// Output layouts jetwatch understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadKind {
    /// YOLOv8 / YOLO11: `[B, 4+C, N]`, channel-major, cx cy w h in canvas pixels, class
    /// scores already through a sigmoid, no objectness.
    YoloV8 { classes: usize, anchors: usize },
    /// YOLOv5: `[B, N, 5+C]`, rows = anchors: cx cy w h obj, then class scores.
    YoloV5 { classes: usize, anchors: usize },
    /// YOLOX with the decode in the graph or not (`decoded = false`: raw grid offsets, strides
    /// 8/16/32): `[B, N, 5+C]`.
    YoloX {
        classes: usize,
        anchors: usize,
        decoded: bool,
    },
    /// End-to-end model with NMS inside: `[B, K, 6]` rows of x0 y0 x1 y1 score class.
    EndToEnd { max_detections: usize },
}

/// Number of anchors of the YOLOX grids (strides 8, 16, 32) on a `w × h` canvas.
pub fn yolox_anchors(w: u32, h: u32) -> usize {
    [8u32, 16, 32]
        .iter()
        .map(|s| (w.div_ceil(*s) * h.div_ceil(*s)) as usize)
        .sum()
}

/// The canvas a head's boxes are decoded on when the caller does not give one: for a raw YOLOX
/// head the square `S × S` whose grids have exactly its anchor count
/// (N = S²·(1/64 + 1/256 + 1/1024) = 21·S²/1024 for S divisible by 32); `(0, 0)` for heads that
/// carry canvas coordinates themselves. Shared by the CPU twin and the CUDA postprocess so both
/// decode on the same canvas.
pub fn default_canvas(head: HeadKind) -> Result<(u32, u32), String> {
    match head {
        HeadKind::YoloX {
            anchors,
            decoded: false,
            ..
        } => {
            let s = ((anchors as f64 * 1024.0 / 21.0).sqrt().round()) as u32;
            if yolox_anchors(s, s) != anchors {
                return Err(format!(
                    "raw YOLOX head with {anchors} anchors does not match a square canvas; give the canvas size (with_canvas)"
                ));
            }
            Ok((s, s))
        }
        _ => Ok((0, 0)),
    }
}

/// Thresholds and limits, from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct PostprocessOptions {
    pub score_threshold: f32,
    pub iou_threshold: f32,
    pub max_detections: usize,
    /// Keep only these classes (empty: all).
    pub class_filter: Vec<u16>,
}

pub trait Postprocess: Send {
    /// Decodes the first `letterboxes.len()` batch items of `outputs` into `out[k]`
    /// (cleared first), boxes mapped back through `letterboxes[k]`.
    fn run(
        &mut self,
        outputs: &[Tensor],
        letterboxes: &[Letterbox],
        out: &mut [DetectionList],
    ) -> Result<(), StageError>;
}

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
