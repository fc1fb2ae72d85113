//! A webhook receiver for the tests: a small HTTP/1.1 server on a free
//! port that records every request and answers as told (a status per
//! request, or never).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{KEY, SECRET, TIMEOUT};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Hook {
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
    /// The `events` array.
    pub events: Vec<Value>,
    pub time_ms: u64,
    /// The status it was answered with (`None`: never answered).
    pub answered: Option<u16>,
    /// When it arrived.
    pub received: std::time::Instant,
}

impl Hook {
    /// The event names, in order.
    pub fn names(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

struct Script {
    next: VecDeque<Answer>,
    otherwise: Answer,
}

pub struct Receiver {
    pub port: u16,
    /// The app whose key and signature the requests must carry.
    key: String,
    secret: String,
    requests: mpsc::UnboundedReceiver<Hook>,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    /// Starts a receiver for the default app that answers 200.
    pub async fn start() -> Receiver {
        Receiver::for_app(KEY, SECRET).await
    }

    /// Starts a receiver for the app with `key` and `secret`.
    pub async fn for_app(key: &str, secret: &str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (sender, requests) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(Script {
            next: VecDeque::new(),
            otherwise: Answer::Status(200),
        }));
        let shared = script.clone();
        actix_rt::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                actix_rt::spawn(serve(stream, sender.clone(), shared.clone()));
            }
        });
        Receiver {
            port,
            key: key.to_owned(),
            secret: secret.to_owned(),
            requests,
            script,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    /// Answers the next requests with these, then with `otherwise`.
    pub fn answer(&self, next: &[Answer], otherwise: Answer) {
        let mut script = self.script.lock().expect("script");
        script.next = next.iter().copied().collect();
        script.otherwise = otherwise;
    }

    /// The next request, checked: exact `Content-Type`, the app key, and a
    /// signature that matches the body.
    pub async fn next(&mut self) -> Hook {
        self.next_within(TIMEOUT).await
    }

    pub async fn next_within(&mut self, limit: Duration) -> Hook {
        let hook = tokio::time::timeout(limit, self.requests.recv())
            .await
            .expect("timed out waiting for a webhook")
            .expect("receiver stopped");
        assert_eq!(
            hook.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        assert_eq!(hook.headers.get("x-pusher-key"), Some(&self.key));
        assert_eq!(
            hook.headers.get("x-pusher-signature"),
            Some(&herald::auth::sign(&self.secret, hook.body.as_bytes())),
            "signature of {}",
            hook.body
        );
        hook
    }

    /// Every event of the requests answered 2xx until (and including) the
    /// first event that `last` matches; the requests themselves are
    /// returned too.
    pub async fn delivered_until(
        &mut self,
        last: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, Vec<Hook>) {
        let mut events = Vec::new();
        let mut hooks = Vec::new();
        loop {
            let hook = self.next().await;
            hooks.push(hook.clone());
            if !hook.answered.is_some_and(|s| (200..300).contains(&s)) {
                continue;
            }
            for event in hook.events {
                let done = last(&event);
                events.push(event);
                if done {
                    return (events, hooks);
                }
            }
        }
    }
}

async fn serve(stream: TcpStream, sender: mpsc::UnboundedSender<Hook>, script: Arc<Mutex<Script>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let answer = {
            let mut script = script.lock().expect("script");
            let otherwise = script.otherwise;
            script.next.pop_front().unwrap_or(otherwise)
        };
        let answered = match answer {
            Answer::Status(status) => Some(status),
            Answer::Hang => None,
        };
        let _ = sender.send(Hook {
            headers,
            events: parsed["events"].as_array().cloned().unwrap_or_default(),
            time_ms: parsed["time_ms"].as_u64().unwrap_or(0),
            body,
            answered,
            received: std::time::Instant::now(),
        });
        match answer {
            Answer::Status(status) => {
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
                );
                if write.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
            Answer::Hang => {
                // Keep the connection open, unanswered, until the client goes.
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest).await;
                return;
            }
        }
    }
}

/// How often each `name channel user` of `events` was delivered.
pub fn tally(events: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in events {
        let key = format!(
            "{} {} {}",
            e["name"].as_str().unwrap_or_default(),
            e["channel"].as_str().unwrap_or_default(),
            e["user_id"].as_str().unwrap_or_default()
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}
