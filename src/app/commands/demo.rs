//! `fleetwave demo`: the options of the command line to [`crate::app::demo`], and its
//! outcome to an exit code (0 succeeded, 1 halted, 2 error).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::adapters::cluster::sim::Fault;
use crate::app::Flat;
use crate::app::demo::{DemoOptions, run as run_demo};
use crate::core::state::PlanStatus;

pub fn run(
    out: &mut dyn Write,
    plan: &str,
    fail: &[String],
    scale: f64,
    keep: Option<PathBuf>,
    plain: bool,
) -> ExitCode {
    let fail: Vec<(String, Fault)> = match fail
        .iter()
        .map(|f| crate::app::ops::parse_fault(f).flat())
        .collect()
    {
        Ok(f) => f,
        Err(e) => return super::fail(&e),
    };
    let opts = DemoOptions {
        plan: plan.to_string(),
        fail,
        scale,
        keep,
        progress: !plain && std::io::stdout().is_terminal(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run_demo(&opts, out)) {
        Ok(r) if r.state.status == PlanStatus::Succeeded => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => super::fail(&e),
    }
}
