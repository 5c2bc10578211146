//! MessageQueue behaviour: fan-out, consumer groups, priority and FIFO modes, the
//! queue-wide bound, patterns, per-topic depth, stop, supervision and the bridge.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tickwire::{
    bridge, create_event, create_handler_config, EventBus, EventBusConfig, Message, MessageQueue,
    MessageQueueConfig, Priority, PublishError, SubscriptionId, TryPublishError,
};
use tokio::sync::{mpsc, Semaphore};

const SAFETY: Duration = Duration::from_secs(60);

fn mq(config: MessageQueueConfig) -> MessageQueue {
    MessageQueue::start(config).unwrap()
}

fn small() -> MessageQueueConfig {
    MessageQueueConfig {
        max_workers: 2,
        ..MessageQueueConfig::default()
    }
}

fn num(m: &Message) -> u64 {
    m.data().as_u64().expect("numeric payload")
}

type Seen = Arc<Mutex<Vec<u64>>>;

/// A subscriber that records payloads.
async fn recorder(q: &MessageQueue, topic: &str) -> Seen {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    q.subscribe(topic, move |m| {
        s.lock().unwrap().push(num(&m));
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    seen
}

/// A handler that blocks on each message until the test adds a permit.
struct Gate {
    entered: mpsc::UnboundedReceiver<u64>,
    permits: Arc<Semaphore>,
    seen: Seen,
}

async fn gated(q: &MessageQueue, topic: &str, group: Option<&str>) -> (SubscriptionId, Gate) {
    gated_with(
        q,
        topic,
        group,
        create_handler_config("gated").timeout(SAFETY),
    )
    .await
}

/// [`gated`], with the given handler config.
async fn gated_with(
    q: &MessageQueue,
    topic: &str,
    group: Option<&str>,
    config: tickwire::HandlerConfig,
) -> (SubscriptionId, Gate) {
    let (entered_tx, entered) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(0));
    let seen: Seen = Arc::default();
    let (p, s) = (permits.clone(), seen.clone());
    let handler = move |m: Message| {
        let (p, s, entered_tx) = (p.clone(), s.clone(), entered_tx.clone());
        async move {
            let _ = entered_tx.send(num(&m));
            p.acquire().await.unwrap().forget();
            s.lock().unwrap().push(num(&m));
            Ok(())
        }
    };
    let id = match group {
        Some(g) => q.subscribe_group_with(topic, g, config, handler).await,
        None => q.subscribe_with(topic, config, handler).await,
    }
    .unwrap();
    (
        id,
        Gate {
            entered,
            permits,
            seen,
        },
    )
}

#[actix_rt::test]
async fn every_subscriber_gets_every_message_and_ids_are_returned() {
    let q = mq(small());
    let a = recorder(&q, "trading.signals").await;
    let b = recorder(&q, "trading.signals").await;
    let mut ids = Vec::new();
    for n in 0..1000 {
        ids.push(
            q.publish("trading.signals", json!(n), Priority::Normal)
                .await
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    q.stop().await;
    for seen in [a, b] {
        assert_eq!(*seen.lock().unwrap(), (0..1000).collect::<Vec<_>>());
    }
    assert_eq!(q.delivery_stats().processed, 2000);
}

#[actix_rt::test]
async fn a_consumer_group_handles_each_message_exactly_once() {
    const MESSAGES: u64 = 100_000;
    let q = mq(MessageQueueConfig {
        max_workers: 4,
        max_size: 4096,
        ..MessageQueueConfig::default()
    });
    let handled: Vec<Seen> = (0..4).map(|_| Seen::default()).collect();
    for seen in &handled {
        let s = seen.clone();
        q.subscribe_group("orders.new", "routers", move |m| {
            s.lock().unwrap().push(num(&m));
            std::future::ready(Ok(()))
        })
        .await
        .unwrap();
    }
    let everything = recorder(&q, "orders.new").await; // outside the group: gets all
    let publisher = {
        let q = q.clone();
        std::thread::spawn(move || {
            for n in 0..MESSAGES {
                let mut backoff = common::Backoff::default();
                loop {
                    match q.try_publish("orders.new", json!(n), Priority::ALL[(n % 4) as usize]) {
                        Ok(_) => break,
                        Err(TryPublishError::QueueFull(_)) => backoff.wait(),
                        Err(other) => panic!("{other}"),
                    }
                }
            }
        })
    };
    actix_rt::task::spawn_blocking(move || publisher.join().unwrap())
        .await
        .unwrap();
    q.stop().await;
    let mut all: Vec<u64> = handled
        .iter()
        .flat_map(|s| s.lock().unwrap().clone())
        .collect();
    assert_eq!(
        all.len() as u64,
        MESSAGES,
        "each message handled once across the group"
    );
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, MESSAGES, "no message handled twice");
    assert_eq!(everything.lock().unwrap().len() as u64, MESSAGES);
    let per_member: Vec<usize> = handled.iter().map(|s| s.lock().unwrap().len()).collect();
    println!("messages per member: {per_member:?}");
    assert_eq!(q.subscription_count(), 0, "stopped");
}

#[actix_rt::test]
async fn a_backlog_is_handed_to_an_idle_member_while_the_first_is_busy() {
    let q = mq(small());
    let (_, mut a) = gated(&q, "jobs", Some("workers")).await;
    let (_, mut b) = gated(&q, "jobs", Some("workers")).await;
    // A burst: the first push wakes one member, the rest find it searching and wake
    // nobody; the member that takes an item while others wait must wake the other.
    for n in 0..10 {
        q.try_publish("jobs", json!(n), Priority::Normal).unwrap();
    }
    let first = tokio::time::timeout(SAFETY, a.entered.recv()).await;
    let second = tokio::time::timeout(SAFETY, b.entered.recv()).await;
    let (first, second) = (first.unwrap().unwrap(), second.unwrap().unwrap());
    assert_ne!(first, second, "each member holds its own message");
    a.permits.add_permits(100);
    b.permits.add_permits(100);
    q.stop().await;
    let mut all: Vec<u64> = a.seen.lock().unwrap().clone();
    all.extend(b.seen.lock().unwrap().iter());
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
}

/// A member on a worker that another member's synchronous handler blocks cannot run: a
/// burst is given to a member on another worker instead, even when the other member of
/// the blocked worker was woken just before the burst (within its grace: it must not
/// count as on its way while a member of its worker is busy).
#[actix_rt::test]
async fn a_member_held_up_by_its_worker_does_not_hold_back_the_group() {
    let q = mq(small()); // two workers
    let (blocked, release) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (entered_tx, mut entered) = mpsc::unbounded_channel::<usize>();
    let handled: Arc<Vec<AtomicU32>> = Arc::new((0..3).map(|_| AtomicU32::new(0)).collect());
    let member = |index: usize| {
        let (blocked, release, entered_tx, handled) = (
            blocked.clone(),
            release.clone(),
            entered_tx.clone(),
            handled.clone(),
        );
        move |_: Message| {
            // The first message A or B takes blocks their worker until released.
            if index < 2 && !blocked.swap(true, Ordering::AcqRel) {
                let _ = entered_tx.send(index);
                while !release.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            }
            handled[index].fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok(()))
        }
    };
    // Members go to the least loaded worker: A and B share worker 0, C has worker 1 (X
    // only steers the placement).
    q.subscribe_group("jobs", "g", member(0)).await.unwrap();
    let x = q
        .subscribe("steer", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    q.subscribe_group("jobs", "g", member(1)).await.unwrap();
    assert!(q.unsubscribe(x).await);
    q.subscribe_group("jobs", "g", member(2)).await.unwrap();
    let mut published = 0u64;
    let mut publish = || match q.try_publish("jobs", json!(published), Priority::Normal) {
        Ok(_) => {
            published += 1;
            true
        }
        Err(TryPublishError::QueueFull(_)) => false,
        Err(other) => panic!("{other}"),
    };
    // Until A or B blocks worker 0.
    let blocker = tokio::time::timeout(SAFETY, async {
        loop {
            let _ = publish();
            if let Ok(index) = entered.try_recv() {
                break index;
            }
            actix_rt::task::yield_now().await;
        }
    })
    .await
    .expect("A or B took a message");
    // A burst, and no push after it: the first push must wake C, idle on worker 1, not
    // the other member of the blocked worker 0 (which could not run).
    let c_before = handled[2].load(Ordering::Relaxed);
    let mut burst = 0;
    while burst < 10 {
        burst += u32::from(publish());
    }
    let rescued = tokio::time::timeout(SAFETY, async {
        while handled[2].load(Ordering::Relaxed) < c_before + 10 {
            actix_rt::task::yield_now().await;
        }
    })
    .await;
    release.store(true, Ordering::Release);
    rescued.expect("C did not get the burst while worker 0 was blocked");
    q.stop().await;
    let total: u32 = handled.iter().map(|h| h.load(Ordering::Relaxed)).sum();
    assert_eq!(u64::from(total), published, "each message handled once");
    assert!(handled[blocker].load(Ordering::Relaxed) >= 1);
}

/// Many publishers, a group whose members all come and go (each joins, takes work, and
/// leaves, some while holding a message): every message is handled exactly once, and all
/// of them before `stop` (which would drain a stranded message itself), after the last
/// departures, when no push will come to rescue a stranded one.
#[actix_rt::test]
async fn a_churning_group_under_many_publishers_handles_each_message_once_without_stop() {
    const PUBLISHERS: u64 = 4;
    const PER_PUBLISHER: u64 = 25_000;
    const TOTAL: u64 = PUBLISHERS * PER_PUBLISHER;
    const MEMBERS: usize = 200;
    let q = mq(MessageQueueConfig {
        max_workers: 2,
        max_size: 512,
        ..MessageQueueConfig::default()
    });
    let counts: Arc<Vec<AtomicU32>> = Arc::new((0..TOTAL).map(|_| AtomicU32::new(0)).collect());
    let per_member: Arc<Vec<AtomicU32>> =
        Arc::new((0..MEMBERS).map(|_| AtomicU32::new(0)).collect());
    let handled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let all_handled = Arc::new(Semaphore::new(0));
    let member = |index: usize| {
        let (counts, per_member, handled, all_handled) = (
            counts.clone(),
            per_member.clone(),
            handled.clone(),
            all_handled.clone(),
        );
        move |m: Message| {
            let (counts, per_member, handled, all_handled) = (
                counts.clone(),
                per_member.clone(),
                handled.clone(),
                all_handled.clone(),
            );
            async move {
                let n = num(&m);
                if n.is_multiple_of(3) {
                    actix_rt::task::yield_now().await; // some handlers take a turn
                }
                counts[n as usize].fetch_add(1, Ordering::Relaxed);
                per_member[index].fetch_add(1, Ordering::Relaxed);
                if handled.fetch_add(1, Ordering::AcqRel) + 1 == TOTAL {
                    all_handled.add_permits(1);
                }
                Ok(())
            }
        }
    };
    let mut joined = 0;
    let mut present = Vec::new();
    for _ in 0..2 {
        present.push(
            q.subscribe_group("jobs", "workers", member(joined))
                .await
                .unwrap(),
        );
        joined += 1;
    }
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..PER_PUBLISHER {
                    let n = p * PER_PUBLISHER + i;
                    let mut backoff = common::Backoff::default();
                    loop {
                        match q.try_publish("jobs", json!(n), Priority::ALL[(n % 4) as usize]) {
                            Ok(_) => break,
                            Err(TryPublishError::QueueFull(_)) => backoff.wait(),
                            Err(other) => panic!("{other}"),
                        }
                    }
                }
            })
        })
        .collect();
    // Members join and leave (a fixed pseudo-random walk, the first two included) until
    // the publishers are done; at least one member stays.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    while publishers.iter().any(|p| !p.is_finished()) && joined < MEMBERS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if present.len() < 2 || seed.is_multiple_of(2) {
            present.push(
                q.subscribe_group("jobs", "workers", member(joined))
                    .await
                    .unwrap(),
            );
            joined += 1;
        } else {
            let id = present.swap_remove((seed as usize / 2) % present.len());
            assert!(q.unsubscribe(id).await);
        }
        actix_rt::task::yield_now().await;
    }
    actix_rt::task::spawn_blocking(move || {
        for p in publishers {
            p.join().unwrap();
        }
    })
    .await
    .unwrap();
    // The last departures, with work possibly queued: the one left must get it all.
    while present.len() > 1 {
        assert!(q.unsubscribe(present.remove(0)).await);
    }
    tokio::time::timeout(SAFETY, all_handled.acquire())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} of {TOTAL} handled: a message is stranded",
                handled.load(Ordering::Acquire)
            )
        })
        .unwrap()
        .forget();
    q.stop().await;
    let wrong: Vec<(usize, u32)> = counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .enumerate()
        .filter(|&(_, c)| c != 1)
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "(message, times handled): {wrong:?}");
    assert_eq!(handled.load(Ordering::Acquire), TOTAL);
    let worked = per_member
        .iter()
        .take(joined)
        .filter(|c| c.load(Ordering::Relaxed) > 0)
        .count();
    println!("{joined} members joined, {worked} of them handled messages");
    assert!(
        worked > 2,
        "members that joined later took work too ({worked} of {joined})"
    );
}

