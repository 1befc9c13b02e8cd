//! `debian.lock`: the closure of Debian packages a flake builds with,
//! each pinned by version, pool file name, size and SHA-256. `mini debian
//! lock` writes it ([`Lock::to_json`]) and the prelude reads it with
//! `builtins.fromJSON`, so the text is one canonical form: keys in a fixed
//! order, packages sorted by name then architecture, lists sorted, two
//! spaces of indentation and a final newline; equal locks are equal bytes,
//! and a re-resolution that changes nothing rewrites nothing.
//!
//! [`Lock::parse`] checks everything the prelude and the builders will
//! trust: the names, versions and architectures that reach apt's command
//! line, the hashes, the pool file names, and that every dependency named
//! is in the lock. A file that fails is reported with where and what was
//! expected, and how to make it again. Pure: no I/O here.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::names;

/// The format version this mini writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// A resolved closure of Debian packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The suite or codename resolved against (`bookworm`).
    pub suite: String,
    /// The architecture resolved for (`amd64`).
    pub architecture: String,
    /// The packages asked for, sorted; the rest of the closure is what they need.
    pub requested: Vec<String>,
    /// The whole closure, sorted by name then architecture.
    pub packages: Vec<LockedPackage>,
}

/// One `.deb` of the closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedPackage {
    pub name: String,
    /// With its epoch, if any (`1:1.2.13.dfsg-1`).
    pub version: String,
    /// The lock's architecture, or `all`.
    pub architecture: String,
    /// The path in the archive (`pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb`).
    pub filename: String,
    pub size: u64,
    /// 64 lowercase hex digits.
    pub sha256: String,
    /// The packages of this lock that satisfy its Depends and Pre-Depends, sorted.
    pub depends: Vec<String>,
}

/// Why a lock file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{file}:{line}:{column}: not valid JSON: {message}\n       {fix}")]
    Syntax { file: String, line: usize, column: usize, message: String, fix: String },
    #[error("{file}: {at}: {message}\n       {fix}")]
    Invalid { file: String, at: String, message: String, fix: String },
}

impl Lock {
    /// Puts packages and every list into the canonical order.
    pub fn normalize(&mut self) {
        self.requested.sort();
        self.requested.dedup();
        for package in &mut self.packages {
            package.depends.sort();
            package.depends.dedup();
        }
        self.packages.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    }

    /// The command that makes this lock again from the host's apt.
    pub fn lock_command(&self) -> String {
        lock_command(&self.suite, &self.architecture, &self.requested)
    }

    /// The lock's text: the canonical JSON described in the module's documentation.
    pub fn to_json(&self) -> String {
        let mut lock = self.clone();
        lock.normalize();
        let mut out = String::from("{\n");
        out.push_str(&format!("  \"version\": {FORMAT_VERSION},\n"));
        out.push_str(&format!("  \"suite\": {},\n", string(&lock.suite)));
        out.push_str(&format!("  \"architecture\": {},\n", string(&lock.architecture)));
        out.push_str(&format!("  \"requested\": {},\n", list(&lock.requested)));
        if lock.packages.is_empty() {
            out.push_str("  \"packages\": []\n}\n");
            return out;
        }
        out.push_str("  \"packages\": [\n");
        for (i, p) in lock.packages.iter().enumerate() {
            out.push_str("    {\n");
            out.push_str(&format!("      \"name\": {},\n", string(&p.name)));
            out.push_str(&format!("      \"version\": {},\n", string(&p.version)));
            out.push_str(&format!("      \"architecture\": {},\n", string(&p.architecture)));
            out.push_str(&format!("      \"filename\": {},\n", string(&p.filename)));
            out.push_str(&format!("      \"size\": {},\n", p.size));
            out.push_str(&format!("      \"sha256\": {},\n", string(&p.sha256)));
            out.push_str(&format!("      \"depends\": {}\n", list(&p.depends)));
            out.push_str(if i + 1 == lock.packages.len() { "    }\n" } else { "    },\n" });
        }
        out.push_str("  ]\n}\n");
        out
    }

    /// Reads and checks the lock in `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Lock, LockError> {
        let value: Value = serde_json::from_str(text).map_err(|e| LockError::Syntax {
            file: file.to_string(),
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
            fix: generic_fix(),
        })?;
        Reader { file, fix: generic_fix() }.lock(&value)
    }
}

