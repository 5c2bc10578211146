//! The seed's monitoring system: system events on the EventBus, pushed to WebSocket
//! clients.
//!
//! A sampler publishes `system.cpu` and `system.memory` events every 250 ms (read from
//! `/proc` on Linux, simulated elsewhere) and a `system.alert` (CRITICAL) when the load
//! crosses a threshold. As in the seed, one handler broadcasts every `system.*` event on
//! the WebSocket topic `system.events` (`{type, data, timestamp, priority}`) and another
//! broadcasts alerts on `system.alerts` (`{alert, severity, timestamp}`). The example
//! serves `/ws`, connects a client of its own (`tickwire::client`) subscribed to
//! `system.>` and prints what it receives.
//!
//! Run: `cargo run --release --example monitoring_system -- [seconds] [bind]` (defaults:
//! 3 s on 127.0.0.1:0, a free port).

use std::time::Duration;

use actix_web::{App, HttpServer};
use futures_util::StreamExt;
use serde_json::json;
use tickwire::client::{Client, ClientConfig, SubscribeOptions};
use tickwire::{
    create_event, create_handler_config, websocket, EventBus, EventBusConfig, Priority,
    WebSocketService, WebSocketServiceConfig,
};

/// The 1-minute load average and the share of memory in use, in percent.
fn sample(step: u64) -> (f64, f64) {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok());
    let memory = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let field = |name: &str| -> Option<f64> {
            s.lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some(100.0 * (1.0 - field("MemAvailable:")? / field("MemTotal:")?))
    });
    let simulated = (step as f64 / 5.0).sin().abs() * 2.0;
    (
        load.unwrap_or(simulated),
        memory.unwrap_or(40.0 + simulated),
    )
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:0".into());

    let bus = EventBus::start(EventBusConfig::default()).expect("valid config");
    let ws = WebSocketService::start(WebSocketServiceConfig::default()).expect("valid config");

    // The seed's system_event_handler: every system.* event to "system.events".
    let events_ws = ws.clone();
    bus.subscribe_with(
        "system.*",
        create_handler_config("system_event_handler"),
        move |event| {
            let ws = events_ws.clone();
            async move {
                let frame = json!({
                    "type": event.name(),
                    "data": event.data(),
                    "timestamp": humantime::format_rfc3339_micros(event.timestamp()).to_string(),
                    "priority": event.priority().value(),
                });
                ws.broadcast("system.events", frame).await;
                Ok(())
            }
        },
    )
    .await
    .expect("subscribe");
    // The seed's alert_handler: system.alert to "system.alerts".
    let alerts_ws = ws.clone();
    bus.subscribe_with(
        "system.alert",
        create_handler_config("alert_handler"),
        move |event| {
            let ws = alerts_ws.clone();
            async move {
                let frame = json!({
                    "alert": event.data(),
                    "severity": event.priority().value(),
                    "timestamp": humantime::format_rfc3339_micros(event.timestamp()).to_string(),
                });
                ws.broadcast("system.alerts", frame).await;
                Ok(())
            }
        },
    )
    .await
    .expect("subscribe");

    let app_ws = ws.clone();
    let server =
        HttpServer::new(move || App::new().configure(websocket::configure(app_ws.clone())))
            .on_connect(websocket::on_connect)
            .workers(1)
            .bind(&bind)?;
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    println!("serving ws://{addr}/ws: subscribe to system.> to watch");

    // start_system_monitoring: the sampler.
    let sampler = {
        let bus = bus.clone();
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(Duration::from_millis(250));
            for step in 0.. {
                tick.tick().await;
                let (load, memory) = sample(step);
                let _ = bus.try_publish(create_event(
                    "system.cpu",
                    json!({"load_1m": load}),
                    Priority::Normal,
                ));
                let _ = bus.try_publish(create_event(
                    "system.memory",
                    json!({"used_percent": (memory * 10.0).round() / 10.0}),
                    Priority::Low,
                ));
                // Every 4th sample, or under real load, an alert.
                if load > 4.0 || step % 4 == 3 {
                    let alert = json!({"message": format!("load {load:.2}"), "sample": step});
                    let _ =
                        bus.try_publish(create_event("system.alert", alert, Priority::Critical));
                }
            }
        })
    };

    let client = Client::connect(ClientConfig::new(format!("ws://{addr}/ws")));
    let mut events = client
        .subscribe("system.>", SubscribeOptions::default())
        .await
        .expect("subscribe on our own server");
    let deadline = actix_rt::time::sleep(Duration::from_secs_f64(seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            event = events.next() => match event {
                Some(e) => println!("{:>14} #{:<3} {}", e.topic, e.seq, e.data),
                None => break,
            },
        }
    }
    client.close().await;
    sampler.abort();
    bus.stop().await;
    ws.stop().await;
    handle.stop(true).await;
    Ok(())
}
