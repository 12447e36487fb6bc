//! End-to-end rollouts through `fleetwave reconcile --once` against a local bare remote,
//! the local forge and the simulated Flux, with time passed in by `--now`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, Duration, TimeZone, Utc};
use fleetwave::adapters::notify::JsonlSink;
use fleetwave::git::{Auth, GitRepo, Sig};
use fleetwave::state::{PlanState, PlanStatus, StepStatus, WaveStatus};

struct Fleet {
    _dir: tempfile::TempDir,
    root: PathBuf,
    remote: PathBuf,
    /// A separate clone for the test's own reads and "human" pushes.
    git: GitRepo,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0)
        .single()
        .unwrap()
}

fn fleet(plan: &str) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let remote = fleetwave::demo::seed_remote(&root, plan, start()).unwrap();
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

impl Fleet {
    fn reconcile(&self, cache: &str, now: DateTime<Utc>, extra: &[&str]) -> Output {
        self.reconcile_command(cache, now)
            .args(extra)
            .output()
            .unwrap()
    }

    /// One `reconcile --once` tick on the simulated clusters, with the cache `cache`.
    fn reconcile_command(&self, cache: &str, now: DateTime<Utc>) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetwave"));
        cmd.args([
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
        .args(["--now", &now.to_rfc3339()]);
        cmd
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

    /// Merge a manual wave's step as a reviewer would, when fleetwave says it may.
    fn review(&self, now: DateTime<Utc>) -> bool {
        let st = self.state();
        let Some((branch, head)) = fleetwave::demo::ready_for_review(&st) else {
            return false;
        };
        let base = self.git.branch_head("main").unwrap().unwrap();
        let sig = Sig {
            name: "Reviewer".into(),
            email: "reviewer@example.com".into(),
            time: now,
        };
        let merge = self
            .git
            .merge_commit(&base, &head, &format!("Merge {branch}"), &sig)
            .unwrap();
        self.git.push("main", &merge, Some(&base)).unwrap();
        true
    }

    /// The next tick's time: five minutes on, or straight to what is due when nothing is
    /// happening and no merged step waits on Flux (convergence cannot be predicted).
    fn next_time(&self, text: &str, now: DateTime<Utc>, idle: bool) -> DateTime<Utc> {
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
            Some(t) if idle && !flux_pending && t > now => t,
            _ => now + Duration::minutes(5),
        }
    }

    fn events(&self) -> Vec<fleetwave::notify::Event> {
        JsonlSink::read_events(&self.root.join("events.jsonl")).unwrap()
    }

    /// Merge commits on main per step branch, oldest first.
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

/// Tick until the plan is done or held; reviewers merge manual steps. Returns the last output.
fn run(f: &Fleet, extra: &[&str], max_ticks: usize) -> (Output, DateTime<Utc>) {
    let mut now = start();
    for _ in 0..max_ticks {
        let out = f.reconcile("cache.git", now, extra);
        let text = stdout(&out);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "reconcile failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        let done = text
            .lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"));
        if done || out.status.code() == Some(1) {
            return (out, now);
        }
        let reviewed = f.review(now);
        let idle = !text.contains("did: ") && !reviewed;
        now = f.next_time(&text, now, idle);
    }
    panic!("the rollout did not finish in {max_ticks} ticks");
}

fn check_order(st: &PlanState, plan: &fleetwave::plan::Plan) {
    let mut prev_wave_end: Option<DateTime<Utc>> = None;
    for (w, spec) in st.waves.iter().zip(&plan.waves) {
        assert_eq!(w.status, WaveStatus::Succeeded, "wave {}", w.name);
        let mut prev_converged: Option<DateTime<Utc>> = None;
        for s in w.steps.iter().filter(|s| s.status != StepStatus::Skipped) {
            let merged = s.merged_at.expect("merged");
            if let Some(p) = prev_wave_end {
                assert!(
                    merged >= p,
                    "wave {} step {} merged at {merged} before the previous wave passed at {p}",
                    w.name,
                    s.index
                );
            }
            if let Some(p) = prev_converged {
                assert!(
                    merged >= p,
                    "wave {} step {} merged before the previous step converged",
                    w.name,
                    s.index
                );
            }
            let conv = s.converged_at.expect("converged");
            assert!(conv >= merged);
            prev_converged = Some(conv);
        }
        let soak = w.finished_at.unwrap() - w.soak_started_at.unwrap();
        assert!(
            soak >= Duration::from_std(spec.soak).unwrap(),
            "wave {} soaked only {soak}",
            w.name
        );
        prev_wave_end = w.finished_at;
    }
}

fn plan_of(name: &str) -> fleetwave::plan::Plan {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/plans/{name}.yaml"));
    fleetwave::plan::load(&p, std::fs::read_to_string(&p).unwrap())
        .unwrap()
        .0
}

#[test]
fn every_example_plan_rolls_out_in_order() {
    for name in ["k8s-minor", "gitops-base", "chained", "k0rdent-template"] {
        let f = fleet(name);
        let (out, _) = run(&f, &[], 400);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stdout(&out));
        let st = f.state();
        assert_eq!(st.status, PlanStatus::Succeeded, "{name}");
        check_order(&st, &plan_of(name));
        // Each step branch merged exactly once.
        let merges = f.merges();
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for (m, _) in &merges {
            *per.entry(m.clone()).or_default() += 1;
        }
        assert!(per.values().all(|n| *n == 1), "{name}: {per:?}");
        let merged_steps = st
            .waves
            .iter()
            .flat_map(|w| &w.steps)
            .filter(|s| s.merged_commit.is_some())
            .count();
        assert_eq!(merges.len(), merged_steps, "{name}");
        // One success telemetry event per cluster, no alert.
        let events = f.events();
        let clusters: usize = st.waves.iter().map(|w| w.clusters.len()).sum();
        assert_eq!(
            events.iter().filter(|e| e.telemetry.is_some()).count(),
            clusters,
            "{name}"
        );
        assert!(events.iter().all(|e| e.alert.is_none()));
    }
}

/// Each step's change records live in a file of their own on the state branch, named by blob
/// in the state file: a whole rollout writes them once, and every later state commit (opening
/// and merging pull requests, soaks, convergence) rewrites only the small state file.
#[test]
fn step_records_are_written_once_and_the_state_file_alone_moves() {
    let f = fleet("chained");
    let (out, _) = run(&f, &[], 400);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let st = f.state();
    let (dir, file) = (format!("{}.changes", st.plan), PlanState::path(&st.plan));
    let head = f.git.branch_head("fleetwave/state").unwrap().unwrap();
    let log = f.git.first_parent_log(&head, 1000).unwrap();
    assert!(log.len() > 10, "{} state commits", log.len());
    let changes_of = |commit: &str| -> BTreeMap<PathBuf, Vec<u8>> {
        f.git
            .files(commit)
            .unwrap()
            .into_iter()
            .filter(|(p, _)| p.starts_with(&dir))
            .collect()
    };
    // Oldest first: the first state commit wrote every step's records.
    let commits: Vec<&str> = log.iter().rev().map(|c| c.id.as_str()).collect();
    let first = changes_of(commits[0]);
    let steps_with_records = st
        .waves
        .iter()
        .flat_map(|w| &w.steps)
        .filter(|s| !s.changes.is_empty())
        .count();
    assert!(steps_with_records > 3, "{steps_with_records}");
    assert_eq!(first.len(), steps_with_records, "{:?}", first.keys());
    for c in &commits[1..] {
        assert_eq!(changes_of(c), first, "commit {c} rewrote a change file");
        let main = f.git.read_file(c, Path::new(&file)).unwrap().unwrap();
        let text = String::from_utf8(main).unwrap();
        assert!(!text.contains("\n    changes:"), "records inline at {c}");
    }
    // What the files hold is what the rollout recorded.
    let records: usize = st
        .waves
        .iter()
        .flat_map(|w| &w.steps)
        .map(|s| s.changes.len())
        .sum();
    let lines: usize = first
        .values()
        .map(|b| {
            String::from_utf8_lossy(b)
                .lines()
                .filter(|l| l.starts_with('{'))
                .count()
        })
        .sum();
    assert_eq!(records, lines);
}

/// A change file kept in the cache that does not parse is not trusted: the tick reads the
/// records from Git and keeps them again. (The cached plan view is made to hold no blob ids,
/// as one kept by an older build: with them, the tick takes the view's records and never
/// reads the kept change files.)
#[test]
fn a_cached_change_file_that_does_not_parse_is_read_from_git_again() {
    let f = fleet("k8s-minor");
    let now = start();
    let out = f.reconcile("cache.git", now, &[]);
    assert!(stdout(&out).contains("did: push "), "{}", stdout(&out));
    let before = f.state();
    let kept = f.root.join("cache.git/fleetwave-ticks/changes");
    let entries: Vec<PathBuf> = std::fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!entries.is_empty(), "no change file was cached");
    let good: Vec<Vec<u8>> = entries.iter().map(|p| std::fs::read(p).unwrap()).collect();
    for p in &entries {
        std::fs::write(p, b"[{\"cluster\": tru").unwrap();
    }
    let views = f.root.join("cache.git/fleetwave-ticks/views");
    for view in std::fs::read_dir(&views).unwrap() {
        let path = view.unwrap().path();
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let steps = v["waves"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .flat_map(|w| w["steps"].as_array_mut().unwrap());
        let stripped = steps
            .filter_map(|s| s.as_object_mut()?.remove("changes_blob"))
            .count();
        assert!(stripped > 0, "the view held no blob id");
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    }
    let out = f.reconcile("cache.git", now + Duration::minutes(1), &[]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let after = f.state();
    let records = |st: &PlanState| -> Vec<_> {
        st.waves
            .iter()
            .flat_map(|w| &w.steps)
            .map(|s| s.changes.clone())
            .collect()
    };
    assert_eq!(
        records(&after)[..records(&before).len()],
        records(&before)[..]
    );
    for (p, g) in entries.iter().zip(&good) {
        assert_eq!(
            &std::fs::read(p).unwrap(),
            g,
            "{} was not kept again",
            p.display()
        );
    }
}

/// A state written before change files existed (records inline in the state file) is read
/// as it is, and the next write moves its records out with nothing lost.
#[test]
fn a_state_with_records_inline_is_read_and_moved_out() {
    let f = fleet("k8s-minor");
    let now = start();
    let out = f.reconcile("cache.git", now, &[]);
    assert!(stdout(&out).contains("did: push "), "{}", stdout(&out));
    let before = f.state();
    assert!(
        before
            .waves
            .iter()
            .flat_map(|w| &w.steps)
            .any(|s| !s.changes.is_empty())
    );
    // Rewrite the branch as an older fleetwave left it.
    let head = f.git.branch_head("fleetwave/state").unwrap().unwrap();
    let dir = format!("{}.changes", before.plan);
    let old_files: Vec<PathBuf> = f
        .git
        .files(&head)
        .unwrap()
        .into_keys()
        .filter(|p| p.starts_with(&dir))
        .collect();
    assert!(!old_files.is_empty());
    let inline = before.to_yaml();
    let file = PlanState::path(&before.plan);
    let removed: Vec<&Path> = old_files.iter().map(PathBuf::as_path).collect();
    let sig = Sig {
        name: "older".into(),
        email: "older@example.com".into(),
        time: now,
    };
    let old = f
        .git
        .commit_files(
            Some(&head),
            &[(Path::new(&file), inline.as_bytes())],
            &removed,
            "older fleetwave",
            &sig,
        )
        .unwrap();
    f.git.push("fleetwave/state", &old, Some(&head)).unwrap();
    assert_eq!(f.state(), before, "the inline state reads the same");
    // A fresh cache reads it from Git; the first tick that writes the state moves the
    // records out.
    let mut after_head = old.clone();
    for k in 1..=30 {
        let out = f.reconcile("fresh.git", now + Duration::minutes(10 * k), &[]);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
        f.review(now + Duration::minutes(10 * k));
        f.git.fetch().unwrap();
        after_head = f.git.branch_head("fleetwave/state").unwrap().unwrap();
        if after_head != old {
            break;
        }
    }
    assert_ne!(after_head, old, "no tick wrote the state");
    let text = String::from_utf8(
        f.git
            .read_file(&after_head, Path::new(&file))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(!text.contains("\n    changes:"), "{text}");
    let after = f.state();
    let records = |st: &PlanState| -> Vec<Vec<fleetwave::state::ChangeRecord>> {
        st.waves
            .iter()
            .flat_map(|w| &w.steps)
            .map(|s| s.changes.to_vec())
            .collect()
    };
    assert_eq!(records(&after), records(&before));
}

#[test]
fn a_failing_canary_halts_the_plan() {
    let f = fleet("chained");
    let (out, now) = run(&f, &["--sim-fault", "stg-kamaji-01=HealthCheckFailed"], 200);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("held"), "{}", stdout(&out));
    let st = f.state();
    assert_eq!(st.status, PlanStatus::Halted);
    assert_eq!(st.waves[0].status, WaveStatus::Failed);
    assert!(st.waves[0].failed.contains_key("stg-kamaji-01"));
    // Keep ticking for two more days: nothing else is merged, nothing sent again.
    let merges_at_halt = f.merges().len();
    let mut t = now;
    for _ in 0..10 {
        t += Duration::hours(5);
        let o = f.reconcile(
            "cache.git",
            t,
            &["--sim-fault", "stg-kamaji-01=HealthCheckFailed"],
        );
        assert_eq!(o.status.code(), Some(1));
    }
    assert_eq!(f.merges().len(), merges_at_halt, "merged after the halt");
    assert!(
        st.waves[1..]
            .iter()
            .all(|w| w.steps.iter().all(|s| s.merged_commit.is_none()))
    );
    let events = f.events();
    let alerts: Vec<_> = events.iter().filter(|e| e.alert.is_some()).collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    // The hint is a command that runs as printed: this remote, this plan file, the wave.
    assert_eq!(
        alerts[0].alert.as_ref().unwrap().rollback_hint,
        format!(
            "fleetwave rollback --remote {} --plan plans/demo.yaml --wave canary",
            f.remote.display()
        )
    );
    let failed: Vec<_> = events
        .iter()
        .filter(|e| {
            e.telemetry
                .as_ref()
                .is_some_and(|t| t.outcome == fleetwave::notify::Outcome::Failed)
        })
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].telemetry.as_ref().unwrap().cluster_id,
        "stg-kamaji-01"
    );
}

