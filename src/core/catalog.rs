//! The Kubernetes release catalog: which minors exist, the newest patch of each, and their
//! release and end-of-life dates. fleetwave ships one (`data/kubernetes-releases.yaml`); a
//! plan may name a newer one in the fleet repository (`spec.versionCatalog`).
//!
//! Used to compute the hops of a plan that lists no `intermediateVersions` (one hop per minor,
//! the newest patch of each intermediate minor) and to warn about versions it does not know.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::core::diag::{Diag, Diags, Finding, Severity};
use crate::core::plan::Plan;
use crate::core::source::YamlSource;
use crate::core::tree::FileTree;
use crate::core::version::KubeVersion;
use crate::path;

const EMBEDDED: &str = include_str!("data/kubernetes-releases.yaml");

/// One minor release line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub minor: u32,
    /// The newest patch known to the catalog.
    pub latest: u32,
    pub released: Option<String>,
    pub end_of_life: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// The day the catalog was written: newer patches may exist.
    pub as_of: String,
    /// Where it came from: `built-in` or the file's path.
    pub origin: String,
    releases: BTreeMap<u32, Release>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("{0}: not a release catalog: {1}")]
    Parse(String, String),
    #[error("{0}: release {1:?} is not a Kubernetes 1.x minor with its latest patch")]
    Release(String, String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CatalogFile {
    as_of: String,
    releases: Vec<ReleaseFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReleaseFile {
    minor: String,
    latest: String,
    #[serde(default)]
    released: Option<String>,
    #[serde(default)]
    end_of_life: Option<String>,
}

impl Catalog {
    /// The catalog built into this binary.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::parse(Path::new("built-in"), EMBEDDED).expect("the built-in catalog parses")
        })
    }

    pub fn parse(origin: &Path, text: &str) -> Result<Catalog, CatalogError> {
        let shown = origin.display().to_string();
        let file: CatalogFile = serde_yaml::from_str(text)
            .map_err(|e| CatalogError::Parse(shown.clone(), e.to_string()))?;
        let mut releases = BTreeMap::new();
        for r in file.releases {
            let bad = || CatalogError::Release(shown.clone(), r.minor.clone());
            let minor = KubeVersion::parse(&r.minor).filter(|v| v.major == 1 && v.is_minor_only());
            let latest = KubeVersion::parse(&r.latest);
            let (Some(minor), Some(latest)) = (minor, latest) else {
                return Err(bad());
            };
            let (true, Some(patch)) = (latest.minor == minor.minor, latest.patch) else {
                return Err(bad());
            };
            releases.insert(
                minor.minor,
                Release {
                    minor: minor.minor,
                    latest: patch,
                    released: r.released,
                    end_of_life: r.end_of_life,
                },
            );
        }
        Ok(Catalog {
            as_of: file.as_of,
            origin: shown,
            releases,
        })
    }

    /// Every release line, oldest first.
    pub fn releases(&self) -> impl Iterator<Item = &Release> {
        self.releases.values()
    }

    /// A catalog from the endoflife.date product API (`/api/kubernetes.json`): an array of
    /// release cycles with `cycle`, `releaseDate`, `eol` (a date, or `false`) and `latest`.
    /// Cycles that are not Kubernetes 1.x minors with a patch are left out.
    pub fn from_endoflife(origin: &str, json: &str, as_of: &str) -> Result<Catalog, CatalogError> {
        let bad = |why: String| CatalogError::Parse(origin.to_string(), why);
        let cycles: Vec<serde_json::Value> =
            serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let mut releases = BTreeMap::new();
        for c in &cycles {
            let minor = c
                .get("cycle")
                .and_then(text)
                .and_then(|m| KubeVersion::parse(&m));
            let latest = c
                .get("latest")
                .and_then(text)
                .and_then(|l| KubeVersion::parse(&l));
            let (Some(minor), Some(latest)) = (minor, latest) else {
                continue;
            };
            let (1, true, Some(patch)) = (minor.major, latest.minor == minor.minor, latest.patch)
            else {
                continue;
            };
            releases.insert(
                minor.minor,
                Release {
                    minor: minor.minor,
                    latest: patch,
                    released: c.get("releaseDate").and_then(text),
                    // `eol: false` (not yet announced) has no date.
                    end_of_life: c.get("eol").and_then(text),
                },
            );
        }
        if releases.is_empty() {
            return Err(bad("no Kubernetes release cycle in the answer".into()));
        }
        Ok(Catalog {
            as_of: as_of.to_string(),
            origin: origin.to_string(),
            releases,
        })
    }

    /// The catalog as a file of the built-in catalog's shape.
    pub fn to_yaml(&self, source: &str) -> String {
        let mut out = format!(
            "# Kubernetes release catalog written by `fleetwave versions update` from\n# {source}\nasOf: \"{}\"\nreleases:\n",
            self.as_of
        );
        for r in self.releases.values() {
            let mut fields = format!(
                "minor: \"1.{}\", latest: \"1.{}.{}\"",
                r.minor, r.minor, r.latest
            );
            if let Some(d) = &r.released {
                fields.push_str(&format!(", released: \"{d}\""));
            }
            if let Some(d) = &r.end_of_life {
                fields.push_str(&format!(", endOfLife: \"{d}\""));
            }
            out.push_str(&format!("  - {{{fields}}}\n"));
        }
        out
    }

    pub fn release(&self, minor: u32) -> Option<&Release> {
        self.releases.get(&minor)
    }

    /// The newest known patch of `1.minor`, written like `like` (its `v` prefix).
    pub fn newest(&self, minor: u32, like: &KubeVersion) -> Option<KubeVersion> {
        let r = self.releases.get(&minor)?;
        Some(KubeVersion {
            major: 1,
            minor,
            patch: Some(r.latest),
            v_prefix: like.v_prefix,
            pre: None,
            suffix: String::new(),
        })
    }

    /// Whether the catalog knows this version: its minor, and its patch when it has one.
    pub fn knows(&self, v: &KubeVersion) -> bool {
        v.major == 1
            && self
                .releases
                .get(&v.minor)
                .is_some_and(|r| v.patch.is_none_or(|p| p <= r.latest))
    }

    /// The hops from a control plane at minor `from` to `target`: the newest patch of each
    /// minor in between, then `target`. Err names the first minor the catalog lacks.
    pub fn hops(&self, from: u32, target: &KubeVersion) -> Result<Vec<KubeVersion>, u32> {
        let mut out = Vec::new();
        for minor in from + 1..target.minor {
            out.push(self.newest(minor, target).ok_or(minor)?);
        }
        out.push(target.clone());
        Ok(out)
    }
}

