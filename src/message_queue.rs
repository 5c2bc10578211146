//! The MessageQueue: topics with priorities, a queue-wide bound, and consumer groups.
//!
//! A thin facade over the same delivery core as the [`EventBus`](crate::EventBus): the
//! same mailboxes, index, handler actors, supervision and overflow policies. What it adds:
//!
//! - **Topics** carry [`Message`]s; [`publish`](MessageQueue::publish) returns the
//!   message id.
//! - **Consumer groups** ([`subscribe_group`](MessageQueue::subscribe_group)): each
//!   message goes to exactly one member of the group. Members share the group's mailbox
//!   and each takes the next message when it is free, so the least busy member does the
//!   work (no round-robin: a slow member never holds messages another could handle).
//!   Members are woken as the work needs them: a burst wakes them one by one, and a group
//!   that keeps up costs about one wake per burst, not one per member per message. (A
//!   handler that blocks its worker thread, CPU-bound work in an async handler, also
//!   holds up the members on that worker: an idle member elsewhere is preferred; a member of the group already
//!   woken there does not hold back a wake of another while a member on its worker is
//!   busy, but one held by another actor's handler does, for up to 500 µs or until the
//!   next message. Run such work in a blocking handler.) A member that leaves gets no more;
//!   what is still queued stays for the other members.
//!   A leaving member finishes the message in hand; a message it holds for a retry or
//!   across a restart is discarded with it (counted as dropped). A group is named by its
//!   pattern and group name; its members run concurrently, with no order between them,
//!   and one member's retries do not hold the others back. Each member applies the anti-starvation rule to
//!   what it takes, so in a group of `n` a LOW message may wait about `n` times longer
//!   than on a single subscription.
//! - **`max_size`** bounds everything queued in the whole queue, all topics and
//!   subscriptions together (each subscription's mailbox is bounded by it too). A
//!   subscription with a drop [`OverflowPolicy`](crate::OverflowPolicy) never makes a
//!   publisher wait for it: when the queue is full it drops (its own oldest message, or
//!   the new one) and counts it. With priority queues, LOW messages may fill at most
//!   seven eighths of `max_size` (and of each mailbox): the rest is kept for more urgent
//!   ones.
//! - **`enable_priority_queues = false`** makes every subscription plain FIFO.
//! - **Per-topic depth**: messages accepted and not yet finished, per topic. A topic's
//!   counter exists while it has deliveries in flight (and a while after: counters at zero
//!   are reclaimed in batches), so topic names that clients invent cost bounded memory; a
//!   topic nobody subscribed to gets none.
//!
//! ```
//! use serde_json::json;
//! use tickwire::{MessageQueue, MessageQueueConfig, Priority};
//!
//! # actix_rt::System::new().block_on(async {
//! let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! for worker in 0..3 {
//!     let tx = tx.clone();
//!     mq.subscribe_group("orders.new", "routers", move |message| {
//!         let _ = tx.send((worker, message.id()));
//!         std::future::ready(Ok(()))
//!     })
//!     .await
//!     .unwrap();
//! }
//! let mut ids = Vec::new();
//! for n in 0..30 {
//!     ids.push(mq.publish("orders.new", json!({"n": n}), Priority::Normal).await.unwrap());
//! }
//! mq.stop().await;
//! drop(tx);
//! let mut handled: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok()).map(|(_, id)| id).collect();
//! handled.sort_unstable();
//! assert_eq!(handled, ids); // each message handled once, by one of the three
//! # });
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use actix::Recipient;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::core::handler::{AsyncFn, Decoded, RecipientFn, SyncFn};
use crate::core::{Core, Settings};
use crate::item::Name;
use crate::{
    ConfigError, DeadLetter, Deliver, DeliveryStats, HandlerConfig, HandlerResult, Message,
    MessageQueueConfig, MessageQueueMetrics, Priority, PublishError, SubscribeError,
    SubscriptionId, TryPublishError, TypedMessage,
};

/// The message, if its topic is valid.
fn checked(message: Message) -> Result<Message, TryPublishError<Message>> {
    match crate::validate_name(message.topic()) {
        Ok(()) => Ok(message),
        Err(err) => Err(TryPublishError::InvalidName(message, err)),
    }
}

