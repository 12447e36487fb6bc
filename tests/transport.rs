//! Git transports as users reach GitHub and self-hosted servers: HTTPS behind a private CA,
//! and SSH with a deploy key and a known host key. Every earlier test used a local path or
//! plain `http://`, so a binary built without TLS or SSH support passed them all.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use common::fake_github::FakeGitHub;
use tokio_rustls::rustls;

const TOKEN: &str = "ghs_transport_token";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0)
        .single()
        .unwrap()
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// A test that cannot run here says why; under CI a missing tool is a failure.
fn skip(reason: &str) {
    assert!(!in_ci(), "cannot run in CI: {reason}");
    println!("skipped: {reason}");
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", text(&out)))
    }
}

/// One reconcile tick against `remote`: it fetches the fleet and pushes a step branch and the
/// state branch, so both directions of the transport are used.
fn tick(remote: &str, dir: &Path, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetwave"));
    cmd.args([
        "reconcile",
        "--once",
        "--clusters",
        "sim",
        "--remote",
        remote,
    ])
    .args(["--plan", "plans/demo.yaml", "--now", &start().to_rfc3339()])
    .args(["--cache", dir.join("cache.git").to_str().unwrap()])
    .args(extra)
    .env_remove("GIT_SSL_CAINFO")
    .env_remove("SSL_CERT_FILE")
    .env_remove("GITHUB_TOKEN")
    .env_remove("FLEETWAVE_GIT_TOKEN")
    .env_remove("SSH_AUTH_SOCK");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn branches(bare: &Path) -> Vec<String> {
    let repo = git2::Repository::open_bare(bare).unwrap();
    let names = repo.branches(Some(git2::BranchType::Local)).unwrap();
    names
        .filter_map(|b| b.ok()?.0.name().ok()?.map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// HTTPS: a TLS terminator, its certificate from a private CA, before the fake's http-backend
// ---------------------------------------------------------------------------------------------

/// A private CA and a server certificate it signed for 127.0.0.1 and localhost, made with
/// Debian's `openssl`: (CA certificate, server certificate, server key).
fn private_ca(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (cert, key, csr) = (
        dir.join("server.pem"),
        dir.join("key.pem"),
        dir.join("server.csr"),
    );
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .map_err(|e| e.to_string())?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-days",
            "3650",
            "-subj",
            "/CN=fleetwave test CA",
        ])
        .args(ec)
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca))?;
    run(Command::new("openssl")
        .args(["req", "-new", "-subj", "/CN=localhost"])
        .args(ec)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr))?;
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "3650", "-set_serial", "2"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert))?;
    Ok((ca, cert, key))
}

struct TlsProxy {
    port: u16,
    _rt: tokio::runtime::Runtime,
}

/// Terminate TLS on a free port and pass the bytes to `upstream` (host:port).
fn tls_proxy(cert: &Path, key: &Path, upstream: String) -> TlsProxy {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_file(cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake: nothing to pass on.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    TlsProxy { port, _rt: rt }
}

#[test]
fn https_remote_behind_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = match private_ca(dir.path()) {
        Ok(x) => x,
        Err(e) => return skip(&format!("openssl could not make a certificate: {e}")),
    };
    let gh = FakeGitHub::start(TOKEN);
    gh.set_clock(start());
    let files = fleetwave::demo::example_files("k8s-minor").unwrap();
    gh.create_repo("acme", "fleet", &files, start());
    let upstream = gh.base_url().trim_start_matches("http://").to_string();
    let proxy = tls_proxy(&cert, &key, upstream);
    let remote = format!("https://127.0.0.1:{}/acme/fleet.git", proxy.port);
    let token = [("FLEETWAVE_GIT_TOKEN", TOKEN)];

    // Without the CA the server is not trusted, and fleetwave says so (exit 2).
    let out = tick(&remote, dir.path(), &token, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).to_lowercase().contains("certificate"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains(TOKEN),
        "the token leaked: {}",
        text(&out)
    );

    // Pushes that were fleetwave's own (not libgit2's), answered 200.
    let own_pushes = || {
        gh.git_calls()
            .into_iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/git-receive-pack"))
            .filter(|c| c.agent.contains("fleetwave/") && c.status == 200)
            .count()
    };
    // Trusted through SSL_CERT_FILE (OpenSSL's variable) or GIT_SSL_CAINFO (git's).
    for var in ["SSL_CERT_FILE", "GIT_SSL_CAINFO"] {
        let d = tempfile::tempdir().unwrap();
        let env = [token[0], (var, ca.to_str().unwrap())];
        let before = own_pushes();
        let out = tick(&remote, d.path(), &env, &[]);
        // The second tick goes on from the first one's state: it acts again (merge or push).
        assert_eq!(out.status.code(), Some(0), "{var}: {}", text(&out));
        assert!(text(&out).contains("did: "), "{var}: {}", text(&out));
        // Its pushes were fleetwave's own, which trusts the same CAs as libgit2.
        assert!(own_pushes() > before, "{var}: {:?}", gh.git_calls());
    }
    let pushed = branches(&gh.repo_path("acme", "fleet"));
    assert!(
        pushed.iter().any(|b| b == "fleetwave/state"),
        "the state branch reached the server over HTTPS: {pushed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// SSH: Debian's sshd on 127.0.0.1 with a host key in known_hosts and a deploy key
// ---------------------------------------------------------------------------------------------

struct Sshd {
    child: std::process::Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn keygen(path: &Path) -> Result<(), String> {
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "fleetwave-test",
            "-f",
        ])
        .arg(path))
}

