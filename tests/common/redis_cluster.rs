//! A private Redis Cluster of three masters (and, for failover tests, a
//! replica each) on free ports for cluster tests, made the way an operator
//! makes one (`redis-server --cluster-enabled yes`, then `redis-cli
//! --cluster create`), with the topology changes Herald must survive: a
//! master restarting, a master dying and its replica taking over, and a
//! slot moving to another master.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::Backend;

struct Instance {
    port: u16,
    child: Option<Child>,
}

pub struct RedisCluster {
    dir: PathBuf,
    /// Masters first; replicas (if any) after.
    masters: Vec<Instance>,
    /// Each instance's cluster node id.
    ids: Vec<String>,
    /// Whether it speaks TLS only (certificates `redis-*.pem` in `dir`).
    tls: bool,
}

/// A free port whose cluster bus port (10000 above it) is a port too, and
/// free: the kernel hands out ports up to 60999, and a node on 55536 or
/// above cannot start.
fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let bus_free =
            port <= 55535 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok();
        if bus_free {
            return port;
        }
    }
}

impl RedisCluster {
    /// Three masters owning all slots, answering `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        RedisCluster::create(0, false)
    }

    /// Three masters with a replica each.
    pub fn start_with_replicas() -> RedisCluster {
        RedisCluster::create(1, false)
    }

    /// Three masters speaking TLS only (clients and the cluster bus), with
    /// certificates for 127.0.0.1 signed by a CA made for the test.
    pub fn start_tls() -> RedisCluster {
        RedisCluster::create(0, true)
    }

    fn create(replicas: usize, tls: bool) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut cluster = RedisCluster {
            dir,
            masters: (0..3 * (1 + replicas))
                .map(|_| Instance {
                    port: free_port(),
                    child: None,
                })
                .collect(),
            ids: Vec::new(),
            tls,
        };
        if tls {
            super::certificate::make_certificate(&cluster.dir, "redis");
        }
        for i in 0..cluster.masters.len() {
            cluster.launch(i);
        }
        cluster.ids = (0..cluster.masters.len())
            .map(|i| cluster.cli_at(i, &["CLUSTER", "MYID"]))
            .collect();
        let nodes: Vec<String> = cluster
            .masters
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let mut create = cluster
            .redis_cli()
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-cli must be installed (apt-get install redis-tools)");
        // It waits for the nodes to meet for as long as that takes.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match create.try_wait().expect("redis-cli --cluster create") {
                Some(status) => {
                    assert!(status.success(), "redis-cli --cluster create failed");
                    break;
                }
                None if Instant::now() > deadline => {
                    let _ = create.kill();
                    panic!("the Redis Cluster's nodes did not meet");
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        cluster.wait_ok();
        // A replica that never synced cannot take over: wait until each
        // has its master's data.
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0..cluster.masters.len() {
            loop {
                let info = cluster.cli_at(i, &["INFO", "REPLICATION"]);
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    break;
                }
                assert!(Instant::now() < deadline, "a replica did not sync");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    fn launch(&mut self, i: usize) {
        let port = self.masters[i].port;
        let mut command = Command::new("redis-server");
        if self.tls {
            command
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                .arg("--tls-cert-file")
                .arg(self.dir.join("redis-cert.pem"))
                .arg("--tls-key-file")
                .arg(self.dir.join("redis-key.pem"))
                .arg("--tls-ca-cert-file")
                .arg(self.dir.join("redis-ca.pem"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.args(["--port", &port.to_string()]);
        }
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--cluster-node-timeout", "2000"])
            // A master away stops its own slots only.
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--appendonly", "yes"])
            .args(["--appendfilename", &format!("appendonly-{port}.aof")])
            .args(["--appenddirname", &format!("aof-{port}")])
            .args(["--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.masters[i].child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `redis-cli` against master `i`.
    pub fn cli_at(&self, i: usize, args: &[&str]) -> String {
        let out = self
            .redis_cli()
            .args(["-p", &self.masters[i].port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `redis-cli`, over TLS when the cluster speaks it.
    fn redis_cli(&self) -> Command {
        let mut command = Command::new("redis-cli");
        if self.tls {
            command
                .arg("--tls")
                .arg("--cacert")
                .arg(self.dir.join("redis-ca.pem"));
        }
        command
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.masters.len()).filter(|i| self.masters[*i].child.is_some())
    }

    /// Waits until every running instance says the cluster is ok and they
    /// agree on who owns every slot.
    fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.running().all(|i| {
                self.cli_at(i, &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            });
            let slots: Vec<String> = self
                .running()
                .map(|i| self.cli_at(i, &["CLUSTER", "SLOTS"]))
                .collect();
            if ok
                && slots
                    .windows(2)
                    .all(|w| sorted_lines(&w[0]) == sorted_lines(&w[1]))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not settle"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every running instance says the cluster is ok.
    fn healthy(&self) -> bool {
        self.running().all(|i| {
            self.cli_at(i, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
        })
    }

    /// The master that owns `key`'s slot (as the first running instance
    /// sees it).
    pub fn owner_of(&self, key: &str) -> usize {
        let asked = self.running().next().expect("a running instance");
        let slot = self.cli_at(asked, &["CLUSTER", "KEYSLOT", key]);
        let id = self.owner_id(asked, &slot);
        self.ids
            .iter()
            .position(|known| *known == id)
            .expect("a known node")
    }

    fn owner_id(&self, asked: usize, slot: &str) -> String {
        let slot: u16 = slot.parse().expect("slot number");
        for line in self.cli_at(asked, &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            for range in fields.iter().skip(8) {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(from), Ok(to)) = (from.parse::<u16>(), to.parse::<u16>()) {
                    if (from..=to).contains(&slot) {
                        return fields[0].to_owned();
                    }
                }
            }
        }
        panic!("nobody owns slot {slot}");
    }

    /// Moves the slot of `key` (with its keys) from its master to master
    /// `to`, as `redis-cli --cluster reshard` does it, slot by slot.
    pub fn move_slot_of(&self, key: &str, to: usize) {
        let from = self.owner_of(key);
        assert_ne!(from, to, "already there");
        let slot = self.cli_at(0, &["CLUSTER", "KEYSLOT", key]);
        let (from_id, to_id) = (&self.ids[from], &self.ids[to]);
        let to_port = self.masters[to].port.to_string();
        assert_eq!(
            self.cli_at(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", from_id]),
            "OK"
        );
        assert_eq!(
            self.cli_at(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", to_id]),
            "OK"
        );
        loop {
            let keys = self.cli_at(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            let migrated = self.cli_at(from, &args);
            assert!(
                migrated == "OK" || migrated == "NOKEY",
                "MIGRATE: {migrated}"
            );
        }
        for i in [to, from] {
            assert_eq!(
                self.cli_at(i, &["CLUSTER", "SETSLOT", &slot, "NODE", to_id]),
                "OK"
            );
        }
        for i in (0..self.masters.len()).filter(|i| *i != to && *i != from) {
            self.cli_at(i, &["CLUSTER", "SETSLOT", &slot, "NODE", to_id]);
        }
        self.wait_ok();
    }

    /// Kills the master of `key`'s slot (as a crash would) and waits until
    /// its replica has taken over.
    pub fn fail_master_of(&mut self, key: &str) {
        let master = self.owner_of(key);
        if let Some(mut child) = self.masters[master].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.owner_of(key) == master || !self.healthy() {
            assert!(Instant::now() < deadline, "no replica took over");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.wait_ok();
    }

    /// Stops master `i` cleanly (its data is in its append-only file) and
    /// starts it again on the same port, as an operator's restart does.
    pub fn restart_master(&mut self, i: usize) {
        self.stop_master(i);
        self.start_master(i);
    }

    /// Stops master `i` cleanly. Without a replica its slots are then
    /// served by nobody; the other masters go on serving theirs.
    pub fn stop_master(&mut self, i: usize) {
        self.cli_at(i, &["SHUTDOWN"]);
        if let Some(mut child) = self.masters[i].child.take() {
            let _ = child.wait();
        }
    }

    /// Starts a stopped master again (with its data).
    pub fn start_master(&mut self, i: usize) {
        self.launch(i);
        self.wait_ok();
    }
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    lines
}

impl Backend for RedisCluster {
    fn cluster_keys(&self) -> String {
        match self.tls {
            true => format!(
                "tls_ca = {:?}\n",
                self.dir.join("redis-ca.pem").to_string_lossy()
            ),
            false => String::new(),
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.masters
            .iter()
            .filter_map(|m| m.child.as_ref().map(Child::id))
            .collect()
    }

    fn shard_of(&self, key: &str) -> usize {
        self.owner_of(key)
    }

    fn url(&self) -> String {
        // The first three, as an operator names a few seeds.
        let nodes: Vec<String> = self
            .masters
            .iter()
            .take(3)
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}+cluster://{}", nodes.join(","))
    }

    fn cli(&self, args: &[&str]) -> String {
        let asked = self.running().next().expect("a running instance");
        let out = self
            .redis_cli()
            .args(["-c", "-p", &self.masters[asked].port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for master in &mut self.masters {
            if let Some(mut child) = master.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
