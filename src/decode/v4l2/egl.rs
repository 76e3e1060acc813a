//! EGLImage → CUDA: how a Jetson capture surface becomes a picture the preprocess kernel reads.
//!
//! Each NvBufSurface capture buffer is mapped once as an EGLImage
//! (`NvBufSurfaceMapEglImage`), registered once with `cuGraphicsEGLRegisterImage`, and
//! described once with `cuGraphicsResourceGetMappedEglFrame` (CUDA Driver API, "EGL
//! Interoperability"). A pitch-linear surface yields a `CUeglFrame` of type
//! `CU_EGL_FRAME_TYPE_PITCH` with plane pointers → [`DeviceNv12`]; a block-linear one yields
//! `CU_EGL_FRAME_TYPE_ARRAY` with one CUarray per plane → [`DeviceArrayNv12`], read through
//! texture objects. The description logic here is pure and unit-tested; the registration
//! calls (feature `jetson`) go through cudarc's loaded libcuda, since cudarc has no EGL API.

use jetwatch_ffi::jetson as nv;

use crate::frame::{DeviceArrayNv12, DeviceNv12, Picture};

/// Why a mapped EGL frame cannot be used as an NV12 picture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EglFrameError {
    #[error("EGL frame has {0} planes; NV12 needs 2")]
    Planes(u32),
    #[error("EGL frame type {0} is neither ARRAY (0) nor PITCH (1)")]
    FrameType(u32),
    #[error("EGL frame plane {0} is null")]
    NullPlane(usize),
    #[error("EGL frame {frame_w}x{frame_h} is smaller than the picture {width}x{height}")]
    TooSmall {
        frame_w: u32,
        frame_h: u32,
        width: u32,
        height: u32,
    },
    #[error("pitch-linear EGL frame pitch {pitch} is narrower than its width {width}")]
    Pitch { pitch: u32, width: u32 },
}

/// Turns a mapped `CUeglFrame` into the picture description the preprocess stage takes.
/// `width`/`height` are the visible size from the V4L2 capture format (the surface may be
/// larger: it is allocated at the coded, aligned size).
pub fn describe_frame(
    f: &nv::CUeglFrame,
    width: u32,
    height: u32,
    device: u32,
) -> Result<Picture, EglFrameError> {
    if f.planeCount != 2 {
        return Err(EglFrameError::Planes(f.planeCount));
    }
    if f.width < width || f.height < height {
        return Err(EglFrameError::TooSmall {
            frame_w: f.width,
            frame_h: f.height,
            width,
            height,
        });
    }
    for (i, p) in f.frame.iter().take(2).enumerate() {
        if p.is_null() {
            return Err(EglFrameError::NullPlane(i));
        }
    }
    match f.frameType {
        nv::CU_EGL_FRAME_TYPE_PITCH => {
            if f.pitch < f.width {
                return Err(EglFrameError::Pitch {
                    pitch: f.pitch,
                    width: f.width,
                });
            }
            Ok(Picture::Device(DeviceNv12 {
                luma: f.frame[0] as u64,
                chroma: f.frame[1] as u64,
                pitch: f.pitch as usize,
                width,
                height,
                device,
            }))
        }
        nv::CU_EGL_FRAME_TYPE_ARRAY => Ok(Picture::DeviceArray(DeviceArrayNv12 {
            luma_array: f.frame[0] as u64,
            chroma_array: f.frame[1] as u64,
            width,
            height,
            device,
        })),
        t => Err(EglFrameError::FrameType(t)),
    }
}

/// One registered capture surface: the CUDA graphics resource of its EGLImage and the picture
/// description taken once at registration (feature `jetson`).
#[cfg(feature = "jetson")]
pub mod register {
    use super::*;
    use libc::c_void;

    /// A `CUgraphicsResource` for one EGLImage; unregistered on drop.
    pub struct EglRegistration {
        resource: *mut c_void,
        unregister: nv::cuGraphicsUnregisterResource_fn,
        pub picture: Picture,
    }

    // SAFETY: the resource handle is only used from the owning decoder thread; CUDA graphics
    // resources may be unregistered from any thread with the context current.
    unsafe impl Send for EglRegistration {}

