//! Writing a file tree from untrusted input (a git tree, a binary-cache
//! archive, a canonical archive, a merged environment) without ever
//! following a link the input planted.
//!
//! Writing by path is unsafe here: an archive that holds `a -> /victim`
//! and then `a/pwn`, or `z -> /victim/file` and then a file `z`, makes a
//! path-based unpacker write outside its destination. Every unpacker
//! therefore goes through this module, which works relative to open
//! directory handles: each directory it enters is opened with
//! `O_DIRECTORY | O_NOFOLLOW`, each file is created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, and a name that already exists is a
//! duplicate entry, never something to overwrite or descend through.
//!
//! [`Dir`] is one such handle, for unpackers that walk a nested structure
//! (the canonical archive, buildenv's plan); [`TreeWriter`] takes entries
//! by relative path in any order (tar streams), reusing the handles along
//! the previous entry's parents and creating missing parents.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use thiserror::Error;

/// The most directories that may be nested inside one another below the root.
pub const MAX_DEPTH: usize = crate::nar::MAX_DEPTH;

/// Why an entry could not be written.
#[derive(Debug, Error)]
pub enum TreeError {
    /// The directory to unpack into could not be created or opened.
    #[error("cannot unpack into {}: {source}", root.display())]
    Root { root: PathBuf, source: io::Error },
    /// The entry's path is not a plain relative path.
    #[error("cannot unpack '{entry}' into {}: the path {reason}", root.display())]
    BadPath { root: PathBuf, entry: String, reason: &'static str },
    /// The entry's name is taken by an earlier entry.
    #[error(
        "cannot unpack '{entry}' into {}: duplicate entry (an earlier entry has the same path); \
         the archive is malformed or hostile",
        root.display()
    )]
    Duplicate { root: PathBuf, entry: String },
    /// One of the entry's parents is a symlink or a file.
    #[error(
        "cannot unpack '{entry}' into {}: its parent '{parent}' is {what}, not a directory; \
         entries are never written through links or below files, so the archive is malformed or hostile",
        root.display()
    )]
    ParentNotDirectory { root: PathBuf, entry: String, parent: String, what: &'static str },
    /// The entry is nested deeper than [`MAX_DEPTH`].
    #[error("cannot unpack '{entry}' into {}: it is nested more than {MAX_DEPTH} directories deep", root.display())]
    TooDeep { root: PathBuf, entry: String },
    /// A symlink's target cannot be a target.
    #[error("cannot unpack symlink '{entry}' into {}: its target {reason}", root.display())]
    BadTarget { root: PathBuf, entry: String, reason: &'static str },
    /// The filesystem refused an operation.
    #[error("cannot {action} '{entry}' in {}: {source}", root.display())]
    Io { root: PathBuf, entry: String, action: &'static str, source: io::Error },
}

/// An open directory of the tree being written, and where it is, for messages.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// The directory the whole tree is written into.
    root: Arc<Path>,
    /// This directory's path below `root` (empty for the root itself).
    rel: PathBuf,
    /// How many directories below the root this one is.
    depth: usize,
}

impl Dir {
    /// Opens the existing directory `path` (the caller's, trusted up to its
    /// last component, which must not be a symlink).
    pub fn open(path: &Path) -> Result<Dir, TreeError> {
        let fd = rustix::fs::openat(CWD, path, dir_flags(), Mode::empty())
            .map_err(|errno| TreeError::Root { root: path.to_path_buf(), source: explain_root(path, errno) })?;
        Ok(Dir { fd, root: Arc::from(path), rel: PathBuf::new(), depth: 0 })
    }

    /// Creates the directory `path`, which must not exist, with exactly
    /// `mode`, and opens it.
    pub fn create(path: &Path, mode: u32) -> Result<Dir, TreeError> {
        let root_error = |errno: Errno| TreeError::Root { root: path.to_path_buf(), source: errno.into() };
        rustix::fs::mkdirat(CWD, path, Mode::from_raw_mode(0o700)).map_err(root_error)?;
        let dir = Dir::open(path)?;
        rustix::fs::fchmod(&dir.fd, Mode::from_raw_mode(mode)).map_err(root_error)?;
        Ok(dir)
    }

    /// The entry `name` of this directory, as a path below the root, for messages.
    pub fn entry(&self, name: &[u8]) -> PathBuf {
        self.rel.join(std::ffi::OsStr::from_bytes(name))
    }

    /// Where the entry `name` of this directory is on disk, for messages.
    pub fn path_of(&self, name: &[u8]) -> PathBuf {
        self.root.join(self.entry(name))
    }

    /// Creates the directory `name` here with exactly `mode` and opens it.
    /// Give the owner write permission if entries will be created inside.
    pub fn create_dir(&self, name: &[u8], mode: u32) -> Result<Dir, TreeError> {
        self.check_name(name)?;
        if self.depth >= MAX_DEPTH {
            return Err(TreeError::TooDeep { root: self.root.to_path_buf(), entry: self.shown(name) });
        }
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)).map_err(|e| self.creating(name, e))?;
        let dir = self.open_dir(name).map_err(|e| e.for_entry(&self.shown(name)))?;
        rustix::fs::fchmod(&dir.fd, Mode::from_raw_mode(mode)).map_err(|e| self.io(name, "set the mode of", e))?;
        Ok(dir)
    }

    /// Creates the regular file `name` here with exactly `mode`, open for writing.
    pub fn create_file(&self, name: &[u8], mode: u32) -> Result<File, TreeError> {
        self.check_name(name)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode & 0o777))
            .map_err(|e| self.creating(name, e))?;
        // The umask may have cleared bits: the mode must not depend on it.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| self.io(name, "set the mode of", e))?;
        Ok(File::from(fd))
    }

    /// Creates the symlink `name` here, pointing at `target` (stored, never followed).
    pub fn symlink(&self, name: &[u8], target: &[u8]) -> Result<(), TreeError> {
        self.check_name(name)?;
        let reason = if target.is_empty() {
            Some("is empty")
        } else if target.contains(&0) {
            Some("contains NUL")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(TreeError::BadTarget { root: self.root.to_path_buf(), entry: self.shown(name), reason });
        }
        rustix::fs::symlinkat(target, &self.fd, name).map_err(|e| self.creating(name, e))
    }

    /// Opens the existing directory `name` here, refusing a symlink or a
    /// non-directory with [`TreeError::ParentNotDirectory`] (naming `name`
    /// itself as the entry; [`TreeWriter`] names the entry it was writing).
    pub fn open_dir(&self, name: &[u8]) -> Result<Dir, TreeError> {
        self.check_name(name)?;
        match rustix::fs::openat(&self.fd, name, dir_flags(), Mode::empty()) {
            Ok(fd) => Ok(Dir { fd, root: Arc::clone(&self.root), rel: self.entry(name), depth: self.depth + 1 }),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let what = match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                        FileType::Symlink => "a symbolic link",
                        FileType::RegularFile => "a regular file",
                        FileType::Directory => "a directory that changed while it was opened",
                        _ => "a special file",
                    },
                    Err(_) => "something that is not a directory",
                };
                let shown = self.shown(name);
                Err(TreeError::ParentNotDirectory {
                    root: self.root.to_path_buf(),
                    entry: shown.clone(),
                    parent: shown,
                    what,
                })
            }
            Err(errno) => Err(self.io(name, "open the directory", errno)),
        }
    }

    fn check_name(&self, name: &[u8]) -> Result<(), TreeError> {
        match component_problem(name) {
            Some(reason) => Err(TreeError::BadPath { root: self.root.to_path_buf(), entry: self.shown(name), reason }),
            None => Ok(()),
        }
    }

    /// The error for a failed creation of `name`: an existing name is a duplicate.
    fn creating(&self, name: &[u8], errno: Errno) -> TreeError {
        match errno {
            Errno::EXIST => TreeError::Duplicate { root: self.root.to_path_buf(), entry: self.shown(name) },
            errno => self.io(name, "create", errno),
        }
    }

    fn io(&self, name: &[u8], action: &'static str, errno: Errno) -> TreeError {
        TreeError::Io { root: self.root.to_path_buf(), entry: self.shown(name), action, source: errno.into() }
    }

    fn shown(&self, name: &[u8]) -> String {
        show_path(self.entry(name).as_os_str().as_bytes())
    }
}

