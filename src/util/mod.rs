//! Small utilities every layer uses, and that use nothing of the crate: the leaf of the
//! module graph (see the README's "Layout").
//!
//! | module | what |
//! |---|---|
//! | `clock` | wall-clock time for item timestamps, read from the time-stamp counter, and its RFC 3339 form |
//! | `counter` | a counter many threads add to without sharing a cache line |
//! | `id` | process-unique ids of events and messages |
//! | [`latency`] | latency percentiles ([`LatencySummary`]) from an HDR histogram |
//! | `random` | a fast, unseeded random number for jitter (not for anything secret) |
//! | `rate` | a counter's rate over a sliding window |
//!
//! ```
//! use hdrhistogram::Histogram;
//! use tickwire::LatencySummary;
//!
//! let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 2).unwrap();
//! for us in 1..=100 {
//!     h.record(us).unwrap();
//! }
//! let summary = LatencySummary::of(&h);
//! assert_eq!((summary.count, summary.p50, summary.max), (100, 50, 100));
//! ```

pub(crate) mod clock;
pub(crate) mod counter;
pub(crate) mod id;
pub mod latency;
pub(crate) mod random;
pub(crate) mod rate;

pub use latency::LatencySummary;
