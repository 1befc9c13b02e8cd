//! Writing several packages' files into one tree, where the store's
//! `TreeWriter` writes one archive: directories shared by packages merge,
//! and a file or link a later package ships again replaces the earlier
//! one (what dpkg does with `Replaces:` and diversions).
//!
//! Safety is the `TreeWriter`'s: every directory is entered through an
//! open handle with `O_DIRECTORY | O_NOFOLLOW`, every file is created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, and a replaced entry is removed with
//! `unlinkat` relative to its parent's handle. What is in the tree is
//! known from the tree itself being new (it must not exist) and from a
//! record of every entry written, so no link is ever followed, even one
//! a package planted, and nothing is written below a link or a file.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

pub use mini_store::tree_writer::component_problem;
use mini_store::tree_writer::MAX_DEPTH;
use rustix::fs::{AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;
use thiserror::Error;

/// What an entry of the tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Link,
}

impl Kind {
    fn described(self) -> &'static str {
        match self {
            Kind::Dir => "a directory",
            Kind::File => "a regular file",
            Kind::Link => "a symbolic link",
        }
    }
}

/// Which package wrote an entry (an index the caller gives meaning to).
pub type Owner = usize;

/// Why an entry could not be written; `entry` is the path in the tree.
#[derive(Debug, Error)]
pub enum MergeError {
    #[error("the path {reason}")]
    BadPath { entry: String, reason: &'static str },
    #[error("'{entry}' would be {wanted}, but it is already {existing}")]
    Conflict { entry: String, existing: &'static str, wanted: &'static str, owner: Owner },
    #[error("'{entry}' is below '{parent}', which is {what}, not a directory")]
    BelowNonDirectory { entry: String, parent: String, what: &'static str },
    #[error("the same archive holds '{entry}' twice")]
    Duplicate { entry: String },
    #[error("'{entry}' is nested more than {MAX_DEPTH} directories deep")]
    TooDeep { entry: String },
    #[error("cannot {action} '{entry}': {source}")]
    Io { entry: String, action: &'static str, source: io::Error },
}

/// What writing an entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// The entry is new.
    New,
    /// A directory that was already there (merged).
    Merged,
    /// A file or link `owner` wrote was replaced.
    Replaced { owner: Owner },
}

#[derive(Debug, Clone, Copy)]
struct Node {
    kind: Kind,
    owner: Owner,
}

/// The tree being assembled.
pub struct MergedTree {
    root: OwnedFd,
    /// Every entry written, by its path below the root.
    nodes: HashMap<Vec<u8>, Node>,
    /// The open directories along the previous entry's parents, outermost first.
    cursor: Vec<(Vec<u8>, OwnedFd)>,
}

impl MergedTree {
    /// Creates the directory `path` (which must not exist) and writes into it.
    pub fn create(path: &Path) -> io::Result<MergedTree> {
        rustix::fs::mkdirat(CWD, path, Mode::from_raw_mode(0o755))?;
        let root = rustix::fs::openat(CWD, path, dir_flags(), Mode::empty())?;
        rustix::fs::fchmod(&root, Mode::from_raw_mode(0o755))?;
        Ok(MergedTree { root, nodes: HashMap::new(), cursor: Vec::new() })
    }

    /// What `rel` is in the tree, if anything.
    pub fn kind(&self, rel: &[u8]) -> Option<Kind> {
        self.nodes.get(rel).map(|n| n.kind)
    }

    /// Who wrote `rel` last, if it is in the tree.
    pub fn owner(&self, rel: &[u8]) -> Option<Owner> {
        self.nodes.get(rel).map(|n| n.owner)
    }

    /// Creates the directory `rel` (0755), or merges with the one there.
    pub fn dir(&mut self, rel: &[u8], owner: Owner) -> Result<Placed, MergeError> {
        if let Some(node) = self.nodes.get(rel) {
            return match node.kind {
                Kind::Dir => Ok(Placed::Merged),
                other => Err(conflict(rel, other, Kind::Dir, node.owner)),
            };
        }
        let (parent, name) = self.parent(rel, owner)?;
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)).map_err(|e| io_error(rel, "create", e))?;
        self.nodes.insert(rel.to_vec(), Node { kind: Kind::Dir, owner });
        Ok(Placed::New)
    }

