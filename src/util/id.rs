//! Ids of events and messages: unique within the process, increasing, shared by both
//! kinds (an event and a message never have the same id).

use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id, unique within this process.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_increase_and_do_not_repeat() {
        let a = super::next_id();
        let b = super::next_id();
        assert!(b > a, "{a} then {b}");
    }
}
