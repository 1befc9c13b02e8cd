//! Store paths: `/mini/store/<32 chars>-<name>`. The 32 characters are the
//! Nix base-32 encoding of 160 bits of a BLAKE3 digest over a fingerprint
//! that names the kind of path, its inner content digest, the store dir and
//! the name — so the same input gives the same path on every machine,
//! whatever directory the files physically live in.

use std::fmt;

use thiserror::Error;

use crate::base32;

/// The logical store directory. It is part of every path's hash, so it is
/// fixed: where files really live is a separate setting of the store.
pub const STORE_DIR: &str = "/mini/store";

/// Bytes of digest in a store path (160 bits).
pub const HASH_BYTES: usize = 20;
/// Characters of the hash part (`base32::encoded_len(HASH_BYTES)`).
pub const HASH_CHARS: usize = 32;
/// The longest name Nix allows.
pub const MAX_NAME_LEN: usize = 211;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StorePathError {
    #[error("store path name is empty")]
    EmptyName,
    #[error("store path name '{0}' is longer than {MAX_NAME_LEN} characters")]
    NameTooLong(String),
    #[error("store path name '{0}' must not begin with a period")]
    LeadingPeriod(String),
    #[error("store path name '{name}' contains the forbidden character '{c}' (allowed: letters, digits and +-._?=)")]
    BadNameChar { name: String, c: char },
    #[error("'{0}' is not in the store directory {STORE_DIR}")]
    NotInStore(String),
    #[error("'{0}' is not a store path: expected <32 base-32 characters>-<name>")]
    BadShape(String),
}

