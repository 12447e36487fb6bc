//! `fleetwave demo`: the whole rollout on the shipped example fleet, with no GitHub and no
//! cluster: a temp fleet repo with a local bare remote, the `local` forge, the simulated Flux
//! and a scaled clock. Manual waves are merged by a simulated reviewer once their gate is green.

use crate::app::Flat;
use anyhow::Context;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use include_dir::{Dir, include_dir};

use crate::adapters::cluster::sim::{Fault, SimConfig, SimFlux};
use crate::adapters::forge::local::LocalForge;
use crate::adapters::git::{Auth, GitRepo, Sig};
use crate::adapters::notify::JsonlSink;
use crate::app::reconcile::{self, Outcome, Settings};
use crate::core::notify::{Event, Notifier};
use crate::core::planner::{self, Planned};
use crate::core::state::{GateState, PlanState, PlanStatus, StepStatus, WaveStatus};
use crate::core::tree::MemTree;

static FLEET: Dir = include_dir!("$CARGO_MANIFEST_DIR/fixtures/fleet");
static PLANS: Dir = include_dir!("$CARGO_MANIFEST_DIR/fixtures/plans");

pub struct DemoOptions {
    pub plan: String,
    pub fail: Vec<(String, Fault)>,
    /// Virtual seconds per real second.
    pub scale: f64,
    pub keep: Option<PathBuf>,
    pub progress: bool,
}

pub struct DemoResult {
    pub state: PlanState,
    pub alerts: Vec<Event>,
    pub telemetry: Vec<Event>,
    pub dir: PathBuf,
}

fn files_of(dir: &Dir, prefix: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for f in dir.files() {
        out.insert(prefix.join(f.path()), f.contents().to_vec());
    }
    for d in dir.dirs() {
        files_of(d, prefix, out);
    }
}

/// The example fleet with the chosen example plan at `plans/demo.yaml`.
pub fn example_files(plan: &str) -> anyhow::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut files = BTreeMap::new();
    files_of(&FLEET, Path::new(""), &mut files);
    let plan_file = PLANS.get_file(format!("{plan}.yaml")).ok_or_else(|| {
        let names: Vec<String> = PLANS
            .files()
            .map(|f| {
                f.path()
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string()
            })
            .collect();
        anyhow::anyhow!(
            "no example plan {plan:?}; choose one of {}",
            names.join(", ")
        )
    })?;
    files.insert(
        PathBuf::from("plans/demo.yaml"),
        plan_file.contents().to_vec(),
    );
    Ok(files)
}

/// Create a bare remote holding the example fleet and the chosen plan on `main`.
pub fn seed_remote(root: &Path, plan: &str, start: DateTime<Utc>) -> anyhow::Result<PathBuf> {
    seed_remote_files(root, &example_files(plan)?, start)
}

/// Create a bare remote `root/fleet.git` holding `files` in one commit on `main`.
pub fn seed_remote_files(
    root: &Path,
    files: &BTreeMap<PathBuf, Vec<u8>>,
    start: DateTime<Utc>,
) -> anyhow::Result<PathBuf> {
    let remote = root.join("fleet.git");
    let repo = git2::Repository::init_bare(&remote).flat()?;
    let mut builder = git2::build::TreeUpdateBuilder::new();
    for (p, bytes) in files {
        let oid = repo.blob(bytes).flat()?;
        builder.upsert(p.to_string_lossy().as_ref(), oid, git2::FileMode::Blob);
    }
    let empty = repo.treebuilder(None).and_then(|b| b.write()).flat()?;
    let empty = repo.find_tree(empty).flat()?;
    let tree = builder.create_updated(&repo, &empty).flat()?;
    let tree = repo.find_tree(tree).flat()?;
    let time = git2::Time::new(start.timestamp(), 0);
    let sig = git2::Signature::new("Platform Team", "platform@example.com", &time).flat()?;
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "Fleet repository",
        &tree,
        &[],
    )
    .flat()?;
    repo.set_head("refs/heads/main").flat()?;
    Ok(remote)
}

/// The plan file of the demo's fleet repository.
const PLAN_PATH: &str = "plans/demo.yaml";

/// The example fleet planned with the example plan, as `plan` sees it.
pub fn example_planned(plan: &str) -> anyhow::Result<Planned> {
    let files = example_files(plan)?;
    let text = String::from_utf8(files[Path::new(PLAN_PATH)].clone())?;
    planner::prepare_in(&MemTree::new(files), Path::new(PLAN_PATH), text)
        .map_err(|d| anyhow::anyhow!("{d}"))
}

