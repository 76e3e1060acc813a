//! Typed, checked, allocation-free launches of the kernels in `kernels/`.
//!
//! Each kernel takes one struct by value (`__grid_constant__`); the `#[repr(C)]` mirrors below
//! match `kernels/*.cu` field for field, and [`super::Kernels`] verifies their sizes against
//! the module with `cuFuncGetParamInfo` at load time. The builders validate every address,
//! size, pitch and slot index before the single `unsafe` launch; the argument array lives on
//! the stack and the driver copies the parameter struct at launch, so nothing is allocated
//! (cudarc's `launch_builder` would allocate three `Vec`s per launch, CRATES.md).

use std::ffi::c_void;

use cudarc::driver::sys;

use super::{check, launch_raw, CudaStream, GpuError, Kernels, TextureFilter};
use crate::frame::{ColourDesc, DeviceNv12, Matrix};
use crate::preprocess::{ChannelOrder, Letterbox};
use crate::tensor::DType;

/// Slots one preprocess launch can cover (kernels/preprocess.cu `JW_PRE_MAX_SLOTS`).
pub const PRE_MAX_SLOTS: usize = 32;
/// Largest batch the CUDA postprocess handles (`JW_POST_MAX_BATCH`).
pub const POST_MAX_BATCH: usize = 64;
/// Candidates taken into NMS per item (`JW_PRE_NMS_TOP_K`; equals the CPU twin's).
pub const POST_TOP_K: usize = 4096;
/// Detections per item in the result array (`JW_MAX_DETECTIONS`).
pub const POST_MAX_DET: usize = 256;

const SRC_PITCH: u32 = 0;
const SRC_TEX_POINT: u32 = 1;
const SRC_TEX_LINEAR: u32 = 2;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PreSlot {
    luma: u64,
    chroma: u64,
    pitch: u32,
    width: u32,
    height: u32,
    slot: u32,
    left: u32,
    top: u32,
    nw: u32,
    nh: u32,
    rx: f32,
    ry: f32,
    y_off: f32,
    y_mul: f32,
    c_mul: f32,
    r_cr: f32,
    g_cb: f32,
    g_cr: f32,
    b_cb: f32,
    source: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreBatch {
    out: u64,
    out_w: u32,
    out_h: u32,
    jobs: u32,
    bgr: u32,
    scale: f32,
    pad: f32,
    slot: [PreSlot; PRE_MAX_SLOTS],
}

/// docs/preprocess.md §3 constants, computed in f32 exactly as the CPU twin does.
fn colour_consts(c: ColourDesc, s: &mut PreSlot) {
    let (kr, kb): (f32, f32) = match c.matrix {
        Matrix::Bt601 => (0.299, 0.114),
        Matrix::Bt709 => (0.2126, 0.0722),
    };
    let kg = 1.0 - kr - kb;
    let (y_off, y_mul, c_mul) = if c.full_range {
        (0.0, 1.0, 1.0)
    } else {
        (16.0, 255.0 / 219.0, 255.0 / 224.0)
    };
    s.y_off = y_off;
    s.y_mul = y_mul;
    s.c_mul = c_mul;
    s.r_cr = 2.0 * (1.0 - kr);
    s.g_cb = 2.0 * kb * (1.0 - kb) / kg;
    s.g_cr = 2.0 * kr * (1.0 - kr) / kg;
    s.b_cb = 2.0 * (1.0 - kb);
}

fn bad(msg: String) -> GpuError {
    GpuError::BadArgument(msg)
}

/// Start and length of the device allocation containing `ptr` (`cuMemGetAddressRange`).
fn allocation_of(ptr: u64) -> Option<(u64, usize)> {
    let (mut base, mut size) = (0u64, 0usize);
    // SAFETY: a pure query; out-pointers to locals.
    let r = unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, ptr) };
    (r == sys::CUresult::CUDA_SUCCESS).then_some((base, size))
}

