//! The doctor's round trip against a running Herald, as the project's own
//! clients would make it: health, a signed API call, a WebSocket that
//! subscribes and receives an event triggered through the API, a private
//! channel signed with the project's secret, the HTTP fallback and the
//! polling endpoint.

use std::time::{Duration, Instant};

use awc::ws::{self, Frame};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use super::{Check, Flavour};
use crate::auth;
use crate::config::AppConfig;
use crate::support::clock::unix_secs;
use crate::trigger::{signed_query, signed_query_with};

/// How long one step may take.
pub const STEP: Duration = Duration::from_secs(5);

type Socket = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

/// Runs every live check against `base` (`http(s)://host:port`), naming
/// the project's variables as `flavour` has them (the checks below are
/// written with the `pusher` connection's names).
pub async fn run(http: &awc::Client, base: &str, app: &AppConfig, flavour: Flavour) -> Vec<Check> {
    let mut checks = run_checks(http, base, app).await;
    if flavour.prefix != "PUSHER" {
        let ours = format!("{}_", flavour.prefix);
        for check in &mut checks {
            check.title = check.title.replace("PUSHER_", &ours);
            check.fix = check.fix.take().map(|fix| fix.replace("PUSHER_", &ours));
        }
    }
    checks
}

async fn run_checks(http: &awc::Client, base: &str, app: &AppConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    let up = http.get(format!("{base}/up")).send().await;
    let reachable = matches!(&up, Ok(r) if r.status().is_success());
    checks.push(Check::new(
        reachable,
        format!("Herald answers at {base}"),
        format!(
            "{}: start Herald there, or fix PUSHER_HOST / PUSHER_PORT / PUSHER_SCHEME (or pass --url)",
            up.err().map_or_else(
                || "no 200 from /up".to_owned(),
                |e| crate::trigger::request_failed(base, &e.to_string())
            )
        ),
    ));
    if !reachable {
        return checks;
    }
    checks.push(credentials(http, base, app).await);
    checks.extend(websocket(http, base, app).await);
    checks.push(fallback(http, base, app).await);
    checks.push(polling(http, base, app).await);
    checks
}

