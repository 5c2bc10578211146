//! The hub actor: owns the sessions and the topic registry, and fans broadcasts out.
//!
//! Every broadcast is one message to the hub, which asks its [`Router`] for the sessions
//! whose patterns match the topic (cached per topic until the subscriptions change) and
//! its [`History`] for the topic's next `seq` (and keeps the message there), serializes
//! the frame once ([`Payload::frame`]), encodes it once per kind of session ([`Encoded`]:
//! plain, or compressed once per deflate window), and pushes it into each session's
//! [`Outlet`]: no actor message per session.
//! The hub never waits on a session: a push past the session's `max_queued_bytes` makes
//! it a slow consumer, closed with 4008 and taken out of the routing at once. A session
//! subscribed with `conflate` gets that topic through
//! [`push_conflated`](Outlet::push_conflated), which replaces a waiting message instead.
//! Since one actor assigns `seq` and pushes in order, every session sees a topic's
//! messages in `seq` order.
//!
//! The hub also pushes the `ack` of a session's `subscribe` and `unsubscribe` itself,
//! when it changes the routing: that is what makes the `ack` a barrier (see the
//! session's `## Barriers`). A subscribe's replayed and snapshot messages follow its ack
//! in the same turn, so the first live message after them is the next in `seq`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix::prelude::*;
use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::oneshot;

use super::encoded::Compression;
use super::frame::encode;
use super::history::{History, HistoryStats, Limits, Resume};
use super::liveness::SessionLink;
use super::outlet::{Outlet, Pushed};
use super::payload::Payload;
use super::protocol::{close, ServerFrame};
use super::router::Router;
use super::shared::HubShared;
use super::ClientSubscribeError;
use crate::util::rate::RateWindow;
use crate::Pattern;

/// A session is up: the hub pushes its `welcome` (and, when the service is stopping,
/// closes it with 1001 at once, tracking it until it is gone).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Connect {
    pub(crate) key: u64,
    pub(crate) client_id: Arc<str>,
    pub(crate) outlet: Arc<Outlet>,
    pub(crate) link: Arc<SessionLink>,
    /// The permessage-deflate window the session agreed on, if it compresses.
    pub(crate) deflate: Option<u8>,
    /// The session's `welcome` frame: the hub pushes it first, before anything can be
    /// routed to the session.
    pub(crate) welcome: Bytes,
}

/// A session stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Disconnect {
    pub(crate) key: u64,
}

/// Which session: by key (from the session itself) or by client id (from the app).
pub(crate) enum Target {
    Key(u64),
    Client(String),
}

/// Adds a subscription (`conflate`: see [`Router::subscribe`]). From a session, `ack`
/// asks for its `ack` frame: the hub pushes it into the session's outlet, as a barrier,
/// once the subscription is in the routing, followed by what `resume` asks for (see
/// [`History::resume`]).
#[derive(Message)]
#[rtype(result = "Result<(), ClientSubscribeError>")]
pub(crate) struct Subscribe {
    pub(crate) target: Target,
    pub(crate) pattern: Pattern,
    pub(crate) conflate: Option<bool>,
    pub(crate) ack: Option<AckRequest>,
}

/// A session's subscribe: the `id` to echo, and its `recover` and `snapshot`.
pub(crate) struct AckRequest {
    pub(crate) id: Option<serde_json::Value>,
    pub(crate) resume: Resume,
}

/// Removes a subscription, by the pattern as subscribed. Answers whether it existed;
/// if it did, `ack` (from a session) is pushed as for [`Subscribe`].
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Unsubscribe {
    pub(crate) target: Target,
    pub(crate) pattern: String,
    pub(crate) ack: Option<Bytes>,
}

/// Sends to every session subscribed to the topic. Answers how many it was queued to.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct Broadcast(pub(crate) Payload);

/// Closes one client's session with 1000. Answers whether the client was known.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Kick {
    pub(crate) client_id: String,
}

/// Closes every session with 1001; the sender is answered once all are gone.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Stop(pub(crate) oneshot::Sender<()>);

