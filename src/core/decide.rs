//! `decide`: the rollout's rules as one pure function from (plan, stored state, observed
//! world, now) to the next state and the side effects that follow from it: waves go in order,
//! a wave soaks once its clusters converge, its gates must pass, and a failed wave halts the plan.
//!
//! Nothing here reads a clock, the network or Git: the reconciler observes, calls `decide`,
//! writes the returned state by compare-and-swap, and only then performs the effects, so a
//! crash at any point is repaired by the next tick and two reconcilers never both act.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};

use crate::core::cluster::{self, ClusterObservation, Convergence, Role};
use crate::core::notify::{Alert, Event, Outcome, Telemetry};
use crate::core::plan::{MaxFailures, OnUnreachable, Plan, Wave, Window};
use crate::core::state::{
    ChangeRecord, Changed, GateRecord, GateState, Outbox, PlanState, PlanStatus, PostedStatus,
    StepState, StepStatus, WaveState, WaveStatus,
};
use crate::core::steps::KubeHop;
use crate::core::version::KubeVersion;

/// One step as planned against the current base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlan {
    pub index: usize,
    pub id: String,
    pub title: String,
    /// The Kubernetes hop the step makes, if it makes one.
    pub kubernetes: Option<KubeHop>,
    pub branch: String,
    pub changes: crate::core::state::Records,
    /// The batch this step belongs to (None: the wave is one batch).
    pub batch: Option<usize>,
    /// The batch's clusters (empty: the whole wave).
    pub clusters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveInput {
    pub clusters: Vec<String>,
    pub steps: Vec<StepPlan>,
    /// The wave's batches in merge order (empty: one batch); fixed when the wave starts.
    pub batches: Vec<Vec<String>>,
    /// Cluster → its maintenance window (index into `plan.maintenance_windows`).
    pub windows: BTreeMap<String, usize>,
    /// Clusters with changes that the started wave did not hold when it started
    /// ([`crate::core::batch::joined`]); their changes are left out of `steps`.
    pub joined: Vec<String>,
}

/// A step commit built on the current base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub commit: String,
    pub tree: String,
}

/// A step's pull request (or, with the local forge, its branch) as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrObs {
    pub number: Option<u64>,
    pub head: String,
    pub tree: String,
    /// The base commit fleetwave's step commit sits on.
    pub base: String,
    pub merged: Option<(String, DateTime<Utc>)>,
    pub open: bool,
    /// Commits on the branch that fleetwave did not make.
    pub foreign: Vec<String>,
    pub approved: bool,
    /// The branch exists but its pull request does not (a crash between push and create).
    pub needs_pr: bool,
}

pub struct World<'a> {
    pub now: DateTime<Utc>,
    pub base_head: String,
    pub plan_hash: String,
    pub waves: Vec<WaveInput>,
    /// Desired step commits by branch, for steps that may need opening or refreshing.
    pub desired: BTreeMap<String, Desired>,
    pub prs: BTreeMap<String, PrObs>,
    pub clusters: BTreeMap<String, ClusterObservation>,
    /// `descends(a, b)`: commit `a` is `b` or a descendant of it.
    pub descends: &'a dyn Fn(&str, &str) -> bool,
    /// cluster → target infrastructure, for telemetry.
    pub infra: BTreeMap<String, String>,
    /// Whether the forge reads reviews (GitHub); without, a human merge is the approval.
    pub reviews: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Push the step commit to its branch (lease on `expected`) and open or update its PR.
    PushStep {
        wave: usize,
        step: usize,
        commit: String,
        expected: Option<String>,
    },
    SetStatus {
        wave: usize,
        step: usize,
        head: String,
        state: GateState,
        description: String,
    },
    Merge {
        wave: usize,
        step: usize,
        head: String,
    },
    Send {
        id: String,
    },
    /// `failurePolicy: rollback`: revert the wave's reversible changes through a pull request
    /// and merge it (repeated every tick until the state records it done).
    Rollback {
        wave: usize,
    },
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub state: PlanState,
    pub effects: Vec<Effect>,
    /// When something is due next (a soak ending, a window opening), if known.
    pub wake_at: Option<DateTime<Utc>>,
    /// Why the rollout is held (exit 1): a halted plan, a failed gate, a foreign commit.
    pub held: Option<String>,
    /// What happened, one line each, for the log.
    pub notes: Vec<String>,
}

const PAUSED_IN_SPEC: &str = "paused in spec (spec.paused: true)";

struct Ctx<'a, 'w> {
    plan: &'a Plan,
    world: &'a World<'w>,
    now: DateTime<Utc>,
    state: PlanState,
    effects: Vec<Effect>,
    wake_at: Option<DateTime<Utc>>,
    held: Option<String>,
    notes: Vec<String>,
}

impl Ctx<'_, '_> {
    fn wake(&mut self, at: DateTime<Utc>) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }

    /// Post `desc` on step `s` of wave `w` (named `wave`) and hold the rollout (exit 1),
    /// saying why.
    fn hold_step(
        &mut self,
        w: usize,
        s: usize,
        wave: &str,
        head: &str,
        state: GateState,
        desc: String,
    ) {
        self.status(w, s, head, state, desc.clone());
        let n = step_no(&self.state, w, s);
        self.held = Some(format!("wave {wave} step {n}: {desc}"));
    }

    fn status(&mut self, w: usize, s: usize, head: &str, state: GateState, description: String) {
        let description: String = description.chars().take(140).collect();
        let step = &self.state.waves[w].steps[s];
        let posted = PostedStatus {
            head: head.to_string(),
            state,
            description: description.clone(),
        };
        // `posted` is what the forge confirmed; the reconciler records it after the call, so a
        // failed post is simply tried again on the next tick.
        let queued = self
            .effects
            .iter()
            .any(|e| matches!(e, Effect::SetStatus { wave, step, .. } if *wave == w && *step == s));
        if step.posted.as_ref() != Some(&posted) {
            if queued {
                self.effects.retain(|e| !matches!(e, Effect::SetStatus { wave, step, .. } if *wave == w && *step == s));
            }
            self.effects.push(Effect::SetStatus {
                wave: w,
                step: s,
                head: head.to_string(),
                state,
                description,
            });
        }
    }

    fn emit(&mut self, event: Event) {
        if !self.state.events.contains_key(&event.id) {
            let id = event.id.clone();
            self.state
                .events
                .insert(id.clone(), Outbox { event, sent: false });
            self.effects.push(Effect::Send { id });
        }
    }
}

pub fn decide(plan: &Plan, state: &PlanState, world: &World) -> Decision {
    let mut cx = Ctx {
        plan,
        world,
        now: world.now,
        state: state.clone(),
        effects: Vec::new(),
        wake_at: None,
        held: None,
        notes: Vec::new(),
    };
    init(&mut cx);
    // Events written but not yet confirmed sent are retried every tick.
    let unsent: Vec<String> = cx
        .state
        .events
        .iter()
        .filter(|(_, o)| !o.sent)
        .map(|(id, _)| id.clone())
        .collect();
    for id in unsent {
        cx.effects.push(Effect::Send { id });
    }
    match cx.state.status {
        PlanStatus::Succeeded | PlanStatus::Failed => {}
        PlanStatus::Halted => {
            halt_statuses(&mut cx);
            rollback_effects(&mut cx);
            cx.held = Some(format!(
                "plan halted: {}",
                cx.state.reason.clone().unwrap_or_default()
            ));
        }
        PlanStatus::Paused => cx.held = Some("plan paused".into()),
        PlanStatus::InProgress if plan.paused => {
            cx.state.status = PlanStatus::Paused;
            cx.state.reason = Some(PAUSED_IN_SPEC.into());
            cx.note("plan paused (spec.paused)");
            cx.held = Some("plan paused".into());
        }
        PlanStatus::InProgress => run(&mut cx),
    }
    let mut st = cx.state;
    // Every tick with effects writes the state first (the tick number changes), so of two
    // reconcilers acting on the same state only the one whose write lands goes on to act.
    if !cx.effects.is_empty() {
        st.tick += 1;
    }
    Decision {
        state: st,
        effects: cx.effects,
        wake_at: cx.wake_at,
        held: cx.held,
        notes: cx.notes,
    }
}

/// Create the state on first sight and keep step lists in line with the plan.
fn init(cx: &mut Ctx) {
    // A skip before the first tick writes wave entries but starts nothing.
    if cx.state.waves.is_empty() || cx.state.started_at.is_none() {
        cx.state.plan = cx.plan.name.clone();
        cx.state.plan_hash = cx.world.plan_hash.clone();
        cx.state.started_at = Some(cx.now);
        cx.note(format!("rollout of plan {} started", cx.plan.name));
    }
    let revised = cx.state.plan_hash != cx.world.plan_hash;
    if revised {
        cx.note("the plan file changed: steps not merged yet follow the new revision (their old pull requests are closed)");
        cx.state.plan_hash = cx.world.plan_hash.clone();
    }
    if cx.state.status == PlanStatus::Paused
        && !cx.plan.paused
        && cx.state.reason.as_deref() == Some(PAUSED_IN_SPEC)
    {
        cx.state.status = PlanStatus::InProgress;
        cx.state.reason = None;
        cx.note("spec.paused is off again: resuming");
    }
    for (i, w) in cx.plan.waves.iter().enumerate() {
        let input = &cx.world.waves[i];
        if cx.state.waves.len() <= i {
            cx.state.waves.push(WaveState {
                name: w.name.clone(),
                ..Default::default()
            });
        }
        let ws = &mut cx.state.waves[i];
        if revised && matches!(ws.status, WaveStatus::InProgress) {
            // Merged steps stay as they were; the rest are replaced by the new revision's.
            let keep = ws
                .steps
                .iter()
                .take_while(|s| !matches!(s.status, StepStatus::Pending | StepStatus::Open))
                .count();
            let fresh = input.steps.iter().skip(keep).map(step_state);
            ws.steps.truncate(keep);
            ws.steps.extend(fresh);
        }
        if ws.status == WaveStatus::Pending {
            ws.name = w.name.clone();
            ws.clusters = input.clusters.clone();
            ws.batches = input.batches.clone();
            ws.steps = input.steps.iter().map(step_state).collect();
        } else {
            record_joiners(cx, i);
        }
    }
}

/// Why a cluster that joined a started wave is left out (kept in its skip record).
pub const JOINED_LATE: &str = "joined the wave after it started (its clusters and batches are fixed when it starts), so this rollout does not change it; `fleetwave retry --cluster` adds it as a batch of its own";

/// A cluster the wave selects now, with changes to make, that was not among the wave's
/// clusters when it started (added to the fleet, or relabelled) is recorded as skipped by
/// fleetwave, once, with the reason: it is never changed by a step that does not track it.
fn record_joiners(cx: &mut Ctx, wi: usize) {
    let ws = &cx.state.waves[wi];
    let joined: Vec<String> = cx.world.waves[wi]
        .joined
        .iter()
        .filter(|c| !ws.is_out(c))
        .cloned()
        .collect();
    for c in joined {
        let name = cx.state.waves[wi].name.clone();
        cx.note(format!("wave {name}: cluster {c} {JOINED_LATE}"));
        cx.state.waves[wi].skipped.insert(
            c,
            crate::core::state::SkipRecord {
                by: "fleetwave".into(),
                at: cx.now,
                reason: JOINED_LATE.into(),
            },
        );
    }
}

/// The stored form of a step not started yet.
fn step_state(s: &StepPlan) -> StepState {
    StepState {
        index: s.index,
        id: s.id.clone(),
        title: s.title.clone(),
        branch: s.branch.clone(),
        changes: s.changes.clone(),
        batch: s.batch,
        clusters: s.clusters.clone(),
        ..Default::default()
    }
}

fn allowance(w: &Wave, clusters: usize) -> usize {
    match w.max_failures {
        MaxFailures::Count(n) => n as usize,
        MaxFailures::Percent(p) => clusters * p as usize / 100,
    }
}

