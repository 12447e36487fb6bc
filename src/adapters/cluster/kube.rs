//! Flux state from a hub cluster via kube-rs: in hub mode one management cluster runs a Flux
//! Kustomization per fleet cluster, applying it through `spec.kubeConfig`.
//!
//! One watcher (list, then watch with bookmarks) over `kustomize.toolkit.fluxcd.io/v1`
//! Kustomizations in all namespaces feeds a store; [`KubeSource::observe`] only reads that
//! store. So the API server sees one long-lived watch for the whole fleet, never a GET per
//! cluster per tick, and a 410 Gone (compacted resourceVersion) makes kube's watcher relist.
//!
//! A Kustomization belongs to cluster `C` when its namespace is `C`, or it carries the label
//! `fleetwave.io/cluster: C`, or its `spec.kubeConfig.secretRef.name` is `C-kubeconfig`.
//!
//! Objects arrive as `Watched` values (the metadata fields read, `spec` and `status`; the
//! Flux CRDs have no Rust type here) seen as [`DynamicObject`]s, and every field is read
//! defensively: unknown or malformed fields never fail an observation. Each is read once,
//! when its watch event arrives, into a small [`Compact`]; the stores keep only those, each
//! as one allocation of its JSON (at 10,000 clusters whole objects would be most of the
//! memory).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use crate::core::cluster::upgrade::{Component, DrainBlocker, NodeSummary};
use crate::core::cluster::{
    ClusterError, ClusterObservation, ClusterSource, Condition, KustomizationStatus, SourceStatus,
};

/// Label that assigns a hub Kustomization to a cluster explicitly.
pub const CLUSTER_LABEL: &str = "fleetwave.io/cluster";
/// Suffix of the kubeconfig Secret name a hub Kustomization uses to reach its spoke.
pub const KUBECONFIG_SUFFIX: &str = "-kubeconfig";

/// Which kubeconfig context to use; `None` = the current context, or in-cluster config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeConfigSel {
    pub context: Option<String>,
}

/// Build a client for a kubeconfig context, or the inferred default (kubeconfig current
/// context, then in-cluster service account) when no context is given.
///
/// kube builds a rustls config even for `http://` servers. This crate's graph compiles rustls
/// with both `ring` and `aws-lc-rs`, so rustls cannot pick a process default by itself; kube's
/// `aws-lc-rs` feature makes `Client::try_from` install one (otherwise it panics).
pub async fn client(sel: &KubeConfigSel) -> Result<kube::Client, ClusterError> {
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        ClusterError::Unavailable(format!("kube config ({what}): {e}"))
    };
    let config = match &sel.context {
        Some(ctx) => {
            let opts = kube::config::KubeConfigOptions {
                context: Some(ctx.clone()),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&opts)
                .await
                .map_err(|e| unavailable(&format!("context {ctx}"), &e))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| unavailable("inferred", &e))?,
    };
    kube::Client::try_from(config).map_err(|e| unavailable("client", &e))
}

/// Clients for many contexts of the kubeconfig (`KUBECONFIG` or `~/.kube/config`), read and
/// parsed once: each client gets a kubeconfig cut down to its own context, cluster and user,
/// so thousands of contexts cost one parse, not one each. Per context: its client, or why not.
pub async fn clients_for_contexts(
    contexts: &[String],
) -> Result<Vec<Result<kube::Client, ClusterError>>, ClusterError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let kc = Kubeconfig::read()
        .map_err(|e| ClusterError::Unavailable(format!("kube config (reading it): {e}")))?;
    let clusters: HashMap<&str, _> = kc.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let users: HashMap<&str, _> = kc.auth_infos.iter().map(|u| (u.name.as_str(), u)).collect();
    let named: HashMap<&str, _> = kc.contexts.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut out = Vec::with_capacity(contexts.len());
    for ctx in contexts {
        let Some(nc) = named.get(ctx.as_str()) else {
            out.push(Err(ClusterError::Unavailable(format!(
                "kube config: no context {ctx:?}"
            ))));
            continue;
        };
        let inner = nc.context.as_ref();
        let one = Kubeconfig {
            clusters: inner
                .and_then(|c| clusters.get(c.cluster.as_str()))
                .map(|c| vec![(*c).clone()])
                .unwrap_or_default(),
            auth_infos: inner
                .and_then(|c| c.user.as_deref())
                .and_then(|u| users.get(u))
                .map(|u| vec![(*u).clone()])
                .unwrap_or_default(),
            contexts: vec![(*nc).clone()],
            current_context: Some(ctx.clone()),
            ..Default::default()
        };
        let opts = KubeConfigOptions {
            context: Some(ctx.clone()),
            ..Default::default()
        };
        let client = match kube::Config::from_custom_kubeconfig(one, &opts).await {
            Ok(config) => kube::Client::try_from(config).map_err(|e| {
                ClusterError::Unavailable(format!("kube config (context {ctx}, client): {e}"))
            }),
            Err(e) => Err(ClusterError::Unavailable(format!(
                "kube config (context {ctx}): {e}"
            ))),
        };
        out.push(client);
    }
    Ok(out)
}

/// The API resource of Flux Kustomizations.
pub fn kustomization_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization");
    ApiResource::from_gvk_with_plural(&gvk, "kustomizations")
}

/// An object kind to watch, and whether fleetwave can do without it.
#[derive(Debug, Clone)]
pub struct Kind {
    pub resource: ApiResource,
    /// Optional kinds whose CRD is not installed (404 on the first list) are skipped.
    pub optional: bool,
    /// Namespace to watch; None = all namespaces (or a cluster-scoped kind).
    pub namespace: Option<String>,
}

impl Kind {
    fn new(group: &str, version: &str, kind: &str, plural: &str, optional: bool) -> Kind {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        Kind {
            resource: ApiResource::from_gvk_with_plural(&gvk, plural),
            optional,
            namespace: None,
        }
    }
}

/// `policy/v1` PodDisruptionBudgets (GA since Kubernetes 1.21), watched on each spoke.
pub fn pdb_kind() -> Kind {
    Kind {
        resource: ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("policy", "v1", "PodDisruptionBudget"),
            "poddisruptionbudgets",
        ),
        optional: false,
        namespace: None,
    }
}

/// Kinds that report the upgrade itself (CAPI, Kamaji, k0rdent), watched on the hub when
/// present: the registry's kinds with a hub resource.
pub fn upgrade_kinds() -> Vec<Kind> {
    crate::core::kinds::hub_kinds()
        .map(|(h, kind)| Kind::new(h.group, h.version, kind, h.plural, true))
        .collect()
}

/// Flux sources, watched to explain a Kustomization that has not applied a commit yet.
pub fn source_kinds() -> Vec<Kind> {
    vec![
        Kind::new(
            "source.toolkit.fluxcd.io",
            "v1",
            "GitRepository",
            "gitrepositories",
            true,
        ),
        Kind::new(
            "source.toolkit.fluxcd.io",
            "v1beta2",
            "OCIRepository",
            "ocirepositories",
            true,
        ),
    ]
}

