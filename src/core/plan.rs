//! The `FleetUpgradePlan` (`apiVersion: fleet.opencenter.cloud/v1alpha1`): its file format —
//! waves of clusters chosen by label, the Kubernetes hops, the gitops-base tag, templates,
//! gates and windows — and the validated model the rest of fleetwave works from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::core::diag::{Diag, Diags, echo};
use crate::core::source::YamlSource;
use crate::core::version::KubeVersion;
use crate::path;

pub const API_VERSION: &str = "fleet.opencenter.cloud/v1alpha1";
pub const KIND: &str = "FleetUpgradePlan";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "FleetUpgradePlan")]
struct PlanFile {
    #[schemars(extend("const" = API_VERSION))]
    api_version: String,
    #[schemars(extend("const" = KIND))]
    kind: String,
    metadata: Metadata,
    spec: SpecFile,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpecFile {
    #[serde(default)]
    target_version: Option<String>,
    #[serde(default)]
    intermediate_versions: Vec<String>,
    #[serde(default)]
    gitops_base: Option<GitopsBaseFile>,
    #[serde(default)]
    templates: BTreeMap<String, String>,
    #[serde(default)]
    waves: Vec<WaveFile>,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    version_overrides: Vec<OverrideFile>,
    /// A release catalog in the fleet repository, instead of the built-in one.
    #[serde(default)]
    version_catalog: Option<String>,
    /// Versions managed providers offer, exported by the user, for the clusters a selector
    /// picks.
    #[serde(default)]
    provider_versions: Vec<ProviderVersions>,
    /// Workers whose nodes are replaced (CAPI MachineDeployments, MachinePools) skip
    /// intermediate minors while kubelets stay within 3 minors of the control plane.
    #[serde(default)]
    efficient_upgrades: bool,
    /// Merge worker (and whole-cluster) steps even when a cluster's PodDisruptionBudgets
    /// allow no disruption (default false: such a step is held before merge). A wave's own
    /// `allowDrainBlockers` wins.
    #[serde(default)]
    allow_drain_blockers: Option<bool>,
    /// Plans (their `metadata.name`) that must be complete before this one starts.
    #[serde(default)]
    after: Vec<String>,
    /// Change freezes (deny windows) for every wave of this plan: nothing merges inside one.
    #[serde(default)]
    freeze: Vec<FreezeFile>,
    /// Per-cluster maintenance windows: a batch merges only while every cluster in it is
    /// inside its window. A cluster takes the first entry that names it (`clusters`), selects
    /// it (`clusterSelector`), or that its label `fleetwave.io/maintenance-window` names.
    #[serde(default)]
    maintenance_windows: Vec<MaintenanceWindowFile>,
}

/// One entry of `spec.maintenanceWindows`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MaintenanceWindowFile {
    /// Clusters labelled `fleetwave.io/maintenance-window: <name>` take this window.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    cluster_selector: Option<Selector>,
    /// Cluster names.
    #[serde(default)]
    clusters: Vec<String>,
    window: WindowFile,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    version: String,
}

/// The exact value to write, instead of the derived one, in one cluster's version fields
/// (optionally only those of one kind) when they go to the hop this version belongs to.
/// For provider builds such as `1.24.5-gke.100` that cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionOverride {
    pub cluster: String,
    pub kind: Option<String>,
    pub version: KubeVersion,
    /// The value as written in the plan; written verbatim.
    pub text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct GitopsBaseFile {
    #[serde(default)]
    url: String,
    #[serde(default)]
    tag: String,
    /// The Kubernetes versions the tag supports, e.g. `">=1.32 <1.35"`.
    #[serde(default)]
    kubernetes: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WaveFile {
    #[serde(default)]
    name: String,
    cluster_selector: Selector,
    #[serde(default)]
    validation: ValidationFile,
    #[serde(default)]
    max_failures: Option<CountOrText>,
    #[serde(default)]
    progress_deadline: Option<String>,
    #[serde(default)]
    window: Option<WindowFile>,
    #[serde(default)]
    gates: Vec<Gate>,
    /// Merge this wave's worker (and whole-cluster) steps even when a cluster's
    /// PodDisruptionBudgets allow no disruption; default: the plan's `allowDrainBlockers`.
    #[serde(default)]
    allow_drain_blockers: Option<bool>,
    /// At most this many clusters (a count, or a percentage of the wave such as `"25%"`) per
    /// batch; each batch of each step is its own pull request.
    #[serde(default)]
    max_concurrency: Option<CountOrText>,
    /// Label keys ordering the wave's clusters into batches (then by name); default: by name.
    #[serde(default)]
    order: Vec<String>,
    /// Order the wave's clusters into batches by a seeded hash of their names instead.
    #[serde(default)]
    shuffle: Option<ShuffleFile>,
    /// The first N clusters (in batch order) form batch 0, which converges and soaks alone.
    #[serde(default)]
    canary: Option<i64>,
    /// The least time between one batch converging and the next batch merging, e.g. `30m`.
    #[serde(default)]
    batch_delay: Option<String>,
    /// Change freezes (deny windows) for this wave: nothing merges inside one.
    #[serde(default)]
    freeze: Vec<FreezeFile>,
    /// What a failed wave (more failures than maxFailures) does: `halt` the plan (default),
    /// `continue` (the same: failed clusters are left out while within maxFailures, which must
    /// not be 0), or `rollback`: open and merge the rollback PR for what is reversible, then halt.
    #[serde(default)]
    failure_policy: Option<String>,
    /// A cluster that took a merged step and cannot be observed (no context, API server not
    /// answering, no Flux Kustomization): `wait` (default) or `skip` it after
    /// `unreachableAfter`.
    #[serde(default)]
    on_unreachable: Option<String>,
    /// How long a cluster must stay unreachable before `onUnreachable: skip` skips it.
    #[serde(default)]
    unreachable_after: Option<String>,
}

/// What a wave does with a cluster it cannot observe after a merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OnUnreachable {
    /// Keep waiting (progressDeadline still applies): what fleetwave always did.
    #[default]
    Wait,
    /// Skip the cluster once it has been unreachable this long without a break.
    Skip(#[serde(with = "humantime_serde_secs")] Duration),
}

/// The label naming a cluster's maintenance window (an entry of `spec.maintenanceWindows`).
pub const MAINTENANCE_WINDOW_LABEL: &str = "fleetwave.io/maintenance-window";

/// A per-cluster maintenance window (`spec.maintenanceWindows[]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    pub name: Option<String>,
    pub selector: Option<Selector>,
    pub clusters: Vec<String>,
    pub window: Window,
}

impl MaintenanceWindow {
    /// Whether this entry is the window of `cluster` with `labels`.
    pub fn applies(&self, cluster: &str, labels: &BTreeMap<String, String>) -> bool {
        self.clusters.iter().any(|c| c == cluster)
            || self.selector.as_ref().is_some_and(|s| s.matches(labels))
            || self.name.is_some() && labels.get(MAINTENANCE_WINDOW_LABEL) == self.name.as_ref()
    }

