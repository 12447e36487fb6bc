#![allow(dead_code)]
//! A fake Kubernetes API server, enough for kube-rs' client, watcher and discovery, serving
//! the kinds fleetwave reads: core `nodes` and `pods`, `policy/v1` PodDisruptionBudgets, Flux Kustomizations, GitRepositories
//! and OCIRepositories, CAPI Clusters, MachineDeployments and KubeadmControlPlanes, Kamaji
//! TenantControlPlanes and k0rdent (and the older hmc) ClusterDeployments ([`RESOURCES`]).
//!
//! Like a real API server backed by etcd, every kind shares one resourceVersion counter and
//! one event history. Per resource it serves list (all namespaces or one), get, and watch as
//! a chunked stream of JSON lines from a resourceVersion, with periodic BOOKMARKs and
//! `410 Expired` as an `ERROR` watch event (what a real API server sends) once the requested
//! resourceVersion is older than the compaction point. Equality and set-based label selectors
//! and simple field selectors are honoured on lists and watches. Discovery: `/version`, `/api`,
//! `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`, and aggregated discovery (`/api`, `/apis`
//! with the `apidiscovery.k8s.io/v2` Accept header). A resource can be hidden, as if its CRD
//! were not installed: 404 on every path and absent from discovery.
//!
//! Objects are stored once per resource (group + plural) and served at every version the
//! resource has, with `apiVersion` rewritten to the version asked for (no field conversion).
//! As a real API server does, list items of core kinds carry no `apiVersion`/`kind`.
//!
//! It speaks HTTP/1.1 directly over tokio sockets rather than through axum: a watch response
//! is an endless body, and axum can only stream from a `futures::Stream`, which this crate
//! cannot name without a direct `futures` dependency. Serving by hand also lets it count every
//! request exactly, which the "no GET per cluster" test relies on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// The default `/version` answer.
pub const DEFAULT_GIT_VERSION: &str = "v1.33.0-fake";

/// One served resource: a built-in kind or a CRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// API group; "" for core (`/api/v1`).
    pub group: &'static str,
    /// Served versions; the group's preferred version comes from its first resource.
    pub versions: &'static [&'static str],
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
}

const fn res(
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        versions,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
    }
}

/// Every resource the fake serves (unless hidden). Objects are keyed by (group, plural,
/// namespace, name); `apply` finds the resource from `apiVersion` + `kind`.
pub const RESOURCES: &[Resource] = &[
    res("", &["v1"], "Node", "nodes", "node", false, &["no"]),
    res("", &["v1"], "Pod", "pods", "pod", true, &["po"]),
    res(
        "policy",
        &["v1"],
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        &["pdb"],
    ),
    res(
        "kustomize.toolkit.fluxcd.io",
        &["v1"],
        "Kustomization",
        "kustomizations",
        "kustomization",
        true,
        &["ks"],
    ),
    res(
        "source.toolkit.fluxcd.io",
        &["v1"],
        "GitRepository",
        "gitrepositories",
        "gitrepository",
        true,
        &["gitrepo"],
    ),
    res(
        "source.toolkit.fluxcd.io",
        &["v1beta2", "v1"],
        "OCIRepository",
        "ocirepositories",
        "ocirepository",
        true,
        &["ocirepo"],
    ),
    res(
        "cluster.x-k8s.io",
        &["v1beta1", "v1beta2"],
        "Cluster",
        "clusters",
        "cluster",
        true,
        &["cl"],
    ),
    res(
        "cluster.x-k8s.io",
        &["v1beta1", "v1beta2"],
        "MachineDeployment",
        "machinedeployments",
        "machinedeployment",
        true,
        &["md"],
    ),
    res(
        "controlplane.cluster.x-k8s.io",
        &["v1beta1", "v1beta2"],
        "KubeadmControlPlane",
        "kubeadmcontrolplanes",
        "kubeadmcontrolplane",
        true,
        &["kcp"],
    ),
    res(
        "kamaji.clastix.io",
        &["v1alpha1"],
        "TenantControlPlane",
        "tenantcontrolplanes",
        "tenantcontrolplane",
        true,
        &["tcp"],
    ),
    res(
        "k0rdent.mirantis.com",
        &["v1beta1", "v1alpha1"],
        "ClusterDeployment",
        "clusterdeployments",
        "clusterdeployment",
        true,
        &["clusterd", "cld"],
    ),
    // k0rdent's former name: clusters upgraded from hmc may still carry it.
    res(
        "hmc.mirantis.com",
        &["v1alpha1"],
        "ClusterDeployment",
        "clusterdeployments",
        "clusterdeployment",
        true,
        &["clusterd", "cld"],
    ),
];

impl Resource {
    /// `group/version`, or just `version` for core.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// The group's preferred version (where this resource is served).
    pub fn preferred_version(&self) -> &'static str {
        let pv = preferred_version(self.group);
        if self.versions.contains(&pv) {
            pv
        } else {
            self.versions[0]
        }
    }

    /// A kube-rs `ApiResource` for this resource at its preferred version.
    pub fn api_resource(&self) -> kube::api::ApiResource {
        self.api_resource_at(self.preferred_version())
    }

    /// A kube-rs `ApiResource` for this resource at `version`.
    pub fn api_resource_at(&self, version: &str) -> kube::api::ApiResource {
        let gvk = kube::api::GroupVersionKind::gvk(self.group, version, self.kind);
        kube::api::ApiResource::from_gvk_with_plural(&gvk, self.plural)
    }

    /// `plural.group` (`plural` for core): the name `hide` takes to pick one resource.
    pub fn id(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn is_kustomization(&self) -> bool {
        self.group == "kustomize.toolkit.fluxcd.io" && self.plural == "kustomizations"
    }
}

/// The resource for an object's `apiVersion` and `kind`, if served at that version.
pub fn resource_for(api_version: &str, kind: &str) -> Option<&'static Resource> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind && r.versions.contains(&version))
}

/// Resources a name picks: `plural` (in every group) or `plural.group` (exactly one).
pub fn resources_named(name: &str) -> Vec<&'static Resource> {
    RESOURCES
        .iter()
        .filter(|r| r.plural == name || r.id() == name)
        .collect()
}

/// The resource for a plural name (the first group serving it). Panics on an unknown name.
pub fn resource(plural: &str) -> &'static Resource {
    resources_named(plural)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("fake_kube serves no resource named {plural:?}"))
}

fn preferred_version(group: &str) -> &'static str {
    RESOURCES
        .iter()
        .find(|r| r.group == group)
        .map_or("v1", |r| r.versions[0])
}

/// A running fake API server; stops when dropped.
pub struct FakeKube {
    base_url: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped on every change so open watches wake up.
    changed: tokio::sync::watch::Sender<u64>,
    requests: AtomicUsize,
    log: Mutex<Vec<LogEntry>>,
    bookmark_every: Mutex<Duration>,
    /// `Resource::id`s answered with 404 and left out of discovery.
    hidden: Mutex<BTreeSet<String>>,
    git_version: Mutex<String>,
    /// `apiserver_requested_deprecated_apis` series served on `/metrics`:
    /// (group, version, resource, removed_release).
    deprecated: Mutex<Vec<[String; 4]>>,
    /// `coordination.k8s.io/v1` Leases by (namespace, name): get, list, create and replace.
    leases: Mutex<BTreeMap<(String, String), Value>>,
    /// Lease writes answered 409 since the start (lost optimistic-concurrency races).
    lease_conflicts: AtomicUsize,
}

struct LogEntry {
    line: String,
    verb: &'static str,
    /// The resource of a LIST/WATCH/GET of objects; None for discovery and unknown paths.
    plural: Option<&'static str>,
}

/// (group, plural, namespace, name); namespace "" for cluster-scoped objects.
type Key = (&'static str, &'static str, String, String);

#[derive(Default)]
struct State {
    /// Last resourceVersion handed out (etcd revision), shared by every kind.
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// Events after the compaction point, oldest first, of every kind.
    history: Vec<Event>,
    /// Watches from a resourceVersion below this get 410 Expired.
    compacted: u64,
    /// Bumped to close every open watch (compaction, simulated connection loss).
    epoch: u64,
    /// Each object as a list item, serialized, by (object, apiVersion served), with the
    /// resourceVersion it was serialized at: a list of 10,000 objects does not clone and
    /// serialize each again on every relist (the scale bench shares its cores with this).
    served: ServedItems,
}

