//! `fleetwave demo`: the whole rollout on the shipped example fleet, with no GitHub and no
//! cluster: a temp fleet repo with a local bare remote, the `local` forge, the simulated Flux
//! and a scaled clock. Manual waves are merged by a simulated reviewer once their gate is green.

use crate::app::Flat;
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
use crate::core::state::{GateState, PlanState, PlanStatus, StepStatus, WaveStatus};

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

/// Run the demo; prints progress to `out`.
pub async fn run(opts: &DemoOptions, out: &mut dyn Write) -> anyhow::Result<DemoResult> {
    let tmp = tempfile::Builder::new()
        .prefix("fleetwave-demo-")
        .tempdir()
        .flat()?;
    let dir = opts
        .keep
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).flat()?;
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
    let settings = Settings::new(Path::new("plans/demo.yaml"));
    let events_path = dir.join("events.jsonl");
    let sink = JsonlSink::new(&events_path);
    let faults: BTreeMap<String, Fault> = opts.fail.iter().cloned().collect();
    let real = Instant::now();
    // Virtual time moves in ticks: a few minutes while Flux works, straight to the next due
    // time while soaking; the real pause per tick follows the scale (a day ≈ a second).
    let mut now = start;
    let mut touched = BTreeMap::new();
    writeln!(
        out,
        "fleetwave demo: plan {} on the example fleet (11 clusters), local forge, simulated Flux",
        opts.plan
    )
    .ok();
    writeln!(
        out,
        "  remote {}  ·  1 s ≈ {} of fleet time\n",
        remote.display(),
        humantime::format_duration(std::time::Duration::from_secs(opts.scale as u64))
    )
    .ok();
    let mut live = opts.progress.then(Live::new);
    let mut last_state;
    let mut reviews = 0;
    loop {
        let o = reconcile::observe_repo(&git, &settings).flat()?;
        let history = reconcile::base_history(&git, &o, 1000, &mut touched).flat()?;
        let sim = SimFlux::new(
            history,
            SimConfig {
                delay: Duration::minutes(10),
                faults: faults.clone(),
                branch: "main".into(),
            },
        );
        let forge = LocalForge {
            git: &git,
            base: settings.base.clone(),
            author_email: settings.author_email.clone(),
            sig: settings.sig(now),
        };
        let io = reconcile::Io {
            git: &git,
            forge: &forge,
            clusters: &sim,
            notifier: &sink as &dyn Notifier,
            gates: None,
        };
        let report = reconcile::tick(&io, &settings, o, now, false)
            .await
            .flat()?;
        for n in &report.notes {
            if !opts.progress {
                writeln!(out, "  {}  {n}", now.format("%a %H:%M")).ok();
            }
        }
        let st = report.state.clone();
        if let Some(l) = live.as_mut() {
            l.update(&st, now);
        }
        last_state = st.clone();
        // The simulated reviewer merges a manual step once fleetwave's gate says it may.
        if let Some((branch, head)) = ready_for_review(&st) {
            let sig = Sig {
                name: "Reviewer".into(),
                email: "reviewer@example.com".into(),
                time: now,
            };
            let base = git.branch_head(&settings.base).flat()?.unwrap_or_default();
            let merge = git
                .merge_commit(
                    &base,
                    &head,
                    &format!("Merge {branch} (approved by reviewer)"),
                    &sig,
                )
                .flat()?;
            if git.push(&settings.base, &merge, Some(&base)).is_ok() {
                reviews += 1;
                if !opts.progress {
                    writeln!(
                        out,
                        "  {}  reviewer approved and merged {branch}",
                        now.format("%a %H:%M")
                    )
                    .ok();
                }
            }
        }
        match report.outcome {
            Outcome::Done => break,
            Outcome::Held(_) if st.status == PlanStatus::Halted => break,
            _ => {}
        }
        let mut advance = Duration::minutes(5);
        // Jump ahead only when nothing waits on Flux (soaks, windows): convergence is not predictable.
        let flux_pending = st
            .waves
            .iter()
            .flat_map(|w| &w.steps)
            .any(|s| s.status == StepStatus::Merged);
        if let Some(w) = report.wake_at {
            if report.effects.is_empty() && !flux_pending && w - now > advance {
                advance = w - now;
            }
        }
        now += advance;
        let pause = (advance.num_milliseconds() as f64 / 1000.0 / opts.scale).min(0.4);
        tokio::time::sleep(std::time::Duration::from_secs_f64(pause)).await;
        if real.elapsed().as_secs() > 55 {
            anyhow::bail!("the demo did not finish within 50 s");
        }
    }
    if let Some(l) = &live {
        l.finish();
    }
    let st = reconcile::load_state(&git, &settings, &last_state.plan)
        .flat()?
        .0;
    let events = JsonlSink::read_events(&events_path).flat()?;
    let (alerts, telemetry): (Vec<Event>, Vec<Event>) =
        events.into_iter().partition(|e| e.alert.is_some());
    summary(out, &st, &alerts, &telemetry, reviews);
    if st.status == PlanStatus::Halted {
        writeln!(out, "\nRollback is available for the failed wave:").ok();
        let failed = st
            .waves
            .iter()
            .find(|w| w.status == WaveStatus::Failed)
            .map(|w| w.name.clone())
            .unwrap_or_default();
        writeln!(
            out,
            "  fleetwave rollback --remote {} --plan plans/demo.yaml --wave {failed} --merge",
            remote.display()
        )
        .ok();
        writeln!(out, "  (gitops-base tags and template names revert; a Kubernetes minor downgrade is refused: restore from an etcd snapshot instead)").ok();
    }
    if opts.keep.is_none() {
        // Keep nothing behind unless asked to.
        drop(tmp);
    } else {
        std::mem::forget(tmp);
    }
    Ok(DemoResult {
        state: st,
        alerts,
        telemetry,
        dir,
    })
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
