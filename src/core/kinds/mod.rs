//! The cluster-kind registry: everything fleetwave knows of each kind of object that
//! describes a cluster or pins its Kubernetes version, one file per project.
//!
//! A kind is described once, as a [`KindSpec`]: which fields hold its version and for which
//! part of the cluster, whether its labels identify the cluster (the labels wave selectors
//! match), where it names a k0rdent template, how the hub watches it and how its status
//! reports the upgrade. The locators, fleet discovery, the hub watcher and the convergence
//! rule all read this table; none of them names a kind.
//!
//! Adding a kind: a `KindSpec` in its project's file (a new project gets a new file listed in
//! [`PROJECTS`]), a fixture from a public repository under `fixtures/real/<project>/`, and a
//! test on it.

pub mod capi;
pub mod crossplane;
pub mod flux;
pub mod k0rdent;
pub mod k0smotron;
pub mod kamaji;
pub mod kubespray;
pub mod role;

pub use role::{Role, What};

use crate::core::cluster::object::{Component, Obj};
use crate::core::yaml::Doc;

/// The API groups a spec applies to.
pub enum Group {
    Is(&'static [&'static str]),
    /// Groups starting with one of these (Crossplane providers put a vendor suffix after them).
    Prefix(&'static [&'static str]),
    /// Any group: the kind's name alone says what it is.
    Any,
}

impl Group {
    fn matches(&self, group: &str) -> bool {
        match self {
            Group::Is(gs) => gs.contains(&group),
            Group::Prefix(ps) => ps.iter().any(|p| group.starts_with(p)),
            Group::Any => true,
        }
    }
}

/// The kinds a spec applies to.
pub enum Kind {
    Is(&'static str),
    /// Every kind of the group (e.g. CAPI control-plane providers not listed by name).
    Any,
}

/// Which part of the cluster a version field pins.
#[derive(Clone, Copy)]
pub enum FieldRole {
    Fixed(Role),
    /// The control plane when the object is labelled `cluster.x-k8s.io/control-plane`, else
    /// the workers (CAPI Machines and MachineDeployments serve both).
    ControlPlaneIfLabelled,
}

/// A field holding a Kubernetes version, as a path of mapping keys from the document root.
pub struct Field {
    pub path: &'static [&'static str],
    pub role: FieldRole,
}

/// Whether an object's labels are the cluster's labels.
pub enum Identity {
    No,
    Yes,
    /// Only when this holds of the document (its API group given).
    When(fn(&Doc, &str) -> bool),
}

/// How the hub watches a kind: the group, version and plural of its API resource.
pub struct Hub {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
}

/// Everything fleetwave knows of one kind.
pub struct KindSpec {
    /// The project that defines it, for messages and docs.
    pub project: &'static str,
    pub group: Group,
    pub kind: Kind,
    pub fields: &'static [Field],
    pub identity: Identity,
    /// On the hub, the object's own name is its cluster's name.
    pub names_cluster: bool,
    /// The field naming a k0rdent ClusterTemplate.
    pub template: Option<&'static [&'static str]>,
    pub hub: Option<Hub>,
    /// What its status says of the upgrade.
    pub observe: Option<fn(&Obj) -> Option<Component>>,
    /// A version change replaces its nodes with fresh machines (CAPI MachineDeployments and
    /// MachinePools) rather than upgrading kubelets in place, so its workers may skip minors
    /// while the kubelet skew allows (`efficientUpgrades`).
    pub replaces_nodes: bool,
}

/// The defaults each spec starts from (`..KindSpec::NONE`).
impl KindSpec {
    pub const NONE: KindSpec = KindSpec {
        project: "",
        group: Group::Is(&[]),
        kind: Kind::Any,
        fields: &[],
        identity: Identity::No,
        names_cluster: false,
        template: None,
        hub: None,
        observe: None,
        replaces_nodes: false,
    };

    fn matches(&self, group: &str, kind: &str) -> bool {
        self.group.matches(group)
            && match self.kind {
                Kind::Is(k) => k == kind,
                Kind::Any => true,
            }
    }
}

/// Every project's kinds, in lookup order: the first spec that matches wins.
pub const PROJECTS: &[&[KindSpec]] = &[
    crossplane::KINDS,
    capi::KINDS,
    k0smotron::KINDS,
    kamaji::KINDS,
    k0rdent::KINDS,
    kubespray::KINDS,
    flux::KINDS,
    capi::OTHER_CONTROL_PLANES,
];

pub fn all() -> impl Iterator<Item = &'static KindSpec> {
    PROJECTS.iter().flat_map(|p| p.iter())
}

/// The spec of `kind` in API `group` (`""` for a document with no `apiVersion`).
pub fn lookup(group: &str, kind: &str) -> Option<&'static KindSpec> {
    all().find(|s| s.matches(group, kind))
}

pub fn has_cp_label(doc: &Doc) -> bool {
    doc.root_path(&["metadata", "labels"])
        .is_some_and(|l| doc.get(l, "cluster.x-k8s.io/control-plane").is_some())
}

