//! Builds a pipeline from a [`Config`]: picks the backends (`auto` = best available), opens
//! every source, creates decoders, loads the engine and sizes every pool.

use std::time::Duration;

use crate::config::{Config, DecoderChoice, DeviceChoice, EngineChoice};
use crate::decode::Decoder;
use crate::engine::Engine;
use crate::error::{DecodeError, EngineError, Unavailable};
use crate::frame::{Codec, StreamInfo};
use crate::pipeline::{PipelineOptions, Stages, StreamParts};
use crate::postprocess::PostprocessOptions;

/// What was chosen, for logs and the status message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Backends {
    pub decoder: &'static str,
    pub engine: String,
    pub preprocess: &'static str,
    pub postprocess: &'static str,
}

/// Everything needed to start a pipeline.
pub struct Built {
    pub streams: Vec<StreamParts>,
    pub stages: Stages,
    pub options: PipelineOptions,
    pub backends: Backends,
    pub labels: Vec<String>,
    /// Start-up warnings for the status topic (e.g. a DLA engine with GPU fallback).
    pub warnings: Vec<String>,
}

/// Errors while building, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("camera {camera:?}: {source}")]
    Source {
        camera: String,
        #[source]
        source: crate::error::SourceError,
    },
    #[error("camera {camera:?}: {source}")]
    Decoder {
        camera: String,
        #[source]
        source: DecodeError,
    },
    #[error("model: {0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Config(String),
}

/// The pipeline's CUDA stream when the GPU path is chosen (every GPU stage queues on it).
#[cfg(gpu_pipeline)]
pub type GpuStream = std::sync::Arc<crate::gpu::CudaStream>;
/// Without the GPU features there is never a GPU stream.
#[cfg(not(gpu_pipeline))]
pub type GpuStream = std::convert::Infallible;

/// The inference engine of the GPU pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuEngine {
    /// Native TensorRT (a plan from the engine cache, built on first use).
    TensorRt,
    /// ONNX Runtime's CUDA execution provider.
    OrtCuda,
}

/// What this build and host offer for GPU inference (probed once at start-up).
#[derive(Debug, Clone)]
pub struct GpuEngineFacts {
    /// TensorRT: compiled in and libnvinfer present (its version), or why not.
    pub tensorrt: Result<crate::engine::tensorrt::TrtVersion, Unavailable>,
    /// ONNX Runtime with its CUDA provider library, or why not.
    pub ort_cuda: Result<(), Unavailable>,
}

impl GpuEngineFacts {
    /// Probes this build and host.
    pub fn probe() -> GpuEngineFacts {
        GpuEngineFacts {
            tensorrt: crate::engine::tensorrt::prefer_tensorrt(),
            ort_cuda: ort_cuda_available(),
        }
    }
}

#[cfg(feature = "ort")]
fn ort_cuda_available() -> Result<(), Unavailable> {
    let unavailable = |reason: String| Unavailable {
        backend: "onnxruntime-cuda",
        reason,
    };
    let lib = crate::engine::ort::locate_onnxruntime(None).map_err(|u| unavailable(u.reason))?;
    let provider = lib
        .parent()
        .map(|d| d.join("libonnxruntime_providers_cuda.so"))
        .filter(|f| f.is_file());
    match provider {
        Some(_) => Ok(()),
        None => Err(unavailable(format!(
            "libonnxruntime_providers_cuda.so is not next to {} (the onnxruntime-gpu wheel has both)",
            lib.display()
        ))),
    }
}

#[cfg(not(feature = "ort"))]
fn ort_cuda_available() -> Result<(), Unavailable> {
    Err(lacks("onnxruntime-cuda", "ort"))
}

/// `pipeline.engine` on the GPU path: `tensorrt` and `onnxruntime` ask for one engine (an
/// error when it is unavailable); `auto` prefers TensorRT when it is compiled in and
/// libnvinfer is present, else ONNX Runtime's CUDA provider.
pub fn choose_gpu_engine(
    choice: EngineChoice,
    facts: &GpuEngineFacts,
) -> Result<GpuEngine, Unavailable> {
    match choice {
        EngineChoice::Tensorrt => facts.tensorrt.clone().map(|_| GpuEngine::TensorRt),
        EngineChoice::Onnxruntime => facts.ort_cuda.clone().map(|_| GpuEngine::OrtCuda),
        EngineChoice::Auto => prefer(
            "GPU inference",
            (
                "TensorRT",
                GpuEngine::TensorRt,
                facts.tensorrt.as_ref().err(),
            ),
            (
                "ONNX Runtime's CUDA provider",
                GpuEngine::OrtCuda,
                facts.ort_cuda.as_ref().err(),
            ),
        ),
    }
}

