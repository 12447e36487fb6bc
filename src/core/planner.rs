//! From a plan file and a fleet repo to per-wave steps: the whole of `fleetwave plan`
//! without the printing, and the edits `fleetwave apply` writes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::core::config::Config;
use crate::core::diag::{Diag, Diags, Finding, Severity};
use crate::core::edit;
use crate::core::fleet::{self, Fleet};
use crate::core::locate::{self, Skip};
use crate::core::plan::{self, Plan};
use crate::core::preflight;
use crate::core::source::YamlSource;
use crate::core::steps::{self, WavePlan};
use crate::core::tree::{EntryKind, FileTree};
use crate::path;

pub struct Planned {
    pub plan: Plan,
    pub fleet: Fleet,
    pub waves: Vec<WavePlan>,
    pub skips: Vec<Skip>,
    pub findings: Vec<Finding>,
    /// Goals of the plan that match nothing in the fleet (see `unmatched`).
    pub unmatched: Vec<Diag>,
}

impl Planned {
    pub fn refusals(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
}

/// What the plan asks for that matches nothing, located in the plan: no wave selects a
/// cluster, or a goal (targetVersion, gitopsBase, templates) has no field in the selected
/// clusters.
fn unmatched(plan: &Plan, src: &YamlSource, fleet: &Fleet, waves: &[WavePlan]) -> Vec<Diag> {
    let selected: Vec<&str> = waves
        .iter()
        .flat_map(|w| w.clusters.iter().map(String::as_str))
        .collect();
    if selected.is_empty() {
        return vec![src
            .at_key(&path!["spec", "waves"], "no wave's clusterSelector selects any cluster of the fleet")
            .hint("check the selectors against the clusters' labels (the findings list each unselected cluster and its labels)")];
    }
    let occ = || {
        selected
            .iter()
            .filter_map(|c| fleet.clusters.get(*c))
            .flat_map(|c| c.files.iter())
            .flat_map(|&i| fleet.located[i].occurrences.iter())
    };
    let mut out = Vec::new();
    if let Some(t) = &plan.target {
        if !occ().any(|o| matches!(o.what, locate::What::Kubernetes(_))) {
            out.push(src.at(&path!["spec", "targetVersion"], format!("targetVersion {t} matches no Kubernetes version field in the selected clusters"))
                .hint("check the cluster paths in fleetwave.yaml, or mark the version fields with `# {\"$fleetwave\": \"kubernetesVersion\"}`"));
        }
    }
    if let Some(g) = &plan.gitops_base {
        if !occ().any(|o| o.what == locate::What::GitopsBase) {
            out.push(src.at(&path!["spec", "gitopsBase", "url"], format!("gitopsBase {} matches no Flux source, kustomize remote ref or substitute in the selected clusters", g.url))
                .hint("check gitopsBase.url against the repository URLs the fleet uses"));
        }
    }
    let t = &plan.templates;
    if !t.is_empty()
        && !occ().any(|o| {
            o.what == locate::What::Template
                && (t.contains_key(&o.value) || t.values().any(|v| *v == o.value))
        })
    {
        out.push(
            src.at_key(
                &path!["spec", "templates"],
                "no ClusterDeployment in the selected clusters uses a template the plan names",
            )
            .hint("check the old template names against the ClusterDeployments' spec.template"),
        );
    }
    out
}

/// Plan against any file tree (a directory, or a commit read into memory).
pub fn prepare_in(
    tree: &dyn FileTree,
    shown_plan: &Path,
    plan_text: String,
) -> Result<Planned, Diags> {
    let (mut plan, src) = plan::load(shown_plan, plan_text)?;
    let config = Config::load(tree)?;
    plan.repo_freezes = crate::core::calendar::load_repo(tree)?;
    let fleet = fleet::discover(tree, &config, &plan)?;
    let selection = fleet::select(&plan, &src, &fleet)?;
    let mut findings = fleet.findings.clone();
    findings.extend(selection.findings);
    findings.extend(preflight::check(
        &Known::new(tree, &fleet),
        &mut plan,
        &src,
        &fleet,
        &selection.waves,
    )?);
    let mut skips = Vec::new();
    let mut waves = Vec::new();
    for (i, names) in selection.waves.iter().enumerate() {
        let clusters: Vec<&fleet::Cluster> = names.iter().map(|n| &fleet.clusters[n]).collect();
        let located = fleet::locate(&fleet, &clusters);
        let wave = steps::plan_wave(&plan, i, names, &located.occurrences, &fleet);
        skips.extend(located.skips);
        skips.extend(wave.skips.iter().cloned());
        findings.extend(wave.findings.iter().cloned());
        waves.push(wave);
    }
    findings.sort_by(|a, b| {
        (a.severity, &a.cluster, &a.file, a.line).cmp(&(b.severity, &b.cluster, &b.file, b.line))
    });
    findings.dedup();
    skips.sort_by(|a, b| {
        (&a.cluster, &a.file, a.line, &a.field).cmp(&(&b.cluster, &b.file, b.line, &b.field))
    });
    let unmatched = unmatched(&plan, &src, &fleet, &waves);
    plan.wave_windows = waves.iter().map(|w| w.windows.clone()).collect();
    Ok(Planned {
        plan,
        fleet,
        waves,
        skips,
        findings,
        unmatched,
    })
}

/// The tree as the pre-flights see it: the fleet's files (and the folders holding them) are
/// answered from what discovery read, so following kustomizations reads no file twice.
struct Known<'a> {
    tree: &'a dyn FileTree,
    fleet: &'a Fleet,
    files: HashMap<&'a Path, usize>,
    dirs: HashSet<&'a Path>,
}

