//! Messages from the cluster relay (another node, or anyone who can write
//! to Redis): applied to a hub with one subscribed connection.
#![no_main]

use std::sync::{Arc, OnceLock};

use herald::adapter::redis::relay;
use herald::adapter::LocalRules;
use herald::config::AppConfig;
use herald::hub::fanout::Fanout;
use herald::hub::{Connection, Hub};
use herald::protocol::SocketId;
use libfuzzer_sys::fuzz_target;

fn fanout() -> &'static Fanout {
    static FANOUT: OnceLock<Fanout> = OnceLock::new();
    FANOUT.get_or_init(|| Fanout::new(0).expect("no threads to start"))
}

fn hub() -> &'static (Hub, Arc<Connection>) {
    static HUB: OnceLock<(Hub, Arc<Connection>)> = OnceLock::new();
    HUB.get_or_init(|| {
        let hub = Hub::new([AppConfig::new("app", "key", "secret")]);
        let conn = Arc::new(Connection::new(SocketId::new(1, 2), 1 << 20));
        if let Some(app) = hub.by_id("app") {
            let _ = app.subscribe(&conn, "c", None, &LocalRules::of(&app));
        }
        (hub, conn)
    })
}

fuzz_target!(|data: &[u8]| {
    let (hub, conn) = hub();
    // No fan-out threads: frames are sent on this thread.
    let fanout = fanout();
    relay::apply(hub, fanout, "this-node", bytes::Bytes::copy_from_slice(data));
    let mut drained = Vec::new();
    conn.drain_into(&mut drained);
});
