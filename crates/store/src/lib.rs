//! The hash-addressed store. The format modules (`base32`, `store_path`,
//! `derivation`) are pure: they compute and check bytes and never touch the
//! filesystem.

pub mod base32;
pub mod derivation;
pub mod store_path;
