//! Delivery priority of events and messages.
//!
//! Four levels, ordered `Low < Normal < High < Critical`, serialized as the numbers 1..=4 of
//! the seed specification. Event priority orders events inside one subscription's mailbox;
//! [`HandlerConfig::priority`](crate::HandlerConfig::priority) orders the subscriptions that
//! match one event.
//!
//! ```
//! use tickwire::Priority;
//! assert!(Priority::Critical > Priority::Low);
//! assert_eq!(serde_json::to_string(&Priority::High).unwrap(), "3");
//! assert_eq!(Priority::try_from(4), Ok(Priority::Critical));
//! assert!(Priority::try_from(5).is_err());
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How urgently an event or message must be handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Priority {
    /// Analytics, reports: handled when nothing more urgent waits (but never starved).
    Low = 1,
    /// Logs, metrics: the default.
    #[default]
    Normal = 2,
    /// Trading signals.
    High = 3,
    /// Errors, alerts, risk limits: handled before anything else that waits.
    Critical = 4,
}

/// The seed's name for event priorities.
pub type EventPriority = Priority;
/// The seed's name for message priorities.
pub type MessagePriority = Priority;

impl Priority {
    /// Every level, lowest first.
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Critical,
    ];

    /// The numeric value of the seed specification (1..=4).
    pub fn value(self) -> u8 {
        self as u8
    }

    /// Zero-based lane index: `Low` is 0, `Critical` is 3.
    pub(crate) fn lane(self) -> usize {
        self as usize - 1
    }

    /// Upper-case name, as the seed prints it (`"CRITICAL"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "LOW",
            Priority::Normal => "NORMAL",
            Priority::High => "HIGH",
            Priority::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A number that is not a priority level (valid: 1..=4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid priority {0}: expected 1 (LOW), 2 (NORMAL), 3 (HIGH) or 4 (CRITICAL)")]
pub struct InvalidPriority(pub u64);

impl TryFrom<u64> for Priority {
    type Error = InvalidPriority;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Priority::Low),
            2 => Ok(Priority::Normal),
            3 => Ok(Priority::High),
            4 => Ok(Priority::Critical),
            other => Err(InvalidPriority(other)),
        }
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.value())
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u64::deserialize(deserializer)?;
        Priority::try_from(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_values() {
        let values: Vec<u8> = Priority::ALL.iter().map(|p| p.value()).collect();
        assert_eq!(values, [1, 2, 3, 4]);
        assert!(Priority::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Priority::default(), Priority::Normal);
        assert_eq!(Priority::Critical.lane(), 3);
    }

    #[test]
    fn serde_round_trip_and_rejects_out_of_range() {
        for p in Priority::ALL {
            let text = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Priority>(&text).unwrap(), p);
        }
        let err = serde_json::from_str::<Priority>("0").unwrap_err();
        assert!(err.to_string().contains("invalid priority 0"), "{err}");
    }
}
