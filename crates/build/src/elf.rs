//! Why a program cannot run in a build: a dynamically linked ELF binary
//! names its loader (the `PT_INTERP` program header, such as
//! `/lib64/ld-linux-x86-64.so.2`), and a build has nothing outside the
//! store, so the kernel's exec fails with ENOENT and a shell says only
//! `not found`. When a build fails, the scheduler looks at the builder
//! and at the programs in `bin/` and `sbin/` of each input, and names
//! those whose loader is not in the store.
//!
//! The header parser is pure; the I/O reads only the ELF header, the
//! program header table and the loader's name, never a whole file, and
//! follows links only while they stay in the store.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use mini_store::store::Store;
use mini_store::store_path::{StorePath, STORE_DIR};

/// The program header type naming the interpreter (the dynamic loader).
const PT_INTERP: u32 = 3;
/// Bytes read from the start of a file: the ELF header, and with it, in
/// every binary a linker makes, the program headers and the loader's name.
const HEAD: usize = 4096;
/// The longest loader name looked at (Linux's own limit is `PATH_MAX`).
const MAX_INTERP: u64 = 4096;
/// Links followed when looking for a program, as the kernel's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;
/// Programs named in one failure; a hint is not an inventory.
pub const MAX_HINTS: usize = 10;

/// What an ELF file's program headers say about its loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loader {
    /// Not an ELF file (a script, data), or one too malformed to read.
    NotElf,
    /// No `PT_INTERP`: a static binary, which needs nothing.
    Static,
    /// The loader's name is `len` bytes at `offset` in the file.
    At { offset: u64, len: u64 },
}

/// Reads the program headers in `head`, the start of a file. Any ELF class
/// and byte order; a header table beyond `head` reads as [`Loader::NotElf`].
pub fn loader(head: &[u8]) -> Loader {
    if head.len() < 52 || &head[..4] != b"\x7fELF" {
        return Loader::NotElf;
    }
    let little = match head[5] {
        1 => true,
        2 => false,
        _ => return Loader::NotElf,
    };
    let read = |at: u64, len: usize| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let field = head.get(at..at.checked_add(len)?)?;
        let bytes = field.iter().copied();
        Some(if little {
            bytes.rev().fold(0, |value, byte| (value << 8) | u64::from(byte))
        } else {
            bytes.fold(0, |value, byte| (value << 8) | u64::from(byte))
        })
    };
    // Where e_phoff, e_phentsize and e_phnum are, and in each program
    // header p_offset and p_filesz, with their sizes, per class.
    let (phoff, phentsize, phnum, p_offset, p_filesz, word) = match head[4] {
        1 => (28, 42, 44, 4, 16, 4),
        2 => (32, 54, 56, 8, 32, 8),
        _ => return Loader::NotElf,
    };
    let (Some(table), Some(entry), Some(count)) = (read(phoff, word), read(phentsize, 2), read(phnum, 2)) else {
        return Loader::NotElf;
    };
    for i in 0..count {
        let Some(at) = table.checked_add(i * entry) else { return Loader::NotElf };
        let Some(p_type) = read(at, 4) else { return Loader::NotElf };
        if p_type == u64::from(PT_INTERP) {
            return match (read(at + p_offset, word), read(at + p_filesz, word)) {
                (Some(offset), Some(len)) => Loader::At { offset, len },
                _ => Loader::NotElf,
            };
        }
    }
    Loader::Static
}

/// The loader named by the bytes of a `PT_INTERP` segment: up to the NUL.
pub fn interpreter_name(segment: &[u8]) -> String {
    let end = segment.iter().position(|&b| b == 0).unwrap_or(segment.len());
    String::from_utf8_lossy(&segment[..end]).into_owned()
}

/// The loader of the regular file `file` (already open), if it has one.
fn interpreter_of(file: &File) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(HEAD);
    file.take(HEAD as u64).read_to_end(&mut head)?;
    let Loader::At { offset, len } = loader(&head) else { return Ok(None) };
    let len = len.min(MAX_INTERP);
    let segment = match usize::try_from(offset).ok().zip(usize::try_from(len).ok()) {
        Some((start, len)) if start.saturating_add(len) <= head.len() => head[start..start + len].to_vec(),
        _ => {
            let mut segment = vec![0; len as usize];
            let read = file.read_at(&mut segment, offset)?;
            segment.truncate(read);
            segment
        }
    };
    Ok(Some(interpreter_name(&segment)))
}

/// A program that needs a loader a build does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrunnable {
    /// The program as a build names it: `/mini/store/<hash>-go/bin/go`.
    pub program: String,
    pub interpreter: String,
}

impl Unrunnable {
    /// `/mini/store/…-go/bin/go needs /lib64/ld-linux-x86-64.so.2, which builds do not have`.
    pub fn describe(&self) -> String {
        format!("{} needs {}, which builds do not have", self.program, self.interpreter)
    }
}

