//! Reading a file inside a store path without ever leaving the store.
//! Store paths come from untrusted builders and may hold links to host
//! files (`vendor -> /etc`); the SBOM must describe the store, never the
//! host. So every component is opened under its parent's handle with
//! `O_NOFOLLOW`, and a link anywhere on the way reads as "no such file".

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;

use mini_store::store::Store;
use mini_store::store_path::StorePath;
use rustix::fs::{Mode, OFlags};

/// The bytes of the regular file `inside` (components below the store path;
/// none: the store path itself is the file) of `path`, at most `limit` of
/// them. `None` when it is missing, not a regular file, or reached through
/// a link; an error only for a failure of the disk or a longer file.
pub fn read_in_store(store: &Store, path: &StorePath, inside: &[&str], limit: u64) -> io::Result<Option<Vec<u8>>> {
    let physical = store.physical_path(path);
    let Some(store_dir) = physical.parent() else { return Ok(None) };
    let base = path.base_name();
    let names: Vec<&str> = std::iter::once(base.as_str()).chain(inside.iter().copied()).collect();
    let Some((file_name, dirs)) = names.split_last() else { return Ok(None) };
    // The store directory is mini's own: a link to it is followed.
    let mut dir: OwnedFd =
        rustix::fs::open(store_dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    for name in dirs {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        dir = match absent_as_none(rustix::fs::openat(&dir, *name, flags, Mode::empty()))? {
            Some(next) => next,
            None => return Ok(None),
        };
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Some(fd) = absent_as_none(rustix::fs::openat(&dir, *file_name, flags, Mode::empty()))? else {
        return Ok(None);
    };
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.len() > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("longer than {limit} bytes")));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// A missing name, a link (`ELOOP`) or a non-directory on the way is "not
/// there"; anything else is an error.
fn absent_as_none(opened: rustix::io::Result<OwnedFd>) -> io::Result<Option<OwnedFd>> {
    match opened {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if [rustix::io::Errno::NOENT, rustix::io::Errno::LOOP, rustix::io::Errno::NOTDIR].contains(&e) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::os::unix::fs::symlink;

    use mini_store::testing::Scratch;

    use super::*;

    #[test]
    fn files_are_read_below_the_store_path_and_links_never_followed() {
        let scratch = Scratch::new("sbom-files");
        let store = Store::open(&scratch.0.join("store")).unwrap();
        let host = scratch.0.join("host-secret");
        std::fs::write(&host, "secret").unwrap();
        let tree = scratch.0.join("tree");
        std::fs::create_dir_all(tree.join("vendor")).unwrap();
        std::fs::write(tree.join("vendor/modules.txt"), "# m v1.0.0\n").unwrap();
        std::fs::create_dir_all(tree.join("linked")).unwrap();
        symlink(&host, tree.join("linked/modules.txt")).unwrap();
        symlink(scratch.0.join("tree/vendor"), tree.join("dirlink")).unwrap();
        let path = store.add_path(&tree, "tree").unwrap();

        let read = |inside: &[&str]| read_in_store(&store, &path, inside, 1 << 20).unwrap();
        assert_eq!(read(&["vendor", "modules.txt"]).as_deref(), Some(&b"# m v1.0.0\n"[..]));
        assert_eq!(read(&["linked", "modules.txt"]), None, "a link to a host file");
        assert_eq!(read(&["dirlink", "modules.txt"]), None, "a link to a directory");
        assert_eq!(read(&["missing", "modules.txt"]), None);
        assert_eq!(read(&["vendor"]), None, "a directory is no file");
        assert!(read_in_store(&store, &path, &["vendor", "modules.txt"], 3).is_err());

        let text = store.add_text("note", "hello", &BTreeSet::new()).unwrap();
        assert_eq!(read_in_store(&store, &text, &[], 100).unwrap().as_deref(), Some(&b"hello"[..]));
    }
}
