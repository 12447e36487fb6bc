//! Git adapter: everything fleetwave does to the fleet repository goes through here.
//!
//! Owns a bare cache repository (no working tree, no index file) whose only remote is
//! `origin`. It fetches, reads trees, builds commits in memory (edits, merges, reverts,
//! the orphan state branch) and pushes single refs with a lease (compare-and-swap), which
//! is what lets two reconcilers share one fleet repo without both acting.
//!
//! Pushes to a local bare remote or over HTTP(S) send only what their commits add
//! (`sparse`, `smart_http`); over SSH libgit2 pushes (the state branch from `side`).
//!
//! Commit ids cross this boundary as 40-hex strings; git2 types stay inside. Tokens never
//! appear in errors: they only reach libgit2 through the credentials callback, and the HTTP
//! push as a basic-auth header; URLs are kept without their credentials.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::core::tree::EntryKind;
use git2::{
    AutotagOption, Commit, Cred, CredentialType, Direction, ErrorCode, FetchOptions, FetchPrune,
    FileMode, ObjectType, Oid, PushOptions, RemoteCallbacks, Repository, Signature, Sort, Time,
    Tree, TreeWalkMode, TreeWalkResult, build::TreeUpdateBuilder,
};

mod own_push;
mod side;
mod smart_http;
mod sparse;
mod upkeep;

const REMOTE: &str = "origin";
const TRACKING_PREFIX: &str = "refs/remotes/origin/";
/// Serialises fleetwave pushes to a local remote: libgit2's local transport updates an
/// existing ref without comparing its old value, so the lease alone would leave a window.
const LOCAL_PUSH_LOCK: &str = "fleetwave-push.lock";
const CACHE_LOCK: &str = "fleetwave-cache.lock";

/// History walks with diffs ([`GitRepo::first_parent_until`], [`GitRepo::changed_paths`])
/// made by this process: only the simulated Flux needs them, and tests check that a tick
/// against real clusters makes none.
static HISTORY_WALKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Objects sent by pushes that chose them themselves ([`GitRepo::push`] to a local or HTTP
/// remote); tests check that a push sends what it changed, not the fleet.
static SPARSE_OBJECTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many objects this process's own pushes have sent (see [`GitRepo::push`]); libgit2's
/// pushes are not counted.
pub fn sparse_push_objects() -> u64 {
    SPARSE_OBJECTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// How many history walks ([`GitRepo::first_parent_until`], [`GitRepo::changed_paths`]) this
/// process has made.
pub fn history_walks() -> u64 {
    HISTORY_WALKS.load(std::sync::atomic::Ordering::Relaxed)
}

fn count_history_walk() {
    HISTORY_WALKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Open (creating it if needed) a file used only for its OS lock.
fn lock_file(path: &Path) -> Result<File, GitError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| GitError::Io {
            context: format!("lock {}", path.display()),
            source,
        })
}

/// Take the cache for this process, then clear lock files a killed process left behind
/// (libgit2 refuses to update a ref whose `.lock` exists).
fn lock_cache(dir: &Path) -> Result<File, GitError> {
    let path = dir.join(CACHE_LOCK);
    let io = |source| GitError::Io {
        context: format!("lock {}", path.display()),
        source,
    };
    let file = lock_file(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(GitError::Io {
                context: format!(
                    "cache {} is in use by another fleetwave process; give each reconciler its own --cache",
                    dir.display()
                ),
                source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    fn clear(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                clear(&p);
            } else if p.extension().is_some_and(|x| x == "lock") {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    clear(&dir.join("refs"));
    for f in [
        "packed-refs.lock",
        "config.lock",
        "HEAD.lock",
        "FETCH_HEAD.lock",
        "index.lock",
        // libgit2 rewrites `shallow` whenever a fetch downloads a pack: a fetch killed midway
        // leaves this, and every later fetch into the cache fails on it.
        "shallow.lock",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    Ok(file)
}

/// Errors from the Git adapter.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A libgit2 operation failed (message already scrubbed of credentials).
    #[error("git: {context}: {message}")]
    Git { context: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The remote branch is not where the caller expected: reload and retry.
    #[error(
        "lease lost on branch {branch}: expected {}, found {}",
        expected.as_deref().unwrap_or("no branch"),
        found.as_deref().unwrap_or("no branch")
    )]
    LeaseLost {
        branch: String,
        expected: Option<String>,
        found: Option<String>,
    },
    /// The remote refused the ref update for a reason other than the lease (e.g. protection).
    #[error("push of {branch} rejected by the remote: {reason}")]
    Rejected { branch: String, reason: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid commit id {0:?} (want 40 hex digits)")]
    InvalidId(String),
    #[error("invalid repository path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("invalid branch name {0:?}")]
    InvalidBranch(String),
    #[error("{head} does not contain {base}")]
    NotAncestor { base: String, head: String },
    #[error("reverting {commit} onto {onto} conflicts in {}", fmt_paths(paths))]
    Conflict {
        commit: String,
        onto: String,
        paths: Vec<PathBuf>,
    },
}

fn fmt_paths(paths: &[PathBuf]) -> String {
    let v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    v.join(", ")
}

/// How to authenticate to the remote.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// HTTPS basic auth with user `x-access-token` (GitHub tokens, App installation tokens).
    Token(String),
    /// HTTPS basic auth with a user of its own (from `https://user:secret@host/...`).
    UserPass {
        user: String,
        secret: String,
    },
    SshAgent,
    /// A private key file (a deploy key), with its passphrase if it has one.
    SshKey {
        key: PathBuf,
        passphrase: Option<String>,
    },
}

impl fmt::Debug for Auth {
    // Hand-written so a token never reaches a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::UserPass { user, .. } => write!(f, "UserPass({user}, <redacted>)"),
            Auth::SshAgent => f.write_str("SshAgent"),
            Auth::SshKey { key, .. } => write!(f, "SshKey({})", key.display()),
        }
    }
}

/// Author and committer of the commits fleetwave creates; the time is explicit so commits
/// are deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sig {
    pub name: String,
    pub email: String,
    pub time: DateTime<Utc>,
}

/// What the rest of fleetwave needs to know about a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub id: String,
    pub parents: Vec<String>,
    pub author_name: String,
    pub author_email: String,
    pub committer_email: String,
    pub message: String,
    /// Committer time: when the commit landed where it is.
    pub time: DateTime<Utc>,
}

/// Reads blobs of the cache repository when a tree's reader asks, from any thread: a libgit2
/// handle is used by one thread at a time, so each concurrent reader takes its own.
struct BlobReader {
    path: PathBuf,
    idle: std::sync::Mutex<Vec<Repository>>,
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobReader({})", self.path.display())
    }
}

impl crate::core::tree::Blobs for BlobReader {
    fn read(&self, id: &str) -> std::io::Result<Vec<u8>> {
        let oid = parse_oid(id).map_err(std::io::Error::other)?;
        let idle = || self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let repo = match idle().pop() {
            Some(r) => r,
            None => Repository::open_bare(&self.path)
                .map_err(|e| std::io::Error::other(e.message().to_string()))?,
        };
        let bytes = repo
            .find_blob(oid)
            .map(|b| b.content().to_vec())
            .map_err(|e| std::io::Error::other(format!("blob {id}: {}", e.message())));
        idle().push(repo);
        bytes
    }
}

/// What the remote said of the pushed ref during a push.
struct Heard {
    /// The lease failed: the value the ref had (None: absent).
    lease_lost: Option<Option<Oid>>,
    /// The ref was among the updates negotiated, so its lease was checked.
    negotiated: bool,
    /// The server refused the update, for this reason.
    rejected: Option<String>,
}

/// A bare cache of the fleet repository plus how to reach its remote.
pub struct GitRepo {
    repo: Repository,
    url: String,
    auth: Auth,
    /// Held while the cache is open: one process per cache, so stale lock files are safe to clear.
    _cache_lock: File,
}

impl GitRepo {
    /// The remote's address as it may be shown (credentials removed).
    pub fn remote_shown(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for GitRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitRepo")
            .field("cache", &self.repo.path())
            .field("remote", &redact_url(&self.url))
            .field("auth", &self.auth)
            .finish()
    }
}

impl GitRepo {
    /// Open, or create, a bare cache repository at `cache` whose remote "origin" is `remote`
    /// (a URL or a local path).
    pub fn open(cache: &Path, remote: &str, auth: Auth) -> Result<GitRepo, GitError> {
        global_options();
        // Credentials in the URL never reach the cache's config: they go to the callback.
        let (clean, creds) = strip_userinfo(remote);
        let auth = match (auth, creds) {
            (Auth::None, Some((user, Some(secret)))) => Auth::UserPass { user, secret },
            (Auth::Token(secret), Some((user, _))) => Auth::UserPass { user, secret },
            (auth, _) => auth,
        };
        let url = normalize_remote(&clean);
        // The cache is taken before anything in it is written: a process killed while it
        // created the cache or added the remote left `config.lock`, which libgit2 then
        // refuses to write past, and only the holder of the cache may clear it.
        std::fs::create_dir_all(cache).map_err(|source| GitError::Io {
            context: format!("create cache {}", cache.display()),
            source,
        })?;
        let cache_lock = lock_cache(cache)?;
        let repo = match Repository::open_bare(cache) {
            Ok(r) => r,
            Err(e) if e.code() == ErrorCode::NotFound => Repository::init_bare(cache)
                .map_err(|e| git_err(format!("create cache {}", cache.display()), &e, &auth))?,
            Err(e) => {
                return Err(git_err(
                    format!("open cache {}", cache.display()),
                    &e,
                    &auth,
                ));
            }
        };
        let existing = match repo.find_remote(REMOTE) {
            Ok(r) => Some(r.url_bytes().to_vec()),
            Err(e) if e.code() == ErrorCode::NotFound => None,
            Err(e) => return Err(git_err("read remote config", &e, &auth)),
        };
        match existing {
            Some(u) if u == url.as_bytes() => {}
            // A changed URL keeps the old tracking refs until the next fetch prunes them.
            Some(_) => repo
                .remote_set_url(REMOTE, &url)
                .map_err(|e| git_err("set remote url", &e, &auth))?,
            None => {
                repo.remote(REMOTE, &url)
                    .map_err(|e| git_err("add remote", &e, &auth))?;
            }
        }
        // Under the cache lock, before anything reads: no other process or thread uses it.
        upkeep::keep_small(&repo);
        Ok(GitRepo {
            repo,
            url,
            auth,
            _cache_lock: cache_lock,
        })
    }

    /// Fetch every branch into refs/remotes/origin/* with prune (so deleted remote branches
    /// disappear).
    pub fn fetch(&self) -> Result<(), GitError> {
        let mut remote = self.remote()?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(self.callbacks())
            .prune(FetchPrune::On)
            .download_tags(AutotagOption::None);
        let spec = format!("+refs/heads/*:{TRACKING_PREFIX}*");
        remote
            .fetch(&[spec.as_str()], Some(&mut opts), None)
            .map_err(|e| self.err(format!("fetch {}", redact_url(&self.url)), &e))?;
        // The indexer's tables are freed by now.
        release_freed_memory();
        Ok(())
    }

