//! The invariants the fuzz targets check, in one place: `fuzz/fuzz_targets/*.rs` include
//! this file (`#[path = "../../tests/fuzz_checks/mod.rs"]`), and `tests/fuzz_corpus.rs`
//! replays the committed corpus (`fuzz/corpus/<target>/`) through the same functions in the
//! crate's own `cargo test`.
//!
//! Each function takes arbitrary bytes and panics when an invariant is violated. For the
//! three parsers of text (`client_frame`, `pattern`, `config`), inputs that are not UTF-8
//! are skipped; `frame_decoder` and [`inflater`] (permessage-deflate), each in its own
//! file, take any bytes.
//!
//! Names and patterns longer than [`MAX_NAME_BYTES`] are refused by both `validate_name`
//! and `Pattern::parse` (with `PatternError::TooLong`); the checks assert that exactly.

mod frame_decoder;
mod inflater;

use std::path::Path;

use serde_json::{Map, Value};
use tickwire::serve::config::{FileConfig, FileConfigError};
use tickwire::websocket::protocol::{ClientFrame, ErrorCode, Refusal};
use tickwire::{validate_name, Pattern, PatternError, Priority, MAX_NAME_BYTES};

pub use frame_decoder::frame_decoder;
pub use inflater::inflater;

// ---------------------------------------------------------------------------------------
// client_frame: tickwire::websocket::protocol::ClientFrame::parse
// ---------------------------------------------------------------------------------------

/// `ClientFrame::parse` against an independent reading of the protocol (module docs of
/// `src/websocket/protocol.rs`):
///
/// - it never panics;
/// - it succeeds exactly when the input is a JSON object with no problem listed by
///   [`frame_problems`], and on failure its code is one of those problems (the order in
///   which the parser checks fields is not asserted);
/// - a refusal echoes the `id` when it is a string or a number, and no `id` otherwise;
///   its `error` frame is JSON with `"type":"error"`, the code as `code.as_str()`, the
///   message (non-empty) and the id;
/// - an accepted frame has the input's `type`, `id`, `topic`, `data` and `priority`;
/// - an accepted frame serialized with serde_json reads back (through `ClientFrame::parse`
///   and through its `Deserialize`) as an equal frame, floats to the last bit (serde_json
///   is built with `float_roundtrip`: without it, fuzzing found a third of all doubles
///   coming back 1 or 2 ULP off).
pub fn client_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = ClientFrame::parse(text);
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    };
    let Some(object) = object else {
        // Not JSON, or JSON but not an object.
        let refusal = parsed.expect_err("a frame that is not a JSON object was accepted");
        assert_eq!(refusal.code, ErrorCode::InvalidJson, "{refusal:?}");
        assert_eq!(refusal.id, None, "{refusal:?}");
        check_refusal(&refusal);
        return;
    };
    let problems = frame_problems(&object);
    let echoed_id = match object.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
        _ => None,
    };
    match parsed {
        Ok(frame) => {
            assert!(
                problems.is_empty(),
                "accepted {frame:?} despite {problems:?} in {text:?}"
            );
            check_accepted(&object, echoed_id, &frame);
        }
        Err(refusal) => {
            assert!(
                problems.contains(&refusal.code),
                "refused with {:?}, but the problems are {problems:?}: {text:?}",
                refusal.code
            );
            assert_eq!(refusal.id, echoed_id, "the refusal's id, for {text:?}");
            check_refusal(&refusal);
        }
    }
}

