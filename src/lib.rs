//! # tickwire
//!
//! A messaging runtime for algorithmic trading, built on actix.
//!
//! - [`EventBus`]: named events (`market.tick`) to handlers subscribed by name or wildcard
//!   pattern, delivered by [`Priority`], with bounded per-subscription mailboxes and
//!   history.
//! - [`MessageQueue`]: topics with priorities or FIFO, a queue-wide bound, consumer
//!   groups, per-topic depth.
//! - [`WebSocketService`]: topics pushed to WebSocket clients through actix-web, one
//!   actor per session, with heartbeats, limits, slow-client protection and tokens
//!   ([`websocket`], [`access`]).
//! - Payloads are JSON or typed Rust values behind the same [`Event`] and [`Message`]
//!   ([`item`]): typed handlers ([`EventBus::subscribe_typed`], [`Typed`]) get the
//!   publisher's own value, or one decoded by serde from JSON, and no JSON is built on the
//!   typed path until something needs it.
//! - [`bridge`] connects them: EventBus → MessageQueue → WebSocket.
//! - [`http`] mounts the HTTP surface (dashboard, `/ws`, `/metrics`, `/api/*`, `/health`)
//!   on any actix-web `App`; [`serve`] runs everything as `tickwire serve` does (config
//!   file, graceful shutdown), optionally with the [`demo`] market feed.
//! - Supervision of every handler ([`core::supervision`]): timeouts, retries with
//!   backoff, restarts after panics, dead letters, overflow policies.
//!
//! ## Features
//!
//! The default features build everything (the `tickwire` binary included); an app that
//! embeds the library turns them off and picks: none gives the EventBus, the
//! MessageQueue, the bridges between them, supervision and metrics, without actix-web;
//! `websocket` adds the [`WebSocketService`] and its bridges, `http` the
//! HTTP surface, `client` a Rust client of a tickwire server (`tickwire::client`); `demo`, `serve`, `bench` and `cli` are what the binary runs. The
//! README's "Features" table lists them.
//!
//! ## Layers
//!
//! Modules use only those above them (`tests/layering.rs` checks it):
//!
//! ```text
//! util (clock, counters, ids, rates, latency summary, random)
//!  └─ priority, pattern, config, error, item (Event, Message, delivery records), typed
//!      └─ core (mailboxes, wake protocol, index, handler actors, supervision, metrics actor)
//!          └─ metrics, event_bus, message_queue
//!              └─ access, reply, websocket, http, bridge,    [features websocket, http,
//!                 client                                      client]
//!                  └─ demo, serve, bench                      [what the binary runs]
//! ```
//!
//! Everything runs inside an actix `System` (`#[actix::main]`, `#[actix_rt::test]`).
//! The publish fast path takes no lock (a publisher that must wait for room waits on a
//! tokio `Notify`): see [`core`] for the data path and its guarantees.
//!
//! ```
//! use serde_json::json;
//! use tickwire::{Event, EventBus, EventBusConfig};
//!
//! #[actix::main]
//! async fn main() {
//!     let bus = EventBus::start(EventBusConfig::default()).unwrap();
//!     let (tx, mut prices) = tokio::sync::mpsc::unbounded_channel();
//!     bus.subscribe("market.>", move |event: Event| {
//!         let _ = tx.send((event.name().to_owned(), event.data()["price"].clone()));
//!         async { Ok(()) }
//!     })
//!     .await
//!     .unwrap();
//!     bus.publish(Event::new("market.tick.btc", json!({"price": 50000}))).await.unwrap();
//!     bus.publish(Event::new("orders.new", json!({"qty": 1}))).await.unwrap(); // no match
//!     bus.stop().await; // handles what was accepted, then stops
//!     assert_eq!(prices.recv().await, Some(("market.tick.btc".to_owned(), json!(50000))));
//!     assert_eq!(prices.try_recv().ok(), None);
//! }
//! ```

// Links to what a feature adds: to the item when it is built, else to the feature list.
#![cfg_attr(
    feature = "websocket",
    doc = "[`WebSocketService`]: crate::WebSocketService"
)]
#![cfg_attr(feature = "websocket", doc = "[`websocket`]: crate::websocket")]
#![cfg_attr(feature = "websocket", doc = "[`access`]: crate::access")]
#![cfg_attr(feature = "http", doc = "[`http`]: crate::http")]
#![cfg_attr(feature = "serve", doc = "[`serve`]: crate::serve")]
#![cfg_attr(feature = "demo", doc = "[`demo`]: crate::demo")]
#![cfg_attr(
    not(feature = "websocket"),
    doc = "[`WebSocketService`]: crate#features"
)]
#![cfg_attr(not(feature = "websocket"), doc = "[`websocket`]: crate#features")]
#![cfg_attr(not(feature = "websocket"), doc = "[`access`]: crate#features")]
#![cfg_attr(not(feature = "http"), doc = "[`http`]: crate#features")]
#![cfg_attr(not(feature = "serve"), doc = "[`serve`]: crate#features")]
#![cfg_attr(not(feature = "demo"), doc = "[`demo`]: crate#features")]
#![deny(missing_docs)]

/// The README's code samples, compiled and run as doctests (they use the WebSocket
/// service and the HTTP surface).
#[cfg(all(doctest, feature = "websocket", feature = "http"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// The library: no actix-web, nothing of the binary.
pub mod bridge;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod config;
pub mod core;
pub mod error;
pub mod event;
pub mod event_bus;
pub mod item;
pub mod message;
pub mod message_queue;
pub mod metrics;
pub mod pattern;
pub mod priority;
pub mod typed;
mod util;

// The WebSocket service and the HTTP surface (features `websocket`, `http`).
#[cfg(feature = "websocket")]
pub mod access;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "websocket")]
mod reply;
#[cfg(feature = "websocket")]
pub mod websocket;

// What the `tickwire` binary runs (features `demo`, `serve`, `bench`).
#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "serve")]
pub mod serve;

#[cfg(feature = "websocket")]
pub use config::WebSocketServiceConfig;
pub use config::{ConfigError, EventBusConfig, MessageQueueConfig};
pub use core::supervision::{DeliveryStats, OverflowPolicy};
pub use core::turns::STARVATION_LIMIT;
pub use core::{create_handler_config, Deliver, HandlerConfig, HandlerResult};
pub use error::{PublishError, SubscribeError, TryPublishError};
pub use event::create_event;
pub use event_bus::EventBus;
pub use item::{
    DeadLetter, Deliverable, Delivered, Event, EventKind, HandlerFailure, Item, Kind, Message,
    MessageKind, Name, SubscriptionId,
};
pub use message_queue::MessageQueue;
pub use metrics::{EventBusMetrics, MessageQueueMetrics, WebSocketMetrics};
pub use pattern::{validate_name, Pattern, PatternError, MAX_NAME_BYTES};
pub use priority::{EventPriority, InvalidPriority, MessagePriority, Priority};
pub use typed::{DecodeError, Typed, TypedMessage};
pub use util::LatencySummary;
#[cfg(feature = "websocket")]
pub use websocket::{ClientSubscribeError, WebSocketService};
