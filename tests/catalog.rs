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
