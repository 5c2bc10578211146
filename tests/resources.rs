//! What is released comes back: handler actors and what their closures own, mailbox and
//! queue slots, subscription ids.
//!
//! Synchronisation is by channels and conditions; timeouts are only safety nets.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tickwire::{
    create_handler_config, Event, EventBus, EventBusConfig, MessageQueue, MessageQueueConfig,
    Priority, TryPublishError,
};
use tokio::sync::mpsc;

const SAFETY: Duration = Duration::from_secs(60);

/// Sends once on a channel when dropped: owned by a handler closure, it tells when the
/// closure (and so the handler actor that holds it) is gone.
struct DropFlag(mpsc::UnboundedSender<()>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

async fn dropped(rx: &mut mpsc::UnboundedReceiver<()>, what: &str) {
    tokio::time::timeout(SAFETY, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{what} was not dropped within the safety timeout"));
}

#[actix_rt::test]
async fn an_unsubscribed_handler_and_what_it_owns_are_dropped_with_metrics_on() {
    let bus = EventBus::start(EventBusConfig {
        max_workers: 2,
        enable_metrics: true,
        ..EventBusConfig::default()
    })
    .unwrap();
    let (tx, mut gone) = mpsc::unbounded_channel();
    let (ran_tx, mut ran) = mpsc::unbounded_channel();
    let flag = DropFlag(tx);
    let id = bus
        .subscribe("owned", move |_| {
            let _owned = &flag;
            let _ = ran_tx.send(());
            async { Ok(()) }
        })
        .await
        .unwrap();
    bus.publish(Event::new("owned", json!(1))).await.unwrap();
    tokio::time::timeout(SAFETY, ran.recv()).await.unwrap();
    assert!(bus.unsubscribe(id).await);
    dropped(&mut gone, "the closure of an unsubscribed EventBus handler").await;

    // And for a handler unsubscribed while it waits out an hour-long restart backoff.
    let (tx, mut gone) = mpsc::unbounded_channel();
    let (ran_tx, mut ran) = mpsc::unbounded_channel();
    let flag = DropFlag(tx);
    let config = create_handler_config("panics").restart_delay(Duration::from_secs(3600));
    let id = bus
        .subscribe_with(
            "panics",
            config,
            move |_| -> std::future::Ready<tickwire::HandlerResult> {
                let _owned = &flag;
                let _ = ran_tx.send(());
                panic!("the handler breaks");
            },
        )
        .await
        .unwrap();
    bus.publish(Event::new("panics", json!(1))).await.unwrap();
    tokio::time::timeout(SAFETY, ran.recv()).await.unwrap();
    assert!(bus.unsubscribe(id).await);
    dropped(
        &mut gone,
        "the closure of a handler unsubscribed in its restart backoff",
    )
    .await;
    assert_eq!(
        bus.delivery_stats().dropped,
        1,
        "the item it kept is counted"
    );

    // The same for a consumer-group member that leaves its group, and for the last one.
    let mq = MessageQueue::start(MessageQueueConfig {
        max_workers: 2,
        ..MessageQueueConfig::default()
    })
    .unwrap();
    let mut members = Vec::new();
    let mut flags = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::unbounded_channel();
        let flag = DropFlag(tx);
        let id = mq
            .subscribe_group("orders", "routers", move |_| {
                let _owned = &flag;
                std::future::ready(Ok(()))
            })
            .await
            .unwrap();
        members.push(id);
        flags.push(rx);
    }
    for n in 0..100 {
        mq.publish("orders", json!(n), Priority::Normal)
            .await
            .unwrap();
    }
    assert!(mq.unsubscribe(members[0]).await);
    dropped(&mut flags[0], "the closure of a member that left its group").await;
    assert!(mq.unsubscribe(members[1]).await);
    dropped(&mut flags[1], "the closure of a group's last member").await;
    bus.stop().await;
    mq.stop().await;
}

/// Publishes from a plain thread until told to stop, retrying a full queue with a short
/// backoff (not a busy loop); returns how many messages were accepted.
fn publisher(mq: MessageQueue, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut accepted = 0;
        let mut n = 0u64;
        let mut backoff = common::Backoff::default();
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            match mq.try_publish("churn.tick", json!(n), Priority::ALL[(n % 4) as usize]) {
                Ok(_) => {
                    accepted += 1;
                    backoff.reset();
                }
                Err(TryPublishError::QueueFull(_)) => backoff.wait(),
                Err(other) => panic!("{other}"),
            }
        }
        accepted
    })
}

