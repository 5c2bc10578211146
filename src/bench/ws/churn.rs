//! The churn scenario: `loops` clients that connect, subscribe and close, over and over,
//! for `duration`, spread over `threads` generator threads (a current-thread runtime
//! each).
//!
//! One cycle: TCP connect, the upgrade (offering permessage-deflate or not), read the
//! `welcome`, send a `subscribe` and read its `ack`, send a close frame (1000), read the
//! server's close reply, and read until the connection ends. RFC 6455 §7.1.1 has the
//! server close the TCP connection first, and a client wait for that (Python
//! `websockets` does); other clients end their side as soon as the handshake is done
//! (Node `ws`): `client_closes_first` does that (a FIN right after the close reply),
//! then still reads until the server's end. Reported: cycles per second over all loops, how each
//! ended (the close reply's code), cycle time percentiles, and the CPU of the server and
//! of each generator thread.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::client::{protocol, Conn};
use super::readers::expect_text;
use super::server::{cpu_seconds, cpu_share, on_threads, own_thread_stat, Server};
use super::wire::{close_code, close_frame, masked, opcode};
use super::{new_histogram, ServerMode};
use crate::metrics::LatencySummary;

/// A cycle that takes longer than this failed.
const CYCLE_LIMIT: Duration = Duration::from_secs(10);

/// The churn scenario's parameters.
#[derive(Clone, Debug)]
pub struct ChurnOptions {
    /// Clients cycling at once.
    pub loops: usize,
    /// Generator threads they are spread over.
    pub threads: usize,
    /// How long they cycle (a cycle started before the end finishes).
    pub duration: Duration,
    /// The clients offer permessage-deflate.
    pub deflate: bool,
    /// A client ends its side of the connection right after the close reply, instead
    /// of waiting for the server to end it first.
    pub client_closes_first: bool,
    /// Where the server runs.
    pub server: ServerMode,
}

/// What the scenario measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChurnReport {
    /// Clients cycling at once.
    pub loops: usize,
    /// Cycles completed (the close reply read and the connection ended).
    pub cycles: u64,
    /// Completed cycles per second.
    pub cycles_per_second: f64,
    /// The close replies' codes: how many of each, over the completed cycles.
    pub close_codes: BTreeMap<u16, u64>,
    /// Cycles whose upgrade agreed to permessage-deflate.
    pub negotiated: u64,
    /// Cycles that failed, and the first error.
    pub failed: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Time of one cycle, µs.
    pub cycle_us: LatencySummary,
    /// Cores the server used (child process only).
    pub server_cpu: Option<f64>,
    /// Share of one core each generator thread used.
    pub generator_cpu: Vec<f64>,
    /// A generator thread was busier than 90 %.
    pub generator_bound: bool,
}

/// What one generator thread did.
struct ThreadResult {
    cycles: u64,
    close_codes: BTreeMap<u16, u64>,
    negotiated: u64,
    failed: u64,
    first_error: Option<String>,
    cycle_us: Histogram<u64>,
    cpu: f64,
}

impl ThreadResult {
    fn new() -> ThreadResult {
        ThreadResult {
            cycles: 0,
            close_codes: BTreeMap::new(),
            negotiated: 0,
            failed: 0,
            first_error: None,
            cycle_us: new_histogram(),
            cpu: 0.0,
        }
    }

    /// Adds another's counts (not its CPU).
    fn merge(&mut self, other: ThreadResult) {
        self.cycles += other.cycles;
        for (code, n) in other.close_codes {
            *self.close_codes.entry(code).or_default() += n;
        }
        self.negotiated += other.negotiated;
        self.failed += other.failed;
        self.first_error = self.first_error.take().or(other.first_error);
        let _ = self.cycle_us.add(&other.cycle_us);
    }
}

/// Runs the scenario. Its threads are its own: it may be awaited from any runtime.
pub async fn websocket_churn(options: &ChurnOptions) -> std::io::Result<ChurnReport> {
    let options = options.clone();
    actix_rt::task::spawn_blocking(move || {
        let (server, url) = Server::start(&options.server, options.loops)?;
        let result = run(&options, &server, &url);
        server.stop();
        result
    })
    .await
    .map_err(std::io::Error::other)?
}

