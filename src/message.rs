//! Messages: what the [`MessageQueue`](crate::MessageQueue) carries.
//!
//! A [`Message`] is a topic (`trading.signals`), a payload (JSON, or a typed value: see
//! [`item`](crate::item)), a [`Priority`], a process-unique id (shared numbering with
//! events) and the time it was created. Like an [`Event`](crate::Event) (the same
//! [`Item`] type of another kind), it is cheap to clone.
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

use serde::Serialize;
use serde_json::Value;

pub use crate::item::Message;
use crate::item::{Item, MessageKind, Name};
use crate::Priority;

impl Item<MessageKind> {
    /// A new message with a JSON payload, a fresh id and the current time. The topic is
    /// checked when the message is published.
    pub fn new(topic: impl Into<String>, data: Value, priority: Priority) -> Message {
        Item::json(Name::from(topic.into()), data, priority)
    }

    /// A new message with a typed payload, a fresh id and the current time; no JSON is
    /// built (see [`item`](crate::item#typed-payloads)). A `&'static str` topic costs no
    /// allocation.
    pub fn typed<T>(topic: impl Into<Name>, value: T, priority: Priority) -> Message
    where
        T: Serialize + Send + Sync + 'static,
    {
        Item::typed_value(topic.into(), value, priority)
    }

    /// The dot-separated topic.
    pub fn topic(&self) -> &str {
        self.route()
    }
}
