//! The layer cache: a store path's layer tar and its SHA-256 are made once
//! and kept under `<store root>/layers/`, keyed by the path (or, for the
//! layer several unpopular paths share, by the sorted list of paths). A
//! store path never changes, so neither does its layer: every image holding
//! the path gets the byte-identical layer with the same digest, and
//! rebuilding an image after one package changed re-tars only that package.
//!
//! Compressed forms are cached beside the tar the same way. An entry is
//! written to a temporary name and renamed; its small JSON record (digest,
//! size) is renamed into place last, so a record always describes a
//! complete file. The cache holds nothing that cannot be remade, so it is
//! not synced to disk.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use mini_store::store::Store;
use mini_store::store_path::StorePath;

use crate::error::{io_err, Result};
use crate::tarball::{self, HashingWriter};

/// How layer blobs are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    None,
    Gzip,
    Zstd,
}

impl Compressor {
    pub fn parse(text: &str) -> Option<Compressor> {
        match text {
            "none" => Some(Compressor::None),
            "gzip" => Some(Compressor::Gzip),
            "zstd" => Some(Compressor::Zstd),
            _ => None,
        }
    }

    /// The file name suffix of a blob.
    pub fn extension(self) -> &'static str {
        match self {
            Compressor::None => "tar",
            Compressor::Gzip => "tar.gz",
            Compressor::Zstd => "tar.zst",
        }
    }

    /// The OCI media type of a layer blob.
    pub fn media_type(self) -> &'static str {
        match self {
            Compressor::None => "application/vnd.oci.image.layer.v1.tar",
            Compressor::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compressor::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// A layer ready to go into an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// SHA-256 of the uncompressed tar.
    pub diff_id: [u8; 32],
    /// The blob as it goes into the image (compressed or not).
    pub blob: PathBuf,
    pub blob_digest: [u8; 32],
    pub blob_size: u64,
    /// The store paths it holds.
    pub paths: Vec<StorePath>,
}

/// The layer cache of one store.
pub struct LayerCache {
    dir: PathBuf,
    store_dir: PathBuf,
}

/// A digest and a size, as cache records keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    digest: [u8; 32],
    size: u64,
}

impl LayerCache {
    pub fn open(store: &Store) -> Result<LayerCache> {
        let dir = cache_dir(store);
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(LayerCache { dir, store_dir: store.root().join("store") })
    }

