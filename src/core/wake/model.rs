//! An exhaustive check of the wake protocol: every interleaving of two publishers and
//! two members of one consumer group (with variants: the members share a worker, one
//! member leaves just after it was woken, one joins, a plain subscription), explored
//! step by step.
//!
//! ## What runs
//!
//! The threads run the protocol's own state machines (`wake::steps`) on real
//! [`WakeFlag`]s; one step is one shared-memory access. Every protocol access is
//! `SeqCst`, so an execution is an interleaving of these steps, and exploring every
//! interleaving explores every execution. What is modelled around them:
//!
//! - the mailbox holds a count of alike items; a push, a pop and a re-check are each one
//!   step (the lanes publish and read each item with `SeqCst` accesses, and a lane's pop
//!   taking each item once is tested in `lane`);
//! - a publisher pushes its item, then runs [`wake_one`](super::wake_one)'s machine (a
//!   plain subscription's: [`wake`](super::wake)'s);
//! - a member runs the drain loop of `handler_actor::drain`: on a `Wake` (only when no
//!   drain runs, as `ctx.wait` does), [`WakeFlag::start`]; then at each turn a check of
//!   `removed`, a pop; with an item, [`took_item`](super::took_item)'s machine, the
//!   handler, [`WakeFlag::item_done`] and, optionally, a yield ([`WakeFlag::pause`],
//!   then `start`); without one, [`go_idle`](super::go_idle)'s machine, after which it
//!   goes on or sleeps;
//! - the registry: a leave stores `removed` and runs [`leave`](super::leave)'s machine; a
//!   join runs [`join`](super::join)'s;
//! - time: every step that reads the clock is explored twice, once seeing each stamp
//!   within its grace and once past it (stamps are then all alike, so the time is not
//!   part of the state). That covers every real timing and more; the grace only decides
//!   how many members are woken, so the extra timings cannot hide a lost wake-up.
//!
//! ## What is checked
//!
//! At every state: at most one `Wake` in flight per member (what makes `do_send` safe
//! there), and no more items handled and queued than pushed (none handled twice). At
//! every end (no thread can step): the mailbox is empty, every item was handled once,
//! and every member is idle or has left: no lost wake-up. A violation fails with the
//! interleaving that led to it.
//!
//! ## How
//!
//! A depth-first search over the states (the shared state and every thread's machine),
//! each visited once; every interleaving is a path through them, and the interleavings
//! (counting each clock outcome as its own) are counted over the paths. To keep it to a
//! second or two in a debug build, the search leaves out only what cannot matter:
//!
//! - steps merged into the step before (see `step::Model::merged`): a read of a location no
//!   thread writes any more, the load of a compare-and-swap loop, and the start of a
//!   drain into the handling of its `Wake`;
//! - canonical states (see `step::Model::save`): every stamp alike, and cleared where no
//!   step reads it; a `Wake` dropped once its member's drain ended for good; the
//!   publishers' places sorted;
//! - a state is kept as a 128-bit fingerprint (see `search::fingerprint`).
//!
//! The counts of interleavings are the same with and without the merging and the
//! canonical forms (they were compared when these were written), and
//! `fingerprints_do_not_collide` compares the search with one that keeps whole states.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use super::steps::{GoIdle, Join, Leave, Raise, TookItem, WakeOne};
use super::{Activity, Clock, Consumer, Items, Roster, WakeFlag, WAKE_GRACE};

mod scenarios;
mod search;
mod step;

use step::Model;

/// Items: one per publisher.
const ITEMS: usize = 2;
/// Members (a plain subscription uses the first).
const MEMBERS: usize = 2;
/// The publishers, the members and the registry.
const THREADS: usize = ITEMS + MEMBERS + 1;

/// What every stamp is set to after a step, and the time a step sees within the grace of
/// it. An unstamped flag (0) is past the grace at either time.
const STAMPED: u64 = 1 << 40;
/// The time a step sees past the grace of every stamp.
const PAST: u64 = STAMPED + WAKE_GRACE.as_nanos() as u64;

/// One consumer as the model's publishers and registry see it.
#[derive(Clone)]
struct Peer {
    flag: Arc<WakeFlag>,
    worker: usize,
    /// `Wake` messages in flight to it.
    wakes: Rc<Cell<u8>>,
}

impl Consumer for Peer {
    fn flag(&self) -> &WakeFlag {
        &self.flag
    }

    fn worker(&self) -> usize {
        self.worker
    }

    fn send_wake(&self) {
        self.wakes.set(self.wakes.get() + 1);
    }
}

/// The model's clock for one step: a fixed time, and whether the step read it.
struct At {
    now: u64,
    read: Cell<bool>,
}

impl Clock for At {
    fn now_ns(&self) -> u64 {
        self.read.set(true);
        self.now
    }
}

/// Where a member's drain is (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Drain {
    /// No drain runs: waits for a `Wake`, then `WakeFlag::start`.
    Asleep,
    /// The top of the loop: the check of `removed`.
    Top,
    /// The pop.
    Pop,
    /// Took an item: `took_item`.
    Took(TookItem<u8>),
    /// Runs the handler on its item, then `item_done` (and may yield next).
    Handle,
    /// Yields: `pause`.
    Pause,
    /// Back from the yield: `start`.
    Resume,
    /// Found no item: `go_idle`.
    Idle(GoIdle),
    /// Removed: the drain ended and the actor finishes.
    Gone,
}

