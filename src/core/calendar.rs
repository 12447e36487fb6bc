//! Time rules of a rollout that are not soak: change freezes (deny windows) from the plan, its
//! waves and the repository's `.fleetwave/freeze.yaml`, and when a freeze lets merges go on.
//! Pure: the time is always passed in.

use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::core::diag::{Diag, Diags, echo};
use crate::core::plan::FreezeFile;
use crate::core::source::YamlSource;
use crate::core::yaml::Seg;

/// The repository-wide freeze file every plan obeys, relative to the fleet repository's root.
pub const REPO_FREEZE_FILE: &str = ".fleetwave/freeze.yaml";

/// A change freeze: nothing merges from `start` (inclusive) to `end` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Freeze {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Why, as written (empty when the freeze gives none).
    pub reason: String,
    /// Where it was declared: `plan`, `wave <name>` or the freeze file.
    pub source: String,
}

impl Freeze {
    pub fn covers(&self, now: DateTime<Utc>) -> bool {
        self.start <= now && now < self.end
    }

    /// `2026-12-20 00:00 to 2027-01-04 00:00 UTC: year end (plan)`.
    pub fn span(&self) -> String {
        format!(
            "{} to {}: {} ({})",
            self.start.format("%Y-%m-%d %H:%M"),
            self.end.format("%Y-%m-%d %H:%M UTC"),
            self.why(),
            self.source
        )
    }

    fn why(&self) -> String {
        if self.reason.is_empty() {
            "change freeze".to_string()
        } else {
            crate::core::diag::echo(&self.reason)
                .trim_matches('"')
                .to_string()
        }
    }

    /// `year-end freeze (.fleetwave/freeze.yaml) until 2027-01-04 00:00 UTC`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}) until {}",
            self.why(),
            self.source,
            self.end.format("%Y-%m-%d %H:%M UTC")
        )
    }
}

/// The freeze in force at `now`, if any: of several, the one ending last (chained freezes
/// that overlap or touch count as one, so "until" is when merging may really resume).
pub fn active<'a>(
    freezes: impl IntoIterator<Item = &'a Freeze>,
    now: DateTime<Utc>,
) -> Option<Freeze> {
    let all: Vec<&Freeze> = freezes.into_iter().collect();
    let mut cur = all.iter().filter(|f| f.covers(now)).max_by_key(|f| f.end)?;
    // Follow freezes that begin before (or when) this one ends.
    loop {
        let next = all
            .iter()
            .filter(|f| f.start <= cur.end && f.end > cur.end)
            .max_by_key(|f| f.end);
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    let mut out = (*cur).clone();
    out.start = now;
    Some(out)
}

/// The earliest time at or after `t` outside every freeze.
pub fn thaw<'a>(
    freezes: impl IntoIterator<Item = &'a Freeze> + Clone,
    t: DateTime<Utc>,
) -> DateTime<Utc> {
    active(freezes, t).map_or(t, |f| f.end)
}

/// Validate freezes written at `at` (a list) in `src`.
pub(crate) fn freezes(
    src: &YamlSource,
    at: &[Seg],
    files: &[FreezeFile],
    errs: &mut Vec<Diag>,
) -> Vec<Freeze> {
    let source = match at {
        [Seg::Key(s), Seg::Key(f)] if s == "spec" && f == "freeze" => "plan".to_string(),
        [Seg::Key(f)] if f == "freeze" => REPO_FREEZE_FILE.to_string(),
        _ => "wave".to_string(),
    };
    let mut out = Vec::new();
    for (j, f) in files.iter().enumerate() {
        let field = |k: &str| {
            let mut p = at.to_vec();
            p.push(Seg::Index(j));
            p.push(k.into());
            p
        };
        let tz = match f.time_zone.as_deref() {
            None => Some(chrono_tz::UTC),
            Some(z) => z.parse::<chrono_tz::Tz>().ok().or_else(|| {
                errs.push(
                    src.at(
                        &field("timeZone"),
                        format!("{} is not a time zone", echo(z)),
                    )
                    .hint("use an IANA name such as Europe/Berlin or UTC"),
                );
                None
            }),
        };
        let mut when = |k: &str, s: &str| {
            let t = tz.and_then(|tz| local_time(s, tz));
            if t.is_none() && tz.is_some() {
                errs.push(
                    src.at(&field(k), format!("{} is not a date and time", echo(s)))
                        .hint("write `2026-12-20`, `2026-12-20T18:00` or `2026-12-20 18:00` (local to timeZone, default UTC)"),
                );
            }
            t
        };
        let (start, end) = (when("start", &f.start), when("end", &f.end));
        let (Some(start), Some(end)) = (start, end) else {
            continue;
        };
        if end <= start {
            errs.push(
                src.at(&field("end"), "the freeze ends before it starts")
                    .hint("end must be later than start"),
            );
            continue;
        }
        out.push(Freeze {
            start,
            end,
            reason: f.reason.clone().unwrap_or_default(),
            source: source.clone(),
        });
    }
    out
}

/// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` or `YYYY-MM-DD HH:MM[:SS]` in `tz`; a local time
/// that does not exist (a DST gap) is refused, an ambiguous one takes the earlier instant.
fn local_time(s: &str, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let naive = [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoFreezeFile {
    #[serde(default)]
    freeze: Vec<FreezeFile>,
}

/// Parse the repository's freeze file (`shown` names it in messages).
pub fn parse_repo_file(shown: &Path, text: String) -> Result<Vec<Freeze>, Diags> {
    let src = YamlSource::parse(shown, text)?;
    if src.doc.root.is_none() {
        return Ok(Vec::new());
    }
    let file: RepoFreezeFile = src.typed("freeze file")?;
    let mut errs = Vec::new();
    let out = freezes(&src, &[Seg::Key("freeze".into())], &file.freeze, &mut errs);
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(Diags(errs))
    }
}

/// Read `.fleetwave/freeze.yaml` through the tree's path policy; absent means no freezes.
pub fn load_repo(tree: &dyn crate::core::tree::FileTree) -> Result<Vec<Freeze>, Diags> {
    let path = Path::new(REPO_FREEZE_FILE);
    match tree.read(path).map(String::from_utf8) {
        Ok(Ok(t)) => parse_repo_file(path, t),
        Ok(Err(_)) => Err(Diag::whole_file(path, "file is not UTF-8").into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Diag::whole_file(path, format!("cannot read: {e}")).into()),
    }
}

/// What an ETA assumes, besides the plan's soak, `batchDelay`, windows and freezes.
#[derive(Debug, Clone, Copy)]
pub struct EtaAssumption {
    /// Time from a step's merge to its clusters converging.
    pub convergence: chrono::Duration,
}

/// One wave to estimate: its plan entry, how many batches it has (1 without batches) and how
/// many of its steps change something.
pub struct EtaWave<'a> {
    pub wave: &'a crate::core::plan::Wave,
    pub batches: usize,
    pub steps: usize,
    /// The wave already converged and soaks since then (nothing left to merge).
    pub soaking_since: Option<DateTime<Utc>>,
}

/// When each wave should finish (its soak over), starting at `start`: batch by batch, each
/// step merging at the first time inside the wave's window and outside every freeze, then
/// converging after `a.convergence`; a batch after the first merges no sooner than the soak
/// and `batchDelay` after the previous one converged; approvals are taken as instant.
pub fn eta(
    plan: &crate::core::plan::Plan,
    waves: &[EtaWave],
    start: DateTime<Utc>,
    a: EtaAssumption,
) -> Vec<DateTime<Utc>> {
    let d = |x: std::time::Duration| chrono::Duration::from_std(x).unwrap_or_default();
    let mut t = start;
    let mut out = Vec::new();
    for (wi, w) in waves.iter().enumerate() {
        let spec = w.wave;
        let maint = wave_maintenance(plan, wi);
        if w.batches == 0 {
            // Finished: nothing left.
            out.push(t);
            continue;
        }
        if let Some(since) = w.soaking_since {
            t = t.max(since + d(spec.soak));
            out.push(t);
            continue;
        }
        let freezes: Vec<&Freeze> = plan
            .freezes
            .iter()
            .chain(&plan.repo_freezes)
            .chain(&spec.freezes)
            .collect();
        let mut prev: Option<DateTime<Utc>> = None;
        for _ in 0..w.batches.max(1) {
            if let Some(c) = prev {
                t = t.max(c + d(spec.soak).max(d(spec.batch_delay)));
            }
            for _ in 0..w.steps {
                t = may_merge(spec, &freezes, &maint, t) + a.convergence;
            }
            prev = Some(t);
        }
        t += d(spec.soak);
        out.push(t);
    }
    out
}

/// The maintenance windows of wave `wi`'s clusters, each once. The ETA takes every batch to
/// wait for all of them open together (a lower bound, the first opening of any, when they
/// never are): batches whose clusters share a window may go sooner.
fn wave_maintenance(plan: &crate::core::plan::Plan, wi: usize) -> Vec<&crate::core::plan::Window> {
    let mut idx: Vec<usize> = plan
        .wave_windows
        .get(wi)
        .map(|m| m.values().copied().collect())
        .unwrap_or_default();
    idx.sort_unstable();
    idx.dedup();
    idx.iter()
        .filter_map(|i| plan.maintenance_windows.get(*i).map(|m| &m.window))
        .collect()
}

