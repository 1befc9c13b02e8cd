//! The hash-addressed store. The format modules (`base32`, `store_path`,
//! `nar`'s codec, `elf`, `encoding`) are pure: they compute and check bytes
//! and never touch the filesystem; `nar::disk` and `nar::hash` are the only
//! bridge between a tree on disk and its canonical form. `tree_writer` is
//! how every unpacker (archive restore, git trees, binary caches, builtin
//! builders) writes a tree from untrusted input: relative to directory
//! handles, never through a link.

pub mod base32;
pub mod derivation;
pub mod elf;
pub mod encoding;
pub mod fixed;
pub mod hash_io;
pub mod nar;
pub mod provenance;
pub mod references;
pub mod store;
pub mod store_path;
pub mod teardown;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tree_writer;

/// Where store paths live as builds, values and images see them: one
/// definition, whatever physical directory the store is in.
pub use store_path::STORE_DIR;
