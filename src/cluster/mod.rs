//! Topics that span processes: an [`EventBus`] and a [`MessageQueue`] attached to a
//! cluster of tickwire nodes through NATS (`async-nats`), behind the `cluster` feature.
//!
//! tickwire builds no distributed system of its own: a [`Cluster`] is a node's link to
//! a NATS server (two connections: one publishes and receives other nodes' items with
//! no echo of its own, one holds the consumer groups), and what spans processes is
//! configured by name ([`ClusterConfig`]):
//!
//! - **EventBus**: an event whose name matches `event_bus` reaches the matching
//!   subscriptions of every attached node, the publishing one included, each exactly
//!   once. The publishing node delivers it to its own subscriptions at once, as any
//!   event, and sends it on `<prefix>.ev.<name>`; the other nodes deliver what they
//!   receive. The server sends a node none of its own publishes, and a node skips any
//!   that carries its own name as the origin: so **node names must be unique**, and
//!   [`Cluster::connect`] refuses one that a connected node holds
//!   ([`ClusterError::NodeTaken`]; a check on `<prefix>.node.<hash of the name>` for
//!   the config copied with its `node`, not a lock: two processes that connect under
//!   one name at the same instant may both get it).
//! - **MessageQueue**: a topic matching `message_queue` likewise (`<prefix>.mq.<topic>`)
//!   for plain subscriptions. A **consumer group** spans nodes: each node's members of
//!   the group (named by its pattern and name) form one member of a NATS queue group, so
//!   each message goes to one node, the publishing one included, and there to one
//!   member. So a clustered message reaches a group through NATS even when the
//!   publisher's own node holds the group, and waits while NATS is unreachable.
//! - Names outside the patterns stay local, exactly as without a cluster; an attached
//!   component keeps its priorities, retries, dead letters and metrics per node.
//! - On the wire (see `wire`): the payload as JSON (a typed value serialized once, on
//!   the cluster's own thread, not the publisher's), and one header, `Tickwire`, for the
//!   id, priority (1..=4), timestamp (nanoseconds since the Unix epoch) and origin node,
//!   separated by spaces: `Tickwire: 42 3 1764680000123456789 gw-1`. A received item
//!   keeps them: handlers on every node see the same id (unique per origin node),
//!   priority and time. A message on our subjects without a valid header, or with a
//!   payload that is not JSON, is counted as `malformed` and not delivered. A received
//!   payload is checked and kept as JSON text: its `serde_json::Value` is built on the
//!   first [`Item::data`](crate::Item::data) only, and a typed handler decodes its type
//!   from the text directly, so an item that no handler reads as JSON costs no `Value`.
//! - **NATS unreachable**: local delivery goes on; clustered publishes wait in a buffer
//!   (`max_buffered`), then are refused at once and whole (no local subscriber gets
//!   them either) with [`PublishError::ClusterUnavailable`](crate::PublishError); the
//!   client reconnects by itself, re-subscribes, and sends what waited. The link state and
//!   the counts are in [`Cluster::metrics`].
//!
//! "Exactly once" holds while the link is up and every node keeps up. Across nodes,
//! delivery is at most once: what a node's NATS connection has not sent when the
//! process dies or the link drops, what a node that falls behind cannot take (core NATS
//! drops it: `slow_consumer` in the metrics), and what arrives for a group while its
//! last member on a node is leaving, is lost, except on durable topics. A
//! node that subscribes or joins a group gets what is published after the NATS server
//! registered it: [`Cluster::sync`] waits for that.
//!
//! ## Durable topics
//!
//! The MessageQueue topics of `durable` (within `message_queue`) live in JetStream, for
//! queue work that must survive a crash. The server must run with JetStream (`-js`):
//! [`Cluster::attach_message_queue`] makes the stream `<prefix>-durable` if absent (file
//! storage, interest retention: a message is kept until every consumer group has
//! acknowledged it) or adds this node's subjects to it.
//!
//! - A durable publish goes to JetStream with a `Nats-Msg-Id` (origin node, process,
//!   id) and counts as buffered until JetStream confirmed it stored. One not confirmed
//!   (a timeout, the link down) is sent again with the same id while the cluster is open:
//!   JetStream stores it once (within its two-minute duplicate window). Plain
//!   subscriptions on other nodes get durable topics through core NATS as any clustered
//!   topic, and so may see such a resent publish twice. One JetStream can never store,
//!   over the server's `max_payload` or the stream's `max_msg_size`, is given up at
//!   once and counted in `publish_failed`, and holds up nothing behind it (one over
//!   `max_msg_size` only still reaches the other nodes' plain subscriptions).
//! - Each consumer group has a durable JetStream consumer (one per durable pattern its
//!   pattern meets), made if absent, delivering what is published from then on, and
//!   never deleted by tickwire: what is published while every member is down waits for
//!   them. A message goes to one node, there to one member, and is **acknowledged after
//!   the handler succeeded**, or after it became a dead letter (the dead-letter rules
//!   apply on the node that handled it: stored, `error_handler`, `dead_letter.<topic>`
//!   published there). A message discarded unhandled (its member left, the queue stopped
//!   or stayed full) is refused back, and JetStream gives it to a member again.
//! - A handler that runs longer than half of `ack_wait` has JetStream told the node is
//!   still at work; a **node that dies mid-handling** has its messages redelivered to the
//!   group's other members after `ack_wait`.
//! - A **stream that is gone** (deleted, or a server back without its store) takes what
//!   it held and its consumers with it: the next node to make a consumer makes the
//!   stream again (with its own subjects), every group's consumer follows as its node
//!   notices, and a node whose durable publish finds no stream for its subject adds
//!   its subjects to the one that is back. What is published meanwhile is sent again
//!   until stored; what is stored before a group's consumer is back is kept for no one
//!   of that group (interest retention), and lost to it.
//!
//! So delivery on durable topics is **at least once**: a handler may see a message again
//! (same id) after a node died between the handler's success and the acknowledgement.
//! The counts are in [`ClusterMetrics`] (`stored`, `resent`, `acked`, `nacked`,
//! `redelivered`).
//!
//! ```no_run
//! use serde_json::json;
//! use tickwire::cluster::{Cluster, ClusterConfig};
//! use tickwire::{EventBus, EventBusConfig, MessageQueue, MessageQueueConfig, Priority};
//!
//! # actix_rt::System::new().block_on(async {
//! let cluster = Cluster::connect(ClusterConfig {
//!     nats_url: "nats://127.0.0.1:4222".into(),
//!     node: Some("strategy-1".into()),
//!     event_bus: vec!["market.>".into()],
//!     message_queue: vec!["orders.>".into()],
//!     ..ClusterConfig::default()
//! })
//! .await?;
//! let bus = EventBus::start(EventBusConfig::default())?;
//! let mq = MessageQueue::start(MessageQueueConfig::default())?;
//! cluster.attach_event_bus(&bus).await?;
//! cluster.attach_message_queue(&mq).await?;
//!
//! // One member of "routers" across every node gets each order.
//! mq.subscribe_group("orders.new", "routers", |order| async move {
//!     println!("routing {}", order.data());
//!     Ok(())
//! })
//! .await?;
//! cluster.sync().await?;
//! mq.publish("orders.new", json!({"qty": 2}), Priority::High).await?;
//! bus.publish(tickwire::create_event("market.tick", json!({"px": 1}), Priority::High)).await?;
//!
//! println!("{:?}", cluster.metrics());
//! cluster.close().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # });
//! ```

