//! Remote builds over the Remote Execution API (REAPI), the protocol of
//! Bazel's build farms: [`client`] sends each derivation the local
//! scheduler finds ready as an Action to a REAPI server, and [`worker`]
//! is the bot that takes such actions from the server's Bots service
//! (BuildGrid's) and builds them in mini's own sandbox.
//!
//! How a derivation travels ([`action`]): every store path of its input
//! closure, the `.drv` included, is one NAR blob in CAS, named
//! `mini/store/<base>.nar` in the input root, with a manifest of their
//! references; its outputs come back the same way. A store path holds
//! absolute symlinks, which REAPI servers refuse in Directory trees, and
//! the NAR is already the store's one canonical serialisation. [`cas`]
//! moves blobs, checking every one against its digest; [`digest`] and
//! [`endpoint`] are the small formats.
//!
//! This crate stands on `mini-store` and `mini-build`: the client plugs
//! into the build scheduler as its [`mini_build::RemoteExecutor`], and the
//! worker builds with the scheduler like a local build.

pub mod action;
pub mod cas;
pub mod client;
pub mod digest;
pub mod endpoint;
pub mod error;
mod nar_blob;
pub mod proto;
pub mod worker;

pub use error::{RemoteError, Result};
