//! Who may open a connection on this node, and how many: the node's cap,
//! the room the open-file limit leaves, the caps and rate per client
//! address, and memory pressure. WebSockets
//! and HTTP-fallback sessions are admitted here alike, once each, before
//! any per-app check; what an admitted connection holds is given back when
//! its permit is dropped. Connected clients are never touched: a refusal
//! only costs the newcomer (close 4100, which pusher-js retries after a
//! back-off, so a load balancer moves it to another node).
//!
//! Readiness (`GET /ready`) is decided here too: not while the process is
//! over its memory share, and not while shutting down.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::per_address::{AddressPermit, Limit, PerAddress};
use crate::config::ServerConfig;
use crate::hub::{AppEvent, Hub};
use crate::metrics::{self, Transport};
use crate::protocol::Close;
use crate::support::files;

/// Why a connection was refused; the label of `herald_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds `max_connections`.
    NodeFull,
    /// The address holds `max_connections_per_address`.
    AddressFull,
    /// The address opened new connections faster than its rate.
    AddressRate,
    /// The process is over `accept_traffic_memory_percent`.
    Memory,
    /// The open-file limit leaves no room for another connection.
    FileLimit,
}

impl Refusal {
    /// Shows the refusal in the console of app `key`, when it is an app
    /// (the node refused before the app was asked); returns the close.
    pub fn report(self, hub: &Hub, key: &str, transport: Transport) -> Close {
        if let Some(app) = hub.by_key(key) {
            app.emit(AppEvent::ConnectionRefused {
                transport,
                reason: self.reason(),
                code: Close::OVER_CAPACITY.code,
            });
        }
        Close::OVER_CAPACITY
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NodeFull => "max_connections",
            Refusal::AddressFull => "max_connections_per_address",
            Refusal::AddressRate => "new_connections_per_address",
            Refusal::Memory => "memory",
            Refusal::FileLimit => "file_limit",
        }
    }
}

/// The node's admission state, shared by the transports.
pub struct Admission {
    max_connections: usize,
    /// Connections the open-file limit leaves room for (0: no limit
    /// known).
    file_room: usize,
    connections: Arc<AtomicUsize>,
    per_address: Arc<PerAddress>,
    /// What loopback addresses take instead: nothing is limited for them.
    loopback: Arc<PerAddress>,
    over_memory: AtomicBool,
    /// `accept_traffic_memory_percent` as `f64` bits (reloadable).
    memory_percent: AtomicU64,
    shutting_down: AtomicBool,
}

/// One admitted connection's place; given back when dropped.
pub struct Admitted {
    connections: Arc<AtomicUsize>,
    _address: AddressPermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(server: &ServerConfig) -> Arc<Admission> {
        Arc::new(Admission {
            max_connections: server.max_connections,
            file_room: files::open_file_limit()
                .map_or(0, |limit| files::connection_room(limit).max(1) as usize),
            connections: Arc::default(),
            per_address: PerAddress::new(
                server.max_connections_per_address,
                server.new_connections_per_address_per_second,
            ),
            loopback: PerAddress::new(0, 0),
            over_memory: AtomicBool::new(false),
            memory_percent: AtomicU64::new(server.accept_traffic_memory_percent.to_bits()),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// A reloaded `accept_traffic_memory_percent` (0: off).
    pub fn set_memory_percent(&self, percent: f64) {
        self.memory_percent
            .store(percent.to_bits(), Ordering::Release);
    }

    /// Admits one connection from `address`, or says why not (counted).
    ///
    /// A loopback address is not limited per address: it is this machine
    /// (a proxy that does not forward the client's address, which would put
    /// every client under one cap, or local tools and load tests), never an
    /// internet client itself. Behind a proxy, `trust_forwarded_for` gives
    /// each client its own address again.
    pub fn admit(&self, address: IpAddr) -> Result<Admitted, Refusal> {
        let refused = |refusal: Refusal| {
            metrics::refused(refusal.reason());
            Err(refusal)
        };
        if self.over_memory.load(Ordering::Acquire) {
            return refused(Refusal::Memory);
        }
        let held = self.connections.fetch_add(1, Ordering::AcqRel);
        let place = Admitted {
            connections: self.connections.clone(),
            _address: match self.limits_for(address).try_acquire(address) {
                Ok(permit) => permit,
                Err(limit) => {
                    self.connections.fetch_sub(1, Ordering::AcqRel);
                    return refused(match limit {
                        Limit::Held => Refusal::AddressFull,
                        Limit::Rate => Refusal::AddressRate,
                    });
                }
            },
        };
        if self.max_connections > 0 && held >= self.max_connections {
            drop(place);
            return refused(Refusal::NodeFull);
        }
        if self.file_room > 0 && held >= self.file_room {
            drop(place);
            return refused(Refusal::FileLimit);
        }
        Ok(place)
    }

    fn limits_for(&self, address: IpAddr) -> &Arc<PerAddress> {
        if address.to_canonical().is_loopback() {
            &self.loopback
        } else {
            &self.per_address
        }
    }

    /// Connections admitted and still open.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Whether the process is over its memory share now.
    pub fn over_memory(&self) -> bool {
        self.over_memory.load(Ordering::Acquire)
    }

    /// The node is going away: not ready any more.
    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Forgets idle addresses (run periodically).
    pub fn sweep(&self) {
        self.per_address.sweep();
    }

    /// Watches the process's memory every second while the server runs
    /// (a look at `/proc` while the share is set; nothing otherwise).
    pub fn watch_memory(self: &Arc<Self>) {
        let admission = self.clone();
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut was_over = false;
            loop {
                tick.tick().await;
                let percent = f64::from_bits(admission.memory_percent.load(Ordering::Acquire));
                let usage = if percent > 0.0 { memory::usage() } else { None };
                let now_over =
                    usage.is_some_and(|(used, limit)| used as f64 * 100.0 > limit as f64 * percent);
                let (used, limit) = usage.unwrap_or_default();
                admission.over_memory.store(now_over, Ordering::Release);
                if now_over != was_over {
                    let (used_mib, limit_mib) = (used >> 20, limit >> 20);
                    if now_over {
                        tracing::warn!(
                            "memory {used_mib} MiB of {limit_mib} MiB is over accept_traffic_memory_percent ({percent}%): refusing new connections, /ready is 503"
                        );
                    } else {
                        tracing::info!(
                            "memory {used_mib} MiB of {limit_mib} MiB is under {percent}% again: accepting new connections"
                        );
                    }
                    was_over = now_over;
                }
            }
        });
    }
}

/// The process's memory, from `/proc` and the cgroup filesystem.
pub mod memory {
    /// (resident bytes of this process, bytes it may use): the cgroup's
    /// limit (v2 `memory.max`, v1 `memory.limit_in_bytes`) when one is
    /// set, else the machine's `MemTotal`.
    pub fn usage() -> Option<(u64, u64)> {
        let used = rss()?;
        let total = mem_total()?;
        let limit = cgroup_limit().filter(|l| *l < total).unwrap_or(total);
        Some((used, limit))
    }

