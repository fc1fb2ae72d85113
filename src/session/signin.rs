//! `pusher:signin`: user authentication of a connection, and the watchlist
//! that comes with it.
//!
//! A failed sign-in gets `pusher:error` 4009; the connection is closed only
//! when the app requires signed-in connections.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::Session;
use crate::auth;
use crate::hub::presence::null_info;
use crate::protocol::messages::{self, ClientMessage, SigninData};
use crate::protocol::{codes, Close};

/// Pusher accepts the first 100 watched ids.
const MAX_WATCHLIST: usize = 100;

/// The user a connection signed in as.
#[derive(Debug)]
pub(super) struct SignedInUser {
    pub id: Arc<str>,
    pub info: Arc<RawValue>,
    pub watchlist: Vec<Arc<str>>,
}

#[derive(Deserialize)]
struct UserData {
    id: serde_json::Value,
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
    #[serde(default)]
    watchlist: Option<Vec<String>>,
}

impl Session {
    pub(super) async fn on_signin(&mut self, message: &ClientMessage<'_>) {
        let data: SigninData = match message.decode_data() {
            Ok(d) => d,
            Err(_) => {
                return self
                    .signin_failed("Invalid pusher:signin data: auth and user_data are required")
            }
        };
        let app = self.app.app().clone();
        let signed = auth::user_string_to_sign(&self.socket_id, &data.user_data);
        if let Err(e) =
            auth::verify_auth_any(&app.key, app.verifying_secrets(), &signed, &data.auth)
        {
            return self.signin_failed(&format!("Sign-in refused: {e}"));
        }
        let user: UserData = match serde_json::from_str(&data.user_data) {
            Ok(u) => u,
            Err(_) => return self.signin_failed("user_data must be a JSON object with an id"),
        };
        let id = match user.id {
            serde_json::Value::String(s) if !s.is_empty() => s,
            _ => return self.signin_failed("user_data.id must be a non-empty string"),
        };
        if id.len() > app.max_user_id_length {
            return self.signin_failed("user_data.id is too long");
        }
        if let Some(current) = &self.user {
            if *current.id != *id {
                return self.signin_failed("Connection is already signed in as another user");
            }
            self.conn.send(messages::signin_success(&data.user_data));
            return;
        }

        let mut watchlist: Vec<Arc<str>> = user
            .watchlist
            .unwrap_or_default()
            .into_iter()
            .map(Arc::from)
            .collect();
        let truncated = watchlist.len() > MAX_WATCHLIST;
        watchlist.truncate(MAX_WATCHLIST);

        let id: Arc<str> = id.into();
        self.ctx
            .adapter
            .user_signed_in(&self.app, &id, &self.conn)
            .await;
        self.conn.send(messages::signin_success(&data.user_data));
        if truncated {
            let accepted: Vec<&str> = watchlist.iter().map(|s| &**s).collect();
            self.send_error(
                Some(codes::WATCHLIST_LIMIT),
                &format!(
                    "Watchlist limit exceeded: only the first {MAX_WATCHLIST} ids are watched: {}",
                    accepted.join(",")
                ),
            );
        }
        if app.watchlist_events && !watchlist.is_empty() {
            self.app.watch(&watchlist, &self.conn);
            let status = self.ctx.adapter.online(&self.app, &watchlist).await;
            let mut online = Vec::new();
            let mut offline = Vec::new();
            for (id, is_online) in watchlist.iter().zip(status) {
                if is_online {
                    online.push(&**id);
                } else {
                    offline.push(&**id);
                }
            }
            self.conn
                .send(messages::watchlist_events(&online, &offline));
        }
        self.user = Some(SignedInUser {
            id,
            info: user.user_info.map(Arc::from).unwrap_or_else(null_info),
            watchlist,
        });
    }

    fn signin_failed(&self, message: &str) {
        if self.app.app().require_signin {
            // The close carries its own pusher:error; queued frames are dropped.
            self.conn.request_close(Close::SIGNIN_FAILED);
        } else {
            self.send_error(Some(codes::UNAUTHORIZED), message);
        }
    }
}