    /// Bring the tracking refs up to date, fetching only when the remote's branches moved:
    /// their heads are listed first (one round trip, like `git ls-remote`) and compared with
    /// the tracking refs. Returns whether it fetched.
    pub fn refresh(&self) -> Result<bool, GitError> {
        let remote_heads = self.remote_branches()?;
        let local: BTreeMap<String, Oid> = self
            .branches("")?
            .into_iter()
            .filter_map(|(b, id)| Oid::from_str(&id).ok().map(|o| (b, o)))
            .collect();
        if remote_heads == local {
            return Ok(false);
        }
        self.fetch()?;
        Ok(true)
    }

    /// The remote's branches and their heads, asked of the remote now.
    fn remote_branches(&self) -> Result<BTreeMap<String, Oid>, GitError> {
        let mut remote = self.remote()?;
        let ctx = || format!("list {}", redact_url(&self.url));
        let conn = remote
            .connect_auth(Direction::Fetch, Some(self.callbacks()), None)
            .map_err(|e| self.err(ctx(), &e))?;
        let heads = conn.list().map_err(|e| self.err(ctx(), &e))?;
        Ok(heads
            .iter()
            .filter_map(|h| {
                let name = h.name().strip_prefix("refs/heads/")?;
                (!h.oid().is_zero()).then(|| (name.to_string(), h.oid()))
            })
            .collect())
    }

    /// The directory of the cache repository (where fleetwave keeps what it computed).
    pub fn cache_path(&self) -> &Path {
        self.repo.path()
    }

