//! k0rdent (formerly HMC): the `ClusterDeployment`, which names a ClusterTemplate and may
//! override the k0s version for the whole cluster.

use serde_json::Value;

use super::{Field, FieldRole, Group, Hub, Identity, Kind, KindSpec, Role};
use crate::core::cluster::object::{
    Component, Obj, cond_text, condition, generation_lag, id_of, text,
};

/// The groups k0rdent serves its kinds in (HMC was its former name).
pub const GROUPS: &[&str] = &["k0rdent.mirantis.com", "hmc.mirantis.com"];
/// A `ClusterTemplateChain` lists, per supported template, the templates a ClusterDeployment
/// on it may move to: `spec.supportedTemplates[].{name, availableUpgrades[].name}`.
pub const TEMPLATE_CHAIN: &str = "ClusterTemplateChain";

pub const KINDS: &[KindSpec] = &[KindSpec {
    project: "k0rdent",
    group: Group::Is(GROUPS),
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
    replaces_nodes: false,
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
        offers: Some(available_upgrades(obj)),
    })
}

/// `status.availableUpgrades`: the ClusterTemplates this ClusterDeployment may move to, from
/// the ClusterTemplateChains of its current template. kcm's webhook refuses a change of
/// `spec.template` to any other (unless it runs with `--validate-cluster-upgrade-path=false`),
/// and the field is omitted when empty, so absent means none.
fn available_upgrades(obj: &Obj) -> Vec<String> {
    obj.data
        .pointer("/status/availableUpgrades")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kcm dev ClusterDeployment with a status of the shape k0rdent's published API
    /// description gives (`fixtures/real/k0rdent/`, see its README).
    fn deployment(upgrades: Option<&[&str]>) -> Value {
        let yaml = include_str!("../../../fixtures/real/k0rdent/kcm-aws-clusterdeployment.yaml");
        let mut obj: Value = serde_yaml::from_str(yaml).expect("the fixture parses");
        let mut status = serde_json::json!({"k8sVersion": "v1.32.3+k0s.0"});
        if let Some(u) = upgrades {
            status["availableUpgrades"] = serde_json::json!(u);
        }
        obj["status"] = status;
        obj
    }

    #[test]
    fn the_status_used_is_the_published_shape() {
        let schema: Value = serde_json::from_str(include_str!(
            "../../../fixtures/real/k0rdent/clusterdeployment-status-openapi.json"
        ))
        .unwrap();
        let props = &schema["properties"]["status"]["properties"];
        assert_eq!(props["availableUpgrades"]["type"], "array");
        assert_eq!(props["availableUpgrades"]["items"]["type"], "string");
        assert_eq!(props["k8sVersion"]["type"], "string");
        for key in deployment(Some(&["x"]))["status"]
            .as_object()
            .unwrap()
            .keys()
        {
            assert!(props.get(key).is_some(), "{key} is not in the schema");
        }
    }

    #[test]
    fn available_upgrades_are_what_the_deployment_offers_and_absent_means_none() {
        let obj = deployment(Some(&[
            "aws-standalone-cp-1-0-44",
            "aws-standalone-cp-1-0-45",
        ]));
        let c = cluster_deployment(&Obj::of(&obj)).unwrap();
        assert_eq!(
            c.offers.as_deref(),
            Some(
                &[
                    "aws-standalone-cp-1-0-44".to_string(),
                    "aws-standalone-cp-1-0-45".into()
                ][..]
            )
        );
        assert_eq!(
            c.desired.as_deref(),
            Some("template aws-standalone-cp-1-0-43")
        );
        // kcm omits an empty list, and its webhook then refuses every template change.
        let none = deployment(None);
        assert_eq!(
            cluster_deployment(&Obj::of(&none)).unwrap().offers,
            Some(vec![])
        );
    }
}
