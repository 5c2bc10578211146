//! The metrics actor: one per component. It aggregates what the handler actors ship
//! (latency histograms), samples the component's counters on a fixed tick, and answers
//! snapshot requests.
//!
//! ## Definitions
//!
//! - *rate* (`events_per_second`, `messages_per_second`): deliveries handled
//!   successfully over the last [`RATE_WINDOW`] (or since start, if younger), per second.
//! - *latency percentiles*: over the histograms shipped during the last
//!   [`RATE_WINDOW`], in microseconds; samples arrive up to a second late (see the
//!   recorder), and at once when the component stops.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use hdrhistogram::Histogram;

use super::recorder::{histogram, Latencies};
use super::supervision::DeliveryStats;
use super::{Deliverable, Shared};
use crate::util::LatencySummary;

use crate::util::rate::RateWindow;
use crate::util::rate::{RATE_WINDOW, TICK};

/// Asks for the current figures of the component whose state is given.
#[derive(Message)]
#[rtype(result = "Snapshot")]
pub(crate) struct GetSnapshot<T: Deliverable>(pub(crate) Arc<Shared<T>>);

/// What the metrics actor knows at one moment.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) enabled: bool,
    pub(crate) published: u64,
    pub(crate) stats: DeliveryStats,
    pub(crate) active: u64,
    pub(crate) handlers: u64,
    pub(crate) rate: f64,
    pub(crate) average_run_seconds: f64,
    pub(crate) publish_to_handled: LatencySummary,
    pub(crate) run_time: LatencySummary,
    pub(crate) uptime: Duration,
}

impl Snapshot {
    /// The counters alone, when the metrics actor cannot answer (its System stopped).
    pub(crate) fn unavailable<T: Deliverable>(shared: &Shared<T>) -> Snapshot {
        let counters = shared.counters();
        Snapshot {
            enabled: shared.settings.metrics,
            published: counters.published,
            stats: shared.stats_now(),
            active: counters.active,
            handlers: shared.index.load().len() as u64,
            rate: 0.0,
            average_run_seconds: 0.0,
            publish_to_handled: LatencySummary::default(),
            run_time: LatencySummary::default(),
            uptime: Duration::ZERO,
        }
    }
}

struct Slot {
    started: Instant,
    publish_to_handled: Histogram<u64>,
    run_time: Histogram<u64>,
}

impl Slot {
    fn new(started: Instant) -> Self {
        Slot {
            started,
            publish_to_handled: histogram(),
            run_time: histogram(),
        }
    }
}

/// See the module docs.
pub(crate) struct MetricsActor<T: Deliverable> {
    /// Weak: the component's handles own its state; once they are all dropped, the state
    /// goes (its history and dead letters with it) and this actor stops at its next tick.
    shared: Weak<Shared<T>>,
    started: Instant,
    processed: RateWindow,
    /// Histograms per tick, the newest last.
    slots: VecDeque<Slot>,
}

impl<T: Deliverable> MetricsActor<T> {
    pub(crate) fn new(shared: &Arc<Shared<T>>) -> Self {
        let now = Instant::now();
        MetricsActor {
            shared: Arc::downgrade(shared),
            started: now,
            processed: RateWindow::new(now),
            slots: VecDeque::from([Slot::new(now)]),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let Some(shared) = self.shared.upgrade() else {
            ctx.stop(); // the component is gone
            return;
        };
        let now = Instant::now();
        self.processed.sample(now, shared.stats_now().processed);
        self.slots.push_back(Slot::new(now));
        while self
            .slots
            .front()
            .is_some_and(|slot| now.duration_since(slot.started) > RATE_WINDOW)
        {
            self.slots.pop_front();
        }
    }
}

impl<T: Deliverable> Actor for MetricsActor<T> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

impl<T: Deliverable> Handler<Latencies> for MetricsActor<T> {
    type Result = ();

    /// Adds a handler actor's samples to the current slot.
    fn handle(&mut self, msg: Latencies, _: &mut Context<Self>) {
        if let Some(slot) = self.slots.back_mut() {
            // Same bounds everywhere: adding cannot fail.
            let _ = slot.publish_to_handled.add(&msg.publish_to_handled);
            let _ = slot.run_time.add(&msg.run_time);
        }
    }
}

impl<T: Deliverable> Handler<GetSnapshot<T>> for MetricsActor<T> {
    type Result = MessageResult<GetSnapshot<T>>;

    fn handle(&mut self, msg: GetSnapshot<T>, _: &mut Context<Self>) -> Self::Result {
        let shared = msg.0;
        let now = Instant::now();
        let stats = shared.stats_now();
        let rate = self.processed.rate(now, stats.processed);
        let mut publish_to_handled = histogram();
        let mut run_time = histogram();
        for slot in &self.slots {
            let _ = publish_to_handled.add(&slot.publish_to_handled);
            let _ = run_time.add(&slot.run_time);
        }
        let counters = shared.counters();
        MessageResult(Snapshot {
            enabled: shared.settings.metrics,
            published: counters.published,
            active: counters.active,
            handlers: shared.index.load().len() as u64,
            average_run_seconds: if counters.runs > 0 {
                counters.run_nanos as f64 / counters.runs as f64 / 1e9
            } else {
                0.0
            },
            stats,
            rate,
            publish_to_handled: LatencySummary::of(&publish_to_handled),
            run_time: LatencySummary::of(&run_time),
            uptime: now.duration_since(self.started),
        })
    }
}
