//! The command line's arguments (clap): the commands and the options they share, and what
//! the forge options select.

use chrono::{DateTime, Utc};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "fleetwave",
    version,
    about = "Upgrade fleets of Kubernetes clusters wave by wave through their GitOps repository"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines on stderr as text or as one JSON object per line (for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, env = "FLEETWAVE_LOG_FORMAT")]
    pub log_format: Output,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// `status --output`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum StatusOutput {
    Text,
    Json,
    /// The web dashboard's page as one static file (every cluster's detail in it).
    Html,
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
        /// `text` for people, `json` for scripts (with `--diff`, each step carries its diff).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Colour the text output: `auto` (a terminal without NO_COLOR), `always` or `never`.
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
        /// GitHub REST root for --comment-pr; GitHub Enterprise: https://HOST/api/v3.
        #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
        github_api: String,
        /// Token for --comment-pr (pull requests: write).
        #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
        github_token: Option<String>,
    },
    /// Write one wave's edits (all its steps, or step N) into the working tree; no commit.
    Apply {
        /// Root of the fleet repository (its working tree is written).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The FleetUpgradePlan file.
        #[arg(long)]
        plan: PathBuf,
        /// The wave whose edits to write (a `name` under `spec.waves`).
        #[arg(long)]
        wave: String,
        /// Only this step (1-based); earlier steps must already be in the tree.
        #[arg(long)]
        step: Option<usize>,
        /// A plan that matches nothing exits 1 instead of 2 (nothing is written).
        #[arg(long)]
        allow_empty: bool,
    },
    /// List every cluster the repository holds: kinds, files, labels, Kubernetes versions,
    /// gitops-base tag, and the wave each plan puts it in.
    Clusters {
        /// Root of the fleet repository.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Plan files to place the clusters in waves (default: the plans under `plans/`).
        #[arg(long)]
        plan: Vec<PathBuf>,
        /// `text` for people, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Write a starter plan for this repository (and, with --github, a workflow); never
    /// overwrites without --force.
    Init {
        /// Root of the fleet repository.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Where to write the plan, relative to --repo.
        #[arg(long, default_value = "plans/fleet-upgrade.yaml")]
        plan: PathBuf,
        /// Also write .github/workflows/fleetwave.yaml, a scheduled reconcile.
        #[arg(long)]
        github: bool,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
    /// Show how fleetwave reads one cluster: its files, the fields it manages and by which
    /// rule, its labels and wave, and what the plan would change, step by step.
    Explain {
        /// The cluster's name (as `fleetwave clusters` lists it).
        cluster: String,
        /// Root of the fleet repository.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The plan whose changes to show (default: the plans under `plans/`).
        #[arg(long)]
        plan: Vec<PathBuf>,
    },
    /// One reconcile tick (observe, decide, act) against the fleet remote.
    Reconcile {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        author: AuthorArgs,
        #[command(flatten)]
        prs: PrArgs,
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
        /// Every plan under --plans-dir on the base branch instead of one --plan: later
        /// plans that conflict with earlier ones wait (exit 1), invalid plans exit 2 after
        /// the others ticked.
        #[arg(long, conflicts_with = "plan")]
        all: bool,
        #[command(flatten)]
        plans: PlansArgs,
    },
    /// Pause a running plan: nothing more is opened or merged until `resume`.
    Pause {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        author: AuthorArgs,
    },
    /// Resume a paused or halted plan.
    Resume {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        author: AuthorArgs,
    },
    /// Revert the merged steps of a failed wave (and any merged waves named) where that is safe.
    Rollback {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        author: AuthorArgs,
        /// Waves to roll back (default: the failed wave).
        #[arg(long)]
        wave: Vec<String>,
        /// Allow reverting patch-level Kubernetes changes (never minor downgrades).
        #[arg(long)]
        allow_downgrade: bool,
        /// Also merge each rollback branch into the base branch and push it with the Git
        /// credentials (no pull request). On GitHub a protected base branch refuses that push
        /// unless the token may bypass the protection: leave --merge out there and open a pull
        /// request from the pushed `fleetwave/<plan>/<wave>/rollback` branch instead.
        #[arg(long)]
        merge: bool,
        /// Print what would be pushed (and merged) without pushing anything.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, env = "FLEETWAVE_NOW", hide = true)]
        now: Option<DateTime<Utc>>,
    },
    /// Run the reconciler as a service: ticks on an interval and on GitHub webhooks; serves
    /// /metrics, /healthz and /readyz; stops cleanly on SIGTERM after the current tick.
    Serve {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        author: AuthorArgs,
        #[command(flatten)]
        prs: PrArgs,
        #[command(flatten)]
        world: WorldArgs,
        #[command(flatten)]
        forge: ForgeArgs,
        /// Address for webhooks, /metrics, /healthz and /readyz.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Seconds between ticks (webhooks tick at once).
        #[arg(long, default_value_t = 300)]
        interval: u64,
        /// Secret of the GitHub webhook (HMAC-SHA256); without it /webhook answers 404.
        #[arg(long, env = "FLEETWAVE_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
        #[command(flatten)]
        plans: PlansArgs,
        #[command(flatten)]
        leases: LeaseArgs,
        /// Do not serve the read-only web dashboard (`GET /`, `GET /cluster`).
        #[arg(long)]
        no_ui: bool,
        /// Serve the dashboard on this address instead of on --listen.
        #[arg(long, conflicts_with = "no_ui")]
        ui_listen: Option<std::net::SocketAddr>,
    },
    /// Per wave and cluster: rollout state, values in Git, Flux state where a source is given.
    Status {
        #[command(flatten)]
        repo: RepoArgs,
        /// Cluster state source: `kube` (a Flux hub, or `--cluster-context`) or `sim`; without
        /// it only Git and the rollout state are shown.
        #[arg(long, value_enum)]
        clusters: Option<ClusterSourceKind>,
        /// Kubeconfig context of the hub cluster (default: the current context, or in-cluster).
        #[arg(long)]
        kube_context: Option<String>,
        /// Per-cluster mode: each cluster's kubeconfig context, `{cluster}` standing for its name.
        #[arg(long)]
        cluster_context: Option<String>,
        /// With `--clusters sim`: the simulated time from a merge to Flux applying it.
        #[arg(long, default_value = "10m")]
        sim_delay: humantime::Duration,
        /// `text` for people, `json` for scripts, `html` for the dashboard's page as one file.
        #[arg(long, value_enum, default_value_t = StatusOutput::Text)]
        output: StatusOutput,
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
        repo: RepoArgs,
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
        /// Keep the demo's repositories (fleet.git, its cache, events.jsonl) in this new or
        /// empty directory, so that `status`, `history` and the printed `rollback` can run
        /// against them afterwards. Without it they are deleted on exit.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Print events as lines instead of a live view.
        #[arg(long)]
        plain: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) to stdout.
    Completions {
        /// The shell to complete for, e.g. `fleetwave completions bash > /etc/bash_completion.d/fleetwave`.
        #[arg(value_enum)]
        shell: crate::app::completions::Shell,
    },
    /// Write the next Kubernetes plan for the fleet from the release catalog.
    Propose {
        /// Root of the fleet repository.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// patch: the newest patch of the minor the fleet runs; minor: the next minor;
        /// stable: the newest supported minor but one.
        #[arg(long, value_enum)]
        channel: ChannelArg,
        /// Where to write the plan, relative to --repo (default plans/k8s-<target>.yaml).
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Overwrite the plan file if it exists.
        #[arg(long)]
        force: bool,
        /// The day that decides which releases are supported (RFC 3339; default: now).
        #[arg(long, env = "FLEETWAVE_NOW", hide = true)]
        now: Option<DateTime<Utc>>,
        /// Push the plan to a branch of --remote and open a pull request for it (with
        /// --forge github) instead of writing it into --repo.
        #[arg(long, requires = "remote")]
        open_pr: bool,
        /// The fleet repository the pull request goes to (URL or path).
        #[arg(long)]
        remote: Option<String>,
        /// The branch the pull request targets.
        #[arg(long, default_value = "main")]
        base: String,
        /// Token for HTTPS Git access to --remote.
        #[arg(long, env = "FLEETWAVE_GIT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(flatten)]
        author: AuthorArgs,
        #[command(flatten)]
        forge: ForgeArgs,
    },
    /// Show the Kubernetes release catalog plans take their hops from, or write a fresh one.
    Versions {
        #[command(subcommand)]
        update: Option<VersionsCommand>,
        /// Show this catalog file instead of the built-in one.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Text, or JSON for scripts.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// The day that decides which releases are past end of life (RFC 3339; default: now).
        #[arg(long, env = "FLEETWAVE_NOW", hide = true)]
        now: Option<DateTime<Utc>>,
    },
    /// Take a cluster out of the rollout for good: it gets no more changes and counts neither
    /// as converged nor as failed. Recorded in the state with who and why; a second run
    /// changes nothing.
    Skip {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        author: AuthorArgs,
        /// The cluster to skip.
        #[arg(long)]
        cluster: String,
        /// Why (kept in the state and the history).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who skips it (default: $USER, else the commit author name).
        #[arg(long)]
        by: Option<String>,
        #[arg(long, env = "FLEETWAVE_NOW", hide = true)]
        now: Option<DateTime<Utc>>,
    },
    /// Re-run a failed or skipped cluster (or every failed one) with the same plan revision:
    /// a new batch with new pull requests. Recorded with who and why; a second run changes
    /// nothing.
    Retry {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        author: AuthorArgs,
        /// The cluster to re-run.
        #[arg(long, conflicts_with = "failed", required_unless_present = "failed")]
        cluster: Option<String>,
        /// Re-run every failed cluster.
        #[arg(long)]
        failed: bool,
        /// Why (kept in the history).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who retries (default: $USER, else the commit author name).
        #[arg(long)]
        by: Option<String>,
        #[arg(long, env = "FLEETWAVE_NOW", hide = true)]
        now: Option<DateTime<Utc>>,
    },
}

/// `propose --channel`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelArg {
    Patch,
    Minor,
    Stable,
}

