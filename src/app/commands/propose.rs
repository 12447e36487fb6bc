//! `fleetwave propose --channel patch|minor|stable`: write the next Kubernetes plan for the
//! fleet from the release catalog, the way a dependency bot proposes the next version — the
//! target the channel names, waves as `init` would suggest them, hops left to the catalog.
//! Nothing is written when the fleet is already current; nothing is overwritten without
//! `--force`; what is written is validated as `plan` reads it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

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
    let dest = a.repo.join(&rel);
    if std::fs::symlink_metadata(&dest).is_ok() && !a.force {
        bail!(
            "{} already exists; nothing was written\n  help: pass --force to overwrite, or --plan to write it elsewhere",
            dest.display()
        );
    }
    let text = plan_text(&s, a.channel, &name, &target)?;
    crate::core::plan::load(&rel, text.clone()).map_err(|d| diags_error(&d))?;
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
