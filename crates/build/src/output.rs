//! What happens to a builder's output between the builder exiting and the
//! store registering it: make it safe to publish (`canonicalise`), check a
//! fixed output against its declared hash (`verify_fixed`), and, for
//! `mini build --check`, say where two builds of one derivation differ
//! (`differing_files`).
//!
//! A builder is untrusted code. Whatever it leaves behind must not become
//! visible in the store with powers a store path may not have (setuid bits,
//! writable modes, device nodes, extended attributes), and nothing the
//! store does to the output afterwards may reach a file outside it.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mini_store::derivation::{FixedHash, HashMode};
use mini_store::encoding::sri;
use mini_store::nar;
use mini_store::store::StoreError;
use sha2::Digest;

use crate::error::{io_err, BuildError, Result};

/// Extended attributes left alone: the kernel or the security module sets
/// them and an unprivileged process cannot remove them (Nix skips the same).
const KEPT_XATTRS: &[&str] = &["security.selinux", "security.csm", "system.nfs4_acl"];

/// Mode bits no store file may carry: setuid, setgid, sticky, and write
/// access for group and others.
const UNSAFE_MODE_BITS: u32 = 0o7022;

/// Makes the output tree at `path` safe to register: rejects device files,
/// fifos and sockets, removes extended attributes, drops setuid, setgid,
/// sticky and group/world-write bits, and breaks hard links. Symlinks are
/// never followed. Directories end up owner-traversable and files
/// owner-readable, so the store can read everything the builder left.
///
/// Run as root, every file is also handed back to root: the builder made
/// it as [`crate::sandbox::ROOT_BUILD_ID`], and a store path must not be
/// writable by a uid that later builds run as.
pub fn canonicalise(drv_name: &str, path: &Path) -> Result<()> {
    let as_root = crate::sandbox::running_as_root();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = if rel.as_os_str().is_empty() { path.to_path_buf() } else { path.join(&rel) };
        let meta = fs::symlink_metadata(&full).map_err(io_err("reading", &full))?;
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            if meta.nlink() > 1 {
                break_symlink_hard_link(&full)?;
            }
            remove_xattrs(&full)?;
        } else if file_type.is_dir() {
            // Owner access first, so a directory the builder made 000 can be listed and changed.
            set_mode(&full, (meta.mode() & 0o777 & !UNSAFE_MODE_BITS) | 0o700)?;
            remove_xattrs(&full)?;
            let mut names = fs::read_dir(&full)
                .and_then(|dir| dir.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>())
                .map_err(io_err("reading", &full))?;
            names.sort();
            stack.extend(names.into_iter().rev().map(|name| rel.join(name)));
        } else if file_type.is_file() {
            let mode = (meta.mode() & 0o777 & !UNSAFE_MODE_BITS) | 0o400;
            if meta.nlink() > 1 {
                break_hard_link(&full, mode)?;
            } else {
                remove_xattrs(&full)?;
                set_mode(&full, mode)?;
            }
        } else {
            let file = if rel.as_os_str().is_empty() { ".".to_string() } else { rel.to_string_lossy().into_owned() };
            return Err(BuildError::ForbiddenFile {
                drv: drv_name.to_string(),
                what: nar::special_file_kind(meta.file_type()),
                file,
            });
        }
        // Only now: before hard links were broken, the inode could be
        // shared with a file outside the output.
        if as_root {
            std::os::unix::fs::lchown(&full, Some(0), Some(0)).map_err(io_err("handing to root", &full))?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, Permissions::from_mode(mode)).map_err(io_err("setting the mode of", path))
}

/// Replaces the file at `path` by a fresh copy of its contents with mode
/// `mode`. A hard link shares its inode with a name that may lie outside the
/// output (the builder can link any file it can see on the same
/// filesystem): changing the mode, times or attributes of the inode, as
/// canonicalising and then registering read-only do, would change that
/// outside file, and the store path's contents would change whenever the
/// outside file did. Copying gives the output an inode of its own; renaming
/// the copy over the name leaves the other names untouched.
fn break_hard_link(path: &Path, mode: u32) -> Result<()> {
    let (tmp, mut copy) =
        fresh_sibling(path, |tmp| File::options().write(true).create_new(true).mode(0o600).open(tmp))?;
    let copied = File::open(path)
        .map_err(io_err("opening", path))
        .and_then(|mut original| io::copy(&mut original, &mut copy).map_err(io_err("copying", path)));
    let finished = copied
        .and_then(|_| copy.set_permissions(Permissions::from_mode(mode)).map_err(io_err("setting the mode of", &tmp)))
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err("replacing", path)));
    if finished.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    finished?;
    // A fresh file may still inherit attributes (a default ACL of its directory).
    remove_xattrs(path)
}

