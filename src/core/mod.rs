//! The delivery core shared by [`EventBus`](crate::EventBus) and
//! [`MessageQueue`](crate::MessageQueue): one implementation of mailboxes, index, handler
//! actors and supervision, behind thin facades.
//!
//! ```text
//! publisher ──(no lock)──► index snapshot (ArcSwap, cached per name)
//!           ──► reserve a slot in every matching subscription's PriorityMailbox
//!           ──► push the item (an Arc clone) into each, wake idle handler actors
//! HandlerActor (one per subscription, on one of `max_workers` arbiters)
//!           ──► drains its mailbox CRITICAL→LOW (anti-starvation rule) and runs the handler
//! ```
//!
//! The pieces (one file each under `src/core/`; the internal ones are described in their
//! source):
//!
//! - `mailbox`: the bounded four-lane mailbox and its reservations (`mailbox::evict`:
//!   making room by policy); `lane`: one of its lanes; `turns`: the priority rule its
//!   consumer takes items by; `completion`: what a synchronous publisher waits on;
//!   `bench_mailbox`: the mailbox as the criterion benches drive it.
//! - `wake`: the wake protocol: coalesced wake flags, and which member of a consumer
//!   group a push wakes (its module docs hold the whole state machine).
//! - `index`: the snapshot publishers read and its per-name cache.
//! - `handler_actor`: the actor that drains one mailbox.
//! - `registry`: the actor that owns subscriptions, workers and the index.
//! - `history`: the lock-free ring of recently published items.
//! - `handler`: the handler kinds and [`HandlerConfig`].
//! - [`supervision`]: retries, restarts, dead letters, overflow policies, counters.
//! - `room`: waiting for room under a bound; the MessageQueue's queue-wide bound.
//! - `worker`: each worker's dispatcher, which wakes its handlers by handler priority.
//! - `depths`: per-route deliveries in flight (the MessageQueue's `topic_depths`).
//! - `recorder`, `metrics_actor`: the metrics hot path and its aggregation (the striped
//!   counters are `util`'s).
//!
//! ## Priority
//!
//! A handler actor takes the next item from the highest non-empty lane of its mailbox.
//! Anti-starvation rule: each time an item is taken from a higher lane while a lower lane
//! is non-empty, that lower lane is *passed over*; once a lane has been passed over
//! [`STARVATION_LIMIT`](crate::STARVATION_LIMIT) times in a row, the next item is taken
//! from it (the highest such lane first).
//!
//! ## Wake-ups
//!
//! A publisher wakes a handler actor (one actix message) only when the actor was idle; a
//! busy subscription costs no message per item. For a consumer group, a push wakes at
//! most one member, and none while one is looking at the mailbox (see `wake`). The actor yields to the other actors of its worker every [`BATCH`] items, and
//! sooner when a more urgent handler of its worker is woken. On a worker whose handlers
//! have different handler priorities, wakes go through the worker's run queue, so that
//! woken handlers run highest priority first (see `worker`).
//!
//! ## Atomic publish
//!
//! A publish first reserves a slot in every matching mailbox of a
//! [`Block`](OverflowPolicy::Block) subscription, and only pushes when all reservations
//! succeeded. If one mailbox is full, the reservations are given back and the item is
//! handed back to the caller (`try_publish`) or the publisher waits for room and tries
//! again (`publish`): an item is delivered to all matching `Block` subscriptions or to
//! none, never to some, so a retried publish cannot duplicate. Subscriptions with a drop
//! policy never refuse: when full, they discard an item (counted as `dropped`).

pub(crate) mod bench_mailbox;
pub(crate) mod completion;
pub(crate) mod depths;
pub(crate) mod handler;
pub(crate) mod handler_actor;
pub(crate) mod history;
pub(crate) mod index;
pub(crate) mod lane;
pub(crate) mod mailbox;
pub(crate) mod metrics_actor;
pub(crate) mod recorder;
pub(crate) mod registry;
pub(crate) mod room;
pub mod supervision;
pub(crate) mod tap;
pub(crate) mod turns;
pub(crate) mod wake;
pub(crate) mod worker;

#[doc(hidden)]
pub use bench_mailbox::BenchMailbox;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use arc_swap::ArcSwap;

pub use crate::item::{Deliverable, SubscriptionId};
pub use handler::{create_handler_config, Deliver, HandlerConfig, HandlerResult};
pub use handler_actor::BATCH;

