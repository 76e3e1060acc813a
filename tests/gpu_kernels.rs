//! GPU kernel tests: the CUDA preprocess and postprocess against their CPU twins, on fresh
//! random inputs and on real data, plus the zero-allocation rule and (ignored by default) the
//! timings recorded in docs/perf.md.
//!
//! Needs `--features cuda13` (or `cuda12`) and a CUDA GPU. Without a GPU every test prints
//! `SKIPPED (no CUDA GPU): <reason>` and passes (CI has no GPU); with
//! `JETWATCH_REQUIRE_GPU=1` (set by tools/gpu-check.sh) a missing GPU fails instead.
//! Real-data tests read the files made by tools/gpu-fixtures.py from `JETWATCH_GPU_FIXTURES`.
#![cfg(feature = "cuda")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use half::f16;
use jetwatch::alloc_count::{self, CountingAlloc};
use jetwatch::frame::{ColourDesc, DeviceArrayNv12, DeviceNv12, HostNv12, Matrix, Picture};
use jetwatch::gpu::{CudaArray2D, CudaContext, CudaEvent, CudaStream, DeviceBuffer, TextureFilter};
use jetwatch::postprocess::cpu::CpuPostprocess;
use jetwatch::postprocess::cuda::CudaPostprocess;
use jetwatch::postprocess::{DetectionList, HeadKind, Postprocess, PostprocessOptions};
use jetwatch::preprocess::cpu::CpuPreprocess;
use jetwatch::preprocess::cuda::CudaPreprocess;
use jetwatch::preprocess::{
    ChannelOrder, Letterbox, Placement, Preprocess, PreprocessJob, PreprocessSpec,
};
use jetwatch::tensor::{DType, Tensor, TensorMem, TensorSpec};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------------
// Harness

fn gpu() -> Option<(Arc<CudaContext>, Arc<CudaStream>)> {
    let r = CudaContext::new(0).and_then(|c| CudaStream::new(&c).map(|s| (c, s)));
    match r {
        Ok(x) => Some(x),
        Err(e) => {
            if std::env::var("JETWATCH_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("JETWATCH_REQUIRE_GPU=1 but no usable CUDA GPU: {e}");
            }
            eprintln!("SKIPPED (no CUDA GPU): {e}");
            None
        }
    }
}

fn fixtures() -> Option<PathBuf> {
    match std::env::var_os("JETWATCH_GPU_FIXTURES") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            if std::env::var("JETWATCH_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("JETWATCH_GPU_FIXTURES is not set (make them with tools/gpu-fixtures.py)");
            }
            eprintln!("SKIPPED (no JETWATCH_GPU_FIXTURES): real-data test");
            None
        }
    }
}

