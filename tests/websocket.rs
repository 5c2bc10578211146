//! WebSocketService against a real actix-web server on 127.0.0.1:0, with real clients:
//! awc for well-behaved ones, raw TCP for clients that misbehave at the socket level.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use actix_http::ws::{CloseCode, CloseReason, Frame, Item, Message};
use actix_web::{App, HttpServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tickwire::access::{Access, TokenConfig};
use tickwire::websocket::{self, protocol::MAX_CONSECUTIVE_ERRORS};
use tickwire::{
    bridge, ClientSubscribeError, Event, EventBus, EventBusConfig, MessageQueue,
    MessageQueueConfig, Priority, WebSocketService, WebSocketServiceConfig,
};

use common::ws::{next_frame, next_json, request, Client, Server, PATIENCE};

async fn connect_to(request: awc::ws::WebsocketsRequest) -> (impl Client, String) {
    let (_, mut conn) = request.connect().await.expect("websocket connect");
    let welcome = next_json(&mut conn).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let id = welcome["client_id"].as_str().expect("client_id").to_owned();
    (conn, id)
}

async fn send(conn: &mut impl Client, frame: Value) {
    conn.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
}

/// The close code of the next frame, which must be a close frame.
async fn close_code(conn: &mut impl Client) -> u16 {
    match next_frame(conn).await {
        Frame::Close(Some(reason)) => u16::from(reason.code),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// Waits (bounded) until `done` holds; for state that settles asynchronously.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

fn config() -> WebSocketServiceConfig {
    WebSocketServiceConfig {
        enable_compression: false,
        ..WebSocketServiceConfig::default()
    }
}

#[actix_rt::test]
async fn the_protocol_from_welcome_to_unsubscribe() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let (_, mut conn) = awc::Client::new().ws(server.url()).connect().await.unwrap();
    let welcome = next_json(&mut conn).await;
    assert_eq!(welcome["type"], "welcome");
    assert!(welcome["client_id"].as_str().unwrap().starts_with("c-"));
    assert_eq!(welcome["heartbeat_interval"], 30.0);

    let pong = request(&mut conn, json!({"type": "ping", "id": "4"})).await;
    assert_eq!(pong, json!({"type": "pong", "id": "4"}));
    let ack = request(
        &mut conn,
        json!({"type": "subscribe", "topic": "market.>", "id": 1}),
    )
    .await;
    let epoch = server.ws.get_performance_metrics().await.epoch;
    assert_eq!(ack, json!({"type": "ack", "id": 1, "epoch": epoch}));

    assert_eq!(
        server
            .ws
            .broadcast("market.data", json!({"price": 50000}))
            .await,
        1
    );
    assert_eq!(server.ws.broadcast("other.data", json!(0)).await, 0);
    let message = next_json(&mut conn).await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["topic"], "market.data");
    assert_eq!(message["data"], json!({"price": 50000}));
    assert_eq!(message["seq"], 1);
    let ts = message["timestamp"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");

    let ack = request(
        &mut conn,
        json!({"type": "unsubscribe", "topic": "market.>"}),
    )
    .await;
    assert_eq!(ack, json!({"type": "ack"}));
    assert_eq!(server.ws.broadcast("market.data", json!(1)).await, 0);
    let refused = request(
        &mut conn,
        json!({"type": "unsubscribe", "topic": "market.>", "id": "u"}),
    )
    .await;
    assert_eq!(refused["code"], "not_subscribed");
    assert_eq!(refused["id"], "u");

    // A client's own close is answered with its code, unless that code may not be sent.
    conn.send(Message::Close(Some(CloseReason::from(CloseCode::Other(
        4321,
    )))))
    .await
    .unwrap();
    assert_eq!(close_code(&mut conn).await, 4321);
    let (mut conn, _) = server.connect().await;
    conn.send(Message::Close(Some(CloseReason::from(CloseCode::Other(
        1005,
    )))))
    .await
    .unwrap();
    assert_eq!(
        close_code(&mut conn).await,
        1002,
        "1005 may not be sent: a protocol error"
    );
    server.shutdown().await;
}

#[actix_rt::test]
async fn patterns_route_each_topic_once_per_session_with_its_own_seq() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let (mut one, _) = server.connect().await; // market.* and market.tick
    let (mut tail, _) = server.connect().await; // market.>
    let (mut exact, _) = server.connect().await; // market.tick
    for topic in ["market.*", "market.tick"] {
        let ack = request(&mut one, json!({"type": "subscribe", "topic": topic})).await;
        assert_eq!(ack["type"], "ack");
    }
    let ack = request(&mut tail, json!({"type": "subscribe", "topic": "market.>"})).await;
    assert_eq!(ack["type"], "ack");
    let ack = request(
        &mut exact,
        json!({"type": "subscribe", "topic": "market.tick"}),
    )
    .await;
    assert_eq!(ack["type"], "ack");
    let ws = &server.ws;
    assert_eq!(ws.broadcast("market.tick", json!(1)).await, 3);
    assert_eq!(ws.broadcast("market.tick.btc", json!(2)).await, 1);
    assert_eq!(ws.broadcast("market.trade", json!(3)).await, 2);
    assert_eq!(ws.broadcast("market.tick", json!(4)).await, 3);
    assert_eq!(ws.broadcast("fx.tick", json!(5)).await, 0);
    assert_eq!(ws.broadcast("market..bad", json!(6)).await, 0);

    async fn received(conn: &mut impl Client, n: usize) -> Vec<(String, u64, i64)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let m = next_json(conn).await;
            out.push((
                m["topic"].as_str().unwrap().to_owned(),
                m["seq"].as_u64().unwrap(),
                m["data"].as_i64().unwrap(),
            ));
        }
        out
    }
    let t = |topic: &str, seq, data| (topic.to_owned(), seq, data);
    assert_eq!(
        received(&mut one, 3).await,
        [
            t("market.tick", 1, 1),
            t("market.trade", 1, 3),
            t("market.tick", 2, 4)
        ]
    );
    assert_eq!(
        received(&mut tail, 4).await,
        [
            t("market.tick", 1, 1),
            t("market.tick.btc", 1, 2),
            t("market.trade", 1, 3),
            t("market.tick", 2, 4)
        ]
    );
    assert_eq!(
        received(&mut exact, 2).await,
        [t("market.tick", 1, 1), t("market.tick", 2, 4)]
    );
    // Nothing else is waiting: the next frame is the answer to this ping.
    let pong = request(&mut one, json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
    let metrics = ws.get_performance_metrics().await;
    assert_eq!(metrics.topics_count, 3);
    server.shutdown().await;
}

