//! The handler actor: one per subscription, on one of the worker arbiters. It drains the
//! subscription's mailbox and runs the handler, one item at a time, under the
//! subscription's supervision policy (see [`supervision`](super::supervision)).
//!
//! The actor is woken by a [`Wake`] message sent only by whoever raised its idle wake
//! flag: a publisher, or for a group member also another member handing on a backlog,
//! or the registry (see `wake`, which also lists the transitions a drain makes). So a
//! busy subscription costs no actix message per item. It drains inside `ctx.wait`, so
//! no other message of the actor interleaves with a drain, and yields to the worker's
//! other actors every [`BATCH`] items.
//!
//! ## Supervision
//!
//! Each run of the handler is bounded by the subscription's timeout and guarded against
//! panics. A failure is retried in place after a backoff; the last failure makes a dead
//! letter. A panic stops the actor: its actix `Supervisor` restarts it (same address,
//! same mailbox, the item in hand kept), and after a restart backoff it retries that
//! item and goes on draining.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use futures_util::FutureExt;
use tracing::Instrument;

use super::handler::{ErrorCallback, Invoke};
use super::index::Members;
use super::mailbox::{Envelope, PriorityMailbox};
use super::recorder::{Recorder, SHIP_INTERVAL};
use super::supervision::{self, HandlerFailure, SubStats, DEAD_LETTER_PREFIX};
use super::turns::LaneTurns;
use super::wake::{self, WakeFlag};
use super::worker::RunQueue;
use super::{Deliverable, Shared, SubscriptionId};
use crate::util::counter::StripedCounter;
use crate::Priority;

/// Items run between two yields to the worker's other actors.
pub const BATCH: usize = 128;

/// Wakes an idle handler actor: its mailbox has items.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct Wake;

/// Ends a subscription: with `drain`, after handling everything accepted (stop); without,
/// once the item in hand is done (unsubscribe; the registry has already cancelled the
/// mailbox, or for a group member that leaves others behind, marked it removed). The
/// reply comes when the handler will not run again.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct Finish {
    pub(crate) drain: bool,
}

/// How failures of one subscription are handled.
pub(crate) struct Policy {
    pub(crate) timeout: Duration,
    /// 1 + retries (1 when retries are off).
    pub(crate) max_attempts: u32,
    pub(crate) retry_delay: Duration,
    /// Before the first restart in a row.
    pub(crate) restart_delay: Duration,
    pub(crate) error_handler: Option<ErrorCallback>,
}

/// The state a drain needs; shared by the actor and its drain futures.
pub(crate) struct Subscription<T, H> {
    pub(crate) id: SubscriptionId,
    pub(crate) name: String,
    pub(crate) mailbox: Arc<PriorityMailbox<T>>,
    pub(crate) handler: H,
    pub(crate) policy: Policy,
    pub(crate) stats: Arc<SubStats>,
    /// The component, for dead letters. Weak: the component's index holds this actor's
    /// address, and a strong reference here would keep both alive forever.
    pub(crate) shared: Weak<Shared<T>>,
    /// Restarts since the last successful delivery (for the restart backoff).
    pub(crate) restarts_in_a_row: AtomicU32,
    /// Set by the registry when this subscription is removed.
    pub(crate) removed: Arc<AtomicBool>,
    /// The group's members, when the mailbox is shared with them.
    pub(crate) group: Option<Arc<Members>>,
    /// This actor's coalesced wake flag (see `wake`).
    pub(crate) wake_flag: Arc<WakeFlag>,
    /// Latency histograms, when metrics are on; only this actor's thread touches them.
    pub(crate) recorder: Option<RefCell<Recorder>>,
    /// The handler priority of the subscription (its group's, for a member).
    pub(crate) handler_priority: Priority,
    /// The run queue of this actor's worker (see `worker`).
    pub(crate) run: Arc<RunQueue>,
    /// The component's count of accepted items discarded unhandled.
    pub(crate) dropped: Arc<StripedCounter>,
    /// Counts not yet added to `stats` (see [`Tally`]).
    pub(crate) tally: Cell<Tally>,
}

