//! CPU preprocess twin: host NV12 → letterboxed, normalised, planar `f32`/`f16` batch slot.
//!
//! This is the reference implementation of docs/preprocess.md; every step below names the
//! section of that document it implements. The CUDA kernel must match it to within 1/255.
//!
//! Per-column and per-row sampling tables (integer taps and fractional weights, for luma and
//! chroma) are computed when the source size changes; their storage is sized for the model
//! canvas at construction, so no call (not even a size change) allocates.

use half::f16;

use super::{ChannelOrder, Letterbox, Preprocess, PreprocessJob, PreprocessSpec};
use crate::error::StageError;
use crate::frame::{ColourDesc, HostNv12, Matrix, Picture};
use crate::tensor::{DType, Tensor, TensorMem};

/// One bilinear tap along an axis: the two neighbouring sample indices and the weight of the
/// second (docs/preprocess.md §2, `bilinear`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tap {
    i0: u32,
    i1: u32,
    f: f32,
}

/// Taps for one output coordinate: luma and chroma.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Taps {
    luma: Tap,
    chroma: Tap,
}

/// §2 `bilinear` along one axis: clamp, floor, neighbour, fraction.
fn tap(x: f32, n: u32) -> Tap {
    let x = x.clamp(0.0, (n - 1) as f32);
    let x0 = x.floor();
    let i0 = x0 as u32;
    Tap {
        i0,
        i1: (i0 + 1).min(n - 1),
        f: x - x0,
    }
}

/// Taps for `count` placed output pixels along an axis of `src` source pixels.
/// Luma: `s = (u + 0.5)·(src/count) − 0.5`; chroma: `c = (s + 0.5)/2 − 0.5` (§2).
fn fill_taps(out: &mut Vec<Taps>, src: u32, count: u32) {
    out.clear();
    let ratio = src as f32 / count as f32;
    let csrc = src.div_ceil(2);
    for u in 0..count {
        let s = (u as f32 + 0.5) * ratio - 0.5;
        let c = (s + 0.5) / 2.0 - 0.5;
        out.push(Taps {
            luma: tap(s, src),
            chroma: tap(c, csrc),
        });
    }
}

/// The YCbCr → RGB constants of §3 for one colour description.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ColourConsts {
    y_off: f32,
    y_mul: f32,
    c_mul: f32,
    r_cr: f32,
    g_cb: f32,
    g_cr: f32,
    b_cb: f32,
}

impl ColourConsts {
    fn new(c: ColourDesc) -> Self {
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
        ColourConsts {
            y_off,
            y_mul,
            c_mul,
            r_cr: 2.0 * (1.0 - kr),
            g_cb: 2.0 * kb * (1.0 - kb) / kg,
            g_cr: 2.0 * kr * (1.0 - kr) / kg,
            b_cb: 2.0 * (1.0 - kb),
        }
    }

    /// §3: range expansion, matrix, clamp to [0, 255]. Returns (R, G, B).
    #[inline(always)]
    fn rgb(&self, y: f32, cb: f32, cr: f32) -> [f32; 3] {
        let y = (y - self.y_off) * self.y_mul;
        let cb = (cb - 128.0) * self.c_mul;
        let cr = (cr - 128.0) * self.c_mul;
        [
            (y + self.r_cr * cr).clamp(0.0, 255.0),
            (y - self.g_cb * cb - self.g_cr * cr).clamp(0.0, 255.0),
            (y + self.b_cb * cb).clamp(0.0, 255.0),
        ]
    }
}

/// Output element type (§4: `f32`, or `f16` rounded to nearest even).
trait Elem: Copy {
    fn from_f32(v: f32) -> Self;
}
impl Elem for f32 {
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}
impl Elem for f16 {
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

/// The CPU preprocess twin. See the module documentation.
#[derive(Debug)]
pub struct CpuPreprocess {
    spec: PreprocessSpec,
    /// Source size the tables were built for (0×0: none yet).
    table_size: (u32, u32),
    cols: Vec<Taps>,
    rows: Vec<Taps>,
}

impl CpuPreprocess {
    /// A twin for `spec`; allocates its sampling tables for the canvas size once.
    pub fn new(spec: PreprocessSpec) -> Self {
        CpuPreprocess {
            spec,
            table_size: (0, 0),
            cols: Vec::with_capacity(spec.width as usize),
            rows: Vec::with_capacity(spec.height as usize),
        }
    }

