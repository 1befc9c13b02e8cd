//! A flake's sources: which of the files in its directory a copied path
//! (`"${./.}"`, `src = ./.;`, `builtins.path`) takes, so that what is not
//! part of the project — `result` links, `target/`, editor droppings —
//! never changes a store path.
//!
//! - A flake whose `flake.nixlike` git tracks takes only the files in git's
//!   index (`git ls-files --cached`), as Nix does: committed files and
//!   staged ones, with their contents in the working tree (a dirty tree is
//!   taken as it is); untracked and ignored files never. A file deleted but
//!   still in the index is simply absent; symlinks are taken as symlinks;
//!   directories holding no tracked file are left out; submodules are not
//!   taken. `git` runs once per flake per evaluation.
//! - Any other flake — outside git, or inside a work tree that does not
//!   track its `flake.nixlike` yet — takes its whole directory, less what a
//!   `.miniignore` at its root leaves out (see [`crate::ignore`] for the
//!   syntax).
//!
//! The filters are handed to the evaluator as [`SourceFilter`]s; `mini
//! eval` of a plain file registers none and copies whole directories.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use mini_lang::eval::SourceFilter;

use crate::ignore::{IgnoreRules, IGNORE_FILE};
use crate::installable::FLAKE_FILE;
use crate::FlakeError;

/// The filter for the flake in `dir` (canonical), or `None` if it takes
/// its whole directory.
pub(crate) fn source_filter(dir: &Path) -> Result<Option<Rc<dyn SourceFilter>>, FlakeError> {
    if let Some(tracked) = git_tracked(dir)? {
        if tracked.files.contains(Path::new(FLAKE_FILE)) {
            return Ok(Some(Rc::new(tracked)));
        }
    }
    let ignore_file = dir.join(IGNORE_FILE);
    let contents = match std::fs::read(&ignore_file) {
        Ok(contents) => contents,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(FlakeError::Io { action: "reading", path: ignore_file, source }),
    };
    let rules = IgnoreRules::parse(&contents);
    if rules.is_empty() {
        return Ok(None);
    }
    Ok(Some(Rc::new(IgnoredSources { root: dir.to_path_buf(), rules })))
}

/// The files git tracks below a directory.
#[derive(Debug)]
struct GitSources {
    root: PathBuf,
    /// Tracked paths, relative to `root`.
    files: HashSet<PathBuf>,
    /// Every directory holding a tracked path, relative to `root`.
    dirs: HashSet<PathBuf>,
}

impl SourceFilter for GitSources {
    fn root(&self) -> &Path {
        &self.root
    }

    fn keeps(&self, relative: &Path, is_dir: bool) -> bool {
        // A tracked path that is a directory on disk is a submodule.
        if is_dir {
            self.dirs.contains(relative)
        } else {
            self.files.contains(relative)
        }
    }

    fn why_excluded(&self, relative: &Path) -> String {
        let shown = relative.display();
        if self.files.contains(relative) {
            format!("'{shown}' is a git submodule, and submodules are not part of a flake's sources")
        } else if self.root.join(relative).is_dir() {
            format!("'{shown}' holds no file tracked by git (`git add` what the flake needs)")
        } else {
            format!("'{shown}' is not tracked by git (`git add` it to make it part of the flake)")
        }
    }
}

/// The whole directory but what its `.miniignore` leaves out.
#[derive(Debug)]
struct IgnoredSources {
    root: PathBuf,
    rules: IgnoreRules,
}

impl SourceFilter for IgnoredSources {
    fn root(&self) -> &Path {
        &self.root
    }

    fn keeps(&self, relative: &Path, is_dir: bool) -> bool {
        self.rules.ignoring(relative.as_os_str().as_bytes(), is_dir).is_none()
    }

    fn why_excluded(&self, relative: &Path) -> String {
        let is_dir = self.root.join(relative).is_dir();
        match self.rules.ignoring(relative.as_os_str().as_bytes(), is_dir) {
            Some(rule) => format!(
                "'{}' is ignored by {IGNORE_FILE} (line {}: `{}`)",
                relative.display(),
                rule.line,
                rule.text.trim_end()
            ),
            None => format!("'{}' is ignored by {IGNORE_FILE}", relative.display()),
        }
    }
}

/// What git tracks below `dir`, or `None` if `dir` is not in a git work
/// tree (no `.git` in it or above it: git is not even run then).
fn git_tracked(dir: &Path) -> Result<Option<GitSources>, FlakeError> {
    if !dir.ancestors().any(|d| d.join(".git").exists()) {
        return Ok(None);
    }
    let git_error = |message: String| FlakeError::BadFlake {
        dir: dir.to_path_buf(),
        message: format!(
            "it is in a git repository, and the files git tracks (its sources) cannot be listed: {message}"
        ),
    };
    // Without --full-name, paths are relative to `dir`, and only those below it are listed.
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "-z", "--cached"])
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .map_err(|e| git_error(format!("cannot run git: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(git_error(format!("`git ls-files` failed: {}", stderr.trim_end())));
    }
    Ok(Some(parse_ls_files(dir, &output.stdout)))
}

/// The NUL-separated paths `git ls-files -z` prints (a path is listed once
/// per merge stage while a conflict is unresolved).
fn parse_ls_files(dir: &Path, listing: &[u8]) -> GitSources {
    let mut files = HashSet::new();
    let mut dirs = HashSet::new();
    for entry in listing.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let file = PathBuf::from(OsStr::from_bytes(entry));
        for parent in file.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty()) {
            if !dirs.insert(parent.to_path_buf()) {
                break;
            }
        }
        files.insert(file);
    }
    GitSources { root: dir.to_path_buf(), files, dirs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_files_and_their_directories_are_kept() {
        let sources = parse_ls_files(Path::new("/p"), b"flake.nixlike\0src/a/b.c\0src/a/b.c\0src/x\0link\0sub\0");
        for (path, is_dir) in [("flake.nixlike", false), ("src", true), ("src/a", true), ("src/a/b.c", false)] {
            assert!(sources.keeps(Path::new(path), is_dir), "{path}");
        }
        assert!(sources.keeps(Path::new("link"), false));
        assert!(!sources.keeps(Path::new("result"), false));
        assert!(!sources.keeps(Path::new("target"), true));
        assert!(!sources.keeps(Path::new("src/a/new.c"), false));
        assert!(!sources.keeps(Path::new("sub"), true), "a submodule is left out");
        assert!(sources.why_excluded(Path::new("sub")).contains("submodule"));
        assert!(sources.why_excluded(Path::new("new.c")).contains("is not tracked by git"));
    }

    #[test]
    fn ignore_rules_filter_relative_paths() {
        let sources = IgnoredSources { root: PathBuf::from("/p"), rules: IgnoreRules::parse(b"target/\n*.log\n") };
        assert!(!sources.keeps(Path::new("target"), true));
        assert!(sources.keeps(Path::new("target"), false));
        assert!(!sources.keeps(Path::new("src/debug.log"), false));
        assert!(sources.keeps(Path::new(".miniignore"), false));
        assert_eq!(sources.why_excluded(Path::new("x.log")), "'x.log' is ignored by .miniignore (line 2: `*.log`)");
    }
}
