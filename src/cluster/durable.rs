//! Durable topics: the stream, the durable publish with its confirmation, and each
//! consumer group's durable consumers (the semantics are in the module docs of
//! [`cluster`](super), "Durable topics").

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{
    PublishAckFuture, PublishError as JsPublishError, PublishErrorKind,
};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::link::Counts;
use super::tasks::{received, Context};
use super::wire::{self, Space};
use crate::core::tap::{GroupKey, Scope};
use crate::core::{Core, Settled};
use crate::item::{Item, Kind};
use crate::{Pattern, PublishError};

/// How many durable publishes of one component may wait for JetStream's confirmation at
/// once (the rest wait, buffered, behind them). Below the JetStream context's 5,000
/// confirmation permits, which the components of a cluster share (and which a resend
/// never waits for: see `Durable::js`).
const IN_FLIGHT: usize = 1_024;

/// How many unacknowledged messages JetStream gives one group's consumer at once.
const MAX_ACK_PENDING: i64 = 4_096;

/// The longest wait between two attempts at something JetStream refused or did not
/// answer.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A cluster's durable side: the JetStream context and what is durable.
pub(crate) struct Durable {
    /// Without backpressure on its confirmation permits: a send that finds none fails at
    /// once (and is sent again later) instead of waiting for permits that only the
    /// confirmations queued behind it could free.
    pub(crate) js: jetstream::Context,
    pub(crate) patterns: Vec<Pattern>,
    pub(crate) stream: String,
    pub(crate) ack_wait: Duration,
    /// This process's, for message ids: a node restarted under its name does not reuse
    /// its ids.
    pub(crate) incarnation: u64,
    /// The next publish's number in its message id (not the item's id: a received item
    /// published again keeps its origin's id, which may equal one of this node's).
    pub(crate) sequence: std::sync::atomic::AtomicU64,
}

