//! Test support for the crates whose tests feed unpackers random input (the
//! store's archive restore and tree writer, git trees, binary caches): a
//! seeded generator, so a failing case can be replayed, and a snapshot of a
//! tree, so a test can show nothing outside a destination changed, and ELF
//! headers made to order. Built
//! for this crate's tests and, through the `testing` feature, for other
//! crates' tests; never part of mini itself.

use std::fs;
use std::path::{Path, PathBuf};

/// xorshift64: a seeded, repeatable stream of choices.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Everything below `dir` with file contents, without following links.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read a directory of the snapshot") {
            let path = entry.expect("read a directory entry").path();
            let meta = fs::symlink_metadata(&path).expect("stat an entry");
            found.push((path.clone(), meta.is_file().then(|| fs::read(&path).expect("read a file"))));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A fresh directory for one test, removed (read-only parts included) when
/// dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new empty directory named after `tag`, unique in this process.
    pub fn new(tag: &str) -> Scratch {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mini-test-{tag}-{}-{n}", std::process::id()));
        crate::store::discard_tree(&dir);
        fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        crate::store::discard_tree(&self.0);
    }
}

/// A 64-bit little-endian ELF file: a `PT_LOAD` header, then (if
/// `interp` is given) a `PT_INTERP` header naming it, placed `at`.
pub fn elf64(interp: Option<&str>, at: usize) -> Vec<u8> {
    let mut b = vec![0u8; 64 + 2 * 56];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&2u16.to_le_bytes());
    b[64..68].copy_from_slice(&1u32.to_le_bytes());
    if let Some(interp) = interp {
        let header = 64 + 56;
        b[header..header + 4].copy_from_slice(&crate::elf::PT_INTERP.to_le_bytes());
        b[header + 8..header + 16].copy_from_slice(&(at as u64).to_le_bytes());
        b[header + 32..header + 40].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
        b.resize(b.len().max(at), 0);
        b.truncate(at);
        b.extend_from_slice(interp.as_bytes());
        b.push(0);
    }
    b
}