fn run(cx: &mut Ctx) {
    let Some(wi) = cx
        .state
        .waves
        .iter()
        .position(|w| w.status != WaveStatus::Succeeded)
    else {
        if cx.state.status != PlanStatus::Succeeded {
            cx.state.status = PlanStatus::Succeeded;
            cx.state.finished_at = Some(cx.now);
            cx.note("every wave succeeded: plan Succeeded");
        }
        return;
    };
    // Later waves' open PRs (opened by hand or an older run) must not be merged early.
    let wave = cx.plan.waves[wi].clone();
    if cx.state.waves[wi].status == WaveStatus::Pending {
        let ws = &mut cx.state.waves[wi];
        ws.status = WaveStatus::InProgress;
        ws.started_at = Some(cx.now);
        let n = ws.clusters.len();
        cx.note(format!("wave {} started with {n} cluster(s)", wave.name));
    }
    if cx.state.waves[wi].status == WaveStatus::Failed {
        return;
    }
    let steps = cx.state.waves[wi].steps.len();
    for si in 0..steps {
        let status = cx.state.waves[wi].steps[si].status;
        match status {
            StepStatus::Converged | StepStatus::Skipped | StepStatus::RolledBack => continue,
            StepStatus::Pending | StepStatus::Open => {
                open_or_merge(cx, wi, si, &wave);
                return;
            }
            StepStatus::Merged => {
                if !converge(cx, wi, si, &wave) {
                    return;
                }
            }
        }
    }
    soak(cx, wi, &wave);
}

fn previous_wave_name(cx: &Ctx, wi: usize) -> Option<String> {
    wi.checked_sub(1).map(|p| cx.plan.waves[p].name.clone())
}

/// A step that is not merged yet: open it, keep it current, gate it, merge it.
fn open_or_merge(cx: &mut Ctx, wi: usize, si: usize, wave: &Wave) {
    let step = cx.state.waves[wi].steps[si].clone();
    let planned = cx.world.waves[wi].steps.get(si).cloned();
    let pr = cx.world.prs.get(&step.branch).cloned();
    // A merge observed on the forge wins over everything else: record it.
    if let Some(pr) = &pr {
        if let Some((commit, at)) = &pr.merged {
            record_merge(cx, wi, si, commit, *at, &pr.head);
            // Convergence may already be observable.
            run(cx);
            return;
        }
    }
    let has_changes = planned.as_ref().is_some_and(|p| !p.changes.is_empty());
    if !has_changes && pr.is_none() && step.head.is_some() {
        // Opened, gone, and its changes are on the base: it landed without fleetwave seeing
        // the merge (branch deleted after a hand merge). Wait for convergence at the base.
        let base = cx.world.base_head.clone();
        record_merge(cx, wi, si, &base, cx.now, "");
        run(cx);
        return;
    }
    if !has_changes && pr.as_ref().is_none_or(|p| !p.open) {
        let s = &mut cx.state.waves[wi].steps[si];
        s.status = StepStatus::Skipped;
        let title = s.title.clone();
        cx.note(format!(
            "wave {} step {}: nothing to change ({title}), skipped",
            wave.name,
            step_no(&cx.state, wi, si)
        ));
        // The next step may be due right away.
        run(cx);
        return;
    }
    if let Some(p) = &planned {
        cx.state.waves[wi].steps[si].changes = p.changes.clone();
    }
    let desired = cx.world.desired.get(&step.branch).cloned();
    match &pr {
        None => open_step(cx, wi, si, wave, &step.branch, desired),
        Some(p) if !p.open && p.merged.is_none() => {
            let msg = format!(
                "wave {} step {}: its pull request was closed without merging; reopen it, or change the plan",
                wave.name,
                step_no(&cx.state, wi, si)
            );
            cx.held = Some(msg);
        }
        Some(p) => tend_open_step(cx, wi, si, wave, &step.branch, p, desired),
    }
}

/// No pull request yet: push the step's commit (the forge adapter opens the PR with it).
fn open_step(
    cx: &mut Ctx,
    wi: usize,
    si: usize,
    wave: &Wave,
    branch: &str,
    desired: Option<Desired>,
) {
    let Some(d) = desired else {
        cx.note(format!(
            "wave {} step {}: waiting for its commit to be built",
            wave.name,
            step_no(&cx.state, wi, si)
        ));
        return;
    };
    let s = &mut cx.state.waves[wi].steps[si];
    s.status = StepStatus::Open;
    s.head = Some(d.commit.clone());
    s.base = Some(cx.world.base_head.clone());
    s.opened_at.get_or_insert(cx.now);
    cx.effects.push(Effect::PushStep {
        wave: wi,
        step: si,
        commit: d.commit.clone(),
        expected: None,
    });
    cx.note(format!(
        "wave {} step {}: opening {branch}",
        wave.name,
        step_no(&cx.state, wi, si)
    ));
    let desc = gate_description(cx, wi);
    cx.status(wi, si, &d.commit, GateState::Pending, desc);
}

/// An open pull request: recreate it if missing, refuse foreign commits, regenerate it when
/// the base moved, else gate and merge it.
fn tend_open_step(
    cx: &mut Ctx,
    wi: usize,
    si: usize,
    wave: &Wave,
    branch: &str,
    p: &PrObs,
    desired: Option<Desired>,
) {
    let s = &mut cx.state.waves[wi].steps[si];
    s.status = StepStatus::Open;
    if p.needs_pr && p.foreign.is_empty() {
        // Re-push the same commit (a no-op) and create the missing pull request.
        cx.effects.push(Effect::PushStep {
            wave: wi,
            step: si,
            commit: p.head.clone(),
            expected: Some(p.head.clone()),
        });
        return;
    }
    if !p.foreign.is_empty() {
        let desc = format!(
            "fleetwave will not merge: commits by others on this branch ({})",
            p.foreign.join(", ")
        );
        cx.hold_step(wi, si, &wave.name, &p.head, GateState::Failure, desc);
        return;
    }
    let current =
        p.base == cx.world.base_head && desired.as_ref().is_some_and(|d| d.tree == p.tree);
    if !current
        && let Some(d) = desired
        && d.commit != p.head
    {
        let s = &mut cx.state.waves[wi].steps[si];
        s.head = Some(d.commit.clone());
        s.base = Some(cx.world.base_head.clone());
        cx.effects.push(Effect::PushStep {
            wave: wi,
            step: si,
            commit: d.commit.clone(),
            expected: Some(p.head.clone()),
        });
        cx.note(format!(
            "wave {} step {}: base moved; regenerating {branch}",
            wave.name,
            step_no(&cx.state, wi, si)
        ));
        let desc = gate_description(cx, wi);
        cx.status(wi, si, &d.commit, GateState::Pending, desc);
        return;
    }
    gate_and_merge(cx, wi, si, wave, p);
}

/// The pending-gate description: what this step waits for.
fn gate_description(cx: &Ctx, wi: usize) -> String {
    match previous_wave_name(cx, wi) {
        Some(prev) => format!("waiting: previous wave {prev} passed; checking this step"),
        None => "waiting: first wave".to_string(),
    }
}

fn gate_and_merge(cx: &mut Ctx, wi: usize, si: usize, wave: &Wave, p: &PrObs) {
    // Steps run in order and waves in order: by construction everything before this step
    // converged and every earlier wave passed its soak.
    if waits(cx, wi, si, wave, p) || held_outside_windows(cx, wi, si, wave, p) {
        return;
    }
    // What would make the merged change fail on the cluster: the provider refusing the
    // template, the API server no longer serving what clients ask for, a drain waiting on
    // PodDisruptionBudgets for ever.
    let hold = templates_not_offered(cx, wi, si)
        .or_else(|| deprecated_apis(cx, wi, si, wave))
        .or_else(|| drain_blockers(cx, wi, si, wave));
    if let Some(why) = hold {
        let desc = format!("holding: {why}");
        cx.hold_step(wi, si, &wave.name, &p.head, GateState::Pending, desc);
        return;
    }
    merge_or_wait_for_people(cx, wi, si, wave, p);
}

/// Whether step `si` waits: its wave's maintenance window is closed, a gate broke on an
/// upgraded cluster, a freeze is on, or its batch's turn has not come (a pending status is
/// posted, with a wake-up when the wait has a known end).
fn waits(cx: &mut Ctx, wi: usize, si: usize, wave: &Wave, p: &PrObs) -> bool {
    let window = wave.window.as_ref().map(|w| window_state(w, cx.now));
    if let Some((false, next)) = window {
        let desc = format!(
            "ready, waiting for the maintenance window (opens {})",
            next.format("%Y-%m-%d %H:%M UTC")
        );
        cx.status(wi, si, &p.head, GateState::Pending, desc);
        cx.wake(next);
        return true;
    }
    if let Some(why) = gate_breaches(cx, wi, wave) {
        // A gate broke on a cluster already upgraded: do not push more changes into it.
        cx.status(
            wi,
            si,
            &p.head,
            GateState::Pending,
            format!("holding: {why}"),
        );
        return true;
    }
    if let Some(f) = freeze_at(cx.plan, wave, cx.now) {
        // Deny wins over every allow: nothing merges, manual waves get no green either.
        let desc = format!("frozen, will not merge: {}", f.describe());
        if !posted_is(&cx.state, wi, si, &desc) {
            let n = step_no(&cx.state, wi, si);
            cx.note(format!("wave {} step {n}: {desc}", wave.name));
        }
        cx.status(wi, si, &p.head, GateState::Pending, desc);
        cx.wake(f.end);
        return true;
    }
    if let Some((until, why)) =
        crate::core::batch::batch_wait(&cx.state.waves[wi], si, wave, cx.now)
    {
        if !posted_is(&cx.state, wi, si, &why) {
            let n = step_no(&cx.state, wi, si);
            cx.note(format!("wave {} step {n}: {why}", wave.name));
        }
        cx.status(wi, si, &p.head, GateState::Pending, why);
        cx.wake(until);
        return true;
    }
    false
}

/// The end of the gate: wait for an approving review or a reviewer's merge (a manual wave),
/// or merge.
fn merge_or_wait_for_people(cx: &mut Ctx, wi: usize, si: usize, wave: &Wave, p: &PrObs) {
    let approval_needed = wave
        .gates
        .iter()
        .any(|g| matches!(g, crate::core::plan::Gate::Approval { .. }));
    // Without review support (the local forge) a human merge is the approval.
    let approval_pending = approval_needed && cx.world.reviews && !p.approved;
    if approval_pending {
        cx.status(
            wi,
            si,
            &p.head,
            GateState::Pending,
            "waiting for an approving review from a configured reviewer".into(),
        );
        return;
    }
    if !wave.automated || approval_needed && !cx.world.reviews {
        let desc = match previous_wave_name(cx, wi) {
            Some(prev) => format!(
                "gate green: wave {prev} passed; manual wave, waiting for a reviewer to merge"
            ),
            None => "gate green; manual wave, waiting for a reviewer to merge".to_string(),
        };
        cx.status(wi, si, &p.head, GateState::Success, desc);
        return;
    }
    let desc = "gate green: merging".to_string();
    cx.status(wi, si, &p.head, GateState::Success, desc);
    let s = &mut cx.state.waves[wi].steps[si];
    s.merge_intent = Some(p.head.clone());
    cx.effects.push(Effect::Merge {
        wave: wi,
        step: si,
        head: p.head.clone(),
    });
    cx.note(format!(
        "wave {} step {}: merging {}",
        wave.name,
        step_no(&cx.state, wi, si),
        &p.head[..p.head.len().min(12)]
    ));
}

/// Hold step `si` (exit 1, pending status naming the clusters) while a cluster it changes is
/// outside its maintenance window; true when held.
fn held_outside_windows(cx: &mut Ctx, wi: usize, si: usize, wave: &Wave, p: &PrObs) -> bool {
    let Some(closed) = maintenance_closed(cx, wi, si) else {
        return false;
    };
    let (desc, short) = (closed.describe(), closed.summary());
    let n = step_no(&cx.state, wi, si);
    if !posted_is(&cx.state, wi, si, &short) {
        cx.note(format!("wave {} step {n}: {desc}", wave.name));
    }
    cx.status(wi, si, &p.head, GateState::Pending, short);
    cx.held = Some(format!("wave {} step {n}: {desc}", wave.name));
    if let Some(t) = closed.wake() {
        cx.wake(t);
    }
    true
}

