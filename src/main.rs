//! `jetwatch`: the command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use jetwatch::alloc_count::CountingAlloc;
use jetwatch::clock::{Clock, SystemClock};
use jetwatch::config::{CameraConfig, Config, Pacing};
use jetwatch::pipeline::{self, Pipeline, PipelineReport};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[derive(Parser)]
#[command(
    name = "jetwatch",
    version,
    about = "Edge video analytics: camera streams -> decode -> detector -> MQTT"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the pipeline described by a config file until the sources end or Ctrl-C.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Stop after this many processed frames.
        #[arg(long)]
        max_frames: Option<u64>,
    },
    /// Built-in demo: real footage and a real model from ../shared, a local broker, and a
    /// subscriber printing what it receives, then a summary.
    Demo {
        /// ONNX model (default: ../shared/models/yolov8n_fp32.onnx.gz).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Clip (default: ../shared/media/TUD-Campus_h264.mp4).
        #[arg(long)]
        clip: Option<PathBuf>,
        /// Use this broker instead of starting one (host:port).
        #[arg(long)]
        broker: Option<String>,
        /// Read the clip as fast as possible instead of at its frame rate.
        #[arg(long)]
        fast: bool,
        /// Publish JSON instead of postcard.
        #[arg(long)]
        json: bool,
        /// Print only the summary, not every message.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Subscribe and print decoded messages as JSON lines.
    Listen {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 1883)]
        port: u16,
        #[arg(long, default_value = "jetwatch/#")]
        topic: String,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Exit after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Which backends this host offers, and why the others are missing.
    Probe {
        #[arg(long)]
        json: bool,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Measure throughput, per-stage times, CPU per frame and allocations per frame.
    Bench {
        /// Clip to read (default: the demo clip).
        #[arg(long)]
        clip: Option<PathBuf>,
        /// ONNX model (default: the demo model).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// `e2e` (decode → detections) or `decode` (decode only).
        #[arg(long, default_value = "e2e")]
        mode: String,
        #[arg(long)]
        json: bool,
    },
    /// Checks this device: the configured pipeline on a test clip against the CPU reference
    /// and the clip's ground truth, zero allocations per frame, throughput, the broker.
    /// Prints a table; exits 1 if a check fails.
    Selftest {
        /// Test this configuration (backends, model, [selftest], broker); default: the
        /// built-in demo setup without a broker.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Test clip (default: [selftest] clip, else ../shared/media/TUD-Campus_h264.mp4).
        #[arg(long)]
        clip: Option<PathBuf>,
        /// Model (default: the config's, else ../shared/models/yolov8n_fp32.onnx.gz).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Frames per second the pipeline must reach (default: [selftest] min_fps).
        #[arg(long)]
        min_fps: Option<f64>,
        /// Also write the report as JSON to this file (`-`: standard output, instead of
        /// the table).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// TensorRT engine tools.
    Engine {
        #[command(subcommand)]
        cmd: EngineCmd,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a config file without starting anything.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum EngineCmd {
    /// Build (or fetch from the cache) a TensorRT engine from an ONNX model: the plan
    /// `jetwatch run` looks up when given the same model, batch and [tensorrt] settings
    /// (`--config` takes them all from a config file).
    Build {
        /// The ONNX model (`.onnx` or `.onnx.gz`); not with --config.
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        model: Option<PathBuf>,
        /// Take the model, batch size, GPU and every [tensorrt] setting from this config.
        #[arg(long, conflicts_with_all = ["dla", "policy", "batch", "cache", "precision", "timing_cache", "workspace_mib", "gpu"])]
        config: Option<PathBuf>,
        /// Use this DLA core.
        #[arg(long)]
        dla: Option<u32>,
        /// DLA placement policy: strict, fallback or gpu (default: fallback with --dla, gpu
        /// without).
        #[arg(long)]
        policy: Option<String>,
        /// Pipeline batch size: a fixed-batch model must have exactly this batch; a
        /// dynamic-batch one gets the profile 1..=batch optimised for batch.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Engine cache directory.
        #[arg(long, default_value = jetwatch::config::DEFAULT_ENGINE_CACHE)]
        cache: PathBuf,
        /// fp16 or fp32.
        #[arg(long, default_value = "fp16")]
        precision: String,
        /// Timing cache file (read if present, written after the build).
        #[arg(long)]
        timing_cache: Option<PathBuf>,
        /// Builder workspace limit in MiB (0: TensorRT's default).
        #[arg(long, default_value_t = 0)]
        workspace_mib: u64,
        /// CUDA device ordinal.
        #[arg(long, default_value_t = 0)]
        gpu: u32,
        /// Rebuild even when a valid cached plan exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the layer placement of a serialized engine.
    Inspect { plan: PathBuf },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run { config, max_frames } => cmd_run(&config, max_frames),
        Cmd::Demo {
            model,
            clip,
            broker,
            fast,
            json,
            quiet,
        } => cmd_demo(model, clip, broker, fast, json, quiet),
        Cmd::Listen {
            host,
            port,
            topic,
            count,
            timeout,
        } => cmd_listen(&host, port, &topic, count, timeout),
        Cmd::Probe { json } => {
            let r = jetwatch::probe::probe();
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print!("{}", r.render());
            }
            Ok(())
        }
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } => match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} camera(s), model {})",
                    file.display(),
                    c.cameras.len(),
                    c.model.path.display()
                );
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!("{e}")),
        },
        Cmd::Bench {
            clip,
            model,
            streams,
            duration,
            batch,
            mode,
            json,
        } => cmd_bench(clip, model, streams, duration, batch, &mode, json),
        Cmd::Engine { cmd } => cmd_engine(cmd),
        Cmd::Selftest {
            config,
            clip,
            model,
            min_fps,
            json,
        } => cmd_selftest(config, clip, model, min_fps, json),
    };
    if let Err(e) = r {
        eprintln!("error: {}", error_text(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, each cause once: our error types often print their source
/// already (`model: <engine error>`), so a cause whose text is already there is skipped.
fn error_text(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

/// Installs Ctrl-C / SIGTERM handling that sets the pipeline's stop flag.
fn stop_on_signal(stop: Arc<std::sync::atomic::AtomicBool>) {
    static STOP: std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>> =
        std::sync::OnceLock::new();
    let _ = STOP.set(stop);
    extern "C" fn on_signal(_: libc::c_int) {
        if let Some(s) = STOP.get() {
            s.store(true, Ordering::SeqCst);
        }
    }
    jetwatch_ffi::os::on_terminate(on_signal);
}

fn cmd_run(path: &Path, max_frames: Option<u64>) -> Result<()> {
    let cfg = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let mut built = pipeline::build::build(&cfg)?;
    built.options.max_frames = max_frames;
    let birth = pipeline::build::birth_message(&cfg, &built);
    let (publisher, handle) = pipeline::build::start_publisher(&cfg, &built, birth, clock.clone())
        .context("starting the MQTT publisher")?;
    log::info!("backends: {:?}", built.backends);
    let p = Pipeline::start(
        built.streams,
        built.stages,
        Box::new(publisher),
        built.options,
        clock,
        None,
    )?;
    stop_on_signal(p.stop_handle());
    let report = p.wait();
    let ps = handle.shutdown(Duration::from_secs(5));
    print_report(&report);
    println!(
        "mqtt: sent {} dropped {} reconnects {}",
        ps.sent, ps.dropped, ps.reconnects
    );
    if let Some(f) = report.fatal {
        bail!("{f}");
    }
    Ok(())
}

fn print_report(r: &PipelineReport) {
    println!(
        "processed {} frames in {:.1} s ({:.1} fps), {} batches, published {} messages",
        r.processed,
        r.elapsed.as_secs_f64(),
        r.fps(),
        r.batches,
        r.published
    );
    println!(
        "latency decode->publish p50 {:.1} ms p99 {:.1} ms; stage p50: preprocess {:.2} ms, engine {:.2} ms, postprocess {:.2} ms",
        r.latency.percentile(0.5) as f64 / 1e6,
        r.latency.percentile(0.99) as f64 / 1e6,
        r.preprocess_time.percentile(0.5) as f64 / 1e6,
        r.engine_time.percentile(0.5) as f64 / 1e6,
        r.postprocess_time.percentile(0.5) as f64 / 1e6,
    );
    println!(
        "cpu {:.2} ms/frame; steady-state Rust allocations per frame: {:.3}",
        r.cpu_ms_per_frame(),
        r.allocs_per_frame()
    );
    for s in &r.streams {
        println!(
            "  {}: {} access units, {} decoded, {} dropped (pool), {} dropped (queue), {} corrupt{}",
            s.name,
            s.access_units,
            s.decoded,
            s.dropped_pool_empty,
            s.dropped_queue_full,
            s.corrupt,
            s.error.as_ref().map(|e| format!(", error: {e}")).unwrap_or_default()
        );
    }
}

fn shared_or_bail() -> Result<PathBuf> {
    jetwatch::assets::shared_dir().context(
        "cannot find the shared assets folder (with models/ and media/): set JETWATCH_SHARED or run from the repository next to ../shared",
    )
}

fn demo_config(
    model: &Path,
    clip: &Path,
    host: &str,
    port: u16,
    fast: bool,
    json: bool,
) -> Result<Config> {
    let text = format!(
        r#"
device_id = "demo"
[broker]
host = {host:?}
port = {port}
[[cameras]]
name = "cam1"
url = {clip:?}
pacing = "{pacing}"
[model]
path = {model:?}
[pipeline]
batch_size = 1
[publish]
format = "{format}"
metrics_interval_s = 0
"#,
        clip = clip.display().to_string(),
        model = model.display().to_string(),
        pacing = if fast { "fast" } else { "realtime" },
        format = if json { "json" } else { "postcard" },
    );
    Config::parse(&text, Path::new("<demo>")).map_err(|e| anyhow::anyhow!("{e}"))
}

fn cmd_demo(
    model: Option<PathBuf>,
    clip: Option<PathBuf>,
    broker: Option<String>,
    fast: bool,
    json: bool,
    quiet: bool,
) -> Result<()> {
    let (model, clip) = match (model, clip) {
        (Some(m), Some(c)) => (m, c),
        (m, c) => {
            let shared = shared_or_bail()?;
            (
                m.unwrap_or_else(|| shared.join(jetwatch::assets::DEMO_MODEL)),
                c.unwrap_or_else(|| shared.join(jetwatch::assets::DEMO_CLIP)),
            )
        }
    };
    for (what, p) in [("model", &model), ("clip", &clip)] {
        if !p.is_file() {
            bail!("{what} {} does not exist", p.display());
        }
    }
    // Broker: the given one, else a local one (mosquitto if installed, else embedded).
    let _local;
    let (host, port) = match broker {
        Some(b) => {
            let (h, p) = b.rsplit_once(':').context("--broker must be host:port")?;
            (h.to_string(), p.parse::<u16>().context("--broker port")?)
        }
        None => {
            let lb = jetwatch::publish::broker::start_local_broker(None)
                .context("starting a local MQTT broker")?;
            eprintln!("broker: {} on 127.0.0.1:{}", lb.kind(), lb.port());
            let port = lb.port();
            _local = lb;
            ("127.0.0.1".to_string(), port)
        }
    };
    let cfg = demo_config(&model, &clip, &host, port, fast, json)?;
    eprintln!("clip: {}\nmodel: {}", clip.display(), model.display());

    // The subscriber, printing what it receives.
    let (sub_host, sub_port) = (host.clone(), port);
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let rc = received.clone();
    let listener = std::thread::Builder::new()
        .name("demo-sub".into())
        .spawn(move || {
            let mut out = CountingWriter {
                inner: std::io::stdout(),
                lines: rc,
                quiet,
            };
            jetwatch::publish::listen::listen(
                &sub_host,
                sub_port,
                "jetwatch/demo/+/detections",
                &mut out,
                jetwatch::publish::listen::ListenOptions {
                    max_messages: None,
                    timeout: Some(Duration::from_secs(600)),
                },
            )
        })?;
    std::thread::sleep(Duration::from_millis(300));

    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let built = pipeline::build::build(&cfg)?;
    let labels = built.labels.clone();
    let birth = pipeline::build::birth_message(&cfg, &built);
    eprintln!(
        "decoder: {}, engine: {}, preprocess: {}, postprocess: {}",
        built.backends.decoder,
        built.backends.engine,
        built.backends.preprocess,
        built.backends.postprocess
    );
    for w in &built.warnings {
        eprintln!("warning (also in the status message): {w}");
    }
    let (publisher, handle) = pipeline::build::start_publisher(&cfg, &built, birth, clock.clone())?;
    let gt = jetwatch::assets::shared_dir()
        .map(|s| s.join(jetwatch::assets::DEMO_GT))
        .filter(|p| {
            clip.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("TUD-Campus"))
                && p.is_file()
        })
        .and_then(|p| jetwatch::eval::GroundTruth::load(&p).ok());
    // The demo's bookkeeping (counts per class, scoring against the ground truth) runs on its
    // own thread: the observer only copies the fixed-size detection list into a pre-allocated
    // channel, so the frame path stays allocation-free in the demo too.
    let (obs_tx, obs_rx) =
        crossbeam_channel::bounded::<(u64, jetwatch::postprocess::DetectionList)>(512);
    let gt2 = gt.clone();
    let stats = std::thread::Builder::new()
        .name("demo-stats".into())
        .spawn(move || {
            let mut per_class = std::collections::BTreeMap::<u16, u64>::new();
            let mut eval = jetwatch::eval::Evaluator::default();
            for (seq, dets) in obs_rx {
                for d in &dets {
                    *per_class.entry(d.class).or_default() += 1;
                }
                if let Some(gt) = &gt2 {
                    eval.add_frame(gt, seq, &dets, 0, 0.5);
                }
            }
            (per_class, eval)
        })?;
    let observer: pipeline::FrameObserver = Box::new(move |meta, dets| {
        let mut list = jetwatch::postprocess::DetectionList::new();
        for d in dets {
            let _ = list.push(*d);
        }
        let _ = obs_tx.try_send((meta.seq, list));
    });
    let p = Pipeline::start(
        built.streams,
        built.stages,
        Box::new(publisher),
        built.options,
        clock,
        Some(observer),
    )?;
    stop_on_signal(p.stop_handle());
    let report = p.wait();
    let ps = handle.shutdown(Duration::from_secs(5));
    // Let the subscriber catch the last messages.
    let t = Instant::now();
    while received.load(Ordering::Relaxed) < ps.sent && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(listener);

    println!("\n== demo summary ==");
    print_report(&report);
    println!(
        "mqtt: {} sent, {} received by the subscriber, {} dropped",
        ps.sent,
        received.load(Ordering::Relaxed),
        ps.dropped
    );
    let (per_class, eval) = stats
        .join()
        .map_err(|_| anyhow::anyhow!("the demo-stats thread panicked"))?;
    {
        let m = &per_class;
        let mut line = String::from("detections by class:");
        for (c, n) in m.iter() {
            let name = labels.get(*c as usize).map(String::as_str).unwrap_or("?");
            line.push_str(&format!(" {name}={n}"));
        }
        println!("{line}");
    }
    if gt.is_some() {
        {
            let e = &eval;
            println!(
                "person vs TUD-Campus ground truth (IoU >= 0.5): recall {:.3}, precision {:.3} ({} of {} boxes)",
                e.score.recall(),
                e.score.precision(),
                e.score.true_positives,
                e.score.ground_truth
            );
        }
    }
    if let Some(f) = report.fatal {
        bail!("{f}");
    }
    Ok(())
}

/// Passes subscriber output through (unless quiet) and counts detection lines.
struct CountingWriter<W: Write> {
    inner: W,
    lines: Arc<std::sync::atomic::AtomicU64>,
    quiet: bool,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.iter().filter(|&&b| b == b'\n').count() as u64;
        self.lines.fetch_add(n, Ordering::Relaxed);
        if self.quiet {
            Ok(buf.len())
        } else {
            self.inner.write(buf)
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn cmd_listen(
    host: &str,
    port: u16,
    topic: &str,
    count: Option<usize>,
    timeout: Option<f64>,
) -> Result<()> {
    let mut out = std::io::stdout();
    let s = jetwatch::publish::listen::listen(
        host,
        port,
        topic,
        &mut out,
        jetwatch::publish::listen::ListenOptions {
            max_messages: count,
            timeout: timeout.map(Duration::from_secs_f64),
        },
    )?;
    eprintln!("{s:?}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn cmd_bench(
    clip: Option<PathBuf>,
    model: Option<PathBuf>,
    streams: usize,
    duration: f64,
    batch: usize,
    mode: &str,
    json: bool,
) -> Result<()> {
    if streams == 0 || streams > 64 {
        bail!("--streams must be 1..=64");
    }
    let need_shared = clip.is_none() || model.is_none();
    let shared = if need_shared {
        Some(shared_or_bail()?)
    } else {
        None
    };
    let clip = clip.unwrap_or_else(|| {
        shared
            .as_ref()
            .map(|s| s.join(jetwatch::assets::DEMO_CLIP))
            .unwrap_or_default()
    });
    let model = model.unwrap_or_else(|| {
        shared
            .as_ref()
            .map(|s| s.join(jetwatch::assets::DEMO_MODEL))
            .unwrap_or_default()
    });
    match mode {
        "e2e" => {}
        "decode" => return bench_decode(&clip, streams, duration, json),
        other => bail!("--mode must be e2e or decode, not {other:?}"),
    }
    let mut cfg = demo_config(&model, &clip, "127.0.0.1", 1883, true, false)?;
    cfg.cameras = (0..streams)
        .map(|i| CameraConfig {
            name: format!("cam{i}"),
            url: clip.display().to_string(),
            looping: true,
            pacing: Pacing::Fast,
            codec: None,
        })
        .collect();
    cfg.pipeline.batch_size = batch;
    // `JETWATCH_DEVICE=cpu|cuda` forces the device (default: auto).
    if let Ok(d) = std::env::var("JETWATCH_DEVICE") {
        cfg.pipeline.device = match d.as_str() {
            "cpu" => jetwatch::config::DeviceChoice::Cpu,
            "cuda" => jetwatch::config::DeviceChoice::Cuda,
            _ => jetwatch::config::DeviceChoice::Auto,
        };
    }
    let gpu_mem = GpuMem::before(cfg.pipeline.gpu);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let built = pipeline::build::build(&cfg)?;
    let backends = built.backends.clone();
    // The outbox without a broker: the bench measures the frame path, not the network.
    let (publisher, handle) =
        pipeline::build::start_publisher(&cfg, &built, String::new(), clock.clone())?;
    let p = Pipeline::start(
        built.streams,
        built.stages,
        Box::new(publisher),
        built.options,
        clock,
        None,
    )?;
    let stop = p.stop_handle();
    stop_on_signal(stop.clone());
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < duration && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (gpu_used_mib, gpu_pipeline_mib) = gpu_mem.now();
    stop.store(true, Ordering::SeqCst);
    let r = p.wait();
    let _ = handle.shutdown(Duration::from_millis(100));
    // Decode time per access unit over every stream.
    let mut decode = r
        .streams
        .first()
        .map(|s| s.decode_time.clone())
        .unwrap_or_default();
    for s in r.streams.iter().skip(1) {
        decode.merge(&s.decode_time);
    }
    if json {
        let v = serde_json::json!({
            "mode": "e2e", "streams": streams, "batch": batch, "clip": clip, "model": model,
            "backends": backends,
            "frames": r.processed, "seconds": r.elapsed.as_secs_f64(), "fps": r.fps(),
            "latency_p50_ms": r.latency.percentile(0.5) as f64 / 1e6, "latency_p99_ms": r.latency.percentile(0.99) as f64 / 1e6,
            "preprocess_p50_ms": r.preprocess_time.percentile(0.5) as f64 / 1e6, "preprocess_p99_ms": r.preprocess_time.percentile(0.99) as f64 / 1e6,
            "engine_p50_ms": r.engine_time.percentile(0.5) as f64 / 1e6, "engine_p99_ms": r.engine_time.percentile(0.99) as f64 / 1e6,
            "postprocess_p50_ms": r.postprocess_time.percentile(0.5) as f64 / 1e6, "postprocess_p99_ms": r.postprocess_time.percentile(0.99) as f64 / 1e6,
            "cpu_ms_per_frame": r.cpu_ms_per_frame(), "allocs_per_frame": r.allocs_per_frame(),
            "dropped": r.streams.iter().map(|s| s.dropped_pool_empty + s.dropped_queue_full).sum::<u64>(),
            "gpu_mem_used_mib": gpu_used_mib, "gpu_mem_pipeline_mib": gpu_pipeline_mib,
            "decode_p50_ms": decode.percentile(0.5) as f64 / 1e6, "decode_p99_ms": decode.percentile(0.99) as f64 / 1e6,
            "batches": r.batches, "engine_errors": r.engine_errors,
            "stream_errors": r.streams.iter().filter_map(|s| s.error.clone()).collect::<Vec<_>>(),
            "fatal": r.fatal,
        });
        println!("{v}");
    } else {
        println!(
            "bench e2e: {streams} stream(s) of {}, batch {batch}, backends {backends:?}",
            clip.display()
        );
        print_report(&r);
        if let Some(u) = gpu_used_mib {
            println!(
                "GPU memory: {u:.0} MiB used on the device, {:.0} MiB by this pipeline",
                gpu_pipeline_mib.unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// Device memory in use (`cuMemGetInfo`: total - free, whole device) before the pipeline is
/// built and while it runs; `None` without CUDA.
struct GpuMem {
    #[cfg(feature = "cuda")]
    ctx: Option<(Arc<jetwatch::gpu::CudaContext>, usize)>,
}

impl GpuMem {
    fn before(_gpu: u32) -> GpuMem {
        #[cfg(feature = "cuda")]
        {
            let ctx = jetwatch::gpu::init()
                .ok()
                .and_then(|_| jetwatch::gpu::CudaContext::new(_gpu).ok())
                .and_then(|c| c.mem_info().ok().map(|(f, t)| (c, t - f)));
            GpuMem { ctx }
        }
        #[cfg(not(feature = "cuda"))]
        GpuMem {}
    }

    /// (used on the device, used since `before`) in MiB.
    fn now(&self) -> (Option<f64>, Option<f64>) {
        #[cfg(feature = "cuda")]
        if let Some((c, base)) = &self.ctx {
            if let Ok((f, t)) = c.mem_info() {
                let used = t - f;
                let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
                return (Some(mib(used)), Some(mib(used.saturating_sub(*base))));
            }
        }
        (None, None)
    }
}

#[cfg(feature = "nvdec")]
fn bench_decode(clip: &Path, streams: usize, duration: f64, json: bool) -> Result<()> {
    let r =
        jetwatch::bench_decode::bench_decode(clip, streams, Duration::from_secs_f64(duration), 0)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{r:#?}");
    }
    Ok(())
}

#[cfg(not(feature = "nvdec"))]
fn bench_decode(_clip: &Path, _streams: usize, _duration: f64, _json: bool) -> Result<()> {
    bail!("decode-only benchmarking measures NVDEC; this build lacks the `nvdec` feature (build with --features cuda13,nvdec)")
}

fn cmd_selftest(
    config: Option<PathBuf>,
    clip: Option<PathBuf>,
    model: Option<PathBuf>,
    min_fps: Option<f64>,
    json: Option<PathBuf>,
) -> Result<()> {
    use jetwatch::selftest::{self, SelftestOptions};
    let shared = jetwatch::assets::shared_dir();
    let check_broker = config.is_some();
    let mut cfg = match &config {
        Some(file) => Config::load(file)?,
        None => {
            let model = match &model {
                Some(m) => m.clone(),
                None => shared_or_bail()?.join(jetwatch::assets::DEMO_MODEL),
            };
            demo_config(
                &model,
                Path::new("clip.mp4"),
                "127.0.0.1",
                1883,
                true,
                false,
            )?
        }
    };
    if let Some(m) = model {
        cfg.model.path = m;
    }
    let clip = match clip.or_else(|| cfg.selftest.clip.clone()) {
        Some(c) => c,
        None => shared_or_bail()?.join(jetwatch::assets::DEMO_CLIP),
    };
    for (what, p) in [("clip", &clip), ("model", &cfg.model.path)] {
        if !p.is_file() {
            bail!("{what} {} does not exist", p.display());
        }
    }
    let ground_truth = cfg.selftest.ground_truth.clone().or_else(|| {
        let tud = clip
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("TUD-Campus"));
        shared
            .map(|s| s.join(jetwatch::assets::DEMO_GT))
            .filter(|p| tud && p.is_file())
    });
    let opts = SelftestOptions {
        min_fps: min_fps.unwrap_or(cfg.selftest.min_fps),
        config: cfg,
        clip,
        ground_truth,
        check_broker,
    };
    let report = selftest::run(&opts, &mut |line| eprintln!("selftest: {line}"));
    match json.as_deref() {
        Some(p) if p == Path::new("-") => println!("{}", serde_json::to_string_pretty(&report)?),
        Some(p) => {
            std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")
                .with_context(|| format!("writing {}", p.display()))?;
            println!("{report}");
        }
        None => println!("{report}"),
    }
    if !report.passed {
        std::process::exit(1);
    }
    Ok(())
}

fn cmd_engine(cmd: EngineCmd) -> Result<()> {
    use jetwatch::config::TensorRtConfig;
    use jetwatch::engine::tensorrt::{check_usable, engine_build, engine_inspect, pipeline_plan};
    // TensorRT first: on a host without it, that is the message that helps.
    check_usable()?;
    match cmd {
        EngineCmd::Build {
            model,
            config,
            dla,
            policy,
            batch,
            cache,
            precision,
            timing_cache,
            workspace_mib,
            gpu,
            force,
        } => {
            let (model, batch, gpu, t) = match config {
                Some(file) => {
                    let cfg = Config::load(&file)?;
                    let p = &cfg.pipeline;
                    (
                        cfg.model.path.clone(),
                        p.batch_size,
                        p.gpu,
                        cfg.tensorrt.clone(),
                    )
                }
                None => {
                    let t = TensorRtConfig {
                        cache_dir: cache,
                        precision: precision
                            .parse()
                            .map_err(|e| anyhow::anyhow!("--precision: {e}"))?,
                        dla_core: dla,
                        dla_policy: policy
                            .map(|p| p.parse())
                            .transpose()
                            .map_err(|e| anyhow::anyhow!("--policy: {e}"))?,
                        timing_cache,
                        workspace_mib,
                    };
                    let model = model.context("give the ONNX model or --config")?;
                    (model, batch, gpu, t)
                }
            };
            if batch == 0 {
                bail!("--batch must be at least 1");
            }
            let mut args = pipeline_plan(&model, batch, gpu, &t)?.args;
            args.force = force;
            let report = engine_build(&args, &mut |line| eprintln!("{line}"))?;
            print!("{report}");
            Ok(())
        }
        EngineCmd::Inspect { plan } => {
            print!("{}", engine_inspect(&plan)?);
            Ok(())
        }
    }
}
