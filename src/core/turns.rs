//! The priority rule of a mailbox's consumer: which lane the next item comes from.
//!
//! ## Priority
//!
//! [`LaneTurns::take`] takes from the highest non-empty lane. **Anti-starvation rule:**
//! each time an item is taken from a higher lane while a lower lane is non-empty, that
//! lower lane is "passed over"; once a lane has been passed over [`STARVATION_LIMIT`]
//! times in a row, the next item is taken from it (the highest such lane first). So under
//! a steady CRITICAL flood a waiting lower lane is served at the latest by the
//! `STARVATION_LIMIT + 3`-th pop (the 35th): by the `STARVATION_LIMIT + 1`-th (33rd) when
//! it is the only lane passed over, and two pops later when all three lower lanes wait,
//! as the two above it each take their turn first (HIGH at the 33rd, NORMAL at the 34th,
//! LOW at the 35th, and again every 35 pops). A CRITICAL item that arrives behind any
//! number of LOW ones is taken next.
//!
//! The state is the consumer's own (plain memory, kept across drains by the handler
//! actor); the lanes are the mailbox's. In FIFO mode the mailbox has one lane in use and
//! does not consult the rule.

/// Consecutive pops a non-empty lower lane may be passed over before it is served.
pub const STARVATION_LIMIT: u32 = 32;

/// Consumer-side state of the anti-starvation rule.
#[derive(Debug, Default)]
pub(crate) struct LaneTurns {
    /// Per lane (LOW = 0 … CRITICAL = 3): pops in a row that passed over it while it was
    /// non-empty. Invariant: at most `STARVATION_LIMIT` for a lane that is not served next.
    passed: [u32; 4],
}

impl LaneTurns {
    /// Takes the next item by the rule from four lanes (`pop(lane)`, `is_empty(lane)`,
    /// lane 0 the lowest), and counts the lanes it passed over. `None`: every lane was
    /// empty.
    #[inline]
    pub(crate) fn take<E>(
        &mut self,
        pop: impl Fn(usize) -> Option<E>,
        is_empty: impl Fn(usize) -> bool,
    ) -> Option<E> {
        let (lane, item) = self.pick(&pop)?;
        for lower in 0..lane {
            if is_empty(lower) {
                self.passed[lower] = 0;
            } else {
                self.passed[lower] += 1;
            }
        }
        self.passed[lane] = 0;
        Some(item)
    }

    /// A starving lane first (the highest), else the highest non-empty one.
    #[inline]
    fn pick<E>(&mut self, pop: &impl Fn(usize) -> Option<E>) -> Option<(usize, E)> {
        for lane in (0..3).rev() {
            if self.passed[lane] >= STARVATION_LIMIT {
                self.passed[lane] = 0;
                if let Some(e) = pop(lane) {
                    return Some((lane, e));
                }
            }
        }
        (0..4).rev().find_map(|lane| pop(lane).map(|e| (lane, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mailbox::tests::put;
    use crate::core::mailbox::PriorityMailbox;
    use crate::Priority;

    #[test]
    fn low_lane_is_served_under_a_critical_flood() {
        let mb = PriorityMailbox::new(10_000, false);
        for n in 0..10 {
            put(&mb, 1000 + n, Priority::Low);
        }
        let mut turns = LaneTurns::default();
        let mut low_seen_at = Vec::new();
        for step in 0..400u32 {
            // keep the critical lane non-empty at all times
            put(&mb, step, Priority::Critical);
            put(&mb, step, Priority::Critical);
            let e = mb.pop(&mut turns).unwrap();
            if e.item >= 1000 {
                low_seen_at.push(step);
            }
        }
        assert_eq!(
            low_seen_at.len(),
            10,
            "every LOW item served: {low_seen_at:?}"
        );
        for w in low_seen_at.windows(2) {
            assert_eq!(w[1] - w[0], STARVATION_LIMIT + 1, "{low_seen_at:?}");
        }
    }

    #[test]
    fn three_starving_lanes_are_served_by_the_35th_pop() {
        let mb = PriorityMailbox::new(100_000, false);
        for n in 0..10 {
            put(&mb, 1000 + n, Priority::High);
            put(&mb, 2000 + n, Priority::Normal);
            put(&mb, 3000 + n, Priority::Low);
        }
        let mut turns = LaneTurns::default();
        let mut served: [Vec<u32>; 3] = Default::default();
        for pop in 1..=200u32 {
            put(&mb, pop, Priority::Critical); // the CRITICAL lane is never empty
            let item = mb.pop(&mut turns).unwrap().item;
            if item >= 1000 {
                served[(item / 1000 - 1) as usize].push(pop);
            }
        }
        let limit = STARVATION_LIMIT;
        let every = |first: u32| (0..5).map(|k| first + k * (limit + 3)).collect::<Vec<_>>();
        assert_eq!(served[0][..5], every(limit + 1), "HIGH");
        assert_eq!(served[1][..5], every(limit + 2), "NORMAL");
        assert_eq!(served[2][..5], every(limit + 3), "LOW, at the 35th pop");
    }
}
