//! `[cluster]`: which NATS server, which node, and which names span processes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{check_range, check_timeout, secs};
use crate::{ConfigError, Pattern};

/// Largest accepted `max_buffered`.
pub const MAX_BUFFERED: usize = 1 << 24;

/// Configuration of a [`Cluster`](super::Cluster) (`[cluster]` in `tickwire.toml`).
///
/// ```
/// use tickwire::cluster::ClusterConfig;
///
/// let config: ClusterConfig = serde_json::from_str(
///     r#"{"nats_url": "nats://10.0.0.5:4222", "node": "gw-1", "event_bus": ["market.>"]}"#,
/// ).unwrap();
/// assert_eq!(config.prefix, "tickwire");
/// assert_eq!(config.max_buffered, 65_536);
/// config.validate().unwrap();
///
/// let bad = ClusterConfig { message_queue: vec!["orders..new".into()], ..config };
/// assert_eq!(
///     bad.validate().unwrap_err().to_string(),
///     "invalid config: `message_queue` has an invalid pattern \"orders..new\": token 2 is empty"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS server. Default `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// This node's name, the origin in the `Tickwire` header of what it publishes;
    /// unique in the cluster (a connect under a name a connected node holds is refused).
    /// Default: the host name and the process id (`host-1234`).
    pub node: Option<String>,
    /// The first token of every subject. Default `tickwire`.
    pub prefix: String,
    /// Event names that span processes (patterns). Default none.
    pub event_bus: Vec<String>,
    /// MessageQueue topics that span processes (patterns). Default none.
    pub message_queue: Vec<String>,
    /// Of those, the topics kept in JetStream (at-least-once, see the
    /// [module docs](super#durable-topics)): each pattern within one of `message_queue`,
    /// no two overlapping. Default none.
    pub durable: Vec<String>,
    /// How long JetStream waits for a durable message's acknowledgement before it
    /// redelivers it: how soon a message whose node died mid-handling goes to another
    /// member. A node handling one for longer tells JetStream it is still at work
    /// (every half of it). At least 1 s, default 30 s.
    #[serde(with = "secs")]
    pub ack_wait: Duration,
    /// How many clustered publishes may wait for NATS (while it is unreachable) before
    /// further ones are refused with `ClusterUnavailable`. 1..=16777216, default 65536.
    pub max_buffered: usize,
    /// How long [`Cluster::connect`](super::Cluster::connect) waits for the server, and
    /// each of the two stages of [`Cluster::close`](super::Cluster::close) at most.
    /// Default 5 s.
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: "nats://127.0.0.1:4222".into(),
            node: None,
            prefix: "tickwire".into(),
            event_bus: Vec::new(),
            message_queue: Vec::new(),
            durable: Vec::new(),
            ack_wait: Duration::from_secs(30),
            max_buffered: 65_536,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl ClusterConfig {
    /// Checks every field; the error names the first field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nats_url.trim().is_empty() {
            return Err(invalid("nats_url", "must not be empty".into()));
        }
        if let Some(node) = &self.node {
            if node.is_empty() || node.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    "node",
                    format!(
                        "must be non-empty, without spaces or control characters, got {node:?}"
                    ),
                ));
            }
        }
        crate::validate_name(&self.prefix)
            .map_err(|err| invalid("prefix", format!("is an {err}")))?;
        self.event_bus_patterns()?;
        self.message_queue_patterns()?;
        self.durable_patterns()?;
        if self.ack_wait < Duration::from_secs(1) {
            return Err(invalid(
                "ack_wait",
                format!("must be at least 1 s, got {:?}", self.ack_wait),
            ));
        }
        check_range("max_buffered", self.max_buffered, 1, MAX_BUFFERED)?;
        check_timeout("connect_timeout", self.connect_timeout)
    }

    /// `event_bus`, parsed.
    pub(crate) fn event_bus_patterns(&self) -> Result<Vec<Pattern>, ConfigError> {
        parse("event_bus", &self.event_bus)
    }

    /// `message_queue`, parsed.
    pub(crate) fn message_queue_patterns(&self) -> Result<Vec<Pattern>, ConfigError> {
        parse("message_queue", &self.message_queue)
    }

    /// `durable`, parsed and checked: each within a `message_queue` pattern, none
    /// overlapping another (one JetStream stream holds them all).
    pub(crate) fn durable_patterns(&self) -> Result<Vec<Pattern>, ConfigError> {
        let queue = self.message_queue_patterns()?;
        let durable = parse("durable", &self.durable)?;
        for (i, d) in durable.iter().enumerate() {
            if !queue.iter().any(|q| q.covers(d)) {
                return Err(invalid(
                    "durable",
                    format!(
                        "has {:?}, which is not within any `message_queue` pattern",
                        d.as_str()
                    ),
                ));
            }
            if let Some(other) = durable[..i].iter().find(|o| o.intersect(d).is_some()) {
                return Err(invalid(
                    "durable",
                    format!(
                        "has {:?} and {:?}, which overlap",
                        other.as_str(),
                        d.as_str()
                    ),
                ));
            }
        }
        Ok(durable)
    }

    /// `node`, or the host name and the process id.
    pub(crate) fn node_name(&self) -> String {
        if let Some(node) = &self.node {
            return node.clone();
        }
        let host = host_name().unwrap_or_else(|| "node".into());
        format!("{host}-{}", std::process::id())
    }
}

