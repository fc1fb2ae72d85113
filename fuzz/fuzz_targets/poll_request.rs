//! JSON polling requests: the query, the poll parameters and the cursor,
//! then a history read at whatever cursor the request names.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use herald::config::AppConfig;
use herald::hub::history::History;
use herald::hub::AppHub;
use herald::polling::{parse_cursor, Poll};
use herald::support::query::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let app = AppHub::new(Arc::new(AppConfig::new("1", "k", "s")));
    if let Ok(query) = Query::parse(text) {
        let _ = Poll::parse(&query, &app);
        if let Some(cursor) = query.get("cursor") {
            let _ = parse_cursor(cursor);
            let history = History::new(4, Duration::from_secs(60));
            for i in 0..6 {
                history.append("c", "e", &i.to_string());
            }
            let _ = history.read("c", Some(cursor), 10);
            let _ = history.read("other", Some(cursor), 10);
        }
    }
});
