//! Event sinks: the JSON Lines file, webhooks (JSON or Slack text), fan-out and memory. Each
//! implements [`Notifier`]; the events themselves are in [`crate::core::notify`].
//!
//! Errors never carry webhook URLs (a Slack incoming-webhook URL *is* its secret) nor URL
//! credentials: sinks name themselves by scheme and host only. Every event carries a stable
//! `id`: [`JsonlSink`] writes an id at most once and [`WebhookSink`] sends it as the
//! `Idempotency-Key` header so receivers can drop repeats.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::notify::{Event, Notifier, NotifyError, one_line};

// ---------------------------------------------------------------------------------------------
// JSON Lines
// ---------------------------------------------------------------------------------------------

/// Appends one JSON line per event to a file, at most once per event id.
///
/// Crash safety: each event is one `write` of a complete line on a file opened for appending,
/// then `fsync`ed. A process killed mid-write leaves at worst a torn last line: readers skip lines
/// that do not parse, and the next append starts a fresh line first. Ids already in the file are
/// not written again, so replaying events after a restart is harmless. The ids seen are cached and
/// only the bytes appended since the last scan are read, so a long log costs one scan per process.
/// Appends from one `JsonlSink` are serialized; two processes appending the same file may
/// duplicate an event (not torn lines), which readers can drop by id.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    state: Arc<Mutex<ScanState>>,
}

