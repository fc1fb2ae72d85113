//! Inflating a compressed client message (permessage-deflate): any bytes
//! give the message or a refusal, never a panic, and never more than the
//! limit, however far the bytes would inflate.
#![no_main]

use herald::protocol::deflate::inflate;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = inflate(data, MAX) {
        assert!(message.len() <= MAX);
    }
});
