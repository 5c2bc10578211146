//! Baseline: plain actix, one actor per subscriber, `Addr::try_send` from the publisher.

use actix::prelude::*;

use crate::bench::fanout::{
    fan_out_only, Consumers, Fanout, Indexed, OwnedSink, Publish, Sink, CAPACITY,
};

/// One actor per subscriber (mailbox capacity 10,000) on `workers` arbiters; the
/// publisher `try_send`s each item to every actor, retrying after a `yield` when a
/// mailbox is full.
#[derive(Clone, Copy, Debug)]
pub struct ActixFanout<F> {
    /// Arbiters (threads) the actors are spread over (at least one).
    pub workers: usize,
    /// Builds item `i`.
    pub make: F,
}

impl<M, F> Fanout for ActixFanout<F>
where
    M: Indexed + Clone + Send + 'static,
    F: Fn(u64) -> M + Send + 'static,
{
    type Running = Vec<Arbiter>;

    async fn start<S: Sink>(
        self,
        consumers: Consumers,
        sinks: Vec<S>,
    ) -> (impl Publish, Vec<Arbiter>) {
        fan_out_only(consumers, "plain actix");
        let arbiters: Vec<Arbiter> = (0..self.workers.max(1)).map(|_| Arbiter::new()).collect();
        let addrs = sinks
            .into_iter()
            .enumerate()
            .map(|(n, sink)| {
                let sink = sink.into_owned();
                let arbiter = arbiters[n % arbiters.len()].handle();
                Consumer::start_in_arbiter(&arbiter, move |ctx| {
                    ctx.set_mailbox_capacity(CAPACITY);
                    Consumer { sink }
                })
            })
            .collect();
        let publisher = Actors {
            addrs,
            make: self.make,
        };
        (publisher, arbiters)
    }

    async fn stop(arbiters: Vec<Arbiter>) {
        for arbiter in arbiters {
            arbiter.stop();
        }
    }
}

/// Hands each item it is sent to its sink.
struct Consumer<O> {
    sink: O,
}

impl<O: OwnedSink> Actor for Consumer<O> {
    type Context = Context<Self>;
}

/// One item for a [`Consumer`].
#[derive(actix::Message)]
#[rtype(result = "()")]
struct Delivery<M>(M);

impl<O: OwnedSink, M: Indexed + 'static> Handler<Delivery<M>> for Consumer<O> {
    type Result = ();

    fn handle(&mut self, delivery: Delivery<M>, _: &mut Context<Self>) {
        self.sink.receive(&delivery.0);
    }
}

/// The actors' addresses.
struct Actors<O: OwnedSink, F> {
    addrs: Vec<Addr<Consumer<O>>>,
    make: F,
}

impl<O, M, F> Publish for Actors<O, F>
where
    O: OwnedSink,
    M: Indexed + Clone + Send + 'static,
    F: Fn(u64) -> M + Send + 'static,
{
    fn publish(&mut self, i: u64) -> u64 {
        let item = (self.make)(i);
        let mut full_retries = 0;
        for addr in &self.addrs {
            let mut delivery = Delivery(item.clone());
            loop {
                match addr.try_send(delivery) {
                    Ok(()) => break,
                    Err(SendError::Full(back)) => {
                        full_retries += 1;
                        delivery = back;
                        std::thread::yield_now();
                    }
                    Err(SendError::Closed(_)) => panic!("actix baseline: an actor stopped"),
                }
            }
        }
        full_retries
    }
}
