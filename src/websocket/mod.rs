//! The WebSocketService: topics pushed to WebSocket clients through actix-web.
//!
//! Each client session is an actix actor; a hub actor (on its own thread) owns the topic
//! registry and fans broadcasts out. The app mounts `/ws` on its actix-web `App` with
//! [`configure`], and registers [`on_connect`] on its `HttpServer`:
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use serde_json::json;
//! use tickwire::{websocket, WebSocketService, WebSocketServiceConfig};
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let ws = WebSocketService::start(WebSocketServiceConfig::default()).unwrap();
//!     let app_ws = ws.clone();
//!     let server = HttpServer::new(move || App::new().configure(websocket::configure(app_ws.clone())))
//!         .on_connect(websocket::on_connect)
//!         .bind("127.0.0.1:8080")?
//!         .run();
//!     // Clients send {"type":"subscribe","topic":"market.>"} and get every broadcast:
//!     ws.broadcast("market.data", json!({"symbol": "BTC", "price": 50000})).await;
//!     server.await
//! }
//! ```
//!
//! The protocol (JSON text frames, error codes, close codes) is in [`protocol`].
//!
//! ## Semantics
//!
//! - **Broadcast**: [`broadcast`](WebSocketService::broadcast) serializes the frame once,
//!   whatever the number of clients, and queues it to every session with a matching
//!   subscription (once per session, however many of its patterns match). It returns the
//!   number of sessions it was queued to. Each topic numbers its messages (`seq`), and a
//!   session receives them in that order. The `ack` of a `subscribe` or `unsubscribe`
//!   is a barrier: every broadcast of a matching topic handled after the `subscribe`
//!   follows its `ack`, and no message of an unsubscribed pattern follows the `ack` of
//!   its `unsubscribe`.
//! - **Transport**: the service writes and reads its own RFC 6455 frames (see
//!   `## Transport` below): a session's actor runs whether or not its client reads, so heartbeats,
//!   timeouts and closes always happen, and a client's close is answered at once.
//! - **Slow clients**, in bytes: the hub pushes each session's frames into the session's
//!   own queue (its outlet), which holds at most `max_queued_bytes` of frames waiting
//!   for the socket; the hub never waits for a session. A client that falls further
//!   behind, or whose socket takes no byte for `write_timeout` while frames wait, is
//!   closed with 4008 and stops receiving at once, so it never delays anyone else. A
//!   client that keeps reading and falls behind in a burst within the budget is not
//!   closed. A session that cannot hand its close frame over (its client reads nothing)
//!   has its TCP connection cut after [`CLOSE_GRACE`], through the socket [`on_connect`]
//!   recorded. On Linux the session's socket also gets `TCP_USER_TIMEOUT` =
//!   `connection_timeout` + [`CLOSE_GRACE`], so the kernel drops a connection whose peer
//!   takes no data for that long, and `TCP_NODELAY`: each frame leaves as it is written.
//! - **Conflation**: a subscription made with `"conflate": true` keeps at most one
//!   message per topic waiting for the socket, the newest (it replaces the older one in
//!   place); such messages never make the session a slow consumer.
//! - **Heartbeats**: the server pings every `heartbeat_interval`; a client from which no
//!   frame at all arrived for `connection_timeout` is closed with 4000 (checked every
//!   tick: a twentieth of the shorter of `connection_timeout` and `write_timeout`,
//!   clamped to 10 ms..1 s).
//! - **Limits**: over `max_connections`, a connection is refused with HTTP 503 before the
//!   upgrade; a message over `max_message_size` closes the session with 1009; after
//!   [`MAX_CONSECUTIVE_ERRORS`](protocol::MAX_CONSECUTIVE_ERRORS) bad frames in a row, 1008.
//! - **Auth**: with tokens ([`WebSocketServiceBuilder::access`], see [`crate::access`]) a
//!   client must present one (`Authorization: Bearer …` or `?token=…`) or is refused with
//!   401 before the upgrade, and may subscribe and publish only within its token's
//!   patterns (`forbidden`). With no tokens the service is **open** to whoever reaches it;
//!   a warning is logged on the first connection if the server listens beyond loopback.
//!   An open service still refuses (403) a browser connecting from a page of another site
//!   (an `Origin` that is not the `Host`), so that any web page cannot read the feed.
//! - **Client publish**: `{"type":"publish"}` goes into the MessageQueue given with
//!   [`WebSocketServiceBuilder::publish_to`], when `allow_client_publish` is set;
//!   otherwise it gets `publish_not_allowed`. When the queue has no room, the session
//!   stops reading that client's socket (TCP backpressure) until there is, up to the
//!   queue's `default_timeout`, then answers `queue_full`; the client is never reset for
//!   it, and its other frames are answered in order after.
//! - **Compression**: permessage-deflate (RFC 7692), with `enable_compression` and a
//!   client that offers it (see `## Transport`): a broadcast is
//!   compressed once, and the same bytes go to every compressing session; messages
//!   under `compression_min_size` go uncompressed. A compressed client message may
//!   inflate to at most `max_message_size` (1009 past it, inflating stopped there).
//! - **Stop**: [`stop`](WebSocketService::stop) refuses new connections (503), closes
//!   every session with 1001 (after the frames waiting), and returns when all are gone
//!   (a client that takes the close frame and does not answer it has its connection
//!   ended after [`CLOSE_REPLY_WAIT`]; one that does not take it is cut after
//!   [`CLOSE_GRACE`], each plus a tick).
//!
//! [`bridge`](crate::bridge) connects the EventBus and the MessageQueue to the service.
//!
//! ## Transport
//!
//! actix-http's WebSocket codec refuses every frame with RSV1 set (so no extension can
//! be negotiated through it), and actix-web-actors' context runs a session only while its
//! client reads. The service therefore answers the upgrade itself (actix-http's
//! handshake checks, then a 101 whose body is the session's queue of encoded frames) and
//! reads the request's payload stream itself; the session stays an actix actor.
//!
//! - **Frames** (RFC 6455): client frames must be masked; fragmented messages are
//!   reassembled (control frames may come between fragments) up to `max_message_size`;
//!   text must be UTF-8 (1007 otherwise); reserved bits, reserved opcodes, control frames
//!   over 125 bytes or fragmented, a continuation with no message, a new message inside
//!   a fragmented one, and a malformed close payload are protocol errors (1002); a frame
//!   or message over `max_message_size` is 1009. Binary messages get an `error` reply
//!   (`binary_not_supported`).
//! - **permessage-deflate** (RFC 7692), negotiated when `enable_compression` is set and
//!   the client offers it: the server always answers `server_no_context_takeover` (each
//!   message is compressed on its own, so a broadcast is compressed once for every
//!   session with the same window), and `client_no_context_takeover` when the client
//!   offers it (then inflating keeps no state between messages; a client that keeps its
//!   context gets an inflater of its own at its first compressed message, so an idle
//!   compressed session holds none). It
//!   honours `server_max_window_bits` (9..=15; an offer of 8 is declined) and accepts
//!   `client_max_window_bits`. `compression_level` (default 1) and
//!   `compression_min_size` (default 256 bytes: smaller messages, and the session's own
//!   replies, go with RSV1 clear) tune it. The metrics count `compressed_sessions` and the
//!   bytes sent on the wire and uncompressed.

