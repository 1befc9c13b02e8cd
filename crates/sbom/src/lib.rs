//! Software bills of materials: what a closure is made of, as CycloneDX 1.5
//! or SPDX 2.3 JSON. One job: given store paths, the document of their
//! closure — every store path with its archive hash and deriver, the
//! sources the derivations fetched (URLs and declared hashes, PyPI wheels)
//! and the Go modules vendored into the builds, and the reference graph as
//! dependencies.
//!
//! `gather` reads the store (the only I/O, through `files`, which never
//! follows a link out of the store) into a `model`; `cyclonedx` and `spdx`
//! write the model and are pure. **Invariant: the same closure gives the
//! same bytes** — no clock, host, user, physical path or random number
//! reaches a document; serial numbers and namespaces are derived from the
//! content.
//!
//! Stands on `mini-store` alone, so the image builder can embed a document
//! and the CLI can print or push one.

pub mod cyclonedx;
mod files;
pub mod gather;
pub mod go;
pub mod model;
pub mod purl;
pub mod spdx;

use mini_store::store::{Store, StoreError};
use mini_store::store_path::StorePath;
use thiserror::Error;

/// A document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CycloneDX 1.5 JSON.
    CycloneDx,
    /// SPDX 2.3 JSON.
    Spdx,
}

impl Format {
    /// The media type of a document: an OCI artifact's `artifactType`.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::CycloneDx => "application/vnd.cyclonedx+json",
            Format::Spdx => "application/spdx+json",
        }
    }
}

#[derive(Debug, Error)]
pub enum SbomError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not a valid store path: build it first")]
    NotValid(StorePath),
    #[error("reading '{path}': {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the derivation {path} cannot be read: {message}")]
    Derivation { path: StorePath, message: String },
}

pub type Result<T> = std::result::Result<T, SbomError>;

/// The tool every document names as its creator.
const TOOL: &str = "mini";
const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The SBOM of the closure of `roots` (valid store paths) in `format`, as
/// JSON text ending in a newline; `name` names the document (and, with
/// several roots, what they are together).
pub fn document(store: &Store, roots: &[StorePath], format: Format, name: &str) -> Result<String> {
    render(&gather::gather(store, roots, name)?, format)
}

/// [`document`] of only what the recipe determines (see
/// [`gather::gather_scoped`]): the same bytes on every machine, as an
/// image that embeds it needs.
pub fn recipe_document(store: &Store, roots: &[StorePath], format: Format, name: &str) -> Result<String> {
    render(&gather::gather_scoped(store, roots, name, true)?, format)
}

fn render(sbom: &model::Sbom, format: Format) -> Result<String> {
    Ok(match format {
        Format::CycloneDx => cyclonedx::render(sbom),
        Format::Spdx => spdx::render(sbom),
    })
}
