//! `fleetwave propose --channel patch|minor|stable`: write the next Kubernetes plan for the
//! fleet from the release catalog, the way a dependency bot proposes the next version — the
//! target the channel names, waves as `init` would suggest them, hops left to the catalog.
//! Nothing is written when the fleet is already current; nothing is overwritten without
//! `--force`; what is written is validated as `plan` reads it. With `--open-pr` the plan is
//! committed on the remote's base branch head to `fleetwave/propose/<name>` and proposed as
//! a pull request; the local checkout is left as it is.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use crate::app::args::{ForgeChoice, RemoteArgs};
use crate::app::commands::diags_error;
use crate::app::commands::init;
use crate::app::commands::survey::{self, Survey};
use crate::core::catalog::{Catalog, Channel, Proposal};
use crate::core::kinds::{Role, What};
use crate::core::version::KubeVersion;

pub struct ProposeArgs<'a> {
    pub repo: &'a Path,
    pub channel: Channel,
    /// Where to write the plan, relative to the repository (default `plans/k8s-<target>.yaml`).
    pub plan: Option<&'a Path>,
    pub force: bool,
    pub now: DateTime<Utc>,
    /// `--open-pr`: where the pull request goes, and through which forge.
    pub pr: Option<(RemoteArgs, ForgeChoice)>,
}

pub fn run(out: &mut dyn Write, a: &ProposeArgs) -> ExitCode {
    match propose(a) {
        Ok(text) => match out.write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => super::fail(&e.into()),
        },
        Err(e) => super::fail(&e),
    }
}

/// The control-plane (and whole-cluster) versions the fleet pins.
fn pinned(s: &Survey) -> Vec<KubeVersion> {
    s.fleet
        .located
        .iter()
        .flat_map(|l| l.occurrences.iter())
        .filter(|o| matches!(o.what, What::Kubernetes(Role::ControlPlane | Role::Whole)))
        .filter_map(|o| KubeVersion::parse(&o.value))
        .collect()
}

fn propose(a: &ProposeArgs) -> anyhow::Result<String> {
    survey::check_repo(a.repo)?;
    let s = survey::survey(a.repo, &[])?;
    if s.fleet.clusters.is_empty() {
        return Err(survey::not_a_fleet(a.repo));
    }
    let catalog = Catalog::embedded();
    let today = a.now.format("%Y-%m-%d").to_string();
    let target = match catalog.propose(a.channel, &pinned(&s), &today) {
        Proposal::Target(t) => t,
        Proposal::Current(why) => return Ok(format!("nothing to propose: {why}\n")),
        Proposal::Refused(why) => bail!("{why}"),
    };
    let name = format!(
        "k8s-{}",
        target.canonical().trim_start_matches('v').replace('.', "-")
    );
    let rel = a.plan.map_or_else(
        || PathBuf::from(format!("plans/{name}.yaml")),
        Path::to_path_buf,
    );
    let text = plan_text(&s, a.channel, &name, &target)?;
    crate::core::plan::load(&rel, text.clone()).map_err(|d| diags_error(&d))?;
    if let Some((remote, forge)) = &a.pr {
        let p = Proposed {
            rel: &rel,
            text: &text,
            name: &name,
            title: format!(
                "Upgrade Kubernetes to {} ({} channel)",
                target.canonical(),
                channel_name(a.channel)
            ),
        };
        return open_pr(&p, remote, forge, a);
    }
    let dest = a.repo.join(&rel);
    if std::fs::symlink_metadata(&dest).is_ok() && !a.force {
        bail!(
            "{} already exists; nothing was written\n  help: pass --force to overwrite, or --plan to write it elsewhere",
            dest.display()
        );
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&dest, &text).with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(format!(
        "wrote {} ({} channel: {} for {} clusters, hops from the release catalog as of {})\nnext:\n  fleetwave plan --plan {} --diff   # what it would change\n  git add {} && git commit           # the reconciler reads the plan from the base branch\n",
        rel.display(),
        channel_name(a.channel),
        target.canonical(),
        s.fleet.clusters.len(),
        catalog.as_of,
        rel.display(),
        rel.display()
    ))
}

fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Patch => "patch",
        Channel::Minor => "minor",
        Channel::Stable => "stable",
    }
}

fn plan_text(
    s: &Survey,
    channel: Channel,
    name: &str,
    target: &KubeVersion,
) -> anyhow::Result<String> {
    let intro = format!(
        "Plan proposed by `fleetwave propose --channel {}`.",
        channel_name(channel)
    );
    let mut text = init::header(s, &intro, name)?;
    text.push_str(&format!(
        "  # The {} channel's target in the release catalog (`fleetwave versions`). The hops\n  # between the oldest control plane and it are computed from the same catalog.\n  targetVersion: {}\n",
        channel_name(channel),
        target.canonical()
    ));
    let (waves, _) = init::waves(&s.fleet);
    text.push_str(&init::waves_yaml(&waves)?);
    Ok(text)
}

