//! Turns the bytes a client sent into whole WebSocket messages: each frame's
//! header is checked against the limit as soon as it is in (actix-http's
//! codec would buffer a whole frame before checking its size, so a header
//! announcing 2^40 bytes would make it wait for them), frames are decoded
//! by the codec, fragmented messages are assembled up to the same limit,
//! and text must be UTF-8.

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, Item, ProtocolError};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::protocol::Close;

/// What the client sent, as a connection cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(ByteString),
    Ping(Bytes),
    Close,
    /// Binary messages and pongs: Pusher carries nothing in them.
    Ignored,
}

/// The reading half of a connection's protocol state.
pub struct Reader {
    codec: Codec,
    /// Bytes read and not yet decoded (empty and unallocated when idle).
    pub buffer: BytesMut,
    /// A message arriving in continuation frames: whether it is text, and
    /// its bytes so far.
    partial: Option<(bool, BytesMut)>,
    max_message: usize,
}

impl Reader {
    /// A reader of messages up to `max_message` bytes, starting with the
    /// bytes in `buffer`.
    pub fn new(buffer: BytesMut, max_message: usize) -> Self {
        Reader {
            codec: Codec::new().max_size(max_message),
            buffer,
            partial: None,
            max_message,
        }
    }

    /// The next whole message in the buffer; `Ok(None)` when more bytes
    /// are needed. An error is how the connection must close.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, Close> {
        loop {
            if announced_length(&self.buffer).is_some_and(|n| n > self.max_message as u64) {
                return Err(Close::TOO_LARGE);
            }
            let frame = match self.codec.decode(&mut self.buffer) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    if self.buffer.is_empty() {
                        // Give the memory back: idle connections hold none.
                        self.buffer = BytesMut::new();
                    }
                    return Ok(None);
                }
                Err(ProtocolError::Overflow) => return Err(Close::TOO_LARGE),
                Err(_) => return Err(Close::PROTOCOL_ERROR),
            };
            return Ok(Some(match frame {
                Frame::Text(bytes) => Incoming::Text(text(bytes)?),
                Frame::Binary(_) | Frame::Pong(_) => Incoming::Ignored,
                Frame::Ping(bytes) => Incoming::Ping(bytes),
                Frame::Close(_) => Incoming::Close,
                Frame::Continuation(item) => match self.assemble(item)? {
                    Some(message) => message,
                    None => continue,
                },
            }));
        }
    }

    /// Adds a continuation frame to the message being assembled; the whole
    /// message once its last frame came.
    fn assemble(&mut self, item: Item) -> Result<Option<Incoming>, Close> {
        let (first, last, bytes) = match item {
            Item::FirstText(bytes) => (Some(true), false, bytes),
            Item::FirstBinary(bytes) => (Some(false), false, bytes),
            Item::Continue(bytes) => (None, false, bytes),
            Item::Last(bytes) => (None, true, bytes),
        };
        if let Some(is_text) = first {
            self.partial = Some((is_text, BytesMut::new()));
        }
        // (The codec refuses a continuation that starts nothing.)
        let Some((_, so_far)) = self.partial.as_mut() else {
            return Err(Close::PROTOCOL_ERROR);
        };
        if so_far.len() + bytes.len() > self.max_message {
            return Err(Close::TOO_LARGE);
        }
        so_far.extend_from_slice(&bytes);
        if !last {
            return Ok(None);
        }
        match self.partial.take() {
            Some((true, whole)) => Ok(Some(Incoming::Text(text(whole.freeze())?))),
            _ => Ok(Some(Incoming::Ignored)),
        }
    }
}

/// The payload length the frame at the start of `bytes` announces, once its
/// header is in.
fn announced_length(bytes: &[u8]) -> Option<u64> {
    let short = bytes.get(1)? & 0x7f;
    match short {
        126 => Some(u64::from(u16::from_be_bytes([
            *bytes.get(2)?,
            *bytes.get(3)?,
        ]))),
        127 => Some(u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)),
        n => Some(u64::from(n)),
    }
}

/// The text of a text message, which must be UTF-8.
fn text(bytes: Bytes) -> Result<ByteString, Close> {
    ByteString::try_from(bytes).map_err(|_| Close::INVALID_TEXT)
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
        Reader::new(BytesMut::from(bytes), max)
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
}
