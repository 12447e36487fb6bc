//! Whole rollouts through the binary (`reconcile --once --clusters kube`, local forge) against
//! fake Kubernetes API servers: a hub holding CAPI and Kamaji objects, and one API server per
//! cluster (per-cluster contexts) holding Flux, Nodes and Pods; plus a fake Prometheus.
//! What must hold: Flux Ready is not enough while the upgrade itself still runs, kubelets
//! count for whole-cluster steps, pod restarts over the step-start baseline fail a cluster,
//! and an alert firing mid-soak fails the wave.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use common::fake_kube::{
    FakeKube, capi_cluster, kcp, kustomization, machine_deployment, node, pod, tenant_control_plane,
};
use fleetwave::git::{Auth, GitRepo};
use fleetwave::state::{PlanState, PlanStatus, StepStatus, WaveStatus};
use serde_json::{Value, json};

const CANARY: [&str; 2] = ["dev-canary-01", "stg-kamaji-01"];

fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A kubeconfig with one context per (name, server).
fn kubeconfig_text(contexts: &[(String, String)]) -> String {
    let mut clusters = String::new();
    let mut ctxs = String::new();
    for (name, url) in contexts {
        clusters.push_str(&format!("- name: {name}\n  cluster:\n    server: {url}\n"));
        ctxs.push_str(&format!(
            "- name: {name}\n  context:\n    cluster: {name}\n    user: u\n"
        ));
    }
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{clusters}contexts:\n{ctxs}\
         current-context: {}\nusers:\n- name: u\n  user:\n    token: t\n",
        contexts[0].0
    )
}

/// The fleet repository, the fakes, and a way to tick the binary at a given time.
struct Rig {
    dir: tempfile::TempDir,
    remote: PathBuf,
    git: GitRepo,
    kubeconfig: PathBuf,
    hub: FakeKube,
    spokes: BTreeMap<String, FakeKube>,
    /// Extra `reconcile` arguments (cluster contexts).
    args: Vec<String>,
}

impl Rig {
    /// `plan_edit` rewrites the example plan's text before it is committed.
    fn new(plan: &str, plan_edit: impl Fn(String) -> String, per_cluster: bool) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mut files = fleetwave::demo::example_files(plan).unwrap();
        let p = PathBuf::from("plans/demo.yaml");
        let text = String::from_utf8(files[&p].clone()).unwrap();
        files.insert(p, plan_edit(text).into_bytes());
        let remote = fleetwave::demo::seed_remote_files(dir.path(), &files, start_time()).unwrap();
        let git = GitRepo::open(
            &dir.path().join("check.git"),
            remote.to_str().unwrap(),
            Auth::None,
        )
        .unwrap();
        let hub = FakeKube::start();
        let mut contexts = vec![("hub".to_string(), hub.base_url())];
        let mut spokes = BTreeMap::new();
        let mut args = vec!["--kube-context".to_string(), "hub".to_string()];
        if per_cluster {
            for c in CANARY {
                let k = FakeKube::start();
                contexts.push((format!("ctx-{c}"), k.base_url()));
                spokes.insert(c.to_string(), k);
            }
            args.extend(["--cluster-context".into(), "ctx-{cluster}".into()]);
        }
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&contexts)).unwrap();
        Rig {
            dir,
            remote,
            git,
            kubeconfig,
            hub,
            spokes,
            args,
        }
    }

    fn head(&self) -> String {
        self.git.fetch().unwrap();
        self.git.branch_head("main").unwrap().unwrap()
    }

    fn state(&self) -> PlanState {
        self.state_or_none().expect("the rollout state exists")
    }

    /// Run a command; returns the exit code, stdout and stdout+stderr.
    fn run_split(&self, cmd: &[&str], now: DateTime<Utc>) -> (i32, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args(cmd)
            .args(["--clusters", "kube"])
            .args(&self.args)
            .args(["--remote", self.remote.to_str().unwrap()])
            .args(["--plan", "plans/demo.yaml"])
            .args([
                "--cache",
                self.dir.path().join("cache.git").to_str().unwrap(),
                "--now",
                &now.to_rfc3339(),
            ])
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let code = out.status.code().unwrap_or(-1);
        assert!(matches!(code, 0 | 1), "exit {code}: {text}");
        (code, String::from_utf8_lossy(&out.stdout).to_string(), text)
    }

    fn run(&self, cmd: &[&str], now: DateTime<Utc>) -> (i32, String) {
        let (code, _, text) = self.run_split(cmd, now);
        (code, text)
    }

    fn tick(&self, now: DateTime<Utc>) -> (i32, String) {
        self.run(&["reconcile", "--once"], now)
    }

    /// Flux Ready at `rev`: in each cluster's own `flux-system` (per-cluster mode), or in the
    /// hub, in the cluster's namespace (hub mode).
    fn flux_at(&self, rev: &str) {
        let ok = ("True", "ReconciliationSucceeded");
        let r = format!("main@sha1:{rev}");
        for c in CANARY {
            match self.spokes.get(c) {
                Some(k) => k.apply(kustomization(
                    "flux-system",
                    "flux-system",
                    ok,
                    &r,
                    &r,
                    1,
                    1,
                )),
                None => self
                    .hub
                    .apply(kustomization(c, &format!("{c}-apps"), ok, &r, &r, 1, 1)),
            }
        }
    }

    /// Each cluster's apiserver version, kubelets and pods.
    fn spoke(&self, c: &str, apiserver: &str, kubelets: &[&str], restarts: u32) {
        let k = &self.spokes[c];
        k.set_version(apiserver);
        // Kamaji runs the control plane as pods on the management cluster: the tenant
        // cluster has worker nodes only.
        let hosted_cp = c == "stg-kamaji-01";
        for (i, v) in kubelets.iter().enumerate() {
            k.apply(node(
                &format!("{c}-node-{i}"),
                true,
                v,
                i == 0 && !hosted_cp,
            ));
        }
        k.apply(pod("kube-system", "coredns-0", restarts));
    }
}