/// `backend` is not compiled into this build: it needs cargo feature `feature`.
fn lacks(backend: &'static str, feature: &str) -> Unavailable {
    Unavailable {
        backend,
        reason: format!("this build lacks the `{feature}` feature"),
    }
}

/// `auto` between two backends: the first unless it is unavailable (`Some(why)`), then the
/// second; when neither is usable, both reasons.
fn prefer<T>(
    what: &'static str,
    first: (&str, T, Option<&Unavailable>),
    second: (&str, T, Option<&Unavailable>),
) -> Result<T, Unavailable> {
    match (first.2, second.2) {
        (None, _) => Ok(first.1),
        (Some(_), None) => Ok(second.1),
        (Some(a), Some(b)) => Err(Unavailable {
            backend: what,
            reason: format!(
                "neither {} ({}) nor {} ({}) is usable",
                first.0, a.reason, second.0, b.reason
            ),
        }),
    }
}

/// The hardware decoder of the GPU pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuDecoder {
    /// NVDEC through libnvcuvid (dGPU).
    Nvdec,
    /// The Jetson V4L2 decoder (libnvv4l2) into NvBufSurfaces registered with CUDA.
    Jetson,
}

/// What this build and host offer for hardware decoding to device surfaces.
#[derive(Debug, Clone)]
pub struct GpuDecoderFacts {
    pub nvdec: Result<(), Unavailable>,
    pub jetson: Result<(), Unavailable>,
}

impl GpuDecoderFacts {
    /// Probes this build and host (libraries and the decoder node; nothing is opened for
    /// decoding).
    pub fn probe() -> GpuDecoderFacts {
        let nvdec = if !cfg!(feature = "nvdec") {
            Err(lacks("nvdec", "nvdec"))
        } else if crate::probe::find_library(&["libnvcuvid.so.1"]).is_some() {
            Ok(())
        } else {
            Err(Unavailable {
                backend: "nvdec",
                reason: "libnvcuvid.so.1 not found (NVIDIA driver on a dGPU)".into(),
            })
        };
        GpuDecoderFacts {
            nvdec,
            jetson: jetson_decoder_available(),
        }
    }
}

#[cfg(feature = "jetson")]
fn jetson_decoder_available() -> Result<(), Unavailable> {
    use crate::decode::v4l2::jetson;
    jetson::NvV4l2Ioctl::load()?;
    jetson::NvBufSurfaceLib::load()?;
    jetson::decoder_node()
        .map(|_| ())
        .ok_or_else(|| Unavailable {
            backend: "jetson-v4l2",
            reason: format!(
                "no decoder node ({})",
                jetwatch_ffi::jetson::DECODER_NODES.join(", ")
            ),
        })
}

#[cfg(not(feature = "jetson"))]
fn jetson_decoder_available() -> Result<(), Unavailable> {
    Err(lacks("jetson-v4l2", "jetson"))
}

/// `pipeline.decoder` on the GPU path: `auto` is the Jetson decoder where it exists, else
/// NVDEC; `nvdec` and `jetson` ask for one (an error with its reason when unavailable);
/// `software` decodes to host memory and is not a GPU-path decoder.
pub fn choose_gpu_decoder(
    choice: DecoderChoice,
    facts: &GpuDecoderFacts,
) -> Result<GpuDecoder, Unavailable> {
    match choice {
        DecoderChoice::Nvdec => facts.nvdec.clone().map(|_| GpuDecoder::Nvdec),
        DecoderChoice::Jetson => facts.jetson.clone().map(|_| GpuDecoder::Jetson),
        DecoderChoice::Auto => prefer(
            "GPU decoding",
            (
                "the Jetson decoder",
                GpuDecoder::Jetson,
                facts.jetson.as_ref().err(),
            ),
            ("NVDEC", GpuDecoder::Nvdec, facts.nvdec.as_ref().err()),
        ),
        DecoderChoice::Software => Err(Unavailable {
            backend: "GPU pipeline",
            reason: "the GPU path decodes on the hardware decoder; decoder = \"software\" \
                     needs device = \"cpu\" (or decoder = auto, nvdec or jetson)"
                .into(),
        }),
    }
}

/// The engine choice in effect: `pipeline.engine`, except that a prebuilt TensorRT plan as
/// `model.path` (`.engine`, `.plan`, `.trt`) needs TensorRT (`auto` becomes `tensorrt`;
/// `onnxruntime` is refused by the config check).
pub fn engine_choice(cfg: &Config) -> EngineChoice {
    if crate::engine::tensorrt::is_plan_file(&cfg.model.path) {
        EngineChoice::Tensorrt
    } else {
        cfg.pipeline.engine
    }
}

