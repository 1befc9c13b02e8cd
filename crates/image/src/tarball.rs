//! Deterministic layer tars: entries in sorted order, every mtime 1, owner
//! root:root (uid/gid 0) unless a home directory says otherwise, plain GNU
//! headers (long names as GNU long-name entries, never pax time records),
//! hard links stored as regular files. The SHA-256 of the tar (the layer's
//! `diff_id`) is computed while it is written, in the same pass.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType};

use crate::confined;
use crate::error::{io_err, Result};

/// Where store paths are in a layer: [`mini_store::STORE_DIR`] without its
/// leading `/` (tar member names are relative).
const STORE_IN_LAYER: &str = mini_store::STORE_DIR.split_at(1).1;

/// Every entry's modification time: one second after the epoch, as nixpkgs.
pub const MTIME: u64 = 1;

/// The largest read of a file's contents.
const COPY_LEN: usize = 256 * 1024;

/// What an entry of the customisation layer is.
#[derive(Debug, Clone)]
pub enum Custom {
    Dir {
        mode: u32,
        owner: Option<Owner>,
    },
    File {
        mode: u32,
        contents: Vec<u8>,
    },
    /// A file of the store, already opened (see `confined`); `source` names
    /// it in messages.
    StoreFile {
        mode: u32,
        file: Arc<File>,
        source: PathBuf,
    },
    /// A symlink; the target's bytes are kept as they are.
    Symlink {
        target: Vec<u8>,
    },
}

/// A non-root owner, for home directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
    pub name: String,
}

/// Writes a layer tar into `out`.
pub struct LayerWriter<W: Write> {
    tar: tar::Builder<W>,
    /// Store files' contents are written as zeros of the same length,
    /// without reading them: the tar has the layer's exact size, which a
    /// writer needs before it writes the layer (see `docker_archive`).
    sizing: bool,
    /// What file contents are copied through (see [`LayerWriter::file`]).
    buffer: Vec<u8>,
}

/// A header with mini's fixed metadata.
pub(crate) fn header(kind: tar::EntryType, mode: u32, size: u64, owner: Option<&Owner>) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(MTIME);
    match owner {
        Some(o) => {
            header.set_uid(o.uid);
            header.set_gid(o.gid);
            header.set_username(&o.name)?;
            header.set_groupname(&o.name)?;
        }
        None => {
            header.set_uid(0);
            header.set_gid(0);
            header.set_username("root")?;
            header.set_groupname("root")?;
        }
    }
    Ok(header)
}

impl<W: Write> LayerWriter<W> {
    pub fn new(out: W) -> Self {
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        LayerWriter { tar, sizing: false, buffer: Vec::new() }
    }

    /// A writer for measuring a layer: file contents are written as zeros,
    /// without reading the files.
    pub fn for_sizing(out: W) -> Self {
        LayerWriter { sizing: true, ..LayerWriter::new(out) }
    }

    /// A directory at `path` (bytes: any name a file system allows).
    pub fn dir(&mut self, path: &[u8], mode: u32, owner: Option<&Owner>) -> io::Result<()> {
        let mut h = header(tar::EntryType::Directory, mode, 0, owner)?;
        let mut name = path.strip_suffix(b"/").unwrap_or(path).to_vec();
        name.push(b'/');
        self.tar.append_data(&mut h, OsStr::from_bytes(&name), io::empty())
    }

