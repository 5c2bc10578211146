//! Recovery after a reconnect and snapshots on subscribe, against a real actix-web server
//! on 127.0.0.1:0 (see the `protocol` module docs, "Recovery and snapshots").

mod common;

use std::time::{Duration, Instant};

use actix_http::ws::Message;
use futures_util::SinkExt;
use serde_json::json;
use tickwire::{WebSocketService, WebSocketServiceConfig};

use common::ws::{next_json, request, Client, Server, PATIENCE};

fn config() -> WebSocketServiceConfig {
    WebSocketServiceConfig {
        enable_compression: false,
        ..WebSocketServiceConfig::default()
    }
}

fn start(config: WebSocketServiceConfig) -> Server {
    Server::start(WebSocketService::start(config).expect("a valid config"))
}

/// A connected client and the epoch of its welcome.
async fn connect(server: &Server) -> (impl Client, String) {
    let (conn, welcome) = server.welcomed().await;
    let epoch = welcome["epoch"].as_str().expect("an epoch").to_owned();
    (conn, epoch)
}

async fn broadcast(server: &Server, topic: &str, n: u64) {
    for i in 0..n {
        server.ws.broadcast(topic, json!({ "i": i })).await;
    }
}

/// Reads `n` messages: their (topic, seq, snapshot flag).
async fn messages(conn: &mut impl Client, n: usize) -> Vec<(String, u64, bool)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let frame = next_json(conn).await;
        assert_eq!(frame["type"], "message", "{frame}");
        got.push((
            frame["topic"].as_str().unwrap().to_owned(),
            frame["seq"].as_u64().unwrap(),
            frame["snapshot"] == true,
        ));
    }
    got
}

fn live(topic: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<(String, u64, bool)> {
    seqs.map(|seq| (topic.to_owned(), seq, false)).collect()
}

/// Broadcasts one more message of `topic` and checks it is the next frame, numbered
/// `seq`: nothing else came between the replay and the live stream.
async fn next_is_live(server: &Server, conn: &mut impl Client, topic: &str, seq: u64) {
    broadcast(server, topic, 1).await;
    assert_eq!(messages(conn, 1).await, live(topic, seq..=seq));
}

async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix_rt::test]
async fn a_reconnecting_client_gets_exactly_what_it_missed_then_the_live_stream() {
    let server = start(config());
    let (mut first, epoch) = connect(&server).await;
    let ack = request(
        &mut first,
        json!({"type": "subscribe", "topic": "px.eur", "id": 1}),
    )
    .await;
    assert_eq!(
        ack,
        json!({"type": "ack", "id": 1, "epoch": epoch, "seq": 0})
    );
    broadcast(&server, "px.eur", 5).await;
    assert_eq!(messages(&mut first, 5).await, live("px.eur", 1..=5));
    drop(first);
    // Published while nobody listens: numbered and kept all the same.
    broadcast(&server, "px.eur", 4).await;

    let (mut again, same_epoch) = connect(&server).await;
    assert_eq!(same_epoch, epoch);
    let resume = json!({"type": "subscribe", "topic": "px.eur", "id": 2,
                        "recover": {"epoch": epoch, "seq": 5}});
    let ack = request(&mut again, resume).await;
    assert_eq!(
        ack,
        json!({"type": "ack", "id": 2, "epoch": epoch, "seq": 9, "recovered": true})
    );
    assert_eq!(messages(&mut again, 4).await, live("px.eur", 6..=9));
    next_is_live(&server, &mut again, "px.eur", 10).await;

    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!(metrics.epoch, epoch);
    assert_eq!((metrics.recoveries, metrics.failed_recoveries), (1, 0));
    assert_eq!(metrics.replayed_messages, 4);
    assert_eq!((metrics.history_topics, metrics.history_messages), (1, 10));
    assert!(metrics.history_bytes > 10 * 60, "{}", metrics.history_bytes);
    server.shutdown().await;
}

