//! The shared look at a checkout of a fleet repository, for `plan`, `apply`, `clusters`,
//! `explain` and `init`: whether it is one at all, which plans it holds, and its fleet as the
//! core's discovery and locators see it (never a second implementation of either).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::adapters::disk::{self, DiskTree};
use crate::app::commands::diags_error;
use crate::core::config::Config;
use crate::core::diag::escape;
use crate::core::fleet::{self, Fleet};
use crate::core::locate::{self, What};
use crate::core::plan::{self, GitopsBase, Plan};
use crate::core::repo_url::normalize_repo_url;
use crate::core::source::YamlSource;
use crate::core::version::KubeVersion;

/// Where plans live by convention (`plans/x.yaml`, committed on the base branch).
pub const PLANS_DIR: &str = "plans";

/// The repository root must be a directory. Said without a line and column: there is no
/// file to point into.
pub fn check_repo(repo: &Path) -> anyhow::Result<()> {
    let shown = escape(&repo.display().to_string()).into_owned();
    match std::fs::metadata(repo) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!(
            "{shown}: the fleet repository is not a directory\n  help: pass the repository's root with --repo"
        ),
        Err(e) => bail!(
            "{shown}: the fleet repository is not a directory ({e})\n  help: pass the repository's root with --repo"
        ),
    }
}

/// A plan file that does not exist, said without an invented line and column.
pub fn check_plan_exists(plan: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(plan) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{}: no such plan file\n  help: pass the plan file with --plan (a path from the current directory)",
            escape(&plan.display().to_string())
        ),
        _ => Ok(()),
    }
}

/// The error for a directory in which no cluster path finds a cluster: most often the
/// command ran outside the fleet repository without `--repo`.
pub fn not_a_fleet(repo: &Path) -> anyhow::Error {
    let paths = Config::load(&DiskTree::new(repo.to_path_buf()))
        .map(|c| c.paths)
        .unwrap_or_default();
    let abs = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
    anyhow::anyhow!(
        "{}: not a fleet repository: no cluster found under {} (the cluster paths{})\n  help: run in the fleet repository or pass its root with --repo; if clusters live elsewhere, list their paths under `clusters.paths` in fleetwave.yaml",
        escape(&abs.display().to_string()),
        paths.join(", "),
        if repo.join(crate::core::config::FILE).exists() {
            " of fleetwave.yaml"
        } else {
            ", by default"
        }
    )
}

