//! Per-cluster maintenance windows (`spec.maintenanceWindows`): which window each cluster
//! takes, and whether a batch may merge now — only while every cluster its pull request
//! changes is inside its own window. Held batches say which clusters are outside and when
//! they open (each, and all together).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::core::decide::window_state;
use crate::core::diag::{Finding, Severity};
use crate::core::plan::{MAINTENANCE_WINDOW_LABEL, MaintenanceWindow, Plan, Window};

/// Each of `clusters` that has a maintenance window → its index in `plan.maintenance_windows`
/// (the first entry that applies), and errors for clusters whose label names no window.
pub fn resolve(
    plan: &Plan,
    clusters: &[String],
    labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> (BTreeMap<String, usize>, Vec<Finding>) {
    let mut out = BTreeMap::new();
    let mut findings = Vec::new();
    for c in clusters {
        let l = labels(c).unwrap_or_default();
        let found = plan
            .maintenance_windows
            .iter()
            .position(|m| m.applies(c, &l));
        match (found, l.get(MAINTENANCE_WINDOW_LABEL)) {
            (Some(i), _) => {
                out.insert(c.clone(), i);
            }
            (None, Some(name)) => findings.push(Finding::new(
                Severity::Error,
                Some(c),
                format!("label {MAINTENANCE_WINDOW_LABEL}: {name:?} names no entry of spec.maintenanceWindows; add `- name: {name}` with its window to the plan, or fix the label"),
            )),
            (None, None) => {}
        }
    }
    (out, findings)
}

/// How a held step's commit status begins.
pub const SUMMARY: &str = "waiting for maintenance windows";

/// Why a batch may not merge now: the clusters outside their window with when each opens,
/// and when all are open together (None: within the next openings they never are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub outside: Vec<(String, String, DateTime<Utc>)>,
    pub together: Option<DateTime<Utc>>,
}

impl Closed {
    /// The commit status / hold line.
    pub fn describe(&self) -> String {
        let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
        let each: Vec<String> = self
            .outside
            .iter()
            .map(|(c, w, t)| format!("{c} ({w}, opens {})", fmt(*t)))
            .collect();
        let when = match self.together {
            Some(t) => format!("may merge from {}", fmt(t)),
            None => "their windows never overlap: give them a common window or put them in different waves".into(),
        };
        format!(
            "waiting: outside the maintenance window: {}; {when}",
            each.join(", ")
        )
    }

    /// The commit status: short enough for a forge's 140 characters, the time first.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.outside.iter().map(|(c, _, _)| c.as_str()).collect();
        let when = match self.together {
            Some(t) => format!("may merge from {}", t.format("%Y-%m-%d %H:%M UTC")),
            None => "never open together".into(),
        };
        format!("{SUMMARY} ({when}): {}", names.join(", "))
    }

    /// When to look again: all open together, else the first opening.
    pub fn wake(&self) -> Option<DateTime<Utc>> {
        self.together
            .or_else(|| self.outside.iter().map(|(_, _, t)| *t).min())
    }
}

/// The windows of `clusters` (those without one are always open) at `now`: None when every
/// one is inside its window.
pub fn closed(
    plan: &Plan,
    windows: &BTreeMap<String, usize>,
    clusters: &[&str],
    now: DateTime<Utc>,
) -> Option<Closed> {
    let mine: Vec<(&str, usize, &MaintenanceWindow)> = clusters
        .iter()
        .filter_map(|c| {
            let i = *windows.get(*c)?;
            Some((*c, i, plan.maintenance_windows.get(i)?))
        })
        .collect();
    let outside: Vec<(String, String, DateTime<Utc>)> = mine
        .iter()
        .filter_map(|(c, i, m)| match window_state(&m.window, now) {
            (true, _) => None,
            (false, next) => Some((c.to_string(), m.label(*i), next)),
        })
        .collect();
    if outside.is_empty() {
        return None;
    }
    let all: Vec<&Window> = mine.iter().map(|(_, _, m)| &m.window).collect();
    Some(Closed {
        outside,
        together: all_open(&all, now),
    })
}

