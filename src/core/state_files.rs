//! How a plan's state is laid out on the state branch: `<plan>.yaml`, the state, and beside
//! it `<plan>.changes/<wave>-<step>.json`, each step's change records, which are nearly all
//! of a large fleet's state (42,500 records, 9 MB at 10,000 clusters). A write that changes
//! no step's records rewrites only the small state file, so a tick that merges a pull request
//! costs what it changes, not what the fleet holds.
//!
//! The state file names each change file with its Git blob id (`changesFiles`), so the state
//! file's own blob id names the whole state, and a change file that is not the one named is
//! refused rather than read. `stateFormat` says which layout wrote it; a layout this build
//! does not know is refused. States written before (records inline, no `stateFormat`) load
//! as they are and move their records out on the next write.

use serde::{Deserialize, Serialize};

use crate::core::state::{ChangeRecord, PlanState, Records};

/// The layout this build writes and the newest it reads.
pub const FORMAT: u64 = 2;
const FORMAT_KEY: &str = "stateFormat";
const FILES_KEY: &str = "changesFiles";

/// One step's change file, as the state file lists it (wave and step count from 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesFile {
    pub wave: usize,
    pub step: usize,
    pub file: String,
    pub blob: String,
}

/// The change files a state file names: where each step's records are stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Listing(Vec<ChangesFile>);

impl Listing {
    pub fn files(&self) -> &[ChangesFile] {
        &self.0
    }

    fn blob(&self, wave: usize, step: usize) -> Option<&str> {
        self.0
            .iter()
            .find(|f| f.wave == wave && f.step == step)
            .map(|f| f.blob.as_str())
    }
}

/// A change file's bytes, as a reader found them.
pub enum Fetched {
    /// From a store keyed by the blob id the state names: known to be that blob.
    Keyed(Vec<u8>),
    /// Read by path: checked against the blob id the state names.
    Read(Vec<u8>),
    /// Records already parsed whose change file, as [`write_records`] writes it, has the blob
    /// id the state names (a cached plan view's step): the same bytes, so the same records.
    Parsed(Records),
}

/// The folder of `plan`'s change files on the state branch.
pub fn changes_dir(plan: &str) -> String {
    format!("{plan}.changes")
}

fn changes_path(plan: &str, wave: usize, step: usize) -> String {
    format!("{}/{wave}-{step}.json", changes_dir(plan))
}

/// What is wrong with a plan's files on the state branch.
#[derive(Debug, thiserror::Error)]
pub enum StateFilesError {
    #[error("the state does not parse: {0}")]
    Parse(String),
    #[error(
        "the state was written by a newer fleetwave (stateFormat {0}; this build reads up to {FORMAT}): upgrade fleetwave"
    )]
    Newer(String),
    #[error("{0}")]
    Inconsistent(String),
}

/// One file of a plan's state on the state branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    pub path: String,
    pub bytes: Vec<u8>,
    /// Git's blob id of `bytes`.
    pub blob: String,
}

/// What a state is written as: the state file and the change files to write, and the
/// change files kept as the branch holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The state file first, then the change files whose bytes were encoded.
    pub files: Vec<StateFile>,
    /// Change files not encoded again: (path, blob id) the branch already holds.
    pub kept: Vec<(String, String)>,
    /// Every change file the state file names.
    pub listing: Listing,
    /// The state without its records, as the state file holds it (before its format and
    /// listing keys).
    pub shell: PlanState,
}

