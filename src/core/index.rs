//! The subscription index: which subscriptions a name goes to.
//!
//! Publishers read an immutable [`Snapshot`] through an [`ArcSwap`] (a few atomic
//! operations, no lock, never blocked by a writer). The registry actor that owns the
//! subscriptions builds a new snapshot on every subscribe or unsubscribe and swaps it in.
//!
//! A snapshot holds the exact-name subscriptions in a hash map and the wildcard ones in a
//! list. Because matching a name against many patterns costs a scan, each snapshot caches
//! the result per name in a lock-free map ([`papaya`]), up to [`CACHE_CAPACITY`] names
//! and [`CACHE_BYTES`] bytes of names (past that, names are matched on every publish). A
//! new snapshot starts with an empty cache, so the cache can never be stale.
//!
//! Routes are ordered by handler priority (highest first), then by subscription order:
//! the order in which an event is pushed to the matching mailboxes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::Recipient;
use arc_swap::ArcSwap;

use super::handler_actor::Wake;
use super::mailbox::PriorityMailbox;
use super::supervision::{OverflowPolicy, SubStats};
use super::tap::GroupKey;
use super::wake::{self, Consumer, Roster, WakeFlag};
use super::worker::RunQueue;
use crate::item::{Deliverable, SubscriptionId};
use crate::{Pattern, Priority};

/// The hasher of the index's maps: foldhash, several times cheaper than SipHash on short
/// names (the lookup is on every publish), seeded per process.
type Hasher = foldhash::fast::RandomState;

/// Names cached per snapshot.
pub const CACHE_CAPACITY: usize = 4096;
/// Bytes of names cached per snapshot.
pub const CACHE_BYTES: usize = 256 * 1024;

/// How a publisher wakes one consumer: its coalesced flag and its address.
#[derive(Clone)]
pub(crate) struct Waker {
    pub(crate) flag: Arc<WakeFlag>,
    pub(crate) recipient: Arc<Recipient<Wake>>,
    /// The worker arbiter the consumer runs on (its index).
    pub(crate) worker: usize,
    /// The consumer's handler priority, and its worker's run queue: a worker with
    /// handlers of several priorities wakes them in that order (see `worker`).
    pub(crate) priority: Priority,
    pub(crate) run: Arc<RunQueue>,
}

impl Waker {
    /// Wakes the consumer unless its flag says it is already scheduled or running
    /// ([`wake::wake`]). True if it sent a `Wake`.
    pub(crate) fn wake(&self) -> bool {
        wake::wake(self)
    }
}

impl Consumer for Waker {
    fn flag(&self) -> &WakeFlag {
        &self.flag
    }

    fn worker(&self) -> usize {
        self.worker
    }

    /// `do_send` ignores the actor mailbox's capacity, which is safe here: the flag
    /// allows at most one `Wake` in flight per consumer. If the actor is gone its
    /// subscription is being removed.
    #[inline]
    fn send_wake(&self) {
        self.run.wake(self.priority, &self.recipient);
    }
}

/// How a publisher wakes the consumer(s) of a route after pushing an item.
#[derive(Clone)]
pub(crate) enum Wakeup {
    /// A subscription's one handler actor: woken unless its flag is raised.
    One(Waker),
    /// A consumer group's members, from the live list (see `wake`).
    Group(Arc<Members>),
}

impl Wakeup {
    /// Wakes a consumer for an item just pushed, if one is needed.
    pub(crate) fn for_push(&self) {
        match self {
            Wakeup::One(one) => {
                one.wake();
            }
            Wakeup::Group(members) => members.wake_for_push(),
        }
    }
}

/// The current members of a consumer group: the [`Roster`] the wake protocol reads (the
/// registry replaces the list as members join and leave, through [`wake::join`] and
/// [`wake::leave`]).
///
/// Each member holds the list, and the list holds each member's address: a member's
/// actor lives until it leaves the list (or its worker stops), not when the registry
/// drops its own addresses.
#[derive(Default)]
pub(crate) struct Members(ArcSwap<Vec<Waker>>);

