//! The hub actor: owns the sessions and the topic registry, and fans broadcasts out.
//!
//! Every broadcast is one message to the hub, which asks its [`Router`] for the sessions
//! whose patterns match the topic (cached per topic until the subscriptions change) and
//! for the topic's next `seq`, serializes the frame once ([`Payload::frame`]), and queues
//! it to each with `try_send` into the session's bounded outbound queue (`send_buffer`).
//! The hub never waits on a session: a full queue makes that session a slow consumer,
//! closed with 4008 and taken out of the routing at once.
//! Since one actor assigns `seq` and queues in order, every session sees a topic's
//! messages in `seq` order. The queue is a channel the session owns, not its actix
//! mailbox, so that a session can write what the hub queued before it answers a request
//! (see the session's `## Barriers`).
//!
//! Every tick the hub sweeps its sessions by the [`liveness`](super::liveness) rule:
//! those silent for too long are closed with 4000, those that do not close in time are
//! cut; the sweep also retries the graceful closes that found a full queue.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix::prelude::*;
use bytestring::ByteString;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;

use super::liveness::{Closing, SessionLink, Verdict};
use super::payload::Payload;
use super::protocol::close;
use super::router::Router;
use super::shared::HubShared;
use super::ClientSubscribeError;
use crate::util::rate::RateWindow;
use crate::Pattern;

/// Hub → session, through the session's outbound queue.
pub(crate) enum Outbound {
    /// A serialized `message` frame, shared by every session it goes to.
    Frame(ByteString),
    /// Close with this code, after the frames queued before it (unless a code was decided
    /// in the session's [`SessionLink`] already: then with that one).
    Close(u16),
}

/// A session is up. Answers false when the service is stopping.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Connect {
    pub(crate) key: u64,
    pub(crate) client_id: Arc<str>,
    pub(crate) out: mpsc::Sender<Outbound>,
    pub(crate) link: Arc<SessionLink>,
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

/// A request the hub answered for a session, and how many frames (or closes) the hub
/// had queued to that session when it did: the session writes that many before the
/// answer, so the answer falls exactly between what the hub queued before and after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answered<T> {
    pub(crate) answer: T,
    pub(crate) queued: u64,
}

/// Adds a subscription.
#[derive(Message)]
#[rtype(result = "Result<Answered<()>, ClientSubscribeError>")]
pub(crate) struct Subscribe {
    pub(crate) target: Target,
    pub(crate) pattern: Pattern,
}

/// Removes a subscription, by the pattern as subscribed. Answers whether it existed.
#[derive(Message)]
#[rtype(result = "Answered<bool>")]
pub(crate) struct Unsubscribe {
    pub(crate) target: Target,
    pub(crate) pattern: String,
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
}

struct Entry {
    client_id: Arc<str>,
    out: mpsc::Sender<Outbound>,
    /// What was queued to `out` so far (the session counts what it takes: see
    /// [`Answered`]).
    queued: u64,
    link: Arc<SessionLink>,
    /// When the session was asked to close (it is out of the routing from then on).
    closing: Option<Closing>,
    /// A graceful close not yet queued (the queue was full): retried every sweep.
    pending_close: Option<u16>,
}

/// See the module docs.
pub(crate) struct Hub {
    shared: Arc<HubShared>,
    sessions: HashMap<u64, Entry>,
    by_client: HashMap<Arc<str>, u64>,
    /// Who is subscribed to what, by session key; every session in it is in `sessions`
    /// and not closing.
    router: Router,
    stop_waiters: Vec<oneshot::Sender<()>>,
    sent: RateWindow,
}

impl Entry {
    /// Queues to the session, counting what was queued.
    fn send(&mut self, msg: Outbound) -> Result<(), TrySendError<Outbound>> {
        self.out.try_send(msg)?;
        self.queued += 1;
        Ok(())
    }
}

