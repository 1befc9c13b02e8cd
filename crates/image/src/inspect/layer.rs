//! Reading one layer blob in a single streaming pass: its SHA-256 as stored
//! (the digest), the SHA-256 of the uncompressed tar (the diff_id), its
//! compression (told by magic bytes, not by names or media types), and
//! what it holds — the store paths under `mini/store/`, or the top-level
//! entries of a layer that holds none.

use std::collections::BTreeSet;
use std::io::{self, BufReader, Read};

use flate2::read::MultiGzDecoder;
use mini_store::encoding::hex;
use mini_store::store_path::{StorePath, STORE_DIR};
use sha2::{Digest, Sha256};

use super::tar_stream::{read_full, Streamed, TarReader};

/// How many distinct top-level names a layer's summary keeps; past that,
/// entries are only counted, so a hostile layer cannot grow the summary.
const MAX_NAMES: usize = 10_000;
/// The longest top-level name kept (file names are at most 255 bytes).
const MAX_NAME_BYTES: usize = 255;

/// A layer's compression, as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub(crate) fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The OCI media type of a layer compressed this way.
    pub(crate) fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// What one pass over a layer blob found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerScan {
    /// Hex SHA-256 of the blob as stored.
    pub digest: String,
    /// Hex SHA-256 of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the blob as stored.
    pub size: u64,
    pub compression: Compression,
    pub store_paths: BTreeSet<String>,
    pub other_entries: BTreeSet<String>,
    /// Entries whose top-level name was not kept (past [`MAX_NAMES`]).
    pub unlisted: u64,
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing { inner, hasher: Sha256::new(), count: 0 }
    }

    /// Reads the rest of the input, then gives its hex digest and length.
    fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((hex(&self.hasher.finalize()), self.count))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Scans a layer blob, reading it exactly once and to its end.
pub(crate) fn scan_layer(blob: impl Read) -> Result<LayerScan, String> {
    let mut stored = Hashing::new(BufReader::with_capacity(256 * 1024, blob));
    let mut magic = [0u8; 4];
    let got = read_full(&mut stored, &mut magic).map_err(|e| format!("cannot read it: {e}"))?;
    let head = &magic[..got];
    let compression = Compression::detect(head);
    let (diff_id, contents) = {
        let mut joined = head.chain(&mut stored);
        match compression {
            // The stored bytes are the tar: one hash serves as both.
            Compression::None => (None, list(&mut joined, compression)?),
            Compression::Gzip => decode(MultiGzDecoder::new(joined), compression)?,
            Compression::Zstd => {
                let decoder =
                    zstd::Decoder::new(joined).map_err(|e| format!("cannot start zstd decompression: {e}"))?;
                decode(decoder, compression)?
            }
        }
    };
    let (digest, size) = stored.finish().map_err(|e| format!("cannot read it: {e}"))?;
    let diff_id = diff_id.unwrap_or_else(|| digest.clone());
    Ok(LayerScan {
        digest,
        diff_id,
        size,
        compression,
        store_paths: contents.store_paths,
        other_entries: contents.other_entries,
        unlisted: contents.unlisted,
    })
}

/// Lists a compressed layer and hashes what it uncompresses to.
fn decode(decoder: impl Read, compression: Compression) -> Result<(Option<String>, Contents), String> {
    let mut plain = Hashing::new(decoder);
    let contents = list(&mut plain, compression)?;
    let (diff_id, _) = plain.finish().map_err(|e| format!("bad {} data: {e}", compression.name()))?;
    Ok((Some(diff_id), contents))
}

fn list(plain: &mut impl Read, compression: Compression) -> Result<Contents, String> {
    let mut tar = TarReader::new(Streamed(plain));
    let mut contents = Contents::default();
    loop {
        match tar.next_entry() {
            Ok(Some(entry)) => contents.add(&entry.path),
            Ok(None) => return Ok(contents),
            Err(e) if compression == Compression::None => return Err(format!("not a layer tar: {e}")),
            Err(e) => return Err(format!("not a layer tar (or bad {} data): {e}", compression.name())),
        }
    }
}

