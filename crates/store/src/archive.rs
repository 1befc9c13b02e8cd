//! The canonical archive: one byte string per file tree, byte for byte Nix's
//! NAR format.
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
//! [`encode`] and [`validate`] are pure. [`dump_path`], [`hash_path`] (and
//! their `_filtered` forms, which leave out entries a [`PathFilter`]
//! refuses) and [`restore`] are the only bridges between a tree on disk and
//! its archive.

use std::ffi::OsString;
use std::fs::{self, File, FileType};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::tree_writer::{Dir, TreeError};

use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode};
use thiserror::Error;

/// The first token of every archive.
pub const MAGIC: &str = "nix-archive-1";
/// The most directories that may be nested inside one another, the root included.
pub const MAX_DEPTH: usize = 256;
/// The longest name, symlink target or tag a reader accepts (file contents are unbounded).
pub const MAX_TOKEN_LEN: u64 = 4096;

/// Contents longer than this cannot be a file (`off_t` is signed), so the length is corrupt.
const MAX_CONTENTS_LEN: u64 = i64::MAX as u64;
/// The encoded `")"` token, which closes nodes and entries.
const CLOSE: [u8; 16] = [1, 0, 0, 0, 0, 0, 0, 0, b')', 0, 0, 0, 0, 0, 0, 0];
/// Size of the buffers that file contents stream through.
const COPY_LEN: usize = 256 * 1024;
/// How many encoded header bytes a writer gathers before passing them on.
const PENDING_LEN: usize = 64 * 1024;
/// Bytes of archive that [`hash_path`] hashes as one task (a power of two, at least a BLAKE3 chunk).
const LEAF_LEN: u64 = 1 << 20;

/// Why a tree could not be archived, hashed or restored.
#[derive(Debug, Error)]
pub enum ArchiveError {
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

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_path_buf(), source }
}

/// Like [`io_error`], but a file that ends early has shrunk since it was measured.
fn read_error(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| match source.kind() {
        io::ErrorKind::UnexpectedEof => ArchiveError::FileChanged { path: path.to_path_buf() },
        _ => ArchiveError::Io { path: path.to_path_buf(), source },
    }
}

fn write_error(source: io::Error) -> ArchiveError {
    ArchiveError::Write { source }
}

// ---------------------------------------------------------------------------
// Encoding

/// A file tree held in memory, for archiving content that is not on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file.
    Regular { executable: bool, contents: Vec<u8> },
    /// A symbolic link; the target is stored, never followed.
    Symlink { target: Vec<u8> },
    /// A directory; the map keeps entry names sorted and unique.
    Directory(std::collections::BTreeMap<Vec<u8>, Node>),
}

/// Writes the archive of `node` to `out` and returns its size in bytes.
pub fn encode(node: &Node, out: &mut impl Write) -> Result<u64, ArchiveError> {
    let mut sink = WriteSink::new(out);
    sink.bytes(&magic_token())?;
    encode_node(node, 0, &mut sink)?;
    sink.finish()
}

fn encode_node(node: &Node, depth: usize, sink: &mut impl PieceSink) -> Result<(), ArchiveError> {
    let mut header = Vec::new();
    match node {
        Node::Regular { executable, contents } => {
            let len = contents.len() as u64;
            push_regular_start(&mut header, *executable, len);
            sink.bytes(&header)?;
            sink.bytes(contents)?;
            header.clear();
            push_regular_end(&mut header, len);
            sink.bytes(&header)
        }
        Node::Symlink { target } => {
            check_target(target).map_err(|message| ArchiveError::InvalidTree { message })?;
            push_symlink(&mut header, target);
            sink.bytes(&header)
        }
        Node::Directory(entries) => {
            if depth >= MAX_DEPTH {
                let message = format!("directories are nested more than {MAX_DEPTH} deep");
                return Err(ArchiveError::InvalidTree { message });
            }
            push_directory_start(&mut header);
            sink.bytes(&header)?;
            for (name, child) in entries {
                check_name(name).map_err(|message| ArchiveError::InvalidTree { message })?;
                header.clear();
                push_entry_start(&mut header, name);
                sink.bytes(&header)?;
                encode_node(child, depth + 1, sink)?;
                sink.bytes(&CLOSE)?;
            }
            sink.bytes(&CLOSE)
        }
    }
}

fn push_token(buf: &mut Vec<u8>, token: &[u8]) {
    buf.extend_from_slice(&(token.len() as u64).to_le_bytes());
    buf.extend_from_slice(token);
    buf.extend_from_slice(padding(token.len() as u64));
}

fn push_tokens(buf: &mut Vec<u8>, tokens: &[&str]) {
    for token in tokens {
        push_token(buf, token.as_bytes());
    }
}

/// The zero bytes that follow `len` bytes of token to reach a multiple of 8.
fn padding(len: u64) -> &'static [u8] {
    &[0; 8][..padding_len(len)]
}

fn padding_len(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

fn magic_token() -> Vec<u8> {
    let mut buf = Vec::new();
    push_token(&mut buf, MAGIC.as_bytes());
    buf
}

/// Everything of a regular file up to its contents, including their length.
fn push_regular_start(buf: &mut Vec<u8>, executable: bool, len: u64) {
    push_tokens(buf, &["(", "type", "regular"]);
    if executable {
        push_tokens(buf, &["executable", ""]);
    }
    push_token(buf, b"contents");
    buf.extend_from_slice(&len.to_le_bytes());
}

/// Everything of a regular file after its `len` bytes of contents.
fn push_regular_end(buf: &mut Vec<u8>, len: u64) {
    buf.extend_from_slice(padding(len));
    buf.extend_from_slice(&CLOSE);
}

fn push_symlink(buf: &mut Vec<u8>, target: &[u8]) {
    push_tokens(buf, &["(", "type", "symlink", "target"]);
    push_token(buf, target);
    buf.extend_from_slice(&CLOSE);
}

fn push_directory_start(buf: &mut Vec<u8>) {
    push_tokens(buf, &["(", "type", "directory"]);
}

/// An entry up to its node; the entry is closed by [`CLOSE`] after the node.
fn push_entry_start(buf: &mut Vec<u8>, name: &[u8]) {
    push_tokens(buf, &["entry", "(", "name"]);
    push_token(buf, name);
    push_token(buf, b"node");
}

/// Receives an archive as it is produced, in stream order: encoded bytes, and
/// the contents of files on disk by reference.
trait PieceSink {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), ArchiveError>;
    fn file(&mut self, path: &Path, len: u64) -> Result<(), ArchiveError>;
}

