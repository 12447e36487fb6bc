//! The fleet: which clusters the repo holds, their files and labels, and which wave selects
//! each one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::core::config::Config;
use crate::core::diag::{Diag, Diags, Finding, Severity};
use crate::core::kbases;
pub use crate::core::kinds::is_identity;
use crate::core::locate::{self, Located};
use crate::core::plan::Plan;
pub use crate::core::repo::{Cluster, RepoFile};
use crate::core::source::YamlSource;
use crate::core::tree::{EntryKind, FileTree};
use crate::core::yaml::{self, Doc, LineIndex};
use crate::path;

pub struct Fleet {
    pub files: Vec<RepoFile>,
    /// What the locators found, per file (same index as `files`).
    pub located: Vec<Located>,
    pub clusters: BTreeMap<String, Cluster>,
    pub findings: Vec<Finding>,
    /// The cluster folders read in full: every file below them is in `files` (when YAML or
    /// read by a regex locator), so a search of the rest of the repository skips them.
    pub roots: std::collections::BTreeSet<PathBuf>,
}

/// The managed values of the given clusters, as found during discovery.
pub fn locate(fleet: &Fleet, clusters: &[&Cluster]) -> Located {
    let mut all = Located::default();
    for c in clusters {
        for &i in &c.files {
            all.occurrences
                .extend(fleet.located[i].occurrences.iter().cloned());
            all.skips.extend(fleet.located[i].skips.iter().cloned());
        }
    }
    all
}

fn is_yaml_name(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

type Label = (String, String, (usize, usize));

/// Infrastructure hints in one file's objects.
fn infra_hints(file: &RepoFile, docs: &[Doc]) -> Vec<String> {
    let mut out = Vec::new();
    if file.text.contains("kubespray") {
        out.push("kubespray".to_string());
    }
    for doc in docs {
        if let Some(api) = doc.root_str(&["apiVersion"]) {
            out.push(api.split('/').next().unwrap_or(api).to_string());
        }
        for path in [
            &["spec", "infrastructureRef", "kind"][..],
            &["kind"],
            &["spec", "template"],
        ] {
            if let Some(v) = doc.root_str(path) {
                out.push(v.to_string());
            }
        }
        if is_identity(doc) {
            if let Some(p) = doc.root_str(&["metadata", "labels", "provider"]) {
                out.push(format!("label:provider={p}"));
            }
        }
    }
    out
}

/// Find the clusters under `repo`, read their files, and run the locators for `plan` on
/// each file while its parse is at hand.
pub fn discover(tree: &dyn FileTree, config: &Config, plan: &Plan) -> Result<Fleet, Diags> {
    let ctx = locate::Ctx::new(plan, config);
    let mut refused = Vec::new();
    let mut roots = std::collections::BTreeSet::new();
    let wanted = owners(tree, config, &mut refused, &mut roots);
    // A binary file keeps its place (file indexes are positions in `wanted`) with no text.
    let read: Vec<Result<(Read, Option<Finding>), Diag>> = wanted
        .into_par_iter()
        .enumerate()
        .map(|(index, (rel, cluster))| read_file(tree, &ctx, index, rel, cluster))
        .collect();
    let mut errs = Vec::new();
    let mut findings = refused;
    let mut files = Vec::new();
    let mut located = Vec::new();
    let mut labels_of = Vec::new();
    let mut clusters: BTreeMap<String, Cluster> = BTreeMap::new();
    for r in read {
        match r {
            Err(d) => errs.push(d),
            Ok(((file, cluster, labels, loc, hints), finding)) => {
                findings.extend(finding);
                let c = clusters.entry(cluster.clone()).or_insert_with(|| Cluster {
                    name: cluster,
                    ..Default::default()
                });
                c.hints.extend(hints);
                c.files.push(files.len());
                files.push(file);
                located.push(loc);
                labels_of.push(labels);
            }
        }
    }
    if !errs.is_empty() {
        return Err(Diags(errs));
    }
    for c in clusters.values_mut() {
        merge_labels(c, &files, &labels_of, config, &mut findings);
    }
    for name in config.labels.keys() {
        if !clusters.contains_key(name) {
            findings.push(Finding::new(
                Severity::Warning,
                Some(name),
                "fleetwave.yaml sets labels for a cluster that no cluster path finds",
            ));
        }
    }
    Ok(Fleet {
        files,
        located,
        clusters,
        findings,
        roots,
    })
}

/// Each file the cluster paths find, with the cluster that owns it (the first path to find
/// it), when it is YAML or a regex locator reads it.
fn owners(
    tree: &dyn FileTree,
    config: &Config,
    refused: &mut Vec<Finding>,
    roots: &mut std::collections::BTreeSet<PathBuf>,
) -> Vec<(PathBuf, String)> {
    // Every file in the order the paths find it; the first to find a file owns it.
    let mut found_files: Vec<(PathBuf, String)> = Vec::new();
    for pattern in &config.paths {
        let segs: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
        let mut found = Vec::new();
        expand(tree, Path::new(""), &segs, None, &mut found, refused);
        // The folders are listed in parallel; their files are taken in the order found, so
        // the first path to find a file still owns it.
        let listed: Vec<Option<(Vec<PathBuf>, Vec<Finding>)>> = found
            .par_iter()
            .map(|(_, rel)| {
                tree.kind(rel).filter(EntryKind::is_dir).map(|_| {
                    let (mut files, mut why) = (Vec::new(), Vec::new());
                    walk(tree, rel, &mut files, &mut why);
                    (files, why)
                })
            })
            .collect();
        for ((cluster, rel), listed) in found.into_iter().zip(listed) {
            let Some((files, why)) = listed else {
                found_files.push((rel, cluster));
                continue;
            };
            roots.insert(rel);
            refused.extend(why);
            found_files.extend(files.into_iter().map(|f| (f, cluster.clone())));
        }
    }
    in_path_order(found_files)
        .into_iter()
        .filter(|(rel, _)| is_yaml_name(rel) || config.regex.iter().any(|r| r.files.is_match(rel)))
        .collect()
}

/// `found` sorted as paths compare (component by component), each path once with the owner
/// found first. Paths here are relative and normal, so their bytes with `/` read as the
/// lowest byte sort the same way, and compare far faster than component by component.
fn in_path_order(found: Vec<(PathBuf, String)>) -> Vec<(PathBuf, String)> {
    let key = |p: &Path| -> Vec<u8> {
        let bytes = p.as_os_str().as_encoded_bytes();
        bytes
            .iter()
            .map(|&b| if b == b'/' { 0 } else { b })
            .collect()
    };
    let mut order: Vec<(Vec<u8>, usize)> = found
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (key(p), i))
        .collect();
    order.sort_unstable();
    order.dedup_by(|later, first| later.0 == first.0);
    let mut found: Vec<Option<(PathBuf, String)>> = found.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(_, i)| found[i].take())
        .collect()
}

