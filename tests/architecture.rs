//! ARCHITECTURE.md states which workspace crates each crate may depend on;
//! this test holds every crate's `Cargo.toml` to it, so the document and the
//! dependency graph cannot drift apart.
//!
//! How the document is read: each workspace crate has a section headed
//! `### crates/<name>` (the name of its directory under `crates/`), running
//! to the next heading of level one to three. In it, exactly one line has
//! the form `**Architecture invariant:** stands on X, Y.` (or `stands on
//! nothing.`), naming the crates it may depend on by directory name. The
//! dependencies checked are the `mini-<name> = { path = … }` lines of the
//! crate's `[dependencies]` table; `[dev-dependencies]` are not part of the
//! architecture.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

const STANDS_ON: &str = "**Architecture invariant:** stands on ";

/// The crates at the bottom of the graph: they depend on no workspace crate.
const GROUND_FLOOR: [&str; 2] = ["store", "http"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every directory under `crates/`, by name.
fn workspace_crates() -> BTreeSet<String> {
    let dir = root().join("crates");
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    entries
        .map(|entry| entry.expect("a readable directory entry"))
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The workspace crates `crates/<name>/Cargo.toml` lists under
/// `[dependencies]`, by directory name (`mini-store` is `store`).
fn dependencies(name: &str) -> BTreeSet<String> {
    let path = root().join("crates").join(name).join("Cargo.toml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_dependencies(&text)
}

fn parse_dependencies(manifest: &str) -> BTreeSet<String> {
    let mut in_dependencies = false;
    let mut found = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            // `[dependencies]`, `[build-dependencies]`, `[target.'cfg(…)'.dependencies]`
            // and the table form `[dependencies.mini-x]`; never dev-dependencies.
            let header = line.trim_matches(|c| c == '[' || c == ']');
            let parts: Vec<&str> = header.split('.').collect();
            in_dependencies = parts.iter().any(|part| *part == "dependencies" || *part == "build-dependencies");
            if let (true, Some(name)) = (in_dependencies, parts.last().and_then(|last| last.strip_prefix("mini-"))) {
                found.insert(name.to_string());
            }
            continue;
        }
        if !in_dependencies {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        if let Some(name) = key.trim().strip_prefix("mini-") {
            found.insert(name.to_string());
        }
        // A workspace crate under another name (`package = …`) is still
        // found by its path.
        if let Some(dir) = value.split("path = \"../").nth(1).and_then(|rest| rest.split('"').next()) {
            found.insert(dir.to_string());
        }
        if let Some(dir) =
            key.trim().eq("path").then(|| value.trim().trim_matches('"')).and_then(|v| v.strip_prefix("../"))
        {
            found.insert(dir.to_string());
        }
    }
    found
}

#[test]
fn every_form_of_dependency_is_read() {
    let manifest = "[dependencies]\nmini-store = { path = \"../store\" }\nstore2 = { package = \"mini-lang\", path = \"../lang\" }\n\
                    [target.'cfg(unix)'.dependencies]\nmini-http = { path = \"../http\" }\n\
                    [dependencies.mini-image]\npath = \"../image\"\n\
                    [dev-dependencies]\nmini-flake = { path = \"../flake\" }\n";
    let found: Vec<String> = parse_dependencies(manifest).into_iter().collect();
    assert_eq!(found, ["http", "image", "lang", "store"]);
}

/// Each `### crates/<name>` section's `stands on` lines, parsed.
fn stated_rules(document: &str) -> BTreeMap<String, Vec<BTreeSet<String>>> {
    let mut rules: BTreeMap<String, Vec<BTreeSet<String>>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in document.lines() {
        let heading_level = line.chars().take_while(|&c| c == '#').count();
        if (1..=3).contains(&heading_level) && line[heading_level..].starts_with(' ') {
            let title = line[heading_level..].trim().trim_matches('`');
            section = title.strip_prefix("crates/").map(|name| name.trim_end_matches('/').to_string());
            if let Some(name) = &section {
                rules.entry(name.clone()).or_default();
            }
            continue;
        }
        let (Some(name), Some(rest)) = (&section, line.trim().strip_prefix(STANDS_ON)) else { continue };
        let list = rest
            .trim()
            .strip_suffix('.')
            .unwrap_or_else(|| panic!("crates/{name}: the line '{line}' must end with a period"));
        let allowed = if list == "nothing" {
            BTreeSet::new()
        } else {
            list.split(',').map(|crate_name| crate_name.trim().trim_matches('`').to_string()).collect()
        };
        rules.get_mut(name).expect("the section was registered at its heading").push(allowed);
    }
    rules
}

fn architecture() -> String {
    let path = root().join("ARCHITECTURE.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every crate has one `stands on` line, and depends on nothing it does not name.
#[test]
fn crates_depend_only_on_what_architecture_allows() {
    let crates = workspace_crates();
    let rules = stated_rules(&architecture());
    let mut problems = Vec::new();
    for name in &crates {
        let allowed = match rules.get(name).map(Vec::as_slice) {
            None => {
                problems.push(format!("crates/{name} has no '### crates/{name}' section in ARCHITECTURE.md"));
                continue;
            }
            Some([]) => {
                problems.push(format!("crates/{name}: its section has no line '{STANDS_ON}….'"));
                continue;
            }
            Some([allowed]) => allowed,
            Some(_) => {
                problems.push(format!("crates/{name}: its section has more than one '{STANDS_ON}…' line"));
                continue;
            }
        };
        for unknown in allowed.iter().filter(|allowed| !crates.contains(*allowed)) {
            problems.push(format!(
                "crates/{name}: ARCHITECTURE.md lets it stand on '{unknown}', which is not a crate under crates/"
            ));
        }
        for dependency in dependencies(name).difference(allowed) {
            problems.push(format!(
                "crates/{name} depends on mini-{dependency}, which its '{STANDS_ON}…' line in ARCHITECTURE.md does not allow"
            ));
        }
    }
    for documented in rules.keys().filter(|name| !crates.contains(*name)) {
        problems.push(format!("ARCHITECTURE.md has a section for crates/{documented}, which does not exist"));
    }
    assert!(problems.is_empty(), "the dependency graph disagrees with ARCHITECTURE.md:\n  {}", problems.join("\n  "));
}

/// The ground floor has no upward edge: store and http depend on no mini crate.
#[test]
fn ground_floor_depends_on_no_workspace_crate() {
    for name in GROUND_FLOOR {
        let dependencies = dependencies(name);
        assert!(dependencies.is_empty(), "crates/{name} must depend on no mini crate, but depends on {dependencies:?}");
    }
}

#[test]
fn only_the_dependencies_table_counts() {
    let manifest =
        "[package]\nname = \"mini-x\"\n\n[dependencies]\nmini-store = { path = \"../store\" }\nblake3 = \"1\"\n\n\
                    [dev-dependencies]\nmini-build = { path = \"../build\" }\n";
    assert_eq!(parse_dependencies(manifest), BTreeSet::from(["store".to_string()]));
}

#[test]
fn rules_are_read_per_section() {
    let document = "### crates/a\ntext\n**Architecture invariant:** stands on b, c.\n\
                    **Architecture invariant:** never follows a link.\n### crates/b\n\
                    **Architecture invariant:** stands on nothing.\n## Errors\n\
                    **Architecture invariant:** stands on a.\n";
    let rules = stated_rules(document);
    let set = |names: &[&str]| names.iter().map(|name| name.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(rules["a"], vec![set(&["b", "c"])]);
    assert_eq!(rules["b"], vec![set(&[])]);
    assert_eq!(rules.len(), 2);
}
