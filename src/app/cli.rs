//! The command line: argument parsing and printing. Everything it shows comes from the core.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::app::args::{
    Cli, Color, Command, ForgeArgs, ForgeChoice, HookFormat, Output, RemoteArgs, WorldArgs,
};
use crate::core::diag::{Diags, Severity};
use crate::core::planner::{self, Planned};
use crate::core::steps;

/// Take credentials out of `--remote` before anything sees the URL: the cache's Git config,
/// the state, the cache directory's name and every message get the URL without them; the
/// secret becomes the token passed to Git through its credential callback.
fn scrub_remote(r: &mut RemoteArgs) {
    let (clean, creds) = crate::adapters::git::strip_userinfo(&r.remote);
    if let Some((user, secret)) = creds {
        r.remote = clean;
        if let Some(s) = secret.filter(|s| !s.is_empty()) {
            r.token.get_or_insert(s);
            r.token_user = Some(user);
        }
    }
}

pub fn run(mut cli: Cli) -> ExitCode {
    match &mut cli.command {
        Command::Reconcile { remote, .. }
        | Command::Pause { remote }
        | Command::Resume { remote }
        | Command::Rollback { remote, .. }
        | Command::Serve { remote, .. }
        | Command::Status { remote, .. }
        | Command::History { remote } => scrub_remote(remote),
        _ => {}
    }
    let stdout = &mut std::io::stdout().lock();
    match cli.command {
        c @ Command::Plan { .. } => plan_command(stdout, c),
        Command::Apply {
            repo,
            plan,
            wave,
            step,
            allow_empty,
        } => apply_command(stdout, &repo, &plan, &wave, step, allow_empty),
        Command::Reconcile {
            remote,
            world,
            once,
            interval,
            dry_run,
            forge,
            github_output,
        } => {
            let choice = match forge_choice(&forge, &remote) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let run = crate::app::ops::RunOpts {
                once,
                interval,
                dry_run,
                github_output,
            };
            crate::app::ops::reconcile(&remote, &world, &choice, &run, stdout)
        }
        Command::Status {
            remote,
            clusters,
            kube_context,
            cluster_context,
            sim_delay,
            output,
            github_output,
            watch,
            max_refreshes,
            now,
        } => {
            let opts = crate::app::ops::StatusOpts {
                clusters,
                sim_delay: *sim_delay,
                kube_context,
                cluster_context,
                json: output == Output::Json,
                gh_output: github_output,
                now,
                watch: watch.map(|w| *w),
                max_refreshes,
            };
            crate::app::ops::status(&remote, &opts, stdout)
        }
        Command::Serve {
            remote,
            world,
            forge,
            listen,
            interval,
            webhook_secret,
        } => {
            let choice = match forge_choice(&forge, &remote) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let cfg = crate::app::serve::ServeConfig {
                listen,
                interval: std::time::Duration::from_secs(interval),
                webhook_secret,
                limits: Default::default(),
            };
            crate::app::ops::serve(remote, world, choice, cfg)
        }
        Command::Pause { remote } => crate::app::ops::pause(&remote, true, stdout),
        Command::Resume { remote } => crate::app::ops::pause(&remote, false, stdout),
        Command::Rollback {
            remote,
            wave,
            allow_downgrade,
            merge,
            dry_run,
            now,
        } => {
            crate::app::ops::rollback(&remote, &wave, allow_downgrade, merge, dry_run, now, stdout)
        }
        Command::History { remote } => crate::app::ops::history(&remote, stdout),
        Command::Demo {
            plan,
            fail,
            scale,
            keep,
            plain,
        } => crate::app::ops::demo(&plan, &fail, scale, keep, plain, stdout),
        Command::Completions { shell } => crate::app::completions::print(shell, stdout),
    }
}