use completion::{Completion, CompletionGuard};
use depths::TopicDepths;
use handler::Invoke;
use handler_actor::{Policy, Subscription};
use history::History;
use index::{Index, Route, Snapshot};
use mailbox::{Envelope, PriorityMailbox, Refused};
use metrics_actor::{GetSnapshot, MetricsActor, Snapshot as MetricsSnapshot};
use recorder::Recorder;
use registry::{Registry, Shutdown, Subscribe, Unsubscribe};
use room::SharedBound;
use supervision::{DeliveryStats, HandlerFailure, OverflowPolicy, SubStats};
use tap::{Scope, Tap};

use crate::util::counter::StripedCounter;
use crate::{Pattern, Priority, PublishError, SubscribeError, TryPublishError};

/// The core's settings, derived from a component's config.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) workers: usize,
    /// Items that may wait per subscription.
    pub(crate) capacity: usize,
    /// One lane in arrival order instead of four priority lanes.
    pub(crate) fifo: bool,
    pub(crate) default_timeout: Duration,
    /// `publish` waits until every matching handler finished the item.
    pub(crate) wait_for_handlers: bool,
    pub(crate) history: usize,
    /// Retries allowed at all (`enable_retry`).
    pub(crate) retry: bool,
    /// Dead letters kept.
    pub(crate) dead_letters: usize,
    /// A bound on everything queued in the component (MessageQueue `max_size`).
    pub(crate) shared_bound: Option<usize>,
    /// Record metrics on the hot path (`enable_metrics`).
    pub(crate) metrics: bool,
    /// Count deliveries in flight per route (the MessageQueue's `topic_depths`).
    pub(crate) track_depths: bool,
}

/// What the registry actor, the publishers and the handler actors share.
pub(crate) struct Shared<T> {
    pub(crate) index: Index<T>,
    pub(crate) stopping: AtomicBool,
    pub(crate) settings: Settings,
    pub(crate) history: History<T>,
    pub(crate) dead_letters: History<HandlerFailure>,
    /// Counters of removed subscriptions.
    pub(crate) retired: SubStats,
    /// The component-wide bound, if any.
    pub(crate) bound: Option<Arc<SharedBound>>,
    /// Items accepted (metrics only).
    pub(crate) published: StripedCounter,
    /// Deliveries accepted, and those discarded unhandled (see `## Accounting` in
    /// `supervision`).
    pub(crate) accepted: StripedCounter,
    pub(crate) dropped: Arc<StripedCounter>,
    /// Deliveries in flight per route, when tracked.
    pub(crate) depths: Option<TopicDepths>,
    /// The link to other processes, once a cluster attached one (see `tap`).
    pub(crate) tap: OnceLock<Arc<dyn Tap<T>>>,
}

/// Metrics-only counters summed over a component's subscriptions.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: u64,
    pub(crate) active: u64,
    pub(crate) runs: u64,
    pub(crate) run_nanos: u64,
}

/// Why one attempt to dispatch did not go through.
enum Attempt<T> {
    /// This mailbox was full; nothing was delivered.
    Full(T, Arc<PriorityMailbox<T>>),
    /// The component-wide bound had no room for this many deliveries; nothing was
    /// delivered.
    BoundFull(T, usize),
    /// The component is stopping; nothing was delivered.
    Stopped(T),
}

/// Which routes got a slot, without allocating for up to 64 routes.
struct Taken {
    small: u64,
    large: Vec<bool>,
}

impl Taken {
    fn new(routes: usize) -> Self {
        Taken {
            small: 0,
            large: if routes > 64 {
                vec![false; routes]
            } else {
                Vec::new()
            },
        }
    }

    fn set(&mut self, i: usize) {
        if self.large.is_empty() {
            self.small |= 1u64 << i;
        } else {
            self.large[i] = true;
        }
    }

    fn get(&self, i: usize) -> bool {
        if self.large.is_empty() {
            self.small & (1u64 << i) != 0
        } else {
            self.large[i]
        }
    }

    /// Gives back the slots taken so far.
    fn undo<T>(&self, routes: &[Arc<Route<T>>]) {
        for (i, route) in routes.iter().enumerate() {
            if self.get(i) {
                route.mailbox.unreserve();
            }
        }
    }
}

