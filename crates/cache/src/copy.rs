//! `mini copy`: uploads the closure of some store paths to a cache, each
//! path as an xz-compressed archive and a signed narinfo. Paths the cache
//! already has (its narinfo exists) are not sent again; a narinfo is
//! written only after its archive, so a reader never sees one without it.

use std::fs::File;
use std::io::{self, Seek, Write};

use mini_store::hash_io::HashingWriter;
use mini_store::nar;
use mini_store::store::{discard_tree, Store};
use mini_store::store_path::StorePath;

use crate::key::SecretKey;
use crate::narinfo::{self, NarInfo};
use crate::remote::Remote;
use crate::{CacheError, Result};

/// xz preset for uploads: faster than xz's default 6, for a few percent of size.
const XZ_LEVEL: u32 = 3;

/// What a copy did.
#[derive(Debug, Default)]
pub struct CopyReport {
    pub copied: Vec<StorePath>,
    /// Paths the cache already had.
    pub present: Vec<StorePath>,
}

/// Copies the closure of `roots` from `store` to `remote`, signing with
/// `key` if given; `on_copy` hears of each path as it is sent.
pub fn copy_closure(
    store: &Store,
    remote: &Remote,
    key: Option<&SecretKey>,
    roots: &[StorePath],
    on_copy: &mut dyn FnMut(&StorePath),
) -> Result<CopyReport> {
    if !remote.exists("nix-cache-info")? {
        remote.put("nix-cache-info", &mut narinfo::cache_info().as_bytes())?;
    }
    let mut report = CopyReport::default();
    let staging = store.staging_dir()?;
    let result = (|| {
        for info in store.closure(roots)? {
            let name = narinfo::file_name(&info.path);
            if remote.exists(&name)? {
                report.present.push(info.path);
                continue;
            }
            on_copy(&info.path);
            let compressed = staging.join(format!("{}.nar.xz", info.path.hash_part()));
            let (nar_hash, nar_size, file_hash, file_size) = compress(&store.physical_path(&info.path), &compressed)?;
            if nar_hash != info.nar_hash || nar_size != info.nar_size {
                return Err(CacheError::Transfer {
                    action: "cannot copy",
                    what: info.path.to_string(),
                    message:
                        "its contents no longer match the store's record; run `mini store verify --check-contents`"
                            .into(),
                });
            }
            let url = format!("nar/{}.nar.xz", blake3::Hash::from_bytes(file_hash).to_hex());
            let mut file = File::open(&compressed).map_err(|e| io_error("reading", &compressed, e))?;
            remote.put(&url, &mut file)?;
            let mut entry = NarInfo {
                store_path: info.path.clone(),
                url,
                compression: "xz".into(),
                file_hash,
                file_size,
                nar_hash,
                nar_size,
                references: info.references.clone(),
                deriver: info.deriver.clone(),
                sigs: Vec::new(),
            };
            if let Some(key) = key {
                entry.sigs.push(key.sign(&entry.fingerprint()));
            }
            remote.put(&name, &mut entry.render().as_bytes())?;
            std::fs::remove_file(&compressed).map_err(|e| io_error("removing", &compressed, e))?;
            report.copied.push(info.path);
        }
        Ok(())
    })();
    discard_tree(&staging);
    result.map(|()| report)
}

fn io_error(action: &'static str, path: &std::path::Path, source: io::Error) -> CacheError {
    CacheError::Io { action, path: path.to_path_buf(), source }
}

/// Archives `source` into the xz file `dest`: the archive's hash and size,
/// then the compressed file's.
fn compress(source: &std::path::Path, dest: &std::path::Path) -> Result<([u8; 32], u64, [u8; 32], u64)> {
    let file = File::create(dest).map_err(|e| io_error("creating", dest, e))?;
    let file_side = HashingWriter::new(io::BufWriter::new(file), blake3::Hasher::new());
    let encoder = xz2::write::XzEncoder::new(file_side, XZ_LEVEL);
    let mut nar_side = HashingWriter::new(encoder, blake3::Hasher::new());
    nar::dump_path(source, &mut nar_side)?;
    let (encoder, nar_hasher, nar_size) = nar_side.into_parts();
    let finished = encoder.finish().map_err(|e| io_error("compressing", dest, e))?;
    let (buffered, file_hasher, file_size) = finished.into_parts();
    let mut file = buffered.into_inner().map_err(|e| io_error("writing", dest, e.into_error()))?;
    file.flush().and_then(|()| file.rewind()).map_err(|e| io_error("writing", dest, e))?;
    Ok((*nar_hasher.finalize().as_bytes(), nar_size, *file_hasher.finalize().as_bytes(), file_size))
}
