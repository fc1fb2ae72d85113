//! Webhooks on a single node, against a local receiver: every event type
//! with its exact fields, signed; retries with the identical request;
//! isolation of a hanging URL; debounce; filters; batching; delivery of
//! what is pending at shutdown; configuration errors.

mod common;

use std::time::{Duration, Instant};

use common::webhook_receiver::{Answer, Receiver};
use common::{free_port, Client, Server};
use serde_json::{json, Value};

/// The default app, with webhooks to `urls` and `extra` app settings.
fn config(urls: &[String], extra: &str) -> String {
    let mut toml =
        format!("[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\n{extra}\n");
    for url in urls {
        toml.push_str(&format!("[[apps.webhooks]]\nurl = \"{url}\"\n"));
    }
    toml
}

fn named<'a>(name: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e| e["name"] == name
}

#[actix_rt::test]
async fn every_event_type_arrives_with_pushers_fields() {
    let mut hooks = Receiver::start().await;
    let server = Server::with_config(&config(&[hooks.url()], "webhook_debounce = 0"));
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;

    a.subscribe("my-channel").await;
    a.join("presence-room.1", "42", json!({"name": "Ada"}))
        .await;
    b.join("presence-room.1", "43", json!(null)).await;
    a.expect("pusher_internal:member_added").await;
    a.send(
        json!({"event": "client-typing", "channel": "presence-room.1", "data": {"typing": true}}),
    )
    .await;
    b.expect("client-typing").await;
    a.subscribe("cache-prices").await;
    a.expect("pusher:cache_miss").await;
    a.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "my-channel"}}))
        .await;
    // A's frames are handled in order: once its ping is answered, its
    // unsubscribe was handled, before B leaves (two clients' actions have
    // no order of their own).
    a.expect_nothing_pending().await;
    drop(b);

    let (events, _) = hooks
        .delivered_until(|e| e["name"] == "member_removed")
        .await;
    assert_eq!(
        events,
        vec![
            json!({"name": "channel_occupied", "channel": "my-channel"}),
            json!({"name": "channel_occupied", "channel": "presence-room.1"}),
            json!({"name": "member_added", "channel": "presence-room.1", "user_id": "42"}),
            json!({"name": "member_added", "channel": "presence-room.1", "user_id": "43"}),
            json!({"name": "client_event", "channel": "presence-room.1", "event": "client-typing",
                   "data": "{\"typing\":true}", "socket_id": a.socket_id, "user_id": "42"}),
            json!({"name": "channel_occupied", "channel": "cache-prices"}),
            json!({"name": "cache_miss", "channel": "cache-prices"}),
            json!({"name": "channel_vacated", "channel": "my-channel"}),
            json!({"name": "member_removed", "channel": "presence-room.1", "user_id": "43"}),
        ]
    );
}

#[actix_rt::test]
async fn subscription_counts_are_reported() {
    let mut hooks = Receiver::start().await;
    let toml = format!(
        "{}event_types = [\"subscription_count\"]\n",
        config(&[hooks.url()], "")
    );
    let server = Server::with_config(&toml);
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.subscribe("counted").await;
    b.subscribe("counted").await;
    let first = hooks.next().await;
    assert_eq!(
        first.events,
        vec![json!({"name": "subscription_count", "channel": "counted", "subscription_count": 1})]
    );
    let second = hooks.next().await;
    assert_eq!(
        second.events,
        vec![json!({"name": "subscription_count", "channel": "counted", "subscription_count": 2})]
    );
}

#[actix_rt::test]
async fn failures_are_retried_with_the_identical_request() {
    let mut hooks = Receiver::start().await;
    hooks.answer(
        &[Answer::Status(500), Answer::Status(503)],
        Answer::Status(200),
    );
    let server = Server::with_config(&config(&[hooks.url()], ""));
    let mut a = Client::connect(&server).await;
    a.subscribe("retried").await;

    let attempts = [hooks.next().await, hooks.next().await, hooks.next().await];
    assert_eq!(
        attempts.iter().map(|h| h.answered).collect::<Vec<_>>(),
        [Some(500), Some(503), Some(200)]
    );
    for attempt in &attempts[1..] {
        assert_eq!(attempt.body, attempts[0].body);
        assert_eq!(
            attempt.headers["x-pusher-signature"],
            attempts[0].headers["x-pusher-signature"]
        );
    }
    assert_eq!(attempts[0].names(), ["channel_occupied"]);
    // With backoff: 1 s then 2 s, each scaled by 0.5 to 1.
    let waits: Vec<Duration> = attempts
        .windows(2)
        .map(|pair| pair[1].received - pair[0].received)
        .collect();
    assert!(waits[0] >= Duration::from_millis(450), "{waits:?}");
    assert!(waits[1] >= Duration::from_millis(950), "{waits:?}");
    // Delivered once: the next request is the next event.
    a.subscribe("barrier").await;
    let next = hooks.next().await;
    assert_eq!(
        next.events,
        vec![json!({"name": "channel_occupied", "channel": "barrier"})]
    );
}