/// A proposed plan, ready to be committed.
struct Proposed<'a> {
    rel: &'a Path,
    text: &'a str,
    name: &'a str,
    title: String,
}

/// Commit the plan on the base head of `remote`, push it to `fleetwave/propose/<name>` and
/// open (or update) its pull request. Every line printed comes from a call that succeeded.
fn open_pr(
    p: &Proposed,
    remote: &RemoteArgs,
    forge: &ForgeChoice,
    a: &ProposeArgs,
) -> anyhow::Result<String> {
    use crate::adapters::forge::{PrSpec, StepRef};
    let git = crate::app::ops::open(remote)?;
    git.refresh()?;
    let sig = crate::adapters::git::Sig {
        name: remote.author_name.clone(),
        email: remote.author_email.clone(),
        time: a.now,
    };
    let branch = format!("fleetwave/propose/{}", p.name);
    let (head, mut out) = push_branch(&git, p, remote, &branch, &sig, a.force)?;
    let step = StepRef {
        branch: branch.clone(),
        pr: None,
        head: Some(head),
        approval: None,
    };
    let spec = PrSpec {
        title: p.title.clone(),
        body: format!(
            "Proposed by `fleetwave propose`: `{}` targets the channel's release; hops come from the release catalog.\n\nRun `fleetwave plan --plan {}` on this branch to see every step and pre-flight finding.\n",
            p.rel.display(),
            p.rel.display()
        ),
        base: remote.base.clone(),
    };
    let opened =
        crate::app::ops::runtime().block_on(open_in(forge, &git, remote, sig, &step, &spec));
    match opened.context("open the pull request")? {
        Some(n) => out.push_str(&format!(
            "did: open or update pull request #{n} for {branch}\n"
        )),
        None => out.push_str(&format!(
            "the local forge has no pull requests: merge {branch} into {} to adopt the plan\n",
            remote.base
        )),
    }
    Ok(out)
}

/// Push the plan's commit on the base head to `branch`, unless the branch already holds
/// exactly it. Returns the branch head and what was done.
fn push_branch(
    git: &crate::adapters::git::GitRepo,
    p: &Proposed,
    remote: &RemoteArgs,
    branch: &str,
    sig: &crate::adapters::git::Sig,
    force: bool,
) -> anyhow::Result<(String, String)> {
    let base_head = git.branch_head(&remote.base)?.with_context(|| {
        format!(
            "the base branch {} does not exist on the remote",
            remote.base
        )
    })?;
    if git.read_file(&base_head, p.rel)?.is_some() && !force {
        bail!(
            "{} already exists on {}; nothing was pushed\n  help: pass --force to replace it, or --plan to propose it elsewhere",
            p.rel.display(),
            remote.base
        );
    }
    let changes =
        std::collections::BTreeMap::from([(p.rel.to_path_buf(), p.text.as_bytes().to_vec())]);
    let tree = git.changed_tree(&base_head, &changes)?;
    let current = git.branch_head(branch)?;
    if let Some(c) = &current
        && git.tree_id(c)? == tree
        && git.commit_info(c)?.parents.first() == Some(&base_head)
    {
        let said = format!(
            "unchanged: {branch} already proposes this plan (commit {})\n",
            &c[..12]
        );
        return Ok((c.clone(), said));
    }
    let msg = format!("{}\n\nProposed by `fleetwave propose`.", p.title);
    let commit = git.commit_tree(&tree, &base_head, &msg, sig)?;
    git.push(branch, &commit, current.as_deref())
        .with_context(|| format!("push {branch}"))?;
    let said = format!(
        "did: push {branch} (commit {}, {} on {})\n",
        &commit[..12],
        p.rel.display(),
        remote.base
    );
    Ok((commit, said))
}

/// Open or update the pull request through the chosen forge.
async fn open_in(
    forge: &ForgeChoice,
    git: &crate::adapters::git::GitRepo,
    remote: &RemoteArgs,
    sig: crate::adapters::git::Sig,
    step: &crate::adapters::forge::StepRef,
    spec: &crate::adapters::forge::PrSpec,
) -> Result<Option<u64>, crate::adapters::forge::ForgeError> {
    use crate::adapters::forge::Forge;
    match forge {
        ForgeChoice::Local => {
            let f = crate::adapters::forge::local::LocalForge {
                git,
                base: remote.base.clone(),
                author_email: remote.author_email.clone(),
                sig,
            };
            f.open(step, spec).await
        }
        ForgeChoice::GitHub(cfg) => {
            let gh = crate::adapters::forge::github::GitHubForge::new(
                (**cfg).clone(),
                Some(git),
                &remote.author_email,
            )
            .await
            .map_err(|e| crate::adapters::forge::ForgeError::Api(e.to_string()))?;
            gh.open(step, spec).await
        }
    }
}
