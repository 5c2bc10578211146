//! One actor per client session, and the HTTP handler that upgrades to it.
//!
//! This is the only file that uses `actix-web-actors` (deprecated upstream in favour of
//! `actix-ws`): moving transports touches this file alone.
//!
//! A session:
//! - registers with the hub, then sends `welcome`;
//! - answers each client frame in order (a subscription is acknowledged once the hub
//!   has it, so a broadcast made after the `ack` reaches the client);
//! - writes the frames the hub queues to it (its outbound queue holds `send_buffer` of
//!   them);
//! - pings every `heartbeat_interval`, and closes with 4000 when nothing arrived for
//!   `connection_timeout` (checked every tick: see [`liveness`](super::liveness));
//! - closes with the code the hub decided (4008 slow consumer, 1001 stop, 1000
//!   disconnect) at its next frame or at once.
//!
//! ## Barriers
//!
//! The `ack` of a `subscribe` or `unsubscribe` falls exactly between what the hub queued
//! to the session before it handled the request and what it queued after: the hub
//! answers with the number of frames it had queued to the session, and the session,
//! which waits for the answer (reading no other client frame meanwhile), writes that
//! many from its outbound queue, then the `ack`. Since the hub routes by the
//! subscriptions it has, nothing of an unsubscribed pattern follows the `ack` of its
//! `unsubscribe`, and every broadcast of a matching topic that the hub handles after a
//! `subscribe` follows its `ack` (none comes before it).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use tokio::sync::mpsc;

use super::hub::{Answered, Connect, Disconnect, Hub, Outbound, Subscribe, Target, Unsubscribe};
use super::liveness::{SessionCheck, SessionLink};
use super::protocol::{
    close, ClientFrame, ErrorCode, Refusal, ServerFrame, MAX_CONSECUTIVE_ERRORS,
};
use super::shared::{ConnectionSlot, HubShared};
use super::socket::SessionSocket;
use super::ClientSubscribeError;
use super::WebSocketService;
use crate::access::Permissions;
use crate::reply::{json_error, unauthorized};
use crate::{Pattern, TryPublishError};

/// A message being reassembled from fragments.
enum Fragments {
    Text(Vec<u8>),
    /// Only its size is kept: it will be refused.
    Binary(usize),
}

/// See the module docs.
pub(crate) struct Session {
    key: u64,
    client_id: Arc<str>,
    hub: Addr<Hub>,
    shared: Arc<HubShared>,
    link: Arc<SessionLink>,
    permissions: Permissions,
    errors_in_a_row: u32,
    fragments: Option<Fragments>,
    last_ping: Instant,
    /// Given back when the session stops (before the hub hears of it).
    slot: Option<ConnectionSlot>,
    /// What the hub queued to this session; also a stream of the actor's, which reads it
    /// between other work (see `## Barriers`).
    outbound: Option<Rc<RefCell<mpsc::Receiver<Outbound>>>>,
    /// How many items the session took from `outbound`.
    taken: u64,
}

/// `GET /ws`: refuses with 503 (stopping, or `max_connections` reached) or 401 (token),
/// else upgrades to a [`Session`].
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
    let Some(slot) = shared.reserve() else {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        return Ok(json_error(
            503,
            "too_many_connections",
            "max_connections reached; try again later",
        ));
    };
    service.check_exposure([req.app_config().local_addr()]);
    // Not a WebSocket handshake: 400, before anything else is set up.
    if let Err(err) = ws::handshake(&req) {
        return Err(err.into());
    }
    let (key, client_id) = shared.next_client();
    // The kernel's own deadline comes after the hub's, which closes more gracefully.
    let socket =
        SessionSocket::for_request(&req, shared.config.connection_timeout + super::CLOSE_GRACE);
    if socket.is_none() && !shared.socket_warning.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "the connection's socket is unknown (register tickwire::websocket::on_connect on the HttpServer; plain TCP over HTTP/1.1 only): clients that stop reading cannot be reset"
        );
    }
    let link = Arc::new(SessionLink::new(shared.now_ms(), socket));
    let session = Session {
        key,
        client_id,
        hub: service.hub.clone(),
        shared: shared.clone(),
        link,
        permissions,
        errors_in_a_row: 0,
        fragments: None,
        last_ping: Instant::now(),
        slot: Some(slot),
        outbound: None,
        taken: 0,
    };
    let response = ws::WsResponseBuilder::new(session, &req, payload)
        .frame_size(shared.config.max_message_size)
        .start()?;
    counters.connections.fetch_add(1, Ordering::Relaxed);
    Ok(response)
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