    fn check_tensor(&self, input: &Tensor) -> Result<(), StageError> {
        let s = &input.spec;
        let want = [3usize, self.spec.height as usize, self.spec.width as usize];
        if s.shape.len() != 4 || s.shape[1..] != want {
            return Err(StageError::Preprocess(format!(
                "input tensor `{}` has shape {:?}, expected [B, 3, {}, {}]",
                s.name, s.shape, self.spec.height, self.spec.width
            )));
        }
        if s.dtype != self.spec.dtype {
            return Err(StageError::Preprocess(format!(
                "input tensor `{}` is {}, the preprocess spec says {}",
                s.name,
                s.dtype.name(),
                self.spec.dtype.name()
            )));
        }
        match &input.mem {
            TensorMem::Host(b) if b.len() >= s.bytes() => Ok(()),
            TensorMem::Host(b) => Err(StageError::Preprocess(format!(
                "input tensor `{}` buffer holds {} bytes, its shape needs {}",
                s.name,
                b.len(),
                s.bytes()
            ))),
            TensorMem::Device { .. } => Err(StageError::Preprocess(format!(
                "the CPU preprocess writes host tensors; `{}` is in CUDA device memory \
                 (use the CUDA preprocess)",
                s.name
            ))),
        }
    }

    fn prepare_tables(&mut self, lb: &Letterbox) {
        let size = (lb.src_width, lb.src_height);
        if self.table_size != size {
            fill_taps(&mut self.cols, lb.src_width, lb.scaled_width);
            fill_taps(&mut self.rows, lb.src_height, lb.scaled_height);
            self.table_size = size;
        }
    }
}

fn check_picture(p: &HostNv12) -> Result<(), StageError> {
    if p.width == 0 || p.height == 0 {
        return Err(StageError::Preprocess(format!(
            "picture has an empty size {}x{}",
            p.width, p.height
        )));
    }
    let rows = p.height as usize + (p.height as usize).div_ceil(2);
    let cw = (p.width as usize).div_ceil(2) * 2;
    if p.pitch < cw || p.pitch * rows > p.buf.len() {
        return Err(StageError::Preprocess(format!(
            "NV12 picture {}x{} with pitch {} does not fit its {}-byte buffer",
            p.width,
            p.height,
            p.pitch,
            p.buf.len()
        )));
    }
    Ok(())
}

/// Writes one picture into the three planes of one slot (§1–§4).
#[allow(clippy::too_many_arguments)]
fn write_slot<T: Elem>(
    spec: &PreprocessSpec,
    lb: &Letterbox,
    cols: &[Taps],
    rows: &[Taps],
    pic: &HostNv12,
    cc: &ColourConsts,
    out: &mut [T],
) {
    let (sw, sh) = (spec.width as usize, spec.height as usize);
    let plane = sw * sh;
    let pad = T::from_f32(spec.pad * spec.scale);
    let (left, top) = (lb.left as usize, lb.top as usize);
    let (nw, nh) = (lb.scaled_width as usize, lb.scaled_height as usize);
    let luma = pic.luma();
    let chroma = pic.chroma();
    let pitch = pic.pitch;
    let scale = spec.scale;
    let (p0, rest) = out[..3 * plane].split_at_mut(plane);
    let (p1, p2) = rest.split_at_mut(plane);
    // §4: planes in R, G, B order.
    let mut planes: [&mut [T]; 3] = match spec.order {
        ChannelOrder::Rgb => [p0, p1, p2],
        ChannelOrder::Bgr => [p2, p1, p0],
    };

    for oy in 0..sh {
        let row = oy * sw;
        if oy < top || oy >= top + nh {
            for p in planes.iter_mut() {
                p[row..row + sw].fill(pad);
            }
            continue;
        }
        for p in planes.iter_mut() {
            p[row..row + left].fill(pad);
            p[row + left + nw..row + sw].fill(pad);
        }
        let rt = rows[oy - top];
        let ly0 = &luma[rt.luma.i0 as usize * pitch..];
        let ly1 = &luma[rt.luma.i1 as usize * pitch..];
        let cy0 = &chroma[rt.chroma.i0 as usize * pitch..];
        let cy1 = &chroma[rt.chroma.i1 as usize * pitch..];
        let (fy, cfy) = (rt.luma.f, rt.chroma.f);
        let [rp, gp, bp] = &mut planes;
        let (rp, gp, bp) = (
            &mut rp[row + left..row + left + nw],
            &mut gp[row + left..row + left + nw],
            &mut bp[row + left..row + left + nw],
        );
        for (i, ct) in cols[..nw].iter().enumerate() {
            let (x0, x1, fx) = (ct.luma.i0 as usize, ct.luma.i1 as usize, ct.luma.f);
            let t = ly0[x0] as f32 + (ly0[x1] as f32 - ly0[x0] as f32) * fx;
            let b = ly1[x0] as f32 + (ly1[x1] as f32 - ly1[x0] as f32) * fx;
            let y = t + (b - t) * fy;

            let (c0, c1, cfx) = (
                2 * ct.chroma.i0 as usize,
                2 * ct.chroma.i1 as usize,
                ct.chroma.f,
            );
            let cbt = cy0[c0] as f32 + (cy0[c1] as f32 - cy0[c0] as f32) * cfx;
            let cbb = cy1[c0] as f32 + (cy1[c1] as f32 - cy1[c0] as f32) * cfx;
            let cb = cbt + (cbb - cbt) * cfy;
            let crt = cy0[c0 + 1] as f32 + (cy0[c1 + 1] as f32 - cy0[c0 + 1] as f32) * cfx;
            let crb = cy1[c0 + 1] as f32 + (cy1[c1 + 1] as f32 - cy1[c0 + 1] as f32) * cfx;
            let cr = crt + (crb - crt) * cfy;

            let rgb = cc.rgb(y, cb, cr);
            rp[i] = T::from_f32(rgb[0] * scale);
            gp[i] = T::from_f32(rgb[1] * scale);
            bp[i] = T::from_f32(rgb[2] * scale);
        }
    }
}

impl Preprocess for CpuPreprocess {
    fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    fn run(
        &mut self,
        jobs: &[PreprocessJob<'_>],
        input: &mut Tensor,
        letterboxes: &mut [Letterbox],
    ) -> Result<(), StageError> {
        self.check_tensor(input)?;
        if letterboxes.len() < jobs.len() {
            return Err(StageError::Preprocess(format!(
                "{} jobs but room for only {} letterboxes",
                jobs.len(),
                letterboxes.len()
            )));
        }
        let batch = input.spec.shape[0];
        let item = input.spec.item_elements();
        for (j, job) in jobs.iter().enumerate() {
            let pic = match job.picture {
                Picture::Host(p) => p,
                Picture::Device(_) | Picture::DeviceArray(_) => {
                    return Err(StageError::Preprocess(
                        "the CPU preprocess reads host NV12 pictures only; this picture is \
                         in CUDA device memory (use the CUDA preprocess, or a decoder that \
                         outputs host pictures)"
                            .to_string(),
                    ))
                }
            };
            check_picture(pic)?;
            if job.slot >= batch {
                return Err(StageError::Preprocess(format!(
                    "slot {} is outside the input batch of {}",
                    job.slot, batch
                )));
            }
            let lb = Letterbox::compute(&self.spec, pic.width, pic.height);
            self.prepare_tables(&lb);
            let cc = ColourConsts::new(job.colour);
            let range = job.slot * item..(job.slot + 1) * item;
            let Some(buf) = input.host_buf_mut() else {
                return Err(StageError::Preprocess(
                    "input tensor is not in host memory".to_string(),
                ));
            };
            match self.spec.dtype {
                DType::F32 => write_slot(
                    &self.spec,
                    &lb,
                    &self.cols,
                    &self.rows,
                    pic,
                    &cc,
                    &mut buf.as_f32_mut()[range],
                ),
                DType::F16 => write_slot(
                    &self.spec,
                    &lb,
                    &self.cols,
                    &self.rows,
                    pic,
                    &cc,
                    &mut buf.as_f16_mut()[range],
                ),
            }
            letterboxes[j] = lb;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::Placement;
    use crate::tensor::TensorSpec;

    fn spec(
        w: u32,
        h: u32,
        placement: Placement,
        order: ChannelOrder,
        scale: f32,
    ) -> PreprocessSpec {
        PreprocessSpec {
            width: w,
            height: h,
            placement,
            order,
            scale,
            pad: 114.0,
            dtype: DType::F32,
        }
    }

    fn input(spec: &PreprocessSpec, batch: usize) -> Tensor {
        Tensor::host(TensorSpec {
            name: "images".into(),
            dtype: spec.dtype,
            shape: vec![batch, 3, spec.height as usize, spec.width as usize],
        })
    }

    fn constant(w: u32, h: u32, y: u8, cb: u8, cr: u8) -> Picture {
        let mut p = HostNv12::with_capacity(w, h);
        assert!(p.set_size(w, h));
        let (luma, chroma) = p.planes_mut();
        luma.fill(y);
        for pair in chroma.chunks_exact_mut(2) {
            pair[0] = cb;
            pair[1] = cr;
        }
        Picture::Host(p)
    }

    fn run_one(
        pp: &mut CpuPreprocess,
        pic: &Picture,
        colour: ColourDesc,
        t: &mut Tensor,
        slot: usize,
    ) -> Letterbox {
        let mut lbs = [Letterbox::default()];
        pp.run(
            &[PreprocessJob {
                picture: pic,
                colour,
                slot,
            }],
            t,
            &mut lbs,
        )
        .unwrap();
        lbs[0]
    }

    /// Textbook conversion constants (ITU-R BT.601 / BT.709, e.g. the tables in
    /// Poynton, "Digital Video and HD", ch. 29/30), independent of the code under test.
    fn textbook(matrix: Matrix, full: bool, y: f64, cb: f64, cr: f64) -> [f64; 3] {
        let (rv, gu, gv, bu) = match matrix {
            Matrix::Bt601 => (1.402, 0.344136, 0.714136, 1.772),
            Matrix::Bt709 => (1.5748, 0.187324, 0.468124, 1.8556),
        };
        let (y, u, v) = if full {
            (y, cb - 128.0, cr - 128.0)
        } else {
            (
                (y - 16.0) * 255.0 / 219.0,
                (cb - 128.0) * 255.0 / 224.0,
                (cr - 128.0) * 255.0 / 224.0,
            )
        };
        [y + rv * v, y - gu * u - gv * v, y + bu * u].map(|c| c.clamp(0.0, 255.0))
    }

    #[test]
    fn constant_colour_gives_textbook_rgb_for_each_matrix_and_range() {
        let s = spec(64, 48, Placement::Centre, ChannelOrder::Rgb, 1.0);
        let mut pp = CpuPreprocess::new(s);
        let mut t = input(&s, 1);
        let colours = [
            (16, 128, 128),
            (235, 128, 128),
            (81, 90, 240),
            (145, 54, 34),
            (41, 240, 110),
            (120, 100, 160),
            (0, 0, 255),
            (255, 255, 0),
        ];
        for matrix in [Matrix::Bt601, Matrix::Bt709] {
            for full_range in [false, true] {
                for &(y, cb, cr) in &colours {
                    let pic = constant(64, 48, y, cb, cr);
                    run_one(&mut pp, &pic, ColourDesc { matrix, full_range }, &mut t, 0);
                    let want = textbook(matrix, full_range, y as f64, cb as f64, cr as f64);
                    let out = t.host_buf().unwrap().as_f32();
                    for c in 0..3 {
                        for &px in &[0usize, 17 * 64 + 33, 64 * 48 - 1] {
                            let got = out[c * 64 * 48 + px] as f64;
                            assert!(
                                (got - want[c]).abs() < 2e-3,
                                "{matrix:?} full={full_range} YCbCr=({y},{cb},{cr}) ch{c}: got {got}, want {}",
                                want[c]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn limited_black_and_white_are_exact() {
        let s = spec(32, 32, Placement::Stretch, ChannelOrder::Rgb, 1.0 / 255.0);
        let mut pp = CpuPreprocess::new(s);
        let mut t = input(&s, 1);
        for (y, want) in [(16u8, 0.0f32), (235, 1.0)] {
            let pic = constant(40, 30, y, 128, 128);
            run_one(
                &mut pp,
                &pic,
                ColourDesc {
                    matrix: Matrix::Bt709,
                    full_range: false,
                },
                &mut t,
                0,
            );
            for &v in t.host_buf().unwrap().as_f32() {
                assert!((v - want).abs() < 1e-6, "Y={y}: {v} != {want}");
            }
        }
    }

    #[test]
    fn bgr_swaps_planes_and_pad_is_114_times_scale() {
        // 640x480 on a 640x640 canvas: rows [80, 560) hold the picture, the rest is pad.
        let scale = 1.0 / 255.0;
        let s_rgb = spec(640, 640, Placement::Centre, ChannelOrder::Rgb, scale);
        let s_bgr = PreprocessSpec {
            order: ChannelOrder::Bgr,
            ..s_rgb
        };
        let pic = constant(640, 480, 81, 90, 240); // BT.601 limited red
        let colour = ColourDesc {
            matrix: Matrix::Bt601,
            full_range: false,
        };
        let (mut a, mut b) = (input(&s_rgb, 1), input(&s_bgr, 1));
        let lb = run_one(&mut CpuPreprocess::new(s_rgb), &pic, colour, &mut a, 0);
        run_one(&mut CpuPreprocess::new(s_bgr), &pic, colour, &mut b, 0);
        assert_eq!(
            (lb.left, lb.top, lb.scaled_width, lb.scaled_height),
            (0, 80, 640, 480)
        );
        let plane = 640 * 640;
        let (a, b) = (
            a.host_buf().unwrap().as_f32(),
            b.host_buf().unwrap().as_f32(),
        );
        assert_eq!(&a[..plane], &b[2 * plane..]);
        assert_eq!(&a[plane..2 * plane], &b[plane..2 * plane]);
        assert_eq!(&a[2 * plane..], &b[..plane]);
        let pad = 114.0 * scale;
        for c in 0..3 {
            for y in [0usize, 79, 560, 639] {
                assert!(a[c * plane + y * 640..c * plane + y * 640 + 640]
                    .iter()
                    .all(|&v| v == pad));
            }
            assert!(a[c * plane + 80 * 640..c * plane + 560 * 640]
                .iter()
                .all(|&v| v != pad));
        }
        assert!(a[100 * 640 + 5] > 0.99, "red plane is red");
    }

    #[test]
    fn geometry_of_the_shared_models() {
        // (canvas, placement) of yolov8n 640, yolo11n 320, YOLOX-nano 416, FastestDet 352.
        let models = [
            (640, Placement::Centre),
            (320, Placement::Centre),
            (416, Placement::TopLeft),
            (352, Placement::Stretch),
        ];
        // Expected (nw, nh, left, top) per model and source size.
        let want: [[(u32, u32, u32, u32); 3]; 4] = [
            [(640, 480, 0, 80), (640, 360, 0, 140), (640, 360, 0, 140)],
            [(320, 240, 0, 40), (320, 180, 0, 70), (320, 180, 0, 70)],
            [(416, 312, 0, 0), (416, 234, 0, 0), (416, 234, 0, 0)],
            [(352, 352, 0, 0), (352, 352, 0, 0), (352, 352, 0, 0)],
        ];
        for (m, &(size, placement)) in models.iter().enumerate() {
            let s = spec(size, size, placement, ChannelOrder::Rgb, 1.0);
            let mut pp = CpuPreprocess::new(s);
            let mut t = input(&s, 2);
            for (k, &(w, h)) in [(640u32, 480u32), (1920, 1080), (768, 432)]
                .iter()
                .enumerate()
            {
                let pic = constant(w, h, 200, 128, 128);
                let lb = run_one(&mut pp, &pic, ColourDesc::default(), &mut t, 1);
                let (nw, nh, left, top) = want[m][k];
                assert_eq!(
                    (lb.scaled_width, lb.scaled_height, lb.left, lb.top),
                    (nw, nh, left, top),
                    "model {size} {placement:?}, source {w}x{h}"
                );
                // Slot 1 holds the picture exactly inside the rectangle; pad elsewhere.
                let n = (size * size) as usize;
                let out = &t.host_buf().unwrap().as_f32()[3 * n..];
                for y in 0..size {
                    for x in 0..size {
                        let inside = x >= left && x < left + nw && y >= top && y < top + nh;
                        let v = out[(y * size + x) as usize];
                        assert_eq!(v == 114.0, !inside, "({x},{y}) model {size} source {w}x{h}");
                    }
                }
                assert_eq!(lb.map_x(left as f32 + nw as f32), w as f32);
                assert_eq!(lb.map_y(top as f32), 0.0);
            }
        }
    }

    #[test]
    fn bilinear_follows_the_half_pixel_rule() {
        // A horizontal luma ramp Y = 16 + 4x upscaled 2x (limited BT.601, grey chroma): every
        // output sample must equal the rule evaluated by hand.
        let s = spec(32, 8, Placement::Stretch, ChannelOrder::Rgb, 1.0);
        let mut pp = CpuPreprocess::new(s);
        let mut t = input(&s, 1);
        let mut p = HostNv12::with_capacity(16, 4);
        assert!(p.set_size(16, 4));
        let pitch = p.pitch;
        let (luma, chroma) = p.planes_mut();
        for r in 0..4 {
            for x in 0..16 {
                luma[r * pitch + x] = 16 + 4 * x as u8;
            }
        }
        chroma.fill(128);
        let pic = Picture::Host(p);
        run_one(&mut pp, &pic, ColourDesc::default(), &mut t, 0);
        let out = t.host_buf().unwrap().as_f32();
        for (ox, &got) in out[..32].iter().enumerate() {
            let sx = ((ox as f32 + 0.5) * 0.5 - 0.5).clamp(0.0, 15.0);
            let want = (16.0 + 4.0 * sx - 16.0) * 255.0 / 219.0;
            assert!((got - want).abs() < 1e-3, "x={ox}: {got} vs {want}");
        }
    }

    #[test]
    fn f16_output_is_f32_rounded() {
        let s32 = spec(96, 64, Placement::Centre, ChannelOrder::Rgb, 1.0 / 255.0);
        let s16 = PreprocessSpec {
            dtype: DType::F16,
            ..s32
        };
        // A busy picture: a pseudo-random pattern.
        let mut p = HostNv12::with_capacity(50, 37);
        assert!(p.set_size(50, 37));
        let mut x = 12345u32;
        for b in p.buf.iter_mut() {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            *b = (x >> 24) as u8;
        }
        let pic = Picture::Host(p);
        let colour = ColourDesc {
            matrix: Matrix::Bt709,
            full_range: true,
        };
        let (mut a, mut b) = (input(&s32, 1), input(&s16, 1));
        run_one(&mut CpuPreprocess::new(s32), &pic, colour, &mut a, 0);
        run_one(&mut CpuPreprocess::new(s16), &pic, colour, &mut b, 0);
        let (a, b) = (
            a.host_buf().unwrap().as_f32(),
            b.host_buf().unwrap().as_f16(),
        );
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(f16::from_f32(*x).to_bits(), y.to_bits());
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let s = spec(64, 64, Placement::Centre, ChannelOrder::Rgb, 1.0);
        let mut pp = CpuPreprocess::new(s);
        let mut t = input(&s, 1);
        let mut lbs = [Letterbox::default()];
        let dev = Picture::Device(crate::frame::DeviceNv12 {
            luma: 0,
            chroma: 0,
            pitch: 64,
            width: 64,
            height: 64,
            device: 0,
        });
        let job = |p| PreprocessJob {
            picture: p,
            colour: ColourDesc::default(),
            slot: 0,
        };
        let e = pp
            .run(&[job(&dev)], &mut t, &mut lbs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("host NV12"), "{e}");
        let pic = constant(64, 64, 100, 128, 128);
        let e = pp
            .run(
                &[PreprocessJob {
                    picture: &pic,
                    colour: ColourDesc::default(),
                    slot: 1,
                }],
                &mut t,
                &mut lbs,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("slot 1"), "{e}");
        let mut wrong = input(&spec(32, 32, Placement::Centre, ChannelOrder::Rgb, 1.0), 1);
        let e = pp
            .run(&[job(&pic)], &mut wrong, &mut lbs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected [B, 3, 64, 64]"), "{e}");
        let mut half = input(
            &PreprocessSpec {
                dtype: DType::F16,
                ..s
            },
            1,
        );
        assert!(pp.run(&[job(&pic)], &mut half, &mut lbs).is_err());
        let mut empty = HostNv12::with_capacity(8, 8);
        empty.width = 0;
        let empty = Picture::Host(empty);
        assert!(pp.run(&[job(&empty)], &mut t, &mut lbs).is_err());
    }
}