/// What a [`KubeSource`] watches.
pub struct Targets {
    /// The hub: Flux Kustomizations in all namespaces (hub mode), plus `hub_kinds`.
    pub hub: Option<kube::Client>,
    pub hub_kinds: Vec<Kind>,
    /// Per-cluster mode: cluster name → a client for that cluster. Each spoke is watched for
    /// Kustomizations in `flux-system`, Nodes and Pods; its `/version` is polled.
    pub spokes: Vec<(String, kube::Client)>,
    /// How often each spoke's `/version` is read.
    pub version_every: Duration,
    /// How often each spoke's `/metrics` is read for deprecated API requests; None: never
    /// (only a `deprecatedApis` gate needs them, and the text is megabytes).
    pub deprecated_apis_every: Option<Duration>,
    /// Clusters whose own context could not be set up, and why: observed from the hub only,
    /// with the reason shown while they are waited for.
    pub unreachable: BTreeMap<String, String>,
    /// The fleet repository's URL: Kustomizations applying from another Git repository are
    /// checked for health only. None: every Kustomization must reach the merge commit.
    pub fleet_url: Option<String>,
}

impl Default for Targets {
    /// Nothing watched yet; `/version` every 30 s.
    fn default() -> Self {
        Targets {
            hub: None,
            hub_kinds: Vec::new(),
            spokes: Vec::new(),
            version_every: Duration::from_secs(30),
            deprecated_apis_every: None,
            unreachable: BTreeMap::new(),
            fleet_url: None,
        }
    }
}

/// Watcher bookkeeping, shared with the task that drives one watch stream.
struct Counters {
    /// Full lists started (the first one plus every relist, e.g. after 410 Gone).
    lists: AtomicUsize,
    /// Becomes true once the first list is in the store (or an optional kind is absent).
    listed: tokio::sync::watch::Sender<bool>,
    /// Errors the watcher reported (it retries with backoff after each).
    errors: AtomicUsize,
    last_error: Mutex<Option<String>>,
    /// An optional kind the API server does not serve.
    absent: std::sync::atomic::AtomicBool,
}

/// One list+watch of one kind on one API server, feeding a [`CompactStore`].
struct Watch {
    /// e.g. `kustomizations on the hub`, for messages.
    what: String,
    kind: String,
    store: CompactStore,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// `changed` is bumped on this watch's events (None: its events do not ask for a tick).
    fn start(
        client: kube::Client,
        kind: &Kind,
        what: String,
        changed: Option<tokio::sync::watch::Sender<u64>>,
    ) -> Watch {
        let ar = &kind.resource;
        let store = CompactStore::default();
        let writer = StoreWriter {
            store: store.clone(),
            shape: Shape::of(ar),
            resource: ar.clone(),
            buffer: Objects::new(),
        };
        let counters = Arc::new(Counters {
            lists: AtomicUsize::new(0),
            listed: tokio::sync::watch::channel(false).0,
            errors: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            absent: Default::default(),
        });
        let task = tokio::spawn(run_watch(
            client,
            kind.clone(),
            writer,
            counters.clone(),
            changed,
            what.clone(),
        ));
        Watch {
            what,
            kind: ar.kind.clone(),
            store,
            counters,
            task,
        }
    }

    fn listed(&self) -> bool {
        *self.counters.listed.borrow()
    }

    fn absent(&self) -> bool {
        self.counters.absent.load(Ordering::Relaxed)
    }

    fn last_error(&self) -> Option<String> {
        self.counters
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One cluster reached through its own context (per-cluster mode).
struct Spoke {
    cluster: String,
    kustomizations: Watch,
    /// GitRepositories and OCIRepositories in `flux-system`.
    sources: Vec<Watch>,
    nodes: Watch,
    pods: Watch,
    /// `policy/v1` PodDisruptionBudgets in all namespaces: drain blockers. Not part of
    /// [`Spoke::watches`]: a cluster whose PDBs cannot be listed (RBAC) is still observed,
    /// only without drain-blocker data (and says so).
    pdbs: Watch,
    /// The apiserver's `gitVersion`, or why it could not be read.
    version: VersionSlot,
    poller: tokio::task::JoinHandle<()>,
    /// Deprecated APIs requested, from `/metrics`, when asked for ([`Targets`]).
    deprecated: DeprecatedSlot,
    metrics_poller: Option<tokio::task::JoinHandle<()>>,
    restarts: Mutex<RestartCounter>,
}

/// Container restarts of one cluster as a count that only goes up while fleetwave watches:
/// a pod replaced during a drain takes its restart count with it, and a plain sum over the
/// pods there now would fall and hide the next crash loop.
#[derive(Default)]
struct RestartCounter {
    /// Restart count last seen per pod UID.
    seen: HashMap<String, u64>,
    total: u64,
}

impl RestartCounter {
    fn update<'a>(&mut self, pods: impl IntoIterator<Item = (&'a str, u64)>) -> u64 {
        let mut now = HashMap::new();
        for (uid, count) in pods {
            let before = self.seen.get(uid).copied().unwrap_or(0);
            self.total += count.saturating_sub(before);
            now.insert(uid.to_string(), count.max(before));
        }
        // Forget deleted pods (their restarts stay counted).
        self.seen = now;
        self.total
    }
}

/// How often a spoke's pollers read.
#[derive(Debug, Clone, Copy)]
struct Every {
    version: Duration,
    deprecated_apis: Option<Duration>,
}

impl Spoke {
    fn watches(&self) -> impl Iterator<Item = &Watch> {
        [&self.kustomizations, &self.nodes, &self.pods]
            .into_iter()
            .chain(&self.sources)
    }

    /// Why this cluster's own state cannot be trusted right now, if so.
    fn unobservable(&self) -> Option<String> {
        if self.kustomizations.absent() {
            return Some(
                "Flux Kustomizations are not served by this cluster (Flux not installed?)".into(),
            );
        }
        if let Some(w) = self.watches().find(|w| !w.listed()) {
            return Some(format!(
                "no list of {} yet{}",
                w.what,
                w.last_error()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ));
        }
        if let Some(w) = self.watches().find(|w| w.task.is_finished() && !w.absent()) {
            return Some(format!("the watch of {} has stopped", w.what));
        }
        // The apiserver answering `/version` is the liveness check: watches keep the last
        // state they saw when their server goes away.
        match &*self.version.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(Err(e)) => Some(format!("its API server does not answer: {e}")),
            _ => None,
        }
    }

    /// Start the watches and pollers of one cluster reached through its own context.
    fn start(
        cluster: String,
        client: kube::Client,
        every: Every,
        changed: &tokio::sync::watch::Sender<u64>,
    ) -> Spoke {
        let flux = Kind {
            resource: kustomization_resource(),
            optional: false,
            namespace: Some("flux-system".into()),
        };
        let core = |kind: &str, plural: &str| Kind {
            resource: ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("", "v1", kind),
                plural,
            ),
            optional: false,
            namespace: None,
        };
        let w = |k: &Kind, what: &str| {
            // Pod status churns all the time; restart counts are read on the next tick.
            let signal = k.resource.plural != "pods";
            Watch::start(
                client.clone(),
                k,
                format!("{what} on {cluster}"),
                signal.then(|| changed.clone()),
            )
        };
        let version = Arc::new(Mutex::new(None));
        let poller = tokio::spawn(poll_version(
            client.clone(),
            version.clone(),
            every.version,
            changed.clone(),
        ));
        let deprecated = Arc::new(Mutex::new(None));
        let metrics_poller = every.deprecated_apis.map(|every| {
            tokio::spawn(poll_deprecated_apis(
                client.clone(),
                deprecated.clone(),
                every,
                changed.clone(),
            ))
        });
        let sources = source_kinds()
            .into_iter()
            .map(|mut k| {
                k.namespace = Some("flux-system".into());
                let what = k.resource.plural.clone();
                w(&k, &what)
            })
            .collect();
        Spoke {
            kustomizations: w(&flux, "Kustomizations"),
            sources,
            nodes: w(&core("Node", "nodes"), "Nodes"),
            pods: w(&core("Pod", "pods"), "Pods"),
            pdbs: w(&pdb_kind(), "PodDisruptionBudgets"),
            cluster,
            version,
            poller,
            deprecated,
            metrics_poller,
            restarts: Mutex::default(),
        }
    }
}