#[derive(Debug, Default)]
struct ScanState {
    ids: HashSet<String>,
    /// Bytes of the file already scanned; always just after a '\n' (or 0).
    scanned: u64,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

impl JsonlSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonlSink {
            path: path.into(),
            state: Arc::new(Mutex::new(ScanState::default())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every event in a JSON Lines file, in order, skipping lines that do not parse (a torn last
    /// line, garbage). A missing file has no events.
    pub fn read_events(path: &Path) -> Result<Vec<Event>, NotifyError> {
        let text = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(NotifyError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(text
            .split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice::<Event>(line).ok())
            .collect())
    }

    fn append_blocking(
        path: &Path,
        state: &Mutex<ScanState>,
        id: &str,
        line: &[u8],
    ) -> std::io::Result<()> {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len < state.scanned {
            // Truncated or replaced behind our back: scan again from the start.
            *state = ScanState::default();
        }
        file.seek(SeekFrom::Start(state.scanned))?;
        let mut tail = Vec::with_capacity((len - state.scanned) as usize);
        file.read_to_end(&mut tail)?;
        let complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for l in tail[..complete].split(|&b| b == b'\n') {
            if let Ok(x) = serde_json::from_slice::<IdOnly>(l) {
                state.ids.insert(x.id);
            }
        }
        state.scanned += complete as u64;
        if state.ids.contains(id) {
            return Ok(());
        }
        let torn = complete < tail.len();
        let mut buf = Vec::with_capacity(line.len() + 2);
        if torn {
            buf.push(b'\n');
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
        file.write_all(&buf)?;
        file.sync_data()?;
        state.scanned += (tail.len() - complete + buf.len()) as u64;
        state.ids.insert(id.to_string());
        Ok(())
    }
}

#[async_trait::async_trait]
impl Notifier for JsonlSink {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let line = serde_json::to_vec(event).map_err(|source| NotifyError::Encode {
            id: event.id.clone(),
            source,
        })?;
        let path = self.path.clone();
        let state = Arc::clone(&self.state);
        let id = event.id.clone();
        let io_err = |source| NotifyError::Io {
            path: self.path.clone(),
            source,
        };
        tokio::task::spawn_blocking(move || Self::append_blocking(&path, &state, &id, &line))
            .await
            .map_err(|e| io_err(std::io::Error::other(e.to_string())))?
            .map_err(io_err)
    }

    fn name(&self) -> String {
        format!("jsonl:{}", self.path.display())
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

/// Payload of a [`WebhookSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The [`Event`] itself as JSON.
    Json,
    /// `{"text": "..."}`, as Slack incoming webhooks (and Mattermost, Rocket.Chat...) accept.
    Slack,
}

/// Total time one HTTP attempt may take.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries after the first attempt, on 5xx, 408, 429, timeouts and connection errors.
pub const WEBHOOK_RETRIES: u32 = 3;
/// The wait before retry `n` is `n ×` this.
pub const WEBHOOK_BACKOFF: Duration = Duration::from_millis(200);

/// POSTs events to a webhook, with an `Idempotency-Key: <event id>` header.
///
/// 2xx is delivered. 5xx, 408, 429, timeouts and connection errors are retried at most
/// [`WEBHOOK_RETRIES`] times, waiting `attempt × 200ms`; other statuses fail at once. Redirects
/// are not followed (a POST must not turn into a GET to another host).
#[derive(Debug, Clone)]
pub struct WebhookSink {
    url: reqwest::Url,
    format: WebhookFormat,
    client: reqwest::Client,
    retries: u32,
    backoff: Duration,
}

impl WebhookSink {
    /// An `http` or `https` URL; the error never repeats the URL.
    pub fn new(url: &str, format: WebhookFormat) -> Result<Self, NotifyError> {
        let url = reqwest::Url::parse(url).map_err(|e| NotifyError::InvalidUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NotifyError::InvalidUrl(format!(
                "scheme {} (want http or https)",
                url.scheme()
            )));
        }
        if url.host_str().is_none() {
            return Err(NotifyError::InvalidUrl("no host".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fleetwave/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client(error_chain(&e.without_url())))?;
        Ok(WebhookSink {
            url,
            format,
            client,
            retries: WEBHOOK_RETRIES,
            backoff: WEBHOOK_BACKOFF,
        })
    }

    /// Change the retry budget and base backoff (tests, the demo's scaled time).
    pub fn with_retry(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    pub fn format(&self) -> WebhookFormat {
        self.format
    }

    /// The request body for an event.
    pub fn payload(&self, event: &Event) -> Result<Vec<u8>, NotifyError> {
        let encoded = match self.format {
            WebhookFormat::Json => serde_json::to_vec(event),
            WebhookFormat::Slack => {
                serde_json::to_vec(&serde_json::json!({ "text": event.slack_text() }))
            }
        };
        encoded.map_err(|source| NotifyError::Encode {
            id: event.id.clone(),
            source,
        })
    }

    /// Remove any trace of the URL beyond scheme and host from a message.
    fn scrub(&self, msg: &str) -> String {
        let mut out = msg.replace(self.url.as_str(), &self.name());
        let path = self.url.path();
        if path.len() > 1 {
            out = out.replace(path, "/…");
        }
        if let Some(q) = self.url.query() {
            out = out.replace(q, "…");
        }
        if let Some(p) = self.url.password() {
            out = out.replace(p, "…");
        }
        out
    }
}

#[async_trait::async_trait]
impl Notifier for WebhookSink {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let body = self.payload(event)?;
        let key = header_safe(&event.id);
        let max_attempts = self.retries.saturating_add(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("Idempotency-Key", key.as_str())
                .body(body.clone())
                .send()
                .await;
            let (err, retry) = match sent {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    let retry = status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                    let text = resp.text().await.unwrap_or_default();
                    let text = one_line(&text);
                    let detail = if text.is_empty() {
                        String::new()
                    } else {
                        let short: String = text.chars().take(200).collect();
                        format!(": {}", self.scrub(&short))
                    };
                    let err = NotifyError::Status {
                        sink: self.name(),
                        status: status.as_u16(),
                        attempts: attempt,
                        detail,
                    };
                    (err, retry)
                }
                Err(e) => {
                    let retry = !e.is_builder() && !e.is_redirect();
                    let err = NotifyError::Transport {
                        sink: self.name(),
                        attempts: attempt,
                        message: self.scrub(&error_chain(&e.without_url())),
                    };
                    (err, retry)
                }
            };
            if !retry || attempt >= max_attempts {
                return Err(err);
            }
            tokio::time::sleep(self.backoff * attempt).await;
        }
    }

    /// `webhook:<scheme>://<host>[:port]`: the path of a Slack webhook is its secret.
    fn name(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        match self.url.port() {
            Some(p) => format!("webhook:{}://{host}:{p}", self.url.scheme()),
            None => format!("webhook:{}://{host}", self.url.scheme()),
        }
    }
}

/// An error and its sources, joined by ": ".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let m = src.to_string();
        if !s.contains(&m) {
            let _ = write!(s, ": {m}");
        }
        cur = src.source();
    }
    s
}

/// A header value: visible ASCII kept, anything else percent-encoded.
fn header_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Fan-out and in-memory
// ---------------------------------------------------------------------------------------------

/// Sends every event to all its notifiers, in order; every notifier is tried, and the first error
/// (if any) is returned.
pub struct Fanout(pub Vec<Box<dyn Notifier>>);

#[async_trait::async_trait]
impl Notifier for Fanout {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let mut first = None;
        for n in &self.0 {
            if let Err(e) = n.send(event).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn name(&self) -> String {
        let names: Vec<String> = self.0.iter().map(|n| n.name()).collect();
        format!("fanout({})", names.join(", "))
    }
}

/// Keeps events in memory (the demo's live view, tests). Clones share the same list.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    events: Arc<Mutex<Vec<Event>>>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// The events sent so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait::async_trait]
impl Notifier for MemorySink {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
        Ok(())
    }

