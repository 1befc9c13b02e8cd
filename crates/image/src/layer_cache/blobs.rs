//! Compressed layer blobs, made once for pushing: a layer's compressed form
//! is kept in `<state>/push-blobs/<diff_id hex>.<gz|zst>` with its digest
//! and size beside it in `<…>.json`, so pushing the same layer again
//! compresses nothing. Compression is `compress`'s, deterministic, so the
//! same layer always gets the same digest. The blobs are pruned with the
//! layer cache (`super::DigestCache::prune`): a blob stays while the cache
//! records a layer of its diff_id, and goes with it.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use mini_store::encoding::hex;
use mini_store::hash_io::HashingWriter;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::temporary;
use crate::compress::Compressor;
use crate::error::{io_err, ImageError, Result};
use crate::inspect::LocatedLayer;

/// How many bytes of a layer are read and compressed at a time.
const CHUNK: usize = 256 * 1024;

/// A compressed layer in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub path: PathBuf,
    /// `sha256:<hex>` of the compressed bytes.
    pub digest: String,
    pub size: u64,
}

/// The compressed blobs kept under one state directory (a store's root).
pub struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    /// The blob cache under `state`.
    pub fn under(state: &Path) -> BlobCache {
        BlobCache { dir: state.join("push-blobs") }
    }

    /// The compressed blob of each layer, in order: from the cache, or made
    /// now, several layers at a time. A layer made now is checked against
    /// its diff_id.
    pub fn compressed(&self, layers: &[LocatedLayer], compressor: Compressor) -> Result<Vec<Blob>> {
        fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
        layers.par_iter().map(|layer| self.cached(layer, compressor)).collect()
    }

    fn cached(&self, layer: &LocatedLayer, compressor: Compressor) -> Result<Blob> {
        let hex = layer.diff_id.trim_start_matches("sha256:");
        let path = self.dir.join(format!("{hex}.{}", extension(compressor)));
        let record = self.dir.join(format!("{hex}.{}.json", extension(compressor)));
        if let Some(blob) = recorded(&path, &record) {
            return Ok(blob);
        }
        let tmp = temporary(&path);
        let (digest, size) = match compress(layer, compressor, &tmp) {
            Ok(done) => done,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        fs::rename(&tmp, &path).map_err(io_err("writing", &path))?;
        let text = serde_json::json!({ "digest": digest, "size": size }).to_string();
        let tmp_record = temporary(&record);
        fs::write(&tmp_record, text)
            .and_then(|()| fs::rename(&tmp_record, &record))
            .map_err(io_err("writing", &record))?;
        Ok(Blob { path, digest, size })
    }

    /// Removes the blobs (and their records) of layers whose diff_id hex is
    /// not in `live`; returns the bytes freed.
    pub(super) fn prune(&self, live: &BTreeSet<String>) -> u64 {
        let Ok(entries) = fs::read_dir(&self.dir) else { return 0 };
        let mut freed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let diff_id = name.split('.').next().unwrap_or_default();
            if !live.contains(diff_id) {
                freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = fs::remove_file(entry.path());
            }
        }
        freed
    }
}

/// The file name suffix of a blob in the cache: the compressor's own
/// suffix without its `tar.` (`gz`, `zst`; `tar` uncompressed).
fn extension(compressor: Compressor) -> &'static str {
    let suffix = compressor.extension();
    suffix.strip_prefix("tar.").unwrap_or(suffix)
}

/// The blob the cache records, if its file is still there at its size.
fn recorded(path: &Path, record: &Path) -> Option<Blob> {
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(record).ok()?).ok()?;
    let digest = doc.get("digest")?.as_str()?.to_string();
    let size = doc.get("size")?.as_u64()?;
    (fs::metadata(path).ok()?.len() == size).then(|| Blob { path: path.to_path_buf(), digest, size })
}

