//! Making and moving locks: `mini lock` (pin what is not pinned yet),
//! `mini lock --update [INPUT]…` (pin again what is there now) and
//! `mini build --update-lock`. An input whose declaration is unchanged
//! keeps its pin unless asked to update, so locking is idempotent and
//! never moves anything silently; every change is reported.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mini_store::store::Store;

use crate::inputs::{self, FlakeLocation, LeavingLink};
use crate::lock::{DeclaredInput, LockFile, LockedInput, LOCK_FILE};
use crate::FlakeError;

/// Which inputs to pin again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockUpdate {
    /// None: pin only what is declared but not (or differently) locked.
    Missing,
    /// Every input.
    All,
    /// These inputs (and what is missing).
    Only(Vec<String>),
}

impl LockUpdate {
    fn covers(&self, name: &str) -> bool {
        match self {
            LockUpdate::Missing => false,
            LockUpdate::All => true,
            LockUpdate::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// How one input's pin changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockChange {
    Added { name: String, now: LockedInput },
    Updated { name: String, was: LockedInput, now: LockedInput },
    Removed { name: String, was: LockedInput },
}

/// What locking did.
#[derive(Debug, Clone)]
pub struct LockReport {
    /// The lock file of the flake.
    pub file: PathBuf,
    pub lock: LockFile,
    pub changes: Vec<LockChange>,
    /// Whether the file was written (never for a flake at a git revision,
    /// and not when nothing changed).
    pub written: bool,
    /// What was noticed in the inputs pinned now.
    pub warnings: Vec<LockWarning>,
}

/// Something wrong with an input that does not stop it being pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockWarning {
    /// Links in the input point outside it: the store copy keeps them, and
    /// they dangle in builds, which see only the store.
    LinksLeave { input: String, links: Vec<LeavingLink> },
}

/// How many links one warning lists.
const SHOWN_LINKS: usize = 10;

impl LockWarning {
    /// The lines for people, the first naming the input, then one per
    /// link, then what to do.
    pub fn describe(&self) -> String {
        match self {
            LockWarning::LinksLeave { input, links } => {
                let mut text = format!(
                    "input '{input}' has {} pointing outside it; the store copy keeps {}, and builds \
                     (which see only the store) find nothing there:",
                    if links.len() == 1 { "a link" } else { "links" },
                    if links.len() == 1 { "it" } else { "them" },
                );
                for link in links.iter().take(SHOWN_LINKS) {
                    text.push_str(&format!("\n  {} -> {}", link.link.display(), link.target.display()));
                }
                if links.len() > SHOWN_LINKS {
                    text.push_str(&format!("\n  and {} more", links.len() - SHOWN_LINKS));
                }
                text.push_str("\ncopy what they point at into the input, or make them relative links inside it");
                text
            }
        }
    }
}

/// Locks `declared` for the flake at `flake`, starting from `old`.
pub(crate) fn relock(
    store: &Store,
    flake: &FlakeLocation,
    declared: &BTreeMap<String, DeclaredInput>,
    old: Option<&LockFile>,
    update: &LockUpdate,
) -> Result<LockReport, FlakeError> {
    if let LockUpdate::Only(names) = update {
        if let Some(unknown) = names.iter().find(|n| !declared.contains_key(*n)) {
            let known = if declared.is_empty() {
                "it declares no inputs".to_string()
            } else {
                format!("it declares {}", declared.keys().cloned().collect::<Vec<_>>().join(", "))
            };
            return Err(FlakeError::BadFlake {
                dir: flake.shown(),
                message: format!("there is no input '{unknown}' to update; {known}"),
            });
        }
    }
    let previous = old.cloned().unwrap_or_default();
    let mut lock = LockFile::default();
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    for (name, input) in declared {
        let was = previous.inputs.get(name);
        let kept = was.filter(|l| l.declared == *input && !update.covers(name));
        let now = match kept {
            Some(locked) => locked.clone(),
            None => {
                let fetched = inputs::fetch(store, flake, name, input, None)?;
                let links = inputs::links_leaving(&fetched.root)?;
                if !links.is_empty() {
                    warnings.push(LockWarning::LinksLeave { input: name.clone(), links });
                }
                fetched.locked
            }
        };
        match was {
            None => changes.push(LockChange::Added { name: name.clone(), now: now.clone() }),
            Some(was) if *was != now => {
                changes.push(LockChange::Updated { name: name.clone(), was: was.clone(), now: now.clone() })
            }
            Some(_) => {}
        }
        lock.inputs.insert(name.clone(), now);
    }
    for (name, was) in &previous.inputs {
        if !declared.contains_key(name) {
            changes.push(LockChange::Removed { name: name.clone(), was: was.clone() });
        }
    }
    let file = flake.dir.join(LOCK_FILE);
    let written = flake.is_working_tree() && (old.is_none() || !changes.is_empty());
    if written {
        write_atomically(&file, &lock.render())?;
    }
    Ok(LockReport { file, lock, changes, written, warnings })
}

/// Writes `text` to `file` through a temporary file and a rename, so a
/// reader never sees half a lock.
fn write_atomically(file: &std::path::Path, text: &str) -> Result<(), FlakeError> {
    let temp = file.with_file_name(format!(".{LOCK_FILE}.{}", std::process::id()));
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| FlakeError::Io { action: "writing", path, source }
    };
    std::fs::write(&temp, text).map_err(io(&temp))?;
    std::fs::rename(&temp, file).map_err(io(file))
}

