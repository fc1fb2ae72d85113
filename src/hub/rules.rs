//! What the hub asks its caller while a channel is locked: may this member
//! join, what does the joining socket see, and which announcements go out.
//!
//! The hub itself has no opinion: a single node decides membership from its
//! own roster (`adapter::local`), a cluster decides it in Redis and
//! announces through the relay (`adapter::redis`). Either way, what must
//! keep its order with the subscribe or unsubscribe that caused it is
//! queued while the channel is still locked.

use std::time::Instant;

use bytestring::ByteString;

use super::presence::{MemberInfo, Roster};
use crate::protocol::SocketId;

/// Why a subscribe was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("Presence channel is full: at most {0} members")]
    MemberLimit(usize),
}

/// A presence join as decided.
pub struct JoinOutcome {
    /// The `subscription_succeeded` data the joining socket gets.
    pub roster: String,
    /// The frame (`member_added`) the channel's other local sockets get.
    pub announce: Option<ByteString>,
    /// The cluster membership version `roster` is as of, when member
    /// events arrive numbered (see `hub::member_order`).
    pub snapshot: Option<u64>,
}

/// Decisions taken under a channel's lock.
pub trait ChannelRules {
    /// `socket` subscribes to a presence channel as `member` (also on a
    /// repeated subscribe, which must change nothing): check the member
    /// limit, record the socket in this node's `roster`, and say what is
    /// shown and announced.
    fn join(
        &self,
        channel: &str,
        roster: &mut Roster,
        socket: SocketId,
        member: &MemberInfo,
    ) -> Result<JoinOutcome, SubscribeError>;

    /// `user_id`'s last local socket left a presence channel: the frame
    /// (`member_removed`) the remaining local sockets get, if any.
    fn leave(&self, channel: &str, user_id: &str) -> Option<ByteString>;

    /// The channel got its first local subscriber (`occupied`) or lost its
    /// last one.
    fn occupancy(&self, channel: &str, occupied: bool);

    /// A non-presence channel's local subscriber count became
    /// `subscribers`: the frame every local subscriber gets now, if any.
    /// `last_sent` is the channel's throttle state.
    fn count(
        &self,
        channel: &str,
        subscribers: usize,
        last_sent: &mut Option<Instant>,
    ) -> Option<ByteString>;
}
