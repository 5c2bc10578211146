//! WebSocket fan-out over loopback, through a real `tickwire serve`.
//!
//! The server runs as a separate process (`tickwire serve --listen-stdin`, started from
//! the same executable with a listening socket made here, so its address comes from that
//! socket, not from its output) so that its memory and CPU can be measured alone; in
//! tests it runs in-process on a thread of its own instead (see `server`). The load generator is this process, on
//! threads of its own so that neither half of it waits for the other:
//!
//! - `readers` threads, each an actix System with its share of the `clients` WebSocket
//!   connections (awc), all subscribed to one topic. Each receipt is timed as it is read.
//! - One publisher thread, which sends `rate` `POST /api/publish` requests per second for
//!   `duration`, open loop: request `i` is due at `start + i / rate`, the thread sleeps
//!   until then with the operating system's timer (not the runtime's, whose granularity
//!   is a millisecond), and the request carries its due time. Requests are pipelined on
//!   one keep-alive connection with `TCP_NODELAY`, each written whole, and a second
//!   thread reads the responses (any that is not 2xx fails the run). So a stall anywhere,
//!   in the generator or in the server, shows in the latency instead of delaying the
//!   measurement.
//!
//! Every client measures due time → receipt. Reported: messages delivered per second
//! over all clients, end-to-end latency percentiles, the server's memory per idle
//! connection (RSS growth over the `clients` connections, divided by them), and the CPU
//! used by the server and by each generator thread. A generator thread busy more than
//! 90 % of the time is the limit, not the server: the report says so.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;

mod server;

pub use server::ServerMode;
use server::{cpu_seconds, cpu_share, own_thread_stat, rss_bytes, Server};

use crate::metrics::LatencySummary;

/// The scenario's parameters.
#[derive(Clone, Debug)]
pub struct WsOptions {
    /// WebSocket clients, all subscribed to the topic.
    pub clients: usize,
    /// Threads reading the clients' connections (each has `clients / readers` of them).
    pub readers: usize,
    /// Messages published per second.
    pub rate: f64,
    /// How long to publish.
    pub duration: Duration,
    /// Bytes of padding in each message's data (about its size).
    pub payload: usize,
    /// Where the server runs.
    pub server: ServerMode,
}

/// What the scenario measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WsReport {
    /// Clients connected.
    pub clients: usize,
    /// Messages published (each accepted with a 2xx).
    pub published: u64,
    /// `published × clients`.
    pub expected: u64,
    /// Messages received, over all clients.
    pub delivered: u64,
    /// Delivered per second, from the first message's due time to the last receipt.
    pub delivered_per_second: f64,
    /// Due time → receipt, µs.
    pub latency_us: LatencySummary,
    /// The server's RSS growth per idle connection, bytes (child process only).
    pub server_bytes_per_connection: Option<f64>,
    /// Cores the server used while publishing (child process only).
    pub server_cpu: Option<f64>,
    /// Share of one core the publisher's sending thread used while publishing.
    pub publisher_cpu: f64,
    /// Share of one core each reader thread used while publishing.
    pub reader_cpu: Vec<f64>,
    /// True when a generator thread, not the server, was the limit.
    pub generator_bound: bool,
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// The due time (`data.sent`, Unix ns) of one of the scenario's `message` frames, read
/// without parsing the rest of the frame (the reader threads must stay cheap). `None` for
/// any other frame.
fn sent_of(frame: &[u8]) -> Option<u64> {
    const KEY: &[u8] = br#""sent":"#;
    if !frame.starts_with(br#"{"type":"message""#) {
        return None;
    }
    // From the end: the key is near it (serde_json orders `pad` before `sent`), and
    // this scan is a tenth of a reader thread's time.
    let at = frame.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let digits = frame[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&frame[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// What the reader threads count together.
#[derive(Default)]
struct Receipts {
    delivered: AtomicU64,
    /// Unix time of the last receipt, ns.
    last: AtomicU64,
}

/// A reader thread. Dropping it (or sending on `stop`) ends the thread.
struct Reader {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Histogram<u64>>,
    /// The thread's `stat` file, once its clients are connected.
    stat: Option<String>,
}

/// Starts a reader thread that connects `clients` clients; the receiver says when they
/// are all subscribed (with the thread's `stat` file) or why not.
fn spawn_reader(
    ws_url: String,
    clients: usize,
    receipts: Arc<Receipts>,
) -> std::io::Result<(Reader, mpsc::Receiver<std::io::Result<Option<String>>>)> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("bench-ws-reader".into())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let hist = Rc::new(RefCell::new(new_histogram()));
                match connect_clients(&ws_url, clients, &hist, &receipts).await {
                    Ok(tasks) => {
                        let _ = ready_tx.send(Ok(own_thread_stat()));
                        let _ = stop_rx.await;
                        for task in tasks {
                            task.abort();
                        }
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                }
                hist.replace(new_histogram())
            })
        })?;
    let reader = Reader {
        stop: stop_tx,
        thread,
        stat: None,
    };
    Ok((reader, ready_rx))
}

