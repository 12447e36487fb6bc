//! What a tick computes from the base branch, kept in the cache directory so that a tick on
//! an unchanged base plans nothing and builds no tree:
//! - the plan as a tick uses it ([`PlanView`]: waves, steps, changes, refusals,
//!   infrastructure), keyed by [`PlanKey`] — (fleet tree, plan blob, plan path, fleetwave
//!   version);
//! - each file's owning cluster (for the simulated Flux), under the same key;
//! - the tree of each step commit, keyed by the plan key, the wave, the step and the clusters
//!   left out of it;
//! - each state file as parsed, keyed by its blob id, and each change file's bytes, keyed by
//!   theirs: a tick that writes one step's records writes one change file here.
//!
//! A key names everything its entry was computed from, so entries never change: each is
//! written whole to a temporary file and renamed into place. An entry that cannot be read is
//! computed again, never trusted; one that cannot be written only costs the next tick a plan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::adapters::git::GitRepo;
use crate::core::planner::Planned;
use crate::core::state::{ChangeRecord, Changed, PlanState};
use crate::core::state_files::Listing;
use crate::core::steps::{HopPart, KubeHop};
use crate::core::version::KubeVersion;

/// The directory inside the cache repository that holds the entries.
const DIR: &str = "fleetwave-ticks";
/// Bumped when an entry's meaning changes within one fleetwave version (development builds).
const FORMAT: &str = "3";
/// Plan views kept; older ones (bases long gone) are removed.
const KEEP_VIEWS: usize = 8;
/// Change files kept (a few plans' steps); one pruned early is read from Git again.
const KEEP_CHANGES: usize = 256;

/// A state file as parsed, without the records its change files hold.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct CachedState {
    state: PlanState,
    listing: Listing,
}

/// What a plan view was computed from, as a hex digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanKey(String);

fn digest<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

impl PlanKey {
    /// The key of planning `plan_path` (blob `plan_blob`) against the fleet tree `tree`.
    pub fn new(tree: &str, plan_blob: &str, plan_path: &Path) -> PlanKey {
        let path = plan_path.display().to_string();
        PlanKey(digest([
            concat!("fleetwave ", env!("CARGO_PKG_VERSION")),
            FORMAT,
            tree,
            plan_blob,
            &path,
        ]))
    }

    /// The key of one step's tree: step `step` (0-based) of `wave` without `left_out`.
    pub fn step(&self, wave: &str, step: usize, left_out: &BTreeSet<String>) -> String {
        let index = step.to_string();
        let parts = [self.0.as_str(), wave, index.as_str()]
            .into_iter()
            .chain(left_out.iter().map(String::as_str));
        digest(parts)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Kubernetes hop, stored field by field (the version keeps its spelling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    part: String,
    major: u32,
    minor: u32,
    patch: Option<u32>,
    v_prefix: bool,
    pre: Option<String>,
    suffix: String,
}

impl Hop {
    fn of(h: &KubeHop) -> Hop {
        let v = &h.version;
        Hop {
            part: match h.part {
                HopPart::Whole => "whole",
                HopPart::ControlPlanes => "controlPlanes",
                HopPart::Workers => "workers",
            }
            .into(),
            major: v.major,
            minor: v.minor,
            patch: v.patch,
            v_prefix: v.v_prefix,
            pre: v.pre.clone(),
            suffix: v.suffix.clone(),
        }
    }

    pub fn hop(&self) -> KubeHop {
        KubeHop {
            part: match self.part.as_str() {
                "controlPlanes" => HopPart::ControlPlanes,
                "workers" => HopPart::Workers,
                _ => HopPart::Whole,
            },
            version: KubeVersion {
                major: self.major,
                minor: self.minor,
                patch: self.patch,
                v_prefix: self.v_prefix,
                pre: self.pre.clone(),
                suffix: self.suffix.clone(),
            },
        }
    }
}

/// One step as planned: its changes to every cluster of the wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepView {
    pub index: usize,
    pub id: String,
    pub title: String,
    pub hop: Option<Hop>,
    pub changes: crate::core::state::Records,
    /// The blob id of `changes` as a change file (none when empty): a state whose change
    /// file has this id holds these records, and takes them instead of parsing the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_blob: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveView {
    pub name: String,
    pub clusters: Vec<String>,
    pub steps: Vec<StepView>,
    /// The wave's batches in merge order (empty: one batch).
    #[serde(default)]
    pub batches: Vec<Vec<String>>,
    /// Cluster → its maintenance window (index into the plan's `maintenanceWindows`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub windows: BTreeMap<String, usize>,
}

/// The plan as a tick uses it: everything but the fleet's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    /// The refusals' lines (`  message`); a tick stops on any.
    pub refusals: Vec<String>,
    pub waves: Vec<WaveView>,
    /// Every cluster of the fleet (selected by a wave or not) → its infrastructure, for
    /// telemetry.
    pub infra: BTreeMap<String, String>,
    /// The repository's freeze file (`.fleetwave/freeze.yaml`), as read with the base.
    #[serde(default)]
    pub freezes: Vec<crate::core::calendar::Freeze>,
}