/// Checks that `[ptr, ptr + len)` lies inside one device allocation, when the driver knows the
/// allocation (memory from `cuMemAlloc*`, NVDEC mapped surfaces). Returns an error for a range
/// that sticks out of its allocation or for a null pointer.
fn check_range(what: &str, ptr: u64, len: usize) -> Result<(), GpuError> {
    if ptr == 0 {
        return Err(bad(format!("{what}: null device pointer")));
    }
    match allocation_of(ptr) {
        Some((base, size)) if ptr + len as u64 > base + size as u64 => Err(bad(format!(
            "{what}: {len} bytes at {ptr:#x} overrun the {size}-byte allocation at {base:#x}"
        ))),
        Some(_) => Ok(()),
        None => Err(bad(format!(
            "{what}: {ptr:#x} is not CUDA device memory of the current context"
        ))),
    }
}

/// Builds and launches one batched preprocess (kernels/preprocess.cu).
#[derive(Debug)]
pub(crate) struct PreprocessLaunch {
    p: PreBatch,
    dtype: DType,
    batch: usize,
}

impl PreprocessLaunch {
    pub(crate) fn new() -> Box<PreprocessLaunch> {
        Box::new(PreprocessLaunch {
            p: PreBatch {
                out: 0,
                out_w: 0,
                out_h: 0,
                jobs: 0,
                bgr: 0,
                scale: 1.0,
                pad: 0.0,
                slot: [PreSlot::default(); PRE_MAX_SLOTS],
            },
            dtype: DType::F32,
            batch: 0,
        })
    }