pub mod protocol;

mod deflate;
mod encoded;
mod error;
pub(crate) mod frame;
mod history;
mod hub;
mod liveness;
mod outlet;
mod payload;
mod router;
mod session;
mod shared;
mod socket;
mod topics;

/// Entry points for the fuzz targets (`fuzz/`) and the corpus replay test
/// (`tests/fuzz_corpus.rs`): **not part of the API**, hidden from the docs, free to change
/// in any release.
#[doc(hidden)]
pub mod fuzz {
    /// The `inflater` target: permessage-deflate (src/websocket/deflate/).
    pub use super::deflate::fuzz::{compress, compress_fresh, inflate, negotiate, InflateRefusal};
    /// The `frame_decoder` target: the frame codec (src/websocket/frame/).
    pub use super::frame::fuzz::{frame_decoder_events, server_frame, Event};
}

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::web;
use serde_json::Value;
use tokio::sync::oneshot;

pub use error::ClientSubscribeError;
pub use liveness::{CLOSE_GRACE, CLOSE_REPLY_WAIT};
pub use socket::on_connect;

use crate::access::Access;
use crate::metrics::WebSocketMetrics;
use crate::{ConfigError, MessageQueue, Pattern, WebSocketServiceConfig};
use hub::{Broadcast, GetStats, Hub, Kick, Stop, Subscribe, Target, Unsubscribe};
pub(crate) use payload::Payload;
use shared::HubShared;

