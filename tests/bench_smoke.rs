//! Every `tickwire bench` scenario and baseline, run briefly so they keep working. No
//! speed is asserted (speed belongs to benchmarks, not tests); counts are.

use tickwire::bench;

#[actix_rt::test]
async fn eventbus_throughput_and_its_baselines_deliver_everything() {
    let (events, subscribers) = (2_000, 3);
    let runs = [
        bench::eventbus_throughput(events, subscribers, 2, true).await,
        bench::eventbus_throughput(events, subscribers, 2, false).await,
        bench::crossbeam_baseline(events, subscribers),
        bench::tokio_broadcast_baseline(events, subscribers),
        bench::actix_baseline(events, subscribers, 2).await,
    ];
    for run in runs {
        assert_eq!((run.events, run.subscribers), (events, subscribers));
        assert_eq!(run.deliveries, events * subscribers as u64, "{run:?}");
        assert!(run.deliveries_per_second() > 0.0);
    }
}
