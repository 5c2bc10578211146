//! The subscription index: which subscriptions a name goes to.
//!
//! Publishers read an immutable [`Snapshot`] through an [`ArcSwap`] (a few atomic
//! operations, no lock, never blocked by a writer). The registry actor that owns the
//! subscriptions builds a new snapshot on every subscribe or unsubscribe and swaps it in.
//!
//! A snapshot holds the exact-name subscriptions in a hash map and the wildcard ones in a
//! list. Because matching a name against many patterns costs a scan, each snapshot caches
//! the result per name in a lock-free map ([`papaya`]), up to [`CACHE_CAPACITY`] names
//! (past that, names are matched on every publish). A new snapshot starts with an empty
//! cache, so the cache can never be stale.
//!
//! Routes are ordered by handler priority (highest first), then by subscription order:
//! the order in which an event is pushed to the matching mailboxes.

use std::collections::HashMap;
use std::sync::Arc;

use actix::Recipient;
use arc_swap::ArcSwap;

use super::handler_actor::Wake;
use super::mailbox::{PriorityMailbox, WakeFlag};
use super::supervision::{OverflowPolicy, SubStats};
use super::Deliverable;
use crate::{Pattern, Priority};

/// Names cached per snapshot.
pub const CACHE_CAPACITY: usize = 4096;

/// Identifies a subscription; returned by `subscribe`, given to `unsubscribe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct SubscriptionId(pub(crate) u64);

impl SubscriptionId {
    /// The number behind the id (unique per component, increasing).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sub-{}", self.0)
    }
}

/// How a publisher wakes one consumer: its coalesced flag and its address.
#[derive(Clone)]
pub(crate) struct Waker {
    pub(crate) flag: Arc<WakeFlag>,
    pub(crate) recipient: Recipient<Wake>,
}

impl Waker {
    /// Wakes the consumer unless its flag says it is already scheduled or running.
    /// `do_send` ignores the actor mailbox's capacity, which is safe here: the flag
    /// allows at most one `Wake` in flight per consumer. If the actor is gone its
    /// subscription is being removed.
    pub(crate) fn wake(&self) -> bool {
        let woken = self.flag.raise();
        if woken {
            self.recipient.do_send(Wake);
        }
        woken
    }
}

/// Wakes the consumer(s) of a mailbox an item was just pushed to: a subscription's
/// actor unless it is awake; for a group, no member while one is searching, else the
/// first idle one (see the mailbox docs). When every member is busy, the first to
/// finish takes the item.
pub(crate) fn wake_for_push(wakers: &[Waker]) {
    match wakers {
        [one] => {
            one.wake();
        }
        members => {
            if members.iter().any(|m| m.flag.is_searching()) {
                return;
            }
            let _ = members.iter().any(Waker::wake);
        }
    }
}

/// The current members of a consumer group, for its members to wake one another (the
/// registry replaces the list as members join and leave).
#[derive(Default)]
pub(crate) struct Members(ArcSwap<Vec<Waker>>);

impl Members {
    /// Replaces the list.
    pub(crate) fn set(&self, members: Vec<Waker>) {
        self.0.store(Arc::new(members));
    }

    /// [`wake_for_push`] on the current members.
    pub(crate) fn wake_for_push(&self) {
        wake_for_push(&self.0.load());
    }

    /// The member whose flag is `own` stops searching (it took an item, or it leaves):
    /// publishers now wake another member for new items, and if items wait in `mailbox`
    /// already, this wakes one (unless another member is searching).
    pub(crate) fn stop_searching<T>(&self, own: &WakeFlag, mailbox: &PriorityMailbox<T>) {
        own.set_busy();
        if mailbox.has_items_after_fence() {
            self.wake_for_push();
        }
    }
}

/// What a publisher needs to deliver to one subscription.
pub(crate) struct Route<T> {
    pub(crate) id: SubscriptionId,
    pub(crate) handler_priority: Priority,
    pub(crate) mailbox: Arc<PriorityMailbox<T>>,
    /// The handler actors to wake (every member of a group).
    pub(crate) wakers: Box<[Waker]>,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) stats: Arc<SubStats>,
}

