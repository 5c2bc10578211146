//! `tickwire bench ws`: the parts of the transport's benchmark side by side, as a table
//! and as JSON.
//!
//! Each run does every part asked for, in this order, each against a fresh server: the
//! fan-out without compression, the same with every client negotiating
//! permessage-deflate (both at `rate`, for latency, then at `capacity_rate`, for
//! throughput, on the same connections), churn without and with deflate offered, and
//! the idle memory per connection without and with deflate. So every part sees the same
//! machine in each run. Each figure is the median over the runs: the run with the
//! median p99 for the latency rows, with the median delivered/s for the capacity rows,
//! and so on; the deflate/plain ratio is the median of each run's own ratio.

use std::fmt::Write;
use std::time::Duration;

use serde_json::{json, Value};

use super::{
    websocket_churn, websocket_fanout, websocket_storm, ChurnOptions, ChurnReport, PhaseReport,
    ServerMode, StormOptions, StormReport, WsOptions, WsReport,
};

/// Which parts to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WsMode {
    /// The fan-out, clients not offering permessage-deflate.
    Plain,
    /// The fan-out, every client negotiating permessage-deflate.
    Deflate,
    /// Connect / subscribe / close cycles.
    Churn,
    /// Server memory per idle connection.
    Memory,
    /// A reconnect storm: every client comes back at once and recovers.
    Storm,
    /// All of them, side by side.
    All,
}

impl WsMode {
    fn runs(self, part: WsMode) -> bool {
        self == WsMode::All || self == part
    }
}

/// Messages each storm client missed (the server's default `history_size` keeps 100).
const STORM_MISSED: u64 = 100;

/// The messages per second of the memory part's one phase (for the "after traffic"
/// figure), for [`MEMORY_PHASE`].
const MEMORY_RATE: f64 = 20.0;
const MEMORY_PHASE: Duration = Duration::from_millis(500);

/// The knobs of `tickwire bench ws`.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Which parts.
    pub mode: WsMode,
    /// Runs of each part (the median is reported).
    pub runs: usize,
    /// Fan-out and memory clients.
    pub clients: usize,
    /// Generator threads reading the clients (and cycling in the churn).
    pub readers: usize,
    /// Messages per second of the fan-out's latency phase.
    pub rate: f64,
    /// Messages per second of the fan-out's capacity phase (0: none).
    pub capacity_rate: f64,
    /// How long each fan-out phase publishes, and the churn cycles.
    pub duration: Duration,
    /// Bytes of padding per message.
    pub payload: usize,
    /// Clients cycling at once in the churn.
    pub churn_loops: usize,
    /// Where the servers run.
    pub server: ServerMode,
}

