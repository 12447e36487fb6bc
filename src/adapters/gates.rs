//! The HTTP gates — Prometheus and an HTTP endpoint — evaluated against live services; the
//! rules that judge their answers are in [`crate::core::gates`].
//!
//! This module owns what a gate result *means*: the reasons operators read, the matching rules
//! for Prometheus alerts, and the rule that a health signal which cannot be read holds a rollout
//! rather than passes it. Remote gates never return errors: every failure to reach or
//! understand a service becomes a failed [`GateResult`] whose reason says what happened.
//!
//! Semantics of the remote gates:
//!
//! - **`{cluster}` templating.** `{cluster}` in a gate's `url` (and in a Prometheus `query`) is
//!   replaced by the cluster's name. Cluster names are DNS-1123 labels, so the substitution is
//!   plain; in URLs, any other character would be percent-encoded.
//! - **Prometheus, alert mode** (no `query`): `GET {url}/api/v1/alerts`. Only `firing` alerts
//!   count; the gate fails when one matches every matcher in `alerts` (default
//!   `severity: critical`). A matcher value is an exact string, or a regex written as
//!   `=~<regex>` that must match the whole label value, as in PromQL. A label the alert lacks
//!   is the empty string, as in PromQL.
//! - **Cluster scoping.** When neither the matchers name `cluster` nor the `url` contains
//!   `{cluster}`, the Prometheus is taken to be shared by the fleet: only alerts whose `cluster`
//!   label is this cluster, or that carry no `cluster` label, count — one cluster's alert must not
//!   hold every cluster. Alerts without the label are fleet-wide and hold every cluster.
//! - **Prometheus, query mode** (`query` set; `alerts` is then ignored): `GET
//!   {url}/api/v1/query?query=…`. The query returns the bad things: any sample above
//!   `threshold` (default 0) fails the gate; no samples passes; `NaN` fails.
//! - **HTTP**: `GET url`; the status must be `expectStatus` (default: any 2xx). With `jsonField`
//!   (a dot path like `status.phase`, or a JSON pointer when it starts with `/`) the field must
//!   equal `equals`, compared as text (`"Ready"` as `Ready`; numbers and booleans by their JSON
//!   text: `3`, `true`); without `equals` it must be present and not `null` or `false`. `equals`
//!   without `jsonField` compares the whole body, trimmed. Redirects are not followed, so a
//!   health endpoint that redirects to a login page does not pass.
//! - **Reasons** show URLs without user info and without the query string (`?…`): those are
//!   where tokens live.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::core::cluster::GateResult;
use crate::core::gates::*;
use crate::core::plan::Gate;

/// Remote gate evaluations in flight at once in [`Remote::evaluate_all`].
pub const MAX_IN_FLIGHT: usize = 16;

/// Larger bodies are refused rather than buffered: no health answer is that big.
const MAX_BODY: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("the gate timeout must be above zero")]
    ZeroTimeout,
    #[error("cannot build the HTTP client for gates: {0}")]
    Client(String),
}

/// Why a gate call has no usable answer; the text is the gate result's reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("the gate url is not a valid URL: {0}")]
    BadUrl(String),
    #[error("the gate url has scheme {0:?}; only http and https are supported")]
    Scheme(String),
    #[error("the gate url has no host")]
    NoHost,
    #[error("no answer from {shown} within {within}")]
    Timeout { shown: String, within: String },
    #[error("cannot reach {shown}: {chain}")]
    Unreachable { shown: String, chain: String },
    #[error("{shown} answered HTTP {status} with a body over {mib} MiB")]
    TooLarge {
        shown: String,
        status: u16,
        mib: usize,
    },
    /// `detail` is Prometheus's error or the start of the body; may be empty.
    #[error("{shown} answered HTTP {status}{}", colon(.detail))]
    Status {
        shown: String,
        status: u16,
        detail: String,
    },
    #[error(
        "{shown} answered HTTP {status} with a body that is not a Prometheus API response: {reason}"
    )]
    NotApi {
        shown: String,
        status: u16,
        reason: String,
    },
    #[error("{shown} answered status {status:?}: {why}")]
    Failed {
        shown: String,
        status: String,
        why: String,
    },
    #[error("{shown} answered success without data")]
    NoData { shown: String },
}

