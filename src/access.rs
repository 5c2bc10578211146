//! Bearer tokens and the topics each one may use.
//!
//! With no token configured, a service is **open**: anyone who can reach it may
//! subscribe to anything (and publish, where publishing is enabled). With tokens, a
//! request must present one, as `Authorization: Bearer <token>` or as a `token` query
//! parameter (`/ws?token=…`, for browsers, which cannot set headers on a WebSocket); a
//! missing or unknown token is refused with HTTP 401 before any upgrade.
//!
//! Each token lists the patterns it may subscribe to and publish to. A subscription is
//! allowed when one of the token's subscribe patterns [covers](crate::Pattern::covers) it
//! (`market.>` allows `market.tick` and `market.*`, not `>`); a publish when one of the
//! publish patterns matches the topic. An empty list allows nothing.
//!
//! ```
//! use tickwire::access::{Access, TokenConfig};
//! use tickwire::Pattern;
//!
//! let access = Access::with_tokens(&[TokenConfig {
//!     token: "s3cret".into(),
//!     subscribe: vec!["market.>".into()],
//!     publish: vec!["orders.*".into()],
//! }])
//! .unwrap();
//! assert!(access.authorize(None).is_err());
//! assert!(access.authorize(Some("guess")).is_err());
//! let granted = access.authorize(Some("s3cret")).unwrap();
//! assert!(granted.may_subscribe(&Pattern::parse("market.tick.*").unwrap()));
//! assert!(!granted.may_subscribe(&Pattern::parse("system.alert").unwrap()));
//! assert!(granted.may_publish("orders.new"));
//! assert!(!granted.may_publish("orders.new.btc"));
//!
//! assert!(Access::open().authorize(None).unwrap().may_publish("anything"));
//! ```

use std::fmt;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::HttpRequest;
use serde::{Deserialize, Serialize};

use crate::{Pattern, PatternError};

/// One token and what it may do, as written in the config file (`[[server.tokens]]`).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The secret a client presents.
    pub token: String,
    /// Patterns this token may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Patterns of the topics this token may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
}

impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &"<redacted>")
            .field("subscribe", &self.subscribe)
            .field("publish", &self.publish)
            .finish()
    }
}

/// A token list that cannot be used. `index` is zero-based, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// A token that is empty or holds whitespace.
    #[error("tokens[{index}]: a token must be non-empty and hold no whitespace")]
    BadToken {
        /// Position of the token.
        index: usize,
    },
    /// The same token twice.
    #[error("tokens[{index}]: the same token is listed twice")]
    Duplicate {
        /// Position of the second occurrence.
        index: usize,
    },
    /// A pattern that does not parse.
    #[error("tokens[{index}].{list}: {source}")]
    InvalidPattern {
        /// Position of the token.
        index: usize,
        /// `subscribe` or `publish`.
        list: &'static str,
        /// What is wrong with it.
        source: PatternError,
    },
}

/// Why a request was refused (HTTP 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented.
    #[error("a bearer token is required")]
    Missing,
    /// The token presented is not a configured one.
    #[error("the bearer token is not valid")]
    Invalid,
}

struct Grant {
    token: Box<[u8]>,
    subscribe: Vec<Pattern>,
    publish: Vec<Pattern>,
}

/// The configured tokens, or none (open). Cheap to clone.
#[derive(Clone, Default)]
pub struct Access {
    grants: Arc<[Arc<Grant>]>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Access({} tokens)", self.grants.len())
    }
}

impl Access {
    /// No tokens: everything is allowed to everyone.
    pub fn open() -> Access {
        Access::default()
    }

