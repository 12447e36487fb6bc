//! Every plan of the fleet repository at once (`serve` without `--plan`, `reconcile --all`):
//! plans are discovered under the plans folder at the head of the base branch, ordered by the
//! commit that created their file, held back while an earlier plan that edits the same
//! fields (or moves the same cluster's Kubernetes version) or a plan named in `spec.after` is
//! not complete, and the step pull requests of a deleted plan are closed. With leader
//! election (`serve` in Kubernetes) a replica ticks only the plans whose Lease it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};

use crate::adapters::cluster::kube::KubeSource;
use crate::adapters::cluster::sim::Fault;
use crate::adapters::forge::Forge;
use crate::adapters::git::GitRepo;
use crate::adapters::lease::{Elector, LeaseConfig, Role};
use crate::app::Flat;
use crate::app::args::{
    ClusterSourceKind, ForgeChoice, LeaseArgs, PlansArgs, RemoteArgs, WorldArgs,
};
use crate::app::ops::{self, TickEnv};
use crate::app::reconcile::{self, BaseHistory, Outcome, Report};
use crate::core::conflict::{self, PlanEdits, Wait};
use crate::core::discovery::{self, Discovery};
use crate::core::state::{PlanState, PlanStatus};

/// At most this many first-parent commits are walked to find when a plan file was created;
/// a file older than that counts as created by the oldest commit walked.
const HISTORY_LIMIT: usize = 10_000;

/// One plan found and observed against the base.
pub struct Found {
    pub path: PathBuf,
    pub name: String,
    /// The state on the state branch.
    pub state: PlanState,
    /// Why it may not run now (another plan first); empty: it may.
    pub waits: Vec<Wait>,
}

/// A plan whose file is gone but whose state is kept.
pub struct Deleted {
    pub name: String,
    pub status: PlanStatus,
}

/// What one pass over the plans folder found.
#[derive(Default)]
pub struct Scan {
    /// Valid plans that plan cleanly against the base, earliest created first.
    pub plans: Vec<Found>,
    /// Plans that cannot run: invalid files (file:line) and plans refused against the fleet.
    pub errors: Vec<String>,
    pub deleted: Vec<Deleted>,
    /// Said once per scan (a missing folder, deleted plans not looked for).
    pub notes: Vec<String>,
}

/// Which plan files exist where and when each was created (cached: a file's creation commit
/// does not change while it stays in the first-parent history).
static CREATED: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());

/// Discover the plans under `dir` at the base head (the remote asked once), observe each, and
/// decide which wait for which.
pub fn scan(git: &GitRepo, r: &RemoteArgs, dir: &Path) -> anyhow::Result<Scan> {
    git.refresh().flat()?;
    let head = git
        .branch_head(&r.base)
        .flat()?
        .ok_or_else(|| anyhow!("the base branch {} does not exist on the remote", r.base))?;
    let mut out = Scan::default();
    let found = discover_at(git, &head, dir, &mut out)?;
    for bad in &found.invalid {
        out.errors.push(format!("{}", bad.diags));
    }
    let order = created_order(git, &head, &found)?;
    let mut edits = Vec::new();
    for (path, plan) in &found.plans {
        let mut rr = r.clone();
        rr.plan = path.clone();
        match reconcile::observe_fetched(git, &ops::settings(&rr)) {
            Ok(o) => {
                edits.push(PlanEdits {
                    name: plan.name.clone(),
                    created: order.get(path).copied().unwrap_or(u64::MAX),
                    after: plan.after.clone(),
                    complete: o.state.status == PlanStatus::Succeeded,
                    started: !o.state.waves.is_empty(),
                    changes: o
                        .view
                        .waves
                        .iter()
                        .flat_map(|w| w.steps.iter().flat_map(|s| s.changes.iter().cloned()))
                        .collect(),
                });
                out.plans.push(Found {
                    path: path.clone(),
                    name: plan.name.clone(),
                    state: o.state,
                    waits: Vec::new(),
                });
            }
            Err(e) => {
                out.errors
                    .push(format!("plan {} ({}): {e}", plan.name, path.display()));
                // It cannot tick, but what it merged so far still counts: a rollout that had
                // begun keeps holding clashing plans with the changes its state records.
                if let Some(held) = recorded_edits(git, r, plan, &order, path) {
                    edits.push(held);
                }
            }
        }
    }
    out.deleted = deleted(git, r, &found, &mut out.notes)?;
    let complete: BTreeSet<String> = out
        .deleted
        .iter()
        .filter(|d| d.status == PlanStatus::Succeeded)
        .map(|d| d.name.clone())
        .collect();
    let mut waits = conflict::waits(&edits, &complete);
    for f in &mut out.plans {
        f.waits = waits.remove(&f.name).unwrap_or_default();
    }
    let created = |f: &Found| {
        (
            order.get(&f.path).copied().unwrap_or(u64::MAX),
            f.name.clone(),
        )
    };
    out.plans.sort_by_key(created);
    Ok(out)
}

