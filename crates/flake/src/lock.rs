//! `mini.lock`: the pins of a flake's inputs, as a pure format. Each input
//! the flake declares is pinned to what it was when it was locked: a git
//! input to a commit and the content hash of its tree, a path input to
//! the content hash of its files. The file is JSON with sorted keys, two
//! spaces of indentation and a final newline, so it diffs well in review:
//!
//! ```json
//! {
//!   "inputs": {
//!     "lib": {
//!       "flake": true,
//!       "narHash": "blake3:…",
//!       "rev": "…",
//!       "url": "git+file:../lib"
//!     }
//!   },
//!   "version": 1
//! }
//! ```
//!
//! `url` and `flake` repeat the declaration, so a lock that no longer
//! matches `flake.nixlike` is noticed ([`LockFile::staleness`]) instead of
//! being used for something else.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use mini_store::encoding::parse_nar_hash;

use crate::git::is_full_hash;

/// The lock file's name, beside `flake.nixlike`.
pub const LOCK_FILE: &str = "mini.lock";

/// The only format version there is.
const VERSION: u64 = 1;

/// An input as `flake.nixlike` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredInput {
    /// As written: `git+file:…`, `path:…` or a path.
    pub url: String,
    /// Whether the input is a flake (its outputs arrive) or only a source tree.
    pub flake: bool,
}

/// An input pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedInput {
    pub declared: DeclaredInput,
    /// The full commit hash, for git inputs.
    pub rev: Option<String>,
    /// The BLAKE3 hash of the input's canonical archive: `blake3:<hex>`.
    pub nar_hash: String,
}

/// The pins of every input, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockFile {
    pub inputs: BTreeMap<String, LockedInput>,
}

/// How a lock differs from the declarations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Staleness {
    /// Declared but not locked.
    pub unlocked: Vec<String>,
    /// Locked but no longer declared.
    pub undeclared: Vec<String>,
    /// Locked with another URL or `flake` setting than declared now.
    pub changed: Vec<String>,
}

impl Staleness {
    pub fn is_fresh(&self) -> bool {
        self.unlocked.is_empty() && self.undeclared.is_empty() && self.changed.is_empty()
    }

    /// One line per kind of difference.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (names, what) in [
            (&self.unlocked, "declared but not locked"),
            (&self.undeclared, "locked but no longer declared"),
            (&self.changed, "declared differently than when locked"),
        ] {
            if !names.is_empty() {
                let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
                parts.push(format!("{} {what}", quoted.join(", ")));
            }
        }
        parts.join("; ")
    }
}

impl LockFile {
    /// Reads a lock file's text; the message says what is wrong.
    pub fn parse(text: &str) -> Result<LockFile, String> {
        let json: Value = serde_json::from_str(text).map_err(|e| format!("it is not JSON: {e}"))?;
        let top = json.as_object().ok_or("it is not a JSON object")?;
        match top.get("version").and_then(Value::as_u64) {
            Some(VERSION) => {}
            Some(other) => return Err(format!("it has version {other}; this mini reads version {VERSION}")),
            None => return Err("it has no 'version' number".into()),
        }
        let inputs = match top.get("inputs") {
            Some(Value::Object(inputs)) => inputs,
            _ => return Err("it has no 'inputs' object".into()),
        };
        let mut lock = LockFile::default();
        for (name, entry) in inputs {
            let locked = parse_entry(entry).map_err(|e| format!("input '{name}': {e}"))?;
            lock.inputs.insert(name.clone(), locked);
        }
        Ok(lock)
    }

    /// The file's text: sorted keys, two-space indentation, final newline.
    pub fn render(&self) -> String {
        let inputs: serde_json::Map<String, Value> = self
            .inputs
            .iter()
            .map(|(name, locked)| {
                let mut entry = json!({
                    "flake": locked.declared.flake,
                    "narHash": locked.nar_hash,
                    "url": locked.declared.url,
                });
                if let Some(rev) = &locked.rev {
                    entry["rev"] = json!(rev);
                }
                (name.clone(), entry)
            })
            .collect();
        // serde_json's maps are sorted (no preserve_order feature here).
        let json = json!({ "inputs": inputs, "version": VERSION });
        let mut text = serde_json::to_string_pretty(&json).expect("a JSON value always serialises");
        text.push('\n');
        text
    }

