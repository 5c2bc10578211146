//! The `tickwire` command: `tickwire serve` runs the whole system, `tickwire bench`
//! measures it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tickwire::bench::{self, Throughput};
use tickwire::serve::config::FileConfig;
use tickwire::serve::{Serve, ServeOptions, Signals};

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
    /// Measure throughput on this machine (median of several runs), next to baselines run
    /// in the same process: a crossbeam channel per subscriber, a tokio broadcast channel,
    /// and plain actix actors.
    Bench {
        /// What to measure.
        #[arg(value_enum, default_value = "eventbus")]
        target: BenchTarget,
        /// Events published per run.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Subscribers each event goes to (a comma-separated list runs each).
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        subscribers: Vec<usize>,
        /// Worker threads of the bus (max_workers).
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Runs per figure; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Run the bus with `enable_metrics = false` (no timing on the hot path).
        #[arg(long)]
        no_metrics: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BenchTarget {
    /// EventBus, one publisher thread to N subscribers.
    Eventbus,
}

/// The run with the median deliveries per second.
fn median(mut runs: Vec<Throughput>) -> Throughput {
    runs.sort_by(|a, b| {
        a.deliveries_per_second()
            .total_cmp(&b.deliveries_per_second())
    });
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            bind,
            config,
            demo,
            demo_rate,
        } => serve(bind, config, demo.then_some(demo_rate)),
        Command::Bench {
            target: BenchTarget::Eventbus,
            events,
            subscribers,
            workers,
            runs,
            json,
            no_metrics,
        } => {
            if events == 0 || runs == 0 || workers == 0 || subscribers.contains(&0) {
                eprintln!(
                    "error: --events, --runs, --workers and --subscribers must be at least 1"
                );
                return ExitCode::from(2);
            }
            let rows = actix_rt::System::new().block_on(async move {
                let mut rows = Vec::new();
                for &subs in &subscribers {
                    let mut runs_of: [Vec<Throughput>; 4] = Default::default();
                    // Interleaved run by run, so all see the same machine state.
                    for _ in 0..runs {
                        runs_of[0].push(
                            bench::eventbus_throughput(events, subs, workers, !no_metrics).await,
                        );
                        runs_of[1].push(bench::crossbeam_baseline(events, subs));
                        runs_of[2].push(bench::tokio_broadcast_baseline(events, subs));
                        runs_of[3].push(bench::actix_baseline(events, subs, workers).await);
                    }
                    rows.push(runs_of.map(median));
                }
                rows
            });
            let names = ["crossbeam", "tokio_broadcast", "actix"];
            if json {
                let out = serde_json::json!({
                    "target": "eventbus",
                    "workers": workers,
                    "runs": runs,
                    "metrics": !no_metrics,
                    "results": rows.iter().map(|[r, baselines @ ..]| {
                        let mut row = serde_json::json!({
                            "subscribers": r.subscribers,
                            "events": r.events,
                            "deliveries": r.deliveries,
                            "deliveries_per_second": r.deliveries_per_second(),
                            "events_per_second": r.events_per_second(),
                            "full_retries": r.full_retries,
                            "elapsed_seconds": r.elapsed.as_secs_f64(),
                        });
                        for (name, b) in names.iter().zip(baselines) {
                            row[format!("{name}_deliveries_per_second")] = b.deliveries_per_second().into();
                            row[format!("ratio_to_{name}")] =
                                (r.deliveries_per_second() / b.deliveries_per_second()).into();
                        }
                        row
                    }).collect::<Vec<_>>(),
                });
                println!("{out}");
            } else {
                println!(
                    "EventBus throughput, 1 publisher thread, {workers} workers, metrics {}, median of {runs} runs (deliveries/s; ratio = tickwire / baseline)",
                    if no_metrics { "off" } else { "on" }
                );
                println!(
                    "{:>11} {:>10} {:>12} {:>12} {:>6} {:>12} {:>6} {:>12} {:>6}",
                    "subscribers",
                    "events",
                    "tickwire",
                    "crossbeam",
                    "ratio",
                    "tokio bcast",
                    "ratio",
                    "actix",
                    "ratio"
                );
                for [r, c, t, a] in &rows {
                    let ours = r.deliveries_per_second();
                    println!(
                        "{:>11} {:>10} {:>12.0} {:>12.0} {:>6.2} {:>12.0} {:>6.2} {:>12.0} {:>6.2}",
                        r.subscribers,
                        r.events,
                        ours,
                        c.deliveries_per_second(),
                        ours / c.deliveries_per_second(),
                        t.deliveries_per_second(),
                        ours / t.deliveries_per_second(),
                        a.deliveries_per_second(),
                        ours / a.deliveries_per_second(),
                    );
                }
            }
            ExitCode::SUCCESS
        }
    }
}

/// `tickwire serve`: exit 0 after a graceful shutdown, 2 for a bad config file, 1 when
/// the server cannot start.
fn serve(bind: Option<SocketAddr>, config: Option<PathBuf>, demo: Option<u32>) -> ExitCode {
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
    let options = ServeOptions { config: file, demo };
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
        serve.run_until(signals).await;
        ExitCode::SUCCESS
    })
}
