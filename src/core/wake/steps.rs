//! The wake protocol's operations as state machines, one shared-memory access per step
//! (see `## Steps` in the module docs).
//!
//! Each machine is plain data (`Copy` where it holds no loaded list) and starts in a
//! `START` or `new` state. Its `resume` performs the operation's accesses to the flags,
//! the lanes and the member list in order, each followed by a local decision; with
//! `pause` it returns [`Continue`] after each access, and always [`Break`] with the
//! result at the end. The model check calls it with `pause` (`step`: one access per
//! call) and interleaves several machines; the runtime calls it without (`finish`), once,
//! inlined into the caller, where the pauses compile away and what remains are the plain
//! loops of the operation. So both run the same code, and the runtime pays nothing for
//! the stepping.

use std::ops::ControlFlow::{self, Break, Continue};

use super::{Activity, Clock, Consumer, Items, Roster, WakeFlag};

/// After an access: with `pause`, return to the caller (the model check); without, go on.
macro_rules! pause {
    ($pause:expr) => {
        if $pause {
            return ::std::ops::ControlFlow::Continue(());
        }
    };
}

// After the macro: it is used there too.
mod membership;

pub(crate) use membership::{Join, Leave};

/// Resumes without pausing until the operation is done.
#[inline(always)]
fn finish<R>(mut resume: impl FnMut() -> ControlFlow<R>) -> R {
    loop {
        if let Break(done) = resume() {
            return done;
        }
    }
}

/// A worker as a bit of a set of workers (modulo 64).
#[inline(always)]
fn worker_bit(worker: usize) -> u64 {
    1 << (worker % 64)
}

/// Raising a flag from idle: a load first (a raised flag costs a push no write), then
/// `Idle → Woken`. Done: whether it was raised, that is, whether a `Wake` is owed (the
/// access that raises it calls `send`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Raise {
    /// Load the flag.
    Look,
    /// It was idle: compare-and-swap it to woken.
    Swap,
}

impl Raise {
    /// The first step.
    pub(crate) const START: Raise = Raise::Look;

    /// One access (the model check).
    #[cfg(test)]
    pub(crate) fn step(&mut self, flag: &WakeFlag, send: impl Fn()) -> ControlFlow<bool> {
        self.resume(flag, send, true)
    }

    /// Every access, to the end.
    #[inline(always)]
    pub(crate) fn finish(mut self, flag: &WakeFlag, send: impl Fn()) -> bool {
        finish(|| self.resume(flag, &send, false))
    }

    #[inline(always)]
    fn resume(&mut self, flag: &WakeFlag, send: impl Fn(), pause: bool) -> ControlFlow<bool> {
        if *self == Raise::Look {
            if flag.activity() != Activity::Idle {
                return Break(false);
            }
            *self = Raise::Swap;
            pause!(pause);
        }
        let raised = flag.shift(Activity::Idle, Activity::Woken);
        if raised {
            send();
        }
        Break(raised)
    }
}

/// What a publisher's look at a group's members came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Choice {
    /// It raised the member at this index of the list and sent it a `Wake`.
    Woke(usize),
    /// Nothing to do: a member will see the item (or none is idle, and each looks later).
    Settled,
    /// The list holds a member that left: it is stale, reload the live one.
    Stale,
}

/// One look at a loaded member list for an item just pushed (see `## Which member a push
/// wakes`): a load of each member's flag until one settles it, then raise attempts (a
/// load, then a stamp and a compare-and-swap), members on a free worker first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Scan {
    /// The next member to look at, or to try to raise.
    i: usize,
    /// Looking (else raising).
    looking: bool,
    /// Raising: the first pass, over members on a worker not occupied only (else the
    /// second, over every member).
    free_only: bool,
    /// Raising: member `i` was seen idle, swap it now.
    swap: bool,
    /// Workers where a member was seen busy or woken (bits of [`worker_bit`]).
    occupied: u64,
    /// Workers where a member was seen busy.
    busy: u64,
    /// Workers where a member was seen woken within its grace.
    on_its_way: u64,
    /// A member was seen idle.
    any_idle: bool,
}

impl Scan {
    /// The first step.
    pub(crate) const START: Scan = Scan {
        i: 0,
        looking: true,
        free_only: true,
        swap: false,
        occupied: 0,
        busy: 0,
        on_its_way: 0,
        any_idle: false,
    };