/// Counts a drain keeps in plain memory and adds to the shared [`SubStats`] in one go
/// (three atomic additions per batch instead of per item): when the drain yields, ends
/// (however: a guard flushes on drop), or waits on a handler that is not ready at once.
/// So they lag only while items are being handled back to back, and are exact whenever
/// the subscription is quiet.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    processed: u64,
    runs: u64,
    run_nanos: u64,
}

/// Flushes the subscription's [`Tally`] when dropped.
struct FlushOnDrop<'a, T, H>(&'a Subscription<T, H>);

impl<T, H> Drop for FlushOnDrop<'_, T, H> {
    fn drop(&mut self) {
        self.0.flush();
    }
}

impl<T, H> Subscription<T, H> {
    /// Adds the drain's [`Tally`] to the shared counters.
    fn flush(&self) {
        let tally = self.tally.take();
        for (counter, n) in [
            (&self.stats.processed, tally.processed),
            (&self.stats.runs, tally.runs),
            (&self.stats.run_nanos, tally.run_nanos),
        ] {
            if n > 0 {
                SubStats::add(counter, n);
            }
        }
    }

    fn tally(&self, change: impl FnOnce(&mut Tally)) {
        let mut tally = self.tally.get();
        change(&mut tally);
        self.tally.set(tally);
    }

    /// The subscription was removed (or its mailbox cancelled): stop taking items.
    fn is_removed(&self) -> bool {
        self.mailbox.cancelled_hint() || self.removed.load(Ordering::Acquire)
    }

    // The member transitions of the wake protocol (see `wake`). A plain subscription's
    // publishers only look for idle, so it skips them: its flag stays raised while it
    // drains.

    /// A group member's drain starts or resumes (`WakeFlag::start`).
    #[inline]
    fn start(&self) {
        if self.group.is_some() {
            self.wake_flag.start();
        }
    }

    /// A group member took an item: it is busy, and hands what waits to another member
    /// (`wake::took_item`).
    #[inline]
    fn took_item(&self) {
        if let Some(group) = &self.group {
            wake::took_item(&self.wake_flag, &*self.mailbox, &**group);
        }
    }

    /// A group member's handler is done with its item (`WakeFlag::item_done`).
    #[inline]
    fn item_done(&self) {
        if self.group.is_some() {
            self.wake_flag.item_done();
        }
    }

    /// A group member yields to its worker's other actors (`WakeFlag::pause`).
    fn pause(&self) {
        if self.group.is_some() {
            self.wake_flag.pause(&wake::Tsc);
        }
    }

    /// Counts accepted items discarded unhandled (neither handled nor dead-lettered).
    fn discarded(&self, n: usize) {
        if n > 0 {
            self.dropped.add(n as u64);
        }
    }
}

/// The item a drain is delivering. If the drain ends, or is dropped, before the item is
/// handled or dead-lettered, the item counts as dropped: so every accepted item is
/// accounted for once, however its delivery ends.
struct Held<'a, T, I> {
    job: Option<InFlight<T, I>>,
    dropped: &'a StripedCounter,
}

impl<T, I> Drop for Held<'_, T, I> {
    fn drop(&mut self) {
        if self.job.take().is_some() {
            self.dropped.add(1);
        }
    }
}

/// An item being delivered, with the attempts made so far.
struct InFlight<T, I> {
    envelope: Envelope<T>,
    /// What the handler is given (`Invoke::prepare`), when kept for a retry.
    input: Option<I>,
    attempts: u32,
    last_error: String,
}

/// How a drain ended.
enum DrainEnd<T, I> {
    /// The mailbox is empty (or cancelled).
    Done,
    /// The handler panicked on this item: restart, then go on with it.
    Panicked(InFlight<T, I>),
}

