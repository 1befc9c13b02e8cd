//! Flakes and installables: what the `mini` commands that build or inspect
//! things accept on the command line. `DIR#ATTR` names an attribute of the
//! flake in `DIR` (its `flake.nixlike`, evaluated purely and restricted to
//! `DIR`, with the embedded prelude as `pkgs`); a store path names itself.
//! Either way the result is a `.drv` with its output paths, or an
//! already-built store path. `git+file:` installables name a flake at a
//! git revision, and flakes may take other flakes as inputs, pinned by
//! `mini.lock`.
//!
//! This crate stands on `mini-lang` (evaluation, through its public API)
//! and `mini-store` (the store, whose handle the caller gives it: nothing
//! here opens a store); it knows nothing about builds, and of images only
//! how to tell an OCI layout directory from a flake's on the command line.

mod busybox;
mod error;
mod fetch_git;
mod flake;
mod flake_sources;
mod git;
mod ignore;
mod inputs;
mod installable;
pub mod lock;
mod prelude;
mod relock;
mod resolve;
mod show;
mod worktree;

pub use busybox::find as find_busybox;
pub use error::FlakeError;
pub use fetch_git::{fetch_git, GitFetchRequest, GitFetchedTree};
pub use git::prune_revision_cache;
pub use installable::{flake_attribute_of, names_installable_rather_than_image, parse, Installable};
pub use prelude::PRELUDE;
pub use relock::{LockChange, LockReport, LockUpdate};
pub use resolve::{lock, resolve, resolve_in, resolve_with, ResolveOptions, Resolved, Target};
pub use show::{eval_attribute, show, Evaluated, ShowOptions, Shown};

use std::path::Path;

use mini_lang::{EvalResult, Evaluator};

/// Restricts a pure `mini eval` as a flake is restricted: only files under
/// the evaluated file's directory (the directory itself when given one;
/// the current directory for `--expr`) may be read.
pub fn restrict_pure_eval(ev: &mut Evaluator, file: Option<&Path>) -> EvalResult<()> {
    let io_error = |e: std::io::Error| {
        mini_lang::EvalError::new(mini_lang::ErrorKind::Io, format!("cannot resolve the evaluated path: {e}"), None)
    };
    let dir = match file {
        Some(f) if f.is_dir() => f.to_path_buf(),
        Some(f) => {
            let absolute = std::path::absolute(f).map_err(io_error)?;
            absolute.parent().unwrap_or(Path::new("/")).to_path_buf()
        }
        None => std::env::current_dir().map_err(io_error)?,
    };
    ev.restrict_to(&[dir])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pure_eval_reads_only_beside_the_file() {
        let dir = std::env::temp_dir().join(format!("mini-pure-eval-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("proj")).unwrap();
        std::fs::write(dir.join("secret"), "s").unwrap();
        std::fs::write(dir.join("proj/data"), "d").unwrap();
        std::fs::write(dir.join("proj/ok.nixlike"), "builtins.readFile ./data").unwrap();
        std::fs::write(dir.join("proj/bad.nixlike"), "builtins.readFile ../secret").unwrap();
        let eval = |file: &str| {
            let mut ev = Evaluator::new();
            let path = dir.join("proj").join(file);
            restrict_pure_eval(&mut ev, Some(&path)).unwrap();
            ev.eval_file(&path).map(|v| mini_lang::print_value(&v)).map_err(|e| e.message)
        };
        assert_eq!(eval("ok.nixlike").unwrap(), "\"d\"");
        assert!(eval("bad.nixlike").unwrap_err().contains("forbidden in pure evaluation mode"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
