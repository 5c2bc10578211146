//! The `Sec-WebSocket-Extensions` grammar (RFC 6455 §9.1, with HTTP's list rules):
//!
//! ```text
//! extension-list = 1#extension          ; comma-separated, empty elements allowed
//! extension      = token *( OWS ";" OWS extension-param )
//! extension-param = token [ OWS "=" OWS ( token / quoted-string ) ]
//! ```
//!
//! Optional whitespace is accepted around `;`, `,` and `=`. A header value is split into
//! elements at the commas outside quoted strings (so one element that does not parse
//! costs only itself); a quoted string left open runs to the end of the value. Nothing
//! here allocates.

/// One element of the comma-separated list.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Element<'a> {
    /// Nothing but whitespace (`a, , b`).
    Empty,
    /// An extension name, and the text of its parameters (read by [`Extension::params`]).
    Extension(Extension<'a>),
    /// Text that does not start with an extension name followed by `;` or the end.
    Malformed,
}

/// An extension offer: its name and the text after it, up to the element's end.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Extension<'a> {
    /// The extension's name (a token).
    pub(super) name: &'a str,
    /// What follows the name: empty, or starting with `;` (after whitespace).
    params: &'a str,
}

/// A parameter's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Value<'a> {
    /// A token.
    Token(&'a str),
    /// The inside of a quoted string, backslash escapes still in.
    Quoted(&'a str),
}

impl<'a> Value<'a> {
    /// The value's bytes, with quoted-pair escapes (`\x` → `x`) removed.
    pub(super) fn unescaped(self) -> impl Iterator<Item = u8> + 'a {
        let (text, quoted) = match self {
            Value::Token(text) => (text, false),
            Value::Quoted(text) => (text, true),
        };
        let mut bytes = text.bytes();
        std::iter::from_fn(move || {
            let byte = bytes.next()?;
            if quoted && byte == b'\\' {
                bytes.next()
            } else {
                Some(byte)
            }
        })
    }
}

/// The elements of one header value, in order.
pub(super) fn elements(value: &str) -> impl Iterator<Item = Element<'_>> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let text = rest?;
        let end = element_end(text.as_bytes());
        rest = text.get(end + 1..);
        Some(element(&text[..end]))
    })
}

impl<'a> Extension<'a> {
    /// Its parameters, in order: `Some((name, value))` each, and a final `None` (after
    /// which nothing follows) where the text stops parsing.
    pub(super) fn params(&self) -> impl Iterator<Item = Option<(&'a str, Option<Value<'a>>)>> {
        let mut rest = Some(self.params);
        std::iter::from_fn(move || {
            let text = skip_ows(rest?);
            if text.is_empty() {
                rest = None;
                return None;
            }
            let parsed = param(text);
            rest = parsed.map(|(_, after)| after);
            Some(parsed.map(|(param, _)| param))
        })
    }
}

/// One element (between commas): empty, an extension, or malformed.
fn element(text: &str) -> Element<'_> {
    let text = skip_ows(text);
    if text.is_empty() {
        return Element::Empty;
    }
    let Some((name, after)) = token(text) else {
        return Element::Malformed;
    };
    let params = skip_ows(after);
    if !params.is_empty() && !params.starts_with(';') {
        return Element::Malformed;
    }
    Element::Extension(Extension { name, params })
}

