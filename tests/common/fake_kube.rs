#![allow(dead_code)]
//! A fake Kubernetes API server for `kustomize.toolkit.fluxcd.io/v1` Kustomizations, enough
//! for kube-rs' watcher: list (all namespaces or one), watch as a chunked stream of JSON lines
//! from a resourceVersion, periodic BOOKMARKs, and `410 Expired` as an `ERROR` watch event
//! (what a real API server sends) once the requested resourceVersion is older than the
//! compaction point. Plus `/version`, `/api`, `/apis` stubs.
//!
//! It speaks HTTP/1.1 directly over tokio sockets rather than through axum: a watch response
//! is an endless body, and axum can only stream from a `futures::Stream`, which this crate
//! cannot name without a direct `futures` dependency. Serving by hand also lets it count every
//! request exactly, which the "no GET per cluster" test relies on.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

const GROUP: &str = "kustomize.toolkit.fluxcd.io";
const VERSION: &str = "v1";
const API_VERSION: &str = "kustomize.toolkit.fluxcd.io/v1";

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
    log: Mutex<Vec<String>>,
    bookmark_every: Mutex<Duration>,
}

#[derive(Default)]
struct State {
    /// Last resourceVersion handed out (etcd revision).
    rv: u64,
    objects: BTreeMap<(String, String), Value>,
    /// Events after the compaction point, oldest first.
    history: Vec<Event>,
    /// Watches from a resourceVersion below this get 410 Expired.
    compacted: u64,
    /// Bumped to close every open watch (compaction, simulated connection loss).
    epoch: u64,
}

struct Event {
    rv: u64,
    type_: &'static str,
    object: Value,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ns_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl FakeKube {
    /// Bind 127.0.0.1:0 and serve in a background thread with its own tokio runtime.
    pub fn start() -> FakeKube {
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
        FakeKube {
            base_url,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
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

    /// Create or replace an object (keyed by namespace/name): assigns the next resourceVersion
    /// and emits ADDED or MODIFIED. `metadata.generation` is kept as given.
    pub fn apply(&self, mut obj: Value) {
        let ns = ns_of(&obj).to_string();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .expect("metadata.name")
            .to_string();
        {
            let mut st = lock(&self.shared.state);
            st.rv += 1;
            let rv = st.rv;
            let key = (ns.clone(), name.clone());
            let existing = st.objects.get(&key);
            let type_ = if existing.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            };
            let uid = existing
                .and_then(|o| o.pointer("/metadata/uid").cloned())
                .unwrap_or_else(|| json!(format!("uid-{ns}-{name}-{rv}")));
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
                object: obj,
            });
        }
        self.shared.changed.send_modify(|v| *v += 1);
    }

    /// Delete an object if present (emits DELETED with a new resourceVersion).
    pub fn delete(&self, ns: &str, name: &str) {
        {
            let mut st = lock(&self.shared.state);
            let Some(mut obj) = st.objects.remove(&(ns.to_string(), name.to_string())) else {
                return;
            };
            st.rv += 1;
            let rv = st.rv;
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            st.history.push(Event {
                rv,
                type_: "DELETED",
                object: obj,
            });
        }
        self.shared.changed.send_modify(|v| *v += 1);
    }

    /// Forget history (like an etcd compaction plus watch-cache reset): every open watch is
    /// closed, and a watch from any resourceVersion seen so far gets `410 Expired`, so clients
    /// must relist. The revision advances so a fresh list gives a watchable resourceVersion.
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

    /// Close every open watch without compacting (a dropped connection): clients resume from
    /// their last resourceVersion without relisting.
    pub fn drop_watches(&self) {
        lock(&self.shared.state).epoch += 1;
        self.shared.changed.send_modify(|v| *v += 1);
    }

    /// How often open watches get a BOOKMARK (when they asked for bookmarks).
    pub fn set_bookmark_interval(&self, every: Duration) {
        *lock(&self.shared.bookmark_every) = every;
    }

    /// API requests served so far (every list, watch, get, discovery call).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// One line per request: `LIST <scope>`, `WATCH <scope> rv=<rv> bookmarks=<bool>`,
    /// `GET <ns>/<name>`, `GET /version`, ... (`<scope>` is a namespace or `*`).
    pub fn request_log(&self) -> Vec<String> {
        lock(&self.shared.log).clone()
    }

    /// Requests whose log line starts with `prefix` (e.g. "LIST", "WATCH").
    pub fn count(&self, prefix: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// Current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.state).rv
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
        "apiVersion": API_VERSION,
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

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// Serve one keep-alive connection: GET requests, one at a time.
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
            if let Some((k, v)) = h.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        if content_length > 0 {
            let mut body = vec![0; content_length];
            if r.read_exact(&mut body).await.is_err() {
                return;
            }
        }
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("/").to_string();
        if respond(&mut w, &sh, &method, &target).await.is_err() {
            return;
        }
    }
}

async fn write_full(w: &mut OwnedWriteHalf, code: u16, body: &Value) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let body = serde_json::to_vec(body).expect("json");
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await
}