#[actix_rt::test]
async fn two_hundred_clients_receive_every_broadcast_in_order() {
    const CLIENTS: usize = 200;
    const BROADCASTS: u64 = 100;
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (mut conn, _) = server.connect().await;
        let ack = request(&mut conn, json!({"type": "subscribe", "topic": "feed"})).await;
        assert_eq!(ack["type"], "ack");
        clients.push(conn);
    }
    for n in 1..=BROADCASTS {
        assert_eq!(server.ws.broadcast("feed", json!({"n": n})).await, CLIENTS);
    }
    for conn in &mut clients {
        for n in 1..=BROADCASTS {
            let m = next_json(conn).await;
            assert_eq!(
                (m["seq"].as_u64(), m["data"]["n"].as_u64()),
                (Some(n), Some(n))
            );
        }
    }
    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!(metrics.active_connections, CLIENTS as u64);
    assert_eq!(metrics.total_connections, CLIENTS as u64);
    // welcome + ack + the broadcasts, per client.
    assert_eq!(
        metrics.total_messages_sent,
        Some(CLIENTS as u64 * (2 + BROADCASTS))
    );
    assert_eq!(metrics.total_messages_received, Some(CLIENTS as u64));
    // The keys in serialization order (a serde_json::Value would sort them).
    let text = serde_json::to_string(&metrics).unwrap();
    let mut keys: Vec<(usize, String)> =
        serde_json::from_str::<serde_json::Map<String, Value>>(&text)
            .unwrap()
            .keys()
            .map(|k| (text.find(&format!("\"{k}\":")).unwrap(), k.clone()))
            .collect();
    keys.sort();
    let keys: Vec<String> = keys.into_iter().map(|(_, k)| k).collect();
    assert_eq!(
        keys[..8],
        [
            "total_connections",
            "active_connections",
            "total_messages_sent",
            "total_messages_received",
            "total_errors",
            "messages_per_second",
            "topics_count",
            "uptime_seconds"
        ],
        "the seed's keys first, in order"
    );
    let text = tickwire::metrics::prometheus::render(None, None, Some(&metrics));
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str| match scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .map(|s| &s.value)
    {
        Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v)) => *v,
        other => panic!("{name}: {other:?} in\n{text}"),
    };
    assert_eq!(
        value("tickwire_websocket_active_connections"),
        CLIENTS as f64
    );
    assert_eq!(
        value("tickwire_websocket_messages_sent_total"),
        (CLIENTS as u64 * (2 + BROADCASTS)) as f64
    );
    assert_eq!(value("tickwire_websocket_topics"), 1.0);
    server.shutdown().await;
}

#[actix_rt::test]
async fn bad_input_gets_an_error_code_and_the_session_stays_open() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let (mut conn, _) = server.connect().await;
    let long_topic = json!({"type": "subscribe", "topic": "t".repeat(257)}).to_string();
    let cases = [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        (r#"{"type": "jump", "id": "j"}"#, "unknown_type"),
        (r#"{"topic": "a"}"#, "missing_field"),
        (r#"{"type": "subscribe"}"#, "missing_field"),
        (r#"{"type": "subscribe", "topic": 7}"#, "invalid_field"),
        (r#"{"type": "subscribe", "topic": "a..b"}"#, "invalid_topic"),
        (
            r#"{"type": "subscribe", "topic": "a.>.b"}"#,
            "invalid_topic",
        ),
        (
            r#"{"type": "unsubscribe", "topic": "a..b"}"#,
            "invalid_topic",
        ),
        (
            r#"{"type": "publish", "topic": "orders.new", "data": {}}"#,
            "publish_not_allowed",
        ),
        (&long_topic, "invalid_topic"),
    ];
    for (text, code) in cases {
        conn.send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
        let reply = next_json(&mut conn).await;
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some(code)),
            "{text}"
        );
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
        // Each valid request in between resets the count of bad frames in a row.
        assert_eq!(
            request(&mut conn, json!({"type": "ping"})).await["type"],
            "pong"
        );
    }
    let reply = request(&mut conn, json!({"type": "jump", "id": "j"})).await;
    assert_eq!(reply["id"], "j");
    conn.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut conn).await["code"], "binary_not_supported");
    assert_eq!(
        request(&mut conn, json!({"type": "ping"})).await["type"],
        "pong"
    );

    // Only bad input: closed with 1008 after the documented number of errors in a row.
    for n in 0..MAX_CONSECUTIVE_ERRORS {
        conn.send(Message::Text("nope".into())).await.unwrap();
        let reply = next_json(&mut conn).await;
        assert_eq!(reply["code"], "invalid_json", "bad frame {n}");
    }
    assert_eq!(close_code(&mut conn).await, 1008);
    let metrics = server.ws.get_performance_metrics().await;
    // 11 cases + 1 id echo + 1 binary + the run, plus the 1008 close itself.
    assert_eq!(
        metrics.total_errors,
        13 + u64::from(MAX_CONSECUTIVE_ERRORS) + 1
    );
    server.shutdown().await;
}

