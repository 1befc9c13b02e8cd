//! Derivation scheduling and the sandbox. Filled in by the builds issue.
