//! Recorded-style status objects (`fixtures/status/*.json`) against the crate's pure readers:
//! Flux Kustomizations through `status_of` + `convergence`, CAPI / Kamaji / k0rdent objects
//! through `upgrade::component`, Nodes through `node_summary`, Pods through `pod_restarts`.
//!
//! Each fixture states what it should read as in `metadata.annotations["fleetwave.test/expect"]`:
//! an outcome word and/or `key=value` checks, e.g. `converged`, `settled running=v1.33.5`,
//! `notready kubelet=v1.33.5`, `restarts=3`. A fixture where the crate is believed wrong also
//! carries `fleetwave.test/crate-disagrees` (why); its case passes only while the crate still
//! disagrees, so fixing the crate makes the test ask for the mark to be removed.
//!
//! Plus the fake API server seeded from the same directory, read through kube-rs (lists,
//! discovery, a hidden CRD), and a node watcher that relists after a 410.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use common::fake_kube::{self, FakeKube};
use fleetwave::adapters::cluster::kube::status_of;
use fleetwave::cluster::upgrade::{component, node_summary, pod_restarts};
use fleetwave::cluster::{ClusterObservation, Convergence, convergence, revision_hash};
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

/// The merge commit.
const X: &str = "1111111111111111111111111111111111111111";
/// A descendant of X.
const Y: &str = "2222222222222222222222222222222222222222";
/// Older than X (for reference; fixtures use it as the previous revision).
const OLD: &str = "0000000000000000000000000000000000000000";
const EXPECT: &str = "fleetwave.test/expect";
const DISAGREES: &str = "fleetwave.test/crate-disagrees";
const DEADLINE: Duration = Duration::from_secs(20);

/// Every variant the fixtures must hold: Flux Kustomizations and sources, the upgrade
/// objects (CAPI, Kamaji, k0rdent), nodes and pods.
const REQUIRED: &[&str] = &[
    // Flux Kustomization
    "ks-ready-at-merge.json",
    "ks-tag-revision.json",
    "ks-refs-heads-revision.json",
    "ks-bare-sha1-revision.json",
    "ks-legacy-slash-revision.json",
    "ks-descendant-revision.json",
    "ks-health-check-failed.json",
    "ks-progressing-with-retry.json",
    "ks-dependency-not-ready.json",
    "ks-stale-observed-generation.json",
    "ks-stalled-build-failed.json",
    "ks-healthy-false.json",
    "ks-healthy-false-degraded-at-merge.json",
    "ks-still-at-old.json",
    "ks-no-status.json",
    "ks-oci-sha256-revision.json",
    // Flux sources (no version to report)
    "gitrepository-ready.json",
    "ocirepository-v1beta2-ready.json",
    // CAPI KubeadmControlPlane
    "kcp-rolling.json",
    "kcp-two-of-three-updated.json",
    "kcp-settled.json",
    "kcp-v1beta2-settled.json",
    "kcp-stale-observed-generation.json",
    // CAPI MachineDeployment
    "md-one-of-three-updated.json",
    "md-settled.json",
    // CAPI Cluster (topology)
    "cluster-topology-upgrading.json",
    "cluster-topology-reconciled.json",
    "cluster-v1beta2-rolling-out.json",
    "cluster-v1beta1-v1beta2-conditions-rolling-out.json",
    // Kamaji TenantControlPlane
    "tcp-upgrading.json",
    "tcp-ready-at-target.json",
    "tcp-ready-version-behind-spec.json",
    "tcp-provisioning.json",
    "tcp-ready-without-observed-generation.json",
    // k0rdent ClusterDeployment
    "cd-ready.json",
    "cd-not-ready.json",
    "cd-stale-observed-generation.json",
    "cd-hmc-v1alpha1-ready.json",
    // Nodes
    "node-cp-ready.json",
    "node-worker-ready-old-kubelet.json",
    "node-worker-not-ready.json",
    "node-worker-unknown.json",
    // Pods
    "pod-no-restarts.json",
    "pod-restarts-3.json",
    "pod-init-container-restarts.json",
];

