//! The top floor: command-line arguments, one function per command, the service, the demo,
//! and the reconcile wiring that picks adapters and runs one tick.

pub mod actions;
pub mod args;
pub mod cli;
pub mod commands;
pub mod completions;
pub mod demo;
pub mod multi;
pub mod ops;
pub mod reconcile;
pub mod serve;
pub mod web;

/// App-layer errors are `anyhow::Error`s, shown to the user as `{:#}` (`context: cause`).
/// `flat` turns a typed error into one that shows its own text only: fleetwave's error types
/// already name their causes in their text, so printing their `source` chain would repeat it.
pub(crate) trait Flat<T> {
    fn flat(self) -> anyhow::Result<T>;
}

impl<T, E: std::fmt::Display> Flat<T> for Result<T, E> {
    fn flat(self) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::Error::msg(e.to_string()))
    }
}
