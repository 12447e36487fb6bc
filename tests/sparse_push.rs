//! Pushes that send what the commit changed, not the fleet: over Git smart HTTP (`git
//! http-backend` behind the fake GitHub) and into a local bare repository. The server is
//! real git, so a pack missing an object is refused by its connectivity check.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{TimeZone, Utc};
use common::fake_github::{FakeGitHub, PushFault};
use fleetwave::git::{Auth, GitError, GitRepo, Sig, sparse_push_objects};

const TOKEN: &str = "t0ken-sparse";

fn sig() -> Sig {
    Sig {
        name: "fleetwave".into(),
        email: "fleetwave@example.com".into(),
        time: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
    }
}

/// 40 directories of 25 clusters, three files each: 1,000 clusters, 3,000 blobs.
fn fleet() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for d in 0..40 {
        for c in 0..25 {
            for f in ["cluster.yaml", "kustomization.yaml", "values.yaml"] {
                let path = PathBuf::from(format!("clusters/region-{d}/c{c}/{f}"));
                files.insert(path, format!("name: c{d}-{c}\nfile: {f}\n").into_bytes());
            }
        }
    }
    files
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The fake GitHub with the fleet as `acme/fleet`, and a cache of it reached over HTTP.
fn over_http() -> (FakeGitHub, tempfile::TempDir, GitRepo) {
    let gh = FakeGitHub::start(TOKEN);
    let t = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    gh.create_repo("acme", "fleet", &fleet(), t);
    let dir = tempfile::tempdir().unwrap();
    let url = gh.git_url("acme", "fleet");
    let cache = GitRepo::open(dir.path(), &url, Auth::Token(TOKEN.into())).unwrap();
    cache.fetch().unwrap();
    (gh, dir, cache)
}

/// Change one file, push it to a new branch, then move that branch with a lease: each push
/// sends the commit, the four trees on the file's path and the blob (6 objects).
fn push_twice_sparsely(cache: &GitRepo, remote_dir: &Path) {
    let main = cache.branch_head("main").unwrap().unwrap();
    let path = Path::new("clusters/region-7/c3/cluster.yaml");
    let one = cache
        .commit_file(Some(&main), path, b"name: changed\n", "one", &sig())
        .unwrap();
    let before = sparse_push_objects();
    cache.push("fleetwave/step", &one, None).unwrap();
    // The commit, the trees /, clusters/, region-7/ and c3/, and the blob.
    assert_eq!(sparse_push_objects() - before, 6);
    assert_eq!(
        git(remote_dir, &["rev-parse", "refs/heads/fleetwave/step"]),
        one
    );

    let two = cache
        .commit_file(Some(&one), path, b"name: again\n", "two", &sig())
        .unwrap();
    let before = sparse_push_objects();
    cache.push("fleetwave/step", &two, Some(&one)).unwrap();
    assert_eq!(sparse_push_objects() - before, 6);
    assert_eq!(
        git(remote_dir, &["rev-parse", "refs/heads/fleetwave/step"]),
        two
    );
    // Everything the branch needs is on the server.
    git(
        remote_dir,
        &["fsck", "--connectivity-only", "--no-dangling"],
    );

    // A commit the remote has already, to a new branch: an empty pack, or none.
    let before = sparse_push_objects();
    cache.push("fleetwave/copy", &main, None).unwrap();
    assert_eq!(sparse_push_objects() - before, 0);
    assert_eq!(
        git(remote_dir, &["rev-parse", "refs/heads/fleetwave/copy"]),
        main
    );

    // A delete takes a lease too, and sends no pack.
    match cache.delete_branch("fleetwave/copy", &one) {
        Err(GitError::LeaseLost { found, .. }) => assert_eq!(found.as_deref(), Some(main.as_str())),
        other => panic!("want LeaseLost, got {other:?}"),
    }
    cache.delete_branch("fleetwave/copy", &main).unwrap();
    let refs = git(remote_dir, &["for-each-ref", "--format=%(refname)"]);
    assert!(!refs.contains("refs/heads/fleetwave/copy"), "{refs}");
    assert_eq!(cache.branch_head("fleetwave/copy").unwrap(), None);

    // A stale lease changes nothing and says where the branch is.
    let three = cache
        .commit_file(Some(&two), path, b"name: third\n", "3", &sig())
        .unwrap();
    match cache.push("fleetwave/step", &three, Some(&one)) {
        Err(GitError::LeaseLost { found, .. }) => assert_eq!(found.as_deref(), Some(two.as_str())),
        other => panic!("want LeaseLost, got {other:?}"),
    }
    match cache.push("fleetwave/step", &three, None) {
        Err(GitError::LeaseLost { found, .. }) => assert_eq!(found.as_deref(), Some(two.as_str())),
        other => panic!("want LeaseLost, got {other:?}"),
    }
    assert_eq!(
        git(remote_dir, &["rev-parse", "refs/heads/fleetwave/step"]),
        two
    );
}