#[actix_rt::test]
async fn fragments_are_reassembled_within_max_message_size() {
    let cfg = WebSocketServiceConfig {
        max_message_size: 1024,
        ..config()
    };
    let server = Server::start(WebSocketService::start(cfg).unwrap());
    let (mut conn, _) = server.connect().await;
    let text = json!({"type": "subscribe", "topic": "frag.ment", "id": "f"}).to_string();
    let (a, b) = text.split_at(10);
    let (b, c) = b.split_at(10);
    conn.send(Message::Continuation(Item::FirstText(a.to_owned().into())))
        .await
        .unwrap();
    conn.send(Message::Continuation(Item::Continue(b.to_owned().into())))
        .await
        .unwrap();
    conn.send(Message::Continuation(Item::Last(c.to_owned().into())))
        .await
        .unwrap();
    let epoch = server.ws.get_performance_metrics().await.epoch;
    assert_eq!(
        next_json(&mut conn).await,
        json!({"type": "ack", "id": "f", "epoch": epoch, "seq": 0})
    );

    // Fragments each under the limit, together over it.
    let part = "x".repeat(600);
    conn.send(Message::Continuation(Item::FirstText(part.clone().into())))
        .await
        .unwrap();
    conn.send(Message::Continuation(Item::Last(part.into())))
        .await
        .unwrap();
    assert_eq!(close_code(&mut conn).await, 1009);

    // Fragments that together are not UTF-8: 1007.
    let (mut conn, _) = server.connect().await;
    let bytes = actix_web::web::Bytes::from_static(&[0xe2, 0x82]);
    conn.send(Message::Continuation(Item::FirstText(bytes)))
        .await
        .unwrap();
    let tail = actix_web::web::Bytes::from_static(&[0x28]);
    conn.send(Message::Continuation(Item::Last(tail)))
        .await
        .unwrap();
    assert_eq!(close_code(&mut conn).await, 1007);
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_frame_over_max_message_size_closes_with_1009() {
    let cfg = WebSocketServiceConfig {
        max_message_size: 1024,
        ..config()
    };
    let server = Server::start(WebSocketService::start(cfg).unwrap());
    let (mut conn, _) = server.connect().await;
    // Exactly the limit is fine.
    let padded = |len: usize| {
        let base = json!({"type": "ping", "pad": ""}).to_string();
        json!({"type": "ping", "pad": "p".repeat(len - base.len())}).to_string()
    };
    conn.send(Message::Text(padded(1024).into())).await.unwrap();
    assert_eq!(next_json(&mut conn).await["type"], "pong");
    conn.send(Message::Text(padded(1025).into())).await.unwrap();
    assert_eq!(close_code(&mut conn).await, 1009);
    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!(metrics.oversize_messages, 1);
    server.shutdown().await;
}

#[actix_rt::test]
async fn max_connections_refuses_with_503_before_the_upgrade() {
    let cfg = WebSocketServiceConfig {
        max_connections: 2,
        ..config()
    };
    let server = Server::start(WebSocketService::start(cfg).unwrap());
    let (mut first, _) = server.connect().await;
    let (_second, _) = server.connect().await;
    let refused = awc::Client::new().ws(server.url()).connect().await;
    match refused {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => assert_eq!(status, 503),
        other => panic!("expected 503, got {:?}", other.map(|(r, _)| r.status())),
    }
    // A slot frees when a session ends.
    first.send(Message::Close(None)).await.unwrap();
    let ws = server.ws.clone();
    eventually("a slot to free", || ws.active_connections() == 1).await;
    let (_third, _) = server.connect().await;
    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!(
        (metrics.rejected_connections, metrics.total_connections),
        (1, 3)
    );
    server.shutdown().await;
}

#[actix_rt::test]
async fn heartbeats_keep_a_responsive_client_and_close_a_silent_one_with_4000() {
    // The responsive client may be kept from answering for over a second by the other
    // tests on a loaded machine: the timeout leaves it that slack.
    let cfg = WebSocketServiceConfig {
        heartbeat_interval: Duration::from_millis(200),
        connection_timeout: Duration::from_millis(1500),
        ..config()
    };
    let server = Server::start(WebSocketService::start(cfg).unwrap());
    let (mut silent, _) = server.connect().await;
    let (mut alive, _) = server.connect().await;
    // The responsive client answers every ping, from the start, in its own task.
    let responsive = actix_rt::spawn(async move {
        let mut pings = 0;
        while pings < 16 {
            let frame = actix_rt::time::timeout(PATIENCE, alive.next())
                .await
                .expect("a frame within the safety timeout")
                .expect("still open")
                .expect("a valid frame");
            match frame {
                Frame::Ping(payload) => {
                    alive.send(Message::Pong(payload)).await.unwrap();
                    pings += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        alive
    });
    // The silent client only reads (pings, which it ignores), then the close.
    let code = loop {
        let frame = actix_rt::time::timeout(PATIENCE, silent.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match frame {
            Frame::Ping(_) => {}
            Frame::Close(Some(reason)) => break u16::from(reason.code),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, 4000);
    // Sixteen pings answered span twice the timeout: the responsive client is still served.
    let mut alive = responsive.await.unwrap();
    assert_eq!(
        request(&mut alive, json!({"type": "ping"})).await["type"],
        "pong"
    );
    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!(metrics.heartbeat_timeouts, 1);
    server.shutdown().await;
}

#[actix_rt::test]
async fn tokens_refuse_with_401_and_forbid_topics_outside_their_patterns() {
    let access = Access::with_tokens(&[TokenConfig {
        token: "s3cret".into(),
        subscribe: vec!["market.>".into()],
        publish: vec!["orders.>".into()],
    }])
    .unwrap();
    let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    mq.subscribe("orders.>", move |m| {
        let _ = tx.send(m);
        std::future::ready(Ok(()))
    })
    .await
    .unwrap();
    let cfg = WebSocketServiceConfig {
        allow_client_publish: true,
        ..config()
    };
    let ws = WebSocketService::builder(cfg)
        .access(access)
        .publish_to(mq.clone())
        .start()
        .unwrap();
    let server = Server::start(ws);
    for request in [
        awc::Client::new().ws(server.url()),
        awc::Client::new().ws(server.url()).bearer_auth("wrong"),
        awc::Client::new().ws(format!("{}?token=wrong", server.url())),
    ] {
        match request.connect().await {
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
                assert_eq!(status, 401)
            }
            other => panic!("expected 401, got {:?}", other.map(|(r, _)| r.status())),
        }
    }
    let (mut by_query, _) =
        connect_to(awc::Client::new().ws(format!("{}?token=s3cret", server.url()))).await;
    let (mut conn, _) = connect_to(awc::Client::new().ws(server.url()).bearer_auth("s3cret")).await;
    let ack = request(
        &mut by_query,
        json!({"type": "subscribe", "topic": "market.tick"}),
    )
    .await;
    assert_eq!(ack["type"], "ack");
    for topic in ["system.alert", ">", "*.tick"] {
        let reply = request(&mut conn, json!({"type": "subscribe", "topic": topic})).await;
        assert_eq!(reply["code"], "forbidden", "{topic}");
    }
    let reply = request(
        &mut conn,
        json!({"type": "publish", "topic": "market.x", "data": 1}),
    )
    .await;
    assert_eq!(reply["code"], "forbidden");
    let reply = request(
        &mut conn,
        json!({"type": "publish", "topic": "orders.new", "data": {"qty": 2}, "priority": 4, "id": 9}),
    )
    .await;
    assert_eq!(reply, json!({"type": "ack", "id": 9}));
    let message = actix_rt::time::timeout(PATIENCE, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (message.topic(), message.priority()),
        ("orders.new", Priority::Critical)
    );
    assert_eq!(message.data(), &json!({"qty": 2}));
    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!(metrics.unauthorized, 3);
    server.shutdown().await;
    mq.stop().await;
}

#[actix_rt::test]
async fn server_side_subscribe_unsubscribe_and_disconnect() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let ws = &server.ws;
    let (mut conn, id) = server.connect().await;
    ws.subscribe(&id, "alerts.*").await.unwrap();
    assert_eq!(
        ws.subscribe("c-0", "alerts.*").await,
        Err(ClientSubscribeError::UnknownClient("c-0".into()))
    );
    assert!(matches!(
        ws.subscribe(&id, "alerts.").await,
        Err(ClientSubscribeError::InvalidPattern(_))
    ));
    assert_eq!(ws.broadcast("alerts.cpu", json!("hot")).await, 1);
    assert_eq!(next_json(&mut conn).await["data"], "hot");
    assert!(ws.unsubscribe(&id, "alerts.*").await);
    assert!(!ws.unsubscribe(&id, "alerts.*").await);
    assert_eq!(ws.broadcast("alerts.cpu", json!("hot")).await, 0);
    assert!(ws.disconnect(&id).await);
    assert_eq!(close_code(&mut conn).await, 1000);
    assert!(!ws.disconnect("c-0").await);
    server.shutdown().await;
}

#[actix_rt::test]
async fn server_side_subscribe_refuses_past_the_bound_and_once_stopped() {
    use tickwire::websocket::protocol::MAX_SUBSCRIPTIONS;
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let ws = &server.ws;
    let (_conn, id) = server.connect().await;
    for n in 0..MAX_SUBSCRIPTIONS {
        ws.subscribe(&id, &format!("t.{n}")).await.unwrap();
    }
    // Again the same pattern: it is held already, nothing to refuse.
    ws.subscribe(&id, "t.0").await.unwrap();
    assert_eq!(
        ws.subscribe(&id, "t.one-too-many").await,
        Err(ClientSubscribeError::TooManySubscriptions(
            MAX_SUBSCRIPTIONS
        ))
    );
    ws.stop().await;
    // Its session is gone with the service: the client is unknown now, or the service
    // refuses as stopped, but never accepted.
    let refused = ws.subscribe(&id, "t.after-stop").await;
    assert!(
        matches!(
            refused,
            Err(ClientSubscribeError::Stopped | ClientSubscribeError::UnknownClient(_))
        ),
        "{refused:?}"
    );
    server.shutdown().await;
}

#[actix_rt::test]
async fn stop_closes_every_session_with_1001_and_refuses_new_ones() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut conn, _) = server.connect().await;
        request(&mut conn, json!({"type": "subscribe", "topic": "x"})).await;
        clients.push(conn);
    }
    server.ws.stop().await;
    assert_eq!(
        server.ws.active_connections(),
        0,
        "stop returns once every session is gone"
    );
    for conn in &mut clients {
        assert_eq!(close_code(conn).await, 1001);
    }
    match awc::Client::new().ws(server.url()).connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => assert_eq!(status, 503),
        other => panic!("expected 503, got {:?}", other.map(|(r, _)| r.status())),
    }
    assert_eq!(server.ws.broadcast("x", json!(1)).await, 0);
    server.handle.stop(true).await;
}

