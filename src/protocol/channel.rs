//! Channel names and kinds.
//!
//! The prefix-to-kind decision lives here and nowhere else. Prefixes are
//! matched anchored at the start of the name, longest first, so that
//! `my-private-x` stays public and `private-encrypted-cache-x` is both
//! encrypted and cached.

/// What a channel's prefix makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// Anyone may subscribe; no auth.
    Public,
    /// `private-`: signed subscription.
    Private,
    /// `private-encrypted-`: signed subscription, payloads are end-to-end
    /// encrypted by the apps and relayed untouched.
    Encrypted,
    /// `presence-`: signed subscription with a member identity.
    Presence,
    /// `#server-to-user-{id}`: the per-user channel of a signed-in socket.
    ServerToUser,
}

/// A channel's kind plus whether its last event is cached for new subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelType {
    pub kind: ChannelKind,
    pub cached: bool,
}

/// The prefix of the one `#` channel clients may use.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

const PREFIXES: &[(&str, ChannelKind, bool)] = &[
    ("private-encrypted-cache-", ChannelKind::Encrypted, true),
    ("private-encrypted-", ChannelKind::Encrypted, false),
    ("private-cache-", ChannelKind::Private, true),
    ("private-", ChannelKind::Private, false),
    ("presence-cache-", ChannelKind::Presence, true),
    ("presence-", ChannelKind::Presence, false),
    ("cache-", ChannelKind::Public, true),
    (SERVER_TO_USER_PREFIX, ChannelKind::ServerToUser, false),
];

impl ChannelType {
    /// Classifies a channel by its name's prefix.
    pub fn of(name: &str) -> ChannelType {
        for (prefix, kind, cached) in PREFIXES {
            if name.starts_with(prefix) {
                return ChannelType {
                    kind: *kind,
                    cached: *cached,
                };
            }
        }
        ChannelType {
            kind: ChannelKind::Public,
            cached: false,
        }
    }

    /// Private, encrypted and presence channels need a signed subscription.
    pub fn requires_auth(self) -> bool {
        matches!(
            self.kind,
            ChannelKind::Private | ChannelKind::Encrypted | ChannelKind::Presence
        )
    }

    pub fn is_presence(self) -> bool {
        self.kind == ChannelKind::Presence
    }

    pub fn is_encrypted(self) -> bool {
        self.kind == ChannelKind::Encrypted
    }

    /// Client events are only accepted on channels whose subscribers were
    /// authorised by the app.
    pub fn accepts_client_events(self) -> bool {
        self.requires_auth()
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    #[error("Channel name must not be empty")]
    Empty,
    #[error("Channel name is longer than {0} characters")]
    TooLong(usize),
    #[error("Channel name contains characters outside A-Z a-z 0-9 _ - = @ , . ;")]
    InvalidCharacters,
}

/// Checks a channel name against Pusher's character set and the length limit.
/// The one `#` channel, `#server-to-user-{id}`, is allowed: its user id part
/// must itself be a valid name.
pub fn validate_channel_name(name: &str, max_len: usize) -> Result<(), ChannelNameError> {
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    if name.len() > max_len {
        return Err(ChannelNameError::TooLong(max_len));
    }
    let checked = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
    if checked.is_empty() || !checked.bytes().all(is_name_byte) {
        return Err(ChannelNameError::InvalidCharacters);
    }
    Ok(())
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

/// The user id of a `#server-to-user-{id}` channel, if that is what `name` is.
pub fn server_to_user_id(name: &str) -> Option<&str> {
    name.strip_prefix(SERVER_TO_USER_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> (ChannelKind, bool) {
        let t = ChannelType::of(name);
        (t.kind, t.cached)
    }

    #[test]
    fn prefixes_are_anchored_and_longest_first() {
        assert_eq!(kind("orders"), (ChannelKind::Public, false));
        assert_eq!(kind("my-private-x"), (ChannelKind::Public, false));
        assert_eq!(kind("a-cache-b"), (ChannelKind::Public, false));
        assert_eq!(kind("cache-prices"), (ChannelKind::Public, true));
        assert_eq!(kind("private-orders"), (ChannelKind::Private, false));
        assert_eq!(kind("private-cache-x"), (ChannelKind::Private, true));
        assert_eq!(kind("private-encrypted-x"), (ChannelKind::Encrypted, false));
        assert_eq!(
            kind("private-encrypted-cache-x"),
            (ChannelKind::Encrypted, true)
        );
        assert_eq!(kind("presence-room.1"), (ChannelKind::Presence, false));
        assert_eq!(kind("presence-cache-room"), (ChannelKind::Presence, true));
        assert_eq!(
            kind("#server-to-user-42"),
            (ChannelKind::ServerToUser, false)
        );
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_channel_name("private-App.Models.User.42", 200).is_ok());
        assert!(validate_channel_name("a_b-c=d@e,f.g;h", 200).is_ok());
        assert!(validate_channel_name("#server-to-user-42", 200).is_ok());
        assert_eq!(validate_channel_name("", 200), Err(ChannelNameError::Empty));
        assert_eq!(
            validate_channel_name("has space", 200),
            Err(ChannelNameError::InvalidCharacters)
        );
        assert_eq!(
            validate_channel_name("#other", 200),
            Err(ChannelNameError::InvalidCharacters)
        );
        assert_eq!(
            validate_channel_name("#server-to-user-", 200),
            Err(ChannelNameError::InvalidCharacters)
        );
        assert_eq!(
            validate_channel_name(&"a".repeat(201), 200),
            Err(ChannelNameError::TooLong(200))
        );
    }
}
