//! Every `tickwire bench` scenario and baseline, run briefly so they keep working. No
//! speed is asserted (speed belongs to benchmarks, not tests); counts are.

use std::time::Duration;

use tickwire::bench::latency;
use tickwire::bench::ws::{self, ServerMode, WsOptions};
use tickwire::bench::{self, Consumers, Payload};

const SHORT: Duration = Duration::from_millis(200);

#[actix_rt::test]
async fn eventbus_throughput_and_its_baselines_deliver_everything() {
    let (events, subscribers) = (2_000, 3);
    let runs = [
        bench::eventbus_throughput(events, subscribers, 2, true).await,
        bench::eventbus_throughput(events, subscribers, 2, false).await,
        bench::eventbus_throughput_with(events, subscribers, 2, true, true).await,
        bench::eventbus_throughput_of(Payload::Typed, events, subscribers, 2, true, false).await,
        bench::crossbeam_baseline(events, subscribers).await,
        bench::tokio_broadcast_baseline(events, subscribers).await,
        bench::actix_baseline(events, subscribers, 2).await,
        bench::crossbeam_baseline_of(events, subscribers, bench::arc_tick).await,
        bench::tokio_broadcast_baseline_of(events, subscribers, bench::arc_tick).await,
        bench::actix_baseline_of(events, subscribers, 2, bench::arc_tick).await,
    ];
    for run in runs {
        assert_eq!((run.events, run.subscribers), (events, subscribers));
        assert_eq!(run.deliveries, events * subscribers as u64, "{run:?}");
        assert!(run.deliveries_per_second() > 0.0);
    }
}

#[actix_rt::test]
async fn queue_throughput_fans_out_and_shares_in_a_group() {
    let fan_out = bench::queue_throughput(2_000, Consumers::FanOut(3), 2).await;
    assert_eq!(fan_out.deliveries, 6_000);
    let group = bench::queue_throughput(2_000, Consumers::Group(4), 2).await;
    assert_eq!(group.deliveries, 2_000);
    for shape in [Consumers::FanOut(3), Consumers::Group(4)] {
        let typed = bench::queue_throughput_of(Payload::Typed, 2_000, shape, 2).await;
        assert_eq!(typed.events, 2_000, "{shape:?}");
    }
}

#[actix_rt::test]
async fn latency_scenarios_count_every_item() {
    let rate = 5_000.0;
    let expected = (rate * SHORT.as_secs_f64()) as u64;
    let reports = [
        latency::eventbus_latency(rate, SHORT, 2).await,
        latency::queue_latency(rate, SHORT, 2).await,
        latency::crossbeam_latency(rate, SHORT).await,
        latency::tokio_broadcast_latency(rate, SHORT).await,
        latency::actix_latency(rate, SHORT).await,
    ];
    for r in reports {
        assert_eq!(r.items, expected, "{}", r.name);
        assert_eq!(
            r.latency_us.count, expected,
            "{}: one sample per item",
            r.name
        );
        assert!(r.latency_us.p50 <= r.latency_us.max);
        // Each item was published at or after its due time, so it is no older from there.
        let (due, publish) = (r.latency_us, r.from_publish_us);
        assert_eq!(publish.count, expected, "{}", r.name);
        assert!(
            publish.p50 <= due.p50 && publish.p99 <= due.p99 && publish.max <= due.max,
            "{}: from the publish call {publish:?}, from the due time {due:?}",
            r.name
        );
    }
}

#[actix_rt::test]
async fn priority_under_saturation_handles_every_critical_event() {
    let r = latency::priority_under_saturation(SHORT, 1_000.0, 100).await;
    assert_eq!(r.critical_handled, 200);
    assert!(r.low_handled > 0);
}

#[actix_rt::test]
async fn websocket_fanout_delivers_to_every_client() {
    let options = WsOptions {
        clients: 5,
        readers: 2,
        rate: 50.0,
        duration: SHORT,
        payload: 200,
        server: ServerMode::InProcess,
    };
    let r = ws::websocket_fanout(&options).await.unwrap();
    assert_eq!((r.published, r.expected), (10, 50));
    assert_eq!(r.delivered, 50, "{r:?}");
    assert_eq!(r.latency_us.count, 50);
    assert_eq!(r.reader_cpu.len(), 2, "one figure per reader thread");
    assert_eq!(
        r.server_bytes_per_connection, None,
        "no figure for an in-process server"
    );
}
