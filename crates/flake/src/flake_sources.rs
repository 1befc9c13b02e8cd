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
//!   syntax) and less mini's own files: links named `result` or
//!   `result-…` (the out-links `mini build` makes) and `.mini/`
//!   directories, unless a `!` line of the `.miniignore` takes them back.
//!
//! The filters are handed to the evaluator as [`SourceFilter`]s; `mini
//! eval` of a plain file registers none and copies whole directories.
//! Each is [`Watched`], so that after an evaluation the session can say
//! which untracked files the copies left out ([`Watched::left_out`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mini_lang::SourceFilter;

use crate::ignore::{IgnoreRules, IGNORE_FILE};
use crate::installable::FLAKE_FILE;
use crate::FlakeError;

/// The filter for the flake in `dir` (canonical).
pub(crate) fn source_filter(dir: &Path) -> Result<Box<dyn SourceFilter>, FlakeError> {
    if let Some(tracked) = git_tracked(dir)? {
        if tracked.files.contains(Path::new(FLAKE_FILE)) {
            return Ok(Box::new(tracked));
        }
    }
    let ignore_file = dir.join(IGNORE_FILE);
    let contents = match std::fs::read(&ignore_file) {
        Ok(contents) => contents,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(FlakeError::Io { action: "reading", path: ignore_file, source }),
    };
    Ok(Box::new(IgnoredSources { root: dir.to_path_buf(), rules: IgnoreRules::parse(&contents) }))
}

/// Why mini leaves `relative` (below `root`) out of every source it
/// copies outside git, if it does: it is mini's own.
fn mini_own(root: &Path, relative: &Path, is_dir: bool) -> Option<&'static str> {
    let name = relative.file_name()?.as_bytes();
    if is_dir && name == b".mini" {
        return Some("a .mini directory, which is mini's own");
    }
    let out_link = name == b"result" || name.starts_with(b"result-");
    let is_link = || std::fs::symlink_metadata(root.join(relative)).is_ok_and(|m| m.file_type().is_symlink());
    (out_link && !is_dir && is_link()).then_some("a link named like the out-links `mini build` makes")
}

/// Whether the file at `relative` below `dir` is mini's own: an out-link
/// or inside a `.mini` directory (no note names those as left out).
pub(crate) fn is_mini_own(dir: &Path, relative: &Path) -> bool {
    relative.components().any(|c| c.as_os_str() == ".mini") || mini_own(dir, relative, false).is_some()
}

/// A filter that remembers every entry it was asked about, and its
/// answer: copies ask about each entry of each directory they list.
pub(crate) struct Watched {
    inner: Box<dyn SourceFilter>,
    asked: Mutex<BTreeMap<PathBuf, bool>>,
}

impl Watched {
    pub fn new(inner: Box<dyn SourceFilter>) -> Watched {
        Watched { inner, asked: Mutex::new(BTreeMap::new()) }
    }

    /// Which of `untracked` (paths relative to the root, of files that
    /// are not there or not sources) the copies made so far left out:
    /// those below an entry a copy refused, or in a directory a copy
    /// listed whole.
    pub fn left_out(&self, untracked: &[PathBuf]) -> Vec<PathBuf> {
        let asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        if asked.is_empty() {
            return Vec::new();
        }
        let root = self.inner.root();
        let mut listed: HashMap<PathBuf, bool> = HashMap::new();
        let mut found = Vec::new();
        for file in untracked {
            let refused = file.ancestors().any(|p| asked.get(p) == Some(&false));
            let parent = file
                .ancestors()
                .skip(1)
                .find(|p| std::fs::symlink_metadata(root.join(p)).is_ok_and(|m| m.is_dir()))
                .unwrap_or(Path::new(""));
            let mut whole = || *listed.entry(parent.to_path_buf()).or_insert_with(|| was_listed(root, parent, &asked));
            if refused || whole() {
                found.push(file.clone());
            }
        }
        found
    }
}

/// Whether a copy listed directory `dir` (below `root`): it asked about
/// each of its entries. (Checking the copied path itself asks about one
/// entry of each directory above it, so a directory of one entry may be
/// taken as listed when it was only passed through.)
fn was_listed(root: &Path, dir: &Path, asked: &BTreeMap<PathBuf, bool>) -> bool {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else { return false };
    let mut any = false;
    for entry in entries {
        let Ok(entry) = entry else { return false };
        if !asked.contains_key(&dir.join(entry.file_name())) {
            return false;
        }
        any = true;
    }
    any
}

impl SourceFilter for Watched {
    fn root(&self) -> &Path {
        self.inner.root()
    }