/// The forge `--forge` picks, or exit 2 saying why it cannot be used.
fn forge_choice(forge: &ForgeArgs, remote: &RemoteArgs) -> Result<ForgeChoice, ExitCode> {
    forge.choice(remote).map_err(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

/// `plan`: print what the plan would change; exit 2 on refusals.
fn plan_command(stdout: &mut dyn Write, c: Command) -> ExitCode {
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
        unreachable!("run passes plan commands only")
    };
    let p = match crate::adapters::disk::prepare(&repo, &plan) {
        Ok(p) => p,
        Err(d) => return fail(&d),
    };
    let colored = match color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let now = now.unwrap_or_else(Utc::now);
    let res = match output {
        Output::Json => print_json(stdout, &p, now),
        Output::Text => print_text(stdout, &p, diff, colored, now),
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if github_output {
        if let Err(e) = crate::app::actions::write_plan(&p) {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    }
    if let Some(n) = comment_pr {
        let mut text = Vec::new();
        let _ = print_text(&mut text, &p, true, false, now);
        let body = format!(
            "### fleetwave plan preview: `{}`\n\n<details open><summary>waves, steps and diffs</summary>\n\n```text\n{}```\n</details>\n",
            p.plan.name,
            String::from_utf8_lossy(&text)
        );
        if let Err(e) = crate::app::ops::comment_on_pr(
            github_repo.as_deref(),
            &github_api,
            github_token.as_deref(),
            n,
            &body,
        ) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    if p.refusals().next().is_some() {
        for f in p.refusals() {
            eprintln!("error: {}", finding_line(f));
        }
        eprintln!("error: the plan has refusals; fix them before applying");
        return ExitCode::from(2);
    }
    if let Some(code) = matches_nothing(&p, allow_empty) {
        return code;
    }
    ExitCode::SUCCESS
}

/// `apply`: write one wave's edits (or one step's) into the working tree, all or nothing.
fn apply_command(
    stdout: &mut dyn Write,
    repo: &Path,
    plan: &Path,
    wave: &str,
    step: Option<usize>,
    allow_empty: bool,
) -> ExitCode {
    // Held from reading to writing: a second apply reads what this one wrote.
    let _lock = match crate::adapters::disk::lock_tree(repo) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {}: {e}\nnothing was written", repo.display());
            return ExitCode::from(2);
        }
    };
    let p = match crate::adapters::disk::prepare(repo, plan) {
        Ok(p) => p,
        Err(d) => return fail(&d),
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
    let edits = match planner::edits(&p, wave, step) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}\nnothing was written");
            return ExitCode::from(2);
        }
    };
    let old = |rel: &Path| {
        p.fleet
            .files
            .iter()
            .find(|f| f.rel == rel)
            .map(|f| f.text.clone())
    };
    if let Err((rel, e)) = crate::adapters::disk::write_all(repo, &edits, &old) {
        eprintln!(
            "error: {}: cannot write: {e}\nnothing was written",
            crate::core::diag::escape(&rel.display().to_string())
        );
        return ExitCode::from(2);
    }
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
    let _ = writeln!(
        stdout,
        "wave {wave}: wrote {changes} change(s) in {} file(s); nothing committed",
        edits.len()
    );
    ExitCode::SUCCESS
}

