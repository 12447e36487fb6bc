//! The rollout's memory: one document per plan, stored on the orphan branch
//! `fleetwave/state` of the fleet repo and written by compare-and-swap. Everything the
//! reconciler must not forget between ticks (or across a crash) lives here; everything it
//! can observe again (branches, merges, Flux status) does not need to.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::locate::Role;
use crate::core::notify::Event;

pub const BRANCH: &str = "fleetwave/state";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PlanStatus {
    #[default]
    InProgress,
    Succeeded,
    /// The plan cannot be carried out (e.g. it no longer plans cleanly against the base).
    Failed,
    /// A wave failed; nothing more is merged until rollback or resume.
    Halted,
    Paused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WaveStatus {
    #[default]
    Pending,
    InProgress,
    Soaking,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StepStatus {
    #[default]
    Pending,
    /// Branch pushed and pull request open.
    Open,
    Merged,
    Converged,
    /// Nothing to change in this step.
    Skipped,
    /// Reverted by `fleetwave rollback`.
    RolledBack,
}

/// The commit status fleetwave last posted on a step's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedStatus {
    pub head: String,
    pub state: GateState,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateState {
    Pending,
    Success,
    Failure,
}

/// One field change of a step, kept for PR bodies, telemetry and rollback.
///
/// Stored as `{cluster, file, field, what, from, to, role?}` with `what` one of
/// `kubernetes`, `gitopsBase`, `template` (see [`ChangeRecordWire`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ChangeRecordWire", try_from = "ChangeRecordWire")]
pub struct ChangeRecord {
    pub cluster: String,
    pub file: String,
    pub field: String,
    pub what: Changed,
    pub from: String,
    pub to: String,
}

/// What a change sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// A Kubernetes version, and which part of the cluster the field upgrades (absent in
    /// records stored before roles were kept).
    Kubernetes(Option<Role>),
    /// The gitops-base ref.
    GitopsBase,
    /// A k0rdent template name.
    Template,
}

impl Changed {
    pub fn is_kubernetes(self) -> bool {
        matches!(self, Changed::Kubernetes(_))
    }

    /// The name stored in state files.
    pub fn as_str(self) -> &'static str {
        match self {
            Changed::Kubernetes(_) => "kubernetes",
            Changed::GitopsBase => "gitopsBase",
            Changed::Template => "template",
        }
    }
}

impl From<&crate::core::locate::What> for Changed {
    fn from(w: &crate::core::locate::What) -> Self {
        use crate::core::locate::What;
        match w {
            What::Kubernetes(r) => Changed::Kubernetes(Some(*r)),
            What::GitopsBase => Changed::GitopsBase,
            What::Template => Changed::Template,
        }
    }
}

/// A stored change whose `what` is none of the known names.
#[derive(Debug, thiserror::Error)]
#[error("unknown change {0:?}")]
pub struct UnknownChange(String);

/// The stored form of a [`ChangeRecord`].
#[derive(Serialize, Deserialize)]
struct ChangeRecordWire {
    cluster: String,
    file: String,
    field: String,
    what: String,
    from: String,
    to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
}

impl From<ChangeRecord> for ChangeRecordWire {
    fn from(c: ChangeRecord) -> Self {
        ChangeRecordWire {
            cluster: c.cluster,
            file: c.file,
            field: c.field,
            what: c.what.as_str().to_string(),
            from: c.from,
            to: c.to,
            role: match c.what {
                Changed::Kubernetes(r) => r,
                _ => None,
            },
        }
    }
}

impl TryFrom<ChangeRecordWire> for ChangeRecord {
    type Error = UnknownChange;

    fn try_from(w: ChangeRecordWire) -> Result<Self, UnknownChange> {
        let what = match w.what.as_str() {
            "kubernetes" => Changed::Kubernetes(w.role),
            "gitopsBase" => Changed::GitopsBase,
            "template" => Changed::Template,
            _ => return Err(UnknownChange(w.what)),
        };
        Ok(ChangeRecord {
            cluster: w.cluster,
            file: w.file,
            field: w.field,
            what,
            from: w.from,
            to: w.to,
        })
    }
}

/// A step's change records, shared: the state is copied whole by every decision (a pure
/// function of the state it reads) and by every write, and at 10,000 clusters the records
/// are 42,000 values a copy; unchanged records are not copied again.
pub type Records = std::sync::Arc<Vec<ChangeRecord>>;

