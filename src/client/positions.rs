//! The last `seq` the client saw of each topic, in which epoch: what a re-subscribe
//! recovers from, and how a message is judged (in order, a gap, a duplicate).

use std::collections::{BTreeMap, HashMap};

use crate::websocket::protocol::Recover;
use crate::Pattern;

/// How a message's `seq` compares with the last one seen of its topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// The next one, or the first one seen.
    InOrder,
    /// Messages `from..=to` were not seen.
    Gap { from: u64, to: u64 },
    /// Seen already: not delivered again.
    Duplicate,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Positions {
    /// The epoch the positions are in; `None` before the first ack.
    epoch: Option<String>,
    seqs: HashMap<String, u64>,
}

impl Positions {
    /// The `recover` of a re-subscribe to `pattern`; `None` before any position exists.
    pub(super) fn recover(&self, pattern: &Pattern) -> Option<Recover> {
        let epoch = self.epoch.clone()?;
        Some(if pattern.is_exact() {
            Recover {
                epoch,
                seq: Some(self.seqs.get(pattern.as_str()).copied().unwrap_or(0)),
                positions: None,
            }
        } else {
            let positions: BTreeMap<String, u64> = self
                .seqs
                .iter()
                .filter(|(topic, _)| pattern.matches(topic))
                .map(|(topic, seq)| (topic.clone(), *seq))
                .collect();
            Recover {
                epoch,
                seq: None,
                positions: Some(positions),
            }
        })
    }

    /// A welcome, after the re-subscribes were sent (with the positions as they were):
    /// in another epoch (the server restarted), every position starts again from what
    /// comes now, and those re-subscribes are answered "not recovered".
    pub(super) fn welcomed(&mut self, epoch: &str) {
        if self.epoch.as_deref().is_some_and(|known| known != epoch) {
            self.seqs.clear();
            self.epoch = Some(epoch.to_owned());
        }
    }

    /// The server acknowledged a subscribe to `pattern` that asked `recover` (if any);
    /// `ack.seq` is an exact topic's last. Returns the topics not recovered, if recovery
    /// was asked.
    pub(super) fn acked(
        &mut self,
        pattern: &Pattern,
        recover: Option<&Recover>,
        ack: Ack<'_>,
    ) -> Option<Vec<String>> {
        let unrecovered = recover.map(|asked| {
            let lost: Vec<String> = match ack.recovered {
                Some(true) => Vec::new(),
                _ if pattern.is_exact() => vec![pattern.as_str().to_owned()],
                _ => ack.unrecovered.to_vec(),
            };
            // What was not recovered starts again from what comes now (a snapshot, or a
            // live message); after an epoch change, everything did at the welcome.
            if self.epoch.as_deref() == Some(asked.epoch.as_str()) {
                for topic in &lost {
                    self.seqs.remove(topic);
                }
            }
            lost
        });
        if self.epoch.is_none() {
            self.epoch = ack.epoch.map(str::to_owned);
        }
        if let (Some(seq), true) = (ack.seq, pattern.is_exact()) {
            // Live messages follow this seq (a replay, if any, comes first and moves it
            // on; a snapshot is this seq's message, delivered all the same).
            self.seqs.entry(pattern.as_str().to_owned()).or_insert(seq);
        }
        unrecovered
    }

    /// A message of `topic` numbered `seq` arrived; `gaps` is false where gaps are
    /// expected (a conflated subscription, or a snapshot). A snapshot is never a
    /// duplicate: a new subscription asked for it (the position does not go back).
    pub(super) fn seen(&mut self, topic: &str, seq: u64, gaps: bool, snapshot: bool) -> Seen {
        let seen = match self.seqs.get(topic) {
            Some(&last) if seq <= last && snapshot => return Seen::InOrder,
            Some(&last) if seq <= last => return Seen::Duplicate,
            Some(&last) if seq > last + 1 && gaps => Seen::Gap {
                from: last + 1,
                to: seq - 1,
            },
            _ => Seen::InOrder,
        };
        match self.seqs.get_mut(topic) {
            Some(last) => *last = seq,
            None => {
                self.seqs.insert(topic.to_owned(), seq);
            }
        }
        seen
    }

    /// Forgets the topics none of `patterns` matches (after an unsubscribe).
    pub(super) fn keep_matching<'a>(
        &mut self,
        patterns: impl Iterator<Item = &'a Pattern> + Clone,
    ) {
        self.seqs
            .retain(|topic, _| patterns.clone().any(|p| p.matches(topic)));
    }
}