impl Members {
    /// Wakes a member for an item just pushed, if one is needed ([`wake::wake_one`]).
    pub(crate) fn wake_for_push(&self) {
        wake::wake_one(self);
    }
}

impl Roster for Members {
    type Member = Waker;
    type List = arc_swap::Guard<Arc<Vec<Waker>>>;
    type New = Vec<Waker>;

    #[inline]
    fn load(&self) -> Self::List {
        self.0.load()
    }

    #[inline]
    fn members<'a>(&'a self, list: &'a Self::List) -> &'a [Waker] {
        list
    }

    fn replace(&self, new: Vec<Waker>) {
        self.0.store(Arc::new(new));
    }
}

/// What a publisher needs to deliver to one subscription.
pub(crate) struct Route<T> {
    pub(crate) id: SubscriptionId,
    pub(crate) handler_priority: Priority,
    pub(crate) mailbox: Arc<PriorityMailbox<T>>,
    /// How to wake its handler actor (or its group's members).
    pub(crate) wakeup: Wakeup,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) stats: Arc<SubStats>,
    /// The consumer group's pattern and name (`None`: a plain subscription).
    pub(crate) group: Option<Arc<GroupKey>>,
}

type Routes<T> = Arc<[Arc<Route<T>>]>;

/// An immutable view of the subscriptions.
pub(crate) struct Snapshot<T> {
    exact: HashMap<Arc<str>, Routes<T>, Hasher>,
    patterns: Vec<(Pattern, Arc<Route<T>>)>,
    cache: papaya::HashMap<Arc<str>, Routes<T>, Hasher>,
    /// Bytes of the names in `cache` (a bound, approximate under concurrent inserts).
    cached_bytes: AtomicUsize,
    empty: Routes<T>,
    /// Counters of subscriptions whose routes are gone but whose counts are not yet
    /// folded into the component's totals: removed ones whose handler is finishing, and
    /// after a stop, every subscription it ended.
    retained: Vec<Arc<SubStats>>,
}

impl<T> Snapshot<T> {
    /// A snapshot of the given subscriptions.
    pub(crate) fn build<'a>(
        subs: impl IntoIterator<Item = (&'a Pattern, &'a Arc<Route<T>>)>,
    ) -> Self
    where
        T: 'a,
    {
        let mut exact: HashMap<Arc<str>, Vec<Arc<Route<T>>>> = HashMap::new();
        let mut patterns = Vec::new();
        for (pattern, route) in subs {
            if pattern.is_exact() {
                exact
                    .entry(pattern.as_str().into())
                    .or_default()
                    .push(route.clone());
            } else {
                patterns.push((pattern.clone(), route.clone()));
            }
        }
        Snapshot {
            exact: exact
                .into_iter()
                .map(|(name, mut routes)| {
                    sort(&mut routes);
                    (name, routes.into())
                })
                .collect(),
            patterns,
            cache: papaya::HashMap::with_hasher(Hasher::default()),
            cached_bytes: AtomicUsize::new(0),
            empty: Arc::from(Vec::new()),
            retained: Vec::new(),
        }
    }

    /// An empty snapshot.
    pub(crate) fn empty() -> Self {
        Snapshot::build(std::iter::empty())
    }

    /// Keeps these counters readable (see the field `retained`).
    pub(crate) fn retaining(mut self, stats: Vec<Arc<SubStats>>) -> Self {
        self.retained = stats;
        self
    }

    /// The counters kept by [`retaining`](Self::retaining).
    pub(crate) fn retained_stats(&self) -> &[Arc<SubStats>] {
        &self.retained
    }

    /// Calls `f` with the routes of the subscriptions that match the item's route, in
    /// delivery order, and the item.
    pub(crate) fn with_routes<R>(&self, item: T, f: impl FnOnce(&[Arc<Route<T>>], T) -> R) -> R
    where
        T: Deliverable,
    {
        if self.patterns.is_empty() {
            let routes = self.exact.get(item.route()).unwrap_or(&self.empty);
            return f(routes, item);
        }
        let cache = self.cache.pin();
        if let Some(routes) = cache.get(item.route()) {
            return f(routes, item);
        }
        let routes = self.compute(item.route());
        let bytes = item.route().len();
        if cache.len() < CACHE_CAPACITY
            && self.cached_bytes.load(Ordering::Relaxed) + bytes <= CACHE_BYTES
        {
            self.cached_bytes.fetch_add(bytes, Ordering::Relaxed);
            cache.insert(item.route().into(), routes.clone());
        }
        f(&routes, item)
    }

    /// The name as the snapshot holds it (an exact subscription's, or a cached one's),
    /// so that an item made for it can share it instead of copying it.
    pub(crate) fn interned(&self, name: &str) -> Option<Arc<str>> {
        if let Some((key, _)) = self.exact.get_key_value(name) {
            return Some(key.clone());
        }
        if self.patterns.is_empty() {
            return None;
        }
        self.cache
            .pin()
            .get_key_value(name)
            .map(|(key, _)| key.clone())
    }

    fn compute(&self, name: &str) -> Routes<T> {
        let mut routes: Vec<Arc<Route<T>>> =
            self.exact.get(name).map_or_else(Vec::new, |r| r.to_vec());
        routes.extend(
            self.patterns
                .iter()
                .filter(|(p, _)| p.matches(name))
                .map(|(_, r)| r.clone()),
        );
        sort(&mut routes);
        routes.into()
    }

    /// The names of the exact-name (wildcard-free) subscriptions.
    pub(crate) fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.exact.keys().map(|name| &**name)
    }

    /// Every subscription in the snapshot, once each.
    pub(crate) fn routes(&self) -> impl Iterator<Item = &Arc<Route<T>>> {
        self.exact
            .values()
            .flat_map(|routes| routes.iter())
            .chain(self.patterns.iter().map(|(_, route)| route))
    }

    /// Subscriptions in the snapshot.
    pub(crate) fn len(&self) -> usize {
        self.exact.values().map(|r| r.len()).sum::<usize>() + self.patterns.len()
    }
}

