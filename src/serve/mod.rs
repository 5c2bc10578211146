//! `tickwire serve`: the three components, the HTTP surface and (optionally) the demo
//! feed in one process, with a graceful shutdown.
//!
//! Wiring: the WebSocketService takes client publishes into the MessageQueue (when
//! `allow_client_publish`), and every MessageQueue topic is bridged to the WebSocket
//! clients subscribed to it, so `POST /api/publish` and client publishes reach
//! subscribers.
//!
//! ## Shutdown
//!
//! On SIGINT or SIGTERM (or when [`Serve::shutdown`] is called), in this order, each
//! stage logged:
//! 1. stop accepting connections, and stop the demo feed (`/health` answers 503 from
//!    the next stage on);
//! 2. with a `[cluster]`, leave it: what waits for NATS is sent (bounded by its
//!    `connect_timeout`), and the components are local from then on;
//! 3. stop the EventBus: it refuses new events and handles what it accepted (bounded by
//!    its `default_timeout`);
//! 4. stop the MessageQueue likewise (its handlers forward to WebSocket clients, which
//!    are still connected);
//! 5. stop the WebSocketService: every session gets what was queued for it, then a close
//!    with 1001 (bounded by `[server] shutdown_timeout`);
//! 6. stop the HTTP server (in-flight requests finish, bounded likewise).
//!
//! A second signal during the shutdown ends [`Serve::run_until`] at once with
//! [`Shutdown::Interrupted`] (the `tickwire` binary then exits with code 130). The library
//! never exits the process itself.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{App, HttpServer};

use crate::demo::Demo;
use crate::http::{self, Services};
use crate::{bridge, websocket, EventBus, MessageQueue, WebSocketService};

pub mod config;

use config::FileConfig;

/// What to serve: [`ServeOptions::new`], then the builder methods.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The configuration (file, or defaults).
    pub config: FileConfig,
    /// Run the demo feed at this many ticks per second.
    pub demo: Option<u32>,
    /// Serve on this listening socket instead of binding `[server] bind` (a socket made
    /// by the caller, or passed by a parent process: `tickwire serve --listen-stdin`).
    pub listener: Option<std::net::TcpListener>,
}

impl ServeOptions {
    /// Serves `config` (binding `[server] bind`), without the demo feed.
    pub fn new(config: FileConfig) -> Self {
        ServeOptions {
            config,
            ..ServeOptions::default()
        }
    }

    /// Runs the demo feed at `rate` ticks per second.
    pub fn demo(mut self, rate: u32) -> Self {
        self.demo = Some(rate);
        self
    }

    /// Serves on `listener` instead of binding `[server] bind`.
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }
}

