//! The top floor: command-line arguments, one function per command, the service, the demo,
//! and the reconcile wiring that picks adapters and runs one tick.

pub mod actions;
pub mod args;
pub mod cli;
pub mod demo;
pub mod generate;
pub mod ops;
pub mod reconcile;
pub mod serve;