/// The clusters step `si` changes that are outside their maintenance window now, if any.
fn maintenance_closed(cx: &Ctx, wi: usize, si: usize) -> Option<crate::core::maintenance::Closed> {
    let windows = &cx.world.waves.get(wi)?.windows;
    if windows.is_empty() {
        return None;
    }
    let ws = &cx.state.waves[wi];
    let mut clusters: Vec<&str> = ws.steps[si]
        .changes
        .iter()
        .map(|c| c.cluster.as_str())
        .filter(|c| !ws.is_out(c))
        .collect();
    clusters.dedup();
    crate::core::maintenance::closed(cx.plan, windows, &clusters, cx.now)
}

/// Whether the step's posted status already says `desc` (as cut for the forge).
fn posted_is(st: &PlanState, wi: usize, si: usize, desc: &str) -> bool {
    let cut: String = desc.chars().take(140).collect();
    st.waves[wi].steps[si]
        .posted
        .as_ref()
        .is_some_and(|p| p.description == cut)
}

/// A step's number in messages: `1`, or `1 batch 2` in a wave with batches.
fn step_no(st: &PlanState, wi: usize, si: usize) -> String {
    match st.waves[wi].steps.get(si) {
        Some(s) => match s.batch {
            Some(b) => format!("{} batch {b}", s.index),
            None => s.index.to_string(),
        },
        None => (si + 1).to_string(),
    }
}

/// The freeze in force for `wave` at `now` (the plan's, the wave's or the repository's).
pub fn freeze_at(
    plan: &Plan,
    wave: &Wave,
    now: DateTime<Utc>,
) -> Option<crate::core::calendar::Freeze> {
    let all = plan
        .freezes
        .iter()
        .chain(&plan.repo_freezes)
        .chain(&wave.freezes);
    crate::core::calendar::active(all, now)
}

fn record_merge(cx: &mut Ctx, wi: usize, si: usize, commit: &str, at: DateTime<Utc>, head: &str) {
    let wave_name = cx.state.waves[wi].name.clone();
    let s = &mut cx.state.waves[wi].steps[si];
    // Only a merge of the exact head fleetwave decided to merge is fleetwave's.
    let ours = s.merge_intent.as_deref() == Some(head);
    s.status = StepStatus::Merged;
    s.merged_commit = Some(commit.to_string());
    s.merged_at = Some(at);
    if !ours {
        s.merged_by_human = true;
        let green = s
            .posted
            .as_ref()
            .is_some_and(|p| p.state == GateState::Success && Some(&p.head) == s.head.as_ref());
        s.gate_green_at_merge = Some(green);
        let what = if green {
            "with the gate green"
        } else {
            "BEFORE the gate was green"
        };
        cx.note(format!(
            "wave {wave_name} step {}: merged by a human {what}",
            step_no(&cx.state, wi, si)
        ));
    } else {
        cx.note(format!(
            "wave {wave_name} step {}: merged as {}",
            step_no(&cx.state, wi, si),
            &commit[..commit.len().min(12)]
        ));
    }
}

/// A merged step: wait for its clusters to converge at the merge commit.
/// Returns true when the step is converged and the next one may go.
fn converge(cx: &mut Ctx, wi: usize, si: usize, wave: &Wave) -> bool {
    let step = cx.state.waves[wi].steps[si].clone();
    let Some(commit) = step.merged_commit.clone() else {
        return false;
    };
    take_baselines(cx, wi, si);
    let allowed = allowance(wave, cx.state.waves[wi].clusters.len());
    // A batch's step converges on the batch's clusters; the others have not taken it.
    let clusters = if step.clusters.is_empty() {
        cx.state.waves[wi].clusters.clone()
    } else {
        step.clusters.clone()
    };
    let mut waiting = Vec::new();
    let mut changes: BTreeMap<&str, Vec<&ChangeRecord>> = BTreeMap::new();
    for c in step.changes.iter() {
        changes.entry(c.cluster.as_str()).or_default().push(c);
    }
    // Unreachable clusters under `onUnreachable: skip` wait for `unreachableAfter`, not for
    // progressDeadline; they hold the step until they answer or are skipped.
    let mut dark = false;
    for c in &clusters {
        if step.converged.contains_key(c) || cx.state.waves[wi].is_out(c) {
            continue;
        }
        if unreachable(cx, wi, wave, c).is_some() {
            dark |= !cx.state.waves[wi].is_out(c);
            continue;
        }
        let obs = cx.world.clusters.get(c).cloned().unwrap_or_default();
        match cluster::convergence(&obs, &commit, cx.world.descends) {
            Convergence::Converged => {
                match version_lag(changes.get(c.as_str()).map_or(&[][..], Vec::as_slice), &obs) {
                    // Flux applied the manifests; the cluster has not reached the versions yet.
                    Some(r) => waiting.push((c.clone(), format!("upgrade in progress: {r}"))),
                    None => {
                        cx.state.waves[wi].steps[si]
                            .converged
                            .insert(c.clone(), cx.now);
                    }
                }
            }
            Convergence::Waiting(r) => waiting.push((c.clone(), r)),
            Convergence::Failed(r) => {
                cx.state.waves[wi].failed.insert(c.clone(), r.clone());
                cx.note(format!("wave {} cluster {c} failed: {r}", wave.name));
            }
        }
    }
    progress_deadline(cx, wi, wave, step.merged_at, &mut waiting);
    // Clusters already upgraded must stay healthy while later clusters converge.
    let _ = gate_breaches(cx, wi, wave);
    if cx.state.waves[wi].failed.len() > allowed {
        fail_wave(cx, wi, wave);
        return false;
    }
    if waiting.is_empty() && !dark {
        let s = &mut cx.state.waves[wi].steps[si];
        s.status = StepStatus::Converged;
        s.converged_at = Some(cx.now);
        cx.note(format!(
            "wave {} step {}: converged",
            wave.name,
            step_no(&cx.state, wi, si)
        ));
        return true;
    }
    false
}

/// `progressDeadline` after the merge: the clusters still `waiting` fail (and are drained).
fn progress_deadline(
    cx: &mut Ctx,
    wi: usize,
    wave: &Wave,
    merged_at: Option<DateTime<Utc>>,
    waiting: &mut Vec<(String, String)>,
) {
    let (Some(deadline), Some(merged_at)) = (wave.progress_deadline, merged_at) else {
        return;
    };
    let due = merged_at + Duration::from_std(deadline).unwrap_or_default();
    if cx.now < due {
        cx.wake(due);
        return;
    }
    for (c, r) in waiting.drain(..) {
        let why = format!(
            "did not converge within progressDeadline {}: {r}",
            humantime::format_duration(deadline)
        );
        cx.state.waves[wi].failed.insert(c.clone(), why.clone());
        cx.note(format!("wave {} cluster {c} failed: {why}", wave.name));
    }
}

/// What `cluster` reports, with the wave's local gates (nodes, podRestarts) evaluated and the
/// results recorded. A source that already reports a gate by that name (the simulated Flux)
/// keeps its own result.
fn observed(cx: &mut Ctx, wi: usize, wave: &Wave, cluster: &str) -> ClusterObservation {
    let mut obs = cx.world.clusters.get(cluster).cloned().unwrap_or_default();
    let mut baseline = cx.state.waves[wi]
        .steps
        .iter()
        .rev()
        .find_map(|s| s.restart_baseline.get(cluster).copied());
    // No baseline yet (state from an older fleetwave, or no pod data at merge time): take it
    // now on the latest merged step, so the gate compares from here on, not never.
    if baseline.is_none()
        && let Some(n) = obs.pod_restarts.filter(|_| obs.unobservable.is_none())
        && let Some(step) = cx.state.waves[wi]
            .steps
            .iter_mut()
            .rev()
            .find(|s| s.merged_commit.is_some())
    {
        step.restart_baseline.insert(cluster.to_string(), n);
        baseline = Some(n);
    }
    // Nodes roll while a step is upgrading the cluster: NotReady nodes then are the upgrade at
    // work (convergence and progressDeadline watch it), not a health failure.
    let upgrading = cx.state.waves[wi]
        .steps
        .iter()
        .any(|s| s.status == StepStatus::Merged && !s.converged.contains_key(cluster));
    let names = crate::core::gates::names(&wave.gates);
    for (g, name) in wave.gates.iter().zip(names) {
        if obs.gates.iter().any(|r| r.gate == name) {
            continue;
        }
        let mut result = match g {
            crate::core::plan::Gate::Nodes {} => {
                let mut r = crate::core::gates::nodes(&obs);
                if !r.ok && upgrading && obs.nodes.is_some() && obs.unobservable.is_none() {
                    r.ok = true;
                    r.reason = format!("{}; a step is rolling this cluster's nodes", r.reason);
                }
                r
            }
            crate::core::plan::Gate::PodRestarts { threshold } => {
                crate::core::gates::pod_restarts(&obs, baseline, *threshold)
            }
            // Remote gates arrive in `obs.gates`; approval is the forge's.
            _ => continue,
        };
        result.gate = name;
        obs.gates.push(result);
    }
    record_gates(cx, wi, cluster, &obs);
    obs
}

/// Keep each gate's current result in the state, writing only when it flips (or is new), and
/// log recoveries (failures are logged where they fail the cluster).
fn record_gates(cx: &mut Ctx, wi: usize, cluster: &str, obs: &ClusterObservation) {
    let now = cx.now;
    let ws = &mut cx.state.waves[wi];
    let current = ws.gates.entry(cluster.to_string()).or_default();
    for g in &obs.gates {
        let flipped = current.get(&g.gate).is_none_or(|r| r.ok != g.ok);
        if !flipped {
            continue;
        }
        let rec = GateRecord {
            time: now,
            cluster: cluster.to_string(),
            gate: g.gate.clone(),
            ok: g.ok,
            reason: g.reason.clone(),
        };
        if g.ok && current.contains_key(&g.gate) {
            ws.gate_log.push(rec.clone());
        }
        current.insert(g.gate.clone(), rec);
    }
}

/// Take the podRestarts baseline of clusters that have none for this merged step yet.
fn take_baselines(cx: &mut Ctx, wi: usize, si: usize) {
    let clusters = cx.state.waves[wi].clusters.clone();
    for c in clusters {
        let Some(n) = cx.world.clusters.get(&c).and_then(|o| o.pod_restarts) else {
            continue;
        };
        cx.state.waves[wi].steps[si]
            .restart_baseline
            .entry(c)
            .or_insert(n);
    }
}

/// Why the observed versions of `cluster` have not reached what `step` sets, if they have not:
/// per role, the highest Kubernetes version the step writes for the cluster.
fn version_lag(changes: &[&ChangeRecord], obs: &ClusterObservation) -> Option<String> {
    // k0rdent: a template change is done when the ClusterDeployment runs the new template.
    for c in changes.iter().filter(|c| c.what == Changed::Template) {
        let want = format!("template {}", c.to);
        for d in obs
            .components
            .iter()
            .filter(|d| d.kind == "ClusterDeployment")
        {
            if d.desired.as_deref() != Some(want.as_str()) {
                return Some(format!(
                    "{} is at {}, want {want}",
                    d.id(),
                    d.desired.as_deref().unwrap_or("no template")
                ));
            }
        }
    }
    let mut want: BTreeMap<Role, KubeVersion> = BTreeMap::new();
    for c in changes.iter() {
        let (Changed::Kubernetes(Some(role)), Some(v)) = (c.what, KubeVersion::parse(&c.to)) else {
            continue;
        };
        let e = want.entry(role).or_insert_with(|| v.clone());
        if v.cmp_precedence(e).is_gt() {
            *e = v;
        }
    }
    want.iter()
        .find_map(|(role, v)| cluster::upgrade::lag(&obs.components, obs.nodes.as_ref(), *role, v))
}

