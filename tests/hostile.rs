//! Hostile input, as an attacker or a careless colleague would try it, and fleetwave's answer
//! to each. Every test names the attack; its assertions are the answer.
//!
//! Elsewhere, because they need that file's machinery: quadratic YAML (100,000 keys) in
//! `yaml`'s unit tests and `benches/yaml_keys.rs`; slow and idle clients, the connection
//! limit, webhook replays and JSON logs of `serve` in `tests/serve.rs`; escape sequences
//! reported by a cluster in `tests/kube_rollout.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fleetwave::disk::DiskTree;
use fleetwave::tree::{FileTree, MemTree};

const PLAN: &str = "apiVersion: fleet.opencenter.cloud/v1alpha1
kind: FleetUpgradePlan
metadata:
  name: hostile
spec:
  targetVersion: v1.33.5
  waves:
    - name: canary
      clusterSelector:
        matchLabels: {upgrade-wave: canary}
";

fn cluster_yaml(name: &str) -> String {
    format!(
        "apiVersion: cluster.x-k8s.io/v1beta1\nkind: Cluster\nmetadata:\n  name: {name}\n  labels: {{upgrade-wave: canary}}\nspec:\n  topology:\n    version: v1.32.4\n"
    )
}

/// A fleet repository with one canary cluster per name, and the plan beside it (outside).
struct Fleet {
    dir: tempfile::TempDir,
}

impl Fleet {
    fn new(clusters: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("repo")).unwrap();
        std::fs::write(dir.path().join("plan.yaml"), PLAN).unwrap();
        let f = Fleet { dir };
        for c in clusters {
            f.write(&format!("clusters/{c}/cluster.yaml"), &cluster_yaml(c));
        }
        f
    }
    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
    /// A place outside the repository.
    fn outside(&self) -> PathBuf {
        let p = self.dir.path().join("outside");
        std::fs::create_dir_all(&p).unwrap();
        p
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.repo().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.repo().join(rel)).unwrap()
    }
    fn args<'a>(&'a self, cmd: &'a str, plan: &'a Path) -> Vec<String> {
        let mut a = vec![
            cmd.to_string(),
            "--repo".into(),
            self.repo().display().to_string(),
            "--plan".into(),
            plan.display().to_string(),
        ];
        if cmd == "apply" {
            a.extend(["--wave".to_string(), "canary".to_string()]);
        }
        a
    }
    fn run(&self, cmd: &str) -> Output {
        let plan = self.dir.path().join("plan.yaml");
        fleetwave(&self.args(cmd, &plan))
    }
}

/// Run the binary; fail (and kill it) if it has not finished within a minute: the attacks
/// here include trying to make fleetwave hang.
fn fleetwave(args: &[String]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetwave"));
    cmd.args(args);
    run_with_deadline(cmd)
}

fn run_with_deadline(mut cmd: Command) -> Output {
    let mut child = cmd
        .env("FLEETWAVE_NOW", "2026-11-21T12:00:00Z")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fleetwave");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fleetwave hung: {:?}", child.wait_with_output().unwrap());
        }
        std::thread::yield_now();
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// ---- 1. Writes and reads outside the repository; hangs on special files ----

#[test]
fn a_cluster_folder_symlinked_outside_the_repository_is_refused_and_nothing_is_written() {
    let f = Fleet::new(&["c1"]);
    let outside = f.outside();
    std::fs::write(outside.join("cluster.yaml"), cluster_yaml("evil")).unwrap();
    std::os::unix::fs::symlink(&outside, f.repo().join("clusters/evil")).unwrap();
    for cmd in ["plan", "apply"] {
        let o = f.run(cmd);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{cmd}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let all = stdout(&o) + &stderr(&o);
        assert!(all.contains("clusters/evil: symlink to"), "{all}");
        assert!(all.contains("leaves the repository"), "{all}");
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("cluster.yaml")).unwrap(),
        cluster_yaml("evil")
    );
    assert_eq!(f.read("clusters/c1/cluster.yaml"), cluster_yaml("c1"));
}

#[test]
fn a_symlink_to_dev_zero_is_refused_without_reading_it() {
    let f = Fleet::new(&["c1"]);
    std::os::unix::fs::symlink("/dev/zero", f.repo().join("clusters/c1/zero.yaml")).unwrap();
    let o = f.run("plan");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains("clusters/c1/zero.yaml: symlink to /dev/zero leaves the repository")
    );
}