/// The catalog a plan uses: the file `spec.versionCatalog` names in the fleet repository, or
/// the built-in one.
fn for_plan(
    tree: &dyn FileTree,
    plan: &Plan,
    src: &YamlSource,
) -> Result<std::borrow::Cow<'static, Catalog>, Diag> {
    let Some(rel) = &plan.version_catalog else {
        return Ok(std::borrow::Cow::Borrowed(Catalog::embedded()));
    };
    let at = || src.at(&path!["spec", "versionCatalog"], "");
    let text = tree
        .read(Path::new(rel))
        .map_err(|e| Diag {
            message: format!("versionCatalog {rel}: cannot read: {e}"),
            hint: Some("give the catalog's path relative to the repository root".into()),
            ..at()
        })
        .and_then(|b| {
            String::from_utf8(b).map_err(|_| Diag {
                message: format!("versionCatalog {rel}: not UTF-8"),
                ..at()
            })
        })?;
    Catalog::parse(Path::new(rel), &text)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| Diag {
            message: e.to_string(),
            hint: Some("see the built-in catalog's shape in fleetwave's README".into()),
            ..at()
        })
}

fn finding(severity: Severity, d: Diag) -> Finding {
    Finding::new(severity, None, d.message).at(&d.file, (d.line, d.column))
}