/// All steps converged: soak, checking gates on every tick, then pass the wave.
fn soak(cx: &mut Ctx, wi: usize, wave: &Wave) {
    let started = *cx.state.waves[wi].soak_started_at.get_or_insert(cx.now);
    if cx.state.waves[wi].status != WaveStatus::Soaking {
        cx.state.waves[wi].status = WaveStatus::Soaking;
        cx.note(format!(
            "wave {}: converged, soaking for {}",
            wave.name,
            humantime::format_duration(wave.soak)
        ));
    }
    let last_merge = cx.state.waves[wi]
        .steps
        .iter()
        .rev()
        .find_map(|s| s.merged_commit.clone());
    let clusters = cx.state.waves[wi].clusters.clone();
    let mut dark = false;
    for c in &clusters {
        if cx.state.waves[wi].is_out(c) {
            continue;
        }
        if unreachable(cx, wi, wave, c).is_some() {
            dark |= !cx.state.waves[wi].is_out(c);
            continue;
        }
        let obs = observed(cx, wi, wave, c);
        // The cluster must stay converged and healthy through the soak, not just at its end.
        let flux = last_merge
            .as_ref()
            .map(|m| cluster::convergence(&obs, m, cx.world.descends));
        let breach = match (&flux, cluster::failing_gate(&obs), cluster::unhealthy(&obs)) {
            (Some(Convergence::Failed(r)), _, _) => Some(("flux".to_string(), r.clone())),
            (_, Some(g), _) => Some((g.gate.clone(), g.reason.clone())),
            (_, _, Some(r)) => Some(("flux".to_string(), r)),
            _ => None,
        };
        if let Some((gate, reason)) = breach {
            cx.state.waves[wi].gate_log.push(GateRecord {
                time: cx.now,
                cluster: c.clone(),
                gate: gate.clone(),
                ok: false,
                reason: reason.clone(),
            });
            let why = format!("gate {gate} failed during soak: {reason}");
            cx.note(format!("wave {} cluster {c}: {why}", wave.name));
            cx.state.waves[wi].failed.insert(c.clone(), why);
        }
    }
    if cx.state.waves[wi].failed.len() > allowance(wave, clusters.len()) {
        fail_wave(cx, wi, wave);
        return;
    }
    let end = started + Duration::from_std(wave.soak).unwrap_or_default();
    if cx.now < end {
        cx.wake(end);
        return;
    }
    if dark {
        // Soaked, but a cluster is dark: the wave passes once it answers or is skipped.
        return;
    }
    let ws = &mut cx.state.waves[wi];
    ws.status = WaveStatus::Succeeded;
    ws.finished_at = Some(cx.now);
    cx.note(format!("wave {} passed its soak: Succeeded", wave.name));
    let skipped = cx.state.waves[wi].skipped.clone();
    for c in clusters.iter().filter(|c| !skipped.contains_key(*c)) {
        let outcome = if cx.state.waves[wi].failed.contains_key(c) {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        };
        telemetry(cx, wi, c, outcome);
    }
    // The next wave may start right away.
    run(cx);
}

