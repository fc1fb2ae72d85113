//! Turns the bytes a client sent into whole WebSocket messages: each frame's
//! header is checked as soon as it is in (so a header announcing 2^40 bytes
//! is refused at once instead of waited for), fragmented messages are
//! assembled up to the limit, compressed ones (permessage-deflate, when the
//! connection agreed to it) are inflated up to the same limit, and text
//! must be UTF-8.

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

use super::frame::{self, Header};
use crate::protocol::{deflate, Close};

/// What the client sent, as a connection cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(ByteString),
    Ping(Bytes),
    Close,
    /// Binary messages and pongs: Pusher carries nothing in them.
    Ignored,
}

/// A message arriving in continuation frames.
struct Partial {
    text: bool,
    compressed: bool,
    bytes: BytesMut,
}

/// The reading half of a connection's protocol state.
pub struct Reader {
    /// Bytes read and not yet decoded (empty and unallocated when idle).
    pub buffer: BytesMut,
    partial: Option<Partial>,
    max_message: usize,
    /// Whether the connection agreed to permessage-deflate (RSV1 marks a
    /// compressed message; without the agreement it is an error).
    deflate: bool,
}

impl Reader {
    /// A reader of messages up to `max_message` bytes (inflated, when
    /// compressed), starting with the bytes in `buffer`.
    pub fn new(buffer: BytesMut, max_message: usize, deflate: bool) -> Self {
        Reader {
            buffer,
            partial: None,
            max_message,
            deflate,
        }
    }

