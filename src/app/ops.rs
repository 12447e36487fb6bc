//! The rollout commands (`reconcile`, `pause`, `resume`, `rollback`, `history`, `demo`):
//! wire the adapters together, print, and map outcomes to exit codes (0 ok, 1 held, 2 error).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};

use crate::adapters::cluster::kube::KubeSource;
use crate::adapters::cluster::sim::{Fault, SimConfig, SimFlux};
use crate::adapters::forge::local::LocalForge;
use crate::adapters::git::{Auth, GitRepo};
use crate::adapters::notify::{Fanout, JsonlSink, WebhookFormat, WebhookSink};
use crate::app::Flat;
use crate::app::args::{
    ClusterSourceKind, ForgeChoice, HookFormat, RemoteArgs, WorldArgs, cache_dir,
};
use crate::app::reconcile::{self, BaseHistory, Outcome, Settings};
use crate::core::notify::Notifier;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A runtime whose worker keeps background tasks (kube watches) going while the calling
/// thread is busy or asleep.
pub(crate) fn watch_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub(crate) fn settings(r: &RemoteArgs) -> Settings {
    let mut s = Settings::new(&r.plan);
    s.base = r.base.clone();
    s.author_name = r.author_name.clone();
    s.author_email = r.author_email.clone();
    s.title_template = r.title_template.clone();
    s.dashboard = r.dashboard;
    s
}

pub(crate) fn open(r: &RemoteArgs) -> anyhow::Result<GitRepo> {
    let cache = cache_dir(r);
    // On GitHub the API token also pushes over HTTPS.
    let token = r.token.clone().or_else(|| {
        r.remote
            .starts_with("http")
            .then(|| std::env::var("GITHUB_TOKEN").ok())
            .flatten()
    });
    let ssh = r.remote.starts_with("ssh://") || is_scp_like(&r.remote);
    let auth = match (&token, &r.ssh_key) {
        (_, Some(key)) if ssh => Auth::SshKey {
            key: key.clone(),
            passphrase: r.ssh_key_passphrase.clone(),
        },
        (Some(t), _) if !ssh => match &r.token_user {
            Some(user) => Auth::UserPass {
                user: user.clone(),
                secret: t.clone(),
            },
            None => Auth::Token(t.clone()),
        },
        _ if ssh => Auth::SshAgent,
        _ => Auth::None,
    };
    GitRepo::open(&cache, &r.remote, auth)
        .flat()
        .context("cannot open the fleet repository")
}

/// `git@host:org/repo` (scp-like SSH syntax), not a local path such as `./a:b` or `C:\x`.
fn is_scp_like(remote: &str) -> bool {
    match remote.split_once(':') {
        Some((host, _)) => host.contains('@') && !host.contains('/'),
        None => false,
    }
}

pub fn parse_fault(s: &str) -> anyhow::Result<(String, Fault)> {
    let (c, f) = s.split_once('=').unwrap_or((s, "HealthCheckFailed"));
    let f = match f {
        "HealthCheckFailed" => Fault::HealthCheckFailed,
        "StuckProgressing" => Fault::StuckProgressing,
        "AlertFiring" => Fault::AlertFiring,
        "Unreachable" => Fault::Unreachable,
        other => {
            bail!(
                "unknown fault {other:?}: use HealthCheckFailed, StuckProgressing, AlertFiring or Unreachable"
            )
        }
    };
    Ok((c.to_string(), f))
}

pub(crate) fn notifier(w: &WorldArgs) -> anyhow::Result<Fanout> {
    let mut sinks: Vec<Box<dyn Notifier>> = Vec::new();
    if let Some(p) = &w.events_file {
        sinks.push(Box::new(JsonlSink::new(p)));
    }
    for url in &w.webhook {
        let format = match w.webhook_format {
            HookFormat::Json => WebhookFormat::Json,
            HookFormat::Slack => WebhookFormat::Slack,
        };
        sinks.push(Box::new(WebhookSink::new(url, format).flat()?));
    }
    Ok(Fanout(sinks))
}

/// Print the error with its context (`context: cause`) and exit 2.
pub(crate) fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(2)
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
pub(crate) struct TickEnv<'a> {
    pub(crate) git: &'a GitRepo,
    pub(crate) w: &'a WorldArgs,
    pub(crate) faults: &'a BTreeMap<String, Fault>,
    pub(crate) notify: &'a Fanout,
    pub(crate) s: &'a Settings,
    /// With `--clusters kube`: the watches, started once and kept across ticks.
    pub(crate) kube: Option<&'a KubeSource>,
    /// With `--clusters sim`: the base history, kept across ticks and extended with new
    /// commits only.
    pub(crate) history: &'a std::sync::Mutex<BaseHistory>,
}

