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

/// Opens a decoder for one stream according to the configured choice.
pub fn open_decoder(
    choice: DecoderChoice,
    info: &StreamInfo,
    cfg: &Config,
) -> Result<(Box<dyn Decoder>, &'static str), DecodeError> {
    let p = &cfg.pipeline;
    let pool = p.frames_in_flight;
    let hw_hint = " (H.265 needs a hardware decoder: NVDEC on a dGPU with `--features nvdec`, or the Jetson decoder)";
    match choice {
        DecoderChoice::Software | DecoderChoice::Auto => {
            if choice == DecoderChoice::Auto {
                #[cfg(feature = "nvdec")]
                if crate::probe::find_library(&["libnvcuvid.so.1"]).is_some() {
                    let d = crate::decode::nvdec::NvdecDecoder::new(info, p.gpu, pool, p.max_width, p.max_height)?;
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
                let d = crate::decode::openh264::OpenH264Decoder::new(info, pool, p.max_width, p.max_height)?;
                Ok((Box::new(d), "openh264"))
            }
            #[cfg(not(feature = "sw-h264"))]
            Err(DecodeError::Unavailable(Unavailable {
                backend: "software H.264 decoder",
                reason: "this build lacks the `sw-h264` feature".into(),
            }))
        }
        DecoderChoice::Nvdec => {
            #[cfg(feature = "nvdec")]
            {
                let d = crate::decode::nvdec::NvdecDecoder::new(info, p.gpu, pool, p.max_width, p.max_height)?;
                Ok((Box::new(d), "nvdec"))
            }
            #[cfg(not(feature = "nvdec"))]
            Err(DecodeError::Unavailable(Unavailable {
                backend: "NVDEC",
                reason: "this build lacks the `nvdec` feature (build with --features cuda13,nvdec)".into(),
            }))
        }
        DecoderChoice::Jetson => Err(DecodeError::Unavailable(Unavailable {
            backend: "Jetson V4L2 decoder",
            reason: "the Jetson decoder is not wired into the pipeline in this version; see docs/hardware-matrix.md".into(),
        })),
    }
}

/// Loads the engine according to the configured choice.
pub fn open_engine(cfg: &Config) -> Result<Box<dyn Engine>, EngineError> {
    let p = &cfg.pipeline;
    match p.engine {
        EngineChoice::Tensorrt => match crate::engine::tensorrt::prefer_tensorrt() {
            Err(u) => Err(EngineError::Unavailable(u)),
            Ok(v) => Err(EngineError::Unavailable(Unavailable {
                backend: "tensorrt",
                reason: format!(
                    "TensorRT {v} is present, but the TensorRT engine needs the GPU pipeline (device tensor pool), \
                     which `jetwatch run` does not wire yet; use engine = \"onnxruntime\" (see docs/hardware-matrix.md)"
                ),
            })),
        },
        EngineChoice::Auto | EngineChoice::Onnxruntime => open_ort(cfg),
    }
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
    Err(EngineError::Unavailable(Unavailable {
        backend: "ONNX Runtime",
        reason: "this build lacks the `ort` feature".into(),
    }))
}

/// Opens sources, decoders and the engine, and sizes every pool.
pub fn build(cfg: &Config) -> Result<Built, BuildError> {
    let p = &cfg.pipeline;
    let engine = open_engine(cfg)?;
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
            open_decoder(p.decoder, &info, cfg).map_err(|e| BuildError::Decoder {
                camera: cam.name.clone(),
                source: e,
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
    let preprocess = Box::new(crate::preprocess::cpu::CpuPreprocess::new(model.preprocess));
    let postprocess = Box::new(
        crate::postprocess::cpu::CpuPostprocess::new(
            model.head,
            PostprocessOptions {
                score_threshold: cfg.model.score_threshold,
                iou_threshold: cfg.model.iou_threshold,
                max_detections: cfg.model.max_detections,
                class_filter,
            },
            p.batch_size,
        )
        .map_err(|e| BuildError::Config(e.to_string()))?,
    );
    let backends = Backends {
        decoder: decoder_name,
        engine: engine.backend().to_string(),
        preprocess: "cpu",
        postprocess: "cpu",
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
    })
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
    )
}
