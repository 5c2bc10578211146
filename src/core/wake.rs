//! The wake protocol: who sends a handler actor a `Wake`, and when, and why no accepted
//! item is ever left in a mailbox while all of its consumers sleep.
//!
//! Every consumer of a mailbox (the handler actor of a subscription, or each member of a
//! consumer group, which share one mailbox) has a coalesced [`WakeFlag`]: what it is
//! doing (an [`Activity`]) and when it was last woken. Publishers read and raise it after
//! each push; the consumer moves it as it drains. This module owns every transition and
//! every decision; the rest is wiring: `index` holds a group's live member list and sends
//! the actix message a transition asks for ([`Consumer::send_wake`]), `handler_actor`
//! runs the drain and calls the consumer's transitions at its points, and `registry` runs
//! [`join`] and [`leave`].
//!
//! ## States
//!
//! | Activity    | the consumer is…                               | it looks at the lanes |
//! |-------------|------------------------------------------------|-----------------------|
//! | `Idle`      | asleep: no drain runs, no `Wake` is on its way | only once woken       |
//! | `Woken`     | raised: a `Wake` is on its way, or it yielded  | when it runs          |
//! | `Searching` | draining: it looks before it stops or yields   | yes                   |
//! | `Busy`      | a group member running its handler             | afterwards            |
//! | `Left`      | a group member that left                       | never                 |
//!
//! ## Transitions
//!
//! Who makes each, and where:
//!
//! - **publisher**, after a push to a plain subscription: `Idle → Woken`, then a `Wake`
//!   ([`wake`]);
//! - **publisher**, after a push to a group, if needed: one member `Idle → Woken`,
//!   stamped, then a `Wake` ([`wake_one`], see `## Which member a push wakes`);
//! - **member**, when its drain starts, or resumes after a yield: `Woken → Searching`
//!   ([`WakeFlag::start`]);
//! - **member**, when it takes an item: `Searching → Busy`, a re-check, and if items
//!   wait, a hand-on ([`took_item`]);
//! - **member**, when its handler is done: `Busy → Searching` ([`WakeFlag::item_done`]);
//! - **member**, when it yields to its worker: `Searching → Woken`, stamped
//!   ([`WakeFlag::pause`]);
//! - **consumer** (a member, or a plain subscription's actor), when it finds no item:
//!   `any → Idle` (unless `Left`), a re-check, and if an item waits, `Idle → Searching`
//!   and it goes on ([`go_idle`]);
//! - **joiner** (the registry, on subscribe): the new member's fresh flag `Idle →
//!   Woken`, unstamped, and a `Wake`, so that it looks once; then the list that holds it
//!   ([`join`]);
//! - **leaver** (the registry, on unsubscribe): the list without the member; then `any →
//!   Left` (a store); then, if members remain, [`wake_one`] on the new list ([`leave`]).
//!
//! A plain subscription uses only the publisher's raise and [`go_idle`]: its publishers
//! look for `Idle` alone, so its drain skips the member transitions (its flag stays
//! raised while it drains). Every change of an activity is a `SeqCst` compare-and-swap
//! from an expected state, except the leaver's `Left`, a store: so no consumer ever
//! overwrites `Left`.
//!
//! ## Which member a push wakes
//!
//! After a push to a group's mailbox, the publisher looks at every member in the live
//! list ([`Scan`](steps::Scan)):
//!
//! - one is `Searching`: nothing to do, it will see the item;
//! - one is `Woken` less than [`WAKE_GRACE`] ago (see `## Grace`) on a worker where no
//!   member is `Busy`: nothing, it is on its way;
//! - one is `Left`: the list is stale; reload it and start over (the leaver replaced the
//!   list before the mark, so this repeats at most once per concurrent departure);
//! - otherwise, if one is `Idle`, it raises one idle member and sends it a `Wake`: the
//!   first on a worker where no member is `Busy` or `Woken` (that worker may be held by a
//!   long synchronous handler), else the first. A raise that fails (another publisher
//!   raised it, or it re-claimed its flag, or it left) moves on to the next candidate;
//! - none idle: every member is `Busy` or `Woken`, and each looks again later.
//!
//! A member that takes an item becomes `Busy` and, if more items wait, runs the same
//! choice itself (*hand-on*): a backlog wakes the members one by one, and a group that
//! keeps up costs about one wake per burst instead of one per member per push.
//!
//! ## Grace
//!
//! A member raised by a push or a hand-on, or that yielded, is stamped; for
//! [`WAKE_GRACE`] (500 µs) after the stamp it holds back further wakes. After that it is
//! taken to be held up (its worker busy with another actor's long synchronous handler)
//! and counts as occupied, so a push wakes another idle member. Within the grace, too, a
//! member does not hold back a push when another member of the group is `Busy` on its
//! worker: that member's handler may be synchronous and hold the worker for as long as
//! it runs, and a burst that ends within the grace would then wait for it with idle
//! members on free workers (a handler that awaits leaves the worker free, and costs at
//! most one wake too many). What the grace cannot see is a worker held by another
//! actor's synchronous handler during a burst that ends within it: that burst waits for
//! the worker, or for the next push after the grace. A member raised on
//! joining is not stamped and holds back no push. The stamp is a `Relaxed` hint: a
//! `Woken` member always looks at the lanes (its `Wake` is on its way, or it resumes
//! after its yield), so the grace decides only between "nothing to do" and "wake one
//! more", never whether an item is seen.
//!
//! ## Why no push is left unseen
//!
//! Every flag operation is `SeqCst`, a push publishes its item with a `SeqCst`
//! read-modify-write (see `lane`), a consumer's re-check ([`Items::has_items_after_fence`])
//! is a `SeqCst` fence followed by `SeqCst` loads of the lanes, and the member list is an
//! `ArcSwap` whose loads and stores each contain a `SeqCst` read-modify-write. So they
//! all fall in one total order consistent with each thread's program order, and each
//! step is "change my flag, then read the other side": *either the publisher sees the
//! member stop searching, or the member sees the item*.
//!
//! - A publisher that read a member `Searching`, `Busy` or `Woken` leaves the item to
//!   it (and wakes no one if no other member is idle). That member's next flag change
//!   comes after the read, so after the push: whatever it does next (take an item and
//!   re-check for the hand-on, finish its handler and pop, go idle and re-check, start or
//!   resume its drain and pop) sees the item.
//! - A consumer going idle lowers its flag, then re-checks. If the re-check comes before
//!   the push, so did the lowering: the publisher, reading after its push, sees `Idle`
//!   and raises it (or sees a later state, which is one of the cases above). If the
//!   re-check sees the item, the consumer takes its flag back (`Idle → Searching`) and
//!   goes on; if that fails, a publisher raised it meanwhile and its `Wake` follows.
//! - A publisher whose raise of every idle member fails: each failed because that
//!   member's flag changed after the scan (so after the push) to `Woken` (a `Wake`
//!   follows), to `Searching` (its re-check saw items) or to `Left` (below).
//! - `Left`: the leaver replaces the list, marks the member, and then runs the choice
//!   itself on the new list. A publisher that saw the member before the mark and left the
//!   item to it is covered by that hand-over; one that sees the mark reloads the list,
//!   which no longer holds it. The departed member ends its drain at its next check of
//!   `removed`, after the item in hand.
//!
//! The check in `wake::model` (a test) explores every interleaving of these steps for two
//! publishers and two members of a group (also on one worker, with one leaving just
//! after it was woken, with one joining) and for a plain subscription, and asserts that
//! the drains end with the mailbox empty and each item handled once.
//!
//! ## Steps
//!
//! Each operation above that takes more than one shared-memory access is a small state
//! machine (`wake::steps`) written as the operation's accesses in order, which can pause
//! after each: the model check steps the machines one access at a time, on the same
//! [`WakeFlag`], which is what makes it a check of this code rather than of a copy; the
//! functions of this module run them without pausing, and there the pauses compile away
//! (the same loads and compare-and-swaps as a hand-written loop, no allocation).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crossbeam::utils::CachePadded;

