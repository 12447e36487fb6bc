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
}
