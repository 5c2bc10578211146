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

use crate::item::Deliverable;
use crate::PatternError;

/// Why a subscription to the EventBus or the MessageQueue was refused. (Subscribing a
/// WebSocket client has its own error, `websocket::ClientSubscribeError`.)
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
}

/// Why a `publish` failed. Every variant hands the item back
/// ([`into_inner`](Self::into_inner)). `try_publish`, which never waits, fails with
/// [`TryPublishError`] instead (it has no `HandlerTimeout`).
#[non_exhaustive]
pub enum PublishError<T = crate::Event> {
    /// A matching subscription's mailbox, or the MessageQueue's `max_size`, had no room
    /// for `default_timeout` (at once if the matching deliveries can never fit in
    /// `max_size`). No subscriber got the item.
    QueueFull(T),
    /// The component was stopped (or is stopping). No subscriber got the item.
    Stopped(T),
    /// The name or topic is not valid.
    InvalidName(T, PatternError),
    /// Synchronous dispatch only (`enable_async_processing = false`): the item **was
    /// accepted** and stays queued, but not every matching handler finished with it within
    /// `default_timeout`. Do not publish it again: it would be delivered twice.
    HandlerTimeout(T),
    /// The name spans processes (a cluster, `tickwire::cluster`, claims it) and the
    /// cluster's buffer of items waiting for NATS is full: NATS has been unreachable for a
    /// while. No subscriber got the item, on this node or any other.
    ClusterUnavailable(T),
}

/// Why a `try_publish` failed: it never waits, so there is no room at once, the component
/// is stopped, or the name is invalid. Every variant hands the item back
/// ([`into_inner`](Self::into_inner)). Like every error enum of the crate it is
/// `#[non_exhaustive]`: a match needs a `_` arm, so that a refusal added later (a
/// cluster's, say) is not a breaking change.
///
/// ```
/// use tickwire::{Event, PublishError, TryPublishError};
/// let err = TryPublishError::Stopped(Event::new("a", serde_json::json!(1)));
/// assert_eq!(err.to_string(), "stopped: \"a\" was not accepted");
/// // Code that handles both kinds of publish converts one into the other.
/// let err: PublishError = err.into();
/// assert!(matches!(err, PublishError::Stopped(_)));
/// ```
#[non_exhaustive]
pub enum TryPublishError<T = crate::Event> {
    /// A matching subscription's mailbox, or the MessageQueue's `max_size`, has no room.
    /// No subscriber got the item.
    QueueFull(T),
    /// The component was stopped (or is stopping). No subscriber got the item.
    Stopped(T),
    /// The name or topic is not valid.
    InvalidName(T, PatternError),
    /// The name spans processes and the cluster's buffer is full (see
    /// [`PublishError::ClusterUnavailable`]). No subscriber got the item.
    ClusterUnavailable(T),
}

impl<T> From<TryPublishError<T>> for PublishError<T> {
    fn from(err: TryPublishError<T>) -> Self {
        match err {
            TryPublishError::QueueFull(item) => PublishError::QueueFull(item),
            TryPublishError::Stopped(item) => PublishError::Stopped(item),
            TryPublishError::InvalidName(item, err) => PublishError::InvalidName(item, err),
            TryPublishError::ClusterUnavailable(item) => PublishError::ClusterUnavailable(item),
        }
    }
}

/// What a refusal is, for the texts shared by both error types.
#[derive(Clone, Copy)]
enum Refusal<'a> {
    QueueFull,
    Stopped,
    InvalidName(&'a PatternError),
    HandlerTimeout,
    ClusterUnavailable,
}

impl Refusal<'_> {
    fn name(self) -> &'static str {
        match self {
            Refusal::QueueFull => "QueueFull",
            Refusal::Stopped => "Stopped",
            Refusal::InvalidName(_) => "InvalidName",
            Refusal::HandlerTimeout => "HandlerTimeout",
            Refusal::ClusterUnavailable => "ClusterUnavailable",
        }
    }

    fn describe(self, f: &mut fmt::Formatter<'_>, route: &str) -> fmt::Result {
        match self {
            Refusal::QueueFull => write!(f, "queue full: no room for {route:?}"),
            Refusal::Stopped => write!(f, "stopped: {route:?} was not accepted"),
            Refusal::InvalidName(err) => fmt::Display::fmt(err, f),
            Refusal::HandlerTimeout => write!(
                f,
                "handlers did not finish {route:?} within the timeout (it was accepted and stays queued)"
            ),
            Refusal::ClusterUnavailable => write!(
                f,
                "cluster unavailable: {route:?} spans processes and the buffer for NATS is full"
            ),
        }
    }
}

impl<T: Deliverable> PublishError<T> {
    /// The event or message, handed back (accepted only for `HandlerTimeout`).
    pub fn into_inner(self) -> T {
        match self {
            PublishError::QueueFull(item)
            | PublishError::Stopped(item)
            | PublishError::InvalidName(item, _)
            | PublishError::HandlerTimeout(item)
            | PublishError::ClusterUnavailable(item) => item,
        }
    }

    /// The event or message, by reference.
    pub fn item(&self) -> &T {
        match self {
            PublishError::QueueFull(item)
            | PublishError::Stopped(item)
            | PublishError::InvalidName(item, _)
            | PublishError::HandlerTimeout(item)
            | PublishError::ClusterUnavailable(item) => item,
        }
    }

    fn refusal(&self) -> Refusal<'_> {
        match self {
            PublishError::QueueFull(_) => Refusal::QueueFull,
            PublishError::Stopped(_) => Refusal::Stopped,
            PublishError::InvalidName(_, err) => Refusal::InvalidName(err),
            PublishError::HandlerTimeout(_) => Refusal::HandlerTimeout,
            PublishError::ClusterUnavailable(_) => Refusal::ClusterUnavailable,
        }
    }
}

impl<T: Deliverable> TryPublishError<T> {
    /// The event or message, handed back (it was not accepted).
    pub fn into_inner(self) -> T {
        match self {
            TryPublishError::QueueFull(item)
            | TryPublishError::Stopped(item)
            | TryPublishError::InvalidName(item, _)
            | TryPublishError::ClusterUnavailable(item) => item,
        }
    }

    /// The event or message, by reference.
    pub fn item(&self) -> &T {
        match self {
            TryPublishError::QueueFull(item)
            | TryPublishError::Stopped(item)
            | TryPublishError::InvalidName(item, _)
            | TryPublishError::ClusterUnavailable(item) => item,
        }
    }

    fn refusal(&self) -> Refusal<'_> {
        match self {
            TryPublishError::QueueFull(_) => Refusal::QueueFull,
            TryPublishError::Stopped(_) => Refusal::Stopped,
            TryPublishError::InvalidName(_, err) => Refusal::InvalidName(err),
            TryPublishError::ClusterUnavailable(_) => Refusal::ClusterUnavailable,
        }
    }
}

/// `Display`, `Debug` and `Error` of both publish errors, from `refusal` and `item`.
macro_rules! publish_error_traits {
    ($name:ident) => {
        impl<T: Deliverable> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.refusal().describe(f, self.item().route())
            }
        }

        impl<T: Deliverable> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let name = stringify!($name);
                write!(
                    f,
                    "{name}::{}({:?})",
                    self.refusal().name(),
                    self.item().route()
                )
            }
        }

        impl<T: Deliverable> std::error::Error for $name<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self.refusal() {
                    Refusal::InvalidName(err) => Some(err),
                    _ => None,
                }
            }
        }
    };
}

publish_error_traits!(PublishError);
publish_error_traits!(TryPublishError);
