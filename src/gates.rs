//! Gates (SPEC §5): nodes and pod restarts evaluated from observations (pure), and the HTTP
//! gates — Prometheus and an HTTP endpoint — evaluated against live services.
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

use regex::Regex;
use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::cluster::{ClusterObservation, GateResult};
use crate::plan::Gate;

/// Remote gate evaluations in flight at once in [`Remote::evaluate_all`].
pub const MAX_IN_FLIGHT: usize = 16;

/// Larger bodies are refused rather than buffered: no health answer is that big.
const MAX_BODY: usize = 32 << 20;

/// Names listed in a reason before "…and N more".
const SHOWN_NAMES: usize = 5;

const NO_NODES: &str = "no node data for this cluster: the nodes gate needs a per-cluster kube \
                        context (--cluster-context)";
const NO_RESTARTS: &str = "no pod restart data for this cluster: the podRestarts gate needs a \
                           per-cluster kube context (--cluster-context)";

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("the gate timeout must be above zero")]
    ZeroTimeout,
    #[error("cannot build the HTTP client for gates: {0}")]
    Client(String),
}

/// The gate's type name, as written in the plan.
pub fn name(g: &Gate) -> &'static str {
    match g {
        Gate::Nodes {} => "nodes",
        Gate::PodRestarts { .. } => "podRestarts",
        Gate::Prometheus { .. } => "prometheus",
        Gate::Http { .. } => "http",
        Gate::Approval { .. } => "approval",
    }
}

/// Result names for a wave's gates, in order: the type name, then `#2`, `#3`… for further gates
/// of the same type, so two Prometheus gates give `prometheus` and `prometheus#2`.
pub fn names(gates: &[Gate]) -> Vec<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    gates
        .iter()
        .map(|g| {
            let n = name(g);
            let count = seen.entry(n).or_default();
            *count += 1;
            if *count == 1 {
                n.to_string()
            } else {
                format!("{n}#{count}")
            }
        })
        .collect()
}

/// Gates evaluated over the network by [`Remote`] rather than from observations.
pub fn is_remote(g: &Gate) -> bool {
    matches!(g, Gate::Prometheus { .. } | Gate::Http { .. })
}

fn result(gate: &str, ok: bool, reason: String) -> GateResult {
    GateResult {
        gate: gate.to_string(),
        ok,
        reason,
    }
}

/// Every node Ready. Needs node data, which only a per-cluster kube context provides.
pub fn nodes(obs: &ClusterObservation) -> GateResult {
    if let Some(why) = &obs.unobservable {
        return result("nodes", false, format!("cluster not observable: {why}"));
    }
    let Some(n) = &obs.nodes else {
        return result("nodes", false, NO_NODES.to_string());
    };
    if n.total == 0 {
        return result("nodes", false, "the cluster reports no nodes".to_string());
    }
    if n.ready == n.total {
        let reason = if n.total == 1 {
            "the only node is Ready".to_string()
        } else {
            format!("all {} nodes Ready", n.total)
        };
        return result("nodes", true, reason);
    }
    let mut reason = format!("{}/{} nodes Ready", n.ready, n.total);
    if !n.not_ready.is_empty() {
        let _ = write!(reason, "; not Ready: {}", list(&n.not_ready));
    }
    result("nodes", false, reason)
}

/// Container restarts since the step started stay within `threshold`. `baseline` is the count
/// when the step started; without one, this observation becomes the baseline.
pub fn pod_restarts(obs: &ClusterObservation, baseline: Option<u64>, threshold: u32) -> GateResult {
    if let Some(why) = &obs.unobservable {
        return result(
            "podRestarts",
            false,
            format!("cluster not observable: {why}"),
        );
    }
    let Some(now) = obs.pod_restarts else {
        return result("podRestarts", false, NO_RESTARTS.to_string());
    };
    let Some(base) = baseline else {
        return result(
            "podRestarts",
            true,
            format!("baseline taken now ({now} restarts)"),
        );
    };
    // Restart counts live on pods: replaced pods take their counts with them, so a fall is
    // no increase rather than a negative one.
    let increase = now.saturating_sub(base);
    if increase <= u64::from(threshold) {
        let fell = if now < base {
            format!("; the count fell from {base} to {now} as pods were replaced")
        } else {
            String::new()
        };
        result(
            "podRestarts",
            true,
            format!("pod restarts +{increase} since step start (threshold {threshold}{fell})"),
        )
    } else {
        result(
            "podRestarts",
            false,
            format!("pod restarts +{increase} since step start exceed threshold {threshold}"),
        )
    }
}