mod config;
mod durable;
mod link;
mod presence;
mod tasks;
mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_rt::{Arbiter, ArbiterHandle};
use async_nats::connection::State;
use serde::Serialize;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{ClusterConfig, MAX_BUFFERED};

use crate::core::Core;
use crate::item::{Item, Kind};
use crate::{ConfigError, EventBus, MessageQueue, Pattern};
use link::{Control, Counts, Link};
use presence::Refused;
use tasks::Context;
use wire::Space;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The config is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The NATS server did not answer within `connect_timeout`, or refused, or the
    /// question whether the node's name is free could not be sent.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The configured `nats_url`.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The component is attached to a cluster already (this one or another), or it was
    /// stopped.
    #[error("the {component} is attached to a cluster already, or stopped")]
    AlreadyAttached {
        /// `EventBus` or `MessageQueue`.
        component: &'static str,
    },
    /// A subscription to NATS failed.
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe {
        /// The NATS subject.
        subject: String,
        /// What the client said.
        reason: String,
    },
    /// The server did not confirm what was sent (a flush failed: NATS unreachable).
    #[error("NATS did not confirm: {reason}")]
    Unconfirmed {
        /// What the client said.
        reason: String,
    },
    /// JetStream refused or did not answer (the server runs without `-js`, or the
    /// stream of the durable topics cannot be made as configured).
    #[error("JetStream: {reason}")]
    JetStream {
        /// What the client or the server said.
        reason: String,
    },
    /// Another process is connected to the cluster under this node's name (the config
    /// copied with its `node`): each would drop what the other publishes as its own.
    #[error("node name {node:?} is taken: {holder} is connected to NATS under it (each node needs a `node` of its own)")]
    NodeTaken {
        /// The name.
        node: String,
        /// Who holds it, as it says (its process id and host).
        holder: String,
    },
    /// The cluster was closed.
    #[error("the cluster is closed")]
    Closed,
}

