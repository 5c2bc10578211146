//! The reconnect storm: `clients` clients come back at the same moment, each having
//! missed the last `missed` messages of a topic, and subscribe with
//! `recover: {epoch, seq}`. Measured: the time until every one of them is live again
//! (its ack said `recovered` and the last missed message arrived), per client and for
//! all, and the CPU of the server and of the generator threads meanwhile.
//!
//! Before the storm, a watcher connection subscribes to the topic and `missed + 10`
//! messages are published (`POST /api/publish`); once the watcher has them all, the
//! server's history holds them. To the server, a storm client is a new session with
//! `recover`, which is what a reconnect is: it cannot tell the two apart.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde_json::Value;

use super::client::{protocol, Conn};
use super::publisher::{pad, publish_open_loop, Schedule, TOPIC};
use super::server::{cpu_seconds, cpu_share, on_threads, own_thread_stat, Server};
use super::wire::{masked, opcode};
use super::{new_histogram, ServerMode};
use crate::metrics::LatencySummary;

/// A client that is not live again within this failed.
const CLIENT_LIMIT: Duration = Duration::from_secs(60);

/// The storm's parameters.
#[derive(Clone, Debug)]
pub struct StormOptions {
    /// Clients coming back at once.
    pub clients: usize,
    /// Messages each missed (at most the server's `history_size`, 100 by default).
    pub missed: u64,
    /// Generator threads.
    pub threads: usize,
    /// `data.pad` bytes of each message.
    pub payload: usize,
    /// Where the server runs.
    pub server: ServerMode,
}

/// What the storm measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StormReport {
    /// Clients that came back.
    pub clients: usize,
    /// Messages each missed.
    pub missed: u64,
    /// Clients live again: recovered, every missed message in order.
    pub live: u64,
    /// Clients that failed, and the first error.
    pub failed: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// From the storm's start to the last client live again, ms.
    pub all_live_ms: f64,
    /// Per client, from the storm's start to live again, µs.
    pub live_us: LatencySummary,
    /// Messages replayed per second over the storm (clients × missed / all_live).
    pub replayed_per_second: f64,
    /// Cores the server used during the storm (child process only).
    pub server_cpu: Option<f64>,
    /// Share of one core each generator thread used.
    pub generator_cpu: Vec<f64>,
    /// A generator thread was busier than 90 %.
    pub generator_bound: bool,
}

/// Runs the storm. Its threads are its own: it may be awaited from any runtime.
pub async fn websocket_storm(options: &StormOptions) -> std::io::Result<StormReport> {
    let options = options.clone();
    actix_rt::task::spawn_blocking(move || {
        let (server, url) = Server::start(&options.server, options.clients + 1)?;
        let result = run(&options, &server, &url);
        server.stop();
        result
    })
    .await
    .map_err(std::io::Error::other)?
}

fn run(options: &StormOptions, server: &Server, url: &str) -> std::io::Result<StormReport> {
    let host = url.trim_start_matches("http://").to_owned();
    let addr: SocketAddr = host.parse().map_err(std::io::Error::other)?;
    let total = options.missed + 10;
    let (epoch, last) = prepare(addr, &host, total, &pad(options.payload))?;
    let from = last - options.missed;

    let threads = options.threads.clamp(1, options.clients.max(1));
    let server_stat = server.pid().map(|pid| format!("/proc/{pid}/stat"));
    let server_before = server_stat.as_deref().and_then(cpu_seconds);
    let start = Instant::now() + Duration::from_millis(50);
    let results = on_threads("bench-ws-storm", threads, options.clients, move |clients| {
        storm_thread(addr, clients, &epoch, from, last, start)
    })?;
    let wall = start.elapsed().as_secs_f64();
    let server_cpu = cpu_share(server_stat.as_deref(), server_before, wall);
    let generator_cpu: Vec<f64> = results.iter().map(|r| r.cpu).collect();
    let mut live_us = new_histogram();
    let (mut live, mut failed, mut first_error, mut slowest) = (0, 0, None, 0u64);
    for r in results {
        live += r.live;
        failed += r.failed;
        first_error = first_error.or(r.first_error);
        slowest = slowest.max(r.live_us.max());
        let _ = live_us.add(&r.live_us);
    }
    let all_live_ms = slowest as f64 / 1000.0;
    Ok(StormReport {
        clients: options.clients,
        missed: options.missed,
        live,
        failed,
        first_error,
        all_live_ms,
        live_us: LatencySummary::of(&live_us),
        replayed_per_second: (live * options.missed) as f64 / (all_live_ms / 1000.0).max(1e-9),
        server_cpu,
        generator_bound: generator_cpu.iter().any(|&c| c > 0.9),
        generator_cpu,
    })
}

