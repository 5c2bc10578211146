//! EventBus behaviour: delivery counts, ordering, priority, patterns, backpressure, stop.
//!
//! Synchronisation is by channels and barriers; timeouts are only safety nets.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tickwire::{
    create_event, create_handler_config, Deliver, Event, EventBus, EventBusConfig, HandlerResult,
    PatternError, Priority, PublishError, SubscribeError, TryPublishError,
};
use tokio::sync::{mpsc, Semaphore};

const SAFETY: Duration = Duration::from_secs(60);

fn config() -> EventBusConfig {
    EventBusConfig {
        max_workers: 2,
        ..EventBusConfig::default()
    }
}

fn ev(name: &str, n: u64) -> Event {
    Event::new(name, json!(n))
}

fn num(event: &Event) -> u64 {
    event.data().as_u64().expect("numeric payload")
}

/// Subscribes a handler that forwards every event into a channel.
async fn forward(bus: &EventBus, pattern: &str) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    bus.subscribe(pattern, move |event| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event);
            Ok(())
        }
    })
    .await
    .unwrap();
    rx
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(SAFETY, rx.recv())
        .await
        .expect("event within the safety timeout")
        .expect("channel open")
}

/// A handler gate: the handler blocks on each event until the test adds a permit.
struct Gate {
    /// One message per event the handler starts.
    entered: mpsc::UnboundedReceiver<()>,
    /// One message per event the handler finishes.
    done: mpsc::UnboundedReceiver<()>,
    permits: Arc<Semaphore>,
}

impl Gate {
    /// Waits until the handler finished `n` more events.
    async fn finished(&mut self, n: usize) {
        for _ in 0..n {
            tokio::time::timeout(SAFETY, self.done.recv())
                .await
                .unwrap()
                .unwrap();
        }
    }
}

/// Subscribes a handler that records payloads in order and blocks each event on `gate`.
async fn gated(bus: &EventBus, pattern: &str) -> (Gate, Arc<Mutex<Vec<u64>>>) {
    // The handler waits for the test, however short the bus's default_timeout.
    gated_with(bus, pattern, create_handler_config("gated").timeout(SAFETY)).await
}

/// [`gated`], with the given handler config.
async fn gated_with(
    bus: &EventBus,
    pattern: &str,
    config: tickwire::HandlerConfig,
) -> (Gate, Arc<Mutex<Vec<u64>>>) {
    let (entered_tx, entered) = mpsc::unbounded_channel();
    let (done_tx, done) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (p, s) = (permits.clone(), seen.clone());
    bus.subscribe_with(pattern, config, move |event| {
        let (p, s, entered_tx, done_tx) =
            (p.clone(), s.clone(), entered_tx.clone(), done_tx.clone());
        async move {
            let _ = entered_tx.send(());
            p.acquire().await.unwrap().forget();
            s.lock().unwrap().push(num(&event));
            let _ = done_tx.send(());
            Ok(())
        }
    })
    .await
    .unwrap();
    (
        Gate {
            entered,
            done,
            permits,
        },
        seen,
    )
}

#[actix_rt::test]
async fn every_subscriber_gets_every_event_exactly_once() {
    let bus = EventBus::start(config()).unwrap();
    let mut a = forward(&bus, "market.tick").await;
    let mut b = forward(&bus, "market.tick").await;
    let mut other = forward(&bus, "market.trade").await;
    for n in 0..1000 {
        bus.publish(ev("market.tick", n)).await.unwrap();
    }
    bus.publish(ev("market.trade", 7)).await.unwrap();
    for rx in [&mut a, &mut b] {
        for n in 0..1000 {
            assert_eq!(num(&recv(rx).await), n);
        }
    }
    assert_eq!(num(&recv(&mut other).await), 7);
    bus.stop().await;
    assert!(a.try_recv().is_err() && b.try_recv().is_err() && other.try_recv().is_err());
}

