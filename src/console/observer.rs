//! What the console shows of an app's events: the one place where the
//! console's JSON lines are shaped. Built only while a console is open on
//! the app (the feed's listener count, one atomic read).

use std::sync::Arc;

use dashmap::DashMap;
use serde_json::{json, Value};

use super::feed::Feed;
use crate::hub::{AppEvent, AppHub, EventKind, Observer, ObserverSlot};

/// Every app's console feed, by app id.
#[derive(Debug, Default)]
pub struct Consoles {
    feeds: DashMap<Box<str>, Arc<Feed>>,
}

impl Consoles {
    /// Lets a console watch `app` (at start, and for apps a reload adds).
    pub fn attach(&self, app: &AppHub) {
        let feed = self.feeds.entry(app.id().into()).or_default().clone();
        app.observers()
            .attach(ObserverSlot::Console, Arc::new(ConsoleObserver { feed }));
    }

    /// Forgets the feeds of apps that are gone (reload).
    pub fn retain(&self, live: &dyn Fn(&str) -> bool) {
        self.feeds.retain(|id, _| live(id));
    }

    /// The feed of app `id`, if it is attached.
    pub fn feed(&self, id: &str) -> Option<Arc<Feed>> {
        self.feeds.get(id).map(|f| f.clone())
    }
}

/// Reports one app's events to its feed.
struct ConsoleObserver {
    feed: Arc<Feed>,
}

impl Observer for ConsoleObserver {
    fn wants(&self, kind: EventKind) -> bool {
        self.feed.watched() && shown(kind)
    }

    fn observe(&self, event: &AppEvent<'_>) {
        if let Some(line) = line(event) {
            self.feed.report(line);
        }
    }
}

/// The kinds a console shows (membership and occupancy show as the
/// subscriptions behind them).
fn shown(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::ConnectionOpened
            | EventKind::ConnectionRefused
            | EventKind::ConnectionClosed
            | EventKind::Subscribed
            | EventKind::SubscriptionRefused
            | EventKind::Unsubscribed
            | EventKind::ClientEvent
            | EventKind::ApiEvent
            | EventKind::WebhookOutcome
    )
}

/// The console's line for an event.
fn line(event: &AppEvent<'_>) -> Option<Value> {
    Some(match *event {
        AppEvent::ConnectionOpened { socket, transport } => json!({
            "type": "connection", "state": "opened", "socket_id": socket.to_string(),
            "transport": transport.label(),
        }),
        AppEvent::ConnectionRefused {
            transport,
            reason,
            code,
        } => json!({
            "type": "connection", "state": "refused", "transport": transport.label(),
            "reason": reason, "code": code,
        }),
        AppEvent::ConnectionClosed {
            socket,
            transport,
            close,
        } => json!({
            "type": "connection", "state": "closed", "socket_id": socket.to_string(),
            "transport": transport.label(), "code": close.map(|c| c.code),
            "reason": close.map(|c| c.reason),
        }),
        AppEvent::Subscribed {
            socket,
            channel,
            user_id,
        } => json!({
            "type": "subscribed", "socket_id": socket.to_string(), "channel": channel,
            "user_id": user_id,
        }),
        AppEvent::SubscriptionRefused {
            socket,
            channel,
            reason,
        } => json!({
            "type": "subscription_refused", "socket_id": socket.to_string(), "channel": channel,
            "reason": reason,
        }),
        AppEvent::Unsubscribed {
            socket,
            channel,
            user_id,
            reason,
        } => {
            let mut line = json!({
                "type": "unsubscribed", "socket_id": socket.to_string(), "channel": channel,
            });
            if reason.is_some() {
                line["user_id"] = json!(user_id);
                line["reason"] = json!(reason);
            }
            line
        }
        AppEvent::ClientEvent {
            socket,
            channel,
            event,
            data,
            user_id,
        } => json!({
            "type": "client_event", "socket_id": socket.to_string(), "channel": channel,
            "event": event, "data": data, "user_id": user_id,
        }),
        AppEvent::ApiEvent {
            channels,
            event,
            data,
        } => json!({
            "type": "api_event", "channels": channels, "event": event, "data": data,
        }),
        AppEvent::WebhookOutcome {
            url,
            events,
            outcome,
            attempts,
        } => json!({
            "type": "webhook", "url": url, "events": events,
            "outcome": outcome, "attempts": attempts,
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppConfig;
    use crate::protocol::SocketId;

    #[test]
    fn a_console_sees_lines_only_while_open() {
        let app = AppHub::new(Arc::new(AppConfig::new("1", "k", "s")));
        let consoles = Consoles::default();
        consoles.attach(&app);
        let subscribed = AppEvent::Subscribed {
            socket: SocketId::new(1, 2),
            channel: "presence-a",
            user_id: Some("u"),
        };
        app.emit(subscribed);
        let feed = consoles.feed("1").expect("attached");
        let mut console = feed.listen();
        assert!(
            console.events.try_recv().is_err(),
            "nothing before it opened"
        );
        app.emit(subscribed);
        app.emit(AppEvent::Occupied { channel: "c" });
        let got = console.events.try_recv().expect("a line");
        assert!(got.contains(r#""type":"subscribed""#), "{got}");
        assert!(got.contains(r#""socket_id":"1.2""#), "{got}");
        assert!(console.events.try_recv().is_err(), "occupancy is not shown");
    }
}
