//! Builds the HTTP server (WebSocket upgrade, HTTP API, health check), runs
//! it, and shuts it down gracefully: on SIGTERM or Ctrl-C every client is
//! told to reconnect elsewhere (close 4200) before the listener stops.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use tracing::{info, warn};

use crate::adapter::{Adapter, LocalAdapter, RedisAdapter};
use crate::app_store::AppStore;
use crate::catalog::{self, Catalog};
use crate::config::{AppConfig, AppSource, ClusterDriver, Config, DEFAULT_APP_SECRET};
use crate::fallback::HttpSessions;
use crate::http::admission::Admission;
use crate::http::per_address::PerAddress;
use crate::http::State;
use crate::hub::Hub;
use crate::metrics::{AppGauges, ClusterGauges, METRICS};
use crate::protocol::Close;
use crate::reload::{Reload, Reloader};
use crate::support::files;
use crate::tls::Certificates;
use crate::webhooks::Webhooks;
use crate::{admin, api, console, fallback, laravel, polling};

/// How long sessions get to say goodbye and leave their channels on shutdown.
const SESSIONS_GRACE: Duration = Duration::from_secs(2);

/// How often expired cache-channel events, history and idle per-address
/// entries are dropped.
const CACHE_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Why Herald stopped before serving.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The configuration cannot be served (exit code 2).
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs Herald until a shutdown signal.
pub async fn run(config: Config, reload: Reload) -> Result<(), Failure> {
    let store = open_store(&config).await?;
    let initial_apps = match &store {
        Some((_, apps, _)) => apps.clone(),
        None => config.apps.clone(),
    };
    let hub = Arc::new(Hub::new(initial_apps));
    let mut outbox = None;
    let adapter = match config.cluster.driver {
        ClusterDriver::Local => Adapter::Local(LocalAdapter),
        ClusterDriver::Redis => {
            let redis =
                RedisAdapter::start(&config.cluster, hub.clone()).map_err(std::io::Error::other)?;
            info!(
                node = redis.node_id(),
                "cluster mode: sharing state through Redis at {}",
                redacted(&config.cluster.url)
            );
            outbox = Some(redis.webhook_outbox());
            Adapter::Redis(redis)
        }
    };
    let webhooks = Arc::new(Webhooks::start(hub.clone(), outbox));
    let state = State {
        server: Arc::new(config.server.clone()),
        hub,
        adapter: Arc::new(adapter),
        long_polls: PerAddress::new(config.server.max_long_polls_per_address, 0),
        admission: Admission::new(&config.server),
    };
    let certificates = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => {
            Some(Certificates::load(cert.as_ref(), key.as_ref()).map_err(std::io::Error::other)?)
        }
        _ => None,
    };
    let data = web::Data::new(state.clone());
    let console = config
        .console
        .token
        .clone()
        .map(|token| web::Data::new(console::Token::new(&token)));
    // Each app's console feed, observing the app while a console is open.
    let consoles = console.as_ref().map(|_| {
        let consoles = Arc::new(console::Consoles::default());
        for app in state.hub.apps() {
            consoles.attach(&app);
        }
        consoles
    });
    if console.is_some() {
        info!("live console at /console (it asks for the console token)");
    }
    let catalog = match store {
        Some((db, _, healthy)) => {
            let catalog = Catalog::of_store(
                state.clone(),
                webhooks.clone(),
                consoles.clone(),
                db,
                config.app_store.clone(),
                healthy,
            );
            catalog.start_sync();
            catalog
        }
        None => Catalog::of_file(state.clone(), webhooks.clone(), consoles.clone()),
    };
    let admin = config.admin.token.as_deref().map(|token| {
        info!("app management API at /admin/apps (it asks for the admin token)");
        (
            web::Data::new(admin::Token::new(token)),
            web::Data::from(catalog.clone()),
        )
    });
    let console_feeds = consoles.clone().map(web::Data::from);
    let http_sessions = web::Data::new(HttpSessions::new(&config.server));
    let sessions = http_sessions.clone();
    let address = (state.server.host.as_str(), state.server.port);
    let mount = state.server.path.clone();
    let tls = certificates.as_ref().map(|c| c.server_config());
    let (server, addr) = crate::listener::bind(address, state.clone(), tls, move || {
        let console = match (&console, &console_feeds) {
            (Some(token), Some(feeds)) => Some((token.clone(), feeds.clone())),
            _ => None,
        };
        let admin = admin.clone();
        let every_route = move |cfg: &mut web::ServiceConfig| {
            cfg.configure(routes);
            if let Some((token, catalog)) = &admin {
                admin::routes(cfg, catalog.clone(), token.clone());
            }
            if let Some((token, feeds)) = &console {
                cfg.app_data(token.clone())
                    .app_data(feeds.clone())
                    .configure(console::routes);
            }
        };
        let mut app = App::new().app_data(data.clone()).app_data(sessions.clone());
        // Under `[server] path` for a proxy that forwards its prefix, and at
        // the root too: the PHP SDK sends `triggerBatch` to the root even
        // when given a path, and a proxy that strips the prefix needs it.
        if !mount.is_empty() {
            app = app.service(web::scope(&mount).configure(every_route.clone()));
        }
        app.configure(every_route)
            .default_service(web::to(not_found))
    })?;

    let scheme = if certificates.is_some() {
        "https"
    } else {
        "http"
    };
    // Both before the listening line, which says Herald is up: a signal
    // that came before its handler would take its default action (exit).
    let signals = Signals::install()?;
    let pid_file = PidFile::write(config.server.pid_file.as_deref())?;
    info!("Herald listening on {addr} ({scheme}; WebSocket /app/{{key}}, HTTP API /apps/{{id}})");
    log_app_settings(&config, Some(addr.port()), scheme);
    warn_about_the_file_limit(config.server.max_connections);
    let reloader = Reloader::new(
        reload,
        config.clone(),
        state.clone(),
        catalog,
        certificates.clone(),
    );
    let Signals { terminate, hangup } = signals;
    tokio::spawn(reload_on_hangup(reloader, hangup));

    let metrics = serve_metrics(&config, &state);
    let handle = server.handle();
    tokio::spawn(sweep(state.clone(), http_sessions.clone()));
    state.admission.watch_memory();
    tokio::spawn(async move {
        wait_for_signal(terminate).await;
        state.admission.shutting_down();
        info!("shutting down: asking clients to reconnect");
        for app in state.hub.apps() {
            app.close_all(Close::SHUTTING_DOWN);
        }
        // Give sessions a moment to send their close frames and leave.
        let _ = tokio::time::timeout(SESSIONS_GRACE, state.hub.all_released()).await;
        state.adapter.shutdown().await;
        let drain = Duration::from_secs(state.server.shutdown_timeout);
        webhooks.drain(drain).await;
        if let Some(metrics) = metrics {
            metrics.stop(false).await;
        }
        handle.stop(true).await;
    });
    let served = server.await;
    drop(pid_file);
    Ok(served?)
}

