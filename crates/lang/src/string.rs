//! Strings as values hold them. Short strings (up to 14 bytes: most
//! attribute names, versions and words) live inline in the value itself with
//! no allocation; longer ones sit behind one shared pointer. Keeping this
//! type at 16 bytes is what keeps every `Value` and `Thunk` at 16 bytes.

use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

/// The longest string stored inline.
const INLINE: usize = 14;

/// An immutable, cheaply cloned string.
#[derive(Clone)]
pub struct NixStr(Repr);

#[derive(Clone)]
enum Repr {
    /// Invariant: `bytes[..len]` is valid UTF-8 (it is always copied from a `&str`).
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Heap(Rc<Box<str>>),
    /// Invariant: the context is sorted, free of duplicates and not empty.
    WithContext(Rc<(Box<str>, Box<[ContextElem]>)>),
}

/// One thing a string refers to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContextElem {
    /// A store path as such: added sources, `toFile` results.
    Path(String),
    /// An output of a derivation (`drv` is the `.drv` path).
    Output { drv: String, output: String },
    /// A derivation file with all its outputs (from `drvPath`).
    AllOutputs(String),
}

impl NixStr {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                let bytes = &bytes[..*len as usize];
                // SAFETY: inline bytes are always a copy of a whole `&str`
                // (see `From<&str>`), so they are valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            Repr::Heap(s) => s,
            Repr::WithContext(both) => &both.0,
        }
    }

    /// A string with context; sorts and deduplicates `context`.
    pub fn with_context(text: impl Into<String>, mut context: Vec<ContextElem>) -> NixStr {
        let text: String = text.into();
        if context.is_empty() {
            return NixStr::from(text);
        }
        context.sort();
        context.dedup();
        NixStr(Repr::WithContext(Rc::new((text.into_boxed_str(), context.into_boxed_slice()))))
    }

    /// What the string refers to (empty for most strings).
    pub fn context(&self) -> &[ContextElem] {
        match &self.0 {
            Repr::WithContext(both) => &both.1,
            _ => &[],
        }
    }

    /// The same text without context.
    pub fn without_context(&self) -> NixStr {
        match &self.0 {
            Repr::WithContext(both) => NixStr::from(&*both.0),
            _ => self.clone(),
        }
    }
}

impl From<&str> for NixStr {
    fn from(s: &str) -> NixStr {
        if s.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            NixStr(Repr::Inline { len: s.len() as u8, bytes })
        } else {
            NixStr(Repr::Heap(Rc::new(Box::from(s))))
        }
    }
}

impl From<String> for NixStr {
    fn from(s: String) -> NixStr {
        if s.len() <= INLINE {
            NixStr::from(s.as_str())
        } else {
            NixStr(Repr::Heap(Rc::new(s.into_boxed_str())))
        }
    }
}

impl From<&String> for NixStr {
    fn from(s: &String) -> NixStr {
        NixStr::from(s.as_str())
    }
}

impl Deref for NixStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for NixStr {
    fn eq(&self, other: &NixStr) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for NixStr {}

impl fmt::Display for NixStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NixStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_strings_round_trip() {
        for s in ["", "a", "é", "fourteen bytes", "fifteen bytes!!", "ünïcödé spanning the inline limit"] {
            assert_eq!(NixStr::from(s).as_str(), s);
            assert_eq!(NixStr::from(s.to_string()).as_str(), s);
        }
        assert_eq!(std::mem::size_of::<NixStr>(), 16);
        let with = NixStr::with_context(
            "x",
            vec![ContextElem::Path("/b".into()), ContextElem::Path("/a".into()), ContextElem::Path("/b".into())],
        );
        assert_eq!(with.as_str(), "x");
        assert_eq!(with.context(), &[ContextElem::Path("/a".into()), ContextElem::Path("/b".into())]);
        assert!(with.without_context().context().is_empty());
        assert!(NixStr::with_context("y", vec![]).context().is_empty());
        assert_eq!(std::mem::size_of::<crate::value::Value>(), 16);
        assert_eq!(std::mem::size_of::<crate::value::Thunk>(), 16);
    }
}