/// A part of a run, as a table row: its JSON key and where it is in a [`Run`].
type Part<R> = (&'static str, fn(&Run) -> Option<&R>);

/// Everything one run measured.
#[derive(Default)]
struct Run {
    plain: Option<WsReport>,
    deflate: Option<WsReport>,
    churn: Option<ChurnReport>,
    churn_client_first: Option<ChurnReport>,
    churn_deflate: Option<ChurnReport>,
    memory: Option<WsReport>,
    memory_deflate: Option<WsReport>,
    storm: Option<StormReport>,
}

/// Runs the parts `o.mode` names, `o.runs` times; (the table, the JSON object).
pub async fn run(o: &CompareOptions) -> std::io::Result<(String, Value)> {
    let mut runs: Vec<Run> = Vec::with_capacity(o.runs);
    let fanout = |deflate: bool, rates: Vec<f64>, duration: Duration| WsOptions {
        clients: o.clients,
        readers: o.readers,
        rates,
        duration,
        payload: o.payload,
        deflate,
        server: o.server.clone(),
    };
    let mut rates = vec![o.rate];
    if o.capacity_rate > 0.0 {
        rates.push(o.capacity_rate);
    }
    let churn = |deflate: bool, client_closes_first: bool| ChurnOptions {
        loops: o.churn_loops,
        threads: o.readers,
        duration: o.duration,
        deflate,
        client_closes_first,
        server: o.server.clone(),
    };
    for _ in 0..o.runs {
        let mut run = Run::default();
        if o.mode.runs(WsMode::Plain) {
            run.plain = Some(websocket_fanout(&fanout(false, rates.clone(), o.duration)).await?);
        }
        if o.mode.runs(WsMode::Deflate) {
            run.deflate = Some(websocket_fanout(&fanout(true, rates.clone(), o.duration)).await?);
        }
        if o.mode.runs(WsMode::Churn) {
            run.churn = Some(websocket_churn(&churn(false, false)).await?);
            run.churn_client_first = Some(websocket_churn(&churn(false, true)).await?);
            run.churn_deflate = Some(websocket_churn(&churn(true, false)).await?);
        }
        if o.mode.runs(WsMode::Memory) {
            let gentle = |deflate| fanout(deflate, vec![MEMORY_RATE], MEMORY_PHASE);
            run.memory = Some(websocket_fanout(&gentle(false)).await?);
            run.memory_deflate = Some(websocket_fanout(&gentle(true)).await?);
        }
        if o.mode.runs(WsMode::Storm) {
            let storm = StormOptions {
                clients: o.clients,
                missed: STORM_MISSED,
                threads: o.readers,
                payload: o.payload,
                server: o.server.clone(),
            };
            run.storm = Some(websocket_storm(&storm).await?);
        }
        runs.push(run);
    }
    Ok(render(o, &runs))
}

/// The value at the median of `key` over `items` (None when there are none).
fn median_by<T: Clone>(mut items: Vec<T>, key: impl Fn(&T) -> f64) -> Option<T> {
    items.sort_by(|a, b| key(a).total_cmp(&key(b)));
    items.get(items.len() / 2).cloned()
}

fn median(values: Vec<f64>) -> Option<f64> {
    median_by(values, |v| *v)
}

/// Phase `i` of every run's report that `pick` gives.
fn phases(runs: &[Run], pick: impl Fn(&Run) -> Option<&WsReport>, i: usize) -> Vec<PhaseReport> {
    runs.iter()
        .filter_map(|r| pick(r)?.phases.get(i).cloned())
        .collect()
}

fn percent(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

/// What limited a phase, from the CPU shares.
fn limit(p: &PhaseReport) -> &'static str {
    if p.generator_bound {
        "GENERATOR"
    } else if p.machine_busy.is_some_and(|m| m > 0.9) {
        "the cores (full)"
    } else {
        "-"
    }
}

fn render(o: &CompareOptions, runs: &[Run]) -> (String, Value) {
    let mut t = String::new();
    let mut out = serde_json::Map::new();
    out.insert("runs".into(), runs.len().into());
    out.insert("mode".into(), json!(o.mode));
    let where_ = match o.server {
        ServerMode::ChildProcess(_) => "`tickwire serve` in a child process",
        ServerMode::InProcess => "in this process",
    };
    let _ = writeln!(
        t,
        "\nWebSocket transport over loopback, median of {} runs (server: {where_}, default config with permessage-deflate enabled; generator: raw-socket clients on {} threads)",
        runs.len(),
        o.readers
    );
    if o.mode.runs(WsMode::Plain) || o.mode.runs(WsMode::Deflate) {
        fanout_table(o, runs, &mut t, &mut out);
    }
    if o.mode.runs(WsMode::Churn) {
        churn_table(o, runs, &mut t, &mut out);
    }
    if o.mode.runs(WsMode::Memory) {
        memory_table(o, runs, &mut t, &mut out);
    }
    if o.mode.runs(WsMode::Storm) {
        storm_table(o, runs, &mut t, &mut out);
    }
    (t, Value::Object(out))
}

fn fanout_table(
    o: &CompareOptions,
    runs: &[Run],
    t: &mut String,
    out: &mut serde_json::Map<String, Value>,
) {
    let _ = writeln!(
        t,
        "\nFan-out: {} clients subscribed to one topic, messages of {} padding bytes (~{} bytes of JSON) posted to /api/publish, open loop, {:.1} s per phase",
        o.clients,
        o.payload,
        o.payload + 130,
        o.duration.as_secs_f64()
    );
    let _ = writeln!(
        t,
        "{:<18} {:>10} {:>11} {:>17} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9} {:>7} {:>22}  limit",
        "",
        "offered/s",
        "delivered/s",
        "delivered",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "seq!",
        "wire B/m",
        "srv B/m",
        "srv CPU",
        "generator pub/readers"
    );
    let parts: [Part<WsReport>; 2] = [
        ("plain", |r| r.plain.as_ref()),
        ("deflate", |r| r.deflate.as_ref()),
    ];
    let phase_names = ["at_rate", "at_capacity_rate"];
    let mut medians: Vec<Vec<Option<PhaseReport>>> = Vec::new();
    for (i, phase_name) in phase_names.iter().enumerate() {
        let mut row = Vec::new();
        for (name, pick) in parts {
            let all = phases(runs, pick, i);
            let chosen = if i == 0 {
                median_by(all, |p| p.latency_us.p99 as f64)
            } else {
                median_by(all, |p| p.delivered_per_second)
            };
            if let Some(p) = &chosen {
                let l = p.latency_us;
                let ms = |us: u64| us as f64 / 1000.0;
                let _ = writeln!(
                    t,
                    "{:<18} {:>10.0} {:>11.0} {:>17} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>9.1} {:>9.1} {:>7} {:>22}  {}",
                    format!("{name} @ {:.0}/s", p.rate),
                    p.offered_per_second,
                    p.delivered_per_second,
                    format!("{}/{}", p.delivered, p.expected),
                    ms(l.p50),
                    ms(l.p99),
                    ms(l.p999),
                    p.seq_errors,
                    p.wire_bytes_per_message,
                    p.server_wire_bytes_per_message,
                    p.server_cpu.map_or("n/a".into(), |c| format!("{c:.2}")),
                    format!(
                        "{} / {}",
                        percent(p.publisher_cpu),
                        p.reader_cpu.iter().map(|&c| percent(c)).collect::<Vec<_>>().join(" ")
                    ),
                    limit(p)
                );
                if let Some(err) = &p.first_error {
                    let _ = writeln!(
                        t,
                        "  ({} connections lost; first: {err})",
                        p.connections_lost
                    );
                }
            }
            row.push(chosen);
        }
        medians.push(row);
        let _ = phase_name;
    }
    // Deflate against plain in the same run, at the capacity rate (else the first).
    let at = usize::from(o.capacity_rate > 0.0);
    let ratios: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let plain = r.plain.as_ref()?.phases.get(at)?.delivered_per_second;
            let deflate = r.deflate.as_ref()?.phases.get(at)?.delivered_per_second;
            Some(deflate / plain)
        })
        .collect();
    let ratio = median(ratios.clone());
    if let Some(ratio) = ratio {
        let _ =
            writeln!(
            t,
            "deflate / plain delivered/s at {:.0}/s offered, same run: {ratio:.2} (median of {:?})",
            if at == 1 { o.capacity_rate } else { o.rate } * o.clients as f64,
            ratios.iter().map(|r| (r * 100.0).round() / 100.0).collect::<Vec<_>>()
        );
    }
    if let Some(d) = runs.iter().find_map(|r| r.deflate.as_ref()) {
        let (compressed, inflated): (u64, u64) = d
            .phases
            .iter()
            .fold((0, 0), |(c, i), p| (c + p.compressed, i + p.inflated));
        let uncompressed = d
            .phases
            .first()
            .map_or(0.0, |p| p.server_uncompressed_bytes_per_message);
        let _ = writeln!(
            t,
            "deflate negotiated by {} of {} clients (server compressed_sessions {}); {} of the messages came compressed, the generator inflated {} distinct payloads; uncompressed frame {:.1} B",
            d.negotiated, d.clients, d.compressed_sessions, compressed, inflated, uncompressed
        );
    }
    let _ = writeln!(
        t,
        "(seq!: messages out of sequence; wire B/m: bytes per message on the wire as the clients counted, srv B/m: the server's wire_bytes_sent per message; srv CPU in cores; limit: a generator thread over 90 % busy, or server and generator together over 90 % of the cores)"
    );
    for (p, (name, pick)) in parts.iter().enumerate() {
        let all: Vec<&WsReport> = runs.iter().filter_map(pick).collect();
        if all.is_empty() {
            continue;
        }
        let mut part = serde_json::Map::new();
        for (i, phase_name) in phase_names.iter().enumerate() {
            if let Some(Some(m)) = medians.get(i).and_then(|row| row.get(p)) {
                part.insert(
                    (*phase_name).into(),
                    serde_json::to_value(m).unwrap_or_default(),
                );
            }
        }
        part.insert(
            "every_run".into(),
            serde_json::to_value(&all).unwrap_or_default(),
        );
        out.insert((*name).into(), Value::Object(part));
    }
    if let Some(ratio) = ratio {
        out.insert("deflate_to_plain".into(), json!(ratio));
    }
}