/// Runs one subscription's handler.
pub(crate) struct HandlerActor<T, H: Invoke<T>> {
    sub: Arc<Subscription<T, H>>,
    /// The anti-starvation state, kept across drains.
    turns: Option<LaneTurns>,
    /// The item whose handler panicked, kept across the restart.
    in_flight: Option<InFlight<T, H::Input>>,
    /// A `Finish { drain: true }` arrived: drain to the end, then answer `replies`.
    finishing: bool,
    /// The replies owed to `Finish` messages (two `stop()` calls may overlap).
    replies: Vec<tokio::sync::oneshot::Sender<()>>,
    /// `Finish` was answered: the handler never runs again.
    finished: bool,
    /// The timer that ships latency histograms (metrics on); cancelled at `Finish`, so
    /// that a finished actor ends once its addresses are dropped.
    ship_timer: Option<SpawnHandle>,
    /// Told when the actor first runs (`subscribe` returns then).
    started: Option<tokio::sync::oneshot::Sender<()>>,
    /// The restart backoff's timer; cancelled at `Finish` (a pending timer would keep a
    /// finished actor alive until it fired).
    resume_timer: Option<SpawnHandle>,
}

impl<T: Deliverable, H: Invoke<T>> HandlerActor<T, H> {
    pub(crate) fn new(sub: Subscription<T, H>, started: tokio::sync::oneshot::Sender<()>) -> Self {
        HandlerActor {
            sub: Arc::new(sub),
            turns: Some(LaneTurns::default()),
            in_flight: None,
            finishing: false,
            replies: Vec::new(),
            finished: false,
            ship_timer: None,
            started: Some(started),
            resume_timer: None,
        }
    }

    /// Drains (inside `ctx.wait`), starting with the item kept across a restart.
    fn start_drain(&mut self, ctx: &mut Context<Self>) {
        let to_the_end = self.finishing;
        let turns = self.turns.take().unwrap_or_default();
        let first = self.in_flight.take();
        let work = drain(self.sub.clone(), first, turns, to_the_end).into_actor(self);
        ctx.wait(work.map(|(end, turns), act, ctx| {
            act.turns = Some(turns);
            match end {
                DrainEnd::Panicked(in_flight) => {
                    act.in_flight = Some(in_flight);
                    ctx.stop(); // the Supervisor restarts the actor: see `restarting`
                }
                DrainEnd::Done => {
                    if act.finishing {
                        act.finish(ctx);
                    }
                }
            }
        }));
    }

    /// Sends the recorded latencies to the metrics actor.
    fn ship(&self) {
        if let Some(recorder) = &self.sub.recorder {
            recorder.borrow_mut().ship();
        }
    }

    /// The handler will not run again: answer every `Finish`. An item kept across a
    /// restart is discarded (counted as dropped).
    fn finish(&mut self, ctx: &mut Context<Self>) {
        self.ship(); // before the replies, so a stopped component's figures are complete
        for timer in [self.ship_timer.take(), self.resume_timer.take()]
            .into_iter()
            .flatten()
        {
            ctx.cancel_future(timer);
        }
        self.finished = true;
        if self.in_flight.take().is_some() {
            self.sub.discarded(1);
        }
        for reply in self.replies.drain(..) {
            let _ = reply.send(());
        }
    }

    /// After a restart and its backoff: go on where the panic interrupted.
    fn resume(&mut self, ctx: &mut Context<Self>) {
        if !self.finished {
            self.start_drain(ctx);
        }
    }
}

impl<T: Deliverable, H: Invoke<T>> Actor for HandlerActor<T, H> {
    type Context = Context<Self>;

    /// Tells `subscribe` that the actor runs; with metrics on, ships the latency
    /// histograms once a second (until `Finish`).
    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(started) = self.started.take() {
            let _ = started.send(());
        }
        if self.sub.recorder.is_some() && !self.finished {
            self.ship_timer = Some(ctx.run_interval(SHIP_INTERVAL, |act, _| act.ship()));
        }
    }
}