/// How one package's pin differs between two locks of the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Another version.
    Moved { name: String, from: String, to: String },
    /// The same version with another file (the archive rebuilt it).
    Refiled { name: String, version: String },
    /// In the new lock only.
    Added { name: String, version: String },
    /// In the old lock only.
    Removed { name: String, version: String },
    /// The same file, depending on other locked packages.
    Redepended { name: String, version: String },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Moved { name, from, to } => write!(f, "{name} {from} -> {to}"),
            Change::Refiled { name, version } => write!(f, "{name} {version}: another file, with another sha256"),
            Change::Added { name, version } => write!(f, "{name} {version} (new)"),
            Change::Removed { name, version } => write!(f, "{name} {version} (no longer needed)"),
            Change::Redepended { name, version } => write!(f, "{name} {version}: other dependencies"),
        }
    }
}

/// What changed from `old` to `new`, package by package, sorted by name.
pub fn changes(old: &Lock, new: &Lock) -> Vec<Change> {
    let key = |p: &LockedPackage| (p.name.clone(), p.architecture.clone());
    let before: std::collections::BTreeMap<_, _> = old.packages.iter().map(|p| (key(p), p)).collect();
    let after: std::collections::BTreeMap<_, _> = new.packages.iter().map(|p| (key(p), p)).collect();
    let mut changes = Vec::new();
    for k in before.keys().chain(after.keys()).collect::<BTreeSet<_>>() {
        let name = k.0.clone();
        match (before.get(k), after.get(k)) {
            (Some(was), Some(now)) if was.version != now.version => {
                changes.push(Change::Moved { name, from: was.version.clone(), to: now.version.clone() })
            }
            (Some(was), Some(now)) if was.sha256 != now.sha256 || was.filename != now.filename => {
                changes.push(Change::Refiled { name, version: now.version.clone() })
            }
            (Some(was), Some(now)) if was.depends != now.depends => {
                changes.push(Change::Redepended { name, version: now.version.clone() })
            }
            (None, Some(now)) => changes.push(Change::Added { name, version: now.version.clone() }),
            (Some(was), None) => changes.push(Change::Removed { name, version: was.version.clone() }),
            _ => {}
        }
    }
    changes
}

/// `mini debian lock --suite S --arch A PACKAGE… > debian.lock`.
pub fn lock_command(suite: &str, architecture: &str, requested: &[String]) -> String {
    format!("mini debian lock --suite {suite} --arch {architecture} {} > debian.lock", requested.join(" "))
}

/// What to do about a lock that cannot be read, when its own command is not known.
fn generic_fix() -> String {
    "make it again with `mini debian lock PACKAGE... > debian.lock` rather than editing it".to_string()
}

/// What to do about a lock whose command is known.
fn known_fix(command: &str) -> String {
    format!("it was edited by hand or is damaged; make it again with `{command}`")
}

/// serde_json's message without its own ` at line L column C` (the error says where first).
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// `s` as a JSON string.
fn string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// `items` as a one-line JSON list: `["a", "b"]`.
fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| string(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Reads a parsed lock, saying where anything is wrong.
struct Reader<'a> {
    file: &'a str,
    fix: String,
}

