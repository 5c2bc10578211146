//! The hub's per-topic sequence numbers and history: what recovery after a reconnect and
//! snapshots on subscribe are answered from. A plain struct, with no actor in it: the hub
//! owns one, so numbering, keeping and replaying happen in the hub's order.
//!
//! ## Seq and epoch
//!
//! Each topic numbers its broadcasts: [`next_seq`](History::next_seq) gives the number of
//! the next one and [`record`](History::record) takes it. The [`epoch`](History::epoch),
//! chosen at random when the hub starts, names this sequence space: a restarted server
//! numbers from 1 again under another epoch, so a client's `(epoch, seq)` never points
//! into the wrong sequence.
//!
//! The table of topics is bounded (entries and bytes of names). When a new topic would
//! pass the bound, the topics nobody is subscribed to are forgotten, history and all; if
//! the topics left still fill half the table, all are. A forgotten topic does not start
//! again at 1: every topic starts after the *floor*, the highest `seq` any forgotten
//! topic had, so that a client's old position can never name a message of the new
//! sequence (its recovery fails instead, and says so).
//!
//! ## History
//!
//! With `history_size` > 0, each broadcast's `message` text is kept with its topic: the
//! last `history_size` of each topic, none older than `history_ttl`, and at most
//! `history_max_bytes` for all topics together (past that, the oldest messages of all
//! topics go first). Keeping costs a reference count: the text is the one every session
//! got.
//!
//! ## Resuming a subscription
//!
//! [`resume`](History::resume) answers a subscribe's `recover` and `snapshot`:
//! - a position `(topic, seq)` is *recovered* when the epoch is this one and nothing was
//!   published after `seq`, or the history still holds every message after `seq`; the
//!   replay is those messages, in order;
//! - `recovered` is true when every listed position was;
//! - with `snapshot`, every topic the pattern matches that was not recovered (not
//!   listed, or listed and lost) gets its latest kept message, flagged `"snapshot":true`,
//!   in the order of the topic names (a pattern's snapshot looks at every kept topic);
//! - what a resume sends is bounded by half the session's `max_queued_bytes`: a position
//!   whose replay would pass it is not recovered (and gets a snapshot instead), snapshot
//!   messages past it are left out. So a replay never makes its session a slow consumer,
//!   which would have the client reconnect and ask for the same replay again.
//!
//! A topic not in the table answers `seq` = the floor: its next message is numbered
//! above it, and a client at the floor has missed nothing of it.
//!
//! The hub pushes the ack and then these frames in the same turn in which it adds the
//! subscription: a live message comes after them, and it is the one after the last seq
//! replayed. So a recovery is exact even while publishers keep publishing.

use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::protocol::{self, Recover};
use super::topics::TopicMap;
use crate::Pattern;

/// Topics one `recover.positions` may list.
pub(crate) const MAX_POSITIONS: usize = 10_000;

/// Memory a kept message costs besides its text (the entry in the topic's ring).
const ENTRY_BYTES: usize = std::mem::size_of::<Kept>();

/// What a [`History`] keeps, and its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Messages per topic; 0: none (no recovery, no snapshot).
    pub(crate) size: usize,
    /// Age after which a message is no longer kept.
    pub(crate) ttl: Duration,
    /// Bytes of all kept messages.
    pub(crate) max_bytes: usize,
    /// Topics with a `seq`, and bytes of their names.
    pub(crate) topics: (usize, usize),
}

impl Limits {
    /// The limits of a service's config, with the hub's table bound.
    pub(crate) fn of(config: &crate::WebSocketServiceConfig) -> Limits {
        Limits {
            size: config.history_size,
            ttl: config.history_ttl,
            max_bytes: config.history_max_bytes,
            topics: (100_000, 8 << 20),
        }
    }
}

/// One kept message.
struct Kept {
    seq: u64,
    at: Instant,
    text: ByteString,
}

/// A topic's state: its last `seq`, and its kept messages, oldest first, with
/// consecutive numbers ending at `last`.
#[derive(Default)]
struct Log {
    last: u64,
    kept: VecDeque<Kept>,
}

/// How many messages and bytes the history keeps now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HistoryStats {
    /// Topics with at least one kept message.
    pub(crate) topics: u64,
    /// Messages kept.
    pub(crate) messages: u64,
    /// Their bytes (texts and entries).
    pub(crate) bytes: u64,
}

/// A subscribe's `recover` and `snapshot`, checked by the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resume {
    /// The epoch and the last seq the client saw of each topic, if it asks to recover.
    pub(crate) recover: Option<(String, Vec<(String, u64)>)>,
    /// The latest message of every matching topic not recovered.
    pub(crate) snapshot: bool,
}

