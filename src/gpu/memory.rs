//! Owned device memory, pinned host memory, CUDA arrays and texture objects.
//!
//! Everything here is allocated at start-up (the tensor pool, decoder surfaces, NMS scratch);
//! `Drop` releases it and ignores release errors (it never panics).

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::sys;

use super::{check, CudaContext, CudaStream, GpuError};
use crate::tensor::{Tensor, TensorMem, TensorSpec};

/// Device memory from `cuMemAlloc` (256-byte aligned, CUDA Programming Guide "Device Memory
/// Accesses").
pub struct DeviceBuffer {
    ctx: Arc<CudaContext>,
    ptr: sys::CUdeviceptr,
    bytes: usize,
}

// SAFETY: a device address is a plain number usable from any thread with the context current.
unsafe impl Send for DeviceBuffer {}
// SAFETY: shared references only read the address; device-side access is ordered by streams.
unsafe impl Sync for DeviceBuffer {}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBuffer({:#x}, {} bytes)", self.ptr, self.bytes)
    }
}

impl DeviceBuffer {
    /// Allocates `bytes` (at least 1) of device memory.
    pub fn alloc(ctx: &Arc<CudaContext>, bytes: usize) -> Result<DeviceBuffer, GpuError> {
        ctx.bind()?;
        let mut ptr = 0;
        // SAFETY: context current; freed in Drop.
        check("cuMemAlloc", unsafe {
            sys::cuMemAlloc_v2(&mut ptr, bytes.max(1))
        })?;
        Ok(DeviceBuffer {
            ctx: ctx.clone(),
            ptr,
            bytes,
        })
    }

    /// Allocates a buffer for `spec` and returns it with a [`Tensor`] that names its address.
    /// The tensor does not own the memory: keep the buffer alive as long as the tensor is used.
    pub fn for_tensor(
        ctx: &Arc<CudaContext>,
        spec: TensorSpec,
    ) -> Result<(DeviceBuffer, Tensor), GpuError> {
        let buf = DeviceBuffer::alloc(ctx, spec.bytes())?;
        let t = Tensor {
            mem: buf.tensor_mem(),
            spec,
        };
        Ok((buf, t))
    }

    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    pub fn len(&self) -> usize {
        self.bytes
    }
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub fn tensor_mem(&self) -> TensorMem {
        TensorMem::Device {
            ptr: self.ptr,
            bytes: self.bytes,
            device: self.ctx.ordinal(),
        }
    }

    /// Fills every byte with `value`, queued on `stream`.
    pub fn memset_async(&self, value: u8, stream: &CudaStream) -> Result<(), GpuError> {
        same_ctx(&self.ctx, stream)?;
        // SAFETY: range within this allocation; stream of the same context.
        check("cuMemsetD8Async", unsafe {
            sys::cuMemsetD8Async(self.ptr, value, self.bytes, stream.raw())
        })
    }

    /// Queues a copy of the first `n` bytes of `src` into the start of this buffer.
    pub fn copy_from_device_async(
        &self,
        src: &DeviceBuffer,
        n: usize,
        stream: &CudaStream,
    ) -> Result<(), GpuError> {
        if n > self.bytes || n > src.bytes {
            return Err(GpuError::BadArgument(format!(
                "device copy of {n} bytes between buffers of {} and {} bytes",
                src.bytes, self.bytes
            )));
        }
        same_ctx(&self.ctx, stream)?;
        // SAFETY: both ranges checked; same context; both buffers outlive the call, and the
        // caller keeps them alive until the stream has run the copy.
        check("cuMemcpyDtoDAsync", unsafe {
            sys::cuMemcpyDtoDAsync_v2(self.ptr, src.ptr, n, stream.raw())
        })
    }

    /// Synchronous copy from the host into the start of the buffer.
    pub fn copy_from_host<T: bytemuck::Pod>(&self, src: &[T]) -> Result<(), GpuError> {
        let n = std::mem::size_of_val(src);
        if n > self.bytes {
            return Err(GpuError::BadArgument(format!(
                "copy of {n} bytes into a {}-byte device buffer",
                self.bytes
            )));
        }
        self.ctx.bind()?;
        // SAFETY: source slice valid for n bytes; destination range checked above.
        check("cuMemcpyHtoD", unsafe {
            sys::cuMemcpyHtoD_v2(self.ptr, src.as_ptr().cast(), n)
        })
    }

    /// Synchronous copy of the start of the buffer to the host.
    pub fn copy_to_host<T: bytemuck::Pod>(&self, dst: &mut [T]) -> Result<(), GpuError> {
        let n = std::mem::size_of_val(dst);
        if n > self.bytes {
            return Err(GpuError::BadArgument(format!(
                "copy of {n} bytes out of a {}-byte device buffer",
                self.bytes
            )));
        }
        self.ctx.bind()?;
        // SAFETY: destination slice valid for n bytes; source range checked above.
        check("cuMemcpyDtoH", unsafe {
            sys::cuMemcpyDtoH_v2(dst.as_mut_ptr().cast(), self.ptr, n)
        })
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: allocated by cuMemAlloc in this context and freed once.
            let _ = unsafe { sys::cuMemFree_v2(self.ptr) };
        }
    }
}

