//! EventBus → MessageQueue → WebSocket, served by actix-web.
//!
//! A feed thread publishes `market.tick` events; `bridge::event_bus_to_queue` turns them
//! into `events.market.tick` messages; `bridge::queue_to_websocket` broadcasts those to
//! every WebSocket client subscribed to the topic. The example serves `/ws` and, to show
//! the whole path, connects one WebSocket client of its own (`tickwire::client`) and
//! prints what it receives.
//!
//! Run: `cargo run --release --example bridge -- [seconds] [bind]` (defaults: 5 s on
//! 127.0.0.1:8080). While it runs, any WebSocket client can connect, for example
//! `websocat ws://127.0.0.1:8080/ws` and send `{"type":"subscribe","topic":"events.>"}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer};
use futures_util::StreamExt;
use tickwire::client::{Client, ClientConfig, SubscribeOptions};
use tickwire::{
    bridge, websocket, Event, EventBus, EventBusConfig, MessageQueue, MessageQueueConfig, Priority,
    WebSocketService, WebSocketServiceConfig,
};

/// What the feed publishes (typed: the bridges serialize it once, into the frames).
#[derive(serde::Serialize)]
struct Tick {
    symbol: &'static str,
    price: f64,
    n: u64,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());

    let bus = EventBus::start(EventBusConfig::default()).expect("valid config");
    let queue = MessageQueue::start(MessageQueueConfig::default()).expect("valid config");
    let ws = WebSocketService::start(WebSocketServiceConfig::default()).expect("valid config");
    bridge::event_bus_to_queue(&bus, &queue, "market.tick")
        .await
        .expect("bridge");
    bridge::queue_to_websocket(&queue, &ws, "events.>")
        .await
        .expect("bridge");

    let app_ws = ws.clone();
    let server =
        HttpServer::new(move || App::new().configure(websocket::configure(app_ws.clone())))
            .on_connect(websocket::on_connect)
            .workers(2)
            .bind(&bind)?;
    let addr = server.addrs()[0];
    ws.check_exposure(server.addrs());
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    println!("serving ws://{addr}/ws for {seconds} s");

    // The feed: a plain thread, as an exchange connection would be.
    let running = Arc::new(AtomicBool::new(true));
    let feed = {
        let (bus, running) = (bus.clone(), running.clone());
        std::thread::spawn(move || {
            let mut price = 50_000.0_f64;
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                n += 1;
                price *= 1.0 + (rand::random::<f64>() - 0.5) * 0.001;
                let tick = Tick {
                    symbol: "BTCUSD",
                    price: (price * 100.0).round() / 100.0,
                    n,
                };
                let _ = bus
                    .try_publish(Event::typed("market.tick", tick).with_priority(Priority::High));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // A client of our own (tickwire::client), to show the path end to end.
    let client = Client::connect(ClientConfig::new(format!("ws://{addr}/ws")));
    let mut ticks = client
        .subscribe("events.market.tick", SubscribeOptions::default())
        .await
        .expect("subscribe on our own server");
    let deadline = actix_rt::time::sleep(Duration::from_secs_f64(seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = actix_rt::signal::ctrl_c() => break,
            tick = ticks.next() => match tick {
                Some(tick) => println!(
                    "client got seq {} on {}: {} @ {}",
                    tick.seq, tick.topic, tick.data["data"]["symbol"], tick.data["data"]["price"]
                ),
                None => break,
            },
        }
    }
    client.close().await;

    running.store(false, Ordering::Relaxed);
    let _ = feed.join();
    bus.stop().await;
    queue.stop().await;
    ws.stop().await; // closes every session with 1001
    let metrics = ws.get_performance_metrics().await;
    println!(
        "websocket: {} connections, {:?} messages sent",
        metrics.total_connections, metrics.total_messages_sent
    );
    handle.stop(true).await;
    Ok(())
}
