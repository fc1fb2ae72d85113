//! The relay's wire format, pure: a small text header and the frame bytes
//! exactly as clients get them, so the receiving node sends a slice of what
//! Redis gave it and never parses or re-encodes the frame:
//!
//! ```text
//! <kind>\n<origin node>\n<app id>\n<channel>\n<except socket>\n<number>\n<body>
//! ```
//!
//! | kind | number | body |
//! |------|--------|------|
//! | `P` publish, `C` publish to a cache channel | when it was sent (Unix ms) | the frame |
//! | `M` member event, `R` one re-sent after a rebuild (the origin's own sockets had it) | its version | the frame |
//! | `T` terminate a user | | the user id |
//! | `W` watchlist | 1 online, 0 offline | the user id |
//! | `N` the channel's subscriber count changed | | |
//! | `E` echo (a node checking that its subscription hears) | | |
//!
//! Member events are written by the Lua scripts (`scripts::ANNOUNCE`) in
//! the same format (a test below decodes one built as the script builds
//! it). Empty fields stay empty; no field but the body may hold a newline
//! (app ids and channel names cannot, see `config` and `protocol::channel`).

use bytes::Bytes;
use bytestring::ByteString;

use crate::protocol::SocketId;

/// What a message sent by a node asks the other nodes to do. (Member events
/// are only ever sent by the scripts.)
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Deliver `frame` to the channel's local subscribers except `except`;
    /// with `cached`, keep it as the cache channel's last event first.
    Publish {
        channel: &'a str,
        frame: &'a str,
        except: Option<SocketId>,
        cached: bool,
    },
    /// Close the user's signed-in sockets.
    TerminateUser { user_id: &'a str },
    /// A user came online (first signed-in socket anywhere) or went offline.
    Watchlist { user_id: &'a str, online: bool },
    /// A node's message to itself: proves its relay subscription still
    /// hears (see `RelayHealth`).
    Echo,
    /// The origin's subscriber count of the channel changed (and is
    /// written in Redis already): each node serving the channel recomputes
    /// the total and tells its own subscribers.
    CountChanged { channel: &'a str },
    /// The app (the message's app id) changed in the app store: each node
    /// reads it again.
    AppChanged,
}

impl Command<'_> {
    /// The message from `origin` about `app`: one allocation, sized for it.
    pub fn encode(&self, origin: &str, app: &str) -> Vec<u8> {
        let (kind, channel, except, number, body): (
            u8,
            &str,
            Option<SocketId>,
            Option<u64>,
            &[u8],
        ) = match self {
            Command::Publish {
                channel,
                frame,
                except,
                cached,
            } => (
                if *cached { b'C' } else { b'P' },
                channel,
                *except,
                Some(crate::support::clock::unix_millis()),
                frame.as_bytes(),
            ),
            Command::TerminateUser { user_id } => (b'T', "", None, None, user_id.as_bytes()),
            Command::Watchlist { user_id, online } => {
                (b'W', "", None, Some(u64::from(*online)), user_id.as_bytes())
            }
            Command::Echo => (b'E', "", None, None, b""),
            Command::CountChanged { channel } => (b'N', channel, None, None, b""),
            Command::AppChanged => (b'A', "", None, None, b""),
        };
        use std::io::Write;
        // Two numbers of at most 20 digits each and six separators.
        let mut message =
            Vec::with_capacity(48 + origin.len() + app.len() + channel.len() + body.len());
        message.push(kind);
        for field in [origin, app, channel] {
            message.push(b'\n');
            message.extend_from_slice(field.as_bytes());
        }
        message.push(b'\n');
        // Writing to a Vec cannot fail.
        if let Some(socket) = except {
            let _ = write!(message, "{socket}");
        }
        message.push(b'\n');
        if let Some(number) = number {
            let _ = write!(message, "{number}");
        }
        message.push(b'\n');
        message.extend_from_slice(body);
        message
    }
}

/// A received message: its header fields borrowed from, and its body a
/// slice of, the bytes Redis delivered (nothing is copied per message).
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u8,
    pub origin: &'a str,
    pub app: &'a str,
    pub channel: &'a str,
    pub except: Option<SocketId>,
    pub number: Option<u64>,
    pub body: Bytes,
}

