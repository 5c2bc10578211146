//! The fan-out scenario: `clients` WebSocket clients subscribed to one topic (with or
//! without permessage-deflate), then one phase per offered rate, each publishing for
//! `duration` through `POST /api/publish` (see [`publisher`](super::publisher)) and
//! waiting until every client has every message (or nothing arrived for
//! [`STALL`]). The same connections serve every phase, so `seq` runs on across them.
//!
//! Per phase: messages delivered per second over all clients (from the first due time
//! to the last receipt), due time → receipt percentiles, `seq` gaps and repeats, wire
//! bytes per message as counted by the clients and by the server's metrics
//! (`wire_bytes_sent`, `uncompressed_bytes_sent`), and the CPU of the server and of
//! each generator thread. Besides: the server's RSS growth per connection, idle before
//! any traffic and again once the phases are over.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use super::publisher::{self, Schedule, TOPIC};
use super::readers::{self, Reader};
use super::server::{cpu_seconds, cpu_share, own_thread_stat, rss_bytes, Server};
use super::{new_histogram, unix_nanos, ServerMode};
use crate::metrics::LatencySummary;

/// A phase ends when nothing arrived for this long after its publishing ended.
const STALL: Duration = Duration::from_secs(5);

/// A generator thread busier than this (share of one core) is the limit.
const BUSY: f64 = 0.9;

/// The fan-out scenario's parameters.
#[derive(Clone, Debug)]
pub struct WsOptions {
    /// WebSocket clients, all subscribed to the topic.
    pub clients: usize,
    /// Threads reading the clients' connections (each has `clients / readers` of them).
    pub readers: usize,
    /// Messages published per second, one phase per rate, in order.
    pub rates: Vec<f64>,
    /// How long each phase publishes.
    pub duration: Duration,
    /// Bytes of padding in each message's data (about its size).
    pub payload: usize,
    /// The clients offer permessage-deflate.
    pub deflate: bool,
    /// Where the server runs.
    pub server: ServerMode,
}

/// What the scenario measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WsReport {
    /// Clients connected.
    pub clients: usize,
    /// The clients offered permessage-deflate.
    pub deflate: bool,
    /// Clients whose upgrade response agreed to permessage-deflate.
    pub negotiated: u64,
    /// The server's `compressed_sessions` once the clients were connected.
    pub compressed_sessions: u64,
    /// The server's RSS growth per connection, idle, before any traffic, bytes (child
    /// process only).
    pub server_bytes_per_connection: Option<f64>,
    /// The same once the phases are over (the connections idle again).
    pub server_bytes_per_connection_after: Option<f64>,
    /// One per rate.
    pub phases: Vec<PhaseReport>,
}

/// One phase of the scenario.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhaseReport {
    /// Messages published per second.
    pub rate: f64,
    /// `rate × clients`: deliveries per second offered.
    pub offered_per_second: f64,
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
    /// Messages whose `seq` was not their connection's previous one + 1.
    pub seq_errors: u64,
    /// Messages that came compressed (RSV1).
    pub compressed: u64,
    /// Compressed payloads the generator inflated (the rest were byte-identical to one
    /// it had just inflated; see `readers`).
    pub inflated: u64,
    /// Connections that ended or failed during the phase, and the first error.
    pub connections_lost: u64,
    /// The first error of a connection, if any.
    pub first_error: Option<String>,
    /// Wire bytes per message received, header included, counted by the clients.
    pub wire_bytes_per_message: f64,
    /// Wire bytes per message queued, from the server's `wire_bytes_sent`.
    pub server_wire_bytes_per_message: f64,
    /// The same had none been compressed (`uncompressed_bytes_sent`).
    pub server_uncompressed_bytes_per_message: f64,
    /// Sessions the server closed with 4008 during the phase.
    pub slow_consumers: u64,
    /// Cores the server used (child process only).
    pub server_cpu: Option<f64>,
    /// Share of one core the publisher's sending thread used.
    pub publisher_cpu: f64,
    /// Share of one core each reader thread used.
    pub reader_cpu: Vec<f64>,
    /// A generator thread was busier than 90 %: it, not the server, was the limit.
    pub generator_bound: bool,
    /// Server and generator together, as a share of the machine's cores.
    pub machine_busy: Option<f64>,
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
    let host = url.trim_start_matches("http://");
    let addr: SocketAddr = host.parse().map_err(std::io::Error::other)?;
    let rss_before = server.pid().and_then(rss_bytes);
    let threads = options.readers.clamp(1, options.clients.max(1));
    let mut readers = Vec::with_capacity(threads);
    for r in 0..threads {
        let share = options.clients / threads + usize::from(r < options.clients % threads);
        readers.push(readers::start(addr, TOPIC, share, options.deflate)?);
    }
    let connected = Server::ws_metrics(host)?;
    // Let the server settle, then weigh it.
    std::thread::sleep(Duration::from_millis(500));
    let per_connection = |rss_after: Option<f64>| match (rss_before, rss_after) {
        (Some(before), Some(after)) => Some((after - before) / options.clients as f64),
        _ => None,
    };
    let idle = per_connection(server.pid().and_then(rss_bytes));
    let pad = publisher::pad(options.payload);
    let mut phases = Vec::with_capacity(options.rates.len());
    for &rate in &options.rates {
        phases.push(phase(options, server, host, &readers, rate, &pad)?);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = per_connection(server.pid().and_then(rss_bytes));
    let negotiated = readers
        .iter()
        .map(|r| r.tally.negotiated.load(Ordering::Relaxed))
        .sum();
    for reader in readers {
        reader.stop()?;
    }
    Ok(WsReport {
        clients: options.clients,
        deflate: options.deflate,
        negotiated,
        compressed_sessions: connected.compressed_sessions,
        server_bytes_per_connection: idle,
        server_bytes_per_connection_after: after,
        phases,
    })
}

