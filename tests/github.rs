//! End-to-end rollouts against the fake GitHub: every step a real pull request on a fake
//! GitHub reached over HTTP by octocrab, real Git over smart HTTP with token auth.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::fake_github::{FakeGitHub, Faults};
use fleetwave::git::{Auth, GitRepo, Sig};
use fleetwave::state::{GateState, PlanState, PlanStatus, StepStatus};

const TOKEN: &str = "ghs_test_token_123";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0)
        .single()
        .unwrap()
}

struct Env {
    gh: FakeGitHub,
    dir: tempfile::TempDir,
    git: GitRepo,
    reviewed: std::cell::RefCell<std::collections::BTreeSet<u64>>,
}

fn env(plan: &str) -> Env {
    let gh = FakeGitHub::start(TOKEN);
    gh.set_clock(start());
    gh.create_repo(
        "acme",
        "fleet",
        &fleetwave::demo::example_files(plan).unwrap(),
        start(),
    );
    let dir = tempfile::tempdir().unwrap();
    let git = GitRepo::open(
        &dir.path().join("test.git"),
        &gh.git_url("acme", "fleet"),
        Auth::Token(TOKEN.into()),
    )
    .unwrap();
    Env {
        gh,
        dir,
        git,
        reviewed: Default::default(),
    }
}

impl Env {
    fn reconcile(&self, now: DateTime<Utc>) -> Output {
        let cache = self.dir.path().join("cache.git");
        self.reconcile_with(now, &cache, &["--approver", "alice"], &[])
    }

    /// One tick with its own cache directory, extra arguments and environment.
    fn reconcile_with(
        &self,
        now: DateTime<Utc>,
        cache: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        self.command_with(now, cache, extra, env).output().unwrap()
    }