/// Cluster state from Kubernetes, kept current by one list+watch per context and kind.
/// See module docs.
pub struct KubeSource {
    hub: Vec<Watch>,
    spokes: Vec<Spoke>,
    unreachable: BTreeMap<String, String>,
    /// Normalised (see [`crate::core::repo_url::normalize_repo_url`]).
    fleet_url: Option<String>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Set once [`KubeSource::ready_once`] has seen every first list.
    first_lists: tokio::sync::OnceCell<()>,
}

impl KubeSource {
    /// Hub mode, Flux only: one watcher (list + watch, with bookmarks; kube's watcher relists
    /// on 410 Gone) for Kustomizations in all namespaces. Must be called inside a tokio
    /// runtime; returns at once; use [`KubeSource::ready`] to wait for the first list.
    pub async fn start(client: kube::Client) -> Result<KubeSource, ClusterError> {
        Self::start_with(Targets {
            hub: Some(client),
            ..Targets::default()
        })
        .await
    }

    /// Start every watch `targets` asks for. Must be called inside a tokio runtime whose
    /// workers keep running (the watches are tasks on it); returns at once.
    pub async fn start_with(targets: Targets) -> Result<KubeSource, ClusterError> {
        let changed = tokio::sync::watch::channel(0u64).0;
        let mut hub = Vec::new();
        if let Some(client) = &targets.hub {
            let ks = Kind {
                resource: kustomization_resource(),
                optional: false,
                namespace: None,
            };
            hub.push(Watch::start(
                client.clone(),
                &ks,
                "Kustomizations on the hub".into(),
                Some(changed.clone()),
            ));
            for k in &targets.hub_kinds {
                let what = format!("{} on the hub", k.resource.plural);
                hub.push(Watch::start(client.clone(), k, what, Some(changed.clone())));
            }
        }
        let every = Every {
            version: targets.version_every,
            deprecated_apis: targets.deprecated_apis_every,
        };
        let spokes = targets
            .spokes
            .into_iter()
            .map(|(cluster, client)| Spoke::start(cluster, client, every, &changed))
            .collect();
        Ok(KubeSource {
            hub,
            spokes,
            unreachable: targets.unreachable,
            fleet_url: targets
                .fleet_url
                .as_deref()
                .and_then(crate::core::repo_url::normalize_repo_url),
            changed,
            first_lists: tokio::sync::OnceCell::new(),
        })
    }

    fn watches(&self) -> impl Iterator<Item = &Watch> {
        self.hub.iter().chain(self.spokes.iter().flat_map(|s| {
            [&s.kustomizations, &s.nodes, &s.pods, &s.pdbs]
                .into_iter()
                .chain(&s.sources)
        }))
    }

