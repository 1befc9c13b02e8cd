//! The names under which a build records where it came from: the labels
//! the prelude gives an image (written by `mini-flake`, which knows the
//! flake's git revision, source and locked inputs) and `mini-image`'s
//! inspector reads back. Defined here, once, because store is the one
//! crate both stand on; nothing here knows what the values mean.

/// The label (a standard OCI annotation key) holding the git commit an
/// image was built from.
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";
/// The label naming where that revision's source lives.
pub const SOURCE_LABEL: &str = "org.opencontainers.image.source";
/// The prefix of the labels naming the flake's locked inputs, one label
/// per input: `dev.mini.input.<name>`.
pub const INPUT_LABEL_PREFIX: &str = "dev.mini.input.";
