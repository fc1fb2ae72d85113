//! One webhook request: which queued events it carries (batching limits),
//! its exact body and signature, and how long to wait before retrying it.

use std::time::Duration;

use bytes::Bytes;

use crate::auth;
use crate::protocol::webhook::Event;

/// Most events in one batched request.
pub const MAX_EVENTS: usize = 50;
/// Most body bytes in one batched request (a single larger event still
/// goes, alone).
pub const MAX_BYTES: usize = 64 * 1024;

/// Room taken by `{"time_ms":…,"events":[]}` around the events.
const ENVELOPE_BYTES: usize = 40;

/// How many events from the front of `queue` go into the next request:
/// one without batching; with it, as many as fit the limits, in order.
pub fn batch_len<'a>(queue: impl IntoIterator<Item = &'a Event>, batching: bool) -> usize {
    let mut taken = 0;
    let mut bytes = ENVELOPE_BYTES;
    for event in queue {
        let size = event.json.len() + 1;
        if taken > 0 && (!batching || taken == MAX_EVENTS || bytes + size > MAX_BYTES) {
            break;
        }
        taken += 1;
        bytes += size;
    }
    taken
}

/// A request, built once and sent identically on every attempt.
#[derive(Debug, Clone)]
pub struct Request {
    pub body: Bytes,
    /// `X-Pusher-Signature`: lowercase hex HMAC-SHA256 of `body`.
    pub signature: String,
    /// The event names it carries (for the log line when it is dropped).
    pub names: Vec<&'static str>,
}

impl Request {
    pub fn new<'a>(
        secret: &str,
        time_ms: u64,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Request {
        let mut body = format!(r#"{{"time_ms":{time_ms},"events":["#);
        let mut names = Vec::new();
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&event.json);
            names.push(event.kind.name());
        }
        body.push_str("]}");
        Request {
            signature: auth::sign(secret, body.as_bytes()),
            body: Bytes::from(body),
            names,
        }
    }
}

/// Retry delays: 1 s doubling up to 60 s, each scaled by a random factor
/// in [0.5, 1) so that retries of many webhooks do not arrive together.
pub fn retry_delay(attempt: u32, jitter: f64) -> Duration {
    let base = 1u64 << attempt.min(6);
    let capped = base.min(60) as f64;
    Duration::from_secs_f64(capped * (0.5 + jitter.clamp(0.0, 1.0) / 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_signature_vectors() {
        let one = Request::new(
            "app-secret",
            1_700_000_000_000,
            &[Event::channel_occupied("my-channel")],
        );
        assert_eq!(
            &one.body[..],
            br#"{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"my-channel"}]}"#
        );
        assert_eq!(
            one.signature,
            "fec9fff324b82111ea03affc886e951bec5ee7a9e365bfd05cf254414c990a1a"
        );
        let two = Request::new(
            "app-secret",
            1_700_000_000_000,
            &[
                Event::member_added("presence-room.1", "42"),
                Event::client_event(
                    "presence-room.1",
                    "client-typing",
                    r#"{"typing":true}"#,
                    "123.456",
                    Some("42"),
                ),
            ],
        );
        assert_eq!(
            two.signature,
            "ed176d96f9550796777c014832b33feb7426a8ad43b3a9a26c13c50abbfffed4"
        );
        assert_eq!(two.names, ["member_added", "client_event"]);
    }

    #[test]
    fn batches_stop_at_50_events_or_64_kib() {
        let small: Vec<Event> = (0..120)
            .map(|i| Event::cache_miss(&format!("c{i}")))
            .collect();
        assert_eq!(batch_len(&small, false), 1);
        assert_eq!(batch_len(&small, true), 50);
        assert_eq!(batch_len(&small[100..], true), 20);
        assert_eq!(batch_len(&small[..0], true), 0);

        let data = "x".repeat(10_000);
        let big: Vec<Event> = (0..10)
            .map(|_| Event::client_event("private-a", "client-x", &data, "1.1", None))
            .collect();
        let n = batch_len(&big, true);
        assert_eq!(n, 6);
        let request = Request::new("s", 1, &big[..n]);
        assert!(request.body.len() <= MAX_BYTES, "{}", request.body.len());
        // One event over the limit still goes, alone.
        let huge = [Event::client_event(
            "private-a",
            "client-x",
            &"y".repeat(70_000),
            "1.1",
            None,
        )];
        assert_eq!(batch_len(&huge, true), 1);
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_a_minute() {
        let secs = |a, j| retry_delay(a, j).as_secs_f64();
        assert_eq!(secs(0, 1.0), 1.0);
        assert_eq!(secs(1, 1.0), 2.0);
        assert_eq!(secs(5, 1.0), 32.0);
        assert_eq!(secs(6, 1.0), 60.0);
        assert_eq!(secs(40, 1.0), 60.0);
        assert_eq!(secs(3, 0.0), 4.0);
        assert!((4.0..8.0).contains(&secs(3, 0.5)));
        // The whole schedule within five minutes has about a dozen attempts.
        let mut total = 0.0;
        let mut attempts = 0;
        while total < 300.0 {
            total += secs(attempts, 1.0);
            attempts += 1;
        }
        assert_eq!(attempts, 10);
    }
}
