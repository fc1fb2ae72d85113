//! Prometheus metrics, served as text at `/metrics` on their own listener
//! (`[metrics] port`, default 9601).
//!
//! One registry for the process. What the hot paths touch is resolved per
//! app once ([`AppMetrics`], held by the app's hub), so counting a frame is
//! an atomic add, never a label lookup. Gauges that describe the hub
//! (channels, presence members, cluster health) are read when scraped.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric Herald exports.
pub struct Metrics {
    registry: Registry,
    pub connections: IntGaugeVec,
    pub connections_opened: IntCounterVec,
    pub connections_closed: IntCounterVec,
    pub messages_received: IntCounterVec,
    pub bytes_received: IntCounterVec,
    pub messages_sent: IntCounterVec,
    pub bytes_sent: IntCounterVec,
    pub api_requests: IntCounterVec,
    pub api_latency: HistogramVec,
    pub events_published: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub client_events: IntCounterVec,
    pub channels: IntGaugeVec,
    pub presence_members: IntGaugeVec,
    pub webhooks_sent: IntCounterVec,
    pub webhook_retries: IntCounterVec,
    pub webhooks_dropped: IntCounterVec,
    pub refused: IntCounterVec,
    /// Queries made of the app store, by what they read or write.
    pub app_store_queries: IntCounterVec,
    /// Text bytes sent compressed (permessage-deflate), before and after.
    pub deflate_in: IntCounter,
    pub deflate_out: IntCounter,
    pub webhooks_pending: IntGauge,
    redis_up: IntGauge,
    relay_topics: IntGauge,
    redis_master: IntGaugeVec,
    /// Times a Sentinel failover moved this node to another Redis master.
    pub redis_failovers: IntCounter,
    redis_up_registered: std::sync::Once,
    /// Resolved once: the relay counts every message, by direction and
    /// route (a channel's topic, or the shared control channel).
    pub relay_in_channel: RelayRoute,
    pub relay_in_control: RelayRoute,
    pub relay_out_channel: RelayRoute,
    pub relay_out_control: RelayRoute,
    pub relay_dropped: IntCounter,
    pub relay_latency: Histogram,
}

/// The relay messages and bytes of one direction and route.
pub struct RelayRoute {
    pub messages: IntCounter,
    pub bytes: IntCounter,
}