/// Failing gates on clusters that already took a step of this wave: they fail (within the
/// wave's budget). Returns the first breach, if any.
/// Why step `si` may not merge because draining would block: a cluster whose workers it
/// raises (worker or whole-cluster fields; records without a role count as such) has
/// PodDisruptionBudgets that allow no disruption, unless the wave allows drain blockers.
/// Clusters without PodDisruptionBudget data do not hold (status says it is unknown).
fn drain_blockers(cx: &Ctx, wi: usize, si: usize, wave: &Wave) -> Option<String> {
    if wave.allow_drain_blockers {
        return None;
    }
    let step = &cx.state.waves[wi].steps[si];
    let drains = step.changes.iter().filter(|c| {
        matches!(
            c.what,
            Changed::Kubernetes(None | Some(Role::Workers) | Some(Role::Whole))
        )
    });
    let mut clusters: Vec<&str> = drains.map(|c| c.cluster.as_str()).collect();
    clusters.sort_unstable();
    clusters.dedup();
    let blocked: Vec<(&str, &[cluster::DrainBlocker])> = clusters
        .into_iter()
        .filter_map(|c| {
            let b = cx.world.clusters.get(c)?.drain_blockers.as_deref()?;
            (!b.is_empty()).then_some((c, b))
        })
        .collect();
    let (c, b) = blocked.first()?;
    let mut why = format!("{c}: {}", b[0]);
    if b.len() > 1 {
        why.push_str(&format!(" and {} more", b.len() - 1));
    }
    if blocked.len() > 1 {
        why.push_str(&format!(
            "; {} more cluster(s) blocked ({})",
            blocked.len() - 1,
            blocked[1..]
                .iter()
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Some(why)
}

/// Why step `si` may not merge because a cluster does not offer the template it moves to:
/// an observed object that restricts its moves (k0rdent's `status.availableUpgrades`) and
/// does not list the new template, which its admission webhook would refuse. Clusters not
/// observed, or whose objects do not restrict, do not hold.
fn templates_not_offered(cx: &Ctx, wi: usize, si: usize) -> Option<String> {
    let step = &cx.state.waves[wi].steps[si];
    let mut held = Vec::new();
    for c in step.changes.iter().filter(|c| c.what == Changed::Template) {
        let Some(obs) = cx.world.clusters.get(&c.cluster) else {
            continue;
        };
        for comp in &obs.components {
            let Some(offers) = &comp.offers else { continue };
            if offers.contains(&c.to) {
                continue;
            }
            let listed = if offers.is_empty() {
                "no upgrade".to_string()
            } else {
                offers.join(", ")
            };
            held.push(format!(
                "{}: {} offers {listed}, not {} (add {} to the availableUpgrades of {} in a \
                 ClusterTemplateChain)",
                c.cluster,
                comp.id(),
                c.to,
                c.to,
                c.from
            ));
        }
    }
    let first = held.first()?.clone();
    Some(match held.len() {
        1 => first,
        n => format!("{first}; {} more cluster(s) held", n - 1),
    })
}

/// Why step `si` may not merge under the wave's `deprecatedApis` gate: a cluster whose
/// control plane it moves to a new minor still has requests for APIs that minor no longer
/// serves (removed at or before it), or has no deprecated-API data at all (a gate that
/// cannot be read holds, as the nodes gate does).
fn deprecated_apis(cx: &Ctx, wi: usize, si: usize, wave: &Wave) -> Option<String> {
    let gated = wave
        .gates
        .iter()
        .any(|g| matches!(g, crate::core::plan::Gate::DeprecatedApis {}));
    if !gated {
        return None;
    }
    let step = &cx.state.waves[wi].steps[si];
    // The newest minor each cluster's control plane is moved to by this step.
    let mut targets: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for c in step.changes.iter() {
        if !matches!(
            c.what,
            Changed::Kubernetes(None | Some(Role::ControlPlane) | Some(Role::Whole))
        ) {
            continue;
        }
        let (Some(from), Some(to)) = (KubeVersion::parse(&c.from), KubeVersion::parse(&c.to))
        else {
            continue;
        };
        let to = (to.major, to.minor);
        if (from.major, from.minor) < to {
            let t = targets.entry(c.cluster.as_str()).or_insert(to);
            *t = (*t).max(to);
        }
    }
    let mut held = Vec::new();
    for (cluster, (major, minor)) in targets {
        let obs = cx.world.clusters.get(cluster);
        let Some(apis) = obs.and_then(|o| o.deprecated_apis.as_deref()) else {
            held.push(format!(
                "{cluster}: no deprecated-API data (the deprecatedApis gate reads each \
                 cluster's /metrics through a per-cluster context, --cluster-context)"
            ));
            continue;
        };
        let removed =
            crate::core::gates::removed_apis_requested(apis, (u64::from(major), u64::from(minor)));
        if let Some(first) = removed.first() {
            let more = match removed.len() {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            held.push(format!(
                "{cluster}: {first} is still requested and {major}.{minor} no longer serves it{more}"
            ));
        }
    }
    let first = held.first()?.clone();
    Some(match held.len() {
        1 => first,
        n => format!("{first}; {} more cluster(s) held", n - 1),
    })
}

fn gate_breaches(cx: &mut Ctx, wi: usize, wave: &Wave) -> Option<String> {
    let touched: Vec<String> = {
        let ws = &cx.state.waves[wi];
        ws.clusters
            .iter()
            .filter(|c| !ws.is_out(c) && ws.steps.iter().any(|s| s.converged.contains_key(*c)))
            .cloned()
            .collect()
    };
    let mut first = None;
    for c in touched {
        if let Some(why) = unreachable(cx, wi, wave, &c) {
            // Not a breach; but no more changes go to it while it may still come back.
            if !cx.state.waves[wi].is_out(&c) {
                first.get_or_insert(format!("{c}: {why}"));
            }
            continue;
        }
        let obs = observed(cx, wi, wave, &c);
        let breach = cluster::failing_gate(&obs)
            .map(|g| {
                (
                    g.gate.clone(),
                    format!("gate {} failed: {}", g.gate, g.reason),
                )
            })
            .or_else(|| cluster::unhealthy(&obs).map(|r| ("flux".to_string(), r)));
        if let Some((gate, why)) = breach {
            cx.state.waves[wi].gate_log.push(GateRecord {
                time: cx.now,
                cluster: c.clone(),
                gate,
                ok: false,
                reason: why.clone(),
            });
            cx.note(format!("wave {} cluster {c}: {why}", wave.name));
            cx.state.waves[wi].failed.insert(c.clone(), why.clone());
            first.get_or_insert(format!("{c}: {why}"));
        }
    }
    if cx.state.waves[wi].failed.len() > allowance(wave, cx.state.waves[wi].clusters.len()) {
        fail_wave(cx, wi, wave);
    }
    first
}

/// `onUnreachable: skip`: whether `c` is unreachable (Some(why)), tracking since when in the
/// wave's state; once it has been for `unreachableAfter` without a break it is skipped (by
/// "fleetwave", not a failure). A cluster that answers again starts over. With `wait`, None:
/// the cluster is judged as it always was.
fn unreachable(cx: &mut Ctx, wi: usize, wave: &Wave, c: &str) -> Option<String> {
    let OnUnreachable::Skip(after) = wave.on_unreachable else {
        return None;
    };
    let Some(why) = cluster::unreachable(cx.world.clusters.get(c)) else {
        cx.state.waves[wi].unreachable_since.remove(c);
        return None;
    };
    let now = cx.now;
    let ws = &mut cx.state.waves[wi];
    let since = *ws.unreachable_since.entry(c.to_string()).or_insert(now);
    let due = since + Duration::from_std(after).unwrap_or_default();
    let at = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    if now < due {
        cx.wake(due);
        return Some(format!(
            "unreachable since {} ({why}); skipped at {} unless it answers (onUnreachable: skip)",
            at(since),
            at(due)
        ));
    }
    // Nothing in the fleet answers: more likely fleetwave is cut off (its kubeconfig, the
    // hub) than every cluster gone at once. Skipping them all would empty the wave.
    let seen = cx.world.clusters.values();
    if !seen
        .into_iter()
        .any(|o| cluster::unreachable(Some(o)).is_none())
    {
        return Some(format!(
            "unreachable since {} ({why}); not skipped while no cluster of the fleet answers",
            at(since)
        ));
    }
    ws.unreachable_since.remove(c);
    let reason = format!(
        "unreachable since {} ({why}), longer than unreachableAfter {} (onUnreachable: skip)",
        at(since),
        humantime::format_duration(after)
    );
    let record = crate::core::state::SkipRecord {
        by: "fleetwave".into(),
        at: now,
        reason: reason.clone(),
    };
    ws.skipped.insert(c.to_string(), record);
    cx.note(format!("wave {} cluster {c}: skipped: {reason}", wave.name));
    Some(reason)
}

/// The manual command (the app fills in `--remote` and `--plan`), or, with
/// `failurePolicy: rollback`, that the rollback is automatic: never both.
fn rollback_hint(wave: &Wave) -> String {
    match wave.failure_policy {
        crate::core::plan::FailurePolicy::Rollback => ROLLBACK_AUTOMATIC.to_string(),
        crate::core::plan::FailurePolicy::Halt | crate::core::plan::FailurePolicy::Continue => {
            format!("{ROLLBACK_COMMAND} --wave {}", wave.name)
        }
    }
}

/// The start of a manual rollback hint; the app replaces it with the real command line.
pub const ROLLBACK_COMMAND: &str = "fleetwave rollback --plan <plan>";
/// The hint of a wave whose failure policy rolls back by itself.
pub const ROLLBACK_AUTOMATIC: &str = "automatic (failurePolicy: rollback); what it cannot revert is listed in the plan's halt reason";

/// Halt the plan on wave `wi`. Once per wave: the soak gates and the convergence check may
/// both find the failure budget spent in one tick.
fn fail_wave(cx: &mut Ctx, wi: usize, wave: &Wave) {
    let ws = &mut cx.state.waves[wi];
    if ws.status == WaveStatus::Failed {
        return;
    }
    ws.status = WaveStatus::Failed;
    ws.finished_at = Some(cx.now);
    let failed: Vec<String> = ws.failed.keys().cloned().collect();
    let reasons: Vec<String> = ws.failed.iter().map(|(c, r)| format!("{c}: {r}")).collect();
    let reason = format!(
        "wave {} failed ({} of {} clusters, maxFailures {}): {}",
        wave.name,
        failed.len(),
        ws.clusters.len(),
        allowance(wave, ws.clusters.len()),
        reasons.join("; ")
    );
    cx.state.status = PlanStatus::Halted;
    cx.state.reason = Some(reason.clone());
    cx.note(format!("HALT: {reason}"));
    cx.held = Some(reason.clone());
    let alert = Alert {
        plan: cx.plan.name.clone(),
        wave: wave.name.clone(),
        reason,
        failed_clusters: failed.clone(),
        rollback_hint: rollback_hint(wave),
    };
    cx.emit(Event::alert(
        format!("alert/{}/{}", cx.plan.name, wave.name),
        cx.now,
        alert,
    ));
    for c in &failed {
        telemetry(cx, wi, c, Outcome::Failed);
    }
    halt_statuses(cx);
    if wave.failure_policy == crate::core::plan::FailurePolicy::Rollback {
        cx.state.waves[wi].auto_rollback = Some(crate::core::state::AutoRollback {
            requested_at: cx.now,
            ..Default::default()
        });
        cx.note(format!(
            "wave {}: failurePolicy rollback: rolling back what is reversible",
            wave.name
        ));
        rollback_effects(cx);
    }
}

/// The automatic rollbacks asked for and not done yet.
fn rollback_effects(cx: &mut Ctx) {
    for (wi, ws) in cx.state.waves.iter().enumerate() {
        if ws.auto_rollback.as_ref().is_some_and(|r| !r.done)
            && !cx
                .effects
                .iter()
                .any(|e| matches!(e, Effect::Rollback { wave } if *wave == wi))
        {
            cx.effects.push(Effect::Rollback { wave: wi });
        }
    }
}

/// A halted plan: every open step PR gets a failure status.
fn halt_statuses(cx: &mut Ctx) {
    let reason = cx
        .state
        .reason
        .clone()
        .unwrap_or_else(|| "plan halted".into());
    for wi in 0..cx.state.waves.len() {
        for si in 0..cx.state.waves[wi].steps.len() {
            let s = &cx.state.waves[wi].steps[si];
            if s.status != StepStatus::Open {
                continue;
            }
            let Some(pr) = cx.world.prs.get(&s.branch).filter(|p| p.open) else {
                continue;
            };
            let head = pr.head.clone();
            cx.status(
                wi,
                si,
                &head,
                GateState::Failure,
                format!("plan halted, will not merge: {reason}"),
            );
        }
    }
}

fn telemetry(cx: &mut Ctx, wi: usize, cluster: &str, outcome: Outcome) {
    let ws = &cx.state.waves[wi];
    let changes: Vec<&ChangeRecord> = ws
        .steps
        .iter()
        .filter(|s| s.merged_commit.is_some())
        .flat_map(|s| s.changes.iter())
        .filter(|c| c.cluster == cluster)
        .collect();
    let last = |what: Changed| {
        changes
            .iter()
            .rev()
            .find(|c| c.what == what)
            .map(|c| c.to.clone())
    };
    let t = Telemetry {
        cluster_id: cluster.to_string(),
        target_infrastructure: cx
            .world
            .infra
            .get(cluster)
            .cloned()
            .unwrap_or_else(|| "unknown".into()),
        template: last(Changed::Template),
        kubernetes_version: cx
            .plan
            .target
            .as_ref()
            .filter(|_| changes.iter().any(|c| c.what.is_kubernetes()))
            .map(|t| t.canonical()),
        gitops_base: last(Changed::GitopsBase),
        plan: cx.plan.name.clone(),
        wave: ws.name.clone(),
        outcome,
        started_at: ws.started_at.unwrap_or(cx.now),
        finished_at: cx.now,
    };
    let kind = match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
    };
    let id = format!("telemetry/{}/{}/{cluster}/{kind}", cx.plan.name, ws.name);
    cx.emit(Event::telemetry(id, cx.now, t));
}

/// Whether `now` is inside the window, and when it next opens (or now if open).
pub fn window_state(w: &Window, now: DateTime<Utc>) -> (bool, DateTime<Utc>) {
    let tz: chrono_tz::Tz = w
        .time_zone
        .as_deref()
        .and_then(|z| z.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    let day_ok = |d: chrono::Weekday| {
        w.days.is_empty()
            || w.days
                .iter()
                .any(|x| x.eq_ignore_ascii_case(&d.to_string()))
    };
    let local = now.with_timezone(&tz);
    let minute = |t: &DateTime<chrono_tz::Tz>| {
        t.format("%H").to_string().parse::<u32>().unwrap_or(0) * 60
            + t.format("%M").to_string().parse::<u32>().unwrap_or(0)
    };
    let m = minute(&local);
    if day_ok(local.weekday()) && m >= w.start && m < w.end {
        return (true, now);
    }
    // Next opening: today's start if still ahead, else the next allowed day's start.
    for days in 0..8 {
        let date = local.date_naive() + Duration::days(days);
        if !day_ok(date.weekday()) {
            continue;
        }
        let start = date
            .and_hms_opt(w.start / 60, w.start % 60, 0)
            .expect("valid time");
        if let Some(t) = tz.from_local_datetime(&start).earliest() {
            let t = t.with_timezone(&Utc);
            if t > now {
                return (false, t);
            }
        }
    }
    (false, now + Duration::days(7))
}

#[cfg(test)]
mod tests {
    use super::tests_support::{healthy, plan, t};
    use super::*;
    use crate::core::cluster::{ClusterObservation, Condition, GateResult};
    use chrono::TimeZone;

    const PLAN: &str = r#"apiVersion: fleet.opencenter.cloud/v1alpha1
kind: FleetUpgradePlan
metadata: {name: p}
spec:
  targetVersion: v1.33.5
  waves:
    - name: canary
      clusterSelector: {matchLabels: {w: canary}}
      validation: {healthCheckDuration: 1h, automated: true}
    - name: prod
      clusterSelector: {matchLabels: {w: prod}}
      validation: {healthCheckDuration: 2h, automated: false}
      maxFailures: 1
      progressDeadline: 1h
"#;
    const BASE: &str = "1000000000000000000000000000000000000001";
    const HEAD0: &str = "2000000000000000000000000000000000000002";
    const MERGE0: &str = "3000000000000000000000000000000000000003";
    const HEAD1: &str = "4000000000000000000000000000000000000004";
    const MERGE1: &str = "5000000000000000000000000000000000000005";

    /// The state after the reconciler confirmed every status it was asked to post.
    fn confirm(d: &Decision) -> PlanState {
        let mut st = d.state.clone();
        for e in &d.effects {
            if let Effect::SetStatus {
                wave,
                step,
                head,
                state,
                description,
            } = e
            {
                st.waves[*wave].steps[*step].posted = Some(PostedStatus {
                    head: head.clone(),
                    state: *state,
                    description: description.clone(),
                });
            }
        }
        st
    }

    fn change(c: &str) -> ChangeRecord {
        ChangeRecord {
            cluster: c.into(),
            file: format!("{c}.yaml"),
            field: "spec.version".into(),
            what: Changed::Kubernetes(Some(crate::core::locate::Role::ControlPlane)),
            from: "v1.32.4".into(),
            to: "v1.33.5".into(),
        }
    }

    fn inputs() -> Vec<WaveInput> {
        let step = |w: &str, cs: &[&str]| StepPlan {
            index: 1,
            id: "kubernetes-v1-33-5".into(),
            title: "Kubernetes v1.33.5".into(),
            kubernetes: None,
            branch: format!("fleetwave/p/{w}/1"),
            changes: cs.iter().map(|c| change(c)).collect::<Vec<_>>().into(),
            batch: None,
            clusters: Vec::new(),
        };
        vec![
            WaveInput {
                clusters: vec!["c1".into()],
                steps: vec![step("canary", &["c1"])],
                batches: Vec::new(),
                windows: BTreeMap::new(),
                joined: Vec::new(),
            },
            WaveInput {
                clusters: vec!["c2".into(), "c3".into()],
                steps: vec![step("prod", &["c2", "c3"])],
                batches: Vec::new(),
                windows: BTreeMap::new(),
                joined: Vec::new(),
            },
        ]
    }

    fn failing(at: &str) -> ClusterObservation {
        let mut o = healthy(BASE);
        o.kustomizations[0].last_attempted_revision = Some(format!("main@sha1:{at}"));
        o.kustomizations[0].conditions = vec![Condition::new(
            "Ready",
            "False",
            "HealthCheckFailed",
            "timeout",
        )];
        o
    }

    fn descends(a: &str, b: &str) -> bool {
        a == b || (a == MERGE1 && (b == MERGE0 || b == BASE)) || (a == MERGE0 && b == BASE)
    }

    struct W {
        now: DateTime<Utc>,
        base: String,
        desired: BTreeMap<String, Desired>,
        prs: BTreeMap<String, PrObs>,
        clusters: BTreeMap<String, ClusterObservation>,
    }

    impl W {
        fn new(now: DateTime<Utc>) -> Self {
            let mut desired = BTreeMap::new();
            desired.insert(
                "fleetwave/p/canary/1".to_string(),
                Desired {
                    commit: HEAD0.into(),
                    tree: "t0".into(),
                },
            );
            W {
                now,
                base: BASE.into(),
                desired,
                prs: BTreeMap::new(),
                clusters: BTreeMap::new(),
            }
        }
        fn decide(&self, p: &Plan, st: &PlanState) -> Decision {
            let world = World {
                now: self.now,
                base_head: self.base.clone(),
                plan_hash: "h".into(),
                waves: inputs(),
                desired: self.desired.clone(),
                prs: self.prs.clone(),
                clusters: self.clusters.clone(),
                descends: &descends,
                infra: BTreeMap::new(),
                reviews: false,
            };
            decide(p, st, &world)
        }
        fn open_pr(&mut self, branch: &str, head: &str, tree: &str) {
            self.prs.insert(
                branch.into(),
                PrObs {
                    head: head.into(),
                    tree: tree.into(),
                    base: self.base.clone(),
                    open: true,
                    ..Default::default()
                },
            );
        }
        fn merged(&mut self, branch: &str, commit: &str, at: DateTime<Utc>) {
            let pr = self.prs.get_mut(branch).unwrap();
            pr.open = false;
            pr.merged = Some((commit.into(), at));
        }
    }

    /// Drive the canary to a merged, converged, soaked state; returns the state after its soak.
    fn through_canary(p: &Plan) -> (PlanState, W) {
        let mut w = W::new(t(0));
        let d = w.decide(p, &PlanState::default());
        assert!(
            d.effects.contains(&Effect::PushStep {
                wave: 0,
                step: 0,
                commit: HEAD0.into(),
                expected: None
            }),
            "{:?}",
            d.effects
        );
        assert!(
            !d.effects
                .iter()
                .any(|e| matches!(e, Effect::PushStep { wave: 1, .. })),
            "a later wave was opened early"
        );
        w.open_pr("fleetwave/p/canary/1", HEAD0, "t0");
        w.now = t(5);
        let d = w.decide(p, &d.state);
        assert!(
            d.effects.contains(&Effect::Merge {
                wave: 0,
                step: 0,
                head: HEAD0.into()
            }),
            "{:?}",
            d.effects
        );
        w.merged("fleetwave/p/canary/1", MERGE0, t(6));
        w.base = MERGE0.into();
        w.now = t(10);
        // Flux has not applied the merge yet: the step waits.
        w.clusters.insert("c1".into(), healthy(BASE));
        let d = w.decide(p, &d.state);
        assert_eq!(d.state.waves[0].steps[0].status, StepStatus::Merged);
        assert!(!d.state.waves[0].steps[0].merged_by_human);
        assert_eq!(d.state.waves[0].status, WaveStatus::InProgress);
        w.clusters.insert("c1".into(), healthy(MERGE0));
        w.now = t(20);
        let d = w.decide(p, &d.state);
        assert_eq!(d.state.waves[0].status, WaveStatus::Soaking);
        assert_eq!(d.wake_at, Some(t(80)));
        w.now = t(79);
        let d = w.decide(p, &d.state);
        assert_eq!(
            d.state.waves[0].status,
            WaveStatus::Soaking,
            "soak ended early"
        );
        w.now = t(80);
        w.desired.insert(
            "fleetwave/p/prod/1".into(),
            Desired {
                commit: HEAD1.into(),
                tree: "t1".into(),
            },
        );
        let d = w.decide(p, &d.state);
        (d.state, w)
    }

    #[test]
    fn waves_and_steps_go_in_order_and_soak_from_convergence() {
        let p = plan(PLAN);
        let (st, _) = through_canary(&p);
        assert_eq!(st.waves[0].status, WaveStatus::Succeeded);
        assert_eq!(st.waves[0].soak_started_at, Some(t(20)));
        assert_eq!(st.waves[1].status, WaveStatus::InProgress);
        assert_eq!(st.waves[1].steps[0].status, StepStatus::Open);
        assert_eq!(st.events.len(), 1, "one telemetry event for c1");
    }

    #[test]
    fn a_gate_breach_seen_while_converging_halts_once() {
        let p = plan(PLAN);
        let mut w = W::new(t(0));
        let mut st = w.decide(&p, &PlanState::default()).state;
        w.open_pr("fleetwave/p/canary/1", HEAD0, "t0");
        st = w.decide(&p, &st).state;
        w.merged("fleetwave/p/canary/1", MERGE0, t(1));
        let mut alert = healthy(MERGE0);
        alert.gates[0] = GateResult {
            gate: "prometheus".into(),
            ok: false,
            reason: "KubeNodeNotReady firing".into(),
        };
        w.clusters.insert("c1".into(), alert);
        w.now = t(10);
        let d = w.decide(&p, &st);
        assert_eq!(d.state.status, PlanStatus::Halted);
        // The gate check and the convergence check both find the budget spent: one halt.
        let halts = d.notes.iter().filter(|n| n.starts_with("HALT")).count();
        assert_eq!(halts, 1, "{:?}", d.notes);
    }

    #[test]
    fn a_gate_breach_during_soak_fails_the_wave_and_halts() {
        let p = plan(PLAN);
        let mut w = W::new(t(0));
        let mut st = w.decide(&p, &PlanState::default()).state;
        w.open_pr("fleetwave/p/canary/1", HEAD0, "t0");
        st = w.decide(&p, &st).state;
        w.merged("fleetwave/p/canary/1", MERGE0, t(1));
        w.clusters.insert("c1".into(), healthy(MERGE0));
        w.now = t(10);
        st = w.decide(&p, &st).state;
        assert_eq!(st.waves[0].status, WaveStatus::Soaking);
        let mut alert = healthy(MERGE0);
        alert.gates[0] = GateResult {
            gate: "prometheus".into(),
            ok: false,
            reason: "KubeNodeNotReady firing".into(),
        };
        w.clusters.insert("c1".into(), alert);
        w.now = t(40);
        let d = w.decide(&p, &st);
        assert_eq!(d.state.waves[0].status, WaveStatus::Failed);
        assert_eq!(d.state.status, PlanStatus::Halted);
        assert!(d.held.is_some());
        let alerts = d
            .state
            .events
            .values()
            .filter(|o| o.event.alert.is_some())
            .count();
        assert_eq!(alerts, 1);
        // Next tick: nothing new, no second alert, the prod wave never starts.
        w.now = t(200);
        let d2 = w.decide(&p, &d.state);
        assert_eq!(d2.state.events.len(), d.state.events.len());
        assert_eq!(d2.state.waves[1].status, WaveStatus::Pending);
        assert!(
            d2.effects.iter().all(|e| matches!(e, Effect::Send { .. })),
            "{:?}",
            d2.effects
        );
    }

    #[test]
    fn manual_waves_wait_for_a_reviewer_and_human_merges_are_recorded() {
        let p = plan(PLAN);
        let (st, mut w) = through_canary(&p);
        w.open_pr("fleetwave/p/prod/1", HEAD1, "t1");
        w.now = t(81);
        let d = w.decide(&p, &st);
        assert!(
            !d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })),
            "merged a manual wave"
        );
        let st = confirm(&d);
        let posted = st.waves[1].steps[0].posted.clone().unwrap();
        assert_eq!(posted.state, GateState::Success);
        assert!(
            posted.description.contains("waiting for a reviewer"),
            "{}",
            posted.description
        );
        w.merged("fleetwave/p/prod/1", MERGE1, t(82));
        let d = w.decide(&p, &st);
        let s = &d.state.waves[1].steps[0];
        assert!(s.merged_by_human);
        assert_eq!(s.gate_green_at_merge, Some(true));
    }

    #[test]
    fn a_human_merge_before_the_gate_is_green_is_reported() {
        let p = plan(PLAN);
        let mut w = W::new(t(0));
        let st = w.decide(&p, &PlanState::default()).state;
        // The status posted was pending; someone merges anyway.
        w.open_pr("fleetwave/p/canary/1", HEAD0, "t0");
        w.merged("fleetwave/p/canary/1", MERGE0, t(1));
        let d = w.decide(&p, &st);
        let s = &d.state.waves[0].steps[0];
        assert!(s.merged_by_human);
        assert_eq!(s.gate_green_at_merge, Some(false));
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains("BEFORE the gate was green"))
        );
    }

    #[test]
    fn max_failures_and_progress_deadline() {
        let p = plan(PLAN);
        let (st, mut w) = through_canary(&p);
        w.open_pr("fleetwave/p/prod/1", HEAD1, "t1");
        w.merged("fleetwave/p/prod/1", MERGE1, t(90));
        w.base = MERGE1.into();
        w.clusters.insert("c2".into(), healthy(MERGE1));
        w.clusters.insert("c3".into(), healthy(MERGE0)); // never gets there
        w.now = t(100);
        let d = w.decide(&p, &st);
        assert_eq!(
            d.state.waves[1].steps[0].status,
            StepStatus::Merged,
            "waits for c3"
        );
        assert_eq!(d.wake_at, Some(t(150)), "wakes at the progress deadline");
        // Past the deadline c3 fails; maxFailures 1 lets the wave go on to soak.
        w.now = t(151);
        let d = w.decide(&p, &d.state);
        assert!(d.state.waves[1].failed.contains_key("c3"));
        assert_eq!(d.state.waves[1].status, WaveStatus::Soaking);
        // A second failure exceeds the budget.
        w.clusters.insert("c2".into(), failing(MERGE1));
        w.now = t(160);
        let d = w.decide(&p, &d.state);
        assert_eq!(d.state.waves[1].status, WaveStatus::Failed);
        assert_eq!(d.state.status, PlanStatus::Halted);
    }

    #[test]
    fn windows_hold_automated_merges() {
        let text = PLAN.replace("      validation: {healthCheckDuration: 1h, automated: true}", "      validation: {healthCheckDuration: 1h, automated: true}\n      window: {days: [Mon], start: \"10:00\", end: \"12:00\", timeZone: UTC}");
        let p = plan(&text);
        let mut w = W::new(t(0)); // Monday 08:00 UTC
        let st = w.decide(&p, &PlanState::default()).state;
        w.open_pr("fleetwave/p/canary/1", HEAD0, "t0");
        let d = w.decide(&p, &st);
        assert!(!d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })));
        assert_eq!(d.wake_at, Some(t(120)));
        w.now = t(121);
        let d = w.decide(&p, &d.state);
        assert!(d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })));
    }

    #[test]
    fn paused_plans_do_nothing() {
        let p = plan(&PLAN.replace(
            "  targetVersion: v1.33.5",
            "  targetVersion: v1.33.5\n  paused: true",
        ));
        let w = W::new(t(0));
        let d = w.decide(&p, &PlanState::default());
        assert_eq!(d.state.status, PlanStatus::Paused);
        assert!(d.effects.is_empty());
        assert!(d.held.is_some());
    }

    #[test]
    fn foreign_commits_block_the_merge_and_a_moved_base_regenerates() {
        let p = plan(PLAN);
        let mut w = W::new(t(0));
        let st = w.decide(&p, &PlanState::default()).state;
        w.open_pr("fleetwave/p/canary/1", HEAD0, "t0");
        w.prs.get_mut("fleetwave/p/canary/1").unwrap().foreign = vec!["abc by bob".into()];
        let d = w.decide(&p, &st);
        assert!(
            !d.effects
                .iter()
                .any(|e| matches!(e, Effect::Merge { .. } | Effect::PushStep { .. }))
        );
        assert_eq!(
            confirm(&d).waves[0].steps[0].posted.as_ref().unwrap().state,
            GateState::Failure
        );
        assert!(d.held.is_some());
        // Without foreign commits but on an old base: rebuilt with a lease on the old head.
        w.prs
            .get_mut("fleetwave/p/canary/1")
            .unwrap()
            .foreign
            .clear();
        w.base = "6000000000000000000000000000000000000006".into();
        w.desired.insert(
            "fleetwave/p/canary/1".into(),
            Desired {
                commit: "7000000000000000000000000000000000000007".into(),
                tree: "t0b".into(),
            },
        );
        let d = w.decide(&p, &d.state);
        assert!(
            d.effects.contains(&Effect::PushStep {
                wave: 0,
                step: 0,
                commit: "7000000000000000000000000000000000000007".into(),
                expected: Some(HEAD0.into())
            }),
            "{:?}",
            d.effects
        );
    }

    #[test]
    fn unsent_events_are_retried_and_every_acting_tick_bumps_the_state() {
        let p = plan(PLAN);
        let (st, w) = through_canary(&p);
        let d = w.decide(&p, &st);
        assert!(
            d.effects.iter().any(|e| matches!(e, Effect::Send { .. })),
            "unsent telemetry is retried"
        );
        assert_eq!(d.state.tick, st.tick + 1);
    }

    #[test]
    fn window_state_follows_the_time_zone() {
        let w = Window {
            days: vec!["Mon".into()],
            start: 9 * 60,
            end: 17 * 60,
            time_zone: Some("Europe/Berlin".into()),
        };
        // Monday 07:30 UTC is 08:30 in Berlin: closed, opens at 08:00 UTC.
        let (open, next) = window_state(&w, Utc.with_ymd_and_hms(2026, 11, 23, 7, 30, 0).unwrap());
        assert!(!open);
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap());
        assert!(window_state(&w, Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()).0);
        // After Monday's window: the next Monday.
        let (_, next) = window_state(&w, Utc.with_ymd_and_hms(2026, 11, 23, 17, 0, 0).unwrap());
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap());
    }
}

