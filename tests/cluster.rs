//! The cluster against a real nats-server (started on a free port by `common::nats`):
//! nodes are Clusters with components of their own, in one test process (one of them,
//! in one test, in an actix System of its own on another thread).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::eventually;
use common::nats::Nats;
use futures_util::StreamExt;
use serde_json::json;
use tickwire::cluster::{Cluster, ClusterConfig, ClusterError, LinkState};
use tickwire::{
    EventBus, EventBusConfig, MessageQueue, MessageQueueConfig, Priority, PublishError,
    TryPublishError,
};

const SAFETY: Duration = Duration::from_secs(60);
/// The outage test's `max_buffered`.
const MAX_BUFFERED: usize = 64;

fn config(nats: &Nats, node: &str) -> ClusterConfig {
    ClusterConfig {
        nats_url: nats.url.clone(),
        node: Some(node.into()),
        prefix: "t".into(),
        event_bus: vec!["market.>".into(), "market.tick".into()],
        message_queue: vec!["orders.>".into()],
        connect_timeout: Duration::from_secs(10),
        ..ClusterConfig::default()
    }
}

/// One node: a cluster with an EventBus and a MessageQueue attached.
struct Node {
    cluster: Cluster,
    bus: EventBus,
    mq: MessageQueue,
}

async fn node(config: ClusterConfig) -> Node {
    let cluster = Cluster::connect(config).await.expect("connects");
    let bus = EventBus::start(EventBusConfig::default()).unwrap();
    let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
    cluster.attach_event_bus(&bus).await.unwrap();
    cluster.attach_message_queue(&mq).await.unwrap();
    Node { cluster, bus, mq }
}

impl Node {
    async fn stop(self) {
        self.cluster.close().await;
        self.bus.stop().await;
        self.mq.stop().await;
    }
}

/// What a handler saw: (name, data["n"], data["from"], priority, id).
type Seen = Arc<Mutex<Vec<(String, u64, String, Priority, u64)>>>;

fn recorder() -> Seen {
    Arc::default()
}

fn record(seen: &Seen, name: &str, data: &serde_json::Value, priority: Priority, id: u64) {
    seen.lock().unwrap().push((
        name.to_owned(),
        data["n"].as_u64().unwrap(),
        data["from"].as_str().unwrap().to_owned(),
        priority,
        id,
    ));
}

fn len(seen: &Seen) -> usize {
    seen.lock().unwrap().len()
}

#[actix_rt::test]
async fn events_reach_every_node_once_the_publishing_one_included_and_local_names_stay_local() {
    let nats = Nats::start();
    let a = node(config(&nats, "a")).await;
    let b = node(config(&nats, "b")).await;
    // On each node, one subscription to the whole space and one exact: `market.tick` is
    // matched by both configured patterns, and must still arrive once per subscription.
    let mut seen = BTreeMap::new();
    for (name, n) in [("a", &a), ("b", &b)] {
        for pattern in ["market.>", "market.tick", "system.>"] {
            let s = recorder();
            let r = s.clone();
            n.bus
                .subscribe(pattern, move |e| {
                    record(&r, e.name(), e.data(), e.priority(), e.id());
                    std::future::ready(Ok(()))
                })
                .await
                .unwrap();
            seen.insert((name, pattern), s);
        }
    }
    a.cluster.sync().await.unwrap();
    b.cluster.sync().await.unwrap();
    const N: u64 = 300;
    let mut ids = BTreeMap::new();
    for n in 0..N {
        for (from, node) in [("a", &a), ("b", &b)] {
            let priority = [
                Priority::Low,
                Priority::Normal,
                Priority::High,
                Priority::Critical,
            ][(n % 4) as usize];
            let event =
                tickwire::create_event("market.tick", json!({"n": n, "from": from}), priority);
            ids.insert((from.to_owned(), n), (event.id(), priority));
            node.bus.publish(event).await.unwrap();
            // Not clustered: stays on its node.
            let local =
                tickwire::create_event("system.note", json!({"n": n, "from": from}), priority);
            node.bus.publish(local).await.unwrap();
        }
    }
    for node in ["a", "b"] {
        for pattern in ["market.>", "market.tick"] {
            let s = &seen[&(node, pattern)];
            eventually(
                &format!("{node} {pattern}: {} events", 2 * N),
                SAFETY,
                || len(s) >= 2 * N as usize,
            )
            .await;
        }
        eventually("system events", SAFETY, || {
            len(&seen[&(node, "system.>")]) >= N as usize
        })
        .await;
    }
    a.cluster.sync().await.unwrap();
    b.cluster.sync().await.unwrap();
    for node in ["a", "b"] {
        for pattern in ["market.>", "market.tick"] {
            let got = seen[&(node, pattern)].lock().unwrap().clone();
            assert_eq!(
                got.len(),
                2 * N as usize,
                "{node} {pattern}: each event once"
            );
            let mut from_each = BTreeMap::<String, Vec<u64>>::new();
            for (name, n, from, priority, id) in got {
                assert_eq!(name, "market.tick");
                let (want_id, want_priority) = ids[&(from.clone(), n)];
                assert_eq!(
                    (id, priority),
                    (want_id, want_priority),
                    "id and priority carried"
                );
                from_each.entry(from).or_default().push(n);
            }
            for (from, mut ns) in from_each {
                ns.sort_unstable();
                assert_eq!(
                    ns,
                    (0..N).collect::<Vec<_>>(),
                    "{node} {pattern}: all of {from}'s, once"
                );
            }
        }
        let local = seen[&(node, "system.>")].lock().unwrap().clone();
        assert_eq!(
            local.len(),
            N as usize,
            "{node}: only its own system events"
        );
        assert!(local.iter().all(|(_, _, from, _, _)| from == node));
    }
    let (ma, mb) = (a.cluster.metrics(), b.cluster.metrics());
    assert_eq!(
        (ma.link, mb.link),
        (LinkState::Connected, LinkState::Connected)
    );
    // Each node sent its own, and delivered the other's to its two subscriptions (one
    // delivery per received item: the overlap of the patterns costs nothing twice).
    assert_eq!((ma.published, mb.published), (N, N));
    assert_eq!((ma.received, mb.received), (N, N));
    assert_eq!((ma.malformed, ma.refused, ma.buffered), (0, 0, 0));
    a.stop().await;
    b.stop().await;
}

