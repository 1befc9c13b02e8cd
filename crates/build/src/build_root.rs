//! A derivation's `buildRoot`: a store path holding a whole userland (a
//! Debian root from `pkgs.debian.root`) whose package-provided parts
//! become the sandbox's `/usr`, `/bin`, `/sbin`, `/lib*` and `/etc`, so
//! dynamically linked tools (Debian's gcc, make, python3) run unmodified.
//!
//! Everything else stays as in every build: `/mini/store` holds only the
//! input closure (the root among it), `/build`, `/tmp`, `/dev` and `/proc`
//! are the sandbox's own, and the sandbox's guarantees hold. The root's
//! directories are bind-mounted read-only; its top-level links (the
//! usr-merge `bin -> usr/bin`) are made again inside the sandbox as they
//! are, where they resolve within the sandbox; nothing in the root is
//! followed on the host. `/etc` stays a directory of the sandbox: the
//! files mini writes there (`passwd`, `group`, `hosts`, and for
//! fixed-output builds `resolv.conf` and `ssl`) win, and each other entry
//! of the root's `etc` is bound (or, for a link, made again) beside them.
//!
//! The root must be an input of the derivation (it is, when the recipe
//! says `buildRoot = root;`), so changing the root changes the
//! derivation's hash.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{io_err, BuildError, Result};

/// The top-level entries of a root the sandbox takes from it.
pub const FROM_ROOT: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc"];

/// One entry of the sandbox's root that comes from the build root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootEntry {
    /// A link made again at `at` (relative to the sandbox's root).
    Link { at: PathBuf, target: PathBuf },
    /// `source` on the host, bound read-only at `at`.
    Bind { source: PathBuf, at: PathBuf, is_dir: bool },
}

/// The entries of the sandbox's root that come from the root `base` in
/// `store_dir`; `reserved_etc` are the names of `/etc` mini writes itself.
pub fn layout(store_dir: &Path, base: &str, reserved_etc: &[&str]) -> Result<Vec<RootEntry>> {
    let root = store_dir.join(base);
    let bad = |message: String| BuildError::Sandbox(format!("buildRoot {}: {message}", root.display()));
    let meta = fs::symlink_metadata(&root).map_err(io_err("reading the build root", &root))?;
    if !meta.is_dir() {
        return Err(bad(
            "is not a directory (a buildRoot is a store path holding usr/, such as pkgs.debian.root's)".into()
        ));
    }
    if !fs::symlink_metadata(root.join("usr")).is_ok_and(|m| m.is_dir()) {
        return Err(bad(
            "holds no usr directory: a buildRoot is a whole userland, such as pkgs.debian.root makes".into()
        ));
    }
    let mut entries = Vec::new();
    for name in FROM_ROOT {
        let source = root.join(name);
        let meta = match fs::symlink_metadata(&source) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("reading the build root", &source)(e)),
        };
        if *name == "etc" && !meta.is_dir() {
            return Err(bad(
                "its etc is not a directory: the sandbox's /etc holds mini's own files beside the root's".into()
            ));
        }
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&source).map_err(io_err("reading the build root", &source))?;
            entries.push(RootEntry::Link { at: PathBuf::from(name), target });
        } else if *name == "etc" {
            entries.extend(etc_entries(&source, reserved_etc)?);
        } else if meta.is_dir() {
            entries.push(RootEntry::Bind { source, at: PathBuf::from(name), is_dir: true });
        } else {
            return Err(bad(format!("its '{name}' is neither a directory nor a link")));
        }
    }
    Ok(entries)
}