/// Compresses `layer` into `out`, checking its diff_id; returns the
/// compressed digest (`sha256:<hex>`) and size.
fn compress(layer: &LocatedLayer, compressor: Compressor, out: &Path) -> Result<(String, u64)> {
    let file = File::create(out).map_err(io_err("writing", out))?;
    let blob = HashingWriter::new(BufWriter::with_capacity(CHUNK, file), Sha256::new());
    let encoder = compressor.encoder(blob).map_err(io_err("writing", out))?;
    let mut tar = HashingWriter::new(encoder, Sha256::new());
    copy_in_chunks(&mut *layer.open()?, &mut tar).map_err(io_err("compressing", layer.what()))?;
    let (encoder, diff_id, _) = tar.into_parts();
    let blob = encoder.finish().map_err(io_err("writing", out))?;
    let diff_id = format!("sha256:{}", hex(&diff_id.finalize()));
    if diff_id != layer.diff_id {
        return Err(ImageError::NotAnImage {
            path: layer.what().to_path_buf(),
            message: format!("a layer uncompresses to {diff_id}, but the config's diff_id is {}", layer.diff_id),
        });
    }
    let (mut file, digest, size) = blob.into_parts();
    file.flush().map_err(io_err("writing", out))?;
    Ok((format!("sha256:{}", hex(&digest.finalize())), size))
}

/// Copies `source` into `sink` [`CHUNK`] bytes at a time.
fn copy_in_chunks(source: &mut dyn Read, sink: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sink.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::locate;
    use crate::inspect::testing::{tar_of, TempDir};

    /// A docker-archive of one layer, `tar`.
    fn archive_of(dir: &Path, tar: &[u8]) -> PathBuf {
        let diff_id = hex(&Sha256::digest(tar));
        let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#);
        let manifest = r#"[{"Config":"config.json","Layers":["layer.tar"]}]"#;
        let path = dir.join("image.tar");
        let members = [("manifest.json", manifest.as_bytes()), ("config.json", config.as_bytes()), ("layer.tar", tar)];
        fs::write(&path, tar_of(&members)).unwrap();
        path
    }

    #[test]
    fn blobs_are_made_once_deterministically_and_pruned_with_their_layers() {
        let temp = TempDir::new("push-blobs");
        let tar = vec![7u8; 3 * CHUNK + 5];
        let image = locate(&archive_of(temp.path(), &tar)).unwrap();
        let cache = BlobCache::under(temp.path());
        let [gz] = cache.compressed(&image.layers, Compressor::Gzip).unwrap().try_into().unwrap();
        let mut expected = Compressor::Gzip.encoder(Vec::new()).unwrap();
        expected.write_all(&tar).unwrap();
        let expected = expected.finish().unwrap();
        assert_eq!(fs::read(&gz.path).unwrap(), expected);
        assert_eq!(gz.digest, format!("sha256:{}", hex(&Sha256::digest(&expected))));
        // Made once: a second call takes the recorded blob.
        fs::write(&gz.path, vec![0; expected.len()]).unwrap();
        assert_eq!(cache.compressed(&image.layers, Compressor::Gzip).unwrap(), std::slice::from_ref(&gz));
        let hex_id = image.layers[0].diff_id.trim_start_matches("sha256:").to_string();
        assert_eq!(cache.prune(&BTreeSet::from([hex_id])), 0);
        assert!(cache.prune(&BTreeSet::new()) > 0);
        assert!(!gz.path.exists());
    }

    #[test]
    fn a_layer_that_is_not_its_diff_id_is_refused() {
        let temp = TempDir::new("push-blobs-bad");
        let mut image = locate(&archive_of(temp.path(), b"layer")).unwrap();
        image.layers[0].diff_id = format!("sha256:{}", "0".repeat(64));
        let e = BlobCache::under(temp.path()).compressed(&image.layers, Compressor::Zstd).unwrap_err();
        assert!(e.to_string().contains("but the config's diff_id is"), "{e}");
        assert_eq!(fs::read_dir(temp.path().join("push-blobs")).unwrap().count(), 0, "nothing is left behind");
    }
}
