//! The mailbox's unit tests, and helpers for those of `turns`, `wake` and `evict`.

use super::*;
use crate::core::completion::Completion;

pub(crate) fn env(n: u32) -> Envelope<u32> {
    Envelope {
        item: n,
        queued_at: None,
        depth: DepthGuard::default(),
        completion: CompletionGuard::default(),
    }
}

pub(crate) fn put(mb: &PriorityMailbox<u32>, n: u32, p: Priority) {
    mb.reserve(Priority::Normal).unwrap();
    assert_eq!(mb.push_reserved(env(n), p), 0);
}

pub(crate) fn drain(mb: &PriorityMailbox<u32>, turns: &mut LaneTurns) -> Vec<u32> {
    std::iter::from_fn(|| mb.pop(turns).map(|e| e.item)).collect()
}

#[test]
fn highest_priority_first_fifo_within_a_lane() {
    let mb = PriorityMailbox::new(100, false);
    put(&mb, 1, Priority::Low);
    put(&mb, 2, Priority::Normal);
    put(&mb, 3, Priority::Critical);
    put(&mb, 4, Priority::Low);
    put(&mb, 5, Priority::High);
    put(&mb, 6, Priority::Critical);
    assert_eq!(drain(&mb, &mut LaneTurns::default()), [3, 6, 5, 2, 1, 4]);
    assert_eq!(mb.len(), 0);
}

#[test]
fn fifo_mode_ignores_priority() {
    let mb = PriorityMailbox::new(100, true);
    for (n, p) in [
        (1, Priority::Low),
        (2, Priority::Critical),
        (3, Priority::Normal),
    ] {
        put(&mb, n, p);
    }
    assert_eq!(drain(&mb, &mut LaneTurns::default()), [1, 2, 3]);
}

#[test]
fn low_items_leave_an_eighth_of_the_slots_to_more_urgent_ones() {
    let mb: PriorityMailbox<u32> = PriorityMailbox::new(16, false);
    for _ in 0..14 {
        mb.reserve(Priority::Low).unwrap();
    }
    assert_eq!(
        mb.reserve(Priority::Low),
        Err(Refused::Full),
        "14 of 16: LOW stops"
    );
    mb.reserve(Priority::Critical).unwrap();
    mb.reserve(Priority::Normal).unwrap();
    assert_eq!(
        mb.reserve(Priority::Critical),
        Err(Refused::Full),
        "16 of 16"
    );
    // No headroom in FIFO mode, nor below 8 slots.
    let fifo: PriorityMailbox<u32> = PriorityMailbox::new(16, true);
    for _ in 0..16 {
        fifo.reserve(Priority::Low).unwrap();
    }
    let small: PriorityMailbox<u32> = PriorityMailbox::new(7, false);
    for _ in 0..7 {
        small.reserve(Priority::Low).unwrap();
    }
}

#[test]
fn capacity_and_close_are_enforced_by_reservation() {
    let mb = PriorityMailbox::<u32>::new(2, false);
    mb.reserve(Priority::Normal).unwrap();
    mb.reserve(Priority::Normal).unwrap();
    assert_eq!(mb.reserve(Priority::Normal), Err(Refused::Full));
    mb.unreserve();
    mb.reserve(Priority::Normal).unwrap();
    mb.close();
    mb.unreserve();
    assert_eq!(mb.reserve(Priority::Normal), Err(Refused::Closed));
    assert_eq!(mb.len(), 1);
}

#[test]
fn a_dropped_mailbox_gives_its_items_slots_back_to_the_shared_bound() {
    let bound = Arc::new(SharedBound::new(10));
    let mb = PriorityMailbox::with_shared_bound(10, false, Some(bound.clone()));
    for n in 0..3 {
        assert!(bound.reserve(1, 10));
        put(&mb, n, Priority::Normal);
    }
    mb.pop(&mut LaneTurns::default()).unwrap();
    assert_eq!(bound.len(), 2);
    drop(mb);
    assert_eq!(bound.len(), 0);
}

#[test]
fn a_rolled_back_reservation_wakes_a_waiting_publisher() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mb = Arc::new(PriorityMailbox::<u32>::new(8, false));
        for n in 0..7 {
            put(&mb, n, Priority::Normal); // one slot free
        }
        mb.reserve(Priority::Normal).unwrap(); // another publisher's transient reservation
        assert_eq!(mb.reserve(Priority::Normal), Err(Refused::Full));
        let waiter = tokio::spawn({
            let mb = mb.clone();
            async move { mb.wait_for_room(Priority::Normal).await }
        });
        for _ in 0..3 {
            tokio::task::yield_now().await; // the waiter registers and sleeps
        }
        mb.unreserve(); // the other publisher rolls back: a slot is free
        tokio::time::timeout(std::time::Duration::from_secs(60), waiter)
            .await
            .expect("the waiter is woken")
            .unwrap();
    });
}

#[test]
fn an_item_pushed_after_a_cancel_is_discarded_by_its_publisher() {
    let bound = Arc::new(SharedBound::new(4));
    let mb = PriorityMailbox::with_shared_bound(4, false, Some(bound.clone()));
    let completion = Completion::new(1);
    let depths = super::super::depths::TopicDepths::default();
    // A publisher reserves (here and in the bound), then the subscription goes.
    mb.reserve(Priority::Normal).unwrap();
    assert!(bound.reserve(1, 4));
    assert_eq!(mb.cancel(), 0);
    let envelope = Envelope {
        item: 1,
        queued_at: None,
        depth: depths.acquire("t", 1).next().unwrap(),
        completion: CompletionGuard::new(Some(&completion)),
    };
    assert_eq!(mb.push_reserved(envelope, Priority::Normal), 1, "discarded");
    assert_eq!((mb.len(), bound.len()), (0, 0), "every slot given back");
    assert_eq!(completion.remaining(), 0, "the publisher is released");
    assert_eq!(depths.nonzero().count(), 0, "the depth is given back");
}

#[test]
fn abandon_cancels_and_says_so() {
    let mb = PriorityMailbox::new(4, false);
    put(&mb, 1, Priority::Normal);
    assert!(!mb.is_abandoned());
    mb.close();
    assert_eq!(mb.abandon(), 1);
    assert!(mb.is_abandoned() && mb.is_cancelled());
    assert_eq!(mb.len(), 0);
}

#[test]
fn cancel_discards_and_frees() {
    let mb = PriorityMailbox::new(10, false);
    put(&mb, 1, Priority::Low);
    put(&mb, 2, Priority::High);
    assert_eq!(mb.cancel(), 2);
    assert_eq!(mb.len(), 0);
    assert!(mb.is_cancelled());
    assert_eq!(mb.reserve(Priority::Normal), Err(Refused::Closed));
}

#[test]
fn concurrent_producers_lose_nothing() {
    let mb = Arc::new(PriorityMailbox::new(1 << 20, false));
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let mb = mb.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    let p = Priority::ALL[(i % 4) as usize];
                    put(&mb, t * 1_000_000 + i, p);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut items = drain(&mb, &mut LaneTurns::default());
    assert_eq!(items.len(), 80_000);
    items.sort_unstable();
    items.dedup();
    assert_eq!(items.len(), 80_000);
}
