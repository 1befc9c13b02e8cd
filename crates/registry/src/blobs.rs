//! Compressed layer blobs, made once: a layer's compressed form is kept in
//! `<cache>/<diff_id hex>.<gz|zst>` with its digest and size beside it in
//! `<…>.json`, so pushing the same layer again compresses nothing.
//! Compression is deterministic (gzip with no name and mtime 0, zstd level
//! 3), so the same layer always gets the same digest.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::Digest;

use crate::error::io_err;
use crate::source::Layer;
use crate::{RegistryError, Result};

/// How layers go up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// The layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "gz",
            Compression::Zstd => "zst",
        }
    }
}

/// A compressed layer in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub path: PathBuf,
    /// `sha256:<hex>` of the compressed bytes.
    pub digest: String,
    pub size: u64,
}

/// The compressed blob of each layer, in order: from the cache in `dir`, or
/// made now, several layers at a time. A layer made now is checked against
/// its diff_id.
pub fn compressed(dir: &Path, layers: &[Layer], compression: Compression) -> Result<Vec<Blob>> {
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    layers.par_iter().map(|layer| cached(dir, layer, compression)).collect()
}

fn cached(dir: &Path, layer: &Layer, compression: Compression) -> Result<Blob> {
    let hex = layer.diff_id.trim_start_matches("sha256:");
    let path = dir.join(format!("{hex}.{}", compression.extension()));
    let record = path.with_extension(format!("{}.json", compression.extension()));
    if let Some(blob) = recorded(&path, &record) {
        return Ok(blob);
    }
    let tmp = path.with_extension(format!("tmp-{}-{}", std::process::id(), hex));
    let result = compress(layer, compression, &tmp);
    let (digest, size) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &path).map_err(io_err("write", &path))?;
    let text = serde_json::json!({ "digest": digest, "size": size }).to_string();
    let tmp_record = record.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp_record, text)
        .and_then(|()| std::fs::rename(&tmp_record, &record))
        .map_err(io_err("write", &record))?;
    Ok(Blob { path, digest, size })
}

/// The blob the cache records, if its file is still there at its size.
fn recorded(path: &Path, record: &Path) -> Option<Blob> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(record).ok()?).ok()?;
    let digest = doc.get("digest")?.as_str()?.to_string();
    let size = doc.get("size")?.as_u64()?;
    (std::fs::metadata(path).ok()?.len() == size).then(|| Blob { path: path.to_path_buf(), digest, size })
}

/// Compresses `layer` into `out`, checking its diff_id; returns the
/// compressed digest and size.
fn compress(layer: &Layer, compression: Compression, out: &Path) -> Result<(String, u64)> {
    let file = File::create(out).map_err(io_err("write", out))?;
    let mut sink =
        HashingWriter { inner: io::BufWriter::with_capacity(256 * 1024, file), hash: sha2::Sha256::new(), size: 0 };
    let mut source = layer.open()?;
    let diff_id = {
        let write_err = |e: io::Error| RegistryError::Io { action: "write", path: out.to_path_buf(), source: e };
        match compression {
            Compression::Gzip => {
                let mut encoder = flate2::GzBuilder::new().mtime(0).write(&mut sink, flate2::Compression::default());
                let id = copy_hashing(&mut source, &mut encoder, layer)?;
                encoder.finish().map_err(write_err)?;
                id
            }
            Compression::Zstd => {
                let mut encoder = zstd::Encoder::new(&mut sink, 3).map_err(write_err)?;
                let id = copy_hashing(&mut source, &mut encoder, layer)?;
                encoder.finish().map_err(write_err)?;
                id
            }
        }
    };
    if diff_id != layer.diff_id {
        return Err(RegistryError::NotAnImage {
            path: out.to_path_buf(),
            message: format!("a layer uncompresses to {diff_id}, but the config's diff_id is {}", layer.diff_id),
        });
    }
    sink.inner.flush().map_err(io_err("write", out))?;
    Ok((format!("sha256:{}", crate::hex(&sink.hash.finalize())), sink.size))
}

/// Copies `source` into `sink`, returning the `sha256:` digest of what passed.
fn copy_hashing(source: &mut dyn Read, sink: &mut dyn Write, layer: &Layer) -> Result<String> {
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let failed = |e: io::Error| RegistryError::Http {
        what: format!("compressing layer {}", layer.diff_id),
        message: e.to_string(),
    };
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(e)),
        };
        hash.update(&buf[..n]);
        sink.write_all(&buf[..n]).map_err(failed)?;
    }
    Ok(format!("sha256:{}", crate::hex(&hash.finalize())))
}

/// A writer that hashes and counts what it passes on.
struct HashingWriter<W> {
    inner: W,
    hash: sha2::Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