#[test]
fn a_fifo_is_refused_without_opening_it() {
    let f = Fleet::new(&["c1"]);
    let fifo = f.repo().join("clusters/c1/pipe.yaml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    // Nothing ever writes to the FIFO: opening it for reading would block forever.
    let o = f.run("plan");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(
            "clusters/c1/pipe.yaml: a FIFO, not a regular file; refused without opening it"
        )
    );
    // The plan file itself gets the same treatment.
    let plan = f.dir.path().join("plan-fifo.yaml");
    let c = std::ffi::CString::new(plan.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let _ = std::fs::remove_file(&fifo);
    let o = fleetwave(&f.args("plan", &plan));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("plan-fifo.yaml: cannot read the plan: not a regular file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_oversized_file_is_refused_and_named() {
    let f = Fleet::new(&["c1"]);
    let big = format!("# {}\n", "x".repeat(17 * 1024 * 1024));
    f.write("clusters/c1/big.yaml", &big);
    let o = f.run("plan");
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("clusters/c1/big.yaml: cannot read: larger than 16 MiB"),
        "{e}"
    );
}

#[test]
fn a_fleetwave_yaml_symlinked_outside_is_refused() {
    let f = Fleet::new(&["c1"]);
    let outside = f.outside().join("config.yaml");
    std::fs::write(&outside, "clusters:\n  paths: [clusters/{cluster}]\n").unwrap();
    std::os::unix::fs::symlink(&outside, f.repo().join("fleetwave.yaml")).unwrap();
    let o = f.run("plan");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("fleetwave.yaml: cannot read: a symlink; refused"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn non_utf8_names_and_binary_files_are_reported_not_skipped_silently() {
    use std::os::unix::ffi::OsStrExt;
    let f = Fleet::new(&["c1"]);
    let name = std::ffi::OsStr::from_bytes(b"bad-\xff.yaml");
    std::fs::write(f.repo().join("clusters/c1").join(name), cluster_yaml("c1")).unwrap();
    std::fs::write(
        f.repo().join("clusters/c1/blob.yaml"),
        b"version: v1.32.4\0\x01",
    )
    .unwrap();
    let o = f.run("plan");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("clusters/c1/bad-\u{fffd}.yaml: the file name is not UTF-8"),
        "{out}"
    );
    assert!(
        out.contains("clusters/c1/blob.yaml: a binary file"),
        "{out}"
    );
}

/// A commit of `files` (and `links`: path → target) in a fresh non-bare repository.
fn commit_tree(dir: &Path, files: &[(&str, String)], links: &[(&str, &str)]) -> git2::Oid {
    let repo = git2::Repository::init(dir).unwrap();
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    for (rel, target) in links {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(1, 0)).unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "fleet", &tree, &[])
        .unwrap()
}

/// Commit `head` of the repository at `work`, fetched into a cache under `dir` and read as
/// a rollout reads its base.
fn git_tree(dir: &Path, work: &Path, head: git2::Oid) -> MemTree {
    let git = fleetwave::git::GitRepo::open(
        &dir.join("cache.git"),
        work.to_str().unwrap(),
        fleetwave::git::Auth::None,
    )
    .unwrap();
    git.fetch().unwrap();
    git.tree(&head.to_string()).unwrap()
}

#[test]
fn preview_and_rollout_apply_the_same_symlink_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("fleet");
    let head = commit_tree(
        &work,
        &[
            ("clusters/c1/cluster.yaml", cluster_yaml("c1")),
            ("plans/p.yaml", PLAN.to_string()),
        ],
        &[
            ("clusters/evil", "/etc"),
            ("clusters/c1/alias.yaml", "cluster.yaml"),
        ],
    );
    let mem = git_tree(tmp.path(), &work, head);
    let disk = DiskTree::new(work.clone());
    let findings = |t: &dyn FileTree| {
        let p = fleetwave::planner::prepare_in(t, Path::new("plans/p.yaml"), PLAN.into()).unwrap();
        p.findings
            .iter()
            .map(|f| (f.severity, f.message.clone()))
            .collect::<Vec<_>>()
    };
    let (on_disk, in_git) = (findings(&disk), findings(&mem));
    assert_eq!(on_disk, in_git);
    let text = format!("{on_disk:?}");
    assert!(
        text.contains("clusters/evil: symlink to /etc leaves the repository"),
        "{text}"
    );
    assert!(
        text.contains("clusters/c1/alias.yaml: symlink to cluster.yaml is not followed"),
        "{text}"
    );
    assert_eq!(
        disk.kind(Path::new("clusters/evil")),
        mem.kind(Path::new("clusters/evil"))
    );
}

