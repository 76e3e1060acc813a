//! CUDA postprocess: `kernels/postprocess.cu` behind [`Postprocess`].
//!
//! Same rule as the CPU twin ([`super::cpu`], whose module documentation defines it): decode,
//! `score > threshold` and class filter, order by score descending then anchor ascending, top
//! [`PRE_NMS_TOP_K`], greedy class-aware NMS, at most `max_detections`, boxes mapped back
//! through the letterbox. Everything runs on the pipeline's stream; only the fixed result
//! array (a few KiB per item) is copied to pinned host memory, once per batch. All device
//! scratch and the pinned buffer are allocated at construction; `run` allocates nothing.

use std::sync::Arc;

use super::cpu::PRE_NMS_TOP_K;
use super::{Detection, DetectionList, HeadKind, Postprocess, PostprocessOptions, MAX_DETECTIONS};
use crate::error::StageError;
use crate::gpu::launch::{
    PostLb, PostParams, RawResult, HEAD_E2E, HEAD_V5, HEAD_V8, HEAD_YOLOX_RAW, POST_MAX_BATCH,
    POST_MAX_DET, POST_TOP_K,
};
use crate::gpu::{CudaStream, DeviceBuffer, GpuError, Kernels, PinnedBuffer};
use crate::preprocess::Letterbox;
use crate::tensor::{Tensor, TensorMem};

const _: () = assert!(POST_TOP_K == PRE_NMS_TOP_K && POST_MAX_DET == MAX_DETECTIONS);

/// The CUDA postprocess stage.
pub struct CudaPostprocess {
    head: HeadKind,
    opts: PostprocessOptions,
    max_batch: usize,
    stream: Arc<CudaStream>,
    kernels: Arc<Kernels>,
    params: Box<PostParams>,
    /// Expected `[.., d1, d2]` of the output tensor.
    dims: (usize, usize),
    _cands: DeviceBuffer,
    _keys: DeviceBuffer,
    _counts: DeviceBuffer,
    results: DeviceBuffer,
    _mask: Option<DeviceBuffer>,
    host: PinnedBuffer,
}

impl std::fmt::Debug for CudaPostprocess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaPostprocess")
            .field("head", &self.head)
            .field("opts", &self.opts)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

fn bad(msg: String) -> GpuError {
    GpuError::BadArgument(msg)
}

fn err(e: GpuError) -> StageError {
    match e {
        GpuError::Unavailable(u) => StageError::Unavailable(u),
        other => StageError::Postprocess(other.to_string()),
    }
}

impl CudaPostprocess {
    /// A postprocess for `head` and batches of up to `max_batch` (≤ 64) items, on `stream`.
    /// A raw YOLOX head assumes a square canvas; use [`CudaPostprocess::with_canvas`] otherwise.
    pub fn new(
        stream: Arc<CudaStream>,
        head: HeadKind,
        opts: PostprocessOptions,
        max_batch: usize,
    ) -> Result<Self, GpuError> {
        let canvas = super::default_canvas(head).map_err(bad)?;
        Self::with_canvas(stream, head, opts, max_batch, canvas.0, canvas.1)
    }

    /// As [`CudaPostprocess::new`], with the model canvas size (used by raw YOLOX).
    pub fn with_canvas(
        stream: Arc<CudaStream>,
        head: HeadKind,
        opts: PostprocessOptions,
        max_batch: usize,
        canvas_width: u32,
        canvas_height: u32,
    ) -> Result<Self, GpuError> {
        if opts.max_detections == 0 || opts.max_detections > MAX_DETECTIONS {
            return Err(bad(format!(
                "max_detections is {}, it must be 1..={MAX_DETECTIONS}",
                opts.max_detections
            )));
        }
        if max_batch == 0 || max_batch > POST_MAX_BATCH {
            return Err(bad(format!(
                "max_batch is {max_batch}, the CUDA postprocess takes 1..={POST_MAX_BATCH}"
            )));
        }
        if !(0.0..=1.0).contains(&opts.iou_threshold) || opts.score_threshold.is_nan() {
            return Err(bad(format!(
                "iou_threshold {} must be in 0..=1 and score_threshold {} a number",
                opts.iou_threshold, opts.score_threshold
            )));
        }
        let (code, anchors, classes, dims) = match head {
            HeadKind::YoloV8 { classes, anchors } => {
                (HEAD_V8, anchors, classes, (4 + classes, anchors))
            }
            HeadKind::YoloV5 { classes, anchors } => {
                (HEAD_V5, anchors, classes, (anchors, 5 + classes))
            }
            HeadKind::YoloX {
                classes,
                anchors,
                decoded,
            } => {
                let code = if decoded { HEAD_V5 } else { HEAD_YOLOX_RAW };
                (code, anchors, classes, (anchors, 5 + classes))
            }
            // The class of an end-to-end row may be any 0..=65535.
            HeadKind::EndToEnd { max_detections } => {
                (HEAD_E2E, max_detections, 65536, (max_detections, 6))
            }
        };
        if anchors == 0 || anchors > (1 << 24) || classes == 0 || classes > 65536 {
            return Err(bad(format!(
                "head {head:?} has an unusable number of anchors or classes"
            )));
        }
        if code == HEAD_YOLOX_RAW {
            let n = super::yolox_anchors(canvas_width, canvas_height);
            if n != anchors {
                return Err(bad(format!(
                    "raw YOLOX head has {anchors} anchors but a {canvas_width}x{canvas_height} \
                     canvas gives {n} (strides 8, 16, 32)"
                )));
            }
        }
        let ctx = stream.context().clone();
        let kernels = ctx.kernels()?;
        let key_stride = anchors.next_power_of_two();
        let cands = DeviceBuffer::alloc(&ctx, max_batch * anchors * 24)?;
        let keys = DeviceBuffer::alloc(&ctx, max_batch * key_stride * 8)?;
        let counts = DeviceBuffer::alloc(&ctx, max_batch * 4)?;
        let results = DeviceBuffer::alloc(&ctx, max_batch * std::mem::size_of::<RawResult>())?;
        let host = PinnedBuffer::alloc(&ctx, max_batch * std::mem::size_of::<RawResult>())?;
        let mask = if opts.class_filter.is_empty() {
            None
        } else {
            let mut words = vec![0u32; classes.div_ceil(32)];
            for &c in &opts.class_filter {
                if (c as usize) < classes {
                    words[c as usize / 32] |= 1 << (c % 32);
                }
            }
            let m = DeviceBuffer::alloc(&ctx, words.len() * 4)?;
            m.copy_from_host(&words)?;
            Some(m)
        };
        let mut params = PostParams::boxed();
        params.cands = cands.ptr();
        params.keys = keys.ptr();
        params.counts = counts.ptr();
        params.results = results.ptr();
        params.class_mask = mask.as_ref().map_or(0, |m| m.ptr());
        params.head = code;
        params.classes = classes as u32;
        params.anchors = anchors as u32;
        params.key_stride = key_stride as u32;
        params.max_det = opts.max_detections as u32;
        params.canvas_w = canvas_width;
        params.canvas_h = canvas_height;
        params.score_thr = opts.score_threshold;
        params.iou_thr = opts.iou_threshold;
        Ok(CudaPostprocess {
            head,
            opts,
            max_batch,
            stream,
            kernels,
            params,
            dims,
            _cands: cands,
            _keys: keys,
            _counts: counts,
            results,
            _mask: mask,
            host,
        })
    }

