//! Unpacking a downloaded archive into a tree, for `fetchzip`
//! (`builtin:fetchurl` with `unpack = "1"`): `.tar`, `.tar.gz`, `.tar.xz`
//! and `.zip`, the format named by an extension or else told by the
//! archive's first bytes.
//!
//! An archive is untrusted input, unpacked with mini's rights, so every
//! entry is written through the store's `TreeWriter`: an entry below a
//! link or a file, a duplicate, `..` or an absolute path is refused, and a
//! link entry is created as a link, never followed. A hard link is written
//! as a copy of the file it names, read back through directory handles
//! that refuse links. Device files and fifos are refused. Only whether a
//! file is executable is kept of its mode; the store normalises the rest.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mini_store::tree_writer::{Dir, TreeError, TreeWriter};
use rustix::fs::{Mode, OFlags};

/// An archive format `fetchzip` unpacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    TarXz,
    Zip,
}

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("unsupported archive extension '{0}': fetchzip unpacks tar, tar.gz (tgz), tar.xz (txz) and zip")]
    UnknownExtension(String),
    #[error(
        "cannot unpack a bzip2 archive ('{0}'): mini has no bzip2 decoder; fetch it with fetchurl and unpack it \
         in the build (mkDerivation's unpackPhase reads .tar.bz2)"
    )]
    Bzip2(String),
    #[error(
        "the download is not an archive fetchzip can unpack: its first bytes are not those of a tar, gzip, xz or \
         zip file{0}"
    )]
    NotAnArchive(&'static str),
    #[error("cannot read the archive: {0}")]
    Read(#[from] io::Error),
    #[error("cannot read the zip archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("archive entry '{entry}' is {what}, which fetchzip does not unpack")]
    Refused { entry: String, what: &'static str },
    #[error("archive entry '{entry}' is a hard link to '{target}', which {why}")]
    BadHardLink { entry: String, target: String, why: String },
    #[error("cannot write '{entry}': {source}")]
    Write { entry: String, source: io::Error },
    #[error(
        "with stripRoot = true the archive must hold exactly one top-level entry, and it holds {count}{listing}; \
         set stripRoot = false to keep them all"
    )]
    NotOneRoot { count: usize, listing: String },
    #[error("cannot {action} '{}': {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

type Result<T> = std::result::Result<T, UnpackError>;

/// The longest symlink target a zip entry may hold (Linux's `PATH_MAX`).
const MAX_LINK_TARGET: u64 = 4096;

impl Format {
    /// The format an extension names (`zip`, `.tar.gz`, `tgz`, …), as
    /// nixpkgs' `fetchzip { extension; }` does.
    pub fn from_extension(extension: &str) -> Result<Format> {
        let lower = extension.trim_start_matches('.').to_ascii_lowercase();
        match lower.as_str() {
            "tar" => Ok(Format::Tar),
            "tar.gz" | "tgz" => Ok(Format::TarGz),
            "tar.xz" | "txz" => Ok(Format::TarXz),
            "zip" => Ok(Format::Zip),
            "tar.bz2" | "tbz2" | "tbz" | "bz2" => Err(UnpackError::Bzip2(extension.to_string())),
            _ => Err(UnpackError::UnknownExtension(extension.to_string())),
        }
    }

    /// The format an archive's first bytes show, if any.
    pub fn sniff(head: &[u8]) -> Result<Format> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Format::TarGz)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Ok(Format::TarXz)
        } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Ok(Format::Zip)
        } else if head.get(257..262) == Some(b"ustar") {
            Ok(Format::Tar)
        } else if head.starts_with(b"BZh") {
            Err(UnpackError::Bzip2("the download".into()))
        } else {
            Err(UnpackError::NotAnArchive("; set `extension` if it is one"))
        }
    }
}

/// Unpacks the archive at `archive` into the new directory `dest`, in
/// `format` or else the one its first bytes show; the number of entries.
pub fn unpack(archive: &Path, format: Option<Format>, dest: &Path) -> Result<u64> {
    let mut file =
        File::open(archive).map_err(|source| UnpackError::Io { action: "open", path: archive.into(), source })?;
    let format = match format {
        Some(format) => format,
        None => {
            let mut head = Vec::with_capacity(512);
            (&mut file).take(512).read_to_end(&mut head)?;
            file.seek(SeekFrom::Start(0))?;
            Format::sniff(&head)?
        }
    };
    let mut writer = TreeWriter::new(Dir::create(dest, 0o755)?);
    let reader = BufReader::new(file);
    match format {
        Format::Tar => unpack_tar(reader, &mut writer, dest),
        Format::TarGz => unpack_tar(flate2::bufread::MultiGzDecoder::new(reader), &mut writer, dest),
        Format::TarXz => unpack_tar(xz2::bufread::XzDecoder::new_multi_decoder(reader), &mut writer, dest),
        Format::Zip => unpack_zip(reader, &mut writer),
    }
}

