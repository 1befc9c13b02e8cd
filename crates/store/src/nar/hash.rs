//! Hashing a tree on disk: its archive's BLAKE3 digest and size, computed
//! in parallel and without writing the archive out ([`hash_path`]), or from
//! a single file's bytes as they are written ([`FileHasher`]); and the
//! archive's SHA-256, Nix's `narHash` ([`sha256`]).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode};

use super::disk::{dump_path, io_error, read_error, walk_path, PathFilter, PieceSink, KEEP_ALL};
use super::writer::{magic_token, push_regular_end, push_regular_start, ByteSink};
use super::NarError;

/// Bytes of archive that [`hash_path`] hashes as one task (a power of two, at least a BLAKE3 chunk).
const LEAF_LEN: u64 = 1 << 20;

// BLAKE3 is a tree hash: the input is cut into 1 KiB chunks, and the digest is
// the root of a binary tree over them whose shape depends only on the input
// length. So any power-of-two aligned stretch of the archive can be hashed on
// its own (to a "chaining value") and the results merged, as long as the
// stretches follow that shape. `hash_path` therefore first walks the tree,
// recording the archive as a list of pieces (header bytes, and references to
// files with their sizes); it then splits the whole archive as BLAKE3's tree
// does, down to leaves of `LEAF_LEN` bytes, and hashes the leaves in parallel
// with rayon, each leaf reading its slice of headers and file contents itself
// (positioned reads, so a large file is read by many leaves at once). The
// digest is exactly that of hashing the stream serially; memory is one leaf
// buffer per worker thread plus the piece list; reading and hashing both run
// on every core. This uses blake3's `hazmat` module, not its `rayon` feature.

/// A stretch of an archive: encoded bytes, or the contents of a file.
enum Piece {
    Bytes(Vec<u8>),
    File { path: PathBuf, len: u64 },
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(bytes) => bytes.len() as u64,
            Piece::File { len, .. } => *len,
        }
    }
}

/// An archive as a list of non-empty pieces and the offset where each starts.
#[derive(Default)]
struct PieceList {
    pieces: Vec<Piece>,
    starts: Vec<u64>,
    len: u64,
}

impl PieceList {
    fn push(&mut self, piece: Piece) {
        self.starts.push(self.len);
        self.len += piece.len();
        self.pieces.push(piece);
    }

    /// Reads the archive bytes `start..start + len`.
    fn read(&self, start: u64, len: u64) -> Result<Vec<u8>, NarError> {
        let mut out = vec![0; len as usize];
        let mut index = self.starts.partition_point(|&s| s <= start) - 1;
        let mut filled = 0;
        while filled < out.len() {
            let piece = &self.pieces[index];
            let within = start + filled as u64 - self.starts[index];
            let n = (piece.len() - within).min((out.len() - filled) as u64) as usize;
            let dest = &mut out[filled..filled + n];
            match piece {
                Piece::Bytes(bytes) => dest.copy_from_slice(&bytes[within as usize..within as usize + n]),
                Piece::File { path, .. } => {
                    let file = File::open(path).map_err(io_error(path))?;
                    file.read_exact_at(dest, within).map_err(read_error(path))?;
                }
            }
            filled += n;
            index += 1;
        }
        Ok(out)
    }
}

impl ByteSink for PieceList {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), NarError> {
        if let Some(Piece::Bytes(last)) = self.pieces.last_mut() {
            last.extend_from_slice(bytes);
            self.len += bytes.len() as u64;
        } else if !bytes.is_empty() {
            self.push(Piece::Bytes(bytes.to_vec()));
        }
        Ok(())
    }
}

impl PieceSink for PieceList {
    fn file(&mut self, path: &Path, len: u64) -> Result<(), NarError> {
        if len > 0 {
            self.push(Piece::File { path: path.to_path_buf(), len });
        }
        Ok(())
    }
}