/// `";" OWS token [ OWS "=" OWS ( token / quoted-string ) ] OWS` at the start of `text`
/// (which starts after whitespace): the parameter and the text after it.
#[allow(clippy::type_complexity)]
fn param(text: &str) -> Option<((&str, Option<Value<'_>>), &str)> {
    let text = skip_ows(text.strip_prefix(';')?);
    let (name, after) = token(text)?;
    let after = skip_ows(after);
    let Some(value_text) = after.strip_prefix('=') else {
        return Some(((name, None), after));
    };
    let value_text = skip_ows(value_text);
    let (value, after) = if let Some(quoted) = value_text.strip_prefix('"') {
        let end = quoted_end(quoted.as_bytes())?;
        (Value::Quoted(&quoted[..end]), &quoted[end + 1..])
    } else {
        let (value, after) = token(value_text)?;
        (Value::Token(value), after)
    };
    let after = skip_ows(after);
    if !after.is_empty() && !after.starts_with(';') {
        return None;
    }
    Some(((name, Some(value)), after))
}

/// The token at the start of `text` and what follows it, if there is one.
fn token(text: &str) -> Option<(&str, &str)> {
    let len = text.bytes().take_while(|&b| is_tchar(b)).count();
    (len > 0).then(|| text.split_at(len))
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn skip_ows(text: &str) -> &str {
    text.trim_start_matches([' ', '\t'])
}

/// The index of the first comma outside a quoted string, or the length.
fn element_end(bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b',' => return i,
            b'"' => match quoted_end(&bytes[i + 1..]) {
                Some(end) => i += end + 1,
                None => return bytes.len(),
            },
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// In the text after an opening quote: the index of the closing quote, if the string is
/// well-formed (qdtext and quoted-pairs, no control character but HTAB).
fn quoted_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some(i),
            b'\\' => {
                let escaped = *bytes.get(i + 1)?;
                if escaped != b'\t' && (escaped < 0x20 || escaped == 0x7f) {
                    return None;
                }
                i += 1;
            }
            b'\t' => {}
            b if b < 0x20 || b == 0x7f => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(name: &str, params: &str) -> Element<'static> {
        Element::Extension(Extension {
            name: Box::leak(name.to_owned().into_boxed_str()),
            params: Box::leak(params.to_owned().into_boxed_str()),
        })
    }

    #[test]
    fn splits_at_commas_outside_quotes() {
        let got: Vec<_> = elements(r#"a; x="1,\",2", , b ,c;d"#).collect();
        assert_eq!(
            got,
            vec![
                ext("a", r#"; x="1,\",2""#),
                Element::Empty,
                ext("b", ""),
                ext("c", ";d")
            ]
        );
        assert_eq!(elements("").collect::<Vec<_>>(), vec![Element::Empty]);
        assert_eq!(
            elements("a,").collect::<Vec<_>>(),
            vec![ext("a", ""), Element::Empty]
        );
        assert_eq!(
            elements("=a, b c, \"q\"").collect::<Vec<_>>(),
            vec![Element::Malformed, Element::Malformed, Element::Malformed]
        );
        // An open quote runs to the end.
        assert_eq!(
            elements("a; x=\"1, b").collect::<Vec<_>>(),
            vec![ext("a", "; x=\"1, b")]
        );
    }

    #[test]
    fn params_and_values() {
        let Element::Extension(e) = element(r#"e ; a ;b= 1; c="x\"y" ;d=tok"#) else {
            panic!("not an extension");
        };
        let got: Vec<_> = e.params().collect();
        assert_eq!(
            got,
            vec![
                Some(("a", None)),
                Some(("b", Some(Value::Token("1")))),
                Some(("c", Some(Value::Quoted(r#"x\"y"#)))),
                Some(("d", Some(Value::Token("tok")))),
            ]
        );
        assert_eq!(
            Value::Quoted(r#"x\"y\\"#).unescaped().collect::<Vec<_>>(),
            b"x\"y\\".to_vec()
        );
        for bad in [
            "e;",
            "e; =1",
            "e; a=",
            "e; a=\"1",
            "e; a b",
            "e; a=1 2",
            "e; a=\"1\"x",
        ] {
            let Element::Extension(e) = element(bad) else {
                panic!("{bad:?} is not an extension");
            };
            assert_eq!(e.params().last(), Some(None), "{bad:?}");
        }
    }

    #[test]
    fn control_characters_are_refused_in_quotes() {
        assert_eq!(quoted_end(b"a\x01\""), None);
        assert_eq!(quoted_end(b"a\\\x01\""), None);
        assert_eq!(quoted_end(b"a\t\\\t\""), Some(4));
        assert_eq!(quoted_end(b"\xc3\xa9\""), Some(2));
    }
}
