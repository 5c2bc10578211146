//! `tickwire bench cluster`: two nodes (two [`Cluster`]s with an EventBus each, in this
//! process) on a `nats-server` this bench starts on a free loopback port, beside raw
//! `async-nats` publish/subscribe on the same server in the same run:
//!
//! - **throughput**: `events` events published as fast as they are taken on node A, all
//!   handled by one subscription on node B; the baseline publishes as many messages of
//!   the same payload on one connection to a subscriber on another, once bare and once
//!   with one header of a tickwire item's shape per message (what async-nats's header
//!   maps cost on both ends, which any message with headers pays). All keep at most
//!   8,192 in flight (core NATS drops what an overrun subscriber cannot take: without a
//!   window both would measure their drops). Figures: messages per
//!   second from the first publish to the last delivery, median of `runs`.
//! - **latency**: an open loop at `rate` events per second for `duration` from A to B;
//!   the time from the event's creation to its handler on B, p50/p99.
//! - **durable queue**: `events / 4` messages on a durable topic published on A (each
//!   confirmed stored by JetStream) and handled by a consumer group on B (each
//!   acknowledged after its handler), messages per second from the first publish to the
//!   last acknowledgement; beside raw async-nats JetStream on the same server: publishes
//!   with their confirmations awaited behind, and a pull consumer acknowledging each.
//!
//! The nats-server is `NATS_SERVER`, `nats-server` in PATH, or Debian's
//! `/usr/sbin/nats-server`. It runs on the same two cores as both nodes: the figures are
//! of the whole path on one machine, not of a network.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::cluster::{Cluster, ClusterConfig};
use crate::util::LatencySummary;
use crate::{
    Event, EventBus, EventBusConfig, MessageQueue, MessageQueueConfig, Priority, TryPublishError,
};

/// Events in flight at most (published and not yet handled on B, or not yet received by
/// the raw subscriber): core NATS has no backpressure from a subscriber to a publisher, so
/// an open tap would measure the drops of an overloaded subscriber, not a throughput.
const WINDOW: u64 = 8_192;

/// Waits while more than [`WINDOW`] of the `sent` items are not yet `got`.
async fn window(sent: u64, got: &AtomicU64) {
    while sent.saturating_sub(got.load(Ordering::Relaxed)) > WINDOW {
        tokio::time::sleep(Duration::from_micros(50)).await;
    }
}

/// The payload of every event and baseline message (a tick: about 60 bytes of JSON).
fn tick(n: u64) -> Value {
    json!({"symbol": "BTCUSD", "price": 50_000.5, "qty": 2, "n": n})
}

/// A nats-server on a free port, stopped on drop.
struct NatsServer {
    child: Child,
    dir: PathBuf,
    url: String,
}

fn nats_binary() -> std::io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Ok(path.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no nats-server (NATS_SERVER, PATH, /usr/sbin): install Debian's nats-server",
            )
        })
}

