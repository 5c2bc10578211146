//! The priority mailbox: one per subscription, written by any number of publishers without
//! a lock, read by the subscription's handler actor.
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
//!   too). A
//!   publisher first *reserves* a slot with a compare-and-swap on `state` that fails when
//!   the mailbox is full or closed, then pushes. Because reservation and closing touch the
//!   same word, every reservation that succeeded is visible to whoever drains after closing:
//!   no accepted item can slip in after a drain finished.
//! - a coalesced wake flag per consumer ([`WakeFlag`], held by the consumer and by the
//!   route publishers use). A publisher that pushes and finds a consumer's flag idle
//!   raises it and wakes that consumer (one actix message); while it is raised, pushes
//!   send nothing. The consumer lowers its flag when it finds the lanes empty, then looks
//!   once more ([`try_idle`](PriorityMailbox::try_idle)), so a push that raced with going
//!   idle is never left behind.
//! - A consumer group's members share one mailbox, each with its own flag, which also
//!   says what the member is doing ([`Activity`]): *woken* (it will run), *searching*
//!   (its drain is running: it looks at the lanes before it stops or yields), *busy*
//!   (running its handler: it looks again afterwards) or *left*. A push wakes no member
//!   while one is searching, else one idle member (the first on a worker where no member
//!   is busy or waiting to run, or else the first); a member that takes an item
//!   becomes busy and, if more items wait, wakes the next idle member itself. So a
//!   backlog wakes the members one by one, and a group that keeps up costs about one
//!   wake per burst instead of one per member per push. A member woken by a push (or a
//!   hand-on), or one that yielded, holds back further wakes only for [`WAKE_GRACE`]
//!   (500 µs); one woken on joining, not at all: if its worker is kept busy by
//!   another actor's long synchronous handler, the next push after that wakes another
//!   member. Publishers wake from the group's live member list; one that
//!   still sees a member that left reloads the list. (Each step changes a flag, then
//!   reads the other side's state, all `SeqCst`: either the publisher sees the member
//!   stop searching, or the member sees the item.)
//! - `room`: where publishers wait for space (slow path only; see the `room` module).
//!
//! ## Priority
//!
//! [`pop`](PriorityMailbox::pop) takes from the highest non-empty lane. **Anti-starvation
//! rule:** each time an item is taken from a higher lane while a lower lane is non-empty,
//! that lower lane is "passed over"; once a lane has been passed over
//! [`STARVATION_LIMIT`] times in a row, the next pop takes from it (the highest such lane
//! first). So under a steady CRITICAL flood a waiting lower lane is served at the latest
//! by the `STARVATION_LIMIT + 3`-th pop (the 35th): by the `STARVATION_LIMIT + 1`-th (33rd)
//! when it is the only lane passed over, and two pops later when all three lower lanes
//! wait, as the two above it each take their turn first (HIGH at the 33rd, NORMAL at the
//! 34th, LOW at the 35th, and again every 35 pops). A CRITICAL item that arrives behind any
//! number of LOW ones is taken next.
//!
//! In FIFO mode (MessageQueue with `enable_priority_queues = false`) everything goes to a
//! single lane, in arrival order.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use crossbeam::utils::CachePadded;
use tokio::sync::Notify;

use super::depths::DepthGuard;
use super::lane::Lane;
use super::room::{low_water, Room, SharedBound};
use crate::Priority;

/// Consecutive pops a non-empty lower lane may be passed over before it is served.
pub const STARVATION_LIMIT: u32 = 32;

const CLOSED: usize = 1 << (usize::BITS - 1);
const CANCELLED: usize = 1 << (usize::BITS - 2);
const ABANDONED: usize = 1 << (usize::BITS - 3);
const COUNT: usize = !(CLOSED | CANCELLED | ABANDONED);

/// Counts down the subscriptions that still have to finish with one published item, and
/// wakes the publisher that waits for that (`enable_async_processing = false`).
#[derive(Debug)]
pub(crate) struct Completion {
    remaining: AtomicUsize,
    done: Notify,
}

impl Completion {
    pub(crate) fn new(count: usize) -> Arc<Completion> {
        Arc::new(Completion {
            remaining: AtomicUsize::new(count),
            done: Notify::new(),
        })
    }