impl<'a> Known<'a> {
    fn new(tree: &'a dyn FileTree, fleet: &'a Fleet) -> Known<'a> {
        let files: HashMap<&Path, usize> = fleet
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.rel.as_path(), i))
            .collect();
        let mut dirs = HashSet::new();
        for f in &fleet.files {
            for d in f.rel.ancestors().skip(1) {
                if d.as_os_str().is_empty() || !dirs.insert(d) {
                    break;
                }
            }
        }
        Known {
            tree,
            fleet,
            files,
            dirs,
        }
    }
}

impl FileTree for Known<'_> {
    fn list(&self, dir: &Path) -> Option<Vec<(String, EntryKind)>> {
        self.tree.list(dir)
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        // A binary file has no text kept: read it again.
        match self.files.get(path).map(|&i| &self.fleet.files[i].text) {
            Some(t) if !t.is_empty() => Ok(t.as_bytes().to_vec()),
            _ => self.tree.read(path),
        }
    }

    fn kind(&self, path: &Path) -> Option<EntryKind> {
        if self.files.contains_key(path) {
            Some(EntryKind::File)
        } else if self.dirs.contains(path) {
            Some(EntryKind::Dir)
        } else {
            self.tree.kind(path)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("no wave named {0:?} in the plan (waves: {1})")]
    NoWave(String, String),
    #[error("wave {wave:?} has {count} steps; there is no step {step}")]
    NoStep {
        wave: String,
        count: usize,
        step: usize,
    },
    #[error(
        "step {step} of wave {wave:?} builds on step {earlier} ({title}), which is not in the working tree yet; apply step {earlier} first"
    )]
    EarlierPending {
        wave: String,
        step: usize,
        earlier: usize,
        title: String,
    },
    #[error("{file}: {source}")]
    Edit {
        file: PathBuf,
        source: edit::EditError,
    },
}

/// The new contents of every file that `wave` (or its step `step`) changes.
pub fn edits(
    p: &Planned,
    wave: &str,
    step: Option<usize>,
) -> Result<BTreeMap<PathBuf, String>, ApplyError> {
    edits_excluding(p, wave, step, &std::collections::BTreeSet::new())
}

/// Like [`edits`], leaving out the changes of `exclude`d clusters (clusters that failed in
/// this wave stay where they are).
pub fn edits_excluding(
    p: &Planned,
    wave: &str,
    step: Option<usize>,
    exclude: &std::collections::BTreeSet<String>,
) -> Result<BTreeMap<PathBuf, String>, ApplyError> {
    let w = p.waves.iter().find(|w| w.name == wave).ok_or_else(|| {
        ApplyError::NoWave(
            wave.to_string(),
            p.waves
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )
    })?;
    let kept: Vec<steps::Step> = w
        .steps
        .iter()
        .map(|s| steps::Step {
            changes: s
                .changes
                .iter()
                .filter(|c| !exclude.contains(&c.cluster))
                .cloned()
                .collect(),
            ..s.clone()
        })
        .collect();
    let w = steps::WavePlan {
        steps: kept,
        ..w.clone()
    };
    let chosen: Vec<&steps::Step> = match step {
        None => w.steps.iter().collect(),
        Some(n) => {
            let s = w.steps.get(n.wrapping_sub(1)).ok_or(ApplyError::NoStep {
                wave: wave.to_string(),
                count: w.steps.len(),
                step: n,
            })?;
            if let Some(e) = w.steps[..n - 1].iter().find(|e| !e.changes.is_empty()) {
                return Err(ApplyError::EarlierPending {
                    wave: wave.to_string(),
                    step: n,
                    earlier: e.index,
                    title: e.title.clone(),
                });
            }
            vec![s]
        }
    };
    let mut out = BTreeMap::new();
    for (file, splices) in steps::splices(&chosen) {
        let f = &p.fleet.files[file];
        let new =
            edit::apply(&f.text, &splices, f.is_yaml()).map_err(|source| ApplyError::Edit {
                file: f.rel.clone(),
                source,
            })?;
        out.insert(f.rel.clone(), new);
    }
    Ok(out)
}
