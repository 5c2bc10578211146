//! What a clustered event or message looks like on NATS: its subject, its headers and
//! its payload.
//!
//! - Subject: `<prefix>.ev.<name>` for an EventBus event, `<prefix>.mq.<topic>` for a
//!   MessageQueue message. tickwire's names and patterns are NATS subjects already
//!   (dot-separated tokens, `*` for one token, `>` for the rest), so a subscription's
//!   pattern is its NATS subject under the same prefix.
//! - Header: one, `Tickwire`, with four fields separated by one space: the publishing
//!   process's id of the item, its priority (1..=4), its timestamp (nanoseconds since
//!   the Unix epoch) and its origin (the publishing node, which has no whitespace). One
//!   header rather than four: the client keeps a message's headers in a hash map, built
//!   on every send and every receipt, and one entry costs a quarter of four (a
//!   cross-node delivery spent about a quarter of its instructions on those maps).
//! - Payload: the item's data as JSON, a typed value serialized once, here.
//! - A durable topic's message also carries `Nats-Msg-Id`: origin node, process
//!   incarnation and id, the same for every retry of one publish, so JetStream stores it
//!   once. The durable topics live in one stream per prefix, `<prefix>-durable` (with
//!   what a stream name does not take as `_`), and a consumer group has one durable
//!   consumer per durable pattern its own pattern meets, named by the group and that
//!   filter ([`consumer_name`]).
//! - A node answers for its name on `<prefix>.node.<hash of the name>`
//!   ([`node_subject`], see `presence`).
//!
//! ```text
//! HPUB tickwire.mq.orders.new
//! Tickwire: 42 3 1764680000123456789 gateway-1
//!
//! {"symbol":"BTCUSD","qty":2}
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::{HeaderMap, HeaderName, Subject};
use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::item::{Item, Kind, Name};
use crate::Priority;

/// The header of an item's id, priority, timestamp and origin.
pub(crate) const META: &str = "Tickwire";

/// [`META`] as the client's name of it, made at compile time: a `&str` is parsed, checked
/// and copied on every use, and even `from_static` compares it with every standard name
/// when called at run time.
const META_NAME: HeaderName = HeaderName::from_static(META);

/// Which component's subjects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Space {
    /// EventBus events: `<prefix>.ev.…`.
    Events,
    /// MessageQueue messages: `<prefix>.mq.…`.
    Messages,
}

impl Space {
    fn token(self) -> &'static str {
        match self {
            Space::Events => "ev",
            Space::Messages => "mq",
        }
    }
}

/// The NATS subject of a name or pattern.
pub(crate) fn subject(prefix: &str, space: Space, name: &str) -> String {
    format!("{prefix}.{}.{name}", space.token())
}

/// The subjects of the routes one pump publishes on, each built once: a route's subject
/// is then a reference count, not a `format!` and two copies per item. At most
/// [`Subjects::MAX`] are kept (emptied when full: a feed of ever-new names costs what it
/// did without the cache).
pub(crate) struct Subjects {
    prefix: Arc<str>,
    space: Space,
    made: HashMap<Box<str>, Subject>,
}

impl Subjects {
    /// Routes kept at most.
    pub(crate) const MAX: usize = 4_096;

    /// No subject made yet, for `space` under `prefix`.
    pub(crate) fn new(prefix: Arc<str>, space: Space) -> Subjects {
        Subjects {
            prefix,
            space,
            made: HashMap::new(),
        }
    }

    /// The subject of `route` ([`subject`]).
    pub(crate) fn of(&mut self, route: &str) -> Subject {
        if let Some(made) = self.made.get(route) {
            return made.clone();
        }
        if self.made.len() >= Self::MAX {
            self.made.clear();
        }
        let made = Subject::from(subject(&self.prefix, self.space, route));
        self.made.insert(route.into(), made.clone());
        made
    }
}

/// The name a subject carries, if it is one of `space` under `prefix`.
pub(crate) fn name_of<'a>(prefix: &str, space: Space, subject: &'a str) -> Option<&'a str> {
    subject
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .strip_prefix(space.token())?
        .strip_prefix('.')
}

