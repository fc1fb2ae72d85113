//! Hostile and broken clients against the real binary over raw sockets:
//! every input has a bounded cost, and every connection that ends ends its
//! TCP socket too. Memory and time bounds here are generous ceilings, not
//! benchmarks.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

/// The server's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A WebSocket opened by hand, so a test can send bytes no client library
/// would.
struct RawSocket {
    stream: TcpStream,
    /// Bytes read after the handshake.
    read: Vec<u8>,
}

impl RawSocket {
    fn open(server: &Server, path: &str) -> RawSocket {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("handshake");
        let mut socket = RawSocket {
            stream,
            read: Vec::new(),
        };
        socket.read_until(|r| find(r, b"\r\n\r\n").is_some());
        let end = find(&socket.read, b"\r\n\r\n").unwrap_or(0) + 4;
        assert!(
            socket.read.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&socket.read)
        );
        socket.read.drain(..end);
        socket
    }

    /// Reads until `done` says so or the peer closes; panics after 5 s.
    fn read_until(&mut self, done: impl Fn(&[u8]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 16384];
        while !done(&self.read) {
            assert!(Instant::now() < deadline, "timed out reading");
            match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.read.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    }

    /// Waits until the server closes the TCP connection; true if it did
    /// within `limit`.
    fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut buf = [0u8; 65536];
        while Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.read.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// The code of the close frame the server sent, if any.
    fn close_code(&self) -> Option<u16> {
        let mut rest = &self.read[..];
        while rest.len() >= 2 {
            let opcode = rest[0] & 0x0F;
            let (len, start) = match rest[1] & 0x7F {
                126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(rest[2..10].try_into().ok()?) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            if rest.len() < start + len {
                return None;
            }
            if opcode == 0x8 && len >= 2 {
                return Some(u16::from_be_bytes([rest[start], rest[start + 1]]));
            }
            rest = &rest[start + len..];
        }
        None
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A masked client frame header announcing `length` bytes.
fn frame_header(opcode: u8, length: u64) -> Vec<u8> {
    let mut h = vec![0x80 | opcode, 0x80 | 127];
    h.extend_from_slice(&length.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

#[test]
fn an_oversized_frame_is_refused_at_its_header_and_never_buffered() {
    let server = Server::start();
    let mut socket = RawSocket::open(&server, "/app/app-key?protocol=7");
    socket.read_until(|r| find(r, b"connection_established").is_some());
    let before = rss_kib(server.pid());

    // Announce 2^40 bytes, then keep sending payload: 64 MiB at most.
    socket
        .stream
        .write_all(&frame_header(0x1, 1 << 40))
        .expect("header");
    let chunk = vec![b'x'; 64 * 1024];
    socket
        .stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    for _ in 0..1024 {
        if socket.stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(grown < 16 * 1024, "server grew by {grown} KiB");
    assert!(
        socket.closed_within(Duration::from_secs(5)),
        "socket still open"
    );
    assert_eq!(socket.close_code(), Some(1009));
}
