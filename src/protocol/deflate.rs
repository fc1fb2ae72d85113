//! permessage-deflate's (RFC 7692) bytes: compressing each broadcast once
//! for every subscriber that agreed to it, and inflating what a client
//! compressed without letting it inflate past the limit.
//!
//! Every message is compressed on its own (Herald agrees only to
//! `server_no_context_takeover` and `client_no_context_takeover`: see
//! `ws::deflate`), which buys the two things that matter here:
//! * a broadcast's compressed bytes are the same for every subscriber, so
//!   they are made once per event ([`warm`], as it is published, and
//!   [`with_compressed`] when each connection sends it) instead of once
//!   per delivery through each connection's own compressor;
//! * no connection keeps a compressor or inflater (about 300 KiB and 40 KiB
//!   in zlib) between messages: an idle compressed connection costs what an
//!   idle plain one does.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use bytestring::ByteString;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::protocol::Close;

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
        let bits = window_bits.clamp(9, 15);
        let compressor = compressors[usize::from(bits - 9)].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(LEVEL), false, bits)
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

/// Slots of recently compressed frames, by the frame's address: at most
/// 64 frames and their compressed bytes are kept alive by them.
const SLOTS: usize = 64;

static RECENT: [Mutex<Option<Compressed>>; SLOTS] = [const { Mutex::new(None) }; SLOTS];

/// Slots of frames this thread sent compressed lately.
const NEAR_SLOTS: usize = 16;

thread_local! {
    /// What this thread sent compressed lately: a broadcast's deliveries on
    /// one thread read its bytes here without touching a lock that the
    /// other threads delivering it take too.
    static NEAR: RefCell<[Option<Compressed>; NEAR_SLOTS]> =
        const { RefCell::new([const { None }; NEAR_SLOTS]) };
}

impl Compressed {
    /// Whether this is `frame` compressed with `window_bits`.
    fn is(&self, frame: &ByteString, window_bits: u8) -> bool {
        self.frame.as_ptr() == frame.as_ptr()
            && self.frame.len() == frame.len()
            && self.window_bits == window_bits
    }
}

/// Gives `send` the compressed bytes of `frame`, compressed once per frame
/// however many connections send it: a broadcast is one `ByteString`
/// shared by all its subscribers, so it is compressed as it is published
/// ([`warm`]) or by the first connection to send it, and the others find
/// it by its address: in their thread's own recent frames, else in the
/// node's [`SLOTS`] (at most that many are kept; one compressed while
/// another waits in its slot replaces it). No lock is held while
/// compressing, and a delivery takes none once its thread has the frame:
/// a runtime thread that waits on a lock is off its core for as long as
/// the scheduler likes, which showed as milliseconds of latency.
pub fn with_compressed<R>(frame: &ByteString, window_bits: u8, send: impl FnOnce(&[u8]) -> R) -> R {
    let address = frame.as_ptr() as usize >> 4 ^ usize::from(window_bits);
    let near_slot = address % NEAR_SLOTS;
    // A hit sends from this thread's slot, with no reference count taken
    // (`send` only copies the bytes out).
    let sent = NEAR.with(move |near| {
        let near = near.borrow();
        match &near[near_slot] {
            Some(hit) if hit.is(frame, window_bits) => Ok(send(&hit.bytes)),
            _ => Err(send),
        }
    });
    let send = match sent {
        Ok(done) => return done,
        Err(send) => send,
    };
    let slot = &RECENT[address % SLOTS];
    let found = {
        let recent = slot.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .as_ref()
            .filter(|r| r.is(frame, window_bits))
            .map(|r| r.bytes.clone())
    };
    let bytes = found.unwrap_or_else(|| {
        let bytes = compress(frame.as_bytes(), window_bits);
        let mut recent = slot.lock().unwrap_or_else(|p| p.into_inner());
        if !recent.as_ref().is_some_and(|r| r.is(frame, window_bits)) {
            *recent = Some(Compressed {
                frame: frame.clone(),
                window_bits,
                bytes: bytes.clone(),
            });
        }
        bytes
    });
    NEAR.with(|near| {
        near.borrow_mut()[near_slot] = Some(Compressed {
            frame: frame.clone(),
            window_bits,
            bytes: bytes.clone(),
        });
    });
    send(&bytes)
}

/// WebSocket connections that agreed to compression, node-wide, and the
/// size from which their frames are compressed: while there are none,
/// publishing compresses nothing.
static AGREED: AtomicUsize = AtomicUsize::new(0);
static COMPRESS_FROM: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Held by a connection that agreed to compression, for its life.
#[derive(Debug)]
pub struct Agreed(());

impl Agreed {
    /// Counts a connection that compresses frames of `compress_from` bytes
    /// and more (the server's `compression_min_bytes`).
    pub fn new(compress_from: usize) -> Agreed {
        COMPRESS_FROM.store(compress_from, Ordering::Relaxed);
        AGREED.fetch_add(1, Ordering::Relaxed);
        Agreed(())
    }
}

impl Drop for Agreed {
    fn drop(&mut self) {
        AGREED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Compresses a broadcast as it is published, before any subscriber's
/// connection sends it, when some connection of the node compresses, the
/// frame is large enough, and `shared()` says the frame goes to more than
/// one local subscriber (asked last: a map lookup). Its subscribers then
/// only copy the bytes; a frame for one subscriber, or none, is left to
/// be compressed when (and if) it is sent. (For the usual window; a client
/// that asked for a smaller one has its frames compressed when sent.)
pub fn warm(frame: &ByteString, shared: impl FnOnce() -> bool) {
    if AGREED.load(Ordering::Relaxed) > 0
        && frame.len() >= COMPRESS_FROM.load(Ordering::Relaxed)
        && shared()
    {
        with_compressed(frame, 15, |_| ());
    }
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
            if status == Status::StreamEnd {
                return Ok(out);
            }
            // Done with this input when it is all taken (or nothing more
            // comes of it) while there was room left for output.
            let stuck = inflater.total_in() == before_in && inflater.total_out() == before_out;
            if (rest.is_empty() || stuck) && out.len() < out.capacity() {
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
        let first = with_compressed(&frame, 15, |b| (b.as_ptr() as usize, b.to_vec()));
        let again = with_compressed(&frame.clone(), 15, |b| (b.as_ptr() as usize, b.to_vec()));
        assert_eq!(first, again, "the same bytes, not compressed again");
        let other = ByteString::from("x".repeat(1000));
        let other = with_compressed(&other, 15, |b| b.to_vec());
        assert_eq!(other, first.1, "equal content, equal bytes");
        // Published while a connection compresses: compressed before any
        // connection sends it.
        let agreed = Agreed::new(256);
        let alone = ByteString::from("z".repeat(1000));
        warm(&alone, || false);
        let published = ByteString::from("y".repeat(1000));
        warm(&published, || true);
        let slot = &RECENT[((published.as_ptr() as usize >> 4) ^ 15) % SLOTS];
        let warmed = slot
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|c| c.frame.as_ptr() == published.as_ptr()));
        assert_eq!(warmed, Some(true));
        let slot = &RECENT[((alone.as_ptr() as usize >> 4) ^ 15) % SLOTS];
        let warmed = slot
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|c| c.frame.as_ptr() == alone.as_ptr()));
        assert_ne!(
            warmed,
            Some(true),
            "one subscriber or none: not compressed ahead"
        );
        drop(agreed);
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
