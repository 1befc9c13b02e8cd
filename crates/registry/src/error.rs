//! The registry crate's errors; the CLI prints them as they are.

use std::path::PathBuf;

/// What can go wrong while pushing.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Tls(#[from] mini_http::HttpError),
    #[error("cannot {action} '{}': {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("'{}' is not an image mini can push: {message}", path.display())]
    NotAnImage { path: PathBuf, message: String },
    #[error("'{0}' is not a registry reference (write docker://HOST[:PORT]/REPO[:TAG])")]
    BadReference(String),
    #[error(
        "authentication failed for {host}: check MINI_REGISTRY_USER/MINI_REGISTRY_PASSWORD \
         (or the auths entry for {host} in ~/.docker/config.json)"
    )]
    Auth { host: String },
    #[error(
        "refusing to send the credentials for {host} in clear text to the token service {realm}: plain HTTP \
         carries them only to the registry --insecure names, and this is another host or port; serve the \
         token service over HTTPS"
    )]
    PlainTextRealm { host: String, realm: String },
    #[error("{what}: {message}")]
    Http { what: String, message: String },
}

pub type Result<T> = std::result::Result<T, RegistryError>;

/// A closure turning an I/O error on `path` into a [`RegistryError`].
pub(crate) fn io_err(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RegistryError {
    let path = path.to_path_buf();
    move |source| RegistryError::Io { action, path, source }
}
