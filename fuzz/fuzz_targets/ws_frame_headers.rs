//! The WebSocket byte-stream guard: any bytes, cut into any chunks, must be
//! either passed or refused, never panic.
#![no_main]

use herald::ws::frame_guard::FrameHeaders;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let mut guard = FrameHeaders::new(1024);
    for chunk in stream.chunks(usize::from(cut).max(1)) {
        if guard.check(chunk).is_err() {
            break;
        }
    }
});