/// A thread of the model and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Thread {
    /// A publisher about to push its item.
    Push,
    /// A publisher waking a plain subscription's consumer (member 0).
    Raise(Raise),
    /// A publisher waking a group member.
    WakeOne(WakeOne<u8>),
    /// Member `m`.
    Member(usize, Drain),
    /// The registry removing member `m`: its `removed` flag first.
    Remove(usize),
    /// The registry removing member `m`: `leave`.
    Leave(usize, Leave<u8, u8>),
    /// The registry adding member `m`: `join`.
    Join(usize, Join<u8>),
    /// Finished, or not in the scenario.
    Done,
}

/// Everything: the shared state (as it is between steps) and each thread's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct State {
    flags: [(Activity, u64); MEMBERS],
    /// The live list's version.
    live: u8,
    /// Items in the mailbox (the items are alike: which is which does not matter to the
    /// protocol, and a lane's pop taking each item once is tested in `lane`).
    queued: u8,
    wakes: [u8; MEMBERS],
    removed: [bool; MEMBERS],
    /// Items handled (by every member together).
    handled: u8,
    threads: [Thread; THREADS],
}

/// The shared memory a step runs against: loaded from a [`State`] before the step and
/// saved into it after.
struct World {
    group: bool,
    peers: Vec<Peer>,
    /// The member lists the registry publishes, by version.
    lists: Vec<Vec<Peer>>,
    live: Cell<u8>,
    queued: Cell<u8>,
    removed: [Cell<bool>; MEMBERS],
    /// Bit `m * ITEMS + n`: member `m` handled the `n`-th item handled, in some
    /// interleaving (coverage, kept out of the states so that it does not split them).
    handled_by: Cell<u32>,
}

impl Roster for World {
    type Member = Peer;
    type List = u8;
    type New = u8;

    fn load(&self) -> u8 {
        self.live.get()
    }

    fn members<'a>(&'a self, list: &'a u8) -> &'a [Peer] {
        &self.lists[usize::from(*list)]
    }

    fn replace(&self, new: u8) {
        self.live.set(new);
    }
}

impl Items for World {
    fn has_items_after_fence(&self) -> bool {
        self.queued.get() > 0
    }
}

/// The registry's part in a scenario.
#[derive(Clone, Copy, Debug)]
pub(super) enum Change {
    None,
    /// Member `m` leaves; the list becomes the second version.
    Leave(usize),
    /// Member `m` (in no list at first) joins; the list becomes the second version.
    Join(usize),
}

/// One scenario of the check.
#[derive(Clone, Copy, Debug)]
pub(super) struct Scenario {
    pub(super) name: &'static str,
    /// A consumer group (else a plain subscription: member 0 alone, member transitions
    /// skipped).
    pub(super) group: bool,
    /// Each member's worker.
    pub(super) workers: [usize; MEMBERS],
    /// The member lists by version (member ids); the first is live at the start.
    pub(super) lists: &'static [&'static [usize]],
    pub(super) change: Change,
    /// Members may yield after an item.
    pub(super) yields: bool,
    /// Members woken at the start, as on joining: raised (unstamped), a `Wake` in flight.
    pub(super) woken: [bool; MEMBERS],
}

/// What a check explored.
#[derive(Debug, Default)]
pub(super) struct Explored {
    /// Distinct states.
    pub(super) states: usize,
    /// Distinct end states.
    pub(super) ends: usize,
    /// Complete interleavings (paths from the start to an end).
    pub(super) interleavings: u128,
    /// `(m, n)`: member `m` handled the `n`-th item handled, in some interleaving.
    pub(super) handled_by: std::collections::BTreeSet<(usize, usize)>,
}

impl Scenario {
    fn members(&self) -> usize {
        if self.group {
            MEMBERS
        } else {
            1
        }
    }

    fn world(&self) -> World {
        let peers: Vec<Peer> = (0..MEMBERS)
            .map(|m| Peer {
                flag: Arc::default(),
                worker: self.workers[m],
                wakes: Rc::default(),
            })
            .collect();
        let lists = self
            .lists
            .iter()
            .map(|list| list.iter().map(|&m| peers[m].clone()).collect())
            .collect();
        World {
            group: self.group,
            lists,
            live: Cell::new(0),
            queued: Cell::new(0),
            removed: Default::default(),
            handled_by: Cell::new(0),
            peers,
        }
    }

    fn start(&self) -> State {
        let mut threads = [Thread::Done; THREADS];
        for publisher in &mut threads[..ITEMS] {
            *publisher = Thread::Push;
        }
        for m in 0..self.members() {
            threads[ITEMS + m] = Thread::Member(m, Drain::Asleep);
        }
        threads[ITEMS + MEMBERS] = match self.change {
            Change::None => Thread::Done,
            Change::Leave(m) => Thread::Remove(m),
            Change::Join(m) => Thread::Join(m, Join::new(1)),
        };
        let woken = |m: usize| self.woken[m] && m < self.members();
        State {
            flags: std::array::from_fn(|m| match woken(m) {
                true => (Activity::Woken, 0),
                false => (Activity::Idle, 0),
            }),
            live: 0,
            queued: 0,
            wakes: std::array::from_fn(|m| u8::from(woken(m))),
            removed: [false; MEMBERS],
            handled: 0,
            threads,
        }
    }
}