/// (object, apiVersion served) -> (the resourceVersion serialized, the list item's JSON).
type ServedItems = HashMap<(Key, String), (String, Arc<[u8]>)>;

struct Event {
    rv: u64,
    type_: &'static str,
    res: &'static Resource,
    object: Value,
    /// The object before a MODIFIED (for selector-filtered watches).
    previous: Option<Value>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ns_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `major` and `minor` of a `vMAJOR.MINOR.PATCH...` string.
fn major_minor(git_version: &str) -> (String, String) {
    let mut parts = git_version.trim_start_matches('v').split('.');
    let digits = |s: Option<&str>| -> String {
        s.unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect()
    };
    (digits(parts.next()), digits(parts.next()))
}

impl FakeKube {
    /// Bind 127.0.0.1:0 and serve in a background thread with its own tokio runtime.
    pub fn start() -> FakeKube {
        Self::start_hiding(&[])
    }

    /// Like [`FakeKube::start`], with resources hidden from the start (see [`FakeKube::hide`]).
    pub fn start_hiding(hidden: &[&str]) -> FakeKube {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let base_url = format!("http://{}", listener.local_addr().expect("local addr"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                rv: 100,
                ..State::default()
            }),
            changed: tokio::sync::watch::channel(0).0,
            requests: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            bookmark_every: Mutex::new(Duration::from_millis(500)),
            hidden: Mutex::new(BTreeSet::new()),
            git_version: Mutex::new(DEFAULT_GIT_VERSION.to_string()),
            deprecated: Mutex::default(),
            leases: Mutex::default(),
            lease_conflicts: AtomicUsize::new(0),
        });
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-kube".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            acc = listener.accept() => {
                                if let Ok((sock, _)) = acc {
                                    tokio::spawn(connection(sock, sh.clone()));
                                }
                            }
                        }
                    }
                });
                // Drops open watch connections.
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn fake-kube");
        let fake = FakeKube {
            base_url,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        };
        for h in hidden {
            fake.hide(h);
        }
        fake
    }

    /// Store a Lease as given (the fake assigns its resourceVersion), as `kubectl apply` would.
    pub fn put_lease(&self, mut lease: Value) {
        let key = (ns_of(&lease).to_string(), name_of(&lease).to_string());
        let rv = self.next_rv();
        lease["metadata"]["resourceVersion"] = json!(rv.to_string());
        lock(&self.shared.leases).insert(key, lease);
    }

    /// The Lease `ns/name`, as stored.
    pub fn lease(&self, ns: &str, name: &str) -> Option<Value> {
        lock(&self.shared.leases)
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// How many Lease writes were refused with 409 (stale resourceVersion or already exists).
    pub fn lease_conflicts(&self) -> usize {
        self.shared.lease_conflicts.load(Ordering::SeqCst)
    }

    fn next_rv(&self) -> u64 {
        let mut st = lock(&self.shared.state);
        st.rv += 1;
        st.rv
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// A kubeconfig with one context, "fake", pointing at this server over plain HTTP.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    \
             insecure-skip-tls-verify: true\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    \
             user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    \
             token: fake-token\n",
            self.base_url
        )
    }

    /// A client for this server (plain HTTP). Call inside a tokio runtime.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.base_url.parse().expect("url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Create or replace an object of any served kind, keyed by (resource, namespace, name);
    /// the resource comes from `apiVersion` + `kind` (panics if the fake does not serve it).
    /// Assigns the next resourceVersion (see [`FakeKube::resource_version`]) and emits ADDED or
    /// MODIFIED. `metadata.generation` is kept as given. A namespaced object without a
    /// namespace goes to "default"; a cluster-scoped one loses any namespace.
    pub fn apply(&self, mut obj: Value) {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .expect("apiVersion");
        let kind = obj.get("kind").and_then(Value::as_str).expect("kind");
        let res = resource_for(api_version, kind).unwrap_or_else(|| {
            panic!("fake_kube does not serve {kind} in {api_version}; add it to RESOURCES")
        });
        let name = name_of(&obj).to_string();
        assert!(!name.is_empty(), "metadata.name is required");
        let meta = obj
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("metadata");
        let ns = if res.namespaced {
            let ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string();
            meta.insert("namespace".into(), json!(ns));
            ns
        } else {
            meta.remove("namespace");
            String::new()
        };
        {
            let mut st = lock(&self.shared.state);
            st.rv += 1;
            let rv = st.rv;
            let key = (res.group, res.plural, ns.clone(), name.clone());
            let previous = st.objects.get(&key).cloned();
            let type_ = if previous.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            };
            let uid = previous
                .as_ref()
                .and_then(|o| o.pointer("/metadata/uid").cloned())
                .unwrap_or_else(|| json!(format!("uid-{}-{ns}-{name}-{rv}", res.plural)));
            let meta = obj
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
                .expect("metadata");
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            meta.insert("uid".into(), uid);
            meta.entry("creationTimestamp")
                .or_insert_with(|| json!("2026-01-01T00:00:00Z"));
            st.objects.insert(key, obj.clone());
            st.history.push(Event {
                rv,
                type_,
                res,
                object: obj,
                previous,
            });
        }
        self.shared.changed.send_modify(|v| *v += 1);
    }

    /// Apply every `*.json` file in `dir` (sorted by file name); each holds one object or
    /// `{"items": [...]}`. Returns how many objects were applied. Panics on unreadable files,
    /// bad JSON or kinds the fake does not serve.
    pub fn seed_dir(&self, dir: &Path) -> usize {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut applied = 0;
        for f in files {
            let text =
                std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: bad JSON: {e}", f.display()));
            // One object, or a list (`{"items": [...]}`, e.g. a `<Kind>List` from kubectl).
            match v.get("items").and_then(Value::as_array) {
                Some(items) => {
                    for item in items {
                        self.apply(item.clone());
                        applied += 1;
                    }
                }
                None => {
                    self.apply(v);
                    applied += 1;
                }
            }
        }
        applied
    }

    /// Delete a Kustomization if present (emits DELETED with a new resourceVersion).
    pub fn delete(&self, ns: &str, name: &str) {
        self.delete_kind("kustomize.toolkit.fluxcd.io/v1", "Kustomization", ns, name);
    }

    /// Delete an object of any served kind if present (emits DELETED with a new
    /// resourceVersion). `ns` is ignored for cluster-scoped kinds.
    pub fn delete_kind(&self, api_version: &str, kind: &str, ns: &str, name: &str) {
        let res = resource_for(api_version, kind)
            .unwrap_or_else(|| panic!("fake_kube does not serve {kind} in {api_version}"));
        let ns = if res.namespaced { ns } else { "" };
        {
            let mut st = lock(&self.shared.state);
            let key = (res.group, res.plural, ns.to_string(), name.to_string());
            let Some(mut obj) = st.objects.remove(&key) else {
                return;
            };
            st.rv += 1;
            let rv = st.rv;
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            st.history.push(Event {
                rv,
                type_: "DELETED",
                res,
                object: obj,
                previous: None,
            });
        }
        self.shared.changed.send_modify(|v| *v += 1);
    }

    /// The stored object, if any (as applied, plus resourceVersion/uid).
    pub fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let res = resource_for(api_version, kind)?;
        let ns = if res.namespaced { ns } else { "" };
        lock(&self.shared.state)
            .objects
            .get(&(res.group, res.plural, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Forget history (like an etcd compaction plus watch-cache reset): every open watch of
    /// every kind is closed, and a watch from any resourceVersion seen so far gets
    /// `410 Expired`, so clients must relist. The revision advances so a fresh list gives a
    /// watchable resourceVersion.
    pub fn compact(&self) {
        {
            let mut st = lock(&self.shared.state);
            st.rv += 1;
            st.compacted = st.rv;
            st.history.clear();
            st.epoch += 1;
        }
        self.shared.changed.send_modify(|v| *v += 1);
    }

    /// Close every open watch (all kinds) without compacting (a dropped connection): clients
    /// resume from their last resourceVersion without relisting.
    pub fn drop_watches(&self) {
        lock(&self.shared.state).epoch += 1;
        self.shared.changed.send_modify(|v| *v += 1);
    }

    /// How often open watches get a BOOKMARK (when they asked for bookmarks).
    pub fn set_bookmark_interval(&self, every: Duration) {
        *lock(&self.shared.bookmark_every) = every;
    }

    /// What `/version` reports as `gitVersion` (default [`DEFAULT_GIT_VERSION`]); `major`
    /// and `minor` are taken from it.
    pub fn set_version(&self, git_version: &str) {
        *lock(&self.shared.git_version) = git_version.to_string();
    }

    /// The deprecated APIs requested since the API server started, served on `/metrics` as
    /// `apiserver_requested_deprecated_apis` series: (group, version, resource,
    /// removed_release), e.g. `("policy", "v1beta1", "podsecuritypolicies", "1.25")`.
    pub fn set_deprecated_requests(&self, series: &[(&str, &str, &str, &str)]) {
        *lock(&self.shared.deprecated) = series
            .iter()
            .map(|(g, v, r, rr)| [g.to_string(), v.to_string(), r.to_string(), rr.to_string()])
            .collect();
    }

    /// Make a resource absent, as if its CRD were not installed: 404 on list, watch and get,
    /// and left out of discovery (a group with nothing left disappears). `name` is a plural
    /// (every group serving it) or `plural.group`. Objects stay stored and come back with
    /// [`FakeKube::unhide`]. Open watches are not closed.
    pub fn hide(&self, name: &str) {
        let found = resources_named(name);
        assert!(!found.is_empty(), "fake_kube serves no resource {name:?}");
        let mut hidden = lock(&self.shared.hidden);
        for r in found {
            hidden.insert(r.id());
        }
    }

    /// Undo [`FakeKube::hide`] (the CRD got installed).
    pub fn unhide(&self, name: &str) {
        let mut hidden = lock(&self.shared.hidden);
        for r in resources_named(name) {
            hidden.remove(&r.id());
        }
    }

    /// API requests served so far (every list, watch, get, discovery call).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// One line per request. Kustomizations: `LIST <scope>`, `WATCH <scope> rv=<rv>
    /// bookmarks=<bool>`, `GET <ns>/<name>`; other kinds name the plural first:
    /// `LIST nodes *`, `WATCH kubeadmcontrolplanes <scope> rv=.. bookmarks=..`,
    /// `GET pods <ns>/<name>`, `GET nodes <name>` (`<scope>` is a namespace or `*`). Selectors,
    /// when given, are appended (` labelSelector=..`, ` fieldSelector=..`); a hidden
    /// resource's request ends with ` (404)`. Discovery: `GET /version`, `GET /api`,
    /// `GET /api/v1`, `GET /apis`, `GET /apis/<g>/<v>`; unknown paths `GET <path> (404)`.
    pub fn request_log(&self) -> Vec<String> {
        lock(&self.shared.log)
            .iter()
            .map(|e| e.line.clone())
            .collect()
    }

    /// Requests whose log line starts with `prefix` (e.g. "LIST", "WATCH"), of any kind.
    pub fn count(&self, prefix: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|e| e.line.starts_with(prefix))
            .count()
    }

    /// Requests for one resource (by plural, any group) with one verb: "LIST", "WATCH" or
    /// "GET" (a single object). Requests answered 404 because the resource is hidden count.
    pub fn count_kind(&self, plural: &str, verb: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|e| e.plural == Some(plural) && e.verb == verb)
            .count()
    }

    /// Current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.state).rv
    }

    /// Stored objects of one resource (by plural, any group), optionally in one namespace.
    pub fn objects(&self, plural: &str, ns: Option<&str>) -> Vec<Value> {
        lock(&self.shared.state)
            .objects
            .iter()
            .filter(|((_, p, n, _), _)| *p == plural && ns.is_none_or(|ns| ns == n))
            .map(|(_, o)| o.clone())
            .collect()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Objects for tests
// ---------------------------------------------------------------------------------------------

/// A Flux Kustomization object for tests. An empty `applied`/`attempted` leaves that field out.
pub fn kustomization(
    ns: &str,
    name: &str,
    ready: (&str, &str),
    applied: &str,
    attempted: &str,
    generation: i64,
    observed: i64,
) -> Value {
    let (ready_status, reason) = ready;
    let message = if ready_status == "True" {
        format!("Applied revision: {applied}")
    } else {
        String::new()
    };
    let mut status = json!({
        "observedGeneration": observed,
        "conditions": [{
            "type": "Ready",
            "status": ready_status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": observed,
        }],
        "inventory": {"entries": []},
    });
    if !applied.is_empty() {
        status["lastAppliedRevision"] = json!(applied);
    }
    if !attempted.is_empty() {
        status["lastAttemptedRevision"] = json!(attempted);
    }
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": ns, "generation": generation},
        "spec": {
            "interval": "10m",
            "path": "./clusters/".to_string() + ns,
            "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": "flux-system", "namespace": "flux-system"},
        },
        "status": status,
    })
}