#[actix_rt::test]
async fn a_member_that_leaves_gets_no_more_and_its_queue_goes_to_the_others() {
    let q = mq(small());
    let (a_id, mut a) = gated(&q, "jobs", Some("workers")).await;
    let (_, mut b) = gated(&q, "jobs", Some("workers")).await;
    assert_eq!(q.subscription_count(), 1, "a group is one subscription");
    for n in 0..10 {
        q.publish("jobs", json!(n), Priority::Normal).await.unwrap();
    }
    // Each member holds one message; eight wait in the group's mailbox.
    let held_by_a = a.entered.recv().await.unwrap();
    let held_by_b = b.entered.recv().await.unwrap();
    assert_ne!(held_by_a, held_by_b);
    // Ask to remove A (it cannot finish while A holds its message) and make sure the
    // registry took the request: a later request to it is answered after it.
    let leave = q.unsubscribe(a_id);
    tokio::pin!(leave);
    assert!(futures_util::poll!(&mut leave).is_pending());
    q.subscribe("barrier", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    a.permits.add_permits(100);
    assert!(tokio::time::timeout(SAFETY, leave).await.unwrap());
    b.permits.add_permits(100);
    q.stop().await;
    assert_eq!(
        *a.seen.lock().unwrap(),
        [held_by_a],
        "A got nothing after leaving"
    );
    let mut all: Vec<u64> = a.seen.lock().unwrap().clone();
    all.extend(b.seen.lock().unwrap().iter());
    all.sort_unstable();
    assert_eq!(
        all,
        (0..10).collect::<Vec<_>>(),
        "B handled the rest, nothing lost"
    );
}

#[actix_rt::test]
async fn the_last_member_leaving_ends_the_group() {
    let q = mq(small());
    let a = q
        .subscribe_group("g", "solo", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    assert!(q.unsubscribe(a).await);
    assert_eq!(q.subscription_count(), 0);
    // A new member starts a new group.
    let seen = Seen::default();
    let s = seen.clone();
    q.subscribe_group("g", "solo", move |m| {
        s.lock().unwrap().push(num(&m));
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    q.publish("g", json!(1), Priority::Normal).await.unwrap();
    q.stop().await;
    assert_eq!(*seen.lock().unwrap(), [1]);
}

#[actix_rt::test]
async fn critical_first_with_priority_queues_plain_fifo_without() {
    for priority_queues in [true, false] {
        let q = mq(MessageQueueConfig {
            enable_priority_queues: priority_queues,
            ..small()
        });
        let (_, mut gate) = gated(&q, "p", None).await;
        q.publish("p", json!(0), Priority::Low).await.unwrap();
        gate.entered.recv().await.unwrap();
        for n in 1..=5 {
            q.publish("p", json!(n), Priority::Low).await.unwrap();
        }
        q.publish("p", json!(6), Priority::High).await.unwrap();
        q.publish("p", json!(7), Priority::Critical).await.unwrap();
        gate.permits.add_permits(100);
        q.stop().await;
        let seen = gate.seen.lock().unwrap().clone();
        if priority_queues {
            assert_eq!(seen, [0, 7, 6, 1, 2, 3, 4, 5]);
        } else {
            assert_eq!(seen, [0, 1, 2, 3, 4, 5, 6, 7]);
        }
    }
}

#[actix_rt::test]
async fn max_size_bounds_the_whole_queue() {
    let q = mq(MessageQueueConfig {
        max_size: 6,
        default_timeout: Duration::from_millis(200),
        ..small()
    });
    let (_, mut first) = gated(&q, "a", None).await;
    let (_, mut second) = gated(&q, "a", None).await;
    q.publish("a", json!(0), Priority::Normal).await.unwrap();
    first.entered.recv().await.unwrap(); // both hold message 0: nothing is queued
    second.entered.recv().await.unwrap();
    for n in 1..=3 {
        q.try_publish("a", json!(n), Priority::Normal).unwrap(); // 2 deliveries each
    }
    assert_eq!(q.total_queue_size(), 6);
    let err = q.try_publish("a", json!(4), Priority::Normal).unwrap_err();
    assert!(
        matches!(err, TryPublishError::QueueFull(ref m) if num(m) == 4),
        "{err:?}"
    );
    assert_eq!(q.total_queue_size(), 6, "a refused publish takes nothing");
    let err = q.publish("a", json!(5), Priority::High).await.unwrap_err();
    let back = err.into_inner();
    assert_eq!(
        (num(&back), back.topic(), back.priority()),
        (5, "a", Priority::High)
    );
    // A waiting publish goes through once there is room.
    let waiting = {
        let q = q.clone();
        actix_rt::spawn(async move { q.publish("a", json!(6), Priority::Normal).await })
    };
    first.permits.add_permits(100);
    second.permits.add_permits(100);
    waiting.await.unwrap().unwrap();
    // stop's drain bound is short in this test: let the handlers finish first.
    common::eventually("both handlers saw five messages", SAFETY, || {
        first.seen.lock().unwrap().len() == 5 && second.seen.lock().unwrap().len() == 5
    })
    .await;
    q.stop().await;
    assert_eq!(*first.seen.lock().unwrap(), [0, 1, 2, 3, 6]);
    assert_eq!(*second.seen.lock().unwrap(), [0, 1, 2, 3, 6]);
    assert_eq!(q.total_queue_size(), 0);
}

#[actix_rt::test]
async fn pattern_topics() {
    let q = mq(small());
    let star = recorder(&q, "market.*").await;
    let tail = recorder(&q, "market.>").await;
    let exact = recorder(&q, "market.btc.tick").await;
    for (n, topic) in ["market.btc", "market.btc.tick", "fx.eur", "market.eth"]
        .iter()
        .enumerate()
    {
        q.publish(topic, json!(n), Priority::Normal).await.unwrap();
    }
    q.stop().await;
    assert_eq!(*star.lock().unwrap(), [0, 3]);
    assert_eq!(*tail.lock().unwrap(), [0, 1, 3]);
    assert_eq!(*exact.lock().unwrap(), [1]);
    let err = q
        .publish("market.*", json!(9), Priority::Normal)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PublishError::InvalidName(..)),
        "wildcards only in patterns"
    );
}

#[actix_rt::test]
async fn invalid_topics_and_groups_are_refused() {
    let q = mq(small());
    let err = q
        .publish("market..btc", json!(1), Priority::Normal)
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::InvalidName(..)), "{err:?}");
    assert_eq!(err.into_inner().topic(), "market..btc");
    let err = q
        .subscribe_group("a", "has space", |_| std::future::ready(Ok(())))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid group name \"has space\": it must be non-empty and hold no whitespace"
    );
    q.stop().await;
}

