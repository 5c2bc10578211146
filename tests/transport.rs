//! The WebSocket transport on the wire, read by a client written against the RFCs
//! (`common::raw`): permessage-deflate negotiation and framing (RFC 7692), the inbound
//! inflate limit, byte-based flow control, conflation, and the backpressure of a client
//! publish into a full MessageQueue.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tickwire::{MessageQueue, MessageQueueConfig, WebSocketService, WebSocketServiceConfig};

use common::raw::{deflate, rss_kib, RawClient};
use common::ws::{Server, PATIENCE};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

fn config() -> WebSocketServiceConfig {
    WebSocketServiceConfig::default()
}

/// Held by the tests that move megabytes, so that the one measuring the process's
/// memory sees only its own.
static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs blocking socket code off the test's runtime thread (which also drives the server).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    actix_rt::task::spawn_blocking(f)
        .await
        .expect("blocking client code")
}

/// Waits (bounded) until `done` holds.
async fn eventually(what: &str, done: impl FnMut() -> bool) {
    common::eventually(what, PATIENCE, done).await
}

/// A raw client, welcomed, subscribed to `topic` (acknowledged).
fn subscribed(addr: SocketAddr, extra: &str, topic: &str, conflate: bool) -> RawClient {
    let mut client = RawClient::connect(addr, extra, None);
    assert_eq!(client.json()["type"], "welcome");
    let mut frame = json!({"type": "subscribe", "topic": topic, "id": 1});
    if conflate {
        frame["conflate"] = json!(true);
    }
    client.send_json(&frame);
    let ack = client.json();
    assert_eq!(
        (&ack["type"], &ack["id"]),
        (&json!("ack"), &json!(1)),
        "{ack}"
    );
    client
}

/// A JSON payload of about `size` bytes that deflate shrinks a lot.
fn wordy(size: usize) -> Value {
    let text: String = "bid ask last volume ".chars().cycle().take(size).collect();
    json!({"text": text})
}

