//! The connection task of a [`Client`](super::Client): connects, reconnects, and
//! between them reads frames, answers requests and pings.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_http::ws::{CloseCode, CloseReason, Frame, Message, ProtocolError};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::positions::{Ack, Positions, Seen};
use super::{ClientConfig, ClientError, ClientEvent, Delivery, SubscribeOptions};
use crate::websocket::protocol::{Recover, ServerFrame};
use crate::{Pattern, Priority};

type Answer<T> = oneshot::Sender<Result<T, ClientError>>;
/// The answer to a subscribe: its key and the receiving end of its deliveries.
type Subscribed = Answer<(u64, mpsc::Receiver<Delivery>)>;

/// What a handle asks of the task.
pub(super) enum Command {
    Subscribe {
        pattern: Pattern,
        options: SubscribeOptions,
        acked: Subscribed,
    },
    Unsubscribe(u64),
    Publish {
        topic: String,
        data: Value,
        priority: Priority,
        answer: Answer<()>,
    },
    Ping(Answer<Duration>),
    Close(oneshot::Sender<()>),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

struct Sub {
    pattern: Pattern,
    options: SubscribeOptions,
    deliveries: mpsc::Sender<Delivery>,
    /// Until the first ack: who waits for it (with the receiver to hand over).
    waiting: Option<(Subscribed, mpsc::Receiver<Delivery>)>,
}

/// A request sent and not answered yet, by its id.
enum Pending {
    Subscribe { key: u64, recover: Option<Recover> },
    Unsubscribe,
    Publish(Answer<()>),
    Ping(Instant, Option<Answer<Duration>>),
}

/// A WebSocket connection (awc's framed socket).
trait Connection:
    futures_util::Stream<Item = Result<Frame, ProtocolError>>
    + futures_util::Sink<Message, Error = ProtocolError>
    + Unpin
{
}
impl<T> Connection for T where
    T: futures_util::Stream<Item = Result<Frame, ProtocolError>>
        + futures_util::Sink<Message, Error = ProtocolError>
        + Unpin
{
}

/// How a connection ended.
enum End {
    /// Reconnect, for this reason.
    Lost(String),
    /// The app closed the client (or dropped every handle).
    Closed,
}

pub(super) struct Driver {
    config: ClientConfig,
    inbox: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<ClientEvent>,
    subs: HashMap<u64, Sub>,
    next_key: u64,
    next_id: u64,
    pending: HashMap<String, Pending>,
    positions: Positions,
    heartbeat: Duration,
}

impl Driver {
    pub(super) fn new(
        config: ClientConfig,
        inbox: mpsc::UnboundedReceiver<Command>,
        events: mpsc::Sender<ClientEvent>,
    ) -> Driver {
        Driver {
            config,
            inbox,
            events,
            subs: HashMap::new(),
            next_key: 1,
            next_id: 1,
            pending: HashMap::new(),
            positions: Positions::default(),
            heartbeat: Duration::from_secs(30),
        }
    }

    pub(super) async fn run(mut self) {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.emit(ClientEvent::Connecting { attempt });
            let reason = match self.open().await {
                Ok(conn) => {
                    let opened = Instant::now();
                    let end = self.session(conn).await;
                    // A connection that lived was healthy: the backoff starts over. (Not
                    // at the welcome: a server that closes every connection right after
                    // it would be reconnected to in a tight loop.)
                    if opened.elapsed() >= self.config.healthy_after {
                        attempt = 0;
                    }
                    match end {
                        End::Closed => return,
                        End::Lost(reason) => reason,
                    }
                }
                Err(reason) => reason,
            };
            self.fail_pending();
            let delay = self.backoff(attempt.max(1));
            self.emit(ClientEvent::Reconnecting { reason, delay });
            let until = actix_rt::time::sleep(delay);
            tokio::pin!(until);
            loop {
                tokio::select! {
                    _ = &mut until => break,
                    command = self.inbox.recv() => match command {
                        None => return,
                        Some(command) => if !self.offline(command) { return },
                    },
                }
            }
        }
    }

