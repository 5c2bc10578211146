//! Typed payloads through every component: the publisher's value itself to typed
//! handlers, serde decoding of JSON and of other types, decode failures, groups, bridges,
//! WebSocket clients, history, synchronous dispatch, actor handlers.
//!
//! Synchronisation is by channels and `stop()` (which drains); timeouts are safety nets.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
#[cfg(feature = "websocket")]
use serde_json::Value;
#[cfg(feature = "websocket")]
use tickwire::{bridge, Message, WebSocketService, WebSocketServiceConfig};
use tickwire::{
    create_handler_config, Deliver, Event, EventBus, EventBusConfig, HandlerFailure, HandlerResult,
    MessageQueue, MessageQueueConfig, Priority, Typed, TypedMessage,
};
use tokio::sync::mpsc;

#[cfg(feature = "websocket")]
use common::ws::{next_json, request, Server};

const SAFETY: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Tick {
    symbol: String,
    bid: f64,
    ask: f64,
    size: u32,
}

fn tick(n: u32) -> Tick {
    Tick {
        symbol: format!("S{n}"),
        bid: f64::from(n),
        ask: f64::from(n) + 0.5,
        size: n,
    }
}

/// Another Rust type with the same JSON shape.
#[derive(Clone, Debug, Serialize)]
struct Quote {
    symbol: &'static str,
    bid: f64,
    ask: f64,
    size: u32,
}

fn bus() -> EventBus {
    EventBus::start(EventBusConfig::default()).unwrap()
}

#[cfg(feature = "websocket")]
/// The tests' WebSocket config: frames uncompressed, so they read as they are sent.
fn ws_config() -> WebSocketServiceConfig {
    WebSocketServiceConfig {
        enable_compression: false,
        ..WebSocketServiceConfig::default()
    }
}

fn mq() -> MessageQueue {
    MessageQueue::start(MessageQueueConfig::default()).unwrap()
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(SAFETY, rx.recv())
        .await
        .expect("within the safety timeout")
        .expect("channel open")
}

/// Subscribes a typed handler that forwards what it gets.
async fn typed_forward<T>(bus: &EventBus, pattern: &str) -> mpsc::UnboundedReceiver<Typed<T>>
where
    T: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    bus.subscribe_typed(pattern, move |value: Typed<T>| {
        let _ = tx.send(value);
        async { Ok(()) }
    })
    .await
    .unwrap();
    rx
}

#[actix_rt::test]
async fn a_typed_handler_gets_the_publishers_value_itself() {
    let bus = bus();
    let mut rx = typed_forward::<Tick>(&bus, "market.tick").await;
    let event = Event::typed("market.tick", tick(1)).with_priority(Priority::High);
    bus.publish(event.clone()).await.unwrap();
    let got = recv(&mut rx).await;
    assert_eq!(*got, tick(1));
    assert!(!got.was_decoded());
    // The very value the publisher made: same address, no copy.
    assert!(std::ptr::eq(&*got, event.payload::<Tick>().unwrap()));
    assert_eq!(
        (got.event().id(), got.event().priority()),
        (event.id(), Priority::High)
    );
    bus.stop().await;
}

#[actix_rt::test]
async fn json_and_other_types_are_decoded_once_per_item_and_subscription() {
    let bus = bus();
    let mut a = typed_forward::<Tick>(&bus, "market.*").await;
    let mut b = typed_forward::<Tick>(&bus, "market.>").await;
    let json = serde_json::to_value(tick(2)).unwrap();
    bus.publish(Event::new("market.tick", json.clone()))
        .await
        .unwrap();
    let quote = Quote {
        symbol: "S3",
        bid: 3.0,
        ask: 3.5,
        size: 3,
    };
    bus.publish(Event::typed("market.quote", quote.clone()))
        .await
        .unwrap();
    for rx in [&mut a, &mut b] {
        let from_json = recv(rx).await;
        assert_eq!((&*from_json, from_json.was_decoded()), (&tick(2), true));
        let from_quote = recv(rx).await;
        assert_eq!((&*from_quote, from_quote.was_decoded()), (&tick(3), true));
        // A typed item keeps its own payload; the JSON was built from it.
        assert_eq!(from_quote.event().payload::<Quote>().unwrap().symbol, "S3");
        assert_eq!(
            from_quote.event().data(),
            &serde_json::to_value(&quote).unwrap()
        );
    }
    bus.stop().await;
}