#[cfg(test)]
mod review_fixes {
    //! Regression tests for the review of the rollout engine (gates between steps, approval
    //! gates, merge intent, resumed halts).
    use super::tests_support::*;
    use super::*;
    use crate::core::cluster::GateResult;

    #[test]
    fn a_gate_breach_on_an_upgraded_cluster_holds_the_next_step_and_fails_the_wave() {
        // Two-step wave: control planes then workers; c1 breaks after step 1 converged.
        let p = plan(PLAN_SPLIT);
        let mut w = world(t(0));
        let st = w.decide(&p, &PlanState::default()).state;
        w.open_pr(B1, H1, "t1");
        let st = w.decide(&p, &st).state;
        w.merged(B1, M1, t(1));
        w.base = M1.into();
        w.clusters.insert("c1".into(), healthy(M1));
        w.now = t(10);
        w.desired.insert(
            B2.into(),
            Desired {
                commit: H2.into(),
                tree: "t2".into(),
            },
        );
        let st = w.decide(&p, &st).state;
        assert_eq!(st.waves[0].steps[0].status, StepStatus::Converged);
        w.open_pr(B2, H2, "t2");
        let mut firing = healthy(M1);
        firing.gates[0] = GateResult {
            gate: "prometheus".into(),
            ok: false,
            reason: "KubeAPIErrorsHigh".into(),
        };
        w.clusters.insert("c1".into(), firing);
        w.now = t(20);
        let d = w.decide(&p, &st);
        assert!(
            !d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })),
            "merged into a breaking cluster: {:?}",
            d.effects
        );
        assert_eq!(d.state.waves[0].status, WaveStatus::Failed);
        assert_eq!(d.state.status, PlanStatus::Halted);
    }

    #[test]
    fn approval_gates_stay_pending_until_an_approving_review() {
        let p = plan(&PLAN_SPLIT.replace(
            "automated: true}",
            "automated: true}\n      gates: [{type: approval, users: [alice]}]",
        ));
        let mut w = world(t(0));
        w.reviews = true;
        let st = w.decide(&p, &PlanState::default()).state;
        w.open_pr(B1, H1, "t1");
        let d = w.decide(&p, &st);
        assert!(!d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })));
        let pending = d.effects.iter().any(|e| matches!(e, Effect::SetStatus { state: GateState::Pending, description, .. } if description.contains("approving review")));
        assert!(pending, "{:?}", d.effects);
        w.prs.get_mut(B1).unwrap().approved = true;
        let d = w.decide(&p, &d.state);
        assert!(
            d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })),
            "{:?}",
            d.effects
        );
    }

    #[test]
    fn a_human_merge_of_another_head_is_not_taken_for_ours() {
        let p = plan(PLAN_SPLIT);
        let mut w = world(t(0));
        let st = w.decide(&p, &PlanState::default()).state;
        w.open_pr(B1, H1, "t1");
        let st = w.decide(&p, &st).state;
        assert_eq!(st.waves[0].steps[0].merge_intent.as_deref(), Some(H1));
        // Someone pushed H1b and merged it by hand before fleetwave's merge went through.
        w.prs.get_mut(B1).unwrap().head = "9999999999999999999999999999999999999999".into();
        w.merged(B1, M1, t(1));
        let d = w.decide(&p, &st);
        assert!(d.state.waves[0].steps[0].merged_by_human);
    }
}

