//! A local MQTT broker for `jetwatch demo` and the tests: mosquitto if it is installed
//! (bound to 127.0.0.1 with a temporary config), otherwise a minimal embedded MQTT 3.1.1
//! broker built on rumqttc's codec (`rumqttc::mqttbytes::v4`).
//!
//! The embedded broker implements what the demo needs, per MQTT 3.1.1 (OASIS, 2014):
//! CONNECT/CONNACK (§3.1, §3.2; protocol level 4 only, clean sessions only, a second
//! connection with the same client id takes over, §3.1.4), PUBLISH with QoS 0 and 1 and
//! PUBACK (§3.3, §3.4; QoS 2 is refused by closing the connection), retained messages
//! (§3.3.1.3, an empty retained payload clears), SUBSCRIBE/SUBACK with `+` and `#` (§4.7;
//! granted QoS at most 1), UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP, DISCONNECT, the Last Will
//! on any other end of a connection (§3.1.2.5) including a keepalive timeout of 1.5× the
//! client's keepalive (§3.1.2.10). Messages are not queued for offline clients. Loopback only.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{matches, valid_filter, valid_topic, QoS};

use super::mqtt::PublishError;

/// Which broker is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Mosquitto,
    Embedded,
}

impl BrokerKind {
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Mosquitto => "mosquitto",
            BrokerKind::Embedded => "embedded",
        }
    }
}

/// A running local broker on 127.0.0.1; stopped when dropped.
pub struct LocalBroker {
    port: u16,
    inner: Inner,
}

enum Inner {
    Mosquitto { child: Child, dir: PathBuf },
    Embedded(EmbeddedBroker),
}

impl LocalBroker {
    pub fn port(&self) -> u16 {
        self.port
    }
    /// `"mosquitto"` or `"embedded"`.
    pub fn kind(&self) -> &'static str {
        self.broker_kind().name()
    }
    pub fn broker_kind(&self) -> BrokerKind {
        match self.inner {
            Inner::Mosquitto { .. } => BrokerKind::Mosquitto,
            Inner::Embedded(_) => BrokerKind::Embedded,
        }
    }
    /// Process id of mosquitto (None for the embedded broker).
    pub fn pid(&self) -> Option<u32> {
        match &self.inner {
            Inner::Mosquitto { child, .. } => Some(child.id()),
            Inner::Embedded(_) => None,
        }
    }
    /// Stops the broker now (mosquitto: SIGKILL, so clients see an abrupt loss).
    pub fn stop(self) {
        drop(self)
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        match &mut self.inner {
            Inner::Mosquitto { child, dir } => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(dir);
            }
            Inner::Embedded(b) => b.stop(),
        }
    }
}

/// The mosquitto executable, if installed (PATH, then /usr/sbin, /usr/local/sbin).
pub fn find_mosquitto() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.push("/usr/local/sbin".into());
    dirs.into_iter()
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

/// Starts mosquitto if installed, else the embedded broker, on `port` (None: a free port).
pub fn start_local_broker(port: Option<u16>) -> Result<LocalBroker, PublishError> {
    match find_mosquitto() {
        Some(exe) => match start_mosquitto(&exe, port) {
            Ok(b) => Ok(b),
            Err(e) => {
                log::warn!("{e}; using the embedded broker instead");
                start_embedded_broker(port)
            }
        },
        None => start_embedded_broker(port),
    }
}

fn free_port() -> Result<u16, PublishError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|source| PublishError::Io {
        what: "bind 127.0.0.1:0".into(),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| PublishError::Io {
            what: "local_addr".into(),
            source,
        })
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Starts `exe` (mosquitto) bound to 127.0.0.1:`port` (None: a free port), anonymous, no
/// persistence; waits until it accepts connections.
pub fn start_mosquitto(exe: &Path, port: Option<u16>) -> Result<LocalBroker, PublishError> {
    start_mosquitto_with(exe, port, "")
}