/// The files that hold `st` on the state branch. `since` is a state the branch holds with
/// the change files it names: a step whose records are the same as there keeps its file
/// without being encoded again (equal records encode to equal bytes). `blob_id` gives Git's
/// id of a file's bytes.
pub fn encode(
    st: &PlanState,
    since: Option<(&PlanState, &Listing)>,
    blob_id: impl Fn(&[u8]) -> String,
) -> Encoded {
    let mut out = Encoded {
        files: Vec::new(),
        kept: Vec::new(),
        listing: Listing::default(),
        shell: without_records(st),
    };
    for (wi, w) in st.waves.iter().enumerate() {
        for (si, s) in w
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.changes.is_empty())
        {
            let path = changes_path(&st.plan, wi + 1, si + 1);
            let kept = since.and_then(|(prev, listing)| {
                let same = prev.waves.get(wi)?.steps.get(si)?.changes == s.changes;
                same.then(|| listing.blob(wi + 1, si + 1)).flatten()
            });
            let blob = match kept {
                Some(blob) => {
                    out.kept.push((path.clone(), blob.to_string()));
                    blob.to_string()
                }
                None => {
                    let bytes = records_json(&s.changes);
                    let blob = blob_id(&bytes);
                    out.files.push(StateFile {
                        path: path.clone(),
                        bytes,
                        blob: blob.clone(),
                    });
                    blob
                }
            };
            out.listing.0.push(ChangesFile {
                wave: wi + 1,
                step: si + 1,
                file: path,
                blob,
            });
        }
    }
    let mut main = out.shell.clone();
    main.unknown
        .insert(FORMAT_KEY.into(), serde_yaml::Value::from(FORMAT));
    if !out.listing.0.is_empty() {
        let v = serde_yaml::to_value(&out.listing).expect("change files serialize");
        main.unknown.insert(FILES_KEY.into(), v);
    }
    let bytes = main.to_yaml().into_bytes();
    out.files.insert(
        0,
        StateFile {
            path: PlanState::path(&st.plan),
            blob: blob_id(&bytes),
            bytes,
        },
    );
    out
}

/// `st` with every step's records left out (they go to change files).
fn without_records(st: &PlanState) -> PlanState {
    let mut main = st.clone();
    for s in main.waves.iter_mut().flat_map(|w| w.steps.iter_mut()) {
        s.changes = Records::default();
    }
    main
}

/// One record a line, so a change file diffs by record. JSON is YAML too.
/// Write the change file that holds `records`: the bytes [`encode`] writes for a step.
pub fn write_records(
    records: &[ChangeRecord],
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    out.write_all(b"[\n")?;
    for (i, r) in records.iter().enumerate() {
        serde_json::to_writer(&mut *out, r)?;
        out.write_all(if i + 1 < records.len() { b",\n" } else { b"\n" })?;
    }
    out.write_all(b"]\n")
}

