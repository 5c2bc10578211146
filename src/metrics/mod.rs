//! Performance metrics with the seed's keys, and their Prometheus exposition.
//!
//! `get_performance_metrics()` on the [`EventBus`](crate::EventBus) and the
//! [`MessageQueue`](crate::MessageQueue) returns a typed struct that serializes with
//! exactly the seed's keys, then keys of ours. The figures come from the component's
//! metrics actor (see below) and from lock-free counters on the hot path.
//!
//! ## Definitions
//!
//! | key | meaning |
//! |-----|---------|
//! | `total_events_published` / `total_messages_published` | items accepted by `publish`/`try_publish` |
//! | `total_events_processed` / `total_messages_processed` | deliveries whose handler succeeded (an item for 3 subscribers counts 3) |
//! | `total_errors` | failed handler runs (errors, timeouts, panics), retried or not |
//! | `events_per_second` / `messages_per_second` | processed over the last 10 s (or since start), per second |
//! | `average_processing_time` | mean handler run time since start, in **seconds**, as in the seed |
//! | `queue_size` / `total_queue_size` | deliveries waiting in mailboxes now |
//! | `active_handlers` | handler runs in progress now (runs that wait: one that finishes within its first poll is not seen) |
//! | `total_handlers` | subscriptions (a consumer group counts once) |
//! | `topics_count` | MessageQueue: topics with subscribers or waiting messages |
//! | `uptime_seconds` | since the component started |
//! | `retries`, `dead_letters`, `dropped`, `restarts` | as in [`DeliveryStats`](crate::DeliveryStats) |
//! | `publish_to_handled_us` | percentiles (µs) from publish to the end of a successful run, last 10 s |
//! | `handler_run_time_us` | percentiles (µs) of one handler run, last 10 s |
//! | `metrics_enabled` | false when `enable_metrics = false` |
//!
//! With `enable_metrics = false` nothing is timed or counted on the hot path for metrics:
//! the measured figures (`total_*_published`, rates, times, active handlers, latency
//! percentiles) are `null`, not zeros. The counters the components need anyway (processed,
//! errors, retries, dead letters, dropped, restarts, queue sizes, handlers) are still
//! given.
//!
//! Latency samples reach the metrics actor up to a second after they are recorded (each
//! handler actor ships its histograms once a second), and at once on `stop()`.
//!
//! ```
//! use serde_json::json;
//! use tickwire::{Event, EventBus, EventBusConfig};
//!
//! # actix_rt::System::new().block_on(async {
//! let bus = EventBus::start(EventBusConfig::default()).unwrap();
//! bus.subscribe("a", |_| std::future::ready(Ok(()))).await.unwrap();
//! for n in 0..10 {
//!     bus.publish(Event::new("a", json!(n))).await.unwrap();
//! }
//! bus.stop().await;
//! let m = bus.get_performance_metrics().await;
//! assert_eq!(m.total_events_published, Some(10));
//! assert_eq!(m.total_events_processed, 10);
//! assert_eq!(m.handler_run_time_us.unwrap().count, 10);
//! let json = serde_json::to_value(&m).unwrap();
//! assert!(json.get("events_per_second").is_some() && json.get("uptime_seconds").is_some());
//! # });
//! ```

pub mod prometheus;

use serde::Serialize;

use crate::core::metrics_actor::Snapshot;
pub use crate::util::LatencySummary;

