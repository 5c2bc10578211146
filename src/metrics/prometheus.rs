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
//! let text = tickwire::metrics::prometheus::render(Some(&bus.get_performance_metrics().await), None);
//! assert!(text.contains("# TYPE tickwire_event_bus_events_processed_total counter"));
//! # bus.stop().await;
//! # });
//! ```

use std::fmt::Write;

use super::{EventBusMetrics, LatencySummary, MessageQueueMetrics};

/// The exposition of whichever metric sets are given.
pub fn render(event_bus: Option<&EventBusMetrics>, queue: Option<&MessageQueueMetrics>) -> String {
    let mut out = Exposition::default();
    if let Some(m) = event_bus {
        let c = "event_bus";
        out.opt_counter(
            c,
            "events_published_total",
            "Events accepted by publish.",
            m.total_events_published,
        );
        out.counter(
            c,
            "events_processed_total",
            "Deliveries whose handler succeeded.",
            m.total_events_processed,
        );
        out.delivery_counters(
            c,
            m.total_errors,
            m.retries,
            m.dead_letters,
            m.dropped,
            m.restarts,
        );
        out.opt_gauge(
            c,
            "events_per_second",
            "Deliveries handled per second over the last 10 s.",
            m.events_per_second,
        );
        out.opt_gauge(
            c,
            "processing_time_average_seconds",
            "Mean handler run time.",
            m.average_processing_time,
        );
        out.gauge(
            c,
            "queue_size",
            "Deliveries waiting in mailboxes.",
            m.queue_size as f64,
        );
        out.opt_gauge(
            c,
            "active_handlers",
            "Handler runs in progress.",
            m.active_handlers.map(|v| v as f64),
        );
        out.gauge(c, "handlers", "Subscriptions.", m.total_handlers as f64);
        out.gauge(
            c,
            "uptime_seconds",
            "Seconds since start.",
            m.uptime_seconds,
        );
        out.latencies(c, m.publish_to_handled_us, m.handler_run_time_us);
    }
    if let Some(m) = queue {
        let c = "message_queue";
        out.opt_counter(
            c,
            "messages_published_total",
            "Messages accepted by publish.",
            m.total_messages_published,
        );
        out.counter(
            c,
            "messages_processed_total",
            "Deliveries whose handler succeeded.",
            m.total_messages_processed,
        );
        out.delivery_counters(
            c,
            m.total_errors,
            m.retries,
            m.dead_letters,
            m.dropped,
            m.restarts,
        );
        out.opt_gauge(
            c,
            "messages_per_second",
            "Deliveries handled per second over the last 10 s.",
            m.messages_per_second,
        );
        out.opt_gauge(
            c,
            "processing_time_average_seconds",
            "Mean handler run time.",
            m.average_processing_time,
        );
        out.gauge(
            c,
            "queue_size",
            "Deliveries waiting in the whole queue.",
            m.total_queue_size as f64,
        );
        out.opt_gauge(
            c,
            "active_handlers",
            "Handler runs in progress.",
            m.active_handlers.map(|v| v as f64),
        );
        out.gauge(
            c,
            "handlers",
            "Subscriptions (a consumer group counts once).",
            m.total_handlers as f64,
        );
        out.gauge(
            c,
            "topics",
            "Topics with subscribers or waiting messages.",
            m.topics_count as f64,
        );
        out.gauge(
            c,
            "uptime_seconds",
            "Seconds since start.",
            m.uptime_seconds,
        );
        out.latencies(c, m.publish_to_handled_us, m.handler_run_time_us);
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

    fn delivery_counters(
        &mut self,
        c: &str,
        errors: u64,
        retries: u64,
        dead: u64,
        dropped: u64,
        restarts: u64,
    ) {
        self.counter(
            c,
            "errors_total",
            "Failed handler runs (errors, timeouts, panics).",
            errors,
        );
        self.counter(c, "retries_total", "Retries started.", retries);
        self.counter(
            c,
            "dead_letters_total",
            "Items whose every attempt failed.",
            dead,
        );
        self.counter(
            c,
            "dropped_total",
            "Items dropped by overflow policies.",
            dropped,
        );
        self.counter(
            c,
            "restarts_total",
            "Handler actor restarts after a panic.",
            restarts,
        );
    }

    fn latencies(
        &mut self,
        c: &str,
        publish_to_handled: Option<LatencySummary>,
        run_time: Option<LatencySummary>,
    ) {
        if let Some(s) = publish_to_handled {
            self.summary(
                c,
                "publish_to_handled_seconds",
                "Publish to the end of a successful handler run, last 10 s.",
                s,
            );
        }
        if let Some(s) = run_time {
            self.summary(c, "handler_run_seconds", "One handler run, last 10 s.", s);
        }
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
