//! Pre-flight: whether what a plan moves a cluster to is offered for that cluster, from what
//! the fleet repository itself says (Git only):
//!
//! - a CAPI topology Cluster whose `ClusterClass` lists `spec.kubernetesVersions`: CAPI
//!   refuses a topology version the class does not list, so each version the plan sets on
//!   such a cluster must be listed (refused with file:line otherwise);
//! - exports of what a managed provider offers (`spec.providerVersions`: EKS
//!   `describe-cluster-versions`, AKS `get-versions`, or a plain list): each version the plan
//!   sets on a cluster the entry's selector picks must be offered;
//! - k0rdent `ClusterTemplateChain`s: a template swap that the repository's chains do not
//!   offer from the current template is warned about (a chain outside the repository may
//!   still offer it; the live `status.availableUpgrades` holds the step in `decide`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::core::diag::{Finding, Severity};
use crate::core::fleet::Fleet;
use crate::core::kinds::{Role, What, capi, k0rdent};
use crate::core::plan::Plan;
use crate::core::source::YamlSource;
use crate::core::tree::{EntryKind, FileTree};
use crate::core::version::KubeVersion;
use crate::core::yaml::{self, Doc, LineIndex, NodeId};
use crate::path;

/// Every availability finding for the `selected` clusters (hops already filled in).
/// ClusterClasses and chains are looked for in every YAML file of the repository: they
/// usually live with the management cluster's objects, outside any cluster's folder.
pub fn check(
    tree: &dyn FileTree,
    fleet: &Fleet,
    plan: &Plan,
    src: &YamlSource,
    selected: &[&str],
) -> Vec<Finding> {
    let mut out = provider_versions(tree, fleet, plan, src, selected);
    let topology = !plan.hops.is_empty() && selected.iter().any(|c| has_topology(fleet, c));
    if !topology && plan.templates.is_empty() {
        return out;
    }
    let extra = other_yaml(tree, fleet);
    let files: Vec<(&Path, &str)> = fleet
        .files
        .iter()
        .filter(|f| f.is_yaml())
        .map(|f| (f.rel.as_path(), f.text.as_str()))
        .chain(extra.iter().map(|(p, t)| (p.as_path(), t.as_str())))
        .collect();
    if topology {
        let classes = classes(&files);
        for &c in selected.iter().filter(|_| !classes.is_empty()) {
            out.extend(class_versions(fleet, plan, &classes, c));
        }
    }
    if !plan.templates.is_empty() {
        out.extend(template_chains(&files, plan, src));
    }
    out
}

fn has_topology(fleet: &Fleet, c: &str) -> bool {
    fleet.clusters.get(c).is_some_and(|cl| {
        cl.files
            .iter()
            .flat_map(|&i| fleet.located[i].occurrences.iter())
            .any(|o| o.what == What::Kubernetes(Role::Whole) && o.object.starts_with("Cluster/"))
    })
}

/// The repository's YAML files that are not a cluster's (hidden entries skipped; files over
/// 1 MiB or not UTF-8 skipped: no ClusterClass is that large).
fn other_yaml(tree: &dyn FileTree, fleet: &Fleet) -> Vec<(PathBuf, String)> {
    let known: BTreeSet<&Path> = fleet.files.iter().map(|f| f.rel.as_path()).collect();
    let mut paths = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        for (name, kind) in tree.list(&dir).unwrap_or_default() {
            let p = dir.join(&name);
            match kind {
                _ if name.starts_with('.') => {}
                EntryKind::Dir => stack.push(p),
                EntryKind::File
                    if (name.ends_with(".yaml") || name.ends_with(".yml"))
                        && !known.contains(p.as_path()) =>
                {
                    paths.push(p)
                }
                _ => {}
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let bytes = tree.read(&p).ok().filter(|b| b.len() <= 1 << 20)?;
            Some((p, String::from_utf8(bytes).ok()?))
        })
        .collect()
}

/// A ClusterClass that lists the Kubernetes versions its clusters may use.
struct Class {
    name: String,
    namespace: Option<String>,
    versions: Vec<String>,
    rel: PathBuf,
    line: usize,
}

fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// The YAML documents of fleet file `i` (empty when it does not parse: discovery reports it).
fn docs_of(fleet: &Fleet, i: usize) -> Vec<Doc> {
    yaml::parse(&fleet.files[i].text).unwrap_or_default()
}