/// Returns the BLAKE3 digest and size of the archive of the tree at `path`.
///
/// The digest equals hashing [`dump_path`]'s output; files are read and
/// hashed in parallel (see the strategy above).
pub fn hash_path(path: &Path) -> Result<(blake3::Hash, u64), NarError> {
    hash_path_filtered(path, KEEP_ALL)
}

/// [`hash_path`] of only the entries `filter` keeps (see [`dump_path_filtered`]).
pub fn hash_path_filtered(path: &Path, filter: PathFilter) -> Result<(blake3::Hash, u64), NarError> {
    let mut pieces = PieceList::default();
    pieces.bytes(&magic_token())?;
    walk_path(path, filter, &mut pieces)?;
    Ok((hash_pieces(&pieces, LEAF_LEN)?, pieces.len))
}

/// The SHA-256 of the archive of the tree at `path`: Nix's `narHash`, as
/// `fetchTarball` reports it and `builtins.path` checks it.
pub fn sha256(path: &Path) -> Result<[u8; 32], NarError> {
    sha256_sized(path).map(|(hash, _)| hash)
}

/// [`sha256`], and the archive's size: a REAPI digest of the archive.
pub fn sha256_sized(path: &Path) -> Result<([u8; 32], u64), NarError> {
    let mut digest = sha2::Sha256::default();
    let size = dump_path(path, &mut digest)?;
    Ok((sha2::Digest::finalize(digest).into(), size))
}

/// Hashes the whole archive, splitting it into leaves of at most `leaf_len` bytes.
fn hash_pieces(pieces: &PieceList, leaf_len: u64) -> Result<blake3::Hash, NarError> {
    if pieces.len <= leaf_len {
        return Ok(blake3::hash(&pieces.read(0, pieces.len)?));
    }
    let (left, right) = hash_children(pieces, 0, pieces.len, leaf_len)?;
    Ok(merge_subtrees_root(&left, &right, Mode::Hash))
}

/// The chaining value of the BLAKE3 subtree over archive bytes `start..start + len`.
fn hash_subtree(pieces: &PieceList, start: u64, len: u64, leaf_len: u64) -> Result<ChainingValue, NarError> {
    if len <= leaf_len {
        let bytes = pieces.read(start, len)?;
        return Ok(blake3::Hasher::new().set_input_offset(start).update(&bytes).finalize_non_root());
    }
    let (left, right) = hash_children(pieces, start, len, leaf_len)?;
    Ok(merge_subtrees_non_root(&left, &right, Mode::Hash))
}

/// Hashes the two children of a subtree in parallel, split where BLAKE3 splits it.
fn hash_children(
    pieces: &PieceList,
    start: u64,
    len: u64,
    leaf_len: u64,
) -> Result<(ChainingValue, ChainingValue), NarError> {
    let left_len = left_subtree_len(len);
    let (left, right) = rayon::join(
        || hash_subtree(pieces, start, left_len, leaf_len),
        || hash_subtree(pieces, start + left_len, len - left_len, leaf_len),
    );
    Ok((left?, right?))
}

/// The archive hash of a single regular file, computed from its bytes as
/// they are written instead of read back afterwards: a writer that makes
/// a large file in one pass (the image builder's docker-archive) feeds
/// it the same bytes, in order. The file's length is part of the archive
/// before its contents, so it must be known up front; [`FileHasher::finish`]
/// checks that exactly that many bytes came.
pub struct FileHasher {
    hasher: blake3::Hasher,
    /// Archive bytes before the contents.
    start_len: u64,
    len: u64,
    seen: u64,
}

impl FileHasher {
    /// The archive size of a regular file of `len` bytes.
    pub fn archive_len(executable: bool, len: u64) -> u64 {
        let mut start = magic_token();
        push_regular_start(&mut start, executable, len);
        let mut end = Vec::new();
        push_regular_end(&mut end, len);
        start.len() as u64 + len + end.len() as u64
    }