    fn name(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::notify::fixtures::*;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // ---- JSON Lines ---------------------------------------------------------------------------

    #[tokio::test]
    async fn jsonl_writes_each_event_id_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/events.jsonl");
        let sink = JsonlSink::new(&path);
        sink.send(&telemetry_event("c1")).await.unwrap();
        sink.send(&telemetry_event("c1")).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        sink.send(&telemetry_event("c2")).await.unwrap();
        sink.send(&alert_event()).await.unwrap();
        // A new sink (a restarted process) scans the file and still writes nothing twice.
        let again = JsonlSink::new(&path);
        again.send(&telemetry_event("c1")).await.unwrap();
        again.send(&alert_event()).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.ends_with('\n'));
        let events = JsonlSink::read_events(&path).unwrap();
        assert_eq!(
            events,
            vec![telemetry_event("c1"), telemetry_event("c2"), alert_event()]
        );
    }

    #[tokio::test]
    async fn jsonl_tolerates_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let first = serde_json::to_string(&telemetry_event("c1")).unwrap();
        // A process killed mid-write: a complete line, then half of one, no newline.
        std::fs::write(&path, format!("{first}\n{{\"id\":\"telemetry/x\",\"ti")).unwrap();
        let sink = JsonlSink::new(&path);
        sink.send(&telemetry_event("c1")).await.unwrap();
        sink.send(&telemetry_event("c2")).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.ends_with('\n'));
        assert_eq!(
            JsonlSink::read_events(&path).unwrap(),
            vec![telemetry_event("c1"), telemetry_event("c2")]
        );
        // Garbage right at the start, and a file changed by someone else in between.
        std::fs::write(&path, "garbage").unwrap();
        let sink = JsonlSink::new(&path);
        sink.send(&alert_event()).await.unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"torn")
            .unwrap();
        sink.send(&telemetry_event("c3")).await.unwrap();
        sink.send(&alert_event()).await.unwrap();
        assert_eq!(
            JsonlSink::read_events(&path).unwrap(),
            vec![alert_event(), telemetry_event("c3")]
        );
        assert_eq!(
            JsonlSink::read_events(&dir.path().join("missing")).unwrap(),
            vec![]
        );
    }

    #[tokio::test]
    async fn jsonl_concurrent_sends_of_one_event_write_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let sink = Arc::new(JsonlSink::new(&path));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let sink = Arc::clone(&sink);
            tasks.push(tokio::spawn(async move {
                sink.send(&telemetry_event(&format!("c{}", i % 4))).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(JsonlSink::read_events(&path).unwrap().len(), 4);
    }

    // ---- webhooks -----------------------------------------------------------------------------

    #[derive(Debug, Clone)]
    struct Received {
        key: Option<String>,
        content_type: Option<String>,
        body: serde_json::Value,
    }

    #[derive(Clone)]
    struct Server {
        received: Arc<Mutex<Vec<Received>>>,
        /// Answer 500 to the first this-many requests, then 200.
        fail_first: usize,
        calls: Arc<AtomicUsize>,
    }

    async fn hook(
        State(s): State<Server>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        s.received.lock().unwrap().push(Received {
            key: header("idempotency-key"),
            content_type: header("content-type"),
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        });
        if s.calls.fetch_add(1, Ordering::SeqCst) < s.fail_first {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }

    /// A webhook receiver on 127.0.0.1:<free port>; bound before it is spawned, so it accepts
    /// connections as soon as this returns. Returns its URL (with a secret-like path).
    async fn serve(fail_first: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = Server {
            received: Arc::clone(&received),
            fail_first,
            calls: Arc::new(AtomicUsize::new(0)),
        };
        let app = axum::Router::new()
            .route("/services/T000/B000/s3cr3t", post(hook))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/services/T000/B000/s3cr3t"), received)
    }

    fn fast(sink: WebhookSink) -> WebhookSink {
        sink.with_retry(WEBHOOK_RETRIES, Duration::from_millis(5))
    }

    #[tokio::test]
    async fn webhook_json_posts_the_event_with_an_idempotency_key() {
        let (url, received) = serve(0).await;
        let sink = WebhookSink::new(&url, WebhookFormat::Json).unwrap();
        let event = telemetry_event("c1");
        sink.send(&event).await.unwrap();
        let got = received.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].key.as_deref(),
            Some("telemetry/k8s-1-31/canary/c1/succeeded")
        );
        assert_eq!(got[0].content_type.as_deref(), Some("application/json"));
        assert_eq!(got[0].body["kind"], "telemetry");
        assert_eq!(got[0].body["telemetry"]["cluster_id"], "c1");
        assert_eq!(got[0].body["telemetry"]["target_infrastructure"], "aws");
        let back: Event = serde_json::from_value(got[0].body.clone()).unwrap();
        assert_eq!(back, event);
        // The name shows scheme, host and port only: the path is the secret.
        assert!(!sink.name().contains("s3cr3t"), "{}", sink.name());
    }

    #[tokio::test]
    async fn webhook_slack_posts_a_readable_text() {
        let (url, received) = serve(0).await;
        let sink = WebhookSink::new(&url, WebhookFormat::Slack).unwrap();
        sink.send(&alert_event()).await.unwrap();
        sink.send(&telemetry_event("c<1>")).await.unwrap();
        let got = received.lock().unwrap().clone();
        assert_eq!(got.len(), 2);
        let obj = got[0].body.as_object().unwrap();
        assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["text"]);
        let text = obj["text"].as_str().unwrap();
        assert!(
            text.contains("k8s-1-31") && text.contains("standard"),
            "{text}"
        );
        assert!(text.contains("HealthCheckFailed"), "{text}");
        assert!(text.contains("prod-eu-1, prod-us-2"), "{text}");
        assert!(
            text.contains("fleetwave rollback --plan k8s-1-31"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
        assert_eq!(
            got[0].key.as_deref(),
            Some("alert/k8s-1-31/standard/failed")
        );
        let text = got[1].body["text"].as_str().unwrap();
        assert!(
            text.contains("canary") && text.contains("succeeded"),
            "{text}"
        );
        assert!(text.contains("c&lt;1&gt;"), "{text}");
        assert!(text.contains("aws-standalone-cp-1-0-2"), "{text}");
    }

    #[tokio::test]
    async fn webhook_retries_server_errors_then_delivers_once() {
        let (url, received) = serve(2).await;
        let sink = fast(WebhookSink::new(&url, WebhookFormat::Json).unwrap());
        sink.send(&alert_event()).await.unwrap();
        let got = received.lock().unwrap().clone();
        assert_eq!(got.len(), 3, "two 500s, then the 200");
        assert!(
            got.iter()
                .all(|r| r.key.as_deref() == Some("alert/k8s-1-31/standard/failed"))
        );
    }

    #[tokio::test]
    async fn webhook_gives_up_after_bounded_attempts() {
        let (url, received) = serve(usize::MAX).await;
        let sink = fast(WebhookSink::new(&url, WebhookFormat::Slack).unwrap());
        let err = sink.send(&alert_event()).await.unwrap_err();
        assert_eq!(received.lock().unwrap().len(), 1 + WEBHOOK_RETRIES as usize);
        match &err {
            NotifyError::Status {
                status, attempts, ..
            } => {
                assert_eq!(*status, 500);
                assert_eq!(*attempts, 1 + WEBHOOK_RETRIES);
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("500") && !msg.contains("s3cr3t"), "{msg}");
    }

    #[tokio::test]
    async fn webhook_does_not_retry_client_errors_nor_leak_the_url() {
        let (url, received) = serve(0).await;
        // An unknown path answers 404: no retry.
        let wrong = url.replace("s3cr3t", "other-s3cr3t");
        let sink = fast(WebhookSink::new(&wrong, WebhookFormat::Json).unwrap());
        let err = sink.send(&alert_event()).await.unwrap_err();
        assert!(matches!(
            err,
            NotifyError::Status {
                status: 404,
                attempts: 1,
                ..
            }
        ));
        assert!(received.lock().unwrap().is_empty());
        // Nothing listens on a freshly closed port: connection errors, retried, then reported
        // without the path or credentials.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dead = format!("http://user:p4ss@127.0.0.1:{port}/hooks/s3cr3t?token=t0ken");
        let sink = WebhookSink::new(&dead, WebhookFormat::Json)
            .unwrap()
            .with_retry(1, Duration::from_millis(1));
        let err = sink.send(&alert_event()).await.unwrap_err();
        assert!(
            matches!(err, NotifyError::Transport { attempts: 2, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        for secret in ["s3cr3t", "p4ss", "t0ken", "user"] {
            assert!(!msg.contains(secret), "{msg}");
        }
        assert!(WebhookSink::new("ftp://x/y", WebhookFormat::Json).is_err());
        let bad = WebhookSink::new("not a url s3cr3t", WebhookFormat::Json).unwrap_err();
        assert!(!bad.to_string().contains("s3cr3t"));
    }

    #[tokio::test]
    async fn fanout_tries_all_and_returns_the_first_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let memory = MemorySink::new();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dead = WebhookSink::new(&format!("http://127.0.0.1:{port}/x"), WebhookFormat::Json)
            .unwrap()
            .with_retry(0, Duration::ZERO);
        let fan = Fanout(vec![
            Box::new(dead),
            Box::new(JsonlSink::new(&path)),
            Box::new(memory.clone()),
        ]);
        let err = fan.send(&alert_event()).await.unwrap_err();
        assert!(matches!(err, NotifyError::Transport { .. }));
        assert_eq!(JsonlSink::read_events(&path).unwrap(), vec![alert_event()]);
        assert_eq!(memory.events(), vec![alert_event()]);
        assert!(fan.name().starts_with("fanout(webhook:http://127.0.0.1:"));
        assert!(Fanout(vec![]).send(&alert_event()).await.is_ok());
    }

    #[test]
    fn header_values_are_made_safe() {
        assert_eq!(header_safe("alert/p/w/failed"), "alert/p/w/failed");
        assert_eq!(header_safe("a b%é"), "a%20b%25%C3%A9");
    }
}
