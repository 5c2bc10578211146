//! What the hub, the sessions and the HTTP upgrade handler share: the configuration,
//! the access rules, the connection slots (`max_connections`), the client ids, and the
//! service's counters (the figures of `get_performance_metrics`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::liveness::Liveness;
use super::protocol::close;
use crate::access::Access;
use crate::util::counter::StripedCounter;
use crate::util::rate::TICK;
use crate::{MessageQueue, WebSocketServiceConfig};

/// What the hub, the sessions and the HTTP handler share.
pub(crate) struct HubShared {
    pub(crate) config: WebSocketServiceConfig,
    pub(crate) access: Access,
    pub(crate) queue: Option<MessageQueue>,
    pub(crate) stopping: AtomicBool,
    /// Sessions holding a connection slot.
    pub(crate) active: AtomicUsize,
    pub(crate) started: Instant,
    /// The name of the hub's sequence space (see [`history`](super::history)), in every
    /// `welcome` and subscribe `ack`.
    pub(crate) epoch: Arc<str>,
    /// The sweep and session timer rule (and period: its `tick()`).
    pub(crate) liveness: Liveness,
    next_client: AtomicU64,
    pub(crate) counters: Counters,
    /// Whether the open-service warning was considered (on the first connection).
    pub(crate) exposure_checked: AtomicBool,
    /// Whether the unknown-socket warning was logged.
    pub(crate) socket_warning: AtomicBool,
}

/// Counters of the service, updated by sessions and the hub.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) sent: StripedCounter,
    pub(crate) received: StripedCounter,
    pub(crate) errors: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) unauthorized: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
    pub(crate) heartbeat_timeouts: AtomicU64,
    pub(crate) oversize: AtomicU64,
    pub(crate) cut: AtomicU64,
    /// Bytes of frames queued to clients, as sent (compressed or not).
    pub(crate) wire_bytes: StripedCounter,
    /// The same frames' bytes had none been compressed.
    pub(crate) uncompressed_bytes: StripedCounter,
    /// Sessions open now that negotiated permessage-deflate.
    pub(crate) compressed_sessions: AtomicU64,
    /// Subscribes whose `recover` was answered `"recovered":true`.
    pub(crate) recoveries: AtomicU64,
    /// Subscribes whose `recover` was answered `"recovered":false`.
    pub(crate) failed_recoveries: AtomicU64,
    /// Messages replayed by recoveries.
    pub(crate) replayed: AtomicU64,
    /// Messages sent as snapshots.
    pub(crate) snapshots: AtomicU64,
}

impl Counters {
    /// Counts a close the server decided, by its code.
    pub(crate) fn closed_with(&self, code: u16) {
        let counter = match code {
            close::SLOW_CONSUMER => &self.slow_consumers,
            close::HEARTBEAT_TIMEOUT => &self.heartbeat_timeouts,
            close::TOO_BIG => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                &self.oversize
            }
            close::PROTOCOL_ERROR | close::INVALID_DATA | close::POLICY => &self.errors,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl HubShared {
    pub(crate) fn new(
        config: WebSocketServiceConfig,
        access: Access,
        queue: Option<MessageQueue>,
    ) -> Self {
        // The sweep samples the rate window `sent`, which wants a sample every TICK.
        let liveness = Liveness::new(&config, TICK);
        HubShared {
            config,
            access,
            queue,
            stopping: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            started: Instant::now(),
            epoch: super::history::new_epoch().into(),
            liveness,
            next_client: AtomicU64::new(1),
            counters: Counters::default(),
            exposure_checked: AtomicBool::new(false),
            socket_warning: AtomicBool::new(false),
        }
    }

    /// Milliseconds since the service started: the clock of [`SessionLink`].
    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A connection slot, unless `max_connections` are taken.
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.config.max_connections;
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(ConnectionSlot(self.clone()))
    }

    /// A new session key and its client id (`c-1`, `c-2`…).
    pub(crate) fn next_client(&self) -> (u64, Arc<str>) {
        let key = self.next_client.fetch_add(1, Ordering::Relaxed);
        (key, format!("c-{key}").into())
    }
}

/// One of `max_connections`, held by a session; given back when dropped.
pub(crate) struct ConnectionSlot(Arc<HubShared>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(max_connections: usize) -> Arc<HubShared> {
        let config = WebSocketServiceConfig {
            max_connections,
            ..WebSocketServiceConfig::default()
        };
        Arc::new(HubShared::new(config, Access::default(), None))
    }

    #[test]
    fn connection_slots_are_bounded_and_come_back() {
        let shared = shared(2);
        let a = shared.reserve().expect("a first slot");
        let b = shared.reserve().expect("a second slot");
        assert!(shared.reserve().is_none(), "max_connections = 2");
        drop(a);
        assert_eq!(shared.active.load(Ordering::Acquire), 1);
        let c = shared.reserve().expect("the slot given back");
        drop((b, c));
        assert_eq!(shared.active.load(Ordering::Acquire), 0);
    }

    #[test]
    fn client_ids_are_unique_and_named_after_their_key() {
        let shared = shared(1);
        let (k1, id1) = shared.next_client();
        let (k2, id2) = shared.next_client();
        assert_eq!((k1, &*id1, k2, &*id2), (1, "c-1", 2, "c-2"));
    }

    #[test]
    fn closes_are_counted_by_code() {
        let counters = Counters::default();
        for code in [
            close::SLOW_CONSUMER,
            close::HEARTBEAT_TIMEOUT,
            close::TOO_BIG,
            close::PROTOCOL_ERROR,
            close::INVALID_DATA,
            1000,
        ] {
            counters.closed_with(code);
        }
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(
            (
                get(&counters.slow_consumers),
                get(&counters.heartbeat_timeouts),
                get(&counters.oversize),
                get(&counters.errors),
            ),
            (1, 1, 1, 3)
        );
    }
}
