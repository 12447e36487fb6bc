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
    s
}

fn open(r: &RemoteArgs) -> Result<GitRepo, String> {
    let cache = r.cache.clone().unwrap_or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("fleetwave").join(reconcile::plan_hash(&r.remote))
    });
    let auth = match &r.token {
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

pub fn reconcile(
    r: &RemoteArgs,
    w: &WorldArgs,
    once: bool,
    interval: u64,
    dry_run: bool,
    out: &mut dyn Write,
) -> ExitCode {
    if w.clusters != "sim" {
        return fail(format!(
            "cluster source {:?} is not available yet; use --clusters sim",
            w.clusters
        ));
    }
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
    loop {
        let now = w.now.unwrap_or_else(Utc::now);
        let result = rt.block_on(async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let o = reconcile::observe_repo(&git, &s)?;
                let history = reconcile::base_history(&git, &o, 1000, &mut Default::default())?;
                let delay = chrono::Duration::from_std(*w.sim_delay).unwrap_or_default();
                let sim = SimFlux::new(
                    history,
                    SimConfig {
                        delay,
                        faults: faults.clone(),
                        branch: s.base.clone(),
                    },
                );
                let forge = LocalForge {
                    git: &git,
                    base: s.base.clone(),
                    author_email: s.author_email.clone(),
                    sig: s.sig(now),
                };
                let io = reconcile::Io {
                    git: &git,
                    forge: &forge,
                    clusters: &sim,
                    notifier: &notify,
                };
                let report = reconcile::tick(&io, &s, o, now, dry_run).await?;
                // A lost race: reload what the other reconciler wrote and decide again.
                if report.outcome != Outcome::LostRace || attempt == 3 {
                    return Ok::<_, reconcile::ReconcileError>((report, attempt - 1));
                }
            }
        });
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
