//! Memory stays bounded whatever names clients invent: per-topic state is reclaimed,
//! caches are bounded, and one name length limit holds everywhere.
//!
//! The tests that read the process's RSS take a lock, so that no other test of this
//! binary allocates beside them. (Each test runs its own actix System on its own thread,
//! so holding that lock across its awaits blocks only other tests.)

#![allow(clippy::await_holding_lock)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tickwire::{
    Event, EventBus, EventBusConfig, MessageQueue, MessageQueueConfig, PatternError, Priority,
    PublishError, SubscribeError, TryPublishError, WebSocketService, WebSocketServiceConfig,
    MAX_NAME_BYTES,
};

const SAFETY: Duration = Duration::from_secs(120);
/// What the RSS may grow by over rounds after the first (which warms up allocator pools
/// and bounded caches). Keeping every name of a round would take well over this.
const RSS_SLACK: u64 = 16 << 20;

static MEMORY: Mutex<()> = Mutex::new(());

/// The process's resident set size, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// A distinct, long name: round `r`, item `n`.
fn name(r: u64, n: u64) -> String {
    format!("t{r}.n{n}.{}", "x".repeat(200))
}

#[actix_rt::test]
async fn invented_queue_topics_leave_bounded_counters_and_memory() {
    const TOPICS: u64 = 100_000;
    let _alone = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    // Counters are reclaimed in sweeps, so they may number up to about twice the topics
    // in flight (at most max_size) plus a sweep's threshold (4096): under 10,000 here.
    let mq = MessageQueue::start(MessageQueueConfig {
        max_workers: 2,
        max_size: 1024,
        ..MessageQueueConfig::default()
    })
    .unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    for round in 0..3 {
        let h = handled.clone();
        mq.subscribe(&format!("t{round}.>"), move |_| {
            h.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok(()))
        })
        .await
        .unwrap();
    }
    let mut after_round = Vec::new();
    for round in 0..3 {
        for n in 0..TOPICS {
            mq.publish(&name(round, n), json!(n), Priority::Normal)
                .await
                .unwrap();
        }
        // And as many again that nobody subscribed to: no counter at all.
        for n in 0..TOPICS / 10 {
            let topic = format!("nobody.{}", name(round, n));
            mq.publish(&topic, json!(n), Priority::Normal)
                .await
                .unwrap();
        }
        let expected = (round + 1) * TOPICS;
        let deadline = std::time::Instant::now() + SAFETY;
        while handled.load(Ordering::Relaxed) < expected {
            assert!(std::time::Instant::now() < deadline, "handlers fell behind");
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
        let counters = mq.depth_counters();
        assert!(
            counters < 10_000,
            "round {round}: {counters} per-topic counters after {expected} topics"
        );
        after_round.push(rss());
    }
    assert_eq!(mq.total_queue_size(), 0);
    let growth = after_round[2].saturating_sub(after_round[0]);
    assert!(
        growth < RSS_SLACK,
        "RSS grew by {growth} bytes over two rounds of {TOPICS} new topics: {after_round:?}"
    );
    mq.stop().await;
}

