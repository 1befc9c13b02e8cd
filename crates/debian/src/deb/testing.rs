//! Hand-made `.deb` files for the tests of this crate: `ar` and tar bytes
//! written directly, so that malformed and hostile packages can be made too.

use std::io::Write;

use super::Compression;

/// One entry of a test tar.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    Dir(&'static str),
    File(&'static str, u32, &'static [u8]),
    Link(&'static str, &'static str),
    Hard(&'static str, &'static str),
    Fifo(&'static str),
}

/// A tar archive of `entries`, names written verbatim (`..` and absolute
/// paths included).
pub(crate) fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        match *entry {
            Entry::Dir(name) => append(&mut out, name, tar::EntryType::Directory, 0o755, "", b""),
            Entry::File(name, mode, body) => append(&mut out, name, tar::EntryType::Regular, mode, "", body),
            Entry::Link(name, target) => append(&mut out, name, tar::EntryType::Symlink, 0o777, target, b""),
            Entry::Hard(name, target) => append(&mut out, name, tar::EntryType::Link, 0o644, target, b""),
            Entry::Fifo(name) => append(&mut out, name, tar::EntryType::Fifo, 0o644, "", b""),
        }
    }
    end(out)
}

/// Appends one tar entry to `out`.
fn append(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, mode: u32, link: &str, body: &[u8]) {
    let mut header = tar::Header::new_gnu();
    let gnu = header.as_gnu_mut().expect("a GNU header");
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(body.len() as u64);
    header.set_mtime(1_700_000_000);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// `out` with the two zero blocks that end a tar archive.
fn end(mut out: Vec<u8>) -> Vec<u8> {
    out.resize(out.len() + 1024, 0);
    out
}

/// `bytes` compressed with `compression`.
pub(crate) fn compress(bytes: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => bytes.to_vec(),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        }
        Compression::Xz => {
            let mut encoder = xz2::write::XzEncoder::new(Vec::new(), 1);
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        }
        Compression::Zstd => zstd::stream::encode_all(bytes, 1).unwrap(),
    }
}

/// An `ar` archive of `members`.
pub(crate) fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, body) in members {
        let header = format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", 0, 0, 0, 100644, body.len());
        assert_eq!(header.len(), 60);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        if body.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// The file-name suffix of `compression`.
pub(crate) fn suffix(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "",
        Compression::Gzip => ".gz",
        Compression::Xz => ".xz",
        Compression::Zstd => ".zst",
    }
}

/// A `.deb` whose control file is `control` (plus `md5sums` when given,
/// and a `postinst`) and whose data is `data`.
pub(crate) fn deb(control: &str, md5sums: Option<&[u8]>, data: &[Entry], compression: Compression) -> Vec<u8> {
    let mut control_tar = Vec::new();
    append(&mut control_tar, "./", tar::EntryType::Directory, 0o755, "", b"");
    append(&mut control_tar, "./control", tar::EntryType::Regular, 0o644, "", control.as_bytes());
    if let Some(md5sums) = md5sums {
        append(&mut control_tar, "./md5sums", tar::EntryType::Regular, 0o644, "", md5sums);
    }
    append(&mut control_tar, "./postinst", tar::EntryType::Regular, 0o755, "", b"#!/bin/sh\nexit 1\n");
    let control_tar = compress(&end(control_tar), compression);
    let data_tar = compress(&tar(data), compression);
    let (control_name, data_name) =
        (format!("control.tar{}", suffix(compression)), format!("data.tar{}", suffix(compression)));
    ar(&[("debian-binary", b"2.0\n"), (&control_name, &control_tar), (&data_name, &data_tar)])
}

/// A `.deb` whose control file is `control` and whose `data.tar` (uncompressed) is `data_tar`.
pub(crate) fn deb_with_data_tar(control: &str, data_tar: &[u8]) -> Vec<u8> {
    let mut control_tar = Vec::new();
    append(&mut control_tar, "./control", tar::EntryType::Regular, 0o644, "", control.as_bytes());
    ar(&[("debian-binary", b"2.0\n"), ("control.tar", &end(control_tar)), ("data.tar", data_tar)])
}

/// A control paragraph for `name` `version` on `arch`.
pub(crate) fn control(name: &str, version: &str, arch: &str) -> String {
    format!("Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Test <t@example.org>\nDescription: test package {name}\n It is made by hand.\n")
}
