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
    /// Measure throughput on this machine (median of several runs), next to a crossbeam
    /// channel baseline run in the same process.
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
fn median(mut runs: Vec<tickwire::bench::Throughput>) -> tickwire::bench::Throughput {
    runs.sort_by(|a, b| {
        a.deliveries_per_second()
            .total_cmp(&b.deliveries_per_second())
    });
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
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
            no_metrics,
        } => {
            if events == 0 || runs == 0 || workers == 0 || subscribers.contains(&0) {
                eprintln!(
                    "error: --events, --runs, --workers and --subscribers must be at least 1"
                );
                return std::process::ExitCode::from(2);
            }
            let rows = actix_rt::System::new().block_on(async move {
                let mut rows = Vec::new();
                for &subs in &subscribers {
                    let (mut ours, mut floor) = (Vec::new(), Vec::new());
                    // Interleaved, so both see the same machine state.
                    for _ in 0..runs {
                        ours.push(
                            tickwire::bench::eventbus_throughput(
                                events,
                                subs,
                                workers,
                                !no_metrics,
                            )
                            .await,
                        );
                        floor.push(tickwire::bench::crossbeam_baseline(events, subs));
                    }
                    rows.push((median(ours), median(floor)));
                }
                rows
            });
            if json {
                let out = serde_json::json!({
                    "target": "eventbus",
                    "workers": workers,
                    "runs": runs,
                    "metrics": !no_metrics,
                    "results": rows.iter().map(|(r, b)| serde_json::json!({
                        "subscribers": r.subscribers,
                        "events": r.events,
                        "deliveries": r.deliveries,
                        "deliveries_per_second": r.deliveries_per_second(),
                        "events_per_second": r.events_per_second(),
                        "full_retries": r.full_retries,
                        "elapsed_seconds": r.elapsed.as_secs_f64(),
                        "crossbeam_deliveries_per_second": b.deliveries_per_second(),
                        "ratio_to_crossbeam": r.deliveries_per_second() / b.deliveries_per_second(),
                    })).collect::<Vec<_>>(),
                });
                println!("{out}");
            } else {
                println!(
                    "EventBus throughput, 1 publisher thread, {workers} workers, metrics {}, median of {runs} runs",
                    if no_metrics { "off" } else { "on" }
                );
                println!(
                    "{:>11} {:>10} {:>14} {:>12} {:>22} {:>8}",
                    "subscribers",
                    "events",
                    "deliveries/s",
                    "events/s",
                    "crossbeam deliveries/s",
                    "ratio"
                );
                for (r, b) in &rows {
                    println!(
                        "{:>11} {:>10} {:>14.0} {:>12.0} {:>22.0} {:>8.2}",
                        r.subscribers,
                        r.events,
                        r.deliveries_per_second(),
                        r.events_per_second(),
                        b.deliveries_per_second(),
                        r.deliveries_per_second() / b.deliveries_per_second()
                    );
                }
            }
            std::process::ExitCode::SUCCESS
        }
    }
}