    /// Id of the regular file `path` in `commit`'s tree; None if absent or not a regular file.
    pub fn file_id(&self, commit: &str, path: &Path) -> Result<Option<String>, GitError> {
        let rel = repo_path(path)?;
        let tree = self
            .find_commit(commit)?
            .tree()
            .map_err(|e| self.err("read tree", &e))?;
        match tree.get_path(Path::new(&rel)) {
            Ok(e) if e.kind() == Some(ObjectType::Blob) && is_regular(e.filemode()) => {
                Ok(Some(e.id().to_string()))
            }
            Ok(_) => Ok(None),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.err(format!("look up {rel}"), &e)),
        }
    }

    /// Whether the cache holds the tree `id` (a tree id kept from an earlier run).
    pub fn has_tree(&self, id: &str) -> bool {
        let Ok(oid) = parse_oid(id) else {
            return false;
        };
        self.repo
            .odb()
            .and_then(|odb| odb.read_header(oid))
            .is_ok_and(|(_, kind)| kind == ObjectType::Tree)
    }

    /// Head of a remote branch as of the last fetch/push; None if absent.
    pub fn branch_head(&self, branch: &str) -> Result<Option<String>, GitError> {
        check_branch(branch)?;
        let name = format!("{TRACKING_PREFIX}{branch}");
        match self.repo.refname_to_id(&name) {
            Ok(id) => Ok(Some(id.to_string())),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.err(format!("read {name}"), &e)),
        }
    }

    /// (branch name, head) for remote branches whose name starts with `prefix`, sorted by name.
    pub fn branches(&self, prefix: &str) -> Result<Vec<(String, String)>, GitError> {
        let glob = format!("{TRACKING_PREFIX}*");
        let refs = self
            .repo
            .references_glob(&glob)
            .map_err(|e| self.err("list branches", &e))?;
        let mut out = Vec::new();
        for r in refs {
            let r = r.map_err(|e| self.err("list branches", &e))?;
            let Some(name) = r.name().ok().and_then(|n| n.strip_prefix(TRACKING_PREFIX)) else {
                continue;
            };
            // origin/HEAD is symbolic and not a branch.
            let Some(target) = r.target() else { continue };
            if name != "HEAD" && name.starts_with(prefix) {
                out.push((name.to_string(), target.to_string()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// All blobs of a commit's tree, path -> bytes (`/`-separated relative PathBufs).
    /// Submodules, symlinks, oversized blobs and unreadable names are left out; see
    /// [`GitRepo::tree`] for the same with those reported.
    pub fn files(&self, commit: &str) -> Result<BTreeMap<PathBuf, Vec<u8>>, GitError> {
        let mut out = BTreeMap::new();
        for (path, id) in self.walk_blobs(commit)?.0 {
            let blob = self
                .repo
                .find_blob(parse_oid(&id)?)
                .map_err(|e| self.err(format!("read {}", path.display()), &e))?;
            out.insert(path, blob.content().to_vec());
        }
        Ok(out)
    }

    /// A commit's files under the path policy of [`crate::core::tree`]: regular blobs up to
    /// [`crate::core::tree::MAX_FILE_BYTES`] are kept by id and read when the tree's reader
    /// asks; symlinks, larger blobs and names that are not UTF-8 or hold control characters
    /// are kept as refused entries, as on disk.
    pub fn tree(&self, commit: &str) -> Result<crate::core::tree::MemTree, GitError> {
        let (ids, refused) = self.walk_blobs(commit)?;
        let reader = BlobReader {
            path: self.repo.path().to_path_buf(),
            idle: std::sync::Mutex::new(Vec::new()),
        };
        Ok(
            crate::core::tree::MemTree::by_id(ids, std::sync::Arc::new(reader))
                .with_refused(refused),
        )
    }

    /// The regular files of `commit` by blob id, and the entries the path policy refuses
    /// (symlinks, with their targets read; blobs over the size limit; unreadable names).
    #[allow(clippy::type_complexity)]
    fn walk_blobs(
        &self,
        commit: &str,
    ) -> Result<(BTreeMap<PathBuf, String>, BTreeMap<PathBuf, EntryKind>), GitError> {
        // Its own handle: libgit2 keeps every tree it parses in the handle's object cache
        // (30 MB at 10,000 clusters), which is of no use once the ids are listed and would
        // sit under the planning that follows. Dropped at the end, with the cache.
        let walker =
            Repository::open_bare(self.repo.path()).map_err(|e| self.err("open the cache", &e))?;
        let oid = parse_oid(commit)?;
        let tree = match walker.find_commit(oid) {
            Ok(c) => c.tree().map_err(|e| self.err("read tree", &e))?,
            Err(e) if e.code() == ErrorCode::NotFound => {
                return Err(GitError::NotFound(format!("commit {oid}")));
            }
            Err(e) => return Err(self.err(format!("read commit {oid}"), &e)),
        };
        let mut blobs = Vec::new();
        let mut refused = BTreeMap::new();
        tree.walk(TreeWalkMode::PreOrder, |root, entry| {
            let utf8 = std::str::from_utf8(entry.name_bytes()).is_ok();
            let name = String::from_utf8_lossy(entry.name_bytes());
            let path = PathBuf::from(format!("{root}{name}"));
            if let Some(r) = crate::core::tree::name_refusal(&name, utf8) {
                refused.insert(path, r);
                return TreeWalkResult::Skip;
            }
            if entry.kind() == Some(ObjectType::Blob) && is_regular(entry.filemode()) {
                blobs.push((path, entry.id(), false));
            } else if entry.filemode() == i32::from(FileMode::Link) {
                blobs.push((path, entry.id(), true));
            }
            TreeWalkResult::Ok
        })
        .map_err(|e| self.err("walk tree", &e))?;
        drop(tree);
        let odb = walker.odb().map_err(|e| self.err("open objects", &e))?;
        let mut out = BTreeMap::new();
        for (path, id, link) in blobs {
            let read = |e: &git2::Error| self.err(format!("read {}", path.display()), e);
            if link {
                let blob = self.repo.find_blob(id).map_err(|e| read(&e))?;
                let target = PathBuf::from(String::from_utf8_lossy(blob.content()).into_owned());
                refused.insert(path.clone(), crate::core::tree::link_kind(&path, &target));
            } else if odb.read_header(id).map_err(|e| read(&e))?.0 as u64
                > crate::core::tree::MAX_FILE_BYTES
            {
                let why = crate::core::tree::too_large().to_string();
                refused.insert(
                    path,
                    EntryKind::Refused(crate::core::diag::Severity::Error, why),
                );
            } else {
                out.insert(path, id.to_string());
            }
        }
        drop(odb);
        drop(walker);
        release_freed_memory();
        Ok((out, refused))
    }

    /// The files under directory `dir` of `commit` (recursively) under the path policy, as
    /// [`GitRepo::tree`] gives them, without reading the rest of the tree (plan discovery
    /// reads only the plans folder). None when `dir` is not a directory there.
    pub fn tree_under(
        &self,
        commit: &str,
        dir: &Path,
    ) -> Result<Option<crate::core::tree::MemTree>, GitError> {
        let rel = repo_path(dir)?;
        let root = self
            .find_commit(commit)?
            .tree()
            .map_err(|e| self.err("read tree", &e))?;
        let entry = match root.get_path(Path::new(&rel)) {
            Ok(e) if e.kind() == Some(ObjectType::Tree) => e,
            Ok(_) => return Ok(None),
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(self.err(format!("look up {rel}"), &e)),
        };
        let sub = self
            .repo
            .find_tree(entry.id())
            .map_err(|e| self.err(format!("read {rel}"), &e))?;
        let mut files = BTreeMap::new();
        let mut refused = BTreeMap::new();
        let mut failed = None;
        sub.walk(TreeWalkMode::PreOrder, |at, e| {
            let utf8 = std::str::from_utf8(e.name_bytes()).is_ok();
            let name = String::from_utf8_lossy(e.name_bytes());
            let path = Path::new(&rel).join(format!("{at}{name}"));
            if let Some(r) = crate::core::tree::name_refusal(&name, utf8) {
                refused.insert(path, r);
                return TreeWalkResult::Skip;
            }
            if e.filemode() == i32::from(FileMode::Link) {
                let target = self
                    .repo
                    .find_blob(e.id())
                    .map(|b| PathBuf::from(String::from_utf8_lossy(b.content()).into_owned()))
                    .unwrap_or_default();
                refused.insert(path.clone(), crate::core::tree::link_kind(&path, &target));
            } else if e.kind() == Some(ObjectType::Blob) && is_regular(e.filemode()) {
                match self.repo.find_blob(e.id()) {
                    Ok(b) if b.size() as u64 <= crate::core::tree::MAX_FILE_BYTES => {
                        files.insert(path, b.content().to_vec());
                    }
                    Ok(_) => {
                        let why = crate::core::tree::too_large().to_string();
                        refused.insert(
                            path,
                            EntryKind::Refused(crate::core::diag::Severity::Error, why),
                        );
                    }
                    Err(err) => {
                        failed = Some(self.err(format!("read {}", path.display()), &err));
                        return TreeWalkResult::Abort;
                    }
                }
            }
            TreeWalkResult::Ok
        })
        .or_else(|e| {
            if failed.is_some() {
                Ok(())
            } else {
                Err(self.err("walk tree", &e))
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(Some(
            crate::core::tree::MemTree::new(files).with_refused(refused),
        ))
    }

    /// Names of the regular files at the root of `commit`'s tree (the state branch keeps one
    /// file per plan there), without reading them.
    pub fn root_files(&self, commit: &str) -> Result<Vec<String>, GitError> {
        self.dir_files(commit, Path::new(""))
    }

    /// Contents of `path` in `commit`; None if absent or not a regular file.
    pub fn read_file(&self, commit: &str, path: &Path) -> Result<Option<Vec<u8>>, GitError> {
        let rel = repo_path(path)?;
        let tree = self
            .find_commit(commit)?
            .tree()
            .map_err(|e| self.err("read tree", &e))?;
        let entry = match tree.get_path(Path::new(&rel)) {
            Ok(e) => e,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(self.err(format!("look up {rel}"), &e)),
        };
        if entry.kind() != Some(ObjectType::Blob) || !is_regular(entry.filemode()) {
            return Ok(None);
        }
        let blob = self
            .repo
            .find_blob(entry.id())
            .map_err(|e| self.err(format!("read {rel}"), &e))?;
        Ok(Some(blob.content().to_vec()))
    }

    /// Id of the commit's root tree.
    pub fn tree_id(&self, commit: &str) -> Result<String, GitError> {
        Ok(self.find_commit(commit)?.tree_id().to_string())
    }

    /// New commit on `parent` whose tree is parent's tree with `changes` written (create or
    /// replace files; an existing file keeps its mode), author = committer = sig. No working
    /// tree, no index file. Does not move any ref. Always creates a commit, even when nothing
    /// changes (callers compare `tree_id`s to skip no-ops).
    pub fn commit_changes(
        &self,
        parent: &str,
        changes: &BTreeMap<PathBuf, Vec<u8>>,
        message: &str,
        sig: &Sig,
    ) -> Result<String, GitError> {
        let tree = self.changed_tree(parent, changes)?;
        self.commit_tree(&tree, parent, message, sig)
    }

    /// The tree of `parent` with `changes` written (see [`GitRepo::commit_changes`]); only the
    /// changed files and the directories above them are written.
    pub fn changed_tree(
        &self,
        parent: &str,
        changes: &BTreeMap<PathBuf, Vec<u8>>,
    ) -> Result<String, GitError> {
        let parent = self.find_commit(parent)?;
        let base = parent.tree().map_err(|e| self.err("read tree", &e))?;
        let tree = self.updated_tree(&base, changes.iter().map(|(p, c)| (p.as_path(), &c[..])))?;
        Ok(tree.id().to_string())
    }

    /// A commit of the existing `tree` on `parent` (author = committer = sig). Moves no ref.
    pub fn commit_tree(
        &self,
        tree: &str,
        parent: &str,
        message: &str,
        sig: &Sig,
    ) -> Result<String, GitError> {
        let parent = self.find_commit(parent)?;
        let tree = self
            .repo
            .find_tree(parse_oid(tree)?)
            .map_err(|e| self.err(format!("read tree {tree}"), &e))?;
        self.write_commit(&tree, &[&parent], message, sig)
    }

    /// Commit on an independent line (the orphan state branch): `path` set to `content`,
    /// every other file of `parent`'s tree kept (an empty tree when `parent` is None).
    pub fn commit_file(
        &self,
        parent: Option<&str>,
        path: &Path,
        content: &[u8],
        message: &str,
        sig: &Sig,
    ) -> Result<String, GitError> {
        self.commit_files(parent, &[(path, content)], &[], message, sig)
    }

    /// [`GitRepo::commit_file`] for several files, and `removed` files deleted.
    pub fn commit_files(
        &self,
        parent: Option<&str>,
        files: &[(&Path, &[u8])],
        removed: &[&Path],
        message: &str,
        sig: &Sig,
    ) -> Result<String, GitError> {
        let parent = parent.map(|p| self.find_commit(p)).transpose()?;
        let base = match &parent {
            Some(c) => c.tree().map_err(|e| self.err("read tree", &e))?,
            None => {
                let empty = self
                    .repo
                    .treebuilder(None)
                    .and_then(|b| b.write())
                    .map_err(|e| self.err("write empty tree", &e))?;
                self.repo
                    .find_tree(empty)
                    .map_err(|e| self.err("read empty tree", &e))?
            }
        };
        let tree = self.updated_tree(&base, files.iter().copied())?;
        let tree = if removed.is_empty() {
            tree
        } else {
            let mut builder = TreeUpdateBuilder::new();
            for path in removed {
                builder.remove(repo_path(path)?.as_str());
            }
            let id = builder
                .create_updated(&self.repo, &tree)
                .map_err(|e| self.err("build tree", &e))?;
            self.repo
                .find_tree(id)
                .map_err(|e| self.err("read tree", &e))?
        };
        let parents: Vec<&Commit<'_>> = parent.iter().collect();
        self.write_commit(&tree, &parents, message, sig)
    }

    /// The id Git gives a blob of `content` (nothing is written).
    pub fn blob_id(content: &[u8]) -> String {
        Oid::hash_object(ObjectType::Blob, content)
            .map(|id| id.to_string())
            .unwrap_or_default()
    }

    /// Names of the regular files directly in directory `dir` of `commit` ("" for the root;
    /// none when absent), without reading them.
    pub fn dir_files(&self, commit: &str, dir: &Path) -> Result<Vec<String>, GitError> {
        let root = self
            .find_commit(commit)?
            .tree()
            .map_err(|e| self.err("read tree", &e))?;
        let tree = if dir.as_os_str().is_empty() {
            root
        } else {
            let entry = match root.get_path(dir) {
                Ok(e) if e.kind() == Some(ObjectType::Tree) => e,
                _ => return Ok(Vec::new()),
            };
            self.repo
                .find_tree(entry.id())
                .map_err(|e| self.err(format!("read tree {}", dir.display()), &e))?
        };
        Ok(tree
            .iter()
            .filter(|e| e.kind() == Some(ObjectType::Blob) && is_regular(e.filemode()))
            .filter_map(|e| e.name().ok().map(str::to_string))
            .collect())
    }

    /// Merge commit with parents [base, head] and head's tree; error if `head` does not
    /// contain `base`.
    pub fn merge_commit(
        &self,
        base: &str,
        head: &str,
        message: &str,
        sig: &Sig,
    ) -> Result<String, GitError> {
        if !self.is_ancestor(base, head)? {
            return Err(GitError::NotAncestor {
                base: base.to_string(),
                head: head.to_string(),
            });
        }
        let b = self.find_commit(base)?;
        let h = self.find_commit(head)?;
        let tree = h.tree().map_err(|e| self.err("read tree", &e))?;
        self.write_commit(&tree, &[&b, &h], message, sig)
    }

    /// A commit on `onto` that reverts `commit` (for merge commits, relative to parent 1);
    /// GitError::Conflict if the revert does not apply cleanly.
    pub fn revert_commit(
        &self,
        onto: &str,
        commit: &str,
        message: &str,
        sig: &Sig,
    ) -> Result<String, GitError> {
        let ours = self.find_commit(onto)?;
        let target = self.find_commit(commit)?;
        // libgit2 wants mainline 0 for ordinary commits and a 1-based parent for merges.
        let mainline = if target.parent_count() > 1 { 1 } else { 0 };
        let mut index = self
            .repo
            .revert_commit(&target, &ours, mainline, None)
            .map_err(|e| self.err(format!("revert {commit}"), &e))?;
        if index.has_conflicts() {
            let mut paths = BTreeSet::new();
            let conflicts = index
                .conflicts()
                .map_err(|e| self.err("read conflicts", &e))?;
            for c in conflicts {
                let c = c.map_err(|e| self.err("read conflicts", &e))?;
                if let Some(entry) = c.our.or(c.their).or(c.ancestor) {
                    paths.insert(PathBuf::from(
                        String::from_utf8_lossy(&entry.path).into_owned(),
                    ));
                }
            }
            return Err(GitError::Conflict {
                commit: commit.to_string(),
                onto: onto.to_string(),
                paths: paths.into_iter().collect(),
            });
        }
        let tree_id = index
            .write_tree_to(&self.repo)
            .map_err(|e| self.err("write revert tree", &e))?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(|e| self.err("read revert tree", &e))?;
        self.write_commit(&tree, &[&ours], message, sig)
    }

    /// `ancestor` == `descendant` or an ancestor of it.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
        let a = self.find_commit(ancestor)?.id();
        let d = self.find_commit(descendant)?.id();
        if a == d {
            return Ok(true);
        }
        self.repo
            .graph_descendant_of(d, a)
            .map_err(|e| self.err("ancestry check", &e))
    }

    /// Commits reachable from `head` and not from `base`, oldest first.
    pub fn commits_between(&self, base: &str, head: &str) -> Result<Vec<CommitInfo>, GitError> {
        let b = self.find_commit(base)?.id();
        let h = self.find_commit(head)?.id();
        let ctx = || format!("walk {base}..{head}");
        let mut walk = self.repo.revwalk().map_err(|e| self.err(ctx(), &e))?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
            .and_then(|_| walk.push(h))
            .and_then(|_| walk.hide(b))
            .map_err(|e| self.err(ctx(), &e))?;
        let mut out = Vec::new();
        for id in walk {
            let id = id.map_err(|e| self.err(ctx(), &e))?;
            out.push(self.info(&self.find_oid(id)?));
        }
        Ok(out)
    }

    /// First-parent history from `head`, newest first, at most `limit`.
    pub fn first_parent_log(&self, head: &str, limit: usize) -> Result<Vec<CommitInfo>, GitError> {
        self.walk_first_parent(head, limit, &|_| false)
    }

    /// First-parent history from `head`, newest first, at most `limit` commits, stopping
    /// before the first commit for which `known` is true (a walk that takes only new commits).
    pub fn first_parent_until(
        &self,
        head: &str,
        limit: usize,
        known: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<CommitInfo>, GitError> {
        count_history_walk();
        self.walk_first_parent(head, limit, known)
    }

    fn walk_first_parent(
        &self,
        head: &str,
        limit: usize,
        known: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<CommitInfo>, GitError> {
        let mut out = Vec::new();
        let mut next = Some(self.find_commit(head)?);
        while let Some(c) = next {
            if out.len() >= limit || known(&c.id().to_string()) {
                break;
            }
            out.push(self.info(&c));
            next = match c.parent(0) {
                Ok(p) => Some(p),
                Err(e) if e.code() == ErrorCode::NotFound => None,
                Err(e) => return Err(self.err(format!("parent of {}", c.id()), &e)),
            };
        }
        Ok(out)
    }

    pub fn commit_info(&self, id: &str) -> Result<CommitInfo, GitError> {
        Ok(self.info(&self.find_commit(id)?))
    }

    /// Paths whose entries differ between two commits' trees (sorted).
    pub fn changed_paths(&self, from: &str, to: &str) -> Result<Vec<PathBuf>, GitError> {
        count_history_walk();
        let a = self
            .find_commit(from)?
            .tree()
            .map_err(|e| self.err("read tree", &e))?;
        let b = self
            .find_commit(to)?
            .tree()
            .map_err(|e| self.err("read tree", &e))?;
        let diff = self
            .repo
            .diff_tree_to_tree(Some(&a), Some(&b), None)
            .map_err(|e| self.err(format!("diff {from} {to}"), &e))?;
        let mut paths = BTreeSet::new();
        for d in diff.deltas() {
            // Without rename detection old and new paths agree; take both to be safe.
            for f in [d.old_file(), d.new_file()] {
                if let Some(p) = f.path() {
                    paths.insert(p.to_path_buf());
                }
            }
        }
        Ok(paths.into_iter().collect())
    }

    /// Set remote `branch` to `new` only if it currently is `expected` (None = must not
    /// exist): a push with lease. Err(GitError::LeaseLost) when the remote moved; the
    /// caller reloads and retries. On success refs/remotes/origin/<branch> follows.
    ///
    /// To a local bare repository or over HTTP(S), the push sends only the objects its new
    /// commits add to their parents (see `sparse`): libgit2's push would walk the whole tree
    /// of the remote's branches first. Over SSH, and when that path cannot start (the remote
    /// cannot be listed over it), libgit2 pushes.
    pub fn push(&self, branch: &str, new: &str, expected: Option<&str>) -> Result<(), GitError> {
        let new = self.find_commit(new)?.id();
        let expected = expected.map(parse_oid).transpose()?;
        check_branch(branch)?;
        self.push_own_or(branch, Some(new), expected, || {
            self.push_ref(None, branch, Some(new), expected)
        })
    }

    /// `push` for a branch whose history shares nothing with the fleet's (the state
    /// branch). When libgit2 pushes it (SSH), it pushes from the side repository, which
    /// holds only that branch's objects, so the push costs what the branch changed, not the
    /// fleet's size (see `side`).
    pub fn push_alone(
        &self,
        branch: &str,
        new: &str,
        expected: Option<&str>,
    ) -> Result<(), GitError> {
        let new = self.find_commit(new)?.id();
        let expected = expected.map(parse_oid).transpose()?;
        check_branch(branch)?;
        self.push_own_or(branch, Some(new), expected, || {
            self.push_side(branch, new, expected)
        })
    }

    /// libgit2's push of `new` from the side repository.
    fn push_side(&self, branch: &str, new: Oid, expected: Option<Oid>) -> Result<(), GitError> {
        let cache = self.repo.path();
        let side_err =
            |e: git2::Error| self.err(format!("copy {branch} to the side repository"), &e);
        let side = side::open(cache).map_err(side_err)?;
        side::copy_for_push(&self.repo, &side, new, expected).map_err(side_err)?;
        // libgit2 reads the `shallow` file when a repository is opened: open it again.
        drop(side);
        let side = side::open(cache).map_err(side_err)?;
        self.push_ref(Some(&side), branch, Some(new), expected)
    }

    /// Delete remote `branch` if it is at `expected` (lease), else LeaseLost.
    /// Like a push, a delete is fleetwave's own where it can be: libgit2's walks the trees
    /// of every remote branch it holds even when it sends nothing.
    pub fn delete_branch(&self, branch: &str, expected: &str) -> Result<(), GitError> {
        let expected = parse_oid(expected)?;
        check_branch(branch)?;
        self.push_own_or(branch, None, Some(expected), || {
            self.push_ref(None, branch, None, Some(expected))
        })
    }

    // ---- internals ----

    /// Push from the cache, or from `from` (the side repository).
    fn push_ref(
        &self,
        from: Option<&Repository>,
        branch: &str,
        new: Option<Oid>,
        expected: Option<Oid>,
    ) -> Result<(), GitError> {
        check_branch(branch)?;
        let refname = format!("refs/heads/{branch}");
        let lost = |found: Option<Oid>| lease_lost(branch, expected, found);
        // Held from connect (when the remote's refs are listed) until the update is done.
        let _lock = self.lock_local_remote()?;
        if _lock.is_some() {
            self.clear_stale_ref_lock(&refname);
        }
        let mut remote = match from {
            None => self.remote()?,
            Some(repo) => repo
                .remote_anonymous(&self.url)
                .map_err(|e| self.err("open remote from the side repository", &e))?,
        };
        // Force: branches are regenerated on a moved base; the lease is the only guard.
        let spec = match new {
            Some(id) => format!("+{id}:{refname}"),
            None => format!(":{refname}"),
        };
        let (result, heard) = self.push_spec(&mut remote, &refname, &spec, expected);
        if let Some(found) = heard.lease_lost {
            return Err(lost(found));
        }
        result.map_err(|e| self.err(format!("push {branch}"), &e))?;
        if !heard.negotiated {
            // libgit2 lists every spec as an update; not seeing ours means the lease was
            // never checked, so refuse to report success.
            return Err(GitError::Git {
                context: format!("push {branch}"),
                message: "the lease was not checked".into(),
            });
        }
        if let Some(reason) = heard.rejected {
            // Smart servers compare the old value themselves; tell a race from a refusal.
            let found = self.remote_head(&refname)?;
            if found != expected && found != new {
                return Err(lost(found));
            }
            return Err(GitError::Rejected {
                branch: branch.to_string(),
                reason,
            });
        }
        self.follow_push(branch, new)
    }

    /// Push `spec` through `remote`, failing in libgit2's negotiation unless `refname` is at
    /// `expected` there; with what the remote said of `refname`.
    fn push_spec(
        &self,
        remote: &mut git2::Remote<'_>,
        refname: &str,
        spec: &str,
        expected: Option<Oid>,
    ) -> (Result<(), git2::Error>, Heard) {
        let mut lease_lost = None;
        let mut negotiated = false;
        let mut rejected = None;
        let result = {
            let mut cbs = self.callbacks();
            cbs.push_negotiation(|updates| {
                for u in updates {
                    if u.dst_refname_bytes() != refname.as_bytes() {
                        continue;
                    }
                    negotiated = true;
                    let src = u.src();
                    let found = (!src.is_zero()).then_some(src);
                    if found != expected {
                        lease_lost = Some(found);
                        return Err(git2::Error::from_str("lease lost"));
                    }
                }
                Ok(())
            });
            cbs.push_update_reference(|name, status| {
                if let Some(msg) = status {
                    if name == refname {
                        rejected = Some(msg.to_string());
                    }
                }
                Ok(())
            });
            let mut opts = PushOptions::new();
            opts.remote_callbacks(cbs);
            remote.push(&[spec], Some(&mut opts))
        };
        let heard = Heard {
            lease_lost,
            negotiated,
            rejected,
        };
        (result, heard)
    }

    /// A fleetwave push killed mid-update leaves the local remote's ref lock file behind,
    /// which would refuse every later push. Called under our push lock, when no fleetwave
    /// push is running.
    fn clear_stale_ref_lock(&self, refname: &str) {
        if let Some(dir) = local_remote_dir(&self.url) {
            let stale = dir.join(format!("{refname}.lock"));
            if stale.exists() {
                tracing::warn!(
                    "removing stale {} left by an interrupted push",
                    stale.display()
                );
                let _ = std::fs::remove_file(&stale);
            }
        }
    }

    /// After a push: the tracking ref follows the remote branch (gone when deleted).
    fn follow_push(&self, branch: &str, new: Option<Oid>) -> Result<(), GitError> {
        let tracking = format!("{TRACKING_PREFIX}{branch}");
        match new {
            Some(id) => {
                self.repo
                    .reference(&tracking, id, true, "fleetwave: push")
                    .map_err(|e| self.err(format!("update {tracking}"), &e))?;
            }
            None => match self.repo.find_reference(&tracking) {
                Ok(mut r) => r
                    .delete()
                    .map_err(|e| self.err(format!("delete {tracking}"), &e))?,
                Err(e) if e.code() == ErrorCode::NotFound => {}
                Err(e) => return Err(self.err(format!("read {tracking}"), &e)),
            },
        }
        Ok(())
    }

    /// Current value of `refname` on the remote (a fresh ls, not the tracking ref).
    fn remote_head(&self, refname: &str) -> Result<Option<Oid>, GitError> {
        let mut remote = self.remote()?;
        let conn = remote
            .connect_auth(Direction::Push, Some(self.callbacks()), None)
            .map_err(|e| self.err("connect", &e))?;
        let heads = conn.list().map_err(|e| self.err("list remote refs", &e))?;
        Ok(heads.iter().find(|h| h.name() == refname).map(|h| h.oid()))
    }

    /// Exclusive lock on a local remote for the duration of a push (see LOCAL_PUSH_LOCK);
    /// None for network remotes, whose server checks the old value itself.
    fn lock_local_remote(&self) -> Result<Option<File>, GitError> {
        let Some(dir) = local_remote_dir(&self.url) else {
            return Ok(None);
        };
        let path = dir.join(LOCAL_PUSH_LOCK);
        let file = lock_file(&path)?;
        // Released when the file is dropped, or by the OS if the process dies.
        file.lock().map_err(|source| GitError::Io {
            context: format!("lock {}", path.display()),
            source,
        })?;
        Ok(Some(file))
    }

    fn remote(&self) -> Result<git2::Remote<'_>, GitError> {
        self.repo
            .find_remote(REMOTE)
            .map_err(|e| self.err("find remote origin", &e))
    }

    /// Every connection to the remote (fetch, list, push) takes its callbacks here.
    fn callbacks(&self) -> RemoteCallbacks<'_> {
        ca_bundle_for_https_remote(&self.url);
        let mut cbs = RemoteCallbacks::new();
        let mut attempts = 0u32;
        cbs.credentials(move |_url, username, allowed| {
            // libgit2 asks again after a refused credential; stop instead of looping.
            attempts += 1;
            if attempts > 3 {
                return Err(git2::Error::from_str("authentication failed"));
            }
            match &self.auth {
                Auth::Token(token) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                    Cred::userpass_plaintext("x-access-token", token)
                }
                Auth::UserPass { user, secret }
                    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
                {
                    Cred::userpass_plaintext(user, secret)
                }
                Auth::SshAgent | Auth::SshKey { .. }
                    if allowed.contains(CredentialType::USERNAME) =>
                {
                    Cred::username(username.unwrap_or("git"))
                }
                Auth::SshAgent if allowed.contains(CredentialType::SSH_KEY) => {
                    Cred::ssh_key_from_agent(username.unwrap_or("git"))
                }
                Auth::SshKey { key, passphrase } if allowed.contains(CredentialType::SSH_KEY) => {
                    Cred::ssh_key(username.unwrap_or("git"), None, key, passphrase.as_deref())
                }
                _ => Err(git2::Error::from_str(
                    "the remote asks for credentials this auth mode cannot give",
                )),
            }
        });
        cbs
    }

    /// Tree = `base` with each (path, content) written; existing files keep their mode.
    fn updated_tree<'a, 's>(
        &'s self,
        base: &Tree<'s>,
        changes: impl Iterator<Item = (&'a Path, &'a [u8])>,
    ) -> Result<Tree<'s>, GitError> {
        let mut builder = TreeUpdateBuilder::new();
        // Each directory is looked up once, not once per file in it: a step of a large fleet
        // changes thousands of files under one `clusters/` directory.
        let mut dirs: std::collections::HashMap<String, Option<Tree<'s>>> =
            std::collections::HashMap::new();
        for (path, content) in changes {
            let rel = repo_path(path)?;
            let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
            let mode = match self.subtree(base, dir, &mut dirs)? {
                Some(t) => match t.get_name(name) {
                    Some(e) if e.filemode() == i32::from(FileMode::BlobExecutable) => {
                        FileMode::BlobExecutable
                    }
                    Some(e) if e.kind() == Some(ObjectType::Blob) && is_regular(e.filemode()) => {
                        FileMode::Blob
                    }
                    Some(_) => {
                        return Err(GitError::InvalidPath {
                            path: rel,
                            reason: "exists and is not a regular file".into(),
                        });
                    }
                    None => FileMode::Blob,
                },
                None => FileMode::Blob,
            };
            let blob = self
                .repo
                .blob(content)
                .map_err(|e| self.err(format!("write blob {rel}"), &e))?;
            builder.upsert(rel.as_str(), blob, mode);
        }
        let id = builder
            .create_updated(&self.repo, base)
            .map_err(|e| self.err("build tree", &e))?;
        self.repo
            .find_tree(id)
            .map_err(|e| self.err("read tree", &e))
    }

    /// The tree at `dir` (`/`-separated, "" for the root) under `base`; None when absent or
    /// not a directory. Memoized in `dirs`.
    fn subtree<'r>(
        &'r self,
        base: &Tree<'r>,
        dir: &str,
        dirs: &mut std::collections::HashMap<String, Option<Tree<'r>>>,
    ) -> Result<Option<Tree<'r>>, GitError> {
        if dir.is_empty() {
            return Ok(Some(base.clone()));
        }
        if let Some(t) = dirs.get(dir) {
            return Ok(t.clone());
        }
        let (up, name) = dir.rsplit_once('/').unwrap_or(("", dir));
        let found = match self.subtree(base, up, dirs)? {
            Some(parent) => match parent.get_name(name) {
                Some(e) if e.kind() == Some(ObjectType::Tree) => Some(
                    self.repo
                        .find_tree(e.id())
                        .map_err(|e| self.err(format!("read tree {dir}"), &e))?,
                ),
                _ => None,
            },
            None => None,
        };
        dirs.insert(dir.to_string(), found.clone());
        Ok(found)
    }

    fn write_commit(
        &self,
        tree: &Tree<'_>,
        parents: &[&Commit<'_>],
        message: &str,
        sig: &Sig,
    ) -> Result<String, GitError> {
        // Whole seconds, UTC: the same inputs always give the same commit id.
        let when = Time::new(sig.time.timestamp(), 0);
        let s =
            Signature::new(&sig.name, &sig.email, &when).map_err(|e| self.err("signature", &e))?;
        self.repo
            .commit(None, &s, &s, message, tree, parents)
            .map(|id| id.to_string())
            .map_err(|e| self.err("write commit", &e))
    }

    fn find_commit(&self, id: &str) -> Result<Commit<'_>, GitError> {
        self.find_oid(parse_oid(id)?)
    }

    fn find_oid(&self, oid: Oid) -> Result<Commit<'_>, GitError> {
        match self.repo.find_commit(oid) {
            Ok(c) => Ok(c),
            Err(e) if e.code() == ErrorCode::NotFound => {
                Err(GitError::NotFound(format!("commit {oid}")))
            }
            Err(e) => Err(self.err(format!("read commit {oid}"), &e)),
        }
    }

    fn info(&self, c: &Commit<'_>) -> CommitInfo {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let author = c.author();
        CommitInfo {
            id: c.id().to_string(),
            parents: c.parent_ids().map(|p| p.to_string()).collect(),
            author_name: lossy(author.name_bytes()),
            author_email: lossy(author.email_bytes()),
            committer_email: lossy(c.committer().email_bytes()),
            message: lossy(c.message_bytes()),
            time: DateTime::from_timestamp(c.time().seconds(), 0).unwrap_or_default(),
        }
    }

    fn err(&self, context: impl Into<String>, e: &git2::Error) -> GitError {
        let mut err = git_err(context, e, &self.auth);
        if let GitError::Git { message, .. } = &mut err {
            if self.url != redact_url(&self.url) {
                *message = message.replace(&self.url, &redact_url(&self.url));
            }
        }
        err
    }
}

fn git_err(context: impl Into<String>, e: &git2::Error, auth: &Auth) -> GitError {
    let mut message = e.message().to_string();
    if let Auth::Token(t) | Auth::UserPass { secret: t, .. } = auth {
        if !t.is_empty() {
            message = message.replace(t.as_str(), "<redacted>");
        }
    }
    GitError::Git {
        context: context.into(),
        message,
    }
}

/// libgit2's process-wide options, set once before any repository is used.
fn global_options() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Every object in the cache was hashed once already: by the indexer when it was
        // fetched (a pack's objects are named by hashing them), or when fleetwave wrote it.
        // Hashing it again on every read (libgit2's default, not git's) was a tenth of a
        // fresh `status` at 10,000 clusters.
        git2::opts::strict_hash_verification(false);
        // libgit2's object cache keeps every commit and tree it parses until the handle is
        // dropped. fleetwave reads each tree once (a walk, or the one tree walk a push
        // makes of a remote branch: 50,000 trees at 10,000 clusters) and keeps what it needs
        // itself, so the cache only cost its lookups, its memory and the freeing at exit: a
        // merging tick at 10,000 clusters took 0.30 s and 128 MB with it, 0.19 s and 90 MB
        // without.
        git2::opts::enable_caching(false);
    });
}