/// The CAPI and Kamaji objects of the canary wave on the hub, at `cp` (control planes) and
/// `md` (Kamaji workers), settled or still rolling.
fn hub_objects(hub: &FakeKube, cp: &str, topology_upgrading: bool, tcp: (&str, &str), md: &str) {
    let reconciled = if topology_upgrading {
        ("False", "ClusterUpgrading")
    } else {
        ("True", "ReconcileSucceeded")
    };
    let mut cluster = capi_cluster("fleet-dev", "dev-canary-01", cp, Some(reconciled));
    cluster["spec"]["controlPlaneRef"] = json!({"apiVersion": "controlplane.cluster.x-k8s.io/v1beta1",
        "kind": "KubeadmControlPlane", "name": "dev-canary-01-cp", "namespace": "fleet-dev"});
    hub.apply(cluster);
    let (running, updated) = if topology_upgrading {
        ("v1.32.4", 1)
    } else {
        (cp, 3)
    };
    hub.apply(kcp(
        "fleet-dev",
        "dev-canary-01-cp",
        cp,
        running,
        3,
        updated,
        3,
        2,
        2,
    ));
    hub.apply(tenant_control_plane(
        "tenants",
        "stg-kamaji-01",
        cp,
        tcp.0,
        tcp.1,
    ));
    hub.apply(machine_deployment(
        "tenants",
        "stg-kamaji-01-md-0",
        "stg-kamaji-01",
        md,
        2,
        2,
        2,
    ));
}