#[cfg(test)]
mod drain_blockers {
    use super::tests_support::*;
    use super::*;
    use crate::core::cluster::DrainBlocker;

    fn blocker(ns: &str, name: &str, pods: u32) -> DrainBlocker {
        DrainBlocker {
            namespace: ns.into(),
            name: name.into(),
            expected_pods: pods,
        }
    }

    /// Through the control-plane step (drain blockers do not hold it) to the workers' PR,
    /// open on c1 whose PDBs are `blockers`; returns that tick's decision.
    fn at_workers(p: &Plan, blockers: Option<Vec<DrainBlocker>>) -> (Decision, Wd) {
        let mut w = world(t(0));
        let mut obs = healthy(BASE);
        obs.drain_blockers = blockers.clone();
        w.clusters.insert("c1".into(), obs);
        let st = w.decide(p, &PlanState::default()).state;
        w.open_pr(B1, H1, "t1");
        let d = w.decide(p, &st);
        assert!(
            d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })),
            "the control-plane step drains nothing: {:?}",
            d.effects
        );
        w.merged(B1, M1, t(1));
        w.base = M1.into();
        let mut obs = healthy(M1);
        obs.drain_blockers = blockers;
        w.clusters.insert("c1".into(), obs);
        w.now = t(10);
        w.desired.insert(
            B2.into(),
            Desired {
                commit: H2.into(),
                tree: "t2".into(),
            },
        );
        let st = w.decide(p, &d.state).state;
        assert_eq!(st.waves[0].steps[0].status, StepStatus::Converged);
        w.open_pr(B2, H2, "t2");
        w.now = t(20);
        (w.decide(p, &st), w)
    }

    fn merges(d: &Decision) -> bool {
        d.effects.iter().any(|e| matches!(e, Effect::Merge { .. }))
    }

    #[test]
    fn a_worker_step_on_a_cluster_with_drain_blockers_is_held_before_merge() {
        let p = plan(PLAN_SPLIT);
        let pdbs = vec![blocker("kafka", "kafka-pdb", 3), blocker("zk", "zk-pdb", 3)];
        let (d, mut w) = at_workers(&p, Some(pdbs));
        assert!(!merges(&d), "merged over a drain blocker: {:?}", d.effects);
        let desc = d
            .effects
            .iter()
            .find_map(|e| match e {
                Effect::SetStatus {
                    step: 1,
                    state: GateState::Pending,
                    description,
                    ..
                } => Some(description.clone()),
                _ => None,
            })
            .expect("a pending status on the workers' step");
        assert_eq!(
            desc,
            "holding: c1: PodDisruptionBudget kafka/kafka-pdb allows no disruption (3 pods) and 1 more"
        );
        assert!(d.held.as_deref().is_some_and(|h| h.contains("kafka-pdb")));
        // The budget frees up: the next tick merges.
        w.clusters.get_mut("c1").unwrap().drain_blockers = Some(vec![]);
        let d = w.decide(&p, &d.state);
        assert!(merges(&d), "{:?}", d.effects);
    }

    #[test]
    fn allow_drain_blockers_and_missing_pdb_data_do_not_hold() {
        let pdbs = || Some(vec![blocker("zk", "zk-pdb", 3)]);
        let wave_allows = plan(&PLAN_SPLIT.replace(
            "automated: true}\n",
            "automated: true}\n      allowDrainBlockers: true\n",
        ));
        assert!(wave_allows.waves[0].allow_drain_blockers);
        assert!(merges(&at_workers(&wave_allows, pdbs()).0));
        let plan_allows =
            plan(&PLAN_SPLIT.replace("  waves:\n", "  allowDrainBlockers: true\n  waves:\n"));
        assert!(merges(&at_workers(&plan_allows, pdbs()).0));
        // The wave's own setting wins over the plan's.
        let wave_refuses = plan(
            &PLAN_SPLIT
                .replace("  waves:\n", "  allowDrainBlockers: true\n  waves:\n")
                .replace(
                    "automated: true}\n",
                    "automated: true}\n      allowDrainBlockers: false\n",
                ),
        );
        assert!(!merges(&at_workers(&wave_refuses, pdbs()).0));
        // No PodDisruptionBudget data (no per-cluster context): not held.
        assert!(merges(&at_workers(&plan(PLAN_SPLIT), None).0));
    }

    #[test]
    fn allow_drain_blockers_must_be_a_boolean() {
        let text = PLAN_SPLIT.replace(
            "automated: true}\n",
            "automated: true}\n      allowDrainBlockers: maybe\n",
        );
        let err = crate::core::plan::load(std::path::Path::new("p.yaml"), text)
            .err()
            .expect("a non-boolean allowDrainBlockers is refused")
            .to_string();
        assert!(
            err.contains("allowDrainBlockers") || err.contains("boolean"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod templates_offered {
    use super::tests_support::*;
    use super::*;
    use crate::core::cluster::Component;

    /// Tick with a template step's PR open on c1, whose ClusterDeployment offers `offers`.
    fn at_template_step(offers: Option<Vec<String>>) -> (Decision, Wd, Plan) {
        let p = plan(PLAN_SPLIT);
        let mut w = world(t(0));
        let mut obs = healthy(BASE);
        obs.components.push(Component {
            kind: "ClusterDeployment".into(),
            name: "kcm-system/aws-dev".into(),
            role: Role::Whole,
            desired: Some("template aws-standalone-cp-1-0-43".into()),
            running: Some("v1.32.3+k0s.0".into()),
            progress: None,
            offers,
        });
        w.clusters.insert("c1".into(), obs);
        w.template = Some(("aws-standalone-cp-1-0-43", "aws-standalone-cp-1-0-44"));
        let st = w.decide(&p, &PlanState::default()).state;
        w.open_pr(B1, H1, "t1");
        (w.decide(&p, &st), w, p)
    }

    #[test]
    fn a_template_the_deployment_does_not_offer_holds_the_step() {
        let (d, _, _) = at_template_step(Some(vec!["aws-standalone-cp-1-0-45".into()]));
        assert!(!d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })));
        let held = d.held.expect("held");
        assert!(
            held.contains(
                "c1: ClusterDeployment kcm-system/aws-dev offers aws-standalone-cp-1-0-45, \
                 not aws-standalone-cp-1-0-44"
            ),
            "{held}"
        );
        let (d, _, _) = at_template_step(Some(vec![]));
        assert!(d.held.is_some_and(|h| h.contains("offers no upgrade")));
    }

    #[test]
    fn an_offered_template_or_no_restriction_merges() {
        for offers in [Some(vec!["aws-standalone-cp-1-0-44".to_string()]), None] {
            let (d, _, _) = at_template_step(offers.clone());
            assert!(
                d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })),
                "{offers:?}: {:?}",
                d.held
            );
        }
    }
}

#[cfg(test)]
mod deprecated_apis_gate {
    use super::tests_support::*;
    use super::*;
    use crate::core::cluster::DeprecatedApi;

    const GATED: &str = "automated: true}\n      gates: [{type: deprecatedApis}]\n";

    fn api(group: &str, version: &str, resource: &str, removed: &str) -> DeprecatedApi {
        DeprecatedApi {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
            subresource: String::new(),
            removed_release: removed.into(),
        }
    }

    /// The first tick with the control-plane PR (v1.32.4 → v1.33.5) open on c1.
    fn at_control_plane(p: &Plan, apis: Option<Vec<DeprecatedApi>>) -> (Decision, Wd) {
        let mut w = world(t(0));
        let mut obs = healthy(BASE);
        obs.deprecated_apis = apis;
        w.clusters.insert("c1".into(), obs);
        let st = w.decide(p, &PlanState::default()).state;
        w.open_pr(B1, H1, "t1");
        (w.decide(p, &st), w)
    }

    fn merges(d: &Decision) -> bool {
        d.effects.iter().any(|e| matches!(e, Effect::Merge { .. }))
    }

    fn pending(d: &Decision) -> Option<String> {
        d.effects.iter().find_map(|e| match e {
            Effect::SetStatus {
                state: GateState::Pending,
                description,
                ..
            } => Some(description.clone()),
            _ => None,
        })
    }

    #[test]
    fn a_minor_step_waits_while_an_api_its_target_removed_is_still_requested() {
        let p = plan(&PLAN_SPLIT.replace("automated: true}\n", GATED));
        // 1.33 no longer serves what 1.33 removed; what 1.34 removes can wait.
        let apis = vec![
            api("example.io", "v1beta1", "widgets", "1.33"),
            api("other.io", "v1alpha1", "gadgets", "1.34"),
        ];
        let (d, mut w) = at_control_plane(&p, Some(apis));
        assert!(!merges(&d), "merged over a removed API: {:?}", d.effects);
        assert_eq!(
            pending(&d).as_deref(),
            Some(
                "holding: c1: example.io/v1beta1 widgets (removed in 1.33) is still requested \
                 and 1.33 no longer serves it"
            )
        );
        assert!(d.held.as_deref().is_some_and(|h| h.contains("widgets")));
        // The clients moved off it: the next tick merges.
        w.clusters.get_mut("c1").unwrap().deprecated_apis =
            Some(vec![api("other.io", "v1alpha1", "gadgets", "1.34")]);
        assert!(merges(&w.decide(&p, &d.state)));
    }