/// Streams pieces to a writer, gathering small header writes into one.
struct WriteSink<'w, W: Write> {
    out: &'w mut W,
    pending: Vec<u8>,
    copy_buf: Vec<u8>,
    written: u64,
}

impl<'w, W: Write> WriteSink<'w, W> {
    fn new(out: &'w mut W) -> Self {
        WriteSink { out, pending: Vec::with_capacity(PENDING_LEN), copy_buf: Vec::new(), written: 0 }
    }

    fn flush_pending(&mut self) -> Result<(), ArchiveError> {
        self.out.write_all(&self.pending).map_err(write_error)?;
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<u64, ArchiveError> {
        self.flush_pending()?;
        self.out.flush().map_err(write_error)?;
        Ok(self.written)
    }
}

impl<W: Write> PieceSink for WriteSink<'_, W> {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.written += bytes.len() as u64;
        if self.pending.len() + bytes.len() <= PENDING_LEN {
            self.pending.extend_from_slice(bytes);
            return Ok(());
        }
        self.flush_pending()?;
        if bytes.len() <= PENDING_LEN {
            self.pending.extend_from_slice(bytes);
            Ok(())
        } else {
            self.out.write_all(bytes).map_err(write_error)
        }
    }

    /// Copies exactly `len` bytes (the size the walk measured) in bounded chunks.
    fn file(&mut self, path: &Path, len: u64) -> Result<(), ArchiveError> {
        self.flush_pending()?;
        let mut file = File::open(path).map_err(io_error(path))?;
        self.copy_buf.resize(COPY_LEN, 0);
        let mut remaining = len;
        while remaining > 0 {
            let chunk = &mut self.copy_buf[..remaining.min(COPY_LEN as u64) as usize];
            file.read_exact(chunk).map_err(read_error(path))?;
            self.out.write_all(chunk).map_err(write_error)?;
            remaining -= chunk.len() as u64;
        }
        self.written += len;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Trees on disk

/// Which entries of a tree go into its archive: called with each entry's
/// path relative to the archived root (never with the root itself) and
/// whether it is a directory (a symlink never is). A refused entry is left
/// out with everything below it, as if it were not on disk.
pub type PathFilter<'a> = &'a (dyn Fn(&Path, bool) -> bool + Sync);

/// The filter that keeps everything.
pub const KEEP_ALL: PathFilter<'static> = &|_, _| true;

/// Writes the archive of the tree at `path` to `out` and returns its size in bytes.
///
/// Symlinks are stored, never followed; a file is executable if any of its
/// execute bits is set; times, owners and other mode bits are ignored. File
/// contents are streamed, and a file is archived with the size it had when
/// its directory was read (a file that shrinks meanwhile is an error).
pub fn dump_path(path: &Path, out: &mut impl Write) -> Result<u64, ArchiveError> {
    dump_path_filtered(path, KEEP_ALL, out)
}

/// [`dump_path`] of only the entries `filter` keeps: the archive of the
/// tree that would remain if the others were deleted.
pub fn dump_path_filtered(path: &Path, filter: PathFilter, out: &mut impl Write) -> Result<u64, ArchiveError> {
    let mut sink = WriteSink::new(out);
    sink.bytes(&magic_token())?;
    walk_path(path, filter, &mut sink)?;
    sink.finish()
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

/// Emits the archive of the tree at `path`, keeping what `filter` keeps.
fn walk_path(path: &Path, filter: PathFilter, sink: &mut impl PieceSink) -> Result<(), ArchiveError> {
    let metadata = fs::symlink_metadata(path).map_err(io_error(path))?;
    walk_node(path, &metadata, &mut PathBuf::new(), 0, filter, sink)
}

/// Emits the archive of the node at `path` (`relative` to the archived
/// root), inside `depth` directories.
fn walk_node(
    path: &Path,
    metadata: &fs::Metadata,
    relative: &mut PathBuf,
    depth: usize,
    filter: PathFilter,
    sink: &mut impl PieceSink,
) -> Result<(), ArchiveError> {
    let file_type = metadata.file_type();
    let mut header = Vec::new();
    if file_type.is_file() {
        let len = metadata.len();
        push_regular_start(&mut header, metadata.permissions().mode() & 0o111 != 0, len);
        sink.bytes(&header)?;
        sink.file(path, len)?;
        header.clear();
        push_regular_end(&mut header, len);
        sink.bytes(&header)
    } else if file_type.is_symlink() {
        let target = fs::read_link(path).map_err(io_error(path))?;
        push_symlink(&mut header, target.as_os_str().as_bytes());
        sink.bytes(&header)
    } else if file_type.is_dir() {
        if depth >= MAX_DEPTH {
            return Err(ArchiveError::TreeTooDeep { path: path.to_path_buf() });
        }
        push_directory_start(&mut header);
        sink.bytes(&header)?;
        for name in sorted_entries(path)? {
            let child = path.join(&name);
            let child_metadata = fs::symlink_metadata(&child).map_err(io_error(&child))?;
            relative.push(&name);
            if filter(relative, child_metadata.is_dir()) {
                header.clear();
                push_entry_start(&mut header, name.as_bytes());
                sink.bytes(&header)?;
                walk_node(&child, &child_metadata, relative, depth + 1, filter, sink)?;
                sink.bytes(&CLOSE)?;
            }
            relative.pop();
        }
        sink.bytes(&CLOSE)
    } else {
        Err(ArchiveError::UnsupportedFileType { path: path.to_path_buf(), kind: kind_name(file_type) })
    }
}

/// The names in directory `path`, sorted by their bytes.
fn sorted_entries(path: &Path) -> Result<Vec<OsString>, ArchiveError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path).map_err(io_error(path))? {
        names.push(entry.map_err(io_error(path))?.file_name());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn kind_name(file_type: FileType) -> &'static str {
    if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_char_device() {
        "character device"
    } else {
        "file of unknown type"
    }
}

// ---------------------------------------------------------------------------
// Parallel hashing
//
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
    fn read(&self, start: u64, len: u64) -> Result<Vec<u8>, ArchiveError> {
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

impl PieceSink for PieceList {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        if let Some(Piece::Bytes(last)) = self.pieces.last_mut() {
            last.extend_from_slice(bytes);
            self.len += bytes.len() as u64;
        } else if !bytes.is_empty() {
            self.push(Piece::Bytes(bytes.to_vec()));
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, len: u64) -> Result<(), ArchiveError> {
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
pub fn hash_path(path: &Path) -> Result<(blake3::Hash, u64), ArchiveError> {
    hash_path_filtered(path, KEEP_ALL)
}

/// [`hash_path`] of only the entries `filter` keeps (see [`dump_path_filtered`]).
pub fn hash_path_filtered(path: &Path, filter: PathFilter) -> Result<(blake3::Hash, u64), ArchiveError> {
    let mut pieces = PieceList::default();
    pieces.bytes(&magic_token())?;
    walk_path(path, filter, &mut pieces)?;
    Ok((hash_pieces(&pieces, LEAF_LEN)?, pieces.len))
}

/// Hashes the whole archive, splitting it into leaves of at most `leaf_len` bytes.
fn hash_pieces(pieces: &PieceList, leaf_len: u64) -> Result<blake3::Hash, ArchiveError> {
    if pieces.len <= leaf_len {
        return Ok(blake3::hash(&pieces.read(0, pieces.len)?));
    }
    let (left, right) = hash_children(pieces, 0, pieces.len, leaf_len)?;
    Ok(merge_subtrees_root(&left, &right, Mode::Hash))
}

/// The chaining value of the BLAKE3 subtree over archive bytes `start..start + len`.
fn hash_subtree(pieces: &PieceList, start: u64, len: u64, leaf_len: u64) -> Result<ChainingValue, ArchiveError> {
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
) -> Result<(ChainingValue, ChainingValue), ArchiveError> {
    let left_len = left_subtree_len(len);
    let (left, right) = rayon::join(
        || hash_subtree(pieces, start, left_len, leaf_len),
        || hash_subtree(pieces, start + left_len, len - left_len, leaf_len),
    );
    Ok((left?, right?))
}

// ---------------------------------------------------------------------------
// Parsing

/// Checks that `input` holds exactly one well-formed archive and returns its size.
pub fn validate(input: &mut impl Read) -> Result<u64, ArchiveError> {
    Parser::new(input, &mut Discard).run()
}

/// Recreates the tree archived in `input` at `dest`, which must not exist.
///
/// Files get mode 0644, or 0755 if executable; directories 0755. The input is
/// checked as [`validate`] does. Everything is created relative to a handle
/// on `dest`'s parent with [`crate::tree_writer`], so nothing is written
/// through a link, even one swapped in while restoring. On error, what was
/// created at `dest` is removed (best effort); since a crash can still leave
/// a partial tree, callers restore into a temporary directory and rename the
/// result into place, as the store does.
pub fn restore(input: &mut impl Read, dest: &Path) -> Result<(), ArchiveError> {
    match fs::symlink_metadata(dest) {
        Ok(_) => return Err(ArchiveError::DestinationExists { path: dest.to_path_buf() }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_error(dest)(err)),
    }
    let name = match dest.file_name() {
        Some(name) => name.as_bytes().to_vec(),
        None => return Err(ArchiveError::DestinationExists { path: dest.to_path_buf() }),
    };
    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut sink = DiskSink { parent: Dir::open(parent)?, open: Vec::new(), name, created: false };
    let result = Parser::new(input, &mut sink).run();
    if result.is_err() && sink.created {
        remove_tree(dest);
    }
    result.map(drop)
}

fn remove_tree(path: &Path) {
    // Best effort: the caller's error matters more than a failure to clean up.
    // `remove_dir_all` does not follow links.
    let _ = match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(path),
        _ => fs::remove_file(path),
    };
}

/// What the parser reports, in archive order, once each part is known valid.
trait EventSink {
    /// Where the contents of the current regular file go.
    type File;
    fn directory(&mut self) -> Result<(), ArchiveError>;
    fn regular(&mut self, executable: bool) -> Result<Self::File, ArchiveError>;
    fn contents(&mut self, file: &mut Self::File, chunk: &[u8]) -> Result<(), ArchiveError>;
    fn symlink(&mut self, target: &[u8]) -> Result<(), ArchiveError>;
    /// The current directory's entries are complete.
    fn end_directory(&mut self);
    /// The next node is the entry `name` of the current directory.
    fn enter(&mut self, name: &[u8]);
}

/// Accepts every event and keeps nothing.
struct Discard;

impl EventSink for Discard {
    type File = ();
    fn directory(&mut self) -> Result<(), ArchiveError> {
        Ok(())
    }
    fn regular(&mut self, _executable: bool) -> Result<(), ArchiveError> {
        Ok(())
    }
    fn contents(&mut self, _file: &mut (), _chunk: &[u8]) -> Result<(), ArchiveError> {
        Ok(())
    }
    fn symlink(&mut self, _target: &[u8]) -> Result<(), ArchiveError> {
        Ok(())
    }
    fn end_directory(&mut self) {}
    fn enter(&mut self, _name: &[u8]) {}
}

/// Creates each node through directory handles (see [`crate::tree_writer`]).
struct DiskSink {
    /// The directory `dest` is created in.
    parent: Dir,
    /// The directories being filled, outermost (`dest` itself) first.
    open: Vec<Dir>,
    /// The name of the next node, in the innermost open directory.
    name: Vec<u8>,
    /// Whether anything exists at the destination that this sink made.
    created: bool,
}

impl DiskSink {
    fn here(&self) -> &Dir {
        self.open.last().unwrap_or(&self.parent)
    }
}

impl EventSink for DiskSink {
    type File = File;

    fn directory(&mut self) -> Result<(), ArchiveError> {
        let dir = self.here().create_dir(&self.name, 0o755)?;
        self.created = true;
        self.open.push(dir);
        Ok(())
    }

    fn end_directory(&mut self) {
        self.open.pop();
    }

    fn regular(&mut self, executable: bool) -> Result<File, ArchiveError> {
        let file = self.here().create_file(&self.name, if executable { 0o755 } else { 0o644 })?;
        self.created = true;
        Ok(file)
    }

    fn contents(&mut self, file: &mut File, chunk: &[u8]) -> Result<(), ArchiveError> {
        file.write_all(chunk).map_err(|source| ArchiveError::Io { path: self.here().path_of(&self.name), source })
    }

    fn symlink(&mut self, target: &[u8]) -> Result<(), ArchiveError> {
        self.here().symlink(&self.name, target)?;
        self.created = true;
        Ok(())
    }

    fn enter(&mut self, name: &[u8]) {
        self.name.clear();
        self.name.extend_from_slice(name);
    }
}

/// Reads tokens, counting the offset for error messages.
struct TokenReader<R> {
    input: R,
    offset: u64,
}

impl<R: Read> TokenReader<R> {
    /// Fills `buf` completely, or reports where the input ended.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), ArchiveError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) => return Err(ArchiveError::Truncated { offset: self.offset }),
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(ArchiveError::Read { offset: self.offset, source }),
            }
        }
        Ok(())
    }

    fn read_len(&mut self) -> Result<u64, ArchiveError> {
        let mut bytes = [0; 8];
        self.fill(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn skip_padding(&mut self, len: u64) -> Result<(), ArchiveError> {
        let mut pad = [0; 8];
        let pad = &mut pad[..padding_len(len)];
        let start = self.offset;
        self.fill(pad)?;
        match pad.iter().position(|&b| b != 0) {
            Some(i) => Err(malformed(start + i as u64, "padding is not zero".to_string())),
            None => Ok(()),
        }
    }

    /// Reads a token other than file contents; returns its offset and bytes.
    fn read_token(&mut self) -> Result<(u64, Vec<u8>), ArchiveError> {
        let start = self.offset;
        let len = self.read_len()?;
        if len > MAX_TOKEN_LEN {
            return Err(malformed(
                start,
                format!("a token of {len} bytes is longer than the limit of {MAX_TOKEN_LEN}"),
            ));
        }
        let mut token = vec![0; len as usize];
        self.fill(&mut token)?;
        self.skip_padding(len)?;
        Ok((start, token))
    }

    fn expect(&mut self, tag: &str) -> Result<(), ArchiveError> {
        let (start, token) = self.read_token()?;
        if token == tag.as_bytes() {
            Ok(())
        } else {
            Err(malformed(start, format!("expected '{tag}', found '{}'", show(&token))))
        }
    }

    /// Fails unless the input has ended.
    fn expect_end(&mut self) -> Result<(), ArchiveError> {
        let mut byte = [0; 1];
        loop {
            match self.input.read(&mut byte) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(malformed(self.offset, "unexpected data after the end of the archive".to_string()))
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(ArchiveError::Read { offset: self.offset, source }),
            }
        }
    }
}

fn malformed(offset: u64, message: String) -> ArchiveError {
    ArchiveError::Malformed { offset, message }
}

/// The archive grammar, read iteratively: open directories live on an
/// explicit stack, so hostile nesting cannot exhaust the call stack.
struct Parser<'s, R, S> {
    tokens: TokenReader<BufReader<R>>,
    sink: &'s mut S,
}