/// The EventBus's metrics: the seed's keys first, then ours.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventBusMetrics {
    /// Events accepted (`null` with metrics disabled).
    pub total_events_published: Option<u64>,
    /// Successful deliveries.
    pub total_events_processed: u64,
    /// Failed handler runs.
    pub total_errors: u64,
    /// Processed per second over the last 10 s.
    pub events_per_second: Option<f64>,
    /// Mean handler run time, seconds.
    pub average_processing_time: Option<f64>,
    /// Deliveries waiting now.
    pub queue_size: u64,
    /// Handler runs in progress now.
    pub active_handlers: Option<u64>,
    /// Subscriptions.
    pub total_handlers: u64,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Retries started.
    pub retries: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Accepted deliveries discarded unhandled (overflow policies, unsubscribe, a stop
    /// that timed out; see [`DeliveryStats::dropped`](crate::DeliveryStats::dropped)).
    pub dropped: u64,
    /// Handler actor restarts.
    pub restarts: u64,
    /// Publish → handled, µs, last 10 s.
    pub publish_to_handled_us: Option<LatencySummary>,
    /// Handler run time, µs, last 10 s.
    pub handler_run_time_us: Option<LatencySummary>,
    /// Whether the measured figures were measured.
    pub metrics_enabled: bool,
}

/// The MessageQueue's metrics: the seed's keys first, then ours.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessageQueueMetrics {
    /// Messages accepted (`null` with metrics disabled).
    pub total_messages_published: Option<u64>,
    /// Successful deliveries.
    pub total_messages_processed: u64,
    /// Failed handler runs.
    pub total_errors: u64,
    /// Processed per second over the last 10 s.
    pub messages_per_second: Option<f64>,
    /// Mean handler run time, seconds.
    pub average_processing_time: Option<f64>,
    /// Deliveries waiting in the whole queue now.
    pub total_queue_size: u64,
    /// Handler runs in progress now.
    pub active_handlers: Option<u64>,
    /// Subscriptions (a consumer group counts once).
    pub total_handlers: u64,
    /// Topics with subscribers or waiting messages.
    pub topics_count: u64,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Retries started.
    pub retries: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Accepted deliveries discarded unhandled (overflow policies, unsubscribe, a stop
    /// that timed out; see [`DeliveryStats::dropped`](crate::DeliveryStats::dropped)).
    pub dropped: u64,
    /// Handler actor restarts.
    pub restarts: u64,
    /// Publish → handled, µs, last 10 s.
    pub publish_to_handled_us: Option<LatencySummary>,
    /// Handler run time, µs, last 10 s.
    pub handler_run_time_us: Option<LatencySummary>,
    /// Whether the measured figures were measured.
    pub metrics_enabled: bool,
}

