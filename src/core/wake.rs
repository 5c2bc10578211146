//! The wake protocol: when a publisher sends a handler actor a `Wake`, and what a
//! consumer's coalesced wake flag says.
//!
//! - A coalesced wake flag per consumer ([`WakeFlag`], held by the consumer and by the
//!   route publishers use). A publisher that pushes and finds a consumer's flag idle
//!   raises it and wakes that consumer (one actix message); while it is raised, pushes
//!   send nothing. The consumer lowers its flag when it finds the lanes empty, then looks
//!   once more (the mailbox's `try_idle`), so a push that raced with going idle is never
//!   left behind.
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

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crossbeam::utils::CachePadded;

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
