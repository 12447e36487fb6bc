//! One reconcile tick: observe Git, the forge and the clusters; call `decide`; write the new
//! state by compare-and-swap; then carry out the effects. Also the state-changing commands
//! that share this machinery: pause, resume, rollback, history.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::Digest;

pub mod cache;

use crate::adapters::cluster::sim::BaseCommit;
use crate::adapters::forge::{Forge, ForgeError, PrSpec, StepRef};
use crate::adapters::git::{GitError, GitRepo, Sig};
use crate::core::cluster::{ClusterObservation, ClusterSource};
use crate::core::decide::{self, Decision, Desired, Effect, StepPlan, WaveInput, World};
use crate::core::diag::Diags;
use crate::core::notify::Notifier;
use crate::core::plan::Plan;
use crate::core::planner::{self, Planned};
use crate::core::state::{self, ChangeRecord, Changed, PlanState, PlanStatus, Records, StepStatus};
use crate::core::state_files::{self, Fetched, Listing, StateFile};
use cache::{PlanKey, PlanView, Store};

pub const DEFAULT_TITLE: &str = "fleetwave({plan}): {wave} — {what}";

/// How the reconciler reaches the fleet repo and signs its commits.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The plan file, relative to the fleet repo's root.
    pub plan_path: PathBuf,
    pub base: String,
    pub author_name: String,
    pub author_email: String,
    pub state_branch: String,
    /// Commit and PR title; `{plan}`, `{wave}`, `{step}`, `{title}` and `{what}` are filled in.
    pub title_template: String,
    /// Keep a dashboard issue per plan (GitHub forge).
    pub dashboard: bool,
}

impl Settings {
    pub fn new(plan_path: &Path) -> Self {
        Settings {
            plan_path: plan_path.to_path_buf(),
            base: "main".into(),
            author_name: "fleetwave".into(),
            author_email: "fleetwave@users.noreply.local".into(),
            state_branch: state::BRANCH.into(),
            title_template: DEFAULT_TITLE.into(),
            dashboard: false,
        }
    }

