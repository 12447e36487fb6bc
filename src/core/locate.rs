//! Locators: find every place a cluster's files hold a managed value — a Kubernetes version,
//! a gitops-base ref, a k0rdent template name — as exact byte ranges for the editor, and the
//! occurrences that must be left alone (branch pins, other repos, commented-out copies).

use std::ops::Range;
use std::path::PathBuf;
use std::sync::LazyLock;

use regex::Regex;

use crate::core::config::{Config, TargetKind};
pub use crate::core::kinds::{Role, What, has_cp_label, template_field, version_fields};
use crate::core::plan::Plan;
use crate::core::repo::RepoFile;
use crate::core::repo_url::normalize_repo_url;
use crate::core::version::KubeVersion;
use crate::core::yaml::{Doc, Kind, LineIndex, NodeId, Style};

/// One managed value in one file.
#[derive(Debug, Clone)]
pub struct Occurrence {
    pub cluster: String,
    /// Index into `Fleet::files`.
    pub file: usize,
    /// `Kind/name` of the object, or the locator's name for non-YAML files.
    pub object: String,
    pub field: String,
    pub what: What,
    /// The managed text now (for a `?ref=` it is the ref alone).
    pub value: String,
    pub range: Range<usize>,
    /// YAML only: start of the scalar and the text around the managed part inside it.
    pub scalar: Option<ScalarCtx>,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
pub struct ScalarCtx {
    pub start: usize,
    pub before: String,
    pub after: String,
}

/// An occurrence fleetwave saw and will not edit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skip {
    pub cluster: String,
    pub file: PathBuf,
    pub line: usize,
    pub field: String,
    pub value: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Located {
    pub occurrences: Vec<Occurrence>,
    pub skips: Vec<Skip>,
}

/// The repository part of a remote reference such as a kustomize resource or a Terraform
/// module source: `git::https://host/org/repo.git//sub/dir` → `host/org/repo`.
pub fn remote_repo(url: &str) -> Option<String> {
    let url = url.strip_prefix("git::").unwrap_or(url);
    let base = url.split('?').next().unwrap_or(url);
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let repo = match base[after_scheme..].find("//") {
        Some(i) => &base[..after_scheme + i],
        None => {
            // host/org/repo/path: the repo is the first two path segments.
            let mut n = 0;
            let end = base[after_scheme..].char_indices().find(|(_, c)| {
                n += (*c == '/') as usize;
                n == 3
            });
            end.map_or(base, |(i, _)| &base[..after_scheme + i])
        }
    };
    normalize_repo_url(repo)
}

/// Split a kustomize remote resource into (normalized repo, byte range of the ref value):
/// `?ref=` or its older spelling `?version=`.
fn kustomize_remote(url: &str) -> Option<(String, Range<usize>)> {
    let q = url.find('?')?;
    let mut at = q + 1;
    let mut found = None;
    for part in url[q + 1..].split('&') {
        for key in ["ref=", "version="] {
            if let Some(v) = part.strip_prefix(key) {
                found = Some(at + key.len()..at + key.len() + v.len());
            }
        }
        at += part.len() + 1;
    }
    Some((remote_repo(url)?, found?))
}

const TAG_REF: &str = "refs/tags/";

/// A Flux `spec.ref.name` that names a tag: its node and the tag's length.
fn tag_ref_name(doc: &Doc, reference: Option<NodeId>) -> Option<(NodeId, usize)> {
    let n = doc.get(reference?, "name")?;
    let tag = doc.str(n)?.strip_prefix(TAG_REF)?;
    (!tag.is_empty()).then_some((n, tag.len()))
}

static MARKER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"#\s*\{\s*"\$fleetwave"\s*:\s*"([A-Za-z]+)"\s*\}"#).unwrap());
static COMMENTED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?m)^[ \t]*#.*$").unwrap());

/// What the locators need from the plan and the config.
pub struct Ctx<'a> {
    plan: &'a Plan,
    config: &'a Config,
    base_repo: Option<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(plan: &'a Plan, config: &'a Config) -> Self {
        let base_repo = plan
            .gitops_base
            .as_ref()
            .and_then(|g| normalize_repo_url(&g.url));
        Ctx {
            plan,
            config,
            base_repo,
        }
    }
}