type Routes<T> = Arc<[Arc<Route<T>>]>;

/// An immutable view of the subscriptions.
pub(crate) struct Snapshot<T> {
    exact: HashMap<Box<str>, Routes<T>>,
    patterns: Vec<(Pattern, Arc<Route<T>>)>,
    cache: papaya::HashMap<Box<str>, Routes<T>>,
    empty: Routes<T>,
}

impl<T> Snapshot<T> {
    /// A snapshot of the given subscriptions.
    pub(crate) fn build<'a>(
        subs: impl IntoIterator<Item = (&'a Pattern, &'a Arc<Route<T>>)>,
    ) -> Self
    where
        T: 'a,
    {
        let mut exact: HashMap<Box<str>, Vec<Arc<Route<T>>>> = HashMap::new();
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
            cache: papaya::HashMap::new(),
            empty: Arc::from(Vec::new()),
        }
    }

    /// An empty snapshot.
    pub(crate) fn empty() -> Self {
        Snapshot::build(std::iter::empty())
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
        if cache.len() < CACHE_CAPACITY {
            cache.insert(item.route().into(), routes.clone());
        }
        f(&routes, item)
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
        use crate::core::mailbox::{CompletionGuard, DepthGuard, Envelope};
        mailbox.reserve(Priority::Normal).unwrap();
        let envelope = Envelope {
            item: n,
            queued_at: None,
            depth: DepthGuard::new(None),
            completion: CompletionGuard::new(None),
        };
        mailbox.push_reserved(envelope, Priority::Normal);
    }

    /// Which members are searching.
    fn searching(members: &[Waker]) -> Vec<bool> {
        members.iter().map(|m| m.flag.is_searching()).collect()
    }

    #[actix_rt::test]
    async fn a_group_wakes_one_idle_member_per_push_or_backlog_and_none_while_one_searches() {
        let recipient = Nop.start().recipient();
        let members: Vec<Waker> = (0..3)
            .map(|_| Waker {
                flag: Arc::default(),
                recipient: recipient.clone(),
            })
            .collect();
        wake_for_push(&members);
        assert_eq!(
            searching(&members),
            [true, false, false],
            "the first idle one"
        );
        wake_for_push(&members);
        assert_eq!(
            searching(&members),
            [true, false, false],
            "it will see the item"
        );
        members[0].flag.set_busy();
        wake_for_push(&members);
        assert_eq!(
            searching(&members),
            [false, true, false],
            "0 is busy: the next"
        );
        members[1].flag.set_busy();
        members[2].flag.set_busy();
        wake_for_push(&members);
        assert_eq!(
            searching(&members),
            [false, false, false],
            "all busy: the first to finish takes it"
        );
        members[2].flag.set_searching();
        let group = Members::default();
        group.set(members.clone());
        group.wake_for_push();
        assert_eq!(searching(&members), [false, false, true]);
        let mailbox = PriorityMailbox::<u64>::new(4, false);
        // Member 2 takes the last item: it wakes nobody.
        group.stop_searching(&members[2].flag, &mailbox);
        assert_eq!(searching(&members), [false, false, false]);
        // Member 2 takes an item and more wait: it wakes the first idle member.
        let idle: Vec<Waker> = (0..2)
            .map(|_| Waker {
                flag: Arc::default(),
                recipient: recipient.clone(),
            })
            .collect();
        let group = Members::default();
        group.set(idle.clone());
        assert!(idle[0].flag.raise());
        push(&mailbox, 7);
        group.stop_searching(&idle[0].flag, &mailbox);
        assert_eq!(searching(&idle), [false, true], "the backlog is handed on");
        // A plain subscription: woken once, whatever it does after.
        let one = [Waker {
            flag: Arc::default(),
            recipient,
        }];
        assert!(one[0].wake());
        assert!(!one[0].wake(), "already raised");
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
                id: SubscriptionId(id),
                handler_priority: prio,
                mailbox: Arc::new(PriorityMailbox::new(4, false)),
                wakers: Box::new([Waker {
                    flag: Arc::default(),
                    recipient: waker.clone(),
                }]),
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
}
