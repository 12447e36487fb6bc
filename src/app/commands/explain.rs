//! `fleetwave explain CLUSTER`: how fleetwave reads one cluster — which path pattern finds
//! its files, where its labels come from, each field it manages and by which rule, what it
//! leaves alone — and, per plan, its wave and what each step would change in it. Everything
//! comes from the same discovery and planner as `plan`.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;

use crate::adapters::disk::DiskTree;
use crate::app::commands::survey::{self, LoadedPlan};
use crate::app::commands::{diags_error, finding_line};
use crate::core::config::Config;
use crate::core::diag::{Severity, escape};
use crate::core::fleet::{self, Cluster, Fleet};
use crate::core::locate::{Occurrence, Role, What};
use crate::core::planner::Planned;

pub fn run(out: &mut dyn Write, repo: &Path, plans: &[PathBuf], cluster: &str) -> ExitCode {
    match explain(repo, plans, cluster) {
        // Names, paths and values come from the repository.
        Ok(text) => match out.write_all(escape(&text).as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => super::fail(&e.into()),
        },
        Err(e) => super::fail(&e),
    }
}

fn explain(repo: &Path, named: &[PathBuf], name: &str) -> anyhow::Result<String> {
    survey::check_repo(repo)?;
    let files = survey::plan_files(repo, named)?;
    let mut planned = Vec::new();
    for f in &files {
        let lp = survey::load_plan(repo, f)?;
        let p = crate::adapters::disk::prepare(repo, f).map_err(|d| diags_error(&d))?;
        planned.push((lp, p));
    }
    let config = Config::load(&DiskTree::new(repo.to_path_buf())).map_err(|d| diags_error(&d))?;
    // With a plan, the fields are those `plan` reads for it; without, every locator's.
    let own;
    let fleet = match planned.first() {
        Some((_, p)) => &p.fleet,
        None => {
            own = survey::survey(repo, &[])?.fleet;
            &own
        }
    };
    if fleet.clusters.is_empty() {
        return Err(survey::not_a_fleet(repo));
    }
    let Some(c) = fleet.clusters.get(name) else {
        let names: Vec<&str> = fleet.clusters.keys().map(String::as_str).collect();
        bail!(
            "no cluster {name:?} in {}; its clusters are: {}\n  help: a cluster's name is the `{{cluster}}` part of its path (see `fleetwave clusters`)",
            repo.display(),
            names.join(", ")
        );
    };
    let mut t = String::new();
    writeln!(t, "cluster {name} in {}", repo.display())?;
    paths_section(&mut t, &config, fleet, c)?;
    labels_section(&mut t, &config, c)?;
    fields_section(&mut t, fleet, c)?;
    if planned.is_empty() {
        writeln!(
            t,
            "\nNo plan under plans/: pass --plan FILE to see the wave and the changes."
        )?;
    }
    for (lp, p) in &planned {
        plan_section(&mut t, lp, p, name)?;
    }
    Ok(t)
}

/// The path pattern that owns each file: the first of `clusters.paths` to find it.
fn owning_pattern<'a>(config: &'a Config, cluster: &str, rel: &Path) -> Option<&'a str> {
    let comps: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    config.paths.iter().map(String::as_str).find(|p| {
        let segs: Vec<String> = p
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| s.replace("{cluster}", cluster))
            .collect();
        segs.len() <= comps.len()
            && segs
                .iter()
                .zip(&comps)
                .all(|(s, c)| globset::Glob::new(s).is_ok_and(|g| g.compile_matcher().is_match(c)))
    })
}

fn paths_section(t: &mut String, config: &Config, fleet: &Fleet, c: &Cluster) -> std::fmt::Result {
    writeln!(t, "\nFiles, by the cluster path that finds them:")?;
    let mut by: std::collections::BTreeMap<&str, Vec<&Path>> = Default::default();
    for &i in &c.files {
        let rel = fleet.files[i].rel.as_path();
        by.entry(owning_pattern(config, &c.name, rel).unwrap_or("?"))
            .or_default()
            .push(rel);
    }
    for (pattern, files) in by {
        writeln!(t, "  {pattern}")?;
        for f in files {
            writeln!(t, "    {}", f.display())?;
        }
    }
    Ok(())
}

fn labels_section(t: &mut String, config: &Config, c: &Cluster) -> std::fmt::Result {
    writeln!(t, "\nLabels (what wave selectors match):")?;
    if c.labels.is_empty() {
        writeln!(
            t,
            "  (none: no identity object carries labels and fleetwave.yaml sets none; no wave selector can match this cluster)"
        )?;
    }
    let extra = config.labels.get(&c.name);
    for (k, v) in &c.labels {
        let from = if extra.is_some_and(|e| e.get(k) == Some(v)) {
            "fleetwave.yaml clusters.labels"
        } else {
            "the cluster's identity objects"
        };
        writeln!(t, "  {k}={v}  (from {from})")?;
    }
    Ok(())
}

