//! Per-topic depth: how many deliveries of each topic are accepted and not yet finished
//! (the MessageQueue's `topic_depths`), with memory bounded whatever topic names are
//! published.
//!
//! A topic gets a counter when a publish to it is accepted for at least one subscription
//! (a topic nobody listens to gets none), and each delivery holds one count of it until
//! it is handled, dead-lettered or discarded ([`DepthGuard`]). Counters at zero are
//! reclaimed lazily: when an insertion takes the map past `sweep_at` entries, the
//! inserting publisher removes every counter at zero (that one publish pays for a pass
//! over the map, about 100 µs for 4096 counters: amortized, it is a small constant per
//! new topic), and `sweep_at` becomes twice what is left (at least [`SWEEP_AT`]). So the map holds at most about
//! `2 × (topics with deliveries in flight) + SWEEP_AT` counters, and a topic that is
//! published steadily keeps its counter (no insertion per publish).
//!
//! A counter being reclaimed is first marked dead with a compare-and-swap from zero, so
//! a publisher that found it in the map just before cannot count into it unseen: its own
//! compare-and-swap fails on the mark, and it replaces the dead counter with a new one.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The map size at which counters at zero are first reclaimed.
pub(crate) const SWEEP_AT: usize = 4096;

/// The mark of a reclaimed counter.
const DEAD: i64 = i64::MIN;

/// One topic's count of deliveries in flight; [`DEAD`] once reclaimed.
#[derive(Debug)]
pub(crate) struct Depth(AtomicI64);