/// X is the merge commit; anything starting like Y descends from it; OLD precedes it.
fn descends(a: &str, b: &str) -> bool {
    a == b || (a.starts_with(&Y[..7]) && b == X)
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/status")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Kustomization,
    Component,
    Node,
    Pod,
}

#[derive(Debug)]
struct Fixture {
    file: String,
    obj: Value,
    category: Category,
    /// The outcome word (`converged`, `settled`, `ready`, ...), if any.
    outcome: Option<String>,
    /// `key=value` checks.
    params: BTreeMap<String, String>,
    /// Why the crate is believed wrong here (the case expects the crate to disagree).
    disagrees: Option<String>,
}

impl Fixture {
    fn param(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }
}

fn category(obj: &Value) -> Category {
    let api = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    match (api, obj.get("kind").and_then(Value::as_str).unwrap_or("")) {
        (a, "Kustomization") if a.starts_with("kustomize.toolkit.fluxcd.io/") => {
            Category::Kustomization
        }
        ("v1", "Node") => Category::Node,
        ("v1", "Pod") => Category::Pod,
        _ => Category::Component,
    }
}

/// Every fixture, sorted by file name. Panics on unreadable files, bad JSON, or a fixture
/// without a well-formed expectation for its kind.
fn load() -> Vec<Fixture> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("fixtures/status")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files.iter().map(|p| parse(p)).collect()
}

fn parse(path: &Path) -> Fixture {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let obj: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(
        obj.get("items").is_none(),
        "{file}: one object per fixture file"
    );
    let annotation = |k: &str| {
        obj.pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let expect = annotation(EXPECT)
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| panic!("{file}: no metadata.annotations[{EXPECT:?}]"));
    let mut outcome = None;
    let mut params = BTreeMap::new();
    for token in expect.split_whitespace() {
        match token.split_once('=') {
            Some((k, v)) => {
                assert!(
                    params.insert(k.to_string(), v.to_string()).is_none(),
                    "{file}: {k} given twice in {expect:?}"
                );
            }
            None => {
                assert!(
                    outcome.replace(token.to_string()).is_none(),
                    "{file}: more than one outcome in {expect:?}"
                );
            }
        }
    }
    let disagrees = annotation(DISAGREES);
    let category = category(&obj);
    let (outcomes, keys): (&[&str], &[&str]) = match category {
        Category::Kustomization => (&["converged", "waiting", "failed", "parsed"], &[]),
        Category::Component => (&["settled", "progress", "ignored"], &["running", "role"]),
        Category::Node => (&["ready", "notready"], &["kubelet"]),
        Category::Pod => (&[], &["restarts"]),
    };
    match &outcome {
        Some(o) => assert!(
            outcomes.contains(&o.as_str()),
            "{file}: outcome {o:?} is not one of {outcomes:?} for {category:?}"
        ),
        None => assert!(
            outcomes.is_empty(),
            "{file}: expectation {expect:?} names no outcome (one of {outcomes:?})"
        ),
    }
    for k in params.keys() {
        assert!(
            keys.contains(&k.as_str()),
            "{file}: unknown check {k:?} for {category:?} (known: {keys:?})"
        );
    }
    if category == Category::Pod {
        assert!(params.contains_key("restarts"), "{file}: needs restarts=N");
    }
    Fixture {
        file,
        obj,
        category,
        outcome,
        params,
        disagrees,
    }
}

fn word(c: &Convergence) -> &'static str {
    match c {
        Convergence::Converged => "converged",
        Convergence::Waiting(_) => "waiting",
        Convergence::Failed(_) => "failed",
    }
}