/// [`start_mosquitto`] with extra lines for the listener (e.g. `certfile`/`keyfile` for TLS;
/// mosquitto.conf(5)).
pub fn start_mosquitto_with(
    exe: &Path,
    port: Option<u16>,
    listener_conf: &str,
) -> Result<LocalBroker, PublishError> {
    let attempts = if port.is_some() { 1 } else { 3 };
    let mut last_err = None;
    for _ in 0..attempts {
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let dir = std::env::temp_dir().join(format!(
            "jetwatch-mosquitto-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|source| PublishError::Io {
            what: format!("create {}", dir.display()),
            source,
        })?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{listener_conf}\nallow_anonymous true\n\
                 persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n"
            ),
        )
        .map_err(|source| PublishError::Io {
            what: format!("write {}", conf.display()),
            source,
        })?;
        let mut child = Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| PublishError::Io {
                what: format!("start {}", exe.display()),
                source,
            })?;
        match wait_listening(&mut child, port, Duration::from_secs(5)) {
            Ok(()) => {
                // Keep draining stderr so mosquitto never blocks on a full pipe.
                if let Some(mut err) = child.stderr.take() {
                    let _ = std::thread::Builder::new()
                        .name("mosquitto-log".into())
                        .spawn(move || {
                            let mut buf = [0u8; 4096];
                            while let Ok(n) = err.read(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                                log::debug!(
                                    "mosquitto: {}",
                                    String::from_utf8_lossy(&buf[..n]).trim_end()
                                );
                            }
                        });
                }
                return Ok(LocalBroker {
                    port,
                    inner: Inner::Mosquitto { child, dir },
                });
            }
            Err(msg) => {
                let _ = child.kill();
                let _ = child.wait();
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                let _ = std::fs::remove_dir_all(&dir);
                last_err = Some(PublishError::Broker(format!(
                    "mosquitto on 127.0.0.1:{port}: {msg}; stderr: {}",
                    stderr.trim()
                )));
            }
        }
    }
    Err(last_err.unwrap_or_else(|| PublishError::Broker("mosquitto did not start".into())))
}