/// Decides the device: `cpu`, `cuda` (an error if the build or host cannot), or `auto` (the
/// GPU path when this build has the GPU pipeline (`cuda13,nvdec` or `cuda12,jetson`, and
/// `ort` or `tensorrt`) and the host has libcuda, the CUDA device, a hardware decoder
/// ([`choose_gpu_decoder`]) and a GPU engine ([`choose_gpu_engine`])). Returns the pipeline stream on the primary context of
/// `pipeline.gpu` for the GPU path.
pub fn open_gpu(cfg: &Config) -> Result<Option<GpuStream>, BuildError> {
    let p = &cfg.pipeline;
    #[cfg(gpu_pipeline)]
    {
        let unavailable = |u: Unavailable| BuildError::Engine(EngineError::Unavailable(u));
        let open = || -> Result<GpuStream, BuildError> {
            let gpu_err = |e: crate::gpu::GpuError| match e {
                crate::gpu::GpuError::Unavailable(u) => unavailable(u),
                other => BuildError::Config(format!("CUDA device {}: {other}", p.gpu)),
            };
            crate::gpu::init().map_err(gpu_err)?;
            let ctx = crate::gpu::CudaContext::new(p.gpu).map_err(gpu_err)?;
            crate::gpu::CudaStream::new(&ctx).map_err(gpu_err)
        };
        match p.device {
            DeviceChoice::Cpu => Ok(None),
            DeviceChoice::Cuda => open().map(Some),
            DeviceChoice::Auto => {
                let usable = choose_gpu_decoder(p.decoder, &GpuDecoderFacts::probe()).is_ok()
                    && crate::gpu::init().is_ok()
                    && crate::gpu::device_count().unwrap_or(0) > p.gpu as usize
                    && choose_gpu_engine(engine_choice(cfg), &GpuEngineFacts::probe()).is_ok();
                if usable {
                    open().map(Some)
                } else {
                    Ok(None)
                }
            }
        }
    }
    #[cfg(not(gpu_pipeline))]
    match p.device {
        DeviceChoice::Cpu | DeviceChoice::Auto => Ok(None),
        DeviceChoice::Cuda => Err(BuildError::Engine(EngineError::Unavailable(Unavailable {
            backend: "CUDA pipeline",
            reason: "this build lacks the GPU pipeline (build with --features cuda13,nvdec on \
                     a dGPU or cuda12,jetson on JetPack 6, plus ort or tensorrt)"
                .into(),
        }))),
    }
}

/// Opens a decoder for one stream according to the configured choice.
pub fn open_decoder(
    choice: DecoderChoice,
    info: &StreamInfo,
    cfg: &Config,
) -> Result<(Box<dyn Decoder>, &'static str), DecodeError> {
    open_decoder_on(choice, info, cfg, None)
}

/// [`open_decoder`] for a pipeline on `gpu` (the GPU path): the hardware decoder
/// [`choose_gpu_decoder`] picks: NVDEC mapping its pictures on the pipeline stream
/// (`NvdecDecoder::set_pipeline_stream`), or the Jetson decoder with the pipeline's context.
pub fn open_decoder_on(
    choice: DecoderChoice,
    info: &StreamInfo,
    cfg: &Config,
    gpu: Option<&GpuStream>,
) -> Result<(Box<dyn Decoder>, &'static str), DecodeError> {
    let p = &cfg.pipeline;
    #[cfg(gpu_pipeline)]
    if let Some(stream) = gpu {
        return match choose_gpu_decoder(choice, &GpuDecoderFacts::probe())? {
            GpuDecoder::Nvdec => open_nvdec_on(info, cfg, stream),
            GpuDecoder::Jetson => open_jetson_on(info, cfg, stream),
        };
    }
    #[cfg(not(gpu_pipeline))]
    let _ = gpu;
    let pool = p.frames_in_flight;
    let hw_hint = " (H.265 needs a hardware decoder: NVDEC on a dGPU with `--features nvdec`, or the Jetson decoder)";
    match choice {
        DecoderChoice::Software | DecoderChoice::Auto => {
            if choice == DecoderChoice::Auto {
                #[cfg(feature = "nvdec")]
                if crate::probe::find_library(&["libnvcuvid.so.1"]).is_some() {
                    let d = crate::decode::nvdec::NvdecDecoder::new(
                        info,
                        p.gpu,
                        pool,
                        p.max_width,
                        p.max_height,
                    )?;
                    return Ok((Box::new(d), "nvdec"));
                }
            }
            if info.codec == Codec::H265 {
                return Err(DecodeError::UnsupportedCodec {
                    codec: info.codec.name(),
                    backend: "software",
                    hint: hw_hint,
                });
            }
            #[cfg(feature = "sw-h264")]
            {
                let d = crate::decode::openh264::OpenH264Decoder::new(
                    info,
                    pool,
                    p.max_width,
                    p.max_height,
                )?;
                Ok((Box::new(d), "openh264"))
            }
            #[cfg(not(feature = "sw-h264"))]
            Err(DecodeError::Unavailable(lacks(
                "software H.264 decoder",
                "sw-h264",
            )))
        }
        DecoderChoice::Nvdec => {
            #[cfg(feature = "nvdec")]
            {
                let d = crate::decode::nvdec::NvdecDecoder::new(
                    info,
                    p.gpu,
                    pool,
                    p.max_width,
                    p.max_height,
                )?;
                Ok((Box::new(d), "nvdec"))
            }
            #[cfg(not(feature = "nvdec"))]
            Err(DecodeError::Unavailable(Unavailable {
                backend: "NVDEC",
                reason: "this build lacks the `nvdec` feature (build with --features cuda13,nvdec)"
                    .into(),
            }))
        }
        DecoderChoice::Jetson => Err(DecodeError::Unavailable(Unavailable {
            backend: "Jetson V4L2 decoder",
            reason: "the Jetson decoder writes NvBufSurfaces that the CUDA stages read in place: \
                     it runs on the GPU path (device = \"cuda\" or \"auto\", a build with \
                     --features cuda12,jetson and tensorrt or ort)"
                .into(),
        })),
    }
}

