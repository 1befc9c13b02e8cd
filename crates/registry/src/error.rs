//! The registry crate's errors; the CLI prints them as they are.

/// What can go wrong while pushing.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Tls(#[from] mini_http::HttpError),
    /// Reading the image, or compressing its layers.
    #[error(transparent)]
    Image(#[from] mini_image::ImageError),
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