/// SplitMix64: a small, seedable generator (no dependency).
struct Rng(u64);
impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("JETWATCH_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        println!("seed {seed} (JETWATCH_TEST_SEED={seed} reproduces)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

fn host_nv12(width: u32, height: u32, pitch: usize) -> HostNv12 {
    let rows = height as usize + (height as usize).div_ceil(2);
    HostNv12 {
        buf: vec![0u8; pitch * rows].into_boxed_slice(),
        width,
        height,
        pitch,
    }
}

/// Random NV12 picture; `smooth` gives low-frequency content like camera frames.
fn random_picture(rng: &mut Rng, w: u32, h: u32, pitch: usize, smooth: bool) -> HostNv12 {
    let mut p = host_nv12(w, h, pitch);
    if !smooth {
        rng.fill(&mut p.buf);
        return p;
    }
    let (a, b, c) = (rng.f32() * 0.05, rng.f32() * 0.05, rng.f32() * 6.0);
    let (y, uv) = p.planes_mut();
    for r in 0..h as usize {
        for x in 0..w as usize {
            let v = 128.0 + 100.0 * ((x as f32 * a + c).sin() * (r as f32 * b).cos());
            y[r * pitch + x] = v as u8;
        }
    }
    for r in 0..(h as usize).div_ceil(2) {
        for x in 0..(w as usize).div_ceil(2) {
            uv[r * pitch + 2 * x] = (128.0 + 60.0 * (x as f32 * b * 2.0).sin()) as u8;
            uv[r * pitch + 2 * x + 1] = (128.0 + 60.0 * (r as f32 * a * 2.0 + c).cos()) as u8;
        }
    }
    p
}

/// A host picture uploaded to device memory with the same pitch.
struct DevPicture {
    _buf: DeviceBuffer,
    pic: Picture,
}

fn upload(ctx: &Arc<CudaContext>, p: &HostNv12) -> DevPicture {
    let buf = DeviceBuffer::alloc(ctx, p.buf.len()).unwrap();
    buf.copy_from_host(&p.buf[..]).unwrap();
    let pic = Picture::Device(DeviceNv12 {
        luma: buf.ptr(),
        chroma: buf.ptr() + (p.pitch * p.height as usize) as u64,
        pitch: p.pitch,
        width: p.width,
        height: p.height,
        device: ctx.ordinal(),
    });
    DevPicture { _buf: buf, pic }
}

/// A host picture copied into two CUDA arrays (luma R8, chroma RG8).
struct ArrPicture {
    _l: CudaArray2D,
    _c: CudaArray2D,
    pic: Picture,
}

fn upload_arrays(ctx: &Arc<CudaContext>, p: &HostNv12) -> ArrPicture {
    let (w, h) = (p.width as usize, p.height as usize);
    let l = CudaArray2D::new(ctx, w, h, 1).unwrap();
    l.copy_from_host(p.luma(), p.pitch).unwrap();
    let c = CudaArray2D::new(ctx, w.div_ceil(2), h.div_ceil(2), 2).unwrap();
    c.copy_from_host(p.chroma(), p.pitch).unwrap();
    let pic = Picture::DeviceArray(DeviceArrayNv12 {
        luma_array: l.handle(),
        chroma_array: c.handle(),
        width: p.width,
        height: p.height,
        device: ctx.ordinal(),
    });
    ArrPicture { _l: l, _c: c, pic }
}

fn input_spec(spec: &PreprocessSpec, batch: usize) -> TensorSpec {
    TensorSpec {
        name: "images".into(),
        dtype: spec.dtype,
        shape: vec![batch, 3, spec.height as usize, spec.width as usize],
    }
}

fn download_f32(buf: &DeviceBuffer, spec: &TensorSpec) -> Vec<f32> {
    match spec.dtype {
        DType::F32 => {
            let mut v = vec![0f32; spec.elements()];
            buf.copy_to_host(&mut v).unwrap();
            v
        }
        DType::F16 => {
            let mut v = vec![f16::ZERO; spec.elements()];
            buf.copy_to_host(&mut v).unwrap();
            v.iter().map(|x| x.to_f32()).collect()
        }
    }
}

fn host_f32(t: &Tensor) -> Vec<f32> {
    let b = t.host_buf().unwrap();
    match t.spec.dtype {
        DType::F32 => b.as_f32().to_vec(),
        DType::F16 => b.as_f16().iter().map(|x| x.to_f32()).collect(),
    }
}

/// Runs both twins on the same jobs; returns the max |Δ| in units of 1/255 of the output
/// range (255·scale) over the written slots, after checking unwritten slots stayed poisoned
/// and letterboxes agree.
fn compare_preprocess(
    ctx: &Arc<CudaContext>,
    stream: &Arc<CudaStream>,
    spec: PreprocessSpec,
    batch: usize,
    host: &[(&HostNv12, ColourDesc, usize)],
    device: &[&Picture],
    filter: TextureFilter,
) -> f32 {
    let ts = input_spec(&spec, batch);
    let mut cpu = CpuPreprocess::new(spec);
    let mut cpu_in = Tensor::host(ts.clone());
    let hp: Vec<Picture> = host
        .iter()
        .map(|(p, _, _)| {
            let mut q = host_nv12(p.width, p.height, p.pitch);
            q.buf.copy_from_slice(&p.buf);
            Picture::Host(q)
        })
        .collect();
    let jobs: Vec<PreprocessJob> = hp
        .iter()
        .zip(host)
        .map(|(p, (_, c, s))| PreprocessJob {
            picture: p,
            colour: *c,
            slot: *s,
        })
        .collect();
    let mut lb_cpu = vec![Letterbox::default(); jobs.len()];
    cpu.run(&jobs, &mut cpu_in, &mut lb_cpu).unwrap();

    let mut gpu = CudaPreprocess::new(stream.clone(), spec).unwrap();
    gpu.set_texture_filter(filter).unwrap();
    let (buf, mut gpu_in) = DeviceBuffer::for_tensor(ctx, ts.clone()).unwrap();
    buf.memset_async(0xFF, stream).unwrap(); // NaN in f32 and f16
    let gjobs: Vec<PreprocessJob> = device
        .iter()
        .zip(host)
        .map(|(p, (_, c, s))| PreprocessJob {
            picture: p,
            colour: *c,
            slot: *s,
        })
        .collect();
    let mut lb_gpu = vec![Letterbox::default(); jobs.len()];
    gpu.run(&gjobs, &mut gpu_in, &mut lb_gpu).unwrap();
    stream.synchronize().unwrap();
    assert_eq!(lb_cpu, lb_gpu, "letterboxes differ");

    let a = host_f32(&cpu_in);
    let b = download_f32(&buf, &ts);
    let item = ts.item_elements();
    let range = 255.0 * spec.scale;
    let mut worst = 0f32;
    for k in 0..batch {
        let written = host.iter().any(|(_, _, s)| *s == k);
        let (xa, xb) = (&a[k * item..(k + 1) * item], &b[k * item..(k + 1) * item]);
        if !written {
            assert!(
                xb.iter().all(|v| v.is_nan()),
                "slot {k} was not a job but was written"
            );
            continue;
        }
        for (i, (p, q)) in xa.iter().zip(xb).enumerate() {
            assert!(
                q.is_finite(),
                "slot {k} element {i} not written (or NaN): {q}"
            );
            let d = (p - q).abs() / range * 255.0;
            if d > worst {
                worst = d;
            }
        }
    }
    worst
}

fn random_spec(rng: &mut Rng) -> PreprocessSpec {
    let canvases = [
        (640, 640),
        (320, 320),
        (416, 256),
        (352, 352),
        (640, 384),
        (33, 17),
    ];
    let (width, height) = canvases[rng.below(canvases.len() as u64) as usize];
    PreprocessSpec {
        width,
        height,
        placement: [Placement::Centre, Placement::TopLeft, Placement::Stretch]
            [rng.below(3) as usize],
        order: if rng.bool() {
            ChannelOrder::Rgb
        } else {
            ChannelOrder::Bgr
        },
        scale: if rng.below(4) == 0 { 1.0 } else { 1.0 / 255.0 },
        pad: 114.0,
        dtype: if rng.bool() { DType::F32 } else { DType::F16 },
    }
}

fn random_colour(rng: &mut Rng) -> ColourDesc {
    ColourDesc {
        matrix: if rng.bool() {
            Matrix::Bt601
        } else {
            Matrix::Bt709
        },
        full_range: rng.bool(),
    }
}

fn random_size(rng: &mut Rng) -> (u32, u32, usize) {
    let (w, h) = match rng.below(5) {
        0 => (rng.range(1, 9) as u32, rng.range(1, 9) as u32),
        1 => (1920, 1080),
        _ => (rng.range(2, 2100) as u32, rng.range(2, 1300) as u32),
    };
    let pitch =
        (w as usize).div_ceil(2) * 2 + rng.range(0, 3) as usize * 2 * rng.below(70) as usize;
    (w, h, pitch)
}

// ---------------------------------------------------------------------------------------------
// Preprocess

#[test]
fn preprocess_pitch_matches_cpu_twin_on_random_pictures() {
    let Some((ctx, stream)) = gpu() else { return };
    let mut rng = Rng::seeded();
    let mut worst = 0f32;
    for _ in 0..40 {
        let spec = random_spec(&mut rng);
        let batch = rng.range(1, 6) as usize;
        let jobs = rng.range(1, batch as u64) as usize;
        let mut slots: Vec<usize> = (0..batch).collect();
        for i in (1..slots.len()).rev() {
            slots.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let pics: Vec<HostNv12> = (0..jobs)
            .map(|_| {
                let (w, h, pitch) = random_size(&mut rng);
                let smooth = rng.below(3) == 0;
                random_picture(&mut rng, w, h, pitch, smooth)
            })
            .collect();
        let host: Vec<_> = pics
            .iter()
            .zip(&slots)
            .map(|(p, s)| (p, random_colour(&mut rng), *s))
            .collect();
        let devs: Vec<DevPicture> = pics.iter().map(|p| upload(&ctx, p)).collect();
        let dp: Vec<&Picture> = devs.iter().map(|d| &d.pic).collect();
        let d = compare_preprocess(&ctx, &stream, spec, batch, &host, &dp, TextureFilter::Point);
        assert!(d <= 1.0, "max |Δ| {d}/255 of the output range for {spec:?}");
        worst = worst.max(d);
    }
    println!("RESULT preprocess pitch random: 40 batches, max |Δ| = {worst:.4}/255 (limit 1/255)");
}

#[test]
fn preprocess_texture_matches_cpu_twin() {
    let Some((ctx, stream)) = gpu() else { return };
    let mut rng = Rng::seeded();
    let (mut point, mut linear_noise, mut linear_smooth) = (0f32, 0f32, 0f32);
    for i in 0..24 {
        let spec = random_spec(&mut rng);
        let batch = rng.range(1, 4) as usize;
        let smooth = i % 2 == 0;
        let pics: Vec<HostNv12> = (0..batch)
            .map(|_| {
                let (w, h, pitch) = random_size(&mut rng);
                random_picture(&mut rng, w, h, pitch, smooth)
            })
            .collect();
        let host: Vec<_> = pics
            .iter()
            .enumerate()
            .map(|(k, p)| (p, random_colour(&mut rng), k))
            .collect();
        let arrs: Vec<ArrPicture> = pics.iter().map(|p| upload_arrays(&ctx, p)).collect();
        let ap: Vec<&Picture> = arrs.iter().map(|a| &a.pic).collect();
        let p = compare_preprocess(&ctx, &stream, spec, batch, &host, &ap, TextureFilter::Point);
        assert!(p <= 1.0, "texture point path: max |Δ| {p}/255");
        point = point.max(p);
        let l = compare_preprocess(
            &ctx,
            &stream,
            spec,
            batch,
            &host,
            &ap,
            TextureFilter::Linear,
        );
        if smooth {
            linear_smooth = linear_smooth.max(l);
        } else {
            linear_noise = linear_noise.max(l);
        }
    }
    // Hardware bilinear keeps 8 fractional bits per weight (CUDA Programming Guide, "Linear
    // Filtering"): ≤ 1/256 per axis, so ≤ 2 units on luma and chroma steps of 255, which the
    // colour matrix amplifies to at most 2·(1.164 + 2.113) ≈ 6.6 units on B (limited range,
    // BT.709). Measured on the H100: about 3.2 on random noise, 0.13 on real frames.
    assert!(
        linear_noise <= 6.6,
        "hardware bilinear on noise: {linear_noise}/255"
    );
    assert!(
        linear_smooth <= 1.0,
        "hardware bilinear on smooth pictures: {linear_smooth}/255"
    );
    println!(
        "RESULT preprocess texture: point max |Δ| = {point:.4}/255; hardware bilinear: smooth \
         {linear_smooth:.3}/255, random noise {linear_noise:.3}/255 (bound 6.6)"
    );
}

fn read_nv12(path: &std::path::Path) -> HostNv12 {
    let name = path.file_stem().unwrap().to_str().unwrap();
    let (w, h) = name.trim_start_matches("nv12_").split_once('x').unwrap();
    let (w, h): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
    let raw = std::fs::read(path).unwrap();
    // The fixture has pitch = width rounded to even; re-lay it with a wider pitch.
    let pitch = (w as usize).div_ceil(2) * 2 + 64;
    let mut p = host_nv12(w, h, pitch);
    let cw = (w as usize).div_ceil(2) * 2;
    let (y, uv) = p.planes_mut();
    for r in 0..h as usize {
        y[r * pitch..r * pitch + w as usize]
            .copy_from_slice(&raw[r * w as usize..(r + 1) * w as usize]);
    }
    let off = (w * h) as usize;
    for r in 0..(h as usize).div_ceil(2) {
        uv[r * pitch..r * pitch + cw].copy_from_slice(&raw[off + r * cw..off + (r + 1) * cw]);
    }
    p
}

#[test]
fn preprocess_matches_cpu_twin_on_real_frames() {
    let Some((ctx, stream)) = gpu() else { return };
    let Some(dir) = fixtures() else { return };
    let mut frames: Vec<HostNv12> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("nv12_")
        })
        .map(|p| read_nv12(&p))
        .collect();
    frames.sort_by_key(|f| f.width);
    assert!(!frames.is_empty(), "no nv12_*.bin in {}", dir.display());
    let mut out = String::new();
    for dtype in [DType::F16, DType::F32] {
        let spec = PreprocessSpec {
            width: 640,
            height: 640,
            placement: Placement::Centre,
            order: ChannelOrder::Rgb,
            scale: 1.0 / 255.0,
            pad: 114.0,
            dtype,
        };
        let host: Vec<_> = frames
            .iter()
            .enumerate()
            .map(|(k, p)| (p, ColourDesc::default_for_height(p.height), k))
            .collect();
        let devs: Vec<DevPicture> = frames.iter().map(|p| upload(&ctx, p)).collect();
        let dp: Vec<&Picture> = devs.iter().map(|d| &d.pic).collect();
        let n = frames.len();
        let d = compare_preprocess(&ctx, &stream, spec, n, &host, &dp, TextureFilter::Point);
        assert!(d <= 1.0, "real frames, pitch path: {d}/255");
        let arrs: Vec<ArrPicture> = frames.iter().map(|p| upload_arrays(&ctx, p)).collect();
        let ap: Vec<&Picture> = arrs.iter().map(|a| &a.pic).collect();
        let tp = compare_preprocess(&ctx, &stream, spec, n, &host, &ap, TextureFilter::Point);
        assert!(tp <= 1.0, "real frames, texture point path: {tp}/255");
        let tl = compare_preprocess(&ctx, &stream, spec, n, &host, &ap, TextureFilter::Linear);
        assert!(tl <= 6.6, "real frames, hardware bilinear: {tl}/255");
        out += &format!(
            " {}: pitch {d:.4}, texture {tp:.4}, hw-bilinear {tl:.3};",
            dtype.name()
        );
    }
    println!(
        "RESULT preprocess real frames ({} clips, /255):{out}",
        frames.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Postprocess

fn same_detections(a: &DetectionList, b: &DetectionList, box_tol: f32) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} CPU vs {} GPU detections", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        let close = |p: f32, q: f32| (p - q).abs() <= box_tol * p.abs().max(1.0);
        let boxes_ok = if box_tol == 0.0 {
            [x.x0, x.y0, x.x1, x.y1].map(f32::to_bits) == [y.x0, y.y0, y.x1, y.y1].map(f32::to_bits)
        } else {
            close(x.x0, y.x0) && close(x.y0, y.y0) && close(x.x1, y.x1) && close(x.y1, y.y1)
        };
        if x.class != y.class || x.score.to_bits() != y.score.to_bits() || !boxes_ok {
            return Err(format!("detection {i}: CPU {x:?} vs GPU {y:?}"));
        }
    }
    Ok(())
}

