//! Conflicts between plans of one repository, from each plan's planned edits: two plans that
//! edit the same field of the same cluster, or both move one cluster's Kubernetes version,
//! must not both run. The later plan (by the commit that created its file) waits for the
//! earlier one to complete; `spec.after` makes an order explicit whatever the edits.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::state::ChangeRecord;

/// One plan as the conflict rule sees it.
#[derive(Debug, Clone)]
pub struct PlanEdits {
    pub name: String,
    /// Where the plan's file was created in the base's first-parent history: lower is
    /// earlier. Plans created by one commit are ordered by name.
    pub created: u64,
    /// `spec.after`.
    pub after: Vec<String>,
    /// The plan's state says it succeeded: it holds nothing back any more.
    pub complete: bool,
    /// Its rollout has begun (the state has waves): of two clashing plans where only one has
    /// begun, that one goes on and the other waits, whatever their creation order.
    pub started: bool,
    /// Every change the plan makes, all waves.
    pub changes: Vec<ChangeRecord>,
}

/// Why one plan must not run with another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clash {
    /// Both edit these fields (`field of cluster c in file`).
    Fields(Vec<String>),
    /// Both move these clusters' Kubernetes version.
    Kubernetes(Vec<String>),
}

/// What holds a plan back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// A plan that clashes, goes first (created earlier, or already rolling out) and is not
    /// complete.
    Earlier {
        plan: String,
        clash: Vec<Clash>,
        /// It goes first because its rollout had begun (not by creation order).
        running: bool,
    },
    /// A plan named in `spec.after` that is not complete.
    After { plan: String, found: bool },
    /// `spec.after` loops back to this plan.
    Cycle(Vec<String>),
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::Earlier {
                plan,
                clash,
                running,
            } => {
                let why = if *running {
                    "already rolling out"
                } else {
                    "created earlier"
                };
                write!(f, "waits for plan {plan} ({why}) to complete: ")?;
                let parts: Vec<String> = clash.iter().map(describe).collect();
                write!(f, "{}", parts.join("; "))
            }
            Wait::After { plan, found: true } => {
                write!(f, "waits for plan {plan} to complete (spec.after)")
            }
            Wait::After { plan, found: false } => write!(
                f,
                "waits for plan {plan} (spec.after), which is not in the plans folder and has not completed"
            ),
            Wait::Cycle(path) => write!(
                f,
                "spec.after forms a cycle ({}): none of these plans can start; remove one entry",
                path.join(" → ")
            ),
        }
    }
}

/// At most this many fields or clusters are named in a reason; the rest are counted.
const SHOWN: usize = 5;

/// A clash in words: `both edit …` or `both move the Kubernetes version of cluster …`.
pub fn describe(c: &Clash) -> String {
    let (what, items) = match c {
        Clash::Fields(f) => ("both edit", f),
        Clash::Kubernetes(k) => ("both move the Kubernetes version of cluster", k),
    };
    let mut s = format!(
        "{what} {}",
        items
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    if items.len() > SHOWN {
        s.push_str(&format!(" (and {} more)", items.len() - SHOWN));
    }
    s
}

/// How two plans clash, if they do.
pub fn clash(a: &PlanEdits, b: &PlanEdits) -> Vec<Clash> {
    let fields = |p: &PlanEdits| -> BTreeSet<String> {
        p.changes
            .iter()
            .map(|c| format!("{} of cluster {} in {}", c.field, c.cluster, c.file))
            .collect()
    };
    let kube = |p: &PlanEdits| -> BTreeSet<String> {
        p.changes
            .iter()
            .filter(|c| c.what.is_kubernetes())
            .map(|c| c.cluster.clone())
            .collect()
    };
    let mut out = Vec::new();
    let both: Vec<String> = fields(a).intersection(&fields(b)).cloned().collect();
    if !both.is_empty() {
        out.push(Clash::Fields(both));
    }
    let k: Vec<String> = kube(a).intersection(&kube(b)).cloned().collect();
    if !k.is_empty() {
        out.push(Clash::Kubernetes(k));
    }
    out
}

/// Every pair of plans that clash, earlier plan first (what `fleetwave plan` shows).
pub fn clashes(plans: &[PlanEdits]) -> Vec<(String, String, Vec<Clash>)> {
    let mut sorted: Vec<&PlanEdits> = plans.iter().collect();
    sorted.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let mut out = Vec::new();
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            let c = clash(a, b);
            if !c.is_empty() {
                out.push((a.name.clone(), b.name.clone(), c));
            }
        }
    }
    out
}

/// For each plan, what it waits for (empty: it may run). `complete` also names plans whose
/// file is gone but whose state says they succeeded, so `after` can name them.
pub fn waits(plans: &[PlanEdits], complete: &BTreeSet<String>) -> BTreeMap<String, Vec<Wait>> {
    let by_name: BTreeMap<&str, &PlanEdits> = plans.iter().map(|p| (p.name.as_str(), p)).collect();
    let done = |n: &str| complete.contains(n) || by_name.get(n).is_some_and(|p| p.complete);
    let mut out = BTreeMap::new();
    for b in plans {
        let mut w = Vec::new();
        if !b.complete {
            if let Some(cycle) = after_cycle(&b.name, &by_name) {
                w.push(Wait::Cycle(cycle));
            }
            for a in b.after.iter().filter(|a| !done(a)) {
                w.push(Wait::After {
                    plan: a.clone(),
                    found: by_name.contains_key(a.as_str()),
                });
            }
            for a in plans.iter().filter(|a| a.name != b.name) {
                let (first, running) = goes_first(a, b);
                // `after` between the two wins over creation order.
                let explicit = b.after.contains(&a.name) || a.after.contains(&b.name);
                if !first || a.complete || explicit {
                    continue;
                }
                let c = clash(a, b);
                if !c.is_empty() {
                    w.push(Wait::Earlier {
                        plan: a.name.clone(),
                        clash: c,
                        running,
                    });
                }
            }
        }
        out.insert(b.name.clone(), w);
    }
    out
}