    /// How this lock differs from `declared`.
    pub fn staleness(&self, declared: &BTreeMap<String, DeclaredInput>) -> Staleness {
        let mut staleness = Staleness::default();
        for (name, input) in declared {
            match self.inputs.get(name) {
                None => staleness.unlocked.push(name.clone()),
                Some(locked) if locked.declared != *input => staleness.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        staleness.undeclared = self.inputs.keys().filter(|n| !declared.contains_key(*n)).cloned().collect();
        staleness
    }
}

fn parse_entry(entry: &Value) -> Result<LockedInput, String> {
    let field = |key: &str| entry.get(key).ok_or(format!("it has no '{key}'"));
    let string = |key: &str| field(key)?.as_str().map(str::to_string).ok_or(format!("'{key}' is not a string"));
    let url = string("url")?;
    let flake = field("flake")?.as_bool().ok_or("'flake' is not true or false")?;
    let nar_hash = string("narHash")?;
    if parse_nar_hash(&nar_hash).is_none() {
        return Err(format!("'narHash' is '{nar_hash}', not blake3:<64 hex digits>"));
    }
    let rev = match entry.get("rev") {
        None => None,
        Some(Value::String(rev)) if is_full_hash(rev) => Some(rev.clone()),
        Some(other) => return Err(format!("'rev' is {other}, not a full commit hash")),
    };
    Ok(LockedInput { declared: DeclaredInput { url, flake }, rev, nar_hash })
}

#[cfg(test)]
mod tests {
    use mini_store::encoding::nar_hash_text;

    use super::*;

    fn declared(url: &str, flake: bool) -> DeclaredInput {
        DeclaredInput { url: url.into(), flake }
    }

    fn sample() -> LockFile {
        let mut lock = LockFile::default();
        lock.inputs.insert(
            "lib".into(),
            LockedInput {
                declared: declared("git+file:../lib", true),
                rev: Some("a".repeat(40)),
                nar_hash: nar_hash_text(&[0xab; 32]),
            },
        );
        lock.inputs.insert(
            "assets".into(),
            LockedInput { declared: declared("path:./assets", false), rev: None, nar_hash: nar_hash_text(&[1; 32]) },
        );
        lock
    }

    #[test]
    fn a_lock_renders_sorted_and_reads_back() {
        let lock = sample();
        let text = lock.render();
        assert!(text.ends_with("}\n"));
        let assets = text.find("\"assets\"").unwrap();
        assert!(assets < text.find("\"lib\"").unwrap() && text.find("\"version\": 1").unwrap() > assets, "{text}");
        assert!(!text[assets..text.find("\"lib\"").unwrap()].contains("\"rev\""), "path inputs have no rev");
        assert_eq!(LockFile::parse(&text).unwrap(), lock);
        assert_eq!(lock.render(), LockFile::parse(&text).unwrap().render(), "rendering is stable");
    }

    #[test]
    fn bad_lock_files_are_explained() {
        let err = |text: &str| LockFile::parse(text).unwrap_err();
        assert!(err("{").contains("not JSON"));
        assert!(err("[]").contains("not a JSON object"));
        assert!(err(r#"{"inputs":{}}"#).contains("no 'version'"));
        assert!(err(r#"{"version":2,"inputs":{}}"#).contains("version 2"));
        assert!(err(r#"{"version":1}"#).contains("no 'inputs'"));
        let entry = |body: &str| format!(r#"{{"version":1,"inputs":{{"x":{body}}}}}"#);
        assert!(err(&entry(r#"{"flake":true,"narHash":"blake3:00"}"#)).contains("input 'x': it has no 'url'"));
        assert!(err(&entry(r#"{"url":"u","flake":true,"narHash":"sha256-x"}"#)).contains("blake3:<64 hex"));
        let hash = nar_hash_text(&[0; 32]);
        let bad_rev = entry(&format!(r#"{{"url":"u","flake":1,"narHash":"{hash}"}}"#));
        assert!(err(&bad_rev).contains("'flake' is not true or false"));
        let bad_rev = entry(&format!(r#"{{"url":"u","flake":true,"narHash":"{hash}","rev":"main"}}"#));
        assert!(err(&bad_rev).contains("not a full commit hash"));
    }

    #[test]
    fn staleness_names_what_changed() {
        let lock = sample();
        let mut now = BTreeMap::new();
        now.insert("lib".to_string(), declared("git+file:../lib", true));
        now.insert("assets".to_string(), declared("path:./assets", false));
        assert!(lock.staleness(&now).is_fresh());

        now.insert("lib".to_string(), declared("git+file:../lib2", true));
        now.remove("assets");
        now.insert("tools".to_string(), declared("path:../tools", true));
        let stale = lock.staleness(&now);
        assert_eq!(stale.unlocked, ["tools"]);
        assert_eq!(stale.undeclared, ["assets"]);
        assert_eq!(stale.changed, ["lib"]);
        assert_eq!(
            stale.describe(),
            "'tools' declared but not locked; 'assets' locked but no longer declared; \
             'lib' declared differently than when locked"
        );
    }
}
