//! Items: the one type behind [`Event`] and [`Message`].
//!
//! An [`Item`] is a route (an event's name, a message's topic), a payload, a [`Priority`],
//! a process-unique id and the time it was created. `Event` is `Item<EventKind>` and
//! `Message` is `Item<MessageKind>`: the two differ only in what their route is called
//! (`name()` / `topic()`, and the JSON key) and in their constructors. An item is cheap to
//! clone: everything, the payload included, lives in one reference-counted allocation, so
//! fanning an item out to many subscribers copies a pointer.
//!
//! ## Typed payloads
//!
//! A payload is either JSON (a [`serde_json::Value`], as a WebSocket client or
//! `/api/publish` sends it; from another cluster node, its text, parsed on the first
//! [`data`](Item::data)) or a typed Rust value. [`Event::typed`] and
//! [`Message::typed`] keep the value itself: no JSON is built, and a typed handler
//! ([`EventBus::subscribe_typed`](crate::EventBus::subscribe_typed)) gets the very value
//! the publisher made. [`payload`](Item::payload) gives it back by type; [`data`](Item::data)
//! serializes it to JSON on its first call, once, and caches it, so however many consumers
//! need the JSON (history, `/api/*`, a bridge, logs) it is built once. A WebSocket
//! broadcast serializes a typed value straight into the frame's text, without a `Value`,
//! unless `data()` already built one. (The two agree, except where serde_json itself
//! writes a value differently from the `Value` it converts it to: an `f32` is written in
//! its shortest form, `0.1`, but becomes the `f64` `0.10000000149011612` in a `Value`;
//! a `u128` beyond `u64::MAX` is written as a number but has no `Value`, so `data()` is
//! `null`.) A value whose `Serialize` fails or panics has `null` as its JSON, with a
//! warning logged.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tickwire::{Event, Message, Priority};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Tick { symbol: String, bid: f64, ask: f64 }
//!
//! let tick = Event::typed("market.tick", Tick { symbol: "BTCUSD".into(), bid: 1.0, ask: 2.0 });
//! assert_eq!(tick.payload::<Tick>().map(|t| t.bid), Some(1.0)); // the value itself
//! assert_eq!(tick.payload::<String>(), None);                    // not of that type
//! assert_eq!(tick.data()["symbol"], "BTCUSD");                     // JSON, built once
//! assert_eq!(tick.to_json()["data"]["ask"], 2.0);
//!
//! let order = Message::typed("orders.new", 5u32, Priority::High);
//! assert_eq!((order.topic(), order.payload::<u32>()), ("orders.new", Some(&5)));
//!
//! // A JSON item has no typed payload; a typed handler decodes it through serde.
//! let json = Event::new("market.tick", serde_json::json!({"symbol": "ETHUSD", "bid": 3.0, "ask": 4.0}));
//! assert_eq!(json.payload::<Tick>(), None);
//! ```
//!
//! A name given as a `&'static str` is kept as it is (no allocation): a typed event with a
//! literal name costs one allocation, the item's. [`Name`] says which names convert.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

mod body;
mod delivery;
mod name;

pub use delivery::{
    DeadLetter, Deliverable, Delivered, HandlerFailure, SubscriptionId, DEAD_LETTER_PREFIX,
};
pub use name::Name;

use crate::util::clock::{self, rfc3339};
use crate::util::id::next_id;
use crate::Priority;
pub(crate) use body::PayloadRef;
use body::{Body, Json, SharedBody, TypedBody};

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::EventKind {}
    impl Sealed for super::MessageKind {}
}

/// What an [`Item`] is: [`EventKind`] or [`MessageKind`]. Implemented by those two only.
pub trait Kind: sealed::Sealed + Send + Sync + Unpin + 'static {
    /// The type's name in `Debug` output (`Event`, `Message`).
    const NAME: &'static str;
    /// The JSON key of the route (`name`, `topic`).
    const ROUTE_KEY: &'static str;
    /// The item as reported in a [`HandlerFailure`].
    #[doc(hidden)]
    fn delivered(item: Item<Self>) -> Delivered
    where
        Self: Sized;
}

