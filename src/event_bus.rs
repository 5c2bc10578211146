//! The EventBus: named events to handlers subscribed by name or pattern, by priority.
//!
//! [`EventBus`] is a cloneable handle (`Send + Sync`) to a running bus: a registry actor
//! that owns the subscriptions, and `max_workers` worker arbiters on which one handler
//! actor per subscription runs. Publishing goes straight from the caller's thread into the
//! subscriptions' mailboxes without a lock and without a message to the registry; see
//! [`core`](crate::core) for the data path.
//!
//! ```
//! use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
//! use serde_json::json;
//! use tickwire::{create_event, EventBus, EventBusConfig, Priority};
//!
//! # actix_rt::System::new().block_on(async {
//! // Synchronous dispatch makes `publish` return once the handlers ran: handy in examples.
//! let bus = EventBus::start(EventBusConfig {
//!     enable_async_processing: false,
//!     ..EventBusConfig::default()
//! }).unwrap();
//!
//! let seen = Arc::new(AtomicUsize::new(0));
//! let counter = seen.clone();
//! bus.subscribe("market.*", move |event| {
//!     let counter = counter.clone();
//!     async move {
//!         assert!(event.name().starts_with("market."));
//!         counter.fetch_add(1, Ordering::SeqCst);
//!         Ok(())
//!     }
//! }).await.unwrap();
//!
//! bus.publish(create_event("market.tick", json!({"price": 50000}), Priority::High)).await.unwrap();
//! bus.publish(create_event("system.alert", json!({}), Priority::Critical)).await.unwrap();
//! assert_eq!(seen.load(Ordering::SeqCst), 1);          // system.alert does not match
//! assert_eq!(bus.history(10).await.len(), 2);           // both were published
//! bus.stop().await;
//! # });
//! ```

use std::future::Future;
use std::sync::Arc;

use actix::Recipient;
use serde::de::DeserializeOwned;

use crate::core::handler::{AsyncFn, Decoded, RecipientFn, SyncFn};
use crate::core::{Core, Settings};
use crate::{
    ConfigError, DeadLetter, Deliver, DeliveryStats, Event, EventBusConfig, EventBusMetrics,
    HandlerConfig, HandlerResult, PublishError, SubscribeError, SubscriptionId, TryPublishError,
    Typed,
};

