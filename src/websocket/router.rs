//! The hub's router: which sessions are subscribed to which patterns, and which sessions
//! a topic goes to (each topic's `seq` is in [`History`](super::history::History)). A
//! plain struct, with no actor in it: the hub
//! owns one and asks it; sessions are named by the hub's `u64` keys.
//!
//! ## Routing
//!
//! A subscription is a [`Pattern`] (an exact topic is a pattern without wildcards), held
//! by the text it was written with: `market.*` and `market.tick` are two subscriptions,
//! and unsubscribing names the pattern as subscribed. [`route`](Router::route) gives the
//! sessions a topic goes to in ascending key order, each once however many of its
//! patterns match, and whether that session gets the topic conflated: a subscription
//! made with `"conflate": true` is, and a session gets a topic conflated when every one
//! of its subscriptions that matches it is (one that wants every message wins). Routes are cached per topic until the subscriptions change; so are the
//! topics that go to nobody, in a map of their own so that a flood of names nobody
//! listens to never evicts the routes in use. Both caches are bounded ([`Bounds`]): one
//! that fills up is cleared.
//!
//! ## Bounds
//!
//! A session holds at most [`MAX_SUBSCRIPTIONS`] subscriptions; past that,
//! [`subscribe`](Router::subscribe) answers
//! [`TooManySubscriptions`](ClientSubscribeError::TooManySubscriptions). The router keeps
//! nothing for a session without subscriptions, nor for a pattern without subscribers:
//! once every session unsubscribed or was removed, it holds no entry but cached topics.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::protocol::MAX_SUBSCRIPTIONS;
use super::topics::TopicMap;
use super::ClientSubscribeError;
use crate::Pattern;

/// How much a [`Router`] holds at most. [`Bounds::default`] is what the hub runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Subscriptions one session may hold.
    pub(crate) subscriptions: usize,
    /// Topics whose routes are cached, and bytes of their names.
    pub(crate) routes: (usize, usize),
    /// Likewise for topics that go to no session.
    pub(crate) unrouted: (usize, usize),
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            subscriptions: MAX_SUBSCRIPTIONS,
            routes: (10_000, 1 << 20),
            unrouted: (4096, 256 << 10),
        }
    }
}

/// A session a topic goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Routed {
    /// The session's key.
    pub(crate) key: u64,
    /// Whether the session gets the topic conflated (see the module docs).
    pub(crate) conflate: bool,
}

/// See the module docs.
pub(crate) struct Router {
    bounds: Bounds,
    /// Pattern as written → (parsed, subscribed sessions). No pattern has an empty set.
    patterns: HashMap<Box<str>, (Pattern, HashSet<u64>)>,
    /// Session → the patterns it is subscribed to, as written, each with whether it is
    /// conflated: the same pairs as `patterns`, the other way round. No session has an
    /// empty map.
    sessions: HashMap<u64, HashMap<Box<str>, bool>>,
    /// Topic → the sessions it goes to, ascending, for topics with at least one; cleared
    /// on every subscription change.
    routes: TopicMap<Rc<[Routed]>>,
    /// Topics that go to no session; cleared likewise.
    unrouted: TopicMap<()>,
    /// The empty route.
    no_route: Rc<[Routed]>,
}

impl Router {
    /// An empty router with the hub's bounds.
    pub(crate) fn new() -> Self {
        Router::with_bounds(Bounds::default())
    }

    /// An empty router with these bounds.
    pub(crate) fn with_bounds(bounds: Bounds) -> Self {
        Router {
            bounds,
            patterns: HashMap::new(),
            sessions: HashMap::new(),
            routes: TopicMap::new(bounds.routes.0, bounds.routes.1),
            unrouted: TopicMap::new(bounds.unrouted.0, bounds.unrouted.1),
            no_route: Rc::from(Vec::new()),
        }
    }

