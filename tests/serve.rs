//! `fleetwave serve`: webhooks, metrics, probes, trigger coalescing, graceful shutdown, and the
//! deploy manifests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use fleetwave::serve::{HttpLimits, ServeConfig, Server, TickSummary, Ticker, Trigger};
use hmac::{KeyInit, Mac};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

const SECRET: &str = "It's a Secret to Everybody";
const HOUR: Duration = Duration::from_secs(3600);

/// A ticker that counts started and finished ticks, and can be slowed, held or made to fail.
#[derive(Default)]
struct Fake {
    started: AtomicUsize,
    finished: AtomicUsize,
    delay_ms: AtomicU64,
    fail: AtomicBool,
    /// When set, each tick waits for a permit before finishing.
    gate: Option<Arc<Semaphore>>,
}

#[async_trait::async_trait]
impl Ticker for Fake {
    async fn tick(&self) -> anyhow::Result<TickSummary> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            sleep(Duration::from_millis(delay)).await;
        }
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        let fail = self.fail.load(Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
        if fail {
            return Err(anyhow::anyhow!("forge unreachable"));
        }
        Ok(TickSummary {
            plan: "k8s-1.31".into(),
            plan_status: "InProgress".into(),
            waves: vec![
                ("canary".into(), "Succeeded".into()),
                ("prod".into(), "InProgress".into()),
            ],
            steps_merged: 3,
            gate_failures: 1,
            api_calls: 7,
            held: None,
        })
    }
}

struct Running {
    addr: SocketAddr,
    trigger: Trigger,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
    http: reqwest::Client,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn stop(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().expect("running").send(());
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("run returns after shutdown")
            .expect("run task")
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    async fn webhook(&self, event: &str, body: &str, signature: Option<String>) -> u16 {
        let mut req = self
            .http
            .post(self.url("/webhook"))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", next_delivery())
            .body(body.to_string());
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        req.send().await.expect("POST /webhook").status().as_u16()
    }
}

async fn start(interval: Duration, secret: Option<&str>, fake: Arc<Fake>) -> Running {
    start_with(interval, secret, fake, HttpLimits::default()).await
}

async fn start_with(
    interval: Duration,
    secret: Option<&str>,
    fake: Arc<Fake>,
    limits: HttpLimits,
) -> Running {
    let server = Server::bind(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        interval,
        webhook_secret: secret.map(str::to_string),
        limits,
    })
    .await
    .expect("bind");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let trigger = server.trigger();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(fake, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        trigger,
        stop: Some(tx),
        handle,
        http: reqwest::Client::new(),
    }
}

