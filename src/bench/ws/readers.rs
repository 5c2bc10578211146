//! The reader threads of the fan-out scenarios: each a current-thread runtime (an actix
//! System) owning a share of the clients, one task per connection.
//!
//! A connection upgrades (offering permessage-deflate or not), reads its `welcome`,
//! subscribes to the topic and reads the `ack`, then reads every frame the server sends:
//! a `message` is timed (its due time `data.sent` → the time its bytes were read) and its
//! `seq` checked to follow the previous one (a gap or a repeat is counted); a compressed
//! one is inflated first; a ping is answered. Counts go to the thread's [`Tally`] once
//! per read, not per frame.
//!
//! ## Inflating once per message and thread
//!
//! The server compresses a broadcast once and sends the same bytes to every compressing
//! session, so a thread that holds 500 of them would inflate the same bytes 500 times:
//! the work of 500 clients on 500 machines, on one generator core. Each thread keeps the
//! last [`MEMO`] compressed payloads it inflated with their text, and reuses the text of a
//! payload whose bytes are exactly the same (compared in full). Every frame is still
//! read, and every text checked; [`Tally::inflated`] counts the payloads actually
//! inflated.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use super::client::{protocol, Conn};
use super::server::own_thread_stat;
use super::wire::{close_code, masked, opcode, Inflater};
use super::{new_histogram, unix_nanos};

/// What a reader thread counted, read by the main thread at any time.
#[derive(Default)]
pub(super) struct Tally {
    /// `message` frames received.
    pub(super) delivered: AtomicU64,
    /// Unix time of the last receipt, ns.
    pub(super) last: AtomicU64,
    /// Bytes of the `message` frames on the wire, headers included.
    pub(super) wire_bytes: AtomicU64,
    /// `message` frames with RSV1 set.
    pub(super) compressed: AtomicU64,
    /// Compressed payloads inflated (the others reused an identical one's text).
    pub(super) inflated: AtomicU64,
    /// `message` frames whose `seq` was not the previous one's + 1 on their connection.
    pub(super) seq_errors: AtomicU64,
    /// Connections whose upgrade agreed to permessage-deflate.
    pub(super) negotiated: AtomicU64,
    /// Connections that ended (or failed) while the scenario ran.
    pub(super) ended: AtomicU64,
    /// The first connection error after the clients were ready.
    pub(super) error: Mutex<Option<String>>,
    /// Due time → receipt, µs, since the main thread last took it.
    pub(super) latency: Mutex<Option<Histogram<u64>>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: Mutex::new(Some(new_histogram())),
            ..Tally::default()
        }
    }

    /// The latencies recorded since the last call.
    pub(super) fn take_latency(&self) -> Histogram<u64> {
        let mut slot = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        slot.replace(new_histogram()).unwrap_or_else(new_histogram)
    }

    fn fail(&self, err: &std::io::Error) {
        self.ended.fetch_add(1, Ordering::Relaxed);
        let mut first = self.error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert_with(|| err.to_string());
    }
}

/// A reader thread; dropping `stop` (or sending on it) ends it.
pub(super) struct Reader {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    /// Its counts.
    pub(super) tally: Arc<Tally>,
    /// The thread's `stat` file (Linux), once its clients are ready.
    pub(super) stat: Option<String>,
}

impl Reader {
    /// Ends the thread (its connections are dropped: the server sees them go).
    pub(super) fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.thread
            .join()
            .map_err(|_| std::io::Error::other("a reader thread panicked"))
    }
}

