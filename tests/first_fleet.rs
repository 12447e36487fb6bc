//! Issue 20: the first hour with a real fleet — `clusters`, `init`, `explain`, the mistakes
//! that used to pass in silence, the demo's way on, and per-command help.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const NOW: &str = "2026-11-21T12:00:00Z";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fleetwave_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(args)
        .current_dir(dir)
        .env("FLEETWAVE_NOW", NOW)
        .env("NO_COLOR", "1")
        .output()
        .expect("run fleetwave")
}

fn fleetwave(args: &[&str]) -> Output {
    fleetwave_in(&root(), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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

/// A copy of the example fleet in a temp dir.
fn fleet_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("fixtures/fleet"), tmp.path());
    tmp
}

/// A fleet made of files from `fixtures/real`: (cluster, real file, name in its folder),
/// with no labels at all.
fn real_fleet(files: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for (cluster, src, name) in files {
        let p = tmp.path().join("clusters").join(cluster).join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(root().join("fixtures/real").join(src), p).unwrap();
    }
    tmp
}

/// Commit the whole tree on `main`, as a user commits what `init` wrote.
fn commit_all(dir: &Path) {
    let repo = git2::Repository::init(dir).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("Platform Team", "platform@example.com").unwrap();
    repo.commit(Some("refs/heads/main"), &sig, &sig, "init", &tree, &[])
        .unwrap();
    let st = repo.statuses(None).unwrap();
    assert!(st.is_empty(), "uncommitted files after commit");
}

fn json(o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(o), stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

// ---- clusters -------------------------------------------------------------------------

#[test]
fn clusters_lists_every_cluster_with_the_wave_plan_gives_it() {
    let args = [
        "clusters",
        "--repo",
        "fixtures/fleet",
        "--plan",
        "fixtures/plans/chained.yaml",
        "--output",
        "json",
    ];
    let doc = json(&fleetwave(&args));
    let clusters = doc["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 11);
    let by: BTreeMap<&str, &Value> = clusters
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c))
        .collect();
    let canary = by["dev-canary-01"];
    assert_eq!(canary["waves"][0]["wave"], "canary");
    assert_eq!(canary["kubernetes"], serde_json::json!(["v1.32.4"]));
    assert_eq!(canary["kinds"], serde_json::json!(["Cluster"]));
    assert_eq!(canary["gitopsBase"], serde_json::json!(["2026.01"]));
    assert_eq!(canary["labels"]["upgrade-wave"], "canary");
    assert!(canary["files"].as_array().unwrap().contains(&Value::from(
        "infrastructure/clusters/dev-canary-01/cluster.yaml"
    )));
    assert_eq!(
        by["crit-k0rdent-01"]["templates"][0],
        "aws-standalone-cp-1-0-43"
    );
    // Clusters in no wave are listed as such, with the reason.
    let lab = &by["lab-02"]["waves"][0];
    assert!(lab["wave"].is_null(), "{lab}");
    assert!(
        lab["reason"]
            .as_str()
            .unwrap()
            .contains("upgrade-wave=experimental"),
        "{lab}"
    );
    // The same placement as `plan` makes.
    let plan = json(&fleetwave(&[
        "plan",
        "--repo",
        "fixtures/fleet",
        "--plan",
        "fixtures/plans/chained.yaml",
        "--output",
        "json",
    ]));
    for w in plan["waves"].as_array().unwrap() {
        for c in w["clusters"].as_array().unwrap() {
            assert_eq!(
                by[c.as_str().unwrap()]["waves"][0]["wave"],
                w["name"],
                "{c}"
            );
        }
    }
    let text = stdout(&fleetwave(&args[..5]));
    assert!(
        text.contains("9 of 11 clusters in a wave; in no wave: lab-01, lab-02"),
        "{text}"
    );
}

#[test]
fn clusters_finds_the_plans_under_plans_and_works_without_one() {
    let f = fleet_copy();
    let text = stdout(&fleetwave_in(f.path(), &["clusters"]));
    assert!(text.contains("plans: none under plans/"), "{text}");
    assert!(text.contains("11 clusters"), "{text}");
    // Without a plan the gitops-base is the repository most clusters pin.
    assert!(
        text.contains("openCenter-gitops-base.git (detected"),
        "{text}"
    );
    std::fs::create_dir_all(f.path().join("plans")).unwrap();
    std::fs::copy(
        root().join("fixtures/plans/k8s-minor.yaml"),
        f.path().join("plans/k8s.yaml"),
    )
    .unwrap();
    std::fs::write(f.path().join("plans/notes.yaml"), "just: notes\n").unwrap();
    let doc = json(&fleetwave_in(f.path(), &["clusters", "--output", "json"]));
    assert_eq!(
        doc["plans"].as_array().unwrap().len(),
        1,
        "{}",
        doc["plans"]
    );
    assert_eq!(doc["plans"][0]["file"], "plans/k8s.yaml");
}