/// [`break_hard_link`] for a symlink (which `link` can also give a second
/// name): a new symlink with the same target takes its place.
fn break_symlink_hard_link(path: &Path) -> Result<()> {
    let target = fs::read_link(path).map_err(io_err("reading", path))?;
    let (tmp, ()) = fresh_sibling(path, |tmp| std::os::unix::fs::symlink(&target, tmp))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("replacing", path)(e)
    })
}

/// Makes a new entry next to `path` with `create`, under a name not yet
/// taken, and returns its path and what `create` returned.
fn fresh_sibling<T>(path: &Path, create: impl Fn(&Path) -> io::Result<T>) -> Result<(PathBuf, T)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let base = path.file_name().unwrap_or(OsStr::new("file")).to_string_lossy();
    for n in 0u32.. {
        let tmp = dir.join(format!(".{base}.mini-unlink-{n}"));
        match create(&tmp) {
            Ok(made) => return Ok((tmp, made)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating", &tmp)(e)),
        }
    }
    Err(io_err("creating a copy of", path)(io::ErrorKind::AlreadyExists.into()))
}

/// Removes every extended attribute of `path` (not following a symlink),
/// except those in [`KEPT_XATTRS`].
fn remove_xattrs(path: &Path) -> Result<()> {
    let list = match list_xattrs(path) {
        Ok(list) => list,
        Err(e) if xattrs_unsupported(&e) => return Ok(()),
        Err(e) => return Err(io_err("listing the extended attributes of", path)(e)),
    };
    for name in list.split(|&b| b == 0).filter(|name| !name.is_empty()) {
        if KEPT_XATTRS.iter().any(|kept| kept.as_bytes() == name) {
            continue;
        }
        match rustix::fs::lremovexattr(path, OsStr::from_bytes(name)) {
            Ok(()) => {}
            Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(io_err("removing an extended attribute of", path)(e.into())),
        }
    }
    Ok(())
}

/// The NUL-separated names of the extended attributes of `path`.
fn list_xattrs(path: &Path) -> io::Result<Vec<u8>> {
    loop {
        let size = rustix::fs::llistxattr_query(path)?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            // An attribute was added between the two calls: ask again.
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn xattrs_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error())
}

/// The digest of the output at `path` as `fixed` declares it: of the file's
/// bytes (flat mode, which needs a regular file) or of the canonical archive
/// of the tree (recursive mode).
pub fn hash_fixed(path: &Path, fixed: &FixedHash) -> Result<Vec<u8>> {
    let invalid = |message: String| io_err("hashing", path)(io::Error::new(io::ErrorKind::InvalidInput, message));
    let mut hasher = match fixed.algo.as_str() {
        "sha256" => Hasher::Sha256(sha2::Sha256::new()),
        "blake3" => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        other => return Err(invalid(format!("unsupported hash algorithm '{other}' (use sha256 or blake3)"))),
    };
    match fixed.mode {
        HashMode::Flat => {
            let meta = fs::symlink_metadata(path).map_err(io_err("reading", path))?;
            if !meta.is_file() {
                let kind = if meta.is_dir() { "a directory" } else { "not a regular file" };
                return Err(invalid(format!("a flat-hashed output must be a single regular file, but it is {kind}")));
            }
            let mut file = File::open(path).map_err(io_err("opening", path))?;
            io::copy(&mut file, &mut hasher).map_err(io_err("reading", path))?;
        }
        HashMode::Recursive => {
            let digest = match hasher {
                // The store's hasher reads a large tree on all cores, to the same digest.
                Hasher::Blake3(_) => *nar::hash_path(path).map_err(StoreError::from)?.0.as_bytes(),
                Hasher::Sha256(_) => nar::sha256(path).map_err(StoreError::from)?,
            };
            return Ok(digest.to_vec());
        }
    }
    Ok(hasher.finish())
}

