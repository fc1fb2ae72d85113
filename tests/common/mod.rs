//! Shared harness for the integration tests: runs the real `herald` binary
//! on a free port and talks to it over real sockets (awc for both the
//! WebSocket protocol and the signed HTTP API).
//!
//! Every wait has a timeout; nothing sleeps to synchronise.

#![allow(dead_code)]

/// Runs each named `async fn(&impl Backend)` of the calling test file as
/// two tests, `NAME::on_redis` (one `redis-server`) and
/// `NAME::on_redis_cluster` (a Redis Cluster of three masters).
#[allow(unused_macros)]
macro_rules! on_redis_and_redis_cluster {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_rt::test]
            async fn on_redis() {
                super::$name(&crate::common::redis_server::RedisServer::start()).await
            }

            #[actix_rt::test]
            async fn on_redis_cluster() {
                super::$name(&crate::common::redis_cluster::RedisCluster::start()).await
            }
        }
    )*};
}

pub mod certificate;
pub mod database;
pub mod failover;
pub mod lean;
pub mod raw_socket;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;
pub mod slow_proxy;
pub mod webhook_receiver;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_codec::Framed;
use awc::ws::{self, Codec, Frame};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use herald::config::AppConfig;
use serde_json::{json, Value};

pub const KEY: &str = "app-key";
pub const SECRET: &str = "app-secret";
pub const APP_ID: &str = "app-id";

/// How long any single expected frame or response may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Anything the HTTP helpers can talk to.
pub trait Endpoint {
    fn port(&self) -> u16;

    fn ws_url(&self, key: &str, query: &str) -> String {
        format!("ws://127.0.0.1:{}/app/{key}?{query}", self.port())
    }
}

/// A server this process does not own.
pub struct AttachedServer {
    pub port: u16,
}

impl Endpoint for AttachedServer {
    fn port(&self) -> u16 {
        self.port
    }
}

impl Endpoint for Server {
    fn port(&self) -> u16 {
        self.port
    }
}

/// A running `herald` process, killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    /// Every line the server wrote to stderr so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _config: Option<tempfile::TempPath>,
}

pub mod tempfile {
    //! A config file that is deleted when the test ends.
    use std::path::{Path, PathBuf};

    pub struct TempPath(PathBuf);

