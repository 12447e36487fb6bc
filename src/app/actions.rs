//! GitHub Actions integration: step outputs (`$GITHUB_OUTPUT`) and the job summary
//! (`$GITHUB_STEP_SUMMARY`) written by `plan`, `reconcile` and `status` with `--github-output`.

use std::io::Write;

use anyhow::Context;

use crate::app::Flat;
use crate::app::reconcile::Report;
use crate::core::planner::Planned;
use crate::core::state::StepStatus;

fn append(var: &str, text: &str) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os(var) else {
        anyhow::bail!("--github-output needs ${var} (set by GitHub Actions)");
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .flat()
        .with_context(|| format!("cannot write ${var}"))?;
    f.write_all(text.as_bytes())
        .flat()
        .with_context(|| format!("cannot write ${var}"))
}

/// `name=value` lines; values are single-line (JSON is written compact).
fn outputs(pairs: &[(&str, String)]) -> anyhow::Result<()> {
    let mut text = String::new();
    for (k, v) in pairs {
        text.push_str(&format!("{k}={}\n", v.replace('\n', " ")));
    }
    append("GITHUB_OUTPUT", &text)
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn write_plan(p: &Planned) -> anyhow::Result<()> {
    let waves: Vec<serde_json::Value> = p
        .waves
        .iter()
        .map(|w| serde_json::json!({"name": w.name, "clusters": w.clusters, "steps": w.steps.len(), "changes": w.steps.iter().map(|s| s.changes.len()).sum::<usize>()}))
        .collect();
    let status = if p.refusals().next().is_some() {
        "refused"
    } else {
        "planned"
    };
    outputs(&[
        ("plan-status", status.into()),
        ("waves-json", serde_json::Value::from(waves).to_string()),
        ("merged", "0".into()),
    ])?;
    let mut md = format!(
        "### fleetwave plan `{}`\n\n| wave | clusters | steps | changes |\n|---|---|---|---|\n",
        p.plan.name
    );
    for w in &p.waves {
        let changes: usize = w.steps.iter().map(|s| s.changes.len()).sum();
        md.push_str(&format!(
            "| {} | {} | {} | {changes} |\n",
            cell(&w.name),
            cell(&w.clusters.join(", ")),
            w.steps.len()
        ));
    }
    let refusals: Vec<String> = p
        .refusals()
        .map(|f| format!("- {}", cell(&f.message)))
        .collect();
    if !refusals.is_empty() {
        md.push_str(&format!("\n**Refused:**\n{}\n", refusals.join("\n")));
    }
    append("GITHUB_STEP_SUMMARY", &format!("{md}\n"))
}

pub fn write_reconcile(r: &Report) -> anyhow::Result<()> {
    let st = &r.state;
    let waves: Vec<serde_json::Value> = st
        .waves
        .iter()
        .map(|w| {
            serde_json::json!({
                "name": w.name,
                "status": format!("{:?}", w.status),
                "clusters": w.clusters,
                "failed": w.failed.keys().collect::<Vec<_>>(),
                "merged": w.steps.iter().filter(|s| s.merged_commit.is_some()).count(),
                "steps": w.steps.len(),
            })
        })
        .collect();
    let merged: usize = st
        .waves
        .iter()
        .flat_map(|w| &w.steps)
        .filter(|s| s.merged_commit.is_some())
        .count();
    outputs(&[
        ("plan-status", format!("{:?}", st.status)),
        ("waves-json", serde_json::Value::from(waves).to_string()),
        ("merged", merged.to_string()),
    ])?;
    let mut md = format!(
        "### fleetwave `{}` — {:?}\n\n| wave | status | clusters | steps merged |\n|---|---|---|---|\n",
        st.plan, st.status
    );
    for w in &st.waves {
        let clusters: Vec<String> = w
            .clusters
            .iter()
            .map(|c| {
                if w.failed.contains_key(c) {
                    format!("✗ {c}")
                } else {
                    c.clone()
                }
            })
            .collect();
        let m = w.steps.iter().filter(|s| s.merged_commit.is_some()).count();
        let n = w
            .steps
            .iter()
            .filter(|s| s.status != StepStatus::Skipped)
            .count();
        md.push_str(&format!(
            "| {} | {:?} | {} | {m}/{n} |\n",
            cell(&w.name),
            w.status,
            cell(&clusters.join(", "))
        ));
    }
    if let Some(reason) = &st.reason {
        md.push_str(&format!("\n{}\n", cell(reason)));
    }
    append("GITHUB_STEP_SUMMARY", &format!("{md}\n"))
}
