//! The command line's dispatch: each command's arguments to the function that runs it
//! (`app::commands` for the ones on a checkout, `app::ops` for the rollout commands).

use std::process::ExitCode;

pub use crate::app::args::{
    AuthorArgs, Cli, Color, Command, ForgeArgs, ForgeChoice, HookFormat, Output, PrArgs,
    RemoteArgs, RepoArgs, WorldArgs,
};
use crate::app::commands;

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

/// The remote of a command that writes no pull request (and, without `author`, no commit).
fn remote(repo: RepoArgs, author: Option<AuthorArgs>, prs: Option<PrArgs>) -> RemoteArgs {
    let mut r = RemoteArgs::new(repo, author.unwrap_or_default(), prs.unwrap_or_default());
    scrub_remote(&mut r);
    r
}

pub fn run(cli: Cli) -> ExitCode {
    let stdout = &mut std::io::stdout().lock();
    match cli.command {
        c @ Command::Plan { .. } => {
            // Stdout is line-buffered: a plan of 10,000 clusters as JSON is 800,000 lines,
            // one write(2) each. Written in blocks instead (flushed when the plan is done).
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout);
            let code = commands::plan::run(
                &mut out,
                commands::plan::PlanArgs::from_command(c).expect("a plan command"),
            );
            let _ = std::io::Write::flush(&mut out);
            code
        }
        Command::Apply {
            repo,
            plan,
            wave,
            step,
            allow_empty,
        } => commands::apply::run(stdout, &repo, &plan, &wave, step, allow_empty),
        Command::Clusters { repo, plan, output } => {
            commands::clusters::run(stdout, &repo, &plan, output)
        }
        Command::Init {
            repo,
            plan,
            github,
            force,
        } => commands::init::run(stdout, &repo, &plan, github, force),
        Command::Explain {
            cluster,
            repo,
            plan,
        } => commands::explain::run(stdout, &repo, &plan, &cluster),
        Command::Reconcile {
            ref repo,
            all: false,
            ..
        } if repo.plan.is_none() => need_plan("reconcile", " (or --all for every plan)"),
        c @ (Command::Reconcile { .. } | Command::Serve { .. }) => rollout(stdout, c),
        Command::Pause { ref repo, .. }
        | Command::Resume { ref repo, .. }
        | Command::Rollback { ref repo, .. }
        | Command::History { ref repo, .. }
        | Command::Status { ref repo, .. }
            if repo.plan.is_none() =>
        {
            need_plan("this command", "")
        }
        c @ (Command::Pause { .. }
        | Command::Resume { .. }
        | Command::Rollback { .. }
        | Command::History { .. }
        | Command::Status { .. }
        | Command::Skip { .. }
        | Command::Retry { .. }) => remote_command(stdout, c),
        Command::Demo {
            plan,
            fail,
            scale,
            keep,
            plain,
        } => commands::demo::run(stdout, &plan, &fail, scale, keep, plain),
        Command::Completions { shell } => crate::app::completions::print(shell, stdout),
        c @ Command::Propose { .. } => propose(stdout, c),
        Command::Versions {
            update,
            catalog,
            output,
            now,
        } => versions(stdout, update, catalog.as_deref(), output, now),
    }
}

/// `fleetwave propose`: with `--open-pr` and `--remote`, the proposal goes to a pull request.
fn propose(stdout: &mut dyn std::io::Write, c: Command) -> ExitCode {
    let Command::Propose {
        repo,
        channel,
        plan,
        force,
        now,
        open_pr,
        remote: to,
        base,
        token,
        author,
        forge,
    } = c
    else {
        unreachable!("propose() is called with a propose command")
    };
    let pr = match (open_pr, to) {
        (true, Some(url)) => {
            let r = remote(
                RepoArgs {
                    remote: url,
                    plan: Some(plan.clone().unwrap_or_else(|| "plans".into())),
                    base,
                    cache: None,
                    token,
                    ssh_key: None,
                    ssh_key_passphrase: None,
                },
                Some(author),
                None,
            );
            match forge_choice(&forge, &r) {
                Ok(f) => Some((r, f)),
                Err(code) => return code,
            }
        }
        _ => None,
    };
    commands::propose::run(
        stdout,
        &commands::propose::ProposeArgs {
            repo: &repo,
            channel: channel.into(),
            plan: plan.as_deref(),
            force,
            now: now.unwrap_or_else(chrono::Utc::now),
            pr,
        },
    )
}