    /// Checks and compiles a token list; an empty list is [`open`](Self::open).
    pub fn with_tokens(tokens: &[TokenConfig]) -> Result<Access, AccessError> {
        let mut grants: Vec<Arc<Grant>> = Vec::with_capacity(tokens.len());
        for (index, t) in tokens.iter().enumerate() {
            if t.token.is_empty() || t.token.chars().any(char::is_whitespace) {
                return Err(AccessError::BadToken { index });
            }
            if grants.iter().any(|g| *g.token == *t.token.as_bytes()) {
                return Err(AccessError::Duplicate { index });
            }
            let parse = |list: &'static str, patterns: &[String]| {
                patterns
                    .iter()
                    .map(|p| {
                        Pattern::parse(p).map_err(|source| AccessError::InvalidPattern {
                            index,
                            list,
                            source,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            grants.push(Arc::new(Grant {
                token: t.token.as_bytes().into(),
                subscribe: parse("subscribe", &t.subscribe)?,
                publish: parse("publish", &t.publish)?,
            }));
        }
        Ok(Access {
            grants: grants.into(),
        })
    }

    /// True when no token is configured.
    pub fn is_open(&self) -> bool {
        self.grants.is_empty()
    }

    /// The permissions of a presented token (anything is allowed when open).
    pub fn authorize(&self, token: Option<&str>) -> Result<Permissions, AuthError> {
        if self.is_open() {
            return Ok(Permissions(None));
        }
        let token = token.ok_or(AuthError::Missing)?;
        // Compare against every token, in time independent of where they differ.
        let mut found = None;
        for grant in self.grants.iter() {
            if same_bytes(&grant.token, token.as_bytes()) {
                found = Some(grant.clone());
            }
        }
        found
            .map(|g| Permissions(Some(g)))
            .ok_or(AuthError::Invalid)
    }

    /// [`authorize`](Self::authorize) with the token of a request: the
    /// `Authorization: Bearer` header, else the `token` query parameter.
    pub fn authorize_request(&self, req: &HttpRequest) -> Result<Permissions, AuthError> {
        if self.is_open() {
            return Ok(Permissions(None));
        }
        self.authorize(request_token(req)?.as_deref())
    }
}

/// The token a request presents, if any. A malformed `Authorization` header is invalid.
fn request_token(req: &HttpRequest) -> Result<Option<String>, AuthError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::Invalid)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Invalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Invalid);
        }
        return Ok(Some(token.trim().to_owned()));
    }
    let query = actix_web::web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|_| AuthError::Invalid)?;
    Ok(query
        .into_inner()
        .into_iter()
        .find_map(|(k, v)| (k == "token").then_some(v)))
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What one authorized client may do.
#[derive(Clone)]
pub struct Permissions(Option<Arc<Grant>>);

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Permissions(open)"),
            Some(g) => f
                .debug_struct("Permissions")
                .field("subscribe", &g.subscribe)
                .field("publish", &g.publish)
                .finish(),
        }
    }
}

impl Permissions {
    /// Everything allowed (an open service).
    pub fn all() -> Permissions {
        Permissions(None)
    }

    /// Whether a subscription to `pattern` is allowed.
    pub fn may_subscribe(&self, pattern: &Pattern) -> bool {
        match &self.0 {
            None => true,
            Some(g) => g.subscribe.iter().any(|allowed| allowed.covers(pattern)),
        }
    }

    /// Whether a publish to the (valid) topic `topic` is allowed.
    pub fn may_publish(&self, topic: &str) -> bool {
        match &self.0 {
            None => true,
            Some(g) => g.publish.iter().any(|allowed| allowed.matches(topic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn access() -> Access {
        Access::with_tokens(&[
            TokenConfig {
                token: "alpha".into(),
                subscribe: vec!["market.>".into()],
                publish: vec![],
            },
            TokenConfig {
                token: "beta".into(),
                subscribe: vec!["system.*".into()],
                publish: vec!["orders.>".into()],
            },
        ])
        .unwrap()
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let a = access();
        let req = TestRequest::default()
            .insert_header(("Authorization", "Bearer beta"))
            .to_http_request();
        assert!(a.authorize_request(&req).unwrap().may_publish("orders.new"));
        let req = TestRequest::with_uri("/ws?x=1&token=alpha").to_http_request();
        let p = a.authorize_request(&req).unwrap();
        assert!(!p.may_publish("orders.new"));
        assert!(p.may_subscribe(&Pattern::parse("market.*").unwrap()));
        let req = TestRequest::default().to_http_request();
        assert_eq!(a.authorize_request(&req).unwrap_err(), AuthError::Missing);
        for bad in ["Bearer gamma", "Basic YWxwaGE=", "alpha", "Bearer alph"] {
            let req = TestRequest::default()
                .insert_header(("Authorization", bad))
                .to_http_request();
            assert_eq!(
                a.authorize_request(&req).unwrap_err(),
                AuthError::Invalid,
                "{bad}"
            );
        }
        // Open: no token needed, and a token presented does not matter.
        let req = TestRequest::with_uri("/ws?token=zzz").to_http_request();
        assert!(Access::open().authorize_request(&req).is_ok());
    }

    #[test]
    fn bad_token_lists_are_refused_with_the_position() {
        let t = |token: &str, sub: &str| TokenConfig {
            token: token.into(),
            subscribe: vec![sub.into()],
            publish: vec![],
        };
        let err = Access::with_tokens(&[t("a", "x"), t("a", "y")]).unwrap_err();
        assert_eq!(err, AccessError::Duplicate { index: 1 });
        let err = Access::with_tokens(&[t("a b", "x")]).unwrap_err();
        assert_eq!(err, AccessError::BadToken { index: 0 });
        let err = Access::with_tokens(&[t("a", "x"), t("b", "x.>.y")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokens[1].subscribe: invalid pattern \"x.>.y\": `>` may only be the last token"
        );
        assert!(Access::with_tokens(&[]).unwrap().is_open());
        assert!(!format!("{:?}", t("hidden", "x")).contains("hidden"));
    }
}