fn classes(files: &[(&Path, &str)]) -> Vec<Class> {
    let mut out = Vec::new();
    for &(rel, text) in files {
        if !text.contains("kubernetesVersions") {
            continue;
        }
        let lines = LineIndex::new(text);
        for doc in yaml::parse(text).unwrap_or_default() {
            let (Some(api), Some(kind)) = (doc.root_str(&["apiVersion"]), doc.root_str(&["kind"]))
            else {
                continue;
            };
            if (group_of(api), kind) != capi::CLUSTER_CLASS {
                continue;
            }
            let Some(list) = doc.root_path(capi::CLASS_VERSIONS) else {
                continue;
            };
            out.push(Class {
                name: doc
                    .root_str(&["metadata", "name"])
                    .unwrap_or("")
                    .to_string(),
                namespace: doc.root_str(&["metadata", "namespace"]).map(String::from),
                versions: strings(&doc, list),
                rel: rel.to_path_buf(),
                line: lines.position(text, doc.node(list).start).0,
            });
        }
    }
    out
}

fn strings(doc: &Doc, list: NodeId) -> Vec<String> {
    doc.items(list)
        .iter()
        .filter_map(|&n| doc.str(n))
        .map(String::from)
        .collect()
}

fn same_version(a: &KubeVersion, listed: &str) -> bool {
    KubeVersion::parse(listed).is_some_and(|l| {
        (l.major, l.minor, l.patch.unwrap_or(0), &l.pre)
            == (a.major, a.minor, a.patch.unwrap_or(0), &a.pre)
    })
}

/// The class a topology Cluster object (`Cluster/name` in file `i`) names.
fn class_of<'a>(fleet: &Fleet, i: usize, object: &str, classes: &'a [Class]) -> Option<&'a Class> {
    let name = object.strip_prefix("Cluster/")?;
    let doc = docs_of(fleet, i).into_iter().find(|d| {
        d.root_str(&["kind"]) == Some(capi::TOPOLOGY_CLUSTER.1)
            && d.root_str(&["apiVersion"]).map(group_of) == Some(capi::TOPOLOGY_CLUSTER.0)
            && d.root_str(&["metadata", "name"]) == Some(name)
    })?;
    let class = capi::CLASS_NAME.iter().find_map(|p| doc.root_str(p))?;
    let ns = capi::CLASS_NAMESPACE
        .iter()
        .find_map(|p| doc.root_str(p))
        .or_else(|| doc.root_str(&["metadata", "namespace"]));
    let named: Vec<&Class> = classes.iter().filter(|c| c.name == class).collect();
    // Namespaces decide when both sides say; a single class of that name otherwise.
    named
        .iter()
        .find(|c| c.namespace.is_some() && c.namespace.as_deref() == ns)
        .or_else(|| (named.len() == 1).then(|| &named[0]))
        .copied()
}

/// Refusals for cluster `c` when its topology version would be set to a version its
/// ClusterClass does not list.
fn class_versions(fleet: &Fleet, plan: &Plan, classes: &[Class], c: &str) -> Vec<Finding> {
    let Some(cl) = fleet.clusters.get(c) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let topology = cl
        .files
        .iter()
        .flat_map(|&i| fleet.located[i].occurrences.iter())
        .filter(|o| o.what == What::Kubernetes(Role::Whole) && o.object.starts_with("Cluster/"));

    for o in topology {
        let (Some(class), Some(now)) = (
            class_of(fleet, o.file, &o.object, classes),
            KubeVersion::parse(&o.value),
        ) else {
            continue;
        };
        let unlisted: Vec<&KubeVersion> = plan
            .hops
            .iter()
            .filter(|h| h.cmp_precedence(&now).is_gt())
            .filter(|h| !class.versions.iter().any(|l| same_version(h, l)))
            .collect();
        let Some(first) = unlisted.first() else {
            continue;
        };
        let shown: Vec<String> = unlisted.iter().map(|v| v.to_string()).collect();
        let listed_same_minor = class
            .versions
            .iter()
            .filter_map(|l| KubeVersion::parse(l))
            .filter(|l| (l.major, l.minor) == (first.major, first.minor))
            .max_by(|a, b| a.cmp_precedence(b));
        let hint = match listed_same_minor {
            Some(v) => format!(
                "use {v} for 1.{} (intermediateVersions / targetVersion), or add {first} to \
                 the class first",
                first.minor
            ),
            None => format!("add {first} to the class's kubernetesVersions first"),
        };
        let msg = format!(
            "ClusterClass {} ({}:{}) lists Kubernetes {}; this plan sets {c} to {}, which it \
             does not list, and Cluster API refuses a topology version its class does not \
             list: {hint}",
            class.name,
            class.rel.display(),
            class.line,
            class.versions.join(", "),
            shown.join(", ")
        );
        out.push(
            Finding::new(Severity::Error, Some(c), msg)
                .at(&fleet.files[o.file].rel, (o.line, o.column)),
        );
    }
    out
}

