//! Overflow by policy: how a drop-oldest subscription makes room in its full mailbox by
//! evicting an item that is not more urgent than the new one (see
//! [`OverflowPolicy`](crate::OverflowPolicy)).
//!
//! An item of some priority may evict from its own lane and the lanes below it (every
//! lane in FIFO mode), the oldest item of the lowest non-empty one first: so a LOW item
//! that finds the LOW share of the slots taken evicts only a LOW one, and an item never
//! evicts a more urgent one. The evicted item's slot passes to the new item: the count of
//! taken slots does not change.

use super::{Envelope, PriorityMailbox, Refused, CANCELLED, CLOSED};
use crate::Priority;
use std::sync::atomic::Ordering;

impl<T> PriorityMailbox<T> {
    /// For subscriptions that drop instead of refusing: takes a slot, or when full and
    /// `evict` is set, takes the slot of the oldest item of the lowest non-empty lane that
    /// is not more urgent than `priority`, and returns that item (to be discarded; the
    /// count does not change). `Err(Full)`: full and nothing it may evict (drop the new
    /// item). So a LOW item that finds the LOW share of the slots taken evicts only a LOW
    /// one, never a more urgent item.
    pub(crate) fn reserve_or_evict(
        &self,
        evict: bool,
        priority: Priority,
    ) -> Result<Option<Envelope<T>>, Refused> {
        // When the mailbox is full but every lane it may evict from is empty, the slots
        // may be reserved by publishers about to push: try a few times, then drop the new
        // item instead.
        for _ in 0..64 {
            match self.reserve(priority) {
                Ok(()) => return Ok(None),
                Err(Refused::Full) if evict => {
                    if let Some(oldest) = self.pop_evictable(priority) {
                        return Ok(Some(oldest));
                    }
                    if !self.may_fill(priority) {
                        // Its share is full of more urgent items: nothing will change that.
                        return Err(Refused::Full);
                    }
                    std::hint::spin_loop();
                }
                Err(refused) => return Err(refused),
            }
        }
        Err(Refused::Full)
    }

    /// Takes the slot of the oldest item of the lowest non-empty lane that is not more
    /// urgent than `priority` (a drop-oldest subscription making room for an item of
    /// `priority` without a new reservation); `None` when closed or when there is none.
    pub(crate) fn evict_oldest(&self, priority: Priority) -> Option<Envelope<T>> {
        if self.state.load(Ordering::SeqCst) & (CLOSED | CANCELLED) != 0 {
            return None;
        }
        self.pop_evictable(priority)
    }

    /// Whether the items waiting in lanes it may not evict leave room in `priority`'s
    /// share (see [`limit`](Self::limit)): if not, waiting for publishers to push cannot
    /// help an eviction.
    fn may_fill(&self, priority: Priority) -> bool {
        let lanes = self.evictable_lanes(priority);
        let urgent: usize = self.lanes[lanes..].iter().map(|lane| lane.len()).sum();
        urgent < self.limit(priority)
    }

    /// The lanes an item of `priority` may evict from: `0..n` (every lane in FIFO mode).
    fn evictable_lanes(&self, priority: Priority) -> usize {
        if self.fifo {
            self.lanes.len()
        } else {
            priority.lane() + 1
        }
    }

    /// The oldest item of the lowest non-empty lane that is not more urgent than
    /// `priority`.
    fn pop_evictable(&self, priority: Priority) -> Option<Envelope<T>> {
        self.lanes[..self.evictable_lanes(priority)]
            .iter()
            .find_map(|lane| lane.pop())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{drain, env, put};
    use super::*;
    use crate::core::turns::LaneTurns;

    #[test]
    fn evicting_takes_the_oldest_of_the_lowest_lane() {
        let mb = PriorityMailbox::new(3, false);
        put(&mb, 1, Priority::High);
        put(&mb, 2, Priority::Low);
        put(&mb, 3, Priority::Low);
        assert_eq!(
            mb.reserve_or_evict(false, Priority::Normal).unwrap_err(),
            Refused::Full
        );
        let evicted = mb
            .reserve_or_evict(true, Priority::Normal)
            .unwrap()
            .unwrap();
        assert_eq!(evicted.item, 2);
        assert_eq!(mb.len(), 3, "the slot passed to the new item");
        mb.push_reserved(env(4), Priority::Normal);
        assert_eq!(drain(&mb, &mut LaneTurns::default()), [1, 4, 3]);
    }

    #[test]
    fn an_item_never_evicts_a_more_urgent_one() {
        // 14 CRITICAL items in 16 slots: LOW may fill no more, and evicts nothing.
        let mb = PriorityMailbox::new(16, false);
        for n in 0..14 {
            put(&mb, n, Priority::Critical);
        }
        assert_eq!(
            mb.reserve_or_evict(true, Priority::Low).unwrap_err(),
            Refused::Full
        );
        assert_eq!(mb.len(), 14);
        // NORMAL fills the last two slots, then evicts only NORMAL or LOW items.
        put(&mb, 14, Priority::Normal);
        put(&mb, 15, Priority::Normal);
        assert_eq!(
            mb.reserve_or_evict(true, Priority::Low).unwrap_err(),
            Refused::Full
        );
        let evicted = mb.reserve_or_evict(true, Priority::High).unwrap().unwrap();
        assert_eq!(evicted.item, 14, "the oldest of the lowest lane below HIGH");
        mb.push_reserved(env(16), Priority::High);
        assert!(mb.evict_oldest(Priority::Low).is_none());
        assert_eq!(mb.evict_oldest(Priority::Normal).unwrap().item, 15);
        // With LOW items waiting, LOW evicts the oldest of them.
        let low = PriorityMailbox::new(16, false);
        for n in 0..7 {
            put(&low, n, Priority::Critical);
            put(&low, 100 + n, Priority::Low);
        }
        assert_eq!(
            low.reserve_or_evict(true, Priority::Low)
                .unwrap()
                .unwrap()
                .item,
            100
        );
        // FIFO mode has one lane and no priority: the oldest goes.
        let fifo = PriorityMailbox::new(2, true);
        put(&fifo, 1, Priority::Critical);
        put(&fifo, 2, Priority::Critical);
        assert_eq!(
            fifo.reserve_or_evict(true, Priority::Low)
                .unwrap()
                .unwrap()
                .item,
            1
        );
    }
}