/// Compare one fixture with the crate; Err says how they differ.
fn check(f: &Fixture) -> Result<(), String> {
    let want = f.outcome.as_deref().unwrap_or("");
    match f.category {
        Category::Kustomization => {
            let dynamic: DynamicObject =
                serde_json::from_value(f.obj.clone()).map_err(|e| format!("DynamicObject: {e}"))?;
            let status = status_of(&dynamic);
            let obs = ClusterObservation {
                kustomizations: vec![status.clone()],
                ..Default::default()
            };
            if want == "parsed" {
                // The hash part of an OCI digest revision is what gets compared.
                let rev = status
                    .last_applied_revision
                    .clone()
                    .ok_or("no lastAppliedRevision read")?;
                let digest = rev.rsplit_once(':').map_or("", |(_, d)| d);
                let hash =
                    revision_hash(&rev).ok_or_else(|| format!("revision_hash({rev:?}) is None"))?;
                if hash != digest {
                    return Err(format!(
                        "revision_hash({rev:?}) = {hash:?}, want {digest:?}"
                    ));
                }
                let got = convergence(&obs, hash, &descends);
                if got != Convergence::Converged {
                    return Err(format!("at its own digest: {got:?}, want Converged"));
                }
                return Ok(());
            }
            let got = convergence(&obs, X, &descends);
            if word(&got) == want {
                Ok(())
            } else {
                Err(format!("convergence(.., X) = {got:?}, want {want}"))
            }
        }
        Category::Component => {
            let got = component(&f.obj);
            let Some(c) = got else {
                return if want == "ignored" {
                    Ok(())
                } else {
                    Err(format!("component() is None, want {want}"))
                };
            };
            if want == "ignored" {
                return Err(format!("component() = {c:?}, want None"));
            }
            let settled = c.progress.is_none();
            if settled != (want == "settled") {
                return Err(format!("progress {:?}, want {want}", c.progress));
            }
            let kind = f.obj["kind"].as_str().unwrap_or("");
            let name = match (
                f.obj.pointer("/metadata/namespace").and_then(Value::as_str),
                f.obj.pointer("/metadata/name").and_then(Value::as_str),
            ) {
                (Some(ns), Some(n)) => format!("{ns}/{n}"),
                (None, Some(n)) => n.to_string(),
                _ => String::new(),
            };
            if c.kind != kind || c.name != name {
                return Err(format!("identified as {} {}", c.kind, c.name));
            }
            if let Some(r) = f.param("running")
                && c.running.as_deref() != Some(r)
            {
                return Err(format!("running {:?}, want {r}", c.running));
            }
            if let Some(r) = f.param("role")
                && serde_json::to_value(c.role).ok() != Some(json!(r))
            {
                return Err(format!("role {:?}, want {r}", c.role));
            }
            Ok(())
        }
        Category::Node => {
            let s = node_summary([&f.obj]);
            let name = f.obj["metadata"]["name"].as_str().unwrap_or("");
            let ready = want == "ready";
            let ok = s.total == 1
                && s.ready == u32::from(ready)
                && s.not_ready
                    == if ready {
                        vec![]
                    } else {
                        vec![name.to_string()]
                    };
            if !ok {
                return Err(format!("node_summary = {s:?}, want {want}"));
            }
            if let Some(k) = f.param("kubelet")
                && s.kubelets.get(k) != Some(&1)
            {
                return Err(format!("kubelets {:?}, want {k}", s.kubelets));
            }
            Ok(())
        }
        Category::Pod => {
            let want: u64 = f
                .param("restarts")
                .and_then(|r| r.parse().ok())
                .ok_or("restarts=N must be a number")?;
            match pod_restarts(&f.obj) {
                n if n == want => Ok(()),
                n => Err(format!("pod_restarts = {n}, want {want}")),
            }
        }
    }
}

