//! The language's `builtins.fetchurl` and `builtins.fetchTarball`, done at
//! evaluation time: the download is `builtin:fetchurl`'s own
//! ([`fetch_url`], with the same `file://` rule), a tarball is unpacked by
//! the same symlink-safe unpacker as `fetchzip`'s, and the result goes to
//! the store as the fixed output its SHA-256 names — the path a
//! fixed-output derivation with that hash and name gives, so a build that
//! needs it later finds it valid.
//!
//! Everything happens in a private staging directory: the content is
//! hashed there and compared with the expected hash *before* anything is
//! registered, so a mismatch leaves no path behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use mini_store::derivation::{fixed_output_path, FixedHash, HashMode};
use mini_store::fixed::Sha256;
use mini_store::nar;
use mini_store::store::{discard_tree, Store};
use mini_store::store_path::{validate_name, StorePath};

use crate::builtin_builders::{fetch_url, FetchError};
use crate::unpack;
use mini_store::encoding::sri;

/// A fetch's result in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub path: StorePath,
    /// SHA-256 of the file, or of the tree's canonical archive.
    pub sha256: [u8; 32],
    /// Whether this call installed the path (false: it was valid already).
    pub copied: bool,
}

/// Downloads `url` into `store` as `name`: the file itself, or with
/// `unpack` the single top-level directory of the archive it is. With
/// `expected`, content of another SHA-256 is an error naming both hashes,
/// and nothing is registered. `file://` URLs are read only below
/// `file_dirs`, as `builtin:fetchurl` reads them.
pub fn fetch_to_store(
    store: &Store,
    file_dirs: &[PathBuf],
    request: &UrlFetch,
    log: &mut dyn Write,
) -> Result<Fetched, FetchError> {
    let name = request.name;
    validate_name(name).map_err(|e| FetchError(format!("cannot name the fetched path '{name}': {e}")))?;
    let staging = store.staging_dir().map_err(|e| FetchError(e.to_string()))?;
    let result = fetch_staged(store, file_dirs, request, &staging, log);
    discard_tree(&staging);
    result
}

/// What to fetch: a URL, the store name of the result, whether it is a
/// tarball to unpack (its one top-level directory), and its pinned SHA-256.
pub struct UrlFetch<'a> {
    pub url: &'a str,
    pub name: &'a str,
    pub unpack: bool,
    pub expected: Option<&'a [u8; 32]>,
}

fn fetch_staged(
    store: &Store,
    file_dirs: &[PathBuf],
    request: &UrlFetch,
    staging: &Path,
    log: &mut dyn Write,
) -> Result<Fetched, FetchError> {
    let UrlFetch { url, name, unpack, expected } = *request;
    let download = staging.join("download");
    fetch_url(url, file_dirs, &download, log)?;
    let (content, mode) = if unpack {
        let tree = staging.join("tree");
        let out = staging.join("out");
        unpack_one_root(url, &download, &tree, &out)?;
        (out, HashMode::Recursive)
    } else {
        (download, HashMode::Flat)
    };
    let sha256 = hash_content(&content, mode)?;
    if let Some(expected) = expected {
        if expected != &sha256 {
            return Err(FetchError(format!(
                "hash mismatch in file downloaded from '{url}':\n  specified: {}\n  got:       {}",
                sri("sha256", expected),
                sri("sha256", &sha256)
            )));
        }
    }
    let fixed = FixedHash { algo: "sha256".into(), mode, digest: sha256.to_vec() };
    let path = fixed_output_path(&fixed, name).map_err(|e| FetchError(e.to_string()))?;
    let copied = store.install_fixed(&path, &content).map_err(|e| FetchError(e.to_string()))?;
    Ok(Fetched { path, sha256, copied })
}

/// Unpacks `archive` into `tree` and moves its one top-level directory to
/// `out`, as Nix's `fetchTarball` takes it.
fn unpack_one_root(url: &str, archive: &Path, tree: &Path, out: &Path) -> Result<(), FetchError> {
    let failed = |e: unpack::UnpackError| FetchError(format!("cannot unpack '{url}': {e}"));
    unpack::unpack(archive, None, tree).map_err(failed)?;
    let count =
        std::fs::read_dir(tree).map_err(|e| FetchError(format!("cannot read '{}': {e}", tree.display())))?.count();
    if count != 1 {
        return Err(FetchError(format!(
            "tarball '{url}' contains an unexpected number of top-level files ({count}); fetchTarball takes \
             an archive of one top-level directory"
        )));
    }
    unpack::place(tree, out, true).map_err(failed)
}

