//! The layer digest cache: what a store path's layer tar is (its SHA-256,
//! the `diff_id`, and its size), kept under `<store root>/layers/v3/` and
//! keyed by the path (or, for a layer several unpopular paths share, by
//! the sorted list of paths; for a Debian root's layer, by the root as a
//! kind of its own, [`Key`]) and the layer layout version. A store path
//! never changes, so neither does its layer: a path packed once is never
//! read again to learn its digest. The tars themselves are not kept: they
//! are made again, from the store, whenever an image is written, streamed
//! or copied (`produce`). A layer made again is then only counted: a
//! record is this store's own, so its size is checked, not its digest
//! (`mini store verify` is what finds a store path modified since).
//!
//! A compressed blob's digest and size are recorded beside, per
//! compressor. A record is written to a temporary name and renamed into
//! place, so it is whole or absent. The cache holds nothing that cannot be
//! remade, so it is not synced to disk.
//!
//! The compressed blobs `mini push` sends are kept too (`blobs`), by
//! diff_id. Pruning ([`DigestCache::prune`], which [`collect_garbage`] runs
//! after a store garbage collection) keeps the records of layers whose
//! store paths are all still valid, and the blobs of those layers only.

mod blobs;

pub use blobs::{Blob, BlobCache};

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use mini_store::encoding::{hex, hex_decode};
use mini_store::store::{GcReport, Store};
use mini_store::store_path::StorePath;
use serde_json::{json, Value};

use crate::compress::Compressor;
use crate::error::{io_err, Result};

/// A digest and a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub sha256: [u8; 32],
    pub size: u64,
}

/// What the cache knows of one layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The uncompressed tar.
    pub tar: Option<Digest>,
    /// Its compressed forms.
    pub compressed: BTreeMap<&'static str, Digest>,
}

/// Which layer a record is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// The layer holding these store paths under `/mini/store`.
    Paths(&'a [StorePath]),
    /// The layer holding this Debian root's tree at `/` (`fromDebian`).
    DebianRoot(&'a StorePath),
}

impl Key<'_> {
    /// The store paths the layer is made from: its record lives as long
    /// as they are valid.
    fn paths(&self) -> &[StorePath] {
        match self {
            Key::Paths(paths) => paths,
            Key::DebianRoot(root) => std::slice::from_ref(*root),
        }
    }

    /// The record's file name, without `.json`. A base name starts with
    /// its hash, in an alphabet without `e`, `o`, `t` or `u`: no base name
    /// starts with `shared-` or `debian-root-`, so the kinds never meet.
    fn file_stem(&self) -> String {
        match self {
            Key::Paths([one]) => one.base_name(),
            Key::Paths(many) => {
                let mut sorted: Vec<String> = many.iter().map(StorePath::to_string).collect();
                sorted.sort();
                format!("shared-{}", blake3::hash(sorted.join("\n").as_bytes()).to_hex())
            }
            Key::DebianRoot(root) => format!("debian-root-{}", root.base_name()),
        }
    }
}

/// The layer digest cache of one store.
pub struct DigestCache {
    dir: PathBuf,
}

/// The version of the layer layout: bumped whenever what goes into a
/// store path's layer changes, so a stale digest is never used.
const LAYOUT_VERSION: u32 = 3;

fn cache_dir(store: &Store) -> PathBuf {
    store.root().join("layers").join(format!("v{LAYOUT_VERSION}"))
}

impl DigestCache {
    pub fn open(store: &Store) -> Result<DigestCache> {
        let dir = cache_dir(store);
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(DigestCache { dir })
    }

    fn record_path(&self, key: Key<'_>) -> PathBuf {
        self.dir.join(format!("{}.json", key.file_stem()))
    }

    /// What the cache knows of the layer `key`.
    pub fn get(&self, key: Key<'_>) -> Record {
        let Ok(text) = fs::read_to_string(self.record_path(key)) else { return Record::default() };
        let Ok(value) = serde_json::from_str::<Value>(&text) else { return Record::default() };
        let digest = |v: &Value| -> Option<Digest> {
            Some(Digest { sha256: parse_hex(v.get("sha256")?.as_str()?)?, size: v.get("size")?.as_u64()? })
        };
        let mut record = Record { tar: digest(&value), compressed: BTreeMap::new() };
        for compressor in [Compressor::Gzip, Compressor::Zstd] {
            if let Some(d) = value.get(compressor.name()).and_then(digest) {
                record.compressed.insert(compressor.name(), d);
            }
        }
        record
    }

