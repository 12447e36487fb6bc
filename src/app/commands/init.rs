//! `fleetwave init`: look at a fleet repository and write a starter plan — the clusters
//! found, waves from existing labels (or a canary/rest split), the gitops-base repository
//! the clusters pin, a comment on each field — and, with `--github`, a reconcile workflow.
//! Nothing is overwritten without `--force`; what is written is validated as `plan` reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::app::commands::diags_error;
use crate::app::commands::survey::{self, Survey};
use crate::core::fleet::Fleet;
use crate::core::locate::What;
use crate::core::version::KubeVersion;

/// The example reconcile workflow, with the plan path filled in by `--github`.
const WORKFLOW: &str = include_str!("../../../examples/workflows/reconcile.yml");
const WORKFLOW_PLAN: &str = "plan: plans/k8s-1-34.yaml";
pub const WORKFLOW_PATH: &str = ".github/workflows/fleetwave.yaml";
/// The label of the canary/rest split when the clusters carry no wave-like label.
pub const WAVE_LABEL: &str = "fleetwave.io/wave";

pub fn run(out: &mut dyn Write, repo: &Path, plan: &Path, github: bool, force: bool) -> ExitCode {
    match init(repo, plan, github, force) {
        Ok(text) => match out.write_all(crate::core::diag::escape(&text).as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => super::fail(&e.into()),
        },
        Err(e) => super::fail(&e),
    }
}

fn init(repo: &Path, plan: &Path, github: bool, force: bool) -> anyhow::Result<String> {
    survey::check_repo(repo)?;
    if plan.is_absolute()
        || plan
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        bail!(
            "--plan {}: give a path inside the repository, relative to --repo (e.g. plans/fleet-upgrade.yaml)",
            plan.display()
        );
    }
    let mut targets = vec![plan.to_path_buf()];
    if github {
        targets.push(PathBuf::from(WORKFLOW_PATH));
    }
    let existing: Vec<String> = targets
        .iter()
        .filter(|t| std::fs::symlink_metadata(repo.join(t)).is_ok())
        .map(|t| repo.join(t).display().to_string())
        .collect();
    if !existing.is_empty() && !force {
        bail!(
            "{} already exists; nothing was written\n  help: pass --force to overwrite, or --plan to write the plan elsewhere",
            existing.join(" and ")
        );
    }
    let s = survey::survey(repo, &[])?;
    if s.fleet.clusters.is_empty() {
        return Err(survey::not_a_fleet(repo));
    }
    let starter = starter(&s)?;
    // What `plan` would refuse to read is never written.
    crate::core::plan::load(plan, starter.text.clone()).map_err(|d| diags_error(&d))?;
    let mut files = vec![(plan.to_path_buf(), starter.text.clone())];
    if github {
        files.push((PathBuf::from(WORKFLOW_PATH), workflow(plan)));
    }
    for (rel, text) in &files {
        let p = repo.join(rel);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(report(&s, &starter, plan, github))
}

/// The reconcile workflow of `examples/workflows/`, for this plan.
pub fn workflow(plan: &Path) -> String {
    WORKFLOW
        .replacen(
            "Copy to .github/workflows/ in the fleet repository.",
            "Written by `fleetwave init --github`.",
            1,
        )
        .replacen(WORKFLOW_PLAN, &format!("plan: {}", plan.display()), 1)
}

/// What the starter plan says, and why.
struct Starter {
    text: String,
    /// How the waves were chosen, for the report.
    waves_from: String,
    notes: Vec<String>,
}

/// One suggested wave: its name and selector lines (YAML, indented for the plan).
pub(super) struct WaveSketch {
    name: String,
    selector: String,
    clusters: Vec<String>,
}