#[actix_rt::test]
async fn a_json_handler_gets_the_json_of_a_typed_event() {
    let bus = bus();
    let (tx, mut rx) = mpsc::unbounded_channel();
    bus.subscribe("market.tick", move |event: Event| {
        let _ = tx.send(event.data().clone());
        async { Ok(()) }
    })
    .await
    .unwrap();
    bus.publish(Event::typed("market.tick", tick(4)))
        .await
        .unwrap();
    assert_eq!(recv(&mut rx).await, serde_json::to_value(tick(4)).unwrap());
    bus.stop().await;
}

/// Decodes like `Tick`, counting how often it is asked to.
#[derive(Debug)]
struct CountedTick;

static DECODES: AtomicUsize = AtomicUsize::new(0);

impl<'de> Deserialize<'de> for CountedTick {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DECODES.fetch_add(1, Ordering::SeqCst);
        Tick::deserialize(d).map(|_| CountedTick)
    }
}

#[actix_rt::test]
async fn retries_reuse_the_decoded_value() {
    let bus = bus();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let config = create_handler_config("flaky")
        .max_retries(3)
        .retry_delay(Duration::ZERO);
    bus.subscribe_typed_with("t", config, move |_: Typed<CountedTick>| {
        let n = r.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                Err("not yet".into())
            } else {
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    bus.publish(Event::new("t", serde_json::to_value(tick(1)).unwrap()))
        .await
        .unwrap();
    bus.stop().await;
    let stats = bus.delivery_stats();
    assert_eq!((stats.processed, stats.errors, stats.retries), (1, 2, 2));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(
        DECODES.load(Ordering::SeqCst),
        1,
        "decoded once for three attempts"
    );
}

#[actix_rt::test]
async fn an_item_that_does_not_decode_is_dead_lettered_at_once() {
    let bus = bus();
    let failures = Arc::new(Mutex::new(Vec::<HandlerFailure>::new()));
    let f = failures.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let config = create_handler_config("ticks")
        .max_retries(3)
        .retry_delay(Duration::ZERO)
        .error_handler(move |failure| f.lock().unwrap().push(failure.clone()));
    bus.subscribe_typed_with("market.tick", config, move |_: Typed<Tick>| {
        r.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    })
    .await
    .unwrap();
    let (dlq_tx, mut dlq) = mpsc::unbounded_channel();
    bus.subscribe("$dlq.market.tick", move |event: Event| {
        let _ = dlq_tx.send(event);
        async { Ok(()) }
    })
    .await
    .unwrap();
    let bad = Event::new("market.tick", json!({"symbol": "S1", "bid": "high"}));
    bus.publish(bad.clone()).await.unwrap();
    bus.publish(Event::typed("market.tick", 7u8)).await.unwrap(); // another type: no fields
    bus.publish(Event::typed("market.tick", tick(1)))
        .await
        .unwrap();
    let dead = [recv(&mut dlq).await, recv(&mut dlq).await];
    bus.stop().await;

    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the good tick ran");
    let failures = failures.lock().unwrap().clone();
    assert_eq!(failures.len(), 2);
    for (failure, found) in failures.iter().zip(["serde_json::value::Value", "u8"]) {
        assert_eq!(failure.attempts, 1, "not retried: {}", failure.error);
        assert!(failure.error.contains("typed::Tick"), "{}", failure.error);
        assert!(failure.error.contains(found), "{}", failure.error);
        assert!(failure.error.contains("market.tick"), "{}", failure.error);
    }
    assert!(
        failures[0].error.contains("invalid type"),
        "{}",
        failures[0].error
    );
    assert_eq!(failures[0].item.as_event().unwrap().id(), bad.id());
    let letters = bus.dead_letters().await;
    assert_eq!(letters.len(), 2);
    assert_eq!(dead[0].data()["attempts"], 1);
    assert!(dead[0].data()["error"].as_str().unwrap().contains("Tick"));
    let stats = bus.delivery_stats();
    // The `$dlq.` subscription handled the two dead letters.
    assert_eq!(
        (
            stats.processed,
            stats.errors,
            stats.retries,
            stats.dead_letters
        ),
        (3, 2, 0, 2)
    );
    assert_eq!(bus.get_performance_metrics().await.total_errors, 2);
}

#[actix_rt::test]
async fn a_deserialize_that_panics_is_a_decode_failure() {
    #[derive(Debug)]
    struct Explodes;
    impl<'de> Deserialize<'de> for Explodes {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            panic!("boom in deserialize")
        }
    }
    let bus = bus();
    bus.subscribe_typed("x", |_: Typed<Explodes>| async { Ok(()) })
        .await
        .unwrap();
    bus.publish(Event::new("x", json!(1))).await.unwrap();
    bus.stop().await;
    let dead = bus.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1);
    assert!(
        dead[0].error.contains("boom in deserialize"),
        "{}",
        dead[0].error
    );
    assert_eq!(bus.delivery_stats().restarts, 0);
}

