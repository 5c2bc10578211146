//! The history ring: the latest published items, written by publishers without a lock.
//!
//! A fixed array of slots, each an [`ArcSwapOption`]. A publisher takes the next sequence
//! number with one `fetch_add` and stores its entry in slot `seq % capacity`, replacing
//! the oldest (with a compare-and-swap, so a slow writer never replaces the newer entry of
//! a later lap). A reader loads every slot and orders the entries by sequence number, so
//! the result is in publish order (newest last) even while publishers keep writing.
//!
//! Entries are recycled: the entry an item replaces goes to a lock-free pool of spares
//! (unless a reader still holds it), and the next record fills a spare instead of
//! allocating. So recording costs no allocation once the ring has filled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

struct Entry<T> {
    seq: u64,
    /// `None` only in a spare.
    item: Option<T>,
}

/// Spare entries kept for reuse.
const SPARES: usize = 64;

/// The last `capacity` items recorded.
pub(crate) struct History<T> {
    slots: Box<[ArcSwapOption<Entry<T>>]>,
    next: AtomicU64,
    /// Entries replaced and no longer read, emptied; `None` when nothing is recorded.
    spares: Option<crossbeam::queue::ArrayQueue<Arc<Entry<T>>>>,
}

impl<T: Clone> History<T> {
    /// A ring of `capacity` slots; 0 records nothing.
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            slots: (0..capacity).map(|_| ArcSwapOption::empty()).collect(),
            next: AtomicU64::new(0),
            spares: (capacity > 0).then(|| crossbeam::queue::ArrayQueue::new(SPARES)),
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
        let entry = Some(self.entry(seq, item));
        // A slow writer must not replace a newer entry written a lap later.
        let mut current = slot.load();
        loop {
            if current.as_ref().is_some_and(|c| c.seq > seq) {
                drop(current);
                self.recycle(entry);
                return;
            }
            let previous = slot.compare_and_swap(&*current, entry.clone());
            if ptr(&previous) == ptr(&current) {
                drop(current);
                drop(entry);
                self.recycle(arc_swap::Guard::into_inner(previous));
                return;
            }
            current = previous;
        }
    }

    /// An entry for the item: a spare if there is one.
    fn entry(&self, seq: u64, item: T) -> Arc<Entry<T>> {
        if let Some(mut spare) = self.spares.as_ref().and_then(|s| s.pop()) {
            if let Some(entry) = Arc::get_mut(&mut spare) {
                entry.seq = seq;
                entry.item = Some(item);
                return spare;
            }
        }
        Arc::new(Entry {
            seq,
            item: Some(item),
        })
    }

    /// Keeps an entry nobody else holds as a spare, without its item.
    fn recycle(&self, entry: Option<Arc<Entry<T>>>) {
        let (Some(mut entry), Some(spares)) = (entry, &self.spares) else {
            return;
        };
        if let Some(unique) = Arc::get_mut(&mut entry) {
            unique.item = None;
            let _ = spares.push(entry);
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
            .filter_map(|e| e.item.clone())
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
    fn entries_are_reused_and_keep_no_replaced_item_alive() {
        let h = History::new(2);
        let items: Vec<Arc<u32>> = (0..10).map(Arc::new).collect();
        for item in &items {
            h.record(item.clone());
        }
        let held: Vec<usize> = items.iter().map(Arc::strong_count).collect();
        // Only the two latest are held (by the ring); spares hold none.
        assert_eq!(held, [1, 1, 1, 1, 1, 1, 1, 1, 2, 2]);
        assert_eq!(
            h.spares.as_ref().unwrap().len(),
            1,
            "one entry in circulation spare"
        );
        assert_eq!(h.latest(5).iter().map(|i| **i).collect::<Vec<_>>(), [8, 9]);
    }

    #[test]
    fn zero_capacity_records_nothing() {
        let h = History::new(0);
        h.record(1);
        assert!(h.latest(5).is_empty());
        assert!(!h.is_enabled());
    }
}