impl<'s, R: Read, S: EventSink> Parser<'s, R, S> {
    fn new(input: R, sink: &'s mut S) -> Self {
        Parser { tokens: TokenReader { input: BufReader::with_capacity(COPY_LEN, input), offset: 0 }, sink }
    }

    /// Parses the whole input and returns the archive's size.
    fn run(mut self) -> Result<u64, ArchiveError> {
        self.tokens.expect(MAGIC)?;
        // For each open directory, the name of its last entry so far.
        let mut open: Vec<Option<Vec<u8>>> = Vec::new();
        if self.node(0)? {
            open.push(None);
        }
        while let Some(last) = open.last() {
            let (start, token) = self.tokens.read_token()?;
            match token.as_slice() {
                b")" => {
                    open.pop();
                    self.sink.end_directory();
                    if !open.is_empty() {
                        self.close_entry()?;
                    }
                }
                b"entry" => {
                    let name = self.entry_name(last.as_deref())?;
                    self.tokens.expect("node")?;
                    self.sink.enter(&name);
                    if let Some(last) = open.last_mut() {
                        *last = Some(name);
                    }
                    if self.node(open.len())? {
                        open.push(None);
                    } else {
                        self.close_entry()?;
                    }
                }
                _ => return Err(malformed(start, format!("expected 'entry' or ')', found '{}'", show(&token)))),
            }
        }
        self.tokens.expect_end()?;
        Ok(self.tokens.offset)
    }

