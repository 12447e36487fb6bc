//! Alerts and telemetry: the events fleetwave emits and the sinks that deliver them (SPEC §1.7, §6).
//!
//! Two kinds of [`Event`]:
//! - an [`Alert`] when a wave fails and the plan halts (plan, wave, reason, failed clusters and
//!   a rollback hint);
//! - a [`Telemetry`] record per cluster upgrade once it has finished (seed 001: `cluster_id`,
//!   `target_infrastructure`, the new template name, plus versions and the outcome).
//!
//! Every event carries a stable `id` (an idempotency key such as
//! `telemetry/<plan>/<wave>/<cluster>/succeeded`), because a reconciler that crashes and resumes
//! from Git may emit the same event again: [`JsonlSink`] writes an id at most once and
//! [`WebhookSink`] sends it as the `Idempotency-Key` header so receivers can drop repeats.
//!
//! Sinks implement [`Notifier`]; [`Fanout`] sends to several. Errors never carry webhook URLs
//! (a Slack incoming-webhook URL *is* its secret) nor URL credentials: sinks name themselves by
//! scheme and host only.
//!
//! [`infrastructure`] derives `target_infrastructure` from hints found in a cluster's objects.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an [`Event`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Alert,
    Telemetry,
}

/// How one cluster upgrade ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
}

impl Outcome {
    /// `succeeded` or `failed`, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
        }
    }
}

/// Telemetry of one cluster upgrade (seed 001): snake_case field names as in the seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Telemetry {
    pub cluster_id: String,
    /// See [`infrastructure`]: `aws`, `azure`, `gcp`, `vsphere`, `openstack`, `baremetal`,
    /// `docker`, `kubespray`, a `provider` label value, or `unknown`.
    pub target_infrastructure: String,
    /// The new template name (k0rdent `ClusterTemplate` / CAPI `ClusterClass`), when the upgrade
    /// moved the cluster to one.
    pub template: Option<String>,
    pub kubernetes_version: Option<String>,
    pub gitops_base: Option<String>,
    pub plan: String,
    pub wave: String,
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

impl Telemetry {
    /// The stable event id of this record: `telemetry/<plan>/<wave>/<cluster>/<outcome>`.
    pub fn event_id(&self) -> String {
        format!(
            "telemetry/{}/{}/{}/{}",
            self.plan,
            self.wave,
            self.cluster_id,
            self.outcome.as_str()
        )
    }
}

/// A failed wave: the plan halted and a human should look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub plan: String,
    pub wave: String,
    pub reason: String,
    pub failed_clusters: Vec<String>,
    pub rollback_hint: String,
}

impl Alert {
    /// The stable event id of this alert: `alert/<plan>/<wave>/failed` (one alert per failed wave).
    pub fn event_id(&self) -> String {
        format!("alert/{}/{}/failed", self.plan, self.wave)
    }
}

/// One alert or telemetry record, as written to JSON Lines and posted to webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Stable idempotency key, e.g. `telemetry/<plan>/<wave>/<cluster>/succeeded`.
    pub id: String,
    pub time: DateTime<Utc>,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Telemetry>,
}

impl Event {
    pub fn alert(id: impl Into<String>, time: DateTime<Utc>, alert: Alert) -> Self {
        Event {
            id: id.into(),
            time,
            kind: EventKind::Alert,
            alert: Some(alert),
            telemetry: None,
        }
    }

    pub fn telemetry(id: impl Into<String>, time: DateTime<Utc>, telemetry: Telemetry) -> Self {
        Event {
            id: id.into(),
            time,
            kind: EventKind::Telemetry,
            alert: None,
            telemetry: Some(telemetry),
        }
    }

    /// One line for humans (logs, terminals): no newlines, whatever the reason says.
    pub fn summary(&self) -> String {
        let line = match (&self.alert, &self.telemetry) {
            (Some(a), _) => {
                let mut s = format!(
                    "alert: plan {} wave {} failed: {}",
                    a.plan, a.wave, a.reason
                );
                if !a.failed_clusters.is_empty() {
                    let _ = write!(
                        s,
                        " (clusters: {})",
                        cluster_list(&a.failed_clusters, MAX_LISTED)
                    );
                }
                if !a.rollback_hint.is_empty() {
                    let _ = write!(s, "; rollback: {}", a.rollback_hint);
                }
                s
            }
            (None, Some(t)) => {
                let mut s = format!(
                    "telemetry: plan {} wave {} cluster {} ({}) {}",
                    t.plan,
                    t.wave,
                    t.cluster_id,
                    t.target_infrastructure,
                    t.outcome.as_str()
                );
                let details = telemetry_details(t);
                if !details.is_empty() {
                    let _ = write!(s, ": {}", details.join(", "));
                }
                s
            }
            (None, None) => format!("{:?} event {}", self.kind, self.id),
        };
        one_line(&line)
    }