/// Complete the plan's hops from the catalog when it lists no `intermediateVersions` and the
/// oldest control plane selected (`from`, a minor) is more than one minor behind the target;
/// say what the catalog does not know of the versions the plan names.
pub fn fill_hops(
    tree: &dyn FileTree,
    plan: &mut Plan,
    src: &YamlSource,
    from: Option<u32>,
) -> Result<Vec<Finding>, Diags> {
    let Some(target) = plan.target.clone() else {
        return Ok(Vec::new());
    };
    let catalog = for_plan(tree, plan, src)?;
    let what = format!(
        "the release catalog ({}, as of {})",
        catalog.origin, catalog.as_of
    );
    let mut out = Vec::new();
    if !catalog.knows(&target) {
        out.push(finding(Severity::Warning, src.at(&path!["spec", "targetVersion"],
            format!("targetVersion {target} is not in {what}: check that it exists before the first step merges"))));
    }
    if plan.hops_listed {
        for (i, h) in plan.hops.iter().enumerate().take(plan.hops.len() - 1) {
            if !catalog.knows(h) {
                out.push(finding(
                    Severity::Warning,
                    src.at(
                        &path!["spec", "intermediateVersions", i],
                        format!("intermediate version {h} is not in {what}: check that it exists"),
                    ),
                ));
            }
        }
        return Ok(out);
    }
    let Some(from) = from.filter(|f| f + 1 < target.minor) else {
        return Ok(out);
    };
    match catalog.hops(from, &target) {
        Ok(hops) => {
            let shown: Vec<String> = hops.iter().map(|h| h.written()).collect();
            out.push(finding(Severity::Info, src.at(&path!["spec", "targetVersion"],
                format!("hops from 1.{from} computed from {what}: {}", shown.join(" → ")))));
            plan.hops = hops;
            Ok(out)
        }
        Err(missing) => Err(src
            .at(&path!["spec", "targetVersion"], format!("going from 1.{from} to {target} needs a hop through 1.{missing}, which {what} does not list"))
            .hint("list the hops with `intermediateVersions`, or point `spec.versionCatalog` to a newer catalog")
            .into()),
    }
}

/// How far `fleetwave propose` moves a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The newest patch of the minor the fleet runs.
    Patch,
    /// The newest patch of the next minor.
    Minor,
    /// The newest patch of the newest supported minor but one (the newest minor has had
    /// the least time in the field).
    Stable,
}

/// What a channel proposes for a fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposal {
    Target(KubeVersion),
    /// The fleet is already there; why, in words.
    Current(String),
    /// The channel cannot propose for this fleet; why, and what to do.
    Refused(String),
}

