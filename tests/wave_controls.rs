//! Production wave controls end to end: batches (`maxConcurrency`, `canary`, `order`),
//! `batchDelay`, freezes, unreachable clusters and maintenance windows, through `fleetwave reconcile --once` against a local bare remote,
//! the local forge and the simulated Flux, with time passed in by `--now`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, Duration, TimeZone, Utc};
use fleetwave::git::{Auth, GitRepo};
use fleetwave::state::{PlanState, PlanStatus, StepStatus};

struct Fleet {
    _dir: tempfile::TempDir,
    root: PathBuf,
    remote: PathBuf,
    git: GitRepo,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0)
        .single()
        .unwrap()
}

fn utc(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0)
        .single()
        .unwrap()
}

fn fleet_with(files: BTreeMap<PathBuf, Vec<u8>>) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let remote = fleetwave::demo::seed_remote_files(&root, &files, start()).unwrap();
    let git = GitRepo::open(
        &root.join("test-cache.git"),
        remote.to_str().unwrap(),
        Auth::None,
    )
    .unwrap();
    Fleet {
        _dir: dir,
        root,
        remote,
        git,
    }
}

fn fleet(plan: &str) -> Fleet {
    fleet_with(fleetwave::demo::example_files(plan).unwrap())
}

impl Fleet {
    fn command(&self, cache: &str, now: DateTime<Utc>, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fleetwave"));
        // The times are given with --now; libfaketime in the spawned binary (the year-ahead CI
        // pass) once left a child blocked for good on its own lock.
        c.env_remove("LD_PRELOAD");
        c.args([
            "reconcile",
            "--once",
            "--clusters",
            "sim",
            "--remote",
            self.remote.to_str().unwrap(),
            "--plan",
            "plans/demo.yaml",
        ])
        .args(["--cache", self.root.join(cache).to_str().unwrap()])
        .args([
            "--events-file",
            self.root.join("events.jsonl").to_str().unwrap(),
        ])
        .args(["--now", &now.to_rfc3339()])
        .args(extra);
        c
    }

    fn reconcile(&self, cache: &str, now: DateTime<Utc>, extra: &[&str]) -> Output {
        self.command(cache, now, extra).output().unwrap()
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
            .expect("a state file")
    }

    fn next_time(&self, text: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        let next = text
            .lines()
            .find_map(|l| l.strip_prefix("next: "))
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let flux_pending = self
            .state()
            .waves
            .iter()
            .flat_map(|w| &w.steps)
            .any(|s| s.status == StepStatus::Merged);
        match next {
            Some(t) if !text.contains("did: ") && !flux_pending && t > now => t,
            _ => now + Duration::minutes(5),
        }
    }