    /// Creates the regular file `rel`, executable (0755) or not (0644),
    /// replacing a file or link an earlier owner wrote.
    pub fn file(&mut self, rel: &[u8], executable: bool, owner: Owner) -> Result<(File, Placed), MergeError> {
        let placed = self.make_room(rel, Kind::File, owner)?;
        let (parent, name) = self.parent(rel, owner)?;
        let mode = Mode::from_raw_mode(if executable { 0o755 } else { 0o644 });
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(parent, name, flags, mode).map_err(|e| io_error(rel, "create", e))?;
        // The umask may have cleared bits: the mode must not depend on it.
        rustix::fs::fchmod(&fd, mode).map_err(|e| io_error(rel, "set the mode of", e))?;
        self.nodes.insert(rel.to_vec(), Node { kind: Kind::File, owner });
        Ok((File::from(fd), placed))
    }

    /// Creates the symlink `rel` pointing at `target` (never followed),
    /// replacing a file or link an earlier owner wrote.
    pub fn symlink(&mut self, rel: &[u8], target: &[u8], owner: Owner) -> Result<Placed, MergeError> {
        if target.is_empty() || target.contains(&0) {
            return Err(MergeError::BadPath { entry: shown(rel), reason: "is a link with an empty target or a NUL" });
        }
        let placed = self.make_room(rel, Kind::Link, owner)?;
        let (parent, name) = self.parent(rel, owner)?;
        rustix::fs::symlinkat(target, parent, name).map_err(|e| io_error(rel, "create", e))?;
        self.nodes.insert(rel.to_vec(), Node { kind: Kind::Link, owner });
        Ok(placed)
    }

    /// Opens the regular file `rel`, which `owner` wrote, for reading (a
    /// hard link's target, to copy).
    pub fn open_own_file(&mut self, rel: &[u8], owner: Owner) -> Result<File, MergeError> {
        match self.nodes.get(rel) {
            Some(Node { kind: Kind::File, owner: o }) if *o == owner => {}
            _ => {
                return Err(MergeError::BadPath {
                    entry: shown(rel),
                    reason: "is not a regular file the same archive wrote earlier",
                })
            }
        }
        let (parent, name) = self.parent(rel, owner)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(parent, name, flags, Mode::empty()).map_err(|e| io_error(rel, "open", e))?;
        Ok(File::from(fd))
    }

    /// Removes a file or link an earlier owner wrote at `rel`, for `wanted`.
    fn make_room(&mut self, rel: &[u8], wanted: Kind, owner: Owner) -> Result<Placed, MergeError> {
        let Some(node) = self.nodes.get(rel).copied() else {
            return Ok(Placed::New);
        };
        if node.kind == Kind::Dir {
            return Err(conflict(rel, node.kind, wanted, node.owner));
        }
        if node.owner == owner {
            return Err(MergeError::Duplicate { entry: shown(rel) });
        }
        let (parent, name) = self.parent(rel, owner)?;
        rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(|e| io_error(rel, "replace", e))?;
        self.nodes.remove(rel);
        Ok(Placed::Replaced { owner: node.owner })
    }

    /// Checks `rel` and opens its parent directories, creating those that
    /// are missing; the parent's handle and the last component.
    fn parent<'r>(&mut self, rel: &'r [u8], owner: Owner) -> Result<(&OwnedFd, &'r [u8]), MergeError> {
        let bad = |reason| MergeError::BadPath { entry: shown(rel), reason };
        if rel.starts_with(b"/") {
            return Err(bad("is absolute"));
        }
        let components: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
        if let Some(reason) = components.iter().find_map(|c| component_problem(c)) {
            return Err(bad(reason));
        }
        let (name, parents) = components.split_last().ok_or_else(|| bad("is empty"))?;
        if parents.len() > MAX_DEPTH {
            return Err(MergeError::TooDeep { entry: shown(rel) });
        }
        let shared = self.cursor.iter().zip(parents).take_while(|((open, _), name)| open == *name).count();
        self.cursor.truncate(shared);
        let mut prefix_len = parents[..shared].iter().map(|c| c.len() + 1).sum::<usize>();
        for component in &parents[shared..] {
            let prefix = &rel[..prefix_len + component.len()];
            prefix_len += component.len() + 1;
            let base = self.cursor.last().map_or(&self.root, |(_, fd)| fd);
            match self.nodes.get(prefix) {
                Some(Node { kind: Kind::Dir, .. }) => {}
                Some(node) => {
                    return Err(MergeError::BelowNonDirectory {
                        entry: shown(rel),
                        parent: shown(prefix),
                        what: node.kind.described(),
                    })
                }
                None => {
                    rustix::fs::mkdirat(base, *component, Mode::from_raw_mode(0o755))
                        .map_err(|e| io_error(prefix, "create", e))?;
                    self.nodes.insert(prefix.to_vec(), Node { kind: Kind::Dir, owner });
                }
            }
            let fd = rustix::fs::openat(base, *component, dir_flags(), Mode::empty())
                .map_err(|e| io_error(prefix, "open the directory", e))?;
            self.cursor.push((component.to_vec(), fd));
        }
        let parent = self.cursor.last().map_or(&self.root, |(_, fd)| fd);
        Ok((parent, name))
    }
}