/// The state of a cluster's NATS link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Connected to the NATS server.
    Connected,
    /// Either of the node's two connections is down and reconnecting: clustered
    /// publishes are buffered.
    Disconnected,
    /// Connecting for the first time.
    Pending,
    /// [`Cluster::close`] was called.
    Closed,
}

/// A cluster's figures (see [`Cluster::metrics`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClusterMetrics {
    /// This node's name.
    pub node: String,
    /// The NATS link.
    pub link: LinkState,
    /// Items sent to NATS.
    pub published: u64,
    /// Items that could not be sent (a payload that does not serialize, or one over the
    /// server's `max_payload`), durable ones JetStream refused for good (over the
    /// stream's `max_msg_size`), and those still unconfirmed when the cluster closed.
    pub publish_failed: u64,
    /// Items waiting for NATS now.
    pub buffered: u64,
    /// Publishes refused because `max_buffered` items were waiting.
    pub refused: u64,
    /// Items received from NATS and delivered here.
    pub received: u64,
    /// Items received from NATS that could not be delivered (the component full for
    /// `default_timeout`, or stopped).
    pub inbound_dropped: u64,
    /// NATS messages on our subjects that are not tickwire items (missing or bad
    /// headers, or a payload that is not JSON).
    pub malformed: u64,
    /// Times a connection to NATS went down (a node has two: its publishes and plain
    /// subscriptions on one, its consumer groups' on the other).
    pub disconnects: u64,
    /// Times the client reported a subscription too far behind (its buffer full: the
    /// messages NATS sent meanwhile were dropped; delivery across nodes is at most once).
    pub slow_consumer: u64,
    /// Durable publishes JetStream confirmed it stored (also counted in `published`).
    pub stored: u64,
    /// Durable publishes sent again, with the same message id, for want of a
    /// confirmation.
    pub resent: u64,
    /// Durable messages acknowledged here: handled, or dead letters (also counted in
    /// `received`).
    pub acked: u64,
    /// Durable messages refused back to JetStream (discarded unhandled here: it
    /// redelivers them).
    pub nacked: u64,
    /// Durable messages received here that JetStream had delivered before (to this node
    /// or another).
    pub redelivered: u64,
}

