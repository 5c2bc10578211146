//! What supervision tells `tracing`: one span per handler run with the handler name, the
//! event name and the attempt; a warning per retry; an error per dead letter.
//!
//! A test binary of its own: it installs a global subscriber (handlers run on worker
//! threads, which a thread-local subscriber would not see).

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tickwire::{create_handler_config, Event, EventBus, EventBusConfig};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event as TracingEvent, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// A line per span or event: `span handler handler.name=.. event.name=.. attempt=..` or
/// `WARN message=.. attempt=..`.
#[derive(Clone, Default)]
struct Record(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl<S: Subscriber> Layer<S> for Record {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = Fields(format!("span {}", attrs.metadata().name()));
        attrs.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }

    fn on_event(&self, event: &TracingEvent<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO {
            return;
        }
        let mut fields = Fields(level.to_string());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[actix_rt::test]
async fn spans_warnings_and_errors() {
    let record = Record::default();
    let subscriber = tracing_subscriber::registry().with(record.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let bus = EventBus::start(EventBusConfig {
        max_workers: 1,
        ..EventBusConfig::default()
    })
    .unwrap();
    let config = create_handler_config("fragile")
        .max_retries(1)
        .retry_delay(Duration::from_millis(1));
    bus.subscribe_with("orders.new", config, |_| {
        std::future::ready(Err("rejected".into()))
    })
    .await
    .unwrap();
    bus.publish(Event::new("orders.new", json!(1)))
        .await
        .unwrap();
    bus.stop().await;

    let lines = record.0.lock().unwrap().clone();
    let spans: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("span handler"))
        .collect();
    assert_eq!(
        spans,
        [
            "span handler handler.name=fragile event.name=orders.new attempt=1",
            "span handler handler.name=fragile event.name=orders.new attempt=2",
        ],
        "{lines:#?}"
    );
    let warnings: Vec<&String> = lines.iter().filter(|l| l.starts_with("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    assert!(
        warnings[0].contains("handler failed; retrying"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("attempt=1") && warnings[0].contains("error=rejected"),
        "{}",
        warnings[0]
    );
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{lines:#?}");
    assert!(errors[0].contains("dead letter"), "{}", errors[0]);
    assert!(errors[0].contains("attempts=2"), "{}", errors[0]);
}