/// Everything wrong with a frame object, as the error codes that name it.
fn frame_problems(object: &Map<String, Value>) -> Vec<ErrorCode> {
    let mut problems = Vec::new();
    match object.get("id") {
        None | Some(Value::Null | Value::String(_) | Value::Number(_)) => {}
        Some(_) => problems.push(ErrorCode::InvalidField),
    }
    let kind = match object.get("type") {
        None => {
            problems.push(ErrorCode::MissingField);
            return problems;
        }
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => {
            problems.push(ErrorCode::InvalidField);
            return problems;
        }
    };
    match kind {
        "ping" => {}
        "subscribe" | "unsubscribe" | "publish" => {
            match object.get("topic") {
                None => problems.push(ErrorCode::MissingField),
                Some(Value::String(_)) => {}
                Some(_) => problems.push(ErrorCode::InvalidField),
            }
            if kind == "subscribe" && expected_flag(object.get("conflate")).is_err() {
                problems.push(ErrorCode::InvalidField);
            }
            if kind == "publish" {
                if !object.contains_key("data") {
                    problems.push(ErrorCode::MissingField);
                }
                if let Err(()) = expected_priority(object.get("priority")) {
                    problems.push(ErrorCode::InvalidField);
                }
            }
        }
        _ => problems.push(ErrorCode::UnknownType),
    }
    problems
}

/// The documented `conflate`: absent or null is false, else a boolean.
/// The documented `conflate` and `snapshot`: absent or null is false, else a boolean.
fn expected_flag(value: Option<&Value>) -> Result<bool, ()> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(conflate)) => Ok(*conflate),
        Some(_) => Err(()),
    }
}

/// The documented `priority`: absent or null is none; 1..=4, or a level's name in any case.
fn expected_priority(value: Option<&Value>) -> Result<Option<Priority>, ()> {
    let level = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(1) => Priority::Low,
            Some(2) => Priority::Normal,
            Some(3) => Priority::High,
            Some(4) => Priority::Critical,
            _ => return Err(()),
        },
        Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
            "LOW" => Priority::Low,
            "NORMAL" => Priority::Normal,
            "HIGH" => Priority::High,
            "CRITICAL" => Priority::Critical,
            _ => return Err(()),
        },
        Some(_) => return Err(()),
    };
    Ok(Some(level))
}

fn check_accepted(object: &Map<String, Value>, id: Option<Value>, frame: &ClientFrame) {
    let kind = object.get("type").and_then(Value::as_str);
    let topic_in = || object.get("topic").and_then(Value::as_str);
    match frame {
        ClientFrame::Subscribe {
            topic,
            id: got,
            conflate,
            recover,
            snapshot,
        } => {
            assert_eq!(kind, Some("subscribe"));
            assert_eq!(Some(topic.as_str()), topic_in());
            assert_eq!(*got, id);
            assert_eq!(Ok(*conflate), expected_flag(object.get("conflate")));
            assert_eq!(Ok(*snapshot), expected_flag(object.get("snapshot")));
            match (recover, object.get("recover")) {
                (None, None | Some(Value::Null)) => {}
                (Some(recover), Some(Value::Object(given))) => {
                    assert_eq!(Some(recover.epoch.as_str()), given["epoch"].as_str());
                    assert!(recover.seq.is_some() != recover.positions.is_some());
                }
                other => panic!("recover parsed as {other:?}"),
            }
        }
        ClientFrame::Unsubscribe { topic, id: got } => {
            assert_eq!(kind, Some("unsubscribe"));
            assert_eq!(Some(topic.as_str()), topic_in());
            assert_eq!(*got, id);
        }
        ClientFrame::Publish {
            topic,
            data,
            priority,
            id: got,
        } => {
            assert_eq!(kind, Some("publish"));
            assert_eq!(Some(topic.as_str()), topic_in());
            assert_eq!(Some(data), object.get("data"));
            assert_eq!(Ok(*priority), expected_priority(object.get("priority")));
            assert_eq!(*got, id);
        }
        ClientFrame::Ping { id: got } => {
            assert_eq!(kind, Some("ping"));
            assert_eq!(*got, id);
        }
    }

    // Round trip through the frame's own serialization.
    let written = serde_json::to_string(frame).expect("an accepted frame serializes");
    assert_eq!(frame.to_json(), written);
    let reparsed = ClientFrame::parse(&written)
        .unwrap_or_else(|r| panic!("{written:?} written from {frame:?} is refused: {r:?}"));
    assert!(
        *frame == reparsed,
        "round trip: {frame:?} -> {written} -> {reparsed:?}"
    );
    let deserialized: ClientFrame = serde_json::from_str(&written)
        .unwrap_or_else(|e| panic!("{written:?} does not deserialize: {e}"));
    assert!(
        *frame == deserialized,
        "round trip through Deserialize: {frame:?} -> {written} -> {deserialized:?}"
    );
}

