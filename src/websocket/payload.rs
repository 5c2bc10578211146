//! What a broadcast carries, and its `message` frame.
//!
//! The frame is serialized once per broadcast, whatever the number of sessions it goes
//! to: [`Payload::frame`] builds the text, and every session gets a clone of the same
//! [`ByteString`] (a reference count, no copy). A typed event or message is serialized
//! straight into that text, without building a `serde_json::Value` first.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::SystemTime;

use bytestring::ByteString;
use serde_json::Value;

use super::protocol;
use crate::{Event, Message};

/// What a broadcast carries: JSON given by the app, or a message or event to take the
/// JSON from without copying it.
pub(crate) enum Payload {
    /// A topic and JSON from the app.
    Value(Box<str>, Value),
    /// A message, on its topic.
    Message(Message),
    /// An event, on its name.
    Event(Event),
}

impl Payload {
    /// The topic it is broadcast on.
    pub(crate) fn topic(&self) -> &str {
        match self {
            Payload::Value(topic, _) => topic,
            Payload::Message(m) => m.topic(),
            Payload::Event(e) => e.name(),
        }
    }

    /// The text of its `message` frame, numbered `seq` and stamped `at`; None (logged) if
    /// its data fails to serialize or its `Serialize` panics: such a broadcast is not
    /// sent (and takes no `seq`).
    pub(crate) fn frame(&self, seq: u64, at: SystemTime) -> Option<ByteString> {
        let topic = self.topic();
        let text = catch_unwind(AssertUnwindSafe(|| {
            protocol::message_json(topic, &self.data(), seq, at)
        }));
        match text {
            Ok(Ok(text)) => Some(text.into()),
            Ok(Err(err)) => {
                tracing::warn!(topic, error = %err, "a broadcast's data does not serialize to JSON: not sent");
                None
            }
            Err(_) => {
                tracing::warn!(
                    topic,
                    "a broadcast's data panicked while serializing: not sent"
                );
                None
            }
        }
    }

    /// The data to serialize into the frame: a typed payload is serialized straight
    /// into the frame's text, without a `Value` (unless `data()` built one already).
    fn data(&self) -> PayloadData<'_> {
        match self {
            Payload::Value(_, v) => PayloadData::Json(v),
            Payload::Message(m) => PayloadData::Item(m.payload_serialize()),
            Payload::Event(e) => PayloadData::Item(e.payload_serialize()),
        }
    }
}

/// See [`Payload::data`].
enum PayloadData<'a> {
    Json(&'a Value),
    Item(crate::item::PayloadRef<'a>),
}

impl serde::Serialize for PayloadData<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PayloadData::Json(json) => json.serialize(serializer),
            PayloadData::Item(item) => item.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde::Serialize;
    use serde_json::json;

    use super::*;
    use crate::Priority;

    #[derive(Serialize)]
    struct Tick {
        symbol: &'static str,
        bid: f64,
    }

    /// Fails to serialize, or panics while serializing.
    struct Bad {
        panics: bool,
    }

    impl Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            assert!(!self.panics, "boom in serialize");
            Err(serde::ser::Error::custom("no JSON for this"))
        }
    }

    fn parsed(payload: &Payload, seq: u64) -> Value {
        let at = UNIX_EPOCH + Duration::from_micros(1_500_000);
        let text = payload.frame(seq, at).expect("a frame");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn each_payload_makes_a_message_frame_on_its_topic() {
        let tick = || Tick {
            symbol: "BTC",
            bid: 1.5,
        };
        let payloads = [
            Payload::Value("market.data".into(), json!({"p": 1})),
            Payload::Event(Event::typed("market.tick", tick())),
            Payload::Message(Message::typed("orders.new", tick(), Priority::High)),
            Payload::Message(Message::new("fx.eur", json!([1, 2]), Priority::Low)),
        ];
        let topics = payloads.each_ref().map(Payload::topic);
        assert_eq!(
            topics,
            ["market.data", "market.tick", "orders.new", "fx.eur"]
        );
        let frames = payloads.each_ref().map(|p| parsed(p, 7));
        let typed = json!({"symbol": "BTC", "bid": 1.5});
        let data = [json!({"p": 1}), typed.clone(), typed, json!([1, 2])];
        for ((frame, topic), data) in frames.iter().zip(topics).zip(data) {
            let expected = json!({
                "type": "message",
                "topic": topic,
                "data": data,
                "seq": 7,
                "timestamp": "1970-01-01T00:00:01.500000Z",
            });
            assert_eq!(frame, &expected);
        }
    }

    #[test]
    fn a_payload_that_does_not_serialize_has_no_frame() {
        let at = SystemTime::now();
        let fails = Payload::Event(Event::typed("a", Bad { panics: false }));
        assert_eq!(fails.frame(1, at), None);
        let panics = Payload::Message(Message::typed("a", Bad { panics: true }, Priority::Low));
        assert_eq!(panics.frame(1, at), None);
    }
}
