//! Cluster state as fleetwave observes it: Flux Kustomization status and gate results per
//! cluster, and the pure rules that turn them into "converged at commit X": the cluster's
//! Flux Kustomizations from the fleet repository are Ready at X or a descendant of it.
//! Sources (the simulated Flux, and kube-rs, in the adapters floor) implement [`ClusterSource`].
//! [`upgrade`] reads the upgrade itself from CAPI, Kamaji, k0rdent objects and nodes.

pub mod object;
pub mod upgrade;

pub use upgrade::{Component, DrainBlocker, NodeSummary, Role};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

impl Condition {
    pub fn new(type_: &str, status: &str, reason: &str, message: &str) -> Self {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The fields of a `kustomize.toolkit.fluxcd.io/v1` Kustomization that fleetwave reads.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizationStatus {
    pub name: String,
    pub namespace: String,
    pub generation: i64,
    pub observed_generation: i64,
    pub conditions: Vec<Condition>,
    pub last_applied_revision: Option<String>,
    pub last_attempted_revision: Option<String>,
    /// For OCI sources: the Git revision the applied artifact was built from
    /// (`status.lastAppliedOriginRevision`, e.g. `main@sha1:<hex>`).
    #[serde(default)]
    pub last_applied_origin_revision: Option<String>,
    /// The GitRepository / OCIRepository it applies from, when observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceStatus>,
    /// Some(false) when it applies from a Git repository other than the fleet's (e.g. the
    /// shared gitops-base): its revision never is a fleet commit, so only its health counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_fleet: Option<bool>,
}

/// A Flux source (`spec.sourceRef` of a Kustomization) and its stored artifact.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `status.artifact.revision`: what the source controller has fetched.
    #[serde(default)]
    pub revision: Option<String>,
    /// `spec.url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default)]
    pub ready: Option<Condition>,
}

impl KustomizationStatus {
    pub fn condition(&self, t: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == t)
    }
}

/// A gate evaluated on a cluster at one moment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GateResult {
    pub gate: String,
    pub ok: bool,
    pub reason: String,
}

/// Everything observed about one cluster in one tick.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ClusterObservation {
    pub kustomizations: Vec<KustomizationStatus>,
    pub gates: Vec<GateResult>,
    /// Upgrade still running where the kind reports it (CAPI, Kamaji, k0rdent); None = none
    /// seen (or nothing reports it).
    #[serde(default)]
    pub upgrade_in_progress: Option<String>,
    /// Objects that report a Kubernetes version (CAPI, Kamaji, k0rdent, the apiserver).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    /// Nodes, when the cluster itself is reachable (per-cluster context mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeSummary>,
    /// Sum of container restart counts over all pods (per-cluster context mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_restarts: Option<u64>,
    /// PodDisruptionBudgets that allow no disruption now (per-cluster context mode): a drain
    /// would block on them. None = no PodDisruptionBudget data (no per-cluster context, or
    /// the source does not read them); Some(empty) = none blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_blockers: Option<Vec<DrainBlocker>>,
    /// Deprecated APIs its API server has been asked for since it started (per-cluster mode,
    /// read from `/metrics` when a wave has a `deprecatedApis` gate). None = no such data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated_apis: Option<Vec<DeprecatedApi>>,
    /// Why what is known of this cluster cannot be trusted now (no context, its API server
    /// not answering, Flux not installed): it never converges or passes a gate while set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unobservable: Option<String>,
}

/// One `apiserver_requested_deprecated_apis` series of an API server's `/metrics`: an API
/// requested since it started that a later release no longer serves.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct DeprecatedApi {
    pub group: String,
    pub version: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    /// `1.25`: the release that no longer serves it.
    pub removed_release: String,
}

impl std::fmt::Display for DeprecatedApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gv = if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        let sub = if self.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", self.subresource)
        };
        write!(
            f,
            "{gv} {}{sub} (removed in {})",
            self.resource, self.removed_release
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster state unavailable: {0}")]
    Unavailable(String),
}

/// Where cluster state comes from.
#[allow(async_fn_in_trait)]
pub trait ClusterSource {
    async fn observe(
        &self,
        clusters: &[String],
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, ClusterObservation>, ClusterError>;
}

/// The commit hash inside a Flux revision string: `main@sha1:<hex>`, `2026.01@sha1:<hex>`,
/// `refs/heads/main@sha1:<hex>`, `sha1:<hex>`, `sha256:<hex>`, or legacy `main/<hex>`.
pub fn revision_hash(rev: &str) -> Option<&str> {
    let tail = rev.rsplit('@').next().unwrap_or(rev);
    let hash = match tail.split_once(':') {
        Some(("sha1" | "sha256", h)) => h,
        Some(_) => return None,
        None => rev.rsplit('/').next().unwrap_or(rev),
    };
    (hash.len() >= 7 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hash)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "reason")]