/// Chains in the repository: supported template → (the templates it may move to, where).
fn chains(files: &[(&Path, &str)]) -> BTreeMap<String, Vec<(Vec<String>, String)>> {
    let mut out: BTreeMap<String, Vec<(Vec<String>, String)>> = BTreeMap::new();
    for &(rel, text) in files {
        if !text.contains(k0rdent::TEMPLATE_CHAIN) {
            continue;
        }
        let lines = LineIndex::new(text);
        for doc in yaml::parse(text).unwrap_or_default() {
            let is_chain = doc.root_str(&["kind"]) == Some(k0rdent::TEMPLATE_CHAIN)
                && doc
                    .root_str(&["apiVersion"])
                    .is_some_and(|a| k0rdent::GROUPS.contains(&group_of(a)));
            let Some(list) = doc
                .root_path(&["spec", "supportedTemplates"])
                .filter(|_| is_chain)
            else {
                continue;
            };
            let chain = doc.root_str(&["metadata", "name"]).unwrap_or("");
            for &item in doc.items(list) {
                let Some(name) = doc.get(item, "name").and_then(|n| doc.str(n)) else {
                    continue;
                };
                let ups = doc.get(item, "availableUpgrades").map_or(Vec::new(), |l| {
                    doc.items(l)
                        .iter()
                        .filter_map(|&u| doc.get(u, "name").and_then(|n| doc.str(n)))
                        .map(String::from)
                        .collect()
                });
                let line = lines.position(text, doc.node(item).start).0;
                let at = format!("ClusterTemplateChain {chain} ({}:{line})", rel.display());
                out.entry(name.to_string()).or_default().push((ups, at));
            }
        }
    }
    out
}

/// Warnings for template swaps that chains in the repository know the old template of but
/// do not offer the new one from.
fn template_chains(files: &[(&Path, &str)], plan: &Plan, src: &YamlSource) -> Vec<Finding> {
    let chains = chains(files);
    let mut out = Vec::new();
    for (old, new) in &plan.templates {
        let Some(known) = chains.get(old) else {
            continue;
        };
        if known.iter().any(|(ups, _)| ups.contains(new)) {
            continue;
        }
        let (ups, at) = &known[0];
        let offers = if ups.is_empty() {
            "no upgrade".to_string()
        } else {
            ups.join(", ")
        };
        let d = src.at_key(
            &path!["spec", "templates", old.as_str()],
            format!(
                "{at} supports {old} and offers {offers}, not {new}: k0rdent refuses this \
                 swap unless a chain outside this repository offers it (each step is also held \
                 before merge while a ClusterDeployment's status.availableUpgrades lacks {new}); \
                 add {new} to the chain's availableUpgrades for {old}"
            ),
        );
        out.push(Finding::new(Severity::Warning, None, d.message).at(&d.file, (d.line, d.column)));
    }
    out
}

/// What a provider export offers.
#[derive(Debug, Default, PartialEq)]
pub struct Offered {
    /// The export's shape, for messages.
    pub shape: &'static str,
    /// Minors offered with whatever patch the provider picks (EKS; a bare `1.33` in a list).
    pub minors: BTreeSet<(u32, u32)>,
    /// Exact versions offered (AKS patch versions; `1.33.2` in a list).
    pub versions: Vec<KubeVersion>,
}

impl Offered {
    pub fn offers(&self, v: &KubeVersion) -> bool {
        self.minors.contains(&(v.major, v.minor))
            || self
                .versions
                .iter()
                .any(|o| same_version(v, &o.to_string()))
    }

    fn add(&mut self, text: &str) {
        match KubeVersion::parse(text) {
            Some(v) if v.patch.is_none() => {
                self.minors.insert((v.major, v.minor));
            }
            Some(v) => self.versions.push(v),
            None => {}
        }
    }

    fn shown(&self) -> String {
        let mut all: Vec<String> = self
            .minors
            .iter()
            .map(|(a, b)| format!("{a}.{b}"))
            .collect();
        all.extend(self.versions.iter().map(|v| v.to_string()));
        all.join(", ")
    }
}

/// Read a provider export: the JSON (or YAML) that `aws eks describe-cluster-versions`
/// prints (`clusterVersions[].clusterVersion`, a minor: AWS picks the patch), the body of
/// AKS's List Kubernetes Versions (`az aks get-versions -o json`: `values[].patchVersions`),
/// or `versions: [...]` (minors or exact versions).
pub fn parse_offered(text: &str) -> Result<Offered, String> {
    let v: serde_json::Value =
        serde_yaml::from_str(text).map_err(|e| format!("not JSON or YAML: {e}"))?;
    let strs = |a: &serde_json::Value, key: &str| -> Vec<String> {
        a.as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.get(key).and_then(|s| s.as_str()).map(String::from))
            .collect()
    };
    let mut o = Offered::default();
    if let Some(list) = v.get("clusterVersions") {
        o.shape = "EKS describe-cluster-versions";
        strs(list, "clusterVersion").iter().for_each(|s| o.add(s));
    } else if let Some(list) = v.get("values").and_then(|l| l.as_array()) {
        o.shape = "AKS get-versions";
        for item in list {
            let patches = item.get("patchVersions").and_then(|p| p.as_object());
            patches.into_iter().flatten().for_each(|(k, _)| o.add(k));
        }
    } else if let Some(list) = v.get("versions").and_then(|l| l.as_array()) {
        o.shape = "version list";
        list.iter()
            .filter_map(|s| s.as_str())
            .for_each(|s| o.add(s));
    } else {
        return Err(
            "not a known export: expected the JSON of `aws eks describe-cluster-versions` \
                    (clusterVersions), of `az aks get-versions` (values), or `versions: [...]`"
                .into(),
        );
    }
    if o.minors.is_empty() && o.versions.is_empty() {
        return Err(format!("a {} export that offers no version", o.shape));
    }
    Ok(o)
}