impl Durable {
    /// Whether a topic is durable.
    pub(crate) fn covers(&self, topic: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(topic))
    }

    /// The durable patterns that a group's pattern meets, as the filters of its
    /// consumers; and whether one of them takes the whole pattern (the group then needs
    /// no core NATS queue subscription).
    pub(crate) fn filters(&self, pattern: &str) -> (Vec<Pattern>, bool) {
        let Ok(pattern) = Pattern::parse(pattern) else {
            return (Vec::new(), false);
        };
        let whole = self.patterns.iter().any(|d| d.covers(&pattern));
        let filters = self
            .patterns
            .iter()
            .filter_map(|d| d.intersect(&pattern))
            .collect();
        (filters, whole)
    }

    /// Creates the stream, or adds this node's subjects to it; with `create` false, only
    /// adds them to a stream that exists.
    pub(crate) async fn ensure_stream(&self, prefix: &str, create: bool) -> Result<(), String> {
        if !create {
            self.js
                .get_stream(&self.stream)
                .await
                .map_err(|e| format!("no stream {}: {e}", self.stream))?;
        }
        let ours: Vec<String> = self
            .patterns
            .iter()
            .map(|p| wire::subject(prefix, Space::Messages, p.as_str()))
            .collect();
        let config = stream::Config {
            name: self.stream.clone(),
            subjects: ours.clone(),
            retention: stream::RetentionPolicy::Interest,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        // Two nodes may create or update it at once: each round reads it again.
        let mut last = String::new();
        for _ in 0..5 {
            match self.js.get_or_create_stream(config.clone()).await {
                Ok(found) => {
                    let mut existing = found.cached_info().config.clone();
                    let missing: Vec<_> = ours
                        .iter()
                        .filter(|s| !existing.subjects.contains(s))
                        .cloned()
                        .collect();
                    if missing.is_empty() {
                        return Ok(());
                    }
                    existing.subjects.extend(missing);
                    // Another node may update it at the same time, and the last write
                    // wins: the next round reads it again and adds what is missing.
                    if let Err(e) = self.js.update_stream(existing).await {
                        last = format!("cannot add subjects: {e}");
                    }
                }
                Err(err) => last = err.to_string(),
            }
        }
        Err(format!("cannot make stream {}: {last}", self.stream))
    }

    /// The consumer config of one group's filter.
    fn consumer_config(
        &self,
        prefix: &str,
        key: &GroupKey,
        filter: &Pattern,
    ) -> consumer::pull::Config {
        let name = wire::consumer_name(prefix, &key.0, &key.1, filter.as_str());
        consumer::pull::Config {
            durable_name: Some(name),
            filter_subject: wire::subject(prefix, Space::Messages, filter.as_str()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            deliver_policy: consumer::DeliverPolicy::New,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        }
    }

    /// Gets or creates one group's consumer for `filter`, and the stream first if it is
    /// gone (deleted, or a server back without its store).
    pub(crate) async fn consumer(
        &self,
        prefix: &str,
        key: &GroupKey,
        filter: &Pattern,
    ) -> Result<PullConsumer, String> {
        let config = self.consumer_config(prefix, key, filter);
        let name = config.durable_name.clone().unwrap_or_default();
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let made = match stream.get_or_create_consumer(&name, config.clone()).await {
            // Gone, or made again by a node with other subjects than ours.
            Err(err)
                if matches!(err.kind(), ConsumerErrorKind::JetStream(refusal)
                    if [ErrorCode::STREAM_NOT_FOUND, ErrorCode::CONSUMER_FILTER_NOT_SUBSET]
                        .contains(&refusal.error_code())) =>
            {
                tracing::warn!(stream = %self.stream, error = %err, "cluster: the durable topics' stream is gone or lacks our subjects; making it again");
                self.ensure_stream(prefix, true).await?;
                stream.get_or_create_consumer(&name, config).await
            }
            made => made,
        };
        made.map_err(|e| format!("cannot create consumer {name}: {e}"))
    }
}

/// A group's durable consumer.
pub(crate) type PullConsumer = consumer::Consumer<consumer::pull::Config>;

/// A durable publish waiting for JetStream's confirmation.
pub(crate) struct Pending {
    /// Why the first send failed, if it did: [`confirm`] sends it again (unless it can
    /// never be stored).
    ack: Result<PublishAckFuture, JsPublishError>,
    subject: String,
    publish: PublishMessage,
}

/// Whether JetStream can never store a publish however often it is sent: over the
/// server's `max_payload` (the client does not send it), or over the stream's
/// `max_msg_size` (the server refuses it). Waiting for either would hold up every
/// durable publish behind it for good; any other failure (no answer, no stream, the
/// stream full) may pass and is retried.
fn never_stored(err: &JsPublishError) -> bool {
    match err.kind() {
        PublishErrorKind::MaxPayloadExceeded => true,
        PublishErrorKind::Other => std::error::Error::source(err)
            .and_then(|source| source.downcast_ref::<jetstream::Error>())
            .is_some_and(|refusal| {
                refusal.error_code() == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM
            }),
        _ => false,
    }
}

/// The queue of durable publishes waiting for confirmation, and the task that awaits
/// them ([`confirm`]).
pub(crate) fn confirmations(
    ctx: Arc<Context>,
) -> (
    mpsc::Sender<Pending>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    (tx, confirm(ctx, rx))
}

/// Sends a durable item to JetStream; its confirmation is awaited by [`confirm`], in
/// order, behind at most `IN_FLIGHT` others.
pub(crate) async fn publish<K: Kind>(
    ctx: &Context,
    durable: &Durable,
    item: &Item<K>,
    subject: String,
    pending: &mpsc::Sender<Pending>,
) -> Result<(), String> {
    let payload =
        wire::payload(item).map_err(|err| format!("payload does not serialize: {err}"))?;
    let publish = PublishMessage::build()
        .headers(wire::headers(item, &ctx.node))
        .payload(payload)
        .message_id(wire::message_id(
            &ctx.node,
            durable.incarnation,
            durable.sequence.fetch_add(1, Ordering::Relaxed),
        ));
    let ack = durable
        .js
        .send_publish(subject.clone(), publish.clone())
        .await;
    // Only a closed cluster drops the queue.
    pending
        .send(Pending {
            ack,
            subject,
            publish,
        })
        .await
        .map_err(|_| "the cluster closed".to_owned())
}

/// Awaits each durable publish's confirmation, in order; sends again (same message id)
/// what was not confirmed, for as long as the cluster is open, unless JetStream can
/// [never store](never_stored) it. An item counts as buffered until it is confirmed, or
/// given up.
async fn confirm(ctx: Arc<Context>, mut pending: mpsc::Receiver<Pending>) {
    let Some(durable) = ctx.durable.as_ref() else {
        return;
    };
    while let Some(Pending {
        ack,
        subject,
        publish,
    }) = pending.recv().await
    {
        let mut ack = ack;
        let mut backoff = Duration::from_millis(50);
        // Whether a send reached the connection (JetStream may have stored it).
        let mut sent = false;
        loop {
            let outcome = match ack {
                Ok(ack) => {
                    sent = true;
                    ack.await.map(|_| ())
                }
                Err(err) => Err(err),
            };
            match outcome {
                Ok(()) => {
                    ctx.counts.published.fetch_add(1, Ordering::Relaxed);
                    ctx.counts.stored.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(err) if never_stored(&err) => {
                    if sent {
                        tracing::warn!(%subject, error = %err, "cluster: a durable publish was not confirmed and can no longer be sent (it may be stored); given up");
                    } else {
                        tracing::warn!(%subject, error = %err, "cluster: JetStream can never store a durable publish; given up");
                    }
                    ctx.counts.publish_failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(err) if !ctx.is_open() => {
                    tracing::warn!(%subject, error = %err, "cluster: a durable publish was not confirmed before the cluster closed");
                    ctx.counts.publish_failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(err) => {
                    tracing::warn!(%subject, error = %err, "cluster: JetStream did not confirm a durable publish; sending it again");
                    if err.kind() == PublishErrorKind::StreamNotFound {
                        // No stream takes the subject: one made again by a node with
                        // other subjects gets ours. (One that is gone is made again by
                        // the next node that makes a consumer, not here: made before
                        // the consumers, it would keep what it stores for no one.)
                        if let Err(why) = durable.ensure_stream(&ctx.prefix, false).await {
                            tracing::debug!(error = %why, "cluster: no stream for a durable publish yet");
                        }
                    }
                    actix_rt::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    ctx.counts.resent.fetch_add(1, Ordering::Relaxed);
                    ack = durable
                        .js
                        .send_publish(subject.clone(), publish.clone())
                        .await;
                }
            }
        }
        ctx.counts.unbuffer();
    }
}

/// One consumer group's share of the durable topics matching `filter`: pulls from its
/// consumer (`consumer` if made already; made again, or for the first time, until that
/// succeeds, whenever its stream of messages ends or the consumer is gone), delivers
/// each message to this node's members and acknowledges it once settled.
pub(crate) async fn group_in<K: Kind>(
    ctx: Arc<Context>,
    core: Arc<Core<Item<K>>>,
    key: Arc<GroupKey>,
    filter: Pattern,
    mut consumer: Option<PullConsumer>,
) {
    use consumer::pull::MessagesErrorKind;
    let Some(durable) = ctx.durable.as_ref() else {
        return;
    };
    let mut backoff = Duration::from_millis(50);
    // Counted missing by `open_group` until made here.
    let mut missing = consumer.is_none();
    loop {
        let made = match consumer.take() {
            Some(made) => Ok(made),
            None => durable.consumer(&ctx.prefix, &key, &filter).await,
        };
        if missing && made.is_ok() {
            missing = false;
            ctx.counts.missing_consumers.fetch_sub(1, Ordering::AcqRel);
        }
        let pulled = match made {
            Ok(made) => {
                // The server's `ack_wait` (a consumer made before keeps its own).
                let half = (made.cached_info().config.ack_wait / 2).max(MIN_PROGRESS);
                made.messages()
                    .await
                    .map(|messages| (messages, half))
                    .map_err(|e| e.to_string())
            }
            Err(err) => Err(err),
        };
        match pulled {
            Ok((mut messages, half)) => {
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(message) => {
                            backoff = Duration::from_millis(50);
                            let handling = Handling::start(&ctx);
                            let task =
                                handle(ctx.clone(), core.clone(), key.clone(), message, half);
                            actix_rt::spawn(async move {
                                task.await;
                                drop(handling);
                            });
                        }
                        Err(err)
                            if matches!(
                                err.kind(),
                                MessagesErrorKind::ConsumerDeleted
                                    | MessagesErrorKind::NoResponders
                            ) =>
                        {
                            tracing::warn!(group = %key.1, %filter, error = %err, "cluster: a durable consumer is gone; making it again");
                            // A sync fails until it is back; made again at once.
                            if !missing {
                                missing = true;
                                ctx.counts.missing_consumers.fetch_add(1, Ordering::AcqRel);
                            }
                            backoff = Duration::from_millis(50);
                            break;
                        }
                        Err(err) => {
                            tracing::debug!(group = %key.1, error = %err, "cluster: pulling durable messages");
                        }
                    }
                }
            }
            Err(err) => {
                tracing::warn!(group = %key.1, %filter, error = %err, "cluster: a durable consumer is not available; trying again");
            }
        }
        // The stream ended, or the consumer is not there: get (or make) it again.
        actix_rt::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The shortest interval between two "still at work" acknowledgements.
const MIN_PROGRESS: Duration = Duration::from_millis(100);

/// How soon a refused message may be delivered again (not at once: the node that refused
/// it may still be taking it, or its group closing).
const NAK_DELAY: Duration = Duration::from_millis(100);

/// Counts one durable message in hand on this node (see `Cluster::close`).
struct Handling(Arc<Counts>);

impl Handling {
    fn start(ctx: &Context) -> Handling {
        ctx.counts.handling.fetch_add(1, Ordering::AcqRel);
        Handling(ctx.counts.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handled_one();
    }
}

/// Delivers one durable message to this node's members of the group, then acknowledges
/// it (handled or dead), or refuses it (discarded: JetStream redelivers it). Tells
/// JetStream it is at work every `half` (of the consumer's `ack_wait`) meanwhile.
async fn handle<K: Kind>(
    ctx: Arc<Context>,
    core: Arc<Core<Item<K>>>,
    key: Arc<GroupKey>,
    message: jetstream::Message,
    half: Duration,
) {
    if message.info().is_ok_and(|info| info.delivered > 1) {
        ctx.counts.redelivered.fetch_add(1, Ordering::Relaxed);
    }
    let Some(item) = received(&ctx, &core, Space::Messages, &message, |_| true, false) else {
        // Not a tickwire item (counted malformed): never deliverable, so not redelivered.
        let _ = message.ack_with(AckKind::Term).await;
        return;
    };
    let settled = core.deliver_settled(item, Scope::Group(&key.0, &key.1));
    tokio::pin!(settled);
    let outcome = loop {
        tokio::select! {
            outcome = &mut settled => break outcome,
            _ = actix_rt::time::sleep(half) => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    };
    let (ack, delivered) = match outcome {
        Ok(Settled::Done) => (AckKind::Ack, true),
        Ok(Settled::Discarded | Settled::Nobody) | Err(PublishError::Stopped(_)) => {
            (AckKind::Nak(Some(NAK_DELAY)), false)
        }
        // Full for `default_timeout`: not at once again.
        Err(_) => (AckKind::Nak(Some(Duration::from_millis(200))), false),
    };
    if delivered {
        ctx.counts.received.fetch_add(1, Ordering::Relaxed);
    } else {
        ctx.counts.refused_back.fetch_add(1, Ordering::Relaxed);
    }
    match message.ack_with(ack).await {
        Ok(()) if delivered => {
            ctx.counts.acked.fetch_add(1, Ordering::Relaxed);
        }
        Ok(()) => {}
        // Not acknowledged: JetStream redelivers it after `ack_wait`.
        Err(err) => {
            tracing::warn!(error = %err, "cluster: a durable message's acknowledgement was not sent")
        }
    }
}
