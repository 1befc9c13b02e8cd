//! Deterministic layer tars: entries in sorted order, every mtime 1, owner
//! root:root (uid/gid 0) unless a home directory says otherwise, plain GNU
//! headers (long names as GNU long-name entries, never pax time records),
//! hard links stored as regular files. The SHA-256 of the tar (the layer's
//! `diff_id`) is computed while it is written, in the same pass.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{io_err, Result};

/// Every entry's modification time: one second after the epoch, as nixpkgs.
pub const MTIME: u64 = 1;

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), written: 0 }
    }

    /// The inner writer, the SHA-256 and the byte count of what was written.
    pub fn finish(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hasher.finalize().into(), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What an entry of the customisation layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Custom {
    Dir {
        mode: u32,
        owner: Option<Owner>,
    },
    File {
        mode: u32,
        contents: Vec<u8>,
    },
    /// A file copied from the host (a store file, by its physical path).
    HostFile {
        mode: u32,
        source: std::path::PathBuf,
    },
    Symlink {
        target: String,
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
        LayerWriter { tar }
    }

    pub fn dir(&mut self, path: &str, mode: u32, owner: Option<&Owner>) -> io::Result<()> {
        let mut h = header(tar::EntryType::Directory, mode, 0, owner)?;
        self.tar.append_data(&mut h, format!("{}/", path.trim_end_matches('/')), io::empty())
    }

    pub fn file(&mut self, path: &str, mode: u32, size: u64, contents: impl io::Read) -> io::Result<()> {
        let mut h = header(tar::EntryType::Regular, mode, size, None)?;
        self.tar.append_data(&mut h, path, contents)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0, None)?;
        self.tar.append_link(&mut h, path, target)
    }

    /// Adds the tree at `source` (a store path's files) as `archive_path`,
    /// children in sorted order, without following symlinks.
    pub fn tree(&mut self, source: &Path, archive_path: &str) -> Result<()> {
        let meta = fs::symlink_metadata(source).map_err(io_err("reading", source))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = fs::read_link(source).map_err(io_err("reading", source))?;
            self.symlink(archive_path, &target.to_string_lossy()).map_err(io_err("archiving", source))?;
        } else if kind.is_dir() {
            self.dir(archive_path, 0o555, None).map_err(io_err("archiving", source))?;
            let mut names: Vec<_> = fs::read_dir(source)
                .map_err(io_err("reading", source))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()
                .map_err(io_err("reading", source))?;
            names.sort();
            for name in names {
                let child = format!("{archive_path}/{}", name.to_string_lossy());
                self.tree(&source.join(&name), &child)?;
            }
        } else {
            let mode = if meta.permissions().mode() & 0o111 != 0 { 0o555 } else { 0o444 };
            let file = File::open(source).map_err(io_err("reading", source))?;
            self.file(archive_path, mode, meta.len(), file).map_err(io_err("archiving", source))?;
        }
        Ok(())
    }

    /// `mini/` and `mini/store/`, which every store-path layer starts with.
    pub fn store_dirs(&mut self) -> Result<()> {
        let here = Path::new("mini/store");
        self.dir("mini", 0o755, None).map_err(io_err("archiving", here))?;
        self.dir("mini/store", 0o755, None).map_err(io_err("archiving", here))
    }

    /// Adds in-memory entries, in their (sorted) map order.
    pub fn custom(&mut self, entries: &BTreeMap<String, Custom>) -> Result<()> {
        for (path, entry) in entries {
            let at = Path::new(path);
            match entry {
                Custom::Dir { mode, owner } => self.dir(path, *mode, owner.as_ref()),
                Custom::File { mode, contents } => self.file(path, *mode, contents.len() as u64, &contents[..]),
                Custom::HostFile { mode, source } => {
                    let file = File::open(source).map_err(io_err("reading", source))?;
                    let size = file.metadata().map_err(io_err("reading", source))?.len();
                    self.file(path, *mode, size, file)
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

/// Writes the layer holding `paths` (base names, with their physical
/// directory `store_dir`): `mini/`, `mini/store/`, then each path's tree.
pub fn write_store_layer<W: Write>(out: W, store_dir: &Path, base_names: &[String]) -> Result<W> {
    let mut layer = LayerWriter::new(out);
    layer.store_dirs()?;
    let mut sorted: Vec<&String> = base_names.iter().collect();
    sorted.sort();
    for base in sorted {
        layer.tree(&store_dir.join(base), &format!("mini/store/{base}"))?;
    }
    layer.finish().map_err(io_err("archiving", Path::new("mini/store")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let w = write_store_layer(HashingWriter::new(Vec::new()), &dir, &["abc-tool".into()]).unwrap();
            w.finish()
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
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn custom_entries_keep_their_owner_and_mode() {
        let mut entries_in = BTreeMap::new();
        entries_in.insert("tmp".to_string(), Custom::Dir { mode: 0o1777, owner: None });
        let owner = Owner { uid: 1000, gid: 1000, name: "app".into() };
        entries_in.insert("home/app".to_string(), Custom::Dir { mode: 0o755, owner: Some(owner) });
        entries_in.insert("bin/sh".to_string(), Custom::Symlink { target: "/mini/store/x-busybox/bin/sh".into() });
        let mut w = LayerWriter::new(Vec::new());
        w.custom(&entries_in).unwrap();
        let bytes = w.finish().unwrap();
        let listed = entries(&bytes);
        let find = |n: &str| listed.iter().find(|e| e.0 == n).unwrap().clone();
        assert_eq!(find("tmp/").2, 0o1777);
        assert_eq!((find("home/app/").3, find("home/app/").4.as_str()), (1000, "app"));
    }
}