    /// Wait until every watch has had its first list (or found its optional kind absent),
    /// at most `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        // Not `Store::wait_until_ready`: `observe` goes by the same flags, so once this
        // returns Ok, `observe` answers. Only the hub is required: a cluster whose own API
        // server does not list in time is reported unobservable, not fatal to the fleet.
        let deadline = tokio::time::Instant::now() + timeout;
        let spokes = async {
            for s in &self.spokes {
                // PodDisruptionBudgets too: a one-shot tick must not read "no data" (no hold)
                // only because their first list was slower than the others.
                for w in s.watches().chain([&s.pdbs]) {
                    let mut listed = w.counters.listed.subscribe();
                    let _ = listed.wait_for(|l| *l).await;
                }
            }
        };
        let all = async {
            for w in &self.hub {
                let mut listed = w.counters.listed.subscribe();
                if listed.wait_for(|l| *l).await.is_err() {
                    return Err(w.what.clone());
                }
            }
            Ok(())
        };
        let hub = tokio::time::timeout_at(deadline, all).await;
        if matches!(hub, Ok(Ok(()))) {
            let _ = tokio::time::timeout_at(deadline, spokes).await;
        }
        match hub {
            Ok(Ok(())) => Ok(()),
            Ok(Err(what)) => Err(ClusterError::Unavailable(format!(
                "the watch of {what} stopped before its first list"
            ))),
            Err(_) => {
                let missing: Vec<String> = self
                    .hub
                    .iter()
                    .filter(|w| !w.listed())
                    .map(|w| {
                        format!(
                            "{}{}",
                            w.what,
                            w.last_error()
                                .map(|e| format!(" (last error: {e})"))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                Err(ClusterError::Unavailable(format!(
                    "no list within {timeout:?} of {}",
                    missing.join("; ")
                )))
            }
        }
    }

    /// [`KubeSource::ready`] the first time it succeeds, and at once after that: callers
    /// that start the watches, do other work (fetch, plan) while the first lists arrive and
    /// then observe. Later calls never wait again for a spoke that stopped answering.
    pub async fn ready_once(&self, timeout: Duration) -> Result<(), ClusterError> {
        self.first_lists
            .get_or_try_init(|| self.ready(timeout))
            .await
            .map(|_| ())
    }

    /// Bumped on every watch event (and `/version` change), for event-driven ticks.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Full lists made so far over all watches: one per watch after start, +1 per relist
    /// (410 Gone, restarts). Watch reconnects that resume from a resourceVersion are not
    /// counted.
    pub fn lists(&self) -> usize {
        self.watches()
            .map(|w| w.counters.lists.load(Ordering::Relaxed))
            .sum()
    }

    /// Errors the watchers have reported so far (they keep retrying with backoff).
    pub fn errors(&self) -> usize {
        self.watches()
            .map(|w| w.counters.errors.load(Ordering::Relaxed))
            .sum()
    }

    /// The most recent watcher error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.watches().find_map(Watch::last_error)
    }

    /// Optional kinds the hub does not serve (CRD not installed), e.g. `TenantControlPlane`.
    pub fn absent_kinds(&self) -> Vec<String> {
        self.hub
            .iter()
            .filter(|w| w.absent())
            .map(|w| w.kind.clone())
            .collect()
    }

    /// Kustomizations currently in the hub's store (all namespaces).
    pub fn len(&self) -> usize {
        self.hub.first().map_or(0, |w| w.store.read().len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        // The watches would otherwise outlive their only reader.
        for w in self.watches() {
            w.task.abort();
        }
        for s in &self.spokes {
            s.poller.abort();
            if let Some(m) = &s.metrics_poller {
                m.abort();
            }
        }
    }
}

/// Watch one kind. An optional kind is first looked up in the API server's discovery and
/// watched at the version the server prefers (CAPI serves v1beta2 and v1beta1, Flux
/// OCIRepository v1 and v1beta2, ...); when the server does not serve it at all it is absent.
async fn run_watch(
    client: kube::Client,
    kind: Kind,
    writer: StoreWriter,
    counters: Arc<Counters>,
    changed: Option<tokio::sync::watch::Sender<u64>>,
    what: String,
) {
    let ar = if kind.optional {
        match served(&client, &kind.resource).await {
            Ok(Some(ar)) => ar,
            Ok(None) => {
                tracing::info!(%what, "not served by this API server; not watching it");
                counters.absent.store(true, Ordering::Relaxed);
                counters.listed.send_replace(true);
                return;
            }
            Err(e) => {
                // Discovery failed (server down?): watch the default version; the watcher
                // retries with backoff and reports its own errors.
                tracing::warn!(%what, error = %e, "discovery failed; watching the default version");
                kind.resource.clone()
            }
        }
    } else {
        kind.resource.clone()
    };
    let api: Api<Watched> = match &kind.namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    };
    // Backoff so an unreachable or failing API server is not hammered by retries.
    let events = watcher(api, watcher::Config::default()).default_backoff();
    let optional = kind.optional;
    drive(Box::pin(events), writer, counters, optional, changed, what).await;
}

/// The version of `ar`'s kind the API server prefers, None when it serves the kind at no
/// version.
async fn served(
    client: &kube::Client,
    ar: &ApiResource,
) -> Result<Option<ApiResource>, kube::Error> {
    let group = match kube::discovery::oneshot::group(client, &ar.group).await {
        Ok(g) => g,
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Some((found, _)) = group.recommended_kind(&ar.kind) {
        return Ok(Some(found));
    }
    // Not at the preferred version: any version that has it.
    Ok(group.versions().find_map(|v| {
        group
            .versioned_resources(v)
            .into_iter()
            .find(|(r, _)| r.kind == ar.kind)
            .map(|(r, _)| r)
    }))
}

/// A spoke's last `/version` answer: its git version, or why it did not answer.
type VersionSlot = Arc<Mutex<Option<Result<String, NoVersion>>>>;

/// Why a spoke's API server did not answer `/version` (kept as text to compare answers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
struct NoVersion(String);

/// Read a spoke's `/version` now and every `every` after.
async fn poll_version(
    client: kube::Client,
    slot: VersionSlot,
    every: Duration,
    changed: tokio::sync::watch::Sender<u64>,
) {
    loop {
        let got = client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .map_err(|e| NoVersion(e.to_string()));
        keep_reading(&slot, got, &changed);
        tokio::time::sleep(every).await;
    }
}

/// Store a poller's reading, signalling a change only when it differs from the last one.
fn keep_reading<T: PartialEq>(
    slot: &Mutex<Option<T>>,
    got: T,
    changed: &tokio::sync::watch::Sender<u64>,
) {
    let moved = {
        let mut cur = slot.lock().unwrap_or_else(|p| p.into_inner());
        let moved = cur.as_ref() != Some(&got);
        *cur = Some(got);
        moved
    };
    if moved {
        changed.send_modify(|n| *n += 1);
    }
}

/// A spoke's last reading of deprecated API requests, or why `/metrics` could not be read.
type DeprecatedSlot = Arc<Mutex<Option<Result<Vec<crate::core::cluster::DeprecatedApi>, String>>>>;

/// Read a spoke's `/metrics` now and every `every` after, keeping only the
/// `apiserver_requested_deprecated_apis` series (the API server's own metric; reading it needs
/// `get` on the non-resource URL `/metrics`).
async fn poll_deprecated_apis(
    client: kube::Client,
    slot: DeprecatedSlot,
    every: Duration,
    changed: tokio::sync::watch::Sender<u64>,
) {
    loop {
        let got = match http::Request::get("/metrics").body(Vec::new()) {
            Ok(req) => match client.request_text(req).await {
                Ok(text) => crate::core::gates::parse_deprecated_apis(&text)
                    .map_err(|e| format!("its /metrics cannot be read: {e}")),
                Err(e) => Err(format!("GET /metrics: {e}")),
            },
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = &got {
            tracing::warn!("deprecated API metrics: {why}");
        }
        keep_reading(&slot, got, &changed);
        tokio::time::sleep(every).await;
    }
}

/// A watched object as fleetwave reads it: the metadata fields it uses, `spec` and `status`
/// (where every reader looks, see [`crate::core::cluster::object::Obj`]). Decoded directly:
/// kube's `DynamicObject` flattens everything but its metadata into one `Value`, which serde
/// does by buffering each object whole first, and decodes every metadata field, managed
/// fields and annotations included (often most of a real object's bytes).
#[derive(Debug, Clone, serde::Deserialize)]
struct Watched {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, deserialize_with = "slim_meta")]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
}

/// The metadata fields the readers use, plus `resourceVersion` (kube's watcher resumes from
/// the last object's); the rest is skipped unread.
fn slim_meta<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Slim {
        name: Option<String>,
        namespace: Option<String>,
        generation: Option<i64>,
        labels: Option<BTreeMap<String, String>>,
        uid: Option<String>,
        owner_references: Option<Vec<OwnerReference>>,
        resource_version: Option<String>,
    }
    let m = <Option<Slim> as serde::Deserialize>::deserialize(d)?.unwrap_or_default();
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        generation: m.generation,
        labels: m.labels,
        uid: m.uid,
        owner_references: m.owner_references,
        resource_version: m.resource_version,
        ..ObjectMeta::default()
    })
}

impl kube::Resource for Watched {
    type DynamicType = ApiResource;
    type Scope = kube::core::DynamicResourceScope;

