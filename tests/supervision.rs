//! Handler supervision: timeouts, retries with backoff, restarts after panics, dead
//! letters, overflow policies, blocking handlers. Exact counts; timing only as lower
//! bounds and orders.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tickwire::{
    create_handler_config, DeadLetter, Event, EventBus, EventBusConfig, HandlerConfig,
    HandlerFailure, OverflowPolicy, Priority,
};
use tokio::sync::{mpsc, Semaphore};

const SAFETY: Duration = Duration::from_secs(60);

fn bus(config: EventBusConfig) -> EventBus {
    EventBus::start(config).unwrap()
}

fn small() -> EventBusConfig {
    EventBusConfig {
        max_workers: 1,
        ..EventBusConfig::default()
    }
}

fn ev(name: &str, n: u64) -> Event {
    Event::new(name, json!(n))
}

fn num(event: &Event) -> u64 {
    event.data().as_u64().expect("numeric payload")
}

fn quick(name: &str) -> HandlerConfig {
    create_handler_config(name).retry_delay(Duration::from_millis(1))
}

/// Collects what the error handler is given.
fn failures() -> (
    Arc<Mutex<Vec<HandlerFailure>>>,
    impl Fn(&HandlerFailure) + Send + Sync,
) {
    let store: Arc<Mutex<Vec<HandlerFailure>>> = Arc::default();
    let s = store.clone();
    (store, move |f: &HandlerFailure| {
        s.lock().unwrap().push(f.clone())
    })
}

#[actix_rt::test]
async fn a_failing_handler_is_retried_until_it_succeeds_in_order() {
    let bus = bus(small());
    let attempts_of_5 = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (a, s) = (attempts_of_5.clone(), seen.clone());
    let (errors, on_error) = failures();
    bus.subscribe_with(
        "r",
        quick("flaky").max_retries(3).error_handler(on_error),
        move |e| {
            let n = num(&e);
            let result = if n == 5 && a.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(format!("transient failure on {n}").into())
            } else {
                s.lock().unwrap().push(n);
                Ok(())
            };
            std::future::ready(result)
        },
    )
    .await
    .unwrap();
    for n in 0..10 {
        bus.publish(ev("r", n)).await.unwrap();
    }
    bus.stop().await;
    assert_eq!(
        *seen.lock().unwrap(),
        (0..10).collect::<Vec<_>>(),
        "no later event overtook 5"
    );
    assert_eq!(attempts_of_5.load(Ordering::SeqCst), 3);
    let stats = bus.delivery_stats();
    assert_eq!(
        (
            stats.processed,
            stats.errors,
            stats.retries,
            stats.dead_letters
        ),
        (10, 2, 2, 0)
    );
    assert!(
        errors.lock().unwrap().is_empty(),
        "no final failure, no error_handler call"
    );
    assert!(bus.dead_letters().await.is_empty());
}

#[actix_rt::test]
async fn exhausted_retries_make_one_dead_letter_reported_everywhere() {
    let bus = bus(small());
    let (errors, on_error) = failures();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    bus.subscribe_with(
        "orders.new",
        quick("order_router").max_retries(2).error_handler(on_error),
        move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err("exchange rejected".into()))
        },
    )
    .await
    .unwrap();
    let (dlq_tx, mut dlq_rx) = mpsc::unbounded_channel();
    bus.subscribe("$dlq.>", move |e| {
        let _ = dlq_tx.send(e);
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    let event = Event::new("orders.new", json!({"qty": 5})).with_priority(Priority::High);
    let id = event.id();
    bus.publish(event).await.unwrap();
    let dlq = tokio::time::timeout(SAFETY, dlq_rx.recv())
        .await
        .unwrap()
        .unwrap();
    bus.stop().await;

    assert_eq!(runs.load(Ordering::SeqCst), 3, "1 attempt + 2 retries");
    let errors = errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "error_handler called once");
    let f = &errors[0];
    assert_eq!(f.handler, "order_router");
    assert_eq!(f.error, "exchange rejected");
    assert_eq!(f.attempts, 3);
    assert_eq!(f.item.as_event().unwrap().id(), id);

    let dead: Vec<DeadLetter> = bus.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].item.name(), "orders.new");
    assert_eq!(dead[0].attempts, 3);

    assert_eq!(dlq.name(), "$dlq.orders.new");
    assert_eq!(dlq.priority(), Priority::High);
    assert_eq!(dlq.data()["item"]["id"], id);
    assert_eq!(dlq.data()["item"]["data"]["qty"], 5);
    assert_eq!(dlq.data()["error"], "exchange rejected");
    assert_eq!(dlq.data()["attempts"], 3);
    assert!(dlq_rx.try_recv().is_err(), "one dead-letter event");

    let stats = bus.delivery_stats();
    assert_eq!((stats.errors, stats.retries, stats.dead_letters), (3, 2, 1));
}

