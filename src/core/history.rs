//! The history ring: the latest published items, written by publishers without a lock.
//!
//! A fixed array of slots, each an [`ArcSwapOption`]. A publisher takes the next sequence
//! number with one `fetch_add` and stores its entry in slot `seq % capacity`, replacing
//! the oldest (with a compare-and-swap, so a slow writer never replaces the newer entry of
//! a later lap). A reader loads every slot and orders the entries by sequence number, so
//! the result is in publish order (newest last) even while publishers keep writing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

struct Entry<T> {
    seq: u64,
    item: T,
}

/// The last `capacity` items recorded.
pub(crate) struct History<T> {
    slots: Box<[ArcSwapOption<Entry<T>>]>,
    next: AtomicU64,
}

impl<T: Clone> History<T> {
    /// A ring of `capacity` slots; 0 records nothing.
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            slots: (0..capacity).map(|_| ArcSwapOption::empty()).collect(),
            next: AtomicU64::new(0),
        }
    }

    /// Whether anything is recorded at all.
    pub(crate) fn is_enabled(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Records an item, dropping the oldest when full.
    pub(crate) fn record(&self, item: T) {
        if self.slots.is_empty() {
            return;
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = &self.slots[(seq % self.slots.len() as u64) as usize];
        let entry = Some(Arc::new(Entry { seq, item }));
        // A slow writer must not replace a newer entry written a lap later.
        let mut current = slot.load();
        loop {
            if current.as_ref().is_some_and(|c| c.seq > seq) {
                return;
            }
            let previous = slot.compare_and_swap(&*current, entry.clone());
            if ptr(&previous) == ptr(&current) {
                return;
            }
            current = previous;
        }
    }

    /// Up to `limit` of the latest items, oldest first.
    pub(crate) fn latest(&self, limit: usize) -> Vec<T> {
        let mut entries: Vec<Arc<Entry<T>>> = self
            .slots
            .iter()
            .filter_map(|slot| slot.load_full())
            .collect();
        entries.sort_unstable_by_key(|e| e.seq);
        let skip = entries.len().saturating_sub(limit);
        entries
            .into_iter()
            .skip(skip)
            .map(|e| e.item.clone())
            .collect()
    }
}

fn ptr<T>(entry: &Option<Arc<Entry<T>>>) -> *const Entry<T> {
    entry.as_ref().map_or(std::ptr::null(), Arc::as_ptr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_in_order() {
        let h = History::new(3);
        assert!(h.latest(10).is_empty());
        for i in 0..5 {
            h.record(i);
        }
        assert_eq!(h.latest(10), [2, 3, 4]);
        assert_eq!(h.latest(2), [3, 4]);
        assert_eq!(h.latest(0), Vec::<i32>::new());
    }

    #[test]
    fn zero_capacity_records_nothing() {
        let h = History::new(0);
        h.record(1);
        assert!(h.latest(5).is_empty());
        assert!(!h.is_enabled());
    }
}
