//! CUDA preprocess: the fused kernel of `kernels/preprocess.cu` behind [`Preprocess`].
//!
//! Reads `Picture::Device` (pitch-linear NV12, e.g. an NVDEC surface from
//! `cuvidMapVideoFrame`) or `Picture::DeviceArray` (CUDA arrays, the Jetson block-linear path,
//! read through texture objects) and writes slot `k` of a `TensorMem::Device` input batch. One
//! launch covers up to [`PRE_MAX_SLOTS`] pictures; `run` returns once the work is queued on the
//! pipeline's stream. Nothing is allocated per call: the launch descriptor and the texture
//! object cache are sized at construction.

use std::sync::Arc;

use super::{Letterbox, Preprocess, PreprocessJob, PreprocessSpec};
use crate::error::StageError;
use crate::frame::Picture;
use crate::gpu::launch::{PreprocessLaunch, PRE_MAX_SLOTS};
use crate::gpu::{CudaStream, GpuError, Kernels, TextureFilter, TextureObject};
use crate::tensor::{Tensor, TensorMem};

/// Texture objects kept for CUDA arrays (Jetson surface pools are small and fixed).
const TEXTURE_CACHE: usize = 64;

struct CachedTexture {
    array: u64,
    tex: TextureObject,
}

/// The CUDA preprocess stage.
pub struct CudaPreprocess {
    spec: PreprocessSpec,
    stream: Arc<CudaStream>,
    kernels: Arc<Kernels>,
    launch: Box<PreprocessLaunch>,
    filter: TextureFilter,
    textures: Vec<CachedTexture>,
    evict: usize,
}

impl std::fmt::Debug for CudaPreprocess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaPreprocess")
            .field("spec", &self.spec)
            .field("stream", &self.stream)
            .field("filter", &self.filter)
            .finish()
    }
}

fn err(e: GpuError) -> StageError {
    match e {
        GpuError::Unavailable(u) => StageError::Unavailable(u),
        other => StageError::Preprocess(other.to_string()),
    }
}

impl CudaPreprocess {
    /// A preprocess queuing its work on `stream` (the pipeline's). Loads the kernel module of
    /// the stream's context if that has not happened yet.
    pub fn new(stream: Arc<CudaStream>, spec: PreprocessSpec) -> Result<Self, GpuError> {
        if spec.width == 0 || spec.height == 0 {
            return Err(GpuError::BadArgument(format!(
                "model canvas {}x{} is empty",
                spec.width, spec.height
            )));
        }
        let kernels = stream.context().kernels()?;
        Ok(CudaPreprocess {
            spec,
            stream,
            kernels,
            launch: PreprocessLaunch::new(),
            filter: TextureFilter::Point,
            textures: Vec::with_capacity(TEXTURE_CACHE),
            evict: 0,
        })
    }

    /// How `Picture::DeviceArray` planes are sampled: [`TextureFilter::Point`] (default; f32
    /// bilinear in the kernel, identical to the CPU twin) or [`TextureFilter::Linear`]
    /// (hardware bilinear, weights quantised to 1/256, CUDA Programming Guide "Linear
    /// Filtering").
    pub fn set_texture_filter(&mut self, filter: TextureFilter) -> Result<(), GpuError> {
        if filter != self.filter {
            self.invalidate_textures()?;
            self.filter = filter;
        }
        Ok(())
    }

