//! Supervision policy: retries with backoff, restarts, dead letters, overflow, counters.
//!
//! ## Retries
//!
//! A delivery fails when the handler returns `Err`, runs longer than its timeout, or
//! panics. A failed delivery is retried in place, up to
//! [`max_retries`](crate::HandlerConfig::max_retries) times, when
//! [`retry_on_error`](crate::HandlerConfig::retry_on_error) is on and the component's
//! `enable_retry` is true. Retry `n` (1-based) waits
//! `min(retry_delay × 2^(n−1), max(MAX_RETRY_DELAY, retry_delay))` plus up to 25 %
//! random jitter (so that
//! many subscriptions failing together do not retry in lock-step).
//!
//! ## Ordering under retries
//!
//! Retries happen in place: the subscription's later items wait until the item being
//! retried succeeds or becomes a dead letter. A retry never lets a later item overtake.
//!
//! ## Restarts
//!
//! A handler that panics is caught. The panic is a failure of that delivery, and the
//! handler actor is stopped and restarted by its actix `Supervisor` (the actor keeps its
//! address and its mailbox). It resumes after a restart backoff of
//! `restart_delay × 2^(k−1)` for the `k`-th restart in a row
//! ([`HandlerConfig::restart_delay`](crate::HandlerConfig::restart_delay), default
//! [`RESTART_BACKOFF`]; capped at [`MAX_RESTART_BACKOFF`] or at `restart_delay` if that
//! is longer; `k` resets when an item is handled or becomes a dead letter),
//! then retries the item that panicked, as for any failure. The worker thread and every
//! other handler keep running. There is no restart cap: a handler that panics on every
//! item restarts once per attempt of each item (`max_retries + 1` times per item, with
//! the growing backoff and the retry delays between them), and each such item ends as a
//! dead letter. The panics of an app's own actor (`subscribe_recipient`) are the app's
//! to supervise: tickwire sees its failure to answer as an error of that delivery.
//!
//! ## Dead letters
//!
//! An item whose last attempt failed is a dead letter: it is counted, logged at `error`
//! level, kept in a bounded store (`dead_letters()`, the latest `max_dead_letters`), then
//! the [`error_handler`](crate::HandlerConfig::error_handler) is called once with its
//! [`HandlerFailure`] (so the store holds it already), and it is published on
//! `$dlq.<original name>` (same priority) to whoever subscribed to it. Failures of
//! `$dlq.` items themselves are stored and counted but not published again. The
//! `$dlq.<name>` event is published with `try_publish`: if a matching subscription is
//! full at that moment, it is not published (a warning is logged); the dead letter is
//! still in the store and counted. Dead letters made while `stop()` drains are not
//! published (nothing is accepted any more); they are stored and counted.
//!
//! ## Accounting
//!
//! Every accepted delivery (one per matching subscription of an accepted publish) ends
//! exactly once: handled (`processed`), dead-lettered (`dead_letters`), or discarded
//! unhandled (`dropped`): by a drop [`OverflowPolicy`], by `unsubscribe` (what was queued
//! for the subscription, and an item it held for a retry or across a restart; the item
//! in hand is finished first), or by a `stop` whose drain timed out. So once a component
//! is quiet (after `stop()`, or with nothing queued or running), `processed +
//! dead_letters + dropped` is what was accepted, and `queued` is 0 after `stop()`.
//!
//! A `stop` that times out gives up: what is still queued is discarded, a retry delay or
//! restart backoff is cut short, and a handler run in progress is dropped (its future is
//! no longer polled; a sync handler's thread or an app's actor cannot be interrupted, and
//! its late result is ignored). It waits up to [`STOP_GRACE`] more for the handler actors
//! to let go; an async handler that blocks its worker thread past that is counted when
//! the thread lets go of it (and so are, then, up to [`BATCH`](crate::core::BATCH) items
//! its subscription handled just before: a drain adds its `processed` count to the
//! totals per batch, before any wait, and when it ends).
//!
//! ## Timeouts
//!
//! The timer of a run starts when the handler first yields (its future returns
//! `Pending`). A handler that blocks in its synchronous part, or in its first poll, is
//! not interrupted: blocking work belongs in a sync handler (`subscribe_sync`), whose run
//! is timed from the start.
//!
//! ```
//! use std::time::Duration;
//! use serde_json::json;
//! use tickwire::{create_handler_config, Event, EventBus, EventBusConfig};
//!
//! # actix_rt::System::new().block_on(async {
//! let bus = EventBus::start(EventBusConfig::default()).unwrap();
//! let config = create_handler_config("order_router")
//!     .max_retries(2)
//!     .retry_delay(Duration::from_millis(1))
//!     .timeout(Duration::from_secs(2));
//! bus.subscribe_with("orders.new", config, |_| async { Err("exchange rejected".into()) })
//!     .await
//!     .unwrap();
//! bus.publish(Event::new("orders.new", json!({"qty": 5}))).await.unwrap();
//! bus.stop().await; // retries happen before stop returns
//!
//! let dead = bus.dead_letters().await;
//! assert_eq!(dead.len(), 1);
//! assert_eq!((dead[0].attempts, dead[0].error.as_str()), (3, "exchange rejected"));
//! let stats = bus.delivery_stats();
//! assert_eq!((stats.errors, stats.retries, stats.dead_letters), (3, 2, 1));
//! # });
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::item::{DeadLetter, Delivered, HandlerFailure, DEAD_LETTER_PREFIX};

