//! Publishing an event: the one operation behind the HTTP API's events,
//! the console's test events and clients' `client-*` events.
//!
//! It owns what every publication decides: whether the channel's polling
//! history keeps it (recorded *before* it is published, so a poller that
//! reads history after hearing of an event finds it), cached or plain, the
//! frame (built once and shared by every subscriber), the counters, and
//! the report to the app's observers. Delivery is local fan-out plus, in a
//! cluster, the relay to the other nodes.

use bytestring::ByteString;

use super::Adapter;
use crate::hub::{AppEvent, AppHub};
use crate::protocol::{messages, ChannelKind, ChannelType, SocketId};

/// A validated event from the HTTP API (or the console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEvent {
    pub name: String,
    pub data: String,
    pub channels: Vec<String>,
    /// The socket that must not get it (the SDKs' `socket_id`).
    pub except: Option<SocketId>,
}

/// A client event that passed the session's checks.
#[derive(Debug, Clone, Copy)]
pub struct ClientEvent<'a> {
    pub channel: &'a str,
    pub name: &'a str,
    pub data: &'a str,
    pub socket: SocketId,
    /// The sender's presence user id, added by the server.
    pub user_id: Option<&'a str>,
}

impl Adapter {
    /// Publishes an API event on each of its channels: one frame per
    /// channel; history first where the app keeps it; cache channels keep
    /// the frame for later subscribers.
    pub fn publish_api_event(&self, app: &AppHub, event: &ApiEvent) {
        app.emit(AppEvent::ApiEvent {
            channels: &event.channels,
            event: &event.name,
            data: &event.data,
        });
        for channel in &event.channels {
            let kind = ChannelType::of(channel);
            if kind.kind != ChannelKind::ServerToUser
                && app.history().enabled()
                && app.app().keeps_history(channel)
            {
                self.record(app, channel, &event.name, &event.data);
            }
            let frame = messages::frame(&event.name, Some(channel), &event.data);
            app.metrics().events_published.inc();
            self.deliver(app, channel, frame, event.except, kind.cached);
        }
    }

    /// Relays a client event to the channel's other subscribers, with the
    /// sender's `user_id` when it has one; never back to the sender.
    pub fn publish_client_event(&self, app: &AppHub, event: ClientEvent<'_>) {
        let frame =
            messages::frame_with_user(event.name, Some(event.channel), event.data, event.user_id);
        self.deliver(app, event.channel, frame, Some(event.socket), false);
        app.metrics().client_events.inc();
        app.emit(AppEvent::ClientEvent {
            socket: event.socket,
            channel: event.channel,
            event: event.name,
            data: event.data,
            user_id: event.user_id,
        });
    }

    /// Delivers `frame` to every subscriber of `channel`, on every node,
    /// except the socket `except`; `cached`: every node keeps it as the
    /// cache channel's last event.
    fn deliver(
        &self,
        app: &AppHub,
        channel: &str,
        frame: ByteString,
        except: Option<SocketId>,
        cached: bool,
    ) {
        let delivered = if cached {
            app.publish_cached(channel, &frame, except)
        } else {
            app.publish(channel, &frame, except)
        };
        app.metrics().deliveries.inc_by(delivered as u64);
        if let Adapter::Redis(redis) = self {
            redis.relay_publish(app, channel, frame, except, cached);
        }
    }

    /// Adds an API event to the channel's polling history (one history for
    /// the whole cluster) and wakes long-polls.
    fn record(&self, app: &AppHub, channel: &str, event: &str, data: &str) {
        match self {
            Adapter::Local(_) => {
                app.history().append(channel, event, data);
                app.notify_pollers(channel);
            }
            Adapter::Redis(redis) => redis.record(app, channel, event, data),
        }
    }
}