    /// Merge commits on main: (first line, time), oldest first.
    fn merges(&self) -> Vec<(String, DateTime<Utc>)> {
        self.git.fetch().unwrap();
        let head = self.git.branch_head("main").unwrap().unwrap();
        let mut out: Vec<(String, DateTime<Utc>)> = self
            .git
            .first_parent_log(&head, 1000)
            .unwrap()
            .into_iter()
            .filter(|c| c.parents.len() == 2)
            .map(|c| (c.message.lines().next().unwrap_or("").to_string(), c.time))
            .collect();
        out.reverse();
        out
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn done(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
}

/// Tick until the plan is done or held; every tick's output, joined.
fn run(f: &Fleet, extra: &[&str], max_ticks: usize) -> (Output, String) {
    let mut now = start();
    let mut all = String::new();
    for _ in 0..max_ticks {
        let out = f.reconcile("cache.git", now, extra);
        let text = stdout(&out);
        all.push_str(&format!("--- {now}\n{text}"));
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "reconcile failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if done(&text) || out.status.code() == Some(1) {
            return (out, all);
        }
        now = f.next_time(&text, now);
    }
    panic!("the rollout did not finish in {max_ticks} ticks:\n{all}");
}

/// The prod wave of `fixtures/plans/batches.yaml`: canary 1, then 3 at a time by provider.
const BATCHES: [&[&str]; 3] = [
    &["crit-k0rdent-01"],
    &["prod-eks-01", "prod-eu-01", "crit-k0s-01"],
    &["prod-us-01", "reg-airgap-01", "reg-vsphere-01"],
];

#[test]
fn batches_merge_in_order_one_pr_each_after_soak_delay_and_freeze() {
    let f = fleet("batches");
    let (out, log) = run(&f, &[], 300);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let st = f.state();
    assert_eq!(st.status, PlanStatus::Succeeded);
    // The one-batch wave keeps today's branch names.
    assert_eq!(
        st.waves[0].steps[0].branch,
        "fleetwave/gitops-base-batches/canary/1-gitops-base"
    );
    let prod = &st.waves[1];
    let want: Vec<Vec<String>> = BATCHES
        .iter()
        .map(|b| b.iter().map(|c| c.to_string()).collect())
        .collect();
    assert_eq!(prod.batches, want);
    assert_eq!(prod.steps.len(), 3);
    let d2 = Duration::hours(2);
    let (freeze_start, freeze_end) = (utc(13, 0), utc(19, 0));
    for (b, s) in prod.steps.iter().enumerate() {
        assert_eq!(s.batch, Some(b));
        assert_eq!(
            s.branch,
            format!("fleetwave/gitops-base-batches/prod/1-gitops-base-batch-{b}")
        );
        assert_eq!(s.status, StepStatus::Converged);
        // Each batch's PR changes only its own clusters.
        let clusters: std::collections::BTreeSet<&str> =
            s.changes.iter().map(|c| c.cluster.as_str()).collect();
        assert_eq!(clusters, BATCHES[b].iter().copied().collect());
        let merged = s.merged_at.unwrap();
        assert!(
            !(freeze_start..freeze_end).contains(&merged),
            "batch {b} merged at {merged}, inside the freeze"
        );
        if b > 0 {
            let prev = prod.steps[b - 1].converged_at.unwrap();
            // batchDelay 2h is longer than the 1h soak: it binds.
            assert!(
                merged >= prev + d2,
                "batch {b} merged {merged}, previous converged {prev}"
            );
        }
        // What the merge commit holds: this batch's files at 2026.02, later batches' not yet.
        let commit = s.merged_commit.clone().unwrap();
        for (later, members) in BATCHES.iter().enumerate().skip(b + 1) {
            for c in members.iter() {
                let path = Path::new("applications/overlays")
                    .join(c)
                    .join("services/sources/opencenter-cert-manager.yaml");
                if let Some(bytes) = f.git.read_file(&commit, &path).unwrap() {
                    let text = String::from_utf8_lossy(&bytes);
                    assert!(
                        text.contains("2026.01")
                            && !text.contains("tag: \"2026.02\"")
                            && !text.contains("tag: 2026.02"),
                        "batch {later} cluster {c} changed by batch {b}'s merge"
                    );
                }
            }
        }
    }
    // The freeze began while batch 1 soaked (and waited out batchDelay): batch 2 was due
    // inside the freeze and held until it ended, saying why.
    let conv1 = prod.steps[1].converged_at.unwrap();
    assert!(
        conv1 < freeze_start && conv1 + d2 > freeze_start,
        "batch 1 converged {conv1}"
    );
    assert!(prod.steps[2].merged_at.unwrap() >= freeze_end);
    assert!(
        log.contains(
            "frozen, will not merge: change advisory board (wave prod) until 2026-11-23 19:00 UTC"
        ),
        "{log}"
    );
    assert!(
        log.contains("waiting: batchDelay 2h after batch 0 converged"),
        "{log}"
    );
    // Each branch merged exactly once.
    let merges = f.merges();
    assert_eq!(merges.len(), 4, "{merges:?}");
}

#[test]
fn a_crash_between_batches_is_repaired_by_the_next_tick() {
    let f = fleet("batches");
    let mut rng = common::Lcg(0xba7c4);
    let (mut kills, mut now) = (0, start());
    let mut finished = false;
    for _ in 0..600 {
        let mut cmd = f.command("cache.git", now, &[]);
        let Some(out) = common::run_or_kill(&mut cmd, &mut rng, &mut kills, 25, 60) else {
            continue;
        };
        let text = stdout(&out);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if done(&text) {
            finished = true;
            break;
        }
        now = f.next_time(&text, now);
    }
    assert!(finished, "the rollout did not finish");
    assert!(kills >= 10, "only {kills} ticks were killed mid-way");
    let st = f.state();
    assert_eq!(st.status, PlanStatus::Succeeded);
    let prod = &st.waves[1];
    assert_eq!(prod.batches.len(), 3);
    for b in 1..3 {
        let merged = prod.steps[b].merged_at.unwrap();
        let prev = prod.steps[b - 1].converged_at.unwrap();
        assert!(merged >= prev + Duration::hours(2), "batch {b}");
    }
    // Every batch's branch merged exactly once, and nothing else.
    let merges = f.merges();
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for (m, _) in &merges {
        *per.entry(m.clone()).or_default() += 1;
    }
    assert!(per.values().all(|n| *n == 1), "{per:?}");
    assert_eq!(merges.len(), 4, "{merges:?}");
    let branches = f.git.branches("fleetwave/gitops-base-batches/").unwrap();
    assert_eq!(branches.len(), 4, "{branches:?}");
}

#[test]
fn the_repository_freeze_file_holds_every_plan() {
    let mut files = fleetwave::demo::example_files("gitops-base").unwrap();
    files.insert(
        PathBuf::from(".fleetwave/freeze.yaml"),
        b"freeze:\n  - start: \"2026-11-23 07:00\"\n    end: \"2026-11-23 12:00\"\n    reason: datacenter move\n".to_vec(),
    );
    let f = fleet_with(files);
    let first = f.reconcile("cache.git", start(), &[]);
    let text = stdout(&first);
    assert_eq!(first.status.code(), Some(0), "{text}");
    let mut now = start();
    let mut log = text;
    while now < utc(12, 0) {
        now += Duration::minutes(30);
        let o = f.reconcile("cache.git", now, &[]);
        log.push_str(&stdout(&o));
        let st = f.state();
        let merged = st.waves[0].steps[0].merged_at;
        if now < utc(12, 0) {
            assert_eq!(
                merged, None,
                "merged at {now} inside the repository freeze:\n{log}"
            );
        }
    }
    assert!(
        log.contains("frozen, will not merge: datacenter move (.fleetwave/freeze.yaml) until 2026-11-23 12:00 UTC"),
        "{log}"
    );
    // The freeze ends: the step merges on that tick (recorded on the next).
    assert!(log.contains("did: merge"), "{log}");
    f.reconcile("cache.git", utc(12, 5), &[]);
    let merged = f.state().waves[0].steps[0].merged_at.unwrap();
    assert!(merged >= utc(12, 0), "{merged}");
    // A freeze file fleetwave cannot read correctly stops the tick, naming file and line.
    let mut files = fleetwave::demo::example_files("gitops-base").unwrap();
    files.insert(
        PathBuf::from(".fleetwave/freeze.yaml"),
        b"freeze:\n  - start: \"2026-11-23 07:00\"\n    end: tomorrow\n".to_vec(),
    );
    let g = fleet_with(files);
    let o = g.reconcile("cache.git", start(), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(".fleetwave/freeze.yaml:3:10"), "{err}");
}

#[test]
fn plan_shows_batches_batch_delay_and_freezes_of_the_example_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan = |name: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .current_dir(root)
            .args(["plan", "--repo", "fixtures/fleet", "--plan"])
            .arg(format!("fixtures/plans/{name}.yaml"))
            .env("NO_COLOR", "1")
            .env("FLEETWAVE_NOW", "2026-11-23T08:00:00Z")
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
    };
    let text = plan("batches");
    assert!(
        text.contains("  batch 0 (canary): crit-k0rdent-01\n"),
        "{text}"
    );
    assert!(
        text.contains("  batch 1: prod-eks-01, prod-eu-01, crit-k0s-01\n"),
        "{text}"
    );
    assert!(
        text.contains("  batch 2: prod-us-01, reg-airgap-01, reg-vsphere-01\n"),
        "{text}"
    );
    assert!(text.contains("  batchDelay: 2h between"), "{text}");
    assert!(
        text.contains(
            "  freeze: 2026-11-23 13:00 to 2026-11-23 19:00 UTC: change advisory board (wave prod)"
        ),
        "{text}"
    );
    // The ETA: canary soaks 1h; prod batches 2h apart (batchDelay beats the 1h soak) from
    // 09:00, the last one due at 13:00 inside the 13:00-19:00 freeze, merging at 19:00, soak 1h.
    assert!(text.contains("  wave canary: 2026-11-23 09:00 UTC\n  wave prod: 2026-11-23 20:00 UTC\n  plan: 2026-11-23 20:00 UTC\n"), "{text}");
    let text = plan("freeze");
    assert!(
        text.contains(
            "  freeze: 2026-12-18 23:00 to 2027-01-04 07:00 UTC: year-end change freeze (plan)"
        ),
        "{text}"
    );
}

