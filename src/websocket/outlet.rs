//! A session's outlet: the encoded frames waiting for its socket, and the body of its
//! 101 response that hands them to actix-web.
//!
//! The hub (broadcasts, and the `ack` of a subscription change: see the session's
//! `## Barriers`) and the session (its other replies, pings, closes) push whole
//! WebSocket frames into the [`Outlet`]; the response's [`OutletBody`] takes them when
//! actix-web's dispatcher has room in its write buffer. Nothing else stands between the
//! hub and the socket: a broadcast is queued by the hub straight to every session, with
//! no actor message per session.
//!
//! ## Flow control, in bytes
//!
//! The outlet counts the bytes waiting (pushed and not yet taken by the body). A push
//! that would take them past `max_queued_bytes` is refused ([`Pushed::OverBudget`]): the
//! pusher closes the session with 4008 (slow consumer). [`Outlet::stalled_for`] says how
//! long frames have been waiting without the socket taking a byte: past
//! `write_timeout`, the session closes with 4008 too. A client that reads, even slowly,
//! keeps taking bytes, so a burst within the budget never closes it.
//!
//! ## Conflation
//!
//! A frame pushed with a conflation key (a topic of a `"conflate": true` subscription)
//! replaces, in place, a frame of the same key still waiting: the queue holds at most one
//! waiting frame per key, and the newer one keeps the older one's place in the order.
//! Conflated frames never count toward the budget (a client behind on a conflated
//! subscription gets the latest, never a 4008); their number is bounded by the topics.
//!
//! ## Closing
//!
//! [`Outlet::close`] queues a close frame (after the frames waiting, or instead of them)
//! and refuses every later push. The body ends once it has handed the close frame over,
//! and actix-web then closes the connection; [`Outlet::finished`] resolves at that point,
//! or when the body is dropped (the connection is gone), or at [`Outlet::abort`].

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::Notify;

/// How much the body takes from the outlet at once, in bytes (at least one frame).
const TAKE_AT_ONCE: usize = 64 << 10;

/// The outcome of a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued at the end.
    Queued,
    /// Replaced a waiting frame of the same conflation key, in its place.
    Replaced,
    /// Not queued: the bytes waiting would pass the budget. The pusher closes the
    /// session (4008).
    OverBudget,
    /// Not queued: the outlet is closed.
    Closed,
}

/// See the module docs.
pub(crate) struct Outlet {
    state: Mutex<State>,
    max_bytes: usize,
    /// Notified when the outlet finishes (see [`finished`](Self::finished)).
    done: Notify,
}

struct Waiting {
    frame: Bytes,
    /// Its conflation key, if it has one.
    key: Option<Arc<str>>,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Waiting>,
    /// The position (counted since the start) of `frames[0]`.
    head: u64,
    /// Conflation key → the position of its waiting frame.
    conflated: HashMap<Arc<str>, u64>,
    /// Bytes waiting, conflated frames excepted (the budget's count).
    budgeted: usize,
    /// Bytes waiting, all frames.
    bytes: usize,
    /// Since when frames have been waiting without the body taking any.
    waiting_since: Option<Instant>,
    /// No push is accepted any more (a close frame is queued, or the outlet aborted).
    closed: bool,
    /// The close frame was taken, the body dropped, or the outlet aborted.
    finished: bool,
    /// The body's waker, when it found nothing to take.
    waker: Option<Waker>,
}

impl State {
    fn wake(&mut self) -> Option<Waker> {
        self.waker.take()
    }

    fn enqueue(&mut self, frame: Bytes, key: Option<Arc<str>>) {
        if self.frames.is_empty() {
            self.waiting_since = Some(Instant::now());
        }
        self.bytes += frame.len();
        if key.is_none() {
            self.budgeted += frame.len();
        }
        self.frames.push_back(Waiting { frame, key });
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.conflated.clear();
        self.head = 0;
        self.bytes = 0;
        self.budgeted = 0;
        self.waiting_since = None;
    }
}

