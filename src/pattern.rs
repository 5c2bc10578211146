//! Names and subscription patterns.
//!
//! ## Patterns
//!
//! A name is one or more dot-separated tokens: `market.tick`, `trading.signal.btc`. A
//! token is non-empty and holds no whitespace, no `*` and no `>`. A name or pattern is at
//! most [`MAX_NAME_BYTES`] (256) bytes long: the one limit of every component (EventBus,
//! MessageQueue, WebSocket, `POST /api/publish`), so that names a client invents can
//! never make the per-name state of a server large.
//!
//! A subscription pattern is a name in which a whole token may be a wildcard, as in NATS:
//!
//! | token | matches |
//! |-------|---------|
//! | `*`   | exactly one token |
//! | `>`   | one or more trailing tokens; only as the last token |
//!
//! ```
//! use tickwire::Pattern;
//!
//! let p = Pattern::parse("system.*").unwrap();
//! assert!(p.matches("system.alert"));
//! assert!(!p.matches("system.alert.cpu"));
//! assert!(!p.matches("system"));
//!
//! let tail = Pattern::parse("system.>").unwrap();
//! assert!(tail.matches("system.alert"));
//! assert!(tail.matches("system.alert.cpu"));
//! assert!(!tail.matches("system"));
//!
//! let err = Pattern::parse("system.>.cpu").unwrap_err();
//! assert_eq!(err.to_string(), "invalid pattern \"system.>.cpu\": `>` may only be the last token");
//! ```

use std::fmt;

/// The longest name or pattern, in bytes (UTF-8).
pub const MAX_NAME_BYTES: usize = 256;

/// What is wrong with a name or a pattern. The `input` field holds the offending text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The empty string.
    #[error("invalid {kind} \"\": it is empty")]
    Empty {
        /// `"name"` or `"pattern"`.
        kind: &'static str,
    },
    /// Two dots in a row, or a leading or trailing dot.
    #[error("invalid {kind} {input:?}: token {position} is empty")]
    EmptyToken {
        /// `"name"` or `"pattern"`.
        kind: &'static str,
        /// The rejected text.
        input: String,
        /// One-based position of the empty token.
        position: usize,
    },
    /// A space, tab or other whitespace character.
    #[error("invalid {kind} {input:?}: it contains whitespace")]
    Whitespace {
        /// `"name"` or `"pattern"`.
        kind: &'static str,
        /// The rejected text.
        input: String,
    },
    /// `*` or `>` inside a token (`mar*ket`), or a wildcard in a published name.
    #[error("invalid {kind} {input:?}: {detail}")]
    Wildcard {
        /// `"name"` or `"pattern"`.
        kind: &'static str,
        /// The rejected text.
        input: String,
        /// What is wrong with the wildcard.
        detail: &'static str,
    },
    /// `>` that is not the last token.
    #[error("invalid pattern {input:?}: `>` may only be the last token")]
    TailNotLast {
        /// The rejected text.
        input: String,
    },
    /// Longer than [`MAX_NAME_BYTES`]. The text is not kept.
    #[error("invalid {kind}: {length} bytes long, at most {MAX_NAME_BYTES} allowed")]
    TooLong {
        /// `"name"` or `"pattern"`.
        kind: &'static str,
        /// Its length in bytes.
        length: usize,
    },
}

/// Checks a published name: tokens non-empty, no whitespace, no wildcard, at most
/// [`MAX_NAME_BYTES`] bytes.
///
/// ```
/// assert!(tickwire::validate_name("market.tick").is_ok());
/// assert!(tickwire::validate_name("market.*").is_err());
/// assert!(tickwire::validate_name("market..tick").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), PatternError> {
    // Fast path for the common case, on the publish path: printable ASCII, no wildcard,
    // no empty token. Anything else takes the slow path, which finds the exact problem
    // (or accepts a valid non-ASCII name).
    let mut token_len = 0usize;
    let mut plain = !name.is_empty() && name.len() <= MAX_NAME_BYTES;
    for &b in name.as_bytes() {
        match b {
            b'.' if token_len > 0 => token_len = 0,
            b'.' | b'*' | b'>' | 0..=b' ' | 0x7f.. => {
                plain = false;
                break;
            }
            _ => token_len += 1,
        }
    }
    if plain && token_len > 0 {
        return Ok(());
    }
    check_tokens(name, "name", |token| {
        if token.contains(['*', '>']) {
            Err("wildcards `*` and `>` are only allowed in subscription patterns")
        } else {
            Ok(())
        }
    })
}