impl<T: Deliverable, H: Invoke<T>> actix::Supervised for HandlerActor<T, H> {
    /// Counts the restart, wakes publishers waiting for room (the item that panicked
    /// left its slot when it was taken, and the mailbox is not drained during the
    /// backoff), and schedules [`resume`](HandlerActor::resume) after the restart backoff.
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        SubStats::add(&self.sub.stats.restarts, 1);
        self.sub.mailbox.notify_room();
        let in_a_row = self.sub.restarts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        let backoff = supervision::restart_delay(self.sub.policy.restart_delay, in_a_row);
        tracing::warn!(
            handler.name = %self.sub.name,
            subscription = %self.sub.id,
            restarts_in_a_row = in_a_row,
            backoff_ms = backoff.as_millis() as u64,
            "handler actor restarted after a panic"
        );
        let resume = |act: &mut Self, ctx: &mut Context<Self>| {
            act.resume_timer = None;
            act.resume(ctx);
        };
        self.resume_timer = Some(if backoff.is_zero() {
            // At the actor's next turn, without a timer (which would wait for its next
            // tick, 1 ms).
            ctx.spawn(actix::ActorFutureExt::map(
                actix::fut::ready(()),
                move |(), act, ctx| resume(act, ctx),
            ))
        } else {
            ctx.run_later(backoff, resume)
        });
    }
}

impl<T, H: Invoke<T>> Drop for HandlerActor<T, H> {
    /// Backstop: if the actor goes away without finishing (its worker stopped, or a bug),
    /// cancel the mailbox so publishers skip the subscription instead of waiting on it,
    /// and count what is discarded.
    fn drop(&mut self) {
        let mut discarded = usize::from(self.in_flight.take().is_some());
        // A group's mailbox stays with the other members.
        if self.sub.group.is_none() {
            discarded += self.sub.mailbox.cancel();
        }
        self.sub.discarded(discarded);
    }
}

impl<T: Deliverable, H: Invoke<T>> Handler<Wake> for HandlerActor<T, H> {
    type Result = ();

    /// Drains the mailbox until it is empty (or cancelled), then goes idle. Ignored while
    /// a restart is pending (the resumed drain covers it) or after `Finish`.
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        if self.finished || self.in_flight.is_some() || self.finishing {
            return;
        }
        self.start_drain(ctx);
    }
}

impl<T: Deliverable, H: Invoke<T>> Handler<Finish> for HandlerActor<T, H> {
    type Result = ResponseFuture<()>;

    /// Drains what was accepted if asked to, then replies; the actor then stays idle
    /// until its addresses are dropped.
    fn handle(&mut self, msg: Finish, ctx: &mut Context<Self>) -> ResponseFuture<()> {
        let (done, finished) = tokio::sync::oneshot::channel();
        self.replies.push(done);
        if self.finished || !msg.drain {
            // Unsubscribe (or a stop that gave up): the mailbox is cancelled; the item in
            // hand (if any) is done, since no drain runs while a message is handled; a
            // kept item is dropped.
            self.finish(ctx);
        } else if !self.finishing {
            self.finishing = true;
            // With an item kept across a restart, the pending `resume` drains.
            if self.in_flight.is_none() {
                self.start_drain(ctx);
            }
        }
        Box::pin(async move {
            let _ = finished.await;
        })
    }
}