#[actix_rt::test]
async fn typed_events_keep_priority_order_and_reach_history() {
    let bus = bus();
    let permits = Arc::new(tokio::sync::Semaphore::new(0));
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (p, s) = (permits.clone(), seen.clone());
    bus.subscribe_typed("p", move |n: Typed<u32>| {
        let (p, s, entered_tx) = (p.clone(), s.clone(), entered_tx.clone());
        async move {
            let _ = entered_tx.send(());
            p.acquire().await.unwrap().forget();
            s.lock().unwrap().push(*n);
            Ok(())
        }
    })
    .await
    .unwrap();
    bus.publish(Event::typed("p", 0u32)).await.unwrap();
    recv(&mut entered).await; // the handler holds 0: the rest queue up
    for (n, priority) in [
        (1u32, Priority::Low),
        (2, Priority::Normal),
        (3, Priority::Critical),
        (4, Priority::High),
    ] {
        bus.publish(Event::typed("p", n).with_priority(priority))
            .await
            .unwrap();
    }
    permits.add_permits(5);
    bus.stop().await;
    assert_eq!(*seen.lock().unwrap(), [0, 3, 4, 2, 1]);
    let history = bus.history(10).await;
    let values: Vec<u32> = history
        .iter()
        .map(|e| *e.payload::<u32>().unwrap())
        .collect();
    assert_eq!(values, [0, 1, 2, 3, 4]);
    assert_eq!(history[3].to_json()["data"], 3);
}

#[actix_rt::test]
async fn synchronous_dispatch_waits_for_typed_handlers() {
    let bus = EventBus::start(EventBusConfig {
        enable_async_processing: false,
        ..EventBusConfig::default()
    })
    .unwrap();
    let total = Arc::new(AtomicUsize::new(0));
    let t = total.clone();
    bus.subscribe_typed_sync_with(
        "sum",
        create_handler_config("sum"),
        move |n: &Typed<u32>| {
            t.fetch_add(**n as usize, Ordering::SeqCst);
            Ok(())
        },
    )
    .await
    .unwrap();
    for n in 1..=10u32 {
        bus.publish(Event::typed("sum", n)).await.unwrap();
        assert_eq!(total.load(Ordering::SeqCst), (n * (n + 1) / 2) as usize);
    }
    bus.stop().await;
}