    /// How messages name it: `window weekend-night`, or `maintenanceWindows[2]`.
    pub fn label(&self, i: usize) -> String {
        match &self.name {
            Some(n) => format!("window {n}"),
            None => format!("maintenanceWindows[{i}]"),
        }
    }
}

/// What a wave does when it fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FailurePolicy {
    /// Halt the plan (what fleetwave always did).
    #[default]
    Halt,
    /// Mark failed clusters and go on while within `maxFailures`, then halt: what `Halt` does
    /// too, spelled for a wave that has a failure budget.
    Continue,
    /// Open and merge the rollback pull request for the reversible part, then halt.
    Rollback,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ShuffleFile {
    seed: u64,
}

/// A change freeze as written: `start`/`end` are `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM` or
/// `YYYY-MM-DD HH:MM`, local to `timeZone` (default UTC).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct FreezeFile {
    pub(crate) start: String,
    pub(crate) end: String,
    #[serde(default)]
    pub(crate) time_zone: Option<String>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ValidationFile {
    #[serde(default)]
    health_check_duration: Option<String>,
    #[serde(default)]
    automated: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum CountOrText {
    Count(i64),
    Text(String),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WindowFile {
    #[serde(default)]
    days: Vec<String>,
    start: String,
    end: String,
    #[serde(default)]
    time_zone: Option<String>,
}

/// A label selector, as in Kubernetes.
#[derive(
    Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let got = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => got.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => got.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => got.is_some(),
                    "DoesNotExist" => got.is_none(),
                    _ => false,
                }
            })
    }

    /// Label values this selector asks for, per key (for reporting unknown values).
    pub fn wanted_values(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (k, v) in &self.match_labels {
            out.entry(k).or_default().insert(v);
        }
        for r in self.match_expressions.iter().filter(|r| r.operator == "In") {
            out.entry(&r.key)
                .or_default()
                .extend(r.values.iter().map(String::as_str));
        }
        out
    }
}

/// A file in the fleet repository listing the Kubernetes versions a managed provider offers
/// (the JSON of `aws eks describe-cluster-versions`, of `az aks get-versions`, or
/// `versions: [...]`), and the clusters it applies to.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderVersions {
    pub file: String,
    pub cluster_selector: Selector,
}