#[actix_rt::test]
async fn bridges_carry_queue_messages_and_bus_events_to_clients() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
    let bus = EventBus::start(EventBusConfig::default()).unwrap();
    bridge::queue_to_websocket(&mq, &server.ws, "market.>")
        .await
        .unwrap();
    bridge::event_bus_to_websocket(&bus, &server.ws, "system.*")
        .await
        .unwrap();
    let (mut conn, _) = server.connect().await;
    request(&mut conn, json!({"type": "subscribe", "topic": ">"})).await;
    mq.publish("market.data", json!({"price": 1}), Priority::Normal)
        .await
        .unwrap();
    let m = next_json(&mut conn).await;
    assert_eq!(
        (m["topic"].as_str(), &m["data"]),
        (Some("market.data"), &json!({"price": 1}))
    );
    bus.publish(Event::new("system.alert", json!({"cpu": 99})))
        .await
        .unwrap();
    let m = next_json(&mut conn).await;
    assert_eq!(
        (m["topic"].as_str(), &m["data"]),
        (Some("system.alert"), &json!({"cpu": 99}))
    );
    mq.stop().await;
    bus.stop().await;
    server.shutdown().await;
}

// ---- raw TCP clients, for misbehaviour below the WebSocket layer

/// Runs blocking socket code off the test's runtime thread (which also drives the server).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    actix_rt::task::spawn_blocking(f)
        .await
        .expect("blocking client code")
}

