//! The Pusher protocol 7 vocabulary: socket ids, channel kinds, wire
//! messages and error/close codes. Pure: no I/O here.

pub mod channel;
pub mod close;
pub mod deflate;
pub mod messages;
pub mod webhook;

use std::fmt;
use std::str::FromStr;

pub use channel::{ChannelKind, ChannelType};
pub use close::Close;

/// A connection's id, `<u32>.<u32>` in decimal, as every server SDK validates
/// (`^\d+\.\d+$`). Stored as two integers so that comparing an excluded
/// socket against each subscriber costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId {
    major: u32,
    minor: u32,
}

impl SocketId {
    pub fn new(major: u32, minor: u32) -> Self {
        SocketId { major, minor }
    }

    /// Which of `shards` handles this socket (spread evenly: the minor
    /// half is random).
    pub fn shard(self, shards: usize) -> usize {
        (self.minor ^ self.major) as usize % shards.max(1)
    }

    /// A fresh random id; 64 random bits make collisions across a cluster
    /// negligible.
    pub fn random() -> Self {
        SocketId::new(rand::random(), rand::random())
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The error for a string that is not `<digits>.<digits>`.
#[derive(Debug, thiserror::Error)]
#[error("socket_id must match ^\\d+\\.\\d+$")]
pub struct InvalidSocketId;

impl FromStr for SocketId {
    type Err = InvalidSocketId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once('.').ok_or(InvalidSocketId)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return Err(InvalidSocketId);
        }
        // Ids we never issued (out of u32 range) can't match a connection;
        // map them to an id that matches nothing rather than rejecting a
        // well-formed value.
        Ok(SocketId::new(
            a.parse().unwrap_or(u32::MAX),
            b.parse().unwrap_or(u32::MAX),
        ))
    }
}

/// Pusher error and close codes (protocol doc 1.5).
pub mod codes {
    pub const APP_NOT_FOUND: u16 = 4001;
    pub const APP_DISABLED: u16 = 4003;
    pub const OVER_CONNECTION_QUOTA: u16 = 4004;
    pub const PATH_NOT_FOUND: u16 = 4005;
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    pub const NO_PROTOCOL: u16 = 4008;
    pub const UNAUTHORIZED: u16 = 4009;
    pub const OVER_CAPACITY: u16 = 4100;
    pub const RECONNECT: u16 = 4200;
    pub const PONG_NOT_RECEIVED: u16 = 4201;
    pub const CLIENT_EVENT_RATE_LIMIT: u16 = 4301;
    pub const WATCHLIST_LIMIT: u16 = 4302;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_round_trip_and_validate() {
        let id: SocketId = "123.456".parse().expect("valid");
        assert_eq!(id, SocketId::new(123, 456));
        assert_eq!(id.to_string(), "123.456");
        assert!("123".parse::<SocketId>().is_err());
        assert!("a.1".parse::<SocketId>().is_err());
        assert!("1.".parse::<SocketId>().is_err());
        assert!("-1.2".parse::<SocketId>().is_err());
        let r = SocketId::random().to_string();
        assert!(r.parse::<SocketId>().is_ok());
    }
}
