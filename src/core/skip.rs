//! Taking a cluster out of a rollout by hand (`fleetwave skip`): a pure change of the stored
//! state, recorded with who, when and why. Running it twice changes nothing the second time.

use chrono::{DateTime, Utc};

use crate::core::state::{PlanState, SkipRecord, WaveStatus};

/// What a skip did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// The state changed: this line says how.
    Done(String),
    /// Nothing to change (already skipped): this line says since when.
    Unchanged(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SkipError {
    #[error("cluster {cluster:?} is in no wave of plan {plan} (waves: {waves})")]
    NotInPlan {
        cluster: String,
        plan: String,
        waves: String,
    },
    #[error("wave {wave} has already {status}; skipping {cluster} there changes nothing")]
    WaveOver {
        wave: String,
        cluster: String,
        status: String,
    },
    /// A finished wave is not reopened: its PRs are merged and later waves may have started.
    #[error(
        "wave {wave} has already {status}; retrying {cluster} would reopen it: roll the cluster out with a new plan (or `fleetwave apply`) instead"
    )]
    RetryOver {
        wave: String,
        cluster: String,
        status: String,
    },
}

/// Skip `cluster` in the wave that holds it: `waves` are the plan's waves with their
/// clusters (as planned against the base; a started wave's own list wins).
pub fn skip(
    st: &mut PlanState,
    waves: &[(String, Vec<String>)],
    cluster: &str,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Skipped, SkipError> {
    let holds = |wi: usize| {
        st.waves
            .get(wi)
            .filter(|w| w.status != WaveStatus::Pending)
            .map_or(&waves[wi].1, |w| &w.clusters)
            .iter()
            .any(|c| c == cluster)
    };
    let Some(wi) = (0..waves.len()).find(|&wi| holds(wi)) else {
        return Err(SkipError::NotInPlan {
            cluster: cluster.into(),
            plan: st.plan.clone(),
            waves: waves
                .iter()
                .map(|w| w.0.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    while st.waves.len() <= wi {
        let name = waves[st.waves.len()].0.clone();
        st.waves.push(crate::core::state::WaveState {
            name,
            ..Default::default()
        });
    }
    let ws = &mut st.waves[wi];
    if let Some(r) = ws.skipped.get(cluster) {
        return Ok(Skipped::Unchanged(format!(
            "cluster {cluster} is already skipped in wave {} (by {} at {}: {})",
            ws.name,
            r.by,
            r.at.format("%Y-%m-%d %H:%M UTC"),
            r.reason
        )));
    }
    if matches!(ws.status, WaveStatus::Succeeded | WaveStatus::Failed) {
        return Err(SkipError::WaveOver {
            wave: ws.name.clone(),
            cluster: cluster.into(),
            status: format!("{:?}", ws.status).to_lowercase(),
        });
    }
    let was_failed = ws.failed.remove(cluster);
    // Skipped by hand before `onUnreachable: skip` did: nothing left to time.
    ws.unreachable_since.remove(cluster);
    ws.skipped.insert(
        cluster.to_string(),
        SkipRecord {
            by: by.to_string(),
            at: now,
            reason: reason.to_string(),
        },
    );
    let mut line = format!(
        "skipped cluster {cluster} in wave {} for the rest of the rollout (by {by}: {reason})",
        ws.name
    );
    if let Some(f) = was_failed {
        line.push_str(&format!(
            "; it had failed ({f}) and no longer counts against maxFailures"
        ));
    }
    Ok(Skipped::Done(line))
}

/// Which clusters `fleetwave retry` re-runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryWhat {
    Cluster(String),
    /// Every failed cluster of the waves still running or failed.
    Failed,
}

/// Re-run failed (or skipped) clusters with the same plan revision: per wave, one new batch
/// of them after the wave's own (new branches and pull requests, `<step>-retry-<k>`). A
/// failed wave runs again and a plan halted by it goes on. Nothing to retry changes nothing.
pub fn retry(
    st: &mut PlanState,
    what: &RetryWhat,
    by: &str,
    reason: &str,
) -> Result<Skipped, SkipError> {
    let mut lines = Vec::new();
    for wi in 0..st.waves.len() {
        let ws = &st.waves[wi];
        let members: Vec<String> = match what {
            RetryWhat::Cluster(c) if ws.is_out(c) => vec![c.clone()],
            RetryWhat::Cluster(_) => Vec::new(),
            RetryWhat::Failed => ws.failed.keys().cloned().collect(),
        };
        if members.is_empty() {
            continue;
        }
        if ws.status == WaveStatus::Succeeded || ws.auto_rollback.is_some() {
            return Err(SkipError::RetryOver {
                wave: ws.name.clone(),
                cluster: members.join(", "),
                status: if ws.auto_rollback.is_some() {
                    "been rolled back".into()
                } else {
                    "succeeded".into()
                },
            });
        }
        add_retry_batch(&mut st.waves[wi], &members);
        lines.push(format!(
            "retrying {} in wave {} as a new batch (by {by}: {reason})",
            members.join(", "),
            st.waves[wi].name
        ));
    }
    if lines.is_empty() {
        let which = match what {
            RetryWhat::Cluster(c) => format!("cluster {c} has not failed and is not skipped"),
            RetryWhat::Failed => "no cluster has failed".to_string(),
        };
        return Ok(Skipped::Unchanged(format!("{which}: nothing to retry")));
    }
    if st.status == crate::core::state::PlanStatus::Halted
        && st.waves.iter().all(|w| w.status != WaveStatus::Failed)
    {
        st.status = crate::core::state::PlanStatus::InProgress;
        st.reason = None;
    }
    Ok(Skipped::Done(lines.join("; ")))
}

/// Take `members` out of the failed and skipped lists and give them a batch of their own.
fn add_retry_batch(ws: &mut crate::core::state::WaveState, members: &[String]) {
    for c in members {
        ws.failed.remove(c);
        ws.skipped.remove(c);
        ws.unreachable_since.remove(c);
        // A cluster that joined after the wave started becomes one of its clusters now.
        if !ws.clusters.contains(c) {
            ws.clusters.push(c.clone());
        }
    }
    let k = ws.retries.len();
    let batch = ws.batches.len().max(1) + k;
    let first = if ws.batches.is_empty() { None } else { Some(0) };
    let template: Vec<crate::core::state::StepState> = ws
        .steps
        .iter()
        .filter(|s| s.batch == first)
        .cloned()
        .collect();
    for s in template {
        let base = match first {
            Some(b) => s
                .branch
                .strip_suffix(&format!("-batch-{b}"))
                .unwrap_or(&s.branch)
                .to_string(),
            None => s.branch.clone(),
        };
        ws.steps.push(crate::core::state::StepState {
            index: s.index,
            id: s.id.clone(),
            title: s.title.clone(),
            branch: format!("{base}-retry-{k}"),
            batch: Some(batch),
            clusters: members.to_vec(),
            ..Default::default()
        });
    }
    ws.retries.push(members.to_vec());
    if matches!(ws.status, WaveStatus::Failed | WaveStatus::Soaking) {
        ws.status = WaveStatus::InProgress;
        ws.soak_started_at = None;
        ws.finished_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn skip_is_recorded_once_and_refused_outside_the_plan() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
        let waves = vec![
            ("canary".to_string(), vec!["a".to_string()]),
            ("prod".to_string(), vec!["b".to_string(), "c".to_string()]),
        ];
        let mut st = PlanState::new("p", "h");
        let d = skip(&mut st, &waves, "c", "alice", "decommissioned", now).unwrap();
        assert!(matches!(d, Skipped::Done(_)), "{d:?}");
        assert_eq!(st.waves[1].skipped["c"].by, "alice");
        let before = st.clone();
        let again = skip(&mut st, &waves, "c", "bob", "other", now).unwrap();
        assert!(
            matches!(again, Skipped::Unchanged(ref l) if l.contains("by alice")),
            "{again:?}"
        );
        assert_eq!(st, before, "the second skip changes nothing");
        assert!(matches!(
            skip(&mut st, &waves, "zz", "alice", "", now),
            Err(SkipError::NotInPlan { .. })
        ));
    }

    #[test]
    fn retry_in_a_finished_wave_is_refused_with_what_to_do() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
        let waves = vec![("prod".to_string(), vec!["b".to_string()])];
        let mut st = PlanState::new("p", "h");
        skip(&mut st, &waves, "b", "alice", "", now).unwrap();
        st.waves[0].status = WaveStatus::Succeeded;
        let before = st.clone();
        let e = retry(&mut st, &RetryWhat::Cluster("b".into()), "bob", "").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("wave prod has already succeeded; retrying b would reopen it"),
            "{msg}"
        );
        assert_eq!(st, before);
    }
}
