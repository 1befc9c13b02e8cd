//! Reading the store as an image sees it, and never the host through it.
//!
//! An image holds its closure at `/mini/store`, so a symlink in a store
//! path means what it means there: an absolute target is read under
//! `/mini/store`, a relative one from the link's directory. Store paths are
//! made by builders, which are untrusted: one may hold `shadow ->
//! /etc/shadow` or `root -> /root`. So everything the image builder reads
//! goes through directory handles, one component at a time with
//! `O_NOFOLLOW`, and a link is followed only while it stays in the closure.
//! A link that leaves it (an absolute target outside `/mini/store`, `..`
//! above it, a store path the closure does not hold) is reported, never
//! followed: callers store it as a link, or refuse it when it is what they
//! were asked to read.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use mini_store::store_path::STORE_DIR;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Links followed in one resolution, the kernel's own limit.
const MAX_LINKS: usize = 40;

/// The physical store directory, seen as `/mini/store` holding only the
/// store paths of a closure (or all of them).
pub struct StoreView {
    root: OwnedFd,
    /// Base names of the store paths that may be read; `None`: any.
    members: Option<BTreeSet<OsString>>,
}

/// What a logical path leads to, opened.
#[derive(Debug)]
pub enum Node {
    Dir(OwnedFd),
    File(File),
    /// A device, fifo or socket: nothing an image reads.
    Other,
}

/// Where resolving a logical path ended.
#[derive(Debug)]
pub enum Resolution {
    /// Inside the closure: the logical path after every link, and the node.
    Found { logical: OsString, node: Node },
    /// On the way, `link` (logical) points at `target`, outside the closure.
    Leaves { link: OsString, target: OsString },
    /// The path names no store path of the closure.
    NotInClosure,
}

impl StoreView {
    /// The store at `store_dir` (its physical `store/` directory), limited
    /// to `members` (store path base names) when given.
    pub fn open(store_dir: &Path, members: Option<BTreeSet<OsString>>) -> io::Result<StoreView> {
        Ok(StoreView { root: open_store_dir(store_dir)?, members })
    }

    /// Follows `logical` (`/mini/store/…`) to what it names, following links
    /// only while they stay in the closure.
    pub fn resolve(&self, logical: &OsStr) -> io::Result<Resolution> {
        let Some(rest) = under_store_dir(logical.as_bytes()) else { return Ok(Resolution::NotInClosure) };
        let mut pending = components(rest);
        // The path given is a plain one: only a link's target may climb.
        if pending.iter().any(|c| c.as_bytes() == b"..") {
            return Ok(Resolution::NotInClosure);
        }
        // The directories resolved so far, below the store directory.
        let mut dirs: Vec<(OsString, OwnedFd)> = Vec::new();
        let mut last_link: Option<(OsString, OsString)> = None;
        let mut links = 0;
        let leaves = |last: Option<(OsString, OsString)>| match last {
            Some((link, target)) => Resolution::Leaves { link, target },
            None => Resolution::NotInClosure,
        };
        while let Some(name) = pending.pop_front() {
            if name.as_bytes() == b".." {
                if dirs.pop().is_none() {
                    return Ok(leaves(last_link));
                }
                continue;
            }
            if dirs.is_empty() && !self.admits(&name) {
                return Ok(leaves(last_link));
            }
            let parent = dirs.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd());
            let stat = rustix::fs::statat(parent, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from(rustix::io::Errno::LOOP));
                    }
                    let target =
                        OsString::from_vec(rustix::fs::readlinkat(parent, name.as_os_str(), Vec::new())?.into_bytes());
                    let link = logical_of(dirs.iter().map(|(n, _)| n.as_os_str()).chain([name.as_os_str()]));
                    let mut next = if target.as_bytes().starts_with(b"/") {
                        let Some(rest) = under_store_dir(target.as_bytes()) else {
                            return Ok(Resolution::Leaves { link, target });
                        };
                        dirs.clear();
                        components(rest)
                    } else {
                        components(target.as_bytes())
                    };
                    next.extend(pending);
                    pending = next;
                    last_link = Some((link, target));
                }
                FileType::Directory => {
                    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    let fd = rustix::fs::openat(parent, name.as_os_str(), flags, Mode::empty())?;
                    dirs.push((name, fd));
                }
                kind if pending.is_empty() => {
                    let node =
                        if kind == FileType::RegularFile { Node::File(open_file(parent, &name)?) } else { Node::Other };
                    let logical = logical_of(dirs.iter().map(|(n, _)| n.as_os_str()).chain([name.as_os_str()]));
                    return Ok(Resolution::Found { logical, node });
                }
                _ => return Err(io::Error::from(rustix::io::Errno::NOTDIR)),
            }
        }
        let logical = logical_of(dirs.iter().map(|(n, _)| n.as_os_str()));
        match dirs.pop() {
            Some((_, fd)) => Ok(Resolution::Found { logical, node: Node::Dir(fd) }),
            // The store directory itself is no store path.
            None => Ok(Resolution::NotInClosure),
        }
    }

    fn admits(&self, base_name: &OsStr) -> bool {
        self.members.as_ref().is_none_or(|m| m.contains(base_name))
    }
}

