//! A map keyed by topic, bounded by entries and by the bytes of its keys: the per-topic
//! state of the hub (the [`Router`](super::router::Router)'s route caches, the
//! [`History`](super::history::History)'s seqs and kept messages), so that topic names that publishers or clients invent cost bounded memory.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// See the module docs. The bound is checked before an insertion: [`is_full`] says when
/// the owner must make room (clear, or forget some entries) first.
///
/// [`is_full`]: TopicMap::is_full
#[derive(Debug)]
pub(crate) struct TopicMap<V> {
    /// foldhash, as the core's index: several times cheaper than SipHash on topic names,
    /// and seeded at random per process. A broadcast looks its topic up here a few times.
    map: HashMap<Box<str>, V, foldhash::fast::RandomState>,
    /// Bytes of the keys.
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl<V> TopicMap<V> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        TopicMap {
            map: HashMap::default(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    pub(crate) fn get<Q>(&self, topic: &Q) -> Option<&V>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(topic)
    }

    pub(crate) fn get_mut(&mut self, topic: &str) -> Option<&mut V> {
        self.map.get_mut(topic)
    }

    /// Whether inserting a new `topic` would pass a bound.
    pub(crate) fn is_full(&self, topic: &str) -> bool {
        self.map.len() >= self.max_entries || self.bytes + topic.len() > self.max_bytes
    }

    /// Inserts (or replaces) a topic's value. The caller checked [`is_full`](Self::is_full).
    pub(crate) fn insert(&mut self, topic: &str, value: V) {
        if self.map.insert(topic.into(), value).is_none() {
            self.bytes += topic.len();
        }
    }

    /// Every value, to change, in no order.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.map.values_mut()
    }

    /// Every topic and its value, in no order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.map.iter().map(|(topic, value)| (&**topic, value))
    }

    /// Keeps the topics for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str, &mut V) -> bool) {
        let bytes = &mut self.bytes;
        self.map.retain(|topic, value| {
            let kept = keep(topic, value);
            if !kept {
                *bytes -= topic.len();
            }
            kept
        });
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes of the keys.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_entries_and_by_key_bytes() {
        let mut map = TopicMap::new(3, 10);
        map.insert("aaaa", 1);
        map.insert("bbbb", 2);
        assert!(map.is_full("ccc"), "4 + 4 + 3 > 10 bytes");
        assert!(!map.is_full("cc"));
        map.insert("cc", 3);
        assert!(map.is_full("d"), "three entries");
        map.insert("aaaa", 10); // replacing costs nothing
        assert_eq!(
            (map.len(), map.bytes(), map.get("aaaa")),
            (3, 10, Some(&10))
        );
        map.retain(|topic, _| topic != "bbbb");
        assert_eq!((map.len(), map.bytes()), (2, 6));
        map.clear();
        assert_eq!((map.len(), map.bytes()), (0, 0));
    }
}