/// `metric`, registered. The names and labels are constants of this
/// file, so neither step can fail at run time.
fn registered<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "herald_api_request_duration_seconds",
                "HTTP API request latency, by endpoint",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["endpoint"],
        )
        .expect("valid metric");
        let latency = registered(&r, latency);
        let relay_latency = Histogram::with_opts(
            HistogramOpts::new(
                "herald_relay_latency_seconds",
                "From publication on one node to its arrival on another",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        )
        .expect("valid metric");
        let relay_latency = registered(&r, relay_latency);
        let single = |name: &str, help: &str| {
            registered(&r, IntGauge::new(name, help).expect("valid metric"))
        };
        let webhooks_pending = single(
            "herald_webhooks_pending",
            "Webhook events queued or being sent by this node (single node)",
        );
        // Registered on the first scrape of a cluster node only: a single
        // node has no Redis to be down.
        let redis_up = IntGauge::new(
            "herald_redis_up",
            "1 while this cluster node's state is in Redis and its relay hears (cluster mode)",
        )
        .expect("valid metric");
        let relay_topics = IntGauge::new(
            "herald_relay_topics",
            "Channel topics this cluster node listens to: the channels it serves, and those left within interest_linger_ms (cluster mode)",
        )
        .expect("valid metric");
        let redis_master = IntGaugeVec::new(
            Opts::new(
                "herald_redis_master",
                "1 for the address of the Redis master this cluster node uses (one Redis, or the master the Sentinels named; cluster mode)",
            ),
            &["address"],
        )
        .expect("valid metric");
        let redis_failovers = IntCounter::new(
            "herald_redis_failovers_total",
            "Sentinel failovers this cluster node followed to a new Redis master (cluster mode)",
        )
        .expect("valid metric");
        let relay_dropped = registered(
            &r,
            IntCounter::new(
                "herald_relay_dropped_total",
                "Relay messages dropped because this node was too far behind",
            )
            .expect("valid metric"),
        );
        let relay_messages = counter(
            &r,
            "herald_relay_messages_total",
            "Cluster relay messages, in (received) and out (published), on channel topics or the control channel",
            &["direction", "route"],
        );
        let relay_bytes = counter(
            &r,
            "herald_relay_bytes_total",
            "Bytes of cluster relay messages, in and out, by route",
            &["direction", "route"],
        );
        let route = |direction: &str, route: &str| RelayRoute {
            messages: relay_messages.with_label_values(&[direction, route]),
            bytes: relay_bytes.with_label_values(&[direction, route]),
        };
        Metrics {
            connections: gauge(
                &r,
                "herald_connections",
                "Connected sockets",
                &["app", "transport"],
            ),
            connections_opened: counter(
                &r,
                "herald_connections_opened_total",
                "Connections admitted",
                &["app", "transport"],
            ),
            connections_closed: counter(
                &r,
                "herald_connections_closed_total",
                "Connections closed, by close code (client: the client closed or went away)",
                &["app", "transport", "code"],
            ),
            messages_received: counter(
                &r,
                "herald_messages_received_total",
                "Frames received from clients",
                &["app"],
            ),
            bytes_received: counter(
                &r,
                "herald_bytes_received_total",
                "Bytes of frames received from clients",
                &["app"],
            ),
            messages_sent: counter(
                &r,
                "herald_messages_sent_total",
                "Frames sent to clients",
                &["app"],
            ),
            bytes_sent: counter(
                &r,
                "herald_bytes_sent_total",
                "Bytes of frames sent to clients",
                &["app"],
            ),
            api_requests: counter(
                &r,
                "herald_api_requests_total",
                "HTTP API requests, by endpoint and status",
                &["app", "endpoint", "status"],
            ),
            api_latency: latency,
            events_published: counter(
                &r,
                "herald_events_published_total",
                "Events published through the HTTP API, per channel",
                &["app"],
            ),
            deliveries: counter(
                &r,
                "herald_deliveries_total",
                "Frames of published events queued for this node's subscribers",
                &["app"],
            ),
            client_events: counter(
                &r,
                "herald_client_events_total",
                "Client events relayed",
                &["app"],
            ),
            channels: gauge(
                &r,
                "herald_channels",
                "Occupied channels on this node",
                &["app"],
            ),
            presence_members: gauge(
                &r,
                "herald_presence_members",
                "Presence members on this node, summed over channels",
                &["app"],
            ),
            webhooks_sent: counter(
                &r,
                "herald_webhooks_sent_total",
                "Webhook requests answered 2xx",
                &["app"],
            ),
            webhook_retries: counter(
                &r,
                "herald_webhook_retries_total",
                "Webhook attempts that failed and were retried",
                &["app"],
            ),
            webhooks_dropped: counter(
                &r,
                "herald_webhooks_dropped_total",
                "Webhook events dropped (queue full, or retries ran out)",
                &["app", "reason"],
            ),
            refused: counter(
                &r,
                "herald_refused_total",
                "Connections and API requests refused by admission: origin, authorization, caps, rates, memory",
                &["reason"],
            ),
            app_store_queries: counter(
                &r,
                "herald_app_store_queries_total",
                "Queries this node made of the app store: all (a full read), key and id (one app not in memory), write (the admin API)",
                &["query"],
            ),
            deflate_in: registered(
                &r,
                IntCounter::new(
                    "herald_deflate_input_bytes_total",
                    "WebSocket text bytes sent compressed (permessage-deflate), before compression, per delivery",
                )
                .expect("valid metric"),
            ),
            deflate_out: registered(
                &r,
                IntCounter::new(
                    "herald_deflate_output_bytes_total",
                    "What those bytes became on the wire, compressed, per delivery",
                )
                .expect("valid metric"),
            ),
            webhooks_pending,
            redis_up,
            relay_topics,
            redis_master,
            redis_failovers,
            redis_up_registered: std::sync::Once::new(),
            relay_in_channel: route("in", "channel"),
            relay_in_control: route("in", "control"),
            relay_out_channel: route("out", "channel"),
            relay_out_control: route("out", "control"),
            relay_dropped,
            relay_latency,
            registry: r,
        }
    }

    /// The text exposition, with the gauges read by the caller now: per
    /// app, its occupied channels and presence members on this node; and
    /// in a cluster whether Redis is reachable and how many relay topics
    /// the node listens to. (The registry knows no hub: the scrape
    /// handler reads it.)
    pub fn render<'a>(
        &self,
        apps: impl IntoIterator<Item = AppGauges<'a>>,
        cluster: Option<ClusterGauges>,
    ) -> String {
        // Apps removed by a reload leave no stale values behind.
        self.channels.reset();
        self.presence_members.reset();
        for app in apps {
            self.channels
                .with_label_values(&[app.id])
                .set(app.channels as i64);
            self.presence_members
                .with_label_values(&[app.id])
                .set(app.presence_members as i64);
        }
        if let Some(cluster) = cluster {
            self.redis_up_registered.call_once(|| {
                let _ = self.registry.register(Box::new(self.redis_up.clone()));
                let _ = self.registry.register(Box::new(self.relay_topics.clone()));
                let _ = self.registry.register(Box::new(self.redis_master.clone()));
                let _ = self
                    .registry
                    .register(Box::new(self.redis_failovers.clone()));
            });
            self.redis_up.set(i64::from(cluster.redis_up));
            self.redis_master.reset();
            if let Some(master) = &cluster.redis_master {
                self.redis_master.with_label_values(&[master]).set(1);
            }
            self.relay_topics.set(cluster.relay_topics as i64);
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// One app's gauges at scrape time.
pub struct AppGauges<'a> {
    pub id: &'a str,
    pub channels: usize,
    pub presence_members: usize,
}

/// A cluster node's gauges at scrape time.
pub struct ClusterGauges {
    pub redis_up: bool,
    pub relay_topics: usize,
    /// The Redis master in use (none on a Redis Cluster).
    pub redis_master: Option<String>,
}

/// Counts a refused connection or request (`herald_refused_total`).
pub fn refused(reason: &str) {
    METRICS.refused.with_label_values(&[reason]).inc();
}

/// Counts the accept loop's stalls at the open-file limit, which
/// actix-server reports only as a log line ("Error accepting connection:
/// Too many open files") before it stops accepting for half a second:
/// each is `herald_refused_total{reason="accept_file_limit"}`. (Herald's
/// own cap, `file_limit`, refuses before the kernel does; this is what is
/// left when other descriptors ran out first.)
pub struct AcceptStalls;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AcceptStalls {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        // (Events bridged from the `log` crate keep their module as target.)
        if !event.metadata().target().starts_with("actix_server") {
            return;
        }
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    let text = format!("{value:?}");
                    self.0 = text.contains("Too many open files")
                        || text.contains("os error 24")
                        || text.contains("os error 23");
                }
            }
        }
        let mut message = Message(false);
        event.record(&mut message);
        if message.0 {
            refused("accept_file_limit");
        }
    }
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// How a connection reaches Herald.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    /// pusher-js's xhr_streaming / xhr_polling.
    Http,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "ws",
            Transport::Http => "http",
        }
    }
}

