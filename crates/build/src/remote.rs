//! The scheduler's seam for building elsewhere. A [`RemoteExecutor`] (the
//! REAPI client of `mini-remote`) is given each ready derivation the
//! scheduler would build in its sandbox, with its input closure, and
//! leaves the outputs' files where the sandbox would have; the scheduler
//! then checks, scans and registers them exactly as after a local build.
//!
//! Fixed-output derivations (which need the network and the user's proxy
//! settings) and builtin builders are always built here, and so is
//! `--check`, which compares with what this machine builds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mini_store::derivation::Derivation;
use mini_store::store::Store;
use mini_store::store_path::StorePath;

/// One derivation to build remotely.
pub struct RemoteRequest<'a> {
    pub store: &'a Store,
    pub drv_path: &'a StorePath,
    pub drv: &'a Derivation,
    /// The closure of what the build may see, as the sandbox would bind it.
    pub inputs: &'a [StorePath],
    /// Each output, and where its files must be left.
    pub outputs: BTreeMap<StorePath, PathBuf>,
}

/// A remote build that finished with outputs.
pub struct RemoteOutcome {
    /// The service's action cache answered: nothing was executed.
    pub cached: bool,
    /// The build's log, as the remote builder wrote it.
    pub log: Vec<u8>,
}

/// Why a remote build gave no outputs.
pub enum RemoteFailure {
    /// The builder ran and failed: building here would fail too.
    Builder { status: String, log: Vec<u8> },
    /// The service could not be used, or its answer was refused: the
    /// derivation is built here instead, and nothing of the answer is kept.
    Unavailable(String),
}

/// Builds derivations on a remote service.
pub trait RemoteExecutor: Sync {
    fn execute(&self, request: RemoteRequest<'_>) -> Result<RemoteOutcome, RemoteFailure>;
}
