//! Quick in-process measurements behind `tickwire bench`.
//!
//! [`eventbus_throughput`] measures the EventBus alone: one publisher thread calls
//! [`EventBus::try_publish`] as fast as it can (retrying, after a `yield`, when a mailbox
//! is full), `subscribers` trivial async handlers count what they receive, and the
//! figure is deliveries per second from the first publish to the last delivery.
//!
//! Baselines run the same load (the same `Event`s, built the same way, each subscriber
//! counting every one) in the same process, to compare against in the same run:
//!
//! - [`crossbeam_baseline`]: a bounded `crossbeam-channel` per subscriber, a consumer
//!   thread each, the same capacity: the physical floor for a hand-off between threads.
//! - [`tokio_broadcast_baseline`]: one `tokio::sync::broadcast` channel (the usual
//!   in-process fan-out), a receiver per subscriber on a thread of its own; the publisher
//!   waits for room (broadcast has no backpressure, and a lagging receiver would lose
//!   events), so nothing is lost.
//! - [`actix_baseline`]: plain actix, one counting actor per subscriber on `workers`
//!   arbiters, the publisher thread calling `Addr::try_send` (retrying on a full mailbox
//!   of the same capacity).
//!
//! ```
//! # actix_rt::System::new().block_on(async {
//! let report = tickwire::bench::eventbus_throughput(10_000, 2, 2, true).await;
//! assert_eq!(report.deliveries, 20_000);
//! assert!(report.deliveries_per_second() > 0.0);
//! # });
//! ```

pub mod latency;
pub mod suite;
pub mod ws;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;

use actix::prelude::*;

pub use crate::demo::Tick;
use crate::{
    Event, EventBus, EventBusConfig, Message, MessageQueue, MessageQueueConfig, Priority,
    TryPublishError, Typed, TypedMessage,
};

/// Mailbox and channel capacity of the baselines: EventBus's default `queue_size`.
const CAPACITY: usize = 10_000;

/// Offers `item` to `try_publish` until it is accepted, yielding after each refusal for
/// lack of room; returns how many refusals there were. Any other refusal fails the bench.
pub(crate) fn publish_until_accepted<T: crate::Deliverable>(
    mut item: T,
    mut try_publish: impl FnMut(T) -> Result<(), TryPublishError<T>>,
) -> u64 {
    let mut refusals = 0;
    loop {
        match try_publish(item) {
            Ok(()) => return refusals,
            Err(TryPublishError::QueueFull(back)) => {
                refusals += 1;
                item = back;
                std::thread::yield_now();
            }
            Err(other) => panic!("bench publish failed: {other}"),
        }
    }
}

/// Like [`publish_until_accepted`], for a publish that builds its item afresh each time
/// (`MessageQueue::try_publish`).
pub(crate) fn retry_until_accepted<R, T: crate::Deliverable>(
    mut attempt: impl FnMut() -> Result<R, TryPublishError<T>>,
) -> u64 {
    let mut refusals = 0;
    loop {
        match attempt() {
            Ok(_) => return refusals,
            Err(TryPublishError::QueueFull(_)) => {
                refusals += 1;
                std::thread::yield_now();
            }
            Err(other) => panic!("bench publish failed: {other}"),
        }
    }
}

/// The result of one throughput run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Throughput {
    /// Events published.
    pub events: u64,
    /// Subscribers each event went to.
    pub subscribers: usize,
    /// Handler runs counted (`events × subscribers` when nothing was lost).
    pub deliveries: u64,
    /// Times `try_publish` found a mailbox full and was retried.
    pub full_retries: u64,
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
}

impl Throughput {
    /// Handler runs per second.
    pub fn deliveries_per_second(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }

    /// Published events per second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
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

/// [`eventbus_throughput_with`], with events carrying `payload`.
pub async fn eventbus_throughput_of(
    payload: Payload,
    events: u64,
    subscribers: usize,
    workers: usize,
    metrics: bool,
    mixed_priorities: bool,
) -> Throughput {
    let bus = EventBus::start(EventBusConfig {
        max_workers: workers,
        max_history: 0,
        enable_metrics: metrics,
        ..EventBusConfig::default()
    })
    .expect("valid bench config");
    // One permit per subscriber that has seen every event (permits accumulate).
    let done = Arc::new(Semaphore::new(0));
    let mut counters = Vec::new();
    for n in 0..subscribers {
        let count = Arc::new(AtomicU64::new(0));
        let (c, d) = (count.clone(), done.clone());
        let priority = if mixed_priorities {
            Priority::ALL[n % 4]
        } else {
            Priority::Normal
        };
        let config = crate::create_handler_config("bench.tick").priority(priority);
        let count_one = move || {
            if c.fetch_add(1, Ordering::Relaxed) + 1 == events {
                d.add_permits(1);
            }
            std::future::ready(Ok(()))
        };
        match payload {
            Payload::Json => {
                bus.subscribe_with("bench.tick", config, move |_: Event| count_one())
                    .await
            }
            Payload::Typed => {
                bus.subscribe_typed_with("bench.tick", config, move |_: Typed<Tick>| count_one())
                    .await
            }
        }
        .expect("valid pattern");
        counters.push(count);
    }
    let start = Instant::now();
    let publisher = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            (0..events)
                .map(|i| {
                    let event = match payload {
                        Payload::Json => {
                            Event::new("bench.tick", json!(i)).with_priority(Priority::Normal)
                        }
                        Payload::Typed => Event::typed("bench.tick", tick(i)),
                    };
                    publish_until_accepted(event, |e| bus.try_publish(e))
                })
                .sum::<u64>()
        })
    };
    let all = u32::try_from(subscribers).expect("subscriber count fits u32");
    // A run that loses a delivery never completes: fail loudly instead of hanging.
    let deadline = Duration::from_secs(120) + Duration::from_micros(events);
    match tokio::time::timeout(deadline, done.acquire_many(all)).await {
        Ok(permits) => permits.expect("semaphore is never closed").forget(),
        Err(_) => panic!(
            "bench: not every event reached every subscriber: {:?} of {events} each",
            counters
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        ),
    }
    let elapsed = start.elapsed();
    let full_retries = publisher.join().expect("publisher thread");
    bus.stop().await;
    Throughput {
        events,
        subscribers,
        deliveries: counters.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
        full_retries,
        elapsed,
    }
}

/// How the MessageQueue throughput scenario consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum QueueConsumers {
    /// `n` subscriptions, each gets every message.
    FanOut(usize),
    /// One consumer group of `n` members: each message to exactly one.
    Group(usize),
}

/// Publishes `messages` messages from one thread (`try_publish`, retried when full) to a
/// MessageQueue with `workers` workers and `max_size` 10,000, consumed as `consumers`
/// says, and times it to the last delivery. Must run inside an actix System.
pub async fn queue_throughput(
    messages: u64,
    consumers: QueueConsumers,
    workers: usize,
) -> Throughput {
    queue_throughput_of(Payload::Json, messages, consumers, workers).await
}