fn assert_clean_end(f: &Fleet, plan: &str) {
    let st = f.state();
    assert_eq!(st.status, PlanStatus::Succeeded);
    check_order(&st, &plan_of(plan));
    let merges = f.merges();
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for (m, _) in &merges {
        *per.entry(m.clone()).or_default() += 1;
    }
    assert!(
        per.values().all(|n| *n == 1),
        "a step merged twice: {per:?}"
    );
    // One branch per step that had changes, nothing else under the plan's prefix.
    let branches = f.git.branches(&format!("fleetwave/{}/", st.plan)).unwrap();
    let steps: Vec<&str> = st
        .waves
        .iter()
        .flat_map(|w| &w.steps)
        .filter(|s| s.status != StepStatus::Skipped)
        .map(|s| s.branch.as_str())
        .collect();
    let names: Vec<&str> = branches.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(names.len(), steps.len(), "{names:?} vs {steps:?}");
    // Every event written exactly once.
    let text = std::fs::read_to_string(f.root.join("events.jsonl")).unwrap();
    let ids: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["id"].as_str().unwrap_or("").to_string())
        .collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        ids.len(),
        unique.len(),
        "an event was written twice: {ids:?}"
    );
    let clusters: usize = st.waves.iter().map(|w| w.clusters.len()).sum();
    assert_eq!(unique.len(), clusters);
}