impl TickEnv<'_> {
    /// The cluster source of a tick on `o`: the simulation walks the base history (only
    /// the new commits); the kube source was started once.
    fn source(&self, o: &reconcile::Observed) -> anyhow::Result<Source<'_>> {
        match self.w.clusters {
            ClusterSourceKind::Sim => {
                let history = self
                    .history
                    .lock()
                    .map_err(|_| anyhow!("the base history was poisoned by a panicked tick"))?
                    .update(self.git, o, 1000)
                    .flat()?;
                Ok(Source::Sim(SimFlux::new(
                    history,
                    SimConfig {
                        delay: chrono::Duration::from_std(*self.w.sim_delay).unwrap_or_default(),
                        faults: self.faults.clone(),
                        branch: self.s.base.clone(),
                    },
                )))
            }
            ClusterSourceKind::Kube => {
                Ok(Source::Kube(self.kube.ok_or_else(|| {
                    anyhow!("the kube cluster source was not started")
                })?))
            }
        }
    }
}

/// One tick with the forge chosen; retried when another reconciler wins the state race.
async fn tick_with<F: crate::adapters::forge::Forge>(
    env: &TickEnv<'_>,
    forge_for: &dyn Fn(DateTime<Utc>) -> anyhow::Result<F>,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<(reconcile::Report, usize)> {
    let (git, s) = (env.git, env.s);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let o = reconcile::observe_repo(git, s).flat()?;
        warn_node_gates(env.w, &o.plan);
        let source = env.source(&o)?;
        let forge = forge_for(now)?;
        // Live gates only against live clusters; the simulation reports its own.
        let remote_gates = match &source {
            Source::Kube(_) => Some(
                crate::adapters::gates::Remote::new(std::time::Duration::from_secs(10)).flat()?,
            ),
            Source::Sim(_) => None,
        };
        let io = reconcile::Io {
            git,
            forge: &forge,
            clusters: &source,
            notifier: env.notify,
            gates: remote_gates.as_ref(),
        };
        let report = reconcile::tick(&io, s, o, now, dry_run).await.flat()?;
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
    match reconcile_loop(r, w, forge, run, out) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

/// Tick until done (or once); the exit code of the last tick.
fn reconcile_loop(
    r: &RemoteArgs,
    w: &WorldArgs,
    forge: &ForgeChoice,
    run: &RunOpts,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let faults: BTreeMap<String, Fault> = w
        .sim_fault
        .iter()
        .map(|f| parse_fault(f))
        .collect::<anyhow::Result<_>>()?;
    let git = open(r)?;
    let notify = notifier(w)?;
    let s = settings(r);
    // Multi-threaded: kube watches keep running on the worker between ticks.
    let rt = watch_runtime();
    let kube = rt.block_on(maybe_kube(w, &git, &s, &r.remote))?;
    let history = std::sync::Mutex::new(BaseHistory::default());
    let env = TickEnv {
        git: &git,
        w,
        faults: &faults,
        notify: &notify,
        s: &s,
        kube: kube.as_ref(),
        history: &history,
    };
    loop {
        let now = w.now.unwrap_or_else(Utc::now);
        let (report, raced) = rt.block_on(tick_once(&env, forge, now, run.dry_run))?;
        for _ in 0..raced {
            let _ = writeln!(
                out,
                "lost the state race to another reconciler; reloaded and decided again"
            );
        }
        print_report(&report, run.dry_run, out);
        if run.github_output {
            crate::app::actions::write_reconcile(&report)?;
        }
        let (code, finished) = exit_code(&report, out);
        if finished || run.once || run.dry_run {
            return Ok(code);
        }
        std::thread::sleep(std::time::Duration::from_secs(run.interval));
    }
}

/// What a tick did, would do or could not do, and when it wants to run next.
pub(crate) fn print_report(report: &reconcile::Report, dry_run: bool, out: &mut dyn Write) {
    // Notes and gate reasons carry text from the repository and the clusters.
    let esc = crate::core::diag::escape;
    for n in &report.notes {
        let _ = writeln!(out, "{}", esc(n));
    }
    for e in &report.effects {
        let verb = if dry_run { "would " } else { "did: " };
        let _ = writeln!(out, "{verb}{}", esc(e));
    }
    for e in &report.not_done {
        let _ = writeln!(out, "not done: {}", esc(e));
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
}

/// The exit code of a tick's outcome, and whether the rollout is finished.
pub(crate) fn exit_code(report: &reconcile::Report, out: &mut dyn Write) -> (ExitCode, bool) {
    match &report.outcome {
        Outcome::Done => {
            let _ = writeln!(out, "plan {} succeeded", report.state.plan);
            (ExitCode::SUCCESS, true)
        }
        Outcome::Held(why) => {
            let _ = writeln!(out, "held: {}", crate::core::diag::escape(why));
            (ExitCode::from(1), false)
        }
        Outcome::LostRace => {
            let _ = writeln!(
                out,
                "another reconciler wrote the state first; nothing done this tick"
            );
            (ExitCode::SUCCESS, false)
        }
        Outcome::Progressing => (ExitCode::SUCCESS, false),
    }
}

/// Where cluster state comes from for a tick.
enum Source<'a> {
    Sim(SimFlux),
    Kube(&'a KubeSource),
}

impl crate::core::cluster::ClusterSource for Source<'_> {
    async fn observe(
        &self,
        clusters: &[String],
        now: DateTime<Utc>,
    ) -> Result<
        BTreeMap<String, crate::core::cluster::ClusterObservation>,
        crate::core::cluster::ClusterError,
    > {
        match self {
            Source::Sim(s) => s.observe(clusters, now).await,
            // The first observation waits for the watches' first lists.
            Source::Kube(k) => {
                k.ready_once(FIRST_LISTS).await?;
                k.observe(clusters, now).await
            }
        }
    }
}

/// How long the first observation waits for every watch's first list.
const FIRST_LISTS: std::time::Duration = std::time::Duration::from_secs(30);

/// [`start_kube`], then wait for every first list: for services, which serve from the start.
pub(crate) async fn kube_source(
    w: &WorldArgs,
    clusters: &PlanClusters,
    remote: &str,
) -> anyhow::Result<KubeSource> {
    let src = start_kube(w, clusters, remote).await?;
    src.ready_once(FIRST_LISTS).await.flat()?;
    Ok(src)
}

/// Start the kube cluster source: the hub (Flux Kustomizations plus the kinds that report
/// upgrades) and, with `--cluster-context`, one context per cluster. Returns at once: the
/// first lists arrive on the runtime's worker while the caller fetches and plans, and the
/// first observation waits for them ([`KubeSource::ready_once`]). Call inside a runtime whose
/// workers keep running between ticks.
pub(crate) async fn start_kube(
    w: &WorldArgs,
    clusters: &PlanClusters,
    remote: &str,
) -> anyhow::Result<KubeSource> {
    let (clusters, deprecated_apis) = (&clusters.names, clusters.deprecated_apis);
    use crate::adapters::cluster::kube::{
        KubeConfigSel, Targets, client, source_kinds, upgrade_kinds,
    };
    let hub = match (&w.cluster_context, &w.kube_context) {
        (Some(_), None) => None,
        (_, ctx) => Some(
            client(&KubeConfigSel {
                context: ctx.clone(),
            })
            .await
            .flat()?,
        ),
    };
    let mut spokes = Vec::new();
    let mut unreachable = BTreeMap::new();
    if let Some(tpl) = &w.cluster_context {
        let contexts: Vec<String> = clusters
            .iter()
            .map(|c| tpl.replace("{cluster}", c))
            .collect();
        let clients = crate::adapters::cluster::kube::clients_for_contexts(&contexts)
            .await
            .flat()?;
        for ((c, ctx), made) in clusters.iter().zip(&contexts).zip(clients) {
            match made {
                Ok(cl) => spokes.push((c.clone(), cl)),
                // One missing context must not blind fleetwave to the whole fleet; that
                // cluster waits, with this reason, when its wave runs.
                Err(e) => {
                    let why = format!(
                        "no usable kube context {ctx:?} (from --cluster-context {tpl:?}): {e}"
                    );
                    tracing::warn!(cluster = %c, "{why}");
                    unreachable.insert(c.clone(), why);
                }
            }
        }
        if !unreachable.is_empty() {
            eprintln!(
                "warning: {} of {} clusters have no usable kube context (first: {})",
                unreachable.len(),
                clusters.len(),
                unreachable.keys().next().map(String::as_str).unwrap_or("")
            );
        }
    }
    KubeSource::start_with(Targets {
        hub,
        hub_kinds: source_kinds().into_iter().chain(upgrade_kinds()).collect(),
        spokes,
        // The liveness check of each cluster's API server.
        version_every: std::time::Duration::from_secs(15),
        // `/metrics` is megabytes per cluster: read only for a deprecatedApis gate.
        deprecated_apis_every: deprecated_apis.then(|| std::time::Duration::from_secs(60)),
        unreachable,
        fleet_url: Some(remote.to_string()),
    })
    .await
    .flat()
}

/// What per-cluster mode connects to, from the plan on the base branch.
#[derive(Default)]
pub(crate) struct PlanClusters {
    names: Vec<String>,
    /// A wave has a `deprecatedApis` gate: each cluster's `/metrics` is read.
    deprecated_apis: bool,
}

/// The clusters of the plan on the base branch (what per-cluster mode connects to).
pub(crate) fn plan_clusters(git: &GitRepo, s: &Settings) -> anyhow::Result<PlanClusters> {
    let o = reconcile::observe_repo(git, s).flat()?;
    let deprecated_apis = o.plan.waves.iter().any(|w| {
        w.gates
            .iter()
            .any(|g| matches!(g, crate::core::plan::Gate::DeprecatedApis {}))
    });
    Ok(PlanClusters {
        names: o
            .view
            .waves
            .iter()
            .flat_map(|w| w.clusters.iter().cloned())
            .collect(),
        deprecated_apis,
    })
}

/// Start the kube source when `--clusters kube` asks for it.
async fn maybe_kube(
    w: &WorldArgs,
    git: &GitRepo,
    s: &Settings,
    remote: &str,
) -> anyhow::Result<Option<KubeSource>> {
    if w.clusters != ClusterSourceKind::Kube {
        return Ok(None);
    }
    let names = if w.cluster_context.is_some() {
        plan_clusters(git, s)?
    } else {
        PlanClusters::default()
    };
    start_kube(w, &names, remote).await.map(Some)
}

/// Waves with a nodes, podRestarts or deprecatedApis gate, if any.
fn node_gated_waves(plan: &crate::core::plan::Plan) -> Option<String> {
    let waves: Vec<&str> = plan
        .waves
        .iter()
        .filter(|w| {
            w.gates.iter().any(|g| {
                matches!(
                    g,
                    crate::core::plan::Gate::Nodes {}
                        | crate::core::plan::Gate::PodRestarts { .. }
                        | crate::core::plan::Gate::DeprecatedApis {}
                )
            })
        })
        .map(|w| w.name.as_str())
        .collect();
    (!waves.is_empty()).then(|| waves.join(", "))
}

/// Said once per process: without per-cluster contexts these gates fail (holding the wave).
fn warn_node_gates(w: &WorldArgs, plan: &crate::core::plan::Plan) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if w.clusters != ClusterSourceKind::Kube || w.cluster_context.is_some() {
        return;
    }
    if let Some(waves) = node_gated_waves(plan)
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        eprintln!(
            "warning: wave(s) {waves} gate on nodes, pod restarts or deprecated APIs, which \
             need each cluster's own API server (--cluster-context); without it those gates \
             fail or hold"
        );
    }
}

