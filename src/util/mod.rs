//! Small utilities every layer uses, and that use nothing of the crate: the leaf of the
//! module graph (see the README's "Layout").
//!
//! | module | what |
//! |---|---|
//! | `clock` | wall-clock time for item timestamps, read from the time-stamp counter, and its RFC 3339 form |
//! | `counter` | a counter many threads add to without sharing a cache line |
//! | `id` | process-unique ids of events and messages |
//! | `latency` | latency percentiles ([`LatencySummary`]) from an HDR histogram |
//! | `random` | fast random numbers for jitter and the demo (per thread, seeded at random; not for secrets) |
//! | `rate` | a counter's rate over a sliding window |

pub(crate) mod clock;
pub(crate) mod counter;
pub(crate) mod id;
pub(crate) mod latency;
pub(crate) mod random;
pub(crate) mod rate;

pub use latency::LatencySummary;