/// One app's hot-path counters, resolved once.
#[derive(Debug)]
pub struct AppMetrics {
    app: String,
    pub messages_received: IntCounter,
    pub bytes_received: IntCounter,
    pub messages_sent: IntCounter,
    pub bytes_sent: IntCounter,
    pub events_published: IntCounter,
    pub deliveries: IntCounter,
    pub client_events: IntCounter,
}

impl AppMetrics {
    pub fn new(app: &str) -> AppMetrics {
        let m = &*METRICS;
        let one = |vec: &IntCounterVec| vec.with_label_values(&[app]);
        AppMetrics {
            app: app.to_owned(),
            messages_received: one(&m.messages_received),
            bytes_received: one(&m.bytes_received),
            messages_sent: one(&m.messages_sent),
            bytes_sent: one(&m.bytes_sent),
            events_published: one(&m.events_published),
            deliveries: one(&m.deliveries),
            client_events: one(&m.client_events),
        }
    }

    pub fn received(&self, bytes: usize) {
        self.messages_received.inc();
        self.bytes_received.inc_by(bytes as u64);
    }

    /// Frames written to a client.
    pub fn sent<'a>(&self, frames: impl IntoIterator<Item = &'a bytestring::ByteString>) {
        let (mut n, mut bytes) = (0, 0);
        for frame in frames {
            n += 1;
            bytes += frame.len() as u64;
        }
        self.messages_sent.inc_by(n);
        self.bytes_sent.inc_by(bytes);
    }

    pub fn opened(&self, transport: Transport) {
        let labels = [self.app.as_str(), transport.label()];
        METRICS.connections_opened.with_label_values(&labels).inc();
        METRICS.connections.with_label_values(&labels).inc();
    }

    /// A connection ended, with the close code Herald sent (`None`: the
    /// client closed or went away).
    pub fn closed(&self, transport: Transport, code: Option<u16>) {
        let code = code.map_or_else(|| "client".to_owned(), |c| c.to_string());
        METRICS
            .connections_closed
            .with_label_values(&[self.app.as_str(), transport.label(), &code])
            .inc();
        METRICS
            .connections
            .with_label_values(&[self.app.as_str(), transport.label()])
            .dec();
    }
}

/// Records one HTTP API request.
pub fn api_request(app: &str, endpoint: &str, status: u16, took: Duration) {
    METRICS
        .api_requests
        .with_label_values(&[app, endpoint, &status.to_string()])
        .inc();
    METRICS
        .api_latency
        .with_label_values(&[endpoint])
        .observe(took.as_secs_f64());
}
