//! CPU postprocess twin: raw detector outputs → class-aware NMS → [`DetectionList`] per frame.
//!
//! This is the reference the GPU kernel must reproduce exactly. The rule, per batch item:
//!
//! 1. **Decode every anchor** `a` (its row or column index in the output, `0..N`) to a box
//!    `(x0, y0, x1, y1)` in canvas pixels, a class and a score, all in `f32` (an `f16` output
//!    is widened first):
//!    * YOLOv8/YOLO11 `[B, 4+C, N]`: `class` = the first index of the largest of the `C` class
//!      scores, `score` = that class score; box from `cx, cy, w, h` as
//!      `x0 = cx − w/2, y0 = cy − h/2, x1 = cx + w/2, y1 = cy + h/2`.
//!    * YOLOv5 `[B, N, 5+C]` and decoded YOLOX: `class` = first argmax of the class scores,
//!      `score = obj · cls[class]`; box as above.
//!    * Raw YOLOX `[B, N, 5+C]`: anchors run over the grids of strides 8, 16, 32 (each
//!      `ceil(H/s) × ceil(W/s)`, row-major); for anchor `a` in grid cell `(gx, gy)` of stride
//!      `s`: `cx = (x + gx)·s, cy = (y + gy)·s, w = exp(w)·s, h = exp(h)·s`, then as YOLOv5.
//!      (Megvii YOLOX `yolox/models/yolo_head.py`, `decode_outputs`.)
//!    * End-to-end `[B, K, 6]`: `x0 y0 x1 y1 score class` as given (class rounded to the
//!      nearest integer; a row with a class outside `0..=65535` is skipped).
//! 2. **Keep** an anchor when `score > score_threshold` (strictly; a NaN score is never
//!    kept) and, if the class filter is not empty, its class is in the filter (the class is
//!    the argmax over all classes first, as Ultralytics does; the filter does not re-pick it).
//! 3. **Order** the kept candidates by score descending, ties broken by the smaller anchor
//!    index (a total order: `f32::total_cmp` on the score, then the anchor). Keep at most
//!    [`PRE_NMS_TOP_K`] of them (the first ones in that order).
//! 4. **Greedy class-aware NMS** in that order: a candidate is kept unless an already kept
//!    candidate of the same class overlaps it with `IoU > iou_threshold` (strictly), where
//!    `IoU = inter / (area_a + area_b − inter)` computed in `f32` on canvas boxes, with
//!    `inter = max(0, min(x1) − max(x0)) · max(0, min(y1) − max(y0))`, `area = (x1−x0)·(y1−y0)`
//!    and `IoU = 0` when the union is not positive. Stop after `max_detections` are kept.
//!    End-to-end models skip NMS (the model did it) but still go through steps 2–3.
//! 5. **Map back** each kept box through the item's letterbox (`Letterbox::map_x/map_y`,
//!    docs/preprocess.md §5) and push it, in keep order, into the item's `DetectionList`.
//!
//! All scratch is sized at construction; `run` allocates nothing.

use half::f16;

use super::{Detection, DetectionList, HeadKind, Postprocess, PostprocessOptions, MAX_DETECTIONS};
use crate::error::StageError;
use crate::preprocess::Letterbox;
use crate::tensor::{DType, Tensor};

/// Most candidates taken into NMS per batch item (the best ones by the step-3 order).
pub const PRE_NMS_TOP_K: usize = 4096;

/// A candidate box on the canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cand {
    score: f32,
    anchor: u32,
    class: u16,
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
}

/// Reads an `f32` from an output element.
trait Load: Copy {
    fn load(self) -> f32;
}
impl Load for f32 {
    #[inline(always)]
    fn load(self) -> f32 {
        self
    }
}
impl Load for f16 {
    #[inline(always)]
    fn load(self) -> f32 {
        self.to_f32()
    }
}

/// Step 2's test: strictly above the threshold (false for NaN).
#[inline(always)]
fn above(score: f32, thr: f32) -> bool {
    score > thr
}