/// A tree read from Git keeps blob ids and reads each file when asked for; an oversized blob
/// is refused from its size alone, with the words a file on disk gets.
#[test]
fn preview_and_rollout_apply_the_same_size_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("fleet");
    let big = format!("# {}\n", "x".repeat(17 * 1024 * 1024));
    let head = commit_tree(
        &work,
        &[
            ("clusters/c1/cluster.yaml", cluster_yaml("c1")),
            ("clusters/c1/big.yaml", big),
            ("plans/p.yaml", PLAN.to_string()),
        ],
        &[],
    );
    let mem = git_tree(tmp.path(), &work, head);
    let disk = DiskTree::new(work.clone());
    for path in ["clusters/c1/big.yaml", "clusters/c1/cluster.yaml"] {
        let path = Path::new(path);
        let (m, d) = (mem.read(path), disk.read(path));
        match (m, d) {
            (Ok(m), Ok(d)) => assert_eq!(m, d),
            (Err(m), Err(d)) => assert_eq!(m.to_string(), d.to_string()),
            (m, d) => panic!("{}: in Git {m:?}, on disk {d:?}", path.display()),
        }
    }
    assert!(
        mem.read(Path::new("clusters/c1/big.yaml"))
            .unwrap_err()
            .to_string()
            .contains("larger than 16 MiB"),
    );
    assert_eq!(
        mem.read(Path::new("clusters/c1/cluster.yaml")).unwrap(),
        cluster_yaml("c1").into_bytes()
    );
}

/// Listing and probing folders lets `DiskTree` skip the stat of folders it has seen plain;
/// a symlinked folder met the same way must still refuse every path through it, at any depth.
#[test]
fn folders_seen_plain_never_vouch_for_a_symlinked_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("deep")).unwrap();
    std::fs::write(outside.join("deep/secret.yaml"), "secret: 1\n").unwrap();
    std::fs::create_dir_all(root.join("clusters/c1/sub")).unwrap();
    std::fs::write(root.join("clusters/c1/sub/ok.yaml"), "ok: 1\n").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("clusters/c1/link")).unwrap();
    let tree = DiskTree::new(root);
    // Walk it the way discovery does: probe, list, read.
    assert_eq!(
        tree.kind(Path::new("clusters/c1")),
        Some(fleetwave::tree::EntryKind::Dir)
    );
    let listed = tree.list(Path::new("clusters/c1")).unwrap();
    let kinds: Vec<(&str, bool)> = listed
        .iter()
        .map(|(n, k)| (n.as_str(), k.is_dir()))
        .collect();
    assert_eq!(kinds, [("link", false), ("sub", true)]);
    assert!(tree.list(Path::new("clusters/c1/sub")).is_some());
    assert_eq!(
        tree.read(Path::new("clusters/c1/sub/ok.yaml")).unwrap(),
        b"ok: 1\n"
    );
    for through in ["clusters/c1/link/deep/secret.yaml", "clusters/c1/link/deep"] {
        assert!(tree.read(Path::new(through)).is_err(), "{through} was read");
        assert!(
            !tree.kind(Path::new(through)).is_some_and(|k| k.is_dir()),
            "{through} was taken for a folder"
        );
        assert!(
            tree.list(Path::new(through)).is_none(),
            "{through} was listed"
        );
    }
    assert!(tree.list(Path::new("clusters/c1/link")).is_none());
}

// ---- 2. Half-written results and predictable temporary files ----

#[test]
fn a_failing_second_write_leaves_the_first_file_unchanged() {
    let f = Fleet::new(&["c1", "c2"]);
    // c2's file is larger than the file size limit the process is given below, so writing
    // it fails (EFBIG, even for root) after c1's new content was written.
    let padded = format!("{}# {}\n", cluster_yaml("c2"), "x".repeat(200 * 1024));
    f.write("clusters/c2/cluster.yaml", &padded);
    let plan = f.dir.path().join("plan.yaml");
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_fleetwave"))
        .args(f.args("apply", &plan));
    let o = run_with_deadline(cmd);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("clusters/c2/cluster.yaml: cannot write"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("nothing was written"));
    assert_eq!(f.read("clusters/c1/cluster.yaml"), cluster_yaml("c1"));
    assert_eq!(f.read("clusters/c2/cluster.yaml"), padded);
    let left: Vec<_> = walk(&f.repo())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_committed_symlink_named_like_the_old_temporary_file_is_not_written_through() {
    let f = Fleet::new(&["c1"]);
    f.write("victim.txt", "precious\n");
    std::os::unix::fs::symlink(
        "../../victim.txt",
        f.repo().join("clusters/c1/cluster.yaml.fleetwave-tmp"),
    )
    .unwrap();
    let o = f.run("apply");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(f.read("victim.txt"), "precious\n");
    let meta = std::fs::symlink_metadata(f.repo().join("clusters/c1/cluster.yaml")).unwrap();
    assert!(meta.is_file());
    assert!(
        f.read("clusters/c1/cluster.yaml")
            .contains("version: v1.33.5")
    );
}

#[test]
fn two_applies_on_one_tree_do_not_interleave() {
    let f = Fleet::new(&["c1"]);
    let held = fleetwave::disk::lock_tree(&f.repo()).unwrap();
    let o = f.run("apply");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("another fleetwave apply is writing this tree"),
        "{}",
        stderr(&o)
    );
    assert_eq!(f.read("clusters/c1/cluster.yaml"), cluster_yaml("c1"));
    drop(held);
    let o = f.run("apply");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        f.read("clusters/c1/cluster.yaml")
            .contains("version: v1.33.5")
    );
}

