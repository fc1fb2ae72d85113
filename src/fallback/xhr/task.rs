//! One HTTP session's task: runs its protocol session, fed by `xhr_send`,
//! until the connection is closed or the client is gone (no receive
//! request open for `http_session_timeout`), with the sign-in deadline of
//! apps that require one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::sessions::{HttpSession, HttpSessions};
use super::LINGER;
use crate::protocol::Close;
use crate::session::Session;

/// The session task: feeds sent frames to the protocol session until the
/// connection is closed or the client is gone.
pub(super) async fn run(
    mut session: Session,
    http: Arc<HttpSession>,
    mut inbox: mpsc::Receiver<String>,
    sessions: web::Data<HttpSessions>,
    id: String,
) {
    let signin_deadline = session.signin_deadline();
    let disconnect_timeout = Duration::from_secs(session.ctx.server.http_session_timeout);
    // One timer, set to the next moment something could be due: the
    // session's idle limit, or the sign-in deadline.
    let next_check = |signed_in: bool| {
        let idle_limit = if http.receivers.load(Ordering::Acquire) > 0 {
            Instant::now() + disconnect_timeout
        } else {
            http.last_seen() + disconnect_timeout
        };
        match signin_deadline.filter(|_| !signed_in) {
            Some(deadline) => idle_limit.min(deadline),
            None => idle_limit,
        }
    };
    let timer = tokio::time::sleep_until(next_check(false));
    tokio::pin!(timer);
    let close_requested = http.conn.close_requested();
    tokio::pin!(close_requested);
    let closed = loop {
        tokio::select! {
            biased;
            request = &mut close_requested => break Some(request),
            text = inbox.recv() => match text {
                Some(text) => match session.count_inbound() {
                    Ok(()) => session.handle_text(&text).await,
                    Err(close) => http.conn.request_close(close),
                },
                None => break None,
            },
            () = &mut timer => {
                if http.receivers.load(Ordering::Acquire) == 0 && http.idle_for() >= disconnect_timeout {
                    break None;
                }
                if signin_deadline.is_some_and(|d| Instant::now() >= d) && !session.is_authorized() {
                    http.conn.request_close(Close::SIGNIN_TIMEOUT);
                }
                timer.as_mut().reset(next_check(session.is_authorized()));
            }
        }
    };
    session.leave_everything(closed).await;
    if closed.is_some() {
        // Let the client's next receive request collect the close frame.
        tokio::time::sleep(LINGER).await;
    }
    sessions.sessions.remove(&id);
}