impl Catalog {
    /// The channel's target for a fleet whose control planes pin `pinned`, on the day `today`
    /// (`YYYY-MM-DD`, for end of life).
    pub fn propose(&self, channel: Channel, pinned: &[KubeVersion], today: &str) -> Proposal {
        let releases: Vec<&KubeVersion> = pinned.iter().filter(|v| v.pre.is_none()).collect();
        let (Some(oldest), Some(newest)) = (
            releases.iter().min_by(|a, b| a.cmp_precedence(b)),
            releases.iter().max_by(|a, b| a.cmp_precedence(b)),
        ) else {
            return Proposal::Refused("no Kubernetes release pinned in the fleet".into());
        };
        let catalog = format!(
            "the release catalog ({}, as of {})",
            self.origin, self.as_of
        );
        let minor = match channel {
            Channel::Patch if oldest.minor != newest.minor => {
                return Proposal::Refused(format!(
                    "the clusters run 1.{} to 1.{}: a patch plan cannot bring them together; use --channel minor",
                    oldest.minor, newest.minor
                ));
            }
            Channel::Patch => newest.minor,
            Channel::Minor => newest.minor + 1,
            Channel::Stable => {
                let supported: Vec<u32> = self
                    .releases
                    .values()
                    .filter(|r| r.end_of_life.as_deref().is_none_or(|d| d >= today))
                    .map(|r| r.minor)
                    .collect();
                match supported.as_slice() {
                    [] => {
                        return Proposal::Refused(format!(
                            "{catalog} lists no supported release on {today}: update it with `fleetwave versions update`"
                        ));
                    }
                    [only] => *only,
                    [.., stable, _newest] => *stable,
                }
            }
        };
        let Some(target) = self.newest(minor, newest) else {
            return Proposal::Current(format!("{catalog} lists no 1.{minor} release"));
        };
        if releases.iter().all(|v| v.cmp_precedence(&target).is_ge()) {
            return Proposal::Current(format!(
                "every cluster runs {} or newer, the {} channel's target in {catalog}",
                target.written(),
                format!("{channel:?}").to_lowercase()
            ));
        }
        Proposal::Target(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_catalog_lists_consecutive_minors() {
        let c = Catalog::embedded();
        let minors: Vec<u32> = c.releases.keys().copied().collect();
        assert!(minors.len() >= 8, "{minors:?}");
        assert!(minors.windows(2).all(|w| w[1] == w[0] + 1), "{minors:?}");
        assert_eq!(c.release(1).map(|r| r.minor), None);
    }

    #[test]
    fn hops_take_the_newest_patch_of_each_minor_in_between() {
        let c = Catalog::parse(
            Path::new("cat.yaml"),
            "asOf: \"2026-01-01\"\nreleases:\n  - {minor: \"1.32\", latest: \"1.32.9\"}\n  - {minor: \"1.33\", latest: \"v1.33.5\"}\n  - {minor: \"1.34\", latest: \"1.34.2\"}\n",
        )
        .unwrap();
        let t = KubeVersion::parse("v1.35.1").unwrap();
        let hops: Vec<String> = c
            .hops(32, &t)
            .unwrap()
            .iter()
            .map(|v| v.written())
            .collect();
        assert_eq!(hops, ["v1.33.5", "v1.34.2", "v1.35.1"]);
        assert_eq!(c.hops(31, &t).unwrap().len(), 4);
        assert_eq!(c.hops(30, &t).unwrap_err(), 31);
        assert!(c.knows(&KubeVersion::parse("1.33.5").unwrap()));
        assert!(!c.knows(&KubeVersion::parse("1.33.6").unwrap()));
        assert!(c.knows(&KubeVersion::parse("1.34").unwrap()));
    }

    #[test]
    fn a_catalog_with_a_bad_release_is_refused() {
        let e = Catalog::parse(
            Path::new("cat.yaml"),
            "asOf: x\nreleases:\n  - {minor: \"1.33\", latest: \"1.34.1\"}\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cat.yaml: release \"1.33\" is not a Kubernetes 1.x minor with its latest patch"
        );
    }

    #[test]
    fn an_endoflife_answer_becomes_a_catalog_that_reads_back() {
        // Shape of the endoflife.date product API (Cycle: cycle, releaseDate, eol, latest).
        let json = r#"[
            {"cycle":"1.35","releaseDate":"2025-12-17","eol":"2027-02-28","latest":"1.35.9","latestReleaseDate":"2026-09-15","lts":false},
            {"cycle":"1.34","releaseDate":"2025-08-27","eol":"2026-10-27","latest":"1.34.9"},
            {"cycle":"1.36","releaseDate":"2026-04-22","eol":false,"latest":"1.36.4"},
            {"cycle":"0.4","latest":"0.4.1"}
        ]"#;
        let c = Catalog::from_endoflife("eol.json", json, "2026-12-05").unwrap();
        assert_eq!(
            c.releases().map(|r| r.minor).collect::<Vec<_>>(),
            [34, 35, 36]
        );
        assert_eq!(c.release(36).unwrap().end_of_life, None);
        let back = Catalog::parse(Path::new("x.yaml"), &c.to_yaml("eol.json")).unwrap();
        assert_eq!(
            back.releases().collect::<Vec<_>>(),
            c.releases().collect::<Vec<_>>()
        );
        assert_eq!(back.as_of, "2026-12-05");
        assert!(Catalog::from_endoflife("e", "[]", "x").is_err());
        assert!(Catalog::from_endoflife("e", "{", "x").is_err());
    }

    #[test]
    fn channels_propose_from_the_catalog() {
        let c = Catalog::parse(
            Path::new("cat.yaml"),
            "asOf: \"2026-12-01\"\nreleases:\n  - {minor: \"1.33\", latest: \"1.33.12\", endOfLife: \"2026-06-28\"}\n  - {minor: \"1.34\", latest: \"1.34.9\", endOfLife: \"2026-10-27\"}\n  - {minor: \"1.35\", latest: \"1.35.9\", endOfLife: \"2027-02-28\"}\n  - {minor: \"1.36\", latest: \"1.36.4\", endOfLife: \"2027-06-28\"}\n",
        )
        .unwrap();
        let v = |s: &str| KubeVersion::parse(s).unwrap();
        let target = |p: Proposal| match p {
            Proposal::Target(t) => t.written(),
            other => format!("{other:?}"),
        };
        let fleet = [v("v1.34.2"), v("v1.34.5")];
        assert_eq!(
            target(c.propose(Channel::Patch, &fleet, "2026-12-05")),
            "v1.34.9"
        );
        assert_eq!(
            target(c.propose(Channel::Minor, &fleet, "2026-12-05")),
            "v1.35.9"
        );
        // Supported on the day: 1.35 and 1.36; stable is the older of the two.
        assert_eq!(
            target(c.propose(Channel::Stable, &fleet, "2026-12-05")),
            "v1.35.9"
        );
        let mixed = [v("v1.33.1"), v("v1.34.5")];
        assert!(matches!(
            c.propose(Channel::Patch, &mixed, "2026-12-05"),
            Proposal::Refused(_)
        ));
        let current = [v("v1.36.4")];
        assert!(matches!(
            c.propose(Channel::Minor, &current, "2026-12-05"),
            Proposal::Current(_)
        ));
        assert!(matches!(
            c.propose(Channel::Patch, &current, "2026-12-05"),
            Proposal::Current(_)
        ));
    }
}
