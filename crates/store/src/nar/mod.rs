//! The canonical archive (NAR): one byte string per file tree, byte for
//! byte Nix's NAR format.
//!
//! Store paths are named after the hash of their contents, so a tree must
//! have exactly one serialisation. tar cannot give that: one tree has many
//! valid tar encodings (header variants, entry order, padding), and tar
//! carries times, owners and permission bits that say nothing about content.
//! This format keeps only what matters — node type, the executable bit, file
//! contents, symlink targets, and entry names in sorted order — so equal
//! trees give equal bytes and equal hashes.
//!
//! Every token is a length-prefixed byte string (u64 little-endian length,
//! the bytes, zero padding to a multiple of 8):
//!
//! ```text
//! archive   = "nix-archive-1" node
//! node      = "(" "type" (regular | symlink | directory) ")"
//! regular   = "regular" ["executable" ""] "contents" <bytes>
//! symlink   = "symlink" "target" <target>
//! directory = "directory" {"entry" "(" "name" <name> "node" node ")"}
//! ```
//!
//! The codec is I/O-free: [`writer`] encodes tokens and in-memory trees to
//! any `Write`, [`reader`] parses and checks any `Read`. The disk lives
//! apart: [`disk`] dumps a tree on disk (never following a link) and
//! restores one through [`crate::tree_writer`]; [`hash`] hashes a tree on
//! disk in parallel. Their functions are re-exported here, so callers write
//! `nar::dump_path`, `nar::restore`, `nar::hash_path`.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::tree_writer::TreeError;

pub mod disk;
pub mod hash;
pub mod reader;
pub mod writer;

#[cfg(test)]
mod fixtures;

pub use disk::{dump_path, dump_path_filtered, restore, special_file_kind, PathFilter, KEEP_ALL};
pub use hash::{hash_path, hash_path_filtered, sha256, sha256_sized, FileHasher};
pub use reader::validate;
pub use writer::{encode, Node};

/// The first token of every archive.
pub const MAGIC: &str = "nix-archive-1";
/// The most directories that may be nested inside one another, the root included.
pub const MAX_DEPTH: usize = 256;
/// The longest name, symlink target or tag a reader accepts (file contents are unbounded).
pub const MAX_TOKEN_LEN: u64 = 4096;

/// Size of the buffers that file contents stream through.
const COPY_LEN: usize = 256 * 1024;

/// Why a tree could not be archived, hashed or restored.
#[derive(Debug, Error)]
pub enum NarError {
    /// Reading the tree to archive, or writing the restored one, failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The tree holds a device, fifo or socket.
    #[error("cannot archive {}: it is a {kind}, and only regular files, directories and symlinks can be archived", path.display())]
    UnsupportedFileType { path: PathBuf, kind: &'static str },
    /// The tree on disk nests directories deeper than readers accept.
    #[error("cannot archive {}: it is nested more than {MAX_DEPTH} directories deep", path.display())]
    TreeTooDeep { path: PathBuf },
    /// A file shrank between being measured and being read.
    #[error("{} changed size while it was being archived", path.display())]
    FileChanged { path: PathBuf },
    /// An in-memory [`Node`] breaks the format's rules.
    #[error("cannot encode the tree: {message}")]
    InvalidTree { message: String },
    /// The archive's destination refused bytes.
    #[error("cannot write the archive: {source}")]
    Write { source: io::Error },
    /// The archive's source failed.
    #[error("cannot read the archive at byte {offset}: {source}")]
    Read { offset: u64, source: io::Error },
    /// The input ended before the archive did.
    #[error("archive is truncated: the input ends at byte {offset}, before the archive is complete")]
    Truncated { offset: u64 },
    /// The input breaks the format at byte `offset`.
    #[error("archive is malformed at byte {offset}: {message}")]
    Malformed { offset: u64, message: String },
    /// The input nests directories deeper than [`MAX_DEPTH`].
    #[error("archive is malformed at byte {offset}: directories are nested more than {MAX_DEPTH} deep")]
    TooDeep { offset: u64 },
    /// [`restore`] was asked to overwrite something.
    #[error("cannot restore into {}: it already exists", path.display())]
    DestinationExists { path: PathBuf },
    /// [`restore`] could not create an entry safely.
    #[error(transparent)]
    Unpack(#[from] TreeError),
}

// Rules shared by writer and reader: a name or target the writer refuses
// to encode is one the reader refuses to decode.

fn check_name(name: &[u8]) -> Result<(), String> {
    let reason = match name {
        b"" => "names must not be empty",
        b"." | b".." => "names must not be '.' or '..'",
        _ if name.contains(&b'/') => "names must not contain '/'",
        _ if name.contains(&0) => "names must not contain NUL",
        _ => return Ok(()),
    };
    Err(format!("invalid entry name '{}': {reason}", show(name)))
}

fn check_target(target: &[u8]) -> Result<(), String> {
    if target.is_empty() {
        Err("symlink target is empty".to_string())
    } else if target.contains(&0) {
        Err(format!("symlink target '{}' contains NUL", show(target)))
    } else {
        Ok(())
    }
}

/// Shows untrusted bytes in a message: escaped, and cut short if long.
pub(crate) fn show(bytes: &[u8]) -> String {
    const LIMIT: usize = 64;
    let shown = bytes[..bytes.len().min(LIMIT)].escape_ascii().to_string();
    if bytes.len() > LIMIT {
        format!("{shown}…")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::fixtures::*;
    use super::*;
    #[test]
    fn golden_regular_file() {
        let scratch = Scratch::new("golden-regular");
        let golden = golden_file();
        assert_eq!(golden.len(), 120);
        assert_eq!(encoded(&regular(false, b"hello")), golden);
        let path = scratch.join("file");
        write_file(&path, b"hello", 0o644);
        assert_archive(&path, &golden, &scratch);
    }

    #[test]
    fn golden_executable_file() {
        let scratch = Scratch::new("golden-executable");
        let golden = golden_executable();
        assert_eq!(encoded(&regular(true, b"hello")), golden);
        let path = scratch.join("tool");
        write_file(&path, b"hello", 0o755);
        assert_archive(&path, &golden, &scratch);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn golden_symlink_node() {
        let scratch = Scratch::new("golden-symlink");
        let golden = golden_symlink();
        assert_eq!(encoded(&Node::Symlink { target: b"../a/b".to_vec() }), golden);
        let path = scratch.join("link");
        symlink("../a/b", &path).unwrap();
        assert_archive(&path, &golden, &scratch);
    }

    #[test]
    fn golden_directory_node() {
        let scratch = Scratch::new("golden-directory");
        let golden = golden_directory();
        let entries = BTreeMap::from([
            (b"b".to_vec(), Node::Symlink { target: b"a".to_vec() }),
            (b"a".to_vec(), regular(false, b"hello")),
        ]);
        assert_eq!(encoded(&Node::Directory(entries)), golden);
        let dir = scratch.join("dir");
        fs::create_dir(&dir).unwrap();
        symlink("a", dir.join("b")).unwrap();
        write_file(&dir.join("a"), b"hello", 0o644);
        assert_archive(&dir, &golden, &scratch);
    }
}
