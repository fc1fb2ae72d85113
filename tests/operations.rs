//! Running Herald: JSON logs, debug lines for what happens to a connection,
//! and no secret in any log line.

mod common;

use common::{api_as, Client, Endpoint, Server};
use herald::config::AppConfig;
use serde_json::{json, Value};

#[actix_rt::test]
async fn json_logs_parse_line_by_line_and_never_show_the_secret() {
    let secret = "s3cr3t-never-logged";
    let server = Server::launch(
        None,
        &[
            ("HERALD_LOG_FORMAT", "json"),
            ("HERALD_LOG", "debug"),
            ("HERALD_APP_SECRET", secret),
        ],
    );
    let mut client = Client::connect(&server).await;
    // A refused subscription, an API request with a bad signature, and a
    // connection the server closes (an over-long message).
    let refused = client.subscribe("private-x").await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    let wrong = AppConfig::new("app-id", "app-key", "not-the-secret");
    let r = api_as(&server, &wrong, "GET", "/apps/app-id/channels", "", None).await;
    assert_eq!(r.status, 401);
    client.send_text(&"x".repeat(70_000)).await;
    let (code, _) = client.expect_close().await;
    assert_eq!(code, 1009);

    common::eventually("the close is logged", || async {
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("connection closed"))
    })
    .await;
    let lines = server.log_lines();
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &parsed {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        assert!(line["message"].is_string(), "{line}");
    }
    let find = |message: &str| {
        parsed
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in {lines:?}"))
            .clone()
    };
    let opened = find("connection opened");
    assert_eq!(opened["level"], "DEBUG");
    assert_eq!(opened["socket"], json!(client.socket_id));
    let refusal = find("subscription refused");
    assert_eq!(refusal["channel"], "private-x");
    let api = find("HTTP API request refused");
    assert_eq!(api["status"], 401);
    let closed = find("connection closed");
    assert_eq!(closed["code"], "1009");
    assert!(
        lines.iter().all(|l| !l.contains(secret)),
        "the secret was logged"
    );
}

#[test]
fn an_unknown_log_format_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .env("HERALD_LOG_FORMAT", "xml")
        .output()
        .expect("run herald");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_LOG_FORMAT"));
}

#[actix_rt::test]
async fn every_key_can_come_from_the_environment() {
    let server = Server::launch(
        None,
        &[
            ("HERALD_SERVER__ACTIVITY_TIMEOUT", "7"),
            ("HERALD_APP__CLIENT_EVENTS", "false"),
            ("HERALD_APP__MAX_CHANNEL_NAME_LENGTH", "10"),
        ],
    );
    let mut client = Client::open(&server.ws_url("app-key", "protocol=7")).await;
    let hello = client.recv().await;
    assert_eq!(hello["data"]["activity_timeout"], 7);
    let refused = client.subscribe("a-channel-name-too-long").await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    // HERALD_APP__CLIENT_EVENTS=false: client events are refused.
    client.subscribe_private("private-a").await;
    client
        .send(json!({"event": "client-x", "channel": "private-a", "data": {}}))
        .await;
    let error = client.expect("pusher:error").await;
    assert!(
        error["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("enable this feature")),
        "{error}"
    );

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .env("HERALD_SERVER__PONG_TIMEOUT", "soon")
        .output()
        .expect("run herald");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("HERALD_SERVER__PONG_TIMEOUT"));
}

#[actix_rt::test]
async fn a_taken_metrics_port_costs_the_metrics_not_the_service() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let server = Server::launch(None, &[("HERALD_METRICS_PORT", &port)]);
    let mut client = Client::connect(&server).await;
    client.expect_nothing_pending().await;
    server.logged("no metrics: cannot listen", 1).await;
}