/// A raw client that subscribed to `topic` and was acknowledged; it reads nothing more.
async fn raw_subscriber(addr: SocketAddr, topic: &'static str) -> TcpStream {
    blocking(move || {
        let mut stream = raw_connect(addr);
        let frame = json!({"type": "subscribe", "topic": topic}).to_string();
        stream.write_all(&masked_text(&frame)).unwrap();
        read_until(&mut stream, b"\"ack\"");
        stream
    })
    .await
}

/// Opens a WebSocket by hand, with a small receive buffer, and returns the socket after
/// the 101 response.
fn raw_connect(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let head = read_until(&mut stream, b"\r\n\r\n");
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Reads until `needle` has been seen; returns everything read.
fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = stream
            .read(&mut buf)
            .expect("read within the safety timeout");
        assert!(
            n > 0,
            "connection closed before {:?}",
            String::from_utf8_lossy(needle)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    seen
}

/// A masked text frame, as a client must send it (mask key 0: the payload unchanged).
fn masked_text(text: &str) -> Vec<u8> {
    let len = text.len();
    assert!(len < 126);
    let mut frame = vec![0x81, 0x80 | len as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// Reads until the server ends the connection; returns everything read and whether it
/// was reset (rather than closed in order).
fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (all, false),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return (all, true),
            Err(err) => panic!("the connection did not end within the safety timeout: {err}"),
        }
    }
}

#[actix_rt::test]
async fn a_client_that_never_reads_is_closed_with_4000_and_its_connection_ends() {
    let cfg = WebSocketServiceConfig {
        heartbeat_interval: Duration::from_millis(100),
        connection_timeout: Duration::from_millis(400),
        ..config()
    };
    let server = Server::start(WebSocketService::start(cfg).unwrap());
    let addr = server.addr;
    let mut stream = blocking(move || raw_connect(addr)).await;
    let ws = server.ws.clone();
    eventually("the session to end", || ws.active_connections() == 0).await;
    // The connection ended in order: welcome, pings, the close frame with 4000, then EOF.
    let (bytes, reset) = blocking(move || read_to_end(&mut stream)).await;
    // The session closes itself: the close frame, then EOF. (Were the close frame stuck
    // behind unread bytes for the close grace, the session would reset it instead.)
    if !reset {
        let at = bytes
            .iter()
            .rposition(|&b| b == 0x88)
            .expect("a close frame");
        assert_eq!(&bytes[at + 2..at + 4], &4000u16.to_be_bytes());
    }
    assert_eq!(
        server.ws.get_performance_metrics().await.heartbeat_timeouts,
        1
    );
    server.shutdown().await;
}

/// Reads `message` frames (answering pings) until one whose data has `"last": true`,
/// checking that `seq` runs 1, 2, 3…; reports each `seq` on `progress`. Returns the
/// connection (still open) and the last `seq`.
fn spawn_reader<C: Client + 'static>(
    mut conn: C,
    progress: tokio::sync::watch::Sender<u64>,
) -> actix_rt::task::JoinHandle<(C, u64)> {
    actix_rt::spawn(async move {
        let mut expected = 1;
        loop {
            let m = next_json(&mut conn).await;
            assert_eq!(
                m["seq"].as_u64(),
                Some(expected),
                "the reader misses nothing"
            );
            let _ = progress.send(expected);
            if m["data"]["last"] == true {
                return (conn, expected);
            }
            expected += 1;
        }
    })
}

