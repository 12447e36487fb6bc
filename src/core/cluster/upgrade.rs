//! The upgrade itself, as the objects that carry it out report it: the kinds of the registry
//! in [`crate::core::kinds`] that observe one (CAPI, Kamaji, k0rdent, …), nodes and the
//! apiserver. A converged Flux only says the manifests were applied; these say whether the
//! cluster got there.
//!
//! Pure: JSON objects in, [`Component`]s out.

use std::collections::BTreeMap;

use serde_json::Value;

pub use crate::core::cluster::object::{CONTROL_PLANE_LABEL, Component, Obj, same_version};
use crate::core::cluster::object::{condition, text};
use crate::core::kinds;
pub use crate::core::kinds::Role;
use crate::core::version::KubeVersion;

/// Nodes of one cluster (per-cluster context mode).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    pub total: u32,
    pub ready: u32,
    /// kubelet version → number of nodes running it.
    pub kubelets: BTreeMap<String, u32>,
    /// The same, for control-plane nodes only (`node-role.kubernetes.io/control-plane`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub control_plane_kubelets: BTreeMap<String, u32>,
    /// Nodes not Ready, by name (sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ready: Vec<String>,
}

impl NodeSummary {
    /// Worker kubelets: all but the control plane's.
    pub fn worker_kubelets(&self) -> BTreeMap<String, u32> {
        let mut out = self.kubelets.clone();
        for (v, k) in &self.control_plane_kubelets {
            if let Some(n) = out.get_mut(v) {
                *n = n.saturating_sub(*k);
            }
        }
        out.retain(|_, n| *n > 0);
        out
    }

    /// Kubelets of the nodes a step of `role` upgrades.
    pub fn kubelets_for(&self, role: Role) -> BTreeMap<String, u32> {
        match role {
            Role::Whole => self.kubelets.clone(),
            Role::ControlPlane => self.control_plane_kubelets.clone(),
            Role::Workers => self.worker_kubelets(),
        }
    }
}

/// A `policy/v1` PodDisruptionBudget that allows no disruption now: draining a node that
/// runs one of its pods would wait for ever (`kubectl drain`, CAPI and managed node-pool
/// upgrades all evict through the Eviction API, which honours PDBs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainBlocker {
    pub namespace: String,
    pub name: String,
    /// `status.expectedPods`: the pods it counts.
    pub expected_pods: u32,
}

impl std::fmt::Display for DrainBlocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pods = if self.expected_pods == 1 {
            "pod"
        } else {
            "pods"
        };
        write!(
            f,
            "PodDisruptionBudget {}/{} allows no disruption ({} {pods})",
            self.namespace, self.name, self.expected_pods
        )
    }
}

/// The PodDisruptionBudget `obj` as a drain blocker, if it is one: `status.disruptionsAllowed`
/// is 0 while `status.expectedPods` > 0 (PodDisruptionBudgetStatus in the Kubernetes API
/// reference). A PDB whose controller has not written a status for its current generation
/// yet (`status.observedGeneration` behind `metadata.generation`) is read as it stands: the
/// disruption controller's last word is what an eviction would be checked against.
pub fn drain_blocker(obj: &Obj) -> Option<DrainBlocker> {
    let status = obj.data.get("status")?;
    let allowed = status.get("disruptionsAllowed").and_then(Value::as_i64)?;
    let expected = status
        .get("expectedPods")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    (allowed <= 0 && expected > 0).then(|| DrainBlocker {
        namespace: obj.namespace.unwrap_or("").to_string(),
        name: obj.name.to_string(),
        expected_pods: u32::try_from(expected).unwrap_or(u32::MAX),
    })
}

/// The drain blockers among a cluster's PodDisruptionBudgets, sorted by namespace and name.
pub fn drain_blockers_of<'a>(pdbs: impl IntoIterator<Item = Obj<'a>>) -> Vec<DrainBlocker> {
    let mut out: Vec<DrainBlocker> = pdbs.into_iter().filter_map(|o| drain_blocker(&o)).collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// `running` is older than `want` at `want`'s precision (a minor-only want ignores patches).
pub fn behind(running: &str, want: &KubeVersion) -> bool {
    let Some(r) = KubeVersion::parse(running) else {
        return false;
    };
    match (
        (r.major, r.minor).cmp(&(want.major, want.minor)),
        r.patch,
        want.patch,
    ) {
        (std::cmp::Ordering::Less, _, _) => true,
        (std::cmp::Ordering::Equal, Some(rp), Some(wp)) => rp < wp,
        _ => false,
    }
}

/// The component an object describes, if it is a kind that reports an upgrade.
pub fn component(obj: &Value) -> Option<Component> {
    component_of(&Obj::of(obj))
}

/// [`component`] over an object's parts.
pub fn component_of(obj: &Obj) -> Option<Component> {
    kinds::lookup(obj.group(), obj.kind)?.observe?(obj)
}

/// The apiserver's `/version` answer as a component.
pub fn apiserver(git_version: &str) -> Component {
    Component {
        kind: "apiserver".into(),
        name: "/version".into(),
        role: Role::ControlPlane,
        desired: None,
        running: Some(git_version.to_string()),
        progress: None,
        offers: None,
    }
}

/// Summarise Node objects: Ready condition and `status.nodeInfo.kubeletVersion`.
pub fn node_summary<'a>(nodes: impl IntoIterator<Item = &'a Value>) -> NodeSummary {
    node_summary_of(nodes.into_iter().map(Obj::of))
}