/// A health gate checked through a wave's soak (evaluated by the rollout engine).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Gate {
    Nodes {},
    /// Hold a step that raises a control plane's minor while its API server still serves
    /// requests for APIs that minor no longer serves (`apiserver_requested_deprecated_apis`).
    DeprecatedApis {},
    #[serde(rename_all = "camelCase")]
    PodRestarts {
        threshold: u32,
    },
    #[serde(rename_all = "camelCase")]
    Prometheus {
        url: String,
        #[serde(default)]
        alerts: BTreeMap<String, String>,
        #[serde(default)]
        query: Option<String>,
        #[serde(default)]
        threshold: Option<f64>,
    },
    #[serde(rename_all = "camelCase")]
    Http {
        url: String,
        #[serde(default)]
        expect_status: Option<u16>,
        #[serde(default)]
        json_field: Option<String>,
        #[serde(default)]
        equals: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Approval {
        #[serde(default)]
        users: Vec<String>,
        #[serde(default)]
        teams: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MaxFailures {
    Count(u32),
    Percent(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub days: Vec<String>,
    /// Minutes after midnight.
    pub start: u32,
    pub end: u32,
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GitopsBase {
    pub url: String,
    pub tag: String,
    /// The Kubernetes versions the tag supports, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<String>,
    #[serde(skip)]
    pub kubernetes_req: Option<semver::VersionReq>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    pub name: String,
    pub selector: Selector,
    #[serde(with = "humantime_serde_secs")]
    pub soak: Duration,
    pub automated: bool,
    pub max_failures: MaxFailures,
    #[serde(skip)]
    pub progress_deadline: Option<Duration>,
    pub window: Option<Window>,
    pub gates: Vec<Gate>,
    /// Worker and whole-cluster steps merge despite PodDisruptionBudgets that allow no
    /// disruption (`allowDrainBlockers`, the wave's else the plan's).
    pub allow_drain_blockers: bool,
    /// How the wave's clusters are split into batches (none: one batch, today's steps).
    #[serde(skip_serializing_if = "Batching::is_single")]
    pub batching: Batching,
    /// `batchDelay`: the least time between a batch converging and the next one merging.
    #[serde(skip)]
    pub batch_delay: Duration,
    /// The wave's own freezes (the plan's and the repository's are kept apart).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub freezes: Vec<Freeze>,
    /// `failurePolicy`.
    pub failure_policy: FailurePolicy,
    /// `onUnreachable` with `unreachableAfter`.
    pub on_unreachable: OnUnreachable,
}

/// How many clusters a batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Concurrency {
    Count(u32),
    Percent(u32),
}

/// `maxConcurrency`, `order`, `shuffle` and `canary` of a wave.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Batching {
    pub max_concurrency: Option<Concurrency>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shuffle: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<u32>,
}

impl Batching {
    /// No batches: the wave is one batch, with today's branch names.
    pub fn is_single(&self) -> bool {
        self.max_concurrency.is_none() && self.canary.is_none()
    }
}

pub use crate::core::calendar::Freeze;

mod humantime_serde_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// A validated plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub target: Option<KubeVersion>,
    /// Intermediate versions then the target, ascending: one hop each.
    pub hops: Vec<KubeVersion>,
    pub gitops_base: Option<GitopsBase>,
    pub templates: BTreeMap<String, String>,
    pub waves: Vec<Wave>,
    pub paused: bool,
    pub overrides: Vec<VersionOverride>,
    /// `spec.versionCatalog`: a release catalog file in the fleet repository.
    pub version_catalog: Option<String>,
    /// `spec.providerVersions`: what managed providers offer the clusters they host.
    pub provider_versions: Vec<ProviderVersions>,
    /// `spec.efficientUpgrades`: let replaced workers skip intermediate minors.
    pub efficient_upgrades: bool,
    /// The plan lists `intermediateVersions` (else hops may be computed from the catalog).
    pub hops_listed: bool,
    /// `spec.after`: plans that must be complete before this one starts.
    pub after: Vec<String>,
    /// `spec.freeze`: freezes for every wave (the repository's freeze file is read by the
    /// planner into `repo_freezes`).
    pub freezes: Vec<Freeze>,
    /// `.fleetwave/freeze.yaml` of the fleet repository, when the planner read one.
    pub repo_freezes: Vec<Freeze>,
    /// `spec.maintenanceWindows`: per-cluster windows (the planner resolves which cluster
    /// takes which).
    pub maintenance_windows: Vec<MaintenanceWindow>,
    /// Per wave, cluster → its maintenance window (index into `maintenance_windows`), when
    /// the planner resolved them against the fleet (empty otherwise).
    pub wave_windows: Vec<BTreeMap<String, usize>>,
}

impl Plan {
    /// The override for a field of `kind` in `cluster` at hop `h`, if the plan has one.
    pub fn override_for(
        &self,
        cluster: &str,
        kind: &str,
        h: &KubeVersion,
    ) -> Option<&VersionOverride> {
        self.overrides.iter().find(|o| {
            o.cluster == cluster
                && o.kind.as_deref().is_none_or(|k| k == kind)
                && o.version.same_as(h)
        })
    }
}

/// Read and validate a plan file. `shown` is the path used in messages.
pub fn load(shown: &Path, text: String) -> Result<(Plan, YamlSource), Diags> {
    let src = YamlSource::parse(shown, text)?;
    if src.doc.root.is_some_and(|r| {
        src.doc.entries(r).is_empty()
            && !matches!(src.doc.node(r).kind, crate::core::yaml::Kind::Map(_))
    }) {
        return Err(Diag::new(shown, src.pos(src.doc.node(src.doc.root.unwrap_or(0)).start), "a plan must be a YAML mapping (apiVersion, kind, metadata, spec)")
            .hint("start the file with `apiVersion: fleet.opencenter.cloud/v1alpha1` and `kind: FleetUpgradePlan`")
            .into());
    }
    let file: PlanFile = src.typed("plan")?;
    let plan = validate(&src, file)?;
    Ok((plan, src))
}

fn validate(src: &YamlSource, f: PlanFile) -> Result<Plan, Diags> {
    let mut errs = Vec::new();
    check_header(src, &f, &mut errs);
    let spec = f.spec;
    let (target, hops) = versions(src, &spec, &mut errs);
    let overrides = overrides(src, &spec.version_overrides, &hops, &mut errs);
    let gitops_base = spec.gitops_base.map(|g| gitops_base(src, g, &mut errs));
    check_templates(src, &spec.templates, &mut errs);
    check_after(src, &f.metadata.name, &spec.after, &mut errs);
    if target.is_none() && gitops_base.is_none() && spec.templates.is_empty() {
        errs.push(
            src.at_key(&path!["spec"], "the plan changes nothing")
                .hint("set targetVersion, gitopsBase or templates"),
        );
    }
    if spec.waves.is_empty() {
        errs.push(
            src.at(&path!["spec", "waves"], "the plan has no waves")
                .hint("add at least one wave with a clusterSelector"),
        );
    }
    let freezes =
        crate::core::calendar::freezes(src, &path!["spec", "freeze"], &spec.freeze, &mut errs);
    let maintenance_windows = maintenance_windows(src, &spec.maintenance_windows, &mut errs);
    let mut names = BTreeSet::new();
    let waves: Vec<Wave> = spec
        .waves
        .into_iter()
        .map(|w| {
            let allow = w.allow_drain_blockers;
            (w, allow)
        })
        .enumerate()
        .map(|(i, w)| {
            let mut wv = wave(src, i, w.0, &mut names, &mut errs);
            wv.allow_drain_blockers = w.1.or(spec.allow_drain_blockers).unwrap_or(false);
            wv
        })
        .collect();
    if errs.is_empty() {
        Ok(Plan {
            name: f.metadata.name,
            target,
            hops,
            gitops_base,
            templates: spec.templates,
            waves,
            paused: spec.paused,
            overrides,
            hops_listed: !spec.intermediate_versions.is_empty(),
            after: spec.after,
            version_catalog: spec.version_catalog,
            freezes,
            repo_freezes: Vec::new(),
            maintenance_windows,
            wave_windows: Vec::new(),
            provider_versions: spec.provider_versions,
            efficient_upgrades: spec.efficient_upgrades,
        })
    } else {
        Err(Diags(errs))
    }
}

/// `apiVersion`, `kind` and `metadata.name`.
fn check_header(src: &YamlSource, f: &PlanFile, errs: &mut Vec<Diag>) {
    if f.api_version != API_VERSION {
        errs.push(
            src.at(
                &path!["apiVersion"],
                format!(
                    "apiVersion is {:?}, expected {API_VERSION:?}",
                    f.api_version
                ),
            )
            .hint(format!("set `apiVersion: {API_VERSION}`")),
        );
    }
    if f.kind != KIND {
        errs.push(
            src.at(
                &path!["kind"],
                format!("kind is {:?}, expected {KIND:?}", f.kind),
            )
            .hint(format!("set `kind: {KIND}`")),
        );
    }
    let _ = (
        &f.metadata.namespace,
        &f.metadata.labels,
        &f.metadata.annotations,
    );
    if !valid_name(&f.metadata.name) {
        errs.push(src.at(&path!["metadata", "name"], format!("metadata.name {} is missing or not a valid name", echo(&f.metadata.name)))
            .hint("use lower-case letters, digits, '-' and single inner '.' (it becomes part of Git branch names; no `..`, no trailing `.` or `.lock`), e.g. `k8s-1-34-upgrade`"));
    } else if RESERVED_PLAN_NAMES.contains(&f.metadata.name.as_str()) {
        errs.push(src.at(&path!["metadata", "name"], format!("metadata.name {:?} is reserved: its branches would collide with fleetwave's own ref fleetwave/{}", f.metadata.name, f.metadata.name))
            .hint("choose another name, e.g. `k8s-1-34-upgrade`"));
    }
}

/// `targetVersion` and `intermediateVersions`: the target, and the hops ending with it.
fn versions(
    src: &YamlSource,
    spec: &SpecFile,
    errs: &mut Vec<Diag>,
) -> (Option<KubeVersion>, Vec<KubeVersion>) {
    let target = spec.target_version.as_deref().and_then(|t| {
        let v = KubeVersion::parse(t);
        match &v {
            None => errs.push(
                src.at(
                    &path!["spec", "targetVersion"],
                    format!("targetVersion {} is not a Kubernetes version", echo(t)),
                )
                .hint("write a full version like `v1.34.2` or a minor like `\"1.34\"`"),
            ),
            Some(v) if !v.suffix.is_empty() => errs.push(suffix_refused(
                src,
                &path!["spec", "targetVersion"],
                t,
                &v.suffix,
            )),
            Some(_) => {}
        }
        v
    });
    let mut hops: Vec<KubeVersion> = Vec::new();
    for (i, s) in spec.intermediate_versions.iter().enumerate() {
        let at = path!["spec", "intermediateVersions", i];
        match KubeVersion::parse(s) {
            None => errs.push(
                src.at(
                    &at,
                    format!(
                        "intermediate version {} is not a Kubernetes version",
                        echo(s)
                    ),
                )
                .hint("write versions like `v1.33.5`"),
            ),
            Some(v) if !v.suffix.is_empty() => errs.push(suffix_refused(src, &at, s, &v.suffix)),
            Some(v) => {
                if let Some(prev) = hops.last() {
                    if v.minor <= prev.minor {
                        errs.push(src.at(&at, format!("intermediate version {v} is not above the one before it ({prev})")).hint("list intermediateVersions in ascending order, one per minor"));
                    }
                }
                if let Some(t) = &target {
                    if v.minor >= t.minor {
                        errs.push(src.at(&at, format!("intermediate version {v} is not below targetVersion {t}")).hint("intermediateVersions are the minors between the current version and targetVersion"));
                    }
                }
                hops.push(v);
            }
        }
    }
    if !spec.intermediate_versions.is_empty() && spec.target_version.is_none() {
        errs.push(
            src.at_key(
                &path!["spec", "intermediateVersions"],
                "intermediateVersions without targetVersion",
            )
            .hint("add `targetVersion`"),
        );
    }
    if let Some(t) = &target {
        hops.push(t.clone());
    }
    (target, hops)
}

fn gitops_base(src: &YamlSource, g: GitopsBaseFile, errs: &mut Vec<Diag>) -> GitopsBase {
    if g.tag.trim().is_empty() {
        errs.push(
            src.at(
                &path!["spec", "gitopsBase", "tag"],
                "gitopsBase needs a tag",
            )
            .hint("set `gitopsBase.tag`, e.g. `tag: \"2026.02\"`"),
        );
    } else if !crate::core::refname::is_valid_full_name(&format!("refs/tags/{}", g.tag))
        || g.tag
            .contains(|c: char| c.is_whitespace() || c.is_control() || "\"'#".contains(c))
    {
        errs.push(
            src.at(
                &path!["spec", "gitopsBase", "tag"],
                format!(
                    "gitopsBase.tag {} is not a tag name Git accepts",
                    echo(&g.tag)
                ),
            )
            .hint("use a plain tag such as `2026.02` or `v1.4.0`"),
        );
    }
    if crate::core::repo_url::normalize_repo_url(&g.url).is_none() {
        errs.push(src.at(&path!["spec", "gitopsBase", "url"], format!("gitopsBase.url {:?} is not a repository URL", g.url))
            .hint("use the repository's https or ssh URL, e.g. `https://github.com/org/gitops-base.git`"));
    }
    let kubernetes_req = g.kubernetes.as_deref().and_then(|k| {
        let req = kubernetes_range(k);
        if req.is_none() {
            errs.push(
                src.at(
                    &path!["spec", "gitopsBase", "kubernetes"],
                    format!("gitopsBase.kubernetes {} is not a version range", echo(k)),
                )
                .hint("write comparators on minors or versions, e.g. `\">=1.32 <1.35\"`"),
            );
        }
        req
    });
    GitopsBase {
        url: g.url,
        tag: g.tag,
        kubernetes: g.kubernetes,
        kubernetes_req,
    }
}

/// A range such as `>=1.32 <1.35` or `>=1.32, <1.35` (a `v` prefix is allowed).
pub fn kubernetes_range(text: &str) -> Option<semver::VersionReq> {
    let is_op = |c: char| "<>=~^".contains(c);
    let mut parts: Vec<String> = Vec::new();
    for tok in text.split([' ', ',']).filter(|t| !t.is_empty()) {
        let version = tok.trim_start_matches(is_op);
        let op = &tok[..tok.len() - version.len()];
        let version = version.strip_prefix('v').unwrap_or(version);
        match parts.last_mut() {
            // An operator written apart from its version: `>= 1.32`.
            Some(last) if !last.is_empty() && last.chars().all(is_op) => last.push_str(version),
            _ => parts.push(format!("{op}{version}")),
        }
    }
    if parts.is_empty() {
        return None;
    }
    semver::VersionReq::parse(&parts.join(", ")).ok()
}

fn check_templates(src: &YamlSource, templates: &BTreeMap<String, String>, errs: &mut Vec<Diag>) {
    for (old, new) in templates {
        if !k8s_name(new) {
            errs.push(
                src.at(
                    &path!["spec", "templates", old.as_str()],
                    format!("template {} is not a Kubernetes object name", echo(new)),
                )
                .hint("template names are lower-case letters, digits, '-' and '.', at most 253"),
            );
        }
        if old == new || new.trim().is_empty() {
            errs.push(
                src.at(
                    &path!["spec", "templates", old.as_str()],
                    format!("template {old:?} maps to {new:?}, which changes nothing"),
                )
                .hint("map each old ClusterTemplate name to a different new one"),
            );
        }
    }
}

/// `failurePolicy`: `halt` (default), `continue` (the same within `maxFailures`, named for
/// what it does there; refused without a budget, where it would halt at the first failure)
/// or `rollback`.
fn failure_policy(
    src: &YamlSource,
    at: &[crate::core::yaml::Seg],
    v: Option<&str>,
    budget: &MaxFailures,
    errs: &mut Vec<Diag>,
) -> FailurePolicy {
    match v {
        None | Some("halt") => FailurePolicy::Halt,
        Some("rollback") => FailurePolicy::Rollback,
        Some("continue") => {
            if matches!(budget, MaxFailures::Count(0) | MaxFailures::Percent(0)) {
                errs.push(
                    src.at(at, "failurePolicy continue with maxFailures 0 halts at the first failure")
                        .hint("set maxFailures (a count or a percentage such as \"10%\") to the failures the wave may go on with"),
                );
            }
            FailurePolicy::Continue
        }
        Some(other) => {
            errs.push(
                src.at(at, format!("failurePolicy {} is not a policy", echo(other)))
                    .hint("use `halt`, `continue` or `rollback`"),
            );
            FailurePolicy::Halt
        }
    }
}

/// One wave; `names` holds the wave names seen so far.
fn wave(
    src: &YamlSource,
    i: usize,
    w: WaveFile,
    names: &mut BTreeSet<String>,
    errs: &mut Vec<Diag>,
) -> Wave {
    let at = |k: &str| path!["spec", "waves", i, k];
    if !valid_name(&w.name) {
        errs.push(
            src.at(
                &at("name"),
                format!("wave name {:?} is missing or not a valid name", w.name),
            )
            .hint("use lower-case letters, digits and '-'"),
        );
    } else if !names.insert(w.name.clone()) {
        errs.push(
            src.at(&at("name"), format!("wave name {:?} is used twice", w.name))
                .hint("give every wave its own name"),
        );
    }
    check_selector(src, i, &w.cluster_selector, errs);
    let soak = match &w.validation.health_check_duration {
        None => Duration::ZERO,
        Some(d) => duration(
            src,
            &path!["spec", "waves", i, "validation", "healthCheckDuration"],
            d,
            errs,
        ),
    };
    let progress_deadline = w
        .progress_deadline
        .as_ref()
        .map(|d| duration(src, &at("progressDeadline"), d, errs));
    let max_failures = max_failures(src, i, w.max_failures.as_ref(), errs);
    let window = w
        .window
        .as_ref()
        .map(|win| window(src, &at("window"), win, errs));
    for (j, g) in w.gates.iter().enumerate() {
        check_gate(src, &path!["spec", "waves", i, "gates", j], g, errs);
    }
    let batching = batching(src, i, &w, errs);
    let batch_delay = match &w.batch_delay {
        None => Duration::ZERO,
        Some(d) => duration(src, &at("batchDelay"), d, errs),
    };
    if w.batch_delay.is_some() && batching.is_single() {
        errs.push(
            src.at(
                &at("batchDelay"),
                "batchDelay needs batches: the wave has one batch",
            )
            .hint("set maxConcurrency (or canary) on this wave, or remove batchDelay"),
        );
    }
    let failure_policy = failure_policy(
        src,
        &at("failurePolicy"),
        w.failure_policy.as_deref(),
        &max_failures,
        errs,
    );
    let mut freezes = crate::core::calendar::freezes(src, &at("freeze"), &w.freeze, errs);
    for f in &mut freezes {
        f.source = format!("wave {}", w.name);
    }
    let on_unreachable = on_unreachable(src, i, &w, errs);
    Wave {
        name: w.name,
        selector: w.cluster_selector,
        soak,
        automated: w.validation.automated,
        max_failures,
        progress_deadline,
        window,
        gates: w.gates,
        allow_drain_blockers: false,
        batching,
        batch_delay,
        freezes,
        failure_policy,
        on_unreachable,
    }
}

/// `onUnreachable` and `unreachableAfter`: skip needs the duration, and the duration means
/// nothing without skip (no default: how long a cluster may be dark is the user's call).
fn on_unreachable(src: &YamlSource, i: usize, w: &WaveFile, errs: &mut Vec<Diag>) -> OnUnreachable {
    let at = |k: &str| path!["spec", "waves", i, k];
    let after = w
        .unreachable_after
        .as_ref()
        .map(|d| duration(src, &at("unreachableAfter"), d, errs));
    if let Some(t) = &w.unreachable_after
        && humantime::parse_duration(t).is_ok_and(|d| d.is_zero())
    {
        errs.push(
            src.at(&at("unreachableAfter"), "unreachableAfter is zero")
                .hint("give a cluster time to answer again, e.g. `unreachableAfter: 30m`"),
        );
    }
    match (w.on_unreachable.as_deref(), after) {
        (None | Some("wait"), None) => OnUnreachable::Wait,
        (None | Some("wait"), Some(_)) => {
            errs.push(
                src.at(&at("unreachableAfter"), "unreachableAfter without `onUnreachable: skip`")
                    .hint("add `onUnreachable: skip`, or remove unreachableAfter (unreachable clusters are then waited for)"),
            );
            OnUnreachable::Wait
        }
        (Some("skip"), Some(d)) => OnUnreachable::Skip(d),
        (Some("skip"), None) => {
            errs.push(
                src.at(&at("onUnreachable"), "onUnreachable: skip needs unreachableAfter")
                    .hint("say how long a cluster may stay unreachable before it is skipped, e.g. `unreachableAfter: 30m`"),
            );
            OnUnreachable::Wait
        }
        (Some(other), _) => {
            errs.push(
                src.at(
                    &at("onUnreachable"),
                    format!("onUnreachable {} is not a policy", echo(other)),
                )
                .hint("use `wait` (the default) or `skip`"),
            );
            OnUnreachable::Wait
        }
    }
}

/// `spec.maintenanceWindows`: each has a valid window and says which clusters it is for.
fn maintenance_windows(
    src: &YamlSource,
    files: &[MaintenanceWindowFile],
    errs: &mut Vec<Diag>,
) -> Vec<MaintenanceWindow> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (j, m) in files.iter().enumerate() {
        let at = |k: &str| path!["spec", "maintenanceWindows", j, k];
        if let Some(n) = &m.name {
            if !label_value(n) {
                errs.push(
                    src.at(&at("name"), format!("maintenance window name {} is not a label value", echo(n)))
                        .hint(format!("clusters name it in their `{MAINTENANCE_WINDOW_LABEL}` label: use letters, digits, '-', '_' and '.', at most 63, e.g. `weekend-night`")),
                );
            } else if !names.insert(n.clone()) {
                errs.push(
                    src.at(
                        &at("name"),
                        format!("maintenance window name {n:?} is used twice"),
                    )
                    .hint("give every maintenance window its own name"),
                );
            }
        }
        if m.name.is_none() && m.cluster_selector.is_none() && m.clusters.is_empty() {
            errs.push(
                src.at_key(&path!["spec", "maintenanceWindows", j], "this maintenance window is for no cluster")
                    .hint(format!("add `clusters: [...]`, a `clusterSelector`, or a `name` that clusters carry in their `{MAINTENANCE_WINDOW_LABEL}` label")),
            );
        }
        if let Some(sel) = &m.cluster_selector {
            check_selector_at(src, &at("clusterSelector"), sel, errs);
        }
        for (k, c) in m.clusters.iter().enumerate() {
            if c.trim().is_empty() {
                errs.push(
                    src.at(
                        &path!["spec", "maintenanceWindows", j, "clusters", k],
                        "an empty cluster name",
                    )
                    .hint("name a cluster of the fleet"),
                );
            }
        }
        out.push(MaintenanceWindow {
            name: m.name.clone(),
            selector: m.cluster_selector.clone(),
            clusters: m.clusters.clone(),
            window: window(src, &at("window"), &m.window, errs),
        });
    }
    out
}

