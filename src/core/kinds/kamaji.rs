//! Kamaji: the `TenantControlPlane`, a hosted control plane that names its cluster.

use super::{Field, FieldRole, Group, Hub, Identity, Kind, KindSpec, Role};
use crate::core::cluster::object::{Component, Obj, generation_lag, id_of, same_version, text};

pub const KINDS: &[KindSpec] = &[KindSpec {
    project: "Kamaji",
    group: Group::Is(&["kamaji.clastix.io"]),
    kind: Kind::Is("TenantControlPlane"),
    fields: &[Field {
        path: &["spec", "kubernetes", "version"],
        role: FieldRole::Fixed(Role::ControlPlane),
    }],
    identity: Identity::Yes,
    names_cluster: true,
    hub: Some(Hub {
        group: "kamaji.clastix.io",
        version: "v1alpha1",
        plural: "tenantcontrolplanes",
    }),
    observe: Some(tenant_control_plane),
    ..KindSpec::NONE
}];

/// `status.kubernetesResources.version.{version,status}`; done at `Ready`.
fn tenant_control_plane(obj: &Obj) -> Option<Component> {
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
    Some(Component {
        kind: "TenantControlPlane".into(),
        name: id_of(obj),
        role: Role::ControlPlane,
        desired,
        running,
        progress,
        offers: None,
    })
}