#[test]
fn flux_ready_is_not_enough_while_the_upgrade_itself_runs() {
    let rig = Rig::new("k8s-minor", |t| t, true);
    let t0 = start_time();
    let at = |m: i64| t0 + Duration::minutes(m);
    hub_objects(&rig.hub, "v1.32.4", false, ("v1.32.4", "Ready"), "v1.32.4");
    for c in CANARY {
        rig.spoke(c, "v1.32.4", &["v1.32.4", "v1.32.4", "v1.32.4"], 1);
    }
    rig.flux_at(&rig.head());

    rig.tick(at(0)); // opens step 1 (control planes)
    rig.tick(at(1)); // merges it: the canary is automated
    rig.tick(at(2)); // records the merge, takes the restart baselines
    let st = rig.state();
    assert_eq!(st.waves[0].steps[0].status, StepStatus::Merged, "{st:?}");
    assert_eq!(st.waves[0].steps[0].restart_baseline.len(), 2, "{st:?}");

    // Flux applied the merge everywhere, but CAPI and Kamaji are still upgrading.
    rig.flux_at(&rig.head());
    hub_objects(
        &rig.hub,
        "v1.33.5",
        true,
        ("v1.32.4", "Upgrading"),
        "v1.32.4",
    );
    rig.tick(at(10));
    let st = rig.state();
    assert_eq!(st.waves[0].steps[0].status, StepStatus::Merged, "{st:?}");
    assert!(st.waves[0].steps[0].converged.is_empty(), "{st:?}");
    let (_, status) = rig.run(&["status"], at(10));
    assert!(
        status.contains("TopologyReconciled False ClusterUpgrading"),
        "{status}"
    );
    assert!(
        status.contains("at v1.32.4, upgrading to v1.33.5"),
        "{status}"
    );

    // Control planes done; the Kamaji cluster's apiserver answers v1.33.5, so it converged.
    // The topology cluster's step sets the whole cluster: its kubelets still lag.
    hub_objects(&rig.hub, "v1.33.5", false, ("v1.33.5", "Ready"), "v1.32.4");
    rig.spoke(
        "stg-kamaji-01",
        "v1.33.5",
        &["v1.32.4", "v1.32.4", "v1.32.4"],
        1,
    );
    rig.spoke(
        "dev-canary-01",
        "v1.33.5",
        &["v1.33.5", "v1.32.4", "v1.32.4"],
        1,
    );
    rig.tick(at(20));
    let st = rig.state();
    let conv = &st.waves[0].steps[0].converged;
    assert!(conv.contains_key("stg-kamaji-01"), "{st:?}");
    assert!(!conv.contains_key("dev-canary-01"), "{st:?}");
    let (_, status, _) = rig.run_split(&["status", "--output", "json"], at(20));
    let doc: Value = serde_json::from_str(&status).expect(&status);
    let row = doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cluster"] == "dev-canary-01")
        .unwrap();
    assert!(
        row["running"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "kubelet v1.32.4 ×2"),
        "{row}"
    );

    // Every kubelet at v1.33.5: step 1 converges, step 2 (Kamaji workers) goes out.
    rig.spoke("dev-canary-01", "v1.33.5", &["v1.33.5"; 3], 1);
    rig.tick(at(30));
    let st = rig.state();
    assert_eq!(st.waves[0].steps[0].status, StepStatus::Converged, "{st:?}");
    rig.tick(at(31)); // opens step 2
    rig.tick(at(32)); // merges it
    rig.tick(at(33)); // records it
    rig.flux_at(&rig.head());
    // The MachineDeployment takes the new version but its kubelets are not there yet.
    hub_objects(&rig.hub, "v1.33.5", false, ("v1.33.5", "Ready"), "v1.33.5");
    rig.tick(at(40));
    let st = rig.state();
    assert!(
        !st.waves[0].steps[1].converged.contains_key("stg-kamaji-01"),
        "kubelets at v1.32.4 must hold the workers step: {st:?}"
    );
    rig.spoke("stg-kamaji-01", "v1.33.5", &["v1.33.5"; 3], 1);
    rig.tick(at(41));
    let st = rig.state();
    assert_eq!(st.waves[0].status, WaveStatus::Soaking, "{st:?}");

    // Pods restart 9 more times than at the step start on one cluster: its podRestarts gate
    // (threshold 5) fails and, with no failures allowed, so does the wave.
    rig.spokes["stg-kamaji-01"].apply(pod("kube-system", "coredns-0", 10));
    let (code, text) = rig.tick(at(50));
    assert_eq!(code, 1, "{text}");
    let st = rig.state();
    assert_eq!(st.status, PlanStatus::Halted, "{st:?}");
    let why = &st.waves[0].failed["stg-kamaji-01"];
    assert!(why.contains("podRestarts"), "{why}");
    let rec = &st.waves[0].gates["stg-kamaji-01"]["podRestarts"];
    assert!(!rec.ok && rec.time == at(50), "{rec:?}");
    assert!(st.waves[0].gates["dev-canary-01"]["nodes"].ok, "{st:?}");
}