    /// Records the tar digest of the layer `key`, and the digest of its
    /// `compressor` blob if given.
    pub fn put(&self, key: Key<'_>, tar: Digest, blob: Option<(Compressor, Digest)>) -> Result<()> {
        let mut record = self.get(key);
        if record.tar != Some(tar) {
            // Compressed forms of another tar (a stale record) go.
            record.compressed.clear();
        }
        record.tar = Some(tar);
        if let Some((compressor, digest)) = blob.filter(|(c, _)| *c != Compressor::None) {
            record.compressed.insert(compressor.name(), digest);
        }
        let entry = |d: &Digest| json!({ "sha256": hex(&d.sha256), "size": d.size });
        let mut value = json!({
            "paths": key.paths().iter().map(StorePath::to_string).collect::<Vec<_>>(),
            "sha256": hex(&tar.sha256),
            "size": tar.size,
        });
        for (name, digest) in &record.compressed {
            value[*name] = entry(digest);
        }
        let path = self.record_path(key);
        let tmp = temporary(&path);
        fs::write(&tmp, value.to_string()).map_err(io_err("writing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("writing", &path))
    }

    /// Removes the records of store paths that are no longer valid (after
    /// a garbage collection), every older layout (the v2 layout kept whole
    /// layer tars), and the push blobs of layers no longer recorded;
    /// returns the bytes freed.
    pub fn prune(store: &Store) -> Result<u64> {
        let freed = Self::prune_records(store)?;
        Ok(freed + BlobCache::under(store.root()).prune(&Self::live_diff_ids(store)))
    }

    fn prune_records(store: &Store) -> Result<u64> {
        let dir = cache_dir(store);
        let mut freed = 0;
        if let Ok(versions) = fs::read_dir(store.root().join("layers")) {
            for old in versions.flatten().filter(|v| v.path() != dir) {
                freed += tree_size(&old.path());
                let _ = fs::remove_dir_all(old.path());
            }
        }
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(freed) };
        for entry in entries.flatten() {
            let record = entry.path();
            let paths: Vec<String> = fs::read_to_string(&record)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v.get("paths")?.as_array().cloned())
                .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let live = !paths.is_empty() && paths.iter().all(|p| StorePath::parse(p).is_ok_and(|p| store.is_valid(&p)));
            if !live {
                freed += fs::metadata(&record).map(|m| m.len()).unwrap_or(0);
                match fs::remove_file(&record) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("removing", &record)(e)),
                }
            }
        }
        Ok(freed)
    }

    /// The diff_ids (hex) of the layers the cache knows: the push blobs it
    /// keeps.
    fn live_diff_ids(store: &Store) -> std::collections::BTreeSet<String> {
        let Ok(entries) = fs::read_dir(cache_dir(store)) else { return Default::default() };
        entries
            .flatten()
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
            .filter_map(|v| v.get("sha256").and_then(|h| h.as_str()).map(str::to_string))
            .collect()
    }
}

/// What [`collect_garbage`] freed.
#[derive(Debug)]
pub struct Collected {
    /// The store paths deleted (or, in a dry run, that would be).
    pub store: GcReport,
    /// Bytes of layer records and push blobs freed (none in a dry run).
    pub layer_bytes: u64,
}

/// Collects the store's garbage, then (unless `dry_run`) prunes the layer
/// cache of the layers of the paths that went, and their push blobs.
pub fn collect_garbage(store: &Store, dry_run: bool) -> Result<Collected> {
    let report = store.gc(dry_run)?;
    let layer_bytes = if dry_run { 0 } else { DigestCache::prune(store)? };
    Ok(Collected { store: report, layer_bytes })
}

fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path).map(|es| es.flatten().map(|e| tree_size(&e.path())).sum()).unwrap_or(0)
}

/// A name beside `path` that no other process or thread uses (the path
/// itself is kept byte for byte; only a suffix is added).
pub(crate) fn temporary(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}-{n}", std::process::id()));
    PathBuf::from(name)
}

/// The SHA-256 whose hex is `text`.
pub(crate) fn parse_hex(text: &str) -> Option<[u8; 32]> {
    hex_decode(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mini_store::store_path::PathKind;

    fn path(name: &str) -> StorePath {
        let digest = blake3::hash(name.as_bytes());
        StorePath::compute(&PathKind::Source { references: &[] }, "sha256", digest.as_bytes(), name).unwrap()
    }

    #[test]
    fn records_round_trip_and_a_new_tar_drops_stale_blobs() {
        let root = std::env::temp_dir().join(format!("mini-digests-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let store = Store::open(&root).unwrap();
        let cache = DigestCache::open(&store).unwrap();
        let (a, b) = (path("a"), path("b"));
        let just_a = Key::Paths(std::slice::from_ref(&a));
        assert_eq!(cache.get(just_a), Record::default());
        let tar = Digest { sha256: [1; 32], size: 1024 };
        let gz = Digest { sha256: [2; 32], size: 99 };
        cache.put(just_a, tar, Some((Compressor::Gzip, gz))).unwrap();
        let got = cache.get(just_a);
        assert_eq!((got.tar, got.compressed.get("gzip")), (Some(tar), Some(&gz)));
        // A shared layer is keyed by its sorted paths.
        cache.put(Key::Paths(&[b.clone(), a.clone()]), tar, None).unwrap();
        assert_eq!(cache.get(Key::Paths(&[a.clone(), b.clone()])).tar, Some(tar));
        // A Debian root's layer is another record than its path's.
        assert_eq!(cache.get(Key::DebianRoot(&a)), Record::default());
        let on_root = Digest { sha256: [4; 32], size: 4096 };
        cache.put(Key::DebianRoot(&a), on_root, None).unwrap();
        assert_eq!(cache.get(Key::DebianRoot(&a)).tar, Some(on_root));
        assert_eq!(cache.get(just_a).tar, Some(tar));
        let other = Digest { sha256: [3; 32], size: 2048 };
        cache.put(just_a, other, None).unwrap();
        assert!(cache.get(just_a).compressed.is_empty());
        // None of the paths is valid in this store: a prune drops them all.
        DigestCache::prune(&store).unwrap();
        assert_eq!(cache.get(just_a), Record::default());
        assert_eq!(cache.get(Key::DebianRoot(&a)), Record::default());
        fs::remove_dir_all(&root).unwrap();
    }
}
