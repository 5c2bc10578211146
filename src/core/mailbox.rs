//! The priority mailbox: one per subscription, written by any number of publishers without
//! a lock, read by the subscription's handler actor (or by the members of a consumer
//! group).
//!
//! ## Layout
//!
//! Four FIFO lanes (lock-free; see `lane`: a ring of reused slots, and an overflow for
//! bursts), one per [`Priority`], plus:
//!
//! - `state`: the number of slots taken (reserved or queued) in the low bits, and three
//!   flag bits, `CLOSED` (no new reservations: the component is stopping, what is queued
//!   will be drained), `CANCELLED` (the subscription is gone, what is queued is discarded,
//!   and so is an item pushed into a slot reserved before: its publisher discards it) and
//!   `ABANDONED` (cancelled by a stop whose drain timed out: the item in hand is given up
//!   too). A publisher first *reserves* a slot with a compare-and-swap on `state` that
//!   fails when the mailbox is full or closed, then pushes. Because reservation and
//!   closing touch the same word, every reservation that succeeded is visible to whoever
//!   drains after closing: no accepted item can slip in after a drain finished.
//! - `room`: where publishers wait for space (slow path only; see the `room` module).
//!
//! The mailbox does not wake its consumers itself: after a push the publisher runs the
//! wake protocol (`wake`: the coalesced wake flags, the consumer group's choice of a
//! member, going idle with a re-check), for which the mailbox answers one question:
//! whether an item waits ([`Items::has_items_after_fence`]). The whole state machine is
//! documented there.
//!
//! The other concerns of a mailbox live next to it: the order items are taken in
//! (`turns`: by priority, with the anti-starvation rule; in FIFO mode, with
//! `enable_priority_queues = false`, everything goes to a single lane, in arrival order),
//! making room by eviction for drop-oldest subscriptions (`mailbox::evict`), and the
//! synchronous publisher's countdown an envelope carries (`completion`).

use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam::utils::CachePadded;

use super::completion::CompletionGuard;
use super::depths::DepthGuard;
use super::lane::Lane;
use super::room::{low_water, Room, SharedBound};
use super::turns::LaneTurns;
use super::wake::Items;
use crate::Priority;

mod evict;

const CLOSED: usize = 1 << (usize::BITS - 1);
const CANCELLED: usize = 1 << (usize::BITS - 2);
const ABANDONED: usize = 1 << (usize::BITS - 3);
const COUNT: usize = !(CLOSED | CANCELLED | ABANDONED);

/// An item in a mailbox, with what to signal when it is done.
#[derive(Debug)]
pub(crate) struct Envelope<T> {
    pub(crate) item: T,
    /// When it was published (metrics only).
    pub(crate) queued_at: Option<quanta::Instant>,
    /// Held only for its `Drop`, like `completion`.
    #[allow(dead_code)]
    pub(crate) depth: DepthGuard,
    /// Held only for its `Drop`, which tells a synchronous publisher this subscription
    /// is done with the item (handled, dead-lettered or discarded).
    #[allow(dead_code)]
    pub(crate) completion: CompletionGuard,
}

/// Why a slot could not be reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `capacity` slots are taken.
    Full,
    /// Closed for stop, or cancelled by unsubscribe.
    Closed,
}

/// Slots of a bound that LOW items may not take, kept for more urgent ones: an eighth
/// (none below 8), so that a flood of LOW items never makes a CRITICAL one wait for room.
pub(crate) fn headroom(capacity: usize) -> usize {
    capacity / 8
}

/// A bounded multi-producer mailbox with four priority lanes, drained by one consumer (or
/// by the members of a consumer group).
#[derive(Debug)]
pub(crate) struct PriorityMailbox<T> {
    lanes: [Lane<Envelope<T>>; 4],
    /// Slots taken (reserved or queued) | CLOSED | CANCELLED | ABANDONED. Invariant:
    /// count ≤ capacity.
    state: CachePadded<AtomicUsize>,
    /// Set with `CANCELLED`, on a line of its own: the consumer looks at it before each
    /// item, and `state` is written by every push and pop.
    cancelled: CachePadded<AtomicBool>,
    /// Publishers waiting for room (and handler actors waiting for a cancel).
    room: Room,
    capacity: usize,
    /// Wake waiting publishers once the count falls to this (see [`low_water`]).
    low_water: usize,
    fifo: bool,
    /// The component-wide bound this mailbox's items also count against, if any.
    shared: Option<Arc<SharedBound>>,
}

