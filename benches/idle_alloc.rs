//! What each byte of an idle connection is (not a test): the server runs in
//! this process under a counting allocator, the clients run on a thread
//! whose allocations are not counted, and the live heap of the server is
//! compared before and after N idle WebSocket connections (each subscribed
//! to one channel), then again after each received one 9 KiB event. The
//! live allocations are listed by size, per connection, so each can be
//! traced to its owner (see docs/benchmarks.md).
//!
//! `cargo bench --bench idle_alloc` (env: BENCH_CONNECTIONS, default 2000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, Ordering};

use common::{burst_9kib, env_or, Client, Endpoint};

/// Size classes: powers of two up to 64 KiB, then "larger".
const CLASSES: usize = 18;
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BY_CLASS: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

thread_local! {
    /// Set on the clients' thread: its allocations are not the server's.
    static UNCOUNTED: Cell<bool> = const { Cell::new(false) };
}

fn class(size: usize) -> usize {
    (usize::BITS - size.max(1).saturating_sub(1).leading_zeros()).min(CLASSES as u32 - 1) as usize
}

fn counted() -> bool {
    !UNCOUNTED.try_with(Cell::get).unwrap_or(true)
}

struct Counting;

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
            LIVE_BY_CLASS[class(layout.size())].fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
            LIVE_BY_CLASS[class(layout.size())].fetch_sub(1, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
            LIVE_BY_CLASS[class(layout.size())].fetch_sub(1, Ordering::Relaxed);
            LIVE_BY_CLASS[class(new_size)].fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn snapshot() -> (i64, [i64; CLASSES]) {
    let mut classes = [0; CLASSES];
    for (i, c) in LIVE_BY_CLASS.iter().enumerate() {
        classes[i] = c.load(Ordering::Relaxed);
    }
    (LIVE_BYTES.load(Ordering::Relaxed), classes)
}

fn report(label: &str, n: usize, before: &(i64, [i64; CLASSES]), after: &(i64, [i64; CLASSES])) {
    println!(
        "{label}: {:.0} bytes of live heap per connection",
        (after.0 - before.0) as f64 / n as f64
    );
    for i in 0..CLASSES {
        let per = (after.1[i] - before.1[i]) as f64 / n as f64;
        if per.abs() >= 0.05 {
            let upper = 1usize << i;
            let range = if i + 1 == CLASSES {
                format!("> {} B", upper / 2)
            } else {
                format!("{}-{} B", upper / 2 + 1, upper)
            };
            println!("  {range:>14}: {per:>6.2} allocations per connection");
        }
    }
}

struct Local(u16);

impl Endpoint for Local {
    fn port(&self) -> u16 {
        self.0
    }
}

fn main() {
    let n = env_or("BENCH_CONNECTIONS", 2000);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut config =
        herald::config::Config::load(None, &herald::config::ProcessEnv).expect("config");
    config.server.host = "127.0.0.1".into();
    config.server.port = port;
    config.metrics.port = 0;
    std::thread::spawn(move || {
        let _ = actix_rt::System::new().block_on(herald::server::run(
            config,
            herald::reload::Reload {
                path: None,
                log_level: None,
                host: None,
                port: None,
            },
        ));
    });
    UNCOUNTED.with(|u| u.set(true));
    actix_rt::System::new().block_on(async move {
        let server = Local(port);
        // Wait for the listener, and warm up with one connection.
        let mut warm = loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break Client::connect(&server).await;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        warm.subscribe("idle-0").await;
        actix_rt::time::sleep(std::time::Duration::from_millis(200)).await;
        let before = snapshot();
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let mut c = Client::connect(&server).await;
            c.subscribe(&format!("idle-{}", i % 100)).await;
            clients.push(c);
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(200)).await;
        let idle = snapshot();
        report(&format!("{n} idle connections"), n, &before, &idle);

        burst_9kib(&server, &mut clients).await;
        actix_rt::time::sleep(std::time::Duration::from_millis(200)).await;
        report("after one 9 KiB event each", n, &before, &snapshot());
    });
}
