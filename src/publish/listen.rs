//! `jetwatch listen`: subscribe and print every message as one JSON line.
//!
//! Detection messages (`.../detections`, either wire encoding) are decoded with
//! [`crate::wire::decode`]; `status` and `metrics` (JSON) are printed as they are; anything
//! that does not decode is reported as a line with an `"error"` and the payload in hex.
//! Postcard messages carry class indices only: if a device's `status` message lists
//! `"labels"`, they are used to fill in the class names of that device's detections.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::{Packet, PubAck, Subscribe};
use rumqttc::mqttbytes::{valid_filter, QoS};
use serde_json::{json, Value};

use super::mqtt::{ConnectOptions, MqttConn, PublishError};

/// When to stop.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenOptions {
    /// Stop after this many messages.
    pub max_messages: Option<usize>,
    /// Stop after this long (None: until the connection ends).
    pub timeout: Option<Duration>,
}

/// What was received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenSummary {
    pub messages: usize,
    /// Detection messages decoded.
    pub frames: usize,
    pub detections: usize,
    /// Other JSON messages (status, metrics).
    pub json: usize,
    /// Payloads that could not be decoded.
    pub errors: usize,
}

/// Default topic filter.
pub const DEFAULT_FILTER: &str = "jetwatch/#";

/// Subscribes to `topic_filter` on `host:port` (plain TCP) and writes one JSON line per
/// message to `out`. Returns when `opts` says so, or with an error if the connection fails.
pub fn listen(
    host: &str,
    port: u16,
    topic_filter: &str,
    out: &mut dyn std::io::Write,
    opts: ListenOptions,
) -> Result<ListenSummary, PublishError> {
    let o = ConnectOptions {
        host: host.to_string(),
        port,
        client_id: format!("jetwatch-listen-{}", std::process::id()),
        keepalive_s: 30,
        username: None,
        password: None,
        will: None,
        tls: None,
        timeout: Duration::from_secs(5),
    };
    listen_with(&o, topic_filter, out, opts)
}

/// [`listen`] with full connection options (TLS, credentials).
pub fn listen_with(
    o: &ConnectOptions,
    topic_filter: &str,
    out: &mut dyn std::io::Write,
    opts: ListenOptions,
) -> Result<ListenSummary, PublishError> {
    if !valid_filter(topic_filter) {
        return Err(PublishError::Config(format!(
            "{topic_filter:?} is not a valid MQTT topic filter"
        )));
    }
    let start = Instant::now();
    let deadline = opts.timeout.map(|t| start + t);
    let mut conn = MqttConn::connect(o)?;
    let mut sub = Subscribe::new(topic_filter, QoS::AtLeastOnce);
    sub.pkid = 1;
    conn.send(&Packet::Subscribe(sub))?;
    let mut summary = ListenSummary::default();
    let mut labels: HashMap<String, Vec<String>> = HashMap::new();
    let mut last_ping = Instant::now();
    let keepalive = Duration::from_secs(o.keepalive_s.max(1) as u64);
    loop {
        if opts.max_messages.is_some_and(|m| summary.messages >= m) {
            break;
        }
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                left.min(Duration::from_millis(500))
            }
            None => Duration::from_millis(500),
        };
        if last_ping.elapsed() >= keepalive / 2 {
            conn.send(&Packet::PingReq)?;
            last_ping = Instant::now();
        }
        let Some(pkt) = conn.poll(wait)? else {
            continue;
        };
        let Packet::Publish(p) = pkt else { continue };
        if p.qos == QoS::AtLeastOnce {
            conn.send(&Packet::PubAck(PubAck::new(p.pkid)))?;
        }
        summary.messages += 1;
        let line = describe(&p.topic, &p.payload, p.retain, &mut labels, &mut summary);
        writeln!(out, "{line}").map_err(|source| PublishError::Io {
            what: "write output".into(),
            source,
        })?;
    }
    let _ = out.flush();
    conn.disconnect();
    Ok(summary)
}

/// `jetwatch/<device>/...` → `<device>`.
fn device_of(topic: &str) -> &str {
    topic.split('/').nth(1).unwrap_or("")
}

fn hex_prefix(b: &[u8]) -> String {
    b.iter().take(64).map(|x| format!("{x:02x}")).collect()
}

/// One output line for one message. Never panics on any payload.
fn describe(
    topic: &str,
    payload: &[u8],
    retained: bool,
    labels: &mut HashMap<String, Vec<String>>,
    summary: &mut ListenSummary,
) -> Value {
    if topic.ends_with("/detections") {
        return match crate::wire::decode(payload) {
            Ok(mut f) => {
                summary.frames += 1;
                summary.detections += f.detections.len();
                if let Some(names) = labels.get(device_of(topic)) {
                    for d in &mut f.detections {
                        if d.label.is_none() {
                            d.label = names.get(d.class as usize).cloned();
                        }
                    }
                }
                json!({"topic": topic, "frame": f})
            }
            Err(e) => {
                summary.errors += 1;
                json!({"topic": topic, "error": e.to_string(), "len": payload.len(),
                       "hex": hex_prefix(payload)})
            }
        };
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(v) => {
            summary.json += 1;
            if topic.ends_with("/status") {
                if let Some(ls) = v.get("labels").and_then(|l| l.as_array()) {
                    let names = ls
                        .iter()
                        .map(|x| x.as_str().unwrap_or("").to_string())
                        .collect();
                    labels.insert(device_of(topic).to_string(), names);
                }
            }
            json!({"topic": topic, "retained": retained, "json": v})
        }
        Err(e) => {
            summary.errors += 1;
            json!({"topic": topic, "error": format!("not JSON: {e}"), "len": payload.len(),
                   "hex": hex_prefix(payload)})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WireFormat;
    use crate::postprocess::Detection;
    use crate::wire::{encode, FrameHeader};

    #[test]
    fn describes_every_kind_of_payload_without_panicking() {
        let mut labels = HashMap::new();
        let mut s = ListenSummary::default();
        let st = describe(
            "jetwatch/d1/status",
            br#"{"state":"online","labels":["person","bike"]}"#,
            true,
            &mut labels,
            &mut s,
        );
        assert_eq!(st["json"]["state"], "online");
        let mut buf = [0u8; 256];
        let det = Detection {
            class: 1,
            score: 0.5,
            x0: 1.0,
            y0: 2.0,
            x1: 3.0,
            y1: 4.0,
            track: 0,
        };
        let hdr = FrameHeader {
            width: 10,
            height: 10,
            ..Default::default()
        };
        let n = encode(WireFormat::Postcard, &hdr, &[det], &[], &mut buf).unwrap();
        let v = describe(
            "jetwatch/d1/cam/detections",
            &buf[..n],
            false,
            &mut labels,
            &mut s,
        );
        assert_eq!(v["frame"]["detections"][0]["label"], "bike");
        assert_eq!(v["frame"]["detections"][0]["box"], json!([1, 2, 3, 4]));
        let bad = describe(
            "jetwatch/d1/cam/detections",
            &[9, 9],
            false,
            &mut labels,
            &mut s,
        );
        assert!(bad["error"].as_str().unwrap().contains("version 9"));
        let bad = describe(
            "jetwatch/d1/metrics",
            &[0xff, 0],
            false,
            &mut labels,
            &mut s,
        );
        assert!(bad["error"].as_str().unwrap().contains("not JSON"));
        assert_eq!(
            s,
            ListenSummary {
                messages: 0,
                frames: 1,
                detections: 1,
                json: 1,
                errors: 2
            }
        );
    }
}