#[actix_rt::test]
async fn fifo_per_subscription_within_a_priority_from_many_publishers() {
    let bus = EventBus::start(config()).unwrap();
    let mut rx = forward(&bus, "orders.>").await;
    let publishers: Vec<_> = (0..4u64)
        .map(|p| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for i in 0..5000u64 {
                    let mut e =
                        create_event("orders.new", json!(p * 1_000_000 + i), Priority::High);
                    let mut backoff = common::Backoff::default();
                    loop {
                        match bus.try_publish(e) {
                            Ok(()) => break,
                            Err(TryPublishError::QueueFull(back)) => {
                                e = back;
                                backoff.wait();
                            }
                            Err(other) => panic!("{other}"),
                        }
                    }
                }
            })
        })
        .collect();
    let mut next = [0u64; 4];
    for _ in 0..20_000 {
        let n = num(&recv(&mut rx).await);
        let (p, i) = ((n / 1_000_000) as usize, n % 1_000_000);
        assert_eq!(i, next[p], "publisher {p} out of order");
        next[p] += 1;
    }
    for t in publishers {
        t.join().unwrap();
    }
    assert_eq!(next, [5000; 4]);
    bus.stop().await;
}

#[actix_rt::test]
async fn critical_behind_a_thousand_low_is_handled_first() {
    let bus = EventBus::start(config()).unwrap();
    let (mut gate, seen) = gated(&bus, "risk.>").await;
    // Event 0 occupies the handler; then 1000 LOW and one CRITICAL queue up behind it.
    bus.publish(create_event("risk.check", json!(0), Priority::Low))
        .await
        .unwrap();
    gate.entered.recv().await.unwrap();
    for n in 1..=1000 {
        bus.publish(create_event("risk.check", json!(n), Priority::Low))
            .await
            .unwrap();
    }
    bus.publish(create_event("risk.limit", json!(9999), Priority::Critical))
        .await
        .unwrap();
    gate.permits.add_permits(1002);
    bus.stop().await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1002);
    assert_eq!(seen[0], 0);
    assert_eq!(
        seen[1], 9999,
        "CRITICAL handled right after the event in hand"
    );
    assert_eq!(&seen[2..], (1..=1000).collect::<Vec<u64>>().as_slice());
}

#[actix_rt::test]
async fn low_progresses_under_a_steady_critical_flood() {
    let bus = EventBus::start(config()).unwrap();
    let (mut gate, seen) = gated(&bus, "flood.>").await;
    bus.publish(create_event("flood.x", json!(0), Priority::Critical))
        .await
        .unwrap();
    gate.entered.recv().await.unwrap();
    // 10 LOW events behind 2000 CRITICAL ones that are all waiting at once.
    for n in 1..=10 {
        bus.publish(create_event("flood.low", json!(n), Priority::Low))
            .await
            .unwrap();
    }
    for n in 100..2100 {
        bus.publish(create_event("flood.crit", json!(n), Priority::Critical))
            .await
            .unwrap();
    }
    gate.permits.add_permits(10_000);
    bus.stop().await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2011);
    let positions: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, &n)| (1..=10).contains(&n))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(positions.len(), 10);
    // Every LOW event is handled while CRITICAL ones still wait, one per
    // STARVATION_LIMIT + 1 pops, not after the flood.
    let period = tickwire::STARVATION_LIMIT as usize + 1;
    let expected: Vec<usize> = (1..=10).map(|k| k * period).collect();
    assert_eq!(positions, expected);
}

#[actix_rt::test]
async fn wildcard_subscriptions_match_the_table() {
    let bus = EventBus::start(config()).unwrap();
    let patterns = ["system.*", "system.>", "*.alert", "system.alert", ">"];
    let mut receivers = Vec::new();
    for p in patterns {
        receivers.push(forward(&bus, p).await);
    }
    let names = [
        "system.alert",
        "system.alert.cpu",
        "market.alert",
        "system",
        "market.tick",
    ];
    for (i, name) in names.iter().enumerate() {
        bus.publish(ev(name, i as u64)).await.unwrap();
    }
    bus.stop().await;
    let got: Vec<Vec<&str>> = receivers
        .iter_mut()
        .map(|rx| {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|e| names[num(&e) as usize])
                .collect()
        })
        .collect();
    assert_eq!(got[0], ["system.alert"]);
    assert_eq!(got[1], ["system.alert", "system.alert.cpu"]);
    assert_eq!(got[2], ["system.alert", "market.alert"]);
    assert_eq!(got[3], ["system.alert"]);
    assert_eq!(got[4], names);
}

