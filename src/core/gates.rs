//! Gate rules: what a gate result *means*. The nodes and pod-restart gates are evaluated from
//! observations; the Prometheus and HTTP gates' answers are judged here once the HTTP client
//! in the adapters floor has fetched them.
//!
//! The reasons operators read, the matching rules for Prometheus alerts, and the rule that a
//! health signal which cannot be read holds a rollout rather than passes it all live here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::core::cluster::{ClusterObservation, DeprecatedApi, GateResult};
use crate::core::plan::Gate;

/// Names listed in a reason before "…and N more".
const SHOWN_NAMES: usize = 5;

const NO_NODES: &str = "no node data for this cluster: the nodes gate needs a per-cluster kube \
                        context (--cluster-context)";
const NO_RESTARTS: &str = "no pod restart data for this cluster: the podRestarts gate needs a \
                           per-cluster kube context (--cluster-context)";

/// The gate's type name, as written in the plan.
pub fn name(g: &Gate) -> &'static str {
    match g {
        Gate::Nodes {} => "nodes",
        Gate::PodRestarts { .. } => "podRestarts",
        Gate::DeprecatedApis {} => "deprecatedApis",
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

/// The metric family a kube-apiserver's `/metrics` reports deprecated API requests in.
pub const DEPRECATED_APIS_METRIC: &str = "apiserver_requested_deprecated_apis";

/// A series of the deprecated-API metric that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("/metrics line {line}: {why}: {text}")]
pub struct MetricsError {
    pub line: usize,
    pub why: String,
    pub text: String,
}

/// The `apiserver_requested_deprecated_apis` series of a Prometheus text exposition (format
/// 0.0.4) whose value is not 0: the deprecated APIs requested since the API server started.
/// Read line by line: comments and other families are skipped; a malformed series of this
/// family is an error (a signal that cannot be read holds, it does not pass).
pub fn parse_deprecated_apis(text: &str) -> Result<Vec<DeprecatedApi>, MetricsError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix(DEPRECATED_APIS_METRIC) else {
            continue;
        };
        let bad = |why: &str| MetricsError {
            line: n + 1,
            why: why.to_string(),
            text: line.to_string(),
        };
        let (labels, value) = if let Some(body) = rest.strip_prefix('{') {
            let (labels, after) = split_labels(body).map_err(bad)?;
            (labels, after)
        } else if rest.starts_with([' ', '\t']) {
            (BTreeMap::new(), rest)
        } else {
            continue; // another family sharing the prefix
        };
        let value = value
            .split_whitespace()
            .next()
            .ok_or_else(|| bad("no value"))?;
        let value: f64 = value.parse().map_err(|_| bad("value is not a number"))?;
        if value == 0.0 {
            continue;
        }
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        out.push(DeprecatedApi {
            group: get("group"),
            version: get("version"),
            resource: get("resource"),
            subresource: get("subresource"),
            removed_release: get("removed_release"),
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `k="v",k2="v2"}` rest → the labels (escapes `\\`, `\"`, `\n` undone) and the rest.
fn split_labels(body: &str) -> Result<(BTreeMap<String, String>, &str), &'static str> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (key, after) = rest.split_once('=').ok_or("label without '='")?;
        let after = after.strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value"),
            }
        };
        labels.insert(key.trim().to_string(), value);
        rest = &after[end + 1..];
    }
}

/// The requested APIs that a control plane at `minor` (1.M) no longer serves: removed at or
/// before 1.M: what the `deprecatedApis` gate holds a control-plane step for.
pub fn removed_apis_requested(apis: &[DeprecatedApi], minor: (u64, u64)) -> Vec<&DeprecatedApi> {
    apis.iter()
        .filter(|a| {
            let mut parts = a.removed_release.trim_start_matches('v').split('.');
            let major = parts.next().and_then(|p| p.parse::<u64>().ok());
            let min = parts.next().and_then(|p| p.parse::<u64>().ok());
            match (major, min) {
                (Some(ma), Some(mi)) => (ma, mi) <= minor,
                // An unreadable removed_release: count it, so it is looked at.
                _ => true,
            }
        })
        .collect()
}

/// Gates evaluated over the network by [`Remote`] rather than from observations.
pub fn is_remote(g: &Gate) -> bool {
    matches!(g, Gate::Prometheus { .. } | Gate::Http { .. })
}