/// Handle to a running WebSocketService. Cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct WebSocketService {
    shared: Arc<HubShared>,
    hub: Addr<Hub>,
    arbiter: actix_rt::ArbiterHandle,
}

/// Options of a [`WebSocketService`] beyond its config: who may connect, and where
/// client publishes go.
#[derive(Debug)]
#[must_use = "call start() to start the service"]
pub struct WebSocketServiceBuilder {
    config: WebSocketServiceConfig,
    access: Access,
    queue: Option<MessageQueue>,
}

impl WebSocketServiceBuilder {
    /// The tokens clients must present (default: none, an open service).
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// The MessageQueue that `{"type":"publish"}` frames go to (when
    /// `allow_client_publish` is set).
    pub fn publish_to(mut self, queue: MessageQueue) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Validates the config and starts the hub on its own thread, inside the running
    /// actix `System`.
    pub fn start(self) -> Result<WebSocketService, ConfigError> {
        self.config.validate()?;
        if actix_rt::System::try_current().is_none() {
            return Err(ConfigError::NoSystem {
                component: "WebSocketService",
            });
        }
        if self.config.allow_client_publish && self.queue.is_none() {
            tracing::warn!("allow_client_publish is set but no MessageQueue was given: client publishes will be refused");
        }
        let shared = Arc::new(HubShared::new(self.config, self.access, self.queue));
        let arbiter = actix_rt::Arbiter::new().handle();
        let hub_shared = shared.clone();
        let hub = Hub::start_in_arbiter(&arbiter, move |_| Hub::new(hub_shared));
        Ok(WebSocketService {
            shared,
            hub,
            arbiter,
        })
    }
}

impl WebSocketService {
    /// Starts an open service (no tokens, no client publish) with `config`.
    pub fn start(config: WebSocketServiceConfig) -> Result<WebSocketService, ConfigError> {
        WebSocketService::builder(config).start()
    }

    /// A service with more options: [`access`](WebSocketServiceBuilder::access) and
    /// [`publish_to`](WebSocketServiceBuilder::publish_to).
    pub fn builder(config: WebSocketServiceConfig) -> WebSocketServiceBuilder {
        WebSocketServiceBuilder {
            config,
            access: Access::open(),
            queue: None,
        }
    }

    /// The tokens clients must present (shared with `POST /api/publish`).
    pub fn access(&self) -> &Access {
        &self.shared.access
    }

