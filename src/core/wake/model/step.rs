//! How the model's threads step: each thread's program over the protocol's machines,
//! the steps merged into the one before, and the canonical form of the states.

use std::cell::Cell;
use std::ops::ControlFlow::{Break, Continue};

use super::{
    At, Drain, GoIdle, Leave, Raise, Scenario, State, Thread, TookItem, WakeOne, World, ITEMS,
    MEMBERS, STAMPED,
};
use crate::core::wake::{Activity, Consumer};

/// A scenario's threads and shared memory: how each step changes a [`State`].
pub(super) struct Model<'a> {
    pub(super) scenario: &'a Scenario,
    pub(super) world: World,
}

impl Model<'_> {
    /// How many ways thread `t` can take its next step (0: it cannot).
    pub(super) fn moves(&self, s: &State, t: usize) -> usize {
        match s.threads[t] {
            Thread::Done | Thread::Member(_, Drain::Gone) => 0,
            Thread::Member(m, Drain::Asleep) => usize::from(s.wakes[m] > 0),
            // Yield after this item, or not.
            Thread::Member(_, Drain::Handle) if self.scenario.group && self.scenario.yields => 2,
            _ => 1,
        }
    }

    /// The state after thread `t` takes one step (the `choice`-th of its moves; with the
    /// steps merged into it) at time `now`, and whether it read the clock.
    pub(super) fn step(&self, s: &State, t: usize, choice: usize, now: u64) -> (State, bool) {
        let (mut s, mut read) = self.step_once(s, t, choice, now);
        while self.merged(&s, t) {
            let (next, also) = self.step_once(&s, t, choice, now);
            (s, read) = (next, read || also);
        }
        // Last: this moves the publishers.
        s.threads[..ITEMS].sort_unstable_by_key(thread_key);
        (s, read)
    }

    /// One step of thread `t`, without the merged ones.
    fn step_once(&self, s: &State, t: usize, choice: usize, now: u64) -> (State, bool) {
        let w = &self.world;
        let clock = At {
            now,
            read: Cell::new(false),
        };
        let mut s = *s;
        self.load(&s);
        s.threads[t] = match s.threads[t] {
            Thread::Push => {
                w.queued.set(w.queued.get() + 1);
                if w.group {
                    Thread::WakeOne(WakeOne::new())
                } else {
                    Thread::Raise(Raise::START)
                }
            }
            Thread::Raise(mut raise) => {
                let consumer = &w.peers[0];
                match raise.step(consumer.flag(), || consumer.send_wake()) {
                    Continue(()) => Thread::Raise(raise),
                    Break(_) => Thread::Done,
                }
            }
            Thread::WakeOne(mut wake) => match wake.step(w, &clock) {
                Continue(()) => Thread::WakeOne(wake),
                Break(_) => Thread::Done,
            },
            Thread::Member(m, drain) => {
                Thread::Member(m, Self::drain(w, m, drain, choice, &clock, &mut s))
            }
            Thread::Remove(m) => {
                w.removed[m].set(true);
                Thread::Leave(m, Leave::new(1, true))
            }
            Thread::Leave(m, mut leave) => match leave.step(w, &w.peers[m].flag, &clock) {
                Continue(()) => Thread::Leave(m, leave),
                Break(()) => Thread::Done,
            },
            Thread::Join(m, mut join) => match join.step(w, &w.peers[m]) {
                Continue(()) => Thread::Join(m, join),
                Break(()) => Thread::Done,
            },
            Thread::Done => unreachable!("a finished thread does not step"),
        };
        self.save(&mut s);
        (s, clock.read.get())
    }

    /// Whether thread `t`'s next step is taken together with the one it just took. Sound
    /// because the interleavings this leaves out lead to states the search reaches
    /// anyway:
    ///
    /// - a read of a location that no thread writes any more (the `removed` flag of a
    ///   member that is not leaving, or once the registry stored it; the member list
    ///   once the registry published its new one) commutes with every other step;
    /// - `go_idle`'s load and swap are a compare-and-swap loop, which acts as one atomic
    ///   update at its successful swap (a failed swap only loops back).
    fn merged(&self, s: &State, t: usize) -> bool {
        let registry = s.threads[ITEMS + MEMBERS];
        let list_fixed = match registry {
            Thread::Remove(_) => false,
            Thread::Leave(_, leave) => leave.published(),
            Thread::Join(_, join) => join.published(),
            _ => true,
        };
        match s.threads[t] {
            Thread::WakeOne(wake) | Thread::Member(_, Drain::Took(TookItem::HandOn(wake))) => {
                list_fixed && wake.loads_next()
            }
            Thread::Member(m, Drain::Top) => registry != Thread::Remove(m),
            Thread::Member(_, Drain::Idle(GoIdle::Lower(_))) => true,
            _ => false,
        }
    }

    /// One step of member `m`'s drain (see the module docs).
    fn drain(w: &World, m: usize, drain: Drain, choice: usize, clock: &At, s: &mut State) -> Drain {
        let own = &*w.peers[m].flag;
        match drain {
            Drain::Asleep => {
                // The `Wake` is handled, and the drain starts, in one step: between the
                // two only the leaver can write the flag (`Left`, which commutes with
                // taking the message), as it is raised.
                let wakes = &w.peers[m].wakes;
                wakes.set(wakes.get() - 1);
                if w.group {
                    own.start();
                }
                Drain::Top
            }
            Drain::Resume => {
                own.start();
                Drain::Top
            }
            Drain::Top if w.removed[m].get() => Drain::Gone,
            Drain::Top => Drain::Pop,
            Drain::Pop => match w.queued.get() {
                0 => Drain::Idle(GoIdle::START),
                n => {
                    w.queued.set(n - 1);
                    match w.group {
                        true => Drain::Took(TookItem::new()),
                        false => Drain::Handle,
                    }
                }
            },
            Drain::Took(mut took) => match took.step(own, w, w, clock) {
                Continue(()) => Drain::Took(took),
                Break(()) => Drain::Handle,
            },
            Drain::Handle => {
                let bit = 1 << (m * ITEMS + usize::from(s.handled.min(ITEMS as u8 - 1)));
                w.handled_by.set(w.handled_by.get() | bit);
                s.handled += 1;
                if w.group {
                    own.item_done();
                }
                if choice == 1 {
                    Drain::Pause
                } else {
                    Drain::Top
                }
            }
            Drain::Pause => {
                own.pause(clock);
                Drain::Resume
            }
            Drain::Idle(mut idle) => match idle.step(own, w) {
                Continue(()) => Drain::Idle(idle),
                Break(true) => Drain::Top,
                Break(false) => Drain::Asleep,
            },
            Drain::Gone => unreachable!("a finished drain does not step"),
        }
    }

    /// Puts the shared part of `s` into the world.
    fn load(&self, s: &State) {
        let w = &self.world;
        for (m, peer) in w.peers.iter().enumerate() {
            peer.flag.set(s.flags[m]);
            peer.wakes.set(s.wakes[m]);
            w.removed[m].set(s.removed[m]);
        }
        w.live.set(s.live);
        w.queued.set(s.queued);
    }

    /// Takes the shared part of the world back into `s`, in a canonical form: what no
    /// step can tell apart is made alike, so that it does not split states.
    ///
    /// - Stamps: every stamp is alike (see `## What runs`), and only a `Woken` flag's is
    ///   ever read, while every move to `Woken` writes it (but the joiner's raise, of a
    ///   fresh flag): the others are cleared.
    /// - A `Wake` to a member whose drain ended for good is never handled: dropped.
    ///
    /// (And the publishers, which run one program on alike items, have their places
    /// sorted after each step: see `step`.)
    fn save(&self, s: &mut State) {
        let w = &self.world;
        for (m, peer) in w.peers.iter().enumerate() {
            let (activity, stamp) = peer.flag.get();
            let stamp = match activity {
                Activity::Woken if stamp != 0 => STAMPED,
                _ => 0,
            };
            s.flags[m] = (activity, stamp);
            s.wakes[m] = match s.threads[ITEMS + m] {
                Thread::Member(_, Drain::Gone) => 0,
                _ => peer.wakes.get(),
            };
            s.removed[m] = w.removed[m].get();
        }
        s.live = w.live.get();
        s.queued = w.queued.get();
    }

    /// What holds at every state.
    pub(super) fn check_always(&self, s: &State) -> Result<(), String> {
        if let Some(m) = s.wakes.iter().position(|&n| n > 1) {
            return Err(format!("member {m} has two `Wake`s in flight"));
        }
        let pushed = s.threads[..ITEMS]
            .iter()
            .filter(|t| **t != Thread::Push)
            .count();
        if usize::from(s.handled) + usize::from(s.queued) > pushed {
            return Err("an item handled twice".to_owned());
        }
        Ok(())
    }

    /// What holds when no thread can step.
    pub(super) fn check_end(&self, s: &State) -> Result<(), String> {
        if s.queued > 0 {
            return Err("lost wake-up: items wait and every member sleeps".to_owned());
        }
        if usize::from(s.handled) != ITEMS {
            return Err("an item was not handled exactly once".to_owned());
        }
        let members = self.scenario.members();
        if let Some(m) = s.flags[..members]
            .iter()
            .position(|(a, _)| !matches!(a, Activity::Idle | Activity::Left))
        {
            return Err(format!("member {m} ended neither idle nor left"));
        }
        Ok(())
    }
}

/// The order publishers' places are sorted by (any fixed order will do).
fn thread_key(thread: &Thread) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0).hash_one(thread)
}
