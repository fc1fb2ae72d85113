//! Client events (`client-*`): checked in Pusher's order, then relayed to the
//! channel's other subscribers, never echoed, with the sender's presence
//! `user_id` added by the server (a client-sent `user_id` is never trusted).

use super::Session;
use crate::adapter::ClientEvent;
use crate::protocol::messages::ClientMessage;
use crate::protocol::{codes, ChannelType};

impl Session {
    pub(super) fn on_client_event(&mut self, message: &ClientMessage) {
        match self.check_client_event(message) {
            Ok((channel, data)) => {
                let user_id = self.channels.get(channel).cloned().flatten();
                self.ctx.adapter.publish_client_event(
                    &self.app,
                    ClientEvent {
                        channel,
                        name: &message.event,
                        data: &data,
                        socket: self.conn.socket_id,
                        user_id: user_id.as_deref(),
                    },
                );
            }
            Err((code, text)) => self.send_error(code, &text),
        }
    }

    /// Returns the channel and the payload to forward, or the error to send.
    fn check_client_event<'m>(
        &mut self,
        message: &'m ClientMessage,
    ) -> Result<(&'m str, String), (Option<u16>, String)> {
        let app = &self.app.app();
        let reject = |text: String| (None, text);
        if !app.client_events {
            return Err(reject(
                "To send client events, you must enable this feature in the Settings page of your dashboard."
                    .into(),
            ));
        }
        if !message.event.starts_with("client-") {
            return Err(reject(
                "Client event rejected - client events must be prefixed by 'client-'".into(),
            ));
        }
        let channel = message
            .channel
            .as_deref()
            .ok_or_else(|| reject("Client event rejected - a channel is required".into()))?;
        let kind = ChannelType::of(channel);
        if kind.is_encrypted() {
            return Err(reject(
                "Client event rejected - not supported on encrypted channels".into(),
            ));
        }
        if !kind.accepts_client_events() {
            return Err(reject(
                "Client event rejected - only supported on private and presence channels".into(),
            ));
        }
        if !self.channels.contains_key(channel) {
            return Err(reject(format!(
                "Client event rejected - not subscribed to channel {channel}"
            )));
        }
        if message.event.len() > app.max_event_name_length {
            return Err(reject(format!(
                "Client event rejected - event name longer than {} characters",
                app.max_event_name_length
            )));
        }
        let data = message.data_as_string();
        if data.len() > app.max_event_bytes {
            return Err(reject(format!(
                "Client event rejected - data larger than {} bytes",
                app.max_event_bytes
            )));
        }
        if !self.client_events.allow() {
            return Err((
                Some(codes::CLIENT_EVENT_RATE_LIMIT),
                "Client event rejected due to rate limit".into(),
            ));
        }
        Ok((channel, data))
    }
}