#[test]
fn failure_policy_rollback_merges_the_rollback_and_halts() {
    let f = fleet("rollback");
    let fault = ["--sim-fault", "stg-kamaji-01=HealthCheckFailed"];
    let (out, log) = run(&f, &fault, 200);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let st = f.state();
    assert_eq!(st.status, PlanStatus::Halted);
    let canary = &st.waves[0];
    let rb = canary
        .auto_rollback
        .clone()
        .expect("automatic rollback recorded");
    assert!(rb.done, "{rb:?}");
    assert_eq!(
        rb.branch.as_deref(),
        Some("fleetwave/gitops-base-rollback/canary/rollback")
    );
    let merge = rb.merged_commit.clone().expect("rollback merged");
    assert!(
        canary
            .steps
            .iter()
            .all(|s| s.status == StepStatus::RolledBack)
    );
    assert!(log.contains("did: roll back wave canary (failurePolicy rollback): merged fleetwave/gitops-base-rollback/canary/rollback"), "{log}");
    // Main holds the rollback: both canary clusters are back on 2026.01; the next wave was
    // never touched.
    for c in ["dev-canary-01", "stg-kamaji-01", "prod-eu-01"] {
        assert_eq!(common::cert_manager_tag(&f.git, c), "2026.01", "{c}");
    }
    assert!(
        f.merges()
            .iter()
            .any(|(m, _)| m.contains("rollback of wave canary"))
    );
    assert!(
        f.git
            .is_ancestor(&merge, &f.git.branch_head("main").unwrap().unwrap())
            .unwrap()
    );
    assert!(
        st.reason
            .as_deref()
            .unwrap()
            .contains("rolled back by failurePolicy"),
        "{:?}",
        st.reason
    );
    // Later ticks do it once only: no second rollback merge.
    let merges = f.merges().len();
    let later = f.reconcile("cache.git", start() + Duration::days(1), &fault);
    assert_eq!(later.status.code(), Some(1));
    assert_eq!(f.merges().len(), merges);
    assert!(
        !stdout(&later).contains("roll back wave"),
        "{}",
        stdout(&later)
    );
}

