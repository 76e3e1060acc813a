//! `jetwatch probe`: which backends this host offers, and why the others are missing.
//!
//! Every vendor library is looked for with `dlopen` (never linked), so this runs on any
//! Linux host. Each entry says what was found, or which library is missing, which package
//! provides it, and which backend is therefore skipped.

use std::path::PathBuf;

use serde::Serialize;

/// One backend's availability.
#[derive(Debug, Clone, Serialize)]
pub struct BackendStatus {
    /// Stage: "decode", "engine", "gpu", "camera", "broker".
    pub stage: &'static str,
    pub name: &'static str,
    pub available: bool,
    /// What was found (version, device, path) or why it is missing and how to get it.
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub version: &'static str,
    pub arch: &'static str,
    pub features: Vec<&'static str>,
    pub backends: Vec<BackendStatus>,
    pub cameras: Vec<String>,
    /// What `backend = "auto"` would pick.
    pub auto_decoder: &'static str,
    pub auto_engine: &'static str,
}

/// Compiled-in cargo features.
pub fn features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if cfg!(feature = "sw-h264") {
        f.push("sw-h264");
    }
    if cfg!(feature = "ort") {
        f.push("ort");
    }
    if cfg!(feature = "cuda") {
        f.push("cuda");
    }
    if cfg!(feature = "nvdec") {
        f.push("nvdec");
    }
    if cfg!(feature = "jetson") {
        f.push("jetson");
    }
    if cfg!(feature = "tensorrt") {
        f.push("tensorrt");
    }
    f
}

pub use jetwatch_ffi::os::find_library;

fn status(
    stage: &'static str,
    name: &'static str,
    available: bool,
    detail: impl Into<String>,
) -> BackendStatus {
    BackendStatus {
        stage,
        name,
        available,
        detail: detail.into(),
    }
}

/// Probes the host. Extra entries (GPU details, NVDEC caps, TensorRT, cameras) are added by
/// the backends compiled in.
pub fn probe() -> ProbeReport {
    let mut b = Vec::new();

    // GPU driver.
    let cuda = find_library(&["libcuda.so.1", "libcuda.so"]);
    b.push(match &cuda {
        Some(l) => status("gpu", "cuda-driver", true, format!("{l} found")),
        None => status(
            "gpu",
            "cuda-driver",
            false,
            "libcuda.so.1 not found (NVIDIA driver; JetPack on Jetson): GPU preprocess, NVDEC and TensorRT skipped",
        ),
    });

    // Decoders.
    b.push(if cfg!(feature = "sw-h264") {
        status(
            "decode",
            "software-h264",
            true,
            "OpenH264 (compiled in); H.264 only",
        )
    } else {
        status(
            "decode",
            "software-h264",
            false,
            "not compiled in (build with --features sw-h264)",
        )
    });
    let nvcuvid = find_library(&["libnvcuvid.so.1", "libnvcuvid.so"]);
    b.push(match (&nvcuvid, cfg!(feature = "nvdec")) {
        (Some(l), true) => nvdec_status(l),
        (Some(l), false) => status("decode", "nvdec", false, format!("{l} found, but this build lacks the `nvdec` feature")),
        (None, _) => status(
            "decode",
            "nvdec",
            false,
            "libnvcuvid.so.1 not found (NVIDIA driver package, e.g. libnvidia-decode): NVDEC decoder skipped",
        ),
    });
    let nvv4l2 = find_library(&[
        "libnvv4l2.so",
        "/usr/lib/aarch64-linux-gnu/tegra/libnvv4l2.so",
    ]);
    b.push(match (&nvv4l2, cfg!(feature = "jetson")) {
        (Some(l), true) => status("decode", "jetson-v4l2", true, format!("{l} found")),
        (Some(l), false) => status(
            "decode",
            "jetson-v4l2",
            false,
            format!("{l} found, but this build lacks the `jetson` feature"),
        ),
        (None, _) => status(
            "decode",
            "jetson-v4l2",
            false,
            "libnvv4l2.so not found (JetPack's nvidia-l4t-multimedia): Jetson decoder skipped",
        ),
    });

    // Engines.
    // With the feature: the library the shim will open, version-checked against its headers.
    let trt = if cfg!(feature = "tensorrt") {
        crate::engine::tensorrt::prefer_tensorrt()
    } else {
        crate::engine::tensorrt::tensorrt_available()
    };
    b.push(match (&trt, cfg!(feature = "tensorrt")) {
        (Ok(v), true) => status("engine", "tensorrt", true, format!("libnvinfer {v}")),
        (Ok(v), false) => status(
            "engine",
            "tensorrt",
            false,
            format!("libnvinfer {v} found, but this build lacks the `tensorrt` feature"),
        ),
        (Err(e), _) => status(
            "engine",
            "tensorrt",
            false,
            format!("{}: TensorRT engine skipped", e.reason),
        ),
    });
    let ort_entry = onnxruntime_status();
    let ort_ok = ort_entry.available;
    b.push(ort_entry);

    // Broker for the demo.
    let mosq = crate::probe::which("mosquitto");
    b.push(match mosq {
        Some(p) => status("broker", "mosquitto", true, p.display().to_string()),
        None => status(
            "broker",
            "mosquitto",
            false,
            "not installed (apt-get install mosquitto); `demo` uses its embedded broker",
        ),
    });

    let auto_decoder = if nvv4l2.is_some() && cfg!(feature = "jetson") {
        "jetson-v4l2"
    } else if nvcuvid.is_some() && cuda.is_some() && cfg!(feature = "nvdec") {
        "nvdec"
    } else if cfg!(feature = "sw-h264") {
        "software-h264"
    } else {
        "none"
    };
    let auto_engine = if trt.is_ok() && cfg!(feature = "tensorrt") {
        "tensorrt"
    } else if ort_ok {
        "onnxruntime"
    } else {
        "none"
    };
    ProbeReport {
        version: env!("CARGO_PKG_VERSION"),
        arch: std::env::consts::ARCH,
        features: features(),
        backends: b,
        cameras: crate::source::v4l2::list_cameras()
            .iter()
            .map(|c| {
                let formats: Vec<String> = c
                    .formats
                    .iter()
                    .map(|f| {
                        let sizes: Vec<String> = f
                            .sizes
                            .iter()
                            .take(4)
                            .map(|(w, h)| format!("{w}x{h}"))
                            .collect();
                        format!(
                            "{}{} [{}]",
                            f.fourcc,
                            if f.supported.is_some() {
                                ""
                            } else {
                                " (unsupported)"
                            },
                            sizes.join(" ")
                        )
                    })
                    .collect();
                format!(
                    "{} ({}, {}): {}",
                    c.path.display(),
                    c.card,
                    c.driver,
                    formats.join("; ")
                )
            })
            .collect(),
        auto_decoder,
        auto_engine,
    }
}

