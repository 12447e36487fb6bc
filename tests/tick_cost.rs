//! What a tick may cost: one with `--clusters kube` never walks the base branch's history
//! (only the simulated Flux needs it), a tick on an unchanged base and plan plans nothing
//! (the plan view and the step trees come from the cache), and a state write that changes no
//! step's records encodes none of them again.
//!
//! Ticks run in this process (`cli::run`) so the process-wide counters of the Git adapter and
//! the reconciler see them; this file holds a single test, so no other test's ticks count.

mod common;

use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use common::fake_kube::{FakeKube, kustomization};
use fleetwave::git::{Auth, GitRepo};
use fleetwave::state::{PlanState, WaveStatus};

fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn kubeconfig_text(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: hub\n  cluster:\n    server: {server}\n\
         contexts:\n- name: hub\n  context:\n    cluster: hub\n    user: u\n\
         current-context: hub\nusers:\n- name: u\n  user:\n    token: t\n"
    )
}

/// One `reconcile --once` in this process.
fn tick(remote: &str, cache: &str, clusters: &str, now: DateTime<Utc>) {
    let cli = fleetwave::cli::Cli::parse_from([
        "fleetwave",
        "reconcile",
        "--once",
        "--remote",
        remote,
        "--plan",
        "plans/demo.yaml",
        "--cache",
        cache,
        "--clusters",
        clusters,
        "--kube-context",
        "hub",
        "--now",
        &now.to_rfc3339(),
    ]);
    fleetwave::cli::run(cli);
}

fn state(git: &GitRepo) -> PlanState {
    git.fetch().unwrap();
    let head = git
        .branch_head("fleetwave/state")
        .unwrap()
        .expect("state branch");
    fleetwave::reconcile::read_state(git, &head, "gitops-base-2026-02")
        .unwrap()
        .expect("the plan's state file")
}

#[test]
fn kube_ticks_walk_no_history_and_idle_ticks_plan_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files = fleetwave::demo::example_files("gitops-base").unwrap();
    let remote = fleetwave::demo::seed_remote_files(dir.path(), &files, start_time()).unwrap();
    let remote = remote.to_str().unwrap().to_string();
    let check = GitRepo::open(&dir.path().join("check.git"), &remote, Auth::None).unwrap();
    check.fetch().unwrap();
    let head = check.branch_head("main").unwrap().unwrap();

    let hub = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    let rev = format!("main@sha1:{head}");
    for c in ["dev-canary-01", "stg-kamaji-01"] {
        hub.apply(kustomization(c, &format!("{c}-apps"), ok, &rev, &rev, 1, 1));
    }
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_text(&hub.base_url())).unwrap();
    // SAFETY: this file's only test sets the variable before any tick reads it.
    unsafe { std::env::set_var("KUBECONFIG", &kubeconfig) };

    let cache: PathBuf = dir.path().join("cache.git");
    let cache = cache.to_str().unwrap().to_string();
    let t0 = start_time();

    // The first tick plans (a fresh cache) and starts the rollout, walking no history.
    let walks = fleetwave::git::history_walks();
    let plans = fleetwave::reconcile::plans_computed();
    tick(&remote, &cache, "kube", t0);
    let st = state(&check);
    assert_eq!(st.waves[0].status, WaveStatus::InProgress, "{st:?}");
    assert_eq!(
        fleetwave::git::history_walks(),
        walks,
        "a tick with --clusters kube walked the base branch's history"
    );
    assert!(fleetwave::reconcile::plans_computed() > plans);

    // Nothing moved: the next tick takes the plan and the step trees from the cache. It
    // writes the state (a status posted) without encoding a step's records again.
    let plans = fleetwave::reconcile::plans_computed();
    let encoded = fleetwave::reconcile::change_files_encoded();
    let parsed = fleetwave::reconcile::change_files_parsed();
    let state_head = check.branch_head("fleetwave/state").unwrap();
    tick(&remote, &cache, "kube", t0 + Duration::minutes(1));
    assert_eq!(fleetwave::reconcile::plans_computed(), plans);
    assert_eq!(fleetwave::git::history_walks(), walks);
    let after = state(&check);
    assert_ne!(check.branch_head("fleetwave/state").unwrap(), state_head);
    assert_eq!(
        fleetwave::reconcile::change_files_encoded(),
        encoded,
        "a write that changed no step's records encoded a change file"
    );
    // The state's change files hold the records of the cached plan view's steps (same blob
    // ids): they are taken from the view, not parsed again.
    assert_eq!(
        fleetwave::reconcile::change_files_parsed(),
        parsed,
        "a tick on an unchanged plan parsed a change file the plan view holds"
    );
    assert_eq!(
        after.waves[0].steps[0].changes,
        st.waves[0].steps[0].changes
    );

    // The simulated Flux does need the history: the counter sees it.
    tick(&remote, &cache, "sim", t0 + Duration::minutes(2));
    assert!(fleetwave::git::history_walks() > walks);
}
