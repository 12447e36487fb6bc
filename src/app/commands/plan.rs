//! `fleetwave plan`: what a plan would change, wave by wave and step by step, as text or
//! JSON (with `--diff`, each step's unified diff); writes nothing. Exit 2 on refusals.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::app::args::{Color, Command, Output};
use crate::app::commands::{finding_line, survey};
use crate::core::diag::Severity;
use crate::core::planner::Planned;
use crate::core::steps::{self, Step, WavePlan};

/// The `plan` command's arguments.
pub struct PlanArgs {
    pub repo: PathBuf,
    pub plan: PathBuf,
    pub diff: bool,
    pub allow_empty: bool,
    pub output: Output,
    pub color: Color,
    pub now: Option<DateTime<Utc>>,
    pub github_output: bool,
    pub comment_pr: Option<u64>,
    pub github_repo: Option<String>,
    pub github_api: String,
    pub github_token: Option<String>,
}

impl PlanArgs {
    pub fn from_command(c: Command) -> Option<PlanArgs> {
        let Command::Plan {
            repo,
            plan,
            diff,
            allow_empty,
            output,
            color,
            now,
            github_output,
            comment_pr,
            github_repo,
            github_api,
            github_token,
        } = c
        else {
            return None;
        };
        Some(PlanArgs {
            repo,
            plan,
            diff,
            allow_empty,
            output,
            color,
            now,
            github_output,
            comment_pr,
            github_repo,
            github_api,
            github_token,
        })
    }
}

/// Plan from a checkout as `plan` and `apply` do: the repository must be a directory that
/// holds clusters, the plan a readable file; refusals are the caller's to judge.
pub fn prepare(repo: &Path, plan: &Path) -> Result<Planned, ExitCode> {
    if let Err(e) = survey::check_repo(repo).and_then(|_| survey::check_plan_exists(plan)) {
        return Err(super::fail(&e));
    }
    let p = crate::adapters::disk::prepare(repo, plan).map_err(|d| {
        eprintln!("{d}");
        ExitCode::from(2)
    })?;
    if p.fleet.clusters.is_empty() {
        return Err(super::fail(&survey::not_a_fleet(repo)));
    }
    Ok(p)
}