/// A handle to a running event bus. Clones share the bus.
///
/// ## Priority
///
/// Each subscription has a mailbox with one lane per [`Priority`](crate::Priority). A
/// waiting higher-priority event is handled before a waiting lower one: a CRITICAL event
/// published behind a thousand queued LOW ones is the next one handled. A lower lane is
/// never starved: after it has been passed over
/// [`STARVATION_LIMIT`](crate::STARVATION_LIMIT) times in a row, it gets one of the next
/// three turns (the highest of the starving lanes goes first).
///
/// ## Handler priority
///
/// [`HandlerConfig::priority`] orders subscriptions, not events: among the subscriptions
/// that match one event, the event is pushed to the higher-priority handler's mailbox
/// first, and a worker thread with several woken handlers runs the higher-priority one
/// first (a handler draining a backlog lets a more urgent one woken on its worker run
/// between two of its events). See `## Handler priority on a worker` in the core's
/// source (`src/core/worker.rs`).
///
/// ## Ordering
///
/// Per subscription, events of the same priority from one publisher are handled in publish
/// order, one at a time (a handler never runs twice at once for one subscription). The
/// exception: a sync or actor handler whose run timed out cannot be cancelled, so its
/// late run may overlap the retry or the next event.
///
/// ## Backpressure
///
/// `queue_size` bounds what may wait in each subscription's mailbox. A publish is atomic:
/// the event goes to every matching subscription or to none. [`publish`](Self::publish)
/// waits for room up to `default_timeout`, then fails with
/// [`PublishError::QueueFull`] handing the event back; [`try_publish`](Self::try_publish)
/// fails at once with [`TryPublishError::QueueFull`]. Nothing is dropped, except by a
/// subscription configured with a drop
/// [`OverflowPolicy`](crate::OverflowPolicy), which never makes publishers wait and
/// counts what it drops.
///
/// LOW events may fill at most seven eighths of a mailbox (of 8 slots or more): the last
/// eighth is kept for NORMAL, HIGH and CRITICAL ones, so a flood of LOW events never makes
/// an urgent event wait for room.
///
/// ## Failures
///
/// A handler that returns `Err`, times out or panics is retried with backoff per its
/// [`HandlerConfig`]; a panicking handler's actor is restarted by its supervisor; an item
/// whose retries are exhausted becomes a dead letter ([`dead_letters`](Self::dead_letters),
/// `$dlq.<name>` events, the `error_handler`). Retries happen in place, so they never
/// reorder a subscription's items. Subscriptions may drop instead of blocking when full
/// ([`OverflowPolicy`](crate::OverflowPolicy)). The rules are in
/// [`supervision`](crate::core::supervision); the counters in
/// [`delivery_stats`](Self::delivery_stats).
///
/// ## Shutdown
///
/// [`stop`](Self::stop) refuses new events ([`PublishError::Stopped`]), handles every
/// event accepted before (waiting at most `default_timeout`; what is left then, queued
/// or in hand, is logged and discarded, counted as `dropped`: see `## Accounting` in
/// [`supervision`](crate::core::supervision)), then stops the handler actors and worker
/// threads. Call it: handlers
/// often hold a handle (to publish derived events), so dropping the app's own handles
/// does not end the bus; stopping the actix `System` does, without draining. Do not
/// await `stop()` from inside a handler of the same bus: that handler's own drain cannot
/// finish before it returns, so `stop` waits out `default_timeout`.
///
/// ## Typed payloads
///
/// An event carries JSON ([`Event::new`]) or a typed value ([`Event::typed`]); see
/// [`item`](crate::item). [`subscribe_typed`](Self::subscribe_typed) (and `_with`,
/// `subscribe_typed_sync_with`, `subscribe_typed_recipient`) gives the handler a
/// [`Typed<T>`] that derefs to the value: the publisher's own when the event carries a
/// `T` (no copy, no JSON), else decoded by serde from the event's JSON, once per
/// subscription and event, before the first attempt. An event that does not decode is
/// not retried: it is a dead letter at once (one attempt, its error naming the type and
/// serde's reason, counted in `errors`), handed to the `error_handler` and published on
/// `$dlq.<name>`. Everything else (patterns, priorities, backpressure, retries, history,
/// synchronous dispatch, bridges, metrics) is the same for both kinds, and a JSON handler
/// ([`subscribe`](Self::subscribe)) sees a typed event's JSON through `data()`.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use serde_json::json;
/// use tickwire::{Event, EventBus, EventBusConfig, Typed};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Signal { symbol: String, side: String, confidence: f64 }
///
/// # actix_rt::System::new().block_on(async {
/// let bus = EventBus::start(EventBusConfig::default()).unwrap();
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// bus.subscribe_typed("trading.signal", move |signal: Typed<Signal>| {
///     let _ = tx.send((signal.symbol.clone(), signal.was_decoded()));
///     async { Ok(()) }
/// })
/// .await
/// .unwrap();
/// let signal = Signal { symbol: "BTCUSD".into(), side: "BUY".into(), confidence: 0.8 };
/// bus.publish(Event::typed("trading.signal", signal)).await.unwrap();      // the value itself
/// bus.publish(Event::new("trading.signal", json!({"symbol": "ETHUSD", "side": "SELL", "confidence": 0.6})))
///     .await
///     .unwrap();                                                            // decoded by serde
/// bus.publish(Event::new("trading.signal", json!({"side": 1}))).await.unwrap(); // does not decode
/// bus.stop().await;
/// assert_eq!(rx.recv().await, Some(("BTCUSD".to_owned(), false)));
/// assert_eq!(rx.recv().await, Some(("ETHUSD".to_owned(), true)));
/// let dead = bus.dead_letters().await;
/// assert_eq!((dead.len(), dead[0].attempts), (1, 1));
/// assert!(dead[0].error.contains("Signal"), "{}", dead[0].error);
/// # });
/// ```
///
/// ## Good to know
///
/// - A subscription's handler name (in logs, traces and [`HandlerFailure`](crate::HandlerFailure))
///   is its pattern unless a [`HandlerConfig`] names it.
/// - Each component starts its own `max_workers` threads (10 by default), plus tokio's
///   blocking pool for sync handlers.
/// - [`history`](Self::history) records every accepted event, including events no one
///   subscribed to and `$dlq.` events.
/// - With `enable_async_processing = false`, `publish` may wait up to twice
///   `default_timeout`: for room, then for the handlers.
/// - Panic supervision needs unwinding: with `panic = "abort"` a panicking handler ends
///   the process.
/// - After `stop()`, `unsubscribe` returns `false` (every subscription is gone) and
///   `subscribe` fails with [`SubscribeError::Stopped`].
///
/// ## Threads
///
/// The handle is `Send + Sync + Clone`. [`try_publish`](Self::try_publish) works from any
/// thread, including plain `std::thread`s outside the actix System (a market-data feed
/// thread); the other methods are awaited from tasks of the System.
#[derive(Clone)]
pub struct EventBus {
    core: Arc<Core<Event>>,
}

