//! fleetwave: upgrade fleets of Kubernetes clusters wave by wave through their GitOps repository.
//!
//! The core (plan, config, fleet, locate, edit, steps) does no I/O beyond reading the fleet
//! repository's files; the command layer (`cli`) prints and writes.

pub mod yaml;
pub mod edit;
pub mod gen;