/// With `[app_store]`: the store, its apps, and whether they came from
/// it (false: from the fallback file, the store not answering). Without a
/// fallback a store that cannot be read stops Herald here.
async fn open_store(config: &Config) -> Result<Option<(AppStore, Vec<AppConfig>, bool)>, Failure> {
    if config.app_store.url.is_none() {
        return Ok(None);
    }
    let db = AppStore::open(&config.app_store).map_err(|e| Failure::Config(e.to_string()))?;
    crate::metrics::METRICS
        .app_store_queries
        .with_label_values(&["all"])
        .inc();
    match db.all().await {
        Ok(apps) => {
            let apps: Vec<AppConfig> = apps.into_iter().filter_map(catalog::servable).collect();
            info!(
                "{} apps from the app store (table {:?}, {:?})",
                apps.len(),
                config.app_store.table,
                db.kind()
            );
            Ok(Some((db, apps, true)))
        }
        Err(e) => {
            // The database's own reason, when it cannot be reached at all.
            let e = db.reachable().await.err().unwrap_or(e);
            let Some(path) = &config.app_store.fallback_file else {
                return Err(Failure::Config(format!(
                    "{e} (is the database up, and the table made with `herald apps migrate`?)"
                )));
            };
            let apps = catalog::fallback_apps(path).map_err(Failure::Config)?;
            warn!(
                "{e}: serving the {} apps of {path} until the app store answers",
                apps.len()
            );
            Ok(Some((db, apps, false)))
        }
    }
}

