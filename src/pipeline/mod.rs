//! Pipeline wiring: threads, batching, back-pressure, the tensor pool, statistics.
//!
//! ```text
//!  dec-<camera> (one per stream)                 infer (one per GPU / engine)
//!  source.next -> decoder.decode --Frame-->  gather up to B frames or wait T ms
//!        ^                                    preprocess (batch slot k) -> engine.run
//!        +------ picture back (recycle) <---  postprocess -> wire encode -> outbox
//! ```
//!
//! Memory: every buffer is sized at start (access-unit buffer per stream, the decoder's
//! picture pool, the engine's bound input/output tensors, letterboxes, detection lists, the
//! wire encode buffer, the outbox slots). Pictures move through bounded channels and come
//! back; nothing on this path allocates. When a decoder's pool is empty (inference is behind)
//! the decoder drops the newest picture and counts it; decoding never blocks on inference.
//! Each thread records its own allocation count after warm-up, so a test (and
//! `jetwatch bench`) can prove the steady state allocates nothing.

pub mod build;
pub mod change;
pub mod hist;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::clock::Clock;
use crate::config::{Pacing, PublishMode, WireFormat};
use crate::decode::{Decoded, Decoder};
use crate::engine::Engine;
use crate::error::ErrorKind;
use crate::frame::{AccessUnit, Frame, FrameMeta, Picture};
use crate::postprocess::{Detection, DetectionList, Postprocess};
use crate::preprocess::{Letterbox, Preprocess, PreprocessJob};
use crate::publish::{Publisher, TopicId};
use crate::source::{Source, SourceEvent};
use crate::wire;
use change::PublishGate;
use hist::Histogram;

/// Largest batch the pipeline supports (fixed-capacity batch arrays).
pub const MAX_BATCH: usize = 64;

/// One camera's source and decoder.
pub struct StreamParts {
    pub name: String,
    pub source: Box<dyn Source>,
    pub decoder: Box<dyn Decoder>,
    pub pacing: Pacing,
}

/// The inference-side stages (one set per engine thread).
pub struct Stages {
    pub preprocess: Box<dyn Preprocess>,
    pub engine: Box<dyn Engine>,
    pub postprocess: Box<dyn Postprocess>,
}

/// Called on the inference thread for every processed frame (tests, the demo's summary).
pub type FrameObserver = Box<dyn FnMut(&FrameMeta, &[Detection]) + Send>;

/// Options decided at start.
pub struct PipelineOptions {
    pub batch_size: usize,
    pub batch_timeout: Duration,
    /// Pictures each decoder may have in flight (its pool size).
    pub frames_in_flight: usize,
    pub max_access_unit_bytes: usize,
    pub wire_format: WireFormat,
    pub publish_mode: PublishMode,
    pub min_interval: Duration,
    pub metrics_interval: Option<Duration>,
    /// Class names, for JSON messages.
    pub labels: Vec<String>,
    /// Stop after this many processed frames (all streams together).
    pub max_frames: Option<u64>,
    /// Frames (per thread) after which allocation counting starts.
    pub warmup_frames: u64,
    /// Largest wire message, bytes (sizes the encode buffer).
    pub max_message_bytes: usize,
}

/// Live counters readable while the pipeline runs.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub processed: AtomicU64,
    pub published: AtomicU64,
    pub dropped_queue: AtomicU64,
}

/// What one stream did.
#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    pub name: String,
    pub access_units: u64,
    pub decoded: u64,
    pub dropped_pool_empty: u64,
    pub dropped_queue_full: u64,
    pub corrupt: u64,
    pub decode_time: Histogram,
    /// Fatal error that ended the stream early, if any.
    pub error: Option<String>,
    /// Rust allocations on this stream's thread after warm-up, and the access units they
    /// cover.
    pub steady_allocs: u64,
    pub steady_units: u64,
}

/// What the whole run did.
#[derive(Debug, Clone, Default)]
pub struct PipelineReport {
    pub streams: Vec<StreamReport>,
    pub processed: u64,
    pub batches: u64,
    pub published: u64,
    pub publish_rejected: u64,
    pub engine_errors: u64,
    pub elapsed: Duration,
    /// Decode start to message queued, per frame.
    pub latency: Histogram,
    pub preprocess_time: Histogram,
    pub engine_time: Histogram,
    pub postprocess_time: Histogram,
    pub steady_allocs_infer: u64,
    pub steady_frames_infer: u64,
    /// Process CPU time (user + system) over the run.
    pub cpu_time: Duration,
    pub fatal: Option<String>,
}

