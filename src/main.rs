//! The `tickwire` command: `tickwire serve` runs the whole system, `tickwire bench`
//! measures it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use std::time::Duration;

use tickwire::bench::suite::{self, SuiteOptions, Target};
use tickwire::bench::ws::compare::WsMode;
use tickwire::bench::ws::ServerMode;
use tickwire::serve::config::FileConfig;
use tickwire::serve::{Serve, ServeOptions, Shutdown, Signals};

/// The binary's allocator. Events are allocated by publisher threads and freed by handler
/// threads; glibc's malloc takes an arena lock for each such free of a chunk over its
/// fast-bin size (128 bytes: a typed tick), which serialized publisher and handlers (a
/// third of the throughput of typed events went to it). mimalloc frees across threads
/// without a lock. The library sets no allocator: an app chooses its own (the
/// `mimalloc` feature, on by default, only brings the crate for this binary).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// tickwire: messaging runtime for algorithmic trading on actix.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the EventBus, the MessageQueue and the WebSocketService behind one HTTP server:
    /// the live dashboard at /, WebSocket at /ws, Prometheus text at /metrics, JSON metrics
    /// at /api/metrics, POST /api/publish, and /health. SIGINT or SIGTERM stops it
    /// gracefully (drains the bus and the queue, closes sessions with 1001, exits 0).
    /// Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to change the level.
    Serve {
        /// Address to listen on, IP:PORT; overrides `[server] bind` of the config file.
        /// Default 127.0.0.1:8080. Port 0 picks a free port (printed at start).
        #[arg(long, value_name = "ADDR")]
        bind: Option<SocketAddr>,
        /// Serve on the listening TCP socket given as standard input instead of binding
        /// (socket activation, as inetd does; `tickwire bench ws` starts its server so).
        #[arg(long, conflicts_with = "bind")]
        listen_stdin: bool,
        /// TOML configuration file with sections [event_bus], [message_queue],
        /// [websocket] and [server]; every field is optional and documented in
        /// tickwire.example.toml.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Run a simulated market: a feed thread publishes random-walk ticks for a few
        /// symbols as `market.tick` events, republished onto the MessageQueue topic
        /// `market.data`, pushed to WebSocket clients; plus `system.*` status and alert
        /// events.
        #[arg(long)]
        demo: bool,
        /// Ticks per second of the demo feed.
        #[arg(long, value_name = "N", default_value_t = 2000, requires = "demo")]
        demo_rate: u32,
    },
    /// Measure tickwire on this machine, next to baselines run in the same process (a
    /// crossbeam channel, tokio::sync::broadcast, plain actix): EventBus and MessageQueue
    /// throughput and open-loop latency, priority under saturation, WebSocket fan-out over
    /// loopback. Figures are medians of several runs; BENCHMARKS.md explains them.
    Bench {
        /// What to measure.
        #[arg(value_enum, default_value = "all")]
        target: BenchTarget,
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
        /// Seconds of each latency, priority and WebSocket run.
        #[arg(long, default_value_t = 2.0, value_name = "S")]
        duration: f64,
        /// Runs per figure; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Events (messages) per throughput run.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Subscriber counts of the throughput scenarios (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        subscribers: Vec<usize>,
        /// Worker threads of the bus and the queue (max_workers).
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Offered rate of the latency scenarios, per second.
        #[arg(long, default_value_t = 100_000.0)]
        rate: f64,
        /// CRITICAL events per second in the priority scenario.
        #[arg(long, default_value_t = 1_000.0)]
        critical_rate: f64,
        /// WebSocket clients.
        #[arg(long, default_value_t = 1_000)]
        clients: usize,
        /// WebSocket messages published per second (each goes to every client).
        #[arg(long, default_value_t = 300.0)]
        ws_rate: f64,
        /// WebSocket messages per second of the capacity phase, after the one at
        /// --ws-rate on the same connections (0: none). The default offers more than
        /// two cores deliver, so that delivered/s is the capacity.
        #[arg(long, default_value_t = 2_000.0, value_name = "N")]
        ws_capacity_rate: f64,
        /// Threads of the WebSocket load generator that read the clients' connections
        /// (and cycle in the churn).
        #[arg(long, default_value_t = 2)]
        ws_readers: usize,
        /// Which parts of the WebSocket benchmark: the fan-out without compression
        /// (plain), with every client negotiating permessage-deflate (deflate), connect /
        /// subscribe / close cycles (churn), memory per idle connection (memory), a
        /// reconnect storm with recovery (storm), or all side by side.
        #[arg(long, value_enum, default_value = "all")]
        ws_mode: BenchWsMode,
        /// WebSocket clients cycling at once in the churn.
        #[arg(long, default_value_t = 64, value_name = "N")]
        ws_churn_loops: usize,
        /// The server of the WebSocket benchmark: an executable run as `PATH serve
        /// --listen-stdin --config FILE` (another build of tickwire, or a wrapper that
        /// runs it under a profiler); this executable by default.
        #[arg(long, value_name = "PATH")]
        ws_server: Option<std::path::PathBuf>,
        /// Run the EventBus throughput scenario with `enable_metrics = false`.
        #[arg(long)]
        no_metrics: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BenchTarget {
    /// EventBus: throughput 1→N, latency, priority under saturation.
    Eventbus,
    /// MessageQueue: throughput (fan-out, a 4-member group), latency.
    Queue,
    /// The WebSocket transport over loopback: fan-out to many clients, plain and with
    /// permessage-deflate, connection churn, memory per connection (see --ws-mode).
    Ws,
    /// Everything but the cluster.
    All,
    /// Two cluster nodes on a nats-server the bench starts, beside raw async-nats on the
    /// same server: cross-node EventBus throughput and latency at --rate (a build with
    /// `--features cluster`; nats-server in PATH, /usr/sbin or NATS_SERVER).
    Cluster,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BenchWsMode {
    /// Fan-out, clients not offering permessage-deflate.
    Plain,
    /// Fan-out, every client negotiating permessage-deflate.
    Deflate,
    /// Connect / subscribe / close cycles.
    Churn,
    /// Server memory per idle connection.
    Memory,
    /// A reconnect storm: every client comes back at once, each recovering 100 messages.
    Storm,
    /// All of them, side by side.
    All,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            bind,
            listen_stdin,
            config,
            demo,
            demo_rate,
        } => serve(bind, listen_stdin, config, demo.then_some(demo_rate)),
        Command::Bench {
            target,
            json,
            duration,
            runs,
            events,
            subscribers,
            workers,
            rate,
            critical_rate,
            clients,
            ws_rate,
            ws_capacity_rate,
            ws_readers,
            ws_mode,
            ws_churn_loops,
            ws_server,
            no_metrics,
        } => {
            let valid = events > 0
                && runs > 0
                && workers > 0
                && clients > 0
                && ws_readers > 0
                && ws_churn_loops > 0
                && ws_capacity_rate.is_finite()
                && ws_capacity_rate >= 0.0
                && !subscribers.contains(&0)
                && [duration, rate, critical_rate, ws_rate]
                    .iter()
                    .all(|v| v.is_finite() && *v > 0.0);
            if !valid {
                eprintln!("error: every count, rate and duration must be positive");
                return ExitCode::from(2);
            }
            let options = SuiteOptions {
                runs,
                events,
                subscribers,
                workers,
                duration: Duration::from_secs_f64(duration),
                rate,
                critical_rate,
                clients,
                ws_rate,
                ws_readers,
                ws_mode: match ws_mode {
                    BenchWsMode::Plain => WsMode::Plain,
                    BenchWsMode::Deflate => WsMode::Deflate,
                    BenchWsMode::Churn => WsMode::Churn,
                    BenchWsMode::Memory => WsMode::Memory,
                    BenchWsMode::Storm => WsMode::Storm,
                    BenchWsMode::All => WsMode::All,
                },
                ws_capacity_rate,
                ws_churn_loops,
                // A child process needs --listen-stdin, a Unix way to hand it its socket.
                ws_server: match ws_server.map(Ok).unwrap_or_else(std::env::current_exe) {
                    Ok(exe) if cfg!(unix) => ServerMode::ChildProcess(exe),
                    _ => ServerMode::InProcess,
                },
                metrics: !no_metrics,
            };
            if let BenchTarget::Cluster = target {
                return bench_cluster(&options, json);
            }
            let target = match target {
                BenchTarget::Cluster => unreachable!("handled above"),
                BenchTarget::Eventbus => Target::EventBus,
                BenchTarget::Queue => Target::Queue,
                BenchTarget::Ws => Target::WebSocket,
                BenchTarget::All => Target::All,
            };
            report(
                actix_rt::System::new().block_on(suite::run(target, &options)),
                json,
            )
        }
    }
}

