//! permessage-deflate benchmark (not a test): the paced fan-out (1000
//! subscribers over 10 channels, 1000 events/s) of a ~2 KiB
//! Laravel-model-like JSON payload, once with clients that offer
//! permessage-deflate and once with clients that do not. Reports bytes on
//! the wire per delivery, the server's CPU per delivery (user and system
//! apart) and delivery latency.
//!
//! `cargo bench --bench compression` (env: BENCH_SUBSCRIBERS, default
//! 1000; BENCH_SECONDS, default 10).
//!
//! The clients are lean: one task and one buffer per socket, frames read by
//! hand, and an event's latency taken from when its batch was sent (the
//! k-th event a socket gets is the k-th batch's), with one event in a
//! hundred inflated and checked, so that the client side, on the same two
//! cores, costs as little as it can and the same with and without
//! compression.

#[path = "../tests/common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{env_or, Server};
use flate2::{Decompress, FlushDecompress};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server process's user and system CPU time so far.
fn cpu(pid: u32) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let tick = |n: u64| Duration::from_millis(n * 10);
    (tick(fields[11]), tick(fields[12]))
}

/// A model with its items, as a Laravel broadcast carries it (~2 KiB).
fn order(t: u64) -> String {
    let items: Vec<_> = (0..10)
        .map(|i| {
            json!({
                "id": i + 1, "order_id": 7, "product_id": 1000 + i, "name": format!("Product {i}"),
                "quantity": 1 + i % 3, "unit_price": "19.99",
                "created_at": "2026-12-07T20:00:00.000000Z", "updated_at": "2026-12-07T20:00:00.000000Z",
            })
        })
        .collect();
    json!({"t": t, "order": {"id": 7, "status": "shipped", "customer_id": 42, "items": items}})
        .to_string()
}