/// `: detail`, or nothing for an empty detail.
fn colon(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// Evaluates the remote gates (Prometheus, HTTP) with one shared HTTP client.
#[derive(Debug, Clone)]
pub struct Remote {
    client: reqwest::Client,
    timeout: Duration,
    /// Within one [`Remote::evaluate_all`]: Prometheus answers by URL, so a Prometheus shared
    /// by the whole fleet is asked once per tick, not once per cluster.
    shared: Option<Arc<Mutex<HashMap<String, Shared>>>>,
}

/// One Prometheus answer (a `Result<T, CallError>`), fetched by whichever evaluation asks first.
type Shared = Arc<tokio::sync::OnceCell<Arc<dyn Any + Send + Sync>>>;

impl Remote {
    /// `timeout` bounds each request, from connecting to the last byte of the body.
    pub fn new(timeout: Duration) -> Result<Remote, GateError> {
        if timeout.is_zero() {
            return Err(GateError::ZeroTimeout);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fleetwave/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GateError::Client(error_chain(&e.without_url())))?;
        Ok(Remote {
            client,
            timeout,
            shared: None,
        })
    }

    /// Evaluate one gate for `cluster`; `None` for gates that are not remote. The result is
    /// named by the gate's type ([`name`]); [`Remote::evaluate_all`] numbers repeats.
    pub async fn evaluate(&self, gate: &Gate, cluster: &str) -> Option<GateResult> {
        let (ok, reason) = match gate {
            Gate::Prometheus {
                url,
                alerts,
                query,
                threshold,
            } => match query {
                None => self.alerts(url, alerts, cluster).await,
                Some(q) => {
                    let q = q.replace("{cluster}", cluster);
                    self.query(url, &q, threshold.unwrap_or(0.0), cluster).await
                }
            },
            Gate::Http {
                url,
                expect_status,
                json_field,
                equals,
            } => {
                let check = HttpCheck {
                    expect_status: *expect_status,
                    json_field: json_field.as_deref(),
                    equals: equals.as_deref(),
                };
                self.http(url, &check, cluster).await
            }
            Gate::Nodes {}
            | Gate::PodRestarts { .. }
            | Gate::DeprecatedApis {}
            | Gate::Approval { .. } => return None,
        };
        if !ok {
            tracing::debug!(cluster, gate = name(gate), %reason, "gate failed");
        }
        Some(result(name(gate), ok, reason))
    }

    /// Evaluate the remote gates of many clusters, at most [`MAX_IN_FLIGHT`] at once. Every
    /// cluster in `jobs` gets an entry (empty when it has no remote gates) holding its remote
    /// gates' results in gate order, named by [`names`] over all of its gates. Cluster names are
    /// expected to be distinct; a repeated one gets its results appended.
    pub async fn evaluate_all(
        &self,
        jobs: &[(String, Vec<Gate>)],
    ) -> BTreeMap<String, Vec<GateResult>> {
        // One slot per remote gate, filled as evaluations finish in any order.
        let mut slots: Vec<Vec<(String, Option<GateResult>)>> = Vec::with_capacity(jobs.len());
        let mut work = Vec::new();
        for (j, (cluster, gates)) in jobs.iter().enumerate() {
            let mut mine = Vec::new();
            for (gate, gate_name) in gates.iter().zip(names(gates)) {
                if is_remote(gate) {
                    work.push((j, mine.len(), gate.clone(), cluster.clone()));
                    mine.push((gate_name, None));
                }
            }
            slots.push(mine);
        }
        let mut work = work.into_iter();
        let mut running = JoinSet::new();
        let me = Remote {
            shared: Some(Arc::default()),
            ..self.clone()
        };
        loop {
            while running.len() < MAX_IN_FLIGHT {
                let Some((j, k, gate, cluster)) = work.next() else {
                    break;
                };
                let remote = me.clone();
                running.spawn(async move { (j, k, remote.evaluate(&gate, &cluster).await) });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            match done {
                Ok((j, k, r)) => {
                    if let Some(slot) = slots.get_mut(j).and_then(|s| s.get_mut(k)) {
                        slot.1 = r;
                    }
                }
                // Its slot stays empty and becomes a failed result below.
                Err(e) => tracing::warn!(error = %e, "a gate evaluation task failed"),
            }
        }
        let mut out: BTreeMap<String, Vec<GateResult>> = BTreeMap::new();
        for ((cluster, _), mine) in jobs.iter().zip(slots) {
            let results = mine.into_iter().map(|(gate_name, r)| match r {
                Some(r) => GateResult {
                    gate: gate_name,
                    ..r
                },
                None => result(
                    &gate_name,
                    false,
                    "the gate evaluation did not finish (its task failed)".to_string(),
                ),
            });
            out.entry(cluster.clone()).or_default().extend(results);
        }
        out
    }

    async fn alerts(
        &self,
        url: &str,
        alerts: &BTreeMap<String, String>,
        cluster: &str,
    ) -> (bool, String) {
        let matchers = match Matcher::parse_all(alerts) {
            Ok(m) => m,
            Err(reason) => return (false, reason.to_string()),
        };
        let scope =
            (!alerts.contains_key("cluster") && !url.contains("{cluster}")).then_some(cluster);
        let endpoint = match target(url, cluster) {
            Ok(base) => api(&base, "api/v1/alerts"),
            Err(reason) => return (false, reason.to_string()),
        };
        let shown = shown(&endpoint);
        let data = self.prometheus_shared::<AlertsData>(endpoint, &shown).await;
        match &*data {
            Ok(d) => judge_alerts(&d.alerts, &matchers, scope),
            Err(reason) => (false, reason.to_string()),
        }
    }

    async fn query(&self, url: &str, query: &str, threshold: f64, cluster: &str) -> (bool, String) {
        let mut endpoint = match target(url, cluster) {
            Ok(base) => api(&base, "api/v1/query"),
            Err(reason) => return (false, reason.to_string()),
        };
        let shown = shown(&endpoint);
        endpoint.query_pairs_mut().append_pair("query", query);
        let data = self.prometheus_shared::<QueryData>(endpoint, &shown).await;
        let data = match &*data {
            Ok(d) => d,
            Err(reason) => return (false, reason.to_string()),
        };
        match samples(data) {
            Ok(s) => judge_samples(&s, threshold),
            Err(e) => (false, format!("{shown}: {e}")),
        }
    }

    async fn http(&self, url: &str, check: &HttpCheck<'_>, cluster: &str) -> (bool, String) {
        let url = match target(url, cluster) {
            Ok(u) => u,
            Err(reason) => return (false, reason.to_string()),
        };
        let shown = shown(&url);
        let key = format!("http {url}");
        match &*self.once(key, || self.fetch(url, &shown)).await {
            Ok((status, body)) => check.judge(*status, body, &shown),
            Err(reason) => (false, reason.to_string()),
        }
    }

    /// `make`'s answer, computed once per `key` within an [`Remote::evaluate_all`] (and every
    /// time outside one), so a Prometheus or endpoint shared by the fleet is asked once a tick.
    async fn once<T, F>(&self, key: String, make: impl FnOnce() -> F) -> Arc<T>
    where
        T: Send + Sync + 'static,
        F: std::future::Future<Output = T>,
    {
        let Some(shared) = &self.shared else {
            return Arc::new(make().await);
        };
        let cell = shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let mut make = Some(make);
        let any = cell
            .get_or_init(|| async {
                let make = make.take().expect("get_or_init runs its future once");
                Arc::new(make().await) as Arc<dyn Any + Send + Sync>
            })
            .await
            .clone();
        match any.downcast::<T>() {
            Ok(v) => v,
            // Keys name what they hold (`prometheus …`, `http …`), so this cannot happen;
            // asking again is always right.
            Err(_) => match make.take() {
                Some(make) => Arc::new(make().await),
                None => unreachable!("the cell was filled by this call with a T"),
            },
        }
    }

    /// [`Remote::prometheus_api`], asked once per URL within an `evaluate_all`.
    async fn prometheus_shared<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        url: Url,
        shown: &str,
    ) -> Arc<Result<T, CallError>> {
        let key = format!("prometheus {url}");
        self.once(key, || self.prometheus_api::<T>(url, shown))
            .await
    }

    /// GET a Prometheus HTTP API endpoint and unwrap its `data`.
    async fn prometheus_api<T: DeserializeOwned>(
        &self,
        url: Url,
        shown: &str,
    ) -> Result<T, CallError> {
        let (status, body) = self.fetch(url, shown).await?;
        if !(200..300).contains(&status) {
            // Prometheus explains its errors in the same envelope.
            let detail = serde_json::from_slice::<ApiResponse<serde::de::IgnoredAny>>(&body)
                .ok()
                .and_then(|r| r.error)
                .unwrap_or_else(|| snippet(&body));
            return Err(CallError::Status {
                shown: shown.to_string(),
                status,
                detail,
            });
        }
        let parsed: ApiResponse<T> =
            serde_json::from_slice(&body).map_err(|e| CallError::NotApi {
                shown: shown.to_string(),
                status,
                reason: e.to_string(),
            })?;
        if parsed.status != "success" {
            let why = parsed.error.unwrap_or_else(|| "no error given".to_string());
            return Err(CallError::Failed {
                shown: shown.to_string(),
                status: parsed.status,
                why,
            });
        }
        parsed.data.ok_or_else(|| CallError::NoData {
            shown: shown.to_string(),
        })
    }

    /// GET `url`: the status and the whole body, or why there is none.
    async fn fetch(&self, url: Url, shown: &str) -> Result<(u16, Vec<u8>), CallError> {
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| self.transport(e, shown))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e, shown))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(CallError::TooLarge {
                    shown: shown.to_string(),
                    status,
                    mib: MAX_BODY >> 20,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    fn transport(&self, e: reqwest::Error, shown: &str) -> CallError {
        if e.is_timeout() {
            CallError::Timeout {
                shown: shown.to_string(),
                within: humantime::format_duration(self.timeout).to_string(),
            }
        } else {
            // The URL is shown scrubbed; reqwest's own copy may hold credentials.
            CallError::Unreachable {
                shown: shown.to_string(),
                chain: error_chain(&e.without_url()),
            }
        }
    }
}

/// The gate's URL for `cluster`, checked to be http(s) with a host.
fn target(url: &str, cluster: &str) -> Result<Url, CallError> {
    let raw = url.replace("{cluster}", &encode(cluster));
    // Not repeated: an unparsable URL cannot be scrubbed of its credentials.
    let parsed = Url::parse(&raw).map_err(|e| CallError::BadUrl(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(CallError::Scheme(parsed.scheme().to_string()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(CallError::NoHost);
    }
    Ok(parsed)
}

/// Percent-encode all but RFC 3986 unreserved characters (a DNS label passes unchanged).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `base` with `path` appended to its path, whether or not `base` ends with `/`; a path prefix
/// (Prometheus behind `/prometheus/`) and the query string are kept.
fn api(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let joined = format!("{}/{path}", base.path().trim_end_matches('/'));
    u.set_path(&joined);
    u
}

/// A URL fit for a reason: no user info, no fragment, the query string as `?…`.
fn shown(u: &Url) -> String {
    let mut c = u.clone();
    let _ = c.set_username("");
    let _ = c.set_password(None);
    c.set_fragment(None);
    let had_query = c.query().is_some();
    c.set_query(None);
    let mut s = c.to_string();
    if had_query {
        s.push_str("?…");
    }
    s
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_templated_joined_and_scrubbed() {
        let u = target("https://u:secret@prom.{cluster}.example/x/?token=t", "eu-1").unwrap();
        assert_eq!(u.host_str(), Some("prom.eu-1.example"));
        assert_eq!(api(&u, "api/v1/alerts").path(), "/x/api/v1/alerts");
        let bare = target("http://prom:9090", "a").unwrap();
        assert_eq!(
            api(&bare, "api/v1/alerts").as_str(),
            "http://prom:9090/api/v1/alerts"
        );
        let s = shown(&api(&u, "api/v1/alerts"));
        assert_eq!(s, "https://prom.eu-1.example/x/api/v1/alerts?…");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert!(target("ftp://x", "a").is_err());
        assert!(target("not a url", "a").is_err());
    }

    #[test]
    fn zero_timeout_is_refused() {
        assert!(matches!(
            Remote::new(Duration::ZERO),
            Err(GateError::ZeroTimeout)
        ));
    }
}