#[test]
fn sigkill_at_50_random_points_then_the_rollout_still_completes() {
    let f = fleet("chained");
    let mut rng = common::Lcg(0x5eed);
    let (mut kills, mut now) = (0, start());
    for _ in 0..1000 {
        let mut cmd = f.reconcile_command("cache.git", now);
        // A random point inside the tick; a tick takes tens of milliseconds.
        let Some(out) = common::run_or_kill(&mut cmd, &mut rng, &mut kills, 50, 60) else {
            continue;
        };
        let text = stdout(&out);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if text
            .lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
        {
            break;
        }
        let reviewed = f.review(now);
        let idle = !text.contains("did: ") && !reviewed;
        now = f.next_time(&text, now, idle);
    }
    assert_eq!(kills, 50, "only {kills} ticks were killed mid-way");
    assert_clean_end(&f, "chained");
}

#[test]
fn two_reconcilers_at_once_never_both_act() {
    let f = fleet("gitops-base");
    let mut now = start();
    let mut races = 0;
    for _ in 0..300 {
        let spawn = |cache: &str| {
            f.reconcile_command(cache, now)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn("a.git"), spawn("b.git"));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let (ta, tb) = (stdout(&a), stdout(&b));
        for (o, t) in [(&a, &ta), (&b, &tb)] {
            assert!(
                matches!(o.status.code(), Some(0 | 1)),
                "{t}{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        races += [&ta, &tb]
            .iter()
            .filter(|t| t.contains("lost the state race"))
            .count();
        let done = [&ta, &tb].iter().any(|t| {
            t.lines()
                .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
        });
        if done {
            break;
        }
        let reviewed = f.review(now);
        let idle = !ta.contains("did: ") && !tb.contains("did: ") && !reviewed;
        let both = format!("{ta}{tb}");
        now = f.next_time(&both, now, idle);
    }
    assert!(
        races > 0,
        "the two reconcilers never raced; the test proves nothing"
    );
    assert_clean_end(&f, "gitops-base");
}

#[test]
fn base_moves_regenerate_the_step_and_foreign_commits_are_never_overwritten() {
    let f = fleet("gitops-base");
    let now = start();
    let out = f.reconcile("cache.git", now, &[]);
    assert!(stdout(&out).contains("did: push"), "{}", stdout(&out));
    let st = f.state();
    let branch = st.waves[0].steps[0].branch.clone();
    let first = f.git.branch_head(&branch).unwrap().unwrap();
    // Someone lands an unrelated commit on main.
    let main = f.git.branch_head("main").unwrap().unwrap();
    let sig = |who: &str, t| Sig {
        name: who.into(),
        email: format!("{who}@example.com"),
        time: t,
    };
    let mut files = BTreeMap::new();
    files.insert(PathBuf::from("docs/NOTES.md"), b"ops notes\n".to_vec());
    let moved = f
        .git
        .commit_changes(&main, &files, "docs: ops notes", &sig("alice", now))
        .unwrap();
    f.git.push("main", &moved, Some(&main)).unwrap();
    let out = f.reconcile("cache.git", now + Duration::minutes(1), &[]);
    assert!(stdout(&out).contains("regenerat"), "{}", stdout(&out));
    f.git.fetch().unwrap();
    let regenerated = f.git.branch_head(&branch).unwrap().unwrap();
    assert_ne!(regenerated, first);
    assert_eq!(
        f.git.commit_info(&regenerated).unwrap().parents,
        vec![moved.clone()],
        "the step is rebuilt on the new base"
    );
    // Now someone pushes to the step branch.
    let mut files = BTreeMap::new();
    files.insert(PathBuf::from("docs/HOTFIX.md"), b"manual fix\n".to_vec());
    let foreign = f
        .git
        .commit_changes(&regenerated, &files, "manual fix", &sig("bob", now))
        .unwrap();
    f.git.push(&branch, &foreign, Some(&regenerated)).unwrap();
    let mut t = now + Duration::minutes(2);
    for _ in 0..6 {
        let out = f.reconcile("cache.git", t, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(stdout(&out).contains("will not merge"), "{}", stdout(&out));
        t += Duration::hours(2);
    }
    f.git.fetch().unwrap();
    assert_eq!(
        f.git.branch_head(&branch).unwrap().unwrap(),
        foreign,
        "the foreign commit was overwritten"
    );
    let main_now = f.git.branch_head("main").unwrap().unwrap();
    assert!(
        !f.git.is_ancestor(&foreign, &main_now).unwrap(),
        "merged despite a foreign commit"
    );
    let posted = f.state().waves[0].steps[0].posted.clone().unwrap();
    assert_eq!(posted.state, fleetwave::state::GateState::Failure);
}

fn fleetwave_cmd(f: &Fleet, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(args)
        .args([
            "--remote",
            f.remote.to_str().unwrap(),
            "--plan",
            "plans/demo.yaml",
            "--cache",
            f.root.join("cache.git").to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

/// Files of the canary clusters on main, against the seeded original.
fn canary_files_restored(f: &Fleet) -> bool {
    f.git.fetch().unwrap();
    let head = f.git.branch_head("main").unwrap().unwrap();
    let first = f
        .git
        .first_parent_log(&head, 1000)
        .unwrap()
        .last()
        .unwrap()
        .id
        .clone();
    let (now, then) = (f.git.files(&head).unwrap(), f.git.files(&first).unwrap());
    then.iter()
        .filter(|(p, _)| {
            p.to_string_lossy().contains("dev-canary-01")
                || p.to_string_lossy().contains("stg-kamaji-01")
        })
        .all(|(p, b)| now.get(p) == Some(b))
}

#[test]
fn rollback_reverts_tags_and_refuses_minor_downgrades() {
    let fault = ["--sim-fault", "stg-kamaji-01=HealthCheckFailed"];
    // gitops-base: fully reversible.
    let f = fleet("gitops-base");
    let (out, now) = run(&f, &fault, 200);
    assert_eq!(out.status.code(), Some(1));
    assert!(!canary_files_restored(&f));
    let out = fleetwave_cmd(&f, &["rollback", "--merge", "--now", &now.to_rfc3339()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("merged fleetwave/"),
        "{}",
        stdout(&out)
    );
    assert!(
        canary_files_restored(&f),
        "the canary's files are not back to the original"
    );
    let st = f.state();
    assert!(
        st.waves[0]
            .steps
            .iter()
            .filter(|s| s.merged_commit.is_some())
            .all(|s| s.status == StepStatus::RolledBack)
    );
    // The reconciler stays halted after a rollback: nothing more is merged.
    let merges = f.merges().len();
    let o = f.reconcile("cache.git", now + Duration::hours(1), &fault);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(f.merges().len(), merges);

    // k8s-minor: the Kubernetes minor change is refused, with the reason.
    let f = fleet("k8s-minor");
    let (_, now) = run(&f, &fault, 200);
    let out = fleetwave_cmd(&f, &["rollback", "--merge", "--now", &now.to_rfc3339()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("refused:")
            && text.contains("minor downgrade is not supported")
            && text.contains("etcd snapshot"),
        "{text}"
    );
}

#[test]
fn pause_and_resume() {
    let f = fleet("gitops-base");
    let out = f.reconcile("cache.git", start(), &[]);
    assert!(stdout(&out).contains("did: push"));
    let p = fleetwave_cmd(&f, &["pause"]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    assert_eq!(f.state().status, PlanStatus::Paused);
    let branch = f.state().waves[0].steps[0].branch.clone();
    let out = f.reconcile("cache.git", start() + Duration::hours(1), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains("did: "), "{}", stdout(&out));
    assert!(
        !f.git
            .is_ancestor(
                &f.git.branch_head(&branch).unwrap().unwrap(),
                &f.git.branch_head("main").unwrap().unwrap()
            )
            .unwrap(),
        "merged while paused"
    );
    assert!(fleetwave_cmd(&f, &["resume"]).status.success());
    let out = f.reconcile("cache.git", start() + Duration::hours(2), &[]);
    assert!(stdout(&out).contains("did: merge"), "{}", stdout(&out));
    let h = fleetwave_cmd(&f, &["history"]);
    let text = stdout(&h);
    assert!(
        text.contains("paused") && text.contains("resumed"),
        "{text}"
    );
}

#[test]
fn demo_runs_the_whole_rollout_and_shows_a_halt() {
    let demo = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args(["demo", "--plain"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = demo(&[]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("every wave succeeded")
            && text.contains("Summary: plan k8s-1-34-chained — Succeeded"),
        "{text}"
    );
    let out = demo(&["--fail", "stg-kamaji-01"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("HALT") && text.contains("ALERT") && text.contains("fleetwave rollback"),
        "{text}"
    );
    assert!(
        text.contains("standard   Pending"),
        "a later wave moved: {text}"
    );
}

/// `demo --plan batches` prints the ETA before it starts, then each batch of the prod wave,
/// the `batchDelay` waits and the freeze holding the last batch, and finishes after the ETA.
#[test]
fn demo_shows_batches_the_freeze_and_the_eta() {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .env_remove("LD_PRELOAD")
        .args(["demo", "--plain", "--plan", "batches"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let eta = text.find("  plan: 2026-11-23 20:00 UTC").expect(&text);
    let started = text
        .find("rollout of plan gitops-base-batches started")
        .expect(&text);
    assert!(eta < started, "the ETA comes first: {text}");
    for b in 0..3 {
        assert!(
            text.contains(&format!("wave prod step 1 batch {b}: merged as")),
            "{text}"
        );
    }
    assert!(
        text.contains("waiting: batchDelay 2h after batch 0 converged"),
        "{text}"
    );
    assert!(
        text.contains("batch 2: frozen, will not merge: change advisory board"),
        "{text}"
    );
    assert!(
        text.contains("prod       Succeeded         7       3         3  Mon 23 Nov 20:10"),
        "{text}"
    );
}

/// `demo --plan rollback --fail C` fails the canary wave and merges the automatic rollback.
#[test]
fn demo_shows_the_automatic_rollback() {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .env_remove("LD_PRELOAD")
        .args([
            "demo",
            "--plain",
            "--plan",
            "rollback",
            "--fail",
            "stg-kamaji-01",
        ])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("HALT: wave canary failed"), "{text}");
    // The alert says the rollback is automatic; it offers no manual command as well.
    let alert = text.lines().find(|l| l.contains("ALERT:")).expect(&text);
    assert!(
        alert.ends_with("rollback: automatic (failurePolicy: rollback); what it cannot revert is listed in the plan's halt reason"),
        "{alert}"
    );
    let auto = &text[text.find("Automatic rollback of wave canary").expect(&text)..];
    assert!(
        auto.contains("pull request fleetwave/gitops-base-rollback/canary/rollback: merged as"),
        "{auto}"
    );
    assert!(auto.contains("reverted 8 value(s) in 6 file(s)"), "{auto}");
}

/// A cluster added to the fleet after its wave started (batches are fixed then) is not
/// changed behind the wave's back: it is recorded once as skipped by fleetwave with the reason,
/// and `retry --cluster` rolls it out as a batch of its own.
#[test]
fn a_cluster_joining_a_started_wave_is_recorded_and_retry_adds_it() {
    let f = fleet("batches");
    let mut now = start();
    // Until the prod wave has merged its first batch.
    loop {
        let out = f.reconcile("cache.git", now, &[]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}");
        let st = f.state();
        if st.waves[1].steps.iter().any(|s| s.merged_at.is_some()) {
            break;
        }
        assert!(now < start() + Duration::days(1), "prod never merged");
        now = f.next_time(&text, now, !text.contains("did: "));
    }
    // Someone adds prod-new-01 (a copy of prod-us-01, label env: prod) on main.
    let files: BTreeMap<PathBuf, Vec<u8>> = fleetwave::demo::example_files("batches")
        .unwrap()
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().contains("prod-us-01"))
        .map(|(p, b)| {
            let p = PathBuf::from(p.to_string_lossy().replace("prod-us-01", "prod-new-01"));
            let b = String::from_utf8(b)
                .unwrap()
                .replace("prod-us-01", "prod-new-01");
            (p, b.into_bytes())
        })
        .collect();
    assert!(files.len() > 3, "{files:?}");
    f.git.fetch().unwrap();
    let main = f.git.branch_head("main").unwrap().unwrap();
    let sig = Sig {
        name: "alice".into(),
        email: "alice@example.com".into(),
        time: now,
    };
    let moved = f
        .git
        .commit_changes(&main, &files, "add prod-new-01", &sig)
        .unwrap();
    f.git.push("main", &moved, Some(&main)).unwrap();
    let out = f.reconcile("cache.git", now + Duration::minutes(1), &[]);
    let text = stdout(&out);
    assert!(
        text.contains("cluster prod-new-01 joined the wave after it started"),
        "{text}"
    );
    let again = stdout(&f.reconcile("cache.git", now + Duration::minutes(2), &[]));
    assert!(
        !again.contains("prod-new-01 joined"),
        "recorded once: {again}"
    );
    let prod = f.state().waves[1].clone();
    assert_eq!(prod.skipped["prod-new-01"].by, "fleetwave");
    assert!(
        prod.steps
            .iter()
            .all(|s| s.changes.iter().all(|c| c.cluster != "prod-new-01"))
    );
    let retry = fleetwave_cmd(&f, &["retry", "--cluster", "prod-new-01"]);
    assert_eq!(retry.status.code(), Some(0), "{}", stdout(&retry));
    let mut now = now + Duration::minutes(3);
    for _ in 0..300 {
        let out = f.reconcile("cache.git", now, &[]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}");
        if text
            .lines()
            .any(|l| l.starts_with("plan ") && l.ends_with(" succeeded"))
        {
            break;
        }
        now = f.next_time(&text, now, !text.contains("did: "));
    }
    let prod = f.state().waves[1].clone();
    assert!(prod.clusters.contains(&"prod-new-01".to_string()));
    assert!(!prod.skipped.contains_key("prod-new-01"));
    let retried: Vec<_> = prod
        .steps
        .iter()
        .filter(|s| s.changes.iter().any(|c| c.cluster == "prod-new-01"))
        .collect();
    assert_eq!(retried.len(), 1);
    assert!(retried[0].branch.contains("retry"), "{}", retried[0].branch);
    assert_eq!(common::cert_manager_tag(&f.git, "prod-new-01"), "2026.02");
}

/// `demo --plan maintenance --fail C=Unreachable`: the dark cluster is skipped after
/// `unreachableAfter` (not failed) and the plan still succeeds.
#[test]
fn demo_skips_an_unreachable_cluster() {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .env_remove("LD_PRELOAD")
        .args(["demo", "--plain", "--plan", "maintenance"])
        .args(["--fail", "prod-eu-01=Unreachable"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("wave prod cluster prod-eu-01: skipped: unreachable since")
            && text.contains("longer than unreachableAfter 45m (onUnreachable: skip)"),
        "{text}"
    );
    assert!(!text.contains("HALT"), "{text}");
    assert!(
        text.contains("Summary: plan gitops-base-maintenance — Succeeded"),
        "{text}"
    );
}