pub(crate) fn same_ctx(ctx: &Arc<CudaContext>, stream: &CudaStream) -> Result<(), GpuError> {
    if !Arc::ptr_eq(ctx, stream.context()) {
        return Err(GpuError::BadArgument(
            "buffer and stream belong to different CUDA contexts".into(),
        ));
    }
    ctx.bind()
}

/// Page-locked host memory (`cuMemHostAlloc`): the target of asynchronous device→host copies.
pub struct PinnedBuffer {
    ctx: Arc<CudaContext>,
    ptr: *mut u8,
    bytes: usize,
}

// SAFETY: the allocation is plain host memory owned by this value; access goes through
// `&self`/`&mut self` like a `Box<[u8]>`.
unsafe impl Send for PinnedBuffer {}
// SAFETY: as above.
unsafe impl Sync for PinnedBuffer {}

impl PinnedBuffer {
    /// Allocates `bytes` (at least 1) of zeroed page-locked host memory.
    pub fn alloc(ctx: &Arc<CudaContext>, bytes: usize) -> Result<PinnedBuffer, GpuError> {
        ctx.bind()?;
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: context current; flags 0 (portable pinning not needed); freed in Drop.
        check("cuMemHostAlloc", unsafe {
            sys::cuMemHostAlloc(&mut p, bytes.max(1), 0)
        })?;
        // SAFETY: p points at `bytes.max(1)` writable bytes just allocated.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0, bytes.max(1)) };
        Ok(PinnedBuffer {
            ctx: ctx.clone(),
            ptr: p.cast(),
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: ptr is valid for `bytes` initialised bytes (zeroed at allocation) while self
        // lives; device writes happen only through copies that the owner synchronises before
        // reading.
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_bytes`, with unique access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }

    pub fn len(&self) -> usize {
        self.bytes
    }
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Queues a copy of `src[..n]` (device) into the start of this buffer on `stream`. The
    /// caller synchronises `stream` before reading the bytes.
    pub fn copy_from_device_async(
        &mut self,
        src: &DeviceBuffer,
        n: usize,
        stream: &CudaStream,
    ) -> Result<(), GpuError> {
        if n > self.bytes || n > src.len() {
            return Err(GpuError::BadArgument(format!(
                "copy of {n} bytes from a {}-byte device buffer into a {}-byte pinned buffer",
                src.len(),
                self.bytes
            )));
        }
        same_ctx(&self.ctx, stream)?;
        // SAFETY: both ranges checked; the pinned memory outlives the copy because `&mut self`
        // is held by the owner, which synchronises the stream before releasing or reading it.
        check("cuMemcpyDtoHAsync", unsafe {
            sys::cuMemcpyDtoHAsync_v2(self.ptr.cast(), src.ptr(), n, stream.raw())
        })
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: allocated by cuMemHostAlloc and freed once.
            let _ = unsafe { sys::cuMemFreeHost(self.ptr.cast()) };
        }
    }
}

/// A 2-D CUDA array of 8-bit texels with 1 (luma, R8) or 2 (interleaved CbCr, RG8) channels:
/// the layout of Jetson block-linear NV12 planes once registered through EGL.
pub struct CudaArray2D {
    ctx: Arc<CudaContext>,
    arr: sys::CUarray,
    width: usize,
    height: usize,
    channels: u32,
}

// SAFETY: array handles may be used from any thread with their context current.
unsafe impl Send for CudaArray2D {}
// SAFETY: as above.
unsafe impl Sync for CudaArray2D {}

impl CudaArray2D {
    /// `width × height` texels of `channels` (1 or 2) unsigned bytes.
    pub fn new(
        ctx: &Arc<CudaContext>,
        width: usize,
        height: usize,
        channels: u32,
    ) -> Result<CudaArray2D, GpuError> {
        if !(1..=2).contains(&channels) || width == 0 || height == 0 {
            return Err(GpuError::BadArgument(format!(
                "CUDA array {width}x{height} with {channels} channels (1 or 2 expected)"
            )));
        }
        ctx.bind()?;
        let desc = sys::CUDA_ARRAY_DESCRIPTOR {
            Width: width,
            Height: height,
            Format: sys::CUarray_format::CU_AD_FORMAT_UNSIGNED_INT8,
            NumChannels: channels,
        };
        let mut arr = std::ptr::null_mut();
        // SAFETY: descriptor fully initialised; destroyed in Drop.
        check("cuArrayCreate", unsafe {
            sys::cuArrayCreate_v2(&mut arr, &desc)
        })?;
        Ok(CudaArray2D {
            ctx: ctx.clone(),
            arr,
            width,
            height,
            channels,
        })
    }

    /// Raw handle as stored in [`crate::frame::DeviceArrayNv12`].
    pub fn handle(&self) -> u64 {
        self.arr as u64
    }

    /// Fills the array from host rows of `pitch` bytes (synchronous).
    pub fn copy_from_host(&self, src: &[u8], pitch: usize) -> Result<(), GpuError> {
        let row = self.width * self.channels as usize;
        if pitch < row || src.len() < pitch * (self.height - 1) + row {
            return Err(GpuError::BadArgument(format!(
                "host image of {} bytes with pitch {pitch} does not cover a {}x{}x{} array",
                src.len(),
                self.width,
                self.height,
                self.channels
            )));
        }
        self.ctx.bind()?;
        let c = sys::CUDA_MEMCPY2D {
            srcXInBytes: 0,
            srcY: 0,
            srcMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_HOST,
            srcHost: src.as_ptr().cast(),
            srcDevice: 0,
            srcArray: std::ptr::null_mut(),
            srcPitch: pitch,
            dstXInBytes: 0,
            dstY: 0,
            dstMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_ARRAY,
            dstHost: std::ptr::null_mut(),
            dstDevice: 0,
            dstArray: self.arr,
            dstPitch: 0,
            WidthInBytes: row,
            Height: self.height,
        };
        // SAFETY: source range checked above; destination is this array, fully covered.
        check("cuMemcpy2D", unsafe { sys::cuMemcpy2D_v2(&c) })
    }
}

impl Drop for CudaArray2D {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: created by cuArrayCreate and destroyed once.
            let _ = unsafe { sys::cuArrayDestroy(self.arr) };
        }
    }
}

/// How a texture samples between texels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextureFilter {
    /// Nearest texel, integer reads; the kernel does the bilinear arithmetic in f32 exactly as
    /// docs/preprocess.md says (bit-identical to the pitch-linear path).
    Point,
    /// Hardware bilinear filtering: weights quantised to 8 fractional bits (CUDA Programming
    /// Guide, "Texture Fetching", linear filtering: 9-bit fixed point with 8 fractional bits).
    Linear,
}

/// A texture object over a CUDA array: clamp-to-edge, unnormalised coordinates.
pub struct TextureObject {
    ctx: Arc<CudaContext>,
    tex: sys::CUtexObject,
}

// SAFETY: texture object handles are plain 64-bit values usable from any thread.
unsafe impl Send for TextureObject {}
// SAFETY: as above.
unsafe impl Sync for TextureObject {}

impl TextureObject {
    /// # Safety
    /// `array` must be a live CUarray of `ctx` holding 8-bit unsigned texels, and must outlive
    /// the returned texture object and every kernel that reads it.
    pub unsafe fn over_array(
        ctx: &Arc<CudaContext>,
        array: u64,
        filter: TextureFilter,
    ) -> Result<TextureObject, GpuError> {
        if array == 0 {
            return Err(GpuError::BadArgument("null CUarray".into()));
        }
        ctx.bind()?;
        // SAFETY: all-zero is valid for these plain C descriptor structs.
        let mut res: sys::CUDA_RESOURCE_DESC = unsafe { std::mem::zeroed() };
        res.resType = sys::CUresourcetype::CU_RESOURCE_TYPE_ARRAY;
        res.res.array.hArray = array as sys::CUarray;
        // SAFETY: as above.
        let mut td: sys::CUDA_TEXTURE_DESC = unsafe { std::mem::zeroed() };
        td.addressMode = [sys::CUaddress_mode::CU_TR_ADDRESS_MODE_CLAMP; 3];
        match filter {
            TextureFilter::Point => {
                td.filterMode = sys::CUfilter_mode::CU_TR_FILTER_MODE_POINT;
                td.flags = sys::CU_TRSF_READ_AS_INTEGER;
            }
            TextureFilter::Linear => {
                td.filterMode = sys::CUfilter_mode::CU_TR_FILTER_MODE_LINEAR;
                td.flags = 0;
            }
        }
        let mut tex = 0;
        // SAFETY: descriptors initialised; the caller guarantees the array; destroyed in Drop.
        check("cuTexObjectCreate", unsafe {
            sys::cuTexObjectCreate(&mut tex, &res, &td, std::ptr::null())
        })?;
        Ok(TextureObject {
            ctx: ctx.clone(),
            tex,
        })
    }

    pub fn handle(&self) -> u64 {
        self.tex
    }
}

impl Drop for TextureObject {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: created by cuTexObjectCreate and destroyed once.
            let _ = unsafe { sys::cuTexObjectDestroy(self.tex) };
        }
    }
}
