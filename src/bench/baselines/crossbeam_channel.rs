//! Baseline: a bounded `crossbeam-channel` per subscriber, a consumer thread each.

use std::thread::JoinHandle;

use crossbeam::channel::Sender;

use crate::bench::fanout::{
    fan_out_only, Consumers, Fanout, Indexed, OwnedSink, Publish, Sink, CAPACITY,
};

/// One bounded crossbeam channel (capacity 10,000) per subscriber, each drained by a
/// consumer thread; the publisher sends (blocking while full) a clone of each item to
/// every channel.
#[derive(Clone, Copy, Debug)]
pub struct CrossbeamFanout<F> {
    /// Builds item `i`.
    pub make: F,
}

impl<M, F> Fanout for CrossbeamFanout<F>
where
    M: Indexed + Clone + Send + 'static,
    F: Fn(u64) -> M + Send + 'static,
{
    type Running = Vec<JoinHandle<()>>;

    async fn start<S: Sink>(
        self,
        consumers: Consumers,
        sinks: Vec<S>,
    ) -> (impl Publish, Vec<JoinHandle<()>>) {
        fan_out_only(consumers, "a crossbeam channel");
        let (senders, threads) = sinks
            .into_iter()
            .map(|sink| {
                let (tx, rx) = crossbeam::channel::bounded::<M>(CAPACITY);
                let mut sink = sink.into_owned();
                let consumer = std::thread::spawn(move || {
                    for item in rx.iter() {
                        sink.receive(&item);
                    }
                });
                (tx, consumer)
            })
            .unzip();
        let publisher = Channels {
            senders,
            make: self.make,
        };
        (publisher, threads)
    }

    async fn stop(threads: Vec<JoinHandle<()>>) {
        super::join(threads).await;
    }
}

/// The publishing ends; dropping them closes the channels.
struct Channels<M, F> {
    senders: Vec<Sender<M>>,
    make: F,
}

impl<M, F> Publish for Channels<M, F>
where
    M: Clone + Send + 'static,
    F: Fn(u64) -> M + Send + 'static,
{
    fn publish(&mut self, i: u64) -> u64 {
        let item = (self.make)(i);
        for tx in &self.senders {
            tx.send(item.clone()).expect("consumer alive");
        }
        0
    }
}
