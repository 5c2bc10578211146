//! Errors of the operations on the components.
//!
//! Each operation has its own error type. A publish that is refused hands the event or
//! message back, so nothing is lost silently:
//!
//! ```
//! use tickwire::{Event, PublishError};
//! let err = PublishError::QueueFull(Event::new("a", serde_json::json!(1)));
//! assert_eq!(err.to_string(), "queue full: no room for \"a\"");
//! let event: Event = err.into_inner();
//! assert_eq!(event.name(), "a");
//! ```

use std::fmt;

use crate::core::Deliverable;
use crate::PatternError;

/// Why a subscription was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The pattern is not valid.
    #[error(transparent)]
    InvalidPattern(#[from] PatternError),
    /// The component was stopped.
    #[error("cannot subscribe: the component is stopped")]
    Stopped,
    /// A consumer group name that is empty or holds whitespace.
    #[error("invalid group name {0:?}: it must be non-empty and hold no whitespace")]
    InvalidGroup(String),
    /// WebSocketService: no connected client has this id.
    #[error("no connected client {0:?}")]
    UnknownClient(String),
    /// WebSocketService: the session already holds this many subscriptions.
    #[error("too many subscriptions: a session may hold {0}")]
    TooManySubscriptions(usize),
}

/// Why a publish failed. Every variant hands the item back ([`into_inner`](Self::into_inner)).
pub enum PublishError<T = crate::Event> {
    /// A matching subscription's mailbox, or the MessageQueue's `max_size`, had no room:
    /// at once for `try_publish`, for `default_timeout` for `publish` (at once if the
    /// matching deliveries can never fit in `max_size`). No subscriber got the item.
    QueueFull(T),
    /// The component was stopped (or is stopping). No subscriber got the item.
    Stopped(T),
    /// The name or topic is not valid.
    InvalidName(T, PatternError),
    /// Synchronous dispatch only (`enable_async_processing = false`): the item **was
    /// accepted** and stays queued, but not every matching handler finished with it within
    /// `default_timeout`. Do not publish it again: it would be delivered twice.
    HandlerTimeout(T),
}

impl<T: Deliverable> PublishError<T> {
    /// The event or message, handed back (accepted only for `HandlerTimeout`).
    pub fn into_inner(self) -> T {
        match self {
            PublishError::QueueFull(item)
            | PublishError::Stopped(item)
            | PublishError::InvalidName(item, _)
            | PublishError::HandlerTimeout(item) => item,
        }
    }

    /// The event or message, by reference.
    pub fn item(&self) -> &T {
        match self {
            PublishError::QueueFull(item)
            | PublishError::Stopped(item)
            | PublishError::InvalidName(item, _)
            | PublishError::HandlerTimeout(item) => item,
        }
    }
}

impl<T: Deliverable> fmt::Display for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::QueueFull(item) => write!(
                f,
                "queue full: no room for {:?}",
                item.route()
            ),
            PublishError::Stopped(item) => {
                write!(f, "stopped: {:?} was not accepted", item.route())
            }
            PublishError::InvalidName(_, err) => err.fmt(f),
            PublishError::HandlerTimeout(item) => write!(
                f,
                "handlers did not finish {:?} within the timeout (it was accepted and stays queued)",
                item.route()
            ),
        }
    }
}

impl<T: Deliverable> fmt::Debug for PublishError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            PublishError::QueueFull(_) => "QueueFull",
            PublishError::Stopped(_) => "Stopped",
            PublishError::InvalidName(..) => "InvalidName",
            PublishError::HandlerTimeout(_) => "HandlerTimeout",
        };
        write!(f, "PublishError::{kind}({:?})", self.item().route())
    }
}

impl<T: Deliverable> std::error::Error for PublishError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PublishError::InvalidName(_, err) => Some(err),
            _ => None,
        }
    }
}
