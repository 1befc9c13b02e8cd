//! What can go wrong talking to a remote execution service, as one typed
//! enum; the CLI turns these into diagnostics. [`RemoteError::Refused`]
//! marks an answer that failed verification: nothing of it was used.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RemoteError {
    #[error("'{url}' is not a remote build service address: {reason} (expected grpc://HOST:PORT or grpc://HOST:PORT/INSTANCE)")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the remote build service at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("{call} failed: {code:?}: {message}")]
    Rpc { call: &'static str, code: tonic::Code, message: String },
    /// A finished operation's own status: final, but for the codes that
    /// say the service (not the build) failed.
    #[error("the remote execution ended with {code:?}: {message}")]
    Operation { code: tonic::Code, message: String },
    /// The service's answer was malformed, or did not match its digest.
    #[error("refused the remote service's answer: {0}")]
    Refused(String),
    /// The service cannot do what this client needs (no SHA-256, say).
    #[error("the remote build service cannot be used: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Store(#[from] mini_store::store::StoreError),
    #[error(transparent)]
    Build(#[from] mini_build::BuildError),
    #[error("{action} '{}': {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

impl RemoteError {
    pub(crate) fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> RemoteError {
        move |status| RemoteError::Rpc { call, code: status.code(), message: status.message().to_string() }
    }

    /// Whether the request may work if sent again: the service was down,
    /// restarting or busy (for a call, also its deadline or cancellation;
    /// a finished operation's deadline is the build's timeout, final).
    pub fn is_transient(&self) -> bool {
        match self {
            RemoteError::Connect { .. } => true,
            RemoteError::Rpc { code, .. } => {
                service_failed(*code) || matches!(code, tonic::Code::DeadlineExceeded | tonic::Code::Cancelled)
            }
            RemoteError::Operation { code, .. } => service_failed(*code),
            _ => false,
        }
    }
}

/// The codes that say the service, not the request, failed.
fn service_failed(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::Aborted
            | tonic::Code::ResourceExhausted
    )
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;
