//! A private Redis master with one replica, watched by three
//! `redis-server --sentinel` on free ports (never the machine's shared
//! ones), made the way an operator makes it, with what Herald must survive:
//! the master crashing and the Sentinels promoting the replica, and the old
//! master coming back still believing it is the master.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::Backend;

/// The master's name, as the Sentinels know it.
pub const MASTER_NAME: &str = "herald-test";

struct Instance {
    port: u16,
    child: Option<Child>,
}

pub struct RedisSentinel {
    dir: PathBuf,
    /// The data servers: 0 starts as the master, 1 as its replica.
    servers: Vec<Instance>,
    sentinels: Vec<Instance>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits up to 30 s for `ready`.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl RedisSentinel {
    /// A master, its replica in sync, and three Sentinels that know both
    /// and each other (a quorum of two can fail over).
    pub fn start() -> RedisSentinel {
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-sentinel-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        let instance = || Instance {
            port: free_port(),
            child: None,
        };
        let mut setup = RedisSentinel {
            dir,
            servers: vec![instance(), instance()],
            sentinels: vec![instance(), instance(), instance()],
        };
        setup.launch_server(0, &[]);
        let master = setup.servers[0].port.to_string();
        setup.launch_server(1, &["--replicaof", "127.0.0.1", &master]);
        wait_for("the replica did not sync", || {
            setup
                .cli_server(1, &["INFO", "REPLICATION"])
                .contains("master_link_status:up")
        });
        for i in 0..setup.sentinels.len() {
            setup.launch_sentinel(i);
        }
        wait_for("the Sentinels did not meet", || {
            setup.sentinels.iter().all(|s| {
                let replicas = cli(s.port, &["SENTINEL", "REPLICAS", MASTER_NAME]);
                let others = cli(s.port, &["SENTINEL", "SENTINELS", MASTER_NAME]);
                replicas.contains(&setup.servers[1].port.to_string())
                    && others.matches("name").count() == 2
            })
        });
        setup
    }

    fn launch_server(&mut self, i: usize, args: &[&str]) {
        let port = self.servers[i].port;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.servers[i].child = Some(child);
        wait_listening(port);
    }

    fn launch_sentinel(&mut self, i: usize) {
        let port = self.sentinels[i].port;
        let config = self.dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 4000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = self.dir.display(),
                master = self.servers[0].port,
            ),
        )
        .expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.sentinels[i].child = Some(child);
        wait_listening(port);
    }

    /// Runs `redis-cli` against data server `i`.
    pub fn cli_server(&self, i: usize, args: &[&str]) -> String {
        cli(self.servers[i].port, args)
    }

    /// The port of data server `i`.
    pub fn server_port(&self, i: usize) -> u16 {
        self.servers[i].port
    }

    /// The data server the first running Sentinel names as master.
    pub fn master(&self) -> usize {
        let sentinel = self
            .sentinels
            .iter()
            .find(|s| s.child.is_some())
            .expect("a Sentinel");
        let answer = cli(
            sentinel.port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        let port = answer.lines().nth(1).unwrap_or_default().to_owned();
        self.servers
            .iter()
            .position(|s| s.port.to_string() == port)
            .expect("a known master")
    }

    /// Kills the master (as a crash would) and waits until every Sentinel
    /// names the replica and the replica says it is master. Returns the
    /// old master's index.
    pub fn fail_master(&mut self) -> usize {
        let old = self.master();
        if let Some(mut child) = self.servers[old].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let new_port = self.servers[1 - old].port.to_string();
        wait_for("the Sentinels did not promote the replica", || {
            self.sentinels.iter().all(|s| {
                cli(
                    s.port,
                    &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
                )
                .lines()
                .nth(1)
                    == Some(new_port.as_str())
            }) && self.cli_server(1 - old, &["ROLE"]).starts_with("master")
        });
        old
    }

    /// Starts server `i` again, empty, as a master that the Sentinels
    /// cannot turn into a replica (`REPLICAOF` is disabled): a demoted
    /// master that came back and still believes it is the master.
    pub fn start_stale_master(&mut self, i: usize) {
        self.launch_server(
            i,
            &[
                "--rename-command",
                "REPLICAOF",
                "",
                "--rename-command",
                "SLAVEOF",
                "",
            ],
        );
    }
}

impl Backend for RedisSentinel {
    fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", sentinels.join(","))
    }

    /// Against the current master.
    fn cli(&self, args: &[&str]) -> String {
        self.cli_server(self.master(), args)
    }

    fn pids(&self) -> Vec<u32> {
        self.servers
            .iter()
            .filter_map(|s| s.child.as_ref().map(Child::id))
            .collect()
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        for instance in self.servers.iter_mut().chain(self.sentinels.iter_mut()) {
            if let Some(mut child) = instance.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
