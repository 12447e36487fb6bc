//! The pure floor: what a plan, a fleet, a version pin, a step and a decision are, and the
//! rules between them. Nothing here does I/O or names an adapter crate; `tests/layers.rs`
//! checks it.

pub mod availability;
pub mod batch;
pub mod calendar;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod conflict;
pub mod decide;
pub mod diag;
pub mod discovery;
pub mod edit;
pub mod fleet;
pub mod gates;
pub mod inline;
pub mod kbases;
pub mod kinds;
pub mod locate;
pub mod maintenance;
pub mod notify;
pub mod plan;
pub mod planner;
pub mod preflight;
pub mod progress;
pub mod refname;
pub mod repo;
pub mod repo_url;
pub mod skip;
pub mod source;
pub mod state;
pub mod status;
pub mod steps;
pub mod tree;
pub mod version;
pub mod yaml;