/// The plans a repository holds: files under `plans/` whose kind is FleetUpgradePlan.
pub fn plans_in(repo: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(repo.join(PLANS_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter(|p| {
            disk::read_regular(p, false)
                .is_ok_and(|b| String::from_utf8_lossy(&b).contains(plan::KIND))
        })
        .collect();
    out.sort();
    out
}

/// The plans named with `--plan`, else those under `plans/`.
pub fn plan_files(repo: &Path, named: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    for p in named {
        check_plan_exists(p)?;
    }
    Ok(if named.is_empty() {
        plans_in(repo)
    } else {
        named.to_vec()
    })
}

/// One plan file, read and validated as `plan` reads it.
pub struct LoadedPlan {
    /// The path shown in messages (relative to the repository when inside it).
    pub shown: PathBuf,
    pub plan: Plan,
    pub src: YamlSource,
}

pub fn load_plan(repo: &Path, path: &Path) -> anyhow::Result<LoadedPlan> {
    let shown = disk::shown(repo, path);
    let bytes = disk::read_regular(path, true)
        .with_context(|| format!("{}: cannot read the plan", shown.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: the plan is not UTF-8 text", shown.display()))?;
    let (plan, src) = plan::load(&shown, text).map_err(|d| diags_error(&d))?;
    Ok(LoadedPlan { shown, plan, src })
}

/// A plan that asks the locators for every kind of value, to see a fleet without a plan of
/// its own: a target (inline patches are read only when a plan has one), a template entry
/// (ClusterDeployment templates likewise) and, when known, the gitops-base repository.
pub fn survey_plan(base_url: Option<&str>) -> Plan {
    Plan {
        name: "survey".into(),
        target: KubeVersion::parse("v1.0.0"),
        hops: Vec::new(),
        gitops_base: base_url.map(|url| GitopsBase {
            url: url.to_string(),
            tag: String::new(),
            kubernetes: None,
            kubernetes_req: None,
        }),
        templates: BTreeMap::from([(String::new(), String::new())]),
        waves: Vec::new(),
        paused: false,
        overrides: Vec::new(),
        version_catalog: None,
        provider_versions: Vec::new(),
        efficient_upgrades: false,
        hops_listed: true,
        after: Vec::new(),
        freezes: Vec::new(),
        repo_freezes: Vec::new(),
        maintenance_windows: Vec::new(),
        wave_windows: Vec::new(),
    }
}

/// The fleet as the core discovers it for `plan`: config, clusters, files, located values.
pub struct Survey {
    pub config: Config,
    pub fleet: Fleet,
    /// The gitops-base repository the located tags belong to, and where it was learnt.
    pub base: Option<BaseSource>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BaseSource {
    pub url: String,
    /// `plans/x.yaml`, or `detected` (the repository most clusters pin a tag of).
    pub from: String,
}

/// Discover the fleet under `repo` with every locator on; the gitops-base repository is the
/// first plan's that names one, else the one most clusters pin a tag of.
pub fn survey(repo: &Path, plans: &[LoadedPlan]) -> anyhow::Result<Survey> {
    let tree = DiskTree::new(repo.to_path_buf());
    let config = Config::load(&tree).map_err(|d| diags_error(&d))?;
    let named = plans.iter().find_map(|p| {
        p.plan.gitops_base.as_ref().map(|g| BaseSource {
            url: g.url.clone(),
            from: p.shown.display().to_string(),
        })
    });
    let discover = |url: Option<&str>| {
        fleet::discover(&tree, &config, &survey_plan(url)).map_err(|d| diags_error(&d))
    };
    let (fleet, base) = match named {
        Some(b) => (discover(Some(&b.url))?, Some(b)),
        None => {
            let first = discover(None)?;
            match base_candidates(&first).into_iter().next() {
                Some(c) => {
                    let b = BaseSource {
                        url: c.url,
                        from: "detected".into(),
                    };
                    (discover(Some(&b.url))?, Some(b))
                }
                None => (first, None),
            }
        }
    };
    Ok(Survey {
        config,
        fleet,
        base,
    })
}

/// A repository the fleet pins by tag (a Flux source's tag, a kustomize remote's `?ref=`).
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The URL to write in a plan.
    pub url: String,
    /// The clusters that pin it.
    pub clusters: BTreeSet<String>,
    /// Each tag pinned, with how many places pin it.
    pub tags: BTreeMap<String, usize>,
}

impl Candidate {
    /// The newest tag pinned (by dotted numbers where the tags have them), so that a plan
    /// to it moves no pin backwards; else the tag most places pin.
    pub fn newest_tag(&self) -> Option<&str> {
        let tags: Vec<&str> = self.tags.keys().map(String::as_str).collect();
        let comparable = tags.iter().all(|a| {
            tags.iter()
                .all(|b| crate::core::version::compare_tags(a, b).is_some())
        });
        if comparable {
            return tags.into_iter().max_by(|a, b| {
                crate::core::version::compare_tags(a, b).unwrap_or(std::cmp::Ordering::Equal)
            });
        }
        self.tags
            .iter()
            .max_by_key(|(t, n)| (**n, std::cmp::Reverse(t.as_str())))
            .map(|(t, _)| t.as_str())
    }
}

/// Repositories pinned by tag in the fleet, the likeliest gitops-base first: the one most
/// clusters pin, then one named like a base.
pub fn base_candidates(fleet: &Fleet) -> Vec<Candidate> {
    let mut by_repo: BTreeMap<String, Candidate> = BTreeMap::new();
    for c in fleet.clusters.values() {
        for &i in &c.files {
            let f = &fleet.files[i];
            if !f.is_yaml() {
                continue;
            }
            let Ok(docs) = crate::core::yaml::parse(&f.text) else {
                continue;
            };
            for (repo, url, tag) in docs.iter().flat_map(tag_pins) {
                let e = by_repo.entry(repo).or_insert_with(|| Candidate {
                    url: url.clone(),
                    clusters: BTreeSet::new(),
                    tags: BTreeMap::new(),
                });
                // A Flux source's URL is written as the repository is cloned: prefer it.
                if url.contains("://") && !e.url.contains("://") {
                    e.url = url;
                }
                e.clusters.insert(c.name.clone());
                *e.tags.entry(tag).or_default() += 1;
            }
        }
    }
    let mut out: Vec<Candidate> = by_repo.into_values().collect();
    out.sort_by_key(|c| {
        (
            std::cmp::Reverse(c.clusters.len()),
            !c.url.to_lowercase().contains("base"),
            c.url.clone(),
        )
    });
    out
}

/// (normalized repository, URL, tag) of each tag pin in one document.
fn tag_pins(doc: &crate::core::yaml::Doc) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let api = doc.root_str(&["apiVersion"]).unwrap_or("");
    let kind = doc.root_str(&["kind"]).unwrap_or("");
    if api.starts_with("source.toolkit.fluxcd.io/")
        && matches!(kind, "GitRepository" | "OCIRepository")
    {
        let url = doc.root_str(&["spec", "url"]).unwrap_or("");
        let tag = doc.root_str(&["spec", "ref", "tag"]).or_else(|| {
            doc.root_str(&["spec", "ref", "name"])
                .and_then(|n| n.strip_prefix("refs/tags/"))
        });
        if let (Some(repo), Some(tag)) = (normalize_repo_url(url), tag) {
            out.push((repo, url.to_string(), tag.to_string()));
        }
    }
    let Some(root) = doc.root else { return out };
    for list in ["resources", "components", "bases"] {
        let Some(items) = doc.get(root, list) else {
            continue;
        };
        for &item in doc.items(items) {
            let Some(entry) = doc.str(item) else { continue };
            let tag = entry.split_once('?').and_then(|(_, q)| {
                q.split('&').find_map(|p| {
                    p.strip_prefix("ref=")
                        .or_else(|| p.strip_prefix("version="))
                })
            });
            if let (Some(repo), Some(tag)) = (locate::remote_repo(entry), tag) {
                out.push((repo.clone(), format!("https://{repo}.git"), tag.to_string()));
            }
        }
    }
    out
}

/// What one cluster's files hold, from the located values.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Holds {
    /// The kinds (or non-YAML locators) that pin its Kubernetes version.
    pub kinds: BTreeSet<String>,
    pub kubernetes: BTreeSet<String>,
    #[serde(rename = "gitopsBase")]
    pub gitops_base: BTreeSet<String>,
    pub templates: BTreeSet<String>,
}

pub fn holds(fleet: &Fleet, cluster: &fleet::Cluster) -> Holds {
    let mut h = Holds::default();
    for o in fleet::locate(fleet, &[cluster]).occurrences {
        match o.what {
            What::Kubernetes(_) => {
                let kind = o.object.split('/').next().unwrap_or("");
                h.kinds.insert(if kind.is_empty() {
                    o.field.clone()
                } else {
                    kind.to_string()
                });
                h.kubernetes.insert(o.value);
            }
            What::GitopsBase => {
                h.gitops_base.insert(o.value);
            }
            What::Template => {
                h.templates.insert(o.value);
            }
        }
    }
    h
}

/// Where a plan puts a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// In this wave.
    Wave(String),
    /// In no wave, for this reason.
    Unselected(String),
}

/// Which wave of `plan` selects each cluster, as `plan` decides it; a cluster no wave
/// selects maps to the reason the selection gives.
pub fn waves_of(lp: &LoadedPlan, fleet: &Fleet) -> anyhow::Result<BTreeMap<String, Placed>> {
    let sel = fleet::select(&lp.plan, &lp.src, fleet).map_err(|d| diags_error(&d))?;
    let mut out = BTreeMap::new();
    for (w, names) in lp.plan.waves.iter().zip(&sel.waves) {
        for n in names {
            out.insert(n.clone(), Placed::Wave(w.name.clone()));
        }
    }
    for f in &sel.findings {
        if let Some(c) = &f.cluster {
            out.entry(c.clone())
                .or_insert_with(|| Placed::Unselected(f.message.clone()));
        }
    }
    for c in fleet.clusters.keys() {
        out.entry(c.clone())
            .or_insert_with(|| Placed::Unselected("no wave selects this cluster".into()));
    }
    Ok(out)
}