#[cfg(all(gpu_pipeline, feature = "nvdec"))]
fn open_nvdec_on(
    info: &StreamInfo,
    cfg: &Config,
    stream: &GpuStream,
) -> Result<(Box<dyn Decoder>, &'static str), DecodeError> {
    let p = &cfg.pipeline;
    let mut d = crate::decode::nvdec::NvdecDecoder::new(
        info,
        stream.context().ordinal(),
        p.frames_in_flight,
        p.max_width,
        p.max_height,
    )?;
    d.set_pipeline_stream(stream.clone());
    Ok((Box::new(d), "nvdec"))
}

#[cfg(all(gpu_pipeline, not(feature = "nvdec")))]
fn open_nvdec_on(
    _info: &StreamInfo,
    _cfg: &Config,
    _stream: &GpuStream,
) -> Result<(Box<dyn Decoder>, &'static str), DecodeError> {
    Err(DecodeError::Unavailable(lacks("nvdec", "nvdec")))
}

/// The Jetson decoder for one stream: libnvv4l2 on the decoder node, NVIDIA's controls,
/// block-linear NvBufSurfaces mapped as EGLImages and registered with the pipeline's CUDA
/// context (the CUDA stages read them through texture objects, no copy). Every call into it
/// runs with that context current ([`ContextBound`]).
#[cfg(all(gpu_pipeline, feature = "jetson"))]
fn open_jetson_on(
    info: &StreamInfo,
    cfg: &Config,
    stream: &GpuStream,
) -> Result<(Box<dyn Decoder>, &'static str), DecodeError> {
    use crate::decode::v4l2::{
        jetson::SurfaceLayout, CodedFormat, V4l2Decoder, V4l2DecoderOptions,
    };
    let p = &cfg.pipeline;
    let ctx = stream.context().clone();
    ctx.bind().map_err(jetson_context_err)?;
    let opts = V4l2DecoderOptions {
        format: match info.codec {
            Codec::H264 => CodedFormat::H264,
            Codec::H265 => CodedFormat::H265,
        },
        max_width: p.max_width,
        max_height: p.max_height,
        output_buffer_bytes: u32::try_from(p.max_access_unit_bytes).unwrap_or(u32::MAX),
        pool_size: p.frames_in_flight,
        ..V4l2DecoderOptions::default()
    };
    let d = V4l2Decoder::open_jetson(opts, SurfaceLayout::BlockLinear, ctx.ordinal())?;
    Ok((Box::new(ContextBound { ctx, inner: d }), "jetson-v4l2"))
}

#[cfg(all(gpu_pipeline, not(feature = "jetson")))]
fn open_jetson_on(
    _info: &StreamInfo,
    _cfg: &Config,
    _stream: &GpuStream,
) -> Result<(Box<dyn Decoder>, &'static str), DecodeError> {
    Err(DecodeError::Unavailable(lacks("jetson-v4l2", "jetson")))
}

#[cfg(all(gpu_pipeline, feature = "jetson"))]
fn jetson_context_err(e: crate::gpu::GpuError) -> DecodeError {
    DecodeError::Unavailable(Unavailable {
        backend: "jetson-v4l2",
        reason: format!("CUDA context: {e}"),
    })
}

/// A decoder whose every call runs with a CUDA context current on the calling thread (the
/// decode thread): the Jetson decoder registers capture surfaces with CUDA when the stream's
/// format arrives, inside `decode`. `bind` is one `cuCtxSetCurrent`, no allocation.
#[cfg(all(gpu_pipeline, feature = "jetson"))]
struct ContextBound<D> {
    ctx: std::sync::Arc<crate::gpu::CudaContext>,
    inner: D,
}