/// `tickwire bench cluster`.
#[cfg(feature = "cluster")]
fn bench_cluster(o: &SuiteOptions, json: bool) -> ExitCode {
    let run = tickwire::bench::cluster::run(o.events, o.runs, o.rate, o.duration, o.workers);
    report(actix_rt::System::new().block_on(run), json)
}

/// Prints a bench's table (or its JSON with `--json`), or its error.
fn report(result: std::io::Result<(String, serde_json::Value)>, json: bool) -> ExitCode {
    match result {
        Ok((table, value)) => {
            if json {
                println!("{value}");
            } else {
                print!("{table}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `tickwire bench cluster` in a build without the cluster.
#[cfg(not(feature = "cluster"))]
fn bench_cluster(_: &SuiteOptions, _: bool) -> ExitCode {
    eprintln!("error: this tickwire was built without the `cluster` feature (cargo build --release --features cluster)");
    ExitCode::from(2)
}

/// `tickwire serve`: exit 0 after a graceful shutdown, 130 when a second signal cut it
/// short, 2 for a bad config file or a `--listen-stdin` that is not a listening socket,
/// 1 when the server cannot start.
fn serve(
    bind: Option<SocketAddr>,
    listen_stdin: bool,
    config: Option<PathBuf>,
    demo: Option<u32>,
) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut file = match &config {
        Some(path) => match FileConfig::load(path) {
            Ok(file) => file,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
        },
        None => FileConfig::default(),
    };
    if let Some(bind) = bind {
        file.server.bind = bind;
    }
    let listener = match listen_stdin.then(stdin_listener).transpose() {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: standard input is not a listening TCP socket: {err}");
            return ExitCode::from(2);
        }
    };
    let mut options = ServeOptions::new(file);
    if let Some(rate) = demo {
        options = options.demo(rate);
    }
    if let Some(listener) = listener {
        options = options.listener(listener);
    }
    actix_rt::System::new().block_on(async move {
        // Listen before saying we are ready: a SIGTERM right after is not missed.
        let signals = match Signals::install() {
            Ok(signals) => signals,
            Err(err) => {
                eprintln!("error: cannot listen for signals: {err}");
                return ExitCode::FAILURE;
            }
        };
        let serve = match Serve::start(options).await {
            Ok(serve) => serve,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        };
        for addr in serve.addrs() {
            // On stdout, for scripts: the address actually bound (port 0 resolved).
            println!("listening on http://{addr}/");
        }
        match serve.run_until(signals).await {
            Shutdown::Completed => ExitCode::SUCCESS,
            // At once: the components are half stopped, and nothing is left to wait for.
            Shutdown::Interrupted => std::process::exit(130),
        }
    })
}

/// The listening socket passed as standard input (`--listen-stdin`): a TCP socket (IPv4
/// or IPv6) that listens.
#[cfg(unix)]
fn stdin_listener() -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, SockRef, Type};
    use std::os::fd::AsFd;
    let listener = std::net::TcpListener::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let socket = SockRef::from(&listener);
    let tcp = socket.r#type()? == Type::STREAM
        && matches!(socket.domain()?, d if d == Domain::IPV4 || d == Domain::IPV6);
    if !tcp {
        return Err(std::io::Error::other("it is a socket, but not a TCP one"));
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    if !socket.is_listener()? {
        return Err(std::io::Error::other("it is a socket, but not listening"));
    }
    Ok(listener)
}

#[cfg(not(unix))]
fn stdin_listener() -> std::io::Result<std::net::TcpListener> {
    Err(std::io::Error::other("--listen-stdin needs a Unix system"))
}
