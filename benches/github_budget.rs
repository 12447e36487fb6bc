//! GitHub budget: the REST calls of a whole rollout of the chained example plan
//! (fixtures/plans/chained.yaml) through the fake GitHub, one `reconcile --once` per tick on
//! one cache, as a scheduled CI job runs it.
//!
//!   cargo bench --locked --bench github_budget
//!
//! Prints every tick that acted with its calls, the calls per step, what an idle tick costs
//! (and how many of those are `304 Not Modified`, which GitHub does not count against the
//! primary rate limit), and the content-creating calls (POST, PATCH, PUT, DELETE: what the
//! secondary limits of 80 a minute and 500 an hour count). README's forecast is made from
//! these numbers.

#[path = "../tests/common/fake_github.rs"]
mod fake_github;

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Duration, TimeZone, Utc};
use fake_github::{Call, FakeGitHub};
use fleetwave::git::{Auth, GitRepo};
use fleetwave::state::{GateState, PlanState, StepStatus};

const TOKEN: &str = "ghs_bench_token";
const PLAN: &str = "chained";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0)
        .single()
        .expect("time")
}

fn state(git: &GitRepo) -> Option<PlanState> {
    git.fetch().expect("fetch");
    let head = git.branch_head("fleetwave/state").expect("branch")?;
    fleetwave::reconcile::read_single_state(git, &head).expect("state")
}

fn content_creating(c: &Call) -> bool {
    matches!(c.method.as_str(), "POST" | "PATCH" | "PUT" | "DELETE")
}

/// Approve gated steps and merge manual ones whose gate is green, as the reviewers would.
fn review(
    gh: &FakeGitHub,
    st: &PlanState,
    plan: &fleetwave::plan::Plan,
    done: &mut Vec<u64>,
) -> bool {
    let mut acted = false;
    for (wi, w) in st.waves.iter().enumerate() {
        for s in &w.steps {
            let (Some(n), Some(p)) = (s.pr, s.posted.as_ref()) else {
                continue;
            };
            if s.status != StepStatus::Open {
                continue;
            }
            if p.description.contains("waiting for an approving review") && !done.contains(&n) {
                done.push(n);
                gh.add_review("acme", "fleet", n, "alice", "APPROVED", &p.head);
                acted = true;
            }
            if !plan.waves[wi].automated && p.state == GateState::Success {
                gh.merge_as_human("acme", "fleet", n, "bob");
                acted = true;
            }
        }
    }
    acted
}

#[derive(Default)]
struct Totals {
    ticks: usize,
    calls: usize,
    creating: usize,
    idle_ticks: usize,
    idle_calls: usize,
    idle_304: usize,
    idle_max: usize,
    idle_open_prs: usize,
}

