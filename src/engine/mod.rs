//! Inference engines. An engine is loaded once, allocates (or is given) its input and output
//! tensors once, binds them once, and then runs batch after batch on the same buffers.
//!
//! Implementations: ONNX Runtime ([`ort`], CPU and CUDA execution providers) and native
//! TensorRT (`tensorrt`, through the C ABI shim in `ffi/tensorrt`).

use crate::error::EngineError;
use crate::postprocess::HeadKind;
use crate::preprocess::PreprocessSpec;
use crate::tensor::Tensor;

/// What the loaded model is and needs.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Input geometry and normalisation the preprocessor must produce.
    pub preprocess: PreprocessSpec,
    /// Output layout the postprocessor must decode.
    pub head: HeadKind,
    /// Class names (ONNX metadata `names`, or the labels file).
    pub labels: Vec<String>,
    /// Largest batch the bound buffers hold.
    pub max_batch: usize,
}

pub trait Engine: Send {
    /// Backend name for logs, `probe` and the status topic ("onnxruntime-cpu", "tensorrt").
    fn backend(&self) -> &str;
    fn model(&self) -> &ModelInfo;
    /// The bound input tensor, shape `[max_batch, 3, H, W]`; preprocess writes into it.
    fn input_mut(&mut self) -> &mut Tensor;
    /// Runs the first `batch` items of the input; results land in [`Engine::outputs`].
    /// Allocates nothing in steady state.
    fn run(&mut self, batch: usize) -> Result<(), EngineError>;
    /// The bound outputs, valid after `run` returns.
    fn outputs(&self) -> &[Tensor];
    /// Waits until all device work queued on the engine's stream (including a preprocess
    /// launched there) has finished. The pipeline calls it before giving pictures back to
    /// their decoder when a batch failed part-way, since the GPU may still be reading them.
    /// Host engines have nothing to wait for.
    fn synchronize(&mut self) -> Result<(), EngineError> {
        Ok(())
    }
}

pub mod describe;
pub mod labels;
pub mod onnx;
#[cfg(feature = "ort")]
pub mod ort;
pub mod tensorrt;