#[cfg(all(gpu_pipeline, feature = "jetson"))]
impl<D: Decoder> ContextBound<D> {
    fn bind(&self) -> Result<(), DecodeError> {
        self.ctx.bind().map_err(jetson_context_err)
    }
}

#[cfg(all(gpu_pipeline, feature = "jetson"))]
impl<D: Decoder> Decoder for ContextBound<D> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn decode(
        &mut self,
        au: &crate::frame::AccessUnit,
        sink: &mut dyn FnMut(crate::decode::Decoded),
    ) -> Result<(), DecodeError> {
        self.bind()?;
        self.inner.decode(au, sink)
    }
    fn flush(&mut self, sink: &mut dyn FnMut(crate::decode::Decoded)) -> Result<(), DecodeError> {
        self.bind()?;
        self.inner.flush(sink)
    }
    fn recycle(&mut self, picture: crate::frame::Picture, token: u32) {
        // A failed bind is reported by the next decode; re-queueing a capture buffer needs
        // no CUDA call.
        let _ = self.ctx.bind();
        self.inner.recycle(picture, token)
    }
    fn stats(&self) -> crate::decode::DecodeStats {
        self.inner.stats()
    }
}

/// Loads the engine according to the configured choice (CPU, or CUDA on its own stream when
/// `device = cuda`; the pipeline uses [`open_engine_on`] to share its stream).
pub fn open_engine(cfg: &Config) -> Result<Box<dyn Engine>, EngineError> {
    open_engine_on(cfg, None).map(|(e, _)| e)
}

/// [`open_engine`]; with `gpu`, the GPU engine [`choose_gpu_engine`] picks, running on that
/// stream with device input and output tensors. Also returns warnings for the status topic
/// (a TensorRT DLA build that falls back to the GPU).
pub fn open_engine_on(
    cfg: &Config,
    gpu: Option<&GpuStream>,
) -> Result<(Box<dyn Engine>, Vec<String>), EngineError> {
    #[cfg(gpu_pipeline)]
    if let Some(stream) = gpu {
        let facts = GpuEngineFacts::probe();
        let choice = engine_choice(cfg);
        let chosen = choose_gpu_engine(choice, &facts).map_err(EngineError::Unavailable)?;
        if choice == EngineChoice::Auto {
            match (&facts.tensorrt, chosen) {
                (Ok(v), _) => log::info!("engine: TensorRT {v} (libnvinfer found)"),
                (Err(u), _) => log::info!(
                    "engine: ONNX Runtime CUDA (TensorRT not used: {})",
                    u.reason
                ),
            }
        }
        return match chosen {
            GpuEngine::TensorRt => match open_tensorrt(cfg, stream) {
                // `auto` must end with a working engine: when TensorRT is present but its
                // engine cannot be made (a runtime-only library, a build that fails), run
                // ONNX Runtime's CUDA provider and say so on the status topic.
                Err(e) if choice == EngineChoice::Auto && facts.ort_cuda.is_ok() => {
                    let w = format!(
                        "engine = auto: the TensorRT engine failed ({e}); running ONNX Runtime's \
                         CUDA provider instead"
                    );
                    log::warn!("{w}");
                    open_ort_cuda(cfg, stream).map(|e| (e, vec![w]))
                }
                other => other,
            },
            GpuEngine::OrtCuda => open_ort_cuda(cfg, stream).map(|e| (e, Vec::new())),
        };
    }
    #[cfg(not(gpu_pipeline))]
    let _ = gpu;
    match engine_choice(cfg) {
        EngineChoice::Tensorrt => Err(match crate::engine::tensorrt::check_usable() {
            Err(e) => e,
            Ok(v) => EngineError::Unavailable(Unavailable {
                backend: "tensorrt",
                reason: format!(
                    "TensorRT {v} is present, but the TensorRT engine runs in the GPU pipeline \
                     (NVDEC decode, device tensors), which is not in use: set pipeline.device = \
                     \"cuda\" on a host with libnvcuvid, and build with --features \
                     cuda13,nvdec,tensorrt (see docs/tensorrt.md)"
                ),
            }),
        }),
        EngineChoice::Auto | EngineChoice::Onnxruntime => open_ort(cfg).map(|e| (e, Vec::new())),
    }
}

#[cfg(all(gpu_pipeline, feature = "tensorrt"))]
fn open_tensorrt(
    cfg: &Config,
    stream: &GpuStream,
) -> Result<(Box<dyn Engine>, Vec<String>), EngineError> {
    use crate::engine::tensorrt::{is_plan_file, pipeline_plan, TensorRtEngine};
    let p = &cfg.pipeline;
    if is_plan_file(&cfg.model.path) {
        log::info!(
            "tensorrt: loading the prebuilt plan {} (no cache, no build)",
            cfg.model.path.display()
        );
        let engine = TensorRtEngine::open_plan_on_stream(
            &cfg.model.path,
            cfg.model.labels.as_deref(),
            p.batch_size,
            stream.clone(),
        )?;
        return Ok((Box::new(engine), Vec::new()));
    }
    let plan = pipeline_plan(&cfg.model.path, p.batch_size, p.gpu, &cfg.tensorrt)?;
    let (engine, report) = TensorRtEngine::open_on_stream(
        &plan,
        cfg.model.labels.as_deref(),
        stream.clone(),
        &mut |line| log::info!("tensorrt: {line}"),
    )?;
    for line in report.to_string().lines() {
        log::info!("tensorrt: {line}");
    }
    for w in &report.warnings {
        log::warn!("tensorrt: {w}");
    }
    Ok((Box::new(engine), report.warnings))
}