#[actix_rt::test]
async fn another_epoch_or_a_seq_past_the_history_is_not_recovered_and_replays_nothing() {
    let server = start(WebSocketServiceConfig {
        history_size: 3,
        ..config()
    });
    broadcast(&server, "a", 10).await;
    let (mut conn, epoch) = connect(&server).await;
    for (id, recover) in [
        (1, json!({"epoch": "not-this-one", "seq": 9})),
        (2, json!({"epoch": epoch, "seq": 6})), // 7 is gone: 8..=10 are kept
    ] {
        let subscribe = json!({"type": "subscribe", "topic": "a", "id": id, "recover": recover});
        let ack = request(&mut conn, subscribe).await;
        assert_eq!(
            ack,
            json!({"type": "ack", "id": id, "epoch": epoch, "seq": 10, "recovered": false})
        );
    }
    next_is_live(&server, &mut conn, "a", 11).await;
    let ok =
        json!({"type": "subscribe", "topic": "a", "id": 3, "recover": {"epoch": epoch, "seq": 8}});
    assert_eq!(request(&mut conn, ok).await["recovered"], true);
    assert_eq!(messages(&mut conn, 3).await, live("a", 9..=11));
    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!((metrics.recoveries, metrics.failed_recoveries), (1, 2));
    assert_eq!(metrics.history_messages, 3);
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_pattern_recovers_from_positions_and_names_what_it_could_not() {
    let server = start(WebSocketServiceConfig {
        history_size: 4,
        ..config()
    });
    broadcast(&server, "m.a", 3).await;
    broadcast(&server, "m.b", 8).await;
    broadcast(&server, "other", 2).await;
    let (mut conn, epoch) = connect(&server).await;
    let subscribe = json!({"type": "subscribe", "topic": "m.*", "id": "p",
        "recover": {"epoch": epoch, "positions": {"m.a": 1, "m.b": 2}}});
    let ack = request(&mut conn, subscribe).await;
    assert_eq!(
        ack,
        json!({"type": "ack", "id": "p", "epoch": epoch, "recovered": false, "unrecovered": ["m.b"]})
    );
    assert_eq!(messages(&mut conn, 2).await, live("m.a", 2..=3));
    next_is_live(&server, &mut conn, "m.b", 9).await;
    // A position outside the pattern is bad input: an error, and the session stays.
    let outside = json!({"type": "subscribe", "topic": "m.*", "id": "q",
        "recover": {"epoch": epoch, "positions": {"other": 1}}});
    let refused = request(&mut conn, outside).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("invalid_field"))
    );
    let seq_for_pattern = json!({"type": "subscribe", "topic": "m.*", "id": "r",
        "recover": {"epoch": epoch, "seq": 1}});
    assert_eq!(
        request(&mut conn, seq_for_pattern).await["code"],
        "invalid_field"
    );
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_snapshot_sends_the_latest_of_each_matching_topic_flagged_then_live_ones() {
    let server = start(config());
    broadcast(&server, "px.usd", 2).await;
    broadcast(&server, "px.eur", 3).await;
    broadcast(&server, "fx.eur", 1).await;
    let (mut conn, epoch) = connect(&server).await;
    let ack = request(
        &mut conn,
        json!({"type": "subscribe", "topic": "px.*", "snapshot": true}),
    )
    .await;
    assert_eq!(ack, json!({"type": "ack", "epoch": epoch}));
    assert_eq!(
        messages(&mut conn, 2).await,
        [
            ("px.eur".to_owned(), 3, true),
            ("px.usd".to_owned(), 2, true)
        ]
    );
    next_is_live(&server, &mut conn, "px.usd", 3).await;
    // With recover: what can be recovered is replayed, the rest comes as snapshots.
    let (mut other, _) = connect(&server).await;
    let both = json!({"type": "subscribe", "topic": "px.*", "snapshot": true,
        "recover": {"epoch": epoch, "positions": {"px.eur": 1}}});
    assert_eq!(request(&mut other, both).await["recovered"], true);
    assert_eq!(
        messages(&mut other, 3).await,
        [
            ("px.eur".to_owned(), 2, false),
            ("px.eur".to_owned(), 3, false),
            ("px.usd".to_owned(), 3, true)
        ]
    );
    assert_eq!(
        server.ws.get_performance_metrics().await.snapshot_messages,
        3
    );
    server.shutdown().await;
}