/// What a located value is, and the rule that found it.
fn rule(o: &Occurrence) -> String {
    let what = match &o.what {
        What::Kubernetes(Role::Whole) => "Kubernetes version of the whole cluster",
        What::Kubernetes(Role::ControlPlane) => "Kubernetes version of the control plane",
        What::Kubernetes(Role::Workers) => "Kubernetes version of the workers",
        What::GitopsBase => "gitops-base ref",
        What::Template => "k0rdent template",
    };
    let how = if o.object.is_empty() {
        format!("regex locator {}", o.field)
    } else if o.field.contains("(marker)") {
        "a `$fleetwave` marker comment".to_string()
    } else if o.field.starts_with("spec.postBuild.substitute") {
        "a Flux substitute named in fleetwave.yaml".to_string()
    } else if o.field.contains(".patch") || o.field.contains("patchesStrategicMerge") {
        "an inline kustomize patch".to_string()
    } else if ["resources[", "components[", "bases["]
        .iter()
        .any(|p| o.field.starts_with(p))
    {
        "a kustomize remote's ?ref= (its repository is the plan's gitopsBase.url)".to_string()
    } else if o.what == What::GitopsBase {
        let kind = o.object.split('/').next().unwrap_or("");
        format!("the Flux {kind}'s ref (its url is the plan's gitopsBase.url)")
    } else {
        let kind = o.object.split('/').next().unwrap_or("");
        format!("the {kind} field")
    };
    format!("{what}, by {how}")
}

fn fields_section(t: &mut String, fleet: &Fleet, c: &Cluster) -> std::fmt::Result {
    writeln!(t, "\nFields fleetwave manages:")?;
    let located = fleet::locate(fleet, &[c]);
    for &i in &c.files {
        let f = &fleet.files[i];
        let here: Vec<&Occurrence> = located.occurrences.iter().filter(|o| o.file == i).collect();
        if here.is_empty() {
            continue;
        }
        writeln!(t, "  {}", f.rel.display())?;
        for o in here {
            let field = if o.object.is_empty() {
                o.field.clone()
            } else {
                format!("{} {}", o.object, o.field)
            };
            writeln!(t, "    {}:{}  {field} = {}", o.line, o.column, o.value)?;
            writeln!(t, "      {}", rule(o))?;
        }
    }
    if located.occurrences.is_empty() {
        writeln!(
            t,
            "  (none: no file of this cluster pins a value fleetwave knows)"
        )?;
    }
    let quiet = c
        .files
        .iter()
        .filter(|&&i| !located.occurrences.iter().any(|o| o.file == i))
        .count();
    if quiet > 0 {
        writeln!(
            t,
            "  ({quiet} other file(s) read, holding nothing fleetwave manages)"
        )?;
    }
    if !located.skips.is_empty() {
        writeln!(t, "\nSeen and left as is:")?;
        for s in &located.skips {
            writeln!(
                t,
                "  {}:{}  {} {:?} — {}",
                s.file.display(),
                s.line,
                s.field,
                s.value,
                s.reason
            )?;
        }
    }
    Ok(())
}

fn plan_section(t: &mut String, lp: &LoadedPlan, p: &Planned, name: &str) -> std::fmt::Result {
    writeln!(
        t,
        "\nPlan {} ({}): {}",
        lp.shown.display(),
        p.plan.name,
        super::plan::what_text(p)
    )?;
    let Some((i, w)) = p
        .waves
        .iter()
        .enumerate()
        .find(|(_, w)| w.clusters.iter().any(|c| c == name))
    else {
        let why = p
            .findings
            .iter()
            .find(|f| f.cluster.as_deref() == Some(name) && f.message.contains("no wave"))
            .map_or("no wave selects this cluster", |f| f.message.as_str());
        return writeln!(t, "  in no wave: {why}");
    };
    writeln!(
        t,
        "  wave {} ({} of {}), with {}",
        w.name,
        i + 1,
        p.waves.len(),
        w.clusters.join(", ")
    )?;
    for s in &w.steps {
        writeln!(t, "  step {} {}: {}", s.index, s.id, s.title)?;
        let mine: Vec<_> = s.changes.iter().filter(|c| c.cluster == name).collect();
        if mine.is_empty() {
            writeln!(t, "    (no change in this cluster)")?;
        }
        for c in mine {
            let field = if c.object.is_empty() {
                c.field.clone()
            } else {
                format!("{} {}", c.object, c.field)
            };
            writeln!(
                t,
                "    {}:{}  {field}  {} → {}",
                c.file.display(),
                c.line,
                c.from,
                c.to
            )?;
        }
    }
    for f in p
        .findings
        .iter()
        .filter(|f| f.cluster.as_deref() == Some(name))
    {
        let sev = match f.severity {
            Severity::Error => "refused",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        writeln!(t, "  {sev}  {}", finding_line(f))?;
    }
    Ok(())
}
