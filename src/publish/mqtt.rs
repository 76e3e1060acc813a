//! MQTT publisher: a thread (`mqtt-pub`) that drains the [`outbox`](super::outbox) into an
//! MQTT 3.1.1 broker.
//!
//! Packets are encoded and parsed with rumqttc's MQTT 3.1.1 codec (`rumqttc::mqttbytes::v4`)
//! over a blocking `TcpStream` (optionally rustls). rumqttc's own `EventLoop` is not used:
//! it is async (driving it from a thread with timeouts cancels `poll()` between its state
//! update and its socket write), it reconnects in a tight loop, and with a clean session it
//! drops queued QoS 1 messages on reconnect (CRATES.md). Here the thread owns the reconnect
//! (one fresh connection per attempt, paced by [`Backoff`] on the injected clock), and a
//! message leaves the outbox only once the broker acknowledged it (PUBACK, MQTT 3.1.1
//! §4.3.2) — so nothing still in the outbox is lost across a broker restart, and what the
//! outbox could not hold is dropped oldest-first and counted.
//!
//! Topics (base `jetwatch/<device_id>`): `status` (retained JSON; the birth message on every
//! connect, the Last Will `{"state":"offline"}` (§3.1.2.5) on an abrupt disconnect, and an
//! explicit offline status on a clean shutdown), `<camera>/detections`, `metrics`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, LastWill, Packet, Publish};
use rumqttc::mqttbytes::QoS;

use super::backoff::Backoff;
use super::outbox::{OutboxPublisher, SharedOutbox};
use super::{PublishStats, TopicId};
use crate::clock::Clock;
use crate::config::{BrokerConfig, Config};

/// Payload of the Last Will and of the status published on a clean shutdown.
pub const OFFLINE_STATUS: &str = r#"{"state":"offline"}"#;

/// Largest MQTT packet accepted from the broker.
const MAX_INCOMING_PACKET: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("broker {host}:{port} refused the connection: {code:?}")]
    Refused {
        host: String,
        port: u16,
        code: ConnectReturnCode,
    },
    #[error("MQTT protocol error: {0}")]
    Protocol(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("bad publisher configuration: {0}")]
    Config(String),
    #[error("local broker: {0}")]
    Broker(String),
}

impl PublishError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            PublishError::Io { .. } | PublishError::Timeout(_) | PublishError::Refused { .. } => {
                ErrorKind::Io
            }
            PublishError::Tls(_) | PublishError::Config(_) => ErrorKind::BadInput,
            PublishError::Protocol(_) => ErrorKind::DataLoss,
            PublishError::Broker(_) => ErrorKind::Unavailable,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PublishError {
    let what = what.into();
    move |source| PublishError::Io { what, source }
}

/// Everything needed to open one MQTT connection.
#[derive(Clone)]
pub struct ConnectOptions {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub keepalive_s: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `(topic, payload, retain)`, sent with QoS 1.
    pub will: Option<(String, Vec<u8>, bool)>,
    /// TLS client configuration (see [`tls_config`]); `None` is plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub timeout: Duration,
}

