//! The open-loop latency driver: publish → handler start at a fixed offered rate; and
//! priority under saturation.
//!
//! **Open loop**: item `i` is due at `start + i / rate`, and its latency is measured from
//! that due time, not from when it was actually sent. A publisher that stalls (a full
//! mailbox, a descheduled thread) therefore shows the stall in the latency of every item
//! it delayed, instead of hiding it (no coordinated omission). A refused `try_publish` is
//! retried (after a `yield`) until accepted, and that wait counts.
//!
//! [`run`] drives any [`Fanout`] adapter with one subscriber that timestamps on receipt:
//! the same schedule runs on tickwire ([`eventbus_latency`], [`queue_latency`]) and on
//! the baselines ([`crossbeam_latency`], [`tokio_broadcast_latency`], [`actix_latency`]),
//! through the adapters of the throughput scenarios.
//!
//! Each item's latency is also measured from the moment its publisher started to publish
//! it (`from_publish_us`). The difference between the two figures is how late the
//! publishing thread itself was: a preempted publisher delays every item due during the
//! preemption, which the open loop rightly counts, but which no channel can help.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Semaphore;

use super::baselines::{ActixFanout, CrossbeamFanout, TokioBroadcastFanout};
use super::fanout::{publish_until_accepted, Consumers, Fanout, Indexed, OwnedSink, Publish, Sink};
use super::systems::{EventBusFanout, QueueFanout};
use super::{json_event, Payload};
use crate::metrics::LatencySummary;
use crate::{Event, EventBus, EventBusConfig, Priority};

/// What an open-loop run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LatencyReport {
    /// What ran (`eventbus`, `crossbeam`…).
    pub name: &'static str,
    /// Items per second offered.
    pub offered_rate: f64,
    /// Items sent (and received: a run fails rather than lose one).
    pub items: u64,
    /// Latency from the due time to the consumer, µs.
    pub latency_us: LatencySummary,
    /// Latency from the publish call to the consumer, µs: the channel's share of
    /// `latency_us`, without the publishing thread's own lateness.
    pub from_publish_us: LatencySummary,
}

/// Item `i` is due at `start + i × period`; `sent[i]` is when its publisher started to
/// publish it (ns after `start`), set by [`wait_for`](Schedule::wait_for).
#[derive(Clone)]
struct Schedule {
    start: Instant,
    period: Duration,
    sent: Arc<[AtomicU64]>,
}

