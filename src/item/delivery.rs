//! What the core delivers and what it reports: the [`Deliverable`] trait (implemented by
//! [`Item`] only), the [`SubscriptionId`] of a subscription, and the record of a delivery
//! that finally failed ([`HandlerFailure`], kept as a [`DeadLetter`] and published on
//! [`DEAD_LETTER_PREFIX`]`<route>`).
//!
//! They live beside the item, above the delivery core, so that the core names no facade
//! type: it delivers any `T: Deliverable`.

use std::time::SystemTime;

use serde_json::Value;

use super::{Event, Item, Kind, Message};
use crate::Priority;

/// Prefix of the names on which dead letters are published.
pub const DEAD_LETTER_PREFIX: &str = "$dlq.";

/// Identifies a subscription; returned by `subscribe`, given to `unsubscribe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct SubscriptionId(pub(crate) u64);

impl SubscriptionId {
    /// The number behind the id (unique in the process, across components; increasing).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sub-{}", self.0)
    }
}

mod sealed {
    pub trait Sealed {}
    impl<K: super::Kind> Sealed for super::Item<K> {}
}

/// What the core delivers: an event or a message. Cheap to clone (an `Arc` inside).
/// Implemented by the crate's item types only.
pub trait Deliverable: sealed::Sealed + Clone + Send + Sync + Unpin + 'static {
    /// The name (event) or topic (message) that subscriptions match against.
    fn route(&self) -> &str;
    /// The lane the item goes to in each mailbox.
    fn priority(&self) -> Priority;
    /// The item as reported in a [`HandlerFailure`].
    fn into_delivered(self) -> Delivered;
    /// The item published on `$dlq.<route>` for a dead letter of `original`.
    fn dead_letter(original: &Self, failure: &HandlerFailure) -> Self;
}

/// An item as reported in a [`HandlerFailure`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Delivered {
    /// An event of the [`EventBus`](crate::EventBus).
    Event(Event),
    /// A message of the [`MessageQueue`](crate::MessageQueue).
    Message(Message),
}

impl Delivered {
    /// The event name or message topic.
    pub fn name(&self) -> &str {
        match self {
            Delivered::Event(e) => e.name(),
            Delivered::Message(m) => m.topic(),
        }
    }

    /// The item as JSON (`Event::to_json` or `Message::to_json`).
    pub fn to_json(&self) -> Value {
        match self {
            Delivered::Event(e) => e.to_json(),
            Delivered::Message(m) => m.to_json(),
        }
    }

    /// The event, if the item is one.
    pub fn as_event(&self) -> Option<&Event> {
        match self {
            Delivered::Event(e) => Some(e),
            Delivered::Message(_) => None,
        }
    }

    /// The message, if the item is one.
    pub fn as_message(&self) -> Option<&Message> {
        match self {
            Delivered::Message(m) => Some(m),
            Delivered::Event(_) => None,
        }
    }
}

/// A delivery that finally failed: given to
/// [`HandlerConfig::error_handler`](crate::HandlerConfig::error_handler) and kept as a
/// dead letter.
#[derive(Clone, Debug)]
pub struct HandlerFailure {
    /// The handler's name (`HandlerConfig::new`).
    pub handler: String,
    /// The subscription.
    pub subscription: SubscriptionId,
    /// The event or message.
    pub item: Delivered,
    /// The last error, as text (`"handler timed out after 0.5 s"`, `"panicked: ..."`).
    pub error: String,
    /// How many times the handler ran for this item.
    pub attempts: u32,
    /// When the last attempt failed.
    pub timestamp: SystemTime,
}

/// A dead letter: the record of an item whose retries were exhausted.
pub type DeadLetter = HandlerFailure;

impl HandlerFailure {
    /// `{"handler","subscription","item","error","attempts","timestamp"}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "handler": self.handler,
            "subscription": self.subscription.get(),
            "item": self.item.to_json(),
            "error": self.error,
            "attempts": self.attempts,
            "timestamp": crate::util::clock::rfc3339(self.timestamp),
        })
    }
}

impl<K: Kind> Deliverable for Item<K> {
    fn route(&self) -> &str {
        Item::route(self)
    }

    fn priority(&self) -> Priority {
        Item::priority(self)
    }

    fn into_delivered(self) -> Delivered {
        K::delivered(self)
    }

    /// `$dlq.<route>`, same priority, the failure as data (`HandlerFailure::to_json`).
    fn dead_letter(original: &Self, failure: &HandlerFailure) -> Self {
        Item::json(
            format!("{DEAD_LETTER_PREFIX}{}", original.route()).into(),
            failure.to_json(),
            original.priority(),
        )
    }
}