#[cfg(test)]
mod model;
mod steps;

pub(crate) use steps::Choice;
use steps::{GoIdle, Join, Leave, Raise, TookItem, WakeOne};

/// What a consumer is doing, as its [`WakeFlag`] says (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// The clock the grace is timed by, in nanoseconds ([`Tsc`]; the model check has its
/// own).
pub(crate) trait Clock {
    /// Now, in nanoseconds since some origin far from zero (stamps can be dated back from
    /// it without wrapping).
    fn now_ns(&self) -> u64;
}

/// The grace clock: nanoseconds on a process-wide monotonic clock, the time-stamp counter
/// (quanta), not the system's monotonic clock, which costs three times as much here. It
/// is read only when a publisher finds a member `Woken` or raises one, and when a member
/// yields.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tsc;

impl Clock for Tsc {
    #[inline]
    fn now_ns(&self) -> u64 {
        static EPOCH: OnceLock<quanta::Instant> = OnceLock::new();
        const ORIGIN: u64 = 1 << 40; // about 18 minutes
        let epoch = *EPOCH.get_or_init(quanta::Instant::now);
        ORIGIN
            + quanta::Instant::now()
                .saturating_duration_since(epoch)
                .as_nanos() as u64
    }
}

#[derive(Debug, Default)]
struct Flag {
    /// An [`Activity`] as its discriminant.
    activity: AtomicU8,
    /// When it was last woken by a push, a hand-on or a yield ([`Clock::now_ns`]); a
    /// hint, read only to time the grace.
    woken_at: AtomicU64,
}

