//! The throughput driver: one publisher thread publishes N items as fast as the system
//! takes them (retrying, after a `yield`, when there is no room), every subscriber counts
//! what it receives, and the figure is deliveries per second from the first publish to
//! the last delivery.
//!
//! [`run`] drives any [`Fanout`] adapter; the named scenarios of [`bench`](super)
//! (`eventbus_throughput_of`, `crossbeam_baseline_of`, …) are `run` with one adapter each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;
use tokio::sync::Semaphore;

use super::fanout::{Consumers, Fanout, Indexed, OwnedSink, Publish, Sink};

/// The result of one throughput run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Throughput {
    /// Events published.
    pub events: u64,
    /// Subscribers each event went to.
    pub subscribers: usize,
    /// Handler runs counted (`events × subscribers` when nothing was lost).
    pub deliveries: u64,
    /// Times `try_publish` found a mailbox full and was retried.
    pub full_retries: u64,
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
}

impl Throughput {
    /// Handler runs per second.
    pub fn deliveries_per_second(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }

    /// Published events per second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// Starts `fanout` with `consumers` counting subscribers, publishes `events` items
/// (`0..events`) from a thread of its own, and times it from the first publish until
/// every subscriber (in a group: the group) has counted `events`. Must run inside an
/// actix System. A run that loses a delivery fails (panics) rather than hang.
pub async fn run<F: Fanout>(fanout: F, events: u64, consumers: Consumers) -> Throughput {
    // One permit per count that reached `events` (permits accumulate).
    let done = Arc::new(Semaphore::new(0));
    let counts: Vec<Count> = match consumers {
        Consumers::FanOut(n) => (0..n).map(|_| Count::new(events, &done)).collect(),
        Consumers::Group(_) => vec![Count::new(events, &done)],
    };
    let sinks = match consumers {
        Consumers::FanOut(_) => counts.clone(),
        Consumers::Group(n) => vec![counts[0].clone(); n],
    };
    let (mut publisher, running) = fanout.start(consumers, sinks).await;
    let start = Instant::now();
    let publisher =
        std::thread::spawn(move || (0..events).map(|i| publisher.publish(i)).sum::<u64>());
    let all = u32::try_from(counts.len()).expect("subscriber count fits u32");
    let deadline = Duration::from_secs(120) + Duration::from_micros(events);
    match tokio::time::timeout(deadline, done.acquire_many(all)).await {
        Ok(permits) => permits.expect("semaphore is never closed").forget(),
        Err(_) => panic!(
            "bench: not every event reached every subscriber: {:?} of {events} each \
             (a consumer with a thread of its own reports when done)",
            counts.iter().map(Count::load).collect::<Vec<_>>()
        ),
    }
    let elapsed = start.elapsed();
    let full_retries = publisher.join().expect("publisher thread");
    F::stop(running).await;
    Throughput {
        events,
        subscribers: consumers.count(),
        deliveries: counts.iter().map(Count::load).sum(),
        full_retries,
        elapsed,
    }
}

/// The throughput sink: counts a subscriber's items (or a group's), and adds a permit to
/// `done` when the count reaches `target`. Each count has a cache line of its own: the
/// counts of a run are allocated together, and subscribers on different workers must
/// not write to one line.
#[derive(Clone)]
struct Count {
    count: Arc<CachePadded<AtomicU64>>,
    target: u64,
    done: Arc<Semaphore>,
}

impl Count {
    fn new(target: u64, done: &Arc<Semaphore>) -> Count {
        Count {
            count: Arc::default(),
            target,
            done: done.clone(),
        }
    }

    fn load(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Sink for Count {
    type Owned = OwnCount;

    fn receive(&self, _: &impl Indexed) {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            self.done.add_permits(1);
        }
    }

    fn into_owned(self) -> OwnCount {
        OwnCount {
            seen: 0,
            shared: self,
        }
    }
}

/// A [`Count`] in the one consumer that owns it: counts in plain memory, and stores the
/// count when it reaches the target (before the permit) and when dropped.
struct OwnCount {
    seen: u64,
    shared: Count,
}

impl OwnedSink for OwnCount {
    fn receive(&mut self, _: &impl Indexed) {
        self.seen += 1;
        if self.seen == self.shared.target {
            self.shared.count.store(self.seen, Ordering::Relaxed);
            self.shared.done.add_permits(1);
        }
    }
}

impl Drop for OwnCount {
    fn drop(&mut self) {
        self.shared.count.store(self.seen, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tick;

    #[test]
    fn an_owned_count_reports_at_its_target_and_when_dropped() {
        let done = Arc::new(Semaphore::new(0));
        let count = Count::new(2, &done);
        let mut own = count.clone().into_owned();
        own.receive(&tick(0));
        assert_eq!((count.load(), done.available_permits()), (0, 0));
        own.receive(&tick(1));
        assert_eq!((count.load(), done.available_permits()), (2, 1));
        own.receive(&tick(2));
        drop(own);
        assert_eq!((count.load(), done.available_permits()), (3, 1));
    }

    #[test]
    fn the_members_of_a_group_count_together() {
        let done = Arc::new(Semaphore::new(0));
        let group = Count::new(3, &done);
        let members = [group.clone(), group.clone()];
        for i in 0..3 {
            members[i % 2].receive(&tick(i as u64));
        }
        assert_eq!((group.load(), done.available_permits()), (3, 1));
    }
}