fn starter(s: &Survey) -> anyhow::Result<Starter> {
    let versions = versions(&s.fleet);
    let base = survey::base_candidates(&s.fleet).into_iter().next();
    let mut notes = Vec::new();
    let mut spec = String::new();
    match hops(&versions, &mut notes) {
        Some((target, via)) => {
            let mut now: Vec<&str> = versions.keys().map(String::as_str).collect();
            now.sort_by(|a, b| match (KubeVersion::parse(a), KubeVersion::parse(b)) {
                (Some(x), Some(y)) => x.cmp_precedence(&y).then(a.cmp(b)),
                _ => a.cmp(b),
            });
            writeln!(spec, "  # The Kubernetes version to go to. The clusters pin {} now; this starter", now.join(", "))?;
            writeln!(spec, "  # plan brings them all to the newest one. Set the release you want.")?;
            writeln!(spec, "  targetVersion: {target}")?;
            if !via.is_empty() {
                writeln!(spec, "  # One hop per minor between the oldest cluster and the target.")?;
                writeln!(spec, "  intermediateVersions: [{}]", via.join(", "))?;
            }
        }
        None => notes.push("no Kubernetes version field found: the plan sets no targetVersion (see `fleetwave explain CLUSTER`)".into()),
    }
    if let Some(b) = &base {
        let tag = b.newest_tag().unwrap_or_default();
        writeln!(
            spec,
            "  # The gitops-base repository {} of {} clusters pin by tag ({}).",
            b.clusters.len(),
            s.fleet.clusters.len(),
            b.tags.keys().cloned().collect::<Vec<_>>().join(", ")
        )?;
        writeln!(
            spec,
            "  # This starter brings every pin to the newest of those; set `tag` to the release to"
        )?;
        writeln!(
            spec,
            "  # roll out, and fleetwave rewrites every pin of the repository to it."
        )?;
        writeln!(
            spec,
            "  gitopsBase:\n    url: {}\n    tag: {}",
            yaml_str(&b.url),
            yaml_str(tag)
        )?;
    }
    if spec.is_empty() {
        bail!(
            "found no Kubernetes version and no gitops-base ref in the {} clusters; nothing to put in a plan\n  help: see what fleetwave reads with `fleetwave explain CLUSTER`",
            s.fleet.clusters.len()
        );
    }
    let (waves, waves_from) = waves(&s.fleet);
    let mut text = header(
        s,
        "Starter plan written by `fleetwave init`.",
        "fleet-upgrade",
    )?;
    text.push_str(&spec);
    text.push_str(&waves_yaml(&waves)?);
    Ok(Starter {
        text,
        waves_from,
        notes,
    })
}

/// The plan's opening comment (`intro` first), the clusters found, and its head up to `spec:`.
pub(super) fn header(s: &Survey, intro: &str, name: &str) -> anyhow::Result<String> {
    let mut t = String::new();
    writeln!(t, "# {intro} Review every field, then preview it with")?;
    writeln!(
        t,
        "# `fleetwave plan --plan <this file>` and commit it on the base branch: the reconciler"
    )?;
    writeln!(t, "# reads the plan from there.")?;
    writeln!(
        t,
        "# Clusters found ({}): {}",
        s.fleet.clusters.len(),
        s.fleet
            .clusters
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(t, "apiVersion: {}", crate::core::plan::API_VERSION)?;
    writeln!(t, "kind: {}", crate::core::plan::KIND)?;
    writeln!(t, "metadata:")?;
    writeln!(
        t,
        "  # Part of every branch fleetwave pushes: lower-case letters, digits and '-'."
    )?;
    writeln!(t, "  name: {name}")?;
    writeln!(t, "spec:")?;
    Ok(t)
}

pub(super) fn waves_yaml(waves: &[WaveSketch]) -> anyhow::Result<String> {
    let mut t = String::new();
    writeln!(
        t,
        "  # Waves run in this order; each must pass its soak before the next starts."
    )?;
    writeln!(t, "  waves:")?;
    for (i, w) in waves.iter().enumerate() {
        let first = i == 0;
        if w.clusters.is_empty() {
            writeln!(t, "    # Selects no cluster yet.")?;
        } else {
            writeln!(t, "    # Selects {}.", w.clusters.join(", "))?;
        }
        writeln!(t, "    - name: {}", w.name)?;
        writeln!(
            t,
            "      # Clusters by label, as in Kubernetes (matchLabels, matchExpressions)."
        )?;
        writeln!(t, "      clusterSelector:\n{}", w.selector)?;
        writeln!(t, "      validation:")?;
        writeln!(
            t,
            "        # How long the clusters must stay healthy after converging."
        )?;
        writeln!(
            t,
            "        healthCheckDuration: {}",
            if first { "1h" } else { "24h" }
        )?;
        writeln!(
            t,
            "        # true: fleetwave merges the steps; false: a person merges each step PR."
        )?;
        writeln!(t, "        automated: {first}")?;
    }
    Ok(t)
}

/// Every Kubernetes version the fleet pins, with the clusters that pin it.
fn versions(fleet: &Fleet) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in fleet.clusters.values() {
        for o in crate::core::fleet::locate(fleet, &[c]).occurrences {
            if matches!(o.what, What::Kubernetes(_)) {
                out.entry(o.value).or_default().insert(c.name.clone());
            }
        }
    }
    out
}

