//! Tensors exchanged between preprocess, engine and postprocess: allocated once by the
//! pipeline's tensor pool, bound once to the engine, then reused for every batch.

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
        }
    }
}

/// Name, element type and shape of a model input or output. `shape[0]` is the batch size the
/// buffer was allocated for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn bytes(&self) -> usize {
        self.elements() * self.dtype.size()
    }
    /// Elements of one batch item.
    pub fn item_elements(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

/// Host tensor storage, 64-byte aligned (backed by `u64`s so typed views are always aligned).
#[derive(Debug)]
pub struct HostBuf {
    words: Box<[u64]>,
    bytes: usize,
}

impl HostBuf {
    pub fn zeroed(bytes: usize) -> Self {
        HostBuf {
            words: vec![0u64; bytes.div_ceil(8)].into_boxed_slice(),
            bytes,
        }
    }
    pub fn len(&self) -> usize {
        self.bytes
    }
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words[..])[..self.bytes]
    }
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        let n = self.bytes;
        &mut bytemuck::cast_slice_mut(&mut self.words[..])[..n]
    }
    pub fn as_f32(&self) -> &[f32] {
        bytemuck::cast_slice(&self.words[..])
            .get(..self.bytes / 4)
            .unwrap_or(&[])
    }
    pub fn as_f32_mut(&mut self) -> &mut [f32] {
        let n = self.bytes / 4;
        &mut bytemuck::cast_slice_mut(&mut self.words[..])[..n]
    }
    pub fn as_f16(&self) -> &[half::f16] {
        &bytemuck::cast_slice(&self.words[..])[..self.bytes / 2]
    }
    pub fn as_f16_mut(&mut self) -> &mut [half::f16] {
        let n = self.bytes / 2;
        &mut bytemuck::cast_slice_mut(&mut self.words[..])[..n]
    }
    /// Address of the first byte, for binding to an engine that keeps it.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast()
    }
}

/// Where a tensor's bytes are.
#[derive(Debug)]
pub enum TensorMem {
    Host(HostBuf),
    /// CUDA device memory owned by the GPU tensor pool (`gpu::DeviceBuffer`); the address and
    /// length are recorded here so engines can bind it.
    Device {
        ptr: u64,
        bytes: usize,
        device: u32,
    },
}

/// A bound tensor: its spec and its storage.
#[derive(Debug)]
pub struct Tensor {
    pub spec: TensorSpec,
    pub mem: TensorMem,
}

impl Tensor {
    pub fn host(spec: TensorSpec) -> Self {
        let bytes = spec.bytes();
        Tensor {
            spec,
            mem: TensorMem::Host(HostBuf::zeroed(bytes)),
        }
    }
    pub fn host_buf(&self) -> Option<&HostBuf> {
        match &self.mem {
            TensorMem::Host(b) => Some(b),
            TensorMem::Device { .. } => None,
        }
    }
    pub fn host_buf_mut(&mut self) -> Option<&mut HostBuf> {
        match &mut self.mem {
            TensorMem::Host(b) => Some(b),
            TensorMem::Device { .. } => None,
        }
    }
}
