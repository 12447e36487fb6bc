//! Crossplane managed Kubernetes services: EKS, GKE, GKE multi-cloud (on AWS / on Azure) and
//! AKS, as the Upbound providers (and older crossplane-contrib ones) define them. Groups are
//! matched by prefix because each provider family adds its own suffix
//! (`eks.aws.upbound.io`, `eks.aws.crossplane.io`, …).

use super::{Field, FieldRole, Group, Identity, Kind, KindSpec, Role};
use crate::core::yaml::Doc;

const FOR_PROVIDER_VERSION: &[&str] = &["spec", "forProvider", "version"];
const WORKERS: &[Field] = &[Field {
    path: FOR_PROVIDER_VERSION,
    role: FieldRole::Fixed(Role::Workers),
}];
const MULTI_CLOUD: &[&str] = &["containeraws.gcp.", "containerazure.gcp."];

/// A cluster kind of a managed Kubernetes service: its labels are the fleet cluster's.
const fn cluster(group: Group, kind: &'static str, fields: &'static [Field]) -> KindSpec {
    KindSpec {
        project: "Crossplane",
        group,
        kind: Kind::Is(kind),
        fields,
        identity: Identity::When(managed_kubernetes),
        ..KindSpec::NONE
    }
}

/// A node group or pool: the workers' version; its labels are not the cluster's.
const fn pool(group: Group, kind: &'static str) -> KindSpec {
    KindSpec {
        project: "Crossplane",
        group,
        kind: Kind::Is(kind),
        fields: WORKERS,
        ..KindSpec::NONE
    }
}

pub const KINDS: &[KindSpec] = &[
    cluster(
        Group::Prefix(&["eks."]),
        "Cluster",
        &[Field {
            path: FOR_PROVIDER_VERSION,
            role: FieldRole::Fixed(Role::Whole),
        }],
    ),
    pool(Group::Prefix(&["eks."]), "NodeGroup"),
    cluster(
        Group::Prefix(&["container.gcp."]),
        "Cluster",
        &[
            Field {
                path: &["spec", "forProvider", "minMasterVersion"],
                role: FieldRole::Fixed(Role::ControlPlane),
            },
            Field {
                path: &["spec", "forProvider", "nodeVersion"],
                role: FieldRole::Fixed(Role::Workers),
            },
        ],
    ),
    pool(Group::Prefix(&["container.gcp."]), "NodePool"),
    cluster(
        Group::Prefix(MULTI_CLOUD),
        "Cluster",
        &[Field {
            path: &["spec", "forProvider", "controlPlane", "version"],
            role: FieldRole::Fixed(Role::ControlPlane),
        }],
    ),
    pool(Group::Prefix(MULTI_CLOUD), "NodePool"),
    cluster(
        Group::Prefix(&["containerservice.azure."]),
        "KubernetesCluster",
        &[Field {
            path: &["spec", "forProvider", "kubernetesVersion"],
            role: FieldRole::Fixed(Role::Whole),
        }],
    ),
    // Other managed-Kubernetes cluster kinds of these families: identity only.
    cluster(Group::Prefix(FAMILIES), "Cluster", &[]),
    cluster(Group::Prefix(FAMILIES), "KubernetesCluster", &[]),
];

/// Group prefixes of the managed Kubernetes provider families.
const FAMILIES: &[&str] = &[
    "eks.",
    "container.",
    "containeraws.",
    "containerazure.",
    "containerservice.",
];

/// Only a Crossplane provider's managed Kubernetes cluster: its other `Cluster` kinds (Aurora
/// DSQL, MSK Kafka, …) say nothing about the fleet cluster, and a file often holds several of
/// them with differing labels.
fn managed_kubernetes(_doc: &Doc, group: &str) -> bool {
    (group.ends_with(".upbound.io") || group.ends_with(".crossplane.io"))
        && FAMILIES.iter().any(|p| group.starts_with(p))
}

/// The infrastructure a provider group names, for notifications (`eks.aws…` → `aws`).
pub const INFRASTRUCTURE: &[(&str, &str)] = &[
    ("eks.aws", "aws"),
    ("container.gcp", "gcp"),
    ("containerservice.azure", "azure"),
];