/// The target (the newest version the fleet pins, without a build suffix: a pre-release when
/// that is the newest, since going below it would be a downgrade) and one hop per minor
/// between the oldest pinned minor and it (releases only).
fn hops(
    versions: &BTreeMap<String, BTreeSet<String>>,
    notes: &mut Vec<String>,
) -> Option<(String, Vec<String>)> {
    let parsed: Vec<KubeVersion> = versions
        .keys()
        .filter_map(|v| KubeVersion::parse(v))
        .collect();
    let releases: Vec<&KubeVersion> = parsed
        .iter()
        .filter(|v| v.patch.is_some() && v.pre.is_none())
        .collect();
    let newest = parsed
        .iter()
        .filter(|v| v.patch.is_some())
        .max_by(|a, b| a.cmp_precedence(b))?;
    let oldest = parsed.iter().map(|v| v.minor).min()?;
    let mut via = Vec::new();
    for minor in oldest + 1..newest.minor {
        let best = releases
            .iter()
            .filter(|v| v.minor == minor)
            .max_by(|a, b| a.cmp_precedence(b));
        via.push(match best {
            Some(v) => v.canonical(),
            None => match crate::core::catalog::Catalog::embedded().newest(minor, newest) {
                // No cluster pins this minor: its newest patch from the release catalog.
                Some(v) => {
                    notes.push(format!("no cluster pins 1.{minor}: intermediate {} is the release catalog's newest 1.{minor} patch (`fleetwave versions`)", v.canonical()));
                    v.canonical()
                }
                None => {
                    notes.push(format!("no cluster pins 1.{minor}: intermediate v1.{minor}.0 is a placeholder, pick its latest patch"));
                    format!("v1.{minor}.0")
                }
            },
        });
    }
    Some((newest.canonical(), via))
}

/// Label keys that name a wave, then keys that name an environment (the likeliest order of
/// a rollout).
const WAVE_KEYS: &[&str] = &["wave"];
const ENV_KEYS: &[&str] = &["env", "environment", "stage", "tier", "ring"];
/// Values in the order a rollout usually takes them; others go with "standard".
const ORDER: &[&str] = &[
    "canary",
    "dev",
    "development",
    "lab",
    "sandbox",
    "test",
    "testing",
    "qa",
    "stg",
    "stage",
    "staging",
    "preprod",
    "pilot",
    "early",
    "standard",
    "default",
    "prod",
    "production",
    "critical",
    "regulated",
    "late",
    "last",
];

/// The label key the waves follow: one with "wave" in its name, else an environment key, on
/// the most clusters.
fn wave_key(fleet: &Fleet) -> Option<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for c in fleet.clusters.values() {
        for k in c.labels.keys() {
            *count.entry(k.as_str()).or_default() += 1;
        }
    }
    let last = |k: &str| k.rsplit('/').next().unwrap_or(k).to_lowercase();
    let pick = |f: &dyn Fn(&str) -> bool| {
        count
            .iter()
            .filter(|(k, _)| f(k))
            .max_by_key(|(k, n)| (**n, std::cmp::Reverse(**k)))
            .map(|(k, _)| k.to_string())
    };
    pick(&|k| WAVE_KEYS.iter().any(|w| last(k).contains(w)))
        .or_else(|| pick(&|k| ENV_KEYS.contains(&last(k).as_str())))
}

fn rank(v: &str) -> usize {
    let v = v.to_lowercase();
    ORDER
        .iter()
        .position(|o| *o == v)
        .unwrap_or_else(|| ORDER.iter().position(|o| *o == "standard").unwrap_or(0))
}

