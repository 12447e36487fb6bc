//! The rollout commands (`reconcile`, `pause`, `resume`, `rollback`, `history`, `demo`):
//! wire the adapters together, print, and map outcomes to exit codes (0 ok, 1 held, 2 error).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::cli::{HookFormat, RemoteArgs, WorldArgs};
use crate::cluster::sim::{Fault, SimConfig, SimFlux};
use crate::forge::local::LocalForge;
use crate::git::{Auth, GitRepo};
use crate::notify::{Fanout, JsonlSink, Notifier, WebhookFormat, WebhookSink};
use crate::reconcile::{self, Outcome, Settings};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn settings(r: &RemoteArgs) -> Settings {
    let mut s = Settings::new(&r.plan);
    s.base = r.base.clone();
    s.author_name = r.author_name.clone();
    s.author_email = r.author_email.clone();
    s.title_template = r.title_template.clone();
    s.dashboard = r.dashboard;
    s
}

/// The reconciler's private cache directory for this remote.
pub fn cache_dir(r: &RemoteArgs) -> PathBuf {
    r.cache.clone().unwrap_or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("fleetwave").join(reconcile::plan_hash(&r.remote))
    })
}

fn open(r: &RemoteArgs) -> Result<GitRepo, String> {
    let cache = cache_dir(r);
    // On GitHub the API token also pushes over HTTPS.
    let token = r.token.clone().or_else(|| {
        r.remote
            .starts_with("http")
            .then(|| std::env::var("GITHUB_TOKEN").ok())
            .flatten()
    });
    let auth = match &token {
        Some(t) => Auth::Token(t.clone()),
        None if r.remote.starts_with("git@") || r.remote.starts_with("ssh://") => Auth::SshAgent,
        None => Auth::None,
    };
    GitRepo::open(&cache, &r.remote, auth)
        .map_err(|e| format!("cannot open the fleet repository: {e}"))
}

pub fn parse_fault(s: &str) -> Result<(String, Fault), String> {
    let (c, f) = s.split_once('=').unwrap_or((s, "HealthCheckFailed"));
    let f = match f {
        "HealthCheckFailed" => Fault::HealthCheckFailed,
        "StuckProgressing" => Fault::StuckProgressing,
        "AlertFiring" => Fault::AlertFiring,
        other => {
            return Err(format!(
                "unknown fault {other:?}: use HealthCheckFailed, StuckProgressing or AlertFiring"
            ));
        }
    };
    Ok((c.to_string(), f))
}

fn notifier(w: &WorldArgs) -> Result<Fanout, String> {
    let mut sinks: Vec<Box<dyn Notifier>> = Vec::new();
    if let Some(p) = &w.events_file {
        sinks.push(Box::new(JsonlSink::new(p)));
    }
    for url in &w.webhook {
        let format = match w.webhook_format {
            HookFormat::Json => WebhookFormat::Json,
            HookFormat::Slack => WebhookFormat::Slack,
        };
        sinks.push(Box::new(
            WebhookSink::new(url, format).map_err(|e| e.to_string())?,
        ));
    }
    Ok(Fanout(sinks))
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// Which forge and how to reach it.
#[derive(Debug, Clone)]
pub enum ForgeChoice {
    Local,
    GitHub(Box<crate::forge::github::GitHubConfig>),
}

/// How `reconcile` runs.
#[derive(Debug, Clone, Copy)]
pub struct RunOpts {
    pub once: bool,
    pub interval: u64,
    pub dry_run: bool,
    pub github_output: bool,
}

/// What every retried tick needs besides the forge.
struct TickEnv<'a> {
    git: &'a GitRepo,
    w: &'a WorldArgs,
    faults: &'a BTreeMap<String, Fault>,
    notify: &'a Fanout,
    s: &'a Settings,
}

