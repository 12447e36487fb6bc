//! The upgrade itself, as the objects that carry it out report it: CAPI
//! `Cluster` / `KubeadmControlPlane` / `MachineDeployment`, Kamaji `TenantControlPlane`,
//! k0rdent `ClusterDeployment`, nodes and the apiserver. A converged Flux only says the
//! manifests were applied; these say whether the cluster got there.
//!
//! Pure: JSON objects in, [`Component`]s out. Fields are read defensively (any CRD version,
//! unknown fields ignored, missing fields mean "not reported").

use std::collections::BTreeMap;

use serde_json::Value;

pub use crate::core::locate::Role;
use crate::core::version::KubeVersion;

/// One object that reports a Kubernetes version for a cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// `KubeadmControlPlane`, `TenantControlPlane`, `apiserver`, ...
    pub kind: String,
    /// `namespace/name` (just `name` for cluster-scoped objects).
    pub name: String,
    pub role: Role,
    /// The version asked for (spec), when the object has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<String>,
    /// The version running (status), when the object reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<String>,
    /// Why the object is not settled yet; None = settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

impl Component {
    pub fn id(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }
}

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

fn text<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn int(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })
}

/// The parts of an object the readers use: identity from its metadata, everything else from
/// `data`, which holds `spec` and `status` at its top (true of a whole object and of a kube-rs
/// `DynamicObject`'s `data`, so the watch store is read without copying).
#[derive(Debug, Clone, Copy)]
pub struct Obj<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub generation: Option<i64>,
    /// Labelled `node-role.kubernetes.io/control-plane` (nodes).
    pub control_plane: bool,
    pub data: &'a Value,
}

/// The label that marks control-plane nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

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