impl LockChange {
    /// One line for people: `added 'lib': git+file:../lib rev 1a2b3c4d5e6f`.
    pub fn describe(&self) -> String {
        let pin = |l: &LockedInput| match &l.rev {
            Some(rev) => format!("rev {}", &rev[..12]),
            None => format!("content {}", &l.nar_hash[..19]),
        };
        match self {
            LockChange::Added { name, now } => format!("added '{name}': {} {}", now.declared.url, pin(now)),
            LockChange::Updated { name, was, now } if was.declared != now.declared => {
                format!("updated '{name}': {} {} → {} {}", was.declared.url, pin(was), now.declared.url, pin(now))
            }
            LockChange::Updated { name, was, now } => {
                format!("updated '{name}': {} {} → {}", now.declared.url, pin(was), pin(now))
            }
            LockChange::Removed { name, was } => format!("removed '{name}': {} {}", was.declared.url, pin(was)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mini_store::encoding::nar_hash_text;

    #[test]
    fn changes_read_as_sentences() {
        let locked = |url: &str, rev: Option<char>| LockedInput {
            declared: DeclaredInput { url: url.into(), flake: true },
            rev: rev.map(|c| c.to_string().repeat(40)),
            nar_hash: nar_hash_text(&[0xcd; 32]),
        };
        let added = LockChange::Added { name: "lib".into(), now: locked("git+file:../lib", Some('a')) };
        assert_eq!(added.describe(), "added 'lib': git+file:../lib rev aaaaaaaaaaaa");
        let moved = LockChange::Updated {
            name: "lib".into(),
            was: locked("git+file:../lib", Some('a')),
            now: locked("git+file:../lib", Some('b')),
        };
        assert_eq!(moved.describe(), "updated 'lib': git+file:../lib rev aaaaaaaaaaaa → rev bbbbbbbbbbbb");
        let removed = LockChange::Removed { name: "assets".into(), was: locked("path:./assets", None) };
        assert_eq!(removed.describe(), "removed 'assets': path:./assets content blake3:cdcdcdcdcdcd");
        assert!(LockUpdate::Only(vec!["lib".into()]).covers("lib") && !LockUpdate::Missing.covers("lib"));
    }

    #[test]
    fn a_warning_names_the_input_each_link_and_the_fix() {
        let link = |l: &str, t: &str| LeavingLink { link: l.into(), target: t.into() };
        let one = LockWarning::LinksLeave { input: "assets".into(), links: vec![link("logo.png", "/home/u/logo.png")] };
        assert_eq!(
            one.describe(),
            "input 'assets' has a link pointing outside it; the store copy keeps it, and builds (which see only \
             the store) find nothing there:\n  logo.png -> /home/u/logo.png\n\
             copy what they point at into the input, or make them relative links inside it"
        );
        let links = (0..12).map(|i| link(&format!("l{i:02}"), "../x")).collect();
        let many = LockWarning::LinksLeave { input: "assets".into(), links }.describe();
        assert!(many.starts_with("input 'assets' has links pointing outside it; the store copy keeps them"), "{many}");
        assert!(many.contains("\n  l09 -> ../x\n  and 2 more\n"), "{many}");
        assert!(!many.contains("l10"), "{many}");
    }
}