/// Runs both postprocessors on `data` (host f32 values, stored as `dtype`); returns the
/// detection counts.
#[allow(clippy::too_many_arguments)]
fn compare_postprocess(
    ctx: &Arc<CudaContext>,
    stream: &Arc<CudaStream>,
    head: HeadKind,
    canvas: (u32, u32),
    opts: &PostprocessOptions,
    shape: [usize; 3],
    dtype: DType,
    data: &[f32],
    lbs: &[Letterbox],
    box_tol: f32,
) -> Vec<usize> {
    let spec = TensorSpec {
        name: "output0".into(),
        dtype,
        shape: shape.to_vec(),
    };
    let mut host = Tensor::host(spec.clone());
    let dbuf = DeviceBuffer::alloc(ctx, spec.bytes()).unwrap();
    match dtype {
        DType::F32 => {
            host.host_buf_mut()
                .unwrap()
                .as_f32_mut()
                .copy_from_slice(data);
            dbuf.copy_from_host(data).unwrap();
        }
        DType::F16 => {
            let h: Vec<f16> = data.iter().map(|v| f16::from_f32(*v)).collect();
            host.host_buf_mut()
                .unwrap()
                .as_f16_mut()
                .copy_from_slice(&h);
            dbuf.copy_from_host(&h).unwrap();
        }
    }
    let dev = Tensor {
        spec: spec.clone(),
        mem: dbuf.tensor_mem(),
    };
    let b = lbs.len();
    let mut cpu = CpuPostprocess::with_canvas(head, opts.clone(), b, canvas.0, canvas.1).unwrap();
    let mut gpu =
        CudaPostprocess::with_canvas(stream.clone(), head, opts.clone(), b, canvas.0, canvas.1)
            .unwrap();
    let mut a = vec![DetectionList::new(); b];
    let mut g = vec![DetectionList::new(); b];
    cpu.run(std::slice::from_ref(&host), lbs, &mut a).unwrap();
    gpu.run(std::slice::from_ref(&dev), lbs, &mut g).unwrap();
    for k in 0..b {
        if let Err(e) = same_detections(&a[k], &g[k], box_tol) {
            panic!("{head:?} {dtype:?} {opts:?} item {k}: {e}");
        }
    }
    a.iter().map(|l| l.len()).collect()
}

