//! `fleetwave status`: the per-wave, per-cluster report (pure). Inputs are the values in Git
//! (from the locators), the rollout state and, when a cluster source was given, what the
//! clusters report; the output is a serialisable [`Report`] and its text table.
//!
//! Drift is Git and the cluster disagreeing outside an open step: a cluster whose wave is not
//! in the middle of changing it, yet runs a version Git does not say.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::core::cluster::upgrade::{Role, same_version};
use crate::core::cluster::{ClusterObservation, DrainBlocker, revision_hash};
use crate::core::kinds::What;
use crate::core::state::{PlanState, StepStatus, WaveStatus};
use crate::core::version::KubeVersion;

/// One managed value of a cluster in Git: what it pins (for a Kubernetes version, which part
/// of the cluster) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitValue {
    pub what: What,
    pub value: String,
}

impl GitValue {
    /// The key of the report's `git` map: `kubernetes`, `gitopsBase` or `template`.
    fn key(&self) -> &'static str {
        match self.what {
            What::Kubernetes(_) => "kubernetes",
            What::GitopsBase => "gitopsBase",
            What::Template => "template",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub plan: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether cluster state was read (`--clusters`); without it, running/flux are empty.
    pub observed: bool,
    pub clusters: Vec<Row>,
    /// Wave controls (batches, skipped clusters, freezes, windows, automatic rollback, ETA),
    /// per wave that has any to show.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<crate::core::progress::WaveControls>,
    /// What the ETAs in `waves` assume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_assumption: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub wave: String,
    pub cluster: String,
    /// The rollout's view: not started, converged steps, failed and why.
    pub state: String,
    /// Values in Git by kind (`kubernetes`, `gitopsBase`, `template`).
    pub git: BTreeMap<String, Vec<String>>,
    /// Versions the cluster reports: `KubeadmControlPlane ns/x v1.33.5`, `kubelet v1.33.5 ×3`.
    pub running: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flux: Option<Flux>,
    /// `done`, the upgrade still in progress, or None when nothing reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<String>,
    /// Latest gate results: recorded in the state, overlaid with this observation's.
    pub gates: Vec<Gate>,
    pub drift: Vec<String>,
    /// Drain blockers, in words: none, the PodDisruptionBudgets that allow no disruption, or
    /// why it is not known (no per-cluster context). None when the cluster was not observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<String>,
    /// The PodDisruptionBudgets that allow no disruption now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drain_blockers: Vec<DrainBlocker>,
    /// Deprecated APIs its API server was asked for, when read (`deprecatedApis` gate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deprecated_apis: Option<Vec<crate::core::cluster::DeprecatedApi>>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Flux {
    /// `True ReconciliationSucceeded`, or the first Kustomization that is not Ready.
    pub ready: String,
    /// Short hash of the applied revision (the oldest across Kustomizations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub kustomizations: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    pub gate: String,
    pub ok: bool,
    pub reason: String,
    /// When the result last changed (from the state), if recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Build the report. `waves` are the plan's waves with their clusters; `observed` is empty
/// when no cluster source was given.
pub fn build(
    plan: &str,
    waves: &[(String, Vec<String>)],
    in_git: &BTreeMap<String, Vec<GitValue>>,
    st: &PlanState,
    observed: Option<&BTreeMap<String, ClusterObservation>>,
) -> Report {
    let mut rows = Vec::new();
    for (wi, (wave, clusters)) in waves.iter().enumerate() {
        let ws = st.waves.get(wi);
        for c in clusters {
            let git_vals = in_git.get(c).map(Vec::as_slice).unwrap_or_default();
            let obs = observed.and_then(|o| o.get(c));
            rows.push(Row {
                wave: wave.clone(),
                cluster: c.clone(),
                state: rollout_state(ws, c),
                git: git_by_key(git_vals),
                running: obs.map(running).unwrap_or_default(),
                flux: obs.and_then(flux),
                upgrade: obs.and_then(upgrade),
                gates: gates(ws, c, obs),
                drift: match obs {
                    Some(o) if !step_open(ws, c) => drift(git_vals, o),
                    _ => Vec::new(),
                },
                drain: obs.and_then(drain),
                drain_blockers: obs
                    .filter(|o| o.unobservable.is_none())
                    .and_then(|o| o.drain_blockers.clone())
                    .unwrap_or_default(),
                deprecated_apis: obs
                    .filter(|o| o.unobservable.is_none())
                    .and_then(|o| o.deprecated_apis.clone()),
            });
        }
    }
    Report {
        plan: plan.to_string(),
        status: format!("{:?}", st.status),
        reason: st.reason.clone(),
        observed: observed.is_some(),
        clusters: rows,
        waves: Vec::new(),
        eta_assumption: None,
    }
}

/// A cluster's values in Git by key, each value once, in the order found.
fn git_by_key(values: &[GitValue]) -> BTreeMap<String, Vec<String>> {
    let mut git: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in values {
        let e = git.entry(v.key().to_string()).or_default();
        if !e.contains(&v.value) {
            e.push(v.value.clone());
        }
    }
    git
}

/// Cluster `c`'s gates: as the state recorded them, then as observed now (keeping the
/// recorded time while the result is the same).
fn gates(
    ws: Option<&crate::state::WaveState>,
    c: &str,
    obs: Option<&ClusterObservation>,
) -> Vec<Gate> {
    let mut gates: BTreeMap<String, Gate> = ws
        .and_then(|ws| ws.gates.get(c))
        .map(|g| {
            g.values()
                .map(|r| {
                    let gate = Gate {
                        gate: r.gate.clone(),
                        ok: r.ok,
                        reason: r.reason.clone(),
                        since: Some(r.time),
                    };
                    (r.gate.clone(), gate)
                })
                .collect()
        })
        .unwrap_or_default();
    for g in obs.map(|o| o.gates.as_slice()).unwrap_or_default() {
        let since = gates
            .get(&g.gate)
            .filter(|old| old.ok == g.ok)
            .and_then(|old| old.since);
        let gate = Gate {
            gate: g.gate.clone(),
            ok: g.ok,
            reason: g.reason.clone(),
            since,
        };
        gates.insert(g.gate.clone(), gate);
    }
    gates.into_values().collect()
}

/// The upgrade column: why the cluster cannot be observed, the upgrade in progress, or done.
fn upgrade(o: &ClusterObservation) -> Option<String> {
    let unobservable = o
        .unobservable
        .as_ref()
        .map(|w| format!("not observable: {w}"));
    unobservable
        .or_else(|| o.upgrade_in_progress.clone())
        .or_else(|| (!o.components.is_empty() || o.nodes.is_some()).then(|| "done".into()))
}

fn rollout_state(ws: Option<&crate::state::WaveState>, c: &str) -> String {
    let Some(ws) = ws else {
        return "not started".into();
    };
    if let Some(why) = ws.failed.get(c) {
        return format!("failed: {why}");
    }
    if let Some(s) = ws.skipped.get(c) {
        return format!("skipped by {}: {}", s.by, s.reason);
    }
    if let Some(since) = ws.unreachable_since.get(c) {
        return format!(
            "{:?}, unreachable since {}",
            ws.status,
            since.format("%Y-%m-%d %H:%M UTC")
        );
    }
    let merged: Vec<_> = ws
        .steps
        .iter()
        .filter(|x| x.merged_commit.is_some())
        .collect();
    let conv = merged
        .iter()
        .filter(|x| x.converged.contains_key(c))
        .count();
    format!(
        "{:?}, {conv}/{} merged steps converged",
        ws.status,
        merged.len()
    )
}

/// The cluster's wave is changing it right now: a step open, or merged and not converged
/// here. Git and the cluster may disagree then without it being drift.
fn step_open(ws: Option<&crate::state::WaveState>, c: &str) -> bool {
    let Some(ws) = ws else {
        return false;
    };
    if !matches!(ws.status, WaveStatus::InProgress | WaveStatus::Soaking) {
        return false;
    }
    ws.steps.iter().any(|s| match s.status {
        StepStatus::Open => true,
        StepStatus::Merged => !s.converged.contains_key(c),
        _ => false,
    })
}

fn running(o: &ClusterObservation) -> Vec<String> {
    let mut out: Vec<String> = o
        .components
        .iter()
        .filter_map(|c| c.running.as_ref().map(|r| format!("{} {r}", c.id())))
        .collect();
    if let Some(n) = &o.nodes {
        for (v, k) in &n.kubelets {
            out.push(format!("kubelet {v} ×{k}"));
        }
    }
    out
}

/// The drain-blocker line: never silent about missing PodDisruptionBudget data.
fn drain(o: &ClusterObservation) -> Option<String> {
    if o.unobservable.is_some() {
        return None;
    }
    Some(match o.drain_blockers.as_deref() {
        None => "unknown: PodDisruptionBudgets are read only through a per-cluster context \
                 (--cluster-context)"
            .into(),
        Some([]) => "no PodDisruptionBudget blocks a drain".into(),
        Some(b) => format!(
            "BLOCKED: {}",
            b.iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    })
}

fn flux(o: &ClusterObservation) -> Option<Flux> {
    let first = o.kustomizations.first()?;
    let not_ready = o
        .kustomizations
        .iter()
        .find(|k| k.condition("Ready").is_none_or(|r| r.status != "True"));
    let ready = match not_ready.unwrap_or(first).condition("Ready") {
        Some(r) => format!("{} {}", r.status, r.reason).trim().to_string(),
        None => "no Ready condition".into(),
    };
    let revs: BTreeSet<String> = o
        .kustomizations
        .iter()
        .filter_map(|k| k.last_applied_revision.as_deref().and_then(revision_hash))
        .map(|h| h[..h.len().min(10)].to_string())
        .collect();
    Some(Flux {
        ready,
        revision: match revs.len() {
            0 => None,
            1 => revs.into_iter().next(),
            _ => Some(revs.into_iter().collect::<Vec<_>>().join("/")),
        },
        kustomizations: o.kustomizations.len(),
    })
}

/// Versions running that Git does not say, per role.
fn drift(git: &[GitValue], o: &ClusterObservation) -> Vec<String> {
    let wanted = |role: Role| -> Vec<&str> {
        git.iter()
            .filter(|v| match v.what {
                What::Kubernetes(r) => r == Role::Whole || role == Role::Whole || r == role,
                _ => false,
            })
            .map(|v| v.value.as_str())
            .collect()
    };
    // A minor-only value in Git ("1.31") matches any patch of it.
    let matches = |running: &str, want: &str| {
        same_version(running, want)
            || KubeVersion::parse(want).is_some_and(|w| {
                w.is_minor_only()
                    && KubeVersion::parse(running)
                        .is_some_and(|r| (r.major, r.minor) == (w.major, w.minor))
            })
    };
    let mut out = Vec::new();
    for c in &o.components {
        let Some(r) = &c.running else { continue };
        let want = wanted(c.role);
        if !want.is_empty() && !want.iter().any(|w| matches(r, w)) {
            out.push(format!("{} runs {r}; Git says {}", c.id(), want.join(", ")));
        }
    }
    if let Some(n) = &o.nodes {
        // Control-plane nodes follow control-plane values, workers the workers' (a cluster
        // between its control-plane and worker steps is not drifting).
        for (role, kubelets, what) in [
            (
                Role::ControlPlane,
                n.control_plane_kubelets.clone(),
                "control-plane kubelet(s)",
            ),
            (Role::Workers, n.worker_kubelets(), "worker kubelet(s)"),
        ] {
            let want = wanted(role);
            if want.is_empty() {
                continue;
            }
            for (v, k) in &kubelets {
                if !want.iter().any(|w| matches(v, w)) {
                    out.push(format!("{k} {what} run {v}; Git says {}", want.join(", ")));
                }
            }
        }
    }
    out
}

/// The text table.
pub fn render(r: &Report) -> String {
    let mut out = format!(
        "plan {} — {}{}\n",
        r.plan,
        r.status,
        r.reason
            .as_ref()
            .map(|x| format!(" ({x})"))
            .unwrap_or_default()
    );
    let mut wave = "";
    for row in &r.clusters {
        if row.wave != wave {
            wave = &row.wave;
            out.push_str(&format!("\nwave {wave}\n"));
            if let Some(c) = r.waves.iter().find(|c| c.wave == *wave) {
                out.push_str(&render_controls(c, r.eta_assumption.as_deref()));
            }
        }
        let git: Vec<String> = row
            .git
            .iter()
            .map(|(k, v)| format!("{k} {}", v.join("/")))
            .collect();
        out.push_str(&format!("  {:<18} {}\n", row.cluster, row.state));
        out.push_str(&format!("    git:      {}\n", dash(&git.join(", "))));
        if r.observed {
            out.push_str(&format!(
                "    running:  {}\n",
                dash(&row.running.join(", "))
            ));
            let flux = row
                .flux
                .as_ref()
                .map(|f| {
                    format!(
                        "{} @ {} ({} Kustomization{})",
                        f.ready,
                        f.revision.as_deref().unwrap_or("-"),
                        f.kustomizations,
                        if f.kustomizations == 1 { "" } else { "s" }
                    )
                })
                .unwrap_or_else(|| "no Kustomization observed".into());
            out.push_str(&format!("    flux:     {flux}\n"));
            if let Some(u) = &row.upgrade {
                out.push_str(&format!("    upgrade:  {u}\n"));
            }
            if let Some(d) = &row.drain {
                out.push_str(&format!("    drain:    {d}\n"));
            }
            if let Some(apis) = &row.deprecated_apis {
                let list = match apis.as_slice() {
                    [] => "no deprecated API requested".to_string(),
                    a => a
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                };
                out.push_str(&format!("    apis:     {list}\n"));
            }
        }
        if !row.gates.is_empty() {
            let gates: Vec<String> = row
                .gates
                .iter()
                .map(|g| {
                    format!(
                        "{} {} ({})",
                        g.gate,
                        if g.ok { "ok" } else { "FAILED" },
                        g.reason
                    )
                })
                .collect();
            out.push_str(&format!("    gates:    {}\n", gates.join("; ")));
        }
        if !row.drift.is_empty() {
            out.push_str(&format!("    DRIFT:    {}\n", row.drift.join("; ")));
        }
    }
    out
}

/// A wave's controls, one line each.
fn render_controls(c: &crate::core::progress::WaveControls, assumption: Option<&str>) -> String {
    let mut out = String::new();
    for b in &c.batches {
        out.push_str(&format!("  {b}\n"));
    }
    for s in &c.skipped {
        out.push_str(&format!("  skipped: {s}\n"));
    }
    if let Some(f) = &c.freeze {
        out.push_str(&format!("  freeze {f}\n"));
    }
    if let Some(w) = &c.next_window {
        out.push_str(&format!(
            "  window: closed, next opens {}\n",
            w.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    if let Some(r) = &c.rollback {
        out.push_str(&format!("  automatic rollback: {r}\n"));
    }
    for u in &c.unreachable {
        out.push_str(&format!("  unreachable: {u}\n"));
    }
    if let Some(m) = &c.maintenance {
        out.push_str(&format!("  held: {m}\n"));
    }
    if let Some(e) = &c.eta {
        out.push_str(&format!(
            "  ETA: {} ({})\n",
            e.format("%Y-%m-%d %H:%M UTC"),
            assumption.unwrap_or("see plan")
        ));
    }
    out
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// The GitHub API budget as the GitHub forge last saw it, from the `x-ratelimit-limit`,
/// `-remaining` and `-reset` headers of its last answer (status makes no GitHub call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiBudget {
    pub limit: u64,
    pub remaining: u64,
    /// When the window resets (the budget is whole again).
    pub reset: chrono::DateTime<chrono::Utc>,
    /// When the answer carrying these headers arrived.
    pub seen_at: chrono::DateTime<chrono::Utc>,
}

/// One line for the status table and the dashboard: what was left when, and until when.
pub fn render_budget(b: &ApiBudget, now: chrono::DateTime<chrono::Utc>) -> String {
    let fmt = "%Y-%m-%d %H:%M UTC";
    if now >= b.reset {
        format!(
            "GitHub API budget: {} of {} requests were left at {}; that window reset at {}",
            b.remaining,
            b.limit,
            b.seen_at.format(fmt),
            b.reset.format(fmt)
        )
    } else {
        format!(
            "GitHub API budget: {} of {} requests left at {}, until {}",
            b.remaining,
            b.limit,
            b.seen_at.format(fmt),
            b.reset.format(fmt)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_line_says_when_it_was_seen_and_whether_its_window_is_over() {
        let t = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let b = ApiBudget {
            limit: 5000,
            remaining: 4999,
            reset: t("2023-08-09T14:29:23Z"),
            seen_at: t("2023-08-09T13:30:00Z"),
        };
        assert_eq!(
            render_budget(&b, t("2023-08-09T13:31:00Z")),
            "GitHub API budget: 4999 of 5000 requests left at 2023-08-09 13:30 UTC, until 2023-08-09 14:29 UTC"
        );
        assert!(render_budget(&b, t("2023-08-09T15:00:00Z")).contains("that window reset at"));
    }
    use crate::core::cluster::{Component, NodeSummary};
    use crate::core::state::{StepState, WaveState};

    fn kube(role: Role, v: &str) -> GitValue {
        GitValue {
            what: What::Kubernetes(role),
            value: v.into(),
        }
    }

    fn comp(kind: &str, role: Role, running: &str) -> Component {
        Component {
            kind: kind.into(),
            name: "ns/x".into(),
            role,
            desired: None,
            running: Some(running.into()),
            progress: None,
            offers: None,
        }
    }

    fn obs(components: Vec<Component>, kubelets: &[(&str, u32)]) -> ClusterObservation {
        ClusterObservation {
            components,
            nodes: Some(NodeSummary {
                total: kubelets.iter().map(|k| k.1).sum(),
                ready: kubelets.iter().map(|k| k.1).sum(),
                kubelets: kubelets.iter().map(|(v, k)| (v.to_string(), *k)).collect(),
                control_plane_kubelets: BTreeMap::new(),
                not_ready: Vec::new(),
            }),
            ..Default::default()
        }
    }

    fn report(st: &PlanState, o: ClusterObservation, git: Vec<GitValue>) -> Row {
        let waves = vec![("canary".to_string(), vec!["c1".to_string()])];
        let in_git = BTreeMap::from([("c1".to_string(), git)]);
        let observed = BTreeMap::from([("c1".to_string(), o)]);
        build("p", &waves, &in_git, st, Some(&observed))
            .clusters
            .remove(0)
    }

    #[test]
    fn drift_is_a_version_git_does_not_say_outside_an_open_step() {
        let st = PlanState::new("p", "h");
        let git = vec![
            kube(Role::ControlPlane, "v1.33.5"),
            kube(Role::Workers, "v1.33.5"),
        ];
        let o = obs(
            vec![comp("KubeadmControlPlane", Role::ControlPlane, "v1.32.4")],
            &[("v1.33.5", 2), ("v1.32.4", 1)],
        );
        let row = report(&st, o.clone(), git.clone());
        assert_eq!(row.drift.len(), 2, "{:?}", row.drift);
        assert!(row.drift[0].contains("KubeadmControlPlane ns/x runs v1.32.4; Git says v1.33.5"));
        assert!(
            row.drift[1].contains("1 worker kubelet(s) run v1.32.4"),
            "{:?}",
            row.drift
        );
        assert!(row.running.contains(&"kubelet v1.33.5 ×2".to_string()));

        // Same cluster while its wave has a step merged but not converged: not drift.
        let mut st = PlanState::new("p", "h");
        st.waves.push(WaveState {
            name: "canary".into(),
            status: WaveStatus::InProgress,
            clusters: vec!["c1".into()],
            steps: vec![StepState {
                status: StepStatus::Merged,
                merged_commit: Some("abc".into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert!(report(&st, o, git).drift.is_empty());
    }

    #[test]
    fn control_plane_kubelets_follow_control_plane_values() {
        let st = PlanState::new("p", "h");
        // Between the control-plane step and the workers step: not drift.
        let git = vec![
            kube(Role::ControlPlane, "v1.33.5"),
            kube(Role::Workers, "v1.32.4"),
        ];
        let mut o = obs(Vec::new(), &[("v1.33.5", 3), ("v1.32.4", 2)]);
        if let Some(n) = o.nodes.as_mut() {
            n.control_plane_kubelets.insert("v1.33.5".into(), 3);
        }
        assert!(report(&st, o.clone(), git).drift.is_empty());
        // A control-plane node left behind is.
        if let Some(n) = o.nodes.as_mut() {
            n.control_plane_kubelets.insert("v1.32.4".into(), 1);
        }
        let git = vec![
            kube(Role::ControlPlane, "v1.33.5"),
            kube(Role::Workers, "v1.32.4"),
        ];
        let row = report(&st, o, git);
        assert_eq!(row.drift.len(), 1, "{:?}", row.drift);
        assert!(row.drift[0].contains("1 control-plane kubelet(s) run v1.32.4"));
    }

    #[test]
    fn minor_only_git_values_match_any_patch_and_roles_are_respected() {
        let st = PlanState::new("p", "h");
        // EKS-style minor-only whole-cluster value.
        let git = vec![kube(Role::Whole, "1.31")];
        let o = obs(
            vec![comp("apiserver", Role::ControlPlane, "v1.31.7-eks-1")],
            &[("v1.31.4-eks-1", 3)],
        );
        assert!(report(&st, o, git).drift.is_empty());
        // A workers-only Git value says nothing about the control plane.
        let git = vec![kube(Role::Workers, "v1.32.4")];
        let o = obs(
            vec![comp("KubeadmControlPlane", Role::ControlPlane, "v1.33.5")],
            &[("v1.32.4", 3)],
        );
        assert!(report(&st, o, git).drift.is_empty());
    }

    #[test]
    fn text_shows_running_flux_upgrade_and_gates() {
        let st = PlanState::new("p", "h");
        let mut o = obs(
            vec![comp("KubeadmControlPlane", Role::ControlPlane, "v1.33.5")],
            &[("v1.33.5", 1)],
        );
        o.upgrade_in_progress = Some("MachineDeployment ns/md: 1/3 machines up to date".into());
        o.gates.push(crate::cluster::GateResult {
            gate: "prometheus".into(),
            ok: false,
            reason: "alert X firing".into(),
        });
        let row = report(&st, o, vec![kube(Role::Whole, "v1.33.5")]);
        let r = Report {
            plan: "p".into(),
            status: "InProgress".into(),
            reason: None,
            observed: true,
            clusters: vec![row],
            waves: Vec::new(),
            eta_assumption: None,
        };
        let text = render(&r);
        assert!(
            text.contains("running:  KubeadmControlPlane ns/x v1.33.5, kubelet v1.33.5 ×1"),
            "{text}"
        );
        assert!(
            text.contains("upgrade:  MachineDeployment ns/md: 1/3"),
            "{text}"
        );
        assert!(
            text.contains("prometheus FAILED (alert X firing)"),
            "{text}"
        );
        assert!(
            text.contains("flux:     no Kustomization observed"),
            "{text}"
        );
    }

    #[test]
    fn status_shows_drain_blockers_and_says_when_they_are_unknown() {
        let st = PlanState::new("p", "h");
        let render_row = |o: ClusterObservation| {
            render(&Report {
                plan: "p".into(),
                status: "InProgress".into(),
                reason: None,
                observed: true,
                clusters: vec![report(&st, o, vec![kube(Role::Whole, "v1.33.5")])],
                waves: Vec::new(),
                eta_assumption: None,
            })
        };
        // Hub mode: no PodDisruptionBudget data, and status says so.
        let text = render_row(obs(vec![], &[]));
        assert!(
            text.contains("drain:    unknown: PodDisruptionBudgets are read only through a per-cluster context"),
            "{text}"
        );
        let mut o = obs(vec![], &[]);
        o.drain_blockers = Some(vec![]);
        assert!(render_row(o).contains("drain:    no PodDisruptionBudget blocks a drain"));
        let mut o = obs(vec![], &[]);
        o.drain_blockers = Some(vec![DrainBlocker {
            namespace: "zk".into(),
            name: "zk-pdb".into(),
            expected_pods: 3,
        }]);
        let row = report(&st, o.clone(), vec![]);
        assert_eq!(row.drain_blockers.len(), 1);
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["drainBlockers"][0]["expectedPods"], 3);
        assert!(render_row(o).contains(
            "drain:    BLOCKED: PodDisruptionBudget zk/zk-pdb allows no disruption (3 pods)"
        ));
        // Not observable: the upgrade line says why; no drain line claims anything.
        let mut o = obs(vec![], &[]);
        o.unobservable = Some("no context".into());
        assert!(!render_row(o).contains("drain:"));
    }
}