    /// One access to `members`, the same list at every step (the model check).
    #[cfg(test)]
    pub(crate) fn step<M: Consumer>(
        &mut self,
        members: &[M],
        clock: &impl Clock,
    ) -> ControlFlow<Choice> {
        self.resume(members, clock, true)
    }

    #[inline(always)]
    fn resume<M: Consumer>(
        &mut self,
        members: &[M],
        clock: &impl Clock,
        pause: bool,
    ) -> ControlFlow<Choice> {
        while self.looking {
            // A group's list is empty only after its last member left.
            let Some(member) = members.get(self.i) else {
                return Break(Choice::Settled);
            };
            let worker = worker_bit(member.worker());
            match member.flag().activity() {
                Activity::Searching => return Break(Choice::Settled),
                Activity::Left => return Break(Choice::Stale),
                Activity::Idle => self.any_idle = true,
                Activity::Woken => {
                    self.occupied |= worker;
                    if member.flag().recently_woken(clock) {
                        self.on_its_way |= worker;
                    }
                }
                Activity::Busy => {
                    self.occupied |= worker;
                    self.busy |= worker;
                }
            }
            self.i += 1;
            if self.i == members.len() {
                // Woken within its grace on a worker where no member is busy: on its way.
                // Where one is, that member's handler may hold the worker.
                if !self.any_idle || self.on_its_way & !self.busy != 0 {
                    return Break(Choice::Settled);
                }
                self.looking = false;
                self.next_try(members, 0)?;
            }
            pause!(pause);
        }
        loop {
            let member = &members[self.i];
            if !self.swap {
                if member.flag().activity() != Activity::Idle {
                    self.next_try(members, self.i + 1)?;
                    pause!(pause);
                    continue;
                }
                self.swap = true;
                pause!(pause);
            }
            if member.flag().raise_stamped(clock) {
                member.send_wake();
                return Break(Choice::Woke(self.i));
            }
            // Raised by another publisher (it will run), re-claimed by the member (it saw
            // items), or left after we saw it idle (the leaver hands over).
            self.next_try(members, self.i + 1)?;
            pause!(pause);
        }
    }

    /// Moves to the next member to try from index `from` of the pass; after the first
    /// pass, the second; after both, done.
    #[inline(always)]
    fn next_try<M: Consumer>(&mut self, members: &[M], from: usize) -> ControlFlow<Choice> {
        let occupied = self.occupied;
        let free = |i: &usize| occupied & worker_bit(members[*i].worker()) == 0;
        let next = match self.free_only {
            true => (from..members.len()).find(free).or_else(|| {
                self.free_only = false;
                (!members.is_empty()).then_some(0)
            }),
            false => (from < members.len()).then_some(from),
        };
        let Some(i) = next else {
            return Break(Choice::Settled);
        };
        (self.i, self.swap) = (i, false);
        Continue(())
    }
}

/// A wake for an item just pushed to a group's mailbox: load the live list, [`Scan`]
/// it, and load it again while the scan finds it stale. `L`: a loaded list
/// ([`Roster::List`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WakeOne<L> {
    list: Option<L>,
    scan: Scan,
}

impl<L> WakeOne<L> {
    /// The first step.
    pub(crate) fn new() -> Self {
        WakeOne {
            list: None,
            scan: Scan::START,
        }
    }

    /// Whether its next step loads the list (the model check merges that load into the
    /// step before when the list never changes).
    #[cfg(test)]
    pub(crate) fn loads_next(&self) -> bool {
        self.list.is_none()
    }

    /// One access (the model check).
    #[cfg(test)]
    pub(crate) fn step<R: Roster<List = L>>(
        &mut self,
        roster: &R,
        clock: &impl Clock,
    ) -> ControlFlow<Choice> {
        self.resume(roster, clock, true)
    }

    /// Every access, to the end.
    #[inline(always)]
    pub(crate) fn finish<R: Roster<List = L>>(mut self, roster: &R, clock: &impl Clock) -> Choice {
        finish(|| self.resume(roster, clock, false))
    }

