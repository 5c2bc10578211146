//! The registry actor: owns a component's subscriptions, its worker arbiters and the
//! index snapshot that publishers read.
//!
//! Subscribing, unsubscribing and stopping are messages to this actor, so they are
//! serialized; each change publishes a new [`Snapshot`]. Publishers never talk to it.
//!
//! ## Groups
//!
//! The members of a consumer group (same pattern, same group name) share one mailbox:
//! the group is a single route in the index, and each member's handler actor takes
//! items from the shared mailbox. An item is taken by exactly one member, whichever
//! looks first (a busy member does not look). A push wakes no member while one is
//! searching or was woken less than 500 µs ago, else one idle member (preferably on a
//! worker where no member is busy), and a member that takes an item while more wait
//! wakes the next (see `wake`, which holds the whole protocol). Publishers wake from the
//! group's live member list ([`Members`]), which this actor replaces as members join
//! ([`wake::join`]) and leave ([`wake::leave`]: the new list, then the leaving member
//! marked `Left`, then a wake of a remaining member if one is needed, so the items still
//! queued stay for them). When the last member leaves, they are discarded like a
//! subscription's.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle};
use futures_util::future::join_all;

use super::handler_actor::{Finish, Wake};
use super::index::{Members, Route, Snapshot, Waker, Wakeup};
use super::mailbox::PriorityMailbox;
use super::supervision::{OverflowPolicy, SubStats, STOP_GRACE};
use super::tap::{GroupKey, Tap};
use super::wake::{self, WakeFlag};
use super::worker::RunQueue;
use super::{Deliverable, Shared};
use crate::item::SubscriptionId;
use crate::{HandlerConfig, Pattern, Priority, SubscribeError};

/// Subscription ids are unique in the process, across components: an id given to the
/// wrong component's `unsubscribe` finds nothing there.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a new subscription's handler actor is given.
pub(crate) struct SpawnArgs<'a, T> {
    pub(crate) id: SubscriptionId,
    pub(crate) worker: &'a ArbiterHandle,
    pub(crate) mailbox: Arc<PriorityMailbox<T>>,
    pub(crate) stats: Arc<SubStats>,
    /// Set when this subscription (a group member) is removed.
    pub(crate) removed: Arc<AtomicBool>,
    /// The group's members, when the mailbox is shared with them.
    pub(crate) group: Option<Arc<Members>>,
    /// The new handler actor's wake flag (publishers hold it too).
    pub(crate) wake_flag: Arc<WakeFlag>,
    /// The subscription's handler priority (its group's, for a member).
    pub(crate) handler_priority: Priority,
    /// The worker's run queue.
    pub(crate) run: Arc<RunQueue>,
}

/// Starts a subscription's handler actor; returns its wake and finish addresses.
pub(crate) type Spawn<T> =
    Box<dyn for<'a> FnOnce(SpawnArgs<'a, T>) -> (Recipient<Wake>, Recipient<Finish>) + Send>;

/// Adds a subscription (a member of `group`, if given).
#[derive(Message)]
#[rtype(result = "Result<SubscriptionId, SubscribeError>")]
pub(crate) struct Subscribe<T: Deliverable> {
    pub(crate) pattern: Pattern,
    pub(crate) group: Option<String>,
    pub(crate) config: HandlerConfig,
    pub(crate) spawn: Spawn<T>,
}

/// Removes a subscription; replies `false` if there was none with that id. The reply comes
/// once its handler will not run again; what was still queued for it is discarded (for a
/// group member: left to the other members).
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub(crate) struct Unsubscribe(pub(crate) SubscriptionId);

/// A removed target's handler has finished: fold its counters into the component's
/// totals.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Retired(SubscriptionId);

/// Stops the component: refuses new items, drains what was accepted (bounded by
/// `default_timeout`), stops the workers and the registry.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// Attaches a [`Tap`] (once per component): false if one is attached already. The tap
/// hears of every group that exists now, then of every change.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Attach<T>(pub(crate) Arc<dyn Tap<T>>);

struct Worker {
    arbiter: Arbiter,
    subscriptions: usize,
    /// Subscriptions per handler priority (lowest first).
    priorities: [usize; 4],
    run: Arc<RunQueue>,
}

