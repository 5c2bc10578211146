//! Prometheus text exposition (format 0.0.4) of the components' metrics.
//!
//! Names follow `tickwire_<component>_<what>_<unit>`: counters end in `_total`, latency
//! percentiles are summaries with `quantile` labels (in seconds, the Prometheus base
//! unit), and every family has `# HELP` and `# TYPE` lines. Figures that were not
//! measured (metrics disabled) are left out rather than written as zeros.
//!
//! ```
//! # actix_rt::System::new().block_on(async {
//! let bus = tickwire::EventBus::start(tickwire::EventBusConfig::default()).unwrap();
//! let text = tickwire::metrics::prometheus::render(Some(&bus.get_performance_metrics().await), None, None);
//! assert!(text.contains("# TYPE tickwire_event_bus_events_processed_total counter"));
//! # bus.stop().await;
//! # });
//! ```

use std::fmt::Write;

use super::{EventBusMetrics, LatencySummary, MessageQueueMetrics, WebSocketMetrics};

/// The exposition of whichever metric sets are given.
pub fn render(
    event_bus: Option<&EventBusMetrics>,
    queue: Option<&MessageQueueMetrics>,
    websocket: Option<&WebSocketMetrics>,
) -> String {
    let mut out = Exposition::default();
    if let Some(m) = event_bus {
        out.component(&Figures {
            component: "event_bus",
            noun: "events",
            published: m.total_events_published,
            processed: m.total_events_processed,
            errors: m.total_errors,
            retries: m.retries,
            dead_letters: m.dead_letters,
            dropped: m.dropped,
            restarts: m.restarts,
            per_second: m.events_per_second,
            average_processing_time: m.average_processing_time,
            queue_size: m.queue_size,
            queue_help: "Deliveries waiting in mailboxes.",
            active_handlers: m.active_handlers,
            handlers: m.total_handlers,
            topics: None,
            uptime_seconds: m.uptime_seconds,
            publish_to_handled: m.publish_to_handled_us,
            run_time: m.handler_run_time_us,
        });
    }
    if let Some(m) = queue {
        out.component(&Figures {
            component: "message_queue",
            noun: "messages",
            published: m.total_messages_published,
            processed: m.total_messages_processed,
            errors: m.total_errors,
            retries: m.retries,
            dead_letters: m.dead_letters,
            dropped: m.dropped,
            restarts: m.restarts,
            per_second: m.messages_per_second,
            average_processing_time: m.average_processing_time,
            queue_size: m.total_queue_size,
            queue_help: "Deliveries waiting in the whole queue.",
            active_handlers: m.active_handlers,
            handlers: m.total_handlers,
            topics: Some(m.topics_count),
            uptime_seconds: m.uptime_seconds,
            publish_to_handled: m.publish_to_handled_us,
            run_time: m.handler_run_time_us,
        });
    }
    if let Some(m) = websocket {
        out.websocket(m);
    }
    out.text
}

/// One component's figures, under the names its exposition uses.
struct Figures {
    component: &'static str,
    /// `events` or `messages`, in the names of the per-item families.
    noun: &'static str,
    published: Option<u64>,
    processed: u64,
    errors: u64,
    retries: u64,
    dead_letters: u64,
    dropped: u64,
    restarts: u64,
    per_second: Option<f64>,
    average_processing_time: Option<f64>,
    queue_size: u64,
    queue_help: &'static str,
    active_handlers: Option<u64>,
    handlers: u64,
    topics: Option<u64>,
    uptime_seconds: f64,
    publish_to_handled: Option<LatencySummary>,
    run_time: Option<LatencySummary>,
}

