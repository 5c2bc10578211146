//! One FIFO lane of a mailbox: a fixed ring for the usual depth, and a growable overflow
//! for bursts beyond it.
//!
//! The ring (a crossbeam `ArrayQueue` of [`RING`] slots, allocated at the lane's first
//! use) reuses its slots, so a subscription that keeps within [`RING`] items of its
//! publishers costs no allocation per item; a crossbeam `SegQueue` takes what does not
//! fit (it allocates a block per 31 items), so a lane holds as many items as its mailbox
//! admits, and memory follows the backlog.
//!
//! ## Order
//!
//! `spilled` counts the items in the overflow (and in the `stash`, below), including
//! pushes on their way there. A push goes to the ring only while `spilled` is 0; a pop
//! takes from the ring first. So when a pop takes an item `B` from the overflow, an item
//! pushed before `B` by `B`'s publisher is in the ring if it was not taken yet (its push
//! completed before `B` was counted, and the pop saw the count): the pop then checks
//! that the ring is empty. If it is not, `B` is set aside in the `stash` (still counted
//! in `spilled`, so that no later item enters the ring) and the ring's oldest item is
//! taken instead; the stash is served before the overflow once the ring is empty. So
//! what one publisher pushes comes out in the order it pushed (for one consumer; a
//! group's members take items concurrently).
//!
//! ## Visibility
//!
//! A push is visible to [`is_empty`](Lane::is_empty) from its `SeqCst` compare-and-swap
//! on the ring, or its `SeqCst` increment of `spilled`, which `is_empty` reads with
//! `SeqCst` loads: the wake protocol (`wake`) relies on it. A pop may find nothing
//! while a push it already sees is being written (a few instructions): it returns
//! `None`, and the consumer looks again (see `wake::go_idle`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crossbeam::queue::{ArrayQueue, SegQueue};
use crossbeam::utils::CachePadded;

/// Slots of a lane's ring (fewer if the mailbox holds fewer).
pub(crate) const RING: usize = 256;

#[derive(Debug)]
pub(crate) struct Lane<T> {
    ring: OnceLock<ArrayQueue<T>>,
    ring_capacity: usize,
    /// Items in `overflow` and `stash`, and pushes on their way to `overflow`.
    spilled: CachePadded<AtomicUsize>,
    overflow: SegQueue<T>,
    /// Items taken from `overflow` while older items were in the ring.
    stash: SegQueue<T>,
}

impl<T> Lane<T> {
    /// A lane for a mailbox of `capacity` items.
    pub(crate) fn new(capacity: usize) -> Self {
        Lane {
            ring: OnceLock::new(),
            ring_capacity: capacity.clamp(1, RING),
            spilled: CachePadded::new(AtomicUsize::new(0)),
            overflow: SegQueue::new(),
            stash: SegQueue::new(),
        }
    }

    fn ring(&self) -> &ArrayQueue<T> {
        self.ring
            .get_or_init(|| ArrayQueue::new(self.ring_capacity))
    }

    pub(crate) fn push(&self, item: T) {
        let item = if self.spilled.load(Ordering::SeqCst) == 0 {
            match self.ring().push(item) {
                Ok(()) => return,
                Err(item) => item,
            }
        } else {
            item
        };
        self.spilled.fetch_add(1, Ordering::SeqCst);
        self.overflow.push(item);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        let ring = self.ring.get()?;
        // Looking first is cheaper than a pop that finds nothing (it ends with a fence).
        if !ring.is_empty() {
            if let Some(item) = ring.pop() {
                return Some(item);
            }
        }
        if self.spilled.load(Ordering::SeqCst) == 0 {
            return None;
        }
        if !self.stash.is_empty() {
            if let Some(item) = self.take_spilled(self.stash.pop()) {
                return Some(item);
            }
        }
        let item = self.overflow.pop()?; // `None`: its push is under way
        if ring.is_empty() {
            return self.take_spilled(Some(item));
        }
        // Older items reached the ring meanwhile: they go first (see `## Order`).
        self.stash.push(item);
        ring.pop().or_else(|| self.take_spilled(self.stash.pop()))
    }

    /// An item leaving the overflow or the stash.
    fn take_spilled(&self, item: Option<T>) -> Option<T> {
        if item.is_some() {
            self.spilled.fetch_sub(1, Ordering::SeqCst);
        }
        item
    }

