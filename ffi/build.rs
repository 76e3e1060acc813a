//! Compiles the TensorRT C++ shim (`tensorrt/shim.cpp`) into a static library when the
//! `tensorrt` feature is on. Inputs come only from environment variables:
//!
//! - `TENSORRT_INCLUDE`: directory with `NvInfer.h` and `NvOnnxParser.h` (TensorRT 10.x or
//!   11.x; JetPack: `/usr/include/aarch64-linux-gnu`). Required with the feature.
//! - `CUDA_INCLUDE`: directory with `cuda_runtime_api.h` (NvInfer.h includes it). Optional when
//!   the compiler already finds it (e.g. it lies in `TENSORRT_INCLUDE`); the PyPI wheels
//!   `nvidia-cuda-runtime` + `nvidia-cuda-crt` provide it (`nvidia/cu13/include`).
//!
//! Nothing links against TensorRT: the shim opens libnvinfer with dlopen at run time.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=tensorrt/shim.cpp");
    println!("cargo:rerun-if-changed=tensorrt/shim.h");
    println!("cargo:rerun-if-env-changed=TENSORRT_INCLUDE");
    println!("cargo:rerun-if-env-changed=CUDA_INCLUDE");
    if env::var_os("CARGO_FEATURE_TENSORRT").is_some() {
        build_tensorrt_shim();
    }
}

fn build_tensorrt_shim() {
    let Some(trt) = env::var_os("TENSORRT_INCLUDE").map(PathBuf::from) else {
        fail(
            "the `tensorrt` feature is on but TENSORRT_INCLUDE is not set.\n\
             Point it at the directory holding NvInfer.h and NvOnnxParser.h (TensorRT 10.x or 11.x),\n\
             e.g. TENSORRT_INCLUDE=/usr/include/aarch64-linux-gnu on JetPack 6, or build without\n\
             `--features tensorrt`.",
        );
    };
    for header in ["NvInfer.h", "NvInferVersion.h", "NvOnnxParser.h"] {
        if !trt.join(header).is_file() {
            fail(&format!(
                "TENSORRT_INCLUDE={} has no {header}: it must hold TensorRT's headers \
                 (JetPack: libnvinfer-dev and libnvonnxparsers-dev; or the include/ folder of \
                 github.com/NVIDIA/TensorRT at a 10.x/11.x tag)",
                trt.display()
            ));
        }
    }
    let cuda = env::var_os("CUDA_INCLUDE").map(PathBuf::from);
    if let Some(c) = &cuda {
        if !c.join("cuda_runtime_api.h").is_file() {
            fail(&format!(
                "CUDA_INCLUDE={} has no cuda_runtime_api.h (NvInfer.h includes it): point it at \
                 the CUDA toolkit's include directory, or the `nvidia/cu13/include` folder of the \
                 PyPI wheels nvidia-cuda-runtime and nvidia-cuda-crt",
                c.display()
            ));
        }
    } else if !trt.join("cuda_runtime_api.h").is_file() {
        println!(
            "cargo:warning=CUDA_INCLUDE is not set; relying on the compiler's default include \
             path for cuda_runtime_api.h"
        );
    }

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("tensorrt/shim.cpp")
        .include("tensorrt")
        .warnings(true)
        .extra_warnings(true)
        // -Werror is for tools/trt-compile-check.sh; a newer compiler in a Yocto build must
        // not fail the build on a new warning.
        .warnings_into_errors(false);
    // Vendor headers as system headers: their own deprecation warnings are not ours.
    build
        .flag("-isystem")
        .flag(trt.as_os_str().to_str().unwrap_or_else(|| {
            fail("TENSORRT_INCLUDE is not valid UTF-8");
        }));
    if let Some(c) = &cuda {
        build
            .flag("-isystem")
            .flag(c.as_os_str().to_str().unwrap_or_else(|| {
                fail("CUDA_INCLUDE is not valid UTF-8");
            }));
    }
    build.compile("jetwatch_trt_shim");
    println!("cargo:rustc-link-lib=dylib=dl");
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    println!("cargo:warning={}", msg.replace('\n', " "));
    std::process::exit(1);
}
