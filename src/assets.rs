//! Where the test footage and models live: `JETWATCH_SHARED`, or a `shared/` folder beside
//! the repository (`../shared` from the project root), found from the working directory or
//! the executable's location.

use std::path::{Path, PathBuf};

/// The default demo clip (real footage with ground truth) relative to the shared folder.
pub const DEMO_CLIP: &str = "media/TUD-Campus_h264.mp4";
/// The default demo model relative to the shared folder.
pub const DEMO_MODEL: &str = "models/yolov8n_fp32.onnx.gz";
/// Ground truth of the demo clip.
pub const DEMO_GT: &str = "media/gt/TUD-Campus/gt.txt";

/// Finds the shared assets folder (it contains `models/` and `media/`).
pub fn shared_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("JETWATCH_SHARED") {
        let p = PathBuf::from(p);
        return is_shared(&p).then_some(p);
    }
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            starts.push(d.to_path_buf());
        }
    }
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for s in starts {
        for dir in s.ancestors() {
            for cand in [dir.join("shared"), dir.join("../shared")] {
                if is_shared(&cand) {
                    return Some(cand.canonicalize().unwrap_or(cand));
                }
            }
        }
    }
    None
}

fn is_shared(p: &Path) -> bool {
    p.join("models").is_dir() && p.join("media").is_dir()
}
