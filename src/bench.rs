//! Quick in-process measurements behind `tickwire bench`.
//!
//! Every system under test is written once, as a [`Fanout`](fanout::Fanout) adapter, and
//! measured by two drivers:
//!
//! | driver | measures |
//! |---|---|
//! | [`throughput::run`] | one publisher thread, N items as fast as they are taken, 1 → N subscribers; deliveries per second to the last delivery |
//! | [`latency::run`] | one publisher thread at an offered rate (open loop), one subscriber; due time → receipt, percentiles |
//!
//! | adapter | system |
//! |---|---|
//! | [`EventBusFanout`] | the EventBus, JSON or typed ([`Payload`]), one or mixed handler priorities |
//! | [`QueueFanout`] | the MessageQueue, JSON or typed, fan-out or a consumer group ([`Consumers`]) |
//! | [`CrossbeamFanout`] | a bounded crossbeam channel per subscriber |
//! | [`TokioBroadcastFanout`] | one `tokio::sync::broadcast` channel |
//! | [`ActixFanout`] | plain actix actors |
//!
//! The baselines run the same load as tickwire (the same items, built the same way, each
//! subscriber receiving every one) in the same process, to compare against in the same
//! run; [`baselines`] says what each stands for. The named scenarios below
//! ([`eventbus_throughput_of`], [`crossbeam_baseline_of`], …, and in [`latency`]
//! [`eventbus_latency`](latency::eventbus_latency), …) are one driver with one adapter
//! each; [`suite`] runs them together as `tickwire bench` prints them, and [`ws`] is the
//! WebSocket fan-out over loopback.
//!
//! [`eventbus_throughput`] measures the EventBus alone: one publisher thread calls
//! [`EventBus::try_publish`](crate::EventBus::try_publish) as fast as it can (retrying,
//! after a `yield`, when a mailbox is full), `subscribers` trivial async handlers count
//! what they receive, and the figure is deliveries per second from the first publish to
//! the last delivery.
//!
//! ```
//! # actix_rt::System::new().block_on(async {
//! let report = tickwire::bench::eventbus_throughput(10_000, 2, 2, true).await;
//! assert_eq!(report.deliveries, 20_000);
//! assert!(report.deliveries_per_second() > 0.0);
//! # });
//! ```
//!
//! A driver takes any adapter; the same crossbeam baseline under both:
//!
//! ```
//! use std::time::Duration;
//! use tickwire::bench::{baselines::CrossbeamFanout, json_event, latency, throughput, Consumers};
//! # actix_rt::System::new().block_on(async {
//! let channel = CrossbeamFanout { make: json_event };
//! let run = throughput::run(channel, 1_000, Consumers::FanOut(3)).await;
//! assert_eq!(run.deliveries, 3_000);
//! let report = latency::run("crossbeam", channel, 10_000.0, Duration::from_millis(50)).await;
//! assert_eq!(report.latency_us.count, 500);
//! # });
//! ```

pub mod baselines;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod fanout;
pub mod latency;
pub mod suite;
pub mod systems;
pub mod throughput;
pub mod ws;

use std::sync::Arc;

use serde_json::json;

use self::baselines::{ActixFanout, CrossbeamFanout, TokioBroadcastFanout};
pub use self::fanout::Consumers;
use self::fanout::Indexed;
use self::systems::{EventBusFanout, QueueFanout};
pub use self::throughput::Throughput;
pub use crate::demo::Tick;
use crate::{Event, Priority};

/// What the bench events carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Payload {
    /// `json!(i)`, as before typed payloads: a JSON number per event.
    Json,
    /// A [`Tick`] (`Event::typed`), handled by typed handlers (`subscribe_typed`): the
    /// handler gets the publisher's value, no JSON is built.
    Typed,
}

/// The tick the typed scenarios and their baselines move.
pub fn tick(i: u64) -> Tick {
    Tick {
        symbol: std::borrow::Cow::Borrowed("BTCUSD"),
        price: 50_000.0 + (i % 100) as f64,
        bid: 49_999.5 + (i % 100) as f64,
        ask: 50_000.5 + (i % 100) as f64,
        size: 0.25,
        exchange_time: i,
    }
}

/// The item the typed baselines move: the same [`Tick`], in an `Arc` (as a typed event
/// holds it).
pub fn arc_tick(i: u64) -> Arc<Tick> {
    Arc::new(tick(i))
}

/// The event the JSON scenarios and their baselines move: `json!(i)` on `bench.tick`.
pub fn json_event(i: u64) -> Event {
    Event::new("bench.tick", json!(i)).with_priority(Priority::Normal)
}