#[actix_rt::test]
async fn recovery_under_a_concurrent_publisher_has_no_gap_and_no_duplicate() {
    const TOTAL: u64 = 6000;
    let server = start(WebSocketServiceConfig {
        history_size: TOTAL as usize,
        ..config()
    });
    let ws = server.ws.clone();
    let publisher = actix_rt::spawn(async move {
        for i in 0..TOTAL {
            ws.broadcast("t", json!({ "i": i })).await;
            if i % 16 == 0 {
                actix_rt::task::yield_now().await;
            }
        }
    });
    // A client that reads a while, drops its connection, reconnects with recover from
    // the last seq it saw, while the publisher goes on; several times over.
    let mut last = 0;
    let mut reconnects = 0;
    while last < TOTAL {
        let (mut conn, epoch) = connect(&server).await;
        let ack = request(
            &mut conn,
            json!({"type": "subscribe", "topic": "t", "recover": {"epoch": epoch, "seq": last}}),
        )
        .await;
        assert_eq!(ack["recovered"], true, "{ack}");
        let latest = ack["seq"].as_u64().unwrap();
        assert!(latest >= last, "{ack}");
        // Read 700 more (replayed or live), then drop the connection, even mid-replay.
        let until = (last + 700).min(TOTAL);
        while last < until {
            let frame = next_json(&mut conn).await;
            let seq = frame["seq"].as_u64().unwrap();
            assert_eq!(seq, last + 1, "after {reconnects} reconnects: {frame}");
            last = seq;
        }
        reconnects += 1;
    }
    publisher.await.unwrap();
    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!(
        (metrics.recoveries, metrics.failed_recoveries),
        (reconnects, 0)
    );
    server.shutdown().await;
}

#[actix_rt::test]
async fn kept_messages_expire_after_history_ttl() {
    let server = start(WebSocketServiceConfig {
        history_ttl: Duration::from_millis(50),
        ..config()
    });
    broadcast(&server, "a", 3).await;
    assert_eq!(
        server.ws.get_performance_metrics().await.history_messages,
        3
    );
    let ws = server.ws.clone();
    eventually("the hub's sweep drops the expired messages", async || {
        ws.get_performance_metrics().await.history_messages == 0
    })
    .await;
    let (mut conn, epoch) = connect(&server).await;
    let subscribe = json!({"type": "subscribe", "topic": "a", "snapshot": true,
        "recover": {"epoch": epoch, "seq": 1}});
    let ack = request(&mut conn, subscribe).await;
    assert_eq!(
        (ack["recovered"].as_bool(), ack["seq"].as_u64()),
        (Some(false), Some(3))
    );
    next_is_live(&server, &mut conn, "a", 4).await;
    server.shutdown().await;
}

#[actix_rt::test]
async fn history_size_zero_turns_recovery_and_snapshots_off() {
    let server = start(WebSocketServiceConfig {
        history_size: 0,
        ..config()
    });
    broadcast(&server, "a", 2).await;
    let (mut conn, epoch) = connect(&server).await;
    let subscribe = json!({"type": "subscribe", "topic": "a", "snapshot": true,
        "recover": {"epoch": epoch, "seq": 1}});
    let ack = request(&mut conn, subscribe).await;
    assert_eq!(
        ack,
        json!({"type": "ack", "epoch": epoch, "seq": 2, "recovered": false})
    );
    next_is_live(&server, &mut conn, "a", 3).await;
    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!(
        (metrics.history_messages, metrics.snapshot_messages),
        (0, 0)
    );
    conn.send(Message::Close(None)).await.unwrap();
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_replay_over_half_the_session_budget_is_refused_not_cut_as_slow() {
    let server = start(WebSocketServiceConfig {
        max_queued_bytes: 64 << 10,
        ..config()
    });
    let pad = "x".repeat(2000);
    for i in 0..100 {
        server
            .ws
            .broadcast("big", json!({ "i": i, "pad": pad }))
            .await;
    }
    let (mut conn, epoch) = connect(&server).await;
    // 100 × 2 KB to replay against a budget of 32 KiB: not recovered, the latest instead.
    let subscribe = json!({"type": "subscribe", "topic": "big", "snapshot": true,
        "recover": {"epoch": epoch, "seq": 0}});
    let ack = request(&mut conn, subscribe).await;
    assert_eq!(
        (ack["recovered"].as_bool(), ack["seq"].as_u64()),
        (Some(false), Some(100))
    );
    assert_eq!(
        messages(&mut conn, 1).await,
        [("big".to_owned(), 100, true)]
    );
    // 15 missed fit: recovered.
    let (mut other, _) = connect(&server).await;
    let subscribe = json!({"type": "subscribe", "topic": "big",
        "recover": {"epoch": epoch, "seq": 85}});
    assert_eq!(request(&mut other, subscribe).await["recovered"], true);
    assert_eq!(messages(&mut other, 15).await, live("big", 86..=100));
    next_is_live(&server, &mut conn, "big", 101).await;
    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!(metrics.slow_consumers, 0);
    assert_eq!(
        (metrics.replayed_messages, metrics.snapshot_messages),
        (15, 1)
    );
    server.shutdown().await;
}