fn random_letterbox(rng: &mut Rng, canvas: (u32, u32)) -> Letterbox {
    let spec = PreprocessSpec {
        width: canvas.0,
        height: canvas.1,
        placement: Placement::Centre,
        order: ChannelOrder::Rgb,
        scale: 1.0,
        pad: 114.0,
        dtype: DType::F32,
    };
    Letterbox::compute(
        &spec,
        rng.range(64, 3840) as u32,
        rng.range(64, 2160) as u32,
    )
}

/// A random head output, boxes clustered so NMS has work, scores with ties.
fn random_output(rng: &mut Rng, head: HeadKind, b: usize, canvas: (u32, u32)) -> Vec<f32> {
    let (cw, ch) = (canvas.0 as f32, canvas.1 as f32);
    let centres: Vec<(f32, f32)> = (0..12).map(|_| (rng.f32() * cw, rng.f32() * ch)).collect();
    let quant = rng.bool(); // quantised scores: many exact ties
    let score = |rng: &mut Rng| {
        let s = rng.f32().powi(6);
        if quant {
            (s * 32.0).floor() / 32.0
        } else {
            s
        }
    };
    match head {
        HeadKind::YoloV8 { classes, anchors } => {
            let mut v = vec![0f32; b * (4 + classes) * anchors];
            for k in 0..b {
                let item = &mut v[k * (4 + classes) * anchors..];
                for a in 0..anchors {
                    let (cx, cy) = centres[rng.below(12) as usize];
                    item[a] = cx + (rng.f32() - 0.5) * 40.0;
                    item[anchors + a] = cy + (rng.f32() - 0.5) * 40.0;
                    item[2 * anchors + a] = 8.0 + rng.f32() * 150.0;
                    item[3 * anchors + a] = 8.0 + rng.f32() * 150.0;
                    let o = score(rng);
                    for c in 0..classes {
                        item[(4 + c) * anchors + a] =
                            o * if rng.below(4) == 0 { 1.0 } else { rng.f32() };
                    }
                }
            }
            v
        }
        HeadKind::YoloV5 { classes, anchors }
        | HeadKind::YoloX {
            classes, anchors, ..
        } => {
            let raw = matches!(head, HeadKind::YoloX { decoded: false, .. });
            let stride = 5 + classes;
            let mut v = vec![0f32; b * anchors * stride];
            for row in v.chunks_mut(stride) {
                let (cx, cy) = centres[rng.below(12) as usize];
                if raw {
                    row[0] = rng.f32() * 2.0 - 0.5;
                    row[1] = rng.f32() * 2.0 - 0.5;
                    row[2] = rng.f32() * 3.0 - 1.0;
                    row[3] = rng.f32() * 3.0 - 1.0;
                } else {
                    row[0] = cx + (rng.f32() - 0.5) * 40.0;
                    row[1] = cy + (rng.f32() - 0.5) * 40.0;
                    row[2] = 8.0 + rng.f32() * 150.0;
                    row[3] = 8.0 + rng.f32() * 150.0;
                }
                row[4] = score(rng).sqrt();
                for c in 0..classes {
                    row[5 + c] = if rng.below(3) == 0 { 1.0 } else { rng.f32() };
                }
            }
            v
        }
        HeadKind::EndToEnd { max_detections } => {
            let mut v = vec![0f32; b * max_detections * 6];
            for row in v.chunks_mut(6) {
                let (cx, cy) = centres[rng.below(12) as usize];
                row[0] = cx - rng.f32() * 50.0;
                row[1] = cy - rng.f32() * 50.0;
                row[2] = cx + rng.f32() * 50.0;
                row[3] = cy + rng.f32() * 50.0;
                row[4] = score(rng);
                row[5] = rng.below(80) as f32 + if rng.bool() { 0.3 } else { -0.2 };
            }
            v
        }
    }
}