#[actix_rt::test]
async fn a_consumer_group_spans_nodes_each_message_once_and_plain_subscribers_get_all() {
    let nats = Nats::start();
    let a = node(config(&nats, "a")).await;
    let b = node(config(&nats, "b")).await;
    let group: Arc<Mutex<Vec<(String, String, u64)>>> = Arc::default();
    for (name, n) in [("a", &a), ("b", &b)] {
        for _ in 0..2 {
            let g = group.clone();
            n.mq.subscribe_group("orders.>", "routers", move |m| {
                let from = m.data()["from"].as_str().unwrap().to_owned();
                g.lock()
                    .unwrap()
                    .push((name.to_owned(), from, m.data()["n"].as_u64().unwrap()));
                std::future::ready(Ok(()))
            })
            .await
            .unwrap();
        }
    }
    let plain: BTreeMap<&str, Seen> = [("a", recorder()), ("b", recorder())].into_iter().collect();
    for (name, n) in [("a", &a), ("b", &b)] {
        let r = plain[name].clone();
        n.mq.subscribe("orders.new", move |m| {
            record(&r, m.topic(), m.data(), m.priority(), m.id());
            std::future::ready(Ok(()))
        })
        .await
        .unwrap();
    }
    a.cluster.sync().await.unwrap();
    b.cluster.sync().await.unwrap();
    const N: u64 = 1_000;
    // Two publishers at once, one on each node.
    let publish = |n: &Node, from: &'static str| {
        let mq = n.mq.clone();
        async move {
            for i in 0..N {
                mq.publish(
                    "orders.new",
                    json!({"n": i, "from": from}),
                    Priority::Normal,
                )
                .await
                .unwrap();
            }
        }
    };
    futures_util::join!(publish(&a, "a"), publish(&b, "b"));
    eventually("the group handled every order", SAFETY, || {
        group.lock().unwrap().len() >= 2 * N as usize
    })
    .await;
    for name in ["a", "b"] {
        eventually("plain subscribers got every order", SAFETY, || {
            len(&plain[name]) >= 2 * N as usize
        })
        .await;
    }
    a.cluster.sync().await.unwrap();
    b.cluster.sync().await.unwrap();
    let handled = group.lock().unwrap().clone();
    assert_eq!(
        handled.len(),
        2 * N as usize,
        "each order once across the nodes"
    );
    let mut by_origin = BTreeMap::<String, Vec<u64>>::new();
    let mut by_node = BTreeMap::<String, usize>::new();
    for (node, from, n) in handled {
        by_origin.entry(from).or_default().push(n);
        *by_node.entry(node).or_default() += 1;
    }
    for (from, mut ns) in by_origin {
        ns.sort_unstable();
        assert_eq!(
            ns,
            (0..N).collect::<Vec<_>>(),
            "all of {from}'s orders, once"
        );
    }
    // The NATS queue group shares the work: 2,000 orders all on one node would be a
    // group that does not span.
    assert_eq!(
        by_node.len(),
        2,
        "both nodes' members took orders: {by_node:?}"
    );
    for name in ["a", "b"] {
        let got = plain[name].lock().unwrap().clone();
        assert_eq!(got.len(), 2 * N as usize, "{name}: every order once");
    }

    // The group's members on b leave: from then on a's take everything.
    b.mq.stop().await;
    b.cluster.sync().await.unwrap();
    let before = group.lock().unwrap().len();
    for i in 0..100 {
        a.mq.publish(
            "orders.new",
            json!({"n": i, "from": "late"}),
            Priority::Normal,
        )
        .await
        .unwrap();
    }
    eventually("a's members took the late orders", SAFETY, || {
        group.lock().unwrap().len() >= before + 100
    })
    .await;
    let late: Vec<_> = group.lock().unwrap()[before..].to_vec();
    assert!(
        late.iter().all(|(node, _, _)| node == "a"),
        "a stopped node gets nothing"
    );
    a.stop().await;
    b.cluster.close().await;
    b.bus.stop().await;
}

/// On node `n` (named `name`): a subscription to `market.tick` recording into `seen`,
/// and a member of group `routers` on `orders.>` recording into `group`; then a sync.
async fn ticks_and_routers(n: &Node, name: &'static str, seen: Seen, group: Handled) {
    n.bus
        .subscribe("market.tick", move |e| {
            record(&seen, e.name(), e.data(), e.priority(), e.id());
            std::future::ready(Ok(()))
        })
        .await
        .unwrap();
    n.mq.subscribe_group("orders.>", "routers", move |m| {
        let number = m.data()["n"].as_u64().unwrap();
        group
            .lock()
            .unwrap()
            .push((name.to_owned(), "a".to_owned(), number));
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    n.cluster.sync().await.unwrap();
}

#[actix_rt::test]
async fn nodes_in_two_actix_systems_of_one_process_share_events_and_a_group() {
    let nats = Nats::start();
    // Node b lives in an actix System of its own, on its own thread, as a second app
    // embedding tickwire in the same process would.
    let b_config = config(&nats, "b");
    let events: BTreeMap<&str, Seen> = [("a", recorder()), ("b", recorder())].into_iter().collect();
    let group: Handled = Arc::default();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
    let (seen_b, group_b) = (events["b"].clone(), group.clone());
    let system_b = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let b = node(b_config).await;
            ticks_and_routers(&b, "b", seen_b, group_b).await;
            ready_tx.send(()).unwrap();
            let _ = stopped.await;
            b.stop().await;
            let _ = done_tx.send(());
        })
    });
    let a = node(config(&nats, "a")).await;
    ticks_and_routers(&a, "a", events["a"].clone(), group.clone()).await;
    if tokio::time::timeout(SAFETY, ready).await.unwrap().is_err() {
        // b's System ended before it was ready: its own panic says why.
        system_b.join().unwrap();
        unreachable!("b's thread ended without a panic and without being ready");
    }
    const N: u64 = 200;
    for i in 0..N {
        let data = json!({"n": i, "from": "a"});
        let event = tickwire::create_event("market.tick", data.clone(), Priority::High);
        a.bus.publish(event).await.unwrap();
        a.mq.publish("orders.new", data, Priority::Normal)
            .await
            .unwrap();
    }
    eventually("every event on both nodes, every order", SAFETY, || {
        len(&events["a"]) >= N as usize
            && len(&events["b"]) >= N as usize
            && group.lock().unwrap().len() >= N as usize
    })
    .await;
    for (name, seen) in &events {
        let mut got: Vec<u64> = seen.lock().unwrap().iter().map(|s| s.1).collect();
        got.sort_unstable();
        assert_eq!(got, (0..N).collect::<Vec<_>>(), "{name}: each event once");
        assert!(seen.lock().unwrap().iter().all(|s| s.3 == Priority::High));
    }
    let expected: Vec<_> = (0..N).map(|n| ("a".to_owned(), n)).collect();
    assert_eq!(every_one_handled(&group, &expected), 0, "each order once");
    for member in ["a", "b"] {
        assert!(
            group
                .lock()
                .unwrap()
                .iter()
                .any(|(node, _, _)| node == member),
            "{member} took part of the group's share"
        );
    }
    stop.send(()).unwrap();
    tokio::time::timeout(SAFETY, done)
        .await
        .expect("b's System stopped")
        .unwrap();
    system_b.join().unwrap();
    a.stop().await;
}

