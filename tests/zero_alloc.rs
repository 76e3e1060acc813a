//! The steady-state frame path allocates nothing: the real pipeline (software decode, CPU
//! preprocess, ONNX Runtime, NMS, wire encode, outbox) runs a looping real clip for a few
//! hundred frames while a counting global allocator records every Rust allocation per
//! thread. Decode threads and the inference thread must not allocate after warm-up.
//! (C/C++ allocations inside OpenH264 and ONNX Runtime are not Rust allocations; see
//! docs/perf.md for what valgrind's DHAT says about them.)

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jetwatch::alloc_count::CountingAlloc;
use jetwatch::clock::{Clock, SystemClock};
use jetwatch::config::Config;
use jetwatch::pipeline::{self, Pipeline};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn steady_state_pipeline_makes_zero_allocations_per_frame() {
    let Some(shared) = common::shared() else {
        return;
    };
    let broker = common::Mosquitto::start();
    let text = format!(
        r#"
device_id = "alloc"
[broker]
port = {port}
[[cameras]]
name = "a"
url = "{clip}"
pacing = "fast"
loop = true
[[cameras]]
name = "b"
url = "{clip}"
pacing = "fast"
loop = true
[model]
path = "{model}"
[publish]
metrics_interval_s = 1
"#,
        port = broker.port,
        clip = shared.join("media/TUD-Campus_h264.mp4").display(),
        model = shared.join("models/yolo11n_320_fp32.onnx.gz").display(),
    );
    let cfg = Config::parse(&text, Path::new("alloc.toml")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let mut built = pipeline::build::build(&cfg).unwrap();
    built.options.warmup_frames = 40;
    built.options.max_frames = Some(240);
    let (publisher, handle) = pipeline::build::start_publisher(
        &cfg,
        &built,
        pipeline::build::birth_message(&cfg, &built),
        clock.clone(),
    )
    .unwrap();
    let before = jetwatch::alloc_count::total();
    let p = Pipeline::start(
        built.streams,
        built.stages,
        Box::new(publisher),
        built.options,
        clock,
        None,
    )
    .unwrap();
    let r = p.wait();
    let _ = handle.shutdown(Duration::from_secs(5));
    assert!(
        jetwatch::alloc_count::total() > before,
        "the counting allocator is active"
    );
    assert!(r.fatal.is_none(), "{:?}", r.fatal);
    assert!(
        r.steady_frames_infer >= 150,
        "steady frames {}",
        r.steady_frames_infer
    );
    assert!(r.published > 0);
    // The clip loops (71 frames) twice or more per stream: the loop path is covered too.
    for s in &r.streams {
        assert!(
            s.steady_units >= 60,
            "{}: {} steady access units",
            s.name,
            s.steady_units
        );
        assert_eq!(
            s.steady_allocs, 0,
            "decode thread {} allocated {} times in {} access units",
            s.name, s.steady_allocs, s.steady_units
        );
    }
    assert_eq!(
        r.steady_allocs_infer, 0,
        "inference thread allocated {} times in {} frames",
        r.steady_allocs_infer, r.steady_frames_infer
    );
    assert_eq!(r.allocs_per_frame(), 0.0);
}