/// Intersection over union of two canvas boxes (module doc, step 4).
#[inline]
fn iou(a: &Cand, b: &Cand) -> f32 {
    let iw = (a.x1.min(b.x1) - a.x0.max(b.x0)).max(0.0);
    let ih = (a.y1.min(b.y1) - a.y0.max(b.y0)).max(0.0);
    let inter = iw * ih;
    let union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// The CPU postprocess twin (see the module documentation for the exact rule).
#[derive(Debug)]
pub struct CpuPostprocess {
    head: HeadKind,
    opts: PostprocessOptions,
    max_batch: usize,
    /// YOLOX raw grid: canvas (width, height).
    canvas: (u32, u32),
    /// Candidates of one item (capacity: anchors of the head).
    cands: Vec<Cand>,
    /// YOLOv8 per-anchor best score and class (capacity: anchors).
    best: Vec<f32>,
    best_class: Vec<u16>,
    /// Kept candidates of one item (capacity: max_detections).
    kept: Vec<Cand>,
}

fn err(msg: String) -> StageError {
    StageError::Postprocess(msg)
}

impl CpuPostprocess {
    /// A postprocessor for `head` and batches of up to `max_batch` items. A raw YOLOX head
    /// assumes a square canvas (derived from its anchor count); use
    /// [`CpuPostprocess::with_canvas`] for other shapes.
    pub fn new(
        head: HeadKind,
        opts: PostprocessOptions,
        max_batch: usize,
    ) -> Result<Self, StageError> {
        let canvas = super::default_canvas(head).map_err(err)?;
        Self::with_canvas(head, opts, max_batch, canvas.0, canvas.1)
    }

    /// As [`CpuPostprocess::new`], with the model canvas size given (used by raw YOLOX).
    pub fn with_canvas(
        head: HeadKind,
        opts: PostprocessOptions,
        max_batch: usize,
        canvas_width: u32,
        canvas_height: u32,
    ) -> Result<Self, StageError> {
        if opts.max_detections == 0 || opts.max_detections > MAX_DETECTIONS {
            return Err(err(format!(
                "max_detections is {}, it must be 1..={MAX_DETECTIONS}",
                opts.max_detections
            )));
        }
        if max_batch == 0 {
            return Err(err("max_batch must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&opts.iou_threshold) || opts.score_threshold.is_nan() {
            return Err(err(format!(
                "iou_threshold {} must be in 0..=1 and score_threshold {} a number",
                opts.iou_threshold, opts.score_threshold
            )));
        }
        let (anchors, classes) = match head {
            HeadKind::YoloV8 { classes, anchors }
            | HeadKind::YoloV5 { classes, anchors }
            | HeadKind::YoloX {
                classes, anchors, ..
            } => (anchors, classes),
            HeadKind::EndToEnd { max_detections } => (max_detections, 0),
        };
        if anchors == 0 || anchors > u32::MAX as usize || classes > u16::MAX as usize + 1 {
            return Err(err(format!(
                "head {head:?} has an unusable number of anchors or classes"
            )));
        }
        if let HeadKind::YoloX {
            decoded: false,
            anchors,
            ..
        } = head
        {
            let n = super::yolox_anchors(canvas_width, canvas_height);
            if n != anchors {
                return Err(err(format!(
                    "raw YOLOX head has {anchors} anchors but a {canvas_width}x{canvas_height} \
                     canvas gives {n} (strides 8, 16, 32)"
                )));
            }
        }
        let v8 = matches!(head, HeadKind::YoloV8 { .. });
        Ok(CpuPostprocess {
            head,
            opts: opts.clone(),
            max_batch,
            canvas: (canvas_width, canvas_height),
            cands: Vec::with_capacity(anchors),
            best: Vec::with_capacity(if v8 { anchors } else { 0 }),
            best_class: Vec::with_capacity(if v8 { anchors } else { 0 }),
            kept: Vec::with_capacity(opts.max_detections),
        })
    }

    pub fn head(&self) -> HeadKind {
        self.head
    }

    pub fn options(&self) -> &PostprocessOptions {
        &self.opts
    }

    fn keep_class(&self, class: u16) -> bool {
        self.opts.class_filter.is_empty() || self.opts.class_filter.contains(&class)
    }

    /// Expected `[.., d1, d2]` of the output tensor for the head.
    fn expected_dims(&self) -> (usize, usize) {
        match self.head {
            HeadKind::YoloV8 { classes, anchors } => (4 + classes, anchors),
            HeadKind::YoloV5 { classes, anchors }
            | HeadKind::YoloX {
                classes, anchors, ..
            } => (anchors, 5 + classes),
            HeadKind::EndToEnd { max_detections } => (max_detections, 6),
        }
    }

    /// Step 1–2 for one item: fills `self.cands`.
    fn collect<T: Load>(&mut self, item: &[T]) {
        self.cands.clear();
        let thr = self.opts.score_threshold;
        match self.head {
            HeadKind::YoloV8 { classes, anchors } => {
                let n = anchors;
                self.best.clear();
                self.best_class.clear();
                self.best
                    .extend(item[4 * n..5 * n].iter().map(|v| v.load()));
                self.best_class.resize(n, 0);
                for c in 1..classes {
                    let row = &item[(4 + c) * n..(5 + c) * n];
                    for ((b, bc), v) in self.best.iter_mut().zip(&mut self.best_class).zip(row) {
                        let v = v.load();
                        if v > *b {
                            *b = v;
                            *bc = c as u16;
                        }
                    }
                }
                for a in 0..n {
                    let score = self.best[a];
                    let class = self.best_class[a];
                    if !above(score, thr) || !self.keep_class(class) {
                        continue;
                    }
                    let (cx, cy) = (item[a].load(), item[n + a].load());
                    let (w, h) = (item[2 * n + a].load(), item[3 * n + a].load());
                    self.cands.push(Cand {
                        score,
                        anchor: a as u32,
                        class,
                        x0: cx - w / 2.0,
                        y0: cy - h / 2.0,
                        x1: cx + w / 2.0,
                        y1: cy + h / 2.0,
                    });
                }
            }
            HeadKind::YoloV5 { classes, anchors }
            | HeadKind::YoloX {
                classes, anchors, ..
            } => {
                let raw = matches!(self.head, HeadKind::YoloX { decoded: false, .. });
                let stride = 5 + classes;
                let mut grid = GridWalker::new(self.canvas);
                for a in 0..anchors {
                    let cell = if raw {
                        grid.next_cell()
                    } else {
                        (0.0, 0.0, 1.0)
                    };
                    let row = &item[a * stride..(a + 1) * stride];
                    let obj = row[4].load();
                    let mut class = 0usize;
                    let mut best = row[5].load();
                    for (c, v) in row[6..].iter().enumerate() {
                        let v = v.load();
                        if v > best {
                            best = v;
                            class = c + 1;
                        }
                    }
                    let score = obj * best;
                    if !above(score, thr) || !self.keep_class(class as u16) {
                        continue;
                    }
                    let (mut cx, mut cy) = (row[0].load(), row[1].load());
                    let (mut w, mut h) = (row[2].load(), row[3].load());
                    if raw {
                        let (gx, gy, s) = cell;
                        cx = (cx + gx) * s;
                        cy = (cy + gy) * s;
                        w = w.exp() * s;
                        h = h.exp() * s;
                    }
                    self.cands.push(Cand {
                        score,
                        anchor: a as u32,
                        class: class as u16,
                        x0: cx - w / 2.0,
                        y0: cy - h / 2.0,
                        x1: cx + w / 2.0,
                        y1: cy + h / 2.0,
                    });
                }
            }
            HeadKind::EndToEnd { max_detections } => {
                for a in 0..max_detections {
                    let row = &item[a * 6..a * 6 + 6];
                    let score = row[4].load();
                    let class = row[5].load().round();
                    if !above(score, thr) || !(0.0..=65535.0).contains(&class) {
                        continue;
                    }
                    let class = class as u16;
                    if !self.keep_class(class) {
                        continue;
                    }
                    self.cands.push(Cand {
                        score,
                        anchor: a as u32,
                        class,
                        x0: row[0].load(),
                        y0: row[1].load(),
                        x1: row[2].load(),
                        y1: row[3].load(),
                    });
                }
            }
        }
    }

    /// Steps 3–5 for one item.
    fn select(&mut self, lb: &Letterbox, out: &mut DetectionList) {
        // Step 3 (sort_unstable is in place: no allocation; the order is total, so the
        // result is the same as a stable sort).
        self.cands.sort_unstable_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.anchor.cmp(&b.anchor))
        });
        self.cands.truncate(PRE_NMS_TOP_K);
        self.kept.clear();
        let nms = !matches!(self.head, HeadKind::EndToEnd { .. });
        let iou_thr = self.opts.iou_threshold;
        for c in &self.cands {
            if self.kept.len() == self.opts.max_detections {
                break;
            }
            if nms
                && self
                    .kept
                    .iter()
                    .any(|k| k.class == c.class && iou(k, c) > iou_thr)
            {
                continue;
            }
            self.kept.push(*c);
        }
        for k in &self.kept {
            // Capacity: max_detections ≤ MAX_DETECTIONS, checked at construction.
            let _ = out.push(Detection {
                class: k.class,
                score: k.score,
                x0: lb.map_x(k.x0),
                y0: lb.map_y(k.y0),
                x1: lb.map_x(k.x1),
                y1: lb.map_y(k.y1),
                track: 0,
            });
        }
    }

    fn run_typed<T: Load>(
        &mut self,
        data: &[T],
        item_len: usize,
        letterboxes: &[Letterbox],
        out: &mut [DetectionList],
    ) {
        for (k, (lb, list)) in letterboxes.iter().zip(out.iter_mut()).enumerate() {
            list.clear();
            self.collect(&data[k * item_len..(k + 1) * item_len]);
            self.select(lb, list);
        }
    }
}