/// Whether `a` goes before `b` when they clash, and whether because it had begun: a plan
/// already rolling out goes on (holding it halfway would leave both half done); otherwise the
/// earlier created, then the name.
fn goes_first(a: &PlanEdits, b: &PlanEdits) -> (bool, bool) {
    match (a.started, b.started) {
        (true, false) => (true, true),
        (false, true) => (false, false),
        _ => ((a.created, &a.name) < (b.created, &b.name), false),
    }
}

/// The `spec.after` path from `start` back to itself, if there is one.
fn after_cycle(start: &str, by_name: &BTreeMap<&str, &PlanEdits>) -> Option<Vec<String>> {
    let mut stack: Vec<(String, Vec<String>)> = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        let Some(p) = by_name.get(at.as_str()) else {
            continue;
        };
        for next in &p.after {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut more = path.clone();
                more.push(next.clone());
                stack.push((next.clone(), more));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::Changed;

    fn change(cluster: &str, file: &str, field: &str, what: Changed) -> ChangeRecord {
        ChangeRecord {
            cluster: cluster.into(),
            file: file.into(),
            field: field.into(),
            what,
            from: "a".into(),
            to: "b".into(),
        }
    }

    fn plan(name: &str, created: u64, changes: Vec<ChangeRecord>) -> PlanEdits {
        PlanEdits {
            name: name.into(),
            created,
            after: Vec::new(),
            complete: false,
            started: false,
            changes,
        }
    }

    #[test]
    fn the_later_plan_waits_naming_the_earlier_and_the_field() {
        let k = Changed::Kubernetes(None);
        let a = plan(
            "a",
            1,
            vec![change("c1", "c1.yaml", "Cluster spec.version", k)],
        );
        let b = plan(
            "b",
            2,
            vec![
                change("c1", "c1.yaml", "Cluster spec.version", k),
                change("c2", "c2.yaml", "Cluster spec.version", k),
            ],
        );
        let w = waits(&[b.clone(), a.clone()], &BTreeSet::new());
        assert!(w["a"].is_empty());
        let reason = w["b"][0].to_string();
        assert!(reason.contains("plan a"), "{reason}");
        assert!(
            reason.contains("Cluster spec.version of cluster c1 in c1.yaml"),
            "{reason}"
        );
        assert!(
            reason.contains("Kubernetes version of cluster c1"),
            "{reason}"
        );
        // Once the earlier plan is complete, the later one runs.
        let done = PlanEdits {
            complete: true,
            ..a
        };
        assert!(waits(&[b.clone(), done.clone()], &BTreeSet::new())["b"].is_empty());
        // A later plan already rolling out goes on; the earlier one that has not begun waits.
        let a = PlanEdits {
            complete: false,
            ..done
        };
        let b = PlanEdits { started: true, ..b };
        let w = waits(&[a, b], &BTreeSet::new());
        assert!(w["b"].is_empty(), "{:?}", w["b"]);
        assert!(
            w["a"][0]
                .to_string()
                .contains("waits for plan b (already rolling out)")
        );
    }

    #[test]
    fn different_kubernetes_fields_of_one_cluster_clash_other_values_do_not() {
        let a = plan(
            "a",
            1,
            vec![change(
                "c1",
                "cp.yaml",
                "KCP spec.version",
                Changed::Kubernetes(None),
            )],
        );
        let b = plan(
            "b",
            2,
            vec![change(
                "c1",
                "md.yaml",
                "MD spec.version",
                Changed::Kubernetes(None),
            )],
        );
        let c = plan(
            "c",
            3,
            vec![change(
                "c1",
                "base.yaml",
                "GitRepository spec.ref.tag",
                Changed::GitopsBase,
            )],
        );
        assert_eq!(clash(&a, &b), vec![Clash::Kubernetes(vec!["c1".into()])]);
        assert!(clash(&a, &c).is_empty());
        let w = waits(&[a, b, c], &BTreeSet::new());
        assert!(w["c"].is_empty());
        assert_eq!(w["b"].len(), 1);
    }

    #[test]
    fn after_orders_plans_and_cycles_are_named() {
        let mut b = plan("b", 1, Vec::new());
        b.after = vec!["a".into()];
        let a = plan("a", 2, Vec::new());
        let w = waits(&[a.clone(), b.clone()], &BTreeSet::new());
        assert_eq!(
            w["b"],
            vec![Wait::After {
                plan: "a".into(),
                found: true
            }]
        );
        // A completed plan whose file is gone satisfies `after`.
        let w = waits(&[b.clone()], &BTreeSet::from(["a".to_string()]));
        assert!(w["b"].is_empty());
        let w = waits(&[b.clone()], &BTreeSet::new());
        assert!(w["b"][0].to_string().contains("not in the plans folder"));
        let mut a2 = a;
        a2.after = vec!["b".into()];
        let w = waits(&[a2, b], &BTreeSet::new());
        assert!(matches!(&w["a"][0], Wait::Cycle(p) if p == &["a", "b", "a"]));
    }
}