/// A plan that matches nothing is an error (exit 2), or with `--allow-empty` a hold (1).
fn matches_nothing(p: &Planned, allow_empty: bool) -> Option<ExitCode> {
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

fn fail(d: &Diags) -> ExitCode {
    eprintln!("{d}");
    ExitCode::from(2)
}

fn finding_line(f: &crate::core::diag::Finding) -> String {
    let mut s = String::new();
    if let (Some(file), Some(line)) = (&f.file, f.line) {
        s.push_str(&format!(
            "{}:{line}:{}: ",
            file.display(),
            f.column.unwrap_or(1)
        ));
    }
    if let Some(c) = &f.cluster {
        s.push_str(&format!("cluster {c}: "));
    }
    s.push_str(&f.message);
    // Cluster names, paths and values come from the repository or a cluster.
    crate::core::diag::escape(&s).into_owned()
}

fn earliest_finish(p: &Planned, now: DateTime<Utc>) -> (DateTime<Utc>, Duration) {
    let total: Duration = p.plan.waves.iter().map(|w| w.soak).sum();
    (
        now + chrono::Duration::from_std(total).unwrap_or_default(),
        total,
    )
}

fn what_text(p: &Planned) -> String {
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

struct Paint(bool);
impl Paint {
    fn code(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

fn print_text(
    out: &mut dyn Write,
    p: &Planned,
    diff: bool,
    colored: bool,
    now: DateTime<Utc>,
) -> std::io::Result<()> {
    let paint = Paint(colored);
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
    for (i, w) in p.waves.iter().enumerate() {
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
        for s in &w.steps {
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
            if diff {
                print_step_diff(out, p, w, s.index, &paint)?;
            }
        }
    }
    if !p.skips.is_empty() {
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
    }
    if !p.findings.is_empty() {
        writeln!(out, "\n{}", paint.code("1", "Findings"))?;
        for f in &p.findings {
            let sev = match f.severity {
                Severity::Error => paint.code("31", "refused"),
                Severity::Warning => paint.code("33", "warning"),
                Severity::Info => "info".to_string(),
            };
            writeln!(out, "  {sev}  {}", finding_line(f))?;
        }
    }
    let (at, total) = earliest_finish(p, now);
    writeln!(
        out,
        "\nEarliest finish: {} ({} of soak from {}, assuming instant convergence and approvals)",
        at.format("%Y-%m-%d %H:%M UTC"),
        humantime::format_duration(total),
        now.format("%Y-%m-%d %H:%M UTC")
    )?;
    Ok(())
}

/// The diff of one step: files after steps 1..n-1 against files after steps 1..n.
fn print_step_diff(
    out: &mut dyn Write,
    p: &Planned,
    w: &steps::WavePlan,
    n: usize,
    paint: &Paint,
) -> std::io::Result<()> {
    let after = |k: usize| -> BTreeMap<usize, String> {
        let chosen: Vec<&steps::Step> = w.steps.iter().take(k).collect();
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
        for line in text.lines() {
            // The file's own lines: no control character reaches the terminal.
            let line = &*crate::core::diag::escape(line);
            let painted = if line.starts_with("+++") || line.starts_with("---") {
                paint.code("1", line)
            } else if line.starts_with('+') {
                paint.code("32", line)
            } else if line.starts_with('-') {
                paint.code("31", line)
            } else if line.starts_with("@@") {
                paint.code("36", line)
            } else {
                line.to_string()
            };
            writeln!(out, "    {painted}")?;
        }
    }
    Ok(())
}

fn print_json(out: &mut dyn Write, p: &Planned, now: DateTime<Utc>) -> std::io::Result<()> {
    let (at, total) = earliest_finish(p, now);
    let waves: Vec<serde_json::Value> = p
        .waves
        .iter()
        .zip(&p.plan.waves)
        .map(|(w, spec)| {
            serde_json::json!({
                "name": w.name,
                "automated": spec.automated,
                "soak": humantime::format_duration(spec.soak).to_string(),
                "maxFailures": spec.max_failures,
                "clusters": w.clusters,
                "steps": w.steps,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "plan": p.plan.name,
        "paused": p.plan.paused,
        "targetVersion": p.plan.target.as_ref().map(|t| t.canonical()),
        "hops": p.plan.hops.iter().map(|h| h.canonical()).collect::<Vec<_>>(),
        "gitopsBase": p.plan.gitops_base,
        "templates": p.plan.templates,
        "waves": waves,
        "skipped": p.skips,
        "findings": p.findings,
        "soakTotal": humantime::format_duration(total).to_string(),
        "earliestFinish": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
