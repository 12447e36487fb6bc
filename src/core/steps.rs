//! Step planning: turn a wave's located values into ordered steps (one pull request each)
//! and enforce the Kubernetes version-skew policy: one minor version per hop, control planes
//! before workers, and workers never newer than their control plane.
//!
//! The step list comes from the plan alone — per hop, control planes then workers where the
//! wave holds them separately, gitops-base and templates with the last step — so a step
//! keeps its number as earlier steps land; a step whose values are already in place is empty.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use crate::core::diag::{Finding, Severity};
use crate::core::edit::Splice;
use crate::core::fleet::Fleet;
use crate::core::locate::{Occurrence, Role, ScalarCtx, Skip, What};
use crate::core::plan::Plan;
use crate::core::version::{KubeVersion, Unrenderable, compare_tags};

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub cluster: String,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub object: String,
    pub field: String,
    pub what: What,
    pub from: String,
    pub to: String,
    #[serde(skip)]
    pub file_index: usize,
    #[serde(skip)]
    pub range: Range<usize>,
    #[serde(skip)]
    pub scalar: Option<ScalarCtx>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub index: usize,
    pub id: String,
    pub title: String,
    /// The Kubernetes hop this step makes, if it makes one.
    #[serde(skip)]
    pub kubernetes: Option<KubeHop>,
    pub changes: Vec<Change>,
}

/// One hop of the Kubernetes version, for the whole clusters or one part of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeHop {
    pub part: HopPart,
    pub version: KubeVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopPart {
    /// The whole clusters (no wave cluster holds its workers' version separately).
    Whole,
    ControlPlanes,
    Workers,
}