/// Asks for the figures only the hub knows.
#[derive(Message)]
#[rtype(result = "HubStats")]
pub(crate) struct GetStats;

/// The hub's figures.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HubStats {
    pub(crate) topics: u64,
    pub(crate) sent_per_second: f64,
    pub(crate) history: HistoryStats,
}

struct Entry {
    client_id: Arc<str>,
    outlet: Arc<Outlet>,
    link: Arc<SessionLink>,
    deflate: Option<u8>,
    /// Asked to close (it is out of the routing from then on).
    closing: bool,
}

/// See the module docs.
pub(crate) struct Hub {
    shared: Arc<HubShared>,
    sessions: HashMap<u64, Entry>,
    by_client: HashMap<Arc<str>, u64>,
    /// Who is subscribed to what, by session key; every session in it is in `sessions`
    /// and not closing.
    router: Router,
    /// Each topic's `seq` and kept messages.
    history: History,
    compression: Compression,
    stop_waiters: Vec<oneshot::Sender<()>>,
    sent: RateWindow,
}

impl Hub {
    pub(crate) fn new(shared: Arc<HubShared>) -> Self {
        let compression = Compression::new(
            shared.config.compression_level,
            shared.config.compression_min_size,
        );
        let history = History::new(Limits::of(&shared.config), shared.epoch.clone());
        Hub {
            history,
            shared,
            sessions: HashMap::new(),
            by_client: HashMap::new(),
            router: Router::new(),
            compression,
            stop_waiters: Vec::new(),
            sent: RateWindow::new(Instant::now()),
        }
    }

    /// The session's subscriptions changed: no conflated frame may replace one queued
    /// before now; then its `ack` (if any) goes, a barrier. An `ack` over the budget
    /// closes the session as a slow consumer.
    fn subscriptions_changed(&mut self, key: u64, ack: Option<Bytes>) {
        let Some(entry) = self.sessions.get(&key) else {
            return;
        };
        let pushed = match ack {
            Some(ack) => entry.outlet.push_barrier(ack),
            None => {
                entry.outlet.barrier();
                Pushed::Queued
            }
        };
        if pushed == Pushed::OverBudget {
            self.close(key, close::SLOW_CONSUMER);
        }
    }

    fn key_of(&self, target: &Target) -> Option<u64> {
        match target {
            Target::Key(key) => self.sessions.contains_key(key).then_some(*key),
            Target::Client(id) => self.by_client.get(id.as_str()).copied(),
        }
    }

    fn broadcast(&mut self, payload: &Payload) -> usize {
        let topic = payload.topic();
        let route = self.router.route(topic);
        let seq = self.history.next_seq(topic);
        let router = &self.router;
        let subscribed = |topic: &str| router.is_subscribed(topic);
        if route.is_empty() && !self.history.keeps() {
            // Numbered all the same: a client that subscribes later sees the gap.
            self.history
                .record(topic, seq, None, Instant::now(), subscribed);
            return 0;
        }
        // Serialized once, for every session and the history; a payload whose
        // `Serialize` fails or panics is not sent (and takes no `seq`).
        let Some(text) = payload.frame(seq, SystemTime::now()) else {
            return 0;
        };
        self.history
            .record(topic, seq, Some(&text), Instant::now(), subscribed);
        if route.is_empty() {
            return 0;
        }
        let conflation_key: Option<Arc<str>> =
            route.iter().any(|r| r.conflate).then(|| topic.into());
        let mut encoded = self.compression.encode(text.as_bytes());
        let plain_len = encoded.plain_len();
        // Sessions reached, frames newly queued (a replacement is not one), their bytes.
        let (mut queued, mut frames, mut wire) = (0, 0, 0);
        let mut slow = Vec::new();
        for routed in route.iter() {
            let Some(entry) = self.sessions.get(&routed.key) else {
                continue;
            };
            let frame = encoded.for_session(entry.deflate);
            let len = frame.len();
            let pushed = match &conflation_key {
                Some(key) if routed.conflate => entry.outlet.push_conflated(key, frame),
                _ => entry.outlet.push(frame, Some(topic)),
            };
            match pushed {
                Pushed::Queued => {
                    queued += 1;
                    frames += 1;
                    wire += len;
                }
                // It takes the place of one counted already.
                Pushed::Replaced => queued += 1,
                Pushed::OverBudget => slow.push(routed.key),
                // The session is closing; its Disconnect is on the way.
                Pushed::Closed => {}
            }
        }
        if self.shared.config.enable_metrics {
            let counters = &self.shared.counters;
            counters.sent.add(frames as u64);
            counters.wire_bytes.add(wire as u64);
            counters.uncompressed_bytes.add((plain_len * frames) as u64);
        }
        for key in slow {
            self.close(key, close::SLOW_CONSUMER);
        }
        queued
    }

