//! permessage-deflate (RFC 7692): what Herald agrees to at the upgrade,
//! compressing each broadcast once for every subscriber, and inflating
//! what a client compressed without letting it inflate past the limit.
//!
//! Herald always answers with `server_no_context_takeover` and
//! `client_no_context_takeover`: every message is compressed on its own, in
//! both directions. That costs some ratio on small messages, and buys the
//! two things that matter here:
//! * a broadcast's compressed bytes are the same for every subscriber, so
//!   they are made once per event (see [`compressed`]) instead of once per
//!   delivery through each connection's own compressor;
//! * no connection keeps a compressor or inflater (about 300 KiB and 40 KiB
//!   in zlib) between messages: an idle compressed connection costs what an
//!   idle plain one does.

use std::cell::RefCell;
use std::sync::Mutex;

use bytes::Bytes;
use bytestring::ByteString;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::protocol::Close;

/// What a connection agreed to: the window its compressed frames may use
/// (what the client asked for with `server_max_window_bits`, 15 if it did
/// not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    pub window_bits: u8,
}

impl Deflate {
    /// The first offer in a `Sec-WebSocket-Extensions` header that Herald
    /// can honour, with the response header that accepts it; `None` (an
    /// uncompressed connection) when there is none.
    pub fn negotiate(offers: &str) -> Option<(Deflate, String)> {
        offers.split(',').find_map(Deflate::accept)
    }

    /// One offer: `permessage-deflate` with known parameters, each at most
    /// once, with valid values.
    fn accept(offer: &str) -> Option<(Deflate, String)> {
        let mut parts = offer.split(';').map(str::trim);
        if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
            return None;
        }
        let mut seen = Vec::new();
        let mut window_bits = None;
        for param in parts {
            let (name, value) = match param.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (param, None),
            };
            if seen.contains(&name) {
                return None;
            }
            seen.push(name);
            match (name, value) {
                ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
                // Herald inflates with the largest window, so whatever the
                // client uses is fine.
                ("client_max_window_bits", None) => {}
                ("client_max_window_bits", Some(bits)) => {
                    bits.parse::<u8>().ok().filter(|b| (8..=15).contains(b))?;
                }
                // zlib cannot make raw deflate with a 256-byte window (it
                // uses 512), so 8 is declined, as the RFC allows.
                ("server_max_window_bits", Some(bits)) => {
                    window_bits = Some(bits.parse::<u8>().ok().filter(|b| (9..=15).contains(b))?);
                }
                _ => return None,
            }
        }
        let mut response =
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover".to_owned();
        if let Some(bits) = window_bits {
            response.push_str(&format!("; server_max_window_bits={bits}"));
        }
        Some((
            Deflate {
                window_bits: window_bits.unwrap_or(15),
            },
            response,
        ))
    }
}

/// The empty stored block that ends every compressed message, which the
/// RFC leaves off the wire (§7.2.1) and puts back to inflate (§7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// The compression level: zlib's default. The compression happens once
/// per broadcast, so its cost is shared by every subscriber.
const LEVEL: u32 = 6;

thread_local! {
    /// One compressor per thread and window size, reset for every
    /// message (a compressor is ~300 KiB: made per message it would cost
    /// more than compressing).
    static COMPRESSORS: RefCell<[Option<Compress>; 7]> = const { RefCell::new([const { None }; 7]) };
}

/// `payload` compressed on its own (no context before or after), without
/// the [`TAIL`].
pub fn compress(payload: &[u8], window_bits: u8) -> Bytes {
    COMPRESSORS.with(|compressors| {
        let mut compressors = compressors.borrow_mut();
        let slot = usize::from(window_bits.clamp(9, 15) - 9);
        let compressor = compressors[slot].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(LEVEL), false, window_bits.clamp(9, 15))
        });
        compressor.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let mut rest = payload;
        loop {
            let before = compressor.total_in();
            // Compressing into a Vec cannot fail: only its room runs out.
            let _ = compressor.compress_vec(rest, &mut out, FlushCompress::Sync);
            rest = &rest[(compressor.total_in() - before) as usize..];
            if rest.is_empty() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        Bytes::from(out)
    })
}

/// A frame compressed lately: the frame itself (kept, so that its address
/// cannot be reused by another while it is here) and its compressed bytes.
struct Compressed {
    frame: ByteString,
    window_bits: u8,
    bytes: Bytes,
}

/// Slots of recently compressed frames, by the frame's address.
const SLOTS: usize = 64;

static RECENT: [Mutex<Option<Compressed>>; SLOTS] = [const { Mutex::new(None) }; SLOTS];