    /// The delay before attempt `attempt + 1`: min · 2^(attempt-1), at most max, of which
    /// a random half to all.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .config
            .backoff_min
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.config.backoff_max);
        ceiling.mul_f64(0.5 + crate::util::random::f64() / 2.0)
    }

    fn emit(&self, event: ClientEvent) {
        // Unread events past the bound are dropped (see `Client::events`).
        let _ = self.events.try_send(event);
    }

    /// Connects and reads the welcome; then makes every subscription again.
    async fn open(&mut self) -> Result<impl Connection, String> {
        let mut request = awc::Client::new()
            .ws(self.config.url.as_str())
            .max_frame_size(self.config.max_frame_size);
        if let Some(token) = &self.config.token {
            request = request.bearer_auth(token);
        }
        let (_, mut conn) = request.connect().await.map_err(|err| err.to_string())?;
        let welcome = match actix_rt::time::timeout(self.config.pong_timeout, conn.next()).await {
            Ok(Some(Ok(Frame::Text(text)))) => serde_json::from_slice::<ServerFrame>(&text).ok(),
            _ => None,
        };
        let Some(ServerFrame::Welcome {
            client_id,
            heartbeat_interval,
            epoch,
        }) = welcome
        else {
            return Err("no welcome from the server".into());
        };
        if heartbeat_interval > 0.0 && heartbeat_interval.is_finite() {
            self.heartbeat = Duration::from_secs_f64(heartbeat_interval.min(3600.0));
        }
        let keys: Vec<u64> = self.subs.keys().copied().collect();
        for key in keys {
            self.send_subscribe(&mut conn, key, true)
                .await
                .map_err(|err| err.to_string())?;
        }
        // After the re-subscribes: they recover from the positions as they were.
        self.positions.welcomed(&epoch);
        self.emit(ClientEvent::Open { client_id, epoch });
        Ok(conn)
    }

    async fn send_subscribe(
        &mut self,
        conn: &mut impl Connection,
        key: u64,
        resume: bool,
    ) -> Result<(), ProtocolError> {
        let Some(sub) = self.subs.get(&key) else {
            return Ok(());
        };
        let recover = resume
            .then(|| self.positions.recover(&sub.pattern))
            .flatten();
        // A snapshot where asked for, and after a reconnect for what cannot be recovered.
        let snapshot = sub.options.snapshot || recover.is_some();
        let mut frame = json!({"type": "subscribe", "topic": sub.pattern.as_str()});
        if sub.options.conflate {
            frame["conflate"] = json!(true);
        }
        if snapshot {
            frame["snapshot"] = json!(true);
        }
        if let Some(recover) = &recover {
            frame["recover"] = serde_json::to_value(recover).unwrap_or_default();
        }
        let pending = Pending::Subscribe { key, recover };
        self.request(conn, frame, pending).await
    }

    async fn request(
        &mut self,
        conn: &mut impl Connection,
        mut frame: Value,
        pending: Pending,
    ) -> Result<(), ProtocolError> {
        let id = format!("r{}", self.next_id);
        self.next_id += 1;
        frame["id"] = json!(id);
        self.pending.insert(id, pending);
        conn.send(Message::Text(frame.to_string().into())).await
    }

    /// A connection is up: until it ends.
    async fn session(&mut self, mut conn: impl Connection) -> End {
        let every = (self.heartbeat / 2).clamp(Duration::from_secs(1), Duration::from_secs(15));
        let mut pings = actix_rt::time::interval(every);
        pings.tick().await; // the first tick is at once
        loop {
            tokio::select! {
                frame = conn.next() => {
                    let frame = match frame {
                        Some(Ok(frame)) => frame,
                        Some(Err(err)) => return End::Lost(err.to_string()),
                        None => return End::Lost("the connection ended".into()),
                    };
                    if let Err(reason) = self.on_frame(&mut conn, frame).await {
                        return End::Lost(reason);
                    }
                }
                command = self.inbox.recv() => {
                    let Some(command) = command else {
                        let _ = conn.close().await;
                        return End::Closed;
                    };
                    match self.online(&mut conn, command).await {
                        Ok(true) => {}
                        Ok(false) => return End::Closed,
                        Err(err) => return End::Lost(err.to_string()),
                    }
                }
                _ = pings.tick() => {
                    let overdue = self.pending.values().any(|p| matches!(
                        p, Pending::Ping(sent, _) if sent.elapsed() >= self.config.pong_timeout
                    ));
                    if overdue {
                        return End::Lost("no pong".into());
                    }
                    let ping = Pending::Ping(Instant::now(), None);
                    if let Err(err) = self.request(&mut conn, json!({"type": "ping"}), ping).await {
                        return End::Lost(err.to_string());
                    }
                }
            }
        }
    }

    /// A command while connected; false: the client is closed.
    async fn online(
        &mut self,
        conn: &mut impl Connection,
        command: Command,
    ) -> Result<bool, ProtocolError> {
        match command {
            Command::Subscribe {
                pattern,
                options,
                acked,
            } => {
                let key = self.add(pattern, options, acked);
                self.send_subscribe(conn, key, false).await?;
            }
            Command::Unsubscribe(key) => {
                // The server knows one subscription per pattern: another handle may
                // still hold it.
                let removed = self
                    .remove(key)
                    .filter(|sub| !self.subs.values().any(|other| other.pattern == sub.pattern));
                if let Some(sub) = removed {
                    let frame = json!({"type": "unsubscribe", "topic": sub.pattern.as_str()});
                    self.request(conn, frame, Pending::Unsubscribe).await?;
                }
            }
            Command::Publish {
                topic,
                data,
                priority,
                answer,
            } => {
                let frame = json!({"type": "publish", "topic": topic, "data": data, "priority": priority as u8});
                self.request(conn, frame, Pending::Publish(answer)).await?;
            }
            Command::Ping(answer) => {
                let ping = Pending::Ping(Instant::now(), Some(answer));
                self.request(conn, json!({"type": "ping"}), ping).await?;
            }
            Command::Close(done) => {
                let _ = conn
                    .send(Message::Close(Some(CloseReason::from(CloseCode::Normal))))
                    .await;
                // The server's answer, briefly: the close handshake is polite, not needed.
                let _ = actix_rt::time::timeout(self.config.pong_timeout, async {
                    while let Some(Ok(frame)) = conn.next().await {
                        if matches!(frame, Frame::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
                let _ = done.send(());
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A command while not connected; false: the client is closed.
    fn offline(&mut self, command: Command) -> bool {
        match command {
            Command::Subscribe {
                pattern,
                options,
                acked,
            } => {
                // Made when the connection is up.
                self.add(pattern, options, acked);
            }
            Command::Unsubscribe(key) => {
                self.remove(key);
            }
            Command::Publish { answer, .. } => {
                let _ = answer.send(Err(ClientError::NotConnected));
            }
            Command::Ping(answer) => {
                let _ = answer.send(Err(ClientError::NotConnected));
            }
            Command::Close(done) => {
                let _ = done.send(());
                return false;
            }
        }
        true
    }

    fn add(&mut self, pattern: Pattern, options: SubscribeOptions, acked: Subscribed) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        let (deliveries, rx) = mpsc::channel(self.config.buffer.max(1));
        self.subs.insert(
            key,
            Sub {
                pattern,
                options,
                deliveries,
                waiting: Some((acked, rx)),
            },
        );
        key
    }

    fn remove(&mut self, key: u64) -> Option<Sub> {
        let sub = self.subs.remove(&key)?;
        self.positions
            .keep_matching(self.subs.values().map(|s| &s.pattern));
        Some(sub)
    }

    /// The connection is gone: requests in flight fail (subscriptions are made again).
    fn fail_pending(&mut self) {
        for (_, pending) in self.pending.drain() {
            match pending {
                Pending::Publish(answer) => {
                    let _ = answer.send(Err(ClientError::NotConnected));
                }
                Pending::Ping(_, Some(answer)) => {
                    let _ = answer.send(Err(ClientError::NotConnected));
                }
                _ => {}
            }
        }
    }

    async fn on_frame(&mut self, conn: &mut impl Connection, frame: Frame) -> Result<(), String> {
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Ping(payload) => {
                return conn
                    .send(Message::Pong(payload))
                    .await
                    .map_err(|err| err.to_string());
            }
            Frame::Close(reason) => {
                let _ = conn.send(Message::Close(reason.clone())).await;
                return Err(match reason {
                    Some(r) => format!(
                        "closed by the server: {} {}",
                        u16::from(r.code),
                        r.description.unwrap_or_default()
                    ),
                    None => "closed by the server".into(),
                });
            }
            _ => return Ok(()),
        };
        let Ok(frame) = serde_json::from_slice::<ServerFrame>(&text) else {
            return Ok(());
        };
        match frame {
            ServerFrame::Message {
                topic,
                data,
                seq,
                timestamp,
                snapshot,
            } => self.deliver(topic, data, seq, timestamp, snapshot).await,
            ServerFrame::Ack {
                id,
                epoch,
                seq,
                recovered,
                unrecovered,
            } => {
                let ack = Ack {
                    epoch: epoch.as_deref(),
                    seq,
                    recovered,
                    unrecovered: &unrecovered,
                };
                self.answered(id, Ok(ack));
            }
            ServerFrame::Pong { id } => self.answered(id, Ok(Ack::default())),
            ServerFrame::Error { id, code, message } => {
                self.emit(ClientEvent::Refused {
                    code: code.as_str().to_owned(),
                    message: message.clone(),
                });
                let refused = ClientError::Refused {
                    code: code.as_str().to_owned(),
                    message,
                };
                self.answered(id, Err(refused));
            }
            ServerFrame::Welcome { .. } => {}
        }
        Ok(())
    }

    fn answered(&mut self, id: Option<Value>, answer: Result<Ack<'_>, ClientError>) {
        let Some(pending) = id
            .as_ref()
            .and_then(Value::as_str)
            .and_then(|id| self.pending.remove(id))
        else {
            return;
        };
        match pending {
            Pending::Subscribe { key, recover } => {
                let Some(sub) = self.subs.get_mut(&key) else {
                    return;
                };
                let ack = match answer {
                    Ok(ack) => ack,
                    Err(err) => {
                        // Refused: the subscription is not made; whoever waits is told.
                        if let Some((acked, _)) = sub.waiting.take() {
                            let _ = acked.send(Err(err));
                        }
                        self.subs.remove(&key);
                        return;
                    }
                };
                let pattern = sub.pattern.clone();
                if let Some((acked, rx)) = sub.waiting.take() {
                    let _ = acked.send(Ok((key, rx)));
                }
                let lost = self.positions.acked(&pattern, recover.as_ref(), ack);
                if let Some(unrecovered) = lost {
                    self.emit(ClientEvent::Recovery {
                        pattern: pattern.as_str().to_owned(),
                        recovered: ack.recovered == Some(true),
                        unrecovered,
                    });
                }
            }
            Pending::Unsubscribe => {}
            Pending::Publish(answer_to) => {
                let _ = answer_to.send(answer.map(|_| ()));
            }
            Pending::Ping(sent, answer_to) => {
                if let Some(answer_to) = answer_to {
                    let _ = answer_to.send(answer.map(|_| sent.elapsed()));
                }
            }
        }
    }

    async fn deliver(
        &mut self,
        topic: String,
        data: Value,
        seq: u64,
        timestamp: String,
        snapshot: bool,
    ) {
        let matching: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, sub)| sub.pattern.matches(&topic))
            .map(|(key, _)| *key)
            .collect();
        if matching.is_empty() {
            return; // in flight after an unsubscribe
        }
        let conflated = matching.iter().all(|key| self.subs[key].options.conflate);
        match self
            .positions
            .seen(&topic, seq, !snapshot && !conflated, snapshot)
        {
            Seen::Duplicate => return,
            Seen::Gap { from, to } => self.emit(ClientEvent::Gap {
                topic: topic.clone(),
                from,
                to,
            }),
            Seen::InOrder => {}
        }
        let delivery = Delivery {
            topic,
            data,
            seq,
            timestamp,
            snapshot,
        };
        for key in matching {
            let Some(sub) = self.subs.get(&key) else {
                continue;
            };
            // Waits for room: the socket is not read meanwhile (see the module docs).
            let _ = sub.deliveries.send(delivery.clone()).await;
        }
    }
}