    impl EglRegistration {
        /// Registers `egl_image` (from `NvBufSurfaceMapEglImage`) read-only with CUDA and
        /// describes it.
        ///
        /// # Safety
        /// `egl_image` must be a live EGLImageKHR that outlives the registration, and a CUDA
        /// context must be current on this thread.
        pub unsafe fn new(
            egl_image: *mut c_void,
            width: u32,
            height: u32,
            device: u32,
        ) -> Result<Self, String> {
            // SAFETY: cudarc has loaded libcuda (a context is current per the contract).
            let lib = unsafe { cudarc::driver::sys::culib() };
            // SAFETY: the symbols have the CUDA driver API signatures declared in
            // jetwatch_ffi::jetson.
            let (reg, get, unreg) = unsafe {
                let reg: libloading::Symbol<nv::cuGraphicsEGLRegisterImage_fn> = lib
                    .get(b"cuGraphicsEGLRegisterImage\0")
                    .map_err(|e| format!("libcuda: {e}"))?;
                let get: libloading::Symbol<nv::cuGraphicsResourceGetMappedEglFrame_fn> = lib
                    .get(b"cuGraphicsResourceGetMappedEglFrame\0")
                    .map_err(|e| format!("libcuda: {e}"))?;
                let unreg: libloading::Symbol<nv::cuGraphicsUnregisterResource_fn> = lib
                    .get(b"cuGraphicsUnregisterResource\0")
                    .map_err(|e| format!("libcuda: {e}"))?;
                (*reg, *get, *unreg)
            };
            let mut resource = std::ptr::null_mut();
            // SAFETY: out-pointer on the stack; egl_image valid per the contract.
            let r = unsafe {
                reg(
                    &mut resource,
                    egl_image,
                    nv::CU_GRAPHICS_REGISTER_FLAGS_READ_ONLY,
                )
            };
            if r != 0 {
                return Err(format!("cuGraphicsEGLRegisterImage failed: CUresult {r}"));
            }
            // SAFETY: CUeglFrame is plain data; zero is a valid initial value.
            let mut frame: nv::CUeglFrame = unsafe { std::mem::zeroed() };
            // SAFETY: resource was just registered; frame is a live out-parameter.
            let r = unsafe { get(&mut frame, resource, 0, 0) };
            if r != 0 {
                // SAFETY: resource registered above and not used again.
                unsafe { unreg(resource) };
                return Err(format!(
                    "cuGraphicsResourceGetMappedEglFrame failed: CUresult {r}"
                ));
            }
            match describe_frame(&frame, width, height, device) {
                Ok(picture) => Ok(EglRegistration {
                    resource,
                    unregister: unreg,
                    picture,
                }),
                Err(e) => {
                    // SAFETY: as above.
                    unsafe { unreg(resource) };
                    Err(e.to_string())
                }
            }
        }
    }

    impl EglRegistration {
        /// The picture description (a plain copy of the device addresses).
        pub fn picture_copy(&self) -> Picture {
            match &self.picture {
                Picture::Device(d) => Picture::Device(*d),
                Picture::DeviceArray(a) => Picture::DeviceArray(*a),
                Picture::Host(_) => unreachable!("describe_frame never returns host pictures"),
            }
        }
    }

    impl Drop for EglRegistration {
        fn drop(&mut self) {
            // SAFETY: registered in `new`, unregistered exactly once here.
            unsafe { (self.unregister)(self.resource) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::c_void;

    fn frame(frame_type: u32, planes: u32, pitch: u32) -> nv::CUeglFrame {
        nv::CUeglFrame {
            frame: [
                0x7000_0000 as *mut c_void,
                0x7100_0000 as *mut c_void,
                std::ptr::null_mut(),
            ],
            width: 1920,
            height: 1088,
            depth: 1,
            pitch,
            planeCount: planes,
            numChannels: 1,
            frameType: frame_type,
            eglColorFormat: 0,
            cuFormat: 0,
        }
    }

    #[test]
    fn pitch_frame_becomes_device_nv12() {
        let p =
            describe_frame(&frame(nv::CU_EGL_FRAME_TYPE_PITCH, 2, 2048), 1920, 1080, 0).unwrap();
        assert_eq!(
            p.size(),
            (1920, 1080),
            "visible size comes from the V4L2 format, not the aligned surface"
        );
        match p {
            Picture::Device(d) => {
                assert_eq!(d.luma, 0x7000_0000);
                assert_eq!(d.chroma, 0x7100_0000);
                assert_eq!(d.pitch, 2048);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn block_linear_frame_becomes_device_arrays() {
        match describe_frame(&frame(nv::CU_EGL_FRAME_TYPE_ARRAY, 2, 0), 1920, 1080, 1).unwrap() {
            Picture::DeviceArray(a) => {
                assert_eq!(a.luma_array, 0x7000_0000);
                assert_eq!(a.chroma_array, 0x7100_0000);
                assert_eq!(a.device, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unusable_frames_are_rejected() {
        assert_eq!(
            describe_frame(&frame(nv::CU_EGL_FRAME_TYPE_PITCH, 3, 2048), 1920, 1080, 0)
                .unwrap_err(),
            EglFrameError::Planes(3)
        );
        assert_eq!(
            describe_frame(&frame(nv::CU_EGL_FRAME_TYPE_PITCH, 2, 1000), 1920, 1080, 0)
                .unwrap_err(),
            EglFrameError::Pitch {
                pitch: 1000,
                width: 1920
            }
        );
        assert!(matches!(
            describe_frame(&frame(nv::CU_EGL_FRAME_TYPE_ARRAY, 2, 0), 3840, 2160, 0).unwrap_err(),
            EglFrameError::TooSmall { .. }
        ));
        assert_eq!(
            describe_frame(&frame(5, 2, 0), 1920, 1080, 0).unwrap_err(),
            EglFrameError::FrameType(5)
        );
        let mut f = frame(nv::CU_EGL_FRAME_TYPE_ARRAY, 2, 0);
        f.frame[1] = std::ptr::null_mut();
        assert_eq!(
            describe_frame(&f, 1920, 1080, 0).unwrap_err(),
            EglFrameError::NullPlane(1)
        );
    }
}
