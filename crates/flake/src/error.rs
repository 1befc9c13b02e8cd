//! Everything that can go wrong between an installable's text and its
//! derivation. Each message is complete as shown to the user after
//! `error: ` (evaluation errors arrive already rendered, with their
//! `file:line:col` and caret), so the CLI only prints them.

use std::path::PathBuf;

use mini_store::store::StoreError;
use mini_store::store_path::StorePath;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FlakeError {
    #[error("invalid installable '{text}': {reason}")]
    BadInstallable { text: String, reason: String },
    #[error("'{text}' is not a store path nor a flake directory: {reason}")]
    NotInstallable { text: String, reason: String },
    #[error("cannot open the flake directory '{}': {source}", dir.display())]
    FlakeDir { dir: PathBuf, source: std::io::Error },
    #[error("'{}' is not a flake: it has no flake.nixlike", dir.display())]
    NoFlake { dir: PathBuf },
    #[error("flake '{}': {message}", dir.display())]
    BadFlake { dir: PathBuf, message: String },
    #[error("flake '{}', input '{name}': {message}", dir.display())]
    Input { dir: PathBuf, name: String, message: String },
    #[error("flake '{}' declares inputs ({inputs}) but has no {file}: nothing pins them\n       {fix}", dir.display())]
    MissingLock { dir: PathBuf, inputs: String, file: &'static str, fix: String },
    #[error("the {file} of flake '{}' does not match its inputs: {why}\n       {fix}", dir.display())]
    StaleLock { dir: PathBuf, why: String, file: &'static str, fix: String },
    #[error("cannot read '{}': {message}", file.display())]
    BadLock { file: PathBuf, message: String },
    /// An evaluation error, rendered with its location and trace.
    #[error("{0}")]
    Eval(String),
    /// The attribute is in neither place looked at; the message lists what is.
    #[error("{0}")]
    MissingAttribute(String),
    #[error("attribute '{attr}' of flake '{}' is {kind}, not a derivation", dir.display())]
    NotADerivation { attr: String, dir: PathBuf, kind: &'static str },
    #[error(
        "no statically linked busybox found; builds see only the store, so they need one\n{}\n       \
         install it with `apt-get install busybox-static` (or point MINI_BUSYBOX at a static busybox)",
        tried.iter().map(|t| format!("       - {t}")).collect::<Vec<_>>().join("\n")
    )]
    NoBusybox { tried: Vec<String> },
    #[error("cannot list the applets of '{}': {message}", binary.display())]
    BusyboxApplets { binary: PathBuf, message: String },
    #[error("derivation '{path}' is not valid in the store at {}", root.display())]
    InvalidDerivation { path: StorePath, root: PathBuf },
    #[error("'{path}' is not a valid derivation: {message}")]
    BadDerivation { path: StorePath, message: String },
    #[error("{action} '{}': {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the evaluation thread failed: {0}")]
    Thread(std::io::Error),
}
