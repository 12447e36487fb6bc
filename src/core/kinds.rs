//! What fleetwave knows of each kind of object that pins a Kubernetes version: which fields
//! hold it and for which part of the cluster (its [`Role`]).

use crate::core::yaml::Doc;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// One field for the whole cluster (CAPI topology, EKS, Kubespray).
    Whole,
    ControlPlane,
    Workers,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum What {
    Kubernetes(Role),
    GitopsBase,
    Template,
}

pub fn has_cp_label(doc: &Doc) -> bool {
    doc.root_path(&["metadata", "labels"])
        .is_some_and(|l| doc.get(l, "cluster.x-k8s.io/control-plane").is_some())
}

type FieldPaths = Vec<(&'static [&'static str], What)>;

/// The Kubernetes version fields of an object of `kind` in API `group`, with their role.
/// `cp_label`: the object is labelled `cluster.x-k8s.io/control-plane`.
pub fn version_fields(group: &str, kind: &str, cp_label: bool) -> FieldPaths {
    if let Some(fields) = provider_fields(group, kind) {
        return fields;
    }
    let kube = What::Kubernetes;
    match (group, kind) {
        ("cluster.x-k8s.io", "Cluster") => {
            vec![(&["spec", "topology", "version"], kube(Role::Whole))]
        }
        (
            _,
            "KubeadmControlPlane"
            | "K0sControlPlane"
            | "K0smotronControlPlane"
            | "RKE2ControlPlane"
            | "KThreesControlPlane"
            | "TalosControlPlane",
        ) => {
            vec![(&["spec", "version"], kube(Role::ControlPlane))]
        }
        ("cluster.x-k8s.io", "MachineDeployment" | "MachinePool") => vec![(
            &["spec", "template", "spec", "version"],
            kube(if cp_label {
                Role::ControlPlane
            } else {
                Role::Workers
            }),
        )],
        // A bare Machine: a control-plane node when labelled so, else a worker.
        ("cluster.x-k8s.io", "Machine") => vec![(
            &["spec", "version"],
            kube(if cp_label {
                Role::ControlPlane
            } else {
                Role::Workers
            }),
        )],
        ("kamaji.clastix.io", "TenantControlPlane") => {
            vec![(&["spec", "kubernetes", "version"], kube(Role::ControlPlane))]
        }
        ("k0smotron.io", "Cluster") => vec![(&["spec", "version"], kube(Role::ControlPlane))],
        (_, "K0sWorkerConfigTemplate") => {
            vec![(
                &["spec", "template", "spec", "version"],
                kube(Role::Workers),
            )]
        }
        (_, "K0sWorkerConfig") => vec![(&["spec", "version"], kube(Role::Workers))],
        // k0rdent: the k0s version overrides the ClusterTemplate's for the whole cluster.
        ("k0rdent.mirantis.com" | "hmc.mirantis.com", "ClusterDeployment") => {
            vec![(&["spec", "config", "k0s", "version"], kube(Role::Whole))]
        }
        (g, _) if provider_fields(g, kind).is_some() => {
            provider_fields(g, kind).unwrap_or_default()
        }
        ("", "") => vec![
            (&["all", "vars", "kube_version"], kube(Role::Whole)),
            (&["kube_version"], kube(Role::Whole)),
        ],
        // Any other object labelled as a CAPI control plane that pins `spec.version`.
        _ if cp_label => vec![(&["spec", "version"], kube(Role::ControlPlane))],
        _ => vec![],
    }
}

/// Version fields of managed Kubernetes services (Crossplane EKS, GKE, GKE multi-cloud, AKS).
fn provider_fields(group: &str, kind: &str) -> Option<FieldPaths> {
    let kube = What::Kubernetes;
    let forprovider_version: &[&str] = &["spec", "forProvider", "version"];
    Some(match (group, kind) {
        (g, "Cluster") if g.starts_with("eks.") => vec![(forprovider_version, kube(Role::Whole))],
        (g, "NodeGroup") if g.starts_with("eks.") => {
            vec![(forprovider_version, kube(Role::Workers))]
        }
        (g, "Cluster") if g.starts_with("container.gcp.") => vec![
            (
                &["spec", "forProvider", "minMasterVersion"],
                kube(Role::ControlPlane),
            ),
            (&["spec", "forProvider", "nodeVersion"], kube(Role::Workers)),
        ],
        (g, "NodePool") if g.starts_with("container.gcp.") => {
            vec![(forprovider_version, kube(Role::Workers))]
        }
        // GKE multi-cloud (GKE on AWS / on Azure).
        (g, "Cluster")
            if g.starts_with("containeraws.gcp.") || g.starts_with("containerazure.gcp.") =>
        {
            vec![(
                &["spec", "forProvider", "controlPlane", "version"],
                kube(Role::ControlPlane),
            )]
        }
        (g, "NodePool")
            if g.starts_with("containeraws.gcp.") || g.starts_with("containerazure.gcp.") =>
        {
            vec![(forprovider_version, kube(Role::Workers))]
        }
        (g, "KubernetesCluster") if g.starts_with("containerservice.azure.") => {
            vec![(
                &["spec", "forProvider", "kubernetesVersion"],
                kube(Role::Whole),
            )]
        }
        _ => return None,
    })
}