#[actix_rt::test]
async fn subscribe_unsubscribe_churn_gives_every_queue_slot_back() {
    const MAX_SIZE: usize = 64;
    let mq = MessageQueue::start(MessageQueueConfig {
        max_size: MAX_SIZE,
        max_workers: 2,
        ..MessageQueueConfig::default()
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = publisher(mq.clone(), stop.clone());
    let handled = Arc::new(AtomicU64::new(0));
    for round in 0..200 {
        let h = handled.clone();
        let id = if round % 2 == 0 {
            mq.subscribe("churn.>", move |_| {
                h.fetch_add(1, Ordering::Relaxed);
                std::future::ready(Ok(()))
            })
            .await
        } else {
            mq.subscribe_group("churn.tick", "g", move |_| {
                h.fetch_add(1, Ordering::Relaxed);
                std::future::ready(Ok(()))
            })
            .await
        }
        .unwrap();
        // Leave once the publisher reached this subscription: with messages queued for
        // it, or handled (a condition, waited on with a bounded yield loop).
        let before = handled.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + SAFETY;
        while mq.total_queue_size() == 0 && handled.load(Ordering::Relaxed) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no message came"
            );
            actix_rt::task::yield_now().await;
        }
        assert!(mq.unsubscribe(id).await);
    }
    stop.store(true, Ordering::Relaxed);
    let accepted = actix_rt::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    assert!(accepted > 0, "the publisher got messages through");
    assert!(handled.load(Ordering::Relaxed) > 0, "handlers ran");
    assert_eq!(mq.subscription_count(), 0);
    assert_eq!(
        mq.total_queue_size(),
        0,
        "no subscription left, so nothing may hold a slot"
    );
    assert!(
        mq.topic_depths().values().all(|&d| d == 0),
        "{:?}",
        mq.topic_depths()
    );
    // A full batch is admitted again: every slot came back.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = create_handler_config("after").timeout(SAFETY);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    mq.subscribe_with("after", config, move |_| {
        let (g, tx) = (g.clone(), tx.clone());
        async move {
            g.acquire().await.unwrap().forget();
            let _ = tx.send(());
            Ok(())
        }
    })
    .await
    .unwrap();
    for n in 0..MAX_SIZE {
        mq.try_publish("after", json!(n), Priority::Normal)
            .unwrap_or_else(|err| panic!("slot {n} of {MAX_SIZE} was not free: {err}"));
    }
    gate.add_permits(MAX_SIZE);
    for _ in 0..MAX_SIZE {
        tokio::time::timeout(SAFETY, rx.recv()).await.unwrap();
    }
    mq.stop().await;
}

#[actix_rt::test]
async fn subscription_ids_of_different_components_never_collide() {
    let bus = EventBus::start(EventBusConfig {
        max_workers: 1,
        ..EventBusConfig::default()
    })
    .unwrap();
    let mq = MessageQueue::start(MessageQueueConfig {
        max_workers: 1,
        ..MessageQueueConfig::default()
    })
    .unwrap();
    let mut bus_ids = Vec::new();
    let mut mq_ids = Vec::new();
    for _ in 0..5 {
        bus_ids.push(bus.subscribe("a", |_| async { Ok(()) }).await.unwrap());
        mq_ids.push(
            mq.subscribe("a", |_| std::future::ready(Ok(())))
                .await
                .unwrap(),
        );
    }
    for id in &bus_ids {
        assert!(!mq_ids.contains(id), "{id} is both a bus and a queue id");
        assert!(
            !mq.unsubscribe(*id).await,
            "a bus id removed a queue subscription"
        );
    }
    for id in &mq_ids {
        assert!(!bus.unsubscribe(*id).await);
    }
    assert_eq!((bus.subscription_count(), mq.subscription_count()), (5, 5));
    bus.stop().await;
    mq.stop().await;
}
