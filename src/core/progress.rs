//! The wave controls as `status` shows them (pure): per wave its batches and how far each
//! got, skipped clusters, the freeze in force or next, the automatic rollback, and an ETA from
//! now — soak, `batchDelay`, windows and freezes, with the median convergence time of the
//! steps that converged so far as the assumption (said with the figure).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::core::calendar::{self, EtaAssumption, EtaWave};
use crate::core::plan::Plan;
use crate::core::state::{PlanState, StepStatus, WaveStatus};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WaveControls {
    pub wave: String,
    /// `batch 0 (crit-k0rdent-01): converged`, … (empty without batches).
    pub batches: Vec<String>,
    /// `prod-eu-01 by alice at …: decommissioned`.
    pub skipped: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_window: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
    /// `onUnreachable: skip`: clusters dark since when, and when they are skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
    /// A step held outside its clusters' maintenance windows: what its status says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta: Option<DateTime<Utc>>,
}

/// What an open step held outside its clusters' maintenance windows says on its status.
fn held_outside_windows(ws: &crate::core::state::WaveState) -> Option<String> {
    ws.steps
        .iter()
        .filter(|s| s.status == StepStatus::Open)
        .filter_map(|s| s.posted.as_ref())
        .map(|p| p.description.clone())
        .find(|d| d.starts_with(crate::core::maintenance::SUMMARY))
}

/// `c1 since 2026-11-23 08:10 UTC, skipped at 08:40 UTC unless it answers`, per dark cluster.
fn unreachable(w: &crate::core::plan::Wave, ws: &crate::core::state::WaveState) -> Vec<String> {
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    ws.unreachable_since
        .iter()
        .filter(|(c, _)| !ws.is_out(c))
        .map(|(c, since)| match w.on_unreachable {
            crate::core::plan::OnUnreachable::Skip(after) => format!(
                "{c} since {}, skipped at {} unless it answers",
                fmt(*since),
                fmt(*since + chrono::Duration::from_std(after).unwrap_or_default())
            ),
            crate::core::plan::OnUnreachable::Wait => format!("{c} since {}", fmt(*since)),
        })
        .collect()
}

/// The ETA's assumption, e.g. `each step converges in 5m (median of 3 converged steps)`.
pub fn assumption(st: &PlanState) -> (chrono::Duration, String) {
    let mut took: Vec<chrono::Duration> = st
        .waves
        .iter()
        .flat_map(|w| &w.steps)
        .filter_map(|s| Some(s.converged_at? - s.merged_at?))
        .collect();
    took.sort();
    if took.is_empty() {
        return (
            chrono::Duration::zero(),
            "each step converges at once (none has converged yet); approvals instant".into(),
        );
    }
    let m = took[took.len() / 2];
    let shown = humantime::format_duration(m.to_std().unwrap_or_default());
    (
        m,
        format!(
            "each step converges in {shown} (median of {} converged step(s)); approvals instant",
            took.len()
        ),
    )
}

/// What is left of wave `w` for the ETA: `planned` (batches, steps with changes) counts for a
/// wave that has not started; a started one counts the steps still to merge.
fn eta_wave<'a>(
    w: &'a crate::core::plan::Wave,
    ws: Option<&crate::core::state::WaveState>,
    planned: Option<(usize, usize)>,
) -> EtaWave<'a> {
    let open = ws.map_or(0, |ws| {
        ws.steps
            .iter()
            .filter(|s| matches!(s.status, StepStatus::Pending | StepStatus::Open))
            .count()
    });
    let batches = ws.map_or(1, |ws| ws.batches.len().max(1));
    let done = ws.is_some_and(|ws| ws.status == WaveStatus::Succeeded);
    let soaking = ws
        .filter(|ws| ws.status == WaveStatus::Soaking)
        .and_then(|ws| ws.soak_started_at);
    let (batches, steps) = match ws.filter(|ws| ws.status != WaveStatus::Pending) {
        None => planned.unwrap_or((1, 1)),
        Some(_) => (batches.min(open).max(1), open.div_ceil(batches).max(1)),
    };
    EtaWave {
        wave: w,
        batches: if done { 0 } else { batches },
        steps,
        soaking_since: soaking,
    }
}