/// The first time at or after `now` when every window is open (None if, over the next eight
/// openings of each, they never are at once).
pub fn all_open(windows: &[&Window], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut candidates = vec![now];
    for w in windows {
        let mut t = now;
        let len = Duration::minutes(i64::from(w.end.saturating_sub(w.start)).max(1));
        for _ in 0..8 {
            let next = window_state(w, t).1;
            candidates.push(next);
            t = next + len;
        }
    }
    candidates.sort();
    candidates.dedup();
    candidates
        .into_iter()
        .find(|t| windows.iter().all(|w| window_state(w, *t).0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn win(days: &[&str], start: u32, end: u32) -> Window {
        Window {
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start * 60,
            end: end * 60,
            time_zone: None,
        }
    }

    fn plan_with(windows: Vec<Window>) -> Plan {
        let text = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata: {name: p}\nspec:\n  targetVersion: v1.33.5\n  waves:\n    - name: w\n      clusterSelector: {matchLabels: {w: x}}\n";
        let mut p = crate::core::plan::load(std::path::Path::new("p.yaml"), text.into())
            .unwrap()
            .0;
        p.maintenance_windows = windows
            .into_iter()
            .enumerate()
            .map(|(i, window)| MaintenanceWindow {
                name: Some(format!("w{i}")),
                selector: None,
                clusters: vec![format!("c{i}")],
                window,
            })
            .collect();
        p
    }

    /// Monday 2026-11-23 at `h`:00 UTC.
    fn mon(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, 0, 0).unwrap()
    }

    #[test]
    fn a_batch_waits_until_every_cluster_is_inside_its_window() {
        let p = plan_with(vec![win(&[], 2, 6), win(&[], 4, 8)]);
        let labels = |_: &str| None;
        let (windows, f) = resolve(&p, &["c0".into(), "c1".into(), "c9".into()], &labels);
        assert!(f.is_empty());
        assert_eq!(windows.len(), 2, "c9 has no window: always open");
        let batch = ["c0", "c1", "c9"];
        let c = closed(&p, &windows, &batch, mon(1)).unwrap();
        assert_eq!(c.outside.len(), 2);
        assert_eq!(c.together, Some(mon(4)));
        assert_eq!(c.wake(), Some(mon(4)));
        let text = c.describe();
        assert!(
            text.contains("c0 (window w0, opens 2026-11-23 02:00 UTC)"),
            "{text}"
        );
        assert!(
            text.contains("may merge from 2026-11-23 04:00 UTC"),
            "{text}"
        );
        let c = closed(&p, &windows, &batch, mon(3)).unwrap();
        assert_eq!(c.outside[0].0, "c1");
        assert!(closed(&p, &windows, &batch, mon(5)).is_none());
        assert!(closed(&p, &windows, &["c9"], mon(1)).is_none());
    }

    #[test]
    fn windows_that_never_overlap_are_said_so() {
        let p = plan_with(vec![win(&["Sat"], 2, 4), win(&["Sun"], 2, 4)]);
        let (windows, _) = resolve(&p, &["c0".into(), "c1".into()], &|_: &str| None);
        let c = closed(&p, &windows, &["c0", "c1"], mon(1)).unwrap();
        assert_eq!(c.together, None);
        assert!(c.describe().contains("never overlap"), "{}", c.describe());
        assert_eq!(
            c.wake(),
            Some(Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap())
        );
    }

    #[test]
    fn a_label_naming_no_window_is_an_error_and_a_label_picks_its_window() {
        let p = plan_with(vec![win(&[], 2, 6)]);
        let labels = |c: &str| {
            let v = if c == "a" { "w0" } else { "nope" };
            Some(BTreeMap::from([(
                MAINTENANCE_WINDOW_LABEL.to_string(),
                v.to_string(),
            )]))
        };
        let (windows, f) = resolve(&p, &["a".into(), "b".into()], &labels);
        assert_eq!(windows.get("a"), Some(&0));
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message.contains("\"nope\" names no entry"),
            "{}",
            f[0].message
        );
    }
}