/// Builds the TLS client configuration: roots from `ca_file` (PEM), or the system's roots.
/// Installs rustls' `ring` provider as the process default if none is installed yet.
pub fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, PublishError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| PublishError::Tls(format!("{}: {e}", path.display())))?;
            for c in certs {
                let c = c.map_err(|e| PublishError::Tls(format!("{}: {e}", path.display())))?;
                roots
                    .add(c)
                    .map_err(|e| PublishError::Tls(format!("{}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(PublishError::Tls(format!(
                    "{}: no PEM certificate found",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(PublishError::Tls(
                    "no system CA certificates found (install the ca-certificates package) \
                     and broker.ca_file is not set"
                        .into(),
                ));
            }
        }
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One blocking MQTT 3.1.1 client connection (rumqttc's codec over std I/O).
pub struct MqttConn {
    stream: Stream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    peer: String,
}

impl MqttConn {
    /// Connects, sends CONNECT (clean session) and waits for a successful CONNACK.
    pub fn connect(o: &ConnectOptions) -> Result<MqttConn, PublishError> {
        let peer = format!("{}:{}", o.host, o.port);
        let addrs: Vec<_> = (o.host.as_str(), o.port)
            .to_socket_addrs()
            .map_err(io_err(format!("resolve {peer}")))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, o.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match tcp {
            Some(t) => t,
            None => {
                return Err(PublishError::Io {
                    what: format!("connect to {peer}"),
                    source: last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
                })
            }
        };
        let _ = tcp.set_nodelay(true);
        // Bounds the TLS handshake and CONNACK too (`poll` sets its own read timeout later).
        tcp.set_write_timeout(Some(o.timeout))
            .and_then(|_| tcp.set_read_timeout(Some(o.timeout)))
            .map_err(io_err("set socket timeouts"))?;
        let stream = match &o.tls {
            None => Stream::Plain(tcp),
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from(o.host.clone())
                    .map_err(|e| PublishError::Tls(format!("server name {:?}: {e}", o.host)))?;
                let conn = rustls::ClientConnection::new(cfg.clone(), name)
                    .map_err(|e| PublishError::Tls(e.to_string()))?;
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
        };
        let mut c = MqttConn {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
            peer,
        };
        let mut connect = Connect::new(o.client_id.clone());
        connect.keep_alive = o.keepalive_s;
        connect.clean_session = true;
        if let Some(u) = &o.username {
            connect.set_login(u.clone(), o.password.clone().unwrap_or_default());
        }
        connect.last_will = o
            .will
            .as_ref()
            .map(|(t, p, r)| LastWill::new(t.clone(), p.clone(), QoS::AtLeastOnce, *r));
        c.send(&Packet::Connect(connect))?;
        let deadline = Instant::now() + o.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PublishError::Timeout(format!("CONNACK from {}", c.peer)));
            }
            match c.poll(left)? {
                Some(Packet::ConnAck(a)) => {
                    if a.code != ConnectReturnCode::Success {
                        return Err(PublishError::Refused {
                            host: o.host.clone(),
                            port: o.port,
                            code: a.code,
                        });
                    }
                    return Ok(c);
                }
                Some(p) => {
                    return Err(PublishError::Protocol(format!(
                        "expected CONNACK from {}, got {p:?}",
                        c.peer
                    )))
                }
                None => {}
            }
        }
    }

    /// Encodes and writes one packet.
    pub fn send(&mut self, p: &Packet) -> Result<(), PublishError> {
        self.wbuf.clear();
        p.write(&mut self.wbuf, usize::MAX)
            .map_err(|e| PublishError::Protocol(e.to_string()))?;
        self.stream
            .write_all(&self.wbuf)
            .and_then(|_| self.stream.flush())
            .map_err(io_err(format!("write to {}", self.peer)))
    }

    /// Returns the next packet, or `None` if none arrived within `timeout`.
    pub fn poll(&mut self, timeout: Duration) -> Result<Option<Packet>, PublishError> {
        loop {
            match Packet::read(&mut self.rbuf, MAX_INCOMING_PACKET) {
                Ok(p) => return Ok(Some(p)),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(PublishError::Protocol(format!("from {}: {e}", self.peer))),
            }
            let t = timeout.max(Duration::from_millis(1));
            self.stream
                .tcp()
                .set_read_timeout(Some(t))
                .map_err(io_err("set_read_timeout"))?;
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(PublishError::Io {
                        what: format!("connection to {}", self.peer),
                        source: std::io::ErrorKind::UnexpectedEof.into(),
                    })
                }
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(format!("read from {}", self.peer))(e)),
            }
        }
    }

    /// Sends DISCONNECT (the broker then discards the Last Will, §3.14.4) and closes.
    pub fn disconnect(mut self) {
        let _ = self.send(&Packet::Disconnect);
        let _ = self.stream.tcp().shutdown(std::net::Shutdown::Both);
    }
}

/// What [`start`] needs, taken from the [`Config`].
#[derive(Clone)]
pub struct PublisherConfig {
    pub broker: BrokerConfig,
    pub device_id: String,
    /// Camera names, in config order: `TopicId::Detections(i)` goes to `cameras[i]`.
    pub cameras: Vec<String>,
    /// Size of one outbox slot: the largest message (see [`slot_bytes_for`]).
    pub slot_bytes: usize,
    /// QoS 1 messages sent and not yet acknowledged, at most.
    pub inflight: usize,
    /// TCP connect / CONNACK / write timeout.
    pub connect_timeout: Duration,
}

/// Slot size for a config: the largest detection message (with these labels), and at least
/// 4 KiB for the status and metrics JSON.
pub fn slot_bytes_for(cfg: &Config, labels: &[String]) -> usize {
    crate::wire::max_encoded_len(cfg.publish.format, cfg.model.max_detections, labels).max(4096)
}