fn check_refusal(refusal: &Refusal) {
    assert!(!refusal.message.is_empty(), "{refusal:?} has no message");
    let json = refusal.to_frame().to_json();
    let value: Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("the error frame {json:?} is not JSON: {e}"));
    let object = value.as_object().expect("the error frame is an object");
    assert_eq!(object.get("type"), Some(&Value::from("error")), "{json}");
    assert_eq!(
        object.get("code"),
        Some(&Value::from(refusal.code.as_str())),
        "{json}"
    );
    assert_eq!(
        object.get("message"),
        Some(&Value::from(refusal.message.as_str())),
        "{json}"
    );
    match (&refusal.id, object.get("id")) {
        (None, None) => {}
        (Some(sent), Some(read)) => assert_eq!(sent, read, "{refusal:?} -> {json}"),
        (sent, read) => panic!("the error frame's id is {read:?}, the refusal's {sent:?}"),
    }
    let allowed = ["type", "id", "code", "message"];
    assert!(
        object.keys().all(|k| allowed.contains(&k.as_str())),
        "{json}"
    );
}

// ---------------------------------------------------------------------------------------
// pattern: tickwire::Pattern and tickwire::validate_name
// ---------------------------------------------------------------------------------------

/// The input is split at its first newline or NUL byte into a pattern text and a name text
/// (no separator: the name is empty). Each text is checked on its own as a name and as a
/// pattern (see [`check_text`]), then the pair (see [`check_pair`]): the pattern against
/// the name, and the two texts as patterns against each other with `covers`.
///
/// `Pattern::matches` is documented for *valid* names, and on an invalid one it may say
/// true (`>` matches `a..b`): so every `matches` property is only asserted for names that
/// pass `validate_name`.
pub fn pattern(data: &[u8]) {
    let split = data
        .iter()
        .position(|&b| b == b'\n' || b == 0)
        .unwrap_or(data.len());
    let (Ok(first), Ok(second)) = (
        std::str::from_utf8(&data[..split]),
        std::str::from_utf8(data.get(split + 1..).unwrap_or_default()),
    ) else {
        return;
    };
    check_text(first);
    check_text(second);
    check_pair(first, second);
}

/// A name by the module docs: one or more dot-separated tokens, each non-empty, with no
/// whitespace, no `*` and no `>`.
fn well_formed_name(s: &str) -> bool {
    !s.is_empty()
        && !s.chars().any(char::is_whitespace)
        && s.split('.')
            .all(|t| !t.is_empty() && !t.contains(['*', '>']))
}

/// A pattern by the module docs: a name in which a whole token may be `*`, or `>` as the
/// last token.
fn well_formed_pattern(s: &str) -> bool {
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        return false;
    }
    let count = s.split('.').count();
    s.split('.').enumerate().all(|(i, t)| match t {
        "" => false,
        "*" => true,
        ">" => i + 1 == count,
        t => !t.contains(['*', '>']),
    })
}

/// The token-by-token meaning of a match (module docs): `*` is exactly one token, `>` one
/// or more trailing tokens, a literal itself.
fn reference_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let n: Vec<&str> = name.split('.').collect();
    for (i, token) in p.iter().enumerate() {
        match *token {
            ">" => return n.len() > i,
            "*" if i < n.len() => {}
            lit if i < n.len() && n[i] == lit => {}
            _ => return false,
        }
    }
    p.len() == n.len()
}