impl Reader<'_> {
    fn invalid(&self, at: &str, message: impl Into<String>) -> LockError {
        LockError::Invalid {
            file: self.file.to_string(),
            at: at.to_string(),
            message: message.into(),
            fix: self.fix.clone(),
        }
    }

    /// The object at `at`, which must have exactly the keys `keys`.
    fn object<'v>(&self, value: &'v Value, at: &str, keys: &[&str]) -> Result<&'v Map<String, Value>, LockError> {
        let map = value.as_object().ok_or_else(|| self.invalid(at, "expected an object"))?;
        if let Some(unknown) = map.keys().find(|k| !keys.contains(&k.as_str())) {
            return Err(self.invalid(at, format!("unexpected key \"{unknown}\"; expected {}", keys.join(", "))));
        }
        if let Some(missing) = keys.iter().find(|k| !map.contains_key(**k)) {
            return Err(self.invalid(at, format!("missing key \"{missing}\"")));
        }
        Ok(map)
    }

    /// The string at `at`, which `valid` must accept (`rule` says what it wants).
    fn text(&self, value: &Value, at: &str, valid: fn(&str) -> bool, rule: &str) -> Result<String, LockError> {
        let text = value.as_str().ok_or_else(|| self.invalid(at, "expected a string"))?;
        if !valid(text) {
            return Err(self.invalid(at, format!("{} is not valid: {rule}", string(text))));
        }
        Ok(text.to_string())
    }

    /// The sorted list of unique package names at `at`.
    fn names(&self, value: &Value, at: &str) -> Result<Vec<String>, LockError> {
        let items = value.as_array().ok_or_else(|| self.invalid(at, "expected a list of package names"))?;
        let mut names = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            names.push(self.text(item, &format!("{at}[{i}]"), names::is_package, names::PACKAGE_RULE)?);
        }
        if names.windows(2).any(|w| w[0] >= w[1]) {
            return Err(self.invalid(at, "expected the names sorted, each once"));
        }
        Ok(names)
    }

    fn lock(&mut self, value: &Value) -> Result<Lock, LockError> {
        let map =
            self.object(value, "the top level", &["version", "suite", "architecture", "requested", "packages"])?;
        match map["version"].as_u64() {
            Some(FORMAT_VERSION) => {}
            _ => {
                return Err(self.invalid(
                    "version",
                    format!("this mini reads lock version {FORMAT_VERSION}, not {}", map["version"]),
                ))
            }
        }
        let suite = self.text(&map["suite"], "suite", names::is_suite, names::SUITE_RULE)?;
        let architecture =
            self.text(&map["architecture"], "architecture", names::is_architecture, names::ARCHITECTURE_RULE)?;
        let requested = self.names(&map["requested"], "requested")?;
        if requested.is_empty() {
            return Err(self.invalid("requested", "expected at least one package"));
        }
        self.fix = known_fix(&lock_command(&suite, &architecture, &requested));
        let items = map["packages"].as_array().ok_or_else(|| self.invalid("packages", "expected a list"))?;
        let mut packages = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            packages.push(self.package(item, &format!("packages[{i}]"), &architecture)?);
        }
        for (i, pair) in packages.windows(2).enumerate() {
            let order = (&pair[0].name, &pair[0].architecture).cmp(&(&pair[1].name, &pair[1].architecture));
            match order {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(self.invalid(
                        &format!("packages[{}]", i + 1),
                        format!("{} ({}) is in the lock twice", pair[1].name, pair[1].architecture),
                    ))
                }
                std::cmp::Ordering::Greater => {
                    return Err(self.invalid(
                        &format!("packages[{}]", i + 1),
                        "expected the packages sorted by name, then architecture",
                    ))
                }
            }
        }
        let present: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
        for (i, package) in packages.iter().enumerate() {
            if let Some(missing) = package.depends.iter().find(|d| !present.contains(d.as_str())) {
                return Err(self.invalid(
                    &format!("packages[{i}].depends"),
                    format!("{} depends on {missing}, which is not in the lock", package.name),
                ));
            }
        }
        if let Some(missing) = requested.iter().find(|r| !present.contains(r.as_str())) {
            return Err(self.invalid("requested", format!("{missing} is requested but not in the packages")));
        }
        Ok(Lock { suite, architecture, requested, packages })
    }

    fn package(&self, value: &Value, at: &str, architecture: &str) -> Result<LockedPackage, LockError> {
        let keys = ["name", "version", "architecture", "filename", "size", "sha256", "depends"];
        let map = self.object(value, at, &keys)?;
        let field = |key: &str| format!("{at}.{key}");
        let name = self.text(&map["name"], &field("name"), names::is_package, names::PACKAGE_RULE)?;
        let version = self.text(&map["version"], &field("version"), names::is_version, names::VERSION_RULE)?;
        let arch =
            self.text(&map["architecture"], &field("architecture"), names::is_architecture, names::ARCHITECTURE_RULE)?;
        if arch != architecture && arch != "all" {
            return Err(self.invalid(
                &field("architecture"),
                format!("expected the lock's architecture, {architecture}, or all, not {arch}"),
            ));
        }
        let filename = self.text(
            &map["filename"],
            &field("filename"),
            is_pool_filename,
            "a file name in the archive is a relative path (like pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb) \
             of letters, digits and '.', '+', '~', '%', '_', '-', with no '.' or '..' component",
        )?;
        let size = map["size"].as_u64().ok_or_else(|| self.invalid(&field("size"), "expected a whole number"))?;
        let sha256 = self.text(&map["sha256"], &field("sha256"), is_sha256, "expected 64 lowercase hex digits")?;
        let depends = self.names(&map["depends"], &field("depends"))?;
        Ok(LockedPackage { name, version, architecture: arch, filename, size, sha256, depends })
    }
}

/// Whether `name` is a relative path into an archive that goes nowhere else.
pub fn is_pool_filename(name: &str) -> bool {
    name.len() <= 1024
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b".+~%_-".contains(&b))
        })
}