/// A `metav1.Condition` as controllers write it.
fn condition(type_: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": generation,
    })
}

/// A CAPI v1beta1 condition (with severity when not True, no observedGeneration).
fn capi_condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    let mut c = json!({"type": type_, "status": status,
                       "lastTransitionTime": "2026-01-01T00:00:00Z"});
    if status != "True" {
        c["reason"] = json!(reason);
        c["severity"] = json!("Info");
        c["message"] = json!(message);
    }
    c
}

/// A flux-system GitRepository whose artifact is at `revision` (e.g. `main@sha1:<hex>`).
pub fn git_repository(ns: &str, name: &str, url: &str, revision: &str) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": name, "namespace": ns, "generation": 1,
                     "finalizers": ["finalizers.fluxcd.io"]},
        "spec": {"interval": "1m0s", "url": url, "ref": {"branch": "main"}, "timeout": "60s"},
        "status": {
            "observedGeneration": 1,
            "conditions": [
                condition("Ready", "True", "Succeeded",
                          &format!("stored artifact for revision '{revision}'"), 1),
                condition("ArtifactInStorage", "True", "Succeeded",
                          &format!("stored artifact for revision '{revision}'"), 1),
            ],
            "artifact": {
                "revision": revision,
                "path": format!("gitrepository/{ns}/{name}/artifact.tar.gz"),
                "url": format!("http://source-controller.flux-system.svc.cluster.local./gitrepository/{ns}/{name}/artifact.tar.gz"),
                "digest": "sha256:9f2ad0a8a3f1b5a4c2f3e4d5c6b7a8990a1b2c3d4e5f60718293a4b5c6d7e8f9",
                "lastUpdateTime": "2026-01-01T00:00:00Z",
                "size": 48213,
            },
        },
    })
}

/// A CAPI v1beta1 Cluster with a managed topology at `topology_version`. `topology_reconciled`
/// = Some((status, reason)) sets `TopologyReconciled` (status.conditions and the v1beta2
/// conditions); None leaves it out. Labelled `cluster.x-k8s.io/cluster-name: name`.
pub fn capi_cluster(
    ns: &str,
    name: &str,
    topology_version: &str,
    topology_reconciled: Option<(&str, &str)>,
) -> Value {
    let mut obj = json!({
        "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
        "metadata": {
            "name": name, "namespace": ns, "generation": 2,
            "labels": {"cluster.x-k8s.io/cluster-name": name,
                       "topology.cluster.x-k8s.io/owned": ""},
            "finalizers": ["cluster.cluster.x-k8s.io"],
        },
        "spec": {
            "clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/16"]},
                               "services": {"cidrBlocks": ["10.128.0.0/12"]}},
            "controlPlaneEndpoint": {"host": format!("{name}.example.internal"), "port": 6443},
            "controlPlaneRef": {"apiVersion": "controlplane.cluster.x-k8s.io/v1beta1",
                                "kind": "KubeadmControlPlane", "name": format!("{name}-cp"),
                                "namespace": ns},
            "topology": {
                "class": "quick-start",
                "version": topology_version,
                "controlPlane": {"replicas": 3},
                "workers": {"machineDeployments": [
                    {"class": "default-worker", "name": "md-0", "replicas": 3}]},
            },
        },
        "status": {
            "observedGeneration": 2,
            "phase": "Provisioned",
            "controlPlaneReady": true,
            "infrastructureReady": true,
            "conditions": [capi_condition("Ready", "True", "", "")],
            "v1beta2": {"conditions": [
                condition("Available", "True", "Available", "", 2),
            ]},
        },
    });
    if let Some((status, reason)) = topology_reconciled {
        let message = if status == "True" {
            String::new()
        } else {
            format!("Cluster is upgrading to {topology_version}")
        };
        obj["status"]["conditions"]
            .as_array_mut()
            .expect("conditions")
            .push(capi_condition(
                "TopologyReconciled",
                status,
                reason,
                &message,
            ));
        let v2_reason = if status == "True" {
            "ReconcileSucceeded"
        } else {
            reason
        };
        obj["status"]["v1beta2"]["conditions"]
            .as_array_mut()
            .expect("conditions")
            .push(condition(
                "TopologyReconciled",
                status,
                v2_reason,
                &message,
                2,
            ));
    }
    obj
}