    /// Waits until every subscription has finished with the item.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.remaining.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Signals one subscription's part of a [`Completion`] when dropped: after the handler ran,
/// or when the item is discarded. So a waiting publisher is released whatever happens.
#[derive(Debug, Default)]
pub(crate) struct CompletionGuard(Option<Arc<Completion>>);

impl CompletionGuard {
    pub(crate) fn new(completion: Option<&Arc<Completion>>) -> Self {
        CompletionGuard(completion.cloned())
    }

    /// Whether a publisher waits for this delivery.
    pub(crate) fn is_armed(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for CompletionGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            if c.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                c.done.notify_waiters();
            }
        }
    }
}

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

/// Consumer-side state of the anti-starvation rule.
#[derive(Debug, Default)]
pub(crate) struct LaneTurns {
    passed: [u32; 4],
}

/// What a consumer is doing, as its [`WakeFlag`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activity {
    /// Asleep: a push must wake it.
    Idle,
    /// Raised: a `Wake` is on its way, or its drain yielded to the worker's other actors.
    /// It will run, and look at the lanes, but it is not running now (a group member
    /// woken by a push or a hand-on, or that yielded, counts as on its way for
    /// [`WAKE_GRACE`]).
    Woken,
    /// Its drain is running: it looks at the lanes before it stops or yields.
    Searching,
    /// A group member running its handler: it looks again afterwards.
    Busy,
    /// A group member that left: it never looks again (the registry stores this after
    /// publishing the group's new member list).
    Left,
}

impl Activity {
    const ALL: [Activity; 5] = [
        Activity::Idle,
        Activity::Woken,
        Activity::Searching,
        Activity::Busy,
        Activity::Left,
    ];
}

/// How long a woken group member counts as on its way: a push within it wakes no other
/// member. After it, the member is taken to be held up (its worker busy with another
/// actor's long synchronous handler), and a push wakes another idle member.
pub(crate) const WAKE_GRACE: Duration = Duration::from_micros(500);

/// Nanoseconds on a process-wide monotonic clock. It starts far from zero, so that
/// stamps can be dated back from it without wrapping.
/// Read on every push to a group: the time-stamp counter (quanta), not the system's
/// monotonic clock, which costs three times as much here.
fn clock_ns() -> u64 {
    static EPOCH: OnceLock<quanta::Instant> = OnceLock::new();
    const ORIGIN: u64 = 1 << 40; // about 18 minutes
    let epoch = *EPOCH.get_or_init(quanta::Instant::now);
    ORIGIN
        + quanta::Instant::now()
            .saturating_duration_since(epoch)
            .as_nanos() as u64
}

#[derive(Debug, Default)]
struct Flag {
    activity: AtomicU8,
    /// When it was last woken ([`clock_ns`]); a hint, read only to time the grace.
    woken_at: AtomicU64,
}

/// One consumer's coalesced wake flag (see the module docs). Whoever wakes the consumer
/// raises it from idle (a publisher; for a group member also another member handing on
/// a backlog, or the registry); the consumer moves it between the other states (a plain
/// subscription only to idle and back, in `try_idle`). Every change but the registry's
/// [`set_left`](WakeFlag::set_left) (a store) is a `SeqCst` compare-and-swap, so a member
/// never overwrites [`Left`](Activity::Left).
#[derive(Debug, Default)]
pub(crate) struct WakeFlag(CachePadded<Flag>);

impl WakeFlag {
    /// What the consumer is doing.
    pub(crate) fn activity(&self) -> Activity {
        Activity::ALL[usize::from(self.0.activity.load(Ordering::SeqCst))]
    }