/// The kind of an [`Event`]: what the [`EventBus`](crate::EventBus) carries.
#[derive(Debug)]
pub enum EventKind {}

/// The kind of a [`Message`]: what the [`MessageQueue`](crate::MessageQueue) carries.
#[derive(Debug)]
pub enum MessageKind {}

impl Kind for EventKind {
    const NAME: &'static str = "Event";
    const ROUTE_KEY: &'static str = "name";

    fn delivered(item: Event) -> Delivered {
        Delivered::Event(item)
    }
}

impl Kind for MessageKind {
    const NAME: &'static str = "Message";
    const ROUTE_KEY: &'static str = "topic";

    fn delivered(item: Message) -> Delivered {
        Delivered::Message(item)
    }
}

/// A named event with a JSON or typed payload (see [`Item`]).
pub type Event = Item<EventKind>;
/// A message on a topic with a JSON or typed payload (see [`Item`]).
pub type Message = Item<MessageKind>;

/// An event or a message: see the [module docs](self). Cloning is a reference-count
/// increment.
pub struct Item<K> {
    inner: Arc<Inner<dyn Body>>,
    kind: PhantomData<fn() -> K>,
}

struct Inner<B: ?Sized> {
    id: u64,
    route: Name,
    priority: Priority,
    timestamp: SystemTime,
    body: B,
}