/// A CAPI v1beta1 KubeadmControlPlane. An empty `status_version` leaves `status.version` out.
#[allow(clippy::too_many_arguments)]
pub fn kcp(
    ns: &str,
    name: &str,
    spec_version: &str,
    status_version: &str,
    replicas: i64,
    updated: i64,
    ready: i64,
    generation: i64,
    observed: i64,
) -> Value {
    let cluster = name.strip_suffix("-cp").unwrap_or(name);
    let all_ready = ready == replicas && updated == replicas;
    let mut obj = json!({
        "apiVersion": "controlplane.cluster.x-k8s.io/v1beta1", "kind": "KubeadmControlPlane",
        "metadata": {
            "name": name, "namespace": ns, "generation": generation,
            "labels": {"cluster.x-k8s.io/cluster-name": cluster},
            "ownerReferences": [{"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
                                 "name": cluster, "uid": format!("uid-cluster-{cluster}"),
                                 "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "replicas": replicas,
            "version": spec_version,
            "machineTemplate": {"infrastructureRef": {
                "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1",
                "kind": "DockerMachineTemplate", "name": format!("{name}-template"),
                "namespace": ns}},
            "kubeadmConfigSpec": {"clusterConfiguration": {"apiServer": {"certSANs": ["localhost"]}},
                                  "initConfiguration": {"nodeRegistration": {}},
                                  "joinConfiguration": {"nodeRegistration": {}}},
            "rolloutStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        },
        "status": {
            "observedGeneration": observed,
            "initialized": true,
            "ready": ready > 0,
            "replicas": replicas.max(updated),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "unavailableReplicas": (replicas - ready).max(0),
            "selector": format!("cluster.x-k8s.io/cluster-name={cluster},cluster.x-k8s.io/control-plane"),
            "conditions": [
                capi_condition("Ready", "True", "", ""),
                capi_condition("Available", "True", "", ""),
                capi_condition("MachinesSpecUpToDate",
                               if updated == replicas { "True" } else { "False" },
                               "RollingUpdateInProgress",
                               &format!("Rolling {replicas} replicas with outdated spec ({} replicas up to date)", updated)),
                capi_condition("MachinesReady", if all_ready { "True" } else { "False" },
                               "WaitingForMachines", ""),
            ],
            "v1beta2": {"readyReplicas": ready, "availableReplicas": ready,
                        "upToDateReplicas": updated, "conditions": []},
        },
    });
    if !status_version.is_empty() {
        obj["status"]["version"] = json!(status_version);
    }
    obj
}

/// A CAPI v1beta1 MachineDeployment of `cluster` at `version` (spec.template.spec.version).
pub fn machine_deployment(
    ns: &str,
    name: &str,
    cluster: &str,
    version: &str,
    replicas: i64,
    updated: i64,
    available: i64,
) -> Value {
    let selector = json!({"matchLabels": {"cluster.x-k8s.io/cluster-name": cluster,
                                          "cluster.x-k8s.io/deployment-name": name}});
    json!({
        "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "MachineDeployment",
        "metadata": {
            "name": name, "namespace": ns, "generation": 2,
            "labels": {"cluster.x-k8s.io/cluster-name": cluster,
                       "topology.cluster.x-k8s.io/deployment-name": "md-0"},
            "annotations": {"machinedeployment.clusters.x-k8s.io/revision": "2"},
        },
        "spec": {
            "clusterName": cluster,
            "replicas": replicas,
            "minReadySeconds": 0,
            "revisionHistoryLimit": 1,
            "selector": selector,
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0,
                                           "deletePolicy": "Oldest"}},
            "template": {
                "metadata": {"labels": {"cluster.x-k8s.io/cluster-name": cluster,
                                        "cluster.x-k8s.io/deployment-name": name}},
                "spec": {
                    "clusterName": cluster,
                    "version": version,
                    "bootstrap": {"configRef": {
                        "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta1",
                        "kind": "KubeadmConfigTemplate", "name": format!("{name}-bootstrap"),
                        "namespace": ns}},
                    "infrastructureRef": {
                        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1",
                        "kind": "DockerMachineTemplate", "name": format!("{name}-infra"),
                        "namespace": ns},
                },
            },
        },
        "status": {
            "observedGeneration": 2,
            "phase": if updated == replicas && available == replicas { "Running" } else { "ScalingUp" },
            "replicas": replicas.max(updated),
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": (replicas - available).max(0),
            "selector": format!("cluster.x-k8s.io/cluster-name={cluster},cluster.x-k8s.io/deployment-name={name}"),
            "conditions": [
                capi_condition("Ready", "True", "", ""),
                capi_condition("Available", "True", "", ""),
                capi_condition("MachineSetReady", "True", "", ""),
            ],
            "v1beta2": {"readyReplicas": available, "availableReplicas": available,
                        "upToDateReplicas": updated, "conditions": []},
        },
    })
}

/// A Kamaji TenantControlPlane: `spec.kubernetes.version`, and
/// `status.kubernetesResources.version.{version,status}` (`Ready`, `Upgrading`,
/// `Provisioning`, ...). An empty `status_version` leaves the running version out.
pub fn tenant_control_plane(
    ns: &str,
    name: &str,
    spec_version: &str,
    status_version: &str,
    status: &str,
) -> Value {
    let mut version = json!({"status": status});
    if !status_version.is_empty() {
        version["version"] = json!(status_version);
    }
    json!({
        "apiVersion": "kamaji.clastix.io/v1alpha1", "kind": "TenantControlPlane",
        "metadata": {"name": name, "namespace": ns, "generation": 1,
                     "labels": {"tenant.clastix.io": name},
                     "finalizers": ["finalizer.kamaji.clastix.io"]},
        "spec": {
            "dataStore": "default",
            "controlPlane": {"deployment": {"replicas": 2, "additionalMetadata": {}},
                             "service": {"serviceType": "LoadBalancer"}},
            "kubernetes": {"version": spec_version,
                           "kubelet": {"cgroupfs": "systemd",
                                       "preferredAddressTypes": ["InternalIP", "ExternalIP", "Hostname"]},
                           "admissionControllers": ["ResourceQuota", "LimitRanger"]},
            "networkProfile": {"port": 6443, "serviceCidr": "10.96.0.0/16",
                               "podCidr": "10.36.0.0/16", "dnsServiceIPs": ["10.96.0.10"]},
            "addons": {"coreDNS": {}, "kubeProxy": {}, "konnectivity": {"server": {"port": 8132}}},
        },
        "status": {
            "observedGeneration": 1,
            "controlPlaneEndpoint": "172.18.255.200:6443",
            "kubernetesResources": {
                "version": version,
                "deployment": {"name": name, "namespace": ns, "replicas": 2, "readyReplicas": 2,
                               "availableReplicas": 2, "updatedReplicas": 2,
                               "selector": format!("kamaji.clastix.io/name={name}"),
                               "lastUpdate": "2026-01-01T00:00:00Z"},
                "service": {"name": name, "namespace": ns, "port": 6443,
                            "loadBalancer": {"ingress": [{"ip": "172.18.255.200"}]}},
            },
            "storage": {"driver": "etcd", "dataStoreName": "default"},
            "kubeconfig": {"admin": {"secretName": format!("{name}-admin-kubeconfig")}},
        },
    })
}

/// A k0rdent `k0rdent.mirantis.com/v1beta1` ClusterDeployment on `template`, reporting
/// `status.k8sVersion` (left out when empty) and `Ready` = `ready` (status, reason).
pub fn cluster_deployment(
    ns: &str,
    name: &str,
    template: &str,
    k8s_version: &str,
    ready: (&str, &str),
) -> Value {
    let (status, reason) = ready;
    let message = if status == "True" {
        "Object is ready".to_string()
    } else {
        format!("{reason}: waiting for the cluster to become ready")
    };
    let mut obj = json!({
        "apiVersion": "k0rdent.mirantis.com/v1beta1", "kind": "ClusterDeployment",
        "metadata": {"name": name, "namespace": ns, "generation": 1,
                     "finalizers": ["k0rdent.mirantis.com/cluster-deployment"]},
        "spec": {"template": template, "credential": "aws-cluster-identity-cred",
                 "propagateCredentials": true,
                 "config": {"clusterLabels": {}, "region": "eu-central-1",
                            "controlPlaneNumber": 3, "workersNumber": 2}},
        "status": {
            "observedGeneration": 1,
            "conditions": [
                condition("TemplateReady", "True", "Succeeded", "Template is valid", 1),
                condition("HelmReleaseReady", "True", "InstallSucceeded", "Helm install succeeded", 1),
                condition("Ready", status, reason, &message, 1),
            ],
            "availableUpgrades": ["aws-standalone-cp-1-0-16"],
        },
    });
    if !k8s_version.is_empty() {
        obj["status"]["k8sVersion"] = json!(k8s_version);
    }
    obj
}

/// A core v1 Node: Ready condition, `status.nodeInfo.kubeletVersion`, and the
/// `node-role.kubernetes.io/control-plane` label (plus taint) for control-plane nodes.
pub fn node(name: &str, ready: bool, kubelet_version: &str, control_plane: bool) -> Value {
    let mut obj = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {"podCIDR": "192.168.1.0/24", "podCIDRs": ["192.168.1.0/24"],
                 "providerID": format!("docker:////{name}")},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "172.18.0.4"},
                          {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "4", "memory": "16318144Ki", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "16215744Ki", "pods": "110"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "message": "kubelet has sufficient memory available",
                 "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": if ready { "True" } else { "False" },
                 "reason": if ready { "KubeletReady" } else { "KubeletNotReady" },
                 "message": if ready { "kubelet is posting ready status" }
                            else { "container runtime network not ready: NetworkReady=false" },
                 "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64", "bootID": "2f0c2d4e-0000-4000-8000-000000000001",
                "containerRuntimeVersion": "containerd://2.0.3", "kernelVersion": "6.8.0-51-generic",
                "kubeProxyVersion": kubelet_version, "kubeletVersion": kubelet_version,
                "machineID": "7d9a0c3b5e1f4a2b8c6d0e1f2a3b4c5d", "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04.1 LTS", "systemUUID": "7d9a0c3b-5e1f-4a2b-8c6d-0e1f2a3b4c5d",
            },
        },
    });
    if control_plane {
        obj["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("");
        obj["spec"]["taints"] = json!([{"key": "node-role.kubernetes.io/control-plane",
                                        "effect": "NoSchedule"}]);
    }
    obj
}

