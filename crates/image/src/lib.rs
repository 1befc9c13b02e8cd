//! Layered OCI/Docker images from closures. Filled in by the images issue.
