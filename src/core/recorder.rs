//! Latency recording on the handler actors, without a lock.
//!
//! Each handler actor owns a [`Recorder`]: two hdrhistograms (publish → handled, and one
//! handler run) that only that actor touches. Once a second, and when the actor
//! finishes, it ships what it recorded to the component's metrics actor as a
//! [`Latencies`] message and starts afresh. So recording is a plain histogram increment
//! on the actor's own thread, and the metrics actor sees samples at most about a second
//! late.

use std::time::Duration;

use actix::prelude::*;
use hdrhistogram::Histogram;

/// How often a handler actor ships its histograms.
pub const SHIP_INTERVAL: Duration = Duration::from_secs(1);

/// Highest latency a histogram holds exactly, in microseconds (an hour); longer ones
/// are recorded as this.
const MAX_MICROS: u64 = 3_600_000_000;

/// An empty latency histogram in microseconds, 2 significant digits (1 % resolution).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("valid histogram bounds")
}

/// Samples shipped by one handler actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Latencies {
    pub(crate) publish_to_handled: Histogram<u64>,
    pub(crate) run_time: Histogram<u64>,
}

/// One handler actor's histograms since its last shipment.
pub(crate) struct Recorder {
    publish_to_handled: Histogram<u64>,
    run_time: Histogram<u64>,
    sink: Recipient<Latencies>,
}

impl Recorder {
    pub(crate) fn new(sink: Recipient<Latencies>) -> Self {
        Recorder {
            publish_to_handled: histogram(),
            run_time: histogram(),
            sink,
        }
    }

    /// Records one handler run, and for a successful delivery its publish → handled time.
    pub(crate) fn record(&mut self, run: Duration, publish_to_handled: Option<Duration>) {
        self.run_time.saturating_record(micros(run));
        if let Some(latency) = publish_to_handled {
            self.publish_to_handled.saturating_record(micros(latency));
        }
    }

    /// Sends what was recorded (if anything) to the metrics actor.
    pub(crate) fn ship(&mut self) {
        if self.run_time.is_empty() {
            return;
        }
        let shipment = Latencies {
            publish_to_handled: std::mem::replace(&mut self.publish_to_handled, histogram()),
            run_time: std::mem::replace(&mut self.run_time, histogram()),
        };
        // Once a second per actor: do_send's disregard of capacity is harmless here.
        self.sink.do_send(shipment);
    }
}

/// A duration in whole microseconds, at least 1 (the histograms' lowest value).
pub(crate) fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_MICROS)
}