#[actix_rt::test]
async fn a_hanging_url_delays_neither_clients_nor_other_urls() {
    let mut hanging = Receiver::start().await;
    hanging.answer(&[], Answer::Hang);
    let mut good = Receiver::start().await;
    let server = Server::with_config(&config(
        &[hanging.url(), good.url()],
        "webhook_timeout = 30\nclient_event_rate = 0",
    ));
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    let started = Instant::now();
    for n in 0..20 {
        let channel = format!("private-c{n}");
        a.subscribe_private(&channel).await;
        b.subscribe_private(&channel).await;
        a.send(json!({"event": "client-x", "channel": channel, "data": {}}))
            .await;
        b.expect("client-x").await;
    }
    // All 20 channels' occupancy and client events reach the good URL
    // while the other one has not answered its first request.
    let (events, _) = good
        .delivered_until(|e| e["name"] == "client_event" && e["channel"] == "private-c19")
        .await;
    assert_eq!(events.len(), 40, "{events:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The hanging URL did get its first event, and is still holding it.
    let held = hanging.next().await;
    assert_eq!(held.answered, None);
    assert_eq!(
        held.events,
        vec![json!({"name": "channel_occupied", "channel": "private-c0"})]
    );
}

#[actix_rt::test]
async fn departures_are_debounced() {
    let mut hooks = Receiver::start().await;
    let server = Server::with_config(&config(&[hooks.url()], "webhook_debounce = 2"));
    let mut a = Client::connect(&server).await;
    a.join("presence-page", "7", json!(null)).await;
    let (events, _) = hooks.delivered_until(named("member_added")).await;
    assert_eq!(events[0]["name"], "channel_occupied");

    // A page reload: gone and back within the delay.
    drop(a);
    let mut a = Client::connect(&server).await;
    a.join("presence-page", "7", json!(null)).await;
    // Gone for good: the departures follow after the delay, and nothing
    // of the reload ever arrived.
    let left = Instant::now();
    a.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-page"}}))
        .await;
    let (events, _) = hooks.delivered_until(named("channel_vacated")).await;
    assert_eq!(
        events,
        vec![
            json!({"name": "member_removed", "channel": "presence-page", "user_id": "7"}),
            json!({"name": "channel_vacated", "channel": "presence-page"}),
        ]
    );
    assert!(
        left.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        left.elapsed()
    );
}

#[actix_rt::test]
async fn urls_take_only_their_event_types_and_channels() {
    let mut members = Receiver::start().await;
    let mut vip = Receiver::start().await;
    let toml = format!(
        "{}\n[[apps.webhooks]]\nurl = \"{}\"\nevent_types = [\"member_added\"]\nchannel_prefix = \"presence-\"\n\
         [[apps.webhooks]]\nurl = \"{}\"\nchannel_suffix = \".vip\"\nheaders = {{ Authorization = \"Bearer t\" }}\n",
        config(&[], "webhook_debounce = 0"),
        members.url(),
        vip.url()
    );
    let server = Server::with_config(&toml);
    let mut a = Client::connect(&server).await;
    a.subscribe("lobby").await;
    a.subscribe("lobby.vip").await;
    a.join("presence-a", "1", json!(null)).await;
    a.join("presence-b.vip", "2", json!(null)).await;

    let (got, _) = members
        .delivered_until(|e| e["channel"] == "presence-b.vip")
        .await;
    assert_eq!(
        got,
        vec![
            json!({"name": "member_added", "channel": "presence-a", "user_id": "1"}),
            json!({"name": "member_added", "channel": "presence-b.vip", "user_id": "2"}),
        ]
    );
    let (got, hooks) = vip.delivered_until(|e| e["name"] == "member_added").await;
    assert_eq!(
        got,
        vec![
            json!({"name": "channel_occupied", "channel": "lobby.vip"}),
            json!({"name": "channel_occupied", "channel": "presence-b.vip"}),
            json!({"name": "member_added", "channel": "presence-b.vip", "user_id": "2"}),
        ]
    );
    assert_eq!(hooks[0].headers["authorization"], "Bearer t");
}

#[actix_rt::test]
async fn batching_carries_up_to_50_events_in_order() {
    let mut hooks = Receiver::start().await;
    // The first request fails, so the other events queue behind it.
    hooks.answer(&[Answer::Status(500)], Answer::Status(200));
    let server = Server::with_config(&config(&[hooks.url()], "webhook_batching = true"));
    let mut a = Client::connect(&server).await;
    a.subscribe("c0").await;
    assert_eq!(hooks.next().await.answered, Some(500));
    for n in 1..60 {
        a.subscribe(&format!("c{n}")).await;
    }
    let (events, requests) = hooks.delivered_until(|e| e["channel"] == "c59").await;
    let channels: Vec<String> = events
        .iter()
        .map(|e| e["channel"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        channels,
        (0..60).map(|n| format!("c{n}")).collect::<Vec<_>>()
    );
    assert!(requests.iter().all(|r| r.events.len() <= 50));
    assert!(requests.len() <= 4, "{} requests", requests.len());
    assert!(requests.iter().any(|r| r.events.len() > 1));
}

#[actix_rt::test]
async fn shutdown_delivers_what_is_pending() {
    let mut hooks = Receiver::start().await;
    let server = Server::with_config(&config(&[hooks.url()], "webhook_debounce = 60"));
    let mut a = Client::connect(&server).await;
    a.subscribe("closing").await;
    assert_eq!(hooks.next().await.names(), ["channel_occupied"]);
    server.terminate();
    // Held back for a minute, but sent before the process exits.
    let hook = hooks.next_within(Duration::from_secs(10)).await;
    assert_eq!(
        hook.events,
        vec![json!({"name": "channel_vacated", "channel": "closing"})]
    );
}

#[actix_rt::test]
async fn zero_config_webhooks_come_from_the_environment() {
    let mut hooks = Receiver::start().await;
    let url = hooks.url();
    let server = Server::launch(
        None,
        &[
            ("HERALD_WEBHOOK_URL", &url),
            ("HERALD_WEBHOOK_EVENTS", "cache_miss"),
        ],
    );
    let mut a = Client::connect(&server).await;
    a.subscribe("lobby").await;
    a.subscribe("cache-x").await;
    let hook = hooks.next().await;
    assert_eq!(
        hook.events,
        vec![json!({"name": "cache_miss", "channel": "cache-x"})]
    );
}

#[test]
fn bad_webhook_settings_stop_start_up_naming_the_key() {
    use std::process::Command;
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run herald");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--port", "0"], &[("HERALD_WEBHOOK_URL", "ftp://x")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("HERALD_WEBHOOK_URL"), "{err}");
    let (code, err) = run(
        &["--port", "0"],
        &[
            ("HERALD_WEBHOOK_URL", "http://x/"),
            ("HERALD_WEBHOOK_EVENTS", "member_added,nope"),
        ],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("HERALD_WEBHOOK_EVENTS") && err.contains("nope"),
        "{err}"
    );

    let file = common::tempfile::TempPath::write(&format!(
        "{}event_types = [\"channel_ocupied\"]\n",
        config(&["http://127.0.0.1:1/".into()], "")
    ));
    let path = file.path().to_string_lossy().into_owned();
    let (code, err) = run(&["--port", "0", "--config", &path], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("apps[0].webhooks[0].event_types"), "{err}");
}

/// One sample of the server's `/metrics`, 0 when absent.
async fn metric(port: u16, sample: &str) -> f64 {
    common::scrape(port)
        .await
        .get(sample)
        .copied()
        .unwrap_or(0.0)
}

#[actix_rt::test]
async fn a_webhook_failing_past_its_retry_time_is_dropped_and_counted() {
    let mut hooks = Receiver::start().await;
    hooks.answer(&[], Answer::Status(500));
    let port = free_port();
    let server = Server::launch(
        Some(&config(&[hooks.url()], "webhook_retry_for = 2")),
        &[("HERALD_METRICS_PORT", &port.to_string())],
    );
    let mut a = Client::connect(&server).await;
    a.subscribe("doomed").await;
    let first = hooks.next().await;
    assert_eq!(first.answered, Some(500));
    let dropped = r#"herald_webhooks_dropped_total{app="app-id",reason="retries"}"#;
    common::eventually("the webhook is given up", || async {
        metric(port, dropped).await == 1.0
    })
    .await;
    // Its attempts stopped: with the receiver fixed, the next request is
    // the next event.
    hooks.answer(&[], Answer::Status(200));
    a.subscribe("after").await;
    loop {
        let hook = hooks.next().await;
        if hook.events[0]["channel"] == "after" {
            break;
        }
        assert_eq!(
            hook.body, first.body,
            "only retries of the first event before"
        );
        assert!(
            hook.answered == Some(500),
            "a retry after the drop: {hook:?}"
        );
    }
    assert_eq!(metric(port, dropped).await, 1.0);
}

#[actix_rt::test]
async fn a_url_that_does_not_keep_up_holds_at_most_webhook_max_pending() {
    let hanging = Receiver::start().await;
    hanging.answer(&[], Answer::Hang);
    let port = free_port();
    let server = Server::launch(
        Some(&config(
            &[hanging.url()],
            "webhook_max_pending = 2\nwebhook_timeout = 60",
        )),
        &[("HERALD_METRICS_PORT", &port.to_string())],
    );
    let mut a = Client::connect(&server).await;
    for n in 0..10 {
        a.subscribe(&format!("c{n}")).await;
    }
    // One being sent, two waiting: the other seven are dropped.
    let dropped = r#"herald_webhooks_dropped_total{app="app-id",reason="queue_full"}"#;
    common::eventually("the overflow is counted", || async {
        metric(port, dropped).await >= 6.0
    })
    .await;
    let count = metric(port, dropped).await;
    assert!((6.0..=8.0).contains(&count), "{count}");
}