#[test]
fn a_push_over_smart_http_sends_what_the_commit_changed() {
    let (gh, _dir, cache) = over_http();
    push_twice_sparsely(&cache, &gh.repo_path("acme", "fleet"));
    let posts: Vec<_> = gh
        .git_calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/git-receive-pack"))
        .collect();
    // Two pushes, a commit the remote had, a delete (a stale lease sends nothing).
    assert_eq!(posts.len(), 4, "{posts:?}");
    assert!(
        posts
            .iter()
            .all(|c| c.agent.contains("fleetwave/") && c.status == 200)
    );
}

#[test]
fn a_push_into_a_local_bare_repository_sends_what_the_commit_changed() {
    let gh = FakeGitHub::start(TOKEN);
    let t = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    gh.create_repo("acme", "fleet", &fleet(), t);
    let remote = gh.repo_path("acme", "fleet");
    let dir = tempfile::tempdir().unwrap();
    let cache = GitRepo::open(dir.path(), remote.to_str().unwrap(), Auth::None).unwrap();
    cache.fetch().unwrap();
    push_twice_sparsely(&cache, &remote);
}

/// A lost answer is read back: applied means done, not applied means pushed again.
#[test]
fn a_lost_push_answer_is_read_back() {
    let (gh, _dir, cache) = over_http();
    let remote = gh.repo_path("acme", "fleet");
    let main = cache.branch_head("main").unwrap().unwrap();
    let path = Path::new("clusters/region-1/c1/values.yaml");
    let one = cache
        .commit_file(Some(&main), path, b"x: 1\n", "one", &sig())
        .unwrap();

    // Applied, answer lost: the branch is read back at the new commit, and the push is done.
    gh.push_push_fault(PushFault::LoseAnswer);
    cache.push("fleetwave/a", &one, None).unwrap();
    assert_eq!(git(&remote, &["rev-parse", "refs/heads/fleetwave/a"]), one);
    assert_eq!(
        cache.branch_head("fleetwave/a").unwrap().as_deref(),
        Some(one.as_str())
    );

    // Dropped: the branch is still absent, so the push is made again (by libgit2).
    gh.push_push_fault(PushFault::Drop);
    cache.push("fleetwave/b", &one, None).unwrap();
    assert_eq!(git(&remote, &["rev-parse", "refs/heads/fleetwave/b"]), one);
    let posts: Vec<_> = gh
        .git_calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/git-receive-pack"))
        .map(|c| (c.status, c.agent.contains("libgit2")))
        .collect();
    assert_eq!(posts, vec![(502, false), (502, false), (200, true)]);
}

/// A tracking ref the remote no longer backs (a rewritten branch) makes the pack short: the
/// server's connectivity check refuses it, and libgit2 pushes everything that is missing.
#[test]
fn a_pack_the_server_finds_short_is_pushed_again_whole() {
    let (gh, dir, cache) = over_http();
    let remote = gh.repo_path("acme", "fleet");
    let main = cache.branch_head("main").unwrap().unwrap();
    let path = Path::new("clusters/region-2/c2/values.yaml");
    let ghost = cache
        .commit_file(Some(&main), path, b"x: ghost\n", "gone", &sig())
        .unwrap();
    git(
        dir.path(),
        &["update-ref", "refs/remotes/origin/rewritten", &ghost],
    );
    let next = cache
        .commit_file(Some(&ghost), path, b"x: next\n", "next", &sig())
        .unwrap();

    cache.push("fleetwave/c", &next, None).unwrap();
    assert_eq!(git(&remote, &["rev-parse", "refs/heads/fleetwave/c"]), next);
    git(&remote, &["fsck", "--connectivity-only", "--no-dangling"]);
    let posts: Vec<_> = gh
        .git_calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/git-receive-pack"))
        .map(|c| c.agent.contains("libgit2"))
        .collect();
    assert_eq!(posts, vec![false, true], "fleetwave's push, then libgit2's");
}
