//! Socket options Herald sets on its own TCP connections, read back from the
//! running server process: every accepted client socket and every Redis
//! connection has `TCP_NODELAY`, so small frames leave at once instead of
//! waiting for the peer's delayed ACK (Nagle's algorithm).
//!
//! The test duplicates the server's socket descriptors into itself with
//! `pidfd_getfd` (Linux 5.6+, same user) and asks `getsockopt`.

mod common;

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use common::redis_server::RedisServer;
use common::{Client, Server};

/// The inodes of the process's established TCP sockets for which `wanted`
/// holds, given (local port, remote port).
fn sockets(pid: u32, wanted: impl Fn(u16, u16) -> bool) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            let (Some(local), Some(remote)) = (port(fields[1]), port(fields[2])) else {
                continue;
            };
            // State 01 is ESTABLISHED.
            if fields[3] == "01" && wanted(local, remote) {
                if let Ok(inode) = fields[9].parse() {
                    inodes.push(inode);
                }
            }
        }
    }
    inodes
}

/// The process's descriptor number for a socket inode.
fn fd_of(pid: u32, inode: u64) -> Option<RawFd> {
    let target = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| {
            std::fs::read_link(entry.path()).is_ok_and(|link| link.to_string_lossy() == target)
        })
        .and_then(|entry| entry.file_name().to_str()?.parse().ok())
}

/// `TCP_NODELAY` of descriptor `fd` in process `pid`.
fn nodelay(pid: u32, fd: RawFd) -> bool {
    // SAFETY: plain syscalls on descriptors this function owns; every
    // returned descriptor is checked and closed by OwnedFd.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd_raw(&pidfd), fd, 0);
        assert!(
            copy >= 0,
            "pidfd_getfd: {}",
            std::io::Error::last_os_error()
        );
        let copy = OwnedFd::from_raw_fd(copy as RawFd);
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let rc = libc::getsockopt(
            pidfd_raw(&copy),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        );
        assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
        value != 0
    }
}

fn pidfd_raw(fd: &OwnedFd) -> RawFd {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

/// Asserts that every socket `wanted` selects has `TCP_NODELAY`; returns
/// how many there were.
fn assert_all_nodelay(pid: u32, what: &str, wanted: impl Fn(u16, u16) -> bool) -> usize {
    let inodes = sockets(pid, wanted);
    for inode in &inodes {
        let fd = fd_of(pid, *inode).expect("descriptor of the socket");
        assert!(nodelay(pid, fd), "{what} socket {fd} has no TCP_NODELAY");
    }
    inodes.len()
}

#[actix_rt::test]
async fn accepted_websocket_sockets_have_nodelay() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    client.subscribe("latency").await;
    let port = server.port;
    let checked = assert_all_nodelay(server.pid(), "client", |local, _| local == port);
    assert!(checked >= 1, "found no accepted socket to check");
}

#[actix_rt::test]
async fn redis_connections_have_nodelay() {
    let redis = RedisServer::start();
    let config = format!("[cluster]\ndriver = \"redis\"\nurl = \"{}\"\n", redis.url());
    let server = Server::launch(Some(&config), &[]);
    server.wait_ready().await;
    // Make sure the command connection is in use, not only the relay's.
    let mut client = Client::connect(&server).await;
    client.subscribe("latency").await;
    let redis_port = redis.port;
    let checked = assert_all_nodelay(server.pid(), "Redis", |_, remote| remote == redis_port);
    assert!(
        checked >= 2,
        "expected the relay and command connections, found {checked}"
    );
}