impl PlanView {
    pub fn of(p: &Planned) -> PlanView {
        let waves = p
            .waves
            .iter()
            .map(|w| WaveView {
                name: w.name.clone(),
                clusters: w.clusters.clone(),
                batches: w.batches.clone(),
                windows: w.windows.clone(),
                steps: w
                    .steps
                    .iter()
                    .map(|st| StepView {
                        index: st.index,
                        id: st.id.clone(),
                        title: st.title.clone(),
                        hop: st.kubernetes.as_ref().map(Hop::of),
                        changes: st
                            .changes
                            .iter()
                            .map(|c| ChangeRecord {
                                cluster: c.cluster.clone(),
                                file: c.file.display().to_string(),
                                field: if c.object.is_empty() {
                                    c.field.clone()
                                } else {
                                    format!("{} {}", c.object, c.field)
                                },
                                what: Changed::from(&c.what),
                                from: c.from.clone(),
                                to: c.to.clone(),
                            })
                            .collect::<Vec<_>>()
                            .into(),
                        changes_blob: None,
                    })
                    .collect(),
            })
            .collect();
        let waves = with_changes_blobs(waves);
        let infra = p
            .fleet
            .clusters
            .values()
            .map(|c| {
                let hints: Vec<String> = c.hints.iter().cloned().collect();
                (c.name.clone(), crate::core::notify::infrastructure(&hints))
            })
            .collect();
        PlanView {
            refusals: p.refusals().map(|f| format!("  {}", f.message)).collect(),
            waves,
            infra,
            freezes: p.plan.repo_freezes.clone(),
        }
    }
}

/// `waves` with each step's `changes_blob`, steps hashed in parallel (megabytes of JSON on
/// a large fleet, once per plan).
fn with_changes_blobs(mut waves: Vec<WaveView>) -> Vec<WaveView> {
    use rayon::prelude::*;
    let mut steps: Vec<&mut StepView> = waves.iter_mut().flat_map(|w| &mut w.steps).collect();
    steps.par_iter_mut().for_each(|s| {
        s.changes_blob = (!s.changes.is_empty()).then(|| records_blob(&s.changes));
    });
    waves
}

/// The Git blob id of the change file holding `records`, hashed as it is written instead of
/// built (megabytes a step on a large fleet, at the peak of a plan). Two passes: Git's
/// object header names the length first.
pub fn records_blob(records: &[ChangeRecord]) -> String {
    use sha1::Digest;
    use std::io::Write;
    /// A writer that hands each buffer to a function.
    struct Sink<F: FnMut(&[u8])>(F);
    impl<F: FnMut(&[u8])> Write for Sink<F> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            (self.0)(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let pass = |f: &mut dyn FnMut(&[u8])| {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, Sink(f));
        crate::core::state_files::write_records(records, &mut out)
            .and_then(|()| out.flush())
            .expect("change records serialize");
    };
    let mut len = 0;
    pass(&mut |b| len += b.len());
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {len}\0").as_bytes());
    pass(&mut |b| h.update(b));
    hex::encode(h.finalize())
}

/// One managed value in Git: (`kubernetes` | `gitopsBase` | `template`, role, value).
pub type Value = (String, Option<crate::core::kinds::Role>, String);

/// Each cluster's managed values in Git, in the order the locators found them.
pub fn values(p: &Planned) -> BTreeMap<String, Vec<Value>> {
    use crate::core::locate::What;
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for loc in &p.fleet.located {
        for oc in &loc.occurrences {
            let (what, role) = match oc.what {
                What::Kubernetes(r) => ("kubernetes", Some(r)),
                What::GitopsBase => ("gitopsBase", None),
                What::Template => ("template", None),
            };
            out.entry(oc.cluster.clone()).or_default().push((
                what.to_string(),
                role,
                oc.value.clone(),
            ));
        }
    }
    out
}

/// Each fleet file's owning cluster.
pub fn owners(p: &Planned) -> BTreeMap<PathBuf, String> {
    p.fleet
        .clusters
        .values()
        .flat_map(|c| {
            c.files
                .iter()
                .map(move |&i| (p.fleet.files[i].rel.clone(), c.name.clone()))
        })
        .collect()
}