pub enum Convergence {
    Converged,
    /// Not there yet; may still get there.
    Waiting(String),
    /// The target revision was attempted and failed, or Flux reports a terminal failure.
    Failed(String),
}

/// Has this cluster reconciled `target` (or a descendant) and is it healthy?
/// `descends(a, b)` tells whether commit `a` is `b` or a descendant of it.
pub fn convergence(
    obs: &ClusterObservation,
    target: &str,
    descends: &dyn Fn(&str, &str) -> bool,
) -> Convergence {
    if let Some(why) = &obs.unobservable {
        return Convergence::Waiting(format!("cluster not observable: {why}"));
    }
    if obs.kustomizations.is_empty() {
        return Convergence::Waiting("no Flux Kustomization observed for this cluster".into());
    }
    if obs
        .kustomizations
        .iter()
        .all(|k| k.from_fleet == Some(false))
    {
        return Convergence::Waiting(
            "no Flux Kustomization of this cluster applies from the fleet repository".into(),
        );
    }
    for k in &obs.kustomizations {
        let id = format!("Kustomization {}/{}", k.namespace, k.name);
        // Applying from another repository: its revision never is a fleet commit, so only its
        // health counts (the revision rules below are skipped).
        let fleet = k.from_fleet != Some(false);
        let at_target = |h: Option<&str>| h.is_some_and(|h| descends(h, target));
        // An OCI artifact's digest never names the Git commit; its origin revision does.
        let origin = k
            .last_applied_origin_revision
            .as_deref()
            .and_then(revision_hash);
        let applied = at_target(k.last_applied_revision.as_deref().and_then(revision_hash))
            || at_target(origin);
        let attempted = k.last_attempted_revision.as_deref().and_then(revision_hash);
        let cond = |t: &str, status: &str| k.condition(t).filter(|c| c.status == status);
        let ready = k.condition("Ready");
        if fleet && at_target(attempted) && !applied {
            if let Some(r) = cond("Ready", "False") {
                return failed(&id, "failed to apply the new revision", r);
            }
        }
        if let Some(c) = cond("Stalled", "True") {
            return failed(&id, "is stalled", c);
        }
        if let Some(h) = cond("Healthy", "False").filter(|_| !fleet) {
            return failed(&id, "is unhealthy", h);
        }
        if k.observed_generation != k.generation {
            return Convergence::Waiting(format!(
                "{id} has not observed generation {} yet",
                k.generation
            ));
        }
        if fleet {
            if !applied {
                return Convergence::Waiting(format!(
                    "{id} has not applied the merged revision yet{}",
                    source_note(k, &at_target)
                ));
            }
            // Applied, then its health checks failed (kustomize-controller keeps retrying, so
            // Reconciling may be True too): the revision is bad, not on its way.
            let health_failed = cond("Healthy", "False")
                .or_else(|| cond("Ready", "False").filter(|r| r.reason == "HealthCheckFailed"));
            if let Some(h) = health_failed {
                return failed(&id, "is unhealthy", h);
            }
        }
        if cond("Reconciling", "True").is_some() {
            return Convergence::Waiting(format!("{id} is reconciling"));
        }
        match ready {
            Some(r) if r.status == "True" => {}
            Some(r) => return Convergence::Waiting(format!("{id} is not Ready: {}", r.reason)),
            None => return Convergence::Waiting(format!("{id} reports no Ready condition")),
        }
    }
    if let Some(p) = &obs.upgrade_in_progress {
        return Convergence::Waiting(format!("upgrade in progress: {p}"));
    }
    Convergence::Converged
}

/// A terminal failure named by the condition that shows it.
fn failed(id: &str, what: &str, c: &Condition) -> Convergence {
    Convergence::Failed(
        format!("{id} {what}: {} {}", c.reason, c.message)
            .trim_end()
            .to_string(),
    )
}