type FieldPaths = Vec<(&'static [&'static str], What)>;

/// The Kubernetes version fields of an object of `kind` in API `group`, with their role.
/// `cp_label`: the object is labelled `cluster.x-k8s.io/control-plane`.
pub fn version_fields(group: &str, kind: &str, cp_label: bool) -> FieldPaths {
    let fields = lookup(group, kind).map_or(&[][..], |s| s.fields);
    if fields.is_empty() && cp_label {
        // Any other object labelled as a CAPI control plane that pins `spec.version`.
        return vec![(&["spec", "version"], What::Kubernetes(Role::ControlPlane))];
    }
    let role = |r: FieldRole| match r {
        FieldRole::Fixed(r) => r,
        FieldRole::ControlPlaneIfLabelled if cp_label => Role::ControlPlane,
        FieldRole::ControlPlaneIfLabelled => Role::Workers,
    };
    fields
        .iter()
        .map(|f| (f.path, What::Kubernetes(role(f.role))))
        .collect()
}

/// The field of a k0rdent-style object that names its cluster template.
pub fn template_field(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    lookup(group, kind)?.template
}

/// Objects whose labels describe the cluster (the labels wave selectors match).
pub fn is_identity(doc: &Doc) -> bool {
    let (Some(api), Some(kind)) = (doc.root_str(&["apiVersion"]), doc.root_str(&["kind"])) else {
        return false;
    };
    let group = api.split('/').next().unwrap_or("");
    match lookup(group, kind).map(|s| &s.identity) {
        Some(Identity::Yes) => true,
        Some(Identity::When(f)) => f(doc, group),
        Some(Identity::No) | None => false,
    }
}

/// Workers of `kind` are replaced by new machines on a version change (see
/// [`KindSpec::replaces_nodes`]).
pub fn replaces_nodes(kind: &str) -> bool {
    all().any(|s| s.replaces_nodes && matches!(s.kind, Kind::Is(k) if k == kind))
}

/// On the hub, an object of `kind` carries its cluster's name as its own.
pub fn names_cluster(kind: &str) -> bool {
    all().any(|s| s.names_cluster && matches!(s.kind, Kind::Is(k) if k == kind))
}

/// The kinds the hub watches for upgrade progress, with their kind name.
pub fn hub_kinds() -> impl Iterator<Item = (&'static Hub, &'static str)> {
    all().filter_map(|s| match (&s.hub, &s.kind) {
        (Some(h), Kind::Is(k)) => Some((h, *k)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_watches_every_kind_that_reports_an_upgrade() {
        let got: Vec<String> = hub_kinds()
            .map(|(h, k)| format!("{}/{} {k} {}", h.group, h.version, h.plural))
            .collect();
        assert_eq!(
            got,
            [
                "cluster.x-k8s.io/v1beta1 Cluster clusters",
                "cluster.x-k8s.io/v1beta1 MachineDeployment machinedeployments",
                "cluster.x-k8s.io/v1beta1 MachinePool machinepools",
                "controlplane.cluster.x-k8s.io/v1beta1 KubeadmControlPlane kubeadmcontrolplanes",
                "controlplane.cluster.x-k8s.io/v1beta1 K0sControlPlane k0scontrolplanes",
                "kamaji.clastix.io/v1alpha1 TenantControlPlane tenantcontrolplanes",
                "k0rdent.mirantis.com/v1beta1 ClusterDeployment clusterdeployments",
            ]
        );
        // Every watched kind can say something of the upgrade.
        for s in all().filter(|s| s.hub.is_some()) {
            assert!(s.observe.is_some(), "{}", s.project);
        }
    }

    #[test]
    fn the_first_matching_spec_wins_and_unknown_kinds_fall_back_to_the_label() {
        let roles = |g: &str, k: &str, cp: bool| -> Vec<What> {
            version_fields(g, k, cp)
                .into_iter()
                .map(|(_, w)| w)
                .collect()
        };
        let kube = What::Kubernetes;
        assert_eq!(
            roles("eks.aws.upbound.io", "Cluster", false),
            [kube(Role::Whole)]
        );
        assert_eq!(
            roles("container.gcp.upbound.io", "Cluster", false),
            [kube(Role::ControlPlane), kube(Role::Workers)]
        );
        assert_eq!(
            roles("cluster.x-k8s.io", "MachineDeployment", true),
            [kube(Role::ControlPlane)]
        );
        assert_eq!(
            roles("", "KubeadmControlPlane", false),
            [kube(Role::ControlPlane)]
        );
        assert_eq!(roles("example.com", "Widget", false), []);
        assert_eq!(
            roles("example.com", "Widget", true),
            [kube(Role::ControlPlane)]
        );
        // An unlisted control-plane provider is still observed the CAPI way.
        let spec = lookup(capi::CONTROL_PLANE_GROUP, "AWSManagedControlPlane").unwrap();
        assert!(spec.observe.is_some() && spec.fields.is_empty());
        assert!(names_cluster("TenantControlPlane") && !names_cluster("MachineDeployment"));
    }
}