    pub fn new(executable: bool, len: u64) -> FileHasher {
        let mut start = magic_token();
        push_regular_start(&mut start, executable, len);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&start);
        FileHasher { hasher, start_len: start.len() as u64, len, seen: 0 }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.seen += bytes.len() as u64;
    }

    /// The archive's hash and size, as [`hash_path`] gives them for the
    /// finished file; `None` if the bytes seen were not the length announced.
    pub fn finish(mut self) -> Option<(blake3::Hash, u64)> {
        if self.seen != self.len {
            return None;
        }
        let mut end = Vec::new();
        push_regular_end(&mut end, self.len);
        self.hasher.update(&end);
        Some((self.hasher.finalize(), self.start_len + self.len + end.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use sha2::Digest;

    use super::super::fixtures::*;
    use super::super::{restore, validate};
    use super::*;

    #[test]
    fn sha256_is_of_the_archive() {
        let scratch = Scratch::new("sha256");
        let path = scratch.join("file");
        write_file(&path, b"hello", 0o644);
        assert_eq!(sha256(&path).unwrap(), <[u8; 32]>::from(sha2::Sha256::digest(golden_file())));
    }

    #[test]
    fn a_file_hashed_as_written_hashes_as_read_back() {
        let dir = std::env::temp_dir().join(format!("mini-filehasher-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (len, executable) in [(0usize, false), (5, true), (3 << 20 | 7, false)] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let path = dir.join("f");
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, &bytes).unwrap();
            let mode = if executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let mut hasher = FileHasher::new(executable, len as u64);
            for piece in bytes.chunks(4096 + 3) {
                hasher.update(piece);
            }
            assert_eq!(hasher.finish(), Some(hash_path(&path).unwrap()));
        }
        let mut short = FileHasher::new(false, 10);
        short.update(b"123");
        assert_eq!(short.finish(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trip_and_parallel_hash() {
        let scratch = Scratch::new("round-trip");
        let tree = scratch.join("tree");
        build_tree(&tree);
        let archive = dump(&tree);
        assert!(archive.len() > 3 << 20);
        assert_eq!(hash_path(&tree).unwrap(), (blake3::hash(&archive), archive.len() as u64));
        assert_eq!(validate(&mut &archive[..]).unwrap(), archive.len() as u64);

        let restored = scratch.join("restored");
        restore(&mut &archive[..], &restored).unwrap();
        assert_eq!(dump(&restored), archive);
        let mode = |rel: &str| fs::symlink_metadata(restored.join(rel)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("bin/tool"), 0o755);
        assert_eq!(mode("empty-file"), 0o644);
        assert_eq!(mode("empty-dir"), 0o755);
        assert_eq!(fs::read_link(restored.join("link-absolute")).unwrap(), Path::new("/nonexistent/absolute/target"));
    }

    #[test]
    fn tree_hash_matches_serial_hash_at_every_leaf_size() {
        let scratch = Scratch::new("leaf-sizes");
        let tree = scratch.join("tree");
        fs::create_dir(&tree).unwrap();
        for i in 0..60 {
            write_file(&tree.join(format!("f{i:02}")), &noise(i * i * 13 % 5000, i as u64 + 3), 0o644);
        }
        let archive = dump(&tree);
        let mut pieces = PieceList::default();
        pieces.bytes(&magic_token()).unwrap();
        walk_path(&tree, KEEP_ALL, &mut pieces).unwrap();
        assert_eq!(pieces.len, archive.len() as u64);
        for leaf_len in [1024, 2048, 4096, 1 << 16, 1 << 20] {
            assert_eq!(hash_pieces(&pieces, leaf_len).unwrap(), blake3::hash(&archive), "leaf {leaf_len}");
        }
        for len in [1, 1023, 1024, 1025, 2048, 2049, 3072, 4095, 4096, 4097, 9000, 65536, 65537] {
            let mut pieces = PieceList::default();
            let bytes = noise(len, len as u64);
            pieces.bytes(&bytes).unwrap();
            assert_eq!(hash_pieces(&pieces, 1024).unwrap(), blake3::hash(&bytes), "length {len}");
        }
    }
}
