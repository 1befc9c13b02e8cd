//! The hash-addressed store. The format modules (`base32`, `store_path`)
//! are pure: they compute and check bytes and never touch the filesystem.

pub mod base32;
pub mod store_path;