/// Walks the YOLOX grid cells in output order: stride 8, 16, 32, each row-major.
struct GridWalker {
    canvas: (u32, u32),
    level: usize,
    gx: u32,
    gy: u32,
}

impl GridWalker {
    const STRIDES: [u32; 3] = [8, 16, 32];

    fn new(canvas: (u32, u32)) -> Self {
        GridWalker {
            canvas,
            level: 0,
            gx: 0,
            gy: 0,
        }
    }

    /// (gx, gy, stride) of the next anchor.
    fn next_cell(&mut self) -> (f32, f32, f32) {
        let s = Self::STRIDES[self.level.min(2)];
        let cell = (self.gx as f32, self.gy as f32, s as f32);
        self.gx += 1;
        if self.gx == self.canvas.0.div_ceil(s) {
            self.gx = 0;
            self.gy += 1;
            if self.gy == self.canvas.1.div_ceil(s) {
                self.gy = 0;
                self.level += 1;
            }
        }
        cell
    }
}

impl Postprocess for CpuPostprocess {
    fn run(
        &mut self,
        outputs: &[Tensor],
        letterboxes: &[Letterbox],
        out: &mut [DetectionList],
    ) -> Result<(), StageError> {
        let Some(t) = outputs.first() else {
            return Err(err("the engine gave no output tensor".into()));
        };
        let batch = letterboxes.len();
        if batch > self.max_batch || out.len() < batch {
            return Err(err(format!(
                "{batch} items, but max_batch is {} and there are {} detection lists",
                self.max_batch,
                out.len()
            )));
        }
        let (d1, d2) = self.expected_dims();
        let s = &t.spec;
        if s.shape.len() != 3 || s.shape[1] != d1 || s.shape[2] != d2 || s.shape[0] < batch {
            return Err(err(format!(
                "output `{}` has shape {:?}, the {:?} head needs [>={batch}, {d1}, {d2}]",
                s.name, s.shape, self.head
            )));
        }
        let Some(buf) = t.host_buf() else {
            return Err(err(format!(
                "output `{}` is in device memory; the CPU postprocess reads host tensors",
                s.name
            )));
        };
        let item_len = d1 * d2;
        if buf.len() < s.bytes() {
            return Err(err(format!(
                "output `{}` buffer is {} bytes, its shape needs {}",
                s.name,
                buf.len(),
                s.bytes()
            )));
        }
        match s.dtype {
            DType::F32 => self.run_typed(buf.as_f32(), item_len, letterboxes, out),
            DType::F16 => self.run_typed(buf.as_f16(), item_len, letterboxes, out),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorSpec;

    fn opts(score: f32, iou: f32, max: usize, filter: &[u16]) -> PostprocessOptions {
        PostprocessOptions {
            score_threshold: score,
            iou_threshold: iou,
            max_detections: max,
            class_filter: filter.to_vec(),
        }
    }

    fn tensor(shape: &[usize], data: &[f32], dtype: DType) -> Tensor {
        let mut t = Tensor::host(TensorSpec {
            name: "output0".into(),
            dtype,
            shape: shape.to_vec(),
        });
        let b = t.host_buf_mut().unwrap();
        match dtype {
            DType::F32 => b.as_f32_mut().copy_from_slice(data),
            DType::F16 => {
                for (d, s) in b.as_f16_mut().iter_mut().zip(data) {
                    *d = f16::from_f32(*s);
                }
            }
        }
        t
    }

    /// Identity letterbox for a `w × h` canvas.
    fn ident(w: u32, h: u32) -> Letterbox {
        Letterbox {
            src_width: w,
            src_height: h,
            scaled_width: w,
            scaled_height: h,
            left: 0,
            top: 0,
        }
    }

    /// A YOLOv8 tensor `[1, 4+C, N]` from anchors (cx, cy, w, h, class scores).
    fn v8(classes: usize, anchors: &[([f32; 4], Vec<f32>)]) -> Vec<f32> {
        let n = anchors.len();
        let mut d = vec![0.0; (4 + classes) * n];
        for (a, (b, s)) in anchors.iter().enumerate() {
            for i in 0..4 {
                d[i * n + a] = b[i];
            }
            for (c, v) in s.iter().enumerate() {
                d[(4 + c) * n + a] = *v;
            }
        }
        d
    }

    fn run(pp: &mut CpuPostprocess, t: &Tensor, lbs: &[Letterbox]) -> Vec<DetectionList> {
        let mut out = vec![DetectionList::new(); lbs.len()];
        pp.run(std::slice::from_ref(t), lbs, &mut out).unwrap();
        out
    }

    #[test]
    fn v8_nms_is_class_aware_and_ordered() {
        // Anchors: 0 and 1 overlap (IoU 2/3) with class 0; 2 overlaps 0 but is class 1;
        // 3 is far away, class 2, with the same score as 0 (tie -> anchor order).
        let anchors = vec![
            ([50.0, 50.0, 20.0, 20.0], vec![0.9, 0.1, 0.0]),
            ([54.0, 50.0, 20.0, 20.0], vec![0.8, 0.0, 0.0]),
            ([50.0, 51.0, 20.0, 20.0], vec![0.2, 0.7, 0.0]),
            ([150.0, 150.0, 10.0, 30.0], vec![0.0, 0.0, 0.9]),
        ];
        let t = tensor(&[1, 7, 4], &v8(3, &anchors), DType::F32);
        let head = HeadKind::YoloV8 {
            classes: 3,
            anchors: 4,
        };
        let mut pp = CpuPostprocess::new(head, opts(0.25, 0.5, 10, &[]), 1).unwrap();
        let out = run(&mut pp, &t, &[ident(200, 200)]);
        let got: Vec<(u16, f32)> = out[0].iter().map(|d| (d.class, d.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (2, 0.9), (1, 0.7)]);
        let d = out[0][0];
        assert_eq!((d.x0, d.y0, d.x1, d.y1), (40.0, 40.0, 60.0, 60.0));
        let d = out[0][1];
        assert_eq!((d.x0, d.y0, d.x1, d.y1), (145.0, 135.0, 155.0, 165.0));
        // Raising the IoU threshold above 16/24 (IoU of anchors 0 and 1) keeps anchor 1.
        let mut pp = CpuPostprocess::new(head, opts(0.25, 0.7, 10, &[]), 1).unwrap();
        assert_eq!(run(&mut pp, &t, &[ident(200, 200)])[0].len(), 4);
    }

    #[test]
    fn threshold_is_strict_and_filter_and_cap_apply() {
        let anchors = vec![
            ([10.0, 10.0, 4.0, 4.0], vec![0.5, 0.0]),
            ([30.0, 10.0, 4.0, 4.0], vec![0.0, 0.5000001]),
            ([50.0, 10.0, 4.0, 4.0], vec![0.0, 0.6]),
            ([70.0, 10.0, 4.0, 4.0], vec![0.7, 0.0]),
        ];
        let t = tensor(&[1, 6, 4], &v8(2, &anchors), DType::F32);
        let head = HeadKind::YoloV8 {
            classes: 2,
            anchors: 4,
        };
        let lb = [ident(100, 100)];
        let classes = |pp: &mut CpuPostprocess| -> Vec<(u16, f32)> {
            run(pp, &t, &lb)[0]
                .iter()
                .map(|d| (d.class, d.score))
                .collect()
        };
        let mut pp = CpuPostprocess::new(head, opts(0.5, 0.45, 10, &[]), 1).unwrap();
        assert_eq!(classes(&mut pp), vec![(0, 0.7), (1, 0.6), (1, 0.5000001)]);
        let mut pp = CpuPostprocess::new(head, opts(0.5, 0.45, 10, &[1]), 1).unwrap();
        assert_eq!(classes(&mut pp), vec![(1, 0.6), (1, 0.5000001)]);
        let mut pp = CpuPostprocess::new(head, opts(0.5, 0.45, 2, &[]), 1).unwrap();
        assert_eq!(classes(&mut pp), vec![(0, 0.7), (1, 0.6)]);
        let mut pp = CpuPostprocess::new(head, opts(0.7, 0.45, 10, &[]), 1).unwrap();
        assert!(classes(&mut pp).is_empty());
    }

    #[test]
    fn pre_nms_top_k_cuts_the_tail() {
        // 4096 copies of one box (scores 0.9 down), then a disjoint box at 0.3: the disjoint
        // box is candidate 4097 and falls outside the pre-NMS cap.
        let n = PRE_NMS_TOP_K + 1;
        let mut anchors = Vec::new();
        for a in 0..PRE_NMS_TOP_K {
            anchors.push(([20.0, 20.0, 10.0, 10.0], vec![0.9 - a as f32 * 1e-5]));
        }
        anchors.push(([80.0, 80.0, 10.0, 10.0], vec![0.3]));
        let t = tensor(&[1, 5, n], &v8(1, &anchors), DType::F32);
        let head = HeadKind::YoloV8 {
            classes: 1,
            anchors: n,
        };
        let mut pp = CpuPostprocess::new(head, opts(0.25, 0.45, 10, &[]), 1).unwrap();
        let out = run(&mut pp, &t, &[ident(100, 100)]);
        assert_eq!(out[0].len(), 1);
        assert_eq!(out[0][0].score, 0.9);
    }

    #[test]
    fn v5_score_is_obj_times_cls_and_boxes_map_back() {
        // [1, 2, 5+2]: anchor 0 obj 0.5 · cls 0.8 = 0.4; anchor 1 obj 0.9 · cls 0.2 = 0.18.
        let d = [
            320.0, 320.0, 64.0, 32.0, 0.5, 0.1, 0.8, //
            100.0, 100.0, 10.0, 10.0, 0.9, 0.2, 0.1,
        ];
        let t = tensor(&[1, 2, 7], &d, DType::F32);
        let head = HeadKind::YoloV5 {
            classes: 2,
            anchors: 2,
        };
        let mut pp = CpuPostprocess::new(head, opts(0.25, 0.45, 10, &[]), 1).unwrap();
        // 1280x960 source on a 640 canvas: r = 0.5, top = 80.
        let lb = Letterbox {
            src_width: 1280,
            src_height: 960,
            scaled_width: 640,
            scaled_height: 480,
            left: 0,
            top: 80,
        };
        let out = run(&mut pp, &t, &[lb]);
        assert_eq!(out[0].len(), 1);
        let det = out[0][0];
        assert_eq!(det.class, 1);
        assert!((det.score - 0.4).abs() < 1e-7);
        assert_eq!(
            (det.x0, det.y0, det.x1, det.y1),
            (576.0, 448.0, 704.0, 512.0)
        );
    }

    #[test]
    fn yolox_raw_grid_decode() {
        // 64x64 canvas: grids 8x8 (stride 8), 4x4 (16), 2x2 (32) = 84 anchors.
        let (classes, n) = (2usize, 84usize);
        let mut d = vec![0.0f32; n * (5 + classes)];
        // Anchor 73 = stride 16, cell (gx 1, gy 2).
        let row = &mut d[73 * 7..74 * 7];
        row.copy_from_slice(&[0.5, 0.5, 2f32.ln(), 0.0, 0.9, 0.1, 0.8]);
        // Anchor 83 = stride 32, cell (1, 1); below threshold after obj·cls.
        d[83 * 7..84 * 7].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 0.5, 0.4, 0.0]);
        let t = tensor(&[1, n, 7], &d, DType::F32);
        let head = HeadKind::YoloX {
            classes,
            anchors: n,
            decoded: false,
        };
        let mut pp = CpuPostprocess::new(head, opts(0.25, 0.45, 10, &[]), 1).unwrap();
        let out = run(&mut pp, &t, &[ident(64, 64)]);
        assert_eq!(out[0].len(), 1);
        let det = out[0][0];
        assert_eq!(det.class, 1);
        assert!((det.score - 0.72).abs() < 1e-6);
        // cx = 1.5·16 = 24, cy = 2.5·16 = 40, w = 2·16 = 32, h = 16.
        for (got, want) in [
            (det.x0, 8.0),
            (det.y0, 32.0),
            (det.x1, 40.0),
            (det.y1, 48.0),
        ] {
            assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        }
        assert!(CpuPostprocess::new(
            HeadKind::YoloX {
                classes,
                anchors: 85,
                decoded: false
            },
            opts(0.25, 0.45, 10, &[]),
            1
        )
        .is_err());
        assert_eq!(crate::postprocess::yolox_anchors(416, 416), 3549);
    }

