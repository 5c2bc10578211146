//! The HTTP surface (`tickwire::http::configure`), route by route, in-process.

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, App};
use serde_json::{json, Value};
use tickwire::access::{Access, TokenConfig};
use tickwire::http::{self, Services};
use tickwire::{
    EventBus, EventBusConfig, MessageQueue, MessageQueueConfig, Priority, WebSocketService,
    WebSocketServiceConfig,
};

fn services(access: Access, queue: MessageQueueConfig) -> Services {
    let message_queue = MessageQueue::start(queue).unwrap();
    Services {
        event_bus: EventBus::start(EventBusConfig::default()).unwrap(),
        websocket: WebSocketService::builder(WebSocketServiceConfig {
            max_message_size: 4096,
            ..WebSocketServiceConfig::default()
        })
        .access(access)
        .publish_to(message_queue.clone())
        .start()
        .unwrap(),
        message_queue,
    }
}

async fn body_json(resp: ServiceResponse<impl MessageBody>) -> Value {
    let bytes = test::read_body(resp).await;
    serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("JSON body: {bytes:?}"))
}

async fn stop(s: &Services) {
    s.event_bus.stop().await;
    s.message_queue.stop().await;
    s.websocket.stop().await;
}

async fn post(
    app: &impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
    body: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = test::TestRequest::post()
        .uri("/api/publish")
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_owned());
    if let Some(token) = token {
        req = req.insert_header(("authorization", format!("Bearer {token}")));
    }
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status().as_u16();
    (status, body_json(resp).await)
}

#[actix_rt::test]
async fn the_dashboard_is_one_self_contained_page() {
    let s = services(Access::open(), MessageQueueConfig::default());
    let app = test::init_service(App::new().configure(http::configure(s.clone()))).await;
    let resp = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(body.contains("tickwire"));
    for external in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "url(http",
        "@import",
    ] {
        assert!(
            !body.contains(external),
            "the page loads nothing from outside: {external}"
        );
    }
    stop(&s).await;
}

#[actix_rt::test]
async fn the_browser_client_is_an_es_module_with_no_dependencies() {
    let s = services(Access::open(), MessageQueueConfig::default());
    let app = test::init_service(App::new().configure(http::configure(s.clone()))).await;
    let request = test::TestRequest::get().uri("/tickwire.js").to_request();
    let resp = test::call_service(&app, request).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/javascript; charset=utf-8"
    );
    let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert_eq!(body, http::TICKWIRE_JS);
    assert!(body.contains("export class TickwireClient"));
    assert!(
        !body.lines().any(|l| l.trim_start().starts_with("import ")),
        "no dependencies"
    );
    stop(&s).await;
}