/// One tick with the chosen forge (the GitHub client lives for the tick and its retries).
pub(crate) async fn tick_once(
    env: &TickEnv<'_>,
    forge: &ForgeChoice,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<(reconcile::Report, usize)> {
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
            let gh = crate::adapters::forge::github::GitHubForge::new(
                (**cfg).clone(),
                Some(git),
                &s.author_email,
            )
            .await
            .flat()?;
            let shared = std::rc::Rc::new(gh);
            let make = |_| Ok(SharedForge(shared.clone()));
            tick_with(env, &make, now, dry_run).await
        }
    }
}

/// The GitHub forge shared across retried ticks (so its call count and caches carry over).
struct SharedForge<'a>(std::rc::Rc<crate::adapters::forge::github::GitHubForge<'a>>);

impl crate::adapters::forge::Forge for SharedForge<'_> {
    async fn observe(
        &self,
        steps: &[crate::adapters::forge::StepRef],
        base_head: &str,
    ) -> Result<BTreeMap<String, crate::core::decide::PrObs>, crate::adapters::forge::ForgeError>
    {
        self.0.observe(steps, base_head).await
    }
    async fn open(
        &self,
        step: &crate::adapters::forge::StepRef,
        spec: &crate::adapters::forge::PrSpec,
    ) -> Result<Option<u64>, crate::adapters::forge::ForgeError> {
        self.0.open(step, spec).await
    }
    async fn set_status(
        &self,
        step: &crate::adapters::forge::StepRef,
        head: &str,
        state: crate::core::state::GateState,
        description: &str,
    ) -> Result<(), crate::adapters::forge::ForgeError> {
        self.0.set_status(step, head, state, description).await
    }
    async fn merge(
        &self,
        step: &crate::adapters::forge::StepRef,
        head: &str,
        message: &str,
    ) -> Result<String, crate::adapters::forge::ForgeError> {
        self.0.merge(step, head, message).await
    }
    async fn comment(
        &self,
        step: &crate::adapters::forge::StepRef,
        body: &str,
    ) -> Result<(), crate::adapters::forge::ForgeError> {
        crate::adapters::forge::Forge::comment(&*self.0, step, body).await
    }
    async fn close_stale(
        &self,
        prefix: &str,
        keep: &[String],
    ) -> Result<Vec<String>, crate::adapters::forge::ForgeError> {
        crate::adapters::forge::Forge::close_stale(&*self.0, prefix, keep).await
    }
    async fn dashboard(
        &self,
        plan: &str,
        body: &str,
    ) -> Result<(), crate::adapters::forge::ForgeError> {
        crate::adapters::forge::Forge::dashboard(&*self.0, plan, body).await
    }
    async fn close_prs(
        &self,
        prefix: &str,
        why: &str,
    ) -> Result<Vec<String>, crate::adapters::forge::ForgeError> {
        crate::adapters::forge::Forge::close_prs(&*self.0, prefix, why).await
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
        Err(e) => fail(anyhow!("{e}")),
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
        Err(e) => fail(anyhow!("{e}")),
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
        Err(e) => fail(anyhow!("{e}")),
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
    let fail_list: Vec<(String, Fault)> = match fail_args
        .iter()
        .map(|f| parse_fault(f))
        .collect::<anyhow::Result<_>>()
    {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    use std::io::IsTerminal;
    let progress = !plain && std::io::stdout().is_terminal();
    let opts = crate::app::demo::DemoOptions {
        plan: plan.to_string(),
        fail: fail_list,
        scale,
        keep,
        progress,
    };
    match runtime().block_on(crate::app::demo::run(&opts, out)) {
        Ok(r) if r.state.status == crate::core::state::PlanStatus::Succeeded => ExitCode::SUCCESS,
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
) -> anyhow::Result<()> {
    use crate::adapters::forge::github::{GitHubAuth, GitHubConfig, GitHubForge, MergeMethod};
    let (owner, name) = repo.and_then(|r| r.split_once('/')).ok_or_else(|| {
        anyhow!("--comment-pr needs --github-repo owner/repo (GITHUB_REPOSITORY)")
    })?;
    let token = token.ok_or_else(|| anyhow!("--comment-pr needs GITHUB_TOKEN"))?;
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
        let gh = GitHubForge::new(cfg, None, "").await.flat()?;
        gh.comment(pr, crate::adapters::forge::github::PREVIEW_COMMENT, body)
            .await
            .flat()
    })
}