impl Session {
    fn now_ms(&self) -> u64 {
        self.shared.now_ms()
    }

    fn send_text(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        text: impl Into<bytestring::ByteString>,
    ) {
        ctx.text(text);
        if self.shared.config.enable_metrics {
            self.shared.counters.sent.add(1);
        }
    }

    fn reply(&mut self, ctx: &mut ws::WebsocketContext<Self>, frame: ServerFrame) {
        self.errors_in_a_row = 0;
        self.send_text(ctx, frame.to_json());
    }

    /// Writes what the hub had queued when it answered a request, up to `queued` items
    /// in all (see `## Barriers`). Stops at a close. (Those items were all sent before
    /// the answer, so taking them never meets a send in progress.)
    fn flush_outbound(&mut self, ctx: &mut ws::WebsocketContext<Self>, queued: u64) {
        let Some(queue) = self.outbound.clone() else {
            return;
        };
        while self.taken < queued && self.link.close_code().is_none() {
            let next = queue.borrow_mut().try_recv();
            match next {
                Ok(msg) => self.on_outbound(msg, ctx),
                Err(_) => return,
            }
        }
    }

    /// The answer to a request the hub handled, after what the hub queued before it.
    fn reply_after_hub(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        queued: u64,
        frame: ServerFrame,
    ) {
        self.flush_outbound(ctx, queued);
        if self.link.close_code().is_none() {
            self.reply(ctx, frame);
        }
    }

    /// A frame or a close from the hub.
    fn on_outbound(&mut self, msg: Outbound, ctx: &mut ws::WebsocketContext<Self>) {
        self.taken += 1;
        self.link.alive(self.now_ms());
        match msg {
            Outbound::Frame(text) if self.link.close_code().is_none() => self.send_text(ctx, text),
            Outbound::Frame(_) => self.close_as_decided(ctx),
            Outbound::Close(code) => self.close(ctx, code, close_reason(code)),
        }
    }

    fn refuse(&mut self, ctx: &mut ws::WebsocketContext<Self>, refusal: Refusal) {
        self.shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.send_text(ctx, refusal.to_frame().to_json());
        self.errors_in_a_row += 1;
        if self.errors_in_a_row >= MAX_CONSECUTIVE_ERRORS {
            self.close(ctx, close::POLICY, "too many bad frames in a row");
        }
    }