/// Connects and subscribes `clients` clients, then reads each in a task of its own.
async fn connect_clients(
    ws_url: &str,
    clients: usize,
    hist: &Rc<RefCell<Histogram<u64>>>,
    receipts: &Arc<Receipts>,
) -> std::io::Result<Vec<actix_rt::task::JoinHandle<()>>> {
    let client = awc::Client::builder()
        // No cap on connections (awc's default is 100 per scheme).
        .connector(awc::Connector::new().limit(0))
        .timeout(Duration::from_secs(30))
        .max_http_version(awc::http::Version::HTTP_11)
        .finish();
    let subscribe = json!({"type": "subscribe", "topic": "bench.ws"}).to_string();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (_, mut conn) = client
            .ws(ws_url)
            .max_frame_size(1 << 20)
            .connect()
            .await
            .map_err(|e| std::io::Error::other(format!("connect: {e}")))?;
        conn.send(awc::ws::Message::Text(subscribe.clone().into()))
            .await
            .map_err(|e| std::io::Error::other(format!("subscribe: {e}")))?;
        // welcome, then the ack.
        for _ in 0..2 {
            match conn.next().await {
                Some(Ok(awc::ws::Frame::Text(_))) => {}
                other => return Err(std::io::Error::other(format!("handshake: {other:?}"))),
            }
        }
        let (hist, receipts) = (hist.clone(), receipts.clone());
        tasks.push(actix_rt::spawn(async move {
            while let Some(frame) = conn.next().await {
                match frame {
                    Ok(awc::ws::Frame::Text(text)) => {
                        let now = unix_nanos(SystemTime::now());
                        if let Some(sent) = sent_of(&text) {
                            let us = now.saturating_sub(sent) / 1000;
                            let _ = hist.borrow_mut().record(us.max(1));
                            receipts.delivered.fetch_add(1, Ordering::Relaxed);
                            receipts.last.fetch_max(now, Ordering::Relaxed);
                        }
                    }
                    Ok(awc::ws::Frame::Ping(p)) => {
                        let _ = conn.send(awc::ws::Message::Pong(p)).await;
                    }
                    Ok(awc::ws::Frame::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }));
    }
    Ok(tasks)
}

/// When and what to publish.
struct Schedule<'a> {
    total: u64,
    period: Duration,
    start: Instant,
    /// `start` as Unix time, ns.
    start_unix: u64,
    pad: &'a str,
}

/// Sends the schedule's `POST /api/publish` requests to `host`, pipelined on one
/// connection: request `i` is written whole at `start + i × period` and carries that due
/// time. A second thread reads the responses; any that is not 2xx is the error returned.
fn publish_open_loop(host: &str, schedule: &Schedule<'_>) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(host)?;
    stream.set_nodelay(true)?;
    // A safety net: the responses come within milliseconds.
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let responses = {
        let stream = stream.try_clone()?;
        let total = schedule.total;
        std::thread::Builder::new()
            .name("bench-ws-responses".into())
            .spawn(move || read_responses(stream, total))?
    };
    let mut request = Vec::with_capacity(512);
    let mut sent = Ok(());
    for i in 0..schedule.total {
        let offset = schedule.period.mul_f64(i as f64);
        if let Some(wait) = (schedule.start + offset).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let body = format!(
            r#"{{"topic":"bench.ws","data":{{"sent":{},"pad":"{}"}}}}"#,
            schedule.start_unix + offset.as_nanos() as u64,
            schedule.pad
        );
        request.clear();
        write!(
            request,
            "POST /api/publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        if let Err(err) = stream.write_all(&request) {
            sent = Err(err);
            // Unblock the response reader: no more responses are coming.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            break;
        }
    }
    let read = responses
        .join()
        .map_err(|_| std::io::Error::other("the response reader panicked"))?;
    // The server's reason, when there is one, says more than a failed write.
    read.and(sent)
}

/// Reads `total` HTTP/1.1 responses; an error for the first that is not 2xx.
fn read_responses(stream: TcpStream, total: u64) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    for n in 0..total {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other(format!(
                "the server closed the publishing connection after {n} of {total} responses"
            )));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Err(std::io::Error::other("the server closed mid-response"));
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().map_err(std::io::Error::other)?;
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if !(200..300).contains(&status) {
            return Err(std::io::Error::other(format!(
                "publish {n} refused: {status} {}",
                String::from_utf8_lossy(&body)
            )));
        }
    }
    Ok(())
}