#[actix_rt::test]
async fn health_metrics_and_api_metrics() {
    let s = services(Access::open(), MessageQueueConfig::default());
    let app = test::init_service(App::new().configure(http::configure(s.clone()))).await;
    let resp = test::call_service(&app, test::TestRequest::get().uri("/health").to_request()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_json(resp).await, json!({"status": "ok"}));

    s.event_bus
        .subscribe("a", |_| std::future::ready(Ok(())))
        .await
        .unwrap();
    s.event_bus
        .publish(tickwire::Event::new("a", json!(1)))
        .await
        .unwrap();

    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let sample = |name: &str| match scrape.samples.iter().find(|s| s.metric == name) {
        Some(prometheus_parse::Sample {
            value: prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v),
            ..
        }) => *v,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(sample("tickwire_event_bus_events_published_total"), 1.0);
    assert_eq!(
        sample("tickwire_message_queue_messages_published_total"),
        0.0
    );
    assert_eq!(sample("tickwire_message_queue_queue_size"), 0.0);
    assert_eq!(sample("tickwire_websocket_active_connections"), 0.0);

    let resp = test::call_service(
        &app,
        test::TestRequest::get().uri("/api/metrics").to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let m = body_json(resp).await;
    assert_eq!(m["event_bus"]["total_events_published"], 1);
    assert_eq!(m["event_bus"]["total_handlers"], 1);
    assert_eq!(m["message_queue"]["total_queue_size"], 0);
    assert_eq!(m["message_queue"]["total_messages_published"], 0);
    assert_eq!(m["websocket"]["active_connections"], 0);
    for component in ["event_bus", "message_queue", "websocket"] {
        assert!(
            m[component]["uptime_seconds"]
                .as_f64()
                .is_some_and(|u| u >= 0.0),
            "{component}: {}",
            m[component]
        );
    }

    // 503 as soon as a component is stopping (the bus stops first at shutdown).
    s.event_bus.stop().await;
    let resp = test::call_service(&app, test::TestRequest::get().uri("/health").to_request()).await;
    assert_eq!(resp.status(), 503);
    stop(&s).await;
    let resp = test::call_service(&app, test::TestRequest::get().uri("/health").to_request()).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(body_json(resp).await, json!({"status": "stopping"}));
}

#[actix_rt::test]
async fn publish_goes_onto_the_queue_and_bad_input_gets_json_errors() {
    let s = services(Access::open(), MessageQueueConfig::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    s.message_queue
        .subscribe("orders.>", move |m| {
            let _ = tx.send(m);
            std::future::ready(Ok(()))
        })
        .await
        .unwrap();
    let app = test::init_service(App::new().configure(http::configure(s.clone()))).await;

    let (status, body) = post(
        &app,
        r#"{"topic":"orders.new","data":{"qty":3},"priority":"high"}"#,
        None,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(body["topic"], "orders.new");
    let message = rx.recv().await.unwrap();
    assert_eq!(body["id"], message.id());
    assert_eq!(
        (message.priority(), message.data()),
        (Priority::High, &json!({"qty": 3}))
    );

    let cases: &[(&str, u16, &str)] = &[
        ("{not json", 400, "invalid_json"),
        (r#"{"data":1}"#, 400, "invalid_json"),
        (
            r#"{"topic":"a","data":1,"extra":true}"#,
            400,
            "invalid_json",
        ),
        (r#"{"topic":"a..b","data":1}"#, 400, "invalid_topic"),
        (r#"{"topic":"a.*","data":1}"#, 400, "invalid_topic"),
        (
            r#"{"topic":"a","data":1,"priority":7}"#,
            400,
            "invalid_field",
        ),
    ];
    for &(body, status, code) in cases {
        let (got, reply) = post(&app, body, None).await;
        assert_eq!(
            (got, reply["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let big = json!({"topic": "a", "data": "x".repeat(5000)}).to_string();
    assert_eq!(post(&app, &big, None).await.1["error"], "too_large");
    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/api/publish")
            .set_payload("topic=a")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 400, "not application/json");
    let resp = test::call_service(
        &app,
        test::TestRequest::get().uri("/api/publish").to_request(),
    )
    .await;
    assert_eq!(resp.status(), 405);
    let long = format!(
        r#"{{"topic":"a.{}","data":1}}"#,
        "b".repeat(tickwire::MAX_NAME_BYTES)
    );
    let (status, reply) = post(&app, &long, None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid_topic"))
    );
    assert!(
        reply["message"].as_str().unwrap().contains("at most 256"),
        "{reply}"
    );
    stop(&s).await; // drains: anything published by mistake has reached the handler now
    assert!(rx.try_recv().is_err(), "nothing refused was published");
    assert!(
        s.message_queue.depth_counters() == 1,
        "only the accepted topic has a counter: {:?}",
        s.message_queue.topic_depths()
    );
    let (status, body) = post(&app, r#"{"topic":"orders.new","data":1}"#, None).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")));
}

#[actix_rt::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let s = services(
        Access::open(),
        MessageQueueConfig {
            max_size: 2,
            ..MessageQueueConfig::default()
        },
    );
    // The handler holds the first message until the gate opens: nothing else is taken.
    let (gate_tx, gate) = tokio::sync::watch::channel(false);
    let (taken_tx, mut taken) = tokio::sync::mpsc::unbounded_channel();
    s.message_queue
        .subscribe("held", move |_| {
            let mut gate = gate.clone();
            let _ = taken_tx.send(());
            async move {
                let _ = gate.wait_for(|open| *open).await;
                Ok(())
            }
        })
        .await
        .unwrap();
    let app = test::init_service(App::new().configure(http::configure(s.clone()))).await;
    let publish = || {
        test::TestRequest::post()
            .uri("/api/publish")
            .insert_header(("content-type", "application/json"))
            .set_payload(r#"{"topic":"held","data":1}"#)
            .to_request()
    };
    assert_eq!(test::call_service(&app, publish()).await.status(), 202);
    taken.recv().await.unwrap();
    // Now nothing leaves the queue: it fills, then refuses every publish.
    let mut accepted = 1;
    let resp = loop {
        let resp = test::call_service(&app, publish()).await;
        if resp.status() != 202 {
            break resp;
        }
        accepted += 1;
        assert!(accepted <= 10, "max_size 2 is never reached");
    };
    assert_eq!(accepted, 3, "one in hand, two waiting");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    assert_eq!(body_json(resp).await["error"], "queue_full");
    assert_eq!(
        test::call_service(&app, publish()).await.status(),
        503,
        "stays full"
    );
    gate_tx.send(true).unwrap();
    stop(&s).await;
}

#[actix_rt::test]
async fn publish_with_tokens_needs_one_that_allows_the_topic() {
    let access = Access::with_tokens(&[
        TokenConfig {
            token: "writer".into(),
            subscribe: vec![],
            publish: vec!["orders.>".into()],
        },
        TokenConfig {
            token: "reader".into(),
            subscribe: vec![">".into()],
            publish: vec![],
        },
    ])
    .unwrap();
    let s = services(access, MessageQueueConfig::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    s.message_queue
        .subscribe(">", move |m| {
            let _ = tx.send(m.topic().to_owned());
            std::future::ready(Ok(()))
        })
        .await
        .unwrap();
    let app = test::init_service(App::new().configure(http::configure(s.clone()))).await;
    let body = r#"{"topic":"orders.new","data":1}"#;
    let (status, reply) = post(&app, body, None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(post(&app, body, Some("nope")).await.0, 401);
    let (status, reply) = post(&app, body, Some("reader")).await;
    assert_eq!((status, reply["error"].as_str()), (403, Some("forbidden")));
    assert_eq!(post(&app, body, Some("writer")).await.0, 202);
    let (status, _) = post(&app, r#"{"topic":"market.x","data":1}"#, Some("writer")).await;
    assert_eq!(status, 403);
    let req = test::TestRequest::post()
        .uri("/api/publish?token=writer")
        .insert_header(("content-type", "application/json"))
        .set_payload(body)
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 202);
    stop(&s).await;
    let published: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert_eq!(
        published,
        ["orders.new", "orders.new"],
        "the two accepted, only"
    );
}

#[actix_rt::test]
async fn mounting_leaves_the_host_apps_json_settings_alone() {
    let s = services(Access::open(), MessageQueueConfig::default());
    let app = test::init_service(
        App::new()
            .route(
                "/host",
                actix_web::web::post().to(|body: actix_web::web::Json<Value>| async move {
                    actix_web::HttpResponse::Ok().json(body.into_inner())
                }),
            )
            .configure(http::configure(s.clone())),
    )
    .await;
    // Larger than tickwire's max_message_size (4096): the host's default limit applies.
    let big = json!({"pad": "x".repeat(5000)}).to_string();
    let req = test::TestRequest::post()
        .uri("/host")
        .insert_header(("content-type", "application/json"))
        .set_payload(big)
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 200);
    stop(&s).await;
}