/// `plan`: print what the plan would change; exit 2 on refusals.
pub fn run(stdout: &mut dyn Write, a: PlanArgs) -> ExitCode {
    let p = match prepare(&a.repo, &a.plan) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let colored = match a.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let now = a.now.unwrap_or_else(Utc::now);
    let res = match a.output {
        Output::Json => print_json(stdout, &p, a.diff, now),
        Output::Text => print_text(stdout, &p, a.diff, colored, now),
    };
    // Out before anything said on stderr below (the caller may buffer stdout).
    let res = res.and_then(|()| stdout.flush());
    if let Err(e) = res {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if a.output == Output::Text {
        print_conflicts(stdout, &a, &p);
    }
    if let Err(code) = publish(&a, &p, now) {
        return code;
    }
    if p.refusals().next().is_some() {
        for f in p.refusals() {
            eprintln!("error: {}", finding_line(f));
        }
        eprintln!("error: the plan has refusals; fix them before applying");
        return ExitCode::from(2);
    }
    let code = matches_nothing(&p, a.allow_empty).unwrap_or(ExitCode::SUCCESS);
    // The process ends next: freeing every file's text and located value one by one (a tenth
    // of a second at 10,000 clusters) would only delay the exit.
    std::mem::forget(p);
    code
}

/// The other plans under `plans/` this plan clashes with (the same field of a cluster, or a
/// cluster's Kubernetes version): when both run, the one committed later waits.
fn print_conflicts(out: &mut dyn Write, a: &PlanArgs, p: &Planned) {
    use crate::core::conflict::{PlanEdits, clash, describe};
    let edits = |p: &Planned| PlanEdits {
        name: p.plan.name.clone(),
        created: 0,
        after: p.plan.after.clone(),
        complete: false,
        started: false,
        changes: crate::app::reconcile::cache::PlanView::of(p)
            .waves
            .into_iter()
            .flat_map(|w| {
                w.steps
                    .into_iter()
                    .flat_map(|s| std::sync::Arc::unwrap_or_clone(s.changes))
            })
            .collect(),
    };
    let this = edits(p);
    let own = std::fs::canonicalize(&a.plan).ok();
    let mut lines = Vec::new();
    for other in survey::plans_in(&a.repo) {
        if std::fs::canonicalize(&other).ok() == own {
            continue;
        }
        let shown = crate::adapters::disk::shown(&a.repo, &other);
        let Ok(q) = crate::adapters::disk::prepare(&a.repo, &other) else {
            lines.push(format!(
                "  {}: cannot be planned; run `fleetwave plan --plan {}` to see why",
                shown.display(),
                shown.display()
            ));
            continue;
        };
        if q.plan.name == p.plan.name {
            continue;
        }
        let c = clash(&this, &edits(&q));
        if c.is_empty() {
            continue;
        }
        let parts: Vec<String> = c.iter().map(describe).collect();
        let order = if p.plan.after.contains(&q.plan.name) {
            " (this plan runs after it: spec.after)".to_string()
        } else if q.plan.after.contains(&p.plan.name) {
            " (it runs after this plan: spec.after)".to_string()
        } else {
            String::new()
        };
        lines.push(format!(
            "  {} ({}){order}: {}",
            q.plan.name,
            shown.display(),
            parts.join("; ")
        ));
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nConflicts with other plans in the repository:");
    for l in lines {
        let _ = writeln!(out, "{}", crate::core::diag::escape(&l));
    }
    let _ = writeln!(
        out,
        "  Both cannot run at once: the plan whose file was committed later waits until the other completes (spec.after orders them explicitly)."
    );
}

/// The GitHub side of `plan`: Actions outputs and the preview comment on a pull request.
fn publish(a: &PlanArgs, p: &Planned, now: DateTime<Utc>) -> Result<(), ExitCode> {
    if a.github_output {
        if let Err(e) = crate::app::actions::write_plan(p) {
            eprintln!("error: {e:#}");
            return Err(ExitCode::from(2));
        }
    }
    if let Some(n) = a.comment_pr {
        let mut text = Vec::new();
        let _ = print_text(&mut text, p, true, false, now);
        let body = format!(
            "### fleetwave plan preview: `{}`\n\n<details open><summary>waves, steps and diffs</summary>\n\n```text\n{}```\n</details>\n",
            p.plan.name,
            String::from_utf8_lossy(&text)
        );
        if let Err(e) = crate::app::ops::comment_on_pr(
            a.github_repo.as_deref(),
            &a.github_api,
            a.github_token.as_deref(),
            n,
            &body,
        ) {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
    }
    Ok(())
}

/// A plan that matches nothing is an error (exit 2), or with `--allow-empty` a hold (1).
pub fn matches_nothing(p: &Planned, allow_empty: bool) -> Option<ExitCode> {
    if p.unmatched.is_empty() {
        return None;
    }
    for d in &p.unmatched {
        eprintln!("error: {d}");
    }
    eprintln!(
        "error: the plan matches nothing it could change; nothing was written (pass --allow-empty to exit 1 instead of 2)"
    );
    Some(ExitCode::from(if allow_empty { 1 } else { 2 }))
}

fn earliest_finish(p: &Planned, now: DateTime<Utc>) -> (DateTime<Utc>, Duration) {
    let total: Duration = p.plan.waves.iter().map(|w| w.soak).sum();
    (
        now + chrono::Duration::from_std(total).unwrap_or_default(),
        total,
    )
}

/// `Kubernetes v1.34.2 (via v1.33.5), gitops-base 2026.02, template a → b`.
pub fn what_text(p: &Planned) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &p.plan.target {
        let via: Vec<String> = p.plan.hops[..p.plan.hops.len() - 1]
            .iter()
            .map(|h| h.to_string())
            .collect();
        if via.is_empty() {
            parts.push(format!("Kubernetes {t}"));
        } else {
            parts.push(format!("Kubernetes {t} (via {})", via.join(", ")));
        }
    }
    if let Some(g) = &p.plan.gitops_base {
        parts.push(format!("gitops-base {}", g.tag));
    }
    for (a, b) in &p.plan.templates {
        parts.push(format!("template {a} → {b}"));
    }
    parts.join(", ")
}

/// ANSI colours, or none.
pub struct Paint(pub bool);

impl Paint {
    pub fn code(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

pub fn print_text(
    out: &mut dyn Write,
    p: &Planned,
    diff: bool,
    colored: bool,
    now: DateTime<Utc>,
) -> std::io::Result<()> {
    let paint = Paint(colored);
    print_header(out, p, &paint)?;
    for (i, w) in p.waves.iter().enumerate() {
        print_wave(out, p, i, w, diff, &paint)?;
    }
    print_skips(out, p, &paint)?;
    print_findings(out, p, &paint)?;
    let (at, total) = earliest_finish(p, now);
    writeln!(
        out,
        "\nEarliest finish: {} ({} of soak from {}, assuming instant convergence and approvals)",
        at.format("%Y-%m-%d %H:%M UTC"),
        humantime::format_duration(total),
        now.format("%Y-%m-%d %H:%M UTC")
    )?;
    print_eta(out, p, now)
}

/// With batches or freezes, the ETA per wave: batches, batchDelay, windows and freezes
/// counted (without them, the earliest finish above is the ETA).
pub(crate) fn print_eta(
    out: &mut dyn Write,
    p: &Planned,
    now: DateTime<Utc>,
) -> std::io::Result<()> {
    let controls = !p.plan.freezes.is_empty()
        || !p.plan.repo_freezes.is_empty()
        || p.waves.iter().any(|w| !w.batches.is_empty())
        || p.plan.waves.iter().any(|w| !w.freezes.is_empty())
        || !p.plan.maintenance_windows.is_empty();
    if !controls {
        return Ok(());
    }
    let waves: Vec<crate::core::calendar::EtaWave> = p
        .waves
        .iter()
        .zip(&p.plan.waves)
        .map(|(w, spec)| crate::core::calendar::EtaWave {
            wave: spec,
            batches: w.batches.len().max(1),
            steps: w.steps.iter().filter(|s| !s.changes.is_empty()).count(),
            soaking_since: None,
        })
        .collect();
    let a = crate::core::calendar::EtaAssumption {
        convergence: chrono::Duration::zero(),
    };
    let etas = crate::core::calendar::eta(&p.plan, &waves, now, a);
    writeln!(
        out,
        "ETA from {} (assuming each step converges at once and approvals are instant; soak, batchDelay, windows and freezes counted):",
        now.format("%Y-%m-%d %H:%M UTC")
    )?;
    for (w, t) in p.waves.iter().zip(&etas) {
        writeln!(out, "  wave {}: {}", w.name, t.format("%Y-%m-%d %H:%M UTC"))?;
    }
    if let Some(last) = etas.last() {
        writeln!(out, "  plan: {}", last.format("%Y-%m-%d %H:%M UTC"))?;
    }
    Ok(())
}

fn print_header(out: &mut dyn Write, p: &Planned, paint: &Paint) -> std::io::Result<()> {
    let clusters: usize = p.waves.iter().map(|w| w.clusters.len()).sum();
    writeln!(
        out,
        "{} {}: {} — {} waves, {} clusters",
        paint.code("1", "Plan"),
        p.plan.name,
        what_text(p),
        p.waves.len(),
        clusters
    )?;
    if p.plan.paused {
        writeln!(
            out,
            "  (the plan is paused: the reconciler will not act on it)"
        )?;
    }
    Ok(())
}

fn print_wave(
    out: &mut dyn Write,
    p: &Planned,
    i: usize,
    w: &WavePlan,
    diff: bool,
    paint: &Paint,
) -> std::io::Result<()> {
    let spec = &p.plan.waves[i];
    let mode = if spec.automated {
        "automated"
    } else {
        "manual gate"
    };
    writeln!(out)?;
    writeln!(
        out,
        "{} {}/{} {} — {mode}, soak {}",
        paint.code("1", "Wave"),
        i + 1,
        p.waves.len(),
        paint.code("1", &w.name),
        humantime::format_duration(spec.soak)
    )?;
    writeln!(
        out,
        "  clusters: {}",
        if w.clusters.is_empty() {
            "(none)".to_string()
        } else {
            w.clusters.join(", ")
        }
    )?;
    print_wave_controls(out, p, i, w)?;
    for s in &w.steps {
        print_step(out, s, paint)?;
        if diff {
            for line in step_diff(p, w, s.index) {
                writeln!(out, "    {}", paint_diff_line(&line, paint))?;
            }
        }
    }
    Ok(())
}

/// Batches (each batch of each step is its own pull request) and freezes of a wave.
fn print_wave_controls(
    out: &mut dyn Write,
    p: &Planned,
    i: usize,
    w: &WavePlan,
) -> std::io::Result<()> {
    let spec = &p.plan.waves[i];
    for (b, members) in w.batches.iter().enumerate() {
        let canary = if b == 0 && spec.batching.canary.is_some() {
            " (canary)"
        } else {
            ""
        };
        writeln!(out, "  batch {b}{canary}: {}", members.join(", "))?;
    }
    if !w.batches.is_empty() && !spec.batch_delay.is_zero() {
        writeln!(
            out,
            "  batchDelay: {} between a batch converging and the next merging",
            humantime::format_duration(spec.batch_delay)
        )?;
    }
    let freezes = p
        .plan
        .freezes
        .iter()
        .chain(&p.plan.repo_freezes)
        .chain(&spec.freezes);
    for f in freezes {
        writeln!(out, "  freeze: {}", f.span())?;
    }
    Ok(())
}

fn print_step(out: &mut dyn Write, s: &Step, paint: &Paint) -> std::io::Result<()> {
    writeln!(out, "  step {} {}: {}", s.index, s.id, s.title)?;
    if s.changes.is_empty() {
        writeln!(
            out,
            "    (nothing to change: the values are already in place or absent in this wave)"
        )?;
    }
    for c in &s.changes {
        let field = if c.object.is_empty() {
            c.field.clone()
        } else {
            format!("{} {}", c.object, c.field)
        };
        writeln!(
            out,
            "    {}:{}  {}  {field}  {} → {}",
            c.file.display(),
            c.line,
            c.cluster,
            paint.code("31", &c.from),
            paint.code("32", &c.to)
        )?;
    }
    Ok(())
}

fn print_skips(out: &mut dyn Write, p: &Planned, paint: &Paint) -> std::io::Result<()> {
    if p.skips.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{}", paint.code("1", "Skipped (left as is)"))?;
    for s in &p.skips {
        writeln!(
            out,
            "  {}:{}  {}  {}  {:?} — {}",
            s.file.display(),
            s.line,
            s.cluster,
            s.field,
            s.value,
            s.reason
        )?;
    }
    Ok(())
}

fn print_findings(out: &mut dyn Write, p: &Planned, paint: &Paint) -> std::io::Result<()> {
    if p.findings.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{}", paint.code("1", "Findings"))?;
    for f in &p.findings {
        let sev = match f.severity {
            Severity::Error => paint.code("31", "refused"),
            Severity::Warning => paint.code("33", "warning"),
            Severity::Info => "info".to_string(),
        };
        writeln!(out, "  {sev}  {}", finding_line(f))?;
    }
    Ok(())
}

/// The unified diff of step `n` of wave `w` (files after steps 1..n-1 against files after
/// steps 1..n), line by line, control characters escaped.
pub fn step_diff(p: &Planned, w: &WavePlan, n: usize) -> Vec<String> {
    let after = |k: usize| -> BTreeMap<usize, String> {
        let chosen: Vec<&Step> = w.steps.iter().take(k).collect();
        steps::splices(&chosen)
            .into_iter()
            .filter_map(|(f, sp)| {
                let file = &p.fleet.files[f];
                crate::core::edit::apply(&file.text, &sp, file.is_yaml())
                    .ok()
                    .map(|t| (f, t))
            })
            .collect()
    };
    let (before, now) = (after(n - 1), after(n));
    let mut lines = Vec::new();
    for (f, new) in &now {
        let file = &p.fleet.files[*f];
        let old = before.get(f).map_or(file.text.as_str(), String::as_str);
        if old == new {
            continue;
        }
        let name = file.rel.display().to_string();
        let d = similar::TextDiff::from_lines(old, new.as_str());
        let text = d
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{name}"), &format!("b/{name}"))
            .to_string();
        // The file's own lines: no control character reaches the terminal.
        lines.extend(
            text.lines()
                .map(|l| crate::core::diag::escape(l).into_owned()),
        );
    }
    lines
}

fn paint_diff_line(line: &str, paint: &Paint) -> String {
    if line.starts_with("+++") || line.starts_with("---") {
        paint.code("1", line)
    } else if line.starts_with('+') {
        paint.code("32", line)
    } else if line.starts_with('-') {
        paint.code("31", line)
    } else if line.starts_with("@@") {
        paint.code("36", line)
    } else {
        line.to_string()
    }
}

/// `--output json`, streamed: the document is written as it is serialized, the long lists
/// (steps' changes, skips, findings) one item at a time, so no copy of the whole plan is held.
/// Objects keep the keys in sorted order, as a `serde_json::Value` writes them.
fn print_json(
    out: &mut dyn Write,
    p: &Planned,
    diff: bool,
    now: DateTime<Utc>,
) -> std::io::Result<()> {
    let (at, total) = earliest_finish(p, now);
    let v = |x: serde_json::Value| Json::Value(x);
    let mut doc: BTreeMap<&str, Json> = BTreeMap::new();
    doc.insert("plan", v(p.plan.name.clone().into()));
    doc.insert("paused", v(p.plan.paused.into()));
    doc.insert(
        "targetVersion",
        v(p.plan.target.as_ref().map(|t| t.canonical()).into()),
    );
    let hops: Vec<String> = p.plan.hops.iter().map(|h| h.canonical()).collect();
    doc.insert("hops", v(hops.into()));
    doc.insert("gitopsBase", Json::of(&p.plan.gitops_base));
    doc.insert("templates", Json::of(&p.plan.templates));
    doc.insert("waves", Json::Waves(p, diff));
    doc.insert("skipped", Json::Items(Items::Skips(&p.skips)));
    doc.insert("findings", Json::Items(Items::Findings(&p.findings)));
    let soak = humantime::format_duration(total).to_string();
    doc.insert("soakTotal", v(soak.into()));
    let finish = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    doc.insert("earliestFinish", v(finish.into()));
    let mut w = std::io::BufWriter::with_capacity(1 << 16, &mut *out);
    serde_json::to_writer_pretty(&mut w, &doc)?;
    writeln!(w)?;
    w.flush()
}

/// A part of the JSON document: a small value built at once, or a long list or a wave
/// written item by item.
enum Json<'a> {
    Value(serde_json::Value),
    Items(Items<'a>),
    Waves(&'a Planned, bool),
    Steps(&'a Planned, usize, bool),
    Wave(&'a Planned, usize, bool),
    Step(&'a Planned, usize, usize, bool),
}

/// A list whose items are each turned into a `serde_json::Value` (keys sorted) in turn.
enum Items<'a> {
    Skips(&'a [crate::core::locate::Skip]),
    Findings(&'a [crate::core::diag::Finding]),
    Changes(&'a [steps::Change]),
}

impl Json<'_> {
    fn of<T: serde::Serialize>(x: &T) -> Json<'static> {
        Json::Value(serde_json::to_value(x).unwrap_or_default())
    }
}

fn items_as_values<S: serde::Serializer, T: serde::Serialize>(
    s: S,
    items: &[T],
) -> Result<S::Ok, S::Error> {
    use serde::ser::{Error, SerializeSeq};
    let mut seq = s.serialize_seq(Some(items.len()))?;
    for x in items {
        seq.serialize_element(&serde_json::to_value(x).map_err(S::Error::custom)?)?;
    }
    seq.end()
}

impl serde::Serialize for Items<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Items::Skips(x) => items_as_values(s, x),
            Items::Findings(x) => items_as_values(s, x),
            Items::Changes(x) => items_as_values(s, x),
        }
    }
}

impl serde::Serialize for Json<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Json::Value(ref v) => v.serialize(s),
            Json::Items(ref i) => i.serialize(s),
            Json::Waves(p, diff) => {
                s.collect_seq((0..p.waves.len()).map(|i| Json::Wave(p, i, diff)))
            }
            Json::Steps(p, i, diff) => {
                s.collect_seq((0..p.waves[i].steps.len()).map(|k| Json::Step(p, i, k, diff)))
            }
            Json::Wave(p, i, diff) => wave_json(p, i, diff).serialize(s),
            Json::Step(p, i, k, diff) => step_json(p, i, k, diff).serialize(s),
        }
    }
}

/// One wave's object; its steps are written one by one.
fn wave_json(p: &Planned, i: usize, diff: bool) -> BTreeMap<&'static str, Json<'_>> {
    let (w, spec) = (&p.waves[i], &p.plan.waves[i]);
    let mut m: BTreeMap<&str, Json> = BTreeMap::new();
    m.insert("name", Json::Value(w.name.clone().into()));
    m.insert("automated", Json::Value(spec.automated.into()));
    let soak = humantime::format_duration(spec.soak).to_string();
    m.insert("soak", Json::Value(soak.into()));
    m.insert("maxFailures", Json::of(&spec.max_failures));
    m.insert("clusters", Json::of(&w.clusters));
    m.insert("steps", Json::Steps(p, i, diff));
    m
}

/// One step's object as `Step` serializes it (plus `diff` with `--diff`), its changes written
/// one by one.
fn step_json(p: &Planned, i: usize, k: usize, diff: bool) -> BTreeMap<String, Json<'_>> {
    let (w, s) = (&p.waves[i], &p.waves[i].steps[k]);
    let shell = Step {
        index: s.index,
        id: s.id.clone(),
        title: s.title.clone(),
        kubernetes: s.kubernetes.clone(),
        changes: Vec::new(),
    };
    let mut m: BTreeMap<String, Json> = match serde_json::to_value(&shell) {
        Ok(serde_json::Value::Object(o)) => {
            o.into_iter().map(|(k, v)| (k, Json::Value(v))).collect()
        }
        _ => BTreeMap::new(),
    };
    m.insert("changes".into(), Json::Items(Items::Changes(&s.changes)));
    if diff {
        let mut text = step_diff(p, w, s.index).join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        m.insert("diff".into(), Json::Value(text.into()));
    }
    m
}