/// Broadcasts 1 KiB messages on `feed` to a well-behaved awc client (reading
/// concurrently) and a raw client that stopped reading, until the raw client's session is
/// out of the routing (a broadcast reaches only the reader). Returns how many were
/// broadcast; checks the reader got each one, in order.
async fn flood_until_only_the_reader_is_left(server: &Server) -> (impl Client, u64) {
    let (mut reader, _) = server.connect().await;
    request(&mut reader, json!({"type": "subscribe", "topic": "feed"})).await;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let reading = spawn_reader(reader, progress_tx);
    let payload = "x".repeat(1024);
    let mut sent = 0u64;
    loop {
        // Keep the reader within 128 messages, so only the other one can fall behind.
        let behind = sent.saturating_sub(128);
        actix_rt::time::timeout(PATIENCE, progress.wait_for(|&got| got >= behind))
            .await
            .expect("the reader keeps up")
            .unwrap();
        sent += 1;
        let queued = server.ws.broadcast("feed", json!({"pad": payload})).await;
        if queued == 1 {
            break;
        }
        assert_eq!(queued, 2);
        assert!(sent < 200_000, "the silent client was never found slow");
    }
    assert_eq!(server.ws.broadcast("feed", json!({"last": true})).await, 1);
    sent += 1;
    let (reader, got) = reading
        .await
        .expect("the reader saw every message in order");
    assert_eq!(got, sent);
    (reader, sent)
}