/// Every `--fail` cluster must be one the plan rolls out to: a fault anywhere else would
/// never show, and the demo would succeed in silence.
pub fn check_faults(planned: &Planned, fail: &[(String, Fault)]) -> anyhow::Result<()> {
    let selected: Vec<&str> = planned
        .waves
        .iter()
        .flat_map(|w| w.clusters.iter().map(String::as_str))
        .collect();
    for (c, _) in fail {
        if selected.contains(&c.as_str()) {
            continue;
        }
        let why = if planned.fleet.clusters.contains_key(c) {
            format!(
                "plan {} puts cluster {c:?} in no wave, so its fault would never show",
                planned.plan.name
            )
        } else {
            format!("the example fleet has no cluster {c:?}")
        };
        anyhow::bail!(
            "--fail {c}: {why}\n  help: choose one of {}",
            selected.join(", ")
        );
    }
    Ok(())
}

/// Where the demo's repositories go: `--keep DIR` (new or empty), else a temp dir deleted
/// when the returned guard drops.
fn workdir(keep: Option<&Path>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    let Some(dir) = keep else {
        let tmp = tempfile::Builder::new()
            .prefix("fleetwave-demo-")
            .tempdir()
            .context("cannot create a temp directory")?;
        return Ok((tmp.path().to_path_buf(), Some(tmp)));
    };
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!(
            "--keep {}: the directory is not empty\n  help: name a new or empty directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok((dir.to_path_buf(), None))
}

/// What every tick of the demo works with.
struct Demo<'a> {
    opts: &'a DemoOptions,
    git: GitRepo,
    settings: Settings,
    sink: JsonlSink,
    events_path: PathBuf,
    remote: PathBuf,
    dir: PathBuf,
    faults: BTreeMap<String, Fault>,
}

/// Run the demo; prints progress to `out`.
pub async fn run(opts: &DemoOptions, out: &mut dyn Write) -> anyhow::Result<DemoResult> {
    let planned = example_planned(&opts.plan)?;
    check_faults(&planned, &opts.fail)?;
    // Held to the end: the temp dir goes when it drops.
    let (dir, _tmp) = workdir(opts.keep.as_deref())?;
    let start = Utc
        .with_ymd_and_hms(2026, 11, 23, 8, 0, 0)
        .single()
        .expect("valid date");
    let remote = seed_remote(&dir, &opts.plan, start)?;
    let git = GitRepo::open(
        &dir.join("cache.git"),
        &remote.to_string_lossy(),
        Auth::None,
    )
    .flat()?;
    let events_path = dir.join("events.jsonl");
    let d = Demo {
        opts,
        git,
        settings: Settings::new(Path::new(PLAN_PATH)),
        sink: JsonlSink::new(&events_path),
        events_path,
        remote,
        dir,
        faults: opts.fail.iter().cloned().collect(),
    };
    banner(out, &d, &planned, start);
    let (last, now, reviews) = d.rollout(out, start).await?;
    let st = reconcile::load_state(&d.git, &d.settings, &last.plan)
        .flat()?
        .0;
    let events = JsonlSink::read_events(&d.events_path).flat()?;
    let (alerts, telemetry): (Vec<Event>, Vec<Event>) =
        events.into_iter().partition(|e| e.alert.is_some());
    let alerts: Vec<Event> = alerts.into_iter().map(|a| d.with_hint(a)).collect();
    summary(out, &st, &alerts, &telemetry, reviews);
    let automatic = show_auto_rollbacks(out, &st);
    if st.status == PlanStatus::Halted && !automatic {
        d.offer_rollback(out, now);
    }
    Ok(DemoResult {
        state: st,
        alerts,
        telemetry,
        dir: d.dir,
    })
}