impl EventBus {
    /// The delivery core (a cluster attaches to it).
    #[cfg(feature = "cluster")]
    pub(crate) fn core(&self) -> &Arc<Core<Event>> {
        &self.core
    }

    /// Validates the config and starts the bus: its registry actor on the current
    /// arbiter and `max_workers` worker arbiters. Must be called inside a running actix
    /// `System`.
    pub fn start(config: EventBusConfig) -> Result<EventBus, ConfigError> {
        config.validate()?;
        if actix_rt::System::try_current().is_none() {
            return Err(ConfigError::NoSystem {
                component: "EventBus",
            });
        }
        let settings = Settings {
            workers: config.max_workers,
            capacity: config.queue_size,
            fifo: false,
            default_timeout: config.default_timeout,
            wait_for_handlers: !config.enable_async_processing,
            history: config.max_history,
            retry: config.enable_retry,
            dead_letters: config.max_dead_letters,
            shared_bound: None,
            metrics: config.enable_metrics,
            track_depths: false,
        };
        Ok(EventBus {
            core: Arc::new(Core::start(settings)),
        })
    }

    /// Subscribes an async handler to a name or pattern (see [`Pattern`](crate::Pattern)).
    /// The handler's future runs on the subscription's worker thread and need not be
    /// `Send`. Returns once the subscription is in place and its handler actor runs (or
    /// after `default_timeout`, if its worker thread is held that long by a blocking
    /// handler); an event published after `subscribe` returns reaches it.
    pub async fn subscribe<F, Fut>(
        &self,
        pattern: &str,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.subscribe_with(pattern, HandlerConfig::new(pattern), handler)
            .await
    }

    /// Like [`subscribe`](Self::subscribe), with a [`HandlerConfig`].
    pub async fn subscribe_with<F, Fut>(
        &self,
        pattern: &str,
        config: HandlerConfig,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.core
            .subscribe(pattern, None, config, AsyncFn(handler))
            .await
    }