#[actix_rt::test]
async fn the_console_exists_only_with_a_token_and_checks_it_first() {
    let base = |server: &Server| format!("http://127.0.0.1:{}", server.port);
    let http = awc::Client::new();
    let status = |response: Result<awc::ClientResponse<_>, _>| {
        response
            .map(|r: awc::ClientResponse<_>| r.status().as_u16())
            .expect("request")
    };

    let off = Server::start();
    assert_eq!(
        status(http.get(format!("{}/console", base(&off))).send().await),
        404
    );
    assert_eq!(
        status(
            http.get(format!("{}/console/api/apps", base(&off)))
                .send()
                .await
        ),
        404
    );

    let token = "a-console-token-for-tests";
    let server = Server::launch(
        None,
        &[
            ("HERALD_CONSOLE_TOKEN", token),
            ("HERALD_SERVER__MAX_REQUEST_BYTES", "1024"),
        ],
    );
    let url = format!("{}/console/api/apps", base(&server));
    assert_eq!(status(http.get(&url).send().await), 401);
    let wrong = http
        .get(&url)
        .insert_header(("Authorization", "Bearer nope"));
    assert_eq!(status(wrong.send().await), 401);
    let mut right = http
        .get(&url)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("request");
    assert_eq!(right.status().as_u16(), 200);
    let body: Value = right.json().await.expect("json");
    assert_eq!(body["apps"], json!(["app-id"]));
    assert_eq!(body["connections"]["app-id"], json!(0), "{body}");

    // A test event: refused before its body is read without the token,
    // and bounded by max_request_bytes with it.
    let events = format!("{}/console/api/apps/app-id/events", base(&server));
    let big = "x".repeat(4096);
    assert_eq!(status(http.post(&events).send_body(big.clone()).await), 401);
    let too_big = http
        .post(&events)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send_body(big);
    assert_eq!(status(too_big.await), 413);
    let mut client = Client::connect(&server).await;
    client.subscribe("news").await;
    let sent = http
        .post(&events)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send_body(json!({"name": "hi", "channel": "news", "data": "{}"}).to_string());
    assert_eq!(status(sent.await), 200);
    assert_eq!(client.expect("hi").await["channel"], "news");
    // The app list counts the live connection.
    let mut listed = http
        .get(&url)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("request");
    let body: Value = listed.json().await.expect("json");
    assert_eq!(body["connections"]["app-id"], json!(1), "{body}");
}

/// The Dockerfile's HEALTHCHECK command, with the image's binary path
/// pointed at the one under test.
fn docker_health_check() -> Vec<String> {
    let dockerfile = include_str!("../docker/Dockerfile");
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK line");
    let json = &line[line.find("CMD").expect("CMD") + 3..];
    let command: Vec<String> = serde_json::from_str(json.trim()).expect("exec-form CMD");
    command
        .into_iter()
        .map(|part| part.replace("/usr/local/bin/herald", env!("CARGO_BIN_EXE_herald")))
        .collect()
}

/// Runs the health check as the image's shell (dash) would.
fn run_under_dash(command: &[String], port: u16) -> std::process::Output {
    let quoted: Vec<String> = command.iter().map(|p| format!("'{p}'")).collect();
    std::process::Command::new("dash")
        .arg("-c")
        .arg(quoted.join(" "))
        .env("HERALD_PORT", port.to_string())
        .output()
        .expect("dash is installed (Debian's /bin/sh)")
}

#[test]
fn the_docker_health_check_passes_against_a_live_herald_under_dash() {
    let command = docker_health_check();
    let server = Server::start();
    let out = run_under_dash(&command, server.port);
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"status\""));
    // And fails where nothing answers.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    assert!(!run_under_dash(&command, port).status.success());
}

/// The listen backlog of the socket on `port`, as `ss` reports it (the
/// Send-Q of a listening socket).
fn listen_backlog(port: u16) -> u32 {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("no listener on {port} in {text:?}"))
}

#[test]
fn the_listen_backlog_follows_the_config_and_somaxconn() {
    let server = Server::with_config("[server]\nbacklog = 77\n");
    assert_eq!(listen_backlog(server.port), 77);
    let server = Server::start();
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("somaxconn")
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(listen_backlog(server.port), somaxconn);
}