/// What the demo rolls out, and which clusters of the fleet it leaves out and why.
fn banner(out: &mut dyn Write, d: &Demo, planned: &Planned, start: DateTime<Utc>) {
    let selected: usize = planned.waves.iter().map(|w| w.clusters.len()).sum();
    writeln!(
        out,
        "fleetwave demo: plan {} on the example fleet ({selected} of its {} clusters in {} waves), local forge, simulated Flux",
        d.opts.plan,
        planned.fleet.clusters.len(),
        planned.waves.len()
    )
    .ok();
    let left_out = planned
        .fleet
        .clusters
        .keys()
        .filter(|c| !planned.waves.iter().any(|w| w.clusters.contains(c)));
    for c in left_out {
        let why = planned
            .findings
            .iter()
            .find(|f| f.cluster.as_ref() == Some(c))
            .map_or("no wave selects it", |f| f.message.as_str());
        writeln!(out, "  not selected: {c} ({why})").ok();
    }
    // With batches or freezes, the ETA `plan` prints, to compare with the summary's finish.
    crate::app::commands::plan::print_eta(out, planned, start).ok();
    writeln!(
        out,
        "  remote {}  ·  1 s ≈ {} of fleet time\n",
        d.remote.display(),
        humantime::format_duration(std::time::Duration::from_secs(d.opts.scale as u64))
    )
    .ok();
}

impl Demo<'_> {
    /// Tick until the rollout is done or halted: the last state, the time, manual merges.
    async fn rollout(
        &self,
        out: &mut dyn Write,
        start: DateTime<Utc>,
    ) -> anyhow::Result<(PlanState, DateTime<Utc>, usize)> {
        let real = Instant::now();
        // Virtual time moves in ticks: a few minutes while Flux works, straight to the next
        // due time while soaking; the real pause per tick follows the scale (a day ≈ a second).
        let mut now = start;
        let mut touched = BTreeMap::new();
        let mut live = self.opts.progress.then(Live::new);
        let mut reviews = 0;
        loop {
            let report = self.tick(now, &mut touched).await?;
            self.print_notes(out, &report.notes, now);
            let st = report.state.clone();
            if let Some(l) = live.as_mut() {
                l.update(&st, now);
            }
            if self.review(out, &st, now)? {
                reviews += 1;
            }
            let finished = match report.outcome {
                Outcome::Done => true,
                Outcome::Held(_) => st.status == PlanStatus::Halted,
                _ => false,
            };
            if finished {
                if let Some(l) = &live {
                    l.finish();
                }
                return Ok((st, now, reviews));
            }
            let advance = next_advance(&report, &st, now);
            now += advance;
            let pause = (advance.num_milliseconds() as f64 / 1000.0 / self.opts.scale).min(0.4);
            tokio::time::sleep(std::time::Duration::from_secs_f64(pause)).await;
            if real.elapsed().as_secs() > 55 {
                anyhow::bail!("the demo did not finish within 50 s");
            }
        }
    }

    /// One reconcile tick against the simulated Flux of the fleet's history so far.
    async fn tick(
        &self,
        now: DateTime<Utc>,
        touched: &mut BTreeMap<String, std::collections::BTreeSet<String>>,
    ) -> anyhow::Result<reconcile::Report> {
        let o = reconcile::observe_repo(&self.git, &self.settings).flat()?;
        let history = reconcile::base_history(&self.git, &o, 1000, touched).flat()?;
        let sim = SimFlux::new(
            history,
            SimConfig {
                delay: Duration::minutes(10),
                faults: self.faults.clone(),
                branch: "main".into(),
            },
        );
        let forge = LocalForge {
            git: &self.git,
            base: self.settings.base.clone(),
            author_email: self.settings.author_email.clone(),
            sig: self.settings.sig(now),
        };
        let io = reconcile::Io {
            git: &self.git,
            forge: &forge,
            clusters: &sim,
            notifier: &self.sink as &dyn Notifier,
            gates: None,
        };
        reconcile::tick(&io, &self.settings, o, now, false)
            .await
            .flat()
    }

    /// A tick's notes, each once (a halt can be noted twice in one tick).
    fn print_notes(&self, out: &mut dyn Write, notes: &[String], now: DateTime<Utc>) {
        if self.opts.progress {
            return;
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in notes.iter().filter(|n| seen.insert(n.as_str())) {
            writeln!(out, "  {}  {n}", now.format("%a %H:%M")).ok();
        }
    }

    /// The simulated reviewer merges a manual step once fleetwave's gate says it may.
    fn review(
        &self,
        out: &mut dyn Write,
        st: &PlanState,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let Some((branch, head)) = ready_for_review(st) else {
            return Ok(false);
        };
        let sig = Sig {
            name: "Reviewer".into(),
            email: "reviewer@example.com".into(),
            time: now,
        };
        let base = self
            .git
            .branch_head(&self.settings.base)
            .flat()?
            .unwrap_or_default();
        let merge = self
            .git
            .merge_commit(
                &base,
                &head,
                &format!("Merge {branch} (approved by reviewer)"),
                &sig,
            )
            .flat()?;
        if self
            .git
            .push(&self.settings.base, &merge, Some(&base))
            .is_err()
        {
            return Ok(false);
        }
        if !self.opts.progress {
            writeln!(
                out,
                "  {}  reviewer approved and merged {branch}",
                now.format("%a %H:%M")
            )
            .ok();
        }
        Ok(true)
    }

    /// The rollback command for the demo's own repositories.
    fn rollback_command(&self, wave: &str) -> String {
        format!(
            "fleetwave rollback --remote {} --cache {} --plan {PLAN_PATH} --wave {wave}",
            self.remote.display(),
            self.dir.join("cache.git").display()
        )
    }

    /// The alert as a real rollout would send it, its hint naming the remote.
    fn with_hint(&self, mut e: Event) -> Event {
        if let Some(a) = e.alert.as_mut() {
            // Only a manual hint becomes the demo's command; an automatic rollback says so.
            if a.rollback_hint
                .starts_with(crate::core::decide::ROLLBACK_COMMAND)
            {
                a.rollback_hint = self.rollback_command(&a.wave);
            }
        }
        e
    }

    /// After a halt: what a rollback would revert (a dry run), and the command that does it
    /// when the repositories outlive the demo (`--keep`).
    fn offer_rollback(&self, out: &mut dyn Write, now: DateTime<Utc>) {
        let opts = reconcile::RollbackOptions {
            waves: Vec::new(),
            allow_downgrade: false,
            merge: true,
            dry_run: true,
        };
        let lines = match reconcile::rollback(&self.git, &self.settings, &opts, now) {
            Ok(l) => l,
            Err(e) => vec![format!("rollback is not available: {e}")],
        };
        writeln!(out, "\nRollback of the failed wave (dry run):").ok();
        for l in &lines {
            writeln!(out, "  {l}").ok();
        }
        writeln!(out, "  (gitops-base tags and template names revert; a Kubernetes minor downgrade is refused: restore from an etcd snapshot instead)").ok();
        let failed = lines.iter().find_map(|l| {
            l.strip_prefix("would push fleetwave/")
                .and_then(|r| r.split('/').nth(1))
        });
        match (&self.opts.keep, failed) {
            (_, None) => {
                writeln!(
                    out,
                    "Nothing of the failed wave can be rolled back automatically."
                )
                .ok();
            }
            (Some(_), Some(wave)) => {
                writeln!(
                    out,
                    "To roll it back (the repositories are kept in {}):",
                    self.dir.display()
                )
                .ok();
                writeln!(out, "  {} --merge", self.rollback_command(wave)).ok();
            }
            (None, Some(_)) => {
                writeln!(out, "The demo's repositories are deleted on exit: rerun with --keep DIR to keep them and get a `fleetwave rollback` command that runs against them.").ok();
            }
        }
    }
}

