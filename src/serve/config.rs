//! The `tickwire serve` configuration file: TOML with one section per component.
//!
//! ```toml
//! [event_bus]        # EventBusConfig fields
//! max_workers = 4
//! [message_queue]    # MessageQueueConfig fields
//! [websocket]        # WebSocketServiceConfig fields
//! allow_client_publish = true
//! [server]
//! bind = "127.0.0.1:8080"
//! [[server.tokens]]
//! token = "change-me"
//! subscribe = ["market.>", "system.*"]
//! publish = ["orders.>"]
//! ```
//!
//! Every section and field is optional (the defaults are the seed's); an unknown key, a
//! value of the wrong type or out of range is an error that names the file, the line and
//! the field. `tickwire.example.toml` at the repository root documents every field.
//!
//! ```
//! use tickwire::serve::config::FileConfig;
//! let err = FileConfig::parse("[event_bus]\nmax_workers = 0\n", "t.toml".as_ref()).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "t.toml, line 2: [event_bus] invalid config: `max_workers` must be in 1..=1024, got 0"
//! );
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::access::{Access, AccessError, TokenConfig};
use crate::config::secs;
use crate::{ConfigError, EventBusConfig, MessageQueueConfig, WebSocketServiceConfig};

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// `[event_bus]`.
    pub event_bus: EventBusConfig,
    /// `[message_queue]`.
    pub message_queue: MessageQueueConfig,
    /// `[websocket]`.
    pub websocket: WebSocketServiceConfig,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[cluster]`: present, the EventBus and the MessageQueue join a cluster (see
    /// [`cluster`](crate::cluster)); only in a build with the `cluster` feature.
    #[cfg(feature = "cluster")]
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// `[cluster]` in a build without the `cluster` feature: refused, by name.
    #[cfg(not(feature = "cluster"))]
    #[serde(skip_serializing)]
    pub cluster: Option<toml::Table>,
}

/// `[server]`: the HTTP server and its tokens.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub bind: SocketAddr,
    /// HTTP worker threads (each serves many connections). 1..=64, default 2.
    pub workers: usize,
    /// How long a graceful shutdown may take to close the WebSocket sessions, and then to
    /// finish HTTP requests (the EventBus and the MessageQueue drain within their own
    /// `default_timeout`). Seconds; default 10.
    #[serde(with = "secs")]
    pub shutdown_timeout: Duration,
    /// Bearer tokens (`[[server.tokens]]`). None: the service is open to anyone who can
    /// reach it (a warning is logged when bound beyond loopback).
    pub tokens: Vec<TokenConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 2,
            shutdown_timeout: Duration::from_secs(10),
            tokens: Vec::new(),
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type. The message gives the line,
    /// the column and the key.
    #[error("{}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line and the offending key.
        message: String,
    },
    /// A value out of its allowed range.
    #[error("{}{}: [{section}] {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line of the field, when it is written in the file.
        line: Option<usize>,
        /// The section (`event_bus`, `server`…).
        section: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl FileConfig {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<FileConfig, FileConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        FileConfig::parse(&text, path)
    }

    /// Parses and validates the text of a file (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, FileConfigError> {
        let config: FileConfig = toml::from_str(text).map_err(|err| FileConfigError::Syntax {
            path: path.to_owned(),
            message: err.to_string().trim_end().to_owned(),
        })?;
        config.check().map_err(|(section, field, message)| {
            let line = match field {
                Field::Key(key) => line_of(text, section, key),
                Field::Token(index) => line_of_token(text, index),
            };
            FileConfigError::Invalid {
                path: path.to_owned(),
                line,
                section,
                message,
            }
        })?;
        Ok(config)
    }

    /// The compiled tokens.
    pub fn access(&self) -> Result<Access, AccessError> {
        Access::with_tokens(&self.server.tokens)
    }

    /// Checks every value (as [`parse`](Self::parse) does); the error is
    /// `[section] message`.
    pub fn validate(&self) -> Result<(), String> {
        self.check()
            .map_err(|(section, _, message)| format!("[{section}] {message}"))
    }

    fn check(&self) -> Result<(), (&'static str, Field, String)> {
        let component = |section: &'static str, result: Result<(), ConfigError>| {
            result.map_err(|err| {
                let field = match &err {
                    ConfigError::Invalid { field, .. } => *field,
                    ConfigError::NoSystem { .. } => "",
                };
                (section, Field::Key(field), err.to_string())
            })
        };
        component("event_bus", self.event_bus.validate())?;
        component("message_queue", self.message_queue.validate())?;
        component("websocket", self.websocket.validate())?;
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.cluster {
            component("cluster", cluster.validate())?;
        }
        #[cfg(not(feature = "cluster"))]
        if self.cluster.is_some() {
            let message = "this tickwire was built without the `cluster` feature \
                           (cargo build --release --features cluster)"
                .to_owned();
            return Err(("cluster", Field::Key("cluster"), message));
        }
        if !(1..=64).contains(&self.server.workers) {
            let message = format!("`workers` must be in 1..=64, got {}", self.server.workers);
            return Err(("server", Field::Key("workers"), message));
        }
        component(
            "server",
            crate::config::check_timeout("shutdown_timeout", self.server.shutdown_timeout),
        )?;
        self.access().map_err(|err| {
            let index = match err {
                AccessError::BadToken { index }
                | AccessError::Duplicate { index }
                | AccessError::InvalidPattern { index, .. } => index,
            };
            ("server", Field::Token(index), err.to_string())
        })?;
        Ok(())
    }
}

/// Where a problem is, to find its line.
enum Field {
    Key(&'static str),
    /// The n-th `[[server.tokens]]`, from 0.
    Token(usize),
}

/// The table header a line opens, if it is one (`[a.b]` or `[[a.b]]`).
fn header(line: &str) -> Option<&str> {
    // A header may be followed by a comment: `[event_bus]   # …`.
    let line = line.split('#').next().unwrap_or("").trim();
    let inner = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]"));
    inner
        .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
        .map(str::trim)
}

