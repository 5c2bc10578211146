//! `tickwire::client` against a real server on 127.0.0.1:0: subscriptions, requests,
//! reconnects with recovery, refusals, close.

mod common;

use std::time::Duration;

use serde_json::json;
use tickwire::access::{Access, TokenConfig};
use tickwire::client::{
    Client, ClientConfig, ClientError, ClientEvent, Delivery, SubscribeOptions,
};
use tickwire::{
    MessageQueue, MessageQueueConfig, Priority, WebSocketService, WebSocketServiceConfig,
};
use tokio::sync::mpsc;

use common::ws::{Server, PATIENCE};

fn config() -> WebSocketServiceConfig {
    WebSocketServiceConfig {
        enable_compression: false,
        ..WebSocketServiceConfig::default()
    }
}

fn client_of(server: &Server) -> Client {
    Client::connect(ClientConfig {
        backoff_min: Duration::from_millis(20),
        ..ClientConfig::new(server.url())
    })
}

async fn next(sub: &mut tickwire::client::Subscription) -> Delivery {
    actix_rt::time::timeout(PATIENCE, sub.recv())
        .await
        .expect("a delivery within the safety timeout")
        .expect("the subscription is open")
}

/// The next event that `pick` selects (others are skipped).
async fn event<T>(
    events: &mut mpsc::Receiver<ClientEvent>,
    mut pick: impl FnMut(ClientEvent) -> Option<T>,
) -> T {
    loop {
        let event = actix_rt::time::timeout(PATIENCE, events.recv())
            .await
            .expect("an event within the safety timeout")
            .expect("events open");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

async fn opened(events: &mut mpsc::Receiver<ClientEvent>) -> String {
    event(events, |e| match e {
        ClientEvent::Open { client_id, .. } => Some(client_id),
        _ => None,
    })
    .await
}

/// The next recovery report: (recovered, unrecovered).
async fn recovery(events: &mut mpsc::Receiver<ClientEvent>) -> (bool, Vec<String>) {
    event(events, |e| match e {
        ClientEvent::Recovery {
            recovered,
            unrecovered,
            ..
        } => Some((recovered, unrecovered)),
        _ => None,
    })
    .await
}

#[actix_rt::test]
async fn subscriptions_get_their_topics_in_order_and_requests_their_answers() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let client = client_of(&server);
    let mut px = client
        .subscribe("px.*", SubscribeOptions::default())
        .await
        .unwrap();
    let mut eur = client
        .subscribe("px.eur", SubscribeOptions::default())
        .await
        .unwrap();
    assert_eq!(px.pattern(), "px.*");
    for topic in ["px.eur", "fx.eur", "px.usd", "px.eur"] {
        server.ws.broadcast(topic, json!({"t": topic})).await;
    }
    let got: Vec<(String, u64)> = [
        next(&mut px).await,
        next(&mut px).await,
        next(&mut px).await,
    ]
    .into_iter()
    .map(|d| (d.topic, d.seq))
    .collect();
    assert_eq!(
        got,
        [
            ("px.eur".into(), 1),
            ("px.usd".into(), 1),
            ("px.eur".into(), 2)
        ]
    );
    let first = next(&mut eur).await;
    assert_eq!(
        (first.topic.as_str(), first.seq, &first.data),
        ("px.eur", 1, &json!({"t": "px.eur"}))
    );
    assert!(!first.snapshot);
    assert_eq!(next(&mut eur).await.seq, 2);
    assert!(client.ping().await.unwrap() < PATIENCE);
    // Publishing is refused by this server: the error comes back as the server's.
    let refused = client
        .publish("orders.new", json!(1), Priority::Normal)
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Refused { code, .. }) if code == "publish_not_allowed"),
        "{refused:?}"
    );
    assert!(matches!(
        client.subscribe("a..b", SubscribeOptions::default()).await,
        Err(ClientError::InvalidPattern(_))
    ));
    client.close().await;
    assert_eq!(
        px.recv().await,
        None,
        "a closed client ends its subscriptions"
    );
    assert!(matches!(client.ping().await, Err(ClientError::Closed)));
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_dropped_connection_is_made_again_and_recovers_what_was_missed() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let client = client_of(&server);
    let mut events = client.events().unwrap();
    assert!(client.events().is_none(), "taken once");
    let mut sub = client
        .subscribe("t", SubscribeOptions::default())
        .await
        .unwrap();
    let mut id = opened(&mut events).await;
    let mut last = 0;
    for round in 0..5 {
        for _ in 0..10 {
            server.ws.broadcast("t", json!(round)).await;
        }
        // Read a few, drop the connection while more are published, read on: the
        // replay joins the live stream with no gap and no duplicate.
        for _ in 0..3 {
            last += 1;
            assert_eq!(next(&mut sub).await.seq, last);
        }
        assert!(server.ws.disconnect(&id).await);
        for _ in 0..10 {
            server.ws.broadcast("t", json!(round)).await;
        }
        let again = opened(&mut events).await;
        assert_ne!(again, id, "a new session");
        id = again;
        assert_eq!(recovery(&mut events).await, (true, vec![]), "round {round}");
        while last < (round + 1) * 20 {
            last += 1;
            let delivery = next(&mut sub).await;
            assert_eq!(
                (delivery.seq, delivery.snapshot),
                (last, false),
                "round {round}"
            );
        }
    }
    let metrics = server.ws.get_performance_metrics().await;
    assert_eq!((metrics.recoveries, metrics.failed_recoveries), (5, 0));
    client.close().await;
    server.shutdown().await;
}

