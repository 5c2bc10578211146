//! The baselines: the same load as the tickwire scenarios (the same items, built the same
//! way, each subscriber receiving every one), through the usual alternatives, in the same
//! process and the same run. Each is one [`Fanout`](super::fanout::Fanout) adapter, driven
//! by the throughput and the latency driver alike:
//!
//! - [`CrossbeamFanout`]: a bounded `crossbeam-channel` per subscriber, a consumer thread
//!   each, capacity 10,000 (EventBus's default `queue_size`): the physical floor for a
//!   hand-off between threads.
//! - [`TokioBroadcastFanout`]: one `tokio::sync::broadcast` channel of capacity 10,000
//!   (the usual in-process fan-out), a receiver per subscriber on a thread of its own; the
//!   publisher waits for room (broadcast has no backpressure, and a lagging receiver would
//!   lose items), so nothing is lost.
//! - [`ActixFanout`]: plain actix, one actor per subscriber (mailbox capacity 10,000) on
//!   `workers` arbiters, the publisher calling `Addr::try_send` (retrying on a full
//!   mailbox).
//!
//! Each consumer has a thread or an actor to itself, so it owns its sink
//! ([`Sink::into_owned`](super::fanout::Sink::into_owned)) and counts or times in plain
//! memory. Each baseline moves what its `make` builds from `i` (one per item, cloned to
//! each subscriber): the JSON scenarios' `Event` ([`json_event`](super::json_event)) or
//! the typed scenarios' `Arc<Tick>` ([`arc_tick`](super::arc_tick)). None has consumer
//! groups.

mod actix_actors;
mod crossbeam_channel;
mod tokio_broadcast;

pub use actix_actors::ActixFanout;
pub use crossbeam_channel::CrossbeamFanout;
pub use tokio_broadcast::TokioBroadcastFanout;

/// Joins consumer threads, passing on a panic of theirs.
async fn join(threads: Vec<std::thread::JoinHandle<()>>) {
    for thread in threads {
        thread.join().expect("consumer thread");
    }
}
