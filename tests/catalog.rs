//! Issue 17: hops computed from a release catalog give the same steps as hops listed in the
//! plan, on the example fleet and the chained example plan.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const NOW: &str = "2026-11-21T12:00:00Z";

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn plan_json(repo: &Path, plan: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(["plan", "--output", "json", "--repo"])
        .arg(repo)
        .arg("--plan")
        .arg(plan)
        .env("FLEETWAVE_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_chained_example_without_intermediate_versions_plans_the_same_steps() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&root.join("fixtures/fleet"), repo.path());
    let listed = std::fs::read_to_string(root.join("fixtures/plans/chained.yaml")).unwrap();
    assert!(listed.contains("  intermediateVersions: [v1.33.5]\n"));
    let computed = listed.replace(
        "  intermediateVersions: [v1.33.5]\n",
        "  versionCatalog: releases.yaml\n",
    );
    std::fs::create_dir_all(repo.path().join("plans")).unwrap();
    std::fs::write(repo.path().join("plans/listed.yaml"), &listed).unwrap();
    std::fs::write(repo.path().join("plans/computed.yaml"), &computed).unwrap();
    // A catalog whose newest 1.33 patch is the hop the example lists.
    std::fs::write(
        repo.path().join("releases.yaml"),
        "asOf: \"2025-10-01\"\nreleases:\n  - {minor: \"1.32\", latest: \"1.32.9\"}\n  - {minor: \"1.33\", latest: \"1.33.5\"}\n  - {minor: \"1.34\", latest: \"1.34.2\"}\n",
    )
    .unwrap();
    let a = plan_json(repo.path(), &repo.path().join("plans/listed.yaml"));
    let b = plan_json(repo.path(), &repo.path().join("plans/computed.yaml"));
    assert!(a["waves"].as_array().is_some_and(|w| !w.is_empty()));
    assert_eq!(a["waves"], b["waves"]);
    let findings = b["findings"].to_string();
    assert!(
        findings.contains("hops from 1.32 computed from the release catalog (releases.yaml, as of 2025-10-01): v1.33.5 → v1.34.2"),
        "{findings}"
    );
}

fn plan_run(repo: &Path, plan: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(["plan", "--repo"])
        .arg(repo)
        .arg("--plan")
        .arg(plan)
        .env("FLEETWAVE_NOW", NOW)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), all)
}

#[test]
fn a_gitops_base_range_refuses_a_target_or_clusters_outside_it() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&root.join("fixtures/fleet"), repo.path());
    std::fs::create_dir_all(repo.path().join("plans")).unwrap();
    let with_range = |plan: &str, range: &str| {
        let text = std::fs::read_to_string(root.join("fixtures/plans").join(plan)).unwrap();
        let text = text.replace(
            "    tag: \"2026.02\"\n",
            &format!("    tag: \"2026.02\"\n    kubernetes: \"{range}\"\n"),
        );
        let p = repo.path().join("plans").join(plan);
        std::fs::write(&p, text).unwrap();
        p
    };
    // The chained plan ends at 1.34.2, where the base moves.
    let (code, out) = plan_run(repo.path(), &with_range("chained.yaml", ">=1.32 <1.34"));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("plans/chained.yaml:13:17"), "{out}");
    assert!(
        out.contains("supports Kubernetes >=1.32 <1.34, but this plan takes clusters to v1.34.2"),
        "{out}"
    );
    let (code, out) = plan_run(repo.path(), &with_range("chained.yaml", ">=1.32 <1.35"));
    assert_eq!(code, Some(0), "{out}");
    // A base-only plan: each cluster's current control plane must be in range.
    let (code, out) = plan_run(repo.path(), &with_range("gitops-base.yaml", ">=1.33"));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("outside what gitops-base 2026.02 supports (>=1.33)"),
        "{out}"
    );
    // A range nobody can read is an input error at its line.
    let (code, out) = plan_run(repo.path(), &with_range("gitops-base.yaml", "soon"));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("gitopsBase.kubernetes \"soon\" is not a version range"),
        "{out}"
    );
}