/// One of the hash algorithms a fixed output may declare.
enum Hasher {
    Sha256(sha2::Sha256),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Blake3(h) => h.finalize().as_bytes().to_vec(),
        }
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Hasher::Sha256(h) => h.update(buf),
            Hasher::Blake3(h) => {
                h.update(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks that the output at `path` has the hash `fixed` declares; a
/// mismatch names both hashes in SRI form, ready to paste into the recipe.
pub fn verify_fixed(drv_name: &str, path: &Path, fixed: &FixedHash) -> Result<()> {
    let got = hash_fixed(path, fixed)?;
    if got == fixed.digest {
        return Ok(());
    }
    Err(BuildError::HashMismatch {
        drv: drv_name.to_string(),
        specified: sri(&fixed.algo, &fixed.digest),
        got: sri(&fixed.algo, &got),
    })
}

/// Where the trees at `a` and `b` differ: relative paths (sorted; `.` for
/// the roots themselves) whose type, contents, executable bit or symlink
/// target differ, or that exist on one side only (a missing directory is
/// named once, not file by file). Modes other than the executable bit,
/// times and owners are not compared: the store does not keep them.
pub fn differing_files(a: &Path, b: &Path) -> io::Result<Vec<String>> {
    let mut differing = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (pa, pb) =
            if rel.as_os_str().is_empty() { (a.to_path_buf(), b.to_path_buf()) } else { (a.join(&rel), b.join(&rel)) };
        let (ma, mb) = (fs::symlink_metadata(&pa)?, fs::symlink_metadata(&pb)?);
        let (ta, tb) = (ma.file_type(), mb.file_type());
        let same = if ta.is_dir() && tb.is_dir() {
            let (names_a, names_b) = (entry_names(&pa)?, entry_names(&pb)?);
            differing.extend(names_a.symmetric_difference(&names_b).map(|n| display(&rel.join(n))));
            stack.extend(names_a.intersection(&names_b).map(|n| rel.join(n)));
            true
        } else if ta.is_symlink() && tb.is_symlink() {
            fs::read_link(&pa)? == fs::read_link(&pb)?
        } else if ta.is_file() && tb.is_file() {
            (ma.mode() & 0o111 != 0) == (mb.mode() & 0o111 != 0) && ma.len() == mb.len() && same_contents(&pa, &pb)?
        } else {
            // Different types, or (never in a canonicalised output) special files.
            false
        };
        if !same {
            differing.push(display(&rel));
        }
    }
    differing.sort();
    Ok(differing)
}

fn entry_names(dir: &Path) -> io::Result<BTreeSet<OsString>> {
    fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect()
}

fn display(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".to_string()
    } else {
        rel.to_string_lossy().into_owned()
    }
}

