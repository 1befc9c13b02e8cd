//! Opening and removing trees that untrusted code shaped: a build's
//! sandbox root and scratch directories, a rejected output, a half-unpacked
//! archive. A builder may have replaced any directory in such a tree by a
//! symlink to a host directory, or taken away its owner's permissions, so
//! everything here works relative to directory handles opened with
//! `O_NOFOLLOW`: a link is removed as a link and never entered, and a
//! directory's mode is changed only through a handle to that directory.
//!
//! Only the path handed in (a directory mini itself created) is resolved by
//! name; every name below it is looked up in its parent's handle.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};

/// How deep a tree may nest before removal gives up on it (each level holds
/// one open directory handle).
const MAX_DEPTH: usize = 512;

/// Opens the directory `name` of `parent` without following a link. If its
/// owner (this process) has taken away its own access, as a builder may, the
/// owner's read, write and search bits are given back first.
pub fn open_dir_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    open_owned_at(parent, name, OFlags::DIRECTORY)
}

/// Opens the regular file `name` of `parent` for reading, without following
/// a link, giving its owner read access back first if it was taken away.
pub fn open_file_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let file = open_owned_at(parent, name, OFlags::empty())?;
    if FileType::from_raw_mode(rustix::fs::fstat(&file)?.st_mode) != FileType::RegularFile {
        return Err(io::Error::other(format!("'{}' is not a regular file", name.to_string_lossy())));
    }
    Ok(file)
}

fn open_owned_at(parent: BorrowedFd<'_>, name: &OsStr, kind: OFlags) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | kind | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Err(rustix::io::Errno::ACCESS) => {
            // A handle that needs no access to the file: it names the file
            // itself (never a link), and `/proc/self/fd/N` lets its mode be
            // changed through it.
            let path_flags = OFlags::PATH | kind | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let handle = rustix::fs::openat(parent, name, path_flags, Mode::empty())?;
            let stat = rustix::fs::fstat(&handle)?;
            if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
                return Err(rustix::io::Errno::LOOP.into());
            }
            let by_handle = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&handle));
            // Only the access needed: a file's executable bit is part of its contents.
            let access = if kind.contains(OFlags::DIRECTORY) { 0o700 } else { 0o400 };
            rustix::fs::chmod(by_handle.as_str(), Mode::from_raw_mode((stat.st_mode & 0o7777) | access))?;
            Ok(rustix::fs::openat(parent, name, flags, Mode::empty())?)
        }
        other => Ok(other?),
    }
}

/// Opens the directory at `path`, which this process made (so the names
/// above it are trusted), refusing a link in its last component.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::other(format!("'{}' names no directory", path.display())))?;
    let parent = rustix::fs::openat(CWD, parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    open_dir_at(parent.as_fd(), name)
}

/// Removes the file, link or tree `path` (whose parent this process made)
/// without following any link in it. Cleanup that fails leaves junk, never
/// touches anything outside the tree.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else { return Ok(()) };
    let parent =
        match rustix::fs::openat(CWD, parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
    remove_at(parent.as_fd(), name, 0)
}

/// Removes the entry `name` of `parent`, emptying it first if it is a
/// directory (entered by handle, never through a link).
pub fn remove_at(parent: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<()> {
    let stat = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?);
    }
    if depth >= MAX_DEPTH {
        return Err(io::Error::other(format!("a tree nested more than {MAX_DEPTH} directories deep")));
    }
    let dir = open_dir_at(parent, name)?;
    // Removing entries needs write and search access to the directory.
    if stat.st_mode & 0o300 != 0o300 {
        rustix::fs::fchmod(&dir, Mode::from_raw_mode((stat.st_mode & 0o7777) | 0o700))?;
    }
    for name in entry_names(&dir)? {
        remove_at(dir.as_fd(), &name, depth + 1)?;
    }
    Ok(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
}

/// The names in the directory `dir` (without `.` and `..`).
pub fn entry_names(dir: &OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::PathBuf;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mini-teardown-{name}-{}", std::process::id()));
        let _ = std::process::Command::new("chmod").args(["-R", "u+rwx"]).arg(&dir).status();
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn removal_never_enters_a_link_and_opens_locked_directories() {
        let s = scratch("links");
        let victim = s.join("victim");
        fs::create_dir_all(victim.join("sub")).unwrap();
        fs::write(victim.join("keep"), "keep").unwrap();
        let tree = s.join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/file"), "x").unwrap();
        symlink(&victim, tree.join("a/to-victim")).unwrap();
        symlink(victim.join("keep"), tree.join("keep-link")).unwrap();
        // A directory its owner locked itself out of, holding more.
        fs::create_dir(tree.join("locked")).unwrap();
        fs::write(tree.join("locked/inside"), "x").unwrap();
        fs::set_permissions(tree.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(tree.join("a"), fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert_eq!(fs::read_to_string(victim.join("keep")).unwrap(), "keep");
        assert!(victim.join("sub").is_dir());
        fs::remove_dir_all(&s).unwrap();
    }

    #[test]
    fn a_link_given_as_the_tree_is_removed_as_a_link() {
        let s = scratch("top-link");
        let victim = s.join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("keep"), "keep").unwrap();
        symlink(&victim, s.join("tree")).unwrap();
        remove_tree(&s.join("tree")).unwrap();
        assert!(fs::symlink_metadata(s.join("tree")).is_err());
        assert!(victim.join("keep").exists());
        assert!(open_dir(&s.join("victim")).is_ok());
        symlink(&victim, s.join("again")).unwrap();
        assert!(open_dir(&s.join("again")).is_err(), "open_dir followed a link");
        remove_tree(&s.join("missing")).unwrap();
        fs::remove_dir_all(&s).unwrap();
    }
}
