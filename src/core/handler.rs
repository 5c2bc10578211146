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
//! Each kind also comes typed: it is given a [`Typed<V>`](crate::Typed) (or
//! `TypedMessage<V>`) instead of the item, decoded once per item before the first
//! attempt; an item that does not decode is dead-lettered without being retried.
//!
//! Whatever the kind, the handlers of one subscription run one at a time, in delivery
//! order, under the same timeout, retry and restart rules. One exception: a sync or actor
//! handler that times out cannot be cancelled (its thread or actor goes on), so its late
//! run may overlap the retry or the next item; give such handlers a timeout they will
//! not reach in normal operation.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use serde::de::DeserializeOwned;

use super::supervision::{HandlerFailure, OverflowPolicy};
use crate::item::{Item, Kind};
use crate::{Priority, Typed};

/// What a handler returns. An `Err` counts as a failure of that delivery.
pub type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The message an app's own actor receives for each delivered item (`T` is
/// [`Event`](crate::Event) or a message). Its result drives retries exactly as a closure's
/// does.
#[derive(actix::Message, Debug, Clone)]
#[rtype(result = "HandlerResult")]
pub struct Deliver<T>(pub T);

/// How a subscription's handler runs: its name, its priority among the subscriptions that
/// match one item, its failure policy (see [`supervision`](crate::core::supervision))
/// and its overflow policy. A builder: each method takes and returns `self`.
///
/// ```
/// use std::time::Duration;
/// use tickwire::{create_handler_config, OverflowPolicy, Priority};
///
/// let config = create_handler_config("risk_check")
///     .priority(Priority::Critical)
///     .timeout(Duration::from_secs(5))
///     .max_retries(3)
///     .retry_delay(Duration::from_millis(100))
///     .error_handler(|failure| eprintln!("{} failed: {}", failure.handler, failure.error))
///     .overflow(OverflowPolicy::Block);
/// assert_eq!(config.name(), "risk_check");
/// assert_eq!(config.get_priority(), Priority::Critical);
/// ```
#[derive(Clone)]
pub struct HandlerConfig {
    pub(crate) name: String,
    pub(crate) priority: Priority,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry_on_error: bool,
    pub(crate) max_retries: u32,
    pub(crate) retry_delay: Duration,
    pub(crate) restart_delay: Duration,
    pub(crate) error_handler: Option<ErrorCallback>,
    pub(crate) overflow: OverflowPolicy,
}

impl HandlerConfig {
    /// A config with the seed's defaults: `Normal` priority, the component's
    /// `default_timeout`, retries on error, 3 retries, 1 s before the first retry,
    /// [`RESTART_BACKOFF`](super::supervision::RESTART_BACKOFF) before the first restart,
    /// no error handler, [`OverflowPolicy::Block`].
    pub fn new(name: impl Into<String>) -> Self {
        HandlerConfig {
            name: name.into(),
            priority: Priority::Normal,
            timeout: None,
            retry_on_error: true,
            max_retries: 3,
            retry_delay: Duration::from_secs(1),
            restart_delay: super::supervision::RESTART_BACKOFF,
            error_handler: None,
            overflow: OverflowPolicy::Block,
        }
    }

    /// Order among the subscriptions that match one item: higher first (see `## Handler
    /// priority` on [`EventBus`](crate::EventBus)).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// How long one run of the handler may take; longer counts as a failure. Default: the
    /// component's `default_timeout`. A blocking handler that times out keeps running on
    /// its blocking thread (threads cannot be cancelled), but its result is ignored.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether a failed delivery is retried (default true; the component's `enable_retry
    /// = false` turns retries off for every handler).
    pub fn retry_on_error(mut self, on: bool) -> Self {
        self.retry_on_error = on;
        self
    }

    /// Retries after the first failed attempt (default 3).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Delay before the first retry (default 1 s); later ones back off exponentially,
    /// capped and jittered (see [`retry_delay`](crate::core::supervision::retry_delay)).
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// How long a handler actor restarted after a panic waits before it resumes, for the
    /// first restart in a row (default
    /// [`RESTART_BACKOFF`](super::supervision::RESTART_BACKOFF), 10 ms); later ones in a
    /// row double it, capped (see
    /// [`restart_delay`](crate::core::supervision::restart_delay)).
    pub fn restart_delay(mut self, delay: Duration) -> Self {
        self.restart_delay = delay;
        self
    }

    /// Called once for each delivery that finally failed (a dead letter), on the
    /// handler's worker thread. Keep it short; a panic in it is caught and logged.
    pub fn error_handler(mut self, f: impl Fn(&HandlerFailure) + Send + Sync + 'static) -> Self {
        self.error_handler = Some(Arc::new(f));
        self
    }

    /// What happens when this subscription's mailbox is full (default
    /// [`OverflowPolicy::Block`]).
    pub fn overflow(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = policy;
        self
    }

    /// The handler's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The handler's priority. (`get_` because the builder method [`priority`](Self::priority)
    /// has the plain name, as `std::process::Command` has `arg` and `get_args`.)
    pub fn get_priority(&self) -> Priority {
        self.priority
    }
}