    /// Forgets cached texture objects; call when the CUDA arrays behind `DeviceArray`
    /// pictures are destroyed or recreated (e.g. a decoder reconfiguration).
    pub fn invalidate_textures(&mut self) -> Result<(), GpuError> {
        self.stream.synchronize()?;
        self.textures.clear();
        self.evict = 0;
        Ok(())
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Texture object for `array`, from the cache or created (start-up of each surface).
    fn texture(&mut self, array: u64) -> Result<u64, GpuError> {
        if let Some(t) = self.textures.iter().find(|t| t.array == array) {
            return Ok(t.tex.handle());
        }
        // SAFETY: `array` comes from a `DeviceArrayNv12` whose producer guarantees a live 8-bit
        // CUDA array of this context for as long as the picture is in flight; the contract of
        // `invalidate_textures` covers arrays that are recreated.
        let tex = unsafe { TextureObject::over_array(self.stream.context(), array, self.filter) }?;
        let h = tex.handle();
        if self.textures.len() < TEXTURE_CACHE {
            self.textures.push(CachedTexture { array, tex });
        } else {
            // The evicted object may still be read by queued kernels.
            self.stream.synchronize()?;
            self.textures[self.evict] = CachedTexture { array, tex };
            self.evict = (self.evict + 1) % TEXTURE_CACHE;
        }
        Ok(h)
    }

    fn run_inner(
        &mut self,
        jobs: &[PreprocessJob<'_>],
        input: &mut Tensor,
        letterboxes: &mut [Letterbox],
    ) -> Result<(), GpuError> {
        let s = &input.spec;
        let want = [3usize, self.spec.height as usize, self.spec.width as usize];
        if s.shape.len() != 4 || s.shape[1..] != want || s.dtype != self.spec.dtype {
            return Err(GpuError::BadArgument(format!(
                "input tensor `{}` is {:?} {}, expected [B, 3, {}, {}] {}",
                s.name,
                s.shape,
                s.dtype.name(),
                self.spec.height,
                self.spec.width,
                self.spec.dtype.name()
            )));
        }
        let TensorMem::Device { ptr, bytes, device } = input.mem else {
            return Err(GpuError::BadArgument(format!(
                "the CUDA preprocess writes device tensors; `{}` is in host memory",
                s.name
            )));
        };
        let ordinal = self.stream.context().ordinal();
        if device != ordinal {
            return Err(GpuError::BadArgument(format!(
                "input tensor is on CUDA device {device}, the preprocess stream on {ordinal}"
            )));
        }
        if letterboxes.len() < jobs.len() {
            return Err(GpuError::BadArgument(format!(
                "{} jobs but room for only {} letterboxes",
                jobs.len(),
                letterboxes.len()
            )));
        }
        let batch = s.shape[0];
        self.stream.context().bind()?;
        let sp = self.spec;
        self.launch.begin(
            ptr, bytes, batch, sp.width, sp.height, sp.dtype, sp.order, sp.scale, sp.pad,
        )?;
        for (j, job) in jobs.iter().enumerate() {
            let (w, h) = job.picture.size();
            if w == 0 || h == 0 {
                return Err(GpuError::BadArgument(format!(
                    "picture has an empty size {w}x{h}"
                )));
            }
            let lb = Letterbox::compute(&self.spec, w, h);
            match job.picture {
                Picture::Device(p) => {
                    if p.device != ordinal {
                        return Err(GpuError::BadArgument(format!(
                            "picture is on CUDA device {}, the preprocess stream on {ordinal}",
                            p.device
                        )));
                    }
                    self.launch.push_pitch(job.slot, p, &lb, job.colour)?;
                }
                Picture::DeviceArray(a) => {
                    if a.device != ordinal {
                        return Err(GpuError::BadArgument(format!(
                            "picture is on CUDA device {}, the preprocess stream on {ordinal}",
                            a.device
                        )));
                    }
                    let tl = self.texture(a.luma_array)?;
                    let tc = self.texture(a.chroma_array)?;
                    // SAFETY: both textures are cached by self (alive until evicted, and
                    // eviction synchronises the stream first) over the picture's arrays,
                    // created with self.filter.
                    unsafe {
                        self.launch
                            .push_textures(job.slot, tl, tc, self.filter, &lb, job.colour)?
                    };
                }
                Picture::Host(_) => {
                    return Err(GpuError::BadArgument(
                        "the CUDA preprocess reads device pictures; this one is in host \
                         memory (use the CPU preprocess or upload it first)"
                            .into(),
                    ))
                }
            }
            letterboxes[j] = lb;
            if self.launch.len() == PRE_MAX_SLOTS {
                self.launch.launch(&self.kernels, &self.stream)?;
            }
        }
        self.launch.launch(&self.kernels, &self.stream)
    }
}

impl Preprocess for CudaPreprocess {
    fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    fn run(
        &mut self,
        jobs: &[PreprocessJob<'_>],
        input: &mut Tensor,
        letterboxes: &mut [Letterbox],
    ) -> Result<(), StageError> {
        self.run_inner(jobs, input, letterboxes).map_err(err)
    }
}
