//! Preprocess: NV12 picture → model input tensor, written into batch slot k.
//!
//! The sampling rule (letterbox geometry, pixel centres, bilinear weights, chroma siting,
//! colour matrices, range, rounding) is specified in docs/preprocess.md. The CPU twin
//! ([`cpu`]) is the reference; the CUDA kernel must match it to within 1/255 per channel.

use crate::error::StageError;
use crate::frame::{ColourDesc, Picture};
use crate::tensor::{DType, Tensor};

/// How the picture is placed on the model canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// Ultralytics letterbox: aspect kept, centred, padded (YOLOv5/v8/11).
    Centre,
    /// Aspect kept, pasted at the top-left corner, padded (YOLOX).
    TopLeft,
    /// Stretched to the canvas, aspect not kept (FastestDet).
    Stretch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// Everything that decides the model input, fixed when the model is loaded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreprocessSpec {
    pub width: u32,
    pub height: u32,
    pub placement: Placement,
    pub order: ChannelOrder,
    /// Multiplier applied to 0..255 channel values (1/255 for YOLOv8, 1 for YOLOX).
    pub scale: f32,
    /// Padding value on the 0..255 scale (114).
    pub pad: f32,
    pub dtype: DType,
}

/// Where a source picture landed on the canvas; maps boxes back to source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Letterbox {
    pub src_width: u32,
    pub src_height: u32,
    /// Placed image size on the canvas.
    pub scaled_width: u32,
    pub scaled_height: u32,
    pub left: u32,
    pub top: u32,
}

impl Letterbox {
    /// The geometry of docs/preprocess.md for a `w × h` source on `spec`'s canvas.
    pub fn compute(spec: &PreprocessSpec, w: u32, h: u32) -> Letterbox {
        let (sw, sh) = (spec.width as f64, spec.height as f64);
        let (fw, fh) = (w as f64, h as f64);
        match spec.placement {
            Placement::Stretch => Letterbox {
                src_width: w,
                src_height: h,
                scaled_width: spec.width,
                scaled_height: spec.height,
                left: 0,
                top: 0,
            },
            Placement::Centre | Placement::TopLeft => {
                let r = (sw / fw).min(sh / fh);
                let nw = ((fw * r).round() as u32).clamp(1, spec.width);
                let nh = ((fh * r).round() as u32).clamp(1, spec.height);
                let (left, top) = if spec.placement == Placement::Centre {
                    (
                        ((sw - nw as f64) / 2.0 - 0.1).round().max(0.0) as u32,
                        ((sh - nh as f64) / 2.0 - 0.1).round().max(0.0) as u32,
                    )
                } else {
                    (0, 0)
                };
                Letterbox {
                    src_width: w,
                    src_height: h,
                    scaled_width: nw,
                    scaled_height: nh,
                    left,
                    top,
                }
            }
        }
    }

    /// Source pixels per canvas pixel, horizontally and vertically.
    pub fn inv_scale(&self) -> (f32, f32) {
        (
            self.src_width as f32 / self.scaled_width as f32,
            self.src_height as f32 / self.scaled_height as f32,
        )
    }

    /// Maps a canvas x coordinate back to source pixels (clamped to the picture).
    pub fn map_x(&self, x: f32) -> f32 {
        ((x - self.left as f32) * self.inv_scale().0).clamp(0.0, self.src_width as f32)
    }

    /// Maps a canvas y coordinate back to source pixels (clamped to the picture).
    pub fn map_y(&self, y: f32) -> f32 {
        ((y - self.top as f32) * self.inv_scale().1).clamp(0.0, self.src_height as f32)
    }
}

/// One picture to place into batch slot `slot`.
#[derive(Debug)]
pub struct PreprocessJob<'a> {
    pub picture: &'a Picture,
    pub colour: ColourDesc,
    pub slot: usize,
}

pub trait Preprocess: Send {
    fn spec(&self) -> &PreprocessSpec;
    /// Writes every job's picture into its slot of `input` (shape `[B, 3, H, W]`) and returns
    /// the letterbox of each job in `letterboxes[job index]`. A GPU implementation may cover
    /// the whole batch with one launch; it returns once the work is queued on its stream.
    fn run(
        &mut self,
        jobs: &[PreprocessJob<'_>],
        input: &mut Tensor,
        letterboxes: &mut [Letterbox],
    ) -> Result<(), StageError>;
}

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
