//! A strategy node of the cluster example (`examples/cluster/run.sh`): a member of the
//! consumer group `strategy` on the MessageQueue topic `market.data`, which the feed
//! node (`tickwire serve --demo`) publishes and the cluster spans. Each tick goes to one
//! member across every strategy node; this one keeps a moving average per symbol and
//! publishes a signal (`signals.<symbol>`, clustered too) when the price crosses it, and
//! an order on the durable topic `orders.new` (kept in JetStream: acknowledged only
//! after a handler took it).
//!
//! With `--http ADDR`, the node also serves the tickwire dashboard and `/ws` on ADDR,
//! bridging `market.>` and `signals.>` to its WebSocket clients: a browser on this node
//! sees the feed node's ticks and both strategy nodes' signals.
//!
//! Run: `cargo run --release --features cluster --example cluster_strategy -- NATS_URL NODE
//! [--http ADDR] [--seconds S]`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpServer};
use serde_json::json;
use tickwire::cluster::{Cluster, ClusterConfig};
use tickwire::http::{self, Services};
use tickwire::{
    bridge, websocket, EventBus, EventBusConfig, MessageQueue, MessageQueueConfig, Priority,
    WebSocketService, WebSocketServiceConfig,
};

/// Ticks per moving average.
const WINDOW: usize = 20;

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: cluster_strategy NATS_URL NODE [--http ADDR] [--seconds S]";
    let nats_url = args.next().ok_or(usage)?;
    let node = args.next().ok_or(usage)?;
    let (mut http_addr, mut seconds) = (None, None);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--http" => http_addr = Some(args.next().ok_or(usage)?),
            "--seconds" => seconds = Some(args.next().ok_or(usage)?.parse::<f64>()?),
            _ => return Err(usage.into()),
        }
    }

    let cluster = Cluster::connect(ClusterConfig {
        nats_url,
        node: Some(node.clone()),
        message_queue: vec!["market.>".into(), "signals.>".into(), "orders.>".into()],
        durable: vec!["orders.>".into()],
        ..ClusterConfig::default()
    })
    .await?;
    let mq = MessageQueue::start(MessageQueueConfig::default())?;
    cluster.attach_message_queue(&mq).await?;

    let handled = Arc::new(AtomicU64::new(0));
    let prices: Arc<Mutex<HashMap<String, Vec<f64>>>> = Arc::default();
    let (h, p, publisher, me) = (handled.clone(), prices.clone(), mq.clone(), node.clone());
    mq.subscribe_group("market.data", "strategy", move |tick| {
        h.fetch_add(1, Ordering::Relaxed);
        let symbol = tick.data()["symbol"].as_str().unwrap_or("?").to_owned();
        let price = tick.data()["price"].as_f64().unwrap_or_default();
        let crossed = {
            let mut prices = p.lock().expect("not poisoned");
            let window = prices.entry(symbol.clone()).or_default();
            let before = window.iter().sum::<f64>() / window.len().max(1) as f64;
            window.push(price);
            if window.len() > WINDOW {
                window.remove(0);
            }
            let last = window.len() >= 2 && window[window.len() - 2] <= before;
            (window.len() == WINDOW && last && price > before).then_some(before)
        };
        let (publisher, me) = (publisher.clone(), me.clone());
        async move {
            if let Some(average) = crossed {
                let signal =
                    json!({"symbol": symbol, "price": price, "average": average, "node": me});
                publisher
                    .publish(&format!("signals.{symbol}"), signal.clone(), Priority::High)
                    .await?;
                publisher
                    .publish("orders.new", signal, Priority::High)
                    .await?;
            }
            Ok(())
        }
    })
    .await?;
    cluster.sync().await?;
    println!("{node}: a member of `strategy` on market.data");

    let server = match http_addr {
        Some(addr) => {
            let services = Services {
                event_bus: EventBus::start(EventBusConfig::default())?,
                websocket: WebSocketService::builder(WebSocketServiceConfig::default())
                    .publish_to(mq.clone())
                    .start()?,
                message_queue: mq.clone(),
            };
            for topics in ["market.>", "signals.>"] {
                bridge::queue_to_websocket(&services.message_queue, &services.websocket, topics)
                    .await?;
            }
            let app = services.clone();
            let server =
                HttpServer::new(move || App::new().configure(http::configure(app.clone())))
                    .on_connect(websocket::on_connect)
                    .workers(1)
                    .bind(&addr)?;
            println!("{node}: dashboard on http://{}/", server.addrs()[0]);
            let server = server.run();
            let handle = server.handle();
            actix_rt::spawn(server);
            Some(handle)
        }
        None => None,
    };

    let run = async {
        loop {
            actix_rt::time::sleep(Duration::from_secs(2)).await;
            let m = cluster.metrics();
            println!(
                "{node}: {} ticks handled, cluster received {} published {} link {:?}",
                handled.load(Ordering::Relaxed),
                m.received,
                m.published,
                m.link
            );
        }
    };
    match seconds {
        Some(s) => {
            let _ = tokio::time::timeout(Duration::from_secs_f64(s), run).await;
        }
        None => {
            tokio::select! {
                _ = run => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    }
    if let Some(server) = server {
        server.stop(true).await;
    }
    cluster.close().await;
    mq.stop().await;
    println!("{node}: {} ticks handled", handled.load(Ordering::Relaxed));
    Ok(())
}