/// `fleetwave versions`: the catalog, or `versions update` writing a new one.
fn versions(
    stdout: &mut dyn std::io::Write,
    update: Option<crate::app::args::VersionsCommand>,
    catalog: Option<&std::path::Path>,
    output: Output,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> ExitCode {
    let now = now.unwrap_or_else(chrono::Utc::now);
    match update {
        None => commands::versions::list(stdout, catalog, output, now),
        Some(crate::app::args::VersionsCommand::Update { from, out }) => {
            commands::versions::update(stdout, &from, &out, now)
        }
    }
}

/// A command that works on one plan was given none: exit 2 saying so.
fn need_plan(what: &str, alt: &str) -> ExitCode {
    eprintln!("error: {what} needs --plan FILE (the plan's path in the repository){alt}");
    ExitCode::from(2)
}

/// `reconcile` and `serve`: the reconciler, once or as a service.
fn rollout(stdout: &mut dyn std::io::Write, c: Command) -> ExitCode {
    match c {
        Command::Reconcile {
            repo,
            author,
            prs,
            world,
            once,
            interval,
            dry_run,
            forge,
            github_output,
            all,
            plans,
        } => {
            let remote = remote(repo, Some(author), Some(prs));
            let choice = match forge_choice(&forge, &remote) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if all && github_output {
                eprintln!("error: --github-output works with one --plan, not with --all");
                return ExitCode::from(2);
            }
            if all {
                let run = crate::app::multi::AllOpts {
                    once,
                    interval,
                    dry_run,
                    plans_dir: plans.plans_dir,
                };
                return crate::app::multi::reconcile_all(&remote, &world, &choice, &run, stdout);
            }
            let run = crate::app::ops::RunOpts {
                once,
                interval,
                dry_run,
                github_output,
            };
            crate::app::ops::reconcile(&remote, &world, &choice, &run, stdout)
        }
        Command::Serve {
            repo,
            author,
            prs,
            world,
            forge,
            listen,
            interval,
            webhook_secret,
            plans,
            leases,
            no_ui,
            ui_listen,
        } => {
            let remote = remote(repo, Some(author), Some(prs));
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
            let ui = crate::app::ops::UiOpts {
                enabled: !no_ui,
                listen: ui_listen,
            };
            let many = crate::app::multi::ServeMany::new(&remote, &world, &plans, &leases);
            match many {
                Some(many) => crate::app::multi::serve(remote, world, choice, cfg, many, ui),
                None => crate::app::ops::serve(remote, world, choice, cfg, ui),
            }
        }
        _ => unreachable!("run passes reconcile and serve only"),
    }
}

/// The commands that read or write the rollout's state on the remote.
fn remote_command(stdout: &mut dyn std::io::Write, c: Command) -> ExitCode {
    use crate::app::ops;
    match c {
        Command::Pause { repo, author } => {
            ops::pause(&remote(repo, Some(author), None), true, stdout)
        }
        Command::Resume { repo, author } => {
            ops::pause(&remote(repo, Some(author), None), false, stdout)
        }
        Command::Rollback {
            repo,
            author,
            wave,
            allow_downgrade,
            merge,
            dry_run,
            now,
        } => {
            let r = remote(repo, Some(author), None);
            ops::rollback(&r, &wave, allow_downgrade, merge, dry_run, now, stdout)
        }
        Command::History { repo } => ops::history(&remote(repo, None, None), stdout),
        Command::Skip {
            repo,
            author,
            cluster,
            reason,
            by,
            now,
        } => {
            let by = acting_user(by, &author);
            let r = remote(repo, Some(author), None);
            crate::app::commands::skip::run(&r, &cluster, &reason, &by, now, stdout)
        }
        Command::Retry {
            repo,
            author,
            cluster,
            failed: _,
            reason,
            by,
            now,
        } => {
            let by = acting_user(by, &author);
            let what = match cluster {
                Some(c) => crate::core::skip::RetryWhat::Cluster(c),
                None => crate::core::skip::RetryWhat::Failed,
            };
            let r = remote(repo, Some(author), None);
            crate::app::commands::retry::run(&r, &what, &reason, &by, now, stdout)
        }
        c @ Command::Status { .. } => status(stdout, c),
        _ => unreachable!("run passes the remote commands only"),
    }
}

/// Who skips or retries a cluster: `--by`, else `$USER`, else the commit author.
fn acting_user(by: Option<String>, author: &AuthorArgs) -> String {
    by.or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| author.author_name.clone())
}

/// `fleetwave status`: the options of one report (or of one per `--watch` refresh).
fn status(stdout: &mut dyn std::io::Write, c: Command) -> ExitCode {
    use crate::app::args::StatusOutput;
    use crate::app::ops;
    let Command::Status {
        repo,
        clusters,
        kube_context,
        cluster_context,
        sim_delay,
        output,
        github_output,
        watch,
        max_refreshes,
        now,
    } = c
    else {
        unreachable!("status() is called with a status command")
    };
    if output == StatusOutput::Html && watch.is_some() {
        eprintln!(
            "error: --output html writes one page; drop --watch (serve refreshes its dashboard)"
        );
        return ExitCode::from(2);
    }
    let opts = ops::StatusOpts {
        clusters,
        sim_delay: *sim_delay,
        kube_context,
        cluster_context,
        json: output == StatusOutput::Json,
        html: output == StatusOutput::Html,
        gh_output: github_output,
        now,
        watch: watch.map(|w| *w),
        max_refreshes,
    };
    ops::status(&remote(repo, None, None), &opts, stdout)
}

/// The forge `--forge` picks, or exit 2 saying why it cannot be used.
fn forge_choice(forge: &ForgeArgs, remote: &RemoteArgs) -> Result<ForgeChoice, ExitCode> {
    forge.choice(remote).map_err(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}
