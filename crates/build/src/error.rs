//! What can go wrong while building, as one typed enum; the CLI turns these
//! into diagnostics.

use std::io;
use std::path::PathBuf;

use mini_store::store::StoreError;
use thiserror::Error;

use crate::constraints::Violation;
use crate::elf::Unrunnable;

#[derive(Debug, Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{action} '{}': {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("cannot read derivation {drv}: {message}")]
    BadDerivation { drv: String, message: String },
    #[error("the sandbox could not be set up: {0}")]
    Sandbox(String),
    /// `hints` name the inputs' programs that cannot run in a build (see [`crate::elf`]).
    #[error(
        "builder for '{drv}' {status}{}{}\nthe full log is at {}",
        render_tail(log_tail),
        render_hints(hints),
        log_path.display()
    )]
    BuilderFailed { drv: String, status: String, log_tail: Vec<String>, hints: Vec<String>, log_path: PathBuf },
    /// The builder is an ELF program whose loader is outside the store.
    #[error(
        "the builder of '{drv}' cannot run: {}; {}\n(the sandbox said: {error})",
        program.describe(),
        DYNAMIC_ADVICE
    )]
    UnrunnableBuilder { drv: String, program: Unrunnable, error: String },
    #[error("builder for '{drv}' did not produce output '{output}' at {path}")]
    MissingOutput { drv: String, output: String, path: String },
    #[error("output of '{drv}' contains a {what} '{file}', which a store path may not hold")]
    ForbiddenFile { drv: String, what: &'static str, file: String },
    #[error("hash mismatch in fixed-output derivation '{drv}':\n  specified: {specified}\n       got: {got}")]
    HashMismatch { drv: String, specified: String, got: String },
    #[error("builtin builder '{builder}' for '{drv}' failed: {message}")]
    Builtin { builder: String, drv: String, message: String },
    #[error("derivation '{drv}' is not deterministic: {}", files.join(", "))]
    NotDeterministic { drv: String, files: Vec<String> },
    #[error(
        "'{path}' was modified in the store after it was built (these files differ from a rebuild: {}); \
         `mini store verify --repair` puts back what its derivation builds",
        files.join(", ")
    )]
    ModifiedOutput { path: String, files: Vec<String> },
    #[error("'{drv}' needs system '{needed}', but this machine builds '{have}'")]
    WrongSystem { drv: String, needed: String, have: String },
    #[error("'{drv}' could not be substituted, and {failed} of its inputs failed to build")]
    InputsFailed { drv: String, failed: usize },
    /// Outputs broke the promise of `allowedReferences` and its kin
    /// (see [`crate::constraints`]); none was registered.
    #[error("{}", crate::constraints::render(drv, violations))]
    ForbiddenReferences { drv: String, violations: Vec<Violation> },
}

fn render_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let shown: String = lines.iter().map(|l| format!("\n  > {l}")).collect();
    format!(";\nlast {} log lines:{shown}", lines.len())
}

/// What to do about a dynamically linked program, after naming it.
const DYNAMIC_ADVICE: &str =
    "a build has nothing outside the store: use statically linked programs, or ones whose loader is in the store";

fn render_hints(hints: &[String]) -> String {
    if hints.is_empty() {
        return String::new();
    }
    let shown: String = hints.iter().map(|h| format!("\n{h}")).collect();
    format!("{shown}\n{DYNAMIC_ADVICE}")
}

pub type Result<T> = std::result::Result<T, BuildError>;

pub(crate) fn io_err<'a>(action: &'static str, path: &'a std::path::Path) -> impl FnOnce(io::Error) -> BuildError + 'a {
    move |source| BuildError::Io { action, path: path.to_path_buf(), source }
}
