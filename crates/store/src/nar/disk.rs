//! The bridge between a tree on disk and its archive: [`dump_path`] walks
//! a tree (never following a link, streaming file contents) into the
//! writer's tokens, and [`restore`] recreates a tree from the reader's
//! events through [`crate::tree_writer`]'s directory handles.

use std::ffi::OsString;
use std::fs::{self, File, FileType};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::reader::{EventSink, Parser};
use super::writer::{
    magic_token, push_directory_start, push_entry_start, push_regular_end, push_regular_start, push_symlink,
    write_error, ByteSink, WriteSink, CLOSE,
};
use super::{NarError, COPY_LEN, MAX_DEPTH};
use crate::tree_writer::Dir;

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> NarError + '_ {
    move |source| NarError::Io { path: path.to_path_buf(), source }
}

/// Like [`io_error`], but a file that ends early has shrunk since it was measured.
pub(super) fn read_error(path: &Path) -> impl FnOnce(io::Error) -> NarError + '_ {
    move |source| match source.kind() {
        io::ErrorKind::UnexpectedEof => NarError::FileChanged { path: path.to_path_buf() },
        _ => NarError::Io { path: path.to_path_buf(), source },
    }
}

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
pub fn dump_path(path: &Path, out: &mut impl Write) -> Result<u64, NarError> {
    dump_path_filtered(path, KEEP_ALL, out)
}

/// [`dump_path`] of only the entries `filter` keeps: the archive of the
/// tree that would remain if the others were deleted.
pub fn dump_path_filtered(path: &Path, filter: PathFilter, out: &mut impl Write) -> Result<u64, NarError> {
    let mut sink = WriteSink::new(out);
    sink.bytes(&magic_token())?;
    walk_path(path, filter, &mut sink)?;
    sink.finish()
}

/// Receives an archive as it is produced, in stream order: encoded bytes, and
/// the contents of files on disk by reference.
pub(super) trait PieceSink: ByteSink {
    fn file(&mut self, path: &Path, len: u64) -> Result<(), NarError>;
}

impl<W: Write> PieceSink for WriteSink<'_, W> {
    /// Copies exactly `len` bytes (the size the walk measured) in bounded chunks.
    fn file(&mut self, path: &Path, len: u64) -> Result<(), NarError> {
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

/// Emits the archive of the tree at `path`, keeping what `filter` keeps.
pub(super) fn walk_path(path: &Path, filter: PathFilter, sink: &mut impl PieceSink) -> Result<(), NarError> {
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
) -> Result<(), NarError> {
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
            return Err(NarError::TreeTooDeep { path: path.to_path_buf() });
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
        Err(NarError::UnsupportedFileType { path: path.to_path_buf(), kind: special_file_kind(file_type) })
    }
}

/// The names in directory `path`, sorted by their bytes.
fn sorted_entries(path: &Path) -> Result<Vec<OsString>, NarError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path).map_err(io_error(path))? {
        names.push(entry.map_err(io_error(path))?.file_name());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// What a file that is neither regular, a directory nor a symlink is
/// (`"fifo"`, `"block device"`…): what a store path may not hold, named in
/// the archiver's and the builder's refusals alike.
pub fn special_file_kind(file_type: FileType) -> &'static str {
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

/// Recreates the tree archived in `input` at `dest`, which must not exist.
///
/// Files get mode 0644, or 0755 if executable; directories 0755. The input is
/// checked as [`validate`] does. Everything is created relative to a handle
/// on `dest`'s parent with [`crate::tree_writer`], so nothing is written
/// through a link, even one swapped in while restoring. On error, what was
/// created at `dest` is removed (best effort); since a crash can still leave
/// a partial tree, callers restore into a temporary directory and rename the
/// result into place, as the store does.
pub fn restore(input: &mut impl Read, dest: &Path) -> Result<(), NarError> {
    match fs::symlink_metadata(dest) {
        Ok(_) => return Err(NarError::DestinationExists { path: dest.to_path_buf() }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_error(dest)(err)),
    }
    let name = match dest.file_name() {
        Some(name) => name.as_bytes().to_vec(),
        None => return Err(NarError::DestinationExists { path: dest.to_path_buf() }),
    };
    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut sink = DiskSink { parent: Dir::open(parent)?, open: Vec::new(), name, created: false };
    let result = Parser::new(input, &mut sink).run();
    if result.is_err() && sink.created {
        // Best effort: the caller's error matters more than a failure to clean up.
        let _ = crate::teardown::remove_tree(dest);
    }
    result.map(drop)
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

    fn directory(&mut self) -> Result<(), NarError> {
        let dir = self.here().create_dir(&self.name, 0o755)?;
        self.created = true;
        self.open.push(dir);
        Ok(())
    }

    fn end_directory(&mut self) {
        self.open.pop();
    }

    fn regular(&mut self, executable: bool) -> Result<File, NarError> {
        let file = self.here().create_file(&self.name, if executable { 0o755 } else { 0o644 })?;
        self.created = true;
        Ok(file)
    }

    fn contents(&mut self, file: &mut File, chunk: &[u8]) -> Result<(), NarError> {
        file.write_all(chunk).map_err(|source| NarError::Io { path: self.here().path_of(&self.name), source })
    }

    fn symlink(&mut self, target: &[u8]) -> Result<(), NarError> {
        self.here().symlink(&self.name, target)?;
        self.created = true;
        Ok(())
    }

    fn enter(&mut self, name: &[u8]) {
        self.name.clear();
        self.name.extend_from_slice(name);
    }
}

#[cfg(test)]
mod tests {
    use std::fs::Permissions;
    use std::os::unix::fs::symlink;
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, SystemTime};

    use super::super::fixtures::*;
    use super::super::hash_path;
    use super::*;
    use crate::testing::{snapshot, Rng};
    use crate::tree_writer::TreeError;

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

    #[test]
    fn restore_refuses_an_existing_destination() {
        let scratch = Scratch::new("exists");
        let dest = scratch.join("dest");
        fs::create_dir(&dest).unwrap();
        let err = restore(&mut &golden_file()[..], &dest).unwrap_err();
        assert!(matches!(err, NarError::DestinationExists { .. }), "{err:?}");
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
        assert!(matches!(err, NarError::Unpack(TreeError::Root { .. })), "{err:?}");
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
            NarError::UnsupportedFileType { path, kind } => assert_eq!((path, kind), (socket.clone(), "socket")),
            other => panic!("expected UnsupportedFileType, got {other:?}"),
        }
        assert!(matches!(hash_path(&socket), Err(NarError::UnsupportedFileType { kind: "socket", .. })));

        let fifo = scratch.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|status| status.success());
        if made {
            let err = dump_path(&fifo, &mut Vec::new()).unwrap_err();
            assert!(matches!(err, NarError::UnsupportedFileType { kind: "fifo", .. }), "{err:?}");
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
        assert!(matches!(err, NarError::TreeTooDeep { .. }), "{err:?}");
    }
}