    pub fn head(&self) -> HeadKind {
        self.head
    }

    pub fn options(&self) -> &PostprocessOptions {
        &self.opts
    }

    fn run_inner(
        &mut self,
        outputs: &[Tensor],
        letterboxes: &[Letterbox],
        out: &mut [DetectionList],
    ) -> Result<(), GpuError> {
        let Some(t) = outputs.first() else {
            return Err(bad("the engine gave no output tensor".into()));
        };
        let batch = letterboxes.len();
        if batch == 0 {
            return Ok(());
        }
        if batch > self.max_batch || out.len() < batch {
            return Err(bad(format!(
                "{batch} items, but max_batch is {} and there are {} detection lists",
                self.max_batch,
                out.len()
            )));
        }
        let (d1, d2) = self.dims;
        let s = &t.spec;
        if s.shape.len() != 3 || s.shape[1] != d1 || s.shape[2] != d2 || s.shape[0] < batch {
            return Err(bad(format!(
                "output `{}` has shape {:?}, the {:?} head needs [>={batch}, {d1}, {d2}]",
                s.name, s.shape, self.head
            )));
        }
        let TensorMem::Device { ptr, bytes, device } = t.mem else {
            return Err(bad(format!(
                "output `{}` is in host memory; the CUDA postprocess reads device tensors",
                s.name
            )));
        };
        let ordinal = self.stream.context().ordinal();
        if device != ordinal || bytes < s.bytes() {
            return Err(bad(format!(
                "output `{}`: device {device} / {bytes} bytes, expected device {ordinal} and \
                 at least {} bytes",
                s.name,
                s.bytes()
            )));
        }
        self.stream.context().bind()?;
        let p = &mut *self.params;
        p.output = ptr;
        p.batch = batch as u32;
        for (dst, lb) in p.lb.iter_mut().zip(letterboxes) {
            let (ix, iy) = lb.inv_scale();
            *dst = PostLb {
                left: lb.left as f32,
                top: lb.top as f32,
                inv_x: ix,
                inv_y: iy,
                src_w: lb.src_width as f32,
                src_h: lb.src_height as f32,
            };
        }
        let item_bytes = d1 * d2 * s.dtype.size();
        // SAFETY: the scratch buffers in `params` were allocated in `with_canvas` for
        // `max_batch ≥ batch` items of this head and live as long as self.
        unsafe {
            p.launch(&self.kernels, &self.stream, s.dtype, batch * item_bytes)?;
        }
        let n = batch * std::mem::size_of::<RawResult>();
        self.host
            .copy_from_device_async(&self.results, n, &self.stream)?;
        self.stream.synchronize()?;
        let items: &[RawResult] = bytemuck::cast_slice(&self.host.as_bytes()[..n]);
        for (item, list) in items.iter().zip(out.iter_mut()) {
            list.clear();
            let count = (item.count as usize).min(self.opts.max_detections);
            for d in &item.det[..count] {
                // Capacity: count ≤ max_detections ≤ MAX_DETECTIONS.
                let _ = list.push(Detection {
                    class: d.class as u16,
                    score: d.score,
                    x0: d.x0,
                    y0: d.y0,
                    x1: d.x1,
                    y1: d.y1,
                    track: 0,
                });
            }
        }
        Ok(())
    }
}

impl Postprocess for CudaPostprocess {
    fn run(
        &mut self,
        outputs: &[Tensor],
        letterboxes: &[Letterbox],
        out: &mut [DetectionList],
    ) -> Result<(), StageError> {
        self.run_inner(outputs, letterboxes, out).map_err(err)
    }
}