/// "a, b, c" with at most [`SHOWN_NAMES`] names, then "…and N more".
fn list(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(SHOWN_NAMES)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN_NAMES {
        let _ = write!(s, " …and {} more", names.len() - SHOWN_NAMES);
    }
    s
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

/// One Prometheus answer (a `Result<T, String>`), fetched by whichever evaluation asks first.
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
            Gate::Nodes {} | Gate::PodRestarts { .. } | Gate::Approval { .. } => return None,
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
            Err(reason) => return (false, reason),
        };
        let scope =
            (!alerts.contains_key("cluster") && !url.contains("{cluster}")).then_some(cluster);
        let endpoint = match target(url, cluster) {
            Ok(base) => api(&base, "api/v1/alerts"),
            Err(reason) => return (false, reason),
        };
        let shown = shown(&endpoint);
        let data = self.prometheus_shared::<AlertsData>(endpoint, &shown).await;
        match &*data {
            Ok(d) => judge_alerts(&d.alerts, &matchers, scope),
            Err(reason) => (false, reason.clone()),
        }
    }

    async fn query(&self, url: &str, query: &str, threshold: f64, cluster: &str) -> (bool, String) {
        let mut endpoint = match target(url, cluster) {
            Ok(base) => api(&base, "api/v1/query"),
            Err(reason) => return (false, reason),
        };
        let shown = shown(&endpoint);
        endpoint.query_pairs_mut().append_pair("query", query);
        let data = self.prometheus_shared::<QueryData>(endpoint, &shown).await;
        let data = match &*data {
            Ok(d) => d,
            Err(reason) => return (false, reason.clone()),
        };
        match samples(data) {
            Ok(s) => judge_samples(&s, threshold),
            Err(e) => (false, format!("{shown}: {e}")),
        }
    }

    async fn http(&self, url: &str, check: &HttpCheck<'_>, cluster: &str) -> (bool, String) {
        let url = match target(url, cluster) {
            Ok(u) => u,
            Err(reason) => return (false, reason),
        };
        let shown = shown(&url);
        let key = format!("http {url}");
        match &*self.once(key, || self.fetch(url, &shown)).await {
            Ok((status, body)) => check.judge(*status, body, &shown),
            Err(reason) => (false, reason.clone()),
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
    ) -> Arc<Result<T, String>> {
        let key = format!("prometheus {url}");
        self.once(key, || self.prometheus_api::<T>(url, shown))
            .await
    }

    /// GET a Prometheus HTTP API endpoint and unwrap its `data`.
    async fn prometheus_api<T: DeserializeOwned>(
        &self,
        url: Url,
        shown: &str,
    ) -> Result<T, String> {
        let (status, body) = self.fetch(url, shown).await?;
        if !(200..300).contains(&status) {
            // Prometheus explains its errors in the same envelope.
            let detail = serde_json::from_slice::<ApiResponse<serde::de::IgnoredAny>>(&body)
                .ok()
                .and_then(|r| r.error)
                .unwrap_or_else(|| snippet(&body));
            return Err(if detail.is_empty() {
                format!("{shown} answered HTTP {status}")
            } else {
                format!("{shown} answered HTTP {status}: {detail}")
            });
        }
        let parsed: ApiResponse<T> = serde_json::from_slice(&body).map_err(|e| {
            format!("{shown} answered HTTP {status} with a body that is not a Prometheus API response: {e}")
        })?;
        if parsed.status != "success" {
            let why = parsed.error.unwrap_or_else(|| "no error given".to_string());
            return Err(format!(
                "{shown} answered status {:?}: {why}",
                parsed.status
            ));
        }
        parsed
            .data
            .ok_or_else(|| format!("{shown} answered success without data"))
    }

    /// GET `url`: the status and the whole body, or why there is none.
    async fn fetch(&self, url: Url, shown: &str) -> Result<(u16, Vec<u8>), String> {
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
                return Err(format!(
                    "{shown} answered HTTP {status} with a body over {} MiB",
                    MAX_BODY >> 20
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    fn transport(&self, e: reqwest::Error, shown: &str) -> String {
        if e.is_timeout() {
            format!(
                "no answer from {shown} within {}",
                humantime::format_duration(self.timeout)
            )
        } else {
            // The URL is shown scrubbed; reqwest's own copy may hold credentials.
            format!("cannot reach {shown}: {}", error_chain(&e.without_url()))
        }
    }
}

/// The gate's URL for `cluster`, checked to be http(s) with a host.
fn target(url: &str, cluster: &str) -> Result<Url, String> {
    let raw = url.replace("{cluster}", &encode(cluster));
    // Not repeated: an unparsable URL cannot be scrubbed of its credentials.
    let parsed = Url::parse(&raw).map_err(|e| format!("the gate url is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "the gate url has scheme {:?}; only http and https are supported",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the gate url has no host".to_string());
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

/// The start of a body, on one line, for reasons.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 200 {
        let short: String = line.chars().take(200).collect();
        format!("{short}…")
    } else {
        line
    }
}

// --- Prometheus API ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ApiResponse<T> {
    status: String,
    #[serde(default = "none")]
    data: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

// `#[serde(default)]` on `Option<T>` would require `T: Default`.
fn none<T>() -> Option<T> {
    None
}

#[derive(Debug, Deserialize)]
struct AlertsData {
    alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Deserialize)]
struct Alert {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    state: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    result: Value,
}

/// One `alerts` entry: a label and what its value must be.
#[derive(Debug)]
struct Matcher {
    label: String,
    /// As written, for reasons: `severity=critical`, `severity=~crit.*`.
    shown: String,
    want: Want,
}

#[derive(Debug)]
enum Want {
    Exact(String),
    Regex(Regex),
}

impl Matcher {
    /// The matchers of an `alerts` map; an empty map means `severity: critical`.
    fn parse_all(alerts: &BTreeMap<String, String>) -> Result<Vec<Matcher>, String> {
        if alerts.is_empty() {
            return Ok(vec![Matcher {
                label: "severity".to_string(),
                shown: "severity=critical".to_string(),
                want: Want::Exact("critical".to_string()),
            }]);
        }
        alerts
            .iter()
            .map(|(label, value)| {
                let want = match value.strip_prefix("=~") {
                    // Anchored like PromQL's =~.
                    Some(re) => Regex::new(&format!("^(?:{re})$"))
                        .map(Want::Regex)
                        .map_err(|e| {
                            let e = e
                                .to_string()
                                .split_whitespace()
                                .collect::<Vec<_>>()
                                .join(" ");
                            format!("alert matcher {label}: {value} is not a valid regex: {e}")
                        })?,
                    None => Want::Exact(value.clone()),
                };
                let shown = match &want {
                    Want::Exact(v) => format!("{label}={v}"),
                    Want::Regex(_) => format!("{label}{value}"),
                };
                Ok(Matcher {
                    label: label.clone(),
                    shown,
                    want,
                })
            })
            .collect()
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        // PromQL reads a missing label as "".
        let got = labels.get(&self.label).map_or("", String::as_str);
        match &self.want {
            Want::Exact(v) => got == v,
            Want::Regex(re) => re.is_match(got),
        }
    }
}

/// Does a firing-or-not alert count against this gate? `scope` is the cluster when the
/// Prometheus is shared by the fleet (see the module docs).
fn selected(alert: &Alert, matchers: &[Matcher], scope: Option<&str>) -> bool {
    alert.state == "firing"
        && scope.is_none_or(|c| alert.labels.get("cluster").is_none_or(|l| l == c))
        && matchers.iter().all(|m| m.matches(&alert.labels))
}

fn judge_alerts(alerts: &[Alert], matchers: &[Matcher], scope: Option<&str>) -> (bool, String) {
    let mut hits: Vec<&Alert> = alerts
        .iter()
        .filter(|a| selected(a, matchers, scope))
        .collect();
    if hits.is_empty() {
        let wanted = matchers
            .iter()
            .map(|m| m.shown.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return (true, format!("no firing alerts matching {wanted}"));
    }
    // Prometheus lists alerts in no stable order; the same alerts give the same reason.
    hits.sort_by(|a, b| {
        (a.labels.get("alertname"), &a.labels).cmp(&(b.labels.get("alertname"), &b.labels))
    });
    let first = hits[0];
    let alert_name = first
        .labels
        .get("alertname")
        .map_or("<unnamed>", String::as_str);
    let mut shown_labels: Vec<String> = matchers
        .iter()
        .filter_map(|m| {
            first
                .labels
                .get(&m.label)
                .map(|v| format!("{}={v}", m.label))
        })
        .collect();
    if !matchers.iter().any(|m| m.label == "cluster") {
        if let Some(c) = first.labels.get("cluster") {
            shown_labels.push(format!("cluster={c}"));
        }
    }
    let mut reason = format!("alert {alert_name} firing");
    if !shown_labels.is_empty() {
        let _ = write!(reason, " ({})", shown_labels.join(", "));
    }
    if hits.len() > 1 {
        let _ = write!(reason, " and {} more", hits.len() - 1);
    }
    (false, reason)
}

/// A sample: its series (`name{k="v"}`, empty for a scalar) and value.
type Sample = (String, f64);

/// The samples of an instant query's result.
fn samples(data: &QueryData) -> Result<Vec<Sample>, String> {
    match data.result_type.as_str() {
        "scalar" => Ok(vec![(String::new(), sample_value(&data.result)?)]),
        "vector" => {
            let series = data
                .result
                .as_array()
                .ok_or("the vector result is not a list")?;
            series
                .iter()
                .map(|s| {
                    let metric = series_name(s.get("metric"));
                    let value = s.get("value").ok_or_else(|| {
                        format!(
                            "sample {metric} has no value (native histograms are not supported)"
                        )
                    })?;
                    Ok((metric, sample_value(value)?))
                })
                .collect()
        }
        other => Err(format!(
            "the query result is a {other}; the gate needs an instant vector or a scalar"
        )),
    }
}

/// `[<time>, "<value>"]` → the value. Prometheus writes values as strings, including `NaN`,
/// `+Inf` and `-Inf`.
fn sample_value(v: &Value) -> Result<f64, String> {
    let text = v
        .as_array()
        .and_then(|pair| pair.get(1))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("sample value {v} is not [time, \"value\"]"))?;
    text.parse::<f64>()
        .map_err(|_| format!("sample value {text:?} is not a number"))
}

fn series_name(metric: Option<&Value>) -> String {
    let Some(Value::Object(labels)) = metric else {
        return "{}".to_string();
    };
    let name = labels.get("__name__").and_then(Value::as_str).unwrap_or("");
    let rest = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str()
                    .map_or_else(|| v.to_string(), |s| format!("{s:?}"))
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = format!("{name}{{{rest}}}");
    if s.chars().count() > 200 {
        s = s.chars().take(200).collect::<String>() + "…";
    }
    s
}

fn judge_samples(samples: &[Sample], threshold: f64) -> (bool, String) {
    if samples.is_empty() {
        return (true, "query returned no samples".to_string());
    }
    // NaN compares false with everything: it would pass silently.
    if let Some((series, _)) = samples.iter().find(|(_, v)| v.is_nan()) {
        let of = if series.is_empty() {
            String::new()
        } else {
            format!(" for {series}")
        };
        return (false, format!("query returned NaN{of}"));
    }
    let Some((max_series, max)) = samples.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
        return (true, "query returned no samples".to_string());
    };
    let above = samples.iter().filter(|(_, v)| *v > threshold).count();
    let n = samples.len();
    if above == 0 {
        let count = if n == 1 {
            "1 sample".to_string()
        } else {
            format!("{n} samples")
        };
        return (
            true,
            format!("query max {max} <= threshold {threshold} ({count})"),
        );
    }
    let mut reason = format!("query max {max} > threshold {threshold}");
    if !max_series.is_empty() {
        let _ = write!(reason, " at {max_series}");
    }
    if n > 1 {
        let _ = write!(reason, " ({above} of {n} samples above)");
    }
    (false, reason)
}

// --- HTTP gate --------------------------------------------------------------------------------

struct HttpCheck<'a> {
    expect_status: Option<u16>,
    json_field: Option<&'a str>,
    equals: Option<&'a str>,
}