fn churn_table(
    o: &CompareOptions,
    runs: &[Run],
    t: &mut String,
    out: &mut serde_json::Map<String, Value>,
) {
    let _ = writeln!(
        t,
        "\nChurn: {} clients cycling at once on {} threads for {:.1} s (connect, upgrade, welcome, subscribe, ack, close 1000, close reply, connection ends)",
        o.churn_loops,
        o.readers,
        o.duration.as_secs_f64()
    );
    let _ = writeln!(
        t,
        "(plain and deflate: the client waits for the server to end the TCP connection, as RFC 6455 §7.1.1 has it; client ends first: its FIN right after the close reply)"
    );
    let _ = writeln!(
        t,
        "{:<18} {:>9} {:>8} {:>14} {:>7} {:>10} {:>10} {:>8} {:>14}  limit",
        "",
        "cycles/s",
        "cycles",
        "close 1000",
        "failed",
        "p50 ms",
        "p99 ms",
        "srv CPU",
        "generator"
    );
    let parts: [(Part<ChurnReport>, &str); 3] = [
        (("churn", |r| r.churn.as_ref()), "plain"),
        (
            ("churn_client_closes_first", |r| {
                r.churn_client_first.as_ref()
            }),
            "client ends first",
        ),
        (
            ("churn_deflate", |r| r.churn_deflate.as_ref()),
            "deflate offered",
        ),
    ];
    for ((name, pick), label) in parts {
        let all: Vec<ChurnReport> = runs.iter().filter_map(|r| pick(r).cloned()).collect();
        let Some(c) = median_by(all.clone(), |c| c.cycles_per_second) else {
            continue;
        };
        let normal = c.close_codes.get(&1000).copied().unwrap_or(0);
        let _ = writeln!(
            t,
            "{:<18} {:>9.0} {:>8} {:>14} {:>7} {:>10.2} {:>10.2} {:>8} {:>14}  {}",
            label,
            c.cycles_per_second,
            c.cycles,
            format!("{normal}/{}", c.cycles),
            c.failed,
            c.cycle_us.p50 as f64 / 1000.0,
            c.cycle_us.p99 as f64 / 1000.0,
            c.server_cpu.map_or("n/a".into(), |s| format!("{s:.2}")),
            c.generator_cpu
                .iter()
                .map(|&g| percent(g))
                .collect::<Vec<_>>()
                .join(" "),
            if c.generator_bound { "GENERATOR" } else { "-" }
        );
        if let Some(err) = &c.first_error {
            let _ = writeln!(t, "  (first failure: {err})");
        }
        out.insert(name.into(), json!({ "median": c, "every_run": all }));
    }
}