impl PipelineReport {
    pub fn fps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.processed as f64 / s
        } else {
            0.0
        }
    }
    /// Rust allocations per frame in steady state, over every thread the pipeline owns
    /// (decode threads and the inference thread; the MQTT thread is reported separately).
    pub fn allocs_per_frame(&self) -> f64 {
        let allocs: u64 =
            self.steady_allocs_infer + self.streams.iter().map(|s| s.steady_allocs).sum::<u64>();
        let frames = self.steady_frames_infer.max(1);
        allocs as f64 / frames as f64
    }
    pub fn cpu_ms_per_frame(&self) -> f64 {
        self.cpu_time.as_secs_f64() * 1e3 / self.processed.max(1) as f64
    }
}

/// A running pipeline.
pub struct Pipeline {
    stop: Arc<AtomicBool>,
    live: Arc<LiveStats>,
    decode_threads: Vec<JoinHandle<StreamReport>>,
    infer_thread: Option<JoinHandle<InferReport>>,
    started: Instant,
    cpu_start: Duration,
}

struct InferReport {
    processed: u64,
    batches: u64,
    published: u64,
    publish_rejected: u64,
    engine_errors: u64,
    latency: Histogram,
    pre: Histogram,
    eng: Histogram,
    post: Histogram,
    steady_allocs: u64,
    steady_frames: u64,
    fatal: Option<String>,
}

pub use jetwatch_ffi::os::process_cpu_time;

impl Pipeline {
    /// Starts the decode threads and the inference thread.
    pub fn start(
        streams: Vec<StreamParts>,
        stages: Stages,
        publisher: Box<dyn Publisher>,
        opts: PipelineOptions,
        clock: Arc<dyn Clock>,
        observer: Option<FrameObserver>,
    ) -> std::io::Result<Pipeline> {
        assert!(
            (1..=MAX_BATCH).contains(&opts.batch_size),
            "batch size is validated by the config"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(LiveStats::default());
        let n = streams.len();
        let (frame_tx, frame_rx) = bounded::<Frame>(n * opts.frames_in_flight + MAX_BATCH);
        let mut back_txs = Vec::with_capacity(n);
        let mut decode_threads = Vec::with_capacity(n);
        let cpu_start = process_cpu_time();
        for (i, parts) in streams.into_iter().enumerate() {
            let (back_tx, back_rx) = bounded::<(Picture, u32)>(opts.frames_in_flight + MAX_BATCH);
            back_txs.push(back_tx);
            let ctx = DecodeCtx {
                index: i as u16,
                tx: frame_tx.clone(),
                back: back_rx,
                stop: stop.clone(),
                live: live.clone(),
                clock: clock.clone(),
                max_au: opts.max_access_unit_bytes,
                warmup: opts.warmup_frames,
                in_flight: opts.frames_in_flight,
            };
            let name = format!("dec-{}", parts.name);
            decode_threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || decode_loop(parts, ctx))?,
            );
        }
        drop(frame_tx);
        let infer = InferCtx {
            rx: frame_rx,
            back: back_txs,
            stop: stop.clone(),
            live: live.clone(),
            clock,
            opts,
            observer,
            streams: n,
        };
        let infer_thread = std::thread::Builder::new()
            .name("infer-0".into())
            .spawn(move || infer_loop(stages, publisher, infer))?;
        Ok(Pipeline {
            stop,
            live,
            decode_threads,
            infer_thread: Some(infer_thread),
            started: Instant::now(),
            cpu_start,
        })
    }

    /// Asks every thread to stop; `wait` then returns once they have.
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn live(&self) -> &LiveStats {
        &self.live
    }

    /// Waits for the pipeline to finish (sources ended, `max_frames` reached, or stopped).
    pub fn wait(mut self) -> PipelineReport {
        let mut report = PipelineReport::default();
        for t in self.decode_threads.drain(..) {
            match t.join() {
                Ok(s) => report.streams.push(s),
                Err(_) => report.fatal = Some("a decode thread panicked".into()),
            }
        }
        if let Some(t) = self.infer_thread.take() {
            match t.join() {
                Ok(r) => {
                    report.processed = r.processed;
                    report.batches = r.batches;
                    report.published = r.published;
                    report.publish_rejected = r.publish_rejected;
                    report.engine_errors = r.engine_errors;
                    report.latency = r.latency;
                    report.preprocess_time = r.pre;
                    report.engine_time = r.eng;
                    report.postprocess_time = r.post;
                    report.steady_allocs_infer = r.steady_allocs;
                    report.steady_frames_infer = r.steady_frames;
                    if report.fatal.is_none() {
                        report.fatal = r.fatal;
                    }
                }
                Err(_) => report.fatal = Some("the inference thread panicked".into()),
            }
        }
        report.elapsed = self.started.elapsed();
        report.cpu_time = process_cpu_time().saturating_sub(self.cpu_start);
        report
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct DecodeCtx {
    index: u16,
    tx: Sender<Frame>,
    back: Receiver<(Picture, u32)>,
    stop: Arc<AtomicBool>,
    live: Arc<LiveStats>,
    clock: Arc<dyn Clock>,
    max_au: usize,
    warmup: u64,
    /// Pictures this stream may have downstream (its decoder's pool size).
    in_flight: usize,
}

/// Paces a file source at the stream's own rate: access unit with PTS `p` is released at
/// `t0 + (p − p0)`; after a stall of more than a second the anchor is reset.
struct Pacer {
    anchor: Option<(u64, i64)>,
}

impl Pacer {
    fn wait(&mut self, clock: &dyn Clock, pts_us: i64, stop: &AtomicBool) {
        let now = clock.now_ns();
        let (t0, p0) = *self.anchor.get_or_insert((now, pts_us));
        let due = t0 as i128 + (pts_us - p0) as i128 * 1000;
        let late = now as i128 - due;
        if late > 1_000_000_000 || pts_us < p0 {
            self.anchor = Some((now, pts_us));
            return;
        }
        let mut remaining = due - now as i128;
        while remaining > 0 && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_nanos(remaining.min(50_000_000) as u64));
            remaining = due - clock.now_ns() as i128;
        }
    }
}

