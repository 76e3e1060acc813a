//! # jetwatch
//!
//! Edge video-analytics firmware for NVIDIA Jetson and any Linux host with (or without) an
//! NVIDIA GPU: camera streams → hardware decode → GPU preprocess → detector → MQTT.
//!
//! ```text
//!  source/  ->  decode/  ->  preprocess/  ->  engine/  ->  postprocess/  ->  wire, publish/
//!  access       NV12         input tensor     raw          detection         postcard/JSON
//!  units        pictures     batch slot k     outputs      lists             over MQTT
//! ```
//!
//! [`pipeline`] wires the stages with threads, batching, back-pressure and the tensor pool.
//! Every GPU stage has a CPU twin with the same trait: the reference in tests and the
//! fallback on hosts without the hardware. Layers per vendor API: raw declarations in the
//! `jetwatch-ffi` crate (`ffi/`), thin wrappers that own each handle, and the safe stage
//! types above them. Everything the frame path touches is allocated at start-up.

pub mod alloc_count;
pub mod assets;
#[cfg(feature = "nvdec")]
pub mod bench_decode;
pub mod clock;
pub mod config;
pub mod decode;
pub mod engine;
pub mod error;
pub mod eval;
pub mod frame;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod pipeline;
pub mod postprocess;
pub mod preprocess;
pub mod probe;
pub mod publish;
pub mod selftest;
pub mod source;
pub mod tensor;
pub mod wire;
