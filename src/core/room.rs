//! Waiting for room: how a publisher that found a bound full waits without polling.
//!
//! A [`Room`] pairs a tokio [`Notify`] with a count of waiters, so the side that frees
//! space pays for a notification only when somebody waits. A waiter registers (enables
//! its `Notified`) *before* it checks the bound again, so a release between its failed
//! attempt and its wait is never missed. Used by each mailbox and by the MessageQueue's
//! queue-wide bound ([`SharedBound`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam::utils::CachePadded;
use tokio::sync::Notify;

/// Waiters for room under one bound.
#[derive(Debug, Default)]
pub(crate) struct Room {
    notify: Notify,
    waiters: AtomicUsize,
}

impl Room {
    /// Wakes every waiter, if there is one.
    pub(crate) fn wake(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Wakes every waiter, and anyone waiting in [`until`](Self::until).
    pub(crate) fn wake_all(&self) {
        self.notify.notify_waiters();
    }

    /// Returns once `ready()` is true, or after a wake (spurious returns are possible: the
    /// caller retries its reservation).
    pub(crate) async fn wait(&self, ready: impl Fn() -> bool) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.waiters);
        if !ready() {
            notified.await;
        }
    }

    /// Returns once `done()` is true, checking after every wake.
    pub(crate) async fn until(&self, done: impl Fn() -> bool) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done() {
                return;
            }
            notified.await;
        }
    }
}

/// The hysteresis point of a bound: waiters are woken once the count falls to it, so a
/// publisher that outpaces its consumers is woken per batch, not per item.
pub(crate) fn low_water(capacity: usize) -> usize {
    capacity - (capacity / 4).max(1)
}

/// A bound shared by every mailbox of a component: the MessageQueue's `max_size`.
#[derive(Debug)]
pub(crate) struct SharedBound {
    count: CachePadded<AtomicUsize>,
    capacity: usize,
    low_water: usize,
    pub(crate) room: Room,
}

impl SharedBound {
    pub(crate) fn new(capacity: usize) -> Self {
        SharedBound {
            count: CachePadded::new(AtomicUsize::new(0)),
            capacity,
            low_water: low_water(capacity),
            room: Room::default(),
        }
    }

    /// Items counted against the bound.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// How many slots items of `priority` may fill: all, except for LOW which leaves
    /// the headroom to more urgent items (`fifo`: none, every priority is equal).
    pub(crate) fn limit(&self, priority: crate::Priority, fifo: bool) -> usize {
        if priority == crate::Priority::Low && !fifo {
            self.capacity - super::mailbox::headroom(self.capacity)
        } else {
            self.capacity
        }
    }

    /// Takes `n` slots within `limit` (see [`limit`](Self::limit)), or none.
    pub(crate) fn reserve(&self, n: usize, limit: usize) -> bool {
        self.count
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |c| {
                (c + n <= limit).then_some(c + n)
            })
            .is_ok()
    }

    /// Gives back `n` slots. `rollback`: slots that were never used, wake waiters at once.
    pub(crate) fn release(&self, n: usize, rollback: bool) {
        let after = self.count.fetch_sub(n, Ordering::SeqCst) - n;
        if rollback || after <= self.low_water {
            self.room.wake();
        }
    }

    /// Waits until `n` slots may be free within `limit`.
    pub(crate) async fn wait_for_room(&self, n: usize, limit: usize) {
        self.room
            .wait(|| self.count.load(Ordering::SeqCst) + n <= limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn shared_bound_reserves_all_or_nothing_and_wakes_waiters() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let bound = Arc::new(SharedBound::new(4));
            assert!(bound.reserve(3, 4));
            assert!(!bound.reserve(2, 4), "3 + 2 > 4: nothing taken");
            assert_eq!(bound.len(), 3);
            assert!(bound.reserve(1, 4));
            let waiter = tokio::spawn({
                let bound = bound.clone();
                async move { bound.wait_for_room(2, 4).await }
            });
            while bound.room.waiters.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
            bound.release(2, false); // 2 ≤ low water 3: waiters are woken
            tokio::time::timeout(std::time::Duration::from_secs(60), waiter)
                .await
                .expect("woken")
                .unwrap();
            assert_eq!(bound.len(), 2);
        });
    }
}
