//! The WebSocket reader: any bytes from a client, arriving cut into any
//! chunks, on a connection with or without permessage-deflate, give
//! messages or a close, never a panic, and never a message (inflated or
//! not) above the limit.
#![no_main]

use bytes::BytesMut;
use herald::ws::reader::{Incoming, Reader};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    // The first byte: whether the connection agreed to compression, and
    // the size of the chunks the rest arrives in.
    let mut reader = Reader::new(BytesMut::new(), MAX, cut & 0x80 != 0);
    for chunk in stream.chunks(usize::from(cut & 0x7F).max(1)) {
        reader.buffer.extend_from_slice(chunk);
        loop {
            match reader.next_message() {
                Ok(Some(Incoming::Text(text))) => assert!(text.len() <= MAX),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