    /// The Slack-compatible incoming-webhook message: one readable paragraph (mrkdwn, escaped).
    pub fn slack_text(&self) -> String {
        match (&self.alert, &self.telemetry) {
            (Some(a), _) => {
                let mut s = format!(
                    ":rotating_light: fleetwave: plan *{}* wave *{}* failed: {}.",
                    slack_escape(&a.plan),
                    slack_escape(&a.wave),
                    slack_escape(a.reason.trim_end_matches('.'))
                );
                if !a.failed_clusters.is_empty() {
                    let _ = write!(
                        s,
                        " Failed clusters ({}): {}.",
                        a.failed_clusters.len(),
                        slack_escape(&cluster_list(&a.failed_clusters, MAX_LISTED))
                    );
                }
                s.push_str(
                    " The plan is halted; later steps will not be merged and affected clusters stay where they are.",
                );
                if !a.rollback_hint.is_empty() {
                    let _ = write!(s, " Rollback: {}", slack_escape(&a.rollback_hint));
                }
                one_line(&s)
            }
            (None, Some(t)) => {
                let icon = match t.outcome {
                    Outcome::Succeeded => ":white_check_mark:",
                    Outcome::Failed => ":x:",
                };
                let mut s = format!(
                    "{icon} fleetwave: cluster *{}* ({}) upgrade {} in plan *{}* wave *{}*",
                    slack_escape(&t.cluster_id),
                    slack_escape(&t.target_infrastructure),
                    t.outcome.as_str(),
                    slack_escape(&t.plan),
                    slack_escape(&t.wave)
                );
                let details = telemetry_details(t);
                if !details.is_empty() {
                    let _ = write!(s, ": {}", slack_escape(&details.join(", ")));
                }
                s.push('.');
                one_line(&s)
            }
            (None, None) => one_line(&format!("fleetwave: {}", slack_escape(&self.summary()))),
        }
    }
}

/// How many cluster names a message lists before "and N more".
const MAX_LISTED: usize = 20;

fn cluster_list(clusters: &[String], max: usize) -> String {
    let mut s = clusters
        .iter()
        .take(max)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if clusters.len() > max {
        let _ = write!(s, " and {} more", clusters.len() - max);
    }
    s
}

fn telemetry_details(t: &Telemetry) -> Vec<String> {
    let mut d = Vec::new();
    if let Some(x) = &t.template {
        d.push(format!("template {x}"));
    }
    if let Some(x) = &t.kubernetes_version {
        d.push(format!("Kubernetes {x}"));
    }
    if let Some(x) = &t.gitops_base {
        d.push(format!("gitops-base {x}"));
    }
    if let Ok(took) = (t.finished_at - t.started_at).to_std() {
        let secs = Duration::from_secs(took.as_secs());
        d.push(format!("took {}", humantime::format_duration(secs)));
    }
    d
}

/// Collapse any line breaks (a reason may quote a multi-line condition message).
fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Slack mrkdwn control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Why an event could not be delivered. Messages name sinks by scheme and host only: never a
/// webhook path, query or credentials.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("event log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode event {id}: {source}")]
    Encode {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid webhook URL: {0}")]
    InvalidUrl(String),
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("{sink} answered HTTP {status} after {attempts} attempt(s){detail}")]
    Status {
        sink: String,
        status: u16,
        attempts: u32,
        /// `: <start of the response body>` or empty.
        detail: String,
    },
    #[error("{sink} unreachable after {attempts} attempt(s): {message}")]
    Transport {
        sink: String,
        attempts: u32,
        message: String,
    },
}

/// Something that delivers events.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    async fn send(&self, event: &Event) -> Result<(), NotifyError>;
    /// Name for logs and errors; never contains secrets.
    fn name(&self) -> String;
}

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