/// How [`Serve::run_until`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "an interrupted shutdown leaves the components half stopped: exit the process"]
pub enum Shutdown {
    /// The graceful shutdown finished: every stage of the module docs ran.
    Completed,
    /// A second signal arrived during the shutdown, which was abandoned where it was: the
    /// HTTP server no longer accepts connections, and the components are stopped up to
    /// the stage that was running (the rest still run). The caller is meant to exit (the
    /// binary exits with code 130).
    Interrupted,
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A component refused its configuration.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The token list is not valid.
    #[error("[server] {0}")]
    Access(#[from] crate::access::AccessError),
    /// A configuration value out of range (`[section] message`).
    #[error("invalid config: {0}")]
    Invalid(String),
    /// Wiring the bridges or the demo failed.
    #[error("cannot wire the components: {0}")]
    Wiring(#[from] crate::SubscribeError),
    /// The cluster could not be joined.
    #[cfg(feature = "cluster")]
    #[error("[cluster] {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// `GET /metrics` with the cluster's figures after the components', when there is one.
#[cfg(feature = "cluster")]
fn cluster_metrics(
    services: Services,
    cluster: Option<crate::cluster::Cluster>,
) -> impl FnOnce(&mut actix_web::web::ServiceConfig) {
    use actix_web::web;
    move |cfg| {
        let Some(cluster) = cluster else {
            return;
        };
        cfg.service(web::resource("/metrics").route(web::get().to(move || {
            let (services, cluster) = (services.clone(), cluster.clone());
            async move {
                let mut text = http::exposition(&services).await;
                text.push_str(&cluster.metrics().to_prometheus());
                http::prometheus_response(text)
            }
        })));
    }
}

/// A running server: its address, its components, and the way to stop it.
pub struct Serve {
    addrs: Vec<SocketAddr>,
    services: Services,
    demo: Option<Demo>,
    #[cfg(feature = "cluster")]
    cluster: Option<crate::cluster::Cluster>,
    server: actix_web::dev::ServerHandle,
    stage_timeout: Duration,
    /// The EventBus's and the MessageQueue's `default_timeout`, and a second of margin.
    drain_limits: (Duration, Duration),
}

impl Serve {
    /// Starts everything inside the running actix `System` and binds the server.
    pub async fn start(options: ServeOptions) -> Result<Serve, ServeError> {
        let config = options.config;
        config.validate().map_err(ServeError::Invalid)?;
        let access = config.access()?;
        let event_bus = EventBus::start(config.event_bus.clone())?;
        let message_queue = MessageQueue::start(config.message_queue.clone())?;
        let websocket = WebSocketService::builder(config.websocket.clone())
            .access(access)
            .publish_to(message_queue.clone())
            .start()?;
        bridge::queue_to_websocket(&message_queue, &websocket, ">").await?;
        #[cfg(feature = "cluster")]
        let cluster = match &config.cluster {
            Some(cluster) => {
                let cluster = crate::cluster::Cluster::connect(cluster.clone()).await?;
                cluster.attach_event_bus(&event_bus).await?;
                cluster.attach_message_queue(&message_queue).await?;
                tracing::info!(node = cluster.node(), "joined the cluster");
                Some(cluster)
            }
            None => None,
        };
        let services = Services {
            event_bus,
            message_queue,
            websocket,
        };
        let demo = match options.demo {
            Some(rate) => Some(
                Demo::start(
                    &services.event_bus,
                    &services.message_queue,
                    &services.websocket,
                    rate,
                )
                .await?,
            ),
            None => None,
        };
        let app_services = services.clone();
        #[cfg(feature = "cluster")]
        let app_cluster = cluster.clone();
        let addr = config.server.bind;
        let server = HttpServer::new(move || {
            let app = App::new();
            // With a cluster, `/metrics` has its figures too (registered first, this
            // route is the one that answers).
            #[cfg(feature = "cluster")]
            let app = app.configure(cluster_metrics(app_services.clone(), app_cluster.clone()));
            app.configure(http::configure(app_services.clone()))
        })
        .on_connect(websocket::on_connect)
        // Small frames and responses are sent as they are written (no Nagle delay).
        .tcp_nodelay(true)
        .workers(config.server.workers)
        .shutdown_timeout(config.server.shutdown_timeout.as_secs().max(1))
        .disable_signals();
        let server = match options.listener {
            Some(listener) => {
                let addr = listener.local_addr().unwrap_or(addr);
                server
                    .listen(listener)
                    .map_err(|source| ServeError::Bind { addr, source })?
            }
            None => server
                .bind(addr)
                .map_err(|source| ServeError::Bind { addr, source })?,
        };
        let addrs = server.addrs();
        services.websocket.check_exposure(addrs.iter().copied());
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        for addr in &addrs {
            tracing::info!(%addr, demo = ?options.demo, "tickwire listening: dashboard http://{addr}/ , WebSocket ws://{addr}/ws");
        }
        Ok(Serve {
            addrs,
            services,
            demo,
            #[cfg(feature = "cluster")]
            cluster,
            server: handle,
            stage_timeout: config.server.shutdown_timeout,
            drain_limits: (
                config.event_bus.default_timeout + Duration::from_secs(1),
                config.message_queue.default_timeout + Duration::from_secs(1),
            ),
        })
    }

    /// The addresses the server listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The running components.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Waits for SIGINT or SIGTERM, then shuts down (see the module docs). A second
    /// signal during the shutdown abandons it: this returns [`Shutdown::Interrupted`] at
    /// once, and the caller decides what to do (the binary exits with code 130).
    pub async fn run_until(self, mut signals: Signals) -> Shutdown {
        signals.next().await;
        tokio::select! {
            () = self.shutdown() => Shutdown::Completed,
            () = signals.next() => {
                tracing::warn!("second signal: giving up the shutdown");
                Shutdown::Interrupted
            }
        }
    }

    /// The graceful shutdown of the module docs.
    pub async fn shutdown(mut self) {
        let limit = self.stage_timeout;
        tracing::info!("shutting down: no new connections");
        self.server.pause().await;
        if let Some(demo) = self.demo.take() {
            let feed = demo.stop();
            tracing::info!(
                published = feed.published,
                dropped = feed.dropped,
                "demo feed stopped"
            );
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster.take() {
            // Two stages of up to `connect_timeout` each (see `Cluster::close`).
            let limit = cluster.config().connect_timeout * 2 + Duration::from_secs(1);
            stage("left the cluster", limit, cluster.close()).await;
            tracing::info!(metrics = ?cluster.metrics(), "cluster");
        }
        let s = &self.services;
        // Each bounded by its own default_timeout (the contract of stop()).
        let (bus_limit, queue_limit) = self.drain_limits;
        stage("EventBus drained", bus_limit, s.event_bus.stop()).await;
        stage("MessageQueue drained", queue_limit, s.message_queue.stop()).await;
        let bus = s.event_bus.delivery_stats();
        let queue = s.message_queue.delivery_stats();
        tracing::info!(
            events_processed = bus.processed,
            events_dead_lettered = bus.dead_letters,
            messages_processed = queue.processed,
            messages_dead_lettered = queue.dead_letters,
            "components drained"
        );
        stage(
            "WebSocket sessions closed (1001)",
            limit,
            s.websocket.stop(),
        )
        .await;
        stage("HTTP server stopped", limit, self.server.stop(true)).await;
        tracing::info!("shutdown complete");
    }
}

/// Runs one shutdown stage within `limit`, and logs how it went.
async fn stage(what: &str, limit: Duration, fut: impl std::future::Future<Output = ()>) {
    let started = std::time::Instant::now();
    match actix_rt::time::timeout(limit, fut).await {
        Ok(()) => tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "{what}"),
        Err(_) => tracing::warn!(limit_s = limit.as_secs_f64(), "{what}: gave up waiting"),
    }
}

/// SIGINT and SIGTERM, listened for from the moment [`Signals::install`] returns (before
/// the server says it is ready, so a signal sent right after is not missed).
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening. Must run inside the actix System (a tokio runtime).
    pub fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => tracing::info!("SIGINT received"),
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C received");
        }
    }
}
