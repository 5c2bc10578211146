//! One FIFO lane of a mailbox: a fixed ring for the usual depth, and a growable overflow
//! for bursts beyond it.
//!
//! The ring (a crossbeam `ArrayQueue` of [`RING`] slots, allocated at the lane's first
//! push) reuses its slots, so a subscription that keeps up costs no allocation per item;
//! a crossbeam `SegQueue` takes what does not fit (it allocates a block per 31 items),
//! so a lane still holds as many items as its mailbox admits. Order: an item goes to the
//! ring only while the overflow is empty, and items are taken from the ring first; so
//! while the overflow holds items, the ring holds only older ones, and what one publisher
//! pushes comes out in the order it pushed.
//!
//! Both queues publish a push with a `SeqCst` compare-and-swap and read emptiness with
//! `SeqCst` loads, which the mailbox's wake protocol relies on.

use std::sync::OnceLock;

use crossbeam::queue::{ArrayQueue, SegQueue};

/// Slots of a lane's ring (fewer if the mailbox holds fewer).
pub(crate) const RING: usize = 256;

#[derive(Debug)]
pub(crate) struct Lane<T> {
    ring: OnceLock<ArrayQueue<T>>,
    ring_capacity: usize,
    overflow: SegQueue<T>,
}

impl<T> Lane<T> {
    /// A lane for a mailbox of `capacity` items.
    pub(crate) fn new(capacity: usize) -> Self {
        Lane {
            ring: OnceLock::new(),
            ring_capacity: capacity.clamp(1, RING),
            overflow: SegQueue::new(),
        }
    }

    pub(crate) fn push(&self, item: T) {
        if self.overflow.is_empty() {
            let ring = self
                .ring
                .get_or_init(|| ArrayQueue::new(self.ring_capacity));
            match ring.push(item) {
                Ok(()) => {}
                Err(item) => self.overflow.push(item),
            }
        } else {
            self.overflow.push(item);
        }
    }

    pub(crate) fn pop(&self) -> Option<T> {
        self.ring
            .get()
            .and_then(ArrayQueue::pop)
            .or_else(|| self.overflow.pop())
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.get().map_or(0, ArrayQueue::len) + self.overflow.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ring.get().is_none_or(ArrayQueue::is_empty) && self.overflow.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_ring_keeps_its_order() {
        let lane = Lane::new(10_000);
        for n in 0..1000 {
            lane.push(n);
            if n % 3 == 0 {
                // Taking some while the overflow holds items does not reorder.
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
        assert_eq!(lane.ring.get().map(ArrayQueue::capacity), Some(RING));
    }

    #[test]
    fn many_publishers_each_keep_their_order() {
        let lane = std::sync::Arc::new(Lane::new(100_000));
        let threads: Vec<_> = (0..4u64)
            .map(|p| {
                let lane = lane.clone();
                std::thread::spawn(move || {
                    for n in 0..20_000u64 {
                        lane.push((p, n));
                    }
                })
            })
            .collect();
        let mut next = [0u64; 4];
        let mut taken = 0;
        while taken < 80_000 {
            match lane.pop() {
                Some((p, n)) => {
                    assert_eq!(n, next[p as usize], "publisher {p} out of order");
                    next[p as usize] += 1;
                    taken += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        assert!(lane.is_empty());
    }
}