/// A handle to a running message queue. Clones share the queue.
///
/// ## Backpressure
///
/// `max_size` bounds the deliveries waiting in the whole queue (a message for three
/// subscribers counts three). [`publish`](Self::publish) waits for room up to
/// `default_timeout`, then fails with [`PublishError::QueueFull`] handing the message
/// back; [`try_publish`](Self::try_publish) fails at once with
/// [`TryPublishError::QueueFull`]. A publish is all-or-nothing,
/// as on the EventBus.
///
/// ## Priority
///
/// With `enable_priority_queues = true` (default), each subscription takes CRITICAL
/// messages first, with the EventBus's anti-starvation rule; with `false`, in arrival
/// order.
///
/// ## Failures and shutdown
///
/// Exactly as on the [`EventBus`](crate::EventBus): timeouts, retries, restarts, dead
/// letters (`$dlq.<topic>` messages), overflow policies, and a `stop()` that drains what
/// was accepted.
///
/// ## Typed payloads
///
/// As on the EventBus (see its `## Typed payloads`): [`publish_typed`](Self::publish_typed)
/// and [`try_publish_typed`](Self::try_publish_typed) publish a typed value without
/// building JSON (for a topic the index knows, the message is the only allocation); [`subscribe_typed`](Self::subscribe_typed),
/// [`subscribe_group_typed`](Self::subscribe_group_typed) and
/// [`subscribe_typed_recipient`](Self::subscribe_typed_recipient) give handlers a
/// [`TypedMessage<T>`]: the publisher's value, or one decoded by serde (a WebSocket
/// client's or `/api/publish`'s JSON); a message that does not decode is dead-lettered
/// without a retry.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use tickwire::{MessageQueue, MessageQueueConfig, Priority, TypedMessage};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Order { symbol: String, qty: u32 }
///
/// # actix_rt::System::new().block_on(async {
/// let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// for router in 0..2 {
///     let tx = tx.clone();
///     mq.subscribe_group_typed("orders.new", "routers", move |order: TypedMessage<Order>| {
///         let _ = tx.send((router, order.qty));
///         async { Ok(()) }
///     })
///     .await
///     .unwrap();
/// }
/// for qty in 1..=10 {
///     mq.publish_typed("orders.new", Order { symbol: "BTCUSD".into(), qty }, Priority::High)
///         .await
///         .unwrap();
/// }
/// mq.stop().await;
/// drop(tx);
/// let mut qtys: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).map(|(_, q)| q).collect();
/// qtys.sort_unstable();
/// assert_eq!(qtys, (1..=10).collect::<Vec<_>>()); // each order once, by one router
/// # });
/// ```
#[derive(Clone)]
pub struct MessageQueue {
    core: Arc<Core<Message>>,
}

impl MessageQueue {
    /// The delivery core (a cluster attaches to it).
    #[cfg(any(test, feature = "cluster"))]
    pub(crate) fn core(&self) -> &Arc<Core<Message>> {
        &self.core
    }

    /// Validates the config and starts the queue inside the running actix `System`.
    pub fn start(config: MessageQueueConfig) -> Result<MessageQueue, ConfigError> {
        config.validate()?;
        if actix_rt::System::try_current().is_none() {
            return Err(ConfigError::NoSystem {
                component: "MessageQueue",
            });
        }
        let settings = Settings {
            workers: config.max_workers,
            capacity: config.max_size,
            fifo: !config.enable_priority_queues,
            default_timeout: config.default_timeout,
            wait_for_handlers: false,
            history: 0,
            retry: config.enable_retry,
            dead_letters: config.max_dead_letters,
            shared_bound: Some(config.max_size),
            metrics: config.enable_metrics,
            track_depths: true,
        };
        Ok(MessageQueue {
            core: Arc::new(Core::start(settings)),
        })
    }

    /// Subscribes an async handler to a topic or pattern: it gets every matching message.
    pub async fn subscribe<F, Fut>(
        &self,
        topic: &str,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.subscribe_with(topic, HandlerConfig::new(topic), handler)
            .await
    }

    /// Like [`subscribe`](Self::subscribe), with a [`HandlerConfig`].
    pub async fn subscribe_with<F, Fut>(
        &self,
        topic: &str,
        config: HandlerConfig,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.core
            .subscribe(topic, None, config, AsyncFn(handler))
            .await
    }

    /// Joins the consumer group `group` on `topic`: each matching message goes to exactly
    /// one member (see the module docs).
    pub async fn subscribe_group<F, Fut>(
        &self,
        topic: &str,
        group: &str,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.subscribe_group_with(topic, group, HandlerConfig::new(group), handler)
            .await
    }

    /// Like [`subscribe_group`](Self::subscribe_group), with a [`HandlerConfig`]. The
    /// priority and overflow policy of the group's first member apply to the group.
    pub async fn subscribe_group_with<F, Fut>(
        &self,
        topic: &str,
        group: &str,
        config: HandlerConfig,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.core
            .subscribe(topic, Some(group), config, AsyncFn(handler))
            .await
    }