/// What reading one file yields: the file, its cluster, identity labels, located values and
/// infrastructure hints.
type Read = (RepoFile, String, Vec<Label>, Located, Vec<String>);

/// Read, parse and locate one file. A binary file keeps its place with no text.
fn read_file(
    tree: &dyn FileTree,
    ctx: &locate::Ctx,
    index: usize,
    rel: PathBuf,
    cluster: String,
) -> Result<(Read, Option<Finding>), Diag> {
    let bytes = tree
        .read(&rel)
        .map_err(|e| Diag::whole_file(&rel, format!("cannot read: {e}")))?;
    let text = match String::from_utf8(bytes) {
        Ok(t) if !t.contains('\0') => t,
        _ => {
            let f = binary_finding(&rel, &cluster);
            let file = RepoFile {
                rel,
                text: String::new(),
                yaml: false,
                kustomize: None,
            };
            let empty = (Vec::new(), Located::default(), Vec::new());
            return Ok(((file, cluster, empty.0, empty.1, empty.2), Some(f)));
        }
    };
    let docs = if is_yaml_name(&rel) {
        Some(yaml::parse(&text).map_err(|e| Diag::syntax(&rel, &text, &e))?)
    } else {
        None
    };
    let lines = LineIndex::new(&text);
    let kustomize = docs
        .as_deref()
        .filter(|_| kbases::is_kustomization(&rel))
        .map(kbases::references);
    let file = RepoFile {
        rel,
        text,
        yaml: docs.is_some(),
        kustomize,
    };
    let labels = identity_labels(&file, &lines, docs.as_deref().unwrap_or_default());
    let located = locate::locate_file(ctx, &cluster, index, &file, docs.as_deref(), &lines);
    let hints = infra_hints(&file, docs.as_deref().unwrap_or_default());
    Ok(((file, cluster, labels, located, hints), None))
}