/// A plan that does not plan cleanly now, as its stored state records it: only when its
/// rollout had begun and has not succeeded.
fn recorded_edits(
    git: &GitRepo,
    r: &RemoteArgs,
    plan: &crate::core::plan::Plan,
    order: &BTreeMap<PathBuf, u64>,
    path: &Path,
) -> Option<PlanEdits> {
    let (st, _) = reconcile::load_state(git, &ops::settings(r), &plan.name).ok()?;
    if st.waves.is_empty() || st.status == PlanStatus::Succeeded {
        return None;
    }
    Some(PlanEdits {
        name: plan.name.clone(),
        created: order.get(path).copied().unwrap_or(u64::MAX),
        after: plan.after.clone(),
        complete: false,
        started: true,
        changes: st
            .waves
            .iter()
            .flat_map(|w| w.steps.iter().flat_map(|s| s.changes.iter().cloned()))
            .collect(),
    })
}

/// The plans under `dir` at `head`.
fn discover_at(git: &GitRepo, head: &str, dir: &Path, out: &mut Scan) -> anyhow::Result<Discovery> {
    let Some(tree) = git.tree_under(head, dir).flat()? else {
        out.notes.push(format!(
            "no plans folder {} on the base branch: no plan runs",
            dir.display()
        ));
        return Ok(Discovery::default());
    };
    for (path, why) in discovery::refused(&tree, dir) {
        out.notes
            .push(format!("{}: not read as a plan: {why}", path.display()));
    }
    let files = discovery::yaml_files(&tree, dir).unwrap_or_default();
    let texts: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter_map(|p| {
            let bytes = crate::core::tree::FileTree::read(&tree, &p).ok()?;
            Some((p, String::from_utf8_lossy(&bytes).into_owned()))
        })
        .collect();
    Ok(discovery::discover(&texts))
}

/// For each valid plan file, the position (0 = oldest) of the first-parent commit of the
/// base that created it: the oldest walked commit whose tree has the file.
fn created_order(
    git: &GitRepo,
    head: &str,
    found: &Discovery,
) -> anyhow::Result<BTreeMap<PathBuf, u64>> {
    let mut log = git.first_parent_log(head, HISTORY_LIMIT).flat()?;
    log.reverse();
    let index: BTreeMap<&str, u64> = log
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i as u64))
        .collect();
    let mut cache = CREATED.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = BTreeMap::new();
    for (path, _) in &found.plans {
        let known = cache
            .get(path)
            .and_then(|id| index.get(id.as_str()).map(|i| (id.clone(), *i)));
        let known = match known {
            // Still there and still the oldest: the file was not deleted and re-added since.
            Some((id, i)) if git.file_id(&id, path).flat()?.is_some() => Some(i),
            _ => None,
        };
        let at = match known {
            Some(i) => i,
            None => {
                let mut first = None;
                for (i, c) in log.iter().enumerate() {
                    if git.file_id(&c.id, path).flat()?.is_some() {
                        first = Some((i as u64, c.id.clone()));
                        break;
                    }
                }
                let (i, id) = first.unwrap_or((log.len() as u64, head.to_string()));
                cache.insert(path.clone(), id);
                i
            }
        };
        out.insert(path.clone(), at);
    }
    Ok(out)
}