/// How `status` reads the clusters and refreshes.
#[derive(Debug, Clone)]
pub struct StatusOpts {
    /// `sim`, `kube`, or None for Git and the rollout state only.
    pub clusters: Option<ClusterSourceKind>,
    pub sim_delay: std::time::Duration,
    pub kube_context: Option<String>,
    pub cluster_context: Option<String>,
    pub json: bool,
    /// `--output html`: the dashboard's page as one static file.
    pub html: bool,
    pub gh_output: bool,
    pub now: Option<DateTime<Utc>>,
    /// Refresh every this long until interrupted (or `max_refreshes`).
    pub watch: Option<std::time::Duration>,
    pub max_refreshes: Option<u64>,
}

/// `fleetwave status`: per wave and cluster, the values in Git, the running versions, Flux,
/// upgrade progress, gate results and drift (see [`crate::core::status`]).
pub fn status(r: &RemoteArgs, opts: &StatusOpts, out: &mut dyn Write) -> ExitCode {
    let git = match open(r) {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let s = settings(r);
    let rt = watch_runtime();
    let kube = match opts.clusters {
        None | Some(ClusterSourceKind::Sim) => None,
        Some(ClusterSourceKind::Kube) => {
            let w = WorldArgs {
                clusters: ClusterSourceKind::Kube,
                kube_context: opts.kube_context.clone(),
                cluster_context: opts.cluster_context.clone(),
                ..world_defaults()
            };
            match rt.block_on(maybe_kube(&w, &git, &s, &r.remote)) {
                Ok(k) => k,
                Err(e) => return fail(e),
            }
        }
    };
    let history = std::sync::Mutex::new(BaseHistory::default());
    let mut refreshes = 0u64;
    loop {
        let env = StatusEnv {
            git: &git,
            s: &s,
            opts,
            kube: kube.as_ref(),
            history: &history,
            rt: &rt,
            budget_file: cache_dir(r).join(GITHUB_CACHE_FILE),
            web: crate::app::web::web_address(&r.remote),
        };
        let code = match status_once(&env, out) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        refreshes += 1;
        let Some(every) = opts.watch else {
            return code;
        };
        if opts.max_refreshes.is_some_and(|m| refreshes >= m) {
            return code;
        }
        std::thread::sleep(every);
    }
}

fn world_defaults() -> WorldArgs {
    WorldArgs {
        clusters: ClusterSourceKind::Sim,
        kube_context: None,
        cluster_context: None,
        sim_delay: std::time::Duration::from_secs(600).into(),
        sim_fault: Vec::new(),
        events_file: None,
        webhook: Vec::new(),
        webhook_format: HookFormat::Json,
        now: None,
    }
}

/// What each refresh of `status` reads from.
struct StatusEnv<'a> {
    git: &'a GitRepo,
    s: &'a Settings,
    opts: &'a StatusOpts,
    kube: Option<&'a KubeSource>,
    /// With `--clusters sim`: the base history, extended with new commits only.
    history: &'a std::sync::Mutex<BaseHistory>,
    rt: &'a tokio::runtime::Runtime,
    /// The GitHub forge's cache: the rate-limit budget its last answer stated.
    budget_file: PathBuf,
    /// The repository's web address, for the HTML page's pull-request links.
    web: Option<String>,
}