#[test]
fn postprocess_matches_cpu_twin_on_random_outputs() {
    let Some((ctx, stream)) = gpu() else { return };
    let mut rng = Rng::seeded();
    let mut total = 0usize;
    let mut cases = 0;
    for i in 0..36 {
        let (head, canvas) = match i % 6 {
            0 | 1 => (
                HeadKind::YoloV8 {
                    classes: 80,
                    anchors: 8400,
                },
                (640, 640),
            ),
            2 => (
                HeadKind::YoloV8 {
                    classes: rng.range(1, 5) as usize,
                    anchors: rng.range(1, 3000) as usize,
                },
                (640, 640),
            ),
            3 => (
                HeadKind::YoloV5 {
                    classes: 80,
                    anchors: 25200,
                },
                (640, 640),
            ),
            4 => (
                HeadKind::EndToEnd {
                    max_detections: 300,
                },
                (640, 640),
            ),
            _ => (
                HeadKind::YoloX {
                    classes: 80,
                    anchors: 3549,
                    decoded: rng.bool(),
                },
                (416, 416),
            ),
        };
        let (shape1, shape2) = match head {
            HeadKind::YoloV8 { classes, anchors } => (4 + classes, anchors),
            HeadKind::YoloV5 { classes, anchors }
            | HeadKind::YoloX {
                classes, anchors, ..
            } => (anchors, 5 + classes),
            HeadKind::EndToEnd { max_detections } => (max_detections, 6),
        };
        let b = rng.range(1, 4) as usize;
        let thr = [0.25f32, 0.05, 0.5, 0.001][rng.below(4) as usize];
        let opts = PostprocessOptions {
            score_threshold: thr,
            iou_threshold: [0.45f32, 0.7, 0.3][rng.below(3) as usize],
            max_detections: [100usize, 256, 7][rng.below(3) as usize],
            class_filter: if rng.below(4) == 0 {
                vec![0, 2, 5, 7]
            } else {
                vec![]
            },
        };
        let dtype = if rng.bool() { DType::F32 } else { DType::F16 };
        let data = random_output(&mut rng, head, b, canvas);
        let lbs: Vec<Letterbox> = (0..b).map(|_| random_letterbox(&mut rng, canvas)).collect();
        // Raw YOLOX boxes go through exp(): CUDA's expf (≤ 2 ulp, CUDA Programming Guide,
        // "Mathematical Functions") and the host's may differ, and `cy − h/2` cancels, so the
        // corners agree to FP16 rounding (2^-11 relative), not bit for bit.
        let tol = if matches!(head, HeadKind::YoloX { decoded: false, .. }) {
            1.0 / 2048.0
        } else {
            0.0
        };
        let counts = compare_postprocess(
            &ctx,
            &stream,
            head,
            canvas,
            &opts,
            [b, shape1, shape2],
            dtype,
            &data,
            &lbs,
            tol,
        );
        total += counts.iter().sum::<usize>();
        cases += b;
    }
    println!("RESULT postprocess random: {cases} items over 36 batches, {total} detections, all identical");
}

