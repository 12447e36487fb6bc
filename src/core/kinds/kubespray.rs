//! Kubespray: an inventory's `group_vars` (a YAML document with no `apiVersion` or `kind`)
//! pins `kube_version` for the whole cluster.

use super::{Field, FieldRole, Group, Kind, KindSpec, Role};

const WHOLE: FieldRole = FieldRole::Fixed(Role::Whole);

pub const KINDS: &[KindSpec] = &[KindSpec {
    project: "Kubespray",
    group: Group::Is(&[""]),
    kind: Kind::Is(""),
    fields: &[
        Field {
            path: &["all", "vars", "kube_version"],
            role: WHOLE,
        },
        Field {
            path: &["kube_version"],
            role: WHOLE,
        },
    ],
    ..KindSpec::NONE
}];