fn main() {
    let gh = FakeGitHub::start(TOKEN);
    gh.set_clock(start());
    let files = fleetwave::demo::example_files(PLAN).expect("example");
    gh.create_repo("acme", "fleet", &files, start());
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitRepo::open(
        &dir.path().join("check.git"),
        &gh.git_url("acme", "fleet"),
        Auth::Token(TOKEN.into()),
    )
    .expect("open");
    let plan_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/plans/{PLAN}.yaml"));
    let plan = fleetwave::plan::load(
        &plan_path,
        std::fs::read_to_string(&plan_path).expect("plan"),
    )
    .expect("plan parses")
    .0;
    let cache = dir.path().join("cache.git");
    let mut reviewed = Vec::new();
    let mut t = Totals::default();
    let mut now = start();
    println!(
        "fleetwave GitHub budget: plan {PLAN} ({} waves), one reconcile --once per tick",
        plan.waves.len()
    );
    println!(
        "{:>5}  {:>5}  {:>8}  {:>4}  what the tick did",
        "tick", "calls", "creating", "304"
    );
    for tick in 1..=600 {
        let open = state(&git).map_or(0, |s| {
            s.waves
                .iter()
                .flat_map(|w| &w.steps)
                .filter(|x| x.status == StepStatus::Open)
                .count()
        });
        gh.set_clock(now);
        gh.reset_calls();
        let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .env("GITHUB_API_URL", gh.base_url())
            .env("GITHUB_TOKEN", TOKEN)
            .env_remove("FLEETWAVE_GIT_TOKEN")
            .args([
                "reconcile",
                "--once",
                "--clusters",
                "sim",
                "--forge",
                "github",
            ])
            .args(["--remote", &gh.git_url("acme", "fleet")])
            .args(["--plan", "plans/demo.yaml", "--approver", "alice"])
            .args(["--cache", cache.to_str().expect("utf-8")])
            .args(["--now", &now.to_rfc3339()])
            .output()
            .expect("run fleetwave");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(matches!(out.status.code(), Some(0 | 1)), "{text}");
        let calls = gh.calls();
        let creating = calls.iter().filter(|c| content_creating(c)).count();
        let not_modified = calls.iter().filter(|c| c.status == 304).count();
        t.ticks += 1;
        t.calls += calls.len();
        t.creating += creating;
        let did: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("did: "))
            .collect();
        if did.is_empty() {
            t.idle_ticks += 1;
            t.idle_calls += calls.len();
            t.idle_304 += not_modified;
            t.idle_max = t.idle_max.max(calls.len());
            t.idle_open_prs += open;
        } else {
            let what: Vec<String> = did
                .iter()
                .map(|d| d.split(" fleetwave/").next().unwrap_or(d).to_string())
                .collect();
            println!(
                "{tick:>5}  {:>5}  {creating:>8}  {not_modified:>4}  {}",
                calls.len(),
                what.join(", ")
            );
        }
        if text
            .lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
        {
            break;
        }
        let st = state(&git).expect("state");
        let reviewed_now = review(&gh, &st, &plan, &mut reviewed);
        let flux_pending = st
            .waves
            .iter()
            .flat_map(|w| &w.steps)
            .any(|s| s.status == StepStatus::Merged);
        let next = text
            .lines()
            .find_map(|l| l.strip_prefix("next: "))
            .and_then(|x| DateTime::parse_from_rfc3339(x).ok())
            .map(|x| x.with_timezone(&Utc));
        now = match next {
            Some(x) if did.is_empty() && !reviewed_now && !flux_pending && x > now => x,
            _ => now + Duration::minutes(5),
        };
    }
    let st = state(&git).expect("state");
    let steps = st.waves.iter().map(|w| w.steps.len()).sum::<usize>().max(1);
    let status = format!("{:?}", st.status);
    println!();
    println!("plan status           {status}");
    println!("ticks                 {}", t.ticks);
    println!("steps                 {steps}");
    println!(
        "REST calls            {} ({:.1} per step)",
        t.calls,
        t.calls as f64 / steps as f64
    );
    println!(
        "content-creating      {} ({:.1} per step)",
        t.creating,
        t.creating as f64 / steps as f64
    );
    if t.idle_ticks > 0 {
        println!(
            "idle ticks            {} : {:.2} calls each (max {}), {:.0}% of them 304, {:.2} open PRs each",
            t.idle_ticks,
            t.idle_calls as f64 / t.idle_ticks as f64,
            t.idle_max,
            100.0 * t.idle_304 as f64 / t.idle_calls.max(1) as f64,
            t.idle_open_prs as f64 / t.idle_ticks as f64
        );
    }
    // The forecast: steps per hour each limit allows, idle ticks aside (their 304s are free
    // against the primary limit).
    let per_step = (t.calls - t.idle_calls) as f64 / steps as f64;
    let creating_per_step = t.creating as f64 / steps as f64;
    println!();
    println!("forecast (acting calls only; idle 304s do not count against the primary limit)");
    for (name, per_hour) in [
        ("GITHUB_TOKEN (1,000/h per repository)", 1000.0),
        ("PAT (5,000/h)", 5000.0),
    ] {
        println!("  {name:<40} {:>6.0} steps/h", per_hour / per_step);
    }
    println!(
        "  {:<40} {:>6.0} steps/h ({:.0} a minute at 80/min)",
        "secondary (500 content-creating/h)",
        500.0 / creating_per_step,
        80.0 / creating_per_step
    );
}
