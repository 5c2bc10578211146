//! The HTTP surface, mountable on any actix-web `App`.
//!
//! | route | what |
//! |-------|------|
//! | `GET /` | the live dashboard (one page, no external resources; it uses `/tickwire.js`) |
//! | `GET /tickwire.js` | the browser client, an ES module ([`TICKWIRE_JS`]) |
//! | `GET /ws` | the WebSocket endpoint ([`websocket`](crate::websocket::configure)) |
//! | `GET /metrics` | Prometheus text of the three components ([`render`](crate::metrics::prometheus::render)) |
//! | `GET /api/metrics` | JSON: `{"event_bus": …, "message_queue": …, "websocket": …}`, the seed's metric sets |
//! | `POST /api/publish` | JSON `{"topic", "data", "priority"?}` onto the MessageQueue → `202 {"id"}` |
//! | `GET /health` | `200 {"status":"ok"}`, or `503 {"status":"stopping"}` during shutdown |
//!
//! `POST /api/publish` takes a bearer token when the service has tokens (as `/ws` does: the
//! `Authorization` header or `?token=`; checked before the body is read), and publishes
//! only to topics the token's `publish` patterns match. Errors are JSON,
//! `{"error": code, "message": …}`: 400 `invalid_json` (not JSON, wrong fields, not
//! `application/json`), 400 `invalid_topic`, 400 `invalid_field` (priority), 401
//! `unauthorized`, 403 `forbidden`, 413 `too_large` (over the WebSocket
//! `max_message_size`), 503 `queue_full` (with `Retry-After`), 503 `unavailable`
//! (stopping). The publish never waits for room: a full queue answers at once.
//!
//! Tokens guard `/ws` and `/api/publish` only: `/`, `/metrics`, `/api/metrics` and
//! `/health` stay open (put them behind your own middleware if they must not be).
//! `/health` answers 503 as soon as any component is stopping.
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use tickwire::http::{self, Services};
//! use tickwire::{EventBus, EventBusConfig, MessageQueue, MessageQueueConfig};
//! use tickwire::{websocket, WebSocketService, WebSocketServiceConfig};
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let services = Services {
//!         event_bus: EventBus::start(EventBusConfig::default()).unwrap(),
//!         message_queue: MessageQueue::start(MessageQueueConfig::default()).unwrap(),
//!         websocket: WebSocketService::start(WebSocketServiceConfig::default()).unwrap(),
//!     };
//!     HttpServer::new(move || App::new().configure(http::configure(services.clone())))
//!         .on_connect(websocket::on_connect)
//!         .bind("127.0.0.1:8080")?
//!         .run()
//!         .await
//! }
//! ```

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::metrics::prometheus;
use crate::reply::{json_error, unauthorized};
use crate::websocket::protocol::parse_priority;
use crate::{websocket, EventBus, MessageQueue, TryPublishError, WebSocketService};

/// The dashboard page served at `GET /`.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// The browser client served at `GET /tickwire.js`: an ES module with no dependencies
/// that connects, subscribes with per-topic callbacks, pings, reconnects with jittered
/// exponential backoff and, on every reconnect, subscribes again with `recover` from the
/// last `seq` it saw of each topic (and a `snapshot` of what cannot be recovered). Its
/// header comment documents the API; the README has a runnable snippet.
pub const TICKWIRE_JS: &str = include_str!("tickwire.js");

/// The components the HTTP surface serves. Cheap to clone (handles).
#[derive(Clone, Debug)]
pub struct Services {
    /// Metrics of `/metrics` and `/api/metrics`.
    pub event_bus: EventBus,
    /// Where `POST /api/publish` goes.
    pub message_queue: MessageQueue,
    /// `/ws`, and the tokens of `POST /api/publish`.
    pub websocket: WebSocketService,
}

/// Mounts every route of the module docs: `App::new().configure(http::configure(services))`.
pub fn configure(services: Services) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(services.clone()))
            .configure(websocket::configure(services.websocket))
            .service(web::resource("/").route(web::get().to(dashboard)))
            .service(web::resource("/tickwire.js").route(web::get().to(client_module)))
            .service(web::resource("/health").route(web::get().to(health)))
            .service(web::resource("/metrics").route(web::get().to(prometheus_text)))
            .service(web::resource("/api/metrics").route(web::get().to(api_metrics)))
            .service(web::resource("/api/publish").route(web::post().to(publish)));
    }
}

