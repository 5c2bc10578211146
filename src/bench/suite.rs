//! The scenarios of `tickwire bench`, run together with their baselines, as a table or
//! as one JSON object.
//!
//! Each figure is the median of `runs` runs; tickwire and the baselines are interleaved
//! run by run, so that both see the same machine. Ratios are tickwire / baseline (for
//! throughput, higher is better for tickwire; for latency, lower is).

use std::fmt::Write;
use std::time::Duration;

use serde_json::{json, Value};

use super::latency::{self, LatencyReport, PriorityReport};
use super::ws;
use super::ws::compare::{self, CompareOptions, WsMode};
use super::{Consumers, Payload, Throughput};

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// EventBus: throughput, latency, priority under saturation.
    EventBus,
    /// MessageQueue: throughput (fan-out and a consumer group), latency.
    Queue,
    /// WebSocket fan-out over loopback.
    WebSocket,
    /// All of them.
    All,
}

/// The knobs of the suite.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Runs per figure (the median is reported).
    pub runs: usize,
    /// Events per throughput run.
    pub events: u64,
    /// Subscriber counts of the throughput scenarios.
    pub subscribers: Vec<usize>,
    /// Worker threads of the bus and the queue.
    pub workers: usize,
    /// Duration of each latency, priority and WebSocket run.
    pub duration: Duration,
    /// Offered rate of the latency scenarios, per second.
    pub rate: f64,
    /// CRITICAL events per second in the priority scenario.
    pub critical_rate: f64,
    /// WebSocket clients.
    pub clients: usize,
    /// WebSocket messages published per second.
    pub ws_rate: f64,
    /// Threads of the WebSocket load generator that read the clients' connections (and
    /// cycle in the churn).
    pub ws_readers: usize,
    /// Which parts of the WebSocket benchmark.
    pub ws_mode: WsMode,
    /// WebSocket messages published per second in the capacity phase (0: none).
    pub ws_capacity_rate: f64,
    /// WebSocket clients cycling at once in the churn.
    pub ws_churn_loops: usize,
    /// Where the WebSocket scenario's server runs.
    pub ws_server: ws::ServerMode,
    /// `enable_metrics` of the bus in the throughput scenario.
    pub metrics: bool,
}

/// The run with the median of `key`.
fn median_by<T: Clone>(mut runs: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    runs[runs.len() / 2].clone()
}

fn throughput_median(runs: Vec<Throughput>) -> Throughput {
    median_by(runs, Throughput::deliveries_per_second)
}

fn latency_median(runs: Vec<LatencyReport>) -> LatencyReport {
    median_by(runs, |r| r.latency_us.p99 as f64)
}

/// Runs `target` and returns (the table, the JSON object).
pub async fn run(target: Target, o: &SuiteOptions) -> std::io::Result<(String, Value)> {
    let mut table = String::new();
    let mut out = serde_json::Map::new();
    out.insert("runs".into(), o.runs.into());
    out.insert("workers".into(), o.workers.into());
    if matches!(target, Target::EventBus | Target::All) {
        let (t, v) = eventbus_throughput(o, Payload::Json).await;
        table += &t;
        out.insert("eventbus_throughput".into(), v);
        let (t, v) = eventbus_throughput(o, Payload::Typed).await;
        table += &t;
        out.insert("eventbus_throughput_typed".into(), v);
        let (t, v) = mixed_priorities(o).await;
        table += &t;
        out.insert("eventbus_mixed_handler_priorities".into(), v);
        let (t, v) = latency_table("EventBus", o, true).await;
        table += &t;
        out.insert("eventbus_latency".into(), v);
        let (t, v) = priority(o).await;
        table += &t;
        out.insert("eventbus_priority".into(), v);
    }
    if matches!(target, Target::Queue | Target::All) {
        let (t, v) = queue_throughput(o, Payload::Json).await;
        table += &t;
        out.insert("queue_throughput".into(), v);
        let (t, v) = queue_throughput(o, Payload::Typed).await;
        table += &t;
        out.insert("queue_throughput_typed".into(), v);
        let (t, v) = latency_table("MessageQueue", o, false).await;
        table += &t;
        out.insert("queue_latency".into(), v);
    }
    if matches!(target, Target::WebSocket | Target::All) {
        let (t, v) = websocket(o).await?;
        table += &t;
        out.insert("websocket".into(), v);
    }
    Ok((table, Value::Object(out)))
}

/// What the payloads and the baselines' items are, for a table's title.
fn payload_title(payload: Payload) -> &'static str {
    match payload {
        Payload::Json => "JSON payloads (json!(i)); the baselines move the same Event",
        Payload::Typed => {
            "typed payloads (a Tick, typed handlers); the baselines move the same Arc<Tick>"
        }
    }
}