impl Worker {
    fn new() -> Worker {
        let arbiter = Arbiter::new();
        let run = RunQueue::start(&arbiter.handle());
        Worker {
            arbiter,
            subscriptions: 0,
            priorities: [0; 4],
            run,
        }
    }

    /// A subscription of `priority` comes (+1) or goes (-1).
    fn count(&mut self, priority: Priority, joins: bool) {
        let n = &mut self.priorities[priority.lane()];
        if joins {
            self.subscriptions += 1;
            *n += 1;
        } else {
            self.subscriptions -= 1;
            *n -= 1;
        }
        self.run.set_priorities(&self.priorities);
    }
}

/// A subscription's route (shared by the members of a group).
struct Target<T> {
    id: SubscriptionId,
    pattern: Pattern,
    handler_priority: Priority,
    overflow: OverflowPolicy,
    mailbox: Arc<PriorityMailbox<T>>,
    stats: Arc<SubStats>,
    /// Member id → how to wake it (one entry for a plain subscription).
    members: BTreeMap<SubscriptionId, Waker>,
    /// A group's members as they see one another (`None` for a plain subscription).
    group: Option<Arc<Members>>,
    /// A group's pattern and name (`None` for a plain subscription).
    key: Option<Arc<GroupKey>>,
}

impl<T> Target<T> {
    /// The member list as the group's members see it.
    fn list(&self) -> Vec<Waker> {
        self.members.values().cloned().collect()
    }

    /// The route publishers use; `None` for a target without members (never published:
    /// a target is removed with its last member).
    fn route(&self) -> Option<Arc<Route<T>>> {
        let wakeup = match (&self.group, self.members.values().next()) {
            (Some(group), Some(_)) => Wakeup::Group(group.clone()),
            (None, Some(one)) => Wakeup::One(one.clone()),
            (_, None) => return None,
        };
        Some(Arc::new(Route {
            id: self.id,
            handler_priority: self.handler_priority,
            mailbox: self.mailbox.clone(),
            wakeup,
            overflow: self.overflow,
            stats: self.stats.clone(),
            group: self.key.clone(),
        }))
    }
}

struct Entry {
    /// The target: the subscription's own id, or its group's.
    target: SubscriptionId,
    group: Option<GroupKey>,
    finish: Recipient<Finish>,
    removed: Arc<AtomicBool>,
    worker: usize,
    /// As counted on its worker.
    handler_priority: Priority,
}

/// See the module docs.
pub(crate) struct Registry<T: Deliverable> {
    shared: Arc<Shared<T>>,
    entries: BTreeMap<SubscriptionId, Entry>,
    targets: BTreeMap<SubscriptionId, Target<T>>,
    groups: HashMap<GroupKey, SubscriptionId>,
    workers: Vec<Worker>,
    /// Counters of removed targets whose handler may still be finishing: readable in
    /// the snapshot until they are folded into the component's totals.
    retiring: BTreeMap<SubscriptionId, Arc<SubStats>>,
}