/// What a decode thread tracks about the pictures it sent downstream.
struct Downstream {
    /// Sequence number of the next decoded picture.
    seq: u64,
    /// Pictures at the inference thread, not yet given back.
    outstanding: usize,
    /// Pictures the channel refused during one decoder call; recycled right after it (the
    /// decoder is borrowed while it calls the sink).
    refused: heapless::Vec<(Picture, u32), 32>,
}

impl Downstream {
    /// Sends one decoded picture to the inference thread without waiting; if the channel is
    /// full the picture is kept for `recycle_refused` and the drop is counted.
    fn emit(
        &mut self,
        ctx: &DecodeCtx,
        report: &mut StreamReport,
        d: Decoded,
        au_start_ns: u64,
        capture_ns: u64,
    ) {
        let meta = FrameMeta {
            stream: ctx.index,
            seq: self.seq,
            pts_us: d.pts_us,
            capture_unix_ns: capture_ns,
            decode_start_ns: au_start_ns,
            colour: d.colour,
            token: d.token,
        };
        self.seq += 1;
        report.decoded += 1;
        match ctx.tx.try_send(Frame {
            meta,
            picture: d.picture,
        }) {
            Ok(()) => self.outstanding += 1,
            Err(TrySendError::Full(f)) | Err(TrySendError::Disconnected(f)) => {
                report.dropped_queue_full += 1;
                ctx.live.dropped_queue.fetch_add(1, Ordering::Relaxed);
                if let Err((pic, tok)) = self.refused.push((f.picture, f.meta.token)) {
                    // More refusals in one call than the scratch holds: the picture is
                    // released by dropping it (host memory is freed; device pictures are
                    // plain descriptors the decoder still owns).
                    drop((pic, tok));
                }
            }
        }
    }

    /// Gives the pictures the channel refused back to their decoder.
    fn recycle_refused(&mut self, decoder: &mut dyn Decoder) {
        for (p, t) in self.refused.drain(..) {
            decoder.recycle(p, t);
        }
    }
}