/// `batch 0 (crit-k0rdent-01): converged`, one line per batch.
fn batch_lines(ws: &crate::core::state::WaveState) -> Vec<String> {
    ws.batches
        .iter()
        .enumerate()
        .map(|(b, members)| {
            let steps: Vec<_> = ws.steps.iter().filter(|s| s.batch == Some(b)).collect();
            let any = |st: StepStatus| steps.iter().any(|s| s.status == st);
            let state = if steps
                .iter()
                .all(|s| matches!(s.status, StepStatus::Converged | StepStatus::Skipped))
            {
                "converged"
            } else if any(StepStatus::Merged) {
                "merged, converging"
            } else if any(StepStatus::Open) {
                "open"
            } else if any(StepStatus::RolledBack) {
                "rolled back"
            } else {
                "pending"
            };
            format!("batch {b} ({}): {state}", members.join(", "))
        })
        .collect()
}

/// `prod-eu-01 by alice at …: decommissioned`, one line per skipped cluster.
fn skipped_lines(ws: &crate::core::state::WaveState) -> Vec<String> {
    ws.skipped
        .iter()
        .map(|(c, r)| {
            format!(
                "{c} by {} at {}: {}",
                r.by,
                r.at.format("%Y-%m-%d %H:%M UTC"),
                r.reason
            )
        })
        .collect()
}

/// The freeze in force on wave `w` now, or else the next one to begin.
fn freeze_line(plan: &Plan, w: &crate::core::plan::Wave, now: DateTime<Utc>) -> Option<String> {
    crate::core::decide::freeze_at(plan, w, now)
        .map(|f| format!("in force: {}", f.describe()))
        .or_else(|| {
            plan.freezes
                .iter()
                .chain(&plan.repo_freezes)
                .chain(&w.freezes)
                .filter(|f| f.start > now)
                .min_by_key(|f| f.start)
                .map(|f| format!("next: {}", f.span()))
        })
}

/// The automatic rollback: merged (as which commit), nothing reversible, or not done yet.
fn rollback_line(ws: &crate::core::state::WaveState) -> Option<String> {
    ws.auto_rollback.as_ref().map(|r| {
        let what = match (&r.merged_commit, r.done) {
            (Some(m), _) => format!("merged as {}", &m[..m.len().min(10)]),
            (None, true) => "nothing reversible".to_string(),
            (None, false) => "not done yet".to_string(),
        };
        format!("{what}; {}", r.lines.join("; "))
    })
}

/// Per wave of `plan`, what the controls say now. `planned` is per wave (batches, steps with
/// changes) as planned against the base, for waves that have not started.
pub fn controls(
    plan: &Plan,
    st: &PlanState,
    planned: &[(usize, usize)],
    now: DateTime<Utc>,
) -> Vec<WaveControls> {
    let (conv, _) = assumption(st);
    let remaining: Vec<EtaWave> = plan
        .waves
        .iter()
        .enumerate()
        .map(|(wi, w)| eta_wave(w, st.waves.get(wi), planned.get(wi).copied()))
        .collect();
    let etas = calendar::eta(plan, &remaining, now, EtaAssumption { convergence: conv });
    let mut out = Vec::new();
    for (wi, w) in plan.waves.iter().enumerate() {
        let Some(ws) = st.waves.get(wi) else { continue };
        let finished = matches!(ws.status, WaveStatus::Succeeded | WaveStatus::Failed);
        let next_window = w
            .window
            .as_ref()
            .filter(|_| !finished)
            .map(|win| crate::core::decide::window_state(win, now))
            .and_then(|(open, at)| (!open).then_some(at));
        out.push(WaveControls {
            wave: ws.name.clone(),
            batches: batch_lines(ws),
            skipped: skipped_lines(ws),
            freeze: freeze_line(plan, w, now).filter(|_| !finished),
            next_window,
            rollback: rollback_line(ws),
            unreachable: unreachable(w, ws),
            maintenance: held_outside_windows(ws).filter(|_| !finished),
            eta: (!finished).then(|| etas.get(wi).copied()).flatten(),
        });
    }
    out
}