/// [`node_summary`] over objects' parts.
pub fn node_summary_of<'a>(nodes: impl IntoIterator<Item = Obj<'a>>) -> NodeSummary {
    let mut out = NodeSummary::default();
    for n in nodes {
        out.total += 1;
        let ready = condition(n.data, "Ready")
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
            == Some("True");
        if ready {
            out.ready += 1;
        } else {
            out.not_ready.push(n.name.to_string());
        }
        let v = text(n.data, "/status/nodeInfo/kubeletVersion").unwrap_or("unknown");
        *out.kubelets.entry(v.to_string()).or_default() += 1;
        if n.control_plane {
            *out.control_plane_kubelets.entry(v.to_string()).or_default() += 1;
        }
    }
    out.not_ready.sort();
    out
}

/// Sum of container restart counts of one pod (init containers included). Takes the whole
/// object or just its `data` (only `status` is read).
pub fn pod_restarts(pod: &Value) -> u64 {
    ["/status/containerStatuses", "/status/initContainerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_u64))
        .sum()
}

/// The first component still upgrading, as a sentence; None when all are settled.
pub fn in_progress(components: &[Component]) -> Option<String> {
    components
        .iter()
        .find_map(|c| c.progress.as_ref().map(|p| format!("{}: {p}", c.id())))
}

/// Whether observed versions for `role` lag `want`: components with a running version, and
/// the kubelets of the nodes of that role. None when nothing reports a version older than `want`.
/// `Whole` checks both roles.
pub fn lag(
    components: &[Component],
    nodes: Option<&NodeSummary>,
    role: Role,
    want: &KubeVersion,
) -> Option<String> {
    let applies = |r: Role| role == Role::Whole || r == Role::Whole || r == role;
    for c in components.iter().filter(|c| applies(c.role)) {
        if let Some(r) = c.running.as_deref().filter(|r| behind(r, want)) {
            return Some(format!("{} runs {r}, want {want}", c.id()));
        }
    }
    if let Some(n) = nodes {
        let old: Vec<String> = n
            .kubelets_for(role)
            .iter()
            .filter(|(v, _)| behind(v, want))
            .map(|(v, k)| format!("{k} at {v}"))
            .collect();
        if !old.is_empty() {
            return Some(format!("kubelets {}, want {want}", old.join(", ")));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pdb_allowing_no_disruption_over_expected_pods_blocks_a_drain() {
        // `kubectl get poddisruptionbudgets zk-pdb -o yaml` from the Kubernetes documentation
        // ("Specifying a Disruption Budget for your Application",
        // kubernetes.io/docs/tasks/run-application/configure-pdb/): 3 ZooKeeper pods,
        // minAvailable 2, one disruption allowed.
        let zk = |min: i64, healthy: i64, allowed: i64, expected: i64| {
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"creationTimestamp": "2020-03-04T04:22:56Z", "generation": 1,
                             "name": "zk-pdb", "namespace": "default",
                             "resourceVersion": "6498", "uid": "50ef6d7d-df52-47e3-9c6c-6a0d5cf5bf0d"},
                "spec": {"minAvailable": min, "selector": {"matchLabels": {"app": "zookeeper"}}},
                "status": {"currentHealthy": healthy, "desiredHealthy": min,
                           "disruptionsAllowed": allowed, "expectedPods": expected,
                           "observedGeneration": 1}})
        };
        let of = |v: &Value| drain_blocker(&Obj::of(v));
        assert_eq!(
            of(&zk(2, 3, 1, 3)),
            None,
            "the documented PDB allows one disruption"
        );
        // minAvailable equal to the replicas (or a pod down): nothing may be evicted.
        let blocked = zk(3, 3, 0, 3);
        let b = of(&blocked).expect("a drain blocker");
        assert_eq!(
            b.to_string(),
            "PodDisruptionBudget default/zk-pdb allows no disruption (3 pods)"
        );
        // A budget over no pods blocks nothing; a status not written yet is not read as one.
        assert_eq!(of(&zk(1, 0, 0, 0)), None);
        let mut fresh = zk(3, 3, 0, 3);
        fresh["status"] = json!({});
        assert_eq!(of(&fresh), None);
        let mut second = zk(1, 1, 0, 1);
        second["metadata"]["namespace"] = json!("a");
        let all = drain_blockers_of([
            Obj::of(&blocked),
            Obj::of(&zk(2, 3, 1, 3)),
            Obj::of(&second),
        ]);
        let names: Vec<String> = all
            .iter()
            .map(|b| format!("{}/{}", b.namespace, b.name))
            .collect();
        assert_eq!(names, ["a/zk-pdb", "default/zk-pdb"]);
        assert_eq!(
            all[0].to_string(),
            "PodDisruptionBudget a/zk-pdb allows no disruption (1 pod)"
        );
    }

    #[test]
    fn machine_pools_settle_when_every_replica_is_ready_and_available() {
        let mp = |status: Value| {
            json!({"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "MachinePool",
                "metadata": {"name": "mp-0", "namespace": "c1", "generation": 2},
                "spec": {"clusterName": "c1", "replicas": 3,
                         "template": {"spec": {"version": "v1.33.5"}}},
                "status": status})
        };
        let rolling = mp(
            json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 2,
                                "availableReplicas": 2, "unavailableReplicas": 1}),
        );
        let c = component(&rolling).expect("a component");
        assert_eq!(c.role, Role::Workers);
        assert_eq!(c.progress.as_deref(), Some("2/3 machines ready"));
        assert_eq!(c.running, None);
        let done = mp(
            json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3,
                             "availableReplicas": 3, "unavailableReplicas": 0}),
        );
        let c = component(&done).expect("a component");
        assert_eq!((c.progress, c.running.as_deref()), (None, Some("v1.33.5")));
        let stale = mp(json!({"observedGeneration": 1, "readyReplicas": 3}));
        assert!(
            component(&stale)
                .unwrap()
                .progress
                .unwrap()
                .contains("generation 2")
        );
    }
}