impl ClusterMetrics {
    /// The Prometheus text exposition of these figures (`tickwire_cluster_*`), as
    /// `tickwire serve` appends it to `GET /metrics`.
    ///
    /// ```
    /// # fn show(cluster: &tickwire::cluster::Cluster) {
    /// let text = cluster.metrics().to_prometheus();
    /// assert!(text.contains("# TYPE tickwire_cluster_published_total counter"));
    /// # }
    /// ```
    pub fn to_prometheus(&self) -> String {
        let link = |state| f64::from(u8::from(self.link == state));
        crate::metrics::prometheus::counters_and_gauges(
            "cluster",
            &[
                ("published_total", "Clustered items sent to NATS (durable ones once JetStream confirmed them).", self.published),
                ("publish_failed_total", "Clustered items that could not be sent, or durable ones JetStream could not store or confirm.", self.publish_failed),
                ("refused_total", "Clustered publishes refused: max_buffered items waited for NATS.", self.refused),
                ("received_total", "Items received from NATS and delivered here.", self.received),
                ("inbound_dropped_total", "Items received from NATS that could not be delivered.", self.inbound_dropped),
                ("malformed_total", "NATS messages on tickwire's subjects that are not tickwire items.", self.malformed),
                ("disconnects_total", "Times a connection to NATS went down (two per node).", self.disconnects),
                ("slow_consumer_total", "Times a subscription fell behind and NATS dropped messages.", self.slow_consumer),
                ("stored_total", "Durable publishes JetStream confirmed it stored.", self.stored),
                ("resent_total", "Durable publishes sent again for want of a confirmation.", self.resent),
                ("acked_total", "Durable messages acknowledged here (handled, or dead letters).", self.acked),
                ("nacked_total", "Durable messages refused back to JetStream (discarded unhandled here).", self.nacked),
                ("redelivered_total", "Durable messages received here that JetStream had delivered before.", self.redelivered),
            ],
            &[
                ("buffered", "Clustered items waiting for NATS (durable ones: for JetStream's confirmation).", self.buffered as f64),
                ("link_connected", "1 while connected to the NATS server.", link(LinkState::Connected)),
                ("link_disconnected", "1 while the link is down and the client reconnects.", link(LinkState::Disconnected)),
            ],
        )
    }
}

/// A connection to a NATS server that EventBuses and MessageQueues attach to (see the
/// module docs). Clones share its two connections (publishes and plain subscriptions on
/// one, consumer groups on the other).
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    ctx: Arc<Context>,
    /// Cleared by `close`: the attached components are local again.
    open: Arc<AtomicBool>,
    arbiter: Mutex<Option<Arbiter>>,
    handle: ArbiterHandle,
    /// The node's hold on its name (see `presence`): its release, and its task.
    name: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    controls: Mutex<Vec<UnboundedSender<Control>>>,
}

/// A number this process's durable message ids carry, so that a node restarted under its
/// name does not reuse its ids within JetStream's duplicate window: the start time in
/// nanoseconds, mixed with the process id.
fn incarnation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 40)
}

/// Waits until `count` is 0 (`zero` is notified when it comes down to it), or
/// `deadline`.
async fn until_zero(
    count: &std::sync::atomic::AtomicUsize,
    zero: &tokio::sync::Notify,
    deadline: tokio::time::Instant,
) {
    loop {
        let notified = zero.notified();
        if count.load(Ordering::Acquire) == 0
            || tokio::time::timeout_at(deadline, notified).await.is_err()
        {
            return;
        }
    }
}

/// Runs `fut` on the cluster's arbiter and waits for its result.
async fn on<T: Send + 'static>(
    arbiter: &ArbiterHandle,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    if !arbiter.spawn(async move {
        let _ = tx.send(fut.await);
    }) {
        return None;
    }
    rx.await.ok()
}

/// What a cluster's connection to NATS is for: a node has two.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Publishes, the plain fan-in and JetStream, with no echo: the server does not send
    /// a node's own publishes back to it (the node delivered them already), which spares
    /// the server a second copy of each and the node reading it.
    Publisher,
    /// The consumer groups' queue subscriptions, with echo: a node's own publish may go
    /// to its own members.
    Groups,
}

impl Role {
    /// The connection's name in logs.
    fn name(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Groups => "groups",
        }
    }
}

