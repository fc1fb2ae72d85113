//! The SockJS-style framing pusher-js's HTTP transports read: one frame per
//! `\n`-terminated line; `o` open, `h` heartbeat, `a[...]` an array of
//! JSON-encoded protocol frames (strings, exactly what a WebSocket text
//! message would carry), `c[code,"reason"]` close.

use bytestring::ByteString;

use crate::protocol::{messages, Close};

pub const OPEN: &str = "o\n";
pub const HEARTBEAT: &str = "h\n";

/// Prelude of a streaming response: 2 KiB of heartbeat so that buffering
/// proxies and browsers start handing the stream over at once.
pub fn streaming_prelude() -> String {
    let mut prelude = "h".repeat(2048);
    prelude.push('\n');
    prelude
}

/// What `xhr_send` carries: a JSON array of JSON strings, each one protocol
/// message as a WebSocket text frame would carry it.
pub fn decode_sent(body: &[u8]) -> Option<Vec<String>> {
    serde_json::from_slice(body).ok()
}

/// `a[...]` for a batch of frames.
pub fn messages(frames: &[ByteString]) -> String {
    let texts: Vec<&str> = frames.iter().map(|f| &**f).collect();
    format!(
        "a{}\n",
        serde_json::to_string(&texts).unwrap_or_else(|_| "[]".into())
    )
}

/// The goodbye: the `pusher:error` (when the close asks for one) and `c[..]`.
pub fn close(request: &Close) -> String {
    let mut out = String::new();
    if request.send_error {
        let error = messages::error(Some(request.code), request.reason, None);
        out.push_str(&messages(&[error]));
    }
    out.push_str(&format!(
        "c[{},{}]\n",
        request.code,
        serde_json::to_string(request.reason).unwrap_or_else(|_| "\"\"".into())
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_json_strings_in_an_array() {
        let frame: ByteString = r#"{"event":"e","data":"{\"a\":1}"}"#.into();
        assert_eq!(
            messages(&[frame]),
            "a[\"{\\\"event\\\":\\\"e\\\",\\\"data\\\":\\\"{\\\\\\\"a\\\\\\\":1}\\\"}\"]\n"
        );
        let decoded: Vec<String> =
            serde_json::from_str(messages(&["x".into(), "y".into()]).trim_start_matches('a'))
                .expect("json array");
        assert_eq!(decoded, ["x", "y"]);
    }

    #[test]
    fn close_carries_code_and_reason() {
        let c = close(&Close {
            code: 4009,
            reason: "bye \"now\"",
            send_error: false,
        });
        assert_eq!(c, "c[4009,\"bye \\\"now\\\"\"]\n");
        let with_error = close(&Close {
            code: 4200,
            reason: "restart",
            send_error: true,
        });
        assert!(with_error.starts_with("a[") && with_error.ends_with("c[4200,\"restart\"]\n"));
    }
}