    /// Items queued (counting pushes under way into the overflow).
    pub(crate) fn len(&self) -> usize {
        self.ring.get().map_or(0, ArrayQueue::len) + self.spilled.load(Ordering::SeqCst)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.spilled.load(Ordering::SeqCst) == 0 && self.ring.get().is_none_or(ArrayQueue::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_burst_beyond_the_ring_keeps_its_order() {
        let lane = Lane::new(10_000);
        assert_eq!(lane.pop(), None);
        for n in 0..1000 {
            lane.push(n);
            if n % 3 == 0 {
                assert_eq!(lane.len(), (n + 1 - n / 3) as usize);
            }
            if n % 3 == 2 {
                lane.pop();
            }
        }
        let rest: Vec<i32> = std::iter::from_fn(|| lane.pop()).collect();
        let mut expected: Vec<i32> = (0..1000).collect();
        expected.drain(..333);
        assert_eq!(rest, expected);
        assert!(lane.is_empty());
        // Back within the ring once the overflow is empty.
        lane.push(1);
        assert_eq!(
            (lane.ring.get().map(ArrayQueue::len), lane.len()),
            (Some(1), 1)
        );
    }

    #[test]
    fn an_item_taken_from_the_overflow_waits_for_older_ones_in_the_ring() {
        let lane = Lane::new(10_000);
        // The interleaving a review found: a pop sees the ring empty, then (before it
        // looks at the overflow) the ring fills and one more item spills.
        lane.push(0);
        lane.pop();
        let ring = lane.ring.get().unwrap();
        for n in 1..=RING as i32 {
            lane.push(n);
        }
        lane.push(RING as i32 + 1); // spills
        assert_eq!(ring.len(), RING);
        // Take the spilled item as a pop would after finding the ring empty.
        let spilled = lane.overflow.pop().unwrap();
        assert!(!ring.is_empty());
        lane.stash.push(spilled);
        lane.push(RING as i32 + 2); // still spilled: the stash counts
        let out: Vec<i32> = std::iter::from_fn(|| lane.pop()).collect();
        assert_eq!(out, (1..=RING as i32 + 2).collect::<Vec<_>>());
        assert!(lane.is_empty());
    }

    #[test]
    fn many_publishers_each_keep_their_order_through_bursts() {
        const PER: u64 = 100_000;
        let lane = Arc::new(Lane::new(1_000_000));
        let publishers: Vec<_> = (0..3u64)
            .map(|p| {
                let lane = lane.clone();
                std::thread::spawn(move || {
                    for n in 0..PER {
                        lane.push((p, n));
                        if n % 4096 == 0 {
                            std::thread::yield_now(); // bursts and lulls
                        }
                    }
                })
            })
            .collect();
        let mut next = [0u64; 3];
        let mut taken = 0;
        while taken < 3 * PER {
            match lane.pop() {
                Some((p, n)) => {
                    assert_eq!(n, next[p as usize], "publisher {p} out of order");
                    next[p as usize] += 1;
                    taken += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        for t in publishers {
            t.join().unwrap();
        }
        assert!(lane.is_empty());
        assert_eq!(lane.len(), 0);
    }

    #[test]
    fn two_consumers_take_each_item_once() {
        const PER: u64 = 50_000;
        let lane = Arc::new(Lane::new(1_000_000));
        let publishers: Vec<_> = (0..2u64)
            .map(|p| {
                let lane = lane.clone();
                std::thread::spawn(move || (0..PER).for_each(|n| lane.push((p, n))))
            })
            .collect();
        let taken = Arc::new(AtomicUsize::new(0));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (lane, taken) = (lane.clone(), taken.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while taken.load(Ordering::SeqCst) < (2 * PER) as usize {
                        match lane.pop() {
                            Some(item) => {
                                taken.fetch_add(1, Ordering::SeqCst);
                                got.push(item);
                            }
                            None => std::thread::yield_now(),
                        }
                    }
                    got
                })
            })
            .collect();
        for p in publishers {
            p.join().unwrap();
        }
        let mut all: Vec<(u64, u64)> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort_unstable();
        let expected: Vec<(u64, u64)> =
            (0..2).flat_map(|p| (0..PER).map(move |n| (p, n))).collect();
        assert_eq!(all, expected);
    }
}
