//! A Rust client of a tickwire server: the browser client's behaviour (`/tickwire.js`)
//! for Rust services, over the same protocol ([`protocol`](crate::websocket::protocol)).
//!
//! [`Client::connect`] starts a connection task on the current actix runtime and returns
//! a handle at once; the task connects, reconnects with jittered exponential backoff
//! whenever the connection ends (a close from the server included), and pings the server
//! every half heartbeat (at most every 15 s), dropping a connection whose pong does not
//! come within [`ClientConfig::pong_timeout`].
//!
//! [`Client::subscribe`] gives a [`Subscription`], a [`Stream`] of the [`Delivery`]s of
//! the topics its pattern matches, which lasts across reconnects until it is dropped. On
//! every reconnect each subscription is made again with `recover` from the last `seq`
//! the client saw of each topic, and `snapshot` for what cannot be recovered: after a
//! reconnect a subscription gets the messages it missed, in order, then the live ones.
//! What the client could not recover, and any gap in a topic's `seq` (a message it did
//! not get), is reported in its [`events`](Client::events) ([`ClientEvent`]). A topic of
//! a pattern first published while the client was away has no position to recover
//! from: it comes as a snapshot of its latest message. A server that restarted has
//! another epoch: nothing is recovered, every subscription gets snapshots, and the
//! positions start again.
//!
//! Backpressure: deliveries wait in a bounded channel per subscription
//! ([`ClientConfig::buffer`]); when one is full, the connection task waits for room and
//! stops reading the socket, so a subscription that is not read holds back the others,
//! and the server may close the connection as a slow consumer (4008). The client then
//! reconnects and recovers (within the server's history).
//!
//! The client speaks `ws://` (no TLS) and offers no compression.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use tickwire::client::{Client, ClientConfig, ClientEvent, SubscribeOptions};
//!
//! #[actix_rt::main]
//! async fn main() {
//!     let client = Client::connect(ClientConfig::new("ws://127.0.0.1:8080/ws"));
//!     let mut events = client.events().expect("taken once");
//!     actix_rt::spawn(async move {
//!         while let Some(event) = events.recv().await {
//!             if let ClientEvent::Gap { topic, from, to } = event {
//!                 eprintln!("missed {topic} {from}..={to}");
//!             }
//!         }
//!     });
//!     let mut prices = client.subscribe("market.>", SubscribeOptions::default()).await.unwrap();
//!     while let Some(tick) = prices.next().await {
//!         println!("{} #{}: {}", tick.topic, tick.seq, tick.data);
//!     }
//! }
//! ```

mod driver;
mod positions;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::{Pattern, PatternError, Priority};
use driver::{Command, Driver};

/// How a [`Client`] connects and behaves.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server's WebSocket endpoint, `ws://host:port/ws`.
    pub url: String,
    /// Sent as `Authorization: Bearer …` when the server has tokens.
    pub token: Option<String>,
    /// The first reconnect delay; each attempt doubles it up to `backoff_max`, and waits a
    /// random time between half of it and all of it. Default 250 ms.
    pub backoff_min: Duration,
    /// Default 10 s.
    pub backoff_max: Duration,
    /// A connection that lived this long was healthy: after it, the backoff starts over
    /// from `backoff_min`. Default 10 s.
    pub healthy_after: Duration,
    /// A ping unanswered this long drops the connection (and a new one is made).
    /// Default 10 s.
    pub pong_timeout: Duration,
    /// Deliveries waiting per subscription before the client stops reading. Default 1024.
    pub buffer: usize,
    /// Largest frame accepted from the server. Default 16 MiB.
    pub max_frame_size: usize,
}

impl ClientConfig {
    /// The defaults, for `url`.
    pub fn new(url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            token: None,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(10),
            buffer: 1024,
            max_frame_size: 16 << 20,
        }
    }
}

/// A subscription's options (the subscribe frame's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// At most one waiting message per topic on the server, the newest. Gaps are expected
    /// and not reported.
    pub conflate: bool,
    /// The latest kept message of each matching topic right after the ack.
    pub snapshot: bool,
}

/// A message of a subscribed topic.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub data: Value,
    /// Its number in the topic's sequence.
    pub seq: u64,
    /// When it was broadcast, RFC 3339.
    pub timestamp: String,
    /// Sent as a snapshot (the topic's latest kept message).
    pub snapshot: bool,
}