struct FileScan<'a> {
    cluster: &'a str,
    index: usize,
    file: &'a RepoFile,
    lines: &'a LineIndex,
    out: Located,
}

impl FileScan<'_> {
    fn skip(&mut self, offset: usize, field: &str, value: &str, reason: &str) {
        self.out.skips.push(Skip {
            cluster: self.cluster.to_string(),
            file: self.file.rel.clone(),
            line: self.lines.position(&self.file.text, offset).0,
            field: field.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Record the scalar at `node` (aliases resolved) as managed, in whole or in part.
    fn scalar(
        &mut self,
        doc: &Doc,
        node: NodeId,
        object: &str,
        field: &str,
        what: What,
        part: Option<Range<usize>>,
    ) {
        let target = doc.resolve(node);
        let via = if target != node {
            " (through an alias; edited at its anchor)"
        } else {
            ""
        };
        let Some(s) = doc.scalar(target) else { return };
        let Some(content) = s.content.clone() else {
            self.skip(doc.node(target).start, field, &s.value, "value spans several lines or uses escapes; fleetwave edits single-line scalars only");
            return;
        };
        let text = &self.file.text[content.clone()];
        // For plain and double-quoted scalars the raw text equals the value; for single-quoted
        // ones it may hold '' — edit only when it does not.
        if text != s.value {
            self.skip(
                doc.node(target).start,
                field,
                &s.value,
                "value contains quote escapes; fleetwave will not edit it",
            );
            return;
        }
        let part = part.unwrap_or(0..text.len());
        let range = content.start + part.start..content.start + part.end;
        let (line, column) = self.lines.position(&self.file.text, range.start);
        self.out.occurrences.push(Occurrence {
            cluster: self.cluster.to_string(),
            file: self.index,
            object: object.to_string(),
            field: format!("{field}{via}"),
            what,
            value: self.file.text[range.clone()].to_string(),
            range,
            scalar: Some(ScalarCtx {
                start: doc.node(target).start,
                before: text[..part.start].to_string(),
                after: text[part.end..].to_string(),
            }),
            line,
            column,
        });
    }
}

impl FileScan<'_> {
    /// The managed values inside one inline patch (a YAML string holding YAML).
    fn inline(
        &mut self,
        ctx: &Ctx,
        doc: &Doc,
        node: NodeId,
        target: &(String, String, String),
        object: &str,
        field: &str,
    ) {
        let Some(s) = doc.scalar(node) else { return };
        if !s.value.contains('\n') {
            return;
        }
        let found = crate::core::inline::scan(&s.value, target, ctx.base_repo.is_some());
        if found.found.is_empty() && found.noted.is_empty() {
            return;
        }
        let start = doc.node(doc.resolve(node)).start;
        let block = (s.style == Style::Literal)
            .then(|| crate::core::inline::Block::map(&self.file.text, start, &s.value))
            .flatten();
        let Some(block) = block else {
            for f in &found.found {
                self.skip(start, field, &f.value, "a managed value inside an inline patch that is not a literal block (`|`) with even indentation; fleetwave cannot edit it in place: update it by hand, or write the patch as a literal block");
            }
            return;
        };
        for n in found.noted {
            let at = block.to_file(&(n.offset..n.offset));
            self.skip(
                at.start,
                &format!("{field} {}", n.field),
                &n.value,
                &n.reason,
            );
        }
        for f in found.found {
            let wanted = match &f.what {
                What::Kubernetes(_) => ctx.plan.target.is_some(),
                _ => ctx.base_repo.is_some(),
            };
            if !wanted || block.value[f.range.clone()] != f.value {
                continue;
            }
            let range = block.to_file(&f.range);
            let (line, column) = self.lines.position(&self.file.text, range.start);
            self.out.occurrences.push(Occurrence {
                cluster: self.cluster.to_string(),
                file: self.index,
                object: object.to_string(),
                field: format!("{field} ({})", f.field),
                what: f.what,
                value: f.value,
                range,
                scalar: Some(ScalarCtx {
                    start,
                    before: block.value[..f.range.start].to_string(),
                    after: block.value[f.range.end..].to_string(),
                }),
                line,
                column,
            });
        }
    }
}

/// Run every locator over one file (`index` is its place in `Fleet::files`).
pub fn locate_file(
    ctx: &Ctx,
    cluster: &str,
    index: usize,
    file: &RepoFile,
    docs: Option<&[Doc]>,
    lines: &LineIndex,
) -> Located {
    let mut scan = FileScan {
        cluster,
        index,
        file,
        lines,
        out: Located::default(),
    };
    regex_locators(ctx, &mut scan);
    let Some(docs) = docs else { return scan.out };
    let is_kustomization_file = crate::core::kbases::is_kustomization(&file.rel);
    for doc in docs {
        yaml_doc(ctx, &mut scan, doc, is_kustomization_file);
    }
    for doc in docs {
        inline_patches(ctx, &mut scan, doc, is_kustomization_file);
    }
    markers(&mut scan, docs);
    commented(&mut scan);
    // Kept for the whole plan (one per file of the fleet): no spare capacity.
    scan.out.occurrences.shrink_to_fit();
    scan.out.skips.shrink_to_fit();
    scan.out
}

/// The configured regex locators, over files that are not YAML.
fn regex_locators(ctx: &Ctx, scan: &mut FileScan) {
    let (cluster, index, file, lines) = (scan.cluster, scan.index, scan.file, scan.lines);
    for r in ctx
        .config
        .regex
        .iter()
        .filter(|r| r.files.is_match(&file.rel))
    {
        if file.is_yaml() {
            continue;
        }
        for caps in r.pattern.captures_iter(&file.text) {
            let Some(m) = caps.name("value") else {
                continue;
            };
            let line_start = file.text[..m.start()].rfind('\n').map_or(0, |i| i + 1);
            let lead = file.text[line_start..m.start()].trim_start();
            if lead.starts_with('#') || lead.starts_with("//") {
                scan.skip(
                    m.start(),
                    &r.name,
                    m.as_str(),
                    "commented-out occurrence, left as is",
                );
                continue;
            }
            let what = match r.target {
                TargetKind::KubernetesVersion => What::Kubernetes(Role::Whole),
                TargetKind::GitopsBase => {
                    if let Some(u) = caps.name("url") {
                        if remote_repo(u.as_str()) != ctx.base_repo {
                            if ctx.base_repo.is_some() {
                                scan.skip(
                                    m.start(),
                                    &r.name,
                                    m.as_str(),
                                    &format!(
                                        "ref of another repository ({}), left as is",
                                        u.as_str()
                                    ),
                                );
                            }
                            continue;
                        }
                    }
                    What::GitopsBase
                }
            };
            let (line, column) = lines.position(&file.text, m.start());
            scan.out.occurrences.push(Occurrence {
                cluster: cluster.to_string(),
                file: index,
                object: String::new(),
                field: r.name.clone(),
                what,
                value: m.as_str().to_string(),
                range: m.range(),
                scalar: None,
                line,
                column,
            });
        }
    }
}

/// The managed values of one YAML document: its kind's version fields, k0rdent templates,
/// Flux substitutes and sources, kustomize remote refs.
fn yaml_doc(ctx: &Ctx, scan: &mut FileScan, doc: &Doc, is_kustomization_file: bool) {
    let Some(root) = doc.root else { return };
    let api = doc.root_str(&["apiVersion"]).unwrap_or("");
    let kind = doc.root_str(&["kind"]).unwrap_or("");
    let name = doc.root_str(&["metadata", "name"]).unwrap_or("");
    let object = match (kind, name) {
        ("", _) => String::new(),
        (k, "") => k.to_string(),
        (k, n) => format!("{k}/{n}"),
    };
    let group = api.split('/').next().unwrap_or("");
    let fields = version_fields(group, kind, has_cp_label(doc));
    for (path, what) in &fields {
        if let Some(n) = doc.path(root, path) {
            scan.scalar(doc, n, &object, &path.join("."), what.clone(), None);
        }
    }
    if let Some(path) = template_field(group, kind)
        && !ctx.plan.templates.is_empty()
        && let Some(n) = doc.path(root, path)
    {
        scan.scalar(doc, n, &object, &path.join("."), What::Template, None);
    }
    match (group, kind) {
        ("kustomize.toolkit.fluxcd.io", "Kustomization") => {
            substitutes(ctx, scan, doc, root, &object)
        }
        ("source.toolkit.fluxcd.io", "GitRepository" | "OCIRepository")
            if ctx.base_repo.is_some() =>
        {
            flux_source(ctx, scan, doc, root, &object)
        }
        _ => {}
    }
    if (is_kustomization_file || group == "kustomize.config.k8s.io") && ctx.base_repo.is_some() {
        kustomize_remotes(ctx, scan, doc, root, &object);
    }
}

/// `spec.postBuild.substitute` of a Flux Kustomization: the configured variables.
fn substitutes(ctx: &Ctx, scan: &mut FileScan, doc: &Doc, root: NodeId, object: &str) {
    if let Some(sub) = doc.path(root, &["spec", "postBuild", "substitute"]) {
        for &(k, v) in doc.entries(sub) {
            let key = doc.str(k).unwrap_or("");
            let field = format!("spec.postBuild.substitute.{key}");
            if ctx.config.substitute_kube.iter().any(|x| x == key) {
                scan.scalar(doc, v, object, &field, What::Kubernetes(Role::Whole), None);
            } else if ctx.config.substitute_base.iter().any(|x| x == key) && ctx.base_repo.is_some()
            {
                scan.scalar(doc, v, object, &field, What::GitopsBase, None);
            }
        }
    }
}

/// The ref of a Flux GitRepository or OCIRepository of the gitops-base repository.
fn flux_source(ctx: &Ctx, scan: &mut FileScan, doc: &Doc, root: NodeId, object: &str) {
    let url = doc.root_str(&["spec", "url"]).unwrap_or("");
    let ours = normalize_repo_url(url) == ctx.base_repo;
    let reference = doc.path(root, &["spec", "ref"]);
    let tag = reference.and_then(|r| doc.get(r, "tag"));
    if !ours {
        if let Some(t) = tag {
            let v = doc.str(t).unwrap_or("");
            scan.skip(
                doc.node(t).start,
                &format!("{object} spec.ref.tag"),
                v,
                &format!("ref of another repository ({url}), left as is"),
            );
        }
    } else if let Some((n, len)) = tag_ref_name(doc, reference) {
        // `name: refs/tags/X` wins over `tag` in Flux; only X is managed.
        let part = Some(TAG_REF.len()..TAG_REF.len() + len);
        scan.scalar(doc, n, object, "spec.ref.name", What::GitopsBase, part);
    } else if let Some(t) = tag {
        scan.scalar(doc, t, object, "spec.ref.tag", What::GitopsBase, None);
    } else if let Some(r) = reference {
        for pin in ["branch", "commit", "semver", "name", "digest"] {
            if let Some(n) = doc.get(r, pin) {
                let v = doc.str(n).unwrap_or("");
                scan.skip(
                    doc.node(n).start,
                    &format!("{object} spec.ref.{pin}"),
                    v,
                    &format!("pinned by ref.{pin}, not a tag; left as is"),
                );
            }
        }
    }
}

/// Remote refs to the gitops-base repository in a kustomization's resources.
fn kustomize_remotes(ctx: &Ctx, scan: &mut FileScan, doc: &Doc, root: NodeId, object: &str) {
    for list in ["resources", "components", "bases"] {
        let Some(items) = doc.get(root, list) else {
            continue;
        };
        for (i, &item) in doc.items(items).iter().enumerate() {
            let Some(url) = doc.str(item) else { continue };
            let Some((repo, range)) = kustomize_remote(url) else {
                continue;
            };
            let field = format!("{list}[{i}]");
            if Some(&repo) == ctx.base_repo.as_ref() {
                scan.scalar(doc, item, object, &field, What::GitopsBase, Some(range));
            } else {
                scan.skip(
                    doc.node(item).start,
                    &field,
                    &url[range],
                    &format!("ref of another repository ({repo}), left as is"),
                );
            }
        }
    }
}

/// Managed values inside kustomize patches written inline: `patches[].patch`,
/// `patchesJson6902[].patch` and `patchesStrategicMerge[]` of a kustomization, and
/// `spec.patches[].patch` of a Flux Kustomization.
fn inline_patches(ctx: &Ctx, scan: &mut FileScan, doc: &Doc, kustomization_file: bool) {
    let Some(root) = doc.root else { return };
    if ctx.plan.target.is_none() && ctx.base_repo.is_none() {
        return;
    }
    let api = doc.root_str(&["apiVersion"]).unwrap_or("");
    let object = match (doc.root_str(&["kind"]), doc.root_str(&["metadata", "name"])) {
        (Some(k), Some(n)) => format!("{k}/{n}"),
        (Some(k), None) => k.to_string(),
        _ => String::new(),
    };
    let mut lists: Vec<(&str, Option<NodeId>)> = Vec::new();
    if api.starts_with("kustomize.toolkit.fluxcd.io/") {
        lists.push(("spec.patches", doc.path(root, &["spec", "patches"])));
    } else if kustomization_file || api.starts_with("kustomize.config.k8s.io/") {
        for key in ["patches", "patchesJson6902", "patchesStrategicMerge"] {
            lists.push((key, doc.get(root, key)));
        }
    }
    for (name, list) in lists {
        let Some(list) = list else { continue };
        for (i, &entry) in doc.items(list).iter().enumerate() {
            let (node, field) = match doc.get(entry, "patch") {
                Some(p) => (p, format!("{name}[{i}].patch")),
                None => (entry, format!("{name}[{i}]")),
            };
            let target = crate::core::inline::target_of(doc, entry);
            scan.inline(ctx, doc, node, &target, &object, &field);
        }
    }
}

/// `# {"$fleetwave": "kubernetesVersion"}` after a scalar makes it managed.
fn markers(scan: &mut FileScan, docs: &[Doc]) {
    let text = &scan.file.text;
    if !text.contains("$fleetwave") {
        return;
    }
    for doc in docs {
        for (id, node) in doc.nodes.iter().enumerate() {
            let Kind::Scalar(s) = &node.kind else {
                continue;
            };
            let Some(content) = &s.content else { continue };
            let line_end = text[content.end..]
                .find('\n')
                .map_or(text.len(), |i| content.end + i);
            let rest = &text[content.end..line_end];
            let Some(caps) = MARKER.captures(rest) else {
                continue;
            };
            // Keys and values share a line; only the value right before the comment counts.
            if !rest[..caps.get(0).map_or(0, |m| m.start())]
                .trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace())
                .is_empty()
            {
                continue;
            }
            let what = match &caps[1] {
                "kubernetesVersion" => What::Kubernetes(Role::Whole),
                "gitopsBase" => What::GitopsBase,
                other => {
                    scan.skip(node.start, "marker comment", &s.value, &format!("unknown $fleetwave marker {other:?} (use kubernetesVersion or gitopsBase)"));
                    continue;
                }
            };
            let field = format!("{} (marker)", key_of(doc, id).unwrap_or("value"));
            if scan.out.occurrences.iter().any(|o| {
                o.file == scan.index && o.scalar.as_ref().is_some_and(|c| c.start == node.start)
            }) {
                continue;
            }
            let object = match (doc.root_str(&["kind"]), doc.root_str(&["metadata", "name"])) {
                (Some(k), Some(n)) => format!("{k}/{n}"),
                (Some(k), None) => k.to_string(),
                _ => String::new(),
            };
            scan.scalar(doc, id, &object, &field, what, None);
        }
    }
}

