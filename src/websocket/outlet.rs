//! A session's outlet: the encoded frames waiting for its socket, and the body of its
//! 101 response that hands them to actix-web.
//!
//! The hub (broadcasts, the `welcome`, and the `ack` of a subscription change: see the
//! session's `## Barriers`) and the session (its other replies, pings, closes) push whole
//! WebSocket frames into the [`Outlet`]; the response's [`OutletBody`] hands them to
//! actix-web's dispatcher as it has room in its write buffer: small frames waiting
//! together in chunks of up to [`SLICE`] bytes (one hand-over for a run of them, as a
//! client behind in a burst accumulates them), large frames in slices of that size. Nothing else stands between the hub and the socket: a broadcast is
//! queued by the hub straight to every session, with no actor message per session.
//!
//! ## Flow control, in bytes
//!
//! The outlet counts what waits (pushed and not yet handed over): each frame's bytes
//! plus [`FRAME_OVERHEAD`] for its bookkeeping, so that a flood of tiny frames (pongs to
//! a ping flood) is bounded in memory, not only in bytes. A push that would take the
//! count past `max_queued_bytes` is refused ([`Pushed::OverBudget`]): the pusher closes
//! the session with 4008 (slow consumer). One frame is always accepted into an empty
//! outlet, however large (a message bigger than the budget does not close every
//! session). [`Outlet::stalled_for`] says how long unconflated frames have been waiting
//! while the socket took nothing (each slice handed over counts as progress): past
//! `write_timeout`, the session closes with 4008 too. A client that reads, even slowly,
//! keeps taking bytes, so a burst within the budget never closes it.
//!
//! ## Conflation
//!
//! A frame pushed with a conflation key (the topic of a `"conflate": true`
//! subscription) replaces, in place, the frame of the same key still waiting: the queue
//! holds at most one waiting frame per key, and the newer one keeps the older one's
//! place in the order. Replacing never reaches back across a barrier (the `ack` of a
//! subscription change, [`Outlet::barrier`]) nor across an unconflated frame of the same
//! topic, so a topic's `seq` never goes backwards and the `ack` stays a barrier.
//! Conflated frames never count toward the budget nor toward `stalled_for` (a client
//! behind on a conflated subscription gets the latest, never a 4008); their own bound,
//! `max_queued_bytes` again, holds memory when a pattern matches ever new topics: past
//! it the push is [`Pushed::OverBudget`].
//!
//! ## Closing
//!
//! [`Outlet::close`] queues a close frame (after the frames waiting, or instead of them)
//! and refuses every later push. Once the body has handed the close frame over, it stays
//! open until the closing handshake is over ([`Outlet::end_after_close`]: the client's
//! close arrived, or the session stopped waiting for it), so that actix-web goes on
//! reading the request's payload, where the client's close comes; then the body ends,
//! runs the hook set by [`Outlet::on_end`] (the session's: it shuts the socket's read
//! side, so that actix-web ends the connection at once instead of lingering for the
//! client to end its side, RFC 6455 7.1.1), and actix-web closes the connection.
//! [`Outlet::is_finished`] tells when the body ended that way, was dropped (the
//! connection is gone), or the outlet aborted.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;

/// The most the body hands to actix-web at once, in bytes: a larger frame goes in
/// slices, so that progress is seen as the socket takes it.
pub(crate) const SLICE: usize = 16 << 10;

/// What a waiting frame costs the budget beyond its bytes.
pub(crate) const FRAME_OVERHEAD: usize = 64;

/// The outcome of a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued at the end.
    Queued,
    /// Replaced a waiting frame of the same conflation key, in its place.
    Replaced,
    /// Not queued: what waits would pass the budget. The pusher closes the session
    /// (4008).
    OverBudget,
    /// Not queued: the outlet is closed.
    Closed,
}

/// See the module docs.
pub(crate) struct Outlet {
    state: Mutex<State>,
    max_bytes: usize,
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
    /// Conflation key → the position of its waiting frame, for the frames that may
    /// still be replaced (none before the last barrier).
    conflated: HashMap<Arc<str>, u64>,
    /// What the unconflated frames waiting cost (bytes and overhead): the budget's count.
    budgeted: usize,
    /// Likewise for the conflated ones.
    conflated_cost: usize,
    /// Since when the socket took nothing while frames waited (None: nothing waits).
    waiting_since: Option<Instant>,
    /// No push is accepted any more (a close frame is queued, or the outlet aborted).
    closed: bool,
    /// When the close frame was handed over.
    close_sent: Option<Instant>,
    /// The body ends once the close frame is handed over (else it waits for this).
    end_after_close: bool,
    /// The body ended after the close frame, was dropped, or the outlet aborted.
    finished: bool,
    /// Run when the body ends after the close frame.
    on_end: Option<Box<dyn FnOnce() + Send>>,
    /// The body's waker, when it found nothing to take.
    waker: Option<Waker>,
}