fn status_obj(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn respond(
    w: &mut OwnedWriteHalf,
    sh: &Shared,
    method: &str,
    target: &str,
) -> io::Result<()> {
    sh.requests.fetch_add(1, Ordering::SeqCst);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let q: BTreeMap<&str, &str> = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let log = |line: String| lock(&sh.log).push(line);
    if method != "GET" {
        log(format!("{method} {path}"));
        return write_full(
            w,
            405,
            &status_obj(405, "MethodNotAllowed", "read-only fake"),
        )
        .await;
    }
    let ours = |g: &str, v: &str| g == GROUP && v == VERSION;
    match segs.as_slice() {
        ["version"] => {
            log("GET /version".into());
            let v = json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
                           "platform": "linux/amd64"});
            write_full(w, 200, &v).await
        }
        ["api"] => {
            log("GET /api".into());
            let v = json!({"kind": "APIVersions", "versions": ["v1"],
                           "serverAddressByClientCIDRs": []});
            write_full(w, 200, &v).await
        }
        ["apis"] => {
            log("GET /apis".into());
            let gv = json!({"groupVersion": API_VERSION, "version": VERSION});
            let v = json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": GROUP, "versions": [gv], "preferredVersion": gv}]});
            write_full(w, 200, &v).await
        }
        ["apis", g, v] if ours(g, v) => {
            log(format!("GET {path}"));
            let v = json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": API_VERSION, "resources": [{
                    "name": "kustomizations", "singularName": "kustomization", "namespaced": true,
                    "kind": "Kustomization", "shortNames": ["ks"],
                    "verbs": ["get", "list", "watch"]}]});
            write_full(w, 200, &v).await
        }
        ["apis", g, v, "kustomizations"] if ours(g, v) => collection(w, sh, None, &q).await,
        ["apis", g, v, "namespaces", ns, "kustomizations"] if ours(g, v) => {
            collection(w, sh, Some(ns), &q).await
        }
        ["apis", g, v, "namespaces", ns, "kustomizations", name] if ours(g, v) => {
            log(format!("GET {ns}/{name}"));
            let obj = lock(&sh.state)
                .objects
                .get(&(ns.to_string(), name.to_string()))
                .cloned();
            match obj {
                Some(o) => write_full(w, 200, &o).await,
                None => {
                    let msg = format!("kustomizations.{GROUP} \"{name}\" not found");
                    write_full(w, 404, &status_obj(404, "NotFound", &msg)).await
                }
            }
        }
        _ => {
            log(format!("GET {path} (404)"));
            write_full(
                w,
                404,
                &status_obj(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            )
            .await
        }
    }
}

/// List or watch, across namespaces (`ns` None) or in one namespace.
async fn collection(
    w: &mut OwnedWriteHalf,
    sh: &Shared,
    ns: Option<&str>,
    q: &BTreeMap<&str, &str>,
) -> io::Result<()> {
    let scope = ns.unwrap_or("*").to_string();
    if matches!(q.get("watch").copied(), Some("true" | "1")) {
        let rv = q.get("resourceVersion").copied().unwrap_or("");
        let bm = q.get("allowWatchBookmarks").copied().unwrap_or("false");
        lock(&sh.log).push(format!("WATCH {scope} rv={rv} bookmarks={bm}"));
        return watch(w, sh, ns, q).await;
    }
    lock(&sh.log).push(format!("LIST {scope}"));
    let list = {
        let st = lock(&sh.state);
        let items: Vec<Value> = st
            .objects
            .values()
            .filter(|o| ns.is_none_or(|n| ns_of(o) == n))
            .cloned()
            .collect();
        json!({"apiVersion": API_VERSION, "kind": "KustomizationList",
               "metadata": {"resourceVersion": st.rv.to_string()}, "items": items})
    };
    write_full(w, 200, &list).await
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

/// A watch: events after `resourceVersion` (or synthetic ADDEDs for all objects when it is
/// empty or "0"), then live events and BOOKMARKs until `timeoutSeconds` or the watch is closed.
async fn watch(
    w: &mut OwnedWriteHalf,
    sh: &Shared,
    ns: Option<&str>,
    q: &BTreeMap<&str, &str>,
) -> io::Result<()> {
    let matches = |o: &Value| ns.is_none_or(|n| ns_of(o) == n);
    let bookmarks = q.get("allowWatchBookmarks").copied() == Some("true");
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
        match q.get("resourceVersion").copied().unwrap_or("") {
            "" | "0" => {
                out.extend(
                    st.objects
                        .values()
                        .filter(|o| matches(o))
                        .map(|o| json!({"type": "ADDED", "object": o})),
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
                if matches(&e.object) {
                    out.push(json!({"type": e.type_, "object": e.object}));
                }
                sent = e.rv;
            }
            if bookmark_due && bookmarks {
                // Under the same lock as the events above, so no event <= st.rv is skipped.
                sent = sent.max(st.rv);
                out.push(json!({"type": "BOOKMARK", "object": {
                    "apiVersion": API_VERSION, "kind": "Kustomization",
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
