//! Why a connection ends: every close Herald can ask for, with its code and
//! reason in one place, whatever transport carries it (a WebSocket close
//! frame, or `c[code,"reason"]` on pusher-js's HTTP transports).

use super::codes;

/// A close of a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
    /// Send a `pusher:error` with the same code before the close frame.
    pub send_error: bool,
}

impl Close {
    /// A refusal at admission: pusher-js acts on the code of either the
    /// `pusher:error` or the close frame, so both are sent.
    const fn refusal(code: u16, reason: &'static str) -> Close {
        Close {
            code,
            reason,
            send_error: true,
        }
    }

    const fn silent(code: u16, reason: &'static str) -> Close {
        Close {
            code,
            reason,
            send_error: false,
        }
    }

    pub const APP_NOT_FOUND: Close =
        Close::refusal(codes::APP_NOT_FOUND, "Application does not exist");
    pub const APP_DISABLED: Close = Close::refusal(codes::APP_DISABLED, "Application disabled");
    pub const OVER_QUOTA: Close = Close::refusal(
        codes::OVER_CONNECTION_QUOTA,
        "Application is over connection quota",
    );
    pub const NO_PROTOCOL: Close =
        Close::refusal(codes::NO_PROTOCOL, "No protocol version supplied");
    pub const UNSUPPORTED_PROTOCOL: Close =
        Close::refusal(codes::UNSUPPORTED_PROTOCOL, "Unsupported protocol version");

    /// A browser on an origin the app does not allow (as Reverb does).
    pub const ORIGIN_NOT_ALLOWED: Close = Close::refusal(codes::UNAUTHORIZED, "Origin not allowed");
    /// The node (or the client's address) is at its connection cap, or the
    /// process is short of memory: pusher-js retries after a back-off.
    pub const OVER_CAPACITY: Close = Close::refusal(codes::OVER_CAPACITY, "Over capacity");

    /// The app required sign-in (or an authorized subscription) and none
    /// came in time.
    pub const SIGNIN_TIMEOUT: Close = Close::refusal(
        codes::UNAUTHORIZED,
        "Connection not authorized within timeout.",
    );
    /// The app required sign-in and it failed.
    pub const SIGNIN_FAILED: Close = Close::refusal(
        codes::UNAUTHORIZED,
        "Sign-in failed: connection is unauthorized",
    );
    /// `terminate_connections` through the HTTP API.
    pub const TERMINATED: Close =
        Close::refusal(codes::UNAUTHORIZED, "You got disconnected by the app.");
    /// Graceful shutdown: reconnect (to another node).
    pub const SHUTTING_DOWN: Close = Close::refusal(codes::RECONNECT, "Server shutting down");
    /// No answer to the server's ping.
    pub const PONG_TIMEOUT: Close =
        Close::refusal(codes::PONG_NOT_RECEIVED, "Pong reply not received");

    /// The client sent more frames than its inbound budget allows.
    pub const INBOUND_RATE: Close = Close::refusal(
        codes::CLIENT_EVENT_RATE_LIMIT,
        "Too many messages: inbound rate limit exceeded",
    );

    /// One address opened too many HTTP fallback sessions (pusher-js
    /// retries after a back-off).
    pub const TOO_MANY_SESSIONS: Close = Close::refusal(
        codes::OVER_CAPACITY,
        "Too many HTTP sessions from this address",
    );

    /// The client's outbound queue is full: it does not read fast enough.
    pub const TOO_SLOW: Close =
        Close::silent(codes::OVER_CAPACITY, "Client too slow to receive messages");
    /// The client sends faster than its session can handle.
    pub const FLOODING: Close = Close::silent(codes::OVER_CAPACITY, "Too many messages");
    /// A message above `max_message_bytes` (WebSocket 1009).
    pub const TOO_LARGE: Close = Close::silent(1009, "Message too large");
    /// Bytes that are not a valid WebSocket stream (1002).
    pub const PROTOCOL_ERROR: Close = Close::silent(1002, "WebSocket protocol error");
    /// A text message that is not UTF-8 (1007).
    pub const INVALID_TEXT: Close = Close::silent(1007, "Text message is not UTF-8");
    /// A compressed message that is not valid deflate data (1007).
    pub const BAD_DEFLATE: Close = Close::silent(1007, "Compressed message is invalid");
}