/// The longest wait between two retries (before jitter is added).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Wait before a restarted handler actor resumes, for the first restart in a row.
pub const RESTART_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait before a restarted handler actor resumes.
pub const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(5);
/// How long a `stop` whose drain timed out waits for the handler actors to give up what
/// they hold (see `## Accounting`).
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// The delay before retry `retry` (1-based) of an item: exponential from `first`, capped
/// at [`MAX_RETRY_DELAY`] (or `first` if that is longer), plus up to 25 % jitter.
pub fn retry_delay(first: Duration, retry: u32) -> Duration {
    let exponent = retry.saturating_sub(1).min(31);
    let base = first
        .saturating_mul(1u32 << exponent)
        .min(MAX_RETRY_DELAY.max(first));
    let jitter = base.mul_f64(0.25 * crate::util::random::f64());
    base.saturating_add(jitter)
}

/// The wait before resuming after the `k`-th restart in a row (1-based), with the default
/// first delay [`RESTART_BACKOFF`].
pub fn restart_backoff(k: u32) -> Duration {
    restart_delay(RESTART_BACKOFF, k)
}

/// The wait before resuming after the `k`-th restart in a row (1-based): exponential from
/// `first` ([`HandlerConfig::restart_delay`](crate::HandlerConfig::restart_delay)),
/// capped at [`MAX_RESTART_BACKOFF`] (or `first` if that is longer).
pub fn restart_delay(first: Duration, k: u32) -> Duration {
    let exponent = k.saturating_sub(1).min(31);
    first
        .saturating_mul(1u32 << exponent)
        .min(MAX_RESTART_BACKOFF.max(first))
}

/// What a subscription does when its mailbox is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Publishers wait for room (`publish`) or get `QueueFull` back (`try_publish`);
    /// nothing is dropped. A publish is all-or-nothing across the `Block` subscriptions.
    #[default]
    Block,
    /// Make room by discarding the oldest waiting item of the lowest non-empty priority
    /// lane. The publisher never waits for this subscription.
    DropOldest,
    /// Discard the new item for this subscription only. The publisher never waits for
    /// this subscription.
    DropNewest,
}