/// What the readers counted together.
#[derive(Clone, Copy, Default)]
struct Totals {
    delivered: u64,
    last: u64,
    wire_bytes: u64,
    compressed: u64,
    inflated: u64,
    seq_errors: u64,
    ended: u64,
}

impl Totals {
    fn of(readers: &[Reader]) -> Totals {
        let mut t = Totals::default();
        for r in readers {
            let tally = &r.tally;
            // First: what was counted before it is visible with it (see `readers::read`).
            t.delivered += tally.delivered.load(Ordering::Acquire);
            t.last = t.last.max(tally.last.load(Ordering::Relaxed));
            t.wire_bytes += tally.wire_bytes.load(Ordering::Relaxed);
            t.compressed += tally.compressed.load(Ordering::Relaxed);
            t.inflated += tally.inflated.load(Ordering::Relaxed);
            t.seq_errors += tally.seq_errors.load(Ordering::Relaxed);
            t.ended += tally.ended.load(Ordering::Relaxed);
        }
        t
    }
}

fn phase(
    options: &WsOptions,
    server: &Server,
    host: &str,
    readers: &[Reader],
    rate: f64,
    pad: &str,
) -> std::io::Result<PhaseReport> {
    for r in readers {
        r.tally.take_latency();
    }
    let before = Totals::of(readers);
    let metrics_before = Server::ws_metrics(host)?;
    let schedule = Schedule {
        total: ((rate * options.duration.as_secs_f64()) as u64).max(1),
        period: Duration::from_secs_f64(1.0 / rate.max(1.0)),
        start: Instant::now() + Duration::from_millis(10),
        start_unix: unix_nanos(SystemTime::now() + Duration::from_millis(10)),
        pad,
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

    publisher::publish_open_loop(host, &schedule)?;
    let publisher_cpu = cpu_share(
        publisher_stat.as_deref(),
        publisher_before,
        schedule.start.elapsed().as_secs_f64(),
    )
    .unwrap_or(0.0);
    let expected = schedule.total * options.clients as u64;
    let (mut seen, mut progress) = (before.delivered, Instant::now());
    loop {
        let delivered = Totals::of(readers).delivered;
        if delivered - before.delivered >= expected || progress.elapsed() > STALL {
            break;
        }
        if delivered != seen {
            (seen, progress) = (delivered, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = schedule.start.elapsed().as_secs_f64();
    let server_cpu = cpu_share(server_stat.as_deref(), server_before, wall);
    let reader_cpu: Vec<f64> = readers
        .iter()
        .zip(readers_before)
        .map(|(r, before)| cpu_share(r.stat.as_deref(), before, wall).unwrap_or(0.0))
        .collect();
    let after = Totals::of(readers);
    let metrics_after = Server::ws_metrics(host)?;
    let mut latency = new_histogram();
    for r in readers {
        latency
            .add(r.tally.take_latency())
            .map_err(std::io::Error::other)?;
    }
    let delivered = after.delivered - before.delivered;
    let span = after.last.saturating_sub(schedule.start_unix) as f64 / 1e9;
    let per = |bytes: u64, count: u64| bytes as f64 / count.max(1) as f64;
    let first_error = readers.iter().find_map(|r| {
        r.tally
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    });
    let generator: f64 = publisher_cpu + reader_cpu.iter().sum::<f64>();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Ok(PhaseReport {
        rate,
        offered_per_second: rate * options.clients as f64,
        published: schedule.total,
        expected,
        delivered,
        delivered_per_second: delivered as f64 / span.max(1e-9),
        latency_us: LatencySummary::of(&latency),
        seq_errors: after.seq_errors - before.seq_errors,
        compressed: after.compressed - before.compressed,
        inflated: after.inflated - before.inflated,
        connections_lost: after.ended - before.ended,
        first_error,
        wire_bytes_per_message: per(after.wire_bytes - before.wire_bytes, delivered),
        server_wire_bytes_per_message: per(
            metrics_after.wire_bytes_sent - metrics_before.wire_bytes_sent,
            expected,
        ),
        server_uncompressed_bytes_per_message: per(
            metrics_after.uncompressed_bytes_sent - metrics_before.uncompressed_bytes_sent,
            expected,
        ),
        slow_consumers: metrics_after.slow_consumers - metrics_before.slow_consumers,
        server_cpu,
        publisher_cpu,
        generator_bound: publisher_cpu > BUSY || reader_cpu.iter().any(|&c| c > BUSY),
        machine_busy: server_cpu.map(|s| (s + generator) / cores),
        reader_cpu,
    })
}