impl<T: Deliverable> Registry<T> {
    /// A registry with `shared.settings.workers` new worker arbiters.
    pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
        let workers = (0..shared.settings.workers)
            .map(|_| Worker::new())
            .collect();
        Registry {
            shared,
            entries: BTreeMap::new(),
            targets: BTreeMap::new(),
            groups: HashMap::new(),
            workers,
            retiring: BTreeMap::new(),
        }
    }

    fn publish_snapshot(&self) {
        let routes: Vec<(Pattern, Arc<Route<T>>)> = self
            .targets
            .values()
            .filter_map(|t| Some((t.pattern.clone(), t.route()?)))
            .collect();
        let retained = self.retiring.values().cloned().collect();
        let snapshot = Snapshot::build(routes.iter().map(|(p, r)| (p, r))).retaining(retained);
        self.shared.index.store(Arc::new(snapshot));
    }

    fn stop_workers(&mut self) {
        for worker in self.workers.drain(..) {
            worker.arbiter.stop();
        }
    }

    /// The target a new subscription joins: its group's, or a new one.
    fn target_for(&mut self, id: SubscriptionId, msg: &Subscribe<T>) -> SubscriptionId {
        let key = msg.group.as_ref().map(|g| {
            (
                Box::<str>::from(msg.pattern.as_str()),
                Box::<str>::from(g.as_str()),
            )
        });
        if let Some(existing) = key.as_ref().and_then(|k| self.groups.get(k)) {
            return *existing;
        }
        let settings = &self.shared.settings;
        let mailbox = Arc::new(PriorityMailbox::with_shared_bound(
            settings.capacity,
            settings.fifo,
            self.shared.bound.clone(),
        ));
        self.targets.insert(
            id,
            Target {
                id,
                pattern: msg.pattern.clone(),
                handler_priority: msg.config.priority,
                overflow: msg.config.overflow,
                mailbox,
                stats: Arc::default(),
                members: BTreeMap::new(),
                group: key.is_some().then(Arc::default),
                key: key.clone().map(Arc::new),
            },
        );
        if let Some(key) = key {
            if let Some(tap) = self.shared.tap.get() {
                tap.group_opened(&key.0, &key.1);
            }
            self.groups.insert(key, id);
        }
        id
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
        let id = SubscriptionId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let target_id = self.target_for(id, &msg);
        let (worker_index, worker) = self
            .workers
            .iter_mut()
            .enumerate()
            .min_by_key(|(_, w)| w.subscriptions)
            .expect("at least one worker");
        let target = self.targets.get_mut(&target_id).expect("target just found");
        let handler_priority = target.handler_priority;
        worker.count(handler_priority, true);
        let removed = Arc::new(AtomicBool::new(false));
        let wake_flag = Arc::new(WakeFlag::default());
        let (recipient, finish) = (msg.spawn)(SpawnArgs {
            id,
            worker: &worker.arbiter.handle(),
            mailbox: target.mailbox.clone(),
            stats: target.stats.clone(),
            removed: removed.clone(),
            group: target.group.clone(),
            wake_flag: wake_flag.clone(),
            handler_priority,
            run: worker.run.clone(),
        });
        let waker = Waker {
            flag: wake_flag,
            recipient: Arc::new(recipient),
            worker: worker_index,
            priority: handler_priority,
            run: worker.run.clone(),
        };
        // A group member joins with work possibly waiting: it looks at the mailbox once.
        // (A new subscription's own mailbox is empty: its first push wakes it.)
        if let Some(group) = &target.group {
            target.members.insert(id, waker.clone());
            wake::join(&**group, target.list(), &waker);
        } else {
            target.members.insert(id, waker);
        }
        tracing::debug!(
            subscription = %id,
            pattern = %msg.pattern,
            group = msg.group.as_deref().unwrap_or(""),
            handler.name = %msg.config.name,
            worker = worker_index,
            "subscribed"
        );
        self.entries.insert(
            id,
            Entry {
                target: target_id,
                group: msg.group.map(|g| (msg.pattern.as_str().into(), g.into())),
                finish,
                removed,
                worker: worker_index,
                handler_priority,
            },
        );
        self.publish_snapshot();
        Ok(id)
    }
}

impl<T: Deliverable> Handler<Unsubscribe> for Registry<T> {
    type Result = ResponseFuture<bool>;

    /// Removes the subscription from the index and waits for its handler actor to finish
    /// the item in hand. The last member of a target cancels its mailbox (discarding what
    /// waits); a group member that leaves others behind leaves them its items.
    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Context<Self>) -> Self::Result {
        let Some(entry) = self.entries.remove(&msg.0) else {
            return Box::pin(async { false });
        };
        if let Some(worker) = self.workers.get_mut(entry.worker) {
            worker.count(entry.handler_priority, false);
        }
        entry.removed.store(true, Ordering::SeqCst);
        let target = self
            .targets
            .get_mut(&entry.target)
            .expect("entry has a target");
        let leaving = target.members.remove(&msg.0);
        if let (Some(leaving), Some(group)) = (leaving, &target.group) {
            // The new list, then the mark (a publisher that sees it reads the new list),
            // then, if members remain, a wake for what the member may have left.
            let remain = !target.members.is_empty();
            wake::leave(&**group, target.list(), &leaving.flag, remain);
        }
        let retired = if target.members.is_empty() {
            let target = self.targets.remove(&entry.target).expect("present");
            if let Some(key) = &entry.group {
                self.groups.remove(key);
                if let Some(tap) = self.shared.tap.get() {
                    tap.group_closed(&key.0, &key.1);
                }
            }
            let discarded = target.mailbox.cancel();
            self.shared.dropped.add(discarded as u64);
            tracing::debug!(subscription = %msg.0, discarded, "unsubscribed");
            // Readable until the handler finished and they are folded into the totals.
            self.retiring.insert(entry.target, target.stats);
            Some(entry.target)
        } else {
            // Wake the leaving member if it waits out a retry delay (`wake::leave` had a
            // remaining member look at what it may have left).
            target.mailbox.poke();
            tracing::debug!(subscription = %msg.0, "left its group");
            None
        };
        self.publish_snapshot();
        let registry = ctx.address();
        Box::pin(async move {
            // An error means the actor is already gone: nothing will run either way.
            let _ = entry.finish.send(Finish { drain: false }).await;
            if let Some(target) = retired {
                // Gone if the registry stopped meanwhile: its snapshot kept the counters.
                let _ = registry.send(Retired(target)).await;
            }
            true
        })
    }
}