/// Why a Kustomization has not applied the target yet, as far as its source tells.
fn source_note(k: &KustomizationStatus, at_target: &dyn Fn(Option<&str>) -> bool) -> String {
    let Some(src) = &k.source else {
        return String::new();
    };
    let id = format!("{} {}/{}", src.kind, src.namespace, src.name);
    if let Some(r) = src.ready.as_ref().filter(|r| r.status == "False") {
        return format!(" (source {id} not Ready: {} {})", r.reason, r.message).replace(" )", ")");
    }
    match src.revision.as_deref() {
        Some(rev) if at_target(revision_hash(rev)) => {
            format!(" (source {id} has fetched it)")
        }
        Some(rev) => format!(" (source {id} is at {rev}; it has not fetched the merge commit yet)"),
        None => format!(" (source {id} has no artifact yet)"),
    }
}

/// Why fleetwave cannot see the cluster at all, if it cannot: no observation, no usable
/// context or API server (`unobservable`), or no Flux Kustomization reported. A cluster that
/// answers with a failing Kustomization is reachable (that is a failure, not silence).
pub fn unreachable(obs: Option<&ClusterObservation>) -> Option<String> {
    let Some(obs) = obs else {
        return Some("the cluster source reported nothing for it".into());
    };
    if let Some(why) = &obs.unobservable {
        return Some(format!("not observable: {why}"));
    }
    if obs.kustomizations.is_empty() {
        return Some("no Flux Kustomization observed".into());
    }
    None
}

/// A cluster that is plainly unhealthy right now, whatever revision it is at: no Flux
/// Kustomization observed (unreachable), Ready False, or Stalled. Transient reconciling is not.
pub fn unhealthy(obs: &ClusterObservation) -> Option<String> {
    if let Some(why) = &obs.unobservable {
        return Some(format!("cluster not observable: {why}"));
    }
    if obs.kustomizations.is_empty() {
        return Some("no Flux Kustomization observed (cluster unreachable?)".into());
    }
    for k in &obs.kustomizations {
        if let Some(r) = k.condition("Ready").filter(|r| r.status == "False") {
            return Some(
                format!(
                    "Kustomization {}/{} not Ready: {} {}",
                    k.namespace, k.name, r.reason, r.message
                )
                .trim_end()
                .to_string(),
            );
        }
        if let Some(s) = k.condition("Stalled").filter(|s| s.status == "True") {
            return Some(format!(
                "Kustomization {}/{} stalled: {}",
                k.namespace, k.name, s.reason
            ));
        }
    }
    None
}