/// Opens the store directory itself (mini's own, so links to it are
/// followed), the handle everything in it is opened under.
pub fn open_store_dir(store_dir: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(store_dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Opens the regular file `name` in `dir` for reading, refusing a link
/// (`O_NOFOLLOW`) and anything that is not a regular file by now.
pub fn open_file(dir: impl AsFd, name: &OsStr) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = File::from(rustix::fs::openat(dir, name, flags, Mode::empty())?);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(file)
}

/// Opens the directory `name` in `dir`, refusing a link.
pub fn open_dir(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// The names in the directory `dir`, sorted by their bytes.
pub fn sorted_names(dir: impl AsFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name));
        }
    }
    names.sort();
    Ok(names)
}

/// Resolves a path a user named, which may lead into the store (`./result`
/// is a link to a store path): links are followed as usual until the path
/// reaches `store_dir` (the physical store directory), and from there only
/// as far as they stay in the store, read as `/mini/store`. Returns the
/// physical path, free of links; a link leaving the store is an error
/// naming it.
pub fn resolve_user_path(path: &Path, store_dir: &Path) -> io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let store_dir = std::fs::canonicalize(store_dir).ok();
    let mut resolved = PathBuf::from("/");
    let mut pending: VecDeque<OsString> = VecDeque::new();
    for component in absolute.components() {
        match component {
            Component::Normal(name) => pending.push_back(name.to_owned()),
            Component::ParentDir => pending.push_back("..".into()),
            _ => {}
        }
    }
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if let Some(store_dir) = &store_dir {
            if let Ok(inside) = resolved.strip_prefix(store_dir) {
                // In the store: the rest is read as the image reads it.
                let mut logical = OsString::from(STORE_DIR);
                for part in inside.components().chain(std::iter::once(Component::Normal(&name))) {
                    logical.push("/");
                    logical.push(part.as_os_str());
                }
                for part in pending {
                    logical.push("/");
                    logical.push(part);
                }
                return in_store(&logical, store_dir);
            }
        }
        if name.as_bytes() == b".." {
            resolved.pop();
            continue;
        }
        let next = resolved.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::from(rustix::io::Errno::LOOP));
                }
                let target = std::fs::read_link(&next)?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                let mut front: VecDeque<OsString> = components(target.as_os_str().as_bytes());
                front.extend(pending);
                pending = front;
            }
            Ok(_) => resolved = next,
            Err(e) => return Err(e),
        }
    }
    Ok(resolved)
}

/// The physical path of `logical` in the store at `store_dir`, following
/// links only inside the store.
fn in_store(logical: &OsStr, store_dir: &Path) -> io::Result<PathBuf> {
    let view = StoreView::open(store_dir, None)?;
    let out_of_store = |what: String| io::Error::new(io::ErrorKind::PermissionDenied, what);
    match view.resolve(logical)? {
        Resolution::Found { logical, .. } => {
            let rest = under_store_dir(logical.as_bytes()).unwrap_or_default();
            Ok(store_dir.join(OsStr::from_bytes(rest)))
        }
        Resolution::Leaves { link, target } => Err(out_of_store(format!(
            "{} is a link to {}, outside the store; mini does not follow links out of the store",
            Path::new(&link).display(),
            Path::new(&target).display()
        ))),
        Resolution::NotInClosure => Err(out_of_store(format!("{} is not a store path", Path::new(logical).display()))),
    }
}

/// What follows `/mini/store/` in `path`, or `None` when it is elsewhere.
fn under_store_dir(path: &[u8]) -> Option<&[u8]> {
    let rest = path.strip_prefix(STORE_DIR.as_bytes())?;
    match rest.first() {
        None => Some(rest),
        Some(b'/') => Some(&rest[1..]),
        Some(_) => None,
    }
}

/// The non-empty components of `path`, `.` left out.
fn components(path: &[u8]) -> VecDeque<OsString> {
    path.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".").map(|c| OsString::from_vec(c.to_vec())).collect()
}