/// One consumer's coalesced wake flag (see the module docs). Whoever wakes the consumer
/// raises it from idle (a publisher; for a group member also another member handing on
/// a backlog, or the registry); the consumer moves it between the other states. Every
/// change but the registry's [`set_left`](WakeFlag::set_left) (a store) is a `SeqCst`
/// compare-and-swap, so a member never overwrites [`Left`](Activity::Left).
#[derive(Debug, Default)]
pub(crate) struct WakeFlag(CachePadded<Flag>);

impl WakeFlag {
    /// What the consumer is doing.
    #[inline]
    pub(crate) fn activity(&self) -> Activity {
        Activity::ALL[usize::from(self.0.activity.load(Ordering::SeqCst))]
    }

    /// Moves `from` → `to`; false if the flag was not `from`.
    #[inline]
    pub(crate) fn shift(&self, from: Activity, to: Activity) -> bool {
        self.0
            .activity
            .compare_exchange(from as u8, to as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Raises an idle flag; true if it was idle, that is, if the caller must wake the
    /// consumer (a [`Raise`] run to its end, sending nothing; tests: the runtime raises
    /// through [`wake`], which sends the `Wake` too).
    #[cfg(test)]
    pub(crate) fn raise(&self) -> bool {
        Raise::START.finish(self, || {})
    }

    /// Stamps the flag, then moves it `Idle → Woken` (the last step of a publisher's or a
    /// hand-on's raise of a group member: the stamp starts its grace).
    #[inline]
    fn raise_stamped(&self, clock: &impl Clock) -> bool {
        self.0.woken_at.store(clock.now_ns(), Ordering::Relaxed);
        self.shift(Activity::Idle, Activity::Woken)
    }

    /// A group member's drain starts, or resumes after a yield: `Woken → Searching`.
    #[inline]
    pub(crate) fn start(&self) {
        self.shift(Activity::Woken, Activity::Searching);
    }

    /// A group member's handler is done with its item: `Busy → Searching` (it pops next).
    #[inline]
    pub(crate) fn item_done(&self) {
        self.shift(Activity::Busy, Activity::Searching);
    }

    /// A searching group member yields to its worker's other actors: `Searching →
    /// Woken`, stamped now (a push after the grace wakes another member).
    #[inline]
    pub(crate) fn pause(&self, clock: &impl Clock) {
        self.0.woken_at.store(clock.now_ns(), Ordering::Relaxed);
        self.shift(Activity::Searching, Activity::Woken);
    }

    /// Stamped less than [`WAKE_GRACE`] ago (by the hint: a race makes it err either way,
    /// which costs at most one wake too many or a wake later).
    #[inline]
    pub(crate) fn recently_woken(&self, clock: &impl Clock) -> bool {
        let since = clock
            .now_ns()
            .saturating_sub(self.0.woken_at.load(Ordering::Relaxed));
        since < WAKE_GRACE.as_nanos() as u64
    }

    /// A group member left (see [`Activity::Left`]).
    pub(crate) fn set_left(&self) {
        self.0
            .activity
            .store(Activity::Left as u8, Ordering::SeqCst);
    }

    /// Dates the last wake `ago` before now, or in the future when `ago` is negative
    /// (tests of the grace, independent of how fast they run).
    #[cfg(test)]
    pub(crate) fn date_wake(&self, ago_ms: i64) {
        let at = Tsc.now_ns() as i64 - ago_ms * 1_000_000;
        self.0.woken_at.store(at as u64, Ordering::Relaxed);
    }

    /// The flag's whole state (the model check saves and restores it).
    #[cfg(test)]
    fn get(&self) -> (Activity, u64) {
        (self.activity(), self.0.woken_at.load(Ordering::SeqCst))
    }

    /// Sets the flag's whole state (the model check).
    #[cfg(test)]
    fn set(&self, (activity, woken_at): (Activity, u64)) {
        self.0.activity.store(activity as u8, Ordering::SeqCst);
        self.0.woken_at.store(woken_at, Ordering::SeqCst);
    }
}

/// What the protocol asks of a mailbox.
pub(crate) trait Items {
    /// After a store to a wake flag: whether an item waits, in the same total order as
    /// the publishers' pushes and flag reads (a `SeqCst` fence, then `SeqCst` loads).
    fn has_items_after_fence(&self) -> bool;
}

/// A consumer as whoever wakes it sees it.
pub(crate) trait Consumer {
    /// Its wake flag.
    fn flag(&self) -> &WakeFlag;
    /// The worker it runs on (its index).
    fn worker(&self) -> usize;
    /// Sends it a `Wake`: its flag was just raised from idle by the caller, so at most one
    /// is on its way at a time.
    fn send_wake(&self);
}

/// A consumer group's live member list, which the registry replaces as members join and
/// leave.
pub(crate) trait Roster {
    /// A member.
    type Member: Consumer;
    /// The list as one load returned it (valid while held).
    type List;
    /// A list the registry built, to replace the live one.
    type New;
    /// Loads the live list.
    fn load(&self) -> Self::List;
    /// The members of a loaded list.
    fn members<'a>(&'a self, list: &'a Self::List) -> &'a [Self::Member];
    /// Replaces the live list.
    fn replace(&self, new: Self::New);
}

/// A publisher wakes a plain subscription's consumer after a push, unless its flag is
/// raised already. True if it sent a `Wake`.
#[inline]
pub(crate) fn wake(consumer: &impl Consumer) -> bool {
    Raise::START.finish(consumer.flag(), || consumer.send_wake())
}

/// A publisher wakes one member of a group after a push, if one is needed (see `## Which
/// member a push wakes`); also the hand-on and the leaver's hand-over.
#[inline]
pub(crate) fn wake_one<R: Roster>(roster: &R) -> Choice {
    WakeOne::new().finish(roster, &Tsc)
}

/// A group member whose flag is `own` took an item: it is busy (publishers now wake
/// another member for new items), and if more items wait already, it wakes one.
#[inline]
pub(crate) fn took_item<R: Roster>(own: &WakeFlag, items: &impl Items, roster: &R) {
    TookItem::new().finish(own, items, roster, &Tsc)
}

/// A consumer found no item: it lowers its flag to idle, then checks once more. True if
/// it must go on (an item arrived and it took its flag back), false if it may stop (a
/// later push will wake it, or it left).
#[inline]
pub(crate) fn go_idle(own: &WakeFlag, items: &impl Items) -> bool {
    GoIdle::START.finish(own, items)
}

/// The registry adds `joiner` to a group: raises it (unstamped) and sends it a `Wake`, so
/// that it looks at the mailbox once, then publishes `new`, the list that holds it.
pub(crate) fn join<R: Roster>(roster: &R, new: R::New, joiner: &R::Member) {
    Join::new(new).finish(roster, joiner)
}

/// The registry removes a member from a group: publishes `new`, the list without it,
/// marks its flag `Left`, then (`hand_over`: members remain) wakes one for what the
/// member may have left (see `## Why no push is left unseen`).
pub(crate) fn leave<R: Roster>(roster: &R, new: R::New, leaving: &WakeFlag, hand_over: bool) {
    Leave::new(new, hand_over).finish(roster, leaving, &Tsc)
}

/// A publisher's look at a loaded member list, run to its end ([`Scan`](steps::Scan);
/// tests).
#[cfg(test)]
pub(crate) fn scan<M: Consumer>(members: &[M]) -> Choice {
    let mut scan = steps::Scan::START;
    loop {
        if let std::ops::ControlFlow::Break(choice) = scan.step(members, &Tsc) {
            return choice;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mailbox::tests::{drain, put};
    use crate::core::mailbox::PriorityMailbox;
    use crate::core::turns::LaneTurns;
    use crate::Priority;

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
        assert!(!go_idle(&flag, &mb), "empty: go idle");
        put(&mb, 3, Priority::Normal);
        assert!(flag.raise(), "a push after idling wakes again");
        // A push that lands between the last pop and go_idle is picked up by go_idle.
        let mb2 = PriorityMailbox::new(10, false);
        let flag2 = WakeFlag::default();
        put(&mb2, 1, Priority::Normal);
        assert!(flag2.raise());
        mb2.pop(&mut turns).unwrap();
        put(&mb2, 2, Priority::Normal);
        assert!(!flag2.raise(), "consumer still scheduled");
        assert!(go_idle(&flag2, &mb2), "consumer must go on");
    }
}
