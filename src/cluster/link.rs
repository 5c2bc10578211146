//! A component's side of the cluster: the [`Tap`] that claims the clustered names, counts
//! what waits for NATS, and hands items and group changes to the cluster's tasks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use crate::core::tap::Tap;
use crate::item::{Item, Kind};
use crate::Pattern;

/// The cluster's counters (see [`ClusterMetrics`](super::ClusterMetrics)).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Items accepted for NATS and not yet handed to the client.
    pub(crate) buffered: AtomicUsize,
    pub(crate) published: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) inbound_dropped: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) slow_consumer: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) resent: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) refused_back: AtomicU64,
    /// Durable messages in hand on this node: delivered, not yet acknowledged or refused.
    pub(crate) handling: AtomicUsize,
    /// Notified when `handling` comes down to zero.
    pub(crate) handled: tokio::sync::Notify,
    /// Durable consumers a group needs that could not be made yet.
    pub(crate) missing_consumers: AtomicUsize,
    /// Notified when `buffered` comes down to zero.
    pub(crate) drained: tokio::sync::Notify,
    /// Bumped on every connection and disconnection the groups' connection reports:
    /// the pump probes it again before its next publish (see `tasks::pump`).
    pub(crate) groups_epoch: AtomicU64,
    /// Notified on every connection and disconnection of either connection.
    pub(crate) link_changed: tokio::sync::Notify,
}

impl Counts {
    /// One item less waits for NATS.
    pub(crate) fn unbuffer(&self) {
        release(&self.buffered, &self.drained);
    }

    /// One durable message less in hand.
    pub(crate) fn handled_one(&self) {
        release(&self.handling, &self.handled);
    }

    /// Waits until `ready()` holds, or `deadline` (if any) passes: woken by every
    /// connection and disconnection either connection reports, and looking again every
    /// [`RECHECK`] without news (the client drops the events its queue has no room for).
    pub(crate) async fn until_link(
        &self,
        deadline: Option<tokio::time::Instant>,
        ready: impl Fn() -> bool,
    ) {
        loop {
            let news = self.link_changed.notified();
            let now = tokio::time::Instant::now();
            if ready() || deadline.is_some_and(|deadline| now >= deadline) {
                return;
            }
            let look_again = deadline.map_or(now + RECHECK, |d| d.min(now + RECHECK));
            let _ = tokio::time::timeout_at(look_again, news).await;
        }
    }
}

/// How often [`Counts::until_link`] looks at the connections' state without news.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Counts one down, notifying `zero` when that makes it 0.
fn release(count: &AtomicUsize, zero: &tokio::sync::Notify) {
    if count.fetch_sub(1, Ordering::AcqRel) == 1 {
        zero.notify_waiters();
    }
}

/// A change the registry reports, for the cluster's control task.
#[derive(Debug)]
pub(crate) enum Control {
    /// A consumer group exists now: subscribe its NATS queue group.
    GroupOpened { pattern: Box<str>, name: Box<str> },
    /// A consumer group is gone: unsubscribe.
    GroupClosed { pattern: Box<str>, name: Box<str> },
    /// Answer once every change before it is registered with the NATS server (or why
    /// the server could not be reached).
    Sync(tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// The tap a cluster attaches to one component.
pub(crate) struct Link<K: Kind> {
    patterns: Vec<Pattern>,
    /// Cleared when the cluster closes: the component is local again.
    open: Arc<AtomicBool>,
    counts: Arc<Counts>,
    max_buffered: usize,
    outbound: UnboundedSender<Item<K>>,
    control: Option<UnboundedSender<Control>>,
}

impl<K: Kind> Link<K> {
    pub(crate) fn new(
        patterns: Vec<Pattern>,
        open: Arc<AtomicBool>,
        counts: Arc<Counts>,
        max_buffered: usize,
        outbound: UnboundedSender<Item<K>>,
        control: Option<UnboundedSender<Control>>,
    ) -> Self {
        Link {
            patterns,
            open,
            counts,
            max_buffered,
            outbound,
            control,
        }
    }

    fn control(&self, change: Control) {
        if let Some(control) = &self.control {
            // Gone only once the cluster closed: nothing to subscribe then.
            let _ = control.send(change);
        }
    }
}

impl<K: Kind> Tap<Item<K>> for Link<K> {
    #[inline]
    fn claims(&self, route: &str) -> bool {
        self.open.load(Ordering::Acquire) && self.patterns.iter().any(|p| p.matches(route))
    }

    fn reserve(&self) -> bool {
        let taken = self
            .counts
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_buffered).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    fn cancel(&self) {
        self.counts.unbuffer();
    }

    fn send(&self, item: Item<K>) {
        if self.outbound.send(item).is_err() {
            // The cluster closed between the claim and now: nothing will send it.
            self.counts.unbuffer();
            self.counts.publish_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn group_opened(&self, pattern: &str, name: &str) {
        self.control(Control::GroupOpened {
            pattern: pattern.into(),
            name: name.into(),
        });
    }

    fn group_closed(&self, pattern: &str, name: &str) {
        self.control(Control::GroupClosed {
            pattern: pattern.into(),
            name: name.into(),
        });
    }
}