/// A Kubernetes label value: at most 63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
fn label_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `maxConcurrency`, `order`, `shuffle` and `canary`.
fn batching(src: &YamlSource, i: usize, w: &WaveFile, errs: &mut Vec<Diag>) -> Batching {
    let at = |k: &str| path!["spec", "waves", i, k];
    let hint = "write a count like `10` or a percentage like `\"25%\"` (at least one cluster)";
    let max_concurrency = match &w.max_concurrency {
        None => None,
        Some(CountOrText::Count(n)) if *n >= 1 && *n <= u32::MAX as i64 => {
            Some(Concurrency::Count(*n as u32))
        }
        Some(CountOrText::Text(t))
            if t.strip_suffix('%')
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| (1..=100).contains(&p)) =>
        {
            Some(Concurrency::Percent(
                t.trim_end_matches('%').parse().unwrap_or(100),
            ))
        }
        Some(other) => {
            let shown = match other {
                CountOrText::Count(n) => n.to_string(),
                CountOrText::Text(t) => echo(t),
            };
            errs.push(
                src.at(
                    &at("maxConcurrency"),
                    format!("maxConcurrency {shown} is not a count from 1 or a percentage from 1% to 100%"),
                )
                .hint(hint),
            );
            None
        }
    };
    let canary = match w.canary {
        None => None,
        Some(n) if n >= 1 && n <= u32::MAX as i64 => Some(n as u32),
        Some(n) => {
            errs.push(
                src.at(&at("canary"), format!("canary {n} is not a count from 1"))
                    .hint("write how many clusters form batch 0, e.g. `canary: 1`"),
            );
            None
        }
    };
    for (j, k) in w.order.iter().enumerate() {
        if k.trim().is_empty() {
            errs.push(
                src.at(&path!["spec", "waves", i, "order", j], "an empty label key")
                    .hint("name a label key, e.g. `order: [region]`"),
            );
        }
    }
    if !w.order.is_empty() && w.shuffle.is_some() {
        errs.push(
            src.at_key(&at("shuffle"), "order and shuffle both set the batch order")
                .hint("keep one of them"),
        );
    }
    let b = Batching {
        max_concurrency,
        order: w.order.clone(),
        shuffle: w.shuffle.as_ref().map(|s| s.seed),
        canary,
    };
    let errored = w.max_concurrency.is_some() && max_concurrency.is_none()
        || w.canary.is_some() && canary.is_none();
    if b.is_single() && !errored && (!w.order.is_empty() || w.shuffle.is_some()) {
        let k = if w.order.is_empty() {
            "shuffle"
        } else {
            "order"
        };
        errs.push(
            src.at_key(
                &at(k),
                format!("{k} orders batches, but the wave has one batch"),
            )
            .hint("set maxConcurrency (or canary) on this wave, or remove it"),
        );
    }
    b
}