/// The WebSocketService's metrics: the seed's keys first, then ours.
///
/// | key | meaning |
/// |-----|---------|
/// | `total_connections` | sessions ever opened (upgrades) |
/// | `active_connections` | sessions open now |
/// | `total_messages_sent` | text frames written to clients (welcome, replies, messages) |
/// | `total_messages_received` | text or binary messages from clients |
/// | `total_errors` | `error` replies, and sessions closed for a protocol error (1002), a policy breach (1008) or an oversize message (1009) |
/// | `messages_per_second` | sent over the last 10 s, per second |
/// | `topics_count` | distinct topics and patterns clients are subscribed to |
/// | `rejected_connections` | refused with 503 (over `max_connections`, or stopping) |
/// | `unauthorized` | refused with 401 |
/// | `slow_consumers`, `heartbeat_timeouts`, `oversize_messages` | sessions closed with 4008, 4000, 1009 |
/// | `connections_reset` | sessions that did not close in time and were reset (or ended) |
/// | `compressed_sessions` | sessions open now with permessage-deflate |
/// | `wire_bytes_sent`, `uncompressed_bytes_sent` | bytes of the frames queued to clients (broadcasts), as sent and had none been compressed |
/// | `epoch` | the name of the server's sequence space (in `welcome` and subscribe acks) |
/// | `history_topics`, `history_messages`, `history_bytes` | topics with kept messages, messages kept, their bytes (bounded by `history_size`, `history_ttl`, `history_max_bytes`) |
/// | `recoveries`, `failed_recoveries` | subscribes whose `recover` was answered `recovered` true, false |
/// | `replayed_messages`, `snapshot_messages` | messages sent by recoveries, and as snapshots |
///
/// With `enable_metrics = false`, sent and received counts and the rate are `null`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebSocketMetrics {
    /// Sessions ever opened.
    pub total_connections: u64,
    /// Sessions open now.
    pub active_connections: u64,
    /// Text frames sent (`null` with metrics disabled).
    pub total_messages_sent: Option<u64>,
    /// Messages received (`null` with metrics disabled).
    pub total_messages_received: Option<u64>,
    /// Error replies and sessions closed for bad input.
    pub total_errors: u64,
    /// Sent per second over the last 10 s.
    pub messages_per_second: Option<f64>,
    /// Distinct subscribed topics and patterns.
    pub topics_count: u64,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Connections refused with 503.
    pub rejected_connections: u64,
    /// Connections refused with 401.
    pub unauthorized: u64,
    /// Sessions closed with 4008.
    pub slow_consumers: u64,
    /// Sessions closed with 4000.
    pub heartbeat_timeouts: u64,
    /// Sessions closed with 1009.
    pub oversize_messages: u64,
    /// Sessions reset at the TCP level (or ended) because they did not close in time.
    pub connections_reset: u64,
    /// Sessions open now that negotiated permessage-deflate.
    pub compressed_sessions: u64,
    /// Bytes of frames queued to clients, as they go on the wire (compressed or not;
    /// `null` with metrics disabled).
    pub wire_bytes_sent: Option<u64>,
    /// The same frames' bytes, had none been compressed (`null` with metrics disabled).
    pub uncompressed_bytes_sent: Option<u64>,
    /// The name of the server's sequence space.
    pub epoch: String,
    /// Topics with at least one kept message.
    pub history_topics: u64,
    /// Messages kept for recovery and snapshots.
    pub history_messages: u64,
    /// Their bytes.
    pub history_bytes: u64,
    /// Subscribes whose `recover` was answered `"recovered":true`.
    pub recoveries: u64,
    /// Subscribes whose `recover` was answered `"recovered":false`.
    pub failed_recoveries: u64,
    /// Messages replayed by recoveries.
    pub replayed_messages: u64,
    /// Messages sent as snapshots.
    pub snapshot_messages: u64,
    /// Whether sent and received messages were counted.
    pub metrics_enabled: bool,
}

fn measured<V>(enabled: bool, value: V) -> Option<V> {
    enabled.then_some(value)
}

impl EventBusMetrics {
    pub(crate) fn from_snapshot(s: &Snapshot) -> Self {
        let on = s.enabled;
        EventBusMetrics {
            total_events_published: measured(on, s.published),
            total_events_processed: s.stats.processed,
            total_errors: s.stats.errors,
            events_per_second: measured(on, s.rate),
            average_processing_time: measured(on, s.average_run_seconds),
            queue_size: s.stats.queued,
            active_handlers: measured(on, s.active),
            total_handlers: s.handlers,
            uptime_seconds: s.uptime.as_secs_f64(),
            retries: s.stats.retries,
            dead_letters: s.stats.dead_letters,
            dropped: s.stats.dropped,
            restarts: s.stats.restarts,
            publish_to_handled_us: measured(on, s.publish_to_handled),
            handler_run_time_us: measured(on, s.run_time),
            metrics_enabled: on,
        }
    }
}

impl MessageQueueMetrics {
    pub(crate) fn from_snapshot(s: &Snapshot, total_queue_size: u64, topics_count: u64) -> Self {
        let on = s.enabled;
        MessageQueueMetrics {
            total_messages_published: measured(on, s.published),
            total_messages_processed: s.stats.processed,
            total_errors: s.stats.errors,
            messages_per_second: measured(on, s.rate),
            average_processing_time: measured(on, s.average_run_seconds),
            total_queue_size,
            active_handlers: measured(on, s.active),
            total_handlers: s.handlers,
            topics_count,
            uptime_seconds: s.uptime.as_secs_f64(),
            retries: s.stats.retries,
            dead_letters: s.stats.dead_letters,
            dropped: s.stats.dropped,
            restarts: s.stats.restarts,
            publish_to_handled_us: measured(on, s.publish_to_handled),
            handler_run_time_us: measured(on, s.run_time),
            metrics_enabled: on,
        }
    }
}