/// `[server] pid_file`: written once Herald listens, removed when it exits.
struct PidFile(Option<std::path::PathBuf>);

impl PidFile {
    fn write(path: Option<&str>) -> std::io::Result<PidFile> {
        let Some(path) = path else {
            return Ok(PidFile(None));
        };
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot write pid_file {path:?}: {e}"))
        })?;
        Ok(PidFile(Some(path.into())))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Starts the Prometheus listener (`GET /metrics`), unless its port is 0.
/// A port that is taken (another server's metrics, often on 9601 too)
/// costs the metrics, not the service: it is logged and Herald runs on.
fn serve_metrics(config: &Config, state: &State) -> Option<actix_web::dev::ServerHandle> {
    if config.metrics.port == 0 {
        return None;
    }
    let data = web::Data::new(state.clone());
    let host = config.metrics.bind_host(&config.server.host);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(metrics))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .bind((host, config.metrics.port));
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            warn!(
                "no metrics: cannot listen on {host}:{} ({e}); set [metrics] port or HERALD_METRICS_PORT (0 turns metrics off)",
                config.metrics.port
            );
            return None;
        }
    };
    for addr in server.addrs() {
        info!("metrics on http://{addr}/metrics");
    }
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Some(handle)
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render_metrics(&state.hub, &state.adapter))
}

/// Reads the hub's and the adapter's gauges into the registry's text.
fn render_metrics(hub: &Hub, adapter: &Adapter) -> String {
    let apps = hub.apps();
    let gauges = apps.iter().map(|app| {
        let (channels, presence_members) = app.occupancy();
        AppGauges {
            id: app.id(),
            channels,
            presence_members,
        }
    });
    let cluster = match adapter {
        Adapter::Redis(redis) => Some(ClusterGauges {
            redis_up: adapter.ready(),
            relay_topics: redis.topics(),
            redis_master: redis.master(),
        }),
        Adapter::Local(_) => None,
    };
    METRICS.render(gauges, cluster)
}

/// Every route of the server.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/up", web::get().to(up))
        .route("/ready", web::get().to(ready))
        .route("/app/{key}", web::get().to(not_a_handshake))
        .configure(api::routes)
        .configure(fallback::routes)
        .configure(polling::routes);
}

/// Health check: 200 always (the node serves its own clients even while
/// cut off from the cluster); `status` says whether it is fully connected.
async fn up(state: web::Data<State>) -> HttpResponse {
    let status = if state.adapter.ready() {
        "ok"
    } else {
        "degraded"
    };
    HttpResponse::Ok().json(serde_json::json!({ "status": status }))
}

/// Readiness, for load balancers and Kubernetes: 200 while the node takes
/// new clients; 503 while it is over its memory share, cut off from the
/// cluster, or shutting down (its clients are still served: `/up` is
/// liveness).
async fn ready(state: web::Data<State>) -> HttpResponse {
    let status = if state.admission.is_shutting_down() {
        "shutting down"
    } else if state.admission.over_memory() {
        "over capacity"
    } else if !state.adapter.ready() || !state.hub.source_healthy() {
        "degraded"
    } else {
        return HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }));
    };
    HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": status }))
}

/// `GET /app/{key}` without the upgrade headers (handshakes never get here:
/// see `listener`).
async fn not_a_handshake() -> HttpResponse {
    HttpResponse::BadRequest()
        .json(serde_json::json!({ "error": "Expected a WebSocket handshake" }))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({ "error": "Not found" }))
}