#[cfg(all(gpu_pipeline, not(feature = "tensorrt")))]
fn open_tensorrt(
    _cfg: &Config,
    _stream: &GpuStream,
) -> Result<(Box<dyn Engine>, Vec<String>), EngineError> {
    Err(EngineError::Unavailable(lacks("tensorrt", "tensorrt")))
}

#[cfg(all(gpu_pipeline, feature = "ort"))]
fn open_ort_cuda(cfg: &Config, stream: &GpuStream) -> Result<Box<dyn Engine>, EngineError> {
    use crate::engine::ort::{OrtDevice, OrtEngine, OrtOptions};
    let p = &cfg.pipeline;
    let e = OrtEngine::load_on_stream(
        &cfg.model,
        OrtOptions {
            device: OrtDevice::Cuda {
                device: stream.context().ordinal(),
            },
            max_batch: p.batch_size,
            threads: p.cpu_threads,
            library: None,
        },
        stream.clone(),
    )?;
    Ok(Box::new(e))
}

#[cfg(all(gpu_pipeline, not(feature = "ort")))]
fn open_ort_cuda(_cfg: &Config, _stream: &GpuStream) -> Result<Box<dyn Engine>, EngineError> {
    Err(EngineError::Unavailable(lacks("onnxruntime-cuda", "ort")))
}

#[cfg(feature = "ort")]
fn open_ort(cfg: &Config) -> Result<Box<dyn Engine>, EngineError> {
    use crate::engine::ort::{OrtDevice, OrtEngine, OrtOptions};
    let device = match cfg.pipeline.device {
        DeviceChoice::Cpu | DeviceChoice::Auto => OrtDevice::Cpu,
        DeviceChoice::Cuda => OrtDevice::Cuda {
            device: cfg.pipeline.gpu,
        },
    };
    let e = OrtEngine::load(
        &cfg.model,
        OrtOptions {
            device,
            max_batch: cfg.pipeline.batch_size,
            threads: cfg.pipeline.cpu_threads,
            library: None,
        },
    )?;
    Ok(Box::new(e))
}

#[cfg(not(feature = "ort"))]
fn open_ort(_cfg: &Config) -> Result<Box<dyn Engine>, EngineError> {
    Err(EngineError::Unavailable(lacks("ONNX Runtime", "ort")))
}

/// Opens sources, decoders and the engine, and sizes every pool.
pub fn build(cfg: &Config) -> Result<Built, BuildError> {
    let p = &cfg.pipeline;
    let gpu = open_gpu(cfg)?;
    let (engine, warnings) = open_engine_on(cfg, gpu.as_ref())?;
    let model = engine.model().clone();
    let labels = model.labels.clone();
    let class_filter = cfg.class_filter(&labels).map_err(BuildError::Config)?;
    let mut streams = Vec::with_capacity(cfg.cameras.len());
    let mut decoder_name = "none";
    for cam in &cfg.cameras {
        let path = cam.file_path().ok_or_else(|| {
            BuildError::Config(format!("camera {:?}: not a file source", cam.name))
        })?;
        let source =
            crate::source::file::open_file(&path, cam.codec, cam.looping, p.max_access_unit_bytes)
                .map_err(|e| BuildError::Source {
                    camera: cam.name.clone(),
                    source: e,
                })?;
        let info = source.info().clone();
        if info.width > p.max_width || info.height > p.max_height {
            return Err(BuildError::Config(format!(
                "camera {:?}: {}x{} is larger than pipeline.max_width x max_height ({}x{})",
                cam.name, info.width, info.height, p.max_width, p.max_height
            )));
        }
        let (decoder, name) =
            open_decoder_on(p.decoder, &info, cfg, gpu.as_ref()).map_err(|e| {
                BuildError::Decoder {
                    camera: cam.name.clone(),
                    source: e,
                }
            })?;
        decoder_name = name;
        log::info!(
            "camera {}: {} {}x{} {:?} fps, {:?}, decoder {}",
            cam.name,
            info.codec.name(),
            info.width,
            info.height,
            info.fps,
            info.colour,
            name
        );
        streams.push(StreamParts {
            name: cam.name.clone(),
            source,
            decoder,
            pacing: cam.pacing,
        });
    }
    let post_opts = PostprocessOptions {
        score_threshold: cfg.model.score_threshold,
        iou_threshold: cfg.model.iou_threshold,
        max_detections: cfg.model.max_detections,
        class_filter,
    };
    let (preprocess, postprocess, stage_name) = cpu_or_gpu_stages(cfg, &model, post_opts, gpu)?;
    let backends = Backends {
        decoder: decoder_name,
        engine: engine.backend().to_string(),
        preprocess: stage_name,
        postprocess: stage_name,
    };
    let max_message_bytes =
        crate::wire::max_encoded_len(cfg.publish.format, cfg.model.max_detections, &labels);
    let options = PipelineOptions {
        batch_size: p.batch_size,
        batch_timeout: Duration::from_millis(p.batch_timeout_ms),
        frames_in_flight: p.frames_in_flight,
        max_access_unit_bytes: p.max_access_unit_bytes,
        wire_format: cfg.publish.format,
        publish_mode: cfg.publish.mode,
        min_interval: Duration::from_millis(cfg.publish.min_interval_ms),
        metrics_interval: (cfg.publish.metrics_interval_s > 0)
            .then(|| Duration::from_secs(cfg.publish.metrics_interval_s)),
        labels: labels.clone(),
        max_frames: None,
        warmup_frames: 30,
        max_message_bytes,
    };
    Ok(Built {
        streams,
        stages: Stages {
            preprocess,
            engine,
            postprocess,
        },
        options,
        backends,
        labels,
        warnings,
    })
}