    fn keeps(&self, relative: &Path, is_dir: bool) -> bool {
        let kept = self.inner.keeps(relative, is_dir);
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).insert(relative.to_path_buf(), kept);
        kept
    }

    fn why_excluded(&self, relative: &Path) -> String {
        self.inner.why_excluded(relative)
    }
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
        match self.rules.deciding(relative.as_os_str().as_bytes(), is_dir) {
            Some(rule) => rule.negated,
            None => mini_own(&self.root, relative, is_dir).is_none(),
        }
    }

    fn why_excluded(&self, relative: &Path) -> String {
        let is_dir = std::fs::symlink_metadata(self.root.join(relative)).is_ok_and(|m| m.is_dir());
        match self.rules.ignoring(relative.as_os_str().as_bytes(), is_dir) {
            Some(rule) => format!(
                "'{}' is ignored by {IGNORE_FILE} (line {}: `{}`)",
                relative.display(),
                rule.line,
                rule.text.trim_end()
            ),
            None => match mini_own(&self.root, relative, is_dir) {
                Some(why) => format!(
                    "'{}' is {why}, never a source (a `!{}` line in {IGNORE_FILE} takes it back)",
                    relative.display(),
                    relative.display()
                ),
                None => format!("'{}' is ignored by {IGNORE_FILE}", relative.display()),
            },
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
    let output = crate::git::git_in(dir)
        .args(["ls-files", "-z", "--cached"])
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
    fn out_links_and_dot_mini_are_left_out_unless_taken_back() {
        let dir = std::env::temp_dir().join(format!("mini-sources-own-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".mini/state")).unwrap();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for file in ["results.txt", "result-notes", "sub/.mini"] {
            std::fs::write(dir.join(file), "x").unwrap();
        }
        for link in ["result", "result-2", "sub/result-dev"] {
            std::os::unix::fs::symlink("/nonexistent", dir.join(link)).unwrap();
        }
        let plain = source_filter(&dir).unwrap();
        for (path, is_dir, kept) in [
            ("result", false, false),
            ("result-2", false, false),
            ("sub/result-dev", false, false),
            ("results.txt", false, true),
            ("result-notes", false, true),
            (".mini", true, false),
            ("sub/.mini", false, true),
            ("sub", true, true),
        ] {
            assert_eq!(plain.keeps(Path::new(path), is_dir), kept, "{path}");
        }
        assert!(plain.why_excluded(Path::new("result")).contains("out-links"), "{}", {
            plain.why_excluded(Path::new("result"))
        });
        std::fs::write(dir.join(IGNORE_FILE), "!result\n").unwrap();
        let taken_back = source_filter(&dir).unwrap();
        assert!(taken_back.keeps(Path::new("result"), false));
        assert!(!taken_back.keeps(Path::new("result-2"), false));
        assert!(is_mini_own(&dir, Path::new("result-2")) && is_mini_own(&dir, Path::new(".mini/state/x")));
        assert!(!is_mini_own(&dir, Path::new("results.txt")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn copies_leave_out_what_they_refused_or_listed_without() {
        let dir = std::env::temp_dir().join(format!("mini-sources-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src/lib")).unwrap();
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        for file in ["flake.nixlike", "src/main.c", "src/lib/a.c", "docs/x.md"] {
            std::fs::write(dir.join(file), "x").unwrap();
        }
        let untracked: Vec<PathBuf> =
            ["docs/new.md", "new/deep/f", "notes.txt", "src/lib/new.c", "src/new.c"].map(PathBuf::from).to_vec();
        let watch = || {
            let filter = IgnoredSources { root: dir.clone(), rules: IgnoreRules::parse(b"") };
            Watched::new(Box::new(filter))
        };
        assert!(watch().left_out(&untracked).is_empty(), "nothing copied, nothing left out");

        // `./src` copied: the check of `src` itself asks about one entry of the top.
        let src = watch();
        for (path, is_dir) in [("src", true), ("src/main.c", false), ("src/lib", true), ("src/lib/a.c", false)] {
            src.keeps(Path::new(path), is_dir);
        }
        assert_eq!(src.left_out(&untracked), ["src/lib/new.c", "src/new.c"].map(PathBuf::from));

        // `./.` copied: every entry of the top asked about.
        let all = watch();
        for (path, is_dir) in [("flake.nixlike", false), ("src", true), ("docs", true), ("docs/x.md", false)] {
            all.keeps(Path::new(path), is_dir);
        }
        assert_eq!(all.left_out(&untracked), ["docs/new.md", "new/deep/f", "notes.txt"].map(PathBuf::from));

        // A refused entry leaves out what is below it.
        let git = Watched::new(Box::new(parse_ls_files(&dir, b"flake.nixlike\0src/main.c\0")));
        for (path, is_dir) in [("flake.nixlike", false), ("src", true), ("docs", true), ("src/lib", true)] {
            git.keeps(Path::new(path), is_dir);
        }
        assert!(git.left_out(&untracked).contains(&PathBuf::from("src/lib/new.c")));
        assert!(git.left_out(&untracked).contains(&PathBuf::from("docs/new.md")));
        std::fs::remove_dir_all(&dir).unwrap();
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