/// Start sshd as the current user, accepting only `client.pub`; wait until it listens.
fn sshd(dir: &Path) -> Result<Sshd, String> {
    let bin = Path::new("/usr/sbin/sshd");
    if !bin.exists() {
        return Err("/usr/sbin/sshd is missing (Debian package openssh-server)".into());
    }
    keygen(&dir.join("host_key"))?;
    keygen(&dir.join("client"))?;
    std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
    // sshd insists on its privilege-separation directory even when it does not use it.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
         AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n\
         PermitRootLogin prohibit-password\nPidFile {d}/sshd.pid\n",
        d = dir.display()
    );
    std::fs::write(dir.join("sshd_config"), config).unwrap();
    let child = Command::new(bin)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
        .spawn()
        .map_err(|e| format!("sshd did not start: {e}"))?;
    let mut sshd = Sshd { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = sshd.child.try_wait() {
            let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
            return Err(format!("sshd exited with {status}: {log}"));
        }
        if Instant::now() > deadline {
            return Err("sshd did not listen within 10 s".into());
        }
        std::thread::yield_now();
    }
    sshd.port = port;
    Ok(sshd)
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn ssh_remote_with_a_deploy_key_and_known_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = match sshd(dir.path()) {
        Ok(s) => s,
        Err(e) => return skip(&e),
    };
    let bare = fleetwave::demo::seed_remote(dir.path(), "k8s-minor", start()).unwrap();
    let remote = format!("ssh://{}@127.0.0.1:{}{}", user(), sshd.port, bare.display());
    let key = dir.path().join("client");
    let key_arg = ["--ssh-key", key.to_str().unwrap()];

    // An unknown host key is refused: fleetwave never trusts a server on first use.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let home_env = [("HOME", home.to_str().unwrap())];
    let out = tick(&remote, &dir.path().join("a"), &home_env, &key_arg);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("hostkey") || text(&out).contains("host key"),
        "{}",
        text(&out)
    );
    assert!(branches(&bare).iter().all(|b| b == "main"));

    // With the server's key in known_hosts the tick fetches and pushes over SSH.
    let host_key = std::fs::read_to_string(dir.path().join("host_key.pub")).unwrap();
    let mut parts = host_key.split_whitespace();
    let (alg, b64) = (parts.next().unwrap(), parts.next().unwrap());
    let line = format!("[127.0.0.1]:{} {alg} {b64}\n", sshd.port);
    std::fs::write(home.join(".ssh/known_hosts"), line).unwrap();
    let out = tick(&remote, &dir.path().join("b"), &home_env, &key_arg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("did: push"), "{}", text(&out));
    let pushed = branches(&bare);
    assert!(
        pushed.iter().any(|b| b == "fleetwave/state"),
        "the state branch reached the server over SSH: {pushed:?}"
    );
}