/// Connects one of a node's two connections, within `timeout`; both count going down
/// and slow subscriptions, and the groups' bumps the epoch the pump watches.
async fn connection(
    url: &str,
    role: Role,
    node: &str,
    timeout: Duration,
    counts: &Arc<Counts>,
) -> Result<async_nats::Client, String> {
    let counts = counts.clone();
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(timeout)
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 50).min(1_000))
        })
        .event_callback(move |event| {
            let counts = counts.clone();
            async move {
                let connection = role.name();
                if matches!(
                    event,
                    async_nats::Event::Connected | async_nats::Event::Disconnected
                ) {
                    if role == Role::Groups {
                        counts.groups_epoch.fetch_add(1, Ordering::AcqRel);
                    }
                    counts.link_changed.notify_waiters();
                }
                match event {
                    async_nats::Event::Disconnected => {
                        counts.disconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(connection, "cluster: NATS link down, reconnecting");
                    }
                    async_nats::Event::Connected => {
                        tracing::info!(connection, "cluster: NATS link up")
                    }
                    async_nats::Event::SlowConsumer(sid) => {
                        counts.slow_consumer.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            connection,
                            sid,
                            "cluster: a subscription fell behind and NATS messages were dropped"
                        );
                    }
                    other => tracing::debug!(event = %other, "cluster: NATS event"),
                }
            }
        });
    options = match role {
        Role::Publisher => options.name(format!("tickwire {node}")).no_echo(),
        Role::Groups => options.name(format!("tickwire {node} groups")),
    };
    let named = |err: String| format!("{} connection: {err}", role.name());
    match tokio::time::timeout(timeout, options.connect(url)).await {
        Ok(result) => result.map_err(|err| named(err.to_string())),
        Err(_) => Err(named(format!(
            "no answer within {} s",
            timeout.as_secs_f64()
        ))),
    }
}

impl Cluster {
    /// Validates the config and connects to NATS, waiting up to `connect_timeout`, then
    /// claims the node's name (up to 2 s more, if something on the name's subject does
    /// not answer): [`ClusterError::NodeTaken`] if a connected node holds it.
    /// The cluster's tasks run on an arbiter (a thread) of their own; once connected,
    /// the client reconnects by itself for as long as the cluster is open.
    pub async fn connect(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        config.validate()?;
        let node: Arc<str> = config.node_name().into();
        let counts = Arc::new(Counts::default());
        let arbiter = Arbiter::new();
        let handle = arbiter.handle();
        let url = config.nats_url.clone();
        let (name, timeout, counted) = (node.clone(), config.connect_timeout, counts.clone());
        let connected = on(&handle, async move {
            tokio::try_join!(
                connection(&url, Role::Publisher, &name, timeout, &counted),
                connection(&url, Role::Groups, &name, timeout, &counted),
            )
        })
        .await
        .unwrap_or_else(|| Err("the cluster's arbiter stopped".into()));
        let (client, groups) = match connected {
            Ok(clients) => clients,
            Err(reason) => {
                arbiter.stop();
                return Err(ClusterError::Connect {
                    url: config.nats_url.clone(),
                    reason,
                });
            }
        };
        let (asking, answering) = (client.clone(), groups.clone());
        let (prefix, name) = (config.prefix.clone(), node.clone());
        let claimed = on(&handle, async move {
            let asked = presence::claim(&asking, &answering, &prefix, &name, timeout).await?;
            let (release, released) = oneshot::channel();
            let holding = actix_rt::spawn(presence::hold(answering, name, asked, released));
            Ok((release, holding))
        })
        .await;
        let holding = match claimed {
            Some(Ok(holding)) => holding,
            Some(Err(refused)) => {
                arbiter.stop();
                return Err(match refused {
                    Refused::Taken(holder) => ClusterError::NodeTaken {
                        node: node.to_string(),
                        holder,
                    },
                    Refused::Subscribe { subject, reason } => {
                        ClusterError::Subscribe { subject, reason }
                    }
                    Refused::Unsent(reason) => ClusterError::Connect {
                        url: config.nats_url.clone(),
                        reason: format!("asking whether node name {node:?} is free: {reason}"),
                    },
                });
            }
            None => {
                arbiter.stop();
                return Err(ClusterError::Closed);
            }
        };
        tracing::info!(%node, url = %config.nats_url, "cluster: connected to NATS");
        let patterns = config.durable_patterns()?;
        let durable = (!patterns.is_empty()).then(|| durable::Durable {
            js: async_nats::jetstream::context::ContextBuilder::new()
                .backpressure_on_inflight(false)
                .build(client.clone()),
            patterns,
            stream: wire::stream_name(&config.prefix),
            ack_wait: config.ack_wait,
            incarnation: incarnation(),
            sequence: Default::default(),
        });
        let open = Arc::new(AtomicBool::new(true));
        let ctx = Arc::new(Context {
            client,
            groups,
            prefix: config.prefix.as_str().into(),
            node,
            counts,
            durable,
            open: open.clone(),
        });
        Ok(Cluster {
            inner: Arc::new(Inner {
                config,
                ctx,
                open,
                arbiter: Mutex::new(Some(arbiter)),
                handle,
                name: Mutex::new(Some(holding)),
                tasks: Mutex::default(),
                controls: Mutex::default(),
            }),
        })
    }