/// Plans with a state on the state branch and no file under the plans folder.
fn deleted(
    git: &GitRepo,
    r: &RemoteArgs,
    found: &Discovery,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Deleted>> {
    let s = ops::settings(r);
    let Some(state_head) = git.branch_head(&s.state_branch).flat()? else {
        return Ok(Vec::new());
    };
    if let Some(bad) = found.invalid.iter().find(|i| i.name.is_none()) {
        notes.push(format!(
            "{}: a plan file whose metadata.name cannot be read; deleted plans are not looked for until it is fixed",
            bad.path.display()
        ));
        return Ok(Vec::new());
    }
    let present: BTreeSet<&str> = found
        .plans
        .iter()
        .map(|(_, p)| p.name.as_str())
        .chain(found.invalid.iter().filter_map(|i| i.name.as_deref()))
        .collect();
    let mut out = Vec::new();
    for file in git.root_files(&state_head).flat()? {
        let Some(name) = file.strip_suffix(".yaml") else {
            continue;
        };
        if present.contains(name) || PlanState::path(name) != file {
            continue;
        }
        let (st, _) = reconcile::load_state(git, &s, name).flat()?;
        out.push(Deleted {
            name: name.to_string(),
            status: st.status,
        });
    }
    Ok(out)
}

/// Why a plan waits, in one line.
pub fn wait_reason(waits: &[Wait]) -> String {
    waits
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A report for a plan that did not tick because another plan goes first.
fn held_report(f: &Found) -> Report {
    Report {
        outcome: Outcome::Held(wait_reason(&f.waits)),
        notes: Vec::new(),
        effects: Vec::new(),
        wake_at: None,
        state: f.state.clone(),
        api_calls: None,
        not_done: Vec::new(),
    }
}

/// Close the open step pull requests of a deleted plan (comment and close on GitHub, delete
/// the unmerged step branches with the local forge).
async fn close_deleted(
    git: &GitRepo,
    forge: &ForgeChoice,
    r: &RemoteArgs,
    plan: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<String>> {
    let prefix = format!("fleetwave/{plan}/");
    let why = format!(
        "the plan {plan} was deleted from the repository; its state is kept on {}",
        crate::core::state::BRANCH
    );
    let s = ops::settings(r);
    match forge {
        ForgeChoice::Local => {
            let f = crate::adapters::forge::local::LocalForge {
                git,
                base: s.base.clone(),
                author_email: s.author_email.clone(),
                sig: s.sig(now),
            };
            f.close_prs(&prefix, &why).await.flat()
        }
        ForgeChoice::GitHub(cfg) => {
            let gh = crate::adapters::forge::github::GitHubForge::new(
                (**cfg).clone(),
                Some(git),
                &s.author_email,
            )
            .await
            .flat()?;
            let closed = gh.close_prs(&prefix, &why).await.flat()?;
            let _ = gh.finish_tick();
            Ok(closed)
        }
    }
}

/// What every plan's tick shares besides its settings.
struct World<'a> {
    git: &'a GitRepo,
    w: &'a WorldArgs,
    faults: &'a BTreeMap<String, Fault>,
    notify: &'a crate::adapters::notify::Fanout,
    kube: Option<&'a KubeSource>,
    history: &'a Mutex<BaseHistory>,
}

/// One plan's tick, as `reconcile --once --plan` runs it.
async fn tick_plan(
    world: &World<'_>,
    r: &RemoteArgs,
    path: &Path,
    forge: &ForgeChoice,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<(Report, usize)> {
    let mut rr = r.clone();
    rr.plan = path.to_path_buf();
    let s = ops::settings(&rr);
    let env = TickEnv {
        git: world.git,
        w: world.w,
        faults: world.faults,
        notify: world.notify,
        s: &s,
        kube: world.kube,
        history: world.history,
    };
    ops::tick_once(&env, forge, now, dry_run).await
}

/// How `reconcile --all` runs.
#[derive(Debug, Clone)]
pub struct AllOpts {
    pub once: bool,
    pub interval: u64,
    pub dry_run: bool,
    pub plans_dir: PathBuf,
}

/// `reconcile --all`: tick every plan (once, or until every plan is done); the exit code of
/// the last pass: 2 if a plan is invalid or failed, else 1 if one is held, else 0.
pub fn reconcile_all(
    r: &RemoteArgs,
    w: &WorldArgs,
    forge: &ForgeChoice,
    run: &AllOpts,
    out: &mut dyn Write,
) -> ExitCode {
    match reconcile_all_loop(r, w, forge, run, out) {
        Ok(code) => code,
        Err(e) => ops::fail(e),
    }
}

fn reconcile_all_loop(
    r: &RemoteArgs,
    w: &WorldArgs,
    forge: &ForgeChoice,
    run: &AllOpts,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if w.cluster_context.is_some() {
        anyhow::bail!(
            "--cluster-context needs one --plan (its clusters are connected to at start); with --all use the hub (--kube-context)"
        );
    }
    let faults: BTreeMap<String, Fault> = w
        .sim_fault
        .iter()
        .map(|f| ops::parse_fault(f))
        .collect::<anyhow::Result<_>>()?;
    let git = ops::open(r)?;
    let notify = ops::notifier(w)?;
    let rt = ops::watch_runtime();
    let kube = match w.clusters {
        ClusterSourceKind::Kube => Some(rt.block_on(ops::kube_source(
            w,
            &ops::PlanClusters::default(),
            &r.remote,
        ))?),
        ClusterSourceKind::Sim => None,
    };
    let history = Mutex::new(BaseHistory::default());
    let world = World {
        git: &git,
        w,
        faults: &faults,
        notify: &notify,
        kube: kube.as_ref(),
        history: &history,
    };
    loop {
        let now = w.now.unwrap_or_else(Utc::now);
        let (code, finished) = rt.block_on(pass(&world, r, forge, run, now, out))?;
        if finished || run.once || run.dry_run {
            return Ok(code);
        }
        std::thread::sleep(std::time::Duration::from_secs(run.interval));
    }
}

/// One pass of `reconcile --all`: each plan's report under its name.
async fn pass(
    world: &World<'_>,
    r: &RemoteArgs,
    forge: &ForgeChoice,
    run: &AllOpts,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> anyhow::Result<(ExitCode, bool)> {
    let scan = scan(world.git, r, &run.plans_dir)?;
    let esc = crate::core::diag::escape;
    for n in &scan.notes {
        let _ = writeln!(out, "note: {}", esc(n));
    }
    let (mut errors, mut held, mut all_done) = (scan.errors.len(), 0usize, true);
    for e in &scan.errors {
        eprintln!("error: {e}");
    }
    for f in &scan.plans {
        let _ = writeln!(out, "== plan {} ({})", f.name, f.path.display());
        if !f.waits.is_empty() {
            let _ = writeln!(out, "held: {}", esc(&wait_reason(&f.waits)));
            held += 1;
            all_done = false;
            continue;
        }
        match tick_plan(world, r, &f.path, forge, now, run.dry_run).await {
            Ok((report, raced)) => {
                for _ in 0..raced {
                    let _ = writeln!(
                        out,
                        "lost the state race to another reconciler; reloaded and decided again"
                    );
                }
                ops::print_report(&report, run.dry_run, out);
                let (code, finished) = ops::exit_code(&report, out);
                held += usize::from(code == ExitCode::from(1));
                all_done &= finished;
            }
            Err(e) => {
                eprintln!("error: plan {}: {e:#}", f.name);
                errors += 1;
                all_done = false;
            }
        }
    }
    for d in scan
        .deleted
        .iter()
        .filter(|d| d.status != PlanStatus::Succeeded)
    {
        let _ = writeln!(
            out,
            "== plan {} (deleted from {})",
            d.name,
            run.plans_dir.display()
        );
        if run.dry_run {
            let _ = writeln!(out, "would close its open step pull requests");
            continue;
        }
        match close_deleted(world.git, forge, r, &d.name, now).await {
            Ok(closed) if closed.is_empty() => {
                let _ = writeln!(out, "no open step pull requests");
            }
            Ok(closed) => {
                for c in closed {
                    let _ = writeln!(out, "did: closed {}", esc(&c));
                }
            }
            Err(e) => {
                eprintln!("error: plan {} (deleted): {e:#}", d.name);
                errors += 1;
            }
        }
    }
    let code = if errors > 0 {
        ExitCode::from(2)
    } else if held > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    Ok((code, all_done && errors == 0))
}

/// `serve` over many plans: where plans come from and whether Leases elect the actor.
pub struct ServeMany {
    plans_dir: PathBuf,
    /// `--plan`: only this plan (with leases, the single-plan service elects its actor too).
    only: Option<PathBuf>,
    lease: Option<LeaseConfig>,
}

impl ServeMany {
    /// None when `serve` runs one `--plan` without leases, as it always did.
    pub fn new(r: &RemoteArgs, w: &WorldArgs, p: &PlansArgs, l: &LeaseArgs) -> Option<ServeMany> {
        let leases =
            l.leases || l.lease_namespace.is_some() || w.clusters == ClusterSourceKind::Kube;
        let only = (!r.plan.as_os_str().is_empty()).then(|| r.plan.clone());
        if only.is_some() && !leases {
            return None;
        }
        let lease = leases.then(|| LeaseConfig {
            namespace: l
                .lease_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "fleetwave-system".into()),
            identity: l
                .identity
                .clone()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| format!("fleetwave-{}", std::process::id())),
            duration: *l.lease_duration,
        });
        Some(ServeMany {
            plans_dir: p.plans_dir.clone(),
            only,
            lease,
        })
    }
}

/// The service's ticker over every plan.
struct ManyTicker {
    remote: RemoteArgs,
    world: WorldArgs,
    forge: ForgeChoice,
    kube: Option<Arc<KubeSource>>,
    history: Arc<Mutex<BaseHistory>>,
    plans_dir: PathBuf,
    only: Option<PathBuf>,
    /// With leases: this replica's role per plan (absent: no round has decided yet).
    roles: Option<Arc<Mutex<BTreeMap<String, Role>>>>,
    /// The plans the lease rounds elect for (found by the last tick).
    names: Arc<Mutex<Vec<String>>>,
    /// Deleted plans whose pull requests this process closed already.
    closed: Arc<Mutex<BTreeSet<String>>>,
    /// Where each plan's dashboard snapshot goes after its tick (None with `--no-ui`).
    board: Option<crate::app::web::Board>,
    /// Per plan: the labels the dashboard filters by, cached by fleet tree and plan.
    labels: Arc<Mutex<BTreeMap<String, Arc<ops::LabelCache>>>>,
}

#[async_trait::async_trait]
impl crate::app::serve::Ticker for ManyTicker {
    async fn tick(&self) -> anyhow::Result<crate::app::serve::TickSummary> {
        self.tick_all()
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(anyhow!("no plan to tick")))
    }

    async fn tick_all(&self) -> Vec<anyhow::Result<crate::app::serve::TickSummary>> {
        let me = self.clone_parts();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // git2 handles stay on one thread; no runtime is nested in the service's.
        std::thread::spawn(move || {
            let _ = tx.send(me.run());
        });
        rx.await.unwrap_or_else(|_| {
            vec![Err(anyhow!(
                "the tick's thread ended without an answer (panic?)"
            ))]
        })
    }
}

impl ManyTicker {
    fn clone_parts(&self) -> ManyTicker {
        ManyTicker {
            remote: self.remote.clone(),
            world: self.world.clone(),
            forge: self.forge.clone(),
            kube: self.kube.clone(),
            history: self.history.clone(),
            plans_dir: self.plans_dir.clone(),
            only: self.only.clone(),
            roles: self.roles.clone(),
            names: self.names.clone(),
            closed: self.closed.clone(),
            board: self.board.clone(),
            labels: self.labels.clone(),
        }
    }

    fn leads(&self, plan: &str) -> bool {
        match &self.roles {
            None => true,
            Some(roles) => roles
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(plan)
                .is_some_and(|r| *r == Role::Leader),
        }
    }

    /// One pass on this thread: every plan this replica leads, one result each.
    fn run(&self) -> Vec<anyhow::Result<crate::app::serve::TickSummary>> {
        match self.try_run() {
            Ok(v) => v,
            Err(e) => vec![Err(e)],
        }
    }

    fn try_run(&self) -> anyhow::Result<Vec<anyhow::Result<crate::app::serve::TickSummary>>> {
        use crate::app::serve::TickSummary;
        let w = &self.world;
        let faults: BTreeMap<String, Fault> = w
            .sim_fault
            .iter()
            .map(|f| ops::parse_fault(f))
            .collect::<anyhow::Result<_>>()?;
        let git = ops::open(&self.remote)?;
        let notify = ops::notifier(w)?;
        let world = World {
            git: &git,
            w,
            faults: &faults,
            notify: &notify,
            kube: self.kube.as_deref(),
            history: &self.history,
        };
        let now = w.now.unwrap_or_else(Utc::now);
        let rt = ops::runtime();
        let mut results = Vec::new();
        let scan = self.scan(&git)?;
        for e in &scan.errors {
            results.push(Err(anyhow!("{e}")));
        }
        for n in &scan.notes {
            tracing::warn!("{n}");
        }
        let open_deleted: Vec<&Deleted> = scan
            .deleted
            .iter()
            .filter(|d| d.status != PlanStatus::Succeeded)
            .collect();
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) = scan
            .plans
            .iter()
            .map(|f| f.name.clone())
            .chain(open_deleted.iter().map(|d| d.name.clone()))
            .collect();
        for f in scan.plans.iter().filter(|f| self.leads(&f.name)) {
            if !f.waits.is_empty() {
                results.push(Ok(TickSummary::from_report(&held_report(f))));
                continue;
            }
            let res = rt.block_on(tick_plan(
                &world,
                &self.remote,
                &f.path,
                &self.forge,
                now,
                false,
            ));
            if res.is_ok() {
                self.snapshot(&world, f, now);
            }
            results.push(
                res.map(|(report, _)| TickSummary::from_report(&report))
                    .with_context(|| format!("plan {}", f.name)),
            );
        }
        for d in open_deleted.iter().filter(|d| self.leads(&d.name)) {
            if let Err(e) = self.close_once(&rt, &git, &d.name, now) {
                results.push(Err(e.context(format!("plan {} (deleted)", d.name))));
            }
        }
        Ok(results)
    }

    /// The plans this tick looks at: the one plan given, or the plans folder's.
    fn scan(&self, git: &GitRepo) -> anyhow::Result<Scan> {
        let Some(path) = &self.only else {
            return scan(git, &self.remote, &self.plans_dir);
        };
        let name = only_name(git, &self.remote, path)?;
        Ok(Scan {
            plans: vec![Found {
                path: path.clone(),
                name,
                state: PlanState::new("", ""),
                waits: Vec::new(),
            }],
            ..Scan::default()
        })
    }

    /// Close the open step pull requests of deleted plan `name`, once per process.
    fn close_once(
        &self,
        rt: &tokio::runtime::Runtime,
        git: &GitRepo,
        name: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let closed = || self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if closed().contains(name) {
            return Ok(());
        }
        let done = rt.block_on(close_deleted(git, &self.forge, &self.remote, name, now))?;
        tracing::info!(plan = %name, closed = ?done, "plan deleted: its open step pull requests are closed");
        closed().insert(name.to_string());
        Ok(())
    }
}

