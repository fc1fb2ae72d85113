//! `xhr_send` bodies: decoded into messages, each of which is then parsed
//! as a client message.
#![no_main]

use herald::fallback::framing;
use herald::protocol::messages::ClientMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(messages) = framing::decode_sent(data) {
        for message in &messages {
            let _ = ClientMessage::parse(message);
        }
        let frames: Vec<_> = messages.into_iter().map(Into::into).collect();
        let _ = framing::messages(&frames);
    }
});
