//! The registry actor: owns a component's subscriptions, its worker arbiters and the
//! index snapshot that publishers read.
//!
//! Subscribing, unsubscribing and stopping are messages to this actor, so they are
//! serialized; each change publishes a new [`Snapshot`]. Publishers never talk to it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle};
use futures_util::future::join_all;

use super::handler_actor::{Finish, Wake};
use super::index::{Route, Snapshot, SubscriptionId};
use super::mailbox::PriorityMailbox;
use super::supervision::SubStats;
use super::{Deliverable, Shared};
use crate::{HandlerConfig, Pattern, SubscribeError};

/// Starts a subscription's handler actor on the given worker; returns its wake and finish
/// addresses.
pub(crate) type Spawn<T> = Box<
    dyn FnOnce(
            SubscriptionId,
            &ArbiterHandle,
            Arc<PriorityMailbox<T>>,
        ) -> (Recipient<Wake>, Recipient<Finish>)
        + Send,
>;

/// Adds a subscription.
#[derive(Message)]
#[rtype(result = "Result<SubscriptionId, SubscribeError>")]
pub(crate) struct Subscribe<T: Deliverable> {
    pub(crate) pattern: Pattern,
    pub(crate) config: HandlerConfig,
    /// The subscription's counters, shared with its handler actor.
    pub(crate) stats: Arc<SubStats>,
    pub(crate) spawn: Spawn<T>,
}

/// Removes a subscription; replies `false` if there was none with that id. The reply comes
/// once its handler will not run again; what was still queued for it is discarded.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub(crate) struct Unsubscribe(pub(crate) SubscriptionId);

/// Stops the component: refuses new items, drains what was accepted (bounded by
/// `default_timeout`), stops the workers and the registry.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

struct Worker {
    arbiter: Arbiter,
    subscriptions: usize,
}

struct Entry<T> {
    pattern: Pattern,
    route: Arc<Route<T>>,
    finish: Recipient<Finish>,
    worker: usize,
}

/// See the module docs.
pub(crate) struct Registry<T: Deliverable> {
    shared: Arc<Shared<T>>,
    entries: BTreeMap<SubscriptionId, Entry<T>>,
    workers: Vec<Worker>,
    next_id: u64,
}

impl<T: Deliverable> Registry<T> {
    /// A registry with `shared.settings.workers` new worker arbiters.
    pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
        let workers = (0..shared.settings.workers)
            .map(|_| Worker {
                arbiter: Arbiter::new(),
                subscriptions: 0,
            })
            .collect();
        Registry {
            shared,
            entries: BTreeMap::new(),
            workers,
            next_id: 1,
        }
    }

    fn publish_snapshot(&self) {
        let snapshot = Snapshot::build(self.entries.values().map(|e| (&e.pattern, &e.route)));
        self.shared.index.store(Arc::new(snapshot));
    }

    fn stop_workers(&mut self) {
        for worker in self.workers.drain(..) {
            worker.arbiter.stop();
        }
    }
}

impl<T: Deliverable> Drop for Registry<T> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

impl<T: Deliverable> Actor for Registry<T> {
    type Context = Context<Self>;
}

impl<T: Deliverable> Handler<Subscribe<T>> for Registry<T> {
    type Result = Result<SubscriptionId, SubscribeError>;

    /// Starts the handler actor on the least loaded worker and publishes a new snapshot.
    fn handle(&mut self, msg: Subscribe<T>, _: &mut Context<Self>) -> Self::Result {
        if self.shared.stopping.load(Ordering::Acquire) || self.workers.is_empty() {
            return Err(SubscribeError::Stopped);
        }
        let id = SubscriptionId(self.next_id);
        self.next_id += 1;
        let (worker_index, worker) = self
            .workers
            .iter_mut()
            .enumerate()
            .min_by_key(|(_, w)| w.subscriptions)
            .expect("at least one worker");
        worker.subscriptions += 1;
        let settings = &self.shared.settings;
        let mailbox = Arc::new(PriorityMailbox::new(settings.capacity, settings.fifo));
        let (waker, finish) = (msg.spawn)(id, &worker.arbiter.handle(), mailbox.clone());
        let route = Arc::new(Route {
            id,
            handler_priority: msg.config.priority,
            mailbox,
            waker,
            overflow: msg.config.overflow,
            stats: msg.stats,
        });
        tracing::debug!(
            subscription = %id,
            pattern = %msg.pattern,
            handler.name = %msg.config.name,
            worker = worker_index,
            "subscribed"
        );
        self.entries.insert(
            id,
            Entry {
                pattern: msg.pattern,
                route,
                finish,
                worker: worker_index,
            },
        );
        self.publish_snapshot();
        Ok(id)
    }
}

impl<T: Deliverable> Handler<Unsubscribe> for Registry<T> {
    type Result = ResponseFuture<bool>;

    /// Removes the route from the index, cancels the mailbox and waits for the handler
    /// actor to finish the item in hand.
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) -> ResponseFuture<bool> {
        let Some(entry) = self.entries.remove(&msg.0) else {
            return Box::pin(async { false });
        };
        if let Some(worker) = self.workers.get_mut(entry.worker) {
            worker.subscriptions -= 1;
        }
        self.publish_snapshot();
        let discarded = entry.route.mailbox.cancel();
        tracing::debug!(subscription = %msg.0, discarded, "unsubscribed");
        let shared = self.shared.clone();
        Box::pin(async move {
            // An error means the actor is already gone: nothing will run either way.
            let _ = entry.finish.send(Finish { drain: false }).await;
            shared.retired.absorb(&entry.route.stats);
            true
        })
    }
}

impl<T: Deliverable> Handler<Shutdown> for Registry<T> {
    type Result = ResponseActFuture<Self, ()>;

    /// Closes every mailbox, drains them (bounded by `default_timeout`), then stops.
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for entry in self.entries.values() {
            entry.route.mailbox.close();
        }
        let drains = join_all(
            self.entries
                .values()
                .map(|e| e.finish.send(Finish { drain: true })),
        );
        let mailboxes: Vec<_> = self
            .entries
            .values()
            .map(|e| e.route.mailbox.clone())
            .collect();
        let timeout = self.shared.settings.default_timeout;
        let work = async move {
            if tokio::time::timeout(timeout, drains).await.is_err() {
                let left: usize = mailboxes.iter().map(|m| m.len()).sum();
                tracing::warn!(
                    timeout_s = timeout.as_secs_f64(),
                    left,
                    "stop: drain timed out; items still queued are discarded"
                );
            }
        };
        Box::pin(work.into_actor(self).map(|(), act, ctx| {
            let entries = std::mem::take(&mut act.entries);
            act.publish_snapshot(); // empty: a stats reader never counts a route twice
            for entry in entries.values() {
                act.shared.retired.absorb(&entry.route.stats);
            }
            act.stop_workers();
            ctx.stop();
        }))
    }
}
