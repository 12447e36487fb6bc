//! Batches, freezes, unreachable clusters and maintenance windows through pull requests on
//! the fake GitHub (REST over HTTP through octocrab, Git over smart HTTP with token auth).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::fake_github::FakeGitHub;
use fleetwave::git::{Auth, GitRepo};
use fleetwave::state::{PlanState, PlanStatus, StepStatus};

const TOKEN: &str = "ghs_test_token_456";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0)
        .single()
        .unwrap()
}

struct Env {
    gh: FakeGitHub,
    dir: tempfile::TempDir,
    git: GitRepo,
}

fn env(plan: &str) -> Env {
    env_with(&fleetwave::demo::example_files(plan).unwrap())
}

fn env_with(files: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>) -> Env {
    let gh = FakeGitHub::start(TOKEN);
    gh.set_clock(start());
    gh.create_repo("acme", "fleet", files, start());
    let dir = tempfile::tempdir().unwrap();
    let git = GitRepo::open(
        &dir.path().join("test.git"),
        &gh.git_url("acme", "fleet"),
        Auth::Token(TOKEN.into()),
    )
    .unwrap();
    Env { gh, dir, git }
}

impl Env {
    fn reconcile(&self, now: DateTime<Utc>) -> Output {
        self.reconcile_with(now, &[])
    }

    fn reconcile_with(&self, now: DateTime<Utc>, extra: &[&str]) -> Output {
        self.gh.set_clock(now);
        Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .env_remove("LD_PRELOAD")
            .env("GITHUB_API_URL", self.gh.base_url())
            .args([
                "reconcile",
                "--once",
                "--clusters",
                "sim",
                "--forge",
                "github",
            ])
            .args(["--remote", &self.gh.git_url("acme", "fleet")])
            .args(["--plan", "plans/demo.yaml"])
            .args([
                "--cache",
                self.dir.path().join("cache.git").to_str().unwrap(),
            ])
            .args(["--now", &now.to_rfc3339()])
            .args(extra)
            .env("GITHUB_TOKEN", TOKEN)
            .env_remove("FLEETWAVE_GIT_TOKEN")
            .output()
            .unwrap()
    }