/// One tick with the forge chosen; retried when another reconciler wins the state race.
async fn tick_with<F: crate::forge::Forge>(
    env: &TickEnv<'_>,
    forge_for: &dyn Fn(DateTime<Utc>) -> Result<F, String>,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<(reconcile::Report, usize), String> {
    let TickEnv {
        git,
        w,
        faults,
        notify,
        s,
    } = *env;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let o = reconcile::observe_repo(git, s).map_err(|e| e.to_string())?;
        let history = reconcile::base_history(git, &o, 1000, &mut Default::default())
            .map_err(|e| e.to_string())?;
        let delay = chrono::Duration::from_std(*w.sim_delay).unwrap_or_default();
        let source = match w.clusters.as_str() {
            "sim" => Source::Sim(SimFlux::new(
                history,
                SimConfig {
                    delay,
                    faults: faults.clone(),
                    branch: s.base.clone(),
                },
            )),
            "kube" => Source::Kube(kube_source(w).await?),
            other => {
                return Err(format!(
                    "unknown cluster source {other:?}: use kube (a Flux hub) or sim (the simulated Flux)"
                ));
            }
        };
        let forge = forge_for(now)?;
        let io = reconcile::Io {
            git,
            forge: &forge,
            clusters: &source,
            notifier: notify,
        };
        let report = reconcile::tick(&io, s, o, now, dry_run)
            .await
            .map_err(|e| e.to_string())?;
        // A lost race: reload what the other reconciler wrote and decide again.
        if report.outcome != Outcome::LostRace || attempt == 3 {
            return Ok((report, attempt - 1));
        }
    }
}