async fn sweep(state: State, http_sessions: web::Data<HttpSessions>) {
    let mut tick = tokio::time::interval(CACHE_SWEEP_INTERVAL);
    // (An interval's first tick is at once: nothing is due at start.)
    tick.tick().await;
    loop {
        tick.tick().await;
        for app in state.hub.apps() {
            app.sweep();
        }
        state.long_polls.sweep();
        state.admission.sweep();
        http_sessions.sweep();
    }
}

/// The signals Herald acts on, registered once at start.
struct Signals {
    /// SIGTERM (Ctrl-C is asked for when waiting).
    terminate: Option<Signal>,
    /// SIGHUP.
    hangup: Option<Signal>,
}

#[cfg(unix)]
type Signal = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Signal = ();

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                terminate: Some(signal(SignalKind::terminate())?),
                hangup: Some(signal(SignalKind::hangup())?),
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {
                terminate: None,
                hangup: None,
            })
        }
    }
}

async fn wait_for_signal(terminate: Option<Signal>) {
    #[cfg(unix)]
    if let Some(mut term) = terminate {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return;
    }
    #[cfg(not(unix))]
    let _ = terminate;
    let _ = tokio::signal::ctrl_c().await;
}

/// SIGHUP: reload (see `reload`).
async fn reload_on_hangup(mut reloader: Reloader, hangup: Option<Signal>) {
    #[cfg(unix)]
    if let Some(mut hangups) = hangup {
        while hangups.recv().await.is_some() {
            info!("SIGHUP: reloading");
            reloader.reload();
        }
    }
    #[cfg(not(unix))]
    let _ = (reloader, hangup);
}

/// Warns when the process's open-file limit caps connections below what
/// `max_connections` allows (or, without one, below a few thousand): each
/// connection is a descriptor. At the cap new connections are refused
/// with 4100 (see `http::admission`), before the kernel would refuse them;
/// connected clients keep working.
fn warn_about_the_file_limit(max_connections: usize) {
    let Some(limit) = files::open_file_limit() else {
        return;
    };
    let room = files::connection_room(limit);
    let wanted = if max_connections > 0 {
        max_connections as u64
    } else {
        4096
    };
    if room < wanted {
        warn!(
            "the open-file limit is {limit}: at most {room} connections{}; raise it (LimitNOFILE in systemd, ulimit -n, docs/operations.md)",
            if max_connections > 0 {
                format!(" of max_connections = {max_connections}")
            } else {
                String::new()
            }
        );
    }
}

/// Logs what a Laravel `.env` needs, never a configured secret.
fn log_app_settings(config: &Config, port: Option<u16>, scheme: &str) {
    let port = port.unwrap_or(config.server.port);
    if let Some(source) = config.default_app {
        info!("default app from {}", source.variables());
    }
    let reverb = config.default_app == Some(AppSource::Reverb);
    for app in &config.apps {
        let block = if reverb {
            laravel::reverb_env_block(app, port, scheme)
        } else {
            laravel::env_block(app, port, scheme)
        };
        info!(
            "app {:?}: Laravel .env lines (docs/laravel.md; check with `herald doctor`):\n{}",
            app.id,
            block.trim_end()
        );
    }
    if !config.ignored_app_variables.is_empty() {
        warn!(
            "{} set but ignored: the config file names the apps ([[apps]]); set their values there, \
             or with HERALD_APPS__<N>__ID/KEY/SECRET",
            config.ignored_app_variables.join(", ")
        );
    }
    if config.uses_default_secret() {
        warn!(
            "the built-in default app secret {DEFAULT_APP_SECRET:?} is in use: anyone can sign requests. {} before exposing Herald",
            if config.default_app.is_some() {
                "Set HERALD_APP_SECRET (or REVERB_APP_SECRET / PUSHER_APP_SECRET, e.g. with --env-file)"
            } else {
                "Set the app's secret in the config file (or HERALD_APPS__<N>__SECRET)"
            }
        );
    }
}

/// A Redis URL without its password, for logs.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
