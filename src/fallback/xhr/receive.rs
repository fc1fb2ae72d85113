//! The two receive requests: `xhr_streaming` (one long response carrying
//! every frame) and `xhr` (one poll). Either takes the session's outbound
//! queue for as long as it lasts; a newer one takes it over.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use bytestring::ByteString;
use futures_util::stream;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use super::sessions::{find_or_open, HttpSession, HttpSessions, Receiving, SessionPath};
use super::{frames_response, heartbeat_interval, STREAM_LIMIT};
use crate::fallback::framing;
use crate::http::cors;
use crate::http::peer::{PeerSocket, SocketHandle};
use crate::http::State;
use crate::protocol::Close;

/// Resolves when the client of this request closed its connection.
async fn client_closed(peer: Option<&SocketHandle>) {
    match peer {
        Some(peer) => peer.closed_by_peer().await,
        None => std::future::pending().await,
    }
}

/// Takes the session's outbound queue for this receive request, making an
/// older receive request (e.g. a stream pusher-js replaced) let go of it.
async fn take_queue(http: &Arc<HttpSession>) -> Option<(u64, OwnedMutexGuard<()>)> {
    let generation = http.generation.advance();
    let guard = tokio::time::timeout(Duration::from_secs(2), http.receiving.clone().lock_owned())
        .await
        .ok()?;
    Some((generation, guard))
}

/// What one wait on the session produced.
enum Next {
    /// Frames were moved into the batch.
    Frames,
    Close(Close),
    Heartbeat,
    /// A newer receive request took over.
    Stop,
    /// The client closed this request's connection.
    ClientGone,
}

async fn next(
    http: &HttpSession,
    generation: u64,
    batch: &mut Vec<ByteString>,
    heartbeat: Instant,
    peer: Option<&SocketHandle>,
) -> Next {
    tokio::select! {
        biased;
        request = http.conn.close_requested() => Next::Close(request),
        () = http.generation.changed_from(generation) => Next::Stop,
        () = client_closed(peer) => Next::ClientGone,
        request = http.conn.next_frames(batch) => match request {
            Some(request) => Next::Close(request),
            None => {
                http.app.metrics().sent(batch.iter());
                Next::Frames
            }
        },
        () = tokio::time::sleep_until(heartbeat) => Next::Heartbeat,
    }
}

/// `POST .../xhr_streaming`: one long response carrying every frame.
pub async fn streaming(
    req: HttpRequest,
    path: SessionPath,
    state: web::Data<State>,
    sessions: web::Data<HttpSessions>,
) -> HttpResponse {
    let http = match find_or_open(&req, &state, &sessions, &path).await {
        Ok(http) => http,
        Err(refused) => return refused.respond(&req),
    };
    let Some((generation, turn)) = take_queue(&http).await else {
        return frames_response(&req, "c[2010,\"Another connection still open\"]\n".into());
    };
    let mut first = framing::streaming_prelude();
    if !http.opened.swap(true, Ordering::AcqRel) {
        first.push_str(framing::OPEN);
    }
    struct Stream {
        http: Arc<HttpSession>,
        generation: u64,
        _turn: OwnedMutexGuard<()>,
        batch: Vec<ByteString>,
        pending: Option<String>,
        /// Characters sent so far, counted as the browser counts them.
        written: usize,
        heartbeat: Duration,
        session_timeout: Duration,
        done: bool,
        receiving: Receiving,
        peer: Option<SocketHandle>,
    }
    let state0 = Stream {
        receiving: Receiving::new(http.clone()),
        peer: req.conn_data::<PeerSocket>().map(PeerSocket::handle),
        http,
        generation,
        _turn: turn,
        batch: Vec::new(),
        pending: Some(first),
        written: 0,
        heartbeat: heartbeat_interval(&state),
        session_timeout: Duration::from_secs(state.server.http_session_timeout),
        done: false,
    };
    let body = stream::unfold(state0, |mut s| async move {
        if let Some(chunk) = s.pending.take() {
            s.written += chunk.encode_utf16().count();
            return Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), s));
        }
        if s.done {
            return None;
        }
        if s.written > STREAM_LIMIT {
            // pusher-js is replacing this stream: take no frame it would
            // never read, and keep the queue for its next request.
            let deadline = Instant::now() + s.session_timeout;
            s.http
                .generation
                .changed_before(s.generation, deadline)
                .await;
            return None;
        }
        let heartbeat = Instant::now() + s.heartbeat;
        let next = next(
            &s.http,
            s.generation,
            &mut s.batch,
            heartbeat,
            s.peer.as_ref(),
        );
        let chunk = match next.await {
            Next::Frames => framing::messages(&std::mem::take(&mut s.batch)),
            Next::Heartbeat => framing::HEARTBEAT.to_owned(),
            Next::Close(request) => {
                s.done = true;
                framing::close(&request)
            }
            Next::Stop => return None,
            Next::ClientGone => {
                s.receiving.client_left();
                return None;
            }
        };
        s.http.touch();
        s.written += chunk.encode_utf16().count();
        Some((Ok(Bytes::from(chunk)), s))
    });
    cors::apply(&req, HttpResponse::Ok())
        .content_type("application/javascript; charset=UTF-8")
        .insert_header((
            "Cache-Control",
            "no-store, no-cache, must-revalidate, max-age=0",
        ))
        .streaming(body)
}

/// `POST .../xhr`: one poll, answered as soon as there is something to say.
pub async fn polling(
    req: HttpRequest,
    path: SessionPath,
    state: web::Data<State>,
    sessions: web::Data<HttpSessions>,
) -> HttpResponse {
    let http = match find_or_open(&req, &state, &sessions, &path).await {
        Ok(http) => http,
        Err(refused) => return refused.respond(&req),
    };
    let mut receiving = Receiving::new(http.clone());
    if !http.opened.swap(true, Ordering::AcqRel) {
        // The open frame alone; connection_established follows on the next poll.
        return frames_response(&req, framing::OPEN.to_owned());
    }
    let Some((generation, _turn)) = take_queue(&http).await else {
        return frames_response(&req, "c[2010,\"Another connection still open\"]\n".into());
    };
    let mut batch = Vec::new();
    let peer = req.conn_data::<PeerSocket>().map(PeerSocket::handle);
    let body = match next(
        &http,
        generation,
        &mut batch,
        Instant::now() + heartbeat_interval(&state),
        peer.as_ref(),
    )
    .await
    {
        Next::Frames => framing::messages(&batch),
        Next::Heartbeat => framing::HEARTBEAT.to_owned(),
        Next::Close(request) => framing::close(&request),
        Next::Stop => String::new(),
        Next::ClientGone => {
            receiving.client_left();
            String::new()
        }
    };
    frames_response(&req, body)
}
