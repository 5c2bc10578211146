//! The simulated market of `tickwire serve --demo`, wired as the seed's integration
//! examples are.
//!
//! - A feed thread (a plain `std::thread`, as an exchange connection would be) publishes
//!   `market.tick` events with random-walk prices for a few symbols, at a set rate, with
//!   `try_publish`: a tick that finds the bus full is dropped and counted, as a feed
//!   handler conflates under load.
//! - An EventBus handler republishes each tick onto the MessageQueue topic `market.data`
//!   (EventBus → MessageQueue). `tickwire serve` bridges every queue topic to WebSocket
//!   subscribers, so clients of `market.data` get the ticks.
//! - `system.status` (every second: the feed's rate, clients connected) and
//!   `system.alert` (a symbol moved more than 0.5 % from its reference) events go from the
//!   EventBus to WebSocket clients (`bridge::event_bus_to_websocket`, `system.>`).
//!
//! Ticks are typed: the feed publishes [`Tick`] values (`Event::typed`), the EventBus
//! handler gets them as `Typed<Tick>` and republishes them typed; no JSON is built until a
//! WebSocket frame is written. The tick's JSON: `{"symbol": "BTCUSD", "price": 50012.5,
//! "bid": 50011.25, "ask": 50013.75, "size": 0.25, "exchange_time": 1764633600123456}`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::borrow::Cow;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::util::random;
use crate::{
    bridge, create_event, create_handler_config, Event, EventBus, MessageQueue, Priority,
    SubscribeError, Typed, WebSocketService,
};

/// A market tick, as a feed handler publishes it (and as the benchmarks move it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// The instrument (`BTCUSD`); a literal costs no allocation.
    pub symbol: Cow<'static, str>,
    /// The last trade price.
    pub price: f64,
    /// Best bid.
    pub bid: f64,
    /// Best ask.
    pub ask: f64,
    /// Size of the last trade.
    pub size: f64,
    /// When the exchange stamped it: microseconds since the Unix epoch.
    pub exchange_time: u64,
}

/// Microseconds since the Unix epoch, now.
pub fn exchange_time_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Symbols and starting prices.
pub const SYMBOLS: [(&str, f64); 5] = [
    ("BTCUSD", 50_000.0),
    ("ETHUSD", 3_000.0),
    ("SOLUSD", 150.0),
    ("EURUSD", 1.08),
    ("XAUUSD", 2_400.0),
];

/// A running demo; [`stop`](Demo::stop) it before stopping the components.
pub struct Demo {
    running: Arc<AtomicBool>,
    feed: Option<JoinHandle<()>>,
    status: actix_rt::task::JoinHandle<()>,
    published: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

/// What the demo's feed did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedStats {
    /// Ticks accepted by the EventBus.
    pub published: u64,
    /// Ticks dropped because the bus was full.
    pub dropped: u64,
}

impl Demo {
    /// Wires the handlers and starts the feed at `ticks_per_second` (at least 1).
    pub async fn start(
        bus: &EventBus,
        queue: &MessageQueue,
        websocket: &WebSocketService,
        ticks_per_second: u32,
    ) -> Result<Demo, SubscribeError> {
        let to_queue = queue.clone();
        bus.subscribe_typed_with(
            "market.tick",
            create_handler_config("demo:market.tick->market.data"),
            move |tick: Typed<Tick>| {
                let queue = to_queue.clone();
                async move {
                    let priority = tick.event().priority();
                    queue
                        .publish_typed("market.data", tick.value().clone(), priority)
                        .await
                        .map(|_| ())
                        .map_err(|err| err.to_string().into())
                }
            },
        )
        .await?;
        bridge::event_bus_to_websocket(bus, websocket, "system.>").await?;

        let running = Arc::new(AtomicBool::new(true));
        let published = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let feed = {
            let (bus, running) = (bus.clone(), running.clone());
            let (published, dropped) = (published.clone(), dropped.clone());
            std::thread::Builder::new()
                .name("tickwire-demo-feed".into())
                .spawn(move || feed(bus, running, ticks_per_second.max(1), published, dropped))
                .expect("spawn the demo feed thread")
        };
        let status = {
            let (bus, websocket, published) = (bus.clone(), websocket.clone(), published.clone());
            actix_rt::spawn(async move {
                let mut tick = actix_rt::time::interval(Duration::from_secs(1));
                let mut last = 0;
                loop {
                    tick.tick().await;
                    let now = published.load(Ordering::Relaxed);
                    let message = format!(
                        "feed {} ticks/s, {} WebSocket clients",
                        now - last,
                        websocket.active_connections()
                    );
                    last = now;
                    let status = json!({"level": "info", "message": message});
                    let _ = bus.try_publish(create_event("system.status", status, Priority::Low));
                }
            })
        };
        Ok(Demo {
            running,
            feed: Some(feed),
            status,
            published,
            dropped,
        })
    }

    /// Stops the feed and the status events; returns what the feed did.
    pub fn stop(mut self) -> FeedStats {
        self.running.store(false, Ordering::Relaxed);
        self.status.abort();
        if let Some(feed) = self.feed.take() {
            let _ = feed.join();
        }
        FeedStats {
            published: self.published.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The feed thread: `rate` ticks per second, in slices of 10 ms.
fn feed(
    bus: EventBus,
    running: Arc<AtomicBool>,
    rate: u32,
    published: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
) {
    const SLICE: Duration = Duration::from_millis(10);
    let mut prices: Vec<f64> = SYMBOLS.iter().map(|(_, p)| *p).collect();
    let mut references = prices.clone();
    // Each tick moves a price by up to `step`, scaled so that a symbol's volatility per
    // second is about the same (~0.1 %) whatever the rate.
    let per_symbol = (f64::from(rate) / SYMBOLS.len() as f64).max(1.0);
    let step = 0.002 / per_symbol.sqrt();
    let started = Instant::now();
    let mut sent: u64 = 0;
    while running.load(Ordering::Relaxed) {
        // Ticks due by now, so a late slice catches up and a stall is visible as a burst.
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while sent < due && running.load(Ordering::Relaxed) {
            sent += 1;
            let i = (random::u64() % SYMBOLS.len() as u64) as usize;
            let price = prices[i] * (1.0 + step * (2.0 * random::f64() - 1.0));
            prices[i] = price;
            let spread = price * 0.00005;
            let tick = Tick {
                symbol: Cow::Borrowed(SYMBOLS[i].0),
                price: round(price),
                bid: round(price - spread),
                ask: round(price + spread),
                size: (1 + random::u64() % 399) as f64 / 100.0,
                exchange_time: exchange_time_now(),
            };
            match bus.try_publish(Event::typed("market.tick", tick)) {
                Ok(()) => published.fetch_add(1, Ordering::Relaxed),
                Err(_) => dropped.fetch_add(1, Ordering::Relaxed),
            };
            let moved = (price / references[i] - 1.0) * 100.0;
            if moved.abs() > 0.5 {
                references[i] = price;
                let alert = json!({
                    "level": "warning",
                    "message": format!("{} moved {moved:+.2}% to {}", SYMBOLS[i].0, round(price)),
                });
                let _ = bus.try_publish(create_event("system.alert", alert, Priority::High));
            }
        }
        std::thread::sleep(SLICE);
    }
}

/// Rounds to a price-like precision.
fn round(price: f64) -> f64 {
    let scale = if price < 10.0 { 100_000.0 } else { 100.0 };
    (price * scale).round() / scale
}
