//! Pushing images to a registry over the OCI distribution API: a docker
//! archive or OCI layout is read (`source`), its layers compressed once into
//! a cache (`blobs`), and blobs then the manifest sent (`push`) by a small
//! HTTP client that retries and authenticates (`client`, `auth`).
//!
//! Invariant: a manifest is only ever sent after every blob it names is on
//! the registry, so a failed push never leaves a tag pointing at nothing.
//! Credentials never appear in messages or output.

pub mod auth;
pub mod blobs;
pub mod client;
mod error;
pub mod excerpt;
pub mod push;
pub mod reference;
pub mod referrer;
pub mod source;

pub use error::{RegistryError, Result};

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