impl Outlet {
    /// An open outlet holding at most `max_bytes` of unconflated frames.
    pub(crate) fn new(max_bytes: usize) -> Arc<Outlet> {
        Arc::new(Outlet {
            state: Mutex::new(State::default()),
            max_bytes,
            done: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the queue consistent (every change is a
        // few plain assignments): go on with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a frame, within the budget.
    pub(crate) fn push(&self, frame: Bytes) -> Pushed {
        let mut state = self.lock();
        if state.closed {
            return Pushed::Closed;
        }
        if state.budgeted + frame.len() > self.max_bytes {
            return Pushed::OverBudget;
        }
        state.enqueue(frame, None);
        let waker = state.wake();
        drop(state);
        wake(waker)
    }

    /// Queues a frame of conflation key `key`: it replaces the waiting frame of that key
    /// in place, if there is one. Never over the budget.
    pub(crate) fn push_conflated(&self, key: &Arc<str>, frame: Bytes) -> Pushed {
        let mut state = self.lock();
        if state.closed {
            return Pushed::Closed;
        }
        if let Some(&at) = state.conflated.get(key) {
            let index = (at - state.head) as usize;
            let len = frame.len();
            let old = std::mem::replace(&mut state.frames[index].frame, frame);
            state.bytes = state.bytes + len - old.len();
            return Pushed::Replaced;
        }
        let at = state.head + state.frames.len() as u64;
        state.conflated.insert(key.clone(), at);
        state.enqueue(frame, Some(key.clone()));
        let waker = state.wake();
        drop(state);
        wake(waker)
    }

    /// Queues a close frame and refuses every later push. With `drop_waiting`, the
    /// frames waiting are dropped first (a close the client is owed at once); else the
    /// close frame follows them. False if the outlet was closed already.
    pub(crate) fn close(&self, frame: Bytes, drop_waiting: bool) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        if drop_waiting {
            state.clear();
        }
        state.closed = true;
        state.enqueue(frame, None);
        let waker = state.wake();
        drop(state);
        wake(waker);
        true
    }

    /// Ends the outlet at once: the frames waiting are dropped, the body ends without a
    /// close frame (the connection is gone, or the session is).
    pub(crate) fn abort(&self) {
        let mut state = self.lock();
        state.clear();
        state.closed = true;
        let waker = state.wake();
        let newly = !std::mem::replace(&mut state.finished, true);
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        if newly {
            self.done.notify_waiters();
        }
    }

    /// Whether a close frame was queued (or the outlet aborted).
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// How long frames have been waiting with none taken by the socket (zero when none
    /// waits).
    pub(crate) fn stalled_for(&self, now: Instant) -> Duration {
        self.lock()
            .waiting_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// Bytes waiting (all frames, conflated ones included).
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Resolves once the close frame was handed to actix-web, the body was dropped (the
    /// connection is gone), or the outlet was aborted.
    pub(crate) async fn finished(&self) {
        loop {
            let notified = self.done.notified();
            if self.lock().finished {
                return;
            }
            notified.await;
        }
    }

    fn finish(&self) {
        let newly = !std::mem::replace(&mut self.lock().finished, true);
        if newly {
            self.done.notify_waiters();
        }
    }

    /// Takes frames for the socket, up to [`TAKE_AT_ONCE`] bytes (at least one frame)
    /// into `into`. `Ready(false)` when the close frame was among them or the outlet is
    /// finished: the body ends after them.
    fn take(&self, into: &mut VecDeque<Bytes>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut state = self.lock();
        if state.frames.is_empty() {
            if state.finished || state.closed {
                // Closed with nothing waiting: the close frame was taken already.
                drop(state);
                self.finish();
                return Poll::Ready(false);
            }
            state.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut taken = 0;
        while taken < TAKE_AT_ONCE {
            let Some(waiting) = state.frames.pop_front() else {
                break;
            };
            let at = state.head;
            state.head += 1;
            state.bytes -= waiting.frame.len();
            match &waiting.key {
                Some(key) => {
                    if state.conflated.get(key) == Some(&at) {
                        state.conflated.remove(key);
                    }
                }
                None => state.budgeted -= waiting.frame.len(),
            }
            taken += waiting.frame.len();
            into.push_back(waiting.frame);
        }
        state.waiting_since = (!state.frames.is_empty()).then(Instant::now);
        let last = state.closed && state.frames.is_empty();
        drop(state);
        Poll::Ready(!last)
    }

    /// The body of the 101 response: the frames of this outlet, as actix-web takes them.
    pub(crate) fn body(self: &Arc<Self>) -> OutletBody {
        OutletBody {
            outlet: self.clone(),
            taken: VecDeque::new(),
            ends: false,
        }
    }
}

fn wake(waker: Option<Waker>) -> Pushed {
    if let Some(waker) = waker {
        waker.wake();
    }
    Pushed::Queued
}

/// The body of a session's 101 response (see the module docs). Dropping it (actix-web
/// drops it when the connection ends) finishes the outlet.
pub(crate) struct OutletBody {
    outlet: Arc<Outlet>,
    /// Frames taken from the outlet, not yet handed to actix-web.
    taken: VecDeque<Bytes>,
    /// The outlet is done: end once `taken` is handed over.
    ends: bool,
}

impl Stream for OutletBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(frame) = this.taken.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.ends {
            this.outlet.finish();
            return Poll::Ready(None);
        }
        match this.outlet.take(&mut this.taken, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(more) => {
                this.ends = !more;
                match this.taken.pop_front() {
                    Some(frame) => Poll::Ready(Some(Ok(frame))),
                    None => {
                        this.outlet.finish();
                        Poll::Ready(None)
                    }
                }
            }
        }
    }
}

impl Drop for OutletBody {
    fn drop(&mut self) {
        self.outlet.abort();
    }
}

/// Concatenates frames (tests, and callers that want one buffer).
#[cfg(test)]
fn concat(frames: &VecDeque<Bytes>) -> bytes::BytesMut {
    let mut out = bytes::BytesMut::new();
    for frame in frames {
        out.extend_from_slice(frame);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::task::Wake;

    use super::*;

    struct Counting(std::sync::atomic::AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn waker() -> (Arc<Counting>, Waker) {
        let counting = Arc::new(Counting(Default::default()));
        (counting.clone(), Waker::from(counting))
    }

    fn wakes(counting: &Counting) -> usize {
        counting.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Polls the body until it is pending or ends; the bytes it gave, and whether it
    /// ended.
    fn drain(body: &mut OutletBody, waker: &Waker) -> (Vec<u8>, bool) {
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut *body).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => out.extend_from_slice(&frame),
                Poll::Ready(None) => return (out, true),
                Poll::Pending => return (out, false),
            }
        }
    }

    fn frame(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn frames_go_out_in_order_and_a_push_wakes_a_waiting_body() {
        let outlet = Outlet::new(1024);
        let mut body = outlet.body();
        let (counting, waker) = waker();
        assert_eq!(drain(&mut body, &waker), (vec![], false));
        assert_eq!(outlet.push(frame("a")), Pushed::Queued);
        assert_eq!(wakes(&counting), 1);
        assert_eq!(outlet.push(frame("b")), Pushed::Queued);
        assert_eq!(wakes(&counting), 1, "one wake until the body polls again");
        assert_eq!(outlet.queued_bytes(), 2);
        assert_eq!(drain(&mut body, &waker), (b"ab".to_vec(), false));
        assert_eq!(outlet.queued_bytes(), 0);
    }

    #[test]
    fn the_budget_counts_bytes_waiting_and_comes_back_when_they_are_taken() {
        let outlet = Outlet::new(10);
        let mut body = outlet.body();
        let (_, waker) = waker();
        assert_eq!(outlet.push(frame("123456")), Pushed::Queued);
        assert_eq!(outlet.push(frame("7890")), Pushed::Queued);
        assert_eq!(outlet.push(frame("x")), Pushed::OverBudget);
        assert_eq!(outlet.queued_bytes(), 10);
        drain(&mut body, &waker);
        assert_eq!(outlet.push(frame("0123456789")), Pushed::Queued);
    }

    #[test]
    fn a_conflated_frame_replaces_the_waiting_one_in_place_and_is_not_budgeted() {
        let outlet = Outlet::new(4);
        let mut body = outlet.body();
        let (_, waker) = waker();
        let btc: Arc<str> = "px.btc".into();
        let eth: Arc<str> = "px.eth".into();
        assert_eq!(outlet.push_conflated(&btc, frame("B1")), Pushed::Queued);
        assert_eq!(outlet.push(frame("n1")), Pushed::Queued);
        assert_eq!(outlet.push_conflated(&eth, frame("E1")), Pushed::Queued);
        assert_eq!(outlet.push_conflated(&btc, frame("B2")), Pushed::Replaced);
        assert_eq!(outlet.push_conflated(&btc, frame("B333")), Pushed::Replaced);
        assert_eq!(outlet.push(frame("n2")), Pushed::Queued);
        assert_eq!(outlet.push(frame("n")), Pushed::OverBudget, "4 unconflated");
        assert_eq!(outlet.queued_bytes(), 4 + 2 + 2 + 2);
        assert_eq!(drain(&mut body, &waker), (b"B333n1E1n2".to_vec(), false));
        // Taken: the next one of the key queues anew, at the end.
        assert_eq!(outlet.push(frame("n3")), Pushed::Queued);
        assert_eq!(outlet.push_conflated(&btc, frame("B4")), Pushed::Queued);
        assert_eq!(drain(&mut body, &waker), (b"n3B4".to_vec(), false));
    }

    #[test]
    fn a_close_follows_the_waiting_frames_or_replaces_them_then_the_body_ends() {
        for drop_waiting in [false, true] {
            let outlet = Outlet::new(1024);
            let mut body = outlet.body();
            let (_, waker) = waker();
            outlet.push(frame("a"));
            assert!(outlet.close(frame("CLOSE"), drop_waiting));
            assert!(!outlet.close(frame("AGAIN"), drop_waiting));
            assert_eq!(outlet.push(frame("late")), Pushed::Closed);
            let expected: &[u8] = if drop_waiting { b"CLOSE" } else { b"aCLOSE" };
            assert_eq!(drain(&mut body, &waker), (expected.to_vec(), true));
        }
    }

    #[actix_rt::test]
    async fn finished_resolves_when_the_close_frame_is_taken_or_the_body_dropped() {
        let outlet = Outlet::new(1024);
        let mut body = outlet.body();
        let (_, waker) = waker();
        outlet.close(frame("CLOSE"), false);
        let waiting = {
            let outlet = outlet.clone();
            actix_rt::spawn(async move { outlet.finished().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(drain(&mut body, &waker), (b"CLOSE".to_vec(), true));
        waiting.await.unwrap();

        let outlet = Outlet::new(1024);
        let body = outlet.body();
        drop(body);
        outlet.finished().await;
        assert_eq!(outlet.push(frame("x")), Pushed::Closed);
    }

    #[test]
    fn stalled_for_counts_from_the_first_waiting_frame_and_resets_when_taken() {
        let outlet = Outlet::new(1024);
        let mut body = outlet.body();
        let (_, waker) = waker();
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(outlet.stalled_for(later), Duration::ZERO);
        outlet.push(frame("a"));
        assert!(outlet.stalled_for(later) >= Duration::from_secs(59));
        drain(&mut body, &waker);
        assert_eq!(outlet.stalled_for(later), Duration::ZERO);
    }

    #[test]
    fn the_body_takes_a_bounded_batch_at_once() {
        let outlet = Outlet::new(1 << 20);
        let big = Bytes::from(vec![b'x'; 1000]);
        for _ in 0..200 {
            outlet.push(big.clone());
        }
        let (_, waker) = waker();
        let mut taken = VecDeque::new();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(outlet.take(&mut taken, &mut cx), Poll::Ready(true));
        assert_eq!(concat(&taken).len(), TAKE_AT_ONCE.div_ceil(1000) * 1000);
        assert_eq!(outlet.queued_bytes(), 200_000 - concat(&taken).len());
    }

    /// Wakes a parked thread (the body's poller in the stress test).
    struct Unpark(std::thread::Thread);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    #[test]
    fn a_pusher_thread_and_a_taker_thread_lose_duplicate_and_reorder_nothing() {
        // Frames are 9 bytes: a kind byte ('n' plain, or the conflation key), then the
        // sequence number. Plain frames must all arrive in order; each key's frames in
        // increasing order, its last one included.
        const N: u64 = 200_000;
        let outlet = Outlet::new(1 << 16);
        let keys: [Arc<str>; 2] = ["a".into(), "b".into()];
        let taker = {
            let outlet = outlet.clone();
            std::thread::spawn(move || {
                let mut body = outlet.body();
                let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
                let mut cx = Context::from_waker(&waker);
                let mut got = Vec::new();
                loop {
                    match Pin::new(&mut body).poll_next(&mut cx) {
                        Poll::Ready(Some(Ok(frame))) => got.push(frame),
                        Poll::Ready(None) => return got,
                        Poll::Pending => std::thread::park(),
                    }
                }
            })
        };
        let frame = |kind: u8, n: u64| {
            let mut bytes = vec![kind];
            bytes.extend_from_slice(&n.to_be_bytes());
            Bytes::from(bytes)
        };
        let mut pushed_plain = 0u64;
        for n in 0..N {
            let outcome = if n % 3 == 0 {
                let key = &keys[(n / 3 % 2) as usize];
                outlet.push_conflated(key, frame(key.as_bytes()[0], n))
            } else {
                loop {
                    match outlet.push(frame(b'n', n)) {
                        Pushed::OverBudget => std::thread::yield_now(),
                        other => break other,
                    }
                }
            };
            assert_ne!(outcome, Pushed::Closed);
            if n % 3 != 0 {
                pushed_plain += 1;
            }
        }
        assert!(outlet.close(frame(b'c', N), false));
        let got = taker.join().unwrap();
        let mut plain = Vec::new();
        let mut per_key: HashMap<u8, Vec<u64>> = HashMap::new();
        for f in &got[..got.len() - 1] {
            let n = u64::from_be_bytes(f[1..9].try_into().unwrap());
            match f[0] {
                b'n' => plain.push(n),
                key => per_key.entry(key).or_default().push(n),
            }
        }
        assert_eq!(got.last().map(|f| f[0]), Some(b'c'), "the close frame last");
        assert_eq!(plain.len() as u64, pushed_plain);
        assert!(
            plain.windows(2).all(|w| w[0] < w[1]),
            "plain in order, once each"
        );
        for (index, key) in [b'a', b'b'].into_iter().enumerate() {
            let seen = &per_key[&key];
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{key} in order");
            let last = (0..N)
                .filter(|n| n % 3 == 0 && n / 3 % 2 == index as u64)
                .max();
            assert_eq!(seen.last().copied(), last, "{key}'s latest arrived");
        }
    }
}