/// Runs items until the mailbox is empty. `to_the_end`: the mailbox is closed; wait for
/// reserved slots to be filled and keep the wake flag (nothing will wake us again).
async fn drain<T: Deliverable, H: Invoke<T>>(
    sub: Arc<Subscription<T, H>>,
    first: Option<InFlight<T, H::Input>>,
    mut turns: LaneTurns,
    to_the_end: bool,
) -> (DrainEnd<T, H::Input>, LaneTurns) {
    let mut budget = BATCH;
    let mut idle_spins = 0u32;
    let mut held = Held {
        job: first,
        dropped: &sub.dropped,
    };
    let _flush = FlushOnDrop(&*sub);
    sub.start();
    loop {
        if sub.is_removed() {
            if sub.mailbox.is_cancelled() {
                // Discard what a late publisher pushed.
                sub.discarded(sub.mailbox.cancel());
            }
            return (DrainEnd::Done, turns); // an item held is counted as dropped
        }
        if held.job.is_none() {
            match sub.mailbox.pop(&mut turns) {
                Some(envelope) => {
                    held.job = Some(InFlight {
                        envelope,
                        input: None,
                        attempts: 0,
                        last_error: String::new(),
                    })
                }
                None => {
                    sub.mailbox.notify_room();
                    if to_the_end {
                        if sub.mailbox.len() == 0 {
                            return (DrainEnd::Done, turns);
                        }
                        // A publisher reserved a slot and is about to fill it: this lasts
                        // a few instructions unless its thread was preempted, so yield,
                        // then back off.
                        idle_spins += 1;
                        if idle_spins < 64 {
                            actix_rt::task::yield_now().await;
                        } else {
                            actix_rt::time::sleep(Duration::from_millis(1)).await;
                        }
                        continue;
                    }
                    if wake::go_idle(&sub.wake_flag, &*sub.mailbox) {
                        continue;
                    }
                    return (DrainEnd::Done, turns);
                }
            }
        }
        sub.took_item();
        if let Some(panicked) = deliver(&sub, &mut held).await {
            return (DrainEnd::Panicked(panicked), turns);
        }
        if held.job.is_some() {
            continue; // removed mid-delivery: the top of the loop ends the drain
        }
        sub.item_done();
        budget -= 1;
        let yield_to_urgent = sub.run.more_urgent_waiting(sub.handler_priority);
        if budget == 0 || yield_to_urgent {
            budget = BATCH;
            sub.flush();
            sub.mailbox.notify_room();
            if yield_to_urgent {
                // Wake the more urgent actors of this worker first, then let them run.
                sub.run.dispatch();
            }
            // While the worker's other actors run, this member is not searching: a push
            // after the grace wakes another.
            sub.pause();
            actix_rt::task::yield_now().await;
            sub.start();
        }
    }
}

/// The outcome of one run of the handler.
enum Outcome {
    Handled,
    Failed(String),
    Panicked(String),
    /// A stop gave up draining while the handler ran: the run was dropped.
    Abandoned,
}

/// Delivers the held item: runs the handler, retrying per the policy, until it succeeds
/// or the item becomes a dead letter (the held item is then settled), or the
/// subscription is removed or abandoned (the item stays held: the drain ends and counts
/// it as dropped). Returns the item if the handler panicked (the actor restarts, then
/// calls this again with it).
async fn deliver<T: Deliverable, H: Invoke<T>>(
    sub: &Subscription<T, H>,
    held: &mut Held<'_, T, H::Input>,
) -> Option<InFlight<T, H::Input>> {
    loop {
        let job = held.job.as_mut().expect("an item is held");
        if job.attempts > 0 {
            if sub.is_removed() {
                return None; // unsubscribed: the item is discarded, neither retried nor dead
            }
            if job.attempts >= sub.policy.max_attempts {
                sub.restarts_in_a_row.store(0, Ordering::Relaxed);
                let job = held.job.take().expect("held");
                dead_letter(sub, job);
                return None;
            }
            let delay = supervision::retry_delay(sub.policy.retry_delay, job.attempts);
            SubStats::add(&sub.stats.retries, 1);
            tracing::warn!(
                handler.name = %sub.name,
                event.name = %job.envelope.item.route(),
                attempt = job.attempts,
                error = %job.last_error,
                retry_in_ms = delay.as_millis() as u64,
                "handler failed; retrying"
            );
            sub.flush(); // the counts so far are visible during the delay
            sub.mailbox.notify_room();
            if delay.is_zero() {
                // At once (a zero timer would still wait for the next timer tick, 1 ms).
                actix_rt::task::yield_now().await;
                if sub.is_removed() {
                    return None;
                }
            } else {
                tokio::select! {
                    _ = actix_rt::time::sleep(delay) => {}
                    // Unsubscribed meanwhile: do not keep `unsubscribe` waiting for the delay.
                    _ = sub.mailbox.until(|| sub.is_removed()) => return None,
                }
            }
        }
        let job = held.job.as_mut().expect("an item is held");
        job.attempts += 1;
        let input = match job.input.take() {
            Some(input) => input,
            // Made before the first attempt; for a retry, made again from the item
            // unless `Invoke::retain` kept it (it is cheap then).
            None => match sub.handler.prepare(&job.envelope.item) {
                Ok(input) => input,
                Err(error) => {
                    // It can never be handled (a payload that does not decode): no retry.
                    SubStats::add(&sub.stats.errors, 1);
                    sub.restarts_in_a_row.store(0, Ordering::Relaxed);
                    let mut job = held.job.take().expect("held");
                    job.last_error = error;
                    dead_letter(sub, job);
                    return None;
                }
            },
        };
        if job.attempts < sub.policy.max_attempts {
            // What a retry could not make again cheaply (a decoded value) is kept.
            job.input = sub.handler.retain(&input);
        }
        let outcome = run(
            sub,
            input,
            job.envelope.item.route(),
            job.attempts,
            job.envelope.queued_at,
        )
        .await;
        match outcome {
            Outcome::Handled => {
                sub.tally(|t| t.processed += 1);
                sub.restarts_in_a_row.store(0, Ordering::Relaxed);
                if job.envelope.completion.is_armed() {
                    // A synchronous publisher returns when the guard drops: it must find
                    // its item counted.
                    sub.flush();
                }
                job.envelope.completion.settle();
                held.job = None; // settled
                return None;
            }
            Outcome::Failed(error) => {
                SubStats::add(&sub.stats.errors, 1);
                job.last_error = error;
            }
            Outcome::Panicked(error) => {
                SubStats::add(&sub.stats.errors, 1);
                job.last_error = error;
                return held.job.take();
            }
            Outcome::Abandoned => return None,
        }
    }
}