async fn signed_get(
    http: &awc::Client,
    base: &str,
    app: &AppConfig,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<u16, String> {
    let query = signed_query_with(app, "GET", path, b"", unix_secs(), extra);
    let url = format!("{base}{path}?{query}");
    let mut response = http.get(url).send().await.map_err(|e| e.to_string())?;
    let _ = response.body().await;
    Ok(response.status().as_u16())
}

async fn credentials(http: &awc::Client, base: &str, app: &AppConfig) -> Check {
    let status = signed_get(http, base, app, &format!("/apps/{}/channels", app.id), &[]).await;
    let ok = status == Ok(200);
    let fix = match status {
        Ok(401) => "Herald refused the signature: PUSHER_APP_SECRET (or PUSHER_APP_KEY) differs from Herald's app".to_owned(),
        Ok(404) => format!("Herald has no app {:?}: set PUSHER_APP_ID to one of Herald's app ids", app.id),
        Ok(403) => "the app is disabled in Herald's config".to_owned(),
        Ok(other) => format!("Herald answered {other}"),
        Err(e) => e,
    };
    Check::new(
        ok,
        format!(
            "app id, key and secret match an app of Herald (app {:?})",
            app.id
        ),
        fix,
    )
}

async fn websocket(http: &awc::Client, base: &str, app: &AppConfig) -> Vec<Check> {
    let ws_base = base.replacen("http", "ws", 1);
    let url = format!(
        "{ws_base}/app/{}?protocol=7&client=js&version=8.4.0&flash=false",
        app.key
    );
    let connected = tokio::time::timeout(STEP, http.ws(url).connect()).await;
    let mut socket = match connected {
        Ok(Ok((_, socket))) => socket,
        Ok(Err(e)) => {
            return vec![Check::fail(
                "a WebSocket connects as pusher-js would",
                e.to_string(),
            )]
        }
        Err(_) => {
            return vec![Check::fail(
                "a WebSocket connects as pusher-js would",
                "timed out".into(),
            )]
        }
    };
    let hello = next_frame(&mut socket).await;
    let socket_id = hello
        .as_ref()
        .filter(|f| f["event"] == "pusher:connection_established")
        .and_then(|f| data(f)["socket_id"].as_str().map(str::to_owned));
    let Some(socket_id) = socket_id else {
        let why = match hello {
            Some(frame) if frame["event"] == "pusher:error" => format!(
                "Herald refused the key {:?}: {} (set PUSHER_APP_KEY to the key of Herald's app)",
                app.key,
                data(&frame)["message"]
            ),
            other => format!("unexpected answer {other:?}"),
        };
        return vec![Check::fail("a WebSocket connects with PUSHER_APP_KEY", why)];
    };
    let mut checks = vec![Check::pass(format!(
        "a WebSocket connects with PUSHER_APP_KEY (socket {socket_id})"
    ))];

    // A public channel, and an event triggered through the API.
    let channel = format!("doctor-{:08x}", rand::random::<u32>());
    send(
        &mut socket,
        json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
    )
    .await;
    let subscribed = next_frame(&mut socket).await;
    let started = Instant::now();
    let body = json!({"name": "doctor-ping", "channel": channel, "data": "{}"}).to_string();
    let path = format!("/apps/{}/events", app.id);
    let query = signed_query(app, "POST", &path, body.as_bytes(), unix_secs());
    let triggered = http
        .post(format!("{base}{path}?{query}"))
        .insert_header(("Content-Type", "application/json"))
        .send_body(body)
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string());
    let arrived = subscribed
        .is_some_and(|f| f["event"] == "pusher_internal:subscription_succeeded")
        && triggered == Ok(200)
        && next_frame(&mut socket)
            .await
            .is_some_and(|f| f["event"] == "doctor-ping");
    checks.push(Check::new(
        arrived,
        format!(
            "an event triggered through the API arrives ({} ms)",
            started.elapsed().as_millis()
        ),
        match triggered {
            Ok(200) => "the event did not arrive within 5 s".to_owned(),
            Ok(status) => format!("the trigger was answered {status}"),
            Err(e) => format!("the trigger failed: {e}"),
        },
    ));

    // A private channel, signed as the project's auth endpoint would.
    let private = format!("private-{channel}");
    let signature = auth::make_auth(
        &app.key,
        &app.secret,
        &auth::channel_string_to_sign(&socket_id, &private, None),
    );
    send(
        &mut socket,
        json!({"event": "pusher:subscribe", "data": {"channel": private, "auth": signature}}),
    )
    .await;
    let answer = next_frame(&mut socket).await;
    checks.push(Check::new(
        answer
            .as_ref()
            .is_some_and(|f| f["event"] == "pusher_internal:subscription_succeeded"),
        "a private channel signed with PUSHER_APP_SECRET is accepted".to_owned(),
        format!(
            "Herald refused it ({}): PUSHER_APP_SECRET differs from Herald's app",
            answer
                .as_ref()
                .map_or(Value::Null, |f| data(f)["error"].clone())
        ),
    ));
    let _ = socket.send(ws::Message::Close(None)).await;
    checks
}

async fn fallback(http: &awc::Client, base: &str, app: &AppConfig) -> Check {
    let session = format!("{:08x}", rand::random::<u32>());
    let url = format!("{base}/pusher/app/{}/123/{session}/xhr", app.key);
    let answer = match http.post(url).send().await {
        Ok(mut response) => {
            let body = response.body().await.unwrap_or_default();
            (
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
        Err(e) => (0, e.to_string()),
    };
    Check::new(
        answer.0 == 200 && answer.1.starts_with('o'),
        "the HTTP fallback (pusher-js xhr_streaming / xhr_polling) answers at /pusher".to_owned(),
        format!("answered {} {:?}", answer.0, answer.1),
    )
}

async fn polling(http: &awc::Client, base: &str, app: &AppConfig) -> Check {
    let path = format!("/apps/{}/poll/v1", app.id);
    let status = signed_get(http, base, app, &path, &[("channels", "doctor")]).await;
    Check::new(
        status == Ok(200),
        "the JSON polling endpoint answers".to_owned(),
        match status {
            Ok(404) => "answered 404: history_size = 0 turns the endpoint off".to_owned(),
            Ok(other) => format!("answered {other}"),
            Err(e) => e,
        },
    )
}

fn data(frame: &Value) -> Value {
    match &frame["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    let _ = socket
        .send(ws::Message::Text(frame.to_string().into()))
        .await;
}

/// The next text frame, or `None` when none came in time.
async fn next_frame(socket: &mut Socket) -> Option<Value> {
    let deadline = Instant::now() + STEP;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, socket.next()).await.ok()?? {
            Ok(Frame::Text(bytes)) => return serde_json::from_slice(&bytes).ok(),
            Ok(Frame::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