#[actix_rt::test]
async fn a_slow_reader_is_closed_with_4008_and_reset_while_others_get_everything() {
    let cfg = WebSocketServiceConfig {
        max_queued_bytes: 256 << 10,
        heartbeat_interval: Duration::from_secs(5),
        connection_timeout: Duration::from_secs(10),
        ..config()
    };
    let server = Server::start(WebSocketService::start(cfg).unwrap());
    let mut stream = raw_subscriber(server.addr, "feed").await;
    // From here on the raw client reads nothing.
    let (mut reader, sent) = flood_until_only_the_reader_is_left(&server).await;
    assert!(
        sent > 256,
        "the slow client fell behind by its budget (256 KiB of 1 KiB messages) first: {sent}"
    );
    let ws = server.ws.clone();
    // Its close frame cannot go out (it reads nothing): the session cuts the connection
    // after the close grace, and ends.
    eventually("the slow session to end", || ws.active_connections() == 1).await;
    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!(metrics.slow_consumers, 1);
    assert_eq!(
        metrics.connections_reset, 1,
        "its close frame could not be written: the session reset it"
    );
    // The server ended the connection: the read ends (a reset, or an EOF when the client's
    // reading lets the shut-down socket flush before it is closed), never times out.
    let _ = blocking(move || read_to_end(&mut stream)).await;
    assert_eq!(
        request(&mut reader, json!({"type": "ping"})).await["type"],
        "pong"
    );
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_stalled_reader_that_keeps_pinging_is_closed_after_write_timeout_and_reset() {
    // The raw client keeps sending pings but never reads: its session hears from it, so
    // it is not timed out, but once its socket takes no byte for `write_timeout` it is a
    // slow consumer (4008), and as its close frame cannot go out either, the session cuts
    // the connection after the close grace. The byte budget is too large for the client to
    // count as slow first.
    let cfg = WebSocketServiceConfig {
        max_queued_bytes: 1 << 30,
        write_timeout: Duration::from_millis(500),
        heartbeat_interval: Duration::from_millis(200),
        connection_timeout: Duration::from_secs(60),
        ..config()
    };
    let server = Server::start(WebSocketService::start(cfg).unwrap());
    let stream = raw_subscriber(server.addr, "feed").await;
    let stop_pinging = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let mut stream = stream.try_clone().unwrap();
        let stop = stop_pinging.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if stream.write_all(&[0x89, 0x80, 0, 0, 0, 0]).is_err() {
                    break; // reset
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let (mut reader, _) = server.connect().await;
    request(&mut reader, json!({"type": "subscribe", "topic": "feed"})).await;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let reading = spawn_reader(reader, progress_tx);
    let payload = "x".repeat(8192);
    let ws = server.ws.clone();
    let mut sent = 0u64;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let queued = ws.broadcast("feed", json!({"pad": payload})).await;
        sent += 1;
        if queued == 1 {
            break; // the stalled session is out
        }
        assert_eq!(queued, 2);
        assert!(
            Instant::now() < deadline,
            "the raw client's session never stalled"
        );
        actix_rt::time::timeout(PATIENCE, progress.wait_for(|&got| got + 16 >= sent))
            .await
            .expect("the reader keeps up")
            .unwrap();
    }
    eventually("the stalled session to end", || {
        ws.active_connections() == 1
    })
    .await;
    stop_pinging.store(true, std::sync::atomic::Ordering::Relaxed);
    pinger.join().unwrap();
    let metrics = ws.get_performance_metrics().await;
    assert_eq!(
        (
            metrics.slow_consumers,
            metrics.connections_reset,
            metrics.heartbeat_timeouts
        ),
        (1, 1, 0),
        "write_timeout, then the session's reset (not the kernel's later TCP_USER_TIMEOUT)"
    );
    let mut stream = stream;
    let _ = blocking(move || read_to_end(&mut stream)).await; // ended, see above
                                                              // The reader was not disturbed, and got everything.
    assert_eq!(ws.broadcast("feed", json!({"last": true})).await, 1);
    assert_eq!(reading.await.unwrap().1, sent + 1);
    server.shutdown().await;
}

#[actix_rt::test]
async fn plain_http_on_ws_is_a_400_and_bad_configs_are_refused() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let response = awc::Client::new()
        .get(format!("http://{}/ws", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(server.ws.active_connections(), 0);
    // A browser page of another site may not connect to an open service; its own may.
    let evil = awc::Client::new()
        .ws(server.url())
        .header("Origin", "http://evil.example")
        .connect()
        .await;
    match evil {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => assert_eq!(status, 403),
        other => panic!("expected 403, got {:?}", other.map(|(r, _)| r.status())),
    }
    let own = awc::Client::new()
        .ws(server.url())
        .header("Origin", format!("http://{}", server.addr));
    let (_own, _) = connect_to(own).await;
    // Loopback only: no warning; an open service on 0.0.0.0 warns once.
    assert!(!server.ws.check_exposure([server.addr]));
    let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    assert!(server.ws.check_exposure([server.addr, any]));
    assert!(!server.ws.check_exposure([any]), "once");
    server.shutdown().await;

    let bad = WebSocketServiceConfig {
        max_queued_bytes: 0,
        ..config()
    };
    assert_eq!(
        WebSocketService::start(bad).unwrap_err().to_string(),
        "invalid config: `max_queued_bytes` must be in 4096..=1073741824, got 0"
    );
    let outside = std::thread::spawn(|| WebSocketService::start(config()).map(|_| ()))
        .join()
        .unwrap();
    assert!(matches!(
        outside,
        Err(tickwire::ConfigError::NoSystem { .. })
    ));
}

#[actix_rt::test]
async fn concurrent_broadcasters_and_churning_subscribers_lose_and_duplicate_nothing() {
    use rand::{RngExt, SeedableRng};
    const PUBLISHERS: u64 = 4;
    const PER_PUBLISHER: u64 = 500;
    const STABLE: usize = 6;
    const CHURNERS: usize = 6;
    let cfg = WebSocketServiceConfig {
        max_queued_bytes: 1 << 30, // this test is about routing, not slow consumers
        ..config()
    };
    let server = Server::start(WebSocketService::start(cfg).unwrap());

    /// What one client saw: (topic, seq, publisher, n, interval) per message; a churner's
    /// interval counts its subscribe acks (messages of one interval come from one
    /// subscription).
    type Seen = Vec<(String, u64, u64, u64, usize)>;
    let mut readers = Vec::new();
    for c in 0..STABLE + CHURNERS {
        let (mut conn, _) = server.connect().await;
        for topic in ["s.>", "end"] {
            request(&mut conn, json!({"type": "subscribe", "topic": topic})).await;
        }
        let churner = c >= STABLE;
        readers.push(actix_rt::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
            let (mut subscribed, mut pending, mut toggles) = (true, false, 0);
            // `receiving`: between the ack of a subscribe and the ack of the next
            // unsubscribe, the only time its messages may arrive (both acks are barriers).
            let (mut interval, mut receiving) = (0, true);
            let mut seen: Seen = Vec::new();
            loop {
                let m = next_json(&mut conn).await;
                match m["type"].as_str() {
                    Some("ack") => {
                        pending = false;
                        receiving = m["id"].as_str().is_some_and(|id| id.starts_with('s'));
                        if receiving {
                            interval += 1;
                        }
                    }
                    Some("message") if m["topic"] == "end" => return (churner, seen),
                    Some("message") => {
                        assert!(receiving, "client {c}: a message outside the acks: {m}");
                        seen.push((
                            m["topic"].as_str().unwrap().to_owned(),
                            m["seq"].as_u64().unwrap(),
                            m["data"]["p"].as_u64().unwrap(),
                            m["data"]["n"].as_u64().unwrap(),
                            interval,
                        ))
                    }
                    _ => panic!("unexpected {m}"),
                }
                if churner && !pending && toggles < 100 && (!subscribed || rng.random_bool(0.1)) {
                    let (kind, id) = if subscribed {
                        ("unsubscribe", format!("u{toggles}"))
                    } else {
                        ("subscribe", format!("s{toggles}"))
                    };
                    send(&mut conn, json!({"type": kind, "topic": "s.>", "id": id})).await;
                    subscribed = !subscribed;
                    pending = true;
                    toggles += 1;
                }
            }
        }));
    }
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let ws = server.ws.clone();
            actix_rt::spawn(async move {
                for n in 0..PER_PUBLISHER {
                    let topic = if n % 2 == 0 { "s.a" } else { "s.b" };
                    ws.broadcast(topic, json!({"p": p, "n": n})).await;
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    assert_eq!(
        server.ws.broadcast("end", json!(null)).await,
        STABLE + CHURNERS
    );
    let per_topic = PUBLISHERS * PER_PUBLISHER / 2;
    for reader in readers {
        let (churner, seen) = reader.await.unwrap();
        for topic in ["s.a", "s.b"] {
            let mine: Vec<_> = seen.iter().filter(|m| m.0 == topic).collect();
            // In seq order, no duplicate; each publisher's messages in its order.
            assert!(
                mine.windows(2).all(|w| w[0].1 < w[1].1),
                "{topic}: seq increases"
            );
            for p in 0..PUBLISHERS {
                let ns: Vec<u64> = mine.iter().filter(|m| m.2 == p).map(|m| m.3).collect();
                assert!(ns.windows(2).all(|w| w[0] < w[1]), "publisher {p} in order");
            }
            if !churner {
                let seqs: Vec<u64> = mine.iter().map(|m| m.1).collect();
                assert_eq!(
                    seqs,
                    (1..=per_topic).collect::<Vec<_>>(),
                    "{topic}: all, once"
                );
            } else {
                // While subscribed, nothing is lost: within one subscription's interval,
                // the topic's seqs follow one another without a gap.
                let intervals = mine.last().map_or(0, |m| m.4 + 1);
                for interval in 0..intervals {
                    let seqs: Vec<u64> = mine
                        .iter()
                        .filter(|m| m.4 == interval)
                        .map(|m| m.1)
                        .collect();
                    assert!(
                        seqs.windows(2).all(|w| w[1] == w[0] + 1),
                        "{topic}, interval {interval}: a gap while subscribed: {seqs:?}"
                    );
                }
            }
        }
    }
    server.shutdown().await;
}

/// Server-side sockets on `port` that are ESTABLISHED, from /proc/net/tcp{,6}.
#[cfg(target_os = "linux")]
fn established(port: u16) -> usize {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    f.len() > 3 && f[1].ends_with(&local) && f[3] == "01"
                })
                .count()
        })
        .sum()
}

