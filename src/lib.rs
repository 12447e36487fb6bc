//! fleetwave: upgrade fleets of Kubernetes clusters wave by wave through their GitOps repository.
//!
//! The core (plan, config, fleet, locate, edit, steps) does no I/O beyond reading the fleet
//! repository's files; the command layer (`cli`) prints and writes.

// Nested `if let` reads better than let-chains in the validation ladders here.
#![allow(clippy::collapsible_if)]

pub mod actions;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod decide;
pub mod demo;
pub mod diag;
pub mod edit;
pub mod fleet;
pub mod forge;
pub mod gates;
#[path = "gen.rs"]
pub mod generate;
pub mod git;
pub mod inline;
pub mod locate;
pub mod notify;
pub mod ops;
pub mod plan;
pub mod planner;
pub mod reconcile;
pub mod serve;
pub mod source;
pub mod state;
pub mod status;
pub mod steps;
pub mod tree;
pub mod version;
pub mod yaml;
