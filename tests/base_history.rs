//! The simulated Flux's base history: kept across ticks (and, in the cache, across
//! processes), extended with new commits only, and always the same as a full walk.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use fleetwave::git::{Auth, GitRepo, Sig};
use fleetwave::reconcile::{self, BaseHistory, Settings};

fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn sig(minutes: i64) -> Sig {
    Sig {
        name: "Bob".into(),
        email: "bob@example.com".into(),
        time: start_time() + Duration::minutes(minutes),
    }
}

/// Commit `path` = `text` on main and push it; returns the new head.
fn land(git: &GitRepo, path: &str, text: &str, minutes: i64) -> String {
    git.fetch().unwrap();
    let head = git.branch_head("main").unwrap().unwrap();
    let mut files = BTreeMap::new();
    files.insert(PathBuf::from(path), text.as_bytes().to_vec());
    let c = git
        .commit_changes(&head, &files, "edit", &sig(minutes))
        .unwrap();
    git.push("main", &c, Some(&head)).unwrap();
    c
}

#[test]
fn history_grows_by_new_commits_and_matches_a_full_walk() {
    let dir = tempfile::tempdir().unwrap();
    let files = fleetwave::demo::example_files("gitops-base").unwrap();
    let remote = fleetwave::demo::seed_remote_files(dir.path(), &files, start_time()).unwrap();
    let remote = remote.to_str().unwrap().to_string();
    let pusher = GitRepo::open(&dir.path().join("pusher.git"), &remote, Auth::None).unwrap();
    let cluster_file = files
        .keys()
        .map(|p| p.to_str().unwrap().to_string())
        .find(|p| p.contains("dev-canary-01") && p.ends_with(".yaml"))
        .expect("a file of dev-canary-01");
    land(&pusher, "README.fleet.md", "one\n", 1);

    let git = GitRepo::open(&dir.path().join("cache.git"), &remote, Auth::None).unwrap();
    let s = Settings::new(std::path::Path::new("plans/demo.yaml"));
    let mut kept = BaseHistory::default();
    let full = |git: &GitRepo, o: &reconcile::Observed| {
        reconcile::base_history(git, o, 1000, &mut Default::default()).unwrap()
    };

    let o = reconcile::observe_repo(&git, &s).unwrap();
    let first = kept.update(&git, &o, 1000).unwrap();
    assert_eq!(first, full(&git, &o));
    assert_eq!(first.len(), 2);

    // Unchanged base: nothing is walked.
    let walks = fleetwave::git::history_walks();
    assert_eq!(kept.update(&git, &o, 1000).unwrap(), first);
    assert_eq!(fleetwave::git::history_walks(), walks);

    // Two new commits, one touching a cluster: only they are walked and diffed.
    let touched = format!(
        "{}# touched\n",
        String::from_utf8_lossy(&files[&PathBuf::from(&cluster_file)])
    );
    land(&pusher, &cluster_file, &touched, 2);
    land(&pusher, "README.fleet.md", "two\n", 3);
    let o = reconcile::observe_repo(&git, &s).unwrap();
    let walks = fleetwave::git::history_walks();
    let second = kept.update(&git, &o, 1000).unwrap();
    // One walk, two diffs.
    assert_eq!(fleetwave::git::history_walks(), walks + 3);
    assert_eq!(second, full(&git, &o));
    assert_eq!(second.len(), 4);
    assert!(second[2].touched.contains("dev-canary-01"), "{second:?}");
    assert!(second[3].touched.is_empty(), "{second:?}");

    // A new process on the same cache starts from what the last one kept.
    let o = reconcile::observe_repo(&git, &s).unwrap();
    let walks = fleetwave::git::history_walks();
    assert_eq!(
        BaseHistory::default().update(&git, &o, 1000).unwrap(),
        second
    );
    assert_eq!(fleetwave::git::history_walks(), walks);

    // The limit keeps the newest commits.
    land(&pusher, "README.fleet.md", "three\n", 4);
    let o = reconcile::observe_repo(&git, &s).unwrap();
    let limited = BaseHistory::default().update(&git, &o, 3).unwrap();
    assert_eq!(limited, full(&git, &o)[2..].to_vec());
}