/// Whether `hash` is a SHA-256 as the lock writes it.
pub fn is_sha256(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, arch: &str, depends: &[&str]) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: "1:2.0-1+b1".into(),
            architecture: arch.into(),
            filename: format!("pool/main/x/{name}/{name}_2.0-1+b1_{arch}.deb"),
            size: 1234,
            sha256: "ab".repeat(32),
            depends: depends.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn sample() -> Lock {
        Lock {
            suite: "bookworm".into(),
            architecture: "amd64".into(),
            requested: vec!["make".into(), "dash".into()],
            packages: vec![
                package("make", "amd64", &["libc6"]),
                package("libc6", "amd64", &["libgcc-s1"]),
                package("libgcc-s1", "amd64", &["libc6"]),
                package("dash", "amd64", &["libc6", "debianutils"]),
                package("debianutils", "amd64", &[]),
            ],
        }
    }

    const SAMPLE_HEAD: &str = "{\n  \"version\": 1,\n  \"suite\": \"bookworm\",\n  \"architecture\": \"amd64\",\n  \
                               \"requested\": [\"dash\", \"make\"],\n  \"packages\": [\n    {\n      \"name\": \"dash\",\n      \
                               \"version\": \"1:2.0-1+b1\",\n      \"architecture\": \"amd64\",\n      \
                               \"filename\": \"pool/main/x/dash/dash_2.0-1+b1_amd64.deb\",\n      \"size\": 1234,\n      \
                               \"sha256\": \"abababababababababababababababababababababababababababababababab\",\n      \
                               \"depends\": [\"debianutils\", \"libc6\"]\n    },\n    {\n      \"name\": \"debianutils\",\n";

    #[test]
    fn the_text_is_canonical_and_reads_back() {
        let lock = sample();
        let text = lock.to_json();
        assert!(text.starts_with(SAMPLE_HEAD), "{text}");
        assert!(text.ends_with("      \"depends\": [\"libc6\"]\n    }\n  ]\n}\n"), "{text}");
        assert!(text.contains("\"depends\": []\n"), "{text}");
        let read = Lock::parse(&text, "debian.lock").unwrap();
        assert_eq!(read.to_json(), text);
        let mut shuffled = sample();
        shuffled.packages.reverse();
        shuffled.requested.reverse();
        assert_eq!(shuffled.to_json(), text, "the same lock in another order is the same bytes");
        let mut normal = lock.clone();
        normal.normalize();
        assert_eq!(read, normal);
        let empty = Lock { packages: vec![], ..sample() }.to_json();
        assert!(empty.ends_with("\"packages\": []\n}\n"), "{empty}");
    }

    #[test]
    fn the_lock_says_how_to_make_it_again() {
        assert_eq!(sample().lock_command(), "mini debian lock --suite bookworm --arch amd64 make dash > debian.lock");
        let mut normal = sample();
        normal.normalize();
        assert_eq!(normal.lock_command(), "mini debian lock --suite bookworm --arch amd64 dash make > debian.lock");
    }

    /// The error for the sample's text with `from` replaced by `to`.
    fn error_for(from: &str, to: &str) -> String {
        let text = sample().to_json();
        assert!(text.contains(from), "{from}");
        Lock::parse(&text.replacen(from, to, 1), "flake/debian.lock").unwrap_err().to_string()
    }

    #[test]
    fn json_syntax_errors_say_the_line_and_column() {
        let err = error_for("\"size\": 1234,", "\"size\": 1234");
        assert!(err.starts_with("flake/debian.lock:13:7: not valid JSON: expected `,` or `}`"), "{err}");
        assert!(err.contains("mini debian lock PACKAGE..."), "{err}");
        let err = Lock::parse("", "debian.lock").unwrap_err().to_string();
        assert!(err.starts_with("debian.lock:1:0: not valid JSON"), "{err}");
    }

    #[test]
    fn every_field_is_checked_and_the_error_says_where_and_how_to_fix_it() {
        let fix = "make it again with `mini debian lock --suite bookworm --arch amd64 dash make > debian.lock`";
        for (from, to, expected) in [
            ("\"version\": 1", "\"version\": 2", "version: this mini reads lock version 1, not 2"),
            ("\"suite\": \"bookworm\"", "\"suite\": \"-t\"", "suite: \"-t\" is not valid: a suite is"),
            (
                "\"architecture\": \"amd64\",\n  \"req",
                "\"architecture\": 64,\n  \"req",
                "architecture: expected a string",
            ),
            ("\"requested\": [\"dash\", \"make\"]", "\"requested\": []", "requested: expected at least one package"),
            ("\"requested\": [\"dash\", \"make\"]", "\"requested\": [\"make\", \"dash\"]", "sorted, each once"),
            ("\"requested\": [\"dash\", \"make\"]", "\"requested\": [\"dash\", \"gcc\"]", "gcc is requested but"),
            ("\"name\": \"dash\"", "\"name\": \"--dash\"", "packages[0].name: \"--dash\" is not valid: a package"),
            ("\"version\": \"1:2.0-1+b1\"", "\"version\": \"-1\"", "packages[0].version: \"-1\" is not valid"),
            (
                "\"architecture\": \"amd64\",\n      \"filename\"",
                "\"architecture\": \"arm64\",\n      \"filename\"",
                "packages[0].architecture: expected the lock's architecture, amd64, or all, not arm64",
            ),
            ("\"pool/main/x/dash/", "\"pool/../../etc/", "packages[0].filename: \"pool/../../etc/"),
            ("\"pool/main/x/dash/", "\"/pool/main/x/dash/", "is not valid: a file name in the archive is a relative"),
            ("\"size\": 1234", "\"size\": -1", "packages[0].size: expected a whole number"),
            ("\"sha256\": \"abab", "\"sha256\": \"ABAB", "packages[0].sha256: \"ABAB"),
            ("\"sha256\": \"abab", "\"sha256\": \"ab", "expected 64 lowercase hex digits"),
            (
                "\"depends\": [\"debianutils\", \"libc6\"]",
                "\"depends\": [\"libc6\", \"perl\"]",
                "packages[0].depends: dash depends on perl, which is not in the lock",
            ),
            ("\"depends\": [\"debianutils\", \"libc6\"]", "\"depends\": [\"libc6\", \"debianutils\"]", "sorted"),
            ("\"name\": \"debianutils\"", "\"name\": \"dash\"", "packages[1]: dash (amd64) is in the lock twice"),
            ("\"name\": \"debianutils\"", "\"name\": \"zsh\"", "packages[2]: expected the packages sorted by name"),
            ("      \"size\": 1234,\n", "", "packages[0]: missing key \"size\""),
            ("\"size\": 1234,", "\"size\": 1234, \"url\": \"x\",", "packages[0]: unexpected key \"url\""),
        ] {
            let err = error_for(from, to);
            assert!(err.starts_with("flake/debian.lock: "), "{err}");
            assert!(err.contains(expected), "{from} -> {to}: {err}");
            // Before the suite, architecture and request are read, the command is not known yet.
            let top = ["\"version\": 1", "\"suite\"", "\"architecture\": \"amd64\",\n  \"req", "\"requested\""];
            let fix = match () {
                _ if to.contains("gcc") => "`mini debian lock --suite bookworm --arch amd64 dash gcc > debian.lock`",
                _ if top.iter().any(|t| from.starts_with(t)) => "`mini debian lock PACKAGE... > debian.lock`",
                _ => fix,
            };
            assert!(err.contains(fix), "{from} -> {to}: {err}");
        }
        let err = Lock::parse("[]", "debian.lock").unwrap_err().to_string();
        assert!(err.contains("debian.lock: the top level: expected an object"), "{err}");
    }

    #[test]
    fn pool_file_names_and_hashes() {
        assert!(is_pool_filename("pool/main/g/gcc-12/gcc-12-base_12.2.0-14+deb12u1_amd64.deb"));
        assert!(is_pool_filename("pool/main/c/ca-certificates/ca-certificates_20250419~deb12u2_all.deb"));
        for bad in ["", "/pool/x.deb", "pool//x.deb", "pool/./x.deb", "pool/../x.deb", "pool/x y.deb", "pool/x\n"] {
            assert!(!is_pool_filename(bad), "{bad:?}");
        }
        assert!(is_sha256(&"0f".repeat(32)));
        assert!(!is_sha256(&"0F".repeat(32)) && !is_sha256(&"0f".repeat(31)) && !is_sha256(&"zz".repeat(32)));
    }

    #[test]
    fn changes_name_each_package_whose_pin_moved() {
        let old = sample();
        let mut new = sample();
        new.packages[0].version = "1:2.1-1".into();
        new.packages[1].sha256 = "cd".repeat(32);
        new.packages.retain(|p| p.name != "debianutils");
        new.packages.push(package("zlib1g", "amd64", &[]));
        let lines: Vec<String> = changes(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            [
                "debianutils 1:2.0-1+b1 (no longer needed)",
                "libc6 1:2.0-1+b1: another file, with another sha256",
                "make 1:2.0-1+b1 -> 1:2.1-1",
                "zlib1g 1:2.0-1+b1 (new)",
            ]
        );
        assert!(changes(&old, &sample()).is_empty());
        let mut redepended = sample();
        redepended.packages[1].depends.clear();
        let lines: Vec<String> = changes(&old, &redepended).iter().map(|c| c.to_string()).collect();
        assert_eq!(lines, ["libc6 1:2.0-1+b1: other dependencies"]);
    }
}