#[cfg(feature = "nvdec")]
fn nvdec_status(lib: &str) -> BackendStatus {
    match crate::decode::nvdec::nvdec_caps(0) {
        Ok(c) => {
            let codecs: Vec<String> = c
                .codecs
                .iter()
                .filter(|k| k.supported)
                .map(|k| {
                    format!(
                        "{} {}-bit up to {}x{}",
                        k.codec, k.bit_depth, k.max_width, k.max_height
                    )
                })
                .collect();
            status(
                "decode",
                "nvdec",
                true,
                format!(
                    "{} on GPU 0 ({}): {} NVDEC engine(s); {}",
                    lib,
                    c.gpu_name,
                    c.engines,
                    codecs.join(", ")
                ),
            )
        }
        Err(e) => status("decode", "nvdec", false, format!("{lib} found, but {e}")),
    }
}

#[cfg(not(feature = "nvdec"))]
fn nvdec_status(lib: &str) -> BackendStatus {
    status(
        "decode",
        "nvdec",
        false,
        format!("{lib} found, but this build lacks the `nvdec` feature"),
    )
}

#[cfg(feature = "ort")]
fn onnxruntime_status() -> BackendStatus {
    match crate::engine::ort::probe_onnxruntime(None) {
        Ok(p) => status(
            "engine",
            "onnxruntime",
            true,
            format!(
                "{} ({})",
                p.library.display(),
                p.build_info.lines().next().unwrap_or("").trim()
            ),
        ),
        Err(e) => status(
            "engine",
            "onnxruntime",
            false,
            format!("{e}: ONNX Runtime engine skipped"),
        ),
    }
}

#[cfg(not(feature = "ort"))]
fn onnxruntime_status() -> BackendStatus {
    status(
        "engine",
        "onnxruntime",
        false,
        "not compiled in: this build lacks the `ort` feature",
    )
}

/// Finds an executable on PATH (and in /usr/sbin, where Debian puts mosquitto).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file());
    found
}

impl ProbeReport {
    /// Human-readable table.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "jetwatch {} ({}), features: {}",
            self.version,
            self.arch,
            self.features.join(", ")
        );
        for e in &self.backends {
            let _ = writeln!(
                s,
                "  {:<7} {:<18} {:<3} {}",
                e.stage,
                e.name,
                if e.available { "yes" } else { "no" },
                e.detail
            );
        }
        if !self.cameras.is_empty() {
            let _ = writeln!(s, "  cameras:");
            for c in &self.cameras {
                let _ = writeln!(s, "    {c}");
            }
        }
        let _ = writeln!(
            s,
            "  auto: decoder = {}, engine = {}",
            self.auto_decoder, self.auto_engine
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reports_every_stage_and_explains_missing_ones() {
        let r = probe();
        for stage in ["gpu", "decode", "engine", "broker"] {
            assert!(
                r.backends.iter().any(|b| b.stage == stage),
                "no {stage} entry"
            );
        }
        for b in &r.backends {
            assert!(!b.detail.is_empty(), "{} has no detail", b.name);
            if !b.available {
                // Names what is missing: a library, a build feature, or a program to install.
                assert!(
                    b.detail.contains(".so")
                        || b.detail.contains("feature")
                        || b.detail.contains("not installed"),
                    "{}: {}",
                    b.name,
                    b.detail
                );
            }
        }
        assert!(r.render().contains("auto: decoder"));
    }

    #[test]
    fn find_library_reports_missing_libraries() {
        assert_eq!(find_library(&["libjetwatch-does-not-exist.so.7"]), None);
        assert!(find_library(&["libc.so.6"]).is_some());
    }
}
