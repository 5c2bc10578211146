//! Criterion benches of the hot paths: pattern matching, the priority mailbox's
//! reserve → push → pop cycle (one thread, no handler), and `try_publish` to 1, 4 and
//! 16 subscribers (publish cost on the caller's thread, with the handlers running on
//! the bus's workers).

use std::sync::mpsc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use tickwire::{Event, EventBus, EventBusConfig, Pattern, TryPublishError};

fn patterns(c: &mut Criterion) {
    let mut group = c.benchmark_group("pattern");
    let exact = Pattern::parse("market.tick.btcusd").unwrap();
    let star = Pattern::parse("market.*.btcusd").unwrap();
    let tail = Pattern::parse("market.>").unwrap();
    for (label, p) in [("exact", &exact), ("star", &star), ("tail", &tail)] {
        group.bench_function(label, |b| {
            b.iter(|| p.matches(black_box("market.tick.btcusd")))
        });
    }
    group.bench_function("validate_name", |b| {
        b.iter(|| tickwire::validate_name(black_box("market.tick.btcusd")))
    });
    group.finish();
}

fn mailbox(c: &mut Criterion) {
    let mut group = c.benchmark_group("mailbox");
    for batch in [1u64, 64] {
        let mut mb = tickwire::core::BenchMailbox::new(1024);
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::new("push_pop", batch), &batch, |b, &n| {
            b.iter(|| mb.push_pop(black_box(n)))
        });
    }
    group.finish();
}

/// A bus running in its own actix System on a background thread, with `subscribers`
/// trivial handlers on `market.tick`.
fn bus_with(subscribers: usize) -> (EventBus, actix_rt::System) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let system = actix_rt::System::new();
        system.block_on(async move {
            let bus = EventBus::start(EventBusConfig {
                max_workers: 2,
                max_history: 0,
                ..EventBusConfig::default()
            })
            .unwrap();
            for _ in 0..subscribers {
                bus.subscribe("market.*", |_| std::future::ready(Ok(())))
                    .await
                    .unwrap();
            }
            tx.send((bus, actix_rt::System::current())).unwrap();
        });
        system.run().unwrap();
    });
    rx.recv().unwrap()
}

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("try_publish");
    group.measurement_time(Duration::from_secs(4));
    for subscribers in [1usize, 4, 16] {
        let (bus, system) = bus_with(subscribers);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(subscribers), &bus, |b, bus| {
            b.iter(|| {
                let mut event = Event::new("market.tick", json!(1));
                loop {
                    match bus.try_publish(event) {
                        Ok(()) => break,
                        Err(TryPublishError::QueueFull(back)) => {
                            event = back;
                            std::thread::yield_now();
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            })
        });
        system.stop();
    }
    group.finish();
}

criterion_group!(benches, patterns, mailbox, publish);
criterion_main!(benches);