    impl TempPath {
        pub fn write(contents: &str) -> TempPath {
            let path = std::env::temp_dir().join(format!(
                "herald-test-{}-{}.toml",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::write(&path, contents).expect("write temp config");
            TempPath(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }
}

impl Server {
    /// A handle on a server started elsewhere (not owned: never killed).
    pub fn attach(port: u16) -> AttachedServer {
        AttachedServer { port }
    }

    /// Starts Herald with the default app (app-id / app-key / app-secret).
    pub fn start() -> Server {
        Server::launch(None, &[])
    }

    /// Starts Herald with a TOML config file.
    pub fn with_config(toml: &str) -> Server {
        Server::launch(Some(toml), &[])
    }

    /// Starts Herald with a config and extra environment variables.
    pub fn launch(toml: Option<&str>, env: &[(&str, &str)]) -> Server {
        let config = toml.map(tempfile::TempPath::write);
        // A benchmark may compare another build (HERALD_BENCH_BIN).
        let binary = std::env::var("HERALD_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_herald").to_owned());
        let mut cmd = Command::new(binary);
        cmd.args(["--host", "127.0.0.1", "--port", "0"])
            .env_remove("PUSHER_APP_ID")
            .env_remove("PUSHER_APP_KEY")
            .env_remove("PUSHER_APP_SECRET")
            .env("HERALD_LOG", "info")
            // Many servers run at once: no metrics listener unless asked.
            .env("HERALD_METRICS_PORT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(path) = &config {
            cmd.arg("--config").arg(path.path());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn herald");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut kept) = kept.lock() {
                    kept.push(line.clone());
                }
                if let Some(port) = listening_port(&line) {
                    let _ = tx.send(port);
                }
                if std::env::var_os("HERALD_TEST_LOG").is_some() {
                    let _ = writeln!(std::io::stderr(), "[herald] {line}");
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("herald did not report its port");
        Server {
            child,
            port,
            log,
            _config: config,
        }
    }

    /// The config file the server was started with.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self._config.as_ref().map(|c| c.path())
    }

    /// Waits until the server logged a line containing `text` (at least
    /// `count` such lines in all).
    pub async fn logged(&self, text: &str, count: usize) {
        eventually(&format!("the server logs {text:?}"), || async {
            self.log_lines().iter().filter(|l| l.contains(text)).count() >= count
        })
        .await;
    }

    /// The lines the server logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// The process id (for resource measurements).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until `/up` reports the node fully connected to its cluster.
    pub async fn wait_ready(&self) {
        eventually("the node joins the cluster", || async {
            raw_request(self, "GET", "/up", "").await.body["status"] == "ok"
        })
        .await;
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("listening on ").nth(1)?;
    let addr = rest.split_whitespace().next()?;
    addr.rsplit(':').next()?.parse().ok()
}

/// Prints p50 / p99 / max of latencies in microseconds, as milliseconds.
pub fn percentiles(label: &str, mut micros: Vec<u64>) {
    micros.sort_unstable();
    let pct = |p: f64| {
        let i = ((micros.len() as f64 - 1.0) * p).round() as usize;
        micros.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    println!(
        "{label:<40} n={:>6}  ms p50 {:>6.2}  p99 {:>6.2}  max {:>6.2}",
        micros.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}

/// A benchmark setting from the environment, or its default.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends one 9 KiB event to each of the channels `idle-0`..`idle-99` and
/// waits until every client has read it (the idle benchmarks' burst).
pub async fn burst_9kib(server: &impl Endpoint, clients: &mut [Client]) {
    let payload = "x".repeat(9 * 1024);
    for channel in 0..100 {
        let r = trigger(
            server,
            json!({"name": "big", "channel": format!("idle-{channel}"), "data": payload}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    for client in clients {
        client.expect("big").await;
    }
}

/// A process's resident memory, KiB (from `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        // A limit compared with 0 would hold whatever the server did.
        .unwrap_or_else(|| panic!("no VmRSS for process {pid}"))
}

/// Raises this process's soft open-file limit to its hard one (children
/// inherit it); the new soft limit.
pub fn raise_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls with valid pointers to rlimit structs.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur = limit.rlim_max;
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    limit.rlim_cur
}

/// A process's user + system CPU time so far, from `/proc/<pid>/stat`
/// (utime and stime, in clock ticks of 10 ms).
pub fn cpu_time(pid: u32) -> Duration {
    let (user, system) = cpu_split(pid);
    user + system
}

/// A process's user and system CPU time so far, apart: the kernel's send
/// path (system) is common to every server, what Herald does itself is
/// user time.
pub fn cpu_split(pid: u32) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("no /proc/{pid}/stat: {e}"));
    // The fields after the parenthesised command name.
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    assert!(fields.len() > 12, "unexpected /proc/{pid}/stat: {stat}");
    (
        Duration::from_millis(fields[11] * 10),
        Duration::from_millis(fields[12] * 10),
    )
}

/// Microseconds since the Unix epoch (benchmarks stamp events with it).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

// ----- WebSocket client -----------------------------------------------

/// A raw protocol client.
pub struct Client {
    framed: Framed<BoxedSocket, Codec>,
    pub socket_id: String,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
}

impl Client {
    /// Connects and reads `pusher:connection_established`.
    pub async fn connect(server: &impl Endpoint) -> Client {
        let url = server.ws_url(KEY, "protocol=7&client=js&version=8.4.0&flash=false");
        Client::connect_with(&awc::Client::new(), &url).await
    }

    /// Opens a socket without reading anything.
    pub async fn open(url: &str) -> Client {
        Client::open_with(&awc::Client::new(), url).await
    }

    /// Connects through `http` (e.g. one that trusts a test certificate)
    /// and reads `pusher:connection_established`.
    pub async fn connect_with(http: &awc::Client, url: &str) -> Client {
        let mut client = Client::open_with(http, url).await;
        let hello = client.recv().await;
        assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
        client.socket_id = hello["data"]["socket_id"]
            .as_str()
            .expect("socket_id")
            .to_owned();
        client
    }

    /// Opens a socket with extra request headers (`Origin`,
    /// `X-Forwarded-For`), reading nothing.
    pub async fn open_with_headers(url: &str, headers: &[(&str, &str)]) -> Client {
        let mut request = awc::Client::new().ws(url).max_frame_size(1 << 20);
        for (name, value) in headers {
            request = request.set_header(*name, *value);
        }
        let (_, framed) = request.connect().await.expect("websocket connect");
        Client {
            framed,
            socket_id: String::new(),
        }
    }

    pub async fn open_with(http: &awc::Client, url: &str) -> Client {
        let (_, framed) = http
            .ws(url)
            .max_frame_size(1 << 20)
            .connect()
            .await
            .expect("websocket connect");
        Client {
            framed,
            socket_id: String::new(),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(ws::Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    /// The next protocol frame, with `data` decoded when it is a JSON string
    /// holding JSON (the raw string is kept as `raw_data`).
    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Ok(v) => v,
            Err(closed) => panic!("connection closed with {closed:?} while a frame was expected"),
        }
    }

    /// The next frame, or how the connection closed.
    pub async fn next(&mut self) -> Result<Value, Closed> {
        loop {
            let frame = actix_rt::time::timeout(TIMEOUT, self.framed.next())
                .await
                .expect("timed out waiting for a frame");
            match frame {
                Some(Ok(Frame::Text(bytes))) => {
                    let mut v: Value = serde_json::from_slice(&bytes).expect("frame is JSON");
                    if let Some(s) = v["data"].as_str().map(str::to_owned) {
                        v["raw_data"] = Value::String(s.clone());
                        if let Ok(decoded) = serde_json::from_str::<Value>(&s) {
                            v["data"] = decoded;
                        }
                    }
                    return Ok(v);
                }
                Some(Ok(Frame::Close(reason))) => {
                    let code = reason.map(|r| u16::from(r.code)).unwrap_or(1005);
                    return Err(Closed { code });
                }
                Some(Ok(Frame::Ping(p))) => {
                    let _ = self.framed.send(ws::Message::Pong(p)).await;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("websocket error: {e}"),
                None => return Err(Closed { code: 1006 }),
            }
        }
    }

    /// The next frame must be `event`; returns it.
    pub async fn expect(&mut self, event: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["event"], event, "unexpected frame {frame}");
        frame
    }

    /// Reads frames until the connection closes; returns the close code and
    /// the frames seen before it.
    pub async fn expect_close(&mut self) -> (u16, Vec<Value>) {
        let mut seen = Vec::new();
        loop {
            match self.next().await {
                Ok(v) => seen.push(v),
                Err(closed) => return (closed.code, seen),
            }
        }
    }

    /// Proves nothing else is queued for this client: a ping sent now must
    /// be answered by the very next frame.
    pub async fn expect_nothing_pending(&mut self) {
        self.send(json!({"event": "pusher:ping", "data": {}})).await;
        let frame = self.recv().await;
        assert_eq!(
            frame["event"], "pusher:pong",
            "expected no pending frames, got {frame}"
        );
    }

    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.send(json!({"event": "pusher:subscribe", "data": {"channel": channel}}))
            .await;
        self.recv().await
    }

    /// Subscribes to a private/encrypted channel with a valid signature.
    pub async fn subscribe_private(&mut self, channel: &str) -> Value {
        let auth = herald::auth::make_auth(
            KEY,
            SECRET,
            &herald::auth::channel_string_to_sign(&self.socket_id, channel, None),
        );
        self.send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}))
            .await;
        self.recv().await
    }

    /// Joins a presence channel as `user_id` with `user_info`.
    pub async fn join(&mut self, channel: &str, user_id: &str, user_info: Value) -> Value {
        let channel_data = json!({"user_id": user_id, "user_info": user_info}).to_string();
        let auth = herald::auth::make_auth(
            KEY,
            SECRET,
            &herald::auth::channel_string_to_sign(&self.socket_id, channel, Some(&channel_data)),
        );
        self.send(json!({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": auth, "channel_data": channel_data}}))
            .await;
        self.recv().await
    }

    /// Signs in with `user_data` (a JSON value serialised compactly).
    pub async fn signin(&mut self, user_data: Value) -> Value {
        let user_data = user_data.to_string();
        let auth = herald::auth::make_auth(
            KEY,
            SECRET,
            &herald::auth::user_string_to_sign(&self.socket_id, &user_data),
        );
        self.send(
            json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        )
        .await;
        self.recv().await
    }
}

// ----- HTTP API client --------------------------------------------------

/// An HTTP response: status and JSON body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Value,
}

fn default_app() -> AppConfig {
    AppConfig::new(APP_ID, KEY, SECRET)
}

/// A signed API request, as the SDKs sign it.
pub async fn api(
    server: &impl Endpoint,
    method: &str,
    path: &str,
    query: &str,
    body: Option<&str>,
) -> Response {
    api_as(server, &default_app(), method, path, query, body).await
}

pub async fn api_as(
    server: &impl Endpoint,
    app: &AppConfig,
    method: &str,
    path: &str,
    extra_query: &str,
    body: Option<&str>,
) -> Response {
    let body = body.unwrap_or("");
    let mut params: Vec<(String, String)> = vec![
        ("auth_key".into(), app.key.clone()),
        ("auth_timestamp".into(), unix_now().to_string()),
        ("auth_version".into(), "1.0".into()),
    ];
    if !body.is_empty() {
        params.push(("body_md5".into(), herald::auth::md5_hex(body.as_bytes())));
    }
    // Extra parameters are sent as written and signed decoded, as the SDKs do.
    let mut signed = params.clone();
    let extra = herald::support::query::Query::parse(extra_query).expect("query");
    signed.extend(herald::api::signature::signed_params(&extra));
    let to_sign = herald::auth::http_string_to_sign(method, path, &signed);
    params.push((
        "auth_signature".into(),
        herald::auth::sign(&app.secret, to_sign.as_bytes()),
    ));
    let mut query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !extra_query.is_empty() {
        query.push(extra_query.to_owned());
    }
    raw_request(server, method, &format!("{path}?{}", query.join("&")), body).await
}

/// An unsigned request with the given path and query.
pub async fn raw_request(
    server: &impl Endpoint,
    method: &str,
    path_and_query: &str,
    body: &str,
) -> Response {
    let url = format!("http://127.0.0.1:{}{}", server.port(), path_and_query);
    let client = awc::Client::builder().timeout(TIMEOUT).finish();
    let request = match method {
        "GET" => client.get(url),
        "POST" => client
            .post(url)
            .insert_header(("Content-Type", "application/json")),
        other => panic!("unsupported method {other}"),
    };
    let mut response = request
        .send_body(body.to_owned())
        .await
        .expect("http request");
    let bytes = response.body().limit(1 << 22).await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "response is not JSON: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Response {
        status: response.status().as_u16(),
        body,
    }
}

/// A signed `GET` of the API, with extra query parameters.
pub async fn get(server: &impl Endpoint, path: &str, query: &str) -> Response {
    api(server, "GET", path, query, None).await
}

/// A signed `POST` of the API with a body.
pub async fn post(server: &impl Endpoint, path: &str, body: &str) -> Response {
    api(server, "POST", path, "", Some(body)).await
}

/// `POST /apps/app-id/events` with a JSON body.
/// Publishes `name` with `data` to channels `paced-0` .. `paced-{n-1}`,
/// one event each, in one batch request (the paced benchmarks).
pub async fn publish_paced_batch(server: &impl Endpoint, channels: usize, name: &str, data: &str) {
    let batch: Vec<_> = (0..channels)
        .map(|c| json!({"name": name, "channel": format!("paced-{c}"), "data": data}))
        .collect();
    let r = api(
        server,
        "POST",
        "/apps/app-id/batch_events",
        "",
        Some(&json!({ "batch": batch }).to_string()),
    )
    .await;
    assert_eq!(r.status, 200);
}

pub async fn trigger(server: &impl Endpoint, body: Value) -> Response {
    api(
        server,
        "POST",
        &format!("/apps/{APP_ID}/events"),
        "",
        Some(&body.to_string()),
    )
    .await
}

/// Polls `check` until it holds, failing after [`TIMEOUT`]. For state that
/// other connections change asynchronously (e.g. after a disconnect).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Every sample of a Prometheus scrape of the metrics listener on `port`,
/// by its full name with labels, e.g.
/// `herald_connections{app="app-id",transport="ws"}`.
pub async fn scrape(port: u16) -> std::collections::HashMap<String, f64> {
    let mut response = awc::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status().as_u16(), 200);
    let body = response.body().limit(1 << 22).await.expect("body");
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}