fn fleetwave(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(args)
        .env("FLEETWAVE_NOW", "2026-12-05T00:00:00Z")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Serve `body` with `status` to every request on 127.0.0.1 (one thread, until the test ends).
fn serve(status: &'static str, body: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/api/kubernetes.json")
}

#[test]
fn versions_lists_the_catalog_with_end_of_life_on_the_given_day() {
    let (code, out, err) = fleetwave(&["versions"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("Kubernetes releases (built-in, as of"),
        "{out}"
    );
    let (code, out, err) = fleetwave(&["versions", "--output", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let status = |minor: &str| {
        doc["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["minor"] == minor)
            .map(|r| r["status"].as_str().unwrap().to_string())
    };
    // 1.34 reached end of life on 2026-10-27; 1.35 is supported until 2027-02-28.
    assert_eq!(status("1.34").as_deref(), Some("end of life"));
    assert_eq!(status("1.35").as_deref(), Some("supported"));
}

// The shape of the endoflife.date product API (`GET /api/{product}.json`: an array of Cycle
// objects with cycle, releaseDate, eol — a date or false — latest, latestReleaseDate, lts), as
// its published OpenAPI description and generated clients document it.
const ENDOFLIFE: &str = r#"[{"cycle":"1.36","releaseDate":"2026-04-22","eol":"2027-06-28","latest":"1.36.4","latestReleaseDate":"2026-08-11","lts":false},{"cycle":"1.35","releaseDate":"2025-12-17","eol":"2027-02-28","latest":"1.35.9","latestReleaseDate":"2026-09-15","lts":false},{"cycle":"1.34","releaseDate":"2025-08-27","eol":"2026-10-27","latest":"1.34.9","latestReleaseDate":"2026-06-09","lts":false},{"cycle":"1.33","releaseDate":"2025-04-23","eol":"2026-06-28","latest":"1.33.12","latestReleaseDate":"2026-05-12","lts":false}]"#;

#[test]
fn versions_update_writes_a_catalog_a_plan_can_use() {
    let url = serve("200 OK", ENDOFLIFE);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("kubernetes.yaml");
    let (code, out, err) = fleetwave(&[
        "versions",
        "update",
        "--from",
        &url,
        "--out",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("4 minors, newest 1.36.4"), "{out}");
    let (code, out, err) = fleetwave(&["versions", "--catalog", dest.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("as of 2026-12-05"), "{out}");
    assert!(out.contains("latest 1.33.12"), "{out}");
    // A plan without intermediateVersions takes its hop from it.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&root.join("fixtures/fleet"), repo.path());
    std::fs::copy(&dest, repo.path().join("kubernetes.yaml")).unwrap();
    let chained = std::fs::read_to_string(root.join("fixtures/plans/chained.yaml")).unwrap();
    let plan = repo.path().join("computed.yaml");
    std::fs::write(
        &plan,
        chained.replace(
            "  intermediateVersions: [v1.33.5]\n",
            "  versionCatalog: kubernetes.yaml\n",
        ),
    )
    .unwrap();
    let doc = plan_json(repo.path(), &plan);
    assert!(
        doc["findings"].to_string().contains("v1.33.12 → v1.34.2"),
        "{}",
        doc["findings"]
    );
    // A refused answer writes nothing and says why.
    let missing = serve("404 Not Found", "{}");
    let other = dir.path().join("other.yaml");
    let (code, _, err) = fleetwave(&[
        "versions",
        "update",
        "--from",
        &missing,
        "--out",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("HTTP 404"), "{err}");
    assert!(!other.exists());
}

#[test]
fn propose_writes_the_channel_plan_that_plan_accepts() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&root.join("fixtures/fleet"), repo.path());
    let r = repo.path().to_str().unwrap();
    // The example fleet runs 1.32: the minor channel is 1.33's newest catalogued patch.
    let (code, out, err) = fleetwave(&["propose", "--repo", r, "--channel", "minor"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("wrote plans/k8s-1-33-11.yaml"), "{out}");
    let plan = repo.path().join("plans/k8s-1-33-11.yaml");
    let doc = plan_json(repo.path(), &plan);
    assert_eq!(doc["targetVersion"], "v1.33.11");
    assert_eq!(doc["plan"], "k8s-1-33-11");
    // Never overwritten without --force.
    let (code, _, err) = fleetwave(&["propose", "--repo", r, "--channel", "minor"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("already exists; nothing was written"), "{err}");
    // Stable on 2026-12-05: 1.35, 1.36 and 1.37 are supported; stable is 1.36, four minors
    // up, so the plan's hops come from the catalog.
    let (code, out, err) = fleetwave(&["propose", "--repo", r, "--channel", "stable"]);
    assert_eq!(code, Some(0), "{err}");
    let doc = plan_json(repo.path(), &repo.path().join("plans/k8s-1-36-4.yaml"));
    assert!(
        doc["findings"]
            .to_string()
            .contains("v1.33.11 → v1.34.9 → v1.35.9 → v1.36.4"),
        "{out}\n{}",
        doc["findings"]
    );
}

/// `propose --open-pr` against the fake GitHub: the plan is committed on the remote's base
/// head to `fleetwave/propose/<name>` and a pull request is opened; a second run changes
/// nothing; the local checkout is not written.
#[test]
fn propose_open_pr_pushes_the_plan_and_opens_one_pull_request() {
    use common::fake_github::FakeGitHub;
    const TOKEN: &str = "ghp_propose";
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let gh = FakeGitHub::start(TOKEN);
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-05T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    gh.set_clock(now);
    let files = fleetwave::demo::example_files("k8s-minor").unwrap();
    gh.create_repo("acme", "fleet", &files, now);
    let checkout = tempfile::tempdir().unwrap();
    copy_dir(&root.join("fixtures/fleet"), checkout.path());
    let cache = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args([
                "propose",
                "--channel",
                "minor",
                "--open-pr",
                "--forge",
                "github",
            ])
            .args(["--repo", checkout.path().to_str().unwrap()])
            .args(["--remote", &gh.git_url("acme", "fleet")])
            .args([
                "--github-api",
                &gh.base_url(),
                "--github-repo",
                "acme/fleet",
            ])
            .env("GITHUB_TOKEN", TOKEN)
            .env("XDG_CACHE_HOME", cache.path())
            .env("FLEETWAVE_NOW", "2026-12-05T00:00:00Z")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("did: push fleetwave/propose/k8s-1-33-11"),
        "{out}"
    );
    assert!(out.contains("did: open or update pull request #"), "{out}");
    let pulls = gh.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    assert_eq!(pulls[0]["head"]["ref"], "fleetwave/propose/k8s-1-33-11");
    assert_eq!(pulls[0]["base"]["ref"], "main");
    assert_eq!(
        pulls[0]["title"],
        "Upgrade Kubernetes to v1.33.11 (minor channel)"
    );
    // The plan is on the branch, as `plan` reads it; not in the local checkout.
    let bare = git2::Repository::open_bare(gh.repo_path("acme", "fleet")).unwrap();
    let head = bare
        .find_reference("refs/heads/fleetwave/propose/k8s-1-33-11")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let blob = head
        .tree()
        .unwrap()
        .get_path(Path::new("plans/k8s-1-33-11.yaml"))
        .unwrap()
        .to_object(&bare)
        .unwrap()
        .peel_to_blob()
        .unwrap();
    assert!(String::from_utf8_lossy(blob.content()).contains("targetVersion: v1.33.11"));
    assert!(!checkout.path().join("plans/k8s-1-33-11.yaml").exists());
    // Again: the branch already proposes this plan; the pull request is the same one.
    let (code, out, err) = run();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("unchanged: fleetwave/propose/k8s-1-33-11"),
        "{out}"
    );
    assert_eq!(gh.pulls().len(), 1);
}
