//! A WebSocket opened by hand over a raw TCP socket, so a test can send
//! bytes no client library would (and see exactly what came back).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::Server;

/// A WebSocket opened by hand, so a test can send bytes no client library
/// would.
pub struct RawSocket {
    pub stream: TcpStream,
    /// Bytes read after the handshake.
    pub read: Vec<u8>,
    /// The handshake's answer (status line and headers).
    pub head: String,
}

impl RawSocket {
    pub fn open(server: &Server, path: &str) -> RawSocket {
        RawSocket::open_with(server, path, "")
    }

    /// Opens with more request headers (`headers`: lines ending in CRLF).
    pub fn open_with(server: &Server, path: &str, headers: &str) -> RawSocket {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
        )
        .expect("handshake");
        let mut socket = RawSocket {
            stream,
            read: Vec::new(),
            head: String::new(),
        };
        socket.read_until(|r| find(r, b"\r\n\r\n").is_some());
        let end = find(&socket.read, b"\r\n\r\n").unwrap_or(0) + 4;
        assert!(
            socket.read.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&socket.read)
        );
        socket.head = String::from_utf8_lossy(&socket.read[..end]).into_owned();
        socket.read.drain(..end);
        socket
    }

    /// Reads until `done` says so or the peer closes; panics after 5 s.
    pub fn read_until(&mut self, done: impl Fn(&[u8]) -> bool) {
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
    pub fn closed_within(&mut self, limit: Duration) -> bool {
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
    pub fn close_code(&self) -> Option<u16> {
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

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