impl<T: Deliverable> Shared<T> {
    /// Delivery counters over every subscription, current and removed.
    pub(crate) fn stats_now(&self) -> DeliveryStats {
        let mut stats = self.retired.snapshot();
        let snapshot = self.index.load();
        for route in snapshot.routes() {
            stats += route.stats.snapshot();
            stats.queued += route.mailbox.len() as u64;
        }
        for kept in snapshot.retained_stats() {
            stats += kept.snapshot();
        }
        stats.accepted = self.accepted.sum();
        stats.dropped = self.dropped.sum();
        stats
    }

    /// Metrics-only counters.
    pub(crate) fn counters(&self) -> Counters {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let mut counters = Counters {
            published: self.published.sum(),
            active: 0,
            runs: get(&self.retired.runs),
            run_nanos: get(&self.retired.run_nanos),
        };
        let snapshot = self.index.load();
        for route in snapshot.routes() {
            counters.active += get(&route.stats.active);
            counters.runs += get(&route.stats.runs);
            counters.run_nanos += get(&route.stats.run_nanos);
        }
        for kept in snapshot.retained_stats() {
            counters.runs += get(&kept.runs);
            counters.run_nanos += get(&kept.run_nanos);
        }
        counters
    }

    /// Queues the item for every matching subscription without waiting.
    pub(crate) fn try_publish(&self, item: T) -> Result<(), TryPublishError<T>> {
        let reservation = match self.reserve(&item) {
            Ok(reservation) => reservation,
            Err(()) => return Err(TryPublishError::ClusterUnavailable(item)),
        };
        let scope = Reservation::scope(&reservation);
        let result = self.try_deliver(item, scope);
        if let (Some(reservation), true) = (reservation, result.is_ok()) {
            reservation.send();
        }
        result
    }

    /// Queues the item for the matching subscriptions in `scope` without waiting; no tap
    /// sees it.
    pub(crate) fn try_deliver(&self, item: T, scope: Scope<'_>) -> Result<(), TryPublishError<T>> {
        match self.try_dispatch(item, false, scope) {
            Ok(_) => Ok(()),
            Err(Attempt::Full(item, _)) | Err(Attempt::BoundFull(item, _)) => {
                Err(TryPublishError::QueueFull(item))
            }
            Err(Attempt::Stopped(item)) => Err(TryPublishError::Stopped(item)),
        }
    }

    /// The attached tap, if it claims the item's route.
    #[inline]
    fn tap_for(&self, item: &T) -> Option<&dyn Tap<T>> {
        let tap = self.tap.get()?;
        tap.claims(item.route()).then_some(&**tap)
    }

