//! A lean WebSocket client for many connections: a raw TCP socket and a
//! small read buffer per connection, no client library, so a test process
//! holds thousands of them. It speaks just enough of RFC 6455 for Pusher
//! text frames: masked text frames out, unmasked frames in (WebSocket
//! pings and `pusher:ping` are answered).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Lean {
    stream: TcpStream,
    /// Bytes read and not yet made into frames.
    pending: Vec<u8>,
    /// How long a read may wait (`None`: as long as it takes).
    patience: Option<Duration>,
}

const WAIT: Duration = Duration::from_secs(30);

impl Lean {
    /// Opens `/app/{key}` and reads `connection_established`.
    pub async fn connect(port: u16, key: &str) -> std::io::Result<Lean> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        Lean::handshake(stream, key).await
    }

    /// Opens `/app/{key}` from the loopback address `source` (the kernel
    /// picks the port when connecting, so each source address has the
    /// whole port range for each server port).
    pub async fn connect_from(
        source: std::net::Ipv4Addr,
        port: u16,
        key: &str,
    ) -> std::io::Result<Lean> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        {
            use std::os::fd::AsRawFd;
            let yes: libc::c_int = 1;
            // SAFETY: a valid socket and a pointer to an int of its size.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&yes as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        socket.bind((source, 0).into())?;
        let stream = socket.connect(([127, 0, 0, 1], port).into()).await?;
        Lean::handshake(stream, key).await
    }

    /// Waits for messages without a time limit from now on.
    pub fn be_patient(&mut self) {
        self.patience = None;
    }

    async fn handshake(mut stream: TcpStream, key: &str) -> std::io::Result<Lean> {
        stream.set_nodelay(true)?;
        // Closed with a reset: thousands of connections ending at once must
        // not leave thousands of ports in TIME_WAIT for the tests after.
        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
        let request = format!(
            "GET /app/{key}?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut lean = Lean {
            stream,
            pending: Vec::new(),
            patience: Some(WAIT),
        };
        // The handshake's answer ends with an empty line.
        loop {
            if let Some(end) = lean.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                if !lean.pending.starts_with(b"HTTP/1.1 101") {
                    return Err(std::io::Error::other("upgrade refused"));
                }
                lean.pending.drain(..end + 4);
                break;
            }
            lean.fill().await?;
        }
        let hello = lean.next_text().await?;
        if !hello.contains("pusher:connection_established") {
            return Err(std::io::Error::other(hello));
        }
        Ok(lean)
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 512];
        let n = match self.patience {
            Some(wait) => tokio::time::timeout(wait, self.stream.read(&mut chunk))
                .await
                .map_err(|_| std::io::Error::other("nothing read in time"))??,
            None => self.stream.read(&mut chunk).await?,
        };
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.pending.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Sends a text frame (masked, as a client must).
    pub async fn send(&mut self, text: &str) -> std::io::Result<()> {
        let payload = text.as_bytes();
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await
    }

    /// The next text message (pings answered on the way).
    pub async fn next_text(&mut self) -> std::io::Result<String> {
        loop {
            if let Some((opcode, payload, used)) = parse(&self.pending) {
                self.pending.drain(..used);
                match opcode {
                    0x1 => return String::from_utf8(payload).map_err(std::io::Error::other),
                    0x8 => return Err(std::io::Error::other("closed")),
                    0x9 => {
                        let mut pong = vec![0x8A, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                        pong.extend_from_slice(&payload);
                        self.stream.write_all(&pong).await?;
                    }
                    _ => {}
                }
                continue;
            }
            self.fill().await?;
        }
    }

    /// The next text message containing `needle` (the server's
    /// `pusher:ping`s answered meanwhile).
    pub async fn expect(&mut self, needle: &str) -> std::io::Result<String> {
        loop {
            let text = self.next_text().await?;
            if text.contains(needle) {
                return Ok(text);
            }
            if text.contains("\"pusher:ping\"") {
                self.send(r#"{"event":"pusher:pong","data":{}}"#).await?;
            }
        }
    }

    /// Subscribes to a public channel and waits for the answer.
    pub async fn subscribe(&mut self, channel: &str) -> std::io::Result<()> {
        self.send(&format!(
            r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#
        ))
        .await?;
        self.expect("subscription_succeeded").await.map(|_| ())
    }
}

/// One unmasked frame at the start of `bytes`: opcode, payload and the
/// bytes it took; `None` until it is all there.
fn parse(bytes: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&first, rest) = bytes.split_first()?;
    let (&second, rest) = rest.split_first()?;
    let (len, header) = match second & 0x7f {
        126 => (
            u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize,
            4,
        ),
        127 => {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(rest.get(..8)?);
            (u64::from_be_bytes(eight) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = bytes.get(header..header + len)?.to_vec();
    Some((first & 0x0f, payload, header + len))
}