/// A wave's `clusterSelector`: known operators with the values they need, and not empty.
fn check_selector(src: &YamlSource, i: usize, sel: &Selector, errs: &mut Vec<Diag>) {
    check_selector_at(
        src,
        &path!["spec", "waves", i, "clusterSelector"],
        sel,
        errs,
    );
}

/// The `clusterSelector` at `base`.
fn check_selector_at(
    src: &YamlSource,
    base: &[crate::core::yaml::Seg],
    sel: &Selector,
    errs: &mut Vec<Diag>,
) {
    let under = |tail: crate::core::yaml::Seg, j: usize, k: &str| {
        let mut p = base.to_vec();
        p.push(tail);
        p.push(crate::core::yaml::Seg::Index(j));
        p.push(k.into());
        p
    };
    for (j, r) in sel.match_expressions.iter().enumerate() {
        let rp = under("matchExpressions".into(), j, "operator");
        let vp = under("matchExpressions".into(), j, "values");
        let vp = if src.doc.at(&vp).is_some() {
            vp
        } else {
            rp.clone()
        };
        match r.operator.as_str() {
            "In" | "NotIn" if r.values.is_empty() => errs.push(
                src.at(
                    &vp,
                    format!("operator {} needs at least one value", r.operator),
                )
                .hint("add `values: [...]`"),
            ),
            "Exists" | "DoesNotExist" if !r.values.is_empty() => errs.push(
                src.at(&vp, format!("operator {} takes no values", r.operator))
                    .hint("remove `values`"),
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(
                src.at(&rp, format!("unknown selector operator {other:?}"))
                    .hint("use In, NotIn, Exists or DoesNotExist"),
            ),
        }
    }
    if sel.match_labels.is_empty() && sel.match_expressions.is_empty() {
        errs.push(
            src.at_key(base, "an empty clusterSelector would select every cluster")
                .hint("add matchLabels or matchExpressions"),
        );
    }
}

fn max_failures(
    src: &YamlSource,
    i: usize,
    max: Option<&CountOrText>,
    errs: &mut Vec<Diag>,
) -> MaxFailures {
    let at = |k: &str| path!["spec", "waves", i, k];
    match max {
        None => MaxFailures::Count(0),
        Some(CountOrText::Count(n)) if *n >= 0 => MaxFailures::Count(*n as u32),
        Some(CountOrText::Text(t)) if t.ends_with('%') => {
            match t.trim_end_matches('%').parse::<u32>() {
                Ok(p) if p <= 100 => MaxFailures::Percent(p),
                _ => {
                    errs.push(
                        src.at(
                            &at("maxFailures"),
                            format!("maxFailures {t:?} is not a percentage from 0% to 100%"),
                        )
                        .hint("write a count like `1` or a percentage like `\"10%\"`"),
                    );
                    MaxFailures::Count(0)
                }
            }
        }
        Some(other) => {
            let shown = match other {
                CountOrText::Count(n) => n.to_string(),
                CountOrText::Text(t) => format!("{t:?}"),
            };
            errs.push(
                src.at(
                    &at("maxFailures"),
                    format!("maxFailures {shown} is not a count or a percentage"),
                )
                .hint("write a count like `1` or a percentage like `\"10%\"`"),
            );
            MaxFailures::Count(0)
        }
    }
}

/// The window at `base` (a wave's `window`, or a maintenance window's).
fn window(
    src: &YamlSource,
    base: &[crate::core::yaml::Seg],
    win: &WindowFile,
    errs: &mut Vec<Diag>,
) -> Window {
    let field = |k: &str| {
        let mut p = base.to_vec();
        p.push(k.into());
        p
    };
    let mut minutes = |k: &str, s: &str| {
        parse_clock(s).unwrap_or_else(|| {
            errs.push(
                src.at(&field(k), format!("{s:?} is not a time of day"))
                    .hint("write times as HH:MM, 00:00 to 24:00"),
            );
            0
        })
    };
    let (start, end) = (minutes("start", &win.start), minutes("end", &win.end));
    for (j, d) in win.days.iter().enumerate() {
        if !["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&d.as_str()) {
            errs.push(
                src.at(
                    &{
                        let mut p = field("days");
                        p.push(crate::core::yaml::Seg::Index(j));
                        p
                    },
                    format!("{d:?} is not a day"),
                )
                .hint("use Mon, Tue, Wed, Thu, Fri, Sat, Sun"),
            );
        }
    }
    if let Some(z) = &win.time_zone {
        if z.parse::<chrono_tz::Tz>().is_err() {
            errs.push(
                src.at(&field("timeZone"), format!("{z:?} is not a time zone"))
                    .hint("use an IANA name such as Europe/Berlin or UTC"),
            );
        }
    }
    if end <= start {
        errs.push(
            src.at(&field("end"), "the window ends before it starts")
                .hint("windows are within one day: end must be later than start"),
        );
    }
    Window {
        days: win.days.clone(),
        start,
        end,
        time_zone: win.time_zone.clone(),
    }
}

/// Validate `versionOverrides`: each names a cluster and a version the plan goes to.
fn overrides(
    src: &YamlSource,
    files: &[OverrideFile],
    hops: &[KubeVersion],
    errs: &mut Vec<Diag>,
) -> Vec<VersionOverride> {
    let mut out = Vec::new();
    for (i, o) in files.iter().enumerate() {
        let at = |k: &str| path!["spec", "versionOverrides", i, k];
        if o.cluster.trim().is_empty() {
            errs.push(
                src.at_key(
                    &path!["spec", "versionOverrides", i],
                    "a version override needs a cluster",
                )
                .hint("name the cluster, e.g. `cluster: prod-gke-01`"),
            );
        }
        if o.kind.as_deref().is_some_and(|k| k.trim().is_empty()) {
            errs.push(src.at(&at("kind"), "kind is empty").hint("name the kind whose fields the override is for, e.g. `kind: Cluster`, or drop `kind`"));
        }
        let Some(v) = KubeVersion::parse(&o.version) else {
            errs.push(
                src.at(
                    &at("version"),
                    format!("version {:?} is not a Kubernetes version", o.version),
                )
                .hint("write the exact value to put in the file, e.g. `1.24.5-gke.100`"),
            );
            continue;
        };
        if !hops
            .iter()
            .any(|h| v.same_as(h) && (h.is_minor_only() || v.patch == h.patch))
        {
            let names: Vec<String> = hops.iter().map(|h| h.to_string()).collect();
            errs.push(src.at(&at("version"), format!("version override {} is not a version the plan goes to ({})", o.version, names.join(", ")))
                .hint("an override replaces the derived value of one of targetVersion/intermediateVersions: give it the same major.minor.patch"));
            continue;
        }
        out.push(VersionOverride {
            cluster: o.cluster.clone(),
            kind: o.kind.clone(),
            version: v,
            text: o.version.clone(),
        });
    }
    out
}

/// A target with a build suffix (`+evil.1`, `-gke.100`): each field keeps its own distribution
/// suffix (`+k0s.0`), so the plan's would be silently dropped. Refused instead. Pre-releases
/// (`-rc.1`) are versions of their own and allowed.
fn suffix_refused(
    src: &YamlSource,
    at: &[crate::core::yaml::Seg],
    value: &str,
    suffix: &str,
) -> Diag {
    src.at(
        at,
        format!(
            "{} carries the build suffix {}, which fleetwave would not write",
            echo(value),
            echo(suffix)
        ),
    )
    .hint("write the plain version, e.g. `v1.33.5`: each field keeps its own suffix such as `+k0s.0`; put provider builds such as -gke.N in `versionOverrides`")
}

fn k8s_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Gate URLs and statuses are checked now, not when the gate first runs mid-rollout.
fn check_gate(src: &YamlSource, at: &[crate::core::yaml::Seg], g: &Gate, errs: &mut Vec<Diag>) {
    let url = match g {
        Gate::Prometheus { url, .. } | Gate::Http { url, .. } => url,
        _ => return,
    };
    let mut field = at.to_vec();
    field.push("url".into());
    let parsed = url::Url::parse(&url.replace("{cluster}", "cluster"));
    if !parsed.is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()) {
        errs.push(
            src.at(&field, format!("gate url {} is not an http(s) URL", echo(url)))
                .hint("write e.g. `http://prometheus.monitoring:9090` (`{cluster}` may stand for the cluster name)"),
        );
    }
    if let Gate::Http {
        expect_status: Some(code),
        ..
    } = g
    {
        if !(100..=599).contains(code) {
            let mut field = at.to_vec();
            field.push("expectStatus".into());
            errs.push(
                src.at(&field, format!("expectStatus {code} is not an HTTP status"))
                    .hint("use a status from 100 to 599, e.g. 200"),
            );
        }
    }
}

