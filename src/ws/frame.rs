//! The WebSocket frame format (RFC 6455 §5.2) as Herald reads and writes
//! it: the header of a client frame, checked as soon as it is in, and the
//! encoding of server frames, with RSV1 set on compressed ones
//! (permessage-deflate, RFC 7692). actix-http's codec refuses RSV1 on every
//! frame, so Herald reads and writes frames itself.

use bytes::BytesMut;

use crate::protocol::Close;

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A client frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// "Per-message compressed" under permessage-deflate.
    pub rsv1: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    /// Bytes of header before the payload.
    pub size: usize,
    /// Payload bytes the header announces.
    pub length: u64,
}

impl Header {
    pub fn is_control(&self) -> bool {
        self.opcode >= CLOSE
    }

    /// Reads the header at the start of `bytes`: `Ok(None)` until all of it
    /// is in. Everything a header alone can break is refused as soon as
    /// the bytes that show it are in: RSV2 and RSV3 (no extension defines
    /// them), unknown opcodes, unmasked client frames, fragmented or
    /// oversized control frames, and a length above `max` (1009). (Whether
    /// RSV1 may be set depends on the connection: see `reader`.)
    pub fn parse(bytes: &[u8], max: u64) -> Result<Option<Header>, Close> {
        let [first, second, ..] = *bytes else {
            return Ok(None);
        };
        let fin = first & 0x80 != 0;
        let rsv1 = first & 0x40 != 0;
        let opcode = first & 0x0F;
        if first & 0x30 != 0 || !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) || second & 0x80 == 0 {
            return Err(Close::PROTOCOL_ERROR);
        }
        let (length, at) = match second & 0x7F {
            126 => match bytes.get(2..4) {
                Some(n) => (u64::from(u16::from_be_bytes([n[0], n[1]])), 4),
                None => return Ok(None),
            },
            127 => match bytes.get(2..10) {
                Some(n) => {
                    let mut be = [0; 8];
                    be.copy_from_slice(n);
                    (u64::from_be_bytes(be), 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if opcode >= CLOSE && (!fin || length > 125) {
            return Err(Close::PROTOCOL_ERROR);
        }
        if length > max {
            return Err(Close::TOO_LARGE);
        }
        let Some(mask) = bytes.get(at..at + 4) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            rsv1,
            opcode,
            mask: [mask[0], mask[1], mask[2], mask[3]],
            size: at + 4,
            length,
        }))
    }
}

/// Unmasks a client frame's payload in place.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Appends a server frame (final, unmasked) to `out`.
pub fn encode(out: &mut BytesMut, opcode: u8, compressed: bool, payload: &[u8]) {
    let first = 0x80 | if compressed { 0x40 } else { 0 } | opcode;
    let len = payload.len();
    out.reserve(len + 10);
    out.extend_from_slice(&[first]);
    if len < 126 {
        out.extend_from_slice(&[len as u8]);
    } else if let Ok(short) = u16::try_from(len) {
        out.extend_from_slice(&[126]);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.extend_from_slice(&[127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (at most 123 bytes of it,
/// cut at a character boundary) to `out`; without a code, an empty close.
pub fn encode_close(out: &mut BytesMut, close: Option<(u16, &str)>) {
    let mut payload = Vec::new();
    if let Some((code, reason)) = close {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..end]);
    }
    encode(out, CLOSE, false, &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_when_whole_and_checked() {
        let masked = [0x81, 0x85, 1, 2, 3, 4];
        assert_eq!(Header::parse(&masked[..5], 100), Ok(None));
        let Ok(Some(h)) = Header::parse(&masked, 100) else {
            panic!("a header");
        };
        assert_eq!(
            (h.fin, h.rsv1, h.opcode, h.size, h.length),
            (true, false, TEXT, 6, 5)
        );
        let compressed = [0xC1, 0xFE, 0x01, 0x00, 0, 0, 0, 0];
        let Ok(Some(h)) = Header::parse(&compressed, 1000) else {
            panic!("a header");
        };
        assert!(h.rsv1);
        assert_eq!((h.size, h.length), (8, 256));
        for bad in [
            [0xA1, 0x80, 0, 0, 0, 0],   // RSV2
            [0x91, 0x80, 0, 0, 0, 0],   // RSV3
            [0x83, 0x80, 0, 0, 0, 0],   // opcode 3
            [0x81, 0x00, 0, 0, 0, 0],   // not masked
            [0x09, 0x80, 0, 0, 0, 0],   // a fragmented ping
            [0x89, 0xFE, 0, 126, 0, 0], // a ping of 126 bytes
        ] {
            assert_eq!(
                Header::parse(&bad, 1000),
                Err(Close::PROTOCOL_ERROR),
                "{bad:x?}"
            );
        }
        // Too long: known before the mask is in.
        assert_eq!(
            Header::parse(&[0x81, 0xFE, 1, 0], 255),
            Err(Close::TOO_LARGE)
        );
    }

    #[test]
    fn frames_are_encoded_with_the_shortest_length() {
        let mut out = BytesMut::new();
        encode(&mut out, TEXT, true, b"abc");
        assert_eq!(&out[..], &[0xC1, 3, b'a', b'b', b'c']);
        let mut out = BytesMut::new();
        encode(&mut out, TEXT, false, &[0; 300]);
        assert_eq!(&out[..4], &[0x81, 126, 1, 44]);
        let mut out = BytesMut::new();
        encode(&mut out, BINARY, false, &vec![0; 70_000]);
        assert_eq!(&out[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        let mut out = BytesMut::new();
        encode_close(&mut out, Some((4009, &"é".repeat(100))));
        assert_eq!(out[1], 2 + 122, "cut at a character boundary");
    }
}
