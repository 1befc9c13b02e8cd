//! Builds: turns derivations into valid store paths. The requested
//! derivations and their inputs form a DAG (`dag`), which the scheduler
//! (`schedule`) runs on parallel workers, each derivation in a Linux
//! namespace sandbox (`sandbox`) that sees only its declared inputs, or in
//! process for builtin builders (`builtin_builders`). Finished outputs are
//! canonicalised and checked (`output`, and `constraints` for what they may
//! refer to) before the store registers them.
//! A failed build names the inputs' programs that need a loader outside
//! the store (`elf`). A [`Substituter`] (such as a binary cache) may
//! supply outputs instead, and a [`RemoteExecutor`] (`remote`) build them on
//! a remote service.
//! `repair` puts back what the store's verification found broken.
//! `store_view` is `mini run`'s view of the store (and `mini doctor`'s probe
//! of its namespaces), `doctor` the machine checks, `graph` the build and
//! runtime graphs `mini graph` draws.
//!
//! This crate stands on `mini-store` and `mini-http` (`builtin:fetchurl`
//! downloads through it): it reads derivations from the store and knows
//! nothing of the language that wrote them.

pub mod build_root;
pub mod builtin_builders;
pub mod constraints;
pub mod dag;
pub mod doctor;
pub mod elf;
pub mod error;
pub mod fetchers;
pub mod graph;
mod mirrors;
mod mounts;
pub mod output;
pub mod pypi;
pub mod remote;
pub mod repair;
pub mod sandbox;
pub mod schedule;
pub mod seccomp;
pub mod store_view;
#[cfg(test)]
mod testing;
mod unpack;

pub use error::{BuildError, Result};
pub use remote::{RemoteExecutor, RemoteFailure, RemoteOutcome, RemoteRequest};
pub use schedule::{BuildOptions, BuildReport, Builder, Event, Observer, Substituter};