    /// Pushes a subscribe's replayed and snapshot messages (`(topic, text)`, the first
    /// `replayed` of them replayed), after its ack: conflated by topic where the session
    /// gets that topic conflated (as a broadcast would be), so that they never make the
    /// session a slow consumer either.
    fn push_resumed(&mut self, key: u64, frames: Vec<(Arc<str>, ByteString)>, replayed: usize) {
        let Some(entry) = self.sessions.get(&key) else {
            return;
        };
        // Frames newly queued (a replacement is not one), their bytes; how many of the
        // replayed and snapshot messages went in.
        let (mut sent, mut wire, mut plain) = (0, 0, 0);
        let (mut replays, mut snapshots) = (0, 0);
        for (i, (topic, text)) in frames.into_iter().enumerate() {
            let route = self.router.route(&topic);
            let conflate = route
                .binary_search_by_key(&key, |routed| routed.key)
                .is_ok_and(|at| route[at].conflate);
            let mut encoded = self.compression.encode(text.as_bytes());
            let frame = encoded.for_session(entry.deflate);
            let len = frame.len();
            let pushed = if conflate {
                entry.outlet.push_conflated(&topic, frame)
            } else {
                entry.outlet.push(frame, Some(&topic))
            };
            match pushed {
                Pushed::Queued => {
                    sent += 1;
                    wire += len;
                    plain += encoded.plain_len();
                }
                Pushed::Replaced => {}
                Pushed::OverBudget => {
                    self.close(key, close::SLOW_CONSUMER);
                    break;
                }
                Pushed::Closed => break,
            }
            if i < replayed {
                replays += 1;
            } else {
                snapshots += 1;
            }
        }
        let counters = &self.shared.counters;
        counters.replayed.fetch_add(replays, Ordering::Relaxed);
        counters.snapshots.fetch_add(snapshots, Ordering::Relaxed);
        if self.shared.config.enable_metrics {
            counters.sent.add(sent);
            counters.wire_bytes.add(wire as u64);
            counters.uncompressed_bytes.add(plain as u64);
        }
    }

    /// Asks a session to close with `code` (unless a code was decided already: then
    /// with that one), and takes it out of the routing at once.
    ///
    /// The close frame follows the frames waiting, so the client gets them all first,
    /// except for 4008 and 4000 (a client that does not keep up, or is gone), which drop
    /// them.
    fn close(&mut self, key: u64, code: u16) {
        self.router.remove_session(key);
        let Some(entry) = self.sessions.get_mut(&key) else {
            return;
        };
        if std::mem::replace(&mut entry.closing, true) {
            return;
        }
        if entry.link.claim_close(code) {
            self.shared.counters.closed_with(code);
            if code == close::SLOW_CONSUMER {
                tracing::warn!(client_id = %entry.client_id, "slow consumer: closing the session (4008)");
            }
        }
        let code = entry.link.close_code().unwrap_or(code);
        let graceful = !matches!(code, close::SLOW_CONSUMER | close::HEARTBEAT_TIMEOUT);
        let frame = encode::close_frame(Some(code), close::reason(code));
        entry.outlet.close(frame, !graceful);
    }

    fn finish_stop_if_done(&mut self, ctx: &mut Context<Self>) {
        if self.shared.stopping.load(Ordering::Acquire) && self.sessions.is_empty() {
            for waiter in self.stop_waiters.drain(..) {
                let _ = waiter.send(());
            }
            ctx.stop();
        }
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.shared.liveness.tick(), |hub, ctx| {
            let now = Instant::now();
            if hub.shared.config.enable_metrics {
                hub.sent.sample(now, hub.shared.counters.sent.sum());
            }
            hub.history.expire(now);
            hub.finish_stop_if_done(ctx);
        });
    }
}

