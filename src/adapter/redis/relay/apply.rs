//! Applying a message from another node to the local hub: who gets which
//! frame, decided in relay order; the fan-out threads send.

use bytes::Bytes;
use tracing::warn;

use super::wire::Message;
use crate::hub::fanout::Fanout;
use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::protocol::deflate;

/// What a relayed message asks of the adapter beyond the hub.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// This node's own echo came back.
    OwnEcho,
    /// Another node's count of a channel served here changed: the
    /// `app\nchannel` key to recompute.
    CountChanged(String),
}

/// Applies a message from another node to the local hub, and says what
/// else it asks for.
/// Frames go out through `fanout`: this task decides who gets what, in
/// relay order, and the fan-out threads send.
pub fn apply(hub: &Hub, fanout: &Fanout, node: &str, payload: Bytes) -> Applied {
    let Some(message) = Message::decode(&payload) else {
        warn!("ignoring malformed relay message");
        return Applied::Done;
    };
    let ours = message.origin == node;
    match message.kind {
        b'E' if ours => return Applied::OwnEcho,
        b'E' => return Applied::Done,
        b'N' if ours => return Applied::Done,
        // (The app may be new here, or gone: the hub's source decides.)
        b'A' if !ours => {
            hub.app_changed(message.app);
            return Applied::Done;
        }
        b'A' => return Applied::Done,
        b'N' => {
            // Only while subscribers here would hear the count.
            let served = hub
                .by_id(message.app)
                .is_some_and(|app| app.local_subscribers(message.channel) > 0);
            return match served {
                true => Applied::CountChanged(format!("{}\n{}", message.app, message.channel)),
                false => Applied::Done,
            };
        }
        _ => {}
    }
    let Some(app) = hub.by_id(message.app) else {
        return Applied::Done;
    };
    let channel = message.channel;
    match message.kind {
        b'M' | b'R' => {
            // Member events come through here on every node, the deciding
            // one included: that is what keeps them in decision order.
            let Some(frame) = message.body_text() else {
                return Applied::Done;
            };
            let deliver = !(message.kind == b'R' && ours);
            let version = message.number.unwrap_or_default();
            deflate::warm(&frame, || deliver && app.local_subscribers(channel) > 1);
            fanout.deliver(frame.clone(), |visit| {
                app.member_event_recipients(
                    channel,
                    version,
                    &frame,
                    message.except,
                    deliver,
                    visit,
                )
            });
        }
        b'P' | b'C' => {
            // A publication may have added to a polling history, which
            // Redis holds by now: wake long-polls, our own included.
            app.notify_pollers(channel);
            if ours {
                return Applied::Done;
            }
            if let Some(sent) = message.number {
                let now = crate::support::clock::unix_millis();
                METRICS
                    .relay_latency
                    .observe(now.saturating_sub(sent) as f64 / 1000.0);
            }
            let Some(frame) = message.body_text() else {
                return Applied::Done;
            };
            if message.kind == b'C' {
                app.store_cached(channel, frame.clone());
            }
            deflate::warm(&frame, || app.local_subscribers(channel) > 1);
            let delivered = fanout.deliver(frame, |visit| {
                app.recipients(channel, message.except, visit)
            });
            app.metrics().deliveries.inc_by(delivered as u64);
        }
        b'T' if !ours => {
            app.terminate_user(&String::from_utf8_lossy(&message.body));
        }
        b'W' if !ours => {
            let online = message.number == Some(1);
            app.notify_watchers(&String::from_utf8_lossy(&message.body), online);
        }
        _ => {}
    }
    Applied::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::redis::relay::Command;

    #[test]
    fn only_this_nodes_echo_is_its_own() {
        let hub = Hub::new([]);
        let echo = |origin: &str| Bytes::from(Command::Echo.encode(origin, ""));
        let fanout = Fanout::new(1).expect("thread");
        assert_eq!(apply(&hub, &fanout, "me", echo("me")), Applied::OwnEcho);
        assert_eq!(apply(&hub, &fanout, "me", echo("other")), Applied::Done);
    }
}
