#![allow(dead_code)]
//! A stateful fake GitHub on 127.0.0.1: the REST v3 endpoints fleetwave uses (pull requests,
//! commit statuses, check runs, issue comments, labels, issues, reviews, team memberships,
//! GitHub App installation tokens, rate limit) and Git smart HTTP (`git http-backend` as CGI)
//! over bare repositories in a temporary directory.
//!
//! It keeps GitHub's habits that clients trip over: `x-ratelimit-*` headers, ETags and `304`
//! on `If-None-Match` (a `304` does not count against the rate limit), `Link` pagination,
//! `head.sha` read from the branch on every request (pushes show up at once), `409` when a
//! merge names a stale head, `422` for a second open pull request on one head, pull requests
//! listed among the issues, and pull requests marked merged or closed when their head is
//! pushed into the base or deleted. Faults (`set_faults`) are drawn from a seeded RNG and
//! answer REST calls with 500 / 502 / 429 / 403 (secondary rate limit) and no side effect,
//! or delay them.
//!
//! The token's user is [`BOT_LOGIN`]; `Authorization: token T` and `Bearer T` are accepted
//! on REST, `Basic base64(any-user:T)` on Git. The App endpoints take any well-formed,
//! unexpired JWT (the signature is not checked) and hand out `T` as installation token.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Request, Response};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

/// The login of the token's user: author of everything created over REST.
pub const BOT_LOGIN: &str = "fleetwave-bot";
/// The App installation every repository reports (`GET /repos/{o}/{r}/installation`).
pub const INSTALLATION_ID: u64 = 4242;
const RATE_LIMIT: u64 = 5000;
const DOCS: &str = "https://docs.github.com/rest";
const SECONDARY: &str =
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";

/// Faults injected into REST answers (never Git). With `rate` 1.0 every call faults.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Fraction of REST calls answered with a fault, 0.0..=1.0.
    pub rate: f64,
    /// Seed of the RNG that picks which calls fault and how.
    pub seed: u64,
    /// `Retry-After` of 429 and 403 answers (seconds).
    pub retry_after_secs: u64,
    /// When non-zero, "slow" is one more fault kind: the call sleeps this long and is then
    /// served normally (with its side effects, as a slow GitHub would).
    pub slow_ms: u64,
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    /// The `user-agent` header (Git calls only: it tells libgit2's pushes from fleetwave's).
    pub agent: String,
}

pub struct FakeGitHub {
    base_url: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    // Dropped last: the server thread is gone by then.
    _root: tempfile::TempDir,
}

struct Shared {
    token: String,
    root: PathBuf,
    base: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct State {
    repos: BTreeMap<String, RepoState>,
    teams: BTreeSet<(String, String, String)>,
    faults: Faults,
    rng: u64,
    calls: Vec<Call>,
    git_calls: Vec<Call>,
    next_id: u64,
    next_repo_id: u64,
    rate_remaining: u64,
    rate_reset: i64,
    request_seq: u64,
    /// The test's clock, when it runs on one: timestamps follow it instead of the real time.
    clock: Option<DateTime<Utc>>,
    /// The token is a personal access token: check runs are refused, as GitHub refuses them
    /// to anything but a GitHub App (403).
    pat: bool,
    /// What the next merge calls meet, in order.
    merge_faults: std::collections::VecDeque<MergeFault>,
    /// Calls that carried no `X-GitHub-Api-Version` or a non-JSON `Accept`.
    missing_headers: Vec<String>,
    /// Org team memberships answer 403, as they do to an Actions `GITHUB_TOKEN`.
    members_unreadable: bool,
    /// What the next pushes (`POST …/git-receive-pack`) meet, in order.
    push_faults: std::collections::VecDeque<PushFault>,
}

/// A push whose answer never reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFault {
    /// The push is applied, and the client gets a 502 instead of the report.
    LoseAnswer,
    /// The request is dropped before git sees it: 502, nothing applied.
    Drop,
}

/// Documented answers of `PUT /repos/{o}/{r}/pulls/{n}/merge`
/// (https://docs.github.com/en/rest/pulls/pulls#merge-a-pull-request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeFault {
    /// 409 "Head branch was modified": nothing merged.
    Conflict,
    /// The merge happens, but the answer is lost (502 to the client).
    LoseAnswer,
}

