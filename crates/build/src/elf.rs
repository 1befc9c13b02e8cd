//! Why a program cannot run in a build: a dynamically linked ELF binary
//! names its loader (the `PT_INTERP` program header, such as
//! `/lib64/ld-linux-x86-64.so.2`), and a build has nothing outside the
//! store, so the kernel's exec fails with ENOENT and a shell says only
//! `not found`. When a build fails, the scheduler looks at the builder
//! and at the programs in `bin/` and `sbin/` of each input, and names
//! those whose loader is not in the store.
//!
//! The header parser is `mini_store::elf`; this reads only the ELF header, the
//! program header table and the loader's name, never a whole file, and
//! follows links only while they stay in the store.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use mini_store::elf::{interpreter_name, loader, Loader};
use mini_store::store::Store;
use mini_store::store_path::{StorePath, STORE_DIR};

/// Bytes read from the start of a file: the ELF header, and with it, in
/// every binary a linker makes, the program headers and the loader's name.
const HEAD: usize = 4096;
/// The longest loader name looked at (Linux's own limit is `PATH_MAX`).
const MAX_INTERP: u64 = 4096;
/// Links followed when looking for a program, as the kernel's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;
/// Programs named in one failure; a hint is not an inventory.
pub const MAX_HINTS: usize = 10;

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
    let store_dir = store.store_dir();
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
    use mini_store::testing::elf64;

    use crate::testing::Scratch;

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
