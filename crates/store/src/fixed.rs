//! Adding a file or tree as a fixed output (`mini store add-fixed`, as
//! `nix-store --add-fixed`): the path a fixed-output derivation with that
//! content hash and name would produce, so a build that needs it finds it
//! valid and downloads nothing. This is how an offline machine is seeded.
//!
//! The source is copied into a private staging directory and hashed in the
//! same pass, so what is hashed is exactly what is installed, whatever
//! happens to the source meanwhile. The named file is opened as the user
//! named it (a link such as `result` is followed once); inside a tree no
//! link is ever followed: links are stored as links.

use std::collections::BTreeSet;
use std::fs::{File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::derivation::{fixed_output_path, FixedHash, HashMode};
use crate::hash_io::HashingWriter;
use crate::nar;
use crate::store::{discard_tree, Store, StoreError};
use crate::store_path::{validate_name, StorePath};

/// A digest fed the bytes a fixed output is hashed over (the file's bytes,
/// or the tree's canonical archive) while they are copied.
pub trait ContentDigest: Write + Send {
    /// The algorithm, as derivations name it (`sha256`, `blake3`).
    fn algo(&self) -> &'static str;
    /// The digest of everything written.
    fn finish(self) -> Vec<u8>;
}

/// SHA-256, which fixed outputs fetched from the network are usually named
/// by; re-exported so that callers need no `sha2` of their own.
pub use sha2::Sha256;

impl ContentDigest for Sha256 {
    fn algo(&self) -> &'static str {
        "sha256"
    }

    fn finish(self) -> Vec<u8> {
        sha2::Digest::finalize(self).to_vec()
    }
}

impl ContentDigest for blake3::Hasher {
    fn algo(&self) -> &'static str {
        "blake3"
    }

    fn finish(self) -> Vec<u8> {
        self.finalize().as_bytes().to_vec()
    }
}

/// What [`Store::add_fixed`] added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedAdded {
    pub path: StorePath,
    /// The content hash the path was computed from.
    pub hash: FixedHash,
    /// Whether this call installed it (false: it was already valid).
    pub copied: bool,
}

impl Store {
    /// Adds the regular file (`HashMode::Flat`) or the tree
    /// (`HashMode::Recursive`) at `source` as the output of a fixed-output
    /// derivation named `name` whose content hash `digest` computes: the
    /// same path such a derivation gives, with the same contents a build
    /// of it would install (a flat file is never executable, as
    /// `fetchurl`'s is not). Adding it again is a no-op.
    pub fn add_fixed<D: ContentDigest>(
        &self,
        source: &Path,
        name: &str,
        mode: HashMode,
        digest: D,
    ) -> Result<FixedAdded, StoreError> {
        validate_name(name)?;
        let algo = digest.algo().to_string();
        let staging = self.staging_dir()?;
        let staged = staging.join("fixed");
        let hashed = match mode {
            HashMode::Flat => stage_file(source, &staged, digest),
            HashMode::Recursive => stage_tree(source, &staged, digest),
        };
        let result = hashed.and_then(|digest| {
            let hash = FixedHash { algo, mode, digest };
            let path = fixed_output_path(&hash, name)?;
            let copied = self.install_fixed(&path, &staged)?;
            Ok(FixedAdded { path, hash, copied })
        });
        discard_tree(&staging);
        result
    }

    /// Installs `staged` (a fixed output, which references nothing) as
    /// `path` unless it is valid already, holding it either way; whether it did.
    pub fn install_fixed(&self, path: &StorePath, staged: &Path) -> Result<bool, StoreError> {
        if self.hold(path)? {
            return Ok(false);
        }
        let _lock = self.lock(path)?;
        if self.is_valid(path) {
            return Ok(false);
        }
        self.install(path, staged, BTreeSet::new(), None)?;
        Ok(true)
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { action, path: path.to_path_buf(), source }
}

/// Copies the regular file `source` to the new file `dest` (0444), feeding
/// `digest` the same bytes; the digest.
fn stage_file<D: ContentDigest>(source: &Path, dest: &Path, mut digest: D) -> Result<Vec<u8>, StoreError> {
    // Non-blocking, so a fifo cannot hang the copy before it is refused.
    let mut input = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(source)
        .map_err(io_err("opening", source))?;
    let meta = input.metadata().map_err(io_err("reading", source))?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a directory (add it with --recursive)" } else { "not a regular file" };
        let message = format!("a flat fixed output is one regular file, and this is {what}");
        return Err(io_err("adding", source)(io::Error::new(io::ErrorKind::InvalidInput, message)));
    }
    let mut output =
        File::options().write(true).create_new(true).mode(0o600).open(dest).map_err(io_err("creating", dest))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading", source)(e)),
        };
        output.write_all(&buf[..n]).map_err(io_err("writing", dest))?;
        digest.write_all(&buf[..n]).map_err(io_err("hashing", source))?;
    }
    output.set_permissions(Permissions::from_mode(0o444)).map_err(io_err("setting the mode of", dest))?;
    Ok(digest.finish())
}

