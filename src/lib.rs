//! fleetwave: upgrade fleets of Kubernetes clusters wave by wave through their GitOps repository.
//!
//! Three floors, each importing only the ones below it (see ARCHITECTURE.md):
//! - [`core`]: pure rules and data — plan, versions, fleet, locators, the byte-surgical editor,
//!   steps, `decide`, state, status, observations, gate rules, events. No I/O.
//! - [`adapters`]: one module per outside system — Git, forges, cluster sources, notification
//!   sinks, the HTTP gate client, the repository on disk.
//! - [`app`]: the command line (one file per command), the service, the demo and the
//!   reconcile wiring that picks adapters.
//!
//! The modules are also re-exported here under their short names (`fleetwave::plan`, …).

// Nested `if let` reads better than let-chains in the validation ladders here.
#![allow(clippy::collapsible_if)]

pub mod adapters;
pub mod app;
pub mod core;

pub use crate::adapters::{disk, forge, git};
pub use crate::app::{actions, cli, demo, ops, reconcile, serve};
pub use crate::core::{
    cluster, config, decide, diag, edit, fleet, gates, inline, locate, notify, plan, planner,
    source, state, status, steps, tree, version, yaml,
};
