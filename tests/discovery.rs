//! Plan discovery through `fleetwave reconcile --once --all` against real Git repositories in
//! temp dirs, the local forge and the simulated Flux: a plan merged into `plans/` starts, a
//! changed plan is revised, a deleted plan's open step branches are closed (its state kept),
//! files that are not plans are ignored and an invalid plan is reported with file:line without
//! stopping the others; two plans that move the same clusters' Kubernetes version do not both
//! run (the later one waits, naming the earlier and the fields); `spec.after` orders plans.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, Duration, TimeZone, Utc};
use fleetwave::git::{Auth, GitRepo};
use fleetwave::state::PlanState;

const GITOPS: &str = "gitops-base-2026-02";
const MINOR: &str = "k8s-1-33-upgrade";
const CHAINED: &str = "k8s-1-34-chained";

struct Fleet {
    _dir: tempfile::TempDir,
    root: PathBuf,
    remote: PathBuf,
    git: GitRepo,
    clock: std::cell::Cell<DateTime<Utc>>,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0)
        .single()
        .unwrap()
}

fn example_plan(name: &str) -> String {
    std::fs::read_to_string(format!("fixtures/plans/{name}.yaml")).unwrap()
}

/// The example fleet with the example plan `first` at `plans/demo.yaml`.
fn fleet(first: &str) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let remote = fleetwave::demo::seed_remote(&root, first, start()).unwrap();
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
        clock: std::cell::Cell::new(start()),
    }
}

impl Fleet {
    /// Commit on `main` of the bare remote: files written (Some) or removed (None).
    fn commit(&self, changes: &[(&str, Option<&str>)], message: &str) {
        let repo = git2::Repository::open_bare(&self.remote).unwrap();
        let head = repo.find_reference("refs/heads/main").unwrap();
        let parent = head.peel_to_commit().unwrap();
        let mut b = git2::build::TreeUpdateBuilder::new();
        for (path, text) in changes {
            match text {
                Some(t) => {
                    let oid = repo.blob(t.as_bytes()).unwrap();
                    b.upsert(*path, oid, git2::FileMode::Blob);
                }
                None => {
                    b.remove(*path);
                }
            }
        }
        let tree = b.create_updated(&repo, &parent.tree().unwrap()).unwrap();
        let tree = repo.find_tree(tree).unwrap();
        self.clock.set(self.clock.get() + Duration::minutes(1));
        let time = git2::Time::new(self.clock.get().timestamp(), 0);
        let sig = git2::Signature::new("Platform Team", "platform@example.com", &time).unwrap();
        repo.commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            message,
            &tree,
            &[&parent],
        )
        .unwrap();
    }

    /// Commit a symlink at `path` pointing at `target` on `main`.
    fn commit_link(&self, path: &str, target: &str) {
        let repo = git2::Repository::open_bare(&self.remote).unwrap();
        let parent = repo
            .find_reference("refs/heads/main")
            .unwrap()
            .peel_to_commit()
            .unwrap();
        let mut b = git2::build::TreeUpdateBuilder::new();
        b.upsert(
            path,
            repo.blob(target.as_bytes()).unwrap(),
            git2::FileMode::Link,
        );
        let tree = b.create_updated(&repo, &parent.tree().unwrap()).unwrap();
        let tree = repo.find_tree(tree).unwrap();
        self.clock.set(self.clock.get() + Duration::minutes(1));
        let time = git2::Time::new(self.clock.get().timestamp(), 0);
        let sig = git2::Signature::new("Platform Team", "platform@example.com", &time).unwrap();
        repo.commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            "a link",
            &tree,
            &[&parent],
        )
        .unwrap();
    }

    fn reconcile_all(&self, extra: &[&str]) -> (i32, String, String) {
        self.clock.set(self.clock.get() + Duration::minutes(5));
        let out: Output = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args(["reconcile", "--once", "--all", "--clusters", "sim"])
            .args(["--remote", self.remote.to_str().unwrap()])
            .args(["--cache", self.root.join("cache").to_str().unwrap()])
            .args(["--now", &self.clock.get().to_rfc3339()])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The state of `plan`, if the state branch has one.
    fn state(&self, plan: &str) -> Option<PlanState> {
        self.git.fetch().unwrap();
        let head = self.git.branch_head("fleetwave/state").unwrap()?;
        fleetwave::reconcile::read_state(&self.git, &head, plan).unwrap()
    }

    fn step_branches(&self, plan: &str) -> Vec<String> {
        self.git.fetch().unwrap();
        self.git
            .branches(&format!("fleetwave/{plan}/"))
            .unwrap()
            .into_iter()
            .map(|(b, _)| b)
            .collect()
    }
}