async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(DASHBOARD_HTML)
}

async fn client_module() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(TICKWIRE_JS)
}

async fn health(services: web::Data<Services>) -> HttpResponse {
    if services.event_bus.is_stopping()
        || services.message_queue.is_stopping()
        || services.websocket.is_stopping()
    {
        HttpResponse::ServiceUnavailable().json(json!({"status": "stopping"}))
    } else {
        HttpResponse::Ok().json(json!({"status": "ok"}))
    }
}

async fn prometheus_text(services: web::Data<Services>) -> HttpResponse {
    prometheus_response(exposition(&services).await)
}

/// The Prometheus text of the three components.
pub(crate) async fn exposition(services: &Services) -> String {
    let (bus, queue, ws) = futures_util::join!(
        services.event_bus.get_performance_metrics(),
        services.message_queue.get_performance_metrics(),
        services.websocket.get_performance_metrics(),
    );
    prometheus::render(Some(&bus), Some(&queue), Some(&ws))
}

/// `/metrics`'s response of `text`.
pub(crate) fn prometheus_response(text: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

async fn api_metrics(services: web::Data<Services>) -> HttpResponse {
    let (bus, queue, ws) = futures_util::join!(
        services.event_bus.get_performance_metrics(),
        services.message_queue.get_performance_metrics(),
        services.websocket.get_performance_metrics(),
    );
    HttpResponse::Ok().json(json!({
        "event_bus": bus,
        "message_queue": queue,
        "websocket": ws,
    }))
}

/// The body of `POST /api/publish`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    topic: String,
    data: Value,
    #[serde(default)]
    priority: Option<Value>,
}

async fn publish(
    req: HttpRequest,
    services: web::Data<Services>,
    mut payload: web::Payload,
) -> HttpResponse {
    let permissions = match services.websocket.access().authorize_request(&req) {
        Ok(p) => p,
        Err(err) => return unauthorized(err),
    };
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return json_error(
            400,
            "invalid_json",
            "expected Content-Type: application/json",
        );
    }
    // Read the body only now, after the token, and no more than the limit.
    let limit = services.websocket.config().max_message_size;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return json_error(400, "invalid_json", "the request body could not be read");
        };
        if body.len() + chunk.len() > limit {
            return json_error(413, "too_large", format!("the body is over {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let PublishRequest {
        topic,
        data,
        priority,
    } = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return json_error(400, "invalid_json", err),
    };
    if let Err(err) = crate::validate_name(&topic) {
        return json_error(400, "invalid_topic", err);
    }
    let priority = match priority {
        None | Some(Value::Null) => crate::Priority::default(),
        Some(p) => match parse_priority(&p) {
            Some(p) => p,
            None => {
                let message =
                    format!("`priority` must be 1..=4 or LOW, NORMAL, HIGH, CRITICAL; got {p}");
                return json_error(400, "invalid_field", message);
            }
        },
    };
    if !permissions.may_publish(&topic) {
        return json_error(
            403,
            "forbidden",
            format!("this token may not publish to {topic:?}"),
        );
    }
    match services.message_queue.try_publish(&topic, data, priority) {
        Ok(id) => HttpResponse::Accepted().json(json!({ "id": id, "topic": topic })),
        Err(err @ TryPublishError::QueueFull(_)) => {
            let mut res = json_error(503, "queue_full", err);
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            res
        }
        Err(err @ TryPublishError::InvalidName(..)) => json_error(400, "invalid_topic", err),
        Err(err) => json_error(503, "unavailable", err),
    }
}