/// A running core v1 Pod whose one container restarted `restarts` times.
pub fn pod(ns: &str, name: &str, restarts: u32) -> Value {
    let mut status = json!({
        "phase": "Running",
        "hostIP": "172.18.0.4", "podIP": "192.168.1.17",
        "qosClass": "Burstable", "startTime": "2026-01-01T00:00:00Z",
        "conditions": [{"type": "Ready", "status": "True",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "containerStatuses": [{
            "name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.7.1",
            "imageID": "ghcr.io/stefanprodan/podinfo@sha256:262578cde928d5c9eba3bce079976444f624c13ed0afb741d90d5423877496cb",
            "containerID": "containerd://4b1d4c1e0f3c5f3a", "ready": true, "started": true,
            "restartCount": restarts,
            "state": {"running": {"startedAt": "2026-01-01T00:05:00Z"}},
        }],
    });
    if restarts > 0 {
        status["containerStatuses"][0]["lastState"] = json!({"terminated": {
            "exitCode": 137, "reason": "OOMKilled",
            "startedAt": "2026-01-01T00:01:00Z", "finishedAt": "2026-01-01T00:04:59Z",
            "containerID": "containerd://0a9e8d7c6b5a4f3e"}});
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": format!("{name}-rs"), "uid": "uid-rs",
                                          "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": "worker-1", "restartPolicy": "Always",
                 "containers": [{"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.7.1",
                                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
        "status": status,
    })
}

/// A `policy/v1` PodDisruptionBudget as the API server returns it: the shape of `zk-pdb` in
/// the Kubernetes documentation ("Specifying a Disruption Budget for your Application",
/// kubernetes.io/docs/tasks/run-application/configure-pdb/, the `kubectl get
/// poddisruptionbudgets zk-pdb -o yaml` output: `minAvailable: 2` over three ZooKeeper pods,
/// status `currentHealthy: 3, desiredHealthy: 2, disruptionsAllowed: 1, expectedPods: 3`),
/// with the counts given here and the `DisruptionAllowed` condition the disruption
/// controller sets (PodDisruptionBudgetStatus in the API reference: `InsufficientPods` when
/// no disruption is allowed, else `SufficientPods`).
pub fn pdb(
    ns: &str,
    name: &str,
    min_available: u32,
    current_healthy: u32,
    expected_pods: u32,
) -> Value {
    let allowed = current_healthy.saturating_sub(min_available);
    let (cond, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns, "generation": 1,
                     "creationTimestamp": "2020-03-04T04:22:56Z",
                     "uid": format!("uid-pdb-{ns}-{name}")},
        "spec": {"minAvailable": min_available,
                 "selector": {"matchLabels": {"app": name.trim_end_matches("-pdb")}}},
        "status": {"currentHealthy": current_healthy, "desiredHealthy": min_available,
                   "disruptionsAllowed": allowed, "expectedPods": expected_pods,
                   "observedGeneration": 1,
                   "conditions": [{"type": "DisruptionAllowed", "status": cond,
                                   "reason": reason, "message": "",
                                   "observedGeneration": 1,
                                   "lastTransitionTime": "2020-03-04T04:23:10Z"}]},
    })
}

/// `/metrics` as a kube-apiserver serves it (Prometheus text exposition format 0.0.4), cut
/// to a few families around the one fleetwave reads. `apiserver_requested_deprecated_apis`
/// has the HELP text, type and label set of the Kubernetes Metrics Reference (a STABLE
/// gauge; labels group, removed_release, resource, subresource, version, in the sorted order
/// the API server writes them, as in the Deprecated API Migration Guide's example
/// `apiserver_requested_deprecated_apis{group="extensions",removed_release="1.22",
/// resource="ingresses",subresource="",version="v1beta1"} 1`).
fn metrics_text(deprecated: &[[String; 4]]) -> String {
    let mut out = String::from(
        "# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.\n\
         # TYPE apiserver_request_total counter\n\
         apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"nodes\",scope=\"cluster\",subresource=\"\",verb=\"LIST\",version=\"v1\"} 42\n\
         # HELP apiserver_requested_deprecated_apis [STABLE] Gauge of deprecated APIs that have been requested, broken out by API group, version, resource, subresource, and removed_release.\n\
         # TYPE apiserver_requested_deprecated_apis gauge\n",
    );
    for [g, v, r, rr] in deprecated {
        out.push_str(&format!(
            "apiserver_requested_deprecated_apis{{group=\"{g}\",removed_release=\"{rr}\",resource=\"{r}\",subresource=\"\",version=\"{v}\"}} 1\n"
        ));
    }
    out.push_str(
        "# HELP apiserver_storage_objects [STABLE] Number of stored objects at the time of last check split by kind. In case of a fetching error, the value will be -1.\n\
         # TYPE apiserver_storage_objects gauge\n\
         apiserver_storage_objects{resource=\"pods\"} 17\n",
    );
    out
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// Serve one keep-alive connection: requests one at a time.
async fn connection(sock: TcpStream, sh: Arc<Shared>) {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let request_line = line.trim_end().to_string();
        if request_line.is_empty() {
            continue;
        }
        let mut content_length = 0usize;
        let mut accept = String::new();
        loop {
            let mut h = String::new();
            match r.read_line(&mut h).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    content_length = v.trim().parse().unwrap_or(0);
                } else if k.trim().eq_ignore_ascii_case("accept") {
                    accept = v.trim().to_string();
                }
            }
        }
        let mut body = vec![0; content_length];
        if content_length > 0 && r.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("/").to_string();
        let req = Request {
            method: &method,
            target: &target,
            aggregated: accept.contains("as=APIGroupDiscoveryList"),
            body: &body,
        };
        if respond(&mut w, &sh, req).await.is_err() {
            return;
        }
    }
}

