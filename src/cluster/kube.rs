//! Flux state from a hub cluster via kube-rs (RESEARCH §2, hub mode).
//!
//! One watcher (list, then watch with bookmarks) over `kustomize.toolkit.fluxcd.io/v1`
//! Kustomizations in all namespaces feeds a reflector store; [`KubeSource::observe`] only reads
//! that store. So the API server sees one long-lived watch for the whole fleet, never a GET per
//! cluster per tick, and a 410 Gone (compacted resourceVersion) makes kube's watcher relist.
//!
//! A Kustomization belongs to cluster `C` when its namespace is `C`, or it carries the label
//! `fleetwave.io/cluster: C`, or its `spec.kubeConfig.secretRef.name` is `C-kubeconfig`.
//!
//! Objects are read as [`DynamicObject`]s (the Flux CRD has no Rust type here), and every field
//! is read defensively: unknown or malformed fields never fail an observation.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use super::{ClusterError, ClusterObservation, ClusterSource, Condition, KustomizationStatus};

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

/// The API resource of Flux Kustomizations.
pub fn kustomization_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization");
    ApiResource::from_gvk_with_plural(&gvk, "kustomizations")
}

/// Watcher bookkeeping, shared with the task that drives the watch stream.
struct Counters {
    /// Full lists started (the first one plus every relist, e.g. after 410 Gone).
    lists: AtomicUsize,
    /// Becomes true once the first list is in the store.
    listed: tokio::sync::watch::Sender<bool>,
    /// Errors the watcher reported (it retries with backoff after each).
    errors: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

/// Flux Kustomization state of a hub cluster, kept current by one list+watch. See module docs.
pub struct KubeSource {
    store: Store<DynamicObject>,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl KubeSource {
    /// Start one watcher (list + watch, with bookmarks; kube's watcher relists on 410 Gone)
    /// for Kustomizations in all namespaces, feeding a reflector store. Must be called inside
    /// a tokio runtime; returns at once; use [`KubeSource::ready`] to wait for the first list.
    pub async fn start(client: kube::Client) -> Result<KubeSource, ClusterError> {
        let ar = kustomization_resource();
        let api: Api<DynamicObject> = Api::all_with(client, &ar);
        let writer = Writer::<DynamicObject>::new(ar);
        let store = writer.as_reader();
        let counters = Arc::new(Counters {
            lists: AtomicUsize::new(0),
            listed: tokio::sync::watch::channel(false).0,
            errors: AtomicUsize::new(0),
            last_error: Mutex::new(None),
        });
        // Backoff so an unreachable or failing API server is not hammered by retries.
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        let task = tokio::spawn(drive(Box::pin(events), counters.clone()));
        Ok(KubeSource {
            store,
            counters,
            task,
        })
    }

    /// Wait until the first list has been received, at most `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        // Not `Store::wait_until_ready`: `observe` goes by the same flag, so once this
        // returns Ok, `observe` answers.
        let mut listed = self.counters.listed.subscribe();
        match tokio::time::timeout(timeout, listed.wait_for(|l| *l)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ClusterError::Unavailable(
                "kube watcher stopped before its first list".into(),
            )),
            Err(_) => Err(ClusterError::Unavailable(format!(
                "no Kustomization list from the hub within {timeout:?}{}",
                self.last_error()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ))),
        }
    }

    /// Full lists made so far: 1 after start, +1 per relist (410 Gone, restarts). Watch
    /// reconnects that resume from a resourceVersion are not counted.
    pub fn lists(&self) -> usize {
        self.counters.lists.load(Ordering::Relaxed)
    }

    /// Errors the watcher has reported so far (it keeps retrying with backoff).
    pub fn errors(&self) -> usize {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// The most recent watcher error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.counters
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Kustomizations currently in the store (all namespaces).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        // The watch would otherwise outlive its only reader.
        self.task.abort();
    }
}

/// Poll the reflected watch stream forever; the reflector updates the store as a side effect.
/// Generic over `WatchStreamExt` so the `Stream` supertrait's `poll_next` is usable without a
/// direct `futures` dependency.
async fn drive<S>(mut events: S, counters: Arc<Counters>)
where
    S: WatchStreamExt<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Unpin,
{
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await;
        match next {
            None => break,
            Some(Ok(watcher::Event::Init)) => {
                counters.lists.fetch_add(1, Ordering::Relaxed);
            }
            // The reflector has applied the event before yielding it, so the store is full.
            Some(Ok(watcher::Event::InitDone)) => {
                counters.listed.send_replace(true);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "Kustomization watch error; kube watcher will retry");
                *counters
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
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
        if self.task.is_finished() {
            return Err(ClusterError::Unavailable(
                "kube watcher task has stopped".into(),
            ));
        }
        // Before the first list an empty store would read as "no Kustomization anywhere".
        if !*self.counters.listed.borrow() {
            return Err(ClusterError::Unavailable(
                "no Kustomization list received from the hub yet".into(),
            ));
        }
        let mut out: BTreeMap<String, ClusterObservation> = clusters
            .iter()
            .map(|c| (c.clone(), ClusterObservation::default()))
            .collect();
        for obj in self.store.state() {
            let owners = owners(&obj);
            let wanted: Vec<&String> = clusters
                .iter()
                .filter(|c| owners.contains(c.as_str()))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let status = status_of(&obj);
            for c in wanted {
                if let Some(o) = out.get_mut(c) {
                    o.kustomizations.push(status.clone());
                }
            }
        }
        // The store's order is arbitrary; keep observations deterministic.
        for o in out.values_mut() {
            o.kustomizations
                .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            o.kustomizations
                .dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
        }
        Ok(out)
    }
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).expect("DynamicObject")
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
