//! A flake's git working tree: whether it is clean, and what git does not
//! track in it. As in Nix, a clean tree (nothing staged or modified, as
//! `git diff-index HEAD` sees it; untracked files do not count) *is* its
//! HEAD commit, so `DIR#ATTR` is evaluated exactly as
//! `git+file:DIR?rev=<HEAD>#ATTR` and gives the same bytes, provenance
//! included. A dirty tree is evaluated as it is, has no revision, and
//! warns. One `git status` answers both questions.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::git::is_full_hash;
use crate::FlakeError;

/// What `git status` says of the repository a flake is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkTree {
    /// The top of the working tree (the directory holding `.git`).
    pub top: PathBuf,
    /// The flake's directory below `top`, if not `top` itself.
    pub sub: Option<PathBuf>,
    /// The commit HEAD names; `None` before the first commit.
    pub head: Option<String>,
    /// Whether a tracked file is modified, staged, deleted or unmerged.
    pub dirty: bool,
    /// Untracked (and not ignored) files below the flake's directory,
    /// relative to it, sorted.
    pub untracked: Vec<PathBuf>,
}

impl WorkTree {
    /// Whether the tree is its HEAD commit.
    pub fn is_clean(&self) -> bool {
        self.head.is_some() && !self.dirty
    }

    /// Nix's wording.
    pub fn dirty_warning(&self) -> String {
        format!("warning: Git tree '{}' is dirty", self.top.display())
    }
}

/// How many left-out files a note names before it counts the rest.
const NAMED: usize = 5;

/// The one line saying which untracked files (sorted, relative to the
/// flake's directory) were left out of `what`, if any were.
pub(crate) fn untracked_note(left_out: &[PathBuf], what: &str) -> Option<String> {
    let (first, rest) = left_out.split_at(left_out.len().min(NAMED));
    let mut names: Vec<String> = first.iter().map(|p| p.display().to_string()).collect();
    if !rest.is_empty() {
        names.push(format!("and {} more", rest.len()));
    }
    let (files, them) = if left_out.len() == 1 { ("file", "it") } else { ("files", "them") };
    (!left_out.is_empty()).then(|| {
        format!(
            "note: {} untracked {files} left out of {what}: {} (`git add` {them} to include {them})",
            left_out.len(),
            names.join(", ")
        )
    })
}

/// The working tree the flake in `dir` (canonical) is in, or `None` if it
/// is in none (no `.git` in it or above it: git is not even run then).
pub(crate) fn inspect(dir: &Path) -> Result<Option<WorkTree>, FlakeError> {
    let Some(top) = dir.ancestors().find(|d| d.join(".git").exists()) else {
        return Ok(None);
    };
    let output = crate::git::git_in(top)
        .args(["status", "--porcelain=v2", "-z", "--branch", "--untracked-files=all"])
        .output()
        .map_err(|e| status_error(dir, format!("cannot run git: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(status_error(dir, format!("`git status` failed: {}", stderr.trim_end())));
    }
    let sub = dir.strip_prefix(top).ok().filter(|s| !s.as_os_str().is_empty()).map(Path::to_path_buf);
    Ok(Some(parse_status(top, sub, &output.stdout)))
}

fn status_error(dir: &Path, message: String) -> FlakeError {
    FlakeError::BadFlake {
        dir: dir.to_path_buf(),
        message: format!("it is in a git repository, whose state cannot be read: {message}"),
    }
}

/// Reads `git status --porcelain=v2 -z --branch` output: headers (`# …`),
/// changed entries (`1`, `2`, `u`; a rename's source is one more field)
/// and untracked ones (`? PATH`, relative to the top).
fn parse_status(top: &Path, sub: Option<PathBuf>, listing: &[u8]) -> WorkTree {
    let mut head = None;
    let mut dirty = false;
    let mut untracked = Vec::new();
    let mut fields = listing.split(|&b| b == 0).filter(|f| !f.is_empty());
    while let Some(field) = fields.next() {
        match field.first() {
            Some(b'#') => {
                if let Some(oid) = field.strip_prefix(b"# branch.oid ") {
                    let oid = String::from_utf8_lossy(oid).into_owned();
                    head = is_full_hash(&oid).then_some(oid);
                }
            }
            Some(b'1' | b'u') => dirty = true,
            Some(b'2') => {
                dirty = true;
                fields.next();
            }
            Some(b'?') => {
                let path = Path::new(OsStr::from_bytes(&field[2.min(field.len())..]));
                let below = match &sub {
                    Some(sub) => path.strip_prefix(sub).ok(),
                    None => Some(path),
                };
                if let Some(below) = below.filter(|b| !b.as_os_str().is_empty()) {
                    untracked.push(below.to_path_buf());
                }
            }
            _ => {}
        }
    }
    untracked.sort();
    WorkTree { top: top.to_path_buf(), sub, head, dirty, untracked }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn status_says_head_dirtiness_and_untracked_files() {
        let listing =
            format!("# branch.oid {SHA}\0# branch.head main\0? notes.txt\0? app/new.c\0? other/x\0! target/\0");
        let tree = parse_status(Path::new("/r"), Some(PathBuf::from("app")), listing.as_bytes());
        assert_eq!(tree.head.as_deref(), Some(SHA));
        assert!(tree.is_clean(), "untracked files leave a tree clean");
        assert_eq!(tree.untracked, [PathBuf::from("new.c")], "only those below the flake, relative to it");

        let modified = format!("# branch.oid {SHA}\01 .M N... 100644 100644 100644 a b src/main.c\0");
        assert!(!parse_status(Path::new("/r"), None, modified.as_bytes()).is_clean());
        let renamed = format!("# branch.oid {SHA}\02 R. N... 100644 100644 100644 a b R100 new\0old\0? u\0");
        let tree = parse_status(Path::new("/r"), None, renamed.as_bytes());
        assert!(tree.dirty);
        assert_eq!(tree.untracked, [PathBuf::from("u")], "a rename's source is not an entry");

        let fresh = parse_status(Path::new("/r"), None, b"# branch.oid (initial)\0# branch.head main\0? a\0");
        assert_eq!(fresh.head, None);
        assert!(!fresh.is_clean(), "a repository without commits has no commit to be");
        assert_eq!(fresh.dirty_warning(), "warning: Git tree '/r' is dirty");
    }

    #[test]
    fn the_note_names_a_few_files_and_counts_the_rest() {
        let note = |files: &[PathBuf]| untracked_note(files, "the flake's sources");
        assert_eq!(note(&[]), None);
        assert_eq!(
            note(&[PathBuf::from("a.txt")]).unwrap(),
            "note: 1 untracked file left out of the flake's sources: a.txt (`git add` it to include it)"
        );
        let many: Vec<PathBuf> = (0..7).map(|i| PathBuf::from(format!("src/f{i}.c"))).collect();
        assert_eq!(
            note(&many).unwrap(),
            "note: 7 untracked files left out of the flake's sources: src/f0.c, src/f1.c, src/f2.c, src/f3.c, \
             src/f4.c, and 2 more (`git add` them to include them)"
        );
    }
}
