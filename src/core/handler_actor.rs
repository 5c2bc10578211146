//! The handler actor: one per subscription, on one of the worker arbiters. It drains the
//! subscription's [`PriorityMailbox`] and runs the handler, one item at a time.
//!
//! The actor is woken by a [`Wake`] message that a publisher sends only when the mailbox's
//! wake flag was clear (see the mailbox's module docs), so a busy subscription costs no
//! actix message per item. It then drains inside `ctx.wait`, so no other message of the
//! actor interleaves with a drain, and yields to the worker's other actors every
//! [`BATCH`] items.
//!
//! A handler that panics is caught: the panic is logged as that item's failure and the
//! actor goes on with the next item; the worker thread and the other handlers keep
//! running.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;

use actix::prelude::*;
use futures_util::FutureExt;

use super::handler::Invoke;
use super::mailbox::{Envelope, LaneTurns, PriorityMailbox};
use super::{Deliverable, SubscriptionId};

/// Items run between two yields to the worker's other actors.
pub const BATCH: usize = 128;

/// Wakes an idle handler actor: its mailbox has items.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct Wake;

/// Ends a subscription: with `drain`, after handling everything accepted (stop); without,
/// at once, once the item in hand is done (unsubscribe; the registry has already cancelled
/// the mailbox). The reply comes when the handler will not run again.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct Finish {
    pub(crate) drain: bool,
}

/// The state a drain needs; shared by the actor and its drain futures.
pub(crate) struct Subscription<T, H> {
    pub(crate) id: SubscriptionId,
    pub(crate) name: String,
    pub(crate) mailbox: Arc<PriorityMailbox<T>>,
    pub(crate) handler: H,
}

/// Runs one subscription's handler.
pub(crate) struct HandlerActor<T, H> {
    sub: Arc<Subscription<T, H>>,
    /// The anti-starvation state, kept across drains.
    turns: Option<LaneTurns>,
}

impl<T: Deliverable, H: Invoke<T>> HandlerActor<T, H> {
    pub(crate) fn new(sub: Subscription<T, H>) -> Self {
        HandlerActor {
            sub: Arc::new(sub),
            turns: Some(LaneTurns::default()),
        }
    }

    /// The drain future, to run inside `ctx.wait`.
    fn start_drain(&mut self, to_the_end: bool) -> impl ActorFuture<Self, Output = ()> {
        let turns = self.turns.take().unwrap_or_default();
        drain(self.sub.clone(), turns, to_the_end)
            .into_actor(self)
            .map(|turns, act, _| act.turns = Some(turns))
    }
}

impl<T: Deliverable, H: Invoke<T>> Actor for HandlerActor<T, H> {
    type Context = Context<Self>;
}

impl<T, H> Drop for HandlerActor<T, H> {
    /// Backstop: if the actor goes away without finishing (its worker stopped, or a bug),
    /// cancel the mailbox so publishers skip the subscription instead of waiting on it.
    fn drop(&mut self) {
        self.sub.mailbox.cancel();
    }
}

impl<T: Deliverable, H: Invoke<T>> Handler<Wake> for HandlerActor<T, H> {
    type Result = ();

    /// Drains the mailbox until it is empty (or cancelled), then goes idle.
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        let work = self.start_drain(false);
        ctx.wait(work);
    }
}

impl<T: Deliverable, H: Invoke<T>> Handler<Finish> for HandlerActor<T, H> {
    type Result = ResponseFuture<()>;

    /// Drains what was accepted if asked to, then stops the actor and replies.
    fn handle(&mut self, msg: Finish, ctx: &mut Context<Self>) -> ResponseFuture<()> {
        let (done, finished) = tokio::sync::oneshot::channel();
        let work = self.start_drain(msg.drain);
        ctx.wait(work.map(move |(), _, ctx| {
            ctx.stop();
            let _ = done.send(());
        }));
        Box::pin(async move {
            let _ = finished.await;
        })
    }
}

/// Runs items until the mailbox is empty. `to_the_end`: the mailbox is closed; wait for
/// reserved slots to be filled and keep the wake flag (nothing will wake us again).
/// Returns the anti-starvation state for the next drain.
async fn drain<T: Deliverable, H: Invoke<T>>(
    sub: Arc<Subscription<T, H>>,
    mut turns: LaneTurns,
    to_the_end: bool,
) -> LaneTurns {
    let mut budget = BATCH;
    let mut idle_spins = 0u32;
    loop {
        if sub.mailbox.is_cancelled() {
            sub.mailbox.cancel();
            return turns;
        }
        let Some(envelope) = sub.mailbox.pop(&mut turns) else {
            sub.mailbox.notify_room();
            if to_the_end {
                if sub.mailbox.len() == 0 {
                    return turns;
                }
                // A publisher reserved a slot and is about to fill it: this lasts a few
                // instructions unless its thread was preempted, so yield, then back off.
                idle_spins += 1;
                if idle_spins < 64 {
                    actix_rt::task::yield_now().await;
                } else {
                    actix_rt::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                continue;
            }
            if sub.mailbox.try_idle() {
                continue;
            }
            return turns;
        };
        run(&sub, envelope).await;
        budget -= 1;
        if budget == 0 {
            budget = BATCH;
            sub.mailbox.notify_room();
            actix_rt::task::yield_now().await;
        }
    }
}

/// Runs the handler for one item. A handler whose future is not ready at once is slow:
/// publishers waiting for room are woken before it is awaited.
async fn run<T: Deliverable, H: Invoke<T>>(sub: &Subscription<T, H>, envelope: Envelope<T>) {
    let Envelope {
        item, completion, ..
    } = envelope;
    // The closure itself runs inside the guarded future, so a panic in its synchronous
    // part is caught as well as one in the future it returns.
    let mut call =
        std::pin::pin!(AssertUnwindSafe(async { sub.handler.invoke(item).await }).catch_unwind());
    let outcome = match futures_util::poll!(&mut call) {
        Poll::Ready(outcome) => outcome,
        Poll::Pending => {
            sub.mailbox.notify_room();
            call.await
        }
    };
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(
            handler.name = %sub.name,
            subscription = %sub.id,
            %error,
            "handler failed"
        ),
        Err(panic) => tracing::error!(
            handler.name = %sub.name,
            subscription = %sub.id,
            panic = panic_text(&*panic),
            "handler panicked"
        ),
    }
    drop(completion);
}

/// The message of a panic payload, when it is text.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-text panic payload")
}

/// Starts the handler actor of a subscription on a worker and returns how to reach it.
pub(crate) fn spawn<T: Deliverable, H: Invoke<T>>(
    worker: &actix_rt::ArbiterHandle,
    sub: Subscription<T, H>,
) -> (Recipient<Wake>, Recipient<Finish>) {
    let addr = HandlerActor::start_in_arbiter(worker, move |_| HandlerActor::new(sub));
    (addr.clone().recipient(), addr.recipient())
}
