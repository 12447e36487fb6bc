//! `kubectl kustomize` of every overlay before and after `apply` differs only in the bumped
//! values. The gitops-base remote is served from a local Git repository through
//! `url.<local>.insteadOf`, so the test runs offline.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const BASE: &str = "https://github.com/opencenter-cloud/openCenter-gitops-base";
const SERVICES: &[&str] = &[
    "cert-manager",
    "harbor",
    "metallb",
    "metrics-server",
    "aws-load-balancer-controller",
    "kyverno",
    "kyverno/policies",
];

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=fleetwave-test",
            "-c",
            "user.email=test@fleetwave.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stand-in for the gitops-base repository with tags 2026.01 and 2026.02.
fn base_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("openCenter-gitops-base.git");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    for tag in ["2026.01", "2026.02"] {
        for svc in SERVICES {
            let d = repo.join("applications/base/services").join(svc);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("kustomization.yaml"), "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [release.yaml]\n").unwrap();
            let name = svc.replace('/', "-");
            std::fs::write(d.join("release.yaml"), format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: base-{name}\ndata:\n  release: \"{tag}\"\n")).unwrap();
        }
        let c = repo.join("applications/components/ha-defaults");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("kustomization.yaml"), "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nlabels:\n  - pairs: {ha: \"true\"}\n").unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", tag]);
        git(&repo, &["tag", tag]);
    }
    repo
}

fn build(overlay: &Path, base: &Path) -> Result<String, String> {
    let url = format!("url.file://{}.insteadOf", base.display());
    let out = Command::new("kubectl")
        .args(["kustomize", overlay.to_str().unwrap()])
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", &url)
        .env("GIT_CONFIG_VALUE_0", format!("{BASE}.git"))
        .env("GIT_CONFIG_KEY_1", &url)
        .env("GIT_CONFIG_VALUE_1", BASE)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .to_string())
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let t = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&t).unwrap();
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

#[test]
fn overlays_render_the_same_but_for_bumped_values() {
    if !have("kubectl", "version") && !have("kubectl", "help") {
        println!("skipped: kubectl is not installed, so overlays cannot be rendered");
        return;
    }
    if !have("git", "--version") {
        println!("skipped: git is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = base_repo(tmp.path());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (before, after) = (tmp.path().join("before"), tmp.path().join("after"));
    for d in [&before, &after] {
        std::fs::create_dir_all(d).unwrap();
        copy_dir(&root.join("fixtures/fleet"), d);
    }
    let plan = root.join("fixtures/plans/chained.yaml");
    for wave in ["canary", "standard", "critical", "regulated"] {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args([
                "apply",
                "--repo",
                after.to_str().unwrap(),
                "--plan",
                plan.to_str().unwrap(),
                "--wave",
                wave,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(before.join("applications/overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    overlays.sort();
    let (mut compared, mut changed) = (0, 0);
    for o in overlays {
        let name = o.file_name().unwrap().to_string_lossy().to_string();
        let old = match build(&o, &base) {
            Ok(s) => s,
            Err(e) => {
                println!("skipped overlay {name}: it does not build offline before apply ({e})");
                continue;
            }
        };
        let new = build(&after.join("applications/overlays").join(&name), &base)
            .unwrap_or_else(|e| panic!("{name} no longer builds after apply: {e}"));
        compared += 1;
        changed +=
            common::only_values_changed(&old, &new).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(compared >= 5, "only {compared} overlays rendered");
    assert!(
        changed > 0,
        "apply changed nothing in the rendered overlays"
    );
    println!("compared {compared} overlays, {changed} changed lines");
}
