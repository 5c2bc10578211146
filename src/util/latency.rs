//! Latency percentiles, as the metrics and the bench report them.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in microseconds, and how many samples they are over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl LatencySummary {
    /// The percentiles of a histogram of microseconds (all zero when it is empty).
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_histogram_and_of_an_empty_one() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 2).expect("bounds");
        assert_eq!(LatencySummary::of(&h), LatencySummary::default());
        for us in 1..=100 {
            h.record(us).expect("in bounds");
        }
        let s = LatencySummary::of(&h);
        assert_eq!((s.count, s.p50, s.p99, s.max), (100, 50, 99, 100));
    }
}
