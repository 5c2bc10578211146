//! The cluster's tasks, on its own arbiter: the outbound pump of each component, the
//! fan-in of each clustered pattern, and the control task that keeps one NATS queue
//! subscription per consumer group.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_nats::{Client, Subscriber};
use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use super::durable::{self, Durable};
use super::link::{Control, Counts};
use super::wire::{self, Space};
use crate::core::tap::{GroupKey, Scope};
use crate::core::Core;
use crate::item::{Item, Kind, Name};
use crate::Pattern;

/// What every task of a cluster shares.
pub(crate) struct Context {
    /// Publishes, the plain fan-in and JetStream: no echo.
    pub(crate) client: Client,
    /// The consumer groups' queue subscriptions: with echo.
    pub(crate) groups: Client,
    pub(crate) prefix: Arc<str>,
    pub(crate) node: Arc<str>,
    pub(crate) counts: Arc<Counts>,
    /// The durable topics, if any are configured.
    pub(crate) durable: Option<Durable>,
    /// Cleared when the cluster closes.
    pub(crate) open: Arc<AtomicBool>,
}

impl Context {
    /// Whether the cluster is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// The durable side, when `space`'s `name` is durable.
    fn durable_for(&self, space: Space, name: &str) -> Option<&Durable> {
        self.durable
            .as_ref()
            .filter(|d| space == Space::Messages && d.covers(name))
    }
}