    /// Room in the tap for a claimed item (`Ok(None)`: not claimed; `Err`: no room).
    #[inline]
    fn reserve(&self, item: &T) -> Result<Option<Reservation<'_, T>>, ()> {
        match self.tap_for(item) {
            None => Ok(None),
            Some(tap) if tap.reserve() => Ok(Some(Reservation {
                tap,
                item: Some(item.clone()),
            })),
            Some(_) => Err(()),
        }
    }

    /// Takes a slot in a drop-policy subscription's mailbox (and in the component's
    /// bound), making room by policy when full. Returns whether the item goes there.
    fn offer_dropping(&self, route: &Route<T>, policy: OverflowPolicy, priority: Priority) -> bool {
        let evict = policy == OverflowPolicy::DropOldest;
        // Refused by policy: accepted for this subscription, and dropped at once.
        let dropped = || self.dropped.add(1);
        let refused = || {
            self.accepted.add(1);
            self.dropped.add(1);
        };
        let fifo = self.settings.fifo;
        let bound_slot = self
            .bound
            .as_ref()
            .is_none_or(|b| b.reserve(1, b.limit(priority, fifo)));
        if !bound_slot {
            // The component is full: only this subscription's own oldest item can make
            // room (its slots, here and in the bound, pass to the new item), and only
            // one that is not more urgent than the new item.
            if !route.mailbox.is_open() {
                return false;
            }
            if evict && route.mailbox.evict_oldest(priority).is_some() {
                dropped();
                return true;
            }
            refused();
            return false;
        }
        let give_back = || {
            if let Some(bound) = &self.bound {
                bound.release(1, true);
            }
        };
        match route.mailbox.reserve_or_evict(evict, priority) {
            Ok(None) => true,
            Ok(Some(_evicted)) => {
                // The evicted item's bound slot passes to the new one.
                give_back();
                dropped();
                true
            }
            Err(Refused::Full) => {
                give_back();
                refused();
                false
            }
            // Unsubscribed, or closed by a stop that began after the Block pass:
            // drop-policy subscriptions are outside the all-or-nothing rule, and failing
            // the publish now would leave an eviction above without its new item.
            Err(Refused::Closed) => {
                give_back();
                false
            }
        }
    }

    /// One all-or-nothing attempt; see `## Atomic publish` in the module docs.
    fn try_dispatch(
        &self,
        item: T,
        completion: bool,
        scope: Scope<'_>,
    ) -> Result<Option<Arc<Completion>>, Attempt<T>> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(Attempt::Stopped(item));
        }
        let snapshot = self.index.load();
        snapshot.with_routes(item, |routes, item| {
            let priority = item.priority();
            let mut taken = Taken::new(routes.len());
            // Block subscriptions first: all of them or none.
            for (i, route) in routes.iter().enumerate() {
                if route.overflow != OverflowPolicy::Block || !scope.admits(route.group.as_deref())
                {
                    continue;
                }
                match route.mailbox.reserve(priority) {
                    Ok(()) => taken.set(i),
                    // Unsubscribed since the snapshot was taken: not a match any more.
                    Err(Refused::Closed) if route.mailbox.is_cancelled() => {}
                    Err(refused) => {
                        taken.undo(routes);
                        return Err(match refused {
                            Refused::Full => Attempt::Full(item, route.mailbox.clone()),
                            Refused::Closed => Attempt::Stopped(item),
                        });
                    }
                }
            }
            // The component-wide bound: a slot for every Block delivery, all or none.
            if let Some(bound) = &self.bound {
                let needed = (0..routes.len()).filter(|&i| taken.get(i)).count();
                if needed > 0 && !bound.reserve(needed, bound.limit(priority, self.settings.fifo)) {
                    taken.undo(routes);
                    return Err(Attempt::BoundFull(item, needed));
                }
            }
            // Then the subscriptions that drop instead of refusing: they never make the
            // publisher wait, neither for their mailbox nor for the component's bound.
            for (i, route) in routes.iter().enumerate() {
                let policy = route.overflow;
                if policy != OverflowPolicy::Block
                    && scope.admits(route.group.as_deref())
                    && self.offer_dropping(route, policy, priority)
                {
                    taken.set(i);
                }
            }
            let count = (0..routes.len()).filter(|&i| taken.get(i)).count();
            if count > 0 {
                self.accepted.add(count as u64);
            }
            let queued_at = self.settings.metrics.then(|| {
                self.published.add(1);
                quanta::Instant::now()
            });
            if self.history.is_enabled() {
                self.history.record(item.clone());
            }
            let completion = (completion && count > 0).then(|| Completion::new(count));
            let Some(last) = (0..routes.len()).rev().find(|&i| taken.get(i)) else {
                return Ok(completion);
            };
            let priority = item.priority();
            let mut depths = self.depths.as_ref().map(|d| d.acquire(item.route(), count));
            let mut item = Some(item);
            let mut discarded = 0;
            for (i, route) in routes.iter().enumerate() {
                if !taken.get(i) {
                    continue;
                }
                let item = if i == last {
                    item.take().expect("moved once, at the last route")
                } else {
                    item.as_ref().expect("still held").clone()
                };
                let envelope = Envelope {
                    item,
                    queued_at,
                    depth: depths.as_mut().and_then(Iterator::next).unwrap_or_default(),
                    completion: CompletionGuard::new(completion.as_ref()),
                };
                match route.mailbox.push_reserved(envelope, priority) {
                    0 => route.wakeup.for_push(),
                    n => discarded += n,
                }
            }
            if discarded > 0 {
                // Unsubscribed after this publish reserved its slot.
                self.dropped.add(discarded as u64);
            }
            Ok(completion)
        })
    }
}

/// Room a tap gave a claimed item: [`send`](Self::send) uses it; dropped unused (the
/// publish refused, or its future dropped while it waited), it is given back.
struct Reservation<'a, T: 'static> {
    tap: &'a dyn Tap<T>,
    item: Option<T>,
}

impl<T: 'static> Reservation<'_, T> {
    /// The local deliveries of a publish with this reservation (or without one).
    fn scope(reservation: &Option<Self>) -> Scope<'static> {
        match reservation {
            Some(_) => Scope::Plain,
            None => Scope::All,
        }
    }

    /// The local part was accepted: the item goes to the tap.
    fn send(mut self) {
        if let Some(item) = self.item.take() {
            self.tap.send(item);
        }
    }
}

