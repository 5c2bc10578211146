//! The dispatcher actor: one per worker arbiter, it wakes the worker's handler actors in
//! the order of their handler priority.
//!
//! ## Handler priority on a worker
//!
//! A worker thread runs many handler actors, and the actors woken while it is busy run in
//! the order they were woken. When a worker holds handlers of more than one priority
//! ([`RunQueue::set_priorities`]), a publisher that wakes one of them does not send it a
//! `Wake` itself: it queues the actor's address in the worker's [`RunQueue`], in the lane
//! of its handler priority, and wakes the worker's [`Dispatcher`] (one message per batch:
//! a flag coalesces them). The dispatcher, or a handler actor of that worker that sees a
//! more urgent wake waiting between two of its items, empties the lanes CRITICAL first
//! and sends the `Wake`s in that order, so the woken actors run highest priority first.
//! A worker whose handlers all have one priority skips the queue (one `Wake` per wake, as
//! before), since any order is then the priority order.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use crossbeam::queue::SegQueue;
use crossbeam::utils::CachePadded;

use super::handler_actor::Wake;
use crate::Priority;

/// Asks the dispatcher to empty its worker's run queue.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct Dispatch;

/// The handler actors of one worker waiting to be woken, by handler priority.
#[derive(Default)]
pub(crate) struct RunQueue {
    lanes: [SegQueue<Arc<Recipient<Wake>>>; 4],
    /// A bit per lane that may hold a wake (a hint: set after a push, cleared by a
    /// dispatch before it empties the lanes), and whether a `Dispatch` is on its way to
    /// the dispatcher: written on wakes of a mixed worker.
    flags: CachePadded<(AtomicU8, AtomicBool)>,
    /// The worker holds handlers of more than one priority: wakes go through the queue.
    /// Read on every wake, written when subscriptions come and go.
    mixed: CachePadded<AtomicBool>,
    dispatcher: OnceLock<Recipient<Dispatch>>,
}

impl RunQueue {
    /// Starts the dispatcher of a worker and returns the worker's run queue.
    pub(crate) fn start(worker: &actix_rt::ArbiterHandle) -> Arc<RunQueue> {
        let queue = Arc::new(RunQueue::default());
        let for_actor = queue.clone();
        let dispatcher =
            Dispatcher::start_in_arbiter(worker, move |_| Dispatcher { queue: for_actor });
        let _ = queue.dispatcher.set(dispatcher.recipient());
        queue
    }

    /// The handler priorities of the worker's subscriptions, as counts per priority
    /// (lowest first): more than one in use makes wakes go by priority.
    pub(crate) fn set_priorities(&self, counts: &[usize; 4]) {
        let kinds = counts.iter().filter(|&&n| n > 0).count();
        self.mixed.store(kinds > 1, Ordering::SeqCst);
    }

    /// Wakes a handler actor of this worker whose handler has `priority`: at once, or
    /// through the queue when the worker's handlers have mixed priorities.
    pub(crate) fn wake(&self, priority: Priority, recipient: &Arc<Recipient<Wake>>) {
        if !self.mixed.load(Ordering::Relaxed) {
            recipient.do_send(Wake);
            return;
        }
        let lane = priority.lane();
        self.lanes[lane].push(recipient.clone());
        let (waiting, scheduled) = &*self.flags;
        waiting.fetch_or(1 << lane, Ordering::SeqCst);
        if !scheduled.swap(true, Ordering::SeqCst) {
            match self.dispatcher.get() {
                Some(dispatcher) => dispatcher.do_send(Dispatch),
                None => self.dispatch(), // not started yet: wake them now, in order
            }
        }
    }

    /// Whether a wake more urgent than `priority` waits (a hint, read between items by
    /// the handler actors of this worker).
    pub(crate) fn more_urgent_waiting(&self, priority: Priority) -> bool {
        self.flags.0.load(Ordering::Relaxed) >> (priority.lane() + 1) != 0
    }

    /// Sends the queued wakes, CRITICAL first. Called on the worker thread (by the
    /// dispatcher, or by a handler actor that yields to a more urgent one).
    pub(crate) fn dispatch(&self) {
        // A push after this sends a new `Dispatch`, so no wake is left behind.
        let (waiting, scheduled) = &*self.flags;
        scheduled.store(false, Ordering::SeqCst);
        waiting.store(0, Ordering::SeqCst);
        for lane in self.lanes.iter().rev() {
            while let Some(recipient) = lane.pop() {
                recipient.do_send(Wake);
            }
        }
    }
}

/// See the module docs.
pub(crate) struct Dispatcher {
    queue: Arc<RunQueue>,
}

impl Actor for Dispatcher {
    type Context = Context<Self>;
}

impl Handler<Dispatch> for Dispatcher {
    type Result = ();

    /// Sends the worker's queued wakes, CRITICAL first.
    fn handle(&mut self, _: Dispatch, _: &mut Context<Self>) {
        self.queue.dispatch();
    }
}
