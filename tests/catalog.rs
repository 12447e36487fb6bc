//! Issue 17: hops computed from a release catalog give the same steps as hops listed in the
//! plan, on the example fleet and the chained example plan.

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