fn wait_listening(child: &mut Child, port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("exited with {st}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("not listening after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts the embedded broker on 127.0.0.1:`port` (None: a free port).
pub fn start_embedded_broker(port: Option<u16>) -> Result<LocalBroker, PublishError> {
    let b = EmbeddedBroker::start(port.unwrap_or(0))?;
    Ok(LocalBroker {
        port: b.port,
        inner: Inner::Embedded(b),
    })
}

type ConnId = u64;

struct Client {
    client_id: String,
    writer: Arc<Mutex<TcpStream>>,
    subs: Vec<(String, QoS)>,
    next_pkid: u16,
}

#[derive(Default)]
struct State {
    clients: HashMap<ConnId, Client>,
    retained: HashMap<String, (Bytes, QoS)>,
}

struct EmbeddedBroker {
    port: u16,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<State>>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

const MAX_PACKET: usize = 1 << 20;

impl EmbeddedBroker {
    fn start(port: u16) -> Result<EmbeddedBroker, PublishError> {
        let listener =
            TcpListener::bind(("127.0.0.1", port)).map_err(|source| PublishError::Io {
                what: format!("bind 127.0.0.1:{port}"),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| PublishError::Io {
                what: "local_addr".into(),
                source,
            })?
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(State::default()));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let (s2, st2, c2) = (stop.clone(), state.clone(), conns.clone());
        let accept = std::thread::Builder::new()
            .name("broker-accept".into())
            .spawn(move || {
                let mut next_id: ConnId = 0;
                for sock in listener.incoming() {
                    if s2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(sock) = sock else { continue };
                    next_id += 1;
                    let (id, s3, st3) = (next_id, s2.clone(), st2.clone());
                    if let Ok(h) = std::thread::Builder::new()
                        .name(format!("broker-conn{id}"))
                        .spawn(move || serve(id, sock, s3, st3))
                    {
                        let mut v = c2.lock().unwrap_or_else(|e| e.into_inner());
                        v.retain(|h| !h.is_finished());
                        v.push(h);
                    }
                }
            })
            .map_err(|source| PublishError::Io {
                what: "spawn broker-accept".into(),
                source,
            })?;
        Ok(EmbeddedBroker {
            port,
            stop,
            state,
            accept: Some(accept),
            conns,
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_millis(200),
        );
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            for c in st.clients.values() {
                if let Ok(w) = c.writer.lock() {
                    let _ = w.shutdown(Shutdown::Both);
                }
            }
        }
        let handles = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

fn write_packet(w: &Mutex<TcpStream>, p: &Packet) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(p.size() + 8);
    p.write(&mut buf, usize::MAX)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let mut s = w.lock().unwrap_or_else(|e| e.into_inner());
    s.write_all(&buf)
}

/// Delivers a publish to every matching subscription (MQTT 3.1.1 §3.3.5: QoS is the minimum
/// of the message's and the subscription's; retain is cleared for live delivery).
fn route(state: &Mutex<State>, topic: &str, payload: &Bytes, qos: QoS) {
    let mut targets = Vec::new();
    {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        for c in st.clients.values_mut() {
            let granted = c
                .subs
                .iter()
                .filter(|(f, _)| matches(topic, f))
                .map(|(_, q)| *q)
                .max_by_key(|q| *q as u8);
            if let Some(g) = granted {
                let q = if (g as u8) < (qos as u8) { g } else { qos };
                let mut p = Publish::new(topic, q, Vec::new());
                p.payload = payload.clone();
                if q != QoS::AtMostOnce {
                    c.next_pkid = c.next_pkid.wrapping_add(1).max(1);
                    p.pkid = c.next_pkid;
                }
                targets.push((c.writer.clone(), p));
            }
        }
    }
    for (w, p) in targets {
        // A subscriber that cannot keep up (write timeout) loses the message.
        let _ = write_packet(&w, &Packet::Publish(p));
    }
}

fn serve(id: ConnId, sock: TcpStream, stop: Arc<AtomicBool>, state: Arc<Mutex<State>>) {
    let _ = sock.set_nodelay(true);
    let _ = sock.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let Ok(wsock) = sock.try_clone() else { return };
    let writer = Arc::new(Mutex::new(wsock));
    let mut rsock = sock;
    let mut rbuf = BytesMut::with_capacity(8192);
    let mut will: Option<(String, Bytes, QoS, bool)> = None;
    let mut connected = false;
    let mut keepalive = Duration::ZERO;
    let mut last_rx = Instant::now();
    let mut clean_end = false;
    let connect_deadline = Instant::now() + Duration::from_secs(10);

    'conn: loop {
        if stop.load(Ordering::SeqCst) {
            clean_end = true; // the broker is going away: no will
            break;
        }
        // Parse every complete packet in the buffer.
        loop {
            let pkt = match Packet::read(&mut rbuf, MAX_PACKET) {
                Ok(p) => p,
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => break,
                Err(e) => {
                    log::debug!("broker conn{id}: protocol error: {e}");
                    break 'conn;
                }
            };
            last_rx = Instant::now();
            match pkt {
                Packet::Connect(c) if !connected => {
                    connected = true;
                    keepalive = Duration::from_secs(c.keep_alive as u64);
                    will = c.last_will.map(|w| (w.topic, w.message, w.qos, w.retain));
                    let takeover: Vec<Arc<Mutex<TcpStream>>> = {
                        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                        let old: Vec<ConnId> = st
                            .clients
                            .iter()
                            .filter(|(_, cl)| {
                                !c.client_id.is_empty() && cl.client_id == c.client_id
                            })
                            .map(|(k, _)| *k)
                            .collect();
                        let ws = old
                            .iter()
                            .filter_map(|k| st.clients.remove(k).map(|cl| cl.writer))
                            .collect();
                        st.clients.insert(
                            id,
                            Client {
                                client_id: c.client_id.clone(),
                                writer: writer.clone(),
                                subs: Vec::new(),
                                next_pkid: 0,
                            },
                        );
                        ws
                    };
                    for w in takeover {
                        if let Ok(s) = w.lock() {
                            let _ = s.shutdown(Shutdown::Both);
                        }
                    }
                    let ack = ConnAck::new(ConnectReturnCode::Success, false);
                    if write_packet(&writer, &Packet::ConnAck(ack)).is_err() {
                        break 'conn;
                    }
                }
                _ if !connected => break 'conn, // §3.1: the first packet must be CONNECT
                Packet::Connect(_) => break 'conn, // §3.1.0: a second CONNECT is a violation
                Packet::Publish(p) => {
                    if p.qos == QoS::ExactlyOnce || !valid_topic(&p.topic) {
                        break 'conn;
                    }
                    if p.qos == QoS::AtLeastOnce
                        && write_packet(&writer, &Packet::PubAck(PubAck::new(p.pkid))).is_err()
                    {
                        break 'conn;
                    }
                    if p.retain {
                        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                        if p.payload.is_empty() {
                            st.retained.remove(&p.topic);
                        } else {
                            st.retained
                                .insert(p.topic.clone(), (p.payload.clone(), p.qos));
                        }
                    }
                    route(&state, &p.topic, &p.payload, p.qos);
                }
                Packet::Subscribe(s) => {
                    let mut codes = Vec::with_capacity(s.filters.len());
                    let mut retained = Vec::new();
                    {
                        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                        let matching: Vec<(String, Bytes, QoS)> = st
                            .retained
                            .iter()
                            .map(|(t, (b, q))| (t.clone(), b.clone(), *q))
                            .collect();
                        let Some(cl) = st.clients.get_mut(&id) else {
                            break 'conn;
                        };
                        for f in &s.filters {
                            if !valid_filter(&f.path) {
                                codes.push(SubscribeReasonCode::Failure);
                                continue;
                            }
                            let g = if f.qos == QoS::AtMostOnce {
                                QoS::AtMostOnce
                            } else {
                                QoS::AtLeastOnce
                            };
                            cl.subs.retain(|(p, _)| p != &f.path);
                            cl.subs.push((f.path.clone(), g));
                            codes.push(SubscribeReasonCode::Success(g));
                            for (t, b, q) in &matching {
                                if matches(t, &f.path) {
                                    let q = if (g as u8) < (*q as u8) { g } else { *q };
                                    let mut p = Publish::new(t.clone(), q, Vec::new());
                                    p.payload = b.clone();
                                    p.retain = true;
                                    if q != QoS::AtMostOnce {
                                        cl.next_pkid = cl.next_pkid.wrapping_add(1).max(1);
                                        p.pkid = cl.next_pkid;
                                    }
                                    retained.push(p);
                                }
                            }
                        }
                    }
                    if write_packet(&writer, &Packet::SubAck(SubAck::new(s.pkid, codes))).is_err() {
                        break 'conn;
                    }
                    for p in retained {
                        if write_packet(&writer, &Packet::Publish(p)).is_err() {
                            break 'conn;
                        }
                    }
                }
                Packet::Unsubscribe(u) => {
                    {
                        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(cl) = st.clients.get_mut(&id) {
                            cl.subs.retain(|(p, _)| !u.topics.contains(p));
                        }
                    }
                    if write_packet(&writer, &Packet::UnsubAck(UnsubAck::new(u.pkid))).is_err() {
                        break 'conn;
                    }
                }
                Packet::PingReq => {
                    if write_packet(&writer, &Packet::PingResp).is_err() {
                        break 'conn;
                    }
                }
                Packet::Disconnect => {
                    clean_end = true;
                    break 'conn;
                }
                // Acks from subscribers: nothing is redelivered, so nothing to do.
                Packet::PubAck(_) => {}
                _ => break 'conn,
            }
        }
        // Keepalive: 1.5 × the client's value (§3.1.2.10); CONNECT within 10 s.
        let idle = last_rx.elapsed();
        if (!connected && Instant::now() > connect_deadline)
            || (connected && !keepalive.is_zero() && idle > keepalive + keepalive / 2)
        {
            break;
        }
        let mut chunk = [0u8; 8192];
        match rsock.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }

    let _ = rsock.shutdown(Shutdown::Both);
    let was_registered = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        // A takeover already removed us (and the new connection owns the id).
        st.clients.remove(&id).is_some()
    };
    if !clean_end && was_registered {
        if let Some((topic, payload, qos, retain)) = will {
            let qos = if qos == QoS::ExactlyOnce {
                QoS::AtLeastOnce
            } else {
                qos
            };
            if retain {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                if payload.is_empty() {
                    st.retained.remove(&topic);
                } else {
                    st.retained.insert(topic.clone(), (payload.clone(), qos));
                }
            }
            route(&state, &topic, &payload, qos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::mqtt::{ConnectOptions, MqttConn};
    use rumqttc::mqttbytes::v4::{Subscribe, Unsubscribe};

    #[test]
    fn mosquitto_is_found_where_installed() {
        // Debian installs it in /usr/sbin, usually not on a user's PATH.
        if Path::new("/usr/sbin/mosquitto").is_file() {
            assert!(find_mosquitto().is_some());
        }
    }

    fn client(port: u16, id: &str, keepalive_s: u16, will: Option<&str>) -> MqttConn {
        MqttConn::connect(&ConnectOptions {
            host: "127.0.0.1".into(),
            port,
            client_id: id.into(),
            keepalive_s,
            username: None,
            password: None,
            will: will.map(|t| (t.to_string(), b"bye".to_vec(), false)),
            tls: None,
            timeout: Duration::from_secs(2),
        })
        .unwrap()
    }

    /// Next packet within `t`, skipping nothing.
    fn next(c: &mut MqttConn, t: Duration) -> Option<Packet> {
        let deadline = Instant::now() + t;
        while Instant::now() < deadline {
            if let Some(p) = c.poll(Duration::from_millis(50)).unwrap() {
                return Some(p);
            }
        }
        None
    }

    #[test]
    fn embedded_unsubscribe_and_keepalive_timeout_will() {
        let b = start_embedded_broker(None).unwrap();
        let port = b.port();
        let mut sub = client(port, "sub", 30, None);
        let mut s = Subscribe::new("x/#", QoS::AtLeastOnce);
        s.pkid = 1;
        sub.send(&Packet::Subscribe(s)).unwrap();
        assert!(
            matches!(next(&mut sub, Duration::from_secs(2)), Some(Packet::SubAck(a)) if a.pkid == 1)
        );

        let mut publ = client(port, "pub", 30, None);
        let mut p = Publish::new("x/1", QoS::AtMostOnce, b"one".to_vec());
        p.pkid = 0;
        publ.send(&Packet::Publish(p)).unwrap();
        match next(&mut sub, Duration::from_secs(2)) {
            Some(Packet::Publish(p)) => {
                assert_eq!((p.topic.as_str(), &p.payload[..]), ("x/1", &b"one"[..]))
            }
            other => panic!("{other:?}"),
        }

        let mut u = Unsubscribe::new("x/#");
        u.pkid = 2;
        sub.send(&Packet::Unsubscribe(u)).unwrap();
        assert!(
            matches!(next(&mut sub, Duration::from_secs(2)), Some(Packet::UnsubAck(a)) if a.pkid == 2)
        );
        publ.send(&Packet::Publish(Publish::new(
            "x/2",
            QoS::AtMostOnce,
            b"two".to_vec(),
        )))
        .unwrap();
        assert!(
            next(&mut sub, Duration::from_millis(300)).is_none(),
            "unsubscribed"
        );

        // A client that goes silent past 1.5x its keepalive is dropped and its will sent.
        let mut s = Subscribe::new("will/#", QoS::AtMostOnce);
        s.pkid = 3;
        sub.send(&Packet::Subscribe(s)).unwrap();
        assert!(matches!(
            next(&mut sub, Duration::from_secs(2)),
            Some(Packet::SubAck(_))
        ));
        let t0 = Instant::now();
        let _silent = client(port, "silent", 1, Some("will/silent"));
        match next(&mut sub, Duration::from_secs(5)) {
            Some(Packet::Publish(p)) => {
                assert_eq!(p.topic, "will/silent");
                assert_eq!(&p.payload[..], b"bye");
            }
            other => panic!("no will: {other:?}"),
        }
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(1400), "{waited:?}");

        // PINGREQ is answered.
        sub.send(&Packet::PingReq).unwrap();
        assert!(matches!(
            next(&mut sub, Duration::from_secs(2)),
            Some(Packet::PingResp)
        ));
        // A clean DISCONNECT sends no will.
        let w = client(port, "polite", 30, Some("will/polite"));
        w.disconnect();
        assert!(next(&mut sub, Duration::from_millis(300)).is_none());
    }
}