fn run(options: &ChurnOptions, server: &Server, url: &str) -> std::io::Result<ChurnReport> {
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .map_err(std::io::Error::other)?;
    let threads = options.threads.clamp(1, options.loops.max(1));
    let server_stat = server.pid().map(|pid| format!("/proc/{pid}/stat"));
    let server_before = server_stat.as_deref().and_then(cpu_seconds);
    let start = Instant::now();
    let end = start + options.duration;
    let how = How::of(options);
    let results = on_threads("bench-ws-churn", threads, options.loops, move |loops| {
        churn_thread(addr, loops, how, end)
    })?;
    let wall = start.elapsed().as_secs_f64();
    let server_cpu = cpu_share(server_stat.as_deref(), server_before, wall);
    let generator_cpu: Vec<f64> = results.iter().map(|r| r.cpu).collect();
    let mut total = ThreadResult::new();
    for r in results {
        total.merge(r);
    }
    Ok(ChurnReport {
        loops: options.loops,
        cycles: total.cycles,
        cycles_per_second: total.cycles as f64 / wall,
        close_codes: total.close_codes,
        negotiated: total.negotiated,
        failed: total.failed,
        first_error: total.first_error,
        cycle_us: LatencySummary::of(&total.cycle_us),
        server_cpu,
        generator_bound: generator_cpu.iter().any(|&c| c > 0.9),
        generator_cpu,
    })
}

/// How a client cycles.
#[derive(Clone, Copy)]
struct How {
    deflate: bool,
    client_closes_first: bool,
}

impl How {
    fn of(options: &ChurnOptions) -> How {
        How {
            deflate: options.deflate,
            client_closes_first: options.client_closes_first,
        }
    }
}

/// One generator thread: `loops` cycling clients until `end`.
fn churn_thread(addr: SocketAddr, loops: usize, how: How, end: Instant) -> ThreadResult {
    let stat = own_thread_stat();
    let cpu_before = stat.as_deref().and_then(cpu_seconds);
    let started = Instant::now();
    let mut result = actix_rt::System::new().block_on(async move {
        let tasks: Vec<_> = (0..loops)
            .map(|_| actix_rt::spawn(cycle_until(addr, how, end)))
            .collect();
        let mut total = ThreadResult::new();
        for task in tasks {
            match task.await {
                Ok(r) => total.merge(r),
                Err(_) => total.failed += 1,
            }
        }
        total
    });
    result.cpu =
        cpu_share(stat.as_deref(), cpu_before, started.elapsed().as_secs_f64()).unwrap_or(0.0);
    result
}

/// One client's cycles until `end`.
async fn cycle_until(addr: SocketAddr, how: How, end: Instant) -> ThreadResult {
    let mut r = ThreadResult::new();
    while Instant::now() < end {
        let start = Instant::now();
        match tokio::time::timeout(CYCLE_LIMIT, cycle(addr, how)).await {
            Ok(Ok((code, negotiated))) => {
                r.cycles += 1;
                r.negotiated += u64::from(negotiated);
                *r.close_codes.entry(code).or_default() += 1;
                let _ = r
                    .cycle_us
                    .record((start.elapsed().as_micros() as u64).max(1));
            }
            outcome => {
                r.failed += 1;
                let err = match outcome {
                    Ok(Err(err)) => err.to_string(),
                    _ => format!("a cycle took more than {CYCLE_LIMIT:?}"),
                };
                r.first_error.get_or_insert(err);
                // Not a busy loop against a server that refuses.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    r
}

/// One cycle: the close reply's code (0 for a close frame without one), and whether
/// deflate was agreed.
async fn cycle(addr: SocketAddr, how: How) -> std::io::Result<(u16, bool)> {
    let mut conn = Conn::connect(addr, how.deflate).await?;
    expect_text(&mut conn, br#"{"type":"welcome""#).await?;
    let subscribe = br#"{"type":"subscribe","topic":"bench.churn","id":1}"#;
    conn.send(&masked(opcode::TEXT, subscribe)).await?;
    expect_text(&mut conn, br#"{"type":"ack""#).await?;
    conn.send(&close_frame(1000)).await?;
    let code = loop {
        match conn.next_frame().await? {
            Some((head, payload)) if head.opcode == opcode::CLOSE => {
                break close_code(&payload).unwrap_or(0);
            }
            Some((head, _)) if head.opcode == opcode::PING || head.opcode == opcode::PONG => {}
            Some((head, _)) => {
                return Err(protocol(format!(
                    "expected the close reply, got opcode {}",
                    head.opcode
                )))
            }
            None => return Err(protocol("the connection ended before the close reply")),
        }
    };
    if how.client_closes_first {
        conn.shutdown_write().await?;
    }
    // Then the server ends the connection.
    if conn.next_frame().await?.is_some() {
        return Err(protocol("a frame after the close reply"));
    }
    Ok((code, conn.deflate()))
}