impl Handler<Connect> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        let key = msg.key;
        msg.outlet.push(msg.welcome, None);
        self.by_client.insert(msg.client_id.clone(), key);
        self.sessions.insert(
            key,
            Entry {
                client_id: msg.client_id,
                outlet: msg.outlet,
                link: msg.link,
                deflate: msg.deflate,
                closing: false,
            },
        );
        if self.shared.stopping.load(Ordering::Acquire) {
            // Tracked until gone, so that `stop` waits for it too.
            self.close(key, close::GOING_AWAY);
        }
    }
}

impl Handler<Disconnect> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Context<Self>) {
        self.router.remove_session(msg.key);
        if let Some(entry) = self.sessions.remove(&msg.key) {
            self.by_client.remove(&entry.client_id);
        }
        self.finish_stop_if_done(ctx);
    }
}

impl Handler<Subscribe> for Hub {
    type Result = Result<(), ClientSubscribeError>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let Some(key) = self.key_of(&msg.target) else {
            return Err(match msg.target {
                Target::Client(id) => ClientSubscribeError::UnknownClient(id),
                Target::Key(_) => ClientSubscribeError::Stopped,
            });
        };
        match self.sessions.get(&key) {
            Some(entry) if !entry.closing => {}
            _ => return Err(ClientSubscribeError::Stopped),
        }
        self.router.subscribe(key, &msg.pattern, msg.conflate)?;
        let Some(request) = msg.ack else {
            self.subscriptions_changed(key, None);
            return Ok(());
        };
        let resumed = self.history.resume(
            &msg.pattern,
            &request.resume,
            Instant::now(),
            self.shared.config.max_queued_bytes / 2,
        );
        let ack = ServerFrame::Ack {
            id: request.id,
            epoch: Some(self.history.epoch().to_owned()),
            seq: resumed.seq,
            recovered: resumed.recovered,
            unrecovered: resumed.unrecovered,
        }
        .to_json();
        self.subscriptions_changed(key, Some(encode::data_frame(true, false, ack.as_bytes())));
        if let Some(recovered) = resumed.recovered {
            let counters = &self.shared.counters;
            let counter = if recovered {
                &counters.recoveries
            } else {
                &counters.failed_recoveries
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.push_resumed(key, resumed.frames, resumed.replayed);
        Ok(())
    }
}

impl Handler<Unsubscribe> for Hub {
    type Result = bool;

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) -> bool {
        let Some(key) = self.key_of(&msg.target) else {
            return false;
        };
        let removed = self.router.unsubscribe(key, &msg.pattern);
        if removed {
            self.subscriptions_changed(key, msg.ack);
        }
        removed
    }
}

impl Handler<Broadcast> for Hub {
    type Result = usize;

    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) -> usize {
        self.broadcast(&msg.0)
    }
}

impl Handler<Kick> for Hub {
    type Result = bool;

    fn handle(&mut self, msg: Kick, _: &mut Context<Self>) -> bool {
        match self.by_client.get(msg.client_id.as_str()).copied() {
            Some(key) => {
                self.close(key, close::NORMAL);
                true
            }
            None => false,
        }
    }
}

impl Handler<Stop> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Stop, ctx: &mut Context<Self>) {
        // `stopping` was set by `WebSocketService::stop` before it sent this.
        self.stop_waiters.push(msg.0);
        let keys: Vec<u64> = self.sessions.keys().copied().collect();
        for key in keys {
            self.close(key, close::GOING_AWAY);
        }
        self.finish_stop_if_done(ctx);
    }
}

impl Handler<GetStats> for Hub {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(HubStats {
            topics: self.router.pattern_count() as u64,
            sent_per_second: self
                .sent
                .rate(Instant::now(), self.shared.counters.sent.sum()),
            history: self.history.stats(),
        })
    }
}
