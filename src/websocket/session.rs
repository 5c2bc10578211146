//! One actor per client session, and the HTTP handler that upgrades to it.
//!
//! The session reads and writes its own RFC 6455 frames (see [`frame`](super::frame)):
//! the upgrade answers 101 with a body that is the session's [`Outlet`], and the session
//! reads the request's payload stream itself. So the actor runs whether or not the
//! client reads, and every rule of [`liveness`](super::liveness) is applied by the
//! session itself.
//!
//! A session:
//! - registers with the hub, then sends `welcome`;
//! - answers each client frame in order: while a request is with the hub (a
//!   `subscribe`, an `unsubscribe`) or waits for room in the MessageQueue (a `publish`),
//!   the session reads no further frame, and stops reading its socket, so a client that
//!   publishes into a full queue is slowed down by TCP itself, never reset;
//! - answers a ping with a pong and a close with a close, at once (a frame that comes
//!   behind a publish waiting for room waits with it, up to `default_timeout`);
//! - pings every `heartbeat_interval`, closes with 4000 when nothing arrived for
//!   `connection_timeout`, and with 4008 when its frames waited `write_timeout` with the
//!   socket taking nothing (a push past `max_queued_bytes` closes it with 4008 too);
//! - completes the closing handshake whoever starts it: it answers a client's close at
//!   once, and after a close of its own reads on for the client's answer (up to
//!   [`CLOSE_REPLY_WAIT`](super::CLOSE_REPLY_WAIT)); then it ends the TCP connection
//!   itself, first, as RFC 6455 7.1.1 asks (through the socket that
//!   [`on_connect`](super::on_connect) recorded; without it, actix-web ends it after its
//!   `client_disconnect_timeout`, or when the client ends its side);
//! - ends with its connection, and cuts the connection if its close frame was not even
//!   handed over within [`CLOSE_GRACE`](super::CLOSE_GRACE).
//!
//! ## Barriers
//!
//! The `ack` of a `subscribe` or `unsubscribe` falls exactly between what the hub queued
//! to the session before it changed the routing and what it queued after: the hub
//! itself pushes the `ack` into the session's outlet when it makes the change (the
//! session hands it the encoded frame with the request). Since the hub routes by the
//! subscriptions it has, nothing of an unsubscribed pattern follows the `ack` of its
//! `unsubscribe`, and every broadcast of a matching topic that the hub handles after a
//! `subscribe` follows its `ack` (none comes before it).
//!
//! ## Compression
//!
//! With permessage-deflate negotiated (see [`deflate`](super::deflate)), broadcasts come
//! compressed from the hub; the session's own replies (`welcome`, `ack`, `pong`,
//! `error`) are small and go uncompressed. A compressed client message is inflated up to
//! `max_message_size` (past it: 1009, with inflating stopped there), and its text checked
//! to be UTF-8 after inflating (1007).

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Instant;

use actix::prelude::*;
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;

use super::deflate::{self, Agreed, InflateError, Inflater};
use super::frame::{check_text, encode, Assembler, Decoder, FrameError, Incoming, OpCode};
use super::history::{positions, Resume};
use super::hub::{AckRequest, Connect, Disconnect, Hub, Subscribe, Target, Unsubscribe};
use super::liveness::{Observed, SessionCheck, SessionLink};
use super::outlet::{Outlet, Pushed};
use super::protocol::{
    close, ClientFrame, ErrorCode, Recover, Refusal, ServerFrame, MAX_CONSECUTIVE_ERRORS,
};
use super::shared::{ConnectionSlot, HubShared};
use super::socket::SessionSocket;
use super::ClientSubscribeError;
use super::WebSocketService;
use crate::access::Permissions;
use crate::reply::{json_error, unauthorized};
use crate::{Message, Pattern, PublishError, TryPublishError};