    /// This node's name (the origin of what it publishes).
    pub fn node(&self) -> &str {
        &self.inner.ctx.node
    }

    /// The config the cluster runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// Attaches an EventBus: events whose name matches `event_bus` span the attached
    /// nodes from now on. Once per bus. With no `event_bus` patterns, nothing spans and
    /// the bus is left alone.
    pub async fn attach_event_bus(&self, bus: &EventBus) -> Result<(), ClusterError> {
        let patterns = self.inner.config.event_bus_patterns()?;
        self.attach(bus.core(), Space::Events, "EventBus", patterns, false)
            .await
    }

    /// Attaches a MessageQueue: topics that match `message_queue` span the attached nodes
    /// from now on, and so do its consumer groups. Once per queue. With no
    /// `message_queue` patterns, nothing spans and the queue is left alone.
    ///
    /// With `durable` patterns, the JetStream stream of the durable topics is made first
    /// (or this node's subjects added to it): [`ClusterError::JetStream`] if it cannot be.
    pub async fn attach_message_queue(&self, mq: &MessageQueue) -> Result<(), ClusterError> {
        let patterns = self.inner.config.message_queue_patterns()?;
        if self.inner.ctx.durable.is_some() {
            let ctx = self.inner.ctx.clone();
            on(&self.inner.handle, async move {
                let durable = ctx.durable.as_ref().expect("checked");
                durable.ensure_stream(&ctx.prefix, true).await
            })
            .await
            .ok_or(ClusterError::Closed)?
            .map_err(|reason| ClusterError::JetStream { reason })?;
        }
        self.attach(mq.core(), Space::Messages, "MessageQueue", patterns, true)
            .await
    }