    #[test]
    fn end_to_end_keeps_rows_without_nms() {
        let d = [
            10.0, 10.0, 50.0, 50.0, 0.9, 0.0, //
            12.0, 12.0, 50.0, 50.0, 0.8, 0.0, // overlaps row 0: the model already did NMS
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, // padding row
            5.0, 5.0, 9.0, 9.0, 0.95, 3.0,
        ];
        let t = tensor(&[1, 4, 6], &d, DType::F32);
        let head = HeadKind::EndToEnd { max_detections: 4 };
        let mut pp = CpuPostprocess::new(head, opts(0.25, 0.45, 10, &[]), 1).unwrap();
        let out = run(&mut pp, &t, &[ident(100, 100)]);
        let got: Vec<(u16, f32)> = out[0].iter().map(|d| (d.class, d.score)).collect();
        assert_eq!(got, vec![(3, 0.95), (0, 0.9), (0, 0.8)]);
        let mut pp = CpuPostprocess::new(head, opts(0.25, 0.45, 10, &[0]), 1).unwrap();
        assert_eq!(run(&mut pp, &t, &[ident(100, 100)])[0].len(), 2);
    }

    #[test]
    fn f16_output_and_batches() {
        // Two items with different content; f16 gives the same detections as f32 up to
        // f16 rounding of the inputs.
        let a = v8(
            2,
            &[
                ([20.0, 20.0, 8.0, 8.0], vec![0.75, 0.0]),
                ([60.0, 60.0, 8.0, 8.0], vec![0.0, 0.1]),
            ],
        );
        let b = v8(
            2,
            &[
                ([20.0, 20.0, 8.0, 8.0], vec![0.0, 0.0]),
                ([60.0, 60.0, 8.0, 8.0], vec![0.0, 0.5]),
            ],
        );
        let d: Vec<f32> = a.iter().chain(&b).copied().collect();
        let head = HeadKind::YoloV8 {
            classes: 2,
            anchors: 2,
        };
        let lbs = [ident(100, 100), ident(100, 100)];
        for dtype in [DType::F32, DType::F16] {
            let t = tensor(&[2, 6, 2], &d, dtype);
            let mut pp = CpuPostprocess::new(head, opts(0.25, 0.45, 10, &[]), 2).unwrap();
            let out = run(&mut pp, &t, &lbs);
            assert_eq!(out[0].len(), 1, "{dtype:?}");
            assert_eq!((out[0][0].class, out[0][0].score), (0, 0.75));
            assert_eq!(out[1].len(), 1);
            assert_eq!(
                (out[1][0].class, out[1][0].score, out[1][0].x0),
                (1, 0.5, 56.0)
            );
        }
    }

