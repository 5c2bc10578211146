//! WebSocket fan-out over loopback, through a real `tickwire serve`.
//!
//! The server runs as a separate process (`tickwire serve`, started from the same
//! executable) so that its memory can be measured alone; in tests it runs in-process on a
//! thread of its own instead. The load generator (this process) opens `clients` WebSocket
//! connections (awc) subscribed to one topic, then publishes `rate` messages per second
//! for `duration` through `POST /api/publish`, open loop: each message carries its due
//! time, so a stalled generator or server shows in the latency. Every client measures
//! due time → receipt.
//!
//! Reported: messages delivered per second over all clients, end-to-end latency
//! percentiles, the server's memory per idle connection (RSS growth over the `clients`
//! connections, divided by them), and the CPU used by the generator's thread and by the
//! server. A generator thread busy more than 90 % of the time is the limit, not the
//! server: the report says so.

use std::cell::RefCell;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;

use crate::metrics::LatencySummary;
use crate::serve::config::FileConfig;

/// Where the server runs.
#[derive(Clone, Debug)]
pub enum ServerMode {
    /// A child process: this executable with `serve` (the `tickwire` binary).
    ChildProcess(std::path::PathBuf),
    /// A thread of this process (no memory figure).
    InProcess,
}

/// The scenario's parameters.
#[derive(Clone, Debug)]
pub struct WsOptions {
    /// WebSocket clients, all subscribed to the topic.
    pub clients: usize,
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
    /// Messages published.
    pub published: u64,
    /// `published × clients`.
    pub expected: u64,
    /// Messages received, over all clients.
    pub delivered: u64,
    /// Delivered per second, from the first publish to the last receipt.
    pub delivered_per_second: f64,
    /// Due time → receipt, µs.
    pub latency_us: LatencySummary,
    /// The server's RSS growth per idle connection, bytes (child process only).
    pub server_bytes_per_connection: Option<f64>,
    /// Share of one core the generator's thread used while publishing.
    pub generator_cpu: f64,
    /// Cores the server used while publishing (child process only).
    pub server_cpu: Option<f64>,
    /// True when the generator, not the server, was the limit.
    pub generator_bound: bool,
}

/// A server to bench against, and how to stop it.
enum Server {
    Child(Child),
    Thread(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>),
}

impl Server {
    fn start(mode: &ServerMode, clients: usize) -> std::io::Result<(Server, String)> {
        let mut config = FileConfig::default();
        config.websocket.max_connections = clients + 16;
        config.websocket.enable_compression = false;
        config.server.bind = "127.0.0.1:0".parse().expect("valid address");
        match mode {
            ServerMode::ChildProcess(exe) => {
                let path = std::env::temp_dir()
                    .join(format!("tickwire-bench-{}.toml", std::process::id()));
                std::fs::write(
                    &path,
                    toml::to_string(&config).map_err(std::io::Error::other)?,
                )?;
                let mut child = Command::new(exe)
                    .args(["serve", "--config"])
                    .arg(&path)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()?;
                let stdout = child.stdout.take().expect("piped stdout");
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let mut line = String::new();
                    let _ = std::io::BufReader::new(stdout).read_line(&mut line);
                    let _ = tx.send(line);
                });
                let line = rx
                    .recv_timeout(Duration::from_secs(30))
                    .map_err(|_| std::io::Error::other("the server did not start"))?;
                let _ = std::fs::remove_file(&path);
                let url = line
                    .trim()
                    .strip_prefix("listening on ")
                    .ok_or_else(|| {
                        std::io::Error::other(format!("unexpected server output {line:?}"))
                    })?
                    .trim_end_matches('/')
                    .to_owned();
                Ok((Server::Child(child), url))
            }
            ServerMode::InProcess => {
                let (url_tx, url_rx) = std::sync::mpsc::channel();
                let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
                let thread = std::thread::spawn(move || {
                    actix_rt::System::new().block_on(async move {
                        let options = crate::serve::ServeOptions { config, demo: None };
                        let serve = crate::serve::Serve::start(options)
                            .await
                            .expect("bench server starts");
                        let _ = url_tx.send(format!("http://{}", serve.addrs()[0]));
                        let _ = actix_rt::task::spawn_blocking(move || stop_rx.recv()).await;
                        serve.shutdown().await;
                    });
                });
                let url = url_rx
                    .recv_timeout(Duration::from_secs(30))
                    .map_err(|_| std::io::Error::other("the server did not start"))?;
                Ok((Server::Thread(stop_tx, thread), url))
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Server::Child(child) => Some(child.id()),
            Server::Thread(..) => None,
        }
    }

    fn stop(self) {
        match self {
            Server::Child(mut child) => {
                #[cfg(unix)]
                // SAFETY: kill(2) on our own child, not yet waited for.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                }
                #[cfg(not(unix))]
                let _ = child.kill();
                let _ = child.wait();
            }
            Server::Thread(stop, thread) => {
                let _ = stop.send(());
                let _ = thread.join();
            }
        }
    }
}

/// Resident memory of a process, bytes (Linux).
fn rss_bytes(pid: u32) -> Option<f64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0)
}

