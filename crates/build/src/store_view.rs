//! `mini run`: runs a built program where the store is visible at
//! `/mini/store`, whatever its physical root. Store paths refer to each
//! other by their `/mini/store/...` names, so a result only works where
//! that directory holds the store.
//!
//! The program runs as the calling user in a new user and mount namespace
//! whose root mirrors the host's (every top-level entry bind-mounted) plus
//! `/mini/store`, bound to the physical store read-only. Like the sandbox,
//! this needs a single-threaded process: `mini` re-executes itself with
//! [`RUN_HELPER_ARG`].

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};
use crate::mounts::{bind, enter_root, errno, mount};
use mini_store::STORE_DIR;

/// First argument that turns the `mini` binary into the run helper.
pub const RUN_HELPER_ARG: &str = "__mini-run";

/// First argument that turns the `mini` binary into the namespace probe
/// (`mini doctor`'s): enter the namespaces `mini run` and builds need, then
/// exit 0, or say why not and exit 1.
pub const PROBE_ARG: &str = "__mini-probe-userns";

/// The probe's main; see [`PROBE_ARG`]. Never returns. Must run before the
/// process starts a thread, as `unshare(CLONE_NEWUSER)` requires.
pub fn probe_main() -> ! {
    match enter_namespaces() {
        Ok(()) => std::process::exit(0),
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(1)
        }
    }
}

/// The command that runs `program` with `args` in the store view;
/// `scratch` is an empty directory to build the view's root in.
pub fn run_command(
    store_dir: &Path,
    scratch: &Path,
    program: &str,
    args: &[OsString],
) -> Result<std::process::Command> {
    let exe = std::env::current_exe().map_err(io_err("finding", Path::new("/proc/self/exe")))?;
    let mut command = std::process::Command::new(exe);
    command.arg(RUN_HELPER_ARG).arg(store_dir).arg(scratch).arg(program).args(args);
    Ok(command)
}

/// The helper's main; see the module comment. Never returns.
pub fn helper_main(args: &[OsString]) -> ! {
    let [store_dir, scratch, program, rest @ ..] = args else {
        eprintln!("error: {RUN_HELPER_ARG} needs a store directory, a scratch directory and a program");
        std::process::exit(2)
    };
    let error = match enter_store_view(Path::new(store_dir), Path::new(scratch)) {
        Ok(()) => std::process::Command::new(program).args(rest).exec(),
        Err(e) => io::Error::other(e),
    };
    eprintln!("error: cannot run '{}': {error}", program.to_string_lossy());
    std::process::exit(1)
}

/// Enters a new user namespace, as the same user and group, and a new
/// mount namespace whose mounts are private to it.
fn enter_namespaces() -> std::result::Result<(), String> {
    // SAFETY: getuid/getgid cannot fail; callers are single-threaded, as
    // CLONE_NEWUSER requires.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } != 0 {
        return Err(errno("unshare(CLONE_NEWUSER | CLONE_NEWNS)"));
    }
    let write = |file: &str, text: String| fs::write(file, text).map_err(|e| format!("writing {file}: {e}"));
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    mount(Path::new("none"), Path::new("/"), "", libc::MS_REC | libc::MS_PRIVATE, "")
}

fn enter_store_view(store_dir: &Path, scratch: &Path) -> std::result::Result<(), String> {
    let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    enter_namespaces()?;

    let root = scratch.to_path_buf();
    mount(Path::new("tmpfs"), &root, "tmpfs", 0, "mode=0755")?;
    for entry in fs::read_dir("/").map_err(|e| format!("reading /: {e}"))?.flatten() {
        let name = entry.file_name();
        if name == "mini" {
            continue;
        }
        let source = PathBuf::from("/").join(&name);
        let target = root.join(&name);
        let Ok(meta) = fs::symlink_metadata(&source) else { continue };
        if meta.file_type().is_symlink() {
            let link = fs::read_link(&source).map_err(|e| format!("{}: {e}", source.display()))?;
            std::os::unix::fs::symlink(link, &target).map_err(|e| format!("{}: {e}", target.display()))?;
            continue;
        }
        if meta.is_dir() { fs::create_dir(&target) } else { fs::write(&target, b"") }
            .map_err(|e| format!("{}: {e}", target.display()))?;
        // Some entries (such as a scratch mount) may refuse; the program
        // can do without them.
        let _ = bind(&source, &target, false);
    }
    let store = root.join(STORE_DIR.trim_start_matches('/'));
    fs::create_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
    bind(store_dir, &store, true)?;
    enter_root(&root)?;
    std::env::set_current_dir(&cwd).or_else(|_| std::env::set_current_dir("/")).map_err(|e| e.to_string())?;
    Ok(())
}

/// The program `mini run` runs in `out/bin`: `mainProgram` if the
/// derivation names one, else the derivation's name without its version,
/// else the only program there.
pub fn program_to_run(out: &Path, name: &str, main_program: Option<String>) -> std::result::Result<String, String> {
    if let Some(main) = main_program {
        return Ok(main);
    }
    let bin = out.join("bin");
    let entries: Vec<String> = std::fs::read_dir(&bin)
        .map_err(|_| "it has no bin/ directory".to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let (unversioned, _) = mini_store::store_path::parse_drv_name(name);
    if entries.iter().any(|e| e == unversioned) {
        return Ok(unversioned.to_string());
    }
    match entries.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(format!("bin/ has no '{unversioned}'; set mainProgram (it has: {})", entries.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_main_program_else_the_unversioned_name_else_the_only_one() {
        let out = std::env::temp_dir().join(format!("mini-program-to-run-{}", std::process::id()));
        let _ = fs::remove_dir_all(&out);
        assert_eq!(program_to_run(&out, "hello-2.1", None).unwrap_err(), "it has no bin/ directory");
        assert_eq!(program_to_run(&out, "hello-2.1", Some("hi".into())).unwrap(), "hi");
        fs::create_dir_all(out.join("bin")).unwrap();
        fs::write(out.join("bin/server"), "").unwrap();
        assert_eq!(program_to_run(&out, "quotes-1.0", None).unwrap(), "server");
        fs::write(out.join("bin/hello"), "").unwrap();
        assert_eq!(program_to_run(&out, "hello-2.1", None).unwrap(), "hello");
        let err = program_to_run(&out, "quotes-1.0", None).unwrap_err();
        assert!(err.starts_with("bin/ has no 'quotes'; set mainProgram"), "{err}");
        fs::remove_dir_all(&out).unwrap();
    }
}
