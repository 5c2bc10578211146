//! What a system under test is to the drivers: the [`Fanout`] adapter trait, and the
//! [`Sink`] through which a driver sees what each subscriber receives.
//!
//! An adapter is written once per system (EventBus, MessageQueue, and each baseline) and
//! runs under both drivers: [`throughput::run`](super::throughput::run) (N items as fast
//! as they are taken, time to the last delivery) and [`latency::run`](super::latency::run)
//! (an open-loop schedule, due time to receipt). The driver decides what a subscriber
//! does with an item (count it, or time it) by the [`Sink`] it hands to
//! [`Fanout::start`]; the adapter decides how an item gets there.
//!
//! Everything here is generic: a driver instantiated with an adapter and a sink compiles
//! to the same per-item code as a loop written by hand for that pair (no `dyn`, no
//! allocation beyond the item itself). A sink that does not look at the item (the
//! throughput count) never reads its payload: [`Indexed::index`] is only called by the
//! sinks that need the item's place in the schedule.

use std::future::Future;

use crate::demo::Tick;
use crate::{Item, Kind, TryPublishError, Typed};

/// Mailbox and channel capacity of the baselines: EventBus's default `queue_size`.
pub(crate) const CAPACITY: usize = 10_000;

/// How the subscribers of a run share its items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Consumers {
    /// `n` subscriptions, each gets every item.
    FanOut(usize),
    /// One consumer group of `n` members: each item to exactly one (MessageQueue only).
    Group(usize),
}

impl Consumers {
    /// How many subscribers there are.
    pub fn count(self) -> usize {
        match self {
            Consumers::FanOut(n) | Consumers::Group(n) => n,
        }
    }
}

/// An item that knows its place in the run: item `i` of `0..items`.
pub trait Indexed {
    /// The `i` the item was made from.
    fn index(&self) -> u64;
}

/// A JSON event or message made from `json!(i)`.
impl<K: Kind> Indexed for Item<K> {
    fn index(&self) -> u64 {
        self.data().as_u64().unwrap_or(0)
    }
}

/// A typed handler's [`Tick`]: `exchange_time` is `i` (see [`tick`](super::tick)).
impl<K: Kind> Indexed for Typed<Tick, K> {
    fn index(&self) -> u64 {
        self.exchange_time
    }
}

impl Indexed for Tick {
    fn index(&self) -> u64 {
        self.exchange_time
    }
}

impl<T: Indexed> Indexed for std::sync::Arc<T> {
    fn index(&self) -> u64 {
        T::index(self)
    }
}

/// The driver's end of a subscriber: told of every item the subscriber receives.
///
/// A sink comes in two forms, and an adapter uses the one that fits how its consumer
/// runs. A handler that the system may call on any thread (a tickwire handler is `Fn +
/// Sync`) calls [`receive`](Sink::receive), which synchronises (an atomic count, a
/// lock). A consumer with a thread or an actor of its own takes the sink with
/// [`into_owned`](Sink::into_owned) and updates it without synchronisation, as a loop
/// written for that consumer alone would.
///
/// The members of a [`Consumers::Group`] are given clones of one sink, and call
/// [`receive`](Sink::receive); in a [`Consumers::FanOut`] each subscriber has its own.
pub trait Sink: Clone + Send + Sync + 'static {
    /// This sink's state inside the one consumer that owns it.
    type Owned: OwnedSink;

    /// `item` reached a subscriber (which may share this sink with other threads).
    fn receive(&self, item: &impl Indexed);

    /// This sink, for a consumer that owns it: no other consumer may receive through it.
    fn into_owned(self) -> Self::Owned;
}

/// A [`Sink`] inside the one consumer (a thread, an actor) that owns it. What the driver
/// reads of it (a count, the histograms) is handed over when the last item arrives.
pub trait OwnedSink: Send + Unpin + 'static {
    /// `item` reached this consumer.
    fn receive(&mut self, item: &impl Indexed);
}

/// The publishing end of a system under test, moved to the driver's publisher thread.
pub trait Publish: Send + 'static {
    /// Publishes item `i` (made for this run: a `json!(i)` event, `tick(i)`, …) to every
    /// subscriber, waiting (yielding) while there is no room; returns how many times it
    /// found none. Dropping the publisher ends the run's input (a channel closes).
    fn publish(&mut self, i: u64) -> u64;
}

/// One system under test, written once and driven by both drivers: a value that says how
/// to set the system up (workers, payload, …), started with the driver's sinks.
pub trait Fanout: Sized {
    /// What [`start`](Fanout::start) leaves running for [`stop`](Fanout::stop): the bus,
    /// the consumer threads, the arbiters.
    type Running;

    /// Starts the system with one subscriber per sink (`sinks.len() == consumers.count()`),
    /// each handing what it receives to its sink; returns the publisher and what to stop.
    /// Panics if the system cannot share items as `consumers` says (only the
    /// MessageQueue has groups). Must run inside an actix System.
    fn start<S: Sink>(
        self,
        consumers: Consumers,
        sinks: Vec<S>,
    ) -> impl Future<Output = (impl Publish, Self::Running)>;

    /// Stops what [`start`](Fanout::start) started, after the publisher was dropped and
    /// every item arrived: joins the consumer threads, stops the bus or the arbiters.
    fn stop(running: Self::Running) -> impl Future<Output = ()>;
}

/// Panics unless `consumers` is a fan-out: the baselines and the EventBus have no groups.
pub(crate) fn fan_out_only(consumers: Consumers, system: &str) {
    assert!(
        matches!(consumers, Consumers::FanOut(_)),
        "bench: {system} has no consumer groups"
    );
}

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