/// Publishes `events` events from one thread to `subscribers` subscribers on a bus with
/// `workers` worker threads (`metrics`: `enable_metrics`), and times it. Must run inside
/// an actix System.
pub async fn eventbus_throughput(
    events: u64,
    subscribers: usize,
    workers: usize,
    metrics: bool,
) -> Throughput {
    eventbus_throughput_with(events, subscribers, workers, metrics, false).await
}

/// [`eventbus_throughput`], with the subscribers' handler priorities cycling LOW to
/// CRITICAL when `mixed_priorities` is set: workers then hold handlers of several
/// priorities, and wake them through their run queue by priority (the cost measured).
pub async fn eventbus_throughput_with(
    events: u64,
    subscribers: usize,
    workers: usize,
    metrics: bool,
    mixed_priorities: bool,
) -> Throughput {
    eventbus_throughput_of(
        Payload::Json,
        events,
        subscribers,
        workers,
        metrics,
        mixed_priorities,
    )
    .await
}

/// [`eventbus_throughput_with`], with events carrying `payload`.
pub async fn eventbus_throughput_of(
    payload: Payload,
    events: u64,
    subscribers: usize,
    workers: usize,
    metrics: bool,
    mixed_priorities: bool,
) -> Throughput {
    let bus = EventBusFanout {
        payload,
        workers,
        metrics,
        mixed_priorities,
    };
    throughput::run(bus, events, Consumers::FanOut(subscribers)).await
}

/// Publishes `messages` messages from one thread (`try_publish`, retried when full) to a
/// MessageQueue with `workers` workers and `max_size` 10,000, consumed as `consumers`
/// says, and times it to the last delivery. Must run inside an actix System.
pub async fn queue_throughput(messages: u64, consumers: Consumers, workers: usize) -> Throughput {
    queue_throughput_of(Payload::Json, messages, consumers, workers).await
}

/// [`queue_throughput`], with messages carrying `payload` (typed: `try_publish_typed`
/// and `subscribe_typed` / `subscribe_group_typed`).
pub async fn queue_throughput_of(
    payload: Payload,
    messages: u64,
    consumers: Consumers,
    workers: usize,
) -> Throughput {
    let queue = QueueFanout { payload, workers };
    throughput::run(queue, messages, consumers).await
}

/// The same load as [`eventbus_throughput`] through bounded crossbeam channels: one
/// publisher thread sends each event to `subscribers` channels of capacity 10,000
/// (EventBus's default `queue_size`), a consumer thread per channel counts. Must run
/// inside an actix System.
pub async fn crossbeam_baseline(events: u64, subscribers: usize) -> Throughput {
    crossbeam_baseline_of(events, subscribers, json_event).await
}

/// [`crossbeam_baseline`], moving what `make` builds (one per event, cloned to each
/// subscriber).
pub async fn crossbeam_baseline_of<M: Indexed + Clone + Send + 'static>(
    events: u64,
    subscribers: usize,
    make: impl Fn(u64) -> M + Send + 'static,
) -> Throughput {
    let channels = CrossbeamFanout { make };
    throughput::run(channels, events, Consumers::FanOut(subscribers)).await
}

/// The same load through one `tokio::sync::broadcast` channel of capacity 10,000, a
/// receiver per subscriber on a thread of its own (a current-thread runtime each). The
/// publisher waits (yielding) while the channel is full, so no receiver lags. Must run
/// inside an actix System.
pub async fn tokio_broadcast_baseline(events: u64, subscribers: usize) -> Throughput {
    tokio_broadcast_baseline_of(events, subscribers, json_event).await
}

/// [`tokio_broadcast_baseline`], moving what `make` builds.
pub async fn tokio_broadcast_baseline_of<M: Indexed + Clone + Send + 'static>(
    events: u64,
    subscribers: usize,
    make: impl Fn(u64) -> M + Send + 'static,
) -> Throughput {
    let channel = TokioBroadcastFanout { make };
    throughput::run(channel, events, Consumers::FanOut(subscribers)).await
}

/// The same load through plain actix: one counting actor per subscriber (mailbox
/// capacity 10,000) on `workers` arbiters; a publisher thread `try_send`s each event to
/// every actor, retrying after a `yield` when a mailbox is full. Must run inside an actix
/// System.
pub async fn actix_baseline(events: u64, subscribers: usize, workers: usize) -> Throughput {
    actix_baseline_of(events, subscribers, workers, json_event).await
}

/// [`actix_baseline`], moving what `make` builds.
pub async fn actix_baseline_of<M: Indexed + Clone + Send + 'static>(
    events: u64,
    subscribers: usize,
    workers: usize,
    make: impl Fn(u64) -> M + Send + 'static,
) -> Throughput {
    let actors = ActixFanout { workers, make };
    throughput::run(actors, events, Consumers::FanOut(subscribers)).await
}