    /// Starts a launch writing the `[batch, 3, out_h, out_w]` tensor at `out`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn begin(
        &mut self,
        out: u64,
        out_bytes: usize,
        batch: usize,
        out_w: u32,
        out_h: u32,
        dtype: DType,
        order: ChannelOrder,
        scale: f32,
        pad: f32,
    ) -> Result<(), GpuError> {
        let need = batch * 3 * out_w as usize * out_h as usize * dtype.size();
        if out_w == 0 || out_h == 0 || batch == 0 || out_bytes < need {
            return Err(bad(format!(
                "input tensor of {out_bytes} bytes cannot hold [{batch}, 3, {out_h}, {out_w}] {}",
                dtype.name()
            )));
        }
        check_range("preprocess output tensor", out, need)?;
        self.p.out = out;
        self.p.out_w = out_w;
        self.p.out_h = out_h;
        self.p.jobs = 0;
        self.p.bgr = (order == ChannelOrder::Bgr) as u32;
        self.p.scale = scale;
        self.p.pad = pad;
        self.dtype = dtype;
        self.batch = batch;
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.p.jobs as usize
    }

    fn next_slot(&mut self, slot: usize, lb: &Letterbox) -> Result<&mut PreSlot, GpuError> {
        if self.p.jobs as usize >= PRE_MAX_SLOTS {
            return Err(bad(format!(
                "more than {PRE_MAX_SLOTS} pictures in one launch"
            )));
        }
        if slot >= self.batch {
            return Err(bad(format!(
                "slot {slot} is outside the input batch of {}",
                self.batch
            )));
        }
        if lb.scaled_width == 0
            || lb.scaled_height == 0
            || lb.left + lb.scaled_width > self.p.out_w
            || lb.top + lb.scaled_height > self.p.out_h
        {
            return Err(bad(format!("letterbox {lb:?} does not fit the canvas")));
        }
        let s = &mut self.p.slot[self.p.jobs as usize];
        *s = PreSlot {
            width: lb.src_width,
            height: lb.src_height,
            slot: slot as u32,
            left: lb.left,
            top: lb.top,
            nw: lb.scaled_width,
            nh: lb.scaled_height,
            rx: lb.inv_scale().0,
            ry: lb.inv_scale().1,
            ..PreSlot::default()
        };
        Ok(s)
    }

    /// Adds a pitch-linear NV12 picture in device memory.
    pub(crate) fn push_pitch(
        &mut self,
        slot: usize,
        pic: &DeviceNv12,
        lb: &Letterbox,
        colour: ColourDesc,
    ) -> Result<(), GpuError> {
        let (w, h, pitch) = (pic.width as usize, pic.height as usize, pic.pitch);
        if w == 0 || h == 0 || pitch < w.div_ceil(2) * 2 || pitch > u32::MAX as usize {
            return Err(bad(format!(
                "NV12 picture {w}x{h} with pitch {pitch}: empty, or pitch below the row width"
            )));
        }
        if (lb.src_width, lb.src_height) != (pic.width, pic.height) {
            return Err(bad("letterbox computed for another picture size".into()));
        }
        check_range("NV12 luma plane", pic.luma, pitch * (h - 1) + w)?;
        check_range(
            "NV12 chroma plane",
            pic.chroma,
            pitch * (h.div_ceil(2) - 1) + w.div_ceil(2) * 2,
        )?;
        let s = self.next_slot(slot, lb)?;
        s.luma = pic.luma;
        s.chroma = pic.chroma;
        s.pitch = pitch as u32;
        s.source = SRC_PITCH;
        colour_consts(colour, s);
        self.p.jobs += 1;
        Ok(())
    }

    /// Adds a picture read through texture objects over CUDA arrays (luma R8, chroma RG8).
    ///
    /// # Safety
    /// `luma_tex` and `chroma_tex` must be live texture objects of this context over arrays
    /// of at least `lb.src_width × lb.src_height` (luma) and half that, rounded up (chroma),
    /// made with [`TextureFilter`] `filter`, and must stay alive until the launch completes.
    pub(crate) unsafe fn push_textures(
        &mut self,
        slot: usize,
        luma_tex: u64,
        chroma_tex: u64,
        filter: TextureFilter,
        lb: &Letterbox,
        colour: ColourDesc,
    ) -> Result<(), GpuError> {
        if luma_tex == 0 || chroma_tex == 0 || lb.src_width == 0 || lb.src_height == 0 {
            return Err(bad("null texture object or empty picture".into()));
        }
        let s = self.next_slot(slot, lb)?;
        s.luma = luma_tex;
        s.chroma = chroma_tex;
        s.source = match filter {
            TextureFilter::Point => SRC_TEX_POINT,
            TextureFilter::Linear => SRC_TEX_LINEAR,
        };
        colour_consts(colour, s);
        self.p.jobs += 1;
        Ok(())
    }

    /// Queues the kernel for the pictures pushed since `begin` (nothing if there are none).
    pub(crate) fn launch(&mut self, k: &Kernels, stream: &CudaStream) -> Result<(), GpuError> {
        if self.p.jobs == 0 {
            return Ok(());
        }
        if self.p.out == 0 {
            return Err(bad("preprocess launch without an output tensor".into()));
        }
        let f = match self.dtype {
            DType::F32 => k.preprocess_f32,
            DType::F16 => k.preprocess_f16,
        };
        let mut params: [*mut c_void; 1] = [(&mut self.p as *mut PreBatch).cast()];
        // SAFETY: `f` comes from the module of this context (Kernels of stream's context,
        // checked by the caller); the single parameter is a PreBatch whose size was verified
        // against the kernel at load; every address in it was range-checked by begin/push_*
        // (texture objects by the caller of push_textures).
        let r = unsafe {
            launch_raw(
                f,
                (self.p.out_w.div_ceil(128), self.p.out_h, self.p.jobs),
                (128, 1, 1),
                0,
                stream,
                &mut params,
            )
        };
        self.p.jobs = 0;
        r
    }
}

