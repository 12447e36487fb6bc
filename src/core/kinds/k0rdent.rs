//! k0rdent (formerly HMC): the `ClusterDeployment`, which names a ClusterTemplate and may
//! override the k0s version for the whole cluster.

use serde_json::Value;

use super::{Field, FieldRole, Group, Hub, Identity, Kind, KindSpec, Role};
use crate::core::cluster::object::{
    Component, Obj, cond_text, condition, generation_lag, id_of, text,
};

pub const KINDS: &[KindSpec] = &[KindSpec {
    project: "k0rdent",
    group: Group::Is(&["k0rdent.mirantis.com", "hmc.mirantis.com"]),
    kind: Kind::Is("ClusterDeployment"),
    // The k0s version overrides the ClusterTemplate's for the whole cluster.
    fields: &[Field {
        path: &["spec", "config", "k0s", "version"],
        role: FieldRole::Fixed(Role::Whole),
    }],
    identity: Identity::Yes,
    names_cluster: true,
    template: Some(&["spec", "template"]),
    hub: Some(Hub {
        group: "k0rdent.mirantis.com",
        version: "v1beta1",
        plural: "clusterdeployments",
    }),
    observe: Some(cluster_deployment),
}];

/// The spec names a ClusterTemplate, not a version, so only `status.k8sVersion` and `Ready`
/// tell; the step's target version is compared by [`crate::core::cluster::upgrade::lag`].
fn cluster_deployment(obj: &Obj) -> Option<Component> {
    let running = text(obj.data, "/status/k8sVersion").map(str::to_string);
    let progress = generation_lag(obj).or_else(|| match condition(obj.data, "Ready") {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => None,
        Some(c) => Some(format!("Ready {}", cond_text(c))),
        None => Some("no Ready condition yet".into()),
    });
    Some(Component {
        kind: "ClusterDeployment".into(),
        name: id_of(obj),
        role: Role::Whole,
        desired: text(obj.data, "/spec/template").map(|t| format!("template {t}")),
        running,
        progress,
    })
}