/// The 1-based line where `key` is set in `[section]`.
fn line_of(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = "";
    for (n, line) in text.lines().enumerate() {
        if let Some(h) = header(line) {
            current = h;
        } else if current == section {
            let name = line.split('=').next().unwrap_or("").trim();
            if !key.is_empty() && name == key && line.contains('=') {
                return Some(n + 1);
            }
        }
    }
    None
}

fn line_of_token(text: &str, index: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| header(line) == Some("server.tokens"))
        .nth(index)
        .map(|(n, _)| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        FileConfig::parse(text, Path::new("tickwire.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), FileConfig::default());
    }

    #[test]
    fn sections_set_their_component() {
        let c = parse(
            "[event_bus]\nmax_workers = 3\ndefault_timeout = 2.5\n\n[websocket]\nallow_client_publish = true\n\
             [server]\nbind = \"0.0.0.0:9000\"\n[[server.tokens]]\ntoken = \"t\"\nsubscribe = [\"market.>\"]\n",
        )
        .unwrap();
        assert_eq!(c.event_bus.max_workers, 3);
        assert_eq!(c.event_bus.default_timeout, Duration::from_millis(2500));
        assert!(c.websocket.allow_client_publish);
        assert_eq!(c.server.bind, "0.0.0.0:9000".parse().unwrap());
        assert!(!c.access().unwrap().is_open());
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let err = parse("[event_bus]\nmax_wrkers = 3\n").unwrap_err();
        assert!(
            err.starts_with("tickwire.toml: TOML parse error at line 2"),
            "{err}"
        );
        assert!(err.contains("unknown field `max_wrkers`"), "{err}");
        let err = parse("[server]\nbind = \"localhost\"\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("socket address"),
            "{err}"
        );
        let err = parse("[message_queue]\nmax_size = \"big\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("max_size"), "{err}");
        let err = parse("[event_bus]   # with a comment\nmax_workers = 0\n").unwrap_err();
        assert!(
            err.starts_with("tickwire.toml, line 2: [event_bus]"),
            "{err}"
        );
        let err = parse("[websocket]\n\nmax_message_size = 0\n").unwrap_err();
        assert_eq!(
            err,
            "tickwire.toml, line 3: [websocket] invalid config: `max_message_size` must be in 1..=67108864, got 0"
        );
        let err = parse("[[server.tokens]]\ntoken = \"a\"\n[[server.tokens]]\ntoken = \"b\"\npublish = [\"x.>.y\"]\n")
            .unwrap_err();
        assert!(
            err.starts_with("tickwire.toml, line 3: [server] tokens[1].publish"),
            "{err}"
        );
        let err = parse("[surprise]\n").unwrap_err();
        assert!(err.contains("unknown field `surprise`"), "{err}");
    }

    #[test]
    fn the_replaced_send_buffer_still_loads_and_the_byte_budget_is_read() {
        let config = parse(
            "[websocket]\nsend_buffer = 1024\nmax_queued_bytes = 65536\nwrite_timeout = 0.5\n",
        )
        .unwrap();
        assert_eq!(config.websocket.max_queued_bytes, 65536);
        assert_eq!(
            config.websocket.write_timeout,
            std::time::Duration::from_millis(500)
        );
        let err = parse("[websocket]\nwrite_timeout = 0\n").unwrap_err();
        assert!(err.contains("`write_timeout`"), "{err}");
    }

    #[test]
    fn a_cluster_section_needs_the_cluster_feature() {
        let text = "[cluster]\nnats_url = \"nats://10.0.0.5:4222\"\nevent_bus = [\"market.>\"]\n";
        #[cfg(feature = "cluster")]
        {
            let cluster = parse(text).unwrap().cluster.unwrap();
            assert_eq!(cluster.nats_url, "nats://10.0.0.5:4222");
            assert_eq!(cluster.event_bus, ["market.>"]);
            let durable = "[cluster]\nmessage_queue = [\"orders.>\"]\ndurable = [\"orders.new\"]\nack_wait = 2.5\n";
            let cluster = parse(durable).unwrap().cluster.unwrap();
            assert_eq!(cluster.durable, ["orders.new"]);
            assert_eq!(cluster.ack_wait, std::time::Duration::from_millis(2_500));
            let err = parse("[cluster]\ndurable = [\"orders.>\"]\n").unwrap_err();
            assert!(
                err.contains("[cluster]") && err.contains("not within any `message_queue`"),
                "{err}"
            );
        }
        #[cfg(not(feature = "cluster"))]
        {
            let err = parse(text).unwrap_err();
            assert!(err.contains("without the `cluster` feature"), "{err}");
        }
    }

    #[test]
    fn the_example_file_is_valid_and_complete() {
        let text = include_str!("../../tickwire.example.toml");
        let config = parse(text).unwrap();
        // Every field of every section is written in the example (so it is documented).
        let written = toml::from_str::<toml::Table>(text).unwrap();
        let all = toml::Table::try_from(&config).unwrap();
        for (section, fields) in &all {
            let fields = fields.as_table().unwrap();
            for key in fields.keys() {
                let set = written
                    .get(section)
                    .and_then(|s| s.as_table())
                    .is_some_and(|s| s.contains_key(key));
                // Or shown commented out (the tokens, which would close the service).
                let shown = text
                    .lines()
                    .any(|l| l.trim_start().starts_with('#') && l.contains(key.as_str()));
                assert!(
                    set || shown,
                    "[{section}] {key} is missing from tickwire.example.toml"
                );
            }
        }
    }
}