    /// A regular file of `size` bytes read from `contents`. The header
    /// goes through the `tar` crate (long names and all); the contents are
    /// copied here in large reads (the crate copies through an 8 KiB
    /// buffer), or, when sizing, counted as zeros without being read.
    pub fn file(&mut self, path: &[u8], mode: u32, size: u64, mut contents: impl io::Read) -> io::Result<()> {
        let mut h = header(tar::EntryType::Regular, mode, size, None)?;
        // With no data, `append_data` writes the header (and any long-name
        // entry) and no padding.
        self.tar.append_data(&mut h, OsStr::from_bytes(path), io::empty())?;
        let out = self.tar.get_mut();
        if self.buffer.is_empty() {
            self.buffer = vec![0; COPY_LEN];
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(COPY_LEN as u64) as usize;
            if self.sizing {
                self.buffer[..want].fill(0);
            } else {
                contents.read_exact(&mut self.buffer[..want]).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        io::Error::other("the file shrank while it was archived")
                    } else {
                        e
                    }
                })?;
            }
            out.write_all(&self.buffer[..want])?;
            left -= want as u64;
        }
        let padding = (512 - size % 512) % 512;
        out.write_all(&[0; 512][..padding as usize])
    }

    pub fn symlink(&mut self, path: &[u8], target: &[u8]) -> io::Result<()> {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0, None)?;
        self.tar.append_link(&mut h, OsStr::from_bytes(path), OsStr::from_bytes(target))
    }

    /// Adds the entry `name` of the directory `dir` (a store path, or a
    /// file in one) as `archive_path`, children in sorted order. Everything
    /// is opened relative to its directory with `O_NOFOLLOW`: a symlink is
    /// stored as a symlink and never followed, whatever it points at.
    /// `source` is where `name` is, for messages.
    pub fn tree(&mut self, dir: BorrowedFd<'_>, name: &OsStr, source: &Path, archive_path: &[u8]) -> Result<()> {
        let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err("reading", source)(e.into()))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Symlink => {
                let target =
                    rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| io_err("reading", source)(e.into()))?;
                self.symlink(archive_path, target.as_bytes()).map_err(io_err("archiving", source))?;
            }
            FileType::Directory => {
                self.dir(archive_path, 0o555, None).map_err(io_err("archiving", source))?;
                let handle = confined::open_dir(dir, name).map_err(io_err("reading", source))?;
                for child in confined::sorted_names(&handle).map_err(io_err("reading", source))? {
                    let mut child_path = archive_path.to_vec();
                    child_path.push(b'/');
                    child_path.extend_from_slice(child.as_bytes());
                    self.tree(handle.as_fd(), &child, &source.join(&child), &child_path)?;
                }
            }
            FileType::RegularFile if self.sizing => {
                let mode = if stat.st_mode & 0o111 != 0 { 0o555 } else { 0o444 };
                self.file(archive_path, mode, stat.st_size as u64, io::empty()).map_err(io_err("archiving", source))?;
            }
            FileType::RegularFile => {
                let file = confined::open_file(dir, name).map_err(io_err("reading", source))?;
                let meta = file.metadata().map_err(io_err("reading", source))?;
                let mode = if meta.permissions().mode() & 0o111 != 0 { 0o555 } else { 0o444 };
                self.file(archive_path, mode, meta.len(), file).map_err(io_err("archiving", source))?;
            }
            _ => {
                let message = "a device, fifo or socket, which an image cannot hold";
                return Err(io_err("archiving", source)(io::Error::new(io::ErrorKind::InvalidInput, message)));
            }
        }
        Ok(())
    }

    /// `mini/` and `mini/store/`, which every store-path layer starts with.
    pub fn store_dirs(&mut self) -> Result<()> {
        let store = Path::new(STORE_IN_LAYER);
        // Parents first: `mini`, then `mini/store`.
        let mut dirs: Vec<&Path> = store.ancestors().take_while(|d| !d.as_os_str().is_empty()).collect();
        dirs.reverse();
        for dir in dirs {
            self.dir(dir.as_os_str().as_encoded_bytes(), 0o755, None).map_err(io_err("archiving", store))?;
        }
        Ok(())
    }

    /// Adds in-memory entries, in their (sorted) map order.
    pub fn custom(&mut self, entries: &BTreeMap<Vec<u8>, Custom>) -> Result<()> {
        for (path, entry) in entries {
            let at = Path::new(OsStr::from_bytes(path));
            match entry {
                Custom::Dir { mode, owner } => self.dir(path, *mode, owner.as_ref()),
                Custom::File { mode, contents } => self.file(path, *mode, contents.len() as u64, &contents[..]),
                Custom::StoreFile { mode, file, source } => {
                    let size = file.metadata().map_err(io_err("reading", source))?.len();
                    // Read from the start whoever read the handle before.
                    let reader = PositionedReader { file: file.as_ref(), offset: 0 };
                    self.file(path, *mode, size, io::Read::take(reader, size))
                }
                Custom::Symlink { target } => self.symlink(path, target),
            }
            .map_err(io_err("archiving", at))?;
        }
        Ok(())
    }

    /// Ends the tar and hands back the writer.
    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }
}

/// Reads a shared file from `offset` on with positioned reads, so no
/// one else's reading moves it.
struct PositionedReader<'a> {
    file: &'a File,
    offset: u64,
}