impl<T: Deliverable> Handler<Attach<T>> for Registry<T> {
    type Result = bool;

    fn handle(&mut self, msg: Attach<T>, _: &mut Context<Self>) -> bool {
        let tap = msg.0;
        if self.shared.stopping.load(Ordering::Acquire) || self.shared.tap.set(tap.clone()).is_err()
        {
            return false;
        }
        for (pattern, name) in self.groups.keys() {
            tap.group_opened(pattern, name);
        }
        true
    }
}

impl<T: Deliverable> Handler<Retired> for Registry<T> {
    type Result = ();

    /// Folds the counters in (unless a stop took them into its own snapshot meanwhile).
    fn handle(&mut self, msg: Retired, _: &mut Context<Self>) {
        if let Some(stats) = self.retiring.remove(&msg.0) {
            self.shared.retired.absorb(&stats);
            self.publish_snapshot();
        }
    }
}

impl<T: Deliverable> Handler<Shutdown> for Registry<T> {
    type Result = ResponseActFuture<Self, ()>;

    /// Closes every mailbox, drains them (bounded by `default_timeout`; past it, gives up
    /// what is left: see `## Accounting` in `supervision`), then stops.
    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // A stopped component's groups take no more of a cluster's share.
        for (pattern, name) in std::mem::take(&mut self.groups).keys() {
            if let Some(tap) = self.shared.tap.get() {
                tap.group_closed(pattern, name);
            }
        }
        for target in self.targets.values() {
            target.mailbox.close();
        }
        let finishers: Vec<Recipient<Finish>> =
            self.entries.values().map(|e| e.finish.clone()).collect();
        let drains = join_all(finishers.iter().map(|f| f.send(Finish { drain: true })));
        let mailboxes: Vec<_> = self.targets.values().map(|t| t.mailbox.clone()).collect();
        let timeout = self.shared.settings.default_timeout;
        let shared = self.shared.clone();
        let work = async move {
            if tokio::time::timeout(timeout, drains).await.is_ok() {
                return;
            }
            // Give up: discard what is queued, and have every handler actor let go of
            // what it holds (a run in progress, a retry, a restart backoff).
            let discarded: usize = mailboxes.iter().map(|m| m.abandon()).sum();
            shared.dropped.add(discarded as u64);
            let given_up = join_all(finishers.iter().map(|f| f.send(Finish { drain: false })));
            let let_go = tokio::time::timeout(STOP_GRACE, given_up).await.is_ok();
            tracing::warn!(
                timeout_s = timeout.as_secs_f64(),
                discarded,
                all_let_go = let_go,
                "stop: drain timed out; what was left is discarded (counted as dropped)"
            );
        };
        Box::pin(work.into_actor(self).map(|(), act, ctx| {
            act.entries.clear();
            act.groups.clear();
            let targets = std::mem::take(&mut act.targets);
            // The stopped subscriptions' counters (and those of removed ones still
            // retiring) stay readable, and a late count of a handler that held its
            // worker is still seen; their routes are gone.
            let kept = targets
                .into_values()
                .map(|t| t.stats)
                .chain(std::mem::take(&mut act.retiring).into_values())
                .collect();
            let snapshot = Snapshot::empty().retaining(kept);
            act.shared.index.store(Arc::new(snapshot));
            act.stop_workers();
            ctx.stop();
        }))
    }
}