/// An entry's path as a path below the root: leading `./` removed, and
/// for a directory its trailing `/`; `None` for the root itself.
fn relative(raw: &[u8], is_dir: bool) -> Option<&[u8]> {
    let mut path = raw;
    while let Some(rest) = path.strip_prefix(b"./") {
        path = rest;
    }
    if is_dir {
        path = path.strip_suffix(b"/").unwrap_or(path);
    }
    (!(is_dir && (path.is_empty() || path == b"."))).then_some(path)
}

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// The mode a file is written with: only whether it is executable counts.
fn file_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

fn unpack_tar(stream: impl Read, writer: &mut TreeWriter, dest: &Path) -> Result<u64> {
    use tar::EntryType;
    let mut archive = tar::Archive::new(stream);
    let mut count = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        let raw = entry.path_bytes().into_owned();
        let Some(path) = relative(&raw, kind.is_dir()) else { continue };
        let refused = |what| Err(UnpackError::Refused { entry: shown(path), what });
        match kind {
            EntryType::Directory => writer.dir(path, 0o755)?,
            EntryType::Regular | EntryType::Continuous => {
                let mut file = writer.file(path, file_mode(entry.header().mode()?))?;
                io::copy(&mut entry, &mut file).map_err(|source| UnpackError::Write { entry: shown(path), source })?;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                writer.symlink(path, &target)?;
            }
            EntryType::Link => {
                let raw_target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                let target = relative(&raw_target, false).unwrap_or(&raw_target);
                let bad = |why: String| UnpackError::BadHardLink { entry: shown(path), target: shown(target), why };
                let mut original = open_below(dest, target).map_err(bad)?;
                let mode = original.metadata().map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))?;
                let mut file = writer.file(path, file_mode(mode))?;
                io::copy(&mut original, &mut file)
                    .map_err(|source| UnpackError::Write { entry: shown(path), source })?;
            }
            // Metadata for the whole archive, not an entry.
            EntryType::XGlobalHeader => continue,
            EntryType::Char => return refused("a character device"),
            EntryType::Block => return refused("a block device"),
            EntryType::Fifo => return refused("a fifo"),
            EntryType::GNUSparse => return refused("a sparse file"),
            _ => return refused("an entry of an unknown type"),
        }
        count += 1;
    }
    Ok(count)
}

/// Opens for reading the regular file `rel` below `root`, one component
/// at a time, refusing links: a hard link entry cannot reach a file
/// outside the tree through a symlink an earlier entry planted.
fn open_below(root: &Path, rel: &[u8]) -> std::result::Result<File, String> {
    let nofollow = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let refused = |e: rustix::io::Errno| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => "goes through a symbolic link or a file".to_string(),
        rustix::io::Errno::NOENT => "is not an earlier entry of the archive".to_string(),
        e => format!("cannot be opened: {}", io::Error::from(e)),
    };
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    if rel.is_empty() || parts.iter().any(|p| p.is_empty() || *p == b"." || *p == b"..") {
        return Err("is not a plain relative path".into());
    }
    let (last, parents) = parts.split_last().ok_or("is empty")?;
    let mut dir = rustix::fs::open(root, nofollow | OFlags::DIRECTORY, Mode::empty()).map_err(refused)?;
    for part in parents {
        dir = rustix::fs::openat(&dir, std::ffi::OsStr::from_bytes(part), nofollow | OFlags::DIRECTORY, Mode::empty())
            .map_err(refused)?;
    }
    let file = File::from(
        rustix::fs::openat(&dir, std::ffi::OsStr::from_bytes(last), nofollow | OFlags::NONBLOCK, Mode::empty())
            .map_err(refused)?,
    );
    match file.metadata() {
        Ok(meta) if meta.is_file() => Ok(file),
        Ok(_) => Err("is not a regular file".into()),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

fn unpack_zip(reader: impl Read + Seek, writer: &mut TreeWriter) -> Result<u64> {
    let mut archive = zip::ZipArchive::new(reader)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let raw = entry.name_raw().to_vec();
        let mode = entry.unix_mode().unwrap_or(0);
        let is_dir = match mode & 0o170000 {
            0o040000 => true,
            0 | 0o100000 => entry.is_dir(),
            _ => false,
        };
        let Some(path) = relative(&raw, is_dir) else { continue };
        let refused = |what| Err(UnpackError::Refused { entry: shown(path), what });
        match mode & 0o170000 {
            _ if is_dir => writer.dir(path, 0o755)?,
            0 | 0o100000 => {
                let mut file = writer.file(path, file_mode(mode))?;
                io::copy(&mut entry, &mut file).map_err(|source| UnpackError::Write { entry: shown(path), source })?;
            }
            0o120000 => {
                let mut target = Vec::new();
                (&mut entry).take(MAX_LINK_TARGET + 1).read_to_end(&mut target)?;
                if target.len() as u64 > MAX_LINK_TARGET {
                    return refused("a symbolic link with a target longer than 4096 bytes");
                }
                writer.symlink(path, &target)?;
            }
            0o020000 => return refused("a character device"),
            0o060000 => return refused("a block device"),
            0o010000 => return refused("a fifo"),
            0o140000 => return refused("a socket"),
            _ => return refused("an entry of an unknown type"),
        }
    }
    Ok(archive.len() as u64)
}

