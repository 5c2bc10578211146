//! The error of subscribing a connected client on the server's initiative
//! ([`WebSocketService::subscribe`](super::WebSocketService::subscribe)).

use crate::PatternError;

/// Why a client could not be subscribed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientSubscribeError {
    /// The pattern is not valid.
    #[error(transparent)]
    InvalidPattern(#[from] PatternError),
    /// The service is stopped, or the client's session is closing. (The text is the one
    /// `SubscribeError::Stopped` had for it.)
    #[error("cannot subscribe: the component is stopped")]
    Stopped,
    /// No connected client has this id.
    #[error("no connected client {0:?}")]
    UnknownClient(String),
    /// The session already holds this many subscriptions (its limit).
    #[error("too many subscriptions: a session may hold {0}")]
    TooManySubscriptions(usize),
}
