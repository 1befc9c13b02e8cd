//! `mini debian lock`: resolve Debian packages with the host's apt and
//! print the `debian.lock` that pins their closure; and, for `mini lock`,
//! reading a flake's `debian.lock` and resolving it again (`--update`).
//! The resolving is `mini_debian::apt`'s, the format `mini_debian::lock`'s.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mini_debian::apt::{self, Apt};
use mini_debian::lock::{self, Lock};

use crate::{failure, Failure, Outcome};

/// The file next to a flake's `flake.nixlike` that pins its Debian packages.
pub const LOCK_FILE: &str = "debian.lock";

#[derive(Subcommand)]
pub enum DebianCommand {
    /// Resolve packages and their dependencies with the host's apt and print
    /// the debian.lock that pins them (redirect it into the flake's directory).
    Lock(LockArgs),
}

#[derive(Args)]
pub struct LockArgs {
    /// The suite or codename to take packages from, with its -updates and
    /// -security suites (default: this host's release).
    #[arg(long, value_name = "SUITE")]
    suite: Option<String>,
    /// The architecture to resolve for (default: this host's; another must
    /// be one of apt's foreign architectures).
    #[arg(long = "arch", value_name = "ARCH")]
    architecture: Option<String>,
    /// Write the lock to FILE, all at once and only when resolving
    /// succeeded (a shell's `> FILE` empties it first), instead of printing it.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// The packages to install; their dependencies are added (not their recommends).
    #[arg(required = true, value_name = "PACKAGE")]
    packages: Vec<String>,
}

pub fn debian(command: DebianCommand) -> Outcome {
    match command {
        DebianCommand::Lock(args) => {
            let lock = apt::resolve(&Apt::host(), args.suite.as_deref(), args.architecture.as_deref(), &args.packages)?;
            if let Some(path) = &args.output {
                write_atomically(path, &lock.to_json())
                    .map_err(|e| failure(format!("cannot write '{}': {e}", path.display())))?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(lock.to_json().as_bytes()).and_then(|()| stdout.flush())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The flake's `debian.lock` (its path and what it pins), if it has one.
pub(crate) fn read_lock(flake: &Path) -> Result<Option<(PathBuf, Lock)>, Failure> {
    let path = flake.join(LOCK_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failure(format!("cannot read '{}': {e}", path.display()))),
    };
    let lock = Lock::parse(&text, &path.display().to_string())?;
    Ok(Some((path, lock)))
}

/// `old` resolved again as it was made: its request, suite and architecture.
pub(crate) fn resolve_again(old: &Lock) -> Result<Lock, Failure> {
    Ok(apt::resolve(&Apt::host(), Some(&old.suite), Some(&old.architecture), &old.requested)?)
}

/// Rewrites the lock at `path` from `old` to `new` if anything changed,
/// saying on stderr what did.
pub(crate) fn write_update(path: &Path, old: &Lock, new: &Lock) -> Result<(), Failure> {
    let text = new.to_json();
    if text == old.to_json() {
        eprintln!("{LOCK_FILE}: up to date");
        return Ok(());
    }
    for change in lock::changes(old, new) {
        eprintln!("debian: {change}");
    }
    write_atomically(path, &text).map_err(|e| failure(format!("cannot write '{}': {e}", path.display())))?;
    eprintln!("lock: wrote {}", path.display());
    Ok(())
}

/// Replaces `path` with `text` all at once: a new file beside it, renamed over it.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.new-{}", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()).and_then(|()| file.sync_all()))
        .and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}