/// A fresh delivery id per call, as GitHub sends (the server ignores replayed ids).
fn next_delivery() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "72d3162e-cc78-11e3-81ab-{:012}",
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// GitHub's signature, computed here independently of the crate.
fn github_signature(secret: &str, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Poll `cond` until it holds or `within` passes.
async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

/// How long to watch for a tick that must not happen: past the debounce, with margin.
const QUIET: Duration = Duration::from_millis(600);

const PR_BODY: &str = r#"{"action":"closed","number":42,"pull_request":{"merged":true}}"#;

#[tokio::test]
async fn signed_pull_request_webhook_ticks_within_a_second() {
    let fake = Arc::new(Fake::default());
    let srv = start(HOUR, Some(SECRET), fake.clone()).await;
    eventually(Duration::from_secs(5), "the first tick", || {
        fake.finished.load(Ordering::SeqCst) == 1
    })
    .await;

    let status = srv
        .webhook(
            "pull_request",
            PR_BODY,
            Some(github_signature(SECRET, PR_BODY)),
        )
        .await;
    assert_eq!(status, 202);
    eventually(Duration::from_secs(1), "the webhook's tick", || {
        fake.finished.load(Ordering::SeqCst) == 2
    })
    .await;

    // push and pull_request_review tick too; ping answers 200 and does not.
    for event in ["push", "pull_request_review"] {
        let before = fake.finished.load(Ordering::SeqCst);
        let sig = github_signature(SECRET, PR_BODY);
        assert_eq!(srv.webhook(event, PR_BODY, Some(sig)).await, 202, "{event}");
        eventually(Duration::from_secs(1), event, || {
            fake.finished.load(Ordering::SeqCst) == before + 1
        })
        .await;
    }
    let ping = r#"{"zen":"Keep it logically awesome."}"#;
    assert_eq!(
        srv.webhook("ping", ping, Some(github_signature(SECRET, ping)))
            .await,
        200
    );
    let sig = github_signature(SECRET, PR_BODY);
    assert_eq!(srv.webhook("issues", PR_BODY, Some(sig)).await, 202);
    sleep(QUIET).await;
    assert_eq!(fake.started.load(Ordering::SeqCst), 4, "ping/issues ticked");

    let text = srv.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"fleetwave_webhooks_total{result="accepted"} 4"#),
        "{text}"
    );
    assert!(
        text.contains(r#"fleetwave_webhooks_total{result="ignored"} 1"#),
        "{text}"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn bad_or_missing_signature_is_refused_without_a_tick() {
    let fake = Arc::new(Fake::default());
    let srv = start(HOUR, Some(SECRET), fake.clone()).await;
    eventually(Duration::from_secs(5), "the interval's first tick", || {
        fake.finished.load(Ordering::SeqCst) == 1
    })
    .await;

    // Signed with another secret, over another body, malformed, or missing.
    let wrong_secret = github_signature("not the secret", PR_BODY);
    let other_body = github_signature(SECRET, "{}");
    let sig = github_signature(SECRET, PR_BODY);
    let not_hex = format!("sha256={}", "zz".repeat(32));
    let sha1 = sig.replace("sha256=", "sha1=");
    for bad in [
        Some(wrong_secret),
        Some(other_body),
        Some(not_hex),
        Some(sha1),
        None,
    ] {
        assert_eq!(
            srv.webhook("pull_request", PR_BODY, bad.clone()).await,
            401,
            "{bad:?}"
        );
    }
    sleep(QUIET).await;
    assert_eq!(
        fake.started.load(Ordering::SeqCst),
        1,
        "a refused webhook ticked"
    );
    let text = srv.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"fleetwave_webhooks_total{result="rejected"} 5"#),
        "{text}"
    );
    srv.stop().await.unwrap();

    // Without a secret, webhooks are not served at all.
    let fake = Arc::new(Fake::default());
    let srv = start(HOUR, None, fake.clone()).await;
    let sig = github_signature(SECRET, PR_BODY);
    assert_eq!(srv.webhook("pull_request", PR_BODY, Some(sig)).await, 404);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_replayed_delivery_is_answered_but_does_not_tick() {
    let fake = Arc::new(Fake::default());
    let srv = start(HOUR, Some(SECRET), fake.clone()).await;
    eventually(Duration::from_secs(5), "the first tick", || {
        fake.finished.load(Ordering::SeqCst) == 1
    })
    .await;
    let send = |id: &'static str| {
        srv.http
            .post(srv.url("/webhook"))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", github_signature(SECRET, PR_BODY))
            .body(PR_BODY)
            .send()
    };
    assert_eq!(send("d-1").await.unwrap().status().as_u16(), 202);
    eventually(Duration::from_secs(2), "the delivery's tick", || {
        fake.finished.load(Ordering::SeqCst) == 2
    })
    .await;
    for _ in 0..30 {
        assert_eq!(send("d-1").await.unwrap().status().as_u16(), 200);
    }
    sleep(QUIET).await;
    assert_eq!(fake.started.load(Ordering::SeqCst), 2, "a replay ticked");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_webhook_body_is_refused() {
    let fake = Arc::new(Fake::default());
    let srv = start(HOUR, Some(SECRET), fake.clone()).await;
    let body = "x".repeat(fleetwave::serve::MAX_WEBHOOK_BODY + 1);
    let sig = github_signature(SECRET, &body);
    assert_eq!(srv.webhook("push", &body, Some(sig)).await, 413);
    srv.stop().await.unwrap();
}

/// `name{labels} value [timestamp]`, as the text exposition formats have it.
fn check_sample_line(line: &str) {
    let re = regex::Regex::new(
        r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (\S+)( \S+)?$"#,
    )
    .unwrap();
    let caps = re
        .captures(line)
        .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
    let value = &caps[4];
    assert!(
        matches!(value, "+Inf" | "-Inf" | "NaN") || value.parse::<f64>().is_ok(),
        "bad value in {line:?}"
    );
}

#[tokio::test]
async fn metrics_parse_and_report_the_tick() {
    let fake = Arc::new(Fake::default());
    let srv = start(HOUR, Some(SECRET), fake.clone()).await;
    eventually(Duration::from_secs(5), "the first tick", || {
        fake.finished.load(Ordering::SeqCst) == 1
    })
    .await;
    let resp = srv.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        ctype.starts_with("application/openmetrics-text") || ctype.starts_with("text/plain"),
        "{ctype}"
    );
    let text = resp.text().await.unwrap();
    let mut samples = 0;
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        check_sample_line(line);
        samples += 1;
    }
    assert!(samples > 10, "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    for want in [
        r#"fleetwave_ticks_total{result="ok"} 1"#,
        r#"fleetwave_ticks_total{result="error"} 0"#,
        r#"fleetwave_plan_status{plan="k8s-1.31",status="InProgress"} 1"#,
        r#"fleetwave_plan_status{plan="k8s-1.31",status="Succeeded"} 0"#,
        r#"fleetwave_wave_status{plan="k8s-1.31",wave="canary",status="Succeeded"} 1"#,
        r#"fleetwave_wave_status{plan="k8s-1.31",wave="prod",status="InProgress"} 1"#,
        r#"fleetwave_wave_status{plan="k8s-1.31",wave="prod",status="Succeeded"} 0"#,
        r#"fleetwave_steps_merged{plan="k8s-1.31"} 3"#,
        r#"fleetwave_gate_failures{plan="k8s-1.31"} 1"#,
        "fleetwave_api_calls_total 7",
        "fleetwave_tick_duration_seconds_count 1",
        r#"fleetwave_webhooks_total{result="rejected"} 0"#,
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "missing {want:?} in\n{text}"
        );
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_waits_for_the_first_successful_tick() {
    let gate = Arc::new(Semaphore::new(0));
    let fake = Arc::new(Fake {
        gate: Some(gate.clone()),
        ..Fake::default()
    });
    fake.fail.store(true, Ordering::SeqCst);
    let srv = start(HOUR, Some(SECRET), fake.clone()).await;
    assert_eq!(srv.get("/healthz").await.status(), 200);
    assert_eq!(srv.get("/healthz").await.text().await.unwrap(), "ok");

    // Before any tick has finished.
    eventually(Duration::from_secs(5), "the first tick to start", || {
        fake.started.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(srv.get("/readyz").await.status(), 503);

    // A failed tick is counted, and does not make the service ready or stop the loop.
    gate.add_permits(1);
    eventually(Duration::from_secs(5), "the failed tick", || {
        fake.finished.load(Ordering::SeqCst) == 1
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = srv.get("/metrics").await.text().await.unwrap();
        if text.contains(r#"fleetwave_ticks_total{result="error"} 1"#) {
            break;
        }
        assert!(Instant::now() < deadline, "error tick not counted:\n{text}");
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(srv.get("/readyz").await.status(), 503);
    assert_eq!(srv.get("/healthz").await.status(), 200);

    fake.fail.store(false, Ordering::SeqCst);
    gate.add_permits(1);
    srv.trigger.fire();
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.get("/readyz").await.status() != 200 {
        assert!(Instant::now() < deadline, "never became ready");
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.finished.load(Ordering::SeqCst), 2);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_burst_of_triggers_makes_one_tick() {
    let fake = Arc::new(Fake::default());
    let srv = start(HOUR, None, fake.clone()).await;
    eventually(Duration::from_secs(5), "the first tick", || {
        fake.finished.load(Ordering::SeqCst) == 1
    })
    .await;
    for _ in 0..50 {
        srv.trigger.clone().fire();
    }
    eventually(Duration::from_secs(2), "the burst's tick", || {
        fake.finished.load(Ordering::SeqCst) == 2
    })
    .await;
    sleep(QUIET).await;
    assert_eq!(
        fake.started.load(Ordering::SeqCst),
        2,
        "the burst was not coalesced"
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn ticks_repeat_on_the_interval() {
    let fake = Arc::new(Fake::default());
    let srv = start(Duration::from_secs(1), None, fake.clone()).await;
    eventually(Duration::from_secs(5), "three ticks", || {
        fake.finished.load(Ordering::SeqCst) >= 3
    })
    .await;
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_waits_for_the_tick_in_progress() {
    let fake = Arc::new(Fake::default());
    fake.delay_ms.store(800, Ordering::SeqCst);
    let srv = start(HOUR, None, fake.clone()).await;
    eventually(Duration::from_secs(5), "the slow tick to start", || {
        fake.started.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(fake.finished.load(Ordering::SeqCst), 0);
    srv.stop().await.expect("clean shutdown");
    assert_eq!(
        fake.finished.load(Ordering::SeqCst),
        1,
        "run returned before the tick finished"
    );
    assert_eq!(
        fake.started.load(Ordering::SeqCst),
        1,
        "ticked after shutdown"
    );
}

#[tokio::test]
async fn shutdown_when_idle_is_prompt() {
    let fake = Arc::new(Fake::default());
    let srv = start(HOUR, None, fake.clone()).await;
    eventually(Duration::from_secs(5), "the first tick", || {
        fake.finished.load(Ordering::SeqCst) == 1
    })
    .await;
    // Keep a connection open: graceful shutdown must not wait on idle keep-alive connections.
    assert_eq!(srv.get("/healthz").await.status(), 200);
    let addr = srv.addr;
    let t = Instant::now();
    srv.stop().await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening after shutdown"
    );
}

/// Slow clients (slowloris): hundreds of connections that never send a request do not keep
/// the probes from answering, and each is closed once the header timeout passes.
#[tokio::test]
async fn probes_answer_while_hundreds_of_clients_sit_idle() {
    let limits = HttpLimits {
        header_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    };
    let r = start_with(HOUR, Some(SECRET), Arc::new(Fake::default()), limits).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            tokio::net::TcpStream::connect(r.addr)
                .await
                .expect("connect"),
        );
    }
    let health = tokio::time::timeout(
        Duration::from_secs(10),
        r.http.get(r.url("/healthz")).send(),
    )
    .await
    .expect("/healthz answered within 10 s")
    .expect("GET /healthz");
    assert_eq!(health.status(), 200);
    // The server hangs up on a client that says nothing: its read sees EOF.
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), idle[0].read(&mut buf))
        .await
        .expect("the idle connection was closed within 10 s");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    r.stop().await.expect("stopped");
}

/// Over the connection limit a new connection is closed at once instead of stalling the
/// accept loop; when the idle ones are gone, requests are served again.
#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once() {
    let limits = HttpLimits {
        header_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
        max_connections: 8,
    };
    let r = start_with(HOUR, Some(SECRET), Arc::new(Fake::default()), limits).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(
            tokio::net::TcpStream::connect(r.addr)
                .await
                .expect("connect"),
        );
    }
    use tokio::io::AsyncReadExt;
    let mut extra = tokio::net::TcpStream::connect(r.addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("the connection over the limit was closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // The idle ones time out; then a probe is served.
    let mut ok = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok && Instant::now() < deadline {
        ok = r
            .http
            .get(r.url("/healthz"))
            .send()
            .await
            .is_ok_and(|res| res.status() == 200);
        if !ok {
            sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(ok, "no probe answered after the idle connections timed out");
    drop(idle);
    r.stop().await.expect("stopped");
}

fn deploy_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

#[test]
fn rbac_is_read_only() {
    let text = std::fs::read_to_string(deploy_dir().join("rbac.yaml")).unwrap();
    let mut roles = 0;
    let mut granted: Vec<(String, String)> = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap();
        let kind = v["kind"].as_str().unwrap_or_default();
        assert!(
            matches!(
                kind,
                "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding"
            ),
            "unexpected {kind}"
        );
        if kind == "Role" {
            // The one write: its own Leases (leader election), in its namespace only.
            assert_eq!(v["metadata"]["namespace"], "fleetwave-system");
            let rules = v["rules"].as_sequence().expect("rules");
            assert_eq!(rules.len(), 1, "{rules:?}");
            assert_eq!(rules[0]["apiGroups"][0], "coordination.k8s.io");
            assert_eq!(rules[0]["resources"].as_sequence().unwrap().len(), 1);
            assert_eq!(rules[0]["resources"][0], "leases");
            for verb in rules[0]["verbs"].as_sequence().unwrap() {
                let verb = verb.as_str().unwrap();
                assert!(
                    matches!(verb, "get" | "list" | "create" | "update" | "delete"),
                    "{verb}"
                );
            }
            continue;
        }
        if kind != "ClusterRole" {
            continue;
        }
        roles += 1;
        assert!(v.get("aggregationRule").is_none(), "aggregated role");
        let rules = v["rules"].as_sequence().expect("rules");
        for rule in rules {
            let strs = |key: &str| -> Vec<String> {
                rule[key]
                    .as_sequence()
                    .map(|s| {
                        s.iter()
                            .map(|x| x.as_str().expect("string").to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            assert!(
                rule.get("nonResourceURLs").is_none() && rule.get("resourceNames").is_none(),
                "{rule:?}"
            );
            let verbs = strs("verbs");
            assert!(!verbs.is_empty(), "{rule:?}");
            for verb in &verbs {
                assert!(
                    matches!(verb.as_str(), "get" | "list" | "watch"),
                    "verb {verb:?} in {rule:?}"
                );
            }
            for group in strs("apiGroups") {
                assert_ne!(group, "*", "{rule:?}");
                for res in strs("resources") {
                    assert!(!res.contains('*') && !res.contains('/'), "{res}");
                    assert_ne!(res, "secrets", "read access to Secrets");
                    granted.push((group.clone(), res));
                }
            }
        }
    }
    assert_eq!(roles, 1);
    for (group, res) in [
        ("kustomize.toolkit.fluxcd.io", "kustomizations"),
        ("source.toolkit.fluxcd.io", "gitrepositories"),
        ("source.toolkit.fluxcd.io", "ocirepositories"),
        ("cluster.x-k8s.io", "clusters"),
        ("cluster.x-k8s.io", "machinedeployments"),
        ("cluster.x-k8s.io", "machinepools"),
        ("controlplane.cluster.x-k8s.io", "kubeadmcontrolplanes"),
        ("controlplane.cluster.x-k8s.io", "k0scontrolplanes"),
        ("kamaji.clastix.io", "tenantcontrolplanes"),
        ("k0rdent.mirantis.com", "clusterdeployments"),
        ("", "nodes"),
        ("", "pods"),
    ] {
        assert!(
            granted.iter().any(|(g, r)| g == group && r == res),
            "missing {group}/{res}"
        );
    }
}

#[test]
fn kustomize_builds() {
    let kubectl = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("kubectl"))
            .find(|p| p.is_file())
    });
    let Some(kubectl) = kubectl else {
        eprintln!("skipped: kubectl is not on PATH");
        return;
    };
    let out = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(deploy_dir())
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/ failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap();
        kinds.push(v["kind"].as_str().unwrap().to_string());
        if v["kind"] == "Deployment" {
            let spec = &v["spec"]["template"]["spec"];
            let c = &spec["containers"][0];
            assert_eq!(v["spec"]["replicas"].as_u64(), Some(3));
            assert_eq!(c["args"][0], "serve");
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
            assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
            assert_eq!(sc["capabilities"]["drop"][0], "ALL");
            let env = c["env"].as_sequence().unwrap();
            for name in ["GITHUB_TOKEN", "FLEETWAVE_WEBHOOK_SECRET"] {
                let e = env.iter().find(|e| e["name"] == name).expect(name);
                assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], "fleetwave-github");
            }
            // Every ConfigMap reference points at the generated (hashed) ConfigMap.
            for e in env {
                if let Some(cm) = e["valueFrom"]["configMapKeyRef"]["name"].as_str() {
                    assert!(cm.starts_with("fleetwave-config-"), "{cm}");
                }
            }
        }
    }
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
}

/// The real binary: `fleetwave serve` ticks against a local fleet remote, answers /readyz
/// once the first tick is done, and exits 0 on SIGTERM.
#[test]
fn the_binary_serves_ticks_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-23T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let remote = fleetwave::demo::seed_remote(dir.path(), "gitops-base", start).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args([
            "serve",
            "--clusters",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "3600",
        ])
        .args([
            "--remote",
            remote.to_str().unwrap(),
            "--plan",
            "plans/demo.yaml",
        ])
        .args(["--cache", dir.path().join("cache.git").to_str().unwrap()])
        .args(["--log-format", "json"])
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
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ready = rt.block_on(async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ok = reqwest::get(format!("http://{addr}/readyz"))
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    assert!(ready, "never became ready");
    // The first tick wrote the rollout state.
    let git = fleetwave::git::GitRepo::open(
        &dir.path().join("check.git"),
        remote.to_str().unwrap(),
        fleetwave::git::Auth::None,
    )
    .unwrap();
    git.fetch().unwrap();
    assert!(git.branch_head("fleetwave/state").unwrap().is_some());
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let code = child.wait().unwrap();
    assert_eq!(
        code.code(),
        Some(0),
        "serve did not exit cleanly on SIGTERM"
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    // `--log-format json`: the service's log lines are JSON objects a collector can parse.
    let logs: Vec<serde_json::Value> = rest
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        logs.iter()
            .any(|v| v["fields"]["message"] == "fleetwave stopped" && v["level"] == "INFO"),
        "{rest:?}"
    );
}