    fn kind(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn group(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<Watched> for DynamicObject {
    fn from(w: Watched) -> DynamicObject {
        let mut data = serde_json::Map::new();
        for (key, value) in [("spec", w.spec), ("status", w.status)] {
            if let Some(v) = value {
                data.insert(key.to_string(), v);
            }
        }
        DynamicObject {
            types: w
                .api_version
                .zip(w.kind)
                .map(|(api_version, kind)| kube::api::TypeMeta { api_version, kind }),
            metadata: w.metadata,
            data: Value::Object(data),
        }
    }
}

/// The event with its object as the stores read it.
fn dynamic_event<K: Into<DynamicObject>>(e: watcher::Event<K>) -> watcher::Event<DynamicObject> {
    use watcher::Event as E;
    match e {
        E::Apply(o) => E::Apply(o.into()),
        E::Delete(o) => E::Delete(o.into()),
        E::Init => E::Init,
        E::InitApply(o) => E::InitApply(o.into()),
        E::InitDone => E::InitDone,
    }
}

/// Poll the watch stream forever, applying each event to the store before acting on it.
/// Generic over `WatchStreamExt` so the `Stream` supertrait's `poll_next` is usable without a
/// direct `futures` dependency.
async fn drive<S, K>(
    mut events: S,
    mut writer: StoreWriter,
    counters: Arc<Counters>,
    optional: bool,
    changed: Option<tokio::sync::watch::Sender<u64>>,
    what: String,
) where
    S: WatchStreamExt<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
    K: Into<DynamicObject>,
{
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut events).poll_next(cx))
            .await
            .map(|r| r.map(dynamic_event));
        if let Some(Ok(event)) = &next {
            writer.apply(event);
        }
        match next {
            None => break,
            Some(Ok(watcher::Event::Init)) => {
                counters.lists.fetch_add(1, Ordering::Relaxed);
            }
            // The writer has applied the event, so the store is full.
            Some(Ok(watcher::Event::InitDone)) => {
                // Bump first: whoever waits for `listed` then sees no change left over.
                if let Some(c) = &changed {
                    c.send_modify(|n| *n += 1);
                }
                counters.listed.send_replace(true);
            }
            Some(Ok(watcher::Event::InitApply(_))) => {}
            Some(Ok(_)) => {
                if let Some(c) = &changed {
                    c.send_modify(|n| *n += 1);
                }
            }
            Some(Err(watcher::Error::InitialListFailed(kube::Error::Api(s))))
                if optional && s.code == 404 =>
            {
                // The CRD is not installed: nothing of this kind to observe, ever.
                tracing::info!(%what, "not served by this API server; not watching it");
                counters.absent.store(true, Ordering::Relaxed);
                counters.listed.send_replace(true);
                break;
            }
            Some(Err(e)) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, %what, "watch error; kube watcher will retry");
                *counters
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(format!("{what}: {e}"));
            }
        }
    }
}

impl ClusterSource for KubeSource {
    async fn observe(
        &self,
        clusters: &[String],
        _now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, ClusterObservation>, ClusterError> {
        self.check_watches()?;
        let index: HashMap<&str, usize> = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let mut out: Vec<ClusterObservation> = vec![ClusterObservation::default(); clusters.len()];
        self.observe_hub(&index, &mut out);
        self.observe_spokes(&index, &mut out);
        for (c, why) in &self.unreachable {
            if let Some(&i) = index.get(c.as_str()) {
                out[i].unobservable = Some(why.clone());
            }
        }
        out.iter_mut().for_each(settle);
        Ok(clusters.iter().cloned().zip(out).collect())
    }
}

/// The stores' order is arbitrary: keep an observation deterministic, and say whether an
/// upgrade is in progress.
fn settle(o: &mut ClusterObservation) {
    o.kustomizations
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    o.kustomizations
        .dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
    o.components
        .sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    o.components
        .dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
    if o.upgrade_in_progress.is_none() {
        o.upgrade_in_progress = crate::core::cluster::upgrade::in_progress(&o.components);
    }
}

impl KubeSource {
    /// Every hub watch runs and has listed once: before the first list an empty store would
    /// read as "nothing anywhere".
    fn check_watches(&self) -> Result<(), ClusterError> {
        for w in &self.hub {
            if w.task.is_finished() && !w.absent() {
                return Err(ClusterError::Unavailable(format!(
                    "the watch of {} has stopped",
                    w.what
                )));
            }
            if !w.listed() {
                return Err(ClusterError::Unavailable(format!(
                    "no list of {} received yet",
                    w.what
                )));
            }
        }
        Ok(())
    }