impl PublisherConfig {
    pub fn from_config(cfg: &Config, slot_bytes: usize) -> PublisherConfig {
        PublisherConfig {
            broker: cfg.broker.clone(),
            device_id: cfg.device_id.clone(),
            cameras: cfg.cameras.iter().map(|c| c.name.clone()).collect(),
            slot_bytes,
            inflight: 32,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The birth `status` message: `{"state":"online","version":…,"streams":[…],"backends":{…},
/// "labels":[…]}` (`labels` lets subscribers name the classes of postcard messages).
pub fn birth_message(
    version: &str,
    streams: &[String],
    backends: &serde_json::Value,
    labels: &[String],
    warnings: &[String],
) -> String {
    serde_json::json!({
        "state": "online",
        "version": version,
        "streams": streams,
        "backends": backends,
        "labels": labels,
        "warnings": warnings,
    })
    .to_string()
}

/// Base topic of a device.
pub fn base_topic(device_id: &str) -> String {
    format!("jetwatch/{device_id}")
}

const RUN: u8 = 0;
const DRAIN: u8 = 1;
const ABORT: u8 = 2;

struct Control {
    state: AtomicU8,
    drain_deadline: Mutex<Option<Instant>>,
}

/// Owns the `mqtt-pub` thread. [`PublisherHandle::shutdown`] drains and says goodbye;
/// dropping the handle without it closes the connection abruptly (the broker then publishes
/// the Last Will `offline`).
pub struct PublisherHandle {
    shared: Arc<SharedOutbox>,
    ctl: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl PublisherHandle {
    pub fn stats(&self) -> PublishStats {
        self.shared.stats()
    }

    /// Another frame-side handle on the same outbox (for a metrics thread, say).
    pub fn publisher(&self) -> OutboxPublisher {
        OutboxPublisher::new(self.shared.clone())
    }

    /// Sends what the outbox holds (for at most `drain_timeout`), publishes the retained
    /// `offline` status, disconnects cleanly and joins the thread.
    pub fn shutdown(mut self, drain_timeout: Duration) -> PublishStats {
        *self
            .ctl
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + drain_timeout);
        self.ctl.state.store(DRAIN, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.stats()
    }
}

impl Drop for PublisherHandle {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.ctl.state.store(ABORT, Ordering::SeqCst);
            let _ = t.join();
        }
    }
}

/// Starts the publisher thread. Returns the frame side's [`OutboxPublisher`] and the handle.
/// `birth_json` is the retained `status` published on every connect (a later
/// `TopicId::Status` message replaces it, for this and later connections).
pub fn start(
    cfg: PublisherConfig,
    birth_json: String,
    clock: Arc<dyn Clock>,
) -> Result<(OutboxPublisher, PublisherHandle), PublishError> {
    let b = &cfg.broker;
    if cfg.slot_bytes == 0 {
        return Err(PublishError::Config("slot_bytes must be > 0".into()));
    }
    if b.qos > 1 {
        return Err(PublishError::Config(format!(
            "QoS {} is not supported (0 or 1)",
            b.qos
        )));
    }
    let tls = if b.tls {
        Some(tls_config(b.ca_file.as_deref())?)
    } else {
        None
    };
    let base = base_topic(&cfg.device_id);
    let status_topic = format!("{base}/status");
    let conn_opts = ConnectOptions {
        host: b.host.clone(),
        port: b.port,
        client_id: b
            .client_id
            .clone()
            .unwrap_or_else(|| format!("jetwatch-{}", cfg.device_id)),
        keepalive_s: b.keepalive_s.min(u16::MAX as u64) as u16,
        username: b.username.clone(),
        password: b.password.clone(),
        will: Some((
            status_topic.clone(),
            OFFLINE_STATUS.as_bytes().to_vec(),
            true,
        )),
        tls,
        timeout: cfg.connect_timeout,
    };
    let shared = SharedOutbox::new(b.outbox_messages, cfg.slot_bytes);
    let ctl = Arc::new(Control {
        state: AtomicU8::new(RUN),
        drain_deadline: Mutex::new(None),
    });
    let seed = clock.unix_ns() ^ (std::process::id() as u64) << 32;
    let worker = Worker {
        backoff: Backoff::new(clock.clone(), b.reconnect_min_ms, b.reconnect_max_ms, seed),
        clock,
        shared: shared.clone(),
        ctl: ctl.clone(),
        detections_topics: cfg
            .cameras
            .iter()
            .map(|c| format!("{base}/{c}/detections"))
            .collect(),
        fallback_topic: format!("{base}/unknown/detections"),
        metrics_topic: format!("{base}/metrics"),
        status_topic,
        qos: if b.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        },
        birth: birth_json.into_bytes(),
        staging: vec![0u8; cfg.slot_bytes],
        inflight: cfg.inflight.clamp(1, 65_000),
        keepalive_ns: b.keepalive_s.saturating_mul(1_000_000_000),
        conn_opts,
        ever_connected: false,
    };
    let thread = std::thread::Builder::new()
        .name("mqtt-pub".into())
        .spawn(move || worker.run())
        .map_err(io_err("spawn mqtt-pub"))?;
    Ok((
        OutboxPublisher::new(shared.clone()),
        PublisherHandle {
            shared,
            ctl,
            thread: Some(thread),
        },
    ))
}

enum Pending {
    /// A message of the outbox, by sequence number.
    Outbox(u64),
    /// The birth or offline status (not from the outbox).
    Control,
}

enum SessionEnd {
    Lost(PublishError),
    Finished,
}

struct Worker {
    clock: Arc<dyn Clock>,
    backoff: Backoff,
    shared: Arc<SharedOutbox>,
    ctl: Arc<Control>,
    detections_topics: Vec<String>,
    fallback_topic: String,
    metrics_topic: String,
    status_topic: String,
    qos: QoS,
    birth: Vec<u8>,
    staging: Vec<u8>,
    inflight: usize,
    keepalive_ns: u64,
    conn_opts: ConnectOptions,
    ever_connected: bool,
}

/// How long the thread waits for the broker before looking at the outbox again.
const POLL: Duration = Duration::from_millis(5);

impl Worker {
    fn state(&self) -> u8 {
        self.ctl.state.load(Ordering::SeqCst)
    }