#[actix_rt::test]
async fn what_cannot_be_recovered_is_reported_and_comes_as_a_snapshot() {
    let server = Server::start(
        WebSocketService::start(WebSocketServiceConfig {
            history_size: 2,
            ..config()
        })
        .unwrap(),
    );
    let client = client_of(&server);
    let mut events = client.events().unwrap();
    let mut sub = client
        .subscribe("px.*", SubscribeOptions::default())
        .await
        .unwrap();
    let id = opened(&mut events).await;
    server.ws.broadcast("px.a", json!(1)).await;
    assert_eq!(next(&mut sub).await.seq, 1);
    assert!(server.ws.disconnect(&id).await);
    for n in 2..=6 {
        server.ws.broadcast("px.a", json!(n)).await; // 5 and 6 kept
    }
    assert_eq!(
        recovery(&mut events).await,
        (false, vec!["px.a".to_owned()])
    );
    let snapshot = next(&mut sub).await;
    assert_eq!(
        (snapshot.seq, snapshot.snapshot, snapshot.data),
        (6, true, json!(6))
    );
    server.ws.broadcast("px.a", json!(7)).await;
    assert_eq!(next(&mut sub).await.seq, 7);
    client.close().await;
    server.shutdown().await;
}

#[actix_rt::test]
async fn a_refused_subscription_is_an_error_and_a_closed_client_leaves_no_session() {
    let access = Access::with_tokens(&[TokenConfig {
        token: "s3cret".into(),
        subscribe: vec!["market.>".into()],
        publish: vec!["orders.>".into()],
    }])
    .unwrap();
    let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
    let ws = WebSocketService::builder(WebSocketServiceConfig {
        allow_client_publish: true,
        ..config()
    })
    .access(access)
    .publish_to(mq.clone())
    .start()
    .unwrap();
    let server = Server::start(ws);
    let client = Client::connect(ClientConfig {
        token: Some("s3cret".into()),
        ..ClientConfig::new(server.url())
    });
    let refused = client
        .subscribe("orders.>", SubscribeOptions::default())
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Refused { code, .. }) if code == "forbidden"),
        "{refused:?}"
    );
    let _market = client
        .subscribe("market.>", SubscribeOptions::default())
        .await
        .unwrap();
    client
        .publish("orders.new", json!({"qty": 1}), Priority::High)
        .await
        .unwrap();
    assert_eq!(server.ws.active_connections(), 1);
    client.close().await;
    let deadline = std::time::Instant::now() + PATIENCE;
    while server.ws.active_connections() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session did not go"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    server.shutdown().await;
    mq.stop().await;
}

#[actix_rt::test]
async fn dropping_one_of_two_subscriptions_to_a_pattern_keeps_the_other() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let client = client_of(&server);
    let first = client
        .subscribe("px.*", SubscribeOptions::default())
        .await
        .unwrap();
    let mut second = client
        .subscribe("px.*", SubscribeOptions::default())
        .await
        .unwrap();
    drop(first);
    // A round trip after the drop: the unsubscribe, had it been sent, came before it.
    client.ping().await.unwrap();
    server.ws.broadcast("px.a", json!(1)).await;
    assert_eq!(next(&mut second).await.seq, 1, "still subscribed");
    assert_eq!(server.ws.get_performance_metrics().await.topics_count, 1);
    client.close().await;
    server.shutdown().await;
}

#[actix_rt::test]
async fn after_a_server_restart_nothing_is_recovered_and_the_new_sequence_is_delivered() {
    let server = Server::start(WebSocketService::start(config()).unwrap());
    let addr = server.addr;
    let client = client_of(&server);
    let mut events = client.events().unwrap();
    let mut sub = client
        .subscribe("t.*", SubscribeOptions::default())
        .await
        .unwrap();
    let old_epoch = event(&mut events, |e| match e {
        ClientEvent::Open { epoch, .. } => Some(epoch),
        _ => None,
    })
    .await;
    for n in 1..=5 {
        server.ws.broadcast("t.a", json!(n)).await;
    }
    for seq in 1..=5 {
        assert_eq!(next(&mut sub).await.seq, seq);
    }
    // A restart on the same port: another epoch, and t.a numbered from 1 again.
    server.shutdown().await;
    let server = Server::start_at(WebSocketService::start(config()).unwrap(), addr);
    for n in 1..=3 {
        server.ws.broadcast("t.a", json!(n)).await;
    }
    let (id, new_epoch) = event(&mut events, |e| match e {
        ClientEvent::Open { client_id, epoch } => Some((client_id, epoch)),
        _ => None,
    })
    .await;
    assert_ne!(new_epoch, old_epoch);
    assert_eq!(recovery(&mut events).await, (false, vec!["t.a".to_owned()]));
    let snapshot = next(&mut sub).await;
    assert_eq!((snapshot.seq, snapshot.snapshot), (3, true));
    // Positions of the old epoch are gone: 4 and 5 of the new one are not "seen already".
    for n in 4..=6 {
        server.ws.broadcast("t.a", json!(n)).await;
    }
    for seq in 4..=6 {
        let live = next(&mut sub).await;
        assert_eq!((live.seq, live.snapshot), (seq, false));
    }
    // And the positions are the new epoch's: the next reconnect recovers.
    assert!(server.ws.disconnect(&id).await);
    server.ws.broadcast("t.a", json!(7)).await;
    assert_eq!(recovery(&mut events).await, (true, vec![]));
    assert_eq!(next(&mut sub).await.seq, 7);
    client.close().await;
    server.shutdown().await;
}