impl<T: 'static> Drop for Reservation<'_, T> {
    fn drop(&mut self) {
        if self.item.is_some() {
            self.tap.cancel();
        }
    }
}

/// A running core: the shared state plus the addresses of its registry and metrics
/// actors.
pub(crate) struct Core<T: Deliverable> {
    shared: Arc<Shared<T>>,
    registry: Addr<Registry<T>>,
    metrics: Addr<MetricsActor<T>>,
}

impl<T: Deliverable> Core<T> {
    /// Starts the registry actor (on the current arbiter) and the worker arbiters.
    pub(crate) fn start(settings: Settings) -> Core<T> {
        crate::util::clock::warm_up();
        let shared = Arc::new(Shared {
            index: ArcSwap::from_pointee(Snapshot::empty()),
            stopping: AtomicBool::new(false),
            history: History::new(settings.history),
            dead_letters: History::new(settings.dead_letters),
            retired: SubStats::default(),
            bound: settings.shared_bound.map(|n| Arc::new(SharedBound::new(n))),
            published: StripedCounter::default(),
            accepted: StripedCounter::default(),
            dropped: Arc::default(),
            depths: settings.track_depths.then(TopicDepths::default),
            tap: OnceLock::new(),
            settings,
        });
        let registry = Registry::new(shared.clone()).start();
        let metrics = MetricsActor::new(&shared).start();
        Core {
            shared,
            registry,
            metrics,
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Adds a subscription whose handler actor runs `handler`; with `group`, as a member
    /// of that consumer group (see the registry's `## Groups`).
    pub(crate) async fn subscribe<H: Invoke<T>>(
        &self,
        pattern: &str,
        group: Option<&str>,
        config: HandlerConfig,
        handler: H,
    ) -> Result<SubscriptionId, SubscribeError> {
        let pattern = Pattern::parse(pattern)?;
        if let Some(group) = group {
            if group.is_empty() || group.chars().any(char::is_whitespace) {
                return Err(SubscribeError::InvalidGroup(group.to_owned()));
            }
        }
        let settings = &self.shared.settings;
        let policy = Policy {
            timeout: config.timeout.unwrap_or(settings.default_timeout),
            max_attempts: if settings.retry && config.retry_on_error {
                config.max_retries.saturating_add(1)
            } else {
                1
            },
            retry_delay: config.retry_delay,
            restart_delay: config.restart_delay,
            error_handler: config.error_handler.clone(),
        };
        let name = config.name.clone();
        let dropped = self.shared.dropped.clone();
        let shared = Arc::downgrade(&self.shared);
        let sink = settings.metrics.then(|| self.metrics.clone().recipient());
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let spawn: registry::Spawn<T> = Box::new(move |args| {
            handler_actor::spawn(
                args.worker,
                Subscription {
                    id: args.id,
                    name,
                    mailbox: args.mailbox,
                    handler,
                    policy,
                    stats: args.stats,
                    shared,
                    restarts_in_a_row: AtomicU32::new(0),
                    removed: args.removed,
                    group: args.group,
                    wake_flag: args.wake_flag,
                    recorder: sink.map(|sink| std::cell::RefCell::new(Recorder::new(sink))),
                    handler_priority: args.handler_priority,
                    run: args.run,
                    dropped,
                    tally: Default::default(),
                },
                started_tx,
            )
        });
        let id = self
            .registry
            .send(Subscribe {
                pattern,
                group: group.map(str::to_owned),
                config,
                spawn,
            })
            .await
            .unwrap_or(Err(SubscribeError::Stopped))?;
        // Return once the handler actor runs: from then on, a wake reaches a started
        // actor (so a worker's woken actors run in handler-priority order). Bounded by
        // `default_timeout` (a worker held by a blocking handler delays the start); an
        // error means the actor never started (its worker stopped). The subscription
        // is in place either way.
        let _ = tokio::time::timeout(self.shared.settings.default_timeout, started).await;
        Ok(id)
    }

    /// Removes a subscription; see [`Unsubscribe`].
    pub(crate) async fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.registry.send(Unsubscribe(id)).await.unwrap_or(false)
    }

    /// Stops the core; see [`Shutdown`]. Returns at once if it was stopped before.
    pub(crate) async fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.registry.send(Shutdown).await;
    }

