//! Mounting tickwire in an existing actix-web application.
//!
//! The app has routes of its own (`/`, `/orders`); tickwire's whole HTTP surface is
//! mounted under `/tickwire` with `tickwire::http::configure` (dashboard at
//! `/tickwire/`, WebSocket at `/tickwire/ws`, `/tickwire/metrics`, `/tickwire/api/…`).
//! The app's own `POST /orders` handler publishes onto tickwire's MessageQueue, and a
//! bridge pushes `orders.*` to WebSocket clients. The example calls its own routes once
//! to show them working, then serves until Ctrl-C (or for the given seconds).
//!
//! Run: `cargo run --release --example embed_in_actix_web -- [seconds] [bind]`
//! (defaults: serve until Ctrl-C on 127.0.0.1:8080).

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};
use tickwire::http::{self, Services};
use tickwire::{
    bridge, websocket, EventBus, EventBusConfig, MessageQueue, MessageQueueConfig, Priority,
    WebSocketService, WebSocketServiceConfig,
};

/// The app's own handler, using tickwire's MessageQueue.
async fn new_order(services: web::Data<Services>, order: web::Json<Value>) -> HttpResponse {
    match services
        .message_queue
        .publish("orders.new", order.into_inner(), Priority::High)
        .await
    {
        Ok(id) => HttpResponse::Created().json(json!({ "order_message_id": id })),
        Err(err) => HttpResponse::ServiceUnavailable().json(json!({ "error": err.to_string() })),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: Option<f64> = args.next().and_then(|a| a.parse().ok());
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());

    let message_queue = MessageQueue::start(MessageQueueConfig::default()).expect("valid config");
    let services = Services {
        event_bus: EventBus::start(EventBusConfig::default()).expect("valid config"),
        websocket: WebSocketService::builder(WebSocketServiceConfig::default())
            .publish_to(message_queue.clone())
            .start()
            .expect("valid config"),
        message_queue,
    };
    bridge::queue_to_websocket(&services.message_queue, &services.websocket, "orders.*")
        .await
        .expect("bridge");

    let app_services = services.clone();
    let server = HttpServer::new(move || {
        App::new()
            // The application's own routes.
            .route(
                "/",
                web::get().to(|| async { HttpResponse::Ok().body("my trading app") }),
            )
            .service(
                web::resource("/orders")
                    .app_data(web::Data::new(app_services.clone()))
                    .route(web::post().to(new_order)),
            )
            // tickwire, under a prefix.
            .service(web::scope("/tickwire").configure(http::configure(app_services.clone())))
    })
    .on_connect(websocket::on_connect)
    .workers(2)
    .bind(&bind)?;
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    println!("app on http://{addr}/ ; tickwire dashboard on http://{addr}/tickwire/");

    // Show the routes working.
    let client = awc::Client::new();
    let mut response = client
        .post(format!("http://{addr}/orders"))
        .send_json(&json!({"symbol": "BTCUSD", "side": "buy", "qty": 0.5}))
        .await
        .expect("POST /orders");
    println!(
        "POST /orders -> {} {:?}",
        response.status(),
        response.body().await
    );
    let mut response = client
        .get(format!("http://{addr}/tickwire/health"))
        .send()
        .await
        .expect("GET /tickwire/health");
    println!(
        "GET /tickwire/health -> {} {:?}",
        response.status(),
        response.body().await
    );

    match seconds {
        Some(s) => actix_rt::time::sleep(Duration::from_secs_f64(s)).await,
        None => {
            let _ = actix_rt::signal::ctrl_c().await;
        }
    }
    services.event_bus.stop().await;
    services.message_queue.stop().await;
    services.websocket.stop().await;
    handle.stop(true).await;
    Ok(())
}