// ---------------------------------------------------------------------------------------------
// target_infrastructure
// ---------------------------------------------------------------------------------------------

const CAPI_KINDS: &[(&str, &str)] = &[
    ("AWSCluster", "aws"),
    ("AWSManagedCluster", "aws"),
    ("AWSManagedControlPlane", "aws"),
    ("AzureCluster", "azure"),
    ("AzureManagedCluster", "azure"),
    ("AzureManagedControlPlane", "azure"),
    ("GCPCluster", "gcp"),
    ("GCPManagedCluster", "gcp"),
    ("GCPManagedControlPlane", "gcp"),
    ("VSphereCluster", "vsphere"),
    ("OpenStackCluster", "openstack"),
    ("Metal3Cluster", "baremetal"),
    ("DockerCluster", "docker"),
];

const TEMPLATE_PREFIXES: &[(&str, &str)] = &[
    ("aws-", "aws"),
    ("azure-", "azure"),
    ("gcp-", "gcp"),
    ("vsphere-", "vsphere"),
    ("openstack-", "openstack"),
    ("docker-", "docker"),
];

const CROSSPLANE_GROUPS: &[(&str, &str)] = &[
    ("eks.aws", "aws"),
    ("container.gcp", "gcp"),
    ("containerservice.azure", "azure"),
];

/// Strip `prefix` (ASCII case-insensitive) from `s`.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Infrastructure of a cluster from hints found in its objects.
///
/// Accepted hint forms (whitespace around a hint is ignored; matching is case-insensitive):
/// 1. CAPI infrastructure kinds, bare or as `kind:<Kind>`: `AWSCluster`, `AWSManagedCluster`,
///    `AWSManagedControlPlane` → `aws`; `AzureCluster`, `AzureManagedCluster`,
///    `AzureManagedControlPlane` → `azure`; `GCPCluster`, `GCPManagedCluster`,
///    `GCPManagedControlPlane` → `gcp`; `VSphereCluster` → `vsphere`; `OpenStackCluster` →
///    `openstack`; `Metal3Cluster` → `baremetal`; `DockerCluster` → `docker`.
/// 2. k0rdent template names, bare or as `template:<name>`: prefix `aws-`, `azure-`, `gcp-`,
///    `vsphere-`, `openstack-` (and `docker-`), e.g. `aws-standalone-cp-0-2-0`.
/// 3. Crossplane API groups, bare, with a version, or as `apiVersion:<group>/<version>`:
///    `eks.aws…` → `aws`, `container.gcp…` → `gcp`, `containerservice.azure…` → `azure`.
/// 4. Any hint containing `kubespray` (e.g. a Terraform module source `…//iac/provider/kubespray`)
///    → `kubespray`.
/// 5. A provider label: `label:provider=<value>` or `provider=<value>`, also keys ending in
///    `/provider` (e.g. `label:cluster.x-k8s.io/provider=infrastructure-aws`): the value,
///    lowercased, without an `infrastructure-` prefix.
///
/// The first family in that order with a matching hint wins (within a family, the first hint);
/// `unknown` otherwise.
pub fn infrastructure(hints: &[String]) -> String {
    /// One hint family: the infrastructure a hint names, if it is of this family.
    type Family = fn(&str) -> Option<String>;
    const FAMILIES: [Family; 5] = [
        capi_kind_hint,
        template_hint,
        crossplane_hint,
        kubespray_hint,
        provider_label_hint,
    ];
    let hints: Vec<&str> = hints
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .collect();
    FAMILIES
        .iter()
        .find_map(|family| hints.iter().find_map(|h| family(h)))
        .unwrap_or_else(|| "unknown".to_string())
}

/// `AWSCluster`, `kind:AWSCluster`.
fn capi_kind_hint(h: &str) -> Option<String> {
    let k = strip_prefix_ci(h, "kind:").unwrap_or(h).trim();
    CAPI_KINDS
        .iter()
        .find(|(kind, _)| kind.eq_ignore_ascii_case(k))
        .map(|&(_, infra)| infra.to_string())
}