/// A client's `recover` for a subscribe to `pattern`, checked: `seq` for an exact topic,
/// `positions` of topics the pattern matches. The error is the text to send.
pub(crate) fn positions(
    pattern: &Pattern,
    recover: Recover,
) -> Result<(String, Vec<(String, u64)>), String> {
    let positions = match (recover.seq, recover.positions) {
        (Some(seq), _) if pattern.is_exact() => vec![(pattern.as_str().to_owned(), seq)],
        (Some(_), _) => {
            return Err(format!(
                "`recover.seq` is for an exact topic; {:?} is a pattern: give `recover.positions`",
                pattern.as_str()
            ))
        }
        (None, Some(positions)) if positions.len() > MAX_POSITIONS => {
            return Err(format!(
                "`recover.positions` lists {} topics; at most {MAX_POSITIONS}",
                positions.len()
            ))
        }
        (None, Some(positions)) => positions.into_iter().collect(),
        (None, None) => Vec::new(),
    };
    if let Some((topic, _)) = positions.iter().find(|(topic, _)| !pattern.matches(topic)) {
        return Err(format!(
            "`recover.positions` names {topic:?}, which {:?} does not match",
            pattern.as_str()
        ));
    }
    Ok((recover.epoch, positions))
}

/// What [`History::resume`] found: the ack's fields and the frames to send after it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Resumed {
    /// For an exact topic: its last `seq` (0 if none).
    pub(crate) seq: Option<u64>,
    /// Whether every position was recovered, if recovery was asked for.
    pub(crate) recovered: Option<bool>,
    /// The listed topics that were not recovered.
    pub(crate) unrecovered: Vec<String>,
    /// Replayed messages, then snapshot messages, in sending order, with their topics.
    pub(crate) frames: Vec<(Arc<str>, ByteString)>,
    /// Of `frames`, how many are replayed (the rest are snapshots).
    pub(crate) replayed: usize,
}

/// See the module docs.
pub(crate) struct History {
    limits: Limits,
    epoch: Arc<str>,
    table: TopicMap<Log>,
    /// Every new topic's seq starts after this: the highest seq of a forgotten topic.
    floor: u64,
    messages: usize,
    bytes: usize,
}

impl History {
    /// An empty history under `epoch` (from [`new_epoch`]).
    pub(crate) fn new(limits: Limits, epoch: Arc<str>) -> History {
        History {
            limits,
            epoch,
            table: TopicMap::new(limits.topics.0, limits.topics.1),
            floor: 0,
            messages: 0,
            bytes: 0,
        }
    }

    /// Whether messages are kept (`history_size` > 0).
    pub(crate) fn keeps(&self) -> bool {
        self.limits.size > 0 && self.limits.max_bytes > 0
    }

    /// The name of this sequence space.
    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The `seq` the next broadcast of `topic` gets. Does not take it: see
    /// [`record`](Self::record).
    pub(crate) fn next_seq(&self, topic: &str) -> u64 {
        self.table.get(topic).map_or(self.floor, |log| log.last) + 1
    }

    /// The last `seq` of `topic`: the next one is this + 1. For a topic without one, the
    /// floor (0 until a topic was forgotten).
    pub(crate) fn last_seq(&self, topic: &str) -> u64 {
        self.table.get(topic).map_or(self.floor, |log| log.last)
    }

    /// Takes `seq` (from [`next_seq`](Self::next_seq)) as `topic`'s last, and keeps
    /// `text` as that message if there is one and history is on. `subscribed` says
    /// whether a topic has subscribers, for making room in the table (see the module
    /// docs).
    pub(crate) fn record(
        &mut self,
        topic: &str,
        seq: u64,
        text: Option<&ByteString>,
        now: Instant,
        subscribed: impl Fn(&str) -> bool,
    ) {
        if self.table.get(topic).is_none() {
            if self.table.is_full(topic) {
                self.make_room(&subscribed);
            }
            self.table.insert(topic, Log::default());
        }
        let limits = self.limits;
        let Some(log) = self.table.get_mut(topic) else {
            return;
        };
        log.last = seq;
        let Some(text) = text.filter(|_| limits.size > 0 && limits.max_bytes > 0) else {
            if !log.kept.is_empty() {
                // A message not kept: those before it can no longer be replayed up to now.
                drop_front(log, log.kept.len(), &mut self.messages, &mut self.bytes);
            }
            return;
        };
        if log.kept.back().is_some_and(|kept| kept.seq + 1 != seq) {
            // Not consecutive (cannot happen through the hub): start again.
            drop_front(log, log.kept.len(), &mut self.messages, &mut self.bytes);
        }
        log.kept.push_back(Kept {
            seq,
            at: now,
            text: text.clone(),
        });
        self.messages += 1;
        self.bytes += text.len() + ENTRY_BYTES;
        let over = log.kept.len().saturating_sub(limits.size);
        drop_front(log, over, &mut self.messages, &mut self.bytes);
        // Expiry by age is the hub's tick's (`expire`), and a resume's: not per message.
        if self.bytes > limits.max_bytes {
            self.shrink();
        }
    }

