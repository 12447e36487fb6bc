//! `fleetwave retry [--cluster C | --failed]`: re-run failed or skipped clusters with the same
//! plan revision as a new batch, recorded (who and why) by compare-and-swap on the state.

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::app::args::RemoteArgs;
use crate::app::ops;
use crate::app::reconcile;
use crate::core::skip::{self, RetryWhat, Skipped};

pub fn run(
    r: &RemoteArgs,
    what: &RetryWhat,
    reason: &str,
    by: &str,
    now: Option<DateTime<Utc>>,
    out: &mut dyn Write,
) -> ExitCode {
    match apply(r, what, reason, by, now.unwrap_or_else(Utc::now)) {
        Ok(line) => {
            let _ = writeln!(out, "{line}");
            ExitCode::SUCCESS
        }
        Err(e) => ops::fail(e),
    }
}

fn apply(
    r: &RemoteArgs,
    what: &RetryWhat,
    reason: &str,
    by: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let git = ops::open(r)?;
    let s = ops::settings(r);
    let o = reconcile::observe_repo(&git, &s).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut st = o.state.clone();
    let line = match skip::retry(&mut st, what, by, reason)? {
        Skipped::Unchanged(l) => return Ok(format!("{l}; nothing changed")),
        Skipped::Done(l) => l,
    };
    st.tick += 1;
    let msg = format!("fleetwave: {} {line}", st.plan);
    match reconcile::write_state(&git, &s, &st, o.since(), o.state_head.as_deref(), &msg, now)
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        Some(_) => Ok(line),
        None => anyhow::bail!("another reconciler wrote the state at the same time; try again"),
    }
}
