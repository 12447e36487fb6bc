//! `fleetwave apply`: write one wave's edits (or one step's) into the working tree, all or
//! nothing, under the tree's lock; nothing is committed.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::app::Flat;
use crate::app::commands::plan::{matches_nothing, prepare};
use crate::app::commands::{finding_line, survey};
use crate::core::planner::{self, Planned};

pub fn run(
    stdout: &mut dyn Write,
    repo: &Path,
    plan: &Path,
    wave: &str,
    step: Option<usize>,
    allow_empty: bool,
) -> ExitCode {
    if let Err(e) = survey::check_repo(repo) {
        return super::fail(&e);
    }
    // Held from reading to writing: a second apply reads what this one wrote.
    let _lock = match crate::adapters::disk::lock_tree(repo) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {}: {e}\nnothing was written", repo.display());
            return ExitCode::from(2);
        }
    };
    let p = match prepare(repo, plan) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Some(code) = matches_nothing(&p, allow_empty) {
        return code;
    }
    let refusals: Vec<_> = p.refusals().collect();
    if !refusals.is_empty() {
        for f in refusals {
            eprintln!("error: {}", finding_line(f));
        }
        eprintln!("error: the plan has refusals; nothing was written");
        return ExitCode::from(2);
    }
    match write(repo, &p, wave, step) {
        Ok(line) => {
            let _ = writeln!(stdout, "{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}\nnothing was written");
            ExitCode::from(2)
        }
    }
}

/// Write the wave's (or step's) edits; the line to print, or why nothing was written.
fn write(repo: &Path, p: &Planned, wave: &str, step: Option<usize>) -> anyhow::Result<String> {
    let edits = planner::edits(p, wave, step).flat()?;
    let old = |rel: &Path| {
        p.fleet
            .files
            .iter()
            .find(|f| f.rel == rel)
            .map(|f| f.text.clone())
    };
    crate::adapters::disk::write_all(repo, &edits, &old).map_err(|(rel, e)| {
        anyhow::anyhow!(
            "{}: cannot write: {e}",
            crate::core::diag::escape(&rel.display().to_string())
        )
    })?;
    let w = p
        .waves
        .iter()
        .find(|w| w.name == wave)
        .expect("edits checked the wave");
    let changes: usize = w
        .steps
        .iter()
        .filter(|s| step.is_none_or(|n| s.index == n))
        .map(|s| s.changes.len())
        .sum();
    Ok(format!(
        "wave {wave}: wrote {changes} change(s) in {} file(s); nothing committed",
        edits.len()
    ))
}