/// A cluster's labels: from its identity objects (the first value wins; a different one is a
/// warning) and from `fleetwave.yaml`.
fn merge_labels(
    c: &mut Cluster,
    files: &[RepoFile],
    labels_of: &[Vec<Label>],
    config: &Config,
    findings: &mut Vec<Finding>,
) {
    let mut from: BTreeMap<&str, (&str, &Path, (usize, usize))> = BTreeMap::new();
    for &i in &c.files {
        for (k, v, pos) in &labels_of[i] {
            match from.get(k.as_str()) {
                Some((old, of, ol)) if old != v => findings.push(
                    Finding::new(
                        Severity::Warning,
                        Some(&c.name),
                        format!(
                            "label {k} is {v:?} here but {old:?} in {}:{}; using {old:?}",
                            of.display(),
                            ol.0
                        ),
                    )
                    .at(&files[i].rel, *pos),
                ),
                Some(_) => {}
                None => {
                    from.insert(k, (v, &files[i].rel, *pos));
                }
            }
        }
    }
    c.labels = from
        .into_iter()
        .map(|(k, (v, _, _))| (k.to_string(), v.to_string()))
        .collect();
    if let Some(extra) = config.labels.get(&c.name) {
        c.labels.extend(extra.clone());
    }
}

/// The labels of the identity objects in one file, with their positions.
fn identity_labels(file: &RepoFile, lines: &LineIndex, docs: &[Doc]) -> Vec<Label> {
    let mut out = Vec::new();
    for doc in docs.iter().filter(|d| is_identity(d)) {
        let Some(labels) = doc.root_path(&["metadata", "labels"]) else {
            continue;
        };
        for &(k, v) in doc.entries(labels) {
            if let (Some(k), Some(val)) = (doc.str(k), doc.str(v)) {
                out.push((
                    k.to_string(),
                    val.to_string(),
                    lines.position(&file.text, doc.node(v).start),
                ));
            }
        }
    }
    out
}

/// Expand a path pattern; `{cluster}` binds the cluster name, `*` matches any one name.
fn expand(
    tree: &dyn FileTree,
    at: &Path,
    segs: &[&str],
    cluster: Option<String>,
    out: &mut Vec<(String, PathBuf)>,
    refused: &mut Vec<Finding>,
) {
    let Some((seg, rest)) = segs.split_first() else {
        if let Some(c) = cluster {
            out.push((c, at.to_path_buf()));
        }
        return;
    };
    if !seg.contains('{') && !seg.contains('*') {
        let next = at.join(seg);
        match tree.kind(&next) {
            Some(EntryKind::Refused(sev, why)) => refused.push(refusal(&next, sev, &why)),
            Some(_) => expand(tree, &next, rest, cluster, out, refused),
            None => {}
        }
        return;
    }
    let Some(entries) = tree.list(at) else {
        return;
    };
    for (name, kind) in entries.into_iter().filter(|(n, _)| !n.starts_with('.')) {
        let bound = if let Some((pre, post)) = seg.split_once("{cluster}") {
            match name.strip_prefix(pre).and_then(|n| n.strip_suffix(post)) {
                Some(c) if !c.is_empty() => Some(c.to_string()),
                _ => continue,
            }
        } else if globset::Glob::new(seg)
            .map(|g| g.compile_matcher().is_match(&name))
            .unwrap_or(false)
        {
            cluster.clone()
        } else {
            continue;
        };
        if let EntryKind::Refused(sev, why) = kind {
            refused.push(refusal(&at.join(&name), sev, &why));
            continue;
        }
        expand(tree, &at.join(&name), rest, bound, out, refused);
    }
}

/// A path the path policy refused, as a finding (an error refuses the plan).
fn refusal(path: &Path, sev: Severity, why: &str) -> Finding {
    let shown = crate::core::diag::escape(&path.to_string_lossy()).into_owned();
    Finding::new(sev, None, format!("{shown}: {why}"))
}