/// See the module docs.
pub(crate) struct Session {
    key: u64,
    client_id: Arc<str>,
    hub: Addr<Hub>,
    shared: Arc<HubShared>,
    link: Arc<SessionLink>,
    outlet: Arc<Outlet>,
    permissions: Permissions,
    deflate: Option<Agreed>,
    /// For a client that keeps its compression context between messages: made at its
    /// first compressed message (see [`deflate`](super::deflate)).
    inflater: Inflater,
    /// The request's payload, until the actor starts reading it.
    payload: Option<web::Payload>,
    decoder: Decoder,
    assembler: Assembler,
    /// Bytes read and not yet decoded.
    inbuf: BytesMut,
    reading: Rc<ReadGate>,
    /// A request is in flight (with the hub, or waiting for room in the queue): the
    /// frames after it wait in `inbuf`, and the socket is not read.
    busy: bool,
    errors_in_a_row: u32,
    last_ping: Instant,
    /// When the session started closing (its close frame queued).
    closing_since: Option<Instant>,
    /// The closing handshake is over (the client's close arrived, or is no longer waited
    /// for): nothing more is read.
    close_done: bool,
    /// The request's payload ended: the client's side is closed, or the connection is
    /// gone (actix-web dropped it).
    inbound_ended: bool,
    /// Given back when the session stops (before the hub hears of it).
    slot: Option<ConnectionSlot>,
    /// Counted in `compressed_sessions` while the session lives.
    compressed: Option<CompressedSession>,
}

/// `GET /ws`: refuses with 503 (stopping, or `max_connections` reached), 401 (token),
/// 403 (cross-site, open service) or 400 (not a WebSocket handshake), else upgrades to
/// a [`Session`], negotiating permessage-deflate when the client offers it and the
/// config allows.
pub(crate) async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    service: web::Data<WebSocketService>,
) -> actix_web::Result<HttpResponse> {
    let shared = &service.shared;
    let counters = &shared.counters;
    if shared.stopping.load(Ordering::Acquire) {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        return Ok(json_error(503, "unavailable", "the service is stopping"));
    }
    let permissions = match shared.access.authorize_request(&req) {
        Ok(p) => p,
        Err(err) => {
            counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return Ok(unauthorized(err));
        }
    };
    if shared.access.is_open() && cross_site(&req) {
        counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        return Ok(json_error(
            403,
            "forbidden_origin",
            "an open service accepts WebSocket connections from its own origin only",
        ));
    }
    // Not a WebSocket handshake: 400, before anything else is set up.
    actix_http::ws::verify_handshake(req.head())?;
    let Some(slot) = shared.reserve() else {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        return Ok(json_error(
            503,
            "too_many_connections",
            "max_connections reached; try again later",
        ));
    };
    service.check_exposure([req.app_config().local_addr()]);
    let (key, client_id) = shared.next_client();
    // The kernel's own deadline comes after the session's, which closes more gracefully.
    let socket =
        SessionSocket::for_request(&req, shared.config.connection_timeout + super::CLOSE_GRACE);
    if socket.is_none() && !shared.socket_warning.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "the connection's socket is unknown (register tickwire::websocket::on_connect on the HttpServer; plain TCP over HTTP/1.1 only): a client that reads nothing at all keeps its connection after its session ends, until the operating system drops it"
        );
    }
    let deflate = if shared.config.enable_compression {
        let offers = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .filter_map(|value| value.to_str().ok());
        deflate::negotiate(offers)
    } else {
        None
    };
    let outlet = Outlet::new(shared.config.max_queued_bytes);
    let link = Arc::new(SessionLink::new(shared.now_ms(), socket));
    {
        let link = link.clone();
        outlet.on_end(move || link.shut_read());
    }
    let mut response = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS);
    response.upgrade("websocket").insert_header((
        header::SEC_WEBSOCKET_ACCEPT,
        accept_key(&req).ok_or(actix_http::ws::HandshakeError::BadWebsocketKey)?,
    ));
    if let Some(agreed) = &deflate {
        if let Ok(value) = HeaderValue::try_from(agreed.response_header()) {
            response.insert_header((header::SEC_WEBSOCKET_EXTENSIONS, value));
        }
    }
    let max = shared.config.max_message_size;
    let compressed = deflate.map(|_| CompressedSession::new(shared.clone()));
    let session = Session {
        key,
        client_id,
        hub: service.hub.clone(),
        shared: shared.clone(),
        link,
        outlet: outlet.clone(),
        permissions,
        deflate,
        inflater: Inflater::default(),
        payload: Some(payload),
        decoder: Decoder::new(max),
        assembler: Assembler::new(max, deflate.is_some()),
        inbuf: BytesMut::new(),
        reading: Rc::default(),
        busy: true, // until the welcome is queued
        errors_in_a_row: 0,
        last_ping: Instant::now(),
        closing_since: None,
        close_done: false,
        inbound_ended: false,
        slot: Some(slot),
        compressed,
    };
    session.start();
    counters.connections.fetch_add(1, Ordering::Relaxed);
    Ok(response.streaming(outlet.body()))
}

