//! The WebSocket transport over loopback, through a real `tickwire serve`:
//! `tickwire bench ws` runs its parts side by side and [`compare`] prints them.
//!
//! The server runs as a separate process (`tickwire serve --listen-stdin`, started from
//! the same executable with a listening socket made here, so its address comes from that
//! socket, not from its output) so that its memory and CPU can be measured alone; in
//! tests it runs in-process on a thread of its own instead (see `server`). It has the
//! default WebSocket config: permessage-deflate enabled, so each client decides by
//! offering it or not. The load generator is this process, on threads of its own, and
//! its clients are raw sockets (RFC 6455 and RFC 7692 written out in `wire`, one tokio
//! `TcpStream` per connection in `client`), so they can negotiate permessage-deflate and
//! cost the generator little.
//!
//! | part | function | measures |
//! |---|---|---|
//! | plain, deflate | [`websocket_fanout`] | N clients (offering deflate or not) subscribed to one topic; one phase per offered rate, open loop via `POST /api/publish`: delivered/s, due time → receipt percentiles, `seq` checked, wire bytes per message (clients' count and the server's metrics) |
//! | churn | [`websocket_churn`] | concurrent loops of connect, upgrade, welcome, subscribe, ack, close, close reply, end: cycles/s and how each closed |
//! | memory | [`websocket_fanout`] with a short gentle phase | the server's RSS growth per idle connection, before and after traffic |
//! | storm | [`websocket_storm`] | N clients come back at once with `recover`, each having missed the last 100 messages: time until all are live again |
//!
//! Every part reports the CPU used by the server and by each generator thread. A
//! generator thread busy more than 90 % of the time is the limit, not the server: the
//! report says so.
//!
//! ```no_run
//! use std::time::Duration;
//! use tickwire::bench::ws::{self, ServerMode, WsOptions};
//! # actix_rt::System::new().block_on(async {
//! let options = WsOptions {
//!     clients: 10,
//!     readers: 2,
//!     rates: vec![100.0],
//!     duration: Duration::from_millis(200),
//!     payload: 200,
//!     deflate: true,
//!     server: ServerMode::InProcess,
//! };
//! let report = ws::websocket_fanout(&options).await.unwrap();
//! assert_eq!(report.negotiated, 10);
//! assert_eq!(report.phases[0].delivered, 200);
//! # });
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

mod churn;
mod client;
pub mod compare;
mod fanout;
mod publisher;
mod readers;
mod server;
mod storm;
mod wire;

pub use churn::{websocket_churn, ChurnOptions, ChurnReport};
pub use fanout::{websocket_fanout, PhaseReport, WsOptions, WsReport};
pub use server::ServerMode;
pub use storm::{websocket_storm, StormOptions, StormReport};

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}