impl ManyTicker {
    /// After plan `f`'s tick: its dashboard snapshot (page views read only these). A plan
    /// whose snapshot cannot be built keeps its last one, with a warning.
    fn snapshot(&self, world: &World<'_>, f: &Found, now: DateTime<Utc>) {
        let Some(board) = &self.board else { return };
        let mut rr = self.remote.clone();
        rr.plan = f.path.clone();
        let s = ops::settings(&rr);
        let env = TickEnv {
            git: world.git,
            w: world.w,
            faults: world.faults,
            notify: world.notify,
            s: &s,
            kube: world.kube,
            history: world.history,
        };
        let labels = self
            .labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(f.name.clone())
            .or_default()
            .clone();
        let web = crate::app::web::web_address(&self.remote.remote);
        match ops::service_snapshot(&env, &labels, web, now) {
            Ok(snap) => board.put(snap),
            Err(e) => {
                tracing::warn!(plan = %f.name, error = %format!("{e:#}"), "dashboard not updated")
            }
        }
    }
}

/// The name of the one `--plan` (leases are per plan name).
fn only_name(git: &GitRepo, r: &RemoteArgs, path: &Path) -> anyhow::Result<String> {
    let o = reconcile::observe_repo(
        git,
        &ops::settings(&RemoteArgs {
            plan: path.to_path_buf(),
            ..r.clone()
        }),
    )
    .flat()?;
    Ok(o.plan.name)
}