    /// Flux Kustomizations and upgrade-reporting objects on the hub, by owning cluster.
    fn observe_hub(&self, index: &HashMap<&str, usize>, out: &mut [ClusterObservation]) {
        let Some((flux, kinds)) = self.hub.split_first() else {
            return;
        };
        let sources = source_index(kinds);
        for c in flux.store.read().values() {
            let Compact::Kustomization { mut status, owners } = c.unpack() else {
                continue;
            };
            attach_source(&mut status, &sources, self.fleet_url.as_deref());
            for o in owners {
                if let Some(&i) = index.get(o.as_str()) {
                    out[i].kustomizations.push(status.clone());
                }
            }
        }
        let stored: Vec<UpgradeObj> = kinds
            .iter()
            .flat_map(|w| {
                w.store
                    .read()
                    .values()
                    .filter_map(|c| match c.unpack() {
                        Compact::Upgrade(u) => Some(u),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let upgrades = || stored.iter();
        // CAPI control planes are found through their Cluster's controlPlaneRef too.
        let cp_refs: HashMap<(&str, &str), &str> = upgrades()
            .filter_map(|u| {
                let cp = u.control_plane_ref.as_deref()?;
                Some(((u.namespace.as_deref().unwrap_or(""), cp), u.name.as_str()))
            })
            .collect();
        for u in upgrades() {
            let Some(comp) = &u.component else {
                continue;
            };
            let key = (u.namespace.as_deref().unwrap_or(""), u.name.as_str());
            for o in u.owners(cp_refs.get(&key).copied()) {
                if let Some(&i) = index.get(o) {
                    out[i].components.push(comp.clone());
                }
            }
        }
    }

    /// Per-cluster contexts: their Kustomizations, nodes, pod restarts and apiserver version.
    fn observe_spokes(&self, index: &HashMap<&str, usize>, out: &mut [ClusterObservation]) {
        for s in &self.spokes {
            let Some(&i) = index.get(s.cluster.as_str()) else {
                continue;
            };
            let o = &mut out[i];
            if let Some(why) = s.unobservable() {
                o.unobservable = Some(why);
                continue;
            }
            let sources = source_index(&s.sources);
            o.kustomizations
                .extend(s.kustomizations.store.read().values().filter_map(|c| {
                    let Compact::Kustomization { status: mut st, .. } = c.unpack() else {
                        return None;
                    };
                    attach_source(&mut st, &sources, self.fleet_url.as_deref());
                    Some(st)
                }));
            let nodes: Vec<NodeSummary> = s
                .nodes
                .store
                .read()
                .values()
                .filter_map(|c| match c.unpack() {
                    Compact::Node(n) => Some(n),
                    _ => None,
                })
                .collect();
            o.nodes = Some(node_total(&nodes));
            let pods: Vec<(String, u64)> = s
                .pods
                .store
                .read()
                .values()
                .filter_map(|c| match c.unpack() {
                    Compact::Pod { uid, restarts } => Some((uid, restarts)),
                    _ => None,
                })
                .collect();
            o.pod_restarts = Some(
                s.restarts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .update(pods.iter().map(|(uid, r)| (uid.as_str(), *r))),
            );
            // PodDisruptionBudgets: only once listed, and while their watch runs; else no data
            // (status says so) rather than "none block".
            o.drain_blockers = (s.pdbs.listed() && !s.pdbs.task.is_finished())
                .then(|| drain_blockers(&s.pdbs.store.read()));
            // Only what was read: an unreadable `/metrics` is no data, which the gate holds on.
            o.deprecated_apis = match &*s.deprecated.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(Ok(apis)) => Some(apis.clone()),
                _ => None,
            };
            let version = s.version.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(Ok(v)) = version {
                o.components
                    .push(crate::core::cluster::upgrade::apiserver(&v));
            }
        }
        for (c, why) in &self.unreachable {
            if let Some(&i) = index.get(c.as_str()) {
                out[i].unobservable = Some(why.clone());
            }
        }
    }
}

/// Nodes summarised one by one, added up: what `node_summary_of` makes of them all.
fn node_total<'a>(nodes: impl IntoIterator<Item = &'a NodeSummary>) -> NodeSummary {
    let mut out = NodeSummary::default();
    for n in nodes {
        out.total += n.total;
        out.ready += n.ready;
        for (v, k) in &n.kubelets {
            *out.kubelets.entry(v.clone()).or_default() += k;
        }
        for (v, k) in &n.control_plane_kubelets {
            *out.control_plane_kubelets.entry(v.clone()).or_default() += k;
        }
        out.not_ready.extend(n.not_ready.iter().cloned());
    }
    out.not_ready.sort();
    out
}

/// The drain blockers among stored PodDisruptionBudgets, sorted as `drain_blockers_of` sorts.
fn drain_blockers(pdbs: &Objects) -> Vec<DrainBlocker> {
    let mut out: Vec<DrainBlocker> = pdbs
        .values()
        .filter_map(|c| match c.unpack() {
            Compact::PodDisruptionBudget(b) => b,
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// An object's parts as the core readers take them. List items may come without
/// `apiVersion`/`kind` (the API server leaves them out for built-in kinds), so the watched
/// resource's are used.
fn obj_ref<'a>(
    obj: &'a DynamicObject,
    ar: &'a ApiResource,
) -> crate::core::cluster::upgrade::Obj<'a> {
    let (api_version, kind) = obj
        .types
        .as_ref()
        .map_or((ar.api_version.as_str(), ar.kind.as_str()), |t| {
            (t.api_version.as_str(), t.kind.as_str())
        });
    crate::core::cluster::upgrade::Obj {
        api_version,
        kind,
        name: obj.metadata.name.as_deref().unwrap_or("?"),
        namespace: obj.metadata.namespace.as_deref(),
        generation: obj.metadata.generation,
        control_plane: obj
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(crate::core::cluster::upgrade::CONTROL_PLANE_LABEL)),
        data: &obj.data,
    }
}

/// What a watch keeps of its kind's objects (see [`Compact`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Kustomization,
    /// Flux GitRepository / OCIRepository.
    Source,
    /// Kinds that report the upgrade (CAPI, Kamaji, k0rdent). `capi_cluster`: a CAPI
    /// `Cluster`, whose `spec.controlPlaneRef` names its control plane.
    Upgrade {
        capi_cluster: bool,
    },
    Node,
    Pod,
    PodDisruptionBudget,
}

impl Shape {
    fn of(ar: &ApiResource) -> Shape {
        match ar.kind.as_str() {
            "Kustomization" => Shape::Kustomization,
            "GitRepository" | "OCIRepository" => Shape::Source,
            "Node" => Shape::Node,
            "Pod" => Shape::Pod,
            "PodDisruptionBudget" => Shape::PodDisruptionBudget,
            kind => Shape::Upgrade {
                capi_cluster: kind == "Cluster",
            },
        }
    }
}

/// What fleetwave reads of one watched object, read once when its watch event arrives: at
/// 10,000 clusters the stores are most of the memory, and a whole object is kilobytes of JSON
/// (managed fields, a Kustomization's inventory, machine templates, a node's image list, a
/// pod's spec) of which fleetwave reads a few fields.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum Compact {
    /// Its status (`source`: the reference only; the source's status comes from its own
    /// watch) and the clusters it belongs to ([`owners`]).
    Kustomization {
        status: KustomizationStatus,
        owners: Vec<String>,
    },
    Source(SourceStatus),
    Upgrade(UpgradeObj),
    /// One node, summarised alone (summaries add up, [`node_total`]).
    Node(NodeSummary),
    Pod {
        uid: String,
        restarts: u64,
    },
    PodDisruptionBudget(Option<DrainBlocker>),
}

impl Compact {
    /// `ar`: the watched resource (its kind and version stand in for missing `types`).
    fn of(obj: &DynamicObject, shape: Shape, ar: &ApiResource) -> Compact {
        use crate::core::cluster::upgrade as up;
        match shape {
            Shape::Kustomization => Compact::Kustomization {
                status: status_of(obj),
                owners: owners(obj).into_iter().map(str::to_string).collect(),
            },
            Shape::Source => Compact::Source(source_of(obj, &ar.kind)),
            Shape::Upgrade { capi_cluster } => {
                Compact::Upgrade(UpgradeObj::of(obj, ar, capi_cluster))
            }
            Shape::Node => Compact::Node(up::node_summary_of([obj_ref(obj, ar)])),
            Shape::Pod => Compact::Pod {
                uid: obj.metadata.uid.clone().unwrap_or_default(),
                restarts: up::pod_restarts(&obj.data),
            },
            Shape::PodDisruptionBudget => {
                Compact::PodDisruptionBudget(up::drain_blocker(&obj_ref(obj, ar)))
            }
        }
    }
}

/// An upgrade-reporting object: the component it describes and the clusters it names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct UpgradeObj {
    namespace: Option<String>,
    name: String,
    component: Option<Component>,
    /// The clusters it names itself ([`named_owners`]).
    named: Vec<String>,
    /// A CAPI Cluster's `spec.controlPlaneRef.name`.
    control_plane_ref: Option<String>,
}

impl UpgradeObj {
    fn of(obj: &DynamicObject, ar: &ApiResource, capi_cluster: bool) -> UpgradeObj {
        let cp_ref = || obj.data.pointer("/spec/controlPlaneRef/name")?.as_str();
        UpgradeObj {
            namespace: obj.metadata.namespace.clone(),
            name: obj.metadata.name.clone().unwrap_or_default(),
            component: crate::core::cluster::upgrade::component_of(&obj_ref(obj, ar)),
            named: named_owners(obj, &ar.kind)
                .into_iter()
                .map(str::to_string)
                .collect(),
            control_plane_ref: capi_cluster.then(cp_ref).flatten().map(str::to_string),
        }
    }

    /// The clusters it belongs to: what [`upgrade_owners`] reads of the whole object.
    fn owners<'a>(&'a self, referenced_by: Option<&'a str>) -> BTreeSet<&'a str> {
        owned_by(
            self.named.iter().map(String::as_str).collect(),
            referenced_by,
            self.namespace.as_deref(),
        )
    }
}

/// Key of a stored object within its watch, as kube's reflector keys its store:
/// `namespace/name`, or `name` for a cluster-scoped object (neither part can hold a `/`).
/// One string, since there is one per stored object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjKey(Box<str>);

impl ObjKey {
    fn of(obj: &DynamicObject) -> ObjKey {
        let name = obj.metadata.name.as_deref().unwrap_or_default();
        ObjKey(match obj.metadata.namespace.as_deref() {
            Some(ns) => format!("{ns}/{name}").into_boxed_str(),
            None => name.into(),
        })
    }
}

/// A [`Compact`] kept as its JSON: a stored object is then one allocation of a few hundred
/// bytes instead of a dozen strings and vectors. At 10,000 clusters the hub's 40,000 objects
/// took 44 MB typed, held beside the planning of a first `status`; a tick's `observe` reads
/// them back.
#[derive(Debug, Clone)]
struct Packed(Box<[u8]>);

impl Packed {
    fn pack(c: &Compact) -> Packed {
        // Plain data (strings, numbers, maps with string keys): serializing cannot fail.
        Packed(serde_json::to_vec(c).unwrap_or_default().into_boxed_slice())
    }