impl HttpCheck<'_> {
    fn judge(&self, status: u16, body: &[u8], shown: &str) -> (bool, String) {
        let status_ok = match self.expect_status {
            Some(want) => status == want,
            None => (200..300).contains(&status),
        };
        if !status_ok {
            let want = self
                .expect_status
                .map_or_else(|| "2xx".to_string(), |s| s.to_string());
            let text = snippet(body);
            let detail = if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            };
            return (
                false,
                format!("{shown} answered HTTP {status}, expected {want}{detail}"),
            );
        }
        let got = format!("{shown} answered HTTP {status}");
        match (self.json_field, self.equals) {
            (None, None) => (true, got),
            (None, Some(want)) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text == want {
                    (true, format!("{got}: {want:?}"))
                } else {
                    (
                        false,
                        format!(
                            "{got} with body {:?}, expected {want:?}",
                            snippet(text.as_bytes())
                        ),
                    )
                }
            }
            (Some(field), want) => {
                let doc: Value = match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(e) => return (false, format!("{got} but the body is not JSON: {e}")),
                };
                let Some(value) = lookup(&doc, field) else {
                    return (false, format!("{got} without field {field}"));
                };
                let text = json_text(value);
                match want {
                    Some(want) if text == want => (true, format!("{got}; {field} is {text:?}")),
                    Some(want) => (
                        false,
                        format!("{got}; {field} is {text:?}, expected {want:?}"),
                    ),
                    None if matches!(value, Value::Null | Value::Bool(false)) => (
                        false,
                        format!(
                            "{got}; {field} is {text}, expected a value other than null or false"
                        ),
                    ),
                    None => (true, format!("{got}; {field} is {text:?}")),
                }
            }
        }
    }
}