/// One run of each channel baseline, moving what `payload` says.
async fn baselines(events: u64, subs: usize, payload: Payload) -> [Throughput; 2] {
    match payload {
        Payload::Json => [
            super::crossbeam_baseline(events, subs).await,
            super::tokio_broadcast_baseline(events, subs).await,
        ],
        Payload::Typed => [
            super::crossbeam_baseline_of(events, subs, super::arc_tick).await,
            super::tokio_broadcast_baseline_of(events, subs, super::arc_tick).await,
        ],
    }
}

async fn eventbus_throughput(o: &SuiteOptions, payload: Payload) -> (String, Value) {
    let mut t = format!(
        "\nEventBus throughput, {}: 1 publisher thread, {} workers, {} events, metrics {}, median of {} runs (deliveries/s; ratio = tickwire / baseline)\n",
        payload_title(payload),
        o.workers,
        o.events,
        if o.metrics { "on" } else { "off" },
        o.runs
    );
    let _ = writeln!(
        t,
        "{:>11} {:>12} {:>12} {:>6} {:>12} {:>6} {:>12} {:>6}",
        "subscribers", "tickwire", "crossbeam", "ratio", "tokio bcast", "ratio", "actix", "ratio"
    );
    let mut rows = Vec::new();
    for &subs in &o.subscribers {
        let mut runs: [Vec<Throughput>; 4] = Default::default();
        for _ in 0..o.runs {
            runs[0].push(
                super::eventbus_throughput_of(payload, o.events, subs, o.workers, o.metrics, false)
                    .await,
            );
            let [c, b] = baselines(o.events, subs, payload).await;
            runs[1].push(c);
            runs[2].push(b);
            runs[3].push(match payload {
                Payload::Json => super::actix_baseline(o.events, subs, o.workers).await,
                Payload::Typed => {
                    super::actix_baseline_of(o.events, subs, o.workers, super::arc_tick).await
                }
            });
        }
        let [ours, c, b, a] = runs.map(throughput_median);
        let r = ours.deliveries_per_second();
        let _ = writeln!(
            t,
            "{:>11} {:>12.0} {:>12.0} {:>6.2} {:>12.0} {:>6.2} {:>12.0} {:>6.2}",
            subs,
            r,
            c.deliveries_per_second(),
            r / c.deliveries_per_second(),
            b.deliveries_per_second(),
            r / b.deliveries_per_second(),
            a.deliveries_per_second(),
            r / a.deliveries_per_second(),
        );
        rows.push(json!({
            "subscribers": subs,
            "tickwire": r,
            "crossbeam": c.deliveries_per_second(),
            "tokio_broadcast": b.deliveries_per_second(),
            "actix": a.deliveries_per_second(),
            "ratio_to_crossbeam": r / c.deliveries_per_second(),
            "ratio_to_tokio_broadcast": r / b.deliveries_per_second(),
            "ratio_to_actix": r / a.deliveries_per_second(),
        }));
    }
    (
        t,
        json!({
            "events": o.events,
            "metrics": o.metrics,
            "payload": payload,
            "deliveries_per_second": rows,
        }),
    )
}

/// EventBus throughput with handler priorities cycling LOW..CRITICAL: every worker then
/// wakes its handlers through its run queue, by priority.
async fn mixed_priorities(o: &SuiteOptions) -> (String, Value) {
    let mut t = String::new();
    let subs = o.subscribers.iter().copied().max().unwrap_or(1);
    let (mut plain, mut mixed) = (Vec::new(), Vec::new());
    for _ in 0..o.runs {
        let run =
            |mixed| super::eventbus_throughput_with(o.events, subs, o.workers, o.metrics, mixed);
        plain.push(run(false).await);
        mixed.push(run(true).await);
    }
    let (plain, mixed) = (
        throughput_median(plain).deliveries_per_second(),
        throughput_median(mixed).deliveries_per_second(),
    );
    let _ = writeln!(
        t,
        "{subs} subscribers with mixed handler priorities: {mixed:.0} deliveries/s, {:.2}x the same with one priority ({plain:.0}, interleaved runs)",
        mixed / plain
    );
    (
        t,
        json!({
            "subscribers": subs,
            "tickwire": mixed,
            "one_priority": plain,
            "ratio": mixed / plain,
        }),
    )
}

async fn latency_table(component: &str, o: &SuiteOptions, bus: bool) -> (String, Value) {
    let mut runs: [Vec<LatencyReport>; 4] = Default::default();
    for _ in 0..o.runs {
        runs[0].push(if bus {
            latency::eventbus_latency(o.rate, o.duration, o.workers).await
        } else {
            latency::queue_latency(o.rate, o.duration, o.workers).await
        });
        runs[1].push(latency::crossbeam_latency(o.rate, o.duration).await);
        runs[2].push(latency::tokio_broadcast_latency(o.rate, o.duration).await);
        runs[3].push(latency::actix_latency(o.rate, o.duration).await);
    }
    let reports = runs.map(latency_median);
    let mut t = format!(
        "\n{component} latency, publish → handler, open loop at {:.0}/s for {:.1} s, µs (the run with the median p99 of {})\n",
        o.rate,
        o.duration.as_secs_f64(),
        o.runs
    );
    let _ = writeln!(
        t,
        "{:>16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}   from the publish call: {:>5} {:>5} {:>5}",
        "", "p50", "p90", "p99", "p999", "max", "items", "p50", "p99", "p999"
    );
    for r in &reports {
        let (l, p) = (r.latency_us, r.from_publish_us);
        let _ = writeln!(
            t,
            "{:>16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}                          {:>5} {:>5} {:>5}",
            r.name, l.p50, l.p90, l.p99, l.p999, l.max, r.items, p.p50, p.p99, p.p999
        );
    }
    (t, serde_json::to_value(&reports).unwrap_or_default())
}