    /// Closes for a reason the session found (unless a code was decided already: then
    /// with that one).
    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: &str) {
        if self.link.claim_close(code) {
            self.shared.counters.closed_with(code);
            self.write_close(ctx, code, reason);
        } else {
            self.close_as_decided(ctx);
        }
    }

    /// Closes with the code decided in the link (by the hub, or earlier by the session).
    fn close_as_decided(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let code = self.link.close_code().unwrap_or(close::NORMAL);
        self.write_close(ctx, code, close_reason(code));
    }

    fn write_close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: &str) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }

    fn tick(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let now_ms = self.now_ms();
        self.link.alive(now_ms);
        if self.link.close_code().is_some() {
            return self.close_as_decided(ctx);
        }
        let check = self.shared.liveness.session_check(
            now_ms,
            self.link.last_inbound(),
            self.last_ping.elapsed(),
        );
        match check {
            SessionCheck::TimedOut => self.close(
                ctx,
                close::HEARTBEAT_TIMEOUT,
                close_reason(close::HEARTBEAT_TIMEOUT),
            ),
            SessionCheck::Ping => {
                self.last_ping = Instant::now();
                ctx.ping(b"");
            }
            SessionCheck::Quiet => {}
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        if self.shared.config.enable_metrics {
            self.shared.counters.received.add(1);
        }
        match ClientFrame::parse(text) {
            Err(refusal) => self.refuse(ctx, refusal),
            Ok(ClientFrame::Ping { id }) => self.reply(ctx, ServerFrame::Pong { id }),
            Ok(ClientFrame::Subscribe { topic, id }) => self.subscribe(ctx, topic, id),
            Ok(ClientFrame::Unsubscribe { topic, id }) => {
                if let Err(err) = check_topic(&topic, Pattern::parse) {
                    return self.refuse(ctx, Refusal::new(id, ErrorCode::InvalidTopic, err));
                }
                let request = Unsubscribe {
                    target: Target::Key(self.key),
                    pattern: topic.clone(),
                };
                ctx.wait(self.hub.send(request).into_actor(self).map(
                    move |answered, session, ctx| match answered {
                        Ok(Answered {
                            answer: true,
                            queued,
                        }) => session.reply_after_hub(ctx, queued, ServerFrame::Ack { id }),
                        Ok(Answered { answer: false, .. }) => session.refuse(
                            ctx,
                            Refusal::new(
                                id,
                                ErrorCode::NotSubscribed,
                                format!("not subscribed to {topic:?}"),
                            ),
                        ),
                        Err(_) => session.refuse(ctx, unavailable(id)),
                    },
                ));
            }
            Ok(ClientFrame::Publish {
                topic,
                data,
                priority,
                id,
            }) => {
                let outcome = self.publish(&topic, data, priority.unwrap_or_default());
                match outcome {
                    Ok(()) => self.reply(ctx, ServerFrame::Ack { id }),
                    Err((code, message)) => self.refuse(ctx, Refusal::new(id, code, message)),
                }
            }
        }
    }

    fn subscribe(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        topic: String,
        id: Option<serde_json::Value>,
    ) {
        let pattern = match check_topic(&topic, Pattern::parse) {
            Ok(p) => p,
            Err(err) => return self.refuse(ctx, Refusal::new(id, ErrorCode::InvalidTopic, err)),
        };
        if !self.permissions.may_subscribe(&pattern) {
            let message = format!("this token may not subscribe to {topic:?}");
            return self.refuse(ctx, Refusal::new(id, ErrorCode::Forbidden, message));
        }
        let request = Subscribe {
            target: Target::Key(self.key),
            pattern,
        };
        ctx.wait(
            self.hub
                .send(request)
                .into_actor(self)
                .map(move |answer, session, ctx| match answer {
                    Ok(Ok(Answered { queued, .. })) => {
                        session.reply_after_hub(ctx, queued, ServerFrame::Ack { id })
                    }
                    Ok(Err(err @ ClientSubscribeError::TooManySubscriptions(_))) => session.refuse(
                        ctx,
                        Refusal::new(id, ErrorCode::TooManySubscriptions, err.to_string()),
                    ),
                    Ok(Err(_)) | Err(_) => session.refuse(ctx, unavailable(id)),
                }),
        );
    }

    /// A client publish into the MessageQueue, or why not.
    fn publish(
        &self,
        topic: &str,
        data: serde_json::Value,
        priority: crate::Priority,
    ) -> Result<(), (ErrorCode, String)> {
        let queue = match &self.shared.queue {
            Some(queue) if self.shared.config.allow_client_publish => queue,
            _ => {
                return Err((
                    ErrorCode::PublishNotAllowed,
                    "clients may not publish on this service".into(),
                ))
            }
        };
        check_topic(topic, crate::validate_name).map_err(|err| (ErrorCode::InvalidTopic, err))?;
        if !self.permissions.may_publish(topic) {
            return Err((
                ErrorCode::Forbidden,
                format!("this token may not publish to {topic:?}"),
            ));
        }
        match queue.try_publish(topic, data, priority) {
            Ok(_) => Ok(()),
            Err(err @ TryPublishError::QueueFull(_)) => {
                Err((ErrorCode::QueueFull, err.to_string()))
            }
            Err(err @ TryPublishError::InvalidName(..)) => {
                Err((ErrorCode::InvalidTopic, err.to_string()))
            }
            Err(err) => Err((ErrorCode::Unavailable, err.to_string())),
        }
    }

    fn on_fragment(&mut self, item: Item, ctx: &mut ws::WebsocketContext<Self>) {
        let (chunk, last) = match item {
            Item::FirstText(bytes) | Item::FirstBinary(bytes) if self.fragments.is_some() => {
                let _ = bytes;
                return self.close(
                    ctx,
                    close::PROTOCOL_ERROR,
                    "a new message began inside a fragmented one",
                );
            }
            Item::FirstText(bytes) => {
                self.fragments = Some(Fragments::Text(bytes.to_vec()));
                return;
            }
            Item::FirstBinary(bytes) => {
                self.fragments = Some(Fragments::Binary(bytes.len()));
                return;
            }
            Item::Continue(bytes) => (bytes, false),
            Item::Last(bytes) => (bytes, true),
        };
        let max = self.shared.config.max_message_size;
        let size = match &mut self.fragments {
            None => {
                return self.close(
                    ctx,
                    close::PROTOCOL_ERROR,
                    "a continuation frame without a first frame",
                )
            }
            Some(Fragments::Text(buf)) => {
                buf.extend_from_slice(&chunk);
                buf.len()
            }
            Some(Fragments::Binary(size)) => {
                *size += chunk.len();
                *size
            }
        };
        if size > max {
            return self.close(ctx, close::TOO_BIG, "message over max_message_size");
        }
        if !last {
            return;
        }
        match self.fragments.take() {
            Some(Fragments::Text(buf)) => match std::str::from_utf8(&buf) {
                Ok(text) => self.on_text(text, ctx),
                Err(_) => self.close(ctx, close::INVALID_DATA, "a text message that is not UTF-8"),
            },
            _ => self.binary(ctx),
        }
    }

    fn binary(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.shared.config.enable_metrics {
            self.shared.counters.received.add(1);
        }
        let refusal = Refusal::new(
            None,
            ErrorCode::BinaryNotSupported,
            "binary frames are not supported: send JSON text",
        );
        self.refuse(ctx, refusal);
    }
}