/// Set by [`start`]: libgit2 started without the system's CA bundle, which
/// [`ca_bundle_for_https`] loads instead.
static CA_DEFERRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Start libgit2 for this process. Call it first thing in `main`, before any other thread
/// exists: it sets an environment variable for the start-up. libgit2's OpenSSL start-up
/// parses the whole system CA bundle (20–30 ms for Debian's, a third of an idle tick),
/// whatever the remote; it is pointed at an empty file for that start-up, and the bundle is
/// loaded before the first HTTPS connection instead, which a local, SSH or plain-HTTP remote
/// never makes.
pub fn start() {
    #[cfg(all(unix, not(target_os = "macos"), not(target_os = "ios")))]
    {
        const VAR: &str = "SSL_CERT_FILE";
        let saved = std::env::var_os(VAR);
        // SAFETY: no other thread exists yet (see above), so none reads the environment.
        unsafe { std::env::set_var(VAR, "/dev/null") };
        global_options();
        match saved {
            // SAFETY: as above.
            Some(v) => unsafe { std::env::set_var(VAR, v) },
            None => unsafe { std::env::remove_var(VAR) },
        }
        CA_DEFERRED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    global_options();
}

/// [`ca_bundle_for_https`] when `url` is an HTTPS remote.
fn ca_bundle_for_https_remote(url: &str) {
    if url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        ca_bundle_for_https();
    }
}