/// Sends what a component's link accepted to NATS, in order, until the link is dropped:
/// a durable item to JetStream (its confirmation awaited behind, see `durable`), any
/// other as a core NATS publish, once the server has the groups' connection's
/// subscriptions ([`groups_ready`]).
pub(crate) async fn pump<K: Kind>(
    ctx: Arc<Context>,
    space: Space,
    mut items: UnboundedReceiver<Item<K>>,
) {
    let (pending, confirm) = durable::confirmations(ctx.clone());
    let confirming = ctx.durable.is_some().then(|| actix_rt::spawn(confirm));
    let mut subjects = wire::Subjects::new(ctx.prefix.clone(), space);
    let mut probed = None;
    while let Some(item) = items.recv().await {
        if let Some(durable) = ctx.durable_for(space, item.route()) {
            let subject = wire::subject(&ctx.prefix, space, item.route());
            if let Err(err) = durable::publish(&ctx, durable, &item, subject, &pending).await {
                tracing::warn!(route = item.route(), error = %err, "cluster: durable publish to JetStream failed");
                ctx.counts.publish_failed.fetch_add(1, Ordering::Relaxed);
                ctx.counts.unbuffer();
            }
            continue;
        }
        groups_ready(&ctx, &mut probed).await;
        let headers = wire::headers(&item, &ctx.node);
        let sent = match wire::payload(&item) {
            Ok(payload) => ctx
                .client
                .publish_with_headers(subjects.of(item.route()), headers, payload)
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(format!("payload does not serialize: {err}")),
        };
        match sent {
            Ok(()) => ctx.counts.published.fetch_add(1, Ordering::Relaxed),
            Err(err) => {
                tracing::warn!(route = item.route(), error = %err, "cluster: publish to NATS failed");
                ctx.counts.publish_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        ctx.counts.unbuffer();
    }
    // The link is gone: what waits for confirmation is still confirmed (or given up).
    drop(pending);
    if let Some(confirming) = confirming {
        let _ = confirming.await;
    }
}

/// Waits until the groups' connection is up and a [`round_trip`] made since it last
/// came up or went down (the epoch `probed`) has come back: only then does the server
/// have its queue subscriptions (the client re-subscribes after a reconnect), and a
/// core publish reach this node's own group members. Without it, the publishing
/// connection, back first after an outage, would send what waited to no one. While
/// the groups' connection is down, what is accepted waits in the link's buffer (and is
/// refused past `max_buffered`), as when both are. A closing cluster does not wait.
async fn groups_ready(ctx: &Context, probed: &mut Option<u64>) {
    use async_nats::connection::State;
    loop {
        let epoch = ctx.counts.groups_epoch.load(Ordering::Acquire);
        let up = ctx.groups.connection_state() == State::Connected;
        if (up && *probed == Some(epoch)) || !ctx.is_open() {
            return;
        }
        if up {
            match round_trip(ctx).await {
                Ok(()) => *probed = Some(epoch),
                Err(err) => tracing::debug!(error = %err, "cluster: the groups' probe failed"),
            }
        } else {
            let groups_up = || ctx.groups.connection_state() == State::Connected;
            ctx.counts
                .until_link(None, || groups_up() || !ctx.is_open())
                .await;
        }
    }
}

/// The item a NATS message carries, if it is one of `space`'s.
/// `wanted`: whether this task delivers the name (nothing is decoded or counted for one
/// it does not); `drop_own`: whether a message this node published is dropped (the plain
/// fan-in's: this node delivered it already).
pub(crate) fn received<K: Kind>(
    ctx: &Context,
    core: &Core<Item<K>>,
    space: Space,
    message: &async_nats::Message,
    wanted: impl Fn(&str) -> bool,
    drop_own: bool,
) -> Option<Item<K>> {
    let name = wire::name_of(&ctx.prefix, space, message.subject.as_str());
    if name.is_some_and(|name| !wanted(name)) {
        return None;
    }
    let malformed = |err: Option<wire::Malformed>| {
        if let Some(err) = err {
            tracing::warn!(subject = %message.subject, error = %err, "cluster: not a tickwire item");
        }
        ctx.counts.malformed.fetch_add(1, Ordering::Relaxed);
        None
    };
    let meta = match wire::Meta::of(message.headers.as_ref()) {
        Ok(meta) => meta,
        Err(err) => return malformed(Some(err)),
    };
    if drop_own && meta.origin == &*ctx.node {
        return None;
    }
    // A name any NATS client could send: checked as a local publish's would be (length,
    // tokens, no wildcards).
    let Some(name) = name.filter(|name| crate::validate_name(name).is_ok()) else {
        return malformed(None);
    };
    let name = match core.interned(name) {
        Some(shared) => Name::from(shared),
        None => Name::from(name.to_owned()),
    };
    meta.item(name, &message.payload)
        .map_err(|err| malformed(Some(err)))
        .ok()
}

/// Delivers one received item in `scope`, counting the outcome.
async fn deliver<K: Kind>(ctx: &Context, core: &Core<Item<K>>, item: Item<K>, scope: Scope<'_>) {
    match core.deliver(item, scope).await {
        Ok(()) => ctx.counts.received.fetch_add(1, Ordering::Relaxed),
        Err(err) => {
            if matches!(err, crate::PublishError::Stopped(_)) {
                tracing::debug!(error = %err, "cluster: a received item for a stopped component");
            } else {
                tracing::warn!(error = %err, "cluster: a received item was not delivered");
            }
            ctx.counts.inbound_dropped.fetch_add(1, Ordering::Relaxed)
        }
    };
}

/// The plain subscriptions' share of pattern `index` of `patterns`: what other nodes
/// published on it. A name that several patterns match is delivered by the first one's
/// task only, so once.
pub(crate) async fn fan_in<K: Kind>(
    ctx: Arc<Context>,
    core: Arc<Core<Item<K>>>,
    space: Space,
    patterns: Arc<[Pattern]>,
    index: usize,
    mut subscriber: Subscriber,
) {
    let first = |name: &str| patterns.iter().position(|p| p.matches(name)) == Some(index);
    while let Some(message) = subscriber.next().await {
        // What this node published was delivered here already (the server sends none
        // back to a no-echo connection: this is the safety net).
        if let Some(item) = received(&ctx, &core, space, &message, first, true) {
            deliver(&ctx, &core, item, Scope::Plain).await;
        }
    }
}

/// One consumer group's share: what the NATS queue group gives this node, from any node
/// (this one included), to this node's members of the group; not the durable topics'
/// messages, which the group takes from JetStream.
async fn group_in<K: Kind>(
    ctx: Arc<Context>,
    core: Arc<Core<Item<K>>>,
    space: Space,
    key: Arc<GroupKey>,
    mut subscriber: Subscriber,
) {
    let not_durable = |name: &str| ctx.durable_for(space, name).is_none();
    while let Some(message) = subscriber.next().await {
        if let Some(item) = received(&ctx, &core, space, &message, not_durable, false) {
            deliver(&ctx, &core, item, Scope::Group(&key.0, &key.1)).await;
        }
    }
}

/// How long a [`round_trip`] waits for its probes.
const ROUND_TRIP: std::time::Duration = std::time::Duration::from_secs(30);

/// Probes that make a round trip through the server from each of the node's two
/// connections: the server handles one connection's operations in order, so once a
/// probe a connection sent is back, the server has every subscription and publish that
/// connection sent before it. (A flush only waits for the socket.) The group connection
/// subscribes an inbox and probes it itself; then the publishing connection, which gets
/// no echo of its own, sends its probe to that inbox.
pub(crate) async fn round_trip(ctx: &Context) -> Result<(), String> {
    let inbox = ctx.groups.new_inbox();
    let probe = async {
        let mut replies = ctx
            .groups
            .subscribe(inbox.clone())
            .await
            .map_err(|e| e.to_string())?;
        for client in [&ctx.groups, &ctx.client] {
            client
                .publish(inbox.clone(), bytes::Bytes::new())
                .await
                .map_err(|e| e.to_string())?;
            client.flush().await.map_err(|e| e.to_string())?;
            replies
                .next()
                .await
                .ok_or_else(|| "the probe's subscription ended".to_owned())?;
        }
        Ok(())
    };
    tokio::time::timeout(ROUND_TRIP, probe)
        .await
        .map_err(|_| format!("no answer within {} s", ROUND_TRIP.as_secs()))?
}

/// Keeps one NATS queue subscription per consumer group of `core`, as the registry
/// reports them, and one JetStream consumer per durable pattern the group's pattern
/// meets; answers syncs once the server has every change before them.
pub(crate) async fn control<K: Kind>(
    ctx: Arc<Context>,
    core: Arc<Core<Item<K>>>,
    space: Space,
    mut changes: UnboundedReceiver<Control>,
) {
    // Aborted with this task too (a dropped JoinHandle does not abort its task).
    let mut groups = Groups::default();
    let groups = &mut groups.0;
    while let Some(change) = changes.recv().await {
        match change {
            Control::GroupOpened { pattern, name } => {
                let key = Arc::new((pattern, name));
                let tasks = open_group(&ctx, &core, space, &key).await;
                for old in groups.insert((*key).clone(), tasks).into_iter().flatten() {
                    old.abort();
                }
            }
            Control::GroupClosed { pattern, name } => {
                // Dropping its subscriber unsubscribes; its durable consumers stay.
                for task in groups.remove(&(pattern, name)).into_iter().flatten() {
                    task.abort();
                }
            }
            Control::Sync(done) => {
                let missing = ctx.counts.missing_consumers.load(Ordering::Acquire);
                let _ = done.send(if missing > 0 {
                    Err(format!(
                        "{missing} durable consumer(s) could not be made yet"
                    ))
                } else {
                    round_trip(&ctx).await
                });
            }
        }
    }
}

/// The tasks of each consumer group, aborted when dropped.
#[derive(Default)]
struct Groups(HashMap<GroupKey, Vec<JoinHandle<()>>>);

impl Drop for Groups {
    fn drop(&mut self) {
        for task in self.0.values().flatten() {
            task.abort();
        }
    }
}

/// A group's tasks: the core NATS queue subscription (unless a durable pattern takes
/// all its topics) and a puller per durable consumer, each consumer made before this
/// returns when JetStream answers (or by its task, retrying, when not).
async fn open_group<K: Kind>(
    ctx: &Arc<Context>,
    core: &Arc<Core<Item<K>>>,
    space: Space,
    key: &Arc<GroupKey>,
) -> Vec<JoinHandle<()>> {
    let (filters, all_durable) = match (&ctx.durable, space) {
        (Some(durable), Space::Messages) => durable.filters(&key.0),
        _ => (Vec::new(), false),
    };
    let mut tasks = Vec::new();
    if !all_durable {
        let subject = wire::subject(&ctx.prefix, space, &key.0);
        let queue = wire::queue_name(&ctx.prefix, &key.0, &key.1);
        match ctx.groups.queue_subscribe(subject.clone(), queue).await {
            Ok(subscriber) => {
                let task = group_in(ctx.clone(), core.clone(), space, key.clone(), subscriber);
                tasks.push(actix_rt::spawn(task));
            }
            Err(err) => {
                tracing::error!(%subject, error = %err, "cluster: a consumer group's queue subscription failed");
            }
        }
    }
    if let Some(durable) = &ctx.durable {
        for filter in filters {
            let made = match durable.consumer(&ctx.prefix, key, &filter).await {
                Ok(made) => Some(made),
                Err(err) => {
                    // Until its task makes it, a sync fails: what is published meanwhile
                    // would find no consumer to keep it for.
                    tracing::warn!(group = %key.1, %filter, error = %err, "cluster: a durable consumer could not be made yet");
                    ctx.counts.missing_consumers.fetch_add(1, Ordering::AcqRel);
                    None
                }
            };
            let task = durable::group_in(ctx.clone(), core.clone(), key.clone(), filter, made);
            tasks.push(actix_rt::spawn(task));
        }
    }
    tasks
}
