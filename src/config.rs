//! Configuration of the components, with the seed specification's fields and defaults.
//!
//! Every config is a plain struct with public fields, a [`Default`] that spells out the
//! seed's defaults, serde support for configuration files (durations are written as
//! seconds, `default_timeout = 30.0`) and a `validate()` that names the offending field.
//!
//! ```
//! use std::time::Duration;
//! use tickwire::EventBusConfig;
//!
//! let config: EventBusConfig = serde_json::from_str(r#"{"max_workers": 4, "default_timeout": 2.5}"#).unwrap();
//! assert_eq!(config.max_workers, 4);
//! assert_eq!(config.default_timeout, Duration::from_millis(2500));
//! assert_eq!(config.queue_size, 10_000);          // the seed's default
//!
//! let bad = EventBusConfig { max_workers: 0, ..EventBusConfig::default() };
//! assert_eq!(
//!     bad.validate().unwrap_err().to_string(),
//!     "invalid config: `max_workers` must be in 1..=1024, got 0"
//! );
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A configuration value out of its allowed range, or a component started outside actix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field's value is not allowed.
    #[error("invalid config: `{field}` {message}")]
    Invalid {
        /// The field name, as in the config struct and file.
        field: &'static str,
        /// What is allowed and what was given.
        message: String,
    },
    /// `start` was called outside a running actix `System`.
    #[error("{component}::start must be called inside a running actix System (#[actix::main], #[actix_rt::test] or System::new().block_on)")]
    NoSystem {
        /// The component that was started.
        component: &'static str,
    },
}

/// Largest accepted `max_workers`.
pub const MAX_WORKERS: usize = 1024;
/// Largest accepted per-subscription queue bound.
pub const MAX_QUEUE_SIZE: usize = 1 << 30;
/// Largest accepted `max_history`.
pub const MAX_HISTORY: usize = 1_000_000;

/// Configuration of the [`EventBus`](crate::EventBus).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventBusConfig {
    /// Worker threads (actix arbiters) that run handler actors; subscriptions are spread
    /// across them. 1..=1024, default 10.
    pub max_workers: usize,
    /// How many events may wait in one subscription's mailbox; a publisher that finds it
    /// full waits (see `## Backpressure` on [`EventBus`](crate::EventBus)); LOW events may
    /// fill 7/8 of it, the rest is kept for more urgent ones. ≥ 1, default 10000.
    pub queue_size: usize,
    /// How many of the latest published events [`EventBus::history`](crate::EventBus::history)
    /// keeps; 0 keeps none. Default 1000.
    pub max_history: usize,
    /// Record metrics on the hot path. Default true.
    pub enable_metrics: bool,
    /// Retry failed handlers per their [`HandlerConfig`](crate::HandlerConfig). Default true.
    pub enable_retry: bool,
    /// How long `publish` waits for room, the default handler timeout and the bound on
    /// draining at `stop()`. Written in seconds; > 0, default 30 s.
    #[serde(with = "secs")]
    pub default_timeout: Duration,
    /// `true`: `publish` returns once the event is queued. `false`: it returns after every
    /// matching handler has finished with the event. Default true.
    pub enable_async_processing: bool,
    /// How many dead letters [`EventBus::dead_letters`](crate::EventBus::dead_letters)
    /// keeps (the latest; all are counted). Not in the seed. Default 1000.
    pub max_dead_letters: usize,
}

impl Default for EventBusConfig {
    fn default() -> Self {
        EventBusConfig {
            max_workers: 10,
            queue_size: 10_000,
            max_history: 1000,
            enable_metrics: true,
            enable_retry: true,
            default_timeout: Duration::from_secs(30),
            enable_async_processing: true,
            max_dead_letters: 1000,
        }
    }
}

impl EventBusConfig {
    /// Checks every field; the error names the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("max_workers", self.max_workers, 1, MAX_WORKERS)?;
        check_range("queue_size", self.queue_size, 1, MAX_QUEUE_SIZE)?;
        check_range("max_history", self.max_history, 0, MAX_HISTORY)?;
        check_range("max_dead_letters", self.max_dead_letters, 0, MAX_HISTORY)?;
        check_timeout("default_timeout", self.default_timeout)
    }
}

