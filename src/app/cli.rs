//! The command line: argument parsing and printing. Everything it shows comes from the core.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::core::diag::{Diags, Severity};
use crate::core::planner::{self, Planned};
use crate::core::steps;

#[derive(Parser, Debug)]
#[command(
    name = "fleetwave",
    version,
    about = "Upgrade fleets of Kubernetes clusters wave by wave through their GitOps repository"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Color {
    Auto,
    Always,
    Never,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what the plan would change, wave by wave, without writing anything.
    Plan {
        /// Root of the fleet repository.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The FleetUpgradePlan file.
        #[arg(long)]
        plan: PathBuf,
        /// Print a unified diff of every step.
        #[arg(long)]
        diff: bool,
        /// A plan that matches nothing exits 1 instead of 2.
        #[arg(long)]
        allow_empty: bool,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
        /// Start time for the earliest-finish estimate (RFC 3339; default: now).
        #[arg(long, env = "FLEETWAVE_NOW", hide = true)]
        now: Option<DateTime<Utc>>,
        /// Write step outputs and a job summary for GitHub Actions.
        #[arg(long)]
        github_output: bool,
        /// Post the preview as the managed comment of this pull request.
        #[arg(long)]
        comment_pr: Option<u64>,
        /// owner/repo for --comment-pr.
        #[arg(long, env = "GITHUB_REPOSITORY")]
        github_repo: Option<String>,
        #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
        github_api: String,
        #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
        github_token: Option<String>,
    },
    /// Write one wave's edits (all its steps, or step N) into the working tree; no commit.
    Apply {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        wave: String,
        /// Only this step (1-based); earlier steps must already be in the tree.
        #[arg(long)]
        step: Option<usize>,
        /// A plan that matches nothing exits 1 instead of 2 (nothing is written).
        #[arg(long)]
        allow_empty: bool,
    },
    /// One reconcile tick (observe, decide, act) against the fleet remote.
    Reconcile {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        world: WorldArgs,
        /// Run a single tick and exit: 0 progressing or done, 1 held, 2 error.
        #[arg(long)]
        once: bool,
        /// Seconds between ticks when not --once.
        #[arg(long, default_value_t = 60)]
        interval: u64,
        /// Print the actions without doing them.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        forge: ForgeArgs,
        /// Write step outputs and a job summary for GitHub Actions.
        #[arg(long)]
        github_output: bool,
    },
    /// Pause a running plan: nothing more is opened or merged until `resume`.
    Pause {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Resume a paused or halted plan.
    Resume {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Revert the merged steps of a failed wave (and any merged waves named) where that is safe.
    Rollback {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Waves to roll back (default: the failed wave).
        #[arg(long)]
        wave: Vec<String>,
        /// Allow reverting patch-level Kubernetes changes (never minor downgrades).
        #[arg(long)]
        allow_downgrade: bool,
        /// Merge the revert branches too (local forge).
        #[arg(long)]
        merge: bool,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, env = "FLEETWAVE_NOW", hide = true)]
        now: Option<DateTime<Utc>>,
    },
    /// Run the reconciler as a service: ticks on an interval and on GitHub webhooks; serves
    /// /metrics, /healthz and /readyz; stops cleanly on SIGTERM after the current tick.
    Serve {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        world: WorldArgs,
        #[command(flatten)]
        forge: ForgeArgs,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Seconds between ticks (webhooks tick at once).
        #[arg(long, default_value_t = 300)]
        interval: u64,
        /// Secret of the GitHub webhook (HMAC-SHA256); without it /webhook answers 404.
        #[arg(long, env = "FLEETWAVE_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
    },
    /// Per wave and cluster: rollout state, values in Git, Flux state where a source is given.
    Status {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Cluster state source: `kube` (a Flux hub, or `--cluster-context`) or `sim`; without
        /// it only Git and the rollout state are shown.
        #[arg(long)]
        clusters: Option<String>,
        /// Kubeconfig context of the hub cluster (default: the current context, or in-cluster).
        #[arg(long)]
        kube_context: Option<String>,
        /// Per-cluster mode: each cluster's kubeconfig context, `{cluster}` standing for its name.
        #[arg(long)]
        cluster_context: Option<String>,
        #[arg(long, default_value = "10m")]
        sim_delay: humantime::Duration,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Write step outputs and a job summary for GitHub Actions.
        #[arg(long)]
        github_output: bool,
        /// Refresh until interrupted; optionally how often (default 5s).
        #[arg(long, num_args = 0..=1, default_missing_value = "5s")]
        watch: Option<humantime::Duration>,
        /// Stop `--watch` after this many refreshes (for scripts and tests).
        #[arg(long, hide = true)]
        max_refreshes: Option<u64>,
        #[arg(long, env = "FLEETWAVE_NOW", hide = true)]
        now: Option<DateTime<Utc>>,
    },
    /// Print the rollout's audit log (the history of the state branch).
    History {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Run a whole rollout on the example fleet with a local forge and a simulated Flux.
    Demo {
        /// Example plan: k8s-minor, chained, gitops-base or k0rdent-template.
        #[arg(long, default_value = "chained")]
        plan: String,
        /// Inject a failure: CLUSTER or CLUSTER=HealthCheckFailed|StuckProgressing|AlertFiring.
        #[arg(long)]
        fail: Vec<String>,
        /// Fleet seconds per real second.
        #[arg(long, default_value_t = 86_400.0)]
        scale: f64,
        /// Keep the demo's repositories in this directory.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Print events as lines instead of a live view.
        #[arg(long)]
        plain: bool,
    },
    /// Developer tools.
    #[command(hide = true, subcommand)]
    Dev(Dev),
}

/// Where the fleet repo is and how to sign commits.
#[derive(clap::Args, Debug, Clone)]
pub struct RemoteArgs {
    /// The fleet repository's remote: a URL or a local path.
    #[arg(long)]
    pub remote: String,
    /// The plan file, relative to the repository root.
    #[arg(long)]
    pub plan: PathBuf,
    #[arg(long, default_value = "main")]
    pub base: String,
    /// Local cache for the repository (default: under the user's cache directory).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// HTTPS token (the GITHUB_TOKEN of Actions works).
    #[arg(long, env = "FLEETWAVE_GIT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// SSH private key (a deploy key) for `ssh://` and `git@host:` remotes; without it the
    /// SSH agent is asked. Host keys are checked against ~/.ssh/known_hosts.
    #[arg(long, env = "FLEETWAVE_SSH_KEY")]
    pub ssh_key: Option<PathBuf>,
    /// Passphrase of `--ssh-key`, if it has one.
    #[arg(long, env = "FLEETWAVE_SSH_KEY_PASSPHRASE", hide_env_values = true)]
    pub ssh_key_passphrase: Option<String>,
    /// The user named with a secret in `--remote` (which is taken out of the URL).
    #[arg(skip)]
    pub token_user: Option<String>,
    #[arg(long, default_value = "fleetwave")]
    pub author_name: String,
    #[arg(long, default_value = "fleetwave@users.noreply.local")]
    pub author_email: String,
    /// Keep a dashboard issue per plan, edited in place (GitHub forge).
    #[arg(long)]
    pub dashboard: bool,
    /// Commit and PR title template: {plan}, {wave}, {step}, {title}, {what}.
    #[arg(long, default_value = crate::app::reconcile::DEFAULT_TITLE)]
    pub title_template: String,
}

/// Where cluster state comes from and where events go.
#[derive(clap::Args, Debug, Clone)]
pub struct WorldArgs {
    /// Cluster state source: `kube` reads Flux Kustomizations from the hub cluster (kubeconfig,
    /// `--kube-context`, or in-cluster); `sim` is the simulated Flux (demos and tests). Required,
    /// so a production run can never gate on simulated health by accident.
    #[arg(long)]
    pub clusters: String,
    /// Kubeconfig context of the hub cluster (default: the current context, or in-cluster).
    #[arg(long)]
    pub kube_context: Option<String>,
    /// Per-cluster mode: the kubeconfig context of each cluster, `{cluster}` standing for its
    /// name (e.g. `{cluster}` or `admin@{cluster}`). Each cluster is watched for Flux in
    /// `flux-system`, Nodes and Pods, and its apiserver `/version` is read. The hub is then
    /// watched only when `--kube-context` is also given.
    #[arg(long)]
    pub cluster_context: Option<String>,
    /// Simulated Flux: time from a merge to Flux applying it.
    #[arg(long, default_value = "10m")]
    pub sim_delay: humantime::Duration,
    /// Simulated Flux fault: CLUSTER=HealthCheckFailed|StuckProgressing|AlertFiring.
    #[arg(long)]
    pub sim_fault: Vec<String>,
    /// Append alerts and telemetry to this JSONL file (idempotent by event id).
    #[arg(long)]
    pub events_file: Option<PathBuf>,
    /// Post alerts and telemetry to this webhook.
    #[arg(long)]
    pub webhook: Vec<String>,
    #[arg(long, value_enum, default_value_t = HookFormat::Json)]
    pub webhook_format: HookFormat,
    /// The time to act at (RFC 3339), for tests and replays.
    #[arg(long, env = "FLEETWAVE_NOW", hide = true)]
    pub now: Option<DateTime<Utc>>,
}

/// The forge that hosts step pull requests.
#[derive(clap::Args, Debug, Clone)]
pub struct ForgeArgs {
    /// `local` (branches and merge commits only) or `github`.
    #[arg(long, default_value = "local")]
    pub forge: String,
    /// GitHub REST root; GitHub Enterprise: https://HOST/api/v3.
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api: String,
    /// owner/repo (default: from --remote).
    #[arg(long)]
    pub github_repo: Option<String>,
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
    /// GitHub App id (with --github-app-key) instead of a token.
    #[arg(long, env = "FLEETWAVE_GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// GitHub App private key file (PEM).
    #[arg(long, env = "FLEETWAVE_GITHUB_APP_KEY")]
    pub github_app_key: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = crate::adapters::forge::github::MergeMethod::Merge)]
    pub merge_method: crate::adapters::forge::github::MergeMethod,
    /// Labels for step pull requests.
    #[arg(long, default_value = "fleetwave")]
    pub label: Vec<String>,
    /// Link for the gate status (e.g. a dashboard).
    #[arg(long)]
    pub target_url: Option<String>,
    /// Also post a check run with the per-cluster table (on by default for GitHub Apps).
    #[arg(long)]
    pub check_runs: bool,
    /// Users whose approving review opens an approval gate.
    #[arg(long)]
    pub approver: Vec<String>,
    /// Teams (org/team) whose members' approvals count.
    #[arg(long)]
    pub approver_team: Vec<String>,
}

