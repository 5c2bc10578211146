//! The server of the WebSocket scenario, and what it costs: `tickwire serve` in a child
//! process (given its listening socket as standard input, so its address is known
//! before it starts and nothing of its output is read), or on a thread of this process;
//! its memory and CPU, and a thread's CPU, from `/proc` (Linux); its WebSocket metrics
//! from `GET /api/metrics`.
//!
//! The server has the default WebSocket config (permessage-deflate enabled,
//! `compression_min_size` 256, `max_queued_bytes` 16 MiB, `write_timeout` 5 s), with
//! room for the bench's connections: each client chooses whether to offer deflate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::serve::config::FileConfig;

/// Where the server runs.
#[derive(Clone, Debug)]
pub enum ServerMode {
    /// A child process: this executable with `serve` (the `tickwire` binary).
    ChildProcess(std::path::PathBuf),
    /// A thread of this process (no memory figure).
    InProcess,
}

/// A server to bench against, and how to stop it.
pub(super) enum Server {
    Child(Child),
    Thread(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>),
}

impl Server {
    pub(super) fn start(mode: &ServerMode, clients: usize) -> std::io::Result<(Server, String)> {
        let mut config = FileConfig::default();
        config.websocket.max_connections = clients + 16;
        config.server.bind = "127.0.0.1:0".parse().expect("valid address");
        match mode {
            #[cfg(unix)]
            ServerMode::ChildProcess(exe) => {
                // The listening socket is made here and handed to the child as its standard
                // input (`serve --listen-stdin`): its address is known before the child
                // runs, and connections made before the child accepts wait in the backlog.
                let listener = listen_loopback(clients)?;
                let addr = listener.local_addr()?;
                let config_file = ConfigFile::write(&config)?;
                let mut child = Command::new(exe)
                    .args(["serve", "--listen-stdin", "--config"])
                    .arg(&config_file.0)
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                match wait_until_serving(addr, Duration::from_secs(30)) {
                    Ok(()) => Ok((Server::Child(child), format!("http://{addr}"))),
                    Err(err) => {
                        let exited = child.try_wait().ok().flatten();
                        Server::Child(child).stop();
                        Err(match exited {
                            Some(status) => std::io::Error::other(format!(
                                "the server did not start ({status}): {err}"
                            )),
                            None => err,
                        })
                    }
                }
            }
            #[cfg(not(unix))]
            ServerMode::ChildProcess(_) => Err(std::io::Error::other(
                "a child server takes its socket as standard input: Unix only",
            )),
            ServerMode::InProcess => {
                let (url_tx, url_rx) = std::sync::mpsc::channel();
                let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
                let thread = std::thread::spawn(move || {
                    actix_rt::System::new().block_on(async move {
                        let options = crate::serve::ServeOptions::new(config);
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

    pub(super) fn pid(&self) -> Option<u32> {
        match self {
            Server::Child(child) => Some(child.id()),
            Server::Thread(..) => None,
        }
    }

    /// The `websocket` part of the server's `GET /api/metrics` (at `host`, `IP:PORT`).
    pub(super) fn ws_metrics(host: &str) -> std::io::Result<WsCounters> {
        let mut stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "GET /api/metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let body = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|at| &response[at + 4..])
            .filter(|_| response.starts_with(b"HTTP/1.1 200"))
            .ok_or_else(|| std::io::Error::other("GET /api/metrics did not answer 200"))?;
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(std::io::Error::other)?;
        let ws = &value["websocket"];
        let count = |key: &str| ws[key].as_u64().unwrap_or(0);
        Ok(WsCounters {
            compressed_sessions: count("compressed_sessions"),
            wire_bytes_sent: count("wire_bytes_sent"),
            uncompressed_bytes_sent: count("uncompressed_bytes_sent"),
            slow_consumers: count("slow_consumers"),
        })
    }

    pub(super) fn stop(self) {
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

/// What the bench reads of the server's WebSocket metrics.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct WsCounters {
    /// Sessions open now that negotiated permessage-deflate.
    pub(super) compressed_sessions: u64,
    /// Bytes of broadcast frames queued to clients, as on the wire.
    pub(super) wire_bytes_sent: u64,
    /// The same frames, had none been compressed.
    pub(super) uncompressed_bytes_sent: u64,
    /// Sessions closed with 4008.
    pub(super) slow_consumers: u64,
}

/// The child's config file, removed when dropped (whatever happens to the child).
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn write(config: &FileConfig) -> std::io::Result<ConfigFile> {
        let path = std::env::temp_dir().join(format!("tickwire-bench-{}.toml", std::process::id()));
        let text = toml::to_string(config).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)?;
        Ok(ConfigFile(path))
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A listening socket on a free loopback port, with a backlog for every client at once.
fn listen_loopback(clients: usize) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(i32::try_from(clients + 64).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Waits until the server at `addr` answers `GET /health` with 200 (the request waits in
/// the listening socket's backlog until the server accepts it).
fn wait_until_serving(addr: std::net::SocketAddr, limit: Duration) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, limit)?;
    stream.set_read_timeout(Some(limit))?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    if response.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
        Err(std::io::Error::other(format!(
            "the server did not start: /health answered {head:?}"
        )))
    }
}

/// Resident memory of a process, bytes (Linux).
/// Runs `work(n)` on `threads` generator threads named `name`, `clients` spread evenly
/// over them (`n` is a thread's share); their results, or an error if one panicked.
pub(super) fn on_threads<R: Send + 'static>(
    name: &str,
    threads: usize,
    clients: usize,
    work: impl Fn(usize) -> R + Send + Clone + 'static,
) -> std::io::Result<Vec<R>> {
    let (tx, rx) = std::sync::mpsc::channel();
    for t in 0..threads {
        let share = clients / threads + usize::from(t < clients % threads);
        let (tx, work) = (tx.clone(), work.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = tx.send(work(share));
            })?;
    }
    drop(tx);
    let results: Vec<R> = rx.iter().collect();
    if results.len() != threads {
        return Err(std::io::Error::other(format!("a {name} thread panicked")));
    }
    Ok(results)
}

pub(super) fn rss_bytes(pid: u32) -> Option<f64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0)
}

/// CPU time (user + system) of a process or thread from its `stat`, seconds (Linux).
pub(super) fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The `stat` file of the calling thread, under a name other threads can read (Linux).
pub(super) fn own_thread_stat() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(format!("/proc/{}/stat", link.display()))
}

/// CPU used through `stat` since `before`, as a share of one core over `wall` seconds.
pub(super) fn cpu_share(stat: Option<&str>, before: Option<f64>, wall: f64) -> Option<f64> {
    Some((cpu_seconds(stat?)? - before?) / wall)
}