struct Request<'a> {
    method: &'a str,
    target: &'a str,
    /// The client asked for aggregated discovery (`apidiscovery.k8s.io/v2`).
    aggregated: bool,
    body: &'a [u8],
}

const JSON: &str = "application/json";
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

async fn write_full(w: &mut OwnedWriteHalf, code: u16, body: &Value) -> io::Result<()> {
    write_typed(w, code, JSON, body).await
}

async fn write_typed(
    w: &mut OwnedWriteHalf,
    code: u16,
    content_type: &str,
    body: &Value,
) -> io::Result<()> {
    let body = serde_json::to_vec(body).expect("json");
    write_typed_bytes(w, code, content_type, &body).await
}

/// A full response whose body is already serialized.
async fn write_typed_bytes(
    w: &mut OwnedWriteHalf,
    code: u16,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        201 => "Created",
        409 => "Conflict",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}

fn status_obj(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn not_found() -> Value {
    status_obj(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Percent-decode a query component (`+` is a space, as form encoding writes it).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A resource visible at `group/version` (not hidden, and served at that version).
fn visible(sh: &Shared, group: &str, version: &str) -> Vec<&'static Resource> {
    let hidden = lock(&sh.hidden);
    RESOURCES
        .iter()
        .filter(|r| r.group == group && r.versions.contains(&version) && !hidden.contains(&r.id()))
        .collect()
}

/// Visible groups (not core) with their visible versions, preferred first.
fn visible_groups(sh: &Shared) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if out.iter().any(|(g, _)| *g == r.group) {
            continue;
        }
        let mut versions: Vec<&'static str> = Vec::new();
        for r2 in RESOURCES.iter().filter(|r2| r2.group == r.group) {
            for v in r2.versions {
                if !versions.contains(v) && !visible(sh, r.group, v).is_empty() {
                    versions.push(v);
                }
            }
        }
        let pv = preferred_version(r.group);
        versions.sort_by_key(|v| *v != pv);
        if !versions.is_empty() {
            out.push((r.group, versions));
        }
    }
    out
}

fn resource_list(sh: &Shared, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = visible(sh, group, version)
        .into_iter()
        .map(|r| {
            let mut v = json!({"name": r.plural, "singularName": r.singular,
                               "namespaced": r.namespaced, "kind": r.kind,
                               "verbs": ["get", "list", "watch"]});
            if !r.short_names.is_empty() {
                v["shortNames"] = json!(r.short_names);
            }
            v
        })
        .collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
           "resources": resources})
}

fn group_versions(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": gvs.clone(), "preferredVersion": gvs[0]})
}

fn aggregated_group(sh: &Shared, group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = visible(sh, group, v)
                .into_iter()
                .map(|r| {
                    json!({"resource": r.plural, "singularResource": r.singular,
                           "responseKind": {"group": group, "version": v, "kind": r.kind},
                           "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                           "verbs": ["get", "list", "watch"], "shortNames": r.short_names})
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let meta = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": meta, "versions": versions})
}

fn aggregated_list(items: Vec<Value>) -> Value {
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
           "metadata": {}, "items": items})
}

/// What a LIST/WATCH/GET is about, once the path is matched.
struct Target<'a> {
    res: &'static Resource,
    version: &'a str,
    ns: Option<&'a str>,
    name: Option<&'a str>,
}

/// Match an object path: `/api/v1/...` or `/apis/{g}/{v}/...`, namespaced or not.
fn route<'a>(segs: &[&'a str]) -> Option<Target<'a>> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let find = |plural: &str| {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.plural == plural && r.versions.contains(&version))
    };
    let (res, ns, name) = match rest {
        ["namespaces", ns, plural] => (find(plural)?, Some(*ns), None),
        ["namespaces", ns, plural, name] => (find(plural)?, Some(*ns), Some(*name)),
        [plural] => (find(plural)?, None, None),
        [plural, name] => (find(plural)?, None, Some(*name)),
        _ => return None,
    };
    // Namespaced kinds: a single object needs its namespace; cluster-scoped kinds have none.
    if (res.namespaced && ns.is_none() && name.is_some()) || (!res.namespaced && ns.is_some()) {
        return None;
    }
    Some(Target {
        res,
        version,
        ns,
        name,
    })
}

async fn respond(w: &mut OwnedWriteHalf, sh: &Shared, req: Request<'_>) -> io::Result<()> {
    sh.requests.fetch_add(1, Ordering::SeqCst);
    let target = req.target;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let q: BTreeMap<String, String> = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let log = |line: String| {
        lock(&sh.log).push(LogEntry {
            line,
            verb: "GET",
            plural: None,
        })
    };
    if let [
        "apis",
        "coordination.k8s.io",
        "v1",
        "namespaces",
        ns,
        "leases",
        rest @ ..,
    ] = segs.as_slice()
    {
        lock(&sh.log).push(LogEntry {
            line: format!("{} {path}", req.method),
            verb: "LEASE",
            plural: None,
        });
        let (code, body) = lease_request(sh, req.method, ns, rest.first().copied(), req.body);
        return write_full(w, code, &body).await;
    }
    if req.method != "GET" {
        lock(&sh.log).push(LogEntry {
            line: format!("{} {path}", req.method),
            verb: "OTHER",
            plural: None,
        });
        return write_full(
            w,
            405,
            &status_obj(405, "MethodNotAllowed", "read-only fake"),
        )
        .await;
    }
    match segs.as_slice() {
        ["metrics"] => {
            log("GET /metrics".into());
            let text = metrics_text(&lock(&sh.deprecated));
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
                text.len()
            );
            w.write_all(head.as_bytes()).await?;
            w.write_all(text.as_bytes()).await?;
            w.flush().await
        }
        ["version"] => {
            log("GET /version".into());
            let git_version = lock(&sh.git_version).clone();
            let (major, minor) = major_minor(&git_version);
            let v = json!({"major": major, "minor": minor, "gitVersion": git_version,
                           "gitCommit": "0000000000000000000000000000000000000000",
                           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                           "goVersion": "go1.24.0", "compiler": "gc",
                           "platform": "linux/amd64"});
            write_full(w, 200, &v).await
        }
        ["api"] => {
            log("GET /api".into());
            if req.aggregated {
                let body = aggregated_list(vec![aggregated_group(sh, "", &["v1"])]);
                return write_typed(w, 200, AGGREGATED, &body).await;
            }
            let v = json!({"kind": "APIVersions", "versions": ["v1"],
                           "serverAddressByClientCIDRs": []});
            write_full(w, 200, &v).await
        }
        ["api", "v1"] => {
            log("GET /api/v1".into());
            write_full(w, 200, &resource_list(sh, "", "v1")).await
        }
        ["apis"] => {
            log("GET /apis".into());
            let groups = visible_groups(sh);
            if req.aggregated {
                let items = groups
                    .iter()
                    .map(|(g, vs)| aggregated_group(sh, g, vs))
                    .collect();
                return write_typed(w, 200, AGGREGATED, &aggregated_list(items)).await;
            }
            let groups: Vec<Value> = groups.iter().map(|(g, vs)| group_versions(g, vs)).collect();
            let v = json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups});
            write_full(w, 200, &v).await
        }
        ["apis", g] => {
            log(format!("GET {path}"));
            match visible_groups(sh).into_iter().find(|(name, _)| name == g) {
                Some((name, vs)) => {
                    let mut v = group_versions(name, &vs);
                    v["kind"] = json!("APIGroup");
                    v["apiVersion"] = json!("v1");
                    write_full(w, 200, &v).await
                }
                None => write_full(w, 404, &not_found()).await,
            }
        }
        ["apis", g, v] => {
            log(format!("GET {path}"));
            if visible(sh, g, v).is_empty() {
                write_full(w, 404, &not_found()).await
            } else {
                write_full(w, 200, &resource_list(sh, g, v)).await
            }
        }
        _ => match route(&segs) {
            Some(t) => objects(w, sh, t, &q).await,
            None => {
                log(format!("GET {path} (404)"));
                write_full(w, 404, &not_found()).await
            }
        },
    }
}