impl std::fmt::Display for KubeHop {
    /// `Kubernetes v1.34.2`, `control planes to v1.34.2` or `workers to v1.34.2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = &self.version;
        match self.part {
            HopPart::Whole => write!(f, "Kubernetes {v}"),
            HopPart::ControlPlanes => write!(f, "control planes to {v}"),
            HopPart::Workers => write!(f, "workers to {v}"),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WavePlan {
    pub name: String,
    pub clusters: Vec<String>,
    pub steps: Vec<Step>,
    /// The wave's batches in merge order (empty: one batch; see `core::batch`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<Vec<String>>,
    #[serde(skip)]
    pub skips: Vec<Skip>,
    #[serde(skip)]
    pub findings: Vec<Finding>,
    /// Cluster → its maintenance window (index into `plan.maintenance_windows`).
    #[serde(skip)]
    pub windows: BTreeMap<String, usize>,
}

fn hop_slug(v: &KubeVersion) -> String {
    v.canonical().replace('.', "-")
}

/// Plan the steps of one wave from its clusters' occurrences.
pub fn plan_wave(
    plan: &Plan,
    wave: usize,
    clusters: &[String],
    occ: &[Occurrence],
    fleet: &Fleet,
) -> WavePlan {
    let mut findings = Vec::new();
    let mut skips = Vec::new();
    let split = occ
        .iter()
        .any(|o| o.what == What::Kubernetes(Role::Workers));
    let mut steps = step_list(plan, split);
    let mut cx = Cx {
        plan,
        fleet,
        split,
        steps: &mut steps,
        findings: &mut findings,
        skips: &mut skips,
    };
    plan_kubernetes(&mut cx, clusters, occ);
    // gitops-base and templates go with the last step.
    let last = steps.last_mut().expect("a plan makes at least one step");
    plan_extras(plan, fleet, occ, last, &mut skips, &mut findings);
    finish(&mut steps);
    let labels = |c: &str| fleet.clusters.get(c).map(|c| c.labels.clone());
    let (windows, unnamed) = crate::core::maintenance::resolve(plan, clusters, &labels);
    findings.extend(unnamed);
    WavePlan {
        windows,
        name: plan.waves[wave].name.clone(),
        clusters: clusters.to_vec(),
        batches: crate::core::batch::partition(&plan.waves[wave].batching, clusters, &|c: &str| {
            fleet.clusters.get(c).map(|c| c.labels.clone())
        }),
        steps,
        skips,
        findings,
    }
}

/// The wave's steps, still empty: per hop, control planes then workers when `split`, else
/// one step; gitops-base and templates named in the last step's title (or a step of their
/// own when there are no hops).
fn step_list(plan: &Plan, split: bool) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let hop_step = |id: &str, part: HopPart, h: &KubeVersion| {
        let hop = KubeHop {
            part,
            version: h.clone(),
        };
        Step {
            index: 0,
            id: format!("{id}-{}", hop_slug(h)),
            title: hop.to_string(),
            kubernetes: Some(hop),
            changes: vec![],
        }
    };
    for h in &plan.hops {
        if split {
            steps.push(hop_step("control-plane", HopPart::ControlPlanes, h));
            steps.push(hop_step("workers", HopPart::Workers, h));
        } else {
            steps.push(hop_step("kubernetes", HopPart::Whole, h));
        }
    }
    let extra: Vec<&str> = [
        plan.gitops_base.as_ref().map(|_| "gitops-base"),
        (!plan.templates.is_empty()).then_some("templates"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if steps.is_empty() {
        let title = [
            plan.gitops_base
                .as_ref()
                .map(|g| format!("gitops-base {}", g.tag)),
            (!plan.templates.is_empty()).then(|| "k0rdent templates".to_string()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        steps.push(Step {
            index: 0,
            id: extra.join("-and-"),
            title,
            kubernetes: None,
            changes: vec![],
        });
    } else if let (Some(last), false) = (steps.last_mut(), extra.is_empty()) {
        if let Some(g) = &plan.gitops_base {
            last.title.push_str(&format!(", gitops-base {}", g.tag));
        }
        if !plan.templates.is_empty() {
            last.title.push_str(", k0rdent templates");
        }
    }
    steps
}

/// Kubernetes versions, cluster by cluster; a refused cluster changes nothing.
fn plan_kubernetes(cx: &mut Cx, clusters: &[String], occ: &[Occurrence]) {
    let (plan, fleet) = (cx.plan, cx.fleet);
    let mut by_cluster: BTreeMap<&str, Vec<(&Occurrence, KubeVersion)>> = BTreeMap::new();
    for o in occ {
        if let What::Kubernetes(_) = o.what {
            match KubeVersion::parse(&o.value) {
                Some(v) if plan.target.is_some() => {
                    by_cluster.entry(&o.cluster).or_default().push((o, v))
                }
                Some(_) => {}
                None => cx
                    .skips
                    .push(skip(fleet, o, "not a Kubernetes version, left as is")),
            }
        }
    }
    for c in clusters {
        if plan.target.is_some() && !by_cluster.contains_key(c.as_str()) {
            cx.findings.push(Finding::new(
                Severity::Warning,
                Some(c),
                no_field_hint(fleet, c),
            ));
        }
    }
    for (cluster, fields) in &by_cluster {
        if !plan_cluster(cx, cluster, fields) {
            // Drop this cluster's partial changes: a refused cluster changes nothing.
            for s in cx.steps.iter_mut() {
                s.changes.retain(|c| c.cluster != *cluster);
            }
        }
    }
}

/// The gitops-base and template changes, all into `last`.
fn plan_extras(
    plan: &Plan,
    fleet: &Fleet,
    occ: &[Occurrence],
    last: &mut Step,
    skips: &mut Vec<Skip>,
    findings: &mut Vec<Finding>,
) {
    let change = |o: &Occurrence, from: &str, to: String| change(fleet, o, from, to);
    let skip = |o: &Occurrence, reason: &str| skip(fleet, o, reason);
    for o in occ {
        match &o.what {
            What::GitopsBase => {
                let Some(g) = &plan.gitops_base else { continue };
                if o.value == g.tag {
                    skips.push(skip(o, "already at the target tag"));
                    continue;
                }
                if compare_tags(&g.tag, &o.value) == Some(Ordering::Less) {
                    findings.push(
                        Finding::new(
                            Severity::Warning,
                            Some(&o.cluster),
                            format!(
                                "{} {}: tag moves backwards ({} → {})",
                                o.object, o.field, o.value, g.tag
                            ),
                        )
                        .at(&fleet.files[o.file].rel, (o.line, o.column)),
                    );
                }
                last.changes.push(change(o, &o.value, g.tag.clone()));
            }
            What::Template => {
                if let Some(new) = plan.templates.get(&o.value) {
                    last.changes.push(change(o, &o.value, new.clone()));
                } else if plan.templates.values().any(|v| *v == o.value) {
                    skips.push(skip(o, "already at the target template"));
                } else {
                    skips.push(skip(
                        o,
                        "template not named in the plan's templates, left as is",
                    ));
                }
            }
            What::Kubernetes(_) => {}
        }
    }
}

/// Order each step's changes, change an anchored scalar reached from several fields once,
/// and number the steps from 1.
fn finish(steps: &mut [Step]) {
    for s in steps.iter_mut() {
        s.changes.sort_by(|a, b| {
            (&a.cluster, &a.file, a.range.start).cmp(&(&b.cluster, &b.file, b.range.start))
        });
        s.changes
            .dedup_by(|a, b| a.file_index == b.file_index && a.range == b.range && a.to == b.to);
    }
    for (i, s) in steps.iter_mut().enumerate() {
        s.index = i + 1;
    }
}

/// What the per-cluster Kubernetes planning writes into.
struct Cx<'a, 'b> {
    plan: &'a Plan,
    fleet: &'a Fleet,
    split: bool,
    steps: &'b mut Vec<Step>,
    findings: &'b mut Vec<Finding>,
    skips: &'b mut Vec<Skip>,
}

type Fields<'o> = [(&'o Occurrence, KubeVersion)];

fn change(fleet: &Fleet, o: &Occurrence, from: &str, to: String) -> Change {
    Change {
        cluster: o.cluster.clone(),
        file: fleet.files[o.file].rel.clone(),
        line: o.line,
        column: o.column,
        object: o.object.clone(),
        field: o.field.clone(),
        what: o.what.clone(),
        from: from.to_string(),
        to,
        file_index: o.file,
        range: o.range.clone(),
        scalar: o.scalar.clone(),
    }
}

fn skip(fleet: &Fleet, o: &Occurrence, reason: &str) -> Skip {
    Skip {
        cluster: o.cluster.clone(),
        file: fleet.files[o.file].rel.clone(),
        line: o.line,
        field: if o.object.is_empty() {
            o.field.clone()
        } else {
            format!("{} {}", o.object, o.field)
        },
        value: o.value.clone(),
        reason: reason.to_string(),
    }
}

fn refuse(fleet: &Fleet, o: &Occurrence, msg: String) -> Finding {
    Finding::new(
        Severity::Error,
        Some(&o.cluster),
        format!("{} {} ({}): {msg}", o.object, o.field, o.value)
            .trim_start()
            .to_string(),
    )
    .at(&fleet.files[o.file].rel, (o.line, o.column))
}

/// Why a selected cluster has no version field, worded by what the cluster is.
fn no_field_hint(fleet: &Fleet, cluster: &str) -> String {
    let k0rdent = fleet
        .clusters
        .get(cluster)
        .is_some_and(|c| c.hints.contains("ClusterDeployment"));
    if k0rdent {
        "no Kubernetes version field found for this cluster, so its version is not changed (a k0rdent ClusterDeployment takes its version from its ClusterTemplate: use `templates`)".to_string()
    } else {
        "no Kubernetes version field found for this cluster, so its version is not changed (if a file pins it, mark the value with `# {\"$fleetwave\": \"kubernetesVersion\"}` or add a locator in fleetwave.yaml)".to_string()
    }
}

/// `a` is older than `b`, at the coarser precision of the two.
fn below(a: &KubeVersion, b: &KubeVersion) -> bool {
    if b.is_minor_only() || a.is_minor_only() {
        a.minor < b.minor
    } else {
        a.cmp_precedence(b) == Ordering::Less
    }
}

/// Why a field cannot be written at a hop.
#[derive(Debug, thiserror::Error)]
enum CannotWrite {
    #[error("the plan names the minor-only version {h}, but this field holds a full version; write full versions (e.g. {h}.0 → v1.{minor}.N) in the plan", minor = .h.minor)]
    MinorOnly { h: KubeVersion },
    #[error(
        "the suffix {sfx} names one provider build of {orig} and cannot be derived for {h}; look up the provider's exact version for {h} and put it in the plan: `versionOverrides: [{{cluster: {cluster}, kind: {kind}, version: \"{version}\"}}]`"
    )]
    Suffix {
        sfx: String,
        orig: KubeVersion,
        h: KubeVersion,
        cluster: String,
        kind: String,
        /// The override to write, e.g. `1.34.2+k0s.N`.
        version: String,
    },
}

/// The text a field gets at hop `h`: the plan's override for its cluster (and kind), else
/// `h` in the field's style.
fn to_text(
    plan: &Plan,
    o: &Occurrence,
    orig: &KubeVersion,
    h: &KubeVersion,
) -> Result<String, Box<CannotWrite>> {
    let kind = o.object.split('/').next().unwrap_or("");
    if let Some(ov) = plan.override_for(&o.cluster, kind, h) {
        return Ok(ov.text.clone());
    }
    h.render_like(orig).map_err(|e| {
        Box::new(match e {
            Unrenderable::MinorOnly => CannotWrite::MinorOnly { h: h.clone() },
            Unrenderable::Suffix(sfx) => CannotWrite::Suffix {
                version: format!(
                    "{}.{}.{}{}",
                    h.major,
                    h.minor,
                    h.patch.unwrap_or(0),
                    sfx.split('.')
                        .next()
                        .map_or(String::new(), |p| format!("{p}.N"))
                ),
                sfx,
                orig: orig.clone(),
                h: h.clone(),
                cluster: o.cluster.clone(),
                kind: kind.to_string(),
            },
        })
    })
}

/// Plan one cluster's Kubernetes fields; false when the cluster is refused.
fn plan_cluster(cx: &mut Cx, cluster: &str, fields: &Fields) -> bool {
    let is_cp = |o: &Occurrence| o.what != What::Kubernetes(Role::Workers);
    let last = &cx.plan.hops[cx.plan.hops.len() - 1];
    if !fields.iter().any(|(o, _)| is_cp(o)) {
        return workers_without_control_plane(cx, fields, last);
    }
    let cps = || fields.iter().filter(|(o, _)| is_cp(o)).map(|(_, v)| v);
    let cp_cur = cps()
        .min_by(|a, b| a.cmp_precedence(b))
        .cloned()
        .expect("cp");
    let cp_max = cps()
        .max_by(|a, b| a.cmp_precedence(b))
        .cloned()
        .expect("cp");
    if cp_max.minor != cp_cur.minor {
        cx.findings.push(Finding::new(
            Severity::Warning,
            Some(cluster),
            format!(
                "control-plane fields disagree ({cp_cur} and {cp_max}); planning from {cp_cur}"
            ),
        ));
    }
    let mut refused = false;
    for (o, v) in fields.iter().filter(|(o, _)| !is_cp(o)) {
        if v.minor > cp_cur.minor
            || (v.minor == cp_cur.minor
                && v.cmp_precedence(&cp_cur) == Ordering::Greater
                && !cp_cur.is_minor_only())
        {
            cx.findings.push(refuse(cx.fleet, o, format!("workers at {v} are newer than the control plane ({cp_cur}); fix the fleet before upgrading")));
            refused = true;
        }
    }
    let target = cx
        .plan
        .target
        .as_ref()
        .expect("kube fields only collected with a target");
    if below(target, &cp_cur) {
        let (o, _) = fields
            .iter()
            .find(|(o, v)| is_cp(o) && v.cmp_precedence(&cp_cur) == Ordering::Equal)
            .expect("cp field");
        cx.findings.push(refuse(cx.fleet, o, format!("targetVersion {target} is older than the running {cp_cur}: Kubernetes does not support downgrades")));
        return false;
    }
    // Every field must be renderable in its own style at each hop it is written at.
    for (o, v) in fields {
        let needed = cx
            .plan
            .hops
            .iter()
            .filter(|h| below(v, h) || h.render_like(v) == Err(Unrenderable::MinorOnly));
        if let Some(msg) = needed
            .filter_map(|h| to_text(cx.plan, o, v, h).err())
            .next()
        {
            cx.findings.push(refuse(cx.fleet, o, msg.to_string()));
            refused = true;
        }
    }
    if refused || !walk_hops(cx, fields, cp_cur) {
        return false;
    }
    for (o, v) in fields {
        if !below(v, last)
            && !cx.steps.iter().any(|s| {
                s.changes
                    .iter()
                    .any(|c| c.range == o.range && c.file_index == o.file)
            })
        {
            cx.skips
                .push(skip(cx.fleet, o, "already at the target version"));
        }
    }
    true
}

/// A cluster whose only version fields are workers': raising them without the control
/// plane would break the skew policy, so any raise is refused.
fn workers_without_control_plane(cx: &mut Cx, fields: &Fields, last: &KubeVersion) -> bool {
    let mut ok = true;
    for (o, v) in fields {
        if below(v, last) {
            cx.findings.push(refuse(cx.fleet, o, format!(
                "these workers would go to {last}, but fleetwave found no control-plane version for this cluster (no KubeadmControlPlane, K0sControlPlane, TenantControlPlane, control-plane Machine or whole-cluster field in its files); workers may never run ahead of their control plane: add the control plane's file to the cluster's paths in fleetwave.yaml, or mark its version with `# {{\"$fleetwave\": \"kubernetesVersion\"}}`"
            )));
            ok = false;
        } else {
            cx.skips
                .push(skip(cx.fleet, o, "already at the target version"));
        }
    }
    ok
}

/// Walk the hops in order: control-plane fields move one minor at a time, workers follow
/// each hop their control plane has reached (catching up when they lag). False on refusal.
fn walk_hops(cx: &mut Cx, fields: &Fields, cp_cur: KubeVersion) -> bool {
    let is_cp = |o: &Occurrence| o.what != What::Kubernetes(Role::Workers);
    let mut cur: Vec<KubeVersion> = fields.iter().map(|(_, v)| v.clone()).collect();
    let mut text: Vec<String> = fields.iter().map(|(o, _)| o.value.clone()).collect();
    let mut cp_now = cp_cur;
    let mut skipped: Vec<Vec<u32>> = vec![Vec::new(); fields.len()];
    for (hi, h) in cx.plan.hops.iter().enumerate() {
        let needs_cp = below(&cp_now, h);
        let (cp_step, w_step) = if cx.split {
            (2 * hi, 2 * hi + 1)
        } else {
            (hi, hi)
        };
        if needs_cp {
            if h.minor > cp_now.minor + 1 {
                let (o, _) = fields.iter().find(|(o, _)| is_cp(o)).expect("cp field");
                let next = cp_now.minor + 1;
                cx.findings.push(refuse(cx.fleet, o, format!(
                    "going from {cp_now} to {h} skips minor 1.{next}: Kubernetes control planes upgrade one minor at a time; add `intermediateVersions: [v1.{next}.x]` to the plan"
                )));
                return false;
            }
            cp_now = h.clone();
        }
        let oldest_worker = (0..fields.len())
            .filter(|&k| !is_cp(fields[k].0))
            .map(|k| cur[k].minor)
            .min();
        if let Some(w) = oldest_worker.filter(|w| cp_now.minor > w + 3) {
            let (o, _) = fields
                .iter()
                .find(|(o, _)| !is_cp(o))
                .expect("worker field");
            cx.findings.push(refuse(cx.fleet, o, format!("after the control plane reaches {cp_now}, kubelets at 1.{w} would be more than 3 minors behind; upgrade the workers first")));
            return false;
        }
        for (k, (o, orig)) in fields.iter().enumerate() {
            if below(&cur[k], h) && !below(&cp_now, h) && may_skip(cx, o, &cur[k], hi) {
                skipped[k].push(h.minor);
                continue;
            }
            if below(&cur[k], h) && !below(&cp_now, h) {
                let to = to_text(cx.plan, o, orig, h).expect("checked before the walk");
                let step = if is_cp(o) { cp_step } else { w_step };
                cx.steps[step]
                    .changes
                    .push(change(cx.fleet, o, &text[k], to.clone()));
                cur[k] = h.clone();
                text[k] = to;
            }
        }
    }
    say_skipped(cx, fields, &skipped);
    true
}

/// Under `efficientUpgrades`, a worker field of a kind that replaces its nodes stays at
/// `cur` through hop `hi` when it is not the last hop and the control plane's next hop keeps
/// its kubelets within 3 minors. Control planes never skip.
fn may_skip(cx: &Cx, o: &Occurrence, cur: &KubeVersion, hi: usize) -> bool {
    let kind = o.object.split('/').next().unwrap_or("");
    cx.plan.efficient_upgrades
        && o.what == What::Kubernetes(Role::Workers)
        && crate::core::kinds::replaces_nodes(kind)
        && cx
            .plan
            .hops
            .get(hi + 1)
            .is_some_and(|next| next.minor <= cur.minor + 3)
}

/// `plan` says which workers skip which minors, and why.
fn say_skipped(cx: &mut Cx, fields: &Fields, skipped: &[Vec<u32>]) {
    for (k, minors) in skipped.iter().enumerate().filter(|(_, m)| !m.is_empty()) {
        let o = fields[k].0;
        let list: Vec<String> = minors.iter().map(|m| format!("1.{m}")).collect();
        cx.findings.push(
            Finding::new(
                Severity::Info,
                Some(&o.cluster),
                format!(
                    "{} skips {} (efficientUpgrades: its nodes are replaced, and its kubelets \
                     stay within 3 minors of the control plane)",
                    o.object,
                    list.join(", ")
                ),
            )
            .at(&cx.fleet.files[o.file].rel, (o.line, o.column)),
        );
    }
}

/// The splices that take the files from now to the end of `steps` (all of them, in order).
pub fn splices(steps: &[&Step]) -> BTreeMap<usize, Vec<Splice>> {
    // Later steps overwrite earlier ones on the same range; `old` is the text on disk now.
    let mut last: BTreeMap<(usize, usize), (&Change, String)> = BTreeMap::new();
    for s in steps {
        for c in &s.changes {
            last.entry((c.file_index, c.range.start))
                .and_modify(|e| e.1 = c.to.clone())
                .or_insert((c, c.to.clone()));
        }
    }
    let mut out: BTreeMap<usize, Vec<Splice>> = BTreeMap::new();
    for ((file, _), (c, to)) in last {
        out.entry(file).or_default().push(Splice {
            range: c.range.clone(),
            old: c.from.clone(),
            new: to.clone(),
            scalar: c
                .scalar
                .as_ref()
                .map(|s| (s.start, format!("{}{}{}", s.before, to, s.after))),
        });
    }
    out
}