fn records_json(records: &[ChangeRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    write_records(records, &mut out).expect("change records serialize");
    out
}

/// The state from its state file's `text`, with each step's records read from the change
/// file it names (`read` gives a file's bytes on the same commit, None when absent).
pub fn decode(
    text: &str,
    mut read: impl FnMut(&str) -> Result<Option<Vec<u8>>, String>,
    blob_id: impl Fn(&[u8]) -> String,
) -> Result<(PlanState, Listing), StateFilesError> {
    let (mut st, listing) = split(text)?;
    attach(
        &mut st,
        &listing,
        |f| Ok(read(&f.file)?.map(Fetched::Read)),
        blob_id,
    )?;
    Ok((st, listing))
}

/// The state file's `text` parsed: the state (records still in their files, unless
/// written inline by an older fleetwave) and the change files it names.
pub fn split(text: &str) -> Result<(PlanState, Listing), StateFilesError> {
    let mut st = PlanState::from_yaml(text).map_err(|e| StateFilesError::Parse(e.to_string()))?;
    if let Some(v) = st.unknown.remove(FORMAT_KEY) {
        if v.as_u64().is_none_or(|n| n > FORMAT) {
            let shown = serde_yaml::to_string(&v).unwrap_or_default();
            return Err(StateFilesError::Newer(shown.trim().to_string()));
        }
    }
    let listing = match st.unknown.remove(FILES_KEY) {
        None => Listing::default(),
        Some(v) => serde_yaml::from_value(v)
            .map_err(|e| StateFilesError::Parse(format!("{FILES_KEY}: {e}")))?,
    };
    Ok((st, listing))
}

/// Put each listed step's records into `st`, from the bytes `read` fetches for its change
/// file (None when absent); bytes read by path must be the blob the state file names.
pub fn attach(
    st: &mut PlanState,
    listing: &Listing,
    mut read: impl FnMut(&ChangesFile) -> Result<Option<Fetched>, String>,
    blob_id: impl Fn(&[u8]) -> String,
) -> Result<(), StateFilesError> {
    for f in &listing.0 {
        let bad = |why: &str| StateFilesError::Inconsistent(format!("{}: {why}", f.file));
        let step = f
            .wave
            .checked_sub(1)
            .and_then(|w| st.waves.get_mut(w))
            .and_then(|w| w.steps.get_mut(f.step.checked_sub(1)?))
            .ok_or_else(|| bad("names a step the state does not have"))?;
        if !step.changes.is_empty() {
            return Err(bad("the step also has records in the state file"));
        }
        let bytes = match read(f).map_err(|e| bad(&e))? {
            None => return Err(bad("missing from the state branch")),
            Some(Fetched::Parsed(records)) => {
                step.changes = records;
                continue;
            }
            Some(Fetched::Keyed(b)) => b,
            Some(Fetched::Read(b)) if blob_id(&b) == f.blob => b,
            Some(Fetched::Read(_)) => {
                return Err(bad(
                    "is not the file the state names (edited by hand?): restore it from the state branch's history",
                ));
            }
        };
        step.changes = serde_json::from_slice(&bytes).map_err(|e| bad(&e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::state::{Changed, StepState, WaveState};

    /// A stand-in for Git's blob id: any function of the bytes will do here.
    fn id(b: &[u8]) -> String {
        format!(
            "{:x}-{}",
            b.iter().map(|&x| u64::from(x)).sum::<u64>(),
            b.len()
        )
    }

    fn record(cluster: &str) -> ChangeRecord {
        ChangeRecord {
            cluster: cluster.into(),
            file: format!("clusters/{cluster}/cluster.yaml"),
            field: "Cluster/x spec.topology.version".into(),
            what: Changed::Kubernetes(None),
            from: "v1.32.4".into(),
            to: "v1.33.5".into(),
        }
    }

    fn state() -> PlanState {
        let mut st = PlanState::new("k8s", "abc");
        let step = |i: usize, cs: Vec<ChangeRecord>| StepState {
            index: i,
            id: format!("s{i}"),
            branch: format!("fleetwave/k8s/canary/{i}"),
            changes: cs.into(),
            ..Default::default()
        };
        st.waves.push(WaveState {
            name: "canary".into(),
            steps: vec![step(1, vec![record("a"), record("b")]), step(2, Vec::new())],
            ..Default::default()
        });
        st.waves.push(WaveState {
            name: "prod".into(),
            steps: vec![step(1, vec![record("c")])],
            ..Default::default()
        });
        st
    }

    fn read_from(files: &[StateFile]) -> impl FnMut(&str) -> Result<Option<Vec<u8>>, String> {
        let map: BTreeMap<String, Vec<u8>> = files
            .iter()
            .map(|f| (f.path.clone(), f.bytes.clone()))
            .collect();
        move |f: &str| Ok(map.get(f).cloned())
    }

    #[test]
    fn records_move_to_files_and_read_back_the_same() {
        let st = state();
        let files = encode(&st, None, id).files;
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            ["k8s.yaml", "k8s.changes/1-1.json", "k8s.changes/2-1.json"]
        );
        let main = String::from_utf8(files[0].bytes.clone()).unwrap();
        assert!(!main.contains("cluster.yaml"), "{main}");
        assert!(main.contains("stateFormat: 2"), "{main}");
        let (back, _) = decode(&main, read_from(&files), id).unwrap();
        assert_eq!(back, st);
        // Written again, the same bytes: an unchanged step's file is not rewritten.
        assert_eq!(encode(&back, None, id).files, files);
    }

    #[test]
    fn a_state_with_records_inline_loads_and_moves_them_out() {
        let st = state();
        let inline = st.to_yaml();
        assert!(inline.contains("cluster.yaml"));
        let (back, listing) = decode(&inline, |_: &str| Ok(None), id).unwrap();
        assert!(listing.files().is_empty());
        assert_eq!(back, st);
        assert_eq!(encode(&back, None, id).files.len(), 3);
    }

    #[test]
    fn a_change_file_that_is_not_the_one_named_is_refused() {
        let files = encode(&state(), None, id).files;
        let main = String::from_utf8(files[0].bytes.clone()).unwrap();
        let mut edited = files.clone();
        edited[1].bytes = String::from_utf8(edited[1].bytes.clone())
            .unwrap()
            .replace("v1.33.5", "v1.34.0")
            .into_bytes();
        let err = decode(&main, read_from(&edited), id)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("k8s.changes/1-1.json: is not the file"),
            "{err}"
        );
        let err = decode(&main, read_from(&files[..2]), id)
            .unwrap_err()
            .to_string();
        assert!(err.contains("k8s.changes/2-1.json: missing"), "{err}");
    }

    #[test]
    fn a_newer_layout_is_refused() {
        let files = encode(&state(), None, id).files;
        let main = String::from_utf8(files[0].bytes.clone()).unwrap();
        let newer = main.replace("stateFormat: 2", "stateFormat: 3");
        let err = decode(&newer, read_from(&files), id)
            .unwrap_err()
            .to_string();
        assert!(err.contains("newer fleetwave (stateFormat 3"), "{err}");
        let odd = main.replace("stateFormat: 2", "stateFormat: two");
        assert!(decode(&odd, read_from(&files), id).is_err());
    }

    #[test]
    fn records_both_inline_and_in_a_file_are_refused() {
        let st = state();
        let files = encode(&st, None, id).files;
        let main = String::from_utf8(files[0].bytes.clone()).unwrap();
        let mut both: PlanState = PlanState::from_yaml(&main).unwrap();
        both.waves[1].steps[0].changes = vec![record("z")].into();
        let err = decode(&both.to_yaml(), read_from(&files), id)
            .unwrap_err()
            .to_string();
        assert!(err.contains("also has records in the state file"), "{err}");
    }

    #[test]
    fn a_step_with_the_same_records_keeps_its_file_unencoded() {
        let st = state();
        let first = encode(&st, None, id);
        assert!(first.kept.is_empty());
        let mut next = st.clone();
        next.tick += 1;
        std::sync::Arc::make_mut(&mut next.waves[1].steps[0].changes).push(record("d"));
        let again = encode(&next, Some((&st, &first.listing)), id);
        let written: Vec<&str> = again.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(written, ["k8s.yaml", "k8s.changes/2-1.json"]);
        assert_eq!(
            again.kept,
            [(
                "k8s.changes/1-1.json".to_string(),
                first.files[1].blob.clone()
            )]
        );
        // The same files as encoding everything: only the work differs.
        let all = encode(&next, None, id);
        assert_eq!(again.listing, all.listing);
        assert_eq!(again.files[0], all.files[0]);
        assert_eq!(again.files[1], all.files[2]);
    }

    #[test]
    fn keyed_bytes_are_taken_and_read_bytes_are_checked() {
        let enc = encode(&state(), None, id);
        let main = String::from_utf8(enc.files[0].bytes.clone()).unwrap();
        let (mut st, listing) = split(&main).unwrap();
        assert!(st.waves[0].steps[0].changes.is_empty());
        let wrong = b"[\n]\n".to_vec();
        let mut asked = Vec::new();
        attach(
            &mut st,
            &listing,
            |f| {
                asked.push(f.file.clone());
                // A keyed store answers for its key: its bytes are not hashed again.
                Ok(Some(match f.wave {
                    1 => Fetched::Keyed(enc.files[1].bytes.clone()),
                    _ => Fetched::Read(enc.files[2].bytes.clone()),
                }))
            },
            id,
        )
        .unwrap();
        assert_eq!(asked, ["k8s.changes/1-1.json", "k8s.changes/2-1.json"]);
        assert_eq!(st, state());
        let (mut st, _) = split(&main).unwrap();
        let err = attach(
            &mut st,
            &listing,
            |_| Ok(Some(Fetched::Read(wrong.clone()))),
            id,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("1-1.json: is not the file"), "{err}");
    }

    #[test]
    fn a_change_file_is_its_records_written_and_parsed_records_are_taken_as_they_are() {
        let st = state();
        let enc = encode(&st, None, id);
        // `write_records` writes the bytes of a step's change file.
        for (step, file) in [(&st.waves[0].steps[0], 1), (&st.waves[1].steps[0], 2)] {
            let mut bytes = Vec::new();
            write_records(&step.changes, &mut bytes).unwrap();
            assert_eq!(bytes, enc.files[file].bytes);
        }
        let main = String::from_utf8(enc.files[0].bytes.clone()).unwrap();
        let (mut shell, listing) = split(&main).unwrap();
        let shared = st.waves[0].steps[0].changes.clone();
        let fetch = |f: &ChangesFile| {
            Ok(Some(match f.wave {
                1 => Fetched::Parsed(shared.clone()),
                _ => Fetched::Read(enc.files[2].bytes.clone()),
            }))
        };
        attach(&mut shell, &listing, fetch, id).unwrap();
        assert!(std::sync::Arc::ptr_eq(
            &shell.waves[0].steps[0].changes,
            &shared
        ));
        assert_eq!(shell, st);
    }
}
