//! A simulated Flux: the cluster-state source for `fleetwave demo` and the end-to-end tests.
//!
//! It owns the rules that turn "these commits landed on the base branch at these times" into
//! the Kustomization status and gate results a real fleet would report, including injected
//! faults (failed health check, stuck rollout, firing alert) and the rollback that heals them.
//!
//! [`SimFlux`] holds no mutable state: every observation is a pure function of (history,
//! config, `now`). A reconciler killed and restarted at any point therefore sees the same
//! world, and tests can ask about any moment in any order.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use crate::core::cluster::{
    ClusterError, ClusterObservation, ClusterSource, Condition, GateResult, KustomizationStatus,
};

/// One commit of the base branch (first-parent history), with the time it landed and the
/// clusters whose files it changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseCommit {
    /// Full commit hash; Flux revision strings embed it, so it should be hex (>= 7 chars) for
    /// [`super::revision_hash`] to read it back.
    pub id: String,
    pub time: DateTime<Utc>,
    pub touched: BTreeSet<String>,
}

/// A failure injected into one cluster. It triggers once the first commit touching that cluster
/// is applied, and is sticky until the next commit touching the cluster (the revert) is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Fault {
    /// Flux applies the commit but its health checks time out: Ready False `HealthCheckFailed`.
    HealthCheckFailed,
    /// Flux keeps retrying the commit: Ready Unknown, Reconciling True `ProgressingWithRetry`.
    StuckProgressing,
    /// Flux is healthy but a critical Prometheus alert fires, so the prometheus gate fails.
    AlertFiring,
    /// The cluster stops answering once the first commit touching it lands (its API server is
    /// gone: nothing is observed) until the next commit touching it is applied.
    Unreachable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Virtual time from a commit landing on the base branch to Flux applying it.
    pub delay: Duration,
    /// Fault per cluster name.
    pub faults: BTreeMap<String, Fault>,
    /// Branch name used in revision strings (`<branch>@sha1:<id>`), e.g. "main".
    pub branch: String,
}

/// Simulated Flux over a base-branch history. See the module docs.
#[derive(Debug, Clone)]
pub struct SimFlux {
    /// Oldest first.
    history: Vec<BaseCommit>,
    config: SimConfig,
}

/// Where a cluster's fault stands at some moment.
enum FaultState {
    /// No fault configured, not triggered yet, or healed by a later touching commit.
    Dormant,
    /// Triggered by the commit at `faulty` (index into the history).
    Active { fault: Fault, faulty: usize },
}

impl SimFlux {
    /// `history` is first-parent order, oldest first; timestamps are made non-decreasing.
    pub fn new(mut history: Vec<BaseCommit>, config: SimConfig) -> Self {
        // History comes oldest first (first-parent order). A commit cannot land before its
        // parent, whatever its timestamp says (a forge may stamp merges with its own clock).
        for i in 1..history.len() {
            if history[i].time < history[i - 1].time {
                history[i].time = history[i - 1].time;
            }
        }
        SimFlux { history, config }
    }