impl<K> Clone for Item<K> {
    fn clone(&self) -> Self {
        Item {
            inner: self.inner.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: Kind> Item<K> {
    fn make(route: Name, priority: Priority, body: impl Body) -> Self {
        Item {
            inner: Arc::new(Inner {
                id: next_id(),
                route,
                priority,
                timestamp: clock::now(),
                body,
            }),
            kind: PhantomData,
        }
    }

    /// An item with a JSON payload, a fresh id and the current time.
    pub(crate) fn json(route: Name, data: Value, priority: Priority) -> Self {
        Item::make(route, priority, Json(data))
    }

    /// An item that another process published: its id, priority and time, and its
    /// payload as JSON text, which the caller checked is JSON (a cluster's inbound side).
    /// The `Value` is parsed on the first [`data`](Self::data) only.
    #[cfg(feature = "cluster")]
    pub(crate) fn received(
        route: Name,
        text: bytes::Bytes,
        priority: Priority,
        id: u64,
        timestamp: SystemTime,
    ) -> Self {
        Item {
            inner: Arc::new(Inner {
                id,
                route,
                priority,
                timestamp,
                body: body::Received {
                    text,
                    json: OnceLock::new(),
                },
            }),
            kind: PhantomData,
        }
    }

    /// An item with a typed payload, a fresh id and the current time; no JSON is built.
    pub(crate) fn typed_value<T>(route: Name, value: T, priority: Priority) -> Self
    where
        T: Serialize + Send + Sync + 'static,
    {
        Item::make(
            route,
            priority,
            TypedBody {
                value,
                json: OnceLock::new(),
            },
        )
    }

    /// Process-unique id, increasing in creation order (events and messages share the
    /// numbering).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The route: the event's name or the message's topic.
    pub fn route(&self) -> &str {
        &self.inner.route
    }

    /// The payload as JSON. A typed payload is serialized on the first call, once, and
    /// the result is kept (a value that does not serialize gives `null`, with a warning
    /// logged); a payload received from another cluster node is parsed from its JSON
    /// text on the first call, once.
    pub fn data(&self) -> &Value {
        self.inner.body.data()
    }

    /// The typed value, when the item was made with `typed` from a `T`; `None` for a
    /// JSON payload or a value of another type (decode those with serde, as a typed
    /// handler does: [`Typed`](crate::Typed)).
    pub fn payload<T: 'static>(&self) -> Option<&T> {
        self.inner.body.value()?.downcast_ref::<T>()
    }

    /// The Rust type of the payload (`serde_json::value::Value` for JSON).
    pub fn payload_type(&self) -> &'static str {
        self.inner.body.type_name()
    }

    /// Whether the payload is a typed value rather than JSON.
    pub fn is_typed(&self) -> bool {
        self.inner.body.value().is_some()
    }

    /// The priority.
    pub fn priority(&self) -> Priority {
        self.inner.priority
    }

    /// The same item (same id, payload and time) with another priority. The item is
    /// changed in place if this is its only handle; otherwise the copy shares the payload.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.priority = priority;
            return self;
        }
        // Share the payload's own item, so that copies of copies do not nest.
        let original = match self.inner.body.origin() {
            Some(origin) => origin.clone(),
            None => self.inner.clone(),
        };
        Item {
            inner: Arc::new(Inner {
                id: self.inner.id,
                route: self.inner.route.clone(),
                priority,
                timestamp: self.inner.timestamp,
                body: SharedBody(original),
            }),
            kind: PhantomData,
        }
    }

    /// When the item was created.
    pub fn timestamp(&self) -> SystemTime {
        self.inner.timestamp
    }

    /// `{"id", "name" or "topic", "data", "priority", "timestamp"}`: the timestamp in
    /// RFC 3339 (UTC), the priority as its number (1..=4); `data` is [`data`](Self::data)
    /// (built once for a typed payload). Serializing the item with serde gives the same
    /// shape, writing a typed payload directly.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.inner.id,
            K::ROUTE_KEY: self.route(),
            "data": self.data(),
            "priority": self.inner.priority,
            "timestamp": rfc3339(self.inner.timestamp),
        })
    }

    /// The payload, serializable straight into any format: the JSON if it was built, else
    /// the typed value itself.
    pub(crate) fn payload_serialize(&self) -> PayloadRef<'_> {
        PayloadRef(&self.inner.body)
    }

    /// The payload's JSON text when it was received as text (built `Value` or not):
    /// what a typed handler decodes from, so that the outcome does not depend on
    /// whether something called [`data`](Self::data) first.
    pub(crate) fn json_text(&self) -> Option<&[u8]> {
        self.inner.body.text()
    }

    /// Whether the payload's `Value` exists (built, or the payload is one).
    #[cfg(all(test, feature = "cluster"))]
    pub(crate) fn json_built(&self) -> bool {
        self.inner.body.built().is_some()
    }
}

impl<K: Kind> Serialize for Item<K> {
    /// As [`to_json`](Item::to_json): a typed payload is serialized directly (no `Value`
    /// is built unless `data()` built one already).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("id", &self.inner.id)?;
        map.serialize_entry(K::ROUTE_KEY, self.route())?;
        map.serialize_entry("data", &self.payload_serialize())?;
        map.serialize_entry("priority", &self.inner.priority)?;
        map.serialize_entry("timestamp", &rfc3339(self.inner.timestamp))?;
        map.end()
    }
}