impl From<ChannelArg> for crate::core::catalog::Channel {
    fn from(c: ChannelArg) -> Self {
        match c {
            ChannelArg::Patch => Self::Patch,
            ChannelArg::Minor => Self::Minor,
            ChannelArg::Stable => Self::Stable,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum VersionsCommand {
    /// Fetch the release list and write it as a catalog file for `spec.versionCatalog`.
    Update {
        /// The endoflife.date product API for Kubernetes, or a URL serving a catalog file.
        #[arg(long, default_value = crate::app::commands::versions::DEFAULT_SOURCE)]
        from: String,
        /// The catalog file to write (replaced all at once), e.g. `catalog/kubernetes.yaml`.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Where the fleet repository is and how to reach it: every command that works on the
/// remote takes these.
#[derive(clap::Args, Debug, Clone)]
pub struct RepoArgs {
    /// The fleet repository's remote: a URL or a local path.
    #[arg(long)]
    pub remote: String,
    /// The plan file, relative to the repository root (committed on --base). `serve`
    /// without it, and `reconcile --all`, run every plan under --plans-dir.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// The branch the plan and the fleet live on, where step pull requests merge.
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
}

/// Where plans are discovered (`serve` without --plan, `reconcile --all`).
#[derive(clap::Args, Debug, Clone)]
pub struct PlansArgs {
    /// The folder of the fleet repository whose FleetUpgradePlans run (at the head of --base).
    #[arg(long, default_value = crate::core::discovery::DEFAULT_DIR)]
    pub plans_dir: PathBuf,
}

/// Leader election with a `coordination.k8s.io/v1` Lease per plan (`serve`): on with
/// `--clusters kube`, `--leases` or `--lease-namespace`.
#[derive(clap::Args, Debug, Clone)]
pub struct LeaseArgs {
    /// Elect one acting replica per plan through Leases (default with --clusters kube).
    #[arg(long)]
    pub leases: bool,
    /// Namespace of the Leases (turns leases on; default: the pod's, from POD_NAMESPACE,
    /// else fleetwave-system).
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// How long a Lease lasts unrenewed: a stopped replica's plans are taken over after it.
    #[arg(long, default_value = "15s")]
    pub lease_duration: humantime::Duration,
    /// This replica's identity in the Leases (default: POD_NAME, else HOSTNAME).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// Who signs the commits a command writes (state, steps, rollbacks).
#[derive(clap::Args, Debug, Clone)]
pub struct AuthorArgs {
    /// Author name of the commits fleetwave writes.
    #[arg(long, default_value = "fleetwave")]
    pub author_name: String,
    /// Author e-mail of the commits fleetwave writes.
    #[arg(long, default_value = "fleetwave@users.noreply.local")]
    pub author_email: String,
}

impl Default for AuthorArgs {
    fn default() -> Self {
        AuthorArgs {
            author_name: "fleetwave".into(),
            author_email: "fleetwave@users.noreply.local".into(),
        }
    }
}

/// How step pull requests look (the commands that open them: reconcile, serve).
#[derive(clap::Args, Debug, Clone)]
pub struct PrArgs {
    /// Keep a dashboard issue per plan, edited in place (GitHub forge).
    #[arg(long)]
    pub dashboard: bool,
    /// Commit and PR title template: {plan}, {wave}, {step}, {title}, {what}.
    #[arg(long, default_value = crate::app::reconcile::DEFAULT_TITLE)]
    pub title_template: String,
}

impl Default for PrArgs {
    fn default() -> Self {
        PrArgs {
            dashboard: false,
            title_template: crate::app::reconcile::DEFAULT_TITLE.into(),
        }
    }
}

/// Everything the rollout commands need to reach the fleet repository and write to it: the
/// argument groups above in one value (commands that do not write take the defaults).
#[derive(Debug, Clone)]
pub struct RemoteArgs {
    pub remote: String,
    pub plan: PathBuf,
    pub base: String,
    pub cache: Option<PathBuf>,
    pub token: Option<String>,
    pub ssh_key: Option<PathBuf>,
    pub ssh_key_passphrase: Option<String>,
    /// The user named with a secret in `--remote` (which is taken out of the URL).
    pub token_user: Option<String>,
    pub author_name: String,
    pub author_email: String,
    pub dashboard: bool,
    pub title_template: String,
}

impl RemoteArgs {
    pub fn new(repo: RepoArgs, author: AuthorArgs, prs: PrArgs) -> RemoteArgs {
        RemoteArgs {
            remote: repo.remote,
            // Empty without --plan: only plan discovery (serve, reconcile --all) runs then.
            plan: repo.plan.unwrap_or_default(),
            base: repo.base,
            cache: repo.cache,
            token: repo.token,
            ssh_key: repo.ssh_key,
            ssh_key_passphrase: repo.ssh_key_passphrase,
            token_user: None,
            author_name: author.author_name,
            author_email: author.author_email,
            dashboard: prs.dashboard,
            title_template: prs.title_template,
        }
    }
}

/// Where cluster state comes from and where events go.
#[derive(clap::Args, Debug, Clone)]
pub struct WorldArgs {
    /// Cluster state source: `kube` reads Flux Kustomizations from the hub cluster (kubeconfig,
    /// `--kube-context`, or in-cluster); `sim` is the simulated Flux (demos and tests). Required,
    /// so a production run can never gate on simulated health by accident.
    #[arg(long, value_enum)]
    pub clusters: ClusterSourceKind,
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
    /// Simulated Flux fault: CLUSTER=HealthCheckFailed|StuckProgressing|AlertFiring|Unreachable.
    #[arg(long)]
    pub sim_fault: Vec<String>,
    /// Append alerts and telemetry to this JSONL file (idempotent by event id).
    #[arg(long)]
    pub events_file: Option<PathBuf>,
    /// Post alerts and telemetry to this webhook.
    #[arg(long)]
    pub webhook: Vec<String>,
    /// Body of the `--webhook` posts: fleetwave's JSON event, or a Slack message.
    #[arg(long, value_enum, default_value_t = HookFormat::Json)]
    pub webhook_format: HookFormat,
    /// The time to act at (RFC 3339), for tests and replays.
    #[arg(long, env = "FLEETWAVE_NOW", hide = true)]
    pub now: Option<DateTime<Utc>>,
}

/// `--forge`: where step pull requests live.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ForgeKind {
    /// Branches and merge commits in the fleet repository only.
    Local,
    /// Pull requests on GitHub (or GitHub Enterprise).
    Github,
}

/// `--clusters`: where cluster state comes from.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ClusterSourceKind {
    /// Flux Kustomizations on the hub cluster, or each cluster with `--cluster-context`.
    Kube,
    /// The simulated Flux (demos and tests).
    Sim,
}

/// The forge that hosts step pull requests.
#[derive(clap::Args, Debug, Clone)]
pub struct ForgeArgs {
    /// `local` (branches and merge commits only) or `github`.
    #[arg(long, value_enum, default_value_t = ForgeKind::Local)]
    pub forge: ForgeKind,
    /// GitHub REST root; GitHub Enterprise: https://HOST/api/v3.
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api: String,
    /// owner/repo (default: from --remote).
    #[arg(long)]
    pub github_repo: Option<String>,
    /// Token for the GitHub API (see README: tokens and scopes).
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
    /// GitHub App id (with --github-app-key) instead of a token.
    #[arg(long, env = "FLEETWAVE_GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// GitHub App private key file (PEM).
    #[arg(long, env = "FLEETWAVE_GITHUB_APP_KEY")]
    pub github_app_key: Option<PathBuf>,
    /// How step pull requests are merged on GitHub.
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
    pub fn choice(&self, r: &RemoteArgs) -> anyhow::Result<ForgeChoice> {
        use crate::adapters::forge::github::{GitHubAuth, GitHubConfig, owner_repo};
        use crate::app::Flat;
        use anyhow::Context;
        match self.forge {
            ForgeKind::Local => Ok(ForgeChoice::Local),
            ForgeKind::Github => {
                let (owner, repo) = match &self.github_repo {
                    Some(s) => s.split_once('/').map(|(o, r)| (o.to_string(), r.to_string())).ok_or_else(|| anyhow::anyhow!("--github-repo {s:?} is not owner/repo"))?,
                    None => owner_repo(&r.remote).ok_or_else(|| anyhow::anyhow!("cannot tell owner/repo from --remote {}; pass --github-repo owner/repo", r.remote))?,
                };
                let app = self.github_app_id.is_some() && self.github_app_key.is_some();
                let auth = match (
                    &self.github_app_id,
                    &self.github_app_key,
                    &self.github_token,
                ) {
                    (Some(id), Some(key), _) => GitHubAuth::App {
                        app_id: *id,
                        key_pem: std::fs::read_to_string(key)
                            .flat()
                            .with_context(|| format!("cannot read {}", key.display()))?,
                    },
                    (_, _, Some(t)) => GitHubAuth::Token(t.clone()),
                    _ => anyhow::bail!(
                        "the github forge needs GITHUB_TOKEN (or --github-token), or --github-app-id with --github-app-key"
                    ),
                };
                let cache_file = Some(cache_dir(r).join("fleetwave-github.json"));
                Ok(ForgeChoice::GitHub(Box::new(GitHubConfig {
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
                })))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum HookFormat {
    Json,
    Slack,
}

/// Which forge and how to reach it.
#[derive(Debug, Clone)]
pub enum ForgeChoice {
    Local,
    GitHub(Box<crate::adapters::forge::github::GitHubConfig>),
}

/// The reconciler's private cache directory for this remote.
pub fn cache_dir(r: &RemoteArgs) -> PathBuf {
    r.cache.clone().unwrap_or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("fleetwave")
            .join(crate::app::reconcile::plan_hash(&r.remote))
    })
}