/// Check every fixture of a category. A case marked as a crate disagreement must still
/// disagree (it is reported, not failed); any other mismatch fails.
fn check_all(category: Category) -> usize {
    let fixtures: Vec<Fixture> = load()
        .into_iter()
        .filter(|f| f.category == category)
        .collect();
    assert!(!fixtures.is_empty(), "no {category:?} fixtures");
    let mut failures = Vec::new();
    for f in &fixtures {
        match (check(f), &f.disagrees) {
            (Ok(()), None) => {}
            (Err(e), None) => failures.push(format!("{}: {e}", f.file)),
            (Err(e), Some(why)) => {
                eprintln!("KNOWN CRATE DISAGREEMENT {}: {e}\n  why: {why}", f.file);
            }
            (Ok(()), Some(_)) => failures.push(format!(
                "{}: the crate now agrees with the expectation; remove the {DISAGREES} \
                 annotation from the fixture",
                f.file
            )),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    fixtures.len()
}

#[test]
fn every_variant_has_a_fixture_and_every_fixture_an_expectation() {
    // `load` panics on a fixture without a well-formed expectation.
    let fixtures = load();
    let have: BTreeSet<&str> = fixtures.iter().map(|f| f.file.as_str()).collect();
    let missing: Vec<&&str> = REQUIRED.iter().filter(|r| !have.contains(**r)).collect();
    assert!(missing.is_empty(), "missing fixtures: {missing:?}");
    // Unique (resource, namespace, name), so seeding the fake keeps every one.
    let mut keys = BTreeSet::new();
    for f in &fixtures {
        let key = (
            f.obj["apiVersion"].as_str().unwrap_or("").to_string(),
            f.obj["kind"].as_str().unwrap_or("").to_string(),
            f.obj.pointer("/metadata/namespace").map(Value::to_string),
            f.obj.pointer("/metadata/name").map(Value::to_string),
        );
        assert!(
            keys.insert(key),
            "{}: same object as another fixture",
            f.file
        );
        assert!(
            f.obj.pointer("/metadata/managedFields").is_none(),
            "{}: keep fixtures managedFields-free",
            f.file
        );
    }
    // The revisions the Kustomization fixtures use are the three commits of this file.
    for f in fixtures
        .iter()
        .filter(|f| f.category == Category::Kustomization)
    {
        for field in ["lastAppliedRevision", "lastAttemptedRevision"] {
            if let Some(rev) = f.obj["status"][field].as_str() {
                let h = revision_hash(rev).unwrap_or("");
                assert!(
                    [X, Y, OLD].contains(&h) || h.len() == 64,
                    "{}: {field} {rev:?} is not at X, Y, OLD or an OCI digest",
                    f.file
                );
            }
        }
    }
}

#[test]
fn kustomization_fixtures_converge_as_annotated() {
    assert!(check_all(Category::Kustomization) >= 16);
}

#[test]
fn upgrade_fixtures_report_progress_as_annotated() {
    assert!(check_all(Category::Component) >= 20);
}

#[test]
fn node_and_pod_fixtures_read_as_annotated() {
    check_all(Category::Node);
    check_all(Category::Pod);
    // All nodes together: counts and kubelet versions add up from the single-node cases.
    let nodes: Vec<Fixture> = load()
        .into_iter()
        .filter(|f| f.category == Category::Node)
        .collect();
    let s = node_summary(nodes.iter().map(|f| &f.obj));
    assert_eq!(s.total as usize, nodes.len());
    let ready = nodes
        .iter()
        .filter(|f| f.outcome.as_deref() == Some("ready"))
        .count();
    assert_eq!(s.ready as usize, ready, "{s:?}");
    let mut kubelets: BTreeMap<String, u32> = BTreeMap::new();
    for f in &nodes {
        *kubelets
            .entry(f.param("kubelet").expect("kubelet=").to_string())
            .or_default() += 1;
    }
    assert_eq!(s.kubelets, kubelets);
    let mut not_ready: Vec<String> = nodes
        .iter()
        .filter(|f| f.outcome.as_deref() == Some("notready"))
        .map(|f| f.obj["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    not_ready.sort();
    assert_eq!(s.not_ready, not_ready);
}

/// `(settled, running)` as `component` reads an object.
fn reading(v: &Value) -> Option<(bool, Option<String>)> {
    component(v).map(|c| (c.progress.is_none(), c.running))
}

fn names(objs: &[DynamicObject]) -> BTreeSet<String> {
    objs.iter()
        .map(|o| o.metadata.name.clone().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_seeded_from_the_fixtures_serves_them_through_kube_rs() {
    let fixtures = load();
    let fake = FakeKube::start();
    assert_eq!(fake.seed_dir(&dir()), fixtures.len());
    fake.set_version("v1.33.5");
    let client = fake.client();
    let of_kind = |kind: &str, group: &str| -> Vec<&Fixture> {
        fixtures
            .iter()
            .filter(|f| {
                f.obj["kind"] == kind && f.obj["apiVersion"].as_str().unwrap().starts_with(group)
            })
            .collect()
    };

    // KubeadmControlPlanes in all namespaces, v1beta1 and v1beta2 objects alike, read the
    // same through the server as from the files.
    let kcp = fake_kube::resource("kubeadmcontrolplanes");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &kcp.api_resource());
    let listed = api
        .list(&ListParams::default())
        .await
        .expect("list KCPs")
        .items;
    let want = of_kind("KubeadmControlPlane", "controlplane.cluster.x-k8s.io/");
    assert_eq!(
        names(&listed),
        want.iter()
            .map(|f| f.obj["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    );
    for o in &listed {
        let v = serde_json::to_value(o).unwrap();
        assert_eq!(v["apiVersion"], "controlplane.cluster.x-k8s.io/v1beta1");
        let f = want
            .iter()
            .find(|f| f.obj["metadata"]["name"] == v["metadata"]["name"])
            .unwrap();
        assert_eq!(reading(&v), reading(&f.obj), "{}", f.file);
    }

    // TenantControlPlanes in one namespace.
    let tcp = fake_kube::resource("tenantcontrolplanes");
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "kamaji-tenants", &tcp.api_resource());
    let listed = api
        .list(&ListParams::default())
        .await
        .expect("list TCPs")
        .items;
    assert_eq!(
        listed.len(),
        of_kind("TenantControlPlane", "kamaji.clastix.io/").len()
    );
    let settled = listed
        .iter()
        .filter(|o| reading(&serde_json::to_value(o).unwrap()).is_some_and(|(s, _)| s))
        .count();
    assert!(settled >= 1, "{listed:?}");

    // k0rdent and the legacy hmc group are separate resources.
    let cd = fake_kube::resource_for("k0rdent.mirantis.com/v1beta1", "ClusterDeployment").unwrap();
    let hmc = fake_kube::resource_for("hmc.mirantis.com/v1alpha1", "ClusterDeployment").unwrap();
    let k0 = Api::<DynamicObject>::all_with(client.clone(), &cd.api_resource())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let old = Api::<DynamicObject>::all_with(client.clone(), &hmc.api_resource())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        k0.len(),
        of_kind("ClusterDeployment", "k0rdent.mirantis.com/").len()
    );
    assert_eq!(names(&old), BTreeSet::from(["cd-hmc-legacy".to_string()]));

    // Nodes (cluster-scoped), filtered by a label selector on the server.
    let nodes = fake_kube::resource("nodes");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &nodes.api_resource());
    let all = api.list(&ListParams::default()).await.unwrap().items;
    let node_values: Vec<Value> = all
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    let from_files: Vec<&Value> = of_kind("Node", "v1").iter().map(|f| &f.obj).collect();
    assert_eq!(node_summary(&node_values), node_summary(from_files));
    let workers = api
        .list(&ListParams::default().labels("!node-role.kubernetes.io/control-plane"))
        .await
        .unwrap()
        .items;
    assert_eq!(workers.len(), all.len() - 1);

    let log = fake.request_log();
    assert!(
        log.contains(&"LIST kubeadmcontrolplanes *".to_string()),
        "{log:#?}"
    );
    assert!(
        log.contains(&"LIST tenantcontrolplanes kamaji-tenants".to_string()),
        "{log:#?}"
    );
    assert_eq!(fake.count_kind("kubeadmcontrolplanes", "LIST"), 1);
    assert_eq!(fake.count_kind("clusterdeployments", "LIST"), 2);
    assert_eq!(fake.count_kind("nodes", "LIST"), 2);
    assert_eq!(fake.count_kind("kustomizations", "LIST"), 0);

    // /version and discovery, plain and aggregated.
    let info = client.apiserver_version().await.unwrap();
    assert_eq!(
        (
            info.git_version.as_str(),
            info.major.as_str(),
            info.minor.as_str()
        ),
        ("v1.33.5", "1", "33")
    );
    let tcp_gvk =
        kube::api::GroupVersionKind::gvk("kamaji.clastix.io", "v1alpha1", "TenantControlPlane");
    let d = kube::Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let (ar, caps) = d
        .resolve_gvk(&tcp_gvk)
        .expect("TenantControlPlane discovered");
    assert_eq!(ar.plural, "tenantcontrolplanes");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let node_gvk = kube::api::GroupVersionKind::gvk("", "v1", "Node");
    let (_, caps) = d.resolve_gvk(&node_gvk).expect("Node discovered");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    assert_eq!(
        d.get("source.toolkit.fluxcd.io")
            .map(|g| g.versions().collect::<Vec<_>>()),
        Some(vec!["v1", "v1beta2"])
    );
    let agg = kube::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    assert!(agg.resolve_gvk(&tcp_gvk).is_some());
    assert!(agg.resolve_gvk(&node_gvk).is_some());

    // Kamaji not installed: 404 on list, gone from discovery.
    fake.hide("tenantcontrolplanes");
    let err = Api::<DynamicObject>::all_with(client.clone(), &tcp.api_resource())
        .list(&ListParams::default())
        .await
        .expect_err("hidden resource");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "{err:?}"
    );
    let d = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(d.resolve_gvk(&tcp_gvk).is_none());
    assert!(!d.has_group("kamaji.clastix.io"));
    assert!(d.has_group("cluster.x-k8s.io"));
    assert_eq!(fake.count_kind("tenantcontrolplanes", "LIST"), 2);
    assert!(
        fake.request_log()
            .contains(&"LIST tenantcontrolplanes * (404)".to_string())
    );
}

/// What the node watcher has seen, kept by the task that drives it.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Nodes by name, as of the last complete list plus later events.
    nodes: BTreeMap<String, Value>,
    /// Objects of a list in progress (between Init and InitDone).
    buffer: Option<BTreeMap<String, Value>>,
    /// Lists started (the first one and every relist).
    inits: usize,
    /// Completed lists.
    listed: usize,
    errors: Vec<String>,
}

async fn next_event<S>(s: &mut S) -> Option<S::Item>
where
    S: WatchStreamExt + Unpin,
{
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

fn node_value(o: DynamicObject) -> (String, Value) {
    (
        o.metadata.name.clone().unwrap_or_default(),
        serde_json::to_value(&o).unwrap(),
    )
}

/// Wait (at most DEADLINE) until `cond` holds for what the watcher has seen.
async fn seen_until(
    rx: &mut tokio::sync::watch::Receiver<Seen>,
    what: &str,
    cond: impl Fn(&Seen) -> bool,
) -> Seen {
    let got = match tokio::time::timeout(DEADLINE, rx.wait_for(|s| cond(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        Ok(Err(_)) => panic!("watcher task ended before {what}"),
        Err(_) => None,
    };
    got.unwrap_or_else(|| panic!("timed out waiting for {what}; seen: {:#?}", *rx.borrow()))
}

fn kubelet(s: &Seen, node: &str) -> Option<String> {
    s.nodes
        .get(node)?
        .pointer("/status/nodeInfo/kubeletVersion")?
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_watcher_relists_after_410_and_keeps_following_changes() {
    let fake = FakeKube::start();
    fake.apply(fake_kube::node("cp-0", true, "v1.33.5", true));
    fake.apply(fake_kube::node("w-0", true, "v1.32.4", false));
    fake.apply(fake_kube::node("w-1", false, "v1.32.4", false));
    // Pods share the resourceVersion counter but never reach a node watch.
    fake.apply(fake_kube::pod("podinfo", "podinfo-abc", 2));

    let api: Api<DynamicObject> =
        Api::all_with(fake.client(), &fake_kube::resource("nodes").api_resource());
    let config = watcher::Config::default().labels("!node-role.kubernetes.io/control-plane");
    let mut events = Box::pin(watcher(api, config).default_backoff());
    let (tx, mut rx) = tokio::sync::watch::channel(Seen::default());
    let driver = tokio::spawn(async move {
        while let Some(ev) = next_event(&mut events).await {
            tx.send_modify(|s| match ev {
                Ok(watcher::Event::Init) => {
                    s.inits += 1;
                    s.buffer = Some(BTreeMap::new());
                }
                Ok(watcher::Event::InitApply(o)) => {
                    let (k, v) = node_value(o);
                    s.buffer.get_or_insert_default().insert(k, v);
                }
                Ok(watcher::Event::InitDone) => {
                    s.nodes = s.buffer.take().unwrap_or_default();
                    s.listed += 1;
                }
                Ok(watcher::Event::Apply(o)) => {
                    let (k, v) = node_value(o);
                    s.nodes.insert(k, v);
                }
                Ok(watcher::Event::Delete(o)) => {
                    s.nodes.remove(&node_value(o).0);
                }
                Err(e) => s.errors.push(e.to_string()),
            });
        }
    });

    let s = seen_until(&mut rx, "the first list", |s| s.listed == 1).await;
    assert_eq!(
        s.nodes.keys().collect::<Vec<_>>(),
        ["w-0", "w-1"],
        "the control-plane node is filtered out by the label selector"
    );
    // The watch is open before history is compacted away under it.
    let start = Instant::now();
    while fake.count_kind("nodes", "WATCH") == 0 {
        assert!(start.elapsed() < DEADLINE, "{:#?}", fake.request_log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Compaction closes the watch; while the watcher reconnects, w-1 becomes Ready on the new
    // kubelet and w-0 goes away. Resuming from its resourceVersion gets 410 Expired, so the
    // watcher can only see these by relisting.
    fake.compact();
    fake.apply(fake_kube::node("w-1", true, "v1.33.5", false));
    fake.delete_kind("v1", "Node", "", "w-0");
    let s = seen_until(&mut rx, "the relist after 410", |s| {
        s.listed >= 2 && kubelet(s, "w-1").as_deref() == Some("v1.33.5")
    })
    .await;
    assert_eq!(s.nodes.keys().collect::<Vec<_>>(), ["w-1"]);
    let summary = node_summary(s.nodes.values());
    assert_eq!((summary.total, summary.ready), (1, 1), "{summary:?}");
    assert!(
        s.errors
            .iter()
            .any(|e| e.contains("410") || e.contains("Expired")),
        "{:?}",
        s.errors
    );
    let lists = fake.count_kind("nodes", "LIST");
    assert!(lists >= 2, "{:#?}", fake.request_log());
    assert!(
        fake.request_log()
            .iter()
            .any(|l| l.starts_with("WATCH nodes * rv=")
                && l.ends_with("labelSelector=!node-role.kubernetes.io/control-plane")),
        "{:#?}",
        fake.request_log()
    );

    // A later change arrives over the re-established watch, without another list; a change
    // to the filtered-out control-plane node never shows up.
    fake.apply(fake_kube::node("cp-0", false, "v1.33.5", true));
    fake.apply(fake_kube::node("w-2", true, "v1.33.5", false));
    let s = seen_until(&mut rx, "w-2 over the watch", |s| {
        s.nodes.contains_key("w-2")
    })
    .await;
    assert_eq!(s.nodes.keys().collect::<Vec<_>>(), ["w-1", "w-2"]);
    assert_eq!(fake.count_kind("nodes", "LIST"), lists);
    assert_eq!(fake.count_kind("pods", "WATCH"), 0);
    driver.abort();
}