#[actix_rt::test]
async fn what_a_node_received_is_not_sent_again_and_foreign_messages_are_counted() {
    let nats = Nats::start();
    let a = node(config(&nats, "a")).await;
    let b = node(config(&nats, "b")).await;
    let got = recorder();
    let r = got.clone();
    b.bus
        .subscribe("market.>", move |e| {
            record(&r, e.name(), e.data(), e.priority(), e.id());
            std::future::ready(Ok(()))
        })
        .await
        .unwrap();
    // A plain NATS client counts what crosses the wire.
    let raw = async_nats::connect(nats.url.as_str()).await.unwrap();
    let mut wire = raw.subscribe("t.ev.>").await.unwrap();
    raw.flush().await.unwrap();
    b.cluster.sync().await.unwrap();
    for n in 0..50 {
        a.bus
            .publish(tickwire::create_event(
                "market.tick",
                json!({"n": n, "from": "a"}),
                Priority::High,
            ))
            .await
            .unwrap();
    }
    eventually("b got a's events", SAFETY, || len(&got) >= 50).await;
    // A well-formed item that claims b as its origin: b delivered its own at once, so it
    // drops this one, uncounted (the server sends a node none of its own publishes: this
    // is the safety net behind that, e.g. for a server that ignores no_echo).
    let mut own = async_nats::HeaderMap::new();
    own.insert("Tickwire", "7 2 0 b");
    raw.publish_with_headers("t.ev.market.own", own, r#"{"n": 999, "from": "x"}"#.into())
        .await
        .unwrap();
    // Something nobody here sent, on our subjects: no headers, then not JSON.
    raw.publish("t.ev.market.foreign", "{}".into())
        .await
        .unwrap();
    // id 1, priority 2, timestamp 0, origin x: a well-formed header.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Tickwire", "1 2 0 x");
    // A name over MAX_NAME_BYTES, well-formed otherwise: refused like a local publish.
    let long = format!("t.ev.market.{}", "x".repeat(tickwire::MAX_NAME_BYTES));
    raw.publish_with_headers(long, headers.clone(), "{}".into())
        .await
        .unwrap();
    raw.publish_with_headers("t.ev.market.foreign", headers, "{not json".into())
        .await
        .unwrap();
    raw.flush().await.unwrap();
    eventually("b counted the three foreign messages", SAFETY, || {
        b.cluster.metrics().malformed >= 3
    })
    .await;
    // Everything b could have sent back went out before its flush; the marker, sent
    // after both flushes, comes after all of it.
    b.cluster.sync().await.unwrap();
    a.cluster.sync().await.unwrap();
    raw.publish("t.ev.end", "".into()).await.unwrap();
    raw.flush().await.unwrap();
    let mut crossed = Vec::new();
    loop {
        let message = tokio::time::timeout(SAFETY, wire.next())
            .await
            .expect("the marker")
            .expect("the subscription lives");
        if message.subject.as_str() == "t.ev.end" {
            break;
        }
        // The header's fields: id, priority, timestamp, origin.
        let fields: Vec<String> = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Tickwire"))
            .map(|v| v.as_str().split(' ').map(str::to_owned).collect())
            .unwrap_or_default();
        let (id, origin) = (fields.first().cloned(), fields.get(3).cloned());
        crossed.push((message.subject.to_string(), origin, id));
    }
    // a's 50, the one claiming b and the three foreign ones: b sent nothing back.
    assert_eq!(crossed.len(), 54, "{crossed:?}");
    assert_eq!(b.cluster.metrics().published, 0);
    assert_eq!(
        len(&got),
        50,
        "neither the foreign messages nor the one from b were delivered"
    );
    assert_eq!(b.cluster.metrics().malformed, 3, "b's own is not malformed");
    a.stop().await;
    b.stop().await;
}

#[actix_rt::test]
async fn nats_down_local_delivery_goes_on_clustered_publishes_are_buffered_then_refused_and_a_restart_needs_no_step(
) {
    let mut nats = Nats::start();
    let mut cfg = config(&nats, "a");
    cfg.max_buffered = MAX_BUFFERED;
    let a = node(cfg).await;
    let b = node(config(&nats, "b")).await;
    let at_b = recorder();
    let r = at_b.clone();
    b.mq.subscribe("orders.new", move |m| {
        record(&r, m.topic(), m.data(), m.priority(), m.id());
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    let local = recorder();
    let r = local.clone();
    a.mq.subscribe("jobs.local", move |m| {
        record(&r, m.topic(), m.data(), m.priority(), m.id());
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    // A group whose only member is on the publishing node: what a publishes reaches it
    // through NATS, on a's second connection, so every accepted publish must reach it,
    // whichever of a's connections the client brings back first.
    let own = recorder();
    let r = own.clone();
    a.mq.subscribe_group("orders.>", "own", move |m| {
        record(&r, m.topic(), m.data(), m.priority(), m.id());
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    a.cluster.sync().await.unwrap();
    b.cluster.sync().await.unwrap();

    nats.kill();
    eventually("a sees the link down", SAFETY, || {
        a.cluster.metrics().link == LinkState::Disconnected
    })
    .await;
    // Clustered publishes wait (in a's buffer, and in the client's own), then are refused
    // whole, at once.
    let mut accepted = 0u64;
    let refused = loop {
        match a.mq.try_publish(
            "orders.new",
            json!({"n": accepted, "from": "a"}),
            Priority::Normal,
        ) {
            Ok(_) => accepted += 1,
            Err(TryPublishError::ClusterUnavailable(message)) => break message,
            Err(other) => panic!("{other}"),
        }
        assert!(accepted < 1_000_000, "never refused");
        // The pump hands items to the client while it has room: let it run.
        actix_rt::task::yield_now().await;
    };
    assert_eq!(refused.topic(), "orders.new", "the message is handed back");
    // `publish` is refused at once too (it does not wait for NATS).
    let err = loop {
        match a
            .mq
            .publish(
                "orders.new",
                json!({"n": accepted, "from": "a"}),
                Priority::Normal,
            )
            .await
        {
            Ok(_) => accepted += 1,
            Err(err) => break err,
        }
    };
    assert!(matches!(err, PublishError::ClusterUnavailable(_)), "{err}");
    assert!(err.to_string().contains("cluster unavailable"), "{err}");
    let m = a.cluster.metrics();
    assert_eq!(m.link, LinkState::Disconnected);
    assert!(m.buffered <= MAX_BUFFERED as u64, "{m:?}");
    assert_eq!(m.refused, 2);
    assert!(m.disconnects >= 1);
    // Names outside the cluster are delivered as ever.
    for n in 0..20 {
        a.mq.publish("jobs.local", json!({"n": n, "from": "a"}), Priority::Normal)
            .await
            .unwrap();
    }
    eventually("local delivery while NATS is down", SAFETY, || {
        len(&local) >= 20
    })
    .await;

    nats.restart();
    eventually("both links up again", SAFETY, || {
        a.cluster.metrics().link == LinkState::Connected
            && b.cluster.metrics().link == LinkState::Connected
    })
    .await;
    eventually("what waited was sent", SAFETY, || {
        a.cluster.metrics().buffered == 0
    })
    .await;
    a.cluster.sync().await.unwrap();
    b.cluster.sync().await.unwrap();
    assert_eq!(
        a.cluster.metrics().published,
        accepted,
        "every accepted publish was sent"
    );
    // What waited may have reached the server before b re-subscribed (at most once);
    // what is published now reaches b, after whatever of the rest it got.
    for n in 0..10 {
        a.mq.publish(
            "orders.new",
            json!({"n": 1_000_000 + n, "from": "a"}),
            Priority::Normal,
        )
        .await
        .unwrap();
    }
    eventually("b gets what a publishes after the restart", SAFETY, || {
        at_b.lock()
            .unwrap()
            .last()
            .is_some_and(|s| s.1 == 1_000_009)
    })
    .await;
    let ns: Vec<u64> = at_b.lock().unwrap().iter().map(|s| s.1).collect();
    let (waited, after) = ns.split_at(ns.len() - 10);
    assert_eq!(
        after,
        (1_000_000..1_000_010).collect::<Vec<_>>(),
        "in order, once"
    );
    assert!(
        waited.windows(2).all(|w| w[0] < w[1]) && waited.iter().all(|&n| n < accepted),
        "what waited arrived in order, once, if at all: {waited:?}"
    );
    eventually("a's own group got every accepted publish", SAFETY, || {
        len(&own) as u64 >= accepted + 10
    })
    .await;
    let ns: Vec<u64> = own.lock().unwrap().iter().map(|s| s.1).collect();
    let expected: Vec<u64> = (0..accepted).chain(1_000_000..1_000_010).collect();
    assert_eq!(ns, expected, "a's own group: every one, in order, once");
    a.stop().await;
    b.stop().await;
}

#[actix_rt::test]
async fn a_node_name_in_use_is_refused_at_connect_and_free_again_once_its_node_closed() {
    let nats = Nats::start();
    // Something that listens on every node's name and never answers (a debugging
    // `nats sub 't.>'`) is no holder: a waits out its silence, then connects.
    let raw = async_nats::connect(nats.url.as_str()).await.unwrap();
    let mut silent = raw.subscribe("t.node.>").await.unwrap();
    // Its own message back proves the server has the subscription.
    raw.publish("t.node.probe", "".into()).await.unwrap();
    silent.next().await.unwrap();
    let a = node(config(&nats, "a")).await;
    // A second process under the same name would take a's messages for its own and
    // drop them (and a its): refused, with who holds the name.
    let err = Cluster::connect(config(&nats, "a")).await.unwrap_err();
    match &err {
        ClusterError::NodeTaken { node, holder } => {
            assert_eq!(node, "a");
            assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            );
        }
        other => panic!("not NodeTaken: {other}"),
    }
    assert!(
        err.to_string().starts_with("node name \"a\" is taken"),
        "{err}"
    );
    // Names that differ only in what a subject cannot carry are distinct.
    let dotted = Cluster::connect(config(&nats, "a.>")).await.unwrap();
    a.stop().await;
    // Once a closed, its name is free: a node restarted under it connects at once.
    let again = Cluster::connect(config(&nats, "a")).await.unwrap();
    assert_eq!(again.node(), "a");
    again.close().await;
    dotted.close().await;
}

/// Node a with `connect_timeout`, then NATS killed, then one clustered event published
/// on a: it waits for the link.
async fn a_node_with_an_event_waiting(nats: &mut Nats, connect_timeout: Duration) -> Node {
    let a = node(ClusterConfig {
        connect_timeout,
        ..config(nats, "a")
    })
    .await;
    a.cluster.sync().await.unwrap();
    nats.kill();
    eventually("a's link is down", SAFETY, || {
        a.cluster.metrics().link == LinkState::Disconnected
    })
    .await;
    let event = tickwire::create_event("market.tick", json!({"n": 1}), Priority::Normal);
    a.bus.publish(event).await.unwrap();
    assert_eq!(a.cluster.metrics().buffered, 1);
    a
}

#[actix_rt::test]
async fn a_node_closed_while_nats_is_down_does_not_wait_for_the_server() {
    let mut nats = Nats::start();
    let a = a_node_with_an_event_waiting(&mut nats, Duration::from_secs(2)).await;
    // The link gets `connect_timeout` (2 s) to come back for what waits; then no probe
    // of a server that is gone (one gives up after 30 s). The bound is a safety net far
    // from both; a timer never fires early, so the wait for the link is at least 2 s.
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(20), a.cluster.close())
        .await
        .expect("close waited for a server that is down");
    assert!(
        started.elapsed() >= Duration::from_millis(1_900),
        "close did not give the link its connect_timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(a.cluster.metrics().buffered, 0, "handed over, or given up");
    a.bus.stop().await;
    a.mq.stop().await;
}

#[actix_rt::test]
async fn a_link_back_while_its_node_closes_takes_what_waited() {
    let mut nats = Nats::start();
    // What reaches the server on a's subjects is kept, through the restart, by a stream
    // of the test's own: no subscriber has to be back in time to see it.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url.as_str()).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "seen".into(),
        subjects: vec!["t.ev.market.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let a = a_node_with_an_event_waiting(&mut nats, Duration::from_secs(30)).await;
    // a closes while the server is down: the event goes to the client, and the close
    // waits for the link, which comes back.
    let closing = actix_rt::spawn({
        let cluster = a.cluster.clone();
        async move { cluster.close().await }
    });
    eventually("the event handed to the client", SAFETY, || {
        let metrics = a.cluster.metrics();
        metrics.link == LinkState::Closed && metrics.buffered == 0
    })
    .await;
    assert!(!closing.is_finished(), "close did not wait for the link");
    nats.restart();
    tokio::time::timeout(SAFETY, closing)
        .await
        .unwrap()
        .unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url.as_str()).await.unwrap());
    let deadline = std::time::Instant::now() + SAFETY;
    loop {
        let mut seen = js.get_stream("seen").await.unwrap();
        if seen.info().await.unwrap().state.messages == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "what a held when it began to close never reached the server"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    a.bus.stop().await;
    a.mq.stop().await;
}

#[actix_rt::test]
async fn connect_attach_and_close_errors_are_clear() {
    let nats = Nats::start();
    // Nothing listens there (a port the kernel just gave us and we closed).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Cluster::connect(ClusterConfig {
        nats_url: format!("nats://127.0.0.1:{dead}"),
        connect_timeout: Duration::from_secs(2),
        ..ClusterConfig::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ClusterError::Connect { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot connect to NATS at nats://127.0.0.1:"),
        "{err}"
    );
    let err = Cluster::connect(ClusterConfig {
        durable: vec!["trades.>".into()],
        ..config(&nats, "a")
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ClusterError::Config(_)), "{err}");
    // Durable topics on a server without JetStream: refused when the queue attaches.
    let plain = Nats::start_without_jetstream();
    let no_js = Cluster::connect(durable_config(&plain, "a")).await.unwrap();
    let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
    let err = no_js.attach_message_queue(&mq).await.unwrap_err();
    assert!(matches!(err, ClusterError::JetStream { .. }), "{err}");
    assert!(err.to_string().contains("t-durable"), "{err}");
    no_js.close().await;
    mq.stop().await;

    let a = node(config(&nats, "a")).await;
    let other = Cluster::connect(config(&nats, "a2")).await.unwrap();
    let err = other.attach_event_bus(&a.bus).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClusterError::AlreadyAttached {
                component: "EventBus"
            }
        ),
        "{err}"
    );
    let err = a.cluster.attach_message_queue(&a.mq).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClusterError::AlreadyAttached {
                component: "MessageQueue"
            }
        ),
        "{err}"
    );
    other.close().await;

    // Closed: the components are local again, consumer groups included.
    a.cluster.close().await;
    assert_eq!(a.cluster.metrics().link, LinkState::Closed);
    let got = Arc::new(Mutex::new(0u32));
    let g = got.clone();
    a.mq.subscribe_group("orders.>", "routers", move |_| {
        *g.lock().unwrap() += 1;
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    for n in 0..5 {
        a.mq.publish("orders.new", json!({"n": n}), Priority::Normal)
            .await
            .unwrap();
    }
    eventually("the local group got them", SAFETY, || {
        *got.lock().unwrap() >= 5
    })
    .await;
    let fresh = MessageQueue::start(MessageQueueConfig::default()).unwrap();
    assert!(matches!(
        a.cluster.attach_message_queue(&fresh).await,
        Err(ClusterError::Closed)
    ));
    fresh.stop().await;
    a.bus.stop().await;
    a.mq.stop().await;
}

/// A `tickwire serve` child (this build, so with the cluster feature), killed on drop.
struct Serve {
    child: std::process::Child,
    url: String,
}

impl Serve {
    fn start(nats: &Nats, node: &str, dir: &std::path::Path) -> Serve {
        use std::io::BufRead;
        let config = dir.join(format!("{node}.toml"));
        std::fs::write(
            &config,
            format!(
                "[websocket]\nallow_client_publish = true\n\n[cluster]\nnats_url = \"{}\"\n\
                 node = \"{node}\"\nprefix = \"t\"\nmessage_queue = [\"orders.>\"]\n",
                nats.url
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tickwire"))
            .args(["serve", "--bind", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(dir.join(format!("{node}.log"))).unwrap())
            .spawn()
            .expect("spawn tickwire serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        // Printed once the node has joined the cluster.
        let line = rx.recv_timeout(SAFETY).expect("the listening line");
        let url = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_owned();
        Serve {
            child,
            url: format!("ws://{url}/ws"),
        }
    }

    /// SIGTERM, and the exit code.
    fn stop(mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child, not yet waited for.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + SAFETY;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(std::time::Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[actix_rt::test]
async fn websocket_clients_of_one_serve_process_get_what_clients_of_another_published() {
    use tickwire::client::{Client, ClientConfig, SubscribeOptions};
    let nats = Nats::start();
    let dir = std::env::temp_dir().join(format!("tickwire-cluster-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = Serve::start(&nats, "a", &dir);
    let b = Serve::start(&nats, "b", &dir);
    const N: u64 = 100;
    let mut subscriptions = Vec::new();
    let mut clients = Vec::new();
    for server in [&a, &b] {
        let client = Client::connect(ClientConfig::new(server.url.clone()));
        subscriptions.push(
            client
                .subscribe("orders.>", SubscribeOptions::default())
                .await
                .unwrap(),
        );
        clients.push(client);
    }
    // Each node's bridge subscribed at start, and the subscriptions above are acked:
    // what is published from now on reaches both.
    for (client, topic) in [(&clients[0], "orders.a"), (&clients[1], "orders.b")] {
        for n in 0..N {
            client
                .publish(topic, json!({"n": n}), Priority::Normal)
                .await
                .unwrap();
        }
    }
    for (node, sub) in ["a", "b"].into_iter().zip(&mut subscriptions) {
        let mut seen = BTreeMap::<String, Vec<(u64, u64)>>::new();
        for _ in 0..2 * N {
            let d = tokio::time::timeout(SAFETY, sub.recv())
                .await
                .expect("a delivery in time")
                .expect("the subscription is open");
            seen.entry(d.topic)
                .or_default()
                .push((d.seq, d.data["n"].as_u64().unwrap()));
        }
        for topic in ["orders.a", "orders.b"] {
            let want: Vec<(u64, u64)> = (0..N).map(|n| (n + 1, n)).collect();
            assert_eq!(
                seen[topic], want,
                "{node}: {topic} in order, consecutive seq, once"
            );
        }
    }
    // `/metrics` of a node in a cluster: the components' figures and the cluster's.
    let http = a.url.replace("ws://", "http://").replace("/ws", "/metrics");
    let text = awc::Client::new()
        .get(http)
        .send()
        .await
        .unwrap()
        .body()
        .await
        .unwrap();
    let text = String::from_utf8(text.to_vec()).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let sample = |name: &str| match scrape.samples.iter().find(|s| s.metric == name) {
        Some(prometheus_parse::Sample {
            value: prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v),
            ..
        }) => *v,
        other => panic!("{name}: {other:?}\n{text}"),
    };
    assert_eq!(sample("tickwire_cluster_link_connected"), 1.0);
    assert_eq!(sample("tickwire_cluster_link_disconnected"), 0.0);
    assert_eq!(
        sample("tickwire_cluster_published_total"),
        N as f64,
        "a's clients' publishes"
    );
    assert!(
        sample("tickwire_cluster_received_total") >= N as f64,
        "b's, received"
    );
    assert_eq!(sample("tickwire_cluster_refused_total"), 0.0);
    assert!(sample("tickwire_message_queue_messages_published_total") >= N as f64);
    for client in &clients {
        client.close().await;
    }
    assert_eq!(a.stop(), Some(0));
    assert_eq!(b.stop(), Some(0));
    let log = std::fs::read_to_string(dir.join("a.log")).unwrap();
    assert!(
        log.contains("joined the cluster") && log.contains("left the cluster"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `config` with the `jobs.>` topics durable, redelivered after `ack_wait`.
fn durable_config(nats: &Nats, node: &str) -> ClusterConfig {
    ClusterConfig {
        message_queue: vec!["orders.>".into(), "jobs.>".into()],
        durable: vec!["jobs.>".into()],
        ack_wait: Duration::from_secs(3),
        ..config(nats, node)
    }
}

/// What a durable group's members handled: (node, data["from"], data["n"]).
type Handled = Arc<Mutex<Vec<(String, String, u64)>>>;

async fn worker(
    n: &Node,
    node: &'static str,
    group: &str,
    handled: &Handled,
) -> tickwire::SubscriptionId {
    let h = handled.clone();
    n.mq.subscribe_group("jobs.>", group, move |m| {
        let from = m.data()["from"].as_str().unwrap_or_default().to_owned();
        h.lock()
            .unwrap()
            .push((node.to_owned(), from, m.data()["n"].as_u64().unwrap()));
        std::future::ready(Ok(()))
    })
    .await
    .unwrap()
}

/// Each of `expected` handled at least once: the duplicates, if any, as a count.
fn every_one_handled(handled: &Handled, expected: &[(String, u64)]) -> usize {
    let mut counts = BTreeMap::<(String, u64), usize>::new();
    for (_, from, n) in handled.lock().unwrap().iter() {
        *counts.entry((from.clone(), *n)).or_default() += 1;
    }
    for key in expected {
        assert!(counts.contains_key(key), "{key:?} was never handled");
    }
    assert_eq!(
        counts.len(),
        expected.len(),
        "nothing else handled: {counts:?}"
    );
    counts.values().map(|c| c - 1).sum()
}

#[actix_rt::test]
async fn a_durable_group_spans_nodes_acks_after_its_handler_and_keeps_what_waits_for_absent_members(
) {
    let nats = Nats::start();
    let a = node(durable_config(&nats, "a")).await;
    let b = node(durable_config(&nats, "b")).await;
    let handled: Handled = Arc::default();
    let mut members = Vec::new();
    for (name, n) in [("a", &a), ("b", &b)] {
        for _ in 0..2 {
            members.push((name, worker(n, name, "workers", &handled).await));
        }
    }
    // A plain subscription of a durable topic gets every message, as for any topic.
    let plain = recorder();
    let r = plain.clone();
    b.mq.subscribe("jobs.run", move |m| {
        record(&r, m.topic(), m.data(), m.priority(), m.id());
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    // A group whose handler always fails: a dead letter where it was handled, and
    // acknowledged there (not redelivered to another node).
    let once = tickwire::HandlerConfig::new("failing").max_retries(0);
    for n in [&a, &b] {
        n.mq.subscribe_group_with("jobs.fail", "failing", once.clone(), |_| async {
            Err("always".into())
        })
        .await
        .unwrap();
    }
    a.cluster.sync().await.unwrap();
    b.cluster.sync().await.unwrap();

    const N: u64 = 500;
    let publish = |n: &Node, from: &'static str| {
        let mq = n.mq.clone();
        async move {
            for i in 0..N {
                mq.publish("jobs.run", json!({"n": i, "from": from}), Priority::Normal)
                    .await
                    .unwrap();
            }
        }
    };
    futures_util::join!(publish(&a, "a"), publish(&b, "b"));
    // (`workers` take it too: `jobs.>` matches it.)
    a.mq.publish(
        "jobs.fail",
        json!({"n": 0, "from": "fail"}),
        Priority::Normal,
    )
    .await
    .unwrap();
    eventually("the group handled every job", SAFETY, || {
        handled.lock().unwrap().len() > 2 * N as usize
    })
    .await;
    eventually("the plain subscriber got every job", SAFETY, || {
        len(&plain) >= 2 * N as usize
    })
    .await;
    let dead = || async { a.mq.dead_letters().await.len() + b.mq.dead_letters().await.len() };
    let deadline = std::time::Instant::now() + SAFETY;
    while dead().await == 0 {
        assert!(std::time::Instant::now() < deadline, "no dead letter");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let metrics = || (a.cluster.metrics(), b.cluster.metrics());
    eventually("every job and the dead letter acknowledged", SAFETY, || {
        let (ma, mb) = metrics();
        ma.acked + mb.acked >= 2 * N + 2
    })
    .await;
    let mut expected: Vec<_> = ["a", "b"]
        .iter()
        .flat_map(|from| (0..N).map(move |n| (from.to_string(), n)))
        .collect();
    expected.push(("fail".into(), 0));
    let duplicates = every_one_handled(&handled, &expected);
    let (ma, mb) = metrics();
    assert!(
        duplicates as u64 <= ma.redelivered + mb.redelivered,
        "a job handled twice was redelivered: {duplicates} duplicates, {ma:?} {mb:?}"
    );
    assert_eq!(
        ma.stored + mb.stored,
        2 * N + 1,
        "each publish confirmed once"
    );
    assert_eq!(ma.nacked + mb.nacked, 0, "nothing refused back");
    assert_eq!(dead().await, 1, "the failing job is one dead letter");
    let mut by_node = BTreeMap::<String, usize>::new();
    for (node, _, _) in handled.lock().unwrap().iter() {
        *by_node.entry(node.clone()).or_default() += 1;
    }
    assert_eq!(by_node.len(), 2, "both nodes took jobs: {by_node:?}");
    if ma.resent + mb.resent == 0 {
        // (A publish sent again reaches plain subscriptions once per send.)
        assert_eq!(
            len(&plain),
            2 * N as usize,
            "the plain subscriber got each once"
        );
    }

    // Every member leaves: what is published meanwhile waits in JetStream for the group.
    for (name, id) in members {
        let n = if name == "a" { &a } else { &b };
        assert!(n.mq.unsubscribe(id).await);
    }
    a.cluster.sync().await.unwrap();
    b.cluster.sync().await.unwrap();
    handled.lock().unwrap().clear();
    for i in 0..50 {
        a.mq.publish(
            "jobs.run",
            json!({"n": i, "from": "away"}),
            Priority::Normal,
        )
        .await
        .unwrap();
    }
    a.cluster.sync().await.unwrap();
    assert!(
        handled.lock().unwrap().is_empty(),
        "no member: nothing handled"
    );
    worker(&b, "b", "workers", &handled).await;
    eventually("the returning member got what waited", SAFETY, || {
        handled.lock().unwrap().len() >= 50
    })
    .await;
    let away: Vec<_> = (0..50).map(|n| ("away".to_owned(), n)).collect();
    every_one_handled(&handled, &away);
    a.stop().await;
    b.stop().await;
}

#[actix_rt::test]
async fn a_durable_publish_sent_again_while_nats_is_down_is_stored_and_handled_once() {
    let mut nats = Nats::start();
    let a = node(durable_config(&nats, "a")).await;
    let handled: Handled = Arc::default();
    // One member: JetStream delivers in stream order and the member handles in order,
    // so once the last job is handled, every one stored before it was.
    worker(&a, "a", "workers", &handled).await;
    a.cluster.sync().await.unwrap();
    nats.kill();
    eventually("the link is down", SAFETY, || {
        a.cluster.metrics().link == LinkState::Disconnected
    })
    .await;
    for i in 0..10 {
        a.mq.publish("jobs.run", json!({"n": i, "from": "a"}), Priority::Normal)
            .await
            .unwrap();
    }
    // JetStream's confirmation of the first times out (the others wait behind it, in
    // order): it is sent again, with the same id.
    eventually("the unconfirmed publish was sent again", SAFETY, || {
        a.cluster.metrics().resent >= 1
    })
    .await;
    nats.restart();
    a.mq.publish("jobs.run", json!({"n": 10, "from": "a"}), Priority::Normal)
        .await
        .unwrap();
    eventually("every job handled after the restart", SAFETY, || {
        handled.lock().unwrap().iter().any(|(_, _, n)| *n == 10)
    })
    .await;
    eventually("every job confirmed", SAFETY, || {
        a.cluster.metrics().buffered == 0
    })
    .await;
    let expected: Vec<_> = (0..=10).map(|n| ("a".to_owned(), n)).collect();
    assert_eq!(
        every_one_handled(&handled, &expected),
        0,
        "each stored once though sent at least twice: {:?}",
        a.cluster.metrics()
    );
    a.stop().await;
}

/// Publishes `big` (which JetStream can never take) then a small job on `a`'s durable
/// topic: the small one is handled, the big one counted failed at once, and nothing is
/// left waiting (sent again for good, it would hold up the confirmations of every
/// durable publish behind it, the link's buffer would never drain and `close` would
/// wait for it).
async fn one_never_stored_does_not_hold_up_the_next(a: &Node, big: serde_json::Value) {
    let handled: Handled = Arc::default();
    worker(a, "a", "workers", &handled).await;
    a.cluster.sync().await.unwrap();
    a.mq.publish("jobs.run", big, Priority::Normal)
        .await
        .unwrap();
    a.mq.publish("jobs.run", json!({"n": 1, "from": "a"}), Priority::Normal)
        .await
        .unwrap();
    eventually("the job behind it handled", SAFETY, || {
        !handled.lock().unwrap().is_empty()
    })
    .await;
    eventually("nothing waits for NATS", SAFETY, || {
        a.cluster.metrics().buffered == 0
    })
    .await;
    let metrics = a.cluster.metrics();
    assert_eq!(
        (metrics.publish_failed, metrics.stored, metrics.resent),
        (1, 1, 0),
        "the big one given up at once, the small one stored: {metrics:?}"
    );
    assert_eq!(every_one_handled(&handled, &[("a".to_owned(), 1)]), 0);
}

#[actix_rt::test]
async fn a_durable_publish_over_the_servers_max_payload_is_given_up_and_holds_up_nothing() {
    let nats = Nats::start();
    let a = node(durable_config(&nats, "a")).await;
    // nats-server's default max_payload is 1 MiB.
    let pad = "x".repeat(1 << 21);
    one_never_stored_does_not_hold_up_the_next(&a, json!({"n": 0, "from": "a", "pad": pad})).await;
    a.stop().await;
}

#[actix_rt::test]
async fn a_durable_publish_over_the_streams_max_message_size_is_given_up_and_holds_up_nothing() {
    let nats = Nats::start();
    let a = node(durable_config(&nats, "a")).await;
    // An operator's limit on the stream: JetStream refuses the message (error 10054),
    // as it would every time.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url.as_str()).await.unwrap());
    let mut stream = js.get_stream("t-durable").await.unwrap();
    let mut limited = stream.info().await.unwrap().config.clone();
    limited.max_message_size = 512;
    js.update_stream(limited).await.unwrap();
    let pad = "x".repeat(1_024);
    one_never_stored_does_not_hold_up_the_next(&a, json!({"n": 0, "from": "a", "pad": pad})).await;
    a.stop().await;
}

#[actix_rt::test]
async fn a_deleted_stream_is_made_again_with_its_consumers_and_durable_topics_go_on() {
    let nats = Nats::start();
    let (a, b) = (
        node(durable_config(&nats, "a")).await,
        node(durable_config(&nats, "b")).await,
    );
    let handled: Handled = Arc::default();
    worker(&b, "b", "workers", &handled).await;
    b.cluster.sync().await.unwrap();
    a.mq.publish("jobs.run", json!({"n": 0, "from": "a"}), Priority::Normal)
        .await
        .unwrap();
    eventually("the first job handled", SAFETY, || {
        !handled.lock().unwrap().is_empty()
    })
    .await;
    // An operator deletes the stream (or the server comes back without its store): its
    // consumers go with it.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url.as_str()).await.unwrap());
    assert!(js.delete_stream("t-durable").await.unwrap().success);
    // Published only once b has its consumer again: what a stream with no consumer gets
    // is kept for no one (see "Durable topics" in the cluster's docs).
    let deadline = std::time::Instant::now() + SAFETY;
    loop {
        if let Ok(mut stream) = js.get_stream("t-durable").await {
            if stream
                .info()
                .await
                .is_ok_and(|i| i.state.consumer_count == 1)
            {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b did not make the stream and its consumer again"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 1..4 {
        a.mq.publish("jobs.run", json!({"n": i, "from": "a"}), Priority::Normal)
            .await
            .unwrap();
    }
    eventually("every job handled", SAFETY, || {
        handled.lock().unwrap().len() >= 4
    })
    .await;
    let expected: Vec<_> = (0..4).map(|n| ("a".to_owned(), n)).collect();
    assert_eq!(every_one_handled(&handled, &expected), 0, "each once");
    a.stop().await;
    b.stop().await;
}

#[actix_rt::test]
async fn a_handler_longer_than_ack_wait_keeps_its_message() {
    let nats = Nats::start();
    let short = |node| ClusterConfig {
        ack_wait: Duration::from_secs(1),
        ..durable_config(&nats, node)
    };
    let (a, b) = (node(short("a")).await, node(short("b")).await);
    let handled: Handled = Arc::default();
    for (name, n) in [("a", &a), ("b", &b)] {
        let h = handled.clone();
        n.mq.subscribe_group("jobs.>", "slow", move |m| {
            let h = h.clone();
            async move {
                // Two and a half `ack_wait`s: without "still at work", JetStream would
                // give it to the other node meanwhile.
                actix_rt::time::sleep(Duration::from_millis(2_500)).await;
                let n = m.data()["n"].as_u64().unwrap();
                h.lock().unwrap().push((name.to_owned(), "a".into(), n));
                Ok(())
            }
        })
        .await
        .unwrap();
        n.cluster.sync().await.unwrap();
    }
    for i in 0..4 {
        a.mq.publish("jobs.run", json!({"n": i, "from": "a"}), Priority::Normal)
            .await
            .unwrap();
    }
    eventually("every slow job acknowledged", SAFETY, || {
        a.cluster.metrics().acked + b.cluster.metrics().acked >= 4
    })
    .await;
    let expected: Vec<_> = (0..4).map(|n| ("a".to_owned(), n)).collect();
    assert_eq!(every_one_handled(&handled, &expected), 0, "each once");
    let redelivered = a.cluster.metrics().redelivered + b.cluster.metrics().redelivered;
    assert_eq!(redelivered, 0, "none redelivered");
    a.stop().await;
    b.stop().await;
}

#[actix_rt::test]
async fn a_durable_message_its_member_drops_unhandled_goes_to_another_member_at_once() {
    let nats = Nats::start();
    // Redelivery for want of an acknowledgement would come long after the test's
    // patience: what reaches a came back refused.
    let long = |node| ClusterConfig {
        ack_wait: Duration::from_secs(600),
        ..durable_config(&nats, node)
    };
    let (a, b) = (node(long("a")).await, node(long("b")).await);
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let held =
        b.mq.subscribe_group("jobs.>", "workers", move |_| {
            let _ = entered_tx.send(());
            std::future::pending::<tickwire::HandlerResult>()
        })
        .await
        .unwrap();
    b.cluster.sync().await.unwrap();
    a.mq.publish("jobs.run", json!({"n": 7, "from": "a"}), Priority::Normal)
        .await
        .unwrap();
    tokio::time::timeout(SAFETY, entered.recv()).await.unwrap();
    let handled: Handled = Arc::default();
    worker(&a, "a", "workers", &handled).await;
    a.cluster.sync().await.unwrap();
    // Its only member on b leaves while it holds the job: discarded, refused back.
    assert!(b.mq.unsubscribe(held).await);
    eventually("a got the job b dropped", SAFETY, || {
        !handled.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        *handled.lock().unwrap(),
        [("a".to_owned(), "a".to_owned(), 7)]
    );
    assert_eq!(b.cluster.metrics().nacked, 1);
    assert_eq!(a.cluster.metrics().redelivered, 1);
    a.stop().await;
    b.stop().await;
}

/// The node of [`a_node_killed_mid_handling_loses_nothing_of_a_durable_topic`], run in
/// a child process of that test (this test binary again, with `CHILD_NATS` set): a
/// member of `workers` whose handler never finishes. Run without it, it returns at once.
#[actix_rt::test]
#[ignore = "a child process of another test"]
async fn durable_child_node() {
    let Ok(url) = std::env::var("CHILD_NATS") else {
        return;
    };
    let config = ClusterConfig {
        nats_url: url,
        node: Some("child".into()),
        prefix: "t".into(),
        message_queue: vec!["jobs.>".into()],
        durable: vec!["jobs.>".into()],
        ack_wait: Duration::from_secs(3),
        ..ClusterConfig::default()
    };
    let child = node(config).await;
    child
        .mq
        .subscribe_group("jobs.>", "workers", |m| {
            println!("took {}", m.data()["n"]);
            std::future::pending::<tickwire::HandlerResult>()
        })
        .await
        .unwrap();
    child.cluster.sync().await.unwrap();
    println!("ready");
    // Until the parent kills it.
    std::future::pending::<()>().await;
}

/// The next line of the child's that starts with `want`.
async fn next(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str) -> String {
    let wait = async {
        loop {
            let line = lines.recv().await.expect("the child runs");
            // (The harness's "test … ... " precedes the first line.)
            if line.contains(want) {
                return line;
            }
        }
    };
    tokio::time::timeout(SAFETY, wait)
        .await
        .unwrap_or_else(|_| panic!("the child never said {want:?}"))
}

#[actix_rt::test]
async fn a_node_killed_mid_handling_loses_nothing_of_a_durable_topic() {
    use std::io::BufRead;
    let nats = Nats::start();
    let a = node(durable_config(&nats, "a")).await;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durable_child_node",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CHILD_NATS", &nats.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the child node starts");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    next(&mut lines, "ready").await;
    // Only the child is a member: it takes the jobs, and holds them.
    const N: u64 = 100;
    for i in 0..N {
        a.mq.publish("jobs.run", json!({"n": i, "from": "a"}), Priority::Normal)
            .await
            .unwrap();
    }
    next(&mut lines, "took").await;
    child.kill().unwrap();
    child.wait().unwrap();
    // A member on a: what the child held comes to it after `ack_wait`.
    let handled: Handled = Arc::default();
    worker(&a, "a", "workers", &handled).await;
    for i in N..2 * N {
        a.mq.publish("jobs.run", json!({"n": i, "from": "a"}), Priority::Normal)
            .await
            .unwrap();
    }
    eventually("a handled every job, the child's too", SAFETY, || {
        let got: std::collections::BTreeSet<u64> =
            handled.lock().unwrap().iter().map(|(_, _, n)| *n).collect();
        got.len() as u64 >= 2 * N
    })
    .await;
    let expected: Vec<_> = (0..2 * N).map(|n| ("a".to_owned(), n)).collect();
    every_one_handled(&handled, &expected);
    assert!(
        a.cluster.metrics().redelivered >= 1,
        "the job the child held was redelivered: {:?}",
        a.cluster.metrics()
    );
    a.stop().await;
}