impl fmt::Debug for HandlerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerConfig")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .field("retry_on_error", &self.retry_on_error)
            .field("max_retries", &self.max_retries)
            .field("retry_delay", &self.retry_delay)
            .field("restart_delay", &self.restart_delay)
            .field("error_handler", &self.error_handler.is_some())
            .field("overflow", &self.overflow)
            .finish()
    }
}

/// The callback of [`HandlerConfig::error_handler`].
pub(crate) type ErrorCallback = Arc<dyn Fn(&HandlerFailure) + Send + Sync>;

/// The seed's name for [`HandlerConfig::new`].
pub fn create_handler_config(name: impl Into<String>) -> HandlerConfig {
    HandlerConfig::new(name)
}

/// A handler the handler actor can run: one call per delivered item.
pub(crate) trait Invoke<T>: Send + Sync + 'static {
    /// What a run is given: the item itself, or the item with its payload decoded.
    type Input: Clone + Unpin + 'static;
    /// The run of one delivery; polled on the worker thread.
    type Future: Future<Output = HandlerResult> + 'static;

    /// The input of a delivery, made once per item (its retries reuse it). An error means
    /// the item can never be handled: it is dead-lettered without a retry.
    fn prepare(&self, item: &T) -> Result<Self::Input, String>;

    /// A copy of an input to keep for a retry, if making it again with `prepare` would
    /// cost more than keeping it (a decoded value); `None` (the default) when `prepare`
    /// is cheap. So a first attempt that succeeds costs no copy.
    fn retain(&self, _input: &Self::Input) -> Option<Self::Input> {
        None
    }

    fn invoke(&self, input: Self::Input) -> Self::Future;
}

/// An async closure.
pub(crate) struct AsyncFn<F>(pub(crate) F);

impl<T, F, Fut> Invoke<T> for AsyncFn<F>
where
    T: Clone + Unpin + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + 'static,
{
    type Input = T;
    type Future = Fut;

    fn prepare(&self, item: &T) -> Result<T, String> {
        Ok(item.clone())
    }

    fn invoke(&self, item: T) -> Fut {
        (self.0)(item)
    }
}

type LocalBoxFuture = Pin<Box<dyn Future<Output = HandlerResult>>>;

/// A blocking closure, run on the blocking pool.
pub(crate) struct SyncFn<F>(pub(crate) Arc<F>);

impl<T, F> Invoke<T> for SyncFn<F>
where
    T: Clone + Send + Unpin + 'static,
    F: Fn(&T) -> HandlerResult + Send + Sync + 'static,
{
    type Input = T;
    type Future = LocalBoxFuture;

    fn prepare(&self, item: &T) -> Result<T, String> {
        Ok(item.clone())
    }

    fn invoke(&self, item: T) -> LocalBoxFuture {
        let f = self.0.clone();
        let task = actix_rt::task::spawn_blocking(move || f(&item));
        Box::pin(async move {
            match task.await {
                Ok(result) => result,
                // Re-raise on the handler actor, which treats it like any handler panic.
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                Err(join) => Err(format!("sync handler did not run: {join}").into()),
            }
        })
    }
}

/// An app's actor.
pub(crate) struct RecipientFn<T: Send + 'static>(pub(crate) Recipient<Deliver<T>>);

impl<T: Clone + Send + Unpin + 'static> Invoke<T> for RecipientFn<T> {
    type Input = T;
    type Future = LocalBoxFuture;

    fn prepare(&self, item: &T) -> Result<T, String> {
        Ok(item.clone())
    }

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

/// A handler of typed values: decodes each item into a [`Typed`] view (see
/// [`typed`](crate::typed)), then runs the inner handler with it.
pub(crate) struct Decoded<V, H>(pub(crate) H, PhantomData<fn() -> V>);

impl<V, H> Decoded<V, H> {
    pub(crate) fn new(handler: H) -> Self {
        Decoded(handler, PhantomData)
    }
}

impl<V, K, H> Invoke<Item<K>> for Decoded<V, H>
where
    V: DeserializeOwned + Send + Sync + 'static,
    K: Kind,
    H: Invoke<Typed<V, K>, Input = Typed<V, K>>,
{
    type Input = Typed<V, K>;
    type Future = H::Future;

    fn prepare(&self, item: &Item<K>) -> Result<Typed<V, K>, String> {
        if let Some(own) = Typed::own(item) {
            return Ok(own); // the publisher's value: nothing to decode
        }
        // A `Deserialize` impl that panics is as undecodable as one that fails.
        std::panic::catch_unwind(AssertUnwindSafe(|| Typed::decode(item)))
            .map_err(|panic| {
                format!(
                    "decoding {:?} as {} panicked: {}",
                    item.route(),
                    std::any::type_name::<V>(),
                    super::handler_actor::panic_text(&*panic)
                )
            })?
            .map_err(|err| err.to_string())
    }

    /// A decoded value is kept (decoding is once per item); the publisher's own value is
    /// found again by a downcast.
    fn retain(&self, input: &Typed<V, K>) -> Option<Typed<V, K>> {
        input.was_decoded().then(|| input.clone())
    }

    fn invoke(&self, input: Typed<V, K>) -> H::Future {
        self.0.invoke(input)
    }
}