/// The loader of `program` (a path under `/mini/store`) if it is an ELF
/// file whose loader is outside the store; `None` when it is not, or
/// cannot be read (a hint is best effort).
pub fn unrunnable(store: &Store, program: &str) -> Option<Unrunnable> {
    let file = open_in_store(store, program)?;
    let interpreter = interpreter_of(&file).ok()??;
    outside_store(&interpreter).then(|| Unrunnable { program: program.to_string(), interpreter })
}

/// Whether a loader's name lies outside the store, where builds cannot reach it.
fn outside_store(interpreter: &str) -> bool {
    !interpreter.strip_prefix(STORE_DIR).is_some_and(|rest| rest.starts_with('/'))
}

/// The programs in `bin/` and `sbin/` of each of `roots` (input store
/// paths, not their closures) whose loader is outside the store, sorted.
pub fn unrunnable_inputs(store: &Store, roots: &[StorePath]) -> Vec<Unrunnable> {
    let mut found = Vec::new();
    // The physical files already read: busybox's hundreds of applets are one file.
    let mut seen: BTreeSet<(u64, u64)> = BTreeSet::new();
    for root in roots {
        for dir in ["bin", "sbin"] {
            let physical = store.physical_path(root).join(dir);
            // A `bin` that is a link is not followed: it may lead anywhere.
            let Ok(meta) = fs::symlink_metadata(&physical) else { continue };
            if !meta.is_dir() {
                continue;
            }
            let Ok(entries) = fs::read_dir(&physical) else { continue };
            let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
            names.sort();
            for name in names {
                let program = format!("{root}/{dir}/{}", name.to_string_lossy());
                let Some(file) = open_in_store(store, &program) else { continue };
                let Ok(meta) = file.metadata() else { continue };
                if meta.mode() & 0o111 == 0 || !seen.insert((meta.dev(), meta.ino())) {
                    continue;
                }
                if let Ok(Some(interpreter)) = interpreter_of(&file) {
                    if outside_store(&interpreter) {
                        found.push(Unrunnable { program, interpreter });
                    }
                }
            }
        }
    }
    found
}

/// Opens the regular file a build would reach at `logical` (a path under
/// `/mini/store`), following links as the kernel would but only while
/// they stay in the store: a store path may hold a link to any host file,
/// which mini never reads on a builder's word.
fn open_in_store(store: &Store, logical: &str) -> Option<File> {
    let store_dir = store.root().join("store");
    let mut todo: Vec<String> = components(logical.strip_prefix(STORE_DIR)?)?;
    todo.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            resolved.pop()?;
            continue;
        }
        let here: PathBuf = store_dir.join(resolved.iter().collect::<PathBuf>()).join(&name);
        let meta = fs::symlink_metadata(&here).ok()?;
        if !meta.file_type().is_symlink() {
            resolved.push(name);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return None;
        }
        let target = fs::read_link(&here).ok()?;
        let target = target.to_str()?;
        let mut next = match target.strip_prefix(STORE_DIR) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                resolved.clear();
                components(rest)?
            }
            _ if target.starts_with('/') => return None,
            _ => components(target)?,
        };
        next.reverse();
        todo.extend(next);
    }
    let path: PathBuf = store_dir.join(resolved.iter().collect::<PathBuf>());
    // Store files are canonical (no fifos or devices); O_NOFOLLOW keeps the last step a file.
    let file = File::options().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