/// `frame` compressed, once per frame however many connections send it: a
/// broadcast is one `ByteString` shared by all its subscribers, so the
/// first connection to send it compresses it and the others find it here
/// by its address. At most [`SLOTS`] frames are kept; one compressed while
/// another waits in its slot replaces it.
pub fn compressed(frame: &ByteString, window_bits: u8) -> Bytes {
    let address = frame.as_ptr() as usize;
    let slot = &RECENT[(address >> 4 ^ usize::from(window_bits)) % SLOTS];
    // The lock is held while compressing, so that a frame's other senders
    // wait for its bytes instead of compressing it too.
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(recent) = &*slot {
        if recent.frame.as_ptr() == frame.as_ptr()
            && recent.frame.len() == frame.len()
            && recent.window_bits == window_bits
        {
            return recent.bytes.clone();
        }
    }
    let bytes = compress(frame.as_bytes(), window_bits);
    *slot = Some(Compressed {
        frame: frame.clone(),
        window_bits,
        bytes: bytes.clone(),
    });
    bytes
}

/// Inflates a compressed message, refusing it with 1009 as soon as it
/// grows past `max` bytes (a few KiB that inflate to gigabytes cost at most
/// `max` + 1 bytes here), and with 1007 when it is not valid deflate data.
pub fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, Close> {
    let mut inflater = Decompress::new(false);
    let mut out: Vec<u8> = Vec::with_capacity((compressed.len() * 4).clamp(64, max + 1));
    for input in [compressed, &TAIL[..]] {
        let mut rest = input;
        loop {
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(Close::TOO_LARGE);
                }
                let room = out.capacity().max(1024).min(max + 1 - out.len());
                out.reserve_exact(room);
            }
            let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
            let status = inflater
                .decompress_vec(rest, &mut out, FlushDecompress::Sync)
                .map_err(|_| Close::BAD_DEFLATE)?;
            rest = &rest[(inflater.total_in() - before_in) as usize..];
            if out.len() > max {
                return Err(Close::TOO_LARGE);
            }
            let stuck = inflater.total_in() == before_in && inflater.total_out() == before_out;
            if status == Status::StreamEnd {
                return Ok(out);
            }
            if (rest.is_empty() && out.len() < out.capacity())
                || (stuck && out.len() < out.capacity())
            {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_herald_can_honour_are_accepted() {
        let (deflate, response) =
            Deflate::negotiate("permessage-deflate; client_max_window_bits").expect("accepted");
        assert_eq!(deflate.window_bits, 15);
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let (deflate, response) = Deflate::negotiate(
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10; client_no_context_takeover",
        )
        .expect("the third offer");
        assert_eq!(deflate.window_bits, 10);
        assert!(response.ends_with("; server_max_window_bits=10"));
        for refused in [
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; unknown",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        ] {
            assert_eq!(Deflate::negotiate(refused), None, "{refused}");
        }
    }

    #[test]
    fn what_is_compressed_inflates_back() {
        let json = br#"{"event":"App\\Events\\OrderShipped","channel":"orders","data":"{\"order\":{\"id\":1,\"status\":\"shipped\",\"items\":[]}}"}"#.repeat(20);
        for bits in [9, 12, 15] {
            let bytes = compress(&json, bits);
            assert!(
                bytes.len() * 3 < json.len(),
                "{} of {}",
                bytes.len(),
                json.len()
            );
            assert_eq!(inflate(&bytes, json.len()), Ok(json.clone()));
        }
    }

    #[test]
    fn a_frame_is_compressed_once_for_every_sender() {
        let frame = ByteString::from("x".repeat(1000));
        let first = compressed(&frame, 15);
        let again = compressed(&frame.clone(), 15);
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "the same bytes, not compressed again"
        );
        let other = ByteString::from("x".repeat(1000));
        assert_eq!(compressed(&other, 15), first, "equal content, equal bytes");
    }

    #[test]
    fn inflating_stops_at_the_limit() {
        let bomb = compress(&vec![0u8; 10 << 20], 15);
        assert!(bomb.len() < 20 << 10, "{}", bomb.len());
        assert_eq!(inflate(&bomb, 64 << 10), Err(Close::TOO_LARGE));
        let exact = compress(&[7u8; 1000], 15);
        assert_eq!(inflate(&exact, 1000).map(|v| v.len()), Ok(1000));
        assert_eq!(inflate(&exact, 999), Err(Close::TOO_LARGE));
        assert_eq!(inflate(&[0xFF, 0xFF, 0xFF], 100), Err(Close::BAD_DEFLATE));
    }
}
