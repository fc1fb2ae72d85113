//! The seven webhook events Pusher defines (their wire vocabulary; delivery
//! is `crate::webhooks`), each built once as the JSON
//! object that goes into a request's `events` array.

use serde::{Deserialize, Serialize};

/// A webhook event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    CacheMiss,
    SubscriptionCount,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::ChannelOccupied,
        Kind::ChannelVacated,
        Kind::MemberAdded,
        Kind::MemberRemoved,
        Kind::ClientEvent,
        Kind::CacheMiss,
        Kind::SubscriptionCount,
    ];

    /// The `name` field of the event.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ChannelOccupied => "channel_occupied",
            Kind::ChannelVacated => "channel_vacated",
            Kind::MemberAdded => "member_added",
            Kind::MemberRemoved => "member_removed",
            Kind::ClientEvent => "client_event",
            Kind::CacheMiss => "cache_miss",
            Kind::SubscriptionCount => "subscription_count",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Events that are held back for the debounce delay, and what cancels
    /// them: a vacated channel occupied again, a removed member back.
    pub fn is_departure(self) -> bool {
        matches!(self, Kind::ChannelVacated | Kind::MemberRemoved)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of event types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindSet(u8);

impl KindSet {
    pub fn all() -> Self {
        KindSet(Kind::ALL.iter().fold(0, |bits, k| bits | k.bit()))
    }

    /// The types named (empty: all of them). Unknown names are ignored:
    /// the configuration refused them already.
    pub fn named<S: AsRef<str>>(names: &[S]) -> Self {
        if names.is_empty() {
            return KindSet::all();
        }
        KindSet(
            names
                .iter()
                .filter_map(|n| Kind::from_name(n.as_ref()))
                .fold(0, |bits, k| bits | k.bit()),
        )
    }

    pub fn contains(self, kind: Kind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn without(self, kind: Kind) -> KindSet {
        KindSet(self.0 & !kind.bit())
    }

    pub fn union(self, other: KindSet) -> KindSet {
        KindSet(self.0 | other.0)
    }

    /// The raw bits (the Redis scripts test them: occupied 1, vacated 2,
    /// added 4, removed 8).
    pub fn bits(self) -> u8 {
        self.0
    }
}

/// One event: what filters and the debounce look at, and its JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub channel: Box<str>,
    pub user_id: Option<Box<str>>,
    pub json: Box<str>,
}

/// The event object, fields in Pusher's order.
#[derive(Serialize)]
struct Object<'a> {
    name: &'a str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_count: Option<usize>,
}

impl<'a> Object<'a> {
    fn of(kind: Kind, channel: &'a str) -> Self {
        Object {
            name: kind.name(),
            channel,
            event: None,
            data: None,
            socket_id: None,
            user_id: None,
            subscription_count: None,
        }
    }

    fn build(self, kind: Kind) -> Event {
        Event {
            kind,
            channel: self.channel.into(),
            user_id: self.user_id.map(Into::into),
            json: serde_json::to_string(&self)
                .unwrap_or_default()
                .into_boxed_str(),
        }
    }
}

impl Event {
    pub fn channel_occupied(channel: &str) -> Event {
        Object::of(Kind::ChannelOccupied, channel).build(Kind::ChannelOccupied)
    }

    pub fn channel_vacated(channel: &str) -> Event {
        Object::of(Kind::ChannelVacated, channel).build(Kind::ChannelVacated)
    }

    pub fn member_added(channel: &str, user_id: &str) -> Event {
        let object = Object {
            user_id: Some(user_id),
            ..Object::of(Kind::MemberAdded, channel)
        };
        object.build(Kind::MemberAdded)
    }

    pub fn member_removed(channel: &str, user_id: &str) -> Event {
        let object = Object {
            user_id: Some(user_id),
            ..Object::of(Kind::MemberRemoved, channel)
        };
        object.build(Kind::MemberRemoved)
    }

    /// A relayed client event; `data` is the string the other clients got
    /// (objects are serialised), `user_id` is set on presence channels.
    pub fn client_event(
        channel: &str,
        event: &str,
        data: &str,
        socket_id: &str,
        user_id: Option<&str>,
    ) -> Event {
        let object = Object {
            event: Some(event),
            data: Some(data),
            socket_id: Some(socket_id),
            user_id,
            ..Object::of(Kind::ClientEvent, channel)
        };
        object.build(Kind::ClientEvent)
    }

    pub fn cache_miss(channel: &str) -> Event {
        Object::of(Kind::CacheMiss, channel).build(Kind::CacheMiss)
    }

    pub fn subscription_count(channel: &str, count: usize) -> Event {
        let object = Object {
            subscription_count: Some(count),
            ..Object::of(Kind::SubscriptionCount, channel)
        };
        object.build(Kind::SubscriptionCount)
    }

    /// Reads back an event object (as kept in the cluster's outbox, where
    /// Redis scripts write some of them).
    pub fn from_json(json: &str) -> Option<Event> {
        #[derive(Deserialize)]
        struct Fields {
            name: String,
            channel: String,
            user_id: Option<String>,
        }
        let fields: Fields = serde_json::from_str(json).ok()?;
        Some(Event {
            kind: Kind::from_name(&fields.name)?,
            channel: fields.channel.into(),
            user_id: fields.user_id.map(Into::into),
            json: json.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_have_pusher_fields_in_order() {
        assert_eq!(
            &*Event::channel_occupied("my-channel").json,
            r#"{"name":"channel_occupied","channel":"my-channel"}"#
        );
        assert_eq!(
            &*Event::member_added("presence-room.1", "42").json,
            r#"{"name":"member_added","channel":"presence-room.1","user_id":"42"}"#
        );
        assert_eq!(
            &*Event::client_event(
                "presence-room.1",
                "client-typing",
                r#"{"typing":true}"#,
                "123.456",
                Some("42")
            )
            .json,
            r#"{"name":"client_event","channel":"presence-room.1","event":"client-typing","data":"{\"typing\":true}","socket_id":"123.456","user_id":"42"}"#
        );
        assert_eq!(
            &*Event::subscription_count("c", 3).json,
            r#"{"name":"subscription_count","channel":"c","subscription_count":3}"#
        );
    }

    #[test]
    fn events_read_back_from_json() {
        let event = Event::member_removed("presence-\"x\"", "7");
        assert_eq!(Event::from_json(&event.json), Some(event));
        assert_eq!(Event::from_json(r#"{"name":"nope","channel":"c"}"#), None);
    }

    #[test]
    fn the_scripts_bits_match() {
        // adapter::redis::scripts::HOOKS hard-codes these.
        let bits = |k| KindSet::named(&[Kind::name(k)]).bits();
        assert_eq!(bits(Kind::ChannelOccupied), 1);
        assert_eq!(bits(Kind::ChannelVacated), 2);
        assert_eq!(bits(Kind::MemberAdded), 4);
        assert_eq!(bits(Kind::MemberRemoved), 8);
    }

    #[test]
    fn kind_sets() {
        let set = KindSet::named(&["member_added", "cache_miss"]);
        assert!(set.contains(Kind::MemberAdded) && set.contains(Kind::CacheMiss));
        assert!(!set.contains(Kind::ClientEvent));
        let none: [&str; 0] = [];
        assert_eq!(KindSet::named(&none), KindSet::all());
    }
}