fn binary_finding(rel: &Path, cluster: &str) -> Finding {
    Finding::new(
        Severity::Warning,
        Some(cluster),
        format!(
            "{}: a binary file (not UTF-8 text); not read, so any version pinned in it stays as it is",
            crate::core::diag::escape(&rel.to_string_lossy())
        ),
    )
}

/// Every file below `rel`, sorted, skipping hidden entries.
fn walk(tree: &dyn FileTree, rel: &Path, out: &mut Vec<PathBuf>, refused: &mut Vec<Finding>) {
    let Some(items) = tree.list(rel) else {
        return;
    };
    for (name, kind) in items.into_iter().filter(|(n, _)| !n.starts_with('.')) {
        let p = rel.join(name);
        match kind {
            EntryKind::Dir => walk(tree, &p, out, refused),
            EntryKind::File => out.push(p),
            EntryKind::Refused(sev, why) => refused.push(refusal(&p, sev, &why)),
        }
    }
}

/// Which clusters each wave selects (in plan order).
pub struct Selection {
    pub waves: Vec<Vec<String>>,
    pub findings: Vec<Finding>,
}

pub fn select(plan: &Plan, src: &YamlSource, fleet: &Fleet) -> Result<Selection, Diags> {
    let mut waves = vec![Vec::new(); plan.waves.len()];
    let mut errs = Vec::new();
    let mut findings = Vec::new();
    let mut wanted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for w in &plan.waves {
        for (k, vs) in w.selector.wanted_values() {
            wanted.entry(k).or_default().extend(vs);
        }
    }
    for c in fleet.clusters.values() {
        let hits: Vec<usize> = plan
            .waves
            .iter()
            .enumerate()
            .filter(|(_, w)| w.selector.matches(&c.labels))
            .map(|(i, _)| i)
            .collect();
        match hits.as_slice() {
            [] => {
                let unknown: Vec<String> = wanted
                    .iter()
                    .filter_map(|(k, vs)| {
                        c.labels
                            .get(*k)
                            .filter(|v| !vs.contains(v.as_str()))
                            .map(|v| format!("{k}={v}"))
                    })
                    .collect();
                let msg = if unknown.is_empty() {
                    "no wave selects this cluster; it will not be upgraded".to_string()
                } else {
                    format!(
                        "no wave selects this cluster: label {} is a value no wave asks for; it will not be upgraded",
                        unknown.join(", ")
                    )
                };
                let sev = if unknown.is_empty() {
                    Severity::Info
                } else {
                    Severity::Warning
                };
                findings.push(Finding::new(sev, Some(&c.name), msg));
            }
            [one] => waves[*one].push(c.name.clone()),
            [first, second, ..] => errs.push(
                src.at_key(
                    &path!["spec", "waves", *second, "clusterSelector"],
                    format!(
                        "cluster {} is selected by wave {:?} and by wave {:?}",
                        c.name, plan.waves[*first].name, plan.waves[*second].name
                    ),
                )
                .hint("make the waves' selectors disjoint: a cluster belongs to one wave"),
            ),
        }
    }
    for (i, w) in plan.waves.iter().enumerate() {
        if waves[i].is_empty() {
            findings.push(Finding::new(
                Severity::Warning,
                None,
                format!("wave {:?} selects no cluster", w.name),
            ));
        }
    }
    if errs.is_empty() {
        Ok(Selection { waves, findings })
    } else {
        Err(Diags(errs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_files_come_in_path_order_each_with_its_first_owner() {
        let found: Vec<(PathBuf, String)> = [
            ("a-b/x.yaml", "1"),
            ("a/b/c.yaml", "1"),
            ("a/b.yaml", "1"),
            ("a.b", "1"),
            ("a/b/c.yaml", "2"),
            ("a0/z.yaml", "2"),
            ("a/b-c.yaml", "2"),
            ("a/b/c/d.yaml", "2"),
        ]
        .iter()
        .map(|(p, o)| (PathBuf::from(p), o.to_string()))
        .collect();
        // What a BTreeMap keyed by path, keeping the first owner, gives.
        let mut want: BTreeMap<PathBuf, String> = BTreeMap::new();
        for (p, o) in &found {
            want.entry(p.clone()).or_insert_with(|| o.clone());
        }
        let want: Vec<(PathBuf, String)> = want.into_iter().collect();
        assert_eq!(in_path_order(found), want);
    }
}