/// Configuration of the [`MessageQueue`](crate::MessageQueue).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessageQueueConfig {
    /// How many deliveries may wait in the whole queue (all topics and subscriptions
    /// together); a publisher that finds it full waits (see `## Backpressure` on
    /// [`MessageQueue`](crate::MessageQueue)). ≥ 1, default 10000.
    pub max_size: usize,
    /// Worker threads (actix arbiters) that run handler actors. 1..=1024, default 10.
    pub max_workers: usize,
    /// `true`: each subscription drains CRITICAL first, with the EventBus's
    /// anti-starvation rule. `false`: plain FIFO. Default true.
    pub enable_priority_queues: bool,
    /// Record metrics on the hot path. Default true.
    pub enable_metrics: bool,
    /// How long `publish` waits for room, the default handler timeout and the bound on
    /// draining at `stop()`. Written in seconds; > 0, default 30 s.
    #[serde(with = "secs")]
    pub default_timeout: Duration,
    /// Retry failed handlers per their [`HandlerConfig`](crate::HandlerConfig). Not in
    /// the seed (whose MessageQueue has no such switch). Default true.
    pub enable_retry: bool,
    /// How many dead letters [`MessageQueue::dead_letters`](crate::MessageQueue::dead_letters)
    /// keeps. Not in the seed. Default 1000.
    pub max_dead_letters: usize,
}

impl Default for MessageQueueConfig {
    fn default() -> Self {
        MessageQueueConfig {
            max_size: 10_000,
            max_workers: 10,
            enable_priority_queues: true,
            enable_metrics: true,
            default_timeout: Duration::from_secs(30),
            enable_retry: true,
            max_dead_letters: 1000,
        }
    }
}

impl MessageQueueConfig {
    /// Checks every field; the error names the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("max_size", self.max_size, 1, MAX_QUEUE_SIZE)?;
        check_range("max_workers", self.max_workers, 1, MAX_WORKERS)?;
        check_range("max_dead_letters", self.max_dead_letters, 0, MAX_HISTORY)?;
        check_timeout("default_timeout", self.default_timeout)
    }
}

#[cfg(feature = "websocket")]
/// Largest accepted `max_connections`.
pub const MAX_CONNECTIONS: usize = 1_000_000;
#[cfg(feature = "websocket")]
/// Largest accepted `max_message_size` (64 MiB).
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

#[cfg(feature = "websocket")]
/// Smallest accepted `max_queued_bytes` (4 KiB).
pub const MIN_QUEUED_BYTES: usize = 4 << 10;
#[cfg(feature = "websocket")]
/// Largest accepted `max_queued_bytes` (1 GiB).
pub const MAX_QUEUED_BYTES: usize = 1 << 30;
#[cfg(feature = "websocket")]
/// Largest accepted `history_size` (messages per topic).
pub const MAX_HISTORY_SIZE: usize = 100_000;
#[cfg(feature = "websocket")]
/// Largest accepted `history_max_bytes` (16 GiB).
pub const MAX_HISTORY_BYTES: usize = 16 << 30;
#[cfg(feature = "websocket")]
/// Configuration of the [`WebSocketService`](crate::WebSocketService).
///
/// ```
/// use std::time::Duration;
/// use tickwire::WebSocketServiceConfig;
///
/// let config: WebSocketServiceConfig =
///     serde_json::from_str(r#"{"heartbeat_interval": 5, "connection_timeout": 15}"#).unwrap();
/// assert_eq!(config.connection_timeout, Duration::from_secs(15));
/// assert_eq!(config.max_connections, 1000); // the seed's default
///
/// let bad = WebSocketServiceConfig { heartbeat_interval: Duration::from_secs(400), ..config };
/// assert_eq!(
///     bad.validate().unwrap_err().to_string(),
///     "invalid config: `heartbeat_interval` must be less than `connection_timeout` (15 s), got 400 s"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketServiceConfig {
    /// Sessions open at once; one more is refused with HTTP 503 before the upgrade.
    /// 1..=1000000, default 1000.
    pub max_connections: usize,
    /// How often the server pings each client. Written in seconds; default 30 s; less
    /// than `connection_timeout`.
    #[serde(with = "secs")]
    pub heartbeat_interval: Duration,
    /// A client from which nothing (no frame, not even a pong) arrived for this long is
    /// closed with code 4000. Written in seconds; default 300 s.
    #[serde(with = "secs")]
    pub connection_timeout: Duration,
    /// Largest accepted client message, in bytes (a frame, or a fragmented message
    /// reassembled); past it the session is closed with 1009. 1..=64 MiB, default 1 MiB.
    pub max_message_size: usize,
    /// permessage-deflate (RFC 7692), negotiated with each client that offers it. The
    /// server always answers `server_no_context_takeover`, so a broadcast is compressed
    /// once and the same bytes go to every compressing session. Default true.
    pub enable_compression: bool,
    /// Count sent and received messages. Default true.
    pub enable_metrics: bool,
    /// Clients may send `{"type":"publish"}` into the MessageQueue given to the service
    /// ([`WebSocketServiceBuilder::publish_to`](crate::websocket::WebSocketServiceBuilder::publish_to)).
    /// Not in the seed. Default false.
    pub allow_client_publish: bool,
    /// Each session's outbound budget, in bytes of encoded frames waiting for the socket.
    /// A client that falls further behind is closed with 4008 (slow consumer).
    /// Not in the seed. 4096..=1 GiB, default 16 MiB.
    pub max_queued_bytes: usize,
    /// A session with frames waiting whose socket took no byte for this long is closed
    /// with 4008 (slow consumer). Written in seconds; not in the seed; default 5 s.
    #[serde(with = "secs")]
    pub write_timeout: Duration,
    /// The deflate level of permessage-deflate, 0 (store) ..= 9. Not in the seed;
    /// default 1 (fastest).
    pub compression_level: u32,
    /// Messages smaller than this many bytes go uncompressed (RSV1 clear) to every
    /// session. Not in the seed; default 256.
    pub compression_min_size: usize,
    /// Messages kept per topic for recovery after a reconnect and for snapshots on
    /// subscribe (see [`protocol`](crate::websocket::protocol)); 0 turns both off.
    /// 0..=100000, default 100.
    pub history_size: usize,
    /// How long a kept message stays recoverable. Written in seconds; default 300 s.
    #[serde(with = "secs")]
    pub history_ttl: Duration,
    /// All topics' kept messages together, in bytes: past it, the oldest go first.
    /// Not in the seed. 0..=16 GiB, default 64 MiB.
    pub history_max_bytes: usize,
    /// Replaced by `max_queued_bytes` and `write_timeout`: a config that still sets
    /// `send_buffer` loads, with a warning that names them, and the value is not used.
    #[doc(hidden)]
    #[serde(rename = "send_buffer", skip_serializing)]
    pub _send_buffer: ReplacedSendBuffer,
}