/// The GitHub forge's cache file in the cache directory (see `ForgeArgs::choice`).
const GITHUB_CACHE_FILE: &str = "fleetwave-github.json";

fn status_once(env: &StatusEnv<'_>, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let opts = env.opts;
    let now = opts.now.unwrap_or_else(Utc::now);
    let mut o = reconcile::observe_repo(env.git, env.s).flat()?;
    let in_git = o.git_values(env.git).flat()?;
    if !opts.html {
        // Done with the planner's output (every file's text): free it before the cluster
        // state is read and the report built, instead of holding both at once.
        o.forget_planned();
    }
    let observed = status_observations(env, &o, now)?;
    let waves: Vec<(String, Vec<String>)> = o
        .view
        .waves
        .iter()
        .map(|w| (w.name.clone(), w.clusters.clone()))
        .collect();
    let st = &o.state;
    let mut report =
        crate::core::status::build(&o.plan.name, &waves, &in_git, st, observed.as_ref());
    wave_controls(&mut report, &o, now);
    if opts.html {
        print_html(env, &o, observed.as_ref(), now, out)?;
    } else {
        let budget = crate::adapters::forge::github::last_budget(&env.budget_file);
        print_status(&report, budget.as_ref(), opts, now, out)?;
    }
    if opts.gh_output {
        let report = reconcile::Report {
            outcome: Outcome::Progressing,
            notes: Vec::new(),
            effects: Vec::new(),
            wake_at: None,
            state: st.clone(),
            api_calls: None,
            not_done: Vec::new(),
        };
        crate::app::actions::write_reconcile(&report)?;
    }
    Ok(match st.status {
        crate::core::state::PlanStatus::Halted | crate::core::state::PlanStatus::Failed => {
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    })
}

/// The wave controls of plans that use them (batches, freezes, skipped clusters, automatic
/// rollback); plans without keep today's report.
fn wave_controls(
    report: &mut crate::core::status::Report,
    o: &reconcile::Observed,
    now: DateTime<Utc>,
) {
    if let Some((waves, assumption)) = reconcile::wave_controls(o, &o.state, now) {
        report.waves = waves;
        report.eta_assumption = Some(assumption);
    }
}

/// What the chosen cluster source reports of every cluster of the fleet (None without one).
fn status_observations(
    env: &StatusEnv<'_>,
    o: &reconcile::Observed,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<BTreeMap<String, crate::core::cluster::ClusterObservation>>> {
    use crate::core::cluster::ClusterSource;
    // Every cluster of the fleet, whether a wave selects it or not.
    let names: Vec<String> = o.view.infra.keys().cloned().collect();
    Ok(match (env.opts.clusters, env.kube) {
        (Some(ClusterSourceKind::Sim), _) => {
            let history = env
                .history
                .lock()
                .map_err(|_| anyhow!("the base history was poisoned by a panicked refresh"))?
                .update(env.git, o, 1000)
                .flat()?;
            let sim = SimFlux::new(
                history,
                SimConfig {
                    delay: chrono::Duration::from_std(env.opts.sim_delay).unwrap_or_default(),
                    faults: BTreeMap::new(),
                    branch: env.s.base.clone(),
                },
            );
            Some(env.rt.block_on(sim.observe(&names, now)).flat()?)
        }
        (_, Some(k)) => Some(
            env.rt
                .block_on(Source::Kube(k).observe(&names, now))
                .flat()?,
        ),
        _ => None,
    })
}

/// The status report as JSON or as a table (redrawn in place when watching a terminal).
fn print_status(
    report: &crate::core::status::Report,
    budget: Option<&crate::core::status::ApiBudget>,
    opts: &StatusOpts,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    /// The report with the GitHub budget after its fields, when there is one.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Shown<'a> {
        #[serde(flatten)]
        report: &'a crate::core::status::Report,
        #[serde(skip_serializing_if = "Option::is_none")]
        github_budget: Option<&'a crate::core::status::ApiBudget>,
    }
    if opts.json {
        let shown = Shown {
            report,
            github_budget: budget,
        };
        let text = serde_json::to_string_pretty(&shown).flat()?;
        let _ = writeln!(out, "{text}");
    } else {
        use std::io::IsTerminal;
        if opts.watch.is_some() && std::io::stdout().is_terminal() {
            // Redraw in place.
            let _ = write!(out, "\x1b[2J\x1b[H");
        }
        let mut text = crate::core::status::render(report);
        if let Some(b) = budget {
            text.push_str(&format!(
                "\n{}\n",
                crate::core::status::render_budget(b, now)
            ));
        }
        let _ = write!(out, "{}", crate::core::diag::escape(&text));
        if opts.watch.is_some() {
            let _ = writeln!(
                out,
                "\n(refreshed {}; Ctrl-C to stop)",
                now.format("%H:%M:%S UTC")
            );
        }
    }
    let _ = out.flush();
    Ok(())
}

/// A reconcile tick for the service: each runs on a blocking thread with its own Git handle
/// (git2 repositories are not shared between threads).
struct ServiceTicker {
    remote: RemoteArgs,
    world: WorldArgs,
    forge: ForgeChoice,
    kube: Option<std::sync::Arc<KubeSource>>,
    /// The simulation's base history, kept for the life of the service.
    history: std::sync::Arc<std::sync::Mutex<BaseHistory>>,
    /// Where the dashboard's snapshot goes after each tick (None with `--no-ui`).
    board: Option<crate::app::web::Board>,
    labels: std::sync::Arc<LabelCache>,
}

#[async_trait::async_trait]
impl crate::app::serve::Ticker for ServiceTicker {
    async fn tick(&self) -> anyhow::Result<crate::app::serve::TickSummary> {
        let (remote, world, forge) = (self.remote.clone(), self.world.clone(), self.forge.clone());
        let (kube, history) = (self.kube.clone(), self.history.clone());
        let (board, labels) = (self.board.clone(), self.labels.clone());
        // A plain thread with its own runtime: git2 handles stay on one thread, and no runtime
        // is nested inside the service's.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let result = (|| {
                let faults: BTreeMap<String, Fault> = world
                    .sim_fault
                    .iter()
                    .map(|f| parse_fault(f))
                    .collect::<anyhow::Result<_>>()?;
                let git = open(&remote)?;
                let notify = notifier(&world)?;
                let s = settings(&remote);
                let env = TickEnv {
                    git: &git,
                    w: &world,
                    faults: &faults,
                    notify: &notify,
                    s: &s,
                    kube: kube.as_deref(),
                    history: &history,
                };
                let now = world.now.unwrap_or_else(Utc::now);
                let (report, _) = runtime().block_on(tick_once(&env, &forge, now, false))?;
                if let Some(board) = &board {
                    let web = crate::app::web::web_address(&remote.remote);
                    match service_snapshot(&env, &labels, web, now) {
                        Ok(snap) => board.put(snap),
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "dashboard not updated")
                        }
                    }
                }
                Ok(crate::app::serve::TickSummary::from_report(&report))
            })();
            let _ = tx.send(result);
        });
        rx.await
            .map_err(|_| anyhow!("the tick's thread ended without an answer (panic?)"))?
    }
}

