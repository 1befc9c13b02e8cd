//! The hash-addressed store. The format modules (`base32`, `store_path`,
//! `archive`) are pure: they compute and check bytes and never touch the
//! filesystem, except `archive`'s explicitly named dump and restore
//! functions, which are the only bridge between a tree on disk and its
//! canonical form.

pub mod archive;
pub mod base32;
pub mod derivation;
pub mod references;
pub mod store;
pub mod store_path;
pub mod teardown;
