//! Cluster API: `Cluster` (managed topology), `MachineDeployment`, `MachinePool`, `Machine`
//! and the control-plane providers' kinds (kubeadm, RKE2, k3s, Talos; k0s ones live in
//! [`super::k0smotron`]).

use serde_json::Value;

use super::{Field, FieldRole, Group, Hub, Identity, Kind, KindSpec, Role};
use crate::core::cluster::object::{
    Component, Obj, cond_text, condition, generation_lag, id_of, int, same_version, text,
};

const CORE: &str = "cluster.x-k8s.io";
/// Every CAPI control-plane provider serves its kind in this group.
pub const CONTROL_PLANE_GROUP: &str = "controlplane.cluster.x-k8s.io";

const TEMPLATE_VERSION: &[Field] = &[Field {
    path: &["spec", "template", "spec", "version"],
    role: FieldRole::ControlPlaneIfLabelled,
}];
const CP_VERSION: &[Field] = &[Field {
    path: &["spec", "version"],
    role: FieldRole::Fixed(Role::ControlPlane),
}];

const fn hub(group: &'static str, plural: &'static str) -> Option<Hub> {
    Some(Hub {
        group,
        version: "v1beta1",
        plural,
    })
}

/// A control-plane provider's kind: `spec.version` for the control plane, reported the CAPI
/// way in `status`. Matched by kind in any group: a kustomize patch target often names only
/// the kind.
pub(super) const fn control_plane_kind(
    project: &'static str,
    kind: &'static str,
    plural: Option<&'static str>,
) -> KindSpec {
    KindSpec {
        project,
        group: Group::Any,
        kind: Kind::Is(kind),
        fields: CP_VERSION,
        hub: match plural {
            Some(p) => hub(CONTROL_PLANE_GROUP, p),
            None => None,
        },
        observe: Some(control_plane),
        ..KindSpec::NONE
    }
}

/// A `ClusterClass` may list the Kubernetes versions its clusters can use
/// (`spec.kubernetesVersions`, CAPI v1.12+, both v1beta1 and v1beta2): a topology Cluster
/// set to another version is refused by CAPI's webhook.
pub const CLUSTER_CLASS: (&str, &str) = (CORE, "ClusterClass");
pub const CLASS_VERSIONS: &[&str] = &["spec", "kubernetesVersions"];
/// Where a topology Cluster names its class: v1beta2 `spec.topology.classRef.{name,namespace}`,
/// v1beta1 `spec.topology.class` and `spec.topology.classNamespace` (namespace defaults to the
/// Cluster's own).
pub const CLASS_NAME: &[&[&str]] = &[
    &["spec", "topology", "classRef", "name"],
    &["spec", "topology", "class"],
];
pub const CLASS_NAMESPACE: &[&[&str]] = &[
    &["spec", "topology", "classRef", "namespace"],
    &["spec", "topology", "classNamespace"],
];
pub const TOPOLOGY_CLUSTER: (&str, &str) = (CORE, "Cluster");

pub const KINDS: &[KindSpec] = &[
    KindSpec {
        project: "Cluster API",
        group: Group::Is(&[CORE]),
        kind: Kind::Is("Cluster"),
        fields: &[Field {
            path: &["spec", "topology", "version"],
            role: FieldRole::Fixed(Role::Whole),
        }],
        identity: Identity::Yes,
        names_cluster: true,
        hub: hub(CORE, "clusters"),
        observe: Some(capi_cluster),
        ..KindSpec::NONE
    },
    KindSpec {
        project: "Cluster API",
        group: Group::Is(&[CORE]),
        kind: Kind::Is("MachineDeployment"),
        fields: TEMPLATE_VERSION,
        hub: hub(CORE, "machinedeployments"),
        observe: Some(machine_deployment),
        replaces_nodes: true,
        ..KindSpec::NONE
    },
    KindSpec {
        project: "Cluster API",
        group: Group::Is(&[CORE]),
        kind: Kind::Is("MachinePool"),
        fields: TEMPLATE_VERSION,
        hub: hub(CORE, "machinepools"),
        observe: Some(machine_pool),
        replaces_nodes: true,
        ..KindSpec::NONE
    },
    // A bare Machine: a control-plane node when labelled so, else a worker.
    KindSpec {
        project: "Cluster API",
        group: Group::Is(&[CORE]),
        kind: Kind::Is("Machine"),
        fields: &[Field {
            path: &["spec", "version"],
            role: FieldRole::ControlPlaneIfLabelled,
        }],
        ..KindSpec::NONE
    },
    control_plane_kind(
        "Cluster API",
        "KubeadmControlPlane",
        Some("kubeadmcontrolplanes"),
    ),
    control_plane_kind("Cluster API", "RKE2ControlPlane", None),
    control_plane_kind("Cluster API", "KThreesControlPlane", None),
    control_plane_kind("Cluster API", "TalosControlPlane", None),
];

/// Other providers' control planes in the CAPI group: observed the CAPI way; their version
/// field is found only when labelled as a control plane. Listed last of all projects.
pub const OTHER_CONTROL_PLANES: &[KindSpec] = &[KindSpec {
    project: "Cluster API",
    group: Group::Is(&[CONTROL_PLANE_GROUP]),
    kind: Kind::Any,
    observe: Some(control_plane),
    ..KindSpec::NONE
}];

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
        offers: None,
    })
}

/// KubeadmControlPlane (and other CAPI control-plane kinds with `spec.version` and
/// `status.version`, e.g. K0sControlPlane): `status.version` is the oldest machine's.
pub(super) fn control_plane(obj: &Obj) -> Option<Component> {
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
    Some(Component {
        kind: obj.kind.to_string(),
        name: id_of(obj),
        role: Role::ControlPlane,
        desired,
        running,
        progress,
        offers: None,
    })
}

/// MachineDeployment: no version in status, so it runs `spec.template.spec.version` once
/// every replica is up to date and available.
fn machine_deployment(obj: &Obj) -> Option<Component> {
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
    Some(Component {
        kind: "MachineDeployment".into(),
        name: id_of(obj),
        role: Role::Workers,
        running: desired.clone().filter(|_| progress.is_none()),
        desired,
        progress,
        offers: None,
    })
}

/// MachinePool: like a MachineDeployment, but v1beta1 reports no up-to-date count, so
/// without one it is done when every replica is ready and available and none unavailable.
fn machine_pool(obj: &Obj) -> Option<Component> {
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
    Some(Component {
        kind: "MachinePool".into(),
        name: id_of(obj),
        role: Role::Workers,
        running: desired.clone().filter(|_| progress.is_none()),
        desired,
        progress,
        offers: None,
    })
}
