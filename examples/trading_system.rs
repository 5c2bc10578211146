//! The seed's trading system, runnable end to end with a simulated feed.
//!
//! ```text
//! feed thread ──try_publish──► EventBus  market.tick        (NORMAL)
//!   market_data_handler ──publish──► MessageQueue  market.analysis  (HIGH)
//!     trading_signal_handler (a consumer group of 2) ──publish──► EventBus  trading.signal (CRITICAL)
//!       execution handler: counts signals, prints a few
//! ```
//!
//! Every payload is typed (`Tick`, `Analysis`, `Signal`): the handlers get the
//! publishers' values themselves, and no JSON is built on the way (it is built only for
//! the few signals printed). At the end it prints both components' metrics (the seed's
//! keys and ours) and the queue's topics.
//! Run: `cargo run --release --example trading_system -- [seconds] [ticks_per_second]`
//! (defaults: 3 s at 50,000 ticks/s).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tickwire::{
    create_handler_config, Event, EventBus, EventBusConfig, MessageQueue, MessageQueueConfig,
    Priority, TryPublishError, Typed, TypedMessage,
};

const SYMBOLS: [&str; 3] = ["BTCUSD", "ETHUSD", "SOLUSD"];

/// A market tick from the feed.
#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    symbol: String,
    price: f64,
    volume: u64,
}

/// The "analysis" of the seed: a short moving average.
#[derive(Debug, Serialize, Deserialize)]
struct Analysis {
    symbol: String,
    price: f64,
    average: f64,
    samples: usize,
}

#[derive(Debug, Serialize, Deserialize)]
enum Side {
    Buy,
    Sell,
}

/// A trading signal.
#[derive(Debug, Serialize, Deserialize)]
struct Signal {
    symbol: String,
    side: Side,
    confidence: f64,
    price: f64,
}

/// A moving average per symbol.
#[derive(Default)]
struct Analyzer {
    windows: HashMap<String, Vec<f64>>,
}

impl Analyzer {
    fn analyze(&mut self, tick: &Tick) -> Analysis {
        let window = self.windows.entry(tick.symbol.clone()).or_default();
        window.push(tick.price);
        if window.len() > 50 {
            window.remove(0);
        }
        Analysis {
            symbol: tick.symbol.clone(),
            price: tick.price,
            average: window.iter().sum::<f64>() / window.len() as f64,
            samples: window.len(),
        }
    }
}

/// BUY or SELL when the price is more than 0.2 % away from its moving average.
fn generate_trading_signal(analysis: &Analysis) -> Option<Signal> {
    if analysis.samples < 50 {
        return None;
    }
    let deviation = (analysis.price - analysis.average) / analysis.average;
    (deviation.abs() > 0.002).then(|| Signal {
        symbol: analysis.symbol.clone(),
        side: if deviation < 0.0 {
            Side::Buy
        } else {
            Side::Sell
        },
        confidence: (deviation.abs() * 100.0).min(1.0),
        price: analysis.price,
    })
}