/// `Sec-WebSocket-Accept` for the request's key (checked by `verify_handshake`).
fn accept_key(req: &HttpRequest) -> Option<HeaderValue> {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?;
    HeaderValue::from_bytes(&actix_http::ws::hash_key(key.as_bytes())).ok()
}

/// Whether a browser opened this WebSocket from a page of another site: its `Origin` is
/// not the `Host` it connects to. (Non-browser clients send no `Origin`.)
fn cross_site(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return false;
    };
    let origin = origin.to_str().unwrap_or("");
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    !authority.eq_ignore_ascii_case(host)
}

/// One session in `compressed_sessions`, for as long as it lives.
struct CompressedSession(Arc<HubShared>);

impl CompressedSession {
    fn new(shared: Arc<HubShared>) -> Self {
        shared
            .counters
            .compressed_sessions
            .fetch_add(1, Ordering::Relaxed);
        CompressedSession(shared)
    }
}

impl Drop for CompressedSession {
    fn drop(&mut self) {
        self.0
            .counters
            .compressed_sessions
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether the session reads its socket: while paused, the payload stream is not
/// polled, so actix-web stops reading the connection once its buffer is full, and the
/// client's TCP window closes.
#[derive(Default)]
struct ReadGate {
    paused: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl ReadGate {
    fn set_paused(&self, paused: bool) {
        if self.paused.replace(paused) && !paused {
            if let Some(waker) = self.waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}

/// The request's payload, read through the session's [`ReadGate`].
struct Inbound {
    payload: web::Payload,
    gate: Rc<ReadGate>,
}

impl Stream for Inbound {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        if self.gate.paused.get() {
            *self.gate.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Pin::new(&mut self.payload).poll_next(cx)
    }
}

impl Session {
    fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    fn count_sent(&self) {
        if self.shared.config.enable_metrics {
            self.shared.counters.sent.add(1);
        }
    }

    /// Queues a frame of the session's own; past the budget, the session is a slow
    /// consumer. True if it was queued.
    fn push(&mut self, frame: Bytes) -> bool {
        match self.outlet.push(frame, None) {
            Pushed::Queued | Pushed::Replaced => true,
            Pushed::OverBudget => {
                self.close(close::SLOW_CONSUMER, close::reason(close::SLOW_CONSUMER));
                false
            }
            Pushed::Closed => false,
        }
    }

    fn send_json(&mut self, json: &str) {
        if self.push(encode::data_frame(true, false, json.as_bytes())) {
            self.count_sent();
        }
    }

    fn reply(&mut self, frame: ServerFrame) {
        self.errors_in_a_row = 0;
        self.send_json(&frame.to_json());
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.send_json(&refusal.to_frame().to_json());
        self.errors_in_a_row += 1;
        if self.errors_in_a_row >= MAX_CONSECUTIVE_ERRORS {
            self.close(close::POLICY, "too many bad frames in a row");
        }
    }

    /// Closes for a reason the session found (unless a code was decided already: then
    /// with that one). The close frame follows the frames waiting, except for 4008 and
    /// 4000, which drop them.
    fn close(&mut self, code: u16, reason: &str) {
        let (code, reason) = if self.link.claim_close(code) {
            self.shared.counters.closed_with(code);
            if code == close::SLOW_CONSUMER {
                tracing::warn!(client_id = %self.client_id, "slow consumer: closing the session (4008)");
            }
            (code, reason)
        } else {
            let decided = self.link.close_code().unwrap_or(code);
            (decided, close::reason(decided))
        };
        let graceful = !matches!(code, close::SLOW_CONSUMER | close::HEARTBEAT_TIMEOUT);
        self.outlet
            .close(encode::close_frame(Some(code), reason), !graceful);
        self.closing();
    }

    /// The session is closing: it reads on only for the client's close.
    fn closing(&mut self) {
        if self.closing_since.is_none() {
            self.closing_since = Some(Instant::now());
        }
        self.busy = false;
        self.reading.set_paused(false);
    }

    /// The closing handshake is over: the connection ends once the close frame is
    /// handed over (see [`Outlet::end_after_close`]).
    fn close_done(&mut self) {
        self.close_done = true;
        self.inbuf.clear();
        self.outlet.end_after_close();
    }

    fn fail(&mut self, err: &FrameError) {
        if self.closing_since.is_some() {
            // No close can be read after this: stop waiting for it.
            return self.close_done();
        }
        self.close(err.close_code(), &err.to_string());
    }

    /// Decodes and handles the frames read, until one starts a request (the rest wait)
    /// or none is whole.
    fn read_frames(&mut self, ctx: &mut Context<Self>) {
        loop {
            if self.close_done {
                self.inbuf.clear();
                break;
            }
            if self.busy {
                break;
            }
            let frame = match self.decoder.decode(&mut self.inbuf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(err) => return self.fail(&err),
            };
            match self.assembler.push(frame) {
                Ok(Some(incoming)) => self.on_incoming(incoming, ctx),
                Ok(None) => {}
                Err(err) => return self.fail(&err),
            }
        }
        self.reading
            .set_paused(self.busy && self.closing_since.is_none());
    }

    /// The request in flight was answered: go on with the frames that waited. (The
    /// client was not silent meanwhile: the session was not reading.)
    fn resume(&mut self, ctx: &mut Context<Self>) {
        self.busy = false;
        self.link.inbound(self.now_ms());
        self.read_frames(ctx);
    }

    fn on_incoming(&mut self, incoming: Incoming, ctx: &mut Context<Self>) {
        if self.closing_since.is_none() && self.outlet.is_closed() {
            // Closed by the hub since the last tick: nothing more is acted on.
            self.closing();
        }
        if self.closing_since.is_some() {
            // Only the client's close matters now (RFC 6455 5.5.1): it ends the handshake.
            if let Incoming::Close(_) = incoming {
                self.close_done();
            }
            return;
        }
        match incoming {
            Incoming::Data { text: false, .. } => self.binary(),
            Incoming::Data {
                text: true,
                compressed,
                payload,
            } => {
                let inflated;
                let bytes: &[u8] = if compressed {
                    let max = self.shared.config.max_message_size;
                    let own_context = self
                        .deflate
                        .is_some_and(|agreed| !agreed.client_no_context_takeover);
                    let inflated_now = if own_context {
                        self.inflater.inflate(&payload, max)
                    } else {
                        deflate::inflate(&payload, max)
                    };
                    match inflated_now {
                        Ok(data) => {
                            inflated = data;
                            &inflated
                        }
                        Err(InflateError::TooBig { .. }) => {
                            return self.close(close::TOO_BIG, "message over max_message_size")
                        }
                        Err(err) => return self.close(close::INVALID_DATA, &err.to_string()),
                    }
                } else {
                    &payload
                };
                match check_text(bytes) {
                    Ok(text) => self.on_text(text, ctx),
                    Err(err) => self.fail(&err),
                }
            }
            Incoming::Ping(payload) => {
                let _ = self.push(encode::control_frame(OpCode::Pong, &payload));
            }
            Incoming::Pong(_) => {}
            Incoming::Close(reason) => {
                // Echo the client's code (the assembler let through only codes that may
                // be sent), or an empty close for an empty one (RFC 6455 5.5.1),
                // dropping what waits: the client wants no more.
                self.link.claim_close(close::NORMAL);
                let code = reason.map(|(code, _)| code);
                self.outlet.close(encode::close_frame(code, ""), true);
                self.closing();
                self.close_done();
            }
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        if self.shared.config.enable_metrics {
            self.shared.counters.received.add(1);
        }
        match ClientFrame::parse(text) {
            Err(refusal) => self.refuse(refusal),
            Ok(ClientFrame::Ping { id }) => self.reply(ServerFrame::Pong { id }),
            Ok(ClientFrame::Subscribe {
                topic,
                id,
                conflate,
                recover,
                snapshot,
            }) => self.subscribe(ctx, topic, id, conflate, recover, snapshot),
            Ok(ClientFrame::Unsubscribe { topic, id }) => self.unsubscribe(ctx, topic, id),
            Ok(ClientFrame::Publish {
                topic,
                data,
                priority,
                id,
            }) => self.publish(ctx, &topic, data, priority.unwrap_or_default(), id),
        }
    }

    /// The encoded `ack` of a request, for the hub to push.
    fn ack(id: Option<serde_json::Value>) -> Bytes {
        let json = ServerFrame::ack(id).to_json();
        encode::data_frame(true, false, json.as_bytes())
    }

    fn subscribe(
        &mut self,
        ctx: &mut Context<Self>,
        topic: String,
        id: Option<serde_json::Value>,
        conflate: bool,
        recover: Option<Recover>,
        snapshot: bool,
    ) {
        let pattern = match check_topic(&topic, Pattern::parse) {
            Ok(p) => p,
            Err(err) => return self.refuse(Refusal::new(id, ErrorCode::InvalidTopic, err)),
        };
        if !self.permissions.may_subscribe(&pattern) {
            let message = format!("this token may not subscribe to {topic:?}");
            return self.refuse(Refusal::new(id, ErrorCode::Forbidden, message));
        }
        let recover = match recover.map(|r| positions(&pattern, r)).transpose() {
            Ok(recover) => recover,
            Err(message) => return self.refuse(Refusal::new(id, ErrorCode::InvalidField, message)),
        };
        let request = Subscribe {
            target: Target::Key(self.key),
            pattern,
            conflate: Some(conflate),
            ack: Some(AckRequest {
                id: id.clone(),
                resume: Resume { recover, snapshot },
            }),
        };
        self.ask_hub(ctx, request, move |session, answer| match answer {
            Ok(Ok(())) => session.acknowledged(),
            Ok(Err(err @ ClientSubscribeError::TooManySubscriptions(_))) => session.refuse(
                Refusal::new(id, ErrorCode::TooManySubscriptions, err.to_string()),
            ),
            Ok(Err(_)) | Err(_) => session.refuse(unavailable(id)),
        });
    }

    fn unsubscribe(
        &mut self,
        ctx: &mut Context<Self>,
        topic: String,
        id: Option<serde_json::Value>,
    ) {
        if let Err(err) = check_topic(&topic, Pattern::parse) {
            return self.refuse(Refusal::new(id, ErrorCode::InvalidTopic, err));
        }
        let request = Unsubscribe {
            target: Target::Key(self.key),
            pattern: topic.clone(),
            ack: Some(Self::ack(id.clone())),
        };
        self.ask_hub(ctx, request, move |session, answer| match answer {
            Ok(true) => session.acknowledged(),
            Ok(false) => session.refuse(Refusal::new(
                id,
                ErrorCode::NotSubscribed,
                format!("not subscribed to {topic:?}"),
            )),
            Err(_) => session.refuse(unavailable(id)),
        });
    }

    /// Sends a request whose `ack` the hub pushes, reading no further client frame
    /// until `answered` has handled the answer (see `## Barriers`).
    fn ask_hub<M>(
        &mut self,
        ctx: &mut Context<Self>,
        request: M,
        answered: impl FnOnce(&mut Self, Result<M::Result, MailboxError>) + 'static,
    ) where
        M: actix::Message + Send + 'static,
        M::Result: Send,
        Hub: Handler<M>,
    {
        self.busy = true;
        ctx.spawn(
            self.hub
                .send(request)
                .into_actor(self)
                .map(move |answer, session, ctx| {
                    answered(session, answer);
                    session.resume(ctx);
                }),
        );
    }

    /// The hub pushed the `ack` of a request.
    fn acknowledged(&mut self) {
        self.errors_in_a_row = 0;
        self.count_sent();
    }

    /// A client publish into the MessageQueue. Without room at once, the session stops
    /// reading (see the module docs) and waits for room up to `default_timeout`.
    fn publish(
        &mut self,
        ctx: &mut Context<Self>,
        topic: &str,
        data: serde_json::Value,
        priority: crate::Priority,
        id: Option<serde_json::Value>,
    ) {
        let queue = match &self.shared.queue {
            Some(queue) if self.shared.config.allow_client_publish => queue.clone(),
            _ => {
                return self.refuse(Refusal::new(
                    id,
                    ErrorCode::PublishNotAllowed,
                    "clients may not publish on this service",
                ))
            }
        };
        if let Err(err) = check_topic(topic, crate::validate_name) {
            return self.refuse(Refusal::new(id, ErrorCode::InvalidTopic, err));
        }
        if !self.permissions.may_publish(topic) {
            let message = format!("this token may not publish to {topic:?}");
            return self.refuse(Refusal::new(id, ErrorCode::Forbidden, message));
        }
        let message = match queue.try_publish(topic, data, priority) {
            Ok(_) => return self.reply(ServerFrame::ack(id)),
            Err(TryPublishError::QueueFull(message)) => message,
            Err(err) => return self.refuse(publish_refusal(id, err.into())),
        };
        self.busy = true;
        self.reading.set_paused(true);
        ctx.spawn(
            async move { queue.publish_message(message).await }
                .into_actor(self)
                .map(move |outcome, session, ctx| {
                    match outcome {
                        Ok(_) => session.reply(ServerFrame::ack(id)),
                        Err(err) => session.refuse(publish_refusal(id, err)),
                    }
                    session.resume(ctx);
                }),
        );
    }

    fn binary(&mut self) {
        if self.shared.config.enable_metrics {
            self.shared.counters.received.add(1);
        }
        self.refuse(Refusal::new(
            None,
            ErrorCode::BinaryNotSupported,
            "binary frames are not supported: send JSON text",
        ));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if self.outlet.is_closed() {
            // Closed by the hub (or by the session: then `closing_since` is set).
            self.closing();
        }
        if self.inbound_ended && self.outlet.is_finished() {
            return ctx.stop();
        }
        let now_ms = self.now_ms();
        let check = self.shared.liveness.session_check(Observed {
            now_ms,
            // Not reading (a request in flight) is not the client's silence.
            last_inbound: if self.busy {
                now_ms
            } else {
                self.link.last_inbound()
            },
            since_ping: self.last_ping.elapsed(),
            stalled: self.outlet.stalled_for(now),
            closing: self
                .closing_since
                .map(|since| now.saturating_duration_since(since)),
            close_sent: self.outlet.close_sent_for(now),
        });
        match check {
            SessionCheck::Quiet => {}
            SessionCheck::Ping => {
                self.last_ping = now;
                let _ = self.push(encode::control_frame(OpCode::Ping, b""));
            }
            SessionCheck::TimedOut => self.close(
                close::HEARTBEAT_TIMEOUT,
                close::reason(close::HEARTBEAT_TIMEOUT),
            ),
            SessionCheck::Stalled => {
                self.close(close::SLOW_CONSUMER, close::reason(close::SLOW_CONSUMER))
            }
            SessionCheck::StopWaiting => self.close_done(),
            SessionCheck::Cut => {
                self.shared.counters.cut.fetch_add(1, Ordering::Relaxed);
                if self.link.cut() {
                    tracing::warn!(client_id = %self.client_id, "session did not close in time: TCP connection reset");
                } else {
                    tracing::warn!(
                        client_id = %self.client_id,
                        "session did not close in time and its socket is unknown (register tickwire::websocket::on_connect on the HttpServer); ending it"
                    );
                }
                ctx.stop();
            }
        }
    }
}

/// The refusal of a client publish the MessageQueue did not take.
fn publish_refusal(id: Option<serde_json::Value>, err: PublishError<Message>) -> Refusal {
    let code = match &err {
        PublishError::QueueFull(_) => ErrorCode::QueueFull,
        PublishError::InvalidName(..) => ErrorCode::InvalidTopic,
        _ => ErrorCode::Unavailable,
    };
    Refusal::new(id, code, err.to_string())
}

/// A client's topic or pattern, checked by `parse` (which also bounds its length: see
/// [`MAX_NAME_BYTES`](crate::MAX_NAME_BYTES)); the error as the text to send.
fn check_topic<T>(
    topic: &str,
    parse: impl FnOnce(&str) -> Result<T, crate::PatternError>,
) -> Result<T, String> {
    parse(topic).map_err(|err| err.to_string())
}

fn unavailable(id: Option<serde_json::Value>) -> Refusal {
    Refusal::new(id, ErrorCode::Unavailable, "the service is stopping")
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(payload) = self.payload.take() {
            ctx.add_stream(Inbound {
                payload,
                gate: self.reading.clone(),
            });
        }
        let welcome = ServerFrame::welcome(
            &self.client_id,
            self.shared.config.heartbeat_interval,
            &self.shared.epoch,
        );
        let connect = Connect {
            key: self.key,
            client_id: self.client_id.clone(),
            outlet: self.outlet.clone(),
            link: self.link.clone(),
            deflate: self.deflate.map(|agreed| agreed.server_max_window_bits),
            welcome: encode::data_frame(true, false, welcome.to_json().as_bytes()),
        };
        self.count_sent();
        ctx.spawn(self.hub.send(connect).into_actor(self).map(
            |answer, session, ctx| match answer {
                Ok(()) => session.resume(ctx),
                // The hub is gone: the service stopped.
                Err(_) => session.close(close::GOING_AWAY, close::reason(close::GOING_AWAY)),
            },
        ));
        ctx.run_interval(self.shared.liveness.tick(), Self::tick);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // The body ends now if it has not (the connection is cut, or gone).
        self.outlet.abort();
        // Free the slot first: once the hub has every Disconnect, the count is right.
        self.slot.take();
        self.compressed.take();
        self.hub.do_send(Disconnect { key: self.key });
    }
}

impl StreamHandler<Result<Bytes, PayloadError>> for Session {
    fn handle(&mut self, item: Result<Bytes, PayloadError>, ctx: &mut Self::Context) {
        match item {
            Ok(bytes) => {
                self.link.inbound(self.now_ms());
                if self.close_done {
                    return; // drained, not read
                }
                self.inbuf.extend_from_slice(&bytes);
                self.read_frames(ctx);
            }
            // The connection broke.
            Err(_) => self.client_gone(ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.client_gone(ctx);
    }
}

impl Session {
    /// The client's side of the connection ended (or the connection is gone). An open
    /// session closes in order (what waits goes first: the client may have only
    /// half-closed); no close can come from it any more, so the handshake is over: the
    /// connection ends once the close frame is handed over, and the session with it (at
    /// once if the connection is gone).
    fn client_gone(&mut self, ctx: &mut Context<Self>) {
        self.inbound_ended = true;
        if self.closing_since.is_none() {
            self.close(close::NORMAL, "the client ended its side of the connection");
        }
        // No close can come from it any more.
        self.close_done();
        if self.outlet.is_finished() {
            ctx.stop();
        }
    }
}