/// `aws-standalone-cp-0-2-0`, `template:aws-standalone-cp-0-2-0`.
fn template_hint(h: &str) -> Option<String> {
    let t = strip_prefix_ci(h, "template:").unwrap_or(h).trim();
    TEMPLATE_PREFIXES
        .iter()
        .find(|(p, _)| strip_prefix_ci(t, p).is_some_and(|rest| !rest.is_empty()))
        .map(|&(_, infra)| infra.to_string())
}

/// `eks.aws.upbound.io`, `eks.aws.upbound.io/v1beta1`, `apiVersion:eks.aws.upbound.io/v1beta1`.
fn crossplane_hint(h: &str) -> Option<String> {
    let g = strip_prefix_ci(h, "apiVersion:")
        .or_else(|| strip_prefix_ci(h, "group:"))
        .unwrap_or(h)
        .trim();
    let g = g.split('/').next().unwrap_or(g);
    CROSSPLANE_GROUPS
        .iter()
        .find(|(p, _)| {
            strip_prefix_ci(g, p).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
        .map(|&(_, infra)| infra.to_string())
}

/// Anything mentioning kubespray.
fn kubespray_hint(h: &str) -> Option<String> {
    h.to_ascii_lowercase()
        .contains("kubespray")
        .then(|| "kubespray".to_string())
}

/// `label:provider=aws`, `provider=aws`, `label:cluster.x-k8s.io/provider=infrastructure-aws`.
fn provider_label_hint(h: &str) -> Option<String> {
    let kv = strip_prefix_ci(h, "label:").unwrap_or(h);
    let (key, value) = kv.split_once('=')?;
    let key = key.trim();
    if !(key.eq_ignore_ascii_case("provider") || key.to_ascii_lowercase().ends_with("/provider")) {
        return None;
    }
    let v = value.trim().trim_matches('"').to_ascii_lowercase();
    let v = v.strip_prefix("infrastructure-").unwrap_or(&v).to_string();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn telemetry(cluster: &str) -> Telemetry {
        Telemetry {
            cluster_id: cluster.into(),
            target_infrastructure: "aws".into(),
            template: Some("aws-standalone-cp-1-0-2".into()),
            kubernetes_version: Some("v1.31.4".into()),
            gitops_base: Some("2026.01".into()),
            plan: "k8s-1-31".into(),
            wave: "canary".into(),
            outcome: Outcome::Succeeded,
            started_at: t0(),
            finished_at: t0() + chrono::Duration::seconds(303),
        }
    }

    fn telemetry_event(cluster: &str) -> Event {
        let t = telemetry(cluster);
        Event::telemetry(t.event_id(), t0(), t)
    }

    fn alert_event() -> Event {
        let a = Alert {
            plan: "k8s-1-31".into(),
            wave: "standard".into(),
            reason: "Kustomization flux-system/cluster HealthCheckFailed\nafter 20m".into(),
            failed_clusters: vec!["prod-eu-1".into(), "prod-us-2".into()],
            rollback_hint: "fleetwave rollback --plan k8s-1-31 --wave standard".into(),
        };
        Event::alert(a.event_id(), t0(), a)
    }

    // ---- events -------------------------------------------------------------------------------

    #[test]
    fn telemetry_serializes_with_seed_field_names() {
        let v = serde_json::to_value(telemetry_event("c1")).unwrap();
        assert_eq!(v["id"], "telemetry/k8s-1-31/canary/c1/succeeded");
        assert_eq!(v["kind"], "telemetry");
        assert!(v.get("alert").is_none());
        let t = &v["telemetry"];
        assert_eq!(t["cluster_id"], "c1");
        assert_eq!(t["target_infrastructure"], "aws");
        assert_eq!(t["template"], "aws-standalone-cp-1-0-2");
        assert_eq!(t["outcome"], "succeeded");
        assert_eq!(t["started_at"], "2026-03-01T10:00:00Z");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, telemetry_event("c1"));
    }

    #[test]
    fn alert_serializes_camel_case_and_summarizes_on_one_line() {
        let e = alert_event();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "alert");
        assert_eq!(v["alert"]["failedClusters"][1], "prod-us-2");
        assert!(v["alert"]["rollbackHint"].is_string());
        let s = e.summary();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains("k8s-1-31") && s.contains("standard") && s.contains("prod-eu-1"));
        assert!(s.contains("rollback"), "{s}");
        let s = telemetry_event("c1").summary();
        assert!(
            s.contains("c1") && s.contains("succeeded") && s.contains("took 5m 3s"),
            "{s}"
        );
    }

    #[test]
    fn long_cluster_lists_are_cut() {
        let clusters: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
        let s = cluster_list(&clusters, MAX_LISTED);
        assert!(s.ends_with("c19 and 5 more"), "{s}");
    }

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

    // ---- infrastructure -----------------------------------------------------------------------

    fn infra(hints: &[&str]) -> String {
        infrastructure(&hints.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn infrastructure_from_capi_kinds() {
        assert_eq!(infra(&["AWSCluster"]), "aws");
        assert_eq!(infra(&["kind:AWSManagedControlPlane"]), "aws");
        assert_eq!(infra(&["AzureCluster"]), "azure");
        assert_eq!(infra(&["AzureManagedControlPlane"]), "azure");
        assert_eq!(infra(&["GCPCluster"]), "gcp");
        assert_eq!(infra(&["vsphereCluster"]), "vsphere");
        assert_eq!(infra(&["OpenStackCluster"]), "openstack");
        assert_eq!(infra(&["Metal3Cluster"]), "baremetal");
        assert_eq!(infra(&[" DockerCluster "]), "docker");
        assert_eq!(infra(&["AWSClusterTemplate"]), "unknown");
    }

    #[test]
    fn infrastructure_from_k0rdent_templates() {
        assert_eq!(infra(&["aws-standalone-cp-0-2-0"]), "aws");
        assert_eq!(infra(&["template:azure-hosted-cp-0-1-0"]), "azure");
        assert_eq!(infra(&["gcp-gke-0-1-0"]), "gcp");
        assert_eq!(infra(&["vsphere-standalone-cp-0-1-0"]), "vsphere");
        assert_eq!(infra(&["openstack-standalone-cp-0-1-0"]), "openstack");
        assert_eq!(infra(&["adopted-cluster-0-1-0"]), "unknown");
        assert_eq!(infra(&["aws-"]), "unknown");
    }

    #[test]
    fn infrastructure_from_crossplane_groups() {
        assert_eq!(infra(&["eks.aws.upbound.io"]), "aws");
        assert_eq!(infra(&["apiVersion:eks.aws.crossplane.io/v1beta1"]), "aws");
        assert_eq!(infra(&["container.gcp.upbound.io/v1beta2"]), "gcp");
        assert_eq!(infra(&["containerservice.azure.upbound.io"]), "azure");
        assert_eq!(infra(&["ec2.aws.upbound.io"]), "unknown");
        assert_eq!(infra(&["eks.awsome.io"]), "unknown");
    }

    #[test]
    fn infrastructure_from_kubespray_and_labels() {
        assert_eq!(infra(&["kubespray"]), "kubespray");
        assert_eq!(
            infra(&["github.com/x/gitops-base.git//iac/provider/kubespray?ref=2026.01"]),
            "kubespray"
        );
        assert_eq!(infra(&["label:provider=AWS"]), "aws");
        assert_eq!(infra(&["provider=openstack"]), "openstack");
        assert_eq!(
            infra(&["label:cluster.x-k8s.io/provider=infrastructure-vsphere"]),
            "vsphere"
        );
        assert_eq!(infra(&["label:env=prod"]), "unknown");
        assert_eq!(infra(&["label:provider="]), "unknown");
        assert_eq!(infra(&[]), "unknown");
    }

    #[test]
    fn infrastructure_priority() {
        // Kinds beat templates beat API groups beat kubespray beat labels, whatever the order.
        assert_eq!(infra(&["label:provider=gcp", "gcp-x", "AWSCluster"]), "aws");
        assert_eq!(infra(&["eks.aws.upbound.io", "azure-aks-0-1-0"]), "azure");
        assert_eq!(infra(&["kubespray", "container.gcp.upbound.io"]), "gcp");
        assert_eq!(
            infra(&["label:provider=openstack", "kubespray"]),
            "kubespray"
        );
        assert_eq!(
            infra(&["something", "label:provider=openstack"]),
            "openstack"
        );
    }

    #[test]
    fn header_values_are_made_safe() {
        assert_eq!(header_safe("alert/p/w/failed"), "alert/p/w/failed");
        assert_eq!(header_safe("a b%é"), "a%20b%25%C3%A9");
    }
}
