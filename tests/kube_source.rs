//! `KubeSource` against a fake Kubernetes API server: hub-mode mapping, live updates through
//! the watch, relist after 410 Gone, and one list+watch for the whole fleet.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::fake_kube::{FakeKube, kustomization};
use fleetwave::adapters::cluster::kube::KubeSource;
use fleetwave::cluster::{ClusterObservation, ClusterSource, Convergence, convergence};

const X: &str = "1111111111111111111111111111111111111111";
const Y: &str = "2222222222222222222222222222222222222222";
const OLD: &str = "0000000000000000000000000000000000000000";
const DEADLINE: Duration = Duration::from_secs(20);

fn rev(h: &str) -> String {
    format!("main@sha1:{h}")
}

fn same(a: &str, b: &str) -> bool {
    a == b
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn started(fake: &FakeKube) -> KubeSource {
    let src = KubeSource::start(fake.client()).await.expect("start");
    src.ready(DEADLINE).await.expect("ready");
    src
}

/// Poll `observe` until `done` holds (no fixed sleeps); panics with the last observation.
async fn observe_until(
    src: &KubeSource,
    clusters: &[&str],
    done: impl Fn(&BTreeMap<String, ClusterObservation>) -> bool,
) -> BTreeMap<String, ClusterObservation> {
    let start = Instant::now();
    loop {
        let obs = src
            .observe(&names(clusters), Utc::now())
            .await
            .expect("observe");
        if done(&obs) {
            return obs;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "condition not reached within {DEADLINE:?}; last observation: {obs:#?}; errors: {:?}",
            src.last_error()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn applied(obs: &BTreeMap<String, ClusterObservation>, cluster: &str) -> Option<String> {
    obs.get(cluster)?
        .kustomizations
        .first()?
        .last_applied_revision
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_namespaces_map_to_clusters_and_convergence_reads_them() {
    let fake = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    fake.apply(kustomization("a", "apps", ok, &rev(X), &rev(X), 2, 2));
    // b: the spec changed (generation 3) and Flux has not observed it yet.
    fake.apply(kustomization("b", "apps", ok, &rev(X), &rev(X), 3, 2));
    // Hub's own Kustomization: belongs to no requested cluster.
    fake.apply(kustomization(
        "flux-system",
        "flux-system",
        ok,
        &rev(OLD),
        &rev(OLD),
        1,
        1,
    ));

    // Through the kubeconfig this fake hands out, as `fleetwave` would load it.
    let kc = kube::config::Kubeconfig::from_yaml(&fake.kubeconfig_yaml()).expect("kubeconfig");
    let opts = kube::config::KubeConfigOptions {
        context: Some("fake".into()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let src = KubeSource::start(client).await.expect("start");
    src.ready(DEADLINE).await.expect("ready");

    let obs = src
        .observe(&names(&["a", "b", "c"]), Utc::now())
        .await
        .expect("observe");
    assert_eq!(obs.len(), 3, "{obs:#?}");
    let a = &obs["a"];
    assert_eq!(a.kustomizations.len(), 1);
    let k = &a.kustomizations[0];
    assert_eq!((k.namespace.as_str(), k.name.as_str()), ("a", "apps"));
    assert_eq!((k.generation, k.observed_generation), (2, 2));
    assert_eq!(
        k.condition("Ready").map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(k.last_attempted_revision.as_deref(), Some(rev(X).as_str()));
    assert_eq!(obs["b"].kustomizations.len(), 1);
    assert!(obs["c"].kustomizations.is_empty(), "{obs:#?}");

    assert_eq!(convergence(a, X, &same), Convergence::Converged);
    assert!(matches!(convergence(a, Y, &same), Convergence::Waiting(_)));
    match convergence(&obs["b"], X, &same) {
        Convergence::Waiting(r) => assert!(r.contains("generation 3"), "{r}"),
        other => panic!("stale observedGeneration must wait, got {other:?}"),
    }
    assert!(matches!(
        convergence(&obs["c"], X, &same),
        Convergence::Waiting(_)
    ));
    assert_eq!(src.lists(), 1);
    assert_eq!(src.errors(), 0, "{:?}", src.last_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_show_up_in_observe() {
    let fake = FakeKube::start();
    let progressing = ("Unknown", "Progressing");
    fake.apply(kustomization(
        "a",
        "apps",
        progressing,
        &rev(OLD),
        &rev(X),
        2,
        2,
    ));
    fake.apply(kustomization(
        "a",
        "infra",
        ("True", "ReconciliationSucceeded"),
        &rev(X),
        &rev(X),
        1,
        1,
    ));
    let src = started(&fake).await;
    let obs = src.observe(&names(&["a"]), Utc::now()).await.unwrap();
    assert_eq!(obs["a"].kustomizations.len(), 2);
    assert!(matches!(
        convergence(&obs["a"], X, &same),
        Convergence::Waiting(_)
    ));

    // Flux finishes: MODIFIED with Ready True at X.
    fake.apply(kustomization(
        "a",
        "apps",
        ("True", "ReconciliationSucceeded"),
        &rev(X),
        &rev(X),
        2,
        2,
    ));
    let obs = observe_until(&src, &["a"], |o| {
        convergence(&o["a"], X, &same) == Convergence::Converged
    })
    .await;
    assert_eq!(obs["a"].kustomizations[0].name, "apps");

    // A failed rollout of Y: attempted Y, applied still X, Ready False.
    fake.apply(kustomization(
        "a",
        "apps",
        ("False", "HealthCheckFailed"),
        &rev(X),
        &rev(Y),
        2,
        2,
    ));
    observe_until(&src, &["a"], |o| {
        matches!(convergence(&o["a"], Y, &same), Convergence::Failed(r) if r.contains("HealthCheckFailed"))
    })
    .await;

    // DELETED removes it from the observation.
    fake.delete("a", "infra");
    observe_until(&src, &["a"], |o| o["a"].kustomizations.len() == 1).await;
    // All of that arrived over the first watch: one list, no relist.
    assert_eq!(fake.count("LIST"), 1, "{:#?}", fake.request_log());
    assert_eq!(src.lists(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_gives_410_and_the_watcher_relists_without_losing_the_change() {
    let fake = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    fake.apply(kustomization("a", "apps", ok, &rev(OLD), &rev(OLD), 1, 1));
    let src = started(&fake).await;
    wait_until("the watch to open", || fake.count("WATCH") >= 1).await;
    assert_eq!(src.lists(), 1);

    // History is forgotten and open watches close; the change happens while the watcher is
    // reconnecting, so it can only see it by relisting.
    fake.compact();
    fake.apply(kustomization("a", "apps", ok, &rev(Y), &rev(Y), 2, 2));
    let obs = observe_until(&src, &["a"], |o| applied(o, "a") == Some(rev(Y))).await;
    assert_eq!(convergence(&obs["a"], Y, &same), Convergence::Converged);

    assert!(src.lists() >= 2, "lists: {}", src.lists());
    assert!(src.errors() >= 1, "the 410 is reported as a watch error");
    assert!(
        src.last_error()
            .is_some_and(|e| e.contains("410") || e.contains("Expired")),
        "{:?}",
        src.last_error()
    );
    let log = fake.request_log();
    assert!(fake.count("LIST") >= 2, "{log:#?}");
    // The watch resumed from an old resourceVersion before the relist.
    let first_relist = log
        .iter()
        .skip(1)
        .position(|l| l.starts_with("LIST"))
        .expect("relist")
        + 1;
    assert!(
        log[..first_relist]
            .iter()
            .filter(|l| l.starts_with("WATCH"))
            .count()
            >= 2,
        "{log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_resumes_from_its_resource_version_without_relisting() {
    let fake = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    fake.apply(kustomization("a", "apps", ok, &rev(OLD), &rev(OLD), 1, 1));
    let src = started(&fake).await;
    wait_until("the watch to open", || fake.count("WATCH") >= 1).await;
    fake.drop_watches();
    fake.apply(kustomization("a", "apps", ok, &rev(X), &rev(X), 2, 2));
    observe_until(&src, &["a"], |o| applied(o, "a") == Some(rev(X))).await;
    wait_until("the watch to reopen", || fake.count("WATCH") >= 2).await;
    assert_eq!(fake.count("LIST"), 1, "{:#?}", fake.request_log());
    assert_eq!(src.lists(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_list_and_one_watch_for_the_whole_fleet() {
    let fake = FakeKube::start();
    fake.set_bookmark_interval(Duration::from_millis(50));
    let ok = ("True", "ReconciliationSucceeded");
    let clusters: Vec<String> = (0..200).map(|i| format!("c{i:03}")).collect();
    for c in &clusters {
        fake.apply(kustomization(c, "apps", ok, &rev(X), &rev(X), 1, 1));
    }
    let src = started(&fake).await;
    wait_until("the watch to open", || fake.count("WATCH") >= 1).await;
    let before = fake.requests();

    for _ in 0..50 {
        let obs = src.observe(&clusters, Utc::now()).await.unwrap();
        assert_eq!(obs.len(), clusters.len());
        assert!(obs.values().all(|o| o.kustomizations.len() == 1));
    }
    // Long enough for several bookmarks on the open watch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let obs = src.observe(&clusters, Utc::now()).await.unwrap();
    assert!(
        obs.values()
            .all(|o| convergence(o, X, &same) == Convergence::Converged)
    );

    assert_eq!(fake.requests(), before, "{:#?}", fake.request_log());
    let log = fake.request_log();
    assert_eq!(fake.count("LIST"), 1, "{log:#?}");
    assert_eq!(fake.count("WATCH"), 1, "{log:#?}");
    assert_eq!(fake.count("GET"), 0, "never a GET per cluster: {log:#?}");
    // Across all namespaces, with bookmarks.
    assert!(log.contains(&"LIST *".to_string()), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("WATCH * rv=") && l.ends_with("bookmarks=true")),
        "{log:#?}"
    );
    assert_eq!(src.len(), clusters.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_and_kubeconfig_secret_map_kustomizations_to_clusters() {
    let fake = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    let mut labelled = kustomization("fleet", "edge-d", ok, &rev(X), &rev(X), 1, 1);
    labelled["metadata"]["labels"] = serde_json::json!({"fleetwave.io/cluster": "d"});
    fake.apply(labelled);
    let mut remote = kustomization("hub", "spoke-e", ok, &rev(X), &rev(X), 1, 1);
    remote["spec"]["kubeConfig"] = serde_json::json!({"secretRef": {"name": "e-kubeconfig"}});
    fake.apply(remote);
    // Not a kubeconfig Secret name: no mapping to "f".
    let mut other = kustomization("hub", "spoke-f", ok, &rev(X), &rev(X), 1, 1);
    other["spec"]["kubeConfig"] = serde_json::json!({"secretRef": {"name": "f-credentials"}});
    fake.apply(other);
    // A status-less, freshly created object with unknown fields must not break anything.
    fake.apply(serde_json::json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "new", "namespace": "g", "generation": 1},
        "spec": {"somethingNew": {"x": [1, 2]}},
    }));
    let src = started(&fake).await;

    let obs = src
        .observe(&names(&["d", "e", "f", "g"]), Utc::now())
        .await
        .unwrap();
    let only = |c: &str| -> Vec<String> {
        obs[c]
            .kustomizations
            .iter()
            .map(|k| format!("{}/{}", k.namespace, k.name))
            .collect()
    };
    assert_eq!(only("d"), ["fleet/edge-d"]);
    assert_eq!(only("e"), ["hub/spoke-e"]);
    assert!(only("f").is_empty(), "{obs:#?}");
    assert_eq!(only("g"), ["g/new"]);
    let g = &obs["g"].kustomizations[0];
    assert_eq!((g.generation, g.observed_generation), (1, 0));
    assert!(g.conditions.is_empty() && g.last_applied_revision.is_none());
    assert!(matches!(
        convergence(&obs["g"], X, &same),
        Convergence::Waiting(_)
    ));
    assert_eq!(convergence(&obs["e"], X, &same), Convergence::Converged);

    // The hub namespace itself is also a cluster name here: both of its objects belong to it.
    let hub = src.observe(&names(&["hub"]), Utc::now()).await.unwrap();
    assert_eq!(hub["hub"].kustomizations.len(), 2);
}

/// A client of a port nothing listens on (bound, then released). Call inside a runtime.
fn unreachable_client() -> kube::Client {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_times_out_when_the_hub_is_unreachable() {
    let src = KubeSource::start(unreachable_client()).await.unwrap();
    let err = src.ready(Duration::from_millis(500)).await.unwrap_err();
    assert!(err.to_string().contains("within"), "{err}");
    // Before the first list, observe refuses rather than reporting "no Kustomizations".
    assert!(src.observe(&names(&["a"]), Utc::now()).await.is_err());
}

/// `ready_once` waits for the first lists once: a spoke that never answers costs the first
/// call its timeout, and later calls (every tick of a service) nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_waits_for_a_silent_spoke_only_the_first_time() {
    use fleetwave::adapters::cluster::kube::Targets;
    let hub = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    hub.apply(kustomization("a", "apps", ok, &rev(X), &rev(X), 1, 1));
    let src = KubeSource::start_with(Targets {
        hub: Some(hub.client()),
        spokes: vec![("b".into(), unreachable_client())],
        ..Default::default()
    })
    .await
    .unwrap();
    let first = Instant::now();
    src.ready_once(Duration::from_millis(400)).await.unwrap();
    assert!(
        first.elapsed() >= Duration::from_millis(400),
        "the first call waits for the spoke until its timeout"
    );
    // A second call with a long timeout must not wait for the spoke again.
    tokio::time::timeout(
        Duration::from_secs(5),
        src.ready_once(Duration::from_secs(60)),
    )
    .await
    .expect("the second call returns at once")
    .unwrap();
    let obs = src.observe(&names(&["a"]), Utc::now()).await.unwrap();
    assert_eq!(obs["a"].kustomizations.len(), 1);
}

/// `reconcile --clusters kube`: the canary's step converges only once the hub's Kustomizations
/// report Ready at the merge commit, and not before.
#[test]
fn reconcile_gates_on_the_hub_kustomizations() {
    use fleetwave::git::{Auth, GitRepo};
    use fleetwave::state::{PlanState, StepStatus, WaveStatus};
    let kube = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kube.kubeconfig_yaml()).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-23T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let remote = fleetwave::demo::seed_remote(dir.path(), "gitops-base", start).unwrap();
    let git = GitRepo::open(
        &dir.path().join("check.git"),
        remote.to_str().unwrap(),
        Auth::None,
    )
    .unwrap();
    let flux_at = |rev: &str| {
        for c in ["dev-canary-01", "stg-kamaji-01"] {
            kube.apply(kustomization(
                c,
                &format!("{c}-apps"),
                ("True", "ReconciliationSucceeded"),
                &format!("main@sha1:{rev}"),
                &format!("main@sha1:{rev}"),
                1,
                1,
            ));
        }
    };
    git.fetch().unwrap();
    flux_at(&git.branch_head("main").unwrap().unwrap());
    let state = || -> PlanState {
        git.fetch().unwrap();
        let head = git.branch_head("fleetwave/state").unwrap().unwrap();
        fleetwave::reconcile::read_single_state(&git, &head)
            .unwrap()
            .unwrap()
    };
    let tick = |now: chrono::DateTime<Utc>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetwave"))
            .args([
                "reconcile",
                "--once",
                "--clusters",
                "kube",
                "--remote",
                remote.to_str().unwrap(),
                "--plan",
                "plans/demo.yaml",
            ])
            .args([
                "--cache",
                dir.path().join("cache.git").to_str().unwrap(),
                "--now",
                &now.to_rfc3339(),
            ])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(matches!(out.status.code(), Some(0 | 1)), "{text}");
        text
    };
    tick(start); // opens the canary step
    tick(start + chrono::Duration::minutes(1)); // merges it (automated canary)
    tick(start + chrono::Duration::minutes(2)); // records the merge
    let st = state();
    assert_eq!(st.waves[0].steps[0].status, StepStatus::Merged, "{st:?}");
    // Flux has not applied the merge yet: no convergence, however long we wait.
    tick(start + chrono::Duration::minutes(30));
    assert_eq!(state().waves[0].steps[0].status, StepStatus::Merged);
    // The hub reports Ready at the merge commit: converged, soaking.
    git.fetch().unwrap();
    flux_at(&git.branch_head("main").unwrap().unwrap());
    tick(start + chrono::Duration::minutes(31));
    let st = state();
    assert_eq!(st.waves[0].steps[0].status, StepStatus::Converged, "{st:?}");
    assert_eq!(st.waves[0].status, WaveStatus::Soaking);
}

/// A hub watching Flux plus every upgrade kind.
async fn started_with_kinds(fake: &FakeKube) -> KubeSource {
    use fleetwave::adapters::cluster::kube::{Targets, upgrade_kinds};
    let src = KubeSource::start_with(Targets {
        hub: Some(fake.client()),
        hub_kinds: upgrade_kinds(),
        ..Default::default()
    })
    .await
    .expect("start");
    src.ready(DEADLINE).await.expect("ready");
    src
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_kinds_are_listed_and_watched_once_each_and_mapped_to_clusters() {
    use common::fake_kube::{
        capi_cluster, cluster_deployment, kcp, machine_deployment, tenant_control_plane,
    };
    let fake = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    // CAPI: a KCP found through its owner Cluster (its namespace holds several clusters).
    fake.apply(capi_cluster(
        "capi",
        "a",
        "v1.33.5",
        Some(("True", "ReconcileSucceeded")),
    ));
    let mut cp = kcp("capi", "a-cp", "v1.33.5", "v1.32.4", 3, 1, 3, 2, 2);
    cp["metadata"]["labels"] = serde_json::json!({});
    fake.apply(cp);
    fake.apply(machine_deployment(
        "capi", "a-md-0", "a", "v1.33.5", 3, 3, 3,
    ));
    // Kamaji and k0rdent: by object name.
    fake.apply(tenant_control_plane(
        "tenants", "b", "v1.33.5", "v1.33.5", "Ready",
    ));
    fake.apply(cluster_deployment("kcm", "c", "aws-1-0-43", "v1.33.5", ok));
    for c in ["a", "b", "c"] {
        fake.apply(kustomization(c, "apps", ok, &rev(X), &rev(X), 1, 1));
    }
    let src = started_with_kinds(&fake).await;
    assert!(src.absent_kinds().contains(&"K0sControlPlane".to_string()));
    let obs = src
        .observe(&names(&["a", "b", "c"]), Utc::now())
        .await
        .unwrap();
    let kinds =
        |c: &str| -> Vec<String> { obs[c].components.iter().map(|k| k.kind.clone()).collect() };
    assert_eq!(
        kinds("a"),
        ["Cluster", "KubeadmControlPlane", "MachineDeployment"],
        "{obs:#?}"
    );
    assert_eq!(kinds("b"), ["TenantControlPlane"]);
    assert_eq!(kinds("c"), ["ClusterDeployment"]);
    // Flux is Ready at X everywhere, but a's control plane is still rolling.
    let up = obs["a"].upgrade_in_progress.as_deref().unwrap_or_default();
    assert!(
        up.contains("KubeadmControlPlane capi/a-cp: at v1.32.4"),
        "{up}"
    );
    assert!(matches!(
        convergence(&obs["a"], X, &same),
        Convergence::Waiting(_)
    ));
    assert_eq!(convergence(&obs["b"], X, &same), Convergence::Converged);
    assert_eq!(convergence(&obs["c"], X, &same), Convergence::Converged);

    // One list and one watch per kind, then nothing per tick.
    wait_until("every watch to open", || {
        [
            "clusters",
            "kubeadmcontrolplanes",
            "machinedeployments",
            "tenantcontrolplanes",
            "clusterdeployments",
        ]
        .iter()
        .all(|k| fake.count_kind(k, "WATCH") >= 1)
            && fake.count("WATCH * ") >= 1
    })
    .await;
    let before = fake.requests();
    for _ in 0..20 {
        src.observe(&names(&["a", "b", "c"]), Utc::now())
            .await
            .unwrap();
    }
    assert_eq!(fake.requests(), before, "{:#?}", fake.request_log());
    for k in [
        "clusters",
        "kubeadmcontrolplanes",
        "machinedeployments",
        "tenantcontrolplanes",
        "clusterdeployments",
    ] {
        assert_eq!(
            fake.count_kind(k, "LIST"),
            1,
            "{k}: {:#?}",
            fake.request_log()
        );
        assert_eq!(
            fake.count_kind(k, "WATCH"),
            1,
            "{k}: {:#?}",
            fake.request_log()
        );
        assert_eq!(fake.count_kind(k, "GET"), 0, "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_the_hub_does_not_serve_is_skipped() {
    let fake = FakeKube::start_hiding(&["tenantcontrolplanes", "clusterdeployments"]);
    let ok = ("True", "ReconciliationSucceeded");
    fake.apply(kustomization("a", "apps", ok, &rev(X), &rev(X), 1, 1));
    let src = started_with_kinds(&fake).await;
    let absent = src.absent_kinds();
    assert!(
        absent.contains(&"TenantControlPlane".to_string()),
        "{absent:?}"
    );
    assert!(
        absent.contains(&"ClusterDeployment".to_string()),
        "{absent:?}"
    );
    let obs = src.observe(&names(&["a"]), Utc::now()).await.unwrap();
    assert_eq!(convergence(&obs["a"], X, &same), Convergence::Converged);
    // Discovery says it is not served: never listed, never retried.
    assert_eq!(fake.count_kind("tenantcontrolplanes", "LIST"), 0);
    assert_eq!(fake.count_kind("tenantcontrolplanes", "WATCH"), 0);
    assert_eq!(src.errors(), 0, "{:?}", src.last_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_on_the_control_plane_watch_does_not_lose_the_upgrade_finishing() {
    use common::fake_kube::kcp;
    let fake = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    fake.apply(kustomization("a", "apps", ok, &rev(X), &rev(X), 1, 1));
    fake.apply(kcp("a", "a-cp", "v1.33.5", "v1.32.4", 3, 1, 3, 2, 2));
    let src = started_with_kinds(&fake).await;
    wait_until("the KCP watch to open", || {
        fake.count_kind("kubeadmcontrolplanes", "WATCH") >= 1
    })
    .await;
    let lists = src.lists();
    // History is compacted and, before the watcher reconnects, the rollout finishes.
    fake.compact();
    fake.apply(kcp("a", "a-cp", "v1.33.5", "v1.33.5", 3, 3, 3, 2, 2));
    let obs = observe_until(&src, &["a"], |o| o["a"].upgrade_in_progress.is_none()).await;
    assert_eq!(convergence(&obs["a"], X, &same), Convergence::Converged);
    assert!(src.lists() > lists, "the 410 forced a relist");
    assert!(
        fake.request_log()
            .iter()
            .filter(|l| l.starts_with("LIST kubeadmcontrolplanes"))
            .count()
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_cluster_contexts_read_flux_nodes_pods_and_the_apiserver_version() {
    use common::fake_kube::{node, pod};
    use fleetwave::adapters::cluster::kube::Targets;
    let (a, b) = (FakeKube::start(), FakeKube::start());
    let ok = ("True", "ReconciliationSucceeded");
    for k in [&a, &b] {
        k.apply(kustomization(
            "flux-system",
            "flux-system",
            ok,
            &rev(X),
            &rev(X),
            1,
            1,
        ));
        // Not Flux's own namespace: someone else's Kustomization, ignored.
        k.apply(kustomization(
            "team-x",
            "broken",
            ("False", "BuildFailed"),
            "",
            "",
            1,
            1,
        ));
    }
    a.set_version("v1.33.5");
    b.set_version("v1.32.4");
    a.apply(node("a-0", true, "v1.33.5", true));
    a.apply(node("a-1", false, "v1.33.5", false));
    a.apply(pod("default", "web-0", 2));
    a.apply(pod("kube-system", "dns-0", 3));
    let src = KubeSource::start_with(Targets {
        spokes: vec![("a".into(), a.client()), ("b".into(), b.client())],
        unreachable: BTreeMap::from([("c".to_string(), "no context ctx-c".to_string())]),
        ..Default::default()
    })
    .await
    .unwrap();
    src.ready(DEADLINE).await.unwrap();
    let obs = observe_until(&src, &["a", "b", "c"], |o| {
        ["a", "b"]
            .iter()
            .all(|c| o[*c].components.iter().any(|k| k.kind == "apiserver"))
    })
    .await;
    let na = obs["a"].nodes.as_ref().unwrap();
    assert_eq!((na.total, na.ready), (2, 1));
    assert_eq!(na.not_ready, ["a-1"]);
    assert_eq!(obs["a"].pod_restarts, Some(5));
    assert_eq!(obs["b"].pod_restarts, Some(0));
    assert_eq!(
        obs["a"].kustomizations.len(),
        1,
        "only flux-system is watched"
    );
    assert_eq!(convergence(&obs["a"], X, &same), Convergence::Converged);
    let api = |c: &str| {
        obs[c]
            .components
            .iter()
            .find(|k| k.kind == "apiserver")
            .and_then(|k| k.running.clone())
    };
    assert_eq!(api("a").as_deref(), Some("v1.33.5"));
    assert_eq!(api("b").as_deref(), Some("v1.32.4"));
    // A cluster without a context waits, saying why.
    let c = &obs["c"];
    assert!(
        matches!(convergence(c, X, &same), Convergence::Waiting(r) if r.contains("no context ctx-c"))
    );
    // Scoped watches: Kustomizations only in flux-system, on each spoke.
    assert!(
        a.request_log()
            .iter()
            .any(|l| l.starts_with("LIST flux-system")),
        "{:#?}",
        a.request_log()
    );
    assert_eq!(a.count_kind("nodes", "LIST"), 1);
    assert_eq!(a.count_kind("pods", "LIST"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kustomization_waiting_on_its_source_says_so() {
    use common::fake_kube::git_repository;
    use fleetwave::adapters::cluster::kube::{Targets, source_kinds};
    let fake = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    let mut ks = kustomization("a", "apps", ok, &rev(OLD), &rev(OLD), 1, 1);
    ks["spec"]["sourceRef"] = serde_json::json!({"kind": "GitRepository", "name": "fleet"});
    fake.apply(ks);
    fake.apply(git_repository(
        "a",
        "fleet",
        "https://example.invalid/fleet.git",
        &rev(OLD),
    ));
    let src = KubeSource::start_with(Targets {
        hub: Some(fake.client()),
        hub_kinds: source_kinds(),
        ..Default::default()
    })
    .await
    .unwrap();
    src.ready(DEADLINE).await.unwrap();
    let why = |o: &BTreeMap<String, ClusterObservation>| match convergence(&o["a"], X, &same) {
        Convergence::Waiting(r) => r,
        other => panic!("{other:?}"),
    };
    let obs = src.observe(&names(&["a"]), Utc::now()).await.unwrap();
    assert!(
        why(&obs).contains("source GitRepository a/fleet is at main@sha1:0000"),
        "{}",
        why(&obs)
    );
    // The source fetched the merge commit; the Kustomization has not applied it yet.
    fake.apply(git_repository(
        "a",
        "fleet",
        "https://example.invalid/fleet.git",
        &rev(X),
    ));
    let obs = observe_until(&src, &["a"], |o| {
        o["a"].kustomizations[0]
            .source
            .as_ref()
            .is_some_and(|s| s.revision.as_deref() == Some(rev(X).as_str()))
    })
    .await;
    assert!(why(&obs).contains("has fetched it"), "{}", why(&obs));
    // The source cannot fetch at all: that is the reason shown.
    let mut broken = git_repository("a", "fleet", "https://example.invalid/fleet.git", &rev(OLD));
    broken["status"]["conditions"][0] = serde_json::json!({"type": "Ready", "status": "False",
        "reason": "GitOperationFailed", "message": "authentication required"});
    fake.apply(broken);
    let obs = observe_until(&src, &["a"], |o| {
        o["a"].kustomizations[0]
            .source
            .as_ref()
            .and_then(|s| s.ready.as_ref())
            .is_some_and(|r| r.status == "False")
    })
    .await;
    assert!(
        why(&obs).contains("not Ready: GitOperationFailed authentication required"),
        "{}",
        why(&obs)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomizations_from_other_repositories_count_for_health_only() {
    use common::fake_kube::git_repository;
    use fleetwave::adapters::cluster::kube::{Targets, source_kinds};
    let fake = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    let with_source = |name: &str, ready: (&str, &str), applied: &str, source: &str| {
        let mut k = kustomization("a", name, ready, applied, applied, 1, 1);
        k["spec"]["sourceRef"] = serde_json::json!({"kind": "GitRepository", "name": source});
        k
    };
    fake.apply(git_repository(
        "a",
        "fleet",
        "https://github.com/acme/fleet.git",
        &rev(X),
    ));
    fake.apply(git_repository(
        "a",
        "gitops-base",
        "https://github.com/opencenter-cloud/openCenter-gitops-base.git",
        "v2026.01@sha1:3333333333333333333333333333333333333333",
    ));
    fake.apply(with_source("apps", ok, &rev(X), "fleet"));
    let base = "v2026.01@sha1:3333333333333333333333333333333333333333";
    fake.apply(with_source("cert-manager", ok, base, "gitops-base"));
    let src = KubeSource::start_with(Targets {
        hub: Some(fake.client()),
        hub_kinds: source_kinds(),
        // scp-style remote, https source: the same repository.
        fleet_url: Some("git@github.com:acme/fleet.git".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    src.ready(DEADLINE).await.unwrap();
    let obs = src.observe(&names(&["a"]), Utc::now()).await.unwrap();
    let from: Vec<Option<bool>> = obs["a"]
        .kustomizations
        .iter()
        .map(|k| k.from_fleet)
        .collect();
    assert_eq!(from, [Some(true), Some(false)], "{obs:#?}");
    // The gitops-base revision is no fleet commit, and need not be.
    assert_eq!(convergence(&obs["a"], X, &same), Convergence::Converged);
    // Its health still counts.
    fake.apply(with_source(
        "cert-manager",
        ("False", "HealthCheckFailed"),
        base,
        "gitops-base",
    ));
    let obs = observe_until(&src, &["a"], |o| {
        o["a"].kustomizations[1]
            .condition("Ready")
            .is_some_and(|r| r.status == "False")
    })
    .await;
    assert!(
        matches!(convergence(&obs["a"], X, &same), Convergence::Waiting(r) if r.contains("cert-manager is not Ready")),
        "{obs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_whose_api_server_goes_away_is_unobservable_not_stale() {
    use common::fake_kube::node;
    use fleetwave::adapters::cluster::kube::Targets;
    let spoke = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    spoke.apply(kustomization(
        "flux-system",
        "flux-system",
        ok,
        &rev(X),
        &rev(X),
        1,
        1,
    ));
    spoke.apply(node("n-0", true, "v1.33.0", true));
    let src = KubeSource::start_with(Targets {
        spokes: vec![("a".into(), spoke.client())],
        version_every: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    src.ready(DEADLINE).await.unwrap();
    let obs = observe_until(&src, &["a"], |o| !o["a"].components.is_empty()).await;
    assert_eq!(obs["a"].unobservable, None);
    assert!(fleetwave::gates::nodes(&obs["a"]).ok);
    // The API server goes away; the stores still hold "all Ready at X".
    drop(spoke);
    let obs = observe_until(&src, &["a"], |o| o["a"].unobservable.is_some()).await;
    let why = obs["a"].unobservable.clone().unwrap();
    assert!(why.contains("does not answer"), "{why}");
    assert!(matches!(
        convergence(&obs["a"], X, &same),
        Convergence::Waiting(_)
    ));
    assert!(!fleetwave::gates::nodes(&obs["a"]).ok);
    assert!(fleetwave::cluster::unhealthy(&obs["a"]).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_hub_is_listed_in_pages() {
    let fake = FakeKube::start();
    let ok = ("True", "ReconciliationSucceeded");
    let clusters: Vec<String> = (0..1200).map(|i| format!("c{i:04}")).collect();
    for c in &clusters {
        fake.apply(kustomization(c, "apps", ok, &rev(X), &rev(X), 1, 1));
    }
    let src = started(&fake).await;
    assert_eq!(src.len(), 1200);
    let obs = src.observe(&clusters, Utc::now()).await.unwrap();
    assert!(obs.values().all(|o| o.kustomizations.len() == 1));
    // kube-rs asks for 500 at a time: three pages, one list.
    assert_eq!(fake.count("LIST *"), 3, "{:#?}", fake.request_log());
    assert_eq!(src.lists(), 1);
}