#[cfg(feature = "websocket")]
/// The former `send_buffer` setting (a count of messages), replaced by
/// [`max_queued_bytes`](WebSocketServiceConfig::max_queued_bytes) and
/// [`write_timeout`](WebSocketServiceConfig::write_timeout): reading one logs a warning
/// that names them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplacedSendBuffer;

#[cfg(feature = "websocket")]
impl<'de> Deserialize<'de> for ReplacedSendBuffer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer)?;
        tracing::warn!(
            "`send_buffer` is no longer used: a session's outbound budget is `max_queued_bytes` (bytes waiting, default 16 MiB) and `write_timeout` (default 5 s)"
        );
        Ok(ReplacedSendBuffer)
    }
}

#[cfg(feature = "websocket")]
impl Default for WebSocketServiceConfig {
    fn default() -> Self {
        WebSocketServiceConfig {
            max_connections: 1000,
            heartbeat_interval: Duration::from_secs(30),
            connection_timeout: Duration::from_secs(300),
            max_message_size: 1 << 20,
            enable_compression: true,
            enable_metrics: true,
            allow_client_publish: false,
            max_queued_bytes: 16 << 20,
            write_timeout: Duration::from_secs(5),
            compression_level: 1,
            compression_min_size: 256,
            history_size: 100,
            history_ttl: Duration::from_secs(300),
            history_max_bytes: 64 << 20,
            _send_buffer: ReplacedSendBuffer,
        }
    }
}

#[cfg(feature = "websocket")]
impl WebSocketServiceConfig {
    /// Checks every field; the error names the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("max_connections", self.max_connections, 1, MAX_CONNECTIONS)?;
        check_timeout("heartbeat_interval", self.heartbeat_interval)?;
        check_timeout("connection_timeout", self.connection_timeout)?;
        if self.heartbeat_interval >= self.connection_timeout {
            return Err(ConfigError::Invalid {
                field: "heartbeat_interval",
                message: format!(
                    "must be less than `connection_timeout` ({} s), got {} s",
                    self.connection_timeout.as_secs_f64(),
                    self.heartbeat_interval.as_secs_f64()
                ),
            });
        }
        check_range(
            "max_message_size",
            self.max_message_size,
            1,
            MAX_MESSAGE_SIZE,
        )?;
        check_range(
            "max_queued_bytes",
            self.max_queued_bytes,
            MIN_QUEUED_BYTES,
            MAX_QUEUED_BYTES,
        )?;
        check_timeout("write_timeout", self.write_timeout)?;
        check_range("compression_level", self.compression_level as usize, 0, 9)?;
        check_range(
            "compression_min_size",
            self.compression_min_size,
            0,
            MAX_MESSAGE_SIZE,
        )?;
        check_range("history_size", self.history_size, 0, MAX_HISTORY_SIZE)?;
        check_timeout("history_ttl", self.history_ttl)?;
        check_range(
            "history_max_bytes",
            self.history_max_bytes,
            0,
            MAX_HISTORY_BYTES,
        )
    }
}

