//! Recovery after a reconnect, in a browser: a page that uses `/tickwire.js`, a feed that
//! keeps publishing, and a server that drops the page's connection on request.
//!
//! The server publishes `feed.a` and `feed.b` (100 messages/s each, about 300 bytes, so
//! they go compressed to a browser) and serves:
//! - `GET /`: a page that subscribes to `feed.*` through `tickwire.js` and shows, per
//!   topic, the first and last `seq` and how many messages came, and any gap, duplicate
//!   or message out of order. Its "drop" button asks the server to drop its connection:
//!   the client reconnects, recovers what it missed, and the counts stay gap-free.
//!   `/?drops=3` drops it three times on its own (the browser check in `tests/browser`
//!   does that).
//! - `POST /drop/{client_id}`: [`WebSocketService::disconnect`] (close 1000).
//! - `GET /stats`: the WebSocket metrics, as JSON.
//! - `GET /tickwire.js` and `GET /ws`.
//!
//! Run: `cargo run --release --example recovery -- [bind]` (default 127.0.0.1:8080), then
//! open the address it prints.

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;
use tickwire::{http, websocket, WebSocketService, WebSocketServiceConfig};

const PAGE: &str = include_str!("recovery.html");

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(PAGE)
}

async fn client_module() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(http::TICKWIRE_JS)
}

async fn drop_client(ws: web::Data<WebSocketService>, id: web::Path<String>) -> HttpResponse {
    if ws.disconnect(&id).await {
        HttpResponse::Ok().json(json!({"dropped": *id}))
    } else {
        HttpResponse::NotFound().json(json!({"error": "no such client", "client_id": *id}))
    }
}

async fn stats(ws: web::Data<WebSocketService>) -> HttpResponse {
    HttpResponse::Ok().json(ws.get_performance_metrics().await)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let ws = WebSocketService::start(WebSocketServiceConfig::default()).expect("valid config");

    let feed = ws.clone();
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_millis(10));
        let note = "recovered after every reconnect, in order, with no gap ".repeat(4);
        for n in 0u64.. {
            tick.tick().await;
            for topic in ["feed.a", "feed.b"] {
                let price = 100.0 + (n % 1000) as f64 / 100.0;
                feed.broadcast(topic, json!({ "n": n, "price": price, "note": note }))
                    .await;
            }
        }
    });

    let app_ws = ws.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(app_ws.clone()))
            .configure(websocket::configure(app_ws.clone()))
            .route("/", web::get().to(page))
            .route("/tickwire.js", web::get().to(client_module))
            .route("/drop/{client_id}", web::post().to(drop_client))
            .route("/stats", web::get().to(stats))
    })
    .on_connect(websocket::on_connect)
    .bind(&bind)?;
    for addr in server.addrs() {
        println!("listening on http://{addr}/");
    }
    server.run().await?;
    ws.stop().await;
    Ok(())
}
