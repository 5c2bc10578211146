//! A simulated market feed through the EventBus.
//!
//! A plain `std::thread` plays the exchange connection: it publishes typed
//! `market.tick.<SYMBOL>` events (a `Tick`, random-walk prices) with `try_publish`, as a
//! real feed thread would. Handlers
//! subscribed by pattern keep the last price per symbol, detect large moves and publish
//! CRITICAL `trading.signal` events back onto the bus (under a timeout and a retry
//! policy), a `system.>` handler reports alerts and a `$dlq.>` handler reports dead
//! letters. At the end the example prints what each handler saw and the latest history.
//!
//! Run: `cargo run --release --example market_feed -- [seconds] [ticks_per_second]`
//! (defaults: 3 s at 200,000 ticks/s).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tickwire::{
    create_event, create_handler_config, Event, EventBus, EventBusConfig, Priority,
    TryPublishError, Typed,
};

const SYMBOLS: [&str; 4] = ["BTCUSD", "ETHUSD", "SOLUSD", "XRPUSD"];

/// What the feed publishes.
#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    symbol: String,
    price: f64,
    volume: u64,
}

/// What the analysis publishes.
#[derive(Debug, Serialize, Deserialize)]
struct Signal {
    symbol: String,
    side: String,
    price: f64,
    change: f64,
}

#[actix::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let rate: f64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000.0);

    let bus = EventBus::start(EventBusConfig {
        max_workers: 2,
        max_history: 100,
        ..EventBusConfig::default()
    })
    .expect("valid config");

    // Last price per symbol, from every tick.
    let prices: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let ticks = Arc::new(AtomicU64::new(0));
    {
        let (prices, ticks) = (prices.clone(), ticks.clone());
        bus.subscribe_typed("market.tick.*", move |tick: Typed<Tick>| {
            prices
                .lock()
                .expect("not poisoned")
                .insert(tick.symbol.clone(), tick.price);
            ticks.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok(()))
        })
        .await
        .expect("valid pattern");
    }

    // Analysis: a move of more than 0.5 % from the reference price is a signal.
    let reference: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    {
        let (bus2, reference) = (bus.clone(), reference.clone());
        bus.subscribe_typed_with(
            "market.tick.>",
            create_handler_config("analysis")
                .priority(Priority::High)
                .timeout(Duration::from_millis(500))
                .max_retries(2)
                .retry_delay(Duration::from_millis(5)),
            move |tick: Typed<Tick>| {
                let (symbol, price) = (tick.symbol.clone(), tick.price);
                let mut refs = reference.lock().expect("not poisoned");
                let base = *refs.entry(symbol.clone()).or_insert(price);
                let change = (price - base) / base;
                let signal = (change.abs() > 0.005).then(|| {
                    refs.insert(symbol.clone(), price);
                    let side = if change > 0.0 { "BUY" } else { "SELL" }.to_owned();
                    let signal = Signal {
                        symbol,
                        side,
                        price,
                        change,
                    };
                    Event::typed("trading.signal", signal).with_priority(Priority::Critical)
                });
                drop(refs);
                let bus = bus2.clone();
                async move {
                    if let Some(signal) = signal {
                        bus.publish(signal).await?;
                    }
                    Ok(())
                }
            },
        )
        .await
        .expect("valid pattern");
    }

    let signals = Arc::new(AtomicU64::new(0));
    {
        let signals = signals.clone();
        bus.subscribe("trading.signal", move |_| {
            signals.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok(()))
        })
        .await
        .expect("valid pattern");
    }
    // Dead letters: handlers that failed on every attempt end up here.
    bus.subscribe("$dlq.>", |event| {
        println!("[dead letter] {} {}", event.name(), event.data()["error"]);
        std::future::ready(Ok(()))
    })
    .await
    .expect("valid pattern");
    let alerts = Arc::new(AtomicU64::new(0));
    {
        let alerts = alerts.clone();
        bus.subscribe("system.>", move |event| {
            alerts.fetch_add(1, Ordering::Relaxed);
            println!("[alert] {} {}", event.name(), event.data());
            std::future::ready(Ok(()))
        })
        .await
        .expect("valid pattern");
    }

    // The feed thread: open loop at `rate` ticks per second, for `seconds`.
    let running = Arc::new(AtomicBool::new(true));
    let feed = {
        let (bus, running) = (bus.clone(), running.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let interval = Duration::from_secs_f64(1.0 / rate);
            let mut prices = [50_000.0, 3_000.0, 150.0, 0.6];
            let mut state = 0x2545_f491_4f6c_dd1d_u64;
            let (mut sent, mut full) = (0u64, 0u64);
            while running.load(Ordering::Relaxed) && start.elapsed().as_secs_f64() < seconds {
                let i = (sent % SYMBOLS.len() as u64) as usize;
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let step = (state % 2001) as f64 / 1000.0 - 1.0; // -1.0 ..= 1.0
                prices[i] *= 1.0 + step * 0.0005;
                let tick = Tick {
                    symbol: SYMBOLS[i].to_owned(),
                    price: prices[i],
                    volume: state % 100,
                };
                let event = Event::typed(format!("market.tick.{}", SYMBOLS[i]), tick);
                match bus.try_publish(event) {
                    Ok(()) => sent += 1,
                    Err(TryPublishError::QueueFull(_)) => full += 1,
                    Err(err) => panic!("feed: {err}"),
                }
                let due = start + interval.mul_f64((sent + full) as f64);
                while Instant::now() < due {
                    std::hint::spin_loop();
                }
            }
            (sent, full, start.elapsed())
        })
    };

    bus.publish(create_event(
        "system.started",
        json!({"feed": "simulated"}),
        Priority::Critical,
    ))
    .await
    .expect("bus running");
    let (sent, full, elapsed) =
        actix_rt::task::spawn_blocking(move || feed.join().expect("feed thread"))
            .await
            .expect("join");
    running.store(false, Ordering::Relaxed);
    bus.publish(create_event(
        "system.stopping",
        json!({"ticks": sent}),
        Priority::Critical,
    ))
    .await
    .expect("bus running");
    bus.stop().await; // handles everything accepted before returning

    println!(
        "feed: {sent} ticks in {:.2} s ({:.0}/s), {full} refused (queue full)",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    println!(
        "handled: {} ticks, {} trading signals, {} system alerts",
        ticks.load(Ordering::Relaxed),
        signals.load(Ordering::Relaxed),
        alerts.load(Ordering::Relaxed)
    );
    let mut last: Vec<_> = prices
        .lock()
        .expect("not poisoned")
        .clone()
        .into_iter()
        .collect();
    last.sort_by(|a, b| a.0.cmp(&b.0));
    for (symbol, price) in last {
        println!("  {symbol:<7} {price:>12.4}");
    }
    let stats = bus.delivery_stats();
    println!(
        "delivery: {} processed, {} errors, {} retries, {} dead letters, {} dropped, {} restarts",
        stats.processed,
        stats.errors,
        stats.retries,
        stats.dead_letters,
        stats.dropped,
        stats.restarts
    );
    println!("latest events in history:");
    for event in bus.history(5).await {
        println!("  {}", event.to_json());
    }
    assert_eq!(
        ticks.load(Ordering::Relaxed),
        sent,
        "every accepted tick was handled"
    );
}