impl<K: Kind> fmt::Debug for Item<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct(K::NAME);
        s.field("id", &self.inner.id)
            .field(K::ROUTE_KEY, &self.route())
            .field("priority", &self.inner.priority);
        match (self.inner.body.built(), self.inner.body.text()) {
            (Some(json), _) => s.field("data", json),
            // Received JSON, not parsed yet: its text (checked to be JSON, so UTF-8).
            (None, Some(text)) => s.field("data", &String::from_utf8_lossy(text)),
            (None, None) => s.field("payload", &self.payload_type()),
        };
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts how often it is serialized.
    struct Counted(&'static AtomicUsize);

    impl Serialize for Counted {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            self.0.fetch_add(1, Ordering::Relaxed);
            serializer.serialize_u64(7)
        }
    }

    #[test]
    fn a_typed_payload_is_serialized_once_however_often_its_json_is_asked_for() {
        static SERIALIZED: AtomicUsize = AtomicUsize::new(0);
        let event = Event::typed("a", Counted(&SERIALIZED));
        assert!(event.payload::<Counted>().is_some());
        assert_eq!(SERIALIZED.load(Ordering::Relaxed), 0, "no JSON until asked");
        for _ in 0..3 {
            assert_eq!(event.clone().to_json()["data"], 7);
            assert_eq!(event.data(), &json!(7));
        }
        assert_eq!(SERIALIZED.load(Ordering::Relaxed), 1);
        // A copy with another priority shares the payload, and its JSON.
        let copy = event.clone().with_priority(Priority::High);
        let copy_of_copy = copy.clone().with_priority(Priority::Low);
        assert_eq!(copy_of_copy.to_json()["data"], 7);
        assert_eq!(SERIALIZED.load(Ordering::Relaxed), 1);
        assert!(copy_of_copy
            .inner
            .body
            .origin()
            .is_some_and(|o| Arc::ptr_eq(o, &event.inner)));
    }

    #[test]
    fn with_priority_keeps_the_payload_and_leaves_other_handles_alone() {
        let shared = Event::typed("a", 5u8);
        let copy = shared.clone().with_priority(Priority::Critical);
        assert_eq!(
            (shared.priority(), copy.priority()),
            (Priority::Normal, Priority::Critical)
        );
        assert_eq!((copy.id(), copy.payload::<u8>()), (shared.id(), Some(&5)));
        assert_eq!(copy.payload_type(), "u8");
        assert!(copy.is_typed());
        // The only handle is changed in place.
        let alone = Message::new("b", json!(1), Priority::Low);
        let before = Arc::as_ptr(&alone.inner) as *const u8;
        let alone = alone.with_priority(Priority::High);
        assert_eq!(Arc::as_ptr(&alone.inner) as *const u8, before);
        assert_eq!(alone.priority(), Priority::High);
    }

    #[test]
    fn a_json_item_has_no_typed_payload_and_the_json_shape_is_the_same_for_both() {
        let json_event = create_event_for_test(json!({"k": [1, 2]}));
        assert_eq!(json_event.payload::<Value>(), None);
        assert!(!json_event.is_typed());
        #[derive(Serialize)]
        struct K {
            k: [u8; 2],
        }
        let typed = Event::typed("x.y", K { k: [1, 2] }).with_priority(Priority::Low);
        for (e, typed) in [(json_event, false), (typed, true)] {
            let j = e.to_json();
            assert_eq!(j["id"], e.id());
            assert_eq!(j["name"], "x.y");
            assert_eq!(j["priority"], 1);
            assert_eq!(j["data"], json!({"k": [1, 2]}));
            assert_eq!(e.is_typed(), typed);
            let ts = j["timestamp"].as_str().unwrap();
            assert!(humantime::parse_rfc3339_weak(ts).is_ok(), "{ts}");
            assert_eq!(serde_json::to_value(&e).unwrap(), j);
        }
        let m = Message::typed("t", 1u8, Priority::High).to_json();
        assert_eq!((&m["topic"], &m["data"]), (&json!("t"), &json!(1)));
    }

    fn create_event_for_test(data: Value) -> Event {
        Event::new("x.y", data).with_priority(Priority::Low)
    }

    #[test]
    fn a_serialize_that_panics_gives_null() {
        struct Explodes;
        impl Serialize for Explodes {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                panic!("boom in serialize")
            }
        }
        let event = Event::typed("a", Explodes);
        assert_eq!(event.data(), &Value::Null);
        assert_eq!(event.to_json()["data"], Value::Null);
    }

    #[test]
    fn a_value_that_does_not_serialize_gives_null() {
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), 3); // tuple keys are not JSON
        let event = Event::typed("a", map);
        assert_eq!(event.data(), &Value::Null);
        assert!(event
            .payload::<std::collections::HashMap<(i32, i32), i32>>()
            .is_some());
    }
}
