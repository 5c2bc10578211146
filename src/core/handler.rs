//! Handlers: what runs when an event or message is delivered, and how it is configured.
//!
//! Three kinds of handler run on the same handler actor:
//!
//! - an **async closure** `Fn(T) -> impl Future<Output = HandlerResult>`, polled on the
//!   subscription's worker thread (its future need not be `Send`);
//! - a **sync closure** `Fn(&T) -> HandlerResult`, run on the blocking thread pool so it
//!   may block without stalling the async handlers that share its worker;
//! - an actix **`Recipient<Deliver<T>>`**: an app's own actor; its reply is the result.
//!
//! Whatever the kind, the handlers of one subscription run one at a time, in delivery
//! order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::Recipient;

use crate::Priority;

/// What a handler returns. An `Err` counts as a failure of that delivery.
pub type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The message an app's own actor receives for each delivered item (`T` is
/// [`Event`](crate::Event) or a message). Its result drives retries exactly as a closure's
/// does.
#[derive(actix::Message, Debug, Clone)]
#[rtype(result = "HandlerResult")]
pub struct Deliver<T>(pub T);

/// How a subscription's handler runs: its name and its priority among the subscriptions
/// that match one item. A builder: each method takes and returns `self`.
///
/// The seed's failure policy (`timeout`, `retry_on_error`, `max_retries`, `retry_delay`,
/// `error_handler`) is not part of this release; a handler's `Err` is logged with
/// `tracing` and the item counts as handled.
///
/// ```
/// use tickwire::{create_handler_config, Priority};
///
/// let config = create_handler_config("risk_check").priority(Priority::Critical);
/// assert_eq!(config.name(), "risk_check");
/// assert_eq!(config.get_priority(), Priority::Critical);
/// ```
#[derive(Clone, Debug)]
pub struct HandlerConfig {
    pub(crate) name: String,
    pub(crate) priority: Priority,
}

impl HandlerConfig {
    /// A config with `Normal` priority.
    pub fn new(name: impl Into<String>) -> Self {
        HandlerConfig {
            name: name.into(),
            priority: Priority::Normal,
        }
    }

    /// Order among the subscriptions that match one item: higher first (see `## Handler
    /// priority` on [`EventBus`](crate::EventBus)).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// The handler's name (used in logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The handler's priority.
    pub fn get_priority(&self) -> Priority {
        self.priority
    }
}

/// The seed's name for [`HandlerConfig::new`].
pub fn create_handler_config(name: impl Into<String>) -> HandlerConfig {
    HandlerConfig::new(name)
}

/// A handler the handler actor can run: one call per delivered item.
pub(crate) trait Invoke<T>: Send + Sync + 'static {
    /// The run of one delivery; polled on the worker thread.
    type Future: Future<Output = HandlerResult> + 'static;

    fn invoke(&self, item: T) -> Self::Future;
}

/// An async closure.
pub(crate) struct AsyncFn<F>(pub(crate) F);

impl<T, F, Fut> Invoke<T> for AsyncFn<F>
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + 'static,
{
    type Future = Fut;

    fn invoke(&self, item: T) -> Fut {
        (self.0)(item)
    }
}

type LocalBoxFuture = Pin<Box<dyn Future<Output = HandlerResult>>>;

/// A blocking closure, run on the blocking pool.
pub(crate) struct SyncFn<F>(pub(crate) Arc<F>);

impl<T, F> Invoke<T> for SyncFn<F>
where
    T: Send + 'static,
    F: Fn(&T) -> HandlerResult + Send + Sync + 'static,
{
    type Future = LocalBoxFuture;

    fn invoke(&self, item: T) -> LocalBoxFuture {
        let f = self.0.clone();
        let task = actix_rt::task::spawn_blocking(move || f(&item));
        Box::pin(async move {
            match task.await {
                Ok(result) => result,
                Err(join) if join.is_panic() => Err("sync handler panicked".into()),
                Err(join) => Err(format!("sync handler did not run: {join}").into()),
            }
        })
    }
}

/// An app's actor.
pub(crate) struct RecipientFn<T: Send + 'static>(pub(crate) Recipient<Deliver<T>>);

impl<T: Send + 'static> Invoke<T> for RecipientFn<T> {
    type Future = LocalBoxFuture;

    fn invoke(&self, item: T) -> LocalBoxFuture {
        let request = self.0.send(Deliver(item));
        Box::pin(async move {
            match request.await {
                Ok(result) => result,
                Err(mailbox) => Err(format!("handler actor unreachable: {mailbox}").into()),
            }
        })
    }
}