impl TreeError {
    /// This error, about the parent of `entry`, told as a failure to write `entry`.
    fn for_entry(self, entry: &str) -> TreeError {
        match self {
            TreeError::ParentNotDirectory { root, parent, what, .. } => {
                TreeError::ParentNotDirectory { root, entry: entry.to_string(), parent, what }
            }
            other => other,
        }
    }
}

/// Writes entries given by relative path (`a/b/c`, `/`-separated bytes)
/// into one directory, in any order: parents an entry needs are created
/// (0755) when missing, and may be named by an entry of their own later,
/// once.
#[derive(Debug)]
pub struct TreeWriter {
    root: Dir,
    /// The open directories along the previous entry's parents, outermost first.
    cursor: Vec<(Vec<u8>, Dir)>,
    /// Directories created as parents and not yet named by an entry of their own.
    implicit: HashSet<Vec<u8>>,
}

impl TreeWriter {
    /// Writes into the existing directory `dir` (see [`Dir::open`]).
    pub fn open(dir: &Path) -> Result<TreeWriter, TreeError> {
        Ok(TreeWriter::new(Dir::open(dir)?))
    }

    /// Writes into `root`.
    pub fn new(root: Dir) -> TreeWriter {
        TreeWriter { root, cursor: Vec::new(), implicit: HashSet::new() }
    }

