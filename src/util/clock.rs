//! Wall-clock time for item timestamps, read cheaply, and its RFC 3339 form.
//!
//! Every event and message records when it was made, and reading the system clock costs
//! more than the rest of making a typed event (about 30 ns here, where the time-stamp
//! counter costs 10). So [`now`] reads the counter (through `quanta`) and adds the time
//! since an anchor taken from the system clock, which it takes again every
//! [`REANCHOR`]: a timestamp is off by at most the counter's drift over one period (parts
//! per million: nanoseconds), and follows adjustments of the system clock within one
//! period. Like `SystemTime`, it is not monotonic (an adjustment, or a new anchor, may
//! step back).
//!
//! ```text
//! anchor: (wall, counter) ── seqlock ──► readers: wall + (counter now − counter then)
//! ```

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats a time as RFC 3339 in UTC with microseconds (`2026-11-27T01:02:03.456789Z`).
pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

/// How long one anchor is used.
pub(crate) const REANCHOR: Duration = Duration::from_millis(100);

/// The anchor, behind a sequence lock: odd while it is being replaced.
struct Anchor {
    seq: AtomicU64,
    /// Nanoseconds since the Unix epoch.
    wall: AtomicU64,
    /// The counter's raw value at the same moment.
    raw: AtomicU64,
}

static ANCHOR: Anchor = Anchor {
    seq: AtomicU64::new(0),
    wall: AtomicU64::new(0),
    raw: AtomicU64::new(0),
};

fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Calibrates the counter and takes the first anchor (quanta's calibration takes up to
/// a few hundred milliseconds, better spent when a component starts than in a publish).
pub(crate) fn warm_up() {
    let _ = now();
    let _ = quanta::Instant::now();
}

/// The current wall-clock time (see the module docs).
pub(crate) fn now() -> SystemTime {
    let clock = clock();
    let raw = clock.raw();
    let seq = ANCHOR.seq.load(Ordering::Acquire);
    if seq != 0 && seq.is_multiple_of(2) {
        let wall = ANCHOR.wall.load(Ordering::Relaxed);
        let base = ANCHOR.raw.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if ANCHOR.seq.load(Ordering::Relaxed) == seq && raw >= base {
            let elapsed = clock.delta_as_nanos(base, raw);
            if elapsed < REANCHOR.as_nanos() as u64 {
                return UNIX_EPOCH + Duration::from_nanos(wall + elapsed);
            }
        }
    }
    reanchor(clock)
}

/// Reads the system clock, and makes it the anchor unless another thread is doing so.
fn reanchor(clock: &quanta::Clock) -> SystemTime {
    let now = SystemTime::now();
    let raw = clock.raw();
    let Ok(wall) = now.duration_since(UNIX_EPOCH) else {
        return now; // a clock before 1970: no anchor
    };
    let seq = ANCHOR.seq.load(Ordering::Relaxed);
    if seq.is_multiple_of(2)
        && ANCHOR
            .seq
            .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        // Keeps the stores below from being seen before the odd `seq` (the readers'
        // `fence(Acquire)` pairs with it).
        fence(Ordering::Release);
        ANCHOR.wall.store(wall.as_nanos() as u64, Ordering::Relaxed);
        ANCHOR.raw.store(raw, Ordering::Relaxed);
        ANCHOR.seq.store(seq + 2, Ordering::Release);
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_system_clock_across_anchors_and_threads() {
        let threads: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..200_000 {
                        let before = SystemTime::now();
                        let ours = now();
                        let after = SystemTime::now();
                        // Within a millisecond of the system clock read around it.
                        let slack = Duration::from_millis(1);
                        assert!(ours + slack >= before && ours <= after + slack, "{ours:?}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // A new anchor was taken at least once while the loops ran for a while.
        assert!(ANCHOR.seq.load(Ordering::Relaxed) >= 2);
    }
}
