//! What a version field pins: the Kubernetes version of which part of the cluster, a
//! gitops-base tag, or a k0rdent template.

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