/// Starts a reader thread with `clients` connections to `addr` subscribed to `topic`,
/// and waits until they all are (or one failed).
pub(super) fn start(
    addr: SocketAddr,
    topic: &'static str,
    clients: usize,
    offer_deflate: bool,
) -> std::io::Result<Reader> {
    let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<Option<String>>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let tally = Arc::new(Tally::new());
    let thread = {
        let tally = tally.clone();
        std::thread::Builder::new()
            .name("bench-ws-reader".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let memo = Rc::new(RefCell::new(Memo::default()));
                    let (up_tx, mut up_rx) = tokio::sync::mpsc::unbounded_channel();
                    let tasks: Vec<_> = (0..clients)
                        .map(|_| {
                            let (up, tally, memo) = (up_tx.clone(), tally.clone(), memo.clone());
                            actix_rt::spawn(async move {
                                match subscribed(addr, topic, offer_deflate).await {
                                    Ok(mut conn) => {
                                        if conn.deflate() {
                                            tally.negotiated.fetch_add(1, Ordering::Relaxed);
                                        }
                                        let _ = up.send(Ok(()));
                                        if let Err(err) = read(&mut conn, &tally, &memo).await {
                                            tally.fail(&err);
                                        } else {
                                            tally.ended.fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                    Err(err) => {
                                        let _ = up.send(Err(err));
                                    }
                                }
                            })
                        })
                        .collect();
                    let mut ready = Ok(own_thread_stat());
                    for _ in 0..clients {
                        match up_rx.recv().await {
                            Some(Ok(())) => {}
                            Some(Err(err)) => {
                                ready = Err(err);
                                break;
                            }
                            None => break,
                        }
                    }
                    let failed = ready.is_err();
                    let _ = ready_tx.send(ready);
                    if !failed {
                        let _ = stop_rx.await;
                    }
                    for task in tasks {
                        task.abort();
                    }
                })
            })?
    };
    let stat = ready_rx
        .recv_timeout(Duration::from_secs(120))
        .map_err(|_| std::io::Error::other("the clients did not connect in time"))??;
    Ok(Reader {
        stop: stop_tx,
        thread,
        tally,
        stat,
    })
}