/// [`queue_throughput`], with messages carrying `payload` (typed: `try_publish_typed`
/// and `subscribe_typed` / `subscribe_group_typed`).
pub async fn queue_throughput_of(
    payload: Payload,
    messages: u64,
    consumers: QueueConsumers,
    workers: usize,
) -> Throughput {
    let queue = MessageQueue::start(MessageQueueConfig {
        max_workers: workers,
        ..MessageQueueConfig::default()
    })
    .expect("valid bench config");
    let (members, expected, permits) = match consumers {
        QueueConsumers::FanOut(n) => (n, messages * n as u64, n),
        QueueConsumers::Group(n) => (n, messages, 1),
    };
    let done = Arc::new(Semaphore::new(0));
    let total = Arc::new(AtomicU64::new(0));
    for _ in 0..members {
        let (done, total) = (done.clone(), total.clone());
        let own = AtomicU64::new(0);
        let count_one = move || {
            match consumers {
                QueueConsumers::FanOut(_) => {
                    if own.fetch_add(1, Ordering::Relaxed) + 1 == messages {
                        done.add_permits(1);
                    }
                }
                QueueConsumers::Group(_) => {
                    if total.fetch_add(1, Ordering::Relaxed) + 1 == messages {
                        done.add_permits(1);
                    }
                }
            }
            std::future::ready(Ok(()))
        };
        let group = matches!(consumers, QueueConsumers::Group(_));
        match (payload, group) {
            (Payload::Json, false) => {
                queue
                    .subscribe("bench.q", move |_: Message| count_one())
                    .await
            }
            (Payload::Json, true) => {
                queue
                    .subscribe_group("bench.q", "bench", move |_: Message| count_one())
                    .await
            }
            (Payload::Typed, false) => {
                queue
                    .subscribe_typed("bench.q", move |_: TypedMessage<Tick>| count_one())
                    .await
            }
            (Payload::Typed, true) => {
                queue
                    .subscribe_group_typed("bench.q", "bench", move |_: TypedMessage<Tick>| {
                        count_one()
                    })
                    .await
            }
        }
        .expect("valid pattern");
    }
    let start = Instant::now();
    let publisher = {
        let queue = queue.clone();
        std::thread::spawn(move || {
            (0..messages)
                .map(|i| {
                    retry_until_accepted(|| match payload {
                        Payload::Json => queue.try_publish("bench.q", json!(i), Priority::Normal),
                        Payload::Typed => {
                            queue.try_publish_typed("bench.q", tick(i), Priority::Normal)
                        }
                    })
                })
                .sum::<u64>()
        })
    };
    let deadline = Duration::from_secs(120) + Duration::from_micros(messages);
    let permits = u32::try_from(permits).expect("member count fits u32");
    tokio::time::timeout(deadline, done.acquire_many(permits))
        .await
        .expect("bench: not every message was delivered")
        .expect("semaphore is never closed")
        .forget();
    let elapsed = start.elapsed();
    let full_retries = publisher.join().expect("publisher thread");
    queue.stop().await;
    Throughput {
        events: messages,
        subscribers: members,
        deliveries: expected,
        full_retries,
        elapsed,
    }
}

/// The same load as [`eventbus_throughput`] through bounded crossbeam channels: one
/// publisher thread sends each event to `subscribers` channels of capacity 10,000
/// (EventBus's default `queue_size`), a consumer thread per channel counts.
pub fn crossbeam_baseline(events: u64, subscribers: usize) -> Throughput {
    crossbeam_baseline_of(events, subscribers, json_event)
}

/// The event the JSON scenarios and their baselines move.
fn json_event(i: u64) -> Event {
    Event::new("bench.tick", json!(i)).with_priority(Priority::Normal)
}

/// The item the typed baselines move: the same [`Tick`], in an `Arc` (as a typed event
/// holds it).
pub fn arc_tick(i: u64) -> Arc<Tick> {
    Arc::new(tick(i))
}

/// [`crossbeam_baseline`], moving what `make` builds (one per event, cloned to each
/// subscriber).
pub fn crossbeam_baseline_of<M: Clone + Send + 'static>(
    events: u64,
    subscribers: usize,
    make: impl Fn(u64) -> M,
) -> Throughput {
    let (senders, consumers): (Vec<_>, Vec<_>) = (0..subscribers)
        .map(|_| {
            let (tx, rx) = crossbeam::channel::bounded::<M>(CAPACITY);
            let consumer = std::thread::spawn(move || rx.iter().count() as u64);
            (tx, consumer)
        })
        .unzip();
    let start = Instant::now();
    for i in 0..events {
        let event = make(i);
        for tx in &senders {
            tx.send(event.clone()).expect("consumer alive");
        }
    }
    drop(senders);
    let deliveries = consumers
        .into_iter()
        .map(|c| c.join().expect("consumer thread"))
        .sum();
    Throughput {
        events,
        subscribers,
        deliveries,
        full_retries: 0,
        elapsed: start.elapsed(),
    }
}

/// The same load through one `tokio::sync::broadcast` channel of capacity 10,000, a
/// receiver per subscriber on a thread of its own (a current-thread runtime each). The
/// publisher waits (yielding) while the channel is full, so no receiver lags.
pub fn tokio_broadcast_baseline(events: u64, subscribers: usize) -> Throughput {
    tokio_broadcast_baseline_of(events, subscribers, json_event)
}

