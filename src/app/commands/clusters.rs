//! `fleetwave clusters`: every cluster the repository holds, as `plan` discovers it — its
//! kinds, files, labels, Kubernetes versions, gitops-base tags and templates — and the wave
//! each plan puts it in (or why none does).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use crate::app::args::Output;
use crate::app::commands::survey::{self, BaseSource, Holds, LoadedPlan, Survey};
use crate::core::diag::escape;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    repo: String,
    cluster_paths: Vec<String>,
    gitops_base: Option<BaseSource>,
    plans: Vec<PlanRef>,
    clusters: Vec<ClusterRow>,
}

#[derive(Serialize)]
struct PlanRef {
    file: String,
    name: String,
}

#[derive(Serialize)]
struct ClusterRow {
    name: String,
    #[serde(flatten)]
    holds: Holds,
    files: Vec<PathBuf>,
    labels: BTreeMap<String, String>,
    waves: Vec<Placement>,
}

/// Where one plan puts a cluster: a wave, or the reason no wave selects it.
#[derive(Serialize)]
struct Placement {
    plan: String,
    wave: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

pub fn run(out: &mut dyn Write, repo: &Path, plans: &[PathBuf], output: Output) -> ExitCode {
    match listing(repo, plans) {
        Ok(l) => {
            let res = match output {
                Output::Json => serde_json::to_writer_pretty(&mut *out, &l)
                    .map_err(std::io::Error::from)
                    .and_then(|_| writeln!(out)),
                Output::Text => print_text(out, &l),
            };
            match res {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => super::fail(&e.into()),
            }
        }
        Err(e) => super::fail(&e),
    }
}

/// Load the plans, discover the fleet, place each cluster.
fn listing(repo: &Path, named: &[PathBuf]) -> anyhow::Result<Listing> {
    survey::check_repo(repo)?;
    let files = survey::plan_files(repo, named)?;
    let plans: Vec<LoadedPlan> = files
        .iter()
        .map(|f| survey::load_plan(repo, f))
        .collect::<anyhow::Result<_>>()?;
    let s = survey::survey(repo, &plans)?;
    if s.fleet.clusters.is_empty() {
        return Err(survey::not_a_fleet(repo));
    }
    let mut placed = Vec::new();
    for p in &plans {
        placed.push((
            p.shown.display().to_string(),
            survey::waves_of(p, &s.fleet)?,
        ));
    }
    Ok(Listing {
        repo: repo.display().to_string(),
        cluster_paths: s.config.paths.clone(),
        gitops_base: s.base.clone(),
        plans: plans
            .iter()
            .map(|p| PlanRef {
                file: p.shown.display().to_string(),
                name: p.plan.name.clone(),
            })
            .collect(),
        clusters: rows(&s, &placed),
    })
}

type Placed = (String, BTreeMap<String, survey::Placed>);

fn rows(s: &Survey, placed: &[Placed]) -> Vec<ClusterRow> {
    s.fleet
        .clusters
        .values()
        .map(|c| ClusterRow {
            name: c.name.clone(),
            holds: survey::holds(&s.fleet, c),
            files: c
                .files
                .iter()
                .map(|&i| s.fleet.files[i].rel.clone())
                .collect(),
            labels: c.labels.clone(),
            waves: placed
                .iter()
                .map(|(plan, m)| match m.get(&c.name) {
                    Some(survey::Placed::Wave(w)) => Placement {
                        plan: plan.clone(),
                        wave: Some(w.clone()),
                        reason: None,
                    },
                    Some(survey::Placed::Unselected(why)) => Placement {
                        plan: plan.clone(),
                        wave: None,
                        reason: Some(why.clone()),
                    },
                    None => Placement {
                        plan: plan.clone(),
                        wave: None,
                        reason: None,
                    },
                })
                .collect(),
        })
        .collect()
}

fn print_text(out: &mut dyn Write, l: &Listing) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} clusters (cluster paths: {})",
        escape(&l.repo),
        l.clusters.len(),
        l.cluster_paths.join(", ")
    )?;
    match &l.gitops_base {
        Some(b) if b.from == "detected" => writeln!(
            out,
            "gitops-base: {} (detected: the repository most clusters pin a tag of)",
            b.url
        )?,
        Some(b) => writeln!(out, "gitops-base: {} (from {})", b.url, b.from)?,
        None => writeln!(out, "gitops-base: none found")?,
    }
    if l.plans.is_empty() {
        writeln!(
            out,
            "plans: none under plans/ (pass --plan FILE to place the clusters in waves)"
        )?;
    }
    for p in &l.plans {
        writeln!(out, "plan: {} ({})", p.file, p.name)?;
    }
    for c in &l.clusters {
        print_cluster(out, c)?;
    }
    print_summary(out, l)
}

fn print_cluster(out: &mut dyn Write, c: &ClusterRow) -> std::io::Result<()> {
    let list = |s: &std::collections::BTreeSet<String>| {
        if s.is_empty() {
            "(none found)".to_string()
        } else {
            s.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    let mut text = format!("\n{}\n", c.name);
    text.push_str(&format!("  kinds:       {}\n", list(&c.holds.kinds)));
    text.push_str(&format!("  kubernetes:  {}\n", list(&c.holds.kubernetes)));
    text.push_str(&format!("  gitops-base: {}\n", list(&c.holds.gitops_base)));
    if !c.holds.templates.is_empty() {
        text.push_str(&format!("  template:    {}\n", list(&c.holds.templates)));
    }
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    text.push_str(&format!(
        "  labels:      {}\n",
        if labels.is_empty() {
            "(none)".to_string()
        } else {
            labels.join(", ")
        }
    ));
    for p in &c.waves {
        match (&p.wave, &p.reason) {
            (Some(w), _) => text.push_str(&format!("  wave:        {w} ({})\n", p.plan)),
            (None, r) => text.push_str(&format!(
                "  wave:        none in {}: {}\n",
                p.plan,
                r.as_deref().unwrap_or("no wave selects this cluster")
            )),
        }
    }
    for (i, f) in c.files.iter().enumerate() {
        let head = if i == 0 { "files:" } else { "" };
        text.push_str(&format!("  {head:<12} {}\n", f.display()));
    }
    // Names, labels and values come from the repository.
    out.write_all(escape(&text).as_bytes())
}

fn print_summary(out: &mut dyn Write, l: &Listing) -> std::io::Result<()> {
    for p in &l.plans {
        let missing: Vec<&str> = l
            .clusters
            .iter()
            .filter(|c| c.waves.iter().any(|w| w.plan == p.file && w.wave.is_none()))
            .map(|c| c.name.as_str())
            .collect();
        let line = format!(
            "\n{}: {} of {} clusters in a wave{}",
            p.file,
            l.clusters.len() - missing.len(),
            l.clusters.len(),
            if missing.is_empty() {
                String::new()
            } else {
                format!("; in no wave: {}", missing.join(", "))
            }
        );
        writeln!(out, "{}", escape(&line))?;
    }
    Ok(())
}