/// Before the first HTTPS connection: the system's CA bundle when [`start`] deferred it (the
/// file OpenSSL's start-up reads: `SSL_CERT_FILE`, else the bundle git2 would point it at),
/// and `GIT_SSL_CAINFO` as git honours it (a self-hosted Git server with a private CA);
/// `SSL_CERT_DIR` is read by OpenSSL itself. Loaded once, and not before: OpenSSL parses a
/// whole bundle when it is loaded, which a local, SSH or plain-HTTP remote never needs.
fn ca_bundle_for_https() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let deferred = CA_DEFERRED
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| openssl_probe::probe().cert_file)
            .flatten()
            .map(|f| ("SSL_CERT_FILE", f));
        let cainfo = std::env::var_os("GIT_SSL_CAINFO")
            .filter(|f| !f.is_empty())
            .map(|f| ("GIT_SSL_CAINFO", PathBuf::from(f)));
        for (name, file) in deferred.into_iter().chain(cainfo) {
            // SAFETY: every HTTPS connection passes through this Once before it connects,
            // so the option is set before any remote reads it.
            if let Err(e) = unsafe { git2::opts::set_ssl_cert_file(&file) } {
                tracing::warn!("{name}={}: {}", file.display(), e.message());
            }
        }
    });
}

/// Give back to the system what libgit2 freed. libgit2 allocates with the C library's
/// malloc, and glibc keeps freed small blocks for its own later use, which Rust code (on
/// mimalloc) never gets: after a tree walk that was 30 MB held under the planning peak.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// 100644 or 100755 (symlinks 120000 and submodules 160000 are not files to us).
fn is_regular(mode: i32) -> bool {
    mode == i32::from(FileMode::Blob) || mode == i32::from(FileMode::BlobExecutable)
}

fn parse_oid(id: &str) -> Result<Oid, GitError> {
    // Oid::from_str pads short prefixes with zeros; insist on the full id.
    if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GitError::InvalidId(id.to_string()));
    }
    Oid::from_str(id).map_err(|_| GitError::InvalidId(id.to_string()))
}

fn check_branch(branch: &str) -> Result<(), GitError> {
    if branch.is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        return Err(GitError::InvalidBranch(branch.to_string()));
    }
    Ok(())
}

/// A relative path inside the repository as git wants it: `/`-separated, no `.`/`..`.
fn repo_path(path: &Path) -> Result<String, GitError> {
    let bad = |reason: &str| GitError::InvalidPath {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => {
                let s = s.to_str().ok_or_else(|| bad("not UTF-8"))?;
                if s.contains('\0') || s == ".git" {
                    return Err(bad("forbidden component"));
                }
                parts.push(s);
            }
            _ => return Err(bad("must be relative, without . or ..")),
        }
    }
    if parts.is_empty() {
        return Err(bad("empty"));
    }
    Ok(parts.join("/"))
}

/// `user@host:path` (scp-like ssh) as opposed to a local path.
fn is_scp_like(url: &str) -> bool {
    match url.split_once(':') {
        Some((host, _)) => !host.is_empty() && !host.contains('/') && host.len() > 1,
        None => false,
    }
}

fn is_http(url: &str) -> bool {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    matches!(scheme.as_deref(), Some("http" | "https"))
}

fn lease_lost(branch: &str, expected: Option<Oid>, found: Option<Oid>) -> GitError {
    GitError::LeaseLost {
        branch: branch.to_string(),
        expected: expected.map(|o| o.to_string()),
        found: found.map(|o| o.to_string()),
    }
}

fn is_local(url: &str) -> bool {
    url.starts_with("file://") || (!url.contains("://") && !is_scp_like(url))
}

/// Local remotes are stored as absolute paths so the cache works from any directory.
fn normalize_remote(remote: &str) -> String {
    if is_local(remote) && !remote.starts_with("file://") {
        if let Ok(abs) = std::fs::canonicalize(remote) {
            if let Some(s) = abs.to_str() {
                return s.to_string();
            }
        }
    }
    remote.to_string()
}

/// The Git directory of a local remote: the path itself for a bare repository, its `.git`
/// for one with a work tree (so lock files never land in someone's work tree).
fn local_remote_dir(url: &str) -> Option<PathBuf> {
    if !is_local(url) {
        return None;
    }
    let dir = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
    let dot_git = dir.join(".git");
    if std::fs::symlink_metadata(&dot_git).is_ok_and(|m| m.is_dir()) {
        return Some(dot_git);
    }
    Some(dir)
}

/// An http(s) URL without its `user[:secret]@`, and what was there. Other URLs (ssh's
/// `git@host`, local paths) are returned as they are: their user is not a secret.
pub fn strip_userinfo(url: &str) -> (String, Option<(String, Option<String>)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return (url.to_string(), None);
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_string(), None);
    };
    let (user, secret) = match userinfo.split_once(':') {
        Some((u, p)) => (u.to_string(), Some(p.to_string())),
        None => (userinfo.to_string(), None),
    };
    (format!("{scheme}://{host}{path}"), Some((user, secret)))
}

