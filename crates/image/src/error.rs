//! What can go wrong while packing or reading an image.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("{action} '{}': {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] mini_store::store::StoreError),
    #[error("invalid image setting '{name}': {message}")]
    BadSpec { name: String, message: String },
    #[error("'{}' is not an image: {message}", path.display())]
    NotAnImage { path: PathBuf, message: String },
    #[error("{0}")]
    Daemon(String),
    #[error("bad destination '{destination}': {message}")]
    BadDestination { destination: String, message: String },
}

pub type Result<T> = std::result::Result<T, ImageError>;

pub(crate) fn io_err<'a>(action: &'static str, path: &'a std::path::Path) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |source| ImageError::Io { action, path: path.to_path_buf(), source }
}