#[actix_rt::test]
async fn invalid_patterns_and_names_are_clear_errors() {
    let bus = EventBus::start(config()).unwrap();
    let err = bus
        .subscribe("a.>.b", |_| async { Ok(()) })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        SubscribeError::InvalidPattern(PatternError::TailNotLast { .. })
    ));
    assert_eq!(
        err.to_string(),
        "invalid pattern \"a.>.b\": `>` may only be the last token"
    );
    let err = bus.subscribe("", |_| async { Ok(()) }).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid pattern \"\": it is empty");

    let err = bus.publish(ev("market.*", 1)).await.unwrap_err();
    assert!(matches!(
        err,
        PublishError::InvalidName(_, PatternError::Wildcard { .. })
    ));
    assert_eq!(err.into_inner().name(), "market.*");
    let err = bus.try_publish(ev("market..tick", 1)).unwrap_err();
    assert!(matches!(
        err,
        TryPublishError::InvalidName(_, PatternError::EmptyToken { position: 2, .. })
    ));
    bus.stop().await;
}

#[actix_rt::test]
async fn unsubscribe_stops_delivery() {
    let bus = EventBus::start(config()).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let (ran_tx, mut ran) = mpsc::unbounded_channel();
    let c = count.clone();
    let id = bus
        .subscribe("a", move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            let _ = ran_tx.send(());
            async { Ok(()) }
        })
        .await
        .unwrap();
    let mut witness = forward(&bus, "a").await;
    bus.publish(ev("a", 1)).await.unwrap();
    recv(&mut witness).await;
    // The two handlers share no worker guarantee: wait until the first one ran too.
    tokio::time::timeout(SAFETY, ran.recv()).await.unwrap();
    assert!(bus.unsubscribe(id).await);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    for n in 0..100 {
        bus.publish(ev("a", n)).await.unwrap();
    }
    for _ in 0..100 {
        recv(&mut witness).await;
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "nothing after unsubscribe returned"
    );
    assert!(
        !bus.unsubscribe(id).await,
        "second unsubscribe finds nothing"
    );
    assert_eq!(bus.subscription_count(), 1);
    bus.stop().await;
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn backpressure_hands_the_event_back() {
    let bus = EventBus::start(EventBusConfig {
        queue_size: 3,
        default_timeout: Duration::from_millis(200),
        ..config()
    })
    .unwrap();
    let (mut gate, seen) = gated(&bus, "q").await;
    let mut fast = forward(&bus, "q").await;
    bus.try_publish(ev("q", 0)).unwrap();
    gate.entered.recv().await.unwrap(); // event 0 is in hand: 3 slots free again
    assert_eq!(num(&recv(&mut fast).await), 0); // and the fast subscriber's are free
    for n in 1..=3 {
        bus.try_publish(ev("q", n)).unwrap();
    }
    let err = bus.try_publish(ev("q", 4)).unwrap_err();
    assert!(matches!(err, TryPublishError::QueueFull(_)), "{err:?}");
    assert_eq!(num(&err.into_inner()), 4);
    // publish waits default_timeout, then gives up with the event.
    let err = bus.publish(ev("q", 5)).await.unwrap_err();
    assert!(matches!(err, PublishError::QueueFull(ref e) if num(e) == 5));
    // A publish is all-or-nothing: the fast subscriber did not get 4 or 5 either.
    for n in 1..=3 {
        assert_eq!(num(&recv(&mut fast).await), n);
    }
    // A waiting publish goes through once the slow handler makes room.
    let waiting = {
        let bus = bus.clone();
        actix_rt::spawn(async move { bus.publish(ev("q", 6)).await })
    };
    gate.permits.add_permits(100);
    waiting.await.unwrap().unwrap();
    assert_eq!(num(&recv(&mut fast).await), 6);
    gate.finished(5).await; // 0, 1, 2, 3, 6: stop's drain bound is short in this test
    bus.stop().await;
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2, 3, 6]);
}