fn cost(frame: &Bytes) -> usize {
    frame.len() + FRAME_OVERHEAD
}

impl State {
    fn enqueue(&mut self, frame: Bytes, key: Option<Arc<str>>) -> Option<Waker> {
        if self.frames.is_empty() {
            self.waiting_since = Some(Instant::now());
        }
        match key {
            None => self.budgeted += cost(&frame),
            Some(_) => self.conflated_cost += cost(&frame),
        }
        self.frames.push_back(Waiting { frame, key });
        self.waker.take()
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.conflated.clear();
        self.head = 0;
        self.budgeted = 0;
        self.conflated_cost = 0;
        self.waiting_since = None;
    }

    /// Takes the first waiting frame (the caller records the progress).
    fn pop(&mut self) -> Option<Bytes> {
        let waiting = self.frames.pop_front()?;
        let at = self.head;
        self.head += 1;
        match &waiting.key {
            Some(key) => {
                self.conflated_cost -= cost(&waiting.frame);
                if self.conflated.get(key) == Some(&at) {
                    self.conflated.remove(key);
                }
            }
            None => self.budgeted -= cost(&waiting.frame),
        }
        Some(waiting.frame)
    }

    /// Takes the first waiting frame, with the frames after it that fit in one
    /// [`SLICE`] beside it, as one chunk (a large frame alone): one hand-over to actix-web
    /// for a run of small frames, as a client that falls behind accumulates them.
    fn pop_batch(&mut self) -> Option<Bytes> {
        let first = self.pop()?;
        let mut len = first.len();
        let mut more = 0;
        for waiting in &self.frames {
            if len + waiting.frame.len() > SLICE {
                break;
            }
            len += waiting.frame.len();
            more += 1;
        }
        if more == 0 {
            return Some(first);
        }
        let mut batch = bytes::BytesMut::with_capacity(len);
        batch.extend_from_slice(&first);
        for _ in 0..more {
            if let Some(frame) = self.pop() {
                batch.extend_from_slice(&frame);
            }
        }
        Some(batch.freeze())
    }

    /// The socket took bytes.
    fn progress(&mut self) {
        self.waiting_since = (!self.frames.is_empty()).then(Instant::now);
    }
}