/// A masked client text frame (mask 0).
fn text_frame(text: &str) -> Vec<u8> {
    let mut f = vec![0x81, 0x80 | 126];
    f.extend_from_slice(&(text.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(text.as_bytes());
    f
}

/// One whole frame at the start of `buf`: (first byte, payload range, wire
/// length).
fn frame_at(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let (len, start) = match *buf.get(1)? & 0x7F {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (usize::from(n), 2),
    };
    (buf.len() >= start + len).then(|| (buf[0], start..start + len, start + len))
}

struct Lean {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Lean {
    /// Connects, offering permessage-deflate or not, and subscribes.
    async fn open(port: u16, deflate: bool, channel: &str) -> Lean {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let offer = if deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("handshake");
        let mut lean = Lean {
            stream,
            buf: Vec::with_capacity(4096),
        };
        let end = loop {
            if let Some(at) = lean.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            lean.read().await;
        };
        let head = String::from_utf8_lossy(&lean.buf[..end]).to_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert_eq!(head.contains("permessage-deflate"), deflate, "{head}");
        lean.buf.drain(..end);
        let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
        let frame = text_frame(&subscribe.to_string());
        lean.stream.write_all(&frame).await.expect("subscribe");
        loop {
            let (_, text, _) = lean.next().await;
            if text.windows(12).any(|w| w == b"subscription") {
                return lean;
            }
        }
    }

    async fn read(&mut self) {
        let n = self.stream.read_buf(&mut self.buf).await.expect("read");
        assert!(n > 0, "the server closed");
    }

    /// The next frame: its first byte, its (raw) payload and its size on
    /// the wire.
    async fn next(&mut self) -> (u8, Vec<u8>, usize) {
        loop {
            if let Some((first, range, wire)) = frame_at(&self.buf) {
                let payload = self.buf[range].to_vec();
                self.buf.drain(..wire);
                return (first, payload, wire);
            }
            self.read().await;
        }
    }
}

/// A compressed message's text.
fn inflate(mut payload: Vec<u8>) -> Vec<u8> {
    payload.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    let mut text = Vec::with_capacity(8192);
    Decompress::new(false)
        .decompress_vec(&payload, &mut text, FlushDecompress::Sync)
        .expect("inflate");
    text
}

/// The send time in a tick's text: the digits after `\"t\":`.
fn sent_at(text: &[u8]) -> Option<u64> {
    let key = br#"\"t\":"#;
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: Vec<u8> = text[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

struct Run {
    /// The clients' own CPU time (this process).
    clients: Duration,
    deliveries: usize,
    wire_bytes: usize,
    latencies: Vec<u64>,
    user: Duration,
    system: Duration,
}

async fn paced(server: &Server, deflate: bool, subscribers: usize, seconds: usize) -> Run {
    let (channels, rate) = (10, 1000);
    let per_channel = rate * seconds / channels;
    let mut clients = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        clients.push(Lean::open(server.port, deflate, &format!("paced-{}", i % channels)).await);
    }
    // When each batch was sent: a client's k-th event is batch k's (each
    // channel gets one event per batch, in order), so latency needs no
    // look inside the event.
    let sent: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(Vec::with_capacity(per_channel)));
    let collectors: Vec<_> = clients
        .into_iter()
        .map(|mut lean| {
            let sent = sent.clone();
            actix_rt::spawn(async move {
                let (mut arrivals, mut wire_bytes) = (Vec::with_capacity(per_channel), 0);
                while arrivals.len() < per_channel {
                    let (first, payload, wire) = lean.next().await;
                    if first & 0x0F != 0x1 {
                        continue;
                    }
                    let k = arrivals.len();
                    arrivals.push(common::unix_micros());
                    wire_bytes += wire;
                    // Now and then, the event is checked: batch k's.
                    if k % 100 == 0 {
                        let text = if first & 0x40 != 0 {
                            inflate(payload)
                        } else {
                            payload
                        };
                        assert_eq!(sent_at(&text), sent.borrow().get(k).copied(), "event {k}");
                    }
                }
                let sent = sent.borrow();
                let latencies: Vec<u64> = arrivals
                    .iter()
                    .zip(sent.iter())
                    .map(|(arrived, sent)| arrived.saturating_sub(*sent))
                    .collect();
                (latencies, wire_bytes)
            })
        })
        .collect();
    let (user0, system0) = cpu(server.pid());
    let (own_user0, own_system0) = cpu(std::process::id());
    let mut tick =
        actix_rt::time::interval(Duration::from_micros((1_000_000 * channels / rate) as u64));
    for _ in 0..per_channel {
        tick.tick().await;
        let t = common::unix_micros();
        sent.borrow_mut().push(t);
        common::publish_paced_batch(server, channels, "App\\Events\\OrderShipped", &order(t)).await;
    }
    let (own_user1, own_system1) = cpu(std::process::id());
    let mut run = Run {
        clients: own_user1 + own_system1 - own_user0 - own_system0,
        deliveries: 0,
        wire_bytes: 0,
        latencies: Vec::new(),
        user: Duration::ZERO,
        system: Duration::ZERO,
    };
    for c in collectors {
        let (latencies, wire) = c.await.expect("collector");
        run.wire_bytes += wire;
        run.deliveries += latencies.len();
        run.latencies.extend(latencies);
    }
    let (user1, system1) = cpu(server.pid());
    run.user = user1 - user0;
    run.system = system1 - system0;
    run
}

fn print(label: &str, run: &mut Run) {
    run.latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((run.latencies.len() as f64 - 1.0) * p).round() as usize;
        run.latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    let per = |d: Duration| d.as_secs_f64() * 1e6 / run.deliveries.max(1) as f64;
    println!(
        "{label:<8} {:>8} deliveries  {:>5.0} bytes/delivery on the wire  server CPU {:>5.2} µs/delivery (user {:>5.2}, system {:>5.2}; clients {:>5.2})  latency ms p50 {:>6.2} p99 {:>6.2}",
        run.deliveries,
        run.wire_bytes as f64 / run.deliveries.max(1) as f64,
        per(run.user + run.system),
        per(run.user),
        per(run.system),
        per(run.clients),
        pct(0.5),
        pct(0.99),
    );
}

#[actix_rt::main]
async fn main() {
    let subscribers = env_or("BENCH_SUBSCRIBERS", 1000);
    let seconds = env_or("BENCH_SECONDS", 10);
    println!(
        "{subscribers} subscribers over 10 channels, 1000 events/s of {} bytes of data for {seconds} s",
        order(0).len()
    );
    // What compressing one event costs (what Herald pays once per event).
    let frame =
        herald::protocol::messages::frame("App\\Events\\OrderShipped", Some("paced-1"), &order(0));
    let rounds = 2000;
    let started = std::time::Instant::now();
    let mut size = 0;
    for _ in 0..rounds {
        size = herald::protocol::deflate::compress(frame.as_bytes(), 15).len();
    }
    println!(
        "one {}-byte event compresses to {size} bytes in {:.1} µs",
        frame.len(),
        started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
    );
    for deflate in [false, true] {
        let server = Server::start();
        let label = if deflate { "deflate" } else { "plain" };
        let mut run = paced(&server, deflate, subscribers, seconds).await;
        print(label, &mut run);
    }
}