type StagePair = (
    Box<dyn crate::preprocess::Preprocess>,
    Box<dyn crate::postprocess::Postprocess>,
    &'static str,
);

/// Preprocess and postprocess: the CUDA kernels on the pipeline stream (device input batch
/// written by the fused preprocess, NMS scratch and pinned results allocated here, once), or
/// the CPU twins.
fn cpu_or_gpu_stages(
    cfg: &Config,
    model: &crate::engine::ModelInfo,
    post_opts: PostprocessOptions,
    gpu: Option<GpuStream>,
) -> Result<StagePair, BuildError> {
    let p = &cfg.pipeline;
    #[cfg(gpu_pipeline)]
    if let Some(stream) = gpu {
        let gpu_err = |e: crate::gpu::GpuError| match e {
            crate::gpu::GpuError::Unavailable(u) => BuildError::Engine(EngineError::Unavailable(u)),
            other => BuildError::Config(format!("GPU stages: {other}")),
        };
        let pre = crate::preprocess::cuda::CudaPreprocess::new(stream.clone(), model.preprocess)
            .map_err(gpu_err)?;
        let (cw, ch) = (model.preprocess.width, model.preprocess.height);
        let post = crate::postprocess::cuda::CudaPostprocess::with_canvas(
            stream,
            model.head,
            post_opts,
            p.batch_size,
            cw,
            ch,
        )
        .map_err(gpu_err)?;
        return Ok((Box::new(pre), Box::new(post), "cuda"));
    }
    #[cfg(not(gpu_pipeline))]
    let _ = gpu;
    let pre = crate::preprocess::cpu::CpuPreprocess::new(model.preprocess);
    let post = crate::postprocess::cpu::CpuPostprocess::new(model.head, post_opts, p.batch_size)
        .map_err(|e| BuildError::Config(e.to_string()))?;
    Ok((Box::new(pre), Box::new(post), "cpu"))
}

/// The retained birth message for `status` (with the class names, so subscribers of the
/// postcard format can name classes).
pub fn birth_message(cfg: &Config, built: &Built) -> String {
    let streams: Vec<String> = cfg.cameras.iter().map(|c| c.name.clone()).collect();
    let backends = serde_json::to_value(&built.backends).unwrap_or_default();
    crate::publish::mqtt::birth_message(
        env!("CARGO_PKG_VERSION"),
        &streams,
        &backends,
        &built.labels,
        &built.warnings,
    )
}

/// Starts the MQTT publisher for a built pipeline: outbox slots sized for its largest message.
pub fn start_publisher(
    cfg: &Config,
    built: &Built,
    birth: String,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) -> Result<
    (
        crate::publish::OutboxPublisher,
        crate::publish::mqtt::PublisherHandle,
    ),
    crate::publish::mqtt::PublishError,
