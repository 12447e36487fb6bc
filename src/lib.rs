//! fleetwave: upgrade fleets of Kubernetes clusters wave by wave through their GitOps repository.
//!
//! The core (plan, config, fleet, locate, edit, steps) does no I/O beyond reading the fleet
//! repository's files; the command layer (`cli`) prints and writes.

// Nested `if let` reads better than let-chains in the validation ladders here.
#![allow(clippy::collapsible_if)]

pub mod cli;
pub mod cluster;
pub mod config;
pub mod diag;
pub mod edit;
pub mod fleet;
#[path = "gen.rs"]
pub mod generate;
pub mod locate;
pub mod plan;
pub mod planner;
pub mod source;
pub mod steps;
pub mod tree;
pub mod version;
pub mod yaml;
pub mod git;
pub mod notify;
pub mod decide;
pub mod forge;
pub mod reconcile;
pub mod state;