#[actix_rt::test]
async fn publish_waits_for_room_instead_of_dropping() {
    let bus = EventBus::start(EventBusConfig {
        queue_size: 4,
        ..config()
    })
    .unwrap();
    let (mut gate, seen) = gated(&bus, "slow").await;
    bus.publish(ev("slow", 0)).await.unwrap();
    gate.entered.recv().await.unwrap(); // 0 in hand
    for n in 1..=4 {
        bus.publish(ev("slow", n)).await.unwrap(); // the mailbox is full
    }
    // A publish into the full mailbox can only return once the handler takes event 1,
    // which it does only after the test lets event 0 finish: the log proves the wait.
    let log = Arc::new(Mutex::new(Vec::new()));
    let waiting = {
        let (bus, log) = (bus.clone(), log.clone());
        actix_rt::spawn(async move {
            let result = bus.publish(ev("slow", 5)).await;
            log.lock().unwrap().push("publish returned");
            result
        })
    };
    for _ in 0..10 {
        actix_rt::task::yield_now().await; // the publish runs, finds no room, waits
    }
    assert!(!waiting.is_finished(), "no room: the publish waits");
    log.lock().unwrap().push("permit for event 0");
    gate.permits.add_permits(1);
    waiting.await.unwrap().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["permit for event 0", "publish returned"]
    );
    // Then a long run of publishes, each waiting for room as needed: nothing dropped.
    gate.permits.add_permits(10_000);
    for n in 6..2000 {
        bus.publish(ev("slow", n)).await.unwrap();
    }
    bus.stop().await;
    assert_eq!(*seen.lock().unwrap(), (0..2000).collect::<Vec<u64>>());
    assert_eq!(bus.delivery_stats().dropped, 0);
}

#[actix_rt::test]
async fn stop_drains_accepted_events_then_refuses() {
    let bus = EventBus::start(config()).unwrap();
    let (gate, seen) = gated(&bus, "work").await;
    for n in 0..500 {
        bus.try_publish(ev("work", n)).unwrap();
    }
    gate.permits.add_permits(500);
    bus.stop().await;
    assert_eq!(*seen.lock().unwrap(), (0..500).collect::<Vec<u64>>());
    let err = bus.publish(ev("work", 1)).await.unwrap_err();
    assert!(matches!(err, PublishError::Stopped(_)));
    assert!(matches!(
        bus.try_publish(ev("nobody.listens", 1)),
        Err(TryPublishError::Stopped(_))
    ));
    assert_eq!(
        bus.subscribe("x", |_| async { Ok(()) }).await.unwrap_err(),
        SubscribeError::Stopped
    );
    bus.stop().await; // a second stop returns at once
}

#[actix_rt::test]
async fn history_keeps_the_latest_newest_last() {
    let bus = EventBus::start(EventBusConfig {
        max_history: 5,
        ..config()
    })
    .unwrap();
    for n in 0..12 {
        bus.publish(ev("h", n)).await.unwrap();
    }
    let h: Vec<u64> = bus.history(100).await.iter().map(num).collect();
    assert_eq!(h, [7, 8, 9, 10, 11]);
    let h: Vec<u64> = bus.history(2).await.iter().map(num).collect();
    assert_eq!(h, [10, 11]);
    bus.stop().await;
}

