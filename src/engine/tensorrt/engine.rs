//! The TensorRT engine: cache lookup or build, deserialisation, binding once to device
//! buffers, and `enqueueV3` per batch (TensorRT developer guide, "Performing Inference":
//! `setTensorAddress` for every I/O tensor, `setInputShape` for dynamic inputs, then
//! `enqueueV3(stream)`).

use std::ffi::{c_void, CString};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use jetwatch_ffi::tensorrt as sys;

use super::cache::{self, CacheKey, CacheKeyInputs, PlanStatus, Precision};
use super::policy::{self, LayerDla};
use super::report::PlacementReport;
use super::shim::{read_file, Build, BuildInput, Context, Engine, IoTensor, Runtime};
use super::version::{check_runtime_compat, PrecisionMode, TrtVersion};
use super::{header_field, unavailable, BuildReport, EngineBuildArgs, PipelinePlan, INSTALL_HINT};
use crate::engine::{Engine as EngineTrait, ModelInfo};
use crate::error::EngineError;
use crate::tensor::{DType, Tensor, TensorMem, TensorSpec};

const BACKEND: &str = "tensorrt";

fn backend(msg: impl Into<String>) -> EngineError {
    EngineError::Backend {
        backend: BACKEND,
        msg: msg.into(),
    }
}

/// Opens libnvinfer through the shim and checks its version against the headers.
fn open_runtime() -> Result<Arc<Runtime>, EngineError> {
    let rt = Runtime::open().map_err(|e| match e {
        EngineError::Unavailable(u) => unavailable(format!("{} ({INSTALL_HINT})", u.reason)),
        other => other,
    })?;
    check_runtime_compat(Runtime::header_version(), rt.lib_version).map_err(unavailable)?;
    Ok(rt)
}

/// Name and compute capability of CUDA device `gpu`, through cudarc's driver API.
fn device_info(gpu: u32) -> Result<(String, (u32, u32)), EngineError> {
    // SAFETY: only checks whether libcuda can be opened; cudarc's dynamic loading panics
    // when it is missing, so this must come first (CRATES.md).
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(unavailable(
            "libcuda.so.1 (the NVIDIA driver) is missing: TensorRT needs a CUDA GPU",
        ));
    }
    let ctx = cudarc::driver::CudaContext::new(gpu as usize)
        .map_err(|e| unavailable(format!("CUDA device {gpu}: {e}")))?;
    let name = ctx
        .name()
        .map_err(|e| backend(format!("cuDeviceGetName: {e}")))?;
    let (ma, mi) = ctx
        .compute_capability()
        .map_err(|e| backend(format!("compute capability: {e}")))?;
    Ok((name, (ma.max(0) as u32, mi.max(0) as u32)))
}

fn dtype_of(code: i32, name: &str) -> Result<DType, EngineError> {
    match code {
        sys::JW_TRT_DT_FLOAT => Ok(DType::F32),
        sys::JW_TRT_DT_HALF => Ok(DType::F16),
        other => Err(EngineError::Layout {
            path: name.into(),
            msg: format!("tensor {name} has TensorRT data type {other}; jetwatch binds float32 and float16 only"),
        }),
    }
}

/// A deserialized plan, not yet bound to buffers.
pub struct LoadedPlan {
    engine: Engine,
    io: Vec<IoTensor>,
    dla_core: Option<u32>,
}

impl LoadedPlan {
    /// Loads a prebuilt `.engine` file (no cache check: the caller vouches for it).
    pub fn load(plan: &Path, dla_core: Option<u32>) -> Result<LoadedPlan, EngineError> {
        let rt = open_runtime()?;
        let bytes = read_file(plan)?;
        Self::from_bytes(&rt, &bytes, dla_core)
    }

    fn from_bytes(
        rt: &Arc<Runtime>,
        plan: &[u8],
        dla_core: Option<u32>,
    ) -> Result<LoadedPlan, EngineError> {
        let engine = Engine::deserialize(rt, plan, dla_core)?;
        let io = engine.io()?;
        Ok(LoadedPlan {
            engine,
            io,
            dla_core,
        })
    }

    pub fn tensorrt_version(&self) -> TrtVersion {
        self.engine.runtime().lib_version
    }