/// The first time at or after `t` inside the wave's window and its clusters' maintenance
/// windows, and outside every freeze.
fn may_merge(
    wave: &crate::core::plan::Wave,
    freezes: &[&Freeze],
    maint: &[&crate::core::plan::Window],
    mut t: DateTime<Utc>,
) -> DateTime<Utc> {
    // Each round moves forward; a year of rounds means the window never opens outside a freeze.
    for _ in 0..1000 {
        let thawed = thaw(freezes.iter().copied(), t);
        let opened = match &wave.window {
            Some(win) => crate::core::decide::window_state(win, thawed).1,
            None => thawed,
        };
        let opened = match maint {
            [] => opened,
            _ => crate::core::maintenance::all_open(maint, opened).unwrap_or_else(|| {
                maint
                    .iter()
                    .map(|w| crate::core::decide::window_state(w, opened).1)
                    .min()
                    .unwrap_or(opened)
            }),
        };
        if opened == t {
            return t;
        }
        t = opened;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn repo_file_is_read_with_located_errors() {
        let ok = "freeze:\n  - start: \"2026-12-20\"\n    end: \"2027-01-04 08:00\"\n    timeZone: Europe/Berlin\n    reason: year end\n";
        let f = parse_repo_file(Path::new(REPO_FREEZE_FILE), ok.into()).unwrap();
        assert_eq!(f[0].start, t("2026-12-19T23:00:00Z"));
        assert_eq!(f[0].end, t("2027-01-04T07:00:00Z"));
        assert_eq!(f[0].source, REPO_FREEZE_FILE);
        let bad = ok.replace("2027-01-04 08:00", "next week");
        let e = parse_repo_file(Path::new(REPO_FREEZE_FILE), bad).unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].column), (3, 10), "{}", e.0[0]);
        let back = ok.replace("2027-01-04 08:00", "2026-12-01");
        let e = parse_repo_file(Path::new(REPO_FREEZE_FILE), back).unwrap_err();
        assert!(
            e.0[0].message.contains("ends before it starts"),
            "{}",
            e.0[0]
        );
        let unknown = ok.replace("reason:", "raison:");
        assert!(parse_repo_file(Path::new(REPO_FREEZE_FILE), unknown).is_err());
    }

    #[test]
    fn chained_freezes_say_when_merging_really_resumes() {
        let f = |a: &str, b: &str| Freeze {
            start: t(a),
            end: t(b),
            reason: String::new(),
            source: "plan".into(),
        };
        let all = [
            f("2026-12-20T00:00:00Z", "2026-12-24T00:00:00Z"),
            f("2026-12-24T00:00:00Z", "2026-12-27T00:00:00Z"),
            f("2027-01-10T00:00:00Z", "2027-01-11T00:00:00Z"),
        ];
        assert_eq!(
            active(&all, t("2026-12-21T00:00:00Z")).unwrap().end,
            t("2026-12-27T00:00:00Z")
        );
        assert!(active(&all, t("2026-12-27T00:00:00Z")).is_none());
        assert_eq!(
            thaw(&all, t("2026-12-19T00:00:00Z")),
            t("2026-12-19T00:00:00Z")
        );
    }

    #[test]
    fn the_eta_waits_for_the_wave_s_maintenance_windows() {
        let text = "apiVersion: fleet.opencenter.cloud/v1alpha1\nkind: FleetUpgradePlan\nmetadata: {name: p}\nspec:\n  targetVersion: v1.33.5\n  maintenanceWindows:\n    - clusters: [a]\n      window: {start: \"10:00\", end: \"12:00\"}\n    - clusters: [b]\n      window: {start: \"11:00\", end: \"13:00\"}\n  waves:\n    - name: w\n      clusterSelector: {matchLabels: {w: x}}\n";
        let mut plan = crate::core::plan::load(Path::new("p.yaml"), text.into())
            .unwrap()
            .0;
        let waves = |plan: &crate::core::plan::Plan| {
            let w = [EtaWave {
                wave: &plan.waves[0],
                batches: 1,
                steps: 1,
                soaking_since: None,
            }];
            let a = EtaAssumption {
                convergence: chrono::Duration::zero(),
            };
            eta(plan, &w, t("2026-11-23T08:00:00Z"), a)[0]
        };
        assert_eq!(
            waves(&plan),
            t("2026-11-23T08:00:00Z"),
            "not resolved: no wait"
        );
        plan.wave_windows = vec![[("a".to_string(), 0), ("b".to_string(), 1)].into()];
        assert_eq!(
            waves(&plan),
            t("2026-11-23T11:00:00Z"),
            "both open from 11:00"
        );
    }
}