    pub fn sig(&self, now: DateTime<Utc>) -> Sig {
        Sig {
            name: self.author_name.clone(),
            email: self.author_email.clone(),
            time: now,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Forge(#[from] ForgeError),
    #[error(transparent)]
    Cluster(#[from] crate::core::cluster::ClusterError),
    #[error("{0}")]
    Plan(Diags),
    #[error("the plan has refusals against the base branch:\n{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

/// How a tick ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Work is progressing (or waiting on time or Flux).
    Progressing,
    /// Every wave succeeded.
    Done,
    /// Held by a failed gate, a halt or a foreign commit (exit 1).
    Held(String),
    /// Another reconciler wrote the state first; nothing was done.
    LostRace,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    pub notes: Vec<String>,
    pub effects: Vec<String>,
    pub wake_at: Option<DateTime<Utc>>,
    pub state: PlanState,
    /// Forge API calls made by this tick, where the forge counts them.
    pub api_calls: Option<usize>,
    /// Effects decided but not carried out, each with what the call answered.
    pub not_done: Vec<String>,
}

/// What a tick saw of the base branch, planned.
pub struct Observed {
    pub base_head: String,
    /// The plan file as parsed.
    pub plan: Plan,
    /// The plan against the base as a tick uses it (from the cache when the fleet tree and the
    /// plan are unchanged).
    pub view: PlanView,
    pub plan_hash: String,
    pub state: PlanState,
    /// The change files `state`'s file names on the state branch.
    pub listing: Listing,
    pub state_head: Option<String>,
    /// What `view` was computed from: the key of the cached entries.
    pub key: PlanKey,
    /// The base branch's name.
    pub base_branch: String,
    plan_path: PathBuf,
    plan_text: String,
    /// The whole plan (files, locations, edits), computed on first use.
    planned: std::cell::OnceCell<Planned>,
}

impl Observed {
    /// The state as the state branch holds it, for [`write_state`].
    pub fn since(&self) -> Option<(&PlanState, &Listing)> {
        Some((&self.state, &self.listing))
    }

    /// Drop the whole plan (kept when this tick planned); [`Observed::planned`] computes it
    /// again if asked.
    pub fn forget_planned(&mut self) {
        self.planned.take();
    }

    /// The whole plan against the base: computed now unless this tick already planned.
    pub fn planned(&self, git: &GitRepo) -> Result<&Planned, ReconcileError> {
        if let Some(p) = self.planned.get() {
            return Ok(p);
        }
        let p = plan_base(
            git,
            &self.base_head,
            &self.plan_path,
            self.plan_text.clone(),
        )?;
        Ok(self.planned.get_or_init(|| p))
    }

    /// Each cluster's managed values in Git (kept in the cache with the plan view).
    pub fn git_values(
        &self,
        git: &GitRepo,
    ) -> Result<BTreeMap<String, Vec<crate::core::status::GitValue>>, ReconcileError> {
        let store = Store::of(git);
        let values = match store.values(&self.key) {
            Some(v) => v,
            None => {
                let v = cache::values(self.planned(git)?);
                store.put_values(&self.key, &v);
                v
            }
        };
        Ok(values
            .into_iter()
            .map(|(cluster, vs)| {
                let vs = vs
                    .into_iter()
                    .map(|(what, role, value)| crate::core::status::GitValue {
                        what: match (what.as_str(), role) {
                            ("kubernetes", Some(r)) => crate::core::locate::What::Kubernetes(r),
                            ("gitopsBase", _) => crate::core::locate::What::GitopsBase,
                            _ => crate::core::locate::What::Template,
                        },
                        value,
                    })
                    .collect();
                (cluster, vs)
            })
            .collect())
    }

    /// Each fleet file's owning cluster (kept in the cache with the plan view).
    pub fn owners(&self, git: &GitRepo) -> Result<BTreeMap<PathBuf, String>, ReconcileError> {
        let store = Store::of(git);
        if let Some(o) = store.owners(&self.key) {
            return Ok(o);
        }
        let owners = cache::owners(self.planned(git)?);
        store.put_owners(&self.key, &owners);
        Ok(owners)
    }
}

pub fn plan_hash(text: &str) -> String {
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..6])
}

pub fn branch_name(plan: &str, wave: &str, index: usize, id: &str) -> String {
    format!("fleetwave/{plan}/{wave}/{index}-{id}")
}

/// Plans computed from a whole base tree by this process (a tick on an unchanged base, with
/// its cache, computes none).
static PLANS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times this process planned against a whole base tree.
pub fn plans_computed() -> u64 {
    PLANS.load(std::sync::atomic::Ordering::Relaxed)
}

static ENCODED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many change files (one step's records each) this process encoded to write them.
pub fn change_files_encoded() -> u64 {
    ENCODED.load(std::sync::atomic::Ordering::Relaxed)
}

static PARSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many change files this process handed over to be parsed (not taken from a plan view).
pub fn change_files_parsed() -> u64 {
    PARSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A change file's bytes, counted as parsed.
fn to_parse(f: Fetched) -> Fetched {
    PARSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    f
}

/// Read the base's files and plan against them.
fn plan_base(
    git: &GitRepo,
    base_head: &str,
    plan_path: &Path,
    text: String,
) -> Result<Planned, ReconcileError> {
    PLANS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tree = git.tree(base_head)?;
    planner::prepare_in(&tree, plan_path, text).map_err(ReconcileError::Plan)
}

/// Ask the remote whether it moved (fetching only then), plan against the base branch (or
/// take the plan from the cache) and load the stored state.
pub fn observe_repo(git: &GitRepo, s: &Settings) -> Result<Observed, ReconcileError> {
    git.refresh()?;
    observe_fetched(git, s)
}

/// [`observe_repo`] without asking the remote first (plan discovery asked once for every
/// plan of the tick).
pub fn observe_fetched(git: &GitRepo, s: &Settings) -> Result<Observed, ReconcileError> {
    let base_head = git.branch_head(&s.base)?.ok_or_else(|| {
        ReconcileError::Other(format!(
            "the base branch {} does not exist on the remote",
            s.base
        ))
    })?;
    let (plan_id, text) = plan_file(git, s, &base_head)?;
    let key = PlanKey::new(&git.tree_id(&base_head)?, &plan_id, &s.plan_path);
    let store = Store::of(git);
    let planned = std::cell::OnceCell::new();
    // When the plan names itself, the state is located first, so the cached view and the
    // cached state (each megabytes of JSON on a large fleet) are parsed side by side.
    let state_at = match crate::core::plan::load(&s.plan_path, text.clone()) {
        Ok((p, _)) => Some(StateAt::find(git, s, &p.name)?),
        Err(_) => None,
    };
    let (cached_view, cached_shell) = std::thread::scope(|scope| {
        let shell = state_at
            .as_ref()
            .map(|at| scope.spawn(|| at.cached_shell(&store)));
        let view = store.view(&key);
        (view, shell.and_then(|h| h.join().ok()).flatten())
    });
    let view = match cached_view {
        Some(v) => v,
        None => {
            let p = plan_base(git, &base_head, &s.plan_path, text.clone())?;
            let v = PlanView::of(&p);
            store.put_view(&key, &v);
            let _ = planned.set(p);
            v
        }
    };
    if !view.refusals.is_empty() {
        return Err(ReconcileError::Refused(view.refusals.join("\n")));
    }
    let mut plan = match planned.get() {
        Some(p) => p.plan.clone(),
        None => {
            crate::core::plan::load(&s.plan_path, text.clone())
                .map_err(ReconcileError::Plan)?
                .0
        }
    };
    // The repository's freeze file was read with the base (and kept with the cached view).
    plan.repo_freezes = view.freezes.clone();
    plan.wave_windows = view.waves.iter().map(|w| w.windows.clone()).collect();
    let loaded = match state_at {
        Some(at) if at.plan == plan.name => {
            let cached = cached_shell.and_then(|(st, l)| attach_cached(&store, st, l, Some(&view)));
            at.load(git, s, cached, Some(&view))?
        }
        _ => {
            let at = StateAt::find(git, s, &plan.name)?;
            let cached = at.cached(&store, Some(&view));
            at.load(git, s, cached, Some(&view))?
        }
    };
    Ok(Observed {
        base_head,
        plan,
        view,
        plan_hash: plan_hash(&text),
        state: loaded.state,
        listing: loaded.listing,
        state_head: loaded.head,
        key,
        base_branch: s.base.clone(),
        plan_path: s.plan_path.clone(),
        plan_text: text,
        planned,
    })
}

/// The plan file's blob id and text on the base commit.
fn plan_file(
    git: &GitRepo,
    s: &Settings,
    base_head: &str,
) -> Result<(String, String), ReconcileError> {
    let missing = || {
        ReconcileError::Other(format!(
            "{} is not on branch {} (commit {})",
            s.plan_path.display(),
            s.base,
            &base_head[..12]
        ))
    };
    // A path git cannot hold is not on the branch either.
    let id = match git.file_id(base_head, &s.plan_path) {
        Ok(Some(id)) => id,
        Ok(None) | Err(GitError::InvalidPath { .. }) => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    let bytes = git
        .read_file(base_head, &s.plan_path)?
        .filter(|b| b.len() as u64 <= crate::core::tree::MAX_FILE_BYTES)
        .ok_or_else(missing)?;
    Ok((id, String::from_utf8_lossy(&bytes).to_string()))
}

pub fn load_state(
    git: &GitRepo,
    s: &Settings,
    plan: &str,
) -> Result<(PlanState, Option<String>), ReconcileError> {
    let at = StateAt::find(git, s, plan)?;
    let cached = at.cached(&Store::of(git), None);
    at.load(git, s, cached, None).map(|l| (l.state, l.head))
}

/// Where a plan's state is: the state branch's head and the state file's blob there.
struct StateAt {
    plan: String,
    head: Option<String>,
    blob: Option<String>,
}

/// A plan's state as loaded from the state branch.
struct Loaded {
    state: PlanState,
    /// The change files the state file names.
    listing: Listing,
    head: Option<String>,
}

impl StateAt {
    fn find(git: &GitRepo, s: &Settings, plan: &str) -> Result<StateAt, ReconcileError> {
        let head = git.branch_head(&s.state_branch)?;
        let blob = match &head {
            Some(h) => git.file_id(h, Path::new(&PlanState::path(plan)))?,
            None => None,
        };
        Ok(StateAt {
            plan: plan.to_string(),
            head,
            blob,
        })
    }

    /// The state file as parsed before, without its records, from the cache alone (no Git
    /// access: runs on any thread).
    fn cached_shell(&self, store: &Store) -> Option<(PlanState, Listing)> {
        store.state(self.blob.as_deref()?)
    }

    /// The state as parsed before, from the cache alone; None unless every change file it
    /// names is cached too or holds the records of a step of `view`.
    fn cached(&self, store: &Store, view: Option<&PlanView>) -> Option<(PlanState, Listing)> {
        let (st, listing) = self.cached_shell(store)?;
        attach_cached(store, st, listing, view)
    }

    fn load(
        self,
        git: &GitRepo,
        s: &Settings,
        cached: Option<(PlanState, Listing)>,
        view: Option<&PlanView>,
    ) -> Result<Loaded, ReconcileError> {
        let Some(h) = &self.head else {
            return Ok(Loaded {
                state: PlanState::new(&self.plan, ""),
                listing: Listing::default(),
                head: None,
            });
        };
        let (state, listing) = match (cached, &self.blob) {
            (Some(c), _) => c,
            (None, None) => (PlanState::new(&self.plan, ""), Listing::default()),
            (None, Some(blob)) => {
                read_state_cached(git, h, &self.plan, blob, view).map_err(|e| {
                    ReconcileError::Other(format!(
                        "the state of plan {} on {}: {e}",
                        self.plan, s.state_branch
                    ))
                })?
            }
        };
        Ok(Loaded {
            state,
            listing,
            head: self.head,
        })
    }
}

/// The records of `view`'s steps, by the blob id of their change file.
fn view_records(view: Option<&PlanView>) -> HashMap<&str, &Records> {
    view.into_iter()
        .flat_map(|v| &v.waves)
        .flat_map(|w| &w.steps)
        .filter_map(|s| Some((s.changes_blob.as_deref()?, &s.changes)))
        .collect()
}

/// `st` with the records of the change files `listing` names, from `view` (a step whose
/// records have the blob id named) or else from the cache; None when one is in neither.
fn attach_cached(
    store: &Store,
    mut st: PlanState,
    listing: Listing,
    view: Option<&PlanView>,
) -> Option<(PlanState, Listing)> {
    let shared = view_records(view);
    let fetch = |f: &state_files::ChangesFile| {
        Ok(match shared.get(f.blob.as_str()) {
            Some(&records) => Some(Fetched::Parsed(records.clone())),
            None => store.changes(&f.blob).map(|b| to_parse(Fetched::Keyed(b))),
        })
    };
    state_files::attach(&mut st, &listing, fetch, GitRepo::blob_id).ok()?;
    Some((st, listing))
}

/// [`read_state`] through the cache: change files it holds (or `view` holds, parsed) are
/// not read from Git, and what was read from Git is kept there for the next tick.
fn read_state_cached(
    git: &GitRepo,
    head: &str,
    plan: &str,
    blob: &str,
    view: Option<&PlanView>,
) -> Result<(PlanState, Listing), String> {
    let path = PlanState::path(plan);
    let bytes = git
        .read_file(head, Path::new(&path))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{path} is not a file on commit {head}"))?;
    let (shell, listing) =
        state_files::split(&String::from_utf8_lossy(&bytes)).map_err(|e| e.to_string())?;
    let store = Store::of(git);
    // A cached change file that does not parse is never trusted: they are all read from Git
    // again, and kept again.
    let shared = view_records(view);
    let st = attach_records(git, &store, &shared, head, &shell, &listing).or_else(|_| {
        for f in listing.files() {
            store.forget_changes(&f.blob);
        }
        attach_records(git, &store, &shared, head, &shell, &listing)
    })?;
    // Records inline (written by an older fleetwave) are not cached: the next write moves
    // them out.
    let inline = shell
        .waves
        .iter()
        .flat_map(|w| &w.steps)
        .any(|s| !s.changes.is_empty());
    if !inline {
        store.put_state(blob, &shell, &listing);
    }
    Ok((st, listing))
}

/// `shell` with the records of the change files `listing` names, read from the cache or
/// else from commit `head`; what was read from Git is checked, then cached.
fn attach_records(
    git: &GitRepo,
    store: &Store,
    shared: &HashMap<&str, &Records>,
    head: &str,
    shell: &PlanState,
    listing: &Listing,
) -> Result<PlanState, String> {
    let mut st = shell.clone();
    let mut read = Vec::new();
    let fetch = |f: &state_files::ChangesFile| {
        if let Some(&records) = shared.get(f.blob.as_str()) {
            return Ok(Some(Fetched::Parsed(records.clone())));
        }
        if let Some(b) = store.changes(&f.blob) {
            return Ok(Some(to_parse(Fetched::Keyed(b))));
        }
        let b = git
            .read_file(head, Path::new(&f.file))
            .map_err(|e| e.to_string())?;
        read.extend(b.clone().map(|b| (f.blob.clone(), b)));
        Ok(b.map(|b| to_parse(Fetched::Read(b))))
    };
    state_files::attach(&mut st, listing, fetch, GitRepo::blob_id).map_err(|e| e.to_string())?;
    for (b, bytes) in &read {
        store.put_changes(b, bytes);
    }
    Ok(st)
}

/// The state on commit `head` of a state branch that holds one plan's (tests and tools
/// that look at a branch written for one plan).
pub fn read_single_state(git: &GitRepo, head: &str) -> Result<Option<PlanState>, String> {
    let plans: Vec<String> = git
        .root_files(head)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|f| f.strip_suffix(".yaml").map(str::to_string))
        .collect();
    match plans.as_slice() {
        [] => Ok(None),
        [plan] => read_state(git, head, plan),
        _ => Err(format!("the state branch holds {} plans", plans.len())),
    }
}

/// The state of `plan` at commit `head` of the state branch (its state file and the change
/// files it names); None when the plan has no state there.
pub fn read_state(git: &GitRepo, head: &str, plan: &str) -> Result<Option<PlanState>, String> {
    let Some(bytes) = git
        .read_file(head, Path::new(&PlanState::path(plan)))
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let read = |file: &str| {
        git.read_file(head, Path::new(file))
            .map_err(|e| e.to_string())
    };
    state_files::decode(&String::from_utf8_lossy(&bytes), read, GitRepo::blob_id)
        .map(|(st, _)| Some(st))
        .map_err(|e| e.to_string())
}

/// Write the state with compare-and-swap on the state branch. Ok(None): lost the race.
/// `since` is a state the branch held, with its change files: steps whose records did not
/// change since are not encoded again (`expected`'s files are checked all the same).
pub fn write_state(
    git: &GitRepo,
    s: &Settings,
    st: &PlanState,
    since: Option<(&PlanState, &Listing)>,
    expected: Option<&str>,
    message: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, ReconcileError> {
    let mut enc = state_files::encode(st, since, GitRepo::blob_id);
    // A kept file the branch does not hold as named (a cache that lied): encode them all.
    for (path, blob) in &enc.kept {
        let held = match expected {
            Some(h) => git.file_id(h, Path::new(path))?,
            None => None,
        };
        if held.as_deref() != Some(blob.as_str()) {
            enc = state_files::encode(st, None, GitRepo::blob_id);
            break;
        }
    }
    let encoded = enc.files.len() as u64 - 1;
    ENCODED.fetch_add(encoded, std::sync::atomic::Ordering::Relaxed);
    let (written, removed) = state_writes(git, &enc, &st.plan, expected)?;
    let written: Vec<(&Path, &[u8])> = written
        .iter()
        .map(|f| (Path::new(f.path.as_str()), f.bytes.as_slice()))
        .collect();
    let removed: Vec<&Path> = removed.iter().map(PathBuf::as_path).collect();
    let commit = git.commit_files(expected, &written, &removed, message, &s.sig(now))?;
    match git.push_alone(&s.state_branch, &commit, expected) {
        Ok(()) => {
            // The next tick reads this state back: keep it parsed, under the state file's
            // blob (which names every change file's blob).
            let store = Store::of(git);
            for f in &enc.files[1..] {
                store.put_changes(&f.blob, &f.bytes);
            }
            store.put_state(&enc.files[0].blob, &enc.shell, &enc.listing);
            Ok(Some(commit))
        }
        Err(GitError::LeaseLost { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The encoded files the branch at `expected` does not hold yet, and the change files of
/// steps the state no longer has.
fn state_writes<'e>(
    git: &GitRepo,
    enc: &'e state_files::Encoded,
    plan: &str,
    expected: Option<&str>,
) -> Result<(Vec<&'e StateFile>, Vec<PathBuf>), ReconcileError> {
    let Some(h) = expected else {
        return Ok((enc.files.iter().collect(), Vec::new()));
    };
    let mut written = Vec::new();
    for f in &enc.files {
        if git.file_id(h, Path::new(&f.path))?.as_deref() != Some(f.blob.as_str()) {
            written.push(f);
        }
    }
    let dir = state_files::changes_dir(plan);
    let mut stale = Vec::new();
    for name in git.dir_files(h, Path::new(&dir))? {
        let p = format!("{dir}/{name}");
        if !enc.listing.files().iter().any(|f| f.file == p) {
            stale.push(PathBuf::from(p));
        }
    }
    Ok((written, stale))
}

/// The pull request of wave `name`'s rollback, reverting `count` values in `files` files.
fn rollback_spec(
    plan: &str,
    name: &str,
    count: usize,
    files: usize,
    lines: &[String],
    base: &str,
) -> PrSpec {
    let listed: Vec<String> = lines.iter().map(|l| format!("- {l}")).collect();
    PrSpec {
        title: format!("fleetwave({plan}): roll back wave {name}"),
        body: format!(
            "Wave `{name}` failed; its `failurePolicy` is `rollback`.\n\nReverts {count} value(s) in {files} file(s): gitops-base tags and template names.\n\n{}\n",
            listed.join("\n")
        ),
        base: base.to_string(),
    }
}

/// The waves as planned against the base; clusters that failed in a wave get no more changes.
fn wave_inputs(plan: &str, view: &PlanView, st: &PlanState) -> Vec<WaveInput> {
    view.waves
        .iter()
        .enumerate()
        .map(|(wi, w)| (w, st.waves.get(wi)))
        .map(|(w, failed)| WaveInput {
            clusters: w.clusters.clone(),
            steps: w
                .steps
                .iter()
                .map(|st| StepPlan {
                    index: st.index,
                    id: st.id.clone(),
                    title: st.title.clone(),
                    kubernetes: st.hop.as_ref().map(cache::Hop::hop),
                    branch: branch_name(plan, &w.name, st.index, &st.id),
                    // Shared with the cached view unless a failed cluster is left out.
                    changes: match failed {
                        None => st.changes.clone(),
                        Some(ws) => st
                            .changes
                            .iter()
                            .filter(|c| !ws.is_out(&c.cluster))
                            .cloned()
                            .collect::<Vec<_>>()
                            .into(),
                    },
                    batch: None,
                    clusters: Vec::new(),
                })
                .collect(),
            batches: w.batches.clone(),
            windows: w.windows.clone(),
            joined: Vec::new(),
        })
        .enumerate()
        .map(|(wi, mut input)| {
            // Batches are fixed when the wave starts; each batch of each step is a step.
            if let Some(ws) = st.waves.get(wi).filter(|ws| {
                ws.status != crate::core::state::WaveStatus::Pending && !ws.batches.is_empty()
            }) {
                input.batches = ws.batches.clone();
            }
            let retries = st
                .waves
                .get(wi)
                .map(|ws| ws.retries.as_slice())
                .unwrap_or_default();
            let again =
                crate::core::batch::expand_retries(&input.steps, input.batches.len(), retries);
            // A cluster that joined the started wave gets nothing until `retry` adds it.
            if let Some(ws) = st
                .waves
                .get(wi)
                .filter(|ws| ws.status != crate::core::state::WaveStatus::Pending)
            {
                input.joined = crate::core::batch::joined(&input.steps, ws);
            }
            // A retried cluster's remaining changes go in its retry batch only.
            let elsewhere = |c: &ChangeRecord| {
                retries.iter().flatten().any(|r| *r == c.cluster)
                    || input.joined.contains(&c.cluster)
            };
            for s in &mut input.steps {
                // Copied only when a record goes: the records are shared with the cached view.
                if s.changes.iter().any(elsewhere) {
                    let kept = s.changes.iter().filter(|c| !elsewhere(c)).cloned();
                    s.changes = kept.collect::<Vec<_>>().into();
                }
            }
            input.steps = crate::core::batch::expand(&input.steps, &input.batches);
            input.steps.extend(again);
            input
        })
        .collect()
}

/// The commit message and PR text of a step.
pub fn step_text(
    template: &str,
    plan: &str,
    hash: &str,
    wave: &str,
    step: &StepPlan,
    what: &str,
) -> (String, String) {
    let mut title = template
        .replace("{plan}", plan)
        .replace("{wave}", wave)
        .replace("{step}", &step.index.to_string())
        .replace("{title}", &step.title)
        .replace("{what}", what);
    if let Some(b) = step.batch {
        title.push_str(&format!(" (batch {b})"));
    }
    let mut body = format!(
        "Step {} of wave `{wave}`: {}.\n\n| cluster | file | field | from | to |\n|---|---|---|---|---|\n",
        step.index, step.title
    );
    if let Some(b) = step.batch {
        body = body.replacen(
            ".\n\n",
            &format!(
                ".\n\nBatch {b} of the wave: {}.\n\n",
                step.clusters.join(", ")
            ),
            1,
        );
    }
    for c in step.changes.iter() {
        body.push_str(&format!(
            "| {} | `{}` | `{}` | `{}` | `{}` |\n",
            c.cluster, c.file, c.field, c.from, c.to
        ));
    }
    let batch = step
        .batch
        .map(|b| format!("-batch-{b}"))
        .unwrap_or_default();
    body.push_str(&format!(
        "\n<!-- fleetwave: plan={plan} hash={hash} step={wave}/{}{batch} -->\n",
        step.index
    ));
    (title, body)
}

/// `Kubernetes v1.34.2, gitops-base 2026.02` for titles.
fn what_text(plan: &Plan, step: &StepPlan) -> String {
    let mut parts: Vec<String> = Vec::new();
    if step.changes.iter().any(|c| c.what.is_kubernetes()) {
        // Kubernetes changes are planned into hop steps only.
        if let Some(hop) = &step.kubernetes {
            parts.push(hop.to_string());
        }
    }
    if let Some(g) = &plan.gitops_base {
        if step.changes.iter().any(|c| c.what == Changed::GitopsBase) {
            parts.push(format!("gitops-base {}", g.tag));
        }
    }
    if step.changes.iter().any(|c| c.what == Changed::Template) {
        parts.push("k0rdent templates".into());
    }
    if parts.is_empty() {
        step.title.clone()
    } else {
        parts.join(", ")
    }
}

/// The step of wave `wi` whose branch is built now: its first step not done that changes
/// something, unless an earlier one still changes something.
fn step_to_build(o: &Observed, inputs: &[WaveInput], wi: usize) -> Option<usize> {
    let done = |si: usize| {
        o.state.step(wi, si).is_some_and(|st| {
            matches!(
                st.status,
                StepStatus::Merged
                    | StepStatus::Converged
                    | StepStatus::Skipped
                    | StepStatus::RolledBack
            )
        })
    };
    let steps = &inputs[wi].steps;
    let si = (0..steps.len()).find(|&si| !done(si) && !steps[si].changes.is_empty())?;
    // An earlier step is still pending in this wave: nothing to build yet.
    (!steps[..si].iter().any(|e| !e.changes.is_empty())).then_some(si)
}

/// The clusters of wave `wi` that step `batch` leaves out: failed and skipped ones; for a
/// batch's step every cluster outside the batch; for the wave's own steps the clusters that
/// were retried (their retry batch carries them) or joined after it started.
fn left_out(
    o: &Observed,
    input: &WaveInput,
    wi: usize,
    clusters: &[String],
    batch: &StepPlan,
) -> BTreeSet<String> {
    let mut failed: BTreeSet<String> = o
        .state
        .waves
        .get(wi)
        .map(|ws| ws.failed.keys().chain(ws.skipped.keys()).cloned().collect())
        .unwrap_or_default();
    if let Some(ws) = o.state.waves.get(wi) {
        let own = batch.batch.is_none_or(|b| b < ws.batches.len().max(1));
        if own {
            failed.extend(ws.retries.iter().flatten().cloned());
            failed.extend(input.joined.iter().cloned());
        }
    }
    if batch.batch.is_some() {
        failed.extend(
            clusters
                .iter()
                .filter(|c| !batch.clusters.contains(c))
                .cloned(),
        );
    }
    failed
}

/// The step commits that may be opened or refreshed now: per wave, its first unfinished step
/// that has changes. A step's tree is built once per (plan key, step, clusters left out) and
/// then taken from the cache.
fn desired_commits(
    git: &GitRepo,
    s: &Settings,
    o: &Observed,
    inputs: &[WaveInput],
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, Desired>, ReconcileError> {
    let store = Store::of(git);
    let mut out = BTreeMap::new();
    let may_act = waves_that_may_act(o, inputs);
    for (wi, w) in o.view.waves.iter().enumerate() {
        if !may_act.contains(&wi) {
            continue;
        }
        let Some(si) = step_to_build(o, inputs, wi) else {
            continue;
        };
        let batch = &inputs[wi].steps[si];
        let failed = left_out(o, &inputs[wi], wi, &w.clusters, batch);
        let planned_si = batch.index.saturating_sub(1);
        let key = o.key.step(&w.name, planned_si, &failed);
        let tree = match store.step_tree(&key).filter(|t| git.has_tree(t)) {
            Some(t) => t,
            None => {
                let Some(t) = step_tree(git, o, &w.name, planned_si, &failed)? else {
                    continue;
                };
                store.put_step_tree(&key, &t);
                t
            }
        };
        let step = &inputs[wi].steps[si];
        let (title, body) = step_text(
            &s.title_template,
            &o.plan.name,
            &o.plan_hash,
            &w.name,
            step,
            &what_text(&o.plan, step),
        );
        let commit = git.commit_tree(
            &tree,
            &o.base_head,
            &format!("{title}\n\n{body}"),
            &s.sig(now),
        )?;
        out.insert(step.branch.clone(), Desired { commit, tree });
    }
    Ok(out)
}

/// The waves that may open or refresh a step this tick. Waves run in order: the first one
/// not yet succeeded, and the next one that changes anything when the first may finish this
/// tick (none of its steps still to open or merge). Building commits for later waves would
/// cost, on every move of the base, as many files as the rest of the fleet holds. A new plan
/// revision may reorder everything: all waves then.
fn waves_that_may_act(o: &Observed, inputs: &[WaveInput]) -> BTreeSet<usize> {
    let changes = |wi: usize| inputs[wi].steps.iter().any(|s| !s.changes.is_empty());
    let (first, may_finish) = if o.state.waves.is_empty() {
        // The rollout starts with the first wave; it finishes at once only with nothing to do.
        (0, inputs.first().is_none_or(|_| !changes(0)))
    } else if o.state.plan_hash != o.plan_hash || o.state.waves.len() != inputs.len() {
        return (0..inputs.len()).collect();
    } else {
        let Some(first) = o
            .state
            .waves
            .iter()
            .position(|w| w.status != crate::core::state::WaveStatus::Succeeded)
        else {
            return BTreeSet::new();
        };
        // A step still to open or merge holds the wave (one with nothing to change is skipped).
        let open = o.state.waves[first]
            .steps
            .iter()
            .enumerate()
            .any(|(si, s)| {
                matches!(s.status, StepStatus::Pending | StepStatus::Open)
                    && inputs[first]
                        .steps
                        .get(si)
                        .is_some_and(|p| !p.changes.is_empty())
            });
        (first, !open)
    };
    let next = (first + 1..inputs.len())
        .find(|&wi| changes(wi))
        .filter(|_| may_finish);
    std::iter::once(first).chain(next).collect()
}

/// The tree of step `si` of `wave` on the base, without the `failed` clusters' changes; None
/// while an earlier step is pending.
fn step_tree(
    git: &GitRepo,
    o: &Observed,
    wave: &str,
    si: usize,
    failed: &BTreeSet<String>,
) -> Result<Option<String>, ReconcileError> {
    let edits = match planner::edits_excluding(o.planned(git)?, wave, Some(si + 1), failed) {
        Ok(e) => e,
        Err(planner::ApplyError::EarlierPending { .. }) => return Ok(None),
        Err(e) => return Err(ReconcileError::Other(e.to_string())),
    };
    let files: BTreeMap<PathBuf, Vec<u8>> = edits
        .into_iter()
        .map(|(p, t)| (p, t.into_bytes()))
        .collect();
    Ok(Some(git.changed_tree(&o.base_head, &files)?))
}

/// Base-branch history for the simulated Flux: commits with their time and touched clusters.
/// `cache` keeps each commit's touched clusters across calls (they never change).
pub fn base_history(
    git: &GitRepo,
    o: &Observed,
    limit: usize,
    cache: &mut BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<BaseCommit>, ReconcileError> {
    let log = git.first_parent_until(&o.base_head, limit, &|_| false)?;
    let mut owners = None;
    let mut out = Vec::new();
    for c in &log {
        let touched = match cache.get(&c.id) {
            Some(t) => t.clone(),
            None => touched(git, o, c, &mut owners)?,
        };
        cache.insert(c.id.clone(), touched.clone());
        out.push(BaseCommit {
            id: c.id.clone(),
            time: c.time,
            touched,
        });
    }
    // Oldest first: commits with equal timestamps keep their order in history.
    out.reverse();
    Ok(out)
}

/// The clusters whose files commit `c` changed (against its first parent).
fn touched(
    git: &GitRepo,
    o: &Observed,
    c: &crate::adapters::git::CommitInfo,
    owners: &mut Option<BTreeMap<PathBuf, String>>,
) -> Result<BTreeSet<String>, ReconcileError> {
    let Some(parent) = c.parents.first() else {
        return Ok(BTreeSet::new());
    };
    let owners = match owners {
        Some(o) => o,
        None => owners.insert(o.owners(git)?),
    };
    Ok(git
        .changed_paths(parent, &c.id)?
        .iter()
        .filter_map(|p| owners.get(p).cloned())
        .collect())
}

/// The simulated Flux's base-branch history, kept for the life of a process: each tick walks
/// only the commits that are new since the last one.
#[derive(Debug, Default)]
pub struct BaseHistory {
    /// Oldest first, at most the limit of the last update.
    commits: Vec<BaseCommit>,
}

impl BaseHistory {
    /// The last `limit` first-parent commits of the base, oldest first.
    pub fn update(
        &mut self,
        git: &GitRepo,
        o: &Observed,
        limit: usize,
    ) -> Result<Vec<BaseCommit>, ReconcileError> {
        let store = Store::of(git);
        if self.commits.is_empty() {
            // What an earlier process of this cache walked.
            self.commits = store.history(&o.base_branch).unwrap_or_default();
        }
        if self.commits.last().is_some_and(|c| c.id == o.base_head) {
            return Ok(self.commits.clone());
        }
        let known: BTreeMap<&str, usize> = self
            .commits
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i))
            .collect();
        // The branch went back to a commit seen before: walk it again (reusing what is known).
        let reset = known.contains_key(o.base_head.as_str());
        let new =
            git.first_parent_until(&o.base_head, limit, &|id| !reset && known.contains_key(id))?;
        // Where the new commits join the known ones: the parent of the oldest new commit.
        let joined = new
            .last()
            .and_then(|c| c.parents.first())
            .and_then(|p| known.get(p.as_str()).copied())
            .filter(|_| !reset);
        let mut owners = None;
        let mut added = Vec::new();
        for c in new.iter().rev() {
            let touched = match known.get(c.id.as_str()) {
                Some(&i) => self.commits[i].touched.clone(),
                None => touched(git, o, c, &mut owners)?,
            };
            added.push(BaseCommit {
                id: c.id.clone(),
                time: c.time,
                touched,
            });
        }
        let mut commits = match joined {
            Some(i) => self.commits[..=i].to_vec(),
            None => Vec::new(),
        };
        commits.extend(added);
        let drop = commits.len().saturating_sub(limit);
        commits.drain(..drop);
        store.put_history(&o.base_branch, &commits);
        self.commits = commits;
        Ok(self.commits.clone())
    }
}

/// The adapters a tick talks to.
pub struct Io<'a, F, C> {
    pub git: &'a GitRepo,
    pub forge: &'a F,
    pub clusters: &'a C,
    pub notifier: &'a dyn Notifier,
    /// Evaluates Prometheus and HTTP gates; None leaves them to the cluster source (the
    /// simulated Flux reports its own).
    pub gates: Option<&'a crate::adapters::gates::Remote>,
}

/// Clusters whose remote gates (Prometheus, HTTP) matter now: those of waves in progress or
/// soaking with a merged step that have not failed, each with its wave's gates.
fn remote_gate_jobs(
    plan: &crate::core::plan::Plan,
    st: &PlanState,
) -> Vec<(String, Vec<crate::core::plan::Gate>)> {
    let mut jobs = Vec::new();
    for (wave, ws) in plan.waves.iter().zip(&st.waves) {
        if !matches!(
            ws.status,
            crate::core::state::WaveStatus::InProgress | crate::core::state::WaveStatus::Soaking
        ) || !wave.gates.iter().any(crate::core::gates::is_remote)
        {
            continue;
        }
        // Only clusters that took a merged step: nothing reads the others' results yet.
        let merged = ws.steps.iter().any(|s| s.merged_commit.is_some());
        for c in ws.clusters.iter().filter(|c| merged && !ws.is_out(c)) {
            jobs.push((c.clone(), wave.gates.clone()));
        }
    }
    jobs
}

/// One tick. With `dry_run`, nothing is written and the effects are only reported.
pub async fn tick<F: Forge, C: ClusterSource>(
    io: &Io<'_, F, C>,
    s: &Settings,
    o: Observed,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Report, ReconcileError> {
    let (git, forge) = (io.git, io.forge);
    let inputs = wave_inputs(&o.plan.name, &o.view, &o.state);
    let desired = desired_commits(git, s, &o, &inputs, now)?;
    let refs = step_refs(&o, &inputs);
    let prs = forge.observe(&refs, &o.base_head).await?;
    // Learn PR numbers found by head branch (after a crash, or a PR opened by hand).
    let learned: BTreeMap<String, u64> = prs
        .iter()
        .filter_map(|(b, p)| p.number.map(|n| (b.clone(), n)))
        .collect();
    let names: Vec<String> = o
        .view
        .waves
        .iter()
        .flat_map(|w| w.clusters.iter().cloned())
        .collect();
    let observed = observe_clusters(io, &o, &names, now).await?;
    let descends = |a: &str, b: &str| git.is_ancestor(b, a).unwrap_or(false);
    let world = World {
        now,
        base_head: o.base_head.clone(),
        plan_hash: o.plan_hash.clone(),
        waves: inputs,
        desired,
        prs,
        clusters: observed,
        descends: &descends,
        infra: o.view.infra.clone(),
        reviews: forge.reviews(),
    };
    let decision = decide::decide(&o.plan, &o.state, &world);
    let effect_lines: Vec<String> = decision
        .effects
        .iter()
        .map(|e| describe(&decision.state, e))
        .collect();
    let report = Report {
        outcome: match (&decision.held, decision.state.status) {
            (Some(h), _) => Outcome::Held(h.clone()),
            (None, PlanStatus::Succeeded) => Outcome::Done,
            _ => Outcome::Progressing,
        },
        notes: decision.notes.clone(),
        effects: effect_lines,
        wake_at: decision.wake_at,
        // Filled below: the decided state for a dry run, else what carry_out wrote.
        state: PlanState::default(),
        api_calls: None,
        not_done: Vec::new(),
    };
    if dry_run {
        return Ok(Report {
            state: decision.state,
            ..report
        });
    }
    carry_out(io, s, &o, &world, decision, report, learned).await
}

/// Write the decided state (compare-and-swap), perform the effects, record what they did,
/// and refresh the dashboard.
async fn carry_out<F: Forge, C: ClusterSource>(
    io: &Io<'_, F, C>,
    s: &Settings,
    o: &Observed,
    world: &World<'_>,
    decision: Decision,
    report: Report,
    mut learned: BTreeMap<String, u64>,
) -> Result<Report, ReconcileError> {
    let (git, forge, now) = (io.git, io.forge, world.now);
    let Decision {
        state: mut new,
        effects,
        held,
        notes,
        ..
    } = decision;
    let mut state_head = o.state_head.clone();
    if new != o.state {
        let msg = format!(
            "fleetwave: {} tick {}\n\n{}",
            new.plan,
            new.tick,
            notes.join("\n")
        );
        match write_state(git, s, &new, o.since(), state_head.as_deref(), &msg, now)? {
            Some(h) => state_head = Some(h),
            None => {
                return Ok(Report {
                    outcome: Outcome::LostRace,
                    state: o.state.clone(),
                    ..report
                });
            }
        }
    }
    close_stale_prs(forge, o, &world.waves).await?;
    let act = Act {
        io,
        s,
        o,
        inputs: &world.waves,
        clusters: &world.clusters,
        new: &new,
        now,
    };
    let done = perform(&act, &effects, &report.effects, &mut learned).await?;
    #[cfg(debug_assertions)]
    let before = new.clone();
    let changed = record(&mut new, &done, &learned);
    // Debug builds (the tests) check record's answer against a whole comparison.
    #[cfg(debug_assertions)]
    debug_assert_eq!(changed, new != before, "record() misreported a change");
    if changed {
        // If this loses a race, events stay unsent and are resent (sinks dedupe by id), and PR
        // numbers are found again by branch.
        let msg = format!(
            "fleetwave: {} after tick {}: events sent {}, pull requests recorded",
            new.plan,
            new.tick,
            done.sent.len()
        );
        // Steps whose records match `o.state`'s are held as there by the first write too.
        let _ = write_state(git, s, &new, o.since(), state_head.as_deref(), &msg, now)?;
    }
    // A hold changes no state but must show; the forge skips a body that did not change.
    if s.dashboard && (new != o.state || held.is_some()) {
        let controls = wave_controls(o, &new, now);
        let body = dashboard_body(&new, now, held.as_deref(), controls.as_ref());
        if let Err(e) = forge.dashboard(&new.plan, &body).await {
            tracing::warn!("dashboard not updated: {e}");
        }
    }
    Ok(Report {
        state: new,
        effects: done.did,
        not_done: done.not_done,
        api_calls: forge.finish_tick(),
        ..report
    })
}

/// The step branches to ask the forge about: open and pending steps of the state, and steps
/// not yet in it (first tick), which may still have branches from a crashed run.
fn step_refs(o: &Observed, inputs: &[WaveInput]) -> Vec<StepRef> {
    let approval = |wi: usize| approvers(&o.plan, wi);
    let mut refs: Vec<StepRef> = Vec::new();
    for (wi, w) in o.state.waves.iter().enumerate() {
        // Merged and finished steps need no more looking at: an idle tick costs one call per open PR.
        for st in w
            .steps
            .iter()
            .filter(|st| matches!(st.status, StepStatus::Pending | StepStatus::Open))
        {
            refs.push(StepRef {
                branch: st.branch.clone(),
                pr: st.pr,
                head: st.head.clone(),
                approval: approval(wi),
            });
        }
    }
    for (wi, w) in inputs.iter().enumerate() {
        for st in &w.steps {
            let known = o
                .state
                .waves
                .iter()
                .flat_map(|w| &w.steps)
                .any(|x| x.branch == st.branch);
            if !known {
                refs.push(StepRef {
                    branch: st.branch.clone(),
                    pr: None,
                    head: None,
                    approval: approval(wi),
                });
            }
        }
    }
    refs
}

/// What the cluster source reports of `names`, with the remote gates evaluated where they
/// matter now.
async fn observe_clusters<F: Forge, C: ClusterSource>(
    io: &Io<'_, F, C>,
    o: &Observed,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, ClusterObservation>, ReconcileError> {
    let mut observed = io.clusters.observe(names, now).await?;
    if let Some(remote) = io.gates {
        let jobs = remote_gate_jobs(&o.plan, &o.state);
        if !jobs.is_empty() {
            for (c, results) in remote.evaluate_all(&jobs).await {
                observed.entry(c).or_default().gates.extend(results);
            }
        }
    }
    Ok(observed)
}

/// A new plan revision: PRs of steps the plan no longer has are closed (never merged).
async fn close_stale_prs<F: Forge>(
    forge: &F,
    o: &Observed,
    inputs: &[WaveInput],
) -> Result<(), ReconcileError> {
    if !o.state.waves.is_empty() && o.state.plan_hash != o.plan_hash {
        let keep: Vec<String> = inputs
            .iter()
            .flat_map(|w| w.steps.iter().map(|s| s.branch.clone()))
            .collect();
        for c in forge
            .close_stale(&format!("fleetwave/{}/", o.plan.name), &keep)
            .await?
        {
            tracing::info!("closed stale pull request {c}");
        }
    }
    Ok(())
}

/// What performing a tick's effects needs besides the new state.
struct Act<'a, 'io, F, C> {
    io: &'a Io<'io, F, C>,
    s: &'a Settings,
    o: &'a Observed,
    inputs: &'a [WaveInput],
    clusters: &'a BTreeMap<String, ClusterObservation>,
    /// The state decided this tick.
    new: &'a PlanState,
    /// The tick's time (for commits made while acting).
    now: DateTime<Utc>,
}

impl<F: Forge, C: ClusterSource> Act<'_, '_, F, C> {
    /// The forge's handle on a step: its branch, PR (known or `learned`) and `head`.
    fn step_ref(
        &self,
        wave: usize,
        step: usize,
        head: Option<String>,
        learned: &BTreeMap<String, u64>,
    ) -> StepRef {
        let st = &self.new.waves[wave].steps[step];
        StepRef {
            branch: st.branch.clone(),
            pr: st.pr.or(learned.get(&st.branch).copied()),
            head,
            approval: approvers(&self.o.plan, wave),
        }
    }

    /// Open or update the pull request of a step just pushed at `commit`.
    async fn open_pr(
        &self,
        wave: usize,
        step: usize,
        commit: &str,
        learned: &mut BTreeMap<String, u64>,
    ) -> Result<(), ReconcileError> {
        let (new, o, s) = (self.new, self.o, self.s);
        let input = &self.inputs[wave].steps[step];
        let (title, body) = step_text(
            &s.title_template,
            &new.plan,
            &o.plan_hash,
            &new.waves[wave].name,
            input,
            &what_text(&o.plan, input),
        );
        let r = self.step_ref(wave, step, Some(commit.to_string()), learned);
        let spec = PrSpec {
            title,
            body,
            base: s.base.clone(),
        };
        if let Some(n) = self.io.forge.open(&r, &spec).await? {
            learned.insert(r.branch, n);
        }
        Ok(())
    }

    /// Post a step's gate status on `head` and its managed comment.
    async fn post_status(
        &self,
        wave: usize,
        step: usize,
        head: &str,
        state: crate::core::state::GateState,
        description: &str,
        learned: &BTreeMap<String, u64>,
    ) -> Result<crate::core::state::PostedStatus, ReconcileError> {
        let forge = self.io.forge;
        let st = &self.new.waves[wave].steps[step];
        let r = self.step_ref(wave, step, st.head.clone(), learned);
        forge.set_status(&r, head, state, description).await?;
        // The managed comment changes exactly when the gate status does.
        let body = comment_body(self.new, wave, step, state, description, self.clusters);
        forge.comment(&r, &body).await?;
        Ok(crate::core::state::PostedStatus {
            head: head.to_string(),
            state,
            description: description.to_string(),
        })
    }
}

/// What the effect calls did.
#[derive(Default)]
struct Performed {
    /// Lines of the effects whose call succeeded, in order.
    did: Vec<String>,
    /// Effects that failed softly or were not attempted after a stop.
    not_done: Vec<String>,
    /// Outbox events delivered.
    sent: Vec<String>,
    /// Gate statuses posted: (wave, step, status).
    posted: Vec<(usize, usize, crate::core::state::PostedStatus)>,
    /// Automatic rollbacks carried out: (wave, what was done).
    rolled_back: Vec<(usize, crate::core::state::AutoRollback)>,
}

/// What one effect's call came to.
enum Done {
    /// The call succeeded: this line says what it did.
    Did(String),
    /// The call failed softly (retried next tick); the next effects go on.
    Soft(String),
    /// A lost lease or a moved base: the rest is not attempted.
    Stop(String),
}

/// Perform the effects in order; a lost lease or a moved base stops the rest.
async fn perform<F: Forge, C: ClusterSource>(
    act: &Act<'_, '_, F, C>,
    effects: &[Effect],
    effect_lines: &[String],
    learned: &mut BTreeMap<String, u64>,
) -> Result<Performed, ReconcileError> {
    let mut p = Performed::default();
    for (e, line) in effects.iter().zip(effect_lines) {
        match act.effect(e, line, learned, &mut p).await? {
            Done::Did(l) => p.did.push(l),
            Done::Soft(l) => p.not_done.push(l),
            Done::Stop(l) => {
                p.not_done.push(l);
                break;
            }
        }
    }
    // Effects after a stop were not attempted.
    let attempted = p.did.len() + p.not_done.len();
    for line in effect_lines.iter().skip(attempted) {
        p.not_done
            .push(format!("{line}: not attempted after the stop above"));
    }
    Ok(p)
}

impl<F: Forge, C: ClusterSource> Act<'_, '_, F, C> {
    /// Carry out one effect; posted statuses and sent events are recorded in `p`.
    async fn effect(
        &self,
        e: &Effect,
        line: &str,
        learned: &mut BTreeMap<String, u64>,
        p: &mut Performed,
    ) -> Result<Done, ReconcileError> {
        let new = self.new;
        match e {
            Effect::PushStep {
                wave,
                step,
                commit,
                expected,
            } => {
                let st = &new.waves[*wave].steps[*step];
                match self.io.git.push(&st.branch, commit, expected.as_deref()) {
                    Ok(()) => {}
                    // Someone moved the branch; the next tick looks again and never overwrites.
                    Err(GitError::LeaseLost { .. }) => {
                        return Ok(Done::Stop(format!(
                            "{line}: someone else moved the branch; the next tick looks again"
                        )));
                    }
                    Err(err) => return Err(err.into()),
                }
                self.open_pr(*wave, *step, commit, learned).await?;
            }
            Effect::SetStatus {
                wave,
                step,
                head,
                state,
                description,
            } => {
                let posted = self
                    .post_status(*wave, *step, head, *state, description, learned)
                    .await?;
                p.posted.push((*wave, *step, posted));
            }
            Effect::Merge { wave, step, head } => {
                return self.merge(*wave, *step, head, line, learned).await;
            }
            Effect::Rollback { wave } => {
                return self.auto_rollback(*wave, line, p).await;
            }
            Effect::Send { id } => {
                if let Some(ob) = new.events.get(id) {
                    let event = concrete_hint(&ob.event, &self.io.git.remote_shown(), self.s);
                    if let Err(err) = self.io.notifier.send(&event).await {
                        return Ok(Done::Soft(format!("{line}: {err}; retried next tick")));
                    }
                    p.sent.push(id.clone());
                }
            }
        }
        Ok(Done::Did(line.to_string()))
    }

    /// `failurePolicy: rollback`: push the failed wave's rollback (what `fleetwave rollback`
    /// reverts: gitops-base tags and template names; Kubernetes downgrades refused with the
    /// reason) to `fleetwave/<plan>/<wave>/rollback`, open its pull request and merge it.
    async fn auto_rollback(
        &self,
        wi: usize,
        line: &str,
        p: &mut Performed,
    ) -> Result<Done, ReconcileError> {
        let (git, s, o, new) = (self.io.git, self.s, self.o, self.new);
        let ws = &new.waves[wi];
        let name = ws.name.clone();
        let mut rec = ws.auto_rollback.clone().unwrap_or_default();
        let branch = format!("fleetwave/{}/{name}/rollback", new.plan);
        rec.branch = Some(branch.clone());
        let mut lines = Vec::new();
        let wanted = reversible(&name, &merged_span(ws), false, &mut lines);
        let (files, count) = revert_files(o.planned(git)?, &wanted)?;
        if files.is_empty() {
            // Nothing (left) to revert on the base: a rollback merged before a crash, or only
            // irreversible changes.
            lines.push(format!(
                "wave {name}: nothing reversible on {}",
                o.base_branch
            ));
            rec.done = true;
            rec.lines = lines.clone();
            p.rolled_back.push((wi, rec));
            return Ok(Done::Did(format!("{line}: {}", lines.join("; "))));
        }
        let now = self.now;
        let msg = format!(
            "fleetwave({}): roll back wave {name}\n\nfailurePolicy rollback: reverts {count} value(s) (gitops-base tags, template names).\n{}",
            new.plan,
            lines.join("\n")
        );
        let commit = git.commit_changes(&o.base_head, &files, &msg, &s.sig(now))?;
        let head = match self.push_rollback(&branch, commit, line)? {
            Ok(head) => head,
            Err(stop) => return Ok(stop),
        };
        let mut r = StepRef {
            branch: branch.clone(),
            pr: rec.pr,
            head: Some(head.clone()),
            approval: None,
        };
        let spec = rollback_spec(&new.plan, &name, count, files.len(), &lines, &s.base);
        self.rollback_pr(&mut r, &spec).await?;
        rec.pr = r.pr;
        let message = format!(
            "Merge {branch} (fleetwave {} rollback of wave {name})",
            new.plan
        );
        let sha = match self.io.forge.merge(&r, &head, &message).await {
            Ok(sha) => sha,
            Err(ForgeError::BaseMoved) => {
                return Ok(Done::Stop(format!(
                    "{line}: the base moved; nothing merged, the next tick tries again"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        lines.insert(
            0,
            format!(
                "wave {name}: reverted {count} value(s) in {} file(s)",
                files.len()
            ),
        );
        rec.merged_commit = Some(sha.clone());
        rec.done = true;
        rec.lines = lines.clone();
        p.rolled_back.push((wi, rec));
        Ok(Done::Did(format!(
            "{line}: merged {branch} as {} ({})",
            short(&sha),
            lines.join("; ")
        )))
    }

    /// Push the rollback `commit` to `branch`; a retry after a crash finds the same tree there
    /// and keeps that commit. Ok(Err(stop)) when someone else moved the branch.
    fn push_rollback(
        &self,
        branch: &str,
        commit: String,
        line: &str,
    ) -> Result<Result<String, Done>, ReconcileError> {
        let git = self.io.git;
        let old = git.branch_head(branch)?;
        match &old {
            Some(h) if git.tree_id(h)? == git.tree_id(&commit)? => Ok(Ok(h.clone())),
            _ => match git.push(branch, &commit, old.as_deref()) {
                Ok(()) => Ok(Ok(commit)),
                Err(GitError::LeaseLost { .. }) => Ok(Err(Done::Stop(format!(
                    "{line}: someone else moved {branch}; the next tick looks again"
                )))),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// The rollback's pull request into `r.pr`: the open one found, else one opened.
    async fn rollback_pr(&self, r: &mut StepRef, spec: &PrSpec) -> Result<(), ReconcileError> {
        if r.pr.is_none() {
            let seen = self
                .io
                .forge
                .observe(std::slice::from_ref(r), &self.o.base_head)
                .await?;
            r.pr = seen.get(&r.branch).and_then(|x| x.number);
        }
        if let Some(n) = self.io.forge.open(r, spec).await? {
            r.pr = Some(n);
        }
        Ok(())
    }

    /// Merge a step's pull request at `head`.
    async fn merge(
        &self,
        wave: usize,
        step: usize,
        head: &str,
        line: &str,
        learned: &BTreeMap<String, u64>,
    ) -> Result<Done, ReconcileError> {
        let new = self.new;
        let st = &new.waves[wave].steps[step];
        let r = self.step_ref(wave, step, st.head.clone(), learned);
        let msg = format!(
            "Merge {} (fleetwave {} wave {} step {})",
            st.branch, new.plan, new.waves[wave].name, st.index
        );
        match self.io.forge.merge(&r, head, &msg).await {
            Ok(sha) => Ok(Done::Did(format!("{line} (merge commit {})", short(&sha)))),
            Err(ForgeError::BaseMoved) => Ok(Done::Stop(format!(
                "{line}: the head or base moved after it was verified (409); \
                 nothing merged, the next tick checks it again"
            ))),
            Err(err) => Err(err.into()),
        }
    }
}

/// Record in `new` what the calls did: posted statuses, sent events, learned PR numbers.
/// Record what the effects did into `new`; true when that changed it (the caller then writes
/// it again). Saying so here spares a copy of the whole state to compare against.
fn record(new: &mut PlanState, done: &Performed, learned: &BTreeMap<String, u64>) -> bool {
    let mut changed = false;
    for (w, r) in &done.rolled_back {
        if let Some(m) = r.merged_commit.as_deref().filter(|_| r.done) {
            let before = new.waves[*w].clone();
            mark_rolled_back(&mut new.waves[*w], m, false);
            changed |= new.waves[*w] != before;
        }
        if r.done
            && new.waves[*w]
                .auto_rollback
                .as_ref()
                .is_some_and(|x| !x.done)
        {
            new.reason = Some(format!(
                "{}; rolled back by failurePolicy: {}",
                new.reason.clone().unwrap_or_default(),
                r.lines.join("; ")
            ));
            changed = true;
        }
        changed |= new.waves[*w].auto_rollback.as_ref() != Some(r);
        new.waves[*w].auto_rollback = Some(r.clone());
    }
    for (w, st, p) in &done.posted {
        let posted = &mut new.waves[*w].steps[*st].posted;
        changed |= posted.as_ref() != Some(p);
        *posted = Some(p.clone());
    }
    for id in &done.sent {
        if let Some(ob) = new.events.get_mut(id) {
            changed |= !ob.sent;
            ob.sent = true;
        }
    }
    for w in &mut new.waves {
        for st in &mut w.steps {
            if st.pr.is_none() {
                st.pr = learned.get(&st.branch).copied();
                changed |= st.pr.is_some();
            }
        }
    }
    changed
}

fn describe(st: &PlanState, e: &Effect) -> String {
    match e {
        Effect::PushStep {
            wave,
            step,
            commit,
            expected,
        } => {
            let b = &st.waves[*wave].steps[*step].branch;
            match expected {
                None => format!("push {b} at {} and open its pull request", short(commit)),
                Some(old) => format!(
                    "regenerate {b}: {} → {} (lease on {})",
                    short(old),
                    short(commit),
                    short(old)
                ),
            }
        }
        Effect::SetStatus {
            wave,
            step,
            state,
            description,
            ..
        } => format!(
            "status fleetwave/gate on {}: {:?} — {description}",
            st.waves[*wave].steps[*step].branch, state
        ),
        Effect::Merge { wave, step, head } => format!(
            "merge {} at {}",
            st.waves[*wave].steps[*step].branch,
            short(head)
        ),
        Effect::Send { id } => format!("send {id}"),
        Effect::Rollback { wave } => format!(
            "roll back wave {} (failurePolicy rollback)",
            st.waves[*wave].name
        ),
    }
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(10)]
}

/// Pause or resume a plan by writing its state.
pub fn set_paused(
    git: &GitRepo,
    s: &Settings,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<PlanState, ReconcileError> {
    let o = observe_repo(git, s)?;
    let mut st = o.state.clone();
    if st.waves.is_empty() {
        return Err(ReconcileError::Other(format!(
            "plan {} has not started; nothing to {}",
            o.plan.name,
            if paused { "pause" } else { "resume" }
        )));
    }
    match (paused, st.status) {
        (true, PlanStatus::InProgress) => {
            st.status = PlanStatus::Paused;
            st.reason = Some("paused by fleetwave pause".into());
        }
        (false, PlanStatus::Paused) => {
            st.status = PlanStatus::InProgress;
            st.reason = None;
        }
        (false, PlanStatus::Halted) => {
            // The operator fixed what failed: the failed wave runs again from where it stood
            // (its merged steps stay merged; convergence and the soak are checked afresh).
            st.status = PlanStatus::InProgress;
            st.reason = None;
            for w in st
                .waves
                .iter_mut()
                .filter(|w| w.status == crate::core::state::WaveStatus::Failed)
            {
                w.status = crate::core::state::WaveStatus::InProgress;
                w.failed.clear();
                w.soak_started_at = None;
                w.finished_at = None;
                for s in w
                    .steps
                    .iter_mut()
                    .filter(|s| s.status == StepStatus::Converged)
                {
                    s.status = StepStatus::Merged;
                    s.converged.clear();
                    s.converged_at = None;
                }
            }
        }
        (_, other) => {
            return Err(ReconcileError::Other(format!(
                "plan {} is {other:?}; nothing to change",
                st.plan
            )));
        }
    }
    st.tick += 1;
    let msg = format!(
        "fleetwave: {} {}",
        st.plan,
        if paused { "paused" } else { "resumed" }
    );
    match write_state(git, s, &st, o.since(), o.state_head.as_deref(), &msg, now)? {
        Some(_) => Ok(st),
        None => Err(ReconcileError::Other(
            "another reconciler wrote the state at the same time; try again".into(),
        )),
    }
}

/// The state branch's log for a plan: the audit trail.
pub fn history(
    git: &GitRepo,
    s: &Settings,
) -> Result<Vec<crate::adapters::git::CommitInfo>, ReconcileError> {
    git.fetch()?;
    let Some(head) = git.branch_head(&s.state_branch)? else {
        return Ok(Vec::new());
    };
    Ok(git.first_parent_log(&head, 100_000)?)
}

pub struct RollbackOptions {
    pub waves: Vec<String>,
    pub allow_downgrade: bool,
    pub merge: bool,
    pub dry_run: bool,
}

/// Revert what can be reverted of the named waves (default: the failed one): gitops-base
/// tags and template names go back; Kubernetes minor downgrades are refused (a control
/// plane cannot be downgraded: restore from an etcd snapshot), patch-level ones need
/// `allow_downgrade`. One rollback branch per wave, merged with the local forge if asked.
pub fn rollback(
    git: &GitRepo,
    s: &Settings,
    opts: &RollbackOptions,
    now: DateTime<Utc>,
) -> Result<Vec<String>, ReconcileError> {
    let o = observe_repo(git, s)?;
    let mut st = o.state.clone();
    let names: Vec<String> = if opts.waves.is_empty() {
        st.waves
            .iter()
            .filter(|w| w.status == crate::core::state::WaveStatus::Failed)
            .map(|w| w.name.clone())
            .collect()
    } else {
        opts.waves.clone()
    };
    if names.is_empty() {
        return Err(ReconcileError::Other(
            "no wave has failed; name the waves to roll back with --wave".into(),
        ));
    }
    let mut lines = Vec::new();
    let mut base = o.base_head.clone();
    for name in &names {
        let Some(wi) = st.waves.iter().position(|w| &w.name == name) else {
            return Err(ReconcileError::Other(format!(
                "plan {} has no wave {name:?}",
                st.plan
            )));
        };
        // Per (file, field): the value before the wave's first change and after its last.
        let span = merged_span(&st.waves[wi]);
        if span.is_empty() {
            lines.push(format!("wave {name}: nothing merged to roll back"));
            continue;
        }
        let wanted = reversible(name, &span, opts.allow_downgrade, &mut lines);
        // Find those values in the current base and splice them back.
        let (files, count) = revert_files(o.planned(git)?, &wanted)?;
        if files.is_empty() {
            lines.push(format!("wave {name}: nothing reversible to roll back"));
            continue;
        }
        let branch = format!("fleetwave/{}/{name}/rollback", st.plan);
        if opts.dry_run {
            lines.push(format!(
                "would push {branch} reverting {count} value(s) in {} file(s)",
                files.len()
            ));
            continue;
        }
        let push = RollbackPush { git, s, opts, now };
        if let Some(merge) = push.push(
            &st.plan,
            name,
            &branch,
            &mut base,
            (&files, count),
            &mut lines,
        )? {
            mark_rolled_back(&mut st.waves[wi], &merge, opts.allow_downgrade);
        }
    }
    if !opts.dry_run && st != o.state {
        record_rollback(git, s, &o, st, &names, now, &mut lines)?;
    }
    Ok(lines)
}

/// Write the state after a rollback (its steps marked rolled back, the reason said).
fn record_rollback(
    git: &GitRepo,
    s: &Settings,
    o: &Observed,
    mut st: PlanState,
    names: &[String],
    now: DateTime<Utc>,
    lines: &mut Vec<String>,
) -> Result<(), ReconcileError> {
    st.reason = Some(format!(
        "{}; rolled back: {}",
        st.reason.clone().unwrap_or_default(),
        names.join(", ")
    ));
    st.tick += 1;
    if write_state(
        git,
        s,
        &st,
        o.since(),
        o.state_head.as_deref(),
        &format!("fleetwave: {} rollback of {}", st.plan, names.join(", ")),
        now,
    )?
    .is_none()
    {
        lines.push("warning: another reconciler wrote the state at the same time; the rollback is in Git but not recorded in the state".into());
    }
    Ok(())
}

/// How a wave's rollback branch is pushed (and merged, if asked).
struct RollbackPush<'a> {
    git: &'a GitRepo,
    s: &'a Settings,
    opts: &'a RollbackOptions,
    now: DateTime<Utc>,
}

impl RollbackPush<'_> {
    /// Push `branch` reverting `files` (`count` values) on `base`; with `--merge`, merge it
    /// and move `base` to the merge, which is returned.
    fn push(
        &self,
        plan: &str,
        wave: &str,
        branch: &str,
        base: &mut String,
        (files, count): (&BTreeMap<PathBuf, Vec<u8>>, usize),
        lines: &mut Vec<String>,
    ) -> Result<Option<String>, ReconcileError> {
        let (git, s, now) = (self.git, self.s, self.now);
        let msg = format!(
            "fleetwave({plan}): roll back wave {wave}\n\nReverts {count} value(s): gitops-base tags, template names{}.",
            if self.opts.allow_downgrade {
                " and patch-level Kubernetes versions"
            } else {
                ""
            }
        );
        let commit = git.commit_changes(base, files, &msg, &s.sig(now))?;
        let old = git.branch_head(branch)?;
        git.push(branch, &commit, old.as_deref())?;
        lines.push(format!(
            "pushed {branch} ({}) reverting {count} value(s) in {} file(s)",
            short(&commit),
            files.len()
        ));
        if !self.opts.merge {
            return Ok(None);
        }
        let merge = git.merge_commit(base, &commit, &format!("Merge {branch}"), &s.sig(now))?;
        git.push(&s.base, &merge, Some(base))?;
        *base = merge.clone();
        lines.push(format!(
            "merged {branch} into {} as {}",
            s.base,
            short(&merge)
        ));
        Ok(Some(merge))
    }
}

/// Per (file, field) of a wave's merged changes: the first change and the value after the last.
fn merged_span(
    wave: &crate::core::state::WaveState,
) -> BTreeMap<(String, String), (ChangeRecord, String)> {
    let mut span: BTreeMap<(String, String), (ChangeRecord, String)> = BTreeMap::new();
    for step in wave
        .steps
        .iter()
        .filter(|x| x.merged_commit.is_some() && x.status != StepStatus::RolledBack)
    {
        for c in step.changes.iter() {
            span.entry((c.file.clone(), c.field.clone()))
                .and_modify(|e| e.1 = c.to.clone())
                .or_insert((c.clone(), c.to.clone()));
        }
    }
    span
}

/// The (file, field)s that can go back, to (value now, value before); a Kubernetes version
/// that cannot is reported in `lines`.
fn reversible(
    name: &str,
    span: &BTreeMap<(String, String), (ChangeRecord, String)>,
    allow_downgrade: bool,
    lines: &mut Vec<String>,
) -> BTreeMap<(String, String), (String, String)> {
    use crate::core::version::KubeVersion;
    let mut wanted: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for ((file, field), (first, last)) in span {
        if first.what.is_kubernetes() {
            let (a, b) = (KubeVersion::parse(&first.from), KubeVersion::parse(last));
            let minor_change = matches!((&a, &b), (Some(a), Some(b)) if a.minor != b.minor);
            if minor_change || !allow_downgrade {
                let why = if minor_change {
                    "a Kubernetes minor downgrade is not supported (the control plane cannot go back a minor); restore the cluster from an etcd snapshot instead"
                } else {
                    "a patch-level downgrade needs --allow-downgrade"
                };
                lines.push(format!(
                    "refused: wave {name} cluster {} {file} {field}: {} → {}: {why}",
                    first.cluster, last, first.from
                ));
                continue;
            }
        }
        wanted.insert(
            (file.clone(), field.clone()),
            (last.clone(), first.from.clone()),
        );
    }
    wanted
}

/// The files of the base with the `wanted` values put back, and how many values that is.
fn revert_files(
    planned: &Planned,
    wanted: &BTreeMap<(String, String), (String, String)>,
) -> Result<(BTreeMap<PathBuf, Vec<u8>>, usize), ReconcileError> {
    use crate::core::edit::{self, Splice};
    let mut by_file: BTreeMap<usize, Vec<Splice>> = BTreeMap::new();
    for loc in &planned.fleet.located {
        for oc in &loc.occurrences {
            let file = planned.fleet.files[oc.file].rel.display().to_string();
            let field = if oc.object.is_empty() {
                oc.field.clone()
            } else {
                format!("{} {}", oc.object, oc.field)
            };
            if let Some((now_value, back)) = wanted.get(&(file, field)) {
                if &oc.value == now_value {
                    by_file.entry(oc.file).or_default().push(Splice {
                        range: oc.range.clone(),
                        old: oc.value.clone(),
                        new: back.clone(),
                        scalar: oc
                            .scalar
                            .as_ref()
                            .map(|c| (c.start, format!("{}{}{}", c.before, back, c.after))),
                    });
                }
            }
        }
    }
    let mut files = BTreeMap::new();
    for (i, splices) in &by_file {
        let f = &planned.fleet.files[*i];
        let text = edit::apply(&f.text, splices, f.is_yaml())
            .map_err(|e| ReconcileError::Other(format!("{}: {e}", f.rel.display())))?;
        files.insert(f.rel.clone(), text.into_bytes());
    }
    let count: usize = by_file.values().map(Vec::len).sum();
    Ok((files, count))
}

/// Mark the merged steps of a rolled-back wave whose every change was reverted.
fn mark_rolled_back(wave: &mut crate::core::state::WaveState, merge: &str, allow_downgrade: bool) {
    let fully: Vec<usize> = wave
        .steps
        .iter()
        .enumerate()
        .filter(|(_, x)| {
            x.merged_commit.is_some()
                && x.changes
                    .iter()
                    .all(|c| !c.what.is_kubernetes() || allow_downgrade)
        })
        .map(|(i, _)| i)
        .collect();
    for i in fully {
        wave.steps[i].status = StepStatus::RolledBack;
        wave.steps[i].revert_commit = Some(merge.to_string());
    }
}

/// The managed comment of a step PR: the gate, and per cluster Flux state, revision,
/// convergence and gates.
pub fn comment_body(
    st: &PlanState,
    wave: usize,
    step: usize,
    gate: crate::core::state::GateState,
    description: &str,
    clusters: &BTreeMap<String, crate::core::cluster::ClusterObservation>,
) -> String {
    let w = &st.waves[wave];
    let s = &w.steps[step];
    let icon = match gate {
        crate::core::state::GateState::Pending => "🟡",
        crate::core::state::GateState::Success => "🟢",
        crate::core::state::GateState::Failure => "🔴",
    };
    let mut out = format!(
        "### fleetwave — plan `{}`, wave `{}`, step {}\n\n{icon} **{}**\n\n",
        st.plan, w.name, s.index, description
    );
    out.push_str("| cluster | Flux | revision | converged | gates |\n|---|---|---|---|---|\n");
    for c in &w.clusters {
        let obs = clusters.get(c);
        let ks = obs.and_then(|o| o.kustomizations.first());
        let ready = ks
            .and_then(|k| k.condition("Ready"))
            .map(|r| format!("{} {}", r.status, r.reason))
            .unwrap_or_else(|| "–".into());
        let rev = ks
            .and_then(|k| k.last_applied_revision.as_deref())
            .and_then(crate::core::cluster::revision_hash)
            .map(|h| format!("`{}`", &h[..h.len().min(10)]))
            .unwrap_or_else(|| "–".into());
        let conv = match (s.converged.get(c), w.failed.get(c)) {
            (_, Some(why)) => format!("failed: {why}"),
            (Some(t), _) => t.format("%Y-%m-%d %H:%M UTC").to_string(),
            _ => "–".into(),
        };
        let gates = obs
            .map(|o| {
                o.gates
                    .iter()
                    .map(|g| format!("{} {}", if g.ok { "✓" } else { "✗" }, g.gate))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        out.push_str(&format!("| {c} | {ready} | {rev} | {conv} | {gates} |\n"));
    }
    if let Some(t) = w.soak_started_at {
        out.push_str(&format!(
            "\nSoak started {}.\n",
            t.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    out
}

/// An alert's manual rollback hint as a command that runs: decide knows neither the remote
/// nor the plan's path, so it leaves a placeholder this fills in.
fn concrete_hint(
    e: &crate::core::notify::Event,
    remote: &str,
    s: &Settings,
) -> crate::core::notify::Event {
    let mut e = e.clone();
    if let Some(a) = e.alert.as_mut() {
        if let Some(rest) = a
            .rollback_hint
            .strip_prefix(crate::core::decide::ROLLBACK_COMMAND)
        {
            a.rollback_hint = format!(
                "fleetwave rollback --remote {remote} --plan {}{rest}",
                s.plan_path.display()
            );
        }
    }
    e
}

/// The wave controls of a plan that uses them (batches, freezes, skipped clusters, automatic
/// rollback) as of `st`, with the ETA's assumption; None for a plan without any.
pub fn wave_controls(
    o: &Observed,
    st: &PlanState,
    now: DateTime<Utc>,
) -> Option<(Vec<crate::core::progress::WaveControls>, String)> {
    let p = &o.plan;
    let used = !p.freezes.is_empty()
        || !p.repo_freezes.is_empty()
        || p.waves.iter().any(|w| !w.freezes.is_empty())
        || !p.maintenance_windows.is_empty()
        || o.view.waves.iter().any(|w| !w.batches.is_empty())
        || st.waves.iter().any(|w| {
            !w.skipped.is_empty() || w.auto_rollback.is_some() || !w.unreachable_since.is_empty()
        });
    if !used {
        return None;
    }
    let planned: Vec<(usize, usize)> = o
        .view
        .waves
        .iter()
        .map(|w| {
            let steps = w.steps.iter().filter(|s| !s.changes.is_empty()).count();
            (w.batches.len().max(1), steps)
        })
        .collect();
    Some((
        crate::core::progress::controls(p, st, &planned, now),
        crate::core::progress::assumption(st).1,
    ))
}

/// The plan's dashboard: waves, steps with their PRs, cluster states and soak clocks.
/// `controls` (from [`wave_controls`]) adds each wave's batches, skipped clusters, freeze,
/// closed window, automatic rollback and ETA, with the ETA's assumption.
pub fn dashboard_body(
    st: &PlanState,
    now: DateTime<Utc>,
    held: Option<&str>,
    controls: Option<&(Vec<crate::core::progress::WaveControls>, String)>,
) -> String {
    // A rollout in progress that waits on something reads "Held", with the reason.
    let status = match (st.status, held) {
        (PlanStatus::InProgress, Some(_)) => "Held".to_string(),
        (s, _) => format!("{s:?}"),
    };
    let mut out = format!(
        "## fleetwave rollout `{}` — {status}\n\n{}{}.\n",
        st.plan,
        crate::adapters::forge::DASHBOARD_UPDATED,
        now.format("%Y-%m-%d %H:%M UTC")
    );
    if let Some(r) = &st.reason {
        out.push_str(&format!("\n> {r}\n"));
    }
    if let (PlanStatus::InProgress, Some(h)) = (st.status, held) {
        out.push_str(&format!("\n> Held: {h}\n"));
    }
    for w in &st.waves {
        out.push_str(&format!("\n### {} — {:?}\n\n| step | pull request | status | merged | converged |\n|---|---|---|---|---|\n", w.name, w.status));
        for s in &w.steps {
            let pr = s.pr.map(|n| format!("#{n}")).unwrap_or_else(|| "–".into());
            let merged = s
                .merged_at
                .map(|t| t.format("%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "–".into());
            let conv = s
                .converged_at
                .map(|t| t.format("%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "–".into());
            let batch = s.batch.map(|b| format!(" (batch {b})")).unwrap_or_default();
            out.push_str(&format!(
                "| {} {}{batch} | {pr} | {:?} | {merged} | {conv} |\n",
                s.index, s.title, s.status
            ));
        }
        let clusters: Vec<String> = w
            .clusters
            .iter()
            .map(|c| match w.failed.get(c) {
                Some(_) => format!("✗ {c}"),
                None if w.skipped.contains_key(c) => format!("⤼ {c} (skipped)"),
                None if w
                    .steps
                    .iter()
                    .filter(|s| s.merged_commit.is_some())
                    .all(|s| s.converged.contains_key(c))
                    && w.steps.iter().any(|s| s.merged_commit.is_some()) =>
                {
                    format!("✓ {c}")
                }
                None => format!("· {c}"),
            })
            .collect();
        out.push_str(&format!("\nClusters: {}\n", clusters.join(", ")));
        if let Some((waves, assumption)) = controls {
            if let Some(c) = waves.iter().find(|c| c.wave == w.name) {
                out.push_str(&dashboard_controls(c, assumption));
            }
        }
        if let (Some(t), crate::core::state::WaveStatus::Soaking) = (w.soak_started_at, w.status) {
            out.push_str(&format!(
                "\nSoaking since {} ({} so far).\n",
                t.format("%Y-%m-%d %H:%M UTC"),
                humantime::format_duration((now - t).to_std().unwrap_or_default())
            ));
        }
    }
    out
}

/// A wave's controls on the dashboard issue, as a list under its cluster line.
fn dashboard_controls(c: &crate::core::progress::WaveControls, assumption: &str) -> String {
    let fmt = "%Y-%m-%d %H:%M UTC";
    let mut lines: Vec<String> = c.batches.iter().map(|b| format!("- {b}")).collect();
    lines.extend(c.skipped.iter().map(|s| format!("- skipped: {s}")));
    if let Some(f) = &c.freeze {
        lines.push(format!("- freeze {f}"));
    }
    if let Some(w) = &c.next_window {
        lines.push(format!("- window closed; next opens {}", w.format(fmt)));
    }
    if let Some(r) = &c.rollback {
        lines.push(format!("- automatic rollback: {r}"));
    }
    lines.extend(c.unreachable.iter().map(|u| format!("- unreachable: {u}")));
    if let Some(m) = &c.maintenance {
        lines.push(format!("- held: {m}"));
    }
    if let Some(e) = &c.eta {
        lines.push(format!("- ETA {} ({assumption})", e.format(fmt)));
    }
    if lines.is_empty() {
        return String::new();
    }
    format!("\n{}\n", lines.join("\n"))
}

/// The reviewers wave `wi`'s approval gates accept (None when it has no approval gate).
fn approvers(
    plan: &crate::core::plan::Plan,
    wi: usize,
) -> Option<crate::adapters::forge::Approvers> {
    let mut out: Option<crate::adapters::forge::Approvers> = None;
    for g in plan.waves.get(wi).map_or(&[][..], |w| &w.gates[..]) {
        if let crate::core::plan::Gate::Approval { users, teams } = g {
            let a = out.get_or_insert_with(Default::default);
            a.users.extend(users.iter().cloned());
            a.teams.extend(teams.iter().cloned());
        }
    }
    out
}
