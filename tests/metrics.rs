//! Metrics: exact counts after known work, the rate definition, percentiles from a
//! handler with a known delay, disabled metrics, the seed's keys, and the Prometheus
//! exposition checked with a parser.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tickwire::metrics::prometheus;
use tickwire::{
    create_handler_config, Event, EventBus, EventBusConfig, MessageQueue, MessageQueueConfig,
    Priority,
};

fn bus(config: EventBusConfig) -> EventBus {
    EventBus::start(config).unwrap()
}

fn small() -> EventBusConfig {
    EventBusConfig {
        max_workers: 2,
        ..EventBusConfig::default()
    }
}

#[actix_rt::test]
async fn exact_counts_after_known_work() {
    let bus = bus(small());
    bus.subscribe("work", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let config = create_handler_config("picky")
        .max_retries(2)
        .retry_delay(Duration::from_millis(1));
    bus.subscribe_with("work", config, move |e| {
        let n = e.data().as_u64().unwrap();
        // Event 0 fails twice then succeeds; event 1 always fails (a dead letter).
        let fail = (n == 0 && t.fetch_add(1, Ordering::SeqCst) < 2) || n == 1;
        std::future::ready(if fail { Err("no".into()) } else { Ok(()) })
    })
    .await
    .unwrap();
    for n in 0..100 {
        bus.publish(Event::new("work", json!(n))).await.unwrap();
    }
    bus.stop().await;
    let m = bus.get_performance_metrics().await;
    assert_eq!(m.total_events_published, Some(100));
    assert_eq!(m.total_events_processed, 100 + 99);
    assert_eq!(m.total_errors, 2 + 3);
    assert_eq!(
        (m.retries, m.dead_letters, m.dropped, m.restarts),
        (2 + 2, 1, 0, 0)
    );
    assert_eq!(m.queue_size, 0);
    assert_eq!(m.active_handlers, Some(0));
    assert_eq!(m.total_handlers, 0, "stopped: no subscriptions left");
    let runs = m.handler_run_time_us.unwrap().count;
    assert_eq!(runs, 100 + 99 + 5, "every run timed, failed ones too");
    assert_eq!(
        m.publish_to_handled_us.unwrap().count,
        199,
        "successful deliveries only"
    );
    assert!(m.metrics_enabled);
}

#[actix_rt::test]
async fn the_rate_is_processed_over_the_window() {
    let bus = bus(small());
    bus.subscribe("r", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    for n in 0..500 {
        bus.publish(Event::new("r", json!(n))).await.unwrap();
    }
    bus.stop().await;
    let m = bus.get_performance_metrics().await;
    assert_eq!(m.total_events_processed, 500);
    // Younger than the 10 s window: the rate is processed over the uptime.
    assert!(m.uptime_seconds < 10.0, "the test ran in under 10 s");
    let rate = m.events_per_second.unwrap();
    let expected = 500.0 / m.uptime_seconds;
    assert!(
        (rate - expected).abs() <= expected * 1e-9,
        "{rate} vs {expected}"
    );
}

#[actix_rt::test]
async fn percentiles_from_a_handler_with_a_known_delay() {
    let bus = bus(small());
    bus.subscribe("slow", |_| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    })
    .await
    .unwrap();
    for n in 0..10 {
        bus.publish(Event::new("slow", json!(n))).await.unwrap();
    }
    bus.stop().await;
    let m = bus.get_performance_metrics().await;
    let run = m.handler_run_time_us.unwrap();
    assert_eq!(run.count, 10);
    // Lower bounds are exact; the upper bound is only a sanity net on a loaded machine.
    assert!(run.p50 >= 19_800, "{run:?}"); // 1 % histogram resolution
    assert!(run.max < 5_000_000, "{run:?}");
    assert!(run.p50 <= run.p90 && run.p90 <= run.p99 && run.p99 <= run.p999 && run.p999 <= run.max);
    let latency = m.publish_to_handled_us.unwrap();
    assert_eq!(latency.count, 10);
    // Each event's publish → handled time includes its own run.
    assert!(
        latency.p50 >= 19_800 && latency.max >= run.max,
        "{latency:?} / {run:?}"
    );
    let average = m.average_processing_time.unwrap();
    assert!((0.0198..5.0).contains(&average), "seconds: {average}");
}

#[actix_rt::test]
async fn disabled_metrics_say_so_instead_of_reporting_zeros() {
    let bus = bus(EventBusConfig {
        enable_metrics: false,
        ..small()
    });
    bus.subscribe("d", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    for n in 0..10 {
        bus.publish(Event::new("d", json!(n))).await.unwrap();
    }
    bus.stop().await;
    let m = bus.get_performance_metrics().await;
    assert!(!m.metrics_enabled);
    assert_eq!(
        m.total_events_processed, 10,
        "counters the bus needs are still kept"
    );
    assert_eq!(m.total_events_published, None);
    assert_eq!(m.events_per_second, None);
    assert_eq!(m.average_processing_time, None);
    assert_eq!(m.active_handlers, None);
    assert_eq!(m.handler_run_time_us, None);
    let json = serde_json::to_value(&m).unwrap();
    assert!(json["events_per_second"].is_null());
    let text = prometheus::render(Some(&m), None, None);
    assert!(
        !text.contains("events_published_total"),
        "not measured, not exposed"
    );
    assert!(text.contains("tickwire_event_bus_events_processed_total 10"));
}

#[actix_rt::test]
async fn the_seeds_keys_come_first_in_order() {
    let bus = bus(small());
    let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
    // The keys in serialization order (a serde_json::Value would sort them).
    let keys = |text: String| -> Vec<String> {
        let mut keys: Vec<(usize, String)> =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
                .unwrap()
                .keys()
                .map(|k| (text.find(&format!("\"{k}\":")).unwrap(), k.clone()))
                .collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| k).collect()
    };
    let b = keys(serde_json::to_string(&bus.get_performance_metrics().await).unwrap());
    assert_eq!(
        &b[..9],
        [
            "total_events_published",
            "total_events_processed",
            "total_errors",
            "events_per_second",
            "average_processing_time",
            "queue_size",
            "active_handlers",
            "total_handlers",
            "uptime_seconds"
        ]
    );
    let q = keys(serde_json::to_string(&mq.get_performance_metrics().await).unwrap());
    assert_eq!(
        &q[..10],
        [
            "total_messages_published",
            "total_messages_processed",
            "total_errors",
            "messages_per_second",
            "average_processing_time",
            "total_queue_size",
            "active_handlers",
            "total_handlers",
            "topics_count",
            "uptime_seconds"
        ]
    );
    for extra in [
        "retries",
        "dead_letters",
        "dropped",
        "restarts",
        "publish_to_handled_us",
        "handler_run_time_us",
    ] {
        assert!(
            b.iter().any(|k| k == extra) && q.iter().any(|k| k == extra),
            "{extra}"
        );
    }
    bus.stop().await;
    mq.stop().await;
}

#[actix_rt::test]
async fn message_queue_figures() {
    let mq = MessageQueue::start(MessageQueueConfig {
        max_workers: 2,
        ..MessageQueueConfig::default()
    })
    .unwrap();
    mq.subscribe("a.b", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    mq.subscribe_group("a.b", "g", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    mq.subscribe_group("a.b", "g", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    for n in 0..50 {
        mq.publish("a.b", json!(n), Priority::Normal).await.unwrap();
    }
    let m = mq.get_performance_metrics().await;
    assert_eq!(m.total_messages_published, Some(50));
    assert_eq!(m.total_handlers, 2, "one subscriber and one group");
    assert_eq!(m.topics_count, 1);
    mq.stop().await;
    let m = mq.get_performance_metrics().await;
    assert_eq!(
        m.total_messages_processed, 100,
        "50 to the subscriber, 50 to the group"
    );
    assert_eq!(m.total_queue_size, 0);
}

#[actix_rt::test]
async fn prometheus_exposition_parses_with_help_and_type() {
    let bus = bus(small());
    let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
    bus.subscribe("p", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    mq.subscribe("q", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    for n in 0..7 {
        bus.publish(Event::new("p", json!(n))).await.unwrap();
        mq.publish("q", json!(n), Priority::Low).await.unwrap();
    }
    bus.stop().await;
    mq.stop().await;
    let text = prometheus::render(
        Some(&bus.get_performance_metrics().await),
        Some(&mq.get_performance_metrics().await),
        None,
    );
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"));
        match &sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => *v,
            prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(value("tickwire_event_bus_events_published_total"), 7.0);
    assert_eq!(value("tickwire_event_bus_events_processed_total"), 7.0);
    assert_eq!(
        value("tickwire_message_queue_messages_processed_total"),
        7.0
    );
    assert_eq!(value("tickwire_message_queue_errors_total"), 0.0);
    let summary = scrape
        .samples
        .iter()
        .find(|s| s.metric == "tickwire_event_bus_handler_run_seconds")
        .expect("a summary");
    match &summary.value {
        prometheus_parse::Value::Summary(quantiles) => {
            let qs: Vec<f64> = quantiles.iter().map(|q| q.quantile).collect();
            assert_eq!(qs, [0.5, 0.9, 0.99, 0.999, 1.0]);
        }
        other => panic!("not a summary: {other:?}"),
    }
    // Every family has HELP and TYPE lines, and names follow the convention.
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert!(families.len() >= 20, "{families:?}");
    for family in &families {
        assert!(
            family.starts_with("tickwire_event_bus_")
                || family.starts_with("tickwire_message_queue_")
        );
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP"
        );
        assert!(scrape.docs.contains_key(*family), "{family}");
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("_total "))
    {
        assert!(
            text.contains(&format!(
                "# TYPE {} counter",
                line.split(' ').next().unwrap()
            )),
            "{line}"
        );
    }
}
