//! One module per outside system: Git (git2), the forges (local and GitHub), the cluster
//! sources (simulated and Kubernetes), the notification sinks, the HTTP gate client and the
//! fleet repository on disk. Each implements a trait from `core` (or, for the forge, the trait
//! next to it) and holds no policy.

pub mod cluster;
pub mod disk;
pub mod forge;
pub mod gates;
pub mod git;
pub mod http_get;
pub mod lease;
pub mod notify;
