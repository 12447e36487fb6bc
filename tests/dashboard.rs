//! The web dashboard in a real browser: `fleetwave serve --clusters sim` on the example fleet
//! (plus a cluster named with `<script>`), loaded by headless Debian Chromium. Checks the wave
//! and cluster counts against the planner, one cluster's detail page and that the hostile name
//! is text, and saves a screenshot to target/dashboard.png.
//!
//! Needs `chromium` (Debian's package; `.ci/run` installs it). Without it the test says why
//! it skipped and passes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EVIL: &str = "<script>alert(1)";
const PLAN: &str = "plans/demo.yaml";

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Run headless Chromium with `args` and a fresh profile; its stdout, or why it failed.
fn browse(bin: &Path, args: &[&str]) -> Result<String, String> {
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // .ci/run repeats the suite under libfaketime; the browser needs no fake clock.
        .env_remove("LD_PRELOAD")
        .env_remove("FAKETIME")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut out = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let text = reader.join().unwrap_or_default();
            return if status.success() {
                Ok(text)
            } else {
                Err(format!("chromium exited with {status}"))
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("chromium took longer than 90 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The example fleet with the k8s-minor plan and one more canary cluster whose name is HTML.
fn fleet_files() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = fleetwave::demo::example_files("k8s-minor").unwrap();
    let canary = Path::new("infrastructure/clusters/dev-canary-01/cluster.yaml");
    let text = String::from_utf8(files[canary].clone()).unwrap();
    let evil = text.replace("dev-canary-01", &format!("\"{EVIL}\""));
    files.insert(
        PathBuf::from(format!("infrastructure/clusters/{EVIL}/cluster.yaml")),
        evil.into_bytes(),
    );
    files
}

struct Serve {
    child: Child,
    ui: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, remote: &Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(["serve", "--clusters", "sim", "--listen", "127.0.0.1:0"])
        .args(["--ui-listen", "127.0.0.1:0", "--interval", "3600"])
        .args(["--remote", remote.to_str().unwrap(), "--plan", PLAN])
        .args(["--cache", dir.join("cache.git").to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ui = loop {
        let line = lines
            .next()
            .expect("serve printed its dashboard address")
            .unwrap();
        if let Some(a) = line.strip_prefix("fleetwave serve: dashboard on ") {
            break a.trim_end_matches('/').to_string();
        }
    };
    // Keep reading stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Serve { child, ui }
}

/// The text of the first element whose opening tag contains `class="{class}"`.
fn text_of<'a>(dom: &'a str, class: &str) -> Option<&'a str> {
    let at = dom.find(&format!("class=\"{class}\""))?;
    let rest = &dom[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    Some(rest[start..end].trim())
}

#[test]
fn chromium_shows_the_grid_counts_a_cluster_and_hostile_names_as_text() {
    let Some(bin) = chromium() else {
        eprintln!(
            "skipped: no chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = fleet_files();
    // What the planner makes of this fleet: the numbers the page must show.
    let text = String::from_utf8(files[Path::new(PLAN)].clone()).unwrap();
    let planned = fleetwave::planner::prepare_in(
        &fleetwave::tree::MemTree::new(files.clone()),
        Path::new(PLAN),
        text,
    )
    .unwrap();
    let waves = planned.waves.len();
    let clusters: usize = planned.waves.iter().map(|w| w.clusters.len()).sum();
    assert!(
        planned
            .waves
            .iter()
            .any(|w| w.clusters.iter().any(|c| c == EVIL)),
        "the hostile cluster must be in a wave for this test to mean anything"
    );
    // A day ago: the simulated Flux has applied the fleet's first commit by now.
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    let remote = fleetwave::demo::seed_remote_files(dir.path(), &files, start).unwrap();
    let s = serve(dir.path(), &remote);

    // Wait for the grid: the first tick's snapshot.
    let url = format!("{}/", s.ui);
    let deadline = Instant::now() + Duration::from_secs(120);
    let dom = loop {
        match browse(&bin, &["--dump-dom", &url]) {
            Ok(dom) if dom.contains("class=\"grid\"") => break dom,
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(250))
            }
            other => panic!("no grid before the deadline: {other:?}"),
        }
    };
    assert_eq!(text_of(&dom, "waves"), Some(waves.to_string().as_str()));
    assert_eq!(
        text_of(&dom, "clusters"),
        Some(clusters.to_string().as_str())
    );
    assert_eq!(
        dom.matches("class=\"cell p-").count(),
        clusters,
        "one cell per cluster"
    );
    assert_eq!(dom.matches("class=\"wave-name\"").count(), waves);
    // The hostile name is text: escaped in the DOM, no script element anywhere.
    assert!(dom.contains("&lt;script&gt;alert(1)"), "{dom}");
    assert!(!dom.to_ascii_lowercase().contains("<script"), "{dom}");

    // One cluster's detail: its wave, the version Git pins, Flux as the simulation reports it.
    let plan = url_encode(&planned.plan.name);
    let detail_url = format!("{}/cluster?plan={plan}&name=dev-canary-01", s.ui);
    let detail = browse(&bin, &["--dump-dom", &detail_url]).unwrap();
    assert_eq!(text_of(&detail, "wave"), Some("canary"), "{detail}");
    assert!(
        detail.contains("kubernetes <code>v1.32.4</code>")
            || detail.contains("kubernetes <code>v1.33.5</code>"),
        "the version in Git: {detail}"
    );
    assert!(
        text_of(&detail, "flux-ready").is_some_and(|t| t.starts_with("True")),
        "the simulated Flux is Ready: {detail}"
    );
    assert!(
        text_of(&detail, "flux-revision").is_some_and(|t| t.len() >= 7),
        "{detail}"
    );

    // The hostile cluster's own page: its name as text there too.
    let evil_url = format!("{}/cluster?plan={plan}&name={}", s.ui, url_encode(EVIL));
    let evil = browse(&bin, &["--dump-dom", &evil_url]).unwrap();
    assert!(
        evil.contains("cluster <span class=\"name\">&lt;script&gt;alert(1)</span>"),
        "{evil}"
    );
    assert!(!evil.to_ascii_lowercase().contains("<script"), "{evil}");

    // The screenshot, for people (README's docs/dashboard.png is a copy of one).
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let png = target.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    browse(
        &bin,
        &[&shot, "--window-size=1280,1000", "--hide-scrollbars", &url],
    )
    .unwrap();
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 10_000, "a blank page? {} bytes", bytes.len());
    eprintln!("screenshot: {}", png.display());
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET `url` with a deadline on the whole answer; (status, body).
fn get(url: &str) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .ok()?;
        let r = client.get(url).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    })
}