/// The first failing gate, if any.
pub fn failing_gate(obs: &ClusterObservation) -> Option<&GateResult> {
    obs.gates.iter().find(|g| !g.ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "1111111111111111111111111111111111111111";
    const Y: &str = "2222222222222222222222222222222222222222";
    const OLD: &str = "0000000000000000000000000000000000000000";

    /// X is the merge commit; Y descends from X; OLD precedes X.
    fn descends(a: &str, b: &str) -> bool {
        a == b || (a == Y && b == X)
    }

    fn ks() -> KustomizationStatus {
        KustomizationStatus {
            name: "apps".into(),
            namespace: "flux-system".into(),
            generation: 2,
            observed_generation: 2,
            conditions: vec![Condition::new(
                "Ready",
                "True",
                "ReconciliationSucceeded",
                "Applied revision",
            )],
            last_applied_revision: Some(format!("main@sha1:{X}")),
            last_attempted_revision: Some(format!("main@sha1:{X}")),
            last_applied_origin_revision: None,
            source: None,
            from_fleet: None,
        }
    }

    fn obs(k: KustomizationStatus) -> ClusterObservation {
        ClusterObservation {
            kustomizations: vec![k],
            ..Default::default()
        }
    }

    #[test]
    fn revision_formats() {
        for r in [
            format!("main@sha1:{X}"),
            format!("2026.01@sha1:{X}"),
            format!("refs/heads/main@sha1:{X}"),
            format!("sha1:{X}"),
            format!("main/{X}"),
        ] {
            assert_eq!(revision_hash(&r), Some(X), "{r}");
        }
        assert_eq!(revision_hash("sha256:abcdef0123"), Some("abcdef0123"));
        assert_eq!(revision_hash("main@md5:zz"), None);
        assert_eq!(revision_hash("latest"), None);
    }

    #[test]
    fn convergence_table() {
        let c = |k: KustomizationStatus| convergence(&obs(k), X, &descends);
        assert_eq!(c(ks()), Convergence::Converged);
        // A descendant of the merge commit counts.
        let mut k = ks();
        k.last_applied_revision = Some(format!("main/{Y}"));
        assert_eq!(c(k), Convergence::Converged);
        // Stale observedGeneration.
        let mut k = ks();
        k.observed_generation = 1;
        assert!(matches!(c(k), Convergence::Waiting(_)));
        // Still at an older revision.
        let mut k = ks();
        k.last_applied_revision = Some(format!("main@sha1:{OLD}"));
        k.last_attempted_revision = Some(format!("main@sha1:{OLD}"));
        assert!(matches!(c(k), Convergence::Waiting(_)));
        // Attempted the target, failed: lastAttemptedRevision ahead of lastAppliedRevision.
        let mut k = ks();
        k.last_applied_revision = Some(format!("main@sha1:{OLD}"));
        k.conditions = vec![Condition::new(
            "Ready",
            "False",
            "HealthCheckFailed",
            "timeout waiting for Deployment",
        )];
        assert!(matches!(c(k), Convergence::Failed(r) if r.contains("HealthCheckFailed")));
        // Reconciling with retry.
        let mut k = ks();
        k.conditions.push(Condition::new(
            "Reconciling",
            "True",
            "ProgressingWithRetry",
            "",
        ));
        assert!(matches!(c(k), Convergence::Waiting(_)));
        // DependencyNotReady keeps it waiting at an old revision.
        let mut k = ks();
        k.last_applied_revision = Some(format!("main@sha1:{OLD}"));
        k.last_attempted_revision = Some(format!("main@sha1:{OLD}"));
        k.conditions = vec![Condition::new("Ready", "False", "DependencyNotReady", "")];
        assert!(matches!(c(k), Convergence::Waiting(_)));
        // Stalled is terminal; Healthy=False fails.
        let mut k = ks();
        k.conditions.push(Condition::new(
            "Stalled",
            "True",
            "BuildFailed",
            "kustomize build failed",
        ));
        assert!(matches!(c(k), Convergence::Failed(_)));
        let mut k = ks();
        k.conditions
            .push(Condition::new("Healthy", "False", "HealthCheckFailed", ""));
        assert!(matches!(c(k), Convergence::Failed(_)));
        // A tag revision is parsed too.
        let mut k = ks();
        k.last_applied_revision = Some(format!("2026.01@sha1:{X}"));
        assert_eq!(c(k), Convergence::Converged);
        // Applied, then degraded: Flux retries (Reconciling True) with Ready False
        // HealthCheckFailed and Healthy False at the merge commit. That is a failure.
        let mut k = ks();
        k.conditions = vec![
            Condition::new("Ready", "False", "HealthCheckFailed", "timeout"),
            Condition::new("Healthy", "False", "HealthCheckFailed", "timeout"),
            Condition::new("Reconciling", "True", "ProgressingWithRetry", ""),
        ];
        assert!(matches!(c(k), Convergence::Failed(r) if r.contains("unhealthy")));
        // OCI source: the digest is not the commit; the origin revision is.
        let mut k = ks();
        k.last_applied_revision = Some("latest@sha256:abcdef0123456789".into());
        k.last_attempted_revision = k.last_applied_revision.clone();
        assert!(matches!(c(k.clone()), Convergence::Waiting(_)));
        k.last_applied_origin_revision = Some(format!("main@sha1:{Y}"));
        assert_eq!(c(k), Convergence::Converged);
        // A Kustomization applying from another repository (gitops-base): health only, but
        // at least one must apply from the fleet.
        let mut base = ks();
        base.name = "opencenter-cert-manager".into();
        base.from_fleet = Some(false);
        base.last_applied_revision = Some(format!("v2026.01@sha1:{OLD}"));
        let o = ClusterObservation {
            kustomizations: vec![ks(), base.clone()],
            ..Default::default()
        };
        assert_eq!(convergence(&o, X, &descends), Convergence::Converged);
        let o = ClusterObservation {
            kustomizations: vec![base.clone()],
            ..Default::default()
        };
        assert!(
            matches!(convergence(&o, X, &descends), Convergence::Waiting(r) if r.contains("fleet repository"))
        );
        base.conditions = vec![Condition::new("Ready", "False", "HealthCheckFailed", "")];
        let o = ClusterObservation {
            kustomizations: vec![ks(), base],
            ..Default::default()
        };
        assert!(
            matches!(convergence(&o, X, &descends), Convergence::Waiting(r) if r.contains("HealthCheckFailed"))
        );
        // Upgrade still running.
        let mut o = obs(ks());
        o.upgrade_in_progress = Some("KubeadmControlPlane at v1.32.4, want v1.33.5".into());
        assert!(matches!(
            convergence(&o, X, &descends),
            Convergence::Waiting(_)
        ));
    }
}
