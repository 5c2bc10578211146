//! Synchronous dispatch (`enable_async_processing = false`): a publisher that waits until
//! every matching subscription has finished with its item.
//!
//! The publisher makes one [`Completion`] per item, counting the subscriptions that
//! accepted it, and each delivery carries a [`CompletionGuard`] in its envelope. The guard
//! counts down when it is dropped, which happens however the delivery ends: after the
//! handler ran, after the item became a dead letter, or when the item is discarded
//! (unsubscribe, a drop policy, a stop that gave up). So a waiting publisher is always
//! released, and never before its item is done everywhere.
//!
//! A delivery that ended with the handler's success or as a dead letter is *settled*
//! ([`CompletionGuard::settle`]); one discarded unhandled is not, and the completion
//! counts it ([`Completion::discarded`]): a cluster's durable topic acknowledges an item
//! to JetStream only when none was discarded, and has it redelivered otherwise.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts down the subscriptions that still have to finish with one published item, and
/// wakes the publisher that waits for that (`enable_async_processing = false`).
#[derive(Debug)]
pub(crate) struct Completion {
    /// Guards not yet dropped. Invariant: it only decreases, and `done` is notified when
    /// it reaches 0.
    remaining: AtomicUsize,
    /// Guards dropped without being settled.
    discarded: AtomicUsize,
    done: Notify,
}

impl Completion {
    /// A completion that `count` guards will count down.
    pub(crate) fn new(count: usize) -> Arc<Completion> {
        Arc::new(Completion {
            remaining: AtomicUsize::new(count),
            discarded: AtomicUsize::new(0),
            done: Notify::new(),
        })
    }

    /// Waits until every subscription has finished with the item.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.remaining.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// How many of the deliveries were discarded unhandled (neither handled nor a dead
    /// letter). Final once [`wait`](Self::wait) returned.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn discarded(&self) -> usize {
        self.discarded.load(Ordering::Acquire)
    }

    /// Guards not yet dropped (tests).
    #[cfg(test)]
    pub(crate) fn remaining(&self) -> usize {
        self.remaining.load(Ordering::SeqCst)
    }
}

/// Signals one subscription's part of a [`Completion`] when dropped: after the handler ran,
/// or when the item is discarded. So a waiting publisher is released whatever happens.
#[derive(Debug, Default)]
pub(crate) struct CompletionGuard {
    completion: Option<Arc<Completion>>,
    settled: bool,
}

impl CompletionGuard {
    /// A guard of `completion`; none (it signals nothing) for an asynchronous publish.
    pub(crate) fn new(completion: Option<&Arc<Completion>>) -> Self {
        CompletionGuard {
            completion: completion.cloned(),
            settled: false,
        }
    }

    /// The delivery is settled: handled, or a dead letter. Dropped without this, it
    /// counts as discarded.
    pub(crate) fn settle(&mut self) {
        self.settled = true;
    }

    /// Whether a publisher waits for this delivery.
    pub(crate) fn is_armed(&self) -> bool {
        self.completion.is_some()
    }
}

impl Drop for CompletionGuard {
    fn drop(&mut self) {
        if let Some(c) = self.completion.take() {
            if !self.settled {
                c.discarded.fetch_add(1, Ordering::Relaxed);
            }
            if c.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                c.done.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_counts_down_on_drop() {
        let c = Completion::new(2);
        let a = CompletionGuard::new(Some(&c));
        let b = CompletionGuard::new(Some(&c));
        drop(a);
        assert_eq!(c.remaining(), 1);
        drop(b);
        assert_eq!(c.remaining(), 0);
    }

    #[test]
    fn a_guard_dropped_unsettled_counts_as_discarded() {
        let c = Completion::new(3);
        let mut handled = CompletionGuard::new(Some(&c));
        let mut dead = CompletionGuard::new(Some(&c));
        let lost = CompletionGuard::new(Some(&c));
        handled.settle();
        dead.settle();
        drop((handled, dead));
        assert_eq!(c.discarded(), 0);
        drop(lost);
        assert_eq!((c.remaining(), c.discarded()), (0, 1));
    }
}
