//! Helpers shared by the integration tests (a directory module: not a test binary).

#![allow(dead_code)]

#[cfg(feature = "cluster")]
pub mod nats;
#[cfg(feature = "websocket")]
pub mod raw;
#[cfg(feature = "websocket")]
pub mod ws;

use std::time::Duration;

/// What a publisher thread does when a queue is full: a few yields, then sleeps from
/// 20 µs doubling to 1 ms, so that a thread that outpaces its consumers does not spin a
/// core the other tests need. [`reset`](Backoff::reset) after a success.
#[derive(Debug, Default)]
pub struct Backoff(u32);

impl Backoff {
    pub fn wait(&mut self) {
        self.0 += 1;
        if self.0 < 4 {
            std::thread::yield_now();
        } else {
            let micros = 20u64 << (self.0 - 4).min(6);
            std::thread::sleep(Duration::from_micros(micros.min(1000)));
        }
    }

    pub fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Waits until `done()` holds, looking again every millisecond, for at most `patience`
/// (a safety net: the condition is what the test waits for).
pub async fn eventually(what: &str, patience: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + patience;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
}