#[actix_rt::test]
async fn invented_event_names_leave_bounded_memory() {
    const NAMES: u64 = 100_000;
    let _alone = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let bus = EventBus::start(EventBusConfig {
        max_workers: 2,
        max_history: 10,
        ..EventBusConfig::default()
    })
    .unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    // A pattern subscription: every name is matched, and the match cached.
    bus.subscribe("t0.>", move |_| {
        h.fetch_add(1, Ordering::Relaxed);
        async { Ok(()) }
    })
    .await
    .unwrap();
    let mut after_round = Vec::new();
    for round in 0..3 {
        for n in 0..NAMES {
            // Round 0's names match; later rounds' are new names that match nothing.
            bus.publish(Event::new(name(round, n), json!(n)))
                .await
                .unwrap();
        }
        after_round.push(rss());
    }
    let deadline = std::time::Instant::now() + SAFETY;
    while handled.load(Ordering::Relaxed) < NAMES {
        assert!(std::time::Instant::now() < deadline, "handlers fell behind");
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    let growth = after_round[2].saturating_sub(after_round[0]);
    assert!(
        growth < RSS_SLACK,
        "RSS grew by {growth} bytes over two rounds of {NAMES} new names: {after_round:?}"
    );
    bus.stop().await;
}

#[actix_rt::test]
async fn invented_websocket_topics_leave_bounded_memory() {
    use actix_http::ws::{Frame, Message};
    const TOPICS: u64 = 50_000;
    let _alone = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let ws = WebSocketService::start(WebSocketServiceConfig {
        enable_compression: false,
        max_queued_bytes: 1 << 30,
        ..WebSocketServiceConfig::default()
    })
    .unwrap();
    let server = common::ws::Server::start(ws.clone());
    let (mut conn, _) = server.connect().await;
    let ack = common::ws::request(&mut conn, json!({"type":"subscribe","topic":"t0.>"})).await;
    assert_eq!(ack["type"], "ack");
    // The reader drains the session while the broadcasts go on.
    let reader = actix_rt::spawn(async move {
        let mut messages = 0u64;
        while messages < TOPICS {
            match tokio::time::timeout(SAFETY, conn.next()).await {
                Ok(Some(Ok(Frame::Text(_)))) => messages += 1,
                Ok(Some(Ok(Frame::Ping(p)))) => conn.send(Message::Pong(p)).await.unwrap(),
                other => panic!("{other:?}"),
            }
        }
        messages
    });
    let mut after_round = Vec::new();
    for round in 0..3 {
        for n in 0..TOPICS {
            // Round 0's topics reach the client; later rounds' reach nobody.
            ws.broadcast(&name(round, n), json!(n)).await;
        }
        after_round.push(rss());
    }
    assert_eq!(reader.await.unwrap(), TOPICS);
    let growth = after_round[2].saturating_sub(after_round[0]);
    assert!(
        growth < RSS_SLACK,
        "RSS grew by {growth} bytes over two rounds of {TOPICS} new topics: {after_round:?}"
    );
    server.shutdown().await;
}

#[actix_rt::test]
async fn one_name_length_limit_holds_for_every_component() {
    let long = format!("a.{}", "b".repeat(MAX_NAME_BYTES));
    let longest = "c".repeat(MAX_NAME_BYTES);
    assert!(tickwire::validate_name(&longest).is_ok());
    assert!(matches!(
        tickwire::validate_name(&long),
        Err(PatternError::TooLong { .. })
    ));
    assert!(matches!(
        tickwire::Pattern::parse(&format!("{long}.>")),
        Err(PatternError::TooLong { .. })
    ));
    let bus = EventBus::start(EventBusConfig {
        max_workers: 1,
        ..EventBusConfig::default()
    })
    .unwrap();
    let err = bus.publish(Event::new(long.clone(), json!(1))).await;
    assert!(
        matches!(
            err,
            Err(PublishError::InvalidName(_, PatternError::TooLong { .. }))
        ),
        "{err:?}"
    );
    let err = bus.subscribe(&long, |_| async { Ok(()) }).await;
    assert!(
        matches!(
            err,
            Err(SubscribeError::InvalidPattern(PatternError::TooLong { .. }))
        ),
        "{err:?}"
    );
    let mq = MessageQueue::start(MessageQueueConfig {
        max_workers: 1,
        ..MessageQueueConfig::default()
    })
    .unwrap();
    let err = mq.try_publish(&long, json!(1), Priority::Normal);
    assert!(
        matches!(
            err,
            Err(TryPublishError::InvalidName(
                _,
                PatternError::TooLong { .. }
            ))
        ),
        "{err:?}"
    );
    assert_eq!(mq.depth_counters(), 0, "a refused topic leaves nothing");
    assert_eq!(
        PatternError::TooLong {
            kind: "name",
            length: 300
        }
        .to_string(),
        format!("invalid name: 300 bytes long, at most {MAX_NAME_BYTES} allowed")
    );
    bus.stop().await;
    mq.stop().await;
}