#[actix_rt::test]
async fn topic_depths_and_topics_count() {
    let q = mq(small());
    recorder(&q, "a").await;
    recorder(&q, "b.c").await;
    let (_, mut gate) = gated(&q, "x.*", None).await;
    assert_eq!(q.topics_count(), 2, "topics with subscribers");
    assert_eq!(
        q.topic_depths().into_iter().collect::<Vec<_>>(),
        [("a".to_owned(), 0), ("b.c".to_owned(), 0)],
        "exact-topic subscriptions, nothing in flight"
    );
    for n in 0..3 {
        q.publish("x.y", json!(n), Priority::Normal).await.unwrap();
    }
    gate.entered.recv().await.unwrap();
    assert_eq!(
        q.topic_depths().get("x.y"),
        Some(&3),
        "one in hand, two waiting"
    );
    assert_eq!(q.topics_count(), 3, "plus the topic with waiting messages");
    gate.permits.add_permits(3);
    q.stop().await;
    assert_eq!(
        q.topic_depths().get("x.y"),
        None,
        "nothing in flight, no exact subscriber: not listed"
    );
    assert_eq!(
        q.topics_count(),
        0,
        "stopped: no subscribers, nothing waiting"
    );
}

#[actix_rt::test]
async fn stop_drains_then_refuses() {
    let q = mq(small());
    let (_, gate) = gated(&q, "w", None).await;
    for n in 0..200 {
        q.try_publish("w", json!(n), Priority::Normal).unwrap();
    }
    gate.permits.add_permits(200);
    q.stop().await;
    assert_eq!(*gate.seen.lock().unwrap(), (0..200).collect::<Vec<_>>());
    assert!(matches!(
        q.publish("w", json!(1), Priority::Normal).await,
        Err(PublishError::Stopped(_))
    ));
}