fn key_of(doc: &Doc, value: NodeId) -> Option<&str> {
    doc.nodes.iter().find_map(|n| match &n.kind {
        Kind::Map(pairs) => pairs
            .iter()
            .find(|(_, v)| *v == value)
            .and_then(|(k, _)| doc.str(*k)),
        _ => None,
    })
}

/// Full-line comments that repeat a managed value (the openCenter generator's ssh block).
fn commented(scan: &mut FileScan) {
    let values: Vec<String> = scan
        .out
        .occurrences
        .iter()
        .filter(|o| o.file == scan.index)
        .map(|o| o.value.clone())
        .collect();
    if values.is_empty() {
        return;
    }
    // The forms a value takes on such a line, built once per value, not once per line.
    let forms: Vec<(&String, [String; 4])> = values
        .iter()
        .map(|v| {
            let forms = [
                format!("tag: {v}"),
                format!("tag: \"{v}\""),
                format!("ref={v}"),
                format!("version: {v}"),
            ];
            (v, forms)
        })
        .collect();
    let text = &scan.file.text;
    for m in COMMENTED.find_iter(text) {
        let line = m.as_str();
        let hit = forms
            .iter()
            .find(|(_, forms)| forms.iter().any(|p| line.contains(p.as_str())));
        if let Some((v, _)) = hit {
            scan.skip(
                m.start(),
                "comment",
                v,
                "commented-out occurrence, left as is",
            );
        }
    }
}

