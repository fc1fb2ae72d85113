//! A private `redis-server` on a free port for cluster tests (never the
//! machine's shared one), restartable on the same port.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis that Herald nodes can share: one server, or a Redis Cluster
/// (`redis_cluster`).
#[allow(dead_code)]
pub trait Backend {
    /// What `cluster.url` says to reach it.
    fn url(&self) -> String;
    /// Runs `redis-cli` against it (following redirections on a cluster);
    /// its output, trimmed.
    fn cli(&self, args: &[&str]) -> String;
    /// The process ids of its `redis-server`s.
    fn pids(&self) -> Vec<u32>;
    /// Which shard holds `key` (one Redis has one).
    fn shard_of(&self, _key: &str) -> usize {
        0
    }
    /// More `[cluster]` keys a node needs to reach it.
    fn cluster_keys(&self) -> String {
        String::new()
    }
}

/// A Herald node of a cluster on `redis`, with short liveness timings
/// (a node is dead 3 s after its last heartbeat), ready.
pub async fn cluster_node(redis: &impl Backend) -> super::Server {
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\nheartbeat_interval = 1\n{}",
        redis.url(),
        redis.cluster_keys()
    );
    let server = super::Server::launch(Some(&config), &[]);
    server.wait_ready().await;
    server
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    /// Where its TLS certificates are (`redis-ca.pem`, ...), when it
    /// speaks TLS only.
    tls: Option<PathBuf>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(None)
    }

    /// A Redis that speaks TLS only, with a certificate for 127.0.0.1
    /// signed by a CA made for the test (`ca_path`).
    pub fn start_tls() -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-tls-{}-{}",
            std::process::id(),
            super::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("certificate dir");
        super::certificate::make_certificate(&dir, "redis");
        RedisServer::start_with(Some(dir))
    }

    fn start_with(tls: Option<PathBuf>) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = RedisServer {
            child: None,
            port,
            tls,
        };
        server.launch();
        server
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA that signed a TLS Redis's certificate.
    pub fn ca_path(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|dir| dir.join("redis-ca.pem"))
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &port]),
            Some(dir) => command
                .args(["--port", "0", "--tls-port", &port])
                .arg("--tls-cert-file")
                .arg(dir.join("redis-cert.pem"))
                .arg("--tls-key-file")
                .arg(dir.join("redis-key.pem"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("redis-ca.pem"))
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills Redis (losing all its data) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Starts a stopped Redis again (empty) on the same port.
    pub fn start_again(&mut self) {
        self.launch();
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Backend for RedisServer {
    fn cluster_keys(&self) -> String {
        match self.ca_path() {
            Some(ca) => format!("tls_ca = {:?}\n", ca.to_string_lossy()),
            None => String::new(),
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.child.iter().map(Child::id).collect()
    }

    fn url(&self) -> String {
        RedisServer::url(self)
    }

    fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-p", &self.port.to_string()]);
        if let Some(ca) = self.ca_path() {
            command.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = command.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.tls {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