#[test]
fn postprocess_matches_cpu_twin_on_real_yolov8n_output() {
    let Some((ctx, stream)) = gpu() else { return };
    let Some(dir) = fixtures() else { return };
    let lbt = std::fs::read_to_string(dir.join("yolov8n_letterbox.txt")).unwrap();
    let v: Vec<u32> = lbt.split_whitespace().map(|x| x.parse().unwrap()).collect();
    let lb = Letterbox {
        src_width: v[0],
        src_height: v[1],
        scaled_width: v[2],
        scaled_height: v[3],
        left: v[4],
        top: v[5],
    };
    let head = HeadKind::YoloV8 {
        classes: 80,
        anchors: 8400,
    };
    let mut report = String::new();
    for (file, dtype) in [
        ("yolov8n_out_f32.bin", DType::F32),
        ("yolov8n_out_f16.bin", DType::F16),
    ] {
        let raw = std::fs::read(dir.join(file)).unwrap();
        let data: Vec<f32> = match dtype {
            DType::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => raw
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        };
        assert_eq!(data.len(), 84 * 8400);
        for (thr, iou, max) in [
            (0.25f32, 0.45f32, 100usize),
            (0.01, 0.45, 256),
            (0.001, 0.7, 256),
        ] {
            let opts = PostprocessOptions {
                score_threshold: thr,
                iou_threshold: iou,
                max_detections: max,
                class_filter: vec![],
            };
            let n = compare_postprocess(
                &ctx,
                &stream,
                head,
                (640, 640),
                &opts,
                [1, 84, 8400],
                dtype,
                &data,
                &[lb],
                0.0,
            );
            report += &format!(" {}@{thr}: {};", dtype.name(), n[0]);
        }
    }
    println!(
        "RESULT postprocess real YOLOv8n output: identical detections (count per case:{report})"
    );
}

// ---------------------------------------------------------------------------------------------
// Allocations

#[test]
fn frame_path_allocates_nothing() {
    let Some((ctx, stream)) = gpu() else { return };
    let mut rng = Rng::seeded();
    let spec = PreprocessSpec {
        width: 640,
        height: 640,
        placement: Placement::Centre,
        order: ChannelOrder::Rgb,
        scale: 1.0 / 255.0,
        pad: 114.0,
        dtype: DType::F16,
    };
    let b = 8;
    let pics: Vec<HostNv12> = (0..b)
        .map(|_| random_picture(&mut rng, 1920, 1080, 2048, false))
        .collect();
    let devs: Vec<DevPicture> = pics.iter().map(|p| upload(&ctx, p)).collect();
    let arrs: Vec<ArrPicture> = pics
        .iter()
        .take(2)
        .map(|p| upload_arrays(&ctx, p))
        .collect();
    let (_buf, mut input) = DeviceBuffer::for_tensor(&ctx, input_spec(&spec, b)).unwrap();
    let mut pre = CudaPreprocess::new(stream.clone(), spec).unwrap();
    let mut jobs: Vec<PreprocessJob> = devs
        .iter()
        .enumerate()
        .map(|(k, d)| PreprocessJob {
            picture: &d.pic,
            colour: ColourDesc::default(),
            slot: k,
        })
        .collect();
    jobs[0].picture = &arrs[0].pic;
    jobs[1].picture = &arrs[1].pic;
    let mut lbs = vec![Letterbox::default(); b];

    let head = HeadKind::YoloV8 {
        classes: 80,
        anchors: 8400,
    };
    let opts = PostprocessOptions {
        score_threshold: 0.25,
        iou_threshold: 0.45,
        max_detections: 100,
        class_filter: vec![],
    };
    let data = random_output(&mut rng, head, b, (640, 640));
    let ospec = TensorSpec {
        name: "output0".into(),
        dtype: DType::F32,
        shape: vec![b, 84, 8400],
    };
    let (obuf, out_t) = DeviceBuffer::for_tensor(&ctx, ospec).unwrap();
    obuf.copy_from_host(&data).unwrap();
    let outputs = [out_t];
    let mut post = CudaPostprocess::new(stream.clone(), head, opts, b).unwrap();
    let mut dets = vec![DetectionList::new(); b];

    // Warm-up (texture objects are created on first sight of each array).
    pre.run(&jobs, &mut input, &mut lbs).unwrap();
    post.run(&outputs, &lbs, &mut dets).unwrap();
    let before = alloc_count::this_thread();
    for _ in 0..100 {
        pre.run(&jobs, &mut input, &mut lbs).unwrap();
        post.run(&outputs, &lbs, &mut dets).unwrap();
    }
    let allocs = alloc_count::this_thread() - before;
    assert_eq!(
        allocs, 0,
        "{allocs} allocations in 100 preprocess+postprocess batches"
    );
    assert!(matches!(input.mem, TensorMem::Device { .. }));
    println!(
        "RESULT allocations: 0 in 100 batches of B=8 (preprocess incl. texture path + postprocess)"
    );
}