#[actix_rt::test]
async fn deflate_is_negotiated_and_large_broadcasts_go_compressed_small_replies_not() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let addr = server.addr;
    let mut client = blocking(move || subscribed(addr, OFFER, "feed", false)).await;
    assert_eq!(
        client.header("Sec-WebSocket-Extensions").as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    assert_eq!(
        server
            .ws
            .get_performance_metrics()
            .await
            .compressed_sessions,
        1
    );
    assert_eq!(server.ws.broadcast("feed", wordy(4000)).await, 1);
    assert_eq!(server.ws.broadcast("feed", json!({"n": 1})).await, 1);
    let (large, small, pong, pong_frame) = blocking(move || {
        let large = client.text();
        let small = client.text();
        // A compressed client message, inflated and answered (uncompressed: it is tiny).
        let ping = json!({"type": "ping", "id": "z"}).to_string();
        client.send(true, true, 1, &deflate(ping.as_bytes()));
        let (pong, pong_frame) = client.text();
        (large, small, pong, pong_frame)
    })
    .await;
    let (text, frame) = large;
    assert!(frame.rsv1, "a 4 KB broadcast is compressed");
    assert!(
        frame.wire_len * 4 < text.len(),
        "and much smaller on the wire: {} for {}",
        frame.wire_len,
        text.len()
    );
    let message: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(message["data"], wordy(4000));
    assert_eq!(message["seq"], 1);
    let (text, frame) = small;
    assert!(!frame.rsv1, "a message under compression_min_size is not");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["seq"], 2);
    assert_eq!(
        serde_json::from_str::<Value>(&pong).unwrap(),
        json!({"type": "pong", "id": "z"})
    );
    assert!(!pong_frame.rsv1);
    let metrics = server.ws.get_performance_metrics().await;
    let (wire, plain) = (
        metrics.wire_bytes_sent.unwrap(),
        metrics.uncompressed_bytes_sent.unwrap(),
    );
    assert!(wire * 2 < plain, "wire {wire} < uncompressed {plain}");
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_client_that_keeps_its_context_is_inflated_with_it_and_one_that_offers_not_to_gets_it_answered(
) {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let addr = server.addr;
    let (pongs, header) = blocking(move || {
        let mut client = RawClient::connect(addr, OFFER, None);
        assert_eq!(client.json()["type"], "welcome");
        // One compressor for both messages, never reset: the second refers to the first.
        let mut context = common::raw::Deflater::new();
        let mut pongs = Vec::new();
        for id in ["first", "second"] {
            let ping = json!({"type": "ping", "id": id}).to_string();
            client.send(true, true, 1, &context.message(ping.as_bytes()));
            pongs.push(client.json());
        }
        let other = RawClient::connect(
            addr,
            "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n",
            None,
        );
        (pongs, other.header("Sec-WebSocket-Extensions"))
    })
    .await;
    assert_eq!(
        pongs,
        [
            json!({"type": "pong", "id": "first"}),
            json!({"type": "pong", "id": "second"})
        ]
    );
    assert_eq!(
        header.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    server.shutdown().await;
}

#[actix_rt::test]
async fn nothing_is_negotiated_without_an_offer_or_with_compression_off() {
    let off = WebSocketServiceConfig {
        enable_compression: false,
        ..config()
    };
    for (cfg, extra) in [(config(), ""), (off, OFFER)] {
        let server = Server::start(WebSocketService::start(cfg).unwrap());
        let addr = server.addr;
        let mut client = blocking(move || subscribed(addr, extra, "feed", false)).await;
        assert_eq!(client.header("Sec-WebSocket-Extensions"), None);
        server.ws.broadcast("feed", wordy(4000)).await;
        let frame = blocking(move || {
            let frame = client.text().1;
            // RSV1 without the extension is a protocol error.
            client.send(true, true, 1, &deflate(b"{\"type\":\"ping\"}"));
            (frame, client.close_code_at_end())
        })
        .await;
        assert!(!frame.0.rsv1);
        assert_eq!(frame.1, Some(1002));
        assert_eq!(
            server
                .ws
                .get_performance_metrics()
                .await
                .compressed_sessions,
            0
        );
        server.shutdown().await;
    }
}

#[actix_rt::test]
async fn a_decompression_bomb_is_closed_with_1009_and_memory_stays_bounded() {
    let _memory = MEMORY.lock().await;
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let addr = server.addr;
    // 50 MB of zeros deflate to about 50 KB: far under max_message_size (1 MiB) on the
    // wire, 50 times over it inflated.
    let bomb = deflate(&vec![0u8; 50 << 20]);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let before = rss_kib();
    let code = blocking(move || {
        let mut client = RawClient::connect(addr, OFFER, None);
        assert_eq!(client.json()["type"], "welcome");
        client.send(true, true, 1, &bomb);
        client.close_code_at_end()
    })
    .await;
    assert_eq!(code, Some(1009));
    if let (Some(before), Some(after)) = (before, rss_kib()) {
        assert!(
            after < before + 16 * 1024,
            "inflating stopped at the limit: RSS {before} KiB → {after} KiB"
        );
    }
    let ws = server.ws.clone();
    eventually("the session to end", || ws.active_connections() == 0).await;
    assert_eq!(ws.get_performance_metrics().await.oversize_messages, 1);
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_reader_that_falls_behind_in_a_burst_within_the_budget_gets_everything() {
    // 4,000 messages of 1 KiB (4 MiB) broadcast at once, far past what the socket
    // buffers hold, within the 16 MiB budget: the old count of 1,024 messages cut such a
    // reader. (No write_timeout: the reader starts once all are broadcast.)
    let _memory = MEMORY.lock().await;
    let cfg = WebSocketServiceConfig {
        write_timeout: Duration::from_secs(3600),
        ..config()
    };
    let server = Server::start(WebSocketService::start(cfg).unwrap());
    let addr = server.addr;
    let mut client = blocking(move || subscribed(addr, "", "burst", false)).await;
    let pad = "x".repeat(1024);
    for n in 1..=4000 {
        assert_eq!(
            server
                .ws
                .broadcast("burst", json!({"n": n, "pad": pad}))
                .await,
            1
        );
    }
    let seqs = blocking(move || {
        (0..4000)
            .map(|_| client.json()["seq"].as_u64())
            .collect::<Vec<_>>()
    })
    .await;
    let expected: Vec<Option<u64>> = (1..=4000).map(Some).collect();
    assert_eq!(seqs, expected);
    assert_eq!(server.ws.get_performance_metrics().await.slow_consumers, 0);
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_conflated_subscription_gets_the_latest_per_topic_and_is_never_slow() {
    let _memory = MEMORY.lock().await;
    let cfg = WebSocketServiceConfig {
        max_queued_bytes: 64 << 10,
        ..config()
    };
    let server = Server::start(WebSocketService::start(cfg).unwrap());
    let addr = server.addr;
    // A small receive buffer, and no reading while the prices move.
    let mut client = blocking(move || {
        let mut client = RawClient::connect(addr, "", Some(4096));
        assert_eq!(client.json()["type"], "welcome");
        client.send_json(&json!({"type": "subscribe", "topic": "px.*", "conflate": true, "id": 1}));
        let ack = client.json();
        assert_eq!(
            (&ack["type"], &ack["id"]),
            (&json!("ack"), &json!(1)),
            "{ack}"
        );
        client
    })
    .await;
    let pad = "p".repeat(1000);
    let rounds = 3000u64;
    for n in 1..=rounds {
        for topic in ["px.btc", "px.eth"] {
            let queued = server
                .ws
                .broadcast(topic, json!({"n": n, "pad": pad}))
                .await;
            assert_eq!(
                queued, 1,
                "6 MB into a 64 KiB budget, and never a slow consumer"
            );
        }
    }
    // On a topic of its own: on px.btc it would replace the latest price (conflation).
    server.ws.broadcast("px.end", json!({"last": true})).await;
    let got = blocking(move || {
        let mut got: Vec<(String, u64, Value)> = Vec::new();
        loop {
            let m = client.json();
            let topic = m["topic"].as_str().unwrap().to_owned();
            let last = m["data"]["last"] == true;
            got.push((topic, m["seq"].as_u64().unwrap(), m["data"]["n"].clone()));
            if last {
                return got;
            }
        }
    })
    .await;
    for topic in ["px.btc", "px.eth"] {
        let seqs: Vec<u64> = got.iter().filter(|g| g.0 == topic).map(|g| g.1).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{topic} in order: {seqs:?}"
        );
        // Each topic's latest price came.
        let latest = got.iter().rfind(|g| g.0 == topic);
        assert_eq!(latest.map(|g| g.2.clone()), Some(json!(rounds)), "{topic}");
    }
    assert!(
        (got.len() as u64) < rounds,
        "older prices were replaced while waiting: {} received of {} broadcast",
        got.len(),
        2 * rounds + 1
    );
    assert_eq!(server.ws.get_performance_metrics().await.slow_consumers, 0);
    server.shutdown().await;
}

/// A MessageQueue of `max_size` 1 whose one subscriber (to `orders.new`) holds each
/// message until the gate opens, counting those it handled; and a service with client
/// publish into it.
async fn held_queue(
    default_timeout: Duration,
) -> (
    MessageQueue,
    tokio::sync::watch::Sender<bool>,
    Arc<std::sync::atomic::AtomicU64>,
    Server,
) {
    let queue = MessageQueue::start(MessageQueueConfig {
        max_size: 1,
        default_timeout,
        ..MessageQueueConfig::default()
    })
    .unwrap();
    let (gate_tx, gate) = tokio::sync::watch::channel(false);
    let handled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = handled.clone();
    queue
        .subscribe("orders.new", move |_| {
            let (mut gate, counted) = (gate.clone(), counted.clone());
            async move {
                let _ = gate.wait_for(|open| *open).await;
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        })
        .await
        .unwrap();
    let cfg = WebSocketServiceConfig {
        allow_client_publish: true,
        ..config()
    };
    let ws = WebSocketService::builder(cfg)
        .publish_to(queue.clone())
        .start()
        .unwrap();
    (queue, gate_tx, handled, Server::start(ws))
}

#[actix_rt::test]
async fn a_client_publish_into_a_full_queue_waits_for_room_instead_of_failing() {
    let (queue, gate_tx, handled, server) = held_queue(Duration::from_secs(20)).await;
    let addr = server.addr;
    // Ten publishes and a ping, sent at once: the held handler has the first, the queue
    // room for one more, so the session acknowledges two and waits for room, reading
    // nothing meanwhile: no further reply comes while the handler is held.
    let mut client = blocking(move || {
        let mut client = RawClient::connect(addr, "", None);
        assert_eq!(client.json()["type"], "welcome");
        for n in 0..10 {
            client
                .send_json(&json!({"type": "publish", "topic": "orders.new", "data": n, "id": n}));
        }
        client.send_json(&json!({"type": "ping", "id": "after"}));
        for n in 0..2 {
            assert_eq!(client.json(), json!({"type": "ack", "id": n}));
        }
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(client.nothing_pending(), "the third publish waits for room");
        client.stream.set_read_timeout(Some(PATIENCE)).unwrap();
        client
    })
    .await;
    // Let the handler go: every other publish is acknowledged, in order, then the pong.
    gate_tx.send(true).unwrap();
    let replies = blocking(move || (2..11).map(|_| client.json()).collect::<Vec<_>>()).await;
    let mut expected: Vec<Value> = (2..10).map(|n| json!({"type": "ack", "id": n})).collect();
    expected.push(json!({"type": "pong", "id": "after"}));
    assert_eq!(replies, expected);
    let handled_all = handled.clone();
    eventually("the ten messages handled", move || {
        handled_all.load(std::sync::atomic::Ordering::Relaxed) == 10
    })
    .await;
    server.shutdown().await;
    queue.stop().await;
}

#[actix_rt::test]
async fn a_client_publish_that_finds_no_room_within_default_timeout_gets_queue_full() {
    let (queue, gate_tx, _, server) = held_queue(Duration::from_millis(300)).await;
    let addr = server.addr;
    let replies = blocking(move || {
        let mut client = RawClient::connect(addr, "", None);
        assert_eq!(client.json()["type"], "welcome");
        // The first is taken by the held handler, the second fills the queue, the third
        // waits default_timeout and is refused; the session stays open.
        let mut replies = Vec::new();
        for n in 0..3 {
            client
                .send_json(&json!({"type": "publish", "topic": "orders.new", "data": n, "id": n}));
            replies.push(client.json());
        }
        client.send_json(&json!({"type": "ping", "id": "p"}));
        replies.push(client.json());
        replies
    })
    .await;
    let shape: Vec<(Value, Value)> = replies
        .iter()
        .map(|r| (r["type"].clone(), r["code"].clone()))
        .collect();
    assert_eq!(
        shape,
        [
            (json!("ack"), Value::Null),
            (json!("ack"), Value::Null),
            (json!("error"), json!("queue_full")),
            (json!("pong"), Value::Null),
        ],
        "{replies:?}"
    );
    gate_tx.send(true).unwrap();
    server.shutdown().await;
    queue.stop().await;
}

#[actix_rt::test]
async fn a_client_close_is_answered_with_its_code_at_once() {
    // (That it is at once, not at the session's next tick, is measured by the churn
    // benchmark: a test does not time it.)
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let addr = server.addr;
    let codes = blocking(move || {
        (0..3u16)
            .map(|i| {
                let mut client = RawClient::connect(addr, "", None);
                assert_eq!(client.json()["type"], "welcome");
                // An empty close is answered with an empty one.
                let payload = match [Some(1000u16), Some(4321), None][usize::from(i)] {
                    Some(code) => [&code.to_be_bytes()[..], b"bye"].concat(),
                    None => Vec::new(),
                };
                client.send(true, false, 8, &payload);
                let reply = client.frame();
                assert_eq!(reply.opcode, 8);
                if payload.is_empty() {
                    assert_eq!(reply.payload, b"");
                }
                let end = client.try_frame();
                assert_eq!(end, None, "then the connection ends");
                reply.close_code()
            })
            .collect::<Vec<_>>()
    })
    .await;
    assert_eq!(codes, [Some(1000), Some(4321), None]);
    server.shutdown().await;
}

/// Long enough that a server lingering for the client to end its side (actix-web's
/// `client_disconnect_timeout`) outlasts the raw client's 20 s read timeout: a test that
/// sees the end within it sees the server end the connection itself.
const LINGER: Duration = Duration::from_secs(120);

/// A raw client, welcomed; its client id.
fn welcomed(addr: SocketAddr) -> (RawClient, String) {
    let mut client = RawClient::connect(addr, "", None);
    let welcome = client.json();
    assert_eq!(welcome["type"], "welcome");
    let id = welcome["client_id"].as_str().expect("client_id").to_owned();
    (client, id)
}

/// A server whose actix-web lingers for `LINGER` after a response (so that a test sees
/// whether the session ends a connection itself), and its service.
fn lingering() -> (Server, WebSocketService) {
    let service = WebSocketService::start(config()).unwrap();
    (
        Server::start_lingering(service.clone(), Some(LINGER)),
        service,
    )
}

/// Every session gone, none reset, then the server stopped.
async fn all_ended_in_order(server: Server, service: WebSocketService) {
    eventually("every session ended", || service.active_connections() == 0).await;
    assert_eq!(service.get_performance_metrics().await.connections_reset, 0);
    server.shutdown().await;
}

#[actix_rt::test]
async fn after_answering_a_client_close_the_server_ends_the_tcp_connection_first() {
    // RFC 6455 7.1.1: the server closes the TCP connection first. A client that waits for
    // it (without ending its own side) must not wait for actix-web's linger.
    let (server, service) = lingering();
    let addr = server.addr;
    blocking(move || {
        for _ in 0..3 {
            let (mut client, _) = welcomed(addr);
            client.send(true, false, 8, &1000u16.to_be_bytes());
            assert_eq!(client.frame().close_code(), Some(1000));
            assert!(client.ends_in_order(), "FIN, not a reset");
        }
    })
    .await;
    all_ended_in_order(server, service).await;
}

#[actix_rt::test]
async fn a_server_close_waits_for_the_client_reply_then_ends_the_tcp_connection() {
    let (server, service) = lingering();
    let addr = server.addr;
    let (mut client, id) = blocking(move || welcomed(addr)).await;
    assert!(service.disconnect(&id).await);
    blocking(move || {
        let close = client.frame();
        assert_eq!((close.opcode, close.close_code()), (8, Some(1000)));
        // The server waits for the reply (for CLOSE_REPLY_WAIT, 1 s): no end yet.
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(client.nothing_pending(), "the server waits for the reply");
        client.stream.set_read_timeout(Some(PATIENCE)).unwrap();
        // The reply completes the handshake: the server reads it (it is not discarded by
        // a lingering actix-web) and ends the connection at once.
        client.send(true, false, 8, &1000u16.to_be_bytes());
        assert!(client.ends_in_order(), "FIN, not a reset");
    })
    .await;
    all_ended_in_order(server, service).await;
}

#[actix_rt::test]
async fn a_client_that_never_answers_a_server_close_gets_the_connection_ended_in_order() {
    // It reads (it takes the close frame) but sends no close: the server waits for the
    // reply a while (`CLOSE_REPLY_WAIT`), then ends the connection, in order: not a reset,
    // nor actix-web's linger.
    let (server, service) = lingering();
    let addr = server.addr;
    let (mut client, id) = blocking(move || welcomed(addr)).await;
    assert!(service.disconnect(&id).await);
    blocking(move || {
        assert_eq!(client.frame().close_code(), Some(1000));
        assert!(client.ends_in_order(), "FIN, not a reset");
    })
    .await;
    all_ended_in_order(server, service).await;
}