    pub fn placement(&self) -> Result<PlacementReport, EngineError> {
        PlacementReport::from_inspector_json(&self.engine.inspect_json()?).map_err(backend)
    }

    /// The tensors the caller must allocate on the device: the single input, then the
    /// outputs, each at its largest (profile max) shape.
    pub fn io_specs(&self) -> Result<(TensorSpec, Vec<TensorSpec>), EngineError> {
        let mut input = None;
        let mut outputs = Vec::new();
        for t in &self.io {
            let name = t.name.to_string_lossy().into_owned();
            let dims = if t.is_input { &t.max_dims } else { &t.dims };
            let mut shape = Vec::with_capacity(dims.len());
            for (k, &d) in dims.iter().enumerate() {
                if d >= 0 {
                    shape.push(d as usize);
                } else if !t.is_input && k == 0 {
                    // Output batch follows the input batch.
                    shape.push(0);
                } else {
                    return Err(EngineError::Layout {
                        path: name.clone().into(),
                        msg: format!("tensor {name} has dynamic dimension {k} ({dims:?})"),
                    });
                }
            }
            let spec = TensorSpec {
                name: name.clone(),
                dtype: dtype_of(t.dtype, &name)?,
                shape,
            };
            if t.is_input {
                if input.replace(spec).is_some() {
                    return Err(EngineError::Layout {
                        path: name.into(),
                        msg: "the engine has more than one input; jetwatch detectors take one image batch".into(),
                    });
                }
            } else {
                outputs.push(spec);
            }
        }
        let input = input.ok_or_else(|| backend("the engine has no input tensor"))?;
        let max_batch = input.shape.first().copied().unwrap_or(1);
        for o in &mut outputs {
            if o.shape.first() == Some(&0) {
                o.shape[0] = max_batch;
            }
        }
        Ok((input, outputs))
    }

    /// Binds the engine once to device buffers and a stream.
    ///
    /// # Safety
    /// `input` and every tensor in `outputs` must be [`TensorMem::Device`] allocations on the
    /// engine's CUDA device, of at least the sizes [`LoadedPlan::io_specs`] gives, that stay
    /// allocated for the life of the returned engine; `stream` must be a live `CUstream` of
    /// the current CUDA context (or null for the default stream) that outlives the engine.
    pub unsafe fn bind(
        self,
        model: ModelInfo,
        input: Tensor,
        outputs: Vec<Tensor>,
        stream: *mut c_void,
    ) -> Result<TensorRtEngine, EngineError> {
        let (in_spec, out_specs) = self.io_specs()?;
        check_tensor(&input, &in_spec)?;
        if outputs.len() != out_specs.len() {
            return Err(backend(format!(
                "{} output buffers given, the engine has {} outputs",
                outputs.len(),
                out_specs.len()
            )));
        }
        let max_batch = in_spec.shape.first().copied().unwrap_or(1);
        if model.max_batch != max_batch {
            return Err(backend(format!(
                "model info says batch {}, the engine's input holds {max_batch}",
                model.max_batch
            )));
        }
        let mut ctx = Context::create(&self.engine)?;
        let input_io = self
            .io
            .iter()
            .find(|t| t.is_input)
            .ok_or_else(|| backend("the engine has no input tensor"))?;
        let input_name = input_io.name.clone();
        let dynamic = input_io.dims.iter().any(|&d| d < 0);
        let mut shape = [0i64; sys::JW_TRT_MAX_DIMS];
        for (k, &d) in in_spec.shape.iter().enumerate() {
            shape[k] = d as i64;
        }
        let rank = in_spec.shape.len();
        if dynamic {
            ctx.set_input_shape(&input_name, &shape[..rank])?;
        }
        // SAFETY: the caller guarantees the input allocation's size, device and lifetime.
        unsafe { ctx.set_tensor_address(&input_name, device_ptr(&input)?) }?;
        let mut output_names = Vec::with_capacity(outputs.len());
        for (out, spec) in outputs.iter().zip(&out_specs) {
            check_tensor(out, spec)?;
            let name = CString::new(spec.name.clone()).map_err(|e| backend(e.to_string()))?;
            // SAFETY: as for the input: size, device and lifetime are the caller's obligation.
            unsafe { ctx.set_tensor_address(&name, device_ptr(out)?) }?;
            output_names.push(name);
        }
        let label = match self.dla_core {
            Some(c) => format!("tensorrt-dla{c}"),
            None => "tensorrt".to_string(),
        };
        Ok(TensorRtEngine {
            ctx,
            _engine: self.engine,
            model,
            input,
            outputs,
            input_name,
            shape,
            rank,
            dynamic,
            batch: max_batch,
            max_batch,
            stream,
            label,
            _buffers: Vec::new(),
            _stream: None,
        })
    }
}