fn spawn_serve(dir: &Path, remote: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(["serve", "--clusters", "sim", "--listen", "127.0.0.1:0"])
        .args(["--interval", "3600"])
        .args(["--remote", remote.to_str().unwrap(), "--plan", PLAN])
        .args(["--cache", dir.join("cache.git").to_str().unwrap()])
        .args(extra)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(a) = line.strip_prefix("fleetwave serve: listening on ") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, addr)
}

/// Without a browser: the dashboard shares `--listen` by default, answers with headers that
/// forbid scripts, and `--no-ui` removes it while the probes stay.
#[test]
fn the_dashboard_shares_the_listen_address_and_no_ui_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    let remote = fleetwave::demo::seed_remote_files(dir.path(), &fleet_files(), start).unwrap();

    let (child, addr) = spawn_serve(&dir.path().join("a"), &remote, &[]);
    let mut s = Serve {
        child,
        ui: format!("http://{addr}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        match get(&format!("{}/", s.ui)) {
            Some((200, body)) if body.contains("class=\"grid\"") => break body,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("no dashboard before the deadline: {other:?}"),
        }
    };
    assert!(page.contains("&lt;script&gt;alert(1)"));
    assert!(!page.contains("<script"));
    // A cluster the last tick did not see is a 404 page, its name escaped too.
    let (code, body) = get(&format!("{}/cluster?name=%3Cscript%3Enope", s.ui)).unwrap();
    assert_eq!(code, 404);
    assert!(body.contains("&lt;script&gt;nope") && !body.contains("<script"));
    assert_eq!(get(&format!("{}/healthz", s.ui)).unwrap().0, 200);
    let _ = s.child.kill();

    let (child, addr) = spawn_serve(&dir.path().join("b"), &remote, &["--no-ui"]);
    s = Serve {
        child,
        ui: format!("http://{addr}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&format!("{}/readyz", s.ui)).is_none_or(|(c, _)| c != 200) {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&format!("{}/", s.ui)).unwrap().0, 404, "--no-ui");
    assert_eq!(
        get(&format!("{}/cluster?name=dev-canary-01", s.ui))
            .unwrap()
            .0,
        404
    );
}

/// `status --output html` writes the same page as one file: every cluster's detail inside,
/// links within the file, no refresh, and a watch is refused.
#[test]
fn status_output_html_writes_one_static_page() {
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    let files = fleet_files();
    let remote = fleetwave::demo::seed_remote_files(dir.path(), &files, start).unwrap();
    let status = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args(["status", "--clusters", "sim", "--output", "html"])
            .args(["--remote", remote.to_str().unwrap(), "--plan", PLAN])
            .args(["--cache", dir.path().join("cache.git").to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = status(&[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("http-equiv=\"refresh\""));
    let cells = html.matches("class=\"cell p-").count();
    assert_eq!(
        cells, 10,
        "the plan's 10 clusters (9 of the example plan and the hostile one)"
    );
    assert_eq!(
        html.matches("<section class=\"cluster\" id=\"c-0-").count(),
        cells
    );
    assert!(html.contains("&lt;script&gt;alert(1)") && !html.contains("<script"));
    assert!(
        html.contains("Flux Ready"),
        "observed through the simulation"
    );
    let out = status(&["--watch", "1s"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
