//! Heap allocations on the publish path, counted by a global allocator: a typed
//! `try_publish` with a `&'static str` name costs at most one (the item's). Only the
//! publishing thread's allocations count (handler threads allocate on their own).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use tickwire::{
    Event, EventBus, EventBusConfig, MessageQueue, MessageQueueConfig, Priority, Typed,
    TypedMessage,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the thread's locals may be gone while it exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are
// const-initialized thread locals, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

const SAFETY: Duration = Duration::from_secs(60);
/// Publishes before counting: the history ring fills and its entries start to be reused.
const WARM_UP: u64 = 1_500;
/// Counted publishes per round, while the handlers are held (fewer than a mailbox lane's
/// ring holds: a longer backlog grows the lane, which allocates).
const ROUND: u64 = 200;
const ROUNDS: u64 = 5;

/// A market tick shaped like the demo's (`tickwire::demo::Tick`, which needs the `demo`
/// feature): the core's guarantee is tested with the library alone.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Tick {
    symbol: Cow<'static, str>,
    price: f64,
    bid: f64,
    ask: f64,
    size: f64,
    exchange_time: u64,
}

fn tick(n: u64) -> Tick {
    Tick {
        symbol: Cow::Borrowed("BTCUSD"),
        price: n as f64,
        bid: n as f64 - 0.5,
        ask: n as f64 + 0.5,
        size: 1.0,
        exchange_time: n,
    }
}

/// Handlers that take a permit per item and say when they start one: while a handler
/// waits for a permit, its subscription is busy, so publishing to it sends no wake-up
/// (an actix message, which allocates).
#[derive(Clone)]
struct Held {
    permits: Arc<tokio::sync::Semaphore>,
    entered: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Held {
    fn new() -> (Held, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let (entered, rx) = tokio::sync::mpsc::unbounded_channel();
        let permits = Arc::new(tokio::sync::Semaphore::new(0));
        (Held { permits, entered }, rx)
    }

    async fn run(self) -> tickwire::HandlerResult {
        let _ = self.entered.send(());
        self.permits.acquire().await?.forget();
        Ok(())
    }
}

/// Runs the warm-up, then `ROUNDS` rounds of `ROUND` counted publishes (each after one
/// uncounted publish that the `subscriptions` held handlers are stuck on); returns the
/// allocations counted.
async fn measure(
    held: &Held,
    entered: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    subscriptions: u64,
    processed: impl Fn() -> u64,
    publish: impl Fn(u64),
) -> u64 {
    held.permits.add_permits((WARM_UP * subscriptions) as usize);
    for n in 0..WARM_UP {
        publish(n);
    }
    let mut total = WARM_UP;
    let mut counted = 0;
    for _ in 0..ROUNDS {
        common::eventually("the handlers caught up", SAFETY, || {
            processed() == total * subscriptions
        })
        .await;
        while entered.try_recv().is_ok() {}
        publish(0);
        for _ in 0..subscriptions {
            tokio::time::timeout(SAFETY, entered.recv()).await.unwrap();
        }
        counted += allocations(|| {
            for n in 0..ROUND {
                publish(n);
            }
        });
        total += ROUND + 1;
        held.permits
            .add_permits(((ROUND + 1) * subscriptions) as usize);
    }
    common::eventually("the handlers caught up", SAFETY, || {
        processed() == total * subscriptions
    })
    .await;
    counted
}

#[actix_rt::test]
async fn a_typed_event_publish_allocates_at_most_once() {
    let bus = EventBus::start(EventBusConfig::default()).unwrap();
    let (held, mut entered) = Held::new();
    for pattern in ["market.tick", "market.*"] {
        let held = held.clone();
        bus.subscribe_typed(pattern, move |_: Typed<Tick>| held.clone().run())
            .await
            .unwrap();
    }
    let counted = measure(
        &held,
        &mut entered,
        2,
        || bus.delivery_stats().processed,
        |n| {
            bus.try_publish(Event::typed("market.tick", tick(n)))
                .unwrap()
        },
    )
    .await;
    let publishes = ROUND * ROUNDS;
    eprintln!("EventBus: {counted} allocations for {publishes} typed publishes");
    assert!(
        counted <= publishes,
        "{counted} allocations for {publishes} typed publishes to two subscriptions"
    );
    // The count is not vacuous: a JSON publish allocates more (its map, its strings).
    held.permits.add_permits(2);
    let json = allocations(|| {
        bus.try_publish(Event::new(
            "market.tick",
            serde_json::to_value(tick(1)).unwrap(),
        ))
        .unwrap();
    });
    assert!(json > 1, "{json}");
    bus.stop().await;
}

#[actix_rt::test]
async fn a_typed_message_publish_allocates_at_most_once() {
    let mq = MessageQueue::start(MessageQueueConfig::default()).unwrap();
    let (held, mut entered) = Held::new();
    let h = held.clone();
    mq.subscribe_typed("market.tick", move |_: TypedMessage<Tick>| h.clone().run())
        .await
        .unwrap();
    let counted = measure(
        &held,
        &mut entered,
        1,
        || mq.delivery_stats().processed,
        |n| {
            mq.try_publish_typed("market.tick", tick(n), Priority::High)
                .unwrap();
        },
    )
    .await;
    let publishes = ROUND * ROUNDS;
    eprintln!("MessageQueue: {counted} allocations for {publishes} typed publishes");
    assert!(
        counted <= publishes,
        "{counted} allocations for {publishes} typed publishes"
    );
    mq.stop().await;
}