    #[test]
    fn bad_shapes_and_options_are_errors() {
        let head = HeadKind::YoloV8 {
            classes: 2,
            anchors: 2,
        };
        assert!(CpuPostprocess::new(head, opts(0.25, 0.45, 0, &[]), 1).is_err());
        assert!(CpuPostprocess::new(head, opts(0.25, 0.45, MAX_DETECTIONS + 1, &[]), 1).is_err());
        assert!(CpuPostprocess::new(head, opts(0.25, 1.5, 10, &[]), 1).is_err());
        let mut pp = CpuPostprocess::new(head, opts(0.25, 0.45, 10, &[]), 1).unwrap();
        let t = tensor(&[1, 7, 2], &[0.0; 14], DType::F32);
        let mut out = vec![DetectionList::new(); 2];
        let e = pp
            .run(std::slice::from_ref(&t), &[ident(9, 9)], &mut out)
            .unwrap_err();
        assert!(e.to_string().contains("needs [>=1, 6, 2]"), "{e}");
        let t = tensor(&[1, 6, 2], &[0.0; 12], DType::F32);
        assert!(pp
            .run(std::slice::from_ref(&t), &[ident(9, 9); 2], &mut out)
            .is_err());
        assert!(pp.run(&[], &[ident(9, 9)], &mut out).is_err());
    }
}
