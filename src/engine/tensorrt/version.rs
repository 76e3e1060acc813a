//! TensorRT versions and what each supports. Pure logic, compiled without the `tensorrt`
//! feature so it is tested everywhere.
//!
//! Encoding: `getInferLibVersion()` and `NV_TENSORRT_VERSION` are
//! `major * 10000 + minor * 100 + patch` from TensorRT 10 on (NvInferRuntimeBase.h,
//! `NV_TENSORRT_VERSION_INT`); TensorRT 8.x and older used `major * 1000 + minor * 100 + patch`.

use std::fmt;

/// A TensorRT library or header version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrtVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

/// How the requested precision reaches the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionMode {
    /// TensorRT 10: weakly typed network, `BuilderFlag::kFP16` lets the builder pick FP16.
    BuilderFlag,
    /// TensorRT 11: strongly typed network, precision comes from the model's tensor types.
    TensorTypes,
}

impl TrtVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        TrtVersion {
            major,
            minor,
            patch,
        }
    }

    /// Decodes `getInferLibVersion()`. Values of TensorRT 8.x and older (`major*1000+…`) are
    /// decoded with that scheme so an old library is named correctly in errors.
    pub fn from_encoded(v: i32) -> Option<Self> {
        if v <= 0 {
            return None;
        }
        let v = v as u32;
        if v >= 100_000 {
            Some(TrtVersion::new(v / 10_000, (v / 100) % 100, v % 100))
        } else {
            Some(TrtVersion::new(v / 1000, (v / 100) % 10, v % 100))
        }
    }

    pub fn encoded(self) -> i32 {
        (self.major * 10_000 + self.minor * 100 + self.patch) as i32
    }

    /// The shared-library name of this major version.
    pub fn nvinfer_soname(self) -> String {
        format!("libnvinfer.so.{}", self.major)
    }

    pub fn precision_mode(self) -> PrecisionMode {
        if self.major >= 11 {
            PrecisionMode::TensorTypes
        } else {
            PrecisionMode::BuilderFlag
        }
    }

    /// Whether engines may be built for or run on a DLA core with this version. TensorRT 10.x
    /// supports DLA on Jetson AGX Orin / Orin NX; on the 11.x line DLA support returns only
    /// with 11.4.1 (AGX Orin).
    pub fn dla_supported(self) -> Result<(), String> {
        match self.major {
            10 => Ok(()),
            11 if self >= TrtVersion::new(11, 4, 1) => Ok(()),
            11 => Err(format!(
                "TensorRT {self} has no DLA support; DLA needs TensorRT 10.x or 11.4.1+ (AGX Orin)"
            )),
            _ => Err(format!("TensorRT {self} is not supported by jetwatch")),
        }
    }
}

impl fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Majors jetwatch's shim supports.
pub const SUPPORTED_MAJORS: [u32; 2] = [10, 11];

/// Checks that the library found at run time can be driven by a shim compiled against
/// `header`: the same major (vtable layouts differ between majors) and at least the header's
/// minor (minor releases append methods the headers may call). The shim checks the same.
pub fn check_runtime_compat(header: TrtVersion, library: TrtVersion) -> Result<(), String> {
    if !SUPPORTED_MAJORS.contains(&header.major) {
        return Err(format!(
            "jetwatch was built against TensorRT {header} headers; only 10.x and 11.x are supported"
        ));
    }
    if library.major != header.major {
        return Err(format!(
            "libnvinfer is TensorRT {library} but jetwatch was built against TensorRT {header}: \
             install TensorRT {}.x or rebuild jetwatch with TENSORRT_INCLUDE pointing at \
             TensorRT {}.x headers",
            header.major, library.major
        ));
    }
    if (library.major, library.minor) < (header.major, header.minor) {
        return Err(format!(
            "libnvinfer is TensorRT {library}, older than the {header} headers jetwatch was \
             built against: upgrade TensorRT or rebuild against {}.{} headers",
            library.major, library.minor
        ));
    }
    Ok(())
}