#[actix_rt::test]
async fn sync_dispatch_returns_after_handlers_ran() {
    let bus = EventBus::start(EventBusConfig {
        enable_async_processing: false,
        ..config()
    })
    .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let c = count.clone();
        bus.subscribe("s.>", move |_| {
            let c = c.clone();
            async move {
                tokio::task::yield_now().await;
                c.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await
        .unwrap();
    }
    for n in 1..=50 {
        bus.publish(ev("s.x", n)).await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 3 * n as usize);
    }
    bus.stop().await;
}

#[actix_rt::test]
async fn sync_dispatch_gives_up_waiting_after_the_timeout_without_losing_the_event() {
    let bus = EventBus::start(EventBusConfig {
        enable_async_processing: false,
        default_timeout: Duration::from_millis(100),
        ..config()
    })
    .unwrap();
    let (mut gate, seen) = gated(&bus, "slow").await;
    let err = bus.publish(ev("slow", 1)).await.unwrap_err();
    assert!(
        matches!(err, PublishError::HandlerTimeout(ref e) if num(e) == 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("accepted"), "{err}");
    gate.permits.add_permits(1);
    gate.finished(1).await;
    bus.stop().await;
    assert_eq!(*seen.lock().unwrap(), [1], "handled once, after all");
}

#[actix_rt::test]
async fn sync_handlers_and_actor_recipients_are_delivered_to() {
    use actix::prelude::*;

    struct Collector(mpsc::UnboundedSender<u64>);
    impl Actor for Collector {
        type Context = Context<Self>;
    }
    impl Handler<Deliver<Event>> for Collector {
        type Result = HandlerResult;
        fn handle(&mut self, msg: Deliver<Event>, _: &mut Context<Self>) -> HandlerResult {
            self.0.send(num(&msg.0)).map_err(|e| e.to_string().into())
        }
    }

    let bus = EventBus::start(config()).unwrap();
    let (tx, mut actor_rx) = mpsc::unbounded_channel();
    let recipient = Collector(tx).start().recipient();
    bus.subscribe_recipient("r", create_handler_config("collector"), recipient)
        .await
        .unwrap();
    let (tx, mut sync_rx) = mpsc::unbounded_channel();
    bus.subscribe_sync("r", move |e| {
        std::thread::sleep(Duration::from_micros(50)); // blocking is allowed here
        tx.send(num(e)).map_err(|e| e.to_string().into())
    })
    .await
    .unwrap();
    for n in 0..100 {
        bus.publish(ev("r", n)).await.unwrap();
    }
    bus.stop().await;
    let actor: Vec<u64> = std::iter::from_fn(|| actor_rx.try_recv().ok()).collect();
    let sync: Vec<u64> = std::iter::from_fn(|| sync_rx.try_recv().ok()).collect();
    assert_eq!(actor, (0..100).collect::<Vec<_>>());
    assert_eq!(sync, (0..100).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn handler_errors_do_not_stop_delivery_and_higher_priority_handlers_go_first() {
    let bus = EventBus::start(EventBusConfig {
        max_workers: 1,
        enable_async_processing: false,
        ..config()
    })
    .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    for (name, p) in [
        ("low", Priority::Low),
        ("critical", Priority::Critical),
        ("normal", Priority::Normal),
    ] {
        let o = order.clone();
        let config = create_handler_config(name)
            .priority(p)
            .retry_on_error(false);
        bus.subscribe_with("p", config, move |_| {
            o.lock().unwrap().push(name);
            async move {
                if name == "normal" {
                    Err("normal handler fails".into())
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap();
    }
    for n in 0..3 {
        bus.publish(ev("p", n)).await.unwrap();
        // Sync dispatch waited for all three; the higher-priority handler got it first.
        assert_eq!(
            order.lock().unwrap()[3 * n as usize..],
            ["critical", "normal", "low"],
            "event {n}"
        );
    }
    bus.stop().await;
    // A failing handler keeps receiving.
    assert_eq!(order.lock().unwrap().len(), 9);
    assert_eq!(bus.delivery_stats().dead_letters, 3);
}

#[actix_rt::test]
async fn panicking_handler_does_not_take_down_the_worker() {
    // Retries and restarts are covered in tests/supervision.rs; here, no retries.
    let bus = EventBus::start(EventBusConfig {
        max_workers: 1,
        enable_retry: false,
        ..config()
    })
    .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    bus.subscribe("p", move |e| {
        let n = num(&e);
        // Every sixth event panics in the closure's synchronous part, every other third
        // one inside the future it returns: both are caught.
        if n.is_multiple_of(6) {
            panic!("boom before the future for {n}");
        }
        let tx = tx.clone();
        async move {
            if n.is_multiple_of(3) {
                panic!("boom in the future for {n}");
            }
            let _ = tx.send(n);
            Ok(())
        }
    })
    .await
    .unwrap();
    let mut other = forward(&bus, "p").await;
    for n in 0..30 {
        bus.publish(ev("p", n)).await.unwrap();
    }
    bus.stop().await;
    let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert_eq!(got, (0..30).filter(|n| n % 3 != 0).collect::<Vec<_>>());
    let other: Vec<u64> = std::iter::from_fn(|| other.try_recv().ok())
        .map(|e| num(&e))
        .collect();
    assert_eq!(other, (0..30).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn stress_many_publishers_subscribers_and_random_unsubscribes() {
    use rand::{RngExt, SeedableRng};

    const PUBLISHERS: u64 = 4;
    const EVENTS: u64 = 100_000;
    let bus = EventBus::start(EventBusConfig {
        max_workers: 4,
        queue_size: 1024,
        ..EventBusConfig::default()
    })
    .unwrap();

    // Four live subscribers that must see everything, exactly once.
    let live: Vec<Arc<Mutex<Vec<u64>>>> =
        (0..4).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    for (i, sink) in live.iter().enumerate() {
        let sink = sink.clone();
        let pattern = ["stress.*", "stress.>", "stress.tick", ">"][i];
        bus.subscribe(pattern, move |e| {
            sink.lock().unwrap().push(num(&e));
            async { Ok(()) }
        })
        .await
        .unwrap();
    }
    // Churn: subscriptions that come and go while publishing; they may see any subset,
    // but never a duplicate.
    let churn_seen: Arc<Mutex<Vec<Vec<u64>>>> = Arc::default();

    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for p in 0..PUBLISHERS {
        let bus = bus.clone();
        let done_tx = done_tx.clone();
        std::thread::spawn(move || {
            for i in 0..EVENTS {
                let mut e = Event::new("stress.tick", json!(p * EVENTS + i))
                    .with_priority(Priority::ALL[(i % 4) as usize]);
                let mut backoff = common::Backoff::default();
                loop {
                    match bus.try_publish(e) {
                        Ok(()) => break,
                        Err(TryPublishError::QueueFull(back)) => {
                            e = back;
                            backoff.wait();
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            }
            done_tx.send(()).unwrap();
        });
    }
    drop(done_tx);

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut active = Vec::new();
    let mut finished = 0;
    while finished < PUBLISHERS {
        tokio::select! {
            msg = done_rx.recv() => match msg {
                Some(()) => finished += 1,
                None => break,
            },
            _ = tokio::task::yield_now() => {
                if active.len() < 6 && rng.random_bool(0.5) {
                    let sink = Arc::new(Mutex::new(Vec::new()));
                    let s = sink.clone();
                    let id = bus.subscribe("stress.tick", move |e| {
                        s.lock().unwrap().push(num(&e));
                        async { Ok(()) }
                    }).await.unwrap();
                    active.push((id, sink));
                } else if !active.is_empty() {
                    let (id, sink) = active.swap_remove(rng.random_range(0..active.len()));
                    assert!(bus.unsubscribe(id).await);
                    churn_seen.lock().unwrap().push(std::mem::take(&mut *sink.lock().unwrap()));
                }
            }
        }
    }
    bus.stop().await;

    let total = (PUBLISHERS * EVENTS) as usize;
    for sink in &live {
        let mut seen = sink.lock().unwrap().clone();
        assert_eq!(
            seen.len(),
            total,
            "a live subscriber lost or duplicated events"
        );
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), total, "duplicates");
        assert_eq!(seen.first(), Some(&0));
        assert_eq!(seen.last(), Some(&(total as u64 - 1)));
    }
    for (_, sink) in active {
        churn_seen
            .lock()
            .unwrap()
            .push(sink.lock().unwrap().clone());
    }
    let churn = churn_seen.lock().unwrap();
    assert!(churn.len() > 1, "the churn loop ran");
    for seen in churn.iter() {
        let unique: HashSet<&u64> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "a churned subscriber saw a duplicate"
        );
    }
}

#[actix_rt::test]
async fn stop_without_subscriptions_returns_and_refuses_later_publishes() {
    let bus = EventBus::start(config()).unwrap();
    bus.publish(ev("nobody", 1)).await.unwrap(); // accepted, delivered to no one
    tokio::time::timeout(SAFETY, bus.stop()).await.unwrap();
    assert!(matches!(
        bus.try_publish(ev("nobody", 2)),
        Err(TryPublishError::Stopped(ref e)) if num(e) == 2
    ));
    let names: Vec<u64> = bus.history(10).await.iter().map(num).collect();
    assert_eq!(names, [1], "the one accepted event is in the history");
    assert_eq!(
        bus.delivery_stats(),
        tickwire::DeliveryStats::default(),
        "nothing delivered, nothing dropped"
    );
}

#[test]
fn start_outside_a_system_is_an_error() {
    let err = EventBus::start(EventBusConfig::default()).unwrap_err();
    assert!(
        err.to_string().contains("inside a running actix System"),
        "{err}"
    );
    let err = EventBus::start(EventBusConfig {
        max_workers: 0,
        ..EventBusConfig::default()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: `max_workers` must be in 1..=1024, got 0"
    );
}

#[test]
fn handle_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<EventBus>();
    check::<Event>();
}

#[actix_rt::test]
async fn a_stop_that_times_out_counts_what_it_discards() {
    let bus = EventBus::start(EventBusConfig {
        default_timeout: Duration::from_millis(100),
        ..config()
    })
    .unwrap();
    let (mut gate, seen) = gated(&bus, "stuck").await; // never given a permit
    for n in 0..10 {
        bus.publish(ev("stuck", n)).await.unwrap();
    }
    gate.entered.recv().await.unwrap(); // event 0 in hand, 9 queued
    bus.stop().await; // waits 100 ms, then gives up
    let stats = bus.delivery_stats();
    assert_eq!(
        (stats.accepted, stats.dropped, stats.processed),
        (10, 10, 0),
        "the 9 queued events and the one in hand are accounted for, once"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[actix_rt::test]
async fn low_events_leave_an_eighth_of_the_mailbox_to_more_urgent_ones() {
    let bus = EventBus::start(EventBusConfig {
        queue_size: 16,
        default_timeout: Duration::from_millis(100),
        ..config()
    })
    .unwrap();
    let (mut gate, seen) = gated(&bus, "h.>").await;
    // Event 0 is in the handler's hands (out of the mailbox); then LOW fills 14 of 16.
    bus.try_publish(ev("h.x", 0)).unwrap();
    gate.entered.recv().await.unwrap();
    for n in 1..=14 {
        bus.try_publish(ev("h.low", n).with_priority(Priority::Low))
            .unwrap();
    }
    let refused = bus.try_publish(ev("h.low", 15).with_priority(Priority::Low));
    assert!(matches!(refused, Err(TryPublishError::QueueFull(_))));
    // publish waits for room for LOW, and the room is not there: QueueFull after the timeout.
    let waited = bus
        .publish(ev("h.low", 16).with_priority(Priority::Low))
        .await;
    assert!(matches!(waited, Err(PublishError::QueueFull(_))));
    // The last two slots are there for anything more urgent.
    bus.try_publish(ev("h.crit", 100).with_priority(Priority::Critical))
        .unwrap();
    bus.try_publish(ev("h.norm", 101)).unwrap();
    assert!(matches!(
        bus.try_publish(ev("h.crit", 102).with_priority(Priority::Critical)),
        Err(TryPublishError::QueueFull(_))
    ));
    gate.permits.add_permits(100);
    gate.finished(17).await; // stop's drain bound is short in this test
    bus.stop().await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 17);
    assert_eq!(&seen[..3], &[0, 100, 101], "the urgent ones first");
}

#[actix_rt::test]
async fn a_low_event_never_evicts_a_more_urgent_one() {
    use tickwire::OverflowPolicy;
    let bus = EventBus::start(EventBusConfig {
        queue_size: 16,
        ..config()
    })
    .unwrap();
    let config = create_handler_config("evicting")
        .overflow(OverflowPolicy::DropOldest)
        .timeout(SAFETY);
    let (mut gate, seen) = gated_with(&bus, "e.>", config).await;
    bus.publish(ev("e.first", 0)).await.unwrap();
    gate.entered.recv().await.unwrap(); // in hand: the 16 slots are free
    for n in 1..=14 {
        bus.publish(ev("e.crit", n).with_priority(Priority::Critical))
            .await
            .unwrap();
    }
    // 14 of 16 taken: LOW may not take more, and may not evict a CRITICAL event either.
    bus.publish(ev("e.low", 100).with_priority(Priority::Low))
        .await
        .unwrap();
    assert_eq!(bus.delivery_stats().dropped, 1, "the LOW event was dropped");
    // With a NORMAL event queued too, LOW still finds only more urgent ones to evict.
    bus.publish(ev("e.normal", 15)).await.unwrap();
    bus.publish(ev("e.low", 101).with_priority(Priority::Low))
        .await
        .unwrap();
    assert_eq!(bus.delivery_stats().dropped, 2);
    gate.permits.add_permits(100);
    gate.finished(16).await;
    bus.stop().await;
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        (0..=15).collect::<Vec<u64>>(),
        "no urgent event lost"
    );
}

#[actix_rt::test]
async fn a_worker_runs_its_woken_handlers_by_handler_priority() {
    let bus = EventBus::start(EventBusConfig {
        max_workers: 1,
        ..EventBusConfig::default()
    })
    .unwrap();
    // A handler that holds the only worker thread until released, so that the others
    // are woken while it cannot run them.
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    bus.subscribe("block", move |_| {
        let _ = entered_tx.send(());
        let _ = release_rx.lock().unwrap().recv(); // blocks the worker thread
        async { Ok(()) }
    })
    .await
    .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, mut done) = mpsc::unbounded_channel();
    for (name, priority) in [
        ("w.low", Priority::Low),
        ("w.normal", Priority::Normal),
        ("w.high", Priority::High),
        ("w.critical", Priority::Critical),
    ] {
        let (o, done_tx) = (order.clone(), done_tx.clone());
        bus.subscribe_with(
            name,
            create_handler_config(name).priority(priority),
            move |_| {
                o.lock().unwrap().push(name);
                let _ = done_tx.send(());
                async { Ok(()) }
            },
        )
        .await
        .unwrap();
    }
    // Each handler actor has run once (started, and idle since).
    for name in ["w.low", "w.normal", "w.high", "w.critical"] {
        bus.publish(ev(name, 0)).await.unwrap();
    }
    for _ in 0..4 {
        tokio::time::timeout(SAFETY, done.recv()).await.unwrap();
    }
    order.lock().unwrap().clear();
    bus.publish(ev("block", 0)).await.unwrap();
    entered.recv().await.unwrap(); // the worker thread is held
                                   // Woken lowest first, each on its own event name.
    for name in ["w.low", "w.normal", "w.high", "w.critical"] {
        bus.publish(ev(name, 1)).await.unwrap();
    }
    release_tx.send(()).unwrap();
    for _ in 0..4 {
        tokio::time::timeout(SAFETY, done.recv()).await.unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        ["w.critical", "w.high", "w.normal", "w.low"]
    );
    bus.stop().await;
}

#[actix_rt::test]
async fn a_draining_handler_yields_its_worker_to_a_more_urgent_one() {
    let bus = EventBus::start(EventBusConfig {
        max_workers: 1,
        ..EventBusConfig::default()
    })
    .unwrap();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let order = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let (o, d) = (order.clone(), done_tx.clone());
    // A LOW handler with a backlog: its first event holds the worker thread.
    bus.subscribe_with(
        "bulk",
        create_handler_config("bulk").priority(Priority::Low),
        move |e| {
            if num(&e) == 0 {
                let _ = entered_tx.send(());
                let _ = release_rx.lock().unwrap().recv();
            }
            o.lock().unwrap().push(format!("bulk {}", num(&e)));
            let _ = d.send(());
            async { Ok(()) }
        },
    )
    .await
    .unwrap();
    let o = order.clone();
    bus.subscribe_with(
        "urgent",
        create_handler_config("urgent").priority(Priority::Critical),
        move |_| {
            o.lock().unwrap().push("urgent".to_owned());
            let _ = done_tx.send(());
            async { Ok(()) }
        },
    )
    .await
    .unwrap();
    bus.publish(ev("urgent", 0)).await.unwrap(); // started, and idle since
    tokio::time::timeout(SAFETY, done.recv()).await.unwrap();
    order.lock().unwrap().clear();
    bus.publish(ev("bulk", 0)).await.unwrap();
    entered.recv().await.unwrap();
    for n in 1..=200 {
        bus.publish(ev("bulk", n)).await.unwrap();
    }
    bus.publish(ev("urgent", 1)).await.unwrap();
    release_tx.send(()).unwrap();
    for _ in 0..202 {
        tokio::time::timeout(SAFETY, done.recv()).await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order[..3],
        ["bulk 0", "urgent", "bulk 1"],
        "the urgent handler runs as soon as the bulk one finishes an event"
    );
    bus.stop().await;
}

#[actix_rt::test]
async fn a_synchronous_publish_returns_with_its_event_counted() {
    let bus = EventBus::start(EventBusConfig {
        enable_async_processing: false,
        ..EventBusConfig::default()
    })
    .unwrap();
    bus.subscribe("n", |_| async { Ok(()) }).await.unwrap();
    for n in 1..=20 {
        bus.publish(ev("n", n)).await.unwrap();
        assert_eq!(bus.delivery_stats().processed, n);
    }
    bus.stop().await;
}

#[actix_rt::test]
async fn what_was_handled_is_counted_while_a_later_event_waits_for_its_retry() {
    let bus = EventBus::start(EventBusConfig::default()).unwrap();
    let config = create_handler_config("flaky")
        .max_retries(1)
        .retry_delay(Duration::from_secs(3600));
    bus.subscribe_with("n", config, |event| async move {
        if num(&event) == 4 {
            Err("not this one".into())
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
    for n in 1..=4 {
        bus.publish(ev("n", n)).await.unwrap();
    }
    // The retry of event 4 waits an hour; the three before it are counted meanwhile.
    common::eventually("three processed", SAFETY, || {
        let stats = bus.delivery_stats();
        stats.retries == 1 && stats.processed == 3
    })
    .await;
}