/// Copies the tree `source` to `dest` through its canonical archive (links
/// stored, never followed), feeding `digest` the archive; the digest.
fn stage_tree<D: ContentDigest>(source: &Path, dest: &Path, digest: D) -> Result<Vec<u8>, StoreError> {
    // The named path itself may be a link the user gave (`./result`).
    let source: PathBuf = std::fs::canonicalize(source).map_err(io_err("resolving", source))?;
    let (mut reader, writer) = io::pipe().map_err(io_err("creating a pipe for", &source))?;
    let (dumped, restored) = std::thread::scope(|scope| {
        let dumper = scope.spawn(|| {
            let mut tee = HashingWriter::new(writer, digest);
            let result = nar::dump_path(&source, &mut tee);
            let (out, digest, _) = tee.into_parts();
            drop(out);
            result.map(|_| digest.finish())
        });
        let restored = nar::restore(&mut reader, dest);
        // A failed restore stops reading: the dumper must not wait on a full pipe.
        drop(reader);
        (dumper.join(), restored)
    });
    let dumped = dumped.map_err(|_| io_err("archiving", &source)(io::Error::other("the archiving thread panicked")))?;
    let digest = dumped?;
    restored?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Scratch;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn fixed(mode: HashMode, digest: Vec<u8>) -> FixedHash {
        FixedHash { algo: "blake3".into(), mode, digest }
    }

    #[test]
    fn a_flat_file_gets_the_path_its_fixed_derivation_would() {
        let s = Scratch::new("fixed-flat");
        let store = Store::open(&s.0.join("store")).unwrap();
        let file = s.0.join("tool.whl");
        fs::write(&file, b"wheel bytes").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        let link = s.0.join("link");
        symlink(&file, &link).unwrap();

        let added = store.add_fixed(&link, "tool.whl", HashMode::Flat, blake3::Hasher::new()).unwrap();
        let expected = fixed(HashMode::Flat, blake3::hash(b"wheel bytes").as_bytes().to_vec());
        assert_eq!(added.hash, expected);
        assert_eq!(added.path, fixed_output_path(&expected, "tool.whl").unwrap());
        assert!(added.copied && store.is_valid(&added.path));
        let stored = store.physical_path(&added.path);
        assert_eq!(fs::read(&stored).unwrap(), b"wheel bytes");
        // Never executable, as a fetched file is not.
        assert_eq!(fs::symlink_metadata(&stored).unwrap().permissions().mode() & 0o777, 0o444);

        let again = store.add_fixed(&file, "tool.whl", HashMode::Flat, blake3::Hasher::new()).unwrap();
        assert_eq!(again.path, added.path);
        assert!(!again.copied);
        let leftovers: Vec<_> = fs::read_dir(s.0.join("store/tmp")).unwrap().collect();
        assert!(leftovers.is_empty(), "staging is removed: {leftovers:?}");
    }

    #[test]
    fn a_tree_is_copied_with_its_links_as_links() {
        let s = Scratch::new("fixed-tree");
        let store = Store::open(&s.0.join("store")).unwrap();
        let tree = s.0.join("tree");
        fs::create_dir_all(tree.join("bin")).unwrap();
        fs::write(tree.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(tree.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(s.0.join("secret"), b"outside").unwrap();
        symlink(s.0.join("secret"), tree.join("out")).unwrap();

        let added = store.add_fixed(&tree, "tree", HashMode::Recursive, blake3::Hasher::new()).unwrap();
        let mut archive = Vec::new();
        nar::dump_path(&tree, &mut archive).unwrap();
        assert_eq!(added.hash, fixed(HashMode::Recursive, blake3::hash(&archive).as_bytes().to_vec()));
        let stored = store.physical_path(&added.path);
        assert_eq!(fs::read_link(stored.join("out")).unwrap(), s.0.join("secret"));
        assert_eq!(fs::read(stored.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(fs::metadata(stored.join("bin/tool")).unwrap().permissions().mode() & 0o777, 0o555);
    }

    #[test]
    fn what_cannot_be_added_is_refused_before_anything_is_stored() {
        let s = Scratch::new("fixed-refused");
        let store = Store::open(&s.0.join("store")).unwrap();
        fs::create_dir_all(s.0.join("dir")).unwrap();
        let err = store.add_fixed(&s.0.join("dir"), "dir", HashMode::Flat, blake3::Hasher::new()).unwrap_err();
        assert!(err.to_string().contains("a directory (add it with --recursive)"), "{err}");
        let err = store.add_fixed(&s.0.join("missing"), "x", HashMode::Flat, blake3::Hasher::new()).unwrap_err();
        assert!(err.to_string().contains("No such file"), "{err}");
        fs::write(s.0.join("f"), b"x").unwrap();
        let err = store.add_fixed(&s.0.join("f"), "bad/name", HashMode::Flat, blake3::Hasher::new()).unwrap_err();
        assert!(matches!(err, StoreError::Path(_)), "{err}");
        assert_eq!(store.all_valid().unwrap(), Vec::<StorePath>::new());
    }
}