impl Depth {
    /// Adds `n`, unless the counter was reclaimed.
    fn try_add(&self, n: i64) -> bool {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            if current == DEAD {
                return false;
            }
            match self.0.compare_exchange_weak(
                current,
                current + n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Marks a counter at zero dead; false if it is not at zero.
    fn try_reclaim(&self) -> bool {
        self.0
            .compare_exchange(0, DEAD, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn is_dead(&self) -> bool {
        self.0.load(Ordering::Acquire) == DEAD
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire).max(0) as u64
    }
}

/// Holds one count of a topic's depth while a delivery is in flight; gives it back when
/// dropped (handled, dead-lettered or discarded).
#[derive(Debug, Default)]
pub(crate) struct DepthGuard(Option<Arc<Depth>>);

impl Drop for DepthGuard {
    fn drop(&mut self) {
        if let Some(depth) = &self.0 {
            depth.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The guards of the deliveries of one publish; see [`TopicDepths::acquire`].
#[derive(Debug)]
pub(crate) struct DepthGuards {
    depth: Arc<Depth>,
    left: usize,
}

impl Iterator for DepthGuards {
    type Item = DepthGuard;

    fn next(&mut self) -> Option<DepthGuard> {
        self.left = self.left.checked_sub(1)?;
        Some(DepthGuard(Some(self.depth.clone())))
    }
}

impl Drop for DepthGuards {
    fn drop(&mut self) {
        if self.left > 0 {
            self.depth.0.fetch_sub(self.left as i64, Ordering::AcqRel);
        }
    }
}

/// The counters of one component; see the module docs.
#[derive(Debug)]
pub(crate) struct TopicDepths {
    map: papaya::HashMap<Box<str>, Arc<Depth>>,
    /// Reclaim counters at zero when the map grows past this.
    sweep_at: AtomicUsize,
    sweeping: AtomicBool,
}

impl Default for TopicDepths {
    fn default() -> Self {
        TopicDepths {
            map: papaya::HashMap::new(),
            sweep_at: AtomicUsize::new(SWEEP_AT),
            sweeping: AtomicBool::new(false),
        }
    }
}

impl TopicDepths {
    /// Counts `n` deliveries of `topic` (`n` ≥ 1) and returns their guards (counts not
    /// taken from the iterator are given back when it is dropped).
    pub(crate) fn acquire(&self, topic: &str, n: usize) -> DepthGuards {
        DepthGuards {
            depth: self.counter(topic, n as i64),
            left: n,
        }
    }

    fn counter(&self, topic: &str, n: i64) -> Arc<Depth> {
        let map = self.map.pin();
        loop {
            if let Some(depth) = map.get(topic) {
                if depth.try_add(n) {
                    return depth.clone();
                }
                // Reclaimed under us: take the dead one out (if the sweep has not yet).
                let dead = depth.clone();
                let _ = map.remove_if(topic, |_, d| Arc::ptr_eq(d, &dead));
                continue;
            }
            let fresh = Arc::new(Depth(AtomicI64::new(n)));
            if map.try_insert(topic.into(), fresh.clone()).is_ok() {
                if map.len() > self.sweep_at.load(Ordering::Relaxed) {
                    self.sweep();
                }
                return fresh;
            }
        }
    }

    /// Removes every counter at zero (one sweeper at a time; others skip it).
    fn sweep(&self) {
        if self.sweeping.swap(true, Ordering::Acquire) {
            return;
        }
        let map = self.map.pin();
        // The predicate may see an entry twice (papaya retries it when a resize moves
        // the entry): one it marked dead already goes too.
        map.retain(|_, depth| !(depth.is_dead() || depth.try_reclaim()));
        self.sweep_at
            .store((map.len() * 2).max(SWEEP_AT), Ordering::Relaxed);
        self.sweeping.store(false, Ordering::Release);
    }

    /// Topics with deliveries in flight, and their depth.
    pub(crate) fn nonzero(&self) -> impl Iterator<Item = (String, u64)> {
        let map = self.map.pin();
        map.iter()
            .map(|(topic, depth)| (topic.to_string(), depth.get()))
            .filter(|(_, depth)| *depth > 0)
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Counters held now (some may be at zero, awaiting the next sweep).
    pub(crate) fn counters(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_deliveries_and_counters_at_zero_are_reclaimed_in_sweeps() {
        let depths = TopicDepths::default();
        let held: Vec<DepthGuard> = depths.acquire("busy", 3).collect();
        let mut partly = depths.acquire("partly", 3);
        drop(partly.next());
        drop(partly); // the two counts not taken are given back
        assert_eq!(depths.map.pin().get("partly").unwrap().get(), 0);
        assert_eq!(depths.nonzero().collect::<Vec<_>>(), [("busy".into(), 3)]);
        // Thousands of topics, each finished at once: no more than a sweep's worth stays.
        for n in 0..(4 * SWEEP_AT) {
            drop(depths.acquire(&format!("t.{n}"), 1).collect::<Vec<_>>());
            assert!(depths.counters() <= SWEEP_AT + 1, "{}", depths.counters());
        }
        assert_eq!(depths.nonzero().collect::<Vec<_>>(), [("busy".into(), 3)]);
        drop(held);
        assert_eq!(depths.nonzero().count(), 0);
    }

    #[test]
    fn a_reclaimed_counter_is_replaced_not_counted_into() {
        let depths = TopicDepths::default();
        drop(depths.acquire("a", 1).collect::<Vec<_>>());
        let old = depths.map.pin().get("a").unwrap().clone();
        assert!(old.try_reclaim(), "at zero: reclaimable");
        // A publisher that meets the dead counter in the map replaces it.
        let guards: Vec<_> = depths.acquire("a", 2).collect();
        assert_eq!(depths.nonzero().collect::<Vec<_>>(), [("a".into(), 2)]);
        assert_eq!(old.0.load(Ordering::SeqCst), DEAD);
        assert!(!old.try_add(1));
        drop(guards);
        assert_eq!(depths.nonzero().count(), 0);
    }

    #[test]
    fn concurrent_publishers_and_sweeps_lose_no_count() {
        let depths = Arc::new(TopicDepths::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let depths = depths.clone();
                std::thread::spawn(move || {
                    let mut kept = Vec::new();
                    for n in 0..20_000 {
                        // Topics shared by the threads, most finished at once, some held.
                        let guards = depths.acquire(&format!("t.{}", n % 5000), 1);
                        if n % 100 == t {
                            kept.extend(guards);
                        }
                    }
                    kept
                })
            })
            .collect();
        let kept: Vec<Vec<DepthGuard>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let total: u64 = depths.nonzero().map(|(_, d)| d).sum();
        assert_eq!(total, kept.iter().map(Vec::len).sum::<usize>() as u64);
        drop(kept);
        assert_eq!(depths.nonzero().count(), 0);
    }
}