    /// The next whole message in the buffer; `Ok(None)` when more bytes
    /// are needed. An error is how the connection must close.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, Close> {
        loop {
            let Some(header) = Header::parse(&self.buffer, self.max_message as u64)? else {
                return Ok(self.wait());
            };
            let whole = header.size + header.length as usize;
            if self.buffer.len() < whole {
                return Ok(self.wait());
            }
            // RSV1 is "compressed", on the first frame of a data message
            // of a connection that agreed to it; anywhere else it is an
            // error.
            if header.rsv1
                && (!self.deflate || header.is_control() || header.opcode == frame::CONTINUATION)
            {
                return Err(Close::PROTOCOL_ERROR);
            }
            self.buffer.advance(header.size);
            let mut payload = self.buffer.split_to(header.length as usize);
            frame::unmask(&mut payload, header.mask);
            let message = match header.opcode {
                frame::PING => Incoming::Ping(payload.freeze()),
                frame::PONG => Incoming::Ignored,
                frame::CLOSE => Incoming::Close,
                frame::CONTINUATION => match self.assemble(header.fin, payload)? {
                    Some(message) => message,
                    None => continue,
                },
                opcode => {
                    if self.partial.is_some() {
                        return Err(Close::PROTOCOL_ERROR);
                    }
                    let text = opcode == frame::TEXT;
                    if !header.fin {
                        self.partial = Some(Partial {
                            text,
                            compressed: header.rsv1,
                            bytes: payload,
                        });
                        continue;
                    }
                    self.finish(text, header.rsv1, payload.freeze())?
                }
            };
            return Ok(Some(message));
        }
    }

    /// More bytes are needed: an empty buffer gives its memory back, so
    /// that idle connections hold none.
    fn wait(&mut self) -> Option<Incoming> {
        if self.buffer.is_empty() {
            self.buffer = BytesMut::new();
        }
        None
    }

    /// Adds a continuation frame to the message being assembled; the whole
    /// message once its last frame came.
    fn assemble(&mut self, fin: bool, bytes: BytesMut) -> Result<Option<Incoming>, Close> {
        let Some(partial) = self.partial.as_mut() else {
            return Err(Close::PROTOCOL_ERROR);
        };
        if partial.bytes.len() + bytes.len() > self.max_message {
            return Err(Close::TOO_LARGE);
        }
        partial.bytes.extend_from_slice(&bytes);
        if !fin {
            return Ok(None);
        }
        match self.partial.take() {
            Some(whole) => self
                .finish(whole.text, whole.compressed, whole.bytes.freeze())
                .map(Some),
            None => Err(Close::PROTOCOL_ERROR),
        }
    }

    /// A whole data message: inflated when compressed, checked as text.
    fn finish(&self, text: bool, compressed: bool, bytes: Bytes) -> Result<Incoming, Close> {
        let bytes = if compressed {
            Bytes::from(deflate::inflate(&bytes, self.max_message)?)
        } else {
            bytes
        };
        if !text {
            return Ok(Incoming::Ignored);
        }
        ByteString::try_from(bytes)
            .map(Incoming::Text)
            .map_err(|_| Close::INVALID_TEXT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame (mask 0: the payload is sent as is).
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut f = vec![
            u8::from(fin) << 7 | opcode,
            0x80 | payload.len() as u8,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn reader(bytes: &[u8], max: usize) -> Reader {
        Reader::new(BytesMut::from(bytes), max, false)
    }

    /// A masked, compressed client frame.
    fn compressed_frame(payload: &[u8]) -> Vec<u8> {
        let deflated = deflate::compress(payload, 15);
        assert!(deflated.len() < 126);
        let mut f = vec![0xC1, 0x80 | deflated.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(&deflated);
        f
    }

    #[test]
    fn whole_and_fragmented_messages() {
        let mut bytes = frame(true, 0x1, b"hello");
        bytes.extend(frame(false, 0x1, b"hel"));
        bytes.extend(frame(true, 0x9, b"p")); // a ping between fragments
        bytes.extend(frame(true, 0x0, b"lo"));
        bytes.extend(frame(true, 0x2, b"bin"));
        let mut r = reader(&bytes, 100);
        assert_eq!(r.next_message(), Ok(Some(Incoming::Text("hello".into()))));
        assert_eq!(
            r.next_message(),
            Ok(Some(Incoming::Ping(Bytes::from_static(b"p"))))
        );
        assert_eq!(r.next_message(), Ok(Some(Incoming::Text("hello".into()))));
        assert_eq!(r.next_message(), Ok(Some(Incoming::Ignored)));
        assert_eq!(r.next_message(), Ok(None));
        assert_eq!(r.buffer.capacity(), 0, "an empty buffer is released");
    }

    #[test]
    fn limits_and_bad_text_close_the_connection() {
        assert_eq!(
            reader(&frame(true, 0x1, &[b'x'; 11]), 10).next_message(),
            Err(Close::TOO_LARGE)
        );
        let mut fragments = frame(false, 0x1, &[b'x'; 6]);
        fragments.extend(frame(true, 0x0, &[b'x'; 6]));
        assert_eq!(reader(&fragments, 10).next_message(), Err(Close::TOO_LARGE));
        assert_eq!(
            reader(&frame(true, 0x1, &[0xff, 0xfe]), 10).next_message(),
            Err(Close::INVALID_TEXT)
        );
        assert_eq!(
            reader(&frame(true, 0x0, b"x"), 10).next_message(),
            Err(Close::PROTOCOL_ERROR)
        );
        // A header announcing more than the limit is refused at once,
        // without waiting for the payload.
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(reader(&huge, 10).next_message(), Err(Close::TOO_LARGE));
        // Half a frame: more bytes needed.
        let whole = frame(true, 0x1, b"hello");
        assert_eq!(reader(&whole[..4], 10).next_message(), Ok(None));
    }

    #[test]
    fn compressed_messages_only_where_agreed() {
        let hello = compressed_frame(br#"{"event":"pusher:ping","data":{}}"#);
        let mut r = Reader::new(BytesMut::from(&hello[..]), 100, true);
        assert_eq!(
            r.next_message(),
            Ok(Some(Incoming::Text(
                r#"{"event":"pusher:ping","data":{}}"#.into()
            )))
        );
        // Without the agreement, RSV1 is a protocol error.
        assert_eq!(
            reader(&hello, 100).next_message(),
            Err(Close::PROTOCOL_ERROR)
        );
        // Never on a control frame or a continuation.
        let ping = [0xC9, 0x80, 0, 0, 0, 0];
        assert_eq!(
            Reader::new(BytesMut::from(&ping[..]), 100, true).next_message(),
            Err(Close::PROTOCOL_ERROR)
        );
        let mut fragments = frame(false, 0x1, b"a");
        fragments.extend([0xC0, 0x81, 0, 0, 0, 0, b'b']);
        assert_eq!(
            Reader::new(BytesMut::from(&fragments[..]), 100, true).next_message(),
            Err(Close::PROTOCOL_ERROR)
        );
        // The limit applies to what it inflates to.
        let big = compressed_frame(&[b'x'; 101]);
        assert_eq!(
            Reader::new(BytesMut::from(&big[..]), 100, true).next_message(),
            Err(Close::TOO_LARGE)
        );
    }
}