fn check_tensor(t: &Tensor, spec: &TensorSpec) -> Result<(), EngineError> {
    if t.spec.dtype != spec.dtype || t.spec.shape != spec.shape {
        return Err(backend(format!(
            "buffer for {} is {} {:?}, the engine needs {} {:?}",
            spec.name,
            t.spec.dtype.name(),
            t.spec.shape,
            spec.dtype.name(),
            spec.shape
        )));
    }
    Ok(())
}

fn device_ptr(t: &Tensor) -> Result<u64, EngineError> {
    match t.mem {
        TensorMem::Device { ptr, bytes, .. } if bytes >= t.spec.bytes() && ptr != 0 => Ok(ptr),
        TensorMem::Device { bytes, .. } => Err(backend(format!(
            "device buffer for {} holds {bytes} bytes, needs {}",
            t.spec.name,
            t.spec.bytes()
        ))),
        TensorMem::Host(_) => Err(backend(format!(
            "TensorRT binds device memory; tensor {} is on the host",
            t.spec.name
        ))),
    }
}

/// A bound TensorRT engine: `run` is `setInputShape` (only when the batch changes) plus
/// `enqueueV3` on the bound stream, with no allocation.
pub struct TensorRtEngine {
    // Field order is drop order: the context before the engine (and its runtime).
    ctx: Context,
    _engine: Engine,
    model: ModelInfo,
    input: Tensor,
    outputs: Vec<Tensor>,
    input_name: CString,
    shape: [i64; sys::JW_TRT_MAX_DIMS],
    rank: usize,
    dynamic: bool,
    batch: usize,
    max_batch: usize,
    stream: *mut c_void,
    label: String,
    // Device memory behind `input` and `outputs` and the stream, when the engine owns them
    // (`open_on_stream`); dropped after the context above.
    _buffers: Vec<crate::gpu::DeviceBuffer>,
    _stream: Option<Arc<crate::gpu::CudaStream>>,
}

// SAFETY: the context, engine and stream handle are used only through &mut self (one thread
// at a time); TensorRT contexts and CUDA streams may be used from any thread.
unsafe impl Send for TensorRtEngine {}

impl EngineTrait for TensorRtEngine {
    fn synchronize(&mut self) -> Result<(), EngineError> {
        // SAFETY: bind's caller guaranteed the stream outlives self; cuStreamSynchronize only
        // waits on it.
        let r = unsafe {
            cudarc::driver::sys::cuStreamSynchronize(self.stream as cudarc::driver::sys::CUstream)
        };
        if r == cudarc::driver::sys::CUresult::CUDA_SUCCESS {
            Ok(())
        } else {
            Err(backend(format!("cuStreamSynchronize: {r:?}")))
        }
    }
    fn backend(&self) -> &str {
        &self.label
    }
    fn model(&self) -> &ModelInfo {
        &self.model
    }
    fn input_mut(&mut self) -> &mut Tensor {
        &mut self.input
    }
    /// Enqueues the batch on the bound stream; outputs are complete in stream order (the
    /// pipeline's next operation on that stream, or a stream synchronize, sees them).
    fn run(&mut self, batch: usize) -> Result<(), EngineError> {
        if batch == 0 || batch > self.max_batch {
            return Err(backend(format!(
                "batch {batch} outside 1..={}",
                self.max_batch
            )));
        }
        if batch != self.batch {
            if !self.dynamic {
                return Err(backend(format!(
                    "the engine has a fixed batch of {}; cannot run {batch}",
                    self.max_batch
                )));
            }
            self.shape[0] = batch as i64;
            self.ctx
                .set_input_shape(&self.input_name, &self.shape[..self.rank])?;
            self.batch = batch;
        }
        // SAFETY: bind's caller guaranteed the stream and buffers outlive self.
        unsafe { self.ctx.enqueue(self.stream) }
    }
    fn outputs(&self) -> &[Tensor] {
        &self.outputs
    }
}