// ---- 3. Credentials in the remote URL ----

/// A Git HTTP server on 127.0.0.1 that asks for Basic credentials and reports the
/// Authorization header it was sent (then answers 404).
fn auth_recording_server() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req).into_owned();
            let auth = text
                .lines()
                .find_map(|l| l.strip_prefix("Authorization: "))
                .map(str::to_string);
            let reply: &[u8] = match auth {
                None => b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"fleet\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                Some(a) => {
                    let _ = tx.send(a);
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                }
            };
            let _ = conn.write_all(reply);
        }
    });
    (port, rx)
}

#[test]
fn a_token_in_the_remote_url_is_never_persisted_and_goes_through_the_credential_callback() {
    let (port, auth) = auth_recording_server();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache.git");
    let url = format!("http://user:s3cr3t-TOKEN-9f2@127.0.0.1:{port}/fleet.git");
    let args: Vec<String> = [
        "reconcile",
        "--once",
        "--clusters",
        "sim",
        "--remote",
        &url,
        "--plan",
        "plans/p.yaml",
        "--cache",
        cache.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let o = fleetwave(&args);
    // The fake server has no repository: the fetch fails, after authenticating.
    assert_eq!(o.status.code(), Some(2));
    let all = stdout(&o) + &stderr(&o);
    assert!(!all.contains("s3cr3t-TOKEN-9f2"), "{all}");
    let config = std::fs::read_to_string(cache.join("config")).unwrap();
    assert!(!config.contains("s3cr3t"), "{config}");
    assert!(
        config.contains(&format!("url = http://127.0.0.1:{port}/fleet.git")),
        "{config}"
    );
    // base64("user:s3cr3t-TOKEN-9f2"): the secret reached Git through the callback.
    let sent = auth
        .recv_timeout(Duration::from_secs(30))
        .expect("credentials sent");
    assert_eq!(sent, "Basic dXNlcjpzM2NyM3QtVE9LRU4tOWYy");
}

// ---- 7. Names and values that would fail later are refused at plan time ----

fn load(text: &str) -> Result<fleetwave::plan::Plan, fleetwave::diag::Diags> {
    fleetwave::plan::load(Path::new("plan.yaml"), text.to_string()).map(|(p, _)| p)
}

fn refused(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(d) => d.to_string(),
    }
}

#[test]
fn names_git_refuses_in_a_branch_and_reserved_names_are_refused_with_their_position() {
    for bad in ["a..b", "x.lock", "trailing.", "state"] {
        let e = refused(&PLAN.replace("name: hostile", &format!("name: {bad}")));
        assert!(
            e.starts_with("error: plan.yaml:4:9: metadata.name"),
            "{bad}: {e}"
        );
        if bad != "state" {
            let e = refused(&PLAN.replace("name: canary", &format!("name: {bad}")));
            assert!(
                e.starts_with("error: plan.yaml:8:13: wave name"),
                "{bad}: {e}"
            );
        }
    }
    assert!(refused(&PLAN.replace("name: hostile", "name: state")).contains("fleetwave/state"));
    // Through the binary: exit 2, nothing written.
    let f = Fleet::new(&["c1"]);
    std::fs::write(
        f.dir.path().join("plan.yaml"),
        PLAN.replace("name: canary", "name: x.lock"),
    )
    .unwrap();
    let o = f.run("apply");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(f.read("clusters/c1/cluster.yaml"), cluster_yaml("c1"));
}

