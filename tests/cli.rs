//! End-to-end tests of the `fleetwave` binary on the fixture fleet.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOW: &str = "2026-11-21T12:00:00Z";
const PLANS: &[&str] = &["k8s-minor", "gitops-base", "chained", "k0rdent-template"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fleetwave(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(args)
        .env("FLEETWAVE_NOW", NOW)
        .env("NO_COLOR", "1")
        .output()
        .expect("run fleetwave")
}

/// Every file below `dir`, by relative path.
fn read_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(base).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn write_tree(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) {
    for (rel, bytes) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (read_tree(a), read_tree(b));
    let differ: Vec<_> = ta
        .keys()
        .chain(tb.keys())
        .filter(|p| ta.get(*p) != tb.get(*p))
        .collect();
    assert!(differ.is_empty(), "trees differ at {differ:?}");
}

fn fleet_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_tree(tmp.path(), &read_tree(&root().join("fixtures/fleet")));
    tmp
}

fn wave_names(plan: &Path) -> Vec<String> {
    let out = fleetwave(&[
        "plan",
        "--repo",
        "fixtures/fleet",
        "--plan",
        plan.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect()
}

/// Apply every wave of each example plan and compare the tree with `fixtures/expected/<plan>/`,
/// which holds exactly the files the plan changes. `UPDATE_GOLDEN=1` rewrites it.
#[test]
fn apply_matches_the_golden_trees() {
    let original = read_tree(&root().join("fixtures/fleet"));
    for name in PLANS {
        let plan = root().join(format!("fixtures/plans/{name}.yaml"));
        let repo = fleet_copy();
        let r = repo.path().to_str().unwrap();
        for wave in wave_names(&plan) {
            let out = fleetwave(&[
                "apply",
                "--repo",
                r,
                "--plan",
                plan.to_str().unwrap(),
                "--wave",
                &wave,
            ]);
            assert!(
                out.status.success(),
                "{name}/{wave}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let after = read_tree(repo.path());
        let changed: BTreeMap<PathBuf, Vec<u8>> = after
            .iter()
            .filter(|(p, b)| original.get(*p) != Some(*b))
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect();
        assert_eq!(
            after.len(),
            original.len(),
            "{name}: apply added or removed files"
        );
        let expected_dir = root().join(format!("fixtures/expected/{name}"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            let _ = std::fs::remove_dir_all(&expected_dir);
            write_tree(&expected_dir, &changed);
        }
        let expected = read_tree(&expected_dir);
        assert!(
            !expected.is_empty(),
            "{name}: no golden tree; run with UPDATE_GOLDEN=1 and review it"
        );
        assert_eq!(
            changed.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{name}: the set of changed files differs"
        );
        for (p, b) in &changed {
            assert!(
                expected[p] == *b,
                "{name}: {} differs from the golden file",
                p.display()
            );
        }

        // Editing twice is editing once.
        for wave in wave_names(&plan) {
            let out = fleetwave(&[
                "apply",
                "--repo",
                r,
                "--plan",
                plan.to_str().unwrap(),
                "--wave",
                &wave,
            ]);
            assert!(out.status.success());
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("wrote 0 change(s) in 0 file(s)"),
                "{name}/{wave}: second apply changed something"
            );
        }
        assert!(
            read_tree(repo.path()) == after,
            "{name}: second apply changed files"
        );
    }
}

/// Every changed line differs from the original only inside the changed values.
#[test]
fn diffs_touch_only_the_values() {
    let original = read_tree(&root().join("fixtures/fleet"));
    for name in PLANS {
        for (p, new) in read_tree(&root().join(format!("fixtures/expected/{name}"))) {
            let (old, new) = (
                String::from_utf8(original[&p].clone()).unwrap(),
                String::from_utf8(new).unwrap(),
            );
            assert_eq!(old.lines().count(), new.lines().count(), "{}", p.display());
            assert_eq!(
                old.matches("\r\n").count(),
                new.matches("\r\n").count(),
                "{}: line endings changed",
                p.display()
            );
            if let Err(e) = common::only_values_changed(&old, &new) {
                panic!("{}: {e}", p.display());
            }
        }
    }
}

#[test]
fn step_by_step_apply_equals_whole_wave_apply() {
    let plan = root().join("fixtures/plans/chained.yaml");
    let (whole, steps) = (fleet_copy(), fleet_copy());
    let p = plan.to_str().unwrap();
    assert!(
        fleetwave(&[
            "apply",
            "--repo",
            whole.path().to_str().unwrap(),
            "--plan",
            p,
            "--wave",
            "standard"
        ])
        .status
        .success()
    );
    let s = steps.path().to_str().unwrap();
    let out = fleetwave(&[
        "apply", "--repo", s, "--plan", p, "--wave", "standard", "--step", "2",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "step 2 before step 1 must be refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("apply step 1 first"));
    for n in 1..=4 {
        let out = fleetwave(&[
            "apply",
            "--repo",
            s,
            "--plan",
            p,
            "--wave",
            "standard",
            "--step",
            &n.to_string(),
        ]);
        assert!(
            out.status.success(),
            "step {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_same_tree(whole.path(), steps.path());
}

#[test]
fn plan_json_matches_snapshot() {
    for name in PLANS {
        let out = fleetwave(&[
            "plan",
            "--repo",
            "fixtures/fleet",
            "--plan",
            &format!("fixtures/plans/{name}.yaml"),
            "--output",
            "json",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for w in doc["waves"].as_array().unwrap() {
            for s in w["steps"].as_array().unwrap() {
                for c in s["changes"].as_array().unwrap() {
                    for k in ["cluster", "file", "line", "field", "from", "to"] {
                        assert!(!c[k].is_null(), "change without {k}");
                    }
                }
            }
        }
        insta::assert_snapshot!(
            format!("plan-json-{name}"),
            String::from_utf8(out.stdout).unwrap()
        );
    }
}

#[test]
fn plan_text_with_diff() {
    let out = fleetwave(&[
        "plan",
        "--repo",
        "fixtures/fleet",
        "--plan",
        "fixtures/plans/k8s-minor.yaml",
        "--diff",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("-    version: v1.32.4"), "{text}");
    assert!(
        text.contains("Earliest finish: 2026-11-26 13:00 UTC"),
        "{text}"
    );
    insta::assert_snapshot!("plan-text-k8s-minor", text);
    let colored = fleetwave(&[
        "plan",
        "--repo",
        "fixtures/fleet",
        "--plan",
        "fixtures/plans/k8s-minor.yaml",
        "--diff",
        "--color",
        "always",
    ]);
    assert!(String::from_utf8_lossy(&colored.stdout).contains("\x1b[32m+"));
}

/// `fixtures/bad/*`: each case exits 2, names the expected file:line:column, and leaves
/// every file untouched.
#[test]
fn bad_inputs_are_refused_with_locations() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let repo = fleet_copy();
        write_tree(repo.path(), &read_tree(&case.join("overlay")));
        let plan = repo.path().join("plans/case.yaml");
        std::fs::create_dir_all(plan.parent().unwrap()).unwrap();
        std::fs::copy(case.join("plan.yaml"), &plan).unwrap();
        let before = read_tree(repo.path());
        let expect = std::fs::read_to_string(case.join("expect.txt")).unwrap();
        let mut lines = expect.lines();
        let (location, words) = (
            lines.next().unwrap().trim(),
            lines.next().unwrap_or("").trim().to_lowercase(),
        );
        let r = repo.path().to_str().unwrap();
        let p = plan.to_str().unwrap();
        for args in [
            vec!["plan", "--repo", r, "--plan", p],
            vec!["apply", "--repo", r, "--plan", p, "--wave", "canary"],
        ] {
            let out = fleetwave(&args);
            let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
            let name = case.file_name().unwrap().to_string_lossy();
            if out.status.code() != Some(2)
                || !err.contains(&location.to_lowercase())
                || !err.contains(&words)
            {
                failures.push(format!(
                    "{name} ({}): exit {:?}, want {location} / {words:?}, got:\n{err}",
                    args[0],
                    out.status.code()
                ));
            }
            if read_tree(repo.path()) != before {
                failures.push(format!("{name}: files changed"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