/// A fake Prometheus (`/api/v1/alerts`) on its own thread; alerts can change at any time.
struct FakeProm {
    url: String,
    alerts: Arc<Mutex<Vec<Value>>>,
    _rt: tokio::runtime::Runtime,
}

impl FakeProm {
    fn start() -> FakeProm {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let alerts: Arc<Mutex<Vec<Value>>> = Arc::default();
        let shared = alerts.clone();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/api/v1/alerts",
            axum::routing::get(move || {
                let alerts = shared.lock().unwrap().clone();
                async move { axum::Json(json!({"status": "success", "data": {"alerts": alerts}})) }
            }),
        );
        rt.spawn(async move { axum::serve(listener, app).await });
        FakeProm {
            url,
            alerts,
            _rt: rt,
        }
    }

    fn fire(&self, name: &str, cluster: &str) {
        self.alerts.lock().unwrap().push(json!({
            "labels": {"alertname": name, "severity": "critical", "cluster": cluster},
            "annotations": {"summary": "pods crash looping"},
            "state": "firing",
            "activeAt": "2026-11-23T09:00:00Z",
            "value": "1e+00"
        }));
    }
}

#[test]
fn an_alert_firing_mid_soak_fails_the_wave() {
    let prom = FakeProm::start();
    // The canary gates on a fleet-wide Prometheus instead of nodes and pod restarts.
    let url = prom.url.clone();
    let rig = Rig::new(
        "gitops-base",
        move |t| {
            let at = t
                .find("      automated: true\n")
                .expect("canary validation");
            let end = at + "      automated: true\n".len();
            format!(
                "{}    gates:\n    - type: prometheus\n      url: {url}\n{}",
                &t[..end],
                &t[end..]
            )
        },
        false,
    );
    let t0 = start_time();
    let at = |m: i64| t0 + Duration::minutes(m);
    rig.flux_at(&rig.head());
    let mut m = 0;
    // Step by step until the canary soaks (each step: open, merge, record, converge).
    while rig
        .state_or_none()
        .is_none_or(|s| s.waves[0].status != WaveStatus::Soaking)
    {
        assert!(m < 60, "canary never soaked: {:?}", rig.state_or_none());
        rig.tick(at(m));
        rig.flux_at(&rig.head());
        m += 1;
    }
    let soak_start = rig.state().waves[0].soak_started_at.unwrap();
    // Healthy for a while: still soaking, and the passing gate is recorded once.
    rig.tick(at(m + 10));
    let st = rig.state();
    assert_eq!(st.waves[0].status, WaveStatus::Soaking, "{st:?}");
    let rec = &st.waves[0].gates["dev-canary-01"]["prometheus"];
    assert!(rec.ok && rec.time <= at(m + 10), "{rec:?}");
    assert!(rec.reason.contains("no firing alerts"), "{rec:?}");

    // An alert fires for one canary cluster mid-soak.
    prom.fire("KubePodCrashLooping", "stg-kamaji-01");
    let now = at(m + 20);
    assert!(now < soak_start + Duration::hours(1));
    let (code, text) = rig.tick(now);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("KubePodCrashLooping"), "{text}");
    let st = rig.state();
    assert_eq!(st.waves[0].status, WaveStatus::Failed, "{st:?}");
    assert_eq!(st.status, PlanStatus::Halted);
    let log = st.waves[0]
        .gate_log
        .iter()
        .find(|r| r.cluster == "stg-kamaji-01" && !r.ok)
        .expect("failure logged");
    assert_eq!((log.gate.as_str(), log.time), ("prometheus", now));
    assert!(log.reason.contains("KubePodCrashLooping"), "{log:?}");
    // The other cluster's gate stayed green: a fleet-wide Prometheus is read per cluster.
    assert!(st.waves[0].gates["dev-canary-01"]["prometheus"].ok);
    // Nothing more is merged while halted.
    let merged = |s: &PlanState| {
        s.waves
            .iter()
            .flat_map(|w| &w.steps)
            .filter(|s| s.merged_commit.is_some())
            .count()
    };
    let before = merged(&st);
    rig.tick(now + Duration::hours(30));
    assert_eq!(merged(&rig.state()), before);
    let (code, status) = rig.run(&["status"], now);
    assert!(status.contains("prometheus FAILED"), "{status}");
    assert_eq!(code, 1, "a halted plan: status exits 1");
    // --watch redraws until stopped (here after 3 refreshes).
    let (_, watched, _) =
        rig.run_split(&["status", "--watch", "10ms", "--max-refreshes", "3"], now);
    assert_eq!(
        watched.matches("plan gitops-base-2026-02").count(),
        3,
        "{watched}"
    );
    assert_eq!(watched.matches("(refreshed ").count(), 3, "{watched}");
}