    /// True once [`stop`](Self::stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::Acquire)
    }

    /// The config the service runs with.
    pub fn config(&self) -> &WebSocketServiceConfig {
        &self.shared.config
    }

    /// Sends `message` to every client subscribed to `topic` (see the module docs).
    /// Returns how many sessions it was queued to; 0 for an invalid topic (logged) or a
    /// stopped service.
    pub async fn broadcast(&self, topic: &str, message: Value) -> usize {
        if let Err(err) = crate::validate_name(topic) {
            tracing::warn!(%err, "broadcast to an invalid topic: sent to nobody");
            return 0;
        }
        self.broadcast_payload(Payload::Value(topic.into(), message))
            .await
    }

    /// Broadcasts on the payload's (valid) topic.
    pub(crate) async fn broadcast_payload(&self, payload: Payload) -> usize {
        self.hub.send(Broadcast(payload)).await.unwrap_or(0)
    }

    /// Subscribes a connected client to a topic or pattern, on the server's initiative
    /// (not checked against the client's token).
    pub async fn subscribe(
        &self,
        client_id: &str,
        topic: &str,
    ) -> Result<(), ClientSubscribeError> {
        let pattern = Pattern::parse(topic)?;
        let message = Subscribe {
            target: Target::Client(client_id.to_owned()),
            pattern,
            conflate: None,
            ack: None,
        };
        match self.hub.send(message).await {
            Ok(answered) => answered,
            Err(_) => Err(ClientSubscribeError::Stopped),
        }
    }

    /// Removes a client's subscription, by the pattern it was made with. False if there
    /// was none.
    pub async fn unsubscribe(&self, client_id: &str, topic: &str) -> bool {
        let message = Unsubscribe {
            target: Target::Client(client_id.to_owned()),
            pattern: topic.to_owned(),
            ack: None,
        };
        self.hub.send(message).await.unwrap_or(false)
    }

    /// Closes a client's session with 1000. False if no such client is connected.
    pub async fn disconnect(&self, client_id: &str) -> bool {
        let message = Kick {
            client_id: client_id.to_owned(),
        };
        self.hub.send(message).await.unwrap_or(false)
    }

    /// Sessions open now.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// The seed's metrics, plus ours; definitions on [`WebSocketMetrics`].
    ///
    /// The name is the seed specification's (`get_performance_metrics()`), kept so that
    /// code written against the seed reads the same (Rust getters otherwise have no
    /// `get_` prefix).
    pub async fn get_performance_metrics(&self) -> WebSocketMetrics {
        let stats = self.hub.send(GetStats).await.unwrap_or_default();
        let c = &self.shared.counters;
        let on = self.shared.config.enable_metrics;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        WebSocketMetrics {
            total_connections: load(&c.connections),
            active_connections: self.active_connections() as u64,
            total_messages_sent: on.then(|| c.sent.sum()),
            total_messages_received: on.then(|| c.received.sum()),
            total_errors: load(&c.errors),
            messages_per_second: on.then_some(stats.sent_per_second),
            topics_count: stats.topics,
            uptime_seconds: self.shared.started.elapsed().as_secs_f64(),
            rejected_connections: load(&c.rejected),
            unauthorized: load(&c.unauthorized),
            slow_consumers: load(&c.slow_consumers),
            heartbeat_timeouts: load(&c.heartbeat_timeouts),
            oversize_messages: load(&c.oversize),
            connections_reset: load(&c.cut),
            compressed_sessions: load(&c.compressed_sessions),
            wire_bytes_sent: on.then(|| c.wire_bytes.sum()),
            uncompressed_bytes_sent: on.then(|| c.uncompressed_bytes.sum()),
            epoch: self.shared.epoch.to_string(),
            history_topics: stats.history.topics,
            history_messages: stats.history.messages,
            history_bytes: stats.history.bytes,
            recoveries: load(&c.recoveries),
            failed_recoveries: load(&c.failed_recoveries),
            replayed_messages: load(&c.replayed),
            snapshot_messages: load(&c.snapshots),
            metrics_enabled: on,
        }
    }

    /// Refuses new connections, closes every session with 1001 and waits until all are
    /// gone (see the module docs), then stops the hub and its thread.
    pub async fn stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        if self.hub.send(Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.arbiter.stop();
    }

    /// Logs a warning (once) if the service is open (no tokens) and one of the addresses
    /// the server is bound to is not loopback. Call it after binding
    /// (`HttpServer::addrs()`); the `/ws` handler also calls it on the first connection,
    /// with the address that connection arrived on. Returns whether it warned.
    pub fn check_exposure(&self, bound: impl IntoIterator<Item = SocketAddr>) -> bool {
        if !self.shared.access.is_open() {
            return false;
        }
        let Some(exposed) = bound.into_iter().find(|a| !a.ip().is_loopback()) else {
            return false;
        };
        if self.shared.exposure_checked.swap(true, Ordering::Relaxed) {
            return false;
        }
        tracing::warn!(
            address = %exposed,
            "the WebSocket service has no tokens configured and listens beyond loopback: anyone who can reach it may subscribe"
        );
        true
    }
}

impl std::fmt::Debug for WebSocketService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketService")
            .field("active_connections", &self.active_connections())
            .finish()
    }
}

/// Mounts `GET /ws` (the WebSocket endpoint) on an actix-web `App`:
/// `App::new().configure(websocket::configure(service.clone()))`.
pub fn configure(service: WebSocketService) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(service))
            .route("/ws", web::get().to(session::upgrade));
    }
}