// ---------------------------------------------------------------------------------------------
// Timings (tools/gpu-check.sh runs these with --include-ignored)

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
#[ignore = "timing; run by tools/gpu-check.sh"]
fn bench_kernels() {
    let Some((ctx, stream)) = gpu() else { return };
    let mut rng = Rng::seeded();
    let (e0, e1) = (CudaEvent::new(&ctx).unwrap(), CudaEvent::new(&ctx).unwrap());
    println!(
        "device: {} (sm_{}{}, {} SMs)",
        ctx.name(),
        ctx.compute_capability().0,
        ctx.compute_capability().1,
        ctx.multiprocessors()
    );

    // Copy roofline: device-to-device copy, bytes read + written.
    let n = 1usize << 30;
    let (a, b) = (
        DeviceBuffer::alloc(&ctx, n).unwrap(),
        DeviceBuffer::alloc(&ctx, n).unwrap(),
    );
    a.memset_async(0x5A, &stream).unwrap();
    let mut t = Vec::new();
    for i in 0..12 {
        e0.record(&stream).unwrap();
        b.copy_from_device_async(&a, n, &stream).unwrap();
        e1.record(&stream).unwrap();
        e1.synchronize().unwrap();
        if i >= 2 {
            t.push(e1.elapsed_ms_since(&e0).unwrap() as f64);
        }
    }
    let roof = 2.0 * n as f64 / (median(&mut t) * 1e-3) / 1e9;
    println!("RESULT copy roofline: {roof:.0} GB/s (1 GiB device-to-device, read+write)");
    drop((a, b));

    // Preprocess: 1080p NV12 (pitch 2048) -> 640x640, rotating over 32 distinct pictures.
    let frames = 32;
    let pics: Vec<HostNv12> = (0..frames)
        .map(|_| random_picture(&mut rng, 1920, 1080, 2048, false))
        .collect();
    let devs: Vec<DevPicture> = pics.iter().map(|p| upload(&ctx, p)).collect();
    let arrs: Vec<ArrPicture> = pics
        .iter()
        .take(16)
        .map(|p| upload_arrays(&ctx, p))
        .collect();
    for (dtype, batch, tex) in [
        (DType::F16, 1, false),
        (DType::F16, 8, false),
        (DType::F16, 16, false),
        (DType::F32, 1, false),
        (DType::F32, 8, false),
        (DType::F32, 16, false),
        (DType::F16, 16, true),
    ] {
        let spec = PreprocessSpec {
            width: 640,
            height: 640,
            placement: Placement::Centre,
            order: ChannelOrder::Rgb,
            scale: 1.0 / 255.0,
            pad: 114.0,
            dtype,
        };
        // Several input tensors so the outputs do not stay in L2 either.
        let tensors: Vec<(DeviceBuffer, Tensor)> = (0..4)
            .map(|_| DeviceBuffer::for_tensor(&ctx, input_spec(&spec, batch)).unwrap())
            .collect();
        let mut tensors: Vec<Tensor> = tensors
            .into_iter()
            .map(|(b, t)| {
                std::mem::forget(b);
                t
            })
            .collect();
        let mut pre = CudaPreprocess::new(stream.clone(), spec).unwrap();
        let mut lbs = vec![Letterbox::default(); batch];
        let reps = 200;
        let mut per_launch = Vec::new();
        for round in 0..6 {
            e0.record(&stream).unwrap();
            for r in 0..reps {
                let jobs: Vec<PreprocessJob> = (0..batch)
                    .map(|k| {
                        let i = (r * batch + k) % frames;
                        let picture = if tex { &arrs[i % 16].pic } else { &devs[i].pic };
                        PreprocessJob {
                            picture,
                            colour: ColourDesc::default_for_height(1080),
                            slot: k,
                        }
                    })
                    .collect();
                let ti = r % tensors.len();
                pre.run(&jobs, &mut tensors[ti], &mut lbs).unwrap();
            }
            e1.record(&stream).unwrap();
            e1.synchronize().unwrap();
            if round > 0 {
                per_launch.push(e1.elapsed_ms_since(&e0).unwrap() as f64 * 1e3 / reps as f64);
            }
        }
        let us = median(&mut per_launch);
        let bytes =
            batch as f64 * (1920.0 * 1080.0 * 1.5 + 3.0 * 640.0 * 640.0 * dtype.size() as f64);
        let gbs = bytes / (us * 1e-6) / 1e9;
        println!(
            "RESULT preprocess {} {} B={batch:>2}: {us:8.1} us/launch, {:6.2} us/frame, {gbs:6.0} GB/s = {:4.1}% of copy roofline",
            if tex { "texture" } else { "pitch  " },
            dtype.name(),
            us / batch as f64,
            100.0 * gbs / roof
        );
    }

    // Postprocess on the real YOLOv8n output (few candidates, as in production).
    if let Ok(dir) = std::env::var("JETWATCH_GPU_FIXTURES") {
        let raw = std::fs::read(PathBuf::from(dir).join("yolov8n_out_f16.bin")).unwrap();
        let ospec = TensorSpec {
            name: "output0".into(),
            dtype: DType::F16,
            shape: vec![1, 84, 8400],
        };
        let (obuf, out_t) = DeviceBuffer::for_tensor(&ctx, ospec).unwrap();
        obuf.copy_from_host(&raw).unwrap();
        let outputs = [out_t];
        let head = HeadKind::YoloV8 {
            classes: 80,
            anchors: 8400,
        };
        for thr in [0.25f32, 0.01] {
            let opts = PostprocessOptions {
                score_threshold: thr,
                iou_threshold: 0.45,
                max_detections: 100,
                class_filter: vec![],
            };
            let mut post = CudaPostprocess::new(stream.clone(), head, opts, 1).unwrap();
            let mut dets = vec![DetectionList::new(); 1];
            // The fixture frame (tools/gpu-fixtures.py writes it to yolov8n_letterbox.txt).
            let lbs = [Letterbox {
                src_width: 640,
                src_height: 272,
                scaled_width: 640,
                scaled_height: 272,
                left: 0,
                top: 184,
            }];
            let mut wall = Vec::new();
            for i in 0..220 {
                let t0 = Instant::now();
                post.run(&outputs, &lbs, &mut dets).unwrap();
                if i >= 20 {
                    wall.push(t0.elapsed().as_secs_f64() * 1e6);
                }
            }
            println!(
                "RESULT postprocess real YOLOv8n f16 B=1 thr={thr}: {:.1} us wall per run (incl. sync + copy); {} detections",
                median(&mut wall),
                dets[0].len()
            );
        }
    }

    // Postprocess: one run() = memset + 2 kernels + result copy + stream sync.
    let head = HeadKind::YoloV8 {
        classes: 80,
        anchors: 8400,
    };
    for (batch, thr) in [(1usize, 0.25f32), (8, 0.25), (1, 0.01)] {
        let opts = PostprocessOptions {
            score_threshold: thr,
            iou_threshold: 0.45,
            max_detections: 100,
            class_filter: vec![],
        };
        let data = random_output(&mut rng, head, batch, (640, 640));
        let ospec = TensorSpec {
            name: "output0".into(),
            dtype: DType::F16,
            shape: vec![batch, 84, 8400],
        };
        let h: Vec<f16> = data.iter().map(|v| f16::from_f32(*v)).collect();
        let (obuf, out_t) = DeviceBuffer::for_tensor(&ctx, ospec).unwrap();
        obuf.copy_from_host(&h).unwrap();
        let outputs = [out_t];
        let mut post = CudaPostprocess::new(stream.clone(), head, opts, batch).unwrap();
        let mut dets = vec![DetectionList::new(); batch];
        let lbs = vec![
            Letterbox::compute(
                &PreprocessSpec {
                    width: 640,
                    height: 640,
                    placement: Placement::Centre,
                    order: ChannelOrder::Rgb,
                    scale: 1.0,
                    pad: 114.0,
                    dtype: DType::F16
                },
                1920,
                1080
            );
            batch
        ];
        for _ in 0..20 {
            post.run(&outputs, &lbs, &mut dets).unwrap();
        }
        let mut wall = Vec::new();
        let mut gpu_t = Vec::new();
        for _ in 0..200 {
            let t0 = Instant::now();
            e0.record(&stream).unwrap();
            post.run(&outputs, &lbs, &mut dets).unwrap();
            e1.record(&stream).unwrap();
            wall.push(t0.elapsed().as_secs_f64() * 1e6);
            e1.synchronize().unwrap();
            gpu_t.push(e1.elapsed_ms_since(&e0).unwrap() as f64 * 1e3);
        }
        let cands: usize = dets.iter().map(|d| d.len()).sum();
        println!(
            "RESULT postprocess v8 f16 B={batch} thr={thr}: {:.1} us wall per run (incl. sync + copy), {:.1} us on stream; {cands} detections",
            median(&mut wall),
            median(&mut gpu_t)
        );
    }
}