    /// The directory written into.
    pub fn root(&self) -> &Dir {
        &self.root
    }

    /// Creates the directory `rel` with exactly `mode`.
    pub fn dir(&mut self, rel: &[u8], mode: u32) -> Result<(), TreeError> {
        let (parent, name) = self.parent(rel)?;
        match parent.create_dir(name, mode) {
            Ok(_) => Ok(()),
            Err(TreeError::Duplicate { .. }) if self.implicit.remove(rel) => {
                let (parent, name) = self.parent(rel)?;
                let dir = parent.open_dir(name)?;
                rustix::fs::fchmod(&dir.fd, Mode::from_raw_mode(mode))
                    .map_err(|e| parent.io(name, "set the mode of", e))
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the regular file `rel` with exactly `mode`, open for writing.
    pub fn file(&mut self, rel: &[u8], mode: u32) -> Result<File, TreeError> {
        let (parent, name) = self.parent(rel)?;
        parent.create_file(name, mode)
    }

    /// Creates the symlink `rel` pointing at `target`.
    pub fn symlink(&mut self, rel: &[u8], target: &[u8]) -> Result<(), TreeError> {
        let (parent, name) = self.parent(rel)?;
        parent.symlink(name, target)
    }

    /// Checks `rel` and opens (or creates) its parent directories; the
    /// parent and the last component.
    fn parent<'r>(&mut self, rel: &'r [u8]) -> Result<(&Dir, &'r [u8]), TreeError> {
        let bad = |reason| TreeError::BadPath { root: self.root.root.to_path_buf(), entry: show_path(rel), reason };
        if rel.is_empty() {
            return Err(bad("is empty"));
        }
        if rel.starts_with(b"/") {
            return Err(bad("is absolute"));
        }
        let components: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
        if let Some(reason) = components.iter().find_map(|c| component_problem(c)) {
            return Err(bad(reason));
        }
        let (name, parents) = components.split_last().ok_or_else(|| bad("is empty"))?;
        if parents.len() > MAX_DEPTH {
            return Err(TreeError::TooDeep { root: self.root.root.to_path_buf(), entry: show_path(rel) });
        }
        let shared = self.cursor.iter().zip(parents).take_while(|((open, _), name)| open == *name).count();
        self.cursor.truncate(shared);
        for (i, component) in parents.iter().enumerate().skip(shared) {
            let base = self.cursor.last().map_or(&self.root, |(_, dir)| dir);
            let dir = match base.open_dir(component) {
                Ok(dir) => dir,
                Err(TreeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    let dir = base.create_dir(component, 0o755).map_err(|e| e.for_entry(&show_path(rel)))?;
                    self.implicit.insert(parents[..=i].join(&b'/'));
                    dir
                }
                Err(e) => return Err(e.for_entry(&show_path(rel))),
            };
            self.cursor.push((component.to_vec(), dir));
        }
        let parent = self.cursor.last().map_or(&self.root, |(_, dir)| dir);
        Ok((parent, name))
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Why `name` cannot be one component of a path, if it cannot.
pub fn component_problem(name: &[u8]) -> Option<&'static str> {
    match name {
        b"" => Some("has an empty component ('//' or a trailing '/')"),
        b"." | b".." => Some("has a '.' or '..' component"),
        _ if name.contains(&b'/') => Some("has a '/' inside a name"),
        _ if name.contains(&0) => Some("contains NUL"),
        _ => None,
    }
}

/// An errno from opening the root `path`, said plainly where the OS's words mislead.
fn explain_root(path: &Path, errno: Errno) -> io::Error {
    match errno {
        Errno::LOOP | Errno::NOTDIR if path.is_symlink() => io::Error::other("it is a symbolic link, not a directory"),
        errno => errno.into(),
    }
}

/// Shows untrusted path bytes in a message: escaped, and cut short if long.
fn show_path(bytes: &[u8]) -> String {
    crate::nar::show(bytes)
}

#[cfg(test)]
mod tests {
    use crate::testing::{snapshot, Rng};
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    /// A fresh directory for one test, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("mini-tree-writer-{}-{test}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn writes_directories_files_and_links_with_exact_modes() {
        let s = Scratch::new("basic");
        let dest = s.0.join("dest");
        let mut writer = TreeWriter::new(Dir::create(&dest, 0o755).unwrap());
        writer.dir(b"bin", 0o755).unwrap();
        writer.file(b"bin/tool", 0o755).unwrap().write_all(b"#!/bin/sh\n").unwrap();
        writer.file(b"deep/er/file", 0o600).unwrap().write_all(b"x").unwrap();
        writer.symlink(b"link", b"/absolute/elsewhere").unwrap();
        writer.dir(b"deep", 0o700).unwrap();
        assert_eq!(mode(&dest.join("bin/tool")), 0o755);
        assert_eq!(mode(&dest.join("deep/er/file")), 0o600);
        assert_eq!(mode(&dest.join("deep/er")), 0o755);
        assert_eq!(mode(&dest.join("deep")), 0o700, "an implicit parent may be named once");
        assert_eq!(fs::read_link(dest.join("link")).unwrap(), Path::new("/absolute/elsewhere"));
        let again = writer.dir(b"deep", 0o755).unwrap_err();
        assert!(matches!(again, TreeError::Duplicate { .. }), "{again}");
    }

    #[test]
    fn refuses_to_write_through_links_or_over_entries() {
        let s = Scratch::new("links");
        let victim = s.0.join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("existing.txt"), "keep").unwrap();
        let mut writer = TreeWriter::new(Dir::create(&s.0.join("dest"), 0o755).unwrap());

        writer.symlink(b"a", victim.as_os_str().as_bytes()).unwrap();
        let err = writer.file(b"a/pwn", 0o644).unwrap_err();
        assert!(matches!(&err, TreeError::ParentNotDirectory { parent, what: "a symbolic link", .. } if parent == "a"));
        assert!(err.to_string().contains("cannot unpack 'a/pwn'"), "{err}");
        assert!(matches!(writer.dir(b"a/sub", 0o755), Err(TreeError::ParentNotDirectory { .. })));
        assert!(matches!(writer.symlink(b"a/l", b"x"), Err(TreeError::ParentNotDirectory { .. })));
        assert!(matches!(writer.dir(b"a", 0o755), Err(TreeError::Duplicate { .. })));

        writer.symlink(b"z", victim.join("existing.txt").as_os_str().as_bytes()).unwrap();
        let err = writer.file(b"z", 0o644).unwrap_err();
        assert!(matches!(err, TreeError::Duplicate { .. }), "{err}");
        assert!(err.to_string().contains("duplicate entry"), "{err}");

        writer.file(b"f", 0o644).unwrap();
        let err = writer.file(b"f/below", 0o644).unwrap_err();
        assert!(matches!(err, TreeError::ParentNotDirectory { what: "a regular file", .. }), "{err}");
        assert!(matches!(writer.file(b"f", 0o644), Err(TreeError::Duplicate { .. })));
        assert!(matches!(writer.symlink(b"f", b"x"), Err(TreeError::Duplicate { .. })));

        assert_eq!(fs::read_dir(&victim).unwrap().count(), 1);
        assert_eq!(fs::read_to_string(victim.join("existing.txt")).unwrap(), "keep");
    }

    #[test]
    fn refuses_paths_that_are_not_plain_and_relative() {
        let s = Scratch::new("paths");
        let mut writer = TreeWriter::new(Dir::create(&s.0.join("dest"), 0o755).unwrap());
        for (rel, reason) in [
            (&b""[..], "is empty"),
            (b"/etc/passwd", "is absolute"),
            (b"../up", "has a '.' or '..' component"),
            (b"a/../../up", "has a '.' or '..' component"),
            (b"./a", "has a '.' or '..' component"),
            (b"a//b", "has an empty component ('//' or a trailing '/')"),
            (b"a/", "has an empty component ('//' or a trailing '/')"),
            (b"a\0b", "contains NUL"),
        ] {
            match writer.file(rel, 0o644) {
                Err(TreeError::BadPath { reason: got, .. }) => assert_eq!(got, reason, "{rel:?}"),
                other => panic!("{rel:?}: expected BadPath, got {other:?}"),
            }
        }
        assert!(matches!(writer.symlink(b"l", b""), Err(TreeError::BadTarget { reason: "is empty", .. })));
        assert!(matches!(writer.symlink(b"l", b"a\0b"), Err(TreeError::BadTarget { .. })));
        assert!(matches!(writer.root().create_file(b"a/b", 0o644), Err(TreeError::BadPath { .. })));
        assert_eq!(fs::read_dir(s.0.join("dest")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(&s.0).unwrap().count(), 1);
    }

    #[test]
    fn refuses_nesting_deeper_than_the_limit() {
        let s = Scratch::new("deep");
        let mut writer = TreeWriter::new(Dir::create(&s.0.join("dest"), 0o755).unwrap());
        let deepest = vec!["d"; MAX_DEPTH + 1].join("/");
        writer.file(deepest.as_bytes(), 0o644).unwrap();
        let deeper = format!("{deepest}/x");
        assert!(matches!(writer.file(deeper.as_bytes(), 0o644), Err(TreeError::TooDeep { .. })));
        let mut dir = Dir::open(&s.0.join("dest")).unwrap();
        for _ in 0..MAX_DEPTH {
            dir = dir.open_dir(b"d").unwrap();
        }
        assert!(matches!(dir.create_dir(b"x", 0o755), Err(TreeError::TooDeep { .. })));
    }

    #[test]
    fn the_root_must_be_a_directory_and_not_a_link() {
        let s = Scratch::new("root");
        fs::create_dir(s.0.join("real")).unwrap();
        symlink(s.0.join("real"), s.0.join("link")).unwrap();
        let err = TreeWriter::open(&s.0.join("link")).unwrap_err();
        assert!(err.to_string().contains("it is a symbolic link"), "{err}");
        assert!(matches!(Dir::create(&s.0.join("real"), 0o755), Err(TreeError::Root { .. })));
        fs::write(s.0.join("file"), "").unwrap();
        assert!(matches!(TreeWriter::open(&s.0.join("file")), Err(TreeError::Root { .. })));
    }

    /// Random sequences of entries (links aimed outside, absolute and `..`
    /// paths, duplicates, entries below links and files, deep paths) never
    /// write outside the destination and never panic.
    #[test]
    fn random_entries_stay_inside_the_destination() {
        let s = Scratch::new("fuzz");
        let sentinel = s.0.join("sentinel");
        fs::create_dir_all(sentinel.join("inner")).unwrap();
        fs::write(sentinel.join("keep.txt"), "keep").unwrap();
        let before = snapshot(&sentinel);
        let dest = s.0.join("dest");
        let deep = vec!["d"; MAX_DEPTH + 5].join("/");
        let components = ["a", "b", "a", "inner", "keep.txt", "..", ".", "", "x\0y"];
        let targets: [&[u8]; 6] = [sentinel.as_os_str().as_bytes(), b"../sentinel", b"..", b"/", b"a", b""];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d_u64);
        let mut next = |n: u64| rng.below(n);
        let (mut written, mut refused) = (0, 0);
        for case in 0..200 {
            let mut writer = TreeWriter::new(Dir::create(&dest, 0o755).unwrap());
            for _ in 0..1 + next(8) {
                let mut path: Vec<&str> = (0..1 + next(3)).map(|_| components[next(9) as usize]).collect();
                if next(3) != 0 {
                    path.retain(|c| !matches!(*c, "" | "." | ".." | "x\0y"));
                }
                let mut path = path.join("/");
                match next(128) {
                    0..8 => path.insert(0, '/'),
                    8 => path = format!("{}/{path}", &deep[..2 * (MAX_DEPTH - 2 + next(8) as usize) - 1]),
                    _ => {}
                }
                let rel = path.as_bytes();
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match next(3) {
                    0 => writer.dir(rel, 0o755),
                    1 => writer.symlink(rel, targets[next(6) as usize]),
                    _ => writer.file(rel, 0o644).and_then(|mut f| {
                        f.write_all(b"pwned").map_err(|e| TreeError::Io {
                            root: dest.clone(),
                            entry: path.clone(),
                            action: "write",
                            source: e,
                        })
                    }),
                }));
                match outcome {
                    Ok(Ok(())) => written += 1,
                    Ok(Err(_)) => refused += 1,
                    Err(_) => panic!("case {case}: the writer panicked on '{}'", path.escape_default()),
                }
            }
            assert_eq!(snapshot(&sentinel), before, "case {case}: the sentinel changed");
            assert_eq!(
                fs::read_dir(&s.0).unwrap().count(),
                2,
                "case {case}: something appeared beside the destination"
            );
            fs::remove_dir_all(&dest).unwrap();
        }
        assert!(written > 200 && refused > 200, "both outcomes reached: {written} / {refused}");
    }
}