    /// Drops every message older than `history_ttl`.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.messages == 0 {
            return;
        }
        let ttl = self.limits.ttl;
        for log in self.table.values_mut() {
            expire_log(log, now, ttl, &mut self.messages, &mut self.bytes);
        }
    }

    /// How much is kept now (the topics counted over the table: a metrics call's cost).
    pub(crate) fn stats(&self) -> HistoryStats {
        let topics = self
            .table
            .iter()
            .filter(|(_, log)| !log.kept.is_empty())
            .count();
        HistoryStats {
            topics: topics as u64,
            messages: self.messages as u64,
            bytes: self.bytes as u64,
        }
    }

    /// Answers a subscribe to `pattern` with `resume` (see the module docs), at `now`.
    /// `budget` bounds the bytes of texts replayed: a position whose replay would pass it
    /// is not recovered (it gets a snapshot, if asked), so that a replay never makes the
    /// session a slow consumer; likewise for the snapshot messages.
    pub(crate) fn resume(
        &mut self,
        pattern: &Pattern,
        resume: &Resume,
        now: Instant,
        budget: usize,
    ) -> Resumed {
        let exact = pattern.is_exact();
        let mut resumed = Resumed {
            seq: exact.then(|| self.last_seq(pattern.as_str())),
            ..Resumed::default()
        };
        if !resume.snapshot && resume.recover.is_none() {
            return resumed;
        }
        let mut recovered_topics: HashSet<&str> = HashSet::new();
        if let Some((epoch, positions)) = &resume.recover {
            let same_epoch = **epoch == *self.epoch && self.keeps();
            let mut left = budget;
            for (topic, seq) in positions {
                self.expire_topic(topic, now);
                let missed = self.replay(topic, *seq).filter(|missed| {
                    let bytes: usize = missed.iter().map(|text| text.len()).sum();
                    let fits = same_epoch && bytes <= left;
                    if fits {
                        left -= bytes;
                    }
                    fits
                });
                match missed {
                    Some(missed) => {
                        let name: Arc<str> = topic.as_str().into();
                        resumed
                            .frames
                            .extend(missed.into_iter().map(|text| (name.clone(), text)));
                        recovered_topics.insert(topic);
                    }
                    None => resumed.unrecovered.push(topic.clone()),
                }
            }
            // Another epoch is never recovered, even with no position listed: the client
            // learns that the server restarted.
            resumed.recovered = Some(same_epoch && resumed.unrecovered.is_empty());
            if exact {
                // The ack's `recovered` says it all.
                resumed.unrecovered.clear();
            }
        }
        resumed.replayed = resumed.frames.len();
        if resume.snapshot && self.limits.size > 0 {
            let ttl = self.limits.ttl;
            // The latest of a topic, unless it expired (and all before it with it).
            fn fresh(log: &Log, now: Instant, ttl: Duration) -> Option<&Kept> {
                log.kept
                    .back()
                    .filter(|kept| now.saturating_duration_since(kept.at) < ttl)
            }
            let mut latest: Vec<(&str, &ByteString)> = Vec::new();
            if exact {
                if let Some(kept) = self
                    .table
                    .get(pattern.as_str())
                    .and_then(|log| fresh(log, now, ttl))
                {
                    latest.push((pattern.as_str(), &kept.text));
                }
            } else {
                // Every topic is looked at: a snapshot of a pattern costs O(topics kept).
                latest.extend(self.table.iter().filter_map(|(topic, log)| {
                    let kept = fresh(log, now, ttl)?;
                    pattern.matches(topic).then_some((topic, &kept.text))
                }));
                latest.sort_unstable_by_key(|(topic, _)| *topic);
            }
            let mut left =
                budget.saturating_sub(resumed.frames.iter().map(|(_, text)| text.len()).sum());
            resumed.frames.extend(
                latest
                    .into_iter()
                    .filter(|(topic, _)| !recovered_topics.contains(topic))
                    .take_while(|(_, text)| {
                        let fits = text.len() <= left;
                        left = left.saturating_sub(text.len());
                        fits
                    })
                    .map(|(topic, text)| (topic.into(), protocol::snapshot_json(text))),
            );
        }
        resumed
    }

    /// Drops the messages of `topic` older than `history_ttl`.
    fn expire_topic(&mut self, topic: &str, now: Instant) {
        let ttl = self.limits.ttl;
        if let Some(log) = self.table.get_mut(topic) {
            expire_log(log, now, ttl, &mut self.messages, &mut self.bytes);
        }
    }

    /// The messages of `topic` after `seq`, if all of them are kept (none: `seq` is its
    /// last).
    fn replay(&self, topic: &str, seq: u64) -> Option<Vec<ByteString>> {
        let Some(log) = self.table.get(topic) else {
            // Never numbered, or forgotten: a client at the floor missed nothing (every
            // forgotten topic ended at or below it, and the next message is above it).
            return (seq == self.floor).then(Vec::new);
        };
        if seq > log.last {
            return None;
        }
        let skip = match log.kept.front() {
            _ if seq == log.last => return Some(Vec::new()),
            Some(front) if front.seq <= seq + 1 => (seq + 1 - front.seq) as usize,
            _ => return None,
        };
        Some(log.kept.iter().skip(skip).map(|k| k.text.clone()).collect())
    }

    /// The table is full: forgets the topics nobody is subscribed to, and all if the
    /// subscribed ones still fill half of it.
    fn make_room(&mut self, subscribed: &impl Fn(&str) -> bool) {
        let before = self.table.len();
        self.forget(|topic| !subscribed(topic));
        tracing::debug!(
            forgotten = before - self.table.len(),
            "forgot the seq and history of topics without subscribers"
        );
        let (max_topics, max_bytes) = self.limits.topics;
        if self.table.len() * 2 >= max_topics || self.table.bytes() * 2 >= max_bytes {
            tracing::warn!(
                topics = self.table.len(),
                bytes = self.table.bytes(),
                "subscribed topics fill half the seq table ({max_topics} topics, {max_bytes} bytes of names): every topic's seq and history are forgotten"
            );
            self.forget(|_| true);
        }
    }

    /// Forgets the topics for which `forget` is true, raising the floor past their seqs.
    fn forget(&mut self, forget: impl Fn(&str) -> bool) {
        let (floor, messages, bytes) = (&mut self.floor, &mut self.messages, &mut self.bytes);
        self.table.retain(|topic, log| {
            if !forget(topic) {
                return true;
            }
            *floor = (*floor).max(log.last);
            drop_front(log, log.kept.len(), messages, bytes);
            false
        });
    }

    /// Over `history_max_bytes`: drops the oldest messages of all topics until three
    /// quarters of it are left (so that the next shrink is a quarter away).
    fn shrink(&mut self) {
        let target = self.limits.max_bytes / 4 * 3;
        // The oldest message of each topic, oldest first.
        let mut fronts: BinaryHeap<Front> = self
            .table
            .iter()
            .filter_map(|(topic, log)| {
                let front = log.kept.front()?;
                Some((std::cmp::Reverse((front.at, front.seq)), topic.into()))
            })
            .collect();
        while self.bytes > target {
            let Some((_, topic)) = fronts.pop() else {
                break;
            };
            let Some(log) = self.table.get_mut(&topic) else {
                continue;
            };
            drop_front(log, 1, &mut self.messages, &mut self.bytes);
            if let Some(front) = log.kept.front() {
                fronts.push((std::cmp::Reverse((front.at, front.seq)), topic));
            }
        }
    }
}

/// A topic's oldest kept message, in a heap that pops the oldest of all first.
type Front = (std::cmp::Reverse<(Instant, u64)>, Box<str>);

/// Drops the `count` oldest messages of `log`.
fn drop_front(log: &mut Log, count: usize, messages: &mut usize, bytes: &mut usize) {
    for kept in log.kept.drain(..count.min(log.kept.len())) {
        *messages -= 1;
        *bytes -= kept.text.len() + ENTRY_BYTES;
    }
}

/// Drops the messages of `log` older than `ttl`.
fn expire_log(log: &mut Log, now: Instant, ttl: Duration, messages: &mut usize, bytes: &mut usize) {
    let old = log
        .kept
        .iter()
        .take_while(|kept| now.saturating_duration_since(kept.at) >= ttl)
        .count();
    drop_front(log, old, messages, bytes);
}

/// A random epoch: 12 characters of base 32 (60 random bits).
pub(crate) fn new_epoch() -> String {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut bits = crate::util::random::u64();
    (0..12)
        .map(|_| {
            let digit = DIGITS[(bits & 31) as usize];
            bits >>= 5;
            char::from(digit)
        })
        .collect()
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
