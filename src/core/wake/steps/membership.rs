//! The registry's operations on a group's member list, as machines like the others of
//! `steps`: a join ([`Join`]) and a leave ([`Leave`]).

use std::ops::ControlFlow::{self, Break};

use super::{finish, Raise, WakeOne};
use crate::core::wake::{Clock, Consumer, Roster, WakeFlag};

/// The registry adds a member to a group: [`Raise`] it (unstamped) and send it a
/// `Wake`, then publish the new list. `N`: the new list ([`Roster::New`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Join<N> {
    new: Option<N>,
    /// `None` once raised (or found raised): publish.
    raise: Option<Raise>,
}

impl<N> Join<N> {
    /// The first step, for the list `new` that holds the joiner.
    pub(crate) fn new(new: N) -> Self {
        Join {
            new: Some(new),
            raise: Some(Raise::START),
        }
    }

    /// Whether it has published its list (the model check).
    #[cfg(test)]
    pub(crate) fn published(&self) -> bool {
        self.new.is_none()
    }

    /// One access (the model check).
    #[cfg(test)]
    pub(crate) fn step<R: Roster<New = N>>(
        &mut self,
        roster: &R,
        joiner: &R::Member,
    ) -> ControlFlow<()> {
        self.resume(roster, joiner, true)
    }

    /// Every access, to the end.
    pub(crate) fn finish<R: Roster<New = N>>(mut self, roster: &R, joiner: &R::Member) {
        finish(|| self.resume(roster, joiner, false))
    }

    fn resume<R: Roster<New = N>>(
        &mut self,
        roster: &R,
        joiner: &R::Member,
        pause: bool,
    ) -> ControlFlow<()> {
        while let Some(raise) = &mut self.raise {
            if raise
                .resume(joiner.flag(), || joiner.send_wake(), pause)
                .is_break()
            {
                self.raise = None;
            }
            pause!(pause);
        }
        if let Some(new) = self.new.take() {
            roster.replace(new);
        }
        Break(())
    }
}

/// The registry removes a member from a group: publish the new list, then mark the
/// member `Left` (in that order: a publisher that sees the mark reloads a list without
/// it), then, if members remain, [`WakeOne`] for what it may have left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Leave<N, L> {
    new: Option<N>,
    at: LeaveAt<L>,
    hand_over: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum LeaveAt<L> {
    Publish,
    Mark,
    HandOver(WakeOne<L>),
}

impl<N, L> Leave<N, L> {
    /// The first step, for the list `new` without the member; `hand_over`: it is not
    /// empty.
    pub(crate) fn new(new: N, hand_over: bool) -> Self {
        Leave {
            new: Some(new),
            at: LeaveAt::Publish,
            hand_over,
        }
    }

    /// Whether it has published its list (the model check).
    #[cfg(test)]
    pub(crate) fn published(&self) -> bool {
        self.new.is_none()
    }

    /// One access (the model check).
    #[cfg(test)]
    pub(crate) fn step<R: Roster<New = N, List = L>>(
        &mut self,
        roster: &R,
        leaving: &WakeFlag,
        clock: &impl Clock,
    ) -> ControlFlow<()> {
        self.resume(roster, leaving, clock, true)
    }

    /// Every access, to the end.
    pub(crate) fn finish<R: Roster<New = N, List = L>>(
        mut self,
        roster: &R,
        leaving: &WakeFlag,
        clock: &impl Clock,
    ) {
        finish(|| self.resume(roster, leaving, clock, false))
    }

    fn resume<R: Roster<New = N, List = L>>(
        &mut self,
        roster: &R,
        leaving: &WakeFlag,
        clock: &impl Clock,
        pause: bool,
    ) -> ControlFlow<()> {
        if let LeaveAt::Publish = self.at {
            if let Some(new) = self.new.take() {
                roster.replace(new);
            }
            self.at = LeaveAt::Mark;
            pause!(pause);
        }
        if let LeaveAt::Mark = self.at {
            leaving.set_left();
            if !self.hand_over {
                return Break(());
            }
            self.at = LeaveAt::HandOver(WakeOne::new());
            pause!(pause);
        }
        match &mut self.at {
            LeaveAt::HandOver(wake) => wake.resume(roster, clock, pause).map_break(|_| ()),
            _ => Break(()),
        }
    }
}