fn conflict(rel: &[u8], existing: Kind, wanted: Kind, owner: Owner) -> MergeError {
    MergeError::Conflict { entry: shown(rel), existing: existing.described(), wanted: wanted.described(), owner }
}

fn io_error(rel: &[u8], action: &'static str, errno: Errno) -> MergeError {
    MergeError::Io { entry: shown(rel), action, source: errno.into() }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn shown(rel: &[u8]) -> String {
    crate::deb::show_bytes(rel)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::{Read, Write};
    use std::os::unix::fs::{symlink, PermissionsExt};

    use mini_store::testing::{snapshot, Scratch};

    use super::*;

    #[test]
    fn directories_merge_and_later_files_replace_earlier_ones() {
        let s = Scratch::new("merge-basic");
        let out = s.0.join("out");
        let mut tree = MergedTree::create(&out).unwrap();
        assert_eq!(tree.dir(b"usr", 0).unwrap(), Placed::New);
        let (mut f, placed) = tree.file(b"usr/bin/tool", true, 0).unwrap();
        f.write_all(b"first").unwrap();
        assert_eq!(placed, Placed::New);
        assert_eq!(tree.kind(b"usr/bin"), Some(Kind::Dir), "a missing parent is created");
        tree.symlink(b"usr/bin/alias", b"tool", 0).unwrap();
        assert_eq!(tree.dir(b"usr/bin", 1).unwrap(), Placed::Merged);
        let (mut f, placed) = tree.file(b"usr/bin/tool", false, 1).unwrap();
        f.write_all(b"second").unwrap();
        assert_eq!(placed, Placed::Replaced { owner: 0 });
        assert_eq!(tree.symlink(b"usr/bin/alias", b"other", 1).unwrap(), Placed::Replaced { owner: 0 });
        assert_eq!(fs::read(out.join("usr/bin/tool")).unwrap(), b"second");
        assert_eq!(fs::symlink_metadata(out.join("usr/bin/tool")).unwrap().permissions().mode() & 0o7777, 0o644);
        assert_eq!(fs::read_link(out.join("usr/bin/alias")).unwrap(), Path::new("other"));
        let mut copy = String::new();
        tree.open_own_file(b"usr/bin/tool", 1).unwrap().read_to_string(&mut copy).unwrap();
        assert_eq!(copy, "second");
        assert!(tree.open_own_file(b"usr/bin/tool", 0).is_err(), "only the owner's own files are copied");
        assert!(tree.open_own_file(b"usr/bin/alias", 1).is_err(), "a link is not copied");
    }

    #[test]
    fn conflicts_duplicates_and_links_as_parents_are_refused() {
        let s = Scratch::new("merge-refused");
        let victim = s.0.join("victim");
        fs::create_dir(&victim).unwrap();
        let before = snapshot(&victim);
        let mut tree = MergedTree::create(&s.0.join("out")).unwrap();
        tree.dir(b"etc", 0).unwrap();
        let err = tree.file(b"etc", false, 1).unwrap_err();
        assert!(matches!(err, MergeError::Conflict { owner: 0, .. }), "{err}");
        tree.file(b"f", false, 0).unwrap();
        assert!(matches!(tree.dir(b"f", 1), Err(MergeError::Conflict { .. })));
        assert!(matches!(tree.file(b"f", false, 0), Err(MergeError::Duplicate { .. })));
        tree.symlink(b"evil", victim.as_os_str().as_encoded_bytes(), 0).unwrap();
        for result in [tree.file(b"evil/pwn", false, 1).map(|_| ()), tree.dir(b"evil/d", 1).map(|_| ())] {
            let err = result.unwrap_err();
            assert!(
                matches!(&err, MergeError::BelowNonDirectory { parent, what: "a symbolic link", .. } if parent == "evil"),
                "{err}"
            );
        }
        for bad in [&b"/abs"[..], b"a/../b", b"./a", b"a//b", b"", b"a\0b"] {
            assert!(matches!(tree.file(bad, false, 0), Err(MergeError::BadPath { .. })), "{bad:?}");
        }
        assert_eq!(snapshot(&victim), before);
    }

    #[test]
    fn the_tree_must_be_new() {
        let s = Scratch::new("merge-new");
        fs::create_dir(s.0.join("real")).unwrap();
        symlink(s.0.join("real"), s.0.join("link")).unwrap();
        assert!(MergedTree::create(&s.0.join("real")).is_err());
        assert!(MergedTree::create(&s.0.join("link")).is_err());
    }
}