impl Rig {
    fn state_or_none(&self) -> Option<PlanState> {
        self.git.fetch().unwrap();
        let head = self.git.branch_head("fleetwave/state").unwrap()?;
        fleetwave::reconcile::read_single_state(&self.git, &head).unwrap()
    }
}

/// The sum of `fleetwave_ticks_total` samples in a /metrics text.
fn ticks(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("fleetwave_ticks_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn serve_ticks_when_a_watched_object_changes() {
    use std::io::BufRead;
    let rig = Rig::new("gitops-base", |t| t, false);
    rig.flux_at(&rig.head());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetwave"))
        .args(["serve", "--clusters", "kube", "--kube-context", "hub"])
        .args(["--listen", "127.0.0.1:0", "--interval", "3600"])
        .args(["--remote", rig.remote.to_str().unwrap()])
        .args(["--plan", "plans/demo.yaml"])
        .args([
            "--cache",
            rig.dir.path().join("serve-cache.git").to_str().unwrap(),
        ])
        .env("KUBECONFIG", &rig.kubeconfig)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(a) = line.strip_prefix("fleetwave serve: listening on ") {
            break a.to_string();
        }
    };
    // Keep reading stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metrics = || {
        rt.block_on(async {
            match reqwest::get(format!("http://{addr}/metrics")).await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        })
    };
    let wait_for = |what: &str, cond: &dyn Fn(u64) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let n = ticks(&metrics());
            if cond(n) {
                return n;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: ticks {n}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let first = wait_for("the first tick", &|n| n >= 1);
    // The interval is an hour: only the watch event can cause the next tick.
    rig.hub.apply(kustomization(
        "dev-canary-01",
        "dev-canary-01-apps",
        ("False", "HealthCheckFailed"),
        "main@sha1:0000000000000000000000000000000000000000",
        "main@sha1:0000000000000000000000000000000000000000",
        2,
        2,
    ));
    let t = std::time::Instant::now();
    wait_for("a tick after the watch event", &|n| n > first);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Text a cluster reports (condition reasons and messages) is printed with its control
/// characters escaped: a hostile or broken controller cannot drive the operator's terminal.
#[test]
fn escape_sequences_from_a_cluster_never_reach_the_terminal() {
    let rig = Rig::new("k8s-minor", |t| t, false);
    hub_objects(&rig.hub, "v1.32.4", true, ("v1.32.4", "Ready"), "v1.32.4");
    let mut poisoned = 0;
    for mut obj in rig.hub.objects("clusters", None) {
        let Some(conds) = obj["status"]["conditions"].as_array_mut() else {
            continue;
        };
        for c in conds.iter_mut() {
            c["reason"] = serde_json::json!("Evil\u{1b}[2J\u{1b}]0;pwned\u{7}");
            c["message"] = serde_json::json!("cleared \u{1b}[31mred");
        }
        rig.hub.apply(obj);
        poisoned += 1;
    }
    assert!(poisoned > 0, "no CAPI Cluster in the hub to poison");
    let (_, out) = rig.run(&["status"], start_time());
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(
        out.contains("\\u{1b}[2J"),
        "the reason is shown, escaped: {out}"
    );
}