/// Parse a Kubernetes version occurrence, or None.
pub fn kube_value(o: &Occurrence) -> Option<KubeVersion> {
    KubeVersion::parse(&o.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_urls_normalize_across_ssh_and_https() {
        let want = Some("github.com/opencenter-cloud/opencenter-gitops-base".to_string());
        for u in [
            "https://github.com/opencenter-cloud/openCenter-gitops-base.git",
            "ssh://git@github.com/opencenter-cloud/openCenter-gitops-base.git",
            "git@github.com:opencenter-cloud/openCenter-gitops-base.git",
            "github.com/opencenter-cloud/openCenter-gitops-base",
            "https://github.com/opencenter-cloud/openCenter-gitops-base/",
        ] {
            assert_eq!(normalize_repo_url(u), want, "{u}");
        }
        assert_eq!(normalize_repo_url("not a url"), None);
        assert_eq!(normalize_repo_url("ftp://x.y/z"), None);
    }

    #[test]
    fn flux_ref_names_of_tags_are_managed() {
        let text = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: base\nspec:\n  url: https://github.com/org/base.git\n  ref:\n    name: refs/tags/2026.01\n---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: main\nspec:\n  url: https://github.com/org/base.git\n  ref:\n    name: refs/heads/main\n";
        let docs = crate::core::yaml::parse(text).unwrap();
        let plan_text = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata:\n  name: p\nspec:\n  gitopsBase: {url: \"https://github.com/org/base.git\", tag: \"2026.02\"}\n  waves:\n    - name: w\n      clusterSelector: {matchLabels: {a: b}}\n";
        let (plan, _) =
            crate::core::plan::load(std::path::Path::new("p.yaml"), plan_text.into()).unwrap();
        let config = Config::parse(std::path::Path::new("fleetwave.yaml"), "{}\n".into()).unwrap();
        let file = RepoFile {
            rel: "c/source.yaml".into(),
            text: text.into(),
            yaml: true,
            kustomize: None,
        };
        let lines = LineIndex::new(text);
        let out = locate_file(
            &Ctx::new(&plan, &config),
            "c",
            0,
            &file,
            Some(&docs),
            &lines,
        );
        assert_eq!(out.occurrences.len(), 1);
        let o = &out.occurrences[0];
        assert_eq!(
            (o.value.as_str(), o.field.as_str()),
            ("2026.01", "spec.ref.name")
        );
        assert_eq!(&text[o.range.clone()], "2026.01");
        assert_eq!(o.scalar.as_ref().unwrap().before, "refs/tags/");
        assert!(out.skips.iter().any(|s| s.value == "refs/heads/main"));
    }

    #[test]
    fn kustomize_remote_refs() {
        let u = "github.com/opencenter-cloud/openCenter-gitops-base//applications/base/services/cert-manager?ref=2026.01";
        let (repo, r) = kustomize_remote(u).unwrap();
        assert_eq!(repo, "github.com/opencenter-cloud/opencenter-gitops-base");
        assert_eq!(&u[r], "2026.01");
        let u = "https://github.com/org/base.git//apps?timeout=2m&ref=v1.2";
        let (repo, r) = kustomize_remote(u).unwrap();
        assert_eq!((repo.as_str(), &u[r]), ("github.com/org/base", "v1.2"));
        let u = "https://github.com/org/base//apps?version=v1.3";
        let (_, r) = kustomize_remote(u).unwrap();
        assert_eq!(&u[r], "v1.3");
        let u = "https://github.com/org/base/apps/x?ref=v3";
        assert_eq!(kustomize_remote(u).unwrap().0, "github.com/org/base");
        assert!(kustomize_remote("../base").is_none());
        assert_eq!(
            remote_repo("git::https://github.com/org/Base.git//iac/provider/kubespray?ref=2026.01")
                .as_deref(),
            Some("github.com/org/base")
        );
    }
}
