//! Events: what the [`EventBus`](crate::EventBus) carries.
//!
//! An [`Event`] is a name (`market.tick`), a JSON payload, a [`Priority`], a process-unique
//! id and the time it was created. It is cheap to clone: everything lives behind one `Arc`,
//! so fanning an event out to many subscribers copies a pointer, not the payload.
//!
//! ```
//! use tickwire::{create_event, Event, Priority};
//! use serde_json::json;
//!
//! let tick = create_event("market.tick", json!({"symbol": "BTCUSD", "price": 50000}), Priority::High);
//! assert_eq!(tick.name(), "market.tick");
//! assert_eq!(tick.priority(), Priority::High);
//! let copy = tick.clone();                   // shares the payload
//! assert_eq!(copy.id(), tick.id());
//!
//! let json = tick.to_json();
//! assert_eq!(json["priority"], 3);
//! assert_eq!(json["data"]["price"], 50000);
//! assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
//!
//! // Event::new uses Normal priority.
//! assert_eq!(Event::new("system.log", json!(null)).priority(), Priority::Normal);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use crate::core::supervision::{Delivered, HandlerFailure, DEAD_LETTER_PREFIX};
use crate::core::Deliverable;
use crate::Priority;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id, unique within this process (shared by events and messages).
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Formats a time as RFC 3339 in UTC with microseconds (`2026-11-27T01:02:03.456789Z`).
pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

#[derive(Clone)]
struct Inner {
    id: u64,
    name: Box<str>,
    data: Value,
    priority: Priority,
    timestamp: SystemTime,
}

/// A named event with a JSON payload. Cloning is a reference-count increment.
#[derive(Clone)]
pub struct Event(Arc<Inner>);

impl Event {
    /// A new event with [`Priority::Normal`], a fresh id and the current time.
    ///
    /// The name is checked when the event is published, not here (see
    /// [`PublishError::InvalidName`](crate::PublishError::InvalidName)).
    pub fn new(name: impl Into<String>, data: Value) -> Event {
        Event(Arc::new(Inner {
            id: next_id(),
            name: name.into().into_boxed_str(),
            data,
            priority: Priority::Normal,
            timestamp: SystemTime::now(),
        }))
    }

    /// The same event with another priority (copies the payload only if the event was
    /// already cloned).
    pub fn with_priority(mut self, priority: Priority) -> Event {
        Arc::make_mut(&mut self.0).priority = priority;
        self
    }

    /// Process-unique id, increasing in creation order.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The dot-separated name (`market.tick`).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The payload.
    pub fn data(&self) -> &Value {
        &self.0.data
    }

    /// The priority.
    pub fn priority(&self) -> Priority {
        self.0.priority
    }

    /// When the event was created.
    pub fn timestamp(&self) -> SystemTime {
        self.0.timestamp
    }

    /// `{"id","name","data","priority","timestamp"}`, the timestamp in RFC 3339 (UTC) and the
    /// priority as its number (1..=4).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.0.id,
            "name": &*self.0.name,
            "data": &self.0.data,
            "priority": self.0.priority,
            "timestamp": rfc3339(self.0.timestamp),
        })
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.0.id)
            .field("name", &self.0.name)
            .field("priority", &self.0.priority)
            .field("data", &self.0.data)
            .finish()
    }
}

impl Deliverable for Event {
    fn route(&self) -> &str {
        self.name()
    }

    fn priority(&self) -> Priority {
        self.priority()
    }

    fn into_delivered(self) -> Delivered {
        Delivered::Event(self)
    }

    /// `$dlq.<name>`, same priority, the failure as data (`HandlerFailure::to_json`).
    fn dead_letter(original: &Event, failure: &HandlerFailure) -> Event {
        create_event(
            format!("{DEAD_LETTER_PREFIX}{}", original.name()),
            failure.to_json(),
            original.priority(),
        )
    }
}

/// The seed's constructor: an event with a name, a payload and a priority.
pub fn create_event(name: impl Into<String>, data: Value, priority: Priority) -> Event {
    Event::new(name, data).with_priority(priority)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_increase_and_clones_share() {
        let a = Event::new("a", json!(1));
        let b = Event::new("b", json!(2));
        assert!(b.id() > a.id());
        let c = a.clone();
        assert!(Arc::ptr_eq(&a.0, &c.0));
    }

    #[test]
    fn with_priority_does_not_touch_other_clones() {
        let a = Event::new("a", json!(1));
        let b = a.clone().with_priority(Priority::Critical);
        assert_eq!(a.priority(), Priority::Normal);
        assert_eq!(b.priority(), Priority::Critical);
        assert_eq!(a.id(), b.id());
    }

    #[test]
    fn json_shape() {
        let e = create_event("x.y", json!({"k": [1, 2]}), Priority::Low);
        let j = e.to_json();
        assert_eq!(j["id"], e.id());
        assert_eq!(j["name"], "x.y");
        assert_eq!(j["priority"], 1);
        assert_eq!(j["data"], json!({"k": [1, 2]}));
        let ts = j["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339_weak(ts).is_ok(), "{ts}");
    }
}
