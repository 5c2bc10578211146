//! A counter's rate over a sliding window: what `events_per_second` and the WebSocket
//! rates report.
//!
//! The owner samples the counter's total every [`TICK`]; the rate is the growth from the
//! oldest sample within [`RATE_WINDOW`] to the total now, per second of that span (or
//! since the first sample, when the window is younger than [`RATE_WINDOW`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window of rates and latency percentiles.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(10);
/// How often rates are sampled (and the metrics actor rotates its window).
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// A counter's rate over the last [`RATE_WINDOW`] (or since start, if younger), from
/// samples taken every [`TICK`].
#[derive(Debug)]
pub(crate) struct RateWindow {
    /// (when, the counter then), the newest last, none older than `RATE_WINDOW`.
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    pub(crate) fn new(now: Instant) -> Self {
        RateWindow {
            samples: VecDeque::from([(now, 0)]),
        }
    }

    /// Records the counter's value now (call every tick).
    pub(crate) fn sample(&mut self, now: Instant, total: u64) {
        self.samples.push_back((now, total));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Per second, from the oldest sample in the window to `total` now.
    pub(crate) fn rate(&self, now: Instant, total: u64) -> f64 {
        let Some(&(since, then)) = self
            .samples
            .iter()
            .find(|(at, _)| now.duration_since(*at) <= RATE_WINDOW)
        else {
            return 0.0;
        };
        let elapsed = now.duration_since(since).as_secs_f64();
        if elapsed > 0.0 {
            total.saturating_sub(then) as f64 / elapsed
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_the_growth_over_the_window() {
        let start = Instant::now();
        let mut window = RateWindow::new(start);
        for s in 1..=20u64 {
            window.sample(start + Duration::from_secs(s), s * 100);
        }
        // 20 s in: the oldest sample kept is at 10 s (1,000), the total now 2,000.
        let now = start + Duration::from_secs(20);
        assert_eq!(window.rate(now, 2_000), 100.0);
        // Young window: from the start.
        let young = RateWindow::new(start);
        assert_eq!(young.rate(start + Duration::from_secs(2), 50), 25.0);
        assert_eq!(young.rate(start, 50), 0.0);
    }
}