#[cfg(target_os = "linux")]
#[actix_rt::test]
async fn clients_that_close_without_reading_leave_no_connection_behind() {
    // Each raw client sends pings it never reads the pongs of (a small server send
    // buffer makes those fill up), then a close frame. Whether its session was frozen
    // (reset by the hub) or answered the close and ended with bytes still unsent
    // (dropped by the kernel through TCP_USER_TIMEOUT), no connection may remain.
    let cfg = WebSocketServiceConfig {
        heartbeat_interval: Duration::from_millis(200),
        connection_timeout: Duration::from_millis(1000),
        ..config()
    };
    let ws = WebSocketService::start(cfg).unwrap();
    let app_ws = ws.clone();
    let server =
        HttpServer::new(move || App::new().configure(websocket::configure(app_ws.clone())))
            .on_connect(|connection, extensions| {
                if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
                    socket2::SockRef::from(tcp)
                        .set_send_buffer_size(8192)
                        .unwrap();
                }
                websocket::on_connect(connection, extensions)
            })
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            blocking(move || {
                let mut stream = raw_connect(addr);
                let mut ping = vec![0x89u8, 0x80 | 125, 0, 0, 0, 0];
                ping.extend_from_slice(&[b'p'; 125]);
                for _ in 0..400 {
                    stream.write_all(&ping).unwrap();
                }
                stream
                    .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
                    .unwrap();
                stream
            })
            .await,
        );
    }
    let port = addr.port();
    eventually("every server-side connection to end", || {
        established(port) == 0
    })
    .await;
    assert_eq!(ws.active_connections(), 0);
    drop(clients);
    ws.stop().await;
    handle.stop(true).await;
}

#[actix_rt::test]
async fn stop_delivers_what_was_queued_before_the_1001() {
    const CLIENTS: usize = 20;
    const BURST: u64 = 500;
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (mut conn, _) = server.connect().await;
        request(&mut conn, json!({"type": "subscribe", "topic": "burst"})).await;
        clients.push(conn);
    }
    for n in 0..BURST {
        assert_eq!(server.ws.broadcast("burst", json!(n)).await, CLIENTS);
    }
    // At once: much of the burst is still queued in the sessions.
    server.ws.stop().await;
    for conn in &mut clients {
        for n in 0..BURST {
            assert_eq!(
                next_json(conn).await["data"],
                n,
                "nothing queued is dropped"
            );
        }
        assert_eq!(close_code(conn).await, 1001);
    }
    server.handle.stop(true).await;
}

#[actix_rt::test]
async fn the_acks_of_subscribe_and_unsubscribe_are_barriers_under_a_flood() {
    const BROADCASTERS: usize = 8;
    const ROUNDS: usize = 20;
    let cfg = WebSocketServiceConfig {
        max_queued_bytes: 1 << 30, // this test is about ordering, not slow consumers
        ..config()
    };
    let server = Server::start(WebSocketService::start(cfg).unwrap());
    let (mut conn, _) = server.connect().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Several broadcasters, so that frames keep arriving for the session while its
    // unsubscribe is with the hub.
    let broadcasters: Vec<_> = (0..BROADCASTERS)
        .map(|_| {
            let (ws, stop) = (server.ws.clone(), stop.clone());
            actix_rt::spawn(async move {
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 1_000_000 {
                    ws.broadcast("flood.x", json!(sent)).await;
                    sent += 1;
                }
            })
        })
        .collect();
    let mut after_ack_total = 0;
    for round in 0..ROUNDS {
        let ack = request(
            &mut conn,
            json!({"type": "subscribe", "topic": "flood.>", "id": format!("s{round}")}),
        )
        .await;
        // A barrier too: nothing of the new subscription comes before its ack.
        assert_eq!(ack["type"], "ack", "round {round}: {ack}");
        // Read a few messages, then unsubscribe mid-flood.
        let mut got = 0;
        while got < 20 {
            if next_json(&mut conn).await["type"] == "message" {
                got += 1;
            }
        }
        let id = format!("u{round}");
        send(
            &mut conn,
            json!({"type": "unsubscribe", "topic": "flood.>", "id": id}),
        )
        .await;
        loop {
            let m = next_json(&mut conn).await;
            if m["type"] == "ack" {
                assert_eq!(m["id"], id.as_str());
                break;
            }
            assert_eq!(m["type"], "message", "{m}");
        }
        // After the ack: nothing of that subscription, up to the pong of a later ping.
        send(&mut conn, json!({"type": "ping", "id": "p"})).await;
        loop {
            let m = next_json(&mut conn).await;
            if m["type"] == "pong" {
                break;
            }
            after_ack_total += 1;
            assert_eq!(
                after_ack_total, 0,
                "round {round}: a message after the unsubscribe's ack: {m}"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in broadcasters {
        b.await.unwrap();
    }
    server.shutdown().await;
}
