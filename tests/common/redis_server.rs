//! A private `redis-server` on a free port for cluster tests (never the
//! machine's shared one), restartable on the same port.

use std::net::TcpListener;
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
}

/// A Herald node of a cluster on `redis`, with short liveness timings
/// (a node is dead 3 s after its last heartbeat), ready.
pub async fn cluster_node(redis: &impl Backend) -> super::Server {
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\nheartbeat_interval = 1\n",
        redis.url()
    );
    let server = super::Server::launch(Some(&config), &[]);
    server.wait_ready().await;
    server
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = RedisServer { child: None, port };
        server.launch();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
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
    fn pids(&self) -> Vec<u32> {
        self.child.iter().map(Child::id).collect()
    }

    fn url(&self) -> String {
        RedisServer::url(self)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