#[test]
fn clusters_outside_a_fleet_repository_is_an_error_naming_the_directory() {
    let empty = tempfile::tempdir().unwrap();
    let o = fleetwave_in(empty.path(), &["clusters"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    let shown = std::fs::canonicalize(empty.path()).unwrap();
    assert!(e.contains(&shown.display().to_string()), "{e}");
    assert!(
        e.contains("not a fleet repository") && e.contains("--repo"),
        "{e}"
    );
}

// ---- plan and apply: no silent no-ops -------------------------------------------------

#[test]
fn plan_outside_a_fleet_repository_exits_2_and_names_it() {
    let empty = tempfile::tempdir().unwrap();
    let plan = root().join("fixtures/plans/chained.yaml");
    let plan = plan.to_str().unwrap();
    for args in [
        vec!["plan", "--plan", plan],
        vec!["plan", "--plan", plan, "--allow-empty"],
        vec!["apply", "--plan", plan, "--wave", "canary"],
    ] {
        let o = fleetwave_in(empty.path(), &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains("not a fleet repository") && e.contains("--repo"),
            "{e}"
        );
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    }
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

#[test]
fn a_missing_repository_or_plan_has_no_invented_line_and_column() {
    for (args, want) in [
        (
            [
                "plan",
                "--repo",
                "nosuchdir",
                "--plan",
                "fixtures/plans/chained.yaml",
            ],
            "nosuchdir: the fleet repository is not a directory",
        ),
        (
            ["plan", "--repo", "fixtures/fleet", "--plan", "nosuch.yaml"],
            "nosuch.yaml: no such plan file",
        ),
        (
            ["clusters", "--repo", "nosuchdir", "--output", "text"],
            "nosuchdir: the fleet repository is not a directory",
        ),
    ] {
        let o = fleetwave(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains(want), "{e}");
        assert!(!e.contains(":1:1"), "{e}");
    }
}

#[test]
fn plan_json_with_diff_carries_each_steps_diff() {
    let base = [
        "plan",
        "--repo",
        "fixtures/fleet",
        "--plan",
        "fixtures/plans/gitops-base.yaml",
        "--output",
        "json",
    ];
    let with = json(&fleetwave(&[&base[..], &["--diff"]].concat()));
    let step = &with["waves"][0]["steps"][0];
    let diff = step["diff"].as_str().unwrap();
    assert!(
        diff.contains("+++ b/") && diff.contains("?ref=2026.02"),
        "{diff}"
    );
    let without = json(&fleetwave(&base));
    assert!(without["waves"][0]["steps"][0].get("diff").is_none());
    // The text diff and the JSON one are the same lines.
    let text = stdout(&fleetwave(&[
        "plan",
        "--repo",
        "fixtures/fleet",
        "--plan",
        "fixtures/plans/gitops-base.yaml",
        "--diff",
    ]));
    for line in diff.lines() {
        assert!(
            text.contains(&format!("    {line}\n")),
            "{line:?} not in text"
        );
    }
}

// ---- init ------------------------------------------------------------------------------

/// `init`, commit, then `plan` on what it wrote: exit 0.
fn init_then_plan(dir: &Path, extra: &[&str]) -> String {
    let o = fleetwave_in(dir, &[&["init"][..], extra].concat());
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    commit_all(dir);
    let p = fleetwave_in(dir, &["plan", "--plan", "plans/fleet-upgrade.yaml"]);
    assert_eq!(p.status.code(), Some(0), "{}{}", stdout(&p), stderr(&p));
    std::fs::read_to_string(dir.join("plans/fleet-upgrade.yaml")).unwrap()
}

#[test]
fn init_writes_a_plan_that_plan_accepts_with_waves_from_the_labels() {
    let f = fleet_copy();
    let text = init_then_plan(f.path(), &[]);
    assert!(text.contains("targetVersion: v1.32.5"), "{text}");
    assert!(
        text.contains("url: https://github.com/opencenter-cloud/openCenter-gitops-base.git"),
        "{text}"
    );
    // The newest tag in use: no pin moves backwards.
    assert!(text.contains("tag: \"2026.01.2\""), "{text}");
    let waves: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .collect();
    assert_eq!(
        waves,
        [
            "canary",
            "experimental",
            "standard",
            "critical",
            "regulated",
            "rest"
        ]
    );
    // Every cluster lands in a wave.
    let doc = json(&fleetwave_in(f.path(), &["clusters", "--output", "json"]));
    for c in doc["clusters"].as_array().unwrap() {
        assert!(c["waves"][0]["wave"].is_string(), "{c}");
    }
    // A second init refuses and writes nothing; --force overwrites.
    let plan = f.path().join("plans/fleet-upgrade.yaml");
    std::fs::write(&plan, "mine\n").unwrap();
    let o = fleetwave_in(f.path(), &["init"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&plan).unwrap(), "mine\n");
    assert_eq!(
        fleetwave_in(f.path(), &["init", "--force"]).status.code(),
        Some(0)
    );
    assert_eq!(std::fs::read_to_string(&plan).unwrap(), text);
}

#[test]
fn init_on_real_files_without_labels_splits_canary_and_rest() {
    let f = real_fleet(&[
        ("tenant-a", "kamaji/tenantcontrolplane.yaml", "tcp.yaml"),
        (
            "capi-a",
            "cluster-api/simple-cluster-without-kcp-v1beta1.yaml",
            "cluster.yaml",
        ),
        (
            "k0rdent-a",
            "k0rdent/clusterdeployment-quickstart-remote.yaml",
            "cd.yaml",
        ),
    ]);
    let text = init_then_plan(f.path(), &["--github"]);
    assert!(text.contains("targetVersion: v1.35.7"), "{text}");
    // No cluster pins 1.34: the hop is the built-in catalog's newest 1.34 patch.
    assert!(text.contains("intermediateVersions: [v1.34.9]"), "{text}");
    assert!(
        text.contains("matchLabels: {fleetwave.io/wave: canary}"),
        "{text}"
    );
    assert!(text.contains("operator: NotIn"), "{text}");
    let wf = std::fs::read_to_string(f.path().join(".github/workflows/fleetwave.yaml")).unwrap();
    assert!(wf.contains("plan: plans/fleet-upgrade.yaml"), "{wf}");
    assert!(!wf.contains("k8s-1-34"), "{wf}");
    let doc: serde_yaml::Value = serde_yaml::from_str(&wf).unwrap();
    assert!(doc.get("jobs").is_some());
}

#[test]
fn init_targets_a_pre_release_when_it_is_the_newest_pinned() {
    let f = real_fleet(&[
        (
            "capi-rc",
            "cluster-api/simple-cluster-kcp-rc.yaml",
            "cluster.yaml",
        ),
        ("tenant-a", "kamaji/tenantcontrolplane.yaml", "tcp.yaml"),
    ]);
    let text = init_then_plan(f.path(), &[]);
    assert!(text.contains("targetVersion: v1.37.0-rc.1"), "{text}");
    assert!(text.contains("intermediateVersions: [v1.36.4]"), "{text}");
}

#[test]
fn init_outside_a_fleet_repository_writes_nothing() {
    let empty = tempfile::tempdir().unwrap();
    let o = fleetwave_in(empty.path(), &["init", "--github"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--repo"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

// ---- explain ---------------------------------------------------------------------------

#[test]
fn explain_shows_files_fields_rules_wave_and_steps() {
    let o = fleetwave(&[
        "explain",
        "stg-kamaji-01",
        "--repo",
        "fixtures/fleet",
        "--plan",
        "fixtures/plans/chained.yaml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let t = stdout(&o);
    for want in [
        "infrastructure/clusters/{cluster}\n    infrastructure/clusters/stg-kamaji-01/control-plane.yaml",
        "upgrade-wave=canary  (from the cluster's identity objects)",
        "TenantControlPlane/stg-kamaji-01 spec.kubernetes.version = v1.32.4",
        "Kubernetes version of the control plane, by the TenantControlPlane field",
        "Kubernetes version of the workers",
        "wave canary (1 of 4)",
        "step 1 control-plane-v1-33-5",
        "control-plane.yaml:26  TenantControlPlane/stg-kamaji-01 spec.kubernetes.version  v1.32.4 → v1.33.5",
    ] {
        assert!(t.contains(want), "{want:?} not in:\n{t}");
    }
    let o = fleetwave(&[
        "explain",
        "lab-01",
        "--repo",
        "fixtures/fleet",
        "--plan",
        "fixtures/plans/chained.yaml",
    ]);
    assert!(
        stdout(&o).contains("in no wave: no wave selects this cluster"),
        "{}",
        stdout(&o)
    );
    let o = fleetwave(&["explain", "prod-eks-01", "--repo", "fixtures/fleet"]);
    let t = stdout(&o);
    assert!(
        t.contains("team=payments  (from fleetwave.yaml clusters.labels)"),
        "{t}"
    );
    assert!(t.contains("pass --plan FILE"), "{t}");
}

#[test]
fn explain_an_unknown_cluster_lists_the_known_ones() {
    let o = fleetwave(&["explain", "nosuch", "--repo", "fixtures/fleet"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("no cluster \"nosuch\"") && e.contains("dev-canary-01"),
        "{e}"
    );
}

// ---- demo ------------------------------------------------------------------------------

fn demo(args: &[&str], tmpdir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(["demo", "--plain"])
        .args(args)
        .env("TMPDIR", tmpdir)
        .output()
        .unwrap()
}

#[test]
fn demo_refuses_a_fault_on_a_cluster_it_does_not_roll_out() {
    let tmp = tempfile::tempdir().unwrap();
    for (c, want) in [
        ("nosuch-cluster", "has no cluster \"nosuch-cluster\""),
        ("lab-01", "puts cluster \"lab-01\" in no wave"),
    ] {
        let o = demo(&["--fail", c], tmp.path());
        assert_eq!(o.status.code(), Some(2), "{c}: {}", stdout(&o));
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
        assert!(stderr(&o).contains("dev-canary-01"), "{}", stderr(&o));
    }
}

#[test]
fn demo_with_keep_offers_a_rollback_that_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("demo");
    let o = demo(
        &[
            "--plan",
            "gitops-base",
            "--fail",
            "stg-kamaji-01",
            "--keep",
            dir.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let t = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{t}{}", stderr(&o));
    assert!(t.contains("(9 of its 11 clusters in 4 waves)"), "{t}");
    assert!(
        t.contains("not selected: lab-01 (no wave selects this cluster"),
        "{t}"
    );
    assert_eq!(t.matches("HALT").count(), 1, "{t}");
    let alert = t.lines().find(|l| l.contains("ALERT")).unwrap();
    assert!(
        alert.contains("rollback: fleetwave rollback --remote "),
        "{alert}"
    );
    // --keep leaves no temp folder behind.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    let line = t
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("fleetwave rollback") && l.ends_with("--merge"))
        .unwrap_or_else(|| panic!("no rollback line in:\n{t}"));
    let args: Vec<&str> = line.split_whitespace().skip(1).collect();
    let r = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(0),
        "{line}: {}{}",
        stdout(&r),
        stderr(&r)
    );
    assert!(
        stdout(&r).contains("merged fleetwave/gitops-base-2026-02/canary/rollback into main"),
        "{}",
        stdout(&r)
    );
    // A second demo into the same directory is refused.
    let again = demo(&["--keep", dir.to_str().unwrap()], tmp.path());
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));
}

#[test]
fn demo_without_keep_prints_no_rollback_command_for_a_deleted_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let o = demo(
        &["--plan", "gitops-base", "--fail", "stg-kamaji-01"],
        tmp.path(),
    );
    let t = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        !t.lines()
            .any(|l| l.trim().starts_with("fleetwave rollback")),
        "{t}"
    );
    assert!(t.contains("rerun with --keep DIR"), "{t}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

// ---- help ------------------------------------------------------------------------------

#[test]
fn every_flag_of_every_command_has_a_description() {
    use clap::CommandFactory;
    let cli = fleetwave::cli::Cli::command();
    let mut missing = Vec::new();
    for sub in cli.get_subcommands() {
        for a in sub.get_arguments() {
            if a.is_hide_set() || ["help", "version"].contains(&a.get_id().as_str()) {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{} --{}", sub.get_name(), a.get_id()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags without a description: {missing:?}"
    );
}

#[test]
fn each_command_lists_only_the_flags_it_uses() {
    let help = |c: &str| stdout(&fleetwave(&[c, "--help"]));
    for (cmd, absent) in [
        (
            "history",
            &["--author-name", "--dashboard", "--title-template"][..],
        ),
        (
            "status",
            &["--author-name", "--dashboard", "--title-template"],
        ),
        ("pause", &["--dashboard", "--title-template"]),
        ("resume", &["--dashboard", "--title-template"]),
        ("rollback", &["--dashboard", "--title-template"]),
    ] {
        let h = help(cmd);
        for flag in absent {
            assert!(!h.contains(flag), "{cmd} --help lists {flag}:\n{h}");
        }
    }
    let h = help("reconcile");
    assert!(
        h.contains("--dashboard") && h.contains("--author-name"),
        "{h}"
    );
    let h = help("rollback");
    assert!(h.contains("--author-name"), "{h}");
    let merge = h.split("--merge").nth(1).unwrap();
    assert!(
        merge.contains("GitHub") && merge.contains("pull request"),
        "{h}"
    );
    assert!(h.contains("--dry-run\n") || h.contains("--dry-run "), "{h}");
}