impl ForgeArgs {
    pub fn choice(&self, r: &RemoteArgs) -> Result<crate::app::ops::ForgeChoice, String> {
        use crate::adapters::forge::github::{GitHubAuth, GitHubConfig, owner_repo};
        match self.forge.as_str() {
            "local" => Ok(crate::app::ops::ForgeChoice::Local),
            "github" => {
                let (owner, repo) = match &self.github_repo {
                    Some(s) => s.split_once('/').map(|(o, r)| (o.to_string(), r.to_string())).ok_or_else(|| format!("--github-repo {s:?} is not owner/repo"))?,
                    None => owner_repo(&r.remote).ok_or_else(|| format!("cannot tell owner/repo from --remote {}; pass --github-repo owner/repo", r.remote))?,
                };
                let app = self.github_app_id.is_some() && self.github_app_key.is_some();
                let auth = match (&self.github_app_id, &self.github_app_key, &self.github_token) {
                    (Some(id), Some(key), _) => GitHubAuth::App { app_id: *id, key_pem: std::fs::read_to_string(key).map_err(|e| format!("cannot read {}: {e}", key.display()))? },
                    (_, _, Some(t)) => GitHubAuth::Token(t.clone()),
                    _ => return Err("the github forge needs GITHUB_TOKEN (or --github-token), or --github-app-id with --github-app-key".into()),
                };
                let cache_file = Some(crate::app::ops::cache_dir(r).join("fleetwave-github.json"));
                Ok(crate::app::ops::ForgeChoice::GitHub(Box::new(
                    GitHubConfig {
                        api: self.github_api.trim_end_matches('/').to_string(),
                        owner,
                        repo,
                        auth,
                        merge_method: self.merge_method,
                        labels: self.label.clone(),
                        target_url: self.target_url.clone(),
                        approvers: self.approver.clone(),
                        approver_teams: self.approver_team.clone(),
                        cache_file,
                        check_runs: self.check_runs || app,
                    },
                )))
            }
            other => Err(format!("unknown forge {other:?}: use local or github")),
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum HookFormat {
    Json,
    Slack,
}

#[derive(Subcommand, Debug)]
pub enum Dev {
    /// Write a synthetic fleet for benchmarks.
    GenFleet {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        clusters: usize,
    },
}

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
        Command::Plan {
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
        } => {
            let p = match crate::adapters::disk::prepare(&repo, &plan) {
                Ok(p) => p,
                Err(d) => return fail(&d),
            };
            let colored = match color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
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
                    eprintln!("error: {e}");
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
        Command::Apply {
            repo,
            plan,
            wave,
            step,
            allow_empty,
        } => {
            // Held from reading to writing: a second apply reads what this one wrote.
            let _lock = match crate::adapters::disk::lock_tree(&repo) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {}: {e}\nnothing was written", repo.display());
                    return ExitCode::from(2);
                }
            };
            let p = match crate::adapters::disk::prepare(&repo, &plan) {
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
            let edits = match planner::edits(&p, &wave, step) {
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
            if let Err((rel, e)) = crate::adapters::disk::write_all(&repo, &edits, &old) {
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
        Command::Reconcile {
            remote,
            world,
            once,
            interval,
            dry_run,
            forge,
            github_output,
        } => {
            let choice = match forge.choice(&remote) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
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
            let choice = match forge.choice(&remote) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let cfg = crate::app::serve::ServeConfig {
                listen,
                interval: std::time::Duration::from_secs(interval),
                webhook_secret,
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
        Command::Dev(Dev::GenFleet { out, clusters }) => {
            match crate::app::generate::generate_fleet(&out, clusters) {
                Ok(s) => {
                    let _ = writeln!(
                        stdout,
                        "{} clusters, {} files, {} bytes in {}",
                        s.clusters,
                        s.files,
                        s.bytes,
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
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
