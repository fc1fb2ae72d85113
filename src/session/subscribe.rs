//! `pusher:subscribe` and `pusher:unsubscribe`: channel-name checks, the
//! signature check for private, encrypted and presence channels, and the
//! presence member's identity.
//!
//! A refused subscription gets `pusher:subscription_error` on that channel
//! (pusher-js routes it to the channel's handlers and Echo's `.error()`);
//! the connection stays open.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::Session;
use crate::auth;
use crate::hub::presence::null_info;
use crate::hub::{AppEvent, MemberInfo, SubscribeError};
use crate::protocol::channel::{server_to_user_id, validate_channel_name};
use crate::protocol::messages::{self, ClientMessage, SubscribeData, UnsubscribeData};
use crate::protocol::{ChannelKind, ChannelType};

/// A refused subscription: `type`, `error` and `status` of the error frame.
struct Refusal {
    kind: &'static str,
    message: String,
    status: u16,
}

impl Refusal {
    fn auth(message: impl Into<String>) -> Self {
        Refusal {
            kind: "AuthError",
            message: message.into(),
            status: 401,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Refusal {
            kind: "InvalidChannelData",
            message: message.into(),
            status: 400,
        }
    }
}

impl Session {
    pub(super) async fn on_subscribe(&mut self, message: &ClientMessage<'_>) {
        let data: SubscribeData = match message.decode_data() {
            Ok(d) => d,
            Err(_) => {
                self.send_error(None, "Invalid pusher:subscribe data: a channel is required");
                return;
            }
        };
        let name = data.channel.as_str();
        if let Err(e) = validate_channel_name(name, self.app.app().max_channel_name_length) {
            self.refuse(
                name,
                Refusal {
                    kind: "InvalidChannel",
                    message: e.to_string(),
                    status: 400,
                },
            );
            return;
        }
        let max = self.app.app().max_channels_per_connection;
        if self.channels.len() >= max && !self.channels.contains_key(name) {
            self.refuse(
                name,
                Refusal {
                    kind: "LimitReached",
                    message: format!("A connection may be subscribed to at most {max} channels"),
                    status: 429,
                },
            );
            return;
        }
        let kind = ChannelType::of(name);
        let member = match self.authorize(name, kind, &data) {
            Ok(member) => member,
            Err(refusal) => {
                self.refuse(name, refusal);
                return;
            }
        };
        if kind.kind == ChannelKind::ServerToUser {
            // Delivery follows the sign-in, not the channel map.
            self.conn.send(messages::subscription_succeeded(name, "{}"));
            self.channels.insert(name.to_owned(), None);
            return;
        }
        let user_id = member.as_ref().map(|m| m.user_id.clone());
        let subscribed = self
            .ctx
            .adapter
            .subscribe(&self.app, &self.conn, name, member)
            .await;
        match subscribed {
            Ok(_) => {
                if matches!(
                    kind.kind,
                    ChannelKind::Private | ChannelKind::Encrypted | ChannelKind::Presence
                ) {
                    self.authorized_subscription = true;
                }
                self.app.emit(AppEvent::Subscribed {
                    socket: self.conn.socket_id,
                    channel: name,
                    user_id: user_id.as_deref(),
                });
                self.channels.entry(name.to_owned()).or_insert(user_id);
            }
            Err(e @ SubscribeError::MemberLimit(_)) => self.refuse(
                name,
                Refusal {
                    kind: "LimitReached",
                    message: e.to_string(),
                    status: 4100,
                },
            ),
        }
    }

    pub(super) async fn on_unsubscribe(&mut self, message: &ClientMessage<'_>) {
        let Ok(data) = message.decode_data::<UnsubscribeData>() else {
            self.send_error(
                None,
                "Invalid pusher:unsubscribe data: a channel is required",
            );
            return;
        };
        if self.channels.remove(&data.channel).is_some()
            && server_to_user_id(&data.channel).is_none()
        {
            self.ctx
                .adapter
                .unsubscribe(&self.app, self.conn.socket_id, &data.channel)
                .await;
            self.app.emit(AppEvent::Unsubscribed {
                socket: self.conn.socket_id,
                channel: &data.channel,
                user_id: None,
                reason: None,
            });
        }
    }