#[actix_rt::test]
async fn supervision_is_the_same_as_the_event_buss() {
    let q = mq(small());
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let config = create_handler_config("settlement")
        .max_retries(2)
        .retry_delay(Duration::from_millis(1));
    q.subscribe_with("settle", config, move |_| {
        r.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err("ledger unavailable".into()))
    })
    .await
    .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    q.subscribe("$dlq.settle", move |m| {
        let _ = tx.send(m);
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    let id = q
        .publish("settle", json!({"trade": 7}), Priority::High)
        .await
        .unwrap();
    let dlq = tokio::time::timeout(SAFETY, rx.recv())
        .await
        .unwrap()
        .unwrap();
    q.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(dlq.data()["item"]["id"], id);
    assert_eq!(dlq.data()["error"], "ledger unavailable");
    let dead = q.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].item.as_message().unwrap().id(), id);
    let stats = q.delivery_stats();
    assert_eq!((stats.errors, stats.retries, stats.dead_letters), (3, 2, 1));
}

#[actix_rt::test]
async fn bridge_carries_events_to_events_topics_with_their_priority() {
    let bus = EventBus::start(EventBusConfig::default()).unwrap();
    let q = mq(small());
    bridge::event_bus_to_queue(&bus, &q, "market.>")
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    q.subscribe("events.>", move |m| {
        let _ = tx.send(m);
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    let event = create_event("market.tick", json!({"price": 1}), Priority::Critical);
    let event_id = event.id();
    bus.publish(event).await.unwrap();
    bus.publish(create_event("system.alert", json!({}), Priority::High))
        .await
        .unwrap();
    let m = tokio::time::timeout(SAFETY, rx.recv())
        .await
        .unwrap()
        .unwrap();
    bus.stop().await;
    q.stop().await;
    assert_eq!(m.topic(), "events.market.tick");
    assert_eq!(m.priority(), Priority::Critical);
    assert_eq!(m.data()["id"], event_id);
    assert_eq!(m.data()["name"], "market.tick");
    assert!(rx.try_recv().is_err(), "system.alert is not bridged");
}

#[actix_rt::test]
async fn handle_is_send_sync_clone_and_messages_are_distinct() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<MessageQueue>();
    check::<Message>();
    let q = mq(small());
    let ids: HashSet<u64> = (0..100)
        .map(|n| q.try_publish("nobody", json!(n), Priority::Low).unwrap())
        .collect();
    assert_eq!(ids.len(), 100);
    q.stop().await;
}

#[actix_rt::test]
async fn an_idle_member_is_woken_while_another_is_busy_and_a_late_joiner_gets_work() {
    let q = mq(small());
    let (a_id, mut a) = gated(&q, "jobs", Some("workers")).await;
    q.publish("jobs", json!(0), Priority::Normal).await.unwrap();
    assert_eq!(a.entered.recv().await, Some(0)); // A is busy with 0
                                                 // B joins while A is busy; the next messages are B's, A stays stuck on 0.
    let b = recorder_group(&q, "jobs", "workers").await;
    for n in 1..=3 {
        q.publish("jobs", json!(n), Priority::Normal).await.unwrap();
    }
    wait_for_len(&b, 3).await;
    // A leaves (after finishing 0); B goes on receiving.
    let leave = q.unsubscribe(a_id);
    tokio::pin!(leave);
    assert!(futures_util::poll!(&mut leave).is_pending());
    a.permits.add_permits(1);
    assert!(tokio::time::timeout(SAFETY, leave).await.unwrap());
    q.publish("jobs", json!(4), Priority::Normal).await.unwrap();
    wait_for_len(&b, 4).await;
    q.stop().await;
    assert_eq!(*a.seen.lock().unwrap(), [0]);
    assert_eq!(*b.lock().unwrap(), [1, 2, 3, 4]);
    assert_eq!(q.total_queue_size(), 0);
}

/// A group member that records payloads.
async fn recorder_group(q: &MessageQueue, topic: &str, group: &str) -> Seen {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    q.subscribe_group(topic, group, move |m| {
        s.lock().unwrap().push(num(&m));
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    seen
}

/// Waits (a yield loop, bounded by the safety timeout) until `seen` holds `n` entries.
async fn wait_for_len(seen: &Seen, n: usize) {
    let deadline = std::time::Instant::now() + SAFETY;
    while seen.lock().unwrap().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {:?}",
            seen.lock().unwrap()
        );
        tokio::task::yield_now().await;
    }
}

#[actix_rt::test]
async fn more_matching_deliveries_than_max_size_fail_at_once() {
    let q = mq(MessageQueueConfig {
        max_size: 1,
        default_timeout: SAFETY,
        ..small()
    });
    recorder(&q, "t").await;
    recorder(&q, "t").await;
    let result = tokio::time::timeout(SAFETY / 2, q.publish("t", json!(1), Priority::Normal)).await;
    let err = result
        .expect("does not wait: it can never fit")
        .unwrap_err();
    assert!(matches!(err, PublishError::QueueFull(_)), "{err:?}");
    assert!(matches!(
        q.try_publish("t", json!(2), Priority::Normal),
        Err(TryPublishError::QueueFull(_))
    ));
    q.stop().await;
}

#[actix_rt::test]
async fn drop_policies_drop_when_the_queue_is_full_instead_of_refusing() {
    let q = mq(MessageQueueConfig {
        max_size: 4,
        ..small()
    });
    let config = create_handler_config("ticker_view")
        .overflow(tickwire::OverflowPolicy::DropOldest)
        .timeout(SAFETY);
    let (_, mut gate) = gated_with(&q, "ticks", None, config).await;
    q.publish("ticks", json!(0), Priority::Normal)
        .await
        .unwrap();
    gate.entered.recv().await.unwrap();
    for n in 1..=8 {
        q.try_publish("ticks", json!(n), Priority::Normal).unwrap(); // never refused
    }
    assert_eq!(q.total_queue_size(), 4);
    gate.permits.add_permits(100);
    q.stop().await;
    assert_eq!(*gate.seen.lock().unwrap(), [0, 5, 6, 7, 8]);
    assert_eq!(q.delivery_stats().dropped, 4);
    assert_eq!(q.total_queue_size(), 0);
}

#[actix_rt::test]
async fn a_queue_full_of_low_messages_still_takes_critical_ones_unless_fifo() {
    for fifo in [false, true] {
        let q = MessageQueue::start(MessageQueueConfig {
            max_size: 16,
            enable_priority_queues: !fifo,
            ..MessageQueueConfig::default()
        })
        .unwrap();
        // The subscriber holds its first message until the gate opens: nothing leaves.
        // The queue is filled only once that message is in hand, so no slot frees up
        // between the refused LOW and the CRITICAL below.
        let (gate_tx, gate) = tokio::sync::watch::channel(false);
        let (entered_tx, mut entered) = mpsc::unbounded_channel();
        q.subscribe("held", move |_| {
            let mut gate = gate.clone();
            let _ = entered_tx.send(());
            async move {
                let _ = gate.wait_for(|open| *open).await;
                Ok(())
            }
        })
        .await
        .unwrap();
        q.try_publish("held", json!("first"), Priority::Low)
            .unwrap();
        entered.recv().await.unwrap();
        let mut accepted = 0;
        while q
            .try_publish("held", json!(accepted), Priority::Low)
            .is_ok()
        {
            accepted += 1;
            assert!(accepted <= 16, "max_size bounds LOW too (16 queued)");
        }
        if fifo {
            assert_eq!(accepted, 16, "FIFO: LOW may take the whole bound");
        }
        let critical = q.try_publish("held", json!("urgent"), Priority::Critical);
        if fifo {
            assert!(
                critical.is_err(),
                "FIFO: every priority shares the whole bound"
            );
        } else {
            assert!(
                critical.is_ok(),
                "LOW left room for CRITICAL ({accepted} LOW accepted)"
            );
        }
        gate_tx.send(true).unwrap();
        q.stop().await;
    }
}

#[actix_rt::test]
async fn a_low_message_never_evicts_a_more_urgent_one_from_the_full_queue() {
    use tickwire::OverflowPolicy;
    let q = mq(MessageQueueConfig {
        max_size: 16,
        ..small()
    });
    let config = create_handler_config("evicting")
        .overflow(OverflowPolicy::DropOldest)
        .timeout(SAFETY);
    let (_, mut gate) = gated_with(&q, "e", None, config).await;
    q.publish("e", json!(0), Priority::Normal).await.unwrap();
    gate.entered.recv().await.unwrap();
    for n in 1..=14 {
        q.publish("e", json!(n), Priority::Critical).await.unwrap();
    }
    assert_eq!(q.total_queue_size(), 14);
    // 14 of 16: the queue-wide bound has no room for LOW, and a LOW message may not
    // evict a CRITICAL one.
    q.publish("e", json!(100), Priority::Low).await.unwrap();
    assert_eq!(q.delivery_stats().dropped, 1);
    assert_eq!(q.total_queue_size(), 14);
    gate.permits.add_permits(100);
    for _ in 0..14 {
        tokio::time::timeout(SAFETY, gate.entered.recv())
            .await
            .unwrap();
    }
    q.stop().await;
    assert_eq!(*gate.seen.lock().unwrap(), (0..=14).collect::<Vec<u64>>());
}
