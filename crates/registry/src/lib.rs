//! Pushing images to a registry over the OCI distribution API: a docker
//! archive or OCI layout is located by `mini_image::inspect` (the same
//! hardened reader `mini image inspect` uses), its layers compressed once
//! into `mini_image::layer_cache`'s blob cache, and blobs then the manifest
//! sent (`push`) by a small HTTP client that retries and authenticates
//! (`client`, `auth`). Stands on `mini-image`, which knows nothing of it.
//!
//! Invariant: a manifest is only ever sent after every blob it names is on
//! the registry, so a failed push never leaves a tag pointing at nothing.
//! Credentials never appear in messages or output.

pub mod auth;
pub mod client;
mod error;
pub mod excerpt;
pub mod push;
pub mod reference;
pub mod referrer;

pub use error::{RegistryError, Result};

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", mini_store::encoding::hex(&sha2::Sha256::digest(bytes)))
}