    /// Reads `"(" "name" <name>` and checks the name against the previous one.
    fn entry_name(&mut self, previous: Option<&[u8]>) -> Result<Vec<u8>, ArchiveError> {
        self.tokens.expect("(")?;
        self.tokens.expect("name")?;
        let (start, name) = self.tokens.read_token()?;
        check_name(&name).map_err(|message| malformed(start, message))?;
        match previous {
            Some(previous) if name.as_slice() == previous => {
                Err(malformed(start, format!("duplicate directory entry '{}'", show(&name))))
            }
            Some(previous) if name.as_slice() < previous => Err(malformed(
                start,
                format!("directory entries are not sorted ('{}' after '{}')", show(&name), show(previous)),
            )),
            _ => Ok(name),
        }
    }

    fn close_entry(&mut self) -> Result<(), ArchiveError> {
        self.tokens.expect(")")
    }

    /// Reads a node inside `depth` directories. A file or symlink is read
    /// whole; a directory is only opened, and the result says so.
    fn node(&mut self, depth: usize) -> Result<bool, ArchiveError> {
        self.tokens.expect("(")?;
        self.tokens.expect("type")?;
        let (start, kind) = self.tokens.read_token()?;
        match kind.as_slice() {
            b"regular" => self.regular().map(|()| false),
            b"symlink" => self.symlink().map(|()| false),
            b"directory" if depth >= MAX_DEPTH => Err(ArchiveError::TooDeep { offset: start }),
            b"directory" => self.sink.directory().map(|()| true),
            _ => Err(malformed(start, format!("unknown node type '{}'", show(&kind)))),
        }
    }