#[test]
fn a_target_with_build_metadata_is_refused_not_truncated() {
    let e = refused(&PLAN.replace("v1.33.5", "v1.33.5+evil.1"));
    assert!(e.contains("plan.yaml:6:18"), "{e}");
    assert!(e.contains("\"+evil.1\""), "{e}");
    let e = refused(&PLAN.replace(
        "targetVersion: v1.33.5",
        "targetVersion: v1.34.2\n  intermediateVersions: [v1.33.5-gke.100]",
    ));
    assert!(e.contains("\"-gke.100\""), "{e}");
    // A pre-release is a version of its own (semver), not a suffix to drop: accepted.
    let rc = PLAN.replace("v1.33.5", "v1.33.5-rc.1");
    assert!(load(&rc).is_ok(), "a pre-release target is refused");
}

#[test]
fn tags_templates_gate_urls_and_statuses_are_checked_at_plan_time() {
    let with = |extra: &str| format!("{PLAN}{extra}");
    let e = refused(&PLAN.replace(
        "  waves:",
        "  gitopsBase: {url: https://github.com/o/base.git, tag: \"v1 ..bad\"}\n  waves:",
    ));
    assert!(
        e.contains("gitopsBase.tag \"v1 ..bad\" is not a tag name"),
        "{e}"
    );
    let e = refused(&PLAN.replace("  waves:", "  templates: {a: Not_A_Name}\n  waves:"));
    assert!(
        e.contains("template \"Not_A_Name\" is not a Kubernetes object name"),
        "{e}"
    );
    let e = refused(&with(
        "      gates:\n        - {type: http, url: \"ftp://x/y\"}\n",
    ));
    assert!(
        e.contains("plan.yaml:12:29: gate url \"ftp://x/y\" is not an http(s) URL"),
        "{e}"
    );
    let e = refused(&with(
        "      gates:\n        - {type: http, url: \"https://x/{cluster}\", expectStatus: 999}\n",
    ));
    assert!(e.contains("expectStatus 999 is not an HTTP status"), "{e}");
    assert!(!e.contains("gate url"), "{e}");
}

#[test]
fn a_huge_value_is_not_echoed_whole() {
    let huge = "9".repeat(20 * 1024 * 1024);
    let e = refused(&PLAN.replace("v1.33.5", &huge));
    assert!(e.len() < 2000, "{} bytes of message", e.len());
    assert!(e.contains(&format!("… ({} bytes)", huge.len())), "{e}");
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let p = load(&format!("\u{feff}{PLAN}")).unwrap();
    assert_eq!(p.name, "hostile");
}

#[test]
fn state_fields_from_a_newer_fleetwave_survive_a_rewrite() {
    let mut st = fleetwave::state::PlanState::new("p", "h");
    let text = format!("{}futureField:\n  keep: me\n", st.to_yaml());
    st = fleetwave::state::PlanState::from_yaml(&text).unwrap();
    st.tick += 1;
    let again = st.to_yaml();
    assert!(again.contains("futureField:\n  keep: me"), "{again}");
}

// ---- 8. Terminal injection and litter in other people's trees ----

#[test]
fn ansi_escapes_in_cluster_folder_names_never_reach_the_terminal() {
    let f = Fleet::new(&["c1", "evil\u{1b}[2J\u{1b}]0;owned\u{7}"]);
    let o = f.run("plan");
    let all = stdout(&o) + &stderr(&o);
    assert!(!all.contains('\u{1b}') && !all.contains('\u{7}'), "{all:?}");
    assert!(all.contains("holds control characters; refused"), "{all}");
    assert_eq!(o.status.code(), Some(2));
    let o = f.run("apply");
    assert_eq!(o.status.code(), Some(2));
    assert!(!(stdout(&o) + &stderr(&o)).contains('\u{1b}'));
}

#[test]
fn escape_writes_control_characters_visibly() {
    let e = fleetwave::diag::escape("a\u{1b}[31mred\u{7}\nnext\tcol");
    assert_eq!(e, "a\\u{1b}[31mred\\u{7}\nnext\tcol");
}

#[test]
fn a_push_to_a_non_bare_remote_leaves_no_lock_file_in_its_work_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("fleet");
    let head = commit_tree(&work, &[("README.md", "fleet\n".to_string())], &[]);
    let git = fleetwave::git::GitRepo::open(
        &tmp.path().join("cache.git"),
        work.to_str().unwrap(),
        fleetwave::git::Auth::None,
    )
    .unwrap();
    git.fetch().unwrap();
    // libgit2 refuses local pushes into a work tree; the lock is taken before it says so.
    let _ = git.push("side", &head.to_string(), None);
    let litter: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("lock"))
        .collect();
    assert!(litter.is_empty(), "{litter:?}");
}
