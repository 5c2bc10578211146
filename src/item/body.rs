//! An item's payload, type-erased: JSON, a typed value (with its JSON built once, on
//! demand), JSON text received from another process (parsed once, on demand), or the
//! payload of another item (a copy with another priority).

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::Inner;

/// A payload, type-erased.
pub(super) trait Body: Send + Sync + 'static {
    /// The payload as JSON, built on the first call for a typed value.
    fn data(&self) -> &Value;
    /// The JSON if it exists already.
    fn built(&self) -> Option<&Value>;
    /// The typed value, if the payload is one.
    fn value(&self) -> Option<&(dyn Any + Send + Sync)>;
    /// The payload's Rust type.
    fn type_name(&self) -> &'static str;
    /// The payload, to serialize into any format without building a `Value`.
    fn serializable(&self) -> &dyn erased_serde::Serialize;
    /// The payload's JSON text, for one received as text: decoded from it directly, a
    /// typed handler builds no `Value`.
    fn text(&self) -> Option<&[u8]> {
        None
    }
    /// The item whose payload this is, for a [`SharedBody`].
    fn origin(&self) -> Option<&Arc<Inner<dyn Body>>> {
        None
    }
}

pub(super) struct Json(pub(super) Value);

impl Body for Json {
    fn data(&self) -> &Value {
        &self.0
    }

    fn built(&self) -> Option<&Value> {
        Some(&self.0)
    }

    fn value(&self) -> Option<&(dyn Any + Send + Sync)> {
        None
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<Value>()
    }

    fn serializable(&self) -> &dyn erased_serde::Serialize {
        &self.0
    }
}

pub(super) struct TypedBody<T> {
    pub(super) value: T,
    pub(super) json: OnceLock<Value>,
}

impl<T: Serialize + Send + Sync + 'static> Body for TypedBody<T> {
    fn data(&self) -> &Value {
        self.json.get_or_init(|| {
            // A `Serialize` impl that panics is treated as one that fails: `data()` is
            // called from handler actors and the WebSocket hub, which must not unwind.
            let json =
                std::panic::catch_unwind(AssertUnwindSafe(|| serde_json::to_value(&self.value)));
            match json {
                Ok(Ok(json)) => json,
                Ok(Err(err)) => {
                    tracing::warn!(
                        payload.type = std::any::type_name::<T>(),
                        error = %err,
                        "a typed payload does not serialize to JSON: its data() is null"
                    );
                    Value::Null
                }
                Err(_) => {
                    tracing::warn!(
                        payload.type = std::any::type_name::<T>(),
                        "a typed payload's Serialize panicked: its data() is null"
                    );
                    Value::Null
                }
            }
        })
    }

    fn built(&self) -> Option<&Value> {
        self.json.get()
    }

    fn value(&self) -> Option<&(dyn Any + Send + Sync)> {
        Some(&self.value)
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn serializable(&self) -> &dyn erased_serde::Serialize {
        &self.value
    }
}

/// A payload received as JSON text (a cluster's inbound side): checked to be JSON when
/// received, parsed into a `Value` on the first [`data`](Body::data) only, so that an
/// item whose handlers never read its JSON (or decode it as a type) costs no `Value`.
#[cfg(feature = "cluster")]
pub(super) struct Received {
    pub(super) text: bytes::Bytes,
    pub(super) json: OnceLock<Value>,
}

#[cfg(feature = "cluster")]
impl Body for Received {
    fn data(&self) -> &Value {
        self.json.get_or_init(|| {
            // Checked when received: only a bug makes this fail.
            serde_json::from_slice(&self.text).unwrap_or_else(|err| {
                tracing::warn!(error = %err, "a received payload is not JSON: its data() is null");
                Value::Null
            })
        })
    }

    fn built(&self) -> Option<&Value> {
        self.json.get()
    }

    fn value(&self) -> Option<&(dyn Any + Send + Sync)> {
        None
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<Value>()
    }

    fn serializable(&self) -> &dyn erased_serde::Serialize {
        self.data()
    }

    fn text(&self) -> Option<&[u8]> {
        Some(&self.text)
    }
}

/// The payload of another item: a copy made with another priority while the original was
/// shared (a typed value cannot be cloned, so it is shared instead).
pub(super) struct SharedBody(pub(super) Arc<Inner<dyn Body>>);

impl Body for SharedBody {
    fn origin(&self) -> Option<&Arc<Inner<dyn Body>>> {
        Some(&self.0)
    }

    fn data(&self) -> &Value {
        self.0.body.data()
    }

    fn built(&self) -> Option<&Value> {
        self.0.body.built()
    }

    fn value(&self) -> Option<&(dyn Any + Send + Sync)> {
        self.0.body.value()
    }

    fn type_name(&self) -> &'static str {
        self.0.body.type_name()
    }

    fn serializable(&self) -> &dyn erased_serde::Serialize {
        self.0.body.serializable()
    }

    fn text(&self) -> Option<&[u8]> {
        self.0.body.text()
    }
}

/// A payload to serialize (see [`Item::payload_serialize`](super::Item::payload_serialize)).
pub(crate) struct PayloadRef<'a>(pub(super) &'a dyn Body);

impl Serialize for PayloadRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.built() {
            Some(json) => json.serialize(serializer),
            None => erased_serde::serialize(self.0.serializable(), serializer),
        }
    }
}