/// One run of the handler, bounded by the timeout, panics caught. A handler whose future
/// is not ready at once is slow: publishers waiting for room are woken before it is
/// awaited, and only then is a timer armed.
async fn run<T: Deliverable, H: Invoke<T>>(
    sub: &Subscription<T, H>,
    input: H::Input,
    route: &str,
    attempt: u32,
    queued_at: Option<quanta::Instant>,
) -> Outcome {
    let Some(recorder) = &sub.recorder else {
        return run_once(sub, input, route, attempt).await;
    };
    // quanta reads the CPU's time-stamp counter where it is reliable: a third of the
    // cost of `std::time::Instant::now` here, and this runs three times per delivery.
    let started = quanta::Instant::now();
    let outcome = run_once(sub, input, route, attempt).await;
    let finished = quanta::Instant::now();
    let run_time = finished.saturating_duration_since(started);
    sub.tally(|t| {
        t.runs += 1;
        t.run_nanos += run_time.as_nanos() as u64;
    });
    let handled = matches!(outcome, Outcome::Handled);
    let latency = queued_at
        .filter(|_| handled)
        .map(|at| finished.saturating_duration_since(at));
    recorder.borrow_mut().record(run_time, latency);
    outcome
}

/// One run of the handler, without metrics.
async fn run_once<T: Deliverable, H: Invoke<T>>(
    sub: &Subscription<T, H>,
    input: H::Input,
    route: &str,
    attempt: u32,
) -> Outcome {
    let span = tracing::debug_span!(
        "handler",
        handler.name = %sub.name,
        event.name = %route,
        attempt
    );
    // The closure itself runs inside the guarded future, so a panic in its synchronous
    // part is caught as well as one in the future it returns.
    let call = AssertUnwindSafe(async { sub.handler.invoke(input).await }).catch_unwind();
    // Entering a disabled span still costs on every poll: skip it when nobody listens.
    let call = if span.is_disabled() {
        futures_util::future::Either::Left(call)
    } else {
        futures_util::future::Either::Right(call.instrument(span))
    };
    let mut call = std::pin::pin!(call);
    let result = match futures_util::poll!(&mut call) {
        Poll::Ready(result) => result,
        Poll::Pending => {
            // A run that waits: counted as active (with metrics) while it does, and the
            // counts so far are made visible before the wait.
            sub.flush();
            let _active = sub
                .recorder
                .is_some()
                .then(|| Active::new(&sub.stats.active));
            sub.mailbox.notify_room();
            let timed = actix_rt::time::timeout(sub.policy.timeout, call);
            tokio::select! {
                outcome = timed => match outcome {
                    Ok(result) => result,
                    Err(_) => {
                        return Outcome::Failed(format!(
                            "handler timed out after {} s",
                            sub.policy.timeout.as_secs_f64()
                        ))
                    }
                },
                // A stop whose drain timed out gives up on this run.
                _ = sub.mailbox.until(|| sub.mailbox.is_abandoned()) => return Outcome::Abandoned,
            }
        }
    };
    match result {
        Ok(Ok(())) => Outcome::Handled,
        Ok(Err(error)) => Outcome::Failed(error.to_string()),
        Err(panic) => Outcome::Panicked(format!("panicked: {}", panic_text(&*panic))),
    }
}