/// The lowest control-plane (or whole-cluster) version a cluster pins, and where.
fn current_version<'a>(
    fleet: &'a Fleet,
    c: &str,
) -> Option<(&'a crate::core::locate::Occurrence, KubeVersion)> {
    fleet
        .clusters
        .get(c)?
        .files
        .iter()
        .flat_map(|&i| fleet.located[i].occurrences.iter())
        .filter(|o| matches!(o.what, What::Kubernetes(Role::ControlPlane | Role::Whole)))
        .filter_map(|o| KubeVersion::parse(&o.value).map(|v| (o, v)))
        .min_by(|a, b| a.1.cmp_precedence(&b.1))
}

/// Refusals for versions the plan sets on clusters that their provider's export does not
/// offer; an export that cannot be read is an error at its `file` line.
fn provider_versions(
    tree: &dyn FileTree,
    fleet: &Fleet,
    plan: &Plan,
    src: &YamlSource,
    selected: &[&str],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, pv) in plan.provider_versions.iter().enumerate() {
        let offered = tree
            .read(Path::new(&pv.file))
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8".to_string()))
            .and_then(|t| parse_offered(&t));
        let offered = match offered {
            Ok(o) => o,
            Err(why) => {
                let d = src.at(
                    &path!["spec", "providerVersions", i, "file"],
                    format!("providerVersions {}: {why}", pv.file),
                );
                out.push(
                    Finding::new(Severity::Error, None, d.message).at(&d.file, (d.line, d.column)),
                );
                continue;
            }
        };
        let picked = selected.iter().filter(|c| {
            fleet
                .clusters
                .get(**c)
                .is_some_and(|cl| pv.cluster_selector.matches(&cl.labels))
        });
        for &c in picked {
            let Some((o, now)) = current_version(fleet, c) else {
                continue;
            };
            let missing: Vec<String> = plan
                .hops
                .iter()
                .filter(|h| h.cmp_precedence(&now).is_gt() && !offered.offers(h))
                .map(|h| h.to_string())
                .collect();
            if missing.is_empty() {
                continue;
            }
            let msg = format!(
                "{c}: {} ({} export) does not offer Kubernetes {}, which this plan sets; it \
                 offers {}: choose offered versions (intermediateVersions / targetVersion), \
                 or refresh the export if the provider offers more now",
                pv.file,
                offered.shape,
                missing.join(", "),
                offered.shown()
            );
            out.push(
                Finding::new(Severity::Error, Some(c), msg)
                    .at(&fleet.files[o.file].rel, (o.line, o.column)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `clusterVersions[].clusterVersion` as the EKS API model names them
    /// (`DescribeClusterVersionsResponse`, `ClusterVersionInformation`): a minor, whose patch
    /// AWS picks.
    #[test]
    fn an_eks_export_offers_minors() {
        let o = parse_offered(
            r#"{"clusterVersions": [
                {"clusterVersion": "1.33", "versionStatus": "STANDARD_SUPPORT", "kubernetesPatchVersion": "1.33.5"},
                {"clusterVersion": "1.34", "versionStatus": "STANDARD_SUPPORT"}]}"#,
        )
        .unwrap();
        assert_eq!(o.shape, "EKS describe-cluster-versions");
        let v = |s| KubeVersion::parse(s).unwrap();
        assert!(o.offers(&v("v1.33.9")) && o.offers(&v("1.34")));
        assert!(!o.offers(&v("v1.35.0")));
    }

    #[test]
    fn a_plain_list_offers_minors_and_exact_versions() {
        let o = parse_offered("versions: ['1.33', v1.34.2]\n").unwrap();
        let v = |s| KubeVersion::parse(s).unwrap();
        assert!(o.offers(&v("v1.33.7")) && o.offers(&v("1.34.2")));
        assert!(!o.offers(&v("v1.34.3")));
        assert!(parse_offered("versions: []").is_err());
        assert!(parse_offered("[1, 2]").is_err());
    }
}