/// The names in a relative path, `.` dropped; `None` if not UTF-8.
fn components(path: &str) -> Option<Vec<String>> {
    Path::new(path.trim_start_matches('/'))
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_str().map(str::to_string)),
            Component::ParentDir => Some(Some("..".to_string())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;
    use crate::testing::Scratch;

    /// A 64-bit little-endian ELF file: a `PT_LOAD` header, then (if
    /// `interp` is given) a `PT_INTERP` header naming it, placed `at`.
    fn elf64(interp: Option<&str>, at: usize) -> Vec<u8> {
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
            b[header..header + 4].copy_from_slice(&PT_INTERP.to_le_bytes());
            b[header + 8..header + 16].copy_from_slice(&(at as u64).to_le_bytes());
            b[header + 32..header + 40].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
            b.resize(b.len().max(at), 0);
            b.truncate(at);
            b.extend_from_slice(interp.as_bytes());
            b.push(0);
        }
        b
    }

    /// A 32-bit big-endian ELF header whose one program header is `PT_INTERP`.
    fn elf32_big_endian(offset: u32, len: u32) -> Vec<u8> {
        let mut b = vec![0u8; 52 + 32];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 1;
        b[5] = 2;
        b[28..32].copy_from_slice(&52u32.to_be_bytes());
        b[42..44].copy_from_slice(&32u16.to_be_bytes());
        b[44..46].copy_from_slice(&1u16.to_be_bytes());
        b[52..56].copy_from_slice(&PT_INTERP.to_be_bytes());
        b[56..60].copy_from_slice(&offset.to_be_bytes());
        b[68..72].copy_from_slice(&len.to_be_bytes());
        b
    }

    #[test]
    fn the_interpreter_header_gives_the_loader_location() {
        assert_eq!(loader(&elf64(None, 0)), Loader::Static);
        let dynamic = elf64(Some("/lib64/ld-linux-x86-64.so.2"), 0x200);
        assert_eq!(loader(&dynamic), Loader::At { offset: 0x200, len: 28 }, "with its NUL");
        assert_eq!(interpreter_name(&dynamic[0x200..]), "/lib64/ld-linux-x86-64.so.2");
        assert_eq!(loader(&elf32_big_endian(0x154, 19)), Loader::At { offset: 0x154, len: 19 });
    }

    #[test]
    fn anything_else_is_not_elf_and_never_panics() {
        assert_eq!(loader(b"#!/bin/sh\necho hi\n"), Loader::NotElf);
        assert_eq!(loader(b""), Loader::NotElf);
        let mut bad_class = elf64(None, 0);
        bad_class[4] = 9;
        assert_eq!(loader(&bad_class), Loader::NotElf);
        // A program header table past the bytes read, or at an overflowing offset.
        let mut far = elf64(None, 0);
        far[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(loader(&far), Loader::NotElf);
        let mut truncated = elf64(Some("/lib/ld.so"), 0x100);
        truncated.truncate(64 + 60);
        assert_eq!(loader(&truncated), Loader::NotElf);
        // Every prefix of a real header parses to something.
        let full = elf64(Some("/lib/ld.so"), 0x100);
        for len in 0..full.len() {
            let _ = loader(&full[..len]);
        }
        assert_eq!(interpreter_name(b"/lib/ld.so"), "/lib/ld.so", "no NUL: the whole segment");
    }

    #[test]
    fn a_host_program_names_the_host_loader() {
        // This test binary is linked dynamically against the host's libc.
        let exe = std::env::current_exe().unwrap();
        let interp = interpreter_of(&File::open(&exe).unwrap()).unwrap();
        let interp = interp.expect("the test binary has an interpreter");
        assert!(interp.starts_with('/') && interp.contains("ld"), "{interp}");
        if let Ok(ls) = File::open("/bin/ls") {
            assert_eq!(interpreter_of(&ls).unwrap().as_deref(), Some(interp.as_str()));
        }
    }

    /// A store path named `name` whose hash part repeats `c`.
    fn store_path(c: char, name: &str) -> StorePath {
        StorePath::parse_base_name(&format!("{}-{name}", c.to_string().repeat(32))).unwrap()
    }

    fn executable(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o555)).unwrap();
    }

    #[test]
    fn inputs_are_searched_in_bin_and_sbin_through_links_that_stay_in_the_store() {
        let s = Scratch::new("elf-inputs");
        let store = Store::open(&s.0).unwrap();
        let (go, tools, musl) = (store_path('a', "go"), store_path('b', "tools"), store_path('c', "musl"));
        let dir = |p: &StorePath| store.physical_path(p);
        let host_loader = elf64(Some("/lib64/ld-linux-x86-64.so.2"), 0x200);
        executable(&dir(&go).join("share/go/bin/go"), &host_loader);
        executable(&dir(&go).join("bin/gofmt"), &elf64(None, 0));
        symlink("../share/go/bin/go", dir(&go).join("bin/go")).unwrap();
        executable(&dir(&go).join("bin/script"), b"#!/bin/sh\n");
        // Not executable: not a program.
        fs::write(dir(&go).join("bin/data"), &host_loader).unwrap();
        // The same file twice is named once.
        symlink("go", dir(&go).join("bin/go-again")).unwrap();
        // A loader in the store is fine; links leaving the store are not followed.
        executable(&dir(&tools).join("sbin/tool"), &elf64(Some(&format!("{musl}/lib/ld.so")), 0x200));
        symlink(std::env::current_exe().unwrap(), dir(&tools).join("sbin/host")).unwrap();
        symlink("../../../../bin/ls", dir(&tools).join("sbin/climbing")).unwrap();
        symlink(format!("{go}/share/go/bin/go"), dir(&tools).join("sbin/absolute")).unwrap();
        let found = unrunnable_inputs(&store, &[go.clone(), tools.clone(), musl.clone()]);
        let described: Vec<String> = found.iter().map(Unrunnable::describe).collect();
        assert_eq!(
            described,
            [format!("{go}/bin/go needs /lib64/ld-linux-x86-64.so.2, which builds do not have")],
            "the absolute link reaches the same file, already named"
        );
        let builder = format!("{tools}/sbin/absolute");
        assert_eq!(
            unrunnable(&store, &builder),
            Some(Unrunnable { program: builder.clone(), interpreter: "/lib64/ld-linux-x86-64.so.2".into() })
        );
        assert_eq!(unrunnable(&store, &format!("{tools}/sbin/tool")), None);
        assert_eq!(unrunnable(&store, &format!("{tools}/sbin/host")), None);
        assert_eq!(unrunnable(&store, "/bin/sh"), None, "not in the store");
    }
}