/// The exposition of one component's plain counters and gauges, `(name, help, value)`
/// each, named `tickwire_<component>_<name>` (a counter's name ends in `_total`).
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) fn counters_and_gauges(
    component: &str,
    counters: &[(&str, &str, u64)],
    gauges: &[(&str, &str, f64)],
) -> String {
    let mut out = Exposition::default();
    for &(name, help, value) in counters {
        out.counter(component, name, help, value);
    }
    for &(name, help, value) in gauges {
        out.gauge(component, name, help, value);
    }
    out.text
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, component: &str, name: &str, help: &str, kind: &str) -> String {
        let full = format!("tickwire_{component}_{name}");
        let _ = writeln!(self.text, "# HELP {full} {help}");
        let _ = writeln!(self.text, "# TYPE {full} {kind}");
        full
    }

    fn counter(&mut self, component: &str, name: &str, help: &str, value: u64) {
        let full = self.family(component, name, help, "counter");
        let _ = writeln!(self.text, "{full} {value}");
    }

    fn opt_counter(&mut self, component: &str, name: &str, help: &str, value: Option<u64>) {
        if let Some(value) = value {
            self.counter(component, name, help, value);
        }
    }

    fn gauge(&mut self, component: &str, name: &str, help: &str, value: f64) {
        let full = self.family(component, name, help, "gauge");
        let _ = writeln!(self.text, "{full} {value}");
    }

    fn opt_gauge(&mut self, component: &str, name: &str, help: &str, value: Option<f64>) {
        if let Some(value) = value {
            self.gauge(component, name, help, value);
        }
    }

    fn component(&mut self, f: &Figures) {
        let (c, noun) = (f.component, f.noun);
        let accepted = format!(
            "{}{} accepted by publish.",
            noun[..1].to_uppercase(),
            &noun[1..]
        );
        self.opt_counter(
            c,
            &format!("{noun}_published_total"),
            &accepted,
            f.published,
        );
        self.counter(
            c,
            &format!("{noun}_processed_total"),
            "Deliveries whose handler succeeded.",
            f.processed,
        );
        self.counter(
            c,
            "errors_total",
            "Failed handler runs (errors, timeouts, panics).",
            f.errors,
        );
        self.counter(c, "retries_total", "Retries started.", f.retries);
        self.counter(
            c,
            "dead_letters_total",
            "Items whose every attempt failed.",
            f.dead_letters,
        );
        self.counter(
            c,
            "dropped_total",
            "Accepted deliveries discarded unhandled (overflow policies, unsubscribe, stop timeout).",
            f.dropped,
        );
        self.counter(
            c,
            "restarts_total",
            "Handler actor restarts after a panic.",
            f.restarts,
        );
        self.opt_gauge(
            c,
            &format!("{noun}_per_second"),
            "Deliveries handled per second over the last 10 s.",
            f.per_second,
        );
        self.opt_gauge(
            c,
            "processing_time_average_seconds",
            "Mean handler run time.",
            f.average_processing_time,
        );
        self.gauge(c, "queue_size", f.queue_help, f.queue_size as f64);
        self.opt_gauge(
            c,
            "active_handlers",
            "Handler runs in progress.",
            f.active_handlers.map(|v| v as f64),
        );
        self.gauge(
            c,
            "handlers",
            "Subscriptions (a consumer group counts once).",
            f.handlers as f64,
        );
        if let Some(topics) = f.topics {
            self.gauge(
                c,
                "topics",
                "Topics with subscribers or waiting messages.",
                topics as f64,
            );
        }
        self.gauge(
            c,
            "uptime_seconds",
            "Seconds since start.",
            f.uptime_seconds,
        );
        if let Some(s) = f.publish_to_handled {
            self.summary(
                c,
                "publish_to_handled_seconds",
                "Publish to the end of a successful handler run, last 10 s.",
                s,
            );
        }
        if let Some(s) = f.run_time {
            self.summary(c, "handler_run_seconds", "One handler run, last 10 s.", s);
        }
    }

    fn websocket(&mut self, m: &WebSocketMetrics) {
        let c = "websocket";
        let counters = [
            (
                "connections_total",
                "Sessions ever opened.",
                m.total_connections,
            ),
            (
                "errors_total",
                "Error replies and sessions closed for bad input.",
                m.total_errors,
            ),
            (
                "rejected_connections_total",
                "Connections refused with 503.",
                m.rejected_connections,
            ),
            (
                "unauthorized_total",
                "Connections refused with 401.",
                m.unauthorized,
            ),
            (
                "slow_consumers_total",
                "Sessions closed with 4008 (slow consumer).",
                m.slow_consumers,
            ),
            (
                "heartbeat_timeouts_total",
                "Sessions closed with 4000 (heartbeat timeout).",
                m.heartbeat_timeouts,
            ),
            (
                "oversize_messages_total",
                "Sessions closed with 1009 (message too big).",
                m.oversize_messages,
            ),
            (
                "connections_reset_total",
                "Sessions reset because they did not close in time.",
                m.connections_reset,
            ),
        ];
        for (name, help, value) in counters {
            self.counter(c, name, help, value);
        }
        self.opt_counter(
            c,
            "messages_sent_total",
            "Text frames sent to clients.",
            m.total_messages_sent,
        );
        self.opt_counter(
            c,
            "messages_received_total",
            "Messages received from clients.",
            m.total_messages_received,
        );
        self.opt_counter(
            c,
            "wire_bytes_total",
            "Bytes of broadcast frames queued to clients, as sent.",
            m.wire_bytes_sent,
        );
        self.opt_counter(
            c,
            "uncompressed_bytes_total",
            "Bytes of the same frames had none been compressed.",
            m.uncompressed_bytes_sent,
        );
        self.gauge(
            c,
            "active_connections",
            "Sessions open now.",
            m.active_connections as f64,
        );
        self.gauge(
            c,
            "compressed_sessions",
            "Sessions open now with permessage-deflate.",
            m.compressed_sessions as f64,
        );
        self.gauge(
            c,
            "history_topics",
            "Topics with messages kept for recovery and snapshots.",
            m.history_topics as f64,
        );
        self.gauge(
            c,
            "history_messages",
            "Messages kept for recovery and snapshots.",
            m.history_messages as f64,
        );
        self.gauge(
            c,
            "history_bytes",
            "Bytes of the messages kept for recovery and snapshots.",
            m.history_bytes as f64,
        );
        self.counter(
            c,
            "recoveries_total",
            "Subscribes whose recover was answered recovered true.",
            m.recoveries,
        );
        self.counter(
            c,
            "failed_recoveries_total",
            "Subscribes whose recover was answered recovered false.",
            m.failed_recoveries,
        );
        self.counter(
            c,
            "replayed_messages_total",
            "Messages sent by recoveries.",
            m.replayed_messages,
        );
        self.counter(
            c,
            "snapshot_messages_total",
            "Messages sent as snapshots.",
            m.snapshot_messages,
        );
        self.opt_gauge(
            c,
            "messages_per_second",
            "Frames sent per second over the last 10 s.",
            m.messages_per_second,
        );
        self.gauge(
            c,
            "topics",
            "Distinct subscribed topics and patterns.",
            m.topics_count as f64,
        );
        self.gauge(
            c,
            "uptime_seconds",
            "Seconds since start.",
            m.uptime_seconds,
        );
    }

    fn summary(&mut self, component: &str, name: &str, help: &str, s: LatencySummary) {
        let full = self.family(component, name, help, "summary");
        for (q, micros) in [
            ("0.5", s.p50),
            ("0.9", s.p90),
            ("0.99", s.p99),
            ("0.999", s.p999),
            ("1", s.max),
        ] {
            let _ = writeln!(
                self.text,
                "{full}{{quantile=\"{q}\"}} {}",
                micros as f64 / 1e6
            );
        }
        // The sum is not tracked by the histograms: the mean is not exposed this way.
        let _ = writeln!(self.text, "{full}_count {}", s.count);
    }
}
