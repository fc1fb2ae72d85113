//! The Prometheus listener: a scripted session, then exact counter values
//! from `/metrics`; and the shipped Grafana dashboard only asks for metrics
//! that exist.

mod common;

use std::collections::HashMap;

use common::{api_as, free_port, scrape, trigger, Client, Server};
use herald::config::AppConfig;
use serde_json::json;

fn value(samples: &HashMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("no sample {name}; have {:?}", samples.keys()))
}

#[actix_rt::test]
async fn a_scripted_session_gives_exact_counts() {
    let port = free_port();
    let server = Server::launch(None, &[("HERALD_METRICS_PORT", &port.to_string())]);
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.subscribe_private("private-news").await;
    b.subscribe_private("private-news").await;
    b.join("presence-room", "7", json!(null)).await;
    for n in 0..3 {
        let r = trigger(
            &server,
            json!({"name": "e", "channel": "private-news", "data": n.to_string()}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    a.send(json!({"event": "client-x", "channel": "private-news", "data": {}}))
        .await;
    for _ in 0..3 {
        a.expect("e").await;
        b.expect("e").await;
    }
    b.expect("client-x").await;
    let wrong = AppConfig::new("app-id", "app-key", "wrong-secret");
    let r = api_as(&server, &wrong, "GET", "/apps/app-id/channels", "", None).await;
    assert_eq!(r.status, 401);

    let live = scrape(port).await;
    assert!(
        !live.keys().any(|k| k.starts_with("herald_redis_up")),
        "a single node has no Redis to report"
    );
    let app = r#"app="app-id""#;
    assert_eq!(
        value(
            &live,
            &format!(r#"herald_connections{{{app},transport="ws"}}"#)
        ),
        2.0
    );
    assert_eq!(value(&live, &format!("herald_channels{{{app}}}")), 2.0);
    assert_eq!(
        value(&live, &format!("herald_presence_members{{{app}}}")),
        1.0
    );
    assert_eq!(
        value(&live, &format!("herald_events_published_total{{{app}}}")),
        3.0
    );
    // 3 events to 2 subscribers, and the client event to 1.
    assert_eq!(
        value(&live, &format!("herald_deliveries_total{{{app}}}")),
        7.0
    );
    assert_eq!(
        value(&live, &format!("herald_client_events_total{{{app}}}")),
        1.0
    );
    // a: subscribe, client event; b: subscribe, join.
    assert_eq!(
        value(&live, &format!("herald_messages_received_total{{{app}}}")),
        4.0
    );
    assert_eq!(
        value(
            &live,
            &format!(r#"herald_api_requests_total{{{app},endpoint="/events",status="200"}}"#)
        ),
        3.0
    );
    assert_eq!(
        value(
            &live,
            &format!(r#"herald_api_requests_total{{{app},endpoint="/channels",status="401"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &live,
            r#"herald_api_request_duration_seconds_count{endpoint="/events"}"#
        ),
        3.0
    );
    // Sent: connection_established, subscription_succeeded and 3 events to
    // each; b also its join's subscription_succeeded and the client event.
    assert_eq!(
        value(&live, &format!("herald_messages_sent_total{{{app}}}")),
        12.0
    );

    // One connection closed by its client, one by the server (a message
    // over max_message_bytes: 1009).
    drop(a);
    b.send_text(&"x".repeat(70_000)).await;
    common::eventually("both connections are counted closed", || async {
        let s = scrape(port).await;
        s.get(&format!(r#"herald_connections{{{app},transport="ws"}}"#)) == Some(&0.0)
    })
    .await;
    let after = scrape(port).await;
    for code in ["client", "1009"] {
        assert_eq!(
            value(
                &after,
                &format!(
                    r#"herald_connections_closed_total{{{app},code="{code}",transport="ws"}}"#
                )
            ),
            1.0,
            "closed with {code}"
        );
    }
    assert_eq!(
        value(
            &after,
            &format!(r#"herald_connections_opened_total{{{app},transport="ws"}}"#)
        ),
        2.0
    );
    assert_eq!(value(&after, &format!("herald_channels{{{app}}}")), 0.0);
}

#[test]
fn the_grafana_dashboard_asks_only_for_metrics_that_exist() {
    let dashboard = include_str!("../docs/grafana-dashboard.json");
    let parsed: serde_json::Value = serde_json::from_str(dashboard).expect("dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| !p.is_empty()));
    let source = include_str!("../src/metrics.rs");
    let mut checked = 0;
    for (i, _) in dashboard.match_indices("herald_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| source.contains(&format!("\"{base}\"")))
            .unwrap_or(&name);
        assert!(
            source.contains(&format!("\"{base}\"")),
            "the dashboard asks for {name}, which Herald does not export"
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} queries");
}

#[actix_rt::test]
async fn the_metrics_listen_on_the_servers_host_by_default() {
    let port = free_port();
    // (The test servers run with --host 127.0.0.1.)
    let server = Server::launch(None, &[("HERALD_METRICS_PORT", &port.to_string())]);
    common::eventually("the metrics listener is up", || async {
        server
            .log_lines()
            .iter()
            .any(|l| l.contains(&format!("metrics on http://127.0.0.1:{port}/metrics")))
    })
    .await;
    assert!(!scrape(port).await.is_empty());
    // Not on another address of the machine: 127.0.0.2 is loopback too,
    // and a listener on 0.0.0.0 would answer there.
    assert!(
        std::net::TcpStream::connect(("127.0.0.2", port)).is_err(),
        "the metrics listen beyond the server's host"
    );
}