pub fn serve(
    remote: RemoteArgs,
    world: WorldArgs,
    forge: ForgeChoice,
    cfg: crate::app::serve::ServeConfig,
    ui: UiOpts,
) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        let (server, board) = bind_with_dashboard(cfg, ui).await?;
        // The watches live as long as the service; git2 handles do not cross threads, so the
        // cluster list for per-cluster mode is read on a blocking thread.
        let kube = if world.clusters == ClusterSourceKind::Kube {
            let (r, w) = (remote.clone(), world.clone());
            let names = tokio::task::spawn_blocking(move || -> anyhow::Result<PlanClusters> {
                if w.cluster_context.is_none() {
                    return Ok(PlanClusters::default());
                }
                plan_clusters(&open(&r)?, &settings(&r))
            })
            .await??;
            let src = std::sync::Arc::new(kube_source(&world, &names, &remote.remote).await?);
            forward_changes(src.changes(), server.trigger());
            Some(src)
        } else {
            None
        };
        let ticker = std::sync::Arc::new(ServiceTicker {
            remote,
            world,
            forge,
            kube,
            history: Default::default(),
            board,
            labels: Default::default(),
        });
        server
            .run(ticker, crate::app::serve::shutdown_signal())
            .await
            .flat()
    });
    match result {
        Ok(()) => {
            eprintln!("fleetwave serve: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// At most one tick every this long is asked for by Kubernetes watch events: a busy hub
/// updates some status every few seconds, and each tick costs forge API calls.
const WATCH_TICK_GAP: std::time::Duration = std::time::Duration::from_secs(5);

/// Turn watch events into (rate-limited) tick requests.
pub(crate) fn forward_changes(
    mut changes: tokio::sync::watch::Receiver<u64>,
    trigger: crate::app::serve::Trigger,
) {
    changes.mark_unchanged();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            trigger.fire();
            tokio::time::sleep(WATCH_TICK_GAP).await;
        }
    });
}