/// Checks a store path name as Nix does.
pub fn validate_name(name: &str) -> Result<(), StorePathError> {
    if name.is_empty() {
        return Err(StorePathError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StorePathError::NameTooLong(name.to_string()));
    }
    if name.starts_with('.') {
        return Err(StorePathError::LeadingPeriod(name.to_string()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(*c))) {
        return Err(StorePathError::BadNameChar { name: name.to_string(), c });
    }
    Ok(())
}

/// What a path holds, which is the first field of its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind<'a> {
    /// Content added from outside (`builtins.path`, `"${./src}"`, `mini store add`),
    /// hashed with its canonical archive; it may refer to other store paths.
    Source { references: &'a [StorePath] },
    /// A small text file such as a derivation, with the paths it mentions.
    Text { references: &'a [StorePath] },
    /// The output `name` of a derivation, addressed by the derivation's hash.
    Output { output: &'a str },
}

/// A path in the store, held as its hash part (the base-32 text, so that
/// showing a path costs nothing) and name. Paths order as their text does.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePath {
    hash: [u8; HASH_CHARS],
    name: String,
}

impl StorePath {
    /// Computes the path of `kind` content with inner digest `inner` (a
    /// BLAKE3 digest, or SHA-256 for fixed outputs declared that way).
    ///
    /// The fingerprint is `<kind>:<algo>:<hex inner>:/mini/store:<name>`, where
    /// `<kind>` is `source`, `text` (each followed by `:<reference>` for every
    /// reference, sorted) or `output:<output name>`. The path's digest is the
    /// first 160 bits of BLAKE3 over it; BLAKE3's output is uniform, so a
    /// prefix is as strong as Nix's XOR-fold of a longer digest.
    pub fn compute(kind: &PathKind, algo: &str, inner: &[u8], name: &str) -> Result<StorePath, StorePathError> {
        validate_name(name)?;
        let fingerprint = fingerprint(kind, algo, inner, name);
        let full = blake3::hash(fingerprint.as_bytes());
        let mut hash = [0; HASH_CHARS];
        hash.copy_from_slice(base32::encode(&full.as_bytes()[..HASH_BYTES]).as_bytes());
        Ok(StorePath { hash, name: name.to_string() })
    }

    /// Parses `/mini/store/<hash>-<name>` (anything below it, like
    /// `/mini/store/<hash>-<name>/bin/sh`, is rejected: use [`StorePath::parse_prefix`]).
    pub fn parse(path: &str) -> Result<StorePath, StorePathError> {
        let base = path
            .strip_prefix(STORE_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore(path.to_string()))?;
        StorePath::parse_base_name(base)
    }

    /// Parses the store path a path inside the store belongs to, and returns
    /// the rest (`""` or `/bin/sh`).
    pub fn parse_prefix(path: &str) -> Result<(StorePath, &str), StorePathError> {
        let base = path
            .strip_prefix(STORE_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore(path.to_string()))?;
        let end = base.find('/').unwrap_or(base.len());
        Ok((StorePath::parse_base_name(&base[..end])?, &base[end..]))
    }

    /// Parses `<hash>-<name>`, the file name of a store path.
    pub fn parse_base_name(base: &str) -> Result<StorePath, StorePathError> {
        let bad_shape = || StorePathError::BadShape(base.to_string());
        if base.len() < HASH_CHARS + 2 || base.as_bytes()[HASH_CHARS] != b'-' {
            return Err(bad_shape());
        }
        let (hash_text, name) = (&base.as_bytes()[..HASH_CHARS], &base[HASH_CHARS + 1..]);
        // 32 base-32 characters are exactly 160 bits: any such text is a digest.
        if !hash_text.iter().all(|&c| base32::is_base32_char(c)) {
            return Err(bad_shape());
        }
        validate_name(name)?;
        let mut hash = [0; HASH_CHARS];
        hash.copy_from_slice(hash_text);
        Ok(StorePath { hash, name: name.to_string() })
    }

    /// The 32-character hash part, which is what reference scanning looks for.
    pub fn hash_part(&self) -> String {
        self.hash_str().to_string()
    }

    fn hash_str(&self) -> &str {
        // Only ever filled from base-32 text, which is ASCII.
        std::str::from_utf8(&self.hash).expect("the hash part is ASCII")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<hash>-<name>`: the path's file name inside the store directory.
    pub fn base_name(&self) -> String {
        format!("{}-{}", self.hash_str(), self.name)
    }
}

fn fingerprint(kind: &PathKind, algo: &str, inner: &[u8], name: &str) -> String {
    let mut kind_text = match kind {
        PathKind::Source { .. } => "source".to_string(),
        PathKind::Text { .. } => "text".to_string(),
        PathKind::Output { output } => format!("output:{output}"),
    };
    if let PathKind::Source { references } | PathKind::Text { references } = kind {
        let mut refs: Vec<String> = references.iter().map(|r| r.to_string()).collect();
        refs.sort();
        for r in refs {
            kind_text.push(':');
            kind_text.push_str(&r);
        }
    }
    let hex = crate::encoding::hex(inner);
    format!("{kind_text}:{algo}:{hex}:{STORE_DIR}:{name}")
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE_DIR}/{}-{}", self.hash_str(), self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({self})")
    }
}

/// Splits a derivation or store path name into its name and version as
/// Nix's `parseDrvName` does: the version starts after the first `-` that
/// is followed by something other than a letter (`hello-2.12.1` gives
/// `hello` and `2.12.1`, `foo-bar-1.0-rc1` gives `foo-bar` and `1.0-rc1`);
/// without one the version is empty.
pub fn parse_drv_name(name: &str) -> (&str, &str) {
    let bytes = name.as_bytes();
    let split =
        (0..bytes.len()).find(|&i| bytes[i] == b'-' && i + 1 < bytes.len() && !bytes[i + 1].is_ascii_alphabetic());
    match split {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (name, ""),
    }
}

/// A source path whose content digest is that of its own name: a cheap,
/// distinct path for tests.
#[cfg(test)]
pub(crate) fn source_path_for_tests(name: &str) -> StorePath {
    let digest = blake3::hash(name.as_bytes());
    StorePath::compute(&PathKind::Source { references: &[] }, "blake3", digest.as_bytes(), name)
        .expect("valid test name")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from `builtins.parseDrvName` in Nix 2.8.
    #[test]
    fn drv_names_split_as_nix_does() {
        assert_eq!(parse_drv_name("hello-2.12.1"), ("hello", "2.12.1"));
        assert_eq!(parse_drv_name("nix-0.12pre12876"), ("nix", "0.12pre12876"));
        assert_eq!(parse_drv_name("foo-bar-1.0-rc1"), ("foo-bar", "1.0-rc1"));
        assert_eq!(parse_drv_name("a-b-c"), ("a-b-c", ""));
        assert_eq!(parse_drv_name("go-modules"), ("go-modules", ""));
        assert_eq!(parse_drv_name("hello"), ("hello", ""));
        assert_eq!(parse_drv_name("hello-"), ("hello-", ""));
        assert_eq!(parse_drv_name("x--1"), ("x", "-1"));
        assert_eq!(parse_drv_name("-1"), ("", "1"));
        assert_eq!(parse_drv_name("app-1.0-go-modules"), ("app", "1.0-go-modules"));
        assert_eq!(parse_drv_name("python3.11-foo-1.2"), ("python3.11-foo", "1.2"));
        assert_eq!(parse_drv_name(""), ("", ""));
    }

    #[test]
    fn names_are_validated_as_nix_does() {
        assert!(validate_name("hello-2.12.1").is_ok());
        assert!(validate_name("a+b=c?d_e").is_ok());
        assert_eq!(validate_name(""), Err(StorePathError::EmptyName));
        assert_eq!(validate_name(".hidden"), Err(StorePathError::LeadingPeriod(".hidden".into())));
        assert!(matches!(validate_name("a b"), Err(StorePathError::BadNameChar { c: ' ', .. })));
        assert!(matches!(validate_name("a/b"), Err(StorePathError::BadNameChar { c: '/', .. })));
        assert!(validate_name(&"x".repeat(211)).is_ok());
        assert!(matches!(validate_name(&"x".repeat(212)), Err(StorePathError::NameTooLong(_))));
    }

    /// Golden vector: pins the fingerprint format and the digest truncation.
    /// Changing either changes every store path mini has ever made.
    #[test]
    fn computed_paths_are_stable() {
        let inner = blake3::hash(b"hello");
        let p = StorePath::compute(&PathKind::Source { references: &[] }, "blake3", inner.as_bytes(), "hello").unwrap();
        let expected_fingerprint = format!("source:blake3:{}:/mini/store:hello", inner.to_hex());
        assert_eq!(
            fingerprint(&PathKind::Source { references: &[] }, "blake3", inner.as_bytes(), "hello"),
            expected_fingerprint
        );
        let digest = blake3::hash(expected_fingerprint.as_bytes());
        assert_eq!(p.hash_part(), base32::encode(&digest.as_bytes()[..20]));
        assert_eq!(p.to_string(), format!("/mini/store/{}-hello", p.hash_part()));
        // Cross-checked with an independent Python computation (blake3 package).
        assert_eq!(p.to_string(), "/mini/store/n99w98qcgvdv7skgii847s4s7497ni34-hello");
    }

    #[test]
    fn kind_references_and_name_all_change_the_path() {
        let inner = [7u8; 32];
        let src = StorePath::compute(&PathKind::Source { references: &[] }, "blake3", &inner, "x").unwrap();
        let text = StorePath::compute(&PathKind::Text { references: &[] }, "blake3", &inner, "x").unwrap();
        let out = StorePath::compute(&PathKind::Output { output: "out" }, "blake3", &inner, "x").unwrap();
        let refd =
            StorePath::compute(&PathKind::Source { references: std::slice::from_ref(&src) }, "blake3", &inner, "x")
                .unwrap();
        let renamed = StorePath::compute(&PathKind::Source { references: &[] }, "blake3", &inner, "y").unwrap();
        let all = [&src, &text, &out, &refd, &renamed];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.hash_part(), b.hash_part());
            }
        }
    }

    #[test]
    fn reference_order_does_not_matter() {
        let a = StorePath::compute(&PathKind::Source { references: &[] }, "blake3", &[1; 32], "a").unwrap();
        let b = StorePath::compute(&PathKind::Source { references: &[] }, "blake3", &[2; 32], "b").unwrap();
        let ab = StorePath::compute(&PathKind::Text { references: &[a.clone(), b.clone()] }, "blake3", &[3; 32], "t")
            .unwrap();
        let ba = StorePath::compute(&PathKind::Text { references: &[b, a] }, "blake3", &[3; 32], "t").unwrap();
        assert_eq!(ab, ba);
    }

    #[test]
    fn parse_round_trips_and_rejects() {
        let p = StorePath::compute(&PathKind::Source { references: &[] }, "blake3", &[9; 32], "tool-1.0").unwrap();
        assert_eq!(StorePath::parse(&p.to_string()).unwrap(), p);
        let inside = format!("{p}/bin/sh");
        let (q, rest) = StorePath::parse_prefix(&inside).unwrap();
        assert_eq!((q, rest), (p.clone(), "/bin/sh"));
        assert!(matches!(StorePath::parse("/nix/store/x"), Err(StorePathError::NotInStore(_))));
        assert!(matches!(StorePath::parse("/mini/store/short-x"), Err(StorePathError::BadShape(_))));
        let bad_char = format!("/mini/store/{}-x", "e".repeat(32));
        assert!(matches!(StorePath::parse(&bad_char), Err(StorePathError::BadShape(_))));
        let bad_name = format!("/mini/store/{}-.x", p.hash_part());
        assert!(matches!(StorePath::parse(&bad_name), Err(StorePathError::LeadingPeriod(_))));
    }
}