fn memory_table(
    o: &CompareOptions,
    runs: &[Run],
    t: &mut String,
    out: &mut serde_json::Map<String, Value>,
) {
    let _ = writeln!(
        t,
        "\nMemory: the server's RSS growth over {} idle connections, per connection (before any traffic; after {:.0} messages/s for {:.1} s and a pause)",
        o.clients,
        MEMORY_RATE,
        MEMORY_PHASE.as_secs_f64()
    );
    let parts: [Part<WsReport>; 2] = [
        ("memory", |r| r.memory.as_ref()),
        ("memory_deflate", |r| r.memory_deflate.as_ref()),
    ];
    for (name, pick) in parts {
        let all: Vec<&WsReport> = runs.iter().filter_map(pick).collect();
        let idle = median(
            all.iter()
                .filter_map(|r| r.server_bytes_per_connection)
                .collect(),
        );
        let after = median(
            all.iter()
                .filter_map(|r| r.server_bytes_per_connection_after)
                .collect(),
        );
        let kib = |b: Option<f64>| {
            b.map_or("n/a (in-process server)".into(), |b| {
                format!("{:.1} KiB", b / 1024.0)
            })
        };
        let negotiated = all.first().map_or(0, |r| r.negotiated);
        let _ = writeln!(
            t,
            "{:<18} idle {:>10}   after traffic {:>10}   (deflate negotiated by {negotiated})",
            if name == "memory" { "plain" } else { "deflate" },
            kib(idle),
            kib(after),
        );
        out.insert(
            name.into(),
            json!({
                "bytes_per_connection": idle,
                "bytes_per_connection_after_traffic": after,
                "negotiated": negotiated,
                "every_run": all,
            }),
        );
    }
}

fn storm_table(
    o: &CompareOptions,
    runs: &[Run],
    t: &mut String,
    out: &mut serde_json::Map<String, Value>,
) {
    let all: Vec<StormReport> = runs.iter().filter_map(|r| r.storm.clone()).collect();
    let Some(s) = median_by(all.clone(), |s| s.all_live_ms) else {
        return;
    };
    let _ = writeln!(
        t,
        "\nReconnect storm: {} clients come back at once on {} threads, each having missed {} messages, and subscribe with recover",
        o.clients, o.readers, s.missed
    );
    let _ = writeln!(
        t,
        "all live again after {:.1} ms ({} live, {} failed); per client p50 {:.1} ms, p99 {:.1} ms; {:.0} replayed messages/s; server CPU {}, generator {}{}",
        s.all_live_ms,
        s.live,
        s.failed,
        s.live_us.p50 as f64 / 1000.0,
        s.live_us.p99 as f64 / 1000.0,
        s.replayed_per_second,
        s.server_cpu.map_or("n/a".into(), |c| format!("{c:.2} cores")),
        s.generator_cpu
            .iter()
            .map(|&g| percent(g))
            .collect::<Vec<_>>()
            .join(" "),
        if s.generator_bound { " (GENERATOR bound)" } else { "" }
    );
    if let Some(err) = &s.first_error {
        let _ = writeln!(t, "  (first failure: {err})");
    }
    out.insert("storm".into(), json!({ "median": s, "every_run": all }));
}