    fn unpack(&self) -> Compact {
        serde_json::from_slice(&self.0)
            .expect("a stored object reads back (see the round-trip test)")
    }
}

/// One watch's objects.
type Objects = HashMap<ObjKey, Packed>;

/// One watch's objects, shared: its task writes, ticks read.
#[derive(Clone, Default)]
struct CompactStore(Arc<RwLock<Objects>>);

impl CompactStore {
    fn read(&self) -> RwLockReadGuard<'_, Objects> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Objects> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Applies watch events to a [`CompactStore`] as kube's reflector applies them to its store: a
/// (re)list's objects are gathered aside and replace the store at once when the list is done
/// (so a relist after 410 Gone also drops objects deleted meanwhile); later events add,
/// replace or remove one object.
struct StoreWriter {
    store: CompactStore,
    shape: Shape,
    resource: ApiResource,
    buffer: Objects,
}

impl StoreWriter {
    fn apply(&mut self, event: &watcher::Event<DynamicObject>) {
        let compact = |o: &DynamicObject| {
            (
                ObjKey::of(o),
                Packed::pack(&Compact::of(o, self.shape, &self.resource)),
            )
        };
        match event {
            watcher::Event::Init => self.buffer = Objects::new(),
            watcher::Event::InitApply(o) => {
                let (k, c) = compact(o);
                self.buffer.insert(k, c);
            }
            watcher::Event::InitDone => *self.store.write() = std::mem::take(&mut self.buffer),
            watcher::Event::Apply(o) => {
                let (k, c) = compact(o);
                self.store.write().insert(k, c);
            }
            watcher::Event::Delete(o) => {
                self.store.write().remove(&ObjKey::of(o));
            }
        }
    }
}

type SourceKey = (String, String, String);

/// Flux sources in these watches by (kind, namespace, name).
fn source_index(watches: &[Watch]) -> HashMap<SourceKey, SourceStatus> {
    let mut out = HashMap::new();
    for w in watches {
        for c in w.store.read().values() {
            if let Compact::Source(s) = c.unpack() {
                let key = (s.kind.clone(), s.namespace.clone(), s.name.clone());
                out.insert(key, s.clone());
            }
        }
    }
    out
}

/// A Flux source of kind `kind` as a Kustomization's `source` shows it.
fn source_of(obj: &DynamicObject, kind: &str) -> SourceStatus {
    let ready = obj
        .data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .map(|c| {
            let f = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Condition {
                type_: "Ready".into(),
                status: f("status"),
                reason: f("reason"),
                message: f("message"),
            }
        });
    let text = |p: &str| {
        obj.data
            .pointer(p)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    SourceStatus {
        kind: kind.to_string(),
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        revision: text("/status/artifact/revision"),
        url: text("/spec/url"),
        ready,
    }
}

/// Fill in the source of a Kustomization from the index, when it is there, and whether it
/// applies from the fleet repository (`fleet`: its normalised URL, when known).
fn attach_source(
    k: &mut KustomizationStatus,
    sources: &HashMap<SourceKey, SourceStatus>,
    fleet: Option<&str>,
) {
    if let Some(r) = k.source.take() {
        k.source = sources
            .get(&(r.kind.clone(), r.namespace.clone(), r.name.clone()))
            .cloned();
    }
    k.from_fleet = match (&k.source, fleet) {
        (Some(s), Some(fleet)) if s.kind == "GitRepository" => s
            .url
            .as_deref()
            .and_then(crate::core::repo_url::normalize_repo_url)
            .map(|u| u == fleet),
        _ => None,
    };
}

/// The clusters an upgrade-reporting object belongs to: its namespace, the fleetwave or CAPI
/// cluster-name label, `spec.clusterName`, an owning CAPI `Cluster`, and for per-cluster kinds
/// (CAPI `Cluster`, Kamaji `TenantControlPlane`, k0rdent `ClusterDeployment`) its own name.
pub fn upgrade_owners<'a>(
    obj: &'a DynamicObject,
    kind: &str,
    referenced_by: Option<&'a str>,
) -> BTreeSet<&'a str> {
    owned_by(
        named_owners(obj, kind),
        referenced_by,
        obj.metadata.namespace.as_deref(),
    )
}

/// The clusters an object belongs to, from those it names (`named`) and the Cluster that
/// references it: its namespace only when nothing names the cluster, for a management
/// cluster's namespace often holds the objects of the clusters it manages.
fn owned_by<'a>(
    mut named: BTreeSet<&'a str>,
    referenced_by: Option<&'a str>,
    namespace: Option<&'a str>,
) -> BTreeSet<&'a str> {
    named.extend(referenced_by);
    if named.is_empty()
        && let Some(ns) = namespace.filter(|s| !s.is_empty())
    {
        named.insert(ns);
    }
    named
}

/// The clusters an upgrade-reporting object names itself (see [`upgrade_owners`]).
fn named_owners<'a>(obj: &'a DynamicObject, kind: &str) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::new();
    let nonempty = |s: &&str| !s.is_empty();
    if let Some(labels) = &obj.metadata.labels {
        for key in [CLUSTER_LABEL, "cluster.x-k8s.io/cluster-name"] {
            if let Some(c) = labels.get(key).map(String::as_str).filter(nonempty) {
                out.insert(c);
            }
        }
    }
    if let Some(c) = obj
        .data
        .pointer("/spec/clusterName")
        .and_then(Value::as_str)
        .filter(nonempty)
    {
        out.insert(c);
    }
    for o in obj.metadata.owner_references.iter().flatten() {
        if o.kind == "Cluster" && o.api_version.starts_with("cluster.x-k8s.io/") {
            out.insert(o.name.as_str());
        }
    }
    if crate::core::kinds::names_cluster(kind) {
        if let Some(n) = obj.metadata.name.as_deref().filter(nonempty) {
            out.insert(n);
        }
    }
    out
}

/// The clusters a hub Kustomization belongs to (see module docs).
pub fn owners(obj: &DynamicObject) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    if let Some(ns) = obj.metadata.namespace.as_deref().filter(|s| !s.is_empty()) {
        out.insert(ns);
    }
    if let Some(c) = obj
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CLUSTER_LABEL))
        .filter(|s| !s.is_empty())
    {
        out.insert(c.as_str());
    }
    if let Some(c) = obj
        .data
        .pointer("/spec/kubeConfig/secretRef/name")
        .and_then(Value::as_str)
        .and_then(|n| n.strip_suffix(KUBECONFIG_SUFFIX))
        .filter(|s| !s.is_empty())
    {
        out.insert(c);
    }
    out
}

