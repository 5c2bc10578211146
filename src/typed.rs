//! What a typed handler receives: [`Typed`] (an event's value) and [`TypedMessage`] (a
//! message's).
//!
//! Both deref to the value and keep the item at hand. The value is the publisher's own
//! when the item was made with `typed::<T>` (no copy, no JSON); otherwise (a JSON payload
//! from a WebSocket client, `/api/publish`, a bridge or another cluster node, or a typed
//! value of another Rust type) it is decoded into `T` through serde, once per
//! subscription and item, before the first attempt (from another node's JSON text
//! directly, without a `serde_json::Value`). An item that does not decode is not retried (it never would decode):
//! it becomes a dead letter at once, with one attempt and a [`DecodeError`]'s text as
//! its error, and counts in the errors.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tickwire::{Event, Typed};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Tick { symbol: String, bid: f64 }
//!
//! let typed = Event::typed("market.tick", Tick { symbol: "BTCUSD".into(), bid: 1.5 });
//! let tick = Typed::<Tick>::decode(&typed).unwrap();
//! assert_eq!(tick.bid, 1.5);                                      // Deref to the value
//! assert!(std::ptr::eq(&*tick, typed.payload::<Tick>().unwrap())); // the publisher's own
//! assert_eq!(tick.event().name(), "market.tick");
//!
//! let json = Event::new("market.tick", serde_json::json!({"symbol": "ETHUSD", "bid": 2.5}));
//! assert_eq!(Typed::<Tick>::decode(&json).unwrap().symbol, "ETHUSD"); // decoded by serde
//!
//! let bad = Event::new("market.tick", serde_json::json!({"symbol": 5}));
//! let err = Typed::<Tick>::decode(&bad).unwrap_err();
//! assert!(err.to_string().contains("Tick"), "{err}");
//! assert!(err.to_string().contains("invalid type"), "{err}");
//! ```

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::item::{EventKind, Item, Kind, MessageKind};
use crate::{Event, Message};

/// A typed view of an item: derefs to the `T` it carries (see the [module docs](self)).
/// Cloning is cheap (reference counts).
pub struct Typed<T, K = EventKind> {
    item: Item<K>,
    /// The value decoded through serde; `None` when the item carries a `T` itself.
    decoded: Option<Arc<T>>,
}

/// What a typed MessageQueue handler receives: a [`Typed`] view of a [`Message`].
pub type TypedMessage<T> = Typed<T, MessageKind>;

/// An item whose payload does not decode into the type a handler expects.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {route:?} ({found}) as {expected}: {reason}")]
#[non_exhaustive]
pub struct DecodeError {
    /// The item's name or topic.
    pub route: String,
    /// The Rust type the handler expects.
    pub expected: &'static str,
    /// The payload's type (`serde_json::value::Value` for JSON).
    pub found: &'static str,
    /// What serde said.
    pub reason: String,
}

impl<T, K: Kind> Typed<T, K>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    /// The item's value as a `T`: its own when it carries one, else decoded from its JSON
    /// (serializing a typed value of another type first, once: see
    /// [`Item::data`](crate::Item::data)).
    pub fn decode(item: &Item<K>) -> Result<Self, DecodeError> {
        if let Some(own) = Typed::own(item) {
            return Ok(own);
        }
        let decoded = match item.json_text() {
            Some(text) => serde_json::from_slice::<T>(text),
            None => T::deserialize(item.data()),
        };
        match decoded {
            Ok(value) => Ok(Typed {
                item: item.clone(),
                decoded: Some(Arc::new(value)),
            }),
            Err(err) => Err(DecodeError {
                route: item.route().to_owned(),
                expected: std::any::type_name::<T>(),
                found: item.payload_type(),
                reason: err.to_string(),
            }),
        }
    }
}

impl<T: 'static, K: Kind> Typed<T, K> {
    /// The view of an item that carries a `T` itself; `None` for any other payload.
    pub(crate) fn own(item: &Item<K>) -> Option<Self> {
        item.payload::<T>().map(|_| Typed {
            item: item.clone(),
            decoded: None,
        })
    }

    /// The value.
    pub fn value(&self) -> &T {
        match &self.decoded {
            Some(value) => value,
            None => self
                .item
                .payload::<T>()
                .expect("a Typed without a decoded value is made only from an item carrying a T"),
        }
    }

    /// Whether the value was decoded through serde rather than being the publisher's own.
    pub fn was_decoded(&self) -> bool {
        self.decoded.is_some()
    }

    /// The event or message.
    pub fn item(&self) -> &Item<K> {
        &self.item
    }

    /// The event or message, giving up the view.
    pub fn into_item(self) -> Item<K> {
        self.item
    }
}

impl<T> Typed<T, EventKind> {
    /// The event.
    pub fn event(&self) -> &Event {
        &self.item
    }
}

impl<T> Typed<T, MessageKind> {
    /// The message.
    pub fn message(&self) -> &Message {
        &self.item
    }
}

impl<T: 'static, K: Kind> std::ops::Deref for Typed<T, K> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value()
    }
}

impl<T, K> Clone for Typed<T, K> {
    fn clone(&self) -> Self {
        Typed {
            item: self.item.clone(),
            decoded: self.decoded.clone(),
        }
    }
}

impl<T: fmt::Debug + 'static, K: Kind> fmt::Debug for Typed<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Typed")
            .field("item", &self.item)
            .field("value", self.value())
            .field("decoded", &self.was_decoded())
            .finish()
    }
}
