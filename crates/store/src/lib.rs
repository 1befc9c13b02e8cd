//! The hash-addressed store: formats and I/O. Filled in by the store issue.