/// The labels of the fleet's clusters, kept while the fleet tree and plan are unchanged
/// (reading them plans the fleet, which the tick itself may not have needed to do).
pub(crate) type LabelCache = std::sync::Mutex<
    Option<(
        crate::app::reconcile::cache::PlanKey,
        std::sync::Arc<crate::app::web::Labels>,
    )>,
>;

fn dashboard_labels(
    git: &GitRepo,
    o: &reconcile::Observed,
    cache: &LabelCache,
) -> anyhow::Result<std::sync::Arc<crate::app::web::Labels>> {
    let mut cached = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((key, labels)) = cached.as_ref()
        && *key == o.key
    {
        return Ok(labels.clone());
    }
    let planned = o.planned(git).flat()?;
    let labels: crate::app::web::Labels = planned
        .fleet
        .clusters
        .iter()
        .map(|(name, c)| (name.clone(), c.labels.clone()))
        .collect();
    let labels = std::sync::Arc::new(labels);
    *cached = Some((o.key.clone(), labels.clone()));
    Ok(labels)
}

/// The plan's last [`crate::app::web::HISTORY_LEN`] entries of the audit log, newest first.
fn dashboard_history(
    git: &GitRepo,
    s: &Settings,
    plan: &str,
) -> anyhow::Result<Vec<crate::app::web::AuditEntry>> {
    let Some(head) = git.branch_head(&s.state_branch).flat()? else {
        return Ok(Vec::new());
    };
    // The state branch holds every plan's commits; keep this plan's.
    let mine = format!("fleetwave: {plan} ");
    Ok(git
        .first_parent_log(&head, 4 * crate::app::web::HISTORY_LEN)
        .flat()?
        .into_iter()
        .filter(|c| c.message.starts_with(&mine))
        .take(crate::app::web::HISTORY_LEN)
        .map(|c| crate::app::web::AuditEntry {
            time: c.time,
            commit: c.id,
            message: c.message,
        })
        .collect())
}

