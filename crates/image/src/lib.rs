//! Layered, reproducible Docker/OCI images from store closures.
//!
//! An image is a derivation with the builtin builder `builtin:image`
//! (`builder`), written by the prelude's `dockerTools`. Its closure is
//! split into layers by popularity (`layers`), each store path's layer is
//! tarred (`tarball`, `produce`) and its digests kept (`layer_cache`, which
//! also keeps the compressed blobs a push sends, made by `compress`); an
//! image built on a Debian root (`fromDebian`) has the root's tree as its
//! bottom layer (`debian_root`). The image is assembled as a docker-archive or an OCI layout
//! (`docker_archive`) around deterministic JSON (`oci`). `inspect` reads
//! any image back, for `mini image inspect` and for `mini-registry`.
//!
//! Stands on `mini-store`, writes an SBOM into an image with `mini-sbom`,
//! and plugs into `mini-build` through its `BuiltinBuilder` trait.

pub mod builder;
pub mod compress;
pub mod confined;
pub mod copy;
pub mod daemon;
pub mod debian_root;
pub mod docker_archive;
pub mod error;
pub mod inspect;
pub mod layer_cache;
pub mod layers;
pub mod oci;
pub mod produce;
pub mod spec;
pub mod stream;
pub mod tarball;

pub use error::{ImageError, Result};
