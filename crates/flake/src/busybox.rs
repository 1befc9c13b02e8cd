//! The one thing builds take from the host: a statically linked busybox.
//! Builds see only the store, so the prelude's shell and tools must be a
//! store path; it is made from the host's binary by content alone (the
//! binary plus one relative symlink per applet it lists), so its path
//! changes exactly when that binary does. Only a static binary will do: a
//! dynamic one would need a loader and libraries the sandbox does not have.
//!
//! Every flake evaluation needs this path, so it is computed in memory
//! from the tree's archive (a couple of milliseconds for the 2 MB binary);
//! the tree is only written out when the store does not have it yet.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use mini_store::elf::{self, Loader};
use mini_store::nar::{self, Node};
use mini_store::store::Store;
use mini_store::store_path::{PathKind, StorePath};

use crate::FlakeError;

/// Where a busybox is looked for after `$MINI_BUSYBOX`.
const HOST_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// The store path name of the imported tree.
const NAME: &str = "busybox";

/// Adds the host's static busybox to the store (nearly free when it is
/// already there) and returns its store path.
pub(crate) fn import(store: &Store) -> Result<StorePath, FlakeError> {
    let binary = find()?;
    let applets = applets(&binary)?;
    let contents =
        std::fs::read(&binary).map_err(|source| FlakeError::Io { action: "reading", path: binary.clone(), source })?;
    let tree = tree(contents, &applets);
    let mut hasher = blake3::Hasher::new();
    nar::encode(&tree, &mut hasher).map_err(mini_store::store::StoreError::from)?;
    let kind = PathKind::Source { references: &[] };
    let path = StorePath::compute(&kind, "blake3", hasher.finalize().as_bytes(), NAME)
        .map_err(mini_store::store::StoreError::from)?;
    if store.hold(&path)? {
        return Ok(path);
    }
    let staging = store.staging_dir()?;
    let added = write_tree(&tree, &staging.join(NAME)).and_then(|()| Ok(store.add_path(&staging.join(NAME), NAME)?));
    // Best effort: a leftover staging directory is removed by the next `Store::open`.
    let _ = std::fs::remove_dir_all(&staging);
    added
}

/// `$MINI_BUSYBOX` if set (and then nothing else), else the first static
/// busybox among [`HOST_PATHS`].
pub fn find() -> Result<PathBuf, FlakeError> {
    let candidates: Vec<(PathBuf, &str)> = match std::env::var_os("MINI_BUSYBOX") {
        Some(path) => vec![(PathBuf::from(path), "$MINI_BUSYBOX")],
        None => HOST_PATHS.iter().map(|p| (PathBuf::from(p), "")).collect(),
    };
    let mut tried = Vec::new();
    for (path, via) in candidates {
        let via = if via.is_empty() { String::new() } else { format!(" ({via})") };
        match linkage(&path) {
            Ok(Linkage::Static) => return Ok(path),
            Ok(Linkage::Dynamic) => {
                tried.push(format!("'{}'{via} is dynamically linked (it has an ELF interpreter)", path.display()))
            }
            Ok(Linkage::NotElf) => tried.push(format!("'{}'{via} is not an ELF executable", path.display())),
            Err(e) => tried.push(format!("'{}'{via}: {e}", path.display())),
        }
    }
    Err(FlakeError::NoBusybox { tried })
}

#[derive(Debug, PartialEq, Eq)]
enum Linkage {
    Static,
    Dynamic,
    NotElf,
}

/// Reads an ELF file's program headers: it is dynamically linked exactly
/// when one of them names an interpreter (`PT_INTERP`).
fn linkage(path: &Path) -> std::io::Result<Linkage> {
    let mut bytes = Vec::new();
    // The headers sit at the start; 64 KiB is far more than any real table.
    std::fs::File::open(path)?.take(64 << 10).read_to_end(&mut bytes)?;
    Ok(elf_linkage(&bytes))
}

fn elf_linkage(bytes: &[u8]) -> Linkage {
    match elf::loader(bytes) {
        Loader::NotElf => Linkage::NotElf,
        Loader::Static => Linkage::Static,
        Loader::At { .. } => Linkage::Dynamic,
    }
}

/// The applet names `busybox --list` prints (a function of the binary alone).
fn applets(binary: &Path) -> Result<Vec<String>, FlakeError> {
    let failed = |message: String| FlakeError::BusyboxApplets { binary: binary.to_path_buf(), message };
    let output = Command::new(binary).arg("--list").output().map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!("it exited with {}", output.status)));
    }
    let text = String::from_utf8(output.stdout).map_err(|_| failed("its output is not UTF-8".into()))?;
    let mut names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "busybox" && !name.contains('/') && !name.starts_with('.'))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(failed("it lists no applets".into()));
    }
    Ok(names)
}

/// `bin/busybox` and `bin/<applet> -> busybox` for every applet.
fn tree(binary: Vec<u8>, applets: &[String]) -> Node {
    let mut bin: BTreeMap<Vec<u8>, Node> = applets
        .iter()
        .map(|name| (name.as_bytes().to_vec(), Node::Symlink { target: NAME.as_bytes().to_vec() }))
        .collect();
    bin.insert(NAME.as_bytes().to_vec(), Node::Regular { executable: true, contents: binary });
    Node::Directory(BTreeMap::from([(b"bin".to_vec(), Node::Directory(bin))]))
}

/// Writes a tree to disk, for the store to add.
fn write_tree(node: &Node, path: &Path) -> Result<(), FlakeError> {
    let io = |action: &'static str| move |source| FlakeError::Io { action, path: path.to_path_buf(), source };
    match node {
        Node::Directory(entries) => {
            std::fs::create_dir(path).map_err(io("creating"))?;
            for (name, child) in entries {
                write_tree(child, &path.join(std::ffi::OsStr::from_bytes(name)))?;
            }
        }
        Node::Regular { executable, contents } => {
            std::fs::write(path, contents).map_err(io("writing"))?;
            let mode = if *executable { 0o555 } else { 0o444 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("setting the mode of"))?;
        }
        Node::Symlink { target } => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path).map_err(io("linking"))?
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mini_store::elf::PT_INTERP;

    use super::*;

    /// A minimal 64-bit little-endian ELF header with one program header.
    fn elf64(p_type: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&p_type.to_le_bytes());
        b
    }

    #[test]
    fn an_interpreter_header_means_dynamic() {
        assert_eq!(elf_linkage(&elf64(1)), Linkage::Static);
        assert_eq!(elf_linkage(&elf64(PT_INTERP)), Linkage::Dynamic);
        assert_eq!(elf_linkage(b"#!/bin/sh\necho hi\n"), Linkage::NotElf);
        let mut truncated = elf64(1);
        truncated.truncate(66);
        assert_eq!(elf_linkage(&truncated), Linkage::NotElf);
    }

    #[test]
    fn the_tree_written_out_hashes_as_the_tree_in_memory() {
        let node = tree(b"#!/bin/sh\n".to_vec(), &["sh".to_string(), "[".to_string()]);
        let mut hasher = blake3::Hasher::new();
        nar::encode(&node, &mut hasher).unwrap();
        let dir = std::env::temp_dir().join(format!("mini-busybox-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_tree(&node, &dir.join(NAME)).unwrap();
        assert_eq!(std::fs::read_link(dir.join("busybox/bin/sh")).unwrap(), Path::new("busybox"));
        assert_eq!(nar::hash_path(&dir.join(NAME)).unwrap().0, hasher.finalize());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_test_binary_is_dynamic() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(linkage(&exe).unwrap(), Linkage::Dynamic);
    }
}
