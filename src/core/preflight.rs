//! Pre-flight checks that need only Git: what a cluster's manifests in the fleet repository
//! ask of the Kubernetes version the plan takes it to.
//!
//! Today: API versions the target minor no longer serves (the official removed-API table,
//! `data/removed-apis.yaml`). A manifest that uses one would stop applying once the control
//! plane passes the removal, so the plan is refused with the file, line, object and the API
//! version to migrate to.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;

use crate::core::catalog;
use crate::core::diag::{Diags, Finding, Severity};
use crate::core::fleet::Fleet;
use crate::core::kbases;
use crate::core::kinds::{Role, What};
use crate::core::plan::Plan;
use crate::core::source::YamlSource;
use crate::core::tree::FileTree;
use crate::core::version::KubeVersion;
use crate::core::yaml::{self, LineIndex};
use crate::path;

/// One API version of some kinds that a Kubernetes minor stopped serving.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemovedApi {
    pub api_version: String,
    pub kinds: Vec<String>,
    /// The first minor that no longer serves it, e.g. `"1.25"`.
    pub removed_in: String,
    /// What to migrate to.
    #[serde(rename = "use")]
    pub use_instead: String,
}

impl RemovedApi {
    fn removed_minor(&self) -> u32 {
        KubeVersion::parse(&self.removed_in).map_or(u32::MAX, |v| v.minor)
    }
}

struct Table {
    apis: Vec<RemovedApi>,
    /// Any of the table's API versions, to skip the files that mention none.
    mentions: Regex,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let apis: Vec<RemovedApi> =
            serde_yaml::from_str(include_str!("data/removed-apis.yaml")).expect("table parses");
        let alternatives: Vec<String> =
            apis.iter().map(|a| regex::escape(&a.api_version)).collect();
        let mentions = Regex::new(&alternatives.join("|")).expect("table regex");
        Table { apis, mentions }
    })
}

/// The removed-API entry for an object, if its API version is no longer served somewhere.
pub fn removed(api_version: &str, kind: &str) -> Option<&'static RemovedApi> {
    table()
        .apis
        .iter()
        .find(|a| a.api_version == api_version && a.kinds.iter().any(|k| k == kind))
}

/// Everything checked before steps are planned: the hops (computed from the release catalog
/// when the plan lists none) and the removed APIs the move to the target crosses.
pub fn check(
    tree: &dyn FileTree,
    plan: &mut Plan,
    src: &YamlSource,
    fleet: &Fleet,
    waves: &[Vec<String>],
) -> Result<Vec<Finding>, Diags> {
    let selected: Vec<&str> = waves.iter().flatten().map(String::as_str).collect();
    let oldest = selected
        .iter()
        .filter_map(|c| current_minor(fleet, c))
        .min();
    let mut out = catalog::fill_hops(tree, plan, src, oldest)?;
    if let Some(t) = &plan.target {
        out.extend(removed_apis(tree, fleet, &selected, t));
    }
    out.extend(base_range(plan, src, fleet, &selected));
    out.extend(crate::core::availability::check(
        tree, fleet, plan, src, &selected,
    ));
    Ok(out)
}

fn semver_of(v: &KubeVersion) -> semver::Version {
    semver::Version::new(
        u64::from(v.major),
        u64::from(v.minor),
        u64::from(v.patch.unwrap_or(0)),
    )
}