/// Moves the unpacked `tree` to `out`: with `strip_root`, its one
/// top-level directory becomes `out` (a single file or link is put in a
/// directory `out`, as nixpkgs' fetchzip does); more or fewer entries are
/// an error. Without it, the whole tree is `out`.
pub fn place(tree: &Path, out: &Path, strip_root: bool) -> Result<()> {
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| UnpackError::Io { action, path, source }
    };
    if !strip_root {
        return fs::rename(tree, out).map_err(io_err("move", tree));
    }
    let mut names = fs::read_dir(tree)
        .and_then(|dir| dir.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<OsString>>>())
        .map_err(io_err("read", tree))?;
    names.sort();
    if names.len() != 1 {
        let mut listed: Vec<String> = names.iter().take(5).map(|n| format!("'{}'", n.to_string_lossy())).collect();
        if names.len() > 5 {
            listed.push("…".into());
        }
        let listing = if names.is_empty() { String::new() } else { format!(" ({})", listed.join(", ")) };
        return Err(UnpackError::NotOneRoot { count: names.len(), listing });
    }
    let only = tree.join(&names[0]);
    let is_dir = fs::symlink_metadata(&only).map_err(io_err("read", &only))?.is_dir();
    if is_dir {
        fs::rename(&only, out).map_err(io_err("move", &only))
    } else {
        fs::create_dir(out).map_err(io_err("create", out))?;
        fs::rename(&only, out.join(&names[0])).map_err(io_err("move", &only))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Scratch;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    /// A tar entry with exactly these bytes as path and link name.
    fn tar_entry(
        tar: &mut tar::Builder<Vec<u8>>,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        link: &str,
        data: &[u8],
    ) {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        header.as_gnu_mut().unwrap().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_cksum();
        tar.append(&header, data).unwrap();
    }

    fn tar_of(entries: &[(&str, tar::EntryType, u32, &str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, kind, mode, link, data) in entries {
            tar_entry(&mut tar, path, *kind, *mode, link, data);
        }
        tar.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn xz(bytes: &[u8]) -> Vec<u8> {
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(bytes).unwrap();
        xz.finish().unwrap()
    }

    /// A zip of (name, unix mode, contents) entries, stored uncompressed.
    fn zip_of(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, mode, data) in entries {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .unix_permissions(*mode);
            match mode & 0o170000 {
                0o040000 => zip.add_directory(*name, options).unwrap(),
                0o120000 => zip.add_symlink(*name, std::str::from_utf8(data).unwrap(), options).unwrap(),
                _ => {
                    zip.start_file(*name, options).unwrap();
                    zip.write_all(data).unwrap();
                }
            }
        }
        zip.finish().unwrap().into_inner()
    }

    /// Unpacks `bytes` (written to a file) into `<scratch>/tree`.
    fn unpack_bytes(s: &Scratch, bytes: &[u8], format: Option<Format>) -> Result<PathBuf> {
        let archive = s.0.join("archive");
        fs::write(&archive, bytes).unwrap();
        let tree = s.0.join("tree");
        unpack(&archive, format, &tree)?;
        Ok(tree)
    }

    use tar::EntryType::{Block, Directory as D, Fifo, Link as H, Regular as F, Symlink as L};

    #[test]
    fn tarballs_in_every_format_unpack_with_links_as_links() {
        let s = Scratch::new("unpack-tar");
        let secret = s.0.join("secret");
        fs::write(&secret, "host file").unwrap();
        let tar = tar_of(&[
            ("./", D, 0o755, "", b""),
            ("./pkg-1.0/", D, 0o700, "", b""),
            ("./pkg-1.0/bin/run", F, 0o700, "", b"#!/bin/sh\n"),
            ("pkg-1.0/README", F, 0o600, "", b"hello"),
            ("pkg-1.0/abs", L, 0o777, &secret.display().to_string(), b""),
            ("pkg-1.0/up", L, 0o777, "../../../../etc", b""),
            ("pkg-1.0/copy", H, 0o644, "./pkg-1.0/README", b""),
        ]);
        for (i, (bytes, format)) in [
            (tar.clone(), None),
            (gzip(&tar), None),
            (xz(&tar), None),
            (gzip(&tar), Some(Format::TarGz)),
            (tar.clone(), Some(Format::Tar)),
        ]
        .into_iter()
        .enumerate()
        {
            let case = Scratch::new(&format!("unpack-tar-{i}"));
            let tree = unpack_bytes(&case, &bytes, format).unwrap();
            let root = tree.join("pkg-1.0");
            assert_eq!(fs::read(root.join("bin/run")).unwrap(), b"#!/bin/sh\n");
            assert_eq!(fs::metadata(root.join("bin/run")).unwrap().permissions().mode() & 0o777, 0o755);
            assert_eq!(fs::metadata(root.join("README")).unwrap().permissions().mode() & 0o777, 0o644);
            assert_eq!(fs::metadata(&root).unwrap().permissions().mode() & 0o777, 0o755);
            assert_eq!(fs::read_link(root.join("abs")).unwrap(), secret);
            assert_eq!(fs::read_link(root.join("up")).unwrap(), PathBuf::from("../../../../etc"));
            // A hard link is a copy with an inode of its own.
            assert_eq!(fs::read(root.join("copy")).unwrap(), b"hello");
            let (a, b) = (fs::metadata(root.join("copy")).unwrap(), fs::metadata(root.join("README")).unwrap());
            assert_ne!(std::os::unix::fs::MetadataExt::ino(&a), std::os::unix::fs::MetadataExt::ino(&b));
        }
        assert_eq!(fs::read_to_string(&secret).unwrap(), "host file");
    }

    #[test]
    fn hostile_tar_entries_are_refused_and_nothing_outside_is_touched() {
        let s = Scratch::new("unpack-hostile");
        let victim = s.0.join("victim");
        fs::create_dir_all(&victim).unwrap();
        fs::write(victim.join("file"), "victim").unwrap();
        let victim_text = victim.display().to_string();
        let victim_file = victim.join("file").display().to_string();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "below a link",
                tar_of(&[("a", L, 0o777, &victim_text, b""), ("a/pwn", F, 0o644, "", b"x")]),
                "symbolic link",
            ),
            ("over a link", tar_of(&[("z", L, 0o777, &victim_file, b""), ("z", F, 0o644, "", b"x")]), "duplicate"),
            ("climbing out", tar_of(&[("../pwn", F, 0o644, "", b"x")]), "'..'"),
            ("absolute", tar_of(&[("/tmp/pwn", F, 0o644, "", b"x")]), "absolute"),
            ("a fifo", tar_of(&[("p", Fifo, 0o644, "", b"")]), "is a fifo"),
            ("a device", tar_of(&[("sda", Block, 0o644, "", b"")]), "is a block device"),
            (
                "hard link through a link",
                tar_of(&[("d", L, 0o777, &victim_text, b""), ("h", H, 0o644, "d/file", b"")]),
                "goes through a symbolic link",
            ),
            ("hard link out", tar_of(&[("h", H, 0o644, "../victim/file", b"")]), "not a plain relative path"),
            ("hard link to nothing", tar_of(&[("h", H, 0o644, "missing", b"")]), "not an earlier entry"),
        ];
        for (what, bytes, expected) in cases {
            let case = Scratch::new("unpack-hostile-case");
            let err = unpack_bytes(&case, &bytes, Some(Format::Tar)).unwrap_err().to_string();
            assert!(err.contains(expected), "{what}: {err}");
        }
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 1);
        assert_eq!(fs::read_to_string(victim.join("file")).unwrap(), "victim");
    }

    #[test]
    fn zips_unpack_with_modes_and_links() {
        let s = Scratch::new("unpack-zip");
        let zip = zip_of(&[
            ("top/", 0o040755, b""),
            ("top/tool", 0o100755, b"#!/bin/sh\n"),
            ("top/data.txt", 0o100644, b"data"),
            ("top/out", 0o120777, b"/etc/passwd"),
        ]);
        let tree = unpack_bytes(&s, &zip, None).unwrap();
        assert_eq!(fs::read(tree.join("top/tool")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(fs::metadata(tree.join("top/tool")).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::metadata(tree.join("top/data.txt")).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(fs::read_link(tree.join("top/out")).unwrap(), PathBuf::from("/etc/passwd"));

        // The writer keeps only permission bits: the file type goes into
        // the central directory's external attributes by hand.
        let mut fifo = zip_of(&[("p", 0o100644, b"")]);
        let central = fifo.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        fifo[central + 38..central + 42].copy_from_slice(&(0o010644u32 << 16).to_le_bytes());
        let err = unpack_bytes(&Scratch::new("unpack-zip-fifo"), &fifo, Some(Format::Zip)).unwrap_err();
        assert!(err.to_string().contains("'p' is a fifo"), "{err}");
        let below = zip_of(&[("l", 0o120777, b"/tmp"), ("l/x", 0o100644, b"x")]);
        let err = unpack_bytes(&Scratch::new("unpack-zip-below"), &below, Some(Format::Zip)).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn formats_come_from_extensions_or_first_bytes() {
        assert_eq!(Format::from_extension("zip").unwrap(), Format::Zip);
        assert_eq!(Format::from_extension(".tar.gz").unwrap(), Format::TarGz);
        assert_eq!(Format::from_extension("tgz").unwrap(), Format::TarGz);
        assert_eq!(Format::from_extension("TAR.XZ").unwrap(), Format::TarXz);
        assert!(Format::from_extension("tar.bz2").unwrap_err().to_string().contains("bzip2"));
        assert!(Format::from_extension("rar").unwrap_err().to_string().contains("unsupported archive extension"));
        assert_eq!(Format::sniff(&gzip(b"x")).unwrap(), Format::TarGz);
        assert_eq!(Format::sniff(&xz(b"x")).unwrap(), Format::TarXz);
        assert_eq!(Format::sniff(&zip_of(&[("a", 0o100644, b"")])).unwrap(), Format::Zip);
        assert_eq!(Format::sniff(&tar_of(&[("a", F, 0o644, "", b"")])).unwrap(), Format::Tar);
        assert!(Format::sniff(b"BZh91AY").unwrap_err().to_string().contains("bzip2"));
        assert!(Format::sniff(b"<html>").unwrap_err().to_string().contains("not an archive"));
    }

    #[test]
    fn strip_root_takes_the_one_top_level_entry() {
        let s = Scratch::new("unpack-strip");
        let tree = s.0.join("one");
        fs::create_dir_all(tree.join("pkg/src")).unwrap();
        place(&tree, &s.0.join("out"), true).unwrap();
        assert!(s.0.join("out/src").is_dir());

        let file = s.0.join("file");
        fs::create_dir_all(&file).unwrap();
        fs::write(file.join("only.txt"), "x").unwrap();
        place(&file, &s.0.join("out-file"), true).unwrap();
        assert_eq!(fs::read_to_string(s.0.join("out-file/only.txt")).unwrap(), "x");

        let two = s.0.join("two");
        fs::create_dir_all(two.join("a")).unwrap();
        fs::write(two.join("b"), "").unwrap();
        let err = place(&two, &s.0.join("out-two"), true).unwrap_err().to_string();
        assert!(err.contains("holds 2 ('a', 'b')") && err.contains("stripRoot = false"), "{err}");
        place(&two, &s.0.join("out-flat"), false).unwrap();
        assert!(s.0.join("out-flat/a").is_dir() && s.0.join("out-flat/b").is_file());
    }
}