/// The fields of a subscribe's ack that positions depend on.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Ack<'a> {
    pub(super) epoch: Option<&'a str>,
    pub(super) seq: Option<u64>,
    pub(super) recovered: Option<bool>,
    pub(super) unrecovered: &'a [String],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    fn ack<'a>(epoch: &'a str, seq: Option<u64>, recovered: Option<bool>) -> Ack<'a> {
        Ack {
            epoch: Some(epoch),
            seq,
            recovered,
            unrecovered: &[],
        }
    }

    #[test]
    fn positions_follow_acks_and_messages_and_judge_each_seq() {
        let mut p = Positions::default();
        let exact = pattern("px.eur");
        assert_eq!(p.recover(&exact), None, "nothing to recover from yet");
        assert_eq!(p.acked(&exact, None, ack("e1", Some(4), None)), None);
        assert_eq!(p.seen("px.eur", 5, true, false), Seen::InOrder);
        assert_eq!(p.seen("px.eur", 5, true, false), Seen::Duplicate);
        assert_eq!(
            p.seen("px.eur", 8, true, false),
            Seen::Gap { from: 6, to: 7 }
        );
        assert_eq!(
            p.seen("px.eur", 10, false, false),
            Seen::InOrder,
            "gaps not reported"
        );
        assert_eq!(
            p.seen("px.eur", 10, false, true),
            Seen::InOrder,
            "a snapshot again"
        );
        let recover = p.recover(&exact).unwrap();
        assert_eq!((recover.epoch.as_str(), recover.seq), ("e1", Some(10)));
        // A pattern recovers from the topics it matches.
        assert_eq!(p.seen("px.usd", 2, true, false), Seen::InOrder);
        assert_eq!(p.seen("fx.usd", 9, true, false), Seen::InOrder);
        let recover = p.recover(&pattern("px.*")).unwrap();
        assert_eq!(
            recover.positions.unwrap().into_iter().collect::<Vec<_>>(),
            [("px.eur".to_owned(), 10), ("px.usd".to_owned(), 2)]
        );
    }

    #[test]
    fn what_was_not_recovered_starts_again() {
        let mut p = Positions::default();
        let all = pattern("px.*");
        p.acked(&all, None, ack("e1", None, None));
        p.seen("px.a", 3, true, false);
        p.seen("px.b", 7, true, false);
        let asked = p.recover(&all).unwrap();
        let lost = ["px.b".to_owned()];
        let partly = Ack {
            unrecovered: &lost,
            ..ack("e1", None, Some(false))
        };
        assert_eq!(
            p.acked(&all, Some(&asked), partly),
            Some(vec!["px.b".to_owned()])
        );
        assert_eq!(
            p.seen("px.b", 2, true, false),
            Seen::InOrder,
            "its position was dropped"
        );
        assert_eq!(p.seen("px.a", 3, true, false), Seen::Duplicate, "kept");
        // Another epoch at the welcome: every position goes; the ack of the re-subscribe
        // made with the old epoch changes nothing more.
        let asked = p.recover(&all).unwrap();
        p.welcomed("e2");
        let lost = ["px.a".to_owned()];
        let refused = Ack {
            unrecovered: &lost,
            ..ack("e2", None, Some(false))
        };
        assert_eq!(
            p.acked(&all, Some(&asked), refused),
            Some(vec!["px.a".to_owned()])
        );
        assert_eq!(p.seen("px.a", 1, true, false), Seen::InOrder);
        assert_eq!(p.seen("px.a", 1, true, false), Seen::Duplicate);
        assert_eq!(p.recover(&all).unwrap().epoch, "e2");
        p.welcomed("e2");
        assert_eq!(
            p.seen("px.a", 1, true, false),
            Seen::Duplicate,
            "the same epoch keeps them"
        );
    }

    #[test]
    fn an_unsubscribe_forgets_the_topics_no_subscription_matches() {
        let mut p = Positions::default();
        p.seen("a.1", 1, true, false);
        p.seen("b.1", 1, true, false);
        let left = [pattern("a.*")];
        p.keep_matching(left.iter());
        assert_eq!(p.seen("b.1", 1, true, false), Seen::InOrder, "forgotten");
        assert_eq!(p.seen("a.1", 1, true, false), Seen::Duplicate);
    }
}