fn is_empty(r: &Records) -> bool {
    r.is_empty()
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepState {
    pub index: usize,
    pub id: String,
    pub title: String,
    pub branch: String,
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr: Option<u64>,
    /// The step commit fleetwave pushed, and the base commit it sits on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub changes: Records,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<DateTime<Utc>>,
    /// Head fleetwave decided to merge; set before the merge call so a crash cannot hide it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub merged_by_human: bool,
    /// For human merges: whether fleetwave's gate was green when it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_green_at_merge: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub converged: BTreeMap<String, DateTime<Utc>>,
    /// Pod restart counts per cluster when the step was first observed merged: the baseline
    /// of the podRestarts gate.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restart_baseline: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posted: Option<PostedStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_commit: Option<String>,
    /// The batch this step belongs to (absent: the wave is one batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// The batch's clusters (empty: the whole wave).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRecord {
    pub time: DateTime<Utc>,
    pub cluster: String,
    pub gate: String,
    pub ok: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveState {
    pub name: String,
    pub status: WaveStatus,
    /// Membership is fixed when the wave starts.
    #[serde(default)]
    pub clusters: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// cluster → why it failed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<String, String>,
    #[serde(default)]
    pub steps: Vec<StepState>,
    /// Gate breaches and recoveries, as they happened (not every passing check).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gate_log: Vec<GateRecord>,
    /// cluster → gate → its current result, with the time it last changed between pass and
    /// fail (so an unchanged result does not rewrite the state every tick).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gates: BTreeMap<String, BTreeMap<String, GateRecord>>,
    /// The wave's batches in merge order, fixed when the wave starts (empty: one batch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<Vec<String>>,
    /// cluster → who took it out of the rollout (`fleetwave skip`), when and why. Skipped
    /// clusters get no more changes and count neither as converged nor as failed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, SkipRecord>,
    /// Batches added by `fleetwave retry` (clusters re-run after failing or being skipped),
    /// merged after the wave's own batches, each step on `<branch>-retry-<k>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<Vec<String>>,
    /// `failurePolicy: rollback`: the automatic rollback, once the wave failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<AutoRollback>,
    /// `onUnreachable: skip`: cluster → when it was first seen unreachable after a merge,
    /// without a break since (removed when it answers again or is skipped).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unreachable_since: BTreeMap<String, DateTime<Utc>>,
}

/// Who skipped a cluster, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipRecord {
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

impl WaveState {
    /// The cluster gets no more changes in this wave: it failed or was skipped.
    pub fn is_out(&self, cluster: &str) -> bool {
        self.failed.contains_key(cluster) || self.skipped.contains_key(cluster)
    }
}

/// The automatic rollback of a failed wave: asked for when it failed, done when its pull
/// request merged (or nothing was left to revert).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoRollback {
    pub requested_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr: Option<u64>,
    /// The merge commit of the rollback, once merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_commit: Option<String>,
    /// Done: merged, or nothing reversible was left.
    #[serde(default)]
    pub done: bool,
    /// What was reverted and what was refused, and why, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    pub event: Event,
    pub sent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanState {
    pub plan: String,
    /// Hash of the plan file the rollout follows; a new revision closes stale PRs.
    pub plan_hash: String,
    pub status: PlanStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub waves: Vec<WaveState>,
    /// Alerts and telemetry, keyed by idempotency id; each is sent once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub events: BTreeMap<String, Outbox>,
    /// Bumped on every write that precedes side effects, so two reconcilers never both act.
    #[serde(default)]
    pub tick: u64,
    /// Fields written by a newer fleetwave, kept as they are when this one rewrites the state.
    #[serde(flatten, default)]
    pub unknown: BTreeMap<String, serde_yaml::Value>,
}

impl PlanState {
    pub fn new(plan: &str, plan_hash: &str) -> Self {
        PlanState {
            plan: plan.to_string(),
            plan_hash: plan_hash.to_string(),
            ..Default::default()
        }
    }

    /// The state file's path on the state branch.
    pub fn path(plan: &str) -> String {
        format!("{plan}.yaml")
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("state serializes")
    }

    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    pub fn step(&self, wave: usize, step: usize) -> Option<&StepState> {
        self.waves.get(wave)?.steps.get(step)
    }

    pub fn step_mut(&mut self, wave: usize, step: usize) -> Option<&mut StepState> {
        self.waves.get_mut(wave)?.steps.get_mut(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_records_keep_their_stored_form() {
        let text = "- cluster: c1\n  file: c1.yaml\n  field: spec.version\n  what: kubernetes\n  from: v1.32.4\n  to: v1.33.5\n  role: controlPlane\n- cluster: c1\n  file: c1.yaml\n  field: spec.version\n  what: kubernetes\n  from: v1.32.4\n  to: v1.33.5\n- cluster: c1\n  file: base.yaml\n  field: ref.tag\n  what: gitopsBase\n  from: '2025.12'\n  to: '2026.02'\n- cluster: c1\n  file: cd.yaml\n  field: spec.template\n  what: template\n  from: a\n  to: b\n";
        let cs: Vec<ChangeRecord> = serde_yaml::from_str(text).unwrap();
        let whats: Vec<Changed> = cs.iter().map(|c| c.what).collect();
        assert_eq!(
            whats,
            [
                Changed::Kubernetes(Some(Role::ControlPlane)),
                Changed::Kubernetes(None),
                Changed::GitopsBase,
                Changed::Template
            ]
        );
        assert_eq!(serde_yaml::to_string(&cs).unwrap(), text);
        let bad = text.replace("what: template", "what: chart");
        assert!(serde_yaml::from_str::<Vec<ChangeRecord>>(&bad).is_err());
    }

    #[test]
    fn round_trips_as_yaml() {
        let mut s = PlanState::new("k8s", "abc");
        s.waves.push(WaveState {
            name: "canary".into(),
            status: WaveStatus::Soaking,
            clusters: vec!["a".into()],
            steps: vec![StepState {
                index: 1,
                id: "kubernetes-v1-33-5".into(),
                branch: "fleetwave/k8s/canary/1-kubernetes-v1-33-5".into(),
                status: StepStatus::Merged,
                ..Default::default()
            }],
            ..Default::default()
        });
        let back = PlanState::from_yaml(&s.to_yaml()).unwrap();
        assert_eq!(back, s);
    }
}