fn duration(
    src: &YamlSource,
    at: &[crate::core::yaml::Seg],
    s: &str,
    errs: &mut Vec<Diag>,
) -> Duration {
    humantime::parse_duration(s).unwrap_or_else(|e| {
        errs.push(
            src.at(at, format!("{s:?} is not a duration ({e})"))
                .hint("write durations like `30m`, `1h`, `24h` or `2d`"),
        );
        Duration::ZERO
    })
}

fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && (h < 24 || m == 0) && s.len() == 5).then_some(h * 60 + m)
}

/// Names become parts of branch names (`fleetwave/<plan>/<wave>/<n>-<step>`): DNS-label
/// characters, and nothing Git refuses in a ref (`..`, a trailing `.`, `.lock`).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with('.')
        && !s.ends_with(".lock")
        && !s.contains("..")
        && crate::core::refname::is_valid_full_name(&format!("refs/heads/fleetwave/{s}/x"))
}

/// `spec.after`: each entry a valid plan name, not the plan itself, listed once.
fn check_after(src: &YamlSource, own: &str, after: &[String], errs: &mut Vec<Diag>) {
    let mut seen = BTreeSet::new();
    for (i, name) in after.iter().enumerate() {
        let at = path!["spec", "after", i];
        if !valid_name(name) {
            errs.push(
                src.at(
                    &at,
                    format!("after names {}, which is not a plan name", echo(name)),
                )
                .hint("list other plans by their metadata.name, e.g. `after: [k8s-1-33]`"),
            );
        } else if name == own {
            errs.push(
                src.at(&at, format!("the plan {own:?} cannot come after itself"))
                    .hint("remove it from spec.after"),
            );
        } else if !seen.insert(name.as_str()) {
            errs.push(
                src.at(&at, format!("after lists {name:?} twice"))
                    .hint("list each plan once"),
            );
        }
    }
}