    fn regular(&mut self) -> Result<(), ArchiveError> {
        let (mut start, mut token) = self.tokens.read_token()?;
        let executable = token == b"executable";
        if executable {
            let (value_start, value) = self.tokens.read_token()?;
            if !value.is_empty() {
                return Err(malformed(
                    value_start,
                    format!("expected '' after 'executable', found '{}'", show(&value)),
                ));
            }
            (start, token) = self.tokens.read_token()?;
        }
        if token != b"contents" {
            return Err(malformed(start, format!("expected 'contents', found '{}'", show(&token))));
        }
        let mut file = self.sink.regular(executable)?;
        self.contents(&mut file)?;
        self.tokens.expect(")")
    }

    /// Streams a file's contents to the sink in bounded chunks.
    fn contents(&mut self, file: &mut S::File) -> Result<(), ArchiveError> {
        let start = self.tokens.offset;
        let len = self.tokens.read_len()?;
        if len > MAX_CONTENTS_LEN {
            return Err(malformed(start, format!("file length {len} is impossibly large")));
        }
        let mut buf = vec![0; len.min(COPY_LEN as u64) as usize];
        let mut remaining = len;
        while remaining > 0 {
            let chunk = &mut buf[..remaining.min(COPY_LEN as u64) as usize];
            self.tokens.fill(chunk)?;
            self.sink.contents(file, chunk)?;
            remaining -= chunk.len() as u64;
        }
        self.tokens.skip_padding(len)
    }

    fn symlink(&mut self) -> Result<(), ArchiveError> {
        self.tokens.expect("target")?;
        let (start, target) = self.tokens.read_token()?;
        check_target(&target).map_err(|message| malformed(start, message))?;
        self.sink.symlink(&target)?;
        self.tokens.expect(")")
    }
}