/// The fields fleetwave reads, taken defensively: a missing status means generation
/// observed 0; a condition without a type is skipped; a missing condition status is Unknown.
pub fn status_of(obj: &DynamicObject) -> KustomizationStatus {
    let status = obj.data.get("status");
    let field = |k: &str| status.and_then(|s| s.get(k));
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let int = |v: Option<&Value>| {
        v.and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let conditions = field("conditions")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    let type_ = text(c.get("type")).filter(|t| !t.is_empty())?;
                    Some(Condition {
                        type_,
                        status: text(c.get("status")).unwrap_or_else(|| "Unknown".into()),
                        reason: text(c.get("reason")).unwrap_or_default(),
                        message: text(c.get("message")).unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    KustomizationStatus {
        name: obj.metadata.name.clone().unwrap_or_default(),
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        generation: obj.metadata.generation.unwrap_or(0),
        observed_generation: int(field("observedGeneration")).unwrap_or(0),
        conditions,
        last_applied_revision: text(field("lastAppliedRevision")).filter(|s| !s.is_empty()),
        last_attempted_revision: text(field("lastAttemptedRevision")).filter(|s| !s.is_empty()),
        last_applied_origin_revision: text(field("lastAppliedOriginRevision"))
            .filter(|s| !s.is_empty()),
        // Only the reference; the source's status is attached from its own watch.
        source: obj.data.pointer("/spec/sourceRef").map(|r| SourceStatus {
            kind: text(r.get("kind")).unwrap_or_default(),
            namespace: text(r.get("namespace"))
                .or_else(|| obj.metadata.namespace.clone())
                .unwrap_or_default(),
            name: text(r.get("name")).unwrap_or_default(),
            ..Default::default()
        }),
        from_fleet: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).expect("DynamicObject")
    }

    #[test]
    fn restart_counter_only_goes_up() {
        let mut c = RestartCounter::default();
        assert_eq!(c.update([("a", 3), ("b", 1)]), 4);
        assert_eq!(c.update([("a", 5), ("b", 1)]), 6);
        // Pod a is replaced by c during a drain: a's 5 stay counted, c starts at 0.
        assert_eq!(c.update([("b", 1), ("c", 0)]), 6);
        // The replacement crash-loops: every restart counts from here.
        assert_eq!(c.update([("b", 1), ("c", 4)]), 10);
    }

    /// The compact form keeps everything fleetwave reads: every recorded status fixture (a
    /// whole object as its controller writes it) reads the same through its compact form as
    /// read whole.
    #[test]
    fn compact_objects_read_the_same() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/status");
        let (mut seen, mut nodes) = (0, Vec::new());
        for entry in std::fs::read_dir(&dir).expect("fixtures/status") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let v: Value =
                serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
            let full: DynamicObject = serde_json::from_value(v.clone()).expect("object");
            let kind = full.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("");
            let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", kind));
            let name = path.display().to_string();
            // Decoded as a watch decodes it (metadata fields, spec and status only), it reads
            // the same as decoded whole.
            let watched: DynamicObject = serde_json::from_value::<Watched>(v)
                .expect("watched")
                .into();
            for shape in [Shape::of(&ar), Shape::Upgrade { capi_cluster: true }] {
                let whole = Compact::of(&full, shape, &ar);
                assert_eq!(Compact::of(&watched, shape, &ar), whole, "{name}");
            }
            if let Compact::Node(n) = reads_the_same(&full, &ar, &name) {
                nodes.push((full.clone(), ar.clone(), n));
            }
            // Every object also as an upgrade-reporting kind, as the hub keeps those.
            let Compact::Upgrade(u) =
                Compact::of(&full, Shape::Upgrade { capi_cluster: true }, &ar)
            else {
                panic!("{name}: not kept as an upgrade object");
            };
            let whole = crate::core::cluster::upgrade::component_of(&obj_ref(&full, &ar));
            assert_eq!(u.component, whole, "{name}");
            let packed = Packed::pack(&Compact::Upgrade(u.clone()));
            assert_eq!(packed.unpack(), Compact::Upgrade(u.clone()), "{name}");
            for by in [None, Some("referencing-cluster")] {
                assert_eq!(u.owners(by), upgrade_owners(&full, kind, by), "{name}");
            }
            let cp = full.data.pointer("/spec/controlPlaneRef/name");
            assert_eq!(
                u.control_plane_ref.as_deref(),
                cp.and_then(Value::as_str),
                "{name}"
            );
            seen += 1;
        }
        assert!(seen >= 40, "only {seen} fixtures");
        // Node summaries add up to the summary of all nodes.
        assert!(nodes.len() >= 3, "only {} nodes", nodes.len());
        let whole = crate::core::cluster::upgrade::node_summary_of(
            nodes.iter().map(|(full, ar, _)| obj_ref(full, ar)),
        );
        assert_eq!(node_total(nodes.iter().map(|(_, _, n)| n)), whole);
    }

    /// `full`'s compact form as its own watch keeps it, checked against `full` read whole.
    fn reads_the_same(full: &DynamicObject, ar: &ApiResource, name: &str) -> Compact {
        let compact = Compact::of(full, Shape::of(ar), ar);
        let text = |p: &str| full.data.pointer(p).and_then(Value::as_str);
        match &compact {
            Compact::Kustomization { status, owners: o } => {
                assert_eq!(*status, status_of(full), "{name}");
                assert_eq!(Vec::from_iter(owners(full)), *o, "{name}");
            }
            Compact::Source(s) => {
                assert_eq!(s.url.as_deref(), text("/spec/url"), "{name}");
                let rev = text("/status/artifact/revision");
                assert_eq!(s.revision.as_deref(), rev, "{name}");
                let conditions = full.data.pointer("/status/conditions").expect("conditions");
                let ready = conditions
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .expect("Ready");
                let r = s.ready.as_ref().expect("ready");
                assert_eq!(ready["status"], r.status, "{name}");
                assert_eq!(ready["reason"], r.reason, "{name}");
                assert_eq!(ready["message"], r.message, "{name}");
            }
            Compact::Pod { uid, restarts } => {
                let whole = crate::core::cluster::upgrade::pod_restarts(&full.data);
                assert_eq!(*restarts, whole, "{name}");
                assert_eq!(Some(uid), full.metadata.uid.as_ref(), "{name}");
            }
            Compact::Node(_) | Compact::Upgrade(_) | Compact::PodDisruptionBudget(_) => {}
        }
        // As a watch stores it.
        assert_eq!(Packed::pack(&compact).unpack(), compact, "{name}");
        compact
    }

    #[test]
    fn status_is_read_defensively() {
        let o = obj(serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "a", "generation": 3,
                         "labels": {"fleetwave.io/cluster": "b"}},
            "spec": {"kubeConfig": {"secretRef": {"name": "c-kubeconfig"}}, "future": [1]},
            "status": {
                "observedGeneration": 2,
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                     "message": "Applied revision: main@sha1:abc", "extra": {}},
                    {"status": "True"},
                    {"type": "Healthy"}
                ],
                "lastAppliedRevision": "main@sha1:abc",
                "inventory": {"entries": []}
            }
        }));
        let s = status_of(&o);
        assert_eq!((s.generation, s.observed_generation), (3, 2));
        assert_eq!(s.conditions.len(), 2);
        assert_eq!(s.condition("Healthy").unwrap().status, "Unknown");
        assert_eq!(s.last_applied_revision.as_deref(), Some("main@sha1:abc"));
        assert_eq!(s.last_attempted_revision, None);
        assert_eq!(owners(&o), BTreeSet::from(["a", "b", "c"]));

        let bare = obj(serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "x", "namespace": "n", "generation": 1},
            "status": "garbage"
        }));
        let s = status_of(&bare);
        assert_eq!((s.generation, s.observed_generation), (1, 0));
        assert!(s.conditions.is_empty());
    }
}
