//! The composite GitHub Action (`action.yml`): its static safety rules, and its scripts run
//! by a small simulated runner against a fake `fleetwave` (argv recorded) and the real one.

mod common;

use std::collections::BTreeMap;
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

fn action() -> Value {
    yaml(&root().join("action.yml"))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn steps(a: &Value) -> &Vec<Value> {
    a["runs"]["steps"]
        .as_sequence()
        .expect("runs.steps is a list")
}

fn step_name(s: &Value) -> String {
    str_of(s, "id")
        .or_else(|| str_of(s, "name"))
        .unwrap_or("?")
        .to_string()
}

/// The `env:` mapping of a step, as strings.
fn env_of(s: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(m) = s.get("env").and_then(Value::as_mapping) {
        for (k, v) in m {
            let k = k.as_str().expect("env key is a string").to_string();
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => panic!("env {k}: unexpected value {other:?}"),
            };
            out.insert(k, v);
        }
    }
    out
}

/// The `${{ … }}` expressions in a text, trimmed.
fn expressions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${{") {
        let after = &rest[i + 3..];
        let j = after.find("}}").expect("unterminated ${{ expression");
        out.push(after[..j].trim().to_string());
        rest = &after[j + 2..];
    }
    out
}

/// The environment variable an input is passed as.
fn input_env_name(input: &str) -> String {
    format!("INPUT_{}", input.to_uppercase().replace('-', "_"))
}

// ---------------------------------------------------------------------------------------
// Static rules

#[test]
fn action_is_composite_and_every_script_runs_in_bash() {
    let a = action();
    assert_eq!(a["runs"]["using"].as_str(), Some("composite"));
    assert!(str_of(&a, "name").is_some() && str_of(&a, "description").is_some());
    let mut scripts = 0;
    for s in steps(&a) {
        assert!(
            s.get("run").is_some() != s.get("uses").is_some(),
            "step {} must have exactly one of run/uses",
            step_name(s)
        );
        if s.get("run").is_some() {
            scripts += 1;
            assert_eq!(
                str_of(s, "shell"),
                Some("bash"),
                "step {} needs `shell: bash`",
                step_name(s)
            );
        }
    }
    assert!(scripts >= 2);
}

#[test]
fn no_expression_inside_any_run_script() {
    let a = action();
    for s in steps(&a) {
        if let Some(run) = str_of(s, "run") {
            assert!(
                !run.contains("${{"),
                "step {}: `${{{{ }}}}` inside run: is script injection; pass it through env:",
                step_name(s)
            );
            assert!(
                !run.contains("inputs."),
                "step {}: scripts read inputs from env only",
                step_name(s)
            );
            assert!(
                !run.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .any(|w| w == "eval"),
                "step {}: no eval",
                step_name(s)
            );
        }
    }
}

#[test]
fn inputs_reach_scripts_only_through_env() {
    let a = action();
    let inputs = a["inputs"].as_mapping().expect("inputs");
    let names: Vec<String> = inputs
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    for want in [
        "command",
        "plan",
        "repo-path",
        "remote",
        "github-token",
        "kubeconfig",
        "dry-run",
        "version",
    ] {
        assert!(names.iter().any(|n| n == want), "input {want} missing");
    }
    assert_eq!(a["inputs"]["plan"]["required"].as_bool(), Some(true));
    assert_eq!(
        str_of(&a["inputs"]["command"], "default"),
        Some("reconcile")
    );
    assert_eq!(str_of(&a["inputs"]["dry-run"], "default"), Some("false"));
    // Composite input defaults may use github.* but nothing else.
    for (k, v) in inputs {
        if let Some(d) = str_of(v, "default") {
            for e in expressions(d) {
                assert!(e.starts_with("github."), "input {k:?}: default {e:?}");
            }
        }
    }

    let var = regex::Regex::new(r"\$\{?(INPUT_[A-Z0-9_]+)").unwrap();
    let mut passed = BTreeMap::new();
    for s in steps(&a) {
        let env = env_of(s);
        for (k, v) in &env {
            for e in expressions(v) {
                if let Some(input) = e.strip_prefix("inputs.") {
                    assert!(
                        names.iter().any(|n| n == input),
                        "step {}: env {k} uses undeclared input {input}",
                        step_name(s)
                    );
                    assert_eq!(
                        k,
                        &input_env_name(input),
                        "step {}: env name of input {input}",
                        step_name(s)
                    );
                    passed.insert(input.to_string(), step_name(s));
                }
            }
        }
        if let Some(run) = str_of(s, "run") {
            for c in var.captures_iter(run) {
                assert!(
                    env.contains_key(&c[1]),
                    "step {}: script reads ${} but the step's env: does not set it",
                    step_name(s),
                    &c[1]
                );
            }
        }
    }
    for n in &names {
        assert!(
            passed.contains_key(n),
            "input {n} is never passed to a script"
        );
    }
}

#[test]
fn outputs_map_to_the_step_that_runs_fleetwave() {
    let a = action();
    let ids: Vec<&str> = steps(&a).iter().filter_map(|s| str_of(s, "id")).collect();
    let outputs = a["outputs"].as_mapping().expect("outputs");
    for want in ["plan-status", "waves-json", "merged"] {
        let v = str_of(&a["outputs"][want], "value").unwrap_or_else(|| panic!("output {want}"));
        let e = expressions(v);
        assert_eq!(e.len(), 1, "output {want}: {v}");
        let parts: Vec<&str> = e[0].split('.').collect();
        assert_eq!(parts.len(), 4, "output {want}: {v}");
        assert_eq!((parts[0], parts[2], parts[3]), ("steps", "outputs", want));
        assert!(
            ids.contains(&parts[1]),
            "output {want}: no step {}",
            parts[1]
        );
        let step = steps(&a)
            .iter()
            .find(|s| str_of(s, "id") == Some(parts[1]))
            .unwrap();
        assert!(
            str_of(step, "run")
                .unwrap_or("")
                .contains("fleetwave \"${args[@]}\"")
        );
    }
    assert_eq!(outputs.len(), 3);
}

#[test]
fn build_is_cached_with_a_key_from_the_action_source() {
    let a = action();
    let cache = steps(&a)
        .iter()
        .find(|s| {
            str_of(s, "uses").is_some_and(|u| u.starts_with("actions/cache@"))
                && str_of(&s["with"], "path").is_some_and(|p| p.contains("~/.cargo/registry"))
        })
        .expect("an actions/cache step for the cargo build");
    // Only a build from source needs it.
    assert_eq!(
        str_of(cache, "if"),
        Some("steps.install.outputs.build == 'true'")
    );
    let path = str_of(&cache["with"], "path").unwrap();
    for p in [
        "~/.cargo/bin",
        "~/.cargo/registry",
        "~/.cargo/git",
        "${{ github.action_path }}/target",
    ] {
        assert!(path.lines().any(|l| l.trim() == p), "cache path {p}");
    }
    let key = str_of(&cache["with"], "key").unwrap();
    assert!(key.contains("${{ runner.os }}"), "{key}");
    // hashFiles() cannot see the action's directory: the key comes from a step that hashes it.
    assert!(!key.contains("hashFiles"), "{key}");
    assert!(key.contains("steps.key.outputs."), "{key}");
    let install = steps(&a)
        .iter()
        .find(|s| str_of(s, "run").is_some_and(|r| r.contains("cargo install")))
        .expect("an install step");
    let run = str_of(install, "run").unwrap();
    for part in [
        "--locked",
        "--path \"$GITHUB_ACTION_PATH\"",
        "--root \"$HOME/.cargo\"",
        "fleetwave\" --version",
        "$GITHUB_PATH",
    ] {
        assert!(run.contains(part), "install step lacks {part}");
    }
}

