//! Binary caches, in Nix's layout: a directory (local or over HTTP) of
//! `<hashpart>.narinfo` files describing store paths, each pointing at an
//! xz-compressed archive under `nar/` and signed with an ed25519 key.
//!
//! `key` and `narinfo` are pure formats; `remote` is the only module that
//! does I/O against a cache (through `mini-http`); `copy` uploads closures
//! and `substitute` plugs downloads into the builder through
//! `mini_build::Substituter`. `key_files` writes a new key pair to disk,
//! and `config` is the one reader of mini's config file (its caches and
//! keys, and the settings builds take from it).
//!
//! This crate stands on `mini-store`, `mini-http` and `mini-build`; none of
//! them knows it.

pub mod config;
pub mod copy;
pub mod key;
pub mod key_files;
pub mod narinfo;
pub mod remote;
pub mod substitute;

use thiserror::Error;

/// What can go wrong with a cache.
#[derive(Debug, Error)]
pub enum CacheError {
    #[error(transparent)]
    Tls(#[from] mini_http::HttpError),
    #[error("{0}")]
    Key(String),
    #[error("malformed narinfo {name}: {message}")]
    NarInfo { name: String, message: String },
    #[error("unsupported cache URL '{0}' (use file:///DIR, http:// or https://)")]
    Url(String),
    #[error("{action} {what}: {message}")]
    Transfer { action: &'static str, what: String, message: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] mini_store::store::StoreError),
    #[error(transparent)]
    Nar(#[from] mini_store::nar::NarError),
}

pub type Result<T> = std::result::Result<T, CacheError>;
