//! One webhook URL: which events it takes, and sending a request to it
//! until it answers 2xx or the retry time is up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use tracing::{debug, warn};

use super::request::{retry_delay, Request};
use crate::config::{AppConfig, WebhookConfig};
use crate::hub::{AppEvent, Observers};
use crate::metrics::METRICS;
use crate::protocol::webhook::{Event, Kind, KindSet};

/// How much of an answer's body is read (and thrown away) so that the
/// connection can be reused.
const ANSWER_LIMIT: usize = 64 * 1024;

/// A configured webhook URL with its filters.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    pub kinds: KindSet,
    prefix: Option<String>,
    suffix: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The cluster's consumer group for this URL.
    pub group: String,
    /// The app's observers (the console shows webhooks sent and dropped).
    observers: Arc<Observers>,
}

impl Target {
    /// A URL of `app`. Without `event_types` it takes every event, but
    /// `subscription_count` only when the app counts subscriptions
    /// (`subscription_count = true`), as on Pusher; listing it sends it
    /// anyway.
    pub fn new(config: &WebhookConfig, app: &AppConfig, observers: Arc<Observers>) -> Target {
        let mut kinds = KindSet::named(&config.event_types);
        if config.event_types.is_empty() && !app.subscription_count {
            kinds = kinds.without(Kind::SubscriptionCount);
        }
        Target {
            url: config.url.clone(),
            kinds,
            prefix: config.channel_prefix.clone(),
            suffix: config.channel_suffix.clone(),
            // Validated at start-up; anything invalid is skipped.
            headers: config
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((
                        HeaderName::try_from(name.as_str()).ok()?,
                        HeaderValue::try_from(value.as_str()).ok()?,
                    ))
                })
                .collect(),
            group: config.group_name(),
            observers,
        }
    }

    /// Whether this URL takes `event` (event type and channel filters).
    pub fn accepts(&self, event: &Event) -> bool {
        self.kinds.contains(event.kind)
            && self
                .prefix
                .as_deref()
                .is_none_or(|p| event.channel.starts_with(p))
            && self
                .suffix
                .as_deref()
                .is_none_or(|s| event.channel.ends_with(s))
    }

    /// The URL without its query string, for logs (a query may carry a
    /// token).
    pub(super) fn shown(&self) -> &str {
        self.url.split(['?', '#']).next().unwrap_or_default()
    }

    /// Sends `request` until a 2xx answer, retrying failures with backoff
    /// for up to the app's `webhook_retry_for`; the body and signature are
    /// the same on every attempt. Returns whether it was delivered.
    pub async fn deliver(&self, http: &awc::Client, app: &AppConfig, request: &Request) -> bool {
        let started = Instant::now();
        let give_up = Duration::from_secs(app.webhook_retry_for);
        let mut attempt = 0;
        loop {
            match self.attempt(http, app, request).await {
                Ok(()) => {
                    METRICS.webhooks_sent.with_label_values(&[&app.id]).inc();
                    self.report(request, "delivered", attempt + 1);
                    return true;
                }
                Err(why) => {
                    let wait = retry_delay(attempt, rand::random::<f64>());
                    if started.elapsed() + wait > give_up {
                        METRICS
                            .webhooks_dropped
                            .with_label_values(&[app.id.as_str(), "retries"])
                            .inc_by(request.names.len() as u64);
                        self.report(request, "dropped", attempt + 1);
                        warn!(
                            app = %app.id,
                            url = self.shown(),
                            events = %request.names.join(","),
                            "webhook dropped after {} attempts: {why}",
                            attempt + 1
                        );
                        return false;
                    }
                    debug!(app = %app.id, url = self.shown(), "webhook attempt failed ({why}); retrying in {wait:?}");
                    METRICS.webhook_retries.with_label_values(&[&app.id]).inc();
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    fn report(&self, request: &Request, outcome: &str, attempts: u32) {
        self.observers.emit(AppEvent::WebhookOutcome {
            url: self.shown(),
            events: &request.names,
            outcome,
            attempts,
        });
    }

    async fn attempt(
        &self,
        http: &awc::Client,
        app: &AppConfig,
        request: &Request,
    ) -> Result<(), String> {
        let timeout = Duration::from_secs(app.webhook_timeout);
        let mut builder = http
            .post(&self.url)
            .timeout(timeout)
            // Exactly this: pusher-http-node only parses `application/json`.
            .insert_header((CONTENT_TYPE, "application/json"))
            .insert_header(("X-Pusher-Key", app.key.as_str()))
            .insert_header(("X-Pusher-Signature", request.signature.as_str()));
        for (name, value) in &self.headers {
            builder = builder.insert_header((name.clone(), value.clone()));
        }
        let mut answer = builder
            .send_body(request.body.clone())
            .await
            .map_err(|e| e.to_string())?;
        let _ = tokio::time::timeout(timeout, answer.body().limit(ANSWER_LIMIT)).await;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}

/// The HTTP client of the delivery thread.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .add_default_header((
            USER_AGENT,
            concat!("herald/", env!("CARGO_PKG_VERSION"), " (webhooks)"),
        ))
        .disable_redirects()
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_type_prefix_and_suffix() {
        let mut config = WebhookConfig::all_events("http://x/hook?token=secret");
        config.event_types = vec!["member_added".into()];
        config.channel_prefix = Some("presence-".into());
        config.channel_suffix = Some(".1".into());
        let app = AppConfig::new("1", "k", "s");
        let target = Target::new(&config, &app, Arc::default());
        assert!(target.accepts(&Event::member_added("presence-room.1", "u")));
        assert!(!target.accepts(&Event::member_added("presence-room.2", "u")));
        assert!(!target.accepts(&Event::member_removed("presence-room.1", "u")));
        assert!(!target.accepts(&Event::channel_occupied("presence-room.1")));
        assert_eq!(target.shown(), "http://x/hook");
        assert!(target.kinds.contains(Kind::MemberAdded));
        assert_ne!(
            target.group,
            Target::new(
                &WebhookConfig::all_events("http://x/hook?token=secret"),
                &app,
                Arc::default(),
            )
            .group
        );
        let all = Target::new(
            &WebhookConfig::all_events("http://x/"),
            &app,
            Arc::default(),
        );
        assert!(!all.kinds.contains(Kind::SubscriptionCount));
        assert!(all.kinds.contains(Kind::ClientEvent));
    }
}