/// A Lease request: GET one or the list of a namespace, POST (create: 409 if it exists), PUT
/// (replace: 404 if absent, 409 unless `metadata.resourceVersion` is the stored one), DELETE.
/// Every write takes the next resourceVersion of the shared counter, as etcd's revision.
fn lease_request(
    sh: &Shared,
    method: &str,
    ns: &str,
    name: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut leases = lock(&sh.leases);
    let next_rv = || {
        let mut st = lock(&sh.state);
        st.rv += 1;
        st.rv.to_string()
    };
    let conflict = |message: &str, reason: &str| {
        sh.lease_conflicts.fetch_add(1, Ordering::SeqCst);
        (409, status_obj(409, reason, message))
    };
    let missing = |n: &str| {
        (
            404,
            status_obj(
                404,
                "NotFound",
                &format!("leases.coordination.k8s.io \"{n}\" not found"),
            ),
        )
    };
    match (method, name) {
        ("GET", None) => {
            let items: Vec<Value> = leases
                .iter()
                .filter(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect();
            let rv = lock(&sh.state).rv.to_string();
            (
                200,
                json!({"kind": "LeaseList", "apiVersion": "coordination.k8s.io/v1",
                       "metadata": {"resourceVersion": rv}, "items": items}),
            )
        }
        ("GET", Some(n)) => match leases.get(&(ns.to_string(), n.to_string())) {
            Some(v) => (200, v.clone()),
            None => missing(n),
        },
        ("DELETE", Some(n)) => {
            let key = (ns.to_string(), n.to_string());
            let Some(stored) = leases.get(&key) else {
                return missing(n);
            };
            // DeleteOptions.preconditions.resourceVersion, as the API server checks it.
            let want = serde_json::from_slice::<Value>(body).ok().and_then(|b| {
                b.pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            let have = stored
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str);
            if want.is_some() && want.as_deref() != have {
                return conflict(
                    &format!(
                        "Operation cannot be fulfilled on leases.coordination.k8s.io \"{n}\": Precondition failed"
                    ),
                    "Conflict",
                );
            }
            leases.remove(&key);
            (
                200,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            )
        }
        ("POST", None) | ("PUT", Some(_)) => {
            let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
                return (400, status_obj(400, "BadRequest", "the body is not JSON"));
            };
            let n = name.unwrap_or_else(|| name_of(&obj)).to_string();
            let key = (ns.to_string(), n.clone());
            let stored = leases.get(&key);
            if method == "POST" && stored.is_some() {
                return conflict(
                    &format!("leases.coordination.k8s.io \"{n}\" already exists"),
                    "AlreadyExists",
                );
            }
            if method == "PUT" {
                let Some(stored) = stored else {
                    return missing(&n);
                };
                let sent = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str);
                if sent
                    != stored
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                {
                    return conflict(
                        &format!(
                            "Operation cannot be fulfilled on leases.coordination.k8s.io \"{n}\": the object has been modified; please apply your changes to the latest version and try again"
                        ),
                        "Conflict",
                    );
                }
                obj["metadata"]["uid"] = stored["metadata"]["uid"].clone();
                obj["metadata"]["creationTimestamp"] =
                    stored["metadata"]["creationTimestamp"].clone();
            } else {
                obj["metadata"]["uid"] = json!(format!("lease-{}", leases.len() + 1));
                obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            obj["apiVersion"] = json!("coordination.k8s.io/v1");
            obj["kind"] = json!("Lease");
            obj["metadata"]["namespace"] = json!(ns);
            obj["metadata"]["name"] = json!(n);
            obj["metadata"]["resourceVersion"] = json!(next_rv());
            leases.insert(key, obj.clone());
            (if method == "POST" { 201 } else { 200 }, obj)
        }
        _ => (
            405,
            status_obj(405, "MethodNotAllowed", "not served for leases"),
        ),
    }
}

/// A log line for an object request, in the Kustomization format kept from the first version
/// of this fake, or with the plural first for every other kind.
fn object_line(res: &Resource, verb: &str, rest: &str) -> String {
    if res.is_kustomization() {
        format!("{verb} {rest}")
    } else {
        format!("{verb} {} {rest}", res.plural)
    }
}

/// List, watch or get objects of one resource.
async fn objects(
    w: &mut OwnedWriteHalf,
    sh: &Shared,
    t: Target<'_>,
    q: &BTreeMap<String, String>,
) -> io::Result<()> {
    let res = t.res;
    let hidden = lock(&sh.hidden).contains(&res.id());
    let watching = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (t.name, watching) {
        (Some(_), _) => "GET",
        (None, true) => "WATCH",
        (None, false) => "LIST",
    };
    let scope = t.ns.unwrap_or("*");
    let mut line = match (t.name, watching) {
        (Some(name), _) if res.namespaced => object_line(res, "GET", &format!("{scope}/{name}")),
        (Some(name), _) => object_line(res, "GET", name),
        (None, true) => {
            let rv = q.get("resourceVersion").map_or("", String::as_str);
            let bm = q.get("allowWatchBookmarks").map_or("false", String::as_str);
            object_line(res, "WATCH", &format!("{scope} rv={rv} bookmarks={bm}"))
        }
        (None, false) => object_line(res, "LIST", scope),
    };
    for k in ["labelSelector", "fieldSelector"] {
        if let Some(v) = q.get(k).filter(|v| !v.is_empty()) {
            line.push_str(&format!(" {k}={v}"));
        }
    }
    if hidden {
        line.push_str(" (404)");
    }
    lock(&sh.log).push(LogEntry {
        line,
        verb,
        plural: Some(res.plural),
    });
    let api_version = res.api_version(t.version);
    if hidden {
        let msg = format!(
            "the server could not find the requested resource ({})",
            res.id()
        );
        return write_full(w, 404, &status_obj(404, "NotFound", &msg)).await;
    }
    if let Some(name) = t.name {
        let key = (
            res.group,
            res.plural,
            t.ns.unwrap_or("").to_string(),
            name.to_string(),
        );
        let obj = lock(&sh.state).objects.get(&key).cloned();
        return match obj {
            Some(o) => write_full(w, 200, &served(&o, &api_version)).await,
            None => {
                let msg = if res.group.is_empty() {
                    format!("{} \"{name}\" not found", res.plural)
                } else {
                    format!("{}.{} \"{name}\" not found", res.plural, res.group)
                };
                write_full(w, 404, &status_obj(404, "NotFound", &msg)).await
            }
        };
    }
    let filter = match Filter::new(t.ns, q) {
        Ok(f) => f,
        Err(e) => return write_full(w, 400, &status_obj(400, "BadRequest", &e)).await,
    };
    if watching {
        return watch(w, sh, res, &api_version, &filter, q).await;
    }
    let body = {
        let mut st = lock(&sh.state);
        let State {
            rv: now,
            objects,
            served,
            ..
        } = &mut *st;
        // Only this resource's slice of the map, and references until the page is cut: a
        // paginated list of 10,000 objects must not clone all of them for every page.
        let from: Key = (res.group, res.plural, String::new(), String::new());
        let items: Vec<(&Key, &Value)> = objects
            .range(from..)
            .take_while(|((g, p, _, _), _)| *g == res.group && *p == res.plural)
            .filter(|(_, o)| filter.matches(o))
            .collect();
        // Pagination (`limit`, `continue`), as kube-rs' watcher asks for it: the token says
        // at which revision the list started and how many items were already sent.
        let (rv, skip) = match q.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => match token
                .split_once('-')
                .and_then(|(r, n)| Some((r.parse::<u64>().ok()?, n.parse::<usize>().ok()?)))
            {
                Some(t) => t,
                None => (*now, 0),
            },
            None => (*now, 0),
        };
        let limit = q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        let total = items.len();
        let page: Vec<Arc<[u8]>> = items
            .into_iter()
            .skip(skip)
            .take(limit)
            .map(|(k, o)| served_item(served, res, k, o, &api_version))
            .collect();
        let sent = skip + page.len();
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if sent < total {
            meta["continue"] = json!(format!("{rv}-{sent}"));
            meta["remainingItemCount"] = json!(total - sent);
        }
        list_body(&api_version, &format!("{}List", res.kind), &meta, &page)
    };
    write_typed_bytes(w, 200, JSON, &body).await
}