fn decode_loop(mut parts: StreamParts, ctx: DecodeCtx) -> StreamReport {
    let mut report = StreamReport {
        name: parts.name.clone(),
        ..Default::default()
    };
    let mut au = AccessUnit::with_capacity(ctx.max_au);
    let mut pacer = Pacer { anchor: None };
    let mut down = Downstream {
        seq: 0,
        outstanding: 0,
        refused: heapless::Vec::new(),
    };
    let mut alloc_mark: Option<u64> = None;

    loop {
        while let Ok((pic, tok)) = ctx.back.try_recv() {
            parts.decoder.recycle(pic, tok);
            down.outstanding = down.outstanding.saturating_sub(1);
        }
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let ev = match parts.source.next(&mut au) {
            Ok(ev) => ev,
            Err(e) => {
                log::error!("camera {}: {e}", parts.name);
                report.error = Some(e.to_string());
                break;
            }
        };
        let capture_ns = ctx.clock.unix_ns();
        let t0 = ctx.clock.now_ns();
        if ev == SourceEvent::End {
            break;
        }
        if ev == SourceEvent::Looped {
            let r = parts
                .decoder
                .flush(&mut |d| down.emit(&ctx, &mut report, d, t0, capture_ns));
            if let Err(e) = r {
                log::warn!("camera {}: flush before loop: {e}", parts.name);
            }
            down.recycle_refused(parts.decoder.as_mut());
        }
        match parts.pacing {
            Pacing::Realtime => pacer.wait(ctx.clock.as_ref(), au.pts_us, &ctx.stop),
            // A file read as fast as the pipeline takes it gets back-pressure instead of
            // drops: wait for a picture to come back before decoding into a full pool.
            // (Live sources never wait: their newest picture is dropped and counted.)
            Pacing::Fast => {
                while down.outstanding >= ctx.in_flight && !ctx.stop.load(Ordering::Relaxed) {
                    if let Ok((pic, tok)) = ctx.back.recv_timeout(Duration::from_millis(100)) {
                        parts.decoder.recycle(pic, tok);
                        down.outstanding -= 1;
                    }
                }
            }
        }
        report.access_units += 1;
        let t0 = ctx.clock.now_ns();
        let r = parts.decoder.decode(&au, &mut |d| {
            down.emit(&ctx, &mut report, d, t0, capture_ns)
        });
        report
            .decode_time
            .record(ctx.clock.now_ns().saturating_sub(t0));
        down.recycle_refused(parts.decoder.as_mut());
        if let Err(e) = r {
            match e.kind() {
                ErrorKind::DataLoss => {
                    log::debug!("camera {}: {e}", parts.name);
                }
                _ => {
                    log::error!("camera {}: {e}", parts.name);
                    report.error = Some(e.to_string());
                    break;
                }
            }
        }
        if report.access_units == ctx.warmup {
            alloc_mark = Some(crate::alloc_count::this_thread());
        }
        if let Some(m) = alloc_mark {
            report.steady_allocs = crate::alloc_count::this_thread() - m;
            report.steady_units = report.access_units - ctx.warmup;
        }
    }
    if !ctx.stop.load(Ordering::Relaxed) {
        let t0 = ctx.clock.now_ns();
        let capture_ns = ctx.clock.unix_ns();
        let _ = parts
            .decoder
            .flush(&mut |d| down.emit(&ctx, &mut report, d, t0, capture_ns));
        down.recycle_refused(parts.decoder.as_mut());
    }
    // Take back every picture still downstream before the decoder (which owns them) goes.
    drop(ctx.tx);
    let deadline = Instant::now() + Duration::from_secs(5);
    while down.outstanding > 0 {
        match ctx.back.recv_deadline(deadline) {
            Ok((pic, tok)) => {
                parts.decoder.recycle(pic, tok);
                down.outstanding -= 1;
            }
            Err(_) => break,
        }
    }
    let ds = parts.decoder.stats();
    report.dropped_pool_empty = ds.dropped_pool_empty;
    report.corrupt = ds.corrupt;
    report
}

struct InferCtx {
    rx: Receiver<Frame>,
    back: Vec<Sender<(Picture, u32)>>,
    stop: Arc<AtomicBool>,
    live: Arc<LiveStats>,
    clock: Arc<dyn Clock>,
    opts: PipelineOptions,
    observer: Option<FrameObserver>,
    streams: usize,
}