/// A name the pattern matches: each `*` replaced by `one`, a trailing `>` by `tail`.
fn instance(pattern: &str, one: &str, tail: &str) -> String {
    pattern
        .split('.')
        .map(|t| match t {
            "*" => one,
            ">" => tail,
            lit => lit,
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn check_text(s: &str) {
    let name = validate_name(s);
    let pattern = Pattern::parse(s);
    if let Err(err) = &name {
        assert!(!err.to_string().is_empty(), "{err:?}");
    }
    if let Err(err) = &pattern {
        assert!(!err.to_string().is_empty(), "{err:?}");
    }

    // The validators agree with the documented syntax and the length limit, exactly.
    let fits = s.len() <= MAX_NAME_BYTES;
    assert_eq!(
        name.is_ok(),
        well_formed_name(s) && fits,
        "validate_name on {s:?}: {name:?}"
    );
    assert_eq!(
        pattern.is_ok(),
        well_formed_pattern(s) && fits,
        "Pattern::parse on {s:?}: {pattern:?}"
    );
    if !s.is_empty() && !fits {
        for err in [name.as_ref().err(), pattern.as_ref().err()] {
            assert!(
                matches!(err, Some(PatternError::TooLong { length, .. }) if *length == s.len()),
                "{s:?}: {err:?}"
            );
        }
    }

    if name.is_ok() {
        let p = pattern
            .as_ref()
            .unwrap_or_else(|e| panic!("the valid name {s:?} is not a pattern: {e}"));
        assert!(p.is_exact(), "{s:?}");
        assert!(p.matches(s), "{s:?} does not match itself");
        let any = Pattern::parse(">").unwrap();
        assert!(any.matches(s), "`>` does not match {s:?}");
        let one = Pattern::parse("*").unwrap();
        assert_eq!(one.matches(s), !s.contains('.'), "`*` vs {s:?}");
    }

    if let Ok(p) = &pattern {
        assert_eq!(p.as_str(), s);
        assert_eq!(p.to_string(), s);
        assert_eq!(s.parse::<Pattern>().as_ref(), Ok(p));
        assert_eq!(p.is_exact(), name.is_ok(), "is_exact of {s:?}");
        assert_eq!(p.is_exact(), !s.split('.').any(|t| t == "*" || t == ">"));
        assert!(p.covers(p), "{s:?} does not cover itself");
        // Wildcards filled with one-byte tokens: a valid name of the same length.
        let filled = instance(s, "x", "y");
        assert!(validate_name(&filled).is_ok(), "{filled:?} from {s:?}");
        assert!(p.matches(&filled), "{s:?} does not match {filled:?}");
        if s.ends_with(".>") || s == ">" {
            let longer = instance(s, "x", "y.z");
            if validate_name(&longer).is_ok() {
                assert!(p.matches(&longer), "{s:?} does not match {longer:?}");
            }
            let shorter = &s[..s.len() - 1].trim_end_matches('.');
            if validate_name(shorter).is_ok() {
                assert!(!p.matches(shorter), "{s:?} matches {shorter:?}");
            }
        }
    }
}

/// A token that is none of the pattern's literals (so a `*` or `>` filled with it is
/// matched by no literal of the pattern).
fn fresh_token(pattern: &str) -> String {
    (0u32..)
        .map(|n| format!("f{n}"))
        .find(|t| !pattern.split('.').any(|lit| lit == t))
        .unwrap_or_default()
}

fn check_pair(first: &str, second: &str) {
    let (p, q) = (Pattern::parse(first), Pattern::parse(second));
    if let Ok(p) = &p {
        if validate_name(second).is_ok() {
            let exact = q.as_ref().expect("a valid name is a pattern");
            assert_eq!(
                p.matches(second),
                reference_matches(first, second),
                "{first:?} vs {second:?}"
            );
            assert_eq!(
                p.covers(exact),
                p.matches(second),
                "{first:?} covers the exact {second:?}"
            );
        }
    }
    if let (Ok(p), Ok(q)) = (&p, &q) {
        check_covers(p, q);
        check_covers(q, p);
        if p.covers(q) && q.covers(p) {
            assert_eq!(p, q, "{p:?} and {q:?} cover each other");
        }
    }
}

/// `p.covers(q)` means: `p` matches every name `q` matches. Two names decide it: `q` with
/// every `*` and a trailing `>` filled with a token that none of `p`'s literals is, and
/// the same with the `>` filled with two such tokens. `covers` is true exactly when `p`
/// matches both (asserted when both are valid names, i.e. within any length limit).
fn check_covers(p: &Pattern, q: &Pattern) {
    let f = fresh_token(p.as_str());
    let one = instance(q.as_str(), &f, &f);
    let two = instance(q.as_str(), &f, &format!("{f}.{f}"));
    let covers = p.covers(q);
    for name in [&one, &two] {
        if validate_name(name).is_ok() {
            assert!(
                q.matches(name),
                "{q:?} does not match its instance {name:?}"
            );
            if covers {
                assert!(p.matches(name), "{p:?} covers {q:?} but not {name:?}");
            }
        }
    }
    if validate_name(&one).is_ok() && validate_name(&two).is_ok() {
        assert_eq!(
            covers,
            p.matches(&one) && p.matches(&two),
            "{p:?} covers {q:?}: witnesses {one:?}, {two:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// config: tickwire::serve::config::FileConfig::parse
// ---------------------------------------------------------------------------------------

/// The path passed to `FileConfig::parse`; every error must name it.
pub const CONFIG_PATH: &str = "fuzz-dir/tickwire-fuzz.toml";

/// `FileConfig::parse` (TOML, then range checks):
///
/// - it never panics;
/// - an accepted config is what the TOML reads as, passes `validate()`, compiles its tokens
///   with `access()` (open exactly when there are none, and each token is authorized), and
///   written back as TOML parses again to an equal config;
/// - an error's Display is non-empty and starts with the path; a syntax error is one the
///   TOML reader itself reports; a range error is on a config that reads as TOML and fails
///   `validate()` with the same `[section] message`, at a line (when given) that exists.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(CONFIG_PATH);
    let raw = toml::from_str::<FileConfig>(text);
    match FileConfig::parse(text, path) {
        Ok(config) => {
            assert_eq!(raw.as_ref().ok(), Some(&config));
            assert_eq!(config.validate(), Ok(()));
            let access = config
                .access()
                .unwrap_or_else(|e| panic!("an accepted config's tokens do not compile: {e}"));
            assert_eq!(access.is_open(), config.server.tokens.is_empty());
            for token in &config.server.tokens {
                assert!(access.authorize(Some(&token.token)).is_ok());
            }
            let written = toml::to_string(&config)
                .unwrap_or_else(|e| panic!("{config:?} does not serialize: {e}"));
            let again = FileConfig::parse(&written, path)
                .unwrap_or_else(|e| panic!("written back as {written:?}, it is refused: {e}"));
            assert_eq!(again, config, "written back as {written:?}");
        }
        Err(err) => {
            let message = err.to_string();
            assert!(!message.is_empty());
            assert!(
                message.starts_with(CONFIG_PATH),
                "{message:?} does not name {CONFIG_PATH}"
            );
            match &err {
                FileConfigError::Syntax { path: p, message } => {
                    assert_eq!(p, path);
                    assert!(!message.is_empty());
                    assert!(raw.is_err(), "a syntax error on TOML that reads: {err}");
                }
                FileConfigError::Invalid {
                    path: p,
                    line,
                    section,
                    message,
                } => {
                    assert_eq!(p, path);
                    let config = raw.unwrap_or_else(|e| {
                        panic!("a range error ({err}) on TOML that does not read: {e}")
                    });
                    assert_eq!(config.validate(), Err(format!("[{section}] {message}")));
                    if let Some(line) = line {
                        assert!(
                            (1..=text.lines().count()).contains(line),
                            "line {line} of a {}-line file: {err}",
                            text.lines().count()
                        );
                    }
                }
                FileConfigError::Read { .. } => panic!("parse cannot fail to read: {err}"),
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
    }
}
