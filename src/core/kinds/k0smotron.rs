//! k0smotron: `K0sControlPlane` and `K0smotronControlPlane` (CAPI providers), the standalone
//! `k0smotron.io` `Cluster`, and k0s worker bootstrap configs.

use super::capi::control_plane_kind;
use super::{Field, FieldRole, Group, Identity, Kind, KindSpec, Role};

pub const KINDS: &[KindSpec] = &[
    control_plane_kind("k0smotron", "K0sControlPlane", Some("k0scontrolplanes")),
    control_plane_kind("k0smotron", "K0smotronControlPlane", None),
    // Standalone k0smotron: the hosted control plane's version.
    KindSpec {
        project: "k0smotron",
        group: Group::Is(&["k0smotron.io"]),
        kind: Kind::Is("Cluster"),
        fields: &[Field {
            path: &["spec", "version"],
            role: FieldRole::Fixed(Role::ControlPlane),
        }],
        identity: Identity::Yes,
        names_cluster: true,
        ..KindSpec::NONE
    },
    KindSpec {
        project: "k0smotron",
        group: Group::Any,
        kind: Kind::Is("K0sWorkerConfigTemplate"),
        fields: &[Field {
            path: &["spec", "template", "spec", "version"],
            role: FieldRole::Fixed(Role::Workers),
        }],
        ..KindSpec::NONE
    },
    KindSpec {
        project: "k0smotron",
        group: Group::Any,
        kind: Kind::Is("K0sWorkerConfig"),
        fields: &[Field {
            path: &["spec", "version"],
            role: FieldRole::Fixed(Role::Workers),
        }],
        ..KindSpec::NONE
    },
];
