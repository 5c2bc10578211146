//! Events: what the [`EventBus`](crate::EventBus) carries.
//!
//! An [`Event`] is a name (`market.tick`), a payload (JSON, or a typed value: see
//! [`item`](crate::item)), a [`Priority`], a process-unique id and the time it was
//! created. It is cheap to clone: everything lives behind one `Arc`, so fanning an event
//! out to many subscribers copies a pointer, not the payload.
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

use serde::Serialize;
use serde_json::Value;

pub use crate::item::Event;
use crate::item::{EventKind, Item, Name};
use crate::Priority;

impl Item<EventKind> {
    /// A new event with a JSON payload, [`Priority::Normal`], a fresh id and the current
    /// time.
    ///
    /// The name is checked when the event is published, not here (see
    /// [`PublishError::InvalidName`](crate::PublishError::InvalidName)).
    pub fn new(name: impl Into<String>, data: Value) -> Event {
        Item::json(Name::from(name.into()), data, Priority::Normal)
    }

    /// A new event with a typed payload, [`Priority::Normal`], a fresh id and the current
    /// time. No JSON is built: typed handlers get the value itself, and
    /// [`data`](Item::data) serializes it on first use (see
    /// [`item`](crate::item#typed-payloads)). A `&'static str` name costs no allocation.
    pub fn typed<T>(name: impl Into<Name>, value: T) -> Event
    where
        T: Serialize + Send + Sync + 'static,
    {
        Item::typed_value(name.into(), value, Priority::Normal)
    }

    /// The dot-separated name (`market.tick`).
    pub fn name(&self) -> &str {
        self.route()
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
        let b = Event::typed("b", 2);
        assert!(b.id() > a.id());
        let c = a.clone();
        assert_eq!((c.id(), c.data()), (a.id(), &json!(1)));
        assert!(std::ptr::eq(c.data(), a.data()));
    }

    #[test]
    fn with_priority_does_not_touch_other_clones() {
        let a = Event::new("a", json!(1));
        let b = a.clone().with_priority(Priority::Critical);
        assert_eq!(a.priority(), Priority::Normal);
        assert_eq!(b.priority(), Priority::Critical);
        assert_eq!(a.id(), b.id());
    }
}