/// A connection, welcomed, subscribed to `topic` and acknowledged.
async fn subscribed(addr: SocketAddr, topic: &str, offer_deflate: bool) -> std::io::Result<Conn> {
    let mut conn = Conn::connect(addr, offer_deflate).await?;
    expect_text(&mut conn, br#"{"type":"welcome""#).await?;
    let subscribe = format!(r#"{{"type":"subscribe","topic":"{topic}"}}"#);
    conn.send(&masked(opcode::TEXT, subscribe.as_bytes()))
        .await?;
    expect_text(&mut conn, br#"{"type":"ack""#).await?;
    Ok(conn)
}

/// Reads the next frame, which must be an uncompressed text frame starting with `start`.
pub(super) async fn expect_text(conn: &mut Conn, start: &[u8]) -> std::io::Result<()> {
    match conn.next_frame().await? {
        Some((head, text))
            if head.opcode == opcode::TEXT && !head.rsv1 && text.starts_with(start) =>
        {
            Ok(())
        }
        Some((head, text)) => Err(protocol(format!(
            "expected {:?}, got opcode {} (rsv1 {}): {:?}",
            String::from_utf8_lossy(start),
            head.opcode,
            head.rsv1,
            String::from_utf8_lossy(&text[..text.len().min(120)])
        ))),
        None => Err(protocol("the server closed the connection")),
    }
}

/// Reads until the connection ends (a close frame or EOF); an error for anything the
/// bench does not expect of the server.
async fn read(conn: &mut Conn, tally: &Tally, memo: &RefCell<Memo>) -> std::io::Result<()> {
    let mut next_seq = 1;
    let mut latencies = Vec::new();
    let mut pongs = Vec::new();
    loop {
        if !conn.fill().await? {
            return Ok(());
        }
        let now = unix_nanos(SystemTime::now());
        let (mut delivered, mut wire, mut compressed, mut inflated, mut seq_errors) =
            (0, 0, 0, 0, 0);
        let mut closed = None;
        while let Some(frame) = conn.frame()? {
            let head = frame.head;
            if !head.fin || head.opcode == 0 {
                return Err(protocol("a fragmented message (the server sends none)"));
            }
            match head.opcode {
                opcode::TEXT => {
                    let mut memo = memo.borrow_mut();
                    let text = if head.rsv1 {
                        compressed += 1;
                        let (text, fresh) = memo.inflate(frame.payload)?;
                        inflated += u64::from(fresh);
                        text
                    } else {
                        frame.payload
                    };
                    let Some((seq, sent)) = receipt(text) else {
                        continue;
                    };
                    delivered += 1;
                    wire += head.wire_len() as u64;
                    if seq != next_seq {
                        seq_errors += 1;
                    }
                    next_seq = seq + 1;
                    latencies.push((now.saturating_sub(sent) / 1000).max(1));
                }
                opcode::PING => pongs.push(masked(opcode::PONG, frame.payload)),
                opcode::PONG => {}
                opcode::CLOSE => {
                    closed = Some(close_code(frame.payload));
                    break;
                }
                other => return Err(protocol(format!("unexpected opcode {other}"))),
            }
        }
        if delivered > 0 {
            if let Some(hist) = tally
                .latency
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                for us in latencies.drain(..) {
                    let _ = hist.record(us);
                }
            }
            tally.wire_bytes.fetch_add(wire, Ordering::Relaxed);
            tally.compressed.fetch_add(compressed, Ordering::Relaxed);
            tally.inflated.fetch_add(inflated, Ordering::Relaxed);
            tally.seq_errors.fetch_add(seq_errors, Ordering::Relaxed);
            tally.last.fetch_max(now, Ordering::Relaxed);
            // Last: the main thread waits for this count, then reads the others.
            tally.delivered.fetch_add(delivered, Ordering::Release);
        }
        for pong in pongs.drain(..) {
            conn.send(&pong).await?;
        }
        if let Some(code) = closed {
            return Err(protocol(format!(
                "the server closed the session ({code:?})"
            )));
        }
    }
}

/// The `seq` and the due time (`data.sent`, Unix ns) of one of the scenario's `message`
/// frames, read without parsing the rest of it (from the end: `seq` is followed only by
/// the timestamp, and serde_json orders `pad` before `sent`). `None` for any other frame.
pub(super) fn receipt(text: &[u8]) -> Option<(u64, u64)> {
    if !text.starts_with(br#"{"type":"message""#) {
        return None;
    }
    let (seq, seq_at) = number_after(text, br#","seq":"#)?;
    let (sent, _) = number_after(&text[..seq_at], br#""sent":"#)?;
    Some((seq, sent))
}

/// The decimal number after the last `key` in `text`, and where the key starts.
fn number_after(text: &[u8], key: &[u8]) -> Option<(u64, usize)> {
    let at = text.windows(key.len()).rposition(|w| w == key)?;
    let digits = &text[at + key.len()..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    let value = std::str::from_utf8(&digits[..len]).ok()?.parse().ok()?;
    Some((value, at))
}

/// How many compressed payloads a thread keeps with their text: more than the
/// broadcasts that can be in flight at once (a second's worth at 1,000 a second).
const MEMO: usize = 4096;

/// The last [`MEMO`] compressed payloads a thread inflated, with their text, by a hash
/// of the payload (see the module docs); the oldest goes first.
#[derive(Default)]
struct Memo {
    inflater: Option<Inflater>,
    hasher: foldhash::fast::FixedState,
    entries: HashMap<u64, (Vec<u8>, Vec<u8>)>,
    order: VecDeque<u64>,
}

impl Memo {
    /// The text of `payload`, and whether it was inflated now (not reused).
    fn inflate(&mut self, payload: &[u8]) -> std::io::Result<(&[u8], bool)> {
        let key = self.hasher.hash_one(payload);
        let known = self.entries.get(&key).is_some_and(|(p, _)| p == payload);
        if !known {
            let text = self
                .inflater
                .get_or_insert_with(Inflater::new)
                .inflate(payload)
                .map_err(protocol)?
                .to_vec();
            if self.entries.insert(key, (payload.to_vec(), text)).is_none() {
                self.order.push_back(key);
            }
            if self.order.len() > MEMO {
                if let Some(oldest) = self.order.pop_front() {
                    self.entries.remove(&oldest);
                }
            }
        }
        Ok((&self.entries[&key].1, !known))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_and_sent_are_read_from_message_frames_only() {
        let frame = br#"{"type":"message","topic":"bench.ws","data":{"pad":"xx","sent":1764201600123456789},"seq":3,"timestamp":"2026-12-02T10:00:00.000000Z"}"#;
        assert_eq!(receipt(frame), Some((3, 1_764_201_600_123_456_789)));
        assert_eq!(
            receipt(br#"{"type":"ack","seq":1,"data":{"sent":5}}"#),
            None
        );
        assert_eq!(receipt(br#"{"type":"message","data":{},"seq":1}"#), None);
        assert_eq!(
            receipt(br#"{"type":"message","data":{"sent":"x"},"seq":1}"#),
            None
        );
        assert_eq!(receipt(br#"{"type":"message","data":{"sent":5}}"#), None);
    }

    #[test]
    fn the_memo_inflates_each_distinct_payload_once() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let empty = [0x00];
        let mut memo = Memo::default();
        assert_eq!(memo.inflate(&hello).unwrap(), (&b"Hello"[..], true));
        assert_eq!(memo.inflate(&hello).unwrap(), (&b"Hello"[..], false));
        assert_eq!(memo.inflate(&empty).unwrap(), (&b""[..], true));
        assert_eq!(memo.inflate(&hello).unwrap(), (&b"Hello"[..], false));
        assert!(memo.inflate(&[0xff, 0xff]).is_err());
    }
}