#[derive(Default)]
struct Contents {
    store_paths: BTreeSet<String>,
    other_entries: BTreeSet<String>,
    unlisted: u64,
}

impl Contents {
    /// Files the entry under its store path or under its top-level name.
    /// `mini` and `mini/store` themselves are every layer's scaffolding.
    fn add(&mut self, path: &[u8]) {
        let text = String::from_utf8_lossy(path);
        let mut parts = text.split('/').filter(|p| !p.is_empty() && *p != ".");
        let Some(top) = parts.next() else { return };
        let name = if top == "mini" {
            match (parts.next(), parts.next()) {
                (None, _) | (Some("store"), None) => return,
                (Some("store"), Some(base)) if StorePath::parse_base_name(base).is_ok() => {
                    let path = format!("{STORE_DIR}/{base}");
                    if self.store_paths.len() < MAX_NAMES || self.store_paths.contains(&path) {
                        self.store_paths.insert(path);
                    } else {
                        self.unlisted += 1;
                    }
                    return;
                }
                _ => top,
            }
        } else {
            top
        };
        if self.other_entries.contains(name) {
            return;
        }
        if self.other_entries.len() >= MAX_NAMES {
            self.unlisted += 1;
            return;
        }
        let mut end = name.len().min(MAX_NAME_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        self.other_entries.insert(name[..end].to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::testing::{gzip, layer_tar, sha256_hex, zstd_compress, BUSYBOX};

    #[test]
    fn scans_store_layers_in_every_compression() {
        let tar = layer_tar(&[&format!("mini/store/{BUSYBOX}/bin/sh"), &format!("mini/store/{BUSYBOX}/bin/ls")]);
        let diff_id = sha256_hex(&tar);
        for (blob, compression) in [
            (tar.clone(), Compression::None),
            (gzip(&tar), Compression::Gzip),
            (zstd_compress(&tar), Compression::Zstd),
        ] {
            let scan = scan_layer(&blob[..]).unwrap();
            assert_eq!(scan.compression, compression);
            assert_eq!(scan.digest, sha256_hex(&blob));
            assert_eq!(scan.size, blob.len() as u64);
            assert_eq!(scan.diff_id, diff_id);
            assert_eq!(scan.store_paths.iter().collect::<Vec<_>>(), [&format!("/mini/store/{BUSYBOX}")]);
            assert!(scan.other_entries.is_empty());
        }
    }

    #[test]
    fn a_customisation_layer_lists_its_top_level_entries() {
        let tar = layer_tar(&["./bin/sh", "etc/passwd", "tmp/", "mini/store/.links/x", "abs"]);
        let scan = scan_layer(&tar[..]).unwrap();
        assert!(scan.store_paths.is_empty());
        assert_eq!(scan.other_entries.iter().collect::<Vec<_>>(), ["abs", "bin", "etc", "mini", "tmp"]);
    }

    #[test]
    fn bad_blobs_are_errors() {
        let e = scan_layer(&[0x1f, 0x8b, 1, 2, 3][..]).unwrap_err();
        assert!(e.contains("bad gzip data"), "{e}");
        let e = scan_layer(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0][..]).unwrap_err();
        assert!(e.contains("zstd"), "{e}");
        assert!(scan_layer(&[7u8; 600][..]).unwrap_err().contains("not a layer tar"));
        let tar = layer_tar(&["bin/sh"]);
        let gz = gzip(&tar);
        assert!(scan_layer(&gz[..gz.len() / 2]).is_err());
        // An empty blob is an empty tar; only its diff_id can be wrong.
        assert_eq!(scan_layer(&[][..]).unwrap().diff_id, sha256_hex(b""));
    }
}
