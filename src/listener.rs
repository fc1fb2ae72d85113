//! The main listener: actix-server accepts TCP (or TLS) connections and
//! actix-http serves each one. Ordinary requests go to the actix-web app;
//! an upgrade request is handed over, socket and all, to `ws::upgrade`,
//! which runs the WebSocket connection on a task of its own.
//!
//! actix-web's `HttpServer` cannot take an upgrade handler, so this builds
//! what it would build (its defaults: HTTP/1 keep-alive 5 s, 5 s to send a
//! request head, 1 s to disconnect, one worker per core) plus the handler.
//! The listen backlog is `[server] backlog`, by default the kernel's
//! `net.core.somaxconn` (which caps whatever is asked for anyway), so a
//! burst of reconnects is not refused by a fixed 1024.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::body::MessageBody;
use actix_http::{h1, HttpService, KeepAlive, Request, TlsAcceptorConfig};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};

use actix_web::dev::{AppConfig, Extensions, Response};

use crate::http::peer::PeerSocket;
use crate::http::State;
use crate::ws::{self, Io};

/// The backlog when `somaxconn` cannot be read.
const FALLBACK_BACKLOG: u32 = 1024;

/// Pending connections the kernel holds for the listener: `configured`, or
/// (0) the kernel's `net.core.somaxconn`.
pub fn backlog(configured: u32) -> i32 {
    let backlog = if configured > 0 {
        configured
    } else {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(FALLBACK_BACKLOG)
    };
    i32::try_from(backlog).unwrap_or(i32::MAX)
}
/// How long a TLS handshake may take.
const TLS_HANDSHAKE: Duration = Duration::from_secs(3);

/// Binds `address` and builds the server (not yet running); returns it with
/// the address it listens on (the port is chosen when `address` asks for 0).
pub fn bind<F, I, S, B>(
    address: (&str, u16),
    state: State,
    tls: Option<rustls::ServerConfig>,
    app: F,
) -> std::io::Result<(actix_server::Server, SocketAddr)>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    let listener = tcp_listener(address, backlog(state.server.backlog))?;
    let addr = listener.local_addr()?;
    let shutdown = state.server.shutdown_timeout;
    let builder = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(shutdown);
    let server = match tls {
        None => builder.listen("herald", listener, move || {
            http(addr, app.clone(), state.clone()).tcp()
        })?,
        Some(config) => builder.listen("herald-tls", listener, move || {
            http(addr, app.clone(), state.clone()).rustls_0_23_with_config(
                config.clone(),
                TlsAcceptorConfig::default().handshake_timeout(TLS_HANDSHAKE),
            )
        })?,
    };
    Ok((server.run(), addr))
}

/// One worker's HTTP service over sockets of type `T`. (The type says what
/// actix-http needs of the app and of the upgrade handler; it has no
/// shorter name.)
#[allow(clippy::type_complexity)]
fn http<T, F, I, S, B>(
    addr: SocketAddr,
    app: F,
    state: State,
) -> HttpService<
    T,
    impl ServiceFactory<
        Request,
        Config = (),
        Response = Response<B>,
        Error = actix_web::Error,
        InitError = S::InitError,
    >,
    B,
    actix_http::h1::ExpectHandler,
    impl ServiceFactory<
        (Request, Framed<T, h1::Codec>),
        Config = (),
        Response = (),
        Error = actix_web::Error,
        InitError = (),
    >,
>
where
    T: Io,
    F: Fn() -> I,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    // The connection moves to a task of its own, sized for it: the
    // dispatcher's task (its future is as large as an HTTP/1 dispatcher)
    // ends here.
    let upgrade = fn_service(move |(req, framed): (Request, Framed<T, h1::Codec>)| {
        actix_web::rt::spawn(ws::upgrade(state.clone(), req, framed));
        std::future::ready(Ok::<_, actix_web::Error>(()))
    });
    let app = app().into_factory().map_err(Into::into).map(Into::into);
    HttpService::build()
        .keep_alive(KeepAlive::default())
        .client_request_timeout(Duration::from_secs(5))
        .client_disconnect_timeout(Duration::from_secs(1))
        // Frames are small and latency matters more than packet count:
        // without this, a second small frame waits for the client's
        // delayed ACK.
        .tcp_nodelay(true)
        .local_addr(addr)
        // Remembers each accepted socket, so that a held HTTP fallback
        // response notices when its client goes away (http::peer).
        .on_connect_ext(|io: &T, data: &mut Extensions| {
            PeerSocket::on_connect(io as &dyn Any, data)
        })
        .upgrade(upgrade)
        .finish(map_config(app, |_| AppConfig::default()))
}

/// A listening socket on `address`; an error names the address.
fn tcp_listener(address: (&str, u16), backlog: i32) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for addr in address.to_socket_addrs()? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        #[cfg(unix)]
        socket.set_reuse_address(true)?;
        match socket
            .bind(&addr.into())
            .and_then(|()| socket.listen(backlog))
        {
            Ok(()) => return Ok(socket.into()),
            Err(e) => {
                last = Some(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr}: {e}"),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to listen on")))
}