impl<'a> Obj<'a> {
    /// A whole object as JSON.
    pub fn of(obj: &'a Value) -> Obj<'a> {
        Obj {
            api_version: text(obj, "/apiVersion").unwrap_or(""),
            kind: text(obj, "/kind").unwrap_or(""),
            name: text(obj, "/metadata/name").unwrap_or("?"),
            namespace: text(obj, "/metadata/namespace"),
            generation: int(obj, "/metadata/generation"),
            control_plane: obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .is_some_and(|l| l.contains_key(CONTROL_PLANE_LABEL)),
            data: obj,
        }
    }
}

fn id_of(o: &Obj) -> String {
    match o.namespace.filter(|n| !n.is_empty()) {
        Some(ns) => format!("{ns}/{}", o.name),
        None => o.name.to_string(),
    }
}

/// A condition from `status.conditions`, or from where CAPI keeps its other generation of
/// conditions (`status.v1beta2.conditions`, `status.deprecated.v1beta1.conditions`).
fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    [
        "/status/conditions",
        "/status/v1beta2/conditions",
        "/status/deprecated/v1beta1/conditions",
    ]
    .iter()
    .filter_map(|p| obj.pointer(p).and_then(Value::as_array))
    .flatten()
    .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

fn cond_text(c: &Value) -> String {
    let f = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
    format!("{} {} {}", f("status"), f("reason"), f("message"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `metadata.generation` not yet observed by the controller. Only where the controller
/// reports `status.observedGeneration` (older Kamaji releases do not).
fn generation_lag(o: &Obj) -> Option<String> {
    let generation = o.generation?;
    let observed = int(o.data, "/status/observedGeneration")?;
    (observed < generation).then(|| format!("controller has not observed generation {generation}"))
}

/// Two version strings name the same version (numbers compared when both parse).
pub fn same_version(a: &str, b: &str) -> bool {
    match (KubeVersion::parse(a), KubeVersion::parse(b)) {
        (Some(x), Some(y)) => {
            x.cmp_precedence(&y).is_eq() && x.is_minor_only() == y.is_minor_only()
        }
        _ => a == b,
    }
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
    let group = obj.api_version.split_once('/').map_or("", |(g, _)| g);
    match (group, obj.kind) {
        ("cluster.x-k8s.io", "Cluster") => capi_cluster(obj),
        ("cluster.x-k8s.io", "MachineDeployment") => Some(machine_deployment(obj)),
        ("cluster.x-k8s.io", "MachinePool") => Some(machine_pool(obj)),
        ("controlplane.cluster.x-k8s.io", kind) => Some(control_plane(obj, kind)),
        ("kamaji.clastix.io", "TenantControlPlane") => Some(tenant_control_plane(obj)),
        ("k0rdent.mirantis.com" | "hmc.mirantis.com", "ClusterDeployment") => {
            Some(cluster_deployment(obj))
        }
        _ => None,
    }
}

/// A CAPI Cluster matters only with a managed topology; its status has no version, so it
/// reports progress through `TopologyReconciled` (upgrade pending reasons) and `RollingOut`.
fn capi_cluster(obj: &Obj) -> Option<Component> {
    let desired = text(obj.data, "/spec/topology/version")?.to_string();
    let mut progress = generation_lag(obj);
    if progress.is_none()
        && let Some(c) = condition(obj.data, "TopologyReconciled")
        && c.get("status").and_then(Value::as_str) == Some("False")
    {
        progress = Some(format!("TopologyReconciled {}", cond_text(c)));
    }
    if progress.is_none()
        && let Some(c) = condition(obj.data, "RollingOut")
        && c.get("status").and_then(Value::as_str) == Some("True")
    {
        progress = Some(format!("RollingOut {}", cond_text(c)));
    }
    Some(Component {
        kind: "Cluster".into(),
        name: id_of(obj),
        role: Role::Whole,
        desired: Some(desired),
        running: None,
        progress,
    })
}

/// KubeadmControlPlane (and other CAPI control-plane kinds with `spec.version` and
/// `status.version`, e.g. K0sControlPlane): `status.version` is the oldest machine's.
fn control_plane(obj: &Obj, kind: &str) -> Component {
    let desired = text(obj.data, "/spec/version").map(str::to_string);
    let running = text(obj.data, "/status/version").map(str::to_string);
    let replicas = int(obj.data, "/spec/replicas").unwrap_or(1);
    let updated = int(obj.data, "/status/upToDateReplicas")
        .or_else(|| int(obj.data, "/status/updatedReplicas"));
    let ready = int(obj.data, "/status/readyReplicas");
    let progress = generation_lag(obj)
        .or_else(|| match (&desired, &running) {
            (Some(d), Some(r)) if !same_version(d, r) => Some(format!("at {r}, rolling out {d}")),
            (Some(d), None) => Some(format!("no version in status yet, rolling out {d}")),
            _ => None,
        })
        .or_else(|| {
            updated
                .filter(|u| *u < replicas)
                .map(|u| format!("{u}/{replicas} machines up to date"))
        })
        .or_else(|| {
            ready
                .filter(|r| *r < replicas)
                .map(|r| format!("{r}/{replicas} machines ready"))
        });
    Component {
        kind: kind.to_string(),
        name: id_of(obj),
        role: Role::ControlPlane,
        desired,
        running,
        progress,
    }
}

/// MachineDeployment: no version in status, so it runs `spec.template.spec.version` once
/// every replica is up to date and available.
fn machine_deployment(obj: &Obj) -> Component {
    let desired = text(obj.data, "/spec/template/spec/version").map(str::to_string);
    let replicas = int(obj.data, "/spec/replicas").unwrap_or(1);
    let updated = int(obj.data, "/status/upToDateReplicas")
        .or_else(|| int(obj.data, "/status/updatedReplicas"));
    let available = int(obj.data, "/status/availableReplicas");
    let progress = generation_lag(obj)
        .or_else(|| match updated {
            Some(u) if u < replicas => Some(format!("{u}/{replicas} machines up to date")),
            None if replicas > 0 => Some("no rollout status yet".into()),
            _ => None,
        })
        .or_else(|| {
            available
                .filter(|a| *a < replicas)
                .map(|a| format!("{a}/{replicas} machines available"))
        });
    Component {
        kind: "MachineDeployment".into(),
        name: id_of(obj),
        role: Role::Workers,
        running: desired.clone().filter(|_| progress.is_none()),
        desired,
        progress,
    }
}

/// MachinePool: like a MachineDeployment, but v1beta1 reports no up-to-date count, so
/// without one it is done when every replica is ready and available and none unavailable.
fn machine_pool(obj: &Obj) -> Component {
    let desired = text(obj.data, "/spec/template/spec/version").map(str::to_string);
    let replicas = int(obj.data, "/spec/replicas").unwrap_or(1);
    let count = |p: &str| int(obj.data, p);
    let progress = generation_lag(obj)
        .or_else(|| {
            count("/status/upToDateReplicas")
                .filter(|u| *u < replicas)
                .map(|u| format!("{u}/{replicas} machines up to date"))
        })
        .or_else(|| match count("/status/readyReplicas") {
            Some(r) if r < replicas => Some(format!("{r}/{replicas} machines ready")),
            None if replicas > 0 => Some("no rollout status yet".into()),
            _ => None,
        })
        .or_else(|| {
            count("/status/availableReplicas")
                .filter(|a| *a < replicas)
                .map(|a| format!("{a}/{replicas} machines available"))
        })
        .or_else(|| {
            count("/status/unavailableReplicas")
                .filter(|u| *u > 0)
                .map(|u| format!("{u} machines unavailable"))
        });
    Component {
        kind: "MachinePool".into(),
        name: id_of(obj),
        role: Role::Workers,
        running: desired.clone().filter(|_| progress.is_none()),
        desired,
        progress,
    }
}

/// Kamaji: `status.kubernetesResources.version.{version,status}`; done at `Ready`.
fn tenant_control_plane(obj: &Obj) -> Component {
    let desired = text(obj.data, "/spec/kubernetes/version").map(str::to_string);
    let running = text(obj.data, "/status/kubernetesResources/version/version").map(str::to_string);
    let state = text(obj.data, "/status/kubernetesResources/version/status");
    let progress = generation_lag(obj)
        .or_else(|| match (&desired, &running) {
            (Some(d), Some(r)) if !same_version(d, r) => Some(format!("at {r}, upgrading to {d}")),
            (Some(d), None) => Some(format!("no version in status yet, want {d}")),
            _ => None,
        })
        .or_else(|| match state {
            Some("Ready") => None,
            Some(s) => Some(format!("version status {s}")),
            None => Some("no version status yet".into()),
        });
    Component {
        kind: "TenantControlPlane".into(),
        name: id_of(obj),
        role: Role::ControlPlane,
        desired,
        running,
        progress,
    }
}

/// k0rdent: the spec names a ClusterTemplate, not a version, so only `status.k8sVersion`
/// and `Ready` tell; the step's target version is compared by [`lag`].
fn cluster_deployment(obj: &Obj) -> Component {
    let running = text(obj.data, "/status/k8sVersion").map(str::to_string);
    let progress = generation_lag(obj).or_else(|| match condition(obj.data, "Ready") {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => None,
        Some(c) => Some(format!("Ready {}", cond_text(c))),
        None => Some("no Ready condition yet".into()),
    });
    Component {
        kind: "ClusterDeployment".into(),
        name: id_of(obj),
        role: Role::Whole,
        desired: text(obj.data, "/spec/template").map(|t| format!("template {t}")),
        running,
        progress,
    }
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