impl Hub {
    pub(crate) fn new(shared: Arc<HubShared>) -> Self {
        Hub {
            shared,
            sessions: HashMap::new(),
            by_client: HashMap::new(),
            router: Router::new(),
            stop_waiters: Vec::new(),
            sent: RateWindow::new(Instant::now()),
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
        if route.is_empty() {
            return 0;
        }
        let seq = self.router.next_seq(topic);
        // Serialized once, for every session; a payload whose `Serialize` fails or
        // panics is not sent (and takes no `seq`).
        let Some(text) = payload.frame(seq, SystemTime::now()) else {
            return 0;
        };
        self.router.commit_seq(topic, seq);
        let mut queued = 0;
        let mut slow = Vec::new();
        for key in route.iter() {
            let Some(entry) = self.sessions.get_mut(key) else {
                continue;
            };
            match entry.send(Outbound::Frame(text.clone())) {
                Ok(()) => queued += 1,
                Err(TrySendError::Full(_)) => slow.push(*key),
                // The session stopped; its Disconnect is on the way.
                Err(TrySendError::Closed(_)) => {}
            }
        }
        for key in slow {
            self.close(key, close::SLOW_CONSUMER);
        }
        queued
    }

    /// Asks a session to close with `code`, and takes it out of the routing at once.
    ///
    /// A graceful close (1000, 1001) is queued behind the frames already queued, so the
    /// client gets them all first; 4000 and 4008 are decided at once (the session drops
    /// what is queued).
    fn close(&mut self, key: u64, code: u16) {
        self.router.remove_session(key);
        let closing = Closing {
            at: Instant::now(),
            at_ms: self.shared.now_ms(),
        };
        let Some(entry) = self.sessions.get_mut(&key) else {
            return;
        };
        if entry.closing.is_some() {
            return;
        }
        entry.closing = Some(closing);
        if matches!(code, close::NORMAL | close::GOING_AWAY) {
            if entry.send(Outbound::Close(code)).is_err() {
                entry.pending_close = Some(code);
            }
            return;
        }
        if entry.link.claim_close(code) {
            self.shared.counters.closed_with(code);
            if code == close::SLOW_CONSUMER {
                tracing::warn!(client_id = %entry.client_id, "slow consumer: closing the session (4008)");
            }
        }
        // If the queue is full, the session sees the decided code at its next frame.
        let _ = entry.send(Outbound::Close(code));
    }

    /// Forgets a session whose connection is cut (or cannot be).
    fn cut(&mut self, key: u64) {
        self.router.remove_session(key);
        if let Some(entry) = self.sessions.remove(&key) {
            self.by_client.remove(&entry.client_id);
            self.shared.counters.cut.fetch_add(1, Ordering::Relaxed);
            if entry.link.cut() {
                tracing::warn!(client_id = %entry.client_id, "session did not close in time: TCP connection reset");
            } else {
                tracing::warn!(
                    client_id = %entry.client_id,
                    "session did not close in time and its socket is unknown (register tickwire::websocket::on_connect on the HttpServer); forgetting it"
                );
            }
        }
    }

    /// Applies the [`liveness`](super::liveness) rule to every session, and retries the
    /// graceful closes not yet queued.
    fn sweep(&mut self) {
        let now = Instant::now();
        let now_ms = self.shared.now_ms();
        let liveness = self.shared.liveness;
        let mut expired = Vec::new();
        let mut cut = Vec::new();
        for (&key, entry) in self.sessions.iter_mut() {
            if let Some(code) = entry.pending_close {
                if entry.send(Outbound::Close(code)).is_ok() {
                    entry.pending_close = None;
                }
            }
            match liveness.sweep_check(now, now_ms, entry.link.seen(entry.closing)) {
                Verdict::Keep => {}
                Verdict::TimedOut => expired.push(key),
                Verdict::Cut => cut.push(key),
            }
        }
        for key in expired {
            self.close(key, close::HEARTBEAT_TIMEOUT);
        }
        for key in cut {
            self.cut(key);
        }
        if self.shared.config.enable_metrics {
            self.sent.sample(now, self.shared.counters.sent.sum());
        }
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
            hub.sweep();
            hub.finish_stop_if_done(ctx);
        });
    }
}

impl Handler<Connect> for Hub {
    type Result = bool;

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) -> bool {
        if self.shared.stopping.load(Ordering::Acquire) {
            return false;
        }
        self.by_client.insert(msg.client_id.clone(), msg.key);
        self.sessions.insert(
            msg.key,
            Entry {
                client_id: msg.client_id,
                out: msg.out,
                queued: 0,
                link: msg.link,
                closing: None,
                pending_close: None,
            },
        );
        true
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
    type Result = Result<Answered<()>, ClientSubscribeError>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let Some(key) = self.key_of(&msg.target) else {
            return Err(match msg.target {
                Target::Client(id) => ClientSubscribeError::UnknownClient(id),
                Target::Key(_) => ClientSubscribeError::Stopped,
            });
        };
        let Some(entry) = self.sessions.get_mut(&key) else {
            return Err(ClientSubscribeError::Stopped);
        };
        if entry.closing.is_some() {
            return Err(ClientSubscribeError::Stopped);
        }
        let answered = Answered {
            answer: (),
            queued: entry.queued,
        };
        self.router.subscribe(key, &msg.pattern)?;
        Ok(answered)
    }
}

impl Handler<Unsubscribe> for Hub {
    type Result = MessageResult<Unsubscribe>;

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) -> Self::Result {
        let answer = |answer, queued| MessageResult(Answered { answer, queued });
        let Some(key) = self.key_of(&msg.target) else {
            return answer(false, 0);
        };
        let Some(entry) = self.sessions.get_mut(&key) else {
            return answer(false, 0);
        };
        answer(self.router.unsubscribe(key, &msg.pattern), entry.queued)
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
        })
    }
}