/// Head codes of kernels/postprocess.cu.
pub(crate) const HEAD_V8: u32 = 0;
pub(crate) const HEAD_V5: u32 = 1;
pub(crate) const HEAD_YOLOX_RAW: u32 = 2;
pub(crate) const HEAD_E2E: u32 = 3;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PostLb {
    pub left: f32,
    pub top: f32,
    pub inv_x: f32,
    pub inv_y: f32,
    pub src_w: f32,
    pub src_h: f32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct PostParams {
    pub output: u64,
    pub cands: u64,
    pub keys: u64,
    pub counts: u64,
    pub results: u64,
    pub class_mask: u64,
    pub head: u32,
    pub classes: u32,
    pub anchors: u32,
    pub batch: u32,
    pub key_stride: u32,
    pub max_det: u32,
    pub canvas_w: u32,
    pub canvas_h: u32,
    pub score_thr: f32,
    pub iou_thr: f32,
    pub lb: [PostLb; POST_MAX_BATCH],
}

/// One detection as the kernel writes it (`JwDet`).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RawDet {
    pub class: u32,
    pub score: f32,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

/// One batch item's results (`JwResultItem`).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RawResult {
    pub count: u32,
    pub pad: [u32; 3],
    pub det: [RawDet; POST_MAX_DET],
}

/// Dynamic shared memory of `jw_post_select`: the top-K sort keys (it also uses 1792 bytes of
/// static shared memory; 34 KiB in all, under the 48 KiB every architecture grants).
const SELECT_SHARED: u32 = (POST_TOP_K * 8) as u32;

impl PostParams {
    pub(crate) fn boxed() -> Box<PostParams> {
        Box::new(PostParams {
            output: 0,
            cands: 0,
            keys: 0,
            counts: 0,
            results: 0,
            class_mask: 0,
            head: 0,
            classes: 0,
            anchors: 0,
            batch: 0,
            key_stride: 0,
            max_det: 0,
            canvas_w: 0,
            canvas_h: 0,
            score_thr: 0.0,
            iou_thr: 0.0,
            lb: [PostLb::default(); POST_MAX_BATCH],
        })
    }

    /// Queues counts reset, collect and select.
    ///
    /// # Safety
    /// `cands`, `keys`, `counts`, `results` and `class_mask` (if non-zero) must be device
    /// buffers of this stream's context sized for `batch` items of this head (the owner,
    /// `CudaPostprocess`, allocates them so at construction); `output` is range-checked here.
    pub(crate) unsafe fn launch(
        &mut self,
        k: &Kernels,
        stream: &CudaStream,
        dtype: DType,
        output_bytes: usize,
    ) -> Result<(), GpuError> {
        if self.batch == 0 || self.batch as usize > POST_MAX_BATCH {
            return Err(bad(format!(
                "postprocess batch {} outside 1..={POST_MAX_BATCH}",
                self.batch
            )));
        }
        check_range("postprocess output tensor", self.output, output_bytes)?;
        // SAFETY: counts holds `batch` u32s (caller's contract); stream of the same context.
        check("cuMemsetD32Async", unsafe {
            sys::cuMemsetD32Async(self.counts, 0, self.batch as usize, stream.raw())
        })?;
        let collect = match dtype {
            DType::F32 => k.post_collect_f32,
            DType::F16 => k.post_collect_f16,
        };
        let mut params: [*mut c_void; 1] = [(self as *mut PostParams).cast()];
        // SAFETY: size of PostParams verified against the kernels at load; buffers per the
        // caller's contract; output range-checked above.
        unsafe {
            launch_raw(
                collect,
                (self.anchors.div_ceil(256), self.batch, 1),
                (256, 1, 1),
                0,
                stream,
                &mut params,
            )?;
            // Block size must equal JW_SEL_THREADS (the kernel keeps 4 candidates per thread).
            launch_raw(
                k.post_select,
                (self.batch, 1, 1),
                (1024, 1, 1),
                SELECT_SHARED,
                stream,
                &mut params,
            )
        }
    }
}

const _: () = assert!(std::mem::size_of::<PreSlot>() == 88);
const _: () = assert!(std::mem::size_of::<PreBatch>() == 32 + 88 * PRE_MAX_SLOTS);
const _: () = assert!(std::mem::size_of::<RawResult>() == 16 + 24 * POST_MAX_DET);