/// A NATS queue group name for a consumer group, which tickwire names by its pattern and
/// its name (NATS by the queue name alone, across subjects): `<prefix>|<pattern>|<name>`,
/// with what NATS does not take in a queue name (whitespace, control characters) and
/// what would make two groups one (`%`, `|`) percent-encoded, and the wildcards too.
pub(crate) fn queue_name(prefix: &str, pattern: &str, group: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + pattern.len() + group.len() + 2);
    out.push_str(prefix);
    for part in [pattern, group] {
        out.push('|');
        for c in part.chars() {
            if c.is_whitespace() || c.is_control() || matches!(c, '%' | '|' | '*' | '>') {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// The subject on which the node named `node` answers for its name: the name's hash,
/// since a name may hold what a subject token cannot (`.`, `*`, `>`).
pub(crate) fn node_subject(prefix: &str, node: &str) -> String {
    format!("{prefix}.node.{:016x}", fnv1a(node.as_bytes()))
}

/// The JetStream stream of a prefix's durable topics.
pub(crate) fn stream_name(prefix: &str) -> String {
    let safe: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-durable")
}

/// Longest readable part of a consumer name.
const MAX_CONSUMER_NAME: usize = 120;

/// The durable consumer of a consumer group (`pattern`, `group`) for the durable topics
/// matching `filter`: a readable part (each of prefix, pattern, group and filter with
/// what is not an ASCII letter, digit or `-` as `_`, joined by `_`, cut at 120 bytes),
/// then a hash of the exact four, which keeps distinct groups distinct. Only such
/// characters: nats-server 2.9 formats a consumer's name into its acknowledgement
/// subjects with `Sprintf`, so a `%` in it corrupts them. Stable across processes and
/// versions.
pub(crate) fn consumer_name(prefix: &str, pattern: &str, group: &str, filter: &str) -> String {
    let mut name: String = [prefix, pattern, group, filter]
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_CONSUMER_NAME)
        .collect();
    let exact = [prefix, pattern, group, filter].map(|part| part.len().to_string() + ":" + part);
    name.push_str(&format!("_{:016x}", fnv1a(exact.concat().as_bytes())));
    name
}

/// FNV-1a, 64 bits: a hash that every build computes alike.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The `Nats-Msg-Id` of a durable item: the same for every retry of its publish, and
/// unique across nodes and restarts of one (`incarnation` is per process).
pub(crate) fn message_id(origin: &str, incarnation: u64, id: u64) -> String {
    format!("{origin}.{incarnation:x}.{id}")
}

/// An item's headers.
pub(crate) fn headers<K: Kind>(item: &Item<K>, origin: &str) -> HeaderMap {
    let nanos = item
        .timestamp()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    // u64 nanoseconds last until 2554.
    let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
    let mut digits = itoa::Buffer::new();
    let mut value = String::with_capacity(48 + origin.len());
    value.push_str(digits.format(item.id()));
    value.push(' ');
    value.push(char::from(b'0' + item.priority() as u8));
    value.push(' ');
    value.push_str(digits.format(nanos));
    value.push(' ');
    value.push_str(origin);
    let mut headers = HeaderMap::new();
    headers.insert(META_NAME, value);
    headers
}

/// An item's payload: its data as JSON.
pub(crate) fn payload<K: Kind>(item: &Item<K>) -> Result<Bytes, serde_json::Error> {
    serde_json::to_vec(&item.payload_serialize()).map(Bytes::from)
}

/// Why a NATS message is not a tickwire item.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    /// No [`META`] header.
    #[error("no {META} header")]
    Missing,
    /// A [`META`] header whose field does not parse, or with a field missing.
    #[error("the {field} in the {META} header {value:?} is not valid")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// The whole header.
        value: String,
    },
    /// A payload that is not JSON.
    #[error("payload is not JSON: {0}")]
    Payload(String),
}

/// What a [`META`] header says: the publishing process's id of the item, its priority,
/// its timestamp and the node that published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta<'a> {
    pub(crate) id: u64,
    pub(crate) priority: Priority,
    pub(crate) timestamp: SystemTime,
    pub(crate) origin: &'a str,
}

