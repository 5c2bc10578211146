//! A mailbox for the criterion benches (`benches/core.rs`), not part of the API: it runs
//! the reserve → push → pop cycle of a delivery on one thread, without a handler or a
//! wake.

use super::completion::CompletionGuard;
use super::depths::DepthGuard;
use super::mailbox::{Envelope, PriorityMailbox};
use super::turns::LaneTurns;
use crate::Priority;

/// A mailbox for the criterion benches (`benches/core.rs`), not part of the API: it runs
/// the reserve → push → pop cycle of a delivery on one thread, without a handler.
#[doc(hidden)]
#[derive(Debug)]
pub struct BenchMailbox {
    mailbox: PriorityMailbox<u64>,
    turns: LaneTurns,
}

impl BenchMailbox {
    /// A four-lane mailbox of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        BenchMailbox {
            mailbox: PriorityMailbox::with_shared_bound(capacity, false, None),
            turns: LaneTurns::default(),
        }
    }

    /// Reserves and pushes `n` items (priorities cycling LOW → CRITICAL), then pops them
    /// all by the priority rule. Returns the sum of what was popped.
    pub fn push_pop(&mut self, n: u64) -> u64 {
        for i in 0..n {
            let priority = Priority::ALL[(i % 4) as usize];
            if self.mailbox.reserve(Priority::Critical).is_err() {
                break;
            }
            let envelope = Envelope {
                item: i,
                queued_at: None,
                depth: DepthGuard::default(),
                completion: CompletionGuard::default(),
            };
            self.mailbox.push_reserved(envelope, priority);
        }
        std::iter::from_fn(|| self.mailbox.pop(&mut self.turns))
            .map(|e| e.item)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_mailbox_returns_every_item() {
        let mut mb = BenchMailbox::new(64);
        assert_eq!(mb.push_pop(10), 45);
        assert_eq!(
            mb.push_pop(100),
            (0..64).sum::<u64>(),
            "at most the capacity"
        );
    }
}
