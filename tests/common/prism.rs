#![allow(dead_code)]
//! Stoplight Prism as a validating proxy in front of a test's fake GitHub.
//!
//! [`Prism::start`] trims GitHub's official OpenAPI description (`@octokit/openapi`, installed
//! with `npm ci` in `tools/contract/`) to the endpoints fleetwave calls, using
//! `tools/contract/trim.mjs`, and runs `prism proxy --errors SPEC UPSTREAM` on a free port.
//! Prism then checks every exchange both ways:
//! - a request that breaks the description gets `422 application/problem+json` from Prism and is
//!   never forwarded;
//! - an upstream response that breaks its schema becomes a `500 application/problem+json`, with
//!   the details as JSON in the `sl-violations` header;
//! - a status code the description does not declare is only a warning: the upstream's response
//!   passes through, with a `"severity":"Warning"` entry in `sl-violations`.
//!
//! When node or the npm packages are missing, `start` returns `Err(reason)` so a developer's
//! `cargo test` can skip the contract test; with the environment variable `CI` set it panics
//! instead, so CI never skips it silently.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Prism may take to start listening (it takes 2-3 s on the trimmed description).
const START_DEADLINE: Duration = Duration::from_secs(60);
/// Port clashes (another process taking the port between our probe and Prism's bind) are
/// retried this many times.
const START_TRIES: usize = 3;

pub struct Prism {
    /// `http://127.0.0.1:PORT`, to be used as the GitHub API base URL.
    pub url: String,
    child: Child,
    spec_dir: tempfile::TempDir,
    log: PathBuf,
}

/// Why the contract test cannot run here.
#[derive(Debug)]
pub enum PrismUnavailable {
    Skip(String),
}

fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/contract")
}

impl std::fmt::Display for PrismUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let PrismUnavailable::Skip(reason) = self;
        f.write_str(reason)
    }
}

impl PrismUnavailable {
    /// `Err(reason)` outside CI; in CI a panic, because the contract test must not be skipped
    /// there.
    fn into_result(self) -> Result<Prism, String> {
        if std::env::var_os("CI").is_some() {
            panic!("the contract test cannot run in CI: {self}");
        }
        Err(self.to_string())
    }
}

fn unavailable(reason: String) -> Result<Prism, String> {
    PrismUnavailable::Skip(reason).into_result()
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Prism {
    /// Trim the spec into a temporary directory, start
    /// `prism proxy -p PORT --errors SPEC UPSTREAM` from `tools/contract/node_modules/.bin`,
    /// wait until the port accepts TCP connections, and return it.
    ///
    /// `Err(reason)` when node or the installed packages are missing; when the environment
    /// variable `CI` is set, a panic instead. A Prism that fails to start once the tools are
    /// there is a panic too.
    pub fn start(upstream: &str) -> Result<Prism, String> {
        let dir = contract_dir();
        let prism_bin = dir.join("node_modules/.bin/prism");
        let source = dir.join("node_modules/@octokit/openapi/generated/api.github.com.json");
        match Command::new("node").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => return unavailable(format!("`node --version` failed: {}", out.status)),
            Err(e) => return unavailable(format!("node is not installed: {e}")),
        }
        for needed in [&prism_bin, &source] {
            if !needed.exists() {
                return unavailable(format!(
                    "{} is missing: run `npm ci` in {}",
                    needed.display(),
                    dir.display()
                ));
            }
        }

        let spec_dir = tempfile::Builder::new()
            .prefix("fleetwave-prism-")
            .tempdir()
            .expect("temporary directory for the trimmed spec");
        let spec = spec_dir.path().join("github.json");
        let trim = Command::new("node")
            .arg(dir.join("trim.mjs"))
            .arg(&source)
            .arg(&spec)
            .output()
            .expect("run node tools/contract/trim.mjs");
        assert!(
            trim.status.success(),
            "trim.mjs failed ({}):\n{}",
            trim.status,
            String::from_utf8_lossy(&trim.stderr)
        );

        let log = spec_dir.path().join("prism.log");
        let mut last_failure = String::new();
        for _ in 0..START_TRIES {
            let port = free_port().expect("bind 127.0.0.1:0");
            let log_file = File::create(&log).expect("create prism.log");
            let mut child = Command::new(&prism_bin)
                .args([
                    "proxy",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "--errors",
                ])
                .arg(&spec)
                .arg(upstream)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone the log file handle"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", prism_bin.display()));
            match wait_listening(&mut child, port) {
                Ok(()) => {
                    return Ok(Prism {
                        url: format!("http://127.0.0.1:{port}"),
                        child,
                        spec_dir,
                        log,
                    });
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_failure = format!("{why}; Prism's log:\n{}", tail(&log, 40));
                    // Only a lost race for the port is worth another try.
                    if !last_failure.contains("EADDRINUSE") {
                        break;
                    }
                }
            }
        }
        panic!("Prism did not start: {last_failure}");
    }

    /// Lines of Prism's log that report request/response violations (for failure messages).
    ///
    /// With `--errors` Prism logs one `Request terminated with error: …#VIOLATIONS` or
    /// `…#UNPROCESSABLE_ENTITY` line per rejected exchange (the details are in the response's
    /// `sl-violations` header or problem+json body), and a `Violation: …` line per warning, such
    /// as an undeclared status code. The line is written just after the response is sent, so it
    /// may lag the response by a few milliseconds.
    pub fn violations(&self) -> Vec<String> {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text.lines()
            .filter(|l| l.contains("Violation") || l.contains("Request terminated with error"))
            .map(str::to_owned)
            .collect()
    }

    /// Prism's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the trimmed description is, for a test that wants to read it.
    pub fn spec_path(&self) -> PathBuf {
        self.spec_dir.path().join("github.json")
    }
}

/// Poll until `port` accepts TCP connections, Prism exits, or [`START_DEADLINE`] passes.
fn wait_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("Prism exited with {status} before listening"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "Prism is not listening on {addr} after {START_DEADLINE:?}"
            ));
        }
        // Poll interval: a refused connection returns at once.
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