/// A list item as served at `api_version`, serialized once per object revision.
fn served_item(
    cache: &mut ServedItems,
    res: &Resource,
    key: &Key,
    obj: &Value,
    api_version: &str,
) -> Arc<[u8]> {
    let at = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let slot = (key.clone(), api_version.to_string());
    if let Some((rv, bytes)) = cache.get(&slot)
        && rv == at
    {
        return bytes.clone();
    }
    let mut o = served(obj, api_version);
    if res.group.is_empty() {
        // A real API server leaves these out of core list items.
        if let Some(m) = o.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
    }
    let bytes: Arc<[u8]> = serde_json::to_vec(&o).expect("json").into();
    cache.insert(slot, (at.to_string(), bytes.clone()));
    bytes
}

/// A list's JSON from its items' JSON (keys in the order `serde_json` writes a `Value`).
fn list_body(api_version: &str, kind: &str, meta: &Value, items: &[Arc<[u8]>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 256);
    out.extend_from_slice(b"{\"apiVersion\":");
    out.extend(serde_json::to_vec(api_version).expect("json"));
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"],\"kind\":");
    out.extend(serde_json::to_vec(kind).expect("json"));
    out.extend_from_slice(b",\"metadata\":");
    out.extend(serde_json::to_vec(meta).expect("json"));
    out.push(b'}');
    out
}

/// The object as served at `api_version` (no field conversion).
fn served(obj: &Value, api_version: &str) -> Value {
    let mut o = obj.clone();
    o["apiVersion"] = json!(api_version);
    o
}

/// Namespace, label selector and field selector of a list or watch.
struct Filter {
    ns: Option<String>,
    labels: Vec<Requirement>,
    fields: Vec<(String, bool, String)>,
}

enum Requirement {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Filter {
    fn new(ns: Option<&str>, q: &BTreeMap<String, String>) -> Result<Filter, String> {
        let mut labels = Vec::new();
        for req in split_selector(q.get("labelSelector").map_or("", String::as_str)) {
            labels.push(parse_requirement(&req)?);
        }
        let mut fields = Vec::new();
        for req in split_selector(q.get("fieldSelector").map_or("", String::as_str)) {
            let (k, eq, v) = if let Some((k, v)) = req.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = req.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = req.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!("invalid field selector: {req:?}"));
            };
            fields.push((k.trim().to_string(), eq, v.trim().to_string()));
        }
        Ok(Filter {
            ns: ns.map(str::to_string),
            labels,
            fields,
        })
    }

    fn matches(&self, obj: &Value) -> bool {
        if self.ns.as_deref().is_some_and(|n| ns_of(obj) != n) {
            return false;
        }
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
            Requirement::In(k, vs) => label(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|v| vs.iter().all(|x| x != v)),
        });
        labels_ok
            && self.fields.iter().all(|(path, eq, want)| {
                let ptr = format!("/{}", path.replace('.', "/"));
                let got = match obj.pointer(&ptr) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(v) => v.to_string(),
                };
                (got == *want) == *eq
            })
    }
}

/// Split a selector on commas outside parentheses.
fn split_selector(sel: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in sel.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_requirement(req: &str) -> Result<Requirement, String> {
    let set = |rest: &str| -> Result<Vec<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| format!("invalid label selector: {req:?}"))?;
        Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
    };
    if let Some(k) = req.strip_prefix('!') {
        return Ok(Requirement::NotExists(k.trim().to_string()));
    }
    if let Some((k, rest)) = req.split_once(" notin ") {
        return Ok(Requirement::NotIn(k.trim().to_string(), set(rest)?));
    }
    if let Some((k, rest)) = req.split_once(" in ") {
        return Ok(Requirement::In(k.trim().to_string(), set(rest)?));
    }
    if let Some((k, v)) = req.split_once("!=") {
        return Ok(Requirement::NotIn(
            k.trim().to_string(),
            vec![v.trim().to_string()],
        ));
    }
    if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
        return Ok(Requirement::In(
            k.trim().to_string(),
            vec![v.trim().to_string()],
        ));
    }
    Ok(Requirement::Exists(req.trim().to_string()))
}

async fn chunk(w: &mut OwnedWriteHalf, line: &Value) -> io::Result<()> {
    let mut data = serde_json::to_vec(line).expect("json");
    data.push(b'\n');
    w.write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    w.write_all(&data).await?;
    w.write_all(b"\r\n").await?;
    w.flush().await
}

/// A watch of one resource: events after `resourceVersion` (or synthetic ADDEDs for all
/// matching objects when it is empty or "0"), then live events and BOOKMARKs until
/// `timeoutSeconds` or the watch is closed. With a selector, an object that starts matching
/// arrives as ADDED and one that stops matching as DELETED, as from a real API server.
async fn watch(
    w: &mut OwnedWriteHalf,
    sh: &Shared,
    res: &'static Resource,
    api_version: &str,
    filter: &Filter,
    q: &BTreeMap<String, String>,
) -> io::Result<()> {
    let ours = |g: &str, p: &str| g == res.group && p == res.plural;
    let bookmarks = q.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1800);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut changed = sh.changed.subscribe();
    w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await?;
    w.flush().await?;

    let mut out: Vec<Value> = Vec::new();
    let (mut sent, epoch) = {
        let st = lock(&sh.state);
        match q.get("resourceVersion").map_or("", String::as_str) {
            "" | "0" => {
                out.extend(
                    st.objects
                        .iter()
                        .filter(|((g, p, _, _), o)| ours(g, p) && filter.matches(o))
                        .map(|(_, o)| json!({"type": "ADDED", "object": served(o, api_version)})),
                );
                (st.rv, st.epoch)
            }
            rv => match rv.parse::<u64>() {
                Ok(n) if n >= st.compacted => (n, st.epoch),
                _ => {
                    let msg = format!("too old resource version: {rv} ({})", st.compacted);
                    out.push(json!({"type": "ERROR", "object": status_obj(410, "Expired", &msg)}));
                    (u64::MAX, st.epoch)
                }
            },
        }
    };
    for line in out.drain(..) {
        chunk(w, &line).await?;
    }
    if sent == u64::MAX {
        // The real API server ends the watch after the 410 event.
        w.write_all(b"0\r\n\r\n").await?;
        return w.flush().await;
    }

    let every = *lock(&sh.bookmark_every);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut bookmark_due = false;
    loop {
        {
            let st = lock(&sh.state);
            if st.epoch != epoch {
                // Cut at the moment of compaction / connection loss: nothing after it is sent.
                break;
            }
            let from = sent;
            for e in st.history.iter().filter(|e| e.rv > from) {
                sent = e.rv;
                if !ours(e.res.group, e.res.plural) {
                    continue;
                }
                let now = filter.matches(&e.object);
                let before = e.previous.as_ref().is_some_and(|p| filter.matches(p));
                let type_ = match (e.type_, before, now) {
                    ("DELETED", _, true) => "DELETED",
                    ("MODIFIED", true, true) => "MODIFIED",
                    ("MODIFIED", false, true) | ("ADDED", _, true) => "ADDED",
                    ("MODIFIED", true, false) => "DELETED",
                    _ => continue,
                };
                out.push(json!({"type": type_, "object": served(&e.object, api_version)}));
            }
            if bookmark_due && bookmarks {
                // Under the same lock as the events above, so no event <= st.rv is skipped.
                sent = sent.max(st.rv);
                out.push(json!({"type": "BOOKMARK", "object": {
                    "apiVersion": api_version, "kind": res.kind,
                    "metadata": {"resourceVersion": sent.to_string()}}}));
            }
        }
        bookmark_due = false;
        for line in out.drain(..) {
            chunk(w, &line).await?;
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { break },
            _ = ticker.tick() => bookmark_due = true,
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    w.write_all(b"0\r\n\r\n").await?;
    w.flush().await
}