fn check_tokens(
    input: &str,
    kind: &'static str,
    mut check: impl FnMut(&str) -> Result<(), &'static str>,
) -> Result<(), PatternError> {
    if input.is_empty() {
        return Err(PatternError::Empty { kind });
    }
    if input.len() > MAX_NAME_BYTES {
        return Err(PatternError::TooLong {
            kind,
            length: input.len(),
        });
    }
    if input.chars().any(char::is_whitespace) {
        return Err(PatternError::Whitespace {
            kind,
            input: input.to_owned(),
        });
    }
    for (i, token) in input.split('.').enumerate() {
        if token.is_empty() {
            return Err(PatternError::EmptyToken {
                kind,
                input: input.to_owned(),
                position: i + 1,
            });
        }
        check(token).map_err(|detail| PatternError::Wildcard {
            kind,
            input: input.to_owned(),
            detail,
        })?;
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(Box<str>),
    /// `*`: one token.
    One,
    /// `>`: one or more trailing tokens.
    Tail,
}

/// A parsed subscription pattern; see the [module docs](self) for the syntax.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Box<str>,
    tokens: Box<[Token]>,
}

impl Pattern {
    /// Parses and validates a pattern.
    pub fn parse(pattern: &str) -> Result<Pattern, PatternError> {
        let count = pattern.split('.').count();
        let mut position = 0;
        check_tokens(pattern, "pattern", |token| {
            position += 1;
            match token {
                "*" => Ok(()),
                ">" if position == count => Ok(()),
                ">" => Err("`>` may only be the last token"),
                t if t.contains(['*', '>']) => Err("`*` and `>` must stand alone as a whole token"),
                _ => Ok(()),
            }
        })
        .map_err(|err| match err {
            PatternError::Wildcard {
                input,
                detail: "`>` may only be the last token",
                ..
            } => PatternError::TailNotLast { input },
            other => other,
        })?;
        let tokens = pattern
            .split('.')
            .map(|t| match t {
                "*" => Token::One,
                ">" => Token::Tail,
                lit => Token::Literal(lit.into()),
            })
            .collect();
        Ok(Pattern {
            text: pattern.into(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if the pattern has no wildcard: it matches exactly one name, itself.
    pub fn is_exact(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// Whether a (valid) name matches this pattern. Allocates nothing.
    pub fn matches(&self, name: &str) -> bool {
        let bytes = name.as_bytes();
        // Start of the next unmatched token of `name`; `len + 1` once all are matched.
        let mut pos = 0;
        for token in self.tokens.iter() {
            if pos > bytes.len() {
                return false; // the pattern has more tokens than the name
            }
            let rest = &bytes[pos..];
            match token {
                Token::Tail => return !rest.is_empty(),
                Token::One => {
                    pos += rest.iter().position(|&b| b == b'.').unwrap_or(rest.len()) + 1;
                }
                Token::Literal(lit) => {
                    let lit = lit.as_bytes();
                    let whole_token = rest.len() == lit.len() || rest.get(lit.len()) == Some(&b'.');
                    if !(whole_token && rest.starts_with(lit)) {
                        return false;
                    }
                    pos += lit.len() + 1;
                }
            }
        }
        pos == bytes.len() + 1
    }
    /// Whether this pattern matches every name that `other` matches (`other` may be an
    /// exact name). Used to check a subscription against the patterns a token allows.
    ///
    /// ```
    /// use tickwire::Pattern;
    /// let allowed = Pattern::parse("market.>").unwrap();
    /// assert!(allowed.covers(&Pattern::parse("market.tick.*").unwrap()));
    /// assert!(allowed.covers(&Pattern::parse("market.>").unwrap()));
    /// assert!(!allowed.covers(&Pattern::parse(">").unwrap()));
    /// assert!(!Pattern::parse("market.*").unwrap().covers(&allowed));
    /// ```
    pub fn covers(&self, other: &Pattern) -> bool {
        for (i, token) in self.tokens.iter().enumerate() {
            let theirs = other.tokens.get(i);
            let ok = match token {
                // One or more tokens: whatever `other` has from here, if it has anything.
                Token::Tail => return theirs.is_some(),
                // Exactly one token: a literal or `*`, not `>` (which may be several).
                Token::One => matches!(theirs, Some(Token::Literal(_) | Token::One)),
                Token::Literal(mine) => matches!(theirs, Some(Token::Literal(t)) if t == mine),
            };
            if !ok {
                return false;
            }
        }
        self.tokens.len() == other.tokens.len()
    }
}

impl Pattern {
    /// The pattern of the names that both match, if any does: token by token, `*` and
    /// `>` yield to the other side. (A durable topic's JetStream consumer for a consumer
    /// group filters on the group's pattern within the durable one.)
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn intersect(&self, other: &Pattern) -> Option<Pattern> {
        let text = |t: &Token| match t {
            Token::Literal(lit) => lit.to_string(),
            Token::One => "*".into(),
            Token::Tail => ">".into(),
        };
        let mut i = 0;
        let mut joined: Vec<String> = Vec::new();
        loop {
            match (self.tokens.get(i), other.tokens.get(i)) {
                (None, None) => break,
                (Some(Token::Tail), Some(_)) => {
                    joined.extend(other.tokens[i..].iter().map(text));
                    break;
                }
                (Some(_), Some(Token::Tail)) => {
                    joined.extend(self.tokens[i..].iter().map(text));
                    break;
                }
                (Some(Token::One), Some(t)) | (Some(t), Some(Token::One)) => joined.push(text(t)),
                (Some(Token::Literal(a)), Some(Token::Literal(b))) if a == b => {
                    joined.push(a.to_string())
                }
                _ => return None,
            }
            i += 1;
        }
        Pattern::parse(&joined.join(".")).ok()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersections() {
        let table: &[(&str, &str, Option<&str>)] = &[
            ("orders.>", "orders.new", Some("orders.new")),
            ("orders.>", ">", Some("orders.>")),
            ("orders.>", "*.new", Some("orders.new")),
            ("orders.>", "*.*.eu", Some("orders.*.eu")),
            ("orders.*", "orders.>", Some("orders.*")),
            ("a.*.c", "a.b.*", Some("a.b.c")),
            ("orders.>", "fills.>", None),
            ("orders.*", "orders.new.eu", None),
            ("orders.>", "orders", None),
            ("*", "a.b", None),
            (">", ">", Some(">")),
        ];
        for &(a, b, expected) in table {
            let (pa, pb) = (Pattern::parse(a).unwrap(), Pattern::parse(b).unwrap());
            for (x, y) in [(&pa, &pb), (&pb, &pa)] {
                let got = x.intersect(y);
                assert_eq!(got.as_ref().map(Pattern::as_str), expected, "{x} and {y}");
            }
        }
    }

    #[test]
    fn matching_table() {
        let table: &[(&str, &str, bool)] = &[
            ("market.tick", "market.tick", true),
            ("market.tick", "market.ticks", false),
            ("market.tick", "market", false),
            ("market.tick", "market.tick.btc", false),
            ("market.*", "market.tick", true),
            ("market.*", "market.tick.btc", false),
            ("market.*", "market", false),
            ("*.tick", "market.tick", true),
            ("*.tick", "fx.tick", true),
            ("*.tick", "market.trade", false),
            ("*", "market", true),
            ("*", "market.tick", false),
            ("market.>", "market.tick", true),
            ("market.>", "market.tick.btc.usd", true),
            ("market.>", "market", false),
            ("market.>", "fx.tick", false),
            (">", "a", true),
            (">", "a.b.c", true),
            ("*.*.>", "a.b", false),
            ("*.*.>", "a.b.c", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.b.d", false),
        ];
        for &(pattern, name, expected) in table {
            let p = Pattern::parse(pattern).unwrap();
            assert_eq!(p.matches(name), expected, "{pattern} vs {name}");
        }
    }

    #[test]
    fn invalid_patterns_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("", "invalid pattern \"\": it is empty"),
            ("a..b", "invalid pattern \"a..b\": token 2 is empty"),
            (".a", "invalid pattern \".a\": token 1 is empty"),
            ("a.", "invalid pattern \"a.\": token 2 is empty"),
            ("a b", "invalid pattern \"a b\": it contains whitespace"),
            (
                "a.\tb",
                "invalid pattern \"a.\\tb\": it contains whitespace",
            ),
            (
                "mar*ket",
                "invalid pattern \"mar*ket\": `*` and `>` must stand alone as a whole token",
            ),
            (
                "a.b>",
                "invalid pattern \"a.b>\": `*` and `>` must stand alone as a whole token",
            ),
            (
                "a.>.b",
                "invalid pattern \"a.>.b\": `>` may only be the last token",
            ),
        ];
        for &(input, message) in cases {
            let err = Pattern::parse(input).unwrap_err();
            assert_eq!(err.to_string(), message, "{input:?}");
        }
        assert!(matches!(
            Pattern::parse("a.>.b"),
            Err(PatternError::TailNotLast { .. })
        ));
    }

    #[test]
    fn names_reject_wildcards_and_empty_tokens() {
        assert!(validate_name("a.b.c").is_ok());
        assert!(matches!(
            validate_name("a.*"),
            Err(PatternError::Wildcard { kind: "name", .. })
        ));
        assert!(matches!(
            validate_name("a>"),
            Err(PatternError::Wildcard { .. })
        ));
        assert!(matches!(
            validate_name(""),
            Err(PatternError::Empty { kind: "name" })
        ));
        assert!(matches!(
            validate_name("a..b"),
            Err(PatternError::EmptyToken { position: 2, .. })
        ));
        assert!(matches!(
            validate_name("a b"),
            Err(PatternError::Whitespace { .. })
        ));
        // Up to MAX_NAME_BYTES bytes (not characters), names and patterns alike.
        let longest = "é".repeat(MAX_NAME_BYTES / 2);
        assert!(validate_name(&longest).is_ok());
        assert!(Pattern::parse(&longest).is_ok());
        let over = format!("{longest}x");
        for err in [validate_name(&over), Pattern::parse(&over).map(|_| ())] {
            assert!(
                matches!(err, Err(PatternError::TooLong { length, .. }) if length == MAX_NAME_BYTES + 1),
                "{err:?}"
            );
        }
        assert!(Pattern::parse(&format!("{}.>", "a".repeat(MAX_NAME_BYTES - 1))).is_err());
    }

    /// The obvious token-by-token definition, to check the byte-level matcher against.
    fn reference(pattern: &str, name: &str) -> bool {
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

    #[test]
    fn matcher_agrees_with_the_reference_on_random_inputs() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let words = ["a", "b", "ab", "ba", "tick", "t"];
        let mut checked = 0;
        for _ in 0..20_000 {
            let name: Vec<&str> = (0..rng.random_range(1..5))
                .map(|_| words[rng.random_range(0..words.len())])
                .collect();
            let len = rng.random_range(1..5);
            let pattern: Vec<&str> = (0..len)
                .map(|i| match rng.random_range(0..8) {
                    0 => "*",
                    1 if i == len - 1 => ">",
                    _ => words[rng.random_range(0..words.len())],
                })
                .collect();
            let (name, pattern) = (name.join("."), pattern.join("."));
            let parsed = Pattern::parse(&pattern).unwrap();
            assert_eq!(
                parsed.matches(&name),
                reference(&pattern, &name),
                "{pattern} vs {name}"
            );
            checked += usize::from(parsed.matches(&name));
        }
        assert!(
            checked > 500,
            "the random inputs include matches: {checked}"
        );
    }

    #[test]
    fn covers_is_exact_on_small_alphabets() {
        // `a` covers `b` iff every name `b` matches is matched by `a`. Names over
        // {x, y, w} with up to 4 tokens; `w` appears in no pattern, so it stands for "any
        // other token".
        let tokens = ["x", "y", "*"];
        let mut patterns = vec![];
        for len in 1..=3 {
            let mut idx = vec![0; len];
            loop {
                let base: Vec<&str> = idx.iter().map(|&i| tokens[i]).collect();
                patterns.push(base.join("."));
                let mut tail = base.clone();
                *tail.last_mut().unwrap() = ">";
                patterns.push(tail.join("."));
                let mut k = 0;
                while k < len && idx[k] == tokens.len() - 1 {
                    idx[k] = 0;
                    k += 1;
                }
                if k == len {
                    break;
                }
                idx[k] += 1;
            }
        }
        let words = ["x", "y", "w"];
        let mut names = vec![];
        for len in 1..=4u32 {
            for n in 0..3usize.pow(len) {
                let name: Vec<&str> = (0..len).map(|i| words[n / 3usize.pow(i) % 3]).collect();
                names.push(name.join("."));
            }
        }
        let parsed: Vec<Pattern> = patterns
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect();
        for a in &parsed {
            for b in &parsed {
                let truth = names.iter().all(|n| !b.matches(n) || a.matches(n));
                assert_eq!(a.covers(b), truth, "{a:?} covers {b:?}");
            }
        }
    }

    #[test]
    fn exactness() {
        assert!(Pattern::parse("a.b").unwrap().is_exact());
        assert!(!Pattern::parse("a.*").unwrap().is_exact());
        assert!(!Pattern::parse("a.>").unwrap().is_exact());
    }
}