/// How far virtual time moves after a tick: five minutes, or straight to the next due
/// time when nothing waits on Flux (soaks, windows); convergence is not predictable.
fn next_advance(report: &reconcile::Report, st: &PlanState, now: DateTime<Utc>) -> Duration {
    let advance = Duration::minutes(5);
    let flux_pending = st
        .waves
        .iter()
        .flat_map(|w| &w.steps)
        .any(|s| s.status == StepStatus::Merged);
    match report.wake_at {
        Some(w) if report.effects.is_empty() && !flux_pending && w - now > advance => w - now,
        _ => advance,
    }
}

/// A manual step whose gate is green and that waits for a reviewer.
pub fn ready_for_review(st: &PlanState) -> Option<(String, String)> {
    st.waves.iter().flat_map(|w| w.steps.iter()).find_map(|s| {
        let p = s.posted.as_ref()?;
        (s.status == StepStatus::Open
            && p.state == GateState::Success
            && p.description.contains("manual wave, waiting for")
            && s.head.as_deref() == Some(p.head.as_str()))
        .then(|| (s.branch.clone(), p.head.clone()))
    })
}

/// Live view: one progress bar per wave (converged steps) with its clusters' state.
struct Live {
    multi: indicatif::MultiProgress,
    header: indicatif::ProgressBar,
    waves: Vec<indicatif::ProgressBar>,
}

impl Live {
    fn new() -> Self {
        let multi = indicatif::MultiProgress::new();
        let header = multi.add(indicatif::ProgressBar::new_spinner());
        Live {
            multi,
            header,
            waves: Vec::new(),
        }
    }