// ---------------------------------------------------------------------------
// Rules shared by writer and reader

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

    use crate::testing::{snapshot, Rng};
    use std::collections::BTreeMap;
    use std::fs::Permissions;
    use std::os::unix::fs::symlink;
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, SystemTime};

    use super::*;

    // Golden tokens, written out by hand: length (u64 LE), bytes, zero padding.
    const MAGIC_T: &[u8] = b"\x0d\0\0\0\0\0\0\0nix-archive-1\0\0\0";
    const OPEN_T: &[u8] = b"\x01\0\0\0\0\0\0\0(\0\0\0\0\0\0\0";
    const CLOSE_T: &[u8] = b"\x01\0\0\0\0\0\0\0)\0\0\0\0\0\0\0";
    const TYPE_T: &[u8] = b"\x04\0\0\0\0\0\0\0type\0\0\0\0";
    const REGULAR_T: &[u8] = b"\x07\0\0\0\0\0\0\0regular\0";
    const EXECUTABLE_T: &[u8] = b"\x0a\0\0\0\0\0\0\0executable\0\0\0\0\0\0";
    const EMPTY_T: &[u8] = b"\0\0\0\0\0\0\0\0";
    const CONTENTS_T: &[u8] = b"\x08\0\0\0\0\0\0\0contents";
    const HELLO_T: &[u8] = b"\x05\0\0\0\0\0\0\0hello\0\0\0";
    const SYMLINK_T: &[u8] = b"\x07\0\0\0\0\0\0\0symlink\0";
    const TARGET_T: &[u8] = b"\x06\0\0\0\0\0\0\0target\0\0";
    const UP_TARGET_T: &[u8] = b"\x06\0\0\0\0\0\0\0../a/b\0\0";
    const DIRECTORY_T: &[u8] = b"\x09\0\0\0\0\0\0\0directory\0\0\0\0\0\0\0";
    const ENTRY_T: &[u8] = b"\x05\0\0\0\0\0\0\0entry\0\0\0";
    const NAME_T: &[u8] = b"\x04\0\0\0\0\0\0\0name\0\0\0\0";
    const NODE_T: &[u8] = b"\x04\0\0\0\0\0\0\0node\0\0\0\0";
    const A_T: &[u8] = b"\x01\0\0\0\0\0\0\0a\0\0\0\0\0\0\0";
    const B_T: &[u8] = b"\x01\0\0\0\0\0\0\0b\0\0\0\0\0\0\0";

    fn golden_file() -> Vec<u8> {
        [MAGIC_T, OPEN_T, TYPE_T, REGULAR_T, CONTENTS_T, HELLO_T, CLOSE_T].concat()
    }

    fn golden_executable() -> Vec<u8> {
        [MAGIC_T, OPEN_T, TYPE_T, REGULAR_T, EXECUTABLE_T, EMPTY_T, CONTENTS_T, HELLO_T, CLOSE_T].concat()
    }

    fn golden_symlink() -> Vec<u8> {
        [MAGIC_T, OPEN_T, TYPE_T, SYMLINK_T, TARGET_T, UP_TARGET_T, CLOSE_T].concat()
    }

    /// A directory holding file `a` ("hello") and symlink `b` -> `a`.
    fn golden_directory() -> Vec<u8> {
        [
            &[MAGIC_T, OPEN_T, TYPE_T, DIRECTORY_T][..],
            &[ENTRY_T, OPEN_T, NAME_T, A_T, NODE_T, OPEN_T, TYPE_T, REGULAR_T, CONTENTS_T, HELLO_T, CLOSE_T, CLOSE_T],
            &[ENTRY_T, OPEN_T, NAME_T, B_T, NODE_T, OPEN_T, TYPE_T, SYMLINK_T, TARGET_T, A_T, CLOSE_T, CLOSE_T],
            &[CLOSE_T],
        ]
        .concat()
        .concat()
    }

    /// A fresh directory for one test, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("mini-archive-{}-{test}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn join(&self, rel: &str) -> PathBuf {
            self.0.join(rel)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn write_file(path: &Path, contents: &[u8], mode: u32) {
        fs::write(path, contents).unwrap();
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    fn dump(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        let len = dump_path(path, &mut out).unwrap();
        assert_eq!(len, out.len() as u64);
        out
    }

    /// Checks every way of producing an archive for the tree at `path` against `golden`.
    fn assert_archive(path: &Path, golden: &[u8], scratch: &Scratch) {
        assert_eq!(dump(path), golden);
        assert_eq!(hash_path(path).unwrap(), (blake3::hash(golden), golden.len() as u64));
        assert_eq!(validate(&mut &golden[..]).unwrap(), golden.len() as u64);
        let restored = scratch.join("restored");
        restore(&mut &golden[..], &restored).unwrap();
        assert_eq!(dump(&restored), golden);
        fs::remove_dir_all(&restored).or_else(|_| fs::remove_file(&restored)).unwrap();
    }

    fn encoded(node: &Node) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(encode(node, &mut out).unwrap(), out.len() as u64);
        out
    }

    fn regular(executable: bool, contents: &[u8]) -> Node {
        Node::Regular { executable, contents: contents.to_vec() }
    }

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

    /// Deterministic pseudo-random bytes.
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn build_tree(root: &Path) {
        fs::create_dir_all(root.join("nested/a/b/c")).unwrap();
        fs::create_dir_all(root.join("empty-dir")).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("many")).unwrap();
        write_file(&root.join("nested/a/b/c/deep.txt"), b"deep\n", 0o644);
        write_file(&root.join("empty-file"), b"", 0o644);
        write_file(&root.join("bin/tool"), b"#!/bin/sh\necho hi\n", 0o755);
        write_file(&root.join("large.bin"), &noise(3 << 20, 7), 0o644);
        symlink("nested/a", root.join("link-relative")).unwrap();
        symlink("/nonexistent/absolute/target", root.join("link-absolute")).unwrap();
        for i in 0..200 {
            let contents = noise(i * 37 % 3000, i as u64 + 1);
            write_file(&root.join(format!("many/file-{i:03}")), &contents, 0o644);
        }
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

    #[test]
    fn times_modes_and_creation_order_do_not_matter() {
        let scratch = Scratch::new("invariance");
        let (one, two) = (scratch.join("one"), scratch.join("two"));
        let names = ["x", "y", "z", "sub"];
        for (root, order, file_mode, exec_mode, dir_mode) in
            [(&one, [0, 1, 2, 3], 0o644, 0o755, 0o755), (&two, [3, 2, 1, 0], 0o600, 0o100, 0o700)]
        {
            fs::create_dir(root).unwrap();
            for &i in &order {
                let path = root.join(names[i]);
                match names[i] {
                    "sub" => {
                        fs::create_dir(&path).unwrap();
                        write_file(&path.join("inner"), b"inner", file_mode);
                        fs::set_permissions(&path, Permissions::from_mode(dir_mode)).unwrap();
                    }
                    "x" => write_file(&path, b"exec", exec_mode),
                    name => write_file(&path, name.as_bytes(), file_mode),
                }
            }
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(if root == &one { 1 } else { 1_700_000_000 });
            File::options().write(true).open(root.join("y")).unwrap().set_modified(time).unwrap();
        }
        assert_eq!(dump(&one), dump(&two));
        assert_eq!(hash_path(&one).unwrap(), hash_path(&two).unwrap());
    }

    /// Encodes `tokens` as an archive's bytes.
    fn tokens(tokens: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for token in tokens {
            push_token(&mut buf, token);
        }
        buf
    }

    /// A directory archive with an empty regular file under each name, in the order given.
    fn directory_of(names: &[&[u8]]) -> Vec<u8> {
        let mut buf = tokens(&[b"nix-archive-1", b"(", b"type", b"directory"]);
        for name in names {
            buf.extend(tokens(&[b"entry", b"(", b"name", name, b"node"]));
            buf.extend(tokens(&[b"(", b"type", b"regular", b"contents", b"", b")", b")"]));
        }
        buf.extend(tokens(&[b")"]));
        buf
    }

    /// `depth` directories nested inside one another, built without recursion.
    fn nested(depth: usize) -> Vec<u8> {
        let mut buf = tokens(&[b"nix-archive-1"]);
        let open = tokens(&[b"(", b"type", b"directory", b"entry", b"(", b"name", b"d", b"node"]);
        for _ in 1..depth {
            buf.extend_from_slice(&open);
        }
        buf.extend(tokens(&[b"(", b"type", b"directory", b")"]));
        for _ in 1..depth {
            buf.extend_from_slice(&[CLOSE, CLOSE].concat());
        }
        buf
    }

    /// Restores `archive` into a fresh destination, expecting failure and no leftovers.
    fn restore_fails(archive: &[u8], scratch: &Scratch) -> ArchiveError {
        let dest = scratch.join("dest");
        let err = restore(&mut &archive[..], &dest).unwrap_err();
        assert!(fs::symlink_metadata(&dest).is_err(), "{} left behind after: {err}", dest.display());
        let validated = validate(&mut &archive[..]).unwrap_err();
        assert_eq!(validated.to_string(), err.to_string());
        err
    }

    fn malformed_message(err: ArchiveError) -> (u64, String) {
        match err {
            ArchiveError::Malformed { offset, message } => (offset, message),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn rejects_wrong_magic() {
        let scratch = Scratch::new("magic");
        let err = restore_fails(&tokens(&[b"nix-archive-2"]), &scratch);
        assert_eq!(err.to_string(), "archive is malformed at byte 0: expected 'nix-archive-1', found 'nix-archive-2'");
        let err = restore_fails(b"\xff\xff\xff\xff\xff\xff\xff\xff tar?", &scratch);
        assert!(malformed_message(err).1.contains("longer than the limit"));
    }

    #[test]
    fn rejects_every_truncation() {
        let scratch = Scratch::new("truncated");
        let golden = golden_directory();
        for len in 0..golden.len() {
            match restore_fails(&golden[..len], &scratch) {
                ArchiveError::Truncated { offset } => assert_eq!(offset, len as u64),
                other => panic!("prefix of {len} bytes: expected Truncated, got {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_unsorted_and_duplicate_entries() {
        let scratch = Scratch::new("unsorted");
        // Header 80 bytes, each entry 184, the name token 48 bytes into an entry.
        let err = restore_fails(&directory_of(&[b"a", b"c", b"b"]), &scratch);
        assert_eq!(
            err.to_string(),
            "archive is malformed at byte 496: directory entries are not sorted ('b' after 'c')"
        );
        let (_, message) = malformed_message(restore_fails(&directory_of(&[b"a", b"a"]), &scratch));
        assert_eq!(message, "duplicate directory entry 'a'");
    }

    #[test]
    fn rejects_bad_names() {
        let scratch = Scratch::new("names");
        for name in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            let (offset, message) = malformed_message(restore_fails(&directory_of(&[b"ok", name]), &scratch));
            assert!(message.starts_with("invalid entry name"), "{message}");
            assert_eq!(offset, 80 + 184 + 48, "{message}");
        }
    }

    #[test]
    fn rejects_unknown_tokens_and_bad_padding() {
        let scratch = Scratch::new("tokens");
        let fifo = tokens(&[b"nix-archive-1", b"(", b"type", b"fifo", b")"]);
        assert_eq!(malformed_message(restore_fails(&fifo, &scratch)), (56, "unknown node type 'fifo'".to_string()));
        let mode = tokens(&[b"nix-archive-1", b"(", b"type", b"regular", b"mode", b"", b")"]);
        assert_eq!(malformed_message(restore_fails(&mode, &scratch)).1, "expected 'contents', found 'mode'");
        let exec =
            tokens(&[b"nix-archive-1", b"(", b"type", b"regular", b"executable", b"yes", b"contents", b"", b")"]);
        assert!(malformed_message(restore_fails(&exec, &scratch)).1.starts_with("expected '' after 'executable'"));
        let mut huge = tokens(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(malformed_message(restore_fails(&huge, &scratch)).1.contains("impossibly large"));

        let mut padded = golden_file();
        padded[21] = 1;
        assert_eq!(malformed_message(restore_fails(&padded, &scratch)), (21, "padding is not zero".to_string()));
        let mut padded = golden_file();
        padded[104 - 1] = b'!';
        assert_eq!(malformed_message(restore_fails(&padded, &scratch)).0, 103);
    }

    #[test]
    fn rejects_trailing_garbage() {
        let scratch = Scratch::new("trailing");
        let mut archive = golden_directory();
        let end = archive.len() as u64;
        archive.push(0);
        let (offset, message) = malformed_message(restore_fails(&archive, &scratch));
        assert_eq!((offset, message.as_str()), (end, "unexpected data after the end of the archive"));
    }

    #[test]
    fn rejects_deep_nesting_without_overflowing_the_stack() {
        let scratch = Scratch::new("deep");
        assert_eq!(validate(&mut &nested(MAX_DEPTH)[..]).unwrap(), nested(MAX_DEPTH).len() as u64);
        for depth in [MAX_DEPTH + 1, 300, 100_000] {
            assert!(matches!(restore_fails(&nested(depth), &scratch), ArchiveError::TooDeep { .. }), "{depth}");
        }
    }

    #[test]
    fn restore_refuses_an_existing_destination() {
        let scratch = Scratch::new("exists");
        let dest = scratch.join("dest");
        fs::create_dir(&dest).unwrap();
        let err = restore(&mut &golden_file()[..], &dest).unwrap_err();
        assert!(matches!(err, ArchiveError::DestinationExists { .. }), "{err:?}");
        assert!(dest.is_dir());
    }

    /// Appends a random node's tokens: names from a small pool (so entries
    /// repeat and fall out of order), hostile names now and then, symlinks
    /// aimed at `sentinel` (absolute, relative, through `..`), deep chains.
    fn random_node(rng: &mut Rng, depth: usize, sentinel: &[u8], out: &mut Vec<u8>) {
        let names: [&[u8]; 10] = [b"a", b"b", b"c", b"d", b"a", b"b", b"..", b".", b"x/y", b""];
        let targets: [&[u8]; 7] = [sentinel, b"../sentinel", b"../../sentinel", b"..", b"/", b"a", b"a/b"];
        match rng.below(if depth > 6 { 2 } else { 4 }) {
            0 => {
                out.extend(tokens(&[b"(", b"type", b"regular"]));
                if rng.below(2) == 0 {
                    out.extend(tokens(&[b"executable", b""]));
                }
                out.extend(tokens(&[b"contents", b"pwned", b")"]));
            }
            1 => {
                let target = rng.pick(&targets).to_vec();
                out.extend(tokens(&[b"(", b"type", b"symlink", b"target", &target, b")"]));
            }
            2 if rng.below(32) == 0 => {
                // A long chain, sometimes past the depth limit.
                let chain = 200 + rng.below(100) as usize;
                out.extend(nested(chain).split_off(24));
            }
            _ => {
                out.extend(tokens(&[b"(", b"type", b"directory"]));
                let mut chosen: Vec<&[u8]> = (0..rng.below(4)).map(|_| *rng.pick(&names)).collect();
                if rng.below(4) != 0 {
                    chosen.sort();
                }
                if rng.below(6) != 0 {
                    chosen.retain(|n| !n.is_empty() && !n.contains(&b'/') && *n != b"." && *n != b"..");
                }
                for name in chosen {
                    out.extend(tokens(&[b"entry", b"(", b"name", name, b"node"]));
                    random_node(rng, depth + 1, sentinel, out);
                    out.extend(tokens(&[b")"]));
                }
                out.extend(tokens(&[b")"]));
            }
        }
    }

    #[test]
    fn restore_never_writes_outside_its_destination() {
        let scratch = Scratch::new("fuzz");
        let sentinel = scratch.join("sentinel");
        fs::create_dir_all(sentinel.join("inner")).unwrap();
        fs::write(sentinel.join("keep.txt"), "keep").unwrap();
        let before = snapshot(&scratch.0);
        let dest = scratch.join("dest");
        let (mut restored, mut refused) = (0, 0);
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut archive = tokens(&[b"nix-archive-1"]);
            random_node(&mut rng, 0, sentinel.as_os_str().as_bytes(), &mut archive);
            if rng.below(10) == 0 {
                archive.truncate(rng.below(archive.len() as u64) as usize);
            }
            let outcome = std::panic::catch_unwind(|| restore(&mut &archive[..], &dest));
            match outcome {
                Ok(Ok(())) => restored += 1,
                Ok(Err(_)) => {
                    refused += 1;
                    assert!(fs::symlink_metadata(&dest).is_err(), "seed {seed}: a refused archive left {dest:?}");
                }
                Err(_) => panic!("seed {seed}: restore panicked"),
            }
            let _ = fs::remove_dir_all(&dest).or_else(|_| fs::remove_file(&dest));
            assert_eq!(snapshot(&scratch.0), before, "seed {seed}: something was written outside {dest:?}");
        }
        assert!(restored > 30 && refused > 30, "the generator must reach both outcomes: {restored} / {refused}");
    }

    #[test]
    fn restore_refuses_a_destination_below_a_link() {
        let scratch = Scratch::new("below-link");
        let real = scratch.join("real");
        fs::create_dir(&real).unwrap();
        symlink(&real, scratch.join("link")).unwrap();
        let err = restore(&mut &golden_file()[..], &scratch.join("link/dest")).unwrap_err();
        assert!(matches!(err, ArchiveError::Unpack(TreeError::Root { .. })), "{err:?}");
        assert_eq!(fs::read_dir(&real).unwrap().count(), 0);
    }

    #[test]
    fn dump_rejects_special_files() {
        let scratch = Scratch::new("special");
        let socket = scratch.join("dir/socket");
        fs::create_dir(scratch.join("dir")).unwrap();
        let _listener = UnixListener::bind(&socket).unwrap();
        let err = dump_path(&scratch.join("dir"), &mut Vec::new()).unwrap_err();
        match err {
            ArchiveError::UnsupportedFileType { path, kind } => assert_eq!((path, kind), (socket.clone(), "socket")),
            other => panic!("expected UnsupportedFileType, got {other:?}"),
        }
        assert!(matches!(hash_path(&socket), Err(ArchiveError::UnsupportedFileType { kind: "socket", .. })));

        let fifo = scratch.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|status| status.success());
        if made {
            let err = dump_path(&fifo, &mut Vec::new()).unwrap_err();
            assert!(matches!(err, ArchiveError::UnsupportedFileType { kind: "fifo", .. }), "{err:?}");
            assert!(err.to_string().contains("it is a fifo"));
        }
    }

    #[test]
    fn dump_rejects_trees_deeper_than_restore_accepts() {
        let scratch = Scratch::new("deep-tree");
        let mut path = scratch.join("root");
        for _ in 1..MAX_DEPTH {
            path.push("d");
        }
        fs::create_dir_all(&path).unwrap();
        let archive = dump(&scratch.join("root"));
        assert_eq!(archive, nested(MAX_DEPTH));
        fs::create_dir(path.join("d")).unwrap();
        let err = dump_path(&scratch.join("root"), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ArchiveError::TreeTooDeep { .. }), "{err:?}");
    }

    #[test]
    fn encode_rejects_invalid_trees() {
        let tree = Node::Directory(BTreeMap::from([(b"a/b".to_vec(), regular(false, b""))]));
        let err = encode(&tree, &mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "cannot encode the tree: invalid entry name 'a/b': names must not contain '/'");
        let link = Node::Symlink { target: Vec::new() };
        assert!(matches!(encode(&link, &mut Vec::new()), Err(ArchiveError::InvalidTree { .. })));
    }
}