pub(crate) fn check_range(
    field: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field,
            message: format!("must be in {min}..={max}, got {value}"),
        })
    }
}

pub(crate) fn check_timeout(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    const MAX: Duration = Duration::from_secs(7 * 24 * 3600);
    if value.is_zero() || value > MAX {
        Err(ConfigError::Invalid {
            field,
            message: format!(
                "must be more than 0 s and at most {} s, got {} s",
                MAX.as_secs(),
                value.as_secs_f64()
            ),
        })
    } else {
        Ok(())
    }
}

/// Serde helpers that write a [`Duration`] as seconds (`30.0`, `0.25`).
pub mod secs {
    use std::time::Duration;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Writes the duration as fractional seconds.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    /// Reads non-negative, finite seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(seconds).map_err(|_| {
            D::Error::custom(format!(
                "expected a non-negative number of seconds, got {seconds}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let c = EventBusConfig::default();
        assert_eq!(
            (c.max_workers, c.queue_size, c.max_history),
            (10, 10_000, 1000)
        );
        assert!(c.enable_metrics && c.enable_retry && c.enable_async_processing);
        assert_eq!(c.default_timeout, Duration::from_secs(30));
        c.validate().unwrap();
    }

    #[test]
    fn serde_uses_seconds_and_rejects_unknown_fields() {
        let c = EventBusConfig::default();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["default_timeout"], 30.0);
        let back: EventBusConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
        let err = serde_json::from_str::<EventBusConfig>(r#"{"max_wrkers": 3}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_wrkers`"),
            "{err}"
        );
        let err = serde_json::from_str::<EventBusConfig>(r#"{"default_timeout": -1}"#).unwrap_err();
        assert!(err.to_string().contains("non-negative"), "{err}");
    }

    #[test]
    fn message_queue_defaults_serde_and_validation() {
        let c = MessageQueueConfig::default();
        assert_eq!((c.max_size, c.max_workers), (10_000, 10));
        assert!(c.enable_priority_queues && c.enable_metrics);
        assert_eq!(c.default_timeout, Duration::from_secs(30));
        c.validate().unwrap();
        let c: MessageQueueConfig =
            serde_json::from_str(r#"{"max_size": 5000, "enable_priority_queues": false}"#).unwrap();
        assert_eq!((c.max_size, c.enable_priority_queues), (5000, false));
        let err = MessageQueueConfig {
            max_size: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid config: `max_size` must be in 1..=1073741824, got 0"
        );
        assert!(serde_json::from_str::<MessageQueueConfig>(r#"{"queue_size": 1}"#).is_err());
    }

    #[cfg(feature = "websocket")]
    #[test]
    fn websocket_defaults_are_the_seeds_and_validate() {
        let c = WebSocketServiceConfig::default();
        assert_eq!((c.max_connections, c.max_message_size), (1000, 1024 * 1024));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(c.connection_timeout, Duration::from_secs(300));
        assert!(c.enable_compression && c.enable_metrics && !c.allow_client_publish);
        c.validate().unwrap();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["connection_timeout"], 300.0);
        assert!(
            serde_json::from_str::<WebSocketServiceConfig>(r#"{"max_conections": 1}"#).is_err()
        );
        for (bad, field) in [
            (
                WebSocketServiceConfig {
                    max_connections: 0,
                    ..c.clone()
                },
                "max_connections",
            ),
            (
                WebSocketServiceConfig {
                    max_message_size: 0,
                    ..c.clone()
                },
                "max_message_size",
            ),
            (
                WebSocketServiceConfig {
                    heartbeat_interval: Duration::ZERO,
                    ..c.clone()
                },
                "heartbeat_interval",
            ),
            (
                WebSocketServiceConfig {
                    connection_timeout: Duration::from_secs(30),
                    ..c.clone()
                },
                "heartbeat_interval",
            ),
        ] {
            match bad.validate() {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn validate_names_the_field() {
        let cases = [
            (
                EventBusConfig {
                    max_workers: 1025,
                    ..Default::default()
                },
                "`max_workers` must be in 1..=1024, got 1025",
            ),
            (
                EventBusConfig {
                    queue_size: 0,
                    ..Default::default()
                },
                "`queue_size` must be in 1..=1073741824, got 0",
            ),
            (
                EventBusConfig {
                    max_history: MAX_HISTORY + 1,
                    ..Default::default()
                },
                "`max_history` must be in 0..=1000000, got 1000001",
            ),
            (
                EventBusConfig {
                    default_timeout: Duration::ZERO,
                    ..Default::default()
                },
                "`default_timeout` must be more than 0 s",
            ),
        ];
        for (config, message) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(message), "{err} / {message}");
        }
    }
}