impl<'a> Meta<'a> {
    /// The [`META`] header of a message's `headers`, parsed in one pass.
    pub(crate) fn of(headers: Option<&'a HeaderMap>) -> Result<Meta<'a>, Malformed> {
        let value = headers
            .and_then(|h| h.get(META_NAME))
            .ok_or(Malformed::Missing)?
            .as_str();
        let invalid = |field| Malformed::Invalid {
            field,
            value: value.to_owned(),
        };
        // Split at single spaces (ASCII: every cut is a char boundary); an empty field,
        // a missing one or a fifth is invalid.
        let mut rest = Some(value);
        let mut next = |field| {
            let part = rest.take().ok_or_else(|| invalid(field))?;
            let part = match part.bytes().position(|b| b == b' ') {
                Some(at) => {
                    rest = Some(&part[at + 1..]);
                    &part[..at]
                }
                None => part,
            };
            if part.is_empty() {
                return Err(invalid(field));
            }
            Ok(part)
        };
        let (id, priority, nanos, origin) = (
            next("id")?,
            next("priority")?,
            next("timestamp")?,
            next("origin")?,
        );
        if rest.is_some() {
            return Err(invalid("origin"));
        }
        let id = id.parse().map_err(|_| invalid("id"))?;
        let priority = priority
            .parse::<u64>()
            .ok()
            .and_then(|level| Priority::try_from(level).ok())
            .ok_or_else(|| invalid("priority"))?;
        let nanos: u64 = nanos.parse().map_err(|_| invalid("timestamp"))?;
        Ok(Meta {
            id,
            priority,
            timestamp: UNIX_EPOCH + Duration::from_nanos(nanos),
            origin,
        })
    }

    /// The item, named `name`, that a message with this header and `payload` carries:
    /// the payload is checked to be JSON here ([`Json`]), and parsed into a `Value` only
    /// if a handler asks for one. The item keeps a copy of the text: the payload is a
    /// slice of the client's read buffer, which the item would otherwise keep whole.
    pub(crate) fn item<K: Kind>(&self, name: Name, payload: &[u8]) -> Result<Item<K>, Malformed> {
        serde_json::from_slice::<Json>(payload).map_err(|e| Malformed::Payload(e.to_string()))?;
        Ok(Item::received(
            name,
            Bytes::copy_from_slice(payload),
            self.priority,
            self.id,
            self.timestamp,
        ))
    }
}

/// Checks a JSON text without building anything: what parsing it into a `Value` would
/// accept, no more (`IgnoredAny` would skip strings without checking their UTF-8 or
/// escapes, and numbers without their range).
struct Json;

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(Json)
    }
}

impl<'de> Visitor<'de> for Json {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
        Ok(Json)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
        Ok(Json)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json)
    }

    fn visit_str<E>(self, _: &str) -> Result<Json, E> {
        Ok(Json)
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        while seq.next_element::<Json>()?.is_some() {}
        Ok(Json)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        while map.next_entry::<Json, Json>()?.is_some() {}
        Ok(Json)
    }
}

/// The item a NATS message carries, named `name`.
#[cfg(test)]
pub(crate) fn decode<K: Kind>(
    name: Name,
    headers: Option<&HeaderMap>,
    payload: &Bytes,
) -> Result<Item<K>, Malformed> {
    Meta::of(headers)?.item(name, payload)
}