/// Runs the scenario. Its threads are its own: it may be awaited from any runtime.
pub async fn websocket_fanout(options: &WsOptions) -> std::io::Result<WsReport> {
    let options = options.clone();
    actix_rt::task::spawn_blocking(move || {
        let (server, url) = Server::start(&options.server, options.clients)?;
        let result = run(&options, &server, &url);
        server.stop();
        result
    })
    .await
    .map_err(std::io::Error::other)?
}

fn run(options: &WsOptions, server: &Server, url: &str) -> std::io::Result<WsReport> {
    let ws_url = format!("{}/ws", url.replacen("http://", "ws://", 1));
    let host = url.trim_start_matches("http://");
    let rss_before = server.pid().and_then(rss_bytes);
    let receipts = Arc::new(Receipts::default());
    let threads = options.readers.clamp(1, options.clients.max(1));
    let mut readers = Vec::with_capacity(threads);
    let mut ready = Vec::with_capacity(threads);
    for r in 0..threads {
        let share = options.clients / threads + usize::from(r < options.clients % threads);
        let (reader, ready_rx) = spawn_reader(ws_url.clone(), share, receipts.clone())?;
        readers.push(reader);
        ready.push(ready_rx);
    }
    for (reader, ready_rx) in readers.iter_mut().zip(ready) {
        reader.stat = ready_rx
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| std::io::Error::other("the clients did not connect in time"))??;
    }
    // Let the server settle, then weigh it.
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = server.pid().and_then(rss_bytes);
    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) => Some((after - before) / options.clients as f64),
        _ => None,
    };

    let pad = "x".repeat(options.payload);
    let schedule = Schedule {
        total: ((options.rate * options.duration.as_secs_f64()) as u64).max(1),
        period: Duration::from_secs_f64(1.0 / options.rate.max(1.0)),
        start: Instant::now() + Duration::from_millis(10),
        start_unix: unix_nanos(SystemTime::now() + Duration::from_millis(10)),
        pad: &pad,
    };
    let server_stat = server.pid().map(|pid| format!("/proc/{pid}/stat"));
    let publisher_stat = own_thread_stat();
    let cpu_before = |stat: Option<&str>| stat.and_then(cpu_seconds);
    let server_before = cpu_before(server_stat.as_deref());
    let publisher_before = cpu_before(publisher_stat.as_deref());
    let readers_before: Vec<_> = readers
        .iter()
        .map(|r| cpu_before(r.stat.as_deref()))
        .collect();

    publish_open_loop(host, &schedule)?;
    let publisher_cpu = cpu_share(
        publisher_stat.as_deref(),
        publisher_before,
        schedule.start.elapsed().as_secs_f64(),
    )
    .unwrap_or(0.0);
    let expected = schedule.total * options.clients as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while receipts.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = schedule.start.elapsed().as_secs_f64();
    let server_cpu = cpu_share(server_stat.as_deref(), server_before, wall);
    let reader_cpu: Vec<f64> = readers
        .iter()
        .zip(readers_before)
        .map(|(r, before)| cpu_share(r.stat.as_deref(), before, wall).unwrap_or(0.0))
        .collect();
    let mut hist = new_histogram();
    for reader in readers {
        let _ = reader.stop.send(());
        let part = reader
            .thread
            .join()
            .map_err(|_| std::io::Error::other("a reader thread panicked"))?;
        hist.add(&part).map_err(std::io::Error::other)?;
    }
    let count = receipts.delivered.load(Ordering::Relaxed);
    let span = receipts
        .last
        .load(Ordering::Relaxed)
        .saturating_sub(schedule.start_unix) as f64
        / 1e9;
    Ok(WsReport {
        clients: options.clients,
        published: schedule.total,
        expected,
        delivered: count,
        delivered_per_second: count as f64 / span.max(1e-9),
        latency_us: LatencySummary::of(&hist),
        server_bytes_per_connection: per_connection,
        server_cpu,
        generator_bound: publisher_cpu > 0.9 || reader_cpu.iter().any(|&c| c > 0.9),
        publisher_cpu,
        reader_cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::sent_of;

    #[test]
    fn sent_is_read_from_message_frames_only() {
        let frame = br#"{"type":"message","topic":"bench.ws","data":{"sent":1764201600123456789,"pad":"xx"},"seq":3}"#;
        assert_eq!(sent_of(frame), Some(1_764_201_600_123_456_789));
        assert_eq!(sent_of(br#"{"type":"ack","data":{"sent":5}}"#), None);
        assert_eq!(sent_of(br#"{"type":"message","data":{}}"#), None);
        assert_eq!(sent_of(br#"{"type":"message","data":{"sent":"x"}}"#), None);
    }
}