/// A few postprocess runs on a random YOLOv8 output with ~1700 candidates (B=1, thr 0.25):
/// tools/gpu-check.sh runs it under Nsight Compute to split the time per kernel.
#[test]
#[ignore = "profiling target for tools/gpu-check.sh"]
fn profile_postprocess_random() {
    let Some((ctx, stream)) = gpu() else { return };
    let mut rng = Rng(7);
    let head = HeadKind::YoloV8 {
        classes: 80,
        anchors: 8400,
    };
    let opts = PostprocessOptions {
        score_threshold: 0.25,
        iou_threshold: 0.45,
        max_detections: 100,
        class_filter: vec![],
    };
    let data = random_output(&mut rng, head, 1, (640, 640));
    let h: Vec<f16> = data.iter().map(|v| f16::from_f32(*v)).collect();
    let ospec = TensorSpec {
        name: "output0".into(),
        dtype: DType::F16,
        shape: vec![1, 84, 8400],
    };
    let (obuf, out_t) = DeviceBuffer::for_tensor(&ctx, ospec).unwrap();
    obuf.copy_from_host(&h).unwrap();
    let outputs = [out_t];
    let mut post = CudaPostprocess::new(stream.clone(), head, opts, 1).unwrap();
    let mut dets = vec![DetectionList::new(); 1];
    let lbs = [Letterbox::default(); 1];
    for _ in 0..3 {
        post.run(&outputs, &lbs, &mut dets).unwrap();
    }
    println!("profile_postprocess_random: {} detections", dets[0].len());
}

/// One preprocess launch of a single 1080p frame and one of 16 (f16, 640×640): Nsight Compute
/// target for the kernel-only time (the timed loop above also counts host submission).
#[test]
#[ignore = "profiling target for tools/gpu-check.sh"]
fn profile_preprocess_1080p() {
    let Some((ctx, stream)) = gpu() else { return };
    let mut rng = Rng(11);
    let pics: Vec<HostNv12> = (0..16)
        .map(|_| random_picture(&mut rng, 1920, 1080, 2048, false))
        .collect();
    let devs: Vec<DevPicture> = pics.iter().map(|p| upload(&ctx, p)).collect();
    let spec = PreprocessSpec {
        width: 640,
        height: 640,
        placement: Placement::Centre,
        order: ChannelOrder::Rgb,
        scale: 1.0 / 255.0,
        pad: 114.0,
        dtype: DType::F16,
    };
    let (_buf, mut input) = DeviceBuffer::for_tensor(&ctx, input_spec(&spec, 16)).unwrap();
    let mut pre = CudaPreprocess::new(stream.clone(), spec).unwrap();
    let mut lbs = vec![Letterbox::default(); 16];
    for batch in [1usize, 16] {
        let jobs: Vec<PreprocessJob> = (0..batch)
            .map(|k| PreprocessJob {
                picture: &devs[k].pic,
                colour: ColourDesc::default_for_height(1080),
                slot: k,
            })
            .collect();
        pre.run(&jobs, &mut input, &mut lbs).unwrap();
        stream.synchronize().unwrap();
    }
    println!("profile_preprocess_1080p: B=1 then B=16 launched");
}
