//! `fromDebian`: an image built on a Debian root. The root (a store path,
//! normally `pkgs.debian.root`'s output) is a whole file system: `usr/`,
//! `etc/`, the dpkg database at `var/lib/dpkg/status`, and the usr-merge
//! links `bin -> usr/bin`, `lib -> usr/lib`, … at its top. Its tree becomes
//! the image's bottom layer at `/` (not under `/mini/store`), so programs
//! find their files where Debian put them. The layer depends on the root
//! alone, so every image built on the same root shares it, and its digest
//! is cached under a key of its own kind (`layer_cache::Key::DebianRoot`).
//!
//! The customisation layer goes on top, and a file in it under `bin/`
//! would make a directory `bin` that hides the root's `bin -> usr/bin`
//! link: its paths are routed through the root's top-level links first
//! ([`DebianRoot::route`], `bin/sh` becomes `usr/bin/sh`).
//!
//! The root is a builder's output, so untrusted: it is opened under the
//! store directory with `O_NOFOLLOW` all the way (`confined`), and its
//! links are archived as links, never followed.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mini_store::store_path::StorePath;
use rustix::fs::{AtFlags, FileType};

use crate::confined;
use crate::error::{io_err, ImageError, Result};
use crate::produce::Source;
use crate::tarball::LayerWriter;

/// Where the dpkg database's package list is in a Debian root.
pub const DPKG_STATUS: &str = "var/lib/dpkg/status";

/// A Debian root, checked, with its usr-merge links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianRoot {
    pub path: StorePath,
    /// Top-level name → target, for each top-level link to `usr/<name>`.
    links: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn not_a_root(path: &StorePath, message: impl std::fmt::Display) -> ImageError {
    ImageError::BadSpec {
        name: "fromDebian".into(),
        message: format!(
            "{path} is not a Debian root: {message}; fromDebian takes the output of pkgs.debian.root (a directory with usr/ and {DPKG_STATUS})"
        ),
    }
}

impl DebianRoot {
    /// Checks that `path` (in the store whose physical directory is
    /// `store_dir`) is a directory holding `usr/` and [`DPKG_STATUS`], and
    /// reads its top-level links.
    pub fn open(store_dir: &Path, path: StorePath) -> Result<DebianRoot> {
        let store = confined::open_store_dir(store_dir).map_err(io_err("reading", store_dir))?;
        let root = match confined::open_dir(&store, OsStr::new(&path.base_name())) {
            Ok(root) => root,
            Err(e) => return Err(not_a_root(&path, format!("it cannot be opened as a directory ({e})"))),
        };
        if !is_kind(&root, "usr", FileType::Directory) {
            return Err(not_a_root(&path, "it has no directory usr/"));
        }
        if !has_status(&root) {
            return Err(not_a_root(&path, format!("it has no file {DPKG_STATUS}")));
        }
        let mut found = Vec::new();
        for name in confined::sorted_names(&root).map_err(io_err("reading", &physical(store_dir, &path)))? {
            if is_kind(&root, &name, FileType::Symlink) {
                let target = rustix::fs::readlinkat(&root, name.as_os_str(), Vec::new())
                    .map_err(|e| io_err("reading", &physical(store_dir, &path).join(&name))(e.into()))?;
                found.push((name.into_encoded_bytes(), target.into_bytes()));
            }
        }
        Ok(DebianRoot { path, links: usr_links(found) })
    }

    /// `path` (relative, in the image) as the root resolves it, when its
    /// first component is a usr-merge link with more below: `bin/sh` →
    /// `usr/bin/sh`. Anything else is unchanged, `bin` itself included (an
    /// entry there replaces the link).
    pub fn route(&self, path: &[u8]) -> Vec<u8> {
        let routed = path.iter().position(|b| *b == b'/').and_then(|slash| {
            let (first, rest) = path.split_at(slash);
            Some([self.links.get(first)?.as_slice(), rest].concat())
        });
        routed.unwrap_or_else(|| path.to_vec())
    }

    /// Whether the top-level `name` is one of the root's usr-merge links.
    pub fn is_link(&self, name: &[u8]) -> bool {
        self.links.contains_key(name)
    }

    /// How to make the root's layer, from the store at `store_dir`.
    pub fn layer(&self, store_dir: &Path) -> Source {
        root_layer(store_dir, &self.path)
    }
}

