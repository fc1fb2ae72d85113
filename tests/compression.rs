//! permessage-deflate over raw sockets against the real binary: what the
//! handshake agrees to (and when it agrees to nothing), which frames go
//! compressed, compressed client frames, RSV1 where nothing was agreed, and
//! a compression bomb; and gzip on the polling endpoint. (Real clients,
//! pusher-js, `ws` and Chromium, are in `tests/e2e/compression.test.mjs`.)

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::raw_socket::{find, RawSocket};
use common::{rss_kib, trigger, Server};
use flate2::read::GzDecoder;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};

const PATH: &str = "/app/app-key?protocol=7";
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const AGREED: &str = "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A masked client frame (mask 0: the payload goes as is).
fn client_frame(opcode: u8, compressed: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | if compressed { 0x40 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&u16::try_from(n).expect("short enough").to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// `bytes` deflated on their own, without the trailing 00 00 FF FF.
fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(bytes.len() / 100 + 1024);
    let mut rest = bytes;
    while !rest.is_empty() || out.len() == out.capacity() {
        let before = compress.total_in();
        compress
            .compress_vec(rest, &mut out, FlushCompress::Sync)
            .expect("deflate");
        rest = &rest[(compress.total_in() - before) as usize..];
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
    }
    assert!(out.ends_with(&[0, 0, 0xFF, 0xFF]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(bytes: &[u8]) -> Vec<u8> {
    let mut input = bytes.to_vec();
    input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    let mut out = Vec::with_capacity(64 * 1024);
    Decompress::new(false)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("inflate");
    out
}

/// The whole server frames in `bytes`: whether each was compressed (RSV1),
/// and its JSON (inflated when compressed).
fn text_frames(bytes: &[u8]) -> Vec<(bool, Value)> {
    let mut frames = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 2 {
        let (len, start) = match rest[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 => break,
            n => (usize::from(n), 2),
        };
        if rest.len() < start + len {
            break;
        }
        let payload = &rest[start..start + len];
        if rest[0] & 0x0F == 0x1 {
            let compressed = rest[0] & 0x40 != 0;
            let text = if compressed {
                inflate(payload)
            } else {
                payload.to_vec()
            };
            frames.push((compressed, serde_json::from_slice(&text).expect("JSON")));
        }
        rest = &rest[start + len..];
    }
    frames
}

/// The frame whose event is `event`, once it came.
fn wait_for(socket: &mut RawSocket, event: &str) -> (bool, Value) {
    socket.read_until(|r| text_frames(r).iter().any(|(_, f)| f["event"] == event));
    text_frames(&socket.read)
        .into_iter()
        .find(|(_, f)| f["event"] == event)
        .unwrap_or_else(|| panic!("no {event}"))
}

#[test]
fn the_handshake_agrees_only_when_on_and_offered_terms_herald_can_keep() {
    let server = Server::start();
    let agreed = RawSocket::open_with(&server, PATH, OFFER);
    assert!(
        agreed.head.to_lowercase().contains(AGREED),
        "{}",
        agreed.head
    );
    for (socket, why) in [
        (RawSocket::open(&server, PATH), "nothing offered"),
        (
            RawSocket::open_with(
                &server,
                PATH,
                "Sec-WebSocket-Extensions: permessage-deflate; unknown_parameter\r\n",
            ),
            "an unknown parameter",
        ),
    ] {
        assert!(
            !socket
                .head
                .to_lowercase()
                .contains("sec-websocket-extensions"),
            "{why}: {}",
            socket.head
        );
    }
    let off = Server::launch(None, &[("HERALD_SERVER__COMPRESSION", "false")]);
    let socket = RawSocket::open_with(&off, PATH, OFFER);
    assert!(
        !socket
            .head
            .to_lowercase()
            .contains("sec-websocket-extensions"),
        "compression = false: {}",
        socket.head
    );
}

#[actix_rt::test]
async fn large_frames_go_compressed_small_ones_plain_and_compressed_client_frames_are_read() {
    let server = Server::start();
    let mut socket = RawSocket::open_with(&server, PATH, OFFER);
    let (compressed, _) = wait_for(&mut socket, "pusher:connection_established");
    assert!(!compressed, "below compression_min_bytes: plain");
    // A compressed subscribe.
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": "orders"}});
    let frame = client_frame(0x1, true, &deflate(subscribe.to_string().as_bytes()));
    socket.stream.write_all(&frame).expect("subscribe");
    wait_for(&mut socket, "pusher_internal:subscription_succeeded");
    let data =
        json!({"order": {"items": vec![json!({"name": "Product", "unit_price": "19.99"}); 40]}});
    let r = trigger(
        &server,
        json!({"name": "shipped", "channel": "orders", "data": data.to_string()}),
    )
    .await;
    assert_eq!(r.status, 200);
    let (compressed, event) = wait_for(&mut socket, "shipped");
    assert!(compressed, "a 2 KiB event goes compressed");
    assert_eq!(event["data"], data.to_string());
}

#[test]
fn rsv1_where_nothing_was_agreed_is_a_protocol_error() {
    let server = Server::start();
    for headers in ["", "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"] {
        let mut socket = RawSocket::open_with(&server, PATH, headers);
        socket.read_until(|r| find(r, b"connection_established").is_some());
        let ping = json!({"event": "pusher:ping", "data": {}}).to_string();
        let frame = client_frame(0x1, true, &deflate(ping.as_bytes()));
        socket.stream.write_all(&frame).expect("frame");
        assert!(socket.closed_within(Duration::from_secs(5)), "still open");
        assert_eq!(socket.close_code(), Some(1002));
    }
    // Nor on a control frame where it was.
    let mut socket = RawSocket::open_with(&server, PATH, OFFER);
    socket.read_until(|r| find(r, b"connection_established").is_some());
    let mut ping = client_frame(0x9, false, b"hi");
    ping[0] |= 0x40;
    socket.stream.write_all(&ping).expect("ping");
    assert!(socket.closed_within(Duration::from_secs(5)), "still open");
    assert_eq!(socket.close_code(), Some(1002));
}

#[test]
fn a_compression_bomb_is_refused_at_the_limit_and_memory_stays_bounded() {
    let server = Server::start();
    let mut socket = RawSocket::open_with(&server, PATH, OFFER);
    socket.read_until(|r| find(r, b"connection_established").is_some());
    let before = rss_kib(server.pid());
    // Under 64 KiB on the wire (the message limit), 60 MiB inflated.
    let bomb = deflate(&vec![b' '; 60 << 20]);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    socket
        .stream
        .write_all(&client_frame(0x1, true, &bomb))
        .expect("bomb");
    assert!(socket.closed_within(Duration::from_secs(5)), "still open");
    assert_eq!(socket.close_code(), Some(1009));
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(grown < 16 * 1024, "server grew by {grown} KiB");
    // The server is fine: a new connection is served.
    let mut fresh = RawSocket::open(&server, PATH);
    let mut byte = [0u8; 1];
    fresh.stream.read_exact(&mut byte).expect("served");
}

/// A browser poll of `news` with `Accept-Encoding: accept` (if any): the
/// `Content-Encoding` of the answer and its JSON, gunzipped as needed.
async fn poll(server: &Server, accept: Option<&str>) -> (Option<String>, Value) {
    let url = format!(
        "http://127.0.0.1:{}/app/app-key/poll/v1?channels=news",
        server.port
    );
    let mut request = awc::Client::new().get(url);
    if let Some(accept) = accept {
        request = request.insert_header(("Accept-Encoding", accept));
    }
    let mut response = request.send().await.expect("poll");
    assert_eq!(response.status().as_u16(), 200);
    let encoding = response
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.body().await.expect("body").to_vec();
    let json = if encoding.as_deref() == Some("gzip") {
        let mut text = Vec::new();
        GzDecoder::new(&body[..])
            .read_to_end(&mut text)
            .expect("gunzip");
        text
    } else {
        body
    };
    (encoding, serde_json::from_slice(&json).expect("JSON"))
}

#[actix_rt::test]
async fn the_polling_endpoint_gzips_large_answers_for_clients_that_take_it() {
    for (server, on) in [
        (Server::start(), true),
        (
            Server::launch(None, &[("HERALD_SERVER__COMPRESSION", "false")]),
            false,
        ),
    ] {
        let data = "lorem ipsum ".repeat(100);
        let r = trigger(
            &server,
            json!({"name": "e", "channel": "news", "data": data}),
        )
        .await;
        assert_eq!(r.status, 200);
        let (encoding, gzipped) = poll(&server, Some("gzip, deflate, br")).await;
        assert_eq!(encoding.as_deref(), on.then_some("gzip"));
        assert_eq!(gzipped["events"][0]["data"], data);
        let (encoding, plain) = poll(&server, None).await;
        assert_eq!(encoding, None, "not asked for");
        assert_eq!(plain, gzipped);
    }
}