    fn rss() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        kib_field(&status, "VmRSS:")
    }

    fn mem_total() -> Option<u64> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        kib_field(&meminfo, "MemTotal:")
    }

    /// A `Name:   123 kB` line, in bytes.
    fn kib_field(text: &str, name: &str) -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    }

    /// The memory limit of the process's cgroup, if any.
    fn cgroup_limit() -> Option<u64> {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        for line in cgroup.lines() {
            // v2: "0::/path"; v1: "N:memory:/path".
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let file = if controllers.is_empty() {
                format!("/sys/fs/cgroup{path}/memory.max")
            } else if controllers.split(',').any(|c| c == "memory") {
                format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
            } else {
                continue;
            };
            let value = std::fs::read_to_string(&file)
                .or_else(|_| {
                    // Inside a container the cgroup is mounted at the root.
                    let root = if controllers.is_empty() {
                        "/sys/fs/cgroup/memory.max"
                    } else {
                        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
                    };
                    std::fs::read_to_string(root)
                })
                .ok()?;
            return value.trim().parse().ok();
        }
        None
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn this_process_has_a_size_and_a_limit() {
            let (used, limit) = super::usage().expect("on Linux");
            assert!(used > 0 && limit > used, "{used} of {limit}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize, per_address: usize, rate: u32) -> Arc<Admission> {
        let server = ServerConfig {
            max_connections: max,
            max_connections_per_address: per_address,
            new_connections_per_address_per_second: rate,
            ..ServerConfig::default()
        };
        Admission::new(&server)
    }

    #[test]
    fn the_node_cap_counts_open_connections() {
        let node = admission(2, 0, 0);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let first = node.admit(a).expect("first");
        let _second = node.admit(a).expect("second");
        assert_eq!(node.admit(a).err(), Some(Refusal::NodeFull));
        assert_eq!(node.connections(), 2, "a refusal holds nothing");
        drop(first);
        assert!(node.admit(a).is_ok());
    }

    #[test]
    fn an_address_has_its_cap_and_rate() {
        let node = admission(0, 1, 0);
        let (a, b): (IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        );
        let held = node.admit(a).expect("first");
        assert_eq!(node.admit(a).err(), Some(Refusal::AddressFull));
        assert!(node.admit(b).is_ok());
        drop(held);
        let node = admission(0, 0, 1);
        let _burst: Vec<_> = (0..2).map(|_| node.admit(a).expect("burst")).collect();
        assert_eq!(node.admit(a).err(), Some(Refusal::AddressRate));
    }

    #[test]
    fn loopback_addresses_are_not_limited_per_address() {
        let node = admission(0, 1, 1);
        for local in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let local: IpAddr = local.parse().expect("ip");
            let held: Vec<_> = (0..5)
                .map(|_| node.admit(local).expect("not limited"))
                .collect();
            assert_eq!(held.len(), 5);
        }
        let remote: IpAddr = "10.0.0.1".parse().expect("ip");
        let _one = node.admit(remote).expect("first");
        assert_eq!(node.admit(remote).err(), Some(Refusal::AddressFull));
    }

    #[test]
    fn memory_pressure_refuses_newcomers() {
        let node = admission(0, 0, 0);
        node.over_memory.store(true, Ordering::Release);
        assert_eq!(
            node.admit("10.0.0.1".parse().expect("ip")).err(),
            Some(Refusal::Memory)
        );
    }
}