/// The reason sent with a close the server decided.
fn close_reason(code: u16) -> &'static str {
    match code {
        close::SLOW_CONSUMER => "slow consumer: too many messages waiting",
        close::HEARTBEAT_TIMEOUT => "no frame from the client within connection_timeout",
        close::GOING_AWAY => "the service is stopping",
        _ => "closed by the server",
    }
}

/// A client's topic or pattern, checked by `parse` (which also bounds its length: see
/// [`MAX_NAME_BYTES`](crate::MAX_NAME_BYTES)); the error as the text to send.
fn check_topic<T>(
    topic: &str,
    parse: impl FnOnce(&str) -> Result<T, crate::PatternError>,
) -> Result<T, String> {
    parse(topic).map_err(|err| err.to_string())
}

/// Whether a close code received from a client may be sent back: 1000-1003, 1007-1014
/// and 3000-4999 (not 1004-1006 nor 1015, which are reserved, nor out of range).
fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn unavailable(id: Option<serde_json::Value>) -> Refusal {
    Refusal::new(id, ErrorCode::Unavailable, "the service is stopping")
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (out, queue) = mpsc::channel(self.shared.config.send_buffer);
        let queue = Rc::new(RefCell::new(queue));
        self.outbound = Some(queue.clone());
        ctx.add_stream(futures_util::stream::poll_fn(move |cx| {
            queue.borrow_mut().poll_recv(cx)
        }));
        let connect = Connect {
            key: self.key,
            client_id: self.client_id.clone(),
            out,
            link: self.link.clone(),
        };
        ctx.wait(
            self.hub
                .send(connect)
                .into_actor(self)
                .map(|answer, session, ctx| {
                    if answer == Ok(true) {
                        let welcome = ServerFrame::welcome(
                            &session.client_id,
                            session.shared.config.heartbeat_interval,
                        );
                        session.send_text(ctx, welcome.to_json());
                    } else {
                        session.link.claim_close(close::GOING_AWAY);
                        session.close_as_decided(ctx);
                    }
                }),
        );
        ctx.run_interval(self.shared.liveness.tick(), Self::tick);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Free the slot first: once the hub has every Disconnect, the count is right.
        self.slot.take();
        self.hub.do_send(Disconnect { key: self.key });
    }
}

impl StreamHandler<Outbound> for Session {
    fn handle(&mut self, msg: Outbound, ctx: &mut Self::Context) {
        self.on_outbound(msg, ctx);
    }

    /// The hub let go of the session (it is forgetting it): nothing more will come, and
    /// the session ends by its own rules.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.link.inbound(self.now_ms());
        match item {
            Ok(ws::Message::Text(_) | ws::Message::Binary(_)) if self.fragments.is_some() => self
                .close(
                    ctx,
                    close::PROTOCOL_ERROR,
                    "a new message began inside a fragmented one",
                ),
            Ok(ws::Message::Text(text)) => self.on_text(&text, ctx),
            Ok(ws::Message::Binary(_)) => self.binary(ctx),
            Ok(ws::Message::Continuation(item)) => self.on_fragment(item, ctx),
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_) | ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                // Answer with the client's code when it may be sent back (RFC 6455 7.4),
                // else 1000; then stop.
                self.link.claim_close(close::NORMAL);
                let code = reason.map(|r| u16::from(r.code)).filter(|&c| sendable(c));
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::from(code.unwrap_or(close::NORMAL)),
                    description: None,
                }));
                ctx.stop();
            }
            Err(ws::ProtocolError::Overflow) => {
                self.close(ctx, close::TOO_BIG, "frame over max_message_size")
            }
            // Text that is not UTF-8 (or the connection broke mid-frame).
            Err(ws::ProtocolError::Io(err)) => {
                self.close(ctx, close::INVALID_DATA, &err.to_string())
            }
            Err(err) => self.close(ctx, close::PROTOCOL_ERROR, &err.to_string()),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The client's side of the connection ended.
        ctx.stop();
    }
}