/// What the dashboard shows of one plan: the status report of `observed`, the state, labels,
/// the audit log and the soak of each wave.
fn dashboard_snapshot(
    git: &GitRepo,
    s: &Settings,
    o: &reconcile::Observed,
    observed: Option<&BTreeMap<String, crate::core::cluster::ClusterObservation>>,
    labels: &LabelCache,
    web: Option<String>,
    now: DateTime<Utc>,
) -> anyhow::Result<crate::app::web::PlanSnapshot> {
    let in_git = o.git_values(git).flat()?;
    let waves: Vec<(String, Vec<String>)> = o
        .view
        .waves
        .iter()
        .map(|w| (w.name.clone(), w.clusters.clone()))
        .collect();
    let mut report = crate::core::status::build(&o.plan.name, &waves, &in_git, &o.state, observed);
    wave_controls(&mut report, o, now);
    let soaks = o
        .plan
        .waves
        .iter()
        .map(|w| (w.name.clone(), w.soak))
        .collect();
    Ok(crate::app::web::PlanSnapshot::new(
        report,
        o.state.clone(),
        &soaks,
        dashboard_labels(git, o, labels)?,
        dashboard_history(git, s, &o.plan.name)?,
        web,
        now,
    ))
}

/// After a service tick: read the base and state again (what the tick wrote), observe every
/// cluster through the tick's own source (the simulation with its faults, or the kube
/// watches' caches) and build the dashboard's snapshot. Page views then read only this.
pub(crate) fn service_snapshot(
    env: &TickEnv<'_>,
    labels: &LabelCache,
    web: Option<String>,
    now: DateTime<Utc>,
) -> anyhow::Result<crate::app::web::PlanSnapshot> {
    use crate::core::cluster::ClusterSource;
    let o = reconcile::observe_repo(env.git, env.s).flat()?;
    let source = env.source(&o)?;
    let names: Vec<String> = o.view.infra.keys().cloned().collect();
    let observed = runtime().block_on(source.observe(&names, now)).flat()?;
    dashboard_snapshot(env.git, env.s, &o, Some(&observed), labels, web, now)
}

/// Bind the service and, unless `--no-ui`, mount the dashboard (on `--listen` or
/// `--ui-listen`); the board each tick's snapshot goes to.
pub(crate) async fn bind_with_dashboard(
    cfg: crate::app::serve::ServeConfig,
    ui: UiOpts,
) -> anyhow::Result<(crate::app::serve::Server, Option<crate::app::web::Board>)> {
    let refresh = cfg.interval.as_secs().clamp(5, 60);
    let mut server = crate::app::serve::Server::bind(cfg)
        .await
        .context("cannot listen")?;
    eprintln!("fleetwave serve: listening on {}", server.local_addr());
    let board = ui.enabled.then(crate::app::web::Board::default);
    if let Some(b) = &board {
        server = server
            .with_dashboard(crate::app::web::routes(b.clone(), refresh), ui.listen)
            .await
            .context("cannot listen for the dashboard (--ui-listen)")?;
        if let Some(addr) = server.ui_addr() {
            eprintln!("fleetwave serve: dashboard on http://{addr}/");
        }
    }
    Ok((server, board))
}

/// How `serve` shows its dashboard.
#[derive(Debug, Clone, Copy)]
pub struct UiOpts {
    /// `--no-ui`: no dashboard routes at all.
    pub enabled: bool,
    /// `--ui-listen`: answer the dashboard there instead of on `--listen`.
    pub listen: Option<std::net::SocketAddr>,
}

/// `status --output html`: the dashboard's page as one file, every cluster's detail in it.
fn print_html(
    env: &StatusEnv<'_>,
    o: &reconcile::Observed,
    observed: Option<&BTreeMap<String, crate::core::cluster::ClusterObservation>>,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use crate::app::web::{Mode, Query, render};
    let snap = dashboard_snapshot(
        env.git,
        env.s,
        o,
        observed,
        &LabelCache::default(),
        env.web.clone(),
        now,
    )?;
    let page = render::page(
        &[std::sync::Arc::new(snap)],
        &Query::default(),
        Mode::Static,
    );
    out.write_all(page.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the HTML report")
}