#[test]
fn example_workflows_use_the_action_safely() {
    let dir = root().join("examples/workflows");
    let mut seen = Vec::new();
    for name in ["reconcile.yml", "plan-preview.yml", "review-gate.yml"] {
        let w = yaml(&dir.join(name));
        seen.push(name);
        assert!(w.get("on").is_some(), "{name}: no `on:`");
        let jobs = w["jobs"].as_mapping().expect("jobs");
        let mut uses_action = false;
        for (_, job) in jobs {
            for s in job["steps"].as_sequence().into_iter().flatten() {
                if let Some(run) = str_of(s, "run") {
                    assert!(!run.contains("${{"), "{name}: ${{{{ in run:");
                }
                if str_of(s, "uses").is_some_and(|u| u.ends_with("/fleetwave@v0")) {
                    uses_action = true;
                    let cmd = str_of(&s["with"], "command").unwrap_or("reconcile");
                    assert!(["reconcile", "plan", "status"].contains(&cmd), "{name}");
                    assert!(s["with"].get("plan").is_some(), "{name}: plan input");
                }
            }
        }
        assert!(uses_action, "{name} does not use the action");
    }
    let rec = yaml(&dir.join("reconcile.yml"));
    let gate = yaml(&dir.join("review-gate.yml"));
    assert_eq!(
        rec["concurrency"]["group"], gate["concurrency"]["group"],
        "scheduled and review-triggered reconcilers must share one concurrency group"
    );
    assert_eq!(
        rec["concurrency"]["cancel-in-progress"].as_bool(),
        Some(false)
    );
    for p in ["contents", "pull-requests", "statuses", "issues", "checks"] {
        assert_eq!(str_of(&rec["permissions"], p), Some("write"), "{p}");
    }
    assert!(str_of(&rec["on"]["schedule"][0], "cron").is_some());
    assert!(rec["on"].get("workflow_dispatch").is_some());
    assert_eq!(seen.len(), 3);
}

// ---------------------------------------------------------------------------------------
// A simulated runner

const TOKEN: &str = "ghs_simulatedtoken0123456789";

enum Binary {
    /// A fake that records its argv and environment, writes outputs and exits with this code.
    Fake(i32),
    /// The real binary built by cargo.
    Real,
}

struct Sim {
    tmp: tempfile::TempDir,
    inputs: BTreeMap<String, String>,
    /// `github.action_ref` and `github.action_repository`.
    action_ref: String,
    action_repository: String,
    /// Files served by the fake `curl` under https://github.com/ (path → bytes); anything
    /// else answers 404 (curl's exit 22).
    releases: BTreeMap<String, Vec<u8>>,
    event_name: String,
    event: serde_json::Value,
    binary: Binary,
    /// Extra executables to put on PATH: (name, script).
    shims: Vec<(String, String)>,
    env: Vec<(String, String)>,
}

#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    /// The action's outputs, evaluated from its `outputs:` mapping.
    outputs: BTreeMap<String, String>,
    step_outputs: BTreeMap<String, BTreeMap<String, String>>,
    summary: String,
    /// The fake's argv, if it ran.
    argv: Option<Vec<String>>,
    /// The fake's view of some environment variables.
    seen_env: BTreeMap<String, String>,
    /// Scripts that were skipped (uses: or cargo install).
    skipped: Vec<String>,
    /// URLs the fake curl was asked for.
    curl: Vec<String>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.code == 0
    }
    fn argv(&self) -> &[String] {
        self.argv
            .as_deref()
            .unwrap_or_else(|| panic!("fleetwave did not run: {self:#?}"))
    }
}

fn pull_request_event(number: u64) -> serde_json::Value {
    serde_json::json!({
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "state": "open",
            "title": "plans: k8s 1.34 $(touch pwned-title) `touch pwned-title2`",
            "merged": false,
            "head": {
                "ref": "fleetwave/k8s-1-34/canary/1;$(touch pwned-ref)",
                "sha": "0123456789abcdef0123456789abcdef01234567",
                "repo": { "full_name": "acme/fleet" }
            },
            "base": {
                "ref": "main",
                "sha": "89abcdef0123456789abcdef0123456789abcdef",
                "repo": { "full_name": "acme/fleet" }
            },
            "user": { "login": "alice" }
        },
        "repository": { "full_name": "acme/fleet", "name": "fleet", "owner": { "login": "acme" } },
        "sender": { "login": "alice" }
    })
}

fn review_event(number: u64) -> serde_json::Value {
    let mut e = pull_request_event(number);
    e["action"] = "submitted".into();
    e["review"] = serde_json::json!({
        "id": 1, "state": "approved", "body": "lgtm $(touch pwned-review)",
        "user": { "login": "alice" }
    });
    e
}

fn have(cmd: &str) -> bool {
    Command::new("bash")
        .args(["-c", "command -v \"$1\" >/dev/null", "_", cmd])
        .status()
        .is_ok_and(|s| s.success())
}

/// Replace each `${{ expr }}` by its value in `ctx` (no nesting, no operators: the action
/// only uses plain context lookups, and anything else fails the test).
fn eval(text: &str, ctx: &BTreeMap<String, String>) -> String {
    substitute(text, |e| match ctx.get(e) {
        Some(v) => v.clone(),
        None => panic!("the simulated runner does not know `{e}`"),
    })
}

/// Replace each `${{ expr }}` by `value(expr)`.
fn substitute(text: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let j = after.find("}}").expect("unterminated expression");
        out.push_str(&value(after[..j].trim()));
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

/// `name=value` and `name<<DELIM` … `DELIM` lines, as written to $GITHUB_OUTPUT / $GITHUB_ENV.
fn parse_kv_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some((k, delim)) = l.split_once("<<")
            && !k.contains('=')
        {
            let mut v = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                v.push(l);
            }
            out.insert(k.to_string(), v.join("\n"));
        } else if let Some((k, v)) = l.split_once('=') {
            out.insert(k.to_string(), v.to_string());
        } else if !l.is_empty() {
            panic!("bad output line {l:?}");
        }
    }
    out
}