impl<'a> Message<'a> {
    /// Reads a message; `None` when it is not one.
    pub fn decode(payload: &'a Bytes) -> Option<Message<'a>> {
        let mut fields: [&[u8]; 6] = [b""; 6];
        let mut rest: &'a [u8] = payload;
        for field in &mut fields {
            let end = rest.iter().position(|b| *b == b'\n')?;
            *field = &rest[..end];
            rest = &rest[end + 1..];
        }
        let text = |bytes: &'a [u8]| std::str::from_utf8(bytes).ok();
        let [kind, origin, app, channel, except, number] = fields;
        let &[kind] = kind else { return None };
        let body_at = payload.len() - rest.len();
        Some(Message {
            kind,
            origin: text(origin)?,
            app: text(app)?,
            channel: text(channel)?,
            except: std::str::from_utf8(except).ok()?.parse().ok(),
            number: std::str::from_utf8(number).ok()?.parse().ok(),
            body: payload.slice(body_at..),
        })
    }

    /// The body as text (a frame), when it is UTF-8.
    pub fn body_text(&self) -> Option<ByteString> {
        ByteString::try_from(self.body.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_carries_the_frame_bytes_as_they_are() {
        let frame = "{\"event\":\"e\",\"channel\":\"c\",\"data\":\"a\\nb\"}";
        let encoded = Command::Publish {
            channel: "c",
            frame,
            except: Some(SocketId::new(1, 2)),
            cached: true,
        }
        .encode("n1", "app");
        let frame_at = encoded.len() - frame.len();
        assert_eq!(&encoded[frame_at..], frame.as_bytes());
        let encoded = Bytes::from(encoded);
        let message = Message::decode(&encoded).expect("decodes");
        assert_eq!(message.kind, b'C');
        assert_eq!(message.origin, "n1");
        assert_eq!(message.app, "app");
        assert_eq!(message.channel, "c");
        assert_eq!(message.except, Some(SocketId::new(1, 2)));
        assert!(message.number.is_some_and(|ms| ms > 1_700_000_000_000));
        assert_eq!(&message.body[..], frame.as_bytes());
    }

    #[test]
    fn control_messages_round_trip_and_garbage_is_refused() {
        let counts = Command::CountChanged { channel: "a" }.encode("n1", "app");
        let counts = Bytes::from(counts);
        let message = Message::decode(&counts).expect("decodes");
        assert_eq!((message.kind, message.channel), (b'N', "a"));
        assert!(message.body.is_empty());
        assert_eq!(message.except, None);
        assert_eq!(message.number, None);
        let online = Command::Watchlist {
            user_id: "u\n1",
            online: true,
        }
        .encode("n1", "app");
        let online = Bytes::from(online);
        let message = Message::decode(&online).expect("decodes");
        assert_eq!((message.number, &message.body[..]), (Some(1), &b"u\n1"[..]));
        for garbage in [&b""[..], b"P\nn1\napp", b"PP\na\nb\nc\n\n\nbody"] {
            assert_eq!(Message::decode(&Bytes::from_static(garbage)), None);
        }
    }

    #[test]
    fn a_member_event_written_as_the_scripts_write_it_decodes() {
        // scripts::ANNOUNCE: kind .. '\n' .. origin .. '\n' .. app .. '\n'
        // .. channel .. '\n' .. except .. '\n' .. version .. '\n' .. frame
        let frame =
            r#"{"event":"pusher_internal:member_added","channel":"presence-a","data":"{}"}"#;
        let lua = format!("M\nnode1\napp\npresence-a\n3.4\n17\n{frame}");
        let payload = Bytes::from(lua);
        let message = Message::decode(&payload).expect("decodes");
        assert_eq!(message.kind, b'M');
        assert_eq!(message.origin, "node1");
        assert_eq!(message.app, "app");
        assert_eq!(message.channel, "presence-a");
        assert_eq!(message.except, Some(SocketId::new(3, 4)));
        assert_eq!(message.number, Some(17));
        assert_eq!(message.body_text().as_deref(), Some(frame));
        // Without an excluded socket the field is empty.
        let payload = Bytes::from(format!("R\nnode1\napp\npresence-a\n\n18\n{frame}"));
        let message = Message::decode(&payload).expect("decodes");
        assert_eq!((message.kind, message.except), (b'R', None));
    }
}