/// CPU time (user + system) of a process or thread from its `stat`, seconds (Linux).
fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

/// The parts of a `message` frame a client reads.
#[derive(Deserialize)]
struct Frame {
    r#type: String,
    #[serde(default)]
    data: Option<Sent>,
}

#[derive(Deserialize)]
struct Sent {
    sent: u64,
}

/// Runs the scenario. Must run inside an actix System (the generator's thread).
pub async fn websocket_fanout(options: &WsOptions) -> std::io::Result<WsReport> {
    let (server, url) = Server::start(&options.server, options.clients)?;
    let result = run(options, &server, &url).await;
    server.stop();
    result
}

async fn run(options: &WsOptions, server: &Server, url: &str) -> std::io::Result<WsReport> {
    let ws_url = format!("{}/ws", url.replacen("http://", "ws://", 1));
    let rss_before = server.pid().and_then(rss_bytes);
    let hist = Rc::new(RefCell::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
    ));
    let delivered = Rc::new(RefCell::new((0u64, Instant::now())));
    let mut readers = Vec::new();
    let client = awc::Client::builder()
        // No cap on connections (awc's default is 100 per scheme).
        .connector(awc::Connector::new().limit(0))
        .timeout(Duration::from_secs(30))
        .max_http_version(awc::http::Version::HTTP_11)
        .finish();
    for _ in 0..options.clients {
        let (_, mut conn) = client
            .ws(&ws_url)
            .max_frame_size(1 << 20)
            .connect()
            .await
            .map_err(|e| std::io::Error::other(format!("connect: {e}")))?;
        let subscribe = json!({"type": "subscribe", "topic": "bench.ws"}).to_string();
        conn.send(awc::ws::Message::Text(subscribe.into()))
            .await
            .map_err(|e| std::io::Error::other(format!("subscribe: {e}")))?;
        // welcome, then the ack.
        for _ in 0..2 {
            match conn.next().await {
                Some(Ok(awc::ws::Frame::Text(_))) => {}
                other => return Err(std::io::Error::other(format!("handshake: {other:?}"))),
            }
        }
        let (hist, delivered) = (hist.clone(), delivered.clone());
        readers.push(actix_rt::spawn(async move {
            while let Some(frame) = conn.next().await {
                match frame {
                    Ok(awc::ws::Frame::Text(text)) => {
                        let now = unix_nanos(SystemTime::now());
                        if let Ok(Frame {
                            r#type,
                            data: Some(Sent { sent }),
                        }) = serde_json::from_slice(&text)
                        {
                            if r#type == "message" {
                                let us = now.saturating_sub(sent) / 1000;
                                let _ = hist.borrow_mut().record(us.max(1));
                                let mut d = delivered.borrow_mut();
                                d.0 += 1;
                                d.1 = Instant::now();
                            }
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
    // Let the server settle, then weigh it.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let rss_after = server.pid().and_then(rss_bytes);
    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) => Some((after - before) / options.clients as f64),
        _ => None,
    };

    let total = ((options.rate * options.duration.as_secs_f64()) as u64).max(1);
    let period = Duration::from_secs_f64(1.0 / options.rate.max(1.0));
    let pad = "x".repeat(options.payload);
    let server_stat = server.pid().map(|pid| format!("/proc/{pid}/stat"));
    let cpu_before = (
        cpu_seconds("/proc/thread-self/stat"),
        server_stat.as_deref().and_then(cpu_seconds),
    );
    let start_wall = SystemTime::now() + Duration::from_millis(10);
    let start = Instant::now() + Duration::from_millis(10);
    let publish_url = format!("{url}/api/publish");
    // Each publish is a task of its own, so that it progresses while the loop sleeps
    // until the next one is due.
    let mut publishes = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + period.mul_f64(i as f64);
        actix_rt::time::sleep_until(due.into()).await;
        let sent = unix_nanos(start_wall + period.mul_f64(i as f64));
        let body = json!({"topic": "bench.ws", "data": {"sent": sent, "pad": pad}});
        let request = client.post(&publish_url).send_json(&body);
        publishes.push(actix_rt::spawn(async move { request.await.map(|_| ()) }));
    }
    for publish in publishes {
        publish
            .await
            .map_err(std::io::Error::other)?
            .map_err(|e| std::io::Error::other(format!("publish: {e}")))?;
    }
    let expected = total * options.clients as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered.borrow().0 < expected && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let generator_cpu = match (cpu_before.0, cpu_seconds("/proc/thread-self/stat")) {
        (Some(a), Some(b)) => (b - a) / wall,
        _ => 0.0,
    };
    let server_cpu = match (cpu_before.1, server_stat.as_deref().and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some((b - a) / wall),
        _ => None,
    };
    for reader in readers {
        reader.abort();
    }
    let (count, last) = *delivered.borrow();
    let span = last
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    let latency_us = LatencySummary::of(&hist.borrow());
    Ok(WsReport {
        clients: options.clients,
        published: total,
        expected,
        delivered: count,
        delivered_per_second: count as f64 / span,
        latency_us,
        server_bytes_per_connection: per_connection,
        generator_cpu,
        server_cpu,
        generator_bound: generator_cpu > 0.9,
    })
}
