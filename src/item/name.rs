//! [`Name`]: an item's route as the typed constructors take it, without an allocation for
//! a `&'static str`.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// An item's route (event name or message topic) as the typed constructors take it: a
/// `&'static str` is kept as it is, without an allocation; a `String` (or `Box<str>`,
/// `Arc<str>`, `Cow<'static, str>`, `&String`) is taken over or copied once. A name
/// borrowed for less than `'static` must be made owned first (`name.to_owned()`).
///
/// ```
/// use tickwire::Name;
/// let literal: Name = "market.tick".into();          // no allocation
/// let built: Name = format!("market.{}", "btc").into();
/// assert_eq!((&*literal, &*built), ("market.tick", "market.btc"));
/// ```
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Owned(Box<str>),
    Shared(Arc<str>),
}

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Owned(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Name {
    fn from(name: &'static str) -> Self {
        Name(Repr::Static(name))
    }
}

impl From<String> for Name {
    fn from(name: String) -> Self {
        Name(Repr::Owned(name.into_boxed_str()))
    }
}

impl From<&String> for Name {
    fn from(name: &String) -> Self {
        Name(Repr::Owned(name.as_str().into()))
    }
}

impl From<Box<str>> for Name {
    fn from(name: Box<str>) -> Self {
        Name(Repr::Owned(name))
    }
}

impl From<Arc<str>> for Name {
    fn from(name: Arc<str>) -> Self {
        Name(Repr::Shared(name))
    }
}

impl From<Cow<'static, str>> for Name {
    fn from(name: Cow<'static, str>) -> Self {
        match name {
            Cow::Borrowed(name) => name.into(),
            Cow::Owned(name) => name.into(),
        }
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_str().fmt(f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_str().fmt(f)
    }
}