/// Subscribes a watcher, publishes `total` messages and waits until the watcher has
/// them: the server's epoch and the topic's last seq.
fn prepare(addr: SocketAddr, host: &str, total: u64, pad: &str) -> std::io::Result<(String, u64)> {
    actix_rt::System::new().block_on(async {
        let mut watcher = Conn::connect(addr, false).await?;
        let welcome = next_json(&mut watcher).await?;
        let epoch = welcome["epoch"]
            .as_str()
            .ok_or_else(|| protocol("a welcome without an epoch"))?
            .to_owned();
        let subscribe = format!(r#"{{"type":"subscribe","topic":"{TOPIC}","id":1}}"#);
        watcher
            .send(&masked(opcode::TEXT, subscribe.as_bytes()))
            .await?;
        let ack = next_json(&mut watcher).await?;
        let first = ack["seq"].as_u64().unwrap_or(0) + 1;
        let (host, pad) = (host.to_owned(), pad.to_owned());
        let publisher = std::thread::spawn(move || {
            let schedule = Schedule {
                total,
                period: Duration::from_micros(200),
                start: Instant::now(),
                start_unix: super::unix_nanos(SystemTime::now()),
                pad: &pad,
            };
            publish_open_loop(&host, &schedule)
        });
        let mut last = 0;
        while last < first + total - 1 {
            last = seq_of(&next_json(&mut watcher).await?)?;
        }
        publisher
            .join()
            .map_err(|_| std::io::Error::other("the publisher panicked"))??;
        Ok((epoch, last))
    })
}

struct ThreadResult {
    live: u64,
    failed: u64,
    first_error: Option<String>,
    live_us: Histogram<u64>,
    cpu: f64,
}

/// One generator thread: `clients` clients that all come back at `start`.
fn storm_thread(
    addr: SocketAddr,
    clients: usize,
    epoch: &str,
    from: u64,
    last: u64,
    start: Instant,
) -> ThreadResult {
    let stat = own_thread_stat();
    let cpu_before = stat.as_deref().and_then(cpu_seconds);
    let started = Instant::now();
    let subscribe = format!(
        r#"{{"type":"subscribe","topic":"{TOPIC}","id":1,"recover":{{"epoch":"{epoch}","seq":{from}}}}}"#
    );
    let mut result = actix_rt::System::new().block_on(async move {
        tokio::time::sleep_until(start.into()).await;
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let subscribe = subscribe.clone();
                actix_rt::spawn(async move {
                    tokio::time::timeout(CLIENT_LIMIT, come_back(addr, &subscribe, from, last))
                        .await
                        .unwrap_or_else(|_| Err(protocol("not live again within 60 s")))
                        .map(|()| start.elapsed())
                })
            })
            .collect();
        let mut r = ThreadResult {
            live: 0,
            failed: 0,
            first_error: None,
            live_us: new_histogram(),
            cpu: 0.0,
        };
        for task in tasks {
            match task.await {
                Ok(Ok(took)) => {
                    r.live += 1;
                    let _ = r.live_us.record((took.as_micros() as u64).max(1));
                }
                Ok(Err(err)) => {
                    r.failed += 1;
                    r.first_error.get_or_insert(err.to_string());
                }
                Err(_) => r.failed += 1,
            }
        }
        r
    });
    result.cpu =
        cpu_share(stat.as_deref(), cpu_before, started.elapsed().as_secs_f64()).unwrap_or(0.0);
    result
}

/// One client: connect, subscribe with recover, read the replay `from + 1..=last`.
async fn come_back(addr: SocketAddr, subscribe: &str, from: u64, last: u64) -> std::io::Result<()> {
    let mut conn = Conn::connect(addr, false).await?;
    next_json(&mut conn).await?; // the welcome
    conn.send(&masked(opcode::TEXT, subscribe.as_bytes()))
        .await?;
    let ack = next_json(&mut conn).await?;
    if ack["recovered"] != true {
        return Err(protocol(format!("not recovered: {ack}")));
    }
    for expected in from + 1..=last {
        let seq = seq_of(&next_json(&mut conn).await?)?;
        if seq != expected {
            return Err(protocol(format!("seq {seq} where {expected} was due")));
        }
    }
    Ok(())
}

/// The next text frame, as JSON (pings skipped).
async fn next_json(conn: &mut Conn) -> std::io::Result<Value> {
    loop {
        match conn.next_frame().await? {
            Some((head, text)) if head.opcode == opcode::TEXT => {
                return serde_json::from_slice(&text).map_err(protocol)
            }
            Some((head, _)) if head.opcode == opcode::PING || head.opcode == opcode::PONG => {}
            Some((head, _)) => return Err(protocol(format!("opcode {}", head.opcode))),
            None => return Err(protocol("the connection ended")),
        }
    }
}

fn seq_of(message: &Value) -> std::io::Result<u64> {
    message["seq"]
        .as_u64()
        .ok_or_else(|| protocol(format!("not a message: {message}")))
}