    /// Subscribes session `key` to `pattern`, conflated or not (`None`: as it is, for a
    /// subscription the session has; not, for a new one). Ok(true) if the subscription
    /// is new, Ok(false) if the session had it already (even at the bound: its
    /// `conflate` is then updated when given); an error if the session holds
    /// [`Bounds::subscriptions`] others.
    pub(crate) fn subscribe(
        &mut self,
        key: u64,
        pattern: &Pattern,
        conflate: Option<bool>,
    ) -> Result<bool, ClientSubscribeError> {
        let text = pattern.as_str();
        if let Some(flag) = self
            .sessions
            .get_mut(&key)
            .and_then(|mine| mine.get_mut(text))
        {
            if let Some(conflate) = conflate {
                if std::mem::replace(flag, conflate) != conflate {
                    self.routes_changed();
                }
            }
            return Ok(false);
        }
        let conflate = conflate.unwrap_or(false);
        if self.sessions.get(&key).map_or(0, HashMap::len) >= self.bounds.subscriptions {
            return Err(ClientSubscribeError::TooManySubscriptions(
                self.bounds.subscriptions,
            ));
        }
        self.sessions
            .entry(key)
            .or_default()
            .insert(text.into(), conflate);
        match self.patterns.get_mut(text) {
            Some((_, keys)) => {
                keys.insert(key);
            }
            None => {
                self.patterns
                    .insert(text.into(), (pattern.clone(), HashSet::from([key])));
            }
        }
        self.routes_changed();
        Ok(true)
    }

    /// Removes session `key`'s subscription to `pattern` (as subscribed). False if it
    /// had none.
    pub(crate) fn unsubscribe(&mut self, key: u64, pattern: &str) -> bool {
        let Some(mine) = self.sessions.get_mut(&key) else {
            return false;
        };
        if mine.remove(pattern).is_none() {
            return false;
        }
        if mine.is_empty() {
            self.sessions.remove(&key);
        }
        forget_subscriber(&mut self.patterns, pattern, key);
        self.routes_changed();
        true
    }

    /// Removes every subscription of session `key`. Answers how many it had.
    pub(crate) fn remove_session(&mut self, key: u64) -> usize {
        let Some(mine) = self.sessions.remove(&key) else {
            return 0;
        };
        for pattern in mine.keys() {
            forget_subscriber(&mut self.patterns, pattern, key);
        }
        self.routes_changed();
        mine.len()
    }

    /// Patterns with at least one subscriber (the `topics_count` metric).
    pub(crate) fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// The sessions `topic` (a valid name) goes to, in ascending key order, each once,
    /// with whether it gets the topic conflated. Cheap to clone: the hub iterates it
    /// while it queues to the sessions.
    pub(crate) fn route(&mut self, topic: &str) -> Rc<[Routed]> {
        if let Some(route) = self.routes.get(topic) {
            return route.clone();
        }
        if self.unrouted.get(topic).is_some() {
            return self.no_route.clone();
        }
        let sessions = &self.sessions;
        let mut matched: Vec<Routed> = self
            .patterns
            .iter()
            .filter(|(_, (pattern, _))| pattern.matches(topic))
            .flat_map(|(text, (_, keys))| {
                keys.iter().map(move |&key| Routed {
                    key,
                    conflate: sessions
                        .get(&key)
                        .and_then(|mine| mine.get(text))
                        .copied()
                        .unwrap_or(false),
                })
            })
            .collect();
        matched.sort_unstable_by_key(|routed| routed.key);
        // One per session, conflated only if all of its matching subscriptions are.
        matched.dedup_by(|later, kept| {
            let same = later.key == kept.key;
            if same {
                kept.conflate &= later.conflate;
            }
            same
        });
        if matched.is_empty() {
            if self.unrouted.is_full(topic) {
                self.unrouted.clear();
            }
            self.unrouted.insert(topic, ());
            return self.no_route.clone();
        }
        let route: Rc<[Routed]> = matched.into();
        if self.routes.is_full(topic) {
            self.routes.clear();
        }
        self.routes.insert(topic, route.clone());
        route
    }