    /// The history, oldest first.
    pub fn history(&self) -> &[BaseCommit] {
        &self.history
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// What `cluster` reports at `now`. Clusters the history never mentions are observed
    /// like any other: Flux applies the whole branch, touched or not.
    pub fn observe_cluster(&self, cluster: &str, now: DateTime<Utc>) -> ClusterObservation {
        let mut ks = KustomizationStatus {
            name: format!("{cluster}-apps"),
            namespace: cluster.to_string(),
            generation: 1,
            observed_generation: 1,
            ..Default::default()
        };
        let mut gates = healthy_gates();
        let Some(applied) = self.applied_index(now) else {
            return first_reconciliation(ks, gates);
        };
        if self.dark(cluster, now) {
            return ClusterObservation {
                unobservable: Some("simulated: the API server does not answer".into()),
                ..Default::default()
            };
        }
        let rev = self.rev(applied);
        ks.last_attempted_revision = Some(rev.clone());
        // The last good revision before a faulty commit: what Flux keeps as lastAppliedRevision
        // when the faulty one never finishes.
        let state = self.fault_state(cluster, applied);
        let before = match state {
            FaultState::Active { faulty, .. } => faulty.checked_sub(1).map(|i| self.rev(i)),
            FaultState::Dormant => None,
        };
        show_fault(&mut ks, &mut gates, state, &rev, before);
        ClusterObservation {
            kustomizations: vec![ks],
            gates,
            // Pods in the simulation never restart.
            pod_restarts: Some(0),
            ..Default::default()
        }
    }

    /// Index of the newest commit Flux has applied by `now`.
    fn applied_index(&self, now: DateTime<Utc>) -> Option<usize> {
        // Sorted by time, so "landed early enough" is a prefix.
        let n = self
            .history
            .partition_point(|c| c.time + self.config.delay <= now);
        n.checked_sub(1)
    }

    /// The fault fires at the first commit touching the cluster, once applied. It is sticky:
    /// only the next commit touching the cluster (the revert/rollback) heals it, once applied.
    fn fault_state(&self, cluster: &str, applied: usize) -> FaultState {
        let Some(&fault) = self.config.faults.get(cluster) else {
            return FaultState::Dormant;
        };
        let mut touching = (0..=applied).filter(|&i| self.history[i].touched.contains(cluster));
        match (touching.next(), touching.next()) {
            (Some(faulty), None) => FaultState::Active { fault, faulty },
            _ => FaultState::Dormant,
        }
    }

    /// `Unreachable`: dark from the landing of the first commit touching the cluster until
    /// the next touching commit is applied.
    fn dark(&self, cluster: &str, now: DateTime<Utc>) -> bool {
        if self.config.faults.get(cluster) != Some(&Fault::Unreachable) {
            return false;
        }
        let mut touching = self
            .history
            .iter()
            .filter(|c| c.touched.contains(cluster) && c.time <= now);
        match (touching.next(), touching.next()) {
            (Some(_), None) => true,
            (Some(_), Some(heal)) => heal.time + self.config.delay > now,
            _ => false,
        }
    }

    fn rev(&self, i: usize) -> String {
        format!("{}@sha1:{}", self.config.branch, self.history[i].id)
    }
}

/// The conditions of a Kustomization that Flux is still reconciling.
fn reconciling(reason: &str, message: &str) -> Vec<Condition> {
    vec![
        Condition::new(
            "Ready",
            "Unknown",
            "Progressing",
            "Reconciliation in progress",
        ),
        Condition::new("Reconciling", "True", reason, message),
    ]
}

/// Nothing has reached the cluster yet: the first reconciliation is in flight.
fn first_reconciliation(mut ks: KustomizationStatus, gates: Vec<GateResult>) -> ClusterObservation {
    ks.conditions = reconciling("Progressing", "Fetching manifests for the first revision");
    ClusterObservation {
        kustomizations: vec![ks],
        gates,
        pod_restarts: Some(0),
        ..Default::default()
    }
}

/// The Kustomization and gates as Flux shows them with `state` at revision `rev`; `before`
/// is the last good revision before the faulty commit.
fn show_fault(
    ks: &mut KustomizationStatus,
    gates: &mut [GateResult],
    state: FaultState,
    rev: &str,
    before: Option<String>,
) {
    match state {
        FaultState::Active {
            fault: Fault::HealthCheckFailed,
            ..
        } => {
            ks.last_applied_revision = before;
            ks.conditions = vec![Condition::new(
                "Ready",
                "False",
                "HealthCheckFailed",
                "health check failed after 5m0s: timeout waiting for: \
                 [Deployment/kube-system/coredns status: 'InProgress']",
            )];
        }
        FaultState::Active {
            fault: Fault::StuckProgressing,
            ..
        } => {
            ks.last_applied_revision = before;
            ks.conditions = reconciling(
                "ProgressingWithRetry",
                &format!("Detecting drift for revision {rev} with a timeout of 5m0s"),
            );
        }
        FaultState::Active {
            fault: Fault::AlertFiring,
            ..
        } => {
            applied_ok(ks, rev);
            gates[0] = GateResult {
                gate: "prometheus".into(),
                ok: false,
                reason: "alert KubePodCrashLooping (severity=critical) firing".into(),
            };
        }
        FaultState::Dormant
        | FaultState::Active {
            fault: Fault::Unreachable,
            ..
        } => applied_ok(ks, rev),
    }
}

fn applied_ok(ks: &mut KustomizationStatus, rev: &str) {
    ks.last_applied_revision = Some(rev.to_string());
    ks.conditions = vec![Condition::new(
        "Ready",
        "True",
        "ReconciliationSucceeded",
        &format!("Applied revision: {rev}"),
    )];
}

/// Prometheus first: the AlertFiring fault replaces index 0.
fn healthy_gates() -> Vec<GateResult> {
    vec![
        GateResult {
            gate: "prometheus".into(),
            ok: true,
            reason: "no critical alerts firing".into(),
        },
        GateResult {
            gate: "nodes".into(),
            ok: true,
            reason: "all nodes Ready".into(),
        },
    ]
}

impl ClusterSource for SimFlux {
    async fn observe(
        &self,
        clusters: &[String],
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, ClusterObservation>, ClusterError> {
        Ok(clusters
            .iter()
            .map(|c| (c.clone(), self.observe_cluster(c, now)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cluster::{Convergence, convergence, failing_gate};
    use chrono::TimeZone;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
    const D: &str = "dddddddddddddddddddddddddddddddddddddddd";
    const E: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(min)
    }

    fn commit(id: &str, min: i64, touched: &[&str]) -> BaseCommit {
        BaseCommit {
            id: id.into(),
            time: t(min),
            touched: touched.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A (t0, nothing) -> B (t10, wave 1: dev, hc, stuck, alert) -> C (t20, prod)
    /// -> D (t30, touches hc again: the revert). Delay 5 minutes.
    fn history() -> Vec<BaseCommit> {
        vec![
            commit(A, 0, &[]),
            commit(B, 10, &["dev", "hc", "stuck", "alert"]),
            commit(C, 20, &["prod"]),
            commit(D, 30, &["hc"]),
        ]
    }

    fn sim() -> SimFlux {
        let faults = [
            ("hc", Fault::HealthCheckFailed),
            ("stuck", Fault::StuckProgressing),
            ("alert", Fault::AlertFiring),
        ]
        .into_iter()
        .map(|(c, f)| (c.to_string(), f))
        .collect();
        SimFlux::new(
            history(),
            SimConfig {
                delay: Duration::minutes(5),
                faults,
                branch: "main".into(),
            },
        )
    }

    /// `a` is `b` or a descendant of it, by position in the (linear) history.
    fn descends(a: &str, b: &str) -> bool {
        let pos = |id: &str| history().iter().position(|c| c.id == id);
        matches!((pos(a), pos(b)), (Some(x), Some(y)) if x >= y)
    }

    fn rev(id: &str) -> Option<String> {
        Some(format!("main@sha1:{id}"))
    }

    async fn obs(s: &SimFlux, cluster: &str, min: i64) -> ClusterObservation {
        let all = s.observe(&[cluster.to_string()], t(min)).await.unwrap();
        assert_eq!(all.len(), 1);
        all[cluster].clone()
    }

    fn ks(o: &ClusterObservation) -> &KustomizationStatus {
        assert_eq!(o.kustomizations.len(), 1);
        &o.kustomizations[0]
    }

    fn cond<'a>(o: &'a ClusterObservation, t: &str) -> Option<(&'a str, &'a str)> {
        ks(o)
            .condition(t)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
    }

    #[tokio::test]
    async fn nothing_applied_before_the_delay() {
        let s = sim();
        for cluster in ["dev", "hc", "unknown"] {
            let o = obs(&s, cluster, 4).await;
            let k = ks(&o);
            assert_eq!(k.name, format!("{cluster}-apps"));
            assert_eq!(k.namespace, cluster);
            assert_eq!((k.generation, k.observed_generation), (1, 1));
            assert_eq!(k.last_applied_revision, None);
            assert_eq!(k.last_attempted_revision, None);
            assert_eq!(cond(&o, "Ready"), Some(("Unknown", "Progressing")));
            assert_eq!(cond(&o, "Reconciling"), Some(("True", "Progressing")));
            assert!(matches!(
                convergence(&o, A, &descends),
                Convergence::Waiting(_)
            ));
        }
    }

    #[tokio::test]
    async fn applied_after_the_delay_then_newer_commits() {
        let s = sim();
        // Exactly at time + delay counts as applied.
        let o = obs(&s, "dev", 5).await;
        assert_eq!(ks(&o).last_applied_revision, rev(A));
        assert_eq!(ks(&o).last_attempted_revision, rev(A));
        assert_eq!(cond(&o, "Ready"), Some(("True", "ReconciliationSucceeded")));
        assert_eq!(
            ks(&o).condition("Ready").unwrap().message,
            format!("Applied revision: main@sha1:{A}")
        );
        assert_eq!(cond(&o, "Reconciling"), None);
        assert_eq!(o.gates, healthy_gates());
        assert!(failing_gate(&o).is_none());
        // B landed at 10 but is not applied until 15.
        let o = obs(&s, "dev", 14).await;
        assert_eq!(ks(&o).last_applied_revision, rev(A));
        assert!(matches!(
            convergence(&o, B, &descends),
            Convergence::Waiting(_)
        ));
        let o = obs(&s, "dev", 15).await;
        assert_eq!(ks(&o).last_applied_revision, rev(B));
        assert_eq!(convergence(&o, B, &descends), Convergence::Converged);
        // Later commits that don't touch dev still reach it, and still count for B.
        let o = obs(&s, "dev", 100).await;
        assert_eq!(ks(&o).last_applied_revision, rev(D));
        assert_eq!(convergence(&o, B, &descends), Convergence::Converged);
        // A cluster nobody mentions follows the branch too.
        let o = obs(&s, "unknown", 25).await;
        assert_eq!(ks(&o).last_applied_revision, rev(C));
    }

    #[tokio::test]
    async fn health_check_failed_is_sticky_until_reverted() {
        let s = sim();
        // Before the faulty commit applies: healthy at A.
        let o = obs(&s, "hc", 14).await;
        assert_eq!(ks(&o).last_applied_revision, rev(A));
        assert_eq!(cond(&o, "Ready"), Some(("True", "ReconciliationSucceeded")));
        // Faulty commit B applied: attempted B, applied stays at A.
        let o = obs(&s, "hc", 15).await;
        assert_eq!(ks(&o).last_attempted_revision, rev(B));
        assert_eq!(ks(&o).last_applied_revision, rev(A));
        assert_eq!(cond(&o, "Ready"), Some(("False", "HealthCheckFailed")));
        assert!(
            ks(&o)
                .condition("Ready")
                .unwrap()
                .message
                .contains("timeout waiting for")
        );
        assert!(matches!(
            convergence(&o, B, &descends),
            Convergence::Failed(r) if r.contains("HealthCheckFailed")
        ));
        // C doesn't touch hc: still failing, now attempting C.
        let o = obs(&s, "hc", 25).await;
        assert_eq!(ks(&o).last_attempted_revision, rev(C));
        assert_eq!(ks(&o).last_applied_revision, rev(A));
        assert!(matches!(
            convergence(&o, B, &descends),
            Convergence::Failed(_)
        ));
        // D touches hc again (the revert), landed at 30: healed once applied at 35.
        let o = obs(&s, "hc", 34).await;
        assert_eq!(cond(&o, "Ready"), Some(("False", "HealthCheckFailed")));
        let o = obs(&s, "hc", 35).await;
        assert_eq!(ks(&o).last_applied_revision, rev(D));
        assert_eq!(ks(&o).last_attempted_revision, rev(D));
        assert_eq!(cond(&o, "Ready"), Some(("True", "ReconciliationSucceeded")));
        assert_eq!(convergence(&o, D, &descends), Convergence::Converged);
    }

    #[tokio::test]
    async fn faulty_first_commit_has_no_applied_revision() {
        let s = SimFlux::new(
            vec![commit(A, 0, &["x"])],
            SimConfig {
                delay: Duration::zero(),
                faults: [("x".to_string(), Fault::HealthCheckFailed)].into(),
                branch: "2026.01".into(),
            },
        );
        let o = obs(&s, "x", 0).await;
        assert_eq!(ks(&o).last_applied_revision, None);
        assert_eq!(
            ks(&o).last_attempted_revision,
            Some(format!("2026.01@sha1:{A}"))
        );
        assert!(matches!(
            convergence(&o, A, &descends),
            Convergence::Failed(_)
        ));
    }

    #[tokio::test]
    async fn unreachable_goes_dark_when_its_first_commit_lands_until_the_next_one_applies() {
        let s = SimFlux::new(
            vec![
                commit(A, 0, &[]),
                commit(B, 10, &["x"]),
                commit(C, 30, &["x"]),
            ],
            SimConfig {
                delay: Duration::minutes(5),
                faults: [("x".to_string(), Fault::Unreachable)].into(),
                branch: "main".into(),
            },
        );
        let dark = |o: &ClusterObservation| o.unobservable.is_some() && o.kustomizations.is_empty();
        assert!(!dark(&obs(&s, "x", 9).await), "answers before the merge");
        assert!(dark(&obs(&s, "x", 10).await), "dark from the merge landing");
        assert!(
            dark(&obs(&s, "x", 34).await),
            "until the next touching commit applies"
        );
        let back = obs(&s, "x", 35).await;
        assert!(!dark(&back));
        assert_eq!(convergence(&back, C, &descends), Convergence::Converged);
        assert!(!dark(&obs(&s, "y", 20).await), "other clusters answer");
    }

    #[tokio::test]
    async fn stuck_progressing_waits() {
        let s = sim();
        let o = obs(&s, "stuck", 25).await;
        assert_eq!(ks(&o).last_attempted_revision, rev(C));
        assert_eq!(ks(&o).last_applied_revision, rev(A));
        assert_eq!(cond(&o, "Ready"), Some(("Unknown", "Progressing")));
        assert_eq!(
            cond(&o, "Reconciling"),
            Some(("True", "ProgressingWithRetry"))
        );
        assert!(matches!(
            convergence(&o, B, &descends),
            Convergence::Waiting(_)
        ));
        assert!(failing_gate(&o).is_none());
    }

    #[tokio::test]
    async fn alert_firing_converges_but_fails_the_gate() {
        let s = sim();
        let o = obs(&s, "alert", 14).await;
        assert!(failing_gate(&o).is_none(), "not triggered before B applies");
        let o = obs(&s, "alert", 15).await;
        assert_eq!(ks(&o).last_applied_revision, rev(B));
        assert_eq!(convergence(&o, B, &descends), Convergence::Converged);
        let g = failing_gate(&o).expect("prometheus gate fails");
        assert_eq!(g.gate, "prometheus");
        assert!(g.reason.contains("KubePodCrashLooping"));
        assert!(o.gates.iter().any(|g| g.gate == "nodes" && g.ok));
    }

    #[tokio::test]
    async fn untriggered_faults_look_healthy() {
        // "prod" has a fault but only C touches it; before C applies it is healthy.
        let mut s = sim();
        s.config
            .faults
            .insert("prod".into(), Fault::HealthCheckFailed);
        let o = obs(&s, "prod", 24).await;
        assert_eq!(ks(&o).last_applied_revision, rev(B));
        assert_eq!(convergence(&o, B, &descends), Convergence::Converged);
        let o = obs(&s, "prod", 25).await;
        assert_eq!(cond(&o, "Ready"), Some(("False", "HealthCheckFailed")));
        assert_eq!(ks(&o).last_applied_revision, rev(B));
    }

    #[tokio::test]
    async fn revert_heals_every_fault() {
        // E touches stuck and alert again at 40: their rollback, applied at 45.
        let mut h = history();
        h.push(commit(E, 40, &["stuck", "alert"]));
        let s = SimFlux::new(h, sim().config.clone());
        let o = obs(&s, "stuck", 44).await;
        assert_eq!(
            cond(&o, "Reconciling"),
            Some(("True", "ProgressingWithRetry"))
        );
        let o = obs(&s, "alert", 44).await;
        assert!(failing_gate(&o).is_some());
        for cluster in ["stuck", "alert"] {
            let o = obs(&s, cluster, 45).await;
            assert_eq!(ks(&o).last_applied_revision, rev(E), "{cluster}");
            assert_eq!(cond(&o, "Ready"), Some(("True", "ReconciliationSucceeded")));
            assert_eq!(cond(&o, "Reconciling"), None);
            assert!(failing_gate(&o).is_none(), "{cluster}");
        }
    }

    #[tokio::test]
    async fn deterministic_and_stamps_are_monotonic() {
        let clusters: Vec<String> = ["dev", "hc", "stuck", "alert", "prod", "other"]
            .map(String::from)
            .to_vec();
        // A commit stamped earlier than its parent (a forge's own clock) lands with its parent.
        let mut skewed = history();
        skewed[2].time = skewed[0].time - Duration::hours(5);
        let s = SimFlux::new(skewed, sim().config.clone());
        assert_eq!(s.history()[2].time, s.history()[1].time);
        let s1 = sim();
        let s2 = SimFlux::new(history(), s1.config.clone());
        for min in [-10, 0, 5, 14, 15, 22, 30, 35, 1000] {
            let a = s1.observe(&clusters, t(min)).await.unwrap();
            // Asking again, in between other times, changes nothing: no hidden state.
            let _ = s1.observe(&clusters, t(min + 7)).await.unwrap();
            let b = s1.observe(&clusters, t(min)).await.unwrap();
            let c = s2.observe(&clusters, t(min)).await.unwrap();
            assert_eq!(a, b, "t={min}");
            assert_eq!(a, c, "t={min}");
            assert_eq!(a.keys().cloned().collect::<Vec<_>>(), {
                let mut v = clusters.clone();
                v.sort();
                v
            });
        }
    }
}