impl Outlet {
    /// An open outlet holding at most `max_bytes` of unconflated frames (and as much
    /// again of conflated ones).
    pub(crate) fn new(max_bytes: usize) -> Arc<Outlet> {
        Arc::new(Outlet {
            state: Mutex::new(State::default()),
            max_bytes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the queue consistent (every change is a
        // few plain assignments): go on with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues an unconflated frame, within the budget. `topic`: the topic of the
    /// message it carries, if any (a waiting conflated frame of that topic can no longer
    /// be replaced: the newer one would overtake this one).
    pub(crate) fn push(&self, frame: Bytes, topic: Option<&str>) -> Pushed {
        let mut state = self.lock();
        if state.closed {
            return Pushed::Closed;
        }
        if state.budgeted > 0 && state.budgeted + cost(&frame) > self.max_bytes {
            return Pushed::OverBudget;
        }
        if let Some(topic) = topic.filter(|_| !state.conflated.is_empty()) {
            state.conflated.remove(topic);
        }
        let waker = state.enqueue(frame, None);
        drop(state);
        wake(waker);
        Pushed::Queued
    }

    /// Queues a frame that is a barrier (an `ack`): no frame queued before it can be
    /// replaced by a conflated one queued after it.
    pub(crate) fn push_barrier(&self, frame: Bytes) -> Pushed {
        self.barrier();
        self.push(frame, None)
    }

    /// Ends every replacement in progress: the conflated frames waiting stay as they
    /// are (the subscriptions changed).
    pub(crate) fn barrier(&self) {
        self.lock().conflated.clear();
    }

    /// Queues a frame of conflation key `key`: it replaces the waiting frame of that key
    /// in place, if there is one since the last barrier. Never over the budget of
    /// unconflated frames; over its own bound, [`Pushed::OverBudget`].
    pub(crate) fn push_conflated(&self, key: &Arc<str>, frame: Bytes) -> Pushed {
        let mut state = self.lock();
        if state.closed {
            return Pushed::Closed;
        }
        if let Some(&at) = state.conflated.get(key) {
            let index = (at - state.head) as usize;
            let new_cost = cost(&frame);
            let old = std::mem::replace(&mut state.frames[index].frame, frame);
            state.conflated_cost = state.conflated_cost + new_cost - cost(&old);
            return Pushed::Replaced;
        }
        if state.conflated_cost > 0 && state.conflated_cost + cost(&frame) > self.max_bytes {
            return Pushed::OverBudget;
        }
        let at = state.head + state.frames.len() as u64;
        state.conflated.insert(key.clone(), at);
        let waker = state.enqueue(frame, Some(key.clone()));
        drop(state);
        wake(waker);
        Pushed::Queued
    }

    /// Queues a close frame and refuses every later push. With `drop_waiting`, the
    /// frames waiting are dropped first; else the close frame follows them. False if the
    /// outlet was closed already.
    pub(crate) fn close(&self, frame: Bytes, drop_waiting: bool) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        if drop_waiting {
            state.clear();
        }
        state.closed = true;
        let waker = state.enqueue(frame, None);
        drop(state);
        wake(waker);
        true
    }

    /// The closing handshake is over (or no longer waited for): the body ends once the
    /// close frame is handed over, at once if it was.
    pub(crate) fn end_after_close(&self) {
        let mut state = self.lock();
        if std::mem::replace(&mut state.end_after_close, true) {
            return;
        }
        let waker = state.waker.take();
        drop(state);
        wake(waker);
    }

    /// Sets what runs when the body ends after the close frame (not when the outlet is
    /// aborted, nor when the body is dropped).
    pub(crate) fn on_end(&self, hook: impl FnOnce() + Send + 'static) {
        self.lock().on_end = Some(Box::new(hook));
    }

    /// Ends the outlet at once: the frames waiting are dropped, the body ends without a
    /// close frame (the connection is gone, or the session is).
    pub(crate) fn abort(&self) {
        let mut state = self.lock();
        state.clear();
        state.closed = true;
        state.finished = true;
        state.on_end = None;
        let waker = state.waker.take();
        drop(state);
        wake(waker);
    }

    /// Whether a close frame was queued (or the outlet aborted).
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Whether the body ended after the close frame, was dropped, or the outlet
    /// aborted.
    pub(crate) fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// How long ago the close frame was handed over, if it was.
    pub(crate) fn close_sent_for(&self, now: Instant) -> Option<Duration> {
        let sent = self.lock().close_sent?;
        Some(now.saturating_duration_since(sent))
    }

    /// How long unconflated frames have been waiting with the socket taking nothing
    /// (zero when only conflated frames, or none, wait).
    pub(crate) fn stalled_for(&self, now: Instant) -> Duration {
        let state = self.lock();
        match state.waiting_since {
            Some(since) if state.budgeted > 0 => now.saturating_duration_since(since),
            _ => Duration::ZERO,
        }
    }

    /// What waits, in the budget's count (unconflated frames).
    #[cfg(test)]
    pub(crate) fn queued_cost(&self) -> usize {
        self.lock().budgeted
    }

    /// The next frame for the socket; `Ready(None)` once the close frame was handed
    /// over and the handshake is over, or the outlet finished.
    fn take(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut state = self.lock();
        if let Some(frame) = state.pop_batch() {
            state.progress();
            if state.closed && state.frames.is_empty() {
                // The close frame: the last one queued (no push is taken after it).
                state.close_sent = Some(Instant::now());
            }
            return Poll::Ready(Some(frame));
        }
        if state.finished {
            return Poll::Ready(None);
        }
        if state.close_sent.is_some() && state.end_after_close {
            state.finished = true;
            let hook = state.on_end.take();
            drop(state);
            if let Some(hook) = hook {
                hook();
            }
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The socket took part of a frame.
    fn progress(&self) {
        self.lock().progress();
    }

    /// The body of the 101 response: the frames of this outlet, as actix-web takes them.
    pub(crate) fn body(self: &Arc<Self>) -> OutletBody {
        OutletBody {
            outlet: self.clone(),
            rest: Bytes::new(),
        }
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The body of a session's 101 response (see the module docs). Dropping it (actix-web
/// drops it when the connection ends) aborts the outlet.
pub(crate) struct OutletBody {
    outlet: Arc<Outlet>,
    /// What is left of a frame larger than [`SLICE`].
    rest: Bytes,
}

impl Stream for OutletBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.rest.is_empty() {
            match this.outlet.take(cx) {
                Poll::Ready(Some(frame)) => this.rest = frame,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        } else {
            this.outlet.progress();
        }
        let slice = if this.rest.len() > SLICE {
            this.rest.split_to(SLICE)
        } else {
            std::mem::take(&mut this.rest)
        };
        Poll::Ready(Some(Ok(slice)))
    }
}

impl Drop for OutletBody {
    fn drop(&mut self) {
        self.outlet.abort();
    }
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

    /// One poll of the body.
    fn poll_once(body: &mut OutletBody, waker: &Waker) -> Poll<Option<Bytes>> {
        let mut cx = Context::from_waker(waker);
        Pin::new(&mut *body)
            .poll_next(&mut cx)
            .map(|item| item.map(|Ok(bytes)| bytes))
    }

    fn frame(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    /// The budget a frame of `len` bytes takes.
    fn costs(len: usize) -> usize {
        len + FRAME_OVERHEAD
    }

    #[test]
    fn frames_go_out_in_order_and_a_push_wakes_a_waiting_body() {
        let outlet = Outlet::new(1024);
        let mut body = outlet.body();
        let (counting, waker) = waker();
        assert_eq!(drain(&mut body, &waker), (vec![], false));
        assert_eq!(outlet.push(frame("a"), None), Pushed::Queued);
        assert_eq!(wakes(&counting), 1);
        assert_eq!(outlet.push(frame("b"), None), Pushed::Queued);
        assert_eq!(wakes(&counting), 1, "one wake until the body polls again");
        assert_eq!(outlet.queued_cost(), 2 * costs(1));
        assert_eq!(drain(&mut body, &waker), (b"ab".to_vec(), false));
        assert_eq!(outlet.queued_cost(), 0);
    }

    #[test]
    fn small_waiting_frames_go_in_one_chunk_of_at_most_a_slice_and_a_large_one_alone() {
        let outlet = Outlet::new(1 << 20);
        let mut body = outlet.body();
        let (_, waker) = waker();
        let small = |byte: u8| Bytes::from(vec![byte; SLICE / 4]);
        for byte in b"abcde" {
            outlet.push(small(*byte), None);
        }
        outlet.push(Bytes::from(vec![b'L'; SLICE + 1]), None);
        outlet.push(small(b'z'), None);
        let mut chunks = Vec::new();
        while let Poll::Ready(Some(chunk)) = poll_once(&mut body, &waker) {
            chunks.push(chunk);
        }
        let shape: Vec<(u8, usize)> = chunks.iter().map(|c| (c[0], c.len())).collect();
        assert_eq!(
            shape,
            [
                (b'a', SLICE),
                (b'e', SLICE / 4),
                (b'L', SLICE),
                (b'L', 1),
                (b'z', SLICE / 4)
            ]
        );
        let all: Vec<u8> = chunks.concat();
        let mut expected = Vec::new();
        for byte in b"abcde" {
            expected.extend_from_slice(&small(*byte));
        }
        expected.extend_from_slice(&[b'L'; SLICE + 1]);
        expected.extend_from_slice(&small(b'z'));
        assert_eq!(all, expected, "every byte once, in order");
        assert_eq!(outlet.queued_cost(), 0);
    }

    #[test]
    fn the_budget_counts_bytes_and_overhead_waiting_and_comes_back_when_taken() {
        let outlet = Outlet::new(costs(6) + costs(4));
        let mut body = outlet.body();
        let (_, waker) = waker();
        assert_eq!(outlet.push(frame("123456"), None), Pushed::Queued);
        assert_eq!(outlet.push(frame("7890"), None), Pushed::Queued);
        assert_eq!(outlet.push(frame("x"), None), Pushed::OverBudget);
        drain(&mut body, &waker);
        // An empty outlet takes one frame, however large.
        let huge = Bytes::from(vec![b'h'; 10_000]);
        assert_eq!(outlet.push(huge, None), Pushed::Queued);
        assert_eq!(outlet.push(frame("x"), None), Pushed::OverBudget);
    }

    #[test]
    fn a_conflated_frame_replaces_the_waiting_one_in_place_and_is_not_budgeted() {
        let outlet = Outlet::new(costs(2) * 2);
        let mut body = outlet.body();
        let (_, waker) = waker();
        let btc: Arc<str> = "px.btc".into();
        let eth: Arc<str> = "px.eth".into();
        assert_eq!(outlet.push_conflated(&btc, frame("B1")), Pushed::Queued);
        assert_eq!(outlet.push(frame("n1"), None), Pushed::Queued);
        assert_eq!(outlet.push_conflated(&eth, frame("E1")), Pushed::Queued);
        assert_eq!(outlet.push_conflated(&btc, frame("B2")), Pushed::Replaced);
        assert_eq!(outlet.push_conflated(&btc, frame("B333")), Pushed::Replaced);
        assert_eq!(outlet.push(frame("n2"), None), Pushed::Queued);
        assert_eq!(
            outlet.push(frame("n"), None),
            Pushed::OverBudget,
            "2 unconflated"
        );
        assert_eq!(outlet.queued_cost(), 2 * costs(2));
        assert_eq!(drain(&mut body, &waker), (b"B333n1E1n2".to_vec(), false));
        // Taken: the next one of the key queues anew, at the end.
        assert_eq!(outlet.push(frame("n3"), None), Pushed::Queued);
        assert_eq!(outlet.push_conflated(&btc, frame("B4")), Pushed::Queued);
        assert_eq!(drain(&mut body, &waker), (b"n3B4".to_vec(), false));
    }

    #[test]
    fn replacing_never_reaches_back_across_a_barrier_or_a_plain_frame_of_the_topic() {
        let outlet = Outlet::new(1 << 20);
        let mut body = outlet.body();
        let (_, waker) = waker();
        let a: Arc<str> = "px.a".into();
        assert_eq!(outlet.push_conflated(&a, frame("a5 ")), Pushed::Queued);
        assert_eq!(outlet.push_barrier(frame("ack1 ")), Pushed::Queued);
        assert_eq!(outlet.push_conflated(&a, frame("a6 ")), Pushed::Queued);
        assert_eq!(outlet.push(frame("a7 "), Some("px.a")), Pushed::Queued);
        assert_eq!(outlet.push_conflated(&a, frame("a8 ")), Pushed::Queued);
        assert_eq!(outlet.push_conflated(&a, frame("a9 ")), Pushed::Replaced);
        outlet.barrier();
        assert_eq!(outlet.push_conflated(&a, frame("a10")), Pushed::Queued);
        assert_eq!(
            drain(&mut body, &waker),
            (b"a5 ack1 a6 a7 a9 a10".to_vec(), false)
        );
    }

    #[test]
    fn conflated_frames_of_ever_new_topics_have_a_bound_of_their_own() {
        let outlet = Outlet::new(costs(1) * 3);
        let keys: Vec<Arc<str>> = (0..4).map(|n| format!("t.{n}").into()).collect();
        for key in &keys[..3] {
            assert_eq!(outlet.push_conflated(key, frame("x")), Pushed::Queued);
        }
        assert_eq!(
            outlet.push_conflated(&keys[3], frame("x")),
            Pushed::OverBudget
        );
        assert_eq!(
            outlet.push_conflated(&keys[0], frame("y")),
            Pushed::Replaced
        );
        assert_eq!(
            outlet.queued_cost(),
            0,
            "none in the budget of unconflated frames"
        );
    }

    #[test]
    fn a_close_follows_the_waiting_frames_or_replaces_them_then_the_body_waits_for_the_handshake() {
        for drop_waiting in [false, true] {
            let outlet = Outlet::new(1024);
            let mut body = outlet.body();
            let (counting, waker) = waker();
            let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = ended.clone();
            outlet.on_end(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
            outlet.push(frame("a"), None);
            assert!(outlet.close(frame("CLOSE"), drop_waiting));
            assert!(!outlet.close(frame("AGAIN"), drop_waiting));
            assert_eq!(outlet.push(frame("late"), None), Pushed::Closed);
            let later = Instant::now() + Duration::from_secs(60);
            assert_eq!(outlet.close_sent_for(later), None);
            let expected: &[u8] = if drop_waiting { b"CLOSE" } else { b"aCLOSE" };
            assert_eq!(drain(&mut body, &waker), (expected.to_vec(), false));
            assert!(outlet.close_sent_for(later) >= Some(Duration::from_secs(59)));
            assert!(!outlet.is_finished(), "open until the handshake is over");
            let wakes_before = wakes(&counting);
            outlet.end_after_close();
            assert_eq!(
                wakes(&counting),
                wakes_before + 1,
                "the waiting body is woken"
            );
            assert_eq!(ended.load(std::sync::atomic::Ordering::Relaxed), 0);
            assert_eq!(drain(&mut body, &waker), (vec![], true));
            assert!(outlet.is_finished());
            assert_eq!(ended.load(std::sync::atomic::Ordering::Relaxed), 1, "once");
            assert_eq!(drain(&mut body, &waker), (vec![], true));
            assert_eq!(ended.load(std::sync::atomic::Ordering::Relaxed), 1, "once");
        }
    }

    #[test]
    fn a_handshake_over_before_the_close_frame_goes_ends_the_body_right_after_it() {
        let outlet = Outlet::new(1024);
        let mut body = outlet.body();
        let (_, waker) = waker();
        outlet.end_after_close();
        outlet.push(frame("a"), None);
        assert_eq!(
            drain(&mut body, &waker),
            (b"a".to_vec(), false),
            "not closed"
        );
        outlet.close(frame("CLOSE"), false);
        assert_eq!(drain(&mut body, &waker), (b"CLOSE".to_vec(), true));
    }

    #[test]
    fn an_aborted_outlet_ends_its_body_without_the_hook() {
        let outlet = Outlet::new(1024);
        let mut body = outlet.body();
        let (_, waker) = waker();
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ended.clone();
        outlet.on_end(move || flag.store(true, std::sync::atomic::Ordering::Relaxed));
        outlet.push(frame("a"), None);
        outlet.abort();
        assert_eq!(drain(&mut body, &waker), (vec![], true));
        assert!(outlet.is_finished());
        assert!(!ended.load(std::sync::atomic::Ordering::Relaxed));
    }

    #[test]
    fn dropping_the_body_finishes_and_closes_the_outlet() {
        let outlet = Outlet::new(1024);
        drop(outlet.body());
        assert!(outlet.is_finished());
        assert_eq!(outlet.push(frame("x"), None), Pushed::Closed);
    }

    #[test]
    fn stalled_for_counts_unconflated_frames_waiting_with_nothing_taken() {
        let outlet = Outlet::new(1 << 20);
        let mut body = outlet.body();
        let (_, waker) = waker();
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(outlet.stalled_for(later), Duration::ZERO);
        let key: Arc<str> = "px".into();
        outlet.push_conflated(&key, frame("c"));
        assert_eq!(outlet.stalled_for(later), Duration::ZERO, "only conflated");
        outlet.push(frame("a"), None);
        assert!(outlet.stalled_for(later) >= Duration::from_secs(59));
        drain(&mut body, &waker);
        assert_eq!(outlet.stalled_for(later), Duration::ZERO);
    }

    #[test]
    fn a_large_frame_goes_in_slices_each_of_which_is_progress() {
        let outlet = Outlet::new(1 << 20);
        let mut body = outlet.body();
        let (_, waker) = waker();
        let big = Bytes::from((0..40_000u32).map(|n| n as u8).collect::<Vec<_>>());
        outlet.push(big.clone(), None);
        outlet.push(frame("after"), None);
        let mut got = Vec::new();
        let mut slices = 0;
        while got.len() < big.len() {
            let Poll::Ready(Some(slice)) = poll_once(&mut body, &waker) else {
                panic!("a slice");
            };
            assert!(slice.len() <= SLICE);
            got.extend_from_slice(&slice);
            slices += 1;
            // The socket is taking the frame: what waits behind it is not stalled.
            let soon = Instant::now() + Duration::from_millis(1);
            assert!(outlet.stalled_for(soon) < Duration::from_secs(1));
        }
        assert_eq!((got, slices), (big.to_vec(), 3));
        assert_eq!(
            poll_once(&mut body, &waker),
            Poll::Ready(Some(frame("after")))
        );
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
                        // A chunk holds whole frames (never more than a slice of them).
                        Poll::Ready(Some(Ok(chunk))) => {
                            assert!(chunk.len() % 9 == 0 && chunk.len() <= SLICE);
                            got.extend(chunk.chunks(9).map(Bytes::copy_from_slice));
                        }
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
                    match outlet.push(frame(b'n', n), None) {
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
        outlet.end_after_close();
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
