//! A 10% failure budget over 200 clusters in batches: the generated benchmark fleet, the
//! simulated Flux with faults injected into chosen clusters, the local forge and the fake
//! GitHub (every batch a pull request).

mod common;

#[path = "../examples/gen_fleet/generate.rs"]
#[allow(dead_code)]
mod generate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::fake_github::FakeGitHub;
use fleetwave::git::{Auth, GitRepo};
use fleetwave::state::{PlanState, PlanStatus, StepStatus, WaveStatus};

const PLAN: &str = "apiVersion: fleet.opencenter.cloud/v1alpha1
kind: FleetUpgradePlan
metadata: {name: budget}
spec:
  gitopsBase:
    url: https://github.com/opencenter-cloud/openCenter-gitops-base.git
    tag: \"2026.02\"
  waves:
    - name: all
      clusterSelector:
        matchExpressions: [{key: upgrade-wave, operator: Exists}]
      maxConcurrency: \"25%\"
      maxFailures: \"10%\"
      validation: {healthCheckDuration: 30m, automated: true}
";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0)
        .single()
        .unwrap()
}

fn read_all(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            read_all(root, &p, out);
        } else {
            out.insert(
                p.strip_prefix(root).unwrap().to_path_buf(),
                std::fs::read(&p).unwrap(),
            );
        }
    }
}

const TOKEN: &str = "ghs_budget_token";

/// Where the fleet lives: a bare repository (local forge) or the fake GitHub.
enum Remote {
    Local(PathBuf),
    GitHub(FakeGitHub),
}

impl Remote {
    fn url(&self) -> String {
        match self {
            Remote::Local(p) => p.to_string_lossy().into_owned(),
            Remote::GitHub(gh) => gh.git_url("acme", "fleet"),
        }
    }

    fn tick(&self, root: &Path, now: DateTime<Utc>, faults: &[String]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetwave"));
        cmd.args(["reconcile", "--once", "--clusters", "sim"])
            .args(["--plan", "plans/demo.yaml", "--remote", &self.url()])
            .args(["--cache", root.join("cache.git").to_str().unwrap()])
            .args(["--now", &now.to_rfc3339()])
            .args(faults);
        if let Remote::GitHub(gh) = self {
            gh.set_clock(now);
            cmd.args(["--forge", "github"])
                .env("GITHUB_API_URL", gh.base_url())
                .env("GITHUB_TOKEN", TOKEN)
                .env_remove("FLEETWAVE_GIT_TOKEN");
        }
        cmd.output().unwrap()
    }

    fn state(&self, root: &Path) -> PlanState {
        let auth = match self {
            Remote::Local(_) => Auth::None,
            Remote::GitHub(_) => Auth::Token(TOKEN.into()),
        };
        let git = GitRepo::open(&root.join("read.git"), &self.url(), auth).unwrap();
        git.fetch().unwrap();
        let head = git.branch_head("fleetwave/state").unwrap().unwrap();
        fleetwave::reconcile::read_single_state(&git, &head)
            .unwrap()
            .unwrap()
    }
}

/// Roll the plan out over 200 generated clusters with `faulty` failing; the final state.
fn rollout(faulty: &[String], github: bool) -> (PlanState, String) {
    let dir = tempfile::tempdir().unwrap();
    let gen_dir = dir.path().join("gen");
    generate::generate_fleet(&gen_dir, 200).unwrap();
    let mut files = BTreeMap::new();
    read_all(&gen_dir, &gen_dir, &mut files);
    // On GitHub the wave says `failurePolicy: continue`; locally it keeps the default (halt):
    // both go on within the budget and halt past it.
    let plan = if github {
        PLAN.replace(
            "      maxFailures: \"10%\"\n",
            "      maxFailures: \"10%\"\n      failurePolicy: continue\n",
        )
    } else {
        PLAN.to_string()
    };
    assert_eq!(plan.contains("continue"), github);
    files.insert(PathBuf::from("plans/demo.yaml"), plan.into_bytes());
    let root = dir.path().join("repo");
    std::fs::create_dir_all(&root).unwrap();
    let remote = if github {
        let gh = FakeGitHub::start(TOKEN);
        gh.create_repo("acme", "fleet", &files, start());
        Remote::GitHub(gh)
    } else {
        Remote::Local(fleetwave::demo::seed_remote_files(&root, &files, start()).unwrap())
    };
    let faults: Vec<String> = faulty
        .iter()
        .flat_map(|c| ["--sim-fault".to_string(), format!("{c}=HealthCheckFailed")])
        .collect();
    let mut now = start();
    let mut log = String::new();
    for _ in 0..120 {
        let out = remote.tick(&root, now, &faults);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        log.push_str(&text);
        let finished = text
            .lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"));
        if finished || out.status.code() == Some(1) {
            return (remote.state(&root), log);
        }
        now += Duration::minutes(10);
    }
    panic!("the rollout did not end:\n{log}");
}

/// Every ninth cluster from the second: spread over every batch.
fn faulty(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c-{:05}", 1 + 9 * i)).collect()
}

fn twenty_pass_and_twenty_one_halt(github: bool) {
    let (st, log) = rollout(&faulty(20), github);
    assert_eq!(st.status, PlanStatus::Succeeded, "{log}");
    let w = &st.waves[0];
    assert_eq!(w.clusters.len(), 200);
    assert_eq!(w.batches.len(), 4, "25% of 200: four batches of 50");
    assert!(w.batches.iter().all(|b| b.len() == 50));
    assert_eq!(w.failed.len(), 20);
    assert!(w.steps.iter().all(|s| s.status == StepStatus::Converged));
    if github {
        // Each batch went out as its own pull request.
        let prs: std::collections::BTreeSet<u64> = w.steps.iter().filter_map(|s| s.pr).collect();
        assert_eq!(prs.len(), 4, "{:?}", w.steps);
    }

    let (st, log) = rollout(&faulty(21), github);
    assert_eq!(st.status, PlanStatus::Halted, "{log}");
    let w = &st.waves[0];
    assert_eq!(w.status, WaveStatus::Failed);
    assert_eq!(w.failed.len(), 21, "{:?}", w.failed.keys());
    // The 21st failure is in the last batch (c-00181): the earlier batches went on.
    assert!(
        w.steps[..3]
            .iter()
            .all(|s| s.status == StepStatus::Converged)
    );
    assert!(
        st.reason
            .as_deref()
            .unwrap()
            .contains("(21 of 200 clusters, maxFailures 20)"),
        "{:?}",
        st.reason
    );
}

#[test]
fn twenty_failures_of_two_hundred_pass_and_twenty_one_halt() {
    twenty_pass_and_twenty_one_halt(false);
}

#[test]
fn the_same_budget_through_pull_requests_on_github() {
    twenty_pass_and_twenty_one_halt(true);
}
