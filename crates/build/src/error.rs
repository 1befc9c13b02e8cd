//! What can go wrong while building, as one typed enum; the CLI turns these
//! into diagnostics.

use std::io;
use std::path::PathBuf;

use mini_store::store::StoreError;
use thiserror::Error;

use crate::constraints::Violation;

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
    #[error("builder for '{drv}' {status}{}\nthe full log is at {}", render_tail(log_tail), log_path.display())]
    BuilderFailed { drv: String, status: String, log_tail: Vec<String>, log_path: PathBuf },
    #[error("builder for '{drv}' did not produce output '{output}' at {path}")]
    MissingOutput { drv: String, output: String, path: String },
    #[error("output of '{drv}' contains {what} '{file}', which a store path may not hold")]
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

pub type Result<T> = std::result::Result<T, BuildError>;

pub(crate) fn io_err<'a>(action: &'static str, path: &'a std::path::Path) -> impl FnOnce(io::Error) -> BuildError + 'a {
    move |source| BuildError::Io { action, path: path.to_path_buf(), source }
}
