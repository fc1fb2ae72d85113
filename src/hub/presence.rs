//! The member roster of one presence channel.
//!
//! Members are users, not sockets: a user with several sockets on the channel
//! is one member, added when their first socket joins and removed when their
//! last one leaves. The first socket's `user_info` is kept.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::protocol::SocketId;

/// The JSON `null`, for members without `user_info`.
pub fn null_info() -> Arc<RawValue> {
    Arc::from(RawValue::from_string("null".to_owned()).unwrap_or_default())
}

/// A user joining a presence channel, as their `channel_data` described them.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub user_id: Arc<str>,
    /// The raw JSON of `user_info` (`null` when absent), forwarded unchanged.
    pub user_info: Arc<RawValue>,
}

#[derive(Debug)]
struct Member {
    user_info: Arc<RawValue>,
    sockets: u32,
}

/// Who is on a presence channel.
#[derive(Debug, Default)]
pub struct Roster {
    members: HashMap<Arc<str>, Member>,
    /// Which user each subscribed socket joined as.
    sockets: HashMap<SocketId, Arc<str>>,
}

impl Roster {
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn is_member(&self, user_id: &str) -> bool {
        self.members.contains_key(user_id)
    }

    /// The user a socket joined as.
    pub fn user_of(&self, socket: SocketId) -> Option<&Arc<str>> {
        self.sockets.get(&socket)
    }

    /// Adds a socket; returns true when its user became a new member. A
    /// socket that is already on the roster keeps its first identity.
    pub fn join(&mut self, socket: SocketId, member: &MemberInfo) -> bool {
        if self.sockets.contains_key(&socket) {
            // A repeated subscribe of the same socket changes nothing.
            return false;
        }
        self.sockets.insert(socket, member.user_id.clone());
        match self.members.get_mut(&member.user_id) {
            Some(existing) => {
                existing.sockets += 1;
                false
            }
            None => {
                self.members.insert(
                    member.user_id.clone(),
                    Member {
                        user_info: member.user_info.clone(),
                        sockets: 1,
                    },
                );
                true
            }
        }
    }

    /// Removes a socket; returns the user id when that was the user's last socket.
    pub fn leave(&mut self, socket: SocketId) -> Option<Arc<str>> {
        let user_id = self.sockets.remove(&socket)?;
        if self.drop_socket_of(&user_id) {
            Some(user_id)
        } else {
            None
        }
    }

    /// Decrements a user's socket count; true when the user left.
    fn drop_socket_of(&mut self, user_id: &str) -> bool {
        match self.members.get_mut(user_id) {
            Some(m) if m.sockets > 1 => {
                m.sockets -= 1;
                false
            }
            Some(_) => {
                self.members.remove(user_id);
                true
            }
            None => false,
        }
    }

    /// Every member with their socket count and info.
    pub fn members(&self) -> Vec<super::app_hub::LocalMember> {
        self.members
            .iter()
            .map(|(id, m)| (id.clone(), m.sockets, m.user_info.clone()))
            .collect()
    }

    pub fn user_ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.members.keys()
    }

    /// The `subscription_succeeded` data for this roster.
    pub fn subscription_data(&self) -> String {
        subscription_data(self.members.iter().map(|(k, m)| (&**k, &*m.user_info)))
    }
}

/// The presence `subscription_succeeded` data:
/// `{"presence":{"ids":[..],"hash":{id: info},"count":n}}`.
pub fn subscription_data<'a>(members: impl Iterator<Item = (&'a str, &'a RawValue)>) -> String {
    #[derive(Serialize)]
    struct Presence<'a> {
        ids: Vec<&'a str>,
        hash: HashMap<&'a str, &'a RawValue>,
        count: usize,
    }
    #[derive(Serialize)]
    struct Data<'a> {
        presence: Presence<'a>,
    }
    let hash: HashMap<&str, &RawValue> = members.collect();
    let data = Data {
        presence: Presence {
            ids: hash.keys().copied().collect(),
            count: hash.len(),
            hash,
        },
    };
    serde_json::to_string(&data).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, info: &str) -> MemberInfo {
        MemberInfo {
            user_id: id.into(),
            user_info: RawValue::from_string(info.to_owned()).expect("json").into(),
        }
    }

    #[test]
    fn members_are_users_not_sockets() {
        let mut r = Roster::default();
        let (a1, a2, b) = (
            SocketId::new(1, 1),
            SocketId::new(1, 2),
            SocketId::new(2, 1),
        );
        assert!(r.join(a1, &member("42", r#"{"name":"Ada"}"#)));
        assert!(!r.join(a2, &member("42", r#"{"name":"Other"}"#)));
        assert!(r.join(b, &member("7", "null")));
        assert_eq!(r.member_count(), 2);
        assert_eq!(r.leave(a1), None);
        assert_eq!(r.leave(a2).as_deref(), Some("42"));
        assert_eq!(r.leave(a2), None);
        assert_eq!(r.member_count(), 1);
        assert_eq!(
            r.subscription_data(),
            r#"{"presence":{"ids":["7"],"hash":{"7":null},"count":1}}"#
        );
    }

    #[test]
    fn first_info_wins_and_resubscribe_does_not_double_count() {
        let mut r = Roster::default();
        let s = SocketId::new(1, 1);
        r.join(s, &member("42", r#"{"name":"Ada"}"#));
        r.join(SocketId::new(1, 2), &member("42", r#"{"name":"Other"}"#));
        assert!(!r.join(s, &member("42", r#"{"name":"Ada"}"#)));
        assert!(r
            .subscription_data()
            .contains(r#""hash":{"42":{"name":"Ada"}}"#));
        assert_eq!(r.leave(s), None);
        assert_eq!(r.leave(SocketId::new(1, 2)).as_deref(), Some("42"));
    }

    #[test]
    fn empty_hash_is_an_object() {
        assert_eq!(
            Roster::default().subscription_data(),
            r#"{"presence":{"ids":[],"hash":{},"count":0}}"#
        );
    }
}