/// Drop any `user:password@` from a URL before it goes into a message.
fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        if let Some((_, host)) = authority.rsplit_once('@') {
            let sep = if rest.contains('/') { "/" } else { "" };
            return format!("{scheme}://<redacted>@{host}{sep}{path}");
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};
    use tempfile::TempDir;

    fn sig(name: &str, secs: i64) -> Sig {
        Sig {
            name: name.to_string(),
            email: format!("{}@example.com", name.to_lowercase()),
            time: DateTime::from_timestamp(1_770_000_000 + secs, 0).unwrap(),
        }
    }

    fn changes(items: &[(&str, &str)]) -> BTreeMap<PathBuf, Vec<u8>> {
        items
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec()))
            .collect()
    }

    /// A bare remote whose `main` has two commits, built with git2 directly so it can hold
    /// an executable file and a symlink.
    struct Remote {
        _dir: TempDir,
        path: PathBuf,
        root: String,
        head: String,
    }

    impl Remote {
        fn new() -> Remote {
            let dir = TempDir::new().unwrap();
            let path = dir.path().join("fleet.git");
            let repo = Repository::init_bare(&path).unwrap();
            let s =
                Signature::new("Seed", "seed@example.com", &Time::new(1_700_000_000, 0)).unwrap();
            let blob = |b: &[u8]| repo.blob(b).unwrap();
            let mut a = repo.treebuilder(None).unwrap();
            a.insert("cluster.yaml", blob(b"version: v1.32.4\n"), 0o100644)
                .unwrap();
            let a = a.write().unwrap();
            let mut b = repo.treebuilder(None).unwrap();
            b.insert(
                "cluster.yaml",
                blob(b"version: v1.32.4 # keep\r\n"),
                0o100644,
            )
            .unwrap();
            let b = b.write().unwrap();
            let mut clusters = repo.treebuilder(None).unwrap();
            clusters.insert("a", a, 0o040000).unwrap();
            clusters.insert("b", b, 0o040000).unwrap();
            let clusters = clusters.write().unwrap();
            let mut bin = repo.treebuilder(None).unwrap();
            bin.insert("tool.sh", blob(b"#!/bin/sh\necho hi\n"), 0o100755)
                .unwrap();
            let bin = bin.write().unwrap();
            let mut root = repo.treebuilder(None).unwrap();
            root.insert("README.md", blob(b"fleet\n"), 0o100644)
                .unwrap();
            root.insert("link", blob(b"README.md"), 0o120000).unwrap();
            root.insert("clusters", clusters, 0o040000).unwrap();
            root.insert("bin", bin, 0o040000).unwrap();
            let t1 = repo.find_tree(root.write().unwrap()).unwrap();
            let c1 = repo.commit(None, &s, &s, "seed\n", &t1, &[]).unwrap();
            let mut root = repo.treebuilder(Some(&t1)).unwrap();
            root.insert("plan.yaml", blob(b"waves: []\n"), 0o100644)
                .unwrap();
            let t2 = repo.find_tree(root.write().unwrap()).unwrap();
            let p = repo.find_commit(c1).unwrap();
            let c2 = repo
                .commit(Some("refs/heads/main"), &s, &s, "plan\n", &t2, &[&p])
                .unwrap();
            Remote {
                _dir: dir,
                path,
                root: c1.to_string(),
                head: c2.to_string(),
            }
        }

        fn url(&self) -> String {
            self.path.to_str().unwrap().to_string()
        }

        fn head_of(&self, branch: &str) -> Option<String> {
            let repo = Repository::open_bare(&self.path).unwrap();
            repo.refname_to_id(&format!("refs/heads/{branch}"))
                .ok()
                .map(|o| o.to_string())
        }

        /// A fresh cache on this remote, fetched.
        fn cache(&self, dir: &TempDir, name: &str) -> GitRepo {
            let g = GitRepo::open(&dir.path().join(name), &self.url(), Auth::None).unwrap();
            g.fetch().unwrap();
            g
        }
    }

    #[test]
    fn fetch_and_read_files() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let g = remote.cache(&tmp, "cache");
        assert_eq!(g.branch_head("main").unwrap(), Some(remote.head.clone()));
        assert_eq!(g.branch_head("nope").unwrap(), None);
        assert_eq!(
            g.branches("").unwrap(),
            vec![("main".to_string(), remote.head.clone())]
        );

        let files = g.files(&remote.head).unwrap();
        let names: Vec<_> = files.keys().map(|p| p.to_str().unwrap()).collect();
        // The symlink is skipped.
        assert_eq!(
            names,
            [
                "README.md",
                "bin/tool.sh",
                "clusters/a/cluster.yaml",
                "clusters/b/cluster.yaml",
                "plan.yaml"
            ]
        );
        assert_eq!(
            g.read_file(&remote.head, Path::new("clusters/b/cluster.yaml"))
                .unwrap()
                .unwrap(),
            b"version: v1.32.4 # keep\r\n"
        );
        assert_eq!(
            g.read_file(&remote.head, Path::new("missing.yaml"))
                .unwrap(),
            None
        );
        assert_eq!(
            g.read_file(&remote.head, Path::new("clusters")).unwrap(),
            None
        );
        assert_eq!(g.read_file(&remote.head, Path::new("link")).unwrap(), None);
        assert_eq!(
            g.file_id(&remote.head, Path::new("plan.yaml")).unwrap(),
            Some(repo_blob_id(b"waves: []\n"))
        );
        assert_eq!(g.file_id(&remote.head, Path::new("link")).unwrap(), None);
        assert_eq!(g.file_id(&remote.head, Path::new("nope")).unwrap(), None);
    }

    fn repo_blob_id(content: &[u8]) -> String {
        Oid::hash_object(ObjectType::Blob, content)
            .unwrap()
            .to_string()
    }

    #[test]
    fn commit_changes_preserve_other_files() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let g = remote.cache(&tmp, "cache");
        let files = g.files(&remote.head).unwrap();
        let edits = changes(&[
            ("clusters/a/cluster.yaml", "version: v1.33.1\n"),
            ("bin/tool.sh", "#!/bin/sh\necho bye\n"),
            ("clusters/c/new/cluster.yaml", "version: v1.33.1\n"),
        ]);
        let c = g
            .commit_changes(&remote.head, &edits, "upgrade a\n", &sig("fleetwave", 0))
            .unwrap();
        let after = g.files(&c).unwrap();
        for (path, bytes) in &files {
            match edits.get(path) {
                Some(new) => assert_eq!(&after[path], new),
                None => assert_eq!(&after[path], bytes, "{} changed", path.display()),
            }
        }
        assert_eq!(after.len(), files.len() + 1);
        assert_eq!(
            g.changed_paths(&remote.head, &c).unwrap(),
            edits.keys().cloned().collect::<Vec<_>>()
        );

        // Modes: the executable stays executable, the symlink stays a symlink.
        let repo = Repository::open_bare(tmp.path().join("cache")).unwrap();
        let tree = repo
            .find_commit(Oid::from_str(&c).unwrap())
            .unwrap()
            .tree()
            .unwrap();
        assert_eq!(
            tree.get_path(Path::new("bin/tool.sh")).unwrap().filemode(),
            0o100755
        );
        assert_eq!(
            tree.get_path(Path::new("clusters/c/new/cluster.yaml"))
                .unwrap()
                .filemode(),
            0o100644
        );
        assert_eq!(
            tree.get_path(Path::new("link")).unwrap().filemode(),
            0o120000
        );
        // Untouched subtrees are shared, not rewritten.
        let old = repo
            .find_commit(Oid::from_str(&remote.head).unwrap())
            .unwrap()
            .tree()
            .unwrap();
        assert_eq!(
            tree.get_path(Path::new("clusters/b")).unwrap().id(),
            old.get_path(Path::new("clusters/b")).unwrap().id()
        );

        let info = g.commit_info(&c).unwrap();
        assert_eq!(info.parents, vec![remote.head.clone()]);
        assert_eq!(info.author_email, "fleetwave@example.com");
        assert_eq!(info.committer_email, "fleetwave@example.com");
        assert_eq!(info.message, "upgrade a\n");
        assert_eq!(info.time, sig("fleetwave", 0).time);
    }

    #[test]
    fn commits_are_deterministic_and_move_no_ref() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let g = remote.cache(&tmp, "cache");
        let edits = changes(&[
            ("clusters/a/cluster.yaml", "version: v1.33.1\n"),
            ("clusters/c/new/cluster.yaml", "version: v1.33.1\n"),
        ]);
        let c = g
            .commit_changes(&remote.head, &edits, "upgrade a\n", &sig("fleetwave", 0))
            .unwrap();
        // A tree built once and committed later is the same commit.
        let tree = g.changed_tree(&remote.head, &edits).unwrap();
        assert!(g.has_tree(&tree));
        assert!(!g.has_tree(&remote.head), "a commit id is not a tree");
        assert_eq!(
            g.commit_tree(&tree, &remote.head, "upgrade a\n", &sig("fleetwave", 0))
                .unwrap(),
            c
        );
        let again = g
            .commit_changes(&remote.head, &edits, "upgrade a\n", &sig("fleetwave", 0))
            .unwrap();
        assert_eq!(again, c);
        assert_eq!(g.tree_id(&c).unwrap(), g.tree_id(&again).unwrap());
        let later = g
            .commit_changes(&remote.head, &edits, "upgrade a\n", &sig("fleetwave", 60))
            .unwrap();
        assert_ne!(later, c);
        assert_eq!(g.tree_id(&later).unwrap(), g.tree_id(&c).unwrap());
        let noop = g
            .commit_changes(&remote.head, &BTreeMap::new(), "noop", &sig("fleetwave", 0))
            .unwrap();
        assert_eq!(g.tree_id(&noop).unwrap(), g.tree_id(&remote.head).unwrap());
        assert_eq!(g.branch_head("main").unwrap(), Some(remote.head.clone()));
        assert_eq!(remote.head_of("main"), Some(remote.head.clone()));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let g = remote.cache(&tmp, "cache");
        assert!(matches!(g.commit_info("abc"), Err(GitError::InvalidId(_))));
        assert!(matches!(
            g.commit_info(&"0".repeat(40)),
            Err(GitError::NotFound(_))
        ));
        for bad in ["../x", "/etc/passwd", "a/../b", "", ".git/config"] {
            let r = g.commit_changes(&remote.head, &changes(&[(bad, "x")]), "m", &sig("f", 0));
            assert!(
                matches!(r, Err(GitError::InvalidPath { .. })),
                "{bad}: {r:?}"
            );
        }
        // Writing over a directory or a symlink is refused rather than changing its type.
        for bad in ["clusters", "link"] {
            let r = g.commit_changes(&remote.head, &changes(&[(bad, "x")]), "m", &sig("f", 0));
            assert!(
                matches!(r, Err(GitError::InvalidPath { .. })),
                "{bad}: {r:?}"
            );
        }
        assert!(matches!(
            g.push("bad..name", &remote.head, None),
            Err(GitError::InvalidBranch(_))
        ));
        assert!(
            format!("{:?}", Auth::Token("s3cret".into()))
                .find("s3cret")
                .is_none()
        );
        assert_eq!(
            redact_url("https://x-access-token:s3cret@github.com/o/r.git"),
            "https://<redacted>@github.com/o/r.git"
        );
    }

    #[test]
    fn push_with_lease() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let g = remote.cache(&tmp, "cache");
        let branch = "fleetwave/p/canary/1";
        let c1 = g
            .commit_changes(
                &remote.head,
                &changes(&[("plan.yaml", "v1\n")]),
                "one",
                &sig("fleetwave", 0),
            )
            .unwrap();
        g.push(branch, &c1, None).unwrap();
        assert_eq!(remote.head_of(branch), Some(c1.clone()));
        assert_eq!(g.branch_head(branch).unwrap(), Some(c1.clone()));

        // Creating again: the branch exists.
        let c2 = g
            .commit_changes(
                &c1,
                &changes(&[("plan.yaml", "v2\n")]),
                "two",
                &sig("fleetwave", 1),
            )
            .unwrap();
        match g.push(branch, &c2, None) {
            Err(GitError::LeaseLost {
                expected, found, ..
            }) => {
                assert_eq!(expected, None);
                assert_eq!(found, Some(c1.clone()));
            }
            other => panic!("{other:?}"),
        }
        // A stale expected head: refused, remote unchanged.
        match g.push(branch, &c2, Some(&remote.head)) {
            Err(GitError::LeaseLost {
                expected, found, ..
            }) => {
                assert_eq!(expected, Some(remote.head.clone()));
                assert_eq!(found, Some(c1.clone()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(remote.head_of(branch), Some(c1.clone()));

        // With the right lease it moves, even when not a fast-forward (regeneration).
        g.push(branch, &c2, Some(&c1)).unwrap();
        assert_eq!(remote.head_of(branch), Some(c2.clone()));
        let regen = g
            .commit_changes(
                &remote.head,
                &changes(&[("plan.yaml", "v3\n")]),
                "re",
                &sig("fleetwave", 2),
            )
            .unwrap();
        g.push(branch, &regen, Some(&c2)).unwrap();
        assert_eq!(remote.head_of(branch), Some(regen.clone()));

        // Delete with lease.
        assert!(matches!(
            g.delete_branch(branch, &c2),
            Err(GitError::LeaseLost { .. })
        ));
        assert_eq!(remote.head_of(branch), Some(regen.clone()));
        g.delete_branch(branch, &regen).unwrap();
        assert_eq!(remote.head_of(branch), None);
        assert_eq!(g.branch_head(branch).unwrap(), None);
        match g.delete_branch(branch, &regen) {
            Err(GitError::LeaseLost { found, .. }) => assert_eq!(found, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fetch_prunes_deleted_branches() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let a = remote.cache(&tmp, "a");
        a.push("fleetwave/p/w/1", &remote.head, None).unwrap();
        a.push("fleetwave/p/w/2", &remote.head, None).unwrap();
        a.push("other", &remote.head, None).unwrap();
        let b = remote.cache(&tmp, "b");
        let names = |g: &GitRepo| -> Vec<String> {
            g.branches("fleetwave/")
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(names(&b), ["fleetwave/p/w/1", "fleetwave/p/w/2"]);
        a.delete_branch("fleetwave/p/w/1", &remote.head).unwrap();
        assert_eq!(names(&b), ["fleetwave/p/w/1", "fleetwave/p/w/2"]);
        b.fetch().unwrap();
        assert_eq!(names(&b), ["fleetwave/p/w/2"]);
        // Reopening the cache keeps its refs and remote.
        drop(b);
        let b = GitRepo::open(&tmp.path().join("b"), &remote.url(), Auth::None).unwrap();
        assert_eq!(names(&b), ["fleetwave/p/w/2"]);
    }

    #[test]
    fn two_reconcilers_compare_and_swap_the_state_branch() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let state = Path::new("plans/p.json");
        let seed = remote.cache(&tmp, "seed");
        let first = seed
            .commit_file(None, state, b"{}", "state", &sig("fleetwave", 0))
            .unwrap();
        seed.push("fleetwave/state", &first, None).unwrap();

        for round in 0..8i64 {
            let expected = remote.head_of("fleetwave/state").unwrap();
            let barrier = Arc::new(Barrier::new(2));
            let handles: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|who| {
                    let (url, cache) = (remote.url(), tmp.path().join(format!("{who}{round}")));
                    let (expected, barrier) = (expected.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let g = GitRepo::open(&cache, &url, Auth::None).unwrap();
                        g.fetch().unwrap();
                        assert_eq!(
                            g.branch_head("fleetwave/state").unwrap(),
                            Some(expected.clone())
                        );
                        let body = format!("{{\"by\":\"{who}\",\"round\":{round}}}");
                        let c = g
                            .commit_file(
                                Some(&expected),
                                Path::new("plans/p.json"),
                                body.as_bytes(),
                                "state",
                                &sig(who, round),
                            )
                            .unwrap();
                        barrier.wait();
                        (c.clone(), g.push("fleetwave/state", &c, Some(&expected)))
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let won: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
            assert_eq!(won.len(), 1, "round {round}: {results:?}");
            let lost = results.iter().find(|(_, r)| r.is_err()).unwrap();
            match &lost.1 {
                Err(GitError::LeaseLost { found, .. }) => {
                    assert_eq!(found.as_ref(), Some(&won[0].0))
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(remote.head_of("fleetwave/state"), Some(won[0].0.clone()));
        }

        // The loser reloads and retries on top of the winner.
        seed.fetch().unwrap();
        let head = seed.branch_head("fleetwave/state").unwrap().unwrap();
        let next = seed
            .commit_file(
                Some(&head),
                Path::new("plans/q.json"),
                b"{}",
                "state q",
                &sig("fleetwave", 99),
            )
            .unwrap();
        seed.push("fleetwave/state", &next, Some(&head)).unwrap();
        let files = seed.files(&next).unwrap();
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            [Path::new("plans/p.json"), Path::new("plans/q.json")]
        );
    }

    #[test]
    fn merge_ancestry_and_foreign_commits() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let g = remote.cache(&tmp, "cache");
        let main = remote.head.clone();
        let ours = g
            .commit_changes(
                &main,
                &changes(&[("clusters/a/cluster.yaml", "version: v1.33.1\n")]),
                "upgrade",
                &sig("fleetwave", 0),
            )
            .unwrap();
        assert_eq!(g.commits_between(&main, &ours).unwrap().len(), 1);
        let alice = g
            .commit_changes(
                &ours,
                &changes(&[("README.md", "hand edit\n")]),
                "tweak",
                &sig("Alice", 5),
            )
            .unwrap();
        let between = g.commits_between(&main, &alice).unwrap();
        let ids: Vec<_> = between.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [ours.as_str(), alice.as_str()]);
        let foreign: Vec<_> = between
            .iter()
            .filter(|c| c.author_email != "fleetwave@example.com")
            .collect();
        assert_eq!(foreign.len(), 1);
        assert_eq!(foreign[0].author_name, "Alice");
        assert!(g.commits_between(&alice, &alice).unwrap().is_empty());

        assert!(g.is_ancestor(&main, &alice).unwrap());
        assert!(g.is_ancestor(&alice, &alice).unwrap());
        assert!(!g.is_ancestor(&alice, &main).unwrap());

        let merge = g
            .merge_commit(&main, &alice, "Merge step 1\n", &sig("fleetwave", 10))
            .unwrap();
        let info = g.commit_info(&merge).unwrap();
        assert_eq!(info.parents, vec![main.clone(), alice.clone()]);
        assert_eq!(g.tree_id(&merge).unwrap(), g.tree_id(&alice).unwrap());
        assert!(g.is_ancestor(&alice, &merge).unwrap());

        let log = g.first_parent_log(&merge, 10).unwrap();
        let ids: Vec<_> = log.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [merge.as_str(), main.as_str(), remote.root.as_str()]);
        assert_eq!(g.first_parent_log(&merge, 2).unwrap().len(), 2);
        assert!(g.first_parent_log(&merge, 0).unwrap().is_empty());

        // A head that does not contain the base cannot be merged this way.
        let side = g
            .commit_changes(
                &remote.root,
                &changes(&[("x", "y")]),
                "side",
                &sig("fleetwave", 0),
            )
            .unwrap();
        assert!(matches!(
            g.merge_commit(&main, &side, "m", &sig("fleetwave", 0)),
            Err(GitError::NotAncestor { .. })
        ));
    }

    #[test]
    fn orphan_state_line() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let g = remote.cache(&tmp, "cache");

        let s1 = g
            .commit_file(
                None,
                Path::new("plans/a.json"),
                b"{\"v\":1}",
                "state a",
                &sig("fleetwave", 0),
            )
            .unwrap();
        let info = g.commit_info(&s1).unwrap();
        assert!(info.parents.is_empty());
        assert_eq!(g.files(&s1).unwrap().len(), 1);
        let s2 = g
            .commit_file(
                Some(&s1),
                Path::new("plans/b.json"),
                b"{\"v\":2}",
                "state b",
                &sig("fleetwave", 1),
            )
            .unwrap();
        let s3 = g
            .commit_file(
                Some(&s2),
                Path::new("plans/a.json"),
                b"{\"v\":3}",
                "state a",
                &sig("fleetwave", 2),
            )
            .unwrap();
        let files = g.files(&s3).unwrap();
        assert_eq!(files[Path::new("plans/a.json")], b"{\"v\":3}");
        assert_eq!(files[Path::new("plans/b.json")], b"{\"v\":2}");
        assert_eq!(g.commit_info(&s3).unwrap().parents, vec![s2.clone()]);
        assert!(!g.is_ancestor(&remote.root, &s3).unwrap());
    }

    #[test]
    fn reverts() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let g = remote.cache(&tmp, "cache");
        // Revert a merged step: the old content comes back, other files stay.
        let main = remote.head.clone();
        let path = Path::new("clusters/a/cluster.yaml");
        let step = g
            .commit_changes(
                &main,
                &changes(&[("clusters/a/cluster.yaml", "version: v1.33.1\n")]),
                "upgrade",
                &sig("fleetwave", 0),
            )
            .unwrap();
        let merge = g
            .merge_commit(&main, &step, "Merge", &sig("fleetwave", 1))
            .unwrap();
        // Something else lands on main after the merge.
        let later = g
            .commit_changes(
                &merge,
                &changes(&[("README.md", "later\n")]),
                "later",
                &sig("Bob", 2),
            )
            .unwrap();
        let revert = g
            .revert_commit(&later, &merge, "Revert step", &sig("fleetwave", 3))
            .unwrap();
        assert_eq!(
            g.read_file(&revert, path).unwrap().unwrap(),
            b"version: v1.32.4\n"
        );
        assert_eq!(
            g.read_file(&revert, Path::new("README.md"))
                .unwrap()
                .unwrap(),
            b"later\n"
        );
        assert_eq!(g.commit_info(&revert).unwrap().parents, vec![later.clone()]);
        assert_eq!(
            g.changed_paths(&later, &revert).unwrap(),
            vec![path.to_path_buf()]
        );

        // Reverting a plain commit works too.
        let r2 = g
            .revert_commit(&step, &step, "Revert", &sig("fleetwave", 4))
            .unwrap();
        assert_eq!(g.tree_id(&r2).unwrap(), g.tree_id(&main).unwrap());

        // A later edit of the same lines makes the revert conflict.
        let edited = g
            .commit_changes(
                &merge,
                &changes(&[("clusters/a/cluster.yaml", "version: v1.34.0\n")]),
                "hand",
                &sig("Bob", 5),
            )
            .unwrap();
        match g.revert_commit(&edited, &merge, "Revert", &sig("fleetwave", 6)) {
            Err(GitError::Conflict { paths, .. }) => assert_eq!(paths, vec![path.to_path_buf()]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refresh_fetches_only_when_the_remote_moved() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let g = GitRepo::open(&tmp.path().join("cache"), &remote.url(), Auth::None).unwrap();
        assert!(g.refresh().unwrap(), "an empty cache fetches");
        assert!(!g.refresh().unwrap(), "nothing moved");
        // Another cache pushes a branch: the next refresh sees it and fetches.
        let other = remote.cache(&tmp, "other");
        other.push("side", &remote.root, None).unwrap();
        assert!(g.refresh().unwrap());
        assert_eq!(g.branch_head("side").unwrap(), Some(remote.root.clone()));
        assert!(!g.refresh().unwrap());
        // A deleted branch is a move too (the fetch prunes it).
        other.delete_branch("side", &remote.root).unwrap();
        assert!(g.refresh().unwrap());
        assert_eq!(g.branch_head("side").unwrap(), None);
    }

    #[test]
    fn lock_files_a_killed_fetch_left_are_cleared_when_the_cache_is_taken() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let cache = tmp.path().join("cache");
        let g = GitRepo::open(&cache, &remote.url(), Auth::None).unwrap();
        g.fetch().unwrap();
        let dir = g.cache_path().to_path_buf();
        drop(g);
        // The remote gets a new commit, so the next fetch downloads a pack.
        let other = remote.cache(&tmp, "other");
        let side = other
            .commit_file(
                Some(&remote.head),
                Path::new("new.txt"),
                b"new\n",
                "new",
                &sig("A", 9),
            )
            .unwrap();
        other.push("side", &side, None).unwrap();
        // What a process killed in the middle of a fetch leaves behind: libgit2 then refuses
        // every later fetch into this cache.
        let spec = format!("+refs/heads/*:{TRACKING_PREFIX}*");
        let fetch = || {
            let raw = git2::Repository::open_bare(&dir).unwrap();
            let mut origin = raw.find_remote(REMOTE).unwrap();
            let mut opts = FetchOptions::new();
            opts.prune(FetchPrune::On)
                .download_tags(AutotagOption::None);
            origin.fetch(&[spec.as_str()], Some(&mut opts), None)
        };
        std::fs::write(dir.join("shallow.lock"), b"").unwrap();
        let refused = fetch().expect_err("a stale shallow.lock refuses the fetch");
        assert!(refused.message().contains("shallow.lock"), "{refused}");
        let left = ["shallow.lock", "FETCH_HEAD.lock", "HEAD.lock"];
        for f in left {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let g = GitRepo::open(&cache, &remote.url(), Auth::None).unwrap();
        for f in left {
            assert!(!dir.join(f).exists(), "{f} is still there");
        }
        g.fetch().unwrap();
        assert_eq!(g.branch_head("side").unwrap(), Some(side));
    }

    #[test]
    fn a_cache_whose_creation_was_killed_opens() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let opens_and_fetches = |cache: &Path| {
            std::fs::write(cache.join("config.lock"), b"").unwrap();
            let g = GitRepo::open(cache, &remote.url(), Auth::None).unwrap();
            g.fetch().unwrap();
            assert_eq!(g.branch_head("main").unwrap(), Some(remote.head.clone()));
        };
        // Killed while `git init` wrote the config: a folder with a lock file in it.
        let cache = tmp.path().join("new");
        std::fs::create_dir_all(&cache).unwrap();
        opens_and_fetches(&cache);
        // Killed while the remote was added: a repository without it, and the lock.
        let cache = tmp.path().join("half");
        git2::Repository::init_bare(&cache).unwrap();
        opens_and_fetches(&cache);
    }

    #[test]
    fn first_parent_until_stops_at_known_commits() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let g = remote.cache(&tmp, "cache");
        let walks = history_walks();
        let all = g.first_parent_until(&remote.head, 10, &|_| false).unwrap();
        let ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [remote.head.as_str(), remote.root.as_str()]);
        let new = g
            .first_parent_until(&remote.head, 10, &|id| id == remote.root)
            .unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(
            g.first_parent_until(&remote.head, 1, &|_| false)
                .unwrap()
                .len(),
            1
        );
        assert!(history_walks() >= walks + 3);
    }

    #[test]
    fn changed_paths_lists_adds_edits_and_deletes() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let g = remote.cache(&tmp, "cache");
        // root -> head added plan.yaml; reversed it is a deletion.
        assert_eq!(
            g.changed_paths(&remote.root, &remote.head).unwrap(),
            vec![PathBuf::from("plan.yaml")]
        );
        assert_eq!(
            g.changed_paths(&remote.head, &remote.root).unwrap(),
            vec![PathBuf::from("plan.yaml")]
        );
        assert!(
            g.changed_paths(&remote.head, &remote.head)
                .unwrap()
                .is_empty()
        );
        // Same bytes written back: no change.
        let same = g
            .commit_changes(
                &remote.head,
                &changes(&[("README.md", "fleet\n")]),
                "same",
                &sig("f", 0),
            )
            .unwrap();
        assert!(g.changed_paths(&remote.head, &same).unwrap().is_empty());
        let c = g
            .commit_changes(
                &remote.head,
                &changes(&[
                    ("README.md", "fleet!\n"),
                    ("clusters/b/cluster.yaml", "x\n"),
                ]),
                "two",
                &sig("f", 0),
            )
            .unwrap();
        assert_eq!(
            g.changed_paths(&remote.head, &c).unwrap(),
            vec![
                PathBuf::from("README.md"),
                PathBuf::from("clusters/b/cluster.yaml")
            ]
        );
    }

    #[test]
    fn file_url_remotes_work() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let url = format!("file://{}", remote.path.display());
        let g = GitRepo::open(&tmp.path().join("cache"), &url, Auth::None).unwrap();
        g.fetch().unwrap();
        assert_eq!(g.branch_head("main").unwrap(), Some(remote.head.clone()));
        g.push("x", &remote.root, None).unwrap();
        assert!(matches!(
            g.push("x", &remote.head, None),
            Err(GitError::LeaseLost { .. })
        ));
        assert_eq!(remote.head_of("x"), Some(remote.root.clone()));
    }

    proptest::proptest! {
        /// The pure reference-name check in core agrees with libgit2 on full names.
        #[test]
        fn core_ref_names_agree_with_libgit2(tail in "[a-zA-Z0-9_./@{}~^:?*\\\\\\[ \t\u{7f}é-]{0,12}") {
            for name in [format!("refs/tags/{tail}"), format!("refs/heads/fleetwave/{tail}/x")] {
                proptest::prop_assert_eq!(
                    crate::core::refname::is_valid_full_name(&name),
                    git2::Reference::is_valid_name(&name),
                    "{:?}", name
                );
            }
        }
    }

    #[test]
    fn core_ref_names_agree_with_libgit2_on_edges() {
        for name in [
            "refs/tags/v1",
            "refs/tags/.x",
            "refs/tags/x.",
            "refs/tags/a..b",
            "refs/tags/a.lock",
            "refs/tags/a@{b",
            "refs/tags/@",
            "refs/tags/a//b",
            "refs/tags/",
            "refs/tags/a/",
            "HEAD/x",
            "refs/x\u{7f}",
            "refs/x*",
            "refs/é",
            "refs/a b",
            "/refs/x",
            "refs/tags/a.lock/b",
            "refs/.lock",
            "refs/x@",
            "refs/{x}",
        ] {
            assert_eq!(
                crate::core::refname::is_valid_full_name(name),
                git2::Reference::is_valid_name(name),
                "{name:?}"
            );
        }
    }

    /// Every object under `commit` in the bare repository at `path`, read back.
    fn readable(path: &Path, commit: &str) -> usize {
        let repo = Repository::open_bare(path).unwrap();
        let tree = repo
            .find_commit(parse_oid(commit).unwrap())
            .unwrap()
            .tree()
            .unwrap();
        let mut n = 0;
        tree.walk(TreeWalkMode::PreOrder, |_, e| {
            repo.find_object(e.id(), None).unwrap();
            n += 1;
            TreeWalkResult::Ok
        })
        .unwrap();
        n
    }

    #[test]
    fn the_state_branch_is_pushed_from_a_side_repository_without_the_fleet() {
        let remote = Remote::new();
        let tmp = TempDir::new().unwrap();
        let a = remote.cache(&tmp, "a");
        let b = remote.cache(&tmp, "b");
        let (plan, changes) = (Path::new("p.yaml"), Path::new("p.changes/1-1.json"));
        // `body` as the state file over `parent`, pushed from `g`'s side repository (the path
        // libgit2 takes, over SSH).
        let write = |g: &GitRepo, parent: &str, body: &str| {
            let c = g
                .commit_file(Some(parent), plan, body.as_bytes(), body, &sig("a", 2))
                .unwrap();
            let (new, parent) = (parse_oid(&c).unwrap(), parse_oid(parent).unwrap());
            (g.push_side("fleetwave/state", new, Some(parent)), c)
        };
        // The remote's state branch is at `c`, every object under it readable there.
        let landed = |c: &str| {
            assert_eq!(remote.head_of("fleetwave/state").as_deref(), Some(c));
            assert_eq!(readable(&remote.path, c), 3);
        };
        let files: [(&Path, &[u8]); 2] = [(plan, b"one"), (changes, b"[1]")];
        let s1 = a
            .commit_files(None, &files, &[], "1", &sig("a", 1))
            .unwrap();
        a.push_side("fleetwave/state", parse_oid(&s1).unwrap(), None)
            .unwrap();
        let (pushed, s2) = write(&a, &s1, "two");
        pushed.unwrap();
        landed(&s2);
        assert_eq!(a.branch_head("fleetwave/state").unwrap(), Some(s2.clone()));
        // The fleet never entered the side repository: its push did not walk it.
        let side = side::open(a.cache_path()).unwrap();
        let odb = side.odb().unwrap();
        assert!(odb.exists(parse_oid(&s2).unwrap()));
        assert!(!odb.exists(parse_oid(&remote.head).unwrap()));

        // Another cache holds only the newest state commit, not its parent: listed as
        // shallow, the walk stops there instead of failing on the missing parent. An old
        // state commit that another remote branch points at does not get in the way either.
        let backup = Repository::open_bare(&remote.path).unwrap();
        backup
            .reference("refs/heads/backup", parse_oid(&s1).unwrap(), false, "test")
            .unwrap();
        b.fetch().unwrap();
        let (pushed, s3) = write(&b, &s2, "three");
        pushed.unwrap();
        landed(&s3);

        // The lease holds as for any push: `a` still expects s2.
        match write(&a, &s2, "late").0 {
            Err(GitError::LeaseLost { found, .. }) => assert_eq!(found, Some(s3.clone())),
            other => panic!("{other:?}"),
        }
        assert_eq!(remote.head_of("fleetwave/state"), Some(s3.clone()));

        // One grown too large is built again too (every state write adds loose objects).
        let fanout = a.cache_path().join("fleetwave-side.git/objects/00");
        std::fs::create_dir_all(&fanout).unwrap();
        for i in 0..400 {
            std::fs::write(fanout.join(format!("{i:038x}")), b"").unwrap();
        }
        a.fetch().unwrap();
        let (pushed, s4) = write(&a, &s3, "four");
        pushed.unwrap();
        landed(&s4);
        assert!(std::fs::read_dir(&fanout).map_or(0, Iterator::count) < 400);

        // A damaged side repository is a copy: it is built again.
        std::fs::remove_file(a.cache_path().join("fleetwave-side.git/HEAD")).unwrap();
        let (pushed, s5) = write(&a, &s4, "five");
        pushed.unwrap();
        landed(&s5);
    }
}