fn infer_loop(
    mut stages: Stages,
    mut publisher: Box<dyn Publisher>,
    mut ctx: InferCtx,
) -> InferReport {
    let b = ctx.opts.batch_size;
    let mut batch: heapless::Vec<Frame, MAX_BATCH> = heapless::Vec::new();
    let mut letterboxes = [Letterbox::default(); MAX_BATCH];
    let mut dets: Vec<DetectionList> = (0..b).map(|_| DetectionList::new()).collect();
    let mut gates: Vec<PublishGate> = (0..ctx.streams).map(|_| PublishGate::default()).collect();
    let mut buf = vec![0u8; ctx.opts.max_message_bytes.max(256)];
    let mut metrics_buf = vec![0u8; 4096];
    let mut rep = InferReport {
        processed: 0,
        batches: 0,
        published: 0,
        publish_rejected: 0,
        engine_errors: 0,
        latency: Histogram::default(),
        pre: Histogram::default(),
        eng: Histogram::default(),
        post: Histogram::default(),
        steady_allocs: 0,
        steady_frames: 0,
        fatal: None,
    };
    let mut window = MetricsWindow::new(ctx.clock.now_ns());
    let mut alloc_mark: Option<(u64, u64)> = None;
    let mut consecutive_errors = 0u32;
    let tick = Duration::from_millis(200);

    'outer: loop {
        // Gather: block for the first frame, then fill up to B or until the timeout.
        let first = match ctx.rx.recv_timeout(tick) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => {
                maybe_metrics(
                    &mut ctx,
                    &mut window,
                    &mut *publisher,
                    &mut metrics_buf,
                    &rep,
                );
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let _ = batch.push(first);
        let deadline = Instant::now() + ctx.opts.batch_timeout;
        while batch.len() < b {
            match ctx.rx.recv_deadline(deadline) {
                Ok(f) => {
                    let _ = batch.push(f);
                }
                Err(_) => break,
            }
        }
        let n = batch.len();

        match run_batch(&mut stages, &batch, &mut letterboxes[..n], &mut dets[..n]) {
            Ok((t_pre, t_eng, t_post)) => {
                consecutive_errors = 0;
                rep.pre.record(t_pre);
                rep.eng.record(t_eng);
                rep.post.record(t_post);
                rep.batches += 1;
                for (k, frame) in batch.iter().enumerate() {
                    let list = &dets[k];
                    let m = &frame.meta;
                    if let Some(obs) = ctx.observer.as_mut() {
                        obs(m, list);
                    }
                    let gate = &mut gates[m.stream as usize];
                    let min_ns = ctx.opts.min_interval.as_nanos() as u64;
                    if gate.decide(ctx.opts.publish_mode, min_ns, ctx.clock.now_ns(), list) {
                        let (w, h) = frame.picture.size();
                        let hdr = wire::FrameHeader {
                            stream: m.stream,
                            seq: m.seq,
                            pts_us: m.pts_us,
                            capture_unix_ms: m.capture_unix_ns / 1_000_000,
                            width: w.min(u16::MAX as u32) as u16,
                            height: h.min(u16::MAX as u32) as u16,
                        };
                        match wire::encode(
                            ctx.opts.wire_format,
                            &hdr,
                            list,
                            &ctx.opts.labels,
                            &mut buf,
                        ) {
                            Ok(len) => {
                                if publisher.publish(TopicId::Detections(m.stream), &buf[..len]) {
                                    rep.published += 1;
                                    ctx.live.published.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    rep.publish_rejected += 1;
                                }
                            }
                            Err(e) => {
                                log::warn!("wire encode failed: {e}");
                                rep.publish_rejected += 1;
                            }
                        }
                    }
                    let lat = ctx.clock.now_ns().saturating_sub(m.decode_start_ns);
                    rep.latency.record(lat);
                    window.latency.record(lat);
                }
            }
            Err(e) => {
                rep.engine_errors += 1;
                consecutive_errors += 1;
                log::error!("batch of {n} failed: {e}");
                // Device work queued before the failure may still read the pictures: wait
                // for it before they go back to their decoders (on success, postprocess has
                // already waited for its results).
                if let Err(se) = stages.engine.synchronize() {
                    log::error!("after a failed batch: {se}");
                }
                if consecutive_errors >= 10 {
                    rep.fatal = Some(format!("10 batches in a row failed; last error: {e}"));
                    ctx.stop.store(true, Ordering::SeqCst);
                }
            }
        }
        // Give the pictures back to their decoders.
        for f in batch.drain(..) {
            let s = f.meta.stream as usize;
            let tok = f.meta.token;
            let _ = ctx.back[s].try_send((f.picture, tok));
        }
        rep.processed += n as u64;
        window.frames += n as u64;
        ctx.live.processed.fetch_add(n as u64, Ordering::Relaxed);
        if alloc_mark.is_none() && rep.processed >= ctx.opts.warmup_frames {
            alloc_mark = Some((crate::alloc_count::this_thread(), rep.processed));
        }
        if let Some((a, f)) = alloc_mark {
            rep.steady_allocs = crate::alloc_count::this_thread() - a;
            rep.steady_frames = rep.processed - f;
        }
        maybe_metrics(
            &mut ctx,
            &mut window,
            &mut *publisher,
            &mut metrics_buf,
            &rep,
        );
        if let Some(max) = ctx.opts.max_frames {
            if rep.processed >= max {
                ctx.stop.store(true, Ordering::SeqCst);
            }
        }
        if ctx.stop.load(Ordering::Relaxed) && rep.fatal.is_some() {
            break 'outer;
        }
    }
    // Return anything still queued (after a stop) so decoders can release it.
    while let Ok(f) = ctx.rx.try_recv() {
        let s = f.meta.stream as usize;
        let _ = ctx.back[s].try_send((f.picture, f.meta.token));
    }
    rep
}