fn sort<T>(routes: &mut [Arc<Route<T>>]) {
    routes.sort_by(|a, b| {
        b.handler_priority
            .cmp(&a.handler_priority)
            .then(a.id.cmp(&b.id))
    });
}

/// The index publishers read: the current snapshot behind an [`ArcSwap`].
pub(crate) type Index<T> = ArcSwap<Snapshot<T>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::handler_actor::Wake;
    use crate::core::wake::{Activity, Choice};
    use actix::prelude::*;

    struct Nop;
    impl Actor for Nop {
        type Context = Context<Self>;
    }
    impl Handler<Wake> for Nop {
        type Result = ();
        fn handle(&mut self, _: Wake, _: &mut Context<Self>) {}
    }

    fn push(mailbox: &PriorityMailbox<u64>, n: u64) {
        use crate::core::completion::CompletionGuard;
        use crate::core::mailbox::Envelope;
        mailbox.reserve(Priority::Normal).unwrap();
        let envelope = Envelope {
            item: n,
            queued_at: None,
            depth: Default::default(),
            completion: CompletionGuard::new(None),
        };
        mailbox.push_reserved(envelope, Priority::Normal);
    }

    fn waker(recipient: &Recipient<Wake>, worker: usize) -> Waker {
        Waker {
            flag: Arc::default(),
            recipient: Arc::new(recipient.clone()),
            worker,
            priority: Priority::Normal,
            run: Arc::default(),
        }
    }

    fn members(n: usize, recipient: &Recipient<Wake>) -> Vec<Waker> {
        (0..n).map(|i| waker(recipient, i)).collect()
    }

    fn activities(members: &[Waker]) -> Vec<Activity> {
        members.iter().map(|m| m.flag.activity()).collect()
    }

    #[actix_rt::test]
    async fn a_group_wakes_one_idle_member_per_push_or_backlog_and_none_while_one_searches() {
        use Activity::{Busy, Idle, Left, Searching, Woken};
        let recipient = Nop.start().recipient();
        let m = members(3, &recipient);
        let group = Arc::new(Members::default());
        group.replace(m.clone());
        let wakeup = Wakeup::Group(group.clone());
        wakeup.for_push();
        assert_eq!(activities(&m), [Woken, Idle, Idle], "the first idle one");
        m[0].flag.date_wake(-60_000); // well within the grace, however slow this test
        wakeup.for_push();
        assert_eq!(activities(&m), [Woken, Idle, Idle], "0 is on its way");
        // Woken longer ago than the grace: its worker is held up, wake the next.
        m[0].flag.date_wake(1);
        wakeup.for_push();
        assert_eq!(
            activities(&m),
            [Woken, Woken, Idle],
            "0 is held up: the next"
        );
        assert!(m[0].flag.shift(Woken, Searching));
        assert!(m[1].flag.shift(Woken, Busy));
        wakeup.for_push();
        assert_eq!(activities(&m), [Searching, Busy, Idle], "0 will see it");
        assert!(m[0].flag.shift(Searching, Busy));
        wakeup.for_push();
        assert_eq!(
            activities(&m),
            [Busy, Busy, Woken],
            "none searching: an idle one"
        );
        wakeup.for_push();
        assert_eq!(
            activities(&m),
            [Busy, Busy, Woken],
            "none idle: they look later"
        );

        // An idle member on a worker where another is busy may not run soon: one on a
        // free worker is preferred (here 0 and 1 share a worker).
        let shared: Vec<Waker> = [0, 0, 1]
            .into_iter()
            .map(|worker| waker(&recipient, worker))
            .collect();
        assert!(shared[0].flag.raise() && shared[0].flag.shift(Woken, Busy));
        group.replace(shared.clone());
        group.wake_for_push();
        assert_eq!(activities(&shared), [Busy, Idle, Woken], "worker 1 is free");

        // A member woken just now on a worker where another member is busy is not on its
        // way: that worker may be held by the busy member's synchronous handler, and a
        // burst within the grace would wait for it. A push wakes one on a free worker.
        let held: Vec<Waker> = [0, 0, 1]
            .into_iter()
            .map(|worker| waker(&recipient, worker))
            .collect();
        assert!(held[0].flag.raise() && held[0].flag.shift(Woken, Busy));
        assert!(held[1].flag.raise());
        held[1].flag.date_wake(-60_000);
        group.replace(held.clone());
        group.wake_for_push();
        assert_eq!(
            activities(&held),
            [Busy, Woken, Woken],
            "1 shares busy 0's worker: 2 is woken"
        );
        // On a worker of its own, a member woken just now is on its way.
        let apart: Vec<Waker> = [0, 1, 2]
            .into_iter()
            .map(|worker| waker(&recipient, worker))
            .collect();
        assert!(apart[0].flag.raise() && apart[0].flag.shift(Woken, Busy));
        assert!(apart[1].flag.raise());
        apart[1].flag.date_wake(-60_000);
        group.replace(apart.clone());
        group.wake_for_push();
        assert_eq!(activities(&apart), [Busy, Woken, Idle], "1 is on its way");

        // A member that takes the last item wakes nobody; one that leaves a backlog wakes
        // the first idle member.
        let mailbox = PriorityMailbox::<u64>::new(4, false);
        let m = members(2, &recipient);
        group.replace(m.clone());
        assert!(m[0].flag.raise() && m[0].flag.shift(Woken, Searching));
        wake::took_item(&m[0].flag, &mailbox, &*group);
        assert_eq!(activities(&m), [Busy, Idle]);
        assert!(m[0].flag.shift(Busy, Searching));
        push(&mailbox, 7);
        wake::took_item(&m[0].flag, &mailbox, &*group);
        assert_eq!(activities(&m), [Busy, Woken], "the backlog is handed on");

        // A list holding a member that left is stale: the publisher rereads the live
        // list (which the registry replaced before marking the member).
        let departed = members(1, &recipient);
        let current = members(1, &recipient);
        departed[0].flag.set_left();
        group.replace(current.clone());
        assert_eq!(wake::scan(&departed), Choice::Stale);
        assert_eq!(activities(&current), [Idle], "the stale list wakes nobody");
        group.wake_for_push();
        assert_eq!(activities(&current), [Woken], "the live list does");

        // A member never overwrites `Left`, and does not go idle with it.
        let gone = &departed[0].flag;
        assert!(!gone.shift(Searching, Busy) && !gone.raise());
        assert!(!wake::go_idle(gone, &mailbox));
        assert_eq!(gone.activity(), Left);

        // A plain subscription: woken once, whatever it does after.
        let one = Wakeup::One(members(1, &recipient).remove(0));
        let Wakeup::One(waker) = &one else {
            unreachable!()
        };
        one.for_push();
        assert_eq!(waker.flag.activity(), Woken);
        assert!(!waker.wake(), "already raised");
    }

    fn ids(snapshot: &Snapshot<crate::Event>, name: &'static str) -> Vec<u64> {
        let item = crate::Event::new(name, serde_json::Value::Null);
        snapshot.with_routes(item, |routes, _| routes.iter().map(|r| r.id.0).collect())
    }

    #[actix_rt::test]
    async fn routes_by_handler_priority_then_subscription_order_and_cached() {
        let waker = Nop.start().recipient();
        let subs: Vec<(Pattern, Arc<Route<crate::Event>>)> = [
            (1, "a.b", Priority::Low),
            (2, "a.*", Priority::Critical),
            (3, "a.b", Priority::Critical),
            (4, "a.>", Priority::Normal),
            (5, "x", Priority::High),
        ]
        .into_iter()
        .map(|(id, p, prio)| {
            let route = Arc::new(Route {
                group: None,
                id: SubscriptionId(id),
                handler_priority: prio,
                mailbox: Arc::new(PriorityMailbox::new(4, false)),
                wakeup: Wakeup::One(super::tests::waker(&waker, 0)),
                overflow: OverflowPolicy::Block,
                stats: Arc::default(),
            });
            (Pattern::parse(p).unwrap(), route)
        })
        .collect();
        let snapshot = Snapshot::build(subs.iter().map(|(p, r)| (p, r)));
        assert_eq!(snapshot.len(), 5);
        assert_eq!(snapshot.routes().count(), 5);
        assert_eq!(ids(&snapshot, "a.b"), [2, 3, 4, 1]);
        assert_eq!(snapshot.cache.len(), 1);
        assert_eq!(ids(&snapshot, "a.b"), [2, 3, 4, 1], "from the cache");
        assert_eq!(ids(&snapshot, "a.b.c"), [4]);
        assert_eq!(ids(&snapshot, "x"), [5]);
        assert_eq!(ids(&snapshot, "nothing"), Vec::<u64>::new());
        assert_eq!(snapshot.cache.len(), 4);
    }

    #[actix_rt::test]
    async fn the_cache_is_bounded_in_bytes_as_well_as_names() {
        let recipient = Nop.start().recipient();
        let route = Arc::new(Route {
            group: None,
            id: SubscriptionId(1),
            handler_priority: Priority::Normal,
            mailbox: Arc::new(PriorityMailbox::new(4, false)),
            wakeup: Wakeup::One(waker(&recipient, 0)),
            overflow: OverflowPolicy::Block,
            stats: Arc::default(),
        });
        let pattern = Pattern::parse("a.>").unwrap();
        let snapshot: Snapshot<crate::Event> = Snapshot::build([(&pattern, &route)]);
        let long = "x".repeat(crate::MAX_NAME_BYTES - 10);
        for n in 0..CACHE_CAPACITY {
            let item = crate::Event::new(format!("a.{n}.{long}"), serde_json::Value::Null);
            assert_eq!(snapshot.with_routes(item, |routes, _| routes.len()), 1);
        }
        let names = snapshot.cache.len();
        assert!(names < CACHE_CAPACITY, "{names} long names cached");
        let bytes: usize = snapshot.cache.pin().keys().map(|k| k.len()).sum();
        assert!(bytes <= CACHE_BYTES, "{bytes} bytes cached");
        assert!(
            bytes > CACHE_BYTES - crate::MAX_NAME_BYTES,
            "the budget is used"
        );
    }
}