fn logical_of<'a>(names: impl Iterator<Item = &'a OsStr>) -> OsString {
    let mut logical = OsString::from(STORE_DIR);
    for name in names {
        logical.push("/");
        logical.push(name);
    }
    logical
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const A: &str = "0123456789abcdfghijklmnpqrsvwxyz-a";
    const B: &str = "1123456789abcdfghijklmnpqrsvwxyz-b";
    const C: &str = "2123456789abcdfghijklmnpqrsvwxyz-c";

    struct Fixture(PathBuf);

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A store with `a` (files, links in and out) and `b` and `c` beside it,
    /// and a host directory with a secret.
    fn fixture(name: &str) -> (Fixture, PathBuf) {
        let dir = std::env::temp_dir().join(format!("mini-confined-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = dir.join("store");
        let a = store.join(A);
        std::fs::create_dir_all(a.join("bin")).unwrap();
        std::fs::create_dir_all(store.join(B).join("bin")).unwrap();
        std::fs::create_dir_all(store.join(C)).unwrap();
        std::fs::create_dir_all(dir.join("host")).unwrap();
        std::fs::write(dir.join("host/secret"), "secret").unwrap();
        std::fs::write(a.join("bin/tool"), "tool").unwrap();
        std::fs::write(store.join(B).join("bin/other"), "other").unwrap();
        symlink("tool", a.join("bin/alias")).unwrap();
        symlink(format!("{STORE_DIR}/{B}/bin"), a.join("more")).unwrap();
        symlink(format!("{STORE_DIR}/{C}"), a.join("elsewhere")).unwrap();
        symlink(dir.join("host/secret"), a.join("shadow")).unwrap();
        symlink(dir.join("host"), a.join("root")).unwrap();
        symlink("../../../host/secret", a.join("climb")).unwrap();
        symlink("../../../../../../../../../../etc", a.join("bin/deep")).unwrap();
        symlink("loop", a.join("loop")).unwrap();
        (Fixture(dir), store)
    }

    fn resolve(view: &StoreView, rest: &str) -> Resolution {
        view.resolve(OsStr::new(&format!("{STORE_DIR}/{rest}"))).unwrap()
    }

    #[test]
    fn links_are_followed_inside_the_closure_only() {
        let (_fixture, store) = fixture("closure");
        let members = [A, B].iter().map(OsString::from).collect();
        let view = StoreView::open(&store, Some(members)).unwrap();
        let found = |rest: &str| match resolve(&view, rest) {
            Resolution::Found { logical, node } => (logical.into_string().unwrap(), node),
            other => panic!("{rest}: {other:?}"),
        };
        let (logical, node) = found(&format!("{A}/bin/alias"));
        assert_eq!(logical, format!("{STORE_DIR}/{A}/bin/tool"));
        let Node::File(mut file) = node else { panic!("not a file") };
        let mut text = String::new();
        io::Read::read_to_string(&mut file, &mut text).unwrap();
        assert_eq!(text, "tool");
        let (logical, node) = found(&format!("{A}/more/other"));
        assert_eq!(logical, format!("{STORE_DIR}/{B}/bin/other"));
        assert!(matches!(node, Node::File(_)));
        assert!(matches!(found(&format!("{A}/more")).1, Node::Dir(_)));

        for (rest, link) in [("shadow", "shadow"), ("root", "root"), ("climb", "climb"), ("bin/deep", "bin/deep")] {
            match resolve(&view, &format!("{A}/{rest}")) {
                Resolution::Leaves { link: l, .. } => assert_eq!(l, OsString::from(format!("{STORE_DIR}/{A}/{link}"))),
                other => panic!("{rest}: {other:?}"),
            }
        }
        // `c` is in the store but not in the closure.
        assert!(matches!(resolve(&view, &format!("{A}/elsewhere")), Resolution::Leaves { .. }));
        assert!(matches!(resolve(&view, C), Resolution::NotInClosure));
        assert!(matches!(resolve(&view, &format!("{A}/../{C}")), Resolution::NotInClosure));
        assert!(matches!(view.resolve(OsStr::new("/etc/passwd")).unwrap(), Resolution::NotInClosure));
        assert!(view.resolve(OsStr::new(&format!("{STORE_DIR}/{A}/loop"))).is_err());
        assert!(view.resolve(OsStr::new(&format!("{STORE_DIR}/{A}/bin/tool/x"))).is_err());
    }

    #[test]
    fn user_paths_stop_following_links_once_in_the_store() {
        let (fixture, store) = fixture("user");
        let result = fixture.0.join("result");
        symlink(store.join(A), &result).unwrap();
        let canonical = std::fs::canonicalize(&store).unwrap();
        assert_eq!(resolve_user_path(&result.join("bin/alias"), &store).unwrap(), canonical.join(A).join("bin/tool"));
        assert_eq!(resolve_user_path(&result.join("more"), &store).unwrap(), canonical.join(B).join("bin"));
        let e = resolve_user_path(&result.join("shadow"), &store).unwrap_err();
        assert!(e.to_string().contains(&format!("{STORE_DIR}/{A}/shadow is a link to")), "{e}");
        // Outside the store, links are the user's own.
        let mine = fixture.0.join("mine");
        symlink(fixture.0.join("host/secret"), &mine).unwrap();
        assert_eq!(
            resolve_user_path(&mine, &store).unwrap(),
            std::fs::canonicalize(fixture.0.join("host/secret")).unwrap()
        );
    }
}