#[actix_rt::test]
async fn retry_delays_back_off() {
    let bus = bus(small());
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let config = create_handler_config("slow_retry")
        .max_retries(2)
        .retry_delay(Duration::from_millis(40));
    bus.subscribe_with("b", config, move |_| {
        t.lock().unwrap().push(Instant::now());
        std::future::ready(Err("no".into()))
    })
    .await
    .unwrap();
    bus.publish(ev("b", 1)).await.unwrap();
    bus.stop().await;
    let times = times.lock().unwrap();
    assert_eq!(times.len(), 3);
    assert!(
        times[1] - times[0] >= Duration::from_millis(40),
        "{:?}",
        times[1] - times[0]
    );
    assert!(
        times[2] - times[1] >= Duration::from_millis(80),
        "{:?}",
        times[2] - times[1]
    );
}

#[actix_rt::test]
async fn retries_can_be_turned_off_per_handler_and_per_bus() {
    for (bus_retry, handler_retry) in [(false, true), (true, false)] {
        let bus = bus(EventBusConfig {
            enable_retry: bus_retry,
            ..small()
        });
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        bus.subscribe_with(
            "x",
            quick("once").max_retries(5).retry_on_error(handler_retry),
            move |_| {
                r.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Err("fails".into()))
            },
        )
        .await
        .unwrap();
        bus.publish(ev("x", 1)).await.unwrap();
        bus.stop().await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "bus {bus_retry} handler {handler_retry}"
        );
        let dead = bus.dead_letters().await;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 1);
    }
}

#[actix_rt::test]
async fn a_handler_that_times_out_counts_as_an_error_and_is_retried() {
    let bus = bus(small());
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let config = quick("stuck")
        .timeout(Duration::from_millis(30))
        .max_retries(1);
    bus.subscribe_with("t", config, move |e| {
        let first_try = r.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if num(&e) == 1 || first_try {
                std::future::pending::<()>().await; // never finishes
            }
            Ok(())
        }
    })
    .await
    .unwrap();
    bus.publish(ev("t", 0)).await.unwrap(); // times out once, then succeeds
    bus.publish(ev("t", 1)).await.unwrap(); // times out twice: dead letter
    bus.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    let dead = bus.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(num(dead[0].item.as_event().unwrap()), 1);
    assert_eq!(dead[0].error, "handler timed out after 0.03 s");
    let stats = bus.delivery_stats();
    assert_eq!(
        (
            stats.processed,
            stats.errors,
            stats.retries,
            stats.dead_letters
        ),
        (1, 3, 2, 1)
    );
}

