//! Debian packages as pinned inputs, as Bazel's rules_distroless and
//! Chainguard's apko use a distribution's packages: `mini debian lock`
//! resolves a closure with the host's apt into a `debian.lock` that pins
//! every `.deb` by SHA-256 ([`lock`], [`apt`]); `builtin:fetchdeb` brings
//! one `.deb` into the store through the host's apt ([`fetch`]); and
//! `builtin:debroot` unpacks a closure of them into one merged filesystem
//! with a dpkg status database, running no maintainer script ([`deb`],
//! [`root`]). The prelude's `pkgs.debian` (prelude/debian.nixlike) ties
//! them together.

pub mod apt;
mod apt_output;
pub mod deb;
pub mod deb822;
pub mod fetch;
pub mod lock;
pub mod names;
pub mod relations;
pub mod root;

pub use fetch::fetchdeb;
pub use root::debroot;
