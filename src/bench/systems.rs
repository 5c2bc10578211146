//! The systems under test as [`Fanout`] adapters: [`EventBusFanout`] and
//! [`QueueFanout`], with JSON or typed payloads ([`Payload`]).
//!
//! Their handlers are tickwire handlers (`Fn + Sync`, called on the component's
//! workers), so they hand each item to the driver's sink through [`Sink::receive`].
//! Items are published from the driver's publisher thread with `try_publish` (or
//! `try_publish_typed`), retried after a `yield` while the mailbox is full.

use std::future::ready;

use serde_json::json;

use super::fanout::{
    fan_out_only, publish_until_accepted, retry_until_accepted, Consumers, Fanout, Publish, Sink,
};
use super::{json_event, tick, Payload, Tick};
use crate::{
    Event, EventBus, EventBusConfig, Message, MessageQueue, MessageQueueConfig, Priority, Typed,
    TypedMessage,
};

/// An [`EventBus`] with `max_history` 0: one subscription per sink on `bench.tick`, one
/// publisher thread. No consumer groups.
#[derive(Clone, Copy, Debug)]
pub struct EventBusFanout {
    /// JSON events (`json!(i)`, `subscribe_with`) or typed ones (`Event::typed(tick(i))`,
    /// `subscribe_typed_with`).
    pub payload: Payload,
    /// `max_workers`.
    pub workers: usize,
    /// `enable_metrics`.
    pub metrics: bool,
    /// Handler priorities cycle LOW to CRITICAL instead of all NORMAL: workers then hold
    /// handlers of several priorities, and wake them through their run queue by priority.
    pub mixed_priorities: bool,
}

impl Fanout for EventBusFanout {
    type Running = EventBus;

    async fn start<S: Sink>(self, consumers: Consumers, sinks: Vec<S>) -> (impl Publish, EventBus) {
        fan_out_only(consumers, "the EventBus");
        let bus = EventBus::start(EventBusConfig {
            max_workers: self.workers,
            max_history: 0,
            enable_metrics: self.metrics,
            ..EventBusConfig::default()
        })
        .expect("valid bench config");
        for (n, sink) in sinks.into_iter().enumerate() {
            let priority = if self.mixed_priorities {
                Priority::ALL[n % 4]
            } else {
                Priority::Normal
            };
            let config = crate::create_handler_config("bench.tick").priority(priority);
            match self.payload {
                Payload::Json => {
                    bus.subscribe_with("bench.tick", config, move |event: Event| {
                        sink.receive(&event);
                        ready(Ok(()))
                    })
                    .await
                }
                Payload::Typed => {
                    bus.subscribe_typed_with("bench.tick", config, move |tick: Typed<Tick>| {
                        sink.receive(&tick);
                        ready(Ok(()))
                    })
                    .await
                }
            }
            .expect("valid pattern");
        }
        let publisher = BusPublisher {
            bus: bus.clone(),
            payload: self.payload,
        };
        (publisher, bus)
    }

    async fn stop(bus: EventBus) {
        bus.stop().await;
    }
}

/// Publishes to the EventBus with `try_publish`.
struct BusPublisher {
    bus: EventBus,
    payload: Payload,
}

impl Publish for BusPublisher {
    fn publish(&mut self, i: u64) -> u64 {
        let event = match self.payload {
            Payload::Json => json_event(i),
            Payload::Typed => Event::typed("bench.tick", tick(i)),
        };
        publish_until_accepted(event, |e| self.bus.try_publish(e))
    }
}

/// A [`MessageQueue`] with `max_size` 10,000: one subscription per sink on `bench.q`
/// (`subscribe`), or for [`Consumers::Group`] one member of group `bench` per sink
/// (`subscribe_group`).
#[derive(Clone, Copy, Debug)]
pub struct QueueFanout {
    /// JSON messages (`try_publish(json!(i))`) or typed ones (`try_publish_typed(tick(i))`,
    /// `subscribe_typed` / `subscribe_group_typed`).
    pub payload: Payload,
    /// `max_workers`.
    pub workers: usize,
}

impl Fanout for QueueFanout {
    type Running = MessageQueue;

    async fn start<S: Sink>(
        self,
        consumers: Consumers,
        sinks: Vec<S>,
    ) -> (impl Publish, MessageQueue) {
        let queue = MessageQueue::start(MessageQueueConfig {
            max_workers: self.workers,
            ..MessageQueueConfig::default()
        })
        .expect("valid bench config");
        let group = matches!(consumers, Consumers::Group(_));
        for sink in sinks {
            match (self.payload, group) {
                (Payload::Json, false) => {
                    queue
                        .subscribe("bench.q", move |m: Message| {
                            sink.receive(&m);
                            ready(Ok(()))
                        })
                        .await
                }
                (Payload::Json, true) => {
                    queue
                        .subscribe_group("bench.q", "bench", move |m: Message| {
                            sink.receive(&m);
                            ready(Ok(()))
                        })
                        .await
                }
                (Payload::Typed, false) => {
                    queue
                        .subscribe_typed("bench.q", move |m: TypedMessage<Tick>| {
                            sink.receive(&m);
                            ready(Ok(()))
                        })
                        .await
                }
                (Payload::Typed, true) => {
                    queue
                        .subscribe_group_typed("bench.q", "bench", move |m: TypedMessage<Tick>| {
                            sink.receive(&m);
                            ready(Ok(()))
                        })
                        .await
                }
            }
            .expect("valid pattern");
        }
        let publisher = QueuePublisher {
            queue: queue.clone(),
            payload: self.payload,
        };
        (publisher, queue)
    }

    async fn stop(queue: MessageQueue) {
        queue.stop().await;
    }
}

/// Publishes to the MessageQueue with `try_publish` / `try_publish_typed`.
struct QueuePublisher {
    queue: MessageQueue,
    payload: Payload,
}

impl Publish for QueuePublisher {
    fn publish(&mut self, i: u64) -> u64 {
        let queue = &self.queue;
        retry_until_accepted(|| match self.payload {
            Payload::Json => queue.try_publish("bench.q", json!(i), Priority::Normal),
            Payload::Typed => queue.try_publish_typed("bench.q", tick(i), Priority::Normal),
        })
    }
}