/// Every file or directory below `dir` whose name starts with "pwned".
fn pwned_files(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with("pwned") {
            out.push(p.clone());
        }
        if depth > 0 && p.is_dir() && !p.is_symlink() && e.file_name() != "target" {
            out.extend(pwned_files(&p, depth - 1));
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

impl Sim {
    fn new(inputs: &[(&str, &str)]) -> Sim {
        Sim {
            tmp: tempfile::tempdir().unwrap(),
            inputs: inputs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            action_ref: String::new(),
            action_repository: String::new(),
            releases: BTreeMap::new(),
            event_name: "workflow_dispatch".into(),
            event: serde_json::json!({ "inputs": {}, "ref": "refs/heads/main",
                "repository": { "full_name": "acme/fleet" } }),
            binary: Binary::Fake(0),
            shims: Vec::new(),
            env: Vec::new(),
        }
    }

    fn event(mut self, name: &str, event: serde_json::Value) -> Sim {
        self.event_name = name.into();
        self.event = event;
        self
    }

    fn binary(mut self, b: Binary) -> Sim {
        self.binary = b;
        self
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn workspace(&self) -> PathBuf {
        self.path("workspace")
    }

    fn run(&self) -> Outcome {
        let t = self.tmp.path();
        for d in ["workspace", "bin", "home", "runner-temp", "record", "steps"] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        let record = t.join("record");
        let bin = t.join("bin");
        match self.binary {
            Binary::Fake(code) => {
                let script = fake_script(&record, code);
                write_exe(&bin.join("fleetwave"), &script);
            }
            Binary::Real => {
                let _ = std::fs::remove_file(bin.join("fleetwave"));
                std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_fleetwave"), bin.join("fleetwave"))
                    .unwrap();
            }
        }
        // The fake curl: `-o FILE URL`, served from `releases/` (every URL asked is logged);
        // FAKE_CURL_EXIT makes it fail as curl does without a network.
        let releases = t.join("releases");
        for (p, bytes) in &self.releases {
            let f = releases.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, bytes).unwrap();
        }
        write_exe(
            &bin.join("curl"),
            &format!(
                r#"#!/usr/bin/env bash
out=; url=
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift ;;
    --retry | --retry-delay | --connect-timeout | --max-time) shift ;;
    http://* | https://*) url=$1 ;;
  esac
  shift
done
printf '%s\n' "$url" >>'{record}/curl.log'
if [ -n "${{FAKE_CURL_EXIT:-}}" ]; then echo "curl: ($FAKE_CURL_EXIT) could not resolve host" >&2; exit "$FAKE_CURL_EXIT"; fi
f='{releases}/'"${{url#https://github.com/}}"
case "$url" in https://github.com/*) ;; *) f=/nonexistent ;; esac
if [ -f "$f" ]; then cat -- "$f" >"$out"; else echo "curl: (22) The requested URL returned error: 404" >&2; exit 22; fi
"#,
                record = record.display(),
                releases = releases.display()
            ),
        );
        for (name, script) in &self.shims {
            write_exe(&bin.join(name), script);
        }
        let event_path = t.join("event.json");
        std::fs::write(&event_path, serde_json::to_vec_pretty(&self.event).unwrap()).unwrap();
        let summary = t.join("step_summary.md");
        let github_env = t.join("github_env");
        let github_path = t.join("github_path");
        for f in [&summary, &github_env, &github_path] {
            std::fs::write(f, "").unwrap();
        }

        let a = action();
        let mut ctx = BTreeMap::new();
        ctx.insert("github.token".to_string(), TOKEN.to_string());
        ctx.insert(
            "github.action_path".to_string(),
            root().display().to_string(),
        );
        ctx.insert("github.repository".to_string(), "acme/fleet".to_string());
        ctx.insert("github.action_ref".to_string(), self.action_ref.clone());
        ctx.insert(
            "github.action_repository".to_string(),
            self.action_repository.clone(),
        );
        ctx.insert(
            "github.workspace".to_string(),
            self.workspace().display().to_string(),
        );
        ctx.insert("runner.os".to_string(), "Linux".to_string());
        ctx.insert(
            "runner.temp".to_string(),
            t.join("runner-temp").display().to_string(),
        );
        // Inputs: given values, else defaults (evaluated), else a missing required input.
        for (k, spec) in a["inputs"].as_mapping().unwrap() {
            let k = k.as_str().unwrap();
            let v = match self.inputs.get(k) {
                Some(v) => v.clone(),
                None => {
                    if spec["required"].as_bool() == Some(true) {
                        panic!("required input {k} not given");
                    }
                    eval(str_of(spec, "default").unwrap_or(""), &ctx)
                }
            };
            ctx.insert(format!("inputs.{k}"), v);
        }
        for k in self.inputs.keys() {
            assert!(
                ctx.contains_key(&format!("inputs.{k}")),
                "unknown input {k}"
            );
        }

        let orig_path = std::env::var("PATH").unwrap_or_default();
        let mut path_entries = vec![bin.display().to_string()];
        let mut extra_env: BTreeMap<String, String> = BTreeMap::new();
        let mut step_outputs = BTreeMap::new();
        let mut skipped = Vec::new();
        let (mut stdout, mut stderr) = (String::new(), String::new());
        let mut code = 0;
        for (i, s) in steps(&a).iter().enumerate() {
            let Some(run) = str_of(s, "run") else {
                skipped.push(step_name(s));
                continue;
            };
            if run.contains("cargo install") {
                skipped.push(step_name(s));
                continue;
            }
            assert_eq!(str_of(s, "shell"), Some("bash"));
            let script = t.join("steps").join(format!("{i}.sh"));
            std::fs::write(&script, run).unwrap();
            let output_file = t.join("steps").join(format!("{i}.output"));
            std::fs::write(&output_file, "").unwrap();
            let mut cmd = Command::new("bash");
            // What the runner runs for `shell: bash`.
            cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
                .arg(&script)
                .current_dir(self.workspace())
                .env_clear()
                .env("PATH", format!("{}:{orig_path}", path_entries.join(":")))
                .env("HOME", t.join("home"))
                .env("LANG", "C.UTF-8")
                .env("CI", "true")
                .env("GITHUB_ACTIONS", "true")
                .env("GITHUB_OUTPUT", &output_file)
                .env("GITHUB_STEP_SUMMARY", &summary)
                .env("GITHUB_ENV", &github_env)
                .env("GITHUB_PATH", &github_path)
                .env("GITHUB_EVENT_NAME", &self.event_name)
                .env("GITHUB_EVENT_PATH", &event_path)
                .env("GITHUB_ACTION_PATH", root())
                .env("GITHUB_WORKSPACE", self.workspace())
                .env("GITHUB_REPOSITORY", "acme/fleet")
                .env("GITHUB_SERVER_URL", "https://github.com")
                .env("GITHUB_API_URL", "https://api.github.com")
                .env("RUNNER_OS", "Linux")
                .env("RUNNER_ARCH", "X64")
                .env("RUNNER_TOOL_CACHE", t.join("toolcache"))
                .env("RUNNER_TEMP", t.join("runner-temp"));
            for (k, v) in extra_env.iter().chain(self.env.iter().map(|(k, v)| (k, v))) {
                cmd.env(k, v);
            }
            for (k, v) in env_of(s) {
                cmd.env(k, eval(&v, &ctx));
            }
            let out = cmd.output().expect("run bash");
            stdout.push_str(&String::from_utf8_lossy(&out.stdout));
            stderr.push_str(&String::from_utf8_lossy(&out.stderr));
            code = out.status.code().unwrap_or(-1);
            let outs = parse_kv_file(&std::fs::read_to_string(&output_file).unwrap());
            if let Some(id) = str_of(s, "id") {
                for (k, v) in &outs {
                    ctx.insert(format!("steps.{id}.outputs.{k}"), v.clone());
                }
                step_outputs.insert(id.to_string(), outs);
            }
            // $GITHUB_ENV and $GITHUB_PATH apply to the following steps.
            extra_env.extend(parse_kv_file(
                &std::fs::read_to_string(&github_env).unwrap(),
            ));
            for l in std::fs::read_to_string(&github_path).unwrap().lines().rev() {
                if !l.is_empty() && !path_entries.iter().any(|p| p == l) {
                    path_entries.insert(0, l.to_string());
                }
            }
            if code != 0 {
                break;
            }
        }
        let mut outputs = BTreeMap::new();
        for (k, spec) in a["outputs"].as_mapping().unwrap() {
            let v = str_of(spec, "value").unwrap();
            // Outputs of steps that never ran evaluate to the empty string, as on the runner.
            let e = expressions(v);
            let value = if e.iter().all(|e| ctx.contains_key(e)) {
                eval(v, &ctx)
            } else {
                String::new()
            };
            outputs.insert(k.as_str().unwrap().to_string(), value);
        }
        let split0 = |b: Vec<u8>| -> Vec<String> {
            b.split(|c| *c == 0)
                .map(|s| String::from_utf8(s.to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        let argv = std::fs::read(record.join("argv")).ok().map(|b| {
            let mut v = split0(b);
            assert_eq!(v.pop().as_deref(), Some(""), "argv ends with NUL");
            v
        });
        let seen_env = std::fs::read(record.join("env"))
            .ok()
            .map(|b| {
                split0(b)
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        let (k, v) = s.split_once('=').unwrap();
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let curl = std::fs::read_to_string(record.join("curl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        Outcome {
            code,
            stdout,
            stderr,
            outputs,
            step_outputs,
            summary: std::fs::read_to_string(&summary).unwrap(),
            argv,
            seen_env,
            skipped,
            curl,
        }
    }
}

/// A fake `fleetwave` that records its argv and some environment variables under `record`,
/// writes step outputs and a summary table, and exits with `code`.
fn fake_script(record: &Path, code: i32) -> String {
    format!(
        r#"#!/usr/bin/env bash
record='{record}'
# The HTML report after the command: recorded apart, so argv stays the command's.
case " $* " in *" --output html "*) printf '%s\0' "$@" >"$record/argv-html"; echo '<!DOCTYPE html><title>fake report</title>'; exit 0 ;; esac
printf '%s\0' "$@" >"$record/argv"
for v in GITHUB_TOKEN FLEETWAVE_GIT_TOKEN KUBECONFIG; do
  if [ -n "${{!v+x}}" ]; then printf '%s=%s\0' "$v" "${{!v}}"; fi
done >"$record/env"
if [ -n "${{KUBECONFIG:-}}" ] && [ -f "$KUBECONFIG" ]; then cp -- "$KUBECONFIG" "$record/kubeconfig"; fi
{{
  echo 'plan-status=InProgress'
  echo 'waves-json=[{{"name":"canary","clusters":["stg-capi-01"],"state":"Soaking"}}]'
  echo 'merged=1'
}} >>"$GITHUB_OUTPUT"
printf '| wave | clusters |\n|---|---|\n| canary | stg-capi-01 |\n' >>"$GITHUB_STEP_SUMMARY"
exit {code}
"#,
        record = record.display()
    )
}

fn write_exe(path: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn assert_not_pwned(sim: &Sim) {
    let mut hits = pwned_files(sim.tmp.path(), 6);
    hits.extend(pwned_files(&root(), 2));
    assert!(hits.is_empty(), "injected commands ran: {hits:?}");
}

// ---------------------------------------------------------------------------------------
// Scripts under the simulated runner

const NASTY_PLAN: &str = r#"plans/my plan; touch pwned1 $(touch pwned2) `touch pwned3` "q" 'q' \ $HOME ${{ github.token }}.yaml"#;

#[test]
fn plan_passes_a_hostile_path_as_one_argument_and_comments_on_the_pr() {
    if !have("jq") && !have("python3") {
        eprintln!("note: neither jq nor python3 on PATH; the PR number cannot be read");
        return;
    }
    let repo = "fleet repo $(touch pwned4)";
    let sim = Sim::new(&[
        ("command", "plan"),
        ("plan", NASTY_PLAN),
        ("repo-path", repo),
    ])
    .event("pull_request", pull_request_event(42));
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(
        o.argv(),
        [
            "plan",
            "--repo",
            repo,
            "--plan",
            &format!("{repo}/{NASTY_PLAN}"),
            "--github-output",
            "--comment-pr",
            "42"
        ]
    );
    assert_eq!(
        o.skipped.len(),
        5,
        "the three cache steps, the report's upload and the build from source are skipped: {:?}",
        o.skipped
    );
    assert_not_pwned(&sim);
    // The token reaches fleetwave through the environment, never argv, and is masked.
    assert_eq!(
        o.seen_env.get("GITHUB_TOKEN").map(String::as_str),
        Some(TOKEN)
    );
    assert!(!o.argv().iter().any(|a| a.contains(TOKEN)));
    assert!(o.stdout.contains(&format!("::add-mask::{TOKEN}")));
    // Outputs flow from the run step through the action's outputs.
    assert_eq!(o.outputs["plan-status"], "InProgress");
    let waves: serde_json::Value = serde_json::from_str(&o.outputs["waves-json"]).unwrap();
    assert_eq!(waves[0]["name"], "canary");
    assert_eq!(o.outputs["merged"], "1");
    assert!(o.summary.contains("|---|"));
    // The source key step ran and produced a cache key.
    let key = &o.step_outputs["key"]["source"];
    assert_eq!(key.len(), 32, "{key}");
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn plan_outside_a_pull_request_posts_no_comment_and_keeps_absolute_paths() {
    let sim = Sim::new(&[("command", "plan"), ("plan", "/abs/plans/x.yaml")]);
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(
        o.argv(),
        [
            "plan",
            "--repo",
            ".",
            "--plan",
            "/abs/plans/x.yaml",
            "--github-output"
        ]
    );
    // A pull_request event without a number: a warning, no comment.
    let sim = Sim::new(&[("command", "plan"), ("plan", "plans/x.yaml")])
        .event("pull_request", serde_json::json!({ "pull_request": {} }));
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert!(!o.argv().iter().any(|a| a == "--comment-pr"));
    assert!(o.stdout.contains("::warning"), "{}", o.stdout);
}

#[test]
fn the_pr_number_is_read_with_python_when_jq_fails() {
    if !have("python3") {
        eprintln!("note: python3 not on PATH; fallback not tested");
        return;
    }
    let mut sim = Sim::new(&[("command", "plan"), ("plan", "plans/x.yaml")])
        .event("pull_request", pull_request_event(7));
    sim.shims.push((
        "jq".into(),
        "#!/bin/sh\necho 'jq: broken' >&2\nexit 3\n".into(),
    ));
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert!(
        o.argv()
            .ends_with(&["--comment-pr".to_string(), "7".to_string()])
    );
}

#[test]
fn reconcile_builds_its_arguments_and_environment_from_env_only() {
    let kube = "apiVersion: v1\nkind: Config\n# $(touch pwned-kube) `touch pwned-kube2`\n";
    let sim = Sim::new(&[
        ("plan", "plans/k8s 1.34;$(touch pwned5).yaml"),
        ("dry-run", "TRUE"),
        ("kubeconfig", kube),
        ("version", "v0.1.0"),
    ])
    .event("pull_request_review", review_event(9));
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(
        o.argv(),
        [
            "reconcile",
            "--once",
            "--remote",
            "https://github.com/acme/fleet.git",
            "--plan",
            "plans/k8s 1.34;$(touch pwned5).yaml",
            "--forge",
            "github",
            "--github-output",
            "--dry-run",
            // No cluster-source given: the hub cluster, never the simulator.
            "--clusters",
            "kube"
        ]
    );
    assert_eq!(o.seen_env["GITHUB_TOKEN"], TOKEN);
    assert_eq!(o.seen_env["FLEETWAVE_GIT_TOKEN"], TOKEN);
    // Kubeconfig content is written to a private file.
    let kc = PathBuf::from(&o.seen_env["KUBECONFIG"]);
    assert!(kc.starts_with(sim.path("runner-temp")), "{kc:?}");
    assert_eq!(
        std::fs::read_to_string(sim.path("record/kubeconfig")).unwrap(),
        kube.to_string() + "\n"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kc).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "kubeconfig mode {mode:o}");
    }
    assert_not_pwned(&sim);

    // Explicit remote, token and kubeconfig path; no dry run.
    let kc_file = tempfile::NamedTempFile::new().unwrap();
    let kc_path = kc_file.path().display().to_string();
    let remote = "https://ghe.example.com/platform/fleet one.git";
    let sim = Sim::new(&[
        ("command", "reconcile"),
        ("plan", "plans/a.yaml"),
        ("remote", remote),
        ("github-token", "tok en'$(touch pwned6)"),
        ("kubeconfig", &kc_path),
    ]);
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(o.argv()[3], remote);
    assert!(!o.argv().iter().any(|a| a == "--dry-run"));
    assert_eq!(o.seen_env["GITHUB_TOKEN"], "tok en'$(touch pwned6)");
    assert_eq!(o.seen_env["KUBECONFIG"], kc_path);
    assert_not_pwned(&sim);
}

#[test]
fn status_runs_against_the_remote() {
    let sim = Sim::new(&[("command", "status"), ("plan", "plans/a.yaml")]);
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(
        o.argv(),
        [
            "status",
            "--remote",
            "https://github.com/acme/fleet.git",
            "--plan",
            "plans/a.yaml",
            "--github-output"
        ]
    );
    // Cluster state for status, per-cluster contexts passed as one argument.
    let sim = Sim::new(&[
        ("command", "status"),
        ("plan", "plans/a.yaml"),
        ("cluster-source", "kube"),
        ("cluster-context", "admin@{cluster} $(touch pwned5)"),
    ]);
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(
        &o.argv()[6..],
        [
            "--clusters",
            "kube",
            "--cluster-context",
            "admin@{cluster} $(touch pwned5)"
        ]
    );
    assert_not_pwned(&sim);
}

#[test]
fn reconcile_and_status_write_the_html_report_and_link_it_from_the_summary() {
    let argv_html = |sim: &Sim| -> Vec<String> {
        let b = std::fs::read(sim.path("record/argv-html")).unwrap_or_default();
        let mut v: Vec<String> = b
            .split(|c| *c == 0)
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect();
        v.pop();
        v
    };
    let sim = Sim::new(&[
        ("command", "reconcile"),
        ("plan", "plans/a.yaml"),
        ("cluster-context", "admin@{cluster}"),
    ]);
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(o.argv()[0], "reconcile", "argv is still the command's");
    assert_eq!(
        argv_html(&sim),
        [
            "status",
            "--remote",
            "https://github.com/acme/fleet.git",
            "--plan",
            "plans/a.yaml",
            "--output",
            "html",
            "--clusters",
            "kube",
            "--cluster-context",
            "admin@{cluster}"
        ]
    );
    let key = &o.step_outputs["key"]["state"];
    let report = sim.path(&format!(
        "runner-temp/fleetwave-report-{key}/fleetwave-report.html"
    ));
    assert!(
        std::fs::read_to_string(report)
            .unwrap()
            .contains("fake report")
    );
    assert!(
        o.summary
            .contains(&format!("artifact `fleetwave-report-{key}`")),
        "{}",
        o.summary
    );
    // plan writes no report and links none.
    let sim = Sim::new(&[("command", "plan"), ("plan", "plans/a.yaml")]);
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert!(argv_html(&sim).is_empty());
    assert!(!o.summary.contains("HTML report"), "{}", o.summary);
    // The upload step is pinned as the action's other steps are.
    let a = action();
    let upload = steps(&a)
        .iter()
        .find(|s| str_of(s, "uses").is_some_and(|u| u.starts_with("actions/upload-artifact@")))
        .expect("an upload-artifact step");
    let uses = str_of(upload, "uses").unwrap();
    assert_eq!(
        uses.split('@').nth(1).unwrap().len(),
        40,
        "pinned by SHA: {uses}"
    );
}

#[test]
fn invalid_inputs_fail_clearly_before_running_fleetwave() {
    for (inputs, what) in [
        (vec![("command", "apply"), ("plan", "p.yaml")], "command"),
        (
            vec![("command", "plan; touch pwned7"), ("plan", "p.yaml")],
            "command",
        ),
        (
            vec![("command", "$(touch pwned8)"), ("plan", "p.yaml")],
            "command",
        ),
        (vec![("command", ""), ("plan", "")], "plan"),
        (vec![("plan", "--help")], "plan"),
        (vec![("plan", "p.yaml"), ("dry-run", "yes")], "dry-run"),
        (
            vec![("plan", "p.yaml"), ("remote", "--upload-pack=touch pwned9")],
            "remote",
        ),
    ] {
        let sim = Sim::new(&inputs);
        let o = sim.run();
        assert_eq!(o.code, 2, "{inputs:?}: {o:#?}");
        assert!(o.argv.is_none(), "{inputs:?}: fleetwave ran");
        let err = o
            .stdout
            .lines()
            .find(|l| l.starts_with("::error"))
            .unwrap_or_else(|| panic!("{inputs:?}: no ::error line: {}", o.stdout));
        assert!(err.contains(&format!("'{what}'")), "{inputs:?}: {err}");
        assert_not_pwned(&sim);
    }
}

#[test]
fn exit_codes_held_fails_reconcile_and_status_but_not_plan() {
    for (command, code, success) in [
        ("plan", 0, true),
        ("plan", 1, true),
        ("plan", 2, false),
        ("reconcile", 0, true),
        ("reconcile", 1, false),
        ("reconcile", 2, false),
        ("status", 0, true),
        ("status", 1, false),
        ("status", 2, false),
    ] {
        let sim =
            Sim::new(&[("command", command), ("plan", "plans/a.yaml")]).binary(Binary::Fake(code));
        let o = sim.run();
        assert_eq!(o.ok(), success, "{command} exit {code}: {o:#?}");
        assert_eq!(
            o.code,
            if success { 0 } else { code },
            "{command} exit {code}"
        );
        assert!(o.argv.is_some());
        // Outputs written before the exit still reach the action's outputs.
        assert_eq!(o.outputs["plan-status"], "InProgress");
        if !success {
            assert!(o.stdout.contains("::error"), "{}", o.stdout);
        }
    }
}

#[test]
fn review_and_closed_events_work_for_reconcile_and_plan() {
    let o = Sim::new(&[("plan", "plans/a.yaml")])
        .event("pull_request_review", review_event(12))
        .run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(o.argv()[0], "reconcile");
    assert!(!o.argv().iter().any(|a| a == "--comment-pr"));

    let mut closed = pull_request_event(13);
    closed["action"] = "closed".into();
    closed["pull_request"]["merged"] = true.into();
    let o = Sim::new(&[("plan", "plans/a.yaml")])
        .event("pull_request", closed)
        .run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(o.argv()[0], "reconcile");

    if have("jq") || have("python3") {
        let o = Sim::new(&[("command", "plan"), ("plan", "plans/a.yaml")])
            .event("pull_request_review", review_event(12))
            .run();
        assert!(o.ok(), "{o:#?}");
        assert!(
            o.argv()
                .ends_with(&["--comment-pr".to_string(), "12".to_string()])
        );
    }
}

// ---------------------------------------------------------------------------------------
// Installing the release binary

const TARGET: &str = "x86_64-unknown-linux-musl";

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A release archive laid out as release.yml makes it (`fleetwave-vV-TARGET/fleetwave`),
/// holding a fake fleetwave that says `fleetwave V` to --version and otherwise records its
/// run (and `record/downloaded`) like the fake on PATH.
fn release_archive(sim: &Sim, version: &str) -> (String, Vec<u8>) {
    let name = format!("fleetwave-v{version}-{TARGET}");
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join(&name);
    std::fs::create_dir_all(&inner).unwrap();
    let record = sim.path("record");
    let script = format!(
        "#!/usr/bin/env bash\nif [ \"${{1:-}}\" = --version ]; then echo 'fleetwave {version}'; exit 0; fi\ntouch '{}/downloaded'\n{}",
        record.display(),
        fake_script(&record, 0).trim_start_matches("#!/usr/bin/env bash\n")
    );
    write_exe(&inner.join("fleetwave"), &script);
    std::fs::write(inner.join("LICENSE"), "Apache-2.0").unwrap();
    let archive = dir.path().join(format!("{name}.tar.gz"));
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .arg(&name)
        .status()
        .expect("tar");
    assert!(st.success());
    (format!("{name}.tar.gz"), std::fs::read(archive).unwrap())
}

/// Publish `version` of `repo` to the fake curl: the archive and, unless `sums` says
/// otherwise, a SHA256SUMS listing it.
fn publish(sim: &mut Sim, repo: &str, version: &str, sums: Option<String>) -> String {
    let (name, bytes) = release_archive(sim, version);
    let base = format!("{repo}/releases/download/v{version}");
    let sums = sums.unwrap_or_else(|| {
        format!(
            "{}  fleetwave-v{version}-aarch64-unknown-linux-musl.tar.gz\n{}  {name}\n",
            "0".repeat(64),
            sha256_hex(&bytes)
        )
    });
    if !sums.is_empty() {
        sim.releases
            .insert(format!("{base}/SHA256SUMS"), sums.into_bytes());
    }
    sim.releases.insert(format!("{base}/{name}"), bytes);
    format!("https://github.com/{base}/{name}")
}

#[test]
fn the_release_binary_is_downloaded_checked_and_run() {
    let mut sim = Sim::new(&[("plan", "plans/a.yaml"), ("version", "v0.4.2")]);
    let url = publish(&mut sim, "fleetwave/fleetwave", "0.4.2", None);
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(
        o.curl,
        [
            url.clone(),
            "https://github.com/fleetwave/fleetwave/releases/download/v0.4.2/SHA256SUMS".into()
        ]
    );
    assert_eq!(o.step_outputs["install"]["build"], "false");
    assert_eq!(o.step_outputs["install"]["version"], "0.4.2");
    assert!(o.stdout.contains(": ok"), "{}", o.stdout);
    assert!(
        sim.path("record/downloaded").exists(),
        "the downloaded binary ran, not the one on PATH"
    );
    assert_eq!(o.argv()[0], "reconcile");
    assert_eq!(o.outputs["plan-status"], "InProgress");
    // Installed into the tool cache: the next run downloads nothing.
    assert!(
        sim.path("toolcache/fleetwave/0.4.2")
            .join(TARGET)
            .join("fleetwave")
            .is_file()
    );
    let again = sim.run();
    assert!(again.ok(), "{again:#?}");
    assert_eq!(again.curl.len(), 2, "{:?}", again.curl);
    assert_eq!(again.step_outputs["install"]["build"], "false");
}

#[test]
fn without_a_version_input_the_action_ref_names_the_release() {
    // Pinned to a release tag: that release, from the action's own repository.
    let mut sim = Sim::new(&[("plan", "plans/a.yaml")]);
    sim.action_ref = "v0.3.1".into();
    sim.action_repository = "acme/fleetwave-fork".into();
    let url = publish(&mut sim, "acme/fleetwave-fork", "0.3.1", None);
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(o.curl[0], url);
    assert_eq!(o.step_outputs["install"]["build"], "false");

    // Pinned to a major tag, a branch or a SHA: the release of the source's own version
    // (Cargo.toml), said in a notice; not published here, so it is built from source.
    for r in ["v0", "main", "0123456789abcdef0123456789abcdef01234567"] {
        let mut sim = Sim::new(&[("plan", "plans/a.yaml")]);
        sim.action_ref = r.into();
        let o = sim.run();
        assert!(o.ok(), "{r}: {o:#?}");
        let v = env!("CARGO_PKG_VERSION");
        assert_eq!(
            o.curl,
            [format!(
                "https://github.com/fleetwave/fleetwave/releases/download/v{v}/fleetwave-v{v}-{TARGET}.tar.gz"
            )],
            "{r}"
        );
        assert!(o.stdout.contains("::notice"), "{r}: {}", o.stdout);
        assert_eq!(o.step_outputs["install"]["build"], "true", "{r}");
        assert!(o.skipped.iter().any(|s| s == "build"), "{:?}", o.skipped);
    }
}

#[test]
fn a_bad_or_missing_checksum_fails_and_nothing_runs() {
    let cases = [
        (
            Some(format!(
                "{}  fleetwave-v0.4.2-{TARGET}.tar.gz\n",
                "ab".repeat(32)
            )),
            "checksum mismatch",
        ),
        (Some(String::new()), "no SHA256SUMS"),
        (
            Some(format!(
                "{}  fleetwave-v0.4.2-other.tar.gz\n",
                "ab".repeat(32)
            )),
            "does not list",
        ),
    ];
    for (sums, says) in cases {
        let mut sim = Sim::new(&[("plan", "plans/a.yaml"), ("version", "0.4.2")]);
        publish(&mut sim, "fleetwave/fleetwave", "0.4.2", sums);
        let o = sim.run();
        assert_eq!(o.code, 2, "{says}: {o:#?}");
        assert!(o.argv.is_none(), "{says}: fleetwave ran");
        assert!(!sim.path("record/downloaded").exists());
        let err = o
            .stdout
            .lines()
            .find(|l| l.starts_with("::error"))
            .unwrap_or("");
        assert!(err.contains(says), "{says}: {}", o.stdout);
        assert!(
            !sim.path("toolcache/fleetwave/0.4.2")
                .join(TARGET)
                .join("fleetwave")
                .exists(),
            "{says}: an unverified binary was installed"
        );
    }
}

#[test]
fn only_a_missing_release_builds_from_source() {
    // No such release (404): build from source (skipped here; the fake on PATH runs).
    let o = Sim::new(&[("plan", "plans/a.yaml"), ("version", "9.9.9")]).run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(o.step_outputs["install"]["build"], "true");
    assert_eq!(o.curl.len(), 1);

    // A network failure is an error, not a reason to build something else.
    let mut sim = Sim::new(&[("plan", "plans/a.yaml"), ("version", "0.4.2")]);
    sim.env.push(("FAKE_CURL_EXIT".into(), "6".into()));
    let o = sim.run();
    assert_eq!(o.code, 2, "{o:#?}");
    assert!(o.argv.is_none());
    assert!(o.stdout.contains("cannot download"), "{}", o.stdout);

    // `version: source`, and runners without release binaries, never download.
    let o = Sim::new(&[("plan", "plans/a.yaml"), ("version", "source")]).run();
    assert!(o.ok(), "{o:#?}");
    assert!(o.curl.is_empty(), "{:?}", o.curl);
    assert_eq!(o.step_outputs["install"]["build"], "true");
    let mut sim = Sim::new(&[("plan", "plans/a.yaml"), ("version", "0.4.2")]);
    sim.env.push(("RUNNER_OS".into(), "Windows".into()));
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert!(o.curl.is_empty(), "{:?}", o.curl);
    assert_eq!(o.step_outputs["install"]["build"], "true");
}

#[test]
fn a_hostile_version_is_refused() {
    for v in [
        "1.0;touch pwned-v1",
        "$(touch pwned-v2)",
        "../../../evil/1.0",
        "v1.0 --output=/etc/passwd",
        "latest",
    ] {
        let sim = Sim::new(&[("plan", "plans/a.yaml"), ("version", v)]);
        let o = sim.run();
        assert_eq!(o.code, 2, "{v}: {o:#?}");
        assert!(o.curl.is_empty(), "{v}: {:?}", o.curl);
        let err = o
            .stdout
            .lines()
            .find(|l| l.starts_with("::error"))
            .unwrap_or("");
        assert!(err.contains("'version'"), "{v}: {}", o.stdout);
        assert_not_pwned(&sim);
    }
}

#[test]
fn the_state_cache_is_keyed_by_repository_and_plan_and_saved_only_when_it_changed() {
    let a = action();
    let find = |id: &str| {
        steps(&a)
            .iter()
            .find(|s| str_of(s, "id") == Some(id) || str_of(s, "name") == Some(id))
            .unwrap_or_else(|| panic!("step {id}"))
            .clone()
    };
    let restore = find("state-restore");
    assert!(
        str_of(&restore, "uses")
            .unwrap()
            .starts_with("actions/cache/restore@")
    );
    assert_eq!(str_of(&restore["with"], "path"), Some("~/.cache/fleetwave"));
    let key = str_of(&restore["with"], "key").unwrap();
    for part in ["${{ github.repository }}", "${{ steps.key.outputs.state }}"] {
        assert!(key.contains(part), "{key}");
    }
    assert_eq!(str_of(&restore, "if"), Some("inputs.command != 'plan'"));
    let save = find("Save the fleetwave state cache");
    assert!(
        str_of(&save, "uses")
            .unwrap()
            .starts_with("actions/cache/save@")
    );
    assert_eq!(str_of(&save["with"], "path"), Some("~/.cache/fleetwave"));
    let save_key = str_of(&save["with"], "key").unwrap();
    assert!(save_key.starts_with(key), "{save_key}");
    assert!(
        save_key.ends_with("-${{ steps.state-key.outputs.hash }}"),
        "{save_key}"
    );
    let cond = str_of(&save, "if").unwrap();
    assert!(cond.starts_with("always()"), "{cond}");
    assert!(
        cond.contains(
            "!endsWith(steps.state-restore.outputs.cache-matched-key, steps.state-key.outputs.hash)"
        ),
        "{cond}"
    );
    let run = str_of(&find("run"), "run").unwrap().to_string();
    assert!(
        run.contains("XDG_CACHE_HOME=\"$HOME/.cache\" fleetwave"),
        "fleetwave's cache is where the cache steps look"
    );

    // The key names the plan and the remote.
    let key_of = |plan: &str, remote: &str| {
        Sim::new(&[("plan", plan), ("remote", remote)])
            .run()
            .step_outputs["key"]["state"]
            .clone()
    };
    let k = key_of("plans/a.yaml", "");
    assert_eq!(k.len(), 16);
    assert_ne!(k, key_of("plans/b.yaml", ""));
    assert_ne!(
        k,
        key_of("plans/a.yaml", "https://github.com/acme/other.git")
    );
    assert_eq!(k, key_of("plans/a.yaml", ""));
}

// ---------------------------------------------------------------------------------------
// The real binary

#[test]
fn real_binary_plan_writes_outputs_and_a_summary_table() {
    let mut sim = Sim::new(&[
        ("command", "plan"),
        ("plan", "plans/k8s-minor.yaml"),
        ("repo-path", "example fleet"),
    ])
    .binary(Binary::Real);
    sim.env
        .push(("FLEETWAVE_NOW".into(), "2026-11-21T12:00:00Z".into()));
    sim.env.push(("NO_COLOR".into(), "1".into()));
    let fleet = sim.workspace().join("example fleet");
    copy_dir(&root().join("fixtures/fleet"), &fleet);
    std::fs::create_dir_all(fleet.join("plans")).unwrap();
    std::fs::copy(
        root().join("fixtures/plans/k8s-minor.yaml"),
        fleet.join("plans/k8s-minor.yaml"),
    )
    .unwrap();
    let o = sim.run();
    eprintln!("job summary:\n{}", o.summary);
    if o.code != 0 && o.stderr.contains("--github-output") {
        eprintln!(
            "note: fleetwave does not support --github-output yet; skipping the real-binary check\n{}",
            o.stderr
        );
        return;
    }
    assert!(o.ok(), "{o:#?}");
    let outputs = &o.step_outputs["run"];
    assert!(!outputs["plan-status"].is_empty(), "{outputs:?}");
    assert_eq!(o.outputs["plan-status"], outputs["plan-status"]);
    let waves_json = &outputs["waves-json"];
    assert!(!waves_json.contains('\n'), "waves-json is one line");
    let waves: serde_json::Value = serde_json::from_str(waves_json)
        .unwrap_or_else(|e| panic!("waves-json is not JSON ({e}): {waves_json}"));
    assert!(waves.is_array() || waves.is_object(), "{waves}");
    assert!(waves_json.contains("canary"), "{waves_json}");
    let lines: Vec<&str> = o.summary.lines().map(str::trim).collect();
    assert!(
        lines.windows(2).any(|w| {
            w[0].starts_with('|')
                && w[0].ends_with('|')
                && w[1].starts_with('|')
                && w[1].contains("---")
                && w[1].chars().all(|c| "|-: ".contains(c))
        }),
        "no Markdown table header row in the summary:\n{}",
        o.summary
    );
    // The plan preview wrote nothing into the fleet.
    assert!(!fleet.join(".git").exists());
    assert_not_pwned(&sim);
}

/// The action against the fake GitHub: `reconcile` opens a real pull request and writes the
/// outputs and summary; `plan` on that pull request posts the preview as the managed comment,
/// edited in place on the next run.
#[test]
fn against_the_fake_github_reconcile_opens_a_pr_and_plan_comments_on_it() {
    use common::fake_github::FakeGitHub;
    let token = "ghs_action_token";
    let gh = FakeGitHub::start(token);
    let files = fleetwave::demo::example_files("gitops-base").unwrap();
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-23T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    gh.create_repo("acme", "fleet", &files, t0);
    let remote = gh.git_url("acme", "fleet");
    let mut sim = Sim::new(&[
        ("command", "reconcile"),
        ("plan", "plans/demo.yaml"),
        ("remote", remote.as_str()),
        ("github-token", token),
        ("cluster-source", "sim"),
    ])
    .binary(Binary::Real);
    sim.env.push(("GITHUB_API_URL".into(), gh.base_url()));
    sim.env
        .push(("FLEETWAVE_NOW".into(), "2026-11-23T08:00:00Z".into()));
    let o = sim.run();
    assert!(o.ok(), "{o:#?}");
    assert_eq!(o.outputs["plan-status"], "InProgress", "{o:#?}");
    let waves: serde_json::Value = serde_json::from_str(&o.outputs["waves-json"]).unwrap();
    assert_eq!(waves[0]["name"], "canary");
    assert!(o.summary.contains("| wave | status |"), "{}", o.summary);
    let pulls = gh.pulls();
    assert_eq!(pulls.len(), 1, "the first step's pull request");
    let n = pulls[0]["number"].as_u64().unwrap();
    // fleetwave's cache went where the state cache steps look, and was hashed for its key.
    assert!(sim.path("home/.cache/fleetwave").is_dir());
    assert_eq!(o.step_outputs["state-key"]["hash"].len(), 16, "{o:#?}");

    // The plan preview on that pull request.
    let mut preview = Sim::new(&[
        ("command", "plan"),
        ("plan", "plans/demo.yaml"),
        ("repo-path", "fleet"),
        ("github-token", token),
    ])
    .binary(Binary::Real)
    .event("pull_request", pull_request_event(n));
    preview.env.push(("GITHUB_API_URL".into(), gh.base_url()));
    preview.env.push(("NO_COLOR".into(), "1".into()));
    let fleet = preview.workspace().join("fleet");
    for (p, b) in &files {
        let path = fleet.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b).unwrap();
    }
    for _ in 0..2 {
        let o = preview.run();
        assert!(o.ok(), "{o:#?}");
    }
    let comments = gh.comments(n);
    let previews: Vec<_> = comments
        .iter()
        .filter(|c| c["body"].as_str().unwrap_or("").contains("plan preview"))
        .collect();
    assert_eq!(
        previews.len(),
        1,
        "one preview comment, edited in place: {comments:#?}"
    );
    assert_not_pwned(&preview);
}

/// Evaluate one `with:` value of an example workflow: `${{ a || b }}` takes the first operand
/// that is set (as GitHub's `||` does); operands are context names or `false`.
fn eval_with(text: &str, ctx: &BTreeMap<String, String>) -> String {
    substitute(text, |e| {
        e.split("||")
            .map(str::trim)
            .map(|e| match e {
                "false" => "false".to_string(),
                e => ctx.get(e).cloned().unwrap_or_default(),
            })
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    })
}

/// The `with:` inputs of the step of `workflow` that uses the action.
fn example_inputs(workflow: &str, ctx: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let w = yaml(&root().join("examples/workflows").join(workflow));
    for (_, job) in w["jobs"].as_mapping().unwrap() {
        for s in job["steps"].as_sequence().into_iter().flatten() {
            if str_of(s, "uses").is_some_and(|u| u.ends_with("/fleetwave@v0")) {
                return s["with"]
                    .as_mapping()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            Value::Bool(b) => b.to_string(),
                            other => panic!("{workflow}: input {k:?} is {other:?}"),
                        };
                        (k.as_str().unwrap().to_string(), eval_with(&v, ctx))
                    })
                    .collect();
            }
        }
    }
    panic!("{workflow} does not use the action")
}

/// Each shipped example workflow, as a user copies it, builds a command line that the real
/// binary accepts and that reads real cluster state (never the simulator) — run end to end
/// against the fake GitHub and a fake hub cluster.
#[test]
fn every_example_workflow_drives_the_real_binary() {
    use common::fake_github::FakeGitHub;
    use common::fake_kube::FakeKube;
    let gh = FakeGitHub::start(TOKEN);
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-23T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    gh.set_clock(t0);
    let mut files = fleetwave::demo::example_files("k8s-minor").unwrap();
    let plan = files[&PathBuf::from("plans/demo.yaml")].clone();
    files.insert(PathBuf::from("plans/k8s-1-34.yaml"), plan);
    gh.create_repo("acme", "fleet", &files, t0);
    let hub = FakeKube::start();
    let mut ctx = BTreeMap::new();
    ctx.insert("secrets.FLEETWAVE_TOKEN".to_string(), TOKEN.to_string());
    ctx.insert("secrets.FLEET_HUB_KUBECONFIG".into(), hub.kubeconfig_yaml());
    ctx.insert("matrix.plan".into(), "plans/k8s-1-34.yaml".into());
    let cases = [
        ("reconcile.yml", "schedule", serde_json::json!({})),
        ("review-gate.yml", "pull_request_review", review_event(1)),
        ("plan-preview.yml", "pull_request", pull_request_event(1)),
    ];
    for (workflow, event, payload) in cases {
        let inputs = example_inputs(workflow, &ctx);
        let pairs: Vec<(&str, &str)> = inputs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let recorded = Sim::new(&pairs).event(event, payload.clone()).run();
        assert!(recorded.ok(), "{workflow}: {recorded:#?}");
        let argv = recorded.argv().join(" ");
        assert!(!argv.contains("--clusters sim"), "{workflow}: {argv}");
        if argv.starts_with("reconcile") {
            assert!(argv.contains("--clusters kube"), "{workflow}: {argv}");
        }

        let mut sim = Sim::new(&pairs).event(event, payload).binary(Binary::Real);
        sim.env.push(("GITHUB_API_URL".into(), gh.base_url()));
        sim.env.push(("GITHUB_SERVER_URL".into(), gh.base_url()));
        sim.env
            .push(("FLEETWAVE_NOW".into(), "2026-11-23T08:00:00Z".into()));
        sim.env.push(("NO_COLOR".into(), "1".into()));
        for (p, b) in &files {
            let path = sim.workspace().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b).unwrap();
        }
        let o = sim.run();
        assert!(matches!(o.code, 0 | 1), "{workflow} (argv {argv}): {o:#?}");
    }
    assert_eq!(gh.pulls().len(), 1, "the first step's pull request");
    let previews = gh.comments(1);
    assert!(
        previews
            .iter()
            .any(|c| c["body"].as_str().unwrap_or("").contains("plan preview")),
        "{previews:#?}"
    );
}
