//! Test fixtures shared by the archive's modules: golden tokens written out
//! by hand, scratch directories, and builders of (possibly hostile) archives.

use std::fs::{self, Permissions};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::writer::{push_token, CLOSE};
use super::*;

// Golden tokens, written out by hand: length (u64 LE), bytes, zero padding.
pub(super) const MAGIC_T: &[u8] = b"\x0d\0\0\0\0\0\0\0nix-archive-1\0\0\0";
pub(super) const OPEN_T: &[u8] = b"\x01\0\0\0\0\0\0\0(\0\0\0\0\0\0\0";
pub(super) const CLOSE_T: &[u8] = b"\x01\0\0\0\0\0\0\0)\0\0\0\0\0\0\0";
pub(super) const TYPE_T: &[u8] = b"\x04\0\0\0\0\0\0\0type\0\0\0\0";
pub(super) const REGULAR_T: &[u8] = b"\x07\0\0\0\0\0\0\0regular\0";
pub(super) const EXECUTABLE_T: &[u8] = b"\x0a\0\0\0\0\0\0\0executable\0\0\0\0\0\0";
pub(super) const EMPTY_T: &[u8] = b"\0\0\0\0\0\0\0\0";
pub(super) const CONTENTS_T: &[u8] = b"\x08\0\0\0\0\0\0\0contents";
pub(super) const HELLO_T: &[u8] = b"\x05\0\0\0\0\0\0\0hello\0\0\0";
pub(super) const SYMLINK_T: &[u8] = b"\x07\0\0\0\0\0\0\0symlink\0";
pub(super) const TARGET_T: &[u8] = b"\x06\0\0\0\0\0\0\0target\0\0";
pub(super) const UP_TARGET_T: &[u8] = b"\x06\0\0\0\0\0\0\0../a/b\0\0";
pub(super) const DIRECTORY_T: &[u8] = b"\x09\0\0\0\0\0\0\0directory\0\0\0\0\0\0\0";
pub(super) const ENTRY_T: &[u8] = b"\x05\0\0\0\0\0\0\0entry\0\0\0";
pub(super) const NAME_T: &[u8] = b"\x04\0\0\0\0\0\0\0name\0\0\0\0";
pub(super) const NODE_T: &[u8] = b"\x04\0\0\0\0\0\0\0node\0\0\0\0";
pub(super) const A_T: &[u8] = b"\x01\0\0\0\0\0\0\0a\0\0\0\0\0\0\0";
pub(super) const B_T: &[u8] = b"\x01\0\0\0\0\0\0\0b\0\0\0\0\0\0\0";

pub(super) fn golden_file() -> Vec<u8> {
    [MAGIC_T, OPEN_T, TYPE_T, REGULAR_T, CONTENTS_T, HELLO_T, CLOSE_T].concat()
}

pub(super) fn golden_executable() -> Vec<u8> {
    [MAGIC_T, OPEN_T, TYPE_T, REGULAR_T, EXECUTABLE_T, EMPTY_T, CONTENTS_T, HELLO_T, CLOSE_T].concat()
}

pub(super) fn golden_symlink() -> Vec<u8> {
    [MAGIC_T, OPEN_T, TYPE_T, SYMLINK_T, TARGET_T, UP_TARGET_T, CLOSE_T].concat()
}

/// A directory holding file `a` ("hello") and symlink `b` -> `a`.
pub(super) fn golden_directory() -> Vec<u8> {
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
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mini-archive-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub(super) fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn write_file(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

pub(super) fn dump(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let len = dump_path(path, &mut out).unwrap();
    assert_eq!(len, out.len() as u64);
    out
}

/// Checks every way of producing an archive for the tree at `path` against `golden`.
pub(super) fn assert_archive(path: &Path, golden: &[u8], scratch: &Scratch) {
    assert_eq!(dump(path), golden);
    assert_eq!(hash_path(path).unwrap(), (blake3::hash(golden), golden.len() as u64));
    assert_eq!(validate(&mut &golden[..]).unwrap(), golden.len() as u64);
    let restored = scratch.join("restored");
    restore(&mut &golden[..], &restored).unwrap();
    assert_eq!(dump(&restored), golden);
    fs::remove_dir_all(&restored).or_else(|_| fs::remove_file(&restored)).unwrap();
}

pub(super) fn encoded(node: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    assert_eq!(encode(node, &mut out).unwrap(), out.len() as u64);
    out
}

pub(super) fn regular(executable: bool, contents: &[u8]) -> Node {
    Node::Regular { executable, contents: contents.to_vec() }
}

/// Deterministic pseudo-random bytes.
pub(super) fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

pub(super) fn build_tree(root: &Path) {
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

/// Encodes `tokens` as an archive's bytes.
pub(super) fn tokens(tokens: &[&[u8]]) -> Vec<u8> {
    let mut buf = Vec::new();
    for token in tokens {
        push_token(&mut buf, token);
    }
    buf
}

/// A directory archive with an empty regular file under each name, in the order given.
pub(super) fn directory_of(names: &[&[u8]]) -> Vec<u8> {
    let mut buf = tokens(&[b"nix-archive-1", b"(", b"type", b"directory"]);
    for name in names {
        buf.extend(tokens(&[b"entry", b"(", b"name", name, b"node"]));
        buf.extend(tokens(&[b"(", b"type", b"regular", b"contents", b"", b")", b")"]));
    }
    buf.extend(tokens(&[b")"]));
    buf
}

/// `depth` directories nested inside one another, built without recursion.
pub(super) fn nested(depth: usize) -> Vec<u8> {
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
pub(super) fn restore_fails(archive: &[u8], scratch: &Scratch) -> NarError {
    let dest = scratch.join("dest");
    let err = restore(&mut &archive[..], &dest).unwrap_err();
    assert!(fs::symlink_metadata(&dest).is_err(), "{} left behind after: {err}", dest.display());
    let validated = validate(&mut &archive[..]).unwrap_err();
    assert_eq!(validated.to_string(), err.to_string());
    err
}

pub(super) fn malformed_message(err: NarError) -> (u64, String) {
    match err {
        NarError::Malformed { offset, message } => (offset, message),
        other => panic!("expected Malformed, got {other:?}"),
    }
}