    /// Subscribes a blocking handler. It runs on the blocking thread pool, so it may block
    /// without stalling the async handlers that share its worker.
    pub async fn subscribe_sync<F>(
        &self,
        pattern: &str,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(&Event) -> HandlerResult + Send + Sync + 'static,
    {
        self.subscribe_sync_with(pattern, HandlerConfig::new(pattern), handler)
            .await
    }

    /// Like [`subscribe_sync`](Self::subscribe_sync), with a [`HandlerConfig`]. A run
    /// that times out keeps its blocking thread until it returns (threads cannot be
    /// cancelled), but counts as failed at the timeout.
    pub async fn subscribe_sync_with<F>(
        &self,
        pattern: &str,
        config: HandlerConfig,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(&Event) -> HandlerResult + Send + Sync + 'static,
    {
        self.core
            .subscribe(pattern, None, config, SyncFn(Arc::new(handler)))
            .await
    }

    /// Subscribes an app's own actor: it receives [`Deliver<Event>`] and its reply is the
    /// handler's result. The actor is the app's to supervise: tickwire neither catches its
    /// panics nor restarts it; if it stops, each delivery fails (and is retried, then
    /// dead-lettered).
    pub async fn subscribe_recipient(
        &self,
        pattern: &str,
        config: HandlerConfig,
        recipient: Recipient<Deliver<Event>>,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.core
            .subscribe(pattern, None, config, RecipientFn(recipient))
            .await
    }

    /// Subscribes an async handler of typed values: it gets a [`Typed<T>`], which derefs
    /// to the `T` the event carries (see `## Typed payloads`).
    pub async fn subscribe_typed<T, F, Fut>(
        &self,
        pattern: &str,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        F: Fn(Typed<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.subscribe_typed_with(pattern, HandlerConfig::new(pattern), handler)
            .await
    }

    /// Like [`subscribe_typed`](Self::subscribe_typed), with a [`HandlerConfig`].
    pub async fn subscribe_typed_with<T, F, Fut>(
        &self,
        pattern: &str,
        config: HandlerConfig,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        F: Fn(Typed<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.core
            .subscribe(pattern, None, config, Decoded::new(AsyncFn(handler)))
            .await
    }

    /// Like [`subscribe_sync_with`](Self::subscribe_sync_with), for a blocking handler of
    /// typed values.
    pub async fn subscribe_typed_sync_with<T, F>(
        &self,
        pattern: &str,
        config: HandlerConfig,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        F: Fn(&Typed<T>) -> HandlerResult + Send + Sync + 'static,
    {
        let handler = Decoded::new(SyncFn(Arc::new(handler)));
        self.core.subscribe(pattern, None, config, handler).await
    }

    /// Subscribes an app's own actor to typed values: it receives
    /// [`Deliver<Typed<T>>`](Deliver), and its reply is the handler's result (see
    /// [`subscribe_recipient`](Self::subscribe_recipient)).
    pub async fn subscribe_typed_recipient<T>(
        &self,
        pattern: &str,
        config: HandlerConfig,
        recipient: Recipient<Deliver<Typed<T>>>,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let handler = Decoded::new(RecipientFn(recipient));
        self.core.subscribe(pattern, None, config, handler).await
    }

    /// Removes a subscription. Returns `false` if there was none with that id. When it
    /// returns, the handler is not running and will not run again; events still queued
    /// for it (and an event waiting for a retry) are discarded. A handler must not await
    /// the removal of its own subscription: that waits for the handler to return, so it
    /// ends only at the handler's timeout.
    pub async fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.core.unsubscribe(id).await
    }

    /// Publishes an event, waiting up to `default_timeout` for room (see `## Backpressure`).
    ///
    /// With `enable_async_processing = false`, returns only after every matching handler
    /// finished with the event, or fails with [`PublishError::HandlerTimeout`] (the event
    /// stays accepted) if that takes longer than `default_timeout`. A handler that
    /// publishes, in that mode, an event matching its own subscription waits for an event
    /// queued behind itself: it gets `HandlerTimeout` after `default_timeout`.
    pub async fn publish(&self, event: Event) -> Result<(), PublishError<Event>> {
        if let Err(err) = crate::validate_name(event.name()) {
            return Err(PublishError::InvalidName(event, err));
        }
        self.core.publish(event).await
    }

    /// Publishes an event without waiting: [`TryPublishError::QueueFull`] if a matching
    /// subscription has no room. Works from any thread.
    pub fn try_publish(&self, event: Event) -> Result<(), TryPublishError<Event>> {
        if let Err(err) = crate::validate_name(event.name()) {
            return Err(TryPublishError::InvalidName(event, err));
        }
        self.core.try_publish(event)
    }

    /// Up to `limit` of the latest published events (at most `max_history`), newest last.
    pub async fn history(&self, limit: usize) -> Vec<Event> {
        self.core.history(limit)
    }

    /// The latest dead letters (at most `max_dead_letters`), oldest first; see
    /// `## Dead letters` in [`supervision`](crate::core::supervision).
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.core.dead_letters()
    }

    /// Delivery counters over every subscription, current and removed: processed,
    /// errors, retries, dead letters, dropped, restarts, queued. Exact once the bus is
    /// quiet (after `stop()`, or when nothing is queued or running).
    pub fn delivery_stats(&self) -> DeliveryStats {
        self.core.stats()
    }

    /// The seed's performance metrics, plus ours (latency percentiles, retries, dead
    /// letters, dropped, restarts); definitions in [`metrics`](crate::metrics).
    ///
    /// The name is the seed specification's (`get_performance_metrics()`), kept so that
    /// code written against the seed reads the same (Rust getters otherwise have no
    /// `get_` prefix).
    pub async fn get_performance_metrics(&self) -> EventBusMetrics {
        EventBusMetrics::from_snapshot(&self.core.metrics().await)
    }

    /// True once [`stop`](Self::stop) was called (it refuses new events from then on).
    pub fn is_stopping(&self) -> bool {
        self.core.is_stopping()
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.core.subscriptions()
    }

    /// Per-subscription bound on waiting events (`queue_size`).
    pub fn queue_capacity(&self) -> usize {
        self.core.settings().capacity
    }

    /// Stops the bus; see `## Shutdown`. Later publishes fail with
    /// [`PublishError::Stopped`]. A call made while another is draining returns when
    /// that drain ends; a call after the bus stopped returns at once.
    pub async fn stop(&self) {
        self.core.stop().await
    }
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("subscriptions", &self.subscription_count())
            .finish()
    }
}
