//! Writing a new key pair to disk (`mini key generate`): `NAME.secret`,
//! which only its owner can read, in a directory only its owner can enter
//! when this makes it, and `NAME.public` beside it. An existing secret is
//! never overwritten. [`crate::key`] stays a pure format.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::key::SecretKey;
use crate::{CacheError, Result};

/// Writes `key` as `dir/NAME.secret` and `dir/NAME.public`; the two paths.
pub fn write_key_pair(key: &SecretKey, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let secret = dir.join(format!("{}.secret", key.name));
    let public = dir.join(format!("{}.public", key.name));
    if secret.exists() {
        return Err(CacheError::Key(format!("{} exists; remove it first to replace the key", secret.display())));
    }
    let io_err =
        |source: io::Error| CacheError::Io { action: "writing the key files in", path: dir.to_path_buf(), source };
    create_private_dir(dir).map_err(io_err)?;
    write_private(&secret, &key.render()).map_err(io_err)?;
    fs::write(&public, key.public().render()).map_err(io_err)?;
    Ok((secret, public))
}

/// Creates `dir` (and missing parents) only its owner can enter, whatever
/// the umask; a directory that exists is the caller's choice and is left.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // The umask may have taken bits from the owner, too.
    fs::set_permissions(dir, Permissions::from_mode(0o700))
}

/// Writes a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_private_and_never_overwritten() {
        let base = std::env::temp_dir().join(format!("mini-key-files-{}", std::process::id()));
        let dir = base.join("keys");
        let _ = fs::remove_dir_all(&base);
        let key = SecretKey::generate("cache.example-1").unwrap();
        let (secret, public) = write_key_pair(&key, &dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&secret)), (0o700, 0o600));
        assert_eq!(SecretKey::parse(&fs::read_to_string(&secret).unwrap()).unwrap().render(), key.render());
        assert_eq!(fs::read_to_string(&public).unwrap(), key.public().render());
        let again = write_key_pair(&SecretKey::generate("cache.example-1").unwrap(), &dir).unwrap_err();
        assert!(again.to_string().contains("exists; remove it first"), "{again}");
        assert_eq!(fs::read_to_string(&secret).unwrap(), key.render());
        fs::remove_dir_all(&base).unwrap();
    }
}