#[test]
fn failure_policy_rollback_refuses_kubernetes_downgrades_with_the_reason() {
    let mut files = fleetwave::demo::example_files("k8s-minor").unwrap();
    let plan = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata: {name: k8s-rollback}\nspec:\n  targetVersion: v1.33.5\n  waves:\n    - name: canary\n      clusterSelector: {matchLabels: {upgrade-wave: canary}}\n      failurePolicy: rollback\n      validation: {healthCheckDuration: 1h, automated: true}\n";
    files.insert(PathBuf::from("plans/demo.yaml"), plan.as_bytes().to_vec());
    let f = fleet_with(files);
    let fault = ["--sim-fault", "stg-kamaji-01=HealthCheckFailed"];
    let (out, log) = run(&f, &fault, 200);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let rb = f.state().waves[0].auto_rollback.clone().unwrap();
    assert!(rb.done && rb.merged_commit.is_none(), "{rb:?}");
    assert!(
        rb.lines
            .iter()
            .any(|l| l.starts_with("refused: wave canary cluster")
                && l.contains("a Kubernetes minor downgrade is not supported")),
        "{rb:?}"
    );
    assert!(
        rb.lines
            .iter()
            .any(|l| l == "wave canary: nothing reversible on main"),
        "{rb:?}"
    );
}

fn fleetwave_cmd(f: &Fleet, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(args)
        .args([
            "--remote",
            f.remote.to_str().unwrap(),
            "--plan",
            "plans/demo.yaml",
        ])
        .args(["--cache", f.root.join("cache.git").to_str().unwrap()])
        .args(["--now", &start().to_rfc3339()])
        .output()
        .unwrap()
}