    #[test]
    fn without_metrics_the_gate_holds_and_without_the_gate_nothing_is_read() {
        let gated = plan(&PLAN_SPLIT.replace("automated: true}\n", GATED));
        let (d, _) = at_control_plane(&gated, None);
        assert!(!merges(&d));
        assert!(pending(&d).is_some_and(|s| s.contains("no deprecated-API data")));
        // No gate: the same requests do not hold the step.
        let apis = vec![api("example.io", "v1beta1", "widgets", "1.33")];
        assert!(merges(&at_control_plane(&plan(PLAN_SPLIT), Some(apis)).0));
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use crate::core::cluster::{Condition, GateResult, KustomizationStatus};
    use chrono::TimeZone;

    pub const PLAN_SPLIT: &str = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata: {name: p}\nspec:\n  targetVersion: v1.33.5\n  waves:\n    - name: canary\n      clusterSelector: {matchLabels: {w: canary}}\n      validation: {healthCheckDuration: 1h, automated: true}\n";
    pub const B1: &str = "fleetwave/p/canary/1";
    pub const B2: &str = "fleetwave/p/canary/2";
    pub const BASE: &str = "1000000000000000000000000000000000000001";
    pub const H1: &str = "2000000000000000000000000000000000000002";
    pub const M1: &str = "3000000000000000000000000000000000000003";
    pub const H2: &str = "4000000000000000000000000000000000000004";

    pub fn plan(text: &str) -> Plan {
        crate::core::plan::load(std::path::Path::new("p.yaml"), text.to_string())
            .unwrap()
            .0
    }

    pub fn t(m: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap() + Duration::minutes(m)
    }

    pub fn healthy(at: &str) -> ClusterObservation {
        ClusterObservation {
            kustomizations: vec![KustomizationStatus {
                name: "apps".into(),
                namespace: "flux-system".into(),
                generation: 1,
                observed_generation: 1,
                conditions: vec![Condition::new(
                    "Ready",
                    "True",
                    "ReconciliationSucceeded",
                    "",
                )],
                last_applied_revision: Some(format!("main@sha1:{at}")),
                last_attempted_revision: Some(format!("main@sha1:{at}")),
                last_applied_origin_revision: None,
                source: None,
                from_fleet: None,
            }],
            gates: vec![GateResult {
                gate: "prometheus".into(),
                ok: true,
                reason: "quiet".into(),
            }],
            ..Default::default()
        }
    }

    fn descends(a: &str, b: &str) -> bool {
        a == b || (a == M1 && b == BASE)
    }

    pub struct Wd {
        pub now: DateTime<Utc>,
        pub base: String,
        pub desired: BTreeMap<String, Desired>,
        pub prs: BTreeMap<String, PrObs>,
        pub clusters: BTreeMap<String, ClusterObservation>,
        pub reviews: bool,
        /// The first step swaps a k0rdent template (from, to) instead of raising versions.
        pub template: Option<(&'static str, &'static str)>,
        /// Cluster → maintenance window.
        pub windows: BTreeMap<String, usize>,
    }

    pub fn world(now: DateTime<Utc>) -> Wd {
        let mut desired = BTreeMap::new();
        desired.insert(
            B1.to_string(),
            Desired {
                commit: H1.into(),
                tree: "t1".into(),
            },
        );
        Wd {
            now,
            base: BASE.into(),
            desired,
            prs: BTreeMap::new(),
            clusters: BTreeMap::new(),
            reviews: false,
            template: None,
            windows: BTreeMap::new(),
        }
    }

    impl Wd {
        pub fn decide(&self, p: &Plan, st: &PlanState) -> Decision {
            let change = |step: &str| match self.template.filter(|_| step == "cp") {
                Some((from, to)) => ChangeRecord {
                    cluster: "c1".into(),
                    file: "c1.yaml".into(),
                    field: "spec.template".into(),
                    what: Changed::Template,
                    from: from.into(),
                    to: to.into(),
                },
                None => ChangeRecord {
                    cluster: "c1".into(),
                    file: "c1.yaml".into(),
                    field: step.into(),
                    what: Changed::Kubernetes(Some(if step == "md" {
                        crate::core::locate::Role::Workers
                    } else {
                        crate::core::locate::Role::ControlPlane
                    })),
                    from: "v1.32.4".into(),
                    to: "v1.33.5".into(),
                },
            };
            let waves = vec![WaveInput {
                clusters: vec!["c1".into()],
                steps: vec![
                    StepPlan {
                        index: 1,
                        id: "control-plane".into(),
                        title: "control planes".into(),
                        kubernetes: None,
                        branch: B1.into(),
                        changes: vec![change("cp")].into(),
                        batch: None,
                        clusters: Vec::new(),
                    },
                    StepPlan {
                        index: 2,
                        id: "workers".into(),
                        title: "workers".into(),
                        kubernetes: None,
                        branch: B2.into(),
                        changes: vec![change("md")].into(),
                        batch: None,
                        clusters: Vec::new(),
                    },
                ],
                batches: Vec::new(),
                windows: self.windows.clone(),
                joined: Vec::new(),
            }];
            let world = World {
                now: self.now,
                base_head: self.base.clone(),
                plan_hash: "h".into(),
                waves,
                desired: self.desired.clone(),
                prs: self.prs.clone(),
                clusters: self.clusters.clone(),
                descends: &descends,
                infra: BTreeMap::new(),
                reviews: self.reviews,
            };
            decide(p, st, &world)
        }
        pub fn open_pr(&mut self, branch: &str, head: &str, tree: &str) {
            self.prs.insert(
                branch.into(),
                PrObs {
                    head: head.into(),
                    tree: tree.into(),
                    base: self.base.clone(),
                    open: true,
                    ..Default::default()
                },
            );
        }
        pub fn merged(&mut self, branch: &str, commit: &str, at: DateTime<Utc>) {
            let pr = self.prs.get_mut(branch).unwrap();
            pr.open = false;
            pr.merged = Some((commit.into(), at));
        }
    }
}

#[cfg(test)]
mod unreachable_clusters {
    use super::tests_support::*;
    use super::*;

    const SKIP: &str = "      onUnreachable: skip\n      unreachableAfter: 30m\n";

    fn dark() -> ClusterObservation {
        ClusterObservation {
            unobservable: Some("no context for this cluster in the kubeconfig".into()),
            ..Default::default()
        }
    }

    /// Step 1 merged at t(1) as M1; c1 observed as `obs` from then on.
    fn merged_step(p: &Plan, obs: ClusterObservation) -> (PlanState, Wd) {
        let mut w = world(t(0));
        let st = w.decide(p, &PlanState::default()).state;
        w.open_pr(B1, H1, "t1");
        let st = w.decide(p, &st).state;
        w.merged(B1, M1, t(1));
        w.base = M1.into();
        w.clusters.insert("c1".into(), obs);
        // Another cluster of the fleet answers: fleetwave itself is not cut off.
        w.clusters.insert("c9".into(), healthy(M1));
        (st, w)
    }

    #[test]
    fn a_dark_cluster_is_skipped_after_unreachable_after_not_failed() {
        let p = plan(&format!("{PLAN_SPLIT}{SKIP}"));
        let (st, mut w) = merged_step(&p, dark());
        w.now = t(5);
        let d = w.decide(&p, &st);
        let ws = &d.state.waves[0];
        assert_eq!(ws.unreachable_since.get("c1"), Some(&t(5)));
        assert!(ws.skipped.is_empty() && ws.failed.is_empty());
        assert_eq!(d.wake_at, Some(t(35)), "woken when it is due");
        // The same tick again records nothing new.
        let again = w.decide(&p, &d.state);
        assert_eq!(again.state.waves, d.state.waves);
        // It answers again: the clock starts over.
        w.now = t(20);
        w.clusters.insert("c1".into(), healthy(BASE));
        let st = w.decide(&p, &d.state).state;
        assert!(st.waves[0].unreachable_since.is_empty());
        w.now = t(25);
        w.clusters.insert("c1".into(), dark());
        let st = w.decide(&p, &st).state;
        w.now = t(54);
        let st = w.decide(&p, &st).state;
        assert!(st.waves[0].skipped.is_empty(), "25 minutes dark is not 30");
        w.now = t(55);
        let d = w.decide(&p, &st);
        let ws = &d.state.waves[0];
        let rec = &ws.skipped["c1"];
        assert_eq!((rec.by.as_str(), rec.at), ("fleetwave", t(55)));
        assert!(
            rec.reason
                .contains("unreachable since 2026-11-23 08:25 UTC"),
            "{}",
            rec.reason
        );
        assert!(ws.failed.is_empty() && ws.unreachable_since.is_empty());
        assert_eq!(d.state.status, PlanStatus::InProgress);
        assert_eq!(
            ws.steps[0].status,
            StepStatus::Converged,
            "nothing left to wait for"
        );
        let again = w.decide(&p, &d.state);
        assert_eq!(again.state.waves[0].skipped, d.state.waves[0].skipped);
        assert!(
            !again.notes.iter().any(|n| n.contains("skipped")),
            "{:?}",
            again.notes
        );
    }

    #[test]
    fn nobody_is_skipped_while_no_cluster_of_the_fleet_answers() {
        let p = plan(&format!("{PLAN_SPLIT}{SKIP}"));
        let (st, mut w) = merged_step(&p, dark());
        w.clusters.insert("c9".into(), dark());
        w.now = t(5);
        let st = w.decide(&p, &st).state;
        w.now = t(60);
        let d = w.decide(&p, &st);
        assert!(d.state.waves[0].skipped.is_empty());
        assert_eq!(d.state.waves[0].unreachable_since.get("c1"), Some(&t(5)));
        // One answers again: the dark one is skipped on that tick.
        w.clusters.insert("c9".into(), healthy(M1));
        w.now = t(65);
        let d = w.decide(&p, &d.state);
        assert!(d.state.waves[0].skipped.contains_key("c1"));
    }

    #[test]
    fn with_wait_a_dark_cluster_is_waited_for_and_progress_deadline_still_fails_it() {
        let p = plan(&format!("{PLAN_SPLIT}      progressDeadline: 1h\n"));
        let (st, mut w) = merged_step(&p, dark());
        w.now = t(40);
        let st = w.decide(&p, &st).state;
        assert!(st.waves[0].unreachable_since.is_empty() && st.waves[0].skipped.is_empty());
        assert!(st.waves[0].failed.is_empty());
        w.now = t(62);
        let st = w.decide(&p, &st).state;
        assert!(st.waves[0].failed["c1"].contains("progressDeadline"));
        assert!(st.waves[0].skipped.is_empty());
    }

    #[test]
    fn a_reachable_but_failing_cluster_is_a_failure_not_skipped() {
        let p = plan(&format!("{PLAN_SPLIT}{SKIP}"));
        let mut broken = healthy(M1);
        broken.kustomizations[0].conditions = vec![crate::core::cluster::Condition::new(
            "Ready",
            "False",
            "HealthCheckFailed",
            "timeout",
        )];
        broken.kustomizations[0].last_applied_revision = Some(format!("main@sha1:{BASE}"));
        let (st, mut w) = merged_step(&p, broken);
        w.now = t(5);
        let st = w.decide(&p, &st).state;
        assert!(st.waves[0].failed.contains_key("c1"));
        assert!(st.waves[0].skipped.is_empty() && st.waves[0].unreachable_since.is_empty());
    }

    #[test]
    fn a_converged_cluster_going_dark_holds_the_next_step_then_is_skipped_not_failed() {
        let p = plan(&format!("{PLAN_SPLIT}{SKIP}"));
        let (st, mut w) = merged_step(&p, healthy(M1));
        w.now = t(5);
        let st = w.decide(&p, &st).state;
        assert_eq!(st.waves[0].steps[0].status, StepStatus::Converged);
        w.desired.insert(
            B2.into(),
            Desired {
                commit: H2.into(),
                tree: "t2".into(),
            },
        );
        w.open_pr(B2, H2, "t2");
        w.clusters.insert("c1".into(), dark());
        w.now = t(10);
        let d = w.decide(&p, &st);
        assert!(!d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })));
        let held = d.effects.iter().any(|e| matches!(e, Effect::SetStatus { description, .. } if description.contains("c1: unreachable since 2026-11-23 08:10 UTC")));
        assert!(held, "{:?}", d.effects);
        assert!(
            d.state.waves[0].failed.is_empty(),
            "{:?}",
            d.state.waves[0].failed
        );
        w.now = t(41);
        let st = w.decide(&p, &d.state).state;
        assert!(st.waves[0].skipped.contains_key("c1"));
        assert!(st.waves[0].failed.is_empty());
        assert_eq!(st.status, PlanStatus::InProgress);
    }
}

#[cfg(test)]
mod maintenance_windows {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn a_batch_merges_only_inside_its_clusters_maintenance_windows() {
        let p = plan(&format!(
            "{PLAN_SPLIT}  maintenanceWindows:\n    - clusters: [c1]\n      window: {{start: \"10:00\", end: \"11:00\"}}\n"
        ));
        let mut w = world(t(0));
        w.windows.insert("c1".into(), 0);
        let st = w.decide(&p, &PlanState::default()).state;
        w.open_pr(B1, H1, "t1");
        let d = w.decide(&p, &st);
        assert!(!d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })));
        let held = d.held.clone().unwrap_or_default();
        assert!(
            held.contains("outside the maintenance window: c1 (maintenanceWindows[0], opens 2026-11-23 10:00 UTC)"),
            "{held}"
        );
        assert_eq!(d.wake_at, Some(t(120)));
        let again = w.decide(&p, &d.state);
        assert_eq!(
            again.state.waves, d.state.waves,
            "a held tick again records nothing"
        );
        w.now = t(120);
        let d = w.decide(&p, &d.state);
        assert!(d.held.is_none(), "{:?}", d.held);
        assert!(d.effects.iter().any(|e| matches!(e, Effect::Merge { .. })));
    }
}