impl<T> PriorityMailbox<T> {
    /// A mailbox holding at most `capacity` items; `fifo` puts every item in one lane.
    #[cfg(test)]
    pub(crate) fn new(capacity: usize, fifo: bool) -> Self {
        Self::with_shared_bound(capacity, fifo, None)
    }

    /// A mailbox whose items also count against a component-wide bound: the publisher
    /// reserves there, and the mailbox releases there when an item leaves it.
    pub(crate) fn with_shared_bound(
        capacity: usize,
        fifo: bool,
        shared: Option<Arc<SharedBound>>,
    ) -> Self {
        assert!((1..=COUNT).contains(&capacity), "capacity out of range");
        PriorityMailbox {
            lanes: std::array::from_fn(|_| Lane::new(capacity)),
            state: CachePadded::new(AtomicUsize::new(0)),
            cancelled: CachePadded::new(AtomicBool::new(false)),
            room: Room::default(),
            capacity,
            low_water: low_water(capacity),
            fifo,
            shared,
        }
    }

    /// Items queued or reserved.
    pub(crate) fn len(&self) -> usize {
        self.state.load(Ordering::Acquire) & COUNT
    }

    /// Neither closed nor cancelled: reservations may succeed.
    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) & (CLOSED | CANCELLED) == 0
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::Acquire) & CANCELLED != 0
    }

    /// [`is_cancelled`](Self::is_cancelled), read from a line publishers do not write: for
    /// the consumer's check before each item. It may lag the state by the few
    /// instructions of a `cancel`, which then empties the lanes itself.
    pub(crate) fn cancelled_hint(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// How many slots an item of `priority` may fill: all of them, except for LOW,
    /// which leaves the last [`headroom`] to more urgent items (priority lanes only).
    pub(crate) fn limit(&self, priority: Priority) -> usize {
        if priority == Priority::Low && !self.fifo {
            self.capacity - headroom(self.capacity)
        } else {
            self.capacity
        }
    }

    /// Takes one slot for an item of `priority`, or says why not.
    pub(crate) fn reserve(&self, priority: Priority) -> Result<(), Refused> {
        let limit = self.limit(priority);
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            if current & (CLOSED | CANCELLED) != 0 {
                return Err(Refused::Closed);
            }
            if current & COUNT >= limit {
                return Err(Refused::Full);
            }
            match self.state.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back a slot reserved by [`reserve`](Self::reserve) and not used. Always
    /// wakes waiting publishers: the slot may be the only free one.
    pub(crate) fn unreserve(&self) {
        self.state.fetch_sub(1, Ordering::SeqCst);
        self.room.wake();
    }

    /// Queues an item into a reserved slot. The caller then runs the wake protocol
    /// (`wake::wake`, or `wake::wake_one` for a group). Returns how many items it discarded instead (the
    /// mailbox was cancelled after the slot was reserved: the publisher discards what it
    /// pushed, so no item is left in a mailbox nobody drains).
    pub(crate) fn push_reserved(&self, envelope: Envelope<T>, priority: Priority) -> usize {
        let lane = if self.fifo { 0 } else { priority.lane() };
        // Ordering: `Lane::push` publishes the item with a SeqCst CAS and `is_empty`
        // reads with SeqCst loads, so this push, the publisher's flag reads after it, and
        // a consumer's flag change followed by `has_items_after_fence` are all in one
        // total order (see `## Why no push is left unseen` in `wake`).
        self.lanes[lane].push(envelope);
        // Likewise with `cancel`: it sets CANCELLED, then empties the lanes; either it
        // sees this item, or this load sees CANCELLED.
        if self.state.load(Ordering::SeqCst) & CANCELLED != 0 {
            return self.discard();
        }
        0
    }

    /// Takes the next item by priority and the anti-starvation rule (see `turns`), and
    /// frees its slot.
    pub(crate) fn pop(&self, turns: &mut LaneTurns) -> Option<Envelope<T>> {
        let envelope = if self.fifo {
            self.lanes[0].pop()?
        } else {
            turns.take(
                |lane| self.lanes[lane].pop(),
                |lane| self.lanes[lane].is_empty(),
            )?
        };
        self.release(1);
        Some(envelope)
    }

    /// `n` items left the mailbox (taken or discarded): frees their slots here and in
    /// the shared bound.
    fn release(&self, n: usize) {
        let before = self.state.fetch_sub(n, Ordering::SeqCst);
        let after = (before & COUNT) - n;
        if after <= self.low_water {
            self.room.wake();
        }
        if let Some(shared) = &self.shared {
            shared.release(n, false);
        }
    }

    /// Wakes publishers waiting for room now, whatever the count (the consumer calls this
    /// before it waits on a slow handler or goes idle, so freed slots are never left unused).
    pub(crate) fn notify_room(&self) {
        self.room.wake();
        if let Some(shared) = &self.shared {
            shared.room.wake();
        }
    }

    /// Waits until [`reserve`](Self::reserve) may succeed for `priority`, the mailbox
    /// closes, or a slot is freed. Returns at once if that is already so. Spurious returns
    /// are possible: the caller retries its reservation.
    pub(crate) async fn wait_for_room(&self, priority: Priority) {
        let limit = self.limit(priority);
        self.room
            .wait(|| {
                let state = self.state.load(Ordering::SeqCst);
                state & (CLOSED | CANCELLED) != 0 || state & COUNT < limit
            })
            .await
    }

    /// Resolves once `done()` is true, checking whenever the mailbox's waiters are woken
    /// (a cancel, a close, or [`poke`](Self::poke)).
    pub(crate) async fn until(&self, done: impl Fn() -> bool) {
        self.room.until(done).await
    }

    /// Wakes everything waiting on this mailbox, to look at its state again.
    pub(crate) fn poke(&self) {
        self.room.wake_all();
    }

    /// No new reservations; what was accepted stays to be drained. Wakes waiting publishers
    /// so they see the mailbox closed.
    pub(crate) fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::SeqCst);
        self.room.wake_all();
    }

    /// No new reservations, and what is queued is discarded. Returns how many items were
    /// discarded now (an item pushed later into a slot reserved before is discarded by
    /// its publisher: see [`push_reserved`](Self::push_reserved)).
    pub(crate) fn cancel(&self) -> usize {
        self.state.fetch_or(CANCELLED, Ordering::SeqCst);
        self.cancelled.store(true, Ordering::SeqCst);
        self.room.wake_all();
        self.discard()
    }

    /// A stop whose drain timed out gives up: [`cancel`](Self::cancel), and the consumer
    /// gives up the item in hand too ([`is_abandoned`](Self::is_abandoned)).
    pub(crate) fn abandon(&self) -> usize {
        self.state.fetch_or(ABANDONED, Ordering::SeqCst);
        self.cancel()
    }

    /// Abandoned by a stop (see [`abandon`](Self::abandon)).
    pub(crate) fn is_abandoned(&self) -> bool {
        self.state.load(Ordering::Acquire) & ABANDONED != 0
    }

    /// Empties the lanes; returns how many items it took.
    fn discard(&self) -> usize {
        let mut discarded = 0;
        for lane in &self.lanes {
            while lane.pop().is_some() {
                discarded += 1;
            }
        }
        if discarded > 0 {
            self.release(discarded);
        }
        discarded
    }
}

impl<T> Items for PriorityMailbox<T> {
    /// Whether an item waits, in the same total order as the publishers' pushes and flag
    /// reads: the fence orders the caller's flag change before the loads, and every lane
    /// publishes a push with a `SeqCst` read-modify-write that `is_empty` reads with
    /// `SeqCst` loads (see `lane`).
    #[inline]
    fn has_items_after_fence(&self) -> bool {
        fence(Ordering::SeqCst);
        self.lanes.iter().any(|lane| !lane.is_empty())
    }
}

impl<T> Drop for PriorityMailbox<T> {
    /// Backstop: items still queued when the last reference goes give their slots back
    /// to the shared bound. (Nothing is left in a mailbox that is dropped after a cancel
    /// or after a complete drain.)
    fn drop(&mut self) {
        let left: usize = self.lanes.iter().map(|lane| lane.len()).sum();
        if let (Some(shared), true) = (&self.shared, left > 0) {
            shared.release(left, true);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