#[test]
fn skip_takes_a_cluster_out_once_with_who_and_why() {
    let f = fleet("batches");
    // The rollout has started (the canary wave's PR is open).
    assert_eq!(
        f.reconcile("cache.git", start(), &[]).status.code(),
        Some(0)
    );
    let skip = [
        "skip",
        "--cluster",
        "prod-eu-01",
        "--reason",
        "decommissioned",
        "--by",
        "alice",
    ];
    let first = fleetwave_cmd(&f, &skip);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout(&first).contains("skipped cluster prod-eu-01 in wave prod for the rest of the rollout (by alice: decommissioned)"),
        "{}",
        stdout(&first)
    );
    f.git.fetch().unwrap();
    let head = f.git.branch_head("fleetwave/state").unwrap();
    // Idempotent: the second run says so and writes nothing.
    let second = fleetwave_cmd(&f, &skip);
    assert_eq!(second.status.code(), Some(0));
    assert!(
        stdout(&second).contains("already skipped in wave prod (by alice at"),
        "{}",
        stdout(&second)
    );
    f.git.fetch().unwrap();
    assert_eq!(f.git.branch_head("fleetwave/state").unwrap(), head);
    // A cluster the plan does not roll out to is refused.
    let bad = fleetwave_cmd(&f, &["skip", "--cluster", "lab-01"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is in no wave of plan"));
    // The rollout goes on without it: batch 1 holds two clusters, and its files stay as they were.
    let (out, log) = {
        let mut now = start();
        let mut log = String::new();
        loop {
            let o = f.reconcile("cache.git", now, &[]);
            let t = stdout(&o);
            log.push_str(&t);
            if done(&t) || o.status.code() != Some(0) {
                break (o, log);
            }
            now = f.next_time(&t, now);
        }
    };
    assert_eq!(out.status.code(), Some(0), "{log}");
    let st = f.state();
    assert_eq!(st.status, PlanStatus::Succeeded);
    let prod = &st.waves[1];
    assert_eq!(prod.skipped["prod-eu-01"].by, "alice");
    assert_eq!(prod.skipped["prod-eu-01"].reason, "decommissioned");
    assert!(prod.failed.is_empty());
    assert!(
        prod.steps
            .iter()
            .all(|s| s.changes.iter().all(|c| c.cluster != "prod-eu-01"))
    );
    assert_eq!(common::cert_manager_tag(&f.git, "prod-eu-01"), "2026.01");
    assert_eq!(common::cert_manager_tag(&f.git, "prod-us-01"), "2026.02");
    // The history names the skip, who and why.
    let h = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(["history", "--remote", f.remote.to_str().unwrap()])
        .args(["--plan", "plans/demo.yaml"])
        .args(["--cache", f.root.join("cache.git").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        stdout(&h).contains("skipped cluster prod-eu-01 in wave prod"),
        "{}",
        stdout(&h)
    );
}

#[test]
fn status_shows_batches_the_freeze_skipped_clusters_and_the_eta() {
    let f = fleet("batches");
    let mut now = start();
    while now < utc(14, 0) {
        let o = f.reconcile("cache.git", now, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        now = f.next_time(&stdout(&o), now).min(utc(14, 0));
    }
    let skip = fleetwave_cmd(&f, &["skip", "--cluster", "reg-airgap-01", "--by", "bob"]);
    assert_eq!(
        skip.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&skip.stderr)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(["status", "--remote", f.remote.to_str().unwrap()])
        .args(["--plan", "plans/demo.yaml"])
        .args(["--cache", f.root.join("cache.git").to_str().unwrap()])
        .args(["--now", &utc(14, 0).to_rfc3339()])
        .output()
        .unwrap();
    let text = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for want in [
        "  batch 0 (crit-k0rdent-01): converged\n",
        "  batch 1 (prod-eks-01, prod-eu-01, crit-k0s-01): converged\n",
        "  batch 2 (prod-us-01, reg-airgap-01, reg-vsphere-01): open\n",
        "  skipped: reg-airgap-01 by bob at 2026-11-23 08:00 UTC: \n",
        "  freeze in force: change advisory board (wave prod) until 2026-11-23 19:00 UTC\n",
        // The last batch merges when the freeze ends, converges (median 10m) and soaks 1h.
        "  ETA: 2026-11-23 20:10 UTC (each step converges in 10m (median of 3 converged step(s)); approvals instant)\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn a_window_closing_mid_batch_holds_the_batch_s_next_step_until_it_opens() {
    let mut files = fleetwave::demo::example_files("k8s-minor").unwrap();
    let plan = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata: {name: k8s-window}\nspec:\n  targetVersion: v1.33.5\n  waves:\n    - name: canary\n      clusterSelector: {matchLabels: {upgrade-wave: canary}}\n      canary: 1\n      order: [tenant.clastix.io]\n      window: {start: \"08:00\", end: \"08:10\"}\n      validation: {healthCheckDuration: 10m, automated: true}\n";
    files.insert(PathBuf::from("plans/demo.yaml"), plan.as_bytes().to_vec());
    let f = fleet_with(files);
    let (out, log) = run(&f, &[], 300);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let w = &f.state().waves[0];
    assert_eq!(w.batches, [["stg-kamaji-01"], ["dev-canary-01"]]);
    let per_batch = w.steps.iter().filter(|s| s.batch == Some(0)).count();
    assert!(per_batch >= 2, "the batch needs two steps: {:?}", w.steps);
    for s in w.steps.iter().filter(|s| s.merged_at.is_some()) {
        let m = s.merged_at.unwrap();
        let minute = m
            .time()
            .signed_duration_since(chrono::NaiveTime::MIN)
            .num_minutes();
        assert!(
            (8 * 60..8 * 60 + 10).contains(&minute),
            "{} merged at {m}, outside the window",
            s.branch
        );
    }
    // The window closed while batch 0 was between its steps: the next step waited a day.
    let first = w.steps[0].merged_at.unwrap();
    let second = w.steps[1].merged_at.unwrap();
    assert!(
        second >= first + Duration::hours(23),
        "{first} then {second}\n{log}"
    );
    assert!(log.contains("waiting for the maintenance window"), "{log}");
}

#[test]
fn retry_reruns_a_failed_cluster_once_and_the_plan_goes_on() {
    let mut files = fleetwave::demo::example_files("k8s-minor").unwrap();
    let plan = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata: {name: k8s-retry}\nspec:\n  targetVersion: v1.33.5\n  waves:\n    - name: canary\n      clusterSelector: {matchLabels: {upgrade-wave: canary}}\n      validation: {healthCheckDuration: 30m, automated: true}\n";
    files.insert(PathBuf::from("plans/demo.yaml"), plan.as_bytes().to_vec());
    let f = fleet_with(files);
    let fault = ["--sim-fault", "stg-kamaji-01=HealthCheckFailed"];
    let (out, log) = run(&f, &fault, 100);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(f.state().waves[0].failed.contains_key("stg-kamaji-01"));
    let retry = [
        "retry",
        "--cluster",
        "stg-kamaji-01",
        "--reason",
        "fixed coredns",
        "--by",
        "carol",
    ];
    let first = fleetwave_cmd(&f, &retry);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout(&first).contains(
            "retrying stg-kamaji-01 in wave canary as a new batch (by carol: fixed coredns)"
        ),
        "{}",
        stdout(&first)
    );
    f.git.fetch().unwrap();
    let head = f.git.branch_head("fleetwave/state").unwrap();
    let second = fleetwave_cmd(&f, &retry);
    assert_eq!(second.status.code(), Some(0));
    assert!(
        stdout(&second)
            .contains("has not failed and is not skipped: nothing to retry; nothing changed"),
        "{}",
        stdout(&second)
    );
    let none = fleetwave_cmd(&f, &["retry", "--failed"]);
    assert!(
        stdout(&none).contains("no cluster has failed"),
        "{}",
        stdout(&none)
    );
    f.git.fetch().unwrap();
    assert_eq!(
        f.git.branch_head("fleetwave/state").unwrap(),
        head,
        "a second retry wrote the state"
    );
    let st = f.state();
    assert_eq!(st.status, PlanStatus::InProgress);
    assert_eq!(st.waves[0].retries, [["stg-kamaji-01"]]);
    // The cause is fixed (no more fault): the wave runs again and the plan succeeds.
    let mut now = start() + Duration::hours(3);
    let mut log = String::new();
    for _ in 0..60 {
        let o = f.reconcile("cache.git", now, &[]);
        let t = stdout(&o);
        log.push_str(&t);
        assert_eq!(o.status.code(), Some(0), "{log}");
        if done(&t) {
            break;
        }
        now = f.next_time(&t, now);
    }
    let st = f.state();
    assert_eq!(st.status, PlanStatus::Succeeded, "{log}");
    assert!(st.waves[0].failed.is_empty());
    assert!(
        st.waves[0]
            .steps
            .iter()
            .any(|s| s.branch.ends_with("-retry-0") && s.status == StepStatus::Converged),
        "the retried cluster's workers went in a pull request of its own"
    );
    // The wave's own workers step left the retried cluster out: nothing was left for it.
    assert_eq!(st.waves[0].steps[1].status, StepStatus::Skipped);
    let retried_workers = st.waves[0].steps.last().unwrap();
    assert!(!retried_workers.changes.is_empty());
    assert!(
        retried_workers
            .changes
            .iter()
            .all(|c| c.cluster == "stg-kamaji-01")
    );
    let h = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(["history", "--remote", f.remote.to_str().unwrap()])
        .args(["--plan", "plans/demo.yaml"])
        .args(["--cache", f.root.join("cache.git").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        stdout(&h).contains(
            "retrying stg-kamaji-01 in wave canary as a new batch (by carol: fixed coredns)"
        ),
        "{}",
        stdout(&h)
    );
}

fn status_cmd(f: &Fleet, now: DateTime<Utc>, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .env_remove("LD_PRELOAD")
        .args(["status", "--remote", f.remote.to_str().unwrap()])
        .args(["--plan", "plans/demo.yaml"])
        .args(["--cache", f.root.join("cache.git").to_str().unwrap()])
        .args(["--now", &now.to_rfc3339()])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn an_unreachable_cluster_is_skipped_after_unreachable_after_and_retry_readmits_it() {
    let mut files = fleetwave::demo::example_files("k8s-minor").unwrap();
    let plan = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata: {name: k8s-dark}\nspec:\n  targetVersion: v1.33.5\n  waves:\n    - name: canary\n      clusterSelector: {matchLabels: {upgrade-wave: canary}}\n      onUnreachable: skip\n      unreachableAfter: 30m\n      validation: {healthCheckDuration: 30m, automated: true}\n";
    files.insert(PathBuf::from("plans/demo.yaml"), plan.as_bytes().to_vec());
    let f = fleet_with(files);
    let fault = ["--sim-fault", "stg-kamaji-01=Unreachable"];
    let (mut now, mut log, mut last) = (start(), String::new(), String::new());
    for _ in 0..60 {
        let o = f.reconcile("cache.git", now, &fault);
        last = stdout(&o);
        log.push_str(&format!("--- {now}\n{last}"));
        assert_eq!(o.status.code(), Some(0), "{log}");
        if f.state().waves[0].skipped.contains_key("stg-kamaji-01") {
            break;
        }
        now = f.next_time(&last, now);
    }
    let w = f.state().waves[0].clone();
    let rec = w
        .skipped
        .get("stg-kamaji-01")
        .cloned()
        .unwrap_or_else(|| panic!("never skipped:\n{log}"));
    assert_eq!(rec.by, "fleetwave");
    assert!(rec.reason.contains("unreachable since"), "{}", rec.reason);
    assert!(
        rec.reason
            .contains("simulated: the API server does not answer"),
        "{}",
        rec.reason
    );
    assert!(w.failed.is_empty(), "not a failure: {:?}", w.failed);
    let merged = w.steps[0].merged_at.unwrap();
    assert!(
        rec.at >= merged + Duration::minutes(30),
        "skipped at {} after a merge at {merged}",
        rec.at
    );
    assert!(
        log.contains("cluster stg-kamaji-01: skipped: unreachable since"),
        "{log}"
    );
    // A second tick at the same time records nothing new.
    let again = f.reconcile("cache.git", now, &fault);
    assert!(
        !stdout(&again).contains("skipped: unreachable"),
        "{}",
        stdout(&again)
    );
    assert_eq!(f.state().waves[0].skipped["stg-kamaji-01"], rec);
    // status shows it skipped (text and JSON), by fleetwave, with the reason.
    let text = stdout(&status_cmd(&f, now, &[]));
    assert!(
        text.contains("  skipped: stg-kamaji-01 by fleetwave at"),
        "{text}"
    );
    assert!(
        text.contains("skipped by fleetwave: unreachable since"),
        "{text}"
    );
    let json = stdout(&status_cmd(&f, now, &["--output", "json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let skipped = v["waves"][0]["skipped"][0].as_str().unwrap_or_default();
    assert!(skipped.starts_with("stg-kamaji-01 by fleetwave"), "{json}");
    // retry re-admits it.
    let r = fleetwave_cmd(
        &f,
        &[
            "retry",
            "--cluster",
            "stg-kamaji-01",
            "--reason",
            "back online",
            "--by",
            "carol",
        ],
    );
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        stdout(&r).contains("retrying stg-kamaji-01 in wave canary"),
        "{}",
        stdout(&r)
    );
    let st = f.state();
    assert!(st.waves[0].skipped.is_empty());
    assert_eq!(st.waves[0].retries, [["stg-kamaji-01"]]);
    // The rollout goes on to the end whatever the cluster does next.
    for _ in 0..80 {
        now = f.next_time(&last, now);
        let o = f.reconcile("cache.git", now, &fault);
        last = stdout(&o);
        log.push_str(&format!("--- {now}\n{last}"));
        assert_eq!(o.status.code(), Some(0), "{log}");
        if done(&last) {
            break;
        }
    }
    let st = f.state();
    assert_eq!(st.status, PlanStatus::Succeeded, "{log}");
    assert!(st.waves[0].failed.is_empty());
}

#[test]
fn a_maintenance_window_holds_the_batch_until_every_cluster_is_inside() {
    let mut files = fleetwave::demo::example_files("k8s-minor").unwrap();
    // stg-kamaji-01 is listed by name; dev-canary-01's CAPI Cluster names its window in a label.
    let plan = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata: {name: k8s-mw}\nspec:\n  targetVersion: v1.33.5\n  maintenanceWindows:\n    - name: late-morning\n      clusters: [stg-kamaji-01]\n      window: {start: \"10:00\", end: \"12:00\"}\n    - name: mid-morning\n      window: {start: \"09:00\", end: \"11:00\"}\n  waves:\n    - name: canary\n      clusterSelector: {matchLabels: {upgrade-wave: canary}}\n      validation: {healthCheckDuration: 10m, automated: true}\n";
    files.insert(PathBuf::from("plans/demo.yaml"), plan.as_bytes().to_vec());
    let capi = PathBuf::from("infrastructure/clusters/dev-canary-01/cluster.yaml");
    let labelled = |window: &str| {
        let text = String::from_utf8(files[&capi].clone()).unwrap();
        let with =
            format!("    upgrade-wave: canary\n    fleetwave.io/maintenance-window: {window}\n");
        assert!(text.contains("    upgrade-wave: canary\n"));
        text.replace("    upgrade-wave: canary\n", &with)
            .into_bytes()
    };
    // A label naming no window is refused before anything is written.
    let mut bad = files.clone();
    bad.insert(capi.clone(), labelled("nope"));
    let g = fleet_with(bad);
    let o = g.reconcile("cache.git", start(), &[]);
    let err = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("\"nope\" names no entry of spec.maintenanceWindows"),
        "{err}"
    );
    files.insert(capi.clone(), labelled("mid-morning"));
    let f = fleet_with(files);
    let first = f.reconcile("cache.git", start(), &[]);
    assert!(
        matches!(first.status.code(), Some(0 | 1)),
        "{}",
        stdout(&first)
    );
    let held = f.reconcile("cache.git", utc(8, 5), &[]);
    let text = stdout(&held);
    assert_eq!(held.status.code(), Some(1), "held is exit 1: {text}");
    for want in [
        "stg-kamaji-01 (window late-morning, opens 2026-11-23 10:00 UTC)",
        "dev-canary-01 (window mid-morning, opens 2026-11-23 09:00 UTC)",
        "; may merge from 2026-11-23 10:00 UTC",
    ] {
        assert!(text.contains(want), "missing {want:?}: {text}");
    }
    assert!(
        text.contains("next: 2026-11-23T10:00:00"),
        "woken when all are open: {text}"
    );
    let s = stdout(&status_cmd(&f, utc(8, 30), &[]));
    assert!(
        s.contains(
            "  held: waiting for maintenance windows (may merge from 2026-11-23 10:00 UTC): "
        ),
        "{s}"
    );
    // The ETA counts the wait for the windows (then the steps and the 10m soak).
    assert!(s.contains("  ETA: 2026-11-23 10:10 UTC"), "{s}");
    // One window open, the other not yet: still held, naming only the one outside.
    let half = f.reconcile("cache.git", utc(9, 30), &[]);
    let text = stdout(&half);
    assert_eq!(half.status.code(), Some(1), "{text}");
    assert!(
        text.contains("outside the maintenance window: stg-kamaji-01 (window late-morning"),
        "{text}"
    );
    assert!(!text.contains("dev-canary-01 (window"), "{text}");
    assert!(f.state().waves[0].steps[0].merged_at.is_none());
    // Both open: the batch merges.
    let open = f.reconcile("cache.git", utc(10, 0), &[]);
    assert!(stdout(&open).contains("did: merge"), "{}", stdout(&open));
    f.reconcile("cache.git", utc(10, 1), &[]);
    let merged = f.state().waves[0].steps[0].merged_at.unwrap();
    assert!((utc(10, 0)..utc(11, 0)).contains(&merged), "{merged}");
}

/// A freeze that begins while a batch soaks: the soak runs on (it merges nothing), the next
/// batch waits for the freeze to end, and every merge falls outside it.
#[test]
fn a_freeze_beginning_while_a_batch_soaks_holds_the_next_batch_until_it_ends() {
    let mut files = fleetwave::demo::example_files("batches").unwrap();
    let plan = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata: {name: soak-freeze}\nspec:\n  gitopsBase:\n    url: https://github.com/opencenter-cloud/openCenter-gitops-base.git\n    tag: \"2026.02\"\n  waves:\n    - name: prod\n      clusterSelector: {matchLabels: {env: prod}}\n      canary: 1\n      maxConcurrency: 3\n      order: [provider]\n      freeze:\n        - {start: \"2026-11-23 08:30\", end: \"2026-11-23 12:00\", timeZone: UTC, reason: incident review}\n      validation: {healthCheckDuration: 1h, automated: true}\n";
    files.insert(PathBuf::from("plans/demo.yaml"), plan.as_bytes().to_vec());
    let f = fleet_with(files);
    let (out, log) = run(&f, &[], 300);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let w = &f.state().waves[0];
    assert_eq!(w.batches.len(), 3);
    let b0 = &w.steps[0];
    let (merged0, converged0) = (b0.merged_at.unwrap(), b0.converged_at.unwrap());
    // Batch 0 merged before the freeze and began its soak; the freeze began during the soak.
    assert!(merged0 < utc(8, 30) && converged0 < utc(8, 30), "{log}");
    assert!(converged0 + Duration::hours(1) > utc(8, 30));
    let merged1 = w.steps[1].merged_at.unwrap();
    assert!(
        merged1 >= utc(12, 0),
        "batch 1 merged at {merged1}, inside the freeze\n{log}"
    );
    assert!(
        merged1 < utc(12, 30),
        "batch 1 waited past the freeze: {merged1}\n{log}"
    );
    assert!(
        log.contains("frozen, will not merge: incident review"),
        "{log}"
    );
    for s in &w.steps {
        let m = s.merged_at.unwrap();
        assert!(
            !(utc(8, 30)..utc(12, 0)).contains(&m),
            "{} merged at {m}",
            s.branch
        );
    }
}