/// This machine's host name, if it has one without whitespace.
pub(crate) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
}

fn invalid(field: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { field, message }
}

fn parse(field: &'static str, patterns: &[String]) -> Result<Vec<Pattern>, ConfigError> {
    patterns
        .iter()
        .map(|p| Pattern::parse(p).map_err(|err| invalid(field, format!("has an {err}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_field() {
        let ok = ClusterConfig::default();
        ok.validate().unwrap();
        let field = |c: ClusterConfig| match c.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(ClusterConfig {
                nats_url: " ".into(),
                ..ok.clone()
            }),
            "nats_url"
        );
        assert_eq!(
            field(ClusterConfig {
                node: Some("a b".into()),
                ..ok.clone()
            }),
            "node"
        );
        assert_eq!(
            field(ClusterConfig {
                prefix: "tw.>".into(),
                ..ok.clone()
            }),
            "prefix"
        );
        assert_eq!(
            field(ClusterConfig {
                event_bus: vec!["a.>.b".into()],
                ..ok.clone()
            }),
            "event_bus"
        );
        let queue = ClusterConfig {
            message_queue: vec!["orders.>".into(), "fills.*".into()],
            ..ok.clone()
        };
        let durable = |d: &[&str]| ClusterConfig {
            durable: d.iter().map(|&d| d.into()).collect(),
            ..queue.clone()
        };
        durable(&["orders.new", "orders.*.eu", "fills.x"])
            .validate()
            .unwrap();
        for bad in [
            &["trades.>"][..],
            &["fills.>"],
            &["orders.>", "orders.new"],
            &["a..b"],
        ] {
            assert_eq!(field(durable(bad)), "durable", "{bad:?}");
        }
        assert_eq!(
            durable(&["orders.*", "orders.new"])
                .validate()
                .unwrap_err()
                .to_string(),
            "invalid config: `durable` has \"orders.*\" and \"orders.new\", which overlap"
        );
        assert_eq!(
            field(ClusterConfig {
                ack_wait: Duration::ZERO,
                ..ok.clone()
            }),
            "ack_wait"
        );
        assert_eq!(
            field(ClusterConfig {
                max_buffered: 0,
                ..ok.clone()
            }),
            "max_buffered"
        );
        assert_eq!(
            field(ClusterConfig {
                connect_timeout: Duration::ZERO,
                ..ok
            }),
            "connect_timeout"
        );
    }

    #[test]
    fn the_default_node_is_the_host_and_the_process() {
        let node = ClusterConfig::default().node_name();
        assert!(
            node.ends_with(&format!("-{}", std::process::id())),
            "{node}"
        );
        let named = ClusterConfig {
            node: Some("gw-1".into()),
            ..Default::default()
        };
        assert_eq!(named.node_name(), "gw-1");
    }
}
