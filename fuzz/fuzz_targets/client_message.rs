//! Every text frame a client can send: parsed, its data decoded as each
//! message kind, and rendered as a client event's payload.
#![no_main]

use herald::protocol::messages::{ClientMessage, SigninData, SubscribeData, UnsubscribeData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = ClientMessage::parse(text) {
        let _ = message.decode_data::<SubscribeData>();
        let _ = message.decode_data::<UnsubscribeData>();
        let _ = message.decode_data::<SigninData>();
        let _ = message.data_as_string();
    }
});