/// Whether two files of equal length hold the same bytes, read in chunks.
pub(crate) fn same_contents(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = mini_store::hash_io::read_full(&mut fa, &mut ba)?;
        let m = mini_store::hash_io::read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use mini_store::derivation::parse_hash;

    use super::*;
    use crate::testing::Scratch;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn canonicalise_drops_unsafe_modes_and_opens_locked_directories() {
        let s = Scratch::new("modes");
        let out = s.0.join("out");
        fs::create_dir_all(out.join("bin")).unwrap();
        fs::create_dir_all(out.join("locked/inner")).unwrap();
        fs::write(out.join("bin/tool"), "x").unwrap();
        fs::write(out.join("locked/inner/data"), "y").unwrap();
        fs::write(out.join("unreadable"), "z").unwrap();
        fs::set_permissions(out.join("bin/tool"), Permissions::from_mode(0o6777)).unwrap();
        fs::set_permissions(out.join("bin"), Permissions::from_mode(0o1777)).unwrap();
        fs::set_permissions(out.join("unreadable"), Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(out.join("locked/inner"), Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(out.join("locked"), Permissions::from_mode(0o000)).unwrap();
        symlink("bin/tool", out.join("link")).unwrap();
        canonicalise("modes", &out).unwrap();
        assert_eq!(mode(&out.join("bin/tool")), 0o755);
        assert_eq!(mode(&out.join("bin")), 0o755);
        assert_eq!(mode(&out.join("unreadable")), 0o400);
        assert_eq!(mode(&out.join("locked")), 0o700);
        assert_eq!(mode(&out.join("locked/inner")), 0o700);
        assert_eq!(fs::read_to_string(out.join("locked/inner/data")).unwrap(), "y");
        assert_eq!(fs::read_link(out.join("link")).unwrap(), Path::new("bin/tool"));
    }

    #[test]
    fn canonicalise_rejects_fifos_and_sockets_by_relative_name() {
        let s = Scratch::new("special");
        let out = s.0.join("out");
        fs::create_dir_all(out.join("run")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            out.join("run/pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        match canonicalise("special", &out) {
            Err(BuildError::ForbiddenFile { drv, what, file }) => {
                assert_eq!((drv.as_str(), what, file.as_str()), ("special", "fifo", "run/pipe"));
            }
            other => panic!("expected ForbiddenFile, got {other:?}"),
        }
        fs::remove_file(out.join("run/pipe")).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(out.join("sock")).unwrap();
        let err = canonicalise("special", &out).unwrap_err();
        assert_eq!(err.to_string(), "output of 'special' contains a socket 'sock', which a store path may not hold");
    }

    #[test]
    fn canonicalise_removes_extended_attributes() {
        let s = Scratch::new("xattr");
        let out = s.0.join("out");
        fs::create_dir_all(&out).unwrap();
        let file = out.join("f");
        fs::write(&file, "x").unwrap();
        let set = |p: &Path| rustix::fs::lsetxattr(p, "user.mini-test", b"1", rustix::fs::XattrFlags::empty());
        if set(&file).is_err() || set(&out).is_err() {
            eprintln!("skipped: this filesystem does not take user extended attributes");
            return;
        }
        canonicalise("xattr", &out).unwrap();
        assert!(list_xattrs(&file).unwrap().split(|&b| b == 0).all(|n| n != b"user.mini-test"));
        assert!(list_xattrs(&out).unwrap().split(|&b| b == 0).all(|n| n != b"user.mini-test"));
    }

    #[test]
    fn canonicalise_breaks_hard_links_to_files_outside_the_output() {
        let s = Scratch::new("links");
        let out = s.0.join("out");
        fs::create_dir_all(&out).unwrap();
        let outside = s.0.join("secret");
        fs::write(&outside, "outside").unwrap();
        fs::set_permissions(&outside, Permissions::from_mode(0o4766)).unwrap();
        fs::hard_link(&outside, out.join("linked")).unwrap();
        // Two names inside the output for one inode: each ends up with its own.
        fs::write(out.join("a"), "inside").unwrap();
        fs::hard_link(out.join("a"), out.join("b")).unwrap();
        // `link` makes a second name for the symlink itself, not its target.
        symlink("secret", s.0.join("outside-link")).unwrap();
        fs::hard_link(s.0.join("outside-link"), out.join("sym")).unwrap();
        assert_eq!(fs::symlink_metadata(out.join("sym")).unwrap().nlink(), 2);
        canonicalise("links", &out).unwrap();
        let inside = fs::symlink_metadata(out.join("linked")).unwrap();
        let original = fs::symlink_metadata(&outside).unwrap();
        assert_ne!(inside.ino(), original.ino());
        assert_eq!((original.nlink(), original.mode() & 0o7777), (1, 0o4766));
        assert_eq!((inside.nlink(), inside.mode() & 0o7777), (1, 0o744));
        assert_eq!(fs::read_to_string(out.join("linked")).unwrap(), "outside");
        assert_eq!(fs::symlink_metadata(out.join("a")).unwrap().nlink(), 1);
        assert_eq!(fs::read_to_string(out.join("b")).unwrap(), "inside");
        let mut names: Vec<_> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["a", "b", "linked", "sym"]);
        assert_eq!(fs::symlink_metadata(out.join("sym")).unwrap().nlink(), 1);
        assert_eq!(fs::symlink_metadata(s.0.join("outside-link")).unwrap().nlink(), 1);
        assert_eq!(fs::read_link(out.join("sym")).unwrap(), Path::new("secret"));
    }

    fn fixed(algo: &str, mode: HashMode, digest: Vec<u8>) -> FixedHash {
        FixedHash { algo: algo.into(), mode, digest }
    }

    #[test]
    fn flat_and_recursive_hashes() {
        let s = Scratch::new("hash");
        let file = s.0.join("hello");
        fs::write(&file, "hello").unwrap();
        let sha_hello =
            parse_hash("sha256", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824").unwrap();
        assert_eq!(hash_fixed(&file, &fixed("sha256", HashMode::Flat, vec![])).unwrap(), sha_hello);
        let blake_flat = hash_fixed(&file, &fixed("blake3", HashMode::Flat, vec![])).unwrap();
        assert_eq!(blake_flat, blake3::hash(b"hello").as_bytes());

        let tree = s.0.join("tree");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/f"), "data").unwrap();
        symlink("sub/f", tree.join("l")).unwrap();
        let mut archive_bytes = Vec::new();
        nar::dump_path(&tree, &mut archive_bytes).unwrap();
        let sha_tree = hash_fixed(&tree, &fixed("sha256", HashMode::Recursive, vec![])).unwrap();
        assert_eq!(sha_tree, sha2::Sha256::digest(&archive_bytes).to_vec());
        let blake_tree = hash_fixed(&tree, &fixed("blake3", HashMode::Recursive, vec![])).unwrap();
        assert_eq!(blake_tree, blake3::hash(&archive_bytes).as_bytes());

        let err = hash_fixed(&tree, &fixed("sha256", HashMode::Flat, vec![])).unwrap_err();
        assert!(err.to_string().contains("must be a single regular file, but it is a directory"), "{err}");
        assert!(hash_fixed(&file, &fixed("md5", HashMode::Flat, vec![])).is_err());
    }

    #[test]
    fn verify_reports_both_hashes_in_sri_form() {
        let s = Scratch::new("verify");
        let file = s.0.join("empty");
        fs::write(&file, "").unwrap();
        let empty = parse_hash("sha256", "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").unwrap();
        verify_fixed("src", &file, &fixed("sha256", HashMode::Flat, empty)).unwrap();
        match verify_fixed("src", &file, &fixed("sha256", HashMode::Flat, vec![0; 32])) {
            Err(BuildError::HashMismatch { drv, specified, got }) => {
                assert_eq!(drv, "src");
                assert_eq!(specified, "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
                assert_eq!(got, "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
            }
            other => panic!("expected HashMismatch, got {other:?}"),
        }
        let b3 = blake3::hash(b"");
        let text = sri("blake3", b3.as_bytes());
        assert!(text.starts_with("blake3-"), "{text}");
        assert_eq!(parse_hash("blake3", &text).unwrap(), b3.as_bytes());
    }

    #[test]
    fn differing_files_names_every_kind_of_difference() {
        let s = Scratch::new("diff");
        let (a, b) = (s.0.join("a"), s.0.join("b"));
        for root in [&a, &b] {
            fs::create_dir_all(root.join("bin")).unwrap();
            fs::create_dir_all(root.join("share/doc")).unwrap();
            fs::write(root.join("same"), "same").unwrap();
            fs::write(root.join("share/doc/readme"), "same").unwrap();
        }
        assert_eq!(differing_files(&a, &b).unwrap(), Vec::<String>::new());
        fs::write(a.join("bin/tool"), "v1").unwrap();
        fs::write(b.join("bin/tool"), "v2").unwrap();
        fs::write(a.join("bin/run"), "x").unwrap();
        fs::write(b.join("bin/run"), "x").unwrap();
        fs::set_permissions(b.join("bin/run"), Permissions::from_mode(0o755)).unwrap();
        symlink("one", a.join("link")).unwrap();
        symlink("two", b.join("link")).unwrap();
        fs::write(a.join("only-a"), "").unwrap();
        fs::create_dir_all(b.join("only-b/deep")).unwrap();
        fs::write(a.join("kind"), "").unwrap();
        fs::create_dir(b.join("kind")).unwrap();
        fs::write(a.join("share/doc/readme"), "changed").unwrap();
        assert_eq!(
            differing_files(&a, &b).unwrap(),
            ["bin/run", "bin/tool", "kind", "link", "only-a", "only-b", "share/doc/readme"]
        );
        let file = s.0.join("file");
        fs::write(&file, "").unwrap();
        assert_eq!(differing_files(&a, &file).unwrap(), ["."]);
    }
}