    fn refuse(&self, channel: &str, refusal: Refusal) {
        tracing::debug!(
            app = %self.app.id(),
            socket = %self.conn.socket_id,
            channel,
            kind = refusal.kind,
            status = refusal.status,
            reason = %refusal.message,
            "subscription refused"
        );
        self.app.emit(AppEvent::SubscriptionRefused {
            socket: self.conn.socket_id,
            channel,
            reason: &refusal.message,
        });
        self.conn.send(messages::subscription_error(
            channel,
            refusal.kind,
            &refusal.message,
            refusal.status,
        ));
    }

    /// Checks the subscription's right to the channel and, for presence
    /// channels, works out the member.
    fn authorize(
        &self,
        name: &str,
        kind: ChannelType,
        data: &SubscribeData,
    ) -> Result<Option<MemberInfo>, Refusal> {
        match kind.kind {
            ChannelKind::Public => Ok(None),
            ChannelKind::ServerToUser => {
                let wanted = server_to_user_id(name).unwrap_or_default();
                match &self.user {
                    Some(user) if &*user.id == wanted => Ok(None),
                    _ => Err(Refusal::auth(format!(
                        "Only a connection signed in as user {wanted} may subscribe to {name}"
                    ))),
                }
            }
            ChannelKind::Private | ChannelKind::Encrypted => {
                self.verify(name, data.channel_data.as_deref(), data)?;
                Ok(None)
            }
            ChannelKind::Presence => {
                let channel_data = data.channel_data.as_deref().filter(|d| !d.is_empty());
                self.verify(name, channel_data, data)?;
                match channel_data {
                    Some(raw) => self.parse_member(raw).map(Some),
                    // pusher-js >= 7.4 may join as the signed-in user.
                    None => match &self.user {
                        Some(user) => Ok(Some(MemberInfo {
                            user_id: user.id.clone(),
                            user_info: user.info.clone(),
                        })),
                        None => Err(Refusal::invalid(
                            "Presence channels need channel_data or a signed-in user",
                        )),
                    },
                }
            }
        }
    }

    fn verify(
        &self,
        name: &str,
        channel_data: Option<&str>,
        data: &SubscribeData,
    ) -> Result<(), Refusal> {
        let auth = data
            .auth
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| Refusal::auth(format!("Missing auth for {name}")))?;
        let signed = auth::channel_string_to_sign(&self.socket_id, name, channel_data);
        let app = &self.app.app();
        auth::verify_auth_any(&app.key, app.verifying_secrets(), &signed, auth)
            .map_err(|e| Refusal::auth(e.to_string()))
    }

    /// Reads `{"user_id": string|number, "user_info": any}` from channel_data.
    fn parse_member(&self, raw: &str) -> Result<MemberInfo, Refusal> {
        #[derive(Deserialize)]
        struct ChannelData {
            user_id: serde_json::Value,
            #[serde(default)]
            user_info: Option<Box<RawValue>>,
        }
        let data: ChannelData = serde_json::from_str(raw)
            .map_err(|_| Refusal::invalid("channel_data must be a JSON object with a user_id"))?;
        let user_id = match data.user_id {
            serde_json::Value::String(s) if !s.is_empty() => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                return Err(Refusal::invalid(
                    "user_id must be a non-empty string or a number",
                ))
            }
        };
        let app = &self.app.app();
        if user_id.len() > app.max_user_id_length {
            return Err(Refusal::invalid(format!(
                "user_id is longer than {} characters",
                app.max_user_id_length
            )));
        }
        let user_info: Arc<RawValue> = match data.user_info {
            Some(info) => Arc::from(info),
            None => null_info(),
        };
        if user_info.get().len() > app.max_presence_user_info_bytes {
            return Err(Refusal {
                kind: "LimitReached",
                message: format!(
                    "user_info is larger than {} bytes",
                    app.max_presence_user_info_bytes
                ),
                status: 413,
            });
        }
        Ok(MemberInfo {
            user_id: user_id.into(),
            user_info,
        })
    }
}