/// What happened to the connection, reported by [`Client::events`].
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// Connecting (the `attempt`-th time since the last welcome).
    Connecting {
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// Welcomed by the server; every subscription is being made again.
    Open {
        /// The id the server knows this connection by.
        client_id: String,
        /// The server's epoch.
        epoch: String,
    },
    /// The connection ended; the next attempt comes after `delay`.
    Reconnecting {
        /// Why: the server's close code and reason, or what failed.
        reason: String,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// A subscription made again with `recover` was acknowledged.
    Recovery {
        /// The subscription's pattern.
        pattern: String,
        /// Whether everything missed is being replayed.
        recovered: bool,
        /// The topics that were not recovered (a snapshot of each follows, if kept).
        unrecovered: Vec<String>,
    },
    /// Messages of `topic` numbered `from..=to` never arrived.
    Gap {
        /// The topic.
        topic: String,
        /// The first missing seq.
        from: u64,
        /// The last missing seq.
        to: u64,
    },
    /// The server refused a request.
    Refused {
        /// The error code (`forbidden`, `invalid_topic`…).
        code: String,
        /// For a person.
        message: String,
    },
}

/// Why a request failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClientError {
    /// Not a valid topic or pattern.
    #[error(transparent)]
    InvalidPattern(#[from] PatternError),
    /// The server answered with an error.
    #[error("refused by the server: {code}: {message}")]
    Refused {
        /// The error code.
        code: String,
        /// For a person.
        message: String,
    },
    /// The request needs a connection and there is none now.
    #[error("not connected")]
    NotConnected,
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

/// A handle to a client connection; cheap to clone. The connection task ends when
/// [`close`](Client::close) is called or every handle and subscription is dropped.
#[derive(Clone, Debug)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    events: std::sync::Arc<std::sync::Mutex<Option<mpsc::Receiver<ClientEvent>>>>,
}

/// Events kept for [`Client::events`] before new ones are dropped.
const EVENTS: usize = 1024;

impl Client {
    /// Starts the connection task on the current actix runtime (it must run inside one:
    /// `#[actix_rt::main]`, `#[actix_web::main]`, an actor's context).
    pub fn connect(config: ClientConfig) -> Client {
        let (commands, inbox) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(EVENTS);
        actix_rt::spawn(Driver::new(config, inbox, events_tx).run());
        Client {
            commands,
            events: std::sync::Arc::new(std::sync::Mutex::new(Some(events))),
        }
    }

    /// The connection's events (the first call takes them; later calls get `None`).
    /// Unread events past 1,024 are dropped.
    pub fn events(&self) -> Option<mpsc::Receiver<ClientEvent>> {
        self.events.lock().ok()?.take()
    }

    /// Subscribes to a topic or pattern; answers once the server acknowledged it (after
    /// the connection is up, if it is not yet).
    pub async fn subscribe(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, ClientError> {
        let pattern = Pattern::parse(pattern)?;
        let (acked, ack) = oneshot::channel();
        self.send(Command::Subscribe {
            pattern: pattern.clone(),
            options,
            acked,
        })?;
        let (key, rx) = ack.await.map_err(|_| ClientError::Closed)??;
        Ok(Subscription {
            key,
            pattern,
            deliveries: rx,
            commands: self.commands.clone(),
        })
    }

    /// Publishes into the server's MessageQueue (where it allows client publishes);
    /// answers on the server's ack.
    pub async fn publish(
        &self,
        topic: &str,
        data: Value,
        priority: Priority,
    ) -> Result<(), ClientError> {
        let (answer, answered) = oneshot::channel();
        self.send(Command::Publish {
            topic: topic.to_owned(),
            data,
            priority,
            answer,
        })?;
        answered.await.map_err(|_| ClientError::Closed)?
    }

    /// The round trip of a `ping`.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let (answer, answered) = oneshot::channel();
        self.send(Command::Ping(answer))?;
        answered.await.map_err(|_| ClientError::Closed)?
    }

    /// Closes the connection (1000) and ends the task: subscriptions end, requests fail
    /// with [`ClientError::Closed`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }

    fn send(&self, command: Command) -> Result<(), ClientError> {
        self.commands.send(command).map_err(|_| ClientError::Closed)
    }
}

/// The messages of one subscription, as a [`Stream`]; it ends when the client is
/// closed. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    key: u64,
    pattern: Pattern,
    deliveries: mpsc::Receiver<Delivery>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Subscription {
    /// The pattern subscribed to.
    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }

    /// The next delivery (`None` once the client is closed).
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.deliveries.recv().await
    }
}

impl Stream for Subscription {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.deliveries.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Unsubscribe(self.key));
    }
}
