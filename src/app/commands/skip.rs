//! `fleetwave skip --cluster C`: take a cluster out of the rollout, recorded in the state (and
//! so in `history`) with who and why, written by compare-and-swap like every state change.

use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::app::args::RemoteArgs;
use crate::app::ops;
use crate::app::reconcile;
use crate::core::skip::{self, Skipped};

pub fn run(
    r: &RemoteArgs,
    cluster: &str,
    reason: &str,
    by: &str,
    now: Option<DateTime<Utc>>,
    out: &mut dyn Write,
) -> ExitCode {
    match apply(r, cluster, reason, by, now.unwrap_or_else(Utc::now)) {
        Ok(line) => {
            let _ = writeln!(out, "{line}");
            ExitCode::SUCCESS
        }
        Err(e) => ops::fail(e),
    }
}

fn apply(
    r: &RemoteArgs,
    cluster: &str,
    reason: &str,
    by: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let git = ops::open(r)?;
    let s = ops::settings(r);
    let o = reconcile::observe_repo(&git, &s).map_err(|e| anyhow::anyhow!("{e}"))?;
    let waves: Vec<(String, Vec<String>)> = o
        .view
        .waves
        .iter()
        .map(|w| (w.name.clone(), w.clusters.clone()))
        .collect();
    let mut st = o.state.clone();
    if st.plan.is_empty() {
        st = crate::core::state::PlanState::new(&o.plan.name, &o.plan_hash);
    }
    let line = match skip::skip(&mut st, &waves, cluster, by, reason, now)? {
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