/// The section of `reconcile --all`'s output about `plan`.
fn section<'a>(stdout: &'a str, plan: &str) -> &'a str {
    let start = stdout
        .find(&format!("== plan {plan} "))
        .unwrap_or_else(|| panic!("no section for {plan}:\n{stdout}"));
    let rest = &stdout[start + 3..];
    &stdout[start..start + 3 + rest.find("== plan ").unwrap_or(rest.len())]
}

#[test]
fn plans_are_found_added_changed_and_deleted() {
    let f = fleet("gitops-base");
    // Not plans: ignored. An invalid plan: reported with file:line, the others still run.
    f.commit(
        &[
            ("plans/README.yaml", Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n")),
            (
                "plans/broken.yaml",
                Some("apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata:\n  name: broken\nspec:\n  targetVersion: v1.99.x\n  waves: []\n"),
            ),
        ],
        "plans: notes and a broken plan",
    );
    // A symlink is never followed, and said so.
    f.commit_link("plans/linked.yaml", "demo.yaml");
    let (code, out, err) = f.reconcile_all(&[]);
    assert!(
        out.contains("note: plans/linked.yaml: not read as a plan: symlink"),
        "{out}"
    );
    assert_eq!(code, 2, "an invalid plan exits 2\n{out}\n{err}");
    assert!(err.contains("plans/broken.yaml:6:"), "{err}");
    assert!(
        !out.contains("notes") && !err.contains("README"),
        "{out}\n{err}"
    );
    assert!(section(&out, GITOPS).contains("did: "), "{out}");
    assert!(f.state(GITOPS).is_some());
    assert!(!f.step_branches(GITOPS).is_empty());

    // A plan merged into plans/ starts; the broken one is fixed by deleting it.
    f.commit(
        &[
            ("plans/minor.yaml", Some(&example_plan("k8s-minor"))),
            ("plans/broken.yaml", None),
        ],
        "plans: k8s minor",
    );
    let (code, out, err) = f.reconcile_all(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(section(&out, MINOR).contains("did: "), "{out}");
    let first = f.state(MINOR).expect("the new plan has a state");
    let branches = f.step_branches(MINOR);
    assert!(!branches.is_empty(), "{out}");

    // A changed plan is revised: its state follows the new plan text.
    let changed = example_plan("k8s-minor").replace(
        "metadata:\n  name: k8s-1-33-upgrade\n",
        "metadata:\n  name: k8s-1-33-upgrade\n  labels: {revised: \"yes\"}\n",
    );
    assert_ne!(changed, example_plan("k8s-minor"));
    f.commit(
        &[("plans/minor.yaml", Some(&changed))],
        "plans: revise k8s minor",
    );
    let (code, out, err) = f.reconcile_all(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let revised = f.state(MINOR).unwrap();
    assert_ne!(revised.plan_hash, first.plan_hash, "{out}");

    // A deleted plan stops: its open step branches are closed, its state is kept.
    f.commit(&[("plans/minor.yaml", None)], "plans: drop k8s minor");
    let (code, out, err) = f.reconcile_all(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let gone = section(&out, MINOR);
    assert!(gone.contains("deleted from plans"), "{out}");
    for b in &branches {
        assert!(gone.contains(&format!("did: closed {b}")), "{b}\n{out}");
    }
    assert!(f.step_branches(MINOR).is_empty());
    assert!(f.state(MINOR).is_some(), "the state is kept for history");
    // Nothing is left to close on the next pass; the other plan goes on.
    let (code, out, _) = f.reconcile_all(&[]);
    assert_eq!(code, 0);
    assert!(
        section(&out, MINOR).contains("no open step pull requests"),
        "{out}"
    );
    assert!(out.contains(&format!("== plan {GITOPS} ")), "{out}");
}

#[test]
fn a_later_plan_moving_the_same_kubernetes_versions_waits_for_the_earlier_one() {
    let f = fleet("k8s-minor");
    f.commit(
        &[("plans/chained.yaml", Some(&example_plan("chained")))],
        "plans: chained upgrade",
    );
    let (code, out, err) = f.reconcile_all(&[]);
    assert_eq!(code, 1, "the later plan is held\n{out}\n{err}");
    assert!(section(&out, MINOR).contains("did: "), "{out}");
    let held = section(&out, CHAINED);
    assert!(
        held.contains(&format!(
            "held: waits for plan {MINOR} (created earlier) to complete"
        )),
        "{out}"
    );
    assert!(held.contains("both edit "), "{held}");
    assert!(
        held.contains("spec.topology.version") || held.contains("spec.version"),
        "{held}"
    );
    assert!(
        held.contains("both move the Kubernetes version of cluster"),
        "{held}"
    );
    assert!(f.state(CHAINED).is_none(), "the held plan wrote nothing");
    assert!(f.step_branches(CHAINED).is_empty());
    // Dry run says the same without writing.
    let (code, out, _) = f.reconcile_all(&["--dry-run"]);
    assert_eq!(code, 1);
    assert!(
        section(&out, CHAINED).contains("held: waits for plan"),
        "{out}"
    );
}

#[test]
fn after_holds_a_plan_until_the_named_plan_is_complete() {
    let f = fleet("gitops-base");
    let text =
        example_plan("k8s-minor").replace("\nspec:\n", &format!("\nspec:\n  after: [{GITOPS}]\n"));
    f.commit(
        &[("plans/minor.yaml", Some(&text))],
        "plans: k8s minor after gitops-base",
    );
    let (code, out, err) = f.reconcile_all(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(section(&out, GITOPS).contains("did: "), "{out}");
    assert!(
        section(&out, MINOR).contains(&format!(
            "held: waits for plan {GITOPS} to complete (spec.after)"
        )),
        "{out}"
    );
    // Without `after` the two plans edit different fields and both run.
    f.commit(
        &[("plans/minor.yaml", Some(&example_plan("k8s-minor")))],
        "plans: k8s minor without after",
    );
    let (code, out, err) = f.reconcile_all(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(section(&out, MINOR).contains("did: "), "{out}");
}

#[test]
fn after_naming_itself_is_refused_with_its_line() {
    let f = fleet("gitops-base");
    let text =
        example_plan("k8s-minor").replace("\nspec:\n", &format!("\nspec:\n  after: [{MINOR}]\n"));
    f.commit(
        &[("plans/minor.yaml", Some(&text))],
        "plans: k8s minor after itself",
    );
    let (code, out, err) = f.reconcile_all(&[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("plans/minor.yaml:"), "{err}");
    assert!(err.contains("cannot come after itself"), "{err}");
    assert!(section(&out, GITOPS).contains("did: "), "{out}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn plan_shows_conflicts_with_the_other_plans_of_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    copy_dir(Path::new("fixtures/fleet"), &repo);
    std::fs::create_dir_all(repo.join("plans")).unwrap();
    for (file, plan) in [
        ("minor.yaml", "k8s-minor"),
        ("chained.yaml", "chained"),
        ("base.yaml", "gitops-base"),
    ] {
        std::fs::write(repo.join("plans").join(file), example_plan(plan)).unwrap();
    }
    let plan = |file: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args(["plan", "--repo", repo.to_str().unwrap(), "--plan"])
            .arg(repo.join("plans").join(file))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = plan("minor.yaml");
    let conflicts = &out[out
        .find("Conflicts with other plans in the repository:")
        .unwrap_or_else(|| panic!("{out}"))..];
    // The chained plan moves the same clusters' Kubernetes version and the same fields.
    assert!(
        conflicts.contains(&format!("{CHAINED} (plans/chained.yaml): both edit ")),
        "{conflicts}"
    );
    assert!(
        conflicts.contains("both move the Kubernetes version of cluster"),
        "{conflicts}"
    );
    // The gitops-base plan edits other fields: no conflict with the minor upgrade.
    assert!(!conflicts.contains(GITOPS), "{conflicts}");
    // But the chained plan also bumps the gitops-base tag: it clashes with both.
    let out = plan("chained.yaml");
    assert!(
        out.contains(&format!("{MINOR} (plans/minor.yaml): both edit ")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{GITOPS} (plans/base.yaml): both edit ")),
        "{out}"
    );
}

/// Commit on `main` of the bare repository at `path`, removing `gone`.
fn remove_on_main(path: &Path, gone: &str, time: DateTime<Utc>) {
    let repo = git2::Repository::open_bare(path).unwrap();
    let parent = repo
        .find_reference("refs/heads/main")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut b = git2::build::TreeUpdateBuilder::new();
    b.remove(gone);
    let tree = b.create_updated(&repo, &parent.tree().unwrap()).unwrap();
    let tree = repo.find_tree(tree).unwrap();
    let sig = git2::Signature::new(
        "Platform Team",
        "platform@example.com",
        &git2::Time::new(time.timestamp(), 0),
    )
    .unwrap();
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "drop a plan",
        &tree,
        &[&parent],
    )
    .unwrap();
}

#[test]
fn a_deleted_plans_pull_requests_are_closed_with_a_comment_on_github() {
    use common::fake_github::FakeGitHub;
    const TOKEN: &str = "ghs_test_token_123";
    let gh = FakeGitHub::start(TOKEN);
    gh.set_clock(start());
    let mut files = fleetwave::demo::example_files("gitops-base").unwrap();
    files.insert(
        "plans/minor.yaml".into(),
        example_plan("k8s-minor").into_bytes(),
    );
    gh.create_repo("acme", "fleet", &files, start());
    let dir = tempfile::tempdir().unwrap();
    let run = |now: DateTime<Utc>| {
        gh.set_clock(now);
        let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args(["reconcile", "--once", "--all", "--clusters", "sim"])
            .args([
                "--forge",
                "github",
                "--remote",
                &gh.git_url("acme", "fleet"),
            ])
            .args(["--cache", dir.path().join("cache").to_str().unwrap()])
            .args(["--now", &now.to_rfc3339()])
            .env("GITHUB_API_URL", gh.base_url())
            .env("GITHUB_TOKEN", TOKEN)
            .env_remove("FLEETWAVE_GIT_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(start() + Duration::minutes(5));
    assert_eq!(code, Some(0), "{out}\n{err}");
    let open_of = |plan: &str| -> Vec<u64> {
        gh.pulls()
            .iter()
            .filter(|p| p["state"] == "open")
            .filter(|p| {
                p["head"]["ref"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&format!("fleetwave/{plan}/")))
            })
            .map(|p| p["number"].as_u64().unwrap())
            .collect()
    };
    let minor_prs = open_of(MINOR);
    assert!(!minor_prs.is_empty(), "{out}");
    assert!(!open_of(GITOPS).is_empty(), "{out}");

    remove_on_main(
        &gh.repo_path("acme", "fleet"),
        "plans/minor.yaml",
        start() + Duration::minutes(6),
    );
    let (code, out, err) = run(start() + Duration::minutes(10));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(section(&out, MINOR).contains("deleted from plans"), "{out}");
    assert!(open_of(MINOR).is_empty(), "{out}");
    for n in &minor_prs {
        assert!(
            section(&out, MINOR).contains(&format!("did: closed #{n} ")),
            "{out}"
        );
        let said: Vec<String> = gh
            .comments(*n)
            .iter()
            .filter_map(|c| c["body"].as_str().map(str::to_string))
            .collect();
        assert!(
            said.iter()
                .any(|b| b.contains(&format!("the plan {MINOR} was deleted from the repository"))),
            "{said:?}"
        );
    }
    // The other plan's pull requests stay open.
    assert!(!open_of(GITOPS).is_empty());
}

#[test]
fn serve_without_plan_ticks_every_plan_holds_the_conflicting_one_and_reports_the_invalid_one() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut files = fleetwave::demo::example_files("gitops-base").unwrap();
    for (path, text) in [
        ("plans/minor.yaml", example_plan("k8s-minor")),
        (
            "plans/broken.yaml",
            "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata:\n  name: broken\nspec: {}\n".into(),
        ),
    ] {
        files.insert(path.into(), text.into_bytes());
    }
    let remote = fleetwave::demo::seed_remote_files(dir.path(), &files, start()).unwrap();
    // The chained plan comes one commit later: it is the one that waits.
    let f = Fleet {
        root: dir.path().to_path_buf(),
        git: GitRepo::open(
            &dir.path().join("t.git"),
            remote.to_str().unwrap(),
            Auth::None,
        )
        .unwrap(),
        remote,
        clock: std::cell::Cell::new(start()),
        _dir: dir,
    };
    f.commit(
        &[("plans/later/chained.yaml", Some(&example_plan("chained")))],
        "plans: chained upgrade (in a subfolder)",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(["serve", "--clusters", "sim", "--listen", "127.0.0.1:0"])
        .args(["--interval", "3600", "--remote", f.remote.to_str().unwrap()])
        .args(["--cache", f.root.join("serve-cache").to_str().unwrap()])
        .args(["--now", &(start() + Duration::hours(1)).to_rfc3339()])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(a) = line.strip_prefix("fleetwave serve: listening on ") {
            break a.to_string();
        }
    };
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(l + "\n"));
        }
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let get = |path: &str| {
        rt.block_on(async {
            match reqwest::get(format!("http://{addr}{path}")).await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        })
    };
    let want = [
        format!("fleetwave_plan_ticks_total{{plan=\"{GITOPS}\",result=\"ok\"}} 1"),
        format!("fleetwave_plan_ticks_total{{plan=\"{MINOR}\",result=\"ok\"}} 1"),
        format!("fleetwave_plan_ticks_total{{plan=\"{CHAINED}\",result=\"held\"}} 1"),
        "fleetwave_ticks_total{result=\"error\"} 1".to_string(),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let metrics = loop {
        let (_, m) = get("/metrics");
        if want.iter().all(|w| m.contains(w.as_str())) {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{m}\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        metrics.contains(&format!(
            "fleetwave_plan_status{{plan=\"{MINOR}\",status=\"InProgress\"}} 1"
        )),
        "{metrics}"
    );
    assert_eq!(get("/readyz").0, 200);
    // The dashboard shows every plan that ticked, each from its own snapshot.
    let (code, page) = get("/");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(GITOPS) && page.contains(MINOR),
        "the dashboard misses a plan: {page}"
    );
    let logged = log.lock().unwrap().clone();
    assert!(logged.contains("plans/broken.yaml:5:"), "{logged}");
    assert!(
        logged.contains(&format!("waits for plan {MINOR}")),
        "{logged}"
    );
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_begun_plan_that_no_longer_plans_still_holds_the_plans_it_clashes_with() {
    let f = fleet("k8s-minor");
    let (code, out, err) = f.reconcile_all(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(f.state(MINOR).is_some_and(|s| !s.waves.is_empty()));
    // The begun plan now asks for a downgrade: refused against the fleet, so it cannot tick.
    let refused =
        example_plan("k8s-minor").replace("targetVersion: v1.33.5", "targetVersion: v1.30.0");
    assert_ne!(refused, example_plan("k8s-minor"));
    f.commit(
        &[
            ("plans/demo.yaml", Some(&refused)),
            ("plans/chained.yaml", Some(&example_plan("chained"))),
        ],
        "plans: minor refused, chained added",
    );
    let (code, out, err) = f.reconcile_all(&[]);
    assert_eq!(code, 2, "the refused plan is an error\n{out}\n{err}");
    assert!(err.contains(&format!("plan {MINOR}")), "{err}");
    // What it merged so far still holds the chained plan, which moves the same versions.
    assert!(
        section(&out, CHAINED).contains(&format!(
            "held: waits for plan {MINOR} (already rolling out)"
        )),
        "{out}"
    );
    assert!(f.state(CHAINED).is_none());
}