#[test]
fn a_busy_port_is_named_in_the_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env("HERALD_METRICS_PORT", "0")
        .output()
        .expect("run herald");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

/// The systemd unit of docs/operations.md (the ```ini block marked
/// `tested: systemd-unit`).
fn documented_unit() -> String {
    let guide = include_str!("../docs/operations.md");
    let marked = guide
        .split("<!-- tested: systemd-unit -->")
        .nth(1)
        .expect("the marked unit");
    let start = marked.find("```ini\n").expect("an ini block") + "```ini\n".len();
    let end = marked[start..].find("```").expect("its end") + start;
    marked[start..end].to_owned()
}

#[test]
fn the_documented_systemd_unit_is_valid_and_its_user_reads_a_group_readable_config() {
    let unit = documented_unit();
    assert!(
        unit.contains("\nUser=herald\n") && unit.contains("\nGroup=herald\n"),
        "{unit}"
    );
    assert!(
        !unit.contains("DynamicUser=yes"),
        "a dynamic user cannot read a config its group does not own"
    );
    let dir = std::env::temp_dir().join(format!("herald-systemd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");

    // systemd's own check of the unit, where systemd is installed.
    if std::path::Path::new("/usr/bin/systemd-analyze").exists() {
        let file = dir.join("herald.service");
        std::fs::write(
            &file,
            unit.replace("/usr/local/bin/herald", env!("CARGO_BIN_EXE_herald")),
        )
        .expect("write unit");
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&file)
            .output()
            .expect("systemd-analyze");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The permissions the guide sets up: root-owned, readable by the
    // service's group (here: nobody / nogroup, 65534), not by others.
    let as_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !as_root {
        eprintln!("skipping the permission half: it needs root (CI runs as root)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s3cret\"\n",
    )
    .expect("config");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let run_as_service = |mode: u32| {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).expect("chmod");
        std::process::Command::new("chgrp")
            .arg("65534")
            .arg(&config)
            .status()
            .expect("chgrp");
        // (A config that loads is then served: `--port` 1 cannot be bound
        // as nobody, so the run stops right after reading it.)
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_herald"))
            .args(["--config"])
            .arg(&config)
            .args(["--host", "127.0.0.1", "--port", "1"])
            .env("HERALD_METRICS_PORT", "0")
            .output()
            .expect("setpriv")
    };
    let readable = run_as_service(0o640);
    let err = String::from_utf8_lossy(&readable.stderr);
    assert!(
        !err.contains("cannot read config file"),
        "0640 root:group: {err}"
    );
    assert!(err.contains("cannot listen on 127.0.0.1:1"), "{err}");
    let unreadable = run_as_service(0o600);
    let err = String::from_utf8_lossy(&unreadable.stderr);
    assert!(err.contains("cannot read config file"), "0600: {err}");
    assert_eq!(unreadable.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_pid_file_names_the_process_until_it_exits() {
    let dir = std::env::temp_dir().join(format!("herald-pid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pid_file = dir.join("herald.pid");
    let mut server = Server::with_config(&format!(
        "[server]\npid_file = {:?}\n",
        pid_file.to_string_lossy()
    ));
    let written =
        std::fs::read_to_string(&pid_file).expect("the pid file is there once it listens");
    assert_eq!(written.trim(), server.pid().to_string());
    server.terminate();
    assert_eq!(server.wait_exit(), Some(0));
    assert!(!pid_file.exists(), "removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_low_open_file_limit_is_warned_about_at_start() {
    // 128 descriptors: Herald warns at start that they cap its connections.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 128 && exec timeout -s TERM 3 '{}' --host 127.0.0.1 --port 0",
            env!("CARGO_BIN_EXE_herald")
        ))
        .env("HERALD_METRICS_PORT", "0")
        .output()
        .expect("bash");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("the open-file limit is 128: at most 64 connections"),
        "{log}"
    );
}