impl NatsServer {
    fn start() -> std::io::Result<NatsServer> {
        let dir = std::env::temp_dir().join(format!("tickwire-bench-nats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let child = Command::new(nats_binary()?)
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(dir.join("store"))
            .arg("--ports_file_dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let file = dir.join(format!("nats-server_{}.ports", child.id()));
        let mut server = NatsServer {
            child,
            dir,
            url: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = std::fs::read_to_string(&file)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|v| v["nats"][0].as_str().map(str::to_owned));
            if let Some(url) = url {
                server.url = url;
                return Ok(server);
            }
            if Instant::now() > deadline || server.child.try_wait()?.is_some() {
                return Err(std::io::Error::other("nats-server did not start"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn other(err: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(err.to_string())
}

/// Two nodes: A publishes, B handles.
struct Nodes {
    a: (Cluster, EventBus),
    b: (Cluster, EventBus),
}

async fn nodes(url: &str, workers: usize) -> std::io::Result<Nodes> {
    let mut pair = Vec::new();
    for node in ["a", "b"] {
        let cluster = Cluster::connect(ClusterConfig {
            nats_url: url.to_owned(),
            node: Some(node.into()),
            prefix: "bench".into(),
            event_bus: vec!["market.>".into()],
            ..ClusterConfig::default()
        })
        .await
        .map_err(other)?;
        let bus = EventBus::start(EventBusConfig {
            max_workers: workers,
            ..EventBusConfig::default()
        })
        .map_err(other)?;
        cluster.attach_event_bus(&bus).await.map_err(other)?;
        pair.push((cluster, bus));
    }
    let b = pair.pop().expect("two");
    let a = pair.pop().expect("two");
    Ok(Nodes { a, b })
}

impl Nodes {
    async fn stop(self) {
        for (cluster, bus) in [self.a, self.b] {
            cluster.close().await;
            bus.stop().await;
        }
    }
}

/// Publishes on A without waiting, retrying (after a yield) while A's buffer for NATS is
/// full.
async fn publish(bus: &EventBus, mut event: Event) {
    loop {
        match bus.try_publish(event) {
            Ok(()) => return,
            Err(TryPublishError::QueueFull(back))
            | Err(TryPublishError::ClusterUnavailable(back)) => {
                event = back;
                actix_rt::task::yield_now().await;
            }
            Err(err) => panic!("bench publish: {err}"),
        }
    }
}

/// One throughput run across the two nodes: events per second.
async fn tickwire_throughput(url: &str, events: u64, workers: usize) -> std::io::Result<f64> {
    let nodes = nodes(url, workers).await?;
    let got = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let (g, d) = (got.clone(), done.clone());
    nodes
        .b
        .1
        .subscribe("market.tick", move |_| {
            if g.fetch_add(1, Ordering::Relaxed) + 1 == events {
                d.notify_one();
            }
            std::future::ready(Ok(()))
        })
        .await
        .map_err(other)?;
    nodes.b.0.sync().await.map_err(other)?;
    let start = Instant::now();
    let finished = done.notified();
    tokio::pin!(finished);
    finished.as_mut().enable();
    for n in 0..events {
        window(n, &got).await;
        publish(&nodes.a.1, Event::new("market.tick", tick(n))).await;
    }
    tokio::time::timeout(Duration::from_secs(120), finished)
        .await
        .map_err(|_| other(format!("B got {} of {events}", got.load(Ordering::Relaxed))))?;
    let rate = events as f64 / start.elapsed().as_secs_f64();
    nodes.stop().await;
    Ok(rate)
}

/// One throughput run of raw async-nats: messages per second. With `header`, each
/// message carries one header of the size and shape of a tickwire item's (built per
/// message, as a publisher must), which is what the client's header maps cost.
async fn raw_throughput(url: &str, events: u64, header: bool) -> std::io::Result<f64> {
    let publisher = async_nats::connect(url).await.map_err(other)?;
    let subscriber = async_nats::connect(url).await.map_err(other)?;
    let mut sub = subscriber.subscribe("raw.tick").await.map_err(other)?;
    // A flush only writes the SUB to the socket: the server may not have it yet when the
    // first publishes come in on the other connection, and would drop them. The probe
    // coming back proves it has it.
    subscriber
        .publish("raw.tick", bytes::Bytes::new())
        .await
        .map_err(other)?;
    subscriber.flush().await.map_err(other)?;
    sub.next()
        .await
        .ok_or_else(|| other("the raw subscription ended"))?;
    let got = Arc::new(AtomicU64::new(0));
    let counter = got.clone();
    let reader = actix_rt::spawn(async move {
        let mut n = 0;
        while n < events {
            if sub.next().await.is_none() {
                break;
            }
            n += 1;
            counter.store(n, Ordering::Relaxed);
        }
        n
    });
    let start = Instant::now();
    for n in 0..events {
        window(n, &got).await;
        let payload = serde_json::to_vec(&tick(n)).map_err(other)?;
        let sent = if header {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Tickwire", format!("{n} 2 1764680000123456789 bench-a"));
            publisher
                .publish_with_headers("raw.tick", headers, payload.into())
                .await
        } else {
            publisher.publish("raw.tick", payload.into()).await
        };
        sent.map_err(other)?;
    }
    publisher.flush().await.map_err(other)?;
    let got = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .map_err(|_| {
            let n = got.load(Ordering::Relaxed);
            other(format!("the raw subscriber got {n} of {events} in 120 s"))
        })?
        .map_err(other)?;
    if got < events {
        return Err(other(format!("raw: {got} of {events}")));
    }
    Ok(events as f64 / start.elapsed().as_secs_f64())
}

/// One open-loop latency run, A to B.
async fn latency(
    url: &str,
    rate: f64,
    duration: Duration,
    workers: usize,
) -> std::io::Result<LatencySummary> {
    let nodes = nodes(url, workers).await?;
    let histogram = Arc::new(std::sync::Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(other)?,
    ));
    let h = histogram.clone();
    nodes
        .b
        .1
        .subscribe("market.tick", move |event| {
            let us = SystemTime::now()
                .duration_since(event.timestamp())
                .unwrap_or_default()
                .as_micros() as u64;
            let _ = h.lock().expect("not poisoned").record(us.max(1));
            std::future::ready(Ok(()))
        })
        .await
        .map_err(other)?;
    nodes.b.0.sync().await.map_err(other)?;
    let total = (rate * duration.as_secs_f64()).ceil() as u64;
    let start = tokio::time::Instant::now();
    for n in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / rate)).await;
        publish(&nodes.a.1, Event::new("market.tick", tick(n))).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while histogram.lock().expect("not poisoned").len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let summary = LatencySummary::of(&histogram.lock().expect("not poisoned"));
    nodes.stop().await;
    Ok(summary)
}

/// One durable-queue run: A publishes `count` messages on a durable topic, a consumer
/// group on B handles them; messages per second until B acknowledged the last.
async fn durable_throughput(url: &str, count: u64, workers: usize) -> std::io::Result<f64> {
    // A stream of its own per run.
    let prefix = format!("durable{}", crate::util::id::next_id());
    let config = |node: &str| ClusterConfig {
        nats_url: url.to_owned(),
        node: Some(node.into()),
        prefix: prefix.clone(),
        message_queue: vec!["jobs.>".into()],
        durable: vec!["jobs.>".into()],
        ..ClusterConfig::default()
    };
    let mut pair = Vec::new();
    for config in [config("a"), config("b")] {
        let cluster = Cluster::connect(config).await.map_err(other)?;
        let mq = MessageQueue::start(MessageQueueConfig {
            max_workers: workers,
            ..MessageQueueConfig::default()
        })
        .map_err(other)?;
        cluster.attach_message_queue(&mq).await.map_err(other)?;
        pair.push((cluster, mq));
    }
    let (b_cluster, b_mq) = pair.pop().expect("two");
    let (a_cluster, a_mq) = pair.pop().expect("two");
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    b_mq.subscribe_group("jobs.run", "workers", move |_| {
        g.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(()))
    })
    .await
    .map_err(other)?;
    b_cluster.sync().await.map_err(other)?;
    let start = Instant::now();
    for n in 0..count {
        let mut data = tick(n);
        loop {
            match a_mq.try_publish("jobs.run", data, Priority::Normal) {
                Ok(_) => break,
                Err(
                    TryPublishError::ClusterUnavailable(back) | TryPublishError::QueueFull(back),
                ) => {
                    data = back.data().clone();
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
                Err(err) => return Err(other(err)),
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while b_cluster.metrics().acked < count {
        if Instant::now() > deadline {
            return Err(other(format!(
                "durable: B acknowledged {} of {count} ({:?})",
                b_cluster.metrics().acked,
                b_cluster.metrics()
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    for (cluster, mq) in [(a_cluster, a_mq), (b_cluster, b_mq)] {
        cluster.close().await;
        mq.stop().await;
    }
    Ok(rate)
}

/// One raw JetStream run: `count` publishes with their confirmations awaited behind
/// (at most 4,096 outstanding), and a durable pull consumer on another connection
/// acknowledging each; messages per second until the last acknowledgement.
async fn raw_durable_throughput(url: &str, count: u64) -> std::io::Result<f64> {
    use async_nats::jetstream::{self, consumer, stream};
    let name = format!("raw{}", crate::util::id::next_id());
    let publisher = jetstream::new(async_nats::connect(url).await.map_err(other)?);
    let subscriber = jetstream::new(async_nats::connect(url).await.map_err(other)?);
    let subject = format!("{name}.jobs");
    let created = publisher
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::Interest,
            ..Default::default()
        })
        .await
        .map_err(other)?;
    drop(created);
    let consumer: consumer::Consumer<consumer::pull::Config> = subscriber
        .get_stream(&name)
        .await
        .map_err(other)?
        .create_consumer(consumer::pull::Config {
            durable_name: Some("workers".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 4_096,
            ..Default::default()
        })
        .await
        .map_err(other)?;
    let mut messages = consumer.messages().await.map_err(other)?;
    let reader = actix_rt::spawn(async move {
        let mut n = 0;
        while n < count {
            match messages.next().await {
                Some(Ok(message)) => {
                    if message.ack().await.is_ok() {
                        n += 1;
                    }
                }
                Some(Err(_)) => continue,
                None => break,
            }
        }
        n
    });
    let start = Instant::now();
    let (acks, mut confirmed) = tokio::sync::mpsc::channel(4_096);
    let confirmer = actix_rt::spawn(async move {
        let mut ok = 0u64;
        while let Some(ack) = confirmed.recv().await {
            let ack: jetstream::context::PublishAckFuture = ack;
            if ack.await.is_ok() {
                ok += 1;
            }
        }
        ok
    });
    for n in 0..count {
        let payload = serde_json::to_vec(&tick(n)).map_err(other)?;
        let ack = publisher
            .publish(subject.clone(), payload.into())
            .await
            .map_err(other)?;
        acks.send(ack).await.map_err(other)?;
    }
    drop(acks);
    let stored = confirmer.await.map_err(other)?;
    let handled = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .map_err(|_| other("the raw consumer did not get every message"))?
        .map_err(other)?;
    if stored < count || handled < count {
        return Err(other(format!(
            "raw durable: {stored} stored, {handled} acknowledged of {count}"
        )));
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    let _ = publisher.delete_stream(&name).await;
    Ok(rate)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the cluster benchmark; returns (the table, the JSON object).
pub async fn run(
    events: u64,
    runs: usize,
    rate: f64,
    duration: Duration,
    workers: usize,
) -> std::io::Result<(String, Value)> {
    let server = NatsServer::start()?;
    let mut raw = Vec::new();
    let mut raw_header = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..runs.max(1) {
        raw.push(raw_throughput(&server.url, events, false).await?);
        raw_header.push(raw_throughput(&server.url, events, true).await?);
        ours.push(tickwire_throughput(&server.url, events, workers).await?);
    }
    let (raw, raw_header, ours) = (median(raw), median(raw_header), median(ours));
    let mut latencies = Vec::new();
    for _ in 0..runs.max(1) {
        latencies.push(latency(&server.url, rate, duration, workers).await?);
    }
    latencies.sort_by_key(|l| l.p99);
    let lat = latencies[latencies.len() / 2];
    let durable_count = (events / 4).max(1);
    let mut raw_durable = Vec::new();
    let mut durable = Vec::new();
    for _ in 0..runs.max(1) {
        raw_durable.push(raw_durable_throughput(&server.url, durable_count).await?);
        durable.push(durable_throughput(&server.url, durable_count, workers).await?);
    }
    let (raw_durable, durable) = (median(raw_durable), median(durable));
    let table = format!(
        "Cluster on one nats-server ({events} events per throughput run, at most {WINDOW} in flight, median of {runs}):\n\
         \x20 raw async-nats pub/sub       {raw:>12.0} msg/s\n\
         \x20 the same, one header each    {raw_header:>12.0} msg/s      ({:.2}x raw)\n\
         \x20 EventBus A -> B (cluster)    {ours:>12.0} events/s   ({:.2}x raw)\n\
         \x20 latency A -> B at {rate:.0}/s: p50 {} us, p99 {} us, p99.9 {} us, max {} us ({} samples)\n\
         Durable queue ({durable_count} messages, stored and acknowledged, median of {runs}):\n\
         \x20 raw async-nats JetStream     {raw_durable:>12.0} msg/s\n\
         \x20 MessageQueue A -> group on B {durable:>12.0} msg/s      ({:.2}x raw)\n",
        raw_header / raw,
        ours / raw,
        lat.p50,
        lat.p99,
        lat.p999,
        lat.max,
        lat.count,
        durable / raw_durable,
    );
    let value = json!({
        "events": events,
        "raw_async_nats_per_second": raw,
        "raw_async_nats_one_header_per_second": raw_header,
        "eventbus_cross_node_per_second": ours,
        "ratio": ours / raw,
        "latency_rate": rate,
        "latency_us": lat,
        "durable_messages": durable_count,
        "raw_jetstream_per_second": raw_durable,
        "durable_cross_node_per_second": durable,
        "durable_ratio": durable / raw_durable,
    });
    Ok((table, value))
}
