//! Batches: how a wave's clusters are split (`maxConcurrency`, `order`, `shuffle`, `canary`)
//! and how a wave's steps become one step per (batch, step), each its own branch and pull
//! request, batch by batch.
//!
//! The order is stable and documented: by cluster name; with `order: [key…]` by those labels'
//! values (a cluster without the label after those with it), then by name; with
//! `shuffle: {seed}` by SHA-256 of the seed (8 bytes, little-endian) and the name. `canary: N`
//! takes the first N clusters as batch 0; the rest are cut into batches of `maxConcurrency`
//! (a percentage counts the whole wave, rounded up, at least one).

use std::collections::BTreeMap;

use sha2::Digest;

use chrono::{DateTime, Utc};

use crate::core::decide::StepPlan;
use crate::core::plan::{Batching, Concurrency, Wave};
use crate::core::state::WaveState;

/// The wave's batches, in merge order; empty when the wave is one batch (no `maxConcurrency`
/// and no `canary`). `labels` gives a cluster's labels (for `order`).
pub fn partition(
    b: &Batching,
    clusters: &[String],
    labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Vec<Vec<String>> {
    if b.is_single() || clusters.is_empty() {
        return Vec::new();
    }
    let mut sorted: Vec<String> = clusters.to_vec();
    sorted.sort();
    sorted.dedup();
    if let Some(seed) = b.shuffle {
        sorted.sort_by_cached_key(|c| {
            let mut h = sha2::Sha256::new();
            h.update(seed.to_le_bytes());
            h.update(c.as_bytes());
            (h.finalize().to_vec(), c.clone())
        });
    } else if !b.order.is_empty() {
        sorted.sort_by_cached_key(|c| {
            let l = labels(c).unwrap_or_default();
            let key: Vec<(bool, String)> = b
                .order
                .iter()
                .map(|k| match l.get(k) {
                    Some(v) => (false, v.clone()),
                    None => (true, String::new()),
                })
                .collect();
            (key, c.clone())
        });
    }
    let total = sorted.len();
    let mut out = Vec::new();
    let mut rest = &sorted[..];
    if let Some(n) = b.canary {
        let n = (n as usize).min(rest.len());
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    let size = match b.max_concurrency {
        None => rest.len().max(1),
        Some(Concurrency::Count(n)) => n as usize,
        Some(Concurrency::Percent(p)) => (total * p as usize).div_ceil(100).max(1),
    };
    out.extend(rest.chunks(size).map(<[String]>::to_vec));
    out
}

/// The branch of batch `b` of a step whose one-batch branch is `branch`.
pub fn branch(branch: &str, b: usize) -> String {
    format!("{branch}-batch-{b}")
}

/// One step per (batch, step), batch-major: batch 0 takes every step, then batch 1, …
/// Each keeps only its batch's changes. With no batches the steps are returned as they are.
pub fn expand(steps: &[StepPlan], batches: &[Vec<String>]) -> Vec<StepPlan> {
    if batches.is_empty() {
        return steps.to_vec();
    }
    let mut out = Vec::new();
    for (b, members) in batches.iter().enumerate() {
        for s in steps {
            out.push(StepPlan {
                branch: branch(&s.branch, b),
                changes: s
                    .changes
                    .iter()
                    .filter(|c| members.contains(&c.cluster))
                    .cloned()
                    .collect::<Vec<_>>()
                    .into(),
                batch: Some(b),
                clusters: members.clone(),
                ..s.clone()
            });
        }
    }
    out
}

/// Why the first step of a batch after the first may not merge yet, and until when: the
/// previous batch converged less than the wave's soak (`healthCheckDuration`) or `batchDelay`
/// ago, whichever ends later. None when it may merge (or when the step is not such a step).
pub fn batch_wait(
    ws: &WaveState,
    si: usize,
    wave: &Wave,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, String)> {
    let b = ws.steps.get(si)?.batch.filter(|b| *b > 0)?;
    if ws.steps[..si].iter().any(|s| s.batch == Some(b)) {
        return None;
    }
    // A previous batch whose steps all had nothing to change converged at no time: no wait.
    let converged = ws.steps[..si]
        .iter()
        .filter(|s| s.batch == Some(b - 1))
        .filter_map(|s| s.converged_at)
        .max()?;
    let d = |x: std::time::Duration| chrono::Duration::from_std(x).unwrap_or_default();
    let (soak_end, delay_end) = (converged + d(wave.soak), converged + d(wave.batch_delay));
    let until = soak_end.max(delay_end);
    if now >= until {
        return None;
    }
    let at = until.format("%Y-%m-%d %H:%M UTC");
    let why = if delay_end > soak_end {
        format!(
            "waiting: batchDelay {} after batch {} converged; may merge from {at}",
            humantime::format_duration(wave.batch_delay),
            b - 1
        )
    } else {
        format!(
            "waiting: batch {} soaks for {} after converging; may merge from {at}",
            b - 1,
            humantime::format_duration(wave.soak)
        )
    };
    Some((until, why))
}

/// Clusters that `steps` change but the started wave `ws` did not hold when it started (added
/// to the fleet or relabelled since), not already out and not retried: the wave's clusters and
/// batches are fixed at its start, so these get no change until `fleetwave retry` adds them.
pub fn joined(steps: &[StepPlan], ws: &WaveState) -> Vec<String> {
    let mut out: Vec<String> = steps
        .iter()
        .flat_map(|s| s.changes.iter())
        .map(|c| &c.cluster)
        .filter(|c| {
            !ws.clusters.contains(c)
                && !ws.is_out(c)
                && !ws.retries.iter().flatten().any(|r| r == *c)
        })
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The steps of the wave's retry batches (`fleetwave retry`), after its own: batch numbers go
/// on from the wave's last batch; branches are `<step branch>-retry-<k>`.
pub fn expand_retries(
    steps: &[StepPlan],
    batches: usize,
    retries: &[Vec<String>],
) -> Vec<StepPlan> {
    let mut out = Vec::new();
    for (k, members) in retries.iter().enumerate() {
        for s in steps {
            out.push(StepPlan {
                branch: format!("{}-retry-{k}", s.branch),
                changes: s
                    .changes
                    .iter()
                    .filter(|c| members.contains(&c.cluster))
                    .cloned()
                    .collect::<Vec<_>>()
                    .into(),
                batch: Some(batches.max(1) + k),
                clusters: members.clone(),
                ..s.clone()
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i:03}")).collect()
    }

    fn batching(max: Option<Concurrency>, canary: Option<u32>) -> Batching {
        Batching {
            max_concurrency: max,
            canary,
            ..Default::default()
        }
    }

    #[test]
    fn counts_percentages_and_canary() {
        let none = |_: &str| None;
        assert!(partition(&Batching::default(), &names(5), &none).is_empty());
        let b = partition(
            &batching(Some(Concurrency::Count(2)), None),
            &names(5),
            &none,
        );
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(b[0], ["c000", "c001"]);
        let b = partition(
            &batching(Some(Concurrency::Percent(25)), Some(1)),
            &names(10),
            &none,
        );
        // 25% of 10 is 2.5: three per batch, after the canary.
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [1, 3, 3, 3]);
        let b = partition(&batching(None, Some(3)), &names(2), &none);
        assert_eq!(b, [names(2)]);
    }

    #[test]
    fn order_by_labels_then_name_and_seeded_shuffle() {
        let labels = |c: &str| {
            let region = match c {
                "c000" => Some("us"),
                "c001" => None,
                _ => Some("eu"),
            };
            Some(
                region
                    .map(|r| BTreeMap::from([("region".to_string(), r.to_string())]))
                    .unwrap_or_default(),
            )
        };
        let b = Batching {
            max_concurrency: Some(Concurrency::Count(10)),
            order: vec!["region".into()],
            ..Default::default()
        };
        assert_eq!(
            partition(&b, &names(4), &labels)[0],
            ["c002", "c003", "c000", "c001"]
        );
        let s = |seed| Batching {
            max_concurrency: Some(Concurrency::Count(100)),
            shuffle: Some(seed),
            ..Default::default()
        };
        let a = partition(&s(7), &names(20), &labels);
        assert_eq!(
            a,
            partition(&s(7), &names(20), &labels),
            "stable for a seed"
        );
        assert_ne!(a[0], names(20), "shuffled");
        assert_ne!(a, partition(&s(8), &names(20), &labels));
    }

    #[test]
    fn joined_are_the_changed_clusters_the_started_wave_did_not_hold() {
        use crate::core::state::{ChangeRecord, Changed, SkipRecord};
        let change = |c: &str| ChangeRecord {
            cluster: c.into(),
            file: "f.yaml".into(),
            field: "spec.ref.tag".into(),
            what: Changed::GitopsBase,
            from: "2026.01".into(),
            to: "2026.02".into(),
        };
        let step = StepPlan {
            index: 1,
            id: "s".into(),
            title: "s".into(),
            kubernetes: None,
            branch: "b".into(),
            changes: ["a", "new", "gone", "retried", "new"]
                .iter()
                .map(|c| change(c))
                .collect::<Vec<_>>()
                .into(),
            batch: None,
            clusters: Vec::new(),
        };
        let mut ws = WaveState {
            clusters: vec!["a".into()],
            retries: vec![vec!["retried".into()]],
            ..Default::default()
        };
        ws.skipped.insert(
            "gone".into(),
            SkipRecord {
                by: "alice".into(),
                at: chrono::Utc::now(),
                reason: String::new(),
            },
        );
        assert_eq!(joined(&[step], &ws), ["new"]);
    }
}