    /// True once `stop` was called.
    pub(crate) fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn subscriptions(&self) -> usize {
        self.shared.index.load().len()
    }

    /// The name as the index holds it, if it does (see `Snapshot::interned`).
    pub(crate) fn interned(&self, name: &str) -> Option<Arc<str>> {
        self.shared.index.load().interned(name)
    }

    /// The names that exact-name subscriptions listen to.
    pub(crate) fn subscribed_names(&self) -> Vec<String> {
        self.shared
            .index
            .load()
            .exact_names()
            .map(str::to_owned)
            .collect()
    }

    /// Deliveries in flight per route, for routes with some (tracked components only).
    pub(crate) fn depths(&self) -> Vec<(String, u64)> {
        self.shared
            .depths
            .as_ref()
            .map_or_else(Vec::new, |d| d.nonzero().collect())
    }

    /// Per-route depth counters held now (tracked components only).
    pub(crate) fn depth_counters(&self) -> usize {
        self.shared.depths.as_ref().map_or(0, TopicDepths::counters)
    }

    /// Items counted against the component-wide bound (0 without one).
    pub(crate) fn bound_len(&self) -> usize {
        self.shared.bound.as_ref().map_or(0, |b| b.len())
    }

    /// The latest published items, oldest first.
    pub(crate) fn history(&self, limit: usize) -> Vec<T> {
        self.shared.history.latest(limit)
    }

    /// The latest dead letters, oldest first.
    pub(crate) fn dead_letters(&self) -> Vec<HandlerFailure> {
        self.shared.dead_letters.latest(usize::MAX)
    }

    /// Counters over every subscription, current and removed.
    pub(crate) fn stats(&self) -> DeliveryStats {
        self.shared.stats_now()
    }

    /// The metrics actor's figures. After `stop()`, every latency sample is in.
    pub(crate) async fn metrics(&self) -> MetricsSnapshot {
        match self.metrics.send(GetSnapshot(self.shared.clone())).await {
            Ok(snapshot) => snapshot,
            // The metrics actor lives as long as the core: only a stopped System ends it.
            Err(_) => MetricsSnapshot::unavailable(&self.shared),
        }
    }

    /// Queues the item for every matching subscription without waiting.
    pub(crate) fn try_publish(&self, item: T) -> Result<(), TryPublishError<T>> {
        self.shared.try_publish(item)
    }

