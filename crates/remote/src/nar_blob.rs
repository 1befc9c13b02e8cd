//! A store path as a CAS blob: its NAR, and the SHA-256 digest of that
//! NAR, which the store computes by streaming the archive through the
//! hasher (the bytes are made only when the CAS lacks them); and a NAR blob unpacked into a
//! directory no one else writes, with the store's own safe restore.

use std::io;
use std::path::Path;

use mini_store::nar;

use crate::digest::Digest;
use crate::error::{RemoteError, Result};

/// The digest of the NAR of the tree at `path`.
pub fn digest_of(path: &Path) -> Result<Digest> {
    let (hash, size) = nar::sha256_sized(path).map_err(|e| nar_error(path, e))?;
    Ok(Digest { hash, size })
}

/// The NAR of the tree at `path`, and its digest.
pub fn read(path: &Path) -> Result<(Digest, Vec<u8>)> {
    let mut bytes = Vec::new();
    nar::dump_path(path, &mut bytes).map_err(|e| nar_error(path, e))?;
    Ok((Digest::of(&bytes), bytes))
}

/// Unpacks a NAR (already checked against its digest) at `dest`, which
/// must not exist; a malformed archive is refused.
pub fn unpack(bytes: &[u8], dest: &Path, what: &str) -> Result<()> {
    nar::restore(&mut &bytes[..], dest).map_err(|e| RemoteError::Refused(format!("{what} is not a valid archive: {e}")))
}

fn nar_error(path: &Path, e: nar::NarError) -> RemoteError {
    RemoteError::Io { action: "archiving", path: path.to_path_buf(), source: io::Error::other(e.to_string()) }
}
