//! The `tickwire` binary: help, errors, and a graceful shutdown that loses nothing.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_http::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(30);

fn tickwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tickwire"))
}

/// Runs to completion (killed past the safety timeout); returns (exit code, stdout,
/// stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let child = tickwire()
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tickwire");
    let mut child = KillOnDrop(child); // killed if it outlives the safety timeout
                                       // Drain both pipes on threads, so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.0.stdout.take().unwrap()));
    let err = drain(Box::new(child.0.stderr.take().unwrap()));
    let status = wait(&mut child.0);
    (
        status.code().unwrap_or(-1),
        out.join().unwrap(),
        err.join().unwrap(),
    )
}

/// A file in a directory of this test process, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("tickwire-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn help_explains_the_commands_and_options() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("serve") && out.contains("bench"), "{out}");
    let (code, out, _) = run(&["serve", "--help"]);
    assert_eq!(code, 0);
    for option in [
        "--bind",
        "--config",
        "--demo",
        "--demo-rate",
        "SIGTERM",
        "RUST_LOG",
    ] {
        assert!(
            out.contains(option),
            "serve --help mentions {option}:\n{out}"
        );
    }
}

#[test]
fn a_bad_config_file_names_the_file_the_line_and_the_field() {
    let file = TempFile::new("bad.toml", "[event_bus]\nmax_workers = 2\nmax_wrkers = 3\n");
    let (code, _, err) = run(&["serve", "--config", file.path()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(file.path()), "{err}");
    assert!(
        err.contains("line 3") && err.contains("max_wrkers"),
        "{err}"
    );

    let file = TempFile::new("range.toml", "[websocket]\nmax_connections = 0\n");
    let (code, _, err) = run(&["serve", "--config", file.path()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 2: [websocket]") && err.contains("`max_connections`"),
        "{err}"
    );

    let (code, _, err) = run(&["serve", "--config", "/nonexistent/tickwire.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read config file /nonexistent/tickwire.toml"),
        "{err}"
    );
}

#[test]
fn a_bad_bind_address_is_a_clear_error() {
    let (code, _, err) = run(&["serve", "--bind", "localhost"]);
    assert_eq!(code, 2);
    assert!(err.contains("--bind") && err.contains("localhost"), "{err}");
    // A well-formed address that is not this machine's (TEST-NET-1): nothing is sent.
    let (code, _, err) = run(&["serve", "--bind", "192.0.2.1:8080"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot listen on 192.0.2.1:8080"), "{err}");
}

/// A child process killed when dropped (a failing test leaves no server behind).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `tickwire serve` on a free loopback port; returns the child and its base URL.
fn serve(args: &[&str]) -> (KillOnDrop, String) {
    let child = tickwire()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info") // a bounded amount of stderr: it is read at the end
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tickwire serve");
    let mut child = KillOnDrop(child);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(PATIENCE)
        .expect("the listening line in time");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim_end_matches('/')
        .to_owned();
    (child, url)
}

fn wait(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "tickwire did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bytes the kernel may buffer on a loopback TCP connection whose receiver does not read:
/// the sender's buffer at its largest, and the receiver's at its default (Linux's
/// `tcp_wmem` maximum and `tcp_rmem` default; 8 MiB elsewhere).
fn kernel_socket_buffers() -> usize {
    let field = |file: &str, i: usize| -> Option<usize> {
        let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{file}")).ok()?;
        text.split_whitespace().nth(i)?.parse().ok()
    };
    match (field("tcp_wmem", 2), field("tcp_rmem", 1)) {
        (Some(send), Some(receive)) => send + receive,
        _ => 8 << 20,
    }
}

/// Messages [`stalled_subscriber`] has published for its client.
const BACKLOG: u64 = 300;

/// A WebSocket client of `url`, subscribed to `orders.>`, that reads nothing more, with
/// [`BACKLOG`] messages (`{"n": 0..BACKLOG}`) published for it through `/api/publish`:
/// more than the kernel's socket buffers between it and the server can hold (the
/// server's send buffer grows to at most tcp_wmem's maximum; the client's receive buffer,
/// which it never reads, stays near tcp_rmem's default), so the server holds a backlog of
/// at least half of them for it.
async fn stalled_subscriber(
    url: &str,
) -> impl futures_util::Stream<Item = Result<Frame, actix_http::ws::ProtocolError>> + Unpin {
    let ws_url = format!("{}/ws", url.replacen("http://", "ws://", 1));
    let (_, mut conn) = awc::Client::new().ws(ws_url).connect().await.unwrap();
    let mut frames = Vec::new();
    let subscribe = json!({"type": "subscribe", "topic": "orders.>", "id": "s"});
    conn.send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    // welcome, then the ack.
    for _ in 0..2 {
        let frame = actix_rt::time::timeout(PATIENCE, conn.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        frames.push(frame);
    }
    let Frame::Text(ack) = &frames[1] else {
        panic!("expected the ack, got {:?}", frames[1])
    };
    let ack: Value = serde_json::from_slice(ack).unwrap();
    assert_eq!(
        (&ack["type"], &ack["id"]),
        (&json!("ack"), &json!("s")),
        "{ack}"
    );
    let kernel = kernel_socket_buffers();
    let size = (2 * kernel).div_ceil(BACKLOG as usize).max(1024);
    let pad = "x".repeat(size);
    let client = awc::Client::builder().timeout(PATIENCE).finish();
    let statuses: Vec<u16> = futures_util::stream::iter(0..BACKLOG)
        .map(|n| {
            let request = client
                .post(format!("{url}/api/publish"))
                .send_json(&json!({"topic": "orders.new", "data": {"n": n, "pad": pad}}));
            async move { request.await.map(|r| r.status().as_u16()).unwrap_or(0) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|&s| s == 202), "{statuses:?}");
    assert!(BACKLOG as usize * size >= 2 * kernel);
    conn
}

#[cfg(unix)]
#[actix_rt::test]
async fn sigterm_drains_everything_accepted_then_closes_sessions_with_1001() {
    let (mut child, url) = serve(&[]);
    let mut conn = stalled_subscriber(&url).await;
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    let killed = unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(killed, 0);

    let (mut seqs, mut ns) = (Vec::new(), Vec::new());
    let close = loop {
        let frame = actix_rt::time::timeout(PATIENCE, conn.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match frame {
            Frame::Text(text) => {
                let m: Value = serde_json::from_slice(&text).unwrap();
                ns.push(m["data"]["n"].as_u64().unwrap());
                seqs.push(m["seq"].as_u64().unwrap());
            }
            Frame::Close(reason) => break reason.map(|r| u16::from(r.code)),
            Frame::Ping(_) | Frame::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    ns.sort_unstable();
    assert_eq!(
        ns,
        (0..BACKLOG).collect::<Vec<_>>(),
        "every accepted message, once"
    );
    assert_eq!(
        seqs,
        (1..=BACKLOG).collect::<Vec<_>>(),
        "every accepted message arrived, once, in order"
    );
    assert_eq!(close, Some(1001));
    let status = wait(&mut child.0);
    assert_eq!(status.code(), Some(0));
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    for step in [
        "SIGTERM received",
        "EventBus drained",
        "MessageQueue drained",
        "WebSocket sessions closed",
        "shutdown complete",
    ] {
        assert!(stderr.contains(step), "logged {step:?}:\n{stderr}");
    }
}

#[cfg(unix)]
#[test]
fn serve_takes_its_listening_socket_from_standard_input() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let child = tickwire()
        .args(["serve", "--listen-stdin"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tickwire serve");
    let mut child = KillOnDrop(child);
    // The socket listens already: the request waits in its backlog until the server
    // accepts it, so no readiness line is needed.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // The server names the address it was given.
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("listening on http://{addr}/"));
    // SAFETY: kill(2) on our own child, not yet waited for.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(wait(&mut child.0).code(), Some(0));
}

#[cfg(unix)]
#[test]
fn listen_stdin_refuses_what_is_not_a_listening_socket() {
    let refused = |stdin: Stdio| {
        let out = tickwire()
            .args(["serve", "--listen-stdin"])
            .stdin(stdin)
            .output()
            .expect("run tickwire");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = refused(Stdio::null());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("standard input is not a listening TCP socket"),
        "{err}"
    );
    // A connected socket is a socket, but not one to accept on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let connected = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (code, err) = refused(Stdio::from(std::os::fd::OwnedFd::from(connected)));
    assert_eq!(code, Some(2));
    assert!(err.contains("not listening"), "{err}");
}

#[cfg(unix)]
#[actix_rt::test]
async fn a_second_signal_during_the_shutdown_exits_at_once_with_130() {
    // The WebSocket stage of the shutdown waits for a client that reads nothing: up to
    // `shutdown_timeout`, an hour here, unless a second signal cuts it short.
    let config = TempFile::new("second-signal.toml", "[server]\nshutdown_timeout = 3600\n");
    let (mut child, url) = serve(&["--config", config.path()]);
    let _conn = stalled_subscriber(&url).await;
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = BufReader::new(child.0.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let signal = || {
        // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
        assert_eq!(
            unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) },
            0
        );
    };
    let mut log = Vec::new();
    let wait_for = |needle: &str, log: &mut Vec<String>| loop {
        let line = lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no {needle:?} in the log:\n{}", log.join("\n")));
        let found = line.contains(needle);
        log.push(line);
        if found {
            break;
        }
    };
    signal();
    wait_for("MessageQueue drained", &mut log); // the WebSocket stage has begun
    signal();
    wait_for("second signal", &mut log);
    assert_eq!(wait(&mut child.0).code(), Some(130));
    assert!(
        !log.iter().any(|l| l.contains("shutdown complete")),
        "{}",
        log.join("\n")
    );
}