/// The source of the layer holding the root `path`'s tree at `/`.
pub fn root_layer(store_dir: &Path, path: &StorePath) -> Source {
    let store_dir: PathBuf = store_dir.to_path_buf();
    let base = path.base_name();
    Source::Tar(Arc::new(move |w| fill_root_layer(w, &store_dir, &base)))
}

/// The entries of a root's layer (the tar not ended): each top-level
/// entry of the store path `base_name`, sorted, at its own name, with
/// everything below it. As in a store path's layer, owners are 0:0,
/// mtimes 1, modes as the store keeps them, and links stay links.
pub fn fill_root_layer<W: Write>(layer: &mut LayerWriter<W>, store_dir: &Path, base_name: &str) -> Result<()> {
    let store = confined::open_store_dir(store_dir).map_err(io_err("reading", store_dir))?;
    let source = store_dir.join(base_name);
    let root = confined::open_dir(&store, OsStr::new(base_name)).map_err(io_err("reading", &source))?;
    for name in confined::sorted_names(&root).map_err(io_err("reading", &source))? {
        layer.tree(root.as_fd(), &name, &source.join(&name), name.as_bytes())?;
    }
    Ok(())
}

/// The usr-merge links among a root's top-level links: those whose target
/// is `usr/<name>`, one plain component below `usr` (an absolute link, or
/// one leaving `usr`, is left alone: a path is never routed outside it).
fn usr_links(links: Vec<(Vec<u8>, Vec<u8>)>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    links
        .into_iter()
        .filter(|(_, target)| {
            target
                .strip_prefix(b"usr/")
                .is_some_and(|below| !below.is_empty() && below != b"." && below != b".." && !below.contains(&b'/'))
        })
        .collect()
}

fn physical(store_dir: &Path, path: &StorePath) -> PathBuf {
    store_dir.join(path.base_name())
}

/// Whether `name` in `dir` is of `kind` (links not followed).
fn is_kind(dir: &OwnedFd, name: impl AsRef<OsStr>, kind: FileType) -> bool {
    rustix::fs::statat(dir, name.as_ref(), AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == kind)
}

/// Whether the root holds [`DPKG_STATUS`] as a regular file, reached
/// through directories only.
fn has_status(root: &OwnedFd) -> bool {
    let Some((dirs, file)) = DPKG_STATUS.rsplit_once('/') else { return false };
    let mut parts = dirs.split('/');
    let Some(first) = parts.next() else { return false };
    let mut dir: io::Result<OwnedFd> = confined::open_dir(root, OsStr::new(first));
    for part in parts {
        dir = dir.and_then(|d| confined::open_dir(&d, OsStr::new(part)));
    }
    dir.is_ok_and(|d| is_kind(&d, file, FileType::RegularFile))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn store_path(name: &str) -> StorePath {
        use mini_store::store_path::PathKind;
        let digest = blake3::hash(name.as_bytes());
        StorePath::compute(&PathKind::Source { references: &[] }, "sha256", digest.as_bytes(), name).unwrap()
    }

    fn links(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs.iter().map(|(n, t)| (n.as_bytes().to_vec(), t.as_bytes().to_vec())).collect()
    }

    #[test]
    fn only_links_to_a_directory_of_usr_route() {
        let kept = usr_links(links(&[
            ("bin", "usr/bin"),
            ("lib64", "usr/lib64"),
            ("abs", "/usr/bin"),
            ("up", "usr/.."),
            ("deep", "usr/lib/x"),
            ("usr-only", "usr/"),
            ("other", "opt/bin"),
        ]));
        let names: Vec<&[u8]> = kept.keys().map(Vec::as_slice).collect();
        assert_eq!(names, [b"bin".as_slice(), b"lib64"]);
    }

    #[test]
    fn paths_route_through_their_first_component_only() {
        let path = store_path("debian-root");
        let root = DebianRoot { path, links: usr_links(links(&[("bin", "usr/bin"), ("lib", "usr/lib")])) };
        assert_eq!(root.route(b"bin/sh"), b"usr/bin/sh");
        assert_eq!(root.route(b"bin"), b"bin");
        assert_eq!(root.route(b"lib/x/y"), b"usr/lib/x/y");
        assert_eq!(root.route(b"binaries/sh"), b"binaries/sh");
        assert_eq!(root.route(b"etc/bin/x"), b"etc/bin/x");
        assert_eq!(root.route(b"usr/bin/sh"), b"usr/bin/sh");
    }
}
