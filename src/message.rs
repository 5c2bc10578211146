//! Messages: what the [`MessageQueue`](crate::MessageQueue) carries.
//!
//! A [`Message`] is a topic (`trading.signals`), a JSON payload, a [`Priority`], a
//! process-unique id (shared numbering with events) and the time it was created. Like an
//! [`Event`](crate::Event), it is cheap to clone: everything lives behind one `Arc`.
//!
//! ```
//! use serde_json::json;
//! use tickwire::{Message, Priority};
//!
//! let m = Message::new("trading.signals", json!({"signal": "BUY", "confidence": 0.8}), Priority::High);
//! assert_eq!(m.topic(), "trading.signals");
//! assert_eq!(m.to_json()["priority"], 3);
//! assert_eq!(m.to_json()["topic"], "trading.signals");
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use crate::core::supervision::{Delivered, HandlerFailure, DEAD_LETTER_PREFIX};
use crate::core::Deliverable;
use crate::event::{next_id, rfc3339};
use crate::Priority;

struct Inner {
    id: u64,
    topic: Box<str>,
    data: Value,
    priority: Priority,
    timestamp: SystemTime,
}

/// A message on a topic with a JSON payload. Cloning is a reference-count increment.
#[derive(Clone)]
pub struct Message(Arc<Inner>);

impl Message {
    /// A new message with a fresh id and the current time. The topic is checked when the
    /// message is published.
    pub fn new(topic: impl Into<String>, data: Value, priority: Priority) -> Message {
        Message(Arc::new(Inner {
            id: next_id(),
            topic: topic.into().into_boxed_str(),
            data,
            priority,
            timestamp: SystemTime::now(),
        }))
    }

    /// Process-unique id (the one `publish` returned).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The dot-separated topic.
    pub fn topic(&self) -> &str {
        &self.0.topic
    }

    /// The payload.
    pub fn data(&self) -> &Value {
        &self.0.data
    }

    /// The priority.
    pub fn priority(&self) -> Priority {
        self.0.priority
    }

    /// When the message was created.
    pub fn timestamp(&self) -> SystemTime {
        self.0.timestamp
    }

    /// `{"id","topic","data","priority","timestamp"}`, the timestamp in RFC 3339 (UTC).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.0.id,
            "topic": &*self.0.topic,
            "data": &self.0.data,
            "priority": self.0.priority,
            "timestamp": rfc3339(self.0.timestamp),
        })
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.0.id)
            .field("topic", &self.0.topic)
            .field("priority", &self.0.priority)
            .field("data", &self.0.data)
            .finish()
    }
}

impl Deliverable for Message {
    fn route(&self) -> &str {
        self.topic()
    }

    fn priority(&self) -> Priority {
        self.priority()
    }

    fn into_delivered(self) -> Delivered {
        Delivered::Message(self)
    }

    /// `$dlq.<topic>`, same priority, the failure as data.
    fn dead_letter(original: &Message, failure: &HandlerFailure) -> Message {
        Message::new(
            format!("{DEAD_LETTER_PREFIX}{}", original.topic()),
            failure.to_json(),
            original.priority(),
        )
    }
}