/// `serve` over every plan (or one, with leases).
pub fn serve(
    remote: RemoteArgs,
    world: WorldArgs,
    forge: ForgeChoice,
    cfg: crate::app::serve::ServeConfig,
    many: ServeMany,
    ui: ops::UiOpts,
) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(serve_async(remote, world, forge, cfg, many, ui)) {
        Ok(()) => {
            eprintln!("fleetwave serve: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => ops::fail(e),
    }
}

/// The hub's cluster source when `--clusters kube`; its changes wake the server.
async fn serve_kube_source(
    remote: &RemoteArgs,
    world: &WorldArgs,
    many: &ServeMany,
    server: &crate::app::serve::Server,
) -> anyhow::Result<Option<Arc<KubeSource>>> {
    Ok(if world.clusters == ClusterSourceKind::Kube {
        let names = match &many.only {
            Some(p) if world.cluster_context.is_some() => {
                let (r, p) = (remote.clone(), p.clone());
                tokio::task::spawn_blocking(move || -> anyhow::Result<ops::PlanClusters> {
                    let rr = RemoteArgs {
                        plan: p,
                        ..r.clone()
                    };
                    ops::plan_clusters(&ops::open(&rr)?, &ops::settings(&rr))
                })
                .await??
            }
            _ => ops::PlanClusters::default(),
        };
        let src = Arc::new(ops::kube_source(world, &names, &remote.remote).await?);
        ops::forward_changes(src.changes(), server.trigger());
        Some(src)
    } else {
        None
    })
}

/// Leader election over Leases when `--lease` is on: the roles of the plans and the
/// elector (released when the server stops).
async fn start_election(
    world: &WorldArgs,
    many: &ServeMany,
    names: &Arc<Mutex<Vec<String>>>,
    server: &crate::app::serve::Server,
) -> anyhow::Result<(
    Option<Arc<Mutex<BTreeMap<String, Role>>>>,
    Option<Arc<Elector>>,
)> {
    Ok(match &many.lease {
        Some(cfg) => {
            let client = crate::adapters::cluster::kube::client(
                &crate::adapters::cluster::kube::KubeConfigSel {
                    context: world.kube_context.clone(),
                },
            )
            .await
            .flat()
            .context("leader election needs the Kubernetes API (the Leases)")?;
            let elector = Arc::new(Elector::new(client, cfg.clone()));
            let roles = Arc::new(Mutex::new(BTreeMap::new()));
            elect(
                elector.clone(),
                names.clone(),
                roles.clone(),
                server.lease_report(),
                server.trigger(),
            );
            eprintln!(
                "fleetwave serve: leader election as {} in namespace {} (lease {:?})",
                cfg.identity, cfg.namespace, cfg.duration
            );
            (Some(roles), Some(elector))
        }
        None => (None, None),
    })
}

async fn serve_async(
    remote: RemoteArgs,
    world: WorldArgs,
    forge: ForgeChoice,
    cfg: crate::app::serve::ServeConfig,
    many: ServeMany,
    ui: ops::UiOpts,
) -> anyhow::Result<()> {
    if many.only.is_none() && world.cluster_context.is_some() {
        anyhow::bail!(
            "--cluster-context needs one --plan (its clusters are connected to at start); to run every plan use the hub (--kube-context)"
        );
    }
    let (server, board) = ops::bind_with_dashboard(cfg, ui).await?;
    let kube = serve_kube_source(&remote, &world, &many, &server).await?;
    let names = Arc::new(Mutex::new(Vec::new()));
    let (roles, elector) = start_election(&world, &many, &names, &server).await?;
    let ticker = Arc::new(ManyTicker {
        remote,
        world,
        forge,
        kube,
        history: Default::default(),
        plans_dir: many.plans_dir,
        only: many.only,
        roles,
        names,
        closed: Default::default(),
        board,
        labels: Default::default(),
    });
    server
        .run(ticker, crate::app::serve::shutdown_signal())
        .await
        .flat()?;
    // Hand the plans over at once rather than after the lease duration.
    if let Some(e) = elector {
        match e.release_all(Utc::now()).await {
            Ok(n) => tracing::info!(released = n, "leases released"),
            Err(err) => tracing::warn!("leases not released: {err}"),
        }
    }
    Ok(())
}

/// Lease rounds every third of the lease duration, for the plans the last tick found: the
/// roles for the ticks, readiness and metrics for the service, and a tick at once when this
/// replica starts leading a plan.
fn elect(
    elector: Arc<Elector>,
    names: Arc<Mutex<Vec<String>>>,
    roles: Arc<Mutex<BTreeMap<String, Role>>>,
    report: crate::app::serve::LeaseReport,
    trigger: crate::app::serve::Trigger,
) {
    let every = (elector.config().duration / 3).max(std::time::Duration::from_millis(200));
    tokio::spawn(async move {
        let mut last: Vec<String> = Vec::new();
        loop {
            let plans = names.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match elector.round(&plans, Utc::now()).await {
                Ok(new) => {
                    let gained = new.iter().any(|(p, r)| {
                        *r == Role::Leader
                            && roles
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get(p)
                                .is_none_or(|old| *old != Role::Leader)
                    });
                    let leading: BTreeMap<String, bool> = new
                        .iter()
                        .map(|(p, r)| (p.clone(), *r == Role::Leader))
                        .collect();
                    *roles.lock().unwrap_or_else(|e| e.into_inner()) = new;
                    report.report(true, &leading);
                    if gained || plans != last {
                        trigger.fire();
                    }
                }
                Err(e) => {
                    // Not renewed: stop acting at once rather than when the Lease runs out.
                    tracing::warn!("lease round failed: {e}");
                    let leading: BTreeMap<String, bool> =
                        plans.iter().map(|p| (p.clone(), false)).collect();
                    roles.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    report.report(false, &leading);
                }
            }
            last = plans;
            tokio::time::sleep(every).await;
        }
    });
}