    fn drain_expired(&self) -> bool {
        self.ctl
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|d| Instant::now() >= d)
    }

    fn drain_left(&self) -> Duration {
        self.ctl
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            })
    }

    fn set_connected(&self, up: bool, reconnect: bool) {
        let mut l = self.shared.link.lock().unwrap_or_else(|e| e.into_inner());
        l.connected = up;
        if reconnect {
            l.reconnects += 1;
        }
    }

    fn run(mut self) {
        loop {
            // Wait out the backoff, watching for shutdown.
            loop {
                match self.state() {
                    ABORT => return,
                    DRAIN if self.drain_expired() || self.shared.lock().is_empty() => return,
                    _ => {}
                }
                let w = self.backoff.wait_ns();
                if w == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_nanos(w).min(Duration::from_millis(10)));
            }
            match MqttConn::connect(&self.conn_opts) {
                Ok(conn) => {
                    self.set_connected(true, self.ever_connected);
                    self.ever_connected = true;
                    self.backoff.connected();
                    log::info!(
                        "mqtt: connected to {}:{}",
                        self.conn_opts.host,
                        self.conn_opts.port
                    );
                    let end = self.session(conn);
                    self.set_connected(false, false);
                    match end {
                        SessionEnd::Finished => return,
                        SessionEnd::Lost(e) => {
                            let d = self.backoff.failed();
                            log::warn!(
                                "mqtt: connection lost ({e}); retrying in {} ms",
                                d / 1_000_000
                            );
                        }
                    }
                }
                Err(e) => {
                    let d = self.backoff.failed();
                    log::warn!("mqtt: {e}; retrying in {} ms", d / 1_000_000);
                }
            }
        }
    }

    fn topic(&self, t: TopicId) -> (&str, QoS, bool) {
        match t {
            TopicId::Detections(i) => (
                self.detections_topics
                    .get(i as usize)
                    .unwrap_or(&self.fallback_topic),
                self.qos,
                false,
            ),
            TopicId::Metrics => (&self.metrics_topic, self.qos, false),
            TopicId::Status => (&self.status_topic, QoS::AtLeastOnce, true),
        }
    }

    fn session(&mut self, mut conn: MqttConn) -> SessionEnd {
        use std::collections::HashMap;
        let mut pending: HashMap<u16, Pending> = HashMap::with_capacity(self.inflight + 2);
        let mut next_pkid: u16 = 0;
        let mut alloc_pkid = |pending: &HashMap<u16, Pending>| loop {
            next_pkid = next_pkid.wrapping_add(1);
            if next_pkid != 0 && !pending.contains_key(&next_pkid) {
                return next_pkid;
            }
        };
        self.shared.lock().rewind();

        // Birth message (retained, QoS 1).
        let pkid = alloc_pkid(&pending);
        let mut birth = Publish::new(
            self.status_topic.clone(),
            QoS::AtLeastOnce,
            self.birth.clone(),
        );
        birth.retain = true;
        birth.pkid = pkid;
        if let Err(e) = conn.send(&Packet::Publish(birth)) {
            return SessionEnd::Lost(e);
        }
        pending.insert(pkid, Pending::Control);

        let mut last_write = self.clock.now_ns();
        let mut ping_sent_at: Option<u64> = None;
        loop {
            // Hand messages to the broker, up to the in-flight window. The outbox lock is
            // released before any I/O.
            while pending.len() < self.inflight {
                let next = self.shared.lock().next_to_send(&mut self.staging);
                let Some(o) = next else { break };
                let payload = &self.staging[..o.len];
                let (topic, qos, retain) = self.topic(o.topic);
                let mut p = Publish::new(topic, qos, payload);
                p.retain = retain;
                if qos == QoS::AtLeastOnce {
                    p.pkid = alloc_pkid(&pending);
                }
                if o.topic == TopicId::Status {
                    self.birth.clear();
                    self.birth.extend_from_slice(payload);
                }
                let pkid = p.pkid;
                if let Err(e) = conn.send(&Packet::Publish(p)) {
                    return SessionEnd::Lost(e);
                }
                last_write = self.clock.now_ns();
                if qos == QoS::AtMostOnce {
                    self.shared.lock().ack(o.seq);
                } else {
                    pending.insert(pkid, Pending::Outbox(o.seq));
                }
            }

            match conn.poll(POLL) {
                Ok(Some(Packet::PubAck(a))) => {
                    if let Some(Pending::Outbox(seq)) = pending.remove(&a.pkid) {
                        self.shared.lock().ack(seq);
                    }
                }
                Ok(Some(Packet::PingResp)) => ping_sent_at = None,
                Ok(Some(_)) | Ok(None) => {}
                Err(e) => return SessionEnd::Lost(e),
            }

            // Keepalive (MQTT 3.1.1 §3.1.2.10): ping when idle, give up on no answer.
            let now = self.clock.now_ns();
            if self.keepalive_ns > 0 {
                if let Some(t) = ping_sent_at {
                    if now.saturating_sub(t) > self.keepalive_ns {
                        return SessionEnd::Lost(PublishError::Timeout("PINGRESP".into()));
                    }
                } else if now.saturating_sub(last_write) >= self.keepalive_ns / 2 {
                    if let Err(e) = conn.send(&Packet::PingReq) {
                        return SessionEnd::Lost(e);
                    }
                    last_write = now;
                    ping_sent_at = Some(now);
                }
            }

            match self.state() {
                // Drop the socket without DISCONNECT: the broker publishes the Last Will.
                ABORT => return SessionEnd::Finished,
                DRAIN => {
                    let drained = self.shared.lock().is_empty();
                    if drained || self.drain_expired() {
                        self.goodbye(conn, &mut pending, &mut alloc_pkid);
                        return SessionEnd::Finished;
                    }
                }
                _ => {}
            }
        }
    }

    /// Publishes the retained offline status, waits (bounded) for its PUBACK, disconnects.
    fn goodbye(
        &mut self,
        mut conn: MqttConn,
        pending: &mut std::collections::HashMap<u16, Pending>,
        alloc_pkid: &mut impl FnMut(&std::collections::HashMap<u16, Pending>) -> u16,
    ) {
        let pkid = alloc_pkid(pending);
        let mut p = Publish::new(self.status_topic.clone(), QoS::AtLeastOnce, OFFLINE_STATUS);
        p.retain = true;
        p.pkid = pkid;
        if conn.send(&Packet::Publish(p)).is_err() {
            return;
        }
        let deadline = Instant::now() + self.drain_left().max(Duration::from_millis(500));
        while Instant::now() < deadline {
            match conn.poll(POLL) {
                Ok(Some(Packet::PubAck(a))) if a.pkid == pkid => break,
                Ok(Some(Packet::PubAck(a))) => {
                    if let Some(Pending::Outbox(seq)) = pending.remove(&a.pkid) {
                        self.shared.lock().ack(seq);
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
        conn.disconnect();
    }
}