    /// Removes the layers of store paths that are no longer valid (after a
    /// garbage collection); returns the bytes freed.
    pub fn prune(store: &Store) -> Result<u64> {
        let dir = cache_dir(store);
        let mut freed = 0;
        // Layers of an older layout are never read again.
        if let Ok(versions) = fs::read_dir(store.root().join("layers")) {
            for old in versions.flatten().filter(|v| v.path() != dir) {
                freed += tree_size(&old.path());
                let _ = fs::remove_dir_all(old.path());
            }
        }
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(freed) };
        for entry in entries.flatten() {
            let record = entry.path();
            let Some(blob) = record.to_str().and_then(|r| r.strip_suffix(".json")).map(PathBuf::from) else {
                continue;
            };
            let paths: Vec<String> = fs::read_to_string(&record)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v.get("paths")?.as_array().cloned())
                .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let live = !paths.is_empty() && paths.iter().all(|p| StorePath::parse(p).is_ok_and(|p| store.is_valid(&p)));
            if !live {
                freed += fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&record).map_err(io_err("removing", &record))?;
                let _ = fs::remove_file(&blob);
            }
        }
        Ok(freed)
    }

    /// The diff_ids (hex) of the layers the cache holds, after a prune:
    /// what other caches keyed by layer (such as `mini push`'s compressed
    /// blobs) may keep.
    pub fn live_diff_ids(store: &Store) -> std::collections::BTreeSet<String> {
        let Ok(entries) = fs::read_dir(cache_dir(store)) else { return Default::default() };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tar.json"))
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter_map(|v| v.get("sha256").and_then(|h| h.as_str()).map(str::to_string))
            .collect()
    }

    /// The cache key of a layer holding `paths`.
    fn key(paths: &[StorePath]) -> String {
        match paths {
            [one] => one.base_name(),
            many => {
                let mut sorted: Vec<String> = many.iter().map(StorePath::to_string).collect();
                sorted.sort();
                format!("shared-{}", blake3::hash(sorted.join("\n").as_bytes()).to_hex())
            }
        }
    }

    /// The layer holding `paths`, made now if the cache does not have it.
    pub fn layer(&self, paths: &[StorePath], compressor: Compressor) -> Result<Layer> {
        let key = Self::key(paths);
        let tar = self.dir.join(format!("{key}.tar"));
        let tar_record = match self.read_record(&tar)? {
            Some(record) => record,
            None => self.pack(paths, &tar)?,
        };
        let (blob, blob_record) = match compressor {
            Compressor::None => (tar.clone(), tar_record),
            _ => {
                let blob = self.dir.join(format!("{key}.{}", compressor.extension()));
                let record = match self.read_record(&blob)? {
                    Some(record) => record,
                    None => {
                        let (digest, size) = compress_file(&tar, &blob, compressor)?;
                        let record = Record { digest, size };
                        Self::write_record(&blob, record, paths)?;
                        record
                    }
                };
                (blob, record)
            }
        };
        Ok(Layer {
            diff_id: tar_record.digest,
            blob,
            blob_digest: blob_record.digest,
            blob_size: blob_record.size,
            paths: paths.to_vec(),
        })
    }

    fn record_path(blob: &Path) -> PathBuf {
        let mut name = blob.as_os_str().to_owned();
        name.push(".json");
        PathBuf::from(name)
    }

    fn read_record(&self, blob: &Path) -> Result<Option<Record>> {
        let record = Self::record_path(blob);
        let text = match fs::read_to_string(&record) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &record)(e)),
        };
        let parsed: Option<Record> = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| {
            let digest = parse_hex(v.get("sha256")?.as_str()?)?;
            Some(Record { digest, size: v.get("size")?.as_u64()? })
        });
        // A record that does not describe the file is remade.
        Ok(parsed.filter(|r| fs::metadata(blob).is_ok_and(|m| m.len() == r.size)))
    }

    fn write_record(blob: &Path, record: Record, paths: &[StorePath]) -> Result<()> {
        let path = Self::record_path(blob);
        let tmp = temporary(&path);
        let text = serde_json::json!({
            "paths": paths.iter().map(StorePath::to_string).collect::<Vec<_>>(),
            "sha256": hex(&record.digest),
            "size": record.size,
        })
        .to_string();
        fs::write(&tmp, text).map_err(io_err("writing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("writing", &path))
    }

    fn pack(&self, paths: &[StorePath], tar: &Path) -> Result<Record> {
        let tmp = temporary(tar);
        let file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        let names: Vec<String> = paths.iter().map(StorePath::base_name).collect();
        let writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let (buffered, digest, size) = tarball::write_store_layer(writer, &self.store_dir, &names)?.finish();
        buffered.into_inner().map_err(|e| io_err("writing", &tmp)(e.into_error()))?;
        fs::rename(&tmp, tar).map_err(io_err("writing", tar))?;
        let record = Record { digest, size };
        Self::write_record(tar, record, paths)?;
        Ok(record)
    }
}

/// Compresses the tar at `tar` into `blob` (written under a temporary name,
/// then renamed); returns the blob's SHA-256 and size. Deterministic: the
/// same tar gives the same bytes.
pub fn compress_file(tar: &Path, blob: &Path, compressor: Compressor) -> Result<([u8; 32], u64)> {
    let tmp = temporary(blob);
    let mut input = File::open(tar).map_err(io_err("reading", tar))?;
    let file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    let out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let failed = io_err("compressing", tar);
    let out = match compressor {
        // No name and no time in the gzip header: same input, same bytes.
        Compressor::Gzip => {
            let mut enc = flate2::GzBuilder::new().mtime(0).write(out, flate2::Compression::default());
            io::copy(&mut input, &mut enc).map_err(io_err("compressing", tar))?;
            enc.finish().map_err(failed)?
        }
        Compressor::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, 3).map_err(io_err("compressing", tar))?;
            io::copy(&mut input, &mut enc).map_err(io_err("compressing", tar))?;
            enc.finish().map_err(failed)?
        }
        Compressor::None => {
            let mut out = out;
            io::copy(&mut input, &mut out).map_err(failed)?;
            out
        }
    };
    let (mut buffered, digest, size) = out.finish();
    buffered.flush().map_err(io_err("writing", &tmp))?;
    drop(buffered);
    fs::rename(&tmp, blob).map_err(io_err("writing", blob))?;
    Ok((digest, size))
}

/// The version of the layer layout: bumped whenever what goes into a
/// store path's layer changes, so stale cached layers are never used.
const LAYOUT_VERSION: u32 = 2;

fn cache_dir(store: &Store) -> PathBuf {
    store.root().join("layers").join(format!("v{LAYOUT_VERSION}"))
}

fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path).map(|es| es.flatten().map(|e| tree_size(&e.path())).sum()).unwrap_or(0)
}

/// A name beside `path` that no other process uses.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}-{:?}", std::process::id(), std::thread::current().id()));
    PathBuf::from(name.to_string_lossy().replace(['(', ')'], ""))
}

pub fn hex(bytes: &[u8]) -> String {
    mini_store::derivation::hex(bytes)
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