/// A field of a JSON document: a JSON pointer (`/status/phase`) or a dot path (`status.phase`,
/// `items.0.name`, numbers indexing lists).
fn lookup<'a>(doc: &'a Value, field: &str) -> Option<&'a Value> {
    if field.starts_with('/') {
        return doc.pointer(field);
    }
    field.split('.').try_fold(doc, |cur, seg| match cur {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A JSON value as compared with `equals`: strings as themselves, anything else as JSON text.
fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::NodeSummary;
    use serde_json::json;

    fn obs_nodes(total: u32, ready: u32, not_ready: &[&str]) -> ClusterObservation {
        ClusterObservation {
            nodes: Some(NodeSummary {
                total,
                ready,
                kubelets: BTreeMap::new(),
                control_plane_kubelets: BTreeMap::new(),
                not_ready: not_ready.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    fn obs_restarts(n: Option<u64>) -> ClusterObservation {
        ClusterObservation {
            pod_restarts: n,
            ..Default::default()
        }
    }

    #[test]
    fn nodes_all_ready_passes() {
        let r = nodes(&obs_nodes(3, 3, &[]));
        assert_eq!(r, result("nodes", true, "all 3 nodes Ready".into()));
        assert!(nodes(&obs_nodes(1, 1, &[])).ok);
    }

    #[test]
    fn nodes_not_ready_names_them() {
        let r = nodes(&obs_nodes(3, 2, &["node-b"]));
        assert!(!r.ok);
        assert_eq!(r.reason, "2/3 nodes Ready; not Ready: node-b");
        let many: Vec<String> = (1..=8).map(|i| format!("n{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let r = nodes(&obs_nodes(10, 2, &many));
        assert_eq!(
            r.reason,
            "2/10 nodes Ready; not Ready: n1, n2, n3, n4, n5 …and 3 more"
        );
    }

    #[test]
    fn nodes_without_data_or_nodes_fails() {
        let r = nodes(&ClusterObservation::default());
        assert!(!r.ok);
        assert_eq!(r.reason, NO_NODES);
        assert!(r.reason.contains("--cluster-context"));
        assert!(!nodes(&obs_nodes(0, 0, &[])).ok);
    }

    #[test]
    fn pod_restarts_within_and_over_threshold() {
        let r = pod_restarts(&obs_restarts(Some(12)), Some(10), 5);
        assert_eq!(r.gate, "podRestarts");
        assert!(r.ok);
        assert_eq!(r.reason, "pod restarts +2 since step start (threshold 5)");
        let r = pod_restarts(&obs_restarts(Some(19)), Some(10), 5);
        assert!(!r.ok);
        assert_eq!(
            r.reason,
            "pod restarts +9 since step start exceed threshold 5"
        );
        assert!(pod_restarts(&obs_restarts(Some(15)), Some(10), 5).ok);
        assert!(!pod_restarts(&obs_restarts(Some(1)), Some(0), 0).ok);
    }

    #[test]
    fn pod_restarts_fall_is_no_increase() {
        let r = pod_restarts(&obs_restarts(Some(4)), Some(10), 0);
        assert!(r.ok, "{}", r.reason);
        assert!(
            r.reason.starts_with("pod restarts +0 since step start"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn pod_restarts_baseline_and_missing_data() {
        let r = pod_restarts(&obs_restarts(Some(7)), None, 5);
        assert!(r.ok);
        assert_eq!(r.reason, "baseline taken now (7 restarts)");
        let r = pod_restarts(&obs_restarts(None), Some(3), 5);
        assert!(!r.ok);
        assert!(r.reason.contains("--cluster-context"), "{}", r.reason);
    }

    #[test]
    fn names_number_repeats_per_type() {
        let prom = Gate::Prometheus {
            url: "http://p".into(),
            alerts: BTreeMap::new(),
            query: None,
            threshold: None,
        };
        let gates = vec![
            prom.clone(),
            Gate::Nodes {},
            prom.clone(),
            prom,
            Gate::Nodes {},
        ];
        assert_eq!(
            names(&gates),
            [
                "prometheus",
                "nodes",
                "prometheus#2",
                "prometheus#3",
                "nodes#2"
            ]
        );
        assert!(is_remote(&gates[0]) && !is_remote(&gates[1]));
        assert_eq!(name(&Gate::PodRestarts { threshold: 1 }), "podRestarts");
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn alert(state: &str, pairs: &[(&str, &str)]) -> Alert {
        Alert {
            labels: labels(pairs),
            state: state.into(),
        }
    }

    #[test]
    fn default_matcher_is_critical_firing_only() {
        let m = Matcher::parse_all(&BTreeMap::new()).unwrap();
        let crit = alert("firing", &[("alertname", "A"), ("severity", "critical")]);
        assert!(selected(&crit, &m, None));
        assert!(!selected(
            &alert("pending", &[("severity", "critical")]),
            &m,
            None
        ));
        assert!(!selected(
            &alert("firing", &[("severity", "warning")]),
            &m,
            None
        ));
        let (ok, reason) = judge_alerts(&[], &m, None);
        assert!(ok);
        assert_eq!(reason, "no firing alerts matching severity=critical");
    }

    #[test]
    fn regex_matchers_are_anchored() {
        let m = Matcher::parse_all(&labels(&[("severity", "=~crit|page")])).unwrap();
        assert!(m[0].matches(&labels(&[("severity", "page")])));
        assert!(!m[0].matches(&labels(&[("severity", "critical")])));
        let m = Matcher::parse_all(&labels(&[("alertname", "=~Kube.*")])).unwrap();
        assert!(m[0].matches(&labels(&[("alertname", "KubeNodeNotReady")])));
        assert!(!m[0].matches(&labels(&[("alertname", "NotKube")])));
        // A missing label is "", as in PromQL.
        let m = Matcher::parse_all(&labels(&[("team", "=~.*")])).unwrap();
        assert!(m[0].matches(&BTreeMap::new()));
        let bad = Matcher::parse_all(&labels(&[("severity", "=~(")])).unwrap_err();
        assert!(bad.contains("not a valid regex"), "{bad}");
    }

    #[test]
    fn shared_prometheus_scopes_alerts_to_the_cluster() {
        let m = Matcher::parse_all(&BTreeMap::new()).unwrap();
        let other = alert("firing", &[("severity", "critical"), ("cluster", "b")]);
        let mine = alert("firing", &[("severity", "critical"), ("cluster", "a")]);
        let fleet = alert("firing", &[("severity", "critical")]);
        assert!(!selected(&other, &m, Some("a")));
        assert!(selected(&mine, &m, Some("a")));
        assert!(selected(&fleet, &m, Some("a")));
        assert!(selected(&other, &m, None));
    }

    #[test]
    fn alert_reason_names_the_first_and_counts_the_rest() {
        let m = Matcher::parse_all(&BTreeMap::new()).unwrap();
        let alerts = [
            alert(
                "firing",
                &[
                    ("alertname", "KubePodCrashLooping"),
                    ("severity", "critical"),
                    ("cluster", "x"),
                ],
            ),
            alert("firing", &[("alertname", "Zeta"), ("severity", "critical")]),
            alert(
                "firing",
                &[
                    ("alertname", "Alpha"),
                    ("severity", "critical"),
                    ("cluster", "y"),
                ],
            ),
        ];
        let (ok, reason) = judge_alerts(&alerts, &m, Some("x"));
        assert!(!ok);
        assert_eq!(
            reason,
            "alert KubePodCrashLooping firing (severity=critical, cluster=x) and 1 more"
        );
    }

    #[test]
    fn json_fields_by_dot_path_and_pointer() {
        let doc = json!({"status": {"phase": "Ready", "ok": true, "n": 3, "items": [{"name": "a"}]}, "a.b": 1});
        assert_eq!(lookup(&doc, "status.phase"), Some(&json!("Ready")));
        assert_eq!(lookup(&doc, "/status/phase"), Some(&json!("Ready")));
        assert_eq!(lookup(&doc, "status.items.0.name"), Some(&json!("a")));
        assert_eq!(lookup(&doc, "/a.b"), Some(&json!(1)));
        assert_eq!(lookup(&doc, "status.missing"), None);
        assert_eq!(lookup(&doc, "status.phase.deeper"), None);
        assert_eq!(json_text(&json!(true)), "true");
        assert_eq!(json_text(&json!(3)), "3");
        assert_eq!(json_text(&json!("Ready")), "Ready");
    }

    #[test]
    fn http_check_compares_fields_as_text() {
        let check = HttpCheck {
            expect_status: None,
            json_field: Some("status.ok"),
            equals: Some("true"),
        };
        assert!(check.judge(200, br#"{"status":{"ok":true}}"#, "u").0);
        let (ok, reason) = check.judge(200, br#"{"status":{"ok":false}}"#, "u");
        assert!(!ok);
        assert_eq!(
            reason,
            r#"u answered HTTP 200; status.ok is "false", expected "true""#
        );
        let (ok, reason) = check.judge(200, b"<html>", "u");
        assert!(!ok && reason.contains("not JSON"), "{reason}");
        let (ok, reason) = check.judge(500, b"", "u");
        assert!(!ok);
        assert_eq!(reason, "u answered HTTP 500, expected 2xx");
        let present = HttpCheck {
            expect_status: Some(200),
            json_field: Some("ready"),
            equals: None,
        };
        assert!(present.judge(200, br#"{"ready":"yes"}"#, "u").0);
        assert!(!present.judge(200, br#"{"ready":false}"#, "u").0);
        assert!(!present.judge(200, br#"{"ready":null}"#, "u").0);
        assert!(!present.judge(200, br#"{}"#, "u").0);
        let body = HttpCheck {
            expect_status: None,
            json_field: None,
            equals: Some("ok"),
        };
        assert!(body.judge(200, b"ok\n", "u").0);
        assert!(!body.judge(200, b"degraded", "u").0);
    }

    #[test]
    fn sample_values_parse_like_prometheus_writes_them() {
        assert_eq!(sample_value(&json!([1.0, "1.5"])), Ok(1.5));
        assert_eq!(sample_value(&json!([1.0, "+Inf"])), Ok(f64::INFINITY));
        assert!(sample_value(&json!([1.0, "NaN"])).unwrap().is_nan());
        assert!(sample_value(&json!([1.0, 1.5])).is_err());
        assert!(sample_value(&json!([1.0, "x"])).is_err());
        let data = QueryData {
            result_type: "vector".into(),
            result: json!([{"metric": {"__name__": "up", "job": "api"}, "value": [1, "0"]}]),
        };
        assert_eq!(
            samples(&data),
            Ok(vec![(r#"up{job="api"}"#.to_string(), 0.0)])
        );
        let scalar = QueryData {
            result_type: "scalar".into(),
            result: json!([1, "2"]),
        };
        assert_eq!(samples(&scalar), Ok(vec![(String::new(), 2.0)]));
        let matrix = QueryData {
            result_type: "matrix".into(),
            result: json!([]),
        };
        assert!(samples(&matrix).unwrap_err().contains("matrix"));
    }

    #[test]
    fn samples_fail_above_threshold_or_nan() {
        assert_eq!(
            judge_samples(&[], 0.0),
            (true, "query returned no samples".into())
        );
        let s = vec![("a{}".to_string(), 0.01), ("b{}".to_string(), 0.07)];
        let (ok, reason) = judge_samples(&s, 0.05);
        assert!(!ok);
        assert!(
            reason.starts_with("query max 0.07 > threshold 0.05"),
            "{reason}"
        );
        assert!(reason.contains("1 of 2"), "{reason}");
        assert!(judge_samples(&s, 0.07).0);
        let (ok, reason) = judge_samples(&[("x{}".to_string(), f64::NAN)], 1.0);
        assert!(!ok && reason.contains("NaN"), "{reason}");
    }

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