/// Nix's `narHash` of the tree at `dir`: the SHA-256 of its canonical
/// archive (byte for byte Nix's NAR), in SRI form.
pub fn nar_hash(dir: &Path) -> Result<String, FetchError> {
    Ok(sri("sha256", &hash_content(dir, HashMode::Recursive)?))
}

/// SHA-256 of a file's bytes (flat) or of a tree's canonical archive.
fn hash_content(content: &Path, mode: HashMode) -> Result<[u8; 32], FetchError> {
    let failed = |e: &dyn std::fmt::Display| FetchError(format!("cannot hash '{}': {e}", content.display()));
    match mode {
        HashMode::Flat => {
            let mut digest = Sha256::default();
            let mut file = std::fs::File::open(content).map_err(|e| failed(&e))?;
            std::io::copy(&mut file, &mut digest).map_err(|e| failed(&e))?;
            Ok(sha2::Digest::finalize(digest).into())
        }
        HashMode::Recursive => nar::sha256(content).map_err(|e| failed(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Scratch;
    use std::fs;

    fn tarball(dir: &Path, entries: &[(&str, &[u8])]) -> PathBuf {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, *data).unwrap();
        }
        let file = dir.join("t.tar");
        fs::write(&file, tar.into_inner().unwrap()).unwrap();
        file
    }

    #[test]
    fn a_file_becomes_the_fixed_output_its_hash_names() {
        let s = Scratch::new("fetchers-flat");
        let store = Store::open(&s.0.join("store")).unwrap();
        fs::write(s.0.join("hello.txt"), b"hello\n").unwrap();
        let url = format!("file://{}/hello.txt", s.0.display());
        let dirs = [s.0.clone()];
        let first = fetch_to_store(
            &store,
            &dirs,
            &UrlFetch { url: &url, name: "hello.txt", unpack: false, expected: None },
            &mut Vec::new(),
        )
        .unwrap();
        let added = store.add_fixed(&s.0.join("hello.txt"), "hello.txt", HashMode::Flat, Sha256::default()).unwrap();
        assert_eq!(first.path, added.path, "the path `mini store add-fixed` gives");
        assert!(first.copied && !added.copied);
        let again = fetch_to_store(
            &store,
            &dirs,
            &UrlFetch { url: &url, name: "hello.txt", unpack: false, expected: Some(&first.sha256) },
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!((again.path, again.copied), (first.path, false));
    }

    #[test]
    fn a_mismatch_names_both_hashes_and_registers_nothing() {
        let s = Scratch::new("fetchers-mismatch");
        let store = Store::open(&s.0.join("store")).unwrap();
        let archive = tarball(&s.0, &[("pkg-1.0/a", b"a"), ("pkg-1.0/sub/b", b"b")]);
        let url = format!("file://{}", archive.display());
        let dirs = [s.0.clone()];
        let err = fetch_to_store(
            &store,
            &dirs,
            &UrlFetch { url: &url, name: "source", unpack: true, expected: Some(&[0; 32]) },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.0.contains("specified: sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), "{}", err.0);
        assert!(err.0.contains("got:       sha256-"), "{}", err.0);
        assert!(store.all_valid().unwrap().is_empty());
        assert_eq!(fs::read_dir(s.0.join("store/tmp")).unwrap().count(), 0, "staging is removed");

        let fetched = fetch_to_store(
            &store,
            &dirs,
            &UrlFetch { url: &url, name: "source", unpack: true, expected: None },
            &mut Vec::new(),
        )
        .unwrap();
        let stored = store.physical_path(&fetched.path);
        assert_eq!(fs::read(stored.join("sub/b")).unwrap(), b"b", "the top-level directory is stripped");
    }

    #[test]
    fn a_tarball_of_several_top_level_entries_is_refused() {
        let s = Scratch::new("fetchers-roots");
        let store = Store::open(&s.0.join("store")).unwrap();
        let archive = tarball(&s.0, &[("a", b"a"), ("b", b"b")]);
        let url = format!("file://{}", archive.display());
        let err = fetch_to_store(
            &store,
            std::slice::from_ref(&s.0),
            &UrlFetch { url: &url, name: "source", unpack: true, expected: None },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.0.contains("contains an unexpected number of top-level files (2)"), "{}", err.0);
    }
}