impl io::Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Writes the layer holding `paths` (base names, with their physical
/// directory `store_dir`): `mini/`, `mini/store/`, then each path's tree.
pub fn write_store_layer<W: Write>(out: W, store_dir: &Path, base_names: &[String]) -> Result<W> {
    let mut layer = LayerWriter::new(out);
    fill_store_layer(&mut layer, store_dir, base_names)?;
    layer.finish().map_err(io_err("archiving", Path::new(STORE_IN_LAYER)))
}

/// A writer that only counts.
#[derive(Default)]
pub struct Counter(pub u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The entries of [`write_store_layer`]'s tar (not ended).
pub fn fill_store_layer<W: Write>(layer: &mut LayerWriter<W>, store_dir: &Path, base_names: &[String]) -> Result<()> {
    layer.store_dirs()?;
    let store = confined::open_store_dir(store_dir).map_err(io_err("reading", store_dir))?;
    let mut sorted: Vec<&String> = base_names.iter().collect();
    sorted.sort();
    for base in sorted {
        let archive_path = format!("{STORE_IN_LAYER}/{base}");
        layer.tree(store.as_fd(), OsStr::new(base), &store_dir.join(base), archive_path.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mini_store::hash_io::HashingWriter;
    use sha2::{Digest, Sha256};
    use std::fs;

    fn entries(bytes: &[u8]) -> Vec<(String, u64, u32, u64, String)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mtime().unwrap(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.username().unwrap().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn store_layers_are_sorted_and_carry_no_host_metadata() {
        let dir = std::env::temp_dir().join(format!("mini-tarball-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("abc-tool");
        fs::create_dir_all(path.join("bin")).unwrap();
        fs::write(path.join("bin/tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(path.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(path.join("README"), "x").unwrap();
        std::os::unix::fs::symlink("tool", path.join("bin/alias")).unwrap();
        let long = "l".repeat(150);
        fs::write(path.join(&long), "long").unwrap();
        let (bytes, digest, size) = {
            let w = write_store_layer(HashingWriter::new(Vec::new(), Sha256::new()), &dir, &["abc-tool".into()]);
            let (bytes, digest, size) = w.unwrap().into_parts();
            (bytes, <[u8; 32]>::from(digest.finalize()), size)
        };
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&bytes)));
        let listed = entries(&bytes);
        let names: Vec<&str> = listed.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "mini/",
                "mini/store/",
                "mini/store/abc-tool/",
                "mini/store/abc-tool/README",
                "mini/store/abc-tool/bin/",
                "mini/store/abc-tool/bin/alias",
                "mini/store/abc-tool/bin/tool",
                &format!("mini/store/abc-tool/{long}"),
            ]
        );
        assert!(listed.iter().all(|e| e.1 == MTIME && e.3 == 0 && e.4 == "root"));
        let mode = |name: &str| listed.iter().find(|e| e.0.ends_with(name)).unwrap().2;
        assert_eq!((mode("bin/tool"), mode("README"), mode("bin/")), (0o555, 0o444, 0o555));
        // No pax records: only GNU headers ('L' for the long name).
        assert!(!bytes.windows(6).any(|w| w == b"mtime="));
        // The same tree, written again, gives the same bytes.
        let again = write_store_layer(Vec::new(), &dir, &["abc-tool".into()]).unwrap();
        assert_eq!(again, bytes);
        // Its size is known from the metadata alone.
        let mut sizing = LayerWriter::for_sizing(Counter::default());
        fill_store_layer(&mut sizing, &dir, &["abc-tool".into()]).unwrap();
        assert_eq!(sizing.finish().unwrap().0, size);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_and_link_targets_are_kept_as_bytes_and_links_never_followed() {
        use std::os::unix::ffi::OsStringExt;
        let dir = std::env::temp_dir().join(format!("mini-tarball-bytes-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("abc-names");
        fs::create_dir_all(&path).unwrap();
        let name = |bytes: &[u8]| path.join(std::ffi::OsString::from_vec(bytes.to_vec()));
        // Two names that are the same once made UTF-8 lossily.
        fs::write(name(b"caf\xe9"), "e9").unwrap();
        fs::write(name(b"caf\xe8"), "e8").unwrap();
        let mut long = vec![b'l'; 150];
        long.push(0xff);
        std::os::unix::fs::symlink(std::ffi::OsString::from_vec(long.clone()), name(b"link\xfe")).unwrap();
        fs::write(dir.join("secret"), "host secret bytes").unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), name(b"shadow")).unwrap();
        let bytes = write_store_layer(Vec::new(), &dir, &["abc-names".into()]).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let found: Vec<(Vec<u8>, Option<Vec<u8>>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path_bytes().into_owned(), e.link_name_bytes().map(|l| l.into_owned()))
            })
            .collect();
        let has =
            |n: &[u8]| found.iter().find(|(p, _)| p.as_slice() == [b"mini/store/abc-names/".as_slice(), n].concat());
        assert!(has(b"caf\xe9").is_some() && has(b"caf\xe8").is_some(), "{found:?}");
        assert_eq!(has(b"link\xfe").unwrap().1.as_deref(), Some(long.as_slice()));
        assert_eq!(has(b"shadow").unwrap().1.as_deref(), Some(dir.join("secret").as_os_str().as_bytes()));
        assert!(!bytes.windows(17).any(|w| w == b"host secret bytes"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn custom_entries_keep_their_owner_and_mode() {
        let mut entries_in = BTreeMap::new();
        entries_in.insert(b"tmp".to_vec(), Custom::Dir { mode: 0o1777, owner: None });
        let owner = Owner { uid: 1000, gid: 1000, name: "app".into() };
        entries_in.insert(b"home/app".to_vec(), Custom::Dir { mode: 0o755, owner: Some(owner) });
        entries_in.insert(b"bin/sh".to_vec(), Custom::Symlink { target: b"/mini/store/x-busybox/bin/sh".to_vec() });
        let mut w = LayerWriter::new(Vec::new());
        w.custom(&entries_in).unwrap();
        let bytes = w.finish().unwrap();
        let listed = entries(&bytes);
        let find = |n: &str| listed.iter().find(|e| e.0 == n).unwrap().clone();
        assert_eq!(find("tmp/").2, 0o1777);
        assert_eq!((find("home/app/").3, find("home/app/").4.as_str()), (1000, "app"));
    }
}