impl State {
    /// Now, on the test's clock when it set one (whole seconds, as GitHub stamps them).
    fn now(&self) -> DateTime<Utc> {
        let t = self.clock.unwrap_or_else(Utc::now).timestamp();
        Utc.timestamp_opt(t, 0).single().unwrap_or_else(Utc::now)
    }
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
    fn rand(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct RepoState {
    id: u64,
    owner: String,
    name: String,
    created_at: DateTime<Utc>,
    next_number: u64,
    items: BTreeMap<u64, Item>,
    statuses: Vec<StatusRec>,
    check_runs: BTreeMap<u64, CheckRunRec>,
}

/// An issue, or a pull request (`pr` is set): they share numbers.
struct Item {
    number: u64,
    id: u64,
    title: String,
    body: Option<String>,
    user: String,
    open: bool,
    labels: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    comments: Vec<CommentRec>,
    pr: Option<Pr>,
}

struct Pr {
    head_ref: String,
    base_ref: String,
    draft: bool,
    maintainer_can_modify: bool,
    /// The head tip last seen (frozen once closed).
    head_sha: String,
    /// The base tip at merge time (for closed pull requests).
    base_sha: String,
    merged_at: Option<DateTime<Utc>>,
    merge_commit_sha: Option<String>,
    merged_by: Option<String>,
    reviews: Vec<ReviewRec>,
}

struct CommentRec {
    id: u64,
    body: String,
    user: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct ReviewRec {
    id: u64,
    user: String,
    state: String,
    commit_id: String,
    body: String,
    submitted_at: DateTime<Utc>,
}

struct StatusRec {
    id: u64,
    sha: String,
    state: String,
    target_url: Option<String>,
    description: Option<String>,
    context: String,
    creator: String,
    created_at: DateTime<Utc>,
}

struct CheckRunRec {
    id: u64,
    name: String,
    head_sha: String,
    status: String,
    conclusion: Option<String>,
    details_url: Option<String>,
    external_id: Option<String>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    title: Option<String>,
    summary: Option<String>,
    text: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

impl FakeGitHub {
    /// Bind 127.0.0.1:0 and serve in a background thread with its own tokio runtime; returns
    /// once the socket listens.
    pub fn start(token: &str) -> FakeGitHub {
        let root = tempfile::tempdir().expect("tempdir");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = State {
            rate_remaining: RATE_LIMIT,
            rate_reset: Utc::now().timestamp() + 3600,
            next_id: 1000,
            ..State::default()
        };
        let shared = Arc::new(Shared {
            token: token.to_string(),
            root: root.path().to_path_buf(),
            base: base.clone(),
            state: Mutex::new(state),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name("fake-github".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn fake-github");
        FakeGitHub {
            base_url: base,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
            _root: root,
        }
    }

    /// The REST API root, e.g. `http://127.0.0.1:PORT` (no `/api/v3`).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// `http://127.0.0.1:PORT/{owner}/{repo}.git`
    pub fn git_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}.git", self.base_url)
    }

    /// The bare repository on disk.
    pub fn repo_path(&self, owner: &str, repo: &str) -> PathBuf {
        self.shared.root.join(owner).join(format!("{repo}.git"))
    }

    /// Create a bare repository `owner/repo` whose `main` holds `files`, in one commit by
    /// "Platform Team <platform@example.com>" at `time`.
    pub fn create_repo(
        &self,
        owner: &str,
        repo: &str,
        files: &BTreeMap<PathBuf, Vec<u8>>,
        time: DateTime<Utc>,
    ) {
        let path = self.repo_path(owner, repo);
        let git = git2::Repository::init_bare(&path).expect("init bare repo");
        {
            let mut cfg = git.config().expect("config");
            cfg.set_bool("http.receivepack", true).expect("receivepack");
            cfg.set_bool("uploadpack.allowReachableSHA1InWant", true)
                .expect("allowReachableSHA1InWant");
        }
        let tree = build_tree(&git, files);
        let tree = git.find_tree(tree).expect("tree");
        let sig = git2::Signature::new(
            "Platform Team",
            "platform@example.com",
            &git2::Time::new(time.timestamp(), 0),
        )
        .expect("signature");
        git.commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            "Initial fleet",
            &tree,
            &[],
        )
        .expect("commit");
        git.set_head("refs/heads/main").expect("HEAD");
        let mut st = self.shared.lock();
        st.next_repo_id += 1;
        let id = 100_000 + st.next_repo_id;
        st.repos.insert(
            format!("{owner}/{repo}"),
            RepoState {
                id,
                owner: owner.to_string(),
                name: repo.to_string(),
                created_at: time,
                next_number: 1,
                items: BTreeMap::new(),
                statuses: Vec::new(),
                check_runs: BTreeMap::new(),
            },
        );
    }

    /// Submit a review on pull request `pr` (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, ...).
    pub fn add_review(
        &self,
        owner: &str,
        repo: &str,
        pr: u64,
        user: &str,
        state: &str,
        commit_id: &str,
    ) {
        let mut st = self.shared.lock();
        let id = st.id();
        let now = st.now();
        let item = st
            .repos
            .get_mut(&format!("{owner}/{repo}"))
            .and_then(|r| r.items.get_mut(&pr))
            .filter(|i| i.pr.is_some())
            .unwrap_or_else(|| panic!("no pull request {owner}/{repo}#{pr}"));
        item.updated_at = now;
        item.pr.as_mut().unwrap().reviews.push(ReviewRec {
            id,
            user: user.to_string(),
            state: state.to_string(),
            commit_id: commit_id.to_string(),
            body: String::new(),
            submitted_at: now,
        });
    }

    /// Make `user` an active member of `org/team` (team slug).
    pub fn add_team_member(&self, org: &str, team: &str, user: &str) {
        self.shared
            .lock()
            .teams
            .insert((org.to_string(), team.to_string(), user.to_string()));
    }

    /// Merge pull request `pr` at its current head with a merge commit, as `user` would in the
    /// web UI. Returns the merge commit. Panics if it cannot be merged.
    pub fn merge_as_human(&self, owner: &str, repo: &str, pr: u64, user: &str) -> String {
        let cx = self.shared.cx();
        let mut st = self.shared.lock();
        let key = format!("{owner}/{repo}");
        let git = open_repo(&cx, &key).expect("repo");
        refresh(&mut st, &key, &git);
        let now = st.now();
        let rs = st.repos.get_mut(&key).expect("repo");
        match do_merge(&git, now, rs, pr, None, "merge", None, None, user) {
            Ok(sha) => sha,
            Err(r) => panic!("merge_as_human {key}#{pr}: {} {:?}", r.status, r.body),
        }
    }

    /// Run the fake on the test's clock: `merged_at`, `updated_at`, review and merge-commit
    /// times follow it, so a test on a fixed date passes on any real date.
    pub fn set_clock(&self, now: DateTime<Utc>) {
        self.shared.lock().clock = Some(now);
    }

    /// Treat the token as a personal access token: `POST /check-runs` answers 403.
    pub fn set_pat(&self, pat: bool) {
        self.shared.lock().pat = pat;
    }

    /// Team memberships answer 403 (a token without the organization's members:read).
    pub fn set_members_unreadable(&self, yes: bool) {
        self.shared.lock().members_unreadable = yes;
    }

    /// The next merge calls meet these answers, in order.
    pub fn push_push_fault(&self, f: PushFault) {
        self.shared.lock().push_faults.push_back(f);
    }

    pub fn push_merge_fault(&self, f: MergeFault) {
        self.shared.lock().merge_faults.push_back(f);
    }

    /// Calls that lacked GitHub's recommended `Accept` / `X-GitHub-Api-Version` headers.
    pub fn missing_headers(&self) -> Vec<String> {
        self.shared.lock().missing_headers.clone()
    }

    /// Replace the fault settings (and reseed the RNG).
    pub fn set_faults(&self, f: Faults) {
        let mut st = self.shared.lock();
        st.rng = f.seed;
        st.faults = f;
    }

    /// Set how many REST calls remain before the primary rate limit (403) bites.
    pub fn set_rate_remaining(&self, remaining: u64) {
        self.shared.lock().rate_remaining = remaining.min(RATE_LIMIT);
    }

    /// Every REST request so far, in order of answer.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// Every Git smart-HTTP request so far.
    pub fn git_calls(&self) -> Vec<Call> {
        self.shared.lock().git_calls.clone()
    }

    pub fn reset_calls(&self) {
        let mut st = self.shared.lock();
        st.calls.clear();
        st.git_calls.clear();
    }

    /// All pull requests of all repositories (full REST objects), by repository and number.
    pub fn pulls(&self) -> Vec<Value> {
        let cx = self.shared.cx();
        let mut st = self.shared.lock();
        let keys: Vec<String> = st.repos.keys().cloned().collect();
        let mut out = Vec::new();
        for key in keys {
            let Ok(git) = open_repo(&cx, &key) else {
                continue;
            };
            refresh(&mut st, &key, &git);
            let rs = &st.repos[&key];
            for item in rs.items.values().filter(|i| i.pr.is_some()) {
                out.push(pr_json(&cx, rs, item, Some(&git)));
            }
        }
        out
    }

    /// Statuses posted on `sha` in any repository, oldest first.
    pub fn statuses(&self, sha: &str) -> Vec<Value> {
        let cx = self.shared.cx();
        let st = self.shared.lock();
        st.repos
            .values()
            .flat_map(|rs| {
                rs.statuses
                    .iter()
                    .filter(|s| s.sha == sha)
                    .map(|s| status_json(&cx, rs, s))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Comments on issue or pull request number `pr` in any repository, oldest first.
    pub fn comments(&self, pr: u64) -> Vec<Value> {
        let cx = self.shared.cx();
        let st = self.shared.lock();
        st.repos
            .values()
            .flat_map(|rs| {
                rs.items
                    .get(&pr)
                    .map(|i| {
                        i.comments
                            .iter()
                            .map(|c| comment_json(&cx, rs, i, c))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    /// All issues that are not pull requests, in any repository.
    pub fn issues(&self) -> Vec<Value> {
        let cx = self.shared.cx();
        let st = self.shared.lock();
        st.repos
            .values()
            .flat_map(|rs| {
                rs.items
                    .values()
                    .filter(|i| i.pr.is_none())
                    .map(|i| issue_json(&cx, rs, i))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Check runs of any repository, by id.
    pub fn check_runs(&self) -> Vec<Value> {
        let cx = self.shared.cx();
        let st = self.shared.lock();
        st.repos
            .values()
            .flat_map(|rs| {
                rs.check_runs
                    .values()
                    .map(|c| check_run_json(&cx, rs, c))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            // Graceful shutdown waits for open connections; do not hang a test on a client
            // that keeps one alive.
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------------------------

struct Cx {
    base: String,
    root: PathBuf,
}

impl Shared {
    fn cx(&self) -> Cx {
        Cx {
            base: self.base.clone(),
            root: self.root.clone(),
        }
    }
}

struct Resp {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Resp {
    fn new(status: u16, body: Value) -> Resp {
        Resp {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }
    fn empty(status: u16) -> Resp {
        Resp {
            status,
            body: None,
            headers: Vec::new(),
        }
    }
    fn msg(status: u16, message: &str) -> Resp {
        Resp::new(
            status,
            json!({"message": message, "documentation_url": DOCS}),
        )
    }
    fn header(mut self, name: &'static str, value: String) -> Resp {
        self.headers.push((name, value));
        self
    }
}

fn not_found() -> Resp {
    Resp::msg(404, "Not Found")
}

fn invalid(errors: Value) -> Resp {
    Resp::new(
        422,
        json!({"message": "Validation Failed", "errors": errors, "documentation_url": DOCS}),
    )
}

fn invalid_field(resource: &str, field: &str, code: &str) -> Resp {
    invalid(json!([{"resource": resource, "field": field, "code": code}]))
}

async fn handle(AxState(sh): AxState<Arc<Shared>>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 256 << 20)
        .await
        .unwrap_or_default();
    let mut path = parts.uri.path().to_string();
    // GitHub Enterprise Server serves the REST API under /api/v3
    // (https://docs.github.com/en/enterprise-server@3.14/rest/quickstart).
    if let Some(rest) = path.strip_prefix("/api/v3/") {
        path = format!("/{rest}");
    }
    let query = parts.uri.query().unwrap_or("").to_string();
    let method = parts.method.as_str().to_string();
    let second = path.split('/').nth(2).unwrap_or("");
    if second.ends_with(".git") {
        return git_http(&sh, &method, &path, &query, &parts.headers, bytes).await;
    }
    rest(&sh, &method, &path, &query, &parts.headers, &bytes).await
}

enum Auth {
    Token,
    Jwt(Value),
    Bad(&'static str),
}

fn rest_auth(sh: &Shared, headers: &HeaderMap) -> Auth {
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Auth::Bad("Requires authentication");
    };
    let (scheme, cred) = v.trim().split_once(' ').unwrap_or((v, ""));
    let cred = cred.trim();
    let scheme = scheme.to_ascii_lowercase();
    if (scheme == "token" || scheme == "bearer") && cred == sh.token {
        return Auth::Token;
    }
    if scheme == "bearer" && cred.split('.').count() == 3 {
        let payload = cred.split('.').nth(1).unwrap_or("");
        return match decode_b64(payload).and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
            Some(claims) => Auth::Jwt(claims),
            None => Auth::Bad("A JSON web token could not be decoded"),
        };
    }
    Auth::Bad("Bad credentials")
}

/// Check the claims GitHub checks (not the signature).
fn jwt_ok(claims: &Value) -> Result<(), &'static str> {
    let now = Utc::now().timestamp();
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err("A JSON web token could not be decoded");
    };
    if claims["iss"].is_null() {
        return Err("A JSON web token could not be decoded");
    }
    if exp <= now {
        return Err(
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        );
    }
    if exp - now > 600 + 30 {
        return Err("'Expiration time' claim ('exp') is too far in the future");
    }
    if iat > now + 60 {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        );
    }
    Ok(())
}

enum Fault {
    Reply(Resp),
    Slow(u64),
}

fn draw_fault(st: &mut State) -> Option<Fault> {
    let f = st.faults.clone();
    if f.rate <= 0.0 {
        return None;
    }
    let u = (st.rand() >> 11) as f64 / (1u64 << 53) as f64;
    if u >= f.rate {
        return None;
    }
    let kinds = if f.slow_ms > 0 { 5 } else { 4 };
    let retry = f.retry_after_secs.to_string();
    Some(match st.rand() % kinds {
        0 => Fault::Reply(Resp::new(500, json!({"message": "Server Error"}))),
        1 => Fault::Reply(Resp::new(502, json!({"message": "Server Error"}))),
        2 => Fault::Reply(
            Resp::new(
                429,
                json!({"message": "API rate limit exceeded", "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}),
            )
            .header("retry-after", retry),
        ),
        3 => Fault::Reply(
            Resp::new(
                403,
                json!({"message": SECONDARY, "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}),
            )
            .header("retry-after", retry),
        ),
        _ => Fault::Slow(f.slow_ms),
    })
}

async fn rest(
    sh: &Shared,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response<Body> {
    let cx = sh.cx();
    // https://docs.github.com/en/rest/about-the-rest-api/api-versions: every call should name
    // the version and accept application/vnd.github+json.
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept.contains("application/vnd.github") || !headers.contains_key("x-github-api-version") {
        sh.lock().missing_headers.push(format!("{method} {path}"));
    }
    let auth = rest_auth(sh, headers);
    let app_path = path.starts_with("/app/") || path.ends_with("/installation");
    let early = match (&auth, app_path) {
        (Auth::Bad(m), _) => Some(Resp::msg(401, m)),
        (Auth::Jwt(_), false) => Some(Resp::msg(401, "Bad credentials")),
        (Auth::Token, true) => Some(Resp::msg(401, "A JSON web token could not be decoded")),
        (Auth::Jwt(c), true) => jwt_ok(c).err().map(|m| Resp::msg(401, m)),
        (Auth::Token, false) => None,
    };
    if let Some(r) = early {
        return finish(sh, method, path, query, headers, r, false);
    }
    let fault = {
        let mut st = sh.lock();
        if st.rate_remaining == 0 && Utc::now().timestamp() < st.rate_reset && path != "/rate_limit"
        {
            let r = Resp::new(
                403,
                json!({"message": "API rate limit exceeded for user ID 1.", "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"}),
            );
            drop(st);
            return finish(sh, method, path, query, headers, r, false);
        }
        draw_fault(&mut st)
    };
    match fault {
        Some(Fault::Reply(r)) => return finish(sh, method, path, query, headers, r, true),
        Some(Fault::Slow(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
        None => {}
    }
    let parsed: Value = if body.iter().all(|b| b.is_ascii_whitespace()) {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                let r = Resp::msg(400, "Problems parsing JSON");
                return finish(sh, method, path, query, headers, r, true);
            }
        }
    };
    let q = parse_query(query);
    let jwt = match &auth {
        Auth::Jwt(c) => Some(c.clone()),
        _ => None,
    };
    let resp = {
        let mut st = sh.lock();
        route(&mut st, &cx, sh, method, path, &q, &parsed, jwt.as_ref())
    };
    finish(sh, method, path, query, headers, resp, true)
}

/// Add GitHub's headers, turn a matching `If-None-Match` into `304`, record the call.
fn finish(
    sh: &Shared,
    method: &str,
    path: &str,
    query: &str,
    req_headers: &HeaderMap,
    resp: Resp,
    counted: bool,
) -> Response<Body> {
    let body = resp.body.as_ref().map(|v| {
        let mut s = serde_json::to_vec_pretty(v).unwrap_or_default();
        s.push(b'\n');
        s
    });
    let mut status = resp.status;
    let mut etag = None;
    if method == "GET" && status == 200 {
        let tag = format!("W/\"{}\"", body_hash(body.as_deref().unwrap_or(b"")));
        let matches = req_headers
            .get_all("if-none-match")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == tag.trim_start_matches("W/")
            });
        if matches {
            status = 304;
        }
        etag = Some(tag);
    }
    let mut st = sh.lock();
    let now = Utc::now().timestamp();
    if now >= st.rate_reset {
        st.rate_reset = now + 3600;
        st.rate_remaining = RATE_LIMIT;
    }
    if counted && status != 304 && path != "/rate_limit" {
        st.rate_remaining = st.rate_remaining.saturating_sub(1);
    }
    st.request_seq += 1;
    let seq = st.request_seq;
    st.calls.push(Call {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        status,
        agent: String::new(),
    });
    let remaining = st.rate_remaining;
    let reset = st.rate_reset;
    drop(st);
    let mut b = Response::builder()
        .status(status)
        .header("x-ratelimit-limit", RATE_LIMIT.to_string())
        .header("x-ratelimit-remaining", remaining.to_string())
        .header("x-ratelimit-reset", reset.to_string())
        .header("x-ratelimit-used", (RATE_LIMIT - remaining).to_string())
        .header("x-ratelimit-resource", "core")
        .header("x-github-request-id", format!("FAKE:{seq:08X}"))
        .header("x-github-api-version-selected", "2022-11-28")
        .header("x-github-media-type", "github.v3; format=json")
        .header("vary", "Accept, Authorization, Cookie, X-GitHub-OTP");
    if let Some(tag) = etag {
        b = b
            .header("etag", tag)
            .header("cache-control", "private, max-age=60, s-maxage=60");
    }
    for (k, v) in &resp.headers {
        b = b.header(*k, v);
    }
    let body = if status == 304 { None } else { body };
    match body {
        Some(bytes) => b
            .header("content-type", "application/json; charset=utf-8")
            .body(Body::from(bytes))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// Git smart HTTP
// ---------------------------------------------------------------------------------------------

async fn git_http(
    sh: &Shared,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let record = |status: u16| {
        sh.lock().git_calls.push(Call {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            status,
            agent: headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        })
    };
    let user = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, cred) = v.trim().split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let raw = String::from_utf8(decode_b64(cred.trim())?).ok()?;
            let (u, p) = raw.split_once(':')?;
            (p == sh.token).then(|| u.to_string())
        });
    let Some(user) = user else {
        record(401);
        return Response::builder()
            .status(401)
            .header("www-authenticate", "Basic realm=\"GitHub\"")
            .header("content-type", "text/plain")
            .body(Body::from("Invalid username or token.\n"))
            .unwrap();
    };
    let fault = (method == "POST" && path.ends_with("/git-receive-pack"))
        .then(|| sh.lock().push_faults.pop_front())
        .flatten();
    let lost = || {
        Response::builder()
            .status(502)
            .body(Body::from("Bad Gateway\n"))
            .unwrap()
    };
    if fault == Some(PushFault::Drop) {
        record(502);
        return lost();
    }
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env("GIT_PROJECT_ROOT", &sh.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("PATH_INFO", pct_decode(path))
        .env("REQUEST_METHOD", method)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", &user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (h, env) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "HTTP_GIT_PROTOCOL"),
    ] {
        if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()) {
            cmd.env(env, v);
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            record(500);
            return Response::builder()
                .status(500)
                .body(Body::from(format!("git http-backend: {e}\n")))
                .unwrap();
        }
    };
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    });
    let out = child.wait_with_output().await;
    let _ = writer.await;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            record(500);
            return Response::builder()
                .status(500)
                .body(Body::from(format!("git http-backend: {e}\n")))
                .unwrap();
        }
    };
    let raw = out.stdout;
    let (head_end, body_start) = match find(&raw, b"\r\n\r\n") {
        Some(i) => (i, i + 4),
        None => match find(&raw, b"\n\n") {
            Some(i) => (i, i + 2),
            None => (raw.len(), raw.len()),
        },
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let mut status = 200u16;
    let mut b = Response::builder();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(500);
        } else {
            b = b.header(k.trim(), v);
        }
    }
    if !out.status.success() && head.is_empty() {
        status = 500;
    }
    if fault == Some(PushFault::LoseAnswer) {
        record(502);
        return lost();
    }
    record(status);
    b.status(status)
        .body(Body::from(raw[body_start..].to_vec()))
        .unwrap()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// REST routes
// ---------------------------------------------------------------------------------------------

type Query = Vec<(String, String)>;

fn q_get<'a>(q: &'a Query, k: &str) -> Option<&'a str> {
    q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

#[allow(clippy::too_many_arguments)]
fn route(
    st: &mut State,
    cx: &Cx,
    sh: &Shared,
    m: &str,
    path: &str,
    q: &Query,
    body: &Value,
    jwt: Option<&Value>,
) -> Resp {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .map(pct_decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(|s| s.as_str()).collect();
    match (m, s.as_slice()) {
        ("GET", ["rate_limit"]) => {
            let rate = json!({"limit": RATE_LIMIT, "remaining": st.rate_remaining, "reset": st.rate_reset, "used": RATE_LIMIT - st.rate_remaining, "resource": "core"});
            let other = |name: &str, limit: u64| json!({"limit": limit, "remaining": limit, "reset": st.rate_reset, "used": 0, "resource": name});
            Resp::new(
                200,
                json!({"resources": {"core": rate, "search": other("search", 30), "graphql": other("graphql", 5000)}, "rate": rate}),
            )
        }
        ("GET", ["user"]) => Resp::new(200, user_json(cx, BOT_LOGIN)),
        ("GET", ["orgs", _, "teams", _, "memberships", _]) if st.members_unreadable => {
            Resp::msg(403, "Resource not accessible by integration")
        }
        ("GET", ["orgs", org, "teams", team, "memberships", user]) => {
            if st
                .teams
                .contains(&(org.to_string(), team.to_string(), user.to_string()))
            {
                Resp::new(
                    200,
                    json!({"url": format!("{}/organizations/1/team/1/memberships/{user}", cx.base), "role": "member", "state": "active"}),
                )
            } else {
                not_found()
            }
        }
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            if *id != INSTALLATION_ID.to_string() {
                return not_found();
            }
            let expires = Utc::now() + chrono::Duration::hours(1);
            Resp::new(
                201,
                json!({"token": sh.token, "expires_at": ts(&expires), "permissions": {"contents": "write", "pull_requests": "write", "statuses": "write", "checks": "write", "issues": "write", "members": "read"}, "repository_selection": "all"}),
            )
        }
        ("GET", ["repos", o, r, "installation"]) => {
            let key = format!("{o}/{r}");
            if !st.repos.contains_key(&key) {
                return not_found();
            }
            let app_id = jwt
                .and_then(|c| {
                    c["iss"]
                        .as_u64()
                        .or_else(|| c["iss"].as_str().and_then(|s| s.parse().ok()))
                })
                .unwrap_or(1);
            let created = ts(&st.repos[&key].created_at);
            Resp::new(
                200,
                json!({
                    "id": INSTALLATION_ID, "app_id": app_id, "app_slug": "fleetwave",
                    "target_id": user_id(o), "target_type": "Organization",
                    "account": user_json(cx, o), "single_file_name": null,
                    "repository_selection": "all",
                    "access_tokens_url": format!("{}/app/installations/{INSTALLATION_ID}/access_tokens", cx.base),
                    "repositories_url": format!("{}/installation/repositories", cx.base),
                    "html_url": format!("{}/organizations/{o}/settings/installations/{INSTALLATION_ID}", cx.base),
                    "permissions": {"contents": "write", "pull_requests": "write", "statuses": "write", "checks": "write", "issues": "write", "members": "read"},
                    "events": [], "created_at": created, "updated_at": created,
                    "suspended_by": null, "suspended_at": null
                }),
            )
        }
        (_, ["repos", o, r, rest @ ..]) => {
            let key = format!("{o}/{r}");
            if !st.repos.contains_key(&key) {
                return not_found();
            }
            let Ok(git) = open_repo(cx, &key) else {
                return Resp::msg(500, "repository is missing on disk");
            };
            refresh(st, &key, &git);
            repo_route(st, cx, &git, &key, m, rest, q, body)
        }
        _ => not_found(),
    }
}

#[allow(clippy::too_many_arguments)]
fn repo_route(
    st: &mut State,
    cx: &Cx,
    git: &git2::Repository,
    key: &str,
    m: &str,
    rest: &[&str],
    q: &Query,
    body: &Value,
) -> Resp {
    let now = st.now();
    // GitHub takes POST for PATCH (octocrab updates comments that way).
    let m = match (m, rest) {
        ("POST", ["pulls", _] | ["issues", _] | ["issues", "comments", _] | ["check-runs", _]) => {
            "PATCH"
        }
        _ => m,
    };
    match (m, rest) {
        ("GET", []) => Resp::new(200, repo_json(cx, &st.repos[key])),

        // ---- pull requests
        ("GET", ["pulls"]) => {
            let rs = &st.repos[key];
            let state = q_get(q, "state").unwrap_or("open");
            let head = q_get(q, "head");
            let base = q_get(q, "base");
            let mut list: Vec<&Item> = rs
                .items
                .values()
                .filter(|i| {
                    let Some(pr) = &i.pr else { return false };
                    let st_ok = match state {
                        "open" => i.open,
                        "closed" => !i.open,
                        _ => true,
                    };
                    let head_ok = head.is_none_or(|h| match h.split_once(':') {
                        Some((owner, r)) => owner == rs.owner && r == pr.head_ref,
                        None => true, // GitHub ignores a head without owner
                    });
                    st_ok && head_ok && base.is_none_or(|b| b == pr.base_ref)
                })
                .collect();
            sort_items(&mut list, q);
            let values = list
                .into_iter()
                .map(|i| pr_simple_json(cx, rs, i, git))
                .collect();
            paginate(cx, key, &format!("/repos/{key}/pulls"), q, values)
        }
        ("POST", ["pulls"]) => {
            let (Some(title), Some(head), Some(base)) = (
                body["title"].as_str(),
                body["head"].as_str(),
                body["base"].as_str(),
            ) else {
                return if body["title"].is_null() && body["issue"].is_null() {
                    invalid_field("PullRequest", "title", "missing_field")
                } else {
                    invalid_field("PullRequest", "head", "missing_field")
                };
            };
            let owner = st.repos[key].owner.clone();
            let head_ref = match head.split_once(':') {
                Some((o, r)) if o == owner => r.to_string(),
                Some(_) => return invalid_field("PullRequest", "head", "invalid"),
                None => head.to_string(),
            };
            let Some(head_sha) = branch_tip(git, &head_ref) else {
                return invalid_field("PullRequest", "head", "invalid");
            };
            let Some(base_sha) = branch_tip(git, base) else {
                return invalid_field("PullRequest", "base", "invalid");
            };
            let rs = &st.repos[key];
            if rs.items.values().any(|i| {
                i.open
                    && i.pr
                        .as_ref()
                        .is_some_and(|p| p.head_ref == head_ref && p.base_ref == base)
            }) {
                return invalid(json!([{"resource": "PullRequest", "code": "custom",
                    "message": format!("A pull request already exists for {owner}:{head_ref}.")}]));
            }
            if is_ancestor(git, &head_sha, &base_sha) {
                return invalid(json!([{"resource": "PullRequest", "code": "custom",
                    "message": format!("No commits between {base} and {head_ref}")}]));
            }
            let id = st.id();
            let rs = st.repos.get_mut(key).unwrap();
            let number = rs.next_number;
            rs.next_number += 1;
            rs.items.insert(
                number,
                Item {
                    number,
                    id,
                    title: title.to_string(),
                    body: body["body"].as_str().map(str::to_string),
                    user: BOT_LOGIN.to_string(),
                    open: true,
                    labels: Vec::new(),
                    created_at: now,
                    updated_at: now,
                    closed_at: None,
                    comments: Vec::new(),
                    pr: Some(Pr {
                        head_ref,
                        base_ref: base.to_string(),
                        draft: body["draft"].as_bool().unwrap_or(false),
                        maintainer_can_modify: body["maintainer_can_modify"]
                            .as_bool()
                            .unwrap_or(true),
                        head_sha,
                        base_sha,
                        merged_at: None,
                        merge_commit_sha: None,
                        merged_by: None,
                        reviews: Vec::new(),
                    }),
                },
            );
            let rs = &st.repos[key];
            let v = pr_json(cx, rs, &rs.items[&number], Some(git));
            let location = v_url(&v);
            Resp::new(201, v).header("location", location)
        }
        (_, ["pulls", n, tail @ ..]) => {
            let Some(n) = n
                .parse::<u64>()
                .ok()
                .filter(|n| st.repos[key].items.get(n).is_some_and(|i| i.pr.is_some()))
            else {
                return not_found();
            };
            pull_route(st, cx, git, key, n, m, tail, q, body)
        }

        // ---- statuses
        ("POST", ["statuses", sha]) => {
            let state = body["state"].as_str().unwrap_or("");
            if !["pending", "success", "failure", "error"].contains(&state) {
                return invalid_field("Status", "state", "custom");
            }
            let Some(full) = resolve(git, sha) else {
                return invalid(json!([{"resource": "Status", "code": "custom",
                    "message": format!("No commit found for SHA: {sha}")}]));
            };
            let description = body["description"].as_str().map(str::to_string);
            if description
                .as_ref()
                .is_some_and(|d| d.chars().count() > 140)
            {
                return invalid(
                    json!([{"resource": "Status", "code": "custom", "field": "description",
                    "message": "description is too long (maximum is 140 characters)"}]),
                );
            }
            let id = st.id();
            let rec = StatusRec {
                id,
                sha: full,
                state: state.to_string(),
                target_url: body["target_url"].as_str().map(str::to_string),
                description,
                context: body["context"].as_str().unwrap_or("default").to_string(),
                creator: BOT_LOGIN.to_string(),
                created_at: now,
            };
            let rs = st.repos.get_mut(key).unwrap();
            rs.statuses.push(rec);
            let v = status_json(cx, rs, rs.statuses.last().unwrap());
            Resp::new(201, v)
        }
        ("GET", ["commits", r @ .., "status"]) if !r.is_empty() => {
            let Some(sha) = resolve(git, &r.join("/")) else {
                return not_found();
            };
            let rs = &st.repos[key];
            let mut latest: Vec<&StatusRec> = Vec::new();
            for s in rs.statuses.iter().rev().filter(|s| s.sha == sha) {
                if !latest.iter().any(|l| l.context == s.context) {
                    latest.push(s);
                }
            }
            latest.sort_by_key(|s| s.id);
            let state = if latest
                .iter()
                .any(|s| s.state == "failure" || s.state == "error")
            {
                "failure"
            } else if latest.is_empty() || latest.iter().any(|s| s.state == "pending") {
                "pending"
            } else {
                "success"
            };
            let statuses: Vec<Value> = latest
                .iter()
                .map(|s| {
                    let mut v = status_json(cx, rs, s);
                    v.as_object_mut().unwrap().remove("creator");
                    v
                })
                .collect();
            let api = repo_api(cx, key);
            Resp::new(
                200,
                json!({"state": state, "statuses": statuses, "sha": sha, "total_count": statuses.len(),
                    "repository": repo_json(cx, rs), "commit_url": format!("{api}/commits/{sha}"),
                    "url": format!("{api}/commits/{sha}/status")}),
            )
        }
        ("GET", ["commits", r @ .., "statuses"]) if !r.is_empty() => {
            let Some(sha) = resolve(git, &r.join("/")) else {
                return not_found();
            };
            let rs = &st.repos[key];
            let list = rs
                .statuses
                .iter()
                .rev()
                .filter(|s| s.sha == sha)
                .map(|s| status_json(cx, rs, s))
                .collect();
            paginate(
                cx,
                key,
                &format!("/repos/{key}/commits/{}/statuses", r.join("/")),
                q,
                list,
            )
        }
        ("GET", ["commits", r @ .., "check-runs"]) if !r.is_empty() => {
            let Some(sha) = resolve(git, &r.join("/")) else {
                return not_found();
            };
            let rs = &st.repos[key];
            let runs: Vec<Value> = rs
                .check_runs
                .values()
                .rev()
                .filter(|c| c.head_sha == sha)
                .filter(|c| q_get(q, "check_name").is_none_or(|n| n == c.name))
                .map(|c| check_run_json(cx, rs, c))
                .collect();
            Resp::new(200, json!({"total_count": runs.len(), "check_runs": runs}))
        }

        // ---- check runs
        ("POST", ["check-runs"]) if st.pat => {
            Resp::msg(403, "You must authenticate via a GitHub App.")
        }
        ("POST", ["check-runs"]) => {
            let (Some(name), Some(head_sha)) = (body["name"].as_str(), body["head_sha"].as_str())
            else {
                return invalid_field("CheckRun", "name", "missing_field");
            };
            let Some(head_sha) = resolve(git, head_sha) else {
                return invalid(
                    json!([{"resource": "CheckRun", "code": "custom", "field": "head_sha",
                    "message": "No commit found for SHA"}]),
                );
            };
            let id = st.id();
            let mut rec = CheckRunRec {
                id,
                name: name.to_string(),
                head_sha,
                status: "queued".into(),
                conclusion: None,
                details_url: None,
                external_id: None,
                started_at: Some(now),
                completed_at: None,
                title: None,
                summary: None,
                text: None,
            };
            if let Err(r) = apply_check_run(&mut rec, body, now) {
                return r;
            }
            let rs = st.repos.get_mut(key).unwrap();
            rs.check_runs.insert(id, rec);
            Resp::new(201, check_run_json(cx, rs, &rs.check_runs[&id]))
        }
        (_, ["check-runs", id]) => {
            let rs = st.repos.get_mut(key).unwrap();
            let Some(rec) = id
                .parse()
                .ok()
                .and_then(|id: u64| rs.check_runs.get_mut(&id))
            else {
                return not_found();
            };
            match m {
                "GET" => {}
                "PATCH" => {
                    if let Err(r) = apply_check_run(rec, body, now) {
                        return r;
                    }
                }
                _ => return not_found(),
            }
            let rs = &st.repos[key];
            let id: u64 = id.parse().unwrap();
            Resp::new(200, check_run_json(cx, rs, &rs.check_runs[&id]))
        }

        // ---- issues
        ("GET", ["issues"]) => {
            let rs = &st.repos[key];
            let state = q_get(q, "state").unwrap_or("open");
            let labels: Vec<&str> = q_get(q, "labels")
                .map(|l| {
                    l.split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let creator = q_get(q, "creator");
            let mut list: Vec<&Item> = rs
                .items
                .values()
                .filter(|i| match state {
                    "open" => i.open,
                    "closed" => !i.open,
                    _ => true,
                })
                .filter(|i| labels.iter().all(|l| i.labels.iter().any(|x| x == l)))
                .filter(|i| creator.is_none_or(|c| c == i.user))
                .collect();
            sort_items(&mut list, q);
            let list = list.into_iter().map(|i| issue_json(cx, rs, i)).collect();
            paginate(cx, key, &format!("/repos/{key}/issues"), q, list)
        }
        ("POST", ["issues"]) => {
            let Some(title) = body["title"].as_str().filter(|t| !t.is_empty()) else {
                return invalid_field("Issue", "title", "missing_field");
            };
            let labels = match labels_of(body) {
                Ok(l) => l,
                Err(r) => return r,
            };
            let id = st.id();
            let rs = st.repos.get_mut(key).unwrap();
            let number = rs.next_number;
            rs.next_number += 1;
            let mut item = Item {
                number,
                id,
                title: title.to_string(),
                body: body["body"].as_str().map(str::to_string),
                user: BOT_LOGIN.to_string(),
                open: true,
                labels: Vec::new(),
                created_at: now,
                updated_at: now,
                closed_at: None,
                comments: Vec::new(),
                pr: None,
            };
            add_labels(&mut item.labels, labels);
            rs.items.insert(number, item);
            let v = issue_json(cx, rs, &rs.items[&number]);
            Resp::new(201, v.clone()).header("location", v_url(&v))
        }
        ("GET", ["issues", "comments", id])
        | ("PATCH", ["issues", "comments", id])
        | ("DELETE", ["issues", "comments", id]) => {
            let Ok(id) = id.parse::<u64>() else {
                return not_found();
            };
            let rs = st.repos.get_mut(key).unwrap();
            let Some((number, idx)) = rs.items.values().find_map(|i| {
                i.comments
                    .iter()
                    .position(|c| c.id == id)
                    .map(|p| (i.number, p))
            }) else {
                return not_found();
            };
            let item = rs.items.get_mut(&number).unwrap();
            match m {
                "DELETE" => {
                    item.comments.remove(idx);
                    return Resp::empty(204);
                }
                "PATCH" => {
                    let Some(text) = body["body"].as_str() else {
                        return invalid_field("IssueComment", "body", "missing_field");
                    };
                    let c = &mut item.comments[idx];
                    c.body = text.to_string();
                    c.updated_at = now;
                }
                _ => {}
            }
            let rs = &st.repos[key];
            let item = &rs.items[&number];
            Resp::new(200, comment_json(cx, rs, item, &item.comments[idx]))
        }
        (_, ["issues", n, tail @ ..]) => {
            let Some(n) = n
                .parse::<u64>()
                .ok()
                .filter(|n| st.repos[key].items.contains_key(n))
            else {
                return not_found();
            };
            issue_route(st, cx, git, key, n, m, tail, q, body)
        }

        // ---- refs and branches
        ("GET", ["git", "ref", r @ ..]) if !r.is_empty() => {
            let name = format!("refs/{}", r.join("/"));
            let Ok(oid) = git.refname_to_id(&name) else {
                return not_found();
            };
            let api = repo_api(cx, key);
            Resp::new(
                200,
                json!({"ref": name, "node_id": format!("REF_{}", body_hash(name.as_bytes())),
                    "url": format!("{api}/git/{name}"),
                    "object": {"type": "commit", "sha": oid.to_string(), "url": format!("{api}/git/commits/{oid}")}}),
            )
        }
        ("DELETE", ["git", "refs", r @ ..]) if !r.is_empty() => {
            let name = format!("refs/{}", r.join("/"));
            match git.find_reference(&name) {
                Ok(mut reference) => {
                    let _ = reference.delete();
                    refresh(st, key, git);
                    Resp::empty(204)
                }
                Err(_) => Resp::msg(422, "Reference does not exist"),
            }
        }
        ("GET", ["branches", b @ ..]) if !b.is_empty() => {
            let name = b.join("/");
            let Some(sha) = branch_tip(git, &name) else {
                return Resp::msg(404, "Branch not found");
            };
            let api = repo_api(cx, key);
            Resp::new(
                200,
                json!({"name": name, "commit": {"sha": sha, "url": format!("{api}/commits/{sha}")},
                    "protected": false, "_links": {"self": format!("{api}/branches/{name}"), "html": format!("{}/{key}/tree/{name}", cx.base)}}),
            )
        }
        _ => not_found(),
    }
}

#[allow(clippy::too_many_arguments)]
fn pull_route(
    st: &mut State,
    cx: &Cx,
    git: &git2::Repository,
    key: &str,
    n: u64,
    m: &str,
    tail: &[&str],
    q: &Query,
    body: &Value,
) -> Resp {
    let now = st.now();
    match (m, tail) {
        ("GET", []) => {
            let rs = &st.repos[key];
            Resp::new(200, pr_json(cx, rs, &rs.items[&n], Some(git)))
        }
        ("PATCH", []) => {
            let rs = st.repos.get_mut(key).unwrap();
            let item = rs.items.get_mut(&n).unwrap();
            let pr = item.pr.as_mut().unwrap();
            if let Some(s) = body["state"].as_str() {
                match s {
                    "closed" if item.open => {
                        item.open = false;
                        item.closed_at = Some(now);
                        item.updated_at = now;
                    }
                    "open" if !item.open => {
                        if pr.merged_at.is_some() {
                            return invalid(json!([{"resource": "PullRequest", "code": "custom",
                                "field": "state", "message": "state cannot be changed. The pull request cannot be reopened."}]));
                        }
                        let Some(tip) = branch_tip(git, &pr.head_ref) else {
                            return invalid(json!([{"resource": "PullRequest", "code": "custom",
                                "field": "state", "message": "state cannot be changed. The head branch was deleted."}]));
                        };
                        pr.head_sha = tip;
                        item.open = true;
                        item.closed_at = None;
                        item.updated_at = now;
                    }
                    "open" | "closed" => {}
                    _ => return invalid_field("PullRequest", "state", "invalid"),
                }
            }
            if let Some(t) = body.get("title").filter(|v| !v.is_null()) {
                let Some(t) = t.as_str().filter(|t| !t.is_empty()) else {
                    return invalid_field("PullRequest", "title", "invalid");
                };
                if t != item.title {
                    item.title = t.to_string();
                    item.updated_at = now;
                }
            }
            if let Some(b) = body.get("body") {
                let b = b.as_str().map(str::to_string);
                if b != item.body {
                    item.body = b;
                    item.updated_at = now;
                }
            }
            if let Some(b) = body["base"].as_str() {
                if branch_tip(git, b).is_none() {
                    return invalid_field("PullRequest", "base", "invalid");
                }
                if b != pr.base_ref {
                    pr.base_ref = b.to_string();
                    item.updated_at = now;
                }
            }
            let rs = &st.repos[key];
            Resp::new(200, pr_json(cx, rs, &rs.items[&n], Some(git)))
        }
        ("GET", ["merge"]) => {
            let merged = st.repos[key].items[&n]
                .pr
                .as_ref()
                .is_some_and(|p| p.merged_at.is_some());
            if merged {
                Resp::empty(204)
            } else {
                not_found()
            }
        }
        ("PUT", ["merge"]) => {
            let fault = st.merge_faults.pop_front();
            if fault == Some(MergeFault::Conflict) {
                return Resp::msg(
                    409,
                    "Head branch was modified. Review and try the merge again.",
                );
            }
            let method = body["merge_method"].as_str().unwrap_or("merge");
            if !["merge", "squash", "rebase"].contains(&method) {
                return invalid_field("PullRequest", "merge_method", "invalid");
            }
            let now = st.now();
            let rs = st.repos.get_mut(key).unwrap();
            match do_merge(
                git,
                now,
                rs,
                n,
                body["sha"].as_str(),
                method,
                body["commit_title"].as_str(),
                body["commit_message"].as_str(),
                BOT_LOGIN,
            ) {
                Ok(_) if fault == Some(MergeFault::LoseAnswer) => Resp::msg(502, "Server Error"),
                Ok(sha) => Resp::new(
                    200,
                    json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
                ),
                Err(r) => r,
            }
        }
        ("GET", ["reviews"]) => {
            let rs = &st.repos[key];
            let item = &rs.items[&n];
            let list = item
                .pr
                .as_ref()
                .unwrap()
                .reviews
                .iter()
                .map(|r| review_json(cx, rs, item, r))
                .collect();
            paginate(cx, key, &format!("/repos/{key}/pulls/{n}/reviews"), q, list)
        }
        ("GET", ["commits"]) => {
            let rs = &st.repos[key];
            let pr = rs.items[&n].pr.as_ref().unwrap();
            let base = if rs.items[&n].open {
                branch_tip(git, &pr.base_ref).unwrap_or_else(|| pr.base_sha.clone())
            } else {
                pr.base_sha.clone()
            };
            let list = pr_commits(git, &pr.head_sha, &base)
                .iter()
                .map(|c| commit_json(cx, key, c))
                .collect();
            paginate(cx, key, &format!("/repos/{key}/pulls/{n}/commits"), q, list)
        }
        _ => not_found(),
    }
}

#[allow(clippy::too_many_arguments)]
fn issue_route(
    st: &mut State,
    cx: &Cx,
    _git: &git2::Repository,
    key: &str,
    n: u64,
    m: &str,
    tail: &[&str],
    q: &Query,
    body: &Value,
) -> Resp {
    let now = st.now();
    match (m, tail) {
        ("GET", []) => {
            let rs = &st.repos[key];
            Resp::new(200, issue_json(cx, rs, &rs.items[&n]))
        }
        ("PATCH", []) => {
            let labels = if body.get("labels").is_some() {
                match labels_of(body) {
                    Ok(l) => Some(l),
                    Err(r) => return r,
                }
            } else {
                None
            };
            let rs = st.repos.get_mut(key).unwrap();
            let item = rs.items.get_mut(&n).unwrap();
            if let Some(t) = body.get("title").filter(|v| !v.is_null()) {
                let Some(t) = t.as_str().filter(|t| !t.is_empty()) else {
                    return invalid_field("Issue", "title", "invalid");
                };
                item.title = t.to_string();
            }
            if let Some(b) = body.get("body") {
                item.body = b.as_str().map(str::to_string);
            }
            match body["state"].as_str() {
                Some("closed") if item.open => {
                    item.open = false;
                    item.closed_at = Some(now);
                }
                Some("open") if !item.open => {
                    if item.pr.is_some() {
                        return invalid(json!([{"resource": "Issue", "code": "custom",
                            "field": "state", "message": "reopen the pull request instead"}]));
                    }
                    item.open = true;
                    item.closed_at = None;
                }
                None | Some("open") | Some("closed") => {}
                Some(_) => return invalid_field("Issue", "state", "invalid"),
            }
            if let Some(l) = labels {
                item.labels.clear();
                add_labels(&mut item.labels, l);
            }
            item.updated_at = now;
            let rs = &st.repos[key];
            Resp::new(200, issue_json(cx, rs, &rs.items[&n]))
        }
        ("GET", ["comments"]) => {
            let rs = &st.repos[key];
            let item = &rs.items[&n];
            let list = item
                .comments
                .iter()
                .map(|c| comment_json(cx, rs, item, c))
                .collect();
            paginate(
                cx,
                key,
                &format!("/repos/{key}/issues/{n}/comments"),
                q,
                list,
            )
        }
        ("POST", ["comments"]) => {
            let Some(text) = body["body"].as_str().filter(|b| !b.is_empty()) else {
                return invalid_field("IssueComment", "body", "missing_field");
            };
            let id = st.id();
            let rs = st.repos.get_mut(key).unwrap();
            let item = rs.items.get_mut(&n).unwrap();
            item.comments.push(CommentRec {
                id,
                body: text.to_string(),
                user: BOT_LOGIN.to_string(),
                created_at: now,
                updated_at: now,
            });
            item.updated_at = now;
            let rs = &st.repos[key];
            let item = &rs.items[&n];
            let v = comment_json(cx, rs, item, item.comments.last().unwrap());
            Resp::new(201, v.clone()).header("location", v_url(&v))
        }
        ("GET", ["labels"]) => {
            let rs = &st.repos[key];
            let list = rs.items[&n]
                .labels
                .iter()
                .map(|l| label_json(cx, key, l))
                .collect();
            paginate(cx, key, &format!("/repos/{key}/issues/{n}/labels"), q, list)
        }
        ("POST", ["labels"]) | ("PUT", ["labels"]) => {
            let labels = match labels_of(body) {
                Ok(l) => l,
                Err(r) => return r,
            };
            let rs = st.repos.get_mut(key).unwrap();
            let item = rs.items.get_mut(&n).unwrap();
            let before = item.labels.clone();
            if m == "PUT" {
                item.labels.clear();
            }
            add_labels(&mut item.labels, labels);
            if item.labels != before {
                item.updated_at = now;
            }
            let list = item.labels.iter().map(|l| label_json(cx, key, l)).collect();
            Resp::new(200, Value::Array(list))
        }
        ("DELETE", ["labels"]) => {
            let item = st.repos.get_mut(key).unwrap().items.get_mut(&n).unwrap();
            if !item.labels.is_empty() {
                item.labels.clear();
                item.updated_at = now;
            }
            Resp::empty(204)
        }
        ("DELETE", ["labels", name]) => {
            let item = st.repos.get_mut(key).unwrap().items.get_mut(&n).unwrap();
            let Some(pos) = item.labels.iter().position(|l| l == name) else {
                return Resp::msg(404, "Label does not exist");
            };
            item.labels.remove(pos);
            item.updated_at = now;
            let list = item.labels.iter().map(|l| label_json(cx, key, l)).collect();
            Resp::new(200, Value::Array(list))
        }
        _ => not_found(),
    }
}

fn labels_of(body: &Value) -> Result<Vec<String>, Resp> {
    let arr = match body {
        Value::Array(a) => a,
        _ => match &body["labels"] {
            Value::Array(a) => a,
            Value::Null => return Ok(Vec::new()),
            _ => return Err(invalid_field("Label", "labels", "invalid")),
        },
    };
    arr.iter()
        .map(|l| {
            l.as_str()
                .or_else(|| l["name"].as_str())
                .map(str::to_string)
                .ok_or_else(|| invalid_field("Label", "labels", "invalid"))
        })
        .collect()
}

fn add_labels(have: &mut Vec<String>, add: Vec<String>) {
    for l in add {
        if !l.is_empty() && !have.contains(&l) {
            have.push(l);
        }
    }
}

fn apply_check_run(rec: &mut CheckRunRec, body: &Value, now: DateTime<Utc>) -> Result<(), Resp> {
    if let Some(n) = body["name"].as_str() {
        rec.name = n.to_string();
    }
    if let Some(s) = body["status"].as_str() {
        if !["queued", "in_progress", "completed"].contains(&s) {
            return Err(invalid_field("CheckRun", "status", "invalid"));
        }
        rec.status = s.to_string();
    }
    if let Some(c) = body["conclusion"].as_str() {
        let ok = [
            "action_required",
            "cancelled",
            "failure",
            "neutral",
            "success",
            "skipped",
            "timed_out",
        ];
        if !ok.contains(&c) {
            return Err(invalid_field("CheckRun", "conclusion", "invalid"));
        }
        rec.conclusion = Some(c.to_string());
        rec.status = "completed".into();
    }
    if rec.status == "completed" {
        if rec.conclusion.is_none() {
            return Err(invalid(json!([{"resource": "CheckRun", "code": "custom",
                "field": "conclusion", "message": "conclusion is required when status is completed"}])));
        }
        rec.completed_at.get_or_insert(now);
    }
    for (field, slot) in [
        ("details_url", &mut rec.details_url),
        ("external_id", &mut rec.external_id),
    ] {
        if let Some(v) = body[field].as_str() {
            *slot = Some(v.to_string());
        }
    }
    let out = &body["output"];
    if !out.is_null() {
        let (Some(title), Some(summary)) = (out["title"].as_str(), out["summary"].as_str()) else {
            return Err(invalid_field("CheckRun", "output", "missing_field"));
        };
        rec.title = Some(title.to_string());
        rec.summary = Some(summary.to_string());
        rec.text = out["text"].as_str().map(str::to_string);
    }
    Ok(())
}

fn sort_items(list: &mut [&Item], q: &Query) {
    match q_get(q, "sort").unwrap_or("created") {
        "updated" => list.sort_by_key(|i| (i.updated_at, i.number)),
        "comments" => list.sort_by_key(|i| (i.comments.len(), i.number)),
        _ => list.sort_by_key(|i| i.number),
    }
    if q_get(q, "direction").unwrap_or("desc") != "asc" {
        list.reverse();
    }
}

fn paginate(cx: &Cx, _key: &str, path: &str, q: &Query, items: Vec<Value>) -> Resp {
    let per_page = q_get(q, "per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(30)
        .min(100);
    let page = q_get(q, "page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut resp = Resp::new(200, Value::Array(slice));
    if last > 1 {
        let url = |p: usize| {
            let mut parts: Vec<String> = q
                .iter()
                .filter(|(k, _)| k != "page")
                .map(|(k, v)| format!("{}={}", pct_encode(k), pct_encode(v)))
                .collect();
            parts.push(format!("page={p}"));
            format!("<{}{}?{}>", cx.base, path, parts.join("&"))
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!("{}; rel=\"prev\"", url((page - 1).min(last))));
        }
        if page < last {
            links.push(format!("{}; rel=\"next\"", url(page + 1)));
            links.push(format!("{}; rel=\"last\"", url(last)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"first\"", url(1)));
        }
        if !links.is_empty() {
            resp = resp.header("link", links.join(", "));
        }
    }
    resp
}

// ---------------------------------------------------------------------------------------------
// Git helpers
// ---------------------------------------------------------------------------------------------

fn open_repo(cx: &Cx, key: &str) -> Result<git2::Repository, git2::Error> {
    let (o, r) = key.split_once('/').unwrap_or((key, ""));
    git2::Repository::open_bare(cx.root.join(o).join(format!("{r}.git")))
}

fn branch_tip(git: &git2::Repository, branch: &str) -> Option<String> {
    git.refname_to_id(&format!("refs/heads/{branch}"))
        .ok()
        .map(|o| o.to_string())
}

fn resolve(git: &git2::Repository, r: &str) -> Option<String> {
    let obj = git.revparse_single(r).ok()?;
    obj.peel_to_commit().ok().map(|c| c.id().to_string())
}

fn is_ancestor(git: &git2::Repository, a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (git2::Oid::from_str(a), git2::Oid::from_str(b)) else {
        return false;
    };
    a == b || git.graph_descendant_of(b, a).unwrap_or(false)
}

/// Bring pull requests up to date with the bare repository: a moved head bumps
/// `updated_at`; a deleted head closes the pull request; a head already in the base (pushed
/// there by someone) marks it merged, as GitHub does.
fn refresh(st: &mut State, key: &str, git: &git2::Repository) {
    let now = st.now();
    let Some(rs) = st.repos.get_mut(key) else {
        return;
    };
    for item in rs.items.values_mut() {
        let Some(pr) = item.pr.as_mut() else { continue };
        if !item.open {
            continue;
        }
        match branch_tip(git, &pr.head_ref) {
            None => {
                item.open = false;
                item.closed_at = Some(now);
                item.updated_at = now;
                pr.base_sha = branch_tip(git, &pr.base_ref).unwrap_or_default();
            }
            Some(tip) => {
                if tip != pr.head_sha {
                    pr.head_sha = tip.clone();
                    item.updated_at = now;
                }
                if let Some(base) = branch_tip(git, &pr.base_ref)
                    && is_ancestor(git, &tip, &base)
                {
                    item.open = false;
                    item.closed_at = Some(now);
                    item.updated_at = now;
                    pr.merged_at = Some(now);
                    pr.merge_commit_sha = Some(base.clone());
                    pr.base_sha = base;
                }
            }
        }
    }
}

/// Merge pull request `n` of `rs` in the bare repository (the caller refreshed it).
#[allow(clippy::too_many_arguments)]
fn do_merge(
    git: &git2::Repository,
    now: DateTime<Utc>,
    rs: &mut RepoState,
    n: u64,
    sha: Option<&str>,
    method: &str,
    title: Option<&str>,
    message: Option<&str>,
    user: &str,
) -> Result<String, Resp> {
    let owner = rs.owner.clone();
    let item = rs.items.get_mut(&n).ok_or_else(not_found)?;
    let pr = item.pr.as_mut().ok_or_else(not_found)?;
    if !item.open {
        return Err(Resp::msg(405, "Pull Request is not mergeable"));
    }
    if sha.is_some_and(|s| s != pr.head_sha) {
        return Err(Resp::msg(
            409,
            "Head branch was modified. Review and try the merge again.",
        ));
    }
    if pr.draft {
        return Err(Resp::msg(405, "Pull Request is still a draft"));
    }
    let fail = |_| Resp::msg(405, "Pull Request is not mergeable");
    let head = git
        .find_commit(git2::Oid::from_str(&pr.head_sha).map_err(fail)?)
        .map_err(fail)?;
    let base_oid = git
        .refname_to_id(&format!("refs/heads/{}", pr.base_ref))
        .map_err(fail)?;
    let base = git.find_commit(base_oid).map_err(fail)?;
    let mut index = git.merge_commits(&base, &head, None).map_err(fail)?;
    if index.has_conflicts() {
        return Err(Resp::msg(405, "Pull Request is not mergeable"));
    }
    let tree = git
        .find_tree(index.write_tree_to(git).map_err(fail)?)
        .map_err(fail)?;
    let when = git2::Time::new(now.timestamp(), 0);
    let committer = git2::Signature::new("GitHub", "noreply@github.com", &when).map_err(fail)?;
    let author = git2::Signature::new(
        user,
        &format!("{}+{user}@users.noreply.github.com", user_id(user)),
        &when,
    )
    .map_err(fail)?;
    let (default_title, parents): (String, Vec<&git2::Commit>) = match method {
        "merge" => (
            format!("Merge pull request #{n} from {owner}/{}", pr.head_ref),
            vec![&base, &head],
        ),
        _ => (format!("{} (#{n})", item.title), vec![&base]),
    };
    let default_message = if method == "merge" {
        item.title.clone()
    } else {
        pr_commits(git, &pr.head_sha, &base_oid.to_string())
            .iter()
            .rev()
            .map(|c| format!("* {}", c.summary().ok().flatten().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    let msg = format!(
        "{}\n\n{}",
        title.unwrap_or(&default_title),
        message.unwrap_or(&default_message)
    );
    let oid = git
        .commit(None, &author, &committer, &msg, &tree, &parents)
        .map_err(fail)?;
    git.reference_matching(
        &format!("refs/heads/{}", pr.base_ref),
        oid,
        true,
        base_oid,
        &format!("merge pull request #{n}"),
    )
    .map_err(|_| {
        Resp::msg(
            409,
            "Base branch was modified. Review and try the merge again.",
        )
    })?;
    item.open = false;
    item.closed_at = Some(now);
    item.updated_at = now;
    pr.merged_at = Some(now);
    pr.merged_by = Some(user.to_string());
    pr.merge_commit_sha = Some(oid.to_string());
    pr.base_sha = base_oid.to_string();
    Ok(oid.to_string())
}

/// Commits on `head` that `base` lacks, oldest first.
fn pr_commits<'r>(git: &'r git2::Repository, head: &str, base: &str) -> Vec<git2::Commit<'r>> {
    let mut out = Vec::new();
    let Ok(mut walk) = git.revwalk() else {
        return out;
    };
    let _ = walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE);
    if let Ok(h) = git2::Oid::from_str(head) {
        let _ = walk.push(h);
    }
    if let Ok(b) = git2::Oid::from_str(base) {
        let _ = walk.hide(b);
    }
    for oid in walk.flatten() {
        if let Ok(c) = git.find_commit(oid) {
            out.push(c);
        }
    }
    out
}

/// Paths (split into components) and contents.
type Entries<'a> = Vec<(Vec<String>, &'a Vec<u8>)>;

fn build_tree(git: &git2::Repository, files: &BTreeMap<PathBuf, Vec<u8>>) -> git2::Oid {
    fn write(git: &git2::Repository, entries: &[(Vec<String>, &Vec<u8>)]) -> git2::Oid {
        let mut tb = git.treebuilder(None).expect("treebuilder");
        let mut dirs: BTreeMap<String, Entries> = BTreeMap::new();
        for (parts, data) in entries {
            if parts.len() == 1 {
                let blob = git.blob(data).expect("blob");
                tb.insert(&parts[0], blob, 0o100644).expect("insert blob");
            } else {
                dirs.entry(parts[0].clone())
                    .or_default()
                    .push((parts[1..].to_vec(), *data));
            }
        }
        for (name, sub) in dirs {
            let oid = write(git, &sub);
            tb.insert(&name, oid, 0o040000).expect("insert tree");
        }
        tb.write().expect("write tree")
    }
    let entries: Entries = files
        .iter()
        .map(|(p, d)| {
            let parts = p
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect();
            (parts, d)
        })
        .collect();
    write(git, &entries)
}

// ---------------------------------------------------------------------------------------------
// JSON shapes (GitHub's schemas: simple-user, repository, pull-request, issue, ...)
// ---------------------------------------------------------------------------------------------

fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn ts_opt(t: &Option<DateTime<Utc>>) -> Value {
    t.as_ref()
        .map(|t| Value::String(ts(t)))
        .unwrap_or(Value::Null)
}

fn fnv(data: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn body_hash(data: &[u8]) -> String {
    format!("{:016x}{:016x}", fnv(data, 0), fnv(data, 0x5bd1_e995))
}

fn user_id(login: &str) -> u64 {
    fnv(login.as_bytes(), 7) % 90_000_000 + 1_000_000
}

/// Add `more`'s fields to the object `v` (json! literals are split to stay under the macro
/// recursion limit).
fn extend(v: &mut Value, more: Value) {
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), more) {
        obj.extend(more);
    }
}

fn repo_api(cx: &Cx, key: &str) -> String {
    format!("{}/repos/{key}", cx.base)
}

fn v_url(v: &Value) -> String {
    v["url"].as_str().unwrap_or("").to_string()
}

fn user_json(cx: &Cx, login: &str) -> Value {
    let id = user_id(login);
    let api = format!("{}/users/{login}", cx.base);
    json!({
        "login": login, "id": id, "node_id": format!("U_{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "", "url": api, "html_url": format!("{}/{login}", cx.base),
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": if login.ends_with("[bot]") { "Bot" } else { "User" },
        "user_view_type": "public",
        "site_admin": false
    })
}

fn repo_json(cx: &Cx, rs: &RepoState) -> Value {
    let key = format!("{}/{}", rs.owner, rs.name);
    let api = repo_api(cx, &key);
    let created = ts(&rs.created_at);
    let open = rs.items.values().filter(|i| i.open).count();
    let mut v = json!({
        "id": rs.id, "node_id": format!("R_{}", rs.id), "name": rs.name, "full_name": key,
        "owner": user_json(cx, &rs.owner), "private": false,
        "html_url": format!("{}/{key}", cx.base), "description": null, "fork": false,
        "url": api, "homepage": null, "language": null,
        "clone_url": format!("{}/{key}.git", cx.base),
        "git_url": format!("git://127.0.0.1/{key}.git"),
        "ssh_url": format!("git@127.0.0.1:{key}.git"),
        "svn_url": format!("{}/{key}", cx.base), "mirror_url": null
    });
    extend(
        &mut v,
        json!({
            "forks": 0, "forks_count": 0, "stargazers_count": 0, "watchers": 0,
            "watchers_count": 0, "size": 1, "default_branch": "main", "open_issues": open,
            "open_issues_count": open, "is_template": false, "topics": [], "has_issues": true,
            "has_projects": false, "has_wiki": false, "has_pages": false,
            "has_downloads": true, "has_discussions": false
        }),
    );
    extend(
        &mut v,
        json!({
            "archived": false, "disabled": false, "visibility": "public", "license": null,
            "pushed_at": created, "created_at": created, "updated_at": created,
            "allow_merge_commit": true, "allow_squash_merge": true, "allow_rebase_merge": true,
            "allow_auto_merge": false, "delete_branch_on_merge": false,
            "network_count": 0, "subscribers_count": 0,
            "permissions": {"admin": false, "maintain": false, "push": true, "triage": true, "pull": true}
        }),
    );
    let urls = [
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
    ];
    let obj = v.as_object_mut().unwrap();
    for (k, suffix) in urls {
        obj.insert(k.into(), Value::String(format!("{api}{suffix}")));
    }
    v
}

fn label_json(cx: &Cx, key: &str, name: &str) -> Value {
    let id = fnv(format!("{key}:{name}").as_bytes(), 3) % 9_000_000_000 + 1_000_000_000;
    json!({"id": id, "node_id": format!("LA_{id}"),
        "url": format!("{}/labels/{}", repo_api(cx, key), pct_encode(name)),
        "name": name, "color": "ededed", "default": false, "description": null})
}

fn pr_head_base(cx: &Cx, rs: &RepoState, r: &str, sha: &str) -> Value {
    json!({"label": format!("{}:{r}", rs.owner), "ref": r, "sha": sha,
        "user": user_json(cx, &rs.owner), "repo": repo_json(cx, rs)})
}

fn pr_simple_json(cx: &Cx, rs: &RepoState, item: &Item, git: &git2::Repository) -> Value {
    let pr = item.pr.as_ref().unwrap();
    let key = format!("{}/{}", rs.owner, rs.name);
    let api = repo_api(cx, &key);
    let n = item.number;
    let url = format!("{api}/pulls/{n}");
    let html = format!("{}/{key}/pull/{n}", cx.base);
    let base_sha = if item.open {
        branch_tip(git, &pr.base_ref).unwrap_or_else(|| pr.base_sha.clone())
    } else {
        pr.base_sha.clone()
    };
    let mut v = json!({
        "url": url, "id": item.id, "node_id": format!("PR_{}", item.id), "html_url": html,
        "diff_url": format!("{html}.diff"), "patch_url": format!("{html}.patch"),
        "issue_url": format!("{api}/issues/{n}"), "number": n,
        "state": if item.open { "open" } else { "closed" }, "locked": false,
        "title": item.title, "user": user_json(cx, &item.user), "body": item.body,
        "labels": item.labels.iter().map(|l| label_json(cx, &key, l)).collect::<Vec<_>>(),
        "milestone": null, "active_lock_reason": null,
        "created_at": ts(&item.created_at), "updated_at": ts(&item.updated_at),
        "closed_at": ts_opt(&item.closed_at), "merged_at": ts_opt(&pr.merged_at),
        "merge_commit_sha": pr.merge_commit_sha, "assignee": null, "assignees": [],
        "requested_reviewers": [], "requested_teams": [],
    });
    extend(
        &mut v,
        json!({
        "commits_url": format!("{url}/commits"),
        "review_comments_url": format!("{url}/comments"),
        "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
        "comments_url": format!("{api}/issues/{n}/comments"),
        "statuses_url": format!("{api}/statuses/{}", pr.head_sha),
        "head": pr_head_base(cx, rs, &pr.head_ref, &pr.head_sha),
        "base": pr_head_base(cx, rs, &pr.base_ref, &base_sha),
        "_links": {
            "self": {"href": url}, "html": {"href": html},
            "issue": {"href": format!("{api}/issues/{n}")},
            "comments": {"href": format!("{api}/issues/{n}/comments")},
            "review_comments": {"href": format!("{url}/comments")},
            "review_comment": {"href": format!("{api}/pulls/comments{{/number}}")},
            "commits": {"href": format!("{url}/commits")},
            "statuses": {"href": format!("{api}/statuses/{}", pr.head_sha)}
        },
        "author_association": if item.user == rs.owner { "OWNER" } else { "CONTRIBUTOR" },
        "auto_merge": null, "draft": pr.draft
        }),
    );
    v
}

fn pr_json(cx: &Cx, rs: &RepoState, item: &Item, git: Option<&git2::Repository>) -> Value {
    let pr = item.pr.as_ref().unwrap();
    let opened;
    let git = match git {
        Some(g) => g,
        None => {
            opened = open_repo(cx, &format!("{}/{}", rs.owner, rs.name)).expect("repo");
            &opened
        }
    };
    let mut v = pr_simple_json(cx, rs, item, git);
    let base_sha = v["base"]["sha"].as_str().unwrap_or("").to_string();
    let (mergeable, mergeable_state) = if !item.open {
        (Value::Null, "unknown")
    } else {
        let clean = (|| -> Option<bool> {
            let b = git.find_commit(git2::Oid::from_str(&base_sha).ok()?).ok()?;
            let h = git
                .find_commit(git2::Oid::from_str(&pr.head_sha).ok()?)
                .ok()?;
            Some(!git.merge_commits(&b, &h, None).ok()?.has_conflicts())
        })();
        match clean {
            Some(true) if pr.draft => (Value::Bool(true), "draft"),
            Some(true) => (Value::Bool(true), "clean"),
            Some(false) => (Value::Bool(false), "dirty"),
            None => (Value::Null, "unknown"),
        }
    };
    let commits = pr_commits(git, &pr.head_sha, &base_sha);
    let (mut additions, mut deletions, mut changed) = (0, 0, 0);
    if let (Ok(h), Ok(b)) = (
        git2::Oid::from_str(&pr.head_sha),
        git2::Oid::from_str(&base_sha),
    ) && let Ok(mb) = git.merge_base(b, h)
        && let (Ok(t1), Ok(t2)) = (
            git.find_commit(mb).and_then(|c| c.tree()),
            git.find_commit(h).and_then(|c| c.tree()),
        )
        && let Ok(stats) = git
            .diff_tree_to_tree(Some(&t1), Some(&t2), None)
            .and_then(|d| d.stats())
    {
        additions = stats.insertions();
        deletions = stats.deletions();
        changed = stats.files_changed();
    }
    let obj = v.as_object_mut().unwrap();
    obj.insert("merged".into(), Value::Bool(pr.merged_at.is_some()));
    obj.insert("mergeable".into(), mergeable);
    obj.insert("rebaseable".into(), Value::Null);
    obj.insert("mergeable_state".into(), mergeable_state.into());
    obj.insert(
        "merged_by".into(),
        pr.merged_by
            .as_ref()
            .map(|u| user_json(cx, u))
            .unwrap_or(Value::Null),
    );
    obj.insert("comments".into(), item.comments.len().into());
    obj.insert("review_comments".into(), 0.into());
    obj.insert(
        "maintainer_can_modify".into(),
        pr.maintainer_can_modify.into(),
    );
    obj.insert("commits".into(), commits.len().into());
    obj.insert("additions".into(), additions.into());
    obj.insert("deletions".into(), deletions.into());
    obj.insert("changed_files".into(), changed.into());
    v
}

fn issue_json(cx: &Cx, rs: &RepoState, item: &Item) -> Value {
    let key = format!("{}/{}", rs.owner, rs.name);
    let api = repo_api(cx, &key);
    let n = item.number;
    let url = format!("{api}/issues/{n}");
    let kind = if item.pr.is_some() { "pull" } else { "issues" };
    let mut v = json!({
        "id": item.id, "node_id": format!("I_{}", item.id), "url": url,
        "repository_url": api, "labels_url": format!("{url}/labels{{/name}}"),
        "comments_url": format!("{url}/comments"), "events_url": format!("{url}/events"),
        "html_url": format!("{}/{key}/{kind}/{n}", cx.base), "number": n,
        "state": if item.open { "open" } else { "closed" },
        "state_reason": if item.open { Value::Null } else { "completed".into() },
        "title": item.title, "body": item.body, "user": user_json(cx, &item.user),
        "labels": item.labels.iter().map(|l| label_json(cx, &key, l)).collect::<Vec<_>>(),
        "assignee": null, "assignees": [], "milestone": null, "locked": false,
        "active_lock_reason": null, "comments": item.comments.len(),
        "closed_at": ts_opt(&item.closed_at), "created_at": ts(&item.created_at),
        "updated_at": ts(&item.updated_at), "closed_by": null,
        "author_association": if item.user == rs.owner { "OWNER" } else { "CONTRIBUTOR" }
    });
    if let Some(pr) = &item.pr {
        let html = format!("{}/{key}/pull/{n}", cx.base);
        v.as_object_mut().unwrap().insert(
            "pull_request".into(),
            json!({"url": format!("{api}/pulls/{n}"), "html_url": html,
                "diff_url": format!("{html}.diff"), "patch_url": format!("{html}.patch"),
                "merged_at": ts_opt(&pr.merged_at)}),
        );
        v.as_object_mut()
            .unwrap()
            .insert("draft".into(), pr.draft.into());
    }
    v
}

fn comment_json(cx: &Cx, rs: &RepoState, item: &Item, c: &CommentRec) -> Value {
    let key = format!("{}/{}", rs.owner, rs.name);
    let api = repo_api(cx, &key);
    let kind = if item.pr.is_some() { "pull" } else { "issues" };
    json!({
        "id": c.id, "node_id": format!("IC_{}", c.id),
        "url": format!("{api}/issues/comments/{}", c.id),
        "html_url": format!("{}/{key}/{kind}/{}#issuecomment-{}", cx.base, item.number, c.id),
        "issue_url": format!("{api}/issues/{}", item.number),
        "body": c.body, "user": user_json(cx, &c.user),
        "created_at": ts(&c.created_at), "updated_at": ts(&c.updated_at),
        "author_association": if c.user == rs.owner { "OWNER" } else { "CONTRIBUTOR" }
    })
}

fn review_json(cx: &Cx, rs: &RepoState, item: &Item, r: &ReviewRec) -> Value {
    let key = format!("{}/{}", rs.owner, rs.name);
    let api = repo_api(cx, &key);
    let html = format!(
        "{}/{key}/pull/{}#pullrequestreview-{}",
        cx.base, item.number, r.id
    );
    let pr_url = format!("{api}/pulls/{}", item.number);
    json!({
        "id": r.id, "node_id": format!("PRR_{}", r.id), "user": user_json(cx, &r.user),
        "body": r.body, "state": r.state, "html_url": html, "pull_request_url": pr_url,
        "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}},
        "submitted_at": ts(&r.submitted_at), "commit_id": r.commit_id,
        "author_association": "MEMBER"
    })
}

fn status_json(cx: &Cx, rs: &RepoState, s: &StatusRec) -> Value {
    let key = format!("{}/{}", rs.owner, rs.name);
    json!({
        "url": format!("{}/statuses/{}", repo_api(cx, &key), s.sha),
        "avatar_url": null, "id": s.id, "node_id": format!("SC_{}", s.id),
        "state": s.state, "description": s.description, "target_url": s.target_url,
        "context": s.context, "created_at": ts(&s.created_at), "updated_at": ts(&s.created_at),
        "creator": user_json(cx, &s.creator)
    })
}

fn check_run_json(cx: &Cx, rs: &RepoState, c: &CheckRunRec) -> Value {
    let key = format!("{}/{}", rs.owner, rs.name);
    let api = repo_api(cx, &key);
    json!({
        "id": c.id, "node_id": format!("CR_{}", c.id), "head_sha": c.head_sha,
        "external_id": c.external_id, "url": format!("{api}/check-runs/{}", c.id),
        "html_url": format!("{}/{key}/runs/{}", cx.base, c.id), "details_url": c.details_url,
        "status": c.status, "conclusion": c.conclusion,
        "started_at": ts_opt(&c.started_at), "completed_at": ts_opt(&c.completed_at),
        "output": {"title": c.title, "summary": c.summary, "text": c.text,
            "annotations_count": 0, "annotations_url": format!("{api}/check-runs/{}/annotations", c.id)},
        "name": c.name, "check_suite": {"id": c.id + 1},
        "app": null, "pull_requests": []
    })
}

fn commit_json(cx: &Cx, key: &str, c: &git2::Commit) -> Value {
    let api = repo_api(cx, key);
    let sig = |s: git2::Signature| {
        let when = Utc
            .timestamp_opt(s.when().seconds(), 0)
            .single()
            .unwrap_or_default();
        json!({"name": s.name().unwrap_or_default(), "email": s.email().unwrap_or_default(), "date": ts(&when)})
    };
    let sha = c.id().to_string();
    json!({
        "url": format!("{api}/commits/{sha}"), "sha": sha, "node_id": format!("C_{sha}"),
        "html_url": format!("{}/{key}/commit/{sha}", cx.base),
        "comments_url": format!("{api}/commits/{sha}/comments"),
        "commit": {
            "url": format!("{api}/git/commits/{sha}"),
            "author": sig(c.author()), "committer": sig(c.committer()),
            "message": c.message().unwrap_or_default(), "comment_count": 0,
            "tree": {"sha": c.tree_id().to_string(), "url": format!("{api}/git/trees/{}", c.tree_id())},
            "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null}
        },
        "author": null, "committer": null,
        "parents": c.parent_ids().map(|p| json!({"sha": p.to_string(),
            "url": format!("{api}/commits/{p}"), "html_url": format!("{}/{key}/commit/{p}", cx.base)})).collect::<Vec<_>>()
    })
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------------------------

/// Decode standard or URL-safe base64, padded or not.
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Standard padded base64, for tests building `Authorization: Basic` headers.
pub fn encode_b64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn pct_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_query(q: &str) -> Query {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                pct_decode(&k.replace('+', " ")),
                pct_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}