    fn state(&self) -> PlanState {
        self.git.fetch().unwrap();
        let head = self.git.branch_head("fleetwave/state").unwrap().unwrap();
        fleetwave::reconcile::read_single_state(&self.git, &head)
            .unwrap()
            .unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Tick until the plan succeeds; every tick's output.
fn rollout(e: &Env, max: usize) -> String {
    let mut now = start();
    let mut log = String::new();
    for _ in 0..max {
        let out = e.reconcile(now);
        let t = text(&out);
        log.push_str(&format!("--- {now}\n{t}"));
        assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
        if t.lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
        {
            return log;
        }
        let flux_pending = e
            .state()
            .waves
            .iter()
            .flat_map(|w| &w.steps)
            .any(|s| s.status == StepStatus::Merged);
        let next = t
            .lines()
            .find_map(|l| l.strip_prefix("next: "))
            .and_then(|x| DateTime::parse_from_rfc3339(x).ok())
            .map(|x| x.with_timezone(&Utc));
        now = match next {
            Some(x) if !t.contains("did: ") && !flux_pending && x > now => x,
            _ => now + Duration::minutes(5),
        };
    }
    panic!("the rollout did not finish in {max} ticks\n{log}");
}

#[test]
fn each_batch_is_its_own_pull_request_merged_in_order_outside_the_freeze() {
    let e = env("batches");
    let log = rollout(&e, 300);
    let st = e.state();
    assert_eq!(st.status, PlanStatus::Succeeded);
    let prod = &st.waves[1];
    assert_eq!(prod.batches.len(), 3);
    let pulls = e.gh.pulls();
    // One PR for the canary wave, one per prod batch, no duplicates.
    assert_eq!(pulls.len(), 4, "{pulls:?}");
    let mut merged_at = Vec::new();
    for (b, s) in prod.steps.iter().enumerate() {
        let n = s.pr.expect("PR number recorded");
        let pr = pulls.iter().find(|p| p["number"] == n).unwrap();
        assert_eq!(pr["merged"], true, "PR #{n}");
        assert_eq!(
            pr["head"]["ref"],
            format!("fleetwave/gitops-base-batches/prod/1-gitops-base-batch-{b}").as_str()
        );
        let title = pr["title"].as_str().unwrap();
        assert!(title.ends_with(&format!("(batch {b})")), "{title}");
        let body = pr["body"].as_str().unwrap();
        assert!(
            body.contains(&format!(
                "Batch {b} of the wave: {}.",
                prod.batches[b].join(", ")
            )),
            "{body}"
        );
        assert!(
            body.contains(&format!("step=prod/1-batch-{b} -->")),
            "{body}"
        );
        // The PR's table names only the batch's clusters.
        for other in prod.batches.iter().enumerate().filter(|(o, _)| *o != b) {
            for c in other.1 {
                assert!(!body.contains(&format!("| {c} |")), "{c} in batch {b}'s PR");
            }
        }
        merged_at.push(s.merged_at.unwrap());
    }
    assert!(merged_at.windows(2).all(|w| w[0] < w[1]), "{merged_at:?}");
    // The last batch's head carried the freeze in its gate status before it merged.
    let head = prod.steps[2].head.clone().unwrap();
    let statuses = e.gh.statuses(&head);
    assert!(
        statuses.iter().any(|x| x["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("frozen, will not merge: change advisory board"))),
        "{statuses:?}\n{log}"
    );
    let freeze_end = Utc.with_ymd_and_hms(2026, 11, 23, 19, 0, 0).unwrap();
    assert!(merged_at[2] >= freeze_end, "{merged_at:?}");
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/plans/batches.yaml")
            .exists()
    );
}

#[test]
fn failure_policy_rollback_opens_and_merges_the_rollback_pull_request() {
    let e = env("rollback");
    let mut now = start();
    let mut log = String::new();
    let mut halted = false;
    for _ in 0..120 {
        e.gh.set_clock(now);
        let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .env("GITHUB_API_URL", e.gh.base_url())
            .args([
                "reconcile",
                "--once",
                "--clusters",
                "sim",
                "--forge",
                "github",
            ])
            .args(["--sim-fault", "stg-kamaji-01=HealthCheckFailed"])
            .args(["--remote", &e.gh.git_url("acme", "fleet")])
            .args(["--plan", "plans/demo.yaml"])
            .args(["--cache", e.dir.path().join("cache.git").to_str().unwrap()])
            .args(["--now", &now.to_rfc3339()])
            .env("GITHUB_TOKEN", TOKEN)
            .env_remove("FLEETWAVE_GIT_TOKEN")
            .output()
            .unwrap();
        let t = text(&out);
        log.push_str(&format!("--- {now}\n{t}"));
        assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
        if out.status.code() == Some(1)
            && e.state().waves[0]
                .auto_rollback
                .as_ref()
                .is_some_and(|r| r.done)
        {
            halted = true;
            break;
        }
        now += Duration::minutes(5);
    }
    assert!(halted, "{log}");
    let st = e.state();
    assert_eq!(st.status, PlanStatus::Halted);
    let rb = st.waves[0].auto_rollback.clone().unwrap();
    let n = rb.pr.expect("rollback PR recorded");
    let pulls = e.gh.pulls();
    let pr = pulls.iter().find(|p| p["number"] == n).unwrap();
    assert_eq!(pr["merged"], true, "{pr}");
    assert_eq!(
        pr["head"]["ref"],
        "fleetwave/gitops-base-rollback/canary/rollback"
    );
    assert_eq!(
        pr["title"],
        "fleetwave(gitops-base-rollback): roll back wave canary"
    );
    assert!(
        pr["body"].as_str().unwrap().contains("failurePolicy"),
        "{pr}"
    );
    assert!(
        st.waves[0]
            .steps
            .iter()
            .all(|s| s.status == StepStatus::RolledBack)
    );
    // The standard wave never got a pull request.
    assert_eq!(pulls.len(), 2, "{pulls:?}");
}

#[test]
fn an_unreachable_cluster_is_skipped_not_failed_and_the_pull_requests_go_on() {
    let mut files = fleetwave::demo::example_files("k8s-minor").unwrap();
    let plan = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata: {name: k8s-dark}\nspec:\n  targetVersion: v1.33.5\n  maintenanceWindows:\n    - clusters: [dev-canary-01]\n      window: {start: \"08:30\", end: \"23:00\"}\n  waves:\n    - name: canary\n      clusterSelector: {matchLabels: {upgrade-wave: canary}}\n      onUnreachable: skip\n      unreachableAfter: 30m\n      validation: {healthCheckDuration: 30m, automated: true}\n";
    files.insert("plans/demo.yaml".into(), plan.as_bytes().to_vec());
    let e = env_with(&files);
    let fault = ["--sim-fault", "stg-kamaji-01=Unreachable"];
    let (mut now, mut log) = (start(), String::new());
    let mut done = false;
    for _ in 0..80 {
        let out = e.reconcile_with(now, &fault);
        let t = text(&out);
        log.push_str(&format!("--- {now}\n{t}"));
        assert!(matches!(out.status.code(), Some(0 | 1)), "{log}");
        if t.lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
        {
            done = true;
            break;
        }
        now += Duration::minutes(5);
    }
    assert!(done, "{log}");
    let st = e.state();
    assert_eq!(st.status, PlanStatus::Succeeded);
    let w = &st.waves[0];
    let rec = &w.skipped["stg-kamaji-01"];
    assert_eq!(rec.by, "fleetwave");
    assert!(rec.reason.contains("unreachable since"), "{}", rec.reason);
    assert!(w.failed.is_empty(), "{:?}", w.failed);
    assert!(w.unreachable_since.is_empty());
    // The first PR waited for dev-canary-01's maintenance window, saying so on its status.
    let first = &w.steps[0];
    assert!(first.merged_at.unwrap() >= start() + Duration::minutes(30));
    let statuses = e.gh.statuses(first.head.as_ref().unwrap());
    assert!(
        statuses
            .iter()
            .any(|x| x["description"].as_str().is_some_and(
                |d| d == "waiting for maintenance windows (may merge from 2026-11-23 08:30 UTC): dev-canary-01"
            )),
        "{statuses:?}"
    );
    // No pull request was failed for the dark cluster, and later ones left it out.
    for s in w.steps.iter().filter_map(|s| s.head.as_ref()) {
        assert!(
            !e.gh.statuses(s).iter().any(|x| x["state"] == "failure"),
            "{s}: {log}"
        );
    }
    for s in w.steps.iter().skip(1).filter(|s| s.merged_at.is_some()) {
        assert!(
            s.changes.iter().all(|c| c.cluster != "stg-kamaji-01"),
            "{}: {:?}",
            s.branch,
            s.changes
        );
    }
}
