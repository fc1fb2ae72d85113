//! The single-node adapter: the local hub is the whole cluster.

use std::future::ready;
use std::sync::Arc;

use bytestring::ByteString;
use futures_util::future::BoxFuture;

use super::{Adapter, AdapterResult};
use crate::hub::history::Read;
use crate::hub::{AppHub, ChannelStats, Connection, MemberInfo, Presence, SubscribeError};
use crate::protocol::SocketId;

/// Delivers and answers from this node's hub alone.
#[derive(Debug, Default)]
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn publish(&self, app: &AppHub, channel: &str, frame: ByteString, except: Option<SocketId>) {
        app.publish(channel, &frame, except);
    }

    fn publish_cached(
        &self,
        app: &AppHub,
        channel: &str,
        frame: ByteString,
        except: Option<SocketId>,
    ) {
        app.store_cached(channel, frame.clone());
        app.publish(channel, &frame, except);
    }

    fn record(&self, app: &AppHub, channel: &str, event: &str, data: &str) {
        app.history.append(channel, event, data);
        app.notify_pollers();
    }

    fn history(
        &self,
        app: Arc<AppHub>,
        channel: String,
        cursor: Option<String>,
        limit: usize,
    ) -> BoxFuture<'static, AdapterResult<Read>> {
        Box::pin(ready(Ok(app.history.read(
            &channel,
            cursor.as_deref(),
            limit,
        ))))
    }

    fn terminate_user(&self, app: &AppHub, user_id: &str) {
        app.terminate_user(user_id);
    }

    fn subscribe(
        &self,
        app: Arc<AppHub>,
        conn: Arc<Connection>,
        channel: String,
        member: Option<MemberInfo>,
    ) -> BoxFuture<'static, Result<(), SubscribeError>> {
        Box::pin(ready(app.subscribe(
            &conn,
            &channel,
            member.as_ref(),
            Presence::Local,
        )))
    }

    fn unsubscribe(
        &self,
        app: Arc<AppHub>,
        socket: SocketId,
        channel: String,
    ) -> BoxFuture<'static, ()> {
        app.unsubscribe(socket, &channel, true);
        Box::pin(ready(()))
    }

    fn user_signed_in(
        &self,
        app: Arc<AppHub>,
        user_id: Arc<str>,
        conn: Arc<Connection>,
    ) -> BoxFuture<'static, ()> {
        if app.add_user(&user_id, &conn) {
            app.notify_watchers(&user_id, true);
        }
        Box::pin(ready(()))
    }

    fn user_signed_out(
        &self,
        app: Arc<AppHub>,
        user_id: Arc<str>,
        socket: SocketId,
    ) -> BoxFuture<'static, ()> {
        if app.remove_user(&user_id, socket) {
            app.notify_watchers(&user_id, false);
        }
        Box::pin(ready(()))
    }

    fn online(&self, app: Arc<AppHub>, user_ids: Vec<Arc<str>>) -> BoxFuture<'static, Vec<bool>> {
        Box::pin(ready(user_ids.iter().map(|id| app.is_online(id)).collect()))
    }

    fn connections_elsewhere(&self, _app: &AppHub) -> usize {
        0
    }

    fn connections_changed(&self, _app: &AppHub) {}

    fn channels(
        &self,
        app: Arc<AppHub>,
        prefix: Option<String>,
    ) -> BoxFuture<'static, AdapterResult<Vec<(String, ChannelStats)>>> {
        Box::pin(ready(Ok(app.channels(prefix.as_deref()))))
    }

    fn channel(
        &self,
        app: Arc<AppHub>,
        name: String,
    ) -> BoxFuture<'static, AdapterResult<Option<ChannelStats>>> {
        Box::pin(ready(Ok(app.channel(&name))))
    }

    fn channel_users(
        &self,
        app: Arc<AppHub>,
        name: String,
    ) -> BoxFuture<'static, AdapterResult<Vec<String>>> {
        Box::pin(ready(Ok(app.channel_users(&name))))
    }

    fn ready(&self) -> bool {
        true
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        Box::pin(ready(()))
    }
}