/// The entries of one cache directory.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store inside `git`'s cache repository.
    pub fn of(git: &GitRepo) -> Store {
        Store {
            dir: git.cache_path().join(DIR),
        }
    }

    fn path(&self, kind: &str, key: &str) -> PathBuf {
        self.dir.join(kind).join(key)
    }

    fn read(&self, kind: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(kind, key)).ok()
    }

    /// Write an entry whole: a temporary file renamed into place.
    fn write(&self, kind: &str, key: &str, bytes: &[u8]) {
        let dir = self.dir.join(kind);
        let result = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
            std::io::Write::write_all(&mut tmp, bytes)?;
            tmp.persist(dir.join(key)).map_err(|e| e.error)?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!("cannot keep {kind} {key} in {}: {e}", dir.display());
        }
    }

    /// Remove all but the `keep` newest entries of `kind`.
    fn prune(&self, kind: &str, keep: usize) {
        let Ok(entries) = std::fs::read_dir(self.dir.join(kind)) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if files.len() <= keep {
            return;
        }
        files.sort();
        for (_, p) in &files[..files.len() - keep] {
            let _ = std::fs::remove_file(p);
        }
    }

    pub fn view(&self, key: &PlanKey) -> Option<PlanView> {
        serde_json::from_slice(&self.read("views", key.as_str())?).ok()
    }

    pub fn put_view(&self, key: &PlanKey, view: &PlanView) {
        match serde_json::to_vec(view) {
            Ok(bytes) => self.write("views", key.as_str(), &bytes),
            Err(e) => tracing::warn!("cannot encode the plan view: {e}"),
        }
        self.prune("views", KEEP_VIEWS);
        self.prune("owners", KEEP_VIEWS);
        self.prune("values", KEEP_VIEWS);
    }

    pub fn values(&self, key: &PlanKey) -> Option<BTreeMap<String, Vec<Value>>> {
        serde_json::from_slice(&self.read("values", key.as_str())?).ok()
    }

    pub fn put_values(&self, key: &PlanKey, values: &BTreeMap<String, Vec<Value>>) {
        match serde_json::to_vec(values) {
            Ok(bytes) => self.write("values", key.as_str(), &bytes),
            Err(e) => tracing::warn!("cannot encode the values in Git: {e}"),
        }
    }

    pub fn owners(&self, key: &PlanKey) -> Option<BTreeMap<PathBuf, String>> {
        serde_json::from_slice(&self.read("owners", key.as_str())?).ok()
    }

    pub fn put_owners(&self, key: &PlanKey, owners: &BTreeMap<PathBuf, String>) {
        match serde_json::to_vec(owners) {
            Ok(bytes) => self.write("owners", key.as_str(), &bytes),
            Err(e) => tracing::warn!("cannot encode the file owners: {e}"),
        }
    }

    /// A state file as parsed before (records left in their change files), by the id of
    /// its blob (JSON reads several times faster than the YAML stored in Git).
    pub fn state(&self, blob: &str) -> Option<(PlanState, Listing)> {
        let c: CachedState = serde_json::from_slice(&self.read("statefiles", blob)?).ok()?;
        Some((c.state, c.listing))
    }

    /// Keep the state file read or written as `blob`: `shell`, the state without its step
    /// records, and the change files it names. Kept only when JSON gives it back exactly
    /// (fields fleetwave does not know are kept as YAML values, which JSON may not hold).
    pub fn put_state(&self, blob: &str, shell: &PlanState, listing: &Listing) {
        debug_assert!(
            shell
                .waves
                .iter()
                .flat_map(|w| &w.steps)
                .all(|s| s.changes.is_empty()),
            "a cached state file holds no records"
        );
        let c = CachedState {
            state: shell.clone(),
            listing: listing.clone(),
        };
        let Ok(bytes) = serde_json::to_vec(&c) else {
            return;
        };
        if serde_json::from_slice::<CachedState>(&bytes).ok().as_ref() == Some(&c) {
            self.write("statefiles", blob, &bytes);
            self.prune("statefiles", 4);
        }
    }

    /// A change file's bytes, by its blob id.
    pub fn changes(&self, blob: &str) -> Option<Vec<u8>> {
        self.read("changes", blob)
    }

    /// Keep a change file's bytes under their blob id, unless kept already (an entry never
    /// changes: its key names its bytes).
    pub fn put_changes(&self, blob: &str, bytes: &[u8]) {
        if !self.path("changes", blob).is_file() {
            self.write("changes", blob, bytes);
            self.prune("changes", KEEP_CHANGES);
        }
    }

    /// Drop a kept change file (one that did not parse: it is read from Git again).
    pub fn forget_changes(&self, blob: &str) {
        let _ = std::fs::remove_file(self.path("changes", blob));
    }

    /// The simulated Flux's base history, by base branch.
    pub fn history(&self, branch: &str) -> Option<Vec<crate::adapters::cluster::sim::BaseCommit>> {
        serde_json::from_slice(&self.read("history", &digest([branch]))?).ok()
    }

    pub fn put_history(&self, branch: &str, commits: &[crate::adapters::cluster::sim::BaseCommit]) {
        match serde_json::to_vec(commits) {
            Ok(bytes) => self.write("history", &digest([branch]), &bytes),
            Err(e) => tracing::warn!("cannot encode the base history: {e}"),
        }
    }

    /// The tree id kept for a step key, if it is a well-formed id.
    pub fn step_tree(&self, step_key: &str) -> Option<String> {
        let bytes = self.read("steps", step_key)?;
        let id = String::from_utf8(bytes).ok()?;
        (id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    }

    pub fn put_step_tree(&self, step_key: &str, tree: &str) {
        self.write("steps", step_key, tree.as_bytes());
        self.prune("steps", 64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_every_input() {
        let k = PlanKey::new("t1", "p1", Path::new("plans/a.yaml"));
        assert_eq!(k, PlanKey::new("t1", "p1", Path::new("plans/a.yaml")));
        assert_ne!(k, PlanKey::new("t2", "p1", Path::new("plans/a.yaml")));
        assert_ne!(k, PlanKey::new("t1", "p2", Path::new("plans/a.yaml")));
        assert_ne!(k, PlanKey::new("t1", "p1", Path::new("plans/b.yaml")));
        let none = BTreeSet::new();
        let one: BTreeSet<String> = ["c1".to_string()].into();
        assert_ne!(k.step("w", 0, &none), k.step("w", 1, &none));
        assert_ne!(k.step("w", 0, &none), k.step("v", 0, &none));
        assert_ne!(k.step("w", 0, &none), k.step("w", 0, &one));
        // Parts are separated: ("ab", "c") is not ("a", "bc").
        assert_ne!(digest(["ab", "c"]), digest(["a", "bc"]));
    }

    #[test]
    fn a_records_blob_is_the_git_blob_id_of_its_change_file() {
        let record = |c: &str, role| ChangeRecord {
            cluster: c.into(),
            file: format!("clusters/{c}/cluster.yaml"),
            field: "Cluster/x spec.topology.version".into(),
            what: Changed::Kubernetes(role),
            from: "v1.32.4".into(),
            to: "v1.33.5 \"quoted\" é".into(),
        };
        // Long enough to cross the hashing buffer several times.
        let records: Vec<ChangeRecord> = (0..3000)
            .map(|i| {
                record(
                    &format!("c{i}"),
                    (i % 2 == 0).then_some(crate::core::kinds::Role::ControlPlane),
                )
            })
            .collect();
        for r in [&records[..0], &records[..1], &records[..]] {
            let mut bytes = Vec::new();
            crate::core::state_files::write_records(r, &mut bytes).unwrap();
            assert_eq!(records_blob(r), GitRepo::blob_id(&bytes));
        }
    }

    #[test]
    fn hops_keep_their_spelling() {
        for (part, v) in [
            (HopPart::Whole, "v1.33.5"),
            (HopPart::ControlPlanes, "1.33.5+k0s.0"),
            (HopPart::Workers, "v1.34.0-rc.1"),
        ] {
            let h = KubeHop {
                part,
                version: KubeVersion::parse(v).unwrap(),
            };
            assert_eq!(Hop::of(&h).hop(), h);
        }
    }

    #[test]
    fn entries_round_trip_and_bad_ones_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store {
            dir: tmp.path().join(DIR),
        };
        let key = PlanKey::new("t", "p", Path::new("plan.yaml"));
        assert!(store.view(&key).is_none());
        let view = PlanView {
            refusals: vec!["  no".into()],
            waves: vec![WaveView {
                name: "canary".into(),
                clusters: vec!["a".into()],
                steps: Vec::new(),
                batches: Vec::new(),
                windows: BTreeMap::new(),
            }],
            infra: BTreeMap::new(),
            freezes: Vec::new(),
        };
        store.put_view(&key, &view);
        assert_eq!(store.view(&key), Some(view));
        std::fs::write(store.path("views", key.as_str()), b"{not json").unwrap();
        assert!(store.view(&key).is_none());
        store.put_step_tree("s", "0123456789012345678901234567890123456789");
        assert_eq!(
            store.step_tree("s").as_deref(),
            Some("0123456789012345678901234567890123456789")
        );
        std::fs::write(store.path("steps", "s"), b"garbage").unwrap();
        assert!(store.step_tree("s").is_none());
    }
}
