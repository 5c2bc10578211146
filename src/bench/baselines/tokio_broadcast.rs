//! Baseline: one `tokio::sync::broadcast` channel, a receiver per subscriber on a thread
//! of its own.

use std::thread::JoinHandle;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::bench::fanout::{
    fan_out_only, Consumers, Fanout, Indexed, OwnedSink, Publish, Sink, CAPACITY,
};

/// One `tokio::sync::broadcast` channel of capacity 10,000, a receiver per subscriber on
/// a thread of its own (a current-thread runtime each). The publisher waits (yielding)
/// while the channel is full, so no receiver lags (a lagging receiver fails the run).
#[derive(Clone, Copy, Debug)]
pub struct TokioBroadcastFanout<F> {
    /// Builds item `i`.
    pub make: F,
}

impl<M, F> Fanout for TokioBroadcastFanout<F>
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
        fan_out_only(consumers, "a tokio broadcast channel");
        let (tx, _) = broadcast::channel::<M>(CAPACITY);
        let threads = sinks
            .into_iter()
            .map(|sink| {
                let mut rx = tx.subscribe();
                let mut sink = sink.into_owned();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .expect("a current-thread runtime");
                    runtime.block_on(async move {
                        loop {
                            match rx.recv().await {
                                Ok(item) => sink.receive(&item),
                                Err(RecvError::Closed) => return,
                                Err(RecvError::Lagged(n)) => {
                                    panic!("broadcast baseline: a receiver lagged by {n}")
                                }
                            }
                        }
                    })
                })
            })
            .collect();
        let publisher = Broadcast {
            tx,
            make: self.make,
        };
        (publisher, threads)
    }

    async fn stop(threads: Vec<JoinHandle<()>>) {
        super::join(threads).await;
    }
}

/// The sending end; dropping it closes the channel.
struct Broadcast<M, F> {
    tx: broadcast::Sender<M>,
    make: F,
}

impl<M, F> Publish for Broadcast<M, F>
where
    M: Clone + Send + 'static,
    F: Fn(u64) -> M + Send + 'static,
{
    fn publish(&mut self, i: u64) -> u64 {
        let item = (self.make)(i);
        let mut full_retries = 0;
        while self.tx.len() >= CAPACITY - 1 {
            full_retries += 1;
            std::thread::yield_now();
        }
        assert!(
            self.tx.send(item).is_ok(),
            "broadcast baseline: receivers alive"
        );
        full_retries
    }
}
