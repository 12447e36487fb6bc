//! Objects that describe a cluster without pinning its version: a Flux `Kustomization` that
//! applies to a remote cluster (`spec.kubeConfig`) and the `cluster-info` ConfigMap. Their
//! labels are the cluster's labels.

use super::{Group, Identity, Kind, KindSpec};
use crate::core::yaml::Doc;

pub const KINDS: &[KindSpec] = &[
    KindSpec {
        project: "Flux",
        group: Group::Is(&["kustomize.toolkit.fluxcd.io"]),
        kind: Kind::Is("Kustomization"),
        identity: Identity::When(remote_kustomization),
        ..KindSpec::NONE
    },
    KindSpec {
        project: "Kubernetes",
        group: Group::Is(&["v1"]),
        kind: Kind::Is("ConfigMap"),
        identity: Identity::When(cluster_info),
        ..KindSpec::NONE
    },
];

fn remote_kustomization(doc: &Doc, _group: &str) -> bool {
    doc.root_path(&["spec", "kubeConfig"]).is_some()
}

fn cluster_info(doc: &Doc, _group: &str) -> bool {
    doc.root_str(&["metadata", "name"]) == Some("cluster-info")
}
