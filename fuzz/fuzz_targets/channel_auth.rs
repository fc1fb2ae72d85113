//! Channel names, socket ids and auth strings: validation, the prefix to
//! kind decision, and signature checks must never panic.
#![no_main]

use herald::auth;
use herald::protocol::channel::{server_to_user_id, validate_channel_name};
use herald::protocol::{ChannelType, SocketId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // name \n socket id \n auth \n channel_data
    let mut parts = text.splitn(4, '\n');
    let name = parts.next().unwrap_or_default();
    let socket = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();
    let channel_data = parts.next();
    let _ = validate_channel_name(name, 200);
    let kind = ChannelType::of(name);
    let _ = (kind.is_presence(), kind.is_encrypted(), kind.requires_auth());
    let _ = server_to_user_id(name);
    let _ = socket.parse::<SocketId>();
    let signed = auth::channel_string_to_sign(socket, name, channel_data);
    let _ = auth::verify_auth("app-key", "app-secret", &signed, signature);
    let _ = auth::verify_auth("app-key", "app-secret", &auth::user_string_to_sign(socket, name), signature);
});