    /// Attaches a link to other processes (see `tap`): false if one is attached already,
    /// or the registry is gone (the component stopped).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) async fn attach(&self, tap: Arc<dyn Tap<T>>) -> bool {
        self.registry
            .send(registry::Attach(tap))
            .await
            .unwrap_or(false)
    }

    /// Delivers an item that came from another process to the matching subscriptions in
    /// `scope`, waiting up to `default_timeout` for room, like [`publish`](Self::publish);
    /// no tap sees it.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) async fn deliver(&self, item: T, scope: Scope<'_>) -> Result<(), PublishError<T>> {
        self.publish_in(item, scope, None).await
    }

    /// Delivers an item that came from another process like [`deliver`](Self::deliver),
    /// then waits, without a bound, until every subscription that took it is done with it
    /// (whatever `enable_async_processing` says): what a durable topic acknowledges by.
    #[cfg(feature = "cluster")]
    pub(crate) async fn deliver_settled(
        &self,
        item: T,
        scope: Scope<'_>,
    ) -> Result<Settled, PublishError<T>> {
        match self.accept(item, scope, None, true).await? {
            None => Ok(Settled::Nobody),
            Some(completion) => {
                completion.wait().await;
                Ok(match completion.discarded() {
                    0 => Settled::Done,
                    _ => Settled::Discarded,
                })
            }
        }
    }

    /// Queues the item, waiting up to `default_timeout` for room; with
    /// `wait_for_handlers`, then waits until every matching handler finished it, up to
    /// `default_timeout` more.
    pub(crate) async fn publish(&self, item: T) -> Result<(), PublishError<T>> {
        match self.shared.reserve(&item) {
            Ok(reservation) => {
                let scope = Reservation::scope(&reservation);
                self.publish_in(item, scope, reservation).await
            }
            Err(()) => Err(PublishError::ClusterUnavailable(item)),
        }
    }

    /// [`accept`](Self::accept), then with `wait_for_handlers` the wait for the handlers.
    async fn publish_in(
        &self,
        item: T,
        scope: Scope<'_>,
        reservation: Option<Reservation<'_, T>>,
    ) -> Result<(), PublishError<T>> {
        let settings = &self.shared.settings;
        // A handle on the item, in case it must be handed back after being accepted.
        let copy = settings.wait_for_handlers.then(|| item.clone());
        let accepted = self
            .accept(item, scope, reservation, settings.wait_for_handlers)
            .await?;
        let Some(completion) = accepted else {
            return Ok(());
        };
        match tokio::time::timeout(settings.default_timeout, completion.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(PublishError::HandlerTimeout(
                copy.expect("kept for synchronous dispatch"),
            )),
        }
    }

    /// Queues the item in `scope`, waiting up to `default_timeout` for room; with
    /// `completion`, returns what counts the deliveries down (none if no subscription
    /// took it). `reservation`: the tap's room for a claimed item, used (the item sent)
    /// as soon as the local part is accepted, before any wait for handlers; given back if
    /// the publish fails or this future is dropped first.
    async fn accept(
        &self,
        mut item: T,
        scope: Scope<'_>,
        mut reservation: Option<Reservation<'_, T>>,
        completion: bool,
    ) -> Result<Option<Arc<Completion>>, PublishError<T>> {
        let settings = &self.shared.settings;
        // Read from the clock only once the item has to wait: most never do.
        let mut deadline = None;
        let mut wait_until = || {
            *deadline.get_or_insert_with(|| {
                tokio::time::Instant::from_std(Instant::now() + settings.default_timeout)
            })
        };
        loop {
            match self.shared.try_dispatch(item, completion, scope) {
                Ok(accepted) => {
                    if let Some(reservation) = reservation.take() {
                        reservation.send();
                    }
                    return Ok(accepted);
                }
                Err(Attempt::Stopped(back)) => return Err(PublishError::Stopped(back)),
                Err(Attempt::Full(back, mailbox)) => {
                    item = back;
                    let wait = mailbox.wait_for_room(item.priority());
                    if tokio::time::timeout_at(wait_until(), wait).await.is_err() {
                        return Err(PublishError::QueueFull(item));
                    }
                }
                Err(Attempt::BoundFull(back, needed)) => {
                    item = back;
                    let bound = self.shared.bound.as_ref().expect("a bound refused");
                    let limit = bound.limit(item.priority(), settings.fifo);
                    if needed > limit {
                        // More matching deliveries than the whole queue may hold.
                        return Err(PublishError::QueueFull(item));
                    }
                    let wait = bound.wait_for_room(needed, limit);
                    if tokio::time::timeout_at(wait_until(), wait).await.is_err() {
                        return Err(PublishError::QueueFull(item));
                    }
                }
            }
        }
    }
}

/// How a delivery of [`Core::deliver_settled`] ended.
#[cfg(feature = "cluster")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Every subscription that took it handled it, or made it a dead letter.
    Done,
    /// At least one discarded it unhandled (it unsubscribed, a drop policy evicted it,
    /// or a stop gave up on it).
    Discarded,
    /// No subscription in the scope took it.
    Nobody,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_stopped_component_whose_handles_are_dropped_frees_its_state() {
        let core: Core<crate::Event> = Core::start(Settings {
            workers: 1,
            capacity: 16,
            fifo: false,
            default_timeout: Duration::from_secs(30),
            wait_for_handlers: false,
            history: 100,
            retry: true,
            dead_letters: 100,
            shared_bound: None,
            metrics: true,
            track_depths: false,
        });
        let handler = handler::AsyncFn(|_: crate::Event| std::future::ready(Ok(())));
        core.subscribe("a", None, HandlerConfig::new("a"), handler)
            .await
            .unwrap();
        core.publish(crate::Event::new("a", serde_json::json!(1)))
            .await
            .unwrap();
        let _ = core.metrics().await;
        let state = Arc::downgrade(&core.shared);
        core.stop().await;
        drop(core);
        // The registry actor lets go when it stops, and the metrics actor holds no
        // strong reference: the state (history, dead letters, index) goes.
        let deadline = Instant::now() + Duration::from_secs(60);
        while state.upgrade().is_some() {
            assert!(
                Instant::now() < deadline,
                "the component's state was not freed"
            );
            actix_rt::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