> {
    crate::publish::mqtt::start(
        crate::publish::mqtt::PublisherConfig::from_config(cfg, built.options.max_message_bytes),
        birth,
        clock,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tensorrt::TrtVersion;

    fn facts(trt: bool, ort: bool) -> GpuEngineFacts {
        let no = |b: &'static str| Unavailable {
            backend: b,
            reason: format!("no {b} here"),
        };
        GpuEngineFacts {
            tensorrt: if trt {
                Ok(TrtVersion::from_encoded(100300).unwrap())
            } else {
                Err(no("tensorrt"))
            },
            ort_cuda: if ort {
                Ok(())
            } else {
                Err(no("onnxruntime-cuda"))
            },
        }
    }

    #[test]
    fn auto_prefers_tensorrt_when_libnvinfer_is_present() {
        use EngineChoice::*;
        use GpuEngine::*;
        assert_eq!(choose_gpu_engine(Auto, &facts(true, true)), Ok(TensorRt));
        assert_eq!(choose_gpu_engine(Auto, &facts(true, false)), Ok(TensorRt));
        assert_eq!(choose_gpu_engine(Auto, &facts(false, true)), Ok(OrtCuda));
        let e = choose_gpu_engine(Auto, &facts(false, false)).unwrap_err();
        assert!(
            e.reason.contains("no tensorrt here") && e.reason.contains("no onnxruntime-cuda here"),
            "{e:?}"
        );
        // An explicit choice is honoured, or fails with that engine's reason.
        assert_eq!(
            choose_gpu_engine(Onnxruntime, &facts(true, true)),
            Ok(OrtCuda)
        );
        assert_eq!(
            choose_gpu_engine(Tensorrt, &facts(true, false)),
            Ok(TensorRt)
        );
        let e = choose_gpu_engine(Tensorrt, &facts(false, true)).unwrap_err();
        assert_eq!(e.reason, "no tensorrt here");
        let e = choose_gpu_engine(Onnxruntime, &facts(true, false)).unwrap_err();
        assert_eq!(e.reason, "no onnxruntime-cuda here");
    }

    #[test]
    fn gpu_decoder_prefers_jetson_then_nvdec() {
        use DecoderChoice::{Auto, Software};
        use GpuDecoder::{Jetson, Nvdec};
        let facts = |jetson: bool, nvdec: bool| {
            let no = |b: &'static str| Unavailable {
                backend: b,
                reason: format!("no {b} here"),
            };
            GpuDecoderFacts {
                nvdec: if nvdec { Ok(()) } else { Err(no("nvdec")) },
                jetson: if jetson { Ok(()) } else { Err(no("jetson")) },
            }
        };
        assert_eq!(choose_gpu_decoder(Auto, &facts(true, true)), Ok(Jetson));
        assert_eq!(choose_gpu_decoder(Auto, &facts(false, true)), Ok(Nvdec));
        assert_eq!(choose_gpu_decoder(Auto, &facts(true, false)), Ok(Jetson));
        let e = choose_gpu_decoder(Auto, &facts(false, false)).unwrap_err();
        assert!(
            e.reason.contains("no jetson here") && e.reason.contains("no nvdec here"),
            "{e:?}"
        );
        assert_eq!(
            choose_gpu_decoder(DecoderChoice::Nvdec, &facts(true, true)),
            Ok(Nvdec)
        );
        assert_eq!(
            choose_gpu_decoder(DecoderChoice::Jetson, &facts(false, true))
                .unwrap_err()
                .reason,
            "no jetson here"
        );
        let e = choose_gpu_decoder(Software, &facts(true, true)).unwrap_err();
        assert!(e.reason.contains("device = \"cpu\""), "{e:?}");
        // This host (CI: no Jetson libraries) never offers the Jetson decoder.
        if !cfg!(feature = "jetson") {
            assert!(GpuDecoderFacts::probe().jetson.is_err());
        }
    }

    #[test]
    fn a_prebuilt_plan_needs_tensorrt() {
        let text = |model: &str, engine: &str| {
            format!(
                "device_id = \"d\"\n[[cameras]]\nname = \"c\"\nurl = \"c.mp4\"\n[model]\n\
                 path = \"{model}\"\n[pipeline]\nengine = \"{engine}\"\n"
            )
        };
        let parse = |t: &str| Config::parse(t, std::path::Path::new("t.toml"));
        let c = parse(&text("yolov8n.engine", "auto")).unwrap();
        assert_eq!(engine_choice(&c), EngineChoice::Tensorrt);
        let c = parse(&text("yolov8n.onnx", "auto")).unwrap();
        assert_eq!(engine_choice(&c), EngineChoice::Auto);
        let e = parse(&text("yolov8n.plan", "onnxruntime")).unwrap_err();
        assert_eq!(e.key, "model.path");
        assert!(e.msg.contains("TensorRT plan"), "{e}");
    }

    #[test]
    fn probe_reports_this_build() {
        // Without the feature TensorRT is never offered, whatever the host has.
        let f = GpuEngineFacts::probe();
        if !cfg!(feature = "tensorrt") {
            assert!(f.tensorrt.unwrap_err().reason.contains("feature"));
        }
        if !cfg!(feature = "ort") {
            assert!(f.ort_cuda.is_err());
        }
    }
}