#[actix::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let rate: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000.0);

    let event_bus = EventBus::start(EventBusConfig {
        max_workers: 2,
        ..EventBusConfig::default()
    })
    .expect("valid config");
    let message_queue = MessageQueue::start(MessageQueueConfig {
        max_workers: 2,
        ..MessageQueueConfig::default()
    })
    .expect("valid config");

    // Market data handler: analyse each tick, publish the analysis on the queue.
    let analyzer = Arc::new(Mutex::new(Analyzer::default()));
    {
        let (mq, analyzer) = (message_queue.clone(), analyzer.clone());
        event_bus
            .subscribe_typed_with(
                "market.tick",
                create_handler_config("market_data_handler").max_retries(2),
                move |tick: Typed<Tick>| {
                    let analysis = analyzer.lock().expect("not poisoned").analyze(&tick);
                    let mq = mq.clone();
                    async move {
                        mq.publish_typed("market.analysis", analysis, Priority::High)
                            .await?;
                        Ok(())
                    }
                },
            )
            .await
            .expect("valid pattern");
    }

    // Trading signal handlers: two competing consumers of the analyses.
    for member in 0..2 {
        let bus = event_bus.clone();
        message_queue
            .subscribe_group_typed_with(
                "market.analysis",
                "signal_generators",
                create_handler_config(format!("trading_signal_handler_{member}")),
                move |analysis: TypedMessage<Analysis>| {
                    let signal = generate_trading_signal(&analysis);
                    let bus = bus.clone();
                    async move {
                        if let Some(signal) = signal {
                            let signal = Event::typed("trading.signal", signal)
                                .with_priority(Priority::Critical);
                            bus.publish(signal).await?;
                        }
                        Ok(())
                    }
                },
            )
            .await
            .expect("valid topic");
    }

    // Execution: count the signals, show the first few.
    let signals = Arc::new(AtomicU64::new(0));
    {
        let signals = signals.clone();
        event_bus
            .subscribe_typed("trading.signal", move |signal: Typed<Signal>| {
                if signals.fetch_add(1, Ordering::Relaxed) < 5 {
                    println!("[signal] {:?}, as JSON {}", *signal, signal.event().data());
                }
                std::future::ready(Ok(()))
            })
            .await
            .expect("valid pattern");
    }

    // The market data feed: a plain thread, random-walk prices, open loop at `rate`.
    let feed = {
        let bus = event_bus.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let interval = Duration::from_secs_f64(1.0 / rate);
            let mut prices = [50_000.0, 3_000.0, 150.0];
            let mut state = 0x9e37_79b9_7f4a_7c15_u64;
            let (mut sent, mut refused) = (0u64, 0u64);
            while start.elapsed().as_secs_f64() < seconds {
                let i = (sent % SYMBOLS.len() as u64) as usize;
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                prices[i] *= 1.0 + ((state % 2001) as f64 / 1000.0 - 1.0) * 0.001;
                let tick = Event::typed(
                    "market.tick",
                    Tick {
                        symbol: SYMBOLS[i].to_owned(),
                        price: prices[i],
                        volume: state % 100,
                    },
                );
                match bus.try_publish(tick) {
                    Ok(()) => sent += 1,
                    Err(TryPublishError::QueueFull(_)) => refused += 1,
                    Err(err) => panic!("feed: {err}"),
                }
                let due = start + interval.mul_f64((sent + refused) as f64);
                while Instant::now() < due {
                    std::hint::spin_loop();
                }
            }
            (sent, refused, start.elapsed())
        })
    };
    let (sent, refused, elapsed) =
        actix_rt::task::spawn_blocking(move || feed.join().expect("feed thread"))
            .await
            .expect("join");

    // The flow is a cycle (the queue's consumers publish back onto the bus), so stopping
    // either side first would refuse the other's in-flight publishes. Let both settle
    // (bounded), then stop them.
    let settle_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle_until {
        let bus = event_bus.get_performance_metrics().await;
        let mq = message_queue.get_performance_metrics().await;
        let busy = bus.queue_size
            + mq.total_queue_size
            + bus.active_handlers.unwrap_or(0)
            + mq.active_handlers.unwrap_or(0);
        if busy == 0 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    event_bus.stop().await;
    message_queue.stop().await;

    println!(
        "feed: {sent} ticks in {:.2} s ({:.0}/s), {refused} refused (bus full)",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    println!("trading signals: {}", signals.load(Ordering::Relaxed));
    let bus_stats = event_bus.get_performance_metrics().await;
    let mq_stats = message_queue.get_performance_metrics().await;
    println!(
        "event bus:     {}",
        serde_json::to_string(&bus_stats).expect("serializable")
    );
    println!(
        "message queue: {}",
        serde_json::to_string(&mq_stats).expect("serializable")
    );
    println!("queue topic depths: {:?}", message_queue.topic_depths());
    println!(
        "dead letters: bus {}, queue {}",
        event_bus.dead_letters().await.len(),
        message_queue.dead_letters().await.len()
    );
}