async fn priority(o: &SuiteOptions) -> (String, Value) {
    let mut runs: Vec<PriorityReport> = Vec::new();
    for _ in 0..o.runs {
        runs.push(latency::priority_under_saturation(o.duration, o.critical_rate, 1000).await);
    }
    let r = median_by(runs, |r| r.p99_ratio);
    let mut t = format!(
        "\nEventBus priority under saturation: LOW flood at capacity (queue_size 1000) + CRITICAL at {:.0}/s, {:.1} s, µs from the publish call (the run with the median ratio of {})\n",
        o.critical_rate,
        o.duration.as_secs_f64(),
        o.runs
    );
    let _ = writeln!(
        t,
        "{:>10} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "", "p50", "p99", "p999", "max", "handled"
    );
    for (name, l) in [
        ("LOW", r.low_us),
        ("CRITICAL", r.critical_us),
        ("(from due)", r.critical_from_due_us),
    ] {
        let _ = writeln!(
            t,
            "{:>10} {:>8} {:>8} {:>8} {:>8} {:>10}",
            name, l.p50, l.p99, l.p999, l.max, l.count
        );
    }
    let _ = writeln!(t, "CRITICAL p99 / LOW p99 = {:.3}", r.p99_ratio);
    (t, serde_json::to_value(&r).unwrap_or_default())
}

async fn queue_throughput(o: &SuiteOptions, payload: Payload) -> (String, Value) {
    let mut t = format!(
        "\nMessageQueue throughput, {}: 1 publisher thread, {} workers, {} messages, median of {} runs (deliveries/s; ratio = tickwire / baseline)\n",
        payload_title(payload),
        o.workers,
        o.events,
        o.runs
    );
    let _ = writeln!(
        t,
        "{:>16} {:>12} {:>12} {:>6} {:>12} {:>6}",
        "consumers", "tickwire", "crossbeam", "ratio", "tokio bcast", "ratio"
    );
    let mut rows = Vec::new();
    let mut shapes: Vec<Consumers> = o
        .subscribers
        .iter()
        .map(|&n| Consumers::FanOut(n))
        .collect();
    shapes.push(Consumers::Group(4));
    for shape in shapes {
        let baseline_subs = match shape {
            Consumers::FanOut(n) => n,
            // A group delivers each message once: the baseline is one consumer.
            Consumers::Group(_) => 1,
        };
        let mut runs: [Vec<Throughput>; 3] = Default::default();
        for _ in 0..o.runs {
            runs[0].push(super::queue_throughput_of(payload, o.events, shape, o.workers).await);
            let [c, b] = baselines(o.events, baseline_subs, payload).await;
            runs[1].push(c);
            runs[2].push(b);
        }
        let [ours, c, b] = runs.map(throughput_median);
        let r = ours.deliveries_per_second();
        let label = match shape {
            Consumers::FanOut(n) => format!("{n} subscribers"),
            Consumers::Group(n) => format!("group of {n}"),
        };
        let _ = writeln!(
            t,
            "{:>16} {:>12.0} {:>12.0} {:>6.2} {:>12.0} {:>6.2}",
            label,
            r,
            c.deliveries_per_second(),
            r / c.deliveries_per_second(),
            b.deliveries_per_second(),
            r / b.deliveries_per_second(),
        );
        rows.push(json!({
            "consumers": label,
            "tickwire": r,
            "crossbeam": c.deliveries_per_second(),
            "tokio_broadcast": b.deliveries_per_second(),
            "ratio_to_crossbeam": r / c.deliveries_per_second(),
            "ratio_to_tokio_broadcast": r / b.deliveries_per_second(),
        }));
    }
    (
        t,
        json!({ "messages": o.events, "payload": payload, "deliveries_per_second": rows }),
    )
}

async fn websocket(o: &SuiteOptions) -> std::io::Result<(String, Value)> {
    let options = CompareOptions {
        mode: o.ws_mode,
        runs: o.runs,
        clients: o.clients,
        readers: o.ws_readers,
        rate: o.ws_rate,
        capacity_rate: o.ws_capacity_rate,
        duration: o.duration,
        payload: 200,
        churn_loops: o.ws_churn_loops,
        server: o.ws_server.clone(),
    };
    compare::run(&options).await
}
