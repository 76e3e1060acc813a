//! MQTT publisher, embedded broker and `listen` against real brokers and clients: mosquitto
//! and mosquitto_sub/mosquitto_pub on random loopback ports. Every wait is bounded.
//!
//! Skipped (with a message) only where the mosquitto binaries are not installed
//! (`apt-get install mosquitto mosquitto-clients`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jetwatch::alloc_count::{self, CountingAlloc};
use jetwatch::clock::{ManualClock, SystemClock};
use jetwatch::config::{BrokerConfig, WireFormat};
use jetwatch::postprocess::Detection;
use jetwatch::publish::broker::{
    find_mosquitto, start_embedded_broker, start_mosquitto, start_mosquitto_with,
};
use jetwatch::publish::{
    listen, start, ListenOptions, LocalBroker, PublishStats, Publisher, PublisherConfig,
    PublisherHandle, TopicId,
};
use jetwatch::wire::{self, FrameHeader};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const T: Duration = Duration::from_secs(10);

fn client_bin(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

/// mosquitto, mosquitto_sub and mosquitto_pub, or None (and a message saying what is missing).
fn tools() -> Option<(PathBuf, PathBuf, PathBuf)> {
    match (
        find_mosquitto(),
        client_bin("mosquitto_sub"),
        client_bin("mosquitto_pub"),
    ) {
        (Some(m), Some(s), Some(p)) => Some((m, s, p)),
        _ => {
            eprintln!(
                "SKIPPED: mosquitto / mosquitto_sub / mosquitto_pub not installed \
                 (apt-get install mosquitto mosquitto-clients)"
            );
            None
        }
    }
}

#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    retained: bool,
    payload: Vec<u8>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// A running mosquitto_sub, its messages on a channel.
struct Sub {
    child: Child,
    rx: Receiver<Msg>,
    /// Messages that arrived while waiting for the probe (retained ones, typically).
    early: std::cell::RefCell<std::collections::VecDeque<Msg>>,
}

impl Sub {
    /// Subscribes to `filter` and returns once the subscription provably works (a probe
    /// message published with mosquitto_pub came back).
    fn start(port: u16, filter: &str, extra: &[&str]) -> Sub {
        let (_, sub, _) = tools().unwrap();
        let mut child = Command::new(sub)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
            .args(["-t", filter, "-t", "probe/#", "-F", "%t %r %x"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let mut it = line.splitn(3, ' ');
                let (Some(t), Some(r), h) = (it.next(), it.next(), it.next()) else {
                    continue;
                };
                let m = Msg {
                    topic: t.to_string(),
                    retained: r == "1",
                    payload: unhex(h.unwrap_or("")),
                };
                if tx.send(m).is_err() {
                    break;
                }
            }
        });
        let s = Sub {
            child,
            rx,
            early: Default::default(),
        };
        let deadline = Instant::now() + T;
        'ready: loop {
            assert!(Instant::now() < deadline, "subscriber never became ready");
            mosquitto_pub(port, "probe/x", b"probe", false);
            let wait = Instant::now() + Duration::from_millis(200);
            while let Ok(m) =
                s.rx.recv_timeout(wait.saturating_duration_since(Instant::now()))
            {
                if m.topic == "probe/x" {
                    break 'ready;
                }
                s.early.borrow_mut().push_back(m);
            }
        }
        s
    }

    /// Next message (not a probe) within `timeout`.
    fn next(&self, timeout: Duration) -> Option<Msg> {
        if let Some(m) = self.early.borrow_mut().pop_front() {
            return Some(m);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) if m.topic.starts_with("probe/") => continue,
                Ok(m) => return Some(m),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None
                }
            }
        }
    }

    fn expect(&self, topic: &str) -> Msg {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .next(left)
                .unwrap_or_else(|| panic!("no message on {topic} within {T:?}"));
            if m.topic == topic {
                return m;
            }
            eprintln!(
                "expect({topic}): skipping {} ({} bytes)",
                m.topic,
                m.payload.len()
            );
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto_pub(port: u16, topic: &str, payload: &[u8], retain: bool) {
    let (_, _, publ) = tools().unwrap();
    let mut c = Command::new(publ);
    c.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", topic, "-m"])
        .arg(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(payload));
    if retain {
        c.arg("-r");
    }
    let st = c.stderr(Stdio::null()).status().unwrap();
    assert!(st.success(), "mosquitto_pub failed");
}

fn broker_cfg(port: u16, outbox: usize) -> BrokerConfig {
    BrokerConfig {
        host: "127.0.0.1".into(),
        port,
        outbox_messages: outbox,
        reconnect_min_ms: 50,
        reconnect_max_ms: 200,
        ..BrokerConfig::default()
    }
}

fn pub_cfg(broker: BrokerConfig, device: &str) -> PublisherConfig {
    PublisherConfig {
        broker,
        device_id: device.into(),
        cameras: vec!["cam0".into(), "cam1".into()],
        slot_bytes: 4096,
        inflight: 16,
        connect_timeout: Duration::from_secs(2),
    }
}

const BIRTH: &str =
    r#"{"state":"online","version":"test","streams":["cam0","cam1"],"backends":{}}"#;

fn frame(seq: u64, buf: &mut [u8]) -> usize {
    let hdr = FrameHeader {
        stream: 0,
        seq,
        pts_us: seq as i64 * 40_000,
        capture_unix_ms: 1_763_900_000_000 + seq * 40,
        width: 1280,
        height: 720,
    };
    let dets = [Detection {
        class: 0,
        score: 0.9,
        x0: 10.0 + seq as f32 % 100.0,
        y0: 20.0,
        x1: 200.0,
        y1: 400.0,
        track: seq as u32,
    }];
    wire::encode(WireFormat::Postcard, &hdr, &dets, &[], buf).unwrap()
}

fn wait_stats(h: &PublisherHandle, what: &str, f: impl Fn(&PublishStats) -> bool) {
    let deadline = Instant::now() + T;
    while !f(&h.stats()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            h.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn seq_of(m: &Msg) -> u64 {
    wire::decode(&m.payload).expect("decodes").header.seq
}

fn mosquitto(port: Option<u16>) -> LocalBroker {
    start_mosquitto(&find_mosquitto().unwrap(), port).expect("mosquitto starts")
}

#[test]
fn birth_and_last_will_are_retained_status() {
    let Some(_) = tools() else { return };
    let broker = mosquitto(None);
    let port = broker.port();
    let sub = Sub::start(port, "jetwatch/#", &[]);
    let (_p, h) = start(
        pub_cfg(broker_cfg(port, 64), "dev-lwt"),
        BIRTH.into(),
        Arc::new(SystemClock::default()),
    )
    .unwrap();
    let m = sub.expect("jetwatch/dev-lwt/status");
    assert_eq!(m.payload, BIRTH.as_bytes());
    wait_stats(&h, "connected", |s| s.connected);

    // A late subscriber gets the birth as a retained message.
    let late = Sub::start(port, "jetwatch/dev-lwt/status", &[]);
    let m = late.expect("jetwatch/dev-lwt/status");
    assert!(m.retained);
    assert_eq!(m.payload, BIRTH.as_bytes());

    // Dropping the handle without shutdown closes the socket abruptly: the broker publishes
    // the Last Will, retained.
    drop(h);
    let m = sub.expect("jetwatch/dev-lwt/status");
    assert_eq!(m.payload, br#"{"state":"offline"}"#);
    let late = Sub::start(port, "jetwatch/dev-lwt/status", &[]);
    let m = late.expect("jetwatch/dev-lwt/status");
    assert!(m.retained);
    assert_eq!(m.payload, br#"{"state":"offline"}"#);
}

#[test]
fn qos1_messages_arrive_in_order_and_shutdown_says_offline() {
    let Some(_) = tools() else { return };
    // The subscriber (mosquitto_sub through a pipe) can fall more than mosquitto's default
    // 1000 queued messages behind the 5000-message burst on a loaded 2-core machine, and
    // mosquitto then drops for that client: let it queue them all, since this test checks
    // our publisher's order, not the subscriber's speed.
    let broker = start_mosquitto_with(
        &find_mosquitto().unwrap(),
        None,
        "max_queued_messages 20000",
    )
    .expect("mosquitto starts");
    let port = broker.port();
    let sub = Sub::start(port, "jetwatch/#", &[]);
    let (mut p, h) = start(
        pub_cfg(broker_cfg(port, 10_000), "dev-order"),
        BIRTH.into(),
        Arc::new(SystemClock::default()),
    )
    .unwrap();
    sub.expect("jetwatch/dev-order/status");
    let mut buf = [0u8; 256];
    for seq in 0..500 {
        let n = frame(seq, &mut buf);
        assert!(p.publish(TopicId::Detections(1), &buf[..n]));
    }
    assert!(p.publish(TopicId::Metrics, br#"{"fps":25.0}"#));
    for seq in 0..500 {
        let m = sub.expect("jetwatch/dev-order/cam1/detections");
        assert_eq!(seq_of(&m), seq);
        assert!(!m.retained);
    }
    assert_eq!(
        sub.expect("jetwatch/dev-order/metrics").payload,
        br#"{"fps":25.0}"#
    );
    // Throughput with QoS 1 (reported, not asserted: the machine is shared).
    let t0 = Instant::now();
    for seq in 500..5500 {
        let n = frame(seq, &mut buf);
        p.publish(TopicId::Detections(1), &buf[..n]);
    }
    wait_stats(&h, "5000 more acked", |s| s.sent == 5501);
    eprintln!(
        "QoS 1 to mosquitto: 5000 messages acked in {:?} ({:.0}/s)",
        t0.elapsed(),
        5000.0 / t0.elapsed().as_secs_f64()
    );
    for seq in 500..5500 {
        assert_eq!(
            seq_of(&sub.expect("jetwatch/dev-order/cam1/detections")),
            seq
        );
    }
    let stats = h.shutdown(Duration::from_secs(5));
    assert_eq!(stats.sent, 5501);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.reconnects, 0);
    let m = sub.expect("jetwatch/dev-order/status");
    assert_eq!(m.payload, br#"{"state":"offline"}"#);
}

#[test]
fn broker_restart_keeps_queued_messages_and_counts_overflow_exactly() {
    let Some(_) = tools() else { return };
    let broker = mosquitto(None);
    let port = broker.port();
    // Simulated time: the publisher cannot reconnect until the test moves the clock.
    let clock = ManualClock::new(1_000_000_000);
    const CAP: usize = 50;
    let (mut p, h) = start(
        pub_cfg(broker_cfg(port, CAP), "dev-restart"),
        BIRTH.into(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let sub = Sub::start(port, "jetwatch/dev-restart/cam0/detections", &[]);
    let mut buf = [0u8; 256];
    for seq in 0..10 {
        let n = frame(seq, &mut buf);
        p.publish(TopicId::Detections(0), &buf[..n]);
    }
    for seq in 0..10 {
        assert_eq!(
            seq_of(&sub.expect("jetwatch/dev-restart/cam0/detections")),
            seq
        );
    }
    // A status update replaces the birth message for later connections.
    const UPDATED: &[u8] = br#"{"state":"online","streams":["cam0"],"note":"updated"}"#;
    assert!(p.publish(TopicId::Status, UPDATED));
    wait_stats(&h, "11 acked", |s| s.sent == 11);
    drop(sub);

    // Kill the broker (SIGKILL): the publisher notices and waits for its backoff.
    broker.stop();
    wait_stats(&h, "disconnect noticed", |s| !s.connected);
    for seq in 10..90 {
        let n = frame(seq, &mut buf);
        assert!(p.publish(TopicId::Detections(0), &buf[..n]));
    }
    let s = h.stats();
    assert_eq!(s.queued, 91);
    assert_eq!(
        s.dropped,
        80 - CAP as u64,
        "oldest dropped beyond the capacity"
    );

    // Same port, fresh broker; subscribe before letting the publisher reconnect.
    let broker = mosquitto(Some(port));
    let sub = Sub::start(port, "jetwatch/dev-restart/#", &[]);
    clock.advance_ms(60_000);
    assert_eq!(sub.expect("jetwatch/dev-restart/status").payload, UPDATED);
    for seq in (90 - CAP as u64)..90 {
        assert_eq!(
            seq_of(&sub.expect("jetwatch/dev-restart/cam0/detections")),
            seq
        );
    }
    wait_stats(&h, "all acked", |s| s.sent == 11 + CAP as u64);
    let s = h.shutdown(Duration::from_secs(5));
    assert_eq!(s.reconnects, 1);
    assert_eq!(s.dropped, 30);
    // Shutdown: the offline status, then nothing (no duplicates, no extras).
    let m = sub.expect("jetwatch/dev-restart/status");
    assert_eq!(m.payload, br#"{"state":"offline"}"#);
    let extra = sub.next(Duration::from_millis(200));
    assert!(extra.is_none(), "unexpected: {extra:?}");
    drop(broker);
}

#[test]
fn dead_broker_never_blocks_publish_and_allocates_nothing() {
    // Nothing listens on this port (bound, then closed).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    const CAP: usize = 256;
    let (mut p, h) = start(
        pub_cfg(broker_cfg(port, CAP), "dev-dead"),
        BIRTH.into(),
        Arc::new(SystemClock::default()),
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = frame(7, &mut buf);
    let payload = &buf[..n];
    let before = alloc_count::this_thread();
    let t0 = Instant::now();
    for _ in 0..10_000 {
        assert!(p.publish(TopicId::Detections(0), payload));
    }
    let took = t0.elapsed();
    let allocs = alloc_count::this_thread() - before;
    assert_eq!(allocs, 0, "publish allocated on the calling thread");
    assert!(took < Duration::from_secs(1), "10k publishes took {took:?}");
    let s = h.stats();
    assert_eq!(s.queued, 10_000);
    assert_eq!(s.dropped, 10_000 - CAP as u64);
    assert_eq!(s.sent, 0);
    assert!(!s.connected);
    // Oversized messages are refused and counted, not queued.
    assert!(!p.publish(TopicId::Metrics, &vec![0u8; 5000]));
    assert_eq!(h.stats().oversized, 1);
    let t0 = Instant::now();
    let s = h.shutdown(Duration::from_millis(200));
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        t0.elapsed()
    );
    assert_eq!(s.sent, 0);
    eprintln!("10k publishes with the broker down: {took:?}, 0 allocations");
}

#[test]
fn listen_decodes_what_publish_sent() {
    let Some(_) = tools() else { return };
    let broker = mosquitto(None);
    check_listen(&broker, "dev-listen");
}

#[test]
fn embedded_broker_with_our_publisher_and_listen() {
    let broker = start_embedded_broker(None).unwrap();
    assert_eq!(broker.kind(), "embedded");
    check_listen(&broker, "dev-emb");
}

/// listen (in a thread) + publisher: birth, JSON and postcard frames, metrics; then LWT.
fn check_listen(broker: &LocalBroker, dev: &str) {
    let port = broker.port();
    let (tx, rx) = channel();
    let lt = std::thread::spawn(move || {
        let mut out = Vec::new();
        let s = listen(
            "127.0.0.1",
            port,
            "jetwatch/#",
            &mut out,
            ListenOptions {
                max_messages: Some(5),
                timeout: Some(T),
            },
        );
        tx.send(()).ok();
        (s, out)
    });
    // Give listen's SUBSCRIBE a moment to land, bounded: the birth is retained anyway.
    std::thread::sleep(Duration::from_millis(200));
    let labels = vec!["person".to_string(), "bicycle".into()];
    let (mut p, h) = start(
        pub_cfg(broker_cfg(port, 64), dev),
        jetwatch::publish::mqtt::birth_message(
            "test",
            &["cam0".into(), "cam1".into()],
            &serde_json::json!({"decoder": "software"}),
            &labels,
            &["tensorrt: 2 layers run on the GPU".to_string()],
        ),
        Arc::new(SystemClock::default()),
    )
    .unwrap();
    let hdr = FrameHeader {
        stream: 0,
        seq: 42,
        pts_us: 1_680_000,
        capture_unix_ms: 1_763_900_000_000,
        width: 640,
        height: 480,
    };
    let det = Detection {
        class: 1,
        score: 0.75,
        x0: 10.0,
        y0: 20.0,
        x1: 110.0,
        y1: 220.0,
        track: 3,
    };
    let mut buf = [0u8; 1024];
    let n = wire::encode(WireFormat::Json, &hdr, &[det], &labels, &mut buf).unwrap();
    p.publish(TopicId::Detections(0), &buf[..n]);
    let n = wire::encode(WireFormat::Postcard, &hdr, &[det], &labels, &mut buf).unwrap();
    p.publish(TopicId::Detections(1), &buf[..n]);
    p.publish(TopicId::Metrics, br#"{"fps":12.5}"#);
    p.publish(TopicId::Detections(0), &[7, 7, 7]);
    rx.recv_timeout(T + Duration::from_secs(5))
        .expect("listen returns");
    let (summary, out) = lt.join().unwrap();
    let summary = summary.unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0]["topic"], format!("jetwatch/{dev}/status"));
    assert_eq!(lines[0]["json"]["state"], "online");
    assert_eq!(
        lines[0]["json"]["warnings"][0],
        "tensorrt: 2 layers run on the GPU"
    );
    for (i, fmt) in [(1, "json"), (2, "postcard")] {
        let f = &lines[i]["frame"];
        assert_eq!(f["format"], fmt);
        assert_eq!(f["header"]["seq"], 42);
        assert_eq!(f["header"]["pts_us"], 1_680_000);
        assert_eq!(f["detections"][0]["label"], "bicycle", "{fmt}");
        assert_eq!(
            f["detections"][0]["box"],
            serde_json::json!([10, 20, 110, 220])
        );
        assert_eq!(f["detections"][0]["track"], 3);
    }
    assert_eq!(lines[3]["json"]["fps"], 12.5);
    assert!(lines[4]["error"]
        .as_str()
        .unwrap()
        .contains("version 7 is not supported"));
    assert_eq!(summary.messages, 5);
    assert_eq!(summary.frames, 2);
    assert_eq!(summary.errors, 1);
    let s = h.shutdown(Duration::from_secs(5));
    assert_eq!(s.sent, 4);
}

#[test]
fn embedded_broker_serves_mosquitto_clients() {
    let Some(_) = tools() else { return };
    let broker = start_embedded_broker(None).unwrap();
    let port = broker.port();
    // Retained before subscribe; `+` wildcard; QoS 1.
    mosquitto_pub(port, "a/dev1/status", b"retained-1", true);
    let sub = Sub::start(port, "a/+/status", &[]);
    let m = sub.expect("a/dev1/status");
    assert!(m.retained);
    assert_eq!(m.payload, b"retained-1");
    mosquitto_pub(port, "a/dev2/status", b"live", false);
    let m = sub.expect("a/dev2/status");
    assert!(!m.retained);
    assert_eq!(m.payload, b"live");
    // Not matching the filter: not delivered.
    mosquitto_pub(port, "a/dev2/other", b"x", false);
    mosquitto_pub(port, "a/dev3/status", b"after", false);
    assert_eq!(sub.expect("a/dev3/status").payload, b"after");
    // An empty retained payload clears the retained message (§3.3.1.3).
    mosquitto_pub(port, "a/dev1/status", b"", true);
    let late = Sub::start(port, "a/#", &[]);
    assert!(late.next(Duration::from_millis(300)).is_none());

    // Last Will of a client killed with SIGKILL.
    let (_, subbin, _) = tools().unwrap();
    let mut victim = Command::new(subbin)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "victim/ready",
        ])
        .args(["--will-topic", "a/victim/status", "--will-payload", "gone"])
        .args(["--will-retain", "--will-qos", "1", "-i", "victim"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is connected and subscribed (its CONNECT carries the will).
    let vout = victim.stdout.take().unwrap();
    let (vtx, vrx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(vout).lines().map_while(Result::ok) {
            let _ = vtx.send(l);
        }
    });
    let deadline = Instant::now() + T;
    loop {
        assert!(Instant::now() < deadline, "victim never subscribed");
        mosquitto_pub(port, "victim/ready", b"ready", false);
        if vrx.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let m = late.expect("a/victim/status");
    assert_eq!(m.payload, b"gone");
    let late2 = Sub::start(port, "a/victim/#", &[]);
    let m = late2.expect("a/victim/status");
    assert!(m.retained);

    // Our publisher against the embedded broker: birth, messages, LWT on drop.
    let (mut p, h) = start(
        pub_cfg(broker_cfg(port, 1000), "dev-e"),
        BIRTH.into(),
        Arc::new(SystemClock::default()),
    )
    .unwrap();
    let sub = Sub::start(port, "jetwatch/#", &[]);
    assert_eq!(
        sub.expect("jetwatch/dev-e/status").payload,
        BIRTH.as_bytes()
    );
    let mut buf = [0u8; 256];
    for seq in 0..100 {
        let n = frame(seq, &mut buf);
        p.publish(TopicId::Detections(0), &buf[..n]);
    }
    for seq in 0..100 {
        assert_eq!(seq_of(&sub.expect("jetwatch/dev-e/cam0/detections")), seq);
    }
    wait_stats(&h, "acked", |s| s.sent == 100);
    assert_eq!(h.stats().dropped, 0);
    drop(h);
    assert_eq!(
        sub.expect("jetwatch/dev-e/status").payload,
        br#"{"state":"offline"}"#
    );
    drop(broker);
    // Stopped: the port no longer accepts connections.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// Makes a CA and a server certificate for 127.0.0.1 with the openssl CLI.
/// The server key is made world-readable: mosquitto started as root drops to the
/// `mosquitto` user before it reads its TLS files.
fn make_certs(dir: &std::path::Path, name: &str) -> bool {
    let sh = format!(
        "set -e; cd '{d}'; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj '/CN={name}-ca' \
           -keyout {name}-ca.key -out {name}-ca.pem 2>/dev/null; \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN=127.0.0.1' \
           -keyout {name}-server.key -out {name}-server.csr 2>/dev/null; \
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > {name}-ext.cnf; \
         openssl x509 -req -in {name}-server.csr -CA {name}-ca.pem -CAkey {name}-ca.key \
           -CAcreateserial -days 2 -extfile {name}-ext.cnf -out {name}-server.pem 2>/dev/null; \
         chmod 644 {name}-server.key",
        d = dir.display()
    );
    Command::new("sh")
        .args(["-c", &sh])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn tls_publish_with_a_private_ca_and_rejection_of_an_unknown_one() {
    use jetwatch::publish::broker::start_mosquitto_with;
    use jetwatch::publish::listen::listen_with;
    use jetwatch::publish::mqtt::{tls_config, ConnectOptions, MqttConn};
    let Some((mosq, _, _)) = tools() else { return };
    let dir = std::env::temp_dir().join(format!("jetwatch-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if !make_certs(&dir, "good") || !make_certs(&dir, "other") {
        eprintln!("SKIPPED: openssl could not make test certificates");
        return;
    }
    let conf = format!(
        "certfile {d}/good-server.pem\nkeyfile {d}/good-server.key",
        d = dir.display()
    );
    let broker = start_mosquitto_with(&mosq, None, &conf).unwrap();
    let port = broker.port();
    let opts = |ca: &str| ConnectOptions {
        host: "127.0.0.1".into(),
        port,
        client_id: format!("tls-{ca}"),
        keepalive_s: 30,
        username: None,
        password: None,
        will: None,
        tls: Some(tls_config(Some(&dir.join(format!("{ca}-ca.pem")))).unwrap()),
        timeout: Duration::from_secs(3),
    };

    // A CA that did not sign the server's certificate is refused.
    let err = MqttConn::connect(&opts("other")).err().expect("must fail");
    assert!(
        format!("{err}").contains("UnknownIssuer"),
        "unexpected error: {err}"
    );

    let lo = opts("good");
    let (tx, rx) = channel();
    let lt = std::thread::spawn(move || {
        let mut out = Vec::new();
        let s = listen_with(
            &lo,
            "jetwatch/#",
            &mut out,
            ListenOptions {
                max_messages: Some(2),
                timeout: Some(T),
            },
        );
        tx.send(()).ok();
        (s, String::from_utf8(out).unwrap())
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut bc = broker_cfg(port, 16);
    bc.tls = true;
    bc.ca_file = Some(dir.join("good-ca.pem"));
    let (mut p, h) = start(
        pub_cfg(bc, "dev-tls"),
        BIRTH.into(),
        Arc::new(SystemClock::default()),
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = frame(5, &mut buf);
    p.publish(TopicId::Detections(0), &buf[..n]);
    rx.recv_timeout(T + Duration::from_secs(5))
        .expect("listen returns");
    let (s, text) = lt.join().unwrap();
    let s = s.unwrap();
    assert_eq!(s.messages, 2, "{text}");
    assert_eq!(s.frames, 1, "{text}");
    assert!(text.contains(r#""seq":5"#), "{text}");
    assert_eq!(h.shutdown(Duration::from_secs(5)).sent, 1);
    // A missing CA file is a clear configuration error at start.
    let mut bad = broker_cfg(port, 16);
    bad.tls = true;
    bad.ca_file = Some(dir.join("missing.pem"));
    let e = start(
        pub_cfg(bad, "x"),
        BIRTH.into(),
        Arc::new(SystemClock::default()),
    )
    .err()
    .expect("missing CA file");
    assert!(format!("{e}").contains("missing.pem"), "{e}");
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_silent_server_never_hangs_connect_or_shutdown() {
    use jetwatch::publish::mqtt::{tls_config, ConnectOptions, MqttConn};
    // Accepts TCP (kernel backlog) but never speaks MQTT or TLS.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let ca = std::env::temp_dir().join(format!("jetwatch-silent-{}.pem", std::process::id()));
    // Any well-formed certificate will do as a root here; the handshake never starts.
    let roots = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").ok();
    for tls in [false, true] {
        let tls = if tls {
            let Some(r) = &roots else { continue };
            std::fs::write(&ca, r).unwrap();
            Some(tls_config(Some(&ca)).unwrap())
        } else {
            None
        };
        let o = ConnectOptions {
            host: "127.0.0.1".into(),
            port,
            client_id: "silent".into(),
            keepalive_s: 30,
            username: None,
            password: None,
            will: None,
            tls,
            timeout: Duration::from_millis(300),
        };
        let t0 = Instant::now();
        assert!(MqttConn::connect(&o).is_err());
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }
    let mut cfg = pub_cfg(broker_cfg(port, 8), "dev-silent");
    cfg.connect_timeout = Duration::from_millis(300);
    let (_p, h) = start(cfg, BIRTH.into(), Arc::new(SystemClock::default())).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let s = h.shutdown(Duration::from_millis(100));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(!s.connected);
    let _ = std::fs::remove_file(&ca);
    drop(silent);
}

/// Messages written to a broker that never acknowledged them (frozen with SIGSTOP, then
/// killed) are not lost: they stay in the outbox and go out again after the reconnect.
#[test]
fn unacknowledged_messages_are_resent_after_reconnect() {
    let Some(_) = tools() else { return };
    let broker = mosquitto(None);
    let port = broker.port();
    let clock = ManualClock::new(1_000_000_000);
    let (mut p, h) = start(
        pub_cfg(broker_cfg(port, 100), "dev-unacked"),
        BIRTH.into(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    wait_stats(&h, "connected", |s| s.connected);
    let pid = broker.pid().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let mut buf = [0u8; 256];
    for seq in 0..20 {
        let n = frame(seq, &mut buf);
        p.publish(TopicId::Detections(0), &buf[..n]);
    }
    // Long enough for the publisher thread to write the window to the socket (it polls
    // every 5 ms); nothing can be acknowledged by a stopped broker.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(h.stats().sent, 0);
    broker.stop(); // SIGKILL
    wait_stats(&h, "disconnect noticed", |s| !s.connected);

    let broker = mosquitto(Some(port));
    let sub = Sub::start(port, "jetwatch/dev-unacked/cam0/detections", &[]);
    clock.advance_ms(60_000);
    for seq in 0..20 {
        assert_eq!(
            seq_of(&sub.expect("jetwatch/dev-unacked/cam0/detections")),
            seq
        );
    }
    wait_stats(&h, "all acked", |s| s.sent == 20);
    let s = h.shutdown(Duration::from_secs(5));
    assert_eq!((s.dropped, s.reconnects), (0, 1));
    drop(broker);
}