    fn update(&mut self, st: &PlanState, now: DateTime<Utc>) {
        let style = indicatif::ProgressStyle::with_template(
            "  {prefix:<10} [{bar:8.green/white}] {pos}/{len} {msg}",
        )
        .expect("valid template")
        .progress_chars("█▓░");
        while self.waves.len() < st.waves.len() {
            let bar = self.multi.add(indicatif::ProgressBar::new(0));
            bar.set_style(style.clone());
            self.waves.push(bar);
        }
        self.header.set_message(format!(
            "{}  plan {} — {:?}",
            now.format("%a %d %b %H:%M"),
            st.plan,
            st.status
        ));
        self.header.tick();
        for (w, bar) in st.waves.iter().zip(&self.waves) {
            let steps = w
                .steps
                .iter()
                .filter(|s| s.status != StepStatus::Skipped)
                .count() as u64;
            let done = w
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Converged)
                .count() as u64;
            bar.set_prefix(w.name.clone());
            bar.set_length(steps);
            bar.set_position(done);
            let merged_steps: Vec<_> = w
                .steps
                .iter()
                .filter(|s| s.merged_commit.is_some())
                .collect();
            let marks: Vec<String> = w
                .clusters
                .iter()
                .map(|c| {
                    let mark = if w.failed.contains_key(c) {
                        "✗"
                    } else if !merged_steps.is_empty()
                        && merged_steps.iter().all(|s| s.converged.contains_key(c))
                    {
                        "✓"
                    } else {
                        "·"
                    };
                    format!("{mark}{c}")
                })
                .collect();
            let status = match w.status {
                WaveStatus::Soaking => format!(
                    "soaking since {}",
                    w.soak_started_at
                        .map(|t| t.format("%a %H:%M").to_string())
                        .unwrap_or_default()
                ),
                other => format!("{other:?}"),
            };
            bar.set_message(format!("{status:<22} {}", marks.join(" ")));
        }
    }

    fn finish(&self) {
        self.header.finish();
        for b in &self.waves {
            b.finish();
        }
    }
}

fn summary(
    out: &mut dyn Write,
    st: &PlanState,
    alerts: &[Event],
    telemetry: &[Event],
    reviews: usize,
) {
    writeln!(out, "\nSummary: plan {} — {:?}", st.plan, st.status).ok();
    writeln!(
        out,
        "  {:<10} {:<10} {:>8} {:>7} {:>9}  finished",
        "wave", "status", "clusters", "merged", "converged"
    )
    .ok();
    for w in &st.waves {
        let merged = w.steps.iter().filter(|s| s.merged_commit.is_some()).count();
        let converged = w
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Converged)
            .count();
        let fin = w
            .finished_at
            .map(|t| t.format("%a %d %b %H:%M").to_string())
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "  {:<10} {:<10} {:>8} {:>7} {:>9}  {fin}",
            w.name,
            format!("{:?}", w.status),
            w.clusters.len(),
            merged,
            converged
        )
        .ok();
    }
    writeln!(out, "  manual merges by the simulated reviewer: {reviews}").ok();
    writeln!(
        out,
        "  telemetry events: {}  alerts: {}",
        telemetry.len(),
        alerts.len()
    )
    .ok();
    for a in alerts {
        writeln!(out, "  ALERT: {}", a.summary()).ok();
    }
}

/// The automatic rollbacks (`failurePolicy: rollback`) the rollout made, as recorded in the
/// state: the pull request, its merge, what was reverted and what was refused. True when any.
fn show_auto_rollbacks(out: &mut dyn Write, st: &PlanState) -> bool {
    let mut any = false;
    for w in &st.waves {
        let Some(r) = &w.auto_rollback else { continue };
        any = true;
        writeln!(
            out,
            "\nAutomatic rollback of wave {} (failurePolicy rollback):",
            w.name
        )
        .ok();
        match (&r.branch, &r.merged_commit) {
            (Some(b), Some(m)) => {
                writeln!(out, "  pull request {b}: merged as {}", reconcile::short(m)).ok();
            }
            _ if r.done => {
                writeln!(out, "  no pull request: nothing reversible").ok();
            }
            _ => {
                writeln!(out, "  not done yet: the next tick tries again").ok();
            }
        }
        for l in &r.lines {
            writeln!(out, "  {l}").ok();
        }
    }
    any
}