/// Each entry of the root's `etc` but those mini writes, sorted.
fn etc_entries(etc: &Path, reserved: &[&str]) -> Result<Vec<RootEntry>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(etc).map_err(io_err("reading the build root", etc))? {
        let name = entry.map_err(io_err("reading the build root", etc))?.file_name();
        if !reserved.iter().any(|r| name == *r) {
            names.push(name);
        }
    }
    names.sort();
    let mut entries = Vec::new();
    for name in names {
        let source = etc.join(&name);
        let at = Path::new("etc").join(&name);
        let meta = fs::symlink_metadata(&source).map_err(io_err("reading the build root", &source))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&source).map_err(io_err("reading the build root", &source))?;
            entries.push(RootEntry::Link { at, target });
        } else if meta.is_dir() || meta.is_file() {
            entries.push(RootEntry::Bind { source, at, is_dir: meta.is_dir() });
        }
        // Anything else (a socket or fifo a builder left) is not taken.
    }
    Ok(entries)
}

/// Lays out the mount points and links of `entries` in the sandbox's
/// `root`, a directory this process made and no builder has run in.
pub fn prepare(root: &Path, entries: &[RootEntry]) -> Result<()> {
    for entry in entries {
        match entry {
            RootEntry::Link { at, target } => {
                let link = root.join(at);
                std::os::unix::fs::symlink(target, &link).map_err(io_err("creating", &link))?;
            }
            RootEntry::Bind { at, is_dir: true, .. } => {
                let dir = root.join(at);
                fs::create_dir(&dir).map_err(io_err("creating", &dir))?;
            }
            RootEntry::Bind { at, is_dir: false, .. } => {
                let file = root.join(at);
                fs::write(&file, b"").map_err(io_err("creating", &file))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Scratch;

    #[test]
    fn a_root_gives_its_directories_and_links_and_etc_beside_minis_files() {
        let s = Scratch::new("build-root");
        let root = s.0.join("store/abc-root");
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("etc/ssl")).unwrap();
        fs::write(root.join("etc/passwd"), "intruder").unwrap();
        fs::write(root.join("etc/debian_version"), "12\n").unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/share/zoneinfo/UTC", root.join("etc/localtime")).unwrap();
        let entries = layout(&s.0.join("store"), "abc-root", &["passwd", "group", "hosts"]).unwrap();
        assert_eq!(
            entries,
            vec![
                RootEntry::Link { at: "bin".into(), target: "usr/bin".into() },
                RootEntry::Bind { source: root.join("usr"), at: "usr".into(), is_dir: true },
                RootEntry::Bind {
                    source: root.join("etc/debian_version"),
                    at: "etc/debian_version".into(),
                    is_dir: false
                },
                RootEntry::Link { at: "etc/localtime".into(), target: "/usr/share/zoneinfo/UTC".into() },
                RootEntry::Bind { source: root.join("etc/ssl"), at: "etc/ssl".into(), is_dir: true },
            ]
        );
        let sandbox = s.0.join("sandbox");
        fs::create_dir_all(sandbox.join("etc")).unwrap();
        prepare(&sandbox, &entries).unwrap();
        assert_eq!(fs::read_link(sandbox.join("bin")).unwrap(), Path::new("usr/bin"));
        assert!(sandbox.join("usr").is_dir() && sandbox.join("etc/ssl").is_dir());
        assert_eq!(fs::read(sandbox.join("etc/debian_version")).unwrap(), b"");
    }

    #[test]
    fn a_root_without_usr_or_with_usr_as_a_link_is_refused() {
        let s = Scratch::new("build-root-bad");
        let store = s.0.join("store");
        fs::create_dir_all(store.join("empty")).unwrap();
        fs::create_dir_all(store.join("linked")).unwrap();
        std::os::unix::fs::symlink("/usr", store.join("linked/usr")).unwrap();
        fs::write(store.join("file"), "x").unwrap();
        fs::create_dir_all(store.join("etc-link/usr")).unwrap();
        std::os::unix::fs::symlink("/etc", store.join("etc-link/etc")).unwrap();
        for base in ["empty", "linked", "file", "etc-link"] {
            let err = layout(&store, base, &[]).unwrap_err().to_string();
            assert!(err.contains("buildRoot") && err.contains(base), "{err}");
        }
    }
}