pub fn reconcile(
    r: &RemoteArgs,
    w: &WorldArgs,
    forge: &ForgeChoice,
    run: &RunOpts,
    out: &mut dyn Write,
) -> ExitCode {
    let faults: BTreeMap<String, Fault> = match w.sim_fault.iter().map(|f| parse_fault(f)).collect()
    {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let git = match open(r) {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let notify = match notifier(w) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let s = settings(r);
    let rt = runtime();
    let RunOpts {
        once,
        interval,
        dry_run,
        github_output: gh_output,
    } = *run;
    let env = TickEnv {
        git: &git,
        w,
        faults: &faults,
        notify: &notify,
        s: &s,
    };
    loop {
        let now = w.now.unwrap_or_else(Utc::now);
        let result = rt.block_on(tick_once(&env, forge, now, dry_run));
        let report = match result {
            Ok((r, raced)) => {
                for _ in 0..raced {
                    let _ = writeln!(
                        out,
                        "lost the state race to another reconciler; reloaded and decided again"
                    );
                }
                r
            }
            Err(e) => return fail(e),
        };
        for n in &report.notes {
            let _ = writeln!(out, "{n}");
        }
        for e in &report.effects {
            let _ = writeln!(out, "{}{e}", if dry_run { "would " } else { "did: " });
        }
        if let Some(at) = report.wake_at {
            let _ = writeln!(
                out,
                "next: {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
        if let Some(n) = report.api_calls {
            let _ = writeln!(out, "api calls: {n}");
            tracing::info!(calls = n, "GitHub API calls this tick");
        }
        if gh_output {
            if let Err(e) = crate::actions::write_reconcile(&report) {
                return fail(e);
            }
        }
        let code = match &report.outcome {
            Outcome::Done => {
                let _ = writeln!(out, "plan {} succeeded", report.state.plan);
                return ExitCode::SUCCESS;
            }
            Outcome::Held(why) => {
                let _ = writeln!(out, "held: {why}");
                ExitCode::from(1)
            }
            Outcome::LostRace => {
                let _ = writeln!(
                    out,
                    "another reconciler wrote the state first; nothing done this tick"
                );
                ExitCode::SUCCESS
            }
            Outcome::Progressing => ExitCode::SUCCESS,
        };
        if once || dry_run {
            return code;
        }
        std::thread::sleep(std::time::Duration::from_secs(interval));
    }
}

/// Where cluster state comes from for a tick.
enum Source {
    Sim(SimFlux),
    Kube(crate::cluster::kube::KubeSource),
}

impl crate::cluster::ClusterSource for Source {
    async fn observe(
        &self,
        clusters: &[String],
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, crate::cluster::ClusterObservation>, crate::cluster::ClusterError>
    {
        match self {
            Source::Sim(s) => s.observe(clusters, now).await,
            Source::Kube(k) => k.observe(clusters, now).await,
        }
    }
}

/// Flux state from the hub cluster: one list+watch of Kustomizations, read from its store.
async fn kube_source(w: &WorldArgs) -> Result<crate::cluster::kube::KubeSource, String> {
    let sel = crate::cluster::kube::KubeConfigSel {
        context: w.kube_context.clone(),
    };
    let client = crate::cluster::kube::client(&sel)
        .await
        .map_err(|e| e.to_string())?;
    let src = crate::cluster::kube::KubeSource::start(client)
        .await
        .map_err(|e| e.to_string())?;
    src.ready(std::time::Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    Ok(src)
}

/// One tick with the chosen forge (the GitHub client lives for the tick and its retries).
async fn tick_once(
    env: &TickEnv<'_>,
    forge: &ForgeChoice,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<(reconcile::Report, usize), String> {
    let TickEnv { git, s, .. } = *env;
    match forge {
        ForgeChoice::Local => {
            let make = |now| {
                Ok(LocalForge {
                    git,
                    base: s.base.clone(),
                    author_email: s.author_email.clone(),
                    sig: s.sig(now),
                })
            };
            tick_with(env, &make, now, dry_run).await
        }
        ForgeChoice::GitHub(cfg) => {
            let gh =
                crate::forge::github::GitHubForge::new((**cfg).clone(), Some(git), &s.author_email)
                    .await
                    .map_err(|e| e.to_string())?;
            let shared = std::rc::Rc::new(gh);
            let make = |_| Ok(SharedForge(shared.clone()));
            tick_with(env, &make, now, dry_run).await
        }
    }
}

/// The GitHub forge shared across retried ticks (so its call count and caches carry over).
struct SharedForge<'a>(std::rc::Rc<crate::forge::github::GitHubForge<'a>>);

impl crate::forge::Forge for SharedForge<'_> {
    async fn observe(
        &self,
        steps: &[crate::forge::StepRef],
        base_head: &str,
    ) -> Result<BTreeMap<String, crate::decide::PrObs>, crate::forge::ForgeError> {
        self.0.observe(steps, base_head).await
    }
    async fn open(
        &self,
        step: &crate::forge::StepRef,
        spec: &crate::forge::PrSpec,
    ) -> Result<Option<u64>, crate::forge::ForgeError> {
        self.0.open(step, spec).await
    }
    async fn set_status(
        &self,
        step: &crate::forge::StepRef,
        head: &str,
        state: crate::state::GateState,
        description: &str,
    ) -> Result<(), crate::forge::ForgeError> {
        self.0.set_status(step, head, state, description).await
    }
    async fn merge(
        &self,
        step: &crate::forge::StepRef,
        head: &str,
        message: &str,
    ) -> Result<String, crate::forge::ForgeError> {
        self.0.merge(step, head, message).await
    }
    async fn comment(
        &self,
        step: &crate::forge::StepRef,
        body: &str,
    ) -> Result<(), crate::forge::ForgeError> {
        crate::forge::Forge::comment(&*self.0, step, body).await
    }
    async fn close_stale(
        &self,
        prefix: &str,
        keep: &[String],
    ) -> Result<Vec<String>, crate::forge::ForgeError> {
        crate::forge::Forge::close_stale(&*self.0, prefix, keep).await
    }
    async fn dashboard(&self, plan: &str, body: &str) -> Result<(), crate::forge::ForgeError> {
        crate::forge::Forge::dashboard(&*self.0, plan, body).await
    }
    fn reviews(&self) -> bool {
        true
    }
    fn finish_tick(&self) -> Option<usize> {
        self.0.finish_tick()
    }
}

pub fn pause(r: &RemoteArgs, paused: bool, out: &mut dyn Write) -> ExitCode {
    let git = match open(r) {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    match reconcile::set_paused(&git, &settings(r), paused, Utc::now()) {
        Ok(st) => {
            let _ = writeln!(out, "plan {} is now {:?}", st.plan, st.status);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

pub fn rollback(
    r: &RemoteArgs,
    waves: &[String],
    allow_downgrade: bool,
    merge: bool,
    dry_run: bool,
    now: Option<DateTime<Utc>>,
    out: &mut dyn Write,
) -> ExitCode {
    let git = match open(r) {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let opts = reconcile::RollbackOptions {
        waves: waves.to_vec(),
        allow_downgrade,
        merge,
        dry_run,
    };
    match reconcile::rollback(&git, &settings(r), &opts, now.unwrap_or_else(Utc::now)) {
        Ok(lines) => {
            let refused = lines.iter().any(|l| l.starts_with("refused:"));
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
            // Some of it could not be rolled back: say so in the exit code too.
            if refused {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(e),
    }
}

pub fn history(r: &RemoteArgs, out: &mut dyn Write) -> ExitCode {
    let git = match open(r) {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    match reconcile::history(&git, &settings(r)) {
        Ok(log) => {
            for c in log.iter().rev() {
                let _ = writeln!(
                    out,
                    "{}  {}  {}",
                    c.time.format("%Y-%m-%d %H:%M:%S UTC"),
                    reconcile::short(&c.id),
                    c.message
                        .trim_end()
                        .replace('\n', "\n                                  ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

pub fn demo(
    plan: &str,
    fail_args: &[String],
    scale: f64,
    keep: Option<PathBuf>,
    plain: bool,
    out: &mut dyn Write,
) -> ExitCode {
    let fail_list: Vec<(String, Fault)> = match fail_args.iter().map(|f| parse_fault(f)).collect() {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    use std::io::IsTerminal;
    let progress = !plain && std::io::stdout().is_terminal();
    let opts = crate::demo::DemoOptions {
        plan: plan.to_string(),
        fail: fail_list,
        scale,
        keep,
        progress,
    };
    match runtime().block_on(crate::demo::run(&opts, out)) {
        Ok(r) if r.state.status == crate::state::PlanStatus::Succeeded => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => fail(e),
    }
}

/// Post (or edit) fleetwave's managed comment on a pull request.
pub fn comment_on_pr(
    repo: Option<&str>,
    api: &str,
    token: Option<&str>,
    pr: u64,
    body: &str,
) -> Result<(), String> {
    use crate::forge::github::{GitHubAuth, GitHubConfig, GitHubForge, MergeMethod};
    let (owner, name) = repo
        .and_then(|r| r.split_once('/'))
        .ok_or("--comment-pr needs --github-repo owner/repo (GITHUB_REPOSITORY)")?;
    let token = token.ok_or("--comment-pr needs GITHUB_TOKEN")?;
    let cfg = GitHubConfig {
        api: api.trim_end_matches('/').to_string(),
        owner: owner.to_string(),
        repo: name.to_string(),
        auth: GitHubAuth::Token(token.to_string()),
        merge_method: MergeMethod::Merge,
        labels: Vec::new(),
        target_url: None,
        approvers: Vec::new(),
        approver_teams: Vec::new(),
        cache_file: None,
        check_runs: false,
    };
    runtime().block_on(async {
        let gh = GitHubForge::new(cfg, None, "")
            .await
            .map_err(|e| e.to_string())?;
        gh.comment(pr, crate::forge::github::PREVIEW_COMMENT, body)
            .await
            .map_err(|e| e.to_string())
    })
}

/// `fleetwave status`: the rollout state per wave and cluster, with the values in Git and,
/// where a cluster source is given, Flux's view.
pub fn status(
    r: &RemoteArgs,
    clusters: Option<&str>,
    sim_delay: std::time::Duration,
    json: bool,
    gh_output: bool,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> ExitCode {
    use crate::cluster::ClusterSource;
    use crate::locate::What;
    let git = match open(r) {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let s = settings(r);
    let o = match reconcile::observe_repo(&git, &s) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let observed = match clusters {
        None => BTreeMap::new(),
        Some("sim") => {
            let history = match reconcile::base_history(&git, &o, 1000, &mut Default::default()) {
                Ok(h) => h,
                Err(e) => return fail(e),
            };
            let sim = SimFlux::new(
                history,
                SimConfig {
                    delay: chrono::Duration::from_std(sim_delay).unwrap_or_default(),
                    faults: BTreeMap::new(),
                    branch: s.base.clone(),
                },
            );
            let names: Vec<String> = o.planned.fleet.clusters.keys().cloned().collect();
            runtime()
                .block_on(sim.observe(&names, now))
                .unwrap_or_default()
        }
        Some(other) => {
            return fail(format!(
                "cluster source {other:?} is not available yet; use sim or leave it out"
            ));
        }
    };
    // Values in Git per cluster, from the locators on the base branch.
    let mut in_git: BTreeMap<String, BTreeMap<&str, std::collections::BTreeSet<String>>> =
        BTreeMap::new();
    for loc in &o.planned.fleet.located {
        for oc in &loc.occurrences {
            let kind = match oc.what {
                What::Kubernetes(_) => "kubernetes",
                What::GitopsBase => "gitopsBase",
                What::Template => "template",
            };
            in_git
                .entry(oc.cluster.clone())
                .or_default()
                .entry(kind)
                .or_default()
                .insert(oc.value.clone());
        }
    }
    let st = &o.state;
    let mut rows = Vec::new();
    for (wi, w) in o.planned.waves.iter().enumerate() {
        let ws = st.waves.get(wi);
        for c in &w.clusters {
            let git_vals = in_git
                .get(c)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            format!("{k} {}", v.iter().cloned().collect::<Vec<_>>().join("/"))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let flux = observed
                .get(c)
                .and_then(|ob| ob.kustomizations.first())
                .map(|k| {
                    let ready = k
                        .condition("Ready")
                        .map(|r| format!("{} {}", r.status, r.reason))
                        .unwrap_or_else(|| "no Ready".into());
                    let rev = k
                        .last_applied_revision
                        .as_deref()
                        .and_then(crate::cluster::revision_hash)
                        .map(|h| h[..h.len().min(10)].to_string())
                        .unwrap_or_else(|| "-".into());
                    format!("{ready} @ {rev}")
                });
            let state = match ws {
                None => "not started".to_string(),
                Some(ws) => match ws.failed.get(c) {
                    Some(why) => format!("failed: {why}"),
                    None => {
                        let merged: Vec<_> = ws
                            .steps
                            .iter()
                            .filter(|x| x.merged_commit.is_some())
                            .collect();
                        let conv = merged
                            .iter()
                            .filter(|x| x.converged.contains_key(c))
                            .count();
                        format!(
                            "{:?}, {conv}/{} merged steps converged",
                            ws.status,
                            merged.len()
                        )
                    }
                },
            };
            rows.push(serde_json::json!({"wave": w.name, "cluster": c, "state": state, "git": git_vals, "flux": flux}));
        }
    }
    if json {
        let doc = serde_json::json!({"plan": st.plan, "status": format!("{:?}", st.status), "reason": st.reason, "clusters": rows});
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    } else {
        let _ = writeln!(
            out,
            "plan {} — {:?}{}",
            o.planned.plan.name,
            st.status,
            st.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        for row in &rows {
            let flux = row["flux"]
                .as_str()
                .map(|f| format!("  flux: {f}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<10} {:<16} {}  git: {}{flux}",
                row["wave"].as_str().unwrap_or(""),
                row["cluster"].as_str().unwrap_or(""),
                row["state"].as_str().unwrap_or(""),
                row["git"].as_str().unwrap_or("")
            );
        }
    }
    if gh_output {
        let report = reconcile::Report {
            outcome: Outcome::Progressing,
            notes: Vec::new(),
            effects: Vec::new(),
            wake_at: None,
            state: st.clone(),
            api_calls: None,
        };
        if let Err(e) = crate::actions::write_reconcile(&report) {
            return fail(e);
        }
    }
    match st.status {
        crate::state::PlanStatus::Halted | crate::state::PlanStatus::Failed => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// A reconcile tick for the service: each runs on a blocking thread with its own Git handle
/// (git2 repositories are not shared between threads).
struct ServiceTicker {
    remote: RemoteArgs,
    world: WorldArgs,
    forge: ForgeChoice,
}

#[async_trait::async_trait]
impl crate::serve::Ticker for ServiceTicker {
    async fn tick(&self) -> Result<crate::serve::TickSummary, String> {
        let (remote, world, forge) = (self.remote.clone(), self.world.clone(), self.forge.clone());
        // A plain thread with its own runtime: git2 handles stay on one thread, and no runtime
        // is nested inside the service's.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let result = (|| {
                let faults: BTreeMap<String, Fault> = world
                    .sim_fault
                    .iter()
                    .map(|f| parse_fault(f))
                    .collect::<Result<_, _>>()?;
                let git = open(&remote)?;
                let notify = notifier(&world)?;
                let s = settings(&remote);
                let env = TickEnv {
                    git: &git,
                    w: &world,
                    faults: &faults,
                    notify: &notify,
                    s: &s,
                };
                let now = world.now.unwrap_or_else(Utc::now);
                let (report, _) = runtime().block_on(tick_once(&env, &forge, now, false))?;
                Ok(crate::serve::TickSummary::from_report(&report))
            })();
            let _ = tx.send(result);
        });
        rx.await
            .map_err(|_| "the tick's thread ended without an answer (panic?)".to_string())?
    }
}

pub fn serve(
    remote: RemoteArgs,
    world: WorldArgs,
    forge: ForgeChoice,
    cfg: crate::serve::ServeConfig,
) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        let server = crate::serve::Server::bind(cfg)
            .await
            .map_err(|e| format!("cannot listen: {e}"))?;
        eprintln!("fleetwave serve: listening on {}", server.local_addr());
        let ticker = std::sync::Arc::new(ServiceTicker {
            remote,
            world,
            forge,
        });
        server
            .run(ticker, crate::serve::shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => {
            eprintln!("fleetwave serve: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
