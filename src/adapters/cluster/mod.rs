//! Cluster sources: the simulated Flux of the demo and tests, and live clusters read through
//! kube-rs. Both implement [`crate::core::cluster::ClusterSource`].

pub mod kube;
pub mod sim;