impl Schedule {
    fn new(rate: f64, items: u64) -> Schedule {
        Schedule {
            start: Instant::now() + Duration::from_millis(20),
            period: Duration::from_secs_f64(1.0 / rate.max(1.0)),
            sent: (0..items).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn due(&self, i: u64) -> Instant {
        self.start + self.period.mul_f64(i as f64)
    }

    /// Waits (yielding) until item `i` is due, then notes when it is being published.
    /// (The consumer reads the note after receiving the item, which orders the two.)
    fn wait_for(&self, i: u64) {
        let due = self.due(i);
        loop {
            let now = Instant::now();
            if now >= due {
                if let Some(sent) = self.sent.get(i as usize) {
                    sent.store(self.nanos(now), Ordering::Relaxed);
                }
                return;
            }
            // Sleep while more than the timer's usual overshoot ahead, so that a slow
            // schedule (the priority scenario's 1,000/s) does not spin a core that the
            // consumer needs; spin (yielding) for the rest.
            if due - now > Duration::from_micros(300) {
                std::thread::sleep(due - now - Duration::from_micros(200));
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_nanos() as u64
    }

    fn latency_us(&self, i: u64) -> u64 {
        Instant::now()
            .saturating_duration_since(self.due(i))
            .as_micros() as u64
    }
}

/// A consumer's latencies: from the due time, and from the publish call.
struct Timings {
    from_due: Histogram<u64>,
    from_publish: Histogram<u64>,
}

impl Timings {
    fn new() -> Timings {
        Timings {
            from_due: histogram(),
            from_publish: histogram(),
        }
    }

    /// Item `i` arrived now.
    fn record(&mut self, schedule: &Schedule, i: u64) {
        let now = schedule.nanos(Instant::now());
        let due = schedule.nanos(schedule.due(i));
        let sent = schedule
            .sent
            .get(i as usize)
            .map_or(due, |s| s.load(Ordering::Relaxed));
        let _ = self
            .from_due
            .record((now.saturating_sub(due) / 1000).max(1));
        let _ = self
            .from_publish
            .record((now.saturating_sub(sent) / 1000).max(1));
    }

    /// Adds `other`'s samples to these.
    fn add(&mut self, other: &Timings) {
        let same_bounds = "histograms of the same bounds";
        self.from_due.add(&other.from_due).expect(same_bounds);
        self.from_publish
            .add(&other.from_publish)
            .expect(same_bounds);
    }

    fn report(&self, name: &'static str, schedule: &Schedule) -> LatencyReport {
        LatencyReport {
            name,
            offered_rate: 1.0 / schedule.period.as_secs_f64(),
            items: schedule.sent.len() as u64,
            latency_us: LatencySummary::of(&self.from_due),
            from_publish_us: LatencySummary::of(&self.from_publish),
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn items(rate: f64, duration: Duration) -> u64 {
    ((rate * duration.as_secs_f64()) as u64).max(1)
}

/// Waits for `permits` on `done`, failing loudly if items were lost.
async fn await_done(done: &Semaphore, permits: u32, what: &str) {
    tokio::time::timeout(Duration::from_secs(120), done.acquire_many(permits))
        .await
        .unwrap_or_else(|_| panic!("bench {what}: not every item arrived"))
        .expect("semaphore is never closed")
        .forget();
}

/// The latency sink: records each item's latency and says when all arrived.
#[derive(Clone)]
struct Record {
    schedule: Schedule,
    total: u64,
    timings: Arc<Mutex<Timings>>,
    seen: Arc<AtomicU64>,
    done: Arc<Semaphore>,
}

impl Record {
    fn new(rate: f64, duration: Duration) -> Record {
        let total = items(rate, duration);
        Record {
            schedule: Schedule::new(rate, total),
            total,
            timings: Arc::new(Mutex::new(Timings::new())),
            seen: Arc::default(),
            done: Arc::new(Semaphore::new(0)),
        }
    }

    fn report(&self, name: &'static str) -> LatencyReport {
        let timings = self.timings.lock().expect("not poisoned");
        timings.report(name, &self.schedule)
    }
}

impl Sink for Record {
    type Owned = OwnRecord;

    fn receive(&self, item: &impl Indexed) {
        if let Ok(mut timings) = self.timings.lock() {
            timings.record(&self.schedule, item.index());
        }
        if self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.total {
            self.done.add_permits(1);
        }
    }

    fn into_owned(self) -> OwnRecord {
        OwnRecord {
            timings: Timings::new(),
            seen: 0,
            shared: self,
        }
    }
}

/// A [`Record`] in the one consumer that owns it: records without a lock, and hands its
/// histograms to the shared ones when the last item arrived.
struct OwnRecord {
    timings: Timings,
    seen: u64,
    shared: Record,
}

impl OwnedSink for OwnRecord {
    fn receive(&mut self, item: &impl Indexed) {
        self.timings.record(&self.shared.schedule, item.index());
        self.seen += 1;
        if self.seen == self.shared.total {
            if let Ok(mut shared) = self.shared.timings.lock() {
                shared.add(&self.timings);
            }
            self.shared.done.add_permits(1);
        }
    }
}

/// Starts `fanout` with one timing subscriber and publishes to it from a thread of its
/// own, item `i` when due, `rate` items per second for `duration`; then waits for every
/// item and reports as `name`. Must run inside an actix System.
pub async fn run<F: Fanout>(
    name: &'static str,
    fanout: F,
    rate: f64,
    duration: Duration,
) -> LatencyReport {
    let sink = Record::new(rate, duration);
    let (mut publisher, running) = fanout.start(Consumers::FanOut(1), vec![sink.clone()]).await;
    let (schedule, total) = (sink.schedule.clone(), sink.total);
    let publisher = std::thread::spawn(move || {
        for i in 0..total {
            schedule.wait_for(i);
            publisher.publish(i);
        }
    });
    await_done(&sink.done, 1, name).await;
    publisher.join().expect("publisher thread");
    F::stop(running).await;
    sink.report(name)
}

/// EventBus: one trivial subscriber, `rate` events per second for `duration`.
pub async fn eventbus_latency(rate: f64, duration: Duration, workers: usize) -> LatencyReport {
    let bus = EventBusFanout {
        payload: Payload::Json,
        workers,
        metrics: EventBusConfig::default().enable_metrics,
        mixed_priorities: false,
    };
    run("eventbus", bus, rate, duration).await
}

/// MessageQueue: one trivial subscriber, `rate` messages per second for `duration`.
pub async fn queue_latency(rate: f64, duration: Duration, workers: usize) -> LatencyReport {
    let queue = QueueFanout {
        payload: Payload::Json,
        workers,
    };
    run("message_queue", queue, rate, duration).await
}

/// Baseline: a bounded crossbeam channel to a consumer thread. Must run inside an actix
/// System.
pub async fn crossbeam_latency(rate: f64, duration: Duration) -> LatencyReport {
    let channel = CrossbeamFanout { make: json_event };
    run("crossbeam", channel, rate, duration).await
}

/// Baseline: a tokio broadcast channel to one receiver on its own thread. Must run
/// inside an actix System.
pub async fn tokio_broadcast_latency(rate: f64, duration: Duration) -> LatencyReport {
    let channel = TokioBroadcastFanout { make: json_event };
    run("tokio_broadcast", channel, rate, duration).await
}

/// Baseline: plain actix, `try_send` to an actor on its own arbiter.
pub async fn actix_latency(rate: f64, duration: Duration) -> LatencyReport {
    let actors = ActixFanout {
        workers: 1,
        make: json_event,
    };
    run("actix", actors, rate, duration).await
}

/// What the priority scenario measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PriorityReport {
    /// LOW events handled.
    pub low_handled: u64,
    /// CRITICAL events handled.
    pub critical_handled: u64,
    /// LOW: from acceptance to the handler, µs.
    pub low_us: LatencySummary,
    /// CRITICAL: from the publish call to the handler, µs (as for LOW).
    pub critical_us: LatencySummary,
    /// CRITICAL: from the due time (open loop, 1/rate apart) to the handler, µs: adds
    /// how late the publishing thread itself was woken.
    pub critical_from_due_us: LatencySummary,
    /// `critical_us.p99 / low_us.p99`.
    pub p99_ratio: f64,
}

/// Priority under saturation: one thread floods LOW events as fast as the bus takes them
/// (its one mailbox stays full, up to what LOW may fill), another publishes CRITICAL
/// events at `critical_rate` (open loop), for `duration`; one trivial subscriber handles
/// both. Both latencies are measured from the publish call; CRITICAL's also from its due
/// time.
pub async fn priority_under_saturation(
    duration: Duration,
    critical_rate: f64,
    queue_size: usize,
) -> PriorityReport {
    let bus = EventBus::start(EventBusConfig {
        max_workers: 1,
        max_history: 0,
        queue_size,
        ..EventBusConfig::default()
    })
    .expect("valid bench config");
    let origin = Instant::now();
    let criticals = items(critical_rate, duration);
    let schedule = Schedule::new(critical_rate, criticals);
    let hists = Arc::new(Mutex::new((histogram(), histogram(), histogram())));
    {
        let (hists, schedule) = (hists.clone(), schedule.clone());
        bus.subscribe("bench.prio", move |e: Event| {
            let mut h = hists.lock().expect("not poisoned");
            let at = Duration::from_nanos(e.data()["at"].as_u64().unwrap_or(0));
            let waited = origin.elapsed().saturating_sub(at).as_micros() as u64;
            match e.priority() {
                Priority::Critical => {
                    let i = e.data()["i"].as_u64().unwrap_or(0);
                    let _ = h.1.record(waited.max(1));
                    let _ = h.2.record(schedule.latency_us(i).max(1));
                }
                _ => {
                    let _ = h.0.record(waited.max(1));
                }
            }
            std::future::ready(Ok(()))
        })
        .await
        .expect("valid pattern");
    }
    let stop_flood = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (bus, stop) = (bus.clone(), stop_flood.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Stamped when offered again after a refusal: LOW latency counts from
                // acceptance, the flood being unbounded by design.
                let at = origin.elapsed().as_nanos() as u64;
                let event =
                    Event::new("bench.prio", json!({ "at": at })).with_priority(Priority::Low);
                if bus.try_publish(event).is_err() {
                    std::thread::yield_now();
                }
            }
        })
    };
    let critical = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            for i in 0..criticals {
                schedule.wait_for(i);
                let at = origin.elapsed().as_nanos() as u64;
                let event = Event::new("bench.prio", json!({ "i": i, "at": at }))
                    .with_priority(Priority::Critical);
                publish_until_accepted(event, |e| bus.try_publish(e));
            }
        })
    };
    critical.join().expect("critical publisher");
    stop_flood.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().expect("flood publisher");
    bus.stop().await;
    let (low, crit, from_due) = {
        let h = hists.lock().expect("not poisoned");
        (
            LatencySummary::of(&h.0),
            LatencySummary::of(&h.1),
            LatencySummary::of(&h.2),
        )
    };
    PriorityReport {
        low_handled: low.count,
        critical_handled: crit.count,
        p99_ratio: crit.p99 as f64 / low.p99.max(1) as f64,
        low_us: low,
        critical_us: crit,
        critical_from_due_us: from_due,
    }
}