/// Nanoseconds since the Unix epoch of `time` (the timestamp header's unit).
#[cfg(test)]
fn nanos(time: std::time::SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;
    use serde_json::json;

    #[test]
    fn subjects_and_names() {
        assert_eq!(
            subject("tickwire", Space::Events, "market.tick"),
            "tickwire.ev.market.tick"
        );
        assert_eq!(subject("tw", Space::Messages, "orders.>"), "tw.mq.orders.>");
        assert_eq!(
            name_of("tw", Space::Messages, "tw.mq.orders.new"),
            Some("orders.new")
        );
        assert_eq!(name_of("tw", Space::Events, "tw.mq.orders.new"), None);
        assert_eq!(name_of("tw", Space::Events, "twx.ev.a"), None);
        assert_eq!(name_of("tw", Space::Events, "tw.ev."), Some(""));
    }

    #[test]
    fn a_route_subject_is_made_once_and_the_cache_is_bounded() {
        let mut subjects = Subjects::new("tw".into(), Space::Events);
        let first = subjects.of("market.tick");
        assert_eq!(first.as_str(), "tw.ev.market.tick");
        assert_eq!(subjects.of("market.tick"), first);
        assert_eq!(subjects.made.len(), 1);
        for n in 0..Subjects::MAX + 10 {
            let route = format!("fx.r{n}");
            assert_eq!(subjects.of(&route).as_str(), format!("tw.ev.{route}"));
            assert!(subjects.made.len() <= Subjects::MAX);
        }
        assert_eq!(subjects.made.len(), 11, "emptied once when full");
    }

    #[test]
    fn queue_names_keep_what_nats_takes() {
        assert_eq!(
            queue_name("tw", "orders.new", "routers"),
            "tw|orders.new|routers"
        );
        assert_eq!(
            queue_name("tw", "orders.>", "risk desk\t%"),
            "tw|orders.%3E|risk%20desk%09%25"
        );
        assert_eq!(queue_name("tw", "a.*", "café|x"), "tw|a.%2A|café%7Cx");
        // Two groups of one name on two patterns stay two NATS queue groups.
        assert_ne!(
            queue_name("tw", "orders.>", "audit"),
            queue_name("tw", "orders.new", "audit")
        );
        assert_ne!(queue_name("tw", "a", "b|c"), queue_name("tw", "a|b", "c"));
    }

    #[test]
    fn durable_names_take_only_what_jetstream_allows() {
        assert_eq!(stream_name("tickwire"), "tickwire-durable");
        assert_eq!(stream_name("a.b c>"), "a_b_c_-durable");
        let name = consumer_name("tw", "orders.>", "routers", "orders.new");
        assert!(
            name.starts_with("tw_orders___routers_orders_new_"),
            "{name}"
        );
        assert_eq!(
            name,
            consumer_name("tw", "orders.>", "routers", "orders.new")
        );
        let long = "x".repeat(300);
        let names = [
            consumer_name("tw", "o.>", &long, "o.a"),
            consumer_name("tw", "o.>", &long, "o.b"),
            consumer_name("tw", "o.*", "g", "o.a"),
            consumer_name("tw", "o.>", "g", "o.a"),
            consumer_name("tw", "o", ">_g", "o.a"),
            consumer_name("tw", "o>", "_g", "o.a"),
        ];
        assert_eq!(names[0].len(), MAX_CONSUMER_NAME + 17);
        for (i, name) in names.iter().enumerate() {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)),
                "{name}"
            );
            assert!(
                !names[..i].contains(name),
                "distinct groups, distinct names: {name}"
            );
        }
        assert_eq!(message_id("gw-1", 0xbeef, 42), "gw-1.beef.42");
    }

    #[test]
    fn an_item_round_trips_with_its_id_priority_and_time() {
        let message = Message::typed("orders.new", json!({"qty": 2}), Priority::High);
        let headers = headers(&message, "node-a");
        assert_eq!(Meta::of(Some(&headers)).unwrap().origin, "node-a");
        let body = payload(&message).unwrap();
        let back: Message = decode(Name::from("orders.new"), Some(&headers), &body).unwrap();
        assert_eq!(back.id(), message.id());
        assert_eq!(back.topic(), "orders.new");
        assert_eq!(back.priority(), Priority::High);
        assert_eq!(nanos(back.timestamp()), nanos(message.timestamp()));
        assert_eq!(back.data(), &json!({"qty": 2}));
    }

    #[test]
    fn the_header_is_one_line_of_four_fields() {
        let message = Message::typed("orders.new", json!(1), Priority::Critical);
        let headers = headers(&message, "gw-1");
        let value = headers.get(META).unwrap().as_str();
        assert_eq!(
            value,
            format!("{} 4 {} gw-1", message.id(), nanos(message.timestamp()))
        );
        assert_eq!(headers.iter().count(), 1, "one header, nothing else");
    }

    #[test]
    fn malformed_messages_are_named() {
        let name = || Name::from("a");
        let decode = |headers: Option<&HeaderMap>, payload: &[u8]| {
            let payload = Bytes::copy_from_slice(payload);
            decode::<crate::item::EventKind>(name(), headers, &payload).map(|_| ())
        };
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(META, value);
            headers
        };
        assert_eq!(decode(None, b"1"), Err(Malformed::Missing));
        let mut other = HeaderMap::new();
        other.insert("Tickwire-Id", "1");
        assert_eq!(decode(Some(&other), b"1"), Err(Malformed::Missing));
        assert_eq!(decode(Some(&with("1 2 3 n")), b"1"), Ok(()));
        for (value, field) in [
            ("x 2 3 n", "id"),
            ("-1 2 3 n", "id"),
            ("1 9 3 n", "priority"),
            ("1 0 3 n", "priority"),
            ("1 2 soon n", "timestamp"),
            ("1 2 3", "origin"),
            ("1 2 3 n extra", "origin"),
            ("1  2 3 n", "priority"),
            ("", "id"),
            (" 1 2 3 n", "id"),
            ("1 2 3 n ", "origin"),
            ("1 2 18446744073709551616 n", "timestamp"),
        ] {
            assert_eq!(
                decode(Some(&with(value)), b"1"),
                Err(Malformed::Invalid {
                    field,
                    value: value.into()
                }),
                "{value:?}"
            );
        }
        let header = with("7 2 3 node-b");
        let meta = Meta::of(Some(&header)).unwrap();
        assert_eq!(
            (meta.id, meta.priority, meta.origin),
            (7, Priority::Normal, "node-b")
        );
        assert_eq!(meta.timestamp, UNIX_EPOCH + Duration::from_nanos(3));
        for not_json in [
            &b"{not json"[..],
            b"",
            b"{\"a\":1} 2",
            b"\xff",
            b"\"\xff\"",
            b"{\"\xff\":1}",
            b"\"\\ud800\"",
            b"1e400",
            b"[1,]",
        ] {
            assert!(
                matches!(
                    decode(Some(&with("1 2 3 n")), not_json),
                    Err(Malformed::Payload(_))
                ),
                "{not_json:?}"
            );
        }
    }

    #[test]
    fn a_received_payload_is_parsed_on_first_use_only() {
        let message = Message::new("orders.new", json!({"qty": 2, "px": 1.5}), Priority::Low);
        let (headers, body) = (headers(&message, "a"), payload(&message).unwrap());
        // The payload as the client hands it: a slice of its read buffer.
        let buffer = Bytes::from([&b"HMSG ..."[..], &body, b"\r\n"].concat());
        let slice = buffer.slice(8..8 + body.len());
        let back: Message = decode(Name::from("orders.new"), Some(&headers), &slice).unwrap();
        assert!(!back.json_built(), "not parsed on receipt");
        assert_eq!(back.json_text(), Some(&body[..]));
        let kept = back.json_text().unwrap().as_ptr_range();
        assert!(
            !buffer.as_ptr_range().contains(&kept.start),
            "a copy, not the client's buffer"
        );
        assert!(!back.is_typed());
        assert_eq!(
            back.payload_type(),
            std::any::type_name::<serde_json::Value>()
        );

        // Serialized (as a WebSocket frame or the item's JSON is) before any data().
        let frame = serde_json::to_value(&back).unwrap();
        assert_eq!(frame["data"], json!({"qty": 2, "px": 1.5}));
        assert_eq!(frame["topic"], "orders.new");

        // A typed handler decodes the text itself, before and after data() alike.
        #[derive(serde::Deserialize)]
        struct Order {
            qty: u32,
            px: f64,
        }
        let fresh: Message = decode(Name::from("orders.new"), Some(&headers), &body).unwrap();
        let order = crate::Typed::<Order, _>::decode(&fresh).unwrap();
        assert_eq!((order.qty, order.px), (2, 1.5));
        assert!(!fresh.json_built());
        let wrong = crate::Typed::<Vec<u8>, _>::decode(&fresh).unwrap_err();
        assert_eq!(wrong.found, std::any::type_name::<serde_json::Value>());

        // data() parses it once; copies with another priority share it.
        let copy = fresh.clone().with_priority(Priority::High);
        assert_eq!(fresh.data(), &json!({"qty": 2, "px": 1.5}));
        assert!(fresh.json_built());
        assert!(std::ptr::eq(copy.data(), fresh.data()));
        let order = crate::Typed::<Order, _>::decode(&copy).unwrap();
        assert_eq!(order.qty, 2);
    }
}