/// Preprocess, engine, postprocess for one batch; returns the time each took (ns).
fn run_batch(
    stages: &mut Stages,
    batch: &[Frame],
    letterboxes: &mut [Letterbox],
    dets: &mut [DetectionList],
) -> Result<(u64, u64, u64), String> {
    let mut jobs: heapless::Vec<PreprocessJob<'_>, MAX_BATCH> = heapless::Vec::new();
    for (k, f) in batch.iter().enumerate() {
        let _ = jobs.push(PreprocessJob {
            picture: &f.picture,
            colour: f.meta.colour,
            slot: k,
        });
    }
    let clock = Instant::now();
    stages
        .preprocess
        .run(&jobs, stages.engine.input_mut(), letterboxes)
        .map_err(|e| e.to_string())?;
    let t_eng = clock.elapsed().as_nanos() as u64;
    stages.engine.run(batch.len()).map_err(|e| e.to_string())?;
    let t_post = clock.elapsed().as_nanos() as u64;
    stages
        .postprocess
        .run(stages.engine.outputs(), letterboxes, dets)
        .map_err(|e| e.to_string())?;
    let t_end = clock.elapsed().as_nanos() as u64;
    Ok((t_eng, t_post - t_eng, t_end - t_post))
}

/// Counters over one metrics interval.
struct MetricsWindow {
    start_ns: u64,
    frames: u64,
    latency: Histogram,
    cpu_start: Duration,
    drops_start: u64,
}

impl MetricsWindow {
    fn new(now: u64) -> Self {
        MetricsWindow {
            start_ns: now,
            frames: 0,
            latency: Histogram::default(),
            cpu_start: process_cpu_time(),
            drops_start: 0,
        }
    }
}

#[derive(serde::Serialize)]
struct MetricsMsg {
    v: u8,
    interval_s: f64,
    fps: f64,
    frames: u64,
    processed_total: u64,
    dropped_total: u64,
    dropped_interval: u64,
    published_total: u64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    cpu_percent: f64,
    engine_errors: u64,
}

fn maybe_metrics(
    ctx: &mut InferCtx,
    w: &mut MetricsWindow,
    publisher: &mut dyn Publisher,
    buf: &mut [u8],
    rep: &InferReport,
) {
    let Some(iv) = ctx.opts.metrics_interval else {
        return;
    };
    let now = ctx.clock.now_ns();
    let dt = now.saturating_sub(w.start_ns);
    if dt < iv.as_nanos() as u64 {
        return;
    }
    let secs = dt as f64 / 1e9;
    let cpu = process_cpu_time();
    let drops = ctx.live.dropped_queue.load(Ordering::Relaxed);
    let msg = MetricsMsg {
        v: 1,
        interval_s: secs,
        fps: w.frames as f64 / secs,
        frames: w.frames,
        processed_total: rep.processed,
        dropped_total: drops,
        dropped_interval: drops - w.drops_start,
        published_total: rep.published,
        latency_p50_ms: w.latency.percentile(0.5) as f64 / 1e6,
        latency_p99_ms: w.latency.percentile(0.99) as f64 / 1e6,
        cpu_percent: (cpu.saturating_sub(w.cpu_start)).as_secs_f64() / secs * 100.0,
        engine_errors: rep.engine_errors,
    };
    let len = {
        let mut cursor: &mut [u8] = &mut *buf;
        let cap = cursor.len();
        match serde_json::to_writer(&mut cursor, &msg) {
            Ok(()) => cap - cursor.len(),
            Err(_) => 0,
        }
    };
    if len > 0 {
        publisher.publish(TopicId::Metrics, &buf[..len]);
    }
    w.start_ns = now;
    w.frames = 0;
    w.latency.clear();
    w.cpu_start = cpu;
    w.drops_start = drops;
}