/// Counts a handler run as active while it lives.
struct Active<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Active<'a> {
    fn new(counter: &'a std::sync::atomic::AtomicU64) -> Self {
        SubStats::add(counter, 1);
        Active(counter)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The item's last attempt failed: report, store, count and publish it.
fn dead_letter<T: Deliverable, H, I>(sub: &Subscription<T, H>, mut job: InFlight<T, I>) {
    // The dead-letter rules settle it: a waiting cluster acknowledges it (no redelivery).
    job.envelope.completion.settle();
    SubStats::add(&sub.stats.dead_letters, 1);
    let item = job.envelope.item.clone();
    let failure = HandlerFailure {
        handler: sub.name.clone(),
        subscription: sub.id,
        item: item.clone().into_delivered(),
        error: job.last_error,
        attempts: job.attempts,
        timestamp: SystemTime::now(),
    };
    tracing::error!(
        handler.name = %sub.name,
        subscription = %sub.id,
        event.name = %item.route(),
        attempts = failure.attempts,
        error = %failure.error,
        "dead letter: handler failed on every attempt"
    );
    // Stored first: an error handler that tells others may rely on `dead_letters()`.
    let shared = sub.shared.upgrade();
    if let Some(shared) = &shared {
        shared.dead_letters.record(failure.clone());
    }
    if let Some(callback) = &sub.policy.error_handler {
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| callback(&failure))) {
            tracing::error!(
                handler.name = %sub.name,
                panic = panic_text(&*panic),
                "error_handler panicked"
            );
        }
    }
    let Some(shared) = shared else {
        return;
    };
    let republish = !item.route().starts_with(DEAD_LETTER_PREFIX);
    let dlq_item = republish.then(|| T::dead_letter(&item, &failure));
    if let Some(dlq_item) = dlq_item {
        match shared.try_publish(dlq_item) {
            Ok(()) => {}
            // Stopping: nothing is accepted any more, by design.
            Err(err @ crate::TryPublishError::Stopped(_)) => tracing::debug!(
                handler.name = %sub.name,
                error = %err,
                "dead letter kept in the store, not published: stopping"
            ),
            Err(err) => tracing::warn!(
                handler.name = %sub.name,
                error = %err,
                "dead letter kept in the store but not published"
            ),
        }
    }
}

/// The message of a panic payload, when it is text.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-text panic payload")
}

/// Starts the handler actor of a subscription, supervised, on a worker and returns how
/// to reach it; `started` is told when the actor first runs.
pub(crate) fn spawn<T: Deliverable, H: Invoke<T>>(
    worker: &actix_rt::ArbiterHandle,
    sub: Subscription<T, H>,
    started: tokio::sync::oneshot::Sender<()>,
) -> (Recipient<Wake>, Recipient<Finish>) {
    let addr =
        actix::Supervisor::start_in_arbiter(worker, move |_| HandlerActor::new(sub, started));
    (addr.clone().recipient(), addr.recipient())
}