/// Delivery counters of a component (all subscriptions, including removed ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DeliveryStats {
    /// Deliveries accepted: one per matching subscription of each accepted publish
    /// (those of drop-policy subscriptions included, even when they dropped it). Once the
    /// component is quiet, `processed + dead_letters + dropped` equals it.
    pub accepted: u64,
    /// Deliveries whose handler succeeded.
    pub processed: u64,
    /// Failed attempts (errors, timeouts and panics), retried or not.
    pub errors: u64,
    /// Retries started.
    pub retries: u64,
    /// Items whose last attempt failed.
    pub dead_letters: u64,
    /// Accepted items discarded unhandled: by a `DropOldest` or `DropNewest`
    /// subscription, by `unsubscribe` (what was queued for it, and an item it held for a
    /// retry or across a restart), or by a `stop` whose drain timed out (see
    /// `## Accounting` in [`supervision`](crate::core::supervision)).
    pub dropped: u64,
    /// Handler actor restarts after a panic.
    pub restarts: u64,
    /// Items queued and not yet taken by a handler.
    pub queued: u64,
}

/// Per-subscription counters, written by its handler actors; summed on demand. (What is
/// dropped is counted component-wide, since publishers count it too.)
#[derive(Debug, Default)]
pub(crate) struct SubStats {
    pub(crate) processed: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
    pub(crate) restarts: AtomicU64,
    /// Metrics only: handler runs in progress, runs finished, their total time.
    pub(crate) active: AtomicU64,
    pub(crate) runs: AtomicU64,
    pub(crate) run_nanos: AtomicU64,
}

impl SubStats {
    /// Adds to a counter (written by the handler actors of a subscription or group).
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DeliveryStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // `accepted` and `dropped` are counted component-wide.
        DeliveryStats {
            processed: get(&self.processed),
            errors: get(&self.errors),
            retries: get(&self.retries),
            dead_letters: get(&self.dead_letters),
            restarts: get(&self.restarts),
            ..DeliveryStats::default()
        }
    }

    /// Adds another subscription's counters (when it is removed).
    pub(crate) fn absorb(&self, other: &SubStats) {
        let s = other.snapshot();
        Self::add(&self.processed, s.processed);
        Self::add(&self.errors, s.errors);
        Self::add(&self.retries, s.retries);
        Self::add(&self.dead_letters, s.dead_letters);
        Self::add(&self.restarts, s.restarts);
        Self::add(&self.runs, other.runs.load(Ordering::Relaxed));
        Self::add(&self.run_nanos, other.run_nanos.load(Ordering::Relaxed));
    }
}

impl std::ops::AddAssign for DeliveryStats {
    fn add_assign(&mut self, o: DeliveryStats) {
        self.accepted += o.accepted;
        self.processed += o.processed;
        self.errors += o.errors;
        self.retries += o.retries;
        self.dead_letters += o.dead_letters;
        self.dropped += o.dropped;
        self.restarts += o.restarts;
        self.queued += o.queued;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_exponentially_with_bounded_jitter_and_cap() {
        let first = Duration::from_millis(100);
        for (retry, base_ms) in [(1, 100), (2, 200), (3, 400), (4, 800)] {
            for _ in 0..50 {
                let d = retry_delay(first, retry);
                let base = Duration::from_millis(base_ms);
                assert!(d >= base && d <= base.mul_f64(1.25), "retry {retry}: {d:?}");
            }
        }
        let d = retry_delay(first, 40);
        assert!(
            d >= MAX_RETRY_DELAY && d <= MAX_RETRY_DELAY.mul_f64(1.25),
            "{d:?}"
        );
        // A first delay above the cap is kept.
        let long = Duration::from_secs(60);
        assert!(retry_delay(long, 3) >= long);
        // "Never" does not overflow.
        assert_eq!(retry_delay(Duration::MAX, 5), Duration::MAX);
    }

    #[test]
    fn restart_backoff_doubles_and_caps() {
        assert_eq!(restart_backoff(1), Duration::from_millis(10));
        assert_eq!(restart_backoff(2), Duration::from_millis(20));
        assert_eq!(restart_backoff(4), Duration::from_millis(80));
        assert_eq!(restart_backoff(30), MAX_RESTART_BACKOFF);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            restart_delay(hour, 1),
            hour,
            "a first delay above the cap is kept"
        );
        assert_eq!(restart_delay(hour, 4), hour);
        assert_eq!(
            restart_delay(Duration::from_millis(1), 2),
            Duration::from_millis(2)
        );
    }
}