/// [`tokio_broadcast_baseline`], moving what `make` builds.
pub fn tokio_broadcast_baseline_of<M: Clone + Send + 'static>(
    events: u64,
    subscribers: usize,
    make: impl Fn(u64) -> M,
) -> Throughput {
    let (tx, _) = tokio::sync::broadcast::channel::<M>(CAPACITY);
    let consumers: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut rx = tx.subscribe();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a current-thread runtime");
                runtime.block_on(async move {
                    let mut count = 0u64;
                    loop {
                        match rx.recv().await {
                            Ok(_) => count += 1,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return count,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                panic!("broadcast baseline: a receiver lagged by {n}")
                            }
                        }
                    }
                })
            })
        })
        .collect();
    let start = Instant::now();
    let mut full_retries = 0;
    for i in 0..events {
        let event = make(i);
        while tx.len() >= CAPACITY - 1 {
            full_retries += 1;
            std::thread::yield_now();
        }
        assert!(
            tx.send(event).is_ok(),
            "broadcast baseline: receivers alive"
        );
    }
    drop(tx);
    let deliveries = consumers
        .into_iter()
        .map(|c| c.join().expect("consumer thread"))
        .sum();
    Throughput {
        events,
        subscribers,
        deliveries,
        full_retries,
        elapsed: start.elapsed(),
    }
}

/// Counts ticks; says when it has seen `target` of them.
struct Counter {
    count: u64,
    target: u64,
    done: Arc<Semaphore>,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

/// One event for [`Counter`].
#[derive(actix::Message)]
#[rtype(result = "()")]
struct Delivery<M>(#[allow(dead_code)] M);

impl<M: 'static> Handler<Delivery<M>> for Counter {
    type Result = ();

    fn handle(&mut self, _: Delivery<M>, _: &mut Context<Self>) {
        self.count += 1;
        if self.count == self.target {
            self.done.add_permits(1);
        }
    }
}

/// The same load through plain actix: one counting actor per subscriber (mailbox
/// capacity 10,000) on `workers` arbiters; a publisher thread `try_send`s each event to
/// every actor, retrying after a `yield` when a mailbox is full. Must run inside an actix
/// System.
pub async fn actix_baseline(events: u64, subscribers: usize, workers: usize) -> Throughput {
    actix_baseline_of(events, subscribers, workers, json_event).await
}

/// [`actix_baseline`], moving what `make` builds.
pub async fn actix_baseline_of<M: Clone + Send + 'static>(
    events: u64,
    subscribers: usize,
    workers: usize,
    make: impl Fn(u64) -> M + Send + 'static,
) -> Throughput {
    let arbiters: Vec<Arbiter> = (0..workers.max(1)).map(|_| Arbiter::new()).collect();
    let done = Arc::new(Semaphore::new(0));
    let addrs: Vec<Addr<Counter>> = (0..subscribers)
        .map(|i| {
            let done = done.clone();
            Counter::start_in_arbiter(&arbiters[i % arbiters.len()].handle(), move |ctx| {
                ctx.set_mailbox_capacity(CAPACITY);
                Counter {
                    count: 0,
                    target: events,
                    done,
                }
            })
        })
        .collect();
    let start = Instant::now();
    let publisher = std::thread::spawn(move || {
        let mut full_retries = 0;
        for i in 0..events {
            let event = make(i);
            for addr in &addrs {
                let mut tick = Delivery(event.clone());
                loop {
                    match addr.try_send(tick) {
                        Ok(()) => break,
                        Err(SendError::Full(back)) => {
                            full_retries += 1;
                            tick = back;
                            std::thread::yield_now();
                        }
                        Err(SendError::Closed(_)) => panic!("actix baseline: an actor stopped"),
                    }
                }
            }
        }
        full_retries
    });
    let all = u32::try_from(subscribers).expect("subscriber count fits u32");
    let deadline = Duration::from_secs(120) + Duration::from_micros(events);
    tokio::time::timeout(deadline, done.acquire_many(all))
        .await
        .expect("actix baseline: every actor counts every event")
        .expect("semaphore is never closed")
        .forget();
    let elapsed = start.elapsed();
    let full_retries = publisher.join().expect("publisher thread");
    for arbiter in arbiters {
        arbiter.stop();
    }
    Throughput {
        events,
        subscribers,
        deliveries: events * subscribers as u64,
        full_retries,
        elapsed,
    }
}
