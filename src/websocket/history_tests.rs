use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::*;

const EPOCH: &str = "e1";
/// Bytes a resume may send (half of `max_queued_bytes`).
const BUDGET: usize = 8 << 20;

fn limits(size: usize) -> Limits {
    Limits {
        size,
        ttl: Duration::from_secs(300),
        max_bytes: 64 << 20,
        topics: (100_000, 8 << 20),
    }
}

fn history(limits: Limits) -> History {
    History::new(limits, EPOCH.into())
}

/// The text the hub would keep for message `seq` of `topic`.
fn text(topic: &str, seq: u64) -> ByteString {
    format!(r#"{{"type":"message","topic":"{topic}","seq":{seq}}}"#).into()
}

/// Broadcasts the next message of `topic` at `at`; nobody is subscribed to anything.
fn publish(history: &mut History, topic: &str, at: Instant) -> u64 {
    let seq = history.next_seq(topic);
    history.record(topic, seq, Some(&text(topic, seq)), at, |_| false);
    seq
}

fn pattern(text: &str) -> Pattern {
    Pattern::parse(text).unwrap()
}

fn recover(epoch: &str, positions: &[(&str, u64)]) -> Resume {
    Resume {
        recover: Some((
            epoch.to_owned(),
            positions.iter().map(|(t, s)| (t.to_string(), *s)).collect(),
        )),
        snapshot: false,
    }
}

/// The frames of a resume, as (topic, text).
fn frames(resumed: &Resumed) -> Vec<(String, String)> {
    resumed
        .frames
        .iter()
        .map(|(topic, text)| (topic.to_string(), text.to_string()))
        .collect()
}

fn replayed(topic: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<(String, String)> {
    seqs.map(|seq| (topic.to_owned(), text(topic, seq).to_string()))
        .collect()
}

#[test]
fn each_topic_numbers_its_messages_from_one() {
    let mut h = history(limits(0));
    let now = Instant::now();
    assert_eq!(h.next_seq("a"), 1);
    assert_eq!(h.next_seq("a"), 1, "asking takes nothing");
    h.record("a", 1, None, now, |_| false);
    assert_eq!(h.next_seq("a"), 2);
    h.record("a", 2, None, now, |_| false);
    assert_eq!((h.next_seq("a"), h.next_seq("b")), (3, 1));
    assert_eq!((h.last_seq("a"), h.last_seq("b")), (2, 0));
    assert_eq!(h.stats(), HistoryStats::default(), "size 0 keeps nothing");
}

#[test]
fn an_exact_recovery_replays_what_was_missed_in_order() {
    let mut h = history(limits(100));
    let now = Instant::now();
    for _ in 0..10 {
        publish(&mut h, "px.eur", now);
    }
    publish(&mut h, "px.usd", now);
    let resumed = h.resume(
        &pattern("px.eur"),
        &recover(EPOCH, &[("px.eur", 7)]),
        now,
        BUDGET,
    );
    assert_eq!(resumed.recovered, Some(true));
    assert_eq!(resumed.seq, Some(10));
    assert_eq!(frames(&resumed), replayed("px.eur", 8..=10));
    assert_eq!(resumed.replayed, 3);
    // Nothing missed; from the start (0: nothing seen); from the future.
    let mut upto = |seq| h_resume(&mut h, "px.eur", seq, now);
    assert_eq!(upto(10), (Some(true), 0));
    assert_eq!(upto(0), (Some(true), 10));
    assert_eq!(upto(11), (Some(false), 0));
}

fn h_resume(h: &mut History, topic: &str, seq: u64, now: Instant) -> (Option<bool>, usize) {
    let resumed = h.resume(
        &pattern(topic),
        &recover(EPOCH, &[(topic, seq)]),
        now,
        BUDGET,
    );
    (resumed.recovered, resumed.frames.len())
}

#[test]
fn another_epoch_or_a_position_the_history_no_longer_holds_is_not_recovered() {
    let mut h = history(limits(5));
    let now = Instant::now();
    for _ in 0..10 {
        publish(&mut h, "a", now);
    }
    assert_eq!(h.stats().messages, 5, "6..=10 kept");
    let other = h.resume(&pattern("a"), &recover("e0", &[("a", 9)]), now, BUDGET);
    assert_eq!((other.recovered, other.frames.len()), (Some(false), 0));
    assert_eq!(h_resume(&mut h, "a", 5, now), (Some(true), 5), "6 is kept");
    assert_eq!(h_resume(&mut h, "a", 4, now), (Some(false), 0), "5 is gone");
    // A topic never published: nothing missed from 0, but not from a later seq.
    assert_eq!(h_resume(&mut h, "b", 0, now), (Some(true), 0));
    assert_eq!(h_resume(&mut h, "b", 3, now), (Some(false), 0));
}

#[test]
fn a_pattern_recovers_each_listed_topic_and_names_the_ones_it_could_not() {
    let mut h = history(limits(3));
    let now = Instant::now();
    for topic in ["m.a", "m.a", "m.b", "m.b", "m.b", "m.b", "m.b", "x"] {
        publish(&mut h, topic, now);
    }
    let resumed = h.resume(
        &pattern("m.*"),
        &recover(EPOCH, &[("m.a", 1), ("m.b", 1)]),
        now,
        BUDGET,
    );
    assert_eq!(resumed.seq, None, "a pattern has no single seq");
    assert_eq!(resumed.recovered, Some(false));
    assert_eq!(resumed.unrecovered, ["m.b"], "m.b keeps 3..=5 only");
    assert_eq!(frames(&resumed), replayed("m.a", 2..=2));
    let all = h.resume(
        &pattern("m.*"),
        &recover(EPOCH, &[("m.a", 0), ("m.b", 2)]),
        now,
        BUDGET,
    );
    assert_eq!(all.recovered, Some(true));
    let mut expected = replayed("m.a", 1..=2);
    expected.extend(replayed("m.b", 3..=5));
    assert_eq!(frames(&all), expected);
}

#[test]
fn a_snapshot_is_the_latest_of_each_matching_topic_not_recovered() {
    let mut h = history(limits(10));
    let now = Instant::now();
    for topic in ["m.b", "m.a", "m.b", "x.a", "m.c", "m.c"] {
        publish(&mut h, topic, now);
    }
    let snapshot = Resume {
        recover: None,
        snapshot: true,
    };
    let flagged = |topic: &str, seq| {
        let text = text(topic, seq);
        (
            topic.to_owned(),
            text[..text.len() - 1].to_owned() + r#","snapshot":true}"#,
        )
    };
    let resumed = h.resume(&pattern("m.*"), &snapshot, now, BUDGET);
    assert_eq!(
        frames(&resumed),
        [flagged("m.a", 1), flagged("m.b", 2), flagged("m.c", 2)],
        "ordered by topic"
    );
    assert_eq!((resumed.replayed, resumed.recovered), (0, None));
    let exact = h.resume(&pattern("x.a"), &snapshot, now, BUDGET);
    assert_eq!(
        (frames(&exact), exact.seq),
        (vec![flagged("x.a", 1)], Some(1))
    );
    // With recover: m.b recovered (its missed message), m.a and m.c as snapshots.
    let both = Resume {
        snapshot: true,
        ..recover(EPOCH, &[("m.b", 1)])
    };
    let resumed = h.resume(&pattern("m.*"), &both, now, BUDGET);
    assert_eq!(resumed.recovered, Some(true));
    let mut expected = replayed("m.b", 2..=2);
    expected.extend([flagged("m.a", 1), flagged("m.c", 2)]);
    assert_eq!(frames(&resumed), expected);
    assert_eq!(resumed.replayed, 1);
}

#[test]
fn kept_messages_expire_after_the_ttl() {
    let mut h = history(Limits {
        ttl: Duration::from_secs(10),
        ..limits(100)
    });
    let t0 = Instant::now();
    publish(&mut h, "a", t0);
    publish(&mut h, "a", t0 + Duration::from_secs(5));
    publish(&mut h, "b", t0 + Duration::from_secs(6));
    let at = |s| t0 + Duration::from_secs(s);
    assert_eq!(h_resume(&mut h, "a", 0, at(9)), (Some(true), 2));
    assert_eq!(
        h_resume(&mut h, "a", 0, at(10)),
        (Some(false), 0),
        "1 expired"
    );
    assert_eq!(h_resume(&mut h, "a", 1, at(10)), (Some(true), 1));
    h.expire(at(16));
    assert_eq!(h.stats(), HistoryStats::default(), "all expired");
    assert_eq!(
        h_resume(&mut h, "a", 2, at(16)),
        (Some(true), 0),
        "nothing missed"
    );
    assert_eq!(h_resume(&mut h, "a", 1, at(16)), (Some(false), 0));
    assert_eq!(h.next_seq("a"), 3, "the seq outlives the history");
}

#[test]
fn history_size_zero_recovers_nothing() {
    let mut h = history(limits(0));
    let now = Instant::now();
    h.record("a", 1, Some(&text("a", 1)), now, |_| false);
    let resumed = h.resume(&pattern("a"), &recover(EPOCH, &[("a", 1)]), now, BUDGET);
    assert_eq!((resumed.recovered, resumed.seq), (Some(false), Some(1)));
    let snapshot = Resume {
        recover: None,
        snapshot: true,
    };
    assert!(h
        .resume(&pattern("a"), &snapshot, now, BUDGET)
        .frames
        .is_empty());
}

#[test]
fn all_topics_together_keep_at_most_max_bytes_dropping_the_oldest_first() {
    let entry = text("t.0", 1).len() + ENTRY_BYTES;
    let mut h = history(Limits {
        max_bytes: entry * 8,
        ..limits(100)
    });
    let t0 = Instant::now();
    // a, b, c, a, b, c, … one millisecond apart: the oldest are the first published.
    for i in 0..9 {
        let topic = ["t.0", "t.1", "t.2"][i % 3];
        publish(&mut h, topic, t0 + Duration::from_millis(i as u64));
    }
    // The ninth passed 8 entries: shrunk to 3/4 of the bound, 6 entries, the newest.
    let stats = h.stats();
    assert_eq!((stats.messages, stats.bytes), (6, (6 * entry) as u64));
    assert_eq!(stats.topics, 3);
    let now = t0 + Duration::from_millis(10);
    assert_eq!(
        h_resume(&mut h, "t.0", 1, now),
        (Some(true), 2),
        "4 and 7 kept"
    );
    assert_eq!(
        h_resume(&mut h, "t.0", 0, now),
        (Some(false), 0),
        "1 dropped"
    );
    assert_eq!(h_resume(&mut h, "t.2", 1, now), (Some(true), 2));
}

#[test]
fn a_full_table_forgets_unsubscribed_topics_which_continue_above_the_floor() {
    let mut h = history(Limits {
        topics: (3, 1000),
        ..limits(10)
    });
    let now = Instant::now();
    let subscribed = |topic: &str| topic == "keep";
    for (topic, seq) in [("a.1", 4), ("a.2", 7), ("keep", 5)] {
        h.record(topic, seq, None, now, subscribed);
    }
    h.record("b", 1, None, now, subscribed); // a fourth topic: a.1 and a.2 are idle
    assert_eq!(
        ["keep", "b", "a.1", "a.2", "new"].map(|t| h.next_seq(t)),
        [6, 2, 8, 8, 8],
        "new topics start above 7, the highest forgotten seq"
    );
    // A forgotten topic answers the floor as its seq: a client there missed nothing
    // (the next message is 8); one below it may have, and is not recovered.
    assert_eq!(h.last_seq("a.2"), 7);
    assert_eq!(h_resume(&mut h, "a.2", 7, now), (Some(true), 0));
    assert_eq!(
        h_resume(&mut h, "a.1", 4, now),
        (Some(false), 0),
        "5..7 may be lost"
    );
    assert_eq!(h_resume(&mut h, "a.2", 0, now), (Some(false), 0));
    // The new a.2 continues above the floor, and a client at the floor gets all of it.
    let seq = h.next_seq("a.2");
    h.record("a.2", seq, Some(&text("a.2", seq)), now, subscribed);
    assert_eq!(h_resume(&mut h, "a.2", 7, now), (Some(true), 1));
}

#[test]
fn a_resume_sends_at_most_its_budget_and_never_recovers_across_epochs() {
    let mut h = history(limits(100));
    let now = Instant::now();
    for _ in 0..10 {
        publish(&mut h, "big.a", now);
        publish(&mut h, "big.b", now);
    }
    let one = text("big.a", 1).len();
    // Room for big.a's 5 missed (6..=10: 5 texts, one a digit longer), not big.b's too.
    let resume = recover(EPOCH, &[("big.a", 5), ("big.b", 5)]);
    let both = Resume {
        snapshot: true,
        ..resume.clone()
    };
    let resumed = h.resume(&pattern("big.*"), &both, now, one * 7);
    assert_eq!(
        (resumed.recovered, resumed.unrecovered.clone()),
        (Some(false), vec!["big.b".to_owned()])
    );
    assert_eq!(resumed.replayed, 5, "big.a replayed");
    assert_eq!(
        resumed.frames.len(),
        6,
        "and big.b's latest as a snapshot, which fits"
    );
    let tight = h.resume(&pattern("big.*"), &both, now, one * 5 + 1);
    assert_eq!(
        (tight.replayed, tight.frames.len()),
        (5, 5),
        "no room for the snapshot"
    );
    // Another epoch: not recovered, even with nothing listed.
    let nothing = h.resume(&pattern("big.*"), &recover("e0", &[]), now, BUDGET);
    assert_eq!(nothing.recovered, Some(false));
    assert_eq!(
        h.resume(&pattern("big.*"), &recover(EPOCH, &[]), now, BUDGET)
            .recovered,
        Some(true)
    );
}

#[test]
fn a_table_half_full_of_subscribed_topics_forgets_them_all() {
    let mut h = history(Limits {
        topics: (4, 1000),
        ..limits(10)
    });
    let now = Instant::now();
    for topic in ["t1", "t2", "t3", "t4"] {
        publish(&mut h, topic, now);
    }
    h.record("t5", 1, Some(&text("t5", 1)), now, |_| true);
    assert_eq!(h.stats().messages, 1, "t1..t4 and their history forgotten");
    assert_eq!(h.stats().topics, 1);
    assert_eq!(["t1", "t5"].map(|t| h.next_seq(t)), [2, 2]);
    // By the bytes of the names: 4 + 4 of 8, subscribed, is half or more.
    let mut h = history(Limits {
        topics: (100, 8),
        ..limits(10)
    });
    for (topic, seq) in [("aaaa", 2), ("bbbb", 5), ("cc", 1)] {
        h.record(topic, seq, None, now, |_| true);
    }
    assert_eq!(h.next_seq("cc"), 2, "cc is kept");
    assert_eq!(
        h.next_seq("aaaa"),
        6,
        "forgotten with bbbb: above the floor of 5"
    );
}

#[test]
fn epochs_are_random() {
    let epochs: std::collections::HashSet<String> = (0..100).map(|_| new_epoch()).collect();
    assert_eq!(epochs.len(), 100);
    assert!(epochs
        .iter()
        .all(|e| e.len() == 12 && e.bytes().all(|b| b.is_ascii_alphanumeric())));
}

#[test]
fn positions_must_fit_the_subscription() {
    let recover = |seq: Option<u64>, positions: Option<&[(&str, u64)]>| Recover {
        epoch: EPOCH.into(),
        seq,
        positions: positions.map(|p| p.iter().map(|(t, s)| (t.to_string(), *s)).collect()),
    };
    assert_eq!(
        positions(&pattern("a.b"), recover(Some(3), None)),
        Ok((EPOCH.to_owned(), vec![("a.b".to_owned(), 3)]))
    );
    assert!(positions(&pattern("a.*"), recover(Some(3), None))
        .unwrap_err()
        .contains("positions"));
    assert_eq!(
        positions(
            &pattern("a.*"),
            recover(None, Some(&[("a.x", 1), ("a.y", 2)]))
        ),
        Ok((
            EPOCH.to_owned(),
            vec![("a.x".to_owned(), 1), ("a.y".to_owned(), 2)]
        ))
    );
    let outside = positions(&pattern("a.*"), recover(None, Some(&[("b.x", 1)])));
    assert!(outside.unwrap_err().contains("\"b.x\""));
}