/// The waves, and a sentence on how they were chosen.
pub(super) fn waves(fleet: &Fleet) -> (Vec<WaveSketch>, String) {
    let Some(key) = wave_key(fleet) else {
        return canary_rest(fleet);
    };
    let mut by_value: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut unlabelled = Vec::new();
    for c in fleet.clusters.values() {
        match c.labels.get(&key) {
            Some(v) => by_value.entry(v.as_str()).or_default().push(c.name.clone()),
            None => unlabelled.push(c.name.clone()),
        }
    }
    let mut values: Vec<(&str, Vec<String>)> = by_value.into_iter().collect();
    values.sort_by_key(|(v, _)| (rank(v), v.to_string()));
    let mut names = BTreeSet::new();
    let mut out: Vec<WaveSketch> = values
        .into_iter()
        .enumerate()
        .map(|(i, (v, clusters))| WaveSketch {
            name: wave_name(v, i, &mut names),
            selector: format!(
                "        matchLabels: {{{}: {}}}",
                yaml_str(&key),
                yaml_str(v)
            ),
            clusters,
        })
        .collect();
    if !unlabelled.is_empty() {
        out.push(WaveSketch {
            name: wave_name("rest", out.len(), &mut names),
            selector: format!(
                "        matchExpressions:\n          - {{key: {}, operator: DoesNotExist}}",
                yaml_str(&key)
            ),
            clusters: unlabelled,
        });
    }
    (out, format!("one wave per value of the label {key}"))
}

/// No label to follow: a canary wave (selected by a label to add) and the rest.
fn canary_rest(fleet: &Fleet) -> (Vec<WaveSketch>, String) {
    let names: Vec<&String> = fleet.clusters.keys().collect();
    let canary = names
        .iter()
        .find(|n| {
            ["canary", "dev", "lab", "test", "stg", "staging"]
                .iter()
                .any(|h| n.contains(h))
        })
        .or(names.first())
        .map(|n| n.to_string())
        .unwrap_or_default();
    let waves = vec![
        WaveSketch {
            name: "canary".into(),
            selector: format!("        matchLabels: {{{WAVE_LABEL}: canary}}"),
            clusters: Vec::new(),
        },
        WaveSketch {
            name: "rest".into(),
            selector: format!(
                "        matchExpressions:\n          - {{key: {WAVE_LABEL}, operator: NotIn, values: [canary]}}"
            ),
            clusters: names.iter().map(|n| n.to_string()).collect(),
        },
    ];
    let how = format!(
        "a canary/rest split: no cluster carries a wave or environment label. Label the canary, e.g. {canary}, with `{WAVE_LABEL}: canary` (on its Cluster object, or under clusters.labels in fleetwave.yaml); until then the canary wave selects nothing"
    );
    (waves, how)
}

/// A wave name `plan` accepts, from a label value.
fn wave_name(value: &str, i: usize, taken: &mut BTreeSet<String>) -> String {
    let mut n: String = value
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    n = n.trim_matches('-').chars().take(40).collect();
    if n.is_empty() || taken.contains(&n) {
        n = format!("wave-{}", i + 1);
    }
    taken.insert(n.clone());
    n
}

/// A YAML scalar, quoted when plain would not read back as the same string.
fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
        && !s.starts_with(|c: char| c.is_ascii_digit() || "-.:/".contains(c))
        && !s.contains(": ")
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        );
    if plain {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

fn report(s: &Survey, st: &Starter, plan: &Path, github: bool) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "wrote {} for {} clusters",
        plan.display(),
        s.fleet.clusters.len()
    );
    let _ = writeln!(t, "  waves: {}", st.waves_from);
    for n in &st.notes {
        let _ = writeln!(t, "  note: {n}");
    }
    if github {
        let _ = writeln!(
            t,
            "wrote {WORKFLOW_PATH}: a reconcile every 15 minutes (it needs the secret FLEET_HUB_KUBECONFIG, and `uses:` pointed at your copy of the fleetwave action)"
        );
    }
    let _ = writeln!(t, "next:");
    let _ = writeln!(
        t,
        "  fleetwave clusters --plan {}      # which wave each cluster lands in",
        plan.display()
    );
    let _ = writeln!(
        t,
        "  fleetwave plan --plan {} --diff   # what it would change",
        plan.display()
    );
    let _ = writeln!(
        t,
        "  git add {} && git commit           # the reconciler reads the plan from the base branch",
        plan.display()
    );
    t
}
