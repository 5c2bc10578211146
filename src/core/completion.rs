//! Synchronous dispatch (`enable_async_processing = false`): a publisher that waits until
//! every matching subscription has finished with its item.
//!
//! The publisher makes one [`Completion`] per item, counting the subscriptions that
//! accepted it, and each delivery carries a [`CompletionGuard`] in its envelope. The guard
//! counts down when it is dropped, which happens however the delivery ends: after the
//! handler ran, after the item became a dead letter, or when the item is discarded
//! (unsubscribe, a drop policy, a stop that gave up). So a waiting publisher is always
//! released, and never before its item is done everywhere.

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
    done: Notify,
}

impl Completion {
    /// A completion that `count` guards will count down.
    pub(crate) fn new(count: usize) -> Arc<Completion> {
        Arc::new(Completion {
            remaining: AtomicUsize::new(count),
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

    /// Guards not yet dropped (tests).
    #[cfg(test)]
    pub(crate) fn remaining(&self) -> usize {
        self.remaining.load(Ordering::SeqCst)
    }
}

/// Signals one subscription's part of a [`Completion`] when dropped: after the handler ran,
/// or when the item is discarded. So a waiting publisher is released whatever happens.
#[derive(Debug, Default)]
pub(crate) struct CompletionGuard(Option<Arc<Completion>>);

impl CompletionGuard {
    /// A guard of `completion`; none (it signals nothing) for an asynchronous publish.
    pub(crate) fn new(completion: Option<&Arc<Completion>>) -> Self {
        CompletionGuard(completion.cloned())
    }

    /// Whether a publisher waits for this delivery.
    pub(crate) fn is_armed(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for CompletionGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
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
}