    /// Moves `from` → `to`; false if the flag was not `from`.
    pub(crate) fn shift(&self, from: Activity, to: Activity) -> bool {
        self.0
            .activity
            .compare_exchange(from as u8, to as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Raises an idle flag; true if it was idle, that is, if the caller must wake the
    /// consumer. (A load first: a raised flag costs a push no write.)
    pub(crate) fn raise(&self) -> bool {
        self.activity() == Activity::Idle && self.shift(Activity::Idle, Activity::Woken)
    }

    /// [`raise`](Self::raise), noting when, for the grace (a group member woken by a
    /// push or a hand-on; other wakes are not timed, which keeps the clock off a plain
    /// subscription's publish path, and lets a member woken otherwise, on joining, hold
    /// back no push).
    pub(crate) fn raise_timed(&self) -> bool {
        if self.activity() != Activity::Idle {
            return false;
        }
        self.0.woken_at.store(clock_ns(), Ordering::Relaxed);
        self.shift(Activity::Idle, Activity::Woken)
    }

    /// A searching group member yields to its worker's other actors: woken, from now.
    pub(crate) fn pause(&self) {
        self.0.woken_at.store(clock_ns(), Ordering::Relaxed);
        self.shift(Activity::Searching, Activity::Woken);
    }

    /// Woken less than [`WAKE_GRACE`] ago (by the hint: a race makes it err either way,
    /// which costs at most one wake too many or a wake later).
    pub(crate) fn recently_woken(&self) -> bool {
        let since = clock_ns().saturating_sub(self.0.woken_at.load(Ordering::Relaxed));
        since < WAKE_GRACE.as_nanos() as u64
    }

    /// Dates the last wake `ago` before now, or in the future when `ago` is negative
    /// (tests of the grace, independent of how fast they run).
    #[cfg(test)]
    pub(crate) fn date_wake(&self, ago_ms: i64) {
        let at = clock_ns() as i64 - ago_ms * 1_000_000;
        self.0.woken_at.store(at as u64, Ordering::Relaxed);
    }

    /// A group member left (see [`Activity::Left`]).
    pub(crate) fn set_left(&self) {
        self.0
            .activity
            .store(Activity::Left as u8, Ordering::SeqCst);
    }
}

/// A bounded multi-producer mailbox with four priority lanes, drained by one consumer (or
/// by the members of a consumer group).
#[derive(Debug)]
pub(crate) struct PriorityMailbox<T> {
    lanes: [Lane<Envelope<T>>; 4],
    /// Slots taken (reserved or queued) | CLOSED | CANCELLED. Invariant: count ≤ capacity.
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

    /// Whether the items waiting in lanes it may not evict leave room in `priority`'s
    /// share (see [`limit`](Self::limit)): if not, waiting for publishers to push cannot
    /// help an eviction.
    fn may_fill(&self, priority: Priority) -> bool {
        let lanes = self.evictable_lanes(priority);
        let urgent: usize = self.lanes[lanes..].iter().map(Lane::len).sum();
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
            .find_map(Lane::pop)
    }

    /// Gives back a slot reserved by [`reserve`](Self::reserve) and not used. Always
    /// wakes waiting publishers: the slot may be the only free one.
    pub(crate) fn unreserve(&self) {
        self.state.fetch_sub(1, Ordering::SeqCst);
        self.room.wake();
    }

    /// Queues an item into a reserved slot. The caller then raises the consumers' wake
    /// flags ([`WakeFlag::raise`]). Returns how many items it discarded instead (the
    /// mailbox was cancelled after the slot was reserved: the publisher discards what it
    /// pushed, so no item is left in a mailbox nobody drains).
    pub(crate) fn push_reserved(&self, envelope: Envelope<T>, priority: Priority) -> usize {
        let lane = if self.fifo { 0 } else { priority.lane() };
        // Ordering: `Lane::push` publishes the item with a SeqCst CAS and `is_empty`
        // reads with SeqCst loads, so this push, the publisher's flag reads after it
        // (`index::Wakeup::for_push`), and a consumer's flag change followed by
        // `has_items_after_fence` are all in one total order: either the consumer sees the
        // item, or the publisher sees the flag idle (or no member searching) and wakes one.
        self.lanes[lane].push(envelope);
        // Likewise with `cancel`: it sets CANCELLED, then empties the lanes; either it
        // sees this item, or this load sees CANCELLED.
        if self.state.load(Ordering::SeqCst) & CANCELLED != 0 {
            return self.discard();
        }
        0
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

    /// Takes the next item by priority and the anti-starvation rule, and frees its slot.
    pub(crate) fn pop(&self, turns: &mut LaneTurns) -> Option<Envelope<T>> {
        let (lane, envelope) = if self.fifo {
            (0, self.lanes[0].pop()?)
        } else {
            self.pop_by_priority(turns)?
        };
        if !self.fifo {
            for lower in 0..lane {
                if self.lanes[lower].is_empty() {
                    turns.passed[lower] = 0;
                } else {
                    turns.passed[lower] += 1;
                }
            }
            turns.passed[lane] = 0;
        }
        self.release(1);
        Some(envelope)
    }

    fn pop_by_priority(&self, turns: &mut LaneTurns) -> Option<(usize, Envelope<T>)> {
        for lane in (0..3).rev() {
            if turns.passed[lane] >= STARVATION_LIMIT {
                turns.passed[lane] = 0;
                if let Some(e) = self.lanes[lane].pop() {
                    return Some((lane, e));
                }
            }
        }
        (0..4)
            .rev()
            .find_map(|lane| self.lanes[lane].pop().map(|e| (lane, e)))
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

    /// The consumer found no item: clears the wake flag, then checks once more. Returns
    /// true if the consumer must go on (an item arrived and the consumer took the flag
    /// back), false if it may go idle (a later push will wake it).
    pub(crate) fn try_idle(&self, flag: &WakeFlag) -> bool {
        loop {
            let now = flag.activity();
            if now == Activity::Left {
                return false;
            }
            if flag.shift(now, Activity::Idle) {
                break;
            }
        }
        self.has_items_after_fence() && flag.shift(Activity::Idle, Activity::Searching)
    }

    /// After a store to a wake flag: whether an item waits, in the same total order as the
    /// publishers' pushes and flag reads (see `push_reserved`).
    pub(crate) fn has_items_after_fence(&self) -> bool {
        fence(Ordering::SeqCst);
        self.lanes.iter().any(|lane| !lane.is_empty())
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

/// A mailbox for the criterion benches (`benches/core.rs`), not part of the API: it runs
/// the reserve → push → pop cycle of a delivery on one thread, without a handler.
#[doc(hidden)]
#[derive(Debug)]
pub struct BenchMailbox {
    mailbox: PriorityMailbox<u64>,
    turns: LaneTurns,
}

impl BenchMailbox {
    /// A four-lane mailbox of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        BenchMailbox {
            mailbox: PriorityMailbox::with_shared_bound(capacity, false, None),
            turns: LaneTurns::default(),
        }
    }

    /// Reserves and pushes `n` items (priorities cycling LOW → CRITICAL), then pops them
    /// all by the priority rule. Returns the sum of what was popped.
    pub fn push_pop(&mut self, n: u64) -> u64 {
        for i in 0..n {
            let priority = Priority::ALL[(i % 4) as usize];
            if self.mailbox.reserve(Priority::Critical).is_err() {
                break;
            }
            let envelope = Envelope {
                item: i,
                queued_at: None,
                depth: DepthGuard::default(),
                completion: CompletionGuard::default(),
            };
            self.mailbox.push_reserved(envelope, priority);
        }
        std::iter::from_fn(|| self.mailbox.pop(&mut self.turns))
            .map(|e| e.item)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_mailbox_returns_every_item() {
        let mut mb = BenchMailbox::new(64);
        assert_eq!(mb.push_pop(10), 45);
        assert_eq!(
            mb.push_pop(100),
            (0..64).sum::<u64>(),
            "at most the capacity"
        );
    }

    fn env(n: u32) -> Envelope<u32> {
        Envelope {
            item: n,
            queued_at: None,
            depth: DepthGuard::default(),
            completion: CompletionGuard::default(),
        }
    }

    fn put(mb: &PriorityMailbox<u32>, n: u32, p: Priority) {
        mb.reserve(Priority::Normal).unwrap();
        assert_eq!(mb.push_reserved(env(n), p), 0);
    }

    fn drain(mb: &PriorityMailbox<u32>, turns: &mut LaneTurns) -> Vec<u32> {
        std::iter::from_fn(|| mb.pop(turns).map(|e| e.item)).collect()
    }

    #[test]
    fn highest_priority_first_fifo_within_a_lane() {
        let mb = PriorityMailbox::new(100, false);
        put(&mb, 1, Priority::Low);
        put(&mb, 2, Priority::Normal);
        put(&mb, 3, Priority::Critical);
        put(&mb, 4, Priority::Low);
        put(&mb, 5, Priority::High);
        put(&mb, 6, Priority::Critical);
        assert_eq!(drain(&mb, &mut LaneTurns::default()), [3, 6, 5, 2, 1, 4]);
        assert_eq!(mb.len(), 0);
    }

    #[test]
    fn fifo_mode_ignores_priority() {
        let mb = PriorityMailbox::new(100, true);
        for (n, p) in [
            (1, Priority::Low),
            (2, Priority::Critical),
            (3, Priority::Normal),
        ] {
            put(&mb, n, p);
        }
        assert_eq!(drain(&mb, &mut LaneTurns::default()), [1, 2, 3]);
    }

    #[test]
    fn low_items_leave_an_eighth_of_the_slots_to_more_urgent_ones() {
        let mb: PriorityMailbox<u32> = PriorityMailbox::new(16, false);
        for _ in 0..14 {
            mb.reserve(Priority::Low).unwrap();
        }
        assert_eq!(
            mb.reserve(Priority::Low),
            Err(Refused::Full),
            "14 of 16: LOW stops"
        );
        mb.reserve(Priority::Critical).unwrap();
        mb.reserve(Priority::Normal).unwrap();
        assert_eq!(
            mb.reserve(Priority::Critical),
            Err(Refused::Full),
            "16 of 16"
        );
        // No headroom in FIFO mode, nor below 8 slots.
        let fifo: PriorityMailbox<u32> = PriorityMailbox::new(16, true);
        for _ in 0..16 {
            fifo.reserve(Priority::Low).unwrap();
        }
        let small: PriorityMailbox<u32> = PriorityMailbox::new(7, false);
        for _ in 0..7 {
            small.reserve(Priority::Low).unwrap();
        }
    }

    #[test]
    fn capacity_and_close_are_enforced_by_reservation() {
        let mb = PriorityMailbox::<u32>::new(2, false);
        mb.reserve(Priority::Normal).unwrap();
        mb.reserve(Priority::Normal).unwrap();
        assert_eq!(mb.reserve(Priority::Normal), Err(Refused::Full));
        mb.unreserve();
        mb.reserve(Priority::Normal).unwrap();
        mb.close();
        mb.unreserve();
        assert_eq!(mb.reserve(Priority::Normal), Err(Refused::Closed));
        assert_eq!(mb.len(), 1);
    }

    #[test]
    fn coalesced_wake() {
        let mb = PriorityMailbox::new(10, false);
        let flag = WakeFlag::default();
        put(&mb, 1, Priority::Normal);
        assert!(flag.raise(), "first push wakes");
        put(&mb, 2, Priority::Normal);
        assert!(!flag.raise(), "second push does not");
        let mut turns = LaneTurns::default();
        drain(&mb, &mut turns);
        assert!(!mb.try_idle(&flag), "empty: go idle");
        put(&mb, 3, Priority::Normal);
        assert!(flag.raise(), "a push after idling wakes again");
        // A push that lands between the last pop and try_idle is picked up by try_idle.
        let mb2 = PriorityMailbox::new(10, false);
        let flag2 = WakeFlag::default();
        put(&mb2, 1, Priority::Normal);
        assert!(flag2.raise());
        mb2.pop(&mut turns).unwrap();
        put(&mb2, 2, Priority::Normal);
        assert!(!flag2.raise(), "consumer still scheduled");
        assert!(mb2.try_idle(&flag2), "consumer must go on");
    }

    #[test]
    fn a_dropped_mailbox_gives_its_items_slots_back_to_the_shared_bound() {
        let bound = Arc::new(SharedBound::new(10));
        let mb = PriorityMailbox::with_shared_bound(10, false, Some(bound.clone()));
        for n in 0..3 {
            assert!(bound.reserve(1, 10));
            put(&mb, n, Priority::Normal);
        }
        mb.pop(&mut LaneTurns::default()).unwrap();
        assert_eq!(bound.len(), 2);
        drop(mb);
        assert_eq!(bound.len(), 0);
    }

    #[test]
    fn low_lane_is_served_under_a_critical_flood() {
        let mb = PriorityMailbox::new(10_000, false);
        for n in 0..10 {
            put(&mb, 1000 + n, Priority::Low);
        }
        let mut turns = LaneTurns::default();
        let mut low_seen_at = Vec::new();
        for step in 0..400u32 {
            // keep the critical lane non-empty at all times
            put(&mb, step, Priority::Critical);
            put(&mb, step, Priority::Critical);
            let e = mb.pop(&mut turns).unwrap();
            if e.item >= 1000 {
                low_seen_at.push(step);
            }
        }
        assert_eq!(
            low_seen_at.len(),
            10,
            "every LOW item served: {low_seen_at:?}"
        );
        for w in low_seen_at.windows(2) {
            assert_eq!(w[1] - w[0], STARVATION_LIMIT + 1, "{low_seen_at:?}");
        }
    }

    #[test]
    fn a_rolled_back_reservation_wakes_a_waiting_publisher() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let mb = Arc::new(PriorityMailbox::<u32>::new(8, false));
            for n in 0..7 {
                put(&mb, n, Priority::Normal); // one slot free
            }
            mb.reserve(Priority::Normal).unwrap(); // another publisher's transient reservation
            assert_eq!(mb.reserve(Priority::Normal), Err(Refused::Full));
            let waiter = tokio::spawn({
                let mb = mb.clone();
                async move { mb.wait_for_room(Priority::Normal).await }
            });
            for _ in 0..3 {
                tokio::task::yield_now().await; // the waiter registers and sleeps
            }
            mb.unreserve(); // the other publisher rolls back: a slot is free
            tokio::time::timeout(std::time::Duration::from_secs(60), waiter)
                .await
                .expect("the waiter is woken")
                .unwrap();
        });
    }

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

    #[test]
    fn an_item_pushed_after_a_cancel_is_discarded_by_its_publisher() {
        let bound = Arc::new(SharedBound::new(4));
        let mb = PriorityMailbox::with_shared_bound(4, false, Some(bound.clone()));
        let completion = Completion::new(1);
        let depths = super::super::depths::TopicDepths::default();
        // A publisher reserves (here and in the bound), then the subscription goes.
        mb.reserve(Priority::Normal).unwrap();
        assert!(bound.reserve(1, 4));
        assert_eq!(mb.cancel(), 0);
        let envelope = Envelope {
            item: 1,
            queued_at: None,
            depth: depths.acquire("t", 1).next().unwrap(),
            completion: CompletionGuard::new(Some(&completion)),
        };
        assert_eq!(mb.push_reserved(envelope, Priority::Normal), 1, "discarded");
        assert_eq!((mb.len(), bound.len()), (0, 0), "every slot given back");
        assert_eq!(
            completion.remaining.load(Ordering::SeqCst),
            0,
            "the publisher is released"
        );
        assert_eq!(depths.nonzero().count(), 0, "the depth is given back");
    }

    #[test]
    fn abandon_cancels_and_says_so() {
        let mb = PriorityMailbox::new(4, false);
        put(&mb, 1, Priority::Normal);
        assert!(!mb.is_abandoned());
        mb.close();
        assert_eq!(mb.abandon(), 1);
        assert!(mb.is_abandoned() && mb.is_cancelled());
        assert_eq!(mb.len(), 0);
    }

    #[test]
    fn three_starving_lanes_are_served_by_the_35th_pop() {
        let mb = PriorityMailbox::new(100_000, false);
        for n in 0..10 {
            put(&mb, 1000 + n, Priority::High);
            put(&mb, 2000 + n, Priority::Normal);
            put(&mb, 3000 + n, Priority::Low);
        }
        let mut turns = LaneTurns::default();
        let mut served: [Vec<u32>; 3] = Default::default();
        for pop in 1..=200u32 {
            put(&mb, pop, Priority::Critical); // the CRITICAL lane is never empty
            let item = mb.pop(&mut turns).unwrap().item;
            if item >= 1000 {
                served[(item / 1000 - 1) as usize].push(pop);
            }
        }
        let limit = STARVATION_LIMIT;
        let every = |first: u32| (0..5).map(|k| first + k * (limit + 3)).collect::<Vec<_>>();
        assert_eq!(served[0][..5], every(limit + 1), "HIGH");
        assert_eq!(served[1][..5], every(limit + 2), "NORMAL");
        assert_eq!(served[2][..5], every(limit + 3), "LOW, at the 35th pop");
    }

    #[test]
    fn cancel_discards_and_frees() {
        let mb = PriorityMailbox::new(10, false);
        put(&mb, 1, Priority::Low);
        put(&mb, 2, Priority::High);
        assert_eq!(mb.cancel(), 2);
        assert_eq!(mb.len(), 0);
        assert!(mb.is_cancelled());
        assert_eq!(mb.reserve(Priority::Normal), Err(Refused::Closed));
    }

    #[test]
    fn completion_counts_down_on_drop() {
        let c = Completion::new(2);
        let a = CompletionGuard::new(Some(&c));
        let b = CompletionGuard::new(Some(&c));
        drop(a);
        assert_eq!(c.remaining.load(Ordering::SeqCst), 1);
        drop(b);
        assert_eq!(c.remaining.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn concurrent_producers_lose_nothing() {
        let mb = Arc::new(PriorityMailbox::new(1 << 20, false));
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let mb = mb.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        let p = Priority::ALL[(i % 4) as usize];
                        put(&mb, t * 1_000_000 + i, p);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut items = drain(&mb, &mut LaneTurns::default());
        assert_eq!(items.len(), 80_000);
        items.sort_unstable();
        items.dedup();
        assert_eq!(items.len(), 80_000);
    }
}
