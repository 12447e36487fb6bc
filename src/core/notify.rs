//! Alerts and telemetry as data: the events fleetwave emits, how they read, and the
//! [`Notifier`] trait the sinks in the adapters floor implement.
//!
//! Two kinds of [`Event`]:
//! - an [`Alert`] when a wave fails and the plan halts (plan, wave, reason, failed clusters and
//!   a rollback hint);
//! - a [`Telemetry`] record per cluster upgrade once it has finished (`cluster_id`,
//!   `target_infrastructure`, the new template name, plus versions and the outcome).
//!
//! Every event carries a stable `id` (an idempotency key such as
//! `telemetry/<plan>/<wave>/<cluster>/succeeded`), because a reconciler that crashes and resumes
//! from Git may emit the same event again: the JSON Lines sink writes an id at most once and
//! the webhook sink sends it as the `Idempotency-Key` header so receivers can drop repeats.
//!
//! Sinks implement [`Notifier`]; the fan-out sink sends to several. Errors never carry webhook URLs
//! (a Slack incoming-webhook URL *is* its secret) nor URL credentials: sinks name themselves by
//! scheme and host only.
//!
//! [`infrastructure`] derives `target_infrastructure` from hints found in a cluster's objects.

use std::fmt::Write as _;
use std::path::PathBuf;
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

/// Telemetry of one cluster upgrade, with the snake_case field names its consumers read
/// (`cluster_id`, `target_infrastructure`, `template`, …).
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
pub fn one_line(s: &str) -> String {
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

use crate::core::kinds::crossplane::INFRASTRUCTURE as CROSSPLANE_GROUPS;

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

/// Events for tests, shared by the sinks' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    pub fn telemetry(cluster: &str) -> Telemetry {
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

    pub fn telemetry_event(cluster: &str) -> Event {
        let t = telemetry(cluster);
        Event::telemetry(t.event_id(), t0(), t)
    }

    pub fn alert_event() -> Event {
        let a = Alert {
            plan: "k8s-1-31".into(),
            wave: "standard".into(),
            reason: "Kustomization flux-system/cluster HealthCheckFailed\nafter 20m".into(),
            failed_clusters: vec!["prod-eu-1".into(), "prod-us-2".into()],
            rollback_hint: "fleetwave rollback --plan k8s-1-31 --wave standard".into(),
        };
        Event::alert(a.event_id(), t0(), a)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

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
}