pub fn result(gate: &str, ok: bool, reason: String) -> GateResult {
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

/// The start of a body, on one line, for reasons.
pub fn snippet(body: &[u8]) -> String {
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
pub struct ApiResponse<T> {
    pub status: String,
    #[serde(default = "none")]
    pub data: Option<T>,
    #[serde(default)]
    pub error: Option<String>,
}

// `#[serde(default)]` on `Option<T>` would require `T: Default`.
pub fn none<T>() -> Option<T> {
    None
}

#[derive(Debug, Deserialize)]
pub struct AlertsData {
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub state: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryData {
    pub result_type: String,
    pub result: Value,
}

/// One `alerts` entry: a label and what its value must be.
#[derive(Debug)]
pub struct Matcher {
    pub label: String,
    /// As written, for reasons: `severity=critical`, `severity=~crit.*`.
    pub shown: String,
    pub want: Want,
}

#[derive(Debug)]
pub enum Want {
    Exact(String),
    Regex(Regex),
}

/// An `alerts` entry whose regex does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert matcher {label}: {value} is not a valid regex: {reason}")]
pub struct BadMatcher {
    pub label: String,
    pub value: String,
    /// The regex error on one line.
    pub reason: String,
}

impl Matcher {
    /// The matchers of an `alerts` map; an empty map means `severity: critical`.
    pub fn parse_all(alerts: &BTreeMap<String, String>) -> Result<Vec<Matcher>, BadMatcher> {
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
                        .map_err(|e| BadMatcher {
                            label: label.clone(),
                            value: value.clone(),
                            reason: e
                                .to_string()
                                .split_whitespace()
                                .collect::<Vec<_>>()
                                .join(" "),
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

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
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
pub fn selected(alert: &Alert, matchers: &[Matcher], scope: Option<&str>) -> bool {
    alert.state == "firing"
        && scope.is_none_or(|c| alert.labels.get("cluster").is_none_or(|l| l == c))
        && matchers.iter().all(|m| m.matches(&alert.labels))
}

pub fn judge_alerts(alerts: &[Alert], matchers: &[Matcher], scope: Option<&str>) -> (bool, String) {
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

/// Why a query answer holds no usable samples.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    #[error("the vector result is not a list")]
    NotAList,
    #[error("sample {0} has no value (native histograms are not supported)")]
    NoValue(String),
    #[error("the query result is a {0}; the gate needs an instant vector or a scalar")]
    ResultType(String),
    /// The JSON of the value.
    #[error("sample value {0} is not [time, \"value\"]")]
    NotAPair(String),
    #[error("sample value {0:?} is not a number")]
    NotANumber(String),
}

/// The samples of an instant query's result.
pub fn samples(data: &QueryData) -> Result<Vec<Sample>, SampleError> {
    match data.result_type.as_str() {
        "scalar" => Ok(vec![(String::new(), sample_value(&data.result)?)]),
        "vector" => {
            let series = data.result.as_array().ok_or(SampleError::NotAList)?;
            series
                .iter()
                .map(|s| {
                    let metric = series_name(s.get("metric"));
                    let value = s
                        .get("value")
                        .ok_or_else(|| SampleError::NoValue(metric.clone()))?;
                    Ok((metric, sample_value(value)?))
                })
                .collect()
        }
        other => Err(SampleError::ResultType(other.to_string())),
    }
}

/// `[<time>, "<value>"]` → the value. Prometheus writes values as strings, including `NaN`,
/// `+Inf` and `-Inf`.
pub fn sample_value(v: &Value) -> Result<f64, SampleError> {
    let text = v
        .as_array()
        .and_then(|pair| pair.get(1))
        .and_then(Value::as_str)
        .ok_or_else(|| SampleError::NotAPair(v.to_string()))?;
    text.parse::<f64>()
        .map_err(|_| SampleError::NotANumber(text.to_string()))
}

pub fn series_name(metric: Option<&Value>) -> String {
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

pub fn judge_samples(samples: &[Sample], threshold: f64) -> (bool, String) {
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

pub struct HttpCheck<'a> {
    pub expect_status: Option<u16>,
    pub json_field: Option<&'a str>,
    pub equals: Option<&'a str>,
}

impl HttpCheck<'_> {
    pub fn judge(&self, status: u16, body: &[u8], shown: &str) -> (bool, String) {
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
pub fn lookup<'a>(doc: &'a Value, field: &str) -> Option<&'a Value> {
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
pub fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cluster::NodeSummary;
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
        assert!(bad.to_string().contains("not a valid regex"), "{bad}");
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
        assert!(samples(&matrix).unwrap_err().to_string().contains("matrix"));
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
}