    #[inline(always)]
    fn resume<R: Roster<List = L>>(
        &mut self,
        roster: &R,
        clock: &impl Clock,
        pause: bool,
    ) -> ControlFlow<Choice> {
        loop {
            let load = self.list.is_none();
            let list = self.list.get_or_insert_with(|| roster.load());
            if load {
                pause!(pause);
            }
            match self.scan.resume(roster.members(list), clock, pause) {
                // The member was marked after the list was replaced: one reload suffices.
                Break(Choice::Stale) => *self = WakeOne::new(),
                paused_or_done => return paused_or_done,
            }
            pause!(pause);
        }
    }
}

/// A group member took an item: `Searching → Busy`, then a re-check, and if items wait,
/// a hand-on ([`WakeOne`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TookItem<L> {
    /// Swap its flag to busy.
    Busy,
    /// Re-check the lanes.
    Check,
    /// Items wait: wake one member for them.
    HandOn(WakeOne<L>),
}

impl<L> TookItem<L> {
    /// The first step.
    pub(crate) fn new() -> Self {
        TookItem::Busy
    }

    /// One access (the model check).
    #[cfg(test)]
    pub(crate) fn step<R: Roster<List = L>>(
        &mut self,
        own: &WakeFlag,
        items: &impl Items,
        roster: &R,
        clock: &impl Clock,
    ) -> ControlFlow<()> {
        self.resume(own, items, roster, clock, true)
    }

    /// Every access, to the end.
    #[inline(always)]
    pub(crate) fn finish<R: Roster<List = L>>(
        mut self,
        own: &WakeFlag,
        items: &impl Items,
        roster: &R,
        clock: &impl Clock,
    ) {
        finish(|| self.resume(own, items, roster, clock, false))
    }

    #[inline(always)]
    fn resume<R: Roster<List = L>>(
        &mut self,
        own: &WakeFlag,
        items: &impl Items,
        roster: &R,
        clock: &impl Clock,
        pause: bool,
    ) -> ControlFlow<()> {
        if let TookItem::Busy = self {
            own.shift(Activity::Searching, Activity::Busy);
            *self = TookItem::Check;
            pause!(pause);
        }
        if let TookItem::Check = self {
            if !items.has_items_after_fence() {
                return Break(());
            }
            *self = TookItem::HandOn(WakeOne::new());
            pause!(pause);
        }
        match self {
            TookItem::HandOn(wake) => wake.resume(roster, clock, pause).map_break(|_| ()),
            _ => Break(()),
        }
    }
}

/// A consumer found no item: lower its flag to idle (from whatever it is, unless `Left`),
/// re-check the lanes, and if an item waits, take the flag back (`Idle → Searching`).
/// Done: whether it must go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum GoIdle {
    /// Load its flag.
    Look,
    /// Swap it from what it was to idle (again from `Look` if it changed meanwhile).
    Lower(Activity),
    /// Re-check the lanes.
    Check,
    /// An item waits: swap the flag back, unless a publisher raised it meanwhile.
    Reclaim,
}

impl GoIdle {
    /// The first step.
    pub(crate) const START: GoIdle = GoIdle::Look;

    /// One access (the model check).
    #[cfg(test)]
    pub(crate) fn step(&mut self, own: &WakeFlag, items: &impl Items) -> ControlFlow<bool> {
        self.resume(own, items, true)
    }

    /// Every access, to the end.
    #[inline(always)]
    pub(crate) fn finish(mut self, own: &WakeFlag, items: &impl Items) -> bool {
        finish(|| self.resume(own, items, false))
    }

    #[inline(always)]
    fn resume(&mut self, own: &WakeFlag, items: &impl Items, pause: bool) -> ControlFlow<bool> {
        loop {
            match *self {
                GoIdle::Look => match own.activity() {
                    Activity::Left => return Break(false),
                    now => *self = GoIdle::Lower(now),
                },
                GoIdle::Lower(now) if own.shift(now, Activity::Idle) => *self = GoIdle::Check,
                GoIdle::Lower(_) => *self = GoIdle::Look,
                GoIdle::Check | GoIdle::Reclaim => break,
            }
            pause!(pause);
        }
        if *self == GoIdle::Check {
            if !items.has_items_after_fence() {
                return Break(false);
            }
            *self = GoIdle::Reclaim;
            pause!(pause);
        }
        Break(own.shift(Activity::Idle, Activity::Searching))
    }
}