    /// The `reconcile --once` command of [`Env::reconcile_with`], to spawn (and kill).
    fn command_with(
        &self,
        now: DateTime<Utc>,
        cache: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Command {
        // The fake stamps merges and reviews on the test's clock, never the real date.
        self.gh.set_clock(now);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetwave"));
        if !extra.contains(&"--github-api") {
            cmd.env("GITHUB_API_URL", self.gh.base_url());
        }
        cmd.args([
            "reconcile",
            "--once",
            "--clusters",
            "sim",
            "--forge",
            "github",
        ])
        .args(["--remote", &self.gh.git_url("acme", "fleet")])
        .args(["--plan", "plans/demo.yaml"])
        .args(["--cache", cache.to_str().unwrap()])
        .args(extra)
        .args([
            "--events-file",
            self.dir.path().join("events.jsonl").to_str().unwrap(),
        ])
        .args(["--now", &now.to_rfc3339()])
        .env("GITHUB_TOKEN", TOKEN)
        .env_remove("FLEETWAVE_GIT_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn state_opt(&self) -> Option<PlanState> {
        self.git.fetch().unwrap();
        let head = self.git.branch_head("fleetwave/state").unwrap()?;
        fleetwave::reconcile::read_single_state(&self.git, &head).unwrap()
    }

    fn state(&self) -> PlanState {
        self.git.fetch().unwrap();
        let head = self
            .git
            .branch_head("fleetwave/state")
            .unwrap()
            .expect("state branch");
        fleetwave::reconcile::read_single_state(&self.git, &head)
            .unwrap()
            .unwrap()
    }

    /// Act as the reviewers: approve gated steps, merge manual ones whose gate is green.
    fn review(&self, plan: &fleetwave::plan::Plan) -> bool {
        let st = self.state();
        for (wi, w) in st.waves.iter().enumerate() {
            for s in &w.steps {
                let (Some(n), Some(p)) = (s.pr, s.posted.as_ref()) else {
                    continue;
                };
                if s.status != StepStatus::Open {
                    continue;
                }
                if p.description.contains("waiting for an approving review")
                    && self.reviewed.borrow_mut().insert(n)
                {
                    self.gh
                        .add_review("acme", "fleet", n, "alice", "APPROVED", &p.head);
                    return true;
                }
                if !plan.waves[wi].automated && p.state == GateState::Success {
                    self.gh.merge_as_human("acme", "fleet", n, "bob");
                    return true;
                }
            }
        }
        false
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn plan_of(name: &str) -> fleetwave::plan::Plan {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/plans/{name}.yaml"));
    fleetwave::plan::load(&p, std::fs::read_to_string(&p).unwrap())
        .unwrap()
        .0
}

/// Tick until done; returns (ticks, the largest call count seen on an idle tick, open PRs then).
fn rollout(e: &Env, plan: &str, max: usize) -> Vec<(usize, usize)> {
    let spec = plan_of(plan);
    let mut now = start();
    let mut idle = Vec::new();
    let mut last: Vec<String> = Vec::new();
    for _ in 0..max {
        // Pull requests fleetwave has open as the tick starts (one may have just been merged
        // by a reviewer; fleetwave learns that with the one call this budget allows).
        let open_before = e.state_opt().map_or(0, |s| {
            s.waves
                .iter()
                .flat_map(|w| &w.steps)
                .filter(|x| x.status == StepStatus::Open)
                .count()
        });
        let out = e.reconcile(now);
        let t = text(&out);
        last.push(format!("--- {now}\n{t}"));
        if last.len() > 4 {
            last.remove(0);
        }
        assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
        if t.lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
        {
            return idle;
        }
        let calls: usize = t
            .lines()
            .find_map(|l| l.strip_prefix("api calls: "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let acted = t.contains("did: ");
        if !acted {
            idle.push((calls, open_before));
        }
        let reviewed = e.review(&spec);
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
            Some(x) if !acted && !reviewed && !flux_pending && x > now => x,
            _ => now + Duration::minutes(5),
        };
    }
    let st = e.state();
    let steps: Vec<String> = st
        .waves
        .iter()
        .flat_map(|w| {
            w.steps.iter().map(move |s| {
                format!(
                    "{} {} {:?} pr={:?} posted={:?}",
                    w.name,
                    s.index,
                    s.status,
                    s.pr,
                    s.posted.as_ref().map(|p| (&p.state, &p.description))
                )
            })
        })
        .collect();
    panic!(
        "{plan}: the rollout did not finish in {max} ticks; last state: {:?}\n{}\n{}",
        st.status,
        steps.join("\n"),
        last.join("\n")
    );
}

fn check_prs(e: &Env) {
    let st = e.state();
    assert_eq!(st.status, PlanStatus::Succeeded);
    let pulls = e.gh.pulls();
    let steps: Vec<_> = st
        .waves
        .iter()
        .flat_map(|w| &w.steps)
        .filter(|s| s.status != StepStatus::Skipped)
        .collect();
    assert_eq!(pulls.len(), steps.len(), "one PR per step, no duplicates");
    for s in &steps {
        let n = s.pr.expect("PR number recorded");
        let pr = pulls.iter().find(|p| p["number"] == n).unwrap();
        assert_eq!(pr["merged"], true, "PR #{n}");
        assert_eq!(pr["head"]["ref"], s.branch.as_str());
        assert!(
            pr["title"].as_str().unwrap().starts_with("fleetwave("),
            "{}",
            pr["title"]
        );
        assert!(
            pr["body"]
                .as_str()
                .unwrap()
                .contains("<!-- fleetwave: plan=")
        );
        let comments = e.gh.comments(n);
        assert_eq!(comments.len(), 1, "one managed comment on PR #{n}");
        let statuses = e.gh.statuses(s.head.as_deref().unwrap());
        assert!(
            statuses.iter().any(|x| x["context"] == "fleetwave/gate"),
            "PR #{n} has no gate status"
        );
    }
}

#[test]
fn every_example_plan_rolls_out_through_pull_requests() {
    for plan in ["gitops-base", "k8s-minor", "chained", "k0rdent-template"] {
        let e = env(plan);
        let idle = rollout(&e, plan, 400);
        check_prs(&e);
        // Reported in README (`cargo test --test github every_example -- --nocapture`).
        let steps = e.gh.pulls().len();
        let total = e.gh.calls().len();
        let idle_max = idle.iter().map(|(c, _)| *c).max().unwrap_or(0);
        println!(
            "{plan}: {total} REST calls for {steps} steps ({:.1} per step), idle ticks at most {idle_max}",
            total as f64 / steps as f64
        );
        // An idle tick costs at most one call per open pull request.
        for (calls, open) in &idle {
            assert!(
                calls <= open,
                "{plan}: an idle tick made {calls} calls with {open} open PRs"
            );
        }
        assert!(!idle.is_empty(), "{plan}: no idle tick was measured");
    }
}

#[test]
fn twenty_percent_faults_still_complete_without_duplicates() {
    let e = env("chained");
    e.gh.set_faults(Faults {
        rate: 0.2,
        seed: 7,
        retry_after_secs: 0,
        slow_ms: 0,
    });
    rollout(&e, "chained", 600);
    e.gh.set_faults(Faults {
        rate: 0.0,
        seed: 0,
        retry_after_secs: 0,
        slow_ms: 0,
    });
    check_prs(&e);
    let faulted = e.gh.calls().iter().filter(|c| c.status >= 429).count();
    assert!(faulted > 10, "only {faulted} faults were injected");
}

#[test]
fn a_foreign_push_gets_a_failure_status_and_is_never_merged() {
    let e = env("gitops-base");
    let out = e.reconcile(start());
    assert!(text(&out).contains("did: push"), "{}", text(&out));
    let foreign = push_foreign_commit(&e);
    for i in 1..6 {
        let out = e.reconcile(start() + Duration::minutes(10 * i));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    }
    let n = e.state().waves[0].steps[0].pr.unwrap();
    let pr = e.gh.pulls().into_iter().find(|p| p["number"] == n).unwrap();
    assert_eq!(pr["merged"], false);
    let statuses = e.gh.statuses(&foreign);
    let last = statuses
        .iter()
        .rev()
        .find(|s| s["context"] == "fleetwave/gate")
        .expect("a gate status on the foreign head");
    assert_eq!(last["state"], "failure");
    assert!(
        last["description"]
            .as_str()
            .unwrap()
            .contains("will not merge"),
        "{last}"
    );
}

#[test]
fn a_human_merge_before_the_gate_is_green_is_recorded() {
    let e = env("k8s-minor");
    let out = e.reconcile(start());
    assert!(text(&out).contains("did: push"));
    // The canary is automated but its first tick only posted "pending": merge it by hand now.
    let n = e.state().waves[0].steps[0].pr.unwrap();
    e.gh.merge_as_human("acme", "fleet", n, "bob");
    let out = e.reconcile(start() + Duration::minutes(1));
    assert!(
        text(&out).contains("BEFORE the gate was green"),
        "{}",
        text(&out)
    );
    let s = e.state().waves[0].steps[0].clone();
    assert!(s.merged_by_human);
    assert_eq!(s.gate_green_at_merge, Some(false));
}

/// The contract test: the same rollout with every REST call passing through Prism's
/// validating proxy loaded with GitHub's OpenAPI description. Any request Prism rejects
/// (422) or response it flags (500 / `sl-violations`) fails the run.
#[test]
fn contract_rollout_through_prism() {
    let e = env("gitops-base");
    let prism = match common::prism::Prism::start(&e.gh.base_url()) {
        Ok(p) => p,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let spec = plan_of("gitops-base");
    let mut now = start();
    let mut done = false;
    for _ in 0..200 {
        e.gh.set_clock(now);
        let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args([
                "reconcile",
                "--once",
                "--clusters",
                "sim",
                "--forge",
                "github",
                "--remote",
                &e.gh.git_url("acme", "fleet"),
                "--plan",
                "plans/demo.yaml",
            ])
            .args(["--cache", e.dir.path().join("cache.git").to_str().unwrap()])
            .args([
                "--github-api",
                &prism.url,
                "--approver",
                "alice",
                "--dashboard",
                "--check-runs",
            ])
            .args(["--now", &now.to_rfc3339()])
            .env("GITHUB_TOKEN", TOKEN)
            .output()
            .unwrap();
        let t = text(&out);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "through Prism: {t}\nPrism log:\n{}",
            prism.violations().join("\n")
        );
        assert!(!t.contains("sl-violations"), "contract violation: {t}");
        if t.lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
        {
            done = true;
            break;
        }
        let reviewed = e.review(&spec);
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
            Some(x) if !t.contains("did: ") && !reviewed && !flux_pending && x > now => x,
            _ => now + Duration::minutes(5),
        };
    }
    assert!(done, "the rollout through Prism did not finish");
    assert!(
        prism.violations().is_empty(),
        "Prism reported: {:?}",
        prism.violations()
    );
    assert_eq!(
        e.gh.issues().len(),
        1,
        "one dashboard issue, edited in place"
    );
    let runs = e.gh.check_runs();
    assert!(!runs.is_empty(), "no check run was posted");
    assert!(
        runs.iter().any(|r| r["output"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("| cluster |"))),
        "{runs:#?}"
    );
}

#[test]
fn a_new_plan_revision_closes_stale_pull_requests() {
    let e = env("k8s-minor");
    let out = e.reconcile(start());
    assert!(text(&out).contains("did: push"), "{}", text(&out));
    let old = e.state().waves[0].steps[0].clone();
    // The platform team retargets the plan before the first step merged.
    e.git.fetch().unwrap();
    let main = e.git.branch_head("main").unwrap().unwrap();
    let plan = String::from_utf8(
        e.git
            .read_file(&main, Path::new("plans/demo.yaml"))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let mut files = BTreeMap::new();
    files.insert(
        PathBuf::from("plans/demo.yaml"),
        plan.replace("v1.33.5", "v1.33.6").into_bytes(),
    );
    let sig = Sig {
        name: "Platform".into(),
        email: "platform@example.com".into(),
        time: start(),
    };
    let c = e
        .git
        .commit_changes(&main, &files, "plans: v1.33.6", &sig)
        .unwrap();
    e.git.push("main", &c, Some(&main)).unwrap();
    let out = e.reconcile(start() + Duration::minutes(5));
    let t = text(&out);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
    let pulls = e.gh.pulls();
    let stale = pulls
        .iter()
        .find(|p| p["number"] == old.pr.unwrap())
        .unwrap();
    assert_eq!(stale["state"], "closed", "the old revision's PR is closed");
    assert_eq!(stale["merged"], false);
    let st = e.state();
    assert_ne!(
        st.waves[0].steps[0].branch, old.branch,
        "the step follows the new revision"
    );
    assert!(
        st.waves[0].steps[0].id.contains("v1-33-6"),
        "{:?}",
        st.waves[0].steps[0].id
    );
    assert!(
        pulls
            .iter()
            .any(|p| p["state"] == "open"
                && p["head"]["ref"] == st.waves[0].steps[0].branch.as_str()),
        "{t}"
    );
}

/// Mallory commits on the first step's branch; returns her commit.
fn push_foreign_commit(e: &Env) -> String {
    let branch = e.state().waves[0].steps[0].branch.clone();
    e.git.fetch().unwrap();
    let head = e.git.branch_head(&branch).unwrap().unwrap();
    let files = BTreeMap::from([(PathBuf::from("docs/hotfix.md"), b"by hand\n".to_vec())]);
    let sig = Sig {
        name: "Mallory".into(),
        email: "mallory@example.com".into(),
        time: start(),
    };
    let foreign = e.git.commit_changes(&head, &files, "hotfix", &sig).unwrap();
    e.git.push(&branch, &foreign, Some(&head)).unwrap();
    foreign
}

/// Tick (reviewing as `rollout` does) until a tick's output satisfies `stop`; returns it.
/// Starts at `*now` and leaves it at the matching tick's time.
fn tick_until(
    e: &Env,
    plan: &str,
    now: &mut DateTime<Utc>,
    max: usize,
    stop: impl Fn(&str) -> bool,
) -> String {
    let spec = plan_of(plan);
    for _ in 0..max {
        let out = e.reconcile(*now);
        let t = text(&out);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
        *now += Duration::minutes(5);
        if stop(&t) {
            return t;
        }
        e.review(&spec);
    }
    panic!("{plan}: no tick matched in {max} ticks");
}

/// GitHub answers 409 when the head moved between fleetwave's check and the merge
/// (https://docs.github.com/en/rest/pulls/pulls#merge-a-pull-request): nothing merged, and
/// fleetwave must say so instead of `did: merge`.
#[test]
fn a_merge_refused_with_409_is_reported_as_not_done() {
    let e = env("gitops-base");
    e.gh.push_merge_fault(common::fake_github::MergeFault::Conflict);
    let mut now = start();
    let t = tick_until(&e, "gitops-base", &mut now, 100, |t| {
        t.contains("merge fleetwave/")
    });
    assert!(t.contains("not done: merge"), "{t}");
    assert!(!t.contains("did: merge"), "{t}");
    assert!(e.gh.pulls().iter().all(|p| p["merged"] == false));
    // The next tick merges it for real, and says so with the merge commit.
    let t = tick_until(&e, "gitops-base", &mut now, 20, |t| {
        t.contains("did: merge")
    });
    assert!(t.contains("merge commit"), "{t}");
    assert!(e.gh.pulls().iter().any(|p| p["merged"] == true));
}

/// A merge whose answer is lost (5xx after GitHub merged) is read back, not retried blindly
/// into a 405: the PR is merged, and that is what fleetwave reports.
#[test]
fn a_lost_merge_answer_is_read_back() {
    let e = env("gitops-base");
    e.gh.push_merge_fault(common::fake_github::MergeFault::LoseAnswer);
    let mut now = start();
    let t = tick_until(&e, "gitops-base", &mut now, 100, |t| {
        t.contains("merge fleetwave/")
    });
    assert!(t.contains("did: merge"), "{t}");
    assert!(!t.contains("not done"), "{t}");
    let merged: Vec<_> =
        e.gh.pulls()
            .into_iter()
            .filter(|p| p["merged"] == true)
            .collect();
    assert_eq!(merged.len(), 1, "{t}");
    let sha = merged[0]["merge_commit_sha"].as_str().unwrap();
    assert!(
        t.contains(&sha[..10]),
        "the reported merge commit is GitHub's: {t}"
    );
    let merges =
        e.gh.calls()
            .iter()
            .filter(|c| c.path.ends_with("/merge"))
            .count();
    assert_eq!(merges, 1, "one merge call, no blind retry");
}

/// Check runs are for GitHub Apps only (https://docs.github.com/en/rest/checks/runs: "OAuth
/// apps and authenticated users are not able to create a check run"). With a PAT,
/// `--check-runs` falls back to the commit status, says so once, and the tick succeeds.
#[test]
fn check_runs_with_a_personal_token_fall_back_to_statuses() {
    let e = env("gitops-base");
    e.gh.set_pat(true);
    let cache = e.dir.path().join("cache.git");
    let args = ["--approver", "alice", "--check-runs"];
    let out = e.reconcile_with(start(), &cache, &args, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(
        t.matches("only GitHub Apps can write check runs").count(),
        1,
        "{t}"
    );
    let n = e.state().waves[0].steps[0].pr.expect("the PR was opened");
    let head = e.gh.pulls().iter().find(|p| p["number"] == n).unwrap()["head"]["sha"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        e.gh.statuses(&head)
            .iter()
            .any(|s| s["context"] == "fleetwave/gate")
    );
    // The refusal is remembered: the next tick does not ask again.
    e.gh.reset_calls();
    let out = e.reconcile_with(start() + Duration::minutes(5), &cache, &args, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("only GitHub Apps"), "{}", text(&out));
    assert!(e.gh.calls().iter().all(|c| !c.path.contains("check-runs")));
}

/// Approval gates on a fresh runner (a new cache every tick, as on GitHub's hosted runners):
/// reviews are read from GitHub each tick, and the plan's own `approval.users` count (no
/// `--approver` flag). Every call carries GitHub's recommended headers.
#[test]
fn approvals_pass_on_fresh_runners_from_the_plan_reviewers() {
    let e = env("k8s-minor");
    let spec = plan_of("k8s-minor");
    let mut now = start();
    let mut approved_seen = false;
    let mut last = String::new();
    for i in 0..300 {
        let cache = e.dir.path().join(format!("fresh-{i}.git"));
        let out = e.reconcile_with(now, &cache, &[], &[]);
        let t = text(&out);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
        if t.lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
        {
            assert!(approved_seen, "the approval gate was never met");
            assert!(
                e.gh.missing_headers().is_empty(),
                "{:?}",
                e.gh.missing_headers()
            );
            return;
        }
        approved_seen |= !e.reviewed.borrow().is_empty();
        let reviewed = e.review(&spec);
        let next = t
            .lines()
            .find_map(|l| l.strip_prefix("next: "))
            .and_then(|x| DateTime::parse_from_rfc3339(x).ok())
            .map(|x| x.with_timezone(&Utc));
        let state = e.state();
        let mut steps = state.waves.iter().flat_map(|w| &w.steps);
        let flux_pending = steps.any(|s| s.status == StepStatus::Merged);
        now = match next {
            Some(x) if !t.contains("did: ") && !reviewed && !flux_pending && x > now => x,
            _ => now + Duration::minutes(5),
        };
        last = t;
    }
    panic!("the rollout did not finish on fresh runners (approval never read?)\n{last}");
}

/// GitHub App auth against GitHub Enterprise Server (`/api/v3`): the JWT buys an
/// installation token and every REST call carries it
/// (https://docs.github.com/en/enterprise-server@3.14/apps/creating-github-apps/authenticating-with-a-github-app/authenticating-as-a-github-app-installation).
#[test]
fn github_app_auth_works_on_enterprise_server() {
    let e = env("gitops-base");
    let key = e.dir.path().join("app.pem");
    let ok = Command::new("openssl")
        .args(["genrsa", "-out", key.to_str().unwrap(), "2048"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "openssl is needed in CI");
        println!("skipped: openssl could not make an RSA key");
        return;
    }
    let api = format!("{}/api/v3", e.gh.base_url());
    let cache = e.dir.path().join("cache.git");
    let args = ["--github-api", &api, "--github-app-id", "99"];
    let key_arg = ["--github-app-key", key.to_str().unwrap()];
    let args: Vec<&str> = args.iter().chain(&key_arg).copied().collect();
    // The App alone talks to the API; the token only reaches Git.
    let env = [("GITHUB_TOKEN", ""), ("FLEETWAVE_GIT_TOKEN", TOKEN)];
    let out = e.reconcile_with(start(), &cache, &args, &env);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(e.gh.pulls().len(), 1, "{t}");
    let unauthorized: Vec<_> =
        e.gh.calls()
            .into_iter()
            .filter(|c| c.status == 401)
            .collect();
    assert!(unauthorized.is_empty(), "{unauthorized:?}");
}

/// A held rollout reads "Held" with its reason on the dashboard issue, not "InProgress".
#[test]
fn a_held_rollout_reads_held_on_the_dashboard() {
    let e = env("gitops-base");
    let cache = e.dir.path().join("cache.git");
    let args = ["--approver", "alice", "--dashboard"];
    let out = e.reconcile_with(start(), &cache, &args, &[]);
    assert!(text(&out).contains("did: push"), "{}", text(&out));
    // Someone else commits on the step branch: fleetwave holds and will not merge.
    push_foreign_commit(&e);
    for i in 1..3 {
        let out = e.reconcile_with(start() + Duration::minutes(10 * i), &cache, &args, &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        let why = t.lines().find_map(|l| l.strip_prefix("held: ")).expect(&t);
        let issues = e.gh.issues();
        let body = issues[0]["body"].as_str().unwrap();
        assert!(body.contains("— Held"), "{body}");
        assert!(body.contains(&format!("Held: {why}")), "{body}");
    }
    assert_eq!(e.gh.issues().len(), 1, "one dashboard issue");
}

/// The open step that waits for an approving review: (PR, head, gate description).
fn waiting_for_approval(e: &Env) -> Option<(u64, String, String)> {
    let st = e.state();
    st.waves.iter().flat_map(|w| &w.steps).find_map(|s| {
        let p = s.posted.as_ref()?;
        (s.status == StepStatus::Open && p.description.contains("approving review"))
            .then(|| (s.pr.unwrap(), p.head.clone(), p.description.clone()))
    })
}

/// Roll k8s-minor out (merging the manual waves as a human would, approving nothing) until a
/// step waits for approval; returns (PR, head, now).
fn until_approval_is_needed(e: &Env) -> (u64, String, DateTime<Utc>) {
    let spec = plan_of("k8s-minor");
    let mut now = start();
    for _ in 0..300 {
        let out = e.reconcile(now);
        let t = text(&out);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
        if let Some((n, head, _)) = waiting_for_approval(e) {
            return (n, head, now);
        }
        let reviewed = e.review(&spec);
        let next = t
            .lines()
            .find_map(|l| l.strip_prefix("next: "))
            .and_then(|x| DateTime::parse_from_rfc3339(x).ok())
            .map(|x| x.with_timezone(&Utc));
        now = match next {
            Some(x) if !reviewed && !t.contains("did: ") && x > now => x,
            _ => now + Duration::minutes(5),
        };
    }
    panic!("no step ever waited for approval");
}

/// Reviews are paginated (`Link: rel="next"`,
/// https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api): an
/// approval that GitHub lists on the second page still counts.
#[test]
fn an_approval_on_the_second_page_of_reviews_counts() {
    let e = env("k8s-minor");
    let (n, head, now) = until_approval_is_needed(&e);
    for _ in 0..100 {
        e.gh.add_review("acme", "fleet", n, "bob", "COMMENTED", &head);
    }
    e.gh.add_review("acme", "fleet", n, "alice", "APPROVED", &head);
    let out = e.reconcile(now + Duration::minutes(5));
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    let still = waiting_for_approval(&e).map(|(_, _, d)| d);
    assert!(
        still.is_none(),
        "the approval on page 2 was not read: {still:?}"
    );
    let pages =
        e.gh.calls().into_iter().filter(|c| {
            c.path.ends_with(&format!("/pulls/{n}/reviews")) && c.query.contains("page=2")
        });
    assert!(pages.count() >= 1, "the second page was never asked for");
}

/// The plan's `approval.teams` count through team membership
/// (https://docs.github.com/en/rest/teams/members#get-team-membership-for-a-user); a token
/// that may not read it (403, as the Actions GITHUB_TOKEN) is said once, and the team
/// member's approval does not count — never silently.
#[test]
fn team_approvals_count_and_an_unreadable_team_is_said() {
    // k8s-minor's approval gate names users [alice] and teams [platform-leads].
    for readable in [true, false] {
        let e = env("k8s-minor");
        e.gh.add_team_member("acme", "platform-leads", "carol");
        e.gh.set_members_unreadable(!readable);
        let (n, head, now) = until_approval_is_needed(&e);
        e.gh.add_review("acme", "fleet", n, "carol", "APPROVED", &head);
        let out = e.reconcile(now + Duration::minutes(5));
        let t = text(&out);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
        let waiting = waiting_for_approval(&e).is_some();
        assert_eq!(waiting, !readable, "readable={readable}: {t}");
        let said = t
            .matches("cannot check membership of team platform-leads")
            .count();
        assert_eq!(said, usize::from(!readable), "readable={readable}: {t}");
    }
}

/// `status` and the dashboard show the core REST budget as GitHub's `x-ratelimit-*` headers
/// stated it on the answers the reconciler saw; `status` itself calls no GitHub API.
#[test]
fn status_and_the_dashboard_show_the_rate_limit_budget_seen() {
    let e = env("gitops-base");
    e.gh.set_rate_remaining(4321);
    let cache = e.dir.path().join("cache.git");
    let out = e.reconcile_with(
        start(),
        &cache,
        &["--approver", "alice", "--dashboard"],
        &[],
    );
    assert!(text(&out).contains("did: push"), "{}", text(&out));
    let left = |t: &str| -> u64 {
        let at = t
            .find(" of 5000 requests")
            .unwrap_or_else(|| panic!("no budget in {t}"));
        let n = t[..at].rsplit(' ').next().unwrap();
        n.parse().unwrap()
    };
    let issues = e.gh.issues();
    let body = issues[0]["body"].as_str().unwrap();
    let on_dashboard = left(body);
    assert!(
        (4000..4321).contains(&on_dashboard),
        "the tick spent calls from 4321: {body}"
    );
    let status = |cache: &Path, json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetwave"));
        cmd.args(["status", "--remote", &e.gh.git_url("acme", "fleet")])
            .args(["--plan", "plans/demo.yaml"])
            .args(["--cache", cache.to_str().unwrap()])
            .env("GITHUB_TOKEN", TOKEN)
            .env_remove("FLEETWAVE_GIT_TOKEN");
        if json {
            cmd.args(["--output", "json"]);
        }
        let out = cmd.output().unwrap();
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    e.gh.reset_calls();
    let shown = status(&cache, false);
    // The tick's last answers came after the dashboard's: as many or fewer left.
    let in_status = left(&shown);
    assert!(in_status <= on_dashboard, "{shown}");
    let doc: serde_json::Value = serde_json::from_str(&status(&cache, true)).unwrap();
    assert_eq!(doc["githubBudget"]["remaining"].as_u64(), Some(in_status));
    assert_eq!(doc["githubBudget"]["limit"].as_u64(), Some(5000));
    assert!(
        e.gh.calls().is_empty(),
        "status called GitHub: {:?}",
        e.gh.calls()
    );
    // A cache no GitHub forge wrote: no budget, rather than a made-up one.
    let fresh = e.dir.path().join("fresh-cache");
    assert!(!status(&fresh, false).contains("GitHub API budget"));
    assert!(!status(&fresh, true).contains("githubBudget"));
}

/// A batched plan's dashboard issue shows each wave's batches, the freeze to come, skipped
/// clusters and the ETA with its assumption, as `status` does.
#[test]
fn the_dashboard_shows_batches_the_freeze_and_the_eta() {
    let e = env("batches");
    let cache = e.dir.path().join("cache.git");
    let args = ["--approver", "alice", "--dashboard"];
    // The prod wave has not started, but its batches are planned and shown.
    let now = start();
    let out = e.reconcile_with(now, &cache, &args, &[]);
    assert!(text(&out).contains("did: push"), "{}", text(&out));
    let body = e.gh.issues()[0]["body"].as_str().unwrap().to_string();
    let prod = &body[body.find("### prod").expect(&body)..];
    assert!(prod.contains("- batch 0 ("), "{prod}");
    assert!(prod.contains("- batch 1 ("), "{prod}");
    assert!(
        prod.contains("| 1 gitops-base 2026.02 (batch 2) | – | Pending"),
        "{prod}"
    );
    assert!(prod.contains("- ETA "), "{prod}");
    assert!(prod.contains("each step converges"), "{prod}");
    let st = e.state();
    let wave = st.waves.iter().find(|w| w.name == "prod").unwrap();
    // Batch 0 is the canary: one cluster, named on its line.
    assert_eq!(wave.batches[0].len(), 1, "{prod}");
    assert!(
        prod.contains(&format!("- batch 0 ({})", wave.batches[0][0])),
        "{prod}"
    );
    // The wave's freeze (2026-11-23 14:00–20:00 Europe/Berlin) comes later that day.
    assert!(
        prod.contains(
            "- freeze next: 2026-11-23 13:00 to 2026-11-23 19:00 UTC: change advisory board"
        ),
        "{prod}"
    );
}

/// The next tick's time after a tick that printed `t` (as [`rollout`] advances).
fn next_time(e: &Env, t: &str, now: DateTime<Utc>) -> DateTime<Utc> {
    let flux_pending = e
        .state_opt()
        .iter()
        .flat_map(|s| &s.waves)
        .flat_map(|w| &w.steps)
        .any(|s| s.status == StepStatus::Merged);
    let next = t
        .lines()
        .find_map(|l| l.strip_prefix("next: "))
        .and_then(|x| DateTime::parse_from_rfc3339(x).ok())
        .map(|x| x.with_timezone(&Utc));
    match next {
        Some(x) if !t.contains("did: ") && !flux_pending && x > now => x,
        _ => now + Duration::minutes(5),
    }
}

/// Ticks killed at random moments (between pushing a batch's branch and opening its pull
/// request, between merging and recording) are repaired by the next tick: every batch of the
/// prod wave is one pull request, merged once, in order and after `batchDelay`.
#[test]
fn killed_ticks_between_batches_leave_one_pull_request_per_batch() {
    let e = env("batches");
    let cache = e.dir.path().join("cache.git");
    let mut rng = common::Lcg(0x6b17);
    let (mut kills, mut now, mut finished) = (0, start(), false);
    for _ in 0..600 {
        let mut cmd = e.command_with(now, &cache, &["--approver", "alice"], &[]);
        let Some(out) = common::run_or_kill(&mut cmd, &mut rng, &mut kills, 20, 400) else {
            continue;
        };
        let t = text(&out);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
        if t.lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
        {
            finished = true;
            break;
        }
        now = next_time(&e, &t, now);
    }
    assert!(finished, "the rollout did not finish");
    assert!(kills >= 5, "only {kills} ticks were killed mid-way");
    check_prs(&e);
    let st = e.state();
    let prod = st.waves.iter().find(|w| w.name == "prod").unwrap();
    assert_eq!(prod.batches.len(), 3);
    for b in 1..3 {
        let merged = prod.steps[b].merged_at.unwrap();
        let prev = prod.steps[b - 1].converged_at.unwrap();
        assert!(merged >= prev + Duration::hours(2), "batch {b}");
    }
}

/// `skip` and `retry` against a GitHub remote (Git over HTTPS with the token): the skipped
/// cluster gets no pull request; skipping twice writes once; the retried cluster gets one new
/// pull request of its own, and retrying again changes nothing.
#[test]
fn skip_and_retry_through_pull_requests_are_idempotent() {
    let e = env("batches");
    let cache = e.dir.path().join("cache.git");
    let cmd = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args(args)
            .args(["--remote", &e.gh.git_url("acme", "fleet")])
            .args(["--plan", "plans/demo.yaml"])
            .args(["--cache", cache.to_str().unwrap()])
            .args(["--now", &start().to_rfc3339()])
            .env("GITHUB_TOKEN", TOKEN)
            .env_remove("FLEETWAVE_GIT_TOKEN")
            .output()
            .unwrap()
    };
    assert!(text(&e.reconcile(start())).contains("did: push"));
    let skip = [
        "skip",
        "--cluster",
        "prod-eu-01",
        "--reason",
        "decommissioned",
        "--by",
        "alice",
    ];
    let first = cmd(&skip);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let head = {
        e.git.fetch().unwrap();
        e.git.branch_head("fleetwave/state").unwrap()
    };
    let second = cmd(&skip);
    assert!(
        text(&second).contains("already skipped"),
        "{}",
        text(&second)
    );
    e.git.fetch().unwrap();
    assert_eq!(e.git.branch_head("fleetwave/state").unwrap(), head);
    // Until the prod wave runs without it (its batches are fixed when it starts).
    let mut now = start();
    loop {
        let out = e.reconcile(now);
        let t = text(&out);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
        let st = e.state();
        let prod = st.waves.iter().find(|w| w.name == "prod").unwrap();
        if prod.steps.iter().any(|s| s.merged_at.is_some()) {
            assert!(prod.skipped.contains_key("prod-eu-01"));
            // It keeps its place in its batch, but no step changes it.
            assert!(
                prod.steps
                    .iter()
                    .all(|s| s.changes.iter().all(|c| c.cluster != "prod-eu-01"))
            );
            break;
        }
        assert!(now < start() + Duration::days(2), "prod never started");
        now = next_time(&e, &t, now);
    }
    // Retry re-admits it: one new batch, one new pull request; a second retry adds nothing.
    let retry = [
        "retry",
        "--cluster",
        "prod-eu-01",
        "--reason",
        "back in service",
    ];
    let first = cmd(&retry);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let again = cmd(&retry);
    assert!(text(&again).contains("nothing changed"), "{}", text(&again));
    finish(&e, now);
    check_prs(&e);
    let st = e.state();
    let prod = st.waves.iter().find(|w| w.name == "prod").unwrap();
    assert!(!prod.skipped.contains_key("prod-eu-01"));
    let retried: Vec<_> = prod
        .steps
        .iter()
        .filter(|s| s.changes.iter().any(|c| c.cluster == "prod-eu-01"))
        .collect();
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert!(retried[0].branch.contains("retry"), "{}", retried[0].branch);
    assert!(retried[0].pr.is_some() && retried[0].merged_at.is_some());
}

/// Tick from `now` until the plan succeeds.
fn finish(e: &Env, mut now: DateTime<Utc>) {
    for _ in 0..400 {
        let out = e.reconcile(now);
        let t = text(&out);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{t}");
        if t.lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
        {
            return;
        }
        now = next_time(e, &t, now);
    }
    panic!("the rollout did not finish");
}
