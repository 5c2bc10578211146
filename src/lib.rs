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

#![deny(missing_docs)]

/// The README's code samples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod access;
pub mod bench;
pub mod bridge;
mod clock;
pub mod config;
pub mod core;
pub mod demo;
pub mod error;
pub mod event;
pub mod event_bus;
pub mod http;
pub mod item;
pub mod message;
pub mod message_queue;
pub mod metrics;
pub mod pattern;
pub mod priority;
pub mod serve;
pub mod typed;
pub mod websocket;

pub use config::{ConfigError, EventBusConfig, MessageQueueConfig, WebSocketServiceConfig};
pub use core::supervision::{DeadLetter, Delivered, DeliveryStats, HandlerFailure, OverflowPolicy};
pub use core::turns::STARVATION_LIMIT;
pub use core::{
    create_handler_config, Deliver, Deliverable, HandlerConfig, HandlerResult, SubscriptionId,
};
pub use error::{PublishError, SubscribeError};
pub use event::create_event;
pub use event_bus::EventBus;
pub use item::{Event, EventKind, Item, Kind, Message, MessageKind, Name};
pub use message_queue::MessageQueue;
pub use metrics::{EventBusMetrics, LatencySummary, MessageQueueMetrics, WebSocketMetrics};
pub use pattern::{validate_name, Pattern, PatternError, MAX_NAME_BYTES};
pub use priority::{EventPriority, InvalidPriority, MessagePriority, Priority};
pub use typed::{DecodeError, Typed, TypedMessage};
pub use websocket::WebSocketService;
