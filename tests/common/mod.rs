//! Shared test helpers: a real mosquitto on a free loopback port, the shared assets folder,
//! and an MQTT subscriber that collects messages.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shared assets folder (../shared), or None with a message (tests then skip loudly).
pub fn shared() -> Option<PathBuf> {
    let s = jetwatch::assets::shared_dir();
    if s.is_none() {
        eprintln!("SKIPPED: shared assets (../shared with models/ and media/) not found; set JETWATCH_SHARED");
    }
    s
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto broker on 127.0.0.1, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: PathBuf,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Mosquitto {
        let bin = jetwatch::probe::which("mosquitto").expect("mosquitto is required for this test (apt-get install mosquitto); tools/setup.sh installs it");
        let dir = std::env::temp_dir().join(format!("jw-mosq-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("m.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "mosquitto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (topic, payload) pairs in arrival order.
pub type Messages = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Subscribes to `filter` and collects (topic, payload) pairs on a background thread.
pub struct Collector {
    pub messages: Messages,
    client: rumqttc::Client,
}

impl Collector {
    pub fn start(port: u16, filter: &str) -> Collector {
        let mut o =
            rumqttc::MqttOptions::new(format!("collector-{}", free_port()), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = rumqttc::Client::new(o, 1000);
        client.subscribe(filter, rumqttc::QoS::AtLeastOnce).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = messages.clone();
        let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = subscribed.clone();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        m.lock()
                            .unwrap()
                            .push((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        s2.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let t = Instant::now();
        while !subscribed.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no SUBACK from the broker"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Collector { messages, client }
    }

    /// Waits until at least `n` messages arrived or `timeout` passed; returns the count.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let t = Instant::now();
        loop {
            let c = self.messages.lock().unwrap().len();
            if c >= n || t.elapsed() > timeout {
                return c;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}