/// The gitops-base tag's declared Kubernetes range (`gitopsBase.kubernetes`) against where
/// the plan leaves each cluster: the target when the plan has one (the base moves with the
/// last step), else each selected cluster's current control-plane version.
fn base_range(plan: &Plan, src: &YamlSource, fleet: &Fleet, selected: &[&str]) -> Vec<Finding> {
    let Some(g) = &plan.gitops_base else {
        return Vec::new();
    };
    let (Some(req), Some(range)) = (&g.kubernetes_req, &g.kubernetes) else {
        return Vec::new();
    };
    let tag = &g.tag;
    if let Some(t) = &plan.target {
        if req.matches(&semver_of(t)) {
            return Vec::new();
        }
        let d = src
            .at(&path!["spec", "gitopsBase", "kubernetes"], format!("gitops-base {tag} supports Kubernetes {range}, but this plan takes clusters to {t}: choose a gitops-base tag that supports {t}, or move Kubernetes and the gitops-base in separate plans, in the order the ranges allow"));
        return vec![
            Finding::new(Severity::Error, None, d.message).at(&d.file, (d.line, d.column)),
        ];
    }
    let mut out = Vec::new();
    for &c in selected {
        let Some(cl) = fleet.clusters.get(c) else {
            continue;
        };
        let cp = cl
            .files
            .iter()
            .flat_map(|&i| fleet.located[i].occurrences.iter())
            .filter(|o| matches!(o.what, What::Kubernetes(Role::ControlPlane | Role::Whole)))
            .filter_map(|o| KubeVersion::parse(&o.value).map(|v| (o, v)))
            .min_by(|a, b| a.1.cmp_precedence(&b.1));
        if let Some((o, v)) = cp.filter(|(_, v)| !req.matches(&semver_of(v))) {
            out.push(
                Finding::new(Severity::Error, Some(c), format!("{c} runs Kubernetes {v}, outside what gitops-base {tag} supports ({range}): upgrade Kubernetes first, or leave this cluster out of the plan"))
                    .at(&fleet.files[o.file].rel, (o.line, o.column)),
            );
        }
    }
    out
}

/// The minor a cluster's control plane runs according to Git: the lowest minor among its
/// control-plane and whole-cluster version fields.
pub fn current_minor(fleet: &Fleet, cluster: &str) -> Option<u32> {
    let c = fleet.clusters.get(cluster)?;
    c.files
        .iter()
        .flat_map(|&i| fleet.located[i].occurrences.iter())
        .filter(|o| matches!(o.what, What::Kubernetes(Role::ControlPlane | Role::Whole)))
        .filter_map(|o| KubeVersion::parse(&o.value))
        .map(|v| v.minor)
        .min()
}

/// Refusals for manifests of the `selected` clusters whose API version stops being served
/// between the cluster's current minor and `target`: the files in their folders and the
/// local kustomize bases those pull in from elsewhere in the repository. A file shared by
/// several clusters is reported once.
pub fn removed_apis(
    tree: &dyn FileTree,
    fleet: &Fleet,
    selected: &[&str],
    target: &KubeVersion,
) -> Vec<Finding> {
    // File → the lowest current minor among the clusters that use it, and one of them.
    let mut files: BTreeMap<usize, (u32, &str)> = BTreeMap::new();
    let mut bases: BTreeMap<std::path::PathBuf, (u32, &str)> = BTreeMap::new();
    let own: std::collections::HashSet<&std::path::Path> =
        fleet.files.iter().map(|f| f.rel.as_path()).collect();
    let mut walk = kbases::Walk::default();
    let with_minor: Vec<(&str, u32, &crate::core::repo::Cluster)> = selected
        .iter()
        .filter_map(|&c| Some((c, current_minor(fleet, c)?, fleet.clusters.get(c)?)))
        .collect();
    // The fleet's own kustomizations were parsed by discovery: resolve them all up front.
    let parsed: Vec<(&std::path::Path, &[kbases::Reference])> = with_minor
        .iter()
        .flat_map(|(_, _, cl)| cl.files.iter().map(|&i| &fleet.files[i]))
        .filter_map(|f| Some((f.rel.as_path(), f.kustomize.as_deref()?)))
        .collect();
    walk.known(tree, &parsed);
    let mut out = Vec::new();
    for &(c, minor, cl) in &with_minor {
        for &i in &cl.files {
            keep_lowest(files.entry(i).or_insert((minor, c)), minor, c);
        }
        let kustomizations: Vec<_> = cl
            .files
            .iter()
            .map(|&i| fleet.files[i].rel.clone())
            .filter(|r| kbases::is_kustomization(r))
            .collect();
        let followed = kbases::follow(tree, &kustomizations, &mut walk);
        out.extend(followed.findings);
        for f in followed
            .files
            .into_iter()
            .filter(|f| !own.contains(f.as_path()))
        {
            keep_lowest(bases.entry(f).or_insert((minor, c)), minor, c);
        }
    }
    for (i, (from, cluster)) in files {
        let file = &fleet.files[i];
        if !file.is_yaml() || !table().mentions.is_match(&file.text) {
            continue;
        }
        out.extend(scan_file(&file.rel, &file.text, from, target, cluster));
    }
    for (rel, (from, cluster)) in bases {
        let Some(text) = tree.read(&rel).ok().and_then(|b| String::from_utf8(b).ok()) else {
            continue;
        };
        if table().mentions.is_match(&text) {
            out.extend(scan_file(&rel, &text, from, target, cluster));
        }
    }
    out.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    out.dedup_by(|a, b| a.message == b.message && a.file == b.file);
    out
}