/// An app's actor that receives typed ticks.
struct TickActor(mpsc::UnboundedSender<(String, bool)>);

impl Actor for TickActor {
    type Context = Context<Self>;
}

impl Handler<Deliver<Typed<Tick>>> for TickActor {
    type Result = HandlerResult;

    fn handle(&mut self, msg: Deliver<Typed<Tick>>, _: &mut Context<Self>) -> HandlerResult {
        let _ = self.0.send((msg.0.symbol.clone(), msg.0.was_decoded()));
        Ok(())
    }
}

impl Handler<Deliver<TypedMessage<Tick>>> for TickActor {
    type Result = HandlerResult;

    fn handle(&mut self, msg: Deliver<TypedMessage<Tick>>, _: &mut Context<Self>) -> HandlerResult {
        let _ = self
            .0
            .send((msg.0.message().topic().to_owned(), msg.0.was_decoded()));
        Ok(())
    }
}

#[actix_rt::test]
async fn an_apps_actor_receives_typed_values() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let actor = TickActor(tx).start();
    let bus = bus();
    bus.subscribe_typed_recipient(
        "market.tick",
        create_handler_config("actor"),
        actor.clone().recipient(),
    )
    .await
    .unwrap();
    bus.publish(Event::typed("market.tick", tick(5)))
        .await
        .unwrap();
    bus.publish(Event::new(
        "market.tick",
        serde_json::to_value(tick(6)).unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(recv(&mut rx).await, ("S5".to_owned(), false));
    assert_eq!(recv(&mut rx).await, ("S6".to_owned(), true));
    let mq = mq();
    mq.subscribe_typed_recipient("orders", create_handler_config("actor"), actor.recipient())
        .await
        .unwrap();
    mq.publish_typed("orders", tick(7), Priority::Normal)
        .await
        .unwrap();
    assert_eq!(recv(&mut rx).await, ("orders".to_owned(), false));
    bus.stop().await;
    mq.stop().await;
}

#[actix_rt::test]
async fn a_typed_group_handles_each_message_exactly_once_under_four_publishers() {
    const PER_PUBLISHER: u32 = 2_000;
    let mq = MessageQueue::start(MessageQueueConfig {
        max_size: 256,
        max_workers: 2,
        ..MessageQueueConfig::default()
    })
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let decoded = Arc::new(AtomicUsize::new(0));
    for member in 0..4 {
        let (s, d) = (seen.clone(), decoded.clone());
        mq.subscribe_group_typed(
            "orders.new",
            "routers",
            move |order: TypedMessage<(u32, u32)>| {
                if order.was_decoded() {
                    d.fetch_add(1, Ordering::Relaxed);
                }
                s.lock().unwrap().push((member, *order));
                async { Ok(()) }
            },
        )
        .await
        .unwrap();
    }
    let publishers: Vec<_> = (0..4u32)
        .map(|p| {
            let mq = mq.clone();
            std::thread::spawn(move || {
                let mut backoff = common::Backoff::default();
                let mut ids = Vec::new();
                for n in 0..PER_PUBLISHER {
                    loop {
                        match mq.try_publish_typed("orders.new", (p, n), Priority::Normal) {
                            Ok(id) => {
                                ids.push(id);
                                backoff.reset();
                                break;
                            }
                            Err(tickwire::TryPublishError::QueueFull(_)) => backoff.wait(),
                            Err(err) => panic!("{err}"),
                        }
                    }
                }
                ids
            })
        })
        .collect();
    let ids: Vec<u64> = publishers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    mq.stop().await;
    let seen = seen.lock().unwrap();
    let mut values: Vec<(u32, u32)> = seen.iter().map(|(_, v)| *v).collect();
    values.sort_unstable();
    let expected: Vec<(u32, u32)> = (0..4)
        .flat_map(|p| (0..PER_PUBLISHER).map(move |n| (p, n)))
        .collect();
    assert_eq!(values, expected, "each message exactly once");
    assert_eq!(ids.len(), expected.len());
    assert_eq!(
        decoded.load(Ordering::Relaxed),
        0,
        "the publishers' own values"
    );
    let members: BTreeMap<u32, usize> = seen.iter().fold(BTreeMap::new(), |mut m, (member, _)| {
        *m.entry(*member).or_default() += 1;
        m
    });
    assert_eq!(members.values().sum::<usize>(), expected.len());
    let stats = mq.delivery_stats();
    assert_eq!((stats.accepted, stats.processed), (8_000, 8_000));
}

#[cfg(feature = "websocket")]
#[actix_rt::test]
async fn typed_items_through_both_bridges_and_to_a_websocket_client() {
    let bus = bus();
    let mq = mq();
    let ws = WebSocketService::start(ws_config()).unwrap();
    let server = Server::start(ws.clone());
    bridge::event_bus_to_queue(&bus, &mq, "market.tick")
        .await
        .unwrap();
    bridge::queue_to_websocket(&mq, &ws, "market.>")
        .await
        .unwrap();
    bridge::event_bus_to_websocket(&bus, &ws, "system.>")
        .await
        .unwrap();
    let (tx, mut bridged) = mpsc::unbounded_channel();
    mq.subscribe("events.market.tick", move |message: Message| {
        let _ = tx.send(message);
        async { Ok(()) }
    })
    .await
    .unwrap();
    let (mut client, _) = server.connect().await;
    for topic in ["market.data", "system.status"] {
        let ack = request(&mut client, json!({"type": "subscribe", "topic": topic})).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }

    // EventBus → MessageQueue: the message carries the event itself.
    let event = Event::typed("market.tick", tick(8)).with_priority(Priority::High);
    bus.publish(event.clone()).await.unwrap();
    let message = recv(&mut bridged).await;
    assert_eq!(
        (message.topic(), message.priority()),
        ("events.market.tick", Priority::High)
    );
    let carried = message.payload::<Event>().expect("the event, typed");
    assert!(std::ptr::eq(
        carried.payload::<Tick>().unwrap(),
        event.payload::<Tick>().unwrap()
    ));
    assert_eq!(message.data(), &event.to_json());

    // MessageQueue → WebSocket and EventBus → WebSocket: the JSON the client receives is
    // the value's.
    mq.publish_typed("market.data", tick(9), Priority::Normal)
        .await
        .unwrap();
    let frame = next_json(&mut client).await;
    assert_eq!(
        (&frame["topic"], &frame["data"]),
        (
            &json!("market.data"),
            &serde_json::to_value(tick(9)).unwrap()
        )
    );
    let status = Quote {
        symbol: "ALL",
        bid: 0.0,
        ask: 1.0,
        size: 2,
    };
    bus.publish(Event::typed("system.status", status.clone()))
        .await
        .unwrap();
    let frame = next_json(&mut client).await;
    assert_eq!(
        (&frame["topic"], &frame["data"]),
        (
            &json!("system.status"),
            &serde_json::to_value(&status).unwrap()
        )
    );
    bus.stop().await;
    mq.stop().await;
    server.shutdown().await;
}

#[cfg(feature = "websocket")]
/// Serializes like a number, counting how often it is serialized.
struct Counted(&'static AtomicUsize, u32);

#[cfg(feature = "websocket")]
impl Serialize for Counted {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        s.serialize_u32(self.1)
    }
}

#[cfg(feature = "websocket")]
#[actix_rt::test]
async fn a_typed_broadcast_is_serialized_once_for_every_client() {
    static SERIALIZED: AtomicUsize = AtomicUsize::new(0);
    let mq = mq();
    let ws = WebSocketService::start(ws_config()).unwrap();
    let server = Server::start(ws.clone());
    bridge::queue_to_websocket(&mq, &ws, "px").await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut client, _) = server.connect().await;
        let ack = request(&mut client, json!({"type": "subscribe", "topic": "px"})).await;
        assert_eq!(ack["type"], "ack");
        clients.push(client);
    }
    let message = Message::typed("px", Counted(&SERIALIZED, 42), Priority::Normal);
    mq.publish_message(message.clone()).await.unwrap();
    for client in &mut clients {
        let frame = next_json(client).await;
        assert_eq!(frame["data"], 42);
    }
    assert_eq!(
        SERIALIZED.load(Ordering::SeqCst),
        1,
        "once for three clients"
    );
    // The frame was written from the value: no `Value` was built (and kept) for it.
    assert_eq!(message.data(), &json!(42));
    assert_eq!(SERIALIZED.load(Ordering::SeqCst), 2);
    assert_eq!(message.data(), &json!(42));
    assert_eq!(
        SERIALIZED.load(Ordering::SeqCst),
        2,
        "the JSON is kept once built"
    );
    mq.stop().await;
    server.shutdown().await;
}

