//! The `tickwire` command.

use clap::{Parser, Subcommand, ValueEnum};

/// tickwire: messaging runtime for algorithmic trading on actix.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure throughput on this machine (median of several runs).
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
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BenchTarget {
    /// EventBus, one publisher thread to N subscribers.
    Eventbus,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench {
            target: BenchTarget::Eventbus,
            events,
            subscribers,
            workers,
            runs,
            json,
        } => {
            if events == 0 || runs == 0 || workers == 0 || subscribers.contains(&0) {
                eprintln!("error: --events, --runs, --workers and --subscribers must be at least 1");
                return std::process::ExitCode::from(2);
            }
            let rows = actix_rt::System::new().block_on(async move {
                let mut rows = Vec::new();
                for &subs in &subscribers {
                    let mut results = Vec::new();
                    for _ in 0..runs {
                        results.push(tickwire::bench::eventbus_throughput(events, subs, workers).await);
                    }
                    results.sort_by(|a, b| a.deliveries_per_second().total_cmp(&b.deliveries_per_second()));
                    rows.push(results.swap_remove(runs / 2));
                }
                rows
            });
            if json {
                let out = serde_json::json!({
                    "target": "eventbus",
                    "workers": workers,
                    "runs": runs,
                    "results": rows.iter().map(|r| serde_json::json!({
                        "subscribers": r.subscribers,
                        "events": r.events,
                        "deliveries": r.deliveries,
                        "deliveries_per_second": r.deliveries_per_second(),
                        "events_per_second": r.events_per_second(),
                        "full_retries": r.full_retries,
                        "elapsed_seconds": r.elapsed.as_secs_f64(),
                    })).collect::<Vec<_>>(),
                });
                println!("{out}");
            } else {
                println!("EventBus throughput, 1 publisher thread, {workers} workers, median of {runs} runs");
                println!("{:>11} {:>12} {:>16} {:>14}", "subscribers", "events", "deliveries/s", "events/s");
                for r in &rows {
                    println!(
                        "{:>11} {:>12} {:>16.0} {:>14.0}",
                        r.subscribers,
                        r.events,
                        r.deliveries_per_second(),
                        r.events_per_second()
                    );
                }
            }
            std::process::ExitCode::SUCCESS
        }
    }
}