/// Keep the lowest current minor among the clusters that use a file, and one such cluster.
fn keep_lowest<'a>(e: &mut (u32, &'a str), minor: u32, cluster: &'a str) {
    if minor < e.0 {
        *e = (minor, cluster);
    }
}

/// The removed APIs one YAML file uses that a move from minor `from` to `target` crosses.
fn scan_file(
    rel: &std::path::Path,
    text: &str,
    from: u32,
    target: &KubeVersion,
    cluster: &str,
) -> Vec<Finding> {
    let Ok(docs) = yaml::parse(text) else {
        return Vec::new(); // discovery already reported the syntax error
    };
    let lines = LineIndex::new(text);
    let mut out = Vec::new();
    for doc in &docs {
        let (Some(api), Some(kind)) = (doc.root_str(&["apiVersion"]), doc.root_str(&["kind"]))
        else {
            continue;
        };
        let Some(r) = removed(api, kind) else {
            continue;
        };
        let gone = r.removed_minor();
        if !(from < gone && gone <= target.minor) {
            continue;
        }
        let name = doc.root_str(&["metadata", "name"]).unwrap_or("");
        let at = doc
            .root_path(&["apiVersion"])
            .map_or((1, 1), |n| lines.position(text, doc.node(n).start));
        out.push(
            Finding::new(
                Severity::Error,
                Some(cluster),
                format!(
                    "{kind} {name} uses {api}, which Kubernetes {} no longer serves; this plan takes the cluster from 1.{from} to {target}: migrate the manifest to {} before upgrading",
                    r.removed_in, r.use_instead
                ),
            )
            .at(rel, at),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_users_write_them() {
        use crate::core::plan::kubernetes_range;
        let r = kubernetes_range(">=1.32 <1.35").unwrap();
        let v = |s: &str| semver_of(&KubeVersion::parse(s).unwrap());
        assert!(r.matches(&v("v1.32.0")) && r.matches(&v("1.34.9")));
        assert!(!r.matches(&v("v1.35.0")) && !r.matches(&v("1.31.14")));
        let r = kubernetes_range(">= v1.32, < v1.35").unwrap();
        assert!(r.matches(&v("1.33.1")) && !r.matches(&v("1.35.2")));
        assert!(kubernetes_range("banana").is_none());
        assert!(kubernetes_range("").is_none());
    }

    #[test]
    fn the_table_knows_the_well_known_removals() {
        assert_eq!(
            removed("batch/v1beta1", "CronJob").unwrap().removed_minor(),
            25
        );
        assert_eq!(
            removed("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema")
                .unwrap()
                .removed_minor(),
            32
        );
        assert!(removed("batch/v1", "CronJob").is_none());
        assert!(removed("policy/v1beta1", "Eviction").is_none());
    }

    #[test]
    fn only_removals_the_move_crosses_are_refused() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: flowcontrol.apiserver.k8s.io/v1beta3\nkind: FlowSchema\nmetadata:\n  name: fs\n";
        let p = std::path::Path::new("c/apf.yaml");
        let to = |v: &str| KubeVersion::parse(v).unwrap();
        let f = scan_file(p, text, 31, &to("v1.32.1"), "c1");
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].line, f[0].column), (Some(5), Some(13)));
        assert!(
            f[0].message
                .contains("FlowSchema fs uses flowcontrol.apiserver.k8s.io/v1beta3")
        );
        assert!(
            scan_file(p, text, 32, &to("v1.33.0"), "c1").is_empty(),
            "already past it"
        );
        assert!(
            scan_file(p, text, 30, &to("v1.31.4"), "c1").is_empty(),
            "not reached"
        );
    }
}