#[cfg(feature = "websocket")]
#[actix_rt::test]
async fn json_from_a_websocket_client_reaches_a_typed_queue_handler() {
    let mq = mq();
    let ws = WebSocketService::builder(WebSocketServiceConfig {
        allow_client_publish: true,
        ..ws_config()
    })
    .publish_to(mq.clone())
    .start()
    .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    mq.subscribe_typed("orders.new", move |order: TypedMessage<Tick>| {
        let _ = tx.send(((*order).clone(), order.was_decoded()));
        async { Ok(()) }
    })
    .await
    .unwrap();
    let server = Server::start(ws);
    let (mut client, _) = server.connect().await;
    let data: Value = serde_json::to_value(tick(10)).unwrap();
    let ack = request(
        &mut client,
        json!({"type": "publish", "topic": "orders.new", "data": data, "priority": 3}),
    )
    .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(recv(&mut rx).await, (tick(10), true));
    mq.stop().await;
    server.shutdown().await;
}

#[cfg(feature = "websocket")]
/// A payload whose `Serialize` panics.
#[derive(Debug)]
struct Explodes;

#[cfg(feature = "websocket")]
impl Serialize for Explodes {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("boom in serialize")
    }
}

#[cfg(feature = "websocket")]
#[actix_rt::test]
async fn a_payload_whose_serialize_panics_harms_neither_handlers_nor_clients() {
    // A typed handler of another type: decoding needs the JSON, which is null.
    let bus = bus();
    let mut rx = typed_forward::<Tick>(&bus, "market.tick").await;
    bus.publish(Event::typed("market.tick", Explodes))
        .await
        .unwrap();
    bus.publish(Event::typed("market.tick", tick(1)))
        .await
        .unwrap();
    assert_eq!(*recv(&mut rx).await, tick(1), "the handler goes on");
    bus.stop().await;
    let dead = bus.dead_letters().await;
    assert_eq!((dead.len(), dead[0].attempts), (1, 1));
    assert_eq!(dead[0].item.to_json()["data"], Value::Null);
    assert_eq!(bus.delivery_stats().restarts, 0);

    // A WebSocket broadcast: not sent, and it takes no seq.
    let mq = mq();
    let ws = WebSocketService::start(ws_config()).unwrap();
    let server = Server::start(ws.clone());
    bridge::queue_to_websocket(&mq, &ws, "px").await.unwrap();
    let (mut client, _) = server.connect().await;
    let ack = request(&mut client, json!({"type": "subscribe", "topic": "px"})).await;
    assert_eq!(ack["type"], "ack");
    mq.publish_typed("px", Explodes, Priority::Normal)
        .await
        .unwrap();
    mq.publish_typed("px", 5u8, Priority::Normal).await.unwrap();
    let frame = next_json(&mut client).await;
    assert_eq!((&frame["data"], &frame["seq"]), (&json!(5), &json!(1)));
    mq.stop().await;
    server.shutdown().await;
}