    /// Subscribes a blocking handler, run on the blocking thread pool.
    pub async fn subscribe_sync_with<F>(
        &self,
        topic: &str,
        config: HandlerConfig,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        F: Fn(&Message) -> HandlerResult + Send + Sync + 'static,
    {
        self.core
            .subscribe(topic, None, config, SyncFn(Arc::new(handler)))
            .await
    }

    /// Subscribes an app's own actor: it receives [`Deliver<Message>`]. The actor is the
    /// app's to supervise (see `EventBus::subscribe_recipient`).
    pub async fn subscribe_recipient(
        &self,
        topic: &str,
        config: HandlerConfig,
        recipient: Recipient<Deliver<Message>>,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.core
            .subscribe(topic, None, config, RecipientFn(recipient))
            .await
    }

    /// Subscribes an async handler of typed values: it gets a [`TypedMessage<T>`], which
    /// derefs to the `T` the message carries (see `## Typed payloads`).
    pub async fn subscribe_typed<T, F, Fut>(
        &self,
        topic: &str,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        F: Fn(TypedMessage<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.subscribe_typed_with(topic, HandlerConfig::new(topic), handler)
            .await
    }

    /// Like [`subscribe_typed`](Self::subscribe_typed), with a [`HandlerConfig`].
    pub async fn subscribe_typed_with<T, F, Fut>(
        &self,
        topic: &str,
        config: HandlerConfig,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        F: Fn(TypedMessage<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.core
            .subscribe(topic, None, config, Decoded::new(AsyncFn(handler)))
            .await
    }

    /// Joins the consumer group `group` on `topic` with a handler of typed values: each
    /// matching message goes to exactly one member, as with
    /// [`subscribe_group`](Self::subscribe_group).
    pub async fn subscribe_group_typed<T, F, Fut>(
        &self,
        topic: &str,
        group: &str,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        F: Fn(TypedMessage<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.subscribe_group_typed_with(topic, group, HandlerConfig::new(group), handler)
            .await
    }

    /// Like [`subscribe_group_typed`](Self::subscribe_group_typed), with a
    /// [`HandlerConfig`].
    pub async fn subscribe_group_typed_with<T, F, Fut>(
        &self,
        topic: &str,
        group: &str,
        config: HandlerConfig,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        F: Fn(TypedMessage<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + 'static,
    {
        self.core
            .subscribe(topic, Some(group), config, Decoded::new(AsyncFn(handler)))
            .await
    }

    /// Subscribes a blocking handler of typed values, run on the blocking thread pool.
    pub async fn subscribe_typed_sync_with<T, F>(
        &self,
        topic: &str,
        config: HandlerConfig,
        handler: F,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        F: Fn(&TypedMessage<T>) -> HandlerResult + Send + Sync + 'static,
    {
        let handler = Decoded::new(SyncFn(Arc::new(handler)));
        self.core.subscribe(topic, None, config, handler).await
    }

    /// Subscribes an app's own actor to typed values: it receives
    /// [`Deliver<TypedMessage<T>>`](Deliver).
    pub async fn subscribe_typed_recipient<T>(
        &self,
        topic: &str,
        config: HandlerConfig,
        recipient: Recipient<Deliver<TypedMessage<T>>>,
    ) -> Result<SubscriptionId, SubscribeError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let handler = Decoded::new(RecipientFn(recipient));
        self.core.subscribe(topic, None, config, handler).await
    }

    /// Removes a subscription or a group member; `false` if there was none with that id.
    /// A removed member's queued messages stay with the rest of its group.
    pub async fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.core.unsubscribe(id).await
    }

    /// Publishes a message and returns its id, waiting up to `default_timeout` for room
    /// (see `## Backpressure`).
    pub async fn publish(
        &self,
        topic: &str,
        data: Value,
        priority: Priority,
    ) -> Result<u64, PublishError<Message>> {
        let message = self.message(topic, data, priority)?;
        let id = message.id();
        self.core.publish(message).await.map(|()| id)
    }

    /// Publishes without waiting: [`TryPublishError::QueueFull`] when there is no room.
    /// Works from any thread.
    pub fn try_publish(
        &self,
        topic: &str,
        data: Value,
        priority: Priority,
    ) -> Result<u64, TryPublishError<Message>> {
        let message = self.message(topic, data, priority)?;
        let id = message.id();
        self.core.try_publish(message).map(|()| id)
    }

    /// Publishes a message with a typed payload and returns its id, waiting up to
    /// `default_timeout` for room. No JSON is built (see `## Typed payloads`).
    pub async fn publish_typed<T>(
        &self,
        topic: &str,
        value: T,
        priority: Priority,
    ) -> Result<u64, PublishError<Message>>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let message = self.typed_message(topic, value, priority)?;
        let id = message.id();
        self.core.publish(message).await.map(|()| id)
    }

    /// Publishes a message with a typed payload without waiting:
    /// [`TryPublishError::QueueFull`] when there is no room. Works from any thread. The
    /// message is the only allocation when its topic is one the index knows (an exact
    /// subscription's, or a name matched before: the name is shared, not copied) and its
    /// subscriptions are busy (waking an idle handler sends it an actix message).
    pub fn try_publish_typed<T>(
        &self,
        topic: &str,
        value: T,
        priority: Priority,
    ) -> Result<u64, TryPublishError<Message>>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let message = self.typed_message(topic, value, priority)?;
        let id = message.id();
        self.core.try_publish(message).map(|()| id)
    }

    /// Publishes a message made beforehand ([`Message::new`], [`Message::typed`]) and
    /// returns its id, waiting up to `default_timeout` for room.
    pub async fn publish_message(&self, message: Message) -> Result<u64, PublishError<Message>> {
        let message = checked(message)?;
        let id = message.id();
        self.core.publish(message).await.map(|()| id)
    }

    /// Publishes a message made beforehand without waiting.
    pub fn try_publish_message(&self, message: Message) -> Result<u64, TryPublishError<Message>> {
        let message = checked(message)?;
        let id = message.id();
        self.core.try_publish(message).map(|()| id)
    }

    /// A message on a checked topic.
    fn message(
        &self,
        topic: &str,
        data: Value,
        priority: Priority,
    ) -> Result<Message, TryPublishError<Message>> {
        checked(Message::new(topic, data, priority))
    }

    /// A typed message on a checked topic, its name shared with the index when it has it.
    fn typed_message<T>(
        &self,
        topic: &str,
        value: T,
        priority: Priority,
    ) -> Result<Message, TryPublishError<Message>>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let name = match self.core.interned(topic) {
            Some(name) => Name::from(name),
            None => Name::from(topic.to_owned()),
        };
        checked(Message::typed(name, value, priority))
    }

    /// Messages accepted and not yet finished (queued, being handled, or waiting for a
    /// retry), per topic: every topic with such messages, and every topic of an
    /// exact-topic subscription (0 when it has none). A message for three subscribers
    /// counts three.
    pub fn topic_depths(&self) -> BTreeMap<String, u64> {
        let mut depths: BTreeMap<String, u64> = self
            .core
            .subscribed_names()
            .into_iter()
            .map(|topic| (topic, 0))
            .collect();
        depths.extend(self.core.depths());
        depths
    }

    /// Per-topic depth counters held now, some possibly at zero and about to be
    /// reclaimed: a bound check for tests, not a metric.
    #[doc(hidden)]
    pub fn depth_counters(&self) -> usize {
        self.core.depth_counters()
    }

    /// Topics that have subscribers (exact-topic subscriptions) or messages accepted and
    /// not yet finished (waiting, being handled or waiting for a retry).
    pub fn topics_count(&self) -> usize {
        self.topic_depths().len()
    }

    /// Deliveries waiting in the whole queue (what `max_size` bounds).
    pub fn total_queue_size(&self) -> usize {
        self.core.bound_len()
    }

    /// The latest dead letters, oldest first.
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.core.dead_letters()
    }

    /// Delivery counters over every subscription, current and removed.
    pub fn delivery_stats(&self) -> DeliveryStats {
        self.core.stats()
    }

    /// The seed's performance metrics, plus ours; definitions in
    /// [`metrics`](crate::metrics).
    ///
    /// The name is the seed specification's (`get_performance_metrics()`), kept so that
    /// code written against the seed reads the same (Rust getters otherwise have no
    /// `get_` prefix).
    pub async fn get_performance_metrics(&self) -> MessageQueueMetrics {
        let snapshot = self.core.metrics().await;
        MessageQueueMetrics::from_snapshot(
            &snapshot,
            self.total_queue_size() as u64,
            self.topics_count() as u64,
        )
    }

    /// True once [`stop`](Self::stop) was called (it refuses new messages from then on).
    pub fn is_stopping(&self) -> bool {
        self.core.is_stopping()
    }

    /// Number of subscriptions (a consumer group counts once).
    pub fn subscription_count(&self) -> usize {
        self.core.subscriptions()
    }

    /// Stops the queue: refuses new messages, handles what was accepted (bounded by
    /// `default_timeout`), then stops its actors and threads.
    pub async fn stop(&self) {
        self.core.stop().await
    }
}

impl std::fmt::Debug for MessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageQueue")
            .field("subscriptions", &self.subscription_count())
            .field("total_queue_size", &self.total_queue_size())
            .finish()
    }
}