#[actix_rt::test]
async fn the_default_timeout_is_the_buss() {
    let bus = bus(EventBusConfig {
        default_timeout: Duration::from_millis(50),
        enable_retry: false,
        ..small()
    });
    // No timeout in the handler's config: the bus's default_timeout applies.
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel();
    let config = create_handler_config("hangs").error_handler(move |f| {
        let _ = failed_tx.send(f.error.clone());
    });
    bus.subscribe_with("d", config, |_| async {
        std::future::pending::<()>().await;
        Ok(())
    })
    .await
    .unwrap();
    bus.publish(ev("d", 1)).await.unwrap();
    let error = tokio::time::timeout(SAFETY, failed_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(error, "handler timed out after 0.05 s");
    bus.stop().await;
    assert_eq!(bus.dead_letters().await.len(), 1);
}

#[actix_rt::test]
async fn a_handler_panicking_on_every_third_event_is_restarted_and_the_rest_is_handled() {
    let bus = bus(small());
    let handled = Arc::new(Mutex::new(Vec::new()));
    let h = handled.clone();
    let (errors, on_error) = failures();
    bus.subscribe_with(
        "p",
        quick("panicky").max_retries(2).error_handler(on_error),
        move |e| {
            let n = num(&e);
            if n % 3 == 2 {
                panic!("cannot handle {n}");
            }
            h.lock().unwrap().push(n);
            std::future::ready(Ok(()))
        },
    )
    .await
    .unwrap();
    // A neighbour on the same (only) worker is not disturbed.
    let neighbour = Arc::new(AtomicU32::new(0));
    let nb = neighbour.clone();
    bus.subscribe("p", move |_| {
        nb.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    for n in 0..30 {
        bus.publish(ev("p", n)).await.unwrap();
    }
    bus.stop().await;
    let expected: Vec<u64> = (0..30).filter(|n| n % 3 != 2).collect();
    assert_eq!(*handled.lock().unwrap(), expected);
    assert_eq!(neighbour.load(Ordering::SeqCst), 30);
    let dead: Vec<u64> = bus
        .dead_letters()
        .await
        .iter()
        .map(|d| num(d.item.as_event().unwrap()))
        .collect();
    assert_eq!(dead, (0..30).filter(|n| n % 3 == 2).collect::<Vec<_>>());
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 10);
    assert!(errors
        .iter()
        .all(|f| f.attempts == 3 && f.error.starts_with("panicked: cannot handle")));
    let stats = bus.delivery_stats();
    assert_eq!(
        stats.restarts, 30,
        "one restart per panic: 10 events × 3 attempts"
    );
    assert_eq!(
        (stats.processed, stats.errors, stats.dead_letters),
        (20 + 30, 30, 10)
    );
}

#[actix_rt::test]
async fn sync_handlers_are_supervised_and_do_not_block_the_worker() {
    let bus = bus(small());
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let (entered_tx, mut entered_rx) = mpsc::unbounded_channel();
    let config = quick("blocking").timeout(Duration::from_secs(30));
    bus.subscribe_sync_with("s", config, move |e: &Event| {
        if num(e) == 0 {
            let _ = entered_tx.send(());
            release_rx
                .lock()
                .unwrap()
                .recv()
                .map_err(|e| e.to_string())?;
        }
        if num(e) == 1 {
            return Err("sync failure".into());
        }
        Ok(())
    })
    .await
    .unwrap();
    let (async_tx, mut async_rx) = mpsc::unbounded_channel();
    bus.subscribe("a", move |e| {
        let _ = async_tx.send(num(&e));
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    bus.publish(ev("s", 0)).await.unwrap();
    entered_rx.recv().await.unwrap(); // the sync handler is now blocked
    for n in 0..100 {
        bus.publish(ev("a", n)).await.unwrap();
    }
    for n in 0..100 {
        let got = tokio::time::timeout(SAFETY, async_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got, n,
            "the async handler on the same worker runs meanwhile"
        );
    }
    release_tx.send(()).unwrap();
    bus.publish(ev("s", 1)).await.unwrap();
    bus.stop().await;
    let dead = bus.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error, "sync failure");
    assert_eq!(dead[0].attempts, 4, "default max_retries is 3");
}

#[actix_rt::test]
async fn a_sync_handler_that_panics_restarts_its_actor() {
    let bus = bus(small());
    bus.subscribe_sync_with("s", quick("sync_panic").max_retries(1), |e: &Event| {
        if num(e) == 1 {
            panic!("sync boom");
        }
        Ok(())
    })
    .await
    .unwrap();
    for n in 0..3 {
        bus.publish(ev("s", n)).await.unwrap();
    }
    bus.stop().await;
    let stats = bus.delivery_stats();
    assert_eq!(
        (stats.processed, stats.restarts, stats.dead_letters),
        (2, 2, 1)
    );
    assert_eq!(bus.dead_letters().await[0].error, "panicked: sync boom");
}

/// A subscription whose handler blocks each event until the test adds permits.
async fn stalled(
    bus: &EventBus,
    policy: OverflowPolicy,
) -> (
    Arc<Semaphore>,
    mpsc::UnboundedReceiver<()>,
    Arc<Mutex<Vec<u64>>>,
) {
    let permits = Arc::new(Semaphore::new(0));
    let (entered_tx, entered_rx) = mpsc::unbounded_channel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (p, s) = (permits.clone(), seen.clone());
    bus.subscribe_with(
        "m",
        create_handler_config("stalled").overflow(policy),
        move |e| {
            let (p, s, entered_tx) = (p.clone(), s.clone(), entered_tx.clone());
            async move {
                let _ = entered_tx.send(());
                p.acquire().await.unwrap().forget();
                s.lock().unwrap().push(num(&e));
                Ok(())
            }
        },
    )
    .await
    .unwrap();
    (permits, entered_rx, seen)
}

#[actix_rt::test]
async fn drop_oldest_keeps_the_newest_and_never_slows_the_others() {
    let bus = bus(EventBusConfig {
        queue_size: 4,
        max_workers: 2,
        ..EventBusConfig::default()
    });
    let (permits, mut entered, seen) = stalled(&bus, OverflowPolicy::DropOldest).await;
    let fast = Arc::new(Mutex::new(Vec::new()));
    let f = fast.clone();
    bus.subscribe("m", move |e| {
        f.lock().unwrap().push(num(&e));
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    bus.publish(ev("m", 0)).await.unwrap();
    entered.recv().await.unwrap(); // event 0 in hand, the stalled handler is stuck
    for n in 1..100 {
        // Every publish completes while the stalled handler is still stuck on event 0:
        // the stalled subscription never makes a publisher wait.
        tokio::time::timeout(SAFETY, bus.publish(ev("m", n)))
            .await
            .unwrap()
            .unwrap();
    }
    permits.add_permits(1000);
    bus.stop().await;
    assert_eq!(*fast.lock().unwrap(), (0..100).collect::<Vec<_>>());
    assert_eq!(*seen.lock().unwrap(), [0, 96, 97, 98, 99]);
    assert_eq!(bus.delivery_stats().dropped, 95);
}

#[actix_rt::test]
async fn drop_newest_keeps_what_was_queued() {
    let bus = bus(EventBusConfig {
        queue_size: 4,
        ..small()
    });
    let (permits, mut entered, seen) = stalled(&bus, OverflowPolicy::DropNewest).await;
    bus.publish(ev("m", 0)).await.unwrap();
    entered.recv().await.unwrap();
    for n in 1..100 {
        bus.publish(ev("m", n)).await.unwrap();
    }
    permits.add_permits(1000);
    bus.stop().await;
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(bus.delivery_stats().dropped, 95);
}

#[actix_rt::test]
async fn drop_oldest_evicts_the_lowest_priority_first() {
    let bus = bus(EventBusConfig {
        queue_size: 3,
        ..small()
    });
    let (permits, mut entered, seen) = stalled(&bus, OverflowPolicy::DropOldest).await;
    bus.publish(ev("m", 0)).await.unwrap();
    entered.recv().await.unwrap();
    bus.publish(ev("m", 1).with_priority(Priority::Critical))
        .await
        .unwrap();
    bus.publish(ev("m", 2).with_priority(Priority::Low))
        .await
        .unwrap();
    bus.publish(ev("m", 3).with_priority(Priority::Low))
        .await
        .unwrap();
    bus.publish(ev("m", 4).with_priority(Priority::High))
        .await
        .unwrap(); // evicts 2
    bus.publish(ev("m", 5).with_priority(Priority::Low))
        .await
        .unwrap(); // evicts 3
    permits.add_permits(100);
    bus.stop().await;
    assert_eq!(*seen.lock().unwrap(), [0, 1, 4, 5]);
    assert_eq!(bus.delivery_stats().dropped, 2);
}

#[actix_rt::test]
async fn a_panicking_error_handler_does_not_break_delivery() {
    let bus = bus(small());
    bus.subscribe_with(
        "e",
        quick("bad_error_handler")
            .max_retries(0)
            .error_handler(|_| panic!("error handler bug")),
        |e| {
            std::future::ready(if num(&e) == 0 {
                Err("first fails".into())
            } else {
                Ok(())
            })
        },
    )
    .await
    .unwrap();
    for n in 0..5 {
        bus.publish(ev("e", n)).await.unwrap();
    }
    bus.stop().await;
    let stats = bus.delivery_stats();
    assert_eq!((stats.processed, stats.dead_letters), (4, 1));
    assert_eq!(bus.dead_letters().await.len(), 1);
}

#[actix_rt::test]
async fn the_dead_letter_store_is_bounded() {
    let bus = bus(EventBusConfig {
        max_dead_letters: 3,
        enable_retry: false,
        ..small()
    });
    bus.subscribe("f", |_| std::future::ready(Err("always".into())))
        .await
        .unwrap();
    for n in 0..10 {
        bus.publish(ev("f", n)).await.unwrap();
    }
    bus.stop().await;
    let dead: Vec<u64> = bus
        .dead_letters()
        .await
        .iter()
        .map(|d| num(d.item.as_event().unwrap()))
        .collect();
    assert_eq!(dead, [7, 8, 9], "the latest, oldest first");
    assert_eq!(bus.delivery_stats().dead_letters, 10, "all are counted");
}

#[actix_rt::test]
async fn dead_letter_events_of_dead_letter_subscribers_are_not_republished() {
    let bus = bus(EventBusConfig {
        enable_retry: false,
        ..small()
    });
    bus.subscribe("x", |_| std::future::ready(Err("x fails".into())))
        .await
        .unwrap();
    let dlq_runs = Arc::new(AtomicU32::new(0));
    let d = dlq_runs.clone();
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel();
    let config = create_handler_config("dlq_reader").error_handler(move |f| {
        let _ = failed_tx.send(f.item.name().to_owned());
    });
    bus.subscribe_with("$dlq.>", config, move |_| {
        d.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err("the dlq handler fails too".into()))
    })
    .await
    .unwrap();
    bus.publish(ev("x", 1)).await.unwrap();
    // The $dlq handler's own final failure is the last thing that happens.
    let failed = tokio::time::timeout(SAFETY, failed_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed, "$dlq.x");
    bus.stop().await;
    assert_eq!(dlq_runs.load(Ordering::SeqCst), 1, "no $dlq.$dlq.x event");
    let names: Vec<String> = bus
        .dead_letters()
        .await
        .iter()
        .map(|d| d.item.name().to_owned())
        .collect();
    assert_eq!(names, ["x", "$dlq.x"]);
}

#[actix_rt::test]
async fn unsubscribe_does_not_wait_out_a_retry_delay() {
    let bus = bus(small());
    let runs = Arc::new(AtomicU32::new(0));
    let (ran_tx, mut ran_rx) = mpsc::unbounded_channel();
    let r = runs.clone();
    let config = create_handler_config("patient")
        .max_retries(5)
        .retry_delay(Duration::from_secs(3600));
    let id = bus
        .subscribe_with("u", config, move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            let _ = ran_tx.send(());
            std::future::ready(Err("fails".into()))
        })
        .await
        .unwrap();
    bus.publish(ev("u", 1)).await.unwrap();
    ran_rx.recv().await.unwrap(); // the first attempt ran
                                  // ... and failed: wait (a yield loop, bounded) until the hour-long retry delay began.
    let deadline = Instant::now() + SAFETY;
    while bus.delivery_stats().retries == 0 {
        assert!(Instant::now() < deadline, "the retry never began");
        tokio::task::yield_now().await;
    }
    let removed = tokio::time::timeout(SAFETY, bus.unsubscribe(id)).await;
    assert_eq!(
        removed,
        Ok(true),
        "unsubscribe returned without waiting out the delay"
    );
    bus.stop().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(bus.delivery_stats().retries, 1, "the retry had begun");
    assert!(
        bus.dead_letters().await.is_empty(),
        "an unsubscribed item is discarded, not dead"
    );
}

#[actix_rt::test]
async fn overlapping_stops_still_drain_an_item_held_across_a_restart() {
    let bus = bus(small());
    let attempts = Arc::new(AtomicU32::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = attempts.clone();
    bus.subscribe_with("o", quick("recovers").max_retries(5), move |_| {
        let n = a.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = tx.send(n);
        if n <= 3 {
            panic!("attempt {n} fails");
        }
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    bus.publish(ev("o", 1)).await.unwrap();
    assert_eq!(rx.recv().await, Some(1)); // panicked: the actor restarts, keeping the item
    let (first, second) = (bus.clone(), bus.clone());
    tokio::join!(first.stop(), second.stop());
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    let stats = bus.delivery_stats();
    assert_eq!(
        (stats.processed, stats.restarts, stats.dead_letters),
        (1, 3, 0)
    );
}

#[actix_rt::test]
async fn a_retry_delay_of_duration_max_means_never_and_does_not_break_the_subscription() {
    let bus = bus(small());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = create_handler_config("never_again").retry_delay(Duration::MAX);
    let id = bus
        .subscribe_with("n", config, move |e| {
            let _ = tx.send(num(&e));
            std::future::ready(if num(&e) == 0 {
                Err("no".into())
            } else {
                Ok(())
            })
        })
        .await
        .unwrap();
    bus.publish(ev("n", 0)).await.unwrap();
    assert_eq!(rx.recv().await, Some(0));
    // The retry's delay is computed and its wait begins (a yield loop, bounded).
    let deadline = Instant::now() + SAFETY;
    while bus.delivery_stats().retries == 0 {
        assert!(Instant::now() < deadline, "the retry never began");
        tokio::task::yield_now().await;
    }
    assert!(bus.unsubscribe(id).await, "the actor is alive and answers");
    bus.stop().await;
    assert_eq!(bus.delivery_stats().retries, 1);
}

#[actix_rt::test]
async fn a_panic_wakes_publishers_waiting_for_the_slot_it_freed() {
    // Eight slots: taking one item from a full mailbox stays above the low-water mark,
    // so only the panic path can tell waiting publishers that a slot is free.
    let bus = bus(EventBusConfig {
        queue_size: 8,
        default_timeout: Duration::from_secs(30),
        ..small()
    });
    let gate = Arc::new(Semaphore::new(0));
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let g = gate.clone();
    // Event 0 waits for the gate; event 1 panics at once, and the restart after it waits
    // an hour.
    let config = quick("panics_once")
        .restart_delay(Duration::from_secs(3600))
        .timeout(SAFETY);
    bus.subscribe_with("w", config, move |e| {
        let n = num(&e);
        let _ = entered_tx.send(n);
        if n == 1 {
            panic!("event 1 breaks the handler");
        }
        let g = g.clone();
        async move {
            if n == 0 {
                g.acquire().await.unwrap().forget();
            }
            Ok(())
        }
    })
    .await
    .unwrap();
    bus.publish(ev("w", 0)).await.unwrap();
    assert_eq!(entered.recv().await, Some(0));
    for n in 1..=8 {
        bus.try_publish(ev("w", n)).unwrap(); // the mailbox is full
    }
    let waiting = {
        let bus = bus.clone();
        actix_rt::spawn(async move { bus.publish(ev("w", 9)).await })
    };
    // The spawned publish runs on this thread at the next yields: it finds the mailbox
    // full and waits for room (its first poll ends there).
    for _ in 0..3 {
        actix_rt::task::yield_now().await;
    }
    assert!(
        !waiting.is_finished(),
        "the mailbox is full: the publish waits"
    );
    // Event 0 finishes; event 1 is taken (a slot is free) and panics.
    gate.add_permits(1);
    assert_eq!(entered.recv().await, Some(1));
    // The waiting publish gets that slot while the handler's actor waits out its hour.
    let published = tokio::time::timeout(SAFETY, waiting).await;
    assert!(
        matches!(published, Ok(Ok(Ok(())))),
        "the waiting publish was not woken by the panic: {published:?}"
    );
    assert_eq!(bus.delivery_stats().restarts, 1);
    assert!(
        entered.try_recv().is_err(),
        "nothing ran during the restart delay"
    );
}

#[actix_rt::test]
async fn a_stop_that_times_out_accounts_for_every_accepted_item_exactly() {
    const EACH: u64 = 20;
    let bus = bus(EventBusConfig {
        max_workers: 4,
        default_timeout: Duration::from_millis(300),
        ..EventBusConfig::default()
    });
    // A slow handler: most of its items are still queued when the drain times out.
    bus.subscribe_with("slow", quick("slow").timeout(SAFETY), |_| async {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    })
    .await
    .unwrap();
    // A failing handler whose retries wait an hour: its item is held for a retry.
    bus.subscribe_with(
        "failing",
        create_handler_config("failing")
            .max_retries(3)
            .retry_delay(Duration::from_secs(3600)),
        |_| std::future::ready(Err("fails".into())),
    )
    .await
    .unwrap();
    // A handler that never returns: its item is in hand.
    bus.subscribe_with("stuck", quick("stuck").timeout(SAFETY), |_| async {
        std::future::pending::<()>().await;
        Ok(())
    })
    .await
    .unwrap();
    // A handler that panics and restarts after an hour: its item is kept across a restart.
    bus.subscribe_with(
        "panics",
        quick("panics").restart_delay(Duration::from_secs(3600)),
        |_| -> std::future::Ready<tickwire::HandlerResult> { panic!("always") },
    )
    .await
    .unwrap();
    // Fast handlers that finish everything.
    bus.subscribe("fast", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    for name in ["slow", "failing", "stuck", "panics", "fast"] {
        for n in 0..EACH {
            bus.publish(ev(name, n)).await.unwrap();
        }
    }
    bus.stop().await;
    let stats = bus.delivery_stats();
    assert_eq!(stats.accepted, 5 * EACH, "{stats:?}");
    assert_eq!(
        stats.processed + stats.dead_letters + stats.dropped,
        5 * EACH,
        "every accepted item is processed, dead or dropped, once: {stats:?}"
    );
    assert!(
        stats.dropped >= 3 * (EACH - 1),
        "held and queued items were dropped: {stats:?}"
    );
}
