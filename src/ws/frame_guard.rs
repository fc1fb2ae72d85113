//! A guard on the raw bytes of a WebSocket connection, before any frame is
//! buffered: it reads each frame header as it streams past and refuses a
//! message whose announced length (or, for a fragmented message, running
//! total) is above the app's `max_message_bytes`.
//!
//! actix-http's codec checks a frame's size only once the whole frame is in
//! memory, so without this guard a header announcing 2^40 bytes followed by
//! a stream of payload would be buffered until memory runs out. The guard
//! only inspects bytes; it passes every chunk through unchanged.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// Where the guard is in the byte stream.
#[derive(Debug, Default)]
pub struct FrameHeaders {
    max: u64,
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes of the current frame still to pass.
    remaining: u64,
    /// Bytes of the current (possibly fragmented) data message so far.
    message: u64,
}

impl FrameHeaders {
    pub fn new(max: usize) -> Self {
        FrameHeaders {
            max: max as u64,
            ..FrameHeaders::default()
        }
    }

    /// Reads `bytes` (the next piece of the stream); an error as soon as a
    /// header announces too much.
    pub fn check(&mut self, mut bytes: &[u8]) -> Result<(), PayloadError> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(bytes.len() as u64);
                self.remaining -= skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            // Collect the header: 2 bytes, then the extended length and the
            // mask key, whose sizes the first 2 bytes announce.
            let needed = if self.header_len < 2 {
                2
            } else {
                header_size(self.header[1])
            };
            let take = (needed - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len >= 2 && self.header_len == header_size(self.header[1]) {
                self.frame_complete()?;
            }
        }
        Ok(())
    }

    /// A whole header is in: check the length and start skipping payload.
    fn frame_complete(&mut self) -> Result<(), PayloadError> {
        let length = match self.header[1] & 0x7F {
            126 => u16::from_be_bytes([self.header[2], self.header[3]]) as u64,
            127 => u64::from_be_bytes(self.header[2..10].try_into().unwrap_or([0xFF; 8])),
            n => n as u64,
        };
        let opcode = self.header[0] & 0x0F;
        match opcode {
            // Continuation: counts towards the message it continues.
            0x0 => self.message = self.message.saturating_add(length),
            // Text or binary: a new message.
            0x1 | 0x2 => self.message = length,
            // Control frames are at most 125 bytes; the codec refuses more.
            _ => {}
        }
        if length > self.max || self.message > self.max {
            return Err(PayloadError::Overflow);
        }
        self.remaining = length;
        self.header_len = 0;
        Ok(())
    }
}

/// The full header size announced by the second header byte.
fn header_size(second: u8) -> usize {
    let extended = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// A payload stream checked by [`FrameHeaders`]; it ends after an error.
pub struct Guarded<S> {
    inner: S,
    headers: FrameHeaders,
    failed: bool,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, max_message_bytes: usize) -> Self {
        Guarded {
            inner,
            headers: FrameHeaders::new(max_message_bytes),
            failed: false,
        }
    }
}

impl<S> Stream for Guarded<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => match this.headers.check(&bytes) {
                Ok(()) => Poll::Ready(Some(Ok(bytes))),
                Err(e) => {
                    this.failed = true;
                    Poll::Ready(Some(Err(e)))
                }
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header for `length` bytes with `opcode`.
    fn header(opcode: u8, fin: bool, length: u64) -> Vec<u8> {
        let mut h = vec![opcode | if fin { 0x80 } else { 0 }];
        match length {
            0..=125 => h.push(0x80 | length as u8),
            126..=0xFFFF => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(length as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&length.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(opcode: u8, fin: bool, length: usize) -> Vec<u8> {
        let mut f = header(opcode, fin, length as u64);
        f.extend(std::iter::repeat_n(b'x', length));
        f
    }

    #[test]
    fn frames_within_the_limit_pass_in_any_chunking() {
        let mut stream = Vec::new();
        stream.extend(frame(0x1, true, 10));
        stream.extend(frame(0x9, true, 4)); // ping
        stream.extend(frame(0x1, true, 300));
        stream.extend(frame(0x2, true, 1000));
        stream.extend(frame(0x1, false, 400));
        stream.extend(frame(0x0, true, 600));
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            let mut guard = FrameHeaders::new(1000);
            for piece in stream.chunks(chunk) {
                guard.check(piece).expect("within the limit");
            }
        }
    }

    #[test]
    fn an_announced_length_above_the_limit_is_refused_at_the_header() {
        for chunk in [1, 3, 14] {
            let mut guard = FrameHeaders::new(1000);
            let h = header(0x1, true, 1 << 40);
            let result = h.chunks(chunk).try_for_each(|piece| guard.check(piece));
            assert!(
                matches!(result, Err(PayloadError::Overflow)),
                "chunk {chunk}"
            );
        }
        let mut guard = FrameHeaders::new(1000);
        assert!(guard.check(&header(0x2, true, 1001)).is_err());
    }

    #[test]
    fn a_fragmented_message_counts_as_a_whole() {
        let mut guard = FrameHeaders::new(1000);
        guard.check(&frame(0x1, false, 600)).expect("first part");
        // A control frame between fragments does not reset the count.
        guard.check(&frame(0x9, true, 2)).expect("ping");
        assert!(guard.check(&header(0x0, true, 500)).is_err());
    }
}