    async fn attach<K: Kind>(
        &self,
        core: &Arc<Core<Item<K>>>,
        space: Space,
        component: &'static str,
        patterns: Vec<Pattern>,
        groups: bool,
    ) -> Result<(), ClusterError> {
        if !self.inner.open.load(Ordering::Acquire) {
            return Err(ClusterError::Closed);
        }
        if patterns.is_empty() {
            return Ok(());
        }
        let ctx = &self.inner.ctx;
        let patterns: Arc<[Pattern]> = patterns.into();
        // The fan-in first: from the moment the link claims a name, other nodes' items on
        // it are received here.
        let mut subscribers = Vec::with_capacity(patterns.len());
        for pattern in patterns.iter() {
            let subject = wire::subject(&ctx.prefix, space, pattern.as_str());
            let client = ctx.client.clone();
            let subscribed = on(&self.inner.handle, {
                let subject = subject.clone();
                async move { client.subscribe(subject).await.map_err(|e| e.to_string()) }
            })
            .await
            .ok_or(ClusterError::Closed)?;
            subscribers
                .push(subscribed.map_err(|reason| ClusterError::Subscribe { subject, reason })?);
        }
        let (outbound, items) = mpsc::unbounded_channel();
        let (control, changes) = mpsc::unbounded_channel();
        let link = Link::new(
            patterns.to_vec(),
            self.inner.open.clone(),
            ctx.counts.clone(),
            self.inner.config.max_buffered,
            outbound,
            groups.then(|| control.clone()),
        );
        let mut tasks = Vec::new();
        for (index, subscriber) in subscribers.into_iter().enumerate() {
            let task = tasks::fan_in(
                ctx.clone(),
                core.clone(),
                space,
                patterns.clone(),
                index,
                subscriber,
            );
            tasks.push(self.spawn(task).await?);
        }
        tasks.push(self.spawn(tasks::pump(ctx.clone(), space, items)).await?);
        if groups {
            tasks.push(
                self.spawn(tasks::control(ctx.clone(), core.clone(), space, changes))
                    .await?,
            );
        }
        if !core.attach(Arc::new(link)).await {
            for task in tasks {
                task.abort();
            }
            return Err(ClusterError::AlreadyAttached { component });
        }
        self.inner.tasks.lock().expect("not poisoned").extend(tasks);
        if groups {
            self.inner
                .controls
                .lock()
                .expect("not poisoned")
                .push(control);
        }
        tracing::info!(component, patterns = ?patterns.iter().map(Pattern::as_str).collect::<Vec<_>>(), "cluster: attached");
        self.sync().await
    }