/// Plan names whose branches would collide with fleetwave's own refs (`fleetwave/state`).
const RESERVED_PLAN_NAMES: &[&str] = &["state"];

/// The JSON Schema of the plan file, derived from the types above (committed as
/// `schema/fleetupgradeplan.schema.json`; `cargo run --example plan_schema` prints it).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(PlanFile)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> Result<Plan, Diags> {
        load(Path::new("plan.yaml"), s.to_string()).map(|(p, _)| p)
    }

    const OK: &str = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata:\n  name: k8s-1-34-upgrade\nspec:\n  targetVersion: \"1.34\"\n  waves:\n  - name: canary\n    clusterSelector:\n      matchLabels:\n        upgrade-wave: canary\n    validation:\n      healthCheckDuration: 1h\n      automated: true # gate\n";

    #[test]
    fn accepts_the_seed_schema() {
        let p = load_str(OK).unwrap();
        assert_eq!(p.name, "k8s-1-34-upgrade");
        assert_eq!(p.hops.len(), 1);
        assert!(p.hops[0].is_minor_only());
        assert_eq!(p.waves[0].soak, Duration::from_secs(3600));
        assert!(p.waves[0].automated);
    }

    #[test]
    fn unknown_fields_are_located() {
        let e = load_str(&OK.replace("      automated: true", "      automatd: true")).unwrap_err();
        let d = &e.0[0];
        assert_eq!((d.line, d.column), (14, 7), "{d}");
        assert!(d.message.contains("unknown field `automatd`"), "{d}");
    }

    #[test]
    fn semantic_errors_point_at_the_value() {
        let e = load_str(&OK.replace("1h", "1 fortnight")).unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].column), (13, 28), "{}", e.0[0]);
        let e = load_str(&OK.replace("\"1.34\"", "banana")).unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].column), (6, 18));
    }

    #[test]
    fn batch_fields_are_validated_at_their_place() {
        let with =
            |extra: &str| OK.replace("    validation:\n", &format!("{extra}    validation:\n"));
        let p = load_str(&with("    maxConcurrency: \"25%\"\n    canary: 1\n    order: [region]\n    batchDelay: 30m\n")).unwrap();
        let b = &p.waves[0].batching;
        assert_eq!(b.max_concurrency, Some(Concurrency::Percent(25)));
        assert_eq!((b.canary, b.order.len()), (Some(1), 1));
        assert_eq!(p.waves[0].batch_delay, Duration::from_secs(1800));
        for (extra, line, col, says) in [
            ("    maxConcurrency: 0\n", 12, 21, "maxConcurrency 0"),
            (
                "    maxConcurrency: \"150%\"\n",
                12,
                21,
                "maxConcurrency \"150%\"",
            ),
            (
                "    maxConcurrency: 2\n    canary: -1\n",
                13,
                13,
                "canary -1",
            ),
            (
                "    maxConcurrency: 2\n    batchDelay: soon\n",
                13,
                17,
                "not a duration",
            ),
            ("    batchDelay: 1h\n", 12, 17, "batchDelay needs batches"),
            ("    order: [region]\n", 12, 5, "order orders batches"),
            (
                "    maxConcurrency: 2\n    order: [a]\n    shuffle: {seed: 1}\n",
                14,
                5,
                "order and shuffle",
            ),
        ] {
            let e = load_str(&with(extra)).unwrap_err();
            let d = &e.0[0];
            assert_eq!((d.line, d.column), (line, col), "{extra}: {d}");
            assert!(d.message.contains(says), "{extra}: {d}");
        }
    }

    #[test]
    fn on_unreachable_is_validated_at_its_place() {
        let with =
            |extra: &str| OK.replace("    validation:\n", &format!("{extra}    validation:\n"));
        let p = load_str(&with(
            "    onUnreachable: skip\n    unreachableAfter: 30m\n",
        ))
        .unwrap();
        assert_eq!(
            p.waves[0].on_unreachable,
            OnUnreachable::Skip(Duration::from_secs(1800))
        );
        assert_eq!(
            load_str(OK).unwrap().waves[0].on_unreachable,
            OnUnreachable::Wait
        );
        let wait = load_str(&with("    onUnreachable: wait\n")).unwrap();
        assert_eq!(wait.waves[0].on_unreachable, OnUnreachable::Wait);
        for (extra, line, col, says) in [
            (
                "    onUnreachable: skip\n",
                12,
                20,
                "needs unreachableAfter",
            ),
            (
                "    unreachableAfter: 30m\n",
                12,
                23,
                "without `onUnreachable: skip`",
            ),
            (
                "    onUnreachable: wait\n    unreachableAfter: 1h\n",
                13,
                23,
                "without `onUnreachable: skip`",
            ),
            ("    onUnreachable: drop\n", 12, 20, "not a policy"),
            (
                "    onUnreachable: skip\n    unreachableAfter: soon\n",
                13,
                23,
                "not a duration",
            ),
            (
                "    onUnreachable: skip\n    unreachableAfter: 0s\n",
                13,
                23,
                "is zero",
            ),
        ] {
            let e = load_str(&with(extra)).unwrap_err();
            let d = &e.0[0];
            assert_eq!((d.line, d.column), (line, col), "{extra}: {d}");
            assert!(d.message.contains(says), "{extra}: {d}");
            assert!(d.hint.is_some(), "{extra}: {d}");
        }
    }

    #[test]
    fn maintenance_windows_are_validated_at_their_place() {
        let with = |extra: &str| format!("{OK}  maintenanceWindows:\n{extra}");
        let p = load_str(&with("  - name: weekend-night\n    window: {days: [Sat, Sun], start: \"01:00\", end: \"05:00\", timeZone: Europe/Berlin}\n  - clusters: [a]\n    window: {start: \"22:00\", end: \"23:00\"}\n")).unwrap();
        let m = &p.maintenance_windows;
        assert_eq!(
            (m.len(), m[0].window.start, m[1].window.end),
            (2, 60, 23 * 60)
        );
        let labels = BTreeMap::from([(
            MAINTENANCE_WINDOW_LABEL.to_string(),
            "weekend-night".to_string(),
        )]);
        assert!(m[0].applies("x", &labels) && !m[0].applies("a", &BTreeMap::new()));
        assert!(m[1].applies("a", &BTreeMap::new()) && !m[1].applies("x", &labels));
        for (extra, line, col, says) in [
            (
                "  - name: n\n    window: {start: \"25:00\", end: \"05:00\"}\n",
                17,
                21,
                "not a time of day",
            ),
            (
                "  - name: n\n    window: {start: \"05:00\", end: \"04:00\"}\n",
                17,
                35,
                "ends before it starts",
            ),
            (
                "  - name: n\n    window: {days: [Someday], start: \"01:00\", end: \"02:00\"}\n",
                17,
                21,
                "not a day",
            ),
            (
                "  - name: n\n    window: {start: \"01:00\", end: \"02:00\", timeZone: Mars/Base}\n",
                17,
                54,
                "not a time zone",
            ),
            (
                "  - window: {start: \"01:00\", end: \"02:00\"}\n",
                16,
                5,
                "for no cluster",
            ),
            (
                "  - name: \"bad name!\"\n    window: {start: \"01:00\", end: \"02:00\"}\n",
                16,
                11,
                "not a label value",
            ),
            (
                "  - clusterSelector: {}\n    window: {start: \"01:00\", end: \"02:00\"}\n",
                16,
                5,
                "empty clusterSelector",
            ),
        ] {
            let e = load_str(&with(extra)).unwrap_err();
            let d = &e.0[0];
            assert_eq!((d.line, d.column), (line, col), "{extra}: {d}");
            assert!(d.message.contains(says), "{extra}: {d}");
        }
    }

    #[test]
    fn failure_policy_is_validated() {
        let with = |v: &str| {
            OK.replace(
                "    validation:\n",
                &format!("    failurePolicy: {v}\n    validation:\n"),
            )
        };
        assert_eq!(
            load_str(&with("rollback")).unwrap().waves[0].failure_policy,
            FailurePolicy::Rollback
        );
        assert_eq!(
            load_str(OK).unwrap().waves[0].failure_policy,
            FailurePolicy::Halt
        );
        let e = load_str(&with("explode")).unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].column), (12, 20), "{}", e.0[0]);
        let e = load_str(&with("continue")).unwrap_err();
        assert!(
            e.0[0].message.contains("continue with maxFailures 0"),
            "{}",
            e.0[0]
        );
        let budget = with("continue").replace(
            "    failurePolicy: continue\n",
            "    failurePolicy: continue\n    maxFailures: \"10%\"\n",
        );
        assert_eq!(
            load_str(&budget).unwrap().waves[0].failure_policy,
            FailurePolicy::Continue
        );
    }

    #[test]
    fn freezes_are_validated_at_their_place() {
        let plan = OK.replace(
            "  waves:\n",
            "  freeze:\n  - {start: \"2026-12-20\", end: \"2027-01-04 08:00\", timeZone: Europe/Berlin, reason: year end}\n  waves:\n",
        );
        let p = load_str(&plan).unwrap();
        assert_eq!(p.freezes[0].source, "plan");
        assert_eq!(p.freezes[0].end.to_rfc3339(), "2027-01-04T07:00:00+00:00");
        let e = load_str(&plan.replace("Europe/Berlin", "Mars/Olympus")).unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].column), (8, 62), "{}", e.0[0]);
        let e = load_str(&plan.replace("2027-01-04 08:00", "2026-12-19")).unwrap_err();
        assert!(
            e.0[0].message.contains("ends before it starts"),
            "{}",
            e.0[0]
        );
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        let mut labels = BTreeMap::new();
        labels.insert("upgrade-wave".to_string(), "canary".to_string());
        let s = Selector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![Requirement {
                key: "upgrade-wave".into(),
                operator: "In".into(),
                values: vec!["canary".into()],
            }],
        };
        assert!(s.matches(&labels));
        let not = Selector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![Requirement {
                key: "tier".into(),
                operator: "DoesNotExist".into(),
                values: vec![],
            }],
        };
        assert!(not.matches(&labels));
    }
}