    /// Whether any subscription matches `topic`.
    pub(crate) fn is_subscribed(&self, topic: &str) -> bool {
        self.patterns
            .values()
            .any(|(pattern, _)| pattern.matches(topic))
    }

    /// The subscriptions changed: every cached route may be wrong.
    fn routes_changed(&mut self) {
        self.routes.clear();
        self.unrouted.clear();
    }
}

/// Takes session `key` off `pattern`'s subscribers, and the pattern off the registry
/// when none is left.
fn forget_subscriber(
    patterns: &mut HashMap<Box<str>, (Pattern, HashSet<u64>)>,
    pattern: &str,
    key: u64,
) {
    if let Some((_, keys)) = patterns.get_mut(pattern) {
        keys.remove(&key);
        if keys.is_empty() {
            patterns.remove(pattern);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    /// A router with `subscriptions` = (session, pattern) pairs.
    fn router_with(subscriptions: &[(u64, &str)]) -> Router {
        let mut router = Router::new();
        for &(key, text) in subscriptions {
            assert_eq!(
                router.subscribe(key, &pattern(text), None),
                Ok(true),
                "{key} {text}"
            );
        }
        router
    }

    fn route(router: &mut Router, topic: &str) -> Vec<u64> {
        router
            .route(topic)
            .iter()
            .map(|routed| routed.key)
            .collect()
    }

    /// What the router holds: (patterns, sessions, cached routes, cached unrouted topics).
    fn held(router: &Router) -> (usize, usize, usize, usize) {
        (
            router.patterns.len(),
            router.sessions.len(),
            router.routes.len(),
            router.unrouted.len(),
        )
    }

    #[test]
    fn exact_and_wildcard_subscriptions_route_to_their_sessions() {
        let mut router = router_with(&[
            (1, "market.tick"),
            (2, "market.*"),
            (3, "market.>"),
            (4, "*.tick"),
        ]);
        assert_eq!(route(&mut router, "market.tick"), [1, 2, 3, 4]);
        assert_eq!(route(&mut router, "market.trade"), [2, 3]);
        assert_eq!(route(&mut router, "market.tick.btc"), [3]);
        assert_eq!(route(&mut router, "fx.tick"), [4]);
        assert_eq!(route(&mut router, "market"), [] as [u64; 0]);
        assert_eq!(route(&mut router, "fx.rate"), [] as [u64; 0]);
        assert_eq!(router.pattern_count(), 4);
    }

    #[test]
    fn a_session_matching_through_several_patterns_is_routed_once() {
        let mut router = router_with(&[
            (7, "market.*"),
            (7, "market.>"),
            (7, "market.tick"),
            (3, "market.>"),
        ]);
        assert_eq!(route(&mut router, "market.tick"), [3, 7]);
        assert_eq!(route(&mut router, "market.tick.btc"), [3, 7]);
    }

    #[test]
    fn recipients_come_in_ascending_key_order() {
        // Subscribed in another order, and through patterns the map iterates in any order.
        let mut router = router_with(&[(9, ">"), (2, "a.b"), (5, "a.*"), (1, "*.b"), (4, "a.>")]);
        assert_eq!(route(&mut router, "a.b"), [1, 2, 4, 5, 9]);
    }

    #[test]
    fn subscribing_twice_is_one_subscription() {
        let mut router = Router::new();
        assert_eq!(router.subscribe(1, &pattern("a.*"), None), Ok(true));
        assert_eq!(router.subscribe(1, &pattern("a.*"), None), Ok(false));
        assert_eq!(router.sessions[&1].len(), 1);
        assert_eq!(route(&mut router, "a.b"), [1]);
        assert!(router.unsubscribe(1, "a.*"));
        assert_eq!(route(&mut router, "a.b"), [] as [u64; 0]);
        assert!(!router.unsubscribe(1, "a.*"), "one unsubscribe undoes both");
    }

    #[test]
    fn unsubscribe_takes_off_that_pattern_of_that_session_only() {
        let mut router = router_with(&[(1, "a.*"), (1, "a.b"), (2, "a.*")]);
        assert!(router.unsubscribe(1, "a.*"));
        assert_eq!(route(&mut router, "a.b"), [1, 2]);
        assert_eq!(route(&mut router, "a.c"), [2]);
        assert!(!router.unsubscribe(1, "a.>"), "not subscribed to it");
        assert!(!router.unsubscribe(1, "a.*"), "not any more");
        assert!(!router.unsubscribe(3, "a.*"), "an unknown session");
        // By the text as subscribed: `a.b` is not `a.*`, though `a.*` matches it.
        assert!(!router.unsubscribe(2, "a.b"));
        assert_eq!(router.pattern_count(), 2);
        assert!(router.unsubscribe(1, "a.b"));
        assert!(router.unsubscribe(2, "a.*"));
        assert_eq!(held(&router), (0, 0, 0, 0), "nothing left, caches cleared");
    }

    #[test]
    fn removing_a_session_releases_all_its_entries() {
        let mut router = router_with(&[(1, "a.*"), (1, "a.b"), (1, "x"), (2, "a.*")]);
        assert_eq!(route(&mut router, "a.b"), [1, 2]);
        assert_eq!(route(&mut router, "nobody"), [] as [u64; 0]);
        assert_eq!(held(&router), (3, 2, 1, 1));
        assert_eq!(router.remove_session(1), 3);
        assert_eq!(held(&router), (1, 1, 0, 0), "a.* is left, for session 2");
        assert_eq!(route(&mut router, "a.b"), [2]);
        assert_eq!(route(&mut router, "x"), [] as [u64; 0]);
        assert_eq!(router.remove_session(1), 0, "removed already");
        assert_eq!(router.remove_session(2), 1);
        assert_eq!(router.remove_session(3), 0, "never subscribed");
        assert_eq!(held(&router), (0, 0, 0, 0));
        assert_eq!(router.pattern_count(), 0);
        assert_eq!(route(&mut router, "a.b"), [] as [u64; 0]);
    }

    #[test]
    fn a_cached_route_follows_every_subscription_change() {
        let mut router = Router::new();
        assert_eq!(route(&mut router, "a"), [] as [u64; 0]);
        assert_eq!(held(&router), (0, 0, 0, 1), "cached as going to nobody");
        router.subscribe(2, &pattern("a"), None).unwrap();
        assert_eq!(route(&mut router, "a"), [2]);
        router.subscribe(1, &pattern(">"), None).unwrap();
        assert_eq!(route(&mut router, "a"), [1, 2]);
        assert_eq!(held(&router), (2, 2, 1, 0), "cached as going to 1 and 2");
        assert!(router.unsubscribe(2, "a"));
        assert_eq!(route(&mut router, "a"), [1]);
        router.remove_session(1);
        assert_eq!(route(&mut router, "a"), [] as [u64; 0]);
    }

    #[test]
    fn a_session_holds_at_most_the_bound_of_subscriptions() {
        let mut router = Router::with_bounds(Bounds {
            subscriptions: 2,
            ..Bounds::default()
        });
        assert_eq!(router.subscribe(1, &pattern("a"), None), Ok(true));
        assert_eq!(router.subscribe(1, &pattern("b"), None), Ok(true));
        assert_eq!(
            router.subscribe(1, &pattern("c"), None),
            Err(ClientSubscribeError::TooManySubscriptions(2))
        );
        assert_eq!(
            router.subscribe(1, &pattern("a"), None),
            Ok(false),
            "held already"
        );
        assert_eq!(
            router.subscribe(2, &pattern("c"), None),
            Ok(true),
            "per session"
        );
        assert_eq!(route(&mut router, "c"), [2]);
        assert!(router.unsubscribe(1, "b"));
        assert_eq!(
            router.subscribe(1, &pattern("c"), None),
            Ok(true),
            "room again"
        );
        assert_eq!(route(&mut router, "c"), [1, 2]);
    }

    #[test]
    fn the_hubs_subscription_bound_is_max_subscriptions() {
        let mut router = Router::new();
        for n in 0..MAX_SUBSCRIPTIONS {
            assert_eq!(
                router.subscribe(1, &pattern(&format!("t.{n}")), None),
                Ok(true)
            );
        }
        assert_eq!(
            router.subscribe(1, &pattern("one.more"), None),
            Err(ClientSubscribeError::TooManySubscriptions(
                MAX_SUBSCRIPTIONS
            ))
        );
        assert_eq!(router.sessions[&1].len(), 1024);
        assert_eq!(router.remove_session(1), 1024);
        assert_eq!(held(&router), (0, 0, 0, 0));
    }

    #[test]
    fn a_refused_subscribe_leaves_nothing_behind() {
        let mut router = Router::with_bounds(Bounds {
            subscriptions: 0,
            ..Bounds::default()
        });
        assert_eq!(
            router.subscribe(1, &pattern("a"), None),
            Err(ClientSubscribeError::TooManySubscriptions(0))
        );
        assert_eq!(held(&router), (0, 0, 0, 0));
    }

    #[test]
    fn route_caches_are_cleared_when_full() {
        let mut router = Router::with_bounds(Bounds {
            routes: (2, 1000),
            unrouted: (100, 5),
            ..Bounds::default()
        });
        router.subscribe(1, &pattern("r.>"), None).unwrap();
        assert_eq!(route(&mut router, "r.a"), [1]);
        assert_eq!(route(&mut router, "r.b"), [1]);
        assert_eq!(router.routes.len(), 2);
        assert_eq!(route(&mut router, "r.c"), [1]);
        assert_eq!(router.routes.len(), 1, "two entries: cleared for the third");
        assert_eq!(route(&mut router, "r.a"), [1], "computed again");
        assert_eq!(router.routes.len(), 2);
        // The unrouted cache, by the bytes of its names: 4 + 4 > 5.
        assert_eq!(route(&mut router, "xxxx"), [] as [u64; 0]);
        assert_eq!(route(&mut router, "yyyy"), [] as [u64; 0]);
        assert_eq!((router.unrouted.len(), router.unrouted.bytes()), (1, 4));
        assert_eq!(router.routes.len(), 2, "the routes in use stay");
    }

    #[test]
    fn a_topic_is_conflated_for_a_session_only_if_all_its_matching_subscriptions_are() {
        let mut router = Router::new();
        let routed = |router: &mut Router, topic: &str| -> Vec<(u64, bool)> {
            router
                .route(topic)
                .iter()
                .map(|r| (r.key, r.conflate))
                .collect()
        };
        router.subscribe(1, &pattern("px.*"), Some(true)).unwrap();
        router.subscribe(2, &pattern("px.a"), None).unwrap();
        assert_eq!(routed(&mut router, "px.a"), [(1, true), (2, false)]);
        router.subscribe(1, &pattern("px.a"), None).unwrap();
        assert_eq!(routed(&mut router, "px.a"), [(1, false), (2, false)]);
        assert_eq!(routed(&mut router, "px.b"), [(1, true)]);
        // Given again: the flag changes (and the cached routes with it); None keeps it.
        assert_eq!(router.subscribe(1, &pattern("px.a"), Some(true)), Ok(false));
        assert_eq!(routed(&mut router, "px.a"), [(1, true), (2, false)]);
        assert_eq!(router.subscribe(1, &pattern("px.*"), None), Ok(false));
        assert_eq!(routed(&mut router, "px.b"), [(1, true)]);
        assert!(router.unsubscribe(1, "px.a"));
        assert_eq!(routed(&mut router, "px.a"), [(1, true), (2, false)]);
    }
}
