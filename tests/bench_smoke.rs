//! Every `tickwire bench` scenario and baseline, run briefly so they keep working. No
//! speed is asserted (speed belongs to benchmarks, not tests); counts are.

use std::time::Duration;

use tickwire::bench::latency;
use tickwire::bench::ws::compare::{self, CompareOptions, WsMode};
use tickwire::bench::ws::{self, ChurnOptions, ServerMode, StormOptions, WsOptions};
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

fn fanout(deflate: bool) -> WsOptions {
    WsOptions {
        clients: 5,
        readers: 2,
        rates: vec![50.0, 100.0],
        duration: SHORT,
        payload: 200,
        deflate,
        server: ServerMode::InProcess,
    }
}

#[actix_rt::test]
async fn websocket_fanout_delivers_every_message_once_in_order() {
    let r = ws::websocket_fanout(&fanout(false)).await.unwrap();
    assert_eq!((r.negotiated, r.compressed_sessions), (0, 0), "{r:?}");
    assert_eq!(r.phases.len(), 2);
    for (p, published) in r.phases.iter().zip([10, 20]) {
        assert_eq!((p.published, p.expected), (published, published * 5));
        assert_eq!(p.delivered, p.expected, "{p:?}");
        assert_eq!(p.latency_us.count, p.expected, "one sample per delivery");
        assert_eq!((p.seq_errors, p.compressed, p.inflated), (0, 0, 0), "{p:?}");
        assert_eq!((p.connections_lost, p.slow_consumers), (0, 0), "{p:?}");
        assert_eq!(p.reader_cpu.len(), 2, "one figure per reader thread");
        // Nothing compressed: what the clients read is what the server counted.
        assert_eq!(p.wire_bytes_per_message, p.server_wire_bytes_per_message);
        assert_eq!(
            p.server_wire_bytes_per_message,
            p.server_uncompressed_bytes_per_message
        );
    }
    assert_eq!(
        (r.server_bytes_per_connection, r.phases[0].server_cpu),
        (None, None),
        "no memory or CPU figure for an in-process server"
    );
}

#[actix_rt::test]
async fn websocket_fanout_with_deflate_negotiates_and_inflates_everything() {
    let r = ws::websocket_fanout(&fanout(true)).await.unwrap();
    assert_eq!((r.negotiated, r.compressed_sessions), (5, 5), "{r:?}");
    for p in &r.phases {
        assert_eq!(p.delivered, p.expected, "{p:?}");
        assert_eq!(p.seq_errors, 0, "{p:?}");
        // Every message is over compression_min_size: all came compressed, each
        // broadcast inflated at least once (per reader thread at most).
        assert_eq!(p.compressed, p.delivered, "{p:?}");
        assert!(
            p.inflated >= p.published && p.inflated <= 2 * p.published,
            "{p:?}"
        );
        assert_eq!(p.wire_bytes_per_message, p.server_wire_bytes_per_message);
        assert!(
            p.server_wire_bytes_per_message < p.server_uncompressed_bytes_per_message,
            "{p:?}"
        );
    }
}

#[actix_rt::test]
async fn websocket_churn_cycles_all_close_with_1000() {
    for (deflate, client_closes_first) in [(false, false), (false, true), (true, false)] {
        let options = ChurnOptions {
            loops: 4,
            threads: 2,
            duration: SHORT,
            deflate,
            client_closes_first,
            server: ServerMode::InProcess,
        };
        let r = ws::websocket_churn(&options).await.unwrap();
        assert_eq!((r.failed, r.first_error.as_deref()), (0, None), "{r:?}");
        assert!(
            r.cycles >= 4,
            "each loop finishes the cycle it started: {r:?}"
        );
        assert_eq!(
            r.close_codes.into_iter().collect::<Vec<_>>(),
            [(1000, r.cycles)]
        );
        assert_eq!(r.negotiated, if deflate { r.cycles } else { 0 });
        assert_eq!(r.cycle_us.count, r.cycles);
        assert_eq!(r.generator_cpu.len(), 2);
    }
}

#[actix_rt::test]
async fn websocket_storm_clients_all_recover_what_they_missed() {
    let options = StormOptions {
        clients: 20,
        missed: 100,
        threads: 2,
        payload: 50,
        server: ServerMode::InProcess,
    };
    let r = ws::websocket_storm(&options).await.unwrap();
    assert_eq!((r.failed, r.first_error.as_deref()), (0, None), "{r:?}");
    assert_eq!((r.live, r.live_us.count), (20, 20), "{r:?}");
    assert!(r.all_live_ms > 0.0 && r.replayed_per_second > 0.0, "{r:?}");
    assert_eq!(r.generator_cpu.len(), 2);
}

#[actix_rt::test]
async fn websocket_comparison_runs_every_part() {
    let options = CompareOptions {
        mode: WsMode::All,
        runs: 1,
        clients: 3,
        readers: 1,
        rate: 50.0,
        capacity_rate: 100.0,
        duration: SHORT,
        payload: 200,
        churn_loops: 2,
        server: ServerMode::InProcess,
    };
    let (table, json) = compare::run(&options).await.unwrap();
    for (part, phase, delivered) in [
        ("plain", "at_rate", 30),
        ("plain", "at_capacity_rate", 60),
        ("deflate", "at_rate", 30),
        ("deflate", "at_capacity_rate", 60),
    ] {
        assert_eq!(json[part][phase]["delivered"], delivered, "{part} {phase}");
        assert_eq!(json[part][phase]["seq_errors"], 0, "{part} {phase}");
    }
    assert_eq!(json["deflate"]["every_run"][0]["negotiated"], 3);
    assert_eq!(json["churn"]["median"]["failed"], 0);
    assert_eq!(json["churn_deflate"]["median"]["failed"], 0);
    assert_eq!(json["churn_client_closes_first"]["median"]["failed"], 0);
    assert_eq!(json["memory"]["negotiated"], 0);
    assert_eq!(json["memory_deflate"]["negotiated"], 3);
    assert!(json["deflate_to_plain"].is_number());
    assert_eq!(json["storm"]["median"]["live"], 3);
    assert_eq!(json["storm"]["median"]["failed"], 0);
    for row in [
        "plain @ 50/s",
        "deflate @ 100/s",
        "Churn:",
        "Memory:",
        "Reconnect storm:",
    ] {
        assert!(table.contains(row), "{row} in\n{table}");
    }
}
