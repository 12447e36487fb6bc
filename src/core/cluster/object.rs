//! An object as the upgrade readers see it ([`Obj`]), what they make of it ([`Component`]),
//! and the defensive field readers they share (any CRD version, unknown fields ignored,
//! missing fields mean "not reported").

use serde_json::Value;

use crate::core::kinds::role::Role;
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
    /// What the object says it may be moved to, when it says (k0rdent: the ClusterTemplate
    /// names of `status.availableUpgrades`); None = it does not restrict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offers: Option<Vec<String>>,
}

impl Component {
    pub fn id(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }
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

    /// The API group (`""` for the core group).
    pub fn group(&self) -> &'a str {
        self.api_version.split_once('/').map_or("", |(g, _)| g)
    }
}

pub(crate) fn text<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(crate) fn int(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })
}

pub(crate) fn id_of(o: &Obj) -> String {
    match o.namespace.filter(|n| !n.is_empty()) {
        Some(ns) => format!("{ns}/{}", o.name),
        None => o.name.to_string(),
    }
}

/// A condition from `status.conditions`, or from where CAPI keeps its other generation of
/// conditions (`status.v1beta2.conditions`, `status.deprecated.v1beta1.conditions`).
pub(crate) fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
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

pub(crate) fn cond_text(c: &Value) -> String {
    let f = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
    format!("{} {} {}", f("status"), f("reason"), f("message"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `metadata.generation` not yet observed by the controller. Only where the controller
/// reports `status.observedGeneration` (older Kamaji releases do not).
pub(crate) fn generation_lag(o: &Obj) -> Option<String> {
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
