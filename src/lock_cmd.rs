//! `mini lock`: pin a flake's inputs in its `mini.lock`, or move the pins
//! (`--update [INPUT]…`), and show them. The locking itself is
//! `mini_flake::lock`'s; this prints what changed, one line per input, so
//! a lock never moves without saying so. A `debian.lock` beside the flake
//! is checked, and with `--update` (or `--update debian`) resolved again
//! with the host's apt ([`crate::debian_cmd`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use mini_flake::{LockReport, LockUpdate};
use mini_store::store::Store;

use crate::{debian_cmd, failure, Outcome};

#[derive(Args)]
pub struct LockArgs {
    /// The flake's directory (a working tree, not a git revision).
    #[arg(default_value = ".", value_name = "DIR")]
    flake: PathBuf,
    /// Pin these inputs again as they are now (every input if none is named);
    /// `debian` names the flake's debian.lock, resolved again with the host's apt.
    #[arg(long, value_name = "INPUT", num_args = 0.., value_delimiter = ',')]
    update: Option<Vec<String>>,
}

pub fn lock(store_root: &Path, args: LockArgs) -> Outcome {
    // A bad debian.lock stops everything before any lock is written.
    let debian = debian_cmd::read_lock(&args.flake)?;
    let (update, update_debian) = match args.update {
        None => (LockUpdate::Missing, false),
        Some(names) if names.is_empty() => (LockUpdate::All, debian.is_some()),
        Some(names) => {
            let (debian_named, inputs): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| n == "debian");
            let inputs = if inputs.is_empty() { LockUpdate::Missing } else { LockUpdate::Only(inputs) };
            (inputs, !debian_named.is_empty())
        }
    };
    if update_debian && debian.is_none() {
        return Err(failure(format!(
            "there is no {} in '{}' to update\n       make one with `mini debian lock PACKAGE... > {}`",
            debian_cmd::LOCK_FILE,
            args.flake.display(),
            args.flake.join(debian_cmd::LOCK_FILE).display()
        )));
    }
    // Resolved first, written last: a failure of apt leaves every lock as it was.
    let resolved = match &debian {
        Some((_, old)) if update_debian => Some(debian_cmd::resolve_again(old)?),
        _ => None,
    };
    let report = mini_flake::lock(&Store::open(store_root)?, &args.flake, update)?;
    report_updates(std::slice::from_ref(&report));
    if report.lock.inputs.is_empty() {
        println!("{}: the flake declares no inputs", report.file.display());
    }
    for (name, locked) in &report.lock.inputs {
        let pin = match &locked.rev {
            Some(rev) => format!("rev {rev}"),
            None => "content only".to_string(),
        };
        println!("{name}: {} {pin} {}", locked.declared.url, locked.nar_hash);
    }
    if let Some((path, lock)) = debian {
        let lock = match resolved {
            Some(new) => {
                debian_cmd::write_update(&path, &lock, &new)?;
                new
            }
            None => lock,
        };
        println!(
            "{}: {} packages of {} ({}) for {}",
            path.display(),
            lock.packages.len(),
            lock.suite,
            lock.architecture,
            lock.requested.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Says on stderr what is wrong with the inputs pinned, how each lock
/// changed, and where it was (or was not) written.
pub(crate) fn report_updates(reports: &[LockReport]) {
    for report in reports {
        let file = report.file.display();
        for warning in &report.warnings {
            eprintln!("warning: {}", warning.describe());
        }
        for change in &report.changes {
            eprintln!("lock: {}", change.describe());
        }
        match (report.written, report.changes.is_empty()) {
            (true, _) => eprintln!("lock: wrote {file}"),
            (false, true) => eprintln!("lock: {file} is up to date"),
            // A flake at a git revision cannot be written to.
            (false, false) => eprintln!("lock: the flake is at a git revision: the new pins were used, not written"),
        }
    }
}