impl TensorRtEngine {
    /// The pipeline's TensorRT engine: finds the cached plan for `plan` (or builds it,
    /// reporting progress), allocates the input and output tensors on the stream's device
    /// once, binds them, and warms up every batch size it will run. Returns the build
    /// report too (cache hit or build, placement, DLA fallback warnings).
    pub fn open_on_stream(
        plan: &PipelinePlan,
        labels_file: Option<&Path>,
        stream: Arc<crate::gpu::CudaStream>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(TensorRtEngine, BuildReport), EngineError> {
        let gpu_err = |e: crate::gpu::GpuError| match e {
            crate::gpu::GpuError::Unavailable(u) => EngineError::Unavailable(u),
            other => backend(other.to_string()),
        };
        let ctx = stream.context().clone();
        if ctx.ordinal() != plan.args.gpu {
            return Err(backend(format!(
                "the plan is for CUDA device {}, the pipeline stream is on device {}",
                plan.args.gpu,
                ctx.ordinal()
            )));
        }
        ctx.bind().map_err(gpu_err)?;
        let (loaded, report) = load_or_build(&plan.args, progress)?;
        let (in_spec, out_specs) = loaded.io_specs()?;
        let (model, order) = super::describe_plan(plan, labels_file, &in_spec, &out_specs)?;
        let engine = Self::bind_on_stream(loaded, model, &order, stream)?;
        Ok((engine, report))
    }

    /// The pipeline's engine from a prebuilt plan file (`model.path = "….engine"`), loaded
    /// as it is: no cache lookup, no build. The DLA core comes from the cache header beside
    /// the plan when there is one (plans built by `jetwatch engine build`).
    pub fn open_plan_on_stream(
        plan: &Path,
        labels_file: Option<&Path>,
        max_batch: usize,
        stream: Arc<crate::gpu::CudaStream>,
    ) -> Result<TensorRtEngine, EngineError> {
        stream
            .context()
            .bind()
            .map_err(|e| backend(e.to_string()))?;
        let header = std::fs::read_to_string(cache::header_path(plan)).ok();
        let dla_core = header
            .as_deref()
            .and_then(|h| header_field(h, "dla_core"))
            .and_then(|v| v.parse().ok());
        let loaded = LoadedPlan::load(plan, dla_core)?;
        let (in_spec, out_specs) = loaded.io_specs()?;
        let model = super::describe_prebuilt(plan, labels_file, &in_spec, &out_specs, max_batch)?;
        let order: Vec<usize> = (0..out_specs.len()).collect();
        Self::bind_on_stream(loaded, model, &order, stream)
    }

    /// Allocates the plan's tensors on the stream's device, binds them, orders the outputs
    /// by `order` (engine indices in the order [`EngineTrait::outputs`] keeps) and warms up.
    fn bind_on_stream(
        loaded: LoadedPlan,
        model: ModelInfo,
        order: &[usize],
        stream: Arc<crate::gpu::CudaStream>,
    ) -> Result<TensorRtEngine, EngineError> {
        let gpu_err = |e: crate::gpu::GpuError| match e {
            crate::gpu::GpuError::Unavailable(u) => EngineError::Unavailable(u),
            other => backend(other.to_string()),
        };
        let ctx = stream.context().clone();
        let (in_spec, out_specs) = loaded.io_specs()?;
        let mut buffers = Vec::with_capacity(1 + out_specs.len());
        let mut alloc = |spec: &TensorSpec| -> Result<Tensor, EngineError> {
            let (buf, t) =
                crate::gpu::DeviceBuffer::for_tensor(&ctx, spec.clone()).map_err(gpu_err)?;
            buf.memset_async(0, &stream).map_err(gpu_err)?;
            buffers.push(buf);
            Ok(t)
        };
        let input = alloc(&in_spec)?;
        let outputs = out_specs.iter().map(&mut alloc).collect::<Result<_, _>>()?;
        stream.synchronize().map_err(gpu_err)?;
        // SAFETY: `input` and `outputs` are device allocations on the stream's device of
        // exactly the plan's sizes (io_specs), owned by the returned engine (`_buffers`,
        // dropped after the context); the stream is kept alive by `_stream`.
        let mut engine =
            unsafe { loaded.bind(model, input, outputs, stream.raw() as *mut c_void) }?;
        engine._buffers = buffers;
        engine._stream = Some(stream.clone());
        // The Engine trait's outputs follow the ONNX graph's order (the head first).
        let mut by_engine: Vec<Option<Tensor>> = engine.outputs.drain(..).map(Some).collect();
        engine.outputs = order
            .iter()
            .map(|&i| {
                by_engine.get_mut(i).and_then(Option::take).ok_or_else(|| {
                    backend(format!(
                        "output order {order:?} names engine output {i} twice or not at all"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        // Warm-up: every batch size the pipeline can run (largest first), so the first
        // frames do not pay for shape changes.
        let batches: Vec<usize> = if engine.dynamic {
            (1..=engine.max_batch).rev().collect()
        } else {
            vec![engine.max_batch]
        };
        for b in batches {
            engine.run(b)?;
        }
        EngineTrait::synchronize(&mut engine)?;
        Ok(engine)
    }

    /// Output shape for the current batch as TensorRT resolves it.
    pub fn output_shape(&self, index: usize) -> Result<Vec<i64>, EngineError> {
        let spec = &self
            .outputs
            .get(index)
            .ok_or_else(|| backend(format!("no output {index}")))?
            .spec;
        let name = CString::new(spec.name.clone()).map_err(|e| backend(e.to_string()))?;
        self.ctx.tensor_shape(&name)
    }
}

/// Finds a valid cached plan for `args` or builds one; returns it deserialized, with the
/// report the CLI prints.
pub fn load_or_build(
    args: &EngineBuildArgs,
    progress: &mut dyn FnMut(&str),
) -> Result<(LoadedPlan, BuildReport), EngineError> {
    args.batch.validate().map_err(backend)?;
    // TensorRT first: on a host without it, that is the message that helps.
    let rt = open_runtime()?;
    let onnx = crate::engine::describe::read_model(&args.onnx)?;
    let trt = rt.lib_version;
    let (device_name, cc) = device_info(args.gpu)?;
    let dla_cores = if args.dla_core.is_some() {
        rt.dla_cores()?
    } else {
        0
    };
    let core = policy::check_dla_request(args.dla_policy, args.dla_core, trt, dla_cores)
        .map_err(|e| unavailable(e.to_string()))?;
    let key = CacheKey::new(&CacheKeyInputs {
        onnx: &onnx,
        trt,
        device_name: &device_name,
        compute_capability: cc,
        dla_core: core,
        gpu_fallback: args.dla_policy == policy::DlaPolicy::Fallback,
        precision: args.precision,
        batch: args.batch,
    });
    let path = args.plan_path(&key);
    let mut report = BuildReport {
        plan: path.clone(),
        cached: false,
        key: key.clone(),
        tensorrt: trt,
        device_name,
        compute_capability: cc,
        precision: args.precision,
        dla_core: core,
        dla_policy: args.dla_policy,
        warnings: Vec::new(),
        placement: PlacementReport::default(),
        build_seconds: 0.0,
    };
    if !args.force {
        let io_err =
            |e: std::io::Error| backend(format!("reading cached plan {}: {e}", path.display()));
        match cache::load_plan(&path, &key).map_err(io_err)? {
            PlanStatus::Valid(bytes) => {
                progress(&format!("using cached plan {}", path.display()));
                let plan = LoadedPlan::from_bytes(&rt, &bytes, core)?;
                report.cached = true;
                report.placement = plan.placement()?;
                return Ok((plan, report));
            }
            PlanStatus::Stale(why) => progress(&format!(
                "cached plan {} is stale ({why}); rebuilding",
                path.display()
            )),
            PlanStatus::Missing => {}
        }
    }

    // Fail now, not after a build of several minutes, if the plan cannot be stored.
    cache::check_writable(&path).map_err(|e| {
        backend(format!(
            "cannot write the engine cache at {}: {e} (set tensorrt.cache_dir, or --cache for \
             `jetwatch engine build`, to a writable directory)",
            path.display()
        ))
    })?;
    let timing = match &args.timing_cache {
        Some(p) if p.is_file() => Some(read_file(p)?),
        _ => None,
    };
    progress(&format!(
        "building {} with TensorRT {trt} ({}); this takes minutes on a Jetson",
        args.onnx.display(),
        match core {
            Some(c) => format!("DLA core {c}, policy {}", args.dla_policy),
            None => "GPU".into(),
        }
    ));
    let started = Instant::now();
    let mut build = Build::begin(
        &rt,
        &BuildInput {
            onnx: &onnx,
            fp16: args.precision == Precision::Fp16,
            dla_core: core,
            batch: (args.batch.min, args.batch.opt, args.batch.max),
            timing_cache: timing.as_deref(),
            workspace_bytes: args.workspace_bytes,
        },
    )?;
    let layers = build.layers()?;
    let dla: Vec<LayerDla> = layers
        .iter()
        .map(|(name, ok, _)| LayerDla {
            name: name.clone(),
            can_run_on_dla: *ok,
        })
        .collect();
    let decision =
        policy::decide(args.dla_policy, core, &dla).map_err(|e| backend(e.to_string()))?;
    report.warnings.extend(decision.warnings.iter().cloned());
    if trt.precision_mode() == PrecisionMode::TensorTypes {
        let want = match args.precision {
            Precision::Fp16 => sys::JW_TRT_DT_FLOAT,
            Precision::Fp32 => sys::JW_TRT_DT_HALF,
        };
        let n = layers.iter().filter(|l| l.2 == want).count();
        if n > 0 {
            report.warnings.push(format!(
                "TensorRT {trt} builds strongly typed networks: precision comes from the model's \
                 tensor types, and {n} layer(s) of this model produce {} although {} was asked for \
                 (convert the ONNX model to the wanted precision)",
                if want == sys::JW_TRT_DT_FLOAT {
                    "float32"
                } else {
                    "float16"
                },
                args.precision.as_str()
            ));
        }
    }
    build.set_gpu_fallback(decision.gpu_fallback)?;
    let plan = build.run(progress)?;
    report.build_seconds = started.elapsed().as_secs_f64();
    cache::store_plan(&path, &key, plan.bytes())
        .map_err(|e| backend(format!("writing {}: {e}", path.display())))?;
    if let Some(tc) = &args.timing_cache {
        let blob = build.timing_cache()?;
        cache::write_atomic(tc, blob.bytes())
            .map_err(|e| backend(format!("writing timing cache {}: {e}", tc.display())))?;
    }
    // Keep our own copy of the plan, then free the builder (and its device memory) before
    // deserialising.
    let plan = plan.bytes().to_vec();
    drop(build);
    let loaded = LoadedPlan::from_bytes(&rt, &plan, core)?;
    report.placement = loaded.placement()?;
    Ok((loaded, report))
}

/// `jetwatch engine inspect`.
pub(super) fn inspect(plan: &Path) -> Result<String, EngineError> {
    let rt = open_runtime()?;
    let bytes = read_file(plan)?;
    let header = std::fs::read_to_string(cache::header_path(plan)).ok();
    let dla_core = header
        .as_deref()
        .and_then(|h| header_field(h, "dla_core"))
        .and_then(|v| v.parse().ok());
    let loaded = LoadedPlan::from_bytes(&rt, &bytes, dla_core)?;
    let mut out = format!(
        "plan: {} ({} bytes), TensorRT {}\n",
        plan.display(),
        bytes.len(),
        rt.lib_version
    );
    match &header {
        Some(h) => {
            out.push_str("built for:\n");
            for l in h.lines().skip(1) {
                out.push_str("  ");
                out.push_str(l);
                out.push('\n');
            }
        }
        None => out.push_str("no cache header beside this plan (not built by jetwatch)\n"),
    }
    let (input, outputs) = loaded.io_specs()?;
    out.push_str(&format!(
        "input  {} {} {:?}\n",
        input.name,
        input.dtype.name(),
        input.shape
    ));
    for o in outputs {
        out.push_str(&format!(
            "output {} {} {:?}\n",
            o.name,
            o.dtype.name(),
            o.shape
        ));
    }
    out.push_str(&loaded.placement()?.to_string());
    Ok(out)
}