    /// Spawns `task` on the cluster's arbiter.
    async fn spawn(
        &self,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<JoinHandle<()>, ClusterError> {
        // The handle comes back wrapped: it is the task's, not this future's to await.
        struct Spawned(JoinHandle<()>);
        on(
            &self.inner.handle,
            async move { Spawned(actix_rt::spawn(task)) },
        )
        .await
        .map(|spawned| spawned.0)
        .ok_or(ClusterError::Closed)
    }

    /// Waits until the NATS server has registered every subscription and consumer group
    /// made so far, and received everything published before: what any node publishes
    /// after it reaches them.
    pub async fn sync(&self) -> Result<(), ClusterError> {
        let controls: Vec<_> = self.inner.controls.lock().expect("not poisoned").clone();
        for control in controls {
            let (tx, rx) = oneshot::channel();
            if control.send(Control::Sync(tx)).is_err() {
                return Err(ClusterError::Closed);
            }
            rx.await
                .map_err(|_| ClusterError::Closed)?
                .map_err(|reason| ClusterError::Unconfirmed { reason })?;
        }
        let ctx = self.inner.ctx.clone();
        on(
            &self.inner.handle,
            async move { tasks::round_trip(&ctx).await },
        )
        .await
        .ok_or(ClusterError::Closed)?
        .map_err(|reason| ClusterError::Unconfirmed { reason })
    }

    /// The link state and the counts.
    pub fn metrics(&self) -> ClusterMetrics {
        let counts = &self.inner.ctx.counts;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let link = if !self.inner.open.load(Ordering::Acquire) {
            LinkState::Closed
        } else {
            self.connections()
        };
        ClusterMetrics {
            node: self.node().to_owned(),
            link,
            published: get(&counts.published),
            publish_failed: get(&counts.publish_failed),
            buffered: counts.buffered.load(Ordering::Acquire) as u64,
            refused: get(&counts.refused),
            received: get(&counts.received),
            inbound_dropped: get(&counts.inbound_dropped),
            malformed: get(&counts.malformed),
            disconnects: get(&counts.disconnects),
            slow_consumer: get(&counts.slow_consumer),
            stored: get(&counts.stored),
            resent: get(&counts.resent),
            acked: get(&counts.acked),
            nacked: get(&counts.refused_back),
            redelivered: get(&counts.redelivered),
        }
    }

    /// Closes the cluster, in at most about twice `connect_timeout`:
    ///
    /// 1. the attached components are local again at once (nothing more is claimed);
    /// 2. what waits for NATS gets up to `connect_timeout` to be sent and confirmed (a
    ///    link that is down gets that long to come back; what is not sent by then is
    ///    lost), then the subscriptions end;
    /// 3. within `connect_timeout` more: the node's name is given up (a node restarted
    ///    under it can connect once this returns, as long as the link is up); the durable
    ///    messages this node holds are acknowledged as their handlers finish (what is
    ///    not is redelivered to other members after `ack_wait`: so stop taking work, or
    ///    stop the MessageQueue, before, for a handover without repeats); and both
    ///    connections are closed.
    pub async fn close(&self) {
        if !self.inner.open.swap(false, Ordering::AcqRel) {
            return;
        }
        let counts = &self.inner.ctx.counts;
        let patience = self.inner.config.connect_timeout;
        // What waits is sent and confirmed within one `connect_timeout`: a link that is
        // down gets what is left of it to come back, for what the client holds to go;
        // no probe is sent to a server that is gone (it would wait 30 s for an answer).
        let sent_by = tokio::time::Instant::now() + patience;
        until_zero(&counts.buffered, &counts.drained, sent_by).await;
        counts.until_link(Some(sent_by), || self.link_up()).await;
        if self.link_up() {
            let _ = tokio::time::timeout_at(sent_by, self.sync()).await;
        }
        self.inner.controls.lock().expect("not poisoned").clear();
        for task in self.inner.tasks.lock().expect("not poisoned").drain(..) {
            task.abort();
        }
        // The handover within one more: the name, the durable messages in hand (nothing
        // more is pulled; they are acknowledged, or refused, as their handlers finish),
        // the connections.
        let handed_by = tokio::time::Instant::now() + patience;
        self.give_up_name(handed_by).await;
        until_zero(&counts.handling, &counts.handled, handed_by).await;
        let ctx = self.inner.ctx.clone();
        let drained = on(&self.inner.handle, async move {
            // A client that is reconnecting does not take the command: hence the bound.
            let _ = ctx.client.drain().await;
            let _ = ctx.groups.drain().await;
        });
        let _ = tokio::time::timeout_at(handed_by, drained).await;
        if let Some(arbiter) = self.inner.arbiter.lock().expect("not poisoned").take() {
            arbiter.stop();
        }
        tracing::info!(node = %self.node(), "cluster: closed");
    }
}

impl Cluster {
    /// The state of the two connections: connected while both are, down while either
    /// is (whether the cluster is open or not).
    fn connections(&self) -> LinkState {
        let ctx = &self.inner.ctx;
        match (ctx.client.connection_state(), ctx.groups.connection_state()) {
            (State::Connected, State::Connected) => LinkState::Connected,
            (State::Disconnected, _) | (_, State::Disconnected) => LinkState::Disconnected,
            _ => LinkState::Pending,
        }
    }

    /// Whether both connections are up.
    fn link_up(&self) -> bool {
        self.connections() == LinkState::Connected
    }

    /// Gives the node's name up, once nothing of it listens any more: its hold
    /// unsubscribes, and a round trip (while the groups' connection is up) proves the
    /// server has that; by `deadline`.
    async fn give_up_name(&self, deadline: tokio::time::Instant) {
        let holding = self.inner.name.lock().expect("not poisoned").take();
        let Some((release, mut holding)) = holding else {
            return;
        };
        let _ = release.send(());
        if tokio::time::timeout_at(deadline, &mut holding)
            .await
            .is_err()
        {
            holding.abort();
        }
        let ctx = self.inner.ctx.clone();
        if ctx.groups.connection_state() == State::Connected {
            let probe = on(
                &self.inner.handle,
                async move { tasks::round_trip(&ctx).await },
            );
            let _ = tokio::time::timeout_at(deadline, probe).await;
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node())
            .field("nats_url", &self.inner.config.nats_url)
            .finish_non_exhaustive()
    }
}
